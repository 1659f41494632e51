//! A push and what it sets off, for every path that applies changes: a
//! tablet's push, the office's site lists, and the states a tablet brings
//! back after a restore (`recover`). Before the push, a link edit
//! that moves a record to another region is logged as a move, and a change
//! whose site or inspection the server lacks is logged as waiting; after it,
//! ponds whose level changed are re-planned, the moves are settled and records
//! that waited for what the push created are re-sent. A follow-up that fails
//! is owed: the server retries it every minute while serving
//! ([`FollowUps::retry`]), as it does at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use mobile_schema::ids::RecordId;
use sync_protocol::recovery::{Recovered, RestoreBase};
use sync_protocol::scope::Scope;
use sync_protocol::wire::PushResponse;
use sync_protocol::{Actor, Change, RecordState};

use crate::auth::Authenticated;
use crate::startup::AppState;
use crate::storage::{StorageError, SyncStorage};
use crate::{orphans, schedule, site_moves};

/// Apply `changes` as `actor` and follow them up. Fails only before or in
/// the push itself: once the push is durable its answer stands, and a failed
/// follow-up is logged and retried at the next start from its logged intent.
pub fn apply(
    state: &AppState,
    who: &Authenticated,
    actor: &Actor,
    scope: &Scope,
    changes: Vec<Change>,
    now_ms: u64,
) -> Result<PushResponse, StorageError> {
    let storage = state.storage.as_ref();
    let _in_flight = state.follow_ups.during_push();
    let intents = site_moves::intend(storage, &state.db, &changes)?;
    orphans::note(storage, &state.db, &changes)?;
    let created = orphans::created(&changes);
    let relevelled = schedule::level_changes(&changes);
    let response = match storage.apply_push(actor, Some(scope), changes, now_ms) {
        Ok(response) => response,
        Err(e) => {
            // An intent logged for a push that failed: the retry drops it.
            owe_if(state, !intents.is_empty());
            return Err(e);
        }
    };
    // A pond's level changed: its remaining tasks of the year follow. A
    // supervisor can re-plan by hand if this fails.
    let replanned = state
        .schedule
        .replan_ponds(storage, &state.accounts, who, &relevelled, state.today(), now_ms);
    schedule::log_replans(replanned);
    if !intents.is_empty()
        && let Err(e) = site_moves::settle(storage, &state.db, intents)
    {
        tracing::error!(error = %e, "moving records to their new region failed; retried within a minute");
        state.follow_ups.owe();
    }
    if let Err(e) = orphans::arrived(storage, &state.db, &created) {
        tracing::error!(error = %e, "records that waited for their site were not re-sequenced; retried within a minute");
        state.follow_ups.owe();
    }
    Ok(response)
}

/// After a restore, record states a tablet brings back from the previous
/// epoch, followed up like a push: a state that links its record elsewhere
/// (a site's county corrected after the backup) moves what hangs on it, and
/// records that waited for a recovered one are re-sent. Ponds are not
/// re-planned: the lost epoch's server re-planned them when their levels
/// were pushed, and the tasks it made come back with the tablets; a re-plan
/// against the restored tasks would cancel what they bring.
pub fn recover(
    state: &AppState,
    scope: &Scope,
    states: Vec<RecordState>,
    base: RestoreBase,
) -> Result<Vec<Recovered>, StorageError> {
    let storage = state.storage.as_ref();
    let _in_flight = state.follow_ups.during_push();
    let ids: Vec<RecordId> = states.iter().map(|s| s.id).collect();
    let intents = site_moves::intend_states(storage, &state.db, &states)?;
    orphans::note_states(storage, &state.db, &states)?;
    let answers = match storage.recover(Some(scope), states, base) {
        Ok(answers) => answers,
        Err(e) => {
            // Nothing moved; the retry drops the intents.
            owe_if(state, !intents.is_empty());
            return Err(e);
        }
    };
    if !intents.is_empty()
        && let Err(e) = site_moves::settle(storage, &state.db, intents)
    {
        tracing::error!(error = %e, "moving recovered records to their new region failed; retried within a minute");
        state.follow_ups.owe();
    }
    if let Err(e) = orphans::arrived(storage, &state.db, &ids) {
        tracing::error!(error = %e, "records that waited for a recovered record were not re-sequenced; retried within a minute");
        state.follow_ups.owe();
    }
    Ok(answers)
}

fn owe_if(state: &AppState, owed: bool) {
    if owed {
        state.follow_ups.owe();
    }
}

/// Follow-ups of durable pushes that failed (a full disk, an I/O error), to
/// be finished from their logs, as at start.
#[derive(Debug, Default)]
pub struct FollowUps {
    /// Held shared by each push from its logged intents to their settling,
    /// exclusively by a retry: an intent logged before its push commits would
    /// otherwise look like an edit that moved nothing, and be dropped.
    gate: RwLock<()>,
    owed: AtomicBool,
}

impl FollowUps {
    fn during_push(&self) -> RwLockReadGuard<'_, ()> {
        // The guarded value is `()`: a panic elsewhere cannot leave it wrong.
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    fn owe(&self) {
        self.owed.store(true, Ordering::SeqCst);
    }

