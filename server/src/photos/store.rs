//! Photo metadata in sled and the content-addressed blob files.

use std::collections::BTreeSet;
use std::path::Path;

use mobile_schema::ids::{RecordId, UserId};
use serde::{Deserialize, Serialize};

use super::exif::ExifFacts;
use super::format::Format;
use super::{PhotoError, Photos};

/// The `photos` tree: one-byte family tags, then the key.
pub mod keys {
    use mobile_schema::ids::RecordId;

    pub const TREE: &str = "photos";
    /// `u` + upload id → `Upload` JSON.
    pub const UPLOAD: u8 = b'u';
    /// `p` + SHA-256 hex → `PhotoMeta` JSON.
    pub const PHOTO: u8 = b'p';
    /// `e` + inspection id → `EvidenceReport` JSON.
    pub const EVIDENCE: u8 = b'e';
    /// `x` + SHA-256 hex + record id → empty: the record declares or names the photo.
    pub const NAMED_BY: u8 = b'x';
    /// `v` + SHA-256 hex of a photo → SHA-256 hex of the small preview a tablet
    /// sent ahead of it over a slow link.
    pub const PREVIEW: u8 = b'v';

    pub fn preview(of: &str) -> Vec<u8> {
        tagged(PREVIEW, of.as_bytes())
    }

    pub fn upload(id: &str) -> Vec<u8> {
        tagged(UPLOAD, id.as_bytes())
    }

    pub fn photo(sha: &str) -> Vec<u8> {
        tagged(PHOTO, sha.as_bytes())
    }

    pub fn evidence(record: RecordId) -> Vec<u8> {
        tagged(EVIDENCE, record.as_uuid().as_bytes())
    }

    pub fn named_by(sha: &str, record: RecordId) -> Vec<u8> {
        let mut k = tagged(NAMED_BY, sha.as_bytes());
        k.extend_from_slice(record.as_uuid().as_bytes());
        k
    }

    pub fn named_by_prefix(sha: &str) -> Vec<u8> {
        tagged(NAMED_BY, sha.as_bytes())
    }

    fn tagged(tag: u8, rest: &[u8]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + rest.len() + 16);
        k.push(tag);
        k.extend_from_slice(rest);
        k
    }
}

/// Whether a photo's thumbnail exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThumbState {
    /// Queued or waiting for room in the queue.
    Pending,
    Ready,
    /// HEIC and PDF: stored and served without a preview.
    NoPreview,
    /// The decoder gave up (a corrupt or unusual file).
    Failed,
}

/// A stored photo.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoMeta {
    pub sha256: String,
    pub size: u64,
    pub format: Format,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    #[serde(default)]
    pub exif: ExifFacts,
    /// When the first complete copy arrived (server clock).
    pub stored_ms: u64,
    pub stored_by: UserId,
    /// Completed uploads of it, the first included: more than one is a deduplication.
    #[serde(default)]
    pub uploads: u32,
    /// Records named in the uploads' metadata.
    #[serde(default)]
    pub records: BTreeSet<RecordId>,
    pub thumbnail: ThumbState,
    /// When the collector first found nothing referencing it; cleared when something does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreferenced_since_ms: Option<u64>,
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, PhotoError> {
    serde_json::from_slice(bytes).map_err(|e| PhotoError::Corrupt {
        what,
        reason: e.to_string(),
    })
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our own types, string keys only: serializing cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Whether `s` is a SHA-256 in lower-case hex (the only form used in paths).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

impl Photos {
    pub fn photo(&self, sha: &str) -> Result<Option<PhotoMeta>, PhotoError> {
        if !is_sha256_hex(sha) {
            return Ok(None);
        }
        match self.inner.tree.get(keys::photo(sha))? {
            Some(v) => Ok(Some(decode(&v, "photo")?)),
            None => Ok(None),
        }
    }

    pub(crate) fn put_photo(&self, meta: &PhotoMeta) -> Result<(), PhotoError> {
        self.inner.tree.insert(keys::photo(&meta.sha256), encode(meta))?;
        Ok(())
    }

    /// Every stored photo's metadata.
    pub fn list_photos(&self) -> Result<Vec<PhotoMeta>, PhotoError> {
        let mut out = Vec::new();
        for item in self.inner.tree.scan_prefix([keys::PHOTO]) {
            let (_, v) = item?;
            out.push(decode(&v, "photo")?);
        }
        Ok(out)
    }

    /// Records that named `sha` in an upload or declare it as evidence.
    pub fn records_naming(&self, sha: &str) -> Result<Vec<RecordId>, PhotoError> {
        let prefix = keys::named_by_prefix(sha);
        let mut out = Vec::new();
        for item in self.inner.tree.scan_prefix(&prefix) {
            let (k, _) = item?;
            if let Some(id) = k.get(prefix.len()..).and_then(|b| uuid::Uuid::from_slice(b).ok()) {
                out.push(RecordId(id));
            }
        }
        Ok(out)
    }

    pub(crate) fn note_named_by(&self, sha: &str, record: RecordId) -> Result<(), PhotoError> {
        self.inner.tree.insert(keys::named_by(sha, record), &[][..])?;
        Ok(())
    }

    /// Moves a verified file into the blob store under its digest. Returns
    /// false when the blob was already there (the file is then deleted): the
    /// photo is stored once.
    pub(crate) fn install_blob(&self, file: &Path, sha: &str) -> Result<bool, PhotoError> {
        let dest = self.inner.dirs.blob(sha);
        if dest.exists() {
            std::fs::remove_file(file).map_err(|e| PhotoError::io(file, e))?;
            return Ok(false);
        }
        if let Some(dir) = dest.parent() {
            std::fs::create_dir_all(dir).map_err(|e| PhotoError::io(dir, e))?;
        }
        // The bytes are on disk before the name says they are complete.
        let f = std::fs::File::open(file).map_err(|e| PhotoError::io(file, e))?;
        f.sync_all().map_err(|e| PhotoError::io(file, e))?;
        drop(f);
        std::fs::rename(file, &dest).map_err(|e| PhotoError::io(&dest, e))?;
        if let Some(dir) = dest.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(true)
    }
}
