#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two inspectors of one team edit the same inspection on two tablets while
//! offline — different units, the same unit, a resolution, a workflow step
//! racing an edit, a signature racing an edit — and sync in both orders. The
//! tablets, a third tablet that only pulls, and the server converge, equal to
//! the reference server fed the same pushes in the same order. The story runs
//! against both implementations of the server's storage trait.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use mobile_schema::ids::{InspectionId, RecordId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use replica::{HttpConfig, ReplicaConfig};
use serde_json::{Value, json};
use sync_protocol::RecordState;
use sync_protocol::clock::{Clock, ManualClock, SystemClock};
use sync_protocol::engine::EngineConfig;
use sync_protocol::reference::ReferenceServer;
use tests::harness::ServerProcess;
use tests::tablet::{Tablet, comparable};

const PASSWORD: &str = "story-test-Kp29-password";
const INSPECTION: RecordKind = RecordKind::Inspection;

/// First syncs, then second (getting first's changes), then first again.
fn round(a: &mut Tablet, b: &mut Tablet, a_first: bool) -> (replica::SyncReport, replica::SyncReport) {
    let (first, second) = if a_first { (a, b) } else { (b, a) };
    let r1 = first.sync().unwrap();
    let r2 = second.sync().unwrap();
    first.sync().unwrap();
    if a_first { (r1, r2) } else { (r2, r1) }
}

fn conclusion(t: &Tablet, id: RecordId) -> String {
    match t.replica.get(id).unwrap().unwrap().record {
        AnyRecord::Inspection(i) => i.conclusion,
        other => panic!("not an inspection: {other:?}"),
    }
}

fn unit(t: &Tablet, id: RecordId, key: &str) -> Value {
    let view = t.replica.view(id).unwrap().unwrap();
    let winner = view.units[key].winner().unwrap();
    serde_json::from_str(winner.value.raw().get()).unwrap()
}

fn pull_all(t: &mut Tablet) -> BTreeMap<RecordId, RecordState> {
    use replica::Transport;
    let mut out = BTreeMap::new();
    let mut since = "0".to_string();
    loop {
        let page = t.transport.pull(&since, 100).unwrap();
        for r in page.records {
            out.insert(r.id, r);
        }
        since = page.next;
        if !page.more {
            return out;
        }
    }
}

/// `a` records a pond and its inspection, then both tablets sync.
fn both_hold_an_inspection(a: &mut Tablet, b: &mut Tablet) -> RecordId {
    let site = SiteId::generate();
    let insp = InspectionId::generate();
    a.replica.create(sample::pond(site).into()).unwrap();
    a.replica
        .create(sample::inspection(insp, site, a.replica.identity().device).into())
        .unwrap();
    a.sync().unwrap();
    b.sync().unwrap();
    insp.into()
}

