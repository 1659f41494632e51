//! The server's rules for a push: exactly-once bookkeeping, clock-skew capping,
//! content merge, workflow transitions in arrival order, signature locks and
//! review marks. Storage is behind [`Store`], so the in-memory reference server
//! and the sled server run the same rules.

use mobile_schema::ids::{AddendumId, InspectionId, RecordId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::review::{Addendum, Correction, Decision};
use mobile_schema::workflow::{
    AddendumAction, AddendumState, HazardAction, HazardState, InspectionAction, InspectionStatus, Role, StateMachine,
    TaskAction, TaskState, TransitionError,
};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::change::{Actor, Change, Op, UnitWrite, VersionSet};
use crate::history::ChangeEvent;
use crate::hlc::{Hlc, HlcClock};
use crate::ids::{ReplicaId, VersionId};
use crate::outcome::{ChangeOutcome, Flag, Outcome, Refusal, RefusalCode};
use crate::prepared::{self, ParsedCreate, Prepared};
use crate::rules;
use crate::scope::Scope;
use crate::state::{Lock, RecordState, ReviewMark, VersionMeta};
use crate::unit::{LiveVersion, UnitEffect};
use crate::value::UnitValue;

/// Limits and bounds of the rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// A change whose HLC is further ahead of the server clock than this is
    /// ordered at the server's clock instead, and flagged.
    pub skew_bound_ms: u64,
    pub max_units_per_change: usize,
    pub max_value_bytes: usize,
    /// Bases one unit write may name. A tablet names the live versions it saw
    /// (one, a few in a conflict); every base is kept in the record for good,
    /// so without a bound one push could grow a record without limit.
    pub max_bases_per_write: usize,
    /// Bases all the writes of one change may name together.
    pub max_bases_per_change: usize,
    /// The deployment's severity scale and on-site distance.
    pub rules: mobile_schema::rule_settings::RuleSettings,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            skew_bound_ms: 24 * 3600 * 1000,
            max_units_per_change: 512,
            max_value_bytes: 256 * 1024,
            max_bases_per_write: 64,
            max_bases_per_change: 2048,
            rules: mobile_schema::rule_settings::RuleSettings::default(),
        }
    }
}

/// An outcome as recorded under (replica, seq), with the digest of the change it
/// answered so a retry can be told from a fork.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredOutcome {
    pub digest: String,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
}

/// What the rules need from storage, in sync terms.
pub trait Store {
    type Error: std::error::Error;

    fn record(&mut self, id: RecordId) -> Result<Option<RecordState>, Self::Error>;
    /// A site as the domain type, for the rules; `None` if there is no such
    /// site. Every inspection, hazard and task change reads its site, so a
    /// store may keep them decoded.
    fn site(&mut self, id: RecordId) -> Result<Option<mobile_schema::site::Site>, Self::Error> {
        Ok(self.record(id)?.and_then(|s| site_from(&s)))
    }
    /// Store a record whose `commit_seq` the engine has just assigned.
    fn put_record(&mut self, state: RecordState) -> Result<(), Self::Error>;
    /// Keep a version in the history, so a signature can restore what it locked.
    fn remember(
        &mut self,
        record: RecordId,
        key: &str,
        version: &LiveVersion,
        meta: &VersionMeta,
    ) -> Result<(), Self::Error>;
    fn recall(
        &mut self,
        record: RecordId,
        key: &str,
        id: VersionId,
    ) -> Result<Option<(LiveVersion, VersionMeta)>, Self::Error>;
    fn outcome(&mut self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, Self::Error>;
    fn put_outcome(&mut self, replica: ReplicaId, seq: u64, outcome: StoredOutcome) -> Result<(), Self::Error>;
    /// Keep an answered change in its record's history, refusals included;
    /// committed with the change's outcome.
    fn put_event(&mut self, record: RecordId, version: VersionId, event: ChangeEvent) -> Result<(), Self::Error>;
    /// The highest seq of the replica with a recorded outcome (0 if none).
    fn last_seq(&mut self, replica: ReplicaId) -> Result<u64, Self::Error>;
    fn next_commit_seq(&mut self) -> Result<u64, Self::Error>;
    /// Epoch recovery's mark on a record: the previous epoch's commit seq of the
    /// state whose workflow it took, and the commit seq it gave the record.
    fn recovery_mark(&mut self, _id: RecordId) -> Result<Option<RecoveryMark>, Self::Error> {
        Ok(None)
    }
    fn put_recovery_mark(&mut self, _id: RecordId, _mark: RecoveryMark) -> Result<(), Self::Error> {
        Ok(())
    }
    /// The backup's commit seq when this store was restored from one.
    fn restored_from(&mut self) -> Result<Option<u64>, Self::Error> {
        Ok(None)
    }
}

/// A new commit seq for a record whose content and workflow the server did not
/// change (re-sequenced for a pull, new evidence flags). After a restore, epoch
/// recovery must still see the workflow as the previous epoch left it, so a
/// mark saying so moves along with the record.
fn resequence<S: Store>(store: &mut S, r: &mut RecordState) -> Result<(), S::Error> {
    let old = r.commit_seq;
    r.commit_seq = store.next_commit_seq()?;
    // Re-sequenced for devices that may never have had it: sent whole.
    r.whole_since = r.commit_seq;
    let held = match store.recovery_mark(r.id)? {
        Some(m) if m.new_seq == old => Some(m.old_seq),
        Some(_) => None,
        // Untouched since the restore: its seq is still the previous epoch's.
        None => store
            .restored_from()?
            .filter(|base| old > 0 && old <= *base)
            .map(|_| old),
    };
    if let Some(old_seq) = held {
        store.put_recovery_mark(
            r.id,
            RecoveryMark {
                old_seq,
                new_seq: r.commit_seq,
            },
        )?;
    }
    Ok(())
}

/// See [`Store::recovery_mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecoveryMark {
    pub old_seq: u64,
    pub new_seq: u64,
}

