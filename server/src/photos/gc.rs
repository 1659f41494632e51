//! Garbage collection: expired uploads go at once; a stored photo goes only
//! after nothing has referenced it for the grace period (default 90 days,
//! longer than any offline spell: a tablet may still send the record that
//! names it).
//!
//! A reference is the photo's SHA-256 appearing anywhere in a stored record
//! state (every live version of every unit, so conflicts count) or in the
//! version history. The pass takes `now_ms` so tests drive it with their clock.

use std::collections::HashSet;

use serde::Serialize;

use super::store::{PhotoMeta, is_sha256_hex, keys};
use super::{PhotoError, Photos};
use crate::storage::keys as sync_keys;

const DAY_MS: u64 = 24 * 3600 * 1000;

/// What a pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GcReport {
    /// Incomplete uploads deleted with their bytes.
    pub expired_uploads: usize,
    /// Records of completed uploads forgotten (their photo stays).
    pub forgotten_uploads: usize,
    pub photos: usize,
    pub referenced: usize,
    /// Unreferenced, still within their grace period.
    pub waiting: usize,
    pub collected: usize,
    pub bytes_freed: u64,
}

impl Photos {
    /// One collection pass at `now_ms`.
    pub fn gc(&self, now_ms: u64) -> Result<GcReport, PhotoError> {
        let mut report = GcReport::default();
        for (id, completed) in self.expired_uploads(now_ms)? {
            if self.expire_upload(&id)? {
                if completed {
                    report.forgotten_uploads += 1;
                } else {
                    report.expired_uploads += 1;
                }
            }
        }
        // The scan is no snapshot: a record written during it may name a
        // photo where the scan had passed. Only a scan of a store that held
        // still may collect; otherwise the next pass does.
        let before = self.inner.storage.quiet_writes();
        let referenced = self.referenced_digests()?;
        let still = before.is_some() && self.inner.storage.quiet_writes() == before;
        let grace_ms = self.inner.settings.unreferenced_grace_days.saturating_mul(DAY_MS);
        for meta in self.list_photos()? {
            report.photos += 1;
            if referenced.contains(&meta.sha256) {
                report.referenced += 1;
                if meta.unreferenced_since_ms.is_some() {
                    self.update_photo(&meta.sha256, |m| m.unreferenced_since_ms = None)?;
                }
                continue;
            }
            let since = match meta.unreferenced_since_ms {
                Some(s) => s,
                None => {
                    self.update_photo(&meta.sha256, |m| m.unreferenced_since_ms = Some(now_ms))?;
                    now_ms
                }
            };
            // Both clocks must have run out: unreferenced for the grace period,
            // and stored at least that long (a photo arriving before its record).
            let due =
                still && now_ms.saturating_sub(since) >= grace_ms && now_ms.saturating_sub(meta.stored_ms) >= grace_ms;
            if due {
                self.collect(&meta)?;
                report.collected += 1;
                report.bytes_freed += meta.size;
            } else {
                report.waiting += 1;
            }
        }
        self.flush()?;
        Ok(report)
    }

    fn update_photo(&self, sha: &str, change: impl Fn(&mut PhotoMeta)) -> Result<(), PhotoError> {
        let _one_at_a_time = self.inner.sessions.finalize.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut m) = self.photo(sha)? {
            change(&mut m);
            self.put_photo(&m)?;
        }
        Ok(())
    }

    fn collect(&self, meta: &PhotoMeta) -> Result<(), PhotoError> {
        let _one_at_a_time = self.inner.sessions.finalize.lock().unwrap_or_else(|p| p.into_inner());
        let sha = meta.sha256.as_str();
        for path in [self.inner.dirs.blob(sha), self.inner.dirs.thumb(sha)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(PhotoError::io(&path, e)),
            }
        }
        let mut batch = sled::Batch::default();
        batch.remove(keys::photo(sha));
        for item in self.inner.tree.scan_prefix(keys::named_by_prefix(sha)) {
            let (k, _) = item?;
            batch.remove(k);
        }
        self.inner.tree.apply_batch(batch)?;
        tracing::info!(sha, size = meta.size, "collected an unreferenced photo");
        Ok(())
    }

    /// Every SHA-256 that a stored record state, history entry or replaced
    /// value mentions.
    fn referenced_digests(&self) -> Result<HashSet<String>, PhotoError> {
        let tree = self.inner.db.open_tree(sync_keys::SYNC)?;
        let mut out = HashSet::new();
        for family in [sync_keys::RECORD, sync_keys::HISTORY, sync_keys::SUPERSEDED] {
            for item in tree.scan_prefix([family]) {
                let (_, v) = item?;
                let json = if family == sync_keys::RECORD {
                    match sync_keys::split_record_value(&v) {
                        Some((_, j)) => j,
                        None => continue,
                    }
                } else {
                    &v[..]
                };
                match serde_json::from_slice::<serde_json::Value>(json) {
                    Ok(value) => collect_digests(&value, &mut out),
                    // A value that does not parse cannot prove a photo unused:
                    // keep everything rather than collect on a guess.
                    Err(e) => {
                        return Err(PhotoError::Corrupt {
                            what: "record state",
                            reason: e.to_string(),
                        });
                    }
                }
            }
        }
        Ok(out)
    }
}

fn collect_digests(value: &serde_json::Value, out: &mut HashSet<String>) {
    match value {
        serde_json::Value::String(s) if is_sha256_hex(s) => {
            out.insert(s.clone());
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_digests(v, out)),
        serde_json::Value::Object(map) => map.values().for_each(|v| collect_digests(v, out)),
        _ => {}
    }
}
