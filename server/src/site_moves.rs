//! A site that moves to another region takes its records with it (issue 6):
//! users of the new region must receive the site and its inspections, hazards,
//! tasks, reviews and addenda although their cursors passed them long ago, and
//! users of the old region must have them purged from their devices.
//!
//! Before a push that edits a site's `region_code`, an intent is logged under
//! the commit seq visible then; after it, if the region changed, the site and
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
use sync_protocol::{Change, Op};

use crate::access::Visibility;
use crate::storage::{self, StorageError, SyncStorage};

const MOVES_TREE: &str = "site_moves";

/// One move, as logged. The entry is written before the push that may move
/// the site (an intent), completed after it, and finished at the next start if
/// the server stopped in between: a move is never half made.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Move {
    site: RecordId,
    from: RegionCode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    to: Option<RegionCode>,
    /// The site and the records hanging on it, once known.
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

/// Before a push: log an intent for each site whose `region_code` it edits.
/// The key is the highest commit seq visible now: every record the move
/// re-sequences gets a higher one, and a pull whose range includes the key
/// sees the move (see [`purge_for`]).
pub fn intend(storage: &dyn SyncStorage, db: &sled::Db, changes: &[Change]) -> Result<Intents, StorageError> {
    let mut out = Intents::default();
    let mut seen: Vec<RecordId> = Vec::new();
    for c in changes {
        let rewrites_region = c.kind == RecordKind::Site
            && matches!(&c.op, Op::Edit { units } if units.iter().any(|u| u.key == "region_code"));
        if !rewrites_region || seen.contains(&c.record) {
            continue;
        }
        seen.push(c.record);
        if let Some(state) = storage.record(c.record)?
            && let Link::Region(from) = scope::link_of_state(&state)
        {
            let mut key = storage.visible_seq().to_be_bytes().to_vec();
            key.extend_from_slice(c.record.as_uuid().as_bytes());
            let entry = Move {
                site: c.record,
                from,
                to: None,
                records: Vec::new(),
                done: false,
            };
            let t = tree(db)?;
            t.insert(key.as_slice(), encode(&entry)?)?;
            out.keys.push(key);
        }
    }
    if !out.keys.is_empty() {
        tree(db)?.flush()?;
    }
    Ok(out)
}

/// After the push (or at start for intents left over): sites that did not
/// move drop their intent; sites that moved get their records re-sequenced.
pub fn settle(storage: &dyn SyncStorage, db: &sled::Db, intents: Intents) -> Result<usize, StorageError> {
    let t = tree(db)?;
    let mut moved = 0;
    for key in intents.keys {
        let Some(bytes) = t.get(&key)? else { continue };
        let mut entry = decode(&bytes)?;
        if entry.done {
            continue;
        }
        let to = match storage.record(entry.site)?.map(|s| scope::link_of_state(&s)) {
            Some(Link::Region(to)) => to,
            _ => entry.from,
        };
        if to == entry.from {
            t.remove(&key)?;
            continue;
        }
        let mut records = dependents(storage, entry.site)?;
        records.push(entry.site);
        entry.to = Some(to);
        entry.records = records;
        // Who left the region is known before the records are re-sequenced.
        t.insert(key.as_slice(), encode(&entry)?)?;
        t.flush()?;
        storage.resurface(&entry.records)?;
        entry.done = true;
        t.insert(key.as_slice(), encode(&entry)?)?;
        tracing::info!(site = %entry.site, from = %entry.from, %to, records = entry.records.len(), "site moved; its records follow");
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

/// The records that hang on `site`: directly, or through one of its inspections.
fn dependents(storage: &dyn SyncStorage, site: RecordId) -> Result<Vec<RecordId>, StorageError> {
    let mut direct = Vec::new();
    let mut inspections = HashSet::new();
    let mut via_inspection: Vec<(RecordId, RecordId)> = Vec::new();
    storage::each_record(storage, |state| {
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
        if !scope.covers(entry.from) {
            continue;
        }
        // Not settled yet (the push is being answered): find its records now,
        // since this pull's cursor is about to pass the entry.
        let records = if entry.done {
            entry.records
        } else {
            let mut r = dependents(storage, entry.site)?;
            r.push(entry.site);
            r
        };
        for id in records {
            match storage.record(id)? {
                Some(state) if visibility.visible(scope, &state)? => {}
                _ => out.push(id),
            }
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}
