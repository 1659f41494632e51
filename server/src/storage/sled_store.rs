//! The sync store over sled, with one writer thread that group-commits.
//!
//! Pushes are queued to the writer. It takes every push waiting, runs the rules
//! of each over an overlay of the tree, writes the whole group in one atomic
//! batch, flushes, and only then answers: one fsync acknowledges many pushes.
//! A single writer also assigns commit sequences in the order they become
//! visible, which is what makes the pull cursor safe.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use mobile_schema::ids::RecordId;
use serde::Serialize;
use sync_protocol::engine::{Engine, EngineConfig, RecoveryMark, Store, StoredOutcome};
use sync_protocol::history::{ChangeEvent, Written};
use sync_protocol::scope::Scope;
use sync_protocol::state::VersionMeta;
use sync_protocol::unit::LiveVersion;
use sync_protocol::wire::PushResponse;
use sync_protocol::{Actor, Change, Hlc, Prepared, RecordState, ReplicaId, VersionId};

use super::backup::{self, BackupError, BackupInfo, RestoreInfo};
use super::commit_view::CommitView;
use super::{Page, RecordHistory, StorageError, SyncStorage, keys};

use sync_protocol::recovery::{Recovered, RestoreBase};

/// Pushes committed together at most; bounds the latency one fsync adds.
const MAX_GROUP: usize = 64;

/// Decoded records the writer keeps between groups. A push reads the record it
/// changes and the site of every inspection and hazard; decoding their stored
/// JSON each time was a sixth of the writer's work. About 10 KB each.
const RECORD_CACHE: NonZeroUsize = match NonZeroUsize::new(1024) {
    Some(n) => n,
    None => NonZeroUsize::MIN,
};

type RecordCache = lru::LruCache<RecordId, RecordState>;

/// Sites as the domain type, for the rules, as the tree holds them; a site
/// this group writes is dropped from it. Bounded by the sites of the store.
type SiteCache = HashMap<RecordId, mobile_schema::site::Site>;

pub use super::history_entry::HistoryEntry;

/// What the writer's queue carries: work for a group, or a backup, which holds
/// every write while it copies.
enum Queued {
    Job(Job),
    Backup(BackupJob),
}

struct BackupJob {
    dir: std::path::PathBuf,
    now_ms: u64,
    reply: mpsc::SyncSender<Result<BackupInfo, BackupError>>,
}

/// Work for the writer: it alone assigns commit sequences.
enum Job {
    /// Versions tablets send back after a restore.
    Recover {
        scope: Option<Scope>,
        states: Vec<RecordState>,
        base: RestoreBase,
        reply: mpsc::SyncSender<Result<Vec<Recovered>, StorageError>>,
    },
    Push(PushJob),
    /// Server-side upkeep of stored records; answered with how many it changed.
    Upkeep {
        work: Upkeep,
        reply: mpsc::SyncSender<Result<usize, StorageError>>,
    },
}

enum Upkeep {
    Resurface(Vec<RecordId>),
    Annotate(RecordId, Vec<sync_protocol::Flag>),
}

struct PushJob {
    actor: Actor,
    scope: Option<Scope>,
    changes: Vec<Change>,
    /// One per change, taken by the writer.
    prepared: Vec<Prepared>,
    now_ms: u64,
    reply: mpsc::SyncSender<Result<PushResponse, StorageError>>,
}

/// The sled-backed sync store.
pub struct SledStorage {
    db: sled::Db,
    tree: sled::Tree,
    view: Arc<CommitView>,
    queue: Mutex<Option<mpsc::Sender<Queued>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    epoch: String,
    config: EngineConfig,
    restored: Option<RestoreInfo>,
}

