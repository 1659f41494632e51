//! Records whose site the server does not know yet: an inspection of a pond
//! the official list brings later, a hazard of a site another tablet has not
//! pushed yet. Their region is unknown, so only their authors see them (the
//! record is let in: offline work is not lost for want of a site). When the
//! awaited record arrives, the records that waited for it, with the reviews
//! and addenda hanging on them, are re-sequenced, so that the region's other
//! devices, whose cursors passed them, receive them; the arrival is logged as
//! a move from no region (`site_moves::log_arrival`), so that their writers
//! outside that region let them go.
//!
//! Before a push, each change that creates a record or rewrites its link, and
//! whose link leads to a record the server lacks, is logged under that
//! record's id (`awaited id ++ waiting id`) and flushed: logged before, not
//! after, so that a site committed between the two pushes' commits still
//! finds what waits for it. After a push that created records, the records
//! waiting for those now stored are looked at again: those whose region is
//! known are re-sequenced, unless they were sent whole after the awaited
//! record was committed (created behind their site in one push); those still
//! waiting (a review whose inspection arrived while its site did not) are
//! logged under the next missing record. An entry goes once its record is
//! re-sequenced, needs no re-sequencing (sent whole after the arrival, or
//! never stored: its push refused, or in flight and committed behind the
//! arrival) or is logged under the next missing record; it stays while its
//! awaited record is still not stored (a create of it refused). A crash
//! between re-sequencing and removing is settled at the next start, whose
//! first run on a store written before this log also logs the records
//! already waiting, and re-sequences those whose site arrived meanwhile.

use std::collections::{BTreeSet, HashMap, HashSet};

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use sync_protocol::scope::{self, Link};
use sync_protocol::{Change, Op, RecordState};

use crate::storage::{self, StorageError, SyncStorage};

const ORPHANS_TREE: &str = "orphans";
/// Holds `SCANNED` once the store's records were looked through for ones
/// waiting (stores written before the log).
const SCANNED_TREE: &str = "orphans_scanned";
const SCANNED: &[u8] = b"scanned";

fn tree(db: &sled::Db) -> Result<sled::Tree, StorageError> {
    Ok(db.open_tree(ORPHANS_TREE)?)
}

fn key(awaited: RecordId, waiting: RecordId) -> [u8; 32] {
    let mut k = [0; 32];
    k[..16].copy_from_slice(awaited.as_uuid().as_bytes());
    k[16..].copy_from_slice(waiting.as_uuid().as_bytes());
    k
}

fn waiting_of(key: &[u8]) -> Option<RecordId> {
    let bytes: [u8; 16] = key.get(16..32)?.try_into().ok()?;
    Some(RecordId(uuid::Uuid::from_bytes(bytes)))
}

/// Follows `link` through the store to the first record on the way the store
/// lacks (`None` when the chain reaches a region, or a malformed link that no
/// arrival can mend). `known` remembers the store's answers. A record created
/// earlier in the same push counts as lacking: its create may be refused.
fn missing(
    storage: &dyn SyncStorage,
    link: Link,
    known: &mut HashMap<RecordId, Option<Link>>,
) -> Result<Option<RecordId>, StorageError> {
    let mut link = link;
    // At most addendum → inspection → site → region.
    for _ in 0..3 {
        let id = match link {
            Link::Region(_) | Link::Unknown => return Ok(None),
            Link::Site(id) | Link::Inspection(id) => id,
        };
        let stored = match known.get(&id) {
            Some(l) => *l,
            None => {
                let l = match link {
                    // A site's link is its region, whatever it is: only whether
                    // it is stored matters, and that needs no decoding (every
                    // inspection pushed asks).
                    Link::Site(_) => storage.contains(id)?.then_some(Link::Unknown),
                    _ => storage.record(id)?.map(|s| scope::link_of_state(&s)),
                };
                known.insert(id, l);
                l
            }
        };
        link = match stored {
            Some(next) => next,
            None => return Ok(Some(id)),
        };
    }
    Ok(None)
}

