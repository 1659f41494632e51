//! Property tests of the whole protocol: several replicas and the reference
//! server, random edits (concurrent same-unit edits, resolutions, removals,
//! workflow steps, signatures, reviews), random sync orders with lost replies and
//! duplicated batches, and clocks skewed by days. Case counts follow
//! `PROPTEST_CASES`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use chrono::DateTime;
use mobile_schema::ids::{DeviceId, InspectionId, ItemId, RecordId, ReviewId, SiteId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::review::{Decision, Review};
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use proptest::prelude::*;
use sync_protocol::change::{Actor, Change, Op, UnitWrite};
use sync_protocol::engine::EngineConfig;
use sync_protocol::local::{LocalAuthor, apply_local};
use sync_protocol::outcome::{Outcome, RefusalCode};
use sync_protocol::reference::ReferenceServer;
use sync_protocol::{HlcClock, RecordState, ReplicaId, UnitValue, VersionId};
use uuid::Uuid;

const DAY: i64 = 86_400_000;
const T0: u64 = 1_746_500_000_000; // May 2025

/// A replica as the protocol sees it: server states, an outbox, acknowledged
/// changes not yet seen in a pull, and the outcomes it was told.
#[derive(Debug, Clone)]
struct Sim {
    author: LocalAuthor,
    skew_ms: i64,
    clock: HlcClock,
    next_seq: u64,
    base: BTreeMap<RecordId, RecordState>,
    outbox: Vec<Change>,
    acked: BTreeMap<u64, (RecordId, u64)>,
    log: BTreeMap<u64, Change>,
    outcomes: BTreeMap<u64, Outcome>,
    cursor: String,
}

impl Sim {
    fn new(n: u128, role: Role, skew_ms: i64) -> Self {
        Self {
            author: LocalAuthor {
                replica: ReplicaId(Uuid::from_u128(0x1000 + n)),
                user: UserId(Uuid::from_u128(0x2000 + n)),
                device: DeviceId(Uuid::from_u128(0x3000 + n)),
                role,
            },
            skew_ms,
            clock: HlcClock::default(),
            next_seq: 1,
            base: BTreeMap::new(),
            outbox: Vec::new(),
            acked: BTreeMap::new(),
            log: BTreeMap::new(),
            outcomes: BTreeMap::new(),
            cursor: "0".into(),
        }
    }

    fn actor(&self) -> Actor {
        Actor {
            replica: self.author.replica,
            user: self.author.user,
            device: self.author.device,
            role: self.author.role,
        }
    }

    fn view(&self, id: RecordId) -> Option<RecordState> {
        let mut state = self.base.get(&id).cloned();
        let base_seq = state.as_ref().map(|s| s.commit_seq).unwrap_or(0);
        for (seq, change) in &self.log {
            if change.record != id {
                continue;
            }
            let pending = self.outbox.iter().any(|c| c.seq == *seq);
            let unseen = self.acked.get(seq).is_some_and(|(_, commit)| *commit > base_seq);
            if pending || unseen {
                state = apply_local(state.clone(), change, &self.author).ok().or(state);
            }
        }
        state
    }

    fn write(&mut self, now: u64, kind: RecordKind, record: RecordId, op: Op) {
        let hlc = self.clock.tick((now as i64 + self.skew_ms).max(0) as u64);
        let change = Change {
            seq: self.next_seq,
            hlc,
            kind,
            record,
            op,
        };
        self.next_seq += 1;
        self.log.insert(change.seq, change.clone());
        self.outbox.push(change);
    }

    fn edit(&mut self, now: u64, record: RecordId, key: &str, value: serde_json::Value, resolve_all: bool) {
        let Some(view) = self.view(record) else { return };
        let bases: Vec<VersionId> = match view.units.get(key) {
            Some(u) if resolve_all => u.live_ids(),
            Some(u) => u.winner().map(|w| vec![w.id]).unwrap_or_default(),
            None => Vec::new(),
        };
        let op = Op::Edit {
            units: vec![UnitWrite {
                key: key.into(),
                bases,
                value: UnitValue::of(&value).unwrap(),
            }],
        };
        self.write(now, view.kind, record, op);
    }

    fn push(&mut self, server: &mut ReferenceServer, now: u64, lose_reply: bool, duplicate: bool) {
        if self.outbox.is_empty() {
            return;
        }
        let batch: Vec<Change> = self.outbox.iter().take(4).cloned().collect();
        let mut reply = server.push(&self.actor(), &batch, now);
        if duplicate {
            reply = server.push(&self.actor(), &batch, now);
            assert!(
                reply.outcomes.iter().all(|o| o.replayed),
                "a duplicate batch is answered from the record"
            );
        }
        if lose_reply {
            return;
        }
        for o in reply.outcomes {
            assert!(
                !matches!(&o.outcome, Outcome::Refused(r) if r.code.is_transient()),
                "{o:?}"
            );
            self.outbox.retain(|c| c.seq != o.seq);
            if let Some(commit) = o.outcome.commit_seq() {
                let record = self.log[&o.seq].record;
                // A reply lost and replayed after a pull already brought the record
                // is already in the base: remembering it would wait forever.
                if self.base.get(&record).is_none_or(|b| b.commit_seq < commit) {
                    self.acked.insert(o.seq, (record, commit));
                }
            }
            self.outcomes.insert(o.seq, o.outcome);
        }
    }

    fn pull(&mut self, server: &ReferenceServer, now: u64, pages: usize) {
        for _ in 0..pages {
            let page = server.pull(&self.cursor, 3, now);
            for r in page.records {
                for (seq, (_, commit)) in self.acked.clone() {
                    if self.log[&seq].record == r.id && commit <= r.commit_seq {
                        self.acked.remove(&seq);
                    }
                }
                self.base.insert(r.id, r);
            }
            self.cursor = page.next;
            if !page.more {
                break;
            }
        }
    }

    fn sync_fully(&mut self, server: &mut ReferenceServer, now: u64) {
        while !self.outbox.is_empty() {
            self.push(server, now, false, false);
        }
        self.pull(server, now, usize::MAX);
    }
}

#[derive(Debug, Clone)]
enum Step {
    Edit {
        replica: usize,
        record: usize,
        unit: usize,
        value: u8,
    },
    Resolve {
        replica: usize,
        record: usize,
        unit: usize,
        value: u8,
    },
    AddEvidence {
        replica: usize,
        record: usize,
        item: u8,
    },
    RemoveEvidence {
        replica: usize,
        record: usize,
        item: u8,
    },
    Submit {
        replica: usize,
        record: usize,
    },
    Sign {
        replica: usize,
        record: usize,
    },
    Review {
        record: usize,
        approve: bool,
    },
    Push {
        replica: usize,
        lose_reply: bool,
        duplicate: bool,
    },
    Pull {
        replica: usize,
        pages: usize,
    },
    Wait {
        minutes: u16,
    },
}

const UNITS: [&str; 4] = ["conclusion", "fix", "answers/TP-01", "times"];
const REPLICAS: usize = 3; // 0 and 1 are inspectors, 2 is a supervisor
const RECORDS: usize = 2;

fn step() -> impl Strategy<Value = Step> {
    let r = 0..2usize;
    let k = 0..RECORDS;
    prop_oneof![
        4 => (r.clone(), k.clone(), 0..UNITS.len(), any::<u8>()).prop_map(|(replica, record, unit, value)| Step::Edit { replica, record, unit, value }),
        1 => (r.clone(), k.clone(), 0..UNITS.len(), any::<u8>()).prop_map(|(replica, record, unit, value)| Step::Resolve { replica, record, unit, value }),
        1 => (r.clone(), k.clone(), 0..3u8).prop_map(|(replica, record, item)| Step::AddEvidence { replica, record, item }),
        1 => (r.clone(), k.clone(), 0..3u8).prop_map(|(replica, record, item)| Step::RemoveEvidence { replica, record, item }),
        1 => (r.clone(), k.clone()).prop_map(|(replica, record)| Step::Submit { replica, record }),
        1 => (r.clone(), k.clone()).prop_map(|(replica, record)| Step::Sign { replica, record }),
        1 => (k.clone(), any::<bool>()).prop_map(|(record, approve)| Step::Review { record, approve }),
        3 => (0..REPLICAS, any::<bool>(), any::<bool>()).prop_map(|(replica, lose_reply, duplicate)| Step::Push { replica, lose_reply, duplicate }),
        3 => (0..REPLICAS, 1..4usize).prop_map(|(replica, pages)| Step::Pull { replica, pages }),
        1 => (1..600u16).prop_map(|minutes| Step::Wait { minutes }),
    ]
}

fn unit_value(unit: &str, n: u8) -> serde_json::Value {
    match unit {
        "fix" => serde_json::json!({
            "lat": 24.9 + f64::from(n) / 1000.0, "lon": 107.5 + f64::from(n) / 1000.0,
            "accuracy_m": 5.0, "fix_time": "2025-05-06T09:02:00+08:00", "crs": "wgs84"
        }),
        "times" => serde_json::json!({
            "start": "2025-05-06T09:00:00+08:00",
            "end": format!("2025-05-06T1{}:{:02}:00+08:00", n % 10, n % 60)
        }),
        "answers/TP-01" => serde_json::json!({ "result": "problem", "note": format!("note {n}") }),
        _ => serde_json::json!(format!("结论 {n}")),
    }
}

fn evidence_id(record: usize, item: u8) -> ItemId {
    ItemId(Uuid::from_u128(0x9000 + (record as u128) * 16 + u128::from(item)))
}

struct World {
    server: ReferenceServer,
    sims: Vec<Sim>,
    records: Vec<RecordId>,
    now: u64,
}

impl World {
    fn new(skews: [i64; REPLICAS]) -> Self {
        let mut server = ReferenceServer::new(EngineConfig::default());
        let mut sims: Vec<Sim> = (0..REPLICAS)
            .map(|i| {
                Sim::new(
                    i as u128,
                    if i == 2 { Role::Supervisor } else { Role::Inspector },
                    skews[i],
                )
            })
            .collect();
        let now = T0;
        let site = SiteId(Uuid::from_u128(0x5000));
        let site_doc = AnyRecord::Site(sample::pond(site));
        sims[0].write(
            now,
            RecordKind::Site,
            site.into(),
            Op::Create {
                record: UnitValue::of(&site_doc).unwrap(),
                versions: None,
            },
        );
        let mut records = Vec::new();
        for k in 0..RECORDS {
            let id = InspectionId(Uuid::from_u128(0x6000 + k as u128));
            let mut doc = sample::inspection(id, site, sims[0].author.device);
            doc.conclusion = format!("初始 {k}");
            let json = serde_json::to_value(&doc).unwrap();
            sims[0].write(
                now,
                RecordKind::Inspection,
                id.into(),
                Op::Create {
                    record: UnitValue::of(&json).unwrap(),
                    versions: None,
                },
            );
            records.push(id.into());
        }
        for s in sims.iter_mut() {
            s.sync_fully(&mut server, now);
        }
        Self {
            server,
            sims,
            records,
            now,
        }
    }

    fn run(&mut self, step: &Step) {
        self.now += 1_000;
        let now = self.now;
        match *step {
            Step::Edit {
                replica,
                record,
                unit,
                value,
            } => self.sims[replica].edit(
                now,
                self.records[record],
                UNITS[unit],
                unit_value(UNITS[unit], value),
                false,
            ),
            Step::Resolve {
                replica,
                record,
                unit,
                value,
            } => self.sims[replica].edit(
                now,
                self.records[record],
                UNITS[unit],
                unit_value(UNITS[unit], value),
                true,
            ),
            Step::AddEvidence { replica, record, item } => {
                let id = evidence_id(record, item);
                let value = serde_json::json!({
                    "id": id, "sha256": format!("{:064x}", u128::from(item) + 1), "kind": "photo",
                    "caption": format!("photo {item} by {replica}")
                });
                self.sims[replica].edit(now, self.records[record], &format!("evidence/{id}"), value, false);
            }
            Step::RemoveEvidence { replica, record, item } => {
                let id = evidence_id(record, item);
                let key = format!("evidence/{id}");
                if self.sims[replica]
                    .view(self.records[record])
                    .is_some_and(|v| v.units.contains_key(&key))
                {
                    self.sims[replica].edit(now, self.records[record], &key, serde_json::Value::Null, false);
                }
            }
            Step::Submit { replica, record } => {
                let id = self.records[record];
                self.sims[replica].write(
                    now,
                    RecordKind::Inspection,
                    id,
                    Op::Transition {
                        action: "submit".into(),
                        versions: None,
                    },
                );
            }
            Step::Sign { replica, record } => {
                let id = self.records[record];
                let Some(view) = self.sims[replica].view(id) else {
                    return;
                };
                let layout = RecordKind::Inspection.layout();
                let versions = view
                    .live_set()
                    .into_iter()
                    .filter(|(k, _)| layout.field_of(k).is_some_and(|f| f.lockable))
                    .collect();
                self.sims[replica].write(
                    now,
                    RecordKind::Inspection,
                    id,
                    Op::Transition {
                        action: "sign".into(),
                        versions: Some(versions),
                    },
                );
            }
            Step::Review { record, approve } => {
                let sup = &mut self.sims[2];
                let inspection = self.records[record];
                let Some(view) = sup.view(inspection) else { return };
                let review = Review {
                    id: ReviewId(Uuid::from_u128(0xA000 + u128::from(sup.next_seq))),
                    schema_version: Review::SCHEMA_VERSION,
                    inspection_id: inspection.into(),
                    reviewer: sup.author.user,
                    decision: if approve { Decision::Approve } else { Decision::Return },
                    decided_at: DateTime::parse_from_rfc3339("2025-05-07T10:00:00+08:00").unwrap(),
                    comments: Vec::new(),
                };
                let doc = serde_json::to_value(&review).unwrap();
                sup.write(
                    now,
                    RecordKind::Review,
                    review.id.into(),
                    Op::Create {
                        record: UnitValue::of(&doc).unwrap(),
                        versions: Some(view.live_set()),
                    },
                );
            }
            Step::Push {
                replica,
                lose_reply,
                duplicate,
            } => self.sims[replica].push(&mut self.server, now, lose_reply, duplicate),
            Step::Pull { replica, pages } => self.sims[replica].pull(&self.server, now, pages),
            Step::Wait { minutes } => self.now += u64::from(minutes) * 60_000,
        }
    }

    fn settle(&mut self) {
        self.now += 1_000;
        for _ in 0..2 {
            for s in self.sims.iter_mut() {
                s.sync_fully(&mut self.server, self.now);
            }
        }
    }
}

fn check_converged_and_nothing_lost(world: &World) {
    let server_records: BTreeMap<RecordId, RecordState> = world
        .server
        .store
        .records
        .iter()
        .map(|(k, v)| (*k, v.clone().normalized()))
        .collect();
    for sim in &world.sims {
        assert!(sim.outbox.is_empty(), "outbox left: {:?}", sim.outbox);
        assert!(
            sim.acked.is_empty(),
            "acked left: {:?} outcomes {:?}",
            sim.acked,
            sim.acked.keys().map(|k| &sim.outcomes[k]).collect::<Vec<_>>()
        );
        for (id, state) in &server_records {
            let view = sim.view(*id).map(RecordState::normalized);
            assert_eq!(
                view.as_ref(),
                Some(state),
                "replica {:?} diverges on {id}",
                sim.author.replica
            );
        }
        // Every edit is the value, a live conflict, replaced by a version that saw
        // it, diverted to an addendum, or refused with a reason its author holds.
        for (seq, change) in &sim.log {
            let Op::Edit { units } = &change.op else { continue };
            let vid = VersionId::new(sim.author.replica, *seq);
            let outcome = &sim.outcomes[seq];
            if matches!(outcome, Outcome::Refused(r) if !r.message.is_empty())
                || matches!(outcome, Outcome::Locked { .. })
            {
                continue;
            }
            let state = &server_records[&change.record];
            for w in units {
                let unit = state.units.get(&w.key);
                let live = unit.is_some_and(|u| u.live.iter().any(|v| v.id == vid));
                let replaced = unit.is_some_and(|u| u.is_superseded(&vid));
                let locked_out = state.lock.is_some()
                    && RecordKind::Inspection
                        .layout()
                        .field_of(&w.key)
                        .is_some_and(|f| f.lockable);
                assert!(
                    live || replaced || locked_out,
                    "edit {vid} of {} vanished: {outcome:?}",
                    w.key
                );
            }
        }
    }
}

fn skew() -> impl Strategy<Value = i64> {
    prop_oneof![Just(0i64), Just(-3 * DAY), Just(3 * DAY), (-2 * DAY..2 * DAY)]
}

proptest! {
    #[test]
    fn replicas_converge_to_the_server_and_no_edit_vanishes(
        skews in [skew(), skew(), skew()],
        steps in proptest::collection::vec(step(), 1..60),
    ) {
        let mut world = World::new(skews);
        for s in &steps {
            world.run(s);
        }
        world.settle();
        check_converged_and_nothing_lost(&world);
    }

    #[test]
    fn content_merge_does_not_depend_on_arrival_order(
        steps in proptest::collection::vec(step(), 1..40),
        order in proptest::collection::vec(0..2usize, 0..80),
    ) {
        // Both inspectors edit offline (no sync in between), then push in two
        // different interleavings to two servers: the content must be identical.
        let mut world = World::new([0, 0, 0]);
        for s in &steps {
            match s {
                Step::Edit { .. } | Step::Resolve { .. } | Step::AddEvidence { .. } | Step::RemoveEvidence { .. } => world.run(s),
                _ => {}
            }
        }
        let mut a = world.server.clone();
        let mut b = world.server.clone();
        let queues: Vec<Vec<Change>> = world.sims[..2].iter().map(|s| s.outbox.clone()).collect();
        let actors: Vec<Actor> = world.sims[..2].iter().map(Sim::actor).collect();
        for (i, q) in queues.iter().enumerate() {
            a.push(&actors[i], q, world.now);
        }
        let mut cursors = [0usize, 0usize];
        for pick in order.iter().copied().chain([1, 0].into_iter().cycle().take(200)) {
            if let Some(c) = queues[pick].get(cursors[pick]) {
                b.push(&actors[pick], std::slice::from_ref(c), world.now);
                cursors[pick] += 1;
            }
        }
        for id in &world.records {
            let ua = a.record(*id).unwrap().clone().normalized().units;
            let ub = b.record(*id).unwrap().clone().normalized().units;
            prop_assert_eq!(ua, ub);
        }
    }
}

#[test]
fn a_retried_refusal_is_not_mistaken_for_success() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    // An inspector may not approve: the review create is refused...
    let sim = &mut world.sims[0];
    sim.write(
        T0,
        RecordKind::Inspection,
        id,
        Op::Transition {
            action: "approve".into(),
            versions: None,
        },
    );
    let batch = sim.outbox.clone();
    let first = world.server.push(&sim.actor(), &batch, T0);
    let again = world.server.push(&sim.actor(), &batch, T0);
    assert!(matches!(&first.outcomes[0].outcome, Outcome::Refused(r) if r.code == RefusalCode::UnknownAction));
    assert!(again.outcomes[0].replayed);
    assert_eq!(first.outcomes[0].outcome, again.outcomes[0].outcome);
}

