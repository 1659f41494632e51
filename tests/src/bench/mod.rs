//! The sync benchmark of `fixtures/bench/WORKLOAD.md`: a real `fieldsync`
//! server process, one real [`replica::Replica`] per workload device in its own
//! sled folder, logged in over HTTP. The `fieldsync-bench` binary and the CI
//! smoke test both run [`run`].
//!
//! Each scenario prints one JSON line ([`ScenarioReport`]). Logins, creating
//! the records in the tablets' outboxes and catching tablets up are set-up and
//! not timed; a scenario whose preconditions are missing (e.g. `pull_full`
//! alone) does them untimed first.

pub mod device;
pub mod photos;
pub mod report;
pub mod workload;

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Instant;

use anyhow::{Context, bail};
use mobile_schema::AnyRecord;
use mobile_schema::ids::RecordId;
use mobile_schema::inspection::ItemResult;
use mobile_schema::record::RecordKind;
use serde_json::json;

pub use device::{BenchDevice, parallel};
use report::round;
pub use report::{CpuMark, ScenarioReport, ServerMemory};
pub use workload::{WorkRecord, Workload};

use crate::harness::ServerProcess;

/// The bootstrap admin's password, given to the server on its first start.
pub const ADMIN_PASSWORD: &str = "fieldsync-bench-Guangxi-2025";

/// The scenarios of WORKLOAD.md this benchmark runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Every device, holding its records offline, pushes them to a server that has only the sites.
    PushFull,
    /// A fresh device pulls everything.
    PullFull,
    /// After a full sync, one device edits one field in 1% of the records and syncs.
    Incremental,
    /// Two devices edit the same 2% of the records offline, both sync, then both pull.
    Conflict,
    /// The photos upload from their devices, then a fresh device downloads them.
    Photos,
    /// The photo upload stops at about half of the bytes and is resumed.
    PhotosResume,
}

impl Scenario {
    pub const ALL: [Scenario; 6] = [
        Scenario::PushFull,
        Scenario::PullFull,
        Scenario::Incremental,
        Scenario::Conflict,
        Scenario::Photos,
        Scenario::PhotosResume,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Scenario::PushFull => "push_full",
            Scenario::PullFull => "pull_full",
            Scenario::Incremental => "incremental",
            Scenario::Conflict => "conflict",
            Scenario::Photos => "photos",
            Scenario::PhotosResume => "photos_resume",
        }
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scenario::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| {
            format!(
                "unknown scenario {s:?}; one of: {}",
                Scenario::ALL.map(Scenario::as_str).join(", ")
            )
        })
    }
}

/// How to run the benchmark.
#[derive(Debug, Clone)]
pub struct Options {
    /// The JSONL workload.
    pub workload: PathBuf,
    /// Only the first `records` lines.
    pub records: Option<usize>,
    /// Fold the workload's devices onto at most this many tablets.
    pub devices: Option<usize>,
    /// Tablets syncing at the same time in `push_full` (and in set-up).
    pub concurrency: usize,
    /// Changes per push request, fixed; `None` keeps the replica's pacing.
    pub push_batch: Option<usize>,
    /// Records per pull page, fixed; `None` keeps the replica's pacing.
    pub pull_limit: Option<usize>,
    /// Where the server and tablets keep their stores (a fresh temporary folder if `None`).
    pub dir: Option<PathBuf>,
    /// Progress lines on stderr.
    pub verbose: bool,
    /// The photos of the photo scenarios.
    pub photos: photos::PhotoSizes,
}

impl Options {
    /// The standard workload, every line, one tablet per device.
    pub fn standard() -> Self {
        Self {
            workload: default_workload(),
            records: None,
            devices: None,
            concurrency: 8,
            push_batch: None,
            pull_limit: None,
            dir: None,
            verbose: false,
            photos: photos::PhotoSizes::standard(),
        }
    }
}

/// `fixtures/bench/workload-5000.jsonl` of this checkout.
pub fn default_workload() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/bench/workload-5000.jsonl")
}