/// After the tablets hold a record, an edit of one unit reaches the other
/// tablet as that unit alone (a partial state), merged into what it holds; a
/// tablet that never had the record gets it whole. All end equal.
#[test]
fn a_one_unit_edit_travels_as_that_unit_and_a_new_tablet_gets_records_whole() {
    let root = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(&root.path().join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let tablet = |name: &str| {
        Tablet::enrol(
            &root.path().join(name),
            HttpConfig::new(server.url("")),
            "admin",
            PASSWORD,
            None,
        )
        .unwrap()
    };
    let (mut a, mut b) = (tablet("a"), tablet("b"));
    let id = both_hold_an_inspection(&mut a, &mut b);
    let whole = b.transport.pulled.iter().find(|s| s.id == id).unwrap().clone();
    assert!(!whole.partial && whole.units.len() > 10, "{whole:?}");

    // Two edits by b, one after the other syncs: a gets each as its unit.
    b.edit(INSPECTION, id, "conclusion", json!("B：渗水点已封堵")).unwrap();
    b.sync().unwrap();
    a.transport.pulled.clear();
    a.sync().unwrap();
    b.edit(
        INSPECTION,
        id,
        "answers/TP-09",
        json!({"result": "problem", "note": "B：复查"}),
    )
    .unwrap();
    b.sync().unwrap();
    a.sync().unwrap();
    let got: Vec<_> = a.transport.pulled.iter().filter(|s| s.id == id).collect();
    assert_eq!(got.len(), 2, "{got:?}");
    assert!(got.iter().all(|s| s.partial));
    assert_eq!(got[0].units.keys().collect::<Vec<_>>(), vec!["conclusion"]);
    assert_eq!(got[1].units.keys().collect::<Vec<_>>(), vec!["answers/TP-09"]);
    assert_eq!(conclusion(&a, id), "B：渗水点已封堵");
    let a_state = comparable(&a.replica.view(id).unwrap().unwrap()).unwrap();
    let b_state = comparable(&b.replica.view(id).unwrap().unwrap()).unwrap();
    assert_eq!(a_state, b_state);

    // A new tablet, and a's own edit pulled back by a: whole for the one, the
    // edited unit for the other.
    a.edit(INSPECTION, id, "conclusion", json!("A：已复查")).unwrap();
    a.transport.pulled.clear();
    a.sync().unwrap();
    let own: Vec<_> = a.transport.pulled.iter().filter(|s| s.id == id).collect();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].units.keys().collect::<Vec<_>>(), vec!["conclusion"]);
    let mut c = tablet("c");
    c.sync().unwrap();
    let fresh = c.transport.pulled.iter().find(|s| s.id == id).unwrap();
    assert!(!fresh.partial);
    b.sync().unwrap();
    let by_c = comparable(&c.replica.view(id).unwrap().unwrap()).unwrap();
    for t in [&a, &b] {
        assert_eq!(comparable(&t.replica.view(id).unwrap().unwrap()).unwrap(), by_c);
    }
}

