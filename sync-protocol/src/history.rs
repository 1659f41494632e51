//! A record's history for people: every change the server answered for it, with
//! its author, times and outcome — refusals included, which leave no version in
//! the record and would otherwise be found only by the replica and seq that sent
//! them.
//!
//! The engine writes one [`ChangeEvent`] per answered change under
//! (record, version), in the same commit as the change's outcome. Stores older
//! than events hold only the unit versions a change wrote (`Store::remember`);
//! [`assemble`] reads both, so their changes still show, without the op.

use std::collections::BTreeMap;

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use serde::{Deserialize, Serialize};

use crate::change::{Change, Op};
use crate::hlc::Hlc;
use crate::ids::VersionId;
use crate::outcome::{Flag, Outcome};
use crate::state::VersionMeta;

/// What kind of change it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    Create,
    Edit,
    Transition,
    /// A version a tablet brought back after the server was restored from a
    /// backup (its original op is not known then: `units` are what it wrote).
    Recovered,
}

/// One answered change to one record, as stored for its history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    pub op: ChangeOp,
    /// The workflow action of a transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The units an edit wrote (a create writes them all: not listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    /// Author, device, the author's HLC and the server's receive time.
    pub meta: VersionMeta,
    /// The HLC the change was ordered at: the author's, or the server's when the
    /// device clock ran too far ahead.
    pub effective: Hlc,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// Set when the change was to another record and touched this one: a
    /// review deciding an inspection, an edit of a signed inspection making a
    /// pending addendum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// The record a change was made to, when it is not the one whose history shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Via {
    pub kind: RecordKind,
    pub id: RecordId,
}

impl ChangeEvent {
    /// The same change, as seen from another record it touched.
    pub fn via(mut self, kind: RecordKind, id: RecordId) -> Self {
        self.via = Some(Via { kind, id });
        self
    }

    pub fn of(change: &Change, meta: VersionMeta, effective: Hlc, outcome: &Outcome, flags: &[Flag]) -> Self {
        let (op, action, units) = match &change.op {
            Op::Create { .. } => (ChangeOp::Create, None, Vec::new()),
            Op::Edit { units } => (ChangeOp::Edit, None, units.iter().map(|w| w.key.clone()).collect()),
            Op::Transition { action, .. } => (ChangeOp::Transition, Some(action.clone()), Vec::new()),
        };
        Self {
            op,
            action,
            units,
            meta,
            effective,
            outcome: outcome.clone(),
            flags: flags.to_vec(),
            via: None,
        }
    }
}

/// The unit versions one change wrote to a record, as kept for signatures.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written {
    pub meta: Option<VersionMeta>,
    /// Unit key → the effective HLC of the version written there.
    pub units: BTreeMap<String, Hlc>,
}

/// One line of a record's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryItem {
    pub version: VersionId,
    /// `None` for changes stored before events were kept.
    pub op: Option<ChangeOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The units the change wrote into the record (what it asked for, when refused).
    pub units: Vec<String>,
    pub meta: Option<VersionMeta>,
    pub effective: Option<Hlc>,
    /// `None` when the store has neither an event nor an outcome for it.
    pub outcome: Option<Outcome>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

impl HistoryItem {
    /// The place in the history: effective HLC, then version id (the merge's order).
    pub fn order(&self) -> (Hlc, VersionId) {
        let hlc = self.effective.or(self.meta.map(|m| m.hlc)).unwrap_or(Hlc::ZERO);
        (hlc, self.version)
    }
}

/// Refused changes of one replica kept in view in a record's history: past
/// this, that replica's further refusals are left out (the history says it is
/// truncated), so nobody can bury a record's history under refused pushes.
pub const MAX_REFUSALS_PER_REPLICA: usize = 100;

/// Counts refusals per replica as a history is read, in version order.
#[derive(Debug, Default)]
pub struct RefusalLimit {
    seen: std::collections::HashMap<crate::ids::ReplicaId, usize>,
    /// Some refusal was left out.
    pub cut: bool,
}

impl RefusalLimit {
    /// Whether to keep a change with this outcome of `version`.
    pub fn admit(&mut self, version: VersionId, outcome: &Outcome) -> bool {
        if !matches!(outcome, Outcome::Refused(_)) {
            return true;
        }
        let n = self.seen.entry(version.replica).or_default();
        *n += 1;
        let keep = *n <= MAX_REFUSALS_PER_REPLICA;
        self.cut |= !keep;
        keep
    }
}

