#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A record's detail and history, and device status, end to end: two tablets
//! edit the same and different units of an inspection offline and both submit
//! it; the record's detail shows both sides of the conflict and every change
//! with its author, device, device time, effective HLC, receive time and
//! outcome — the second submit refused with its code; another region's
//! inspector is told it does not exist. The operators' device list shows what
//! each tablet reported: its outbox, its clock offset (one tablet runs two
//! hours fast), its app and schema versions.

use std::sync::Arc;

use mobile_schema::ids::{DeviceId, InspectionId, RecordId, ReviewId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::review::{Decision, Review};
use mobile_schema::sample;
use replica::{HttpConfig, ReplicaConfig};
use serde_json::{Value, json};
use sync_protocol::clock::Clock;
use tests::harness::{ServerProcess, run_fieldsync};
use tests::http::{Request, login};
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "history-admin-Kp42-password";
const PASSWORD: &str = "history-user-Rw93-password";
/// 恭城瑶族自治县 in 桂林市, and 兴宁区 in 南宁市.
const GONGCHENG: u32 = 450_332;
const GUILIN: u32 = 450_300;
const XINGNING: u32 = 450_102;
/// The fast tablet's clock runs this far ahead.
const SKEW_MS: u64 = 2 * 3600 * 1000;
/// Slack for a clock offset measured over a local request.
const SLACK_MS: i64 = 60_000;

/// The system clock, `ahead_ms` fast: a tablet with a wrong clock.
#[derive(Debug)]
struct FastClock {
    ahead_ms: u64,
}

impl Clock for FastClock {
    fn now_ms(&self) -> u64 {
        sync_protocol::clock::SystemClock.now_ms() + self.ahead_ms
    }
}

fn now_ms() -> u64 {
    sync_protocol::clock::SystemClock.now_ms()
}

fn get(port: u16, token: &str, path: &str) -> (u16, Value) {
    let r = Request::get(path).bearer(token).send(port).unwrap();
    (r.status, r.json().unwrap_or(Value::Null))
}

fn fieldsync(server: &ServerProcess, who: &str, password: &str, args: &[&str]) -> String {
    let url = server.url("");
    let args = [args, &["--server", url.as_str(), "--as", who]].concat();
    let (ok, stdout, stderr) = run_fieldsync(&args, &[("FIELDSYNC_PASSWORD", password)]).unwrap();
    assert!(ok, "fieldsync {args:?}: {stderr}");
    stdout
}

fn changes(detail: &Value) -> Vec<Value> {
    detail["history"]["changes"].as_array().unwrap().clone()
}

/// The one change of `device` matching `pred`.
fn change_of(detail: &Value, device: DeviceId, pred: impl Fn(&Value) -> bool) -> Value {
    let found: Vec<Value> = changes(detail)
        .into_iter()
        .filter(|c| c["author"]["device"] == json!(device) && pred(c))
        .collect();
    assert_eq!(found.len(), 1, "{found:#?} in {detail:#}");
    found[0].clone()
}

fn started(envs: &[(&str, &str)], root: &std::path::Path) -> ServerProcess {
    let mut all = vec![("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)];
    all.extend_from_slice(envs);
    ServerProcess::start_with(&root.join("server"), &all).unwrap()
}

/// The scenario, on the server's sled store or on the reference store.
fn record_detail_shows_conflicts_history_and_refusals(envs: &[(&str, &str)]) {
    let root = tempfile::tempdir().unwrap();
    let server = started(envs, root.path());
    let port = server.port;
    let admin = login(port, "admin", ADMIN_PASSWORD).unwrap();
    for (name, role, region) in [
        ("li", "inspector", GONGCHENG),
        ("wu", "inspector", GONGCHENG),
        ("wang", "supervisor", GUILIN),
        ("zhao", "inspector", XINGNING),
    ] {
        let r = Request::post("/api/v1/admin/users")
            .bearer(&admin)
            .json(&json!({"username": name, "password": PASSWORD, "role": role, "regions": [region.to_string()]}))
            .send(port)
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let http = || HttpConfig::new(server.url(""));

    // The office records a pond in 恭城 and an inspection of it.
    let mut office = Tablet::enrol(&root.path().join("office"), http(), "admin", ADMIN_PASSWORD, None).unwrap();
    let site = SiteId::generate();
    let mut pond = sample::pond(site);
    pond.region_code = RegionCode::new(GONGCHENG).unwrap();
    let insp = InspectionId::generate();
    let office_device = office.replica.identity().device;
    office.replica.create(AnyRecord::from(pond)).unwrap();
    office
        .replica
        .create(sample::inspection(insp, site, office_device).into())
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    // li's tablet runs two hours fast; wu's is right.
    let fast = ReplicaConfig {
        clock: Arc::new(FastClock { ahead_ms: SKEW_MS }),
        ..ReplicaConfig::default()
    };
    let mut li = Tablet::enrol_with(&root.path().join("li"), http(), "li", PASSWORD, None, fast).unwrap();
    let mut wu = Tablet::enrol(&root.path().join("wu"), http(), "wu", PASSWORD, None).unwrap();
    li.sync().unwrap();
    wu.sync().unwrap();
    let (li_device, wu_device) = (li.replica.identity().device, wu.replica.identity().device);

    // Offline, both change the conclusion; wu also answers an item; both submit.
    let id: RecordId = insp.into();
    li.edit(RecordKind::Inspection, id, "conclusion", json!("李：渗水已处理"))
        .unwrap();
    li.replica.transition(RecordKind::Inspection, id, "submit").unwrap();
    wu.replica
        .edit(
            RecordKind::Inspection,
            id,
            vec![
                ("conclusion".to_string(), json!("吴：渗水仍在")),
                (
                    "answers/TP-09".to_string(),
                    json!({"result": "problem", "note": "渗水点两处"}),
                ),
            ],
        )
        .unwrap();
    wu.replica.transition(RecordKind::Inspection, id, "submit").unwrap();
    let before = now_ms();
    let li_report = li.sync().unwrap();
    assert_eq!((li_report.acked, li_report.refused), (2, 0), "{li_report:?}");
    let wu_report = wu.sync().unwrap();
    assert_eq!(
        (wu_report.acked, wu_report.conflicts, wu_report.refused),
        (1, 1, 1),
        "{wu_report:?}"
    );
    let after = now_ms();

    // The supervisor reads the record.
    let wang = login(port, "wang", PASSWORD).unwrap();
    let (status, detail) = get(port, &wang, &format!("/api/v1/records/{id}"));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["kind"], "inspection");
    assert_eq!(detail["workflow"], "submitted");
    // Both sides of the conflict, each with its author; li's runs ahead, so it wins.
    let conflicts = detail["conflicts"].as_array().unwrap();
    assert_eq!(conflicts.len(), 1, "{detail:#}");
    assert_eq!(conflicts[0]["unit"], "conclusion");
    let versions = conflicts[0]["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0]["value"], "李：渗水已处理");
    assert_eq!(versions[0]["author"]["username"], "li");
    assert_eq!(versions[0]["author"]["device"], json!(li_device));
    assert_eq!(versions[1]["value"], "吴：渗水仍在");
    assert_eq!(versions[1]["author"]["username"], "wu");
    assert_eq!(versions[1]["author"]["device"], json!(wu_device));
    assert_eq!(detail["values"]["conclusion"], "李：渗水已处理");
    assert_eq!(detail["values"]["answers/TP-09"]["note"], "渗水点两处");

    // The history: the create, both edits, both submits, in HLC order.
    let all = changes(&detail);
    assert_eq!(all.len(), 5, "{detail:#}");
    assert_eq!(detail["history"]["total"], 5);
    let create = change_of(&detail, office_device, |c| c["op"] == "create");
    assert_eq!(create["outcome"], "applied");
    assert_eq!(create["author"]["username"], "admin");
    assert!(create["units"].as_array().unwrap().len() > 5, "{create}");
    let li_edit = change_of(&detail, li_device, |c| c["op"] == "edit");
    assert_eq!(li_edit["units"], json!(["conclusion"]));
    assert_eq!(li_edit["outcome"], "applied");
    assert_eq!(li_edit["author"]["username"], "li");
    let wu_edit = change_of(&detail, wu_device, |c| c["op"] == "edit");
    assert_eq!(wu_edit["units"], json!(["conclusion", "answers/TP-09"]), "{detail:#}");
    assert_eq!(wu_edit["outcome"], "conflict");
    assert_eq!(wu_edit["conflict_units"], json!(["conclusion"]));
    let li_submit = change_of(&detail, li_device, |c| c["op"] == "transition");
    assert_eq!(
        (li_submit["action"].clone(), li_submit["outcome"].clone()),
        (json!("submit"), json!("applied"))
    );
    let wu_submit = change_of(&detail, wu_device, |c| c["op"] == "transition");
    assert_eq!(wu_submit["action"], "submit");
    assert_eq!(wu_submit["outcome"], "refused", "{wu_submit}");
    assert_eq!(wu_submit["refusal"]["code"], "transition_not_allowed", "{wu_submit}");
    assert!(
        wu_submit["refusal"]["message"].as_str().unwrap().contains("submit"),
        "{wu_submit}"
    );
    assert_eq!(wu_submit["commit_seq"], Value::Null);
    assert!(li_submit["commit_seq"].as_u64().unwrap() > 0);
    // Times: device time is the tablet's clock, received time the server's; the
    // effective HLC is the device's (two hours is within the skew bound).
    for (c, ahead) in [
        (&li_edit, SKEW_MS),
        (&li_submit, SKEW_MS),
        (&wu_edit, 0),
        (&wu_submit, 0),
    ] {
        let device_ms = c["author"]["device_time_ms"].as_u64().unwrap();
        let received = c["author"]["received_ms"].as_u64().unwrap();
        assert!(
            (before.saturating_sub(60_000)..=after).contains(&received),
            "received {received} not within the syncs: {c}"
        );
        assert!(
            device_ms + 60_000 >= before.saturating_sub(120_000) + ahead && device_ms <= after + ahead,
            "device time {device_ms} is not the tablet's clock (+{ahead} ms): {c}"
        );
        assert_eq!(c["effective_hlc"], c["author"]["device_hlc"], "{c}");
        assert!(
            c["version"].as_str().unwrap().ends_with(&format!(":{}", c["seq"])),
            "{c}"
        );
    }
    let order: Vec<(u64, u64)> = all
        .iter()
        .map(|c| {
            (
                c["effective_hlc"]["ms"].as_u64().unwrap(),
                c["effective_hlc"]["c"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "history in effective HLC order");

    // Pages: two at a time, then the rest.
    let (status, page) = get(port, &wang, &format!("/api/v1/records/{id}?limit=2"));
    assert_eq!(status, 200);
    assert_eq!(changes(&page), all[..2].to_vec());
    assert_eq!(page["history"]["next_offset"], 2);
    let (_, page) = get(port, &wang, &format!("/api/v1/records/{id}?offset=2&limit=2"));
    assert_eq!(changes(&page), all[2..4].to_vec());
    let (_, page) = get(port, &wang, &format!("/api/v1/records/{id}?offset=4&limit=500"));
    assert_eq!(changes(&page), all[4..].to_vec());
    assert_eq!(page["history"]["next_offset"], Value::Null);
    for bad in ["limit=0", "limit=501", "offset=-1", "limit=x"] {
        let (status, body) = get(port, &wang, &format!("/api/v1/records/{id}?{bad}"));
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["code"], "invalid_field", "{bad}: {body}");
    }
    let (status, body) = get(port, &wang, "/api/v1/records/not-a-uuid");
    assert_eq!((status, body["field"].clone()), (400, json!("id")));

    // Scope: the author sees it, another region's inspector is told nothing
    // exists, as for a record that does not.
    let (status, _) = get(
        port,
        &login(port, "li", PASSWORD).unwrap(),
        &format!("/api/v1/records/{id}"),
    );
    assert_eq!(status, 200);
    let zhao = login(port, "zhao", PASSWORD).unwrap();
    let (status, body) = get(port, &zhao, &format!("/api/v1/records/{id}"));
    assert_eq!((status, body["code"].clone()), (404, json!("not_found")), "{body}");
    let (status, _) = get(
        port,
        &wang,
        &format!("/api/v1/records/{}", RecordId::from(InspectionId::generate())),
    );
    assert_eq!(status, 404);
    let r = Request::get(&format!("/api/v1/records/{id}")).send(port).unwrap();
    assert_eq!(r.status, 401, "a token first");

    // The supervisor returns the inspection from a tablet of his own: the
    // review's change shows in the inspection's history, made via the review.
    let mut wang_tablet = Tablet::enrol(&root.path().join("wang"), http(), "wang", PASSWORD, None).unwrap();
    wang_tablet.sync().unwrap();
    let review = ReviewId::generate();
    let wang_user = wang_tablet.replica.identity().user;
    wang_tablet
        .replica
        .create(
            Review {
                id: review,
                schema_version: Review::SCHEMA_VERSION,
                inspection_id: insp,
                reviewer: wang_user,
                decision: Decision::Return,
                decided_at: chrono::Utc::now().fixed_offset(),
                comments: Vec::new(),
            }
            .into(),
        )
        .unwrap();
    assert_eq!(wang_tablet.sync().unwrap().refused, 0);

    // wu is moved to another county; his next edit of the inspection, made
    // before he learnt it, is refused and shows in its history with the code.
    let r = Request::new("PATCH", "/api/v1/admin/users/wu")
        .bearer(&admin)
        .json(&json!({"regions": [XINGNING.to_string()]}))
        .send(port)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    wu.edit(RecordKind::Inspection, id, "conclusion", json!("吴：补充说明"))
        .unwrap();
    let report = wu.sync().unwrap();
    assert_eq!(report.refused, 1, "{report:?}");

    let (status, detail) = get(port, &wang, &format!("/api/v1/records/{id}"));
    assert_eq!(status, 200, "{detail}");
    assert_eq!(detail["workflow"], "returned");
    assert_eq!(detail["review"]["decision"], "return");
    assert_eq!(detail["history"]["total"], 7, "{detail:#}");
    let wang_device = wang_tablet.replica.identity().device;
    let decided = change_of(&detail, wang_device, |_| true);
    assert_eq!(decided["via"], json!({"kind": "review", "id": review}), "{decided}");
    assert_eq!(
        (decided["op"].clone(), decided["outcome"].clone()),
        (json!("create"), json!("applied"))
    );
    assert_eq!(decided["author"]["username"], "wang");
    let out_of_scope = change_of(&detail, wu_device, |c| c["outcome"] == "refused" && c["op"] == "edit");
    assert_eq!(out_of_scope["refusal"]["code"], "forbidden_scope", "{out_of_scope}");
    assert_eq!(out_of_scope["units"], json!(["conclusion"]));
    // The review's own history has its creation, and nothing of the inspection's.
    let (status, review_detail) = get(port, &wang, &format!("/api/v1/records/{}", RecordId::from(review)));
    assert_eq!(status, 200, "{review_detail}");
    assert_eq!(review_detail["history"]["total"], 1, "{review_detail:#}");
    assert_eq!(review_detail["history"]["changes"][0]["via"], Value::Null);

    // The command line shows the same, as JSON and as text.
    let all = changes(&detail);
    let id_text = id.to_string();
    let cli: Value = serde_json::from_str(&fieldsync(
        &server,
        "wang",
        PASSWORD,
        &["record", "show", &id_text, "--json"],
    ))
    .unwrap();
    assert_eq!(changes(&cli), all);
    assert_eq!(cli["conflicts"], detail["conflicts"]);
    let text = fieldsync(&server, "wang", PASSWORD, &["record", "show", &id_text]);
    for needle in [
        "REFUSED transition_not_allowed",
        "REFUSED forbidden_scope",
        "conflicts",
        "吴：渗水仍在",
        "李：渗水已处理",
        "of review",
        "review: return",
    ] {
        assert!(text.contains(needle), "{needle:?} in {text}");
    }
}

#[test]
fn record_detail_shows_conflicts_history_and_refusals_on_sled() {
    record_detail_shows_conflicts_history_and_refusals(&[]);
}

#[test]
fn record_detail_shows_the_same_on_the_reference_store() {
    record_detail_shows_conflicts_history_and_refusals(&[("FIELDSYNC_RECORDS", "memory")]);
}

#[test]
fn device_status_shows_what_each_tablet_reported_at_its_last_sync() {
    let root = tempfile::tempdir().unwrap();
    let server = started(&[], root.path());
    let port = server.port;
    let admin = login(port, "admin", ADMIN_PASSWORD).unwrap();
    for name in ["li", "wu"] {
        let r = Request::post("/api/v1/admin/users")
            .bearer(&admin)
            .json(&json!({"username": name, "password": PASSWORD, "role": "inspector", "regions": [GONGCHENG.to_string()]}))
            .send(port)
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let http = || HttpConfig::new(server.url(""));
    // li's tablet runs two hours fast and pushes three changes at a time.
    let fast = ReplicaConfig {
        clock: Arc::new(FastClock { ahead_ms: SKEW_MS }),
        push_batch: 3,
        push_batch_max: 3,
        ..ReplicaConfig::default()
    };
    let mut li = Tablet::enrol_with(&root.path().join("li"), http(), "li", PASSWORD, None, fast).unwrap();
    let mut wu = Tablet::enrol(&root.path().join("wu"), http(), "wu", PASSWORD, None).unwrap();
    let site = SiteId::generate();
    let mut pond = sample::pond(site);
    pond.region_code = RegionCode::new(GONGCHENG).unwrap();
    li.replica.create(AnyRecord::from(pond)).unwrap();
    let li_device = li.replica.identity().device;
    let insp = InspectionId::generate();
    li.replica
        .create(sample::inspection(insp, site, li_device).into())
        .unwrap();
    for i in 0..5 {
        li.edit(
            RecordKind::Inspection,
            insp.into(),
            "conclusion",
            json!(format!("第{i}稿")),
        )
        .unwrap();
    }
    // Seven changes in batches of three: the last push says one was waiting
    // (itself), the pull after it none.
    let report = li.sync().unwrap();
    assert_eq!(report.acked, 7, "{report:?}");
    wu.sync().unwrap();
    let devices = |token: &str| -> Vec<Value> {
        let (status, body) = get(port, token, "/api/v1/admin/devices");
        assert_eq!(status, 200, "{body}");
        body["devices"].as_array().unwrap().clone()
    };
    let status_of = |devices: &[Value], device: DeviceId| -> Value {
        devices
            .iter()
            .find(|d| d["id"] == json!(device))
            .unwrap_or_else(|| panic!("{device} in {devices:#?}"))["status"]
            .clone()
    };
    let s = status_of(&devices(&admin), li_device);
    assert_eq!(s["outbox"], 0, "{s}");
    assert_eq!(s["last_sync"], "pull", "{s}");

    // Two edits after the sync, then a pull only: the tablet reports them waiting.
    li.edit(RecordKind::Inspection, insp.into(), "conclusion", json!("第五稿"))
        .unwrap();
    li.edit(RecordKind::Inspection, insp.into(), "conclusion", json!("第六稿"))
        .unwrap();
    li.replica.pull(&mut li.transport).unwrap();
    let all = devices(&admin);
    let s = status_of(&all, li_device);
    assert_eq!(s["outbox"], 2, "{s}");
    assert_eq!(s["last_sync"], "pull");
    assert!(
        s["last_push_ms"].as_u64().unwrap() <= s["last_pull_ms"].as_u64().unwrap(),
        "{s}"
    );
    let offset = s["clock_offset_ms"].as_i64().unwrap();
    assert!(
        (offset - SKEW_MS as i64).abs() < SLACK_MS,
        "li's clock offset {offset}: {s}"
    );
    assert!(
        s["app_version"].as_str().unwrap().starts_with("fieldsync-device/"),
        "{s}"
    );
    assert_eq!(s["schema_version"], 2, "{s}");
    let w = status_of(&all, wu.replica.identity().device);
    assert!(w["clock_offset_ms"].as_i64().unwrap().abs() < SLACK_MS, "{w}");
    assert_eq!(w["outbox"], 0, "{w}");

    // Bad report values are ignored, never a reason to refuse a sync; what was
    // reported before stays.
    let token = li.transport.http.credentials().unwrap().access_token.clone();
    let r = Request::get("/api/v1/sync/pull?since=0")
        .bearer(&token)
        .header("fieldsync-outbox", "lots")
        .header("fieldsync-clock", "-5")
        .header("fieldsync-schema", "99999999999")
        .header("fieldsync-app", "x".repeat(200))
        .send(port)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let s = status_of(&devices(&admin), li_device);
    assert_eq!(s["outbox"], 2, "{s}");
    assert_eq!(s["schema_version"], 2, "{s}");
    assert!(s["app_version"].as_str().unwrap().starts_with("fieldsync-device/"));

    // The status is for operators: an inspector is refused the list.
    let (status, _) = get(port, &login(port, "wu", PASSWORD).unwrap(), "/api/v1/admin/devices");
    assert_eq!(status, 403);

    // `fieldsync device list` shows the same.
    let listed: Value = serde_json::from_str(&fieldsync(
        &server,
        "admin",
        ADMIN_PASSWORD,
        &["device", "list", "--user", "li"],
    ))
    .unwrap();
    let listed = listed.as_array().unwrap();
    let s = status_of(listed, li_device);
    assert_eq!(s["outbox"], 2, "{s}");
    assert!((s["clock_offset_ms"].as_i64().unwrap() - SKEW_MS as i64).abs() < SLACK_MS);
}
