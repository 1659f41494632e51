//! `GET /api/v1/records/{id}`: a record with its conflicts, flags and full
//! history, for supervisors and operators (and inspectors, within their scope).

use actix_web::{HttpRequest, HttpResponse, get, web};
use mobile_schema::ids::RecordId;
use serde::Deserialize;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::record_detail::{self, DEFAULT_HISTORY_PAGE, MAX_HISTORY_PAGE, Window};
use crate::startup::AppState;

#[derive(Debug, Deserialize)]
struct DetailQuery {
    offset: Option<String>,
    limit: Option<String>,
}

fn number(text: Option<&str>, default: usize, min: usize, max: usize, field: &str) -> Result<usize, ApiError> {
    match text {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::bad(
                "invalid_field",
                format!("{field} is a number from {min} to {max}"),
                Some(field.into()),
            )),
        },
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/records/{id}",
    tag = "records",
    summary = "A record with its conflicts, flags and full history, refused changes included",
    params(("id" = String, Path), ("offset" = Option<String>, Query), ("limit" = Option<String>, Query)),
    responses((status = 200, description = "the record and a page of its history"), (status = 400, description = "invalid query"), (status = 401, description = "token"), (status = 404, description = "no such record in the caller's scope")),
    security(("bearer" = [])),
)]
#[get("/api/v1/records/{id}")]
pub async fn show(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id: RecordId = path
        .trim()
        .parse()
        .map_err(|_| ApiError::bad("invalid_field", "not a record id", Some("id".into())))?;
    let query: DetailQuery = super::query_params(&req)?;
    let window = Window {
        offset: number(query.offset.as_deref(), 0, 0, record_detail::MAX_HISTORY_READ, "offset")?,
        limit: number(
            query.limit.as_deref(),
            DEFAULT_HISTORY_PAGE,
            1,
            MAX_HISTORY_PAGE,
            "limit",
        )?,
    };
    let st = state.clone();
    let today = state.today();
    let detail =
        web::block(move || record_detail::detail(st.storage.as_ref(), &st.accounts, &auth.user, today, id, window))
            .await??;
    match detail {
        Some(d) => Ok(HttpResponse::Ok().json(d)),
        None => Err(ApiError::Missing(format!("no record {id} in your scope"))),
    }
}
