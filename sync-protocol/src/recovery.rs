//! Epoch recovery: after the server is restored from a backup (a new epoch),
//! tablets send back the record states they hold from the previous epoch, and
//! the server re-establishes the versions it lacks under their original ids and
//! authors.
//!
//! A unit's state is a function of the set of versions known (see `unit.rs`), so
//! adding the versions a tablet holds is a union: a version the server already
//! knows (live, superseded, or in its history) is skipped, so nothing is
//! doubled however many tablets send it. Superseded ids are added too: they
//! were replaced in the previous epoch and stay replaced.
//!
//! Workflow is the server's decision in arrival order, so it is not merged: a
//! record untouched since the restore (its commit seq at most the backup's)
//! takes the workflow, lock and review mark of the newest state a tablet saw in
//! the previous epoch; a record that moved on in the new epoch keeps its own.

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use crate::engine::{Engine, RecoveryMark, Store};
use crate::history::{ChangeEvent, ChangeOp};
use crate::hlc::Hlc;
use crate::ids::VersionId;
use crate::outcome::{Refusal, RefusalCode};
use crate::scope::{self, Scope};
use crate::state::RecordState;
use crate::state::VersionMeta;

/// Record states sent in one recovery request at most.
pub const MAX_RECOVER_RECORDS: usize = 256;

/// `POST /api/v1/sync/recover`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverRequest {
    /// The epoch under which the tablet received these states: must be one the
    /// server was restored from.
    pub epoch: String,
    /// Record states as the tablet holds them (pulled, with its own acknowledged
    /// changes on top), each with the highest commit seq it saw for the record
    /// in the previous epoch. Empty to ask only for the answer's `base_seq`.
    #[serde(default)]
    pub records: Vec<RecordState>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverResponse {
    /// The server's current epoch.
    pub epoch: String,
    /// The commit seq the backup was taken at: the server holds every state of
    /// the previous epoch up to it, so only states past it need sending.
    pub base_seq: u64,
    /// Versions the server lacked and took.
    pub added: usize,
    /// Records whose workflow (state, lock, review mark) was taken from the tablet.
    pub workflow_restored: usize,
    /// Records refused, with the reason; the rest were taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<RecoverRefusal>,
    pub server_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoverRefusal {
    pub record: RecordId,
    #[serde(flatten)]
    pub refusal: Refusal,
}

/// What recovering one record state did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovered {
    /// Versions added and/or the workflow restored; the record has a new commit seq.
    Taken {
        added: usize,
        workflow: bool,
    },
    /// Nothing the server lacked.
    Known,
    Refused(Refusal),
}

/// Where the restored store came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreBase {
    /// The commit seq of the backup.
    pub base_seq: u64,
    /// When the restore was made: a version received after it cannot be of the previous epoch.
    pub restored_ms: u64,
}

