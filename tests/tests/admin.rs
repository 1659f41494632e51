#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Administration through the real `fieldsync` binary against a running
//! server: users, devices, sites one by one and imports of the official
//! lists, idempotent, with rows refused by line; and the same through the API.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mobile_schema::ids::{RecordId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use replica::HttpConfig;
use serde_json::{Value, json};
use tests::api::Api;
use tests::harness::{ServerProcess, run_fieldsync};
use tests::tablet::Tablet;

const PASSWORD: &str = "admin-cli-Hq52-password";
const USER_PASSWORD: &str = "field-user-Pd83-password";

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
        .join(name)
}

struct Cli {
    url: String,
}

impl Cli {
    /// Runs `fieldsync ARGS` as `who`; (success, stdout JSON, stderr).
    fn run(&self, who: &str, password: &str, args: &[&str]) -> (bool, Value, String) {
        let args = [args, &["--server", self.url.as_str(), "--as", who]].concat();
        let (ok, stdout, stderr) = run_fieldsync(
            &args,
            &[
                ("FIELDSYNC_PASSWORD", password),
                ("FIELDSYNC_USER_PASSWORD", USER_PASSWORD),
            ],
        )
        .unwrap();
        (ok, serde_json::from_str(&stdout).unwrap_or(Value::Null), stderr)
    }

    fn ok(&self, args: &[&str]) -> Value {
        let (ok, out, err) = self.run("admin", PASSWORD, args);
        assert!(ok, "fieldsync {args:?} failed: {err}");
        out
    }
}

