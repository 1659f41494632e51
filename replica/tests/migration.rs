#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A store written by schema 1 opens in this build without losing its unsynced
//! edits. The fixture under `tests/fixtures/store-v1/` was written by
//! `generate_store_v1_fixture` (run once with `--ignored`) in schema 1's layout.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mobile_schema::ids::{DeviceId, InspectionId, RecordId, SiteId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use replica::{Identity, InProcessTransport, Replica, ReplicaConfig, keys};
use sync_protocol::clock::ManualClock;
use sync_protocol::engine::EngineConfig;
use sync_protocol::local::{LocalAuthor, apply_local};
use sync_protocol::reference::ReferenceServer;
use sync_protocol::{Change, Hlc, Op, RecordState, ReplicaId, UnitValue, UnitWrite};
use uuid::Uuid;

const EDITS: u64 = 9;
const T0: u64 = 1_746_500_000_000;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v1")
}

fn site() -> SiteId {
    SiteId(Uuid::from_u128(0x5173))
}

fn inspection() -> InspectionId {
    InspectionId(Uuid::from_u128(0x1457))
}

#[test]
#[ignore = "writes the committed fixture; run once by hand"]
fn generate_store_v1_fixture() {
    let dir = fixture();
    let _ = std::fs::remove_dir_all(&dir);
    let db = sled::open(dir.join(keys::SLED_DIR)).unwrap();
    let replica = ReplicaId(Uuid::from_u128(0xF1E1D));
    let identity = Identity {
        user: UserId(Uuid::from_u128(0x05E4)),
        device: DeviceId(Uuid::from_u128(0xDE71CE)),
        role: Role::Inspector,
    };
    let author = LocalAuthor {
        replica,
        user: identity.user,
        device: identity.device,
        role: identity.role,
    };
    let doc = |r: AnyRecord| {
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut().unwrap().remove("kind");
        UnitValue::of(&v).unwrap()
    };
    let mut changes = vec![
        Change {
            seq: 1,
            hlc: Hlc::new(T0 + 1, 0),
            kind: RecordKind::Site,
            record: site().into(),
            op: Op::Create {
                record: doc(sample::pond(site()).into()),
                versions: None,
            },
        },
        Change {
            seq: 2,
            hlc: Hlc::new(T0 + 2, 0),
            kind: RecordKind::Inspection,
            record: inspection().into(),
            op: Op::Create {
                record: doc(sample::inspection(inspection(), site(), identity.device).into()),
                versions: None,
            },
        },
    ];
    // Enough edits that decimal keys sort out of seq order ("10" < "3").
    for seq in 3..3 + EDITS {
        changes.push(Change {
            seq,
            hlc: Hlc::new(T0 + seq, 0),
            kind: RecordKind::Inspection,
            record: inspection().into(),
            op: Op::Edit {
                units: vec![UnitWrite {
                    key: "conclusion".into(),
                    bases: vec![sync_protocol::VersionId::new(replica, seq - 1)],
                    value: UnitValue::of(&format!("第{seq}次修改")).unwrap(),
                }],
            },
        });
    }
    let outbox = db.open_tree(keys::OUTBOX).unwrap();
    let local = db.open_tree(keys::LOCAL).unwrap();
    let mut views: std::collections::BTreeMap<RecordId, RecordState> = Default::default();
    for c in &changes {
        let v = apply_local(views.remove(&c.record), c, &author).unwrap();
        views.insert(c.record, v);
        outbox
            .insert(keys::v1::outbox_key(c.seq), replica::stored::to_v1_json(c).unwrap())
            .unwrap();
    }
    for (id, v) in &views {
        local.insert(keys::record(*id), serde_json::to_vec(v).unwrap()).unwrap();
    }
    let meta = db.open_tree(keys::META).unwrap();
    let put = |k: &[u8], v: serde_json::Value| meta.insert(k, serde_json::to_vec(&v).unwrap()).unwrap();
    put(keys::meta::REPLICA_ID, serde_json::to_value(replica).unwrap());
    put(keys::meta::NEXT_SEQ, serde_json::json!(3 + EDITS));
    put(
        keys::meta::LAST_HLC,
        serde_json::to_value(Hlc::new(T0 + 2 + EDITS, 0)).unwrap(),
    );
    put(keys::meta::IDENTITY, serde_json::to_value(identity).unwrap());
    put(keys::meta::SCHEMA_VERSION, serde_json::json!(1));
    db.flush().unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

#[test]
fn a_schema_1_store_opens_and_its_unsynced_edits_sync() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture(), dir.path());
    let clock = ManualClock::at(T0 + 60_000);
    let config = || ReplicaConfig {
        clock: Arc::new(clock.clone()),
        ..ReplicaConfig::default()
    };
    let mut r = Replica::open_with(dir.path(), config()).unwrap();
    let seqs: Vec<u64> = r.outbox().unwrap().iter().map(|c| c.seq).collect();
    assert_eq!(seqs, (1..3 + EDITS).collect::<Vec<_>>(), "migrated outbox in seq order");
    assert_eq!(r.next_seq(), 3 + EDITS);
    assert!(r.last_hlc() >= Hlc::new(T0 + 2 + EDITS, 0));
    let last = format!("第{}次修改", 2 + EDITS);
    let conclusion = |r: &Replica| match r.get(inspection().into()).unwrap().unwrap().record {
        AnyRecord::Inspection(i) => i.conclusion,
        other => panic!("{other:?}"),
    };
    assert_eq!(conclusion(&r), last);
    assert_eq!(r.get(inspection().into()).unwrap().unwrap().pending, EDITS as usize + 1);
    // New edits continue the sequence in the new layout.
    let receipt = r
        .edit(
            RecordKind::Inspection,
            inspection().into(),
            vec![("conclusion".into(), "迁移后".into())],
        )
        .unwrap();
    assert_eq!(receipt.seq, 3 + EDITS);

    let server = Arc::new(Mutex::new(ReferenceServer::new(EngineConfig::default())));
    let mut t = InProcessTransport::new(server.clone(), Arc::new(clock.clone()));
    let report = r.sync(&mut t).unwrap();
    assert_eq!((report.acked, report.refused), (3 + EDITS as usize, 0));
    assert_eq!(r.pending_count(), 0);
    assert_eq!(conclusion(&r,), "迁移后");
    let on_server = server
        .lock()
        .unwrap()
        .record(inspection().into())
        .unwrap()
        .materialize()
        .unwrap();
    assert!(matches!(on_server, AnyRecord::Inspection(i) if i.conclusion == "迁移后"));
    drop(r);
    // Opens again as schema 2, without migrating twice.
    let r = Replica::open_with(dir.path(), config()).unwrap();
    assert_eq!(r.next_seq(), 4 + EDITS);
}