/// Joins a record's events and written versions by change, in history order.
/// `outcome_of` answers for changes stored before events were kept.
pub fn assemble<E>(
    events: impl IntoIterator<Item = (VersionId, ChangeEvent)>,
    written: impl IntoIterator<Item = (VersionId, Written)>,
    mut outcome_of: impl FnMut(VersionId) -> Result<Option<Outcome>, E>,
) -> Result<Vec<HistoryItem>, E> {
    let mut items: BTreeMap<VersionId, HistoryItem> = BTreeMap::new();
    for (version, e) in events {
        items.insert(
            version,
            HistoryItem {
                version,
                op: Some(e.op),
                action: e.action,
                units: e.units,
                meta: Some(e.meta),
                effective: Some(e.effective),
                outcome: Some(e.outcome),
                flags: e.flags,
                via: e.via,
            },
        );
    }
    for (version, w) in written {
        let effective = w.units.values().next().copied();
        let item = items.entry(version).or_insert_with(|| HistoryItem {
            version,
            op: None,
            action: None,
            units: Vec::new(),
            meta: w.meta,
            effective,
            outcome: None,
            flags: Vec::new(),
            via: None,
        });
        // What reached the record: an edit's units that a lock diverted are not
        // here; a create's units are listed only here.
        if (item.op != Some(ChangeOp::Edit) || item.units.is_empty()) && item.via.is_none() {
            item.units = w.units.keys().cloned().collect();
        }
        if item.meta.is_none() {
            item.meta = w.meta;
        }
    }
    let mut out: Vec<HistoryItem> = items.into_values().collect();
    for item in &mut out {
        if item.outcome.is_none() {
            item.outcome = outcome_of(item.version)?;
        }
    }
    out.sort_by_key(HistoryItem::order);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ReplicaId;
    use crate::outcome::{Refusal, RefusalCode};
    use mobile_schema::ids::{DeviceId, UserId};

    fn meta(ms: u64) -> VersionMeta {
        VersionMeta {
            user: UserId::generate(),
            device: DeviceId::generate(),
            hlc: Hlc::new(ms, 0),
            received_ms: ms + 5,
        }
    }

    #[test]
    fn events_and_written_versions_join_by_change_in_hlc_order() {
        let (a, b) = (ReplicaId::generate(), ReplicaId::generate());
        let refused = ChangeEvent {
            op: ChangeOp::Transition,
            action: Some("approve".into()),
            units: Vec::new(),
            meta: meta(300),
            effective: Hlc::new(300, 0),
            outcome: Outcome::Refused(Refusal::new(RefusalCode::RoleNotAllowed, "no")),
            flags: Vec::new(),
            via: None,
        };
        let created = ChangeEvent {
            op: ChangeOp::Create,
            action: None,
            units: Vec::new(),
            meta: meta(100),
            effective: Hlc::new(100, 0),
            outcome: Outcome::Applied { commit_seq: 1 },
            flags: Vec::new(),
            via: None,
        };
        let old = Written {
            meta: Some(meta(200)),
            units: [("conclusion".to_string(), Hlc::new(200, 0))].into(),
        };
        let create_units = Written {
            meta: Some(created.meta),
            units: [
                ("fix".to_string(), Hlc::new(100, 0)),
                ("site_id".to_string(), Hlc::new(100, 0)),
            ]
            .into(),
        };
        let items = assemble::<std::convert::Infallible>(
            [(VersionId::new(b, 9), refused), (VersionId::new(a, 1), created)],
            [(VersionId::new(a, 1), create_units), (VersionId::new(b, 2), old)],
            |v| Ok((v.seq == 2).then_some(Outcome::Applied { commit_seq: 2 })),
        )
        .unwrap();
        let seqs: Vec<u64> = items.iter().map(|i| i.version.seq).collect();
        assert_eq!(seqs, vec![1, 2, 9]);
        assert_eq!(items[0].op, Some(ChangeOp::Create));
        assert_eq!(items[0].units, vec!["fix".to_string(), "site_id".to_string()]);
        assert_eq!(items[1].op, None, "stored before events");
        assert_eq!(items[1].outcome, Some(Outcome::Applied { commit_seq: 2 }));
        assert_eq!(items[1].units, vec!["conclusion".to_string()]);
        assert!(matches!(&items[2].outcome, Some(Outcome::Refused(r)) if r.code == RefusalCode::RoleNotAllowed));
    }
}
