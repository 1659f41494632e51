//! Store layout migrations, run on open. Each rewrites the store in one
//! transaction that also sets the new schema version, so a migration cut short
//! leaves the old layout whole and runs again on the next open.
//!
//! Schema 1 (the first tablet release): outbox keys were the seq as decimal text,
//! the change JSON had no `kind` (it came from the record's local view), and
//! there was no `pending` index. Schema 2 is the layout in [`crate::keys`].

use mobile_schema::ids::RecordId;
use mobile_schema::record::RecordKind;
use sync_protocol::RecordState;

use crate::error::{ReplicaError, decode, encode};
use crate::keys::{self, meta};
use crate::store::{T, Trees, Write, commit_to};

pub(crate) fn v1_to_v2(db: &sled::Db, t: &Trees) -> Result<(), ReplicaError> {
    let mut w = Write::default();
    for item in t.outbox.iter() {
        let (k, v) = item?;
        let seq = keys::v1::decode_outbox_key(&k)
            .ok_or_else(|| ReplicaError::corrupt(keys::OUTBOX, &k, "not a schema-1 decimal seq"))?;
        let kind_of = |id: RecordId| -> Result<RecordKind, ReplicaError> {
            let view_key = keys::record(id);
            let bytes = t
                .local
                .get(view_key)?
                .ok_or_else(|| ReplicaError::corrupt(keys::OUTBOX, &k, "a pending change without its local view"))?;
            Ok(decode::<RecordState>(keys::LOCAL, &view_key, &bytes)?.kind)
        };
        let change = crate::stored::from_v1(&v, kind_of)
            .map_err(|e| ReplicaError::corrupt(keys::OUTBOX, &k, e.to_string()))??;
        let id = change.record;
        if change.seq != seq {
            return Err(ReplicaError::corrupt(
                keys::OUTBOX,
                &k,
                "key and change disagree on the seq",
            ));
        }
        w.del(T::Outbox, &k);
        w.put(
            T::Outbox,
            keys::seq(seq),
            encode(keys::OUTBOX, &crate::stored::Stored(change))?,
        );
        w.put(T::Pending, keys::pending(id, seq), Vec::new());
    }
    if t.meta.get(meta::CURSOR)?.is_none() {
        w.meta(meta::CURSOR, &"0")?;
    }
    w.meta(meta::SCHEMA_VERSION, &keys::SCHEMA_VERSION)?;
    commit_to(db, t, &w)
}
