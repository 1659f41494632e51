//! Where the server keeps records, in sync terms. Handlers speak only this trait,
//! so another backend can come later without touching them: the sled store is the
//! product; the protocol's in-memory reference server is the second implementation
//! (story tests run against both).

pub mod backup;
pub mod keys;
pub mod memory;
pub mod sled_store;

use mobile_schema::ids::RecordId;
use sync_protocol::engine::StoredOutcome;
use sync_protocol::scope::Scope;
use sync_protocol::wire::PushResponse;
use sync_protocol::{Actor, Change, RecordState, ReplicaId};

pub use memory::MemoryStorage;
pub use sled_store::SledStorage;

/// Why the store could not do what was asked. Every variant is the server's
/// problem, not the client's: the handler answers 5xx.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("the store failed: {0}")]
    Sled(#[from] sled::Error),
    /// Written but not flushed: the push must not be acknowledged.
    #[error("the store could not make the change durable: {0}")]
    NotDurable(String),
    #[error("a stored value does not decode ({what}): {source}")]
    Corrupt {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("the store's writer has stopped")]
    WriterGone,
}

impl StorageError {
    /// A full disk or a failed fsync: the client should retry later.
    pub fn is_not_durable(&self) -> bool {
        matches!(
            self,
            StorageError::NotDurable(_) | StorageError::Sled(sled::Error::Io(_))
        )
    }
}

/// One page of `records_since`: each record's current state as JSON, in commit
/// order, so a pull answer is assembled without decoding and re-encoding.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Vec<u8>>,
    /// The commit seq of the last record in the page (or `since` when empty).
    pub next: u64,
    pub more: bool,
}

/// The sync store.
pub trait SyncStorage: Send + Sync + std::fmt::Debug {
    /// Apply a batch of changes from one replica; returns after the outcomes are
    /// durable (this is what makes an acknowledgement true).
    /// `scope` limits what the user may change (`None`: anything).
    fn apply_push(
        &self,
        actor: &Actor,
        scope: Option<&Scope>,
        changes: Vec<Change>,
        now_ms: u64,
    ) -> Result<PushResponse, StorageError>;

    /// Records whose last commit is after `since`, at most `limit` of them and about
    /// `max_bytes` (always at least one record, so a page makes progress).
    fn records_since(&self, since: u64, limit: usize, max_bytes: usize) -> Result<Page, StorageError>;

    /// The highest commit seq a pull can see.
    fn visible_seq(&self) -> u64;

    fn outcome_of(&self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, StorageError>;

    /// The highest change seq of `replica` the store has an outcome for (0: none).
    fn last_seq(&self, replica: ReplicaId) -> Result<u64, StorageError>;

    fn record(&self, id: RecordId) -> Result<Option<RecordState>, StorageError>;

    /// New commit sequences for these records, content unchanged, durable on
    /// return: pulls past their old place see them again. Returns how many exist.
    fn resurface(&self, ids: &[RecordId]) -> Result<usize, StorageError>;

    /// Replace a record's evidence flags (the photo checks); re-sequenced, and
    /// durable on return, when they changed. Returns whether they did.
    fn annotate(&self, id: RecordId, evidence: Vec<sync_protocol::Flag>) -> Result<bool, StorageError>;

    /// Names this store's history: a restore from a backup starts a new epoch.
    fn epoch(&self) -> String;

    /// Stop taking pushes; return once every accepted one is answered.
    fn close(&self) {}

    /// Copy the store into the empty folder `dir` while it keeps serving reads;
    /// record writes wait until the copy is made.
    fn backup(&self, _dir: &std::path::Path, _now_ms: u64) -> Result<backup::BackupInfo, backup::BackupError> {
        Err(backup::BackupError::Unsupported)
    }

    /// Where this store was restored from, if it was.
    fn restored_from(&self) -> Option<backup::RestoreInfo> {
        None
    }

    /// Re-establish what tablets hold from the previous epoch (see
    /// `sync_protocol::recovery`); one answer per state, durable on return.
    fn recover(
        &self,
        _scope: Option<&Scope>,
        states: Vec<RecordState>,
        _base: sync_protocol::recovery::RestoreBase,
    ) -> Result<Vec<sync_protocol::recovery::Recovered>, StorageError> {
        Ok(states
            .iter()
            .map(|_| sync_protocol::recovery::Recovered::Known)
            .collect())
    }
}
