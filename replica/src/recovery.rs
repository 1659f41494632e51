//! After the server was restored from a backup (a new epoch in a push or pull
//! answer), send back every record state this tablet holds from the previous
//! epoch past the backup, its own acknowledged changes on top, so the server
//! re-establishes the versions it lost under their original ids and authors
//! (docs/protocol.md §9). Then the pull starts again from `0`: the old cursor
//! counts commits of a history the server no longer has.

use std::collections::{BTreeMap, BTreeSet};

use mobile_schema::ids::RecordId;
use sync_protocol::RecordState;
use sync_protocol::recovery::{RecoverRequest, RecoverResponse};

use crate::error::{ReplicaError, decode};
use crate::keys::{self, meta};
use crate::store::{AckedEntry, Replica, T, Write, read_meta};
use crate::sync::SyncReport;
use crate::transport::{Transport, TransportError};

/// Record states per recovery request: well under the server's limit
/// (`MAX_RECOVER_RECORDS`).
const RECOVER_BATCH: usize = 64;
/// JSON bytes per recovery request, well under the server's push body limit
/// (16 MiB by default) and kind to slow links; a single larger state goes alone.
const RECOVER_BYTES: usize = 2 * 1024 * 1024;

/// Consecutive runs of `states` within both bounds.
fn batches(states: &[RecordState]) -> Vec<&[RecordState]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut bytes = 0;
    for (i, s) in states.iter().enumerate() {
        let size = serde_json::to_vec(s).map(|v| v.len()).unwrap_or(0);
        if i > start && (i - start >= RECOVER_BATCH || bytes + size > RECOVER_BYTES) {
            out.push(&states[start..i]);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < states.len() {
        out.push(&states[start..]);
    }
    out
}

impl Replica {
    /// The epoch this store last synced under, when `seen` is another: the
    /// server was restored and this store must recover.
    pub(crate) fn epoch_changed(&self, seen: &str) -> Result<Option<String>, ReplicaError> {
        let stored: Option<String> = read_meta(&self.t.meta, meta::EPOCH)?;
        Ok(stored.filter(|s| !s.is_empty() && !seen.is_empty() && s != seen))
    }

    /// Whether this store has recovered under the epoch it now syncs with: then
    /// the server lacks some of its acknowledged seqs for good, and a seq gap is
    /// answered by taking a new replica id.
    pub(crate) fn recovered_this_epoch(&self) -> Result<bool, ReplicaError> {
        let stored: Option<String> = read_meta(&self.t.meta, meta::EPOCH)?;
        let recovered: Option<String> = read_meta(&self.t.meta, meta::RECOVERED_EPOCH)?;
        Ok(stored.is_some() && stored == recovered)
    }

    /// Send back what the server lost (see the module), then adopt its epoch
    /// and pull from `0`. Safe to cut and run again: the server skips versions
    /// it has.
    pub(crate) fn recover_epoch(
        &mut self,
        transport: &mut impl Transport,
        old_epoch: &str,
        new_epoch: &str,
        report: &mut SyncReport,
    ) -> Result<(), ReplicaError> {
        let ask = RecoverRequest {
            epoch: old_epoch.to_string(),
            records: Vec::new(),
        };
        let base = match transport.recover(ask) {
            Ok(answer) => Some(answer.base_seq),
            // Not restored from this store's epoch (another server, or a restore
            // of a restore): nothing of ours to give back; start over.
            Err(TransportError::Rejected { status: 409, .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let mut done_ids = BTreeSet::new();
        if let Some(base) = base {
            let states = self.states_past(base)?;
            for chunk in batches(&states) {
                let answer: RecoverResponse = transport.recover(RecoverRequest {
                    epoch: old_epoch.to_string(),
                    records: chunk.to_vec(),
                })?;
                report.recovered += answer.added;
                report.recover_refused += answer.refused.len();
                let refused: BTreeSet<RecordId> = answer.refused.iter().map(|r| r.record).collect();
                done_ids.extend(chunk.iter().map(|s| s.id).filter(|id| !refused.contains(id)));
            }
        }
        let mut w = Write::default();
        // Their content is on the server now; pulls bring it back.
        for (key, a) in self.acked_entries()? {
            if done_ids.contains(&a.change.record) {
                w.del(T::Acked, key);
            }
        }
        // Photos sent after the backup were lost with it; the files are still
        // here. Queued again, the upload asks first and skips what the server has.
        for item in self.t.photos.iter() {
            let (k, v) = item?;
            let mut e: crate::photos::PhotoEntry = decode(keys::PHOTOS, &k, &v)?;
            if e.uploaded && self.photo_path(&e.sha256).exists() {
                e.uploaded = false;
                e.upload_url = None;
                w.put(T::Photos, &k, crate::error::encode(keys::PHOTOS, &e)?);
            }
        }
        w.meta(meta::EPOCH, &new_epoch)?;
        w.meta(meta::RECOVERED_EPOCH, &new_epoch)?;
        w.meta(meta::CURSOR, &"0")?;
        self.commit(w)?;
        report.epoch_recovered = true;
        Ok(())
    }

    /// Every record this store knows from the server with a commit past `base`,
    /// and every record with acknowledged changes not pulled back: the pulled
    /// state with those changes on top, carrying the highest commit seq seen.
    fn states_past(&self, base: u64) -> Result<Vec<RecordState>, ReplicaError> {
        let acked = self.acked_entries()?;
        let mut by_record: BTreeMap<RecordId, Vec<&AckedEntry>> = BTreeMap::new();
        for (_, a) in &acked {
            by_record.entry(a.change.record).or_default().push(a);
        }
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        for item in self.t.records.iter() {
            let (k, v) = item?;
            let state: RecordState = decode(keys::RECORDS, &k, &v)?;
            let mine = by_record.get(&state.id).map(Vec::as_slice).unwrap_or_default();
            let top = mine
                .iter()
                .map(|a| a.commit_seq)
                .max()
                .unwrap_or(0)
                .max(state.commit_seq);
            seen.insert(state.id);
            if top <= base {
                continue;
            }
            let id = state.id;
            if let Some(mut view) = self.rebuild(Some(state), mine, &[]) {
                view.id = id;
                view.commit_seq = top;
                out.push(view);
            }
        }
        for (id, mine) in &by_record {
            if seen.contains(id) {
                continue;
            }
            let top = mine.iter().map(|a| a.commit_seq).max().unwrap_or(0);
            if top <= base {
                continue;
            }
            if let Some(mut view) = self.rebuild(None, mine, &[]) {
                view.commit_seq = top;
                out.push(view);
            }
        }
        Ok(out)
    }
}
