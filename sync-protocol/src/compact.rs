//! The stored and wire form of a [`RecordState`]. A record created in one
//! change has every unit at the same version, and spelling that version's id
//! and HLC out in each of forty units made up half of every state's bytes: in
//! sled on both sides and in every pull. So each distinct live version is
//! written once, in a table `v` of `[id, ms, c]`, and a unit names it by index:
//!
//! - `[i, value, j, value, …]`: the live versions, when nothing is superseded
//!   and the unit changed at the record's usual seq `q`;
//! - `{"l": [i, value, …], "s": [superseded ids], "q": seq}` otherwise.
//!
//! `w` is `whole_since`, and `d: true` marks a partial state (a pull's delta).
//!
//! The earlier form, `{"live": [{id, hlc, value}], "superseded": [..]}` per unit
//! and no table, still reads: stores written before keep working.

use std::collections::BTreeMap;
use std::fmt;

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use serde::de::{self, MapAccess, SeqAccess, Visitor};
use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::hlc::Hlc;
use crate::ids::VersionId;
use crate::outcome::Flag;
use crate::state::{Lock, RecordState, ReviewMark, VersionMeta};
use crate::unit::{LiveVersion, UnitState};
use crate::value::UnitValue;

#[derive(Serialize)]
struct StateOut<'a> {
    kind: RecordKind,
    id: RecordId,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    v: Vec<(VersionId, u64, u32)>,
    /// The seq most units changed at.
    #[serde(skip_serializing_if = "is_zero")]
    q: u64,
    units: BTreeMap<&'a str, UnitOut<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    meta: &'a BTreeMap<VersionId, VersionMeta>,
    #[serde(skip_serializing_if = "Option::is_none")]
    workflow: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    lock: &'a Option<Lock>,
    #[serde(skip_serializing_if = "Option::is_none")]
    review: &'a Option<ReviewMark>,
    #[serde(skip_serializing_if = "<[Flag]>::is_empty")]
    flags: &'a [Flag],
    #[serde(skip_serializing_if = "<[Flag]>::is_empty")]
    evidence: &'a [Flag],
    commit_seq: u64,
    #[serde(skip_serializing_if = "is_zero")]
    w: u64,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    d: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Live versions as `[index, value, …]`.
struct LiveOut<'a>(Vec<(u32, &'a UnitValue)>);

impl Serialize for LiveOut<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len() * 2))?;
        for (i, v) in &self.0 {
            seq.serialize_element(i)?;
            seq.serialize_element(v)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum UnitOut<'a> {
    Live(LiveOut<'a>),
    Full {
        l: LiveOut<'a>,
        #[serde(skip_serializing_if = "<[VersionId]>::is_empty")]
        s: &'a [VersionId],
        /// Absent: the record's `q`.
        #[serde(skip_serializing_if = "Option::is_none")]
        q: Option<u64>,
    },
}

impl Serialize for RecordState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut table: Vec<(VersionId, u64, u32)> = Vec::new();
        let mut index: BTreeMap<(VersionId, Hlc), u32> = BTreeMap::new();
        // The most common unit seq, written once.
        let mut seqs: BTreeMap<u64, usize> = BTreeMap::new();
        for u in self.units.values() {
            *seqs.entry(u.seq).or_default() += 1;
        }
        let q = seqs
            .into_iter()
            .max_by_key(|(seq, n)| (*n, *seq))
            .map_or(0, |(seq, _)| seq);
        let mut units = BTreeMap::new();
        for (key, unit) in &self.units {
            let live = LiveOut(
                unit.live
                    .iter()
                    .map(|v| {
                        let i = *index.entry((v.id, v.hlc)).or_insert_with(|| {
                            table.push((v.id, v.hlc.ms, v.hlc.c));
                            (table.len() - 1) as u32
                        });
                        (i, &v.value)
                    })
                    .collect(),
            );
            let out = if unit.superseded.is_empty() && unit.seq == q {
                UnitOut::Live(live)
            } else {
                UnitOut::Full {
                    l: live,
                    s: &unit.superseded,
                    q: (unit.seq != q).then_some(unit.seq),
                }
            };
            units.insert(key.as_str(), out);
        }
        StateOut {
            kind: self.kind,
            id: self.id,
            v: table,
            q,
            units,
            meta: &self.meta,
            workflow: &self.workflow,
            lock: &self.lock,
            review: &self.review,
            flags: &self.flags,
            evidence: &self.evidence,
            commit_seq: self.commit_seq,
            w: self.whole_since,
            d: self.partial,
        }
        .serialize(s)
    }
}