impl std::fmt::Debug for SledStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStorage")
            .field("visible", &self.view.visible())
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl SledStorage {
    /// Opens the store in `db` and starts its writer.
    pub fn open(db: sled::Db, config: EngineConfig) -> Result<Self, StorageError> {
        Self::open_in(db, config, None)
    }

    /// [`SledStorage::open`], with the folder the store lives in: the writer
    /// refuses a group (507) rather than let sled meet a full disk, which it
    /// does not survive cleanly (a flush can block for good).
    pub fn open_in(db: sled::Db, config: EngineConfig, dir: Option<std::path::PathBuf>) -> Result<Self, StorageError> {
        let marker = std::env::var_os(FULL_DISK_MARKER_ENV).map(std::path::PathBuf::from);
        Self::open_at(db, config, dir, marker)
    }

    /// A store whose flushes fail while `marker` exists, for tests of that path.
    #[cfg(test)]
    pub(crate) fn open_with_full_disk_marker(
        db: sled::Db,
        config: EngineConfig,
        marker: std::path::PathBuf,
    ) -> Result<Self, StorageError> {
        Self::open_at(db, config, None, Some(marker))
    }

    fn open_at(
        db: sled::Db,
        config: EngineConfig,
        dir: Option<std::path::PathBuf>,
        full_disk_marker: Option<std::path::PathBuf>,
    ) -> Result<Self, StorageError> {
        let tree = db.open_tree(keys::SYNC)?;
        let commit_seq = read_u64(&tree, keys::META_COMMIT_SEQ)?;
        let epoch = match tree.get(keys::META_EPOCH)? {
            Some(e) => String::from_utf8_lossy(&e).into_owned(),
            None => {
                let e = uuid::Uuid::new_v4().to_string();
                tree.insert(keys::META_EPOCH, e.as_bytes())?;
                db.flush()?;
                e
            }
        };
        let mut engine = Engine::new(config.clone());
        if let Some(raw) = tree.get(keys::META_HLC)? {
            let hlc: Hlc = serde_json::from_slice(&raw).map_err(|source| StorageError::Corrupt {
                what: "server hlc",
                source,
            })?;
            engine.resume_clock(hlc);
        }
        let restored = backup::restore_info(&tree).map_err(|e| StorageError::NotDurable(e.to_string()))?;
        let view = Arc::new(CommitView::new(commit_seq));
        let (tx, rx) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            tree: tree.clone(),
            engine,
            commit_seq,
            last_seq: HashMap::new(),
            cache: RecordCache::new(RECORD_CACHE),
            sites: SiteCache::new(),
            view: view.clone(),
            full_disk_marker,
            dir,
            restored: restored.is_some(),
            resurface: match tree.get(keys::META_RESURFACE)? {
                Some(raw) => decode(&raw, "records to resurface")?,
                None => Vec::new(),
            },
        };
        let handle = std::thread::Builder::new()
            .name("sync-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StorageError::NotDurable(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            db,
            tree,
            view,
            queue: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            epoch,
            config,
            restored,
        })
    }

    fn upkeep(&self, work: Upkeep) -> Result<usize, StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::Upkeep { work, reply })?;
        answer.recv().map_err(|_| StorageError::WriterGone)?
    }

    fn send(&self, job: Job) -> Result<(), StorageError> {
        let queue = self.queue.lock().map_err(|_| StorageError::WriterGone)?;
        let tx = queue.as_ref().ok_or(StorageError::WriterGone)?;
        tx.send(Queued::Job(job)).map_err(|_| StorageError::WriterGone)
    }

    /// Stops taking pushes and waits until the writer has answered every queued one.
    pub fn shutdown(&self) {
        if let Ok(mut q) = self.queue.lock() {
            q.take();
        }
        if let Ok(mut w) = self.writer.lock()
            && let Some(h) = w.take()
        {
            let _ = h.join();
        }
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }
}

impl Drop for SledStorage {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl SyncStorage for SledStorage {
    fn apply_push(
        &self,
        actor: &Actor,
        scope: Option<&Scope>,
        changes: Vec<Change>,
        now_ms: u64,
    ) -> Result<PushResponse, StorageError> {
        // The content-only work is done here, on the request's thread, so the
        // single writer spends its time on what needs the store.
        let prepared = changes.iter().map(|c| Prepared::of(&self.config, c)).collect();
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::Push(PushJob {
            actor: *actor,
            scope: scope.cloned(),
            changes,
            prepared,
            now_ms,
            reply,
        }))?;
        answer.recv().map_err(|_| StorageError::WriterGone)?
    }

    fn resurface(&self, ids: &[RecordId]) -> Result<usize, StorageError> {
        self.upkeep(Upkeep::Resurface(ids.to_vec()))
    }

    fn annotate(&self, id: RecordId, evidence: Vec<sync_protocol::Flag>) -> Result<bool, StorageError> {
        Ok(self.upkeep(Upkeep::Annotate(id, evidence))? > 0)
    }

    fn records_since(&self, since: u64, limit: usize, max_bytes: usize) -> Result<Page, StorageError> {
        // Only what a flushed batch made visible: an iterator is not a snapshot,
        // and a half-seen batch must not move a cursor past what it skipped.
        let start = self.view.begin_scan();
        let visible = start.visible;
        let mut page = Page {
            records: Vec::new(),
            next: since,
            more: false,
            settled: true,
        };
        if since >= visible {
            // A batch in flight may be moving a record from below `since`
            // out of a scan that ran before this one.
            page.settled = self.view.settled(&start);
            return Ok(page);
        }
        let mut bytes = 0usize;
        let mut unpublished = false;
        let from = keys::seq(since.saturating_add(1));
        let to = keys::seq(visible.saturating_add(1));
        for item in self.tree.range(from..to) {
            let (k, id) = item?;
            let seq = keys::seq_of(&k).unwrap_or(since);
            if page.records.len() >= limit.max(1) || (bytes >= max_bytes && !page.records.is_empty()) {
                page.more = true;
                break;
            }
            let mut key = [0u8; 17];
            key[0] = keys::RECORD;
            if id.len() != 16 {
                continue;
            }
            key[1..].copy_from_slice(&id);
            let Some(value) = self.tree.get(key)? else {
                continue;
            };
            match keys::split_record_value(&value) {
                // A batch not yet durable is rewriting the record: what it
                // writes must not reach a tablet before it is (it may be
                // undone). The record comes later, at its new seq.
                Some((stored, _)) if stored > visible => unpublished = true,
                Some((_, json)) => {
                    bytes += json.len();
                    page.records.push(json.to_vec());
                }
                None => {}
            }
            page.next = seq;
        }
        page.settled = !unpublished && self.view.settled(&start);
        Ok(page)
    }