/// Run the scenarios in order, handing each report to `emit` as soon as it is made.
pub fn run(
    options: &Options,
    scenarios: &[Scenario],
    mut emit: impl FnMut(&ScenarioReport),
) -> anyhow::Result<Vec<ScenarioReport>> {
    let mut bench = Bench::start(options)?;
    let mut out = Vec::new();
    for s in scenarios {
        let report = match s {
            Scenario::PushFull => bench.push_full()?,
            Scenario::PullFull => bench.pull_full()?,
            Scenario::Incremental => bench.incremental()?,
            Scenario::Conflict => bench.conflict()?,
            Scenario::Photos => bench.photos()?,
            Scenario::PhotosResume => bench.photos_resume()?,
        };
        emit(&report);
        out.push(report);
    }
    Ok(out)
}

/// A running benchmark: the server, the tablets, what has been done.
struct Bench {
    options: Options,
    workload: Workload,
    // Dropped in field order: the tablets, then the server, then the folder.
    devices: Vec<BenchDevice>,
    server: ServerProcess,
    memory: ServerMemory,
    /// CPU times when the timed part of the scenario began.
    cpu: CpuMark,
    /// Tablets made later (a fresh puller), numbered for their folders.
    extra: usize,
    pushed: bool,
    _root: Option<tempfile::TempDir>,
    root: PathBuf,
}

impl Bench {
    fn log(&self, msg: impl AsRef<str>) {
        if self.options.verbose {
            // Wall-clock seconds, so that `perf record -k CLOCK_REALTIME` can be cut
            // to one scenario's timed part with `perf report --time START,END`.
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default();
            eprintln!("fieldsync-bench: {:.6} {}", now.as_secs_f64(), msg.as_ref());
        }
    }

    /// Start the server, give it the sites, log every tablet in and fill the outboxes.
    fn start(options: &Options) -> anyhow::Result<Self> {
        let mut workload = Workload::load(&options.workload, options.records)?;
        if let Some(n) = options.devices {
            workload.fold_devices(n);
        }
        let (tmp, root) = match &options.dir {
            Some(d) => {
                std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
                (None, d.clone())
            }
            None => {
                let t = tempfile::Builder::new().prefix("fieldsync-bench-").tempdir()?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let server = ServerProcess::start_with(&root.join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)])?;
        let memory = ServerMemory::new(server.pid());
        let mut bench = Self {
            options: options.clone(),
            workload,
            devices: Vec::new(),
            server,
            memory,
            cpu: CpuMark::default(),
            extra: 0,
            pushed: false,
            _root: tmp,
            root,
        };
        bench.log(format!(
            "{} records ({} changes) on {} devices, {} sites; server on port {}",
            bench.workload.records.len(),
            bench.workload.changes(),
            bench.workload.devices.len(),
            bench.workload.sites.len(),
            bench.server.port
        ));
        let started = Instant::now();
        bench.create_sites()?;
        bench.log_in_devices()?;
        bench.fill_outboxes()?;
        bench.log(format!("set-up took {:.1} s", started.elapsed().as_secs_f64()));
        Ok(bench)
    }

    fn new_device(&mut self, name: &str) -> anyhow::Result<BenchDevice> {
        self.extra += 1;
        let dir = self.root.join(format!("device-{:03}-{name}", self.extra));
        BenchDevice::log_in(&self.server.url(""), name, &dir, &self.options)
    }

    /// The bureau puts the sites on the server before the tablets go out.
    fn create_sites(&mut self) -> anyhow::Result<()> {
        let mut bureau = self.new_device("bureau")?;
        for site in &self.workload.sites {
            bureau
                .replica
                .create(AnyRecord::Site(site.clone()))
                .with_context(|| format!("creating site {}", site.id))?;
        }
        let report = bureau.replica.push(&mut bureau.transport)?;
        if report.refused > 0 || report.acked != self.workload.sites.len() {
            bail!("the server did not take every site: {report:?}");
        }
        Ok(())
    }

