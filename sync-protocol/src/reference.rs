//! The reference server: the protocol's rules over in-memory maps. Property tests
//! use it, the replica's tests sync against it, and the real server is checked
//! against it.

use std::collections::BTreeMap;
use std::convert::Infallible;

use mobile_schema::ids::RecordId;

use crate::change::{Actor, Change};
use crate::engine::{Engine, EngineConfig, Store, StoredOutcome};
use crate::history::{ChangeEvent, HistoryItem, Written};
use crate::ids::{ReplicaId, VersionId};
use crate::outcome::ChangeOutcome;
use crate::state::{RecordState, VersionMeta};
use crate::unit::LiveVersion;
use crate::wire::{PullResponse, PushResponse};

/// The maps the rules run over.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    pub records: BTreeMap<RecordId, RecordState>,
    /// commit seq → record, the pull order.
    pub by_seq: BTreeMap<u64, RecordId>,
    pub outcomes: BTreeMap<(ReplicaId, u64), StoredOutcome>,
    pub last_seq: BTreeMap<ReplicaId, u64>,
    pub history: BTreeMap<(RecordId, String, VersionId), (LiveVersion, VersionMeta)>,
    /// Every answered change by record, for people (see [`crate::history`]).
    pub events: BTreeMap<(RecordId, VersionId), ChangeEvent>,
    pub commit_seq: u64,
    pub recovery_marks: BTreeMap<RecordId, crate::engine::RecoveryMark>,
    /// The backup's commit seq, when this store stands for a restored one.
    pub restored_from: Option<u64>,
}

impl Store for MemoryStore {
    type Error = Infallible;

    fn record(&mut self, id: RecordId) -> Result<Option<RecordState>, Infallible> {
        Ok(self.records.get(&id).cloned())
    }

    fn put_record(&mut self, state: RecordState) -> Result<(), Infallible> {
        if let Some(old) = self.records.get(&state.id) {
            self.by_seq.remove(&old.commit_seq);
        }
        self.by_seq.insert(state.commit_seq, state.id);
        self.records.insert(state.id, state);
        Ok(())
    }

    fn remember(
        &mut self,
        record: RecordId,
        key: &str,
        version: &LiveVersion,
        meta: &VersionMeta,
    ) -> Result<(), Infallible> {
        self.history
            .insert((record, key.to_string(), version.id), (version.clone(), *meta));
        Ok(())
    }

    fn recall(
        &mut self,
        record: RecordId,
        key: &str,
        id: VersionId,
    ) -> Result<Option<(LiveVersion, VersionMeta)>, Infallible> {
        Ok(self.history.get(&(record, key.to_string(), id)).cloned())
    }

    fn outcome(&mut self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, Infallible> {
        Ok(self.outcomes.get(&(replica, seq)).cloned())
    }

    fn put_outcome(&mut self, replica: ReplicaId, seq: u64, outcome: StoredOutcome) -> Result<(), Infallible> {
        self.outcomes.insert((replica, seq), outcome);
        let last = self.last_seq.entry(replica).or_default();
        *last = (*last).max(seq);
        Ok(())
    }

    fn put_event(&mut self, record: RecordId, version: VersionId, event: ChangeEvent) -> Result<(), Infallible> {
        self.events.insert((record, version), event);
        Ok(())
    }

    fn last_seq(&mut self, replica: ReplicaId) -> Result<u64, Infallible> {
        Ok(self.last_seq.get(&replica).copied().unwrap_or(0))
    }

    fn next_commit_seq(&mut self) -> Result<u64, Infallible> {
        self.commit_seq += 1;
        Ok(self.commit_seq)
    }

    fn recovery_mark(&mut self, id: RecordId) -> Result<Option<crate::engine::RecoveryMark>, Infallible> {
        Ok(self.recovery_marks.get(&id).copied())
    }

    fn put_recovery_mark(&mut self, id: RecordId, mark: crate::engine::RecoveryMark) -> Result<(), Infallible> {
        self.recovery_marks.insert(id, mark);
        Ok(())
    }

    fn restored_from(&mut self) -> Result<Option<u64>, Infallible> {
        Ok(self.restored_from)
    }
}

/// An in-memory sync server.
#[derive(Debug, Clone, Default)]
pub struct ReferenceServer {
    pub store: MemoryStore,
    pub engine: Engine,
    pub epoch: String,
}

impl ReferenceServer {
    pub fn new(config: EngineConfig) -> Self {
        Self {
            store: MemoryStore::default(),
            engine: Engine::new(config),
            epoch: "reference".into(),
        }
    }

