#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Round trips against the reference server, with sync cut at every step.

use std::sync::{Arc, Mutex};

use mobile_schema::ids::{DeviceId, InspectionId, RecordId, SiteId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use replica::{Identity, InProcessTransport, PushFailure, Replica, ReplicaConfig, ReplicaError};
use sync_protocol::clock::ManualClock;
use sync_protocol::engine::EngineConfig;
use sync_protocol::reference::ReferenceServer;
use sync_protocol::{RefusalCode, ReplicaId};

struct World {
    server: Arc<Mutex<ReferenceServer>>,
    clock: ManualClock,
    /// A store reopened is the same tablet in the same hands.
    identities: Mutex<std::collections::HashMap<std::path::PathBuf, Identity>>,
}

impl World {
    fn new() -> Self {
        Self {
            server: Arc::new(Mutex::new(ReferenceServer::new(EngineConfig::default()))),
            clock: ManualClock::at(1_746_500_000_000),
            identities: Mutex::default(),
        }
    }

    fn replica(&self, dir: &std::path::Path, role: Role) -> Replica {
        let config = ReplicaConfig {
            clock: Arc::new(self.clock.clone()),
            // Fixed small sizes: the tests count requests and cut syncs between them.
            push_batch: 3,
            push_batch_max: 3,
            pull_limit: 2,
            pull_limit_max: 2,
            ..ReplicaConfig::for_identity(*self.identities.lock().unwrap().entry(dir.to_path_buf()).or_insert(
                Identity {
                    user: UserId::generate(),
                    device: DeviceId::generate(),
                    role,
                },
            ))
        };
        Replica::open_with(dir, config).unwrap()
    }

    fn transport(&self) -> InProcessTransport {
        InProcessTransport::new(self.server.clone(), Arc::new(self.clock.clone()))
    }
}

fn seeded(r: &mut Replica) -> (SiteId, InspectionId) {
    let site = SiteId::generate();
    let insp = InspectionId::generate();
    r.create(sample::pond(site).into()).unwrap();
    r.create(sample::inspection(insp, site, DeviceId::generate()).into())
        .unwrap();
    (site, insp)
}

fn conclusion(r: &Replica, id: InspectionId) -> String {
    match r.get(id.into()).unwrap().unwrap().record {
        AnyRecord::Inspection(i) => i.conclusion,
        other => panic!("not an inspection: {other:?}"),
    }
}

#[test]
fn edits_sync_to_a_second_replica_and_concurrent_edits_conflict_until_resolved() {
    let w = World::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut b = w.replica(db.path(), Role::Inspector);
    let mut ta = w.transport();
    let mut tb = w.transport();
    let (_, insp) = seeded(&mut a);
    assert_eq!(a.pending_count(), 2);
    let rep = a.sync(&mut ta).unwrap();
    assert_eq!((rep.acked, rep.refused), (2, 0));
    assert_eq!(a.pending_count(), 0);
    b.sync(&mut tb).unwrap();
    assert_eq!(conclusion(&b, insp), conclusion(&a, insp));

    let id: RecordId = insp.into();
    w.clock.advance(1_000);
    a.edit(RecordKind::Inspection, id, vec![("conclusion".into(), "A 写的".into())])
        .unwrap();
    w.clock.advance(1_000);
    b.edit(RecordKind::Inspection, id, vec![("conclusion".into(), "B 写的".into())])
        .unwrap();
    a.sync(&mut ta).unwrap();
    let rep = b.sync(&mut tb).unwrap();
    assert_eq!(
        (rep.acked, rep.conflicts),
        (1, 1),
        "the server applied b's edit as a conflict"
    );
    a.sync(&mut ta).unwrap();
    for r in [&a, &b] {
        let v = r.get(id).unwrap().unwrap();
        assert_eq!(v.conflicts.len(), 1, "{:?}", v.conflicts);
        assert_eq!(v.conflicts[0].key, "conclusion");
        assert_eq!(v.conflicts[0].versions.len(), 2);
        assert!(v.conflicts[0].versions.iter().all(|c| c.author.is_some()));
        assert_eq!(conclusion(r, insp), "B 写的");
    }
    // A plain edit replaces only the value the user saw: the conflict stays.
    a.resolve(RecordKind::Inspection, id, "conclusion", "合并".into())
        .unwrap();
    assert!(a.get(id).unwrap().unwrap().conflicts.is_empty());
    a.sync(&mut ta).unwrap();
    b.sync(&mut tb).unwrap();
    for r in [&a, &b] {
        assert!(r.get(id).unwrap().unwrap().conflicts.is_empty());
        assert_eq!(conclusion(r, insp), "合并");
    }

    // Signing locks the content on both sides.
    a.transition(RecordKind::Inspection, id, "sign").unwrap();
    assert!(a.get(id).unwrap().unwrap().locked);
    a.sync(&mut ta).unwrap();
    b.sync(&mut tb).unwrap();
    assert!(b.get(id).unwrap().unwrap().locked);
    assert!(w.server.lock().unwrap().record(id).unwrap().lock.is_some());
    assert_eq!(b.list(RecordKind::Inspection).unwrap().len(), 1);
    assert_eq!(b.list(RecordKind::Site).unwrap().len(), 1);
}

#[test]
fn invalid_input_is_refused_before_the_outbox_with_the_field() {
    let w = World::new();
    let d = tempfile::tempdir().unwrap();
    let mut a = w.replica(d.path(), Role::Inspector);
    let (_, insp) = seeded(&mut a);
    let before = a.pending_count();
    let e = a
        .edit(
            RecordKind::Inspection,
            insp.into(),
            vec![("times".into(), serde_json::json!(42))],
        )
        .unwrap_err();
    match e {
        ReplicaError::Rejected(r) => assert_eq!(r.field.as_deref(), Some("times")),
        other => panic!("{other}"),
    }
    let e = a
        .edit(
            RecordKind::Inspection,
            insp.into(),
            vec![("nonsense".into(), serde_json::json!(1))],
        )
        .unwrap_err();
    assert!(
        matches!(e, ReplicaError::Rejected(ref r) if r.field.as_deref() == Some("nonsense")),
        "{e}"
    );
    let e = a
        .transition(RecordKind::Inspection, insp.into(), "approve")
        .unwrap_err();
    assert!(
        matches!(e, ReplicaError::Rejected(ref r) if r.code == RefusalCode::UnknownAction),
        "{e}"
    );
    assert_eq!(a.pending_count(), before);
}

#[test]
fn a_lost_push_reply_and_a_refused_connection_resume_without_loss_or_doubling() {
    let w = World::new();
    let d = tempfile::tempdir().unwrap();
    let mut a = w.replica(d.path(), Role::Inspector);
    let mut t = w.transport();
    let (_, insp) = seeded(&mut a);
    for i in 0..5 {
        a.edit(
            RecordKind::Inspection,
            insp.into(),
            vec![("conclusion".into(), format!("v{i}").into())],
        )
        .unwrap();
    }
    t.fail_next_push(PushFailure::LostReply);
    assert!(matches!(a.sync(&mut t), Err(ReplicaError::Transport(_))));
    assert_eq!(a.pending_count(), 7, "nothing leaves the outbox without an answer");
    t.fail_next_push(PushFailure::BeforeApply);
    assert!(a.sync(&mut t).is_err());
    // A reopen in between: everything is on disk.
    drop(a);
    let mut a = w.replica(d.path(), Role::Inspector);
    let rep = a.sync(&mut t).unwrap();
    assert_eq!(rep.acked, 7);
    assert_eq!(a.pending_count(), 0);
    let server = w.server.lock().unwrap();
    assert_eq!(server.store.last_seq[&a.replica_id()], 7);
    let rec = server.record(insp.into()).unwrap();
    assert_eq!(rec.units["conclusion"].live.len(), 1);
    drop(server);
    assert_eq!(conclusion(&a, insp), "v4");
}

#[test]
fn a_pull_cut_mid_pages_resumes_from_the_cursor() {
    let w = World::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut ta = w.transport();
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(seeded(&mut a).1);
    }
    a.sync(&mut ta).unwrap();
    let mut b = w.replica(db.path(), Role::Inspector);
    let mut tb = w.transport();
    tb.fail_pull_after(2);
    assert!(b.sync(&mut tb).is_err());
    assert_eq!(
        b.list(RecordKind::Site).unwrap().len() + b.list(RecordKind::Inspection).unwrap().len(),
        4
    );
    let pulls_before = tb.pulls;
    let rep = b.sync(&mut tb).unwrap();
    assert_eq!(rep.pulled, 6, "only the pages not yet committed");
    assert_eq!(tb.pulls - pulls_before, 3);
    assert_eq!(b.list(RecordKind::Inspection).unwrap().len(), 5);
    for id in ids {
        assert_eq!(conclusion(&b, id), conclusion(&a, id));
    }
}

