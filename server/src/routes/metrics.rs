//! `GET /metrics`: Prometheus text, for an admin's token or the scraper's own
//! (`[metrics] token`), never for anyone: counts by route tell who syncs when.

use actix_web::{FromRequest, HttpRequest, HttpResponse, get, web};
use sha2::{Digest, Sha256};

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::startup::AppState;

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    summary = "Prometheus text: requests, pushes, pulls, outcomes, refusals, store size",
    responses((status = 200, description = "Prometheus text format 0.0.4"), (status = 401, description = "no token, or not the scraper token"), (status = 403, description = "not an admin")),
    security(("bearer" = [])),
)]
#[get("/metrics")]
pub async fn metrics(
    state: web::Data<AppState>,
    metrics: web::Data<Metrics>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if !scraper_token_matches(&state, &req) {
        // An admin's access token also works: the same checks as any API call.
        let auth = Authenticated::extract(&req).await?;
        auth.require_admin()?;
    }
    let st = state.clone();
    let text = web::block(move || {
        let sled = st.db.size_on_disk().unwrap_or(0);
        metrics.render(sled)
    })
    .await?
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}

/// The configured scraper token, compared by digest so the time taken does
/// not tell how much of it a guess got right.
fn scraper_token_matches(state: &AppState, req: &HttpRequest) -> bool {
    let Some(expected) = state.settings.metrics.token.as_deref().filter(|t| !t.is_empty()) else {
        return false;
    };
    let given = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    given.is_some_and(|g| Sha256::digest(g.as_bytes()) == Sha256::digest(expected.as_bytes()))
}
