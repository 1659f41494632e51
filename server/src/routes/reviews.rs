//! `/api/v1/reviews`: the review queue, one inspection with its decisions, and
//! a supervisor's approve or return.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use mobile_schema::ids::InspectionId;
use mobile_schema::review::Decision;
use sync_protocol::RefusalCode;

use crate::auth::Authenticated;
use crate::body;
use crate::error::ApiError;
use crate::query::{ListQuery, QueryError};
use crate::review::{self, DecisionRequest, INSPECTION_STATUSES, ReviewError};
use crate::startup::AppState;

/// Comments and the reviewed versions: far less than this.
const MAX_DECISION_BYTES: usize = 256 * 1024;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        let code = if e.field == "cursor" {
            "invalid_cursor"
        } else {
            "invalid_query"
        };
        ApiError::bad(code, e.message, Some(e.field))
    }
}

impl From<ReviewError> for ApiError {
    fn from(e: ReviewError) -> Self {
        match e {
            ReviewError::Storage(e) => e.into(),
            ReviewError::Office(crate::office::OfficeError::Storage(e)) => e.into(),
            ReviewError::Office(e) => ApiError::Internal(e.to_string()),
            e @ ReviewError::NotFound(_) => ApiError::Missing(e.to_string()),
            ReviewError::Denied { code, message } => ApiError::Denied { code, message },
            e @ ReviewError::NotSubmitted { .. } => ApiError::Conflict {
                code: "not_submitted",
                message: e.to_string(),
                field: Some("status".into()),
            },
            ReviewError::Invalid { field, message } => ApiError::bad("invalid_field", message, Some(field)),
            e @ ReviewError::ChangedSinceRead { .. } => ApiError::Conflict {
                code: "changed_since_read",
                message: e.to_string(),
                field: Some("seen".into()),
            },
            ReviewError::Refused(r) => match r.code {
                RefusalCode::RoleNotAllowed | RefusalCode::ForbiddenScope => ApiError::Denied {
                    code: r.code.as_str(),
                    message: r.message,
                },
                RefusalCode::TransitionNotAllowed => ApiError::Conflict {
                    code: r.code.as_str(),
                    message: r.message,
                    field: r.field,
                },
                RefusalCode::EvidenceRequired | RefusalCode::InvalidRecord => ApiError::Unprocessable {
                    code: r.code.as_str(),
                    message: r.message,
                    field: r.field,
                },
                RefusalCode::UnknownRecord => ApiError::Missing(r.message),
                code => ApiError::bad(code.as_str(), r.message, r.field),
            },
        }
    }
}

/// The submitted inspections of the caller's regions, oldest visit first.
#[utoipa::path(
    get,
    path = "/api/v1/reviews",
    tag = "review",
    summary = "The review queue: submitted inspections in the caller's scope",
    params(("site" = Option<String>, Query), ("region" = Option<String>, Query), ("status" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("flag" = Option<String>, Query), ("limit" = Option<String>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "{items, next_cursor?}"), (status = 400, description = "invalid query"), (status = 403, description = "not a supervisor or admin")),
    security(("bearer" = [])),
)]
#[get("/api/v1/reviews")]
pub async fn queue(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(req.query_string(), &["submitted"])?;
    let st = state.clone();
    // A full scan of the store: on a blocking thread, off the async workers.
    let page = web::block(move || review::queue(st.storage.as_ref(), &auth, &q, st.today())).await??;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(
    get,
    path = "/api/v1/reviews/{inspection_id}",
    tag = "review",
    summary = "An inspection under review with its earlier decisions",
    params(("inspection_id" = String, Path)),
    responses((status = 200, description = "summary, inspection, versions, decisions"), (status = 403, description = "role or scope"), (status = 404, description = "no such inspection")),
    security(("bearer" = [])),
)]
#[get("/api/v1/reviews/{inspection_id}")]
pub async fn show(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = inspection_id(&path)?;
    let st = state.clone();
    let detail = web::block(move || review::show(st.storage.as_ref(), &auth, id, st.today())).await??;
    Ok(HttpResponse::Ok().json(detail))
}

#[utoipa::path(
    post,
    path = "/api/v1/reviews/{inspection_id}/approve",
    tag = "review",
    summary = "Approve a submitted inspection (a Review record)",
    params(("inspection_id" = String, Path)),
    responses((status = 200, description = "the decision"), (status = 400, description = "invalid body"), (status = 403, description = "role or scope"), (status = 409, description = "not_submitted, or changed_since_read: the content moved on since the `seen` tag was read")),
    security(("bearer" = [])),
)]
#[post("/api/v1/reviews/{inspection_id}/approve")]
pub async fn approve(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    decide(auth, state, &path, req, payload, Decision::Approve).await
}

#[utoipa::path(
    post,
    path = "/api/v1/reviews/{inspection_id}/return",
    tag = "review",
    summary = "Return a submitted inspection with comments",
    params(("inspection_id" = String, Path)),
    responses((status = 200, description = "the decision"), (status = 400, description = "no comments or invalid body"), (status = 403, description = "role or scope"), (status = 409, description = "not_submitted, or changed_since_read: the content moved on since the `seen` tag was read")),
    security(("bearer" = [])),
)]
#[post("/api/v1/reviews/{inspection_id}/return")]
pub async fn return_(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    decide(auth, state, &path, req, payload, Decision::Return).await
}

async fn decide(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: &str,
    req: HttpRequest,
    payload: web::Payload,
    decision: Decision,
) -> Result<HttpResponse, ApiError> {
    let id = inspection_id(path)?;
    // The role before the body (a body is read only for those who may decide).
    crate::review::may_review(&auth)?;
    let request: DecisionRequest = body::json_or_default(&req, payload, MAX_DECISION_BYTES).await?;
    let st = state.clone();
    let answer = web::block(move || {
        review::decide(
            &st.office,
            st.storage.as_ref(),
            &auth,
            id,
            decision,
            &request,
            st.clock.now_ms(),
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(answer))
}

fn inspection_id(path: &str) -> Result<InspectionId, ApiError> {
    path.parse().map_err(|_| {
        ApiError::bad(
            "invalid_field",
            "the inspection id is a UUID",
            Some("inspection_id".into()),
        )
    })
}

/// `GET /api/v1/inspections`: every inspection of the caller's scope, filtered.
#[utoipa::path(
    get,
    path = "/api/v1/inspections",
    tag = "records",
    summary = "Inspections in the caller's scope, filtered and paginated",
    params(("site" = Option<String>, Query), ("region" = Option<String>, Query), ("status" = Option<String>, Query), ("from" = Option<String>, Query), ("to" = Option<String>, Query), ("flag" = Option<String>, Query), ("limit" = Option<String>, Query), ("cursor" = Option<String>, Query)),
    responses((status = 200, description = "{items, next_cursor?}"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/inspections")]
pub async fn list_inspections(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(req.query_string(), INSPECTION_STATUSES)?;
    let st = state.clone();
    // A full scan of the store: on a blocking thread, off the async workers.
    let page = web::block(move || review::list_inspections(st.storage.as_ref(), &auth, &q, st.today())).await??;
    Ok(HttpResponse::Ok().json(page))
}