#[test]
fn an_expired_cursor_restarts_the_pull_from_zero_and_keeps_the_outbox() {
    let w = World::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut ta = w.transport();
    let (_, first) = seeded(&mut a);
    a.sync(&mut ta).unwrap();
    let mut b = w.replica(db.path(), Role::Inspector);
    let mut tb = w.transport();
    b.sync(&mut tb).unwrap();
    assert_ne!(b.cursor().unwrap(), "0");
    assert!(b.last_sync_ms().unwrap().is_some());
    // New work on both sides; b's edit waits in its outbox.
    let (_, second) = seeded(&mut a);
    a.sync(&mut ta).unwrap();
    b.edit(
        RecordKind::Inspection,
        first.into(),
        vec![("conclusion".into(), serde_json::json!("b 复查"))],
    )
    .unwrap();
    tb.expire_cursor();
    let rep = b.sync(&mut tb).unwrap();
    assert!(rep.cursor_restarted);
    assert_eq!((rep.pushed, rep.acked), (1, 1), "the outbox went out before the pull");
    assert_eq!(rep.pulled, 4, "every record again, from the start");
    assert_eq!(b.pending_count(), 0);
    assert_eq!(conclusion(&b, first), "b 复查");
    assert_eq!(conclusion(&b, second), conclusion(&a, second));
    a.sync(&mut ta).unwrap();
    assert_eq!(conclusion(&a, first), "b 复查");
}

