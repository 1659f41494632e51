#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Who sees and changes what, end to end: inspectors and supervisors pull
//! only their regions' records (a city covers its counties); a change outside
//! their scope or beyond their role is refused on its own and kept on the
//! tablet with the reason; when an admin widens a user's regions the records
//! that entered reach the tablet on its next pull, and when the regions shrink
//! the records that left are purged from it.

use mobile_schema::ids::{DeviceId, InspectionId, RecordId, ReviewId, SiteId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::review::{Decision, Review};
use mobile_schema::sample;
use replica::HttpConfig;
use serde_json::{Value, json};
use sync_protocol::RefusalCode;
use tests::harness::ServerProcess;
use tests::http::Request;
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "scope-admin-Hq71-password";
const PASSWORD: &str = "scope-user-Zt52-password";
/// 恭城瑶族自治县 in 桂林市, and 兴宁区 in 南宁市.
const GONGCHENG: u32 = 450_332;
const GUILIN: u32 = 450_300;
const XINGNING: u32 = 450_102;

fn admin_token(port: u16) -> String {
    let r = Request::post("/api/v1/auth/login")
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD,
                      "device": {"id": DeviceId::generate(), "name": "admin console"}}))
        .send(port)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()["access_token"].as_str().unwrap().to_string()
}

fn admin(port: u16, token: &str, method: &str, path: &str, body: Value) -> Value {
    let r = Request::new(method, path).bearer(token).json(&body).send(port).unwrap();
    assert!(
        (200..300).contains(&r.status),
        "{method} {path}: {} {}",
        r.status,
        r.text()
    );
    r.json().unwrap_or(Value::Null)
}

fn site_in(region: u32) -> (SiteId, AnyRecord) {
    let id = SiteId::generate();
    let mut site = sample::pond(id);
    site.region_code = RegionCode::new(region).unwrap();
    (id, site.into())
}

fn has(t: &Tablet, id: impl Into<RecordId>) -> bool {
    t.replica.get(id.into()).unwrap().is_some()
}

