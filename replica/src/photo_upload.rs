//! Photo uploads over weak links: the tablet side of the server's tus 1.0
//! endpoint, as a library the app (and the benchmark) calls.
//!
//! - **Skip what the server has.** `HEAD /api/v1/photos/{sha256}` first.
//! - **Resume, never restart.** The upload URL is saved in the photo queue the
//!   moment it exists; after a cut, a crash or an app restart the upload goes
//!   on from the offset the *server* reports (`HEAD`), so at most the one
//!   chunk in flight is sent again.
//! - **Fixed chunks** ([`UploadConfig::chunk_size`], default 1 MiB), each with
//!   an `Upload-Checksum` so a chunk damaged in transit is refused whole (460)
//!   and sent again.
//! - **Records first.** [`Replica::upload_photos`] sends a photo only once its
//!   record has no change waiting in the outbox (call it after `sync`).
//! - **Progress.** Callbacks get bytes done and total, per photo and for the
//!   queue, and may stop the upload between chunks (it resumes next time).
//!
//! The benchmark can call [`PhotoClient::upload_file`] and
//! [`PhotoClient::download`] directly with its own files and transport.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use mobile_schema::ids::{RecordId, Sha256Hex};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use sync_protocol::wire::ErrorBody;

use crate::error::{ReplicaError, encode};
use crate::http::HttpTransport;
use crate::keys;
use crate::photos::{PhotoEntry, PhotoRefusal};
use crate::store::{Replica, T, Write};
use crate::transport::TransportError;

pub const UPLOADS_PATH: &str = "/api/v1/uploads";
pub const PHOTOS_PATH: &str = "/api/v1/photos";
const TUS_VERSION: &str = "1.0.0";

/// The checksum sent with each chunk (the tus checksum extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkChecksum {
    Sha1,
    Sha256,
}

/// How photos are sent.
#[derive(Debug, Clone)]
pub struct UploadConfig {
    /// Bytes per PATCH; a cut costs at most this much again.
    pub chunk_size: usize,
    /// `None` sends chunks without a checksum.
    pub checksum: Option<ChunkChecksum>,
    /// Failed tries in a row (cuts, timeouts, 5xx) before giving up for now.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one, at most 8×.
    pub backoff: Duration,
    /// On a slow link: send a small JPEG preview of every queued photo before
    /// any original, so supervisors see something early (JPEG, PNG and WebP;
    /// others have none).
    pub preview_first: bool,
    /// The preview's long side, in pixels.
    pub preview_px: u32,
}

impl Default for UploadConfig {
    fn default() -> Self {
        Self {
            chunk_size: 1024 * 1024,
            checksum: Some(ChunkChecksum::Sha256),
            attempts: 5,
            backoff: Duration::from_millis(250),
            preview_first: false,
            preview_px: 320,
        }
    }
}

/// A small upright JPEG of the image at `path`; `None` when it cannot be
/// decoded here (HEIC, PDF, damaged).
pub fn make_preview(path: &Path, px: u32) -> Option<Vec<u8>> {
    use image::ImageDecoder as _;
    let mut decoder = image::ImageReader::open(path)
        .ok()?
        .with_guessed_format()
        .ok()?
        .into_decoder()
        .ok()?;
    let orientation = decoder.orientation().ok()?;
    let mut img = image::DynamicImage::from_decoder(decoder).ok()?;
    img.apply_orientation(orientation);
    if img.width() > px || img.height() > px {
        img = img.thumbnail(px, px);
    }
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 70)
        .encode_image(&img.to_rgb8())
        .ok()?;
    Some(out)
}

/// Bytes of one photo the server holds, of its total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    pub done: u64,
    pub total: u64,
}

/// How an upload ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadOutcome {
    /// The server had the photo: nothing was sent.
    AlreadyStored,
    /// The last chunk is in; `deduplicated` when the server already held the
    /// photo by the time it completed (another device sent it meanwhile).
    Uploaded { deduplicated: bool },
    /// The progress callback asked to stop; `offset` bytes are on the server.
    Stopped { offset: u64 },
}

/// A PATCH's answer, as the resume loop sees it.
enum Patched {
    At {
        offset: u64,
        deduplicated: bool,
    },
    /// 409: the server is elsewhere.
    Conflict(u64),
    /// 460: the chunk arrived damaged; send it again.
    Damaged,
    /// 404/410: the upload is gone; start a new one.
    Gone,
    /// 423: still busy with an earlier request; ask again shortly.
    Busy,
}