fn story(records: &str, a_first: bool) {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        &root.path().join("server"),
        &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD), ("FIELDSYNC_RECORDS", records)],
    )
    .unwrap();
    let reference = Arc::new(Mutex::new(ReferenceServer::new(EngineConfig::default())));
    let http = || HttpConfig::new(server.url(""));
    // One clock for both tablets, moved by hand: "b wrote later" is then
    // exact, not a matter of which millisecond each edit fell in.
    let clock = ManualClock::at(SystemClock.now_ms());
    let tablet = |name: &str| {
        Tablet::enrol_with(
            &root.path().join(name),
            http(),
            "admin",
            PASSWORD,
            Some(reference.clone()),
            ReplicaConfig {
                clock: Arc::new(clock.clone()),
                ..ReplicaConfig::default()
            },
        )
        .unwrap()
    };
    let (mut a, mut b) = (tablet("a"), tablet("b"));
    let id = both_hold_an_inspection(&mut a, &mut b);
    assert_eq!(conclusion(&b, id), conclusion(&a, id));

    // Different units: both edits survive everywhere, no conflict.
    let answer = json!({"result": "problem", "note": "B：渗水范围扩大", "evidence": []});
    a.edit(INSPECTION, id, "conclusion", json!("A：坝体渗水点已封堵"))
        .unwrap();
    b.edit(INSPECTION, id, "answers/TP-09", answer.clone()).unwrap();
    let (ra, rb) = round(&mut a, &mut b, a_first);
    assert_eq!((ra.conflicts, rb.conflicts), (0, 0));
    for t in [&a, &b] {
        assert_eq!(conclusion(t, id), "A：坝体渗水点已封堵");
        assert_eq!(unit(t, id, "answers/TP-09"), answer);
        assert!(t.replica.get(id).unwrap().unwrap().conflicts.is_empty());
    }

    // The same unit: kept as a conflict on both tablets, the later writer's value shown.
    a.edit(INSPECTION, id, "conclusion", json!("A2：需复查")).unwrap();
    // b writes a moment later (within one millisecond the two HLCs would tie
    // and the version ids decide, or order by each tablet's logical counter).
    clock.advance(5);
    b.edit(INSPECTION, id, "conclusion", json!("B2：已整改")).unwrap();
    let (ra, rb) = round(&mut a, &mut b, a_first);
    assert_eq!(ra.conflicts + rb.conflicts, 1, "the second push surfaces the conflict");
    for t in [&a, &b] {
        let view = t.replica.get(id).unwrap().unwrap();
        assert_eq!(view.conflicts.len(), 1, "{:?}", view.conflicts);
        assert_eq!(view.conflicts[0].key, "conclusion");
        assert_eq!(view.conflicts[0].versions.len(), 2);
        // b wrote after a, so b's HLC is higher whatever the arrival order.
        assert_eq!(conclusion(t, id), "B2：已整改");
    }

    // A person resolves it on the tablet that synced second.
    let resolver = if a_first { &mut b } else { &mut a };
    resolver
        .replica
        .resolve(INSPECTION, id, "conclusion", json!("合并：渗水点已封堵，需复查"))
        .unwrap();
    round(&mut a, &mut b, a_first);
    for t in [&a, &b] {
        assert!(t.replica.get(id).unwrap().unwrap().conflicts.is_empty());
        assert_eq!(conclusion(t, id), "合并：渗水点已封堵，需复查");
    }

    // A workflow step racing a content edit: the step is the server's to
    // accept, the edit merges; neither is lost.
    a.replica.transition(INSPECTION, id, "submit").unwrap();
    b.edit(INSPECTION, id, "conclusion", json!("B3：提交后补充")).unwrap();
    let (ra, rb) = round(&mut a, &mut b, a_first);
    assert_eq!((ra.refused, rb.refused), (0, 0));
    for t in [&a, &b] {
        let view = t.replica.view(id).unwrap().unwrap();
        assert_eq!(view.workflow.as_deref(), Some("submitted"));
        assert_eq!(conclusion(t, id), "B3：提交后补充");
    }

    // A signature racing an edit: the signature covers what the signer saw;
    // the edit, whichever arrived first, is kept as a pending addendum, not
    // in the signed content and not lost.
    a.replica.transition(INSPECTION, id, "sign").unwrap();
    let late = json!({"result": "problem", "note": "B：签字后发现排洪沟堵塞", "evidence": []});
    b.edit(INSPECTION, id, "answers/TP-01", late.clone()).unwrap();
    let (_, rb) = round(&mut a, &mut b, a_first);
    assert_eq!(rb.locked, usize::from(a_first), "{rb:?}");
    for t in [&a, &b] {
        assert!(t.replica.view(id).unwrap().unwrap().lock.is_some());
        assert_ne!(unit(t, id, "answers/TP-01"), late);
    }

    // Everyone agrees: both tablets, a fresh tablet, the server, the model.
    let mut c = Tablet::enrol(&root.path().join("c"), http(), "admin", PASSWORD, None).unwrap();
    c.sync().unwrap();
    b.sync().unwrap();
    let on_server = pull_all(&mut c);
    let mut kinds: Vec<RecordKind> = on_server.values().map(|r| r.kind).collect();
    kinds.sort_by_key(|k| format!("{k:?}"));
    assert_eq!(
        kinds,
        [RecordKind::Addendum, RecordKind::Inspection, RecordKind::Site],
        "the late edit became an addendum"
    );
    let model = reference.lock().unwrap();
    assert_eq!(model.store.records.len(), on_server.len());
    for (rid, state) in &on_server {
        let expected = comparable(model.record(*rid).unwrap()).unwrap();
        assert_eq!(comparable(state).unwrap(), expected, "server vs reference for {rid}");
        for (name, t) in [("a", &a), ("b", &b), ("c", &c)] {
            let view = t.replica.view(*rid).unwrap().unwrap();
            assert_eq!(
                comparable(&view).unwrap(),
                expected,
                "tablet {name} vs reference for {rid}"
            );
        }
    }
}

#[test]
fn two_tablets_converge_with_the_reference_on_the_sled_store_a_syncing_first() {
    story("sled", true);
}

#[test]
fn two_tablets_converge_with_the_reference_on_the_sled_store_b_syncing_first() {
    story("sled", false);
}

#[test]
fn two_tablets_converge_with_the_reference_on_the_memory_store_a_syncing_first() {
    story("memory", true);
}

#[test]
fn two_tablets_converge_with_the_reference_on_the_memory_store_b_syncing_first() {
    story("memory", false);
}