/// The rules, with the server's clock.
#[derive(Debug, Clone, Default)]
pub struct Engine {
    pub config: EngineConfig,
    clock: HlcClock,
}

/// Records changed by one change, committed together.
struct Touched {
    main: Option<RecordState>,
    others: Vec<RecordState>,
}

type Applied = Result<(Touched, Outcome), Refusal>;

/// A version with its author.
type Authored = (LiveVersion, VersionMeta);

impl Engine {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            config,
            clock: HlcClock::default(),
        }
    }

    /// Resume with the highest HLC the server had issued.
    pub fn resume_clock(&mut self, last: Hlc) {
        self.clock = HlcClock::resume(last);
    }

    pub fn clock(&self) -> Hlc {
        self.clock.last()
    }

    /// Apply a batch from one replica, in order. Each change gets its own outcome.
    pub fn push<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        changes: &[Change],
        now_ms: u64,
    ) -> Result<Vec<ChangeOutcome>, S::Error> {
        self.push_scoped(store, actor, None, changes, now_ms)
    }

    /// [`Engine::push`] for a user limited to `scope` (`None`: no limits): a
    /// change to a record outside it, or one the role may not make, is refused
    /// on its own and the rest of the batch proceeds.
    pub fn push_scoped<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        scope: Option<&Scope>,
        changes: &[Change],
        now_ms: u64,
    ) -> Result<Vec<ChangeOutcome>, S::Error> {
        self.push_prepared(store, actor, scope, changes, Vec::new(), now_ms)
    }

    /// [`Engine::push_scoped`] with each change's content-only work done
    /// ahead (`prepared[i]` for `changes[i]`; missing ones are done here).
    pub fn push_prepared<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        scope: Option<&Scope>,
        changes: &[Change],
        prepared: Vec<Prepared>,
        now_ms: u64,
    ) -> Result<Vec<ChangeOutcome>, S::Error> {
        let mut out = Vec::with_capacity(changes.len());
        let mut prepared = prepared.into_iter();
        for change in changes {
            let ahead = prepared.next().unwrap_or_default();
            out.push(self.push_one(store, actor, scope, change, ahead, now_ms)?);
        }
        Ok(out)
    }

    fn push_one<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        scope: Option<&Scope>,
        change: &Change,
        ahead: Prepared,
        now_ms: u64,
    ) -> Result<ChangeOutcome, S::Error> {
        let digest = ahead.digest.unwrap_or_else(|| prepared::digest_of(change));
        if let Some(stored) = store.outcome(actor.replica, change.seq)? {
            return Ok(if stored.digest == digest {
                ChangeOutcome {
                    seq: change.seq,
                    outcome: stored.outcome,
                    replayed: true,
                    flags: stored.flags,
                }
            } else {
                transient(
                    change.seq,
                    RefusalCode::ReplicaForked,
                    "this replica id and seq already named other content: re-key the replica and push again".into(),
                )
            });
        }
        let expected = store.last_seq(actor.replica)? + 1;
        if change.seq != expected {
            return Ok(transient(
                change.seq,
                RefusalCode::SeqGap,
                format!("expected seq {expected}"),
            ));
        }

        let mut flags = Vec::new();
        let author_hlc = change.hlc;
        let effective = if author_hlc.ms > now_ms.saturating_add(self.config.skew_bound_ms) {
            flags.push(Flag {
                code: "clock_ahead".into(),
                field: String::new(),
                message: format!(
                    "device clock was {} h ahead of the server; ordered at the server's time",
                    (author_hlc.ms - now_ms) / 3_600_000
                ),
            });
            self.clock.tick(now_ms)
        } else {
            self.clock.observe(author_hlc, now_ms);
            author_hlc
        };
        let id = change.id(actor.replica);
        let meta = VersionMeta {
            user: actor.user,
            device: actor.device,
            hlc: author_hlc,
            received_ms: now_ms,
        };

        let allowed = match scope {
            Some(scope) => {
                let before = store.record(change.record)?;
                let today = mobile_schema::time::shanghai_at_ms(now_ms).date_naive();
                crate::scope::check_write(scope, change.kind, change, before.as_ref(), today, &mut |id| {
                    store.record(id)
                })?
            }
            None => Ok(()),
        };
        let applied = match allowed {
            Ok(()) => self.apply_one(store, actor, change, ahead.create, id, effective, meta)?,
            Err(refusal) => Err(refusal),
        };
        // Other records the change stepped or made (a review's inspection, pending
        // addenda) keep it in their history too.
        let mut also = Vec::new();
        let outcome = match applied {
            Ok((touched, outcome)) => {
                also.extend(touched.others.iter().map(|r| r.id).filter(|r| *r != change.record));
                let seq_main = self.commit(store, touched)?;
                match outcome {
                    Outcome::Applied { .. } => Outcome::Applied { commit_seq: seq_main },
                    Outcome::Conflict { units, .. } => Outcome::Conflict {
                        commit_seq: seq_main,
                        units,
                    },
                    Outcome::Locked { addenda, .. } => Outcome::Locked {
                        commit_seq: seq_main,
                        addenda,
                    },
                    refused @ Outcome::Refused(_) => refused,
                }
            }
            Err(refusal) => Outcome::Refused(refusal),
        };
        // A review is a workflow step on its inspection: refused, it is kept
        // there too, so the inspection's history shows the attempt.
        if outcome.refusal().is_some()
            && change.kind == RecordKind::Review
            && matches!(change.op, Op::Create { .. })
            && let Some(crate::scope::Link::Inspection(target)) = crate::scope::link_of_change(change.kind, change)
            && target != change.record
        {
            also.push(target);
        }
        let event = ChangeEvent::of(change, meta, effective, &outcome, &flags);
        for other in also {
            store.put_event(other, id, event.clone().via(change.kind, change.record))?;
        }
        store.put_event(change.record, id, event)?;
        store.put_outcome(
            actor.replica,
            change.seq,
            StoredOutcome {
                digest,
                outcome: outcome.clone(),
                flags: flags.clone(),
            },
        )?;
        Ok(ChangeOutcome {
            seq: change.seq,
            outcome,
            replayed: false,
            flags,
        })
    }

    /// Give existing records new commit sequences, content unchanged, so a pull
    /// whose cursor is past them sees them again: a record that has just entered
    /// someone's scope (a drawn task whose window opened, a site that moved)
    /// reaches devices that skipped it. Returns the records found.
    pub fn resurface<S: Store>(&mut self, store: &mut S, ids: &[RecordId]) -> Result<Vec<RecordId>, S::Error> {
        let mut found = Vec::with_capacity(ids.len());
        for &id in ids {
            if let Some(mut r) = store.record(id)? {
                resequence(store, &mut r)?;
                store.put_record(r)?;
                found.push(id);
            }
        }
        Ok(found)
    }

    /// Set a record's evidence flags; when they changed, the record gets a new
    /// commit seq so that pulls carry them. Returns whether it changed.
    pub fn annotate<S: Store>(&mut self, store: &mut S, id: RecordId, evidence: &[Flag]) -> Result<bool, S::Error> {
        let Some(mut r) = store.record(id)? else {
            return Ok(false);
        };
        if r.evidence == evidence {
            return Ok(false);
        }
        r.evidence = evidence.to_vec();
        resequence(store, &mut r)?;
        store.put_record(r)?;
        Ok(true)
    }

    /// Assign commit sequences (others first, so the main record is the newest)
    /// and store. Returns the main record's commit seq.
    fn commit<S: Store>(&mut self, store: &mut S, touched: Touched) -> Result<u64, S::Error> {
        let mut last = 0;
        for mut r in touched.others.into_iter().chain(touched.main) {
            r.commit_seq = store.next_commit_seq()?;
            let before = store.record(r.id)?;
            r.stamp(before.as_ref(), r.commit_seq);
            // What decides who sees the record changed: it may come back into a
            // device's view after commits that device did not see, so this
            // commit sends it whole, not only the units changed since.
            if before.is_some() && crate::scope::visibility_changed(&r) {
                r.whole_since = r.commit_seq;
            }
            last = r.commit_seq;
            store.put_record(r)?;
        }
        Ok(last)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_one<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        change: &Change,
        parsed: Option<Result<ParsedCreate, Refusal>>,
        id: VersionId,
        hlc: Hlc,
        meta: VersionMeta,
    ) -> Result<Applied, S::Error> {
        if let Op::Create {
            versions: Some(versions),
            ..
        }
        | Op::Transition {
            versions: Some(versions),
            ..
        } = &change.op
            && let Err(refusal) = self.bounded(versions)
        {
            return Ok(Err(refusal));
        }
        match &change.op {
            Op::Create { record, versions } => {
                self.create(store, actor, change, parsed, id, hlc, meta, record, versions.as_ref())
            }
            Op::Edit { units } => self.edit(store, change, id, hlc, meta, units),
            Op::Transition { action, versions } => {
                self.transition(store, actor, change, (id, hlc, meta), action, versions.as_ref())
            }
        }
    }

    /// A version set (what a review covers, what a signature locks) is kept in
    /// the record: bounded like the bases of an edit, with room for a record
    /// of many units (an inspection with hundreds of photos).
    fn bounded(&self, versions: &VersionSet) -> Result<(), Refusal> {
        let most = self.config.max_bases_per_change.saturating_mul(4);
        let ids: usize = versions.values().map(Vec::len).sum();
        if versions.len() > most || ids > most || versions.values().any(|v| v.len() > self.config.max_bases_per_write) {
            return Err(Refusal::new(
                RefusalCode::TooLarge,
                format!(
                    "too many versions named: at most {most} units and ids, {} per unit",
                    self.config.max_bases_per_write
                ),
            )
            .at("versions"));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn create<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        change: &Change,
        parsed: Option<Result<ParsedCreate, Refusal>>,
        id: VersionId,
        hlc: Hlc,
        meta: VersionMeta,
        document: &UnitValue,
        versions: Option<&VersionSet>,
    ) -> Result<Applied, S::Error> {
        if document.get().len() > self.config.max_value_bytes * 4 {
            return Ok(Err(Refusal::new(RefusalCode::TooLarge, "record document too large")));
        }
        if store.record(change.record)?.is_some() {
            return Ok(Err(Refusal::new(
                RefusalCode::AlreadyExists,
                "a record with this id exists",
            )
            .at("id")));
        }
        let parsed = match parsed.unwrap_or_else(|| prepared::parse_create(&self.config, change, document.get())) {
            Ok(p) => p,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let ParsedCreate {
            typed,
            units,
            materialized,
        } = parsed;
        let mut state = RecordState::new(change.kind, change.record);
        for (key, value) in units {
            let v = LiveVersion {
                id,
                hlc,
                value: UnitValue::from_raw(value),
            };
            store.remember(change.record, &key, &v, &meta)?;
            state.apply(&key, v, &[], meta);
        }
        let mut others = Vec::new();
        // A review decision is a workflow step on its inspection.
        if let AnyRecord::Review(review) = &typed {
            let Some(mut inspection) = store.record(review.inspection_id.into())? else {
                return Ok(Err(Refusal::new(
                    RefusalCode::UnknownRecord,
                    "the reviewed inspection is not on the server",
                )
                .at("inspection_id")));
            };
            let action = match review.decision {
                Decision::Approve => InspectionAction::Approve,
                Decision::Return => InspectionAction::Return,
            };
            if let Err(r) = step::<InspectionStatus>(&mut inspection, action, actor.role) {
                return Ok(Err(r));
            }
            let reviewed = versions.cloned().unwrap_or_default();
            let changed = inspection.live_set() != reviewed;
            inspection.review = Some(ReviewMark {
                review: change.record,
                decision: InspectionStatus::action_name(action).to_string(),
                reviewed,
                changed_since_review: changed,
            });
            self.refresh_flags(store, &mut inspection)?;
            others.push(inspection);
        }
        if let Err(r) = self.check_and_flag(store, &mut state, None, materialized)? {
            return Ok(Err(r));
        }
        Ok(Ok((
            Touched {
                main: Some(state),
                others,
            },
            Outcome::Applied { commit_seq: 0 },
        )))
    }

    fn edit<S: Store>(
        &mut self,
        store: &mut S,
        change: &Change,
        id: VersionId,
        hlc: Hlc,
        meta: VersionMeta,
        writes: &[UnitWrite],
    ) -> Result<Applied, S::Error> {
        let Some(mut state) = store.record(change.record)? else {
            return Ok(Err(Refusal::new(
                RefusalCode::UnknownRecord,
                "no such record on the server",
            )));
        };
        if state.kind != change.kind {
            return Ok(Err(Refusal::new(
                RefusalCode::InvalidStructure,
                "the record is of another kind",
            )
            .at("kind")));
        }
        if writes.is_empty() {
            return Ok(Err(Refusal::new(
                RefusalCode::InvalidStructure,
                "an edit must write at least one unit",
            )
            .at("units")));
        }
        if writes.len() > self.config.max_units_per_change {
            return Ok(Err(
                Refusal::new(RefusalCode::TooLarge, "too many units in one change").at("units")
            ));
        }
        let layout = change.kind.layout();
        let mut seen = std::collections::BTreeSet::new();
        let mut bases = 0usize;
        for w in writes {
            bases = bases.saturating_add(w.bases.len());
            if w.bases.len() > self.config.max_bases_per_write || bases > self.config.max_bases_per_change {
                return Ok(Err(Refusal::new(
                    RefusalCode::TooLarge,
                    format!(
                        "too many bases: at most {} per unit and {} per change",
                        self.config.max_bases_per_write, self.config.max_bases_per_change
                    ),
                )
                .at(format!("{}.bases", w.key))));
            }
            if layout.field_of(&w.key).is_none() {
                return Ok(Err(Refusal::new(
                    RefusalCode::InvalidStructure,
                    format!("`{}` is not a unit of a {}", w.key, change.kind.as_str()),
                )
                .at(w.key.clone())));
            }
            // The decision was taken as the inspection's step when the
            // review was made: rewriting it would leave the review saying
            // other than what the inspection went through.
            if change.kind == RecordKind::Review && REVIEW_FIXED.contains(&w.key.as_str()) {
                return Ok(Err(Refusal::new(
                    RefusalCode::TransitionNotAllowed,
                    "a review's decision, inspection, reviewer and time are fixed when it is made: \
                     another decision is another review",
                )
                .at(w.key.clone())));
            }
            if !seen.insert(w.key.as_str()) {
                return Ok(Err(Refusal::new(
                    RefusalCode::InvalidStructure,
                    "the same unit twice in one change",
                )
                .at(w.key.clone())));
            }
            if w.value.get().len() > self.config.max_value_bytes {
                return Ok(Err(
                    Refusal::new(RefusalCode::TooLarge, "unit value too large").at(w.key.clone())
                ));
            }
        }
        // Every written value must fit its unit, whether or not it wins the
        // merge: a value that loses stays live as a conflict, which every
        // replica shows and a person may pick, and one diverted by a lock
        // becomes an addendum's correction. So decode the record with the
        // written values in place of their units' current values.
        // In key order, as `materialize` reads them: when every written value
        // wins, this decoded record is the materialized one, and the rules
        // below check it without decoding the record a second time.
        let mut units: Vec<(&str, &RawValue)> = state
            .units
            .iter()
            .filter(|(key, _)| !seen.contains(key.as_str()))
            .filter_map(|(key, unit)| unit.winner().map(|v| (key.as_str(), v.value.raw())))
            .chain(writes.iter().map(|w| (w.key.as_str(), w.value.raw())))
            .collect();
        units.sort_unstable_by_key(|(key, _)| *key);
        let with_writes = match AnyRecord::from_units(change.kind, change.record, state.workflow.as_deref(), units) {
            Ok(record) => record,
            Err(e) => {
                return Ok(Err(
                    Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field())
                ));
            }
        };

        let mut diverted = Vec::new();
        let mut conflicts = Vec::new();
        for w in writes {
            let lockable = layout.field_of(&w.key).is_some_and(|f| f.lockable);
            let v = LiveVersion {
                id,
                hlc,
                value: w.value.clone(),
            };
            if lockable && state.lock.is_some() {
                diverted.push((w.key.clone(), v));
                continue;
            }
            // A version the record knows already (brought back by recovery
            // after a restore, then pushed again) keeps what was stored of it.
            if !state.units.get(&w.key).is_some_and(|u| u.knows(&id)) {
                store.remember(change.record, &w.key, &v, &meta)?;
            }
            if state.apply(&w.key, v, &w.bases, meta) == UnitEffect::Applied
                && state.units.get(&w.key).is_some_and(|u| u.in_conflict())
            {
                conflicts.push(w.key.clone());
            }
        }
        let written: Vec<&str> = writes.iter().map(|w| w.key.as_str()).collect();
        let all_won = diverted.is_empty()
            && writes.iter().all(|w| {
                state
                    .units
                    .get(&w.key)
                    .and_then(|u| u.winner())
                    // The text too: a version id the unit already held (one
                    // brought back by recovery) keeps the stored value.
                    .is_some_and(|v| v.id == id && v.value.get() == w.value.get())
            });
        let record = if all_won { Ok(with_writes) } else { state.materialize() };
        // Debug test runs check the shortcut against the long way.
        debug_assert!(!all_won || record.as_ref().ok() == state.materialize().as_ref().ok());
        if let Err(r) = self.check_and_flag(store, &mut state, Some(&written), record)? {
            return Ok(Err(r));
        }
        mark_review(&mut state);

        let mut others = Vec::new();
        let mut addenda = Vec::new();
        for (key, v) in diverted {
            let add = pending_addendum(&state, &key, &v, meta, id);
            addenda.push(add.id);
            others.push(add);
        }
        let outcome = if !addenda.is_empty() {
            Outcome::Locked { commit_seq: 0, addenda }
        } else if !conflicts.is_empty() {
            Outcome::Conflict {
                commit_seq: 0,
                units: conflicts,
            }
        } else {
            Outcome::Applied { commit_seq: 0 }
        };
        Ok(Ok((
            Touched {
                main: Some(state),
                others,
            },
            outcome,
        )))
    }

    fn transition<S: Store>(
        &mut self,
        store: &mut S,
        actor: &Actor,
        change: &Change,
        (id, hlc, meta): (VersionId, Hlc, VersionMeta),
        action: &str,
        versions: Option<&VersionSet>,
    ) -> Result<Applied, S::Error> {
        let Some(mut state) = store.record(change.record)? else {
            return Ok(Err(Refusal::new(
                RefusalCode::UnknownRecord,
                "no such record on the server",
            )));
        };
        if state.kind != change.kind {
            return Ok(Err(Refusal::new(
                RefusalCode::InvalidStructure,
                "the record is of another kind",
            )
            .at("kind")));
        }
        let unknown = || {
            Refusal::new(
                RefusalCode::UnknownAction,
                format!("`{action}` is not an action of a {}", change.kind.as_str()),
            )
            .at("action")
        };
        let stepped = match change.kind {
            RecordKind::Inspection => match parse_action::<InspectionAction>(action) {
                Some(InspectionAction::Approve | InspectionAction::Return) => {
                    // Decisions travel as Review records, which carry the comments.
                    return Ok(Err(Refusal::new(
                        RefusalCode::UnknownAction,
                        "approve and return are made by creating a Review",
                    )
                    .at("action")));
                }
                Some(a) => step::<InspectionStatus>(&mut state, a, actor.role).map(|_| Some(a)),
                None => return Ok(Err(unknown())),
            },
            RecordKind::Hazard => match parse_action::<HazardAction>(action) {
                Some(a) => {
                    let stepped =
                        step::<HazardState>(&mut state, a, actor.role).and_then(|()| hazard_evidence(&state, a));
                    if stepped.is_ok() {
                        for (key, v) in set_aside_evidence(&mut state, a, id, hlc, meta) {
                            store.remember(change.record, &key, &v, &meta)?;
                        }
                    }
                    stepped.map(|()| None)
                }
                None => return Ok(Err(unknown())),
            },
            RecordKind::Task => match parse_action::<TaskAction>(action) {
                Some(a) => step::<TaskState>(&mut state, a, actor.role).map(|_| None),
                None => return Ok(Err(unknown())),
            },
            RecordKind::Addendum => match parse_action::<AddendumAction>(action) {
                Some(a) => crate::scope::may_decide_addendum(&state, actor.role, actor.user)
                    .and_then(|()| step::<AddendumState>(&mut state, a, actor.role))
                    .map(|_| None),
                None => return Ok(Err(unknown())),
            },
            _ => return Ok(Err(unknown())),
        };
        let mut others = Vec::new();
        let mut addenda = Vec::new();
        match stepped {
            Err(r) => return Ok(Err(r)),
            Ok(Some(InspectionAction::Sign)) => {
                if state.lock.is_some() {
                    return Ok(Err(Refusal::new(
                        RefusalCode::TransitionNotAllowed,
                        "the inspection is already signed",
                    )
                    .at("action")));
                }
                let Some(locked) = versions else {
                    return Ok(Err(Refusal::new(
                        RefusalCode::InvalidStructure,
                        "sign must name the content versions it locks",
                    )
                    .at("versions")));
                };
                for (key, unit_versions) in self.enforce_lock(store, &mut state, locked)? {
                    for (v, meta) in unit_versions {
                        let add = pending_addendum(&state, &key, &v, meta, id);
                        addenda.push(add.id);
                        others.push(add);
                    }
                }
                state.lock = Some(Lock {
                    by: id,
                    units: locked.clone(),
                });
                // Versions the signature took out change what was reviewed.
                mark_review(&mut state);
            }
            Ok(_) => {}
        }
        self.refresh_flags(store, &mut state)?;
        let outcome = if addenda.is_empty() {
            Outcome::Applied { commit_seq: 0 }
        } else {
            Outcome::Locked { commit_seq: 0, addenda }
        };
        Ok(Ok((
            Touched {
                main: Some(state),
                others,
            },
            outcome,
        )))
    }

    /// Make each lockable unit hold exactly the versions the signature names.
    /// Returns the versions taken out, which become pending addenda.
    fn enforce_lock<S: Store>(
        &mut self,
        store: &mut S,
        state: &mut RecordState,
        locked: &VersionSet,
    ) -> Result<Vec<(String, Vec<Authored>)>, S::Error> {
        let layout = state.kind.layout();
        let keys: Vec<String> = state
            .units
            .keys()
            .chain(locked.keys())
            .filter(|k| layout.field_of(k).is_some_and(|f| f.lockable))
            .cloned()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut taken = Vec::new();
        for key in keys {
            let want = locked.get(&key).cloned().unwrap_or_default();
            let live = state.units.get(&key).map(|u| u.live_ids()).unwrap_or_default();
            let extra: Vec<VersionId> = live.iter().filter(|v| !want.contains(v)).copied().collect();
            // Capture authors before removal forgets them: the addenda go to them.
            let metas: Vec<Option<VersionMeta>> = extra.iter().map(|v| state.meta.get(v).copied()).collect();
            let gone: Vec<(LiveVersion, VersionMeta)> = state
                .remove_live(&key, &extra)
                .into_iter()
                .filter_map(|v| {
                    let meta = extra.iter().position(|e| *e == v.id).and_then(|i| metas[i])?;
                    Some((v, meta))
                })
                .collect();
            for w in want.iter().filter(|w| !live.contains(w)) {
                // A locked version that a later edit had replaced: restore it.
                if let Some((v, meta)) = store.recall(state.id, &key, *w)? {
                    let unit = state.units.entry(key.clone()).or_default();
                    unit.live.push(v);
                    state.meta.insert(*w, meta);
                }
            }
            if !gone.is_empty() {
                taken.push((key, gone));
            }
        }
        Ok(taken)
    }

    /// Validate the record after a content change (`record`: the state as
    /// materialized): errors in the units this change wrote refuse it;
    /// everything else becomes flags.
    fn check_and_flag<S: Store>(
        &mut self,
        store: &mut S,
        state: &mut RecordState,
        written: Option<&[&str]>,
        record: Result<AnyRecord, mobile_schema::record::LayoutError>,
    ) -> Result<Result<(), Refusal>, S::Error> {
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                return Ok(Err(
                    Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field())
                ));
            }
        };
        let site = site_of(store, &record)?;
        let checked = rules::check(&record, site.as_ref(), &self.config.rules);
        let own = |f: &Flag| match written {
            None => true,
            Some(keys) => keys.iter().any(|k| {
                f.field == *k || f.field.starts_with(&format!("{k}.")) || f.field.starts_with(&format!("{k}/"))
            }),
        };
        if let Some(e) = checked.errors.iter().find(|f| own(f)) {
            return Ok(Err(
                Refusal::new(RefusalCode::InvalidRecord, e.message.clone()).at(e.field.clone())
            ));
        }
        let mut flags = checked.flags;
        flags.extend(checked.errors);
        state.flags = flags;
        Ok(Ok(()))
    }

    pub(crate) fn refresh_flags<S: Store>(&mut self, store: &mut S, state: &mut RecordState) -> Result<(), S::Error> {
        if let Ok(record) = state.materialize() {
            let site = site_of(store, &record)?;
            let checked = rules::check(&record, site.as_ref(), &self.config.rules);
            let mut flags = checked.flags;
            flags.extend(checked.errors);
            state.flags = flags;
        }
        Ok(())
    }
}

