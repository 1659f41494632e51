//! Who may write what, end to end through the engine's scoped push: the
//! rules an inspector's tablet meets for records that are the supervisors'
//! (reviews, draws, the plan's tasks), a review mark after a recovery, and
//! an offline answer whose cited photo a colleague removed meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
use chrono::DateTime;
use mobile_schema::ids::{DeviceId, InspectionId, ItemId, RecordId, ReviewId, Sha256Hex, SiteId, UserId};
use mobile_schema::inspection::{Evidence, EvidenceKind};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::review::{Decision, Review};
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use sync_protocol::change::{Actor, Change, Op, UnitWrite};
use sync_protocol::outcome::Outcome;
use sync_protocol::reference::ReferenceServer;
use sync_protocol::scope::Scope;
use sync_protocol::{Hlc, ReplicaId, UnitValue, VersionId};
use uuid::Uuid;

const T0: u64 = 1_746_500_000_000;

struct Dev {
    actor: Actor,
    scope: Scope,
    seq: u64,
}
impl Dev {
    fn new(n: u128, role: Role) -> Self {
        let actor = Actor {
            replica: ReplicaId(Uuid::from_u128(0x1000 + n)),
            user: UserId(Uuid::from_u128(0x2000 + n)),
            device: DeviceId(Uuid::from_u128(0x3000 + n)),
            role,
        };
        let scope = Scope {
            user: actor.user,
            role,
            regions: vec![RegionCode::new(451_200).unwrap()],
        };
        Self { actor, scope, seq: 0 }
    }
    fn push(&mut self, s: &mut ReferenceServer, kind: RecordKind, record: RecordId, op: Op, now: u64) -> Outcome {
        self.seq += 1;
        let c = Change {
            seq: self.seq,
            hlc: Hlc { ms: now, c: 0 },
            kind,
            record,
            op,
        };
        let r = s.push_scoped(&self.actor, Some(&self.scope), &[c], now);
        r.outcomes[0].outcome.clone()
    }
}

fn create(doc: &AnyRecord) -> Op {
    let mut v = serde_json::to_value(doc).unwrap();
    v.as_object_mut().unwrap().remove("kind");
    Op::Create {
        record: UnitValue::of(&v).unwrap(),
        versions: None,
    }
}
fn edit(key: &str, bases: Vec<VersionId>, value: serde_json::Value) -> Op {
    Op::Edit {
        units: vec![UnitWrite {
            key: key.into(),
            bases,
            value: UnitValue::of(&value).unwrap(),
        }],
    }
}
fn tr(a: &str) -> Op {
    Op::Transition {
        action: a.into(),
        versions: None,
    }
}
fn ok(o: &Outcome) -> bool {
    !matches!(o, Outcome::Refused(_))
}

fn setup() -> (ReferenceServer, Dev, Dev, SiteId, InspectionId) {
    let mut s = ReferenceServer::default();
    let mut admin = Dev::new(9, Role::Admin);
    let mut insp = Dev::new(1, Role::Inspector);
    let sup = Dev::new(2, Role::Supervisor);
    let site = SiteId::generate();
    assert!(ok(&admin.push(
        &mut s,
        RecordKind::Site,
        site.into(),
        create(&sample::pond(site).into()),
        T0
    )));
    let iid = InspectionId::generate();
    let i = sample::inspection(iid, site, insp.actor.device);
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        create(&i.into()),
        T0 + 1000
    )));
    (s, insp, sup, site, iid)
}

fn review(sup: &Dev, iid: InspectionId, d: Decision) -> (ReviewId, AnyRecord) {
    let id = ReviewId::generate();
    (
        id,
        AnyRecord::Review(Review {
            id,
            schema_version: Review::SCHEMA_VERSION,
            inspection_id: iid,
            reviewer: sup.actor.user,
            decision: d,
            decided_at: DateTime::parse_from_rfc3339("2025-05-07T10:00:00+08:00").unwrap(),
            comments: vec![mobile_schema::review::Comment {
                id: ItemId::generate(),
                author: sup.actor.user,
                text: "坝体渗水照片不清楚，请补拍".into(),
                unit: None,
                written_at: DateTime::parse_from_rfc3339("2025-05-07T10:00:00+08:00").unwrap(),
            }],
        }),
    )
}

