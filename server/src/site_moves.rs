//! A record that moves to another region takes the records hanging on it
//! along (issue 6): a site whose `region_code` is corrected takes its
//! inspections, hazards, tasks, reviews and addenda; an inspection whose
//! `site_id` is corrected to a pond of another county takes its reviews and
//! addenda. Users of the new region must receive them although their cursors
//! passed them long ago, and users of the old region must have them purged
//! from their devices (the moved record itself too: its own commit only
//! re-sequences it, which a pull outside its new region skips).
//!
//! Before a push that rewrites a record's link (`region_code`, `site_id`,
//! `inspection_id`), an intent is logged under the commit seq visible then;
//! after it, if the region the link leads to changed, the record and
//! everything hanging on it are re-sequenced (so pulls past them see them
//! again) and the entry is completed. A pull whose range covers the entry
//! names, in `purge`, the moved records its user could see in the old region
//! and cannot see now. An intent left by a crash is settled at the next start.

use std::collections::HashSet;

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use mobile_schema::region::RegionCode;
use serde::{Deserialize, Serialize};
use sync_protocol::scope::{self, Link, Scope};
use sync_protocol::{Change, Op, RecordState};

use crate::access::Visibility;
use crate::storage::{self, StorageError, SyncStorage};

const MOVES_TREE: &str = "site_moves";

/// One move, as logged. The entry is written before the push that may move
/// the site (an intent), completed after it, and finished at the next start if
/// the server stopped in between: a move is never half made.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Move {
    /// The record whose link changed (stored as `site`: moves were of sites
    /// first, and entries logged then still read).
    #[serde(rename = "site")]
    record: RecordId,
    /// `None`: the record had no region (its site was missing), so only those
    /// who wrote a version of it saw it, and only their devices purge it.
    from: Option<RegionCode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<RegionCode>,
    /// The record and the records hanging on it, once known.
    #[serde(default)]
    records: Vec<RecordId>,
    /// The records have been re-sequenced.
    #[serde(default)]
    done: bool,
}

/// Moves this push may make, logged before it runs; hand them to [`settle`] after.
#[derive(Debug, Default)]
pub struct Intents {
    keys: Vec<Vec<u8>>,
}

impl Intents {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Durable before the push or recovery they are logged for.
    fn flush(&self, db: &sled::Db) -> Result<(), StorageError> {
        if !self.keys.is_empty() {
            tree(db)?.flush()?;
        }
        Ok(())
    }
}

fn tree(db: &sled::Db) -> Result<sled::Tree, StorageError> {
    Ok(db.open_tree(MOVES_TREE)?)
}

fn decode(bytes: &[u8]) -> Result<Move, StorageError> {
    serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt {
        what: "site move",
        source,
    })
}

fn encode(m: &Move) -> Result<Vec<u8>, StorageError> {
    serde_json::to_vec(m).map_err(|source| StorageError::Corrupt {
        what: "site move",
        source,
    })
}

/// The region `state`'s link leads to now, if the records on the way are known.
fn region_now(storage: &dyn SyncStorage, state: &RecordState) -> Result<Option<RegionCode>, StorageError> {
    scope::region_of(scope::link_of_state(state), &mut |id| storage.record(id))
}

/// Before a push: log an intent for each stored record whose link it edits.
/// The key is the highest commit seq visible now: every record the move
/// re-sequences gets a higher one, and a pull whose range includes the key
/// sees the move (see [`purge_for`]).
pub fn intend(storage: &dyn SyncStorage, db: &sled::Db, changes: &[Change]) -> Result<Intents, StorageError> {
    let mut out = Intents::default();
    let mut seen: Vec<RecordId> = Vec::new();
    for c in changes {
        let rewrites_link = matches!(c.op, Op::Edit { .. }) && scope::link_of_change(c.kind, c).is_some();
        if !rewrites_link || seen.contains(&c.record) {
            continue;
        }
        seen.push(c.record);
        if let Some(state) = storage.record(c.record)? {
            log_intent(storage, db, &state, &mut out)?;
        }
    }
    out.flush(db)?;
    Ok(out)
}

/// Before an epoch recovery: an intent for each stored record whose state
/// brought back holds other versions of its link unit (a site's region
/// corrected after the backup), as [`intend`] logs for a push; [`settle`]
/// drops those that do not end in a move.
pub fn intend_states(
    storage: &dyn SyncStorage,
    db: &sled::Db,
    states: &[RecordState],
) -> Result<Intents, StorageError> {
    let mut out = Intents::default();
    for incoming in states {
        let field = scope::link_field(incoming.kind);
        let versions = |s: &RecordState| s.units.get(field).map(|u| u.live_ids());
        if let Some(state) = storage.record(incoming.id)?
            && versions(&state) != versions(incoming)
        {
            log_intent(storage, db, &state, &mut out)?;
        }
    }
    out.flush(db)?;
    Ok(out)
}

