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

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use replica::HttpTransport;
use sync_protocol::RecordState;
use tests::harness::ServerProcess;
use tests::storm::{self, Pace};
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

/// What a tablet does between kills.
const PACE: Pace = Pace {
    records: 4,
    new_every: 5,
    sync_every: 3,
    pause: Duration::from_millis(5),
    retry_failed_syncs: true,
};

fn conclusion_of(state: &RecordState) -> String {
    storm::conclusion_of(state).unwrap()
}

/// Every record state on the server, pulled from 0 by a device with no replica.
fn server_records(url: &str, checker: &mut Option<HttpTransport>) -> BTreeMap<RecordId, RecordState> {
    let t = checker.get_or_insert_with(|| storm::checker(url, PASSWORD).unwrap());
    storm::server_records(t).unwrap()
}

#[test]
fn acknowledged_pushes_survive_sigkill_of_the_server_and_retries_complete_the_rest() {
    let mut root = tempfile::tempdir().unwrap();
    let mut server =
        ServerProcess::start_with(&root.path().join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let url = server.url("");

    // A site every inspection refers to, known to all tablets before the storm.
    let (tablets, site) = storm::tablets_with_a_pond(root.path(), &url, PASSWORD, TABLETS).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Vec<Arc<Mutex<Acked>>> = (0..TABLETS).map(|_| Arc::default()).collect();
    let workers: Vec<_> = tablets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (acked, stop) = (acked[i].clone(), stop.clone());
            std::thread::spawn(move || {
                storm::storm(i, t, site, PACE, &stop, |made| {
                    acked.lock().unwrap().edits.extend(made.clone());
                })
            })
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
                let Some(state) = on_server.get(id) else {
                    // Kept, to read the seq index against the records.
                    let kept = std::mem::replace(&mut root, tempfile::tempdir().unwrap()).keep();
                    panic!(
                        "tablet {i}: acknowledged record {id} lost; the stores are kept in {}",
                        kept.display()
                    );
                };
                let text = conclusion_of(state);
                let got = storm::edit_number(&text);
                assert!(
                    got >= *n,
                    "tablet {i}: record {id} acknowledged at edit {n}, server has {text:?}"
                );
                checked += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut tablets: Vec<Tablet> = workers.into_iter().map(|w| w.join().unwrap().unwrap()).collect();
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
            let edits = storm::edit_number(&conclusion_of(theirs));
            assert_eq!(unit.superseded.len() as u64, edits, "tablet {i} record {id}");
        }
    }
}
