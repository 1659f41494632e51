//! A record's merge state: its units, the server's workflow decisions, flags and
//! commit sequence. A record is stored and sent as one value.

use std::collections::BTreeMap;

use mobile_schema::ids::{DeviceId, RecordId, UserId};
use mobile_schema::record::{AnyRecord, LayoutError, RecordKind};
use serde::{Deserialize, Serialize};

use crate::change::VersionSet;
use crate::hlc::Hlc;
use crate::ids::VersionId;
use crate::outcome::Flag;
use crate::unit::{LiveVersion, UnitEffect, UnitState};

/// Who wrote a version, and when, as far as the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionMeta {
    pub user: UserId,
    pub device: DeviceId,
    /// The author's HLC as written (the live version carries the effective one).
    pub hlc: Hlc,
    /// Server receive time, ms since the epoch; 0 until the server has it.
    #[serde(default)]
    pub received_ms: u64,
}

/// A signature's lock: the content versions it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// The `sign` change.
    pub by: VersionId,
    pub units: VersionSet,
}

/// The latest review decision on an inspection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewMark {
    pub review: RecordId,
    pub decision: String,
    /// The content versions the decision covered.
    pub reviewed: VersionSet,
    /// Content changed after the decision.
    pub changed_since_review: bool,
}

/// One record as the server holds and sends it.
/// Stored and sent in the compact form of `compact`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordState {
    pub kind: RecordKind,
    pub id: RecordId,
    pub units: BTreeMap<String, UnitState>,
    /// Metadata of the live versions.
    pub meta: BTreeMap<VersionId, VersionMeta>,
    /// The workflow state's wire name, for kinds with a workflow.
    pub workflow: Option<String>,
    pub lock: Option<Lock>,
    pub review: Option<ReviewMark>,
    pub flags: Vec<Flag>,
    /// Flags from the server's checks of the photos (EXIF position and time,
    /// photos declared but not uploaded). The engine never sets them: they
    /// come from files, not from the record.
    pub evidence: Vec<Flag>,
    /// The server commit sequence of the record's last change; 0 if never committed.
    pub commit_seq: u64,
    /// A pull whose cursor is before this seq gets the record whole: it was
    /// created then, or re-sequenced for devices that may never have had it.
    pub whole_since: u64,
    /// Only the units changed after the puller's cursor, with every
    /// record-level field: merged into the state the device holds
    /// ([`RecordState::merge_delta`]). Never stored.
    pub partial: bool,
}

impl RecordState {
    pub fn new(kind: RecordKind, id: RecordId) -> Self {
        Self {
            kind,
            id,
            units: BTreeMap::new(),
            meta: BTreeMap::new(),
            workflow: kind.layout().workflow.map(|(_, initial)| initial.to_string()),
            lock: None,
            review: None,
            flags: Vec::new(),
            evidence: Vec::new(),
            commit_seq: 0,
            whole_since: 0,
            partial: false,
        }
    }

    /// Being committed at `seq`: the units that differ from `before` (all of
    /// them for a new record) changed at `seq`.
    pub fn stamp(&mut self, before: Option<&RecordState>, seq: u64) {
        let Some(before) = before else {
            self.whole_since = seq;
            self.units.values_mut().for_each(|u| u.seq = seq);
            return;
        };
        for (key, unit) in &mut self.units {
            if before.units.get(key).is_none_or(|b| !b.same_versions(unit)) {
                unit.seq = seq;
            }
        }
    }

    /// What a device needs of this record when it holds every record as
    /// committed up to `known` (its last pull that reached the end), if that is
    /// less than the whole: the units changed after `known` (and those whose
    /// seq is not known), and every record-level field. `None`: send it whole,
    /// as for a record made, or re-sequenced for devices that may lack it,
    /// after `known`.
    pub fn delta(&self, known: u64) -> Option<RecordState> {
        if known == 0 || self.whole_since > known {
            return None;
        }
        let units: BTreeMap<String, UnitState> = self
            .units
            .iter()
            .filter(|(_, u)| u.seq > known || u.seq == 0)
            .map(|(k, u)| (k.clone(), u.clone()))
            .collect();
        if units.len() == self.units.len() {
            return None;
        }
        Some(RecordState {
            kind: self.kind,
            id: self.id,
            units,
            meta: self.meta.clone(),
            workflow: self.workflow.clone(),
            lock: self.lock.clone(),
            review: self.review.clone(),
            flags: self.flags.clone(),
            evidence: self.evidence.clone(),
            commit_seq: self.commit_seq,
            whole_since: self.whole_since,
            partial: true,
        })
    }

    /// Bring this whole state up to a [`RecordState::delta`] of a later one.
    pub fn merge_delta(&mut self, delta: RecordState) {
        self.units.extend(delta.units);
        self.meta = delta.meta;
        self.workflow = delta.workflow;
        self.lock = delta.lock;
        self.review = delta.review;
        self.flags = delta.flags;
        self.evidence = delta.evidence;
        self.commit_seq = delta.commit_seq;
        self.whole_since = delta.whole_since;
    }

    /// Apply one unit version.
    pub fn apply(&mut self, key: &str, version: LiveVersion, bases: &[VersionId], meta: VersionMeta) -> UnitEffect {
        let id = version.id;
        let unit = self.units.entry(key.to_string()).or_default();
        let effect = unit.apply(version, bases);
        if effect == UnitEffect::Applied {
            self.meta.insert(id, meta);
            for b in bases {
                self.forget_meta_if_dead(*b);
            }
        }
        effect
    }

    fn forget_meta_if_dead(&mut self, id: VersionId) {
        if !self.units.values().any(|u| u.live.iter().any(|v| v.id == id)) {
            self.meta.remove(&id);
        }
    }

    /// Drop versions from a unit without replacing them (a lock diverting them).
    pub fn remove_live(&mut self, key: &str, ids: &[VersionId]) -> Vec<LiveVersion> {
        let Some(unit) = self.units.get_mut(key) else {
            return Vec::new();
        };
        let (gone, kept): (Vec<_>, Vec<_>) = unit.live.drain(..).partition(|v| ids.contains(&v.id));
        unit.live = kept;
        for v in &gone {
            self.forget_meta_if_dead(v.id);
        }
        gone
    }

    /// The live version ids of every unit.
    pub fn live_set(&self) -> VersionSet {
        self.units
            .iter()
            .filter(|(_, u)| !u.live.is_empty())
            .map(|(k, u)| (k.clone(), u.live_ids()))
            .collect()
    }

    /// Units holding more than one live version.
    pub fn conflicted_units(&self) -> Vec<&str> {
        self.units
            .iter()
            .filter(|(_, u)| u.in_conflict())
            .map(|(k, _)| k.as_str())
            .collect()
    }

    /// The record as the domain type, each unit at its winning value.
    pub fn materialize(&self) -> Result<AnyRecord, LayoutError> {
        let units = self
            .units
            .iter()
            .filter_map(|(k, u)| u.winner().map(|w| (k.as_str(), w.value.raw())));
        AnyRecord::from_units(self.kind, self.id, self.workflow.as_deref(), units)
    }

    /// Canonical form for comparing states across replicas: the versions,
    /// not when a server took them (unit seqs follow arrival order).
    pub fn normalized(mut self) -> Self {
        for u in self.units.values_mut() {
            u.normalize();
            u.seq = 0;
        }
        self.units.retain(|_, u| !u.live.is_empty() || !u.superseded.is_empty());
        self
    }
}
