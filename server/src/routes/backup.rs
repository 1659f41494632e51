//! `POST /api/v1/admin/backup`: a consistent copy of the running server's store
//! into a folder on the server's machine (admin only).

use std::path::PathBuf;

use actix_web::{HttpRequest, HttpResponse, post, web};
use serde::{Deserialize, Serialize};

use crate::auth::Authenticated;
use crate::body;
use crate::error::ApiError;
use crate::startup::AppState;
use crate::storage::backup::{self as store_backup, BackupError};

/// Longest folder path taken.
const MAX_DIR_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackupRequest {
    /// An absolute path on the server's machine: a new or empty folder.
    pub dir: String,
}

impl From<BackupError> for ApiError {
    fn from(e: BackupError) -> Self {
        match e {
            BackupError::NotEmpty { .. } => ApiError::Conflict {
                code: "backup_dir_not_empty",
                message: e.to_string(),
                field: Some("dir".into()),
            },
            BackupError::Unsupported => ApiError::Conflict {
                code: "backup_unsupported",
                message: e.to_string(),
                field: None,
            },
            BackupError::NoSpace { .. } => {
                tracing::error!(error = %e, "backup refused: not enough space");
                ApiError::NotDurable
            }
            // No space for the copy (ENOSPC), or sled's own I/O failing.
            BackupError::Io { ref source, .. } if source.raw_os_error() == Some(28) => {
                tracing::error!(error = %e, "backup: disk full");
                ApiError::NotDurable
            }
            BackupError::Sled(sled::Error::Io(ref source)) => {
                tracing::error!(error = %source, "backup: the store's I/O failed");
                ApiError::NotDurable
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

#[utoipa::path(
    post,
    path = "/api/v1/admin/backup",
    tag = "admin",
    summary = "Take a consistent copy of the store into a new or empty folder on the server",
    responses((status = 201, description = "what was copied, and the epoch"), (status = 400, description = "relative path or inside the data folder"), (status = 403, description = "not an admin"), (status = 409, description = "folder not empty"), (status = 507, description = "no room for the copy")),
    security(("bearer" = [])),
)]
#[post("/api/v1/admin/backup")]
pub async fn backup(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    auth.require_admin()?;
    let request: BackupRequest = body::json(&req, payload, state.settings.limits.max_small_body_bytes).await?;
    if request.dir.len() > MAX_DIR_BYTES || request.dir.contains('\0') {
        return Err(ApiError::bad(
            "invalid_field",
            format!("dir is a path of at most {MAX_DIR_BYTES} bytes"),
            Some("dir".into()),
        ));
    }
    let dir = PathBuf::from(&request.dir);
    if !dir.is_absolute() || dir.components().any(|c| c == std::path::Component::ParentDir) {
        return Err(ApiError::bad(
            "invalid_field",
            "dir is an absolute path on the server's machine, without `..`",
            Some("dir".into()),
        ));
    }
    let data = state.settings.data_dir.clone();
    let st = state.clone();
    let info = web::block(move || -> Result<_, ApiError> {
        // Compared as real paths: the data folder may be given relative, and a
        // backup inside it would copy the blobs into themselves.
        if resolved(&dir).starts_with(resolved(&data)) {
            return Err(ApiError::bad(
                "invalid_field",
                "dir must be outside the server's data folder",
                Some("dir".into()),
            ));
        }
        let mut info = st.storage.backup(&dir, st.clock.now_ms())?;
        // Blobs after the database: every blob its metadata names is on disk by then.
        info.photos =
            store_backup::copy_blobs(&data.join(store_backup::BLOBS_DIR), &dir.join(store_backup::BLOBS_DIR))?;
        store_backup::write_manifest(&dir, &info)?;
        Ok(info)
    })
    .await??;
    tracing::info!(by = %auth.user.username, dir = %info.dir, commit_seq = info.commit_seq, "backup taken");
    Ok(HttpResponse::Created().json(info))
}

/// `path` with its longest existing ancestor resolved (symbolic links, a
/// relative start) and the rest, not yet made, appended.
fn resolved(path: &std::path::Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = at.canonicalize() {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}