    fn visible_seq(&self) -> u64 {
        self.view.visible()
    }

    fn quiet_writes(&self) -> Option<u64> {
        self.view.quiet_count()
    }

    fn undone_groups(&self) -> u64 {
        self.view.undone()
    }

    fn outcome_of(&self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, StorageError> {
        match self.tree.get(keys::outcome(replica, seq))? {
            Some(v) => Ok(Some(decode(&v, "outcome")?)),
            None => Ok(None),
        }
    }

    fn last_seq(&self, replica: ReplicaId) -> Result<u64, StorageError> {
        match self.tree.scan_prefix(keys::outcome_prefix(replica)).next_back() {
            Some(item) => Ok(keys::outcome_seq(&item?.0).unwrap_or(0)),
            None => Ok(0),
        }
    }

    fn record(&self, id: RecordId) -> Result<Option<RecordState>, StorageError> {
        match self.tree.get(keys::record(id))? {
            Some(v) => {
                let (_, json) = keys::split_record_value(&v).unwrap_or((0, &[]));
                Ok(Some(decode(json, "record")?))
            }
            None => Ok(None),
        }
    }

    fn contains(&self, id: RecordId) -> Result<bool, StorageError> {
        Ok(self.tree.contains_key(keys::record(id))?)
    }

    fn record_history(&self, id: RecordId, max: usize) -> Result<RecordHistory, StorageError> {
        let mut truncated = false;
        let mut events = Vec::new();
        let mut limit = sync_protocol::history::RefusalLimit::default();
        // Keys are in version order; a flood of one replica's refusals is
        // skipped, but the scan itself stays bounded.
        for (scanned, item) in self.tree.scan_prefix(keys::event_prefix(id)).enumerate() {
            let (k, v) = item?;
            if events.len() >= max || scanned >= max.saturating_mul(4) {
                truncated = true;
                break;
            }
            if let Some(version) = keys::version_of(&k) {
                let event = decode::<ChangeEvent>(&v, "history event")?;
                if limit.admit(version, &event.outcome) {
                    events.push((version, event));
                }
            }
        }
        truncated |= limit.cut;
        let mut written = Vec::new();
        for item in self.tree.scan_prefix(keys::history_prefix(id)) {
            let (k, v) = item?;
            if written.len() >= max {
                truncated = true;
                break;
            }
            if let Some(version) = keys::version_of(&k) {
                let entry: HistoryEntry = decode(&v, "history entry")?;
                let units = entry.units.into_iter().map(|(key, v)| (key, v.hlc)).collect();
                written.push((
                    version,
                    Written {
                        meta: entry.meta,
                        units,
                    },
                ));
            }
        }
        let items = sync_protocol::history::assemble(events, written, |v| {
            Ok::<_, StorageError>(self.outcome_of(v.replica, v.seq)?.map(|o| o.outcome))
        })?;
        Ok(RecordHistory { items, truncated })
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn backup(&self, dir: &std::path::Path, now_ms: u64) -> Result<BackupInfo, BackupError> {
        backup::check_empty(dir)?;
        let (reply, answer) = mpsc::sync_channel(1);
        {
            let queue = self.queue.lock().map_err(|_| BackupError::WriterGone)?;
            let tx = queue.as_ref().ok_or(BackupError::WriterGone)?;
            tx.send(Queued::Backup(BackupJob {
                dir: dir.to_path_buf(),
                now_ms,
                reply,
            }))
            .map_err(|_| BackupError::WriterGone)?;
        }
        let mut info = answer.recv().map_err(|_| BackupError::WriterGone)??;
        info.epoch.clone_from(&self.epoch);
        Ok(info)
    }

    fn restored_from(&self) -> Option<RestoreInfo> {
        self.restored.clone()
    }

    fn recover(
        &self,
        scope: Option<&Scope>,
        states: Vec<RecordState>,
        base: RestoreBase,
    ) -> Result<Vec<Recovered>, StorageError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(Job::Recover {
            scope: scope.cloned(),
            states,
            base,
            reply,
        })?;
        answer.recv().map_err(|_| StorageError::WriterGone)?
    }

    fn close(&self) {
        self.shutdown();
    }
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str) -> Result<T, StorageError> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt { what, source })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serializing our own types to a Vec cannot fail: no maps with non-string keys.
    serde_json::to_vec(value).unwrap_or_default()
}

