#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Two tablets played by `fieldsync-device` against the real server: an
//! inspection made on one reaches the other, and edits of different units made
//! on each reach both.

use mobile_schema::ids::{DeviceId, InspectionId, SiteId};
use serde_json::{Value, json};
use tests::device::DeviceCli;
use tests::harness::ServerProcess;

/// Given to the server on its first start, which creates `admin` with it.
const ADMIN_PASSWORD: &str = "device-cli-test-Tp03-password";

fn tablet(root: &std::path::Path, name: &str) -> anyhow::Result<DeviceCli> {
    Ok(DeviceCli::new(root.join(name))?.env("FIELDSYNC_PASSWORD", ADMIN_PASSWORD))
}

#[test]
fn an_inspection_made_on_one_tablet_reaches_another_and_edits_of_different_units_merge() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let server = ServerProcess::start_with(
        &root.path().join("server-store"),
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )?;
    let url = server.url("");
    let a = tablet(root.path(), "tablet-a")?;
    let b = tablet(root.path(), "tablet-b")?;

    // Log in; the tokens end up bound to each device's own replica.
    let mut replicas = Vec::new();
    for t in [&a, &b] {
        let init = t.json(&["init", "--server", url.as_str(), "--username", "admin", "--name", "e2e"])?;
        assert_eq!(init["user"]["username"], "admin", "{init}");
        assert_eq!(init["user"]["role"], "admin", "{init}");
        let status = t.json(&["status"])?;
        assert_eq!(status["bound"], true, "{status}");
        assert_eq!(status["replica"], init["replica"]);
        assert_eq!(status["pending"], 0);
        let saved = std::fs::read_to_string(t.credentials_file())?;
        assert!(!saved.contains(ADMIN_PASSWORD), "the password is never stored");
        replicas.push(init["replica"].clone());
    }
    assert_ne!(replicas[0], replicas[1]);

    // An inspection written on tablet A from a JSON file.
    let site = SiteId::generate();
    let insp = InspectionId::generate();
    let document = mobile_schema::sample::inspection(insp, site, DeviceId::generate());
    let original_conclusion = document.conclusion.clone();
    let file = root.path().join("inspection.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&document)?)?;
    let id = a.text(&["create", "inspection", file.to_str().unwrap()])?;
    assert_eq!(id, insp.to_string());
    assert_eq!(a.json(&["status"])?["pending"], 1);

    let sync = a.json(&["sync"])?;
    assert_eq!(sync["pushed"], 1, "{sync}");
    assert_eq!(sync["applied"], 1, "{sync}");
    assert_eq!(sync["refused"], 0, "{sync}");
    assert_eq!(sync["pending"], 0, "{sync}");
    assert!(sync["wire"]["body_bytes_sent"].as_u64().unwrap_or(0) > 0, "{sync}");
    assert!(sync["clock_offset_ms"].is_i64(), "{sync}");

    let sync = b.json(&["sync"])?;
    assert!(sync["pulled"].as_u64().unwrap_or(0) >= 1, "{sync}");
    let shown = b.json(&["show", id.as_str()])?;
    assert_eq!(shown["kind"], "inspection", "{shown}");
    assert_eq!(shown["workflow"], "draft", "{shown}");
    assert_eq!(shown["record"]["conclusion"], original_conclusion, "{shown}");
    assert_eq!(shown["pending"], 0);
    let listed = b.json(&["list", "inspection"])?;
    assert!(
        listed.as_array().unwrap().iter().any(|r| r["id"] == id.as_str()),
        "{listed}"
    );

    // Concurrent edits of different units, one per tablet.
    let conclusion = "坝体渗水点已封堵，复查合格。";
    let answer = json!({"result": "problem", "note": "警示标识牌脱落", "evidence": []});
    a.json(&["edit", id.as_str(), "conclusion", &Value::from(conclusion).to_string()])?;
    b.json(&["edit", id.as_str(), "answers/TP-01", &answer.to_string()])?;
    for _ in 0..2 {
        a.json(&["sync"])?;
        b.json(&["sync"])?;
    }
    for t in [&a, &b] {
        let shown = t.json(&["show", id.as_str()])?;
        assert_eq!(shown["record"]["conclusion"], conclusion, "{shown}");
        assert_eq!(shown["record"]["answers"]["TP-01"]["result"], "problem", "{shown}");
        assert_eq!(shown["record"]["answers"]["TP-01"]["note"], "警示标识牌脱落", "{shown}");
        // Untouched answers are still there.
        assert_eq!(
            shown["record"]["answers"]["TP-09"],
            serde_json::to_value(&document.answers["TP-09"])?,
            "{shown}"
        );
        assert_eq!(shown["conflicts"], json!([]), "different units never conflict: {shown}");
        assert_eq!(shown["pending"], 0, "{shown}");
        let status = t.json(&["status"])?;
        assert_eq!(status["pending"], 0, "{status}");
        assert_eq!(status["refused"], json!([]), "{status}");
        assert!(status["last_sync_ms"].is_u64(), "{status}");
    }

    // Another user logs in on tablet A while it holds admin's unsynced edit:
    // refused (the server would credit the edit to li), and the folder stays
    // admin's, whose edit then syncs as admin's; then li may log in.
    const LI_PASSWORD: &str = "device-cli-li-Tp04-password";
    let api = tests::api::Api::new(&url);
    let admin = api.login("admin", ADMIN_PASSWORD)?;
    let r = api.post(
        "/api/v1/admin/users",
        Some(&admin.access),
        &json!({"username": "li", "password": LI_PASSWORD, "role": "supervisor", "regions": ["450000"]}),
    )?;
    assert_eq!(r.status, 201, "{:?}", r.body);
    a.json(&[
        "edit",
        id.as_str(),
        "conclusion",
        &Value::from("交接前的结论").to_string(),
    ])?;
    let li_init = [
        "init",
        "--server",
        url.as_str(),
        "--username",
        "li",
        "--password",
        LI_PASSWORD,
    ];
    let out = a.output(&li_init)?;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not yet synced"), "{err}");
    assert_eq!(a.json(&["status"])?["user"]["username"], "admin");
    let sync = a.json(&["sync"])?;
    assert_eq!(sync["applied"], 1, "{sync}");
    let init = a.json(&li_init)?;
    assert_eq!(init["user"]["username"], "li", "{init}");
    Ok(())
}
