//! The protocol's reference server behind the storage trait: the executable
//! model the sled store is checked against. Nothing here is durable.

use std::sync::Mutex;

use mobile_schema::ids::RecordId;
use sync_protocol::engine::{EngineConfig, StoredOutcome};
use sync_protocol::reference::ReferenceServer;
use sync_protocol::scope::Scope;
use sync_protocol::wire::PushResponse;
use sync_protocol::{Actor, Change, RecordState, ReplicaId};

use super::{Page, RecordHistory, StorageError, SyncStorage};

#[derive(Debug)]
pub struct MemoryStorage {
    server: Mutex<ReferenceServer>,
}

impl MemoryStorage {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            server: Mutex::new(ReferenceServer::new(config)),
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, ReferenceServer>, StorageError> {
        self.server.lock().map_err(|_| StorageError::WriterGone)
    }
}

impl SyncStorage for MemoryStorage {
    fn apply_push(
        &self,
        actor: &Actor,
        scope: Option<&Scope>,
        changes: Vec<Change>,
        now_ms: u64,
    ) -> Result<PushResponse, StorageError> {
        Ok(self.lock()?.push_scoped(actor, scope, &changes, now_ms))
    }

    fn records_since(&self, since: u64, limit: usize, max_bytes: usize) -> Result<Page, StorageError> {
        let server = self.lock()?;
        let mut page = Page {
            records: Vec::new(),
            next: since,
            more: false,
            // The whole scan holds the lock.
            settled: true,
        };
        let mut bytes = 0;
        for (seq, id) in server.store.by_seq.range(since.saturating_add(1)..) {
            if page.records.len() >= limit.max(1) || (bytes >= max_bytes && !page.records.is_empty()) {
                page.more = true;
                break;
            }
            if let Some(r) = server.store.records.get(id) {
                let json = serde_json::to_vec(r).map_err(|source| StorageError::Corrupt { what: "record", source })?;
                bytes += json.len();
                page.records.push(json);
            }
            page.next = *seq;
        }
        Ok(page)
    }

    fn visible_seq(&self) -> u64 {
        self.lock().map(|s| s.store.commit_seq).unwrap_or(0)
    }

    fn outcome_of(&self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, StorageError> {
        Ok(self.lock()?.store.outcomes.get(&(replica, seq)).cloned())
    }

    fn last_seq(&self, replica: ReplicaId) -> Result<u64, StorageError> {
        Ok(self.lock()?.store.last_seq.get(&replica).copied().unwrap_or(0))
    }

    fn record(&self, id: RecordId) -> Result<Option<RecordState>, StorageError> {
        Ok(self.lock()?.record(id).cloned())
    }

    fn resurface(&self, ids: &[RecordId]) -> Result<usize, StorageError> {
        Ok(self.lock()?.resurface(ids).len())
    }

    fn annotate(&self, id: RecordId, evidence: Vec<sync_protocol::Flag>) -> Result<bool, StorageError> {
        Ok(self.lock()?.annotate(id, &evidence))
    }

    fn record_history(&self, id: RecordId, max: usize) -> Result<RecordHistory, StorageError> {
        let (mut items, cut) = self.lock()?.history(id);
        let truncated = items.len() > max || cut;
        items.truncate(max);
        Ok(RecordHistory { items, truncated })
    }

    fn epoch(&self) -> String {
        self.lock().map(|s| s.epoch.clone()).unwrap_or_default()
    }
}
