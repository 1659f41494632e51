//! The merge of one unit. A unit's state is a function of the set of versions
//! known for it: the live versions are those no known version names as a base,
//! and the ids named as bases are remembered so that a replaced version arriving
//! late stays replaced. That makes the merge commutative, associative and
//! idempotent whatever the arrival order.

use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::ids::VersionId;
use crate::value::UnitValue;

/// A version that nothing known replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveVersion {
    pub id: VersionId,
    /// The effective HLC: the author's, unless the server capped it.
    pub hlc: Hlc,
    pub value: UnitValue,
}

impl LiveVersion {
    fn order_key(&self) -> (Hlc, VersionId) {
        (self.hlc, self.id)
    }
}

/// One unit's merge state.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UnitState {
    /// Live versions, at most a few; more than one is a conflict.
    pub live: Vec<LiveVersion>,
    /// Every version id named as a base by a known version, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub superseded: Vec<VersionId>,
    /// The server commit seq at which the unit last changed; 0 when not known
    /// (a tablet's own unacknowledged version, a store from before it was kept).
    /// A pull sends only the units changed after the puller's cursor.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seq: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What applying a version did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitEffect {
    /// Already known, or already replaced: nothing changed.
    Known,
    /// Became the value or joined the live set.
    Applied,
}

impl UnitState {
    pub fn is_superseded(&self, id: &VersionId) -> bool {
        self.superseded.binary_search(id).is_ok()
    }

    pub fn knows(&self, id: &VersionId) -> bool {
        self.is_superseded(id) || self.live.iter().any(|v| v.id == *id)
    }

    /// Apply a version that replaces `bases`. The bases count even when the
    /// version itself is already replaced: the state must be a function of the
    /// set of versions, and a replaced version's bases are part of that set.
    pub fn apply(&mut self, version: LiveVersion, bases: &[VersionId]) -> UnitEffect {
        let mut changed = false;
        for b in bases {
            if *b == version.id {
                continue; // a version cannot replace itself
            }
            if let Err(pos) = self.superseded.binary_search(b) {
                self.superseded.insert(pos, *b);
                changed = true;
            }
        }
        let before = self.live.len();
        self.live.retain(|v| !bases.contains(&v.id) || v.id == version.id);
        changed |= self.live.len() != before;
        if !self.knows(&version.id) {
            self.live.push(version);
            changed = true;
        }
        if changed {
            UnitEffect::Applied
        } else {
            UnitEffect::Known
        }
    }

    /// The value: the live version with the highest (hlc, id).
    pub fn winner(&self) -> Option<&LiveVersion> {
        self.live.iter().max_by_key(|v| v.order_key())
    }

    /// The other live versions, which a person must see and resolve.
    pub fn conflicts(&self) -> impl Iterator<Item = &LiveVersion> {
        let w = self.winner().map(|w| w.id);
        self.live.iter().filter(move |v| Some(v.id) != w)
    }

    pub fn in_conflict(&self) -> bool {
        self.live.len() > 1
    }

    /// The same versions, whatever the seq.
    pub fn same_versions(&self, other: &UnitState) -> bool {
        self.live == other.live && self.superseded == other.superseded
    }

    pub fn live_ids(&self) -> Vec<VersionId> {
        let mut ids: Vec<_> = self.live.iter().map(|v| v.id).collect();
        ids.sort();
        ids
    }

    /// Live versions in a canonical order, for comparing states.
    pub fn normalize(&mut self) {
        self.live.sort_by_key(|v| v.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ReplicaId;
    use proptest::prelude::*;
    use uuid::Uuid;

    fn v(r: u128, seq: u64, ms: u64, text: &str) -> LiveVersion {
        LiveVersion {
            id: VersionId::new(ReplicaId(Uuid::from_u128(r)), seq),
            hlc: Hlc::new(ms, 0),
            value: UnitValue::parse(format!("\"{text}\"")).unwrap(),
        }
    }

    #[test]
    fn concurrent_same_unit_edits_keep_the_loser_as_conflict() {
        let mut u = UnitState::default();
        let base = v(1, 1, 10, "base");
        u.apply(base.clone(), &[]);
        u.apply(v(2, 1, 20, "a"), &[base.id]);
        u.apply(v(3, 1, 30, "b"), &[base.id]);
        assert_eq!(u.winner().unwrap().value.get(), "\"b\"");
        let losers: Vec<_> = u.conflicts().map(|v| v.value.get().to_string()).collect();
        assert_eq!(losers, vec!["\"a\"".to_string()]);
    }

    #[test]
    fn a_resolution_naming_both_ends_the_conflict() {
        let mut u = UnitState::default();
        let a = v(2, 1, 20, "a");
        let b = v(3, 1, 30, "b");
        u.apply(a.clone(), &[]);
        u.apply(b.clone(), &[]);
        assert!(u.in_conflict());
        u.apply(v(2, 2, 40, "ab"), &[a.id, b.id]);
        assert!(!u.in_conflict());
        assert_eq!(u.winner().unwrap().value.get(), "\"ab\"");
    }

    #[test]
    fn a_replaced_version_arriving_late_stays_replaced() {
        let mut u = UnitState::default();
        let old = v(1, 1, 10, "old");
        u.apply(v(1, 2, 20, "new"), &[old.id]);
        assert_eq!(u.apply(old, &[]), UnitEffect::Known);
        assert_eq!(u.live.len(), 1);
    }

    #[derive(Debug, Clone)]
    struct Op(LiveVersion, Vec<VersionId>);

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        // A small universe: 3 replicas × 4 seqs, bases among lower ids.
        proptest::collection::vec(
            (
                0u128..3,
                1u64..5,
                0u64..50,
                proptest::collection::vec((0u128..3, 1u64..5), 0..3),
            ),
            1..12,
        )
        .prop_map(|raw| {
            raw.into_iter()
                .map(|(r, s, ms, bases)| {
                    let ver = v(r, s, ms, &format!("{r}-{s}"));
                    let bases = bases
                        .into_iter()
                        .map(|(br, bs)| VersionId::new(ReplicaId(Uuid::from_u128(br)), bs))
                        .filter(|b| *b < ver.id)
                        .collect();
                    Op(ver, bases)
                })
                .collect::<Vec<_>>()
        })
        .prop_map(|mut ops| {
            // One version per id: a version id names one write.
            let mut seen = std::collections::BTreeSet::new();
            ops.retain(|o| seen.insert(o.0.id));
            ops
        })
    }

    fn run(ops: &[Op]) -> UnitState {
        let mut u = UnitState::default();
        for Op(v, b) in ops {
            u.apply(v.clone(), b);
        }
        u.normalize();
        u
    }

    proptest! {
        #[test]
        fn merge_is_order_independent_and_idempotent(ops in ops(), seed in any::<u64>()) {
            let a = run(&ops);
            let mut shuffled = ops.clone();
            // Deterministic shuffle from the seed.
            let mut x = seed | 1;
            for i in (1..shuffled.len()).rev() {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17;
                shuffled.swap(i, (x % (i as u64 + 1)) as usize);
            }
            let mut twice = shuffled.clone();
            twice.extend(ops.iter().cloned());
            prop_assert_eq!(&a, &run(&shuffled));
            prop_assert_eq!(&a, &run(&twice));
        }
    }
}
