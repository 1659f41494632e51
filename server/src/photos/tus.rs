//! Resumable uploads (tus 1.0: core, creation, checksum, expiration,
//! termination), independent of HTTP so they can be driven in process.
//!
//! An upload is a file under `uploads/` and an [`Upload`] in sled whose
//! `offset` is the truth: a PATCH first cuts the file back to it, so bytes
//! written but never recorded (a crash mid-chunk) are dropped, not trusted.
//! Bytes are streamed to the file through a fixed buffer, never held whole.
//! While the server runs, each upload's SHA-256 state follows its offset in
//! memory, so completion needs no second read; after a restart the digest is
//! computed from the file instead.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::sync::Mutex;

use actix_web::web;
use actix_web::web::Bytes;
use base64::Engine as _;
use futures_util::{Stream, StreamExt as _};
use mobile_schema::ids::{DeviceId, RecordId, UserId};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::format::{Format, SNIFF_BYTES, Sniff, sniff};
use super::store::{PhotoMeta, ThumbState, decode, encode, is_sha256_hex, keys};
use super::{PhotoError, Photos, exif};

/// Bytes gathered from the request before each write: bounds memory per upload.
const WRITE_BUF: usize = 256 * 1024;

/// An upload in progress (or completed, kept until it expires so a client that
/// lost the last answer learns it is done).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upload {
    pub id: String,
    pub user: UserId,
    pub device: DeviceId,
    /// `Upload-Length`.
    pub length: u64,
    /// Bytes received and recorded.
    pub offset: u64,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// `Upload-Metadata`, decoded.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub declared_sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RecordId>,
    /// Decided once the first bytes are in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
    /// The first bytes, until the format is decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub head: Vec<u8>,
    /// Known once the image header is in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dims: Option<(u32, u32)>,
    /// The stored photo's digest, once complete.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed: Option<String>,
}

/// A checksum the client sent for the body of one PATCH (`Upload-Checksum`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkChecksum {
    pub algorithm: ChecksumAlgorithm,
    pub digest: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgorithm {
    Sha1,
    Sha256,
}

impl ChecksumAlgorithm {
    pub fn name(self) -> &'static str {
        match self {
            ChecksumAlgorithm::Sha1 => "sha1",
            ChecksumAlgorithm::Sha256 => "sha256",
        }
    }
}

/// The algorithms of the checksum extension, as `Tus-Checksum-Algorithm` lists them.
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256";

impl ChunkChecksum {
    /// Parses `Upload-Checksum: <algorithm> <base64 digest>`.
    pub fn parse(header: &str) -> Result<Self, PhotoError> {
        let bad = |m: &str| PhotoError::bad("invalid_checksum", m.to_string(), Some("Upload-Checksum"));
        let (alg, b64) = header
            .trim()
            .split_once(' ')
            .ok_or_else(|| bad("Upload-Checksum is `<algorithm> <base64 digest>`"))?;
        let algorithm = match alg.to_ascii_lowercase().as_str() {
            "sha1" => ChecksumAlgorithm::Sha1,
            "sha256" => ChecksumAlgorithm::Sha256,
            _ => return Err(bad("supported checksum algorithms are sha1 and sha256")),
        };
        let digest = base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|_| bad("the checksum is not base64"))?;
        let expected = match algorithm {
            ChecksumAlgorithm::Sha1 => 20,
            ChecksumAlgorithm::Sha256 => 32,
        };
        if digest.len() != expected {
            return Err(bad("the checksum has the wrong length for its algorithm"));
        }
        Ok(Self { algorithm, digest })
    }
}