fn read_u64(tree: &sled::Tree, key: &[u8]) -> Result<u64, StorageError> {
    Ok(tree
        .get(key)?
        .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// Fault injection for tests (hidden): while the file this variable names
/// exists, the writer's flush fails as a full disk would. A real full disk
/// cannot be made here without root and a loop device; the path taken after
/// the failure is the same.
pub const FULL_DISK_MARKER_ENV: &str = "FIELDSYNC_FAULT_FULL_DISK";

/// Free space kept under the store: below it, pushes are answered 507.
pub const FREE_SPACE_RESERVE: u64 = 16 * 1024 * 1024;

/// The single writer: owns the engine, the commit counter and the per-replica
/// last seqs, all of which advance only when a group is durable.
struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    engine: Engine,
    commit_seq: u64,
    last_seq: HashMap<ReplicaId, u64>,
    /// What the tree holds, decoded; only this thread writes records.
    cache: RecordCache,
    sites: SiteCache,
    view: Arc<CommitView>,
    full_disk_marker: Option<std::path::PathBuf>,
    /// The store's folder, whose free space is checked before each group.
    dir: Option<std::path::PathBuf>,
    /// The store was restored from a backup: tablets' recovery may have
    /// brought back a version its replica now pushes again.
    restored: bool,
    /// Records an undone group had re-sequenced: a pull that ran meanwhile may
    /// have passed their place, so the next group gives them a new one.
    resurface: Vec<RecordId>,
}

impl Writer {
    fn run(mut self, rx: mpsc::Receiver<Queued>) {
        while let Ok(first) = rx.recv() {
            let mut jobs = Vec::new();
            let mut backup = None;
            match first {
                Queued::Job(j) => jobs.push(j),
                Queued::Backup(b) => backup = Some(b),
            }
            while backup.is_none() && jobs.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Queued::Job(j)) => jobs.push(j),
                    Ok(Queued::Backup(b)) => backup = Some(b),
                    Err(_) => break,
                }
            }
            if !jobs.is_empty() {
                self.commit_group(jobs);
            }
            if let Some(b) = backup {
                let result = self.backup(&b.dir, b.now_ms);
                let _ = b.reply.send(result);
            }
        }
    }

    /// Copy the store while no group can commit: this thread is the only
    /// writer of records, and it is busy here.
    fn backup(&self, dir: &std::path::Path, now_ms: u64) -> Result<BackupInfo, BackupError> {
        backup::check_empty(dir)?;
        backup::check_space(dir, self.db.size_on_disk()?)?;
        self.db.flush()?;
        let (trees, entries) = backup::copy_db(&self.db, dir)?;
        let info = BackupInfo {
            dir: dir.display().to_string(),
            epoch: String::new(),
            commit_seq: self.commit_seq,
            taken_ms: now_ms,
            trees,
            entries,
            photos: 0,
        };
        tracing::info!(dir = %dir.display(), commit_seq = self.commit_seq, entries, "backup copied");
        Ok(info)
    }

    /// Room for a group of `bytes` and the reserve sled needs for its own
    /// upkeep (segment rewrites, the snapshot).
    fn check_space(&self, bytes: u64) -> Result<(), StorageError> {
        let Some(dir) = &self.dir else { return Ok(()) };
        let free = fs2::available_space(dir).map_err(|e| StorageError::NotDurable(e.to_string()))?;
        let needed = FREE_SPACE_RESERVE.saturating_add(bytes.saturating_mul(4));
        if free < needed {
            return Err(StorageError::NotDurable(format!(
                "{free} bytes free under {}, {needed} needed: the disk is full",
                dir.display()
            )));
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StorageError> {
        if let Some(marker) = &self.full_disk_marker
            && marker.exists()
        {
            return Err(StorageError::NotDurable(
                "No space left on device (os error 28) [injected]".into(),
            ));
        }
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| StorageError::NotDurable(e.to_string()))
    }

    /// Put back what a group that could not be made durable changed in the
    /// tree. Until then pulls do not see past the last durable commit, but a
    /// record the group re-sequenced has lost its old place in the seq index:
    /// left so, it would be missing from every pull and listing while the disk
    /// stays full, and the 507 answered would not mean "nothing changed".
    /// Whatever of the group reached the disk is harmless after a crash: its
    /// outcomes are stored, so the tablet's retry is answered as a replay.
    ///
    /// A pull that read while the group was applied skipped the records it
    /// moved and went past their old places; the caller has them resurfaced
    /// by the next group that writes. Returns whether the tree was put back.
    fn undo(&self, undo: sled::Batch) -> bool {
        match self.tree.apply_batch(undo) {
            Ok(()) => {
                self.view.abandon();
                true
            }
            // The store itself fails (sled keeps an I/O error): scans stay
            // unsettled until a group succeeds or the server restarts.
            Err(e) => {
                tracing::error!(error = %e, "a failed group could not be undone");
                false
            }
        }
    }

    fn commit_group(&mut self, mut jobs: Vec<Job>) {
        let fresh_versions = !self.restored && !jobs.iter().any(|j| matches!(j, Job::Recover { .. }));
        let mut overlay = Overlay::new(
            &self.tree,
            &mut self.cache,
            &mut self.sites,
            self.commit_seq,
            &self.last_seq,
            fresh_versions,
        );
        let mut answers = Vec::with_capacity(jobs.len());
        for job in &mut jobs {
            let answer = match job {
                Job::Push(job) => {
                    let result = self.engine.push_prepared(
                        &mut overlay,
                        &job.actor,
                        job.scope.as_ref(),
                        &job.changes,
                        std::mem::take(&mut job.prepared),
                        job.now_ms,
                    );
                    result.map(|outcomes| {
                        let expected_seq = overlay.last_seq.get(&job.actor.replica).copied().unwrap_or(0) + 1;
                        Answer::Push(PushResponse {
                            outcomes,
                            expected_seq,
                            server_time_ms: job.now_ms,
                            epoch: String::new(),
                        })
                    })
                }
                Job::Upkeep {
                    work: Upkeep::Resurface(ids),
                    ..
                } => self
                    .engine
                    .resurface(&mut overlay, ids)
                    .map(|found| Answer::Upkept(found.len())),
                Job::Upkeep {
                    work: Upkeep::Annotate(id, flags),
                    ..
                } => self
                    .engine
                    .annotate(&mut overlay, *id, flags)
                    .map(|changed| Answer::Upkept(usize::from(changed))),
                Job::Recover {
                    scope, states, base, ..
                } => states
                    .iter()
                    .map(|state| self.engine.recover(&mut overlay, scope.as_ref(), state, *base))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Answer::Recovered),
            };
            match answer {
                Ok(a) => {
                    overlay.keep();
                    answers.push(Ok(a));
                }
                Err(e) => {
                    overlay.drop_current();
                    answers.push(Err(e));
                }
            }
        }
        // Replays only: nothing new to write, so no room is needed and a tablet
        // settling its outbox is answered on a full disk.
        let wrote_nothing =
            overlay.kept.is_empty() && overlay.kept_history.is_empty() && overlay.kept_records.is_empty();
        // A group that writes also gives the records an undone group had moved
        // a new place, above any cursor a pull handed out meanwhile.
        let mut resurfaced = false;
        if !wrote_nothing && !self.resurface.is_empty() {
            match self.engine.resurface(&mut overlay, &self.resurface) {
                Ok(_) => {
                    overlay.del(keys::META_RESURFACE);
                    overlay.keep();
                    resurfaced = true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "records an undone group had moved were not resurfaced");
                    overlay.drop_current();
                }
            }
        }
        let commit_seq = overlay.commit_seq;
        let last_seq = std::mem::take(&mut overlay.last_seq);
        let mut undone = Vec::new();
        let durable = if wrote_nothing {
            self.flush().map(|()| Vec::new())
        } else {
            overlay
                .into_batch(commit_seq, self.engine.clock())
                .and_then(|group| self.check_space(group.bytes).map(|()| group))
                .and_then(|group| {
                    self.view.begin_write();
                    let applied = self
                        .tree
                        .apply_batch(group.batch)
                        .map_err(StorageError::from)
                        .and_then(|()| self.flush());
                    match applied {
                        Ok(()) => Ok(group.written),
                        Err(e) => {
                            if self.undo(group.undo) {
                                undone = group.moved;
                            }
                            Err(e)
                        }
                    }
                })
        };
        match durable {
            Ok(written) => {
                if resurfaced {
                    self.resurface.clear();
                }
                self.commit_seq = commit_seq;
                self.last_seq = last_seq;
                for state in written {
                    self.cache.put(state.id, state);
                }
                self.view.publish(commit_seq);
                let epoch = self
                    .tree
                    .get(keys::META_EPOCH)
                    .ok()
                    .flatten()
                    .map(|e| String::from_utf8_lossy(&e).into_owned())
                    .unwrap_or_default();
                for (job, answer) in jobs.into_iter().zip(answers) {
                    match (job, answer) {
                        (Job::Push(job), Ok(Answer::Push(mut r))) => {
                            r.epoch = epoch.clone();
                            let _ = job.reply.send(Ok(r));
                        }
                        (Job::Push(job), Err(e)) => {
                            let _ = job.reply.send(Err(e));
                        }
                        (Job::Upkeep { reply, .. }, Ok(Answer::Upkept(n))) => {
                            let _ = reply.send(Ok(n));
                        }
                        (Job::Upkeep { reply, .. }, Err(e)) => {
                            let _ = reply.send(Err(e));
                        }
                        (Job::Recover { reply, .. }, Ok(Answer::Recovered(r))) => {
                            let _ = reply.send(Ok(r));
                        }
                        (Job::Recover { reply, .. }, Err(e)) => {
                            let _ = reply.send(Err(e));
                        }
                        (Job::Recover { reply, .. }, Ok(_)) => {
                            let _ = reply.send(Err(StorageError::WriterGone));
                        }
                        // Each job's answer is made from its own kind above.
                        (Job::Push(job), Ok(_)) => {
                            let _ = job.reply.send(Err(StorageError::WriterGone));
                        }
                        (Job::Upkeep { reply, .. }, Ok(_)) => {
                            let _ = reply.send(Err(StorageError::WriterGone));
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, jobs = jobs.len(), "a group of writes could not be made durable");
                if !undone.is_empty() {
                    self.resurface.extend(undone);
                    self.resurface.sort_unstable();
                    self.resurface.dedup();
                    // Kept with the store too (flushed with the next group, or
                    // at a clean shutdown): a server restarted before a group
                    // succeeds still moves them.
                    if let Err(e) = self.tree.insert(keys::META_RESURFACE, encode(&self.resurface)) {
                        tracing::error!(error = %e, "the records to resurface could not be noted");
                    }
                }
                // What the tree holds now is uncertain (applied but not flushed, or
                // not applied): re-read the counters so the next group continues
                // from the stored truth, and cached last seqs are dropped.
                self.commit_seq = read_u64(&self.tree, keys::META_COMMIT_SEQ)
                    .unwrap_or(commit_seq)
                    .max(self.commit_seq);
                self.last_seq.clear();
                self.cache.clear();
                self.sites.clear();
                let message = e.to_string();
                for job in jobs {
                    let err = StorageError::NotDurable(message.clone());
                    match job {
                        Job::Push(job) => {
                            let _ = job.reply.send(Err(err));
                        }
                        Job::Upkeep { reply, .. } => {
                            let _ = reply.send(Err(err));
                        }
                        Job::Recover { reply, .. } => {
                            let _ = reply.send(Err(err));
                        }
                    }
                }
            }
        }
    }
}

