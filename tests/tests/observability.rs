#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! What an operator watches: `/metrics` in Prometheus text (only for an admin
//! or the scraper's token) counting requests by route and status, pushes and
//! pulls with their latencies, change outcomes, refusals by code and the
//! store's size; and the server's logs as JSON lines when asked.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use mobile_schema::ids::{InspectionId, SiteId};
use mobile_schema::region::RegionCode;
use mobile_schema::sample;
use replica::HttpConfig;
use tests::api::Api;
use tests::harness::{ServerProcess, fieldsync_bin};
use tests::http::Request;
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "observability-admin-Zq81";
const PASSWORD: &str = "observability-user-Lm52";
const SCRAPER_TOKEN: &str = "scraper-secret-0d9f2c";

/// `/metrics` as text, or the status it was refused with.
fn scrape(port: u16, bearer: Option<&str>) -> Result<String, u16> {
    let mut req = Request::get("/metrics");
    if let Some(t) = bearer {
        req = req.bearer(t);
    }
    let r = req.send(port).unwrap();
    if r.status == 200 {
        Ok(String::from_utf8(r.body.clone()).unwrap())
    } else {
        Err(r.status)
    }
}

/// The value of the sample whose name and labels start with `prefix`
/// (labels in the order the server writes them: alphabetical).
fn sample_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_count_requests_pushes_pulls_outcomes_and_refusals_for_an_admin_or_the_scraper() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_settings(
        dir.path(),
        &format!("[metrics]\ntoken = \"{SCRAPER_TOKEN}\"\n"),
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let port = server.port;
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    api.create_user(&admin.access, "lin", PASSWORD, "inspector", &["450300"])
        .unwrap();
    let inspector = api.login("lin", PASSWORD).unwrap();

    // Nobody else reads them: no token, a wrong one, an inspector's.
    let no_token = Request::get("/metrics").send(port).unwrap();
    assert_eq!(no_token.status, 401);
    assert_eq!(no_token.json().unwrap()["code"], "missing_token");
    assert_eq!(scrape(port, Some("scraper-secret-wrong")), Err(401));
    assert_eq!(scrape(port, Some(&inspector.access)), Err(403));

    // The office records a pond and an inspection; the inspector tries to
    // record a pond outside her county, which is refused.
    let http = || HttpConfig::new(server.url(""));
    let mut office = Tablet::enrol(&dir.path().join("office"), http(), "admin", ADMIN_PASSWORD, None).unwrap();
    let site = SiteId::generate();
    let mut pond = sample::pond(site);
    pond.region_code = RegionCode::new(450332).unwrap();
    office.replica.create(pond.into()).unwrap();
    let device = office.replica.identity().device;
    office
        .replica
        .create(sample::inspection(InspectionId::generate(), site, device).into())
        .unwrap();
    let report = office.sync().unwrap();
    assert_eq!((report.acked, report.refused), (2, 0), "{report:?}");

    let mut lin = Tablet::enrol(&dir.path().join("lin"), http(), "lin", PASSWORD, None).unwrap();
    let mut elsewhere = sample::pond(SiteId::generate());
    elsewhere.region_code = RegionCode::new(450100).unwrap();
    lin.replica.create(elsewhere.into()).unwrap();
    let report = lin.sync().unwrap();
    assert_eq!((report.acked, report.refused), (0, 1), "{report:?}");
    let code = lin.replica.refused().unwrap()[0].code.as_str();
    assert_eq!(Request::get("/no/such/path").send(port).unwrap().status, 404);

    let text = scrape(port, Some(SCRAPER_TOKEN)).unwrap();
    let by_admin = scrape(port, Some(&admin.access)).unwrap();
    assert!(by_admin.contains("fieldsync_changes_total"), "{by_admin}");

    let value = |prefix: &str| sample_value(&text, prefix).unwrap_or_else(|| panic!("no {prefix} in\n{text}"));
    assert_eq!(value("fieldsync_changes_total{outcome=\"applied\"}"), 2.0);
    assert_eq!(value("fieldsync_changes_total{outcome=\"refused\"}"), 1.0);
    assert_eq!(value(&format!("fieldsync_refusals_total{{code=\"{code}\"}}")), 1.0);
    // Two tablets pushed once each and pulled at least once each.
    assert_eq!(value("fieldsync_push_duration_seconds_count"), 2.0);
    assert!(value("fieldsync_pull_duration_seconds_count") >= 2.0);
    assert!(value("fieldsync_pulled_records_total") >= 2.0);
    assert_eq!(
        value("fieldsync_http_requests_total{method=\"POST\",route=\"/api/v1/sync/push\",status=\"200\"}"),
        2.0
    );
    assert_eq!(
        value("fieldsync_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"403\"}"),
        1.0
    );
    // Unknown paths share one label, whatever they were.
    assert!(value("fieldsync_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}") >= 1.0);
    assert!(!text.contains("/no/such/path"), "a raw path became a label");
    assert!(value("fieldsync_http_request_duration_seconds_count{route=\"/api/v1/sync/pull\"}") >= 2.0);
    assert!(value("fieldsync_store_bytes{store=\"sled\"}") > 0.0);
    assert!(value("fieldsync_store_bytes{store=\"photos\"}") >= 0.0);
    assert!(value("process_resident_memory_bytes") > 0.0);
}

#[test]
fn logs_are_json_lines_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(fieldsync_bin().unwrap())
        .args(["serve", "--bind", "127.0.0.1:0", "--log-json", "--data"])
        .arg(dir.path().join("store"))
        .env("RUST_LOG", "info")
        .env("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut listening = None;
    for line in BufReader::new(stderr).lines() {
        let line = line.unwrap();
        let event: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        assert!(event["timestamp"].is_string() && event["level"].is_string(), "{event}");
        if event["message"] == "fieldsync listening" {
            listening = Some(event);
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let event = listening.expect("the server logged that it listens");
    assert_eq!(event["level"], "INFO");
    assert!(
        event["port"].as_u64().is_some_and(|p| p > 0),
        "fields are JSON fields: {event}"
    );
}