    /// If a follow-up failed since the last call: wait until no push is
    /// between its intents and their settling, then settle every unfinished
    /// move and every record whose awaited site has arrived. Returns whether
    /// it ran; a failure leaves the debt for the next call.
    pub fn retry(&self, storage: &dyn SyncStorage, db: &sled::Db) -> Result<bool, StorageError> {
        if !self.owed.swap(false, Ordering::SeqCst) {
            return Ok(false);
        }
        let _no_push_in_flight = self.gate.write().unwrap_or_else(|p| p.into_inner());
        let settled = site_moves::settle_leftovers(storage, db).and_then(|_| orphans::settle_leftovers(storage, db));
        match settled {
            Ok(_) => Ok(true),
            Err(e) => {
                self.owe();
                Err(e)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::Arc;
    use std::sync::mpsc;
    use std::time::Duration;

    use mobile_schema::ids::{DeviceId, InspectionId, SiteId, UserId};
    use mobile_schema::record::RecordKind;
    use mobile_schema::region::RegionCode;
    use mobile_schema::sample;
    use mobile_schema::workflow::Role;
    use sync_protocol::engine::EngineConfig;
    use sync_protocol::{Hlc, Op, ReplicaId, UnitValue, UnitWrite, VersionId};

    use super::*;
    use crate::storage::test_create as create;
    use crate::storage::{SledStorage, SyncStorage};

    /// A pond of 南丹县 with an inspection, and the edit that corrects the
    /// pond's county to 环江县.
    fn pond_and_its_correction() -> (sled::Db, Arc<SledStorage>, Actor, SiteId, InspectionId, Change) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = Arc::new(SledStorage::open(db.clone(), EngineConfig::default()).unwrap());
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: UserId::generate(),
            device: DeviceId::generate(),
            role: Role::Admin,
        };
        let (pond, insp) = (SiteId::generate(), InspectionId::generate());
        let changes = vec![
            create(1, sample::pond(pond).into()),
            create(2, sample::inspection(insp, pond, actor.device).into()),
        ];
        store.apply_push(&actor, None, changes, 5_000).unwrap();
        let edit = Change {
            seq: 3,
            hlc: Hlc::new(1_003, 0),
            kind: RecordKind::Site,
            record: pond.into(),
            op: Op::Edit {
                units: vec![UnitWrite {
                    key: "region_code".into(),
                    bases: vec![VersionId::new(actor.replica, 1)],
                    value: UnitValue::of(&RegionCode::new(451_226).unwrap()).unwrap(),
                }],
            },
        };
        (db, store, actor, pond, insp, edit)
    }

    fn seq_of(store: &SledStorage, id: impl Into<mobile_schema::ids::RecordId>) -> u64 {
        store.record(id.into()).unwrap().unwrap().commit_seq
    }

    #[test]
    fn a_move_a_push_left_unsettled_is_settled_by_the_next_retry() {
        let (db, store, actor, _pond, insp, edit) = pond_and_its_correction();
        let before = seq_of(&store, insp);
        // The push is durable; its settling failed (as on a full disk).
        let _intents = site_moves::intend(store.as_ref(), &db, std::slice::from_ref(&edit)).unwrap();
        store.apply_push(&actor, None, vec![edit], 6_000).unwrap();
        let follow_ups = FollowUps::default();
        assert!(
            !follow_ups.retry(store.as_ref(), &db).unwrap(),
            "nothing owed, nothing run"
        );
        assert_eq!(seq_of(&store, insp), before);

        follow_ups.owe();
        assert!(follow_ups.retry(store.as_ref(), &db).unwrap());
        assert!(
            seq_of(&store, insp) > before,
            "the pond's inspection goes to the new county's tablets"
        );
        assert!(!follow_ups.retry(store.as_ref(), &db).unwrap(), "the debt is paid");
    }

    #[test]
    fn a_retry_waits_for_a_push_between_its_intent_and_its_settling() {
        let (db, store, actor, _pond, insp, edit) = pond_and_its_correction();
        let before = seq_of(&store, insp);
        let follow_ups = Arc::new(FollowUps::default());
        // Another push's follow-up failed earlier: a retry is owed.
        follow_ups.owe();

        let in_flight = follow_ups.during_push();
        let intents = site_moves::intend(store.as_ref(), &db, std::slice::from_ref(&edit)).unwrap();
        let (done_tx, done_rx) = mpsc::channel();
        let retry = {
            let (follow_ups, store, db) = (follow_ups.clone(), store.clone(), db.clone());
            std::thread::spawn(move || {
                let ran = follow_ups.retry(store.as_ref(), &db).unwrap();
                done_tx.send(ran).unwrap();
            })
        };
        // Not a timing assertion on speed: the retry must not finish while the
        // push holds the gate, however long it is given.
        assert!(
            done_rx.recv_timeout(Duration::from_millis(200)).is_err(),
            "the retry ran while a push was in flight"
        );
        store.apply_push(&actor, None, vec![edit], 6_000).unwrap();
        assert_eq!(
            site_moves::settle(store.as_ref(), &db, intents).unwrap(),
            1,
            "the push's own intent was still there to settle"
        );
        drop(in_flight);
        assert!(done_rx.recv_timeout(Duration::from_secs(30)).unwrap());
        retry.join().unwrap();
        assert!(seq_of(&store, insp) > before);
    }
}
