#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash test: a child process (this test binary again) makes edits and prints
//! each one the API acknowledged; the parent SIGKILLs it at a random moment,
//! reopens the store and checks that nothing acknowledged was lost and nothing
//! was half applied.
//!
//! `KILL_LOOP_ITERATIONS` (default 20) sets the rounds per phase and
//! `KILL_LOOP_SEED` replays a run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mobile_schema::ids::{DeviceId, InspectionId, RecordId, SiteId, UserId};
use mobile_schema::record::RecordKind;
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use replica::keys;
use replica::stored::Stored;
use replica::{Identity, InProcessTransport, Replica, ReplicaConfig, ReplicaError};
use sync_protocol::clock::{Clock, SystemClock};
use sync_protocol::engine::EngineConfig;
use sync_protocol::local::{LocalAuthor, apply_local};
use sync_protocol::reference::ReferenceServer;
use sync_protocol::{Change, Hlc, Op, RecordState, ReplicaId};

const CHILD_DIR: &str = "FIELDSYNC_KILL_LOOP_CHILD_DIR";
const CHILD_SEED: &str = "FIELDSYNC_KILL_LOOP_CHILD_SEED";
const CHILD_SYNC: &str = "FIELDSYNC_KILL_LOOP_CHILD_SYNC";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// The child: edit (and, in the sync phase, sync) until killed.
#[test]
fn kill_loop_child() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return; // run as an ordinary test: nothing to do
    };
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let with_sync = std::env::var(CHILD_SYNC).is_ok();
    let mut rng = Rng(seed | 1);
    // libtest printed "test kill_loop_child ... " without a newline: end that line
    // so the parent reads ours whole.
    println!();
    // The store may be new (no identity yet), so open_with follows a failed open.
    let identity = Identity {
        user: UserId::generate(),
        device: DeviceId::generate(),
        role: Role::Inspector,
    };
    let mut r = match open_retrying(|| Replica::open(&dir)) {
        Err(ReplicaError::NoIdentity) => {
            open_retrying(|| Replica::open_with(&dir, ReplicaConfig::for_identity(identity))).unwrap()
        }
        other => other.unwrap(),
    };
    let server = Arc::new(Mutex::new(ReferenceServer::new(EngineConfig::default())));
    let mut transport = InProcessTransport::new(server, Arc::new(SystemClock));
    let mut inspections: Vec<RecordId> = r
        .list(RecordKind::Inspection)
        .unwrap()
        .iter()
        .map(|v| v.record.id())
        .collect();
    let site = match r.list(RecordKind::Site).unwrap().first() {
        Some(v) => SiteId::from(v.record.id()),
        None => {
            let site = SiteId::generate();
            let receipt = r.create(sample::pond(site).into()).unwrap();
            println!("ACK {} {} create - END", receipt.seq, RecordId::from(site));
            site
        }
    };
    // The parent starts its kill timer from here, not from the spawn: waiting for
    // sled's lock under load must not eat the time meant for editing.
    println!("READY");
    let mut n = 0u64;
    loop {
        n += 1;
        let roll = rng.below(100);
        if inspections.is_empty() || roll < 15 {
            let id = InspectionId::generate();
            let receipt = r
                .create(sample::inspection(id, site, DeviceId::generate()).into())
                .unwrap();
            inspections.push(id.into());
            println!("ACK {} {} create - END", receipt.seq, RecordId::from(id));
        } else if roll < 85 {
            let id = inspections[rng.below(inspections.len() as u64) as usize];
            let key = if rng.below(2) == 0 {
                "conclusion"
            } else {
                "answers/TP-01"
            };
            let value = if key == "conclusion" {
                serde_json::json!(format!("s{seed}-n{n}"))
            } else {
                serde_json::json!({"result": "problem", "note": format!("s{seed}-n{n}")})
            };
            let receipt = r
                .edit(RecordKind::Inspection, id, vec![(key.into(), value.clone())])
                .unwrap();
            println!("ACK {} {} {} {} END", receipt.seq, id, key, value);
        } else if roll < 92 || with_sync {
            let id = inspections[rng.below(inspections.len() as u64) as usize];
            let action = if rng.below(3) == 0 { "sign" } else { "submit" };
            match r.transition(RecordKind::Inspection, id, action) {
                Ok(receipt) => println!("ACK {} {} transition {} END", receipt.seq, id, action),
                Err(ReplicaError::Rejected(_)) => {} // not allowed from the local state
                Err(e) => panic!("{e}"),
            }
        }
        if with_sync && rng.below(4) == 0 {
            r.sync(&mut transport).unwrap();
            println!("SYNCED");
        }
    }
}

