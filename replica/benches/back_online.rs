#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A tablet back online after days away: it holds N inspections made offline,
//! pushes them and pulls their states back (against the in-process reference
//! server, so the figure is the replica's own work). Prints one line per run.
//!
//! `cargo bench -p replica --bench back_online -- [N]` (default 3,000). The
//! tablet's store is built once under the system temp folder
//! (`fieldsync-back-online-N`) and copied for each run.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mobile_schema::ids::{DeviceId, InspectionId, SiteId, UserId};
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use replica::{Identity, InProcessTransport, Replica, ReplicaConfig};
use sync_protocol::clock::SystemClock;
use sync_protocol::engine::EngineConfig;
use sync_protocol::reference::ReferenceServer;

const RUNS: usize = 3;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench` too: the count is the first number.
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(3_000);
    let base = std::env::temp_dir().join(format!("fieldsync-back-online-{n}"));
    if !base.join("done").exists() {
        let _ = std::fs::remove_dir_all(&base);
        let identity = Identity {
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Admin,
        };
        let started = Instant::now();
        let mut r = Replica::open_with(base.join("store"), ReplicaConfig::for_identity(identity)).unwrap();
        let site = SiteId::generate();
        r.create(sample::pond(site).into()).unwrap();
        for _ in 0..n {
            let id = InspectionId::generate();
            r.create(sample::inspection(id, site, identity.device).into()).unwrap();
        }
        drop(r);
        std::fs::write(base.join("done"), b"").unwrap();
        eprintln!(
            "built a tablet with {n} offline inspections in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    for run in 1..=RUNS {
        let dir: PathBuf = std::env::temp_dir().join(format!("fieldsync-back-online-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(&base.join("store"), &dir);
        let mut r = Replica::open(&dir).unwrap();
        let server = Arc::new(Mutex::new(ReferenceServer::new(EngineConfig::default())));
        let mut transport = InProcessTransport::new(server, Arc::new(SystemClock));
        let started = Instant::now();
        let report = r.sync(&mut transport).unwrap();
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!((report.pushed, report.pulled), (n + 1, n + 1), "{report:?}");
        println!("back_online run {run}: {n} offline inspections pushed and pulled back in {seconds:.3} s");
        drop(r);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
