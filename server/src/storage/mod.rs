//! Where the server keeps records, in sync terms. Handlers speak only this trait,
//! so another backend can come later without touching them: the sled store is the
//! product; the protocol's in-memory reference server is the second implementation
//! (story tests run against both).

pub mod backup;
pub mod commit_view;
pub mod history_entry;
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
    /// A whole-store scan never found the store holding still: commits kept
    /// moving records, or a failed one could not be undone.
    #[error("the store kept changing while it was read; try again")]
    Unsettled,
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

/// Whether the disk under `data_dir` is down to the space the sync writer keeps
/// free (`sled_store::FREE_SPACE_RESERVE`). Writes outside the writer (logins,
/// token refreshes, device reports) stop there, so the reserve stays for sled's
/// own upkeep and a flush never meets a full disk.
pub fn below_reserve(data_dir: &std::path::Path) -> bool {
    fs2::available_space(data_dir).is_ok_and(|free| free < sled_store::FREE_SPACE_RESERVE)
}

/// One page of `records_since`: each record's current state as JSON, in commit
/// order, so a pull answer is assembled without decoding and re-encoding.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub records: Vec<Vec<u8>>,
    /// The commit seq of the last record in the page (or `since` when empty).
    pub next: u64,
    pub more: bool,
    /// No commit changed the store while the page was read (see
    /// `commit_view`): a record re-sequenced meanwhile may be missing from it,
    /// to come later at its new seq.
    pub settled: bool,
}

/// What [`SyncStorage::record_history`] found.
#[derive(Debug, Clone, Default)]
pub struct RecordHistory {
    pub items: Vec<sync_protocol::history::HistoryItem>,
    pub truncated: bool,
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

    /// How many groups were undone after a failed flush (see `each_record`).
    fn undone_groups(&self) -> u64 {
        0
    }

    /// For a raw scan of the store (the photo collector's): the write groups
    /// begun so far, `None` while one is in flight. The same answer before and
    /// after the scan means it read a store that held still.
    fn quiet_writes(&self) -> Option<u64> {
        Some(0)
    }

    fn outcome_of(&self, replica: ReplicaId, seq: u64) -> Result<Option<StoredOutcome>, StorageError>;

    /// The highest change seq of `replica` the store has an outcome for (0: none).
    fn last_seq(&self, replica: ReplicaId) -> Result<u64, StorageError>;

    fn record(&self, id: RecordId) -> Result<Option<RecordState>, StorageError>;

    /// Whether the store holds the record (without decoding it).
    fn contains(&self, id: RecordId) -> Result<bool, StorageError> {
        Ok(self.record(id)?.is_some())
    }

    /// New commit sequences for these records, content unchanged, durable on
    /// return: pulls past their old place see them again. Returns how many exist.
    fn resurface(&self, ids: &[RecordId]) -> Result<usize, StorageError>;

    /// Replace a record's evidence flags (the photo checks); re-sequenced, and
    /// durable on return, when they changed. Returns whether they did.
    fn annotate(&self, id: RecordId, evidence: Vec<sync_protocol::Flag>) -> Result<bool, StorageError>;

