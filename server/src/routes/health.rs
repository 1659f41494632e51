//! `GET /healthz`: the process is up and its store answers.

use actix_web::{HttpResponse, get, web};

use crate::startup::AppState;

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "health",
    summary = "The process is up and its store answers",
    responses((status = 200, description = "healthy"), (status = 503, description = "the store cannot be read")),
)]
#[get("/healthz")]
pub async fn healthz(state: web::Data<AppState>) -> HttpResponse {
    // A read proves the store is open and readable, not just that the process runs.
    match state.db.get(b"__healthz") {
        Ok(_) => HttpResponse::Ok().json(serde_json::json!({ "status": "ok" })),
        Err(e) => {
            tracing::error!(error = %e, "store read failed in health check");
            HttpResponse::ServiceUnavailable().json(serde_json::json!({
                "code": "store_unavailable",
                "message": "the store cannot be read",
            }))
        }
    }
}