fn day(t: &str) -> chrono::NaiveDate {
    t.parse().unwrap()
}

/// A 2025 task of `site` planned by `sup`, created on the server.
fn planned_task(
    s: &mut ReferenceServer,
    sup: &mut Dev,
    site: SiteId,
    id: mobile_schema::ids::TaskId,
    rule: mobile_schema::task::TaskRule,
    (from, due): (&str, &str),
    hidden_until: Option<&str>,
) {
    let task = mobile_schema::task::Task {
        id,
        schema_version: mobile_schema::task::Task::SCHEMA_VERSION,
        site_id: site,
        year: 2025,
        window: mobile_schema::task::TaskWindow {
            earliest_start: day(from),
            due: day(due),
        },
        rule,
        assigned: vec![],
        draw_id: None,
        hidden_until: hidden_until.map(day),
        note: String::new(),
        state: mobile_schema::workflow::TaskState::Planned,
    };
    let o = sup.push(s, RecordKind::Task, id.into(), create(&task.into()), T0 + 2000);
    assert!(ok(&o), "{o:?}");
}

fn photo(tag: &str) -> Evidence {
    Evidence {
        id: ItemId::generate(),
        sha256: Sha256Hex::of_bytes(tag.as_bytes()),
        kind: EvidenceKind::Photo,
        capture_time: None,
        position: None,
        device_id: None,
        caption: String::new(),
    }
}

fn refused_with(o: &Outcome, code: &str) -> bool {
    matches!(o, Outcome::Refused(r) if r.code.as_str() == code)
}

fn returned_with_review(s: &mut ReferenceServer, insp: &mut Dev, sup: &mut Dev, iid: InspectionId) -> ReviewId {
    assert!(ok(&insp.push(
        s,
        RecordKind::Inspection,
        iid.into(),
        tr("submit"),
        T0 + 2000
    )));
    let (rid, doc) = review(sup, iid, Decision::Return);
    let live = s.record(iid.into()).unwrap().live_set();
    let Op::Create { record, .. } = create(&doc) else {
        unreachable!()
    };
    let o = sup.push(
        s,
        RecordKind::Review,
        rid.into(),
        Op::Create {
            record,
            versions: Some(live),
        },
        T0 + 3000,
    );
    assert!(ok(&o), "{o:?}");
    assert_eq!(s.record(iid.into()).unwrap().workflow.as_deref(), Some("returned"));
    rid
}

#[test]
fn an_inspector_may_not_rewrite_a_supervisors_review() {
    let (mut s, mut insp, mut sup, _site, iid) = setup();
    let rid = returned_with_review(&mut s, &mut insp, &mut sup, iid);
    for (key, value) in [
        ("decision", serde_json::json!("approve")),
        ("reviewer", serde_json::json!(insp.actor.user)),
    ] {
        let base = s.record(rid.into()).unwrap().units[key].live_ids();
        let o = insp.push(
            &mut s,
            RecordKind::Review,
            rid.into(),
            edit(key, base, value),
            T0 + 4000,
        );
        assert!(refused_with(&o, "role_not_allowed"), "{key}: {o:?}");
    }
    let AnyRecord::Review(r) = s.record(rid.into()).unwrap().materialize().unwrap() else {
        panic!()
    };
    assert_eq!((r.decision, r.reviewer), (Decision::Return, sup.actor.user));
}

