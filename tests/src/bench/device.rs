//! A benchmark tablet: a real replica in its own sled folder and a real HTTP
//! transport logged in to the server.

use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use mobile_schema::AnyRecord;
use mobile_schema::record::RecordKind;
use replica::{HttpConfig, HttpTransport, Identity, Replica, ReplicaConfig, Transport as _};
use sync_protocol::wire::DeviceRegistration;

use super::workload::{WorkRecord, device_id};
use super::{ADMIN_PASSWORD, Options};

/// One tablet of the benchmark.
#[derive(Debug)]
pub struct BenchDevice {
    /// The workload's device name.
    pub name: String,
    pub replica: Replica,
    pub transport: HttpTransport,
}

impl BenchDevice {
    /// Log in as `admin` from this device, open its store in `dir` and bind the
    /// tokens to the store's replica, as `fieldsync-device init` does.
    pub fn log_in(server: &str, name: &str, dir: &Path, options: &Options) -> anyhow::Result<Self> {
        let device = device_id(name);
        let mut transport = HttpTransport::new(HttpConfig::new(server));
        let user = transport
            .login(
                "admin",
                ADMIN_PASSWORD,
                DeviceRegistration {
                    id: device,
                    replica: None,
                    name: Some(name.to_string()),
                    app_version: Some(format!("fieldsync-bench/{}", env!("CARGO_PKG_VERSION"))),
                },
            )
            .with_context(|| format!("logging {name} in"))?;
        let defaults = ReplicaConfig::for_identity(Identity::of(&user, device));
        let config = ReplicaConfig {
            // A size given on the command line is fixed; otherwise requests
            // grow as the replica's pacing lets them.
            push_batch: options.push_batch.unwrap_or(defaults.push_batch),
            push_batch_max: options.push_batch.unwrap_or(defaults.push_batch_max),
            pull_limit: options.pull_limit.unwrap_or(defaults.pull_limit),
            pull_limit_max: options.pull_limit.unwrap_or(defaults.pull_limit_max),
            ..defaults
        };
        let replica = Replica::open_with(dir, config).with_context(|| format!("opening {}", dir.display()))?;
        transport.identify(&replica.actor())?;
        Ok(Self {
            name: name.to_string(),
            replica,
            transport,
        })
    }

    /// Capture one workload record offline: create the inspection, submit it,
    /// create its hazards. Each call is durable when it returns.
    pub fn capture(&mut self, r: &WorkRecord) -> anyhow::Result<()> {
        let id = r.id();
        self.replica
            .create(AnyRecord::Inspection(r.inspection.clone()))
            .with_context(|| format!("creating inspection {id}"))?;
        self.replica
            .transition(RecordKind::Inspection, id, "submit")
            .with_context(|| format!("submitting inspection {id}"))?;
        for h in &r.hazards {
            self.replica
                .create(AnyRecord::Hazard(h.clone()))
                .with_context(|| format!("creating hazard {}", h.id))?;
        }
        Ok(())
    }
}

/// `f` over every item on `threads` threads, results in item order; the first
/// error wins.
pub fn parallel<T, R, F>(items: &mut [T], threads: usize, f: F) -> anyhow::Result<Vec<R>>
where
    T: Send,
    R: Send,
    F: Fn(&mut T) -> anyhow::Result<R> + Sync,
{
    let n = items.len();
    let queue = Mutex::new(items.iter_mut().enumerate());
    let results: Mutex<Vec<Option<anyhow::Result<R>>>> = Mutex::new((0..n).map(|_| None).collect());
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, n.max(1)) {
            s.spawn(|| {
                loop {
                    let next = match queue.lock() {
                        Ok(mut q) => q.next(),
                        Err(_) => None,
                    };
                    let Some((i, item)) = next else { break };
                    let r = f(item);
                    let failed = r.is_err();
                    if let Ok(mut out) = results.lock() {
                        out[i] = Some(r);
                    }
                    if failed {
                        break;
                    }
                }
            });
        }
    });
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a benchmark thread panicked"))?;
    let mut out = Vec::with_capacity(n);
    let mut missing = false;
    for r in results {
        match r {
            Some(r) => out.push(r?),
            None => missing = true,
        }
    }
    if missing {
        anyhow::bail!("a benchmark thread stopped early");
    }
    Ok(out)
}