/// The intent of a move of stored record `state`, keyed by the commit seq
/// visible now.
fn log_intent(
    storage: &dyn SyncStorage,
    db: &sled::Db,
    state: &RecordState,
    out: &mut Intents,
) -> Result<(), StorageError> {
    let from = region_now(storage, state)?;
    let mut key = storage.visible_seq().to_be_bytes().to_vec();
    key.extend_from_slice(state.id.as_uuid().as_bytes());
    let entry = Move {
        record: state.id,
        from,
        to: None,
        records: Vec::new(),
        done: false,
    };
    tree(db)?.insert(key.as_slice(), encode(&entry)?)?;
    out.keys.push(key);
    Ok(())
}

/// Records that had no region got one (what they waited for arrived, see
/// `orphans`): logged as a finished move from no region, so that pulls by
/// those who wrote them and cannot see them there purge them.
pub fn log_arrival(storage: &dyn SyncStorage, db: &sled::Db, records: &[RecordId]) -> Result<(), StorageError> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let mut key = storage.visible_seq().to_be_bytes().to_vec();
    key.extend_from_slice(first.as_uuid().as_bytes());
    let entry = Move {
        record: *first,
        from: None,
        to: None,
        records: records.to_vec(),
        done: true,
    };
    let t = tree(db)?;
    t.insert(key, encode(&entry)?)?;
    t.flush()?;
    Ok(())
}

/// After the push (or at start for intents left over): records that did not
/// move drop their intent; records that moved are re-sequenced with what
/// hangs on them.
pub fn settle(storage: &dyn SyncStorage, db: &sled::Db, intents: Intents) -> Result<usize, StorageError> {
    let t = tree(db)?;
    let mut moved = 0;
    for key in intents.keys {
        let Some(bytes) = t.get(&key)? else { continue };
        let mut entry = decode(&bytes)?;
        if entry.done {
            continue;
        }
        let outcome = match storage.record(entry.record)? {
            Some(state) => {
                let to = region_now(storage, &state)?;
                (to != entry.from).then_some((state, to))
            }
            None => None,
        };
        let Some((state, to)) = outcome else {
            t.remove(&key)?;
            continue;
        };
        let mut records = dependents(storage, &state)?;
        records.push(entry.record);
        entry.to = to;
        entry.records = records;
        // Who left the region is known before the records are re-sequenced.
        t.insert(key.as_slice(), encode(&entry)?)?;
        t.flush()?;
        storage.resurface(&entry.records)?;
        entry.done = true;
        t.insert(key.as_slice(), encode(&entry)?)?;
        tracing::info!(record = %entry.record, kind = ?state.kind, from = ?entry.from, to = ?to, records = entry.records.len(), "a record moved to another region; what hangs on it follows");
        moved += 1;
    }
    t.flush()?;
    Ok(moved)
}

/// At start: finish the moves a stop interrupted.
pub fn settle_leftovers(storage: &dyn SyncStorage, db: &sled::Db) -> Result<usize, StorageError> {
    let mut keys = Vec::new();
    for item in tree(db)?.iter() {
        let (k, v) = item?;
        if !decode(&v)?.done {
            keys.push(k.to_vec());
        }
    }
    settle(storage, db, Intents { keys })
}

/// The records that hang on `moved`: on a site directly or through one of its
/// inspections; on an inspection, its reviews and addenda. Nothing hangs on
/// the other kinds.
fn dependents(storage: &dyn SyncStorage, moved: &RecordState) -> Result<Vec<RecordId>, StorageError> {
    let link = match moved.kind {
        RecordKind::Site => Link::Site(moved.id),
        RecordKind::Inspection => Link::Inspection(moved.id),
        _ => return Ok(Vec::new()),
    };
    let mut direct = Vec::new();
    let mut inspections = HashSet::new();
    let mut via_inspection: Vec<(RecordId, RecordId)> = Vec::new();
    storage::each_record(storage, |state| {
        match scope::link_of_state(&state) {
            l if l == link => {
                if state.kind == RecordKind::Inspection {
                    inspections.insert(state.id);
                }
                direct.push(state.id);
            }
            Link::Inspection(i) => via_inspection.push((state.id, i)),
            _ => {}
        }
        Ok(())
    })?;
    direct.extend(
        via_inspection
            .into_iter()
            .filter(|(_, i)| inspections.contains(i))
            .map(|(id, _)| id),
    );
    Ok(direct)
}