#[test]
fn pulls_and_pushes_follow_role_and_regions_and_a_scope_change_backfills_and_purges() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with(
        &root.path().join("server"),
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let port = server.port;
    let token = admin_token(port);
    for (name, role, regions) in [
        ("li", "inspector", vec![GONGCHENG.to_string()]),
        ("wang", "supervisor", vec![GUILIN.to_string()]),
        ("zhao", "inspector", vec![XINGNING.to_string()]),
    ] {
        admin(
            port,
            &token,
            "POST",
            "/api/v1/admin/users",
            json!({"username": name, "password": PASSWORD, "role": role, "regions": regions}),
        );
    }
    let http = || HttpConfig::new(server.url(""));
    let enrol = |dir: &str, user: &str, password: &str| {
        Tablet::enrol(&root.path().join(dir), http(), user, password, None).unwrap()
    };

    // The admin records a pond and an inspection in each county.
    let mut office = enrol("office", "admin", ADMIN_PASSWORD);
    let (site_g, pond_g) = site_in(GONGCHENG);
    let (site_x, pond_x) = site_in(XINGNING);
    let (insp_g, insp_x) = (InspectionId::generate(), InspectionId::generate());
    let device = office.replica.identity().device;
    for record in [
        pond_g,
        pond_x,
        sample::inspection(insp_g, site_g, device).into(),
        sample::inspection(insp_x, site_x, device).into(),
    ] {
        office.replica.create(record).unwrap();
    }
    let report = office.sync().unwrap();
    assert_eq!((report.acked, report.refused), (4, 0));

    // Pull: each sees their regions; the supervisor's city covers the county.
    let mut li = enrol("li", "li", PASSWORD);
    let mut wang = enrol("wang", "wang", PASSWORD);
    let mut zhao = enrol("zhao", "zhao", PASSWORD);
    for t in [&mut li, &mut wang, &mut zhao] {
        t.sync().unwrap();
    }
    for (name, t, sees_g, sees_x) in [
        ("li", &li, true, false),
        ("wang", &wang, true, false),
        ("zhao", &zhao, false, true),
    ] {
        assert_eq!(has(t, site_g), sees_g, "{name}: 恭城 pond");
        assert_eq!(has(t, insp_g), sees_g, "{name}: 恭城 inspection");
        assert_eq!(has(t, site_x), sees_x, "{name}: 兴宁 pond");
        assert_eq!(has(t, insp_x), sees_x, "{name}: 兴宁 inspection");
    }

    // Push: an inspection of a pond outside li's county is refused on its own,
    // as is a review by an inspector; li's edit in the same push is applied.
    let outside = InspectionId::generate();
    li.replica
        .create(sample::inspection(outside, site_x, li.replica.identity().device).into())
        .unwrap();
    li.edit(RecordKind::Inspection, insp_g.into(), "conclusion", json!("李：已复查"))
        .unwrap();
    let review = Review {
        id: ReviewId::generate(),
        schema_version: Review::SCHEMA_VERSION,
        inspection_id: insp_g,
        reviewer: UserId::generate(),
        decision: Decision::Approve,
        decided_at: chrono::Utc::now().fixed_offset(),
        comments: Vec::new(),
    };
    let review_refused_locally = li.replica.create(review.into()).is_err();
    let report = li.sync().unwrap();
    assert_eq!(report.refused, if review_refused_locally { 1 } else { 2 }, "{report:?}");
    assert_eq!(report.acked, 1, "{report:?}");
    let refused = li.replica.refused().unwrap();
    assert!(
        refused
            .iter()
            .any(|r| r.record == RecordId::from(outside) && r.code == RefusalCode::ForbiddenScope),
        "{refused:?}"
    );
    if !review_refused_locally {
        assert!(
            refused.iter().any(|r| r.code == RefusalCode::RoleNotAllowed),
            "{refused:?}"
        );
    }
    wang.sync().unwrap();
    match wang.replica.get(insp_g.into()).unwrap().unwrap().record {
        AnyRecord::Inspection(i) => assert_eq!(i.conclusion, "李：已复查"),
        other => panic!("{other:?}"),
    }
    assert!(!has(&wang, outside), "a refused record reaches no one");

    // Scope grows: the records that entered arrive although they changed
    // before li's cursor.
    admin(
        port,
        &token,
        "PATCH",
        "/api/v1/admin/users/li",
        json!({"regions": [GONGCHENG.to_string(), XINGNING.to_string()]}),
    );
    li.sync().unwrap();
    for id in [RecordId::from(site_x), insp_x.into(), site_g.into(), insp_g.into()] {
        assert!(has(&li, id), "li has {id} after the scope grew");
    }

    // Scope shrinks: what left is purged from the tablet on the next pull.
    admin(
        port,
        &token,
        "PATCH",
        "/api/v1/admin/users/li",
        json!({"regions": [XINGNING.to_string()]}),
    );
    let report = li.sync().unwrap();
    assert!(report.purged >= 2, "{report:?}");
    assert!(!has(&li, site_g) && !has(&li, insp_g), "恭城 records purged");
    assert!(has(&li, site_x) && has(&li, insp_x), "兴宁 records kept");
    // Nothing of the purge touched the other tablets.
    wang.sync().unwrap();
    assert!(has(&wang, site_g) && has(&wang, insp_g));
}

/// A server with these users (name, role, region) and the admin's token.
fn server_with(root: &std::path::Path, users: &[(&str, &str, u32)]) -> (ServerProcess, String) {
    let server =
        ServerProcess::start_with(&root.join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)]).unwrap();
    let token = admin_token(server.port);
    for (name, role, region) in users {
        admin(
            server.port,
            &token,
            "POST",
            "/api/v1/admin/users",
            json!({"username": name, "password": PASSWORD, "role": role, "regions": [region.to_string()]}),
        );
    }
    (server, token)
}

fn enrol(root: &std::path::Path, server: &ServerProcess, user: &str, password: &str) -> Tablet {
    Tablet::enrol(&root.join(user), HttpConfig::new(server.url("")), user, password, None).unwrap()
}

