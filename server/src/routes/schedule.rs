//! `/api/v1/schedule`: generate a year's inspection schedule, list it, and
//! report compliance with it, as JSON or as CSV (`?format=csv`).

use actix_web::http::header::{ContentDisposition, ContentType, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use mobile_schema::region::RegionCode;
use serde::Deserialize;

use crate::auth::Authenticated;
use crate::body;
use crate::error::ApiError;
use crate::schedule::{self, FloodSeasonRequest, GenerateRequest, RegenerateRequest, ScheduleServiceError, export};
use crate::startup::AppState;

/// A generate request names periods, seasons and recusals: more than a login,
/// far less than this.
const MAX_GENERATE_BYTES: usize = 1024 * 1024;

impl From<ScheduleServiceError> for ApiError {
    fn from(e: ScheduleServiceError) -> Self {
        match e {
            ScheduleServiceError::Storage(e) => e.into(),
            ScheduleServiceError::Accounts(e) => e.into(),
            ScheduleServiceError::Rules(e) => {
                let field = match &e {
                    mobile_schema::schedule::ScheduleError::NoValidTeam { .. } => None,
                    mobile_schema::schedule::ScheduleError::BadFloodSeason { .. } => Some("flood_seasons".into()),
                    mobile_schema::schedule::ScheduleError::BadPeriod { .. } => Some("intensified".into()),
                };
                ApiError::Unprocessable {
                    code: "schedule_impossible",
                    message: e.to_string(),
                    field,
                }
            }
            ScheduleServiceError::Denied { code, message } => ApiError::Denied { code, message },
            ScheduleServiceError::Invalid { field, message } => {
                ApiError::bad("invalid_field", message, Some(field.into()))
            }
            e @ ScheduleServiceError::Exists { .. } => ApiError::Conflict {
                code: "schedule_exists",
                message: e.to_string(),
                field: Some("year".into()),
            },
            ScheduleServiceError::NotFound(what) => ApiError::Missing(what),
            // Records changed under the plan (a task started meanwhile): what was
            // committed stands, and a retry plans again from it.
            e @ ScheduleServiceError::Refused(_) => ApiError::Conflict {
                code: "schedule_changed",
                message: format!("{e}; retry"),
                field: None,
            },
            e @ (ScheduleServiceError::Calendar(_) | ScheduleServiceError::CalendarFile { .. }) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/schedule/generate",
    tag = "schedule",
    summary = "Generate a year's tailings-pond inspection schedule",
    responses((status = 201, description = "the plan"), (status = 200, description = "a dry run's plan"), (status = 400, description = "invalid options"), (status = 403, description = "role"), (status = 409, description = "the year already has a schedule")),
    security(("bearer" = [])),
)]
#[post("/api/v1/schedule/generate")]
pub async fn generate(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    // The role before the body; the regions are checked once the body names them.
    crate::schedule::may_plan_somewhere(&auth.user)?;
    let request: GenerateRequest = body::json(&req, payload, MAX_GENERATE_BYTES).await?;
    let st = state.clone();
    let answer = web::block(move || {
        st.schedule.generate(
            st.storage.as_ref(),
            &st.accounts,
            &auth,
            &request,
            st.today(),
            st.clock.now_ms(),
        )
    })
    .await??;
    let status = if answer.stored {
        actix_web::http::StatusCode::CREATED
    } else {
        actix_web::http::StatusCode::OK
    };
    Ok(HttpResponse::build(status).json(answer))
}

/// A pond's level changed during the year: re-plan its remaining tasks.
#[utoipa::path(
    post,
    path = "/api/v1/schedule/regenerate",
    tag = "schedule",
    summary = "Re-plan the rest of a year after level changes",
    responses((status = 200, description = "what was cancelled, added and kept"), (status = 400, description = "invalid options"), (status = 403, description = "role")),
    security(("bearer" = [])),
)]
#[post("/api/v1/schedule/regenerate")]
pub async fn regenerate(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::schedule::may_plan_somewhere(&auth.user)?;
    let request: RegenerateRequest = body::json(&req, payload, MAX_GENERATE_BYTES).await?;
    let st = state.clone();
    let answer = web::block(move || {
        st.schedule.regenerate(
            st.storage.as_ref(),
            &st.accounts,
            &auth,
            &request,
            st.today(),
            st.clock.now_ms(),
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(answer))
}

/// 入汛 declared for a region and year: kept for every later plan of the year,
/// and the region's 一级 ponds re-planned from today.
#[utoipa::path(
    post,
    path = "/api/v1/schedule/flood-season",
    tag = "schedule",
    summary = "Declare a region's flood season for a year and re-plan its 一级 ponds",
    responses((status = 200, description = "the season, the ponds re-planned (replanned) and those whose re-plan failed with why (not_replanned)"), (status = 400, description = "invalid season"), (status = 403, description = "role or region")),
    security(("bearer" = [])),
)]
#[post("/api/v1/schedule/flood-season")]
pub async fn flood_season(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    crate::schedule::may_plan_somewhere(&auth.user)?;
    let request: FloodSeasonRequest = body::json(&req, payload, MAX_GENERATE_BYTES).await?;
    let st = state.clone();
    let answer = web::block(move || {
        st.schedule.declare_flood_season(
            st.storage.as_ref(),
            &st.accounts,
            &auth,
            &request,
            st.today(),
            st.clock.now_ms(),
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(answer))
}

/// The flood season in force in a region and year and the declarations that
/// bear on it (any signed-in user: a season is a public notice).
#[utoipa::path(
    get,
    path = "/api/v1/schedule/flood-seasons",
    tag = "schedule",
    summary = "The flood season in force in a region and year",
    params(("year" = Option<String>, Query), ("region" = Option<String>, Query)),
    responses((status = 200, description = "the season in force and the declarations"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/schedule/flood-seasons")]
pub async fn flood_seasons(
    _auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = query(&req)?;
    if q.format == Format::Csv {
        return Err(ApiError::bad(
            "invalid_query",
            "flood seasons are listed as JSON only",
            Some("format".into()),
        ));
    }
    let st = state.clone();
    let view = web::block(move || st.schedule.flood_seasons(q.year, q.region)).await??;
    Ok(HttpResponse::Ok().json(view))
}

/// The dated obligations of the key supervision units, and whether each was met.
#[utoipa::path(
    get,
    path = "/api/v1/schedule/obligations",
    tag = "schedule",
    summary = "Key supervision units' dated obligations",
    params(("year" = Option<String>, Query), ("region" = Option<String>, Query), ("format" = Option<String>, Query)),
    responses((status = 200, description = "JSON or CSV"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/schedule/obligations")]
pub async fn obligations(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = query(&req)?;
    let st = state.clone();
    let list = web::block(move || {
        schedule::obligations_for(
            st.storage.as_ref(),
            &auth.user,
            q.year,
            q.region,
            st.today(),
            &st.schedule.calendar,
        )
    })
    .await??;
    Ok(match q.format {
        Format::Csv => csv_response(
            format!("obligations-{}-{}.csv", q.year, q.region),
            export::obligations_csv(&list),
        ),
        Format::Json => {
            HttpResponse::Ok().json(serde_json::json!({ "year": q.year, "region": q.region, "obligations": list }))
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    year: i32,
    region: RegionCode,
    #[serde(default)]
    format: Format,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Format {
    #[default]
    Json,
    Csv,
}

fn query(req: &HttpRequest) -> Result<ReportQuery, ApiError> {
    web::Query::<ReportQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| {
            let text = e.to_string();
            let field = ["year", "region", "format"]
                .into_iter()
                .find(|f| text.contains(f))
                .map(String::from);
            ApiError::bad(
                "invalid_query",
                format!("{text} (expected ?year=YYYY&region=CODE[&format=csv])"),
                field,
            )
        })
}

fn csv_response(name: String, body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/csv; charset=utf-8")
        .insert_header(ContentDisposition {
            disposition: DispositionType::Attachment,
            parameters: vec![DispositionParam::Filename(name)],
        })
        .body(body)
}

/// The tasks of a year in a region that the caller may see (drawn tasks stay
/// hidden from inspectors until their window opens).
#[utoipa::path(
    get,
    path = "/api/v1/schedule",
    tag = "schedule",
    summary = "A year's tasks",
    params(("year" = Option<String>, Query), ("region" = Option<String>, Query), ("format" = Option<String>, Query)),
    responses((status = 200, description = "JSON or CSV"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/schedule")]
pub async fn show(auth: Authenticated, state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = query(&req)?;
    let st = state.clone();
    let scope = crate::access::scope_of(&auth.user);
    let (tasks, sites, names) = web::block(move || -> Result<_, ApiError> {
        let (tasks, sites) = schedule::tasks_for(st.storage.as_ref(), &scope, q.year, q.region, st.today())?;
        // Names only for people's CSV; JSON carries user ids.
        let names = match q.format {
            Format::Csv => schedule::usernames(&st.accounts)?,
            Format::Json => Default::default(),
        };
        Ok((tasks, sites, names))
    })
    .await??;
    Ok(match q.format {
        Format::Csv => csv_response(
            format!("schedule-{}-{}.csv", q.year, q.region),
            export::tasks_csv(&tasks, &sites, &names),
        ),
        Format::Json => HttpResponse::Ok()
            .content_type(ContentType::json())
            .json(serde_json::json!({ "year": q.year, "region": q.region, "tasks": tasks })),
    })
}

/// Required against done, per pond and level, and the overdue tasks.
#[utoipa::path(
    get,
    path = "/api/v1/schedule/compliance",
    tag = "schedule",
    summary = "Compliance of the inspections with the year's schedule",
    params(("year" = Option<String>, Query), ("region" = Option<String>, Query), ("format" = Option<String>, Query)),
    responses((status = 200, description = "JSON or CSV"), (status = 400, description = "invalid query")),
    security(("bearer" = [])),
)]
#[get("/api/v1/schedule/compliance")]
pub async fn compliance(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = query(&req)?;
    let st = state.clone();
    let report =
        web::block(move || schedule::compliance_for(st.storage.as_ref(), &auth.user, q.year, q.region, st.today()))
            .await??;
    Ok(match q.format {
        Format::Csv => csv_response(
            format!("compliance-{}-{}.csv", q.year, q.region),
            export::compliance_csv(&report),
        ),
        Format::Json => HttpResponse::Ok().json(report),
    })
}
