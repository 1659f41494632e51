//! The store's errors. Expected sync outcomes (refusals, conflicts) are values,
//! not errors; these are what stops a call.

use mobile_schema::ids::RecordId;
use sync_protocol::Refusal;

use crate::check::Issue;
use crate::transport::TransportError;

#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("storage: {0}")]
    Storage(#[from] sled::Error),
    #[error("corrupt entry in tree `{tree}` at key {key}: {reason}")]
    Corrupt {
        tree: &'static str,
        key: String,
        reason: String,
    },
    #[error("encoding a value for tree `{tree}`: {reason}")]
    Encode { tree: &'static str, reason: String },
    #[error("file {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The edit could never apply; it did not reach the outbox.
    #[error("refused ({}){}: {}", .0.code.as_str(), .0.field.as_deref().map(|f| format!(" at `{f}`")).unwrap_or_default(), .0.message)]
    Rejected(Refusal),
    /// The edited record would have validation errors; it did not reach the outbox.
    #[error("the record would be invalid: {}", .errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect::<Vec<_>>().join("; "))]
    Invalid { errors: Vec<Issue> },
    #[error("no record {0}")]
    NotFound(RecordId),
    #[error("a new store needs an identity (user, device, role)")]
    NoIdentity,
    /// Another user's work waits in the store: the server credits a change
    /// to whoever's token pushes it, so it must go under its author's.
    #[error(
        "this store holds {changes} changes and {photos} photos of user {user} not yet synced: log in as that user and sync before another user logs in here"
    )]
    OtherUsersWork {
        user: mobile_schema::ids::UserId,
        changes: usize,
        photos: usize,
    },
    #[error("the store has schema {found}; this build reads up to {supported}")]
    UnsupportedSchema { found: u32, supported: u32 },
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// The server expects a seq this replica no longer holds.
    #[error("the server expects seq {expected} but the oldest change still held is {held:?}")]
    SeqGap { expected: u64, held: Option<u64> },
    #[error("protocol: {0}")]
    Protocol(String),
}

impl ReplicaError {
    pub(crate) fn corrupt(tree: &'static str, key: &[u8], reason: impl Into<String>) -> Self {
        ReplicaError::Corrupt {
            tree,
            key: show_key(key),
            reason: reason.into(),
        }
    }
}

/// Keys as text when they are text, else hex: readable in an error either way.
fn show_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| !c.is_control()) => format!("{s:?}"),
        _ => format!("0x{}", hex::encode(key)),
    }
}

/// Decode a JSON value read from `tree` at `key`.
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, ReplicaError> {
    serde_json::from_slice(bytes).map_err(|e| ReplicaError::corrupt(tree, key, e.to_string()))
}

pub(crate) fn encode<T: serde::Serialize>(tree: &'static str, value: &T) -> Result<Vec<u8>, ReplicaError> {
    serde_json::to_vec(value).map_err(|e| ReplicaError::Encode {
        tree,
        reason: e.to_string(),
    })
}
