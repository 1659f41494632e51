#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Backup while tablets push, more acknowledged pushes, then the server is
//! stopped and restored from the backup under a new epoch: the tablets send
//! back what the backup lacks and every acknowledged change is on the server
//! again, none twice. And a full disk: a push that cannot be made durable is
//! answered 507 and reads go on.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mobile_schema::ids::{InspectionId, RecordId};
use mobile_schema::record::RecordKind;
use mobile_schema::sample;
use replica::{HttpTransport, Transport};
use serde_json::json;
use sync_protocol::RecordState;
use tests::api::Api;
use tests::harness::{ServerProcess, fieldsync_bin};
use tests::storm::{self, Pace, http};
use tests::tablet::{Tablet, comparable};

const PASSWORD: &str = "backup-storm-Zk27-password";
const TABLETS: usize = 3;

fn checker(url: &str) -> HttpTransport {
    storm::checker(url, PASSWORD).unwrap()
}

fn server_records(t: &mut HttpTransport) -> BTreeMap<RecordId, RecordState> {
    storm::server_records(t).unwrap()
}

fn conclusion_of(state: &RecordState) -> String {
    storm::conclusion_of(state).unwrap()
}

/// A record as every party must agree on it, without the server's bookkeeping
/// (commit seq, receive times) and the derived flags.
fn content(state: &RecordState) -> serde_json::Value {
    let mut v = comparable(state).unwrap();
    if let Some(o) = v.as_object_mut() {
        o.remove("flags");
    }
    v
}

/// What a tablet does while the backup is taken: the server stays up.
const PACE: Pace = Pace {
    records: 6,
    new_every: 4,
    sync_every: 2,
    pause: Duration::from_millis(3),
    retry_failed_syncs: false,
};

