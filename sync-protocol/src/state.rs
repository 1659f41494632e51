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
        }
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

    /// Canonical form for comparing states across replicas.
    pub fn normalized(mut self) -> Self {
        for u in self.units.values_mut() {
            u.normalize();
        }
        self.units.retain(|_, u| !u.live.is_empty() || !u.superseded.is_empty());
        self
    }
}