fn transient(seq: u64, code: RefusalCode, message: String) -> ChangeOutcome {
    ChangeOutcome {
        seq,
        outcome: Outcome::Refused(Refusal::new(code, message)),
        replayed: false,
        flags: Vec::new(),
    }
}

pub(crate) fn parse_action<A: serde::de::DeserializeOwned>(action: &str) -> Option<A> {
    serde_json::from_value(serde_json::Value::String(action.to_string())).ok()
}

fn parse_state<M: StateMachine + serde::de::DeserializeOwned>(state: &RecordState) -> Option<M> {
    parse_action::<M>(state.workflow.as_deref()?)
}

/// Take a workflow step on a record, or say why not.
fn step<M: StateMachine + serde::de::DeserializeOwned>(
    state: &mut RecordState,
    action: M::Action,
    role: Role,
) -> Result<(), Refusal> {
    let Some(current) = parse_state::<M>(state) else {
        return Err(Refusal::new(
            RefusalCode::InvalidStructure,
            "the record has no readable workflow state",
        ));
    };
    match current.apply(action, role) {
        Ok(next) => {
            state.workflow = Some(next.name().to_string());
            Ok(())
        }
        Err(e @ TransitionError::NotAllowedFrom { .. }) => {
            Err(Refusal::new(RefusalCode::TransitionNotAllowed, e.to_string()).at("action"))
        }
        Err(e @ TransitionError::RoleMayNot { .. }) => {
            Err(Refusal::new(RefusalCode::RoleNotAllowed, e.to_string()).at("action"))
        }
    }
}