/// Records moved out of what `scope` sees by moves logged in `[after, upto]`
/// (inclusive: a move is logged under the seq visible when it began, which a
/// cursor may already sit on).
pub fn purge_for(
    db: &sled::Db,
    visibility: &mut Visibility<'_>,
    storage: &dyn SyncStorage,
    scope: &Scope,
    after: u64,
    upto: u64,
) -> Result<Vec<RecordId>, StorageError> {
    if scope.is_admin() || upto < after {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let from = after.to_be_bytes().to_vec();
    let mut to = upto.to_be_bytes().to_vec();
    to.extend_from_slice(&[0xff; 16]);
    for item in tree(db)?.range(from..=to) {
        let (_, bytes) = item?;
        let entry = decode(&bytes)?;
        // From no region, a record was seen by those who wrote a version of
        // it (checked per record below); from a region, by that region's users.
        if entry.from.is_some_and(|from| !scope.covers(from)) {
            continue;
        }
        // Not settled yet (the push is being answered): find its records now,
        // since this pull's cursor is about to pass the entry.
        let records = if entry.done {
            entry.records
        } else {
            let mut r = match storage.record(entry.record)? {
                Some(state) => dependents(storage, &state)?,
                None => Vec::new(),
            };
            r.push(entry.record);
            r
        };
        for id in records {
            match storage.record(id)? {
                Some(state) if visibility.visible(scope, &state)? => {}
                // Never on this user's devices: nothing to purge.
                Some(state) if entry.from.is_none() && !scope::authored(&state, scope.user) => {}
                _ => out.push(id),
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::storage::SledStorage;
    use crate::storage::test_create as create;
    use mobile_schema::ids::{DeviceId, InspectionId, ReviewId, SiteId, UserId};
    use mobile_schema::sample;
    use mobile_schema::workflow::Role;
    use sync_protocol::engine::EngineConfig;
    use sync_protocol::{Actor, Hlc, Outcome, ReplicaId, UnitValue, UnitWrite, VersionId};

    #[test]
    fn an_inspection_whose_site_was_missing_takes_its_review_along_when_it_is_corrected_to_a_known_pond() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = SledStorage::open(db.clone(), EngineConfig::default()).unwrap();
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Admin,
        };
        let (pond, insp, review) = (SiteId::generate(), InspectionId::generate(), ReviewId::generate());
        // Filed against a pond code the server does not know, submitted and
        // returned: the inspection and its review are seen by their authors only.
        let changes = vec![
            create(1, sample::pond(pond).into()),
            create(2, sample::inspection(insp, SiteId::generate(), actor.device).into()),
            Change {
                seq: 3,
                hlc: Hlc::new(1_003, 0),
                kind: RecordKind::Inspection,
                record: insp.into(),
                op: Op::Transition {
                    action: "submit".into(),
                    versions: None,
                },
            },
            create(
                4,
                mobile_schema::review::Review {
                    id: review,
                    schema_version: mobile_schema::review::Review::SCHEMA_VERSION,
                    inspection_id: insp,
                    reviewer: actor.user,
                    decision: mobile_schema::review::Decision::Approve,
                    decided_at: mobile_schema::time::shanghai_at_ms(1_004),
                    comments: Vec::new(),
                }
                .into(),
            ),
        ];
        let answer = store.apply_push(&actor, None, changes, 5_000).unwrap();
        assert!(
            answer
                .outcomes
                .iter()
                .all(|o| matches!(o.outcome, Outcome::Applied { .. })),
            "{answer:?}"
        );
        let review_seq = store.record(review.into()).unwrap().unwrap().commit_seq;

        // The inspector corrects the pond to one the server has.
        let edit = Change {
            seq: 5,
            hlc: Hlc::new(1_005, 0),
            kind: RecordKind::Inspection,
            record: insp.into(),
            op: Op::Edit {
                units: vec![UnitWrite {
                    key: "site_id".into(),
                    bases: vec![VersionId::new(actor.replica, 2)],
                    value: UnitValue::of(&pond).unwrap(),
                }],
            },
        };
        let intents = intend(&store, &db, std::slice::from_ref(&edit)).unwrap();
        store.apply_push(&actor, None, vec![edit], 6_000).unwrap();
        assert_eq!(settle(&store, &db, intents).unwrap(), 1);
        let moved = store.record(review.into()).unwrap().unwrap();
        assert!(
            moved.commit_seq > review_seq,
            "the review comes again for the pond's county"
        );
        assert_eq!(moved.whole_since, moved.commit_seq);

        // Who wrote them saw them while they had no region: their tablets let
        // them go unless the pond's county is theirs; others had nothing.
        let county = |user, code| Scope {
            user,
            role: Role::Inspector,
            regions: vec![RegionCode::new(code).unwrap()],
        };
        let today = chrono::NaiveDate::from_ymd_opt(2026, 12, 4).unwrap();
        let purge = |scope: &Scope| {
            let mut visibility = crate::access::Visibility::new(&store, today);
            purge_for(&db, &mut visibility, &store, scope, 0, store.visible_seq()).unwrap()
        };
        let mut expected = vec![RecordId::from(insp), RecordId::from(review)];
        expected.sort();
        assert_eq!(purge(&county(actor.user, 450_332)), expected);
        assert_eq!(purge(&county(actor.user, 451_221)), Vec::<RecordId>::new());
        assert_eq!(purge(&county(UserId::generate(), 450_332)), Vec::<RecordId>::new());
    }
}
