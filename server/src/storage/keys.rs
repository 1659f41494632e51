//! The server's sled layout: tree names and key encodings, in one place.
//!
//! Everything a push writes lives in one tree, so one `apply_batch` commits a
//! group of pushes atomically (sled batches are atomic per tree, and
//! multi-tree transactions are slow). Keys start with a one-byte family tag;
//! numbers are big-endian so byte order is numeric order.

use mobile_schema::ids::RecordId;
use sync_protocol::{ReplicaId, VersionId};

/// Records, their commit order, outcomes, history and the counters.
pub const SYNC: &str = "sync";
/// Users, devices and refresh tokens.
pub const ACCOUNTS: &str = "accounts";

/// `r` + record id → commit seq (8 bytes) + the record state as JSON.
pub const RECORD: u8 = b'r';
/// `s` + commit seq → record id: the pull order.
pub const SEQ: u8 = b's';
/// `o` + replica id + seq → the change's stored outcome.
pub const OUTCOME: u8 = b'o';
/// `h` + record id + replica id + seq → the units that change wrote, with their
/// author (`history_entry::HistoryEntry` JSON).
pub const HISTORY: u8 = b'h';
/// `u` + record id + replica id + seq + unit key → the unit's value that
/// version wrote, kept when an edit (or a signature) took it out of the
/// record: a history entry names the values that were live when written.
pub const SUPERSEDED: u8 = b'u';
/// `e` + record id + replica id + seq → the change's event for the record's
/// history (`sync_protocol::history`): every answered change, refusals included,
/// written in the batch that writes its outcome.
pub const EVENT: u8 = b'e';
/// `v` + record id → epoch recovery's mark on it (`RecoveryMark` JSON).
pub const RECOVERY: u8 = b'v';
/// `m` + name → a counter or setting.
pub const META: u8 = b'm';

pub const META_COMMIT_SEQ: &[u8] = b"mcommit_seq";
pub const META_HLC: &[u8] = b"mhlc";
pub const META_EPOCH: &[u8] = b"mepoch";
pub const META_JWT_SECRET: &[u8] = b"mjwt_secret";
/// Set by a restore: where this store came from (`storage::backup::RestoreInfo` JSON).
pub const META_RESTORE: &[u8] = b"mrestore";
/// Records an undone group had moved, to be resurfaced by the next group that
/// writes (`sled_store::Writer::undo`).
pub const META_RESURFACE: &[u8] = b"mresurface";

pub fn record(id: RecordId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RECORD;
    k[1..].copy_from_slice(id.as_uuid().as_bytes());
    k
}

pub fn recovery(id: RecordId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = RECOVERY;
    k[1..].copy_from_slice(id.as_uuid().as_bytes());
    k
}

pub fn seq(commit_seq: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = SEQ;
    k[1..].copy_from_slice(&commit_seq.to_be_bytes());
    k
}

/// The commit seq of a `seq` key.
pub fn seq_of(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(1..9)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn outcome(replica: ReplicaId, seq: u64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[0] = OUTCOME;
    k[1..17].copy_from_slice(replica.0.as_bytes());
    k[17..].copy_from_slice(&seq.to_be_bytes());
    k
}

pub fn outcome_prefix(replica: ReplicaId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = OUTCOME;
    k[1..].copy_from_slice(replica.0.as_bytes());
    k
}

/// The seq of an `outcome` key.
pub fn outcome_seq(key: &[u8]) -> Option<u64> {
    let bytes: [u8; 8] = key.get(17..25)?.try_into().ok()?;
    Some(u64::from_be_bytes(bytes))
}

pub fn history(record: RecordId, version: VersionId) -> [u8; 41] {
    let mut k = [0u8; 41];
    k[0] = HISTORY;
    k[1..17].copy_from_slice(record.as_uuid().as_bytes());
    k[17..33].copy_from_slice(version.replica.0.as_bytes());
    k[33..].copy_from_slice(&version.seq.to_be_bytes());
    k
}

pub fn superseded(record: RecordId, version: VersionId, unit: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(41 + unit.len());
    k.extend_from_slice(&history(record, version));
    k[0] = SUPERSEDED;
    k.extend_from_slice(unit.as_bytes());
    k
}

pub fn history_prefix(id: RecordId) -> [u8; 17] {
    let mut k = record(id);
    k[0] = HISTORY;
    k
}

pub fn event(record: RecordId, version: VersionId) -> [u8; 41] {
    let mut k = history(record, version);
    k[0] = EVENT;
    k
}

pub fn event_prefix(id: RecordId) -> [u8; 17] {
    let mut k = record(id);
    k[0] = EVENT;
    k
}

/// The version of a `history` or `event` key.
pub fn version_of(key: &[u8]) -> Option<VersionId> {
    let replica = uuid::Uuid::from_slice(key.get(17..33)?).ok()?;
    let seq: [u8; 8] = key.get(33..41)?.try_into().ok()?;
    Some(VersionId::new(ReplicaId(replica), u64::from_be_bytes(seq)))
}

/// A stored record value: its commit seq, then its JSON.
pub fn record_value(commit_seq: u64, json: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + json.len());
    v.extend_from_slice(&commit_seq.to_be_bytes());
    v.extend_from_slice(json);
    v
}

/// Splits a stored record value into its commit seq and JSON.
pub fn split_record_value(value: &[u8]) -> Option<(u64, &[u8])> {
    let (head, json) = value.split_at_checked(8)?;
    let bytes: [u8; 8] = head.try_into().ok()?;
    Some((u64::from_be_bytes(bytes), json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_keys_sort_numerically_and_round_trip() {
        assert!(seq(255) < seq(256));
        assert_eq!(seq_of(&seq(1 << 40)), Some(1 << 40));
        let r = ReplicaId::generate();
        assert!(outcome(r, 9) < outcome(r, 10));
        assert_eq!(outcome_seq(&outcome(r, 77)), Some(77));
        assert!(outcome(r, u64::MAX).starts_with(&outcome_prefix(r)));
        assert_eq!(split_record_value(&record_value(5, b"{}")), Some((5, &b"{}"[..])));
        assert_eq!(split_record_value(b"short"), None);
        let id = RecordId::from(uuid::Uuid::new_v4());
        let v = VersionId::new(r, 300);
        assert!(event(id, v).starts_with(&event_prefix(id)));
        assert_eq!(version_of(&event(id, v)), Some(v));
        assert_eq!(version_of(&history(id, v)), Some(v));
        assert_eq!(version_of(b"e"), None);
    }
}