    /// A record's history: every change answered for it, refusals included, in
    /// history order (effective HLC). Reads at most `max` changes of each kind
    /// kept; `truncated` says there were more.
    fn record_history(&self, id: RecordId, max: usize) -> Result<RecordHistory, StorageError>;

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

/// How often a whole-store scan reads on after reaching the end of a store
/// that did not hold still (about 10 s of waiting for groups to flush).
const MAX_UNSETTLED_PASSES: u64 = 500;

/// Records a whole-store scan reads per page.
const SCAN_PAGE: usize = 1000;

/// Every record of the store, in commit order, a page at a time: for the
/// listings and checks that look at them all. An error from `f` ends the scan.
///
/// A record re-sequenced while a page was read is missing from that page and
/// sits past where the scan ended: after an unsettled page the scan goes on
/// from there until a page reads a store that held still. Each record is
/// given to `f` once.
pub fn each_record(
    storage: &dyn SyncStorage,
    mut f: impl FnMut(RecordState) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let mut since = 0;
    let mut settled = true;
    let mut seen = std::collections::HashSet::new();
    let mut unsettled_passes = 0u64;
    let mut undone = storage.undone_groups();
    loop {
        let page = storage.records_since(since, SCAN_PAGE, usize::MAX)?;
        settled &= page.settled;
        for bytes in &page.records {
            let state: RecordState =
                serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt { what: "record", source })?;
            if seen.insert(state.id) {
                f(state)?;
            }
        }
        since = page.next;
        if !page.more {
            // An undone group put the records it had moved back at their old
            // places, which this scan may have passed: read again from the
            // start (records already given are not given twice).
            let now_undone = storage.undone_groups();
            if now_undone != undone {
                undone = now_undone;
                since = 0;
                settled = false;
            }
            if settled {
                return Ok(());
            }
            // A batch still flushing: what it moved becomes readable once it is
            // durable. Bounded: a writer whose store fails never settles.
            unsettled_passes += 1;
            if unsettled_passes > MAX_UNSETTLED_PASSES {
                return Err(StorageError::Unsettled);
            }
            std::thread::sleep(std::time::Duration::from_millis(unsettled_passes.min(20)));
            settled = true;
        }
    }
}

