//! Photos and other evidence files: resumable tus uploads, content-addressed
//! blobs, EXIF, thumbnails, garbage collection and the evidence checks.
//!
//! Bytes live in files under `<data_dir>/photos/` (never in sled values):
//!
//! | folder | what |
//! |---|---|
//! | `uploads/<id>` | an upload in progress, appended to by each PATCH |
//! | `blobs/<aa>/<sha256>` | a finished, verified photo, stored once under its digest |
//! | `thumbs/<aa>/<sha256>.jpg` | its 320 px thumbnail, made by the worker queue |
//!
//! Metadata lives in the sled tree `photos` (keys in [`store::keys`]). The
//! HTTP side is `routes::uploads` (tus 1.0) and `routes::photos`.

pub mod access;
pub mod checks;
pub mod error;
pub mod exif;
pub mod format;
pub mod gc;
pub mod store;
pub mod thumbnail;
pub mod tus;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::Deserialize;
use sync_protocol::clock::Clock;

use crate::storage::SyncStorage;

pub use error::PhotoError;
pub use format::Format;
pub use store::{PhotoMeta, ThumbState};

/// The `[photos]` section of the settings.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PhotoSettings {
    /// Largest upload accepted, in bytes (`Tus-Max-Size`).
    pub max_upload_bytes: u64,
    /// Largest image accepted, in pixels (width × height): a decompression bomb
    /// is a small file that claims a huge image.
    pub max_pixels: u64,
    /// An upload with no PATCH for this long expires and is deleted.
    pub upload_expiry_s: u64,
    /// A photo no record, version or conflict references is deleted only after
    /// this many days without a reference (longer than any offline spell).
    pub unreferenced_grace_days: u64,
    /// How often the garbage collector runs; 0 turns it off.
    pub gc_interval_s: u64,
    /// Long side of a thumbnail, in pixels.
    pub thumbnail_px: u32,
    /// Threads making thumbnails, off the request path.
    pub thumbnail_workers: usize,
    /// Photos waiting for a thumbnail at most; past that, a thumbnail is queued
    /// when someone asks for it.
    pub thumbnail_queue: usize,
    /// Memory a single thumbnail decode may allocate, in MiB.
    pub thumbnail_max_alloc_mb: u64,
    /// The deployment's `[rules]` (the fix's on-site distance), set at start.
    #[serde(skip)]
    pub rules: mobile_schema::rule_settings::RuleSettings,
    /// How far a photo's EXIF position may be from the site's area.
    pub photo_max_distance_m: f64,
    /// Clock slack when comparing capture times with the visit window.
    pub capture_time_tolerance_min: i64,
    /// A fix less accurate than this cannot show presence at a site.
    pub fix_max_accuracy_m: f64,
    /// Free space, in MiB, that photo uploads leave on the disk under the
    /// store (`FIELDSYNC_PHOTO_FREE_RESERVE_MB`): records matter more than
    /// photos, so uploads stop while the records' writer still has room. Never
    /// less than the writer's own reserve.
    pub free_reserve_mb: u64,
    /// Unfinished uploads one user may hold open at once, so uploads declared
    /// and never written cannot pile up.
    pub max_open_uploads_per_user: usize,
}

impl Default for PhotoSettings {
    fn default() -> Self {
        Self {
            max_upload_bytes: 25 * 1024 * 1024,
            rules: mobile_schema::rule_settings::RuleSettings::default(),
            max_pixels: 100_000_000,
            upload_expiry_s: 7 * 24 * 3600,
            unreferenced_grace_days: 90,
            gc_interval_s: 3600,
            thumbnail_px: 320,
            thumbnail_workers: 1,
            thumbnail_queue: 256,
            thumbnail_max_alloc_mb: 512,
            photo_max_distance_m: mobile_schema::validation::DEFAULT_ON_SITE_TOLERANCE_M,
            capture_time_tolerance_min: mobile_schema::validation::DEFAULT_TIME_TOLERANCE_MINUTES,
            fix_max_accuracy_m: 200.0,
            free_reserve_mb: 256,
            max_open_uploads_per_user: 64,
        }
    }
}

/// The folders under `<data_dir>/photos`.
#[derive(Debug, Clone)]
pub struct Dirs {
    pub uploads: PathBuf,
    pub blobs: PathBuf,
    pub thumbs: PathBuf,
}

/// The free space photo writes (uploads and thumbnails) leave, in bytes.
pub(crate) fn free_reserve(settings: &PhotoSettings) -> u64 {
    (settings.free_reserve_mb.saturating_mul(1024 * 1024)).max(crate::storage::sled_store::FREE_SPACE_RESERVE)
}

/// Refuses a write of `needed` bytes that would leave less than `reserve`
/// free on the disk holding `path`: records, written by the sync writer to the
/// same disk, must never be the ones to find it full. `field` is what the
/// client sent that asked for the bytes.
pub(crate) fn check_space(path: &Path, needed: u64, reserve: u64, field: &'static str) -> Result<(), PhotoError> {
    let free = fs2::available_space(path).map_err(|e| PhotoError::io(path, e))?;
    if free < reserve.saturating_add(needed) {
        return Err(PhotoError::StorageFull {
            needed,
            free,
            reserve,
            field,
        });
    }
    Ok(())
}

