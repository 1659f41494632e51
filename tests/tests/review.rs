#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Review and hazards end to end, against a real server process: an
//! inspector's tablet (the `fieldsync-device` binary) submits, a supervisor
//! returns it with comments through the `fieldsync review` binary, the tablet
//! shows `returned` with the comments after its next sync, a resubmission is
//! back in the queue, an approval, and content changed after a decision marks
//! it. Hazards go through their lifecycle with every forbidden step refused;
//! the overdue listing follows the server's today; listings filter and page.

use std::path::Path;

use mobile_schema::geo::LatLon;
use mobile_schema::hazard::Hazard;
use mobile_schema::ids::{DeviceId, HazardId, InspectionId, ItemId, RecordId, Sha256Hex, SiteId};
use mobile_schema::inspection::{Evidence, EvidenceKind};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::sample;
use mobile_schema::workflow::HazardState;
use replica::{HttpConfig, ReplicaError};
use serde_json::{Value, json};
use sync_protocol::RefusalCode;
use tests::api::Api;
use tests::device::DeviceCli;
use tests::harness::{ServerProcess, run_fieldsync};
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "review-admin-Rq58-password";
const PASSWORD: &str = "review-user-Lm27-password";
/// 恭城瑶族自治县 and 阳朔县 in 桂林市; 南宁市.
const GONGCHENG: &str = "450332";
const YANGSHUO: &str = "450321";
const GUILIN: &str = "450300";
const NANNING: &str = "450100";