impl Engine {
    /// Re-establish what `incoming` holds and the store lacks (see the module).
    /// `scope` is the sender's (`None`: no limits).
    pub fn recover<S: Store>(
        &mut self,
        store: &mut S,
        scope: Option<&Scope>,
        incoming: &RecordState,
        base: RestoreBase,
    ) -> Result<Recovered, S::Error> {
        if incoming.commit_seq <= base.base_seq {
            // The backup holds every state up to its seq.
            return Ok(Recovered::Known);
        }
        let before = store.record(incoming.id)?;
        if let Some(b) = &before
            && b.kind != incoming.kind
        {
            return Ok(Recovered::Refused(
                Refusal::new(RefusalCode::InvalidStructure, "the record exists with another kind").at("kind"),
            ));
        }
        if let Some(scope) = scope
            && !scope.is_admin()
        {
            let link = scope::link_of_state(before.as_ref().unwrap_or(incoming));
            let mut lookup = |id: RecordId| store.record(id);
            if let Some(region) = scope::region_of(link, &mut lookup)?
                && !scope.covers(region)
            {
                return Ok(Recovered::Refused(Refusal::new(
                    RefusalCode::ForbiddenScope,
                    format!("the record belongs to region {region}, outside this user's regions"),
                )));
            }
        }
        // A decision or a draw is a supervisor's act: from an inspector's
        // tablet it would come back as a record without its effect (the
        // workflow it set is not theirs to carry back).
        // Nor are a decision's content or a task's plan an inspector's to
        // write (`scope::check_write`): versions of them from an inspector's
        // tablet could be made up, so they come back from the office's.
        let inspector = scope.is_some_and(|s| s.role == Role::Inspector);
        if inspector
            && (matches!(incoming.kind, RecordKind::Review | RecordKind::RandomDraw)
                || (before.is_none() && incoming.kind == RecordKind::Task))
        {
            return Ok(Recovered::Refused(Refusal::new(
                RefusalCode::RoleNotAllowed,
                "reviews, draws and tasks come back only from a supervisor's or an admin's device",
            )));
        }
        let layout = incoming.kind.layout();
        let mut state = before
            .clone()
            .unwrap_or_else(|| RecordState::new(incoming.kind, incoming.id));
        let mut added = 0usize;
        let mut superseded_added = false;
        // Per version brought back: its author, its order and the units it wrote.
        let mut brought: BTreeMap<VersionId, (VersionMeta, Hlc, Vec<String>)> = BTreeMap::new();
        for (key, unit) in &incoming.units {
            if layout.field_of(key).is_none() {
                return Ok(Recovered::Refused(
                    Refusal::new(RefusalCode::InvalidStructure, format!("unknown unit `{key}`")).at(key.clone()),
                ));
            }
            // A task's plan (all but its note) only from the office's devices.
            if inspector && incoming.kind == RecordKind::Task && key != "note" {
                continue;
            }
            let mut fresh = Vec::new();
            for v in &unit.live {
                let known = state.units.get(key).is_some_and(|u| u.knows(&v.id));
                if known || store.recall(incoming.id, key, v.id)?.is_some() {
                    continue;
                }
                let Some(meta) = incoming.meta.get(&v.id) else {
                    return Ok(Recovered::Refused(
                        Refusal::new(RefusalCode::InvalidStructure, format!("version {} has no author", v.id))
                            .at(format!("meta.{}", v.id)),
                    ));
                };
                if meta.received_ms > base.restored_ms {
                    return Ok(Recovered::Refused(Refusal::new(
                        RefusalCode::InvalidStructure,
                        format!(
                            "version {} was received after the restore: not of the previous epoch",
                            v.id
                        ),
                    )));
                }
                // The server ordered every version of that epoch at or before
                // its own clock: a later one is a forged clock that would win
                // every merge and drag every tablet's clock along.
                if v.hlc.ms > base.restored_ms.saturating_add(self.config.skew_bound_ms) {
                    return Ok(Recovered::Refused(
                        Refusal::new(
                            RefusalCode::InvalidStructure,
                            format!("version {} is ordered after the restore", v.id),
                        )
                        .at(format!("units.{key}")),
                    ));
                }
                if v.value.get().len() > self.config.max_value_bytes {
                    return Ok(Recovered::Refused(
                        Refusal::new(RefusalCode::TooLarge, "unit value too large").at(key.clone()),
                    ));
                }
                fresh.push((v.clone(), *meta));
            }
            let target = state.units.entry(key.clone()).or_default();
            for id in &unit.superseded {
                if let Err(pos) = target.superseded.binary_search(id) {
                    target.superseded.insert(pos, *id);
                    superseded_added = true;
                }
            }
            for (v, meta) in fresh {
                let entry = brought.entry(v.id).or_insert((meta, v.hlc, Vec::new()));
                entry.2.push(key.clone());
                store.remember(incoming.id, key, &v, &meta)?;
                state.apply(key, v, &[], meta);
                added += 1;
            }
        }
        // Versions replaced in the previous epoch leave the live sets.
        let mut dead: Vec<VersionId> = Vec::new();
        for unit in state.units.values_mut() {
            let gone: Vec<VersionId> = unit
                .live
                .iter()
                .filter(|v| unit.is_superseded(&v.id))
                .map(|v| v.id)
                .collect();
            unit.live.retain(|v| !gone.contains(&v.id));
            dead.extend(gone);
        }
        for id in dead {
            if !state.units.values().any(|u| u.live.iter().any(|v| v.id == id)) {
                state.meta.remove(&id);
            }
        }
        // The workflow the record holds is of the previous epoch when no push
        // changed it since the restore: as restored, or as a recovery set it.
        // Then the newest state any tablet saw in that epoch wins.
        let mark = store.recovery_mark(incoming.id)?;
        let held_old_seq = match (&before, mark) {
            (None, _) => Some(0),
            (Some(b), _) if b.commit_seq <= base.base_seq => Some(b.commit_seq),
            (Some(b), Some(m)) if m.new_seq == b.commit_seq => Some(m.old_seq),
            _ => None,
        };
        let mut workflow = false;
        let mut old_seq = held_old_seq.unwrap_or(0);
        // Workflow steps are role-bound: an inspector's tablet could claim an
        // approval no supervisor made. Only supervisors' and admins' states
        // carry the workflow back; an inspector's bring content only.
        let may_carry_workflow = scope.is_none_or(|s| s.role != Role::Inspector);
        if let Some(held) = held_old_seq
            && may_carry_workflow
            && incoming.commit_seq > held
        {
            old_seq = incoming.commit_seq;
            if state.workflow != incoming.workflow || state.lock != incoming.lock || state.review != incoming.review {
                state.workflow.clone_from(&incoming.workflow);
                state.lock.clone_from(&incoming.lock);
                state.review.clone_from(&incoming.review);
                workflow = true;
            }
        }
        if added == 0 && !workflow && !superseded_added {
            return Ok(Recovered::Known);
        }
        if let Err(e) = state.materialize() {
            return Ok(Recovered::Refused(
                Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field()),
            ));
        }
        self.refresh_flags(store, &mut state)?;
        // Content brought back after an approval is marked as a push's is;
        // so is a review mark carried back over content it did not review.
        crate::engine::mark_review(&mut state);
        state.commit_seq = store.next_commit_seq()?;
        // Tablets' cursors count from the previous epoch: sent whole.
        state.whole_since = state.commit_seq;
        state.units.values_mut().for_each(|u| u.seq = state.commit_seq);
        if held_old_seq.is_some() {
            store.put_recovery_mark(
                incoming.id,
                RecoveryMark {
                    old_seq,
                    new_seq: state.commit_seq,
                },
            )?;
        }
        // In the record's history, each version brought back, with where it now stands.
        let commit_seq = state.commit_seq;
        store.put_record(state)?;
        for (version, (meta, effective, units)) in brought {
            let event = ChangeEvent {
                op: ChangeOp::Recovered,
                action: None,
                units,
                meta,
                effective,
                outcome: crate::outcome::Outcome::Applied { commit_seq },
                flags: Vec::new(),
                via: None,
            };
            store.put_event(incoming.id, version, event)?;
        }
        Ok(Recovered::Taken { added, workflow })
    }
}