#[test]
fn a_reviews_decision_is_fixed_even_for_its_supervisor() {
    let (mut s, mut insp, mut sup, _site, iid) = setup();
    let rid = returned_with_review(&mut s, &mut insp, &mut sup, iid);
    let base = s.record(rid.into()).unwrap().units["decision"].live_ids();
    let o = sup.push(
        &mut s,
        RecordKind::Review,
        rid.into(),
        edit("decision", base, serde_json::json!("approve")),
        T0 + 4000,
    );
    assert!(refused_with(&o, "transition_not_allowed"), "{o:?}");
    // Comments stay open to the supervisor.
    let c = mobile_schema::review::Comment {
        id: ItemId::generate(),
        author: sup.actor.user,
        text: "补充：请附整改照片".into(),
        unit: None,
        written_at: DateTime::parse_from_rfc3339("2025-05-07T11:00:00+08:00").unwrap(),
    };
    let key = format!("comments/{}", c.id);
    let o = sup.push(
        &mut s,
        RecordKind::Review,
        rid.into(),
        edit(&key, vec![], serde_json::to_value(&c).unwrap()),
        T0 + 5000,
    );
    assert!(ok(&o), "{o:?}");
}

#[test]
fn a_drawn_task_is_neither_told_nor_unhidden_by_an_inspectors_push() {
    use mobile_schema::ids::TaskId;
    use mobile_schema::task::TaskRule;
    let (mut s, mut insp, mut sup, site, _iid) = setup();
    let other_site = SiteId::generate();
    let mut admin = Dev::new(9, Role::Admin);
    admin.seq = 1;
    assert!(ok(&admin.push(
        &mut s,
        RecordKind::Site,
        other_site.into(),
        create(&sample::pond(other_site).into()),
        T0
    )));
    let task_id = |p: SiteId| TaskId::from_name("fieldsync-task", &format!("2025:{p}:level_three_drawn:0"));
    let tid = task_id(site);
    planned_task(
        &mut s,
        &mut sup,
        site,
        tid,
        TaskRule::LevelThreeDrawn,
        ("2025-10-01", "2025-12-31"),
        Some("2025-10-01"),
    );
    // T0 is in May 2025: the task is hidden. A drawn pond and an undrawn one
    // answer alike, to a note and to a step.
    for p in [site, other_site] {
        let o = insp.push(
            &mut s,
            RecordKind::Task,
            task_id(p).into(),
            edit("note", vec![], serde_json::json!("")),
            T0 + 3000,
        );
        assert!(refused_with(&o, "unknown_record"), "note on {p}: {o:?}");
        let o = insp.push(&mut s, RecordKind::Task, task_id(p).into(), tr("start"), T0 + 3000);
        assert!(refused_with(&o, "unknown_record"), "start on {p}: {o:?}");
    }
    // Its plan is the supervisors': an inspector may not clear `hidden_until`.
    let b = s.record(tid.into()).unwrap().units["hidden_until"].live_ids();
    let o = insp.push(
        &mut s,
        RecordKind::Task,
        tid.into(),
        edit("hidden_until", b, serde_json::Value::Null),
        T0 + 4000,
    );
    assert!(refused_with(&o, "role_not_allowed"), "{o:?}");
    assert!(sync_protocol::scope::hidden_until(s.record(tid.into()).unwrap()).is_some());
    // Once the window opened (October), the task's note is the inspector's.
    let october = 1_759_300_000_000; // 2025-10-01T06:26Z
    let o = insp.push(
        &mut s,
        RecordKind::Task,
        tid.into(),
        edit("note", vec![], serde_json::json!("已联系企业")),
        october,
    );
    assert!(ok(&o), "{o:?}");
}

