//! The photo and upload errors: each a status and the API's JSON body
//! `{code, message, field}`, with the tus headers a stock client expects.

use std::path::Path;

use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::{HttpResponse, ResponseError};
use sync_protocol::wire::ErrorBody;

use crate::error::ApiError;

/// The tus protocol version this server speaks.
pub const TUS_VERSION: &str = "1.0.0";

#[derive(Debug, thiserror::Error)]
pub enum PhotoError {
    /// Authentication and other API errors, passed through.
    #[error(transparent)]
    Api(#[from] ApiError),
    #[error("{message}")]
    BadRequest {
        code: &'static str,
        message: String,
        field: Option<String>,
    },
    #[error("the request must say Tus-Resumable: {TUS_VERSION}")]
    TusVersion,
    #[error("no such upload or photo")]
    NotFound,
    #[error("this upload expired or was completed long ago: create a new one")]
    Gone,
    #[error("you may not read or attach this")]
    Forbidden,
    #[error("the upload is at offset {current}, not {sent}: ask with HEAD and continue from there")]
    OffsetMismatch { current: u64, sent: u64 },
    #[error("another request is writing to this upload; retry shortly")]
    Busy,
    #[error("the chunk's {algorithm} checksum does not match its bytes; nothing of it was kept")]
    ChecksumMismatch { algorithm: &'static str },
    #[error("the upload's SHA-256 is {actual}, not the declared {declared}; it was discarded")]
    Sha256Mismatch { declared: String, actual: String },
    #[error("{what} is {size} bytes, over the limit of {limit} bytes")]
    TooLarge { what: &'static str, size: u64, limit: u64 },
    #[error("a PATCH body must be Content-Type: application/offset+octet-stream")]
    WrongContentType,
    #[error("{0}: accepted are JPEG, PNG, WebP, HEIC and PDF; the upload was discarded")]
    UnsupportedFormat(String),
    #[error("the {format} image cannot be read ({reason}); the upload was discarded")]
    UnreadableImage { format: &'static str, reason: String },
    #[error("the image is {width}×{height} = {pixels} pixels, over the limit of {limit}; the upload was discarded")]
    TooManyPixels {
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    /// Writing would leave less free space than photo uploads must leave
    /// for the records (nothing was written).
    #[error(
        "{needed} bytes would leave less than the {reserve} bytes kept free for records ({free} free): retry later"
    )]
    StorageFull {
        needed: u64,
        free: u64,
        reserve: u64,
        /// `Upload-Length` at creation, `body` for a PATCH's bytes.
        field: &'static str,
    },
    /// The disk refused a write (ENOSPC, or a quota) although the free-space
    /// check let it through: something else filled the disk meanwhile. A
    /// client retries later, as after `StorageFull`; an unwritten PATCH keeps
    /// nothing of its body.
    #[error("the disk holding the photos is full: retry later")]
    DiskFull { path: String, source: std::io::Error },
    #[error("{limit} uploads of yours are unfinished: finish or delete one first")]
    TooManyUploads { limit: usize },
    #[error("the range is outside the {size} bytes of the file")]
    RangeNotSatisfiable { size: u64 },
    #[error("this file has no preview (only JPEG, PNG and WebP get one)")]
    NoPreview,
    #[error("the thumbnail is being made; retry shortly")]
    ThumbnailPending,
    #[error("file {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("the photo store failed: {0}")]
    Sled(#[from] sled::Error),
    #[error("a stored photo value does not decode ({what}): {reason}")]
    Corrupt { what: &'static str, reason: String },
    #[error("internal error: {0}")]
    Internal(String),
}

impl PhotoError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        if is_disk_full(&source) {
            return PhotoError::DiskFull {
                path: path.display().to_string(),
                source,
            };
        }
        PhotoError::Io {
            path: path.display().to_string(),
            source,
        }
    }

    pub fn bad(code: &'static str, message: impl Into<String>, field: Option<&str>) -> Self {
        PhotoError::BadRequest {
            code,
            message: message.into(),
            field: field.map(str::to_string),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            PhotoError::Api(_) => "api",
            PhotoError::BadRequest { code, .. } => code,
            PhotoError::TusVersion => "tus_version",
            PhotoError::NotFound => "not_found",
            PhotoError::Gone => "upload_expired",
            PhotoError::Forbidden => "forbidden",
            PhotoError::OffsetMismatch { .. } => "offset_mismatch",
            PhotoError::Busy => "upload_busy",
            PhotoError::ChecksumMismatch { .. } => "checksum_mismatch",
            PhotoError::Sha256Mismatch { .. } => "sha256_mismatch",
            PhotoError::TooLarge { .. } => "too_large",
            PhotoError::WrongContentType => "wrong_content_type",
            PhotoError::UnsupportedFormat(_) => "unsupported_format",
            PhotoError::UnreadableImage { .. } => "unreadable_image",
            PhotoError::TooManyPixels { .. } => "too_many_pixels",
            PhotoError::RangeNotSatisfiable { .. } => "range_not_satisfiable",
            PhotoError::NoPreview => "no_preview",
            PhotoError::ThumbnailPending => "thumbnail_pending",
            PhotoError::StorageFull { .. } | PhotoError::DiskFull { .. } => "photo_storage_full",
            PhotoError::TooManyUploads { .. } => "too_many_uploads",
            PhotoError::Io { .. } | PhotoError::Sled(_) | PhotoError::Corrupt { .. } | PhotoError::Internal(_) => {
                "internal"
            }
        }
    }

    fn field(&self) -> Option<String> {
        match self {
            PhotoError::BadRequest { field, .. } => field.clone(),
            PhotoError::OffsetMismatch { .. } => Some("Upload-Offset".into()),
            PhotoError::ChecksumMismatch { .. } => Some("Upload-Checksum".into()),
            PhotoError::Sha256Mismatch { .. } => Some("Upload-Metadata.sha256".into()),
            PhotoError::TusVersion => Some("Tus-Resumable".into()),
            PhotoError::WrongContentType => Some("Content-Type".into()),
            PhotoError::StorageFull { field, .. } => Some((*field).into()),
            _ => None,
        }
    }

    /// Whether the server, not the client, is at fault.
    pub fn is_internal(&self) -> bool {
        matches!(
            self,
            PhotoError::Io { .. } | PhotoError::Sled(_) | PhotoError::Corrupt { .. } | PhotoError::Internal(_)
        )
    }
}

/// Whether an I/O error says the disk, or the quota on it, is full.
pub(crate) fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

impl From<crate::storage::StorageError> for PhotoError {
    fn from(e: crate::storage::StorageError) -> Self {
        PhotoError::Internal(e.to_string())
    }
}

impl From<actix_web::error::BlockingError> for PhotoError {
    fn from(e: actix_web::error::BlockingError) -> Self {
        PhotoError::Internal(e.to_string())
    }
}

/// tus's own status for a failed checksum.
pub fn checksum_mismatch_status() -> StatusCode {
    StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST)
}

impl ResponseError for PhotoError {
    fn status_code(&self) -> StatusCode {
        match self {
            PhotoError::Api(e) => e.status_code(),
            PhotoError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            PhotoError::TusVersion => StatusCode::PRECONDITION_FAILED,
            PhotoError::NotFound | PhotoError::NoPreview => StatusCode::NOT_FOUND,
            PhotoError::Gone => StatusCode::GONE,
            PhotoError::Forbidden => StatusCode::FORBIDDEN,
            PhotoError::OffsetMismatch { .. } => StatusCode::CONFLICT,
            PhotoError::Busy => StatusCode::LOCKED,
            PhotoError::ChecksumMismatch { .. } | PhotoError::Sha256Mismatch { .. } => checksum_mismatch_status(),
            PhotoError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            PhotoError::WrongContentType | PhotoError::UnsupportedFormat(_) | PhotoError::UnreadableImage { .. } => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            PhotoError::TooManyPixels { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            PhotoError::RangeNotSatisfiable { .. } => StatusCode::RANGE_NOT_SATISFIABLE,
            PhotoError::ThumbnailPending => StatusCode::SERVICE_UNAVAILABLE,
            PhotoError::StorageFull { .. } | PhotoError::DiskFull { .. } => StatusCode::INSUFFICIENT_STORAGE,
            PhotoError::TooManyUploads { .. } => StatusCode::TOO_MANY_REQUESTS,
            PhotoError::Io { .. } | PhotoError::Sled(_) | PhotoError::Corrupt { .. } | PhotoError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let PhotoError::Api(e) = self {
            let mut r = e.error_response();
            r.headers_mut()
                .insert(tus_resumable_name(), HeaderValue::from_static(TUS_VERSION));
            return r;
        }
        if self.is_internal() {
            tracing::error!(error = %self, "photo store error");
        }
        if let PhotoError::DiskFull { path, source } = self {
            tracing::warn!(path, error = %source, "the photo disk is full: a write was refused");
        }
        let mut b = HttpResponse::build(self.status_code());
        b.insert_header(("Tus-Resumable", TUS_VERSION));
        // Errors are never cached, and a photo error must not be compressed into a JPEG's place.
        b.insert_header(("Cache-Control", "no-store"));
        match self {
            PhotoError::TusVersion => {
                b.insert_header(("Tus-Version", TUS_VERSION));
            }
            PhotoError::OffsetMismatch { current, .. } => {
                b.insert_header(("Upload-Offset", current.to_string()));
            }
            PhotoError::RangeNotSatisfiable { size } => {
                b.insert_header(("Content-Range", format!("bytes */{size}")));
            }
            PhotoError::Busy | PhotoError::ThumbnailPending => {
                b.insert_header(("Retry-After", "1"));
            }
            _ => {}
        }
        let message = if self.is_internal() {
            "internal error".to_string()
        } else {
            self.to_string()
        };
        b.json(ErrorBody {
            code: self.code().into(),
            message,
            field: self.field(),
        })
    }
}

fn tus_resumable_name() -> actix_web::http::header::HeaderName {
    actix_web::http::header::HeaderName::from_static("tus-resumable")
}
