//! Changes: what a replica sends. A change is numbered `(replica_id, seq)` with a
//! contiguous `seq` assigned in the same transaction as the edit, and that pair is
//! also the id of every unit version it writes.

use std::collections::BTreeMap;

use mobile_schema::ids::{DeviceId, RecordId, UserId};
use mobile_schema::record::RecordKind;
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};

use crate::hlc::Hlc;
use crate::ids::{ReplicaId, VersionId};
use crate::value::UnitValue;

/// For each unit key, the version ids a decision covers (a signature's lock, a
/// review's reviewed content).
pub type VersionSet = BTreeMap<String, Vec<VersionId>>;

/// One change to one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    /// The author's clock when the change was made.
    pub hlc: Hlc,
    pub kind: RecordKind,
    pub record: RecordId,
    pub op: Op,
}

/// What the change does. Externally tagged (`{"create": {...}}`): an internally
/// tagged enum is buffered before decoding, and raw JSON values cannot be.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// A new record, whole: the server splits it into units. `versions` is the
    /// content a review decision covers (reviews only).
    Create {
        record: UnitValue,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        versions: Option<VersionSet>,
    },
    /// New versions of some units of an existing record.
    Edit { units: Vec<UnitWrite> },
    /// A workflow step, decided by the server in arrival order. `versions` is the
    /// content a `sign` locks.
    Transition {
        action: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        versions: Option<VersionSet>,
    },
}

/// A new version of one unit, replacing the versions named in `bases`. A write
/// whose bases name every live version resolves a conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitWrite {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bases: Vec<VersionId>,
    pub value: UnitValue,
}

/// Who a change speaks for. The server takes it from the token, never the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    pub replica: ReplicaId,
    pub user: UserId,
    pub device: DeviceId,
    pub role: Role,
}

impl Change {
    pub fn id(&self, replica: ReplicaId) -> VersionId {
        VersionId::new(replica, self.seq)
    }

    /// A digest of the change's content, to tell a retry from a fork.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest;
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        sha2::Sha256::digest(&bytes).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobile_schema::ids::{DeviceId, InspectionId, SiteId};

    #[test]
    fn changes_round_trip_through_json_with_the_same_digest() {
        let id = InspectionId::generate();
        let doc = mobile_schema::sample::inspection(id, SiteId::generate(), DeviceId::generate());
        let ops = vec![
            Op::Create {
                record: UnitValue::of(&doc).unwrap(),
                versions: None,
            },
            Op::Edit {
                units: vec![UnitWrite {
                    key: "conclusion".into(),
                    bases: vec![VersionId::new(ReplicaId::generate(), 3)],
                    value: UnitValue::of(&"已整改").unwrap(),
                }],
            },
            Op::Transition {
                action: "sign".into(),
                versions: Some(VersionSet::new()),
            },
        ];
        for (i, op) in ops.into_iter().enumerate() {
            let change = Change {
                seq: i as u64 + 1,
                hlc: Hlc::new(1, 2),
                kind: RecordKind::Inspection,
                record: id.into(),
                op,
            };
            let text = serde_json::to_string(&change).unwrap();
            let back: Change = serde_json::from_str(&text).unwrap();
            assert_eq!(back, change);
            assert_eq!(back.digest(), change.digest());
        }
    }
}
