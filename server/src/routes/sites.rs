//! `GET /api/v1/sites`, `POST /api/v1/sites`, `POST /api/v1/sites/import`.

use actix_web::{HttpRequest, HttpResponse, get, post, web};
use mobile_schema::region::RegionCode;
use mobile_schema::site::{Site, SiteKind};
use serde::Deserialize;
use sync_protocol::RefusalCode;

use crate::auth::Authenticated;
use crate::body;
use crate::error::ApiError;
use crate::sites::{self, ImportRequest, SiteError, SiteFilter};
use crate::startup::AppState;

/// Sites per page when the client does not say.
const DEFAULT_PAGE: usize = 100;
/// An import batch: `MAX_IMPORT_ROWS` rows of a few hundred bytes each.
const MAX_IMPORT_BYTES: usize = 4 * 1024 * 1024;

impl From<SiteError> for ApiError {
    fn from(e: SiteError) -> Self {
        match e {
            SiteError::Storage(e) => e.into(),
            SiteError::Denied { code, message } => ApiError::Denied { code, message },
            SiteError::Invalid { field, message } => ApiError::bad("invalid_field", message, Some(field)),
            SiteError::List(e) => ApiError::bad("invalid_list", e.to_string(), Some("csv".into())),
            SiteError::Refused(r) => match r.code {
                RefusalCode::AlreadyExists => ApiError::Conflict {
                    code: "site_exists",
                    message: r.message,
                    field: Some("id".into()),
                },
                RefusalCode::ForbiddenScope | RefusalCode::RoleNotAllowed => ApiError::Denied {
                    code: r.code.as_str(),
                    message: r.message,
                },
                code => ApiError::Unprocessable {
                    code: code.as_str(),
                    message: r.message,
                    field: r.field,
                },
            },
        }
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    region: Option<String>,
    kind: Option<String>,
    after: Option<String>,
    limit: Option<String>,
}

#[utoipa::path(
    get,
    path = "/api/v1/sites",
    tag = "admin",
    summary = "Sites the caller may see, in commit order, filtered by region and kind",
    params(("region" = Option<String>, Query), ("kind" = Option<String>, Query), ("after" = Option<String>, Query), ("limit" = Option<String>, Query)),
    responses((status = 200, description = "{sites, next?}"), (status = 400, description = "invalid query"), (status = 403, description = "role")),
    security(("bearer" = [])),
)]
#[get("/api/v1/sites")]
pub async fn list(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q: ListQuery = super::query_params(&req)?;
    let bad = |field: &str, message: &str| ApiError::bad("invalid_field", message.to_string(), Some(field.into()));
    let filter = SiteFilter {
        region: q
            .region
            .filter(|r| !r.is_empty())
            .map(|r| r.parse::<RegionCode>())
            .transpose()
            .map_err(|_| bad("region", "region is a six-digit GB/T 2260 code"))?,
        kind: q
            .kind
            .filter(|k| !k.is_empty())
            .map(|k| serde_json::from_value::<SiteKind>(serde_json::Value::String(k)))
            .transpose()
            .map_err(|_| {
                bad(
                    "kind",
                    "kind is tailings_pond, key_supervision_unit or remediation_site",
                )
            })?,
        after: match q.after.as_deref() {
            None | Some("") => 0,
            Some(s) => s
                .parse()
                .map_err(|_| bad("after", "after is the `next` of a previous page"))?,
        },
        limit: match q.limit.as_deref() {
            None => DEFAULT_PAGE,
            Some(s) => match s.parse::<usize>() {
                Ok(n) if (1..=sites::MAX_PAGE).contains(&n) => n,
                _ => {
                    return Err(bad("limit", &format!("limit is from 1 to {}", sites::MAX_PAGE)));
                }
            },
        },
    };
    let st = state.clone();
    let page = web::block(move || sites::list(st.storage.as_ref(), &auth, &filter)).await??;
    Ok(HttpResponse::Ok().json(page))
}

#[utoipa::path(
    post,
    path = "/api/v1/sites",
    tag = "admin",
    summary = "Create one site (a record committed through the engine, as a push would)",
    responses((status = 201, description = "the site entry"), (status = 400, description = "invalid site"), (status = 403, description = "role or scope"), (status = 409, description = "site exists")),
    security(("bearer" = [])),
)]
#[post("/api/v1/sites")]
pub async fn create(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The role before the body: a tablet user is told 403, not how to fix a body.
    crate::sites::may_write_sites(&auth)?;
    let site: Site = body::json(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    let st = state.clone();
    let entry = web::block(move || st.sites.create(&st, &auth, site, st.clock.now_ms())).await??;
    Ok(HttpResponse::Created().json(entry))
}

#[utoipa::path(
    post,
    path = "/api/v1/sites/import",
    tag = "admin",
    summary = "Import a batch of an official list (ponds, key units, projects); idempotent",
    responses((status = 200, description = "created, updated, unchanged, rejected rows, refused sites"), (status = 400, description = "invalid list"), (status = 403, description = "role")),
    security(("bearer" = [])),
)]
#[post("/api/v1/sites/import")]
pub async fn import(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::sites::may_write_sites(&auth)?;
    let request: ImportRequest = body::json(&req, payload, MAX_IMPORT_BYTES).await?;
    let st = state.clone();
    let who = auth.user.username.clone();
    let report = web::block(move || st.sites.import(&st, &auth, &request, st.clock.now_ms())).await??;
    tracing::info!(
        by = %who,
        created = report.created,
        updated = report.updated,
        unchanged = report.unchanged,
        rejected = report.rejected.len(),
        refused = report.refused.len(),
        "site list batch imported"
    );
    Ok(HttpResponse::Ok().json(report))
}
