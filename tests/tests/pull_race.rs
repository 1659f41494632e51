#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A tablet that pulls without pause while two others push edit after edit to
//! the same few records, each to its own unit, ends holding exactly what the
//! server holds.
//!
//! Every push re-sequences its record: the writer deletes the record's old
//! `seq` key and writes one above what pulls may read, and a sled scan is no
//! snapshot, so a pull read meanwhile skips the record. It comes later as only
//! the units changed since the puller's complete seq; a pull that skipped a
//! record must therefore not move that seq, or the unit the skipped version
//! changed never reaches the tablet.
//!
//! `PULL_RACE_RECORDS` sets how many records are edited twice (default 150).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mobile_schema::ids::{InspectionId, RecordId};
use mobile_schema::record::RecordKind;
use mobile_schema::sample;
use serde_json::json;
use tests::harness::ServerProcess;
use tests::storm;
use tests::tablet::comparable;

const PASSWORD: &str = "pull-race-Hq51-password";

fn records() -> usize {
    std::env::var("PULL_RACE_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150)
}

#[test]
fn a_tablet_pulling_while_records_are_re_sequenced_misses_no_unit() {
    let root = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(&root.path().join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let url = server.url("");
    let (mut tablets, site) = storm::tablets_with_a_pond(root.path(), &url, PASSWORD, 3).unwrap();
    let mut reader = tablets.pop().unwrap();

    let device = tablets[0].replica.identity().device;
    let ids: Vec<RecordId> = (0..records())
        .map(|_| {
            let id = InspectionId::generate();
            tablets[0]
                .replica
                .create(sample::inspection(id, site, device).into())
                .unwrap();
            id.into()
        })
        .collect();
    tablets[0].sync().unwrap();
    tablets[1].sync().unwrap();
    // The reader holds every record whole, and its cursor a complete seq.
    reader.sync().unwrap();
    reader.sync().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let pulls = Arc::new(AtomicUsize::new(0));
    let puller = {
        let (stop, pulls) = (stop.clone(), pulls.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                reader.replica.pull(&mut reader.transport).unwrap();
                pulls.fetch_add(1, Ordering::Relaxed);
                // Behind by a few commits, so a page holds several records
                // and one moved during the scan can be followed by others.
                std::thread::sleep(std::time::Duration::from_millis(7));
            }
            reader
        })
    };

    // Two tablets push one change at a time, each to its own unit: the first
    // edits record k, the second edits it right after, while the pulls read.
    // Each unit is changed once, so a version a pull loses stays lost.
    let done = Arc::new(AtomicUsize::new(0));
    let writers: Vec<_> = tablets
        .into_iter()
        .enumerate()
        .map(|(w, mut tablet)| {
            let (ids, done) = (ids.clone(), done.clone());
            std::thread::spawn(move || {
                for (k, id) in ids.iter().enumerate() {
                    let (unit, value) = if w == 0 {
                        ("conclusion", json!(format!("结论 {k}")))
                    } else {
                        while done.load(Ordering::Acquire) <= k {
                            std::thread::yield_now();
                        }
                        ("answers/TP-01", json!({"result": "ok", "note": format!("第{k}次")}))
                    };
                    tablet.edit(RecordKind::Inspection, *id, unit, value).unwrap();
                    tablet.replica.push(&mut tablet.transport).unwrap();
                    if w == 0 {
                        done.store(k + 1, Ordering::Release);
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    let mut reader = puller.join().unwrap();
    assert!(
        pulls.load(Ordering::Relaxed) > 10,
        "the reader hardly pulled: the test proved nothing"
    );

    // Quiet now: one more pull brings whatever the last pulls left for later.
    reader.sync().unwrap();
    let mut checker = storm::checker(&url, PASSWORD).unwrap();
    let on_server = storm::server_records(&mut checker).unwrap();
    for id in &ids {
        let held = reader.replica.view(*id).unwrap().unwrap();
        assert_eq!(
            comparable(&held).unwrap(),
            comparable(&on_server[id]).unwrap(),
            "record {id}: the pulling tablet and the server differ"
        );
    }
}
