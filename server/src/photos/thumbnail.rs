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
            let reserve = super::free_reserve(settings);
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
                        let state = match make(&dirs, &job, px, max_alloc, reserve) {
                            Ok(()) => Some(ThumbState::Ready),
                            Err(Trouble::NoRoom(e)) => {
                                tracing::warn!(sha = %job.sha, error = %e, "thumbnail put off: the disk is full");
                                None
                            }
                            Err(Trouble::Failed(e)) => {
                                tracing::warn!(sha = %job.sha, error = %e, "no thumbnail");
                                Some(ThumbState::Failed)
                            }
                        };
                        // Put off, it stays pending: offered again when asked for, or at the next start.
                        if let Some(state) = state
                            && let Err(e) = set_state(&tree, &job.sha, state)
                        {
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

/// Why a thumbnail was not made.
#[derive(Debug)]
enum Trouble {
    /// The disk has no room for it now, or writing it would eat into the
    /// space kept free for records: it is made later.
    NoRoom(String),
    /// The photo cannot be made into one.
    Failed(String),
}

impl From<std::io::Error> for Trouble {
    fn from(e: std::io::Error) -> Self {
        if super::error::is_disk_full(&e) {
            Trouble::NoRoom(e.to_string())
        } else {
            Trouble::Failed(e.to_string())
        }
    }
}

impl From<image::ImageError> for Trouble {
    fn from(e: image::ImageError) -> Self {
        match e {
            image::ImageError::IoError(e) => e.into(),
            e => Trouble::Failed(e.to_string()),
        }
    }
}

/// Decodes the photo (within the allocation limit), turns it upright, scales
/// it to fit `px` and writes the JPEG under its digest, leaving `reserve`
/// bytes of the disk free as uploads do.
fn make(dirs: &Dirs, job: &Job, px: u32, max_alloc: u64, reserve: u64) -> Result<(), Trouble> {
    let dest = dirs.thumb(&job.sha);
    if dest.exists() {
        return Ok(());
    }
    // Checked before the decode, the costly part: px² RGB pixels bound the JPEG.
    let needed = u64::from(px) * u64::from(px) * 3;
    super::check_space(&dirs.blobs, needed, reserve, "thumbnail").map_err(|e| match e {
        PhotoError::StorageFull { .. } => Trouble::NoRoom(e.to_string()),
        e => Trouble::Failed(e.to_string()),
    })?;
    let source = dirs.blob(&job.sha);
    let file = std::fs::File::open(&source).map_err(|e| Trouble::Failed(format!("{}: {e}", source.display())))?;
    let mut reader = image::ImageReader::with_format(std::io::BufReader::new(file), job.format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(max_alloc);
    reader.limits(limits);
    let mut img = reader.decode()?;
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
        JpegEncoder::new_with_quality(w, QUALITY).encode_image(&rgb)?;
        Ok(())
    })
}

fn write_atomically(
    dest: &Path,
    body: impl FnOnce(&mut BufWriter<std::fs::File>) -> Result<(), Trouble>,
) -> Result<(), Trouble> {
    let dir = dest
        .parent()
        .ok_or_else(|| Trouble::Failed("a thumbnail path has no folder".into()))?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
    let file = std::fs::File::create(&tmp)?;
    let mut w = BufWriter::new(file);
    let written = body(&mut w).and_then(|()| {
        let f = w.into_inner().map_err(|e| Trouble::from(e.into_error()))?;
        f.sync_all()?;
        Ok(())
    });
    match written.and_then(|()| Ok(std::fs::rename(&tmp, dest)?)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobile_schema::ids::UserId;

    /// A stored 640×480 PNG and its metadata, pending a thumbnail.
    fn stored_png(dirs: &Dirs, tree: &sled::Tree) -> PhotoMeta {
        let img = image::RgbImage::from_fn(640, 480, |x, y| image::Rgb([(x % 256) as u8, (y % 256) as u8, 90]));
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(img)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&png));
        let blob = dirs.blob(&sha);
        std::fs::create_dir_all(blob.parent().unwrap()).unwrap();
        std::fs::write(&blob, &png).unwrap();
        let meta = PhotoMeta {
            sha256: sha.clone(),
            size: png.len() as u64,
            format: super::super::format::Format::Png,
            width: Some(640),
            height: Some(480),
            exif: Default::default(),
            stored_ms: 0,
            stored_by: UserId::generate(),
            uploads: 1,
            records: Default::default(),
            thumbnail: ThumbState::Pending,
            unreferenced_since_ms: None,
        };
        tree.insert(keys::photo(&sha), encode(&meta)).unwrap();
        meta
    }

    fn state(tree: &sled::Tree, sha: &str) -> ThumbState {
        decode::<PhotoMeta>(&tree.get(keys::photo(sha)).unwrap().unwrap(), "photo")
            .unwrap()
            .thumbnail
    }

    /// Offers the photo to a fresh queue and waits until its workers are done with it.
    fn run_queue(tree: &sled::Tree, dirs: &Dirs, settings: &PhotoSettings, meta: &PhotoMeta) {
        let queue = Queue::start(tree.clone(), dirs.clone(), settings).unwrap();
        assert!(queue.offer(meta));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while queue.queued.lock().unwrap().contains(&meta.sha256) {
            assert!(
                std::time::Instant::now() < deadline,
                "the thumbnail worker never finished"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    #[test]
    fn a_thumbnail_that_would_eat_the_records_reserve_stays_pending_and_is_made_once_there_is_room() {
        let folder = tempfile::tempdir().unwrap();
        let dirs = Dirs::under(folder.path());
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("photos").unwrap();
        let meta = stored_png(&dirs, &tree);

        // More free space kept for records than any disk has: no room.
        let full = PhotoSettings {
            free_reserve_mb: 1 << 40,
            ..PhotoSettings::default()
        };
        run_queue(&tree, &dirs, &full, &meta);
        assert_eq!(state(&tree, &meta.sha256), ThumbState::Pending, "put off, not failed");
        assert!(!dirs.thumb(&meta.sha256).exists());

        run_queue(&tree, &dirs, &PhotoSettings::default(), &meta);
        assert_eq!(state(&tree, &meta.sha256), ThumbState::Ready);
        let thumb = image::open(dirs.thumb(&meta.sha256)).unwrap();
        assert_eq!(thumb.width().max(thumb.height()), PhotoSettings::default().thumbnail_px);
    }

    #[test]
    fn a_disk_that_refuses_a_write_puts_the_thumbnail_off_and_a_bad_photo_fails_it() {
        // /dev/full answers every write with the kernel's ENOSPC.
        let enospc = std::fs::write("/dev/full", b"x").unwrap_err();
        assert!(matches!(Trouble::from(enospc), Trouble::NoRoom(_)));
        let unreadable = image::load_from_memory_with_format(b"not a png", image::ImageFormat::Png).unwrap_err();
        assert!(matches!(Trouble::from(unreadable), Trouble::Failed(_)));
    }
}
