//! Typed identifiers. Every record and actor id is a newtype over a UUID so that
//! a `SiteId` can never be passed where an `InspectionId` is expected.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! uuid_id {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
        )]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh id. UUIDv7, so ids sort roughly by creation time.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            /// A stable id derived from a name (UUIDv5), for imports that must
            /// give the same row the same id every time.
            pub fn from_name(namespace: &str, name: &str) -> Self {
                let ns = Uuid::new_v5(&Uuid::NAMESPACE_OID, namespace.as_bytes());
                Self(Uuid::new_v5(&ns, name.as_bytes()))
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }

        impl From<Uuid> for $name {
            fn from(u: Uuid) -> Self {
                Self(u)
            }
        }
    };
}

uuid_id!(
    /// Any record's id, when the kind is carried separately.
    RecordId
);
uuid_id!(
    /// A site: tailings pond, key supervision unit or remediation site.
    SiteId
);
uuid_id!(
    /// An inspection (现场检查记录).
    InspectionId
);
uuid_id!(
    /// A hazard (隐患), a finding of an inspection.
    HazardId
);
uuid_id!(
    /// A supervisor's review decision.
    ReviewId
);
uuid_id!(
    /// A correction appended to a signed inspection.
    AddendumId
);
uuid_id!(
    /// A scheduled inspection task.
    TaskId
);
uuid_id!(
    /// A recorded random draw (双随机).
    DrawId
);
uuid_id!(
    /// A person with an account.
    UserId
);
uuid_id!(
    /// A tablet or other client device.
    DeviceId
);
uuid_id!(
    /// An item of an observed-remove collection (evidence, comments, level history).
    ItemId
);

macro_rules! record_id_conversions {
    ($($name:ident),*) => {
        $(
            impl From<$name> for RecordId {
                fn from(id: $name) -> Self {
                    RecordId(id.0)
                }
            }
            impl From<RecordId> for $name {
                fn from(id: RecordId) -> Self {
                    $name(id.0)
                }
            }
        )*
    };
}
record_id_conversions!(SiteId, InspectionId, HazardId, ReviewId, AddendumId, TaskId, DrawId);

/// A SHA-256 digest, lower-case hex on the wire. Photos and files are addressed by it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct Sha256Hex(String);

impl Sha256Hex {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn of_bytes(bytes: &[u8]) -> Self {
        use sha2::Digest;
        Self(hex::encode(sha2::Sha256::digest(bytes)))
    }
}

/// The text was not 64 lower-case hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a SHA-256 in lower-case hex: {0:?}")]
pub struct BadSha256(pub String);

impl TryFrom<String> for Sha256Hex {
    type Error = BadSha256;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s))
        } else {
            Err(BadSha256(s))
        }
    }
}

impl From<Sha256Hex> for String {
    fn from(h: Sha256Hex) -> Self {
        h.0
    }
}

impl fmt::Display for Sha256Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_json_as_plain_strings() {
        let id = SiteId::generate();
        let json = serde_json::to_string(&id).unwrap_or_default();
        assert_eq!(json, format!("\"{id}\""));
        let back: SiteId = serde_json::from_str(&json).unwrap_or_else(|_| SiteId::generate());
        assert_eq!(back, id);
    }

    #[test]
    fn name_derived_ids_are_stable() {
        assert_eq!(SiteId::from_name("pond", "A"), SiteId::from_name("pond", "A"));
        assert_ne!(SiteId::from_name("pond", "A"), SiteId::from_name("pond", "B"));
    }

    #[test]
    fn sha256_accepts_only_lower_hex_of_64() {
        assert!(Sha256Hex::try_from("a".repeat(64)).is_ok());
        assert!(Sha256Hex::try_from("A".repeat(64)).is_err());
        assert!(Sha256Hex::try_from("a".repeat(63)).is_err());
        assert_eq!(Sha256Hex::of_bytes(b"").as_str().len(), 64);
    }
}
