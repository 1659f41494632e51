//! The server's own replicas: the schedule's, the office's (review decisions
//! and hazard steps made through the API) and the sites'. Each writes records
//! as changes through the same engine and scope check as a tablet's push,
//! authored by the user who asked, so they are durable when answered, show in
//! history and reach tablets by pull.
//!
//! Each has its id under its own key in the `server` tree. A restore forgets
//! them all (`storage::backup`): the seqs spent after the backup named changes
//! tablets may send back, and a version id must never name two changes.

use std::sync::{Mutex, MutexGuard};

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use sync_protocol::change::{Change, Op};
use sync_protocol::{Actor, Hlc, ReplicaId};

use crate::auth::Authenticated;
use crate::storage::{StorageError, SyncStorage};

/// The tree the ids are kept in.
pub const TREE: &str = "server";
pub const SCHEDULE: &[u8] = b"schedule_replica";
pub const OFFICE: &[u8] = b"office_replica";
pub const SITES: &[u8] = b"sites_replica";
/// Every server replica's key: what a restore forgets.
pub const ALL: [&[u8]; 3] = [SCHEDULE, OFFICE, SITES];

/// One of the server's replicas, and its lock: its change seqs must be
/// contiguous, so one commit at a time.
#[derive(Debug)]
pub struct ServerReplica {
    id: ReplicaId,
    lock: Mutex<()>,
}

impl ServerReplica {
    /// The replica under `key`, made (and flushed) on first use.
    pub fn open(db: &sled::Db, key: &'static [u8]) -> Result<Self, StorageError> {
        let tree = db.open_tree(TREE)?;
        let id = match tree.get(key)? {
            Some(bytes) => uuid::Uuid::from_slice(&bytes).map(ReplicaId).map_err(|_| {
                StorageError::NotDurable(format!("the {} id is unreadable", String::from_utf8_lossy(key)))
            })?,
            None => {
                let r = ReplicaId::generate();
                tree.insert(key, r.0.as_bytes().as_slice())?;
                tree.flush()?;
                r
            }
        };
        Ok(Self {
            id,
            lock: Mutex::new(()),
        })
    }

    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// Held across numbering and pushing a commit.
    pub fn hold(&self) -> Result<MutexGuard<'_, ()>, StorageError> {
        self.lock.lock().map_err(|_| StorageError::WriterGone)
    }

    /// This replica speaking for `who`.
    pub fn actor(&self, who: &Authenticated) -> Actor {
        Actor {
            replica: self.id,
            user: who.user.id,
            device: who.device,
            role: who.user.role,
        }
    }

    /// `ops` as changes numbered after the replica's last stored seq, in
    /// pushes of at most `chunk`. Call with [`hold`](Self::hold) held until
    /// the last push is answered.
    pub fn changes(
        &self,
        storage: &dyn SyncStorage,
        ops: Vec<(RecordKind, RecordId, Op)>,
        now_ms: u64,
        chunk: usize,
    ) -> Result<Vec<Vec<Change>>, StorageError> {
        let first = storage.last_seq(self.id)? + 1;
        let mut pushes: Vec<Vec<Change>> = Vec::new();
        for ((seq, counter), (kind, record, op)) in (first..).zip(1u32..).zip(ops) {
            let change = Change {
                seq,
                hlc: Hlc::new(now_ms, counter),
                kind,
                record,
                op,
            };
            match pushes.last_mut() {
                Some(last) if last.len() < chunk.max(1) => last.push(change),
                _ => pushes.push(vec![change]),
            }
        }
        Ok(pushes)
    }
}
