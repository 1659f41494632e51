//! Records whose site the server does not know yet: an inspection of a pond
//! the official list brings later, a hazard of a site another tablet has not
//! pushed yet. Their region is unknown, so only their authors see them (the
//! record is let in: offline work is not lost for want of a site). When the
//! awaited record arrives, the records that waited for it are re-sequenced, so
//! that the region's other devices, whose cursors passed them, receive them.
//!
//! Before a push, each change that creates a record or rewrites its link, and
//! whose link leads to a record the server lacks, is logged under that
//! record's id (`awaited id ++ waiting id`) and flushed: logged before, not
//! after, so that a site committed between the two pushes' commits still
//! finds what waits for it. After a push that created records, the records
//! waiting for them are looked at again: those whose region is known now are
//! re-sequenced; those still waiting (a review whose inspection arrived while
//! its site did not) are logged under the next missing record. An entry goes
//! only once its record is re-sequenced, so a crash in between is settled at
//! the next start.

use std::collections::{BTreeSet, HashMap};

use mobile_schema::ids::RecordId;
use sync_protocol::scope::{self, Link};
use sync_protocol::{Change, Op};

use crate::storage::{StorageError, SyncStorage};

const ORPHANS_TREE: &str = "orphans";

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
/// arrival can mend). `arriving` are links of records created by the same
/// push, ahead of the change looked at; `known` remembers the store's answers.
fn missing(
    storage: &dyn SyncStorage,
    link: Link,
    arriving: &HashMap<RecordId, Link>,
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
        link = match stored.or_else(|| arriving.get(&id).copied()) {
            Some(next) => next,
            None => return Ok(Some(id)),
        };
    }
    Ok(None)
}

/// Before a push: log the records it writes whose link leads to a record the
/// server does not hold.
pub fn note(storage: &dyn SyncStorage, db: &sled::Db, changes: &[Change]) -> Result<(), StorageError> {
    let mut arriving = HashMap::new();
    let mut known = HashMap::new();
    let mut logged = Vec::new();
    for c in changes {
        let Some(link) = scope::link_of_change(c.kind, c) else {
            continue;
        };
        // A site or a draw names its region itself: nothing to wait for.
        if !matches!(link, Link::Region(_))
            && let Some(awaited) = missing(storage, link, &arriving, &mut known)?
        {
            logged.push(key(awaited, c.record));
        }
        if matches!(c.op, Op::Create { .. }) {
            arriving.insert(c.record, link);
        }
    }
    if !logged.is_empty() {
        let t = tree(db)?;
        for k in logged {
            t.insert(k, &[])?;
        }
        t.flush()?;
    }
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
    settle(storage, &t, entries)
}

/// At start: what a stop interrupted after its awaited record arrived.
pub fn settle_leftovers(storage: &dyn SyncStorage, db: &sled::Db) -> Result<usize, StorageError> {
    let t = tree(db)?;
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
                let h = storage.record(RecordId(uuid::Uuid::from_bytes(awaited)))?.is_some();
                present.insert(awaited, h);
                h
            }
        };
        if here {
            entries.push(k.to_vec());
        }
    }
    settle(storage, &t, entries)
}

