//! The store: opening, the local edit API and reads. Every local edit writes the
//! record's new local view, its outbox entry, its pending index entry, the next
//! seq and the HLC in one sled transaction, then flushes before returning.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use mobile_schema::ids::{DeviceId, RecordId, Sha256Hex, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::site::Site;
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};
use sync_protocol::clock::{Clock, SystemClock};
use sync_protocol::local::{LocalAuthor, apply_local};
use sync_protocol::state::VersionMeta;
use sync_protocol::{
    Actor, Change, Flag, Hlc, HlcClock, Op, RecordState, Refusal, RefusalCode, ReplicaId, UnitValue, UnitWrite,
    VersionId, VersionSet,
};

use crate::check::{Issue, check};
use crate::error::{ReplicaError, decode, encode};
use crate::keys::{self, meta};

/// Photos queued and neither uploaded nor refused.
fn unsent_photos(t: &Trees) -> Result<usize, ReplicaError> {
    let mut n = 0;
    for item in t.photos.iter() {
        let (k, v) = item?;
        let e: crate::photos::PhotoEntry = decode(keys::PHOTOS, &k, &v)?;
        if !e.uploaded && e.refused.is_none() {
            n += 1;
        }
    }
    Ok(n)
}

/// Who uses this tablet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: UserId,
    pub device: DeviceId,
    pub role: Role,
}

impl Identity {
    /// The identity of `user` (as the server's login answered) on `device`.
    pub fn of(user: &sync_protocol::wire::UserInfo, device: DeviceId) -> Self {
        Self {
            user: user.id,
            device,
            role: user.role,
        }
    }
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    /// sled's page cache; tablets have little memory.
    pub cache_capacity_bytes: u64,
    /// Required for a new store; replaces the stored one when given (a new login).
    pub identity: Option<Identity>,
    pub clock: Arc<dyn Clock>,
    /// Changes in a sync's first push request; later ones grow while the
    /// server answers quickly (see `pacing`), up to `push_batch_max`.
    pub push_batch: usize,
    pub push_batch_max: usize,
    /// Records asked for in a sync's first pull page; later pages grow the same
    /// way up to `pull_limit_max`.
    pub pull_limit: usize,
    pub pull_limit_max: usize,
}

impl ReplicaConfig {
    /// The defaults, for a store that belongs to `identity`.
    pub fn for_identity(identity: Identity) -> Self {
        Self {
            identity: Some(identity),
            ..Self::default()
        }
    }
}

impl Default for ReplicaConfig {
    fn default() -> Self {
        Self {
            cache_capacity_bytes: 8 * 1024 * 1024,
            identity: None,
            clock: Arc::new(SystemClock),
            push_batch: 64,
            // Half the server's default cap: a smaller server limit answers 413
            // and the batch shrinks.
            push_batch_max: 500,
            pull_limit: 100,
            // A page in columns compresses better the more records it holds
            // (bench pull_full: 482 wire bytes per record at 250, 444 at 500);
            // past 500 the server held more memory (rows, 250 -> 1,000: peak
            // RSS 175 -> 205 MB).
            pull_limit_max: 500,
        }
    }
}

/// A change the server acknowledged, kept until a pull brings its effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckedEntry {
    /// The replica id it was sent under (a re-key changes the store's).
    pub replica: ReplicaId,
    pub commit_seq: u64,
    #[serde(with = "crate::stored")]
    pub change: Change,
}

/// A change the server refused, kept visible with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefusedEntry {
    pub replica: ReplicaId,
    #[serde(with = "crate::stored")]
    pub change: Change,
    pub refusal: Refusal,
}

/// What a successful local edit returns: it is durable.
#[derive(Debug, Clone, PartialEq)]
pub struct EditReceipt {
    pub record: RecordId,
    pub seq: u64,
    pub hlc: Hlc,
    /// Rule breaches of the resulting record; the edit is kept.
    pub flags: Vec<Issue>,
}

/// One live version of a conflicted unit.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictVersion {
    pub id: VersionId,
    pub value: serde_json::Value,
    /// Unknown for a version whose metadata the server did not send.
    pub author: Option<VersionMeta>,
    pub winner: bool,
}

/// A unit holding more than one live version: a person must resolve it.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitConflict {
    pub key: String,
    pub versions: Vec<ConflictVersion>,
}

