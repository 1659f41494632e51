#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The server is killed with SIGKILL in the middle of a storm of pushes from
//! several tablets, and restarted on the same folder and port, many times.
//! After every restart each change a tablet saw acknowledged is on the server;
//! in the end the tablets' retries have delivered everything, each change once.
//!
//! `SERVER_KILL_ITERATIONS` sets how many kills (default 10).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mobile_schema::ids::{InspectionId, RecordId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use replica::{HttpConfig, HttpTransport, Transport};
use serde_json::json;
use sync_protocol::RecordState;
use sync_protocol::wire::DeviceRegistration;
use tests::harness::ServerProcess;
use tests::tablet::Tablet;

const PASSWORD: &str = "kill-storm-Wq84-password";
const TABLETS: usize = 3;

/// What a tablet knows the server has: records created and, per record, the
/// last edit number, as of its last sync that ended with an empty outbox.
#[derive(Debug, Clone, Default)]
struct Acked {
    edits: BTreeMap<RecordId, u64>,
}

fn iterations() -> usize {
    std::env::var("SERVER_KILL_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

/// Few quick tries: a sync against a dead server fails fast and the tablet
/// tries again on its next round, as a real one would.
fn http(url: &str) -> HttpConfig {
    HttpConfig {
        attempts: 2,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..HttpConfig::new(url)
    }
}

fn conclusion_of(state: &RecordState) -> String {
    match state.materialize().unwrap() {
        AnyRecord::Inspection(i) => i.conclusion,
        other => panic!("not an inspection: {other:?}"),
    }
}

/// Every record state on the server, pulled from 0 by a device with no replica.
fn server_records(url: &str, checker: &mut Option<HttpTransport>) -> BTreeMap<RecordId, RecordState> {
    let t = checker.get_or_insert_with(|| {
        let mut t = HttpTransport::new(http(url));
        t.login(
            "admin",
            PASSWORD,
            DeviceRegistration {
                id: mobile_schema::ids::DeviceId::generate(),
                replica: None,
                name: Some("checker".into()),
                app_version: None,
            },
        )
        .unwrap();
        t
    });
    let mut out = BTreeMap::new();
    let mut since = "0".to_string();
    loop {
        let page = t.pull(&since, 1000).unwrap();
        for r in page.records {
            out.insert(r.id, r);
        }
        since = page.next;
        if !page.more {
            return out;
        }
    }
}

/// One tablet's storm: new inspections and edits of its own inspections'
/// conclusions ("tablet:record-index:edit-number"), a sync every few edits.
fn storm(index: usize, mut tablet: Tablet, site: SiteId, acked: Arc<Mutex<Acked>>, stop: Arc<AtomicBool>) -> Tablet {
    let mut made: BTreeMap<RecordId, u64> = BTreeMap::new();
    let mut ids: Vec<RecordId> = Vec::new();
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        if ids.len() < 4 && step % 5 == 1 {
            let insp = InspectionId::generate();
            let device = tablet.replica.identity().device;
            tablet
                .replica
                .create(sample::inspection(insp, site, device).into())
                .unwrap();
            ids.push(insp.into());
            made.insert(insp.into(), 0);
        }
        for (i, id) in ids.iter().enumerate() {
            if (step + i as u64).is_multiple_of(2) {
                let n = made[id] + 1;
                tablet
                    .edit(
                        RecordKind::Inspection,
                        *id,
                        "conclusion",
                        json!(format!("{index}:{i}:{n}")),
                    )
                    .unwrap();
                made.insert(*id, n);
            }
        }
        if step.is_multiple_of(3) {
            let before = made.clone();
            if tablet.sync().is_ok() && tablet.replica.pending_count() == 0 {
                let mut a = acked.lock().unwrap();
                for (id, n) in before {
                    a.edits.insert(id, n);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    tablet
}

#[test]
fn acknowledged_pushes_survive_sigkill_of_the_server_and_retries_complete_the_rest() {
    let root = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::start_with(&root.path().join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let url = server.url("");

    // A site every inspection refers to, known to all tablets before the storm.
    let mut tablets: Vec<Tablet> = (0..TABLETS)
        .map(|i| Tablet::enrol(&root.path().join(format!("t{i}")), http(&url), "admin", PASSWORD, None).unwrap())
        .collect();
    let site = SiteId::generate();
    tablets[0].replica.create(sample::pond(site).into()).unwrap();
    for t in &mut tablets {
        t.sync().unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<Mutex<Acked>>> = (0..TABLETS).map(|_| Arc::default()).collect();
    let workers: Vec<_> = tablets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (acked, stop) = (acked[i].clone(), stop.clone());
            std::thread::spawn(move || storm(i, t, site, acked, stop))
        })
        .collect();

    let mut checker = None;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut checked = 0usize;
    for _ in 0..iterations() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_millis(150 + rng % 350));
        server.kill().unwrap();
        // Whatever a tablet saw acknowledged before the kill, it sees now.
        let snapshot: Vec<Acked> = acked.iter().map(|a| a.lock().unwrap().clone()).collect();
        server.restart().unwrap();
        let on_server = server_records(&url, &mut checker);
        for (i, a) in snapshot.iter().enumerate() {
            for (id, n) in &a.edits {
                let state = on_server
                    .get(id)
                    .unwrap_or_else(|| panic!("tablet {i}: acknowledged record {id} lost"));
                let text = conclusion_of(state);
                let got: u64 = text.rsplit(':').next().unwrap().parse().unwrap_or(0);
                assert!(
                    got >= *n,
                    "tablet {i}: record {id} acknowledged at edit {n}, server has {text:?}"
                );
                checked += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut tablets: Vec<Tablet> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert!(checked > 0, "the storm acknowledged nothing: the test proved nothing");

    // The server stays up now: every tablet's retries finish.
    for t in &mut tablets {
        t.sync().unwrap();
        assert_eq!(t.replica.pending_count(), 0);
        assert!(t.replica.refused().unwrap().is_empty());
    }
    // A second round brings each tablet what the others pushed after it synced.
    for t in &mut tablets {
        t.sync().unwrap();
    }
    let on_server = server_records(&url, &mut checker);
    for (i, t) in tablets.iter().enumerate() {
        for view in t.replica.list(RecordKind::Inspection).unwrap() {
            let id = view.record.id();
            let mine = t.replica.view(id).unwrap().unwrap();
            let theirs = &on_server[&id];
            assert_eq!(conclusion_of(theirs), conclusion_of(&mine), "tablet {i} record {id}");
            // Each edit once: a change applied twice under two sequence numbers
            // would leave two live versions naming the same base.
            let unit = &theirs.units["conclusion"];
            assert_eq!(unit.live.len(), 1, "tablet {i} record {id}: {unit:?}");
            let edits: u64 = conclusion_of(theirs).rsplit(':').next().unwrap().parse().unwrap_or(0);
            assert_eq!(unit.superseded.len() as u64, edits, "tablet {i} record {id}");
        }
    }
}