/// After a restore, a tablet brings back an edit made after the approval:
/// the inspection is marked as changed since its review, as the push was.
#[test]
fn content_recovered_after_an_approval_is_marked() {
    use sync_protocol::recovery::RestoreBase;
    let (mut s, mut insp, mut sup, _site, iid) = setup();
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        tr("submit"),
        T0 + 2000
    )));
    let (rid, doc) = review(&sup, iid, Decision::Approve);
    let live = s.record(iid.into()).unwrap().live_set();
    let Op::Create { record, .. } = create(&doc) else {
        unreachable!()
    };
    assert!(ok(&sup.push(
        &mut s,
        RecordKind::Review,
        rid.into(),
        Op::Create {
            record,
            versions: Some(live)
        },
        T0 + 3000
    )));
    let backup = s.store.clone();
    let base = RestoreBase {
        base_seq: backup.commit_seq,
        restored_ms: T0 + 100_000,
    };
    let b = s.record(iid.into()).unwrap().units["conclusion"].live_ids();
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        edit("conclusion", b, serde_json::json!("改：坝体无渗水")),
        T0 + 4000
    )));
    let held = s.record(iid.into()).unwrap().clone();
    assert!(held.review.as_ref().unwrap().changed_since_review);
    let mut restored = backup;
    let mut engine = sync_protocol::engine::Engine::default();
    engine.recover(&mut restored, Some(&insp.scope), &held, base).unwrap();
    let after = restored.records[&RecordId::from(iid)].clone();
    assert!(
        after.review.unwrap().changed_since_review,
        "content changed after approval but not marked"
    );
}

/// One tablet removes a photo while another, offline, answers citing it: the
/// answer is kept and flagged, not refused (the citation was sound where it
/// was written).
#[test]
fn an_answer_citing_a_photo_removed_meanwhile_is_kept_and_flagged() {
    let (mut s, mut insp, _sup, _site, iid) = setup();
    let mut colleague = Dev::new(3, Role::Inspector);
    let eid = ItemId::generate();
    let ev = Evidence { id: eid, ..photo("p") };
    let key = format!("evidence/{eid}");
    let o = insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        edit(&key, vec![], serde_json::to_value(&ev).unwrap()),
        T0 + 2000,
    );
    assert!(ok(&o), "{o:?}");
    let photo = VersionId::new(insp.actor.replica, insp.seq);
    let answer_base = s.record(iid.into()).unwrap().units["answers/TP-09"].live_ids();
    let o = insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        edit(&key, vec![photo], serde_json::Value::Null),
        T0 + 3000,
    );
    assert!(ok(&o), "{o:?}");
    let answer = serde_json::json!({"result": "problem", "note": "坝体局部渗水，见照片", "evidence": [eid]});
    let o = colleague.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        edit("answers/TP-09", answer_base, answer),
        T0 + 2500,
    );
    assert!(ok(&o), "the offline answer was refused: {o:?}");
    let state = s.record(iid.into()).unwrap();
    let AnyRecord::Inspection(i) = state.materialize().unwrap() else {
        panic!()
    };
    assert_eq!(i.answers["TP-09"].evidence, vec![eid]);
    assert!(
        state
            .flags
            .iter()
            .any(|f| f.code == "unknown_evidence" && f.field.starts_with("answers/TP-09")),
        "{:?}",
        state.flags
    );
}