/// A record as the app shows it: the local view materialized.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordView {
    pub record: AnyRecord,
    pub conflicts: Vec<UnitConflict>,
    pub flags: Vec<Flag>,
    /// Signed (inspections): the content is locked.
    pub locked: bool,
    /// Local changes of this record the server has not answered yet.
    pub pending: usize,
}

/// A refused change, for the user to see.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusedChange {
    pub seq: u64,
    pub kind: RecordKind,
    pub record: RecordId,
    pub code: RefusalCode,
    pub field: Option<String>,
    pub message: String,
}

/// The trees of the store, in the order [`Write`] names them.
#[derive(Debug, Clone)]
pub(crate) struct Trees {
    pub records: sled::Tree,
    pub local: sled::Tree,
    pub outbox: sled::Tree,
    pub pending: sled::Tree,
    pub acked: sled::Tree,
    pub refused: sled::Tree,
    pub meta: sled::Tree,
    pub photos: sled::Tree,
}

/// Which tree a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum T {
    Records = 0,
    Local,
    Outbox,
    Pending,
    Acked,
    Refused,
    Meta,
    Photos,
}

/// Writes to commit atomically across trees. Built before the transaction, so
/// the transaction closure is pure and safe to re-run.
#[derive(Debug, Default)]
pub(crate) struct Write {
    ops: Vec<(T, Vec<u8>, Option<Vec<u8>>)>,
}

impl Write {
    pub fn put(&mut self, t: T, key: impl AsRef<[u8]>, value: Vec<u8>) {
        self.ops.push((t, key.as_ref().to_vec(), Some(value)));
    }
    pub fn del(&mut self, t: T, key: impl AsRef<[u8]>) {
        self.ops.push((t, key.as_ref().to_vec(), None));
    }
    pub fn meta<V: Serialize>(&mut self, key: &[u8], value: &V) -> Result<(), ReplicaError> {
        self.put(T::Meta, key, encode(keys::META, value)?);
        Ok(())
    }
}

/// The tablet's replica store.
pub struct Replica {
    pub(crate) dir: PathBuf,
    pub(crate) db: sled::Db,
    pub(crate) t: Trees,
    pub(crate) replica_id: ReplicaId,
    pub(crate) identity: Identity,
    pub(crate) hlc: HlcClock,
    pub(crate) next_seq: u64,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) config: ReplicaConfig,
    /// The deployment's severity scale and on-site distance, which local
    /// edits are judged by, as the server last gave them.
    pub(crate) rules: mobile_schema::rule_settings::RuleSettings,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("dir", &self.dir)
            .field("replica_id", &self.replica_id)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

/// How long a reopen waits for the store's file lock (a loaded machine may
/// take its while to run sled's last flush after a close).
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// sled reports a held lock as an `Other` error whose text names it, the
/// `WouldBlock` only inside.
fn lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.to_string().contains("could not acquire lock")
}