#[derive(Deserialize)]
struct StateIn {
    kind: RecordKind,
    id: RecordId,
    #[serde(default)]
    v: Vec<(VersionId, u64, u32)>,
    #[serde(default)]
    q: u64,
    units: BTreeMap<String, UnitIn>,
    #[serde(default)]
    meta: BTreeMap<VersionId, VersionMeta>,
    #[serde(default)]
    workflow: Option<String>,
    #[serde(default)]
    lock: Option<Lock>,
    #[serde(default)]
    review: Option<ReviewMark>,
    #[serde(default)]
    flags: Vec<Flag>,
    #[serde(default)]
    evidence: Vec<Flag>,
    #[serde(default)]
    commit_seq: u64,
    #[serde(default)]
    w: u64,
    #[serde(default)]
    d: bool,
}

/// A unit as read: live versions by table index, or spelled out (earlier form).
struct UnitIn {
    indexed: Vec<(u32, UnitValue)>,
    spelled: Vec<LiveVersion>,
    superseded: Vec<VersionId>,
    seq: Option<u64>,
}

/// `[index, value, …]`.
struct LiveIn(Vec<(u32, UnitValue)>);

impl<'de> Deserialize<'de> for LiveIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = LiveIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("live versions as [index, value, …]")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LiveIn, A::Error> {
                let mut out = Vec::new();
                while let Some(i) = seq.next_element::<u32>()? {
                    let value = seq
                        .next_element::<UnitValue>()?
                        .ok_or_else(|| de::Error::custom("a version index without its value"))?;
                    out.push((i, value));
                }
                Ok(LiveIn(out))
            }
        }
        d.deserialize_seq(V)
    }
}