/// Parses `Upload-Metadata`: comma-separated `key base64value` pairs.
pub fn parse_metadata(header: &str) -> Result<BTreeMap<String, String>, PhotoError> {
    let bad = |m: String| PhotoError::bad("invalid_metadata", m, Some("Upload-Metadata"));
    let mut out = BTreeMap::new();
    for pair in header.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = match pair.split_once(' ') {
            Some((k, v)) => (k, v.trim()),
            None => (pair, ""),
        };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad(format!("metadata key {key:?} is not plain ASCII")));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .map_err(|_| bad(format!("the value of metadata key {key:?} is not base64")))?;
        let text = String::from_utf8(bytes).map_err(|_| bad(format!("metadata {key:?} is not UTF-8")))?;
        if out.insert(key.to_string(), text).is_some() {
            return Err(bad(format!("metadata key {key:?} appears twice")));
        }
    }
    Ok(out)
}

/// A running SHA-256 of an upload's first `offset` bytes.
#[derive(Clone)]
struct HashState {
    offset: u64,
    sha256: Sha256,
}

enum Slot {
    /// A PATCH or a completion holds the upload.
    Busy,
    Idle(Option<HashState>),
}

/// Which uploads a request is writing, and their running digests.
#[derive(Default)]
pub(crate) struct Sessions {
    slots: Mutex<HashMap<String, Slot>>,
    /// Completion and collection touch shared photo metadata and blobs one at a time.
    pub(crate) finalize: Mutex<()>,
    /// Creations one at a time, so two cannot both pass the per-user count.
    create: Mutex<()>,
}

/// Holds an upload for one request; gives it back (with its digest state) when dropped.
struct Claim<'a> {
    sessions: &'a Sessions,
    id: String,
    state: Option<HashState>,
}

impl Sessions {
    fn claim(&self, id: &str) -> Option<Claim<'_>> {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        let state = match slots.insert(id.to_string(), Slot::Busy) {
            Some(Slot::Busy) => return None,
            Some(Slot::Idle(s)) => s,
            None => None,
        };
        Some(Claim {
            sessions: self,
            id: id.to_string(),
            state,
        })
    }

    fn forget(&self, id: &str) {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.remove(id);
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        let mut slots = self.sessions.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.insert(self.id.clone(), Slot::Idle(self.state.take()));
    }
}

/// What a PATCH body is written and hashed with, moved to a blocking thread per write.
struct Sink {
    file: std::fs::File,
    /// The upload's file, for errors and the free-space check.
    path: std::path::PathBuf,
    /// Free space each write must leave (see [`Photos::free_reserve`]).
    reserve: u64,
    sha256: Option<Sha256>,
    chunk: Option<ChunkHasher>,
    buf: Vec<u8>,
    written: u64,
}

enum ChunkHasher {
    Sha1(Sha1),
    Sha256(Sha256),
}

impl Sink {
    /// Writes the buffer; hands the sink back either way so a refusal can
    /// still cut the file back.
    fn flush(mut self) -> (Self, Result<(), PhotoError>) {
        let result = self.write_buf();
        (self, result)
    }

    fn write_buf(&mut self) -> Result<(), PhotoError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        super::check_space(&self.path, self.buf.len() as u64, self.reserve, "body")?;
        self.file
            .write_all(&self.buf)
            .map_err(|e| PhotoError::io(&self.path, e))?;
        if let Some(h) = self.sha256.as_mut() {
            h.update(&self.buf);
        }
        match self.chunk.as_mut() {
            Some(ChunkHasher::Sha1(h)) => h.update(&self.buf),
            Some(ChunkHasher::Sha256(h)) => h.update(&self.buf),
            None => {}
        }
        self.written += self.buf.len() as u64;
        self.buf.clear();
        Ok(())
    }
}

/// What a PATCH did.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub upload: Upload,
    /// The photo, when this PATCH completed the upload.
    pub photo: Option<PhotoMeta>,
    /// The completed photo was already stored: this upload added nothing.
    pub deduplicated: bool,
}

fn random_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