impl Dirs {
    fn under(data_dir: &Path) -> Self {
        let root = data_dir.join("photos");
        Self {
            uploads: root.join("uploads"),
            blobs: root.join("blobs"),
            thumbs: root.join("thumbs"),
        }
    }

    pub fn blob(&self, sha: &str) -> PathBuf {
        self.blobs.join(fanout(sha)).join(sha)
    }

    pub fn thumb(&self, sha: &str) -> PathBuf {
        self.thumbs.join(fanout(sha)).join(format!("{sha}.jpg"))
    }

    pub fn upload(&self, id: &str) -> PathBuf {
        self.uploads.join(id)
    }
}

/// The first two hex digits: 256 folders, so no folder holds millions of files.
fn fanout(sha: &str) -> &str {
    sha.get(..2).unwrap_or("00")
}

/// The photo service the handlers share (cheap to clone).
#[derive(Clone)]
pub struct Photos {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub settings: PhotoSettings,
    pub dirs: Dirs,
    pub db: sled::Db,
    pub tree: sled::Tree,
    pub storage: Arc<dyn SyncStorage>,
    pub clock: Arc<dyn Clock>,
    pub sessions: tus::Sessions,
    pub thumbs: thumbnail::Queue,
    /// Dropped with the service: stops the garbage collector's thread.
    _gc_stop: Mutex<Option<mpsc::Sender<()>>>,
}

impl std::fmt::Debug for Photos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Photos")
            .field("dirs", &self.inner.dirs)
            .field("settings", &self.inner.settings)
            .finish_non_exhaustive()
    }
}

impl Photos {
    /// The preview a tablet sent ahead of photo `sha`, if any.
    pub fn preview_for(&self, sha: &str) -> Result<Option<String>, PhotoError> {
        Ok(self
            .inner
            .tree
            .get(store::keys::preview(sha))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Opens the photo store in `data_dir` and starts the thumbnail workers and
    /// the garbage collector.
    pub fn open(
        data_dir: &Path,
        db: sled::Db,
        storage: Arc<dyn SyncStorage>,
        clock: Arc<dyn Clock>,
        settings: PhotoSettings,
    ) -> Result<Self, PhotoError> {
        let dirs = Dirs::under(data_dir);
        for d in [&dirs.uploads, &dirs.blobs, &dirs.thumbs] {
            std::fs::create_dir_all(d).map_err(|e| PhotoError::io(d, e))?;
        }
        let tree = db.open_tree(store::keys::TREE)?;
        let thumbs = thumbnail::Queue::start(tree.clone(), dirs.clone(), &settings)?;
        let (gc_stop, gc_rx) = mpsc::channel();
        let inner = Arc::new(Inner {
            settings,
            dirs,
            db,
            tree,
            storage,
            clock,
            sessions: tus::Sessions::default(),
            thumbs,
            _gc_stop: Mutex::new(Some(gc_stop)),
        });
        let photos = Self { inner };
        photos.requeue_thumbnails();
        if photos.inner.settings.gc_interval_s > 0 {
            let weak = Arc::downgrade(&photos.inner);
            let every = Duration::from_secs(photos.inner.settings.gc_interval_s);
            std::thread::Builder::new()
                .name("photo-gc".into())
                .spawn(move || {
                    // Wakes every interval; ends when the service is dropped.
                    while let Err(mpsc::RecvTimeoutError::Timeout) = gc_rx.recv_timeout(every) {
                        let Some(inner) = weak.upgrade() else { break };
                        let photos = Photos { inner };
                        match photos.gc(photos.now_ms()) {
                            Ok(report) => tracing::info!(?report, "photo garbage collection"),
                            Err(e) => tracing::error!(error = %e, "photo garbage collection failed"),
                        }
                    }
                })
                .map_err(|e| PhotoError::Internal(format!("cannot start the photo collector: {e}")))?;
        }
        Ok(photos)
    }

    pub fn settings(&self) -> &PhotoSettings {
        &self.inner.settings
    }

    /// The free space uploads leave, in bytes.
    pub(crate) fn free_reserve(&self) -> u64 {
        free_reserve(&self.inner.settings)
    }

    pub fn dirs(&self) -> &Dirs {
        &self.inner.dirs
    }

    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// Photos whose thumbnail was never made (a restart emptied the queue).
    fn requeue_thumbnails(&self) {
        let Ok(list) = self.list_photos() else { return };
        for meta in list {
            if meta.thumbnail == ThumbState::Pending {
                self.inner.thumbs.offer(&meta);
            }
        }
    }

    /// Flushes sled: what was written is durable when this returns.
    pub(crate) fn flush(&self) -> Result<(), PhotoError> {
        self.inner.db.flush()?;
        Ok(())
    }
}