/// A reopened hazard is not closed again on the evidence it was reopened
/// over: the rectification material and the verification evidence are set
/// aside by the reopen, and new ones are needed.
#[test]
fn a_reopened_hazard_needs_new_evidence_before_it_closes_again() {
    use mobile_schema::hazard::Hazard;
    use mobile_schema::ids::HazardId;
    let (mut s, mut insp, mut sup, site, iid) = setup();
    let hid = HazardId::generate();
    let mut h = sample::hazard(hid, iid, site);
    h.deadline = Some("2025-06-01".parse().unwrap());
    h.responsible_party = "某矿业公司".into();
    h.notified_on = Some("2025-05-06".parse().unwrap());
    h.rectification_evidence = vec![photo("old rectification")];
    h.verification_evidence = vec![photo("old verification")];
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Hazard,
        hid.into(),
        create(&h.into()),
        T0 + 2000
    )));
    let step = |who: &mut Dev, s: &mut ReferenceServer, action: &str| {
        who.push(s, RecordKind::Hazard, hid.into(), tr(action), T0 + 3000)
    };
    for a in ["notify", "start_rectification", "submit_rectification", "verify"] {
        assert!(ok(&step(&mut insp, &mut s, a)), "{a}");
    }
    assert!(ok(&step(&mut sup, &mut s, "close")));
    assert!(ok(&step(&mut sup, &mut s, "reopen")));
    let o = step(&mut insp, &mut s, "submit_rectification");
    assert!(refused_with(&o, "evidence_required"), "{o:?}");
    let add = |who: &mut Dev, s: &mut ReferenceServer, field: &str, tag: &str| {
        let e = photo(tag);
        let o = who.push(
            s,
            RecordKind::Hazard,
            hid.into(),
            edit(&format!("{field}/{}", e.id), vec![], serde_json::to_value(&e).unwrap()),
            T0 + 4000,
        );
        assert!(ok(&o), "{o:?}");
        e.id
    };
    let material = add(&mut insp, &mut s, "rectification_evidence", "new rectification");
    assert!(ok(&step(&mut insp, &mut s, "submit_rectification")));
    let o = step(&mut insp, &mut s, "verify");
    assert!(refused_with(&o, "evidence_required"), "{o:?}");
    let seen = add(&mut insp, &mut s, "verification_evidence", "new verification");
    assert!(ok(&step(&mut insp, &mut s, "verify")));
    assert!(ok(&step(&mut sup, &mut s, "close")));
    let AnyRecord::Hazard(Hazard {
        rectification_evidence,
        verification_evidence,
        ..
    }) = s.record(hid.into()).unwrap().materialize().unwrap()
    else {
        panic!()
    };
    let ids = |v: &[Evidence]| v.iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(
        (ids(&rectification_evidence), ids(&verification_evidence)),
        (vec![material], vec![seen])
    );
}

/// A correction diverted by a signature is its author's to append or discard
/// (or a supervisor's), not another inspector's.
#[test]
fn only_its_author_or_a_supervisor_decides_an_addendum() {
    let (mut s, mut insp, _sup, _site, iid) = setup();
    let mut colleague = Dev::new(3, Role::Inspector);
    let live = s.record(iid.into()).unwrap().live_set();
    let sign = Op::Transition {
        action: "sign".into(),
        versions: Some(live),
    };
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        sign,
        T0 + 2000
    )));
    let base = s.record(iid.into()).unwrap().units["conclusion"].live_ids();
    let o = insp.push(
        &mut s,
        RecordKind::Inspection,
        iid.into(),
        edit("conclusion", base, serde_json::json!("签字后补记")),
        T0 + 3000,
    );
    let Outcome::Locked { addenda, .. } = o else {
        panic!("{o:?}")
    };
    let addendum = addenda[0];
    let o = colleague.push(&mut s, RecordKind::Addendum, addendum, tr("discard"), T0 + 4000);
    assert!(refused_with(&o, "role_not_allowed"), "{o:?}");
    // Writing a version of it first does not make it the colleague's.
    let text = s.record(addendum).unwrap().units["text"].live_ids();
    let o = colleague.push(
        &mut s,
        RecordKind::Addendum,
        addendum,
        edit("text", text, serde_json::json!("改")),
        T0 + 4100,
    );
    assert!(refused_with(&o, "role_not_allowed"), "{o:?}");
    let author = s.record(addendum).unwrap().units["author"].live_ids();
    let o = colleague.push(
        &mut s,
        RecordKind::Addendum,
        addendum,
        edit("author", author, serde_json::json!(colleague.actor.user)),
        T0 + 4200,
    );
    assert!(refused_with(&o, "role_not_allowed"), "{o:?}");
    let o = colleague.push(&mut s, RecordKind::Addendum, addendum, tr("discard"), T0 + 4300);
    assert!(refused_with(&o, "role_not_allowed"), "{o:?}");
    assert_eq!(s.record(addendum).unwrap().workflow.as_deref(), Some("pending"));
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Addendum,
        addendum,
        tr("append"),
        T0 + 5000
    )));
    assert_eq!(s.record(addendum).unwrap().workflow.as_deref(), Some("appended"));
}