/// What a job produced, before the group is durable.
enum Answer {
    Push(PushResponse),
    Upkept(usize),
    Recovered(Vec<Recovered>),
}

/// A group's writes as one sled batch.
struct GroupBatch {
    batch: sled::Batch,
    /// What the keys `batch` writes hold now, to put back if the group fails.
    undo: sled::Batch,
    /// About how many bytes `batch` writes.
    bytes: u64,
    /// The records it writes, decoded.
    written: Vec<RecordState>,
    /// Those of them that were stored before: it moves them in the seq index.
    moved: Vec<RecordId>,
}

impl GroupBatch {
    /// Returns whether the tree held `key`.
    fn put(&mut self, tree: &sled::Tree, key: &[u8], value: Option<Vec<u8>>) -> Result<bool, StorageError> {
        let held = match tree.get(key)? {
            Some(old) => {
                self.undo.insert(key, old);
                true
            }
            None => {
                self.undo.remove(key);
                false
            }
        };
        self.write(key, value);
        Ok(held)
    }

    /// `put` of a key the tree does not hold.
    fn put_new(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        self.undo.remove(key);
        self.write(key, value);
    }

    fn write(&mut self, key: &[u8], value: Option<Vec<u8>>) {
        match value {
            Some(v) => self.batch.insert(key, v),
            None => self.batch.remove(key),
        }
    }
}

