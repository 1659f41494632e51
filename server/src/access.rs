//! What a pull shows a user: the records of their scope, and, when their scope
//! changed since their cursor, the records to purge from their devices.
//!
//! A pull cursor is `SEQ.TAG`: the commit seq and the tag of the scope it was
//! served under. A cursor whose tag is not the user's current one means their
//! role or regions changed: the pull starts again from 0 under the new scope
//! (back-filling what entered it) and names what left it in `purge`. Scopes are
//! kept per user and tag so the old one can be compared: the tag is an unkeyed
//! hash anyone can compute, so a user's cursor only ever reaches scopes that
//! user pulled under, never another's (a forged admin tag would otherwise list
//! every record outside the forger's scope in `purge`).

use std::collections::HashMap;

use chrono::NaiveDate;
use mobile_schema::ids::{RecordId, UserId};
use sync_protocol::RecordState;
use sync_protocol::scope::{self, Scope};

use crate::accounts::User;
use crate::storage::{self, StorageError, SyncStorage};

const SCOPES_TREE: &str = "scopes";

/// The scope a user's record gives them now.
pub fn scope_of(user: &User) -> Scope {
    Scope {
        user: user.id,
        role: user.role,
        regions: user.regions.clone(),
    }
}

/// A parsed pull cursor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub seq: u64,
    /// `None` for `0` and for cursors of servers before scopes.
    pub tag: Option<String>,
    /// Where the device's last pull that reached the end stopped: it holds
    /// every record of its scope as committed up to there, so a record it had
    /// then can come as the units changed since (`RecordState::delta`). 0 when
    /// not known.
    pub complete: u64,
}

impl Cursor {
    /// `seq`, `seq.tag` or `seq.tag.complete`.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.split('.');
        let seq = parts.next()?.parse().ok()?;
        let tag = match parts.next() {
            Some(tag) if tag.len() == 8 && tag.bytes().all(|b| b.is_ascii_hexdigit()) => Some(tag.to_string()),
            Some(_) => return None,
            None => None,
        };
        let complete = match parts.next() {
            Some(c) => c.parse().ok()?,
            None => 0,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(Self { seq, tag, complete })
    }

    pub fn format(seq: u64, complete: u64, scope: &Scope) -> String {
        if complete == 0 {
            format!("{seq}.{}", scope.tag())
        } else {
            format!("{seq}.{}.{complete}", scope.tag())
        }
    }
}

/// Scopes by user and tag, so a cursor's old scope can be compared with the new one.
///
/// Keys are the user's id (16 bytes) and the tag. Entries of older stores,
/// under the bare tag, are never read: a user whose scope changed exactly
/// across the upgrade pulls again from 0 without a purge.
#[derive(Debug, Clone)]
pub struct Scopes {
    tree: sled::Tree,
}

fn scope_key(user: UserId, tag: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + tag.len());
    k.extend_from_slice(user.as_uuid().as_bytes());
    k.extend_from_slice(tag.as_bytes());
    k
}

impl Scopes {
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(Self {
            tree: db.open_tree(SCOPES_TREE)?,
        })
    }

    /// Keep `scope` under its user and tag (once; the writes are rare and small).
    pub fn remember(&self, scope: &Scope) -> Result<(), StorageError> {
        let k = scope_key(scope.user, &scope.tag());
        if self.tree.get(&k)?.is_none() {
            let bytes = serde_json::to_vec(scope).map_err(|source| StorageError::Corrupt { what: "scope", source })?;
            self.tree.insert(k, bytes)?;
        }
        Ok(())
    }

    /// The scope `user` pulled under with `tag`, if they ever did.
    pub fn get(&self, user: UserId, tag: &str) -> Result<Option<Scope>, StorageError> {
        match self.tree.get(scope_key(user, tag))? {
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StorageError::Corrupt { what: "scope", source }),
            None => Ok(None),
        }
    }
}

/// Decides visibility for one pull, caching the sites and inspections it reads.
#[derive(Debug)]
pub struct Visibility<'a> {
    storage: &'a dyn SyncStorage,
    today: NaiveDate,
    cache: HashMap<RecordId, Option<RecordState>>,
}

impl<'a> Visibility<'a> {
    pub fn new(storage: &'a dyn SyncStorage, today: NaiveDate) -> Self {
        Self {
            storage,
            today,
            cache: HashMap::new(),
        }
    }

    pub fn visible(&mut self, scope: &Scope, state: &RecordState) -> Result<bool, StorageError> {
        if scope.is_admin() {
            return Ok(true);
        }
        let (storage, cache) = (self.storage, &mut self.cache);
        let mut lookup = |id: RecordId| -> Result<Option<RecordState>, StorageError> {
            if let Some(hit) = cache.get(&id) {
                return Ok(hit.clone());
            }
            let found = storage.record(id)?;
            cache.insert(id, found.clone());
            Ok(found)
        };
        let region = scope::region_of(scope::link_of_state(state), &mut lookup)?;
        scope::visible(scope, state, region, self.today, &mut lookup)
    }

    /// The stored records of a page that `scope` may see, as they are.
    pub fn filter(&mut self, scope: &Scope, records: Vec<Vec<u8>>) -> Result<Vec<Vec<u8>>, StorageError> {
        if scope.is_admin() {
            return Ok(records);
        }
        let mut out = Vec::with_capacity(records.len());
        for bytes in records {
            let state: RecordState =
                serde_json::from_slice(&bytes).map_err(|source| StorageError::Corrupt { what: "record", source })?;
            if self.visible(scope, &state)? {
                out.push(bytes);
            }
        }
        Ok(out)
    }

    /// Every record `old` showed that `new` does not: to be removed from the
    /// user's devices. One scan of the store, on the rare pull after a scope change.
    pub fn purge(&mut self, old: &Scope, new: &Scope) -> Result<Vec<RecordId>, StorageError> {
        let mut out = Vec::new();
        storage::each_record(self.storage, |state| {
            if self.visible(old, &state)? && !self.visible(new, &state)? {
                out.push(state.id);
            }
            Ok(())
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_parse_with_and_without_a_tag_and_refuse_garbage() {
        assert_eq!(
            Cursor::parse("0"),
            Some(Cursor {
                seq: 0,
                tag: None,
                complete: 0
            })
        );
        assert_eq!(
            Cursor::parse("42.0a1b2c3d"),
            Some(Cursor {
                seq: 42,
                tag: Some("0a1b2c3d".into()),
                complete: 0
            })
        );
        assert_eq!(
            Cursor::parse("42.0a1b2c3d.40"),
            Some(Cursor {
                seq: 42,
                tag: Some("0a1b2c3d".into()),
                complete: 40
            })
        );
        for bad in [
            "",
            "x",
            "1.",
            "1.5",
            "1.zz",
            "-1",
            "1.2.3",
            "1.0123456789abcdef0",
            "1.0a1b2c3d.",
            "1.0a1b2c3d.x",
            "1.0a1b2c3d.4.5",
        ] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