/// Open the sled store, waiting briefly for its file lock: sled's background
/// threads release it a moment after the last handle in this process is
/// dropped, so a close followed at once by an open can find it still held.
/// Another process holding it still fails, after the wait.
fn open_sled(path: &Path, cache_bytes: u64) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    loop {
        match sled::Config::new().path(path).cache_capacity(cache_bytes).open() {
            Err(sled::Error::Io(e)) if lock_held(&e) && started.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

impl Replica {
    /// Open an existing store with the stored identity and the system clock.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ReplicaError> {
        Self::open_with(dir, ReplicaConfig::default())
    }

    /// Open or create a store; migrates an older layout first.
    pub fn open_with(dir: impl AsRef<Path>, config: ReplicaConfig) -> Result<Self, ReplicaError> {
        let dir = dir.as_ref().to_path_buf();
        let blobs = dir.join(keys::BLOBS_DIR);
        std::fs::create_dir_all(&blobs).map_err(|source| ReplicaError::Io { path: blobs, source })?;
        let db = open_sled(&dir.join(keys::SLED_DIR), config.cache_capacity_bytes)?;
        let t = Trees {
            records: db.open_tree(keys::RECORDS)?,
            local: db.open_tree(keys::LOCAL)?,
            outbox: db.open_tree(keys::OUTBOX)?,
            pending: db.open_tree(keys::PENDING)?,
            acked: db.open_tree(keys::ACKED)?,
            refused: db.open_tree(keys::REFUSED)?,
            meta: db.open_tree(keys::META)?,
            photos: db.open_tree(keys::PHOTOS)?,
        };
        let schema: Option<u32> = read_meta(&t.meta, meta::SCHEMA_VERSION)?;
        match schema {
            None => init(&db, &t, config.identity)?,
            Some(1) => crate::migrate::v1_to_v2(&db, &t)?,
            Some(keys::SCHEMA_VERSION) => {}
            Some(found) => {
                return Err(ReplicaError::UnsupportedSchema {
                    found,
                    supported: keys::SCHEMA_VERSION,
                });
            }
        }
        let replica_id: ReplicaId = need_meta(&t.meta, meta::REPLICA_ID)?;
        let next_seq: u64 = need_meta(&t.meta, meta::NEXT_SEQ)?;
        let last: Hlc = read_meta(&t.meta, meta::LAST_HLC)?.unwrap_or_default();
        let stored: Option<Identity> = read_meta(&t.meta, meta::IDENTITY)?;
        let identity = match (config.identity, stored) {
            (Some(given), stored) => {
                if let Some(stored) = stored
                    && stored.user != given.user
                {
                    let changes = t.outbox.len();
                    let photos = unsent_photos(&t)?;
                    if changes > 0 || photos > 0 {
                        return Err(ReplicaError::OtherUsersWork {
                            user: stored.user,
                            changes,
                            photos,
                        });
                    }
                }
                if stored != Some(given) {
                    t.meta.insert(meta::IDENTITY, encode(keys::META, &given)?)?;
                    db.flush()?;
                }
                given
            }
            (None, Some(stored)) => stored,
            (None, None) => return Err(ReplicaError::NoIdentity),
        };
        let rules = read_meta(&t.meta, meta::RULES)?.unwrap_or_default();
        Ok(Self {
            dir,
            db,
            t,
            replica_id,
            identity,
            rules,
            hlc: HlcClock::resume(last),
            next_seq,
            clock: config.clock.clone(),
            config,
        })
    }

    pub fn replica_id(&self) -> ReplicaId {
        self.replica_id
    }

    pub fn identity(&self) -> Identity {
        self.identity
    }

    /// Who this replica's changes speak for.
    pub fn actor(&self) -> Actor {
        Actor {
            replica: self.replica_id,
            user: self.identity.user,
            device: self.identity.device,
            role: self.identity.role,
        }
    }

    /// The highest HLC this replica issued or saw.
    pub fn last_hlc(&self) -> Hlc {
        self.hlc.last()
    }

    /// The seq the next local change will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub(crate) fn author(&self, replica: ReplicaId) -> LocalAuthor {
        LocalAuthor {
            replica,
            user: self.identity.user,
            device: self.identity.device,
            role: self.identity.role,
        }
    }

    /// A new record. Refused if a record with its id is known.
    pub fn create(&mut self, record: AnyRecord) -> Result<EditReceipt, ReplicaError> {
        let kind = record.kind();
        let id = record.id();
        if self.view(id)?.is_some() {
            return Err(ReplicaError::Rejected(
                Refusal::new(RefusalCode::AlreadyExists, "a record with this id exists").at("id"),
            ));
        }
        // The document is the record itself, without the enum's `kind` tag.
        let mut doc = serde_json::to_value(&record).map_err(|e| ReplicaError::Encode {
            tree: keys::OUTBOX,
            reason: e.to_string(),
        })?;
        if let Some(obj) = doc.as_object_mut() {
            obj.remove("kind");
        }
        let versions = match &record {
            // A review covers the inspection content as this replica sees it.
            AnyRecord::Review(r) => self.view(r.inspection_id.into())?.map(|v| v.live_set()),
            _ => None,
        };
        let document = UnitValue::of(&doc).map_err(|e| ReplicaError::Encode {
            tree: keys::OUTBOX,
            reason: e.to_string(),
        })?;
        self.commit_local(
            kind,
            id,
            Op::Create {
                record: document,
                versions,
            },
            None,
        )
    }

    /// New values for some units. Each write replaces the unit's winning version
    /// in the local view, i.e. the value the user saw; conflicting versions stay
    /// until [`Replica::resolve`].
    pub fn edit(
        &mut self,
        kind: RecordKind,
        id: RecordId,
        units: Vec<(String, serde_json::Value)>,
    ) -> Result<EditReceipt, ReplicaError> {
        let view = self.view_of(kind, id)?;
        let mut writes = Vec::with_capacity(units.len());
        for (key, value) in units {
            let bases = view
                .units
                .get(&key)
                .and_then(|u| u.winner())
                .map(|w| vec![w.id])
                .unwrap_or_default();
            writes.push(UnitWrite {
                value: unit_value(&key, &value)?,
                key,
                bases,
            });
        }
        if writes.is_empty() {
            return Err(ReplicaError::Rejected(
                Refusal::new(RefusalCode::InvalidStructure, "an edit must write at least one unit").at("units"),
            ));
        }
        self.commit_local(kind, id, Op::Edit { units: writes }, Some(view))
    }

    /// End a conflict: one value replacing every live version of the unit.
    pub fn resolve(
        &mut self,
        kind: RecordKind,
        id: RecordId,
        unit_key: &str,
        value: serde_json::Value,
    ) -> Result<EditReceipt, ReplicaError> {
        let view = self.view_of(kind, id)?;
        let bases = view.units.get(unit_key).map(|u| u.live_ids()).unwrap_or_default();
        let write = UnitWrite {
            key: unit_key.to_string(),
            bases,
            value: unit_value(unit_key, &value)?,
        };
        self.commit_local(kind, id, Op::Edit { units: vec![write] }, Some(view))
    }

    /// A workflow step. `sign` locks every lockable unit at its live versions.
    pub fn transition(&mut self, kind: RecordKind, id: RecordId, action: &str) -> Result<EditReceipt, ReplicaError> {
        let view = self.view_of(kind, id)?;
        crate::workflow::check_transition(&view, action, self.identity.role, self.identity.user)
            .map_err(ReplicaError::Rejected)?;
        let versions = (kind == RecordKind::Inspection && action == "sign").then(|| lockable_set(&view));
        let op = Op::Transition {
            action: action.to_string(),
            versions,
        };
        self.commit_local(kind, id, op, Some(view))
    }

    fn commit_local(
        &mut self,
        kind: RecordKind,
        id: RecordId,
        op: Op,
        prior: Option<RecordState>,
    ) -> Result<EditReceipt, ReplicaError> {
        let mut hlc = self.hlc;
        let stamp = hlc.tick(self.clock.now_ms());
        let seq = self.next_seq;
        let change = Change {
            seq,
            hlc: stamp,
            kind,
            record: id,
            op,
        };
        let prior_record = prior.as_ref().and_then(|p| p.materialize().ok());
        let view = apply_local(prior, &change, &self.author(self.replica_id)).map_err(ReplicaError::Rejected)?;
        let typed = view.materialize().map_err(|e| {
            ReplicaError::Rejected(Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field()))
        })?;
        let site = self.site_of(&typed)?;
        let (errors, flags) = check(&typed, site.as_ref(), &self.rules);
        // Only errors this edit introduces: a record that arrived with an error
        // must stay editable so it can be fixed one edit at a time.
        let before: Vec<Issue> = match prior_record {
            Some(r) => check(&r, site.as_ref(), &self.rules).0,
            None => Vec::new(),
        };
        let errors: Vec<Issue> = errors
            .into_iter()
            .filter(|e| !before.iter().any(|b| b.code == e.code && b.field == e.field))
            .collect();
        if !errors.is_empty() {
            return Err(ReplicaError::Invalid { errors });
        }
        let mut w = Write::default();
        w.put(T::Local, keys::record(id), encode(keys::LOCAL, &view)?);
        w.put(
            T::Outbox,
            keys::seq(seq),
            encode(keys::OUTBOX, &crate::stored::Stored(change.clone()))?,
        );
        w.put(T::Pending, keys::pending(id, seq), Vec::new());
        w.meta(meta::NEXT_SEQ, &(seq + 1))?;
        w.meta(meta::LAST_HLC, &stamp)?;
        self.commit(w)?;
        self.next_seq = seq + 1;
        self.hlc = hlc;
        Ok(EditReceipt {
            record: id,
            seq,
            hlc: stamp,
            flags,
        })
    }

    /// Apply writes in one transaction over all trees, then flush: durable on return.
    /// Keeps the rule settings the server gave, durably, to judge later edits by.
    pub(crate) fn adopt_rules(
        &mut self,
        rules: mobile_schema::rule_settings::RuleSettings,
    ) -> Result<(), ReplicaError> {
        if rules != self.rules {
            let mut w = Write::default();
            w.meta(meta::RULES, &rules)?;
            self.commit(w)?;
            self.rules = rules;
        }
        Ok(())
    }

    pub(crate) fn commit(&self, w: Write) -> Result<(), ReplicaError> {
        commit_to(&self.db, &self.t, &w)
    }

    /// The site a record is about, when this replica has it.
    fn site_of(&self, record: &AnyRecord) -> Result<Option<Site>, ReplicaError> {
        let site_id = match record {
            AnyRecord::Inspection(i) => i.site_id,
            AnyRecord::Hazard(h) => h.site_id,
            _ => return Ok(None),
        };
        Ok(match self.view(site_id.into())?.map(|v| v.materialize()) {
            Some(Ok(AnyRecord::Site(s))) => Some(s),
            _ => None,
        })
    }

    /// The local view of a record: with unanswered local changes, else the server's.
    pub fn view(&self, id: RecordId) -> Result<Option<RecordState>, ReplicaError> {
        let key = keys::record(id);
        if let Some(bytes) = self.t.local.get(key)? {
            return decode(keys::LOCAL, &key, &bytes).map(Some);
        }
        match self.t.records.get(key)? {
            Some(bytes) => decode(keys::RECORDS, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    fn view_of(&self, kind: RecordKind, id: RecordId) -> Result<RecordState, ReplicaError> {
        let view = self.view(id)?.ok_or(ReplicaError::NotFound(id))?;
        if view.kind != kind {
            return Err(ReplicaError::Rejected(
                Refusal::new(RefusalCode::InvalidStructure, "the record is of another kind").at("kind"),
            ));
        }
        Ok(view)
    }

    /// The record as the app shows it, with its conflicts and flags.
    pub fn get(&self, id: RecordId) -> Result<Option<RecordView>, ReplicaError> {
        let Some(view) = self.view(id)? else {
            return Ok(None);
        };
        let record = view
            .materialize()
            .map_err(|e| ReplicaError::corrupt(keys::LOCAL, &keys::record(id), e.to_string()))?;
        let mut conflicts = Vec::new();
        for key in view.conflicted_units() {
            let Some(unit) = view.units.get(key) else {
                continue;
            };
            let winner = unit.winner().map(|w| w.id);
            let versions = unit
                .live
                .iter()
                .map(|v| ConflictVersion {
                    id: v.id,
                    value: serde_json::from_str(v.value.get()).unwrap_or(serde_json::Value::Null),
                    author: view.meta.get(&v.id).copied(),
                    winner: Some(v.id) == winner,
                })
                .collect();
            conflicts.push(UnitConflict {
                key: key.to_string(),
                versions,
            });
        }
        let pending = self.t.pending.scan_prefix(keys::record(id)).count();
        Ok(Some(RecordView {
            record,
            conflicts,
            // The record's own flags, then the server's checks of its photos.
            flags: view.flags.iter().chain(&view.evidence).cloned().collect(),
            locked: view.lock.is_some(),
            pending,
        }))
    }

    /// Every record of a kind, local views over server states.
    pub fn list(&self, kind: RecordKind) -> Result<Vec<RecordView>, ReplicaError> {
        let ids = self.record_ids(Some(kind))?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match self.get(id) {
                Ok(Some(v)) => out.push(v),
                Ok(None) => {}
                // One record this build cannot read (a state a newer server
                // knows) must not hide the rest: [`Replica::unreadable`] names it.
                Err(e @ ReplicaError::Corrupt { .. }) => {
                    if self.view(id)?.is_none_or(|v| v.materialize().is_ok()) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// The ids of the records held (pulled or made here), of `kind` if given.
    fn record_ids(&self, kind: Option<RecordKind>) -> Result<std::collections::BTreeSet<RecordId>, ReplicaError> {
        let mut ids = std::collections::BTreeSet::new();
        for (tree, name) in [(&self.t.records, keys::RECORDS), (&self.t.local, keys::LOCAL)] {
            for item in tree.iter() {
                let (k, v) = item?;
                if let Some(kind) = kind {
                    let state: RecordState = decode(name, &k, &v)?;
                    if state.kind != kind {
                        continue;
                    }
                }
                ids.insert(keys::decode_record(name, &k)?);
            }
        }
        Ok(ids)
    }

    /// Changes and photos not yet synced: `(changes, photos)`. Photos the
    /// server refused for good are not counted.
    pub fn unsynced_work(&self) -> Result<(usize, usize), ReplicaError> {
        Ok((self.t.outbox.len(), unsent_photos(&self.t)?))
    }

    /// Records whose current values this build cannot make into a record of
    /// their kind (a workflow state or a field a newer server knows), with
    /// why: [`Replica::list`] leaves them out, so they are told here.
    pub fn unreadable(&self) -> Result<Vec<(RecordId, String)>, ReplicaError> {
        let mut out = Vec::new();
        for id in self.record_ids(None)? {
            if let Some(view) = self.view(id)?
                && let Err(e) = view.materialize()
            {
                out.push((id, e.to_string()));
            }
        }
        Ok(out)
    }

    /// Changes the server refused, oldest first, with the reason.
    pub fn refused(&self) -> Result<Vec<RefusedChange>, ReplicaError> {
        let mut out = Vec::new();
        for item in self.t.refused.iter() {
            let (k, v) = item?;
            let e: RefusedEntry = decode(keys::REFUSED, &k, &v)?;
            out.push(RefusedChange {
                seq: e.change.seq,
                kind: e.change.kind,
                record: e.change.record,
                code: e.refusal.code,
                field: e.refusal.field,
                message: e.refusal.message,
            });
        }
        Ok(out)
    }

    /// Changes not yet answered by the server.
    pub fn pending_count(&self) -> usize {
        self.t.outbox.len()
    }

    /// The outbox in seq order.
    pub fn outbox(&self) -> Result<Vec<Change>, ReplicaError> {
        self.t
            .outbox
            .iter()
            .map(|item| {
                let (k, v) = item?;
                decode::<crate::stored::Stored>(keys::OUTBOX, &k, &v).map(|s| s.0)
            })
            .collect()
    }

    /// Local time (ms since the epoch) at which the last sync completed.
    pub fn last_sync_ms(&self) -> Result<Option<u64>, ReplicaError> {
        read_meta(&self.t.meta, meta::LAST_SYNC_MS)
    }

    /// The kind of a record known to this replica.
    pub fn kind_of(&self, id: RecordId) -> Result<Option<RecordKind>, ReplicaError> {
        Ok(self.view(id)?.map(|v| v.kind))
    }

    /// The stored pull cursor.
    pub fn cursor(&self) -> Result<String, ReplicaError> {
        Ok(read_meta(&self.t.meta, meta::CURSOR)?.unwrap_or_else(|| "0".to_string()))
    }

    /// Server time minus local time at the last push or pull, in ms.
    pub fn clock_offset_ms(&self) -> Result<Option<i64>, ReplicaError> {
        read_meta(&self.t.meta, meta::CLOCK_OFFSET_MS)
    }

    pub(crate) fn pending_changes(&self, id: RecordId) -> Result<Vec<Change>, ReplicaError> {
        let mut out = Vec::new();
        for item in self.t.pending.scan_prefix(keys::record(id)) {
            let (k, _) = item?;
            let (_, seq) = keys::decode_pending(&k)?;
            let key = keys::seq(seq);
            let bytes = self
                .t
                .outbox
                .get(key)?
                .ok_or_else(|| ReplicaError::corrupt(keys::PENDING, &k, "indexes a seq missing from the outbox"))?;
            out.push(decode::<crate::stored::Stored>(keys::OUTBOX, &key, &bytes)?.0);
        }
        Ok(out)
    }

    pub(crate) fn acked_entries(&self) -> Result<Vec<(Vec<u8>, AckedEntry)>, ReplicaError> {
        self.t
            .acked
            .iter()
            .map(|item| {
                let (k, v) = item?;
                Ok((k.to_vec(), decode(keys::ACKED, &k, &v)?))
            })
            .collect()
    }

    pub(crate) fn server_state(&self, id: RecordId) -> Result<Option<RecordState>, ReplicaError> {
        let key = keys::record(id);
        match self.t.records.get(key)? {
            Some(bytes) => decode(keys::RECORDS, &key, &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The local view: the server state with acknowledged-not-yet-pulled and then
    /// pending changes on top. A change that no longer applies locally stays in
    /// the outbox for the server to answer, and does not show.
    pub(crate) fn rebuild(
        &self,
        server: Option<RecordState>,
        acked: &[&AckedEntry],
        pending: &[Change],
    ) -> Option<RecordState> {
        let mut view = server;
        let steps = acked
            .iter()
            .map(|a| (a.replica, &a.change))
            .chain(pending.iter().map(|c| (self.replica_id, c)));
        for (replica, change) in steps {
            if let Ok(next) = apply_local(view.clone(), change, &self.author(replica)) {
                view = Some(next);
            }
        }
        view
    }

    /// The directory of the store.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn sha_path(&self, sha: &Sha256Hex) -> PathBuf {
        self.dir.join(keys::BLOBS_DIR).join(sha.as_str())
    }
}

fn unit_value(key: &str, value: &serde_json::Value) -> Result<UnitValue, ReplicaError> {
    UnitValue::of(value)
        .map_err(|e| ReplicaError::Rejected(Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(key)))
}

/// The live versions of every lockable unit: what a signature covers.
fn lockable_set(view: &RecordState) -> VersionSet {
    let layout = view.kind.layout();
    view.live_set()
        .into_iter()
        .filter(|(k, _)| layout.field_of(k).is_some_and(|f| f.lockable))
        .collect::<BTreeMap<_, _>>()
}

pub(crate) fn commit_to(db: &sled::Db, t: &Trees, w: &Write) -> Result<(), ReplicaError> {
    let trees = [
        &t.records, &t.local, &t.outbox, &t.pending, &t.acked, &t.refused, &t.meta, &t.photos,
    ];
    let result: sled::transaction::TransactionResult<(), ()> = trees[..].transaction(|tx| {
        for (tree, key, value) in &w.ops {
            let Some(tt) = tx.get(*tree as usize) else {
                continue;
            };
            match value {
                Some(v) => {
                    tt.insert(key.as_slice(), v.as_slice())?;
                }
                None => {
                    tt.remove(key.as_slice())?;
                }
            }
        }
        Ok(())
    });
    match result {
        Ok(()) => {}
        Err(sled::transaction::TransactionError::Storage(e)) => return Err(e.into()),
        Err(sled::transaction::TransactionError::Abort(())) => {
            return Err(ReplicaError::Protocol("transaction aborted".into()));
        }
    }
    db.flush()?;
    Ok(())
}

pub(crate) fn read_meta<V: serde::de::DeserializeOwned>(
    tree: &sled::Tree,
    key: &[u8],
) -> Result<Option<V>, ReplicaError> {
    match tree.get(key)? {
        Some(bytes) => decode(keys::META, key, &bytes).map(Some),
        None => Ok(None),
    }
}

fn need_meta<V: serde::de::DeserializeOwned>(tree: &sled::Tree, key: &[u8]) -> Result<V, ReplicaError> {
    read_meta(tree, key)?.ok_or_else(|| ReplicaError::corrupt(keys::META, key, "missing"))
}

/// A new store: its own replica id, seq 1, the current schema.
fn init(db: &sled::Db, t: &Trees, identity: Option<Identity>) -> Result<(), ReplicaError> {
    let identity = identity.ok_or(ReplicaError::NoIdentity)?;
    let mut w = Write::default();
    w.meta(meta::REPLICA_ID, &ReplicaId::generate())?;
    w.meta(meta::NEXT_SEQ, &1u64)?;
    w.meta(meta::LAST_HLC, &Hlc::ZERO)?;
    w.meta(meta::IDENTITY, &identity)?;
    w.meta(meta::CURSOR, &"0")?;
    // Last: a store with a schema version is complete.
    w.meta(meta::SCHEMA_VERSION, &keys::SCHEMA_VERSION)?;
    commit_to(db, t, &w)
}

use sled::Transactional as _;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn an_open_waits_for_a_lock_the_last_close_still_holds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sled");
        let held = sled::Config::new().path(&path).open().unwrap();
        // What sled answers while another handle holds the store.
        let e = match sled::Config::new().path(&path).open() {
            Err(sled::Error::Io(e)) => e,
            other => panic!("the second open was not refused: {other:?}"),
        };
        assert!(lock_held(&e), "{e:?}");
        let closer = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            drop(held);
        });
        open_sled(&path, 1 << 20).expect("opened once the lock was let go");
        closer.join().unwrap();
    }
}