#[test]
fn an_expired_cursor_with_an_unsent_outbox_keeps_the_edit_when_the_push_fails() {
    let w = World::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut ta = w.transport();
    let (_, insp) = seeded(&mut a);
    a.sync(&mut ta).unwrap();
    let mut b = w.replica(db.path(), Role::Inspector);
    let mut tb = w.transport();
    b.sync(&mut tb).unwrap();
    b.edit(
        RecordKind::Inspection,
        insp.into(),
        vec![("conclusion".into(), serde_json::json!("离线修改"))],
    )
    .unwrap();
    tb.fail_next_push(PushFailure::BeforeApply);
    assert!(matches!(
        b.sync(&mut tb),
        Err(ReplicaError::Transport(replica::TransportError::Unavailable(_)))
    ));
    tb.expire_cursor();
    let rep = b.sync(&mut tb).unwrap();
    assert!(rep.cursor_restarted);
    assert_eq!(rep.acked, 1);
    assert_eq!(conclusion(&b, insp), "离线修改");
}

#[test]
fn refused_changes_stay_visible_with_the_reason_and_leave_the_view() {
    let w = World::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut ta = w.transport();
    let (_, insp) = seeded(&mut a);
    a.sync(&mut ta).unwrap();
    // Another inspector signs first; this one then signs from a stale view.
    let mut b = w.replica(db.path(), Role::Inspector);
    let mut tb = w.transport();
    b.sync(&mut tb).unwrap();
    b.transition(RecordKind::Inspection, insp.into(), "sign").unwrap();
    b.sync(&mut tb).unwrap();
    a.transition(RecordKind::Inspection, insp.into(), "sign").unwrap();
    let rep = a.sync(&mut ta).unwrap();
    assert_eq!(rep.refused, 1);
    let refused = a.refused().unwrap();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].code, RefusalCode::TransitionNotAllowed);
    assert_eq!(refused[0].record, RecordId::from(insp));
    assert!(!refused[0].message.is_empty());
    assert_eq!(a.pending_count(), 0);
    // The view is the server's: locked by B's signature.
    let server_lock = w.server.lock().unwrap().record(insp.into()).unwrap().lock.clone();
    assert_eq!(a.view(insp.into()).unwrap().unwrap().lock, server_lock);
}

#[test]
fn the_clock_offset_is_reported_from_the_server_time() {
    let w = World::new();
    let d = tempfile::tempdir().unwrap();
    let mut a = w.replica(d.path(), Role::Inspector);
    assert_eq!(a.clock_offset_ms().unwrap(), None);
    seeded(&mut a);
    // The server's clock runs 90 s ahead of the tablet's.
    let server_clock = ManualClock::at(1_746_500_090_000);
    let mut t = InProcessTransport::new(w.server.clone(), Arc::new(server_clock));
    a.sync(&mut t).unwrap();
    assert_eq!(a.clock_offset_ms().unwrap(), Some(90_000));
}