#[test]
fn a_site_that_moves_takes_its_records_to_the_new_region_and_out_of_the_old() {
    let root = tempfile::tempdir().unwrap();
    let (server, _) = server_with(
        root.path(),
        &[("li", "inspector", GONGCHENG), ("zhao", "inspector", XINGNING)],
    );
    let enrol = |user: &str, password: &str| enrol(root.path(), &server, user, password);
    // A pond recorded in 恭城 by mistake, with an inspection.
    let mut office = enrol("admin", ADMIN_PASSWORD);
    let (site, pond) = site_in(GONGCHENG);
    let (stays, other_pond) = site_in(GONGCHENG);
    let insp = InspectionId::generate();
    let device = office.replica.identity().device;
    office.replica.create(pond).unwrap();
    office.replica.create(other_pond).unwrap();
    office
        .replica
        .create(sample::inspection(insp, site, device).into())
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    let mut li = enrol("li", PASSWORD);
    let mut zhao = enrol("zhao", PASSWORD);
    li.sync().unwrap();
    zhao.sync().unwrap();
    assert!(has(&li, site) && has(&li, insp) && has(&li, stays));
    assert!(!has(&zhao, site) && !has(&zhao, insp));

    // The office corrects the county: the pond is in 兴宁区.
    office
        .edit(
            RecordKind::Site,
            site.into(),
            "region_code",
            json!(XINGNING.to_string()),
        )
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    // zhao's cursor passed these records long ago; they reach his tablet anyway.
    zhao.sync().unwrap();
    assert!(
        has(&zhao, site) && has(&zhao, insp),
        "the moved site and its inspection reach the new region"
    );
    assert!(!has(&zhao, stays));
    // li's tablet lets them go; the pond that stayed stays.
    let report = li.sync().unwrap();
    assert!(report.purged >= 2, "{report:?}");
    assert!(
        !has(&li, site) && !has(&li, insp),
        "the moved records leave the old region's tablets"
    );
    assert!(has(&li, stays));
    // Nothing more on the next pulls.
    assert_eq!(li.sync().unwrap().purged, 0);
    assert!(has(&zhao, site));
}

#[test]
fn an_inspection_corrected_to_a_pond_of_another_county_takes_its_review_along_and_leaves_the_old_county() {
    let root = tempfile::tempdir().unwrap();
    let (server, _) = server_with(
        root.path(),
        &[
            ("li", "inspector", GONGCHENG),
            ("wang", "supervisor", GUILIN),
            ("chen", "supervisor", XINGNING),
        ],
    );
    let port = server.port;
    let enrol = |user: &str, password: &str| enrol(root.path(), &server, user, password);
    // An inspection filed against the 恭城 pond, submitted.
    let mut office = enrol("admin", ADMIN_PASSWORD);
    let (pond_g, record_g) = site_in(GONGCHENG);
    let (pond_x, record_x) = site_in(XINGNING);
    let insp = InspectionId::generate();
    let device = office.replica.identity().device;
    office.replica.create(record_g).unwrap();
    office.replica.create(record_x).unwrap();
    office
        .replica
        .create(sample::inspection(insp, pond_g, device).into())
        .unwrap();
    office
        .replica
        .transition(RecordKind::Inspection, insp.into(), "submit")
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    // 桂林's supervisor returns it: the comments are a review record.
    let r = Request::post("/api/v1/auth/login")
        .json(&json!({"username": "wang", "password": PASSWORD,
                      "device": {"id": DeviceId::generate(), "name": "wang's desk"}}))
        .send(port)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let wang_token = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    admin(
        port,
        &wang_token,
        "POST",
        &format!("/api/v1/reviews/{insp}/return"),
        json!({"comments": "塘号填错：这是兴宁区的尾矿库"}),
    );

    let mut li = enrol("li", PASSWORD);
    let mut wang = enrol("wang", PASSWORD);
    let mut chen = enrol("chen", PASSWORD);
    for t in [&mut li, &mut wang, &mut chen] {
        t.sync().unwrap();
    }
    let reviews_of = |t: &Tablet| -> Vec<RecordId> {
        t.replica
            .list(RecordKind::Review)
            .unwrap()
            .into_iter()
            .filter(|r| matches!(&r.record, AnyRecord::Review(v) if v.inspection_id == insp))
            .map(|r| r.record.id())
            .collect()
    };
    let review = match reviews_of(&wang).as_slice() {
        [one] => *one,
        other => panic!("wang holds the one review he made: {other:?}"),
    };
    assert!(has(&wang, insp) && has(&li, insp));
    assert!(!has(&chen, insp) && !has(&chen, review));

    // The inspector corrects the pond: it is one in 兴宁区.
    office
        .edit(
            RecordKind::Inspection,
            insp.into(),
            "site_id",
            json!(pond_x.to_string()),
        )
        .unwrap();
    assert_eq!(office.sync().unwrap().refused, 0);

    // 兴宁's supervisor gets the inspection and the review that returned it,
    // although his cursor passed the review long ago.
    chen.sync().unwrap();
    assert!(has(&chen, insp), "the corrected inspection reaches the new county");
    assert!(has(&chen, review), "its review follows it");
    match &chen.replica.get(review).unwrap().unwrap().record {
        AnyRecord::Review(v) => assert_eq!(v.decision, Decision::Return),
        other => panic!("{other:?}"),
    }
    // The old county's tablets let both go; its ponds stay.
    let report = wang.sync().unwrap();
    assert!(report.purged >= 2, "{report:?}");
    assert!(
        !has(&wang, insp) && !has(&wang, review),
        "the inspection and its review leave the old county's supervisor"
    );
    assert!(has(&wang, pond_g));
    li.sync().unwrap();
    assert!(!has(&li, insp), "and the old county's inspector");
    assert!(has(&li, pond_g));
    // Nothing more on the next pulls.
    assert_eq!(wang.sync().unwrap().purged, 0);
    assert!(has(&chen, insp) && has(&chen, review));
}

