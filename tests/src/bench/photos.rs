//! The `photos` and `photos_resume` scenarios of WORKLOAD.md: real JPEGs with
//! EXIF capture time and GPS (3 per record, sizes spread over 0.3–1.5 MB),
//! attached on the tablets that hold their records, uploaded with the
//! replica's tus client, then downloaded by a fresh device.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use mobile_schema::ids::{RecordId, Sha256Hex};
use replica::{PhotoClient, UploadConfig, WireStats};

use super::workload::WorkRecord;
use crate::photos::{PhotoSpec, jpeg, sha256_hex};

/// One photo of the workload: where it lies on its tablet's disk.
#[derive(Debug, Clone)]
pub struct BenchPhoto {
    pub device: String,
    pub record: RecordId,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// How many photos and how big.
#[derive(Debug, Clone, Copy)]
pub struct PhotoSizes {
    pub count: usize,
    pub min_bytes: usize,
    pub max_bytes: usize,
}

impl PhotoSizes {
    /// WORKLOAD.md: 600 photos of 0.3–1.5 MB.
    pub fn standard() -> Self {
        Self {
            count: 600,
            min_bytes: 300_000,
            max_bytes: 1_500_000,
        }
    }

    /// The size of photo `i`: spread evenly over the range, in a scrambled order.
    fn size_of(&self, i: usize) -> usize {
        let span = self.max_bytes.saturating_sub(self.min_bytes).max(1);
        self.min_bytes + (i.wrapping_mul(7_919) % self.count.max(1)) * span / self.count.max(1)
    }
}

/// Write the photos of the first `sizes.count / 3` records (3 each) into
/// `dir`; `seed` makes each set distinct (the resume scenario needs photos the
/// server has not seen).
pub fn make_photos(
    records: &[WorkRecord],
    sizes: PhotoSizes,
    seed: u64,
    dir: &Path,
) -> anyhow::Result<Vec<BenchPhoto>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut out = Vec::with_capacity(sizes.count);
    for i in 0..sizes.count {
        let r = records
            .get(i / 3)
            .context("fewer than count/3 records for the photos")?;
        let fix = r.inspection.fix.as_ref();
        let taken = r.inspection.times.start + chrono::Duration::minutes(5 + i as i64 % 3);
        let mut bytes = jpeg(&PhotoSpec {
            width: 160,
            height: 120,
            seed: seed.wrapping_add(i as u64),
            taken: Some(taken.format("%Y:%m:%d %H:%M:%S").to_string()),
            offset: Some(taken.format("%:z").to_string()),
            position: fix.map(|f| (f.lat, f.lon)),
            ..PhotoSpec::default()
        })?;
        // Reach the size with bytes after the image's end, as camera makers' trailers do.
        let target = sizes.size_of(i).max(bytes.len());
        let mut x = seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        while bytes.len() < target {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            bytes.extend_from_slice(&x.to_le_bytes());
        }
        bytes.truncate(target);
        let path = dir.join(format!("photo-{seed}-{i:04}.jpg"));
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        out.push(BenchPhoto {
            device: r.device.clone(),
            record: r.id(),
            sha256: sha256_hex(&bytes),
            size: bytes.len() as u64,
            path,
        });
    }
    Ok(out)
}

/// Download every photo with a fresh device's client; returns the bytes of photos received.
pub fn download_all(client: &mut PhotoClient<'_>, photos: &[BenchPhoto], dir: &Path) -> anyhow::Result<u64> {
    std::fs::create_dir_all(dir)?;
    let mut total = 0;
    for p in photos {
        let sha = Sha256Hex::try_from(p.sha256.clone()).map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let dest = dir.join(&p.sha256);
        let got = client.download(&sha, &dest)?;
        if got != p.size {
            bail!("downloaded {got} bytes of {} for {}", p.size, p.sha256);
        }
        total += got;
    }
    Ok(total)
}

/// Wait (at most two minutes) until the server has made every photo's thumbnail.
pub fn wait_for_thumbnails(server: &str, token: &str, photos: &[BenchPhoto]) -> anyhow::Result<()> {
    let http = crate::photos::Http::new(server, Some(token.to_string()));
    let deadline = Instant::now() + std::time::Duration::from_secs(120);
    for p in photos {
        loop {
            let info = http.send("GET", &format!("/api/v1/photos/{}/info", p.sha256), &[], None)?;
            if info.status == 200 && info.json()["thumbnail"] != "pending" {
                break;
            }
            if Instant::now() > deadline {
                bail!("thumbnails still pending after two minutes");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
    Ok(())
}

/// The upload configuration of the benchmark: the replica's defaults (1 MiB chunks).
pub fn upload_config() -> UploadConfig {
    UploadConfig::default()
}

/// Stop a queue run once its bytes reach half of the queue (an app closed mid-way).
pub fn stop_at_half(p: &replica::QueueProgress) -> ControlFlow<()> {
    if p.queue_done * 2 >= p.queue_total {
        ControlFlow::Break(())
    } else {
        ControlFlow::Continue(())
    }
}

/// Body bytes sent by these transports.
pub fn body_bytes_sent(stats: impl IntoIterator<Item = WireStats>) -> u64 {
    stats.into_iter().map(|s| s.body_bytes_sent).sum()
}

/// Seconds since `t`, at least a microsecond (for rates).
pub fn seconds_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64().max(1e-6)
}
