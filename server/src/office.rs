//! Changes a supervisor makes from the office, through the API rather than a
//! tablet: review decisions and hazard steps. They are committed as changes of
//! the server's own office replica, authored by the deciding user, through the
//! same engine and scope check as a tablet's push, so they are durable when
//! answered, show in history under that user, and reach tablets by pull like
//! any record.

use mobile_schema::ids::RecordId;
use mobile_schema::record::{AnyRecord, RecordKind};
use sync_protocol::change::Op;
use sync_protocol::outcome::ChangeOutcome;
use sync_protocol::value::UnitValue;

use crate::auth::Authenticated;
use crate::server_replica::{self, ServerReplica};
use crate::storage::{StorageError, SyncStorage};

#[derive(Debug, thiserror::Error)]
pub enum OfficeError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("a record does not encode: {0}")]
    Encode(String),
}

/// The server's office replica.
#[derive(Debug)]
pub struct OfficeReplica(ServerReplica);

impl OfficeReplica {
    pub fn open(db: &sled::Db) -> Result<Self, OfficeError> {
        Ok(Self(ServerReplica::open(db, server_replica::OFFICE)?))
    }

    /// Apply `ops` in order as one push by `who`; the outcomes, durable on return.
    pub fn commit(
        &self,
        storage: &dyn SyncStorage,
        who: &Authenticated,
        ops: Vec<(RecordKind, RecordId, Op)>,
        now_ms: u64,
    ) -> Result<Vec<ChangeOutcome>, OfficeError> {
        let _one_at_a_time = self.0.hold()?;
        let actor = self.0.actor(who);
        let scope = crate::access::scope_of(&who.user);
        let mut outcomes = Vec::with_capacity(ops.len());
        for changes in self.0.changes(storage, ops, now_ms, usize::MAX)? {
            outcomes.extend(storage.apply_push(&actor, Some(&scope), changes, now_ms)?.outcomes);
        }
        Ok(outcomes)
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
