//! Replica and version identities.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A replica store's identity, created with the store. A reinstall, a restore
/// from backup or a detected fork gets a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReplicaId(pub Uuid);

impl ReplicaId {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }
}

impl fmt::Display for ReplicaId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A change's identity, and so the identity of every unit version it wrote:
/// `(replica_id, seq)`. On the wire: `"<replica uuid>:<seq>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VersionId {
    pub replica: ReplicaId,
    pub seq: u64,
}

impl VersionId {
    /// The least and greatest ids, for ranges over everything of a record.
    pub const MIN: VersionId = VersionId {
        replica: ReplicaId(Uuid::nil()),
        seq: 0,
    };
    pub const MAX: VersionId = VersionId {
        replica: ReplicaId(Uuid::from_u128(u128::MAX)),
        seq: u64::MAX,
    };

    pub fn new(replica: ReplicaId, seq: u64) -> Self {
        Self { replica, seq }
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.replica, self.seq)
    }
}

/// The text was not `<uuid>:<seq>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a version id (`<replica uuid>:<seq>`): {0:?}")]
pub struct BadVersionId(pub String);

impl FromStr for VersionId {
    type Err = BadVersionId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadVersionId(s.chars().take(80).collect());
        let (r, n) = s.split_once(':').ok_or_else(bad)?;
        Ok(Self {
            replica: ReplicaId(Uuid::parse_str(r).map_err(|_| bad())?),
            seq: n.parse().map_err(|_| bad())?,
        })
    }
}

impl Serialize for VersionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.collect_str(self)
        } else {
            (self.replica.0.as_u128(), self.seq).serialize(s)
        }
    }
}

impl<'de> Deserialize<'de> for VersionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        if d.is_human_readable() {
            let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            s.parse().map_err(serde::de::Error::custom)
        } else {
            let (r, seq) = <(u128, u64)>::deserialize(d)?;
            Ok(Self {
                replica: ReplicaId(Uuid::from_u128(r)),
                seq,
            })
        }
    }
}
