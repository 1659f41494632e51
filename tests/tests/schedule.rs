#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The yearly schedule end to end: a supervisor generates it on a real server
//! from the ponds in the store and the inspectors among the users; the tasks
//! reach the inspectors' tablets by pull, drawn ones only once their window
//! opens (even though the tablets' cursors passed them long before); the
//! inspectors' inspections count in the compliance report, as JSON, as CSV for
//! Excel, and through `fieldsync schedule`.

use std::collections::HashSet;
use std::path::Path;

use chrono::NaiveDate;
use mobile_schema::ids::{InspectionId, ItemId, RecordId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::sample;
use mobile_schema::site::{
    KeySupervisionUnit, LevelAssignment, Obligation, ObligationKind, PriorityFlags, SiteDetails, SupervisionLevel,
};
use mobile_schema::workflow::TaskState;
use replica::HttpConfig;
use serde_json::{Value, json};
use tests::harness::{ServerProcess, run_fieldsync};
use tests::http::{Request, login};
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "schedule-admin-Vb38-password";
const PASSWORD: &str = "schedule-user-Kp64-password";
/// 恭城瑶族自治县 and 阳朔县 in 桂林市; 南宁市.
const GONGCHENG: u32 = 450_332;
const YANGSHUO: u32 = 450_321;
const GUILIN: u32 = 450_300;
const NANNING: u32 = 450_100;

fn call(port: u16, token: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value, String) {
    let mut req = Request::new(method, path).bearer(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send(port).unwrap();
    let text = r.text();
    (r.status, r.json().unwrap_or(Value::Null), text)
}

fn pond(n: u32, region: u32, level: SupervisionLevel, flagged: bool) -> (SiteId, AnyRecord) {
    let id = SiteId::from_name("schedule-test", &format!("{region}-{n}"));
    let mut site = sample::pond(id);
    site.name = format!("尾矿库{n}号");
    site.region_code = RegionCode::new(region).unwrap();
    site.priority = PriorityFlags {
        prominent_hazards: flagged,
        ..PriorityFlags::default()
    };
    site.levels = vec![LevelAssignment {
        id: ItemId::generate(),
        year: 2027,
        level,
        effective_from: NaiveDate::from_ymd_opt(2026, 12, 1).unwrap(),
        source_document: "桂环函〔2026〕1号".into(),
        reason: String::new(),
    }];
    (id, site.into())
}

/// The config with `today`; a `calendar` line already there is kept.
fn write_config(path: &Path, today: &str) {
    let calendar: String = std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("calendar ="))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(
        path,
        format!("[schedule]\ntoday = \"{today}\"\nwindow_check_s = 3600\n{calendar}"),
    )
    .unwrap();
}

fn has(t: &Tablet, id: impl Into<RecordId>) -> bool {
    t.replica.get(id.into()).unwrap().is_some()
}

fn fieldsync(server: &ServerProcess, user: &str, args: &[&str]) -> (bool, String, String) {
    let url = server.url("");
    let args = [&["schedule", "--server", url.as_str(), "--as", user], args].concat();
    run_fieldsync(&args, &[("FIELDSYNC_PASSWORD", PASSWORD)]).unwrap()
}

#[test]
fn a_generated_schedule_reaches_tablets_drawn_tasks_at_their_window_and_inspections_count() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("fieldsync.toml");
    // Planned in December for the next year: every drawn window is still ahead.
    write_config(&config, "2026-12-20");
    // The operator loads next year's working-day arrangement. A stand-in for
    // the test (not the official 2027 one): National Day 10-01..07 off,
    // Saturday 10-09 worked.
    let calendar_file = root.path().join("calendar-2027.csv");
    let national_day: String = (1..=7).map(|d| format!("2027-10-{d:02},holiday,国庆节\n")).collect();
    std::fs::write(
        &calendar_file,
        format!("date,kind,festival\n{national_day}2027-10-09,working_weekend,国庆节\n"),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("calendar = {:?}\n", calendar_file.to_str().unwrap()));
    std::fs::write(&config, text).unwrap();
    let mut server = ServerProcess::start_with_config(
        &root.path().join("server"),
        &config,
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let port = server.port;
    let admin = login(port, "admin", ADMIN_PASSWORD).unwrap();
    for (name, role, region) in [
        ("wang", "supervisor", GUILIN),
        ("li", "inspector", GONGCHENG),
        ("chen", "inspector", GONGCHENG),
        ("zhou", "inspector", YANGSHUO),
    ] {
        let (status, _, text) = call(
            port,
            &admin,
            "POST",
            "/api/v1/admin/users",
            Some(json!({"username": name, "password": PASSWORD, "role": role, "regions": [region.to_string()]})),
        );
        assert_eq!(status, 201, "{text}");
    }

    // The office records 恭城's ponds: one 一级, one 二级, three 三级 (one flagged).
    let http = || HttpConfig::new(server.url(""));
    let mut office = Tablet::enrol(&root.path().join("office"), http(), "admin", ADMIN_PASSWORD, None).unwrap();
    let (one, _) = pond(1, GONGCHENG, SupervisionLevel::One, false);
    let (two, _) = pond(2, GONGCHENG, SupervisionLevel::Two, false);
    // Pond 6 is 二级 until it is raised to 一级 on 2027-06-01.
    let (six, raised) = pond(6, GONGCHENG, SupervisionLevel::Two, false);
    let AnyRecord::Site(mut raised) = raised else {
        unreachable!()
    };
    raised.levels.push(LevelAssignment {
        id: ItemId::generate(),
        year: 2027,
        level: SupervisionLevel::One,
        effective_from: NaiveDate::from_ymd_opt(2027, 6, 1).unwrap(),
        source_document: "桂环函〔2027〕9号".into(),
        reason: "坝体隐患".into(),
    });
    let ponds = [
        pond(1, GONGCHENG, SupervisionLevel::One, false),
        pond(2, GONGCHENG, SupervisionLevel::Two, false),
        pond(3, GONGCHENG, SupervisionLevel::Three, true),
        pond(4, GONGCHENG, SupervisionLevel::Three, false),
        pond(5, GONGCHENG, SupervisionLevel::Three, false),
        (six, raised.into()),
    ];
    for (_, record) in ponds.iter().cloned() {
        office.replica.create(record).unwrap();
    }
    // A key unit with two dated obligations: a late emission report, and a
    // dismantling plan for works starting 2027-10-25 that nobody filed.
    let unit_id = SiteId::generate();
    let mut unit = sample::pond(unit_id);
    unit.name = "某冶炼厂".into();
    unit.region_code = RegionCode::new(GONGCHENG).unwrap();
    unit.details = SiteDetails::KeyUnit(KeySupervisionUnit {
        industry: "有色金属冶炼".into(),
        list_year: 2025,
        credit_code: None,
    });
    let works = NaiveDate::from_ymd_opt(2027, 10, 25).unwrap();
    unit.obligations = vec![
        Obligation {
            id: ItemId::generate(),
            kind: ObligationKind::EmissionReport,
            period: "2027".into(),
            due: NaiveDate::from_ymd_opt(2027, 6, 30),
            received: NaiveDate::from_ymd_opt(2027, 7, 5),
            works_start: None,
            note: String::new(),
        },
        Obligation {
            id: ItemId::generate(),
            kind: ObligationKind::DemolitionPlanFiling,
            period: "2027".into(),
            due: None,
            received: None,
            works_start: Some(works),
            note: "拆除浮选车间".into(),
        },
    ];
    office.replica.create(unit.into()).unwrap();
    assert_eq!(office.sync().unwrap().acked, 7);

    // Inspectors pull first: their cursors pass everything there is.
    let mut li = Tablet::enrol(&root.path().join("li"), http(), "li", PASSWORD, None).unwrap();
    let mut wang = Tablet::enrol(&root.path().join("wang"), http(), "wang", PASSWORD, None).unwrap();
    li.sync().unwrap();
    assert!(has(&li, one));

    // Only supervisors and admins plan, and only within their regions.
    let body = json!({"year": 2027, "region": GUILIN.to_string(), "seed": "20261220"});
    let li_token = login(port, "li", PASSWORD).unwrap();
    let (status, err, _) = call(port, &li_token, "POST", "/api/v1/schedule/generate", Some(body.clone()));
    assert_eq!((status, err["code"].as_str()), (403, Some("role_not_allowed")));
    let wang_token = login(port, "wang", PASSWORD).unwrap();
    let nanning = json!({"year": 2027, "region": NANNING.to_string()});
    let (status, err, _) = call(port, &wang_token, "POST", "/api/v1/schedule/generate", Some(nanning));
    assert_eq!((status, err["code"].as_str()), (403, Some("forbidden_scope")));
    let (status, err, _) = call(
        port,
        &wang_token,
        "POST",
        "/api/v1/schedule/generate",
        Some(json!({"year": 2027, "region": GUILIN.to_string(), "seed": "-1"})),
    );
    assert_eq!((status, err["field"].as_str()), (400, Some("seed")));
    // Each period multiplies every pond's tasks: their number is bounded.
    let period = json!({"label": "重大活动", "dates": {"kind": "flood_season"}, "extra": [["one", 1]]});
    let (status, err, text) = call(
        port,
        &wang_token,
        "POST",
        "/api/v1/schedule/generate",
        Some(json!({"year": 2027, "region": GUILIN.to_string(), "intensified": vec![period; 13]})),
    );
    assert_eq!((status, err["field"].as_str()), (400, Some("intensified")), "{text}");

    // A dry run stores nothing and gives the same schedule as the real one.
    let mut dry = body.clone();
    dry["dry_run"] = json!(true);
    let (status, preview, text) = call(port, &wang_token, "POST", "/api/v1/schedule/generate", Some(dry));
    assert_eq!(status, 200, "{text}");
    let (status, made, text) = call(
        port,
        &wang_token,
        "POST",
        "/api/v1/schedule/generate",
        Some(body.clone()),
    );
    assert_eq!(status, 201, "{text}");
    assert_eq!(preview["schedule"]["tasks"], made["schedule"]["tasks"]);
    let (status, err, _) = call(port, &wang_token, "POST", "/api/v1/schedule/generate", Some(body));
    assert_eq!((status, err["code"].as_str()), (409, Some("schedule_exists")));

    let tasks = made["schedule"]["tasks"].as_array().unwrap().clone();
    let rule = |t: &Value| t["rule"].as_str().unwrap().to_string();
    let id_of = |t: &Value| RecordId::from(t["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    let rules: Vec<String> = tasks.iter().map(rule).collect();
    assert_eq!(rules.iter().filter(|r| r.starts_with("level_one")).count(), 2);
    assert_eq!(rules.iter().filter(|r| *r == "level_two_annual").count(), 2);
    let drawn: Vec<&Value> = tasks.iter().filter(|t| rule(t) == "level_three_drawn").collect();
    assert_eq!(drawn.len(), 2, "half of three, rounded up");
    let flagged = ponds[2].0.to_string();
    assert!(
        drawn.iter().any(|t| t["site_id"] == flagged),
        "the flagged pond is drawn first"
    );
    for t in &tasks {
        // 恭城 has two inspectors: the team is both, never 阳朔's zhou.
        let team: HashSet<&str> = t["assigned"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(team.len(), 2);
    }
    let draws = made["schedule"]["draws"].as_array().unwrap();
    assert_eq!(draws.len(), 1);
    // Each county's draw records the seed derived for it, so it re-runs alone.
    let county_seed = mobile_schema::schedule::draw::county_seed(20_261_220, RegionCode::new(GONGCHENG).unwrap());
    assert_eq!(draws[0]["seed"], county_seed.to_string());
    // It records its pool and which ponds were flagged that day, so the draw
    // re-runs from the record alone, whatever later lists flag.
    let recorded: mobile_schema::task::RandomDraw = serde_json::from_value(draws[0].clone()).unwrap();
    assert_eq!(recorded.pool.len(), 3, "{}", draws[0]);
    assert_eq!(recorded.flagged, vec![ponds[2].0], "{}", draws[0]);
    assert_eq!(
        mobile_schema::schedule::draw::rerun(&recorded).unwrap(),
        recorded.drawn_sites
    );

    // Undrawn tasks reach the inspector at once; drawn ones and the draw do not.
    li.sync().unwrap();
    wang.sync().unwrap();
    for t in &tasks {
        let hidden = t.get("hidden_until").is_some_and(|h| !h.is_null());
        assert_eq!(has(&li, id_of(t)), !hidden, "{} on li's tablet", rule(t));
        assert!(has(&wang, id_of(t)), "{} on the supervisor's tablet", rule(t));
    }
    let draw_id = RecordId::from(draws[0]["id"].as_str().unwrap().parse::<uuid::Uuid>().unwrap());
    assert!(!has(&li, draw_id) && has(&wang, draw_id));
    let (_, listed, _) = call(
        port,
        &li_token,
        "GET",
        &format!("/api/v1/schedule?year=2027&region={GUILIN}"),
        None,
    );
    assert_eq!(listed["tasks"].as_array().unwrap().len(), tasks.len() - 2);

    // The server's clock is the `today` setting, moved between restarts. On the
    // eve of the first drawn window nothing shows; on its first day exactly the
    // tasks whose window opened that day do.
    let opens = |t: &Value| NaiveDate::parse_from_str(t["hidden_until"].as_str().unwrap(), "%Y-%m-%d").unwrap();
    let first = drawn.iter().map(|t| opens(t)).min().unwrap();
    write_config(&config, &first.pred_opt().unwrap().to_string());
    server.restart().unwrap();
    li.sync().unwrap();
    assert!(
        drawn.iter().all(|t| !has(&li, id_of(t))),
        "hidden on the eve of the window"
    );
    write_config(&config, &first.to_string());
    server.restart().unwrap();
    li.sync().unwrap();
    for t in &drawn {
        assert_eq!(has(&li, id_of(t)), opens(t) <= first, "on {first}: {t}");
    }

    // The year goes by: on restart the server's today is after every drawn window opened.
    write_config(&config, "2027-10-15");
    server.restart().unwrap();
    li.sync().unwrap();
    for t in &drawn {
        assert!(
            has(&li, id_of(t)),
            "a drawn task reaches the tablet once its window opened"
        );
    }
    assert!(!has(&li, draw_id), "who may be drawn is never told the draw");

    // li inspects the 一级 pond for its pre-flood task, offline in March, and submits.
    let pre = tasks.iter().find(|t| rule(t) == "level_one_pre_flood").unwrap();
    let mut inspection = sample::inspection(InspectionId::generate(), one, li.replica.identity().device);
    inspection.task_id = Some(pre["id"].as_str().unwrap().parse().unwrap());
    let march = chrono::DateTime::parse_from_rfc3339("2027-03-10T10:00:00+08:00").unwrap();
    inspection.times.start = march;
    inspection.times.end = Some(march + chrono::Duration::hours(1));
    if let Some(fix) = inspection.fix.as_mut() {
        fix.fix_time = march;
    }
    let inspection_id = inspection.id;
    // And again ten days later, still before the flood season, for no task:
    // the rule (two a year, one before the flood season) is met, though the
    // plan had put the second in its own window after 04-01.
    let mut again = inspection.clone();
    again.id = InspectionId::generate();
    again.task_id = None;
    let later = march + chrono::Duration::days(10);
    again.times.start = later;
    again.times.end = Some(later + chrono::Duration::hours(1));
    if let Some(fix) = again.fix.as_mut() {
        fix.fix_time = later;
    }
    let again_id = again.id;
    li.replica.create(inspection.into()).unwrap();
    li.replica.create(again.into()).unwrap();
    for id in [inspection_id, again_id] {
        li.replica
            .transition(RecordKind::Inspection, id.into(), "submit")
            .unwrap();
    }
    assert_eq!(li.sync().unwrap().refused, 0);

    // Compliance, as the supervisor sees it.
    let (status, report, text) = call(
        port,
        &wang_token,
        "GET",
        &format!("/api/v1/schedule/compliance?year=2027&region={GUILIN}"),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let by_site = |id: SiteId| {
        report["ponds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["site_id"] == id.to_string())
            .unwrap()
            .clone()
    };
    let p1 = by_site(one);
    assert_eq!(
        (p1["required"].as_u64(), p1["done"].as_u64(), p1["outcome"].as_str()),
        (Some(2), Some(2), Some("met")),
        "{p1}"
    );
    assert_eq!(p1["message"], "一级: 2 of 2 done", "{p1}");
    // The plan's own view: the pre-flood task done, the second not (yet).
    let second = p1["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rule"] == "level_one_second")
        .unwrap();
    assert_eq!(second["done"].as_u64(), Some(0), "{p1}");
    let p2 = by_site(two);
    assert_eq!(
        (p2["required"].as_u64(), p2["done"].as_u64(), p2["outcome"].as_str()),
        (Some(1), Some(0), Some("pending")),
        "{p2}"
    );
    let overdue: HashSet<String> = report["overdue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["task_id"].as_str().unwrap().to_string())
        .collect();
    assert!(
        !overdue.contains(pre["id"].as_str().unwrap()),
        "the done task is not overdue"
    );
    for t in &drawn {
        let past = t["window"]["due"].as_str().unwrap() < "2027-10-15";
        assert_eq!(overdue.contains(t["id"].as_str().unwrap()), past, "{t}");
    }
    let (status, _, _) = call(
        port,
        &li_token,
        "GET",
        &format!("/api/v1/schedule/compliance?year=2027&region={GUILIN}"),
        None,
    );
    assert_eq!(status, 403, "compliance is the bureau's report");

    // Pond 6 was raised to 一级 on 06-01: its planned 二级 task is cancelled and
    // the second 一级 inspection added; the pre-flood one had closed by then.
    let regen = json!({"year": 2027, "site_id": six, "change_day": "2027-06-01"});
    let (status, plan, text) = call(
        port,
        &wang_token,
        "POST",
        "/api/v1/schedule/regenerate",
        Some(regen.clone()),
    );
    assert_eq!(status, 200, "{text}");
    let annual6 = tasks
        .iter()
        .find(|t| t["site_id"] == six.to_string() && rule(t) == "level_two_annual")
        .unwrap();
    assert_eq!(plan["cancelled"], json!([annual6["id"]]));
    let added = plan["added"].as_array().unwrap();
    assert_eq!(added.len(), 1, "{plan}");
    assert_eq!(rule(&added[0]), "level_one_second");
    assert_eq!(added[0]["window"]["earliest_start"], "2027-06-01");
    li.sync().unwrap();
    let AnyRecord::Task(cancelled) = li.replica.get(id_of(annual6)).unwrap().unwrap().record else {
        panic!("a task")
    };
    assert_eq!(
        cancelled.state,
        TaskState::Cancelled,
        "the cancellation reaches the tablet"
    );
    assert!(has(&li, id_of(&added[0])));
    let (_, again, _) = call(port, &wang_token, "POST", "/api/v1/schedule/regenerate", Some(regen));
    assert_eq!(
        (
            again["cancelled"].as_array().unwrap().len(),
            again["added"].as_array().unwrap().len()
        ),
        (0, 0)
    );

    // A level raised from a tablet re-plans the pond by itself: pond 2 becomes
    // 一级 from 2027-08-01, so its planned 二级 task goes and the second 一级
    // inspection comes, from that day.
    let raise = LevelAssignment {
        id: ItemId::generate(),
        year: 2027,
        level: SupervisionLevel::One,
        effective_from: NaiveDate::from_ymd_opt(2027, 8, 1).unwrap(),
        source_document: "桂环函〔2027〕12号".into(),
        reason: "汛期险情".into(),
    };
    office.sync().unwrap();
    office
        .edit(
            RecordKind::Site,
            two.into(),
            &format!("levels/{}", raise.id),
            serde_json::to_value(&raise).unwrap(),
        )
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);
    let (_, listed, _) = call(
        port,
        &wang_token,
        "GET",
        &format!("/api/v1/schedule?year=2027&region={GUILIN}"),
        None,
    );
    let of_two: Vec<&Value> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["site_id"] == two.to_string())
        .collect();
    let annual2 = of_two.iter().find(|t| rule(t) == "level_two_annual").unwrap();
    assert_eq!(annual2["state"], "cancelled", "{of_two:?}");
    let second2 = of_two.iter().find(|t| rule(t) == "level_one_second").unwrap();
    assert_eq!(second2["window"]["earliest_start"], "2027-08-01", "{second2}");

    // The key unit's obligations: one late, one overdue by the official calendar.
    let (status, obl, text) = call(
        port,
        &wang_token,
        "GET",
        &format!("/api/v1/schedule/obligations?year=2027&region={GUILIN}"),
        None,
    );
    assert_eq!(status, 200, "{text}");
    let list = obl["obligations"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{obl}");
    let of = |kind: &str| list.iter().find(|o| o["kind"] == kind).unwrap();
    assert_eq!(of("emission_report")["state"], "late");
    let plan_due = of("demolition_plan_filing");
    // Counted by hand, 15 working days strictly between filing and works on
    // Monday 10-25: 09-28..30, 10-08, 10-09 (worked), 10-11..15, 10-18..22.
    // Without the loaded year it would be 10-01, a holiday, and provisional.
    assert_eq!(plan_due["due"], "2027-09-27", "{plan_due}");
    assert_eq!(plan_due.get("provisional"), None, "{plan_due}");
    assert_eq!(plan_due["state"], "overdue");

    // CSV for Excel: a byte-order mark, then the Chinese names as UTF-8.
    let r = Request::new(
        "GET",
        &format!("/api/v1/schedule/compliance?year=2027&region={GUILIN}&format=csv"),
    )
    .bearer(&wang_token)
    .send(port)
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(r.body.starts_with("\u{feff}site_id,".as_bytes()), "{}", r.text());
    assert!(
        r.text().contains("尾矿库1号,450332,一级,2,2,yes,一级: 2 of 2 done"),
        "{}",
        r.text()
    );
    let (status, _, text) = call(port, &wang_token, "GET", "/api/v1/schedule/compliance?year=x", None);
    assert_eq!(status, 400, "{text}");

    // The same from the command line, as the supervisor.
    let (ok, out, err) = fieldsync(
        &server,
        "wang",
        &["compliance", "--year", "2027", "--region", &GUILIN.to_string(), "--csv"],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with('\u{feff}') && out.contains("尾矿库1号"), "{out}");
    let (ok, out, err) = fieldsync(
        &server,
        "wang",
        &["show", "--year", "2027", "--region", &GUILIN.to_string()],
    );
    assert!(ok, "{err}");
    let shown: Value = serde_json::from_str(&out).unwrap();
    // The generated tasks (the cancelled ones listed as such) and the two re-planned.
    assert_eq!(shown["tasks"].as_array().unwrap().len(), tasks.len() + 2);
    let (ok, _, err) = fieldsync(
        &server,
        "wang",
        &[
            "generate",
            "--year",
            "2027",
            "--region",
            &GUILIN.to_string(),
            "--seed",
            "7",
        ],
    );
    assert!(!ok && err.contains("schedule_exists"), "{err}");
    let (ok, out, err) = fieldsync(
        &server,
        "wang",
        &[
            "generate",
            "--year",
            "2028",
            "--region",
            &GONGCHENG.to_string(),
            "--dry-run",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).unwrap()["stored"], false);
}

/// 入汛 declared early after the year was planned: the 一级 pond's pre-flood
/// task moves before the new season, and the season is kept, so a re-plan
/// after a restart plans with it rather than with the default.
#[test]
fn a_flood_season_declared_after_generation_moves_the_pre_flood_task_and_is_kept() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("fieldsync.toml");
    write_config(&config, "2026-12-20");
    let mut server = ServerProcess::start_with_config(
        &root.path().join("server"),
        &config,
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let port = server.port;
    let admin = login(port, "admin", ADMIN_PASSWORD).unwrap();
    for (name, role) in [("wang", "supervisor"), ("li", "inspector"), ("chen", "inspector")] {
        let (status, _, text) = call(
            port,
            &admin,
            "POST",
            "/api/v1/admin/users",
            Some(json!({"username": name, "password": PASSWORD, "role": role, "regions": [GONGCHENG.to_string()]})),
        );
        assert_eq!(status, 201, "{text}");
    }
    let mut office = Tablet::enrol(
        &root.path().join("office"),
        HttpConfig::new(server.url("")),
        "admin",
        ADMIN_PASSWORD,
        None,
    )
    .unwrap();
    let (one, record) = pond(1, GONGCHENG, SupervisionLevel::One, false);
    office.replica.create(record).unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);
    let wang = login(port, "wang", PASSWORD).unwrap();
    let (status, _, text) = call(
        port,
        &wang,
        "POST",
        "/api/v1/schedule/generate",
        Some(json!({"year": 2027, "region": GONGCHENG.to_string(), "seed": "1"})),
    );
    assert_eq!(status, 201, "{text}");
    let pre_flood_due = |port: u16| -> Vec<String> {
        let (_, listed, _) = call(
            port,
            &wang,
            "GET",
            &format!("/api/v1/schedule?year=2027&region={GONGCHENG}"),
            None,
        );
        listed["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["rule"] == "level_one_pre_flood" && t["state"] != "cancelled")
            .map(|t| t["window"]["due"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(pre_flood_due(port), ["2027-03-31"]);
    let seasons = |port: u16, token: &str| -> serde_json::Value {
        let (status, view, text) = call(
            port,
            token,
            "GET",
            &format!("/api/v1/schedule/flood-seasons?year=2027&region={GONGCHENG}"),
            None,
        );
        assert_eq!(status, 200, "{text}");
        view
    };
    let before = seasons(port, &wang);
    assert_eq!(
        before["in_force"],
        json!({"start": "2027-04-01", "end": "2027-09-30"}),
        "{before}"
    );
    assert_eq!(before["declared"], json!([]));
    let (status, err, _) = call(port, &wang, "GET", "/api/v1/schedule/flood-seasons?year=27", None);
    assert_eq!((status, err["code"].as_str()), (400, Some("invalid_query")));

    let season =
        |start: &str, end: &str| json!({"year": 2027, "region": GONGCHENG.to_string(), "start": start, "end": end});
    let li = login(port, "li", PASSWORD).unwrap();
    let (status, err, _) = call(
        port,
        &li,
        "POST",
        "/api/v1/schedule/flood-season",
        Some(season("2027-03-15", "2027-09-30")),
    );
    assert_eq!((status, err["code"].as_str()), (403, Some("role_not_allowed")));
    let (status, err, text) = call(
        port,
        &wang,
        "POST",
        "/api/v1/schedule/flood-season",
        Some(season("2027-09-30", "2027-03-15")),
    );
    assert_eq!((status, err["field"].as_str()), (400, Some("end")), "{text}");
    assert_eq!(pre_flood_due(port), ["2027-03-31"], "a refused season changes nothing");

    // 桂北 enters the flood season on March 15 this year.
    let (status, answer, text) = call(
        port,
        &wang,
        "POST",
        "/api/v1/schedule/flood-season",
        Some(season("2027-03-15", "2027-09-30")),
    );
    assert_eq!(status, 200, "{text}");
    let replanned = answer["replanned"].as_array().unwrap();
    assert_eq!(replanned.len(), 1, "{answer}");
    assert_eq!(replanned[0]["site_id"], one.to_string());
    assert_eq!(pre_flood_due(port), ["2027-03-14"]);
    // Any signed-in user reads the season in force: an inspector too.
    let after = seasons(port, &li);
    assert_eq!(
        after["in_force"],
        json!({"start": "2027-03-15", "end": "2027-09-30"}),
        "{after}"
    );
    assert_eq!(after["declared"].as_array().unwrap().len(), 1, "{after}");
    assert_eq!(after["declared"][0]["region"], json!(GONGCHENG.to_string()));

    // Kept across a restart: re-planning the pond (as a level change would)
    // keeps the task the season calls for.
    server.restart().unwrap();
    let wang = login(server.port, "wang", PASSWORD).unwrap();
    assert_eq!(seasons(server.port, &wang)["in_force"]["start"], "2027-03-15");
    let (status, plan, text) = call(
        server.port,
        &wang,
        "POST",
        "/api/v1/schedule/regenerate",
        Some(json!({"year": 2027, "site_id": one, "change_day": "2027-01-05"})),
    );
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        (
            plan["cancelled"].as_array().unwrap().len(),
            plan["added"].as_array().unwrap().len()
        ),
        (0, 0),
        "{plan}"
    );
    let (_, listed, _) = call(
        server.port,
        &wang,
        "GET",
        &format!("/api/v1/schedule?year=2027&region={GONGCHENG}"),
        None,
    );
    let due: Vec<&str> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["rule"] == "level_one_pre_flood" && t["state"] != "cancelled")
        .map(|t| t["window"]["due"].as_str().unwrap())
        .collect();
    assert_eq!(due, ["2027-03-14"]);
}
