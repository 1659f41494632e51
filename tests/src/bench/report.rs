//! What a scenario prints, and the server's memory as the kernel reports it.

use replica::WireStats;
use serde::{Deserialize, Serialize};

/// One scenario's JSON line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: String,
    /// Workload records (inspections, each with its hazards) the scenario is about.
    pub records: usize,
    pub seconds: f64,
    /// `records / seconds`.
    pub per_second: f64,
    /// Bytes sent and received as they crossed the network: bodies as sent
    /// (zstd up, zstd or gzip down) plus HTTP/1.1 header blocks, retries included.
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// The same bodies as JSON (before compression, after decoding), no headers.
    pub raw_bytes_up: u64,
    pub raw_bytes_down: u64,
    pub bytes_up_per_record: f64,
    pub bytes_down_per_record: f64,
    pub requests: u64,
    /// Peak resident set of the server process during the scenario (VmHWM),
    /// or since it started when the peak cannot be reset.
    pub server_peak_rss_mb: Option<f64>,
    /// CPU time (user and system, all threads) the server process and the
    /// tablets (this process) used in the timed part; the photo scenarios
    /// count their upload. On a 2-core machine the two share the cores, so
    /// these say which side a change saved on. They move less than the rate
    /// between runs but still drift with the machine's load (push_full's
    /// server: 1.94-2.29 s in one half hour, 2.43-2.74 s in the next), so
    /// compare builds in alternating runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cpu_s: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tablets_cpu_s: Option<f64>,
    /// Changes pushed (an inspection's create and submit, each hazard's create, edits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<usize>,
    /// Record states pulled (sites, inspections and hazards each count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record_states: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub devices: Option<usize>,
    /// Tablets syncing at the same time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<usize>,
    /// Units holding concurrent versions, as a tablet shows them after the pulls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflicts: Option<usize>,
    /// Pushed changes the server answered `conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict_outcomes: Option<usize>,
    /// Both tablets hold the same state of every edited record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identical: Option<bool>,
    /// Photo scenarios: how many photos, their bytes, and the rates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photos: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub photo_bytes: Option<u64>,
    /// Photo bytes uploaded per second, in MB (10^6 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb_per_s_up: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mb_per_s_down: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download_seconds: Option<f64>,
    /// Upload wire bytes (bodies and headers) per photo byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wire_bytes_per_photo_byte: Option<f64>,
    /// Body bytes sent beyond each photo byte once (after a cut).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_resent: Option<u64>,
    /// Server peak RSS during the upload minus its RSS before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_rss_growth_mb: Option<f64>,
}

impl ScenarioReport {
    pub fn new(scenario: &str, records: usize, seconds: f64, server_peak_rss_mb: Option<f64>) -> Self {
        Self {
            scenario: scenario.to_string(),
            records,
            seconds: round(seconds, 4),
            per_second: if seconds > 0.0 {
                round(records as f64 / seconds, 1)
            } else {
                0.0
            },
            bytes_up: 0,
            bytes_down: 0,
            raw_bytes_up: 0,
            raw_bytes_down: 0,
            bytes_up_per_record: 0.0,
            bytes_down_per_record: 0.0,
            requests: 0,
            server_peak_rss_mb,
            server_cpu_s: None,
            tablets_cpu_s: None,
            changes: None,
            record_states: None,
            devices: None,
            concurrency: None,
            conflicts: None,
            conflict_outcomes: None,
            identical: None,
            photos: None,
            photo_bytes: None,
            mb_per_s_up: None,
            mb_per_s_down: None,
            download_seconds: None,
            wire_bytes_per_photo_byte: None,
            bytes_resent: None,
            server_rss_growth_mb: None,
        }
    }

    /// Add the traffic of these transports.
    pub fn add_wire(&mut self, stats: impl IntoIterator<Item = WireStats>) {
        for s in stats {
            self.bytes_up += s.bytes_sent();
            self.bytes_down += s.bytes_received();
            self.raw_bytes_up += s.raw_body_bytes_sent;
            self.raw_bytes_down += s.raw_body_bytes_received;
            self.requests += s.requests;
        }
        let n = self.records.max(1) as f64;
        self.bytes_up_per_record = round(self.bytes_up as f64 / n, 1);
        self.bytes_down_per_record = round(self.bytes_down as f64 / n, 1);
    }
}

pub(crate) fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

/// CPU seconds a process has used, user and system, its finished threads
/// included: `utime` and `stime` of `/proc/<pid>/stat`, in USER_HZ ticks,
/// which Linux fixes at 100 a second for /proc whatever the kernel's own HZ.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / 100.0)
}

/// CPU seconds of the server and of this process at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuMark {
    server_pid: u32,
    server: Option<f64>,
    tablets: Option<f64>,
}

impl CpuMark {
    pub fn now(server_pid: u32) -> Self {
        Self {
            server_pid,
            server: cpu_seconds(server_pid),
            tablets: cpu_seconds(std::process::id()),
        }
    }

    /// What each used since `self`, into `report`.
    pub fn since(&self, report: &mut ScenarioReport) {
        let now = Self::now(self.server_pid);
        let used = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| round(b - a, 2));
        report.server_cpu_s = used(self.server, now.server);
        report.tablets_cpu_s = used(self.tablets, now.tablets);
    }
}

/// The server process's memory, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy)]
pub struct ServerMemory {
    pid: u32,
}

impl ServerMemory {
    pub fn new(pid: u32) -> Self {
        Self { pid }
    }

    /// Start a new peak: writing 5 to `clear_refs` resets VmHWM to the current
    /// RSS (Linux ≥ 4.0). Without it the peak is the one since the start.
    pub fn reset_peak(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.pid), "5");
    }

    /// VmRSS in MiB: the resident set now.
    pub fn rss_mb(&self) -> Option<f64> {
        self.field_kb("VmRSS:").map(|kb| round(kb as f64 / 1024.0, 1))
    }

    /// VmHWM in MiB.
    pub fn peak_mb(&self) -> Option<f64> {
        self.field_kb("VmHWM:").map(|kb| round(kb as f64 / 1024.0, 1))
    }

    fn field_kb(&self, name: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    }
}
