//! The API's errors: each a status and a JSON body `{code, message, field}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use sync_protocol::wire::ErrorBody;

use crate::accounts::AccountError;
use crate::storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    Unauthorized { code: &'static str, message: String },
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("the body is larger than {limit} bytes")]
    TooLarge { limit: usize, field: Option<String> },
    #[error("unsupported Content-Encoding: send the body plain, gzip or zstd")]
    UnsupportedEncoding,
    #[error("the cursor is older than anything this server can serve: pull again from 0")]
    CursorExpired,
    #[error("{0}")]
    Forbidden(String),
    /// 403 with a reason code of its own (`role_not_allowed`, `forbidden_scope`).
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    /// 422: well-formed, but what it asks cannot be done.
    #[error("{message}")]
    Unprocessable {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("{message}")]
    Conflict {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("too many failed logins: try again in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("not found")]
    NotFound,
    #[error("this resource answers {allow} only")]
    MethodNotAllowed { allow: String },
    #[error("{0}")]
    Missing(String),
    #[error("the store could not make this durable; retry later")]
    NotDurable,
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn bad(code: &'static str, message: impl Into<String>, field: Option<String>) -> Self {
        ApiError::BadRequest {
            code,
            message: message.into(),
            field,
        }
    }

    pub fn unauthorized(code: &'static str, message: impl Into<String>) -> Self {
        ApiError::Unauthorized {
            code,
            message: message.into(),
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::Unauthorized { code, .. }
            | ApiError::BadRequest { code, .. }
            | ApiError::Conflict { code, .. }
            | ApiError::Denied { code, .. }
            | ApiError::Unprocessable { code, .. } => code,
            ApiError::Forbidden(_) => "forbidden",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::Missing(_) => "not_found",
            ApiError::TooLarge { .. } => "too_large",
            ApiError::UnsupportedEncoding => "unsupported_encoding",
            ApiError::CursorExpired => "cursor_expired",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::NotDurable => "not_durable",
            ApiError::Internal(_) => "internal",
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            ApiError::BadRequest { field, .. }
            | ApiError::TooLarge { field, .. }
            | ApiError::Conflict { field, .. }
            | ApiError::Unprocessable { field, .. } => field.clone(),
            _ => None,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::CursorExpired => StatusCode::GONE,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Forbidden(_) | ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Conflict { .. } => StatusCode::CONFLICT,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotFound | ApiError::Missing(_) => StatusCode::NOT_FOUND,
            ApiError::NotDurable => StatusCode::INSUFFICIENT_STORAGE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        let mut response = HttpResponse::build(self.status_code());
        if let ApiError::MethodNotAllowed { allow } = self {
            response.insert_header((actix_web::http::header::ALLOW, allow.as_str()));
        }
        if let ApiError::RateLimited { retry_after_s } = self {
            response.insert_header((actix_web::http::header::RETRY_AFTER, retry_after_s.to_string()));
        }
        response.json(ErrorBody {
            code: self.code().into(),
            message: self.to_string(),
            field: self.field(),
        })
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        if e.is_not_durable() {
            tracing::error!(error = %e, "push not durable");
            ApiError::NotDurable
        } else {
            ApiError::Internal(e.to_string())
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::BadCredentials => ApiError::unauthorized("bad_credentials", "wrong username or password"),
            AccountError::InvalidToken(why) => ApiError::unauthorized("invalid_token", why),
            AccountError::DeviceRevoked => ApiError::unauthorized(
                "device_revoked",
                "this device was revoked by an administrator: enrol it again",
            ),
            AccountError::SessionRevoked => {
                ApiError::unauthorized("session_revoked", "this device's sessions were revoked: log in again")
            }
            AccountError::TokenReused => ApiError::unauthorized(
                "token_reused",
                "this refresh token was already used: the device's sessions are revoked, log in again",
            ),
            AccountError::UserDisabled => ApiError::unauthorized("user_disabled", "this account is disabled"),
            AccountError::Invalid { field, message } => ApiError::bad("invalid_field", message, Some(field)),
            AccountError::UserExists(name) => ApiError::Conflict {
                code: "user_exists",
                message: format!("the user {name} exists"),
                field: Some("username".into()),
            },
            AccountError::ReplicaTaken { field } => ApiError::Conflict {
                code: "replica_taken",
                message: "this replica id belongs to another device: a new store makes a new replica id".into(),
                field: Some(field.into()),
            },
            AccountError::LastAdmin => ApiError::Conflict {
                code: "last_admin",
                message: "this change would leave no enabled admin".into(),
                field: None,
            },
            e @ AccountError::NotFound { .. } => ApiError::Missing(e.to_string()),
            // A login or refresh whose session cannot be written (a full disk): retry later.
            AccountError::Sled(sled::Error::Io(e)) => {
                tracing::error!(error = %e, "accounts not durable");
                ApiError::NotDurable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<actix_web::error::BlockingError> for ApiError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        ApiError::Internal(e.to_string())
    }
}