/// The tus client over an [`HttpTransport`] (its login, token refresh and
/// byte counters).
#[derive(Debug)]
pub struct PhotoClient<'a> {
    http: &'a mut HttpTransport,
    config: UploadConfig,
}

fn rejected(status: u16, body: ErrorBody) -> ReplicaError {
    ReplicaError::Transport(TransportError::Rejected { status, body })
}

/// An answer that is no fault of the request: the server is busy, full for
/// now (507 `photo_storage_full`) or holds too many of this user's uploads
/// (429): the photo stays queued and is sent again later, as after a cut.
fn unavailable_or_rejected(status: u16, body: ErrorBody) -> ReplicaError {
    if status >= 500 || status == 408 || status == 429 {
        ReplicaError::Transport(TransportError::Unavailable(format!(
            "the server answered {status} {}: {}",
            body.code, body.message
        )))
    } else {
        rejected(status, body)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReplicaError + '_ {
    move |source| ReplicaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl<'a> PhotoClient<'a> {
    pub fn new(http: &'a mut HttpTransport, config: UploadConfig) -> Self {
        Self { http, config }
    }

    /// Whether the server already stores the photo (`HEAD /api/v1/photos/{sha256}`).
    pub fn server_has(&mut self, sha: &Sha256Hex) -> Result<bool, ReplicaError> {
        let reply = self
            .http
            .raw("HEAD", &format!("{PHOTOS_PATH}/{sha}"), &[], None, None)?;
        match reply.status {
            200..=299 => Ok(true),
            404 => Ok(false),
            s => Err(unavailable_or_rejected(s, reply.error())),
        }
    }

    /// Starts an upload; returns its URL.
    pub fn create(
        &mut self,
        length: u64,
        sha: &Sha256Hex,
        record: Option<RecordId>,
        filename: Option<&str>,
    ) -> Result<String, ReplicaError> {
        self.create_with(length, sha, record, filename, None)
    }

    fn create_with(
        &mut self,
        length: u64,
        sha: &Sha256Hex,
        record: Option<RecordId>,
        filename: Option<&str>,
        preview_of: Option<&Sha256Hex>,
    ) -> Result<String, ReplicaError> {
        let mut meta = vec![format!("sha256 {}", b64(sha.as_str().as_bytes()))];
        if let Some(r) = record {
            meta.push(format!("record {}", b64(r.to_string().as_bytes())));
        }
        if let Some(f) = filename {
            meta.push(format!("filename {}", b64(f.as_bytes())));
        }
        if let Some(of) = preview_of {
            meta.push(format!("preview_of {}", b64(of.as_str().as_bytes())));
        }
        let headers = [
            ("tus-resumable", TUS_VERSION.to_string()),
            ("upload-length", length.to_string()),
            ("upload-metadata", meta.join(",")),
        ];
        let reply = self.http.raw("POST", UPLOADS_PATH, &headers, None, None)?;
        match (reply.status, reply.header("location")) {
            (201, Some(location)) => Ok(location.to_string()),
            (201, None) => Err(ReplicaError::Protocol(
                "the server created an upload without a Location".into(),
            )),
            (s, _) => Err(unavailable_or_rejected(s, reply.error())),
        }
    }

    /// Sends `preview` (a small JPEG) as the stand-in of photo `of`, in one
    /// request; a cut sends it again whole next time (it is small). False when
    /// the server had it already.
    pub fn upload_preview(
        &mut self,
        preview: &[u8],
        of: &Sha256Hex,
        record: Option<RecordId>,
    ) -> Result<bool, ReplicaError> {
        let sha = Sha256Hex::of_bytes(preview);
        if self.server_has(&sha)? {
            return Ok(false);
        }
        let url = self.create_with(preview.len() as u64, &sha, record, None, Some(of))?;
        match self.patch(&url, 0, preview)? {
            Patched::At { .. } => Ok(true),
            _ => Err(ReplicaError::Transport(TransportError::Unavailable(
                "the preview did not arrive whole".into(),
            ))),
        }
    }

    /// The server's offset of an upload; `None` when it is gone (expired, discarded).
    pub fn offset(&mut self, url: &str) -> Result<Option<u64>, ReplicaError> {
        let reply = self
            .http
            .raw("HEAD", url, &[("tus-resumable", TUS_VERSION.to_string())], None, None)?;
        match reply.status {
            200..=299 => reply
                .header("upload-offset")
                .and_then(|o| o.parse().ok())
                .map(Some)
                .ok_or_else(|| ReplicaError::Protocol("HEAD of an upload without Upload-Offset".into())),
            404 | 410 => Ok(None),
            // The server is finishing the upload's last PATCH: ask again.
            423 => Err(ReplicaError::Transport(TransportError::Unavailable(
                "the upload is busy on the server".into(),
            ))),
            s => Err(unavailable_or_rejected(s, reply.error())),
        }
    }

    fn patch(&mut self, url: &str, offset: u64, chunk: &[u8]) -> Result<Patched, ReplicaError> {
        let mut headers = vec![
            ("tus-resumable", TUS_VERSION.to_string()),
            ("content-type", "application/offset+octet-stream".to_string()),
            ("upload-offset", offset.to_string()),
        ];
        match self.config.checksum {
            Some(ChunkChecksum::Sha1) => {
                headers.push(("upload-checksum", format!("sha1 {}", b64(&Sha1::digest(chunk)))))
            }
            Some(ChunkChecksum::Sha256) => {
                headers.push(("upload-checksum", format!("sha256 {}", b64(&Sha256::digest(chunk)))));
            }
            None => {}
        }
        let reply = self.http.raw("PATCH", url, &headers, Some(chunk), None)?;
        let server_offset = reply.header("upload-offset").and_then(|o| o.parse::<u64>().ok());
        match reply.status {
            200..=299 => Ok(Patched::At {
                offset: server_offset.unwrap_or(offset + chunk.len() as u64),
                deduplicated: reply.header("fieldsync-deduplicated") == Some("true"),
            }),
            409 => Ok(match server_offset {
                Some(o) => Patched::Conflict(o),
                None => Patched::Busy,
            }),
            460 if reply.error().code == "checksum_mismatch" => Ok(Patched::Damaged),
            404 | 410 => Ok(Patched::Gone),
            423 => Ok(Patched::Busy),
            s => Err(unavailable_or_rejected(s, reply.error())),
        }
    }

    fn pause(&self, failures: u32) {
        let factor = 1u32 << failures.saturating_sub(1).min(3);
        std::thread::sleep(self.config.backoff.saturating_mul(factor));
    }

    /// Uploads the file `path` whose SHA-256 is `sha`, resuming `resume` (an
    /// upload URL from an earlier try) when the server still has it.
    /// `on_url` is called with a new upload's URL before any byte is sent
    /// (save it to resume after a restart); `progress` after each chunk, and
    /// may stop the upload there.
    pub fn upload_file(
        &mut self,
        path: &Path,
        sha: &Sha256Hex,
        record: Option<RecordId>,
        resume: Option<String>,
        on_url: &mut dyn FnMut(&str) -> Result<(), ReplicaError>,
        progress: &mut dyn FnMut(Progress) -> ControlFlow<()>,
    ) -> Result<UploadOutcome, ReplicaError> {
        let mut file = std::fs::File::open(path).map_err(io(path))?;
        let total = file.metadata().map_err(io(path))?.len();
        if self.server_has(sha)? {
            let _ = progress(Progress { done: total, total });
            return Ok(UploadOutcome::AlreadyStored);
        }
        let mut url = resume;
        let mut offset = 0;
        let mut failures = 0u32;
        let mut buf = vec![0u8; self.config.chunk_size.max(1)];
        let mut fresh = true;
        loop {
            // Where to go on from: a new upload, or the server's offset of the old one.
            let step: Result<(), ReplicaError> = (|| {
                match url.as_deref() {
                    Some(u) if fresh || failures > 0 => match self.offset(u)? {
                        Some(o) => offset = o,
                        None => url = None,
                    },
                    _ => {}
                }
                if url.is_none() {
                    let name = path.file_name().and_then(|n| n.to_str());
                    let u = self.create(total, sha, record, name)?;
                    on_url(&u)?;
                    url = Some(u);
                    offset = 0;
                }
                Ok(())
            })();
            fresh = false;
            match step {
                Ok(()) => {}
                Err(e) if is_transient(&e) && failures + 1 < self.config.attempts => {
                    failures += 1;
                    self.pause(failures);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let Some(u) = url.clone() else { continue };
            if offset > total {
                return Err(beyond_the_file(offset, total));
            }
            if offset >= total {
                let _ = progress(Progress { done: total, total });
                return Ok(UploadOutcome::Uploaded { deduplicated: false });
            }
            if progress(Progress { done: offset, total }).is_break() {
                return Ok(UploadOutcome::Stopped { offset });
            }
            let n = (total - offset).min(buf.len() as u64) as usize;
            let chunk = &mut buf[..n];
            file.seek(SeekFrom::Start(offset)).map_err(io(path))?;
            file.read_exact(chunk).map_err(io(path))?;
            match self.patch(&u, offset, chunk) {
                Ok(Patched::At { offset: o, .. } | Patched::Conflict(o)) if o > total => {
                    return Err(beyond_the_file(o, total));
                }
                Ok(Patched::At {
                    offset: o,
                    deduplicated,
                }) if o > offset => {
                    failures = 0;
                    offset = o;
                    if offset >= total {
                        let _ = progress(Progress { done: total, total });
                        return Ok(UploadOutcome::Uploaded { deduplicated });
                    }
                }
                // Anything else made no progress: a cut chunk, an offset to
                // go on from, an upload gone, a server that takes nothing.
                // Bounded by `attempts`, or a broken server would loop forever.
                Ok(p) => {
                    match p {
                        Patched::At { offset: o, .. } | Patched::Conflict(o) => offset = o,
                        Patched::Gone => url = None,
                        Patched::Damaged | Patched::Busy => {}
                    }
                    failures += 1;
                    if failures >= self.config.attempts {
                        return Err(ReplicaError::Transport(TransportError::Unavailable(
                            "the server kept refusing the chunk".into(),
                        )));
                    }
                    self.pause(failures);
                }
                Err(e) if is_transient(&e) && failures + 1 < self.config.attempts => {
                    failures += 1;
                    self.pause(failures);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Downloads a stored photo to `dest`, resuming a partial file with a
    /// `Range` request, and checks its SHA-256. Returns the bytes received.
    pub fn download(&mut self, sha: &Sha256Hex, dest: &Path) -> Result<u64, ReplicaError> {
        let mut received = 0;
        let mut failures = 0;
        // Hashed as it arrives; after a cut, the part already on disk is hashed first.
        let mut hasher = Sha256::new();
        let mut hashed = 0u64;
        loop {
            let have = std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
            if have != hashed {
                hasher = Sha256::new();
                let mut f = std::fs::File::open(dest).map_err(io(dest))?;
                std::io::copy(&mut f, &mut hasher).map_err(io(dest))?;
            }
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dest)
                .map_err(io(dest))?;
            let headers = if have > 0 {
                vec![("range", format!("bytes={have}-"))]
            } else {
                Vec::new()
            };
            let mut counter = Counter {
                inner: std::io::BufWriter::with_capacity(1 << 20, file),
                hasher: &mut hasher,
                n: 0,
            };
            let result = self
                .http
                .raw(
                    "GET",
                    &format!("{PHOTOS_PATH}/{sha}"),
                    &headers,
                    None,
                    Some(&mut counter),
                )
                .map_err(ReplicaError::from);
            let flushed = std::io::Write::flush(&mut counter).map_err(io(dest));
            received += counter.n;
            hashed = have + counter.n;
            flushed?;
            match result {
                Ok(r) if r.status == 206 || (r.status == 200 && have == 0) => break,
                Ok(r) if r.status == 200 => {
                    // The server ignored the range: the file was sent whole.
                    return Err(ReplicaError::Protocol("the server ignored the Range request".into()));
                }
                Ok(r) if r.status == 416 => break,
                Ok(r) => return Err(rejected(r.status, r.error())),
                Err(e) if is_transient(&e) && failures + 1 < self.config.attempts => {
                    failures += 1;
                    self.pause(failures);
                }
                Err(e) => return Err(e),
            }
        }
        let got = hex::encode(hasher.finalize());
        if got != sha.as_str() {
            let _ = std::fs::remove_file(dest);
            return Err(ReplicaError::Protocol(format!(
                "downloaded {sha} but its SHA-256 is {got}"
            )));
        }
        Ok(received)
    }
}

/// Where a download goes: the file, through a buffer, and the running hash.
struct Counter<'h> {
    inner: std::io::BufWriter<std::fs::File>,
    hasher: &'h mut Sha256,
    n: u64,
}

impl std::io::Write for Counter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.n += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn beyond_the_file(offset: u64, total: u64) -> ReplicaError {
    ReplicaError::Protocol(format!("the server holds {offset} bytes of a {total}-byte file"))
}

fn is_transient(e: &ReplicaError) -> bool {
    matches!(e, ReplicaError::Transport(t) if t.is_transient())
}

/// The queue's progress, for the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueProgress {
    /// The photo being sent.
    pub photo: Sha256Hex,
    pub photo_done: u64,
    pub photo_total: u64,
    /// Bytes of the photos of this run that the server holds, of their total.
    pub queue_done: u64,
    pub queue_total: u64,
}

/// What [`Replica::upload_photos`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhotoSyncReport {
    pub uploaded: usize,
    /// The server already had them: nothing sent.
    pub already_stored: usize,
    /// Completed, but another device had sent the same photo meanwhile.
    pub deduplicated: usize,
    /// Their record still has changes in the outbox: they go after it.
    pub waiting_for_records: usize,
    /// The progress callback stopped the run.
    pub stopped: bool,
    /// Previews sent ahead of their originals (`preview_first`).
    pub previews: usize,
    pub bytes_total: u64,
    /// Photos the server refused for good, this run or before, with why:
    /// they stay in the queue for a person to see, and are not sent again
    /// until attached again.
    pub refused: Vec<(Sha256Hex, PhotoRefusal)>,
}

/// A refusal no retry changes (the photo itself is at fault: its format,
/// size or content, or a record this user may not add to), as opposed to a
/// link or a server that is down or busy, a login to renew (401) or an
/// upload to start anew (404, 409, 410, 412). Only the server's own answer
/// counts: a proxy's 413 on a chunk (`http_413`, no JSON body) says nothing
/// about the photo, nor does a chunk damaged on the way.
fn refusal_of(e: &ReplicaError) -> Option<PhotoRefusal> {
    match e {
        ReplicaError::Transport(TransportError::Rejected { status, body })
            if matches!(status, 400 | 403 | 413 | 415 | 422)
                && !body.code.starts_with("http_")
                && !matches!(body.code.as_str(), "checksum_mismatch" | "offset_mismatch") =>
        {
            Some(PhotoRefusal {
                status: *status,
                code: body.code.clone(),
                message: body.message.clone(),
            })
        }
        _ => None,
    }
}

impl Replica {
    /// Copies a photo into the store and queues it for upload with the record it belongs to.
    pub fn attach_photo_to(&mut self, record: RecordId, path: impl AsRef<Path>) -> Result<Sha256Hex, ReplicaError> {
        let sha = self.attach_photo(path)?;
        let key = keys::photo(&sha);
        if let Some(bytes) = self.t.photos.get(&key)? {
            let mut entry: PhotoEntry = crate::error::decode(keys::PHOTOS, &key, &bytes)?;
            // Attached again: a photo refused before is given another try.
            if entry.record != Some(record) || entry.refused.is_some() {
                entry.record = Some(record);
                entry.refused = None;
                let mut w = Write::default();
                w.put(T::Photos, key, encode(keys::PHOTOS, &entry)?);
                self.commit(w)?;
            }
        }
        Ok(sha)
    }

    /// Whether a photo must wait: its record (or, for a photo of no record,
    /// any record) still has changes the server has not answered.
    fn photo_waits(&self, entry: &PhotoEntry) -> Result<bool, ReplicaError> {
        Ok(match entry.record {
            Some(r) => self.t.pending.scan_prefix(keys::record(r)).next().is_some(),
            None => !self.t.outbox.is_empty(),
        })
    }

    fn save_photo(&self, entry: &PhotoEntry) -> Result<(), ReplicaError> {
        let mut w = Write::default();
        w.put(T::Photos, keys::photo(&entry.sha256), encode(keys::PHOTOS, entry)?);
        self.commit(w)
    }

    /// Sends the queued photos whose records have synced, resuming earlier
    /// uploads. Call it after [`Replica::sync`]. `progress` is called after each
    /// chunk; `Break` stops the run there (the next run resumes).
    pub fn upload_photos(
        &mut self,
        http: &mut HttpTransport,
        config: &UploadConfig,
        progress: &mut dyn FnMut(&QueueProgress) -> ControlFlow<()>,
    ) -> Result<PhotoSyncReport, ReplicaError> {
        let mut report = PhotoSyncReport::default();
        let mut ready = Vec::new();
        for entry in self.queued_photos()? {
            if let Some(r) = &entry.refused {
                report.refused.push((entry.sha256.clone(), r.clone()));
            } else if self.photo_waits(&entry)? {
                report.waiting_for_records += 1;
            } else {
                ready.push(entry);
            }
        }
        report.bytes_total = ready.iter().map(|e| e.bytes).sum();
        let mut queue_done = 0u64;
        let mut client = PhotoClient::new(http, config.clone());
        if config.preview_first {
            // In place: the saves of the originals' loop below carry the mark.
            for entry in ready.iter_mut().filter(|e| !e.uploaded && !e.preview_sent) {
                let path = self.photo_path(&entry.sha256);
                if let Some(preview) = make_preview(&path, config.preview_px) {
                    match client.upload_preview(&preview, &entry.sha256, entry.record) {
                        Ok(true) => report.previews += 1,
                        Ok(false) => {}
                        // A preview is a courtesy: one refused is not sent
                        // again, and its original goes as usual.
                        Err(e) if refusal_of(&e).is_some() => {}
                        Err(e) => return Err(e),
                    }
                }
                entry.preview_sent = true;
                self.save_photo(entry)?;
            }
        }
        for entry in ready {
            let path = self.photo_path(&entry.sha256);
            let mut stop = false;
            let mut saved = entry.clone();
            let mut save_url = |url: &str| -> Result<(), ReplicaError> {
                saved.upload_url = Some(url.to_string());
                self.save_photo(&saved)
            };
            let sha = entry.sha256.clone();
            let outcome = client.upload_file(
                &path,
                &sha,
                entry.record,
                entry.upload_url.clone(),
                &mut save_url,
                &mut |p| {
                    let flow = progress(&QueueProgress {
                        photo: sha.clone(),
                        photo_done: p.done,
                        photo_total: p.total,
                        queue_done: queue_done + p.done,
                        queue_total: report.bytes_total,
                    });
                    if flow.is_break() {
                        stop = true;
                    }
                    flow
                },
            );
            let outcome = match outcome {
                Ok(outcome) => outcome,
                Err(e) => match refusal_of(&e) {
                    // Refused for good: noted on the entry, and the queue goes on.
                    Some(refusal) => {
                        let key = keys::photo(&sha);
                        if let Some(b) = self.t.photos.get(&key)? {
                            let mut entry: PhotoEntry = crate::error::decode(keys::PHOTOS, &key, &b)?;
                            entry.refused = Some(refusal.clone());
                            entry.upload_url = None;
                            self.save_photo(&entry)?;
                        }
                        report.refused.push((sha, refusal));
                        continue;
                    }
                    None => return Err(e),
                },
            };
            // The entry as saved (with its URL), not the copy read before.
            let key = keys::photo(&sha);
            let mut entry: PhotoEntry = match self.t.photos.get(&key)? {
                Some(b) => crate::error::decode(keys::PHOTOS, &key, &b)?,
                None => continue,
            };
            match outcome {
                UploadOutcome::Stopped { .. } => {
                    report.stopped = true;
                    return Ok(report);
                }
                UploadOutcome::AlreadyStored => report.already_stored += 1,
                UploadOutcome::Uploaded { deduplicated } => {
                    report.uploaded += 1;
                    if deduplicated {
                        report.deduplicated += 1;
                    }
                }
            }
            queue_done += entry.bytes;
            entry.uploaded = true;
            entry.upload_url = None;
            self.save_photo(&entry)?;
            if stop {
                report.stopped = true;
                return Ok(report);
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> ReplicaError {
        rejected(
            status,
            ErrorBody {
                code: code.into(),
                message: String::new(),
                field: None,
            },
        )
    }

    #[test]
    fn only_the_servers_own_refusal_of_the_photo_is_for_good() {
        assert!(refusal_of(&refused(415, "unsupported_format")).is_some());
        assert!(refusal_of(&refused(413, "too_large")).is_some());
        assert!(refusal_of(&refused(403, "forbidden")).is_some());
        // A proxy's limit on a chunk, a damaged chunk, a lost place: not the photo's fault.
        assert!(refusal_of(&refused(413, "http_413")).is_none());
        assert!(refusal_of(&refused(400, "checksum_mismatch")).is_none());
        assert!(refusal_of(&refused(409, "offset_mismatch")).is_none());
        assert!(refusal_of(&refused(401, "token_expired")).is_none());
        assert!(refusal_of(&refused(404, "not_found")).is_none());
    }
}