#[test]
fn users_devices_and_sites_are_managed_with_the_cli_and_imports_are_idempotent() {
    let root = tempfile::tempdir().unwrap();
    let server =
        ServerProcess::start_with(&root.path().join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let url = server.url("");
    let cli = Cli { url: url.clone() };

    // Users: add, list, change, disable and enable.
    let sup = cli.ok(&["user", "add", "lan", "--role", "supervisor", "--regions", "451200"]);
    assert_eq!(sup["role"], "supervisor");
    assert_eq!(sup["regions"], json!(["451200"]));
    cli.ok(&["user", "add", "wei", "--role", "inspector", "--regions", "451221"]);
    let users = cli.ok(&["user", "list"]);
    let names: BTreeSet<&str> = users
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, BTreeSet::from(["admin", "lan", "wei"]));
    assert_eq!(cli.ok(&["user", "set", "wei", "--disable"])["disabled"], true);
    assert_eq!(cli.ok(&["user", "set", "wei", "--enable"])["disabled"], false);
    let (ok, _, err) = cli.run("admin", PASSWORD, &["user", "add", "wei", "--role", "inspector"]);
    assert!(!ok && err.contains("user_exists"), "{err}");

    // Devices: the CLI's own login shows, and can be listed by user.
    let devices = cli.ok(&["device", "list", "--user", "admin"]);
    assert!(
        devices.as_array().unwrap().iter().any(|d| d["name"] == "fieldsync CLI"),
        "{devices}"
    );

    // Import the pond list in batches of 7 rows.
    let ponds = fixture("examples/tailings_ponds_2025.csv");
    let rows = std::fs::read_to_string(&ponds)
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    let first = cli.ok(&["site", "import", "ponds", ponds.to_str().unwrap(), "--batch", "7"]);
    let created = first["created"].as_u64().unwrap() as usize;
    let rejected = first["rejected"].as_array().unwrap().len();
    assert!(created > 10, "{first}");
    assert_eq!(created + rejected, rows, "{first}");
    assert_eq!(first["refused"], json!([]));
    // The same file again: deterministic ids, nothing created or changed.
    let second = cli.ok(&["site", "import", "ponds", ponds.to_str().unwrap(), "--batch", "5"]);
    assert_eq!(second["created"], 0, "{second}");
    assert_eq!(second["updated"], 0, "{second}");
    assert_eq!(second["unchanged"].as_u64().unwrap() as usize, created);
    assert_eq!(second["rejected"], first["rejected"]);

    // A file with a broken row: refused with its line, the rest taken.
    let text = std::fs::read_to_string(&ponds).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap();
    let good = lines.next().unwrap();
    let broken = good.replacen("WK451221001", "WK451221099", 1);
    let mut fields: Vec<&str> = broken.split(',').collect();
    fields[1] = "";
    let bad_file = root.path().join("bad.csv");
    std::fs::write(&bad_file, format!("{header}\n{good}\n{}\n", fields.join(","))).unwrap();
    let (ok, report, err) = cli.run(
        "admin",
        PASSWORD,
        &["site", "import", "ponds", bad_file.to_str().unwrap()],
    );
    assert!(ok, "{err}");
    assert_eq!(report["unchanged"], 1, "{report}");
    assert_eq!(report["created"], 0, "{report}");
    assert_eq!(report["rejected"][0]["line"], 3, "{report}");
    assert!(
        report["rejected"][0]["reason"].as_str().unwrap().contains("name"),
        "{report}"
    );
    assert!(err.contains("bad.csv:3:"), "{err}");

    // Next year's list: the pond's new level is appended to its history, once.
    let mut next: Vec<String> = good.split(',').map(str::to_string).collect();
    next[10] = "2026".into();
    next[11] = "二级".into();
    next[12] = "2026-03-01".into();
    next[13] = "广西壮族自治区2026年尾矿库环境监管分级清单（示例）".into();
    let next_file = root.path().join("ponds_2026.csv");
    std::fs::write(&next_file, format!("{header}\n{}\n", next.join(","))).unwrap();
    let updated = cli.ok(&["site", "import", "ponds", next_file.to_str().unwrap()]);
    assert_eq!(
        (updated["created"].as_u64(), updated["updated"].as_u64()),
        (Some(0), Some(1)),
        "{updated}"
    );
    let again = cli.ok(&["site", "import", "ponds", next_file.to_str().unwrap()]);
    assert_eq!(again["unchanged"], 1, "{again}");
    let page = cli.ok(&["site", "list", "--all", "--region", "451221", "--kind", "tailings_pond"]);
    let pond = page["sites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| {
            s["site"]["details"]["kind"] == "tailings_pond" && s["site"]["name"] == good.split(',').nth(1).unwrap()
        })
        .unwrap()
        .clone();
    let levels: Vec<(i64, String)> = pond["site"]["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["year"].as_i64().unwrap(), l["level"].to_string()))
        .collect();
    assert_eq!(levels.len(), 2, "{pond}");
    assert_eq!(pond["conflicts"], Value::Null, "{pond}");

    // The other two lists.
    let units = cli.ok(&[
        "site",
        "import",
        "key_units",
        fixture("examples/key_units_2025.csv").to_str().unwrap(),
    ]);
    assert!(units["created"].as_u64().unwrap() > 0, "{units}");
    let projects = cli.ok(&[
        "site",
        "import",
        "projects",
        fixture("guangxi_2024_soil_projects.csv").to_str().unwrap(),
    ]);
    assert!(projects["created"].as_u64().unwrap() > 0, "{projects}");
    let again = cli.ok(&[
        "site",
        "import",
        "projects",
        fixture("guangxi_2024_soil_projects.csv").to_str().unwrap(),
    ]);
    assert_eq!(again["created"], 0);
    assert_eq!(again["unchanged"], projects["created"]);
    let total = created as u64 + units["created"].as_u64().unwrap() + projects["created"].as_u64().unwrap();

    // Listing: filtered, and pages that add up to everything once.
    let all = cli.ok(&["site", "list", "--all", "--limit", "7"]);
    let ids: Vec<&str> = all["sites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["site"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len() as u64, total);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "a site listed twice"
    );
    let nandan = cli.ok(&["site", "list", "--all", "--region", "451221", "--kind", "tailings_pond"]);
    let nandan = nandan["sites"].as_array().unwrap();
    assert_eq!(nandan.len(), 4, "{nandan:?}");
    assert!(
        nandan
            .iter()
            .all(|s| s["site"]["region_code"] == "451221" && s["site"]["details"]["kind"] == "tailings_pond")
    );
    let hechi = cli.ok(&["site", "list", "--all", "--region", "451200"]);
    assert!(hechi["sites"].as_array().unwrap().len() > nandan.len());

    // Bounds and bad filters, through the API.
    let api = Api::new(&url);
    let admin = api.login("admin", PASSWORD).unwrap();
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("kind=lake", "kind"),
        ("region=12", "region"),
        ("after=x", "after"),
    ] {
        let a = api.get(&format!("/api/v1/sites?{query}"), Some(&admin.access)).unwrap();
        assert_eq!(a.status, 400, "{query}: {:?}", a.body);
        assert_eq!(a.body["field"], field, "{query}");
    }

    // One site: a supervisor in their city, once; not twice, not outside it.
    let pond = SiteId::generate();
    let doc = root.path().join("pond.json");
    std::fs::write(&doc, serde_json::to_vec(&sample::pond(pond)).unwrap()).unwrap();
    let (ok, entry, err) = cli.run("lan", USER_PASSWORD, &["site", "add", doc.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert_eq!(entry["site"]["id"], json!(pond));
    let (ok, _, err) = cli.run("lan", USER_PASSWORD, &["site", "add", doc.to_str().unwrap()]);
    assert!(!ok && err.contains("409") && err.contains("site_exists"), "{err}");
    let lan = api.login("lan", USER_PASSWORD).unwrap();
    let mut guilin = sample::pond(SiteId::generate());
    guilin.region_code = "450300".parse().unwrap();
    let a = api
        .post(
            "/api/v1/sites",
            Some(&lan.access),
            &serde_json::to_value(&guilin).unwrap(),
        )
        .unwrap();
    assert_eq!((a.status, a.code()), (403, "forbidden_scope"), "{:?}", a.body);
    let a = api
        .post("/api/v1/sites", Some(&lan.access), &json!({"id": pond}))
        .unwrap();
    assert_eq!(a.status, 400, "{:?}", a.body);
    let wei = api.login("wei", USER_PASSWORD).unwrap();
    let a = api
        .post(
            "/api/v1/sites",
            Some(&wei.access),
            &serde_json::to_value(sample::pond(SiteId::generate())).unwrap(),
        )
        .unwrap();
    assert_eq!((a.status, a.code()), (403, "role_not_allowed"));
    let a = api
        .post(
            "/api/v1/sites/import",
            Some(&wei.access),
            &json!({"kind": "ponds", "csv": "pond_code\n"}),
        )
        .unwrap();
    assert_eq!((a.status, a.code()), (403, "role_not_allowed"));
    let a = api
        .post(
            "/api/v1/sites/import",
            Some(&admin.access),
            &json!({"kind": "ponds", "csv": ""}),
        )
        .unwrap();
    assert_eq!((a.status, a.code()), (400, "invalid_list"), "{:?}", a.body);
    // Rows ended by a bare CR are rows: the limit of 500 per request holds.
    let example = std::fs::read_to_string(fixture("examples/tailings_ponds_2025.csv")).unwrap();
    let mut lines = example.lines();
    let header = lines.next().unwrap();
    let row = lines.next().unwrap();
    let (_, rest) = row.split_once(',').unwrap();
    let cr_rows: String = std::iter::once(header.to_string())
        .chain((0..600).map(|i| format!("WK451221{:03},{rest}", 400 + i)))
        .collect::<Vec<_>>()
        .join("\r");
    let a = api
        .post(
            "/api/v1/sites/import",
            Some(&admin.access),
            &json!({"kind": "ponds", "csv": cr_rows}),
        )
        .unwrap();
    assert_eq!((a.status, a.body["field"].as_str()), (400, Some("csv")), "{:?}", a.body);
    assert!(
        a.body["message"].as_str().unwrap().contains("at most 500"),
        "{:?}",
        a.body
    );
    // The role is checked before the body: an inspector's malformed body is 403.
    for path in [
        "/api/v1/sites",
        "/api/v1/sites/import",
        "/api/v1/schedule/generate",
        "/api/v1/schedule/regenerate",
    ] {
        let a = api.post(path, Some(&wei.access), &json!({"no": "such field"})).unwrap();
        assert_eq!((a.status, a.code()), (403, "role_not_allowed"), "{path}: {:?}", a.body);
    }

    // Imported sites are records: an inspector's tablet in 南丹县 gets its ponds.
    let http = HttpConfig {
        attempts: 2,
        backoff_initial: Duration::from_millis(20),
        ..HttpConfig::new(&url)
    };
    let mut tablet = Tablet::enrol(&root.path().join("tablet"), http, "wei", USER_PASSWORD, None).unwrap();
    tablet.sync().unwrap();
    let seen: BTreeSet<String> = tablet
        .replica
        .list(RecordKind::Site)
        .unwrap()
        .into_iter()
        .filter_map(|v| match v.record {
            AnyRecord::Site(s) => Some(s.id.to_string()),
            _ => None,
        })
        .collect();
    for s in nandan {
        assert!(seen.contains(s["site"]["id"].as_str().unwrap()), "{s}");
    }
    assert!(seen.contains(&pond.to_string()));
}

/// A server with an admin, and the first pond of the example list (in 南丹县)
/// with the list's header.
fn server_and_first_pond(root: &Path) -> (ServerProcess, Cli, String, String) {
    let server = ServerProcess::start_with(&root.join("server"), &[("FIELDSYNC_ADMIN_PASSWORD", PASSWORD)]).unwrap();
    let cli = Cli { url: server.url("") };
    let text = std::fs::read_to_string(fixture("examples/tailings_ponds_2025.csv")).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().to_string();
    let row = lines.next().unwrap().to_string();
    assert!(row.contains(",河池市,南丹县,"), "{row}");
    (server, cli, header, row)
}

#[test]
fn a_list_that_moves_a_pond_to_another_county_moves_its_records_from_the_old_countys_tablets_to_the_new() {
    let root = tempfile::tempdir().unwrap();
    let (server, cli, header, row) = server_and_first_pond(root.path());
    let url = server.url("");
    cli.ok(&["user", "add", "wei", "--role", "inspector", "--regions", "451221"]);
    cli.ok(&["user", "add", "mo", "--role", "inspector", "--regions", "451226"]);
    let list = root.path().join("ponds.csv");
    std::fs::write(&list, format!("{header}\n{row}\n")).unwrap();
    assert_eq!(
        cli.ok(&["site", "import", "ponds", list.to_str().unwrap()])["created"],
        1
    );

    let http = HttpConfig {
        attempts: 2,
        backoff_initial: Duration::from_millis(20),
        ..HttpConfig::new(&url)
    };
    let mut tablet = Tablet::enrol(&root.path().join("tablet"), http.clone(), "wei", USER_PASSWORD, None).unwrap();
    let mut other = Tablet::enrol(&root.path().join("other"), http, "mo", USER_PASSWORD, None).unwrap();
    tablet.sync().unwrap();
    let sites = tablet.replica.list(RecordKind::Site).unwrap();
    assert_eq!(sites.len(), 1);
    let AnyRecord::Site(pond) = &sites[0].record else {
        panic!("not a site")
    };
    let insp = mobile_schema::ids::InspectionId::generate();
    let device = tablet.replica.identity().device;
    tablet
        .replica
        .create(sample::inspection(insp, pond.id, device).into())
        .unwrap();
    tablet.sync().unwrap();
    assert_eq!(tablet.replica.pending_count(), 0);
    other.sync().unwrap();
    assert!(other.replica.list(RecordKind::Site).unwrap().is_empty());

    // The next list puts the pond in 环江 (451226): outside the inspector's county.
    let moved = row.replacen(",河池市,南丹县,", ",河池市,环江毛南族自治县,", 1);
    std::fs::write(&list, format!("{header}\n{moved}\n")).unwrap();
    let report = cli.ok(&["site", "import", "ponds", list.to_str().unwrap()]);
    assert_eq!(report["updated"], 1, "{report}");
    let report = tablet.sync().unwrap();
    assert!(report.purged >= 2, "{report:?}");
    assert!(tablet.replica.list(RecordKind::Site).unwrap().is_empty());
    assert!(tablet.replica.list(RecordKind::Inspection).unwrap().is_empty());
    // And into the new county's: the pond with its inspection.
    other.sync().unwrap();
    assert_eq!(other.replica.list(RecordKind::Site).unwrap().len(), 1);
    let theirs = other.replica.list(RecordKind::Inspection).unwrap();
    assert_eq!(theirs.len(), 1);
    assert_eq!(theirs[0].record.id(), insp.into());
}

#[test]
fn an_inspection_of_a_pond_the_list_brings_later_reaches_the_countys_other_tablets_when_the_list_arrives() {
    let root = tempfile::tempdir().unwrap();
    let (server, cli, header, row) = server_and_first_pond(root.path());
    let url = server.url("");
    cli.ok(&["user", "add", "wei", "--role", "inspector", "--regions", "451221"]);
    cli.ok(&["user", "add", "lan", "--role", "supervisor", "--regions", "451200"]);
    cli.ok(&["user", "add", "mo", "--role", "inspector", "--regions", "451226"]);
    let code = row.split(',').next().unwrap();

    let http = HttpConfig {
        attempts: 2,
        backoff_initial: Duration::from_millis(20),
        ..HttpConfig::new(&url)
    };
    let mut wei = Tablet::enrol(&root.path().join("wei"), http.clone(), "wei", USER_PASSWORD, None).unwrap();
    let mut lan = Tablet::enrol(&root.path().join("lan"), http.clone(), "lan", USER_PASSWORD, None).unwrap();
    let mut mo = Tablet::enrol(&root.path().join("mo"), http, "mo", USER_PASSWORD, None).unwrap();
    lan.sync().unwrap();

    // wei inspects the pond by its code in this year's list, which the office
    // has not imported yet: the server takes the inspection but has no region
    // to show it in, so only wei sees it.
    let pond = SiteId::from_name(mobile_schema::imports::ponds::POND_ID_NAMESPACE, code);
    let insp = mobile_schema::ids::InspectionId::generate();
    let device = wei.replica.identity().device;
    wei.replica
        .create(sample::inspection(insp, pond, device).into())
        .unwrap();
    let report = wei.sync().unwrap();
    assert_eq!((report.acked, report.refused), (1, 0), "{report:?}");
    lan.sync().unwrap();
    assert!(lan.replica.list(RecordKind::Inspection).unwrap().is_empty());
    // mo, of 环江, takes the pond for one of his county's and inspects it too.
    let mistaken = mobile_schema::ids::InspectionId::generate();
    let device = mo.replica.identity().device;
    mo.replica
        .create(sample::inspection(mistaken, pond, device).into())
        .unwrap();
    assert_eq!(mo.sync().unwrap().acked, 1);

    // The list arrives: the county's supervisor gets the pond and the
    // inspection, although the inspection is older than his cursor.
    let list = root.path().join("ponds.csv");
    std::fs::write(&list, format!("{header}\n{row}\n")).unwrap();
    assert_eq!(
        cli.ok(&["site", "import", "ponds", list.to_str().unwrap()])["created"],
        1
    );
    lan.sync().unwrap();
    assert_eq!(lan.replica.list(RecordKind::Site).unwrap().len(), 1);
    let inspections = |t: &Tablet| {
        let mut ids: Vec<RecordId> = t
            .replica
            .list(RecordKind::Inspection)
            .unwrap()
            .iter()
            .map(|v| v.record.id())
            .collect();
        ids.sort();
        ids
    };
    let mut expected = vec![RecordId::from(insp), mistaken.into()];
    expected.sort();
    assert_eq!(
        inspections(&lan),
        expected,
        "the inspections that waited for their pond"
    );
    // wei, of 南丹 too, gets mo's, and holds his own once; mo's tablet lets
    // his go, as the pond is in a county not his (it stays on the server).
    wei.sync().unwrap();
    assert_eq!(inspections(&wei), expected);
    let report = mo.sync().unwrap();
    assert_eq!(report.purged, 1, "{report:?}");
    assert!(mo.replica.list(RecordKind::Inspection).unwrap().is_empty());
    // Nothing more comes.
    assert_eq!(lan.sync().unwrap().pulled, 0);
    assert_eq!(mo.sync().unwrap().purged, 0);
}