/// One raw pull with a tablet's access token.
fn pull(port: u16, t: &Tablet, since: &str) -> Value {
    let token = t.transport.http.credentials().unwrap().access_token.clone();
    let r = Request::get(&format!("/api/v1/sync/pull?since={since}"))
        .bearer(&token)
        .send(port)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    r.json().unwrap()
}

fn purged(page: &Value) -> Vec<Value> {
    page["purge"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_cursor_forged_with_another_scopes_tag_purges_nothing_and_names_no_hidden_record() {
    let root = tempfile::tempdir().unwrap();
    let (server, token) = server_with(root.path(), &[("li", "inspector", GONGCHENG)]);
    let port = server.port;
    // The admin records a pond and an inspection in each county, and pulls:
    // the server now knows the admin's scope by its tag.
    let mut office = enrol(root.path(), &server, "admin", ADMIN_PASSWORD);
    let (site_g, pond_g) = site_in(GONGCHENG);
    let (site_x, pond_x) = site_in(XINGNING);
    let (insp_g, insp_x) = (InspectionId::generate(), InspectionId::generate());
    let device = office.replica.identity().device;
    for record in [
        pond_g,
        pond_x,
        sample::inspection(insp_g, site_g, device).into(),
        sample::inspection(insp_x, site_x, device).into(),
    ] {
        office.replica.create(record).unwrap();
    }
    let report = office.sync().unwrap();
    assert_eq!((report.acked, report.refused), (4, 0));
    assert!(has(&office, site_x));

    let mut li = enrol(root.path(), &server, "li", PASSWORD);
    li.sync().unwrap();
    let page = pull(port, &li, "0");
    let cursor = page["next"].as_str().unwrap().to_string();
    let seq = cursor.split('.').next().unwrap();
    let admin_tag = sync_protocol::scope::Scope {
        user: UserId::generate(),
        role: mobile_schema::workflow::Role::Admin,
        regions: Vec::new(),
    }
    .tag();
    assert!(!cursor.contains(&admin_tag), "{cursor}");

    // li forges the admin scope's tag: he learns nothing of 兴宁, and the
    // pull starts again from 0 under his own scope.
    let hidden = [json!(RecordId::from(site_x)), json!(RecordId::from(insp_x))];
    for forged in [format!("{seq}.{admin_tag}"), format!("{seq}.{admin_tag}.{seq}")] {
        let page = pull(port, &li, &forged);
        let purge = purged(&page);
        assert!(hidden.iter().all(|h| !purge.contains(h)), "{forged}: {purge:?}");
        assert!(
            purge.is_empty(),
            "a scope li never pulled under purges nothing: {purge:?}"
        );
        let ids: Vec<&Value> = page["records"].as_array().unwrap().iter().map(|r| &r["id"]).collect();
        assert!(ids.contains(&&json!(RecordId::from(insp_g))), "{ids:?}");
        assert!(!ids.contains(&&json!(RecordId::from(insp_x))), "{ids:?}");
    }

    // A real change of li's own scope still purges what left it.
    admin(
        port,
        &token,
        "PATCH",
        "/api/v1/admin/users/li",
        json!({"regions": [XINGNING.to_string()]}),
    );
    let purge = purged(&pull(port, &li, &cursor));
    for left in [RecordId::from(site_g), RecordId::from(insp_g)] {
        assert!(purge.contains(&json!(left)), "{left} left li's scope: {purge:?}");
    }
    let report = li.sync().unwrap();
    assert!(report.purged >= 2, "{report:?}");
    assert!(!has(&li, site_g) && !has(&li, insp_g));
    assert!(has(&li, site_x) && has(&li, insp_x));
}
