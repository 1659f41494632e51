#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Bytes from disk never panic: a corrupt entry is an error naming its tree and key.

use mobile_schema::ids::{DeviceId, RecordId, UserId};
use mobile_schema::workflow::Role;
use replica::{Identity, Replica, ReplicaConfig, ReplicaError, keys};

#[test]
fn a_corrupt_entry_is_an_error_naming_the_tree_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = ReplicaConfig::for_identity(Identity {
        user: UserId::generate(),
        device: DeviceId::generate(),
        role: Role::Inspector,
    });
    drop(Replica::open_with(dir.path(), config).unwrap());
    let id = RecordId::generate();
    {
        let db = sled::open(dir.path().join(keys::SLED_DIR)).unwrap();
        db.open_tree(keys::LOCAL)
            .unwrap()
            .insert(keys::record(id), &b"{not json"[..])
            .unwrap();
        db.open_tree(keys::OUTBOX)
            .unwrap()
            .insert(keys::seq(1), &b"\xff\x00"[..])
            .unwrap();
        db.flush().unwrap();
    }
    let r = Replica::open(dir.path()).unwrap();
    match r.get(id).unwrap_err() {
        ReplicaError::Corrupt { tree, key, .. } => {
            assert_eq!(tree, "local");
            assert_eq!(key, format!("0x{}", hex::encode(id.0.as_bytes())));
        }
        other => panic!("{other}"),
    }
    let e = r.outbox().unwrap_err();
    assert!(matches!(e, ReplicaError::Corrupt { tree: "outbox", .. }), "{e}");
}