#[test]
fn same_seq_with_other_content_is_a_fork_and_a_gap_is_refused() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    let sim = &mut world.sims[0];
    sim.edit(T0, id, "conclusion", serde_json::json!("甲"), false);
    let original = sim.outbox.clone();
    world.server.push(&sim.actor(), &original, T0);
    let mut forked = original.clone();
    forked[0].op = Op::Edit {
        units: vec![UnitWrite {
            key: "conclusion".into(),
            bases: vec![],
            value: UnitValue::of(&"乙").unwrap(),
        }],
    };
    let reply = world.server.push(&sim.actor(), &forked, T0);
    assert!(matches!(&reply.outcomes[0].outcome, Outcome::Refused(r) if r.code == RefusalCode::ReplicaForked));
    let mut gap = original.clone();
    gap[0].seq += 5;
    let reply = world.server.push(&sim.actor(), &gap, T0);
    assert!(matches!(&reply.outcomes[0].outcome, Outcome::Refused(r) if r.code == RefusalCode::SeqGap));
    assert_eq!(reply.expected_seq, original[0].seq + 1);
}

#[test]
fn a_clock_days_ahead_is_capped_and_flagged() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    let sim = &mut world.sims[1];
    sim.skew_ms = 5 * DAY;
    sim.edit(T0, id, "conclusion", serde_json::json!("未来"), false);
    let batch = sim.outbox.clone();
    let reply = world.server.push(&sim.actor(), &batch, T0);
    assert_eq!(reply.outcomes[0].flags[0].code, "clock_ahead");
    let unit = &world.server.record(id).unwrap().units["conclusion"];
    let winner = unit.winner().unwrap();
    assert!(winner.hlc.ms <= T0, "ordered at the server's clock, not the device's");
    assert_eq!(
        world.server.record(id).unwrap().meta[&winner.id].hlc.ms,
        T0 + 5 * DAY as u64,
        "original HLC kept"
    );
}