/// Entries whose awaited record is stored now: re-sequence their records whose
/// region is known, log again those still missing a record further on, drop
/// those whose record was never stored (its push was refused, or is still in
/// flight and commits after the arrival, when its region is known).
fn settle(storage: &dyn SyncStorage, t: &sled::Tree, entries: Vec<Vec<u8>>) -> Result<usize, StorageError> {
    if entries.is_empty() {
        return Ok(0);
    }
    let mut known = HashMap::new();
    let mut resurface = BTreeSet::new();
    let mut relog = Vec::new();
    for k in &entries {
        let Some(waiting) = waiting_of(k) else { continue };
        let Some(state) = storage.record(waiting)? else {
            continue;
        };
        match missing(storage, scope::link_of_state(&state), &HashMap::new(), &mut known)? {
            Some(next) => relog.push(key(next, waiting)),
            None => {
                resurface.insert(waiting);
            }
        }
    }
    let resurface: Vec<RecordId> = resurface.into_iter().collect();
    let count = if resurface.is_empty() {
        0
    } else {
        storage.resurface(&resurface)?
    };
    for k in relog {
        t.insert(k, &[])?;
    }
    for k in entries {
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
    use sync_protocol::{Actor, Hlc, Outcome, ReplicaId, UnitValue};

    fn create(seq: u64, record: AnyRecord) -> Change {
        let mut doc = serde_json::to_value(&record).unwrap();
        doc.as_object_mut().unwrap().remove("kind");
        Change {
            seq,
            hlc: Hlc::new(1_000 + seq, 0),
            kind: record.kind(),
            record: record.id(),
            op: Op::Create {
                record: UnitValue::of(&doc).unwrap(),
                versions: None,
            },
        }
    }

    fn inspection(site: SiteId, device: DeviceId) -> AnyRecord {
        mobile_schema::sample::inspection(InspectionId::generate(), site, device).into()
    }

    fn push(store: &SledStorage, db: &sled::Db, actor: &Actor, changes: Vec<Change>) {
        note(store, db, &changes).unwrap();
        let answer = store.apply_push(actor, None, changes, 5_000).unwrap();
        for o in &answer.outcomes {
            assert!(matches!(o.outcome, Outcome::Applied { .. }), "{o:?}");
        }
    }

    #[test]
    fn records_that_waited_for_a_site_that_arrived_before_a_stop_are_resequenced_at_start() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStorage::open(db.clone(), EngineConfig::default()).unwrap();
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Admin,
        };
        let (site, insp) = (SiteId::generate(), InspectionId::generate());
        let waiting = inspection(site, actor.device);
        let waiting_id = waiting.id();
        push(
            &store,
            &db,
            &actor,
            vec![
                create(1, mobile_schema::sample::inspection(insp, site, actor.device).into()),
                create(2, waiting),
            ],
        );
        assert_eq!(tree(&db).unwrap().len(), 2, "both wait for the site");
        // The site arrives; the server stops before it looks at what waited.
        push(
            &store,
            &db,
            &actor,
            vec![create(3, mobile_schema::sample::pond(site).into())],
        );
        let site_seq = store.record(site.into()).unwrap().unwrap().commit_seq;
        assert_eq!(settle_leftovers(&store, &db).unwrap(), 2);
        for id in [RecordId::from(insp), waiting_id] {
            let state = store.record(id).unwrap().unwrap();
            assert!(state.commit_seq > site_seq, "{id} comes again after its site");
            assert_eq!(state.whole_since, state.commit_seq, "and whole");
        }
        assert!(tree(&db).unwrap().is_empty());
        assert_eq!(settle_leftovers(&store, &db).unwrap(), 0);
    }

    #[test]
    fn a_record_still_missing_a_site_further_on_waits_for_it_and_one_never_stored_is_let_go() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStorage::open(db.clone(), EngineConfig::default()).unwrap();
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Admin,
        };
        let (here, missing_site) = (SiteId::generate(), SiteId::generate());
        let insp = InspectionId::generate();
        push(
            &store,
            &db,
            &actor,
            vec![
                create(1, mobile_schema::sample::pond(here).into()),
                // Same push: its site arrives ahead of it, nothing waits.
                create(2, mobile_schema::sample::inspection(insp, here, actor.device).into()),
            ],
        );
        assert!(tree(&db).unwrap().is_empty());
        let waiting = inspection(missing_site, actor.device);
        let waiting_id = waiting.id();
        push(&store, &db, &actor, vec![create(3, waiting)]);
        let before = store.record(waiting_id).unwrap().unwrap().commit_seq;
        // Entries under a record that arrived, for an inspection whose own site is
        // still missing, and for a record the store never took.
        let t = tree(&db).unwrap();
        t.insert(key(here.into(), waiting_id), &[]).unwrap();
        t.insert(key(here.into(), InspectionId::generate().into()), &[])
            .unwrap();
        assert_eq!(arrived(&store, &db, &[here.into()]).unwrap(), 0);
        assert_eq!(store.record(waiting_id).unwrap().unwrap().commit_seq, before);
        let keys: Vec<Vec<u8>> = t.iter().keys().map(|k| k.unwrap().to_vec()).collect();
        assert_eq!(keys, vec![key(missing_site.into(), waiting_id).to_vec()]);
        // Its site arrives: it is re-sequenced and nothing waits any more.
        push(
            &store,
            &db,
            &actor,
            vec![create(4, mobile_schema::sample::pond(missing_site).into())],
        );
        assert_eq!(arrived(&store, &db, &[missing_site.into()]).unwrap(), 1);
        assert!(store.record(waiting_id).unwrap().unwrap().commit_seq > before);
        assert!(t.is_empty());
    }
}