    pub fn push(&mut self, actor: &Actor, changes: &[Change], now_ms: u64) -> PushResponse {
        self.push_scoped(actor, None, changes, now_ms)
    }

    /// A push by a user limited to `scope`.
    pub fn push_scoped(
        &mut self,
        actor: &Actor,
        scope: Option<&crate::scope::Scope>,
        changes: &[Change],
        now_ms: u64,
    ) -> PushResponse {
        let outcomes: Vec<ChangeOutcome> = match self.engine.push_scoped(&mut self.store, actor, scope, changes, now_ms)
        {
            Ok(o) => o,
            Err(never) => match never {},
        };
        PushResponse {
            outcomes,
            expected_seq: self.store.last_seq.get(&actor.replica).copied().unwrap_or(0) + 1,
            server_time_ms: now_ms,
            epoch: self.epoch.clone(),
        }
    }

    /// See [`Engine::resurface`].
    pub fn resurface(&mut self, ids: &[RecordId]) -> Vec<RecordId> {
        match self.engine.resurface(&mut self.store, ids) {
            Ok(found) => found,
            Err(never) => match never {},
        }
    }

    /// See [`Engine::annotate`].
    pub fn annotate(&mut self, id: RecordId, evidence: &[crate::outcome::Flag]) -> bool {
        match self.engine.annotate(&mut self.store, id, evidence) {
            Ok(changed) => changed,
            Err(never) => match never {},
        }
    }

    /// Records changed after `since` (a commit seq as text; `0` is the start).
    pub fn pull(&self, since: &str, limit: usize, now_ms: u64) -> PullResponse {
        let from: u64 = since.parse().unwrap_or(0);
        let mut records = Vec::new();
        let mut next = from;
        let mut iter = self.store.by_seq.range(from + 1..);
        for (seq, id) in iter.by_ref().take(limit.max(1)) {
            if let Some(r) = self.store.records.get(id) {
                records.push(r.clone());
            }
            next = *seq;
        }
        PullResponse {
            records,
            next: next.to_string(),
            more: iter.next().is_some(),
            server_time_ms: now_ms,
            epoch: self.epoch.clone(),
            purge: Vec::new(),
        }
    }

    pub fn record(&self, id: RecordId) -> Option<&RecordState> {
        self.store.records.get(&id)
    }

    /// Every change answered for the record, in history order.
    /// A record's history, and whether some refusals were left out
    /// ([`crate::history::RefusalLimit`], counted in version order as a store reads them).
    pub fn history(&self, id: RecordId) -> (Vec<HistoryItem>, bool) {
        let mut limit = crate::history::RefusalLimit::default();
        let events: Vec<_> = self
            .store
            .events
            .range((id, VersionId::MIN)..=(id, VersionId::MAX))
            .filter(|((_, v), e)| limit.admit(*v, &e.outcome))
            .map(|((_, v), e)| (*v, e.clone()))
            .collect();
        let mut written: BTreeMap<VersionId, Written> = BTreeMap::new();
        for ((_, key, v), (version, meta)) in self
            .store
            .history
            .range((id, String::new(), VersionId::MIN)..)
            .take_while(|((r, _, _), _)| *r == id)
        {
            let w = written.entry(*v).or_default();
            w.meta = Some(*meta);
            w.units.insert(key.clone(), version.hlc);
        }
        let outcomes = &self.store.outcomes;
        let items = match crate::history::assemble::<Infallible>(events, written, |v| {
            Ok(outcomes.get(&(v.replica, v.seq)).map(|o| o.outcome.clone()))
        }) {
            Ok(items) => items,
            Err(never) => match never {},
        };
        (items, limit.cut)
    }
}
