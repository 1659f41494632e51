//! Every sled tree name and key encoding of the store, in one place. Numbers in
//! keys are big-endian so that byte order is numeric order: a scan of `outbox`
//! walks changes in seq order.

use mobile_schema::ids::{RecordId, Sha256Hex};
use sync_protocol::ReplicaId;
use uuid::Uuid;

use crate::error::ReplicaError;

/// Server record states, as last pulled: record id → `RecordState` JSON.
pub const RECORDS: &str = "records";
/// Local views of records with unacknowledged or not-yet-pulled changes:
/// record id → `RecordState` JSON.
pub const LOCAL: &str = "local";
/// Changes not yet answered: seq → `Change` JSON.
pub const OUTBOX: &str = "outbox";
/// Per-record index of the outbox: record id ++ seq → empty.
pub const PENDING: &str = "pending";
/// Acknowledged changes whose effect has not been pulled yet:
/// replica id ++ seq → `AckedEntry` JSON.
pub const ACKED: &str = "acked";
/// Changes the server refused, kept for the user: replica id ++ seq → `RefusedEntry` JSON.
pub const REFUSED: &str = "refused";
/// Store metadata: name → JSON value (see [`meta`]).
pub const META: &str = "meta";
/// Photo queue: SHA-256 hex → `PhotoEntry` JSON.
pub const PHOTOS: &str = "photos";

/// The folder of the replica dir holding photo bytes under their SHA-256.
pub const BLOBS_DIR: &str = "blobs";
/// The folder of the replica dir holding the sled database.
pub const SLED_DIR: &str = "sled";

/// Keys of the `meta` tree. Values are JSON.
pub mod meta {
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    pub const REPLICA_ID: &[u8] = b"replica_id";
    pub const NEXT_SEQ: &[u8] = b"next_seq";
    pub const LAST_HLC: &[u8] = b"last_hlc";
    pub const IDENTITY: &[u8] = b"identity";
    pub const CLOCK_OFFSET_MS: &[u8] = b"clock_offset_ms";
    pub const EPOCH: &[u8] = b"epoch";
    pub const CURSOR: &[u8] = b"pull_cursor";
    /// Local time (ms) at which the last sync completed its pull. Absent in
    /// stores that never synced; no schema change, as readers treat it as optional.
    pub const LAST_SYNC_MS: &[u8] = b"last_sync_ms";
    /// The epoch under which this store last sent back what a restored server
    /// lacked (optional, like `LAST_SYNC_MS`).
    pub const RECOVERED_EPOCH: &[u8] = b"recovered_epoch";
    /// The deployment's rule settings, as the server last gave them
    /// (optional: the defaults before the first login that brought them).
    pub const RULES: &[u8] = b"rules";
}

/// The store layout this build writes.
pub const SCHEMA_VERSION: u32 = 2;

pub fn seq(seq: u64) -> [u8; 8] {
    seq.to_be_bytes()
}

pub fn decode_seq(tree: &'static str, key: &[u8]) -> Result<u64, ReplicaError> {
    let bytes: [u8; 8] = key
        .try_into()
        .map_err(|_| ReplicaError::corrupt(tree, key, "not an 8-byte seq"))?;
    Ok(u64::from_be_bytes(bytes))
}

pub fn record(id: RecordId) -> [u8; 16] {
    *id.0.as_bytes()
}

pub fn decode_record(tree: &'static str, key: &[u8]) -> Result<RecordId, ReplicaError> {
    let bytes: [u8; 16] = key
        .try_into()
        .map_err(|_| ReplicaError::corrupt(tree, key, "not a 16-byte record id"))?;
    Ok(RecordId(Uuid::from_bytes(bytes)))
}

/// `pending`: record id ++ seq.
pub fn pending(id: RecordId, s: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(&record(id));
    k[16..].copy_from_slice(&seq(s));
    k
}

pub fn decode_pending(key: &[u8]) -> Result<(RecordId, u64), ReplicaError> {
    if key.len() != 24 {
        return Err(ReplicaError::corrupt(PENDING, key, "not record id ++ seq"));
    }
    Ok((decode_record(PENDING, &key[..16])?, decode_seq(PENDING, &key[16..])?))
}

/// `acked` and `refused`: replica id ++ seq, since a re-key reuses seqs under a new id.
pub fn versioned(replica: ReplicaId, s: u64) -> [u8; 24] {
    let mut k = [0u8; 24];
    k[..16].copy_from_slice(replica.0.as_bytes());
    k[16..].copy_from_slice(&seq(s));
    k
}

pub fn photo(sha: &Sha256Hex) -> Vec<u8> {
    sha.as_str().as_bytes().to_vec()
}

/// Schema 1, the first tablet release: outbox keys were the seq as decimal text
/// (so "10" sorted before "9"), change JSON had no `kind` (it was read from the
/// local view), and there was no `pending` index, `acked` or `refused` tree.
pub mod v1 {
    pub fn outbox_key(seq: u64) -> Vec<u8> {
        seq.to_string().into_bytes()
    }

    pub fn decode_outbox_key(key: &[u8]) -> Option<u64> {
        std::str::from_utf8(key).ok()?.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_keys_sort_in_seq_order() {
        let mut keys: Vec<_> = [9u64, 10, 1, 256, 65_536].iter().map(|s| seq(*s)).collect();
        keys.sort();
        let back: Vec<u64> = keys.iter().map(|k| decode_seq(OUTBOX, k).unwrap()).collect();
        assert_eq!(back, vec![1, 9, 10, 256, 65_536]);
    }

    #[test]
    fn pending_keys_round_trip() {
        let id = RecordId(Uuid::from_u128(7));
        assert_eq!(decode_pending(&pending(id, 42)).unwrap(), (id, 42));
    }

    #[test]
    fn a_short_key_is_an_error_naming_the_tree() {
        let e = decode_seq(OUTBOX, b"abc").unwrap_err();
        assert!(e.to_string().contains("outbox"));
    }
}