/// Pending writes of a group over the tree. Writes of the push being applied
/// sit in `current` until it succeeds, so a storage error mid-push leaves the
/// rest of the group intact.
struct Overlay<'a> {
    tree: &'a sled::Tree,
    /// Durable records, decoded; what this group writes joins it once durable.
    cache: &'a mut RecordCache,
    sites: &'a mut SiteCache,
    kept: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    current: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Records written, kept decoded and encoded once in `into_batch`: a change
    /// often reads what the one before it wrote (a create, then its submit).
    kept_records: HashMap<RecordId, RecordState>,
    records: HashMap<RecordId, RecordState>,
    kept_history: BTreeMap<(RecordId, VersionId), HistoryEntry>,
    history: BTreeMap<(RecordId, VersionId), HistoryEntry>,
    commit_seq: u64,
    kept_commit_seq: u64,
    last_seq: HashMap<ReplicaId, u64>,
    kept_last_seq: HashMap<ReplicaId, u64>,
    /// The durable commit seq the group starts from.
    base_seq: u64,
    /// Every version the group writes is a pushed change's own, never stored
    /// before (false when it brings back versions after a restore).
    fresh_versions: bool,
}

impl<'a> Overlay<'a> {
    fn new(
        tree: &'a sled::Tree,
        cache: &'a mut RecordCache,
        sites: &'a mut SiteCache,
        commit_seq: u64,
        last_seq: &HashMap<ReplicaId, u64>,
        fresh_versions: bool,
    ) -> Self {
        Self {
            tree,
            cache,
            sites,
            kept: BTreeMap::new(),
            current: BTreeMap::new(),
            kept_records: HashMap::new(),
            records: HashMap::new(),
            kept_history: BTreeMap::new(),
            history: BTreeMap::new(),
            commit_seq,
            kept_commit_seq: commit_seq,
            last_seq: last_seq.clone(),
            kept_last_seq: last_seq.clone(),
            base_seq: commit_seq,
            fresh_versions,
        }
    }

    fn keep(&mut self) {
        self.kept.append(&mut self.current);
        self.kept_records.extend(self.records.drain());
        for (k, v) in std::mem::take(&mut self.history) {
            self.kept_history.insert(k, v);
        }
        self.kept_commit_seq = self.commit_seq;
        self.kept_last_seq = self.last_seq.clone();
    }