    /// One tablet per workload device, logged in, holding the sites.
    fn log_in_devices(&mut self) -> anyhow::Result<()> {
        let names = self.workload.devices.clone();
        let mut devices = Vec::with_capacity(names.len());
        for name in &names {
            self.extra += 1;
            devices.push((name.clone(), self.root.join(format!("device-{:03}-{name}", self.extra))));
        }
        let url = self.server.url("");
        let options = self.options.clone();
        let made = parallel(&mut devices, self.options.concurrency, |(name, dir)| {
            let mut d = BenchDevice::log_in(&url, name, dir, &options)?;
            // Tablets take their sites into the field.
            d.replica.pull(&mut d.transport)?;
            Ok(d)
        })?;
        self.devices = made;
        Ok(())
    }

    /// Every tablet captures its records offline: create, submit, hazards.
    fn fill_outboxes(&mut self) -> anyhow::Result<()> {
        let records = &self.workload.records;
        parallel(&mut self.devices, self.options.concurrency, |d| {
            let name = d.name.clone();
            for r in records.iter().filter(|r| r.device == name) {
                d.capture(r)?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Push every outbox, untimed, if `push_full` has not.
    fn ensure_pushed(&mut self) -> anyhow::Result<()> {
        if !self.pushed {
            self.log("pushing the workload (set-up)");
            self.push_all()?;
        }
        Ok(())
    }

    fn push_all(&mut self) -> anyhow::Result<(usize, usize)> {
        let reports = parallel(&mut self.devices, self.options.concurrency, |d| {
            d.replica.push(&mut d.transport).map_err(anyhow::Error::from)
        })?;
        self.pushed = true;
        let pushed: usize = reports.iter().map(|r| r.pushed).sum();
        let acked: usize = reports.iter().map(|r| r.acked).sum();
        let refused: usize = reports.iter().map(|r| r.refused).sum();
        if refused > 0 || acked != self.workload.changes() {
            bail!(
                "the server refused {refused} and acknowledged {acked} of {} changes",
                self.workload.changes()
            );
        }
        Ok((pushed, acked))
    }

    fn reset_stats(&mut self) {
        for d in &mut self.devices {
            d.transport.reset_stats();
        }
        self.start_measuring();
    }

    /// The timed part begins: a new memory peak, CPU counted from now.
    fn start_measuring(&mut self) {
        self.memory.reset_peak();
        self.cpu = CpuMark::now(self.server.pid());
    }

    /// Catch a tablet up with the server, untimed.
    fn catch_up(&mut self, i: usize) -> anyhow::Result<()> {
        let d = &mut self.devices[i];
        d.replica.pull(&mut d.transport)?;
        Ok(())
    }

    /// Indices of the tablets by how many workload records they hold, most first.
    fn busiest(&self) -> Vec<usize> {
        let mut idx: Vec<usize> = (0..self.devices.len()).collect();
        let count = |i: usize| {
            self.workload
                .records
                .iter()
                .filter(|r| r.device == self.devices[i].name)
                .count()
        };
        idx.sort_by_key(|i| (std::cmp::Reverse(count(*i)), *i));
        idx
    }

    fn report(&self, scenario: Scenario, records: usize, seconds: f64) -> ScenarioReport {
        let mut r = ScenarioReport::new(scenario.as_str(), records, seconds, self.memory.peak_mb());
        self.cpu.since(&mut r);
        r
    }

    fn push_full(&mut self) -> anyhow::Result<ScenarioReport> {
        if self.pushed {
            bail!("push_full needs full outboxes: run it first, and once");
        }
        self.reset_stats();
        self.log("push_full");
        let t = Instant::now();
        let (pushed, _) = self.push_all()?;
        let seconds = t.elapsed().as_secs_f64();
        let mut r = self.report(Scenario::PushFull, self.workload.records.len(), seconds);
        r.changes = Some(pushed);
        r.devices = Some(self.devices.len());
        r.concurrency = Some(self.options.concurrency.min(self.devices.len()));
        r.add_wire(self.devices.iter().map(|d| d.transport.stats()));
        Ok(r)
    }

    fn pull_full(&mut self) -> anyhow::Result<ScenarioReport> {
        self.ensure_pushed()?;
        let mut fresh = self.new_device("puller")?;
        self.start_measuring();
        fresh.transport.reset_stats();
        self.log("pull_full");
        let t = Instant::now();
        let report = fresh.replica.pull(&mut fresh.transport)?;
        let seconds = t.elapsed().as_secs_f64();
        let expected = self.workload.server_records();
        if report.pulled != expected {
            bail!("pulled {} record states, expected {expected}", report.pulled);
        }
        let mut r = self.report(Scenario::PullFull, self.workload.records.len(), seconds);
        r.record_states = Some(report.pulled);
        r.add_wire([fresh.transport.stats()]);
        Ok(r)
    }

    fn incremental(&mut self) -> anyhow::Result<ScenarioReport> {
        self.ensure_pushed()?;
        let Some(&i) = self.busiest().first() else {
            bail!("the incremental scenario needs a device");
        };
        self.catch_up(i)?;
        let name = self.devices[i].name.clone();
        let own: Vec<&WorkRecord> = self.workload.records.iter().filter(|r| r.device == name).collect();
        if own.is_empty() {
            bail!("the incremental scenario needs records");
        }
        let n = (self.workload.records.len() / 100).clamp(1, own.len());
        // One field each: the first checklist answer, turned over.
        let edits: Vec<(RecordId, String, serde_json::Value)> = own[..n]
            .iter()
            .filter_map(|r| {
                let (code, a) = r.inspection.answers.iter().next()?;
                let value = match a.result {
                    ItemResult::Ok => json!({"result": "problem", "note": "复查发现警示标识缺失，已责令整改"}),
                    _ => json!({"result": "ok", "note": "复查已整改到位"}),
                };
                Some((r.id(), format!("answers/{code}"), value))
            })
            .collect();
        let d = &mut self.devices[i];
        for (id, key, value) in &edits {
            d.replica
                .edit(RecordKind::Inspection, *id, vec![(key.clone(), value.clone())])?;
        }
        self.reset_stats();
        self.log(format!("incremental: {} edits on {name}", edits.len()));
        let d = &mut self.devices[i];
        let t = Instant::now();
        let report = d.replica.sync(&mut d.transport)?;
        let seconds = t.elapsed().as_secs_f64();
        if report.acked != edits.len() {
            bail!("{} of {} edits acknowledged: {report:?}", report.acked, edits.len());
        }
        let mut r = self.report(Scenario::Incremental, edits.len(), seconds);
        r.changes = Some(report.pushed);
        r.record_states = Some(report.pulled);
        r.add_wire([self.devices[i].transport.stats()]);
        Ok(r)
    }

    fn conflict(&mut self) -> anyhow::Result<ScenarioReport> {
        self.ensure_pushed()?;
        let order = self.busiest();
        if order.len() < 2 {
            bail!("the conflict scenario needs two devices");
        }
        let (a, b) = (order[0], order[1]);
        self.catch_up(a)?;
        self.catch_up(b)?;
        if self.workload.records.len() < 2 {
            bail!("the conflict scenario needs two records");
        }
        let n = (self.workload.records.len() / 50).clamp(2, self.workload.records.len());
        let chosen: Vec<WorkRecord> = self.workload.records[..n].to_vec();
        // Even records: both rewrite the conclusion (a conflict a person resolves).
        // Odd records: one rewrites the conclusion, the other an answer (they merge).
        let mut edits_a = Vec::new();
        let mut edits_b = Vec::new();
        for (k, r) in chosen.iter().enumerate() {
            let original = &r.inspection.conclusion;
            edits_a.push((
                r.id(),
                "conclusion".to_string(),
                json!(format!("{original}（复核：坝体渗水已处理）")),
            ));
            if k % 2 == 0 {
                edits_b.push((
                    r.id(),
                    "conclusion".to_string(),
                    json!(format!("{original}（复核：需补充监测数据）")),
                ));
            } else {
                let code = r.inspection.answers.keys().nth(1).cloned().unwrap_or_default();
                edits_b.push((
                    r.id(),
                    format!("answers/{code}"),
                    json!({"result": "problem", "note": "复核发现台账记录不全"}),
                ));
            }
        }
        for (dev, edits) in [(a, &edits_a), (b, &edits_b)] {
            let d = &mut self.devices[dev];
            for (id, key, value) in edits {
                d.replica
                    .edit(RecordKind::Inspection, *id, vec![(key.clone(), value.clone())])?;
            }
        }
        self.reset_stats();
        self.log(format!(
            "conflict: {n} records edited on {} and {}",
            self.devices[a].name, self.devices[b].name
        ));
        let t = Instant::now();
        let mut reports = Vec::new();
        for (dev, pull_only) in [(a, false), (b, false), (a, true), (b, true)] {
            let d = &mut self.devices[dev];
            reports.push(if pull_only {
                d.replica.pull(&mut d.transport)?
            } else {
                d.replica.sync(&mut d.transport)?
            });
        }
        let seconds = t.elapsed().as_secs_f64();
        // Here, before the replicas are read back for the comparison: the
        // report's CPU times end with the timed part.
        let mut r = self.report(Scenario::Conflict, n, seconds);
        let acked: usize = reports.iter().map(|r| r.acked).sum();
        if acked != 2 * n {
            bail!("{acked} of {} edits acknowledged: {reports:?}", 2 * n);
        }
        let mut conflicts = [0usize; 2];
        let mut identical = true;
        for r in &chosen {
            let id = r.id();
            let views = [self.devices[a].replica.view(id)?, self.devices[b].replica.view(id)?];
            for (k, dev) in [a, b].into_iter().enumerate() {
                let shown = self.devices[dev]
                    .replica
                    .get(id)?
                    .context("an edited record vanished")?;
                conflicts[k] += shown.conflicts.len();
            }
            let [va, vb] = views;
            identical &= va.map(|v| v.normalized()) == vb.map(|v| v.normalized());
        }
        r.changes = Some(reports.iter().map(|r| r.pushed).sum());
        r.record_states = Some(reports.iter().map(|r| r.pulled).sum());
        r.conflicts = Some(conflicts[0]);
        r.conflict_outcomes = Some(reports.iter().map(|r| r.conflicts).sum());
        r.identical = Some(identical && conflicts[0] == conflicts[1]);
        r.add_wire([self.devices[a].transport.stats(), self.devices[b].transport.stats()]);
        Ok(r)
    }

    /// Put each photo in its record's tablet queue (set-up, untimed).
    fn attach(&mut self, list: &[photos::BenchPhoto]) -> anyhow::Result<()> {
        parallel(&mut self.devices, self.options.concurrency, |d| {
            for p in list.iter().filter(|p| p.device == d.name) {
                d.replica
                    .attach_photo_to(p.record, &p.path)
                    .with_context(|| format!("attaching {}", p.path.display()))?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn photo_report(&self, scenario: Scenario, list: &[photos::BenchPhoto], seconds: f64) -> ScenarioReport {
        let bytes: u64 = list.iter().map(|p| p.size).sum();
        let mut r = self.report(scenario, list.len(), seconds);
        r.photos = Some(list.len());
        r.photo_bytes = Some(bytes);
        r.mb_per_s_up = Some(round(bytes as f64 / 1e6 / seconds, 1));
        r
    }

    fn upload_all(&mut self, stop: fn(&replica::QueueProgress) -> std::ops::ControlFlow<()>) -> anyhow::Result<usize> {
        let config = photos::upload_config();
        let reports = parallel(&mut self.devices, self.options.concurrency, |d| {
            let mut progress = |p: &replica::QueueProgress| stop(p);
            d.replica
                .upload_photos(&mut d.transport, &config, &mut progress)
                .map_err(anyhow::Error::from)
        })?;
        Ok(reports.iter().map(|r| r.uploaded + r.deduplicated).sum())
    }

    fn photos(&mut self) -> anyhow::Result<ScenarioReport> {
        self.ensure_pushed()?;
        let list = photos::make_photos(
            &self.workload.records,
            self.options.photos,
            1,
            &self.root.join("photo-files-1"),
        )?;
        self.attach(&list)?;
        self.reset_stats();
        let rss_before = self.memory.rss_mb();
        self.log(format!("photos: uploading {}", list.len()));
        let t = Instant::now();
        let uploaded = self.upload_all(|_| std::ops::ControlFlow::Continue(()))?;
        let seconds = photos::seconds_since(t);
        if uploaded != list.len() {
            bail!("{uploaded} of {} photos uploaded", list.len());
        }
        let mut r = self.photo_report(Scenario::Photos, &list, seconds);
        r.add_wire(self.devices.iter().map(|d| d.transport.stats()));
        let photo_bytes = r.photo_bytes.unwrap_or(1).max(1);
        r.wire_bytes_per_photo_byte = Some(round(r.bytes_up as f64 / photo_bytes as f64, 4));
        r.server_rss_growth_mb = self.memory.peak_mb().zip(rss_before).map(|(p, b)| round(p - b, 1));

        // An admin's fresh device (scope checks cost nothing for admins)
        // downloads them all, once the thumbnails are made: the queue works
        // outside the timed windows.
        let mut viewer = self.new_device("photo-viewer")?;
        let token = viewer
            .transport
            .credentials()
            .map(|c| c.access_token.clone())
            .context("the viewer has no token")?;
        photos::wait_for_thumbnails(&self.server.url(""), &token, &list)?;
        viewer.transport.reset_stats();
        self.log("photos: downloading");
        let t = Instant::now();
        let got = {
            let mut client = replica::PhotoClient::new(&mut viewer.transport, photos::upload_config());
            photos::download_all(&mut client, &list, &self.root.join("downloaded"))?
        };
        let down = photos::seconds_since(t);
        r.download_seconds = Some(round(down, 4));
        r.mb_per_s_down = Some(round(got as f64 / 1e6 / down, 1));
        r.add_wire([viewer.transport.stats()]);
        r.server_peak_rss_mb = self.memory.peak_mb();
        Ok(r)
    }

    fn photos_resume(&mut self) -> anyhow::Result<ScenarioReport> {
        self.ensure_pushed()?;
        let list = photos::make_photos(
            &self.workload.records,
            self.options.photos,
            2,
            &self.root.join("photo-files-2"),
        )?;
        self.attach(&list)?;
        self.reset_stats();
        self.log(format!("photos_resume: uploading {}, stopping at half", list.len()));
        let t = Instant::now();
        let first = self.upload_all(photos::stop_at_half)?;
        // The app comes back: the queue resumes each upload from the server's offset.
        let second = self.upload_all(|_| std::ops::ControlFlow::Continue(()))?;
        let seconds = photos::seconds_since(t);
        if first + second != list.len() || first == list.len() {
            bail!("{first} photos before the cut and {second} after, of {}", list.len());
        }
        let mut r = self.photo_report(Scenario::PhotosResume, &list, seconds);
        r.add_wire(self.devices.iter().map(|d| d.transport.stats()));
        let photo_bytes = r.photo_bytes.unwrap_or(0);
        let sent = photos::body_bytes_sent(self.devices.iter().map(|d| d.transport.stats()));
        r.bytes_resent = Some(sent.saturating_sub(photo_bytes));
        r.wire_bytes_per_photo_byte = Some(round(r.bytes_up as f64 / photo_bytes.max(1) as f64, 4));
        Ok(r)
    }
}