#[test]
fn a_store_restored_from_a_copy_rekeys_and_its_edits_still_sync() {
    let w = World::new();
    let (da, copy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut t = w.transport();
    let (_, insp) = seeded(&mut a);
    a.sync(&mut t).unwrap();
    let identity = a.identity();
    drop(a);
    copy_dir(da.path(), copy.path());
    let mut a = Replica::open_with(da.path(), config(&w, identity)).unwrap();
    a.edit(
        RecordKind::Inspection,
        insp.into(),
        vec![("conclusion".into(), "原件".into())],
    )
    .unwrap();
    a.sync(&mut t).unwrap();
    // The copy reuses seq 3 with other content.
    let mut c = Replica::open_with(copy.path(), config(&w, identity)).unwrap();
    let old_id = c.replica_id();
    c.edit(
        RecordKind::Inspection,
        insp.into(),
        vec![("conclusion".into(), "副本".into())],
    )
    .unwrap();
    c.edit(
        RecordKind::Inspection,
        insp.into(),
        vec![("conclusion".into(), "副本2".into())],
    )
    .unwrap();
    let rep = c.sync(&mut t).unwrap();
    assert!(rep.rekeyed);
    assert_ne!(c.replica_id(), old_id);
    assert_eq!(c.pending_count(), 0);
    assert_eq!(conclusion(&c, insp), "副本2");
    assert_eq!(w.server.lock().unwrap().store.last_seq[&c.replica_id()], 2);
}

fn config(w: &World, identity: Identity) -> ReplicaConfig {
    ReplicaConfig {
        clock: Arc::new(w.clock.clone()),
        ..ReplicaConfig::for_identity(identity)
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_photo_is_stored_under_its_sha256_and_queued() {
    let w = World::new();
    let d = tempfile::tempdir().unwrap();
    let mut a = w.replica(d.path(), Role::Inspector);
    let src = d.path().join("photo.jpg");
    let bytes: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&src, &bytes).unwrap();
    let sha = a.attach_photo(&src).unwrap();
    assert_eq!(sha, mobile_schema::ids::Sha256Hex::of_bytes(&bytes));
    assert_eq!(std::fs::read(a.photo_path(&sha)).unwrap(), bytes);
    assert!(a.photo_path(&sha).starts_with(d.path().join("blobs")));
    let q = a.queued_photos().unwrap();
    assert_eq!(q.len(), 1);
    assert_eq!(q[0].bytes, 200_000);
    a.attach_photo(&src).unwrap();
    assert_eq!(a.queued_photos().unwrap().len(), 1, "the same photo is queued once");
}

/// A server whose clock ran wild stored a version at the very top of time.
/// A tablet that pulls it keeps its own clock sane and goes on editing (it
/// used to take the time in, then overflow on its next edit).
#[test]
fn a_pulled_time_at_the_top_of_the_clock_does_not_poison_the_tablet() {
    let w = World::new();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = w.replica(da.path(), Role::Inspector);
    let mut b = w.replica(db.path(), Role::Inspector);
    let mut ta = w.transport();
    let (_, insp) = seeded(&mut a);
    a.sync(&mut ta).unwrap();
    // Written straight into the server, at a server time past any true clock
    // (the server caps only times ahead of its own).
    let wild = ReplicaId::generate();
    let actor = sync_protocol::Actor {
        replica: wild,
        user: UserId::generate(),
        device: DeviceId::generate(),
        role: Role::Inspector,
    };
    let change = sync_protocol::Change {
        seq: 1,
        hlc: sync_protocol::Hlc::new(u64::MAX, u32::MAX),
        kind: RecordKind::Inspection,
        record: insp.into(),
        op: sync_protocol::Op::Edit {
            units: vec![sync_protocol::UnitWrite {
                key: "conclusion".into(),
                bases: Vec::new(),
                value: sync_protocol::UnitValue::of(&"时钟失常").unwrap(),
            }],
        },
    };
    let answer = w.server.lock().unwrap().push(&actor, &[change], u64::MAX - 1);
    assert!(answer.outcomes[0].outcome.commit_seq().is_some(), "{answer:?}");

    b.sync(&mut w.transport()).unwrap();
    assert!(b.last_hlc().ms < sync_protocol::Hlc::PLAUSIBLE_MS, "{:?}", b.last_hlc());
    // Two edits in a row (the second used to bump past the top).
    for text in ["甲", "乙"] {
        b.edit(
            RecordKind::Inspection,
            insp.into(),
            vec![("conclusion".into(), text.into())],
        )
        .unwrap();
    }
    assert!(b.last_hlc().ms < sync_protocol::Hlc::PLAUSIBLE_MS);
    // Reopened, the clock is still sane.
    drop(b);
    let b = w.replica(db.path(), Role::Inspector);
    assert!(b.last_hlc().ms < sync_protocol::Hlc::PLAUSIBLE_MS);
}

/// The server credits a change to whoever's token pushes it: another user
/// may not take over the store while its user's work waits unsynced.
#[test]
fn another_user_may_not_take_over_a_store_with_unsynced_work() {
    let w = World::new();
    let dir = tempfile::tempdir().unwrap();
    let mut wang = w.replica(dir.path(), Role::Inspector);
    let wang_id = wang.identity();
    let (_, insp) = seeded(&mut wang);
    wang.edit(
        RecordKind::Inspection,
        insp.into(),
        vec![("conclusion".into(), "王的结论".into())],
    )
    .unwrap();
    drop(wang);
    let li = Identity {
        user: UserId::generate(),
        ..wang_id
    };
    let config = |identity| ReplicaConfig {
        clock: Arc::new(w.clock.clone()),
        ..ReplicaConfig::for_identity(identity)
    };
    match Replica::open_with(dir.path(), config(li)) {
        Err(ReplicaError::OtherUsersWork { user, changes, .. }) => assert_eq!((user, changes), (wang_id.user, 3)),
        other => panic!("{:?}", other.map(|r| r.identity())),
    }
    // Wang syncs first; then li may log in here.
    let mut wang = Replica::open_with(dir.path(), config(wang_id)).unwrap();
    wang.sync(&mut w.transport()).unwrap();
    drop(wang);
    let li_store = Replica::open_with(dir.path(), config(li)).unwrap();
    assert_eq!(li_store.identity(), li);
    let state = w.server.lock().unwrap().record(insp.into()).unwrap().clone();
    let version = state.units["conclusion"].live[0].id;
    assert_eq!(state.meta[&version].user, wang_id.user, "wang's conclusion is wang's");
}

/// A newer server whose inspections may be in a state this build does not know.
struct Newer {
    inner: InProcessTransport,
    odd: InspectionId,
}

impl replica::Transport for Newer {
    fn identify(&mut self, a: &sync_protocol::Actor) -> Result<(), replica::TransportError> {
        self.inner.identify(a)
    }
    fn push(
        &mut self,
        r: sync_protocol::wire::PushRequest,
    ) -> Result<sync_protocol::wire::PushResponse, replica::TransportError> {
        self.inner.push(r)
    }
    fn pull(
        &mut self,
        since: &str,
        limit: usize,
    ) -> Result<sync_protocol::wire::PullResponse, replica::TransportError> {
        let mut p = self.inner.pull(since, limit)?;
        for s in &mut p.records {
            if s.id == self.odd.into() {
                s.workflow = Some("archived".into());
            }
        }
        Ok(p)
    }
}

/// One record this build cannot read does not hide the others of its kind:
/// they are listed, and it is named with why.
#[test]
fn a_record_this_build_cannot_read_is_named_and_hides_nothing_else() {
    let w = World::new();
    let d = tempfile::tempdir().unwrap();
    let mut a = w.replica(d.path(), Role::Inspector);
    let (site, i1) = seeded(&mut a);
    let i2 = InspectionId::generate();
    a.create(sample::inspection(i2, site, DeviceId::generate()).into())
        .unwrap();
    let mut t = Newer {
        inner: w.transport(),
        odd: i2,
    };
    a.sync(&mut t).unwrap();
    let listed = a.list(RecordKind::Inspection).unwrap();
    let ids: Vec<RecordId> = listed.iter().map(|v| v.record.id()).collect();
    assert_eq!(ids, vec![RecordId::from(i1)]);
    let unreadable = a.unreadable().unwrap();
    assert_eq!(unreadable.len(), 1);
    assert_eq!(unreadable[0].0, RecordId::from(i2));
    assert!(unreadable[0].1.contains("archived"), "{unreadable:?}");
}