#[test]
fn an_edit_after_signing_becomes_a_pending_addendum_for_its_author() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    world.run(&Step::Edit {
        replica: 1,
        record: 0,
        unit: 1,
        value: 7,
    }); // offline fix edit on tablet 1
    world.run(&Step::Sign { replica: 0, record: 0 }); // tablet 0 signs what it saw
    world.run(&Step::Push {
        replica: 1,
        lose_reply: false,
        duplicate: false,
    });
    world.run(&Step::Push {
        replica: 0,
        lose_reply: false,
        duplicate: false,
    });
    let state = world.server.record(id).unwrap();
    assert!(state.lock.is_some());
    let fix_versions = state.units["fix"].live_ids();
    assert_eq!(fix_versions.len(), 1);
    assert_eq!(
        fix_versions[0].replica, world.sims[0].author.replica,
        "the signed fix is the one tablet 0 saw"
    );
    let addenda: Vec<_> = world
        .server
        .store
        .records
        .values()
        .filter(|r| r.kind == RecordKind::Addendum)
        .collect();
    assert_eq!(addenda.len(), 1);
    match addenda[0].materialize().unwrap() {
        AnyRecord::Addendum(a) => {
            assert_eq!(a.author, world.sims[1].author.user);
            assert_eq!(a.corrects.unwrap().unit, "fix");
        }
        other => panic!("{other:?}"),
    }
    // Edits arriving after signing are diverted too, and the author is told.
    world.run(&Step::Pull { replica: 1, pages: 10 });
    world.run(&Step::Edit {
        replica: 1,
        record: 0,
        unit: 0,
        value: 9,
    });
    world.run(&Step::Push {
        replica: 1,
        lose_reply: false,
        duplicate: false,
    });
    let last = world.sims[1].outcomes.values().last().unwrap();
    assert!(
        matches!(last, Outcome::Locked { addenda, .. } if addenda.len() == 1),
        "{last:?}"
    );
}

