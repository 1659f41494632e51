//! A site that moves to another region takes its records with it (issue 6):
//! users of the new region must receive the site and its inspections, hazards,
//! tasks, reviews and addenda although their cursors passed them long ago, and
//! users of the old region must have them purged from their devices.
//!
//! After a push that changed a site's `region_code`, the site and everything
//! hanging on it are re-sequenced (so pulls past them see them again), and the
//! move is logged under the site's new commit seq. A pull whose cursor has not
//! yet passed that seq names, in `purge`, the moved records its user could see
//! in the old region and cannot see now.

use std::collections::HashSet;

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use mobile_schema::region::RegionCode;
use serde::{Deserialize, Serialize};
use sync_protocol::scope::{self, Link, Scope};
use sync_protocol::{Change, Op, RecordState};

use crate::access::Visibility;
use crate::storage::{StorageError, SyncStorage};

const MOVES_TREE: &str = "site_moves";
const SCAN_PAGE: usize = 1000;

/// One move, as logged.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Move {
    site: RecordId,
    from: RegionCode,
    to: RegionCode,
    /// The site and the records hanging on it.
    records: Vec<RecordId>,
}

/// The sites a batch may move, with the region each is in now.
pub fn moving_sites(
    storage: &dyn SyncStorage,
    changes: &[Change],
) -> Result<Vec<(RecordId, RegionCode)>, StorageError> {
    let mut out = Vec::new();
    for c in changes {
        let rewrites_region = c.kind == RecordKind::Site
            && matches!(&c.op, Op::Edit { units } if units.iter().any(|u| u.key == "region_code"));
        if !rewrites_region || out.iter().any(|(id, _)| *id == c.record) {
            continue;
        }
        if let Some(state) = storage.record(c.record)?
            && let Link::Region(region) = scope::link_of_state(&state)
        {
            out.push((c.record, region));
        }
    }
    Ok(out)
}

/// After the push: for each site whose region changed, re-sequence it and its
/// records and log the move. Returns the number of sites moved.
pub fn relocate(
    storage: &dyn SyncStorage,
    db: &sled::Db,
    before: &[(RecordId, RegionCode)],
) -> Result<usize, StorageError> {
    let mut moved = 0;
    for &(site, from) in before {
        let Some(state) = storage.record(site)? else { continue };
        let Link::Region(to) = scope::link_of_state(&state) else {
            continue;
        };
        if to == from {
            continue;
        }
        let mut records = dependents(storage, site)?;
        // The site last: its new seq is the highest, and names the move.
        records.push(site);
        storage.resurface(&records)?;
        let Some(state) = storage.record(site)? else { continue };
        let entry = Move {
            site,
            from,
            to,
            records,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|source| StorageError::Corrupt {
            what: "site move",
            source,
        })?;
        let tree = db.open_tree(MOVES_TREE)?;
        tree.insert(state.commit_seq.to_be_bytes(), bytes)?;
        tree.flush()?;
        tracing::info!(%site, %from, %to, records = entry.records.len(), "site moved; its records follow");
        moved += 1;
    }
    Ok(moved)
}

/// The records that hang on `site`: directly, or through one of its inspections.
fn dependents(storage: &dyn SyncStorage, site: RecordId) -> Result<Vec<RecordId>, StorageError> {
    let mut direct = Vec::new();
    let mut inspections = HashSet::new();
    let mut via_inspection: Vec<(RecordId, RecordId)> = Vec::new();
    let mut since = 0;
    loop {
        let page = storage.records_since(since, SCAN_PAGE, usize::MAX)?;
        for bytes in &page.records {
            let state: RecordState =
                serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt { what: "record", source })?;
            match scope::link_of_state(&state) {
                Link::Site(s) if s == site => {
                    if state.kind == RecordKind::Inspection {
                        inspections.insert(state.id);
                    }
                    direct.push(state.id);
                }
                Link::Inspection(i) => via_inspection.push((state.id, i)),
                _ => {}
            }
        }
        since = page.next;
        if !page.more {
            break;
        }
    }
    direct.extend(
        via_inspection
            .into_iter()
            .filter(|(_, i)| inspections.contains(i))
            .map(|(id, _)| id),
    );
    Ok(direct)
}

/// Records moved out of what `scope` sees by moves logged in `(after, upto]`.
pub fn purge_for(
    db: &sled::Db,
    visibility: &mut Visibility<'_>,
    storage: &dyn SyncStorage,
    scope: &Scope,
    after: u64,
    upto: u64,
) -> Result<Vec<RecordId>, StorageError> {
    if scope.is_admin() || upto <= after {
        return Ok(Vec::new());
    }
    let tree = db.open_tree(MOVES_TREE)?;
    let mut out = Vec::new();
    for item in tree.range(after.saturating_add(1).to_be_bytes()..=upto.to_be_bytes()) {
        let (_, bytes) = item?;
        let entry: Move = serde_json::from_slice(&bytes).map_err(|source| StorageError::Corrupt {
            what: "site move",
            source,
        })?;
        if !scope.covers(entry.from) {
            continue;
        }
        for id in entry.records {
            match storage.record(id)? {
                Some(state) if visibility.visible(scope, &state)? => {}
                _ => out.push(id),
            }
        }
    }
    Ok(out)
}