/// A hazard step needs its evidence on the record (see `Hazard::missing_for`):
/// refused `evidence_required`, naming the field to fill, until it is there.
pub fn hazard_evidence(state: &RecordState, action: HazardAction) -> Result<(), Refusal> {
    let hazard = match state.materialize() {
        Ok(AnyRecord::Hazard(h)) => h,
        _ => {
            return Err(Refusal::new(
                RefusalCode::InvalidStructure,
                "the hazard does not decode: resolve its conflicts first",
            ));
        }
    };
    match hazard.missing_for(action) {
        Some(m) => Err(Refusal::new(RefusalCode::EvidenceRequired, m.message).at(m.field)),
        None => Ok(()),
    }
}

/// A reopened hazard, or one whose rectification was rejected, was judged on
/// the rectification material and verification evidence it holds: they are
/// set aside (each item's versions replaced by a removal written by the step,
/// kept in the history), so the next `submit_rectification` and `verify`
/// need new ones. Returns the removals written. The tablet's own view of
/// its step does the same.
pub fn set_aside_evidence(
    state: &mut RecordState,
    action: HazardAction,
    id: VersionId,
    hlc: Hlc,
    meta: VersionMeta,
) -> Vec<(String, LiveVersion)> {
    if !matches!(action, HazardAction::Reopen | HazardAction::RejectRectification) {
        return Vec::new();
    }
    let judged: Vec<(String, Vec<VersionId>)> = state
        .units
        .iter()
        .filter(|(key, _)| key.starts_with("rectification_evidence/") || key.starts_with("verification_evidence/"))
        // Any live item, in conflict too: a losing version left live would
        // come back when the conflict is resolved in its favour.
        .filter(|(_, unit)| unit.live.iter().any(|v| v.value.get() != "null"))
        .map(|(key, unit)| (key.clone(), unit.live.iter().map(|v| v.id).collect()))
        .collect();
    let mut written = Vec::with_capacity(judged.len());
    for (key, bases) in judged {
        let v = LiveVersion {
            id,
            hlc,
            value: UnitValue::null(),
        };
        state.apply(&key, v.clone(), &bases, meta);
        written.push((key, v));
    }
    written
}