/// A change creating `record`, stamped `1000 + seq` ms: for the tests of the
/// modules that push through a store.
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_create(seq: u64, record: mobile_schema::record::AnyRecord) -> Change {
    // The document is the record without the enum's `kind` tag.
    let mut doc = serde_json::to_value(&record).unwrap();
    doc.as_object_mut().unwrap().remove("kind");
    Change {
        seq,
        hlc: sync_protocol::Hlc::new(1_000 + seq, 0),
        kind: record.kind(),
        record: record.id(),
        op: sync_protocol::Op::Create {
            record: sync_protocol::UnitValue::of(&doc).unwrap(),
            versions: None,
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use mobile_schema::ids::{DeviceId, InspectionId, ReviewId, SiteId, UserId};
    use mobile_schema::record::RecordKind;
    use mobile_schema::workflow::Role;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use sync_protocol::engine::EngineConfig;
    use sync_protocol::{Hlc, Op, Outcome, RefusalCode, UnitValue, UnitWrite};

    use super::test_create as create;

    /// Both stores keep the same history: refusals with their codes, no
    /// transient refusal (it is not an answer), in HLC order.
    #[test]
    fn sled_and_reference_stores_keep_the_same_history_refusals_included() {
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Inspector,
        };
        let site = SiteId::generate();
        let insp = InspectionId::generate();
        let id: RecordId = insp.into();
        let changes = vec![
            create(1, mobile_schema::sample::pond(site).into()),
            create(2, mobile_schema::sample::inspection(insp, site, actor.device).into()),
            Change {
                seq: 3,
                hlc: Hlc::new(1_010, 0),
                kind: RecordKind::Inspection,
                record: id,
                op: Op::Edit {
                    units: vec![UnitWrite {
                        key: "conclusion".into(),
                        bases: Vec::new(),
                        value: UnitValue::of(&"已复查").unwrap(),
                    }],
                },
            },
            Change {
                seq: 4,
                hlc: Hlc::new(1_020, 0),
                kind: RecordKind::Inspection,
                record: id,
                op: Op::Transition {
                    action: "close".into(),
                    versions: None,
                },
            },
            // A review is a step of its inspection: refused (an inspector may
            // not approve), it shows in the inspection's history too.
            create(
                5,
                mobile_schema::review::Review {
                    id: ReviewId::generate(),
                    schema_version: mobile_schema::review::Review::SCHEMA_VERSION,
                    inspection_id: insp,
                    reviewer: actor.user,
                    decision: mobile_schema::review::Decision::Approve,
                    decided_at: mobile_schema::time::shanghai_at_ms(1_030),
                    comments: Vec::new(),
                }
                .into(),
            ),
        ];
        let gap = Change {
            seq: 9,
            ..changes[2].clone()
        };
        let db = sled::Config::new().temporary(true).open().unwrap();
        let sled = SledStorage::open(db, EngineConfig::default()).unwrap();
        let memory = MemoryStorage::new(EngineConfig::default());
        let mut seen = Vec::new();
        for store in [&sled as &dyn SyncStorage, &memory] {
            store.apply_push(&actor, None, changes.clone(), 5_000).unwrap();
            let answer = store.apply_push(&actor, None, vec![gap.clone()], 6_000).unwrap();
            assert!(matches!(&answer.outcomes[0].outcome, Outcome::Refused(r) if r.code == RefusalCode::SeqGap));
            let history = store.record_history(id, 100).unwrap();
            assert!(!history.truncated);
            let seqs: Vec<u64> = history.items.iter().map(|i| i.version.seq).collect();
            // HLC order: the review was stamped 1005, the edit 1010.
            assert_eq!(seqs, vec![2, 5, 3, 4], "{history:?}");
            let refused = history.items[3].outcome.as_ref().and_then(Outcome::refusal).unwrap();
            assert_eq!(refused.code, RefusalCode::UnknownAction);
            let review = &history.items[1];
            assert_eq!(review.via.map(|v| v.kind), Some(RecordKind::Review));
            assert!(
                review.outcome.as_ref().and_then(Outcome::refusal).is_some(),
                "{review:?}"
            );
            assert_eq!(history.items[2].units, vec!["conclusion".to_string()]);
            assert_eq!(history.items[0].meta.unwrap().received_ms, 5_000);
            let bounded = store.record_history(id, 2).unwrap();
            assert!(bounded.truncated && bounded.items.len() <= 2);
            seen.push(serde_json::to_value(&history.items).unwrap());
        }
        assert_eq!(seen[0], seen[1]);
    }

    /// A signature names the versions the signer saw; one a later edit had
    /// replaced comes back from the history, value and author, in both stores.
    #[test]
    fn a_signature_brings_back_the_version_it_saw_that_a_later_edit_replaced() {
        let signer = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Inspector,
        };
        let colleague = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            ..signer
        };
        let site = SiteId::generate();
        let insp = InspectionId::generate();
        let id: RecordId = insp.into();
        let mut seen = Vec::new();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let sled = SledStorage::open(db, EngineConfig::default()).unwrap();
        let memory = MemoryStorage::new(EngineConfig::default());
        for store in [&sled as &dyn SyncStorage, &memory] {
            let made = vec![
                create(1, mobile_schema::sample::pond(site).into()),
                create(2, mobile_schema::sample::inspection(insp, site, signer.device).into()),
            ];
            store.apply_push(&signer, None, made, 5_000).unwrap();
            let created = store.record(id).unwrap().unwrap();
            let saw: sync_protocol::VersionSet = created.units.iter().map(|(k, u)| (k.clone(), u.live_ids())).collect();
            let original = created.materialize().unwrap();
            // The colleague's tablet rewrites the conclusion meanwhile.
            let edit = Change {
                seq: 1,
                hlc: Hlc::new(6_000, 0),
                kind: RecordKind::Inspection,
                record: id,
                op: Op::Edit {
                    units: vec![UnitWrite {
                        key: "conclusion".into(),
                        bases: created.units["conclusion"].live_ids(),
                        value: UnitValue::of(&"另有结论").unwrap(),
                    }],
                },
            };
            let answer = store.apply_push(&colleague, None, vec![edit], 6_000).unwrap();
            assert!(
                matches!(answer.outcomes[0].outcome, Outcome::Applied { .. }),
                "{answer:?}"
            );
            let sign = Change {
                seq: 3,
                hlc: Hlc::new(7_000, 0),
                kind: RecordKind::Inspection,
                record: id,
                op: Op::Transition {
                    action: "sign".into(),
                    versions: Some(saw.clone()),
                },
            };
            // Signed; the colleague's replaced text goes to an addendum of his.
            let answer = store.apply_push(&signer, None, vec![sign], 7_000).unwrap();
            assert!(
                matches!(&answer.outcomes[0].outcome, Outcome::Locked { addenda, .. } if addenda.len() == 1),
                "{answer:?}"
            );
            let signed = store.record(id).unwrap().unwrap();
            assert_eq!(signed.units["conclusion"].live_ids(), saw["conclusion"]);
            let back = saw["conclusion"][0];
            assert_eq!(signed.meta[&back].user, signer.user);
            assert_eq!(
                serde_json::to_value(signed.materialize().unwrap()).unwrap(),
                serde_json::to_value(&original).unwrap(),
                "the record as signed"
            );
            seen.push(serde_json::to_value(store.record_history(id, 100).unwrap().items).unwrap());
        }
        assert_eq!(seen[0], seen[1]);
    }

    /// One replica's flood of refused changes cannot push a record's real
    /// history out of view: past its share, its refusals are left out.
    #[test]
    fn a_flood_of_refusals_does_not_bury_a_records_history() {
        let author = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Inspector,
        };
        // The flooder's replica id sorts first, as a chosen one could.
        let flooder = Actor {
            replica: ReplicaId(uuid::Uuid::from_u128(1)),
            ..author
        };
        let site = SiteId::generate();
        let insp = InspectionId::generate();
        let id: RecordId = insp.into();
        let made = vec![
            create(1, mobile_schema::sample::pond(site).into()),
            create(2, mobile_schema::sample::inspection(insp, site, author.device).into()),
        ];
        let flood: Vec<Change> = (1..=300)
            .map(|seq| Change {
                seq,
                hlc: Hlc::new(2_000 + seq, 0),
                kind: RecordKind::Inspection,
                record: id,
                op: Op::Transition {
                    action: "close".into(),
                    versions: None,
                },
            })
            .collect();
        let db = sled::Config::new().temporary(true).open().unwrap();
        let sled = SledStorage::open(db, EngineConfig::default()).unwrap();
        let memory = MemoryStorage::new(EngineConfig::default());
        for store in [&sled as &dyn SyncStorage, &memory] {
            store.apply_push(&author, None, made.clone(), 5_000).unwrap();
            store.apply_push(&flooder, None, flood.clone(), 6_000).unwrap();
            // A window smaller than the flood still shows the record's creation.
            let history = store.record_history(id, 150).unwrap();
            assert!(history.truncated);
            let refused = history
                .items
                .iter()
                .filter(|i| i.version.replica == flooder.replica)
                .count();
            assert_eq!(refused, sync_protocol::history::MAX_REFUSALS_PER_REPLICA);
            assert!(
                history
                    .items
                    .iter()
                    .any(|i| i.version == sync_protocol::VersionId::new(author.replica, 2))
            );
        }
    }

    /// A group that cannot be made durable is undone: reads see the store as
    /// it was. A pull that ran meanwhile may have passed the place of a record
    /// it moved, so the next group that writes gives it a new one, whole.
    #[test]
    fn a_record_an_undone_group_moved_comes_again_whole_with_the_next_group() {
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Inspector,
        };
        let site = SiteId::generate();
        let insp = InspectionId::generate();
        let id: RecordId = insp.into();
        let folder = tempfile::tempdir().unwrap();
        let marker = folder.path().join("disk-full");
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store =
            SledStorage::open_with_full_disk_marker(db.clone(), EngineConfig::default(), marker.clone()).unwrap();
        let made = vec![
            create(1, mobile_schema::sample::pond(site).into()),
            create(2, mobile_schema::sample::inspection(insp, site, actor.device).into()),
        ];
        store.apply_push(&actor, None, made, 5_000).unwrap();
        let before = store.records_since(0, 100, usize::MAX).unwrap();
        assert!(before.settled && !before.more);

        std::fs::write(&marker, b"").unwrap();
        let edit = Change {
            seq: 3,
            hlc: Hlc::new(2_000, 0),
            kind: RecordKind::Inspection,
            record: id,
            op: Op::Edit {
                units: vec![UnitWrite {
                    key: "conclusion".into(),
                    bases: vec![],
                    value: UnitValue::of(&"written while the disk was full").unwrap(),
                }],
            },
        };
        let failed = store.apply_push(&actor, None, vec![edit], 6_000).unwrap_err();
        assert!(failed.is_not_durable(), "{failed}");
        let undone = store.records_since(0, 100, usize::MAX).unwrap();
        assert!(undone.settled);
        assert_eq!(undone.records, before.records, "the store reads as it was");
        assert_eq!(store.visible_seq(), before.next);
        let mut scanned = Vec::new();
        each_record(&store, |r| {
            scanned.push(r.id);
            Ok(())
        })
        .unwrap();
        assert_eq!(scanned.len(), 2);

        // The server restarts before any group succeeds: what is to be
        // resurfaced was kept with the store.
        store.close();
        drop(store);
        let store =
            SledStorage::open_with_full_disk_marker(db.clone(), EngineConfig::default(), marker.clone()).unwrap();

        // Another change (the same seq: the failed one left no outcome) lands
        // and the inspection comes again after every cursor handed out.
        std::fs::remove_file(&marker).unwrap();
        let other = create(3, mobile_schema::sample::pond(SiteId::generate()).into());
        let answer = store.apply_push(&actor, None, vec![other], 7_000).unwrap();
        assert!(
            matches!(answer.outcomes[0].outcome, Outcome::Applied { .. }),
            "{answer:?}"
        );
        let page = store.records_since(before.next, 100, usize::MAX).unwrap();
        let states: Vec<RecordState> = page
            .records
            .iter()
            .map(|r| serde_json::from_slice(r).unwrap())
            .collect();
        let again = states
            .iter()
            .find(|s| s.id == id)
            .expect("the moved record comes again");
        assert!(
            again.delta(before.next).is_none(),
            "whole, not as the units changed since"
        );
        assert_eq!(
            conclusion_of(again),
            serde_json::json!(mobile_schema::sample::inspection(insp, site, actor.device).conclusion)
        );
        assert!(
            !states.iter().any(|s| s.id == RecordId::from(site)),
            "only what the undone group moved"
        );
    }

    /// Pushes from several tablets race a disk that fills and empties: a
    /// group that fails is undone and leaves no outcome (sent again, its
    /// change is applied, not replayed), and after the store is reopened from
    /// its folder every acknowledged change is there, each record once in the
    /// seq index. `DISK_STORM_SITES` sets the sites each tablet makes (25).
    #[test]
    fn pushes_racing_a_disk_that_fills_are_stored_exactly_when_acknowledged() {
        const TABLETS: usize = 6;
        let sites_per_tablet: u64 = match std::env::var("DISK_STORM_SITES") {
            Ok(v) => v
                .parse()
                .ok()
                .filter(|n| (1..=10_000).contains(n))
                .expect("DISK_STORM_SITES is a number of sites, 1 to 10,000"),
            Err(_) => 25,
        };
        let folder = tempfile::tempdir().unwrap();
        let marker = folder.path().join("disk-full");
        let db = sled::Config::new().path(folder.path().join("db")).open().unwrap();
        let store =
            SledStorage::open_with_full_disk_marker(db.clone(), EngineConfig::default(), marker.clone()).unwrap();
        let stop = AtomicBool::new(false);
        let failures = AtomicUsize::new(0);
        let tablets: Vec<(Actor, Vec<SiteId>)> = (0..TABLETS)
            .map(|_| {
                let actor = Actor {
                    replica: ReplicaId::generate(),
                    user: UserId::generate(),
                    device: DeviceId::generate(),
                    role: Role::Inspector,
                };
                (actor, (0..sites_per_tablet).map(|_| SiteId::generate()).collect())
            })
            .collect();
        std::thread::scope(|scope| {
            // The disk fills and empties while the tablets push.
            let toggler = scope.spawn(|| {
                let mut full = false;
                while !stop.load(Ordering::SeqCst) {
                    full = !full;
                    if full {
                        std::fs::write(&marker, b"").unwrap();
                    } else {
                        let _ = std::fs::remove_file(&marker);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(if full { 3 } else { 7 }));
                }
                let _ = std::fs::remove_file(&marker);
            });
            // Stops the toggler however the pushers end, so a failed
            // assertion fails the test rather than hanging it.
            struct Stop<'a>(&'a AtomicBool);
            impl Drop for Stop<'_> {
                fn drop(&mut self) {
                    self.0.store(true, Ordering::SeqCst);
                }
            }
            let _stop = Stop(&stop);
            let pushers: Vec<_> = tablets
                .iter()
                .map(|(actor, sites)| {
                    let (store, failures) = (&store, &failures);
                    scope.spawn(move || {
                        // Each site is created, then renamed once the create is
                        // acknowledged: the rename builds on a durable version.
                        let mut seq = 0;
                        for (i, site) in sites.iter().enumerate() {
                            let rename = |seq: u64| Change {
                                seq,
                                hlc: Hlc::new(10_000 + seq, 0),
                                kind: RecordKind::Site,
                                record: (*site).into(),
                                op: Op::Edit {
                                    units: vec![UnitWrite {
                                        key: "name".into(),
                                        // The create's version: an edit made after it.
                                        bases: vec![sync_protocol::VersionId::new(actor.replica, seq - 1)],
                                        value: UnitValue::of(&format!("尾矿库 {i}")).unwrap(),
                                    }],
                                },
                            };
                            for change in [
                                create(seq + 1, mobile_schema::sample::pond(*site).into()),
                                rename(seq + 2),
                            ] {
                                seq = change.seq;
                                push_until_durable(store, actor, change, failures);
                            }
                        }
                    })
                })
                .collect();
            for p in pushers {
                p.join().unwrap();
            }
            drop(_stop);
            toggler.join().unwrap();
        });
        assert!(failures.into_inner() > 0, "the disk never filled under a push");

        // Reopened from its folder, every acknowledged change is there, once.
        store.close();
        drop(store);
        drop(db);
        let db = sled::Config::new().path(folder.path().join("db")).open().unwrap();
        let store = SledStorage::open(db, EngineConfig::default()).unwrap();
        let mut names = std::collections::BTreeMap::new();
        let mut since = 0;
        loop {
            // Pages straight from the seq index: a record it held twice shows twice.
            let page = store.records_since(since, 100, usize::MAX).unwrap();
            for bytes in &page.records {
                let r: RecordState = serde_json::from_slice(bytes).unwrap();
                let name = r.units["name"].winner().unwrap().value.get().to_string();
                assert!(names.insert(r.id, name).is_none(), "{} twice", r.id);
            }
            since = page.next;
            if !page.more {
                break;
            }
        }
        assert_eq!(names.len(), TABLETS * sites_per_tablet as usize);
        for (actor, sites) in &tablets {
            for (i, site) in sites.iter().enumerate() {
                assert_eq!(names[&RecordId::from(*site)], format!("\"尾矿库 {i}\""));
            }
            for seq in 1..=2 * sites_per_tablet {
                assert!(store.outcome_of(actor.replica, seq).unwrap().is_some(), "seq {seq}");
            }
            assert!(
                store
                    .outcome_of(actor.replica, 2 * sites_per_tablet + 1)
                    .unwrap()
                    .is_none()
            );
        }
    }

    /// Push one change until it is acknowledged, counting the refusals for
    /// durability. Bounded, so that a store that never recovers fails the test
    /// instead of hanging it.
    fn push_until_durable(store: &SledStorage, actor: &Actor, change: Change, failures: &AtomicUsize) {
        for _ in 0..10_000 {
            match store.apply_push(actor, None, vec![change.clone()], 5_000) {
                Ok(answer) => {
                    // Never a replay: a refused group left no outcome.
                    let done = &answer.outcomes[0];
                    assert!(
                        matches!(done.outcome, Outcome::Applied { .. }) && !done.replayed,
                        "{answer:?}"
                    );
                    return;
                }
                Err(e) => {
                    assert!(e.is_not_durable(), "{e}");
                    failures.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        panic!("seq {} never became durable", change.seq);
    }

    fn conclusion_of(state: &RecordState) -> serde_json::Value {
        let raw = state.units["conclusion"].winner().unwrap().value.get();
        serde_json::from_str(raw).unwrap()
    }
}
