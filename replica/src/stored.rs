//! How a [`Change`] is stored. `Op` is internally tagged on the wire, and serde
//! buffers an internally tagged enum before decoding it, which a raw JSON unit
//! value cannot survive; so the store keeps the op externally tagged, which
//! decodes in one pass and keeps each value's text byte for byte (the server
//! tells a retry from a fork by the digest of that text).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sync_protocol::{Change, Hlc, Op, UnitValue, UnitWrite, VersionSet};

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;

#[derive(Serialize, Deserialize)]
struct StoredChange {
    seq: u64,
    hlc: Hlc,
    kind: RecordKind,
    record: RecordId,
    op: StoredOp,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StoredOp {
    Create {
        record: UnitValue,
        #[serde(default)]
        versions: Option<VersionSet>,
    },
    Edit {
        units: Vec<UnitWrite>,
    },
    Transition {
        action: String,
        #[serde(default)]
        versions: Option<VersionSet>,
    },
}

fn to_stored(c: &Change) -> StoredChange {
    StoredChange {
        seq: c.seq,
        hlc: c.hlc,
        kind: c.kind,
        record: c.record,
        op: match &c.op {
            Op::Create { record, versions } => StoredOp::Create {
                record: record.clone(),
                versions: versions.clone(),
            },
            Op::Edit { units } => StoredOp::Edit { units: units.clone() },
            Op::Transition { action, versions } => StoredOp::Transition {
                action: action.clone(),
                versions: versions.clone(),
            },
        },
    }
}

fn from_stored(s: StoredChange) -> Change {
    Change {
        seq: s.seq,
        hlc: s.hlc,
        kind: s.kind,
        record: s.record,
        op: match s.op {
            StoredOp::Create { record, versions } => Op::Create { record, versions },
            StoredOp::Edit { units } => Op::Edit { units },
            StoredOp::Transition { action, versions } => Op::Transition { action, versions },
        },
    }
}

/// For `#[serde(with = "crate::stored")]` on a `Change` field.
pub fn serialize<S: Serializer>(c: &Change, s: S) -> Result<S::Ok, S::Error> {
    to_stored(c).serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Change, D::Error> {
    StoredChange::deserialize(d).map(from_stored)
}

/// A change as an outbox value.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Stored(#[serde(with = "self")] pub Change);

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::ids::{ReplicaId, VersionId};

    #[test]
    fn a_stored_change_round_trips_with_its_value_text() {
        let v = VersionId::new(ReplicaId::generate(), 3);
        for op in [
            Op::Create {
                record: UnitValue::parse(r#"{"b":1.50,"a":"x"}"#.into()).unwrap(),
                versions: None,
            },
            Op::Edit {
                units: vec![UnitWrite {
                    key: "conclusion".into(),
                    bases: vec![v],
                    value: UnitValue::parse(r#""好""#.into()).unwrap(),
                }],
            },
            Op::Transition {
                action: "sign".into(),
                versions: Some([("fix".to_string(), vec![v])].into_iter().collect()),
            },
        ] {
            let c = Change {
                seq: 7,
                hlc: Hlc::new(5, 1),
                kind: RecordKind::Inspection,
                record: RecordId::generate(),
                op,
            };
            let bytes = serde_json::to_vec(&Stored(c.clone())).unwrap();
            let back: Stored = serde_json::from_slice(&bytes).unwrap();
            assert_eq!(back.0, c);
            assert_eq!(back.0.digest(), c.digest());
        }
    }
}

/// A schema-1 outbox value: the same without `kind`.
#[derive(Deserialize)]
struct StoredChangeV1 {
    seq: u64,
    hlc: Hlc,
    record: RecordId,
    op: StoredOp,
}

/// Decode a schema-1 change, taking the kind from `kind_of(record)`.
pub(crate) fn from_v1<E>(
    bytes: &[u8],
    kind_of: impl FnOnce(RecordId) -> Result<RecordKind, E>,
) -> Result<Result<Change, E>, serde_json::Error> {
    let v1: StoredChangeV1 = serde_json::from_slice(bytes)?;
    Ok(kind_of(v1.record).map(|kind| {
        from_stored(StoredChange {
            seq: v1.seq,
            hlc: v1.hlc,
            kind,
            record: v1.record,
            op: v1.op,
        })
    }))
}

/// Encode a change as schema 1 did (for the fixture generator).
pub fn to_v1_json(c: &Change) -> Result<Vec<u8>, serde_json::Error> {
    let s = to_stored(c);
    #[derive(Serialize)]
    struct V1<'a> {
        seq: u64,
        hlc: Hlc,
        record: RecordId,
        op: &'a StoredOp,
    }
    serde_json::to_vec(&V1 {
        seq: s.seq,
        hlc: s.hlc,
        record: s.record,
        op: &s.op,
    })
}