#[cfg(test)]
mod tests {
    use mobile_schema::ids::{DeviceId, InspectionId, SiteId, UserId};
    use mobile_schema::record::{AnyRecord, RecordKind};
    use mobile_schema::sample;

    use super::*;
    use crate::change::{Actor, Change, Op, UnitWrite};
    use crate::engine::EngineConfig;
    use crate::hlc::Hlc;
    use crate::ids::ReplicaId;
    use crate::reference::MemoryStore;
    use crate::value::UnitValue;

    const NOW: u64 = 1_746_500_000_000;

    fn actor(role: Role) -> Actor {
        Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role,
        }
    }

    fn create(seq: u64, record: AnyRecord) -> Change {
        let kind = record.kind();
        let id = record.id();
        let mut value = serde_json::to_value(&record).unwrap_or_default();
        if let Some(o) = value.as_object_mut() {
            o.remove("kind");
        }
        Change {
            seq,
            hlc: Hlc::new(NOW + seq, 0),
            kind,
            record: id,
            op: Op::Create {
                record: UnitValue::of(&value)
                    .unwrap_or_else(|_| UnitValue::of(&serde_json::Value::Null).unwrap_or_else(|_| unreachable!())),
                versions: None,
            },
        }
    }

    fn conclusion(seq: u64, id: RecordId, text: &str, bases: Vec<crate::ids::VersionId>) -> Change {
        Change {
            seq,
            hlc: Hlc::new(NOW + seq, 0),
            kind: RecordKind::Inspection,
            record: id,
            op: Op::Edit {
                units: vec![UnitWrite {
                    key: "conclusion".into(),
                    bases,
                    value: UnitValue::of(&serde_json::json!(text)).unwrap_or_else(|_| unreachable!()),
                }],
            },
        }
    }

    fn scope(role: Role) -> Scope {
        Scope {
            user: UserId::generate(),
            role,
            regions: vec![mobile_schema::region::RegionCode::GUANGXI],
        }
    }

    /// A store backed up after the records were created, and the full store
    /// after three edits and a submit.
    fn backup_and_full() -> (MemoryStore, MemoryStore, RecordId, RestoreBase) {
        let mut engine = Engine::new(EngineConfig::default());
        let mut store = MemoryStore::default();
        let a = actor(Role::Inspector);
        let site = SiteId::generate();
        let insp = InspectionId::generate();
        let id: RecordId = insp.into();
        let changes = vec![
            create(1, sample::pond(site).into()),
            create(2, sample::inspection(insp, site, a.device).into()),
        ];
        engine.push(&mut store, &a, &changes, NOW).unwrap_or_default();
        let backup = store.clone();
        let base = RestoreBase {
            base_seq: backup.commit_seq,
            restored_ms: NOW + 1000,
        };
        let mut last = vec![crate::ids::VersionId::new(a.replica, 2)];
        for seq in 3..6 {
            let c = conclusion(seq, id, &format!("edit {seq}"), last.clone());
            engine.push(&mut store, &a, &[c], NOW).unwrap_or_default();
            last = vec![crate::ids::VersionId::new(a.replica, seq)];
        }
        let submit = Change {
            seq: 6,
            hlc: Hlc::new(NOW + 6, 0),
            kind: RecordKind::Inspection,
            record: id,
            op: Op::Transition {
                action: "submit".into(),
                versions: None,
            },
        };
        engine.push(&mut store, &a, &[submit], NOW).unwrap_or_default();
        (backup, store, id, base)
    }

    #[test]
    fn recovered_versions_are_taken_once_and_the_newest_workflow_comes_back() {
        let (mut restored, full, id, base) = backup_and_full();
        let held = full.records[&id].clone();
        assert_eq!(held.workflow.as_deref(), Some("submitted"));
        let mut engine = Engine::new(EngineConfig::default());
        let sup = scope(Role::Supervisor);
        let first = engine
            .recover(&mut restored, Some(&sup), &held, base)
            .unwrap_or(Recovered::Known);
        assert_eq!(
            first,
            Recovered::Taken {
                added: 1,
                workflow: true
            }
        );
        let got = restored.records[&id].clone();
        assert!(got.units["conclusion"].same_versions(&held.units["conclusion"]));
        // The record's history names the version brought back.
        let events: Vec<_> = restored
            .events
            .iter()
            .filter(|((r, _), e)| *r == id && e.op == crate::history::ChangeOp::Recovered)
            .collect();
        assert_eq!(events.len(), 1, "{events:?}");
        let (_, event) = events[0];
        assert_eq!(event.units, vec!["conclusion".to_string()]);
        assert_eq!(
            event.outcome,
            crate::outcome::Outcome::Applied {
                commit_seq: got.commit_seq
            }
        );
        assert_eq!(got.workflow.as_deref(), Some("submitted"));
        assert!(got.commit_seq > base.base_seq);
        // From another tablet, or again after a cut: nothing doubled.
        let again = engine
            .recover(&mut restored, Some(&sup), &held, base)
            .unwrap_or(Recovered::Taken {
                added: 9,
                workflow: true,
            });
        assert_eq!(again, Recovered::Known);
        assert_eq!(restored.records[&id].units["conclusion"].live.len(), 1);
        // An older state of the previous epoch does not roll the workflow back.
        let mut older = held.clone();
        older.workflow = Some("draft".into());
        older.commit_seq = held.commit_seq - 1;
        assert_eq!(
            engine
                .recover(&mut restored, Some(&sup), &older, base)
                .unwrap_or(Recovered::Taken {
                    added: 9,
                    workflow: true
                }),
            Recovered::Known
        );
        assert_eq!(restored.records[&id].workflow.as_deref(), Some("submitted"));
    }

    /// After recovery brought a version back, the tablet that wrote it may
    /// push it again (it never had the restored server's answer): the store
    /// keeps what it holds of that version, as the record shows it.
    #[test]
    fn a_version_pushed_again_after_its_recovery_keeps_what_was_recovered() {
        let (mut restored, full, id, base) = backup_and_full();
        let held = full.records[&id].clone();
        let mut engine = Engine::new(EngineConfig::default());
        engine
            .recover(&mut restored, Some(&scope(Role::Supervisor)), &held, base)
            .unwrap_or(Recovered::Known);
        let v5 = held.units["conclusion"].live[0].id;
        let author = held.meta[&v5];
        let tablet = Actor {
            replica: v5.replica,
            user: author.user,
            device: author.device,
            role: Role::Inspector,
        };
        // Its outbox again, the last edit's text not what it was.
        let mut last = vec![crate::ids::VersionId::new(v5.replica, 2)];
        for seq in 3..6 {
            let text = if seq == 5 {
                "not what was stored".to_string()
            } else {
                format!("edit {seq}")
            };
            let c = conclusion(seq, id, &text, last.clone());
            engine.push(&mut restored, &tablet, &[c], NOW).unwrap_or_default();
            last = vec![crate::ids::VersionId::new(v5.replica, seq)];
        }
        let live = &restored.records[&id].units["conclusion"].live;
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].value.get(), r#""edit 5""#);
        let recalled = restored.recall(id, "conclusion", v5).unwrap_or(None);
        assert_eq!(
            recalled.map(|(v, _)| v.value.get().to_string()),
            Some(r#""edit 5""#.to_string())
        );
    }

    #[test]
    fn an_inspectors_tablet_brings_content_back_but_not_workflow() {
        let (mut restored, full, id, base) = backup_and_full();
        let mut held = full.records[&id].clone();
        held.workflow = Some("approved".into());
        let mut engine = Engine::new(EngineConfig::default());
        let r = engine
            .recover(&mut restored, Some(&scope(Role::Inspector)), &held, base)
            .unwrap_or(Recovered::Known);
        assert_eq!(
            r,
            Recovered::Taken {
                added: 1,
                workflow: false
            }
        );
        assert_eq!(restored.records[&id].workflow.as_deref(), Some("draft"));
        assert!(restored.records[&id].units["conclusion"].same_versions(&held.units["conclusion"]));
    }

    #[test]
    fn new_evidence_after_the_restore_does_not_block_the_workflow_coming_back() {
        let (mut restored, full, id, base) = backup_and_full();
        restored.restored_from = Some(base.base_seq);
        let mut engine = Engine::new(EngineConfig::default());
        // The photo checks run on the restored store before any tablet is back.
        let flag = crate::outcome::Flag {
            code: "photo_not_uploaded".into(),
            field: "evidence".into(),
            message: "photo 1 is not on the server".into(),
        };
        assert!(
            engine
                .annotate(&mut restored, id, std::slice::from_ref(&flag))
                .unwrap_or(false)
        );
        assert!(restored.records[&id].commit_seq > base.base_seq);
        let held = full.records[&id].clone();
        let r = engine
            .recover(&mut restored, Some(&scope(Role::Supervisor)), &held, base)
            .unwrap_or(Recovered::Known);
        assert_eq!(
            r,
            Recovered::Taken {
                added: 1,
                workflow: true
            }
        );
        assert_eq!(restored.records[&id].workflow.as_deref(), Some("submitted"));
        assert_eq!(restored.records[&id].evidence, vec![flag]);
    }

    #[test]
    fn a_clock_after_the_restore_and_an_inspectors_review_are_refused() {
        let (mut restored, full, id, base) = backup_and_full();
        let mut engine = Engine::new(EngineConfig::default());
        let mut forged = full.records[&id].clone();
        let unit = forged.units.get_mut("conclusion").unwrap();
        unit.live[0].hlc = Hlc::new(base.restored_ms + EngineConfig::default().skew_bound_ms + 1, 0);
        let r = engine
            .recover(&mut restored, Some(&scope(Role::Supervisor)), &forged, base)
            .unwrap_or(Recovered::Known);
        assert!(
            matches!(&r, Recovered::Refused(x) if x.code == RefusalCode::InvalidStructure),
            "{r:?}"
        );
        assert_ne!(restored.records[&id].units["conclusion"], forged.units["conclusion"]);

        let mut review = RecordState::new(RecordKind::Review, RecordId::generate());
        review.commit_seq = base.base_seq + 1;
        let r = engine
            .recover(&mut restored, Some(&scope(Role::Inspector)), &review, base)
            .unwrap_or(Recovered::Known);
        assert!(
            matches!(&r, Recovered::Refused(x) if x.code == RefusalCode::RoleNotAllowed),
            "{r:?}"
        );
    }

    #[test]
    fn states_before_the_backup_and_versions_after_the_restore_are_not_taken() {
        let (mut restored, full, id, base) = backup_and_full();
        let mut engine = Engine::new(EngineConfig::default());
        let mut old = full.records[&id].clone();
        old.commit_seq = base.base_seq;
        assert_eq!(
            engine
                .recover(&mut restored, None, &old, base)
                .unwrap_or(Recovered::Taken {
                    added: 9,
                    workflow: true
                }),
            Recovered::Known
        );
        let mut late = full.records[&id].clone();
        for m in late.meta.values_mut() {
            m.received_ms = base.restored_ms + 1;
        }
        let r = engine
            .recover(&mut restored, None, &late, base)
            .unwrap_or(Recovered::Known);
        assert!(
            matches!(r, Recovered::Refused(ref f) if f.code == RefusalCode::InvalidStructure),
            "{r:?}"
        );
        assert_eq!(restored.records[&id].units["conclusion"].live.len(), 1);
        assert_ne!(
            restored.records[&id].units["conclusion"],
            full.records[&id].units["conclusion"]
        );
    }
}