/// Before a push: log the records it writes whose link leads to a record the
/// server does not hold.
pub fn note(storage: &dyn SyncStorage, db: &sled::Db, changes: &[Change]) -> Result<(), StorageError> {
    let links = changes
        .iter()
        .filter_map(|c| scope::link_of_change(c.kind, c).map(|link| (c.record, link)));
    note_links(storage, db, links)
}

/// Before an epoch recovery: the same for the states a tablet brings back.
pub fn note_states(storage: &dyn SyncStorage, db: &sled::Db, states: &[RecordState]) -> Result<(), StorageError> {
    note_links(storage, db, states.iter().map(|s| (s.id, scope::link_of_state(s))))
}

fn note_links(
    storage: &dyn SyncStorage,
    db: &sled::Db,
    links: impl Iterator<Item = (RecordId, Link)>,
) -> Result<(), StorageError> {
    let mut known = HashMap::new();
    let mut logged = Vec::new();
    for (record, link) in links {
        if let Some(awaited) = missing(storage, link, &mut known)? {
            logged.push(key(awaited, record));
        }
    }
    log(&tree(db)?, logged)
}

fn log(t: &sled::Tree, keys: Vec<[u8; 32]>) -> Result<(), StorageError> {
    if keys.is_empty() {
        return Ok(());
    }
    for k in keys {
        t.insert(k, &[])?;
    }
    t.flush()?;
    Ok(())
}

/// The ids of the records a push creates: what [`arrived`] looks for.
pub fn created(changes: &[Change]) -> Vec<RecordId> {
    changes
        .iter()
        .filter(|c| matches!(c.op, Op::Create { .. }))
        .map(|c| c.record)
        .collect()
}

/// After a push: the records that waited for `ids` reach their region's
/// devices. Returns how many were re-sequenced.
pub fn arrived(storage: &dyn SyncStorage, db: &sled::Db, ids: &[RecordId]) -> Result<usize, StorageError> {
    let t = tree(db)?;
    // The common case: nothing waits for anything.
    if t.is_empty() {
        return Ok(0);
    }
    let mut entries = Vec::new();
    for &id in ids {
        for item in t.scan_prefix(id.as_uuid().as_bytes()) {
            entries.push(item?.0.to_vec());
        }
    }
    settle(storage, db, entries)
}

/// At start: log, once, the records a server without this log stored while
/// their site was missing; then settle what waited for a record that arrived
/// before a stop.
pub fn settle_leftovers(storage: &dyn SyncStorage, db: &sled::Db) -> Result<usize, StorageError> {
    let t = tree(db)?;
    let marks = db.open_tree(SCANNED_TREE)?;
    if !marks.contains_key(SCANNED)? {
        let mut known = HashMap::new();
        let mut logged = Vec::new();
        // Whole since when each parent (a site, an inspection) was, and the
        // records hanging on inspections.
        let mut parents: HashMap<RecordId, Option<u64>> = HashMap::new();
        let mut stale = BTreeSet::new();
        let mut on_inspection = Vec::new();
        storage::each_record(storage, |state| {
            let link = scope::link_of_state(&state);
            if let Some(awaited) = missing(storage, link, &mut known)? {
                logged.push(key(awaited, state.id));
            }
            let (Link::Site(parent) | Link::Inspection(parent)) = link else {
                return Ok(());
            };
            if let Link::Inspection(i) = link {
                on_inspection.push((state.id, i));
            }
            let parent_whole = match parents.get(&parent) {
                Some(w) => *w,
                None => {
                    let w = storage.record(parent)?.map(|p| p.whole_since);
                    parents.insert(parent, w);
                    w
                }
            };
            // Its parent arrived (or moved) after it was last sent whole: an
            // older server may have let it wait for a site that has come.
            if parent_whole.is_some_and(|w| w > state.whole_since) {
                stale.insert(state.id);
            }
            Ok(())
        })?;
        let follow: Vec<RecordId> = on_inspection
            .into_iter()
            .filter(|(_, i)| stale.contains(i))
            .map(|(id, _)| id)
            .collect();
        stale.extend(follow);
        if !logged.is_empty() || !stale.is_empty() {
            tracing::info!(
                waiting = logged.len(),
                resent = stale.len(),
                "records stored while their site was missing now wait for it, or come again whole"
            );
        }
        log(&t, logged)?;
        if !stale.is_empty() {
            let stale: Vec<RecordId> = stale.into_iter().collect();
            crate::site_moves::log_arrival(storage, db, &stale)?;
            storage.resurface(&stale)?;
        }
        marks.insert(SCANNED, &[])?;
        marks.flush()?;
    }
    let mut entries = Vec::new();
    let mut present: HashMap<[u8; 16], bool> = HashMap::new();
    for item in t.iter() {
        let (k, _) = item?;
        let Some(awaited) = k.get(..16).and_then(|a| <[u8; 16]>::try_from(a).ok()) else {
            continue;
        };
        let here = match present.get(&awaited) {
            Some(h) => *h,
            None => {
                let h = storage.contains(RecordId(uuid::Uuid::from_bytes(awaited)))?;
                present.insert(awaited, h);
                h
            }
        };
        if here {
            entries.push(k.to_vec());
        }
    }
    settle(storage, db, entries)
}

