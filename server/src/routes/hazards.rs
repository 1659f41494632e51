//! `/api/v1/hazards`: the filtered listing, the overdue hazards per region, and
//! the lifecycle steps taken from the office.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use mobile_schema::ids::HazardId;

use crate::auth::Authenticated;
use crate::body;
use crate::error::ApiError;
use crate::hazards::{self, HAZARD_STATES, StepRequest};
use crate::query::ListQuery;
use crate::startup::AppState;

/// A step's fields and up to 20 evidence items: far less than this.
const MAX_STEP_BYTES: usize = 256 * 1024;

#[utoipa::path(
    get,
    path = "/api/v1/hazards",
    tag = "hazards",
    summary = "Hazards in the caller's scope, filtered and paginated",
    params(("site" = Option<String>, Query), ("region" = Option<String>, Query), ("status" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("flag" = Option<String>, Query), ("limit" = Option<String>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "{items, next_cursor?}"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/hazards")]
pub async fn list(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(req.query_string(), HAZARD_STATES)?;
    let st = state.clone();
    // A full scan of the store: on a blocking thread, off the async workers.
    let page = web::block(move || hazards::list(st.storage.as_ref(), &auth, &q, st.today())).await??;
    Ok(HttpResponse::Ok().json(page))
}

/// Past their deadline and not rectified, earliest deadline first, with the
/// count per county.
#[utoipa::path(
    get,
    path = "/api/v1/hazards/overdue",
    tag = "hazards",
    summary = "Hazards past their rectification deadline and not closed, with counts per region",
    params(("site" = Option<String>, Query), ("region" = Option<String>, Query), ("status" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("flag" = Option<String>, Query), ("limit" = Option<String>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "{items, next_cursor?, today, by_region}"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/hazards/overdue")]
pub async fn overdue(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(req.query_string(), HAZARD_STATES)?;
    let st = state.clone();
    let answer = web::block(move || hazards::overdue(st.storage.as_ref(), &auth, &q, st.today())).await??;
    Ok(HttpResponse::Ok().json(answer))
}

#[utoipa::path(
    post,
    path = "/api/v1/hazards/{id}/{action}",
    tag = "hazards",
    summary = "An office step of a hazard's lifecycle (notify, start_rectification, submit_rectification, reject_rectification, close, reopen)",
    params(("id" = String, Path), ("action" = String, Path)),
    responses((status = 200, description = "the hazard after the step"), (status = 400, description = "unknown action or invalid body"), (status = 403, description = "role, scope, or a step taken only on site"), (status = 409, description = "not allowed in the hazard's state"), (status = 422, description = "evidence required")),
    security(("bearer" = [])),
)]
#[post("/api/v1/hazards/{id}/{action}")]
pub async fn step(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (id, action) = path.into_inner();
    let id: HazardId = id
        .parse()
        .map_err(|_| ApiError::bad("invalid_field", "the hazard id is a UUID", Some("id".into())))?;
    let request: StepRequest = body::json_or_default(&req, payload, MAX_STEP_BYTES).await?;
    let st = state.clone();
    let answer = web::block(move || {
        hazards::step(
            &st.office,
            st.storage.as_ref(),
            &auth,
            id,
            &action,
            &request,
            st.today(),
            st.clock.now_ms(),
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(answer))
}