/// A signature that takes a reviewed version out of the record (one its
/// signer did not see) marks the inspection changed since its review.
#[test]
fn a_signature_that_changes_reviewed_content_marks_the_review() {
    let (mut s, mut insp, mut sup, _site, iid) = setup();
    returned_with_review(&mut s, &mut insp, &mut sup, iid);
    assert!(
        !s.record(iid.into())
            .unwrap()
            .review
            .as_ref()
            .unwrap()
            .changed_since_review
    );
    let mut seen = s.record(iid.into()).unwrap().live_set();
    seen.insert("conclusion".into(), Vec::new());
    let sign = Op::Transition {
        action: "sign".into(),
        versions: Some(seen),
    };
    let o = insp.push(&mut s, RecordKind::Inspection, iid.into(), sign, T0 + 5000);
    assert!(matches!(o, Outcome::Locked { .. }), "{o:?}");
    assert!(
        s.record(iid.into())
            .unwrap()
            .review
            .as_ref()
            .unwrap()
            .changed_since_review
    );
}

/// After a restore, an inspector's tablet brings back a task's note, not its
/// plan: versions of the plan from an inspector's device could be made up.
#[test]
fn an_inspectors_recovery_brings_back_a_tasks_note_not_its_plan() {
    use mobile_schema::ids::TaskId;
    use mobile_schema::task::TaskRule;
    use sync_protocol::recovery::{Recovered, RestoreBase};
    let (mut s, mut insp, mut sup, site, _iid) = setup();
    let tid = TaskId::generate();
    planned_task(
        &mut s,
        &mut sup,
        site,
        tid,
        TaskRule::LevelTwoAnnual,
        ("2025-05-01", "2025-06-30"),
        None,
    );
    let backup = s.store.clone();
    let base = RestoreBase {
        base_seq: backup.commit_seq,
        restored_ms: T0 + 100_000,
    };
    let b = s.record(tid.into()).unwrap().units["window"].live_ids();
    let later = serde_json::json!({"earliest_start": "2025-05-01", "due": "2025-12-31"});
    assert!(ok(&sup.push(
        &mut s,
        RecordKind::Task,
        tid.into(),
        edit("window", b, later),
        T0 + 3000
    )));
    let b = s.record(tid.into()).unwrap().units["note"].live_ids();
    assert!(ok(&insp.push(
        &mut s,
        RecordKind::Task,
        tid.into(),
        edit("note", b, serde_json::json!("已约企业")),
        T0 + 4000
    )));
    let held = s.record(tid.into()).unwrap().clone();
    let mut restored = backup;
    let mut engine = sync_protocol::engine::Engine::default();
    let r = engine.recover(&mut restored, Some(&insp.scope), &held, base).unwrap();
    assert!(matches!(r, Recovered::Taken { added: 1, .. }), "{r:?}");
    let AnyRecord::Task(t) = restored.records[&RecordId::from(tid)].materialize().unwrap() else {
        panic!()
    };
    assert_eq!((t.note.as_str(), t.window.due), ("已约企业", day("2025-06-30")));
    // The supervisor's device brings the plan back.
    let r = engine.recover(&mut restored, Some(&sup.scope), &held, base).unwrap();
    assert!(matches!(r, Recovered::Taken { added: 1, .. }), "{r:?}");
    let AnyRecord::Task(t) = restored.records[&RecordId::from(tid)].materialize().unwrap() else {
        panic!()
    };
    assert_eq!(t.window.due, day("2025-12-31"));
}
