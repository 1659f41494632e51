#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The deployment's rule settings end to end: a bureau that grades hazards
//! 一般/重大 configures `[rules]`; the server judges pushes by that scale and
//! hands it to tablets at login, so a tablet records a 重大 hazard offline and
//! flags a severity of another scale (one graded before the scale changed),
//! as the server does: the hazard is kept and a supervisor regrades it.

use mobile_schema::ids::{HazardId, InspectionId, SiteId};
use mobile_schema::record::RecordKind;
use mobile_schema::region::RegionCode;
use mobile_schema::sample;
use mobile_schema::validation::IssueCode;
use replica::HttpConfig;
use serde_json::json;
use tests::api::Api;
use tests::harness::ServerProcess;
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "rules-admin-Qm47-password";
const PASSWORD: &str = "rules-user-Wx82-password";

#[test]
fn a_configured_severity_scale_is_the_one_tablets_and_server_judge_hazards_by() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("fieldsync.toml");
    std::fs::write(&config, "[rules]\nseverity_scale = \"general_major\"\n").unwrap();
    let server = ServerProcess::start_with_config(
        &root.path().join("server"),
        &config,
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    let a = api
        .post(
            "/api/v1/admin/users",
            Some(&admin.access),
            &json!({"username": "wei", "password": PASSWORD, "role": "inspector", "regions": ["451221"]}),
        )
        .unwrap();
    assert_eq!(a.status, 201, "{:?}", a.body);
    let site = SiteId::generate();
    let mut pond = sample::pond(site);
    pond.region_code = RegionCode::new(451_221).unwrap();
    let a = api
        .post(
            "/api/v1/sites",
            Some(&admin.access),
            &serde_json::to_value(&pond).unwrap(),
        )
        .unwrap();
    assert_eq!(a.status, 201, "{:?}", a.body);

    let mut wei = Tablet::enrol(
        &root.path().join("wei"),
        HttpConfig::new(server.url("")),
        "wei",
        PASSWORD,
        None,
    )
    .unwrap();
    wei.sync().unwrap();
    let device = wei.replica.identity().device;
    let insp = InspectionId::generate();
    wei.replica
        .create(sample::inspection(insp, site, device).into())
        .unwrap();
    // Offline: a 重大 hazard is a hazard of this deployment's scale ...
    let mut major = sample::hazard(HazardId::generate(), insp, site);
    major.severity = "major".into();
    wei.replica.create(major.clone().into()).unwrap();
    // ... and one graded on the default scale is kept, flagged.
    let mut high = sample::hazard(HazardId::generate(), insp, site);
    high.severity = "high".into();
    let receipt = wei.replica.create(high.clone().into()).unwrap();
    assert!(
        receipt
            .flags
            .iter()
            .any(|f| f.code == IssueCode::UnknownSeverity && f.field == "severity"),
        "{:?}",
        receipt.flags
    );
    let report = wei.sync().unwrap();
    assert_eq!((report.acked, report.refused), (3, 0), "{report:?}");

    // A client that skips the tablet's check is judged alike by the server:
    // applied, flagged where the supervisor sees it.
    let token = wei.transport.http.credentials().unwrap().access_token.clone();
    let seq = wei.replica.next_seq();
    let mut red = sample::hazard(HazardId::generate(), insp, site);
    red.severity = "red".into();
    let change = json!({
        "seq": seq,
        "hlc": [1_764_000_000_000u64, 0],
        "kind": "hazard",
        "record": red.id.to_string(),
        "op": {"create": {"record": red}},
    });
    let a = api
        .post("/api/v1/sync/push", Some(&token), &json!({"changes": [change]}))
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let outcome = &a.body["outcomes"][0];
    assert_eq!(outcome["outcome"].as_str(), Some("applied"), "{outcome}");
    for id in [high.id, red.id] {
        let a = api.get(&format!("/api/v1/records/{id}"), Some(&admin.access)).unwrap();
        assert_eq!(a.status, 200, "{:?}", a.body);
        let flagged = a.body["flags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["code"] == "unknown_severity" && f["field"] == "severity");
        assert!(flagged, "{:?}", a.body);
    }
    let a = api
        .get(&format!("/api/v1/records/{}", major.id), Some(&admin.access))
        .unwrap();
    assert_eq!(a.body["flags"], json!([]), "{:?}", a.body);

    // The tablet's store keeps the settings across a restart, with no server.
    let dir = root.path().join("wei");
    drop(wei);
    let mut again = replica::Replica::open(&dir).unwrap();
    let mut general = sample::hazard(HazardId::generate(), insp, site);
    general.severity = "general".into();
    assert!(again.create(general.into()).unwrap().flags.is_empty());
    let mut high = sample::hazard(HazardId::generate(), insp, site);
    high.severity = "high".into();
    assert!(!again.create(high.into()).unwrap().flags.is_empty());
    assert_eq!(again.list(RecordKind::Hazard).unwrap().len(), 4);
}

/// Rule breaches of a visit recorded offline — a tablet clock reset mid-visit
/// (end before start), a colleague without his certificate number at hand, a
/// party refusing to sign with nobody there to witness it — are kept: the
/// tablet saves and submits the inspection, the server applies it, and the
/// supervisor sees each breach as a flag.
#[test]
fn an_offline_visit_with_rule_breaches_reaches_the_supervisor_flagged_not_refused() {
    let root = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_args(
        &root.path().join("server"),
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
        &[],
    )
    .unwrap();
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    for (name, role) in [("wei", "inspector"), ("li", "supervisor")] {
        let a = api
            .post(
                "/api/v1/admin/users",
                Some(&admin.access),
                &json!({"username": name, "password": PASSWORD, "role": role, "regions": ["451221"]}),
            )
            .unwrap();
        assert_eq!(a.status, 201, "{:?}", a.body);
    }
    let site = SiteId::generate();
    let mut pond = sample::pond(site);
    pond.region_code = RegionCode::new(451_221).unwrap();
    let a = api
        .post(
            "/api/v1/sites",
            Some(&admin.access),
            &serde_json::to_value(&pond).unwrap(),
        )
        .unwrap();
    assert_eq!(a.status, 201, "{:?}", a.body);

    let mut wei = Tablet::enrol(
        &root.path().join("wei"),
        HttpConfig::new(server.url("")),
        "wei",
        PASSWORD,
        None,
    )
    .unwrap();
    wei.sync().unwrap();
    let insp = InspectionId::generate();
    let mut visit = sample::inspection(insp, site, wei.replica.identity().device);
    let start = visit.times.start;
    visit.times.end = Some(start - chrono::Duration::hours(2));
    visit.team[1].certificate_no = String::new();
    visit.signoff = Some(mobile_schema::inspection::Signoff::Refused {
        reason: String::new(),
        witness: mobile_schema::inspection::Witness {
            name: String::new(),
            role: String::new(),
        },
        recorded_at: start,
    });
    wei.replica.create(visit.into()).expect("the tablet keeps the visit");
    wei.replica
        .transition(RecordKind::Inspection, insp.into(), "submit")
        .expect("and submits it");
    let report = wei.sync().unwrap();
    assert_eq!((report.acked, report.refused), (2, 0), "{report:?}");

    let li = api.login("li", PASSWORD).unwrap();
    let a = api.get(&format!("/api/v1/records/{insp}"), Some(&li.access)).unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["workflow"], "submitted", "{:?}", a.body);
    let flags: Vec<(String, String)> = a.body["flags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["code"].as_str().unwrap().into(), f["field"].as_str().unwrap().into()))
        .collect();
    for (code, field) in [
        ("end_before_start", "times.end"),
        ("missing_certificate", "team[1].certificate_no"),
        ("refusal_without_reason", "signoff.reason"),
        ("refusal_without_witness", "signoff.witness.name"),
    ] {
        assert!(
            flags.contains(&(code.to_string(), field.to_string())),
            "{code} at {field} in {flags:?}"
        );
    }
}
