#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The `fieldsync-device` binary against the reference server behind the HTTP
//! contract (the real server's end-to-end test is `tests/tests/device_cli.rs`).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use mobile_schema::ids::{DeviceId, InspectionId, SiteId};
use serde_json::Value;
use support::ReferenceHttp;
use sync_protocol::clock::SystemClock;

fn cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fieldsync-device"))
        .env("FIELDSYNC_DEVICE_DIR", dir)
        .env("FIELDSYNC_PASSWORD", "pw")
        .args(["--attempts", "3"])
        .args(args)
        .output()
        .unwrap()
}

/// Run, require success, parse stdout as JSON.
fn json(dir: &Path, args: &[&str]) -> Value {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {:?}", out.stdout))
}

fn text(dir: &Path, args: &[&str]) -> String {
    let out = cli(dir, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn two_tablets_share_an_inspection_and_merge_edits_of_different_units() {
    let server = ReferenceHttp::start(Arc::new(SystemClock), 4);
    let url = server.server.url();
    let root = tempfile::tempdir().unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    for dir in [&a, &b] {
        let init = json(dir, &["init", "--server", &url, "--username", "admin"]);
        assert_eq!(init["user"]["role"], "admin");
        let status = json(dir, &["status"]);
        assert_eq!(status["bound"], true, "{status}");
        assert_eq!(status["replica"], init["replica"]);
        let saved = std::fs::read_to_string(dir.join("credentials.json")).unwrap();
        assert!(!saved.contains("\"pw\""), "the password is not stored");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.join("credentials.json"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    let site = SiteId::generate();
    let insp = InspectionId::generate();
    let files = root.path();
    std::fs::write(
        files.join("site.json"),
        serde_json::to_string(&mobile_schema::sample::pond(site)).unwrap(),
    )
    .unwrap();
    std::fs::write(
        files.join("inspection.json"),
        serde_json::to_string(&mobile_schema::sample::inspection(insp, site, DeviceId::generate())).unwrap(),
    )
    .unwrap();
    let site_file = files.join("site.json");
    let insp_file = files.join("inspection.json");
    assert_eq!(
        text(&a, &["create", "site", site_file.to_str().unwrap()]),
        site.to_string()
    );
    let id = text(&a, &["create", "inspection", insp_file.to_str().unwrap()]);
    assert_eq!(id, insp.to_string());
    assert_eq!(json(&a, &["status"])["pending"], 2);

    let sync = json(&a, &["sync"]);
    assert_eq!(
        (sync["pushed"].as_u64(), sync["applied"].as_u64()),
        (Some(2), Some(2)),
        "{sync}"
    );
    assert_eq!(sync["pending"], 0);
    assert!(sync["wire"]["body_bytes_sent"].as_u64().unwrap() > 0);
    json(&b, &["sync"]);
    let shown = json(&b, &["show", &id]);
    assert_eq!(shown["kind"], "inspection");
    assert_eq!(
        shown["record"]["conclusion"],
        "现场检查发现坝体局部渗水，已现场责令整改。"
    );

    json(&a, &["edit", &id, "conclusion", r#""坝体渗水已处理""#]);
    json(
        &b,
        &[
            "edit",
            &id,
            "answers/TP-01",
            r#"{"result": "problem", "note": "标识牌脱落"}"#,
        ],
    );
    for _ in 0..2 {
        json(&a, &["sync"]);
        json(&b, &["sync"]);
    }
    for dir in [&a, &b] {
        let shown = json(dir, &["show", &id]);
        assert_eq!(shown["record"]["conclusion"], "坝体渗水已处理", "{shown}");
        assert_eq!(shown["record"]["answers"]["TP-01"]["note"], "标识牌脱落", "{shown}");
        assert_eq!(shown["conflicts"], Value::Array(Vec::new()));
        assert_eq!(shown["pending"], 0);
        let list = json(dir, &["list", "inspection"]);
        assert_eq!(list.as_array().unwrap().len(), 1);
        assert!(json(dir, &["status"])["last_sync_ms"].as_u64().is_some());
    }
}

#[test]
fn invalid_input_exits_non_zero_with_the_reasons_and_queues_nothing() {
    let server = ReferenceHttp::start(Arc::new(SystemClock), 0);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    json(&dir, &["init", "--server", &server.server.url(), "--username", "wei"]);
    let site = SiteId::generate();
    let mut pond = serde_json::to_value(mobile_schema::sample::pond(site)).unwrap();
    pond["location"]["lat"] = 95.0.into();
    let file = root.path().join("bad.json");
    std::fs::write(&file, pond.to_string()).unwrap();
    let out = cli(&dir, &["create", "site", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("location"), "{err}");
    let out = cli(&dir, &["create", "pond", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&dir, &["status"])["pending"], 0);
}

#[test]
fn bad_credentials_and_an_unreachable_server_have_their_own_exit_codes() {
    let server = ReferenceHttp::start(Arc::new(SystemClock), 0);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("a");
    let out = Command::new(env!("CARGO_BIN_EXE_fieldsync-device"))
        .args(["--dir", dir.to_str().unwrap(), "init", "--server", &server.server.url()])
        .args(["--username", "wei", "--password", "wrong"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad_credentials"));
    assert!(!dir.join("credentials.json").exists());

    json(&dir, &["init", "--server", &server.server.url(), "--username", "wei"]);
    drop(server);
    let out = cli(&dir, &["sync"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    let out = cli(
        root.path(),
        &["--dir", root.path().join("nothing").to_str().unwrap(), "status"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("init"));
}
