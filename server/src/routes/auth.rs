//! `POST /api/v1/auth/login` and `/refresh`: token pairs for a device.

use std::time::Instant;

use actix_web::{HttpRequest, HttpResponse, post, web};
use mobile_schema::ids::DeviceId;
use sync_protocol::ReplicaId;
use sync_protocol::wire::{LoginRequest, RefreshRequest, TokenResponse, UserInfo};

use crate::accounts::{AccountError, Session, User};
use crate::body;
use crate::error::ApiError;
use crate::startup::AppState;

/// Expired sessions are swept once every this many refreshes.
const PRUNE_EVERY: u64 = 1024;

#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "auth",
    summary = "Log a user in from a device: registers the device and returns a token pair",
    responses((status = 200, description = "{access_token, refresh_token, expires_in, user}"), (status = 400, description = "malformed body"), (status = 401, description = "wrong username or password"), (status = 409, description = "replica_taken: the replica id belongs to another device"), (status = 429, description = "too many failed logins")),
)]
#[post("/api/v1/auth/login")]
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request: LoginRequest = body::json(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    check_text("device.name", request.device.name.as_deref())?;
    check_text("device.app_version", request.device.app_version.as_deref())?;
    let address = req.peer_addr().map(|a| a.ip());
    let attempt = state
        .limiter
        .begin(request.username.trim(), address, Instant::now())
        .map_err(|l| ApiError::RateLimited {
            retry_after_s: l.retry_after.as_secs_f64().ceil() as u64,
        })?;
    let st = state.clone();
    // argon2 is slow on purpose: off the async workers.
    let user = web::block(move || {
        st.accounts
            .check_password(request.username.trim(), &request.password)
            .map(|u| (u, request.device))
    })
    .await?;
    let (user, registration) = match user {
        Ok(found) => {
            state.limiter.succeeded(attempt);
            found
        }
        // A disabled user gave the right password: not a guess.
        Err(AccountError::UserDisabled) => {
            state.limiter.succeeded(attempt);
            return Err(AccountError::UserDisabled.into());
        }
        Err(e) => return Err(e.into()),
    };
    let st = state.clone();
    let response = web::block(move || -> Result<TokenResponse, ApiError> {
        if crate::storage::below_reserve(&st.settings.data_dir) {
            return Err(ApiError::NotDurable);
        }
        let now = st.clock.now_ms();
        let device = st.accounts.enrol_device(&user, &registration, now)?;
        let session = Session {
            user: user.id,
            device: device.id,
            replica: device.replica,
            expires_ms: now.saturating_add(st.settings.refresh_token_ttl_s.saturating_mul(1000)),
            generation: device.generation,
            spent_ms: None,
            successor: None,
        };
        let refresh_token = st.accounts.start_session(&session)?;
        issue(
            &st,
            &user,
            device.id,
            device.replica,
            device.generation,
            refresh_token,
            now,
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(response))
}

/// Rotates the refresh token. A token spent less than `refresh_grace_s` ago
/// whose new pair was never used gets another new pair (the reply was lost);
/// any other reuse revokes the device's sessions (`token_reused`).
#[utoipa::path(
    post,
    path = "/api/v1/auth/refresh",
    tag = "auth",
    summary = "Rotate a refresh token for a new pair, optionally binding the replica id",
    responses((status = 200, description = "a new token pair"), (status = 401, description = "unknown, expired, reused or revoked refresh token"), (status = 409, description = "replica_taken: the replica id belongs to another device")),
)]
#[post("/api/v1/auth/refresh")]
pub async fn refresh(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request: RefreshRequest = body::json(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    let st = state.clone();
    let response = web::block(move || -> Result<TokenResponse, ApiError> {
        // A rotation that cannot be kept must not be handed out.
        if crate::storage::below_reserve(&st.settings.data_dir) {
            return Err(ApiError::NotDurable);
        }
        let now = st.clock.now_ms();
        if st.refreshes.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            let pruned = st.accounts.prune_sessions(now)?;
            tracing::debug!(pruned, "expired sessions pruned");
        }
        let s = &st.settings;
        let rotated = st.accounts.rotate(
            &request.refresh_token,
            request.replica,
            now,
            s.refresh_grace_s.saturating_mul(1000),
            s.refresh_token_ttl_s.saturating_mul(1000),
        )?;
        if rotated.retried {
            tracing::info!(device = %rotated.session.device, "refresh retried within the grace window");
        }
        let session = &rotated.session;
        issue(
            &st,
            &rotated.user,
            session.device,
            session.replica,
            session.generation,
            rotated.refresh_token.clone(),
            now,
        )
    })
    .await??;
    Ok(HttpResponse::Ok().json(response))
}

fn issue(
    state: &AppState,
    user: &User,
    device: DeviceId,
    replica: Option<ReplicaId>,
    generation: u64,
    refresh_token: String,
    now_ms: u64,
) -> Result<TokenResponse, ApiError> {
    let access_token = state.keys.issue(user.id, device, replica, generation, now_ms / 1000)?;
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
        rules: Some(state.rules.as_ref().clone()),
    })
}

pub(crate) fn check_text(field: &str, text: Option<&str>) -> Result<(), ApiError> {
    match text {
        Some(t) if t.len() > 200 => Err(ApiError::bad(
            "invalid_field",
            "at most 200 bytes",
            Some(field.to_string()),
        )),
        _ => Ok(()),
    }
}