/// The units of a review that only its creation writes.
const REVIEW_FIXED: [&str; 4] = ["inspection_id", "reviewer", "decision", "decided_at"];

/// After content changed, a reviewed record whose content differs from what was
/// reviewed is marked.
pub(crate) fn mark_review(state: &mut RecordState) {
    let live = state.live_set();
    if let Some(mark) = state.review.as_mut()
        && live != mark.reviewed
    {
        mark.changed_since_review = true;
    }
}

fn site_of<S: Store>(store: &mut S, record: &AnyRecord) -> Result<Option<mobile_schema::site::Site>, S::Error> {
    let site_id = match record {
        AnyRecord::Inspection(i) => i.site_id,
        AnyRecord::Hazard(h) => h.site_id,
        AnyRecord::Task(t) => t.site_id,
        _ => return Ok(None),
    };
    store.site(site_id.into())
}

/// The site a stored record holds, if it is one that decodes.
pub fn site_from(state: &RecordState) -> Option<mobile_schema::site::Site> {
    match state.materialize() {
        Ok(AnyRecord::Site(site)) => Some(site),
        _ => None,
    }
}

/// A content version that arrived for a signed record, kept as a pending
/// addendum for its author. Its id is derived from the version, so every server
/// replaying the same changes makes the same addendum.
fn pending_addendum(
    inspection: &RecordState,
    key: &str,
    v: &LiveVersion,
    meta: VersionMeta,
    by: VersionId,
) -> RecordState {
    let id = AddendumId::from_name("pending-addendum", &format!("{}/{key}/{}", inspection.id, v.id));
    let value: serde_json::Value = serde_json::from_str(v.value.get()).unwrap_or(serde_json::Value::Null);
    let written_at = mobile_schema::time::shanghai_at_ms(meta.hlc.ms);
    let addendum = Addendum {
        id,
        schema_version: Addendum::SCHEMA_VERSION,
        inspection_id: InspectionId::from(inspection.id),
        author: meta.user,
        text: format!("change to `{key}` made after the inspection was signed"),
        corrects: Some(Correction {
            unit: key.to_string(),
            value,
        }),
        written_at,
        state: AddendumState::Pending,
    };
    let mut state = RecordState::new(RecordKind::Addendum, id.into());
    if let Ok(units) = AnyRecord::Addendum(addendum).units() {
        for (k, value) in units {
            let version = LiveVersion {
                id: by,
                hlc: v.hlc,
                value: UnitValue::from_raw(value),
            };
            state.apply(&k, version, &[], meta);
        }
    }
    state
}
