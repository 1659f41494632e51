//! Thumbnails: JPEG, 320 px on the long side, upright by the EXIF orientation,
//! made by a fixed number of worker threads from a bounded queue, so an upload
//! never waits for one and a burst of uploads cannot pile up work without end.
//! A photo the full queue turned away stays `pending` and is offered again
//! when someone asks for its thumbnail (or at the next start).

use std::collections::HashSet;
use std::io::BufWriter;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use image::codecs::jpeg::JpegEncoder;
use image::metadata::Orientation;

use super::store::{PhotoMeta, ThumbState, decode, encode, keys};
use super::{Dirs, PhotoError, PhotoSettings};

/// JPEG quality of thumbnails.
const QUALITY: u8 = 80;

struct Job {
    sha: String,
    format: image::ImageFormat,
    orientation: Option<u8>,
}

/// The queue's sending side; the workers stop when it is dropped.
pub(crate) struct Queue {
    tx: Mutex<mpsc::SyncSender<Job>>,
    /// Photos queued or being made, so one is not queued twice.
    queued: Arc<Mutex<HashSet<String>>>,
}

impl Queue {
    pub(crate) fn start(tree: sled::Tree, dirs: Dirs, settings: &PhotoSettings) -> Result<Self, PhotoError> {
        let (tx, rx) = mpsc::sync_channel::<Job>(settings.thumbnail_queue.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let queued = Arc::new(Mutex::new(HashSet::new()));
        for n in 0..settings.thumbnail_workers.max(1) {
            let rx = rx.clone();
            let queued = queued.clone();
            let tree = tree.clone();
            let dirs = dirs.clone();
            let px = settings.thumbnail_px.max(16);
            let max_alloc = settings.thumbnail_max_alloc_mb * 1024 * 1024;
            std::thread::Builder::new()
                .name(format!("thumbnail-{n}"))
                .spawn(move || {
                    loop {
                        // The lock is held only while waiting for the next job.
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => break,
                        };
                        let Ok(job) = job else { break };
                        let state = match make(&dirs, &job, px, max_alloc) {
                            Ok(()) => ThumbState::Ready,
                            Err(e) => {
                                tracing::warn!(sha = %job.sha, error = %e, "no thumbnail");
                                ThumbState::Failed
                            }
                        };
                        if let Err(e) = set_state(&tree, &job.sha, state) {
                            tracing::error!(sha = %job.sha, error = %e, "thumbnail state not saved");
                        }
                        if let Ok(mut q) = queued.lock() {
                            q.remove(&job.sha);
                        }
                    }
                })
                .map_err(|e| PhotoError::Internal(format!("cannot start a thumbnail worker: {e}")))?;
        }
        Ok(Self {
            tx: Mutex::new(tx),
            queued,
        })
    }

    /// Queues a photo's thumbnail if there is room; returns whether it is queued.
    pub(crate) fn offer(&self, meta: &PhotoMeta) -> bool {
        let Some(format) = meta.format.decodable() else {
            return false;
        };
        let Ok(mut queued) = self.queued.lock() else {
            return false;
        };
        if queued.contains(&meta.sha256) {
            return true;
        }
        let job = Job {
            sha: meta.sha256.clone(),
            format,
            orientation: meta.exif.orientation,
        };
        let sent = match self.tx.lock() {
            Ok(tx) => tx.try_send(job).is_ok(),
            Err(_) => false,
        };
        if sent {
            queued.insert(meta.sha256.clone());
        }
        sent
    }
}

/// Sets a photo's thumbnail state without disturbing the rest of its metadata.
fn set_state(tree: &sled::Tree, sha: &str, state: ThumbState) -> Result<(), PhotoError> {
    let mut failure = None;
    tree.fetch_and_update(keys::photo(sha), |old| {
        let old = old?;
        match decode::<PhotoMeta>(old, "photo") {
            Ok(mut m) => {
                m.thumbnail = state;
                Some(encode(&m))
            }
            Err(e) => {
                failure = Some(e);
                Some(old.to_vec())
            }
        }
    })?;
    failure.map_or(Ok(()), Err)
}

/// Decodes the photo (within the allocation limit), turns it upright, scales
/// it to fit `px` and writes the JPEG under its digest.
fn make(dirs: &Dirs, job: &Job, px: u32, max_alloc: u64) -> Result<(), String> {
    let dest = dirs.thumb(&job.sha);
    if dest.exists() {
        return Ok(());
    }
    let source = dirs.blob(&job.sha);
    let file = std::fs::File::open(&source).map_err(|e| format!("{}: {e}", source.display()))?;
    let mut reader = image::ImageReader::with_format(std::io::BufReader::new(file), job.format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let mut img = reader.decode().map_err(|e| e.to_string())?;
    if let Some(o) = job.orientation.and_then(Orientation::from_exif) {
        img.apply_orientation(o);
    }
    let thumb = if img.width() > px || img.height() > px {
        img.thumbnail(px, px)
    } else {
        img
    };
    let rgb = thumb.to_rgb8();
    write_atomically(&dest, |w| {
        JpegEncoder::new_with_quality(w, QUALITY)
            .encode_image(&rgb)
            .map_err(|e| e.to_string())
    })
}

fn write_atomically(
    dest: &Path,
    body: impl FnOnce(&mut BufWriter<std::fs::File>) -> Result<(), String>,
) -> Result<(), String> {
    let dir = dest.parent().ok_or("a thumbnail path has no folder")?;
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
    let mut w = BufWriter::new(file);
    let written = body(&mut w).and_then(|()| {
        let f = w.into_inner().map_err(|e| e.to_string())?;
        f.sync_all().map_err(|e| e.to_string())
    });
    match written.and_then(|()| std::fs::rename(&tmp, dest).map_err(|e| e.to_string())) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}
