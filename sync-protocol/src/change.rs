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

/// What the change does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
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
