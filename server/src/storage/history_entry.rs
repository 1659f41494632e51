//! What one change wrote to one record, as the store keeps it for history and
//! for a signature that restores a version it locked.
//!
//! A change is one version: every unit it wrote has the same id and HLC. The
//! stored form writes them once, `{meta, id, hlc, values: {unit: value}}`; a
//! created inspection spelled them out in each of its forty units, which made
//! the history entry the largest value a push wrote to sled. Entries written
//! before, `{meta, units: {unit: {id, hlc, value}}}`, still read, and that form
//! is kept for an entry whose units differ.
//!
//! A value still live in the record when the entry is written is not written
//! again here: its unit is listed under `keys` instead, and the store reads it
//! from the record while it is live and from its superseded-value key once an
//! edit has replaced it (`keys::superseded`). A created record's values were
//! otherwise written twice, and the history entry was a third of a push's bytes.

use std::collections::{BTreeMap, BTreeSet};

use serde::ser::SerializeStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sync_protocol::state::VersionMeta;
use sync_protocol::unit::LiveVersion;
use sync_protocol::value::UnitValue;
use sync_protocol::{Hlc, VersionId};

#[derive(Debug, Clone, Default)]
pub struct HistoryEntry {
    pub meta: Option<VersionMeta>,
    /// Each unit the change wrote; the value of one in `in_record` is not in
    /// the entry (read back as null).
    pub units: BTreeMap<String, LiveVersion>,
    /// Units whose values are kept with the record, not in the entry.
    pub in_record: BTreeSet<String>,
}

impl HistoryEntry {
    /// The id and HLC every unit shares, if they do.
    fn shared(&self) -> Option<(VersionId, Hlc)> {
        let first = self.units.values().next().map(|v| (v.id, v.hlc))?;
        self.units.values().all(|v| (v.id, v.hlc) == first).then_some(first)
    }
}

/// The unit values kept in the entry, as a map.
struct Values<'a>(&'a HistoryEntry);

impl Serialize for Values<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(
            self.0
                .units
                .iter()
                .filter(|(k, _)| !self.0.in_record.contains(*k))
                .map(|(k, v)| (k, &v.value)),
        )
    }
}

impl Serialize for HistoryEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.shared() {
            Some((id, hlc)) => {
                let fields = if self.in_record.is_empty() { 4 } else { 5 };
                let mut out = s.serialize_struct("HistoryEntry", fields)?;
                out.serialize_field("meta", &self.meta)?;
                out.serialize_field("id", &id)?;
                out.serialize_field("hlc", &hlc)?;
                out.serialize_field("values", &Values(self))?;
                if !self.in_record.is_empty() {
                    out.serialize_field("keys", &self.in_record)?;
                }
                out.end()
            }
            None => {
                let mut out = s.serialize_struct("HistoryEntry", 2)?;
                out.serialize_field("meta", &self.meta)?;
                out.serialize_field("units", &self.units)?;
                out.end()
            }
        }
    }
}

#[derive(Deserialize)]
struct Stored {
    #[serde(default)]
    meta: Option<VersionMeta>,
    #[serde(default)]
    units: BTreeMap<String, LiveVersion>,
    id: Option<VersionId>,
    hlc: Option<Hlc>,
    #[serde(default)]
    values: BTreeMap<String, UnitValue>,
    #[serde(default)]
    keys: BTreeSet<String>,
}