/// Entries whose awaited record is stored now: re-sequence their records whose
/// region is known, with what hangs on them; log again those still missing a
/// record further on; drop those whose record was never stored (its push was
/// refused, or is still in flight and commits after the arrival, when its
/// region is known) or was sent whole after the awaited record's commit.
fn settle(storage: &dyn SyncStorage, db: &sled::Db, entries: Vec<Vec<u8>>) -> Result<usize, StorageError> {
    let t = tree(db)?;
    let mut known = HashMap::new();
    let mut awaited_seq: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
    let mut resurface = BTreeSet::new();
    let mut inspections = HashSet::new();
    let mut settled = Vec::new();
    let mut relog = Vec::new();
    for k in entries {
        let (Some(waiting), Some(awaited)) = (waiting_of(&k), k.get(..16)) else {
            continue;
        };
        let seq = match awaited_seq.get(awaited) {
            Some(seq) => *seq,
            None => {
                let id = RecordId(uuid::Uuid::from_bytes(awaited.try_into().unwrap_or_default()));
                let seq = storage.record(id)?.map(|s| s.commit_seq);
                awaited_seq.insert(awaited.to_vec(), seq);
                seq
            }
        };
        // Not arrived after all (its create was refused): keep waiting.
        let Some(seq) = seq else { continue };
        if let Some(state) = storage.record(waiting)? {
            match missing(storage, scope::link_of_state(&state), &mut known)? {
                Some(next) => relog.push(key(next, waiting)),
                None if state.whole_since > seq => {}
                None => {
                    if state.kind == RecordKind::Inspection {
                        inspections.insert(waiting);
                    }
                    resurface.insert(waiting);
                }
            }
        }
        settled.push(k);
    }
    if settled.is_empty() {
        return Ok(0);
    }
    // Reviews and addenda (the engine's pending ones too) went to their
    // inspection's author only, like it.
    if !inspections.is_empty() {
        storage::each_record(storage, |state| {
            if let Link::Inspection(i) = scope::link_of_state(&state)
                && inspections.contains(&i)
            {
                resurface.insert(state.id);
            }
            Ok(())
        })?;
    }
    let resurface: Vec<RecordId> = resurface.into_iter().collect();
    let count = if resurface.is_empty() {
        0
    } else {
        // Their writers outside the region they now have let them go.
        crate::site_moves::log_arrival(storage, db, &resurface)?;
        storage.resurface(&resurface)?
    };
    for k in relog {
        t.insert(k, &[])?;
    }
    for k in settled {
        t.remove(k)?;
    }
    t.flush()?;
    if count > 0 {
        tracing::info!(records = count, "records that waited for their site reach its region");
    }
    Ok(count)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;
    use mobile_schema::ids::{DeviceId, InspectionId, SiteId, UserId};
    use mobile_schema::record::AnyRecord;
    use mobile_schema::workflow::Role;
    use sync_protocol::engine::EngineConfig;
    use sync_protocol::scope::Scope;
    use sync_protocol::{Actor, Hlc, Outcome, ReplicaId};

    use crate::storage::test_create as create;

    fn inspection(site: SiteId, device: DeviceId) -> AnyRecord {
        mobile_schema::sample::inspection(InspectionId::generate(), site, device).into()
    }

    fn admin() -> Actor {
        Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Admin,
        }
    }

    /// A push through the route's steps: logged, applied, then what waited
    /// for its creates looked at. Returns the outcomes.
    fn push(
        store: &SledStorage,
        db: &sled::Db,
        actor: &Actor,
        scope: Option<&Scope>,
        changes: Vec<Change>,
    ) -> Vec<Outcome> {
        note(store, db, &changes).unwrap();
        let ids = created(&changes);
        let answer = store.apply_push(actor, scope, changes, 5_000).unwrap();
        arrived(store, db, &ids).unwrap();
        answer.outcomes.into_iter().map(|o| o.outcome).collect()
    }

    fn applied(outcomes: &[Outcome]) -> bool {
        outcomes.iter().all(|o| matches!(o, Outcome::Applied { .. }))
    }

    fn seq(store: &SledStorage, id: impl Into<RecordId>) -> u64 {
        store.record(id.into()).unwrap().unwrap().commit_seq
    }

    fn fresh() -> (sled::Db, SledStorage) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStorage::open(db.clone(), EngineConfig::default()).unwrap();
        // As a server started on this store would have.
        settle_leftovers(&store, &db).unwrap();
        (db, store)
    }

    fn review(seq: u64, inspection: InspectionId, reviewer: UserId) -> Change {
        create(
            seq,
            mobile_schema::review::Review {
                id: mobile_schema::ids::ReviewId::generate(),
                schema_version: mobile_schema::review::Review::SCHEMA_VERSION,
                inspection_id: inspection,
                reviewer,
                decision: mobile_schema::review::Decision::Return,
                decided_at: mobile_schema::time::shanghai_at_ms(1_030),
                comments: vec![mobile_schema::review::Comment {
                    id: mobile_schema::ids::ItemId::generate(),
                    author: reviewer,
                    text: "塘号有误".into(),
                    unit: None,
                    written_at: mobile_schema::time::shanghai_at_ms(1_030),
                }],
            }
            .into(),
        )
    }

    #[test]
    fn an_inspection_and_its_review_that_waited_for_their_site_come_again_whole_when_it_arrives() {
        let (db, store) = fresh();
        let actor = admin();
        let (site, insp) = (SiteId::generate(), InspectionId::generate());
        let submit = Change {
            seq: 2,
            hlc: Hlc::new(1_002, 0),
            kind: RecordKind::Inspection,
            record: insp.into(),
            op: Op::Transition {
                action: "submit".into(),
                versions: None,
            },
        };
        let outcomes = push(
            &store,
            &db,
            &actor,
            None,
            vec![
                create(1, mobile_schema::sample::inspection(insp, site, actor.device).into()),
                submit,
                review(3, insp, actor.user),
            ],
        );
        assert!(applied(&outcomes), "{outcomes:?}");
        let review_id = tree(&db)
            .unwrap()
            .iter()
            .keys()
            .filter_map(|k| waiting_of(&k.unwrap()))
            .find(|id| *id != RecordId::from(insp))
            .unwrap();
        let keys: Vec<Vec<u8>> = tree(&db).unwrap().iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(
            keys.len(),
            2,
            "both wait for the site, the review under it once its inspection is stored"
        );
        assert!(keys.iter().all(|k| k[..16] == *site.as_uuid().as_bytes()));
        // As for a pending addendum, which the engine makes and no push names:
        // the review follows its inspection without an entry of its own.
        tree(&db).unwrap().remove(key(site.into(), review_id)).unwrap();

        let outcomes = push(
            &store,
            &db,
            &actor,
            None,
            vec![create(4, mobile_schema::sample::pond(site).into())],
        );
        assert!(applied(&outcomes), "{outcomes:?}");
        for id in [RecordId::from(insp), review_id] {
            let state = store.record(id).unwrap().unwrap();
            assert!(state.commit_seq > seq(&store, site), "{id} comes again after its site");
            assert_eq!(state.whole_since, state.commit_seq, "and whole");
        }
        assert!(tree(&db).unwrap().is_empty());
    }

    #[test]
    fn a_refused_create_of_the_awaited_site_leaves_its_records_waiting() {
        let (db, store) = fresh();
        let actor = admin();
        let (site, insp) = (SiteId::generate(), InspectionId::generate());
        push(
            &store,
            &db,
            &actor,
            None,
            vec![create(
                1,
                mobile_schema::sample::inspection(insp, site, actor.device).into(),
            )],
        );
        let before = seq(&store, insp);
        // A supervisor of another county may not create the pond (南丹县).
        let elsewhere = Scope {
            user: actor.user,
            role: Role::Supervisor,
            regions: vec![mobile_schema::region::RegionCode::new(450_332).unwrap()],
        };
        let supervisor = Actor {
            role: Role::Supervisor,
            ..actor
        };
        let outcomes = push(
            &store,
            &db,
            &supervisor,
            Some(&elsewhere),
            vec![create(2, mobile_schema::sample::pond(site).into())],
        );
        assert!(!applied(&outcomes), "{outcomes:?}");
        assert_eq!(seq(&store, insp), before);
        assert_eq!(tree(&db).unwrap().len(), 1, "still waiting");
        // The office creates it: now it comes.
        let outcomes = push(
            &store,
            &db,
            &actor,
            None,
            vec![create(3, mobile_schema::sample::pond(site).into())],
        );
        assert!(applied(&outcomes), "{outcomes:?}");
        assert!(seq(&store, insp) > seq(&store, site));
        assert!(tree(&db).unwrap().is_empty());
    }

    #[test]
    fn records_stored_before_the_log_and_after_a_stop_are_settled_at_start() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStorage::open(db.clone(), EngineConfig::default()).unwrap();
        let actor = admin();
        let (site, insp, later) = (SiteId::generate(), InspectionId::generate(), InspectionId::generate());
        let (came, early, fine) = (SiteId::generate(), InspectionId::generate(), InspectionId::generate());
        // A server without the log took an inspection of a missing pond; and
        // one of another pond that came later, with its review; and one of a
        // pond it had.
        let outcomes = store
            .apply_push(
                &actor,
                None,
                vec![
                    create(1, mobile_schema::sample::inspection(insp, site, actor.device).into()),
                    create(2, mobile_schema::sample::inspection(early, came, actor.device).into()),
                    Change {
                        seq: 3,
                        hlc: Hlc::new(1_003, 0),
                        kind: RecordKind::Inspection,
                        record: early.into(),
                        op: Op::Transition {
                            action: "submit".into(),
                            versions: None,
                        },
                    },
                    review(4, early, actor.user),
                    create(5, mobile_schema::sample::pond(came).into()),
                    create(6, mobile_schema::sample::inspection(fine, came, actor.device).into()),
                ],
                5_000,
            )
            .unwrap()
            .outcomes;
        assert!(
            outcomes.iter().all(|o| matches!(o.outcome, Outcome::Applied { .. })),
            "{outcomes:?}"
        );
        let review_id = store
            .records_since(0, 100, usize::MAX)
            .unwrap()
            .records
            .iter()
            .map(|r| serde_json::from_slice::<sync_protocol::RecordState>(r).unwrap())
            .find(|r| r.kind == RecordKind::Review)
            .unwrap()
            .id;
        let seqs = |ids: &[RecordId]| ids.iter().map(|id| seq(&store, *id)).collect::<Vec<_>>();
        let resent = [RecordId::from(early), review_id];
        let (before, fine_before) = (seqs(&resent), seq(&store, fine));
        settle_leftovers(&store, &db).unwrap();
        assert_eq!(tree(&db).unwrap().len(), 1, "found by the first start's scan");
        for (after, before) in seqs(&resent).into_iter().zip(before) {
            assert!(after > before, "what waited for the pond that came is sent again");
        }
        assert_eq!(seq(&store, fine), fine_before, "what came after its pond is not");
        // This server logs another of the missing pond; the pond arrives and it stops
        // before it looks at what waited.
        note(
            &store,
            &db,
            &[create(
                7,
                mobile_schema::sample::inspection(later, site, actor.device).into(),
            )],
        )
        .unwrap();
        store
            .apply_push(
                &actor,
                None,
                vec![
                    create(7, mobile_schema::sample::inspection(later, site, actor.device).into()),
                    create(8, mobile_schema::sample::pond(site).into()),
                ],
                5_000,
            )
            .unwrap();
        assert_eq!(settle_leftovers(&store, &db).unwrap(), 2);
        for id in [insp, later] {
            assert!(seq(&store, id) > seq(&store, site), "{id} comes again after its site");
        }
        assert!(tree(&db).unwrap().is_empty());
        assert_eq!(settle_leftovers(&store, &db).unwrap(), 0);
    }

    #[test]
    fn states_a_tablet_brings_back_after_a_restore_wait_for_their_site_too() {
        let (db, store) = fresh();
        let actor = admin();
        let (site, insp) = (SiteId::generate(), InspectionId::generate());
        store
            .apply_push(
                &actor,
                None,
                vec![create(
                    1,
                    mobile_schema::sample::inspection(insp, site, actor.device).into(),
                )],
                5_000,
            )
            .unwrap();
        let state = store.record(insp.into()).unwrap().unwrap();
        assert!(tree(&db).unwrap().is_empty());
        note_states(&store, &db, &[state]).unwrap();
        let keys: Vec<Vec<u8>> = tree(&db).unwrap().iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(keys, vec![key(site.into(), insp.into()).to_vec()]);
    }

    #[test]
    fn a_record_created_behind_its_site_in_one_push_is_not_sent_again_and_one_missing_a_site_further_on_waits() {
        let (db, store) = fresh();
        let actor = admin();
        let (here, missing_site) = (SiteId::generate(), SiteId::generate());
        let insp = InspectionId::generate();
        let changes = vec![
            create(1, mobile_schema::sample::pond(here).into()),
            create(2, mobile_schema::sample::inspection(insp, here, actor.device).into()),
        ];
        note(&store, &db, &changes).unwrap();
        assert_eq!(tree(&db).unwrap().len(), 1, "the pond's create might be refused");
        let ids = created(&changes);
        store.apply_push(&actor, None, changes, 5_000).unwrap();
        assert_eq!(
            arrived(&store, &db, &ids).unwrap(),
            0,
            "sent whole after its pond already"
        );
        let first = seq(&store, insp);
        assert!(first > seq(&store, here));
        assert!(
            tree(&db).unwrap().is_empty(),
            "its entry went once the push was answered"
        );
        let waiting = inspection(missing_site, actor.device);
        let waiting_id = waiting.id();
        push(&store, &db, &actor, None, vec![create(3, waiting)]);
        assert_eq!(seq(&store, insp), first, "not re-sequenced");
        let before = seq(&store, waiting_id);
        // Entries under a record that arrived, for an inspection whose own
        // site is still missing, and for a record the store never took.
        let t = tree(&db).unwrap();
        // (Its own entry, logged by its push, taken away: the one found under
        // the arrived pond must log it again.)
        assert!(t.remove(key(missing_site.into(), waiting_id)).unwrap().is_some());
        t.insert(key(here.into(), waiting_id), &[]).unwrap();
        t.insert(key(here.into(), InspectionId::generate().into()), &[])
            .unwrap();
        assert_eq!(arrived(&store, &db, &[here.into()]).unwrap(), 0);
        assert_eq!(seq(&store, waiting_id), before);
        let keys: Vec<Vec<u8>> = t.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(keys, vec![key(missing_site.into(), waiting_id).to_vec()]);
        // Its site arrives: it is re-sequenced and nothing waits any more.
        push(
            &store,
            &db,
            &actor,
            None,
            vec![create(4, mobile_schema::sample::pond(missing_site).into())],
        );
        assert!(seq(&store, waiting_id) > before);
        assert!(t.is_empty());
    }
}
