//! A push and what it sets off, for every path that applies changes: a
//! tablet's push and the office's site lists. Before the push, a link edit
//! that moves a record to another region is logged as a move, and a change
//! whose site or inspection the server lacks is logged as waiting; after it,
//! ponds whose level changed are re-planned, the moves are settled and records
//! that waited for what the push created are re-sent.

use sync_protocol::scope::Scope;
use sync_protocol::wire::PushResponse;
use sync_protocol::{Actor, Change};

use crate::auth::Authenticated;
use crate::startup::AppState;
use crate::storage::StorageError;
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
    let intents = site_moves::intend(storage, &state.db, &changes)?;
    orphans::note(storage, &state.db, &changes)?;
    let created = orphans::created(&changes);
    let relevelled = schedule::level_changes(&changes);
    let response = storage.apply_push(actor, Some(scope), changes, now_ms)?;
    // A pond's level changed: its remaining tasks of the year follow. A
    // supervisor can re-plan by hand if this fails.
    let replanned = state
        .schedule
        .replan_ponds(storage, &state.accounts, who, &relevelled, state.today(), now_ms);
    schedule::log_replans(replanned);
    if !intents.is_empty()
        && let Err(e) = site_moves::settle(storage, &state.db, intents)
    {
        tracing::error!(error = %e, "moving records to their new region failed; retried at the next start");
    }
    if let Err(e) = orphans::arrived(storage, &state.db, &created) {
        tracing::error!(error = %e, "records that waited for their site were not re-sequenced; retried at the next start");
    }
    Ok(response)
}