#[test]
fn a_review_names_what_it_saw_and_later_edits_mark_the_record() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    world.run(&Step::Submit { replica: 0, record: 0 });
    world.run(&Step::Push {
        replica: 0,
        lose_reply: false,
        duplicate: false,
    });
    world.run(&Step::Pull { replica: 2, pages: 10 });
    world.run(&Step::Review {
        record: 0,
        approve: false,
    });
    world.run(&Step::Push {
        replica: 2,
        lose_reply: false,
        duplicate: false,
    });
    let state = world.server.record(id).unwrap();
    assert_eq!(state.workflow.as_deref(), Some("returned"));
    assert!(!state.review.as_ref().unwrap().changed_since_review);
    world.run(&Step::Edit {
        replica: 1,
        record: 0,
        unit: 0,
        value: 3,
    });
    world.run(&Step::Push {
        replica: 1,
        lose_reply: false,
        duplicate: false,
    });
    assert!(
        world
            .server
            .record(id)
            .unwrap()
            .review
            .as_ref()
            .unwrap()
            .changed_since_review
    );
    // A second decision on a returned inspection is refused: workflow is not merged.
    world.run(&Step::Review {
        record: 0,
        approve: true,
    });
    world.run(&Step::Push {
        replica: 2,
        lose_reply: false,
        duplicate: false,
    });
    let last = world.sims[2].outcomes.values().last().unwrap();
    assert!(
        matches!(last, Outcome::Refused(r) if r.code == RefusalCode::TransitionNotAllowed),
        "{last:?}"
    );
}