    fn drop_current(&mut self) {
        self.current.clear();
        self.records.clear();
        self.history.clear();
        self.commit_seq = self.kept_commit_seq;
        self.last_seq = self.kept_last_seq.clone();
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        if let Some(v) = self.current.get(key).or_else(|| self.kept.get(key)) {
            return Ok(v.clone());
        }
        Ok(self.tree.get(key)?.map(|v| v.to_vec()))
    }

    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.current.insert(key.to_vec(), Some(value));
    }

    fn del(&mut self, key: &[u8]) {
        self.current.insert(key.to_vec(), None);
    }

    /// The group as one sled batch, with the batch that puts back what it
    /// overwrites (read before it is applied).
    fn into_batch(mut self, commit_seq: u64, hlc: Hlc) -> Result<GroupBatch, StorageError> {
        let mut group = GroupBatch {
            batch: sled::Batch::default(),
            undo: sled::Batch::default(),
            bytes: 0,
            written: Vec::with_capacity(self.kept_records.len()),
            moved: Vec::new(),
        };
        // A value live in its record as the group leaves it is written there
        // only; one replaced within the group stays in its entry.
        for ((record, version), entry) in self.kept_history.iter_mut() {
            let Some(state) = self.kept_records.get(record) else {
                continue;
            };
            let live: Vec<String> = entry
                .units
                .keys()
                .filter(|key| {
                    state
                        .units
                        .get(key.as_str())
                        .is_some_and(|u| u.live.iter().any(|v| v.id == *version))
                })
                .cloned()
                .collect();
            entry.in_record.extend(live);
        }
        for (id, state) in std::mem::take(&mut self.kept_records) {
            let value = keys::record_value(state.commit_seq, &encode(&state));
            group.bytes += (17 + value.len()) as u64;
            if group.put(self.tree, &keys::record(id), Some(value))? {
                group.moved.push(id);
            }
            group.written.push(state);
        }
        for (k, v) in std::mem::take(&mut self.kept) {
            group.bytes += (k.len() + v.as_ref().map_or(0, Vec::len)) as u64;
            if self.is_new(&k) {
                group.put_new(&k, v);
            } else {
                group.put(self.tree, &k, v)?;
            }
        }
        for ((record, version), entry) in std::mem::take(&mut self.kept_history) {
            let value = encode(&entry);
            group.bytes += (41 + value.len()) as u64;
            let key = keys::history(record, version);
            if self.fresh_versions {
                group.put_new(&key, Some(value));
            } else {
                group.put(self.tree, &key, Some(value))?;
            }
        }
        group.put(
            self.tree,
            keys::META_COMMIT_SEQ,
            Some(commit_seq.to_be_bytes().to_vec()),
        )?;
        group.put(self.tree, keys::META_HLC, Some(encode(&hlc)))?;
        Ok(group)
    }

    /// Whether `key` cannot be in the tree yet, so that putting it back after
    /// a failed group is a removal and needs no read: an outcome is written
    /// only for a seq that had none, a seq key above the durable commit seq
    /// was never committed, and a pushed change's version (its event) is new.
    fn is_new(&self, key: &[u8]) -> bool {
        match key.first() {
            Some(&keys::OUTCOME) => true,
            Some(&keys::SEQ) => keys::seq_of(key).is_some_and(|seq| seq > self.base_seq),
            Some(&keys::EVENT) => self.fresh_versions,
            _ => false,
        }
    }

    /// A record as this group sees it: written by it, cached, or stored.
    fn state(&mut self, id: RecordId) -> Result<Option<&RecordState>, StorageError> {
        if self.records.contains_key(&id) {
            return Ok(self.records.get(&id));
        }
        if self.kept_records.contains_key(&id) {
            return Ok(self.kept_records.get(&id));
        }
        if !self.cache.contains(&id) {
            let Some(v) = self.tree.get(keys::record(id))? else {
                return Ok(None);
            };
            let (_, json) = keys::split_record_value(&v).unwrap_or((0, &[]));
            let state: RecordState = decode(json, "record")?;
            self.cache.put(id, state);
        }
        Ok(self.cache.get(&id))
    }
}