impl<'de> Deserialize<'de> for UnitIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UnitIn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a unit: [index, value, …] or an object of live and superseded versions")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<UnitIn, A::Error> {
                let LiveIn(indexed) = LiveIn::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
                Ok(UnitIn {
                    indexed,
                    spelled: Vec::new(),
                    superseded: Vec::new(),
                    seq: None,
                })
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UnitIn, A::Error> {
                let mut unit = UnitIn {
                    indexed: Vec::new(),
                    spelled: Vec::new(),
                    superseded: Vec::new(),
                    seq: None,
                };
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "l" => unit.indexed = map.next_value::<LiveIn>()?.0,
                        "live" => unit.spelled = map.next_value()?,
                        "s" | "superseded" => unit.superseded = map.next_value()?,
                        "q" | "seq" => unit.seq = Some(map.next_value()?),
                        _ => {
                            map.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(unit)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RecordState {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = StateIn::deserialize(d)?;
        let mut units = BTreeMap::new();
        for (key, u) in s.units {
            let mut live = u.spelled;
            for (i, value) in u.indexed {
                let &(id, ms, c) =
                    s.v.get(i as usize)
                        .ok_or_else(|| de::Error::custom(format!("unit {key} names version {i}, not in the table")))?;
                live.push(LiveVersion {
                    id,
                    hlc: Hlc::new(ms, c),
                    value,
                });
            }
            units.insert(
                key,
                UnitState {
                    live,
                    superseded: u.superseded,
                    seq: u.seq.unwrap_or(s.q),
                },
            );
        }
        Ok(RecordState {
            kind: s.kind,
            id: s.id,
            units,
            meta: s.meta,
            workflow: s.workflow,
            lock: s.lock,
            review: s.review,
            flags: s.flags,
            evidence: s.evidence,
            commit_seq: s.commit_seq,
            whole_since: s.w,
            partial: s.d,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ids::ReplicaId;

    fn version(seq: u64, ms: u64, text: &str) -> LiveVersion {
        LiveVersion {
            id: VersionId::new(ReplicaId(uuid::Uuid::from_u128(7)), seq),
            hlc: Hlc::new(ms, 1),
            value: UnitValue::parse(format!("{{\"text\":\"{text}\"}}")).unwrap(),
        }
    }

    fn sample() -> RecordState {
        let mut s = RecordState::new(RecordKind::Inspection, RecordId::from(uuid::Uuid::from_u128(9)));
        let created = version(1, 100, "a");
        for key in ["conclusion", "answers/TP-01", "answers/TP-02"] {
            s.units.insert(
                key.into(),
                UnitState {
                    live: vec![created.clone()],
                    superseded: Vec::new(),
                    seq: 40,
                },
            );
        }
        // A conflict over a replaced version.
        s.units.insert(
            "answers/TP-03".into(),
            UnitState {
                live: vec![version(2, 200, "b"), version(3, 300, "c")],
                superseded: vec![created.id],
                seq: 42,
            },
        );
        s.commit_seq = 42;
        s.whole_since = 40;
        s
    }

    #[test]
    fn a_state_reads_back_as_written_with_each_version_written_once() {
        let s = sample();
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RecordState>(&json).unwrap(), s);
        let id = VersionId::new(ReplicaId(uuid::Uuid::from_u128(7)), 1).to_string();
        // Once in the table, once as the superseded base of the conflict.
        assert_eq!(json.matches(&id).count(), 2, "{json}");
    }

    #[test]
    fn the_earlier_spelled_out_form_still_reads() {
        let s = sample();
        let units: BTreeMap<&str, serde_json::Value> = s
            .units
            .iter()
            .map(|(k, u)| {
                let live: Vec<_> = u
                    .live
                    .iter()
                    .map(|v| {
                        serde_json::json!({"id": v.id, "hlc": v.hlc, "value": serde_json::from_str::<serde_json::Value>(v.value.get()).unwrap()})
                    })
                    .collect();
                (k.as_str(), serde_json::json!({"live": live, "superseded": u.superseded}))
            })
            .collect();
        let old = serde_json::json!({"kind": "inspection", "id": s.id, "units": units, "workflow": s.workflow, "commit_seq": 42});
        // The earlier form kept no seqs.
        let mut s = s;
        s.whole_since = 0;
        s.units.values_mut().for_each(|u| u.seq = 0);
        assert_eq!(serde_json::from_value::<RecordState>(old.clone()).unwrap(), s);
        assert_eq!(
            serde_json::from_str::<RecordState>(&old.to_string()).unwrap(),
            s,
            "from text, as the stores read it"
        );
    }

    #[test]
    fn unit_seqs_and_partial_states_read_back_including_a_zero_seq() {
        let mut s = sample();
        s.units.get_mut("conclusion").unwrap().seq = 0;
        let delta = s.delta(41).unwrap();
        assert!(delta.partial);
        assert_eq!(
            delta.units.keys().collect::<Vec<_>>(),
            vec!["answers/TP-03", "conclusion"],
            "changed after 41, or not known"
        );
        for state in [s, delta] {
            let json = serde_json::to_string(&state).unwrap();
            assert_eq!(serde_json::from_str::<RecordState>(&json).unwrap(), state, "{json}");
        }
    }

    #[test]
    fn an_index_outside_the_table_is_an_error_not_a_panic() {
        let bad = r#"{"kind":"site","id":"00000000-0000-0000-0000-000000000009","v":[],"units":{"name":[3,"x"]}}"#;
        assert!(serde_json::from_str::<RecordState>(bad).is_err());
        let odd = r#"{"kind":"site","id":"00000000-0000-0000-0000-000000000009","v":[],"units":{"name":[0]}}"#;
        assert!(serde_json::from_str::<RecordState>(odd).is_err());
    }
}