impl<'de> Deserialize<'de> for HistoryEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Stored {
            meta,
            mut units,
            id,
            hlc,
            values,
            keys,
        } = Stored::deserialize(d)?;
        if !values.is_empty() || !keys.is_empty() {
            let (Some(id), Some(hlc)) = (id, hlc) else {
                return Err(serde::de::Error::custom(
                    "history values without their version id and hlc",
                ));
            };
            units.extend(values.into_iter().map(|(k, value)| (k, LiveVersion { id, hlc, value })));
            units.extend(keys.iter().map(|k| {
                let value = UnitValue::null();
                (k.clone(), LiveVersion { id, hlc, value })
            }));
        }
        Ok(Self {
            meta,
            units,
            in_record: keys,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobile_schema::ids::{DeviceId, UserId};
    use sync_protocol::ReplicaId;

    fn version(seq: u64, ms: u64, value: &str) -> LiveVersion {
        LiveVersion {
            id: VersionId::new(ReplicaId(uuid::Uuid::from_u128(7)), seq),
            hlc: Hlc { ms, c: 0 },
            value: UnitValue::from_raw(serde_json::value::RawValue::from_string(value.into()).unwrap()),
        }
    }

    fn entry(units: &[(&str, LiveVersion)]) -> HistoryEntry {
        HistoryEntry {
            meta: Some(VersionMeta {
                user: UserId(uuid::Uuid::from_u128(1)),
                device: DeviceId(uuid::Uuid::from_u128(2)),
                hlc: Hlc { ms: 5, c: 1 },
                received_ms: 9,
            }),
            units: units.iter().map(|(k, v)| (k.to_string(), v.clone())).collect(),
            in_record: BTreeSet::new(),
        }
    }

    fn round_trip(e: &HistoryEntry) -> (String, HistoryEntry) {
        let json = serde_json::to_string(e).unwrap();
        let back: HistoryEntry = serde_json::from_str(&json).unwrap();
        (json, back)
    }

    fn same(a: &HistoryEntry, b: &HistoryEntry) -> bool {
        a.meta == b.meta && a.units == b.units && a.in_record == b.in_record
    }

    #[test]
    fn one_version_is_written_once_and_reads_back_whole() {
        let e = entry(&[
            ("conclusion", version(3, 100, r#""坝体完好""#)),
            ("answers/TP-01", version(3, 100, r#"{"result":"ok"}"#)),
        ]);
        let (json, back) = round_trip(&e);
        assert_eq!(json.matches(":3\"").count(), 1, "{json}");
        assert!(
            json.contains(r#""values":{"answers/TP-01":{"result":"ok"},"conclusion":"坝体完好"}"#),
            "{json}"
        );
        assert!(same(&e, &back));
    }

    #[test]
    fn units_of_different_versions_keep_the_full_form() {
        let e = entry(&[("a", version(3, 100, "1")), ("b", version(4, 100, "2"))]);
        let (json, back) = round_trip(&e);
        assert!(json.contains(r#""units":"#), "{json}");
        assert!(same(&e, &back));
        let e = entry(&[("a", version(3, 100, "1")), ("b", version(3, 101, "2"))]);
        assert!(same(&e, &round_trip(&e).1));
    }

    #[test]
    fn entries_stored_before_still_read_and_a_torn_one_is_an_error() {
        let e = entry(&[("a", version(3, 100, "1"))]);
        let old = serde_json::json!({"meta": e.meta, "units": e.units}).to_string();
        let back: HistoryEntry = serde_json::from_str(&old).unwrap();
        assert!(same(&e, &back));
        assert!(serde_json::from_str::<HistoryEntry>(r#"{"meta":null,"values":{"a":1}}"#).is_err());
        let empty: HistoryEntry = serde_json::from_str(r#"{"meta":null,"units":{}}"#).unwrap();
        assert!(empty.units.is_empty());
    }

    #[test]
    fn units_kept_with_the_record_are_named_not_written() {
        let mut e = entry(&[
            ("conclusion", version(3, 100, r#""坝体完好""#)),
            ("fix", version(3, 100, r#"{"lat":24.98}"#)),
        ]);
        e.in_record.insert("fix".into());
        let (json, back) = round_trip(&e);
        assert!(!json.contains("24.98"), "{json}");
        assert!(json.contains(r#""keys":["fix"]"#), "{json}");
        assert_eq!(back.in_record, e.in_record);
        assert_eq!(back.units["fix"].id, e.units["fix"].id);
        assert!(back.units["fix"].value.is_null());
        assert_eq!(back.units["conclusion"], e.units["conclusion"]);
    }
}