fn valid_upload_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Photos {
    /// Starts an upload of `length` bytes (tus creation).
    pub fn create_upload(
        &self,
        user: UserId,
        device: DeviceId,
        length: u64,
        metadata: BTreeMap<String, String>,
    ) -> Result<Upload, PhotoError> {
        let limit = self.inner.settings.max_upload_bytes;
        if length > limit {
            return Err(PhotoError::TooLarge {
                what: "the upload",
                size: length,
                limit,
            });
        }
        let declared_sha256 = match metadata.get("sha256") {
            Some(s) => {
                let s = s.trim().to_ascii_lowercase();
                if !is_sha256_hex(&s) {
                    return Err(PhotoError::bad(
                        "invalid_metadata",
                        "metadata sha256 is the SHA-256 of the file in hex",
                        Some("Upload-Metadata.sha256"),
                    ));
                }
                Some(s)
            }
            None => None,
        };
        let record = match metadata.get("record") {
            Some(r) => Some(r.trim().parse::<RecordId>().map_err(|_| {
                PhotoError::bad(
                    "invalid_metadata",
                    "metadata record is the id of the record the photo belongs to",
                    Some("Upload-Metadata.record"),
                )
            })?),
            None => None,
        };
        if let Some(of) = metadata.get("preview_of")
            && !is_sha256_hex(of.trim())
        {
            return Err(PhotoError::bad(
                "invalid_metadata",
                "metadata preview_of is the SHA-256 (hex) of the photo this is a preview of",
                Some("Upload-Metadata.preview_of"),
            ));
        }
        let now = self.now_ms();
        let _one_at_a_time = self.inner.sessions.create.lock().unwrap_or_else(|p| p.into_inner());
        let limit = self.inner.settings.max_open_uploads_per_user;
        if self.open_uploads(user, now)? >= limit {
            return Err(PhotoError::TooManyUploads { limit });
        }
        // The whole declared length must fit now; each PATCH checks again.
        super::check_space(&self.inner.dirs.uploads, length, self.free_reserve(), "Upload-Length")?;
        let upload = Upload {
            id: random_id(),
            user,
            device,
            length,
            offset: 0,
            created_ms: now,
            expires_ms: now + self.inner.settings.upload_expiry_s * 1000,
            metadata,
            declared_sha256,
            record,
            format: None,
            head: Vec::new(),
            dims: None,
            completed: None,
        };
        let path = self.inner.dirs.upload(&upload.id);
        std::fs::File::create(&path).map_err(|e| PhotoError::io(&path, e))?;
        self.put_upload(&upload)?;
        Ok(upload)
    }

    /// How many unfinished, unexpired uploads `user` holds.
    fn open_uploads(&self, user: UserId, now_ms: u64) -> Result<usize, PhotoError> {
        let mut open = 0;
        for item in self.inner.tree.scan_prefix([keys::UPLOAD]) {
            let (_, v) = item?;
            let u: Upload = decode(&v, "upload")?;
            if u.user == user && u.completed.is_none() && u.expires_ms > now_ms {
                open += 1;
            }
        }
        Ok(open)
    }

    fn put_upload(&self, upload: &Upload) -> Result<(), PhotoError> {
        self.inner.tree.insert(keys::upload(&upload.id), encode(upload))?;
        Ok(())
    }

    /// The upload `id` of `user`: another user's upload is not found, an expired one is gone.
    pub fn upload(&self, id: &str, user: UserId) -> Result<Upload, PhotoError> {
        if !valid_upload_id(id) {
            return Err(PhotoError::NotFound);
        }
        let upload: Upload = match self.inner.tree.get(keys::upload(id))? {
            Some(v) => decode(&v, "upload")?,
            None => return Err(PhotoError::NotFound),
        };
        if upload.user != user {
            return Err(PhotoError::NotFound);
        }
        if upload.expires_ms <= self.now_ms() {
            return Err(PhotoError::Gone);
        }
        Ok(upload)
    }

    /// Deletes an upload and its bytes (tus termination; also every refusal).
    pub fn terminate(&self, id: &str, user: UserId) -> Result<(), PhotoError> {
        self.upload(id, user)?;
        let _claim = self.inner.sessions.claim(id).ok_or(PhotoError::Busy)?;
        self.discard(id)
    }

    fn discard(&self, id: &str) -> Result<(), PhotoError> {
        let path = self.inner.dirs.upload(id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(PhotoError::io(&path, e)),
        }
        self.inner.tree.remove(keys::upload(id))?;
        Ok(())
    }

    /// Appends a PATCH body at `offset` (tus core + checksum). A body cut off
    /// midway keeps what arrived, unless it carried a checksum, which cannot be
    /// checked then. Refusals (format, pixels, digest) discard the upload.
    pub async fn append<S, E>(
        &self,
        id: &str,
        user: UserId,
        offset: u64,
        checksum: Option<ChunkChecksum>,
        body: S,
    ) -> Result<Appended, PhotoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        self.upload(id, user)?;
        // A client resuming right after a cut may find its old request still
        // draining: wait a little before answering 423.
        let mut claim = None;
        for _ in 0..40 {
            if let Some(c) = self.inner.sessions.claim(id) {
                claim = Some(c);
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let mut claim = claim.ok_or(PhotoError::Busy)?;
        // Read again under the claim: another request may have moved it.
        let mut upload = self.upload(id, user)?;
        if upload.completed.is_some() || upload.offset != offset {
            return Err(PhotoError::OffsetMismatch {
                current: upload.offset,
                sent: offset,
            });
        }
        let result = self.write_body(&mut upload, &mut claim, checksum, body).await;
        match result {
            Ok(()) => {}
            Err(e @ (PhotoError::UnsupportedFormat(_) | PhotoError::TooManyPixels { .. })) => {
                drop(claim);
                self.inner.sessions.forget(id);
                self.discard(id)?;
                return Err(e);
            }
            Err(e) => return Err(e),
        }
        if upload.offset < upload.length {
            return Ok(Appended {
                upload,
                photo: None,
                deduplicated: false,
            });
        }
        let state = claim.state.take();
        let me = self.clone();
        // Evidence checks read and write the store: off the async worker too.
        let done = web::block(move || {
            me.complete(upload, state)
                .inspect(|appended| me.after_photo_stored(appended))
        })
        .await?;
        drop(claim);
        self.settle(id, done)
    }

    /// After a completion: a photo refused for what it is discards the
    /// upload; any other failure (a full disk, the store) keeps it, all its
    /// bytes in, for [`Self::resume_completion`].
    fn settle(&self, id: &str, done: Result<Appended, PhotoError>) -> Result<Appended, PhotoError> {
        match done {
            Ok(appended) => {
                self.inner.sessions.forget(id);
                Ok(appended)
            }
            Err(
                e @ (PhotoError::Sha256Mismatch { .. }
                | PhotoError::UnsupportedFormat(_)
                | PhotoError::UnreadableImage { .. }
                | PhotoError::TooManyPixels { .. }),
            ) => {
                self.inner.sessions.forget(id);
                self.discard(id)?;
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The upload `id` of `user`, its completion finished first when all its
    /// bytes are in but the photo was not stored: the disk refused it, or the
    /// server stopped in between. A client that finds offset == length takes
    /// the photo as sent, so that answer must only ever mean stored. Blocking.
    pub fn resume_completion(&self, id: &str, user: UserId) -> Result<Upload, PhotoError> {
        let upload = self.upload(id, user)?;
        if upload.completed.is_some() || upload.offset < upload.length {
            return Ok(upload);
        }
        // A PATCH is completing it right now: ask again shortly.
        let mut claim = self.inner.sessions.claim(id).ok_or(PhotoError::Busy)?;
        let upload = self.upload(id, user)?;
        if upload.completed.is_some() || upload.offset < upload.length {
            return Ok(upload);
        }
        // Its file went to the blobs before the stop, its photo unrecorded:
        // nothing is left to complete, so the tablet is told to send it anew
        // (404), rather than an error at every ask until the upload expires.
        let file = self.inner.dirs.upload(id);
        match std::fs::metadata(&file) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(upload = %id, "an upload whose bytes were all in lost its file: discarded, to be sent again");
                drop(claim);
                self.inner.sessions.forget(id);
                self.discard(id)?;
                return Err(PhotoError::NotFound);
            }
            Err(e) => return Err(PhotoError::io(&file, e)),
        }
        tracing::info!(upload = %id, "an upload whose bytes were all in is completed now");
        let state = claim.state.take();
        let done = self
            .complete(upload, state)
            .inspect(|appended| self.after_photo_stored(appended));
        drop(claim);
        self.settle(id, done).map(|appended| appended.upload)
    }

    async fn write_body<S, E>(
        &self,
        upload: &mut Upload,
        claim: &mut Claim<'_>,
        checksum: Option<ChunkChecksum>,
        mut body: S,
    ) -> Result<(), PhotoError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let start = upload.offset;
        let path = self.inner.dirs.upload(&upload.id);
        let io = |e| PhotoError::io(&path, e);
        let mut file = std::fs::OpenOptions::new().write(true).open(&path).map_err(io)?;
        // Whatever lies past the recorded offset was never acknowledged.
        file.set_len(start).map_err(io)?;
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        let before = claim.state.take().filter(|s| s.offset == start);
        let mut sink = Sink {
            file,
            path: path.clone(),
            reserve: self.free_reserve(),
            sha256: before.as_ref().map(|s| s.sha256.clone()),
            chunk: checksum.as_ref().map(|c| match c.algorithm {
                ChecksumAlgorithm::Sha1 => ChunkHasher::Sha1(Sha1::new()),
                ChecksumAlgorithm::Sha256 => ChunkHasher::Sha256(Sha256::new()),
            }),
            buf: Vec::with_capacity(WRITE_BUF),
            written: 0,
        };
        let room = upload.length - start;
        let mut cut = false;
        let mut refusal = None;
        while let Some(item) = body.next().await {
            let bytes = match item {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(upload = %upload.id, error = %e, "upload body cut");
                    cut = true;
                    break;
                }
            };
            let received = sink.written + sink.buf.len() as u64;
            if received + bytes.len() as u64 > room {
                refusal = Some(PhotoError::TooLarge {
                    what: "the body",
                    size: start + received + bytes.len() as u64,
                    limit: upload.length,
                });
                break;
            }
            if upload.format.is_none() {
                let need = SNIFF_BYTES.saturating_sub(upload.head.len());
                upload.head.extend_from_slice(&bytes[..need.min(bytes.len())]);
                if let Err(e) = self.decide_format(upload, start + received + bytes.len() as u64) {
                    refusal = Some(e);
                    break;
                }
            }
            sink.buf.extend_from_slice(&bytes);
            if sink.buf.len() >= WRITE_BUF {
                let (s, written) = web::block(move || sink.flush()).await?;
                sink = s;
                if let Err(e) = written {
                    refusal = Some(e);
                    break;
                }
            }
        }
        // A refused body keeps nothing: its buffer is not written either.
        let mut sink = if refusal.is_none() {
            let (s, written) = web::block(move || sink.flush()).await?;
            refusal = written.err();
            s
        } else {
            sink
        };
        let keep_nothing = |sink: &mut Sink| -> Result<(), PhotoError> {
            sink.file.set_len(start).map_err(io)?;
            Ok(())
        };
        if let Some(e) = refusal {
            keep_nothing(&mut sink)?;
            claim.state = before;
            return Err(e);
        }
        if let Some(expected) = checksum {
            let actual = match sink.chunk.take() {
                Some(ChunkHasher::Sha1(h)) => h.finalize().to_vec(),
                Some(ChunkHasher::Sha256(h)) => h.finalize().to_vec(),
                None => Vec::new(),
            };
            if cut || actual != expected.digest {
                keep_nothing(&mut sink)?;
                claim.state = before;
                return Err(if cut {
                    PhotoError::bad("body_cut", "the body was cut off; nothing of it was kept", None)
                } else {
                    PhotoError::ChecksumMismatch {
                        algorithm: expected.algorithm.name(),
                    }
                });
            }
        }
        upload.offset = start + sink.written;
        claim.state = sink.sha256.map(|sha256| HashState {
            offset: upload.offset,
            sha256,
        });
        if upload.format.is_none() && upload.offset == upload.length {
            self.decide_format(upload, upload.offset)?;
        }
        if let Some(fmt) = upload.format.and_then(Format::decodable)
            && upload.dims.is_none()
            && upload.offset > 0
        {
            let p = path.clone();
            if let Ok(dims) = web::block(move || read_dims(&p, fmt)).await? {
                upload.dims = Some(dims);
                self.check_pixels(dims)?;
            }
        }
        upload.expires_ms = self.now_ms() + self.inner.settings.upload_expiry_s * 1000;
        if upload.offset == upload.length {
            sink.file.sync_data().map_err(io)?;
        }
        self.put_upload(upload)?;
        if cut {
            tracing::info!(upload = %upload.id, offset = upload.offset, "kept the part of a cut body that arrived");
        }
        Ok(())
    }

    /// Decides the format from the first bytes once enough are in.
    fn decide_format(&self, upload: &mut Upload, received_total: u64) -> Result<(), PhotoError> {
        match sniff(&upload.head, upload.length) {
            Sniff::Accepted(f) => {
                upload.format = Some(f);
                upload.head.clear();
                Ok(())
            }
            Sniff::Refused(what) => Err(PhotoError::UnsupportedFormat(what)),
            Sniff::NeedMore if received_total >= upload.length => {
                Err(PhotoError::UnsupportedFormat("a file too short to be a photo".into()))
            }
            Sniff::NeedMore => Ok(()),
        }
    }

    fn check_pixels(&self, (width, height): (u32, u32)) -> Result<(), PhotoError> {
        let pixels = u64::from(width) * u64::from(height);
        let limit = self.inner.settings.max_pixels;
        if pixels > limit {
            return Err(PhotoError::TooManyPixels {
                width,
                height,
                pixels,
                limit,
            });
        }
        Ok(())
    }

    /// Verifies a complete upload and stores it under its digest (blocking).
    fn complete(&self, mut upload: Upload, state: Option<HashState>) -> Result<Appended, PhotoError> {
        let path = self.inner.dirs.upload(&upload.id);
        let format = match upload.format {
            Some(f) => f,
            None => return Err(PhotoError::UnsupportedFormat("an empty file".into())),
        };
        let mut dims = upload.dims;
        if let Some(fmt) = format.decodable()
            && dims.is_none()
        {
            let d = read_dims(&path, fmt).map_err(|reason| PhotoError::UnreadableImage {
                format: format.name(),
                reason,
            })?;
            self.check_pixels(d)?;
            dims = Some(d);
        }
        let digest = match state.filter(|s| s.offset == upload.length) {
            Some(s) => s.sha256.finalize(),
            None => hash_file(&path)?,
        };
        let sha = hex::encode(digest);
        if let Some(declared) = &upload.declared_sha256
            && *declared != sha
        {
            return Err(PhotoError::Sha256Mismatch {
                declared: declared.clone(),
                actual: sha,
            });
        }
        let facts = if format.may_have_exif() {
            exif::read(&path)
        } else {
            Default::default()
        };
        let _one_at_a_time = self.inner.sessions.finalize.lock().unwrap_or_else(|p| p.into_inner());
        let fresh = self.install_blob(&path, &sha)?;
        let existing = self.photo(&sha)?;
        let deduplicated = !fresh && existing.is_some();
        let mut meta = match existing {
            Some(m) if !fresh => m,
            _ => PhotoMeta {
                sha256: sha.clone(),
                size: upload.length,
                format,
                width: dims.map(|d| d.0),
                height: dims.map(|d| d.1),
                exif: facts,
                stored_ms: self.now_ms(),
                stored_by: upload.user,
                uploads: 0,
                records: Default::default(),
                thumbnail: if format.decodable().is_some() {
                    ThumbState::Pending
                } else {
                    ThumbState::NoPreview
                },
                unreferenced_since_ms: None,
            },
        };
        meta.uploads += 1;
        if let Some(r) = upload.record {
            meta.records.insert(r);
            self.note_named_by(&sha, r)?;
        }
        self.put_photo(&meta)?;
        // A tablet's preview, sent ahead of its original over a slow link:
        // shown in the original's place until the original has a thumbnail.
        if let Some(of) = upload.metadata.get("preview_of").map(|o| o.trim().to_ascii_lowercase())
            && of != sha
        {
            self.map_preview(&of, &sha, upload.user, upload.record)?;
        }
        upload.completed = Some(sha);
        upload.head.clear();
        self.put_upload(&upload)?;
        self.flush()?;
        Ok(Appended {
            upload,
            photo: Some(meta),
            deduplicated,
        })
    }

    /// Shows `preview` in place of photo `of` when its uploader put `of` in
    /// the upload's record, unless another user's preview is there: only the
    /// user who sent the first one, or who stored the original, may replace
    /// it (anyone could otherwise swap the picture a supervisor sees). A refused preview stays stored as a photo, so the
    /// tablet's upload completes. Called under `finalize`; the swap is still
    /// conditional so nothing else can slip in between the check and the write.
    fn map_preview(&self, of: &str, preview: &str, user: UserId, record: Option<RecordId>) -> Result<(), PhotoError> {
        // Only who put the photo in a record gives it a preview: anyone who
        // merely read its digest in a record could otherwise go first.
        if !self.put_in_record(of, user, record)? {
            tracing::info!(photo = %of, preview = %preview, "a preview from a user whose record does not name the photo is not shown");
            return Ok(());
        }
        let key = keys::preview(of);
        let current = self.inner.tree.get(&key)?;
        if let Some(current) = &current {
            let current_sha = String::from_utf8_lossy(current);
            let sent_by =
                |sha: &str| -> Result<Option<UserId>, PhotoError> { Ok(self.photo(sha)?.map(|m| m.stored_by)) };
            // A preview whose photo is gone protects nothing.
            let mine = sent_by(&current_sha)?.is_none_or(|by| by == user);
            if !mine && sent_by(of)? != Some(user) {
                tracing::info!(photo = %of, preview = %preview, "another user's preview kept in place of this photo");
                return Ok(());
            }
        }
        if self
            .inner
            .tree
            .compare_and_swap(&key, current, Some(preview.as_bytes()))?
            .is_err()
        {
            tracing::info!(photo = %of, "the preview changed meanwhile; this one is not shown");
        }
        Ok(())
    }

    /// Whether `user` wrote a live version of a unit of `record` (the upload's
    /// declared record) that names photo `sha`: an evidence item of theirs.
    fn put_in_record(&self, sha: &str, user: UserId, record: Option<RecordId>) -> Result<bool, PhotoError> {
        let Some(record) = record else { return Ok(false) };
        let Some(state) = self
            .inner
            .storage
            .record(record)
            .map_err(|e| PhotoError::Internal(e.to_string()))?
        else {
            return Ok(false);
        };
        let names_it = |value: &str| {
            serde_json::from_str::<serde_json::Value>(value)
                .ok()
                .and_then(|v| v.get("sha256")?.as_str().map(|s| s.eq_ignore_ascii_case(sha)))
                .unwrap_or(false)
        };
        Ok(state
            .units
            .values()
            .flat_map(|u| &u.live)
            .any(|v| state.meta.get(&v.id).is_some_and(|m| m.user == user) && names_it(v.value.get())))
    }

    /// After a photo is stored: queue its thumbnail, recompute the evidence of
    /// the records that name it.
    fn after_photo_stored(&self, appended: &Appended) {
        let Some(meta) = &appended.photo else { return };
        if meta.thumbnail == ThumbState::Pending {
            self.inner.thumbs.offer(meta);
        }
        match self.records_naming(&meta.sha256) {
            Ok(records) => {
                for r in records {
                    if let Err(e) = self.refresh_evidence(r) {
                        tracing::warn!(record = %r, error = %e, "evidence checks not recomputed");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "records naming a photo not read"),
        }
    }

    /// Uploads whose expiry has passed (the collector deletes them).
    /// Each with whether it had completed (then only its record goes).
    pub(crate) fn expired_uploads(&self, now_ms: u64) -> Result<Vec<(String, bool)>, PhotoError> {
        let mut out = Vec::new();
        for item in self.inner.tree.scan_prefix([keys::UPLOAD]) {
            let (_, v) = item?;
            let u: Upload = decode(&v, "upload")?;
            if u.expires_ms <= now_ms {
                out.push((u.id, u.completed.is_some()));
            }
        }
        Ok(out)
    }

    /// Deletes an expired upload unless a request holds it.
    pub(crate) fn expire_upload(&self, id: &str) -> Result<bool, PhotoError> {
        let Some(_claim) = self.inner.sessions.claim(id) else {
            return Ok(false);
        };
        self.discard(id)?;
        drop(_claim);
        self.inner.sessions.forget(id);
        Ok(true)
    }
}

/// Width and height from the image header (no pixels decoded).
fn read_dims(path: &std::path::Path, format: image::ImageFormat) -> Result<(u32, u32), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = image::ImageReader::with_format(std::io::BufReader::new(file), format);
    reader.into_dimensions().map_err(|e| e.to_string())
}

/// SHA-256 of a file, read in blocks.
fn hash_file(path: &std::path::Path) -> Result<sha2::digest::Output<Sha256>, PhotoError> {
    let mut file = std::fs::File::open(path).map_err(|e| PhotoError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; WRITE_BUF];
    loop {
        let n = file.read(&mut buf).map_err(|e| PhotoError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::ResponseError as _;
    use actix_web::http::StatusCode;

    #[test]
    fn a_chunk_the_disk_refuses_is_a_507_the_tablet_retries_not_a_500() {
        // /dev/full answers every write with the kernel's ENOSPC.
        let path = std::path::PathBuf::from("/dev/full");
        let mut sink = Sink {
            file: std::fs::OpenOptions::new().write(true).open(&path).unwrap(),
            path,
            reserve: 0,
            sha256: Some(Sha256::new()),
            chunk: None,
            buf: vec![7; 4096],
            written: 0,
        };
        let e = sink.write_buf().unwrap_err();
        assert!(matches!(e, PhotoError::DiskFull { .. }), "{e:?}");
        assert_eq!(e.code(), "photo_storage_full");
        assert_eq!(e.status_code(), StatusCode::INSUFFICIENT_STORAGE);
        assert!(!e.is_internal());
        assert_eq!(sink.written, 0, "nothing counted as written");
        let body = e.error_response();
        assert_eq!(body.status(), StatusCode::INSUFFICIENT_STORAGE);
    }

    #[test]
    fn metadata_and_checksums_parse_as_tus_sends_them() {
        let m = parse_metadata("filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential, sha256 YWJj").unwrap();
        assert_eq!(m["filename"], "world_domination_plan.pdf");
        assert_eq!(m["is_confidential"], "");
        assert_eq!(m["sha256"], "abc");
        assert!(parse_metadata("a YQ==,a Yg==").is_err());
        assert!(parse_metadata("a !!!").is_err());

        let c = ChunkChecksum::parse("sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").unwrap();
        assert_eq!(c.algorithm, ChecksumAlgorithm::Sha1);
        assert_eq!(c.digest.len(), 20);
        assert!(ChunkChecksum::parse("md5 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").is_err());
        assert!(ChunkChecksum::parse("sha256 Kq5sNclPz7QV2+lfQIuc6R7oRu0=").is_err());
        assert!(ChunkChecksum::parse("sha1").is_err());
    }
}