impl Store for Overlay<'_> {
    type Error = StorageError;

    fn record(&mut self, id: RecordId) -> Result<Option<RecordState>, StorageError> {
        Ok(self.state(id)?.cloned())
    }

    fn site(&mut self, id: RecordId) -> Result<Option<mobile_schema::site::Site>, StorageError> {
        // What this group wrote is not cached: the group may yet fail.
        let written = self.records.contains_key(&id) || self.kept_records.contains_key(&id);
        if !written && let Some(site) = self.sites.get(&id) {
            return Ok(Some(site.clone()));
        }
        let site = self.state(id)?.and_then(sync_protocol::engine::site_from);
        // Only sites that exist: ids a client makes up must not grow it.
        if !written && let Some(site) = &site {
            self.sites.insert(id, site.clone());
        }
        Ok(site)
    }

    fn put_record(&mut self, state: RecordState) -> Result<(), StorageError> {
        // Values this write takes out of the record: their history entries
        // name them, so they are kept under their own keys (see `history_entry`).
        let mut replaced = Vec::new();
        if let Some(old) = self.state(state.id)? {
            for (key, unit) in &old.units {
                let now = state.units.get(key);
                for v in &unit.live {
                    if !now.is_some_and(|u| u.live.iter().any(|n| n.id == v.id)) {
                        replaced.push((keys::superseded(state.id, v.id, key), v.value.get().as_bytes().to_vec()));
                    }
                }
            }
        }
        for (key, value) in replaced {
            self.put(&key, value);
        }
        if let Some(old_seq) = self.state(state.id)?.map(|s| s.commit_seq) {
            self.del(&keys::seq(old_seq));
        }
        self.put(&keys::seq(state.commit_seq), state.id.as_uuid().as_bytes().to_vec());
        self.sites.remove(&state.id);
        self.records.insert(state.id, state);
        Ok(())
    }

    fn remember(
        &mut self,
        record: RecordId,
        key: &str,
        version: &LiveVersion,
        meta: &VersionMeta,
    ) -> Result<(), StorageError> {
        // One history entry per change, not per unit: a created inspection is one
        // write, not forty.
        let entry = self.history.entry((record, version.id)).or_default();
        entry.meta = Some(*meta);
        entry.units.insert(key.to_string(), version.clone());
        Ok(())
    }

    fn recall(
        &mut self,
        record: RecordId,
        key: &str,
        id: VersionId,
    ) -> Result<Option<(LiveVersion, VersionMeta)>, StorageError> {
        let found = |e: &HistoryEntry| e.meta.and_then(|m| e.units.get(key).map(|v| (v.clone(), m)));
        if let Some(e) = self
            .history
            .get(&(record, id))
            .or_else(|| self.kept_history.get(&(record, id)))
        {
            return Ok(found(e));
        }
        let Some(v) = self.tree.get(keys::history(record, id))? else {
            return Ok(None);
        };
        let entry: HistoryEntry = decode(&v, "history entry")?;
        let Some((mut version, meta)) = found(&entry) else {
            return Ok(None);
        };
        if !entry.in_record.contains(key) {
            return Ok(Some((version, meta)));
        }
        // Replaced since: kept under its own key; else still live.
        if let Some(value) = self.get(&keys::superseded(record, id, key))? {
            version.value = decode(&value, "superseded value")?;
            return Ok(Some((version, meta)));
        }
        let live = self
            .state(record)?
            .and_then(|s| s.units.get(key))
            .and_then(|u| u.live.iter().find(|v| v.id == id))
            .map(|v| v.value.clone());
        Ok(live.map(|value| {
            version.value = value;
            (version, meta)
        }))
    }

    fn outcome(&mut self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, StorageError> {
        match self.get(&keys::outcome(replica, seq))? {
            Some(v) => Ok(Some(decode(&v, "outcome")?)),
            None => Ok(None),
        }
    }

    fn put_outcome(&mut self, replica: ReplicaId, seq: u64, outcome: StoredOutcome) -> Result<(), StorageError> {
        self.put(&keys::outcome(replica, seq), encode(&outcome));
        let last = self.last_seq(replica)?;
        self.last_seq.insert(replica, last.max(seq));
        Ok(())
    }

    fn put_event(&mut self, record: RecordId, version: VersionId, event: ChangeEvent) -> Result<(), StorageError> {
        self.put(&keys::event(record, version), encode(&event));
        Ok(())
    }

    fn last_seq(&mut self, replica: ReplicaId) -> Result<u64, StorageError> {
        if let Some(s) = self.last_seq.get(&replica) {
            return Ok(*s);
        }
        let last = match self.tree.scan_prefix(keys::outcome_prefix(replica)).next_back() {
            Some(item) => keys::outcome_seq(&item?.0).unwrap_or(0),
            None => 0,
        };
        self.last_seq.insert(replica, last);
        Ok(last)
    }

    fn next_commit_seq(&mut self) -> Result<u64, StorageError> {
        self.commit_seq += 1;
        Ok(self.commit_seq)
    }

    fn recovery_mark(&mut self, id: RecordId) -> Result<Option<RecoveryMark>, StorageError> {
        match self.get(&keys::recovery(id))? {
            Some(v) => Ok(Some(decode(&v, "recovery mark")?)),
            None => Ok(None),
        }
    }

    fn put_recovery_mark(&mut self, id: RecordId, mark: RecoveryMark) -> Result<(), StorageError> {
        self.put(&keys::recovery(id), encode(&mark));
        Ok(())
    }

    fn restored_from(&mut self) -> Result<Option<u64>, StorageError> {
        match self.get(keys::META_RESTORE)? {
            Some(v) => Ok(Some(decode::<backup::RestoreInfo>(&v, "restore info")?.base_seq)),
            None => Ok(None),
        }
    }
}
