//! Changes a supervisor makes from the office, through the API rather than a
//! tablet: review decisions and hazard steps. They are committed as changes of
//! the server's own office replica, authored by the deciding user, through the
//! same engine and scope check as a tablet's push, so they are durable when
//! answered, show in history under that user, and reach tablets by pull like
//! any record.

use std::sync::Mutex;

use mobile_schema::ids::RecordId;
use mobile_schema::record::{AnyRecord, RecordKind};
use sync_protocol::change::{Change, Op};
use sync_protocol::outcome::ChangeOutcome;
use sync_protocol::value::UnitValue;
use sync_protocol::{Actor, Hlc, ReplicaId};

use crate::auth::Authenticated;
use crate::storage::{StorageError, SyncStorage};

/// Where the office replica's id is kept (the tree the schedule's is in).
const SERVER_TREE: &str = "server";
const OFFICE_REPLICA_KEY: &[u8] = b"office_replica";

#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the office replica id is unreadable")]
    BadReplica,
    #[error("a record does not encode: {0}")]
    Encode(String),
}

/// The server's office replica: its id, and one commit at a time (its change
/// seqs must be contiguous).
#[derive(Debug)]
pub struct OfficeReplica {
    replica: ReplicaId,
    lock: Mutex<()>,
}

impl OfficeReplica {
    pub fn open(db: &sled::Db) -> Result<Self, OfficeError> {
        let tree = db.open_tree(SERVER_TREE).map_err(StorageError::from)?;
        let replica = match tree.get(OFFICE_REPLICA_KEY).map_err(StorageError::from)? {
            Some(bytes) => uuid::Uuid::from_slice(&bytes)
                .map(ReplicaId)
                .map_err(|_| OfficeError::BadReplica)?,
            None => {
                let r = ReplicaId::generate();
                tree.insert(OFFICE_REPLICA_KEY, r.0.as_bytes().as_slice())
                    .map_err(StorageError::from)?;
                tree.flush().map_err(StorageError::from)?;
                r
            }
        };
        Ok(Self {
            replica,
            lock: Mutex::new(()),
        })
    }

    /// Apply `ops` in order as one push by `who`; the outcomes, durable on return.
    pub fn commit(
        &self,
        storage: &dyn SyncStorage,
        who: &Authenticated,
        ops: Vec<(RecordKind, RecordId, Op)>,
        now_ms: u64,
    ) -> Result<Vec<ChangeOutcome>, OfficeError> {
        let _one_at_a_time = self.lock.lock().map_err(|_| StorageError::WriterGone)?;
        let actor = Actor {
            replica: self.replica,
            user: who.user.id,
            device: who.device,
            role: who.user.role,
        };
        let scope = crate::access::scope_of(&who.user);
        let mut seq = storage.last_seq(self.replica)?;
        let changes = ops
            .into_iter()
            .zip(1u32..)
            .map(|((kind, record, op), counter)| {
                seq += 1;
                Change {
                    seq,
                    hlc: Hlc::new(now_ms, counter),
                    kind,
                    record,
                    op,
                }
            })
            .collect();
        Ok(storage.apply_push(&actor, Some(&scope), changes, now_ms)?.outcomes)
    }
}

/// Creating `doc`, as a replica writes it: the record without its kind tag.
pub fn create_op(doc: &AnyRecord, versions: Option<sync_protocol::VersionSet>) -> Result<Op, OfficeError> {
    let mut value = serde_json::to_value(doc).map_err(|e| OfficeError::Encode(e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("kind");
    }
    let record = UnitValue::of(&value).map_err(|e| OfficeError::Encode(e.to_string()))?;
    Ok(Op::Create { record, versions })
}
