#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The photo store in process: uploads cut at random offsets and resumed,
//! deduplication, expiry of incomplete uploads, and the garbage collector's
//! grace period, all on a clock the test controls.

use std::sync::Arc;

use actix_web::web::Bytes;
use futures_util::stream;
use mobile_schema::ids::{DeviceId, RecordId, UserId};
use server::photos::{PhotoError, PhotoSettings, Photos};
use server::storage::{MemoryStorage, keys};
use sha2::Digest;
use sync_protocol::clock::ManualClock;
use sync_protocol::engine::EngineConfig;

const DAY_MS: u64 = 24 * 3600 * 1000;

struct Fixture {
    _dir: tempfile::TempDir,
    db: sled::Db,
    photos: Photos,
    clock: ManualClock,
    user: UserId,
    device: DeviceId,
}

fn fixture(settings: PhotoSettings) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path().join("db")).open().unwrap();
    let clock = ManualClock::at(1_746_500_000_000);
    let photos = Photos::open(
        dir.path(),
        db.clone(),
        Arc::new(MemoryStorage::new(EngineConfig::default())),
        Arc::new(clock.clone()),
        PhotoSettings {
            gc_interval_s: 0,
            ..settings
        },
    )
    .unwrap();
    Fixture {
        _dir: dir,
        db,
        photos,
        clock,
        user: UserId::generate(),
        device: DeviceId::generate(),
    }
}

/// A PNG of some size: a valid header, then noise the sniffing does not read.
fn png(seed: u8, len: usize) -> Vec<u8> {
    let mut img = Vec::new();
    let pixels = image::RgbImage::from_fn(8, 8, |x, y| image::Rgb([x as u8 ^ seed, y as u8, seed]));
    image::DynamicImage::ImageRgb8(pixels)
        .write_to(&mut std::io::Cursor::new(&mut img), image::ImageFormat::Png)
        .unwrap();
    let mut n = u32::from(seed);
    while img.len() < len {
        n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        img.push((n >> 16) as u8);
    }
    img
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

type Item = Result<Bytes, String>;

/// The body as chunks of `piece` bytes, optionally cut (an error) after `cut_after` bytes.
fn body(bytes: &[u8], piece: usize, cut_after: Option<usize>) -> impl futures_util::Stream<Item = Item> + Unpin {
    let end = cut_after.unwrap_or(bytes.len()).min(bytes.len());
    let mut items: Vec<Item> = bytes[..end]
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    if cut_after.is_some() {
        items.push(Err("connection reset".to_string()));
    }
    stream::iter(items)
}

#[actix_web::test]
async fn an_upload_cut_at_random_offsets_in_process_resumes_to_the_exact_bytes() {
    let f = fixture(PhotoSettings::default());
    let bytes = png(7, 3 * 1024 * 1024 + 17);
    let digest = sha(&bytes);
    let meta = [("sha256".to_string(), digest.clone())].into_iter().collect();
    let upload = f
        .photos
        .create_upload(f.user, f.device, bytes.len() as u64, meta)
        .unwrap();
    let mut seed = 12_345u64;
    let mut offset = 0usize;
    let mut cuts = 0;
    while offset < bytes.len() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let rest = bytes.len() - offset;
        let cut = if cuts < 8 {
            Some((seed >> 33) as usize % rest.max(1))
        } else {
            None
        };
        let done = f
            .photos
            .append(
                &upload.id,
                f.user,
                offset as u64,
                None,
                body(&bytes[offset..], 61_440, cut),
            )
            .await
            .unwrap();
        let expect = offset + cut.unwrap_or(rest);
        assert_eq!(
            done.upload.offset as usize, expect,
            "what arrived before the cut is kept"
        );
        // The server's offset is what the client resumes from.
        assert_eq!(f.photos.upload(&upload.id, f.user).unwrap().offset as usize, expect);
        offset = expect;
        cuts += 1;
        if offset == bytes.len() {
            let photo = done.photo.expect("the last PATCH completes the upload");
            assert_eq!(photo.sha256, digest);
            assert!(!done.deduplicated);
        }
    }
    let stored = std::fs::read(f.photos.dirs().blob(&digest)).unwrap();
    assert_eq!(stored, bytes);

    // A stale offset is refused with the server's.
    let again = f
        .photos
        .create_upload(f.user, f.device, 100, Default::default())
        .unwrap();
    match f
        .photos
        .append(&again.id, f.user, 5, None, body(&bytes[..10], 10, None))
        .await
    {
        Err(PhotoError::OffsetMismatch { current: 0, sent: 5 }) => {}
        other => panic!("{other:?}"),
    }
    // Someone else's upload does not exist for this user.
    assert!(matches!(
        f.photos.upload(&again.id, UserId::generate()),
        Err(PhotoError::NotFound)
    ));
}

#[actix_web::test]
async fn a_second_upload_of_the_same_bytes_is_deduplicated() {
    let f = fixture(PhotoSettings::default());
    let bytes = png(3, 50_000);
    for n in 0..2 {
        let record = RecordId::from(uuid::Uuid::now_v7());
        let meta = [("record".to_string(), record.to_string())].into_iter().collect();
        let u = f
            .photos
            .create_upload(f.user, f.device, bytes.len() as u64, meta)
            .unwrap();
        let done = f
            .photos
            .append(&u.id, f.user, 0, None, body(&bytes, 4096, None))
            .await
            .unwrap();
        assert_eq!(done.deduplicated, n == 1);
        assert_eq!(done.photo.unwrap().uploads, n + 1);
    }
    let meta = f.photos.photo(&sha(&bytes)).unwrap().unwrap();
    assert_eq!(meta.records.len(), 2, "both records that named it are kept");
    assert_eq!(f.photos.list_photos().unwrap().len(), 1);
}

