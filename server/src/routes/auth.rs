//! `POST /api/v1/auth/login` and `/refresh`: token pairs for a device.

use actix_web::{HttpRequest, HttpResponse, post, web};
use sync_protocol::wire::{LoginRequest, RefreshRequest, TokenResponse, UserInfo};

use crate::accounts::{Device, Session, User};
use crate::body;
use crate::error::ApiError;
use crate::startup::AppState;

#[post("/api/v1/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    let request: LoginRequest = body::decode(&bytes)?;
    check_text("device.name", request.device.name.as_deref())?;
    check_text("device.app_version", request.device.app_version.as_deref())?;
    let st = state.clone();
    let response = web::block(move || -> Result<TokenResponse, ApiError> {
        let user = st.accounts.check_password(&request.username, &request.password)?;
        let now = st.clock.now_ms();
        let registered_ms = st
            .accounts
            .device(request.device.id)?
            .map(|d| d.registered_ms)
            .unwrap_or(now);
        st.accounts.register_device(Device {
            id: request.device.id,
            user: user.id,
            name: request.device.name,
            app_version: request.device.app_version,
            replica: request.device.replica,
            registered_ms,
            revoked: false,
        })?;
        issue(&st, &user, request.device.id, request.device.replica, now)
    })
    .await??;
    Ok(HttpResponse::Ok().json(response))
}

#[post("/api/v1/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let bytes = body::read(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    let request: RefreshRequest = body::decode(&bytes)?;
    let st = state.clone();
    let response = web::block(move || -> Result<TokenResponse, ApiError> {
        let now = st.clock.now_ms();
        let session = st.accounts.take_session(&request.refresh_token, now)?;
        let user = st
            .accounts
            .user(session.user)?
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "the session's user does not exist"))?;
        if user.disabled {
            return Err(ApiError::unauthorized("user_disabled", "this account is disabled"));
        }
        let mut device = st
            .accounts
            .device(session.device)?
            .ok_or_else(|| ApiError::unauthorized("invalid_token", "the session's device is not registered"))?;
        if device.revoked || device.user != user.id {
            return Err(ApiError::unauthorized(
                "device_revoked",
                "this device was revoked: enrol it again",
            ));
        }
        let replica = request.replica.or(session.replica);
        if device.replica != replica {
            device.replica = replica;
            st.accounts.register_device(device)?;
        }
        issue(&st, &user, session.device, replica, now)
    })
    .await??;
    Ok(HttpResponse::Ok().json(response))
}

fn issue(
    state: &AppState,
    user: &User,
    device: mobile_schema::ids::DeviceId,
    replica: Option<sync_protocol::ReplicaId>,
    now_ms: u64,
) -> Result<TokenResponse, ApiError> {
    let access_token = state.keys.issue(user.id, device, replica, now_ms / 1000)?;
    let refresh_token = state.accounts.start_session(&Session {
        user: user.id,
        device,
        replica,
        expires_ms: now_ms + state.settings.refresh_token_ttl_s * 1000,
    })?;
    Ok(TokenResponse {
        access_token,
        refresh_token,
        expires_in: state.keys.access_ttl_s,
        token_type: "Bearer".into(),
        user: UserInfo {
            id: user.id,
            username: user.username.clone(),
            role: user.role,
        },
    })
}

fn check_text(field: &str, text: Option<&str>) -> Result<(), ApiError> {
    match text {
        Some(t) if t.len() > 200 => Err(ApiError::bad(
            "invalid_field",
            "at most 200 bytes",
            Some(field.to_string()),
        )),
        _ => Ok(()),
    }
}