/// A server with wei (inspector, 恭城), li (supervisor, 桂林) and zhao
/// (supervisor, 南宁); the admin's token.
fn server(root: &Path, today: Option<&str>) -> (ServerProcess, Api, String) {
    let mut envs = vec![("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    if let Some(day) = today {
        envs.push(("FIELDSYNC_TODAY", day));
    }
    let server = ServerProcess::start_with(&root.join("server"), &envs).unwrap();
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap().access;
    for (name, role, region) in [
        ("wei", "inspector", GONGCHENG),
        ("li", "supervisor", GUILIN),
        ("zhao", "supervisor", NANNING),
    ] {
        api.create_user(&admin, name, PASSWORD, role, &[region]).unwrap();
    }
    (server, api, admin)
}

fn pond(region: &str) -> (SiteId, AnyRecord) {
    let id = SiteId::generate();
    let mut site = sample::pond(id);
    site.region_code = region.parse::<RegionCode>().unwrap();
    (id, site.into())
}

/// The office's tablet, logged in as the admin.
fn office(root: &Path, server: &ServerProcess) -> Tablet {
    Tablet::enrol(
        &root.join("office"),
        HttpConfig::new(server.url("")),
        "admin",
        ADMIN_PASSWORD,
        None,
    )
    .unwrap()
}

/// `fieldsync review|hazards --as USER ARGS...`: success, stdout, stderr.
fn fieldsync(server: &ServerProcess, command: &str, user: &str, args: &[&str]) -> (bool, String, String) {
    let url = server.url("");
    let args = [&[command, "--server", url.as_str(), "--as", user], args].concat();
    run_fieldsync(&args, &[("FIELDSYNC_PASSWORD", PASSWORD)]).unwrap()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_returned_inspection_reaches_the_tablet_with_comments_and_comes_back_to_review() {
    let root = tempfile::tempdir().unwrap();
    let (server, api, admin) = server(root.path(), None);
    let li = api.login("li", PASSWORD).unwrap().access;
    let zhao = api.login("zhao", PASSWORD).unwrap().access;
    let wei_api = api.login("wei", PASSWORD).unwrap().access;

    // The office records the pond; wei's tablet (the device binary) pulls it,
    // writes an inspection and submits it.
    let mut office = office(root.path(), &server);
    let (site, record) = pond(GONGCHENG);
    office.replica.create(record).unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);
    let wei = DeviceCli::new(root.path().join("wei"))
        .unwrap()
        .env("FIELDSYNC_PASSWORD", PASSWORD);
    wei.json(&[
        "init",
        "--server",
        &server.url(""),
        "--username",
        "wei",
        "--name",
        "wei's tablet",
    ])
    .unwrap();
    let insp = InspectionId::generate();
    let file = root.path().join("inspection.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&sample::inspection(insp, site, DeviceId::generate())).unwrap(),
    )
    .unwrap();
    let id = wei.text(&["create", "inspection", file.to_str().unwrap()]).unwrap();
    wei.json(&["transition", &id, "submit"]).unwrap();
    let sync = wei.json(&["sync"]).unwrap();
    assert_eq!(sync["refused"], 0, "{sync}");

    // li's queue has it, through the binary and the API; zhao's region does not.
    let (ok, out, err) = fieldsync(&server, "review", "li", &["list"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&id) && out.contains("submitted") && out.contains("1 waiting"),
        "{out}"
    );
    let (ok, out, err) = fieldsync(&server, "review", "li", &["list", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(ids(&serde_json::from_str(&out).unwrap()), vec![id.clone()]);
    let queue = api.get("/api/v1/reviews", Some(&zhao)).unwrap().ok().unwrap();
    assert_eq!(queue["items"], json!([]), "another region's supervisor sees nothing");

    // Refused decisions change nothing: another region, an inspector, a return
    // without comments (binary and API).
    let path = format!("/api/v1/reviews/{id}/return");
    let r = api.post(&path, Some(&zhao), &json!({"comments": "越权"})).unwrap();
    assert_eq!((r.status, r.code()), (403, "forbidden_scope"), "{:?}", r.body);
    let r = api.get(&format!("/api/v1/reviews/{id}"), Some(&zhao)).unwrap();
    assert_eq!(
        r.status, 404,
        "another region's supervisor does not learn it exists: {:?}",
        r.body
    );
    let r = api.get(&format!("/api/v1/reviews/{id}"), Some(&wei_api)).unwrap();
    assert_eq!((r.status, r.code()), (403, "role_not_allowed"), "{:?}", r.body);
    let r = api
        .post(&format!("/api/v1/reviews/{id}/approve"), Some(&wei_api), &json!({}))
        .unwrap();
    assert_eq!((r.status, r.code()), (403, "role_not_allowed"), "{:?}", r.body);
    // The role before the body: a malformed body from an inspector is still 403.
    let r = api
        .post(&path, Some(&wei_api), &json!({"comments": 42, "other": true}))
        .unwrap();
    assert_eq!((r.status, r.code()), (403, "role_not_allowed"), "{:?}", r.body);
    let r = api.post(&path, Some(&li), &json!({"comments": "  "})).unwrap();
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("comments")),
        "{:?}",
        r.body
    );
    let (ok, _, err) = fieldsync(&server, "review", "li", &["return", &id]);
    assert!(!ok && err.contains("comments"), "{err}");
    let r = api
        .post(&path, Some(&li), &json!({"comments": "x", "verdict": 1}))
        .unwrap();
    assert_eq!(r.status, 400, "unknown fields are refused: {:?}", r.body);
    let detail = api
        .get(&format!("/api/v1/reviews/{id}"), Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(detail["summary"]["status"], "submitted");
    assert_eq!(detail["decisions"], json!([]));

    // li returns it with comments through the binary.
    let (ok, out, err) = fieldsync(
        &server,
        "review",
        "li",
        &[
            "return",
            &id,
            "--comment",
            "answers/TP-09=请补充渗水点照片",
            "--comment",
            "结论需写明整改期限",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.contains("returned"), "{out}");
    let r = api
        .post(&format!("/api/v1/reviews/{id}/approve"), Some(&li), &json!({}))
        .unwrap();
    assert_eq!((r.status, r.code()), (409, "not_submitted"), "{:?}", r.body);

    // After its next sync the tablet shows `returned` with the comments.
    wei.json(&["sync"]).unwrap();
    let shown = wei.json(&["show", &id]).unwrap();
    assert_eq!(shown["workflow"], "returned", "{shown}");
    assert_eq!(shown["review"]["decision"], "return", "{shown}");
    let texts: Vec<&str> = shown["review_comments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["请补充渗水点照片", "结论需写明整改期限"], "{shown}");
    assert_eq!(shown["review_comments"][0]["unit"], "answers/TP-09");
    assert!(api.get("/api/v1/reviews", Some(&li)).unwrap().ok().unwrap()["items"] == json!([]));

    // wei fixes and resubmits: back in the queue, marked changed since review.
    wei.json(&["edit", &id, "conclusion", "\"坝体渗水，责令于2026-12-31前整改\""])
        .unwrap();
    wei.json(&["transition", &id, "submit"]).unwrap();
    assert_eq!(wei.json(&["sync"]).unwrap()["refused"], 0);
    let queue = api.get("/api/v1/reviews", Some(&li)).unwrap().ok().unwrap();
    assert_eq!(ids(&queue), vec![id.clone()]);
    let detail = api
        .get(&format!("/api/v1/reviews/{id}"), Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(detail["summary"]["review"]["changed_since_review"], true, "{detail}");
    assert_eq!(detail["decisions"].as_array().unwrap().len(), 1, "{detail}");
    assert_eq!(detail["decisions"][0]["comments"][1]["text"], "结论需写明整改期限");
    // li reads it with the binary, which names the content read.
    let (ok, out, _) = fieldsync(&server, "review", "li", &["show", &id]);
    assert!(
        ok && out.contains("结论需写明整改期限") && out.contains("changed since"),
        "{out}"
    );
    let tag_of = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("content "))
            .and_then(|l| l.split(':').next())
            .unwrap()
            .to_string()
    };
    let read = tag_of(&out);
    assert_eq!(detail["content_tag"], read.as_str());

    // wei's tablet syncs an edit meanwhile: an approval of what li read is
    // refused, never stretched over content li did not see.
    wei.json(&["edit", &id, "conclusion", "\"坝体渗水，已责令整改，限期2026-12-31\""])
        .unwrap();
    assert_eq!(wei.json(&["sync"]).unwrap()["refused"], 0);
    let (ok, _, err) = fieldsync(&server, "review", "li", &["approve", &id]);
    assert!(
        !ok && err.contains("--seen"),
        "an approval names what it approves: {err}"
    );
    let (ok, _, err) = fieldsync(&server, "review", "li", &["approve", &id, "--seen", &read]);
    assert!(!ok && err.contains("changed since it was read"), "{err}");
    let r = api
        .post(
            &format!("/api/v1/reviews/{id}/approve"),
            Some(&li),
            &json!({"comments": "同意", "seen": read}),
        )
        .unwrap();
    assert_eq!((r.status, r.code()), (409, "changed_since_read"), "{:?}", r.body);
    assert_eq!(r.body["field"], "seen");

    // li reads again and approves what li read: the mark names those versions.
    let (ok, out, _) = fieldsync(&server, "review", "li", &["show", &id]);
    assert!(ok && out.contains("changed since"), "{out}");
    let read = tag_of(&out);
    let (ok, out, err) = fieldsync(
        &server,
        "review",
        "li",
        &["approve", &id, "--seen", &read, "--comment", "同意", "--json"],
    );
    assert!(ok, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["status"], "approved", "{r}");
    assert_eq!(r["review"]["changed_since_review"], false, "{r}");
    let detail = api
        .get(&format!("/api/v1/reviews/{id}"), Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(r["review"]["reviewed"], detail["versions"]);
    assert_eq!(detail["content_tag"], read.as_str());

    // Content changed after the decision marks it; the decision stands.
    wei.json(&["sync"]).unwrap();
    assert_eq!(wei.json(&["show", &id]).unwrap()["workflow"], "approved");
    wei.json(&["edit", &id, "conclusion", "\"补记：已整改\""]).unwrap();
    assert_eq!(wei.json(&["sync"]).unwrap()["refused"], 0);
    let detail = api
        .get(&format!("/api/v1/reviews/{id}"), Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(detail["summary"]["status"], "approved");
    assert_eq!(detail["summary"]["review"]["changed_since_review"], true, "{detail}");
    assert_eq!(detail["decisions"].as_array().unwrap().len(), 2);
    // Both decisions are li's: the office commits them as the deciding user.
    let users = api.get("/api/v1/admin/users", Some(&admin)).unwrap().ok().unwrap();
    let li_id = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["username"] == "li")
        .unwrap()["id"]
        .clone();
    assert_eq!(detail["decisions"][0]["reviewer"], li_id);
    assert_eq!(detail["decisions"][1]["reviewer"], li_id);
    wei.json(&["sync"]).unwrap();
    let shown = wei.json(&["show", &id]).unwrap();
    assert_eq!(shown["review"]["changed_since_review"], true, "{shown}");
}

fn evidence(tag: &str) -> Evidence {
    Evidence {
        id: ItemId::generate(),
        sha256: Sha256Hex::of_bytes(tag.as_bytes()),
        kind: EvidenceKind::Photo,
        capture_time: None,
        position: None,
        device_id: None,
        caption: tag.into(),
    }
}

fn hazard(inspection: InspectionId, site: SiteId) -> Hazard {
    Hazard {
        id: HazardId::generate(),
        schema_version: Hazard::SCHEMA_VERSION,
        inspection_id: inspection,
        site_id: site,
        category: "F-LEAK".into(),
        severity: "high".into(),
        description: "坝体下游坡面渗漏".into(),
        deadline: None,
        responsible_party: String::new(),
        evidence: vec![evidence("finding")],
        notified_on: None,
        rectification_evidence: vec![],
        verification_evidence: vec![],
        state: HazardState::Identified,
    }
}

fn refusal(e: ReplicaError) -> (RefusalCode, Option<String>) {
    match e {
        ReplicaError::Rejected(r) => (r.code, r.field),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_hazard_goes_to_closure_with_each_forbidden_step_refused_and_overdue_follows_today() {
    let root = tempfile::tempdir().unwrap();
    let (server, api, admin) = server(root.path(), Some("2026-12-10"));
    let li = api.login("li", PASSWORD).unwrap().access;
    let zhao = api.login("zhao", PASSWORD).unwrap().access;
    let wei_api = api.login("wei", PASSWORD).unwrap().access;
    let http = || HttpConfig::new(server.url(""));
    let mut office = office(root.path(), &server);
    let (site, record) = pond(GONGCHENG);
    let (other_site, other) = pond(YANGSHUO);
    office.replica.create(record).unwrap();
    office.replica.create(other).unwrap();
    let device = office.replica.identity().device;
    let (insp, other_insp) = (InspectionId::generate(), InspectionId::generate());
    office
        .replica
        .create(sample::inspection(insp, site, device).into())
        .unwrap();
    office
        .replica
        .create(sample::inspection(other_insp, other_site, device).into())
        .unwrap();
    // A hazard in 阳朔, notified with a deadline still ahead: never overdue here.
    let mut later = hazard(other_insp, other_site);
    later.deadline = Some("2027-01-31".parse().unwrap());
    later.responsible_party = "阳朔某矿业公司".into();
    later.notified_on = Some("2026-12-01".parse().unwrap());
    let later_id = later.id;
    office.replica.create(later.into()).unwrap();
    office
        .replica
        .transition(RecordKind::Hazard, later_id.into(), "notify")
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    // wei finds a hazard on site; a notice without its deadline is refused on the tablet.
    let mut wei = Tablet::enrol(&root.path().join("wei"), http(), "wei", PASSWORD, None).unwrap();
    wei.sync().unwrap();
    let h = hazard(insp, site);
    let hid = h.id;
    let rid = RecordId::from(hid);
    wei.replica.create(h.into()).unwrap();
    let (code, field) = refusal(wei.replica.transition(RecordKind::Hazard, rid, "notify").unwrap_err());
    assert_eq!(
        (code, field.as_deref()),
        (RefusalCode::EvidenceRequired, Some("deadline"))
    );
    assert_eq!(wei.sync().unwrap().refused, 0);

    // The office serves the notice: first without a deadline (refused, nothing
    // changes), then with it. Steps out of order, by the wrong role, from the
    // wrong region, or `verify` from the office are refused.
    let step = |token: &str, action: &str, body: Value| {
        api.post(&format!("/api/v1/hazards/{hid}/{action}"), Some(token), &body)
            .unwrap()
    };
    let r = step(&li, "notify", json!({"responsible_party": "恭城某矿业公司"}));
    assert_eq!((r.status, r.code()), (422, "evidence_required"), "{:?}", r.body);
    assert_eq!(r.body["field"], "deadline");
    let listed = api
        .get("/api/v1/hazards?status=identified", Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(ids(&listed), vec![hid.to_string()], "the refused step changed nothing");
    assert_eq!(listed["items"][0]["responsible_party"], "");
    let r = step(&li, "close", json!({}));
    assert_eq!((r.status, r.code()), (409, "transition_not_allowed"), "{:?}", r.body);
    let r = step(
        &zhao,
        "notify",
        json!({"deadline": "2026-12-05", "responsible_party": "x"}),
    );
    assert_eq!((r.status, r.code()), (403, "forbidden_scope"), "{:?}", r.body);
    let r = step(&li, "dance", json!({}));
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (400, Some("action")),
        "{:?}",
        r.body
    );
    let r = step(
        &li,
        "notify",
        json!({"deadline": "2026-12-05", "responsible_party": "恭城某矿业公司", "notified_on": "2026-11-20"}),
    )
    .ok()
    .unwrap();
    assert_eq!(r["state"], "notified", "{r}");
    assert_eq!(
        r["overdue"], true,
        "deadline 12-05 has passed on the server's today 12-10: {r}"
    );
    let r = step(&li, "verify", json!({}));
    assert_eq!((r.status, r.code()), (403, "on_site_only"), "{:?}", r.body);
    let r = step(&wei_api, "close", json!({}));
    assert_eq!((r.status, r.code()), (403, "role_not_allowed"), "{:?}", r.body);
    // Evidence the hazard cannot hold (a position off the earth) with a step
    // that needs none: the whole step is refused, the hazard stays notified.
    let mut off_earth = evidence("坐标错误");
    off_earth.position = Some(LatLon { lat: 95.0, lon: 110.5 });
    let r = step(
        &li,
        "start_rectification",
        json!({"rectification_evidence": [off_earth]}),
    );
    assert_eq!(r.status, 422, "{:?}", r.body);
    let listed = api
        .get("/api/v1/hazards?status=notified", Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert!(
        ids(&listed).contains(&hid.to_string()),
        "the refused step was taken: {listed}"
    );
    step(&li, "start_rectification", json!({})).ok().unwrap();
    // The date filters of hazards compare the notice day.
    for (query, expected) in [
        ("from=2026-11-20&to=2026-11-20", vec![hid.to_string()]),
        ("from=2026-11-21", vec![later_id.to_string()]),
        ("", vec![hid.to_string(), later_id.to_string()]),
    ] {
        let listed = api
            .get(&format!("/api/v1/hazards?{query}"), Some(&admin))
            .unwrap()
            .ok()
            .unwrap();
        assert_eq!(ids(&listed), expected, "{query}: {listed}");
    }

    // Overdue per region, counted from the configured today.
    let overdue = api.get("/api/v1/hazards/overdue", Some(&li)).unwrap().ok().unwrap();
    assert_eq!(overdue["today"], "2026-12-10");
    assert_eq!(ids(&overdue), vec![hid.to_string()], "{overdue}");
    assert_eq!(overdue["by_region"].as_object().unwrap().len(), 1, "{overdue}");
    assert_eq!(overdue["by_region"][GONGCHENG], 1, "{overdue}");
    let narrowed = api
        .get(&format!("/api/v1/hazards/overdue?region={YANGSHUO}"), Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(narrowed["items"], json!([]), "{narrowed}");
    let admin_view = api.get("/api/v1/hazards/overdue", Some(&admin)).unwrap().ok().unwrap();
    assert_eq!(ids(&admin_view), vec![hid.to_string()]);
    let theirs = api.get("/api/v1/hazards/overdue", Some(&zhao)).unwrap().ok().unwrap();
    assert_eq!(
        (theirs["items"].clone(), theirs["by_region"].clone()),
        (json!([]), json!({}))
    );
    let (ok, out, err) = fieldsync(&server, "hazards", "li", &["overdue"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&hid.to_string()) && out.contains("450332: 1") && out.contains("2026-12-10"),
        "{out}"
    );
    let (ok, out, err) = fieldsync(&server, "hazards", "li", &["list", "--status", "rectifying", "--json"]);
    assert!(ok, "{err}");
    assert_eq!(ids(&serde_json::from_str(&out).unwrap()), vec![hid.to_string()]);

    // The rectification is handed in at the bureau, with the party's material.
    let r = step(&li, "submit_rectification", json!({}));
    assert_eq!(
        (r.status, r.body["field"].as_str()),
        (422, Some("rectification_evidence"))
    );
    let r = step(
        &li,
        "submit_rectification",
        json!({"rectification_evidence": [evidence("整改报告")]}),
    )
    .ok()
    .unwrap();
    assert_eq!(
        (r["state"].as_str(), r["rectification_evidence"].as_u64()),
        (Some("rectification_submitted"), Some(1))
    );

    // On site, wei verifies: the server refuses a verify without its evidence
    // even from a client that skips the tablet's own check (a raw push).
    wei.sync().unwrap();
    let (code, _) = refusal(wei.replica.transition(RecordKind::Hazard, rid, "verify").unwrap_err());
    assert_eq!(code, RefusalCode::EvidenceRequired);
    let raw = api.login("wei", PASSWORD).unwrap();
    let replica = uuid::Uuid::now_v7();
    let bound = api
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": raw.refresh, "replica": replica}),
        )
        .unwrap()
        .ok()
        .unwrap();
    let pushed = api
        .post(
            "/api/v1/sync/push",
            bound["access_token"].as_str(),
            &json!({"changes": [{"seq": 1, "hlc": [chrono::Utc::now().timestamp_millis(), 0], "kind": "hazard", "record": hid,
                                  "op": {"transition": {"action": "verify"}}}]}),
        )
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(pushed["outcomes"][0]["outcome"], "refused", "{pushed}");
    assert_eq!(pushed["outcomes"][0]["code"], "evidence_required", "{pushed}");
    assert_eq!(pushed["outcomes"][0]["field"], "verification_evidence", "{pushed}");
    let seen = evidence("复查照片");
    wei.edit(
        RecordKind::Hazard,
        rid,
        &format!("verification_evidence/{}", seen.id),
        serde_json::to_value(&seen).unwrap(),
    )
    .unwrap();
    wei.replica.transition(RecordKind::Hazard, rid, "verify").unwrap();
    let report = wei.sync().unwrap();
    assert_eq!(report.refused, 0, "{report:?}");
    let listed = api
        .get("/api/v1/hazards?status=verified", Some(&li))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(ids(&listed), vec![hid.to_string()]);

    // 销号, then reopened by the supervisor (not the inspector): overdue again.
    step(&li, "close", json!({})).ok().unwrap();
    let overdue = api.get("/api/v1/hazards/overdue", Some(&li)).unwrap().ok().unwrap();
    assert_eq!(overdue["items"], json!([]), "a closed hazard is not overdue");
    let r = step(&wei_api, "reopen", json!({}));
    assert_eq!((r.status, r.code()), (403, "role_not_allowed"));
    assert_eq!(step(&li, "reopen", json!({})).ok().unwrap()["state"], "rectifying");
    let overdue = api.get("/api/v1/hazards/overdue", Some(&li)).unwrap().ok().unwrap();
    assert_eq!(ids(&overdue), vec![hid.to_string()]);
    // wei's tablet follows the server's state. The material and the
    // verification the hazard was reopened over are set aside (kept in its
    // history): closing it again takes new ones.
    wei.sync().unwrap();
    match wei.replica.get(rid).unwrap().unwrap().record {
        AnyRecord::Hazard(h) => {
            assert_eq!(h.state, HazardState::Rectifying);
            assert_eq!(h.notified_on, Some("2026-11-20".parse().unwrap()));
            assert!(h.rectification_evidence.is_empty(), "{h:?}");
            assert!(h.verification_evidence.is_empty(), "{h:?}");
        }
        other => panic!("{other:?}"),
    }
    let r = step(&li, "submit_rectification", json!({}));
    assert_eq!(
        (r.status, r.code(), r.body["field"].as_str()),
        (422, "evidence_required", Some("rectification_evidence")),
        "{:?}",
        r.body
    );
}

#[test]
fn listings_filter_by_each_parameter_page_everything_once_and_refuse_bad_parameters() {
    let root = tempfile::tempdir().unwrap();
    let (server, api, admin) = server(root.path(), None);
    let li = api.login("li", PASSWORD).unwrap().access;
    let zhao = api.login("zhao", PASSWORD).unwrap().access;
    let mut office = office(root.path(), &server);
    let (g, pond_g) = pond(GONGCHENG);
    let (y, pond_y) = pond(YANGSHUO);
    office.replica.create(pond_g).unwrap();
    office.replica.create(pond_y).unwrap();
    let device = office.replica.identity().device;
    // Nine inspections, one a day from 2026-03-01, alternating ponds; every
    // third has one inspector only (flag `too_few_inspectors`); the first four
    // are submitted.
    let mut all = Vec::new();
    for i in 0..9u32 {
        let id = InspectionId::generate();
        let site = if i % 2 == 0 { g } else { y };
        let mut doc = sample::inspection(id, site, device);
        let start = chrono::DateTime::parse_from_rfc3339(&format!("2026-03-{:02}T09:00:00+08:00", i + 1)).unwrap();
        doc.times.start = start;
        doc.times.end = Some(start + chrono::Duration::hours(1));
        doc.fix = None;
        if i % 3 == 0 {
            doc.team.truncate(1);
        }
        office.replica.create(doc.into()).unwrap();
        if i < 4 {
            office
                .replica
                .transition(RecordKind::Inspection, id.into(), "submit")
                .unwrap();
        }
        all.push((i, id.to_string(), site));
    }
    assert_eq!(office.sync().unwrap().refused, 0);
    let list = |token: &str, query: &str| -> Value {
        api.get(&format!("/api/v1/inspections?{query}"), Some(token))
            .unwrap()
            .ok()
            .unwrap()
    };
    let expect = |f: &dyn Fn(u32, SiteId) -> bool| -> Vec<String> {
        all.iter()
            .filter(|(i, _, s)| f(*i, *s))
            .map(|(_, id, _)| id.clone())
            .collect()
    };
    // Sorted by visit start, which is the order they were made.
    assert_eq!(ids(&list(&li, "")), expect(&|_, _| true));
    assert_eq!(ids(&list(&li, &format!("site={y}"))), expect(&|_, s| s == y));
    assert_eq!(ids(&list(&li, &format!("region={YANGSHUO}"))), expect(&|_, s| s == y));
    assert_eq!(ids(&list(&li, &format!("region={GUILIN}"))), expect(&|_, _| true));
    assert_eq!(ids(&list(&li, "status=submitted")), expect(&|i, _| i < 4));
    assert_eq!(ids(&list(&li, "status=approved")), Vec::<String>::new());
    assert_eq!(
        ids(&list(&li, "from=2026-03-03&to=2026-03-05")),
        expect(&|i, _| (2..=4).contains(&i))
    );
    assert_eq!(ids(&list(&li, "flag=too_few_inspectors")), expect(&|i, _| i % 3 == 0));
    assert_eq!(
        ids(&list(
            &li,
            &format!("flag=too_few_inspectors&site={g}&status=submitted")
        )),
        expect(&|i, s| i % 3 == 0 && s == g && i < 4)
    );
    assert_eq!(list(&zhao, "")["items"], json!([]), "another region sees nothing");
    assert_eq!(ids(&list(&admin, "")).len(), 9);

    // Pages of 2 cover everything exactly once, in order.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let query = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".into(),
        };
        let page = list(&li, &query);
        assert!(page["items"].as_array().unwrap().len() <= 2);
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, expect(&|_, _| true));
    // The review queue pages the same way.
    let first = api.get("/api/v1/reviews?limit=3", Some(&li)).unwrap().ok().unwrap();
    let rest = api
        .get(
            &format!(
                "/api/v1/reviews?limit=3&cursor={}",
                first["next_cursor"].as_str().unwrap()
            ),
            Some(&li),
        )
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!([ids(&first), ids(&rest)].concat(), expect(&|i, _| i < 4));
    assert!(rest.get("next_cursor").is_none());

    // Bad parameters: 400 naming the field, for inspections and hazards.
    for (path, query, field) in [
        ("/api/v1/inspections", "limit=0", "limit"),
        ("/api/v1/inspections", "limit=100000", "limit"),
        ("/api/v1/inspections", "region=abc", "region"),
        ("/api/v1/inspections", "region=999999", "region"),
        ("/api/v1/inspections", "status=closed", "status"),
        ("/api/v1/inspections", "from=2026-13-01", "from"),
        ("/api/v1/inspections", "from=2026-03-05&to=2026-03-01", "from"),
        ("/api/v1/inspections", "site=not-a-uuid", "site"),
        ("/api/v1/inspections", "cursor=garbage!", "cursor"),
        ("/api/v1/inspections", "colour=red", "colour"),
        ("/api/v1/hazards", "status=submitted", "status"),
        ("/api/v1/hazards/overdue", "to=yesterday", "to"),
        ("/api/v1/reviews", "status=approved", "status"),
    ] {
        let r = api.get(&format!("{path}?{query}"), Some(&li)).unwrap();
        assert_eq!(r.status, 400, "{path}?{query}: {:?}", r.body);
        assert_eq!(r.body["field"], field, "{path}?{query}: {:?}", r.body);
    }
    let r = api.get("/api/v1/inspections", None).unwrap();
    assert_eq!(r.status, 401);
}