#[actix_web::test]
async fn incomplete_uploads_expire_and_unreferenced_photos_wait_out_the_grace_period() {
    let f = fixture(PhotoSettings {
        upload_expiry_s: 3600,
        unreferenced_grace_days: 90,
        ..PhotoSettings::default()
    });
    // An upload left half done.
    let half = png(1, 10_000);
    let u = f
        .photos
        .create_upload(f.user, f.device, half.len() as u64, Default::default())
        .unwrap();
    f.photos
        .append(&u.id, f.user, 0, None, body(&half[..5000], 1000, None))
        .await
        .unwrap();
    // Two complete photos: one a record references, one nobody does.
    let kept = png(2, 20_000);
    let orphan = png(3, 20_000);
    for bytes in [&kept, &orphan] {
        let u = f
            .photos
            .create_upload(f.user, f.device, bytes.len() as u64, Default::default())
            .unwrap();
        f.photos
            .append(&u.id, f.user, 0, None, body(bytes, 8192, None))
            .await
            .unwrap();
    }
    // A stored record state whose evidence names `kept`.
    let sync = f.db.open_tree(keys::SYNC).unwrap();
    let id = RecordId::from(uuid::Uuid::now_v7());
    let state = format!(
        r#"{{"kind":"inspection","id":"{id}","units":{{"evidence/x":{{"live":[{{"value":{{"sha256":"{}"}}}}]}}}}}}"#,
        sha(&kept)
    );
    sync.insert(keys::record(id), keys::record_value(1, state.as_bytes()))
        .unwrap();

    // Before the upload expires: nothing goes.
    let r = f.photos.gc(f.clock.now()).unwrap();
    assert_eq!(
        (r.expired_uploads, r.collected, r.referenced, r.waiting),
        (0, 0, 1, 1),
        "{r:?}"
    );

    // Past the expiry: the half upload and its bytes are gone.
    f.clock.advance(3600 * 1000 + 1);
    let r = f.photos.gc(f.clock.now()).unwrap();
    assert_eq!((r.expired_uploads, r.forgotten_uploads), (1, 2), "{r:?}");
    assert!(matches!(f.photos.upload(&u.id, f.user), Err(PhotoError::NotFound)));
    assert!(!f.photos.dirs().upload(&u.id).exists());

    // 89 days on, the orphan is still kept (a tablet may still send its record).
    f.clock.advance(89 * DAY_MS);
    assert_eq!(f.photos.gc(f.clock.now()).unwrap().collected, 0);
    assert!(f.photos.dirs().blob(&sha(&orphan)).exists());
    // Past 90 days unreferenced: collected; the referenced one stays.
    f.clock.advance(2 * DAY_MS);
    let r = f.photos.gc(f.clock.now()).unwrap();
    assert_eq!((r.collected, r.referenced), (1, 1), "{r:?}");
    assert!(!f.photos.dirs().blob(&sha(&orphan)).exists());
    assert!(f.photos.photo(&sha(&orphan)).unwrap().is_none());
    assert!(f.photos.dirs().blob(&sha(&kept)).exists());

    // The record drops the photo: its grace period starts now, not at upload.
    sync.insert(
        keys::record(id),
        keys::record_value(
            2,
            format!(r#"{{"kind":"inspection","id":"{id}","units":{{}}}}"#).as_bytes(),
        ),
    )
    .unwrap();
    assert_eq!(f.photos.gc(f.clock.now()).unwrap().waiting, 1);
    f.clock.advance(60 * DAY_MS);
    assert_eq!(f.photos.gc(f.clock.now()).unwrap().collected, 0);
    f.clock.advance(31 * DAY_MS);
    assert_eq!(f.photos.gc(f.clock.now()).unwrap().collected, 1);
}

/// A photo named only by a value an edit replaced (kept under its own key,
/// out of the record and its history entry) is still referenced: history may
/// show it and a signature may bring it back.
#[actix_web::test]
async fn a_photo_named_only_by_a_replaced_value_is_kept() {
    let f = fixture(PhotoSettings {
        unreferenced_grace_days: 1,
        ..PhotoSettings::default()
    });
    let bytes = png(4, 20_000);
    let u = f
        .photos
        .create_upload(f.user, f.device, bytes.len() as u64, Default::default())
        .unwrap();
    f.photos
        .append(&u.id, f.user, 0, None, body(&bytes, 8192, None))
        .await
        .unwrap();
    let sync = f.db.open_tree(keys::SYNC).unwrap();
    let record = RecordId::from(uuid::Uuid::now_v7());
    let version = sync_protocol::VersionId::new(sync_protocol::ReplicaId::generate(), 3);
    let value = format!(r#"{{"sha256":"{}"}}"#, sha(&bytes));
    sync.insert(keys::superseded(record, version, "evidence/x"), value.as_bytes())
        .unwrap();
    f.clock.advance(2 * DAY_MS);
    let r = f.photos.gc(f.clock.now()).unwrap();
    assert_eq!((r.collected, r.referenced), (0, 1), "{r:?}");
    assert!(f.photos.dirs().blob(&sha(&bytes)).exists());
}

trait Now {
    fn now(&self) -> u64;
}

impl Now for ManualClock {
    fn now(&self) -> u64 {
        sync_protocol::clock::Clock::now_ms(self)
    }
}