#[test]
fn a_value_of_the_wrong_type_is_refused_even_when_it_would_lose_the_merge() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    let sim = &mut world.sims[1];
    let stale = |seq: u64, value: serde_json::Value, key: &str| Change {
        seq,
        // Older than the record's versions: it cannot win.
        hlc: sync_protocol::Hlc::new(1, 0),
        kind: RecordKind::Inspection,
        record: id,
        op: Op::Edit {
            units: vec![UnitWrite {
                key: key.into(),
                bases: vec![],
                value: UnitValue::of(&value).unwrap(),
            }],
        },
    };
    let seq = sim.next_seq;
    let batch = vec![
        stale(seq, serde_json::json!(42), "conclusion"),
        stale(seq + 1, serde_json::json!({"result": 7}), "answers/TP-01"),
        stale(seq + 2, serde_json::json!("旧结论"), "conclusion"),
    ];
    let reply = world.server.push(&sim.actor(), &batch, T0);
    for o in &reply.outcomes[..2] {
        assert!(
            matches!(&o.outcome, Outcome::Refused(r) if r.code == RefusalCode::InvalidStructure),
            "{o:?}"
        );
    }
    assert_eq!(
        reply.outcomes[0].outcome.refusal().unwrap().field.as_deref(),
        Some("conclusion")
    );
    // A well-typed stale value is kept beside the current one, as a conflict.
    assert!(
        matches!(&reply.outcomes[2].outcome, Outcome::Conflict { units, .. } if units == &["conclusion"]),
        "{:?}",
        reply.outcomes[2]
    );
    let unit = &world.server.record(id).unwrap().units["conclusion"];
    assert!(unit.live.iter().all(|v| v.value.get().starts_with('"')));
}

