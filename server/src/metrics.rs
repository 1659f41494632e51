//! What an operator's Prometheus scrapes at `GET /metrics`: requests by route
//! and status, push and pull counts and latencies, change outcomes, refusals by
//! code, and the store's size on disk.
//!
//! Labels are bounded: a route is its registered pattern (`{sha256}`, not the
//! hash), refusal codes and outcome kinds are closed sets, and an unmatched path
//! counts as `unmatched`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use sync_protocol::outcome::Outcome;
use sync_protocol::wire::PushResponse;

/// Why the metrics could not be set up or written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: {0}")]
    Prometheus(#[from] prometheus::Error),
    #[error("metrics are not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// Latency buckets in seconds: a push waits for an fsync (milliseconds), a
/// large pull page or a slow disk takes seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Ours are named `fieldsync_*`; the process collector keeps the standard
/// `process_*` names dashboards expect.
fn opts(name: &str, help: &str) -> Opts {
    Opts::new(name, help).namespace("fieldsync")
}

fn histogram_opts(name: &str, help: &str) -> HistogramOpts {
    HistogramOpts::new(name, help)
        .namespace("fieldsync")
        .buckets(BUCKETS.to_vec())
}

/// The server's metrics, registered once at start.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    push_seconds: Histogram,
    pull_seconds: Histogram,
    pushed_changes: IntCounterVec,
    refusals: IntCounterVec,
    conflict_units: IntCounter,
    pulled_records: IntCounter,
    store_bytes: IntGaugeVec,
    data_dir: PathBuf,
    /// The photo folder's size and when it was measured: shared by clones.
    photos_measured: Arc<Mutex<Option<(Instant, u64)>>>,
}

/// How long a measure of the photo folder serves scrapes: walking a folder of
/// a province's photos on every scrape (Prometheus' default is every 15 s,
/// often from two scrapers) would cost more than the gauge is worth.
pub const PHOTO_WALK_EVERY: Duration = Duration::from_secs(300);

