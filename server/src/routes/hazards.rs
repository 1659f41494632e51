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
    let bytes = body::read(&req, payload, MAX_STEP_BYTES).await?;
    let request: StepRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        StepRequest::default()
    } else {
        body::decode(&bytes)?
    };
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