#[test]
fn a_commit_that_moves_a_record_is_sent_whole_and_a_later_edit_as_its_units() {
    let mut world = World::new([0, 0, 0]);
    let id = world.records[0];
    world.sims[0].edit(T0, id, "conclusion", serde_json::json!("甲"), false);
    world.sims[0].push(&mut world.server, T0, false, false);
    let held = world.server.record(id).unwrap().commit_seq;

    // The record moves to another site: a device whose view it left and
    // re-enters must not get only the units changed since its last pull.
    world.sims[0].edit(T0 + 1, id, "site_id", serde_json::json!(SiteId::generate()), false);
    world.sims[0].push(&mut world.server, T0 + 1, false, false);
    let moved = world.server.record(id).unwrap();
    assert!(moved.commit_seq > held);
    assert!(moved.delta(held).is_none(), "sent whole after a move");

    let moved_seq = moved.commit_seq;
    world.sims[0].edit(T0 + 2, id, "conclusion", serde_json::json!("乙"), false);
    world.sims[0].push(&mut world.server, T0 + 2, false, false);
    let edited = world.server.record(id).unwrap();
    let delta = edited.delta(moved_seq).expect("an ordinary edit travels as its units");
    assert_eq!(delta.units.keys().collect::<Vec<_>>(), vec!["conclusion"]);
}