impl Metrics {
    pub fn new(data_dir: &Path) -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            opts(
                "http_requests_total",
                "HTTP requests answered, by route pattern, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            histogram_opts(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by route pattern",
            ),
            &["route"],
        )?;
        let push_seconds = Histogram::with_opts(histogram_opts(
            "push_duration_seconds",
            "Pushes answered with outcomes, and how long each took (body read to durable outcomes)",
        ))?;
        let pull_seconds = Histogram::with_opts(histogram_opts(
            "pull_duration_seconds",
            "Pull pages served, and how long each took",
        ))?;
        let pushed_changes = IntCounterVec::new(
            opts(
                "changes_total",
                "Pushed changes by outcome: applied, conflict, locked, refused; replays of earlier outcomes count as replayed",
            ),
            &["outcome"],
        )?;
        let refusals = IntCounterVec::new(
            opts("refusals_total", "Pushed changes refused, by refusal code"),
            &["code"],
        )?;
        let conflict_units = IntCounter::with_opts(opts(
            "conflict_units_total",
            "Units left holding concurrent versions for a person to resolve",
        ))?;
        let pulled_records = IntCounter::with_opts(opts("pulled_records_total", "Records sent in pull pages"))?;
        let store_bytes = IntGaugeVec::new(
            opts(
                "store_bytes",
                "Size on disk: the sled store (records, accounts) and the photo files",
            ),
            &["store"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(request_seconds.clone()))?;
        registry.register(Box::new(push_seconds.clone()))?;
        registry.register(Box::new(pull_seconds.clone()))?;
        registry.register(Box::new(pushed_changes.clone()))?;
        registry.register(Box::new(refusals.clone()))?;
        registry.register(Box::new(conflict_units.clone()))?;
        registry.register(Box::new(pulled_records.clone()))?;
        registry.register(Box::new(store_bytes.clone()))?;
        // Resident memory, CPU and open files of this process, under their standard names.
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))?;
        Ok(Self {
            registry,
            requests,
            request_seconds,
            push_seconds,
            pull_seconds,
            pushed_changes,
            refusals,
            conflict_units,
            pulled_records,
            store_bytes,
            data_dir: data_dir.to_path_buf(),
            photos_measured: Arc::new(Mutex::new(None)),
        })
    }

    /// One push answered: its outcomes and how long it took.
    pub fn pushed(&self, response: &PushResponse, started: Instant) {
        self.push_seconds.observe(started.elapsed().as_secs_f64());
        for c in &response.outcomes {
            let kind = match (&c.outcome, c.replayed) {
                (_, true) => "replayed",
                (Outcome::Applied { .. }, false) => "applied",
                (Outcome::Conflict { units, .. }, false) => {
                    self.conflict_units.inc_by(units.len() as u64);
                    "conflict"
                }
                (Outcome::Locked { .. }, false) => "locked",
                (Outcome::Refused(r), false) => {
                    self.refusals.with_label_values(&[r.code.as_str()]).inc();
                    "refused"
                }
            };
            self.pushed_changes.with_label_values(&[kind]).inc();
        }
    }

    /// One pull page served with `records` records.
    pub fn pulled(&self, records: usize, started: Instant) {
        self.pull_seconds.observe(started.elapsed().as_secs_f64());
        self.pulled_records.inc_by(records as u64);
    }

    fn answered(&self, route: &str, method: &str, status: u16, started: Instant) {
        let status = status.to_string();
        self.requests.with_label_values(&[route, method, &status]).inc();
        self.request_seconds
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Everything in Prometheus' text format. Measures the store first (the
    /// photo folder at most every `PHOTO_WALK_EVERY`, by walking it), so call
    /// it off the async workers.
    pub fn render(&self, sled_bytes: u64) -> Result<String, MetricsError> {
        self.render_at(sled_bytes, Instant::now())
    }

    fn render_at(&self, sled_bytes: u64, now: Instant) -> Result<String, MetricsError> {
        self.store_bytes
            .with_label_values(&["sled"])
            .set(i64::try_from(sled_bytes).unwrap_or(i64::MAX));
        let photos = self.photo_bytes(now);
        self.store_bytes
            .with_label_values(&["photos"])
            .set(i64::try_from(photos).unwrap_or(i64::MAX));
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    /// The photo folder's size, measured again once the last measure is older
    /// than `PHOTO_WALK_EVERY`. Scrapes arriving during a walk wait for it
    /// rather than start their own.
    fn photo_bytes(&self, now: Instant) -> u64 {
        // A scrape that panicked mid-walk left only a stale number behind.
        let mut measured = self.photos_measured.lock().unwrap_or_else(|p| p.into_inner());
        match *measured {
            Some((at, bytes)) if now.saturating_duration_since(at) < PHOTO_WALK_EVERY => bytes,
            _ => {
                let bytes = folder_bytes(&self.data_dir.join("photos"));
                *measured = Some((now, bytes));
                bytes
            }
        }
    }
}

/// The bytes of the files under `dir` (0 if it does not exist); unreadable
/// entries are skipped: a scrape must not fail over one file.
fn folder_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => todo.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// Middleware: counts every answer by route pattern, method and status.
pub async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, Error> {
    let started = Instant::now();
    let metrics = req.app_data::<web::Data<Metrics>>().cloned();
    // Clients may send any token as a method: only the standard ones get a label.
    let method: &'static str = match req.method().as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    };
    let res = next.call(req).await?;
    if let Some(metrics) = metrics {
        let route = res.request().match_pattern();
        metrics.answered(
            route.as_deref().unwrap_or("unmatched"),
            method,
            res.status().as_u16(),
            started,
        );
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn photos_gauge(text: &str) -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix("fieldsync_store_bytes{store=\"photos\"} "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no photos gauge in\n{text}"))
    }

    #[test]
    fn the_photo_folder_is_walked_again_only_when_its_measure_is_old() {
        let dir = tempfile::tempdir().unwrap();
        let photos = dir.path().join("photos").join("ab");
        std::fs::create_dir_all(&photos).unwrap();
        std::fs::write(photos.join("one"), vec![0u8; 1000]).unwrap();
        let metrics = Metrics::new(dir.path()).unwrap();
        let start = Instant::now();
        assert_eq!(photos_gauge(&metrics.render_at(0, start).unwrap()), 1000);

        // A photo stored since: scrapes inside the period see the last walk.
        std::fs::write(photos.join("two"), vec![0u8; 500]).unwrap();
        let soon = start + PHOTO_WALK_EVERY / 2;
        assert_eq!(photos_gauge(&metrics.clone().render_at(0, soon).unwrap()), 1000);

        let later = start + PHOTO_WALK_EVERY;
        assert_eq!(photos_gauge(&metrics.render_at(0, later).unwrap()), 1500);
    }
}
