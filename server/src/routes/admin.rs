//! `/api/v1/admin/*`: users and devices, for the admin role only. The bearer
//! token is checked first (401), then the role (403), then the body (400).

use actix_web::{HttpRequest, HttpResponse, get, patch, post, web};
use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::region::{Divisions, RegionCode};
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};
use sync_protocol::ReplicaId;

use crate::accounts::{self, Device, User, UserPatch};
use crate::auth::Authenticated;
use crate::body;
use crate::device_status::{DeviceStatus, DeviceStatuses};
use crate::error::ApiError;
use crate::startup::AppState;

/// `POST /api/v1/admin/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    pub username: String,
    pub password: String,
    pub role: Role,
    /// GB/T 2260 codes, six digits as strings.
    #[serde(default)]
    pub regions: Vec<RegionCode>,
}

/// `PATCH /api/v1/admin/users/{username}`: what is present changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// Replaces the user's regions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regions: Option<Vec<RegionCode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// A user as the admin API shows it (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserView {
    pub id: UserId,
    pub username: String,
    pub role: Role,
    pub regions: Vec<RegionCode>,
    pub disabled: bool,
}

impl From<User> for UserView {
    fn from(u: User) -> Self {
        Self {
            id: u.id,
            username: u.username,
            role: u.role,
            regions: u.regions,
            disabled: u.disabled,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserView>,
}

/// A device as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    pub id: DeviceId,
    pub user_id: UserId,
    /// `None` if the user record is gone.
    pub username: Option<String>,
    pub name: Option<String>,
    pub app_version: Option<String>,
    pub replica: Option<ReplicaId>,
    pub registered_ms: u64,
    pub revoked: bool,
    pub revoked_ms: Option<u64>,
    /// The later of its last login or refresh and its last request since the server started.
    pub last_seen_ms: Option<u64>,
    /// Last sync and what the device reported with it (none before its first sync).
    #[serde(default)]
    pub status: Option<DeviceStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceList {
    pub devices: Vec<DeviceView>,
}

fn device_view(state: &AppState, d: Device, username: Option<String>, status: Option<DeviceStatus>) -> DeviceView {
    let last_seen_ms = d.last_seen_ms.max(state.last_seen(d.id));
    DeviceView {
        id: d.id,
        user_id: d.user,
        username,
        name: d.name,
        app_version: d.app_version,
        replica: d.replica,
        registered_ms: d.registered_ms,
        revoked: d.revoked,
        revoked_ms: d.revoked_ms,
        last_seen_ms,
        status,
    }
}

/// Regions must name divisions of the national table; repeats are dropped.
fn check_regions(regions: Vec<RegionCode>) -> Result<Vec<RegionCode>, ApiError> {
    let table = Divisions::gbt2260().map_err(|e| ApiError::Internal(e.to_string()))?;
    for (i, code) in regions.iter().enumerate() {
        if table.get(*code).is_none() {
            return Err(ApiError::bad(
                "invalid_field",
                format!("{code} is not a GB/T 2260 division"),
                Some(format!("regions[{i}]")),
            ));
        }
    }
    let mut regions = regions;
    regions.sort();
    regions.dedup();
    Ok(regions)
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/users",
    tag = "admin",
    summary = "Create a user with a role and regions",
    responses((status = 201, description = "the user"), (status = 400, description = "invalid field"), (status = 403, description = "not an admin"), (status = 409, description = "username taken")),
    security(("bearer" = [])),
)]
#[post("/api/v1/admin/users")]
pub async fn create_user(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let new: NewUser = body::json(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    accounts::check_username(&new.username)?;
    accounts::check_password_rules(&new.password)?;
    let regions = check_regions(new.regions)?;
    let st = state.clone();
    let user = web::block(move || -> Result<User, ApiError> {
        let hash = accounts::hash_password(&new.password)?;
        Ok(st.accounts.insert_user(&new.username, hash, new.role, regions)?)
    })
    .await??;
    tracing::info!(by = %auth.user.username, user = %user.username, role = ?user.role, "user created");
    Ok(HttpResponse::Created().json(UserView::from(user)))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/users",
    tag = "admin",
    summary = "Every user",
    responses((status = 200, description = "the users"), (status = 403, description = "not an admin")),
    security(("bearer" = [])),
)]
#[get("/api/v1/admin/users")]
pub async fn list_users(auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let st = state.clone();
    let users = web::block(move || st.accounts.users()).await??;
    Ok(HttpResponse::Ok().json(UserList {
        users: users.into_iter().map(UserView::from).collect(),
    }))
}

#[utoipa::path(
    patch,
    path = "/api/v1/admin/users/{username}",
    tag = "admin",
    summary = "Change a user's role, regions, password or disabled flag",
    params(("username" = String, Path)),
    responses((status = 200, description = "the user"), (status = 400, description = "invalid field"), (status = 403, description = "not an admin"), (status = 404, description = "no such user")),
    security(("bearer" = [])),
)]
#[patch("/api/v1/admin/users/{username}")]
pub async fn update_user(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let username = path.into_inner();
    let change: UserChange = body::json(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    if let Some(p) = &change.password {
        accounts::check_password_rules(p)?;
    }
    let regions = change.regions.map(check_regions).transpose()?;
    let st = state.clone();
    let user = web::block(move || -> Result<User, ApiError> {
        let password_hash = change.password.as_deref().map(accounts::hash_password).transpose()?;
        let patch = UserPatch {
            role: change.role,
            regions,
            disabled: change.disabled,
            password_hash,
        };
        Ok(st.accounts.update_user(&username, patch)?)
    })
    .await??;
    tracing::info!(by = %auth.user.username, user = %user.username, "user changed");
    Ok(HttpResponse::Ok().json(UserView::from(user)))
}

#[utoipa::path(
    get,
    path = "/api/v1/admin/devices",
    tag = "admin",
    summary = "Every device with its user and sync status",
    responses((status = 200, description = "the devices"), (status = 403, description = "not an admin")),
    security(("bearer" = [])),
)]
#[get("/api/v1/admin/devices")]
pub async fn list_devices(auth: Authenticated, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let st = state.clone();
    let (devices, users, mut statuses) = web::block(move || -> Result<_, ApiError> {
        let statuses = DeviceStatuses::open(&st.db)?.all()?;
        Ok((st.accounts.devices()?, st.accounts.users()?, statuses))
    })
    .await??;
    let names: std::collections::HashMap<UserId, String> = users.into_iter().map(|u| (u.id, u.username)).collect();
    let devices = devices
        .into_iter()
        .map(|d| {
            let name = names.get(&d.user).cloned();
            let status = statuses.remove(&d.id);
            device_view(&state, d, name, status)
        })
        .collect();
    Ok(HttpResponse::Ok().json(DeviceList { devices }))
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/devices/{id}/revoke",
    tag = "admin",
    summary = "Revoke a device: its tokens stop working at once",
    params(("id" = String, Path)),
    responses((status = 200, description = "the device"), (status = 403, description = "not an admin"), (status = 404, description = "no such device")),
    security(("bearer" = [])),
)]
#[post("/api/v1/admin/devices/{id}/revoke")]
pub async fn revoke_device(
    auth: Authenticated,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let id: DeviceId = path
        .trim()
        .parse::<DeviceId>()
        .map_err(|e| ApiError::bad("invalid_field", format!("not a device id: {e}"), Some("id".into())))?;
    let st = state.clone();
    let device = web::block(move || -> Result<_, ApiError> {
        let device = st.accounts.revoke_device(id, st.clock.now_ms())?;
        let username = st.accounts.user(device.user)?.map(|u| u.username);
        let status = DeviceStatuses::open(&st.db)?.get(id)?;
        Ok((device, username, status))
    })
    .await??;
    tracing::info!(by = %auth.user.username, device = %id, "device revoked");
    Ok(HttpResponse::Ok().json(device_view(&state, device.0, device.1, device.2)))
}
