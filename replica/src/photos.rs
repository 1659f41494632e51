//! The photo queue: files copied into `blobs/<sha256>` of the replica dir and
//! queued for upload. The digest is computed while copying, so a photo is read once.

use std::io::{Read, Write as _};
use std::path::Path;

use mobile_schema::ids::Sha256Hex;
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{ReplicaError, decode, encode};
use crate::keys;
use crate::store::{Replica, T, Write};

/// A queued photo.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoEntry {
    pub sha256: Sha256Hex,
    pub bytes: u64,
    pub queued_ms: u64,
    pub uploaded: bool,
    /// The record the photo belongs to: it is sent after that record syncs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<mobile_schema::ids::RecordId>,
    /// The tus upload in progress, saved before its first byte so it resumes after a restart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_url: Option<String>,
    /// Its preview has been sent (or it has none).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preview_sent: bool,
    /// The server refused it for good (a format it does not take, a record
    /// out of this user's scope): kept, with why, and not sent again until
    /// it is attached again. The photos after it in the queue go on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<PhotoRefusal>,
}

/// Why the server refused a photo, as it answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhotoRefusal {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl Replica {
    /// Copy a photo into the store under its SHA-256 and queue it for upload.
    pub fn attach_photo(&mut self, path: impl AsRef<Path>) -> Result<Sha256Hex, ReplicaError> {
        let path = path.as_ref();
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| ReplicaError::Io { path: p, source }
        };
        let blobs = self.dir.join(keys::BLOBS_DIR);
        // A temp name first: a photo is only under its digest once complete.
        let tmp = blobs.join(format!(".incoming-{}", uuid::Uuid::new_v4()));
        let mut src = std::fs::File::open(path).map_err(io(path))?;
        let mut dst = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        let mut hasher = sha2::Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = src.read(&mut buf).map_err(io(path))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            dst.write_all(&buf[..n]).map_err(io(&tmp))?;
            total += n as u64;
        }
        dst.sync_all().map_err(io(&tmp))?;
        drop(dst);
        let sha =
            Sha256Hex::try_from(hex::encode(hasher.finalize())).map_err(|e| ReplicaError::Protocol(e.to_string()))?;
        let final_path = self.sha_path(&sha);
        std::fs::rename(&tmp, &final_path).map_err(io(&final_path))?;
        let key = keys::photo(&sha);
        if self.t.photos.get(&key)?.is_none() {
            let entry = PhotoEntry {
                sha256: sha.clone(),
                bytes: total,
                queued_ms: self.clock.now_ms(),
                uploaded: false,
                record: None,
                upload_url: None,
                preview_sent: false,
                refused: None,
            };
            let mut w = Write::default();
            w.put(T::Photos, key, encode(keys::PHOTOS, &entry)?);
            self.commit(w)?;
        }
        Ok(sha)
    }

    /// Photos not yet uploaded.
    pub fn queued_photos(&self) -> Result<Vec<PhotoEntry>, ReplicaError> {
        let mut out = Vec::new();
        for item in self.t.photos.iter() {
            let (k, v) = item?;
            let e: PhotoEntry = decode(keys::PHOTOS, &k, &v)?;
            if !e.uploaded {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Where a stored photo's bytes are.
    pub fn photo_path(&self, sha: &Sha256Hex) -> std::path::PathBuf {
        self.sha_path(sha)
    }
}