fn wait_for(syncs: &AtomicUsize, more: usize) {
    let target = syncs.load(Ordering::Relaxed) + more;
    for _ in 0..2000 {
        if syncs.load(Ordering::Relaxed) >= target {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("the storm made no progress");
}

#[test]
fn a_backup_taken_during_a_push_storm_restores_and_tablets_bring_back_every_acknowledged_change_once() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    let mut server = ServerProcess::start_with(&data, &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let url = server.url("");

    let (tablets, site) = storm::tablets_with_a_pond(root.path(), &url, PASSWORD, TABLETS).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let syncs = Arc::new(AtomicUsize::new(0));
    let acked: Vec<Arc<Mutex<BTreeMap<RecordId, u64>>>> = (0..TABLETS).map(|_| Arc::default()).collect();
    let workers: Vec<_> = tablets
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (acked, syncs, stop) = (acked[i].clone(), syncs.clone(), stop.clone());
            std::thread::spawn(move || {
                storm::storm(i, t, site, PACE, &stop, |made| {
                    acked.lock().unwrap().extend(made.clone());
                    syncs.fetch_add(1, Ordering::Relaxed);
                })
            })
        })
        .collect();

    // The backup, by the operator's command, in the middle of the storm.
    wait_for(&syncs, 6);
    let backup_dir = root.path().join("backup");
    let out = Command::new(fieldsync_bin().unwrap())
        .args(["backup", backup_dir.to_str().unwrap(), "--server", &url])
        .env("FIELDSYNC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let backup_seq = info["commit_seq"].as_u64().unwrap();
    assert!(backup_seq > 0, "{info}");
    assert!(backup_dir.join("backup.json").exists());

    // A second backup into the same folder is refused, naming the folder.
    let again = Command::new(fieldsync_bin().unwrap())
        .args(["backup", backup_dir.to_str().unwrap(), "--server", &url])
        .env("FIELDSYNC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("backup_dir_not_empty"));

    // More acknowledged pushes after the backup.
    wait_for(&syncs, 9);
    stop.store(true, Ordering::Relaxed);
    let mut tablets: Vec<Tablet> = workers.into_iter().map(|w| w.join().unwrap().unwrap()).collect();
    // One workflow step after the backup, on a record no one touches again.
    let submitted = tablets[1].replica.list(RecordKind::Inspection).unwrap()[0].record.id();
    tablets[1]
        .replica
        .transition(RecordKind::Inspection, submitted, "submit")
        .unwrap();
    for t in &mut tablets {
        t.sync().unwrap();
        assert_eq!(t.replica.pending_count(), 0);
    }
    // A photo sent after the backup: lost with the server, still on the tablet.
    let shot = tests::photos::jpeg(&tests::photos::PhotoSpec {
        width: 32,
        height: 24,
        seed: 7,
        taken: Some("2025:05:06 09:30:00".into()),
        ..tests::photos::PhotoSpec::default()
    })
    .unwrap();
    let shot_file = root.path().join("shot.jpg");
    std::fs::write(&shot_file, &shot).unwrap();
    let sha = tablets[1].replica.attach_photo_to(submitted, &shot_file).unwrap();
    let upload = |t: &mut Tablet| {
        let config = replica::UploadConfig::default();
        t.replica
            .upload_photos(&mut t.transport.http, &config, &mut |_| {
                std::ops::ControlFlow::Continue(())
            })
            .unwrap()
    };
    assert_eq!(upload(&mut tablets[1]).uploaded, 1);
    let has_photo = |token: &str| {
        Api::new(&url)
            .get(&format!("/api/v1/photos/{sha}"), Some(token))
            .unwrap()
            .status
    };
    let token = |t: &Tablet| t.transport.http.credentials().unwrap().access_token.clone();
    assert_eq!(has_photo(&token(&tablets[1])), 200);
    let mut check = checker(&url);
    let before = server_records(&mut check);
    assert_eq!(before[&submitted].workflow.as_deref(), Some("submitted"));
    let after_backup = before.values().filter(|r| r.commit_seq > backup_seq).count();
    assert!(after_backup > 0, "nothing was acknowledged after the backup");
    let epoch_before = {
        let page = check.pull("0", 1).unwrap();
        page.epoch
    };

    // Stop; restore the backup into the data folder; start on the same port.
    server.kill().unwrap();
    std::fs::rename(&data, root.path().join("server-lost")).unwrap();
    let out = Command::new(fieldsync_bin().unwrap())
        .args([
            "restore",
            backup_dir.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(restored["from_epoch"], json!(epoch_before));
    assert_ne!(restored["epoch"], json!(epoch_before));
    server.restart().unwrap();

    // The restored server lacks what came after the backup.
    let mut check = checker(&url);
    let bare = server_records(&mut check);
    assert!(bare.len() < before.len() || bare.values().any(|r| content(r) != content(&before[&r.id])));

    // Each tablet syncs: it sees the new epoch and sends back what it holds.
    let mut recovered = 0;
    for t in &mut tablets {
        let report = t.sync().unwrap();
        assert!(report.epoch_recovered, "{report:?}");
        assert_eq!(report.recover_refused, 0);
        recovered += report.recovered;
    }
    assert!(recovered > 0);
    for t in &mut tablets {
        t.sync().unwrap();
    }
    // The photo is queued again, and sent again.
    tablets[1].sync().unwrap();
    assert_eq!(upload(&mut tablets[1]).uploaded, 1);
    assert_eq!(has_photo(&token(&tablets[1])), 200);
    let after = server_records(&mut check);
    assert_eq!(
        after.keys().collect::<Vec<_>>(),
        before.keys().collect::<Vec<_>>(),
        "records lost or made up"
    );
    for (id, b) in &before {
        // Same versions, same authors, same workflow: nothing missing, nothing twice.
        assert_eq!(content(&after[id]), content(b), "record {id}");
    }
    for (i, a) in acked.iter().enumerate() {
        for (id, n) in a.lock().unwrap().iter() {
            let text = conclusion_of(&after[id]);
            let got = storm::edit_number(&text);
            assert!(
                got >= *n,
                "tablet {i}: {id} acknowledged at edit {n}, server has {text:?}"
            );
        }
    }

    // The tablets go on working: new edits under a new replica id where their
    // old one's seqs were lost, applied once.
    for (i, t) in tablets.iter_mut().enumerate() {
        // A record of its own, so the edits are not concurrent with each other.
        let id = t
            .replica
            .list(RecordKind::Inspection)
            .unwrap()
            .into_iter()
            .map(|v| v.record.id())
            .find(|id| conclusion_of(&t.replica.view(*id).unwrap().unwrap()).starts_with(&format!("{i}:")))
            .unwrap();
        t.edit(
            RecordKind::Inspection,
            id,
            "conclusion",
            json!(format!("after restore {i}")),
        )
        .unwrap();
        t.sync().unwrap();
        assert_eq!(t.replica.pending_count(), 0);
        assert!(t.replica.refused().unwrap().is_empty(), "{:?}", t.replica.refused());
    }
    for t in &mut tablets {
        t.sync().unwrap();
    }
    let last = server_records(&mut check);
    for t in &tablets {
        for view in t.replica.list(RecordKind::Inspection).unwrap() {
            let id = view.record.id();
            let mine = t.replica.view(id).unwrap().unwrap();
            assert_eq!(content(&mine), content(&last[&id]), "record {id}");
            assert_eq!(last[&id].units["conclusion"].live.len(), 1);
        }
    }

    // A fresh tablet pulling from 0 gets everything.
    let mut fresh = Tablet::enrol(&root.path().join("fresh"), http(&url), "admin", PASSWORD, None).unwrap();
    fresh.sync().unwrap();
    for (id, state) in &last {
        let got = fresh.replica.view(*id).unwrap().unwrap();
        assert_eq!(content(&got), content(state), "record {id}");
    }
}

/// A site's county corrected after the backup is lost with the server and
/// brought back by the office tablet's recovery: the move follows as after a
/// push, so the old county's tablet lets the site and its inspection go.
#[test]
fn a_site_move_brought_back_by_recovery_leaves_the_old_countys_tablets() {
    const USER_PASSWORD: &str = "backup-move-Hq61-password";
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    let mut server = ServerProcess::start_with(&data, &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let url = server.url("");
    let api = Api::new(&url);
    let admin = api.login("admin", PASSWORD).unwrap();
    let a = api
        .post(
            "/api/v1/admin/users",
            Some(&admin.access),
            &json!({"username": "li", "password": USER_PASSWORD, "role": "inspector", "regions": ["451221"]}),
        )
        .unwrap();
    assert_eq!(a.status, 201, "{:?}", a.body);
    let enrol = |name: &str, password: &str| {
        Tablet::enrol(
            &root.path().join(name),
            replica::HttpConfig::new(url.clone()),
            name,
            password,
            None,
        )
        .unwrap()
    };
    let has = |t: &Tablet, id: RecordId| t.replica.get(id).unwrap().is_some();
    let mut office = enrol("admin", PASSWORD);
    let site = mobile_schema::ids::SiteId::generate();
    let insp = InspectionId::generate();
    office.replica.create(sample::pond(site).into()).unwrap();
    let device = office.replica.identity().device;
    office
        .replica
        .create(sample::inspection(insp, site, device).into())
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);
    let mut li = enrol("li", USER_PASSWORD);
    li.sync().unwrap();
    assert!(has(&li, site.into()) && has(&li, insp.into()));

    let backup_dir = root.path().join("backup");
    let out = Command::new(fieldsync_bin().unwrap())
        .args(["backup", backup_dir.to_str().unwrap(), "--server", &url])
        .env("FIELDSYNC_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // After the backup the office corrects the county: 南丹 → 环江.
    office
        .edit(RecordKind::Site, site.into(), "region_code", json!("451226"))
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    server.kill().unwrap();
    std::fs::rename(&data, root.path().join("server-lost")).unwrap();
    let out = Command::new(fieldsync_bin().unwrap())
        .args([
            "restore",
            backup_dir.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    server.restart().unwrap();

    // The restored server has the pond in 南丹 again, and li's tablet with it.
    li.sync().unwrap();
    assert!(has(&li, site.into()) && has(&li, insp.into()));
    // The office brings the correction back ...
    let report = office.sync().unwrap();
    assert!(report.epoch_recovered && report.recovered > 0, "{report:?}");
    // ... and li's tablet lets the pond and its inspection go.
    let report = li.sync().unwrap();
    assert!(report.purged >= 2, "{report:?}");
    assert!(
        !has(&li, site.into()) && !has(&li, insp.into()),
        "the recovered move leaves the old county's tablets"
    );
}

#[test]
fn a_push_that_cannot_be_made_durable_is_answered_507_and_reads_go_on() {
    let root = tempfile::tempdir().unwrap();
    let marker = root.path().join("disk-full");
    let server = ServerProcess::start_with(
        &root.path().join("server"),
        &[
            ("FIELDSYNC_ADMIN_PASSWORD", PASSWORD),
            ("FIELDSYNC_FAULT_FULL_DISK", marker.to_str().unwrap()),
        ],
    )
    .unwrap();
    let url = server.url("");
    let (tablets, site) = storm::tablets_with_a_pond(root.path(), &url, PASSWORD, 1).unwrap();
    let mut tablet = tablets.into_iter().next().unwrap();
    let device = tablet.replica.identity().device;
    // One inspection is on the server before the disk fills.
    let earlier = InspectionId::generate();
    tablet
        .replica
        .create(sample::inspection(earlier, site, device).into())
        .unwrap();
    tablet.sync().unwrap();
    let mut check = checker(&url);
    let before = server_records(&mut check)[&RecordId::from(earlier)].clone();

    std::fs::write(&marker, b"").unwrap();
    // The failing push edits it (a commit re-sequences it) and creates another.
    tablet
        .edit(
            RecordKind::Inspection,
            earlier.into(),
            "conclusion",
            json!("written while the disk was full"),
        )
        .unwrap();
    let insp = InspectionId::generate();
    tablet
        .replica
        .create(sample::inspection(insp, site, device).into())
        .unwrap();
    // The push itself, as the wire shows it.
    let pending = tablet.replica.outbox().unwrap();
    let token = tablet.transport.http.credentials().unwrap().access_token.clone();
    let api = Api::new(&url);
    let answer = api
        .post("/api/v1/sync/push", Some(&token), &json!({ "changes": pending }))
        .unwrap();
    assert_eq!(answer.status, 507, "{:?}", answer.body);
    assert_eq!(answer.code(), "not_durable");
    // The tablet's sync fails and keeps the changes.
    assert!(tablet.replica.push(&mut tablet.transport).is_err());
    assert_eq!(tablet.replica.pending_count(), 2);
    // Reads are served meanwhile, and see the store as it was: the failed
    // group is undone, so the edited record keeps its place and its content.
    assert_eq!(api.get("/healthz", None).unwrap().status, 200);
    let report = tablet.replica.pull(&mut tablet.transport).unwrap();
    assert_eq!(report.pulled, 0);
    let held = server_records(&mut check);
    assert!(!held.contains_key(&RecordId::from(insp)));
    assert_eq!(held[&RecordId::from(earlier)], before);
    let listed = api
        .get(
            "/api/v1/inspections",
            Some(&api.login("admin", PASSWORD).unwrap().access),
        )
        .unwrap();
    assert_eq!(listed.status, 200, "{:?}", listed.body);
    assert!(
        listed.body.to_string().contains(&earlier.to_string()),
        "{:?}",
        listed.body
    );

    // Space again: the retry lands, once.
    std::fs::remove_file(&marker).unwrap();
    tablet.sync().unwrap();
    assert_eq!(tablet.replica.pending_count(), 0);
    assert!(tablet.replica.refused().unwrap().is_empty());
    let on_server = server_records(&mut check);
    let state = &on_server[&RecordId::from(insp)];
    assert_eq!(state.units["conclusion"].live.len(), 1);
    assert_eq!(
        conclusion_of(&on_server[&RecordId::from(earlier)]),
        "written while the disk was full"
    );
}

#[test]
fn backup_and_recovery_requests_are_checked_before_anything_is_done() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("server");
    let server = ServerProcess::start_with(&data, &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let api = Api::new(server.url(""));
    let admin = api.login("admin", PASSWORD).unwrap();
    api.post(
        "/api/v1/admin/users",
        Some(&admin.access),
        &json!({"username": "lan", "password": PASSWORD, "role": "supervisor", "regions": ["451200"]}),
    )
    .unwrap()
    .ok()
    .unwrap();
    let lan = api.login("lan", PASSWORD).unwrap();
    let target = root.path().join("b");

    let a = api
        .post("/api/v1/admin/backup", Some(&lan.access), &json!({"dir": target}))
        .unwrap();
    assert_eq!((a.status, a.code()), (403, "forbidden"));
    let a = api.post("/api/v1/admin/backup", None, &json!({"dir": target})).unwrap();
    assert_eq!(a.status, 401);
    // A way into the data folder by a link, or by `..`, is still inside it.
    let link = root.path().join("link-to-data");
    std::os::unix::fs::symlink(&data, &link).unwrap();
    for (body, field) in [
        (json!({"dir": "relative/dir"}), Some("dir")),
        (json!({"dir": data.join("inside")}), Some("dir")),
        (json!({"dir": link.join("photos").join("new")}), Some("dir")),
        (
            json!({"dir": root.path().join("x").join("..").join("server").join("y")}),
            Some("dir"),
        ),
        (json!({"dir": "/x", "extra": 1}), None),
        (json!({}), None),
    ] {
        let a = api.post("/api/v1/admin/backup", Some(&admin.access), &body).unwrap();
        assert_eq!(a.status, 400, "{body}: {:?}", a.body);
        if let Some(f) = field {
            assert_eq!(a.body["field"], f, "{body}");
        }
    }
    assert!(!target.exists() && !data.join("inside").exists());
    let occupied = root.path().join("occupied");
    std::fs::create_dir_all(&occupied).unwrap();
    std::fs::write(occupied.join("keep.txt"), b"mine").unwrap();
    let a = api
        .post("/api/v1/admin/backup", Some(&admin.access), &json!({"dir": occupied}))
        .unwrap();
    assert_eq!((a.status, a.code()), (409, "backup_dir_not_empty"));
    assert_eq!(std::fs::read_dir(&occupied).unwrap().count(), 1);
    let a = api
        .post("/api/v1/admin/backup", Some(&admin.access), &json!({"dir": target}))
        .unwrap();
    assert_eq!(a.status, 201, "{:?}", a.body);

    // A server never restored has no previous epoch to take versions of.
    let a = api
        .post(
            "/api/v1/sync/recover",
            Some(&lan.access),
            &json!({"epoch": "e", "records": []}),
        )
        .unwrap();
    assert_eq!((a.status, a.code()), (409, "unknown_epoch"));
    let a = api
        .post("/api/v1/sync/recover", Some(&lan.access), &json!({"records": []}))
        .unwrap();
    assert_eq!(a.status, 400);
    let a = api.post("/api/v1/sync/recover", None, &json!({"epoch": "e"})).unwrap();
    assert_eq!(a.status, 401);

    // Restore refuses a folder that is not a backup, and a data folder in use.
    let out = Command::new(fieldsync_bin().unwrap())
        .args([
            "restore",
            occupied.to_str().unwrap(),
            "--data",
            root.path().join("new").to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a backup"));
    let out = Command::new(fieldsync_bin().unwrap())
        .args(["restore", target.to_str().unwrap(), "--data", data.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
}

/// A real small filesystem (tmpfs, needs root): the server's store fills it
/// down to the writer's reserve.
/// Where mounting is not allowed the test says so and stops (unless
/// FIELDSYNC_REQUIRE_TMPFS=1); the injected full disk above covers the
/// behaviour everywhere.
#[test]
fn a_real_full_disk_refuses_the_push_with_507_and_keeps_serving_reads() {
    let root = tempfile::tempdir().unwrap();
    let mnt = root.path().join("small");
    let Some(_unmount) = tests::harness::small_tmpfs(&mnt, 32) else {
        return;
    };
    let server = ServerProcess::start_with_args(
        &mnt.join("server"),
        &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)],
        &["--cache-mb", "4"],
    )
    .unwrap();
    let url = server.url("");
    let (tablets, site) = storm::tablets_with_a_pond(root.path(), &url, PASSWORD, 1).unwrap();
    let mut tablet = tablets.into_iter().next().unwrap();
    let api = Api::new(&url);
    let token = tablet.transport.http.credentials().unwrap().access_token.clone();
    let device = tablet.replica.identity().device;
    // The admin logs in while there is room: a login writes, and stops at the
    // reserve like any other write.
    let admin = api.login("admin", PASSWORD).unwrap();
    let mut full = None;
    for i in 0..1000 {
        let insp = InspectionId::generate();
        let mut doc = sample::inspection(insp, site, device);
        doc.conclusion = format!("{i}:{}", "渗".repeat(60_000));
        tablet.replica.create(doc.into()).unwrap();
        let pending = tablet.replica.outbox().unwrap();
        let a = api
            .post("/api/v1/sync/push", Some(&token), &json!({ "changes": pending }))
            .unwrap();
        if a.status == 507 {
            assert_eq!(a.code(), "not_durable");
            full = Some(i);
            break;
        }
        assert_eq!(a.status, 200, "{:?}", a.body);
        // Settle the outbox through the replica (answers are replayed).
        tablet.replica.push(&mut tablet.transport).unwrap();
    }
    let full = full.expect("the 32 MiB store never filled");
    assert!(full > 0, "the first push already failed");
    // Reads go on, for devices already logged in.
    assert_eq!(api.get("/healthz", None).unwrap().status, 200);
    let mut pulled = 0;
    let mut since = "0".to_string();
    loop {
        let a = api
            .get(&format!("/api/v1/sync/pull?since={since}&limit=5"), Some(&token))
            .unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        pulled += a.body["records"].as_array().unwrap().len();
        since = a.body["next"].as_str().unwrap().to_string();
        if a.body["more"] == false {
            break;
        }
    }
    // The site and every acknowledged inspection, not the refused one.
    assert_eq!(pulled, full + 1);
    // The change stays on the tablet; pushing it again is refused the same way.
    let pending = tablet.replica.outbox().unwrap();
    assert_eq!(pending.len(), 1);
    let a = api
        .post("/api/v1/sync/push", Some(&token), &json!({ "changes": pending }))
        .unwrap();
    assert_eq!((a.status, a.code()), (507, "not_durable"), "{:?}", a.body);
    assert_eq!(api.get("/healthz", None).unwrap().status, 200);

    // No room for a backup either: refused before the copy starts (which
    // would hold every write), and the writer goes on.
    let a = api
        .post(
            "/api/v1/admin/backup",
            Some(&admin.access),
            &json!({"dir": mnt.join("b")}),
        )
        .unwrap();
    assert_eq!((a.status, a.code()), (507, "not_durable"), "{:?}", a.body);
    assert!(!mnt.join("b").join("backup.json").exists());

    // Down to the reserve itself (another program filled the disk): logins and
    // token refreshes, which write outside the writer, wait too; reads go on.
    let free = fs2::available_space(&mnt).unwrap();
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; (free.saturating_sub(8 * 1024 * 1024)) as usize]).unwrap();
    let a = api
        .login_as("admin", PASSWORD, mobile_schema::ids::DeviceId::generate())
        .unwrap();
    assert_eq!((a.status, a.code()), (507, "not_durable"), "{:?}", a.body);
    let a = api.refresh(&admin.refresh).unwrap();
    assert_eq!((a.status, a.code()), (507, "not_durable"), "{:?}", a.body);
    let a = api.get("/api/v1/sync/pull?since=0&limit=5", Some(&token)).unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    std::fs::remove_file(&filler).unwrap();

    // Space again (the filesystem grown): the retry lands, once.
    let grown = Command::new("mount")
        .args(["-o", "remount,size=64m", mnt.to_str().unwrap()])
        .status()
        .unwrap();
    assert!(grown.success());
    tablet.replica.push(&mut tablet.transport).unwrap();
    assert_eq!(tablet.replica.pending_count(), 0);
    assert!(tablet.replica.refused().unwrap().is_empty());
}