/// Opens, retrying while sled's lock is held: after the last handle of a store
/// drops (the parent's check, or this process's own failed open), sled's
/// background threads keep the lock file a while, seconds on a loaded 2-core machine.
fn open_retrying(open: impl Fn() -> Result<Replica, ReplicaError>) -> Result<Replica, ReplicaError> {
    let mut opened = open();
    for _ in 0..6_000 {
        if !matches!(&opened, Err(ReplicaError::Storage(sled::Error::Io(_)))) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
        opened = open();
    }
    opened
}

/// One acknowledged edit as the child printed it.
#[derive(Debug, Clone)]
struct Ack {
    seq: u64,
    record: RecordId,
    what: String,
    value: String,
}

fn parse(line: &str) -> Option<Ack> {
    let rest = line.strip_prefix("ACK ")?.strip_suffix(" END")?;
    let mut parts = rest.splitn(4, ' ');
    Some(Ack {
        seq: parts.next()?.parse().ok()?,
        record: parts.next()?.parse::<uuid::Uuid>().ok()?.into(),
        what: parts.next()?.to_string(),
        value: parts.next()?.to_string(),
    })
}

fn run_child(dir: &Path, seed: u64, kill_after_ms: u64, with_sync: bool) -> Vec<Ack> {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", "kill_loop_child", "--nocapture", "--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(CHILD_SEED, seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if with_sync {
        cmd.env(CHILD_SYNC, "1");
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line == "READY" {
                let _ = ready_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    // A child that dies before READY is caught by the exit-status check below.
    let _ = ready_rx.recv_timeout(Duration::from_secs(90));
    std::thread::sleep(Duration::from_millis(kill_after_ms));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    // Killed by us, not exited by itself (a panic would be a failure).
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the child exited by itself ({status:?}), seed {seed}"
    );
    let lines = reader.join().unwrap();
    // A line cut by the kill has no ` END` and is not counted as acknowledged.
    lines.iter().filter_map(|l| parse(l)).collect()
}

/// The raw store, read with sled directly so the check does not trust the
/// replica's own reading code.
struct Raw {
    records: BTreeMap<RecordId, RecordState>,
    local: BTreeMap<RecordId, RecordState>,
    outbox: BTreeMap<u64, Change>,
    pending: BTreeSet<(RecordId, u64)>,
    acked: Vec<(ReplicaId, Change)>,
    next_seq: u64,
    last_hlc: Hlc,
    replica: ReplicaId,
    identity: Identity,
}

/// `None` for a store whose creation the kill cut short: creation is one
/// transaction, so the store is then empty.
fn read_raw(dir: &Path) -> Option<Raw> {
    let db = sled::open(dir.join(keys::SLED_DIR)).unwrap();
    let meta = db.open_tree(keys::META).unwrap();
    if meta.get(keys::meta::SCHEMA_VERSION).unwrap().is_none() {
        assert!(meta.is_empty(), "a half-created store");
        return None;
    }
    let states = |name: &str| -> BTreeMap<RecordId, RecordState> {
        db.open_tree(name)
            .unwrap()
            .iter()
            .map(|i| {
                let (k, v) = i.unwrap();
                (
                    keys::decode_record("t", &k).unwrap(),
                    serde_json::from_slice(&v).unwrap(),
                )
            })
            .collect()
    };
    let outbox = db
        .open_tree(keys::OUTBOX)
        .unwrap()
        .iter()
        .map(|i| {
            let (k, v) = i.unwrap();
            let c: Stored = serde_json::from_slice(&v).unwrap();
            (keys::decode_seq("outbox", &k).unwrap(), c.0)
        })
        .collect();
    let pending = db
        .open_tree(keys::PENDING)
        .unwrap()
        .iter()
        .map(|i| keys::decode_pending(&i.unwrap().0).unwrap())
        .collect();
    let acked = db
        .open_tree(keys::ACKED)
        .unwrap()
        .iter()
        .map(|i| {
            let e: replica::store::AckedEntry = serde_json::from_slice(&i.unwrap().1).unwrap();
            (e.replica, e.change)
        })
        .collect();
    let m = |k: &[u8]| meta.get(k).unwrap().unwrap_or_else(|| panic!("meta {k:?} missing"));
    Some(Raw {
        records: states(keys::RECORDS),
        local: states(keys::LOCAL),
        outbox,
        pending,
        acked,
        next_seq: serde_json::from_slice(&m(keys::meta::NEXT_SEQ)).unwrap(),
        last_hlc: serde_json::from_slice(&m(keys::meta::LAST_HLC)).unwrap(),
        replica: serde_json::from_slice(&m(keys::meta::REPLICA_ID)).unwrap(),
        identity: serde_json::from_slice(&m(keys::meta::IDENTITY)).unwrap(),
    })
}

/// Returns how many server record states the store holds.
fn check_invariants(dir: &Path, acks: &[Ack], seed: u64, synced: bool) -> usize {
    let ctx = format!("seed {seed}, dir {}", dir.display());
    let Some(raw) = read_raw(dir) else {
        assert!(acks.is_empty(), "edits acknowledged by a store never created, {ctx}");
        return 0;
    };
    // Seqs contiguous: the outbox is a run ending just below next_seq (from 1
    // when nothing was sent).
    let seqs: Vec<u64> = raw.outbox.keys().copied().collect();
    if let (Some(first), Some(last)) = (seqs.first(), seqs.last()) {
        assert_eq!(
            seqs,
            (*first..=*last).collect::<Vec<_>>(),
            "outbox seqs not contiguous, {ctx}"
        );
        assert_eq!(raw.next_seq, last + 1, "next_seq, {ctx}");
        if !synced {
            assert_eq!(*first, 1, "{ctx}");
        }
    }
    for (seq, c) in &raw.outbox {
        assert_eq!(c.seq, *seq, "{ctx}");
    }
    // The pending index is exactly the outbox.
    let expected: BTreeSet<(RecordId, u64)> = raw.outbox.values().map(|c| (c.record, c.seq)).collect();
    assert_eq!(raw.pending, expected, "pending index vs outbox, {ctx}");
    // Every acknowledged edit is durable: in the outbox with what was printed,
    // or (after a sync) answered.
    for a in acks {
        assert!(
            a.seq < raw.next_seq,
            "acknowledged seq {} beyond next_seq {}, {ctx}",
            a.seq,
            raw.next_seq
        );
        let Some(c) = raw.outbox.get(&a.seq) else {
            assert!(
                synced && seqs.first().is_none_or(|f| a.seq < *f),
                "acknowledged seq {} lost, {ctx}",
                a.seq
            );
            continue;
        };
        assert_eq!(c.record, a.record, "{ctx}");
        match (&c.op, a.what.as_str()) {
            (Op::Create { .. }, "create") => {}
            (Op::Transition { action, .. }, "transition") => assert_eq!(action, &a.value, "{ctx}"),
            (Op::Edit { units }, key) => {
                let written: serde_json::Value = serde_json::from_str(units[0].value.get()).unwrap();
                assert_eq!(units[0].key, key, "{ctx}");
                assert_eq!(
                    written,
                    serde_json::from_str::<serde_json::Value>(&a.value).unwrap(),
                    "{ctx}"
                );
            }
            (op, what) => panic!("seq {} is {op:?}, printed as {what}, {ctx}", a.seq),
        }
    }
    // No half-applied edit: every local view is the server state with the
    // acknowledged-not-pulled and pending changes applied, and every record with
    // a pending change has a view.
    let author = |replica| LocalAuthor {
        replica,
        user: raw.identity.user,
        device: raw.identity.device,
        role: raw.identity.role,
    };
    let touched: BTreeSet<RecordId> = raw
        .outbox
        .values()
        .map(|c| c.record)
        .chain(raw.acked.iter().map(|(_, c)| c.record))
        .collect();
    for id in &touched {
        let mut view = raw.records.get(id).cloned();
        let steps = raw
            .acked
            .iter()
            .filter(|(_, c)| c.record == *id)
            .map(|(r, c)| (*r, c))
            .chain(
                raw.outbox
                    .values()
                    .filter(|c| c.record == *id)
                    .map(|c| (raw.replica, c)),
            );
        for (r, c) in steps {
            if let Ok(v) = apply_local(view.clone(), c, &author(r)) {
                view = Some(v);
            }
        }
        assert_eq!(
            raw.local.get(id),
            view.as_ref(),
            "local view of {id} is not its changes, {ctx}"
        );
    }
    for id in raw.local.keys() {
        assert!(touched.contains(id), "a local view without local changes: {id}, {ctx}");
    }
    // The latest acknowledged value of a unlocked unit is what the view shows.
    let mut latest: BTreeMap<(RecordId, String), &Ack> = BTreeMap::new();
    for a in acks.iter().filter(|a| a.what != "create" && a.what != "transition") {
        latest.insert((a.record, a.what.clone()), a);
    }
    for ((id, key), a) in latest {
        let Some(view) = raw.local.get(&id) else { continue };
        if view.lock.is_some() {
            continue; // edits after a signature wait as addenda
        }
        let later = raw
            .outbox
            .range(a.seq + 1..)
            .any(|(_, c)| c.record == id && matches!(&c.op, Op::Edit { units } if units.iter().any(|u| u.key == key)));
        if later {
            continue; // a newer edit, applied but killed before it was printed
        }
        let shown: serde_json::Value = serde_json::from_str(view.units[&key].winner().unwrap().value.get()).unwrap();
        assert_eq!(
            shown,
            serde_json::from_str::<serde_json::Value>(&a.value).unwrap(),
            "{ctx}"
        );
    }
    // The HLC after restart is not below any version this replica wrote.
    let top = raw.outbox.values().map(|c| c.hlc).max().unwrap_or(Hlc::ZERO);
    assert!(
        raw.last_hlc >= top,
        "stored HLC {:?} below a written {:?}, {ctx}",
        raw.last_hlc,
        top
    );
    // The raw read's sled may still hold the lock for a moment after it is
    // dropped (its flusher thread winds down on its own), as may a busy machine's
    // dying child.
    let r = open_retrying(|| Replica::open(dir)).unwrap_or_else(|e| panic!("reopen after the kill failed: {e}, {ctx}"));
    assert!(r.last_hlc() >= top, "{ctx}");
    assert_eq!(r.pending_count(), raw.outbox.len(), "{ctx}");
    raw.records.len()
}

fn iterations() -> usize {
    std::env::var("KILL_LOOP_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

fn base_seed() -> u64 {
    std::env::var("KILL_LOOP_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| SystemClock.now_ms())
}

#[test]
fn a_kill_at_a_random_moment_loses_no_acknowledged_edit() {
    let seed = base_seed();
    eprintln!("kill loop (edits) seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut dir = tempfile::tempdir().unwrap();
    let mut acks = Vec::new();
    for i in 0..iterations() {
        // A store lives for ten kills, then a fresh one keeps each round fast.
        if i % 10 == 0 {
            dir = tempfile::tempdir().unwrap();
            acks.clear();
        }
        let child_seed = rng.next();
        let wait = 50 + rng.below(250);
        let got = run_child(dir.path(), child_seed, wait, false);
        eprintln!(
            "round {i}: {} acknowledged edits before the kill after {wait} ms",
            got.len()
        );
        acks.extend(got);
        assert_eq!(check_invariants(dir.path(), &acks, seed, false), 0);
    }
}

#[test]
fn a_kill_between_syncs_leaves_the_store_consistent() {
    let seed = base_seed().wrapping_add(1);
    eprintln!("kill loop (sync) seed {seed}");
    let mut rng = Rng(seed | 1);
    let mut rounds_with_pulled_records = 0;
    for _ in 0..iterations() {
        // A fresh store each round: the in-process server dies with the child.
        let dir = tempfile::tempdir().unwrap();
        let child_seed = rng.next();
        let wait = 50 + rng.below(250);
        let acks = run_child(dir.path(), child_seed, wait, true);
        eprintln!(
            "sync round: {} acknowledged edits before the kill after {wait} ms",
            acks.len()
        );
        if check_invariants(dir.path(), &acks, seed, true) > 0 {
            rounds_with_pulled_records += 1;
        }
    }
    // The phase is only worth its name if syncs happened before kills.
    assert!(
        iterations() < 5 || rounds_with_pulled_records > 0,
        "no round synced, seed {seed}"
    );
}
