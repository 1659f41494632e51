#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Every kind of bad input, sent over HTTP to the real server process.
//!
//! One server (with small limits from a TOML file) takes valid pushes, then a
//! push whose changes each get their own outcome, then every request that must
//! be refused as a whole: missing and forged tokens (401 before anything else,
//! even before a huge body is read), malformed JSON, wrong types, invalid
//! UTF-8, unknown record kinds, too deep, too large (plain and as a zstd or
//! gzip bomb), too many changes, bad encodings, bad cursors and limits,
//! unknown routes and methods, bad logins. Each answer is a 4xx whose body is
//! exactly `{code, message, field?}`. Afterwards a pull from 0 returns exactly
//! what the valid pushes made, and the replica's next seq is still free.
//!
//! A second server, whose access tokens live one second, shows an expired
//! token refused the same way.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::Write as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mobile_schema::ids::{DeviceId, InspectionId, SiteId};
use serde_json::{Value, json};
use sync_protocol::wire::PullPage;
use sync_protocol::{RecordState, ReplicaId};
use tests::harness::ServerProcess;
use tests::http::{Request, Response};

const ADMIN_PASSWORD: &str = "bad-input-test-Tp03-password";
const LOGIN: &str = "/api/v1/auth/login";
const REFRESH: &str = "/api/v1/auth/refresh";
const PUSH: &str = "/api/v1/sync/push";
const PULL: &str = "/api/v1/sync/pull";

/// Small limits, so oversize cases cost little.
const MAX_PUSH_BYTES: usize = 512 * 1024;
const MAX_CHANGES: usize = 20;
const MAX_SMALL_BODY: usize = 4096;

fn limits_toml() -> String {
    format!(
        "[limits]\nmax_push_bytes = {MAX_PUSH_BYTES}\nmax_changes_per_push = {MAX_CHANGES}\n\
         max_small_body_bytes = {MAX_SMALL_BODY}\n"
    )
}

// ---------------------------------------------------------------------------
// Helpers

thread_local! {
    /// Mismatches so far: every case runs, and the test reports them all at once.
    static MISMATCHES: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

#[track_caller]
fn mismatch(message: String) {
    let at = std::panic::Location::caller();
    MISMATCHES.with(|m| m.borrow_mut().push(format!("line {}: {message}", at.line())));
}

#[track_caller]
fn check(ok: bool, what: impl std::fmt::Display) {
    if !ok {
        mismatch(what.to_string());
    }
}

/// Fails the test with every mismatch recorded.
fn report() {
    let all = MISMATCHES.with(|m| std::mem::take(&mut *m.borrow_mut()));
    assert!(all.is_empty(), "{} mismatches:\n{}", all.len(), all.join("\n"));
}

/// Checks an error response: status, `code`, `field`, and a JSON body of
/// exactly `{code, message, field?}` with a message for people.
#[track_caller]
fn refused(what: &str, r: &Response, status: u16, code: &str, field: Option<&str>) {
    let ctype = r.header("content-type").unwrap_or_default();
    let got = match r.error() {
        Ok(e) => e,
        Err(e) => {
            return mismatch(format!("{what}: {} {ctype:?}: {e:#}", r.status));
        }
    };
    if r.status != status || got.code != code || got.field.as_deref() != field {
        mismatch(format!(
            "{what}: want {status} {code} {field:?}, got {} {}",
            r.status,
            r.text()
        ));
    } else if !ctype.starts_with("application/json") || got.message.is_empty() {
        mismatch(format!("{what}: content type {ctype:?}, message {:?}", got.message));
    }
}

/// Like [`refused`], whatever the field.
#[track_caller]
fn refused_as(what: &str, r: &Response, status: u16, code: &str) {
    let field = r.error().ok().and_then(|e| e.field);
    refused(what, r, status, code, field.as_deref());
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zstd(bytes: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(bytes, 3).unwrap()
}

/// The highest resident memory of a process so far, in KiB (Linux only).
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn create(seq: u64, kind: &str, id: impl ToString, doc: Value) -> Value {
    json!({"seq": seq, "hlc": [now_ms(), 0], "kind": kind, "record": id.to_string(),
           "op": {"create": {"record": doc}}})
}

fn edit(seq: u64, kind: &str, id: impl ToString, key: &str, value: Value) -> Value {
    json!({"seq": seq, "hlc": [now_ms(), 0], "kind": kind, "record": id.to_string(),
           "op": {"edit": {"units": [{"key": key, "value": value}]}}})
}

fn transition(seq: u64, kind: &str, id: impl ToString, action: &str) -> Value {
    json!({"seq": seq, "hlc": [now_ms(), 0], "kind": kind, "record": id.to_string(),
           "op": {"transition": {"action": action}}})
}

/// An edit that replaces the version the author saw.
fn based_on(mut change: Value, base: &str) -> Value {
    change["op"]["edit"]["units"][0]["bases"] = json!([base]);
    change
}

fn site_doc(id: SiteId) -> Value {
    serde_json::to_value(mobile_schema::sample::pond(id)).unwrap()
}

fn inspection_doc(id: InspectionId, site: SiteId) -> Value {
    serde_json::to_value(mobile_schema::sample::inspection(id, site, DeviceId::generate())).unwrap()
}

fn login_body(username: &str, password: &str, device: DeviceId, replica: Option<ReplicaId>) -> Value {
    let mut device = json!({"id": device.to_string(), "name": "bad-input test"});
    if let Some(r) = replica {
        device["replica"] = json!(r.to_string());
    }
    json!({"username": username, "password": password, "device": device})
}

/// One tablet's view of the server: its token and its next seq.
struct Tablet {
    port: u16,
    token: String,
    login: Value,
    replica: Option<ReplicaId>,
    next_seq: u64,
}

impl Tablet {
    fn log_in(port: u16, device: DeviceId, replica: Option<ReplicaId>) -> Self {
        let r = Request::post(LOGIN)
            .json(&login_body("admin", ADMIN_PASSWORD, device, replica))
            .send(port)
            .unwrap();
        assert_eq!(r.status, 200, "login: {}", r.text());
        let login = r.json().unwrap();
        Self {
            port,
            token: login["access_token"].as_str().unwrap().to_string(),
            login,
            replica,
            next_seq: 1,
        }
    }

    fn seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    fn push_request(&self, body: impl Into<Vec<u8>>) -> Request {
        Request::post(PUSH)
            .bearer(&self.token)
            .header("Content-Type", "application/json")
            .body(body)
    }

    fn push_bytes(&self, body: impl Into<Vec<u8>>) -> Response {
        self.push_request(body).send(self.port).unwrap()
    }

    /// A push that must succeed as a whole; its outcomes.
    fn push(&self, changes: &[Value]) -> Value {
        let r = self.push_bytes(json!({ "changes": changes }).to_string());
        assert_eq!(r.status, 200, "push: {}", r.text());
        r.json().unwrap()
    }

    fn get(&self, path: &str) -> Response {
        Request::get(path).bearer(&self.token).send(self.port).unwrap()
    }

    /// Every record from cursor 0, following `next` page by page.
    fn pull_all(&self, limit: usize) -> (Vec<Value>, String) {
        let mut since = "0".to_string();
        let mut records = Vec::new();
        loop {
            let r = self.get(&format!("{PULL}?since={since}&limit={limit}"));
            assert_eq!(r.status, 200, "pull: {}", r.text());
            let page = r.json().unwrap();
            records.extend(page["records"].as_array().unwrap().iter().cloned());
            since = page["next"].as_str().unwrap().to_string();
            if page["more"] == false {
                return (records, since);
            }
        }
    }
}

#[track_caller]
fn outcome(o: &Value, seq: u64, outcome: &str) {
    if o["seq"] != seq || o["outcome"] != outcome {
        mismatch(format!("seq {seq}: want {outcome}, got {o}"));
    }
}

#[track_caller]
fn refusal(o: &Value, seq: u64, code: &str, field: Option<&str>) {
    let message = o["message"].as_str().unwrap_or_default();
    if o["seq"] != seq
        || o["outcome"] != "refused"
        || o["code"] != code
        || o["field"].as_str() != field
        || message.is_empty()
    {
        mismatch(format!("seq {seq}: want refused {code} {field:?}, got {o}"));
    }
}

// ---------------------------------------------------------------------------
// The one server

#[test]
fn every_bad_request_is_a_json_4xx_and_nothing_is_partially_applied() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_settings(
        dir.path(),
        &limits_toml(),
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let port = server.port;
    let device = DeviceId::generate();
    let replica = ReplicaId::generate();
    let mut tablet = Tablet::log_in(port, device, Some(replica));
    let mut made = BTreeSet::new();

    valid_pushes_plain_gzip_and_zstd(&mut tablet, &mut made);
    each_change_of_a_push_gets_its_own_outcome(&mut tablet, &mut made);

    // From here on nothing may change the store.
    let (before, cursor) = tablet.pull_all(1000);
    let ids: BTreeSet<String> = before.iter().map(|r| r["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, made, "a pull returns exactly the records valid changes made");

    tokens_are_checked_before_anything_else(&tablet, replica, device);
    malformed_and_mistyped_bodies(&tablet);
    oversized_deep_and_too_many(&tablet, server.pid());
    encodings(&tablet);
    pull_cursors_and_limits(&tablet, &cursor, &before);
    routes_and_methods(&tablet);
    logins(&tablet, device);

    let (after, after_cursor) = tablet.pull_all(1000);
    let changed: Vec<&Value> = after.iter().filter(|r| !before.contains(r)).map(|r| &r["id"]).collect();
    check(
        after.len() == before.len() && changed.is_empty() && after_cursor == cursor,
        format!(
            "refused requests changed the store: {} records then {}, cursor {cursor} then {after_cursor}: {changed:?}",
            before.len(),
            after.len()
        ),
    );
    let (paged, _) = tablet.pull_all(1);
    check(paged == before, "pages of one give the same records");

    // The replica's next seq was never consumed by a refused request.
    let seq = tablet.seq();
    let site = SiteId::generate();
    let out = tablet.push(&[create(seq, "site", site, site_doc(site))]);
    outcome(&out["outcomes"][0], seq, "applied");
    assert!(out["outcomes"][0].get("replayed").is_none(), "{out}");
    assert_eq!(out["expected_seq"], seq + 1);
    let (last, _) = tablet.pull_all(1000);
    assert_eq!(last.len(), before.len() + 1);
    assert_eq!(last.last().unwrap()["id"], site.to_string());
    report();
}

fn valid_pushes_plain_gzip_and_zstd(tablet: &mut Tablet, made: &mut BTreeSet<String>) {
    let site = SiteId::generate();
    let seq = tablet.seq();
    let out = tablet.push(&[create(seq, "site", site, site_doc(site))]);
    outcome(&out["outcomes"][0], seq, "applied");
    made.insert(site.to_string());

    // A gzip body, an upper-case `x-gzip` and a zstd body are all taken.
    for encoding in ["gzip", "X-GZIP", "zstd"] {
        let seq = tablet.seq();
        let id = InspectionId::generate();
        let body = json!({"changes": [create(seq, "inspection", id, inspection_doc(id, site))]}).to_string();
        let wire = if encoding == "zstd" {
            zstd(body.as_bytes())
        } else {
            gzip(body.as_bytes())
        };
        let r = tablet
            .push_request(wire)
            .header("Content-Encoding", encoding)
            .send(tablet.port)
            .unwrap();
        assert_eq!(r.status, 200, "{encoding} push: {}", r.text());
        outcome(&r.json().unwrap()["outcomes"][0], seq, "applied");
        made.insert(id.to_string());
    }
}

fn each_change_of_a_push_gets_its_own_outcome(tablet: &mut Tablet, made: &mut BTreeSet<String>) {
    let site = SiteId::generate();
    let insp = InspectionId::generate();
    let bad_insp = InspectionId::generate();
    let far_insp = InspectionId::generate();
    let mut wrong_type = inspection_doc(bad_insp, site);
    wrong_type["conclusion"] = json!(42);
    let mut off_earth = inspection_doc(far_insp, site);
    off_earth["fix"]["lat"] = json!(95.0);
    let s: Vec<u64> = (0..15).map(|_| tablet.seq()).collect();
    // Made-up bases: every base is kept in the record for good, so their
    // number is bounded (a tablet names the one or few live versions it saw).
    let many_bases: Vec<String> = (1..=65).map(|n| format!("{}:{n}", ReplicaId::generate())).collect();
    let mut too_many_bases = edit(s[13], "site", site, "name", json!("尾矿库"));
    too_many_bases["op"]["edit"]["units"][0]["bases"] = json!(many_bases);
    let mut sign_too_much = transition(s[14], "inspection", insp, "sign");
    sign_too_much["op"]["transition"]["versions"] = json!({ "conclusion": many_bases });
    let changes = vec![
        create(s[0], "site", site, site_doc(site)),
        edit(s[1], "site", SiteId::generate(), "name", json!("nowhere")),
        create(s[2], "inspection", bad_insp, wrong_type),
        create(s[3], "inspection", far_insp, off_earth),
        transition(s[4], "site", site, "explode"),
        create(s[5], "site", site, site_doc(site)),
        edit(s[6], "site", site, "no_such_unit", json!(1)),
        edit(s[7], "site", site, "name", json!("x".repeat(300 * 1024))),
        edit(s[8], "site", site, "name", json!(42)),
        create(s[9], "inspection", insp, inspection_doc(insp, site)),
        transition(s[10], "inspection", insp, "approve"),
        based_on(
            edit(s[11], "inspection", insp, "conclusion", json!("渗水点已封堵")),
            &format!("{}:{}", tablet.replica.unwrap(), s[9]),
        ),
        edit(s[12], "site", insp, "name", json!("a site?")),
        too_many_bases,
        sign_too_much,
    ];
    let out = tablet.push(&changes);
    let o = out["outcomes"].as_array().unwrap();
    assert_eq!(o.len(), changes.len(), "{out}");
    outcome(&o[0], s[0], "applied");
    refusal(&o[1], s[1], "unknown_record", None);
    refusal(&o[2], s[2], "invalid_structure", Some("conclusion"));
    refusal(&o[3], s[3], "invalid_record", Some("fix.lat"));
    refusal(&o[4], s[4], "unknown_action", Some("action"));
    refusal(&o[5], s[5], "already_exists", Some("id"));
    refusal(&o[6], s[6], "invalid_structure", Some("no_such_unit"));
    refusal(&o[7], s[7], "too_large", Some("name"));
    refusal(&o[8], s[8], "invalid_structure", Some("name"));
    outcome(&o[9], s[9], "applied");
    refusal(&o[10], s[10], "unknown_action", Some("action"));
    outcome(&o[11], s[11], "applied");
    refusal(&o[12], s[12], "invalid_structure", Some("kind"));
    refusal(&o[13], s[13], "too_large", Some("name.bases"));
    refusal(&o[14], s[14], "too_large", Some("versions"));
    assert_eq!(out["expected_seq"], s[14] + 1);
    made.insert(site.to_string());
    made.insert(insp.to_string());

    // The same push again: every outcome as recorded, refusals included.
    let again = tablet.push(&changes);
    for (first, replay) in o.iter().zip(again["outcomes"].as_array().unwrap()) {
        assert_eq!(replay["replayed"], true, "{replay}");
        let mut replay = replay.clone();
        replay.as_object_mut().unwrap().remove("replayed");
        assert_eq!(&replay, first);
    }

    // A concurrent edit that loses the merge is still typed: a number is no conclusion.
    let seq = tablet.seq();
    let mut stale = edit(seq, "inspection", insp, "conclusion", json!(42));
    stale["hlc"] = json!([1, 0]);
    let out = tablet.push(&[stale]);
    refusal(&out["outcomes"][0], seq, "invalid_structure", Some("conclusion"));

    // Seq 1 again with other content: a fork, not recorded.
    let other = SiteId::generate();
    let out = tablet.push(&[create(1, "site", other, site_doc(other))]);
    refusal(&out["outcomes"][0], 1, "replica_forked", None);

    // A gap after a good change: the good one applies, the gap is refused and
    // says where to resume; nothing of it is recorded.
    let seq = tablet.seq();
    let good = SiteId::generate();
    let out = tablet.push(&[
        create(seq, "site", good, site_doc(good)),
        create(seq + 5, "site", other, site_doc(other)),
    ]);
    outcome(&out["outcomes"][0], seq, "applied");
    refusal(&out["outcomes"][1], seq + 5, "seq_gap", None);
    assert_eq!(out["expected_seq"], seq + 1);
    made.insert(good.to_string());

    // Refused changes left no trace in the records they named.
    let (records, _) = tablet.pull_all(1000);
    let live = |id: String, unit: &str| -> Vec<Value> {
        let record = records.iter().find(|r| r["id"] == id).expect("the record");
        // The compact form: `[index, value, …]`, or `{"l": [index, value, …], "s": […]}`.
        let unit = &record["units"][unit];
        let live = unit
            .as_array()
            .or_else(|| unit["l"].as_array())
            .cloned()
            .unwrap_or_default();
        live.iter().skip(1).step_by(2).cloned().collect()
    };
    let name = mobile_schema::sample::pond(site).name;
    check(
        live(site.to_string(), "name") == [json!(name)],
        format!("the site's name: {:?}", live(site.to_string(), "name")),
    );
    check(
        live(insp.to_string(), "conclusion") == [json!("渗水点已封堵")],
        format!("the conclusion: {:?}", live(insp.to_string(), "conclusion")),
    );
}

fn tokens_are_checked_before_anything_else(tablet: &Tablet, replica: ReplicaId, device: DeviceId) {
    let port = tablet.port;
    let seq = tablet.next_seq;
    let site = SiteId::generate();
    let valid = json!({"changes": [create(seq, "site", site, site_doc(site))]}).to_string();
    let malformed = "{\"changes\": [";
    let claims = |exp: u64| {
        json!({"sub": tablet.login["user"]["id"], "dev": device.to_string(), "rep": replica.to_string(),
               "iat": now_ms() / 1000, "exp": exp})
    };
    let exp = now_ms() / 1000 + 3600;
    let kid = jsonwebtoken::decode_header(&tablet.token).unwrap().kid.unwrap();

    let sign = |alg: Algorithm, kid: Option<&str>, secret: &[u8]| {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_string);
        jsonwebtoken::encode(&header, &claims(exp), &EncodingKey::from_secret(secret)).unwrap()
    };
    let parts: Vec<&str> = tablet.token.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64url(claims(exp + 86_400).to_string().as_bytes()),
        parts[2]
    );
    let none = format!(
        "{}.{}.",
        b64url(json!({"alg": "none", "typ": "JWT", "kid": kid}).to_string().as_bytes()),
        b64url(claims(exp).to_string().as_bytes())
    );
    let none_signed = format!("{}{}", none, parts[2]);
    let wrong_key = sign(Algorithm::HS256, Some(&kid), b"not the server's secret, not even close");
    let wrong_kid = sign(Algorithm::HS256, Some("0011223344556677"), b"another secret");
    let hs512 = sign(Algorithm::HS512, Some(&kid), b"not the server's secret, not even close");

    #[rustfmt::skip]
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("no Authorization", None, "missing_token"),
        ("Basic credentials", Some(b"Basic YWRtaW46eA==".to_vec()), "missing_token"),
        ("Bearer and nothing", Some(b"Bearer".to_vec()), "missing_token"),
        ("bytes that are not text", Some(b"Bearer \xff\xfe\x80".to_vec()), "missing_token"),
        ("garbage token", Some(b"Bearer not.a.jwt".to_vec()), "invalid_token"),
        ("one word", Some(b"Bearer garbage".to_vec()), "invalid_token"),
        ("wrong key", Some(format!("Bearer {wrong_key}").into_bytes()), "invalid_token"),
        ("unknown key id", Some(format!("Bearer {wrong_kid}").into_bytes()), "invalid_token"),
        ("HS512", Some(format!("Bearer {hs512}").into_bytes()), "invalid_token"),
        ("alg none", Some(format!("Bearer {none}").into_bytes()), "invalid_token"),
        ("alg none, signature kept", Some(format!("Bearer {none_signed}").into_bytes()), "invalid_token"),
        ("tampered claims", Some(format!("Bearer {tampered}").into_bytes()), "invalid_token"),
    ];
    for (what, authorization, code) in &cases {
        for (body_what, body) in [
            ("valid body", valid.as_bytes()),
            ("malformed body", malformed.as_bytes()),
        ] {
            let mut req = Request::post(PUSH).body(body);
            if let Some(a) = authorization {
                req = req.header("Authorization", a);
            }
            refused(
                &format!("push, {what}, {body_what}"),
                &req.send(port).unwrap(),
                401,
                code,
                None,
            );
        }
        // Not before a bad encoding or a bad cursor either.
        let mut req = Request::post(PUSH).header("Content-Encoding", "br").body("x");
        let mut pull = Request::get(&format!("{PULL}?since=nonsense&limit=0"));
        if let Some(a) = authorization {
            req = req.header("Authorization", a);
            pull = pull.header("Authorization", a);
        }
        refused(&format!("push, {what}, br"), &req.send(port).unwrap(), 401, code, None);
        refused(&format!("pull, {what}"), &pull.send(port).unwrap(), 401, code, None);
    }

    // A gigabyte announced, ten bytes sent: the 401 comes without waiting for the rest.
    let started = Instant::now();
    let r = Request::post(PUSH)
        .declare_length(1 << 30)
        .body("{\"changes\"")
        .send(port)
        .unwrap();
    refused("huge body, no token", &r, 401, "missing_token", None);
    check(
        started.elapsed() < Duration::from_secs(5),
        format!("answered after {:?}", started.elapsed()),
    );

    // The scheme is case-insensitive (RFC 9110 §11.1).
    let r = Request::get(&format!("{PULL}?since=0"))
        .header("Authorization", format!("bearer {}", tablet.token))
        .send(port)
        .unwrap();
    check(r.status == 200, format!("lower-case bearer: {}", r.text()));

    // A token bound to no replica may pull but not push.
    let unbound = Tablet::log_in(port, DeviceId::generate(), None);
    let r = unbound.push_bytes(valid.clone());
    refused("push without a replica", &r, 400, "replica_required", None);
    check(
        unbound.get(&format!("{PULL}?since=0")).status == 200,
        "an unbound token pulls",
    );
}

fn malformed_and_mistyped_bodies(tablet: &Tablet) {
    let seq = tablet.next_seq;
    let site = SiteId::generate();
    let good = create(seq, "site", site, site_doc(site));
    let with = |bad: Value| json!({"changes": [good.clone(), bad]}).to_string();
    let mut wrong_seq = good.clone();
    wrong_seq["seq"] = json!("two");
    let mut negative_seq = good.clone();
    negative_seq["seq"] = json!(-2);
    let mut short_hlc = good.clone();
    short_hlc["hlc"] = json!([1]);
    let mut bad_record = good.clone();
    bad_record["record"] = json!("not-a-uuid");
    let mut spaceship = good.clone();
    spaceship["kind"] = json!("spaceship");
    let mut no_kind = good.clone();
    no_kind.as_object_mut().unwrap().remove("kind");
    let mut delete = good.clone();
    delete["op"] = json!({"delete": {}});
    let mut action_number = transition(seq + 1, "site", site, "x");
    action_number["op"]["transition"]["action"] = json!(7);
    let mut units_object = edit(seq + 1, "site", site, "name", json!("n"));
    units_object["op"]["edit"]["units"] = json!({"name": "n"});

    let beyond_u64 = format!("{{\"changes\": [{good}, {{\"seq\": 18446744073709551616}}]}}");
    #[rustfmt::skip]
    let cases: Vec<(&str, Vec<u8>, &str, Option<&str>)> = vec![
        ("empty body", Vec::new(), "malformed_json", None),
        ("not JSON", b"changes=1".to_vec(), "malformed_json", None),
        ("cut short", b"{\"changes\": [".to_vec(), "malformed_json", Some("changes")),
        ("trailing garbage", b"{\"changes\": []} x".to_vec(), "malformed_json", None),
        ("two documents", b"{\"changes\": []}{\"changes\": []}".to_vec(), "malformed_json", None),
        ("an array", b"[]".to_vec(), "invalid_field", None),
        ("no changes", b"{}".to_vec(), "invalid_field", Some("changes")),
        ("changes a string", b"{\"changes\": \"all\"}".to_vec(), "invalid_field", Some("changes")),
        ("changes twice", b"{\"changes\": [], \"changes\": []}".to_vec(), "invalid_field", Some("changes")),
        ("seq a string", with(wrong_seq).into_bytes(), "invalid_field", Some("changes[1].seq")),
        ("seq negative", with(negative_seq).into_bytes(), "invalid_field", Some("changes[1].seq")),
        ("hlc short", with(short_hlc).into_bytes(), "invalid_field", Some("changes[1].hlc")),
        ("record not a uuid", with(bad_record).into_bytes(), "invalid_field", Some("changes[1].record")),
        ("unknown kind", with(spaceship).into_bytes(), "invalid_field", Some("changes[1].kind")),
        ("no kind", with(no_kind).into_bytes(), "invalid_field", Some("changes[1].kind")),
        ("unknown op", with(delete).into_bytes(), "invalid_field", Some("changes[1].op")),
        ("action a number", with(action_number).into_bytes(), "invalid_field", Some("changes[1].op.transition.action")),
        ("units an object", with(units_object).into_bytes(), "invalid_field", Some("changes[1].op.edit.units")),
        ("seq beyond u64", beyond_u64.into_bytes(), "invalid_field", Some("changes[1].seq")),
    ];
    for (what, body, code, field) in cases {
        refused(what, &tablet.push_bytes(body), 400, code, field);
    }

    // Invalid UTF-8 inside strings: in a typed field, inside a record document
    // (kept as raw JSON), and in an object key.
    let text = with(transition(seq + 1, "site", site, "MARK"));
    let bad_action = splice(text.as_bytes(), b"MARK", b"\xff\xfe");
    refused(
        "invalid UTF-8 in an action",
        &tablet.push_bytes(bad_action),
        400,
        "malformed_json",
        Some("changes[1].op.transition.action"),
    );
    let document = splice(
        json!({"changes": [good.clone()]}).to_string().as_bytes(),
        "大厂".as_bytes(),
        b"\xe5\xa4",
    );
    let r = tablet.push_bytes(document);
    refused_as("invalid UTF-8 in a document", &r, 400, "malformed_json");
    let key = splice(
        json!({"changes": [good.clone()]}).to_string().as_bytes(),
        b"\"operator\"",
        b"\"op\xc0rator\"",
    );
    let r = tablet.push_bytes(key);
    refused_as("invalid UTF-8 in a key", &r, 400, "malformed_json");
    // A lone surrogate escape in a typed string is refused like bad bytes.
    let surrogate = with(transition(seq + 1, "site", site, "MARK")).replace("MARK", "\\ud800");
    let r = tablet.push_bytes(surrogate);
    refused_as("lone surrogate", &r, 400, "malformed_json");

    // Fields the wire does not know are ignored (newer clients may add some);
    // an empty push is a no-op.
    let r = tablet.push_bytes(r#"{"changes": [], "device_note": {"a": [1, 2]}}"#);
    let reply = r.json().unwrap_or_default();
    check(
        r.status == 200 && reply["outcomes"] == json!([]) && reply["expected_seq"] == seq,
        format!("an empty push with an unknown field: {}", r.text()),
    );
}

/// `haystack` with the first `from` replaced by `to`.
fn splice(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = haystack
        .windows(from.len())
        .position(|w| w == from)
        .expect("the text to replace");
    [&haystack[..at], to, &haystack[at + from.len()..]].concat()
}

fn oversized_deep_and_too_many(tablet: &Tablet, pid: u32) {
    let seq = tablet.next_seq;
    let site = SiteId::generate();
    let good = create(seq, "site", site, site_doc(site));
    // A push of these changes with an ignored member padding it to `size` bytes.
    let padded_to = |changes: &[Value], size: usize| {
        let mut body = json!({"changes": changes, "pad": ""}).to_string().into_bytes();
        body.truncate(body.len() - 2);
        body.resize(size - 2, b'a');
        body.extend_from_slice(b"\"}");
        body
    };
    let one = std::slice::from_ref(&good);

    // A body of exactly the limit is read; one byte over is 413.
    let r = tablet.push_bytes(padded_to(&[], MAX_PUSH_BYTES));
    check(
        r.status == 200,
        format!("a body of exactly the limit: {} {}", r.status, r.text()),
    );
    let over = padded_to(one, MAX_PUSH_BYTES + 1);
    refused(
        "one byte over",
        &tablet.push_bytes(over.clone()),
        413,
        "too_large",
        None,
    );
    refused(
        "two megabytes",
        &tablet.push_bytes(padded_to(one, 2 << 20)),
        413,
        "too_large",
        None,
    );
    // Without a length announced, reading stops at the limit.
    for (what, body) in [
        ("one byte over, chunked", over.clone()),
        ("two megabytes, chunked", padded_to(one, 2 << 20)),
    ] {
        match tablet.push_request(body).chunked().send(tablet.port) {
            Ok(r) => refused(what, &r, 413, "too_large", None),
            Err(e) => mismatch(format!("{what}: no answer: {e:#}")),
        }
    }
    let r = tablet
        .push_request(padded_to(&[], MAX_PUSH_BYTES))
        .chunked()
        .send(tablet.port)
        .unwrap();
    check(
        r.status == 200,
        format!("exactly the limit, chunked: {} {}", r.status, r.text()),
    );
    // The limit is also checked on the compressed size.
    let noise: Vec<u8> = (0..MAX_PUSH_BYTES as u32 + 10)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let r = tablet
        .push_request(noise)
        .header("Content-Encoding", "gzip")
        .send(tablet.port)
        .unwrap();
    refused("compressed bytes over the limit", &r, 413, "too_large", None);

    // Announcing more than the limit is refused before a byte of it is read.
    let started = Instant::now();
    match tablet
        .push_request("{\"changes\"")
        .declare_length(1 << 30)
        .send(tablet.port)
    {
        Ok(r) => refused("a gigabyte announced", &r, 413, "too_large", None),
        Err(e) => mismatch(format!("a gigabyte announced: no answer: {e:#}")),
    }
    check(
        started.elapsed() < Duration::from_secs(5),
        format!("answered after {:?}", started.elapsed()),
    );

    // Compressed bodies are limited after decompression: bombs of a few KiB
    // that inflate to 256 MiB are refused, and the server does not balloon.
    let bomb_text = padded_to(one, 256 << 20);
    let peak_before = peak_rss_kib(pid);
    for (encoding, wire) in [
        ("zstd", zstd(&bomb_text)),
        ("gzip", gzip(&padded_to(one, MAX_PUSH_BYTES * 40))),
    ] {
        assert!(wire.len() < MAX_PUSH_BYTES, "{encoding} bomb is {} bytes", wire.len());
        let r = tablet
            .push_request(wire)
            .header("Content-Encoding", encoding)
            .send(tablet.port)
            .unwrap();
        refused(&format!("{encoding} bomb"), &r, 413, "too_large", None);
        // Just over the limit once inflated.
        let r = tablet
            .push_request(if encoding == "zstd" { zstd(&over) } else { gzip(&over) })
            .header("Content-Encoding", encoding)
            .send(tablet.port)
            .unwrap();
        refused(&format!("{encoding}, one byte over"), &r, 413, "too_large", None);
    }
    if let (Some(before), Some(after)) = (peak_before, peak_rss_kib(pid)) {
        check(
            after.saturating_sub(before) < 64 * 1024,
            format!("peak RSS grew from {before} KiB to {after} KiB"),
        );
    }

    // Too deep: inside a record document (raw JSON) and in an ignored field.
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let mut doc = site_doc(site);
    doc["name"] = json!("DEEP");
    let body = json!({"changes": [good.clone(), create(seq + 1, "site", SiteId::generate(), doc)]})
        .to_string()
        .replace("\"DEEP\"", &deep(100));
    refused("deep document", &tablet.push_bytes(body), 400, "too_deep", None);
    let body = format!("{{\"changes\": [], \"x\": {}}}", deep(5000));
    refused("deep extra field", &tablet.push_bytes(body), 400, "too_deep", None);
    // Deep but allowed nesting is fine as far as the wire goes.
    let body = format!("{{\"changes\": [], \"x\": {}}}", deep(40));
    check(tablet.push_bytes(body).status == 200, "40 levels deep is allowed");

    // Too many changes in one push, all valid.
    let many: Vec<Value> = (0..=MAX_CHANGES as u64)
        .map(|i| {
            let id = SiteId::generate();
            create(seq + i, "site", id, site_doc(id))
        })
        .collect();
    refused(
        "too many changes",
        &tablet.push_bytes(json!({ "changes": many }).to_string()),
        413,
        "too_large",
        Some("changes"),
    );
}

fn encodings(tablet: &Tablet) {
    let seq = tablet.next_seq;
    let site = SiteId::generate();
    let body = json!({"changes": [create(seq, "site", site, site_doc(site))]}).to_string();
    let send = |encoding: &str, wire: Vec<u8>| {
        tablet
            .push_request(wire)
            .header("Content-Encoding", encoding)
            .send(tablet.port)
            .unwrap()
    };
    let gz = gzip(body.as_bytes());
    let zs = zstd(body.as_bytes());
    #[rustfmt::skip]
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("gzip of nothing gzip", "gzip", b"\x1f\x8b\x08\x00garbage garbage garbage".to_vec()),
        ("zstd of nothing zstd", "zstd", b"\x28\xb5\x2f\xfdgarbage garbage garbage".to_vec()),
        ("plain JSON said to be gzip", "gzip", body.clone().into_bytes()),
        ("plain JSON said to be zstd", "zstd", body.clone().into_bytes()),
        ("gzip cut short", "gzip", gz[..gz.len() / 2].to_vec()),
        ("zstd cut short", "zstd", zs[..zs.len() / 2].to_vec()),
        ("gzip without its trailer", "gzip", gz[..gz.len() - 4].to_vec()),
        ("zstd said to be gzip", "gzip", zs.clone()),
        ("gzip said to be zstd", "zstd", gz.clone()),
    ];
    for (what, encoding, wire) in cases {
        refused(what, &send(encoding, wire), 400, "bad_encoding", None);
    }
    for encoding in ["br", "deflate", "gzip, zstd", "compress", "gzip;q=1"] {
        refused(
            &format!("Content-Encoding {encoding:?}"),
            &send(encoding, gz.clone()),
            415,
            "unsupported_encoding",
            None,
        );
    }
    refused(
        "Content-Encoding of raw bytes",
        &tablet
            .push_request(gz.clone())
            .header("Content-Encoding", b"gz\xffip")
            .send(tablet.port)
            .unwrap(),
        415,
        "unsupported_encoding",
        None,
    );

    // Responses are compressed when asked, errors included.
    let plain = tablet.get(&format!("{PULL}?since=0"));
    check(
        plain.status == 200 && plain.header("content-encoding").is_none(),
        "a plain pull",
    );
    let records = |r: &Response| r.json().unwrap()["records"].clone();
    let pull = |query: &str, accept: &str| {
        Request::get(&format!("{PULL}?{query}"))
            .bearer(&tablet.token)
            .header("Accept-Encoding", accept)
            .send(tablet.port)
            .unwrap()
    };
    for encoding in ["gzip", "zstd"] {
        let r = pull("since=0", encoding);
        check(
            r.status == 200 && r.header("content-encoding") == Some(encoding),
            format!("{encoding} pull: {} {:?}", r.status, r.headers),
        );
        check(r.wire_body.len() < r.body.len() / 2, format!("{encoding} compresses"));
        check(
            records(&r) == records(&plain),
            format!("{encoding} pull decodes to the same"),
        );
        let r = Request::post(PUSH)
            .bearer(&tablet.token)
            .header("Accept-Encoding", encoding)
            .body("{")
            .send(tablet.port)
            .unwrap();
        refused(&format!("{encoding} error"), &r, 400, "malformed_json", None);
    }
    let r = pull("since=0", "br");
    check(
        r.status == 200 && r.header("content-encoding").is_none(),
        "nothing the client cannot read",
    );
    // Pull pages are compressed by the handler, not the middleware: a client
    // that refuses zstd by `q=0` gets what it does take.
    let r = pull("since=0", "zstd;q=0, gzip");
    check(
        r.status == 200 && r.header("content-encoding") == Some("gzip") && records(&r) == records(&plain),
        format!("zstd refused by q=0: {} {:?}", r.status, r.headers),
    );
    // `layout=columns`: the same records, transposed.
    let r = pull("since=0&layout=columns", "zstd");
    let page: Option<PullPage> = serde_json::from_slice(&r.body).ok();
    check(
        r.status == 200
            && r.header("content-encoding") == Some("zstd")
            && page
                .as_ref()
                .is_some_and(|p| p.records.is_none() && p.columns.is_some()),
        format!("a pull in columns: {} {:?}", r.status, r.headers),
    );
    let rows: Option<Vec<RecordState>> = serde_json::from_value(records(&plain)).ok();
    let from_columns = page.and_then(|p| p.into_response().ok()).map(|p| p.records);
    check(
        rows.as_ref().is_some_and(|r| !r.is_empty()) && from_columns == rows,
        "columns decode to the records of a plain pull",
    );
}

fn pull_cursors_and_limits(tablet: &Tablet, cursor: &str, before: &[Value]) {
    // `SEQ.TAG`: the commit seq and the tag of the puller's scope.
    let next: u64 = cursor.split('.').next().unwrap().parse().unwrap();
    #[rustfmt::skip]
    let cases: Vec<(String, u16, &str, Option<&str>)> = vec![
        ("since=abc".into(), 400, "invalid_cursor", Some("since")),
        ("since=-1".into(), 400, "invalid_cursor", Some("since")),
        ("since=1.5".into(), 400, "invalid_cursor", Some("since")),
        ("since=%20".into(), 400, "invalid_cursor", Some("since")),
        ("since=18446744073709551616".into(), 400, "invalid_cursor", Some("since")),
        ("since=%FF".into(), 400, "invalid_cursor", Some("since")),
        (format!("since={}", next + 1), 410, "cursor_expired", None),
        (format!("since={}", u64::MAX), 410, "cursor_expired", None),
        ("since=0&limit=0".into(), 400, "invalid_field", Some("limit")),
        ("since=0&limit=-5".into(), 400, "invalid_field", Some("limit")),
        ("since=0&limit=ten".into(), 400, "invalid_field", Some("limit")),
        ("since=0&limit=".into(), 400, "invalid_field", Some("limit")),
        ("since=0&since=1".into(), 400, "invalid_query", None),
        ("since=0&layout=rows".into(), 400, "invalid_field", Some("layout")),
        ("since=0&layout=".into(), 400, "invalid_field", Some("layout")),
        ("since=0&layout=COLUMNS".into(), 400, "invalid_field", Some("layout")),
    ];
    for (query, status, code, field) in cases {
        refused(
            &format!("pull ?{query}"),
            &tablet.get(&format!("{PULL}?{query}")),
            status,
            code,
            field,
        );
    }
    // A bad cursor is refused before a bad limit is looked at; both are 400.
    let r = tablet.get(&format!("{PULL}?since=x&limit=0"));
    refused("bad cursor and limit", &r, 400, "invalid_cursor", Some("since"));

    // The current cursor is not expired: it has nothing new.
    let r = tablet.get(&format!("{PULL}?since={next}"));
    check(
        r.status == 200 && r.json().unwrap_or_default()["records"] == json!([]),
        format!("the current cursor: {}", r.text()),
    );
    // A huge limit is capped, not refused; unknown parameters are ignored.
    let r = tablet.get(&format!("{PULL}?since=0&limit=1000000000&shape=round"));
    check(
        r.status == 200 && r.json().unwrap_or_default()["records"] == json!(before),
        format!("a huge limit: {}", r.status),
    );
    let r = tablet.get(PULL);
    check(r.status == 200, format!("no since is from the start: {}", r.text()));
}

fn routes_and_methods(tablet: &Tablet) {
    let port = tablet.port;
    for path in [
        "/",
        "/api/v1/sync",
        "/api/v1/sync/push/extra",
        "/api/v2/sync/pull",
        "/%ff",
    ] {
        let r = Request::get(path).bearer(&tablet.token).send(port).unwrap();
        refused(&format!("GET {path}"), &r, 404, "not_found", None);
    }
    for (method, path, allow) in [
        ("GET", PUSH, "POST"),
        ("PUT", PUSH, "POST"),
        ("POST", PULL, "GET"),
        ("DELETE", PULL, "GET"),
        ("GET", LOGIN, "POST"),
        ("GET", REFRESH, "POST"),
        ("POST", "/healthz", "GET"),
    ] {
        let r = Request::new(method, path)
            .bearer(&tablet.token)
            .body("{}")
            .send(port)
            .unwrap();
        refused(&format!("{method} {path}"), &r, 405, "method_not_allowed", None);
        check(
            r.header("allow") == Some(allow),
            format!("{method} {path}: Allow {:?}", r.header("allow")),
        );
    }
}

/// What, body, status, code, field.
type LoginCase = (&'static str, Vec<u8>, u16, &'static str, Option<&'static str>);

fn logins(tablet: &Tablet, device: DeviceId) {
    let port = tablet.port;
    let login = |body: Vec<u8>| Request::post(LOGIN).body(body).send(port).unwrap();
    let as_bytes = |v: Value| v.to_string().into_bytes();
    let good = login_body("admin", ADMIN_PASSWORD, device, None);

    refused(
        "wrong password",
        &login(as_bytes(login_body("admin", "guess", device, None))),
        401,
        "bad_credentials",
        None,
    );
    refused(
        "unknown user",
        &login(as_bytes(login_body("nobody", ADMIN_PASSWORD, device, None))),
        401,
        "bad_credentials",
        None,
    );

    let mut no_device = good.clone();
    no_device.as_object_mut().unwrap().remove("device");
    let mut device_id = good.clone();
    device_id["device"]["id"] = json!("tablet-7");
    let mut no_device_id = good.clone();
    no_device_id["device"].as_object_mut().unwrap().remove("id");
    let mut username_number = good.clone();
    username_number["username"] = json!(7);
    let mut long_name = good.clone();
    long_name["device"]["name"] = json!("n".repeat(300));
    let mut huge = good.clone();
    huge["device"]["app_version"] = json!("v".repeat(MAX_SMALL_BODY));
    let bad_password = splice(&as_bytes(good.clone()), ADMIN_PASSWORD.as_bytes(), b"\xff");
    #[rustfmt::skip]
    let cases: Vec<LoginCase> = vec![
        ("empty", Vec::new(), 400, "malformed_json", None),
        ("cut short", b"{\"username\": \"admin\"".to_vec(), 400, "malformed_json", None),
        ("no device", as_bytes(no_device), 400, "invalid_field", Some("device")),
        ("device id", as_bytes(device_id), 400, "invalid_field", Some("device.id")),
        ("no device id", as_bytes(no_device_id), 400, "invalid_field", Some("device.id")),
        ("username a number", as_bytes(username_number), 400, "invalid_field", Some("username")),
        ("long device name", as_bytes(long_name), 400, "invalid_field", Some("device.name")),
        ("too large", as_bytes(huge), 413, "too_large", None),
        ("invalid UTF-8 in the password", bad_password, 400, "malformed_json", Some("password")),
    ];
    for (what, body, status, code, field) in cases {
        refused(&format!("login, {what}"), &login(body), status, code, field);
    }
    let r = Request::post(LOGIN)
        .header("Content-Encoding", "br")
        .body(as_bytes(good.clone()))
        .send(port)
        .unwrap();
    refused("login, br", &r, 415, "unsupported_encoding", None);

    // Refresh tokens: unknown, malformed.
    let refresh = |body: &str| Request::post(REFRESH).body(body).send(port).unwrap();
    refused(
        "refresh, unknown token",
        &refresh(r#"{"refresh_token": "made-up"}"#),
        401,
        "invalid_token",
        None,
    );
    refused(
        "refresh, replica not a uuid",
        &refresh(r#"{"refresh_token": "made-up", "replica": 5}"#),
        400,
        "invalid_field",
        Some("replica"),
    );
    refused("refresh, empty", &refresh(""), 400, "malformed_json", None);
}

// ---------------------------------------------------------------------------
// A second server whose tokens live one second

#[test]
fn an_expired_token_is_refused_before_the_body_and_a_refresh_renews_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start_with_settings(
        dir.path(),
        "access_token_ttl_s = 1\n",
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
    )
    .unwrap();
    let mut tablet = Tablet::log_in(server.port, DeviceId::generate(), Some(ReplicaId::generate()));
    assert_eq!(tablet.login["expires_in"], 1);
    assert_eq!(tablet.get(&format!("{PULL}?since=0")).status, 200, "fresh token");

    // Within about two seconds the token expires (whole seconds, no leeway).
    let deadline = Instant::now() + Duration::from_secs(5);
    let expired = loop {
        let r = tablet.get(&format!("{PULL}?since=0"));
        if r.status != 200 || Instant::now() > deadline {
            break r;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    refused("expired token, pull", &expired, 401, "token_expired", None);
    let seq = tablet.seq();
    let site = SiteId::generate();
    for (what, body) in [
        (
            "valid",
            json!({"changes": [create(seq, "site", site, site_doc(site))]}).to_string(),
        ),
        ("malformed", "{\"changes\": [".to_string()),
    ] {
        refused(
            &format!("expired token, {what} push"),
            &tablet.push_bytes(body),
            401,
            "token_expired",
            None,
        );
    }

    // The refresh token still works and the new access token pushes.
    let r = Request::post(REFRESH)
        .json(&json!({"refresh_token": tablet.login["refresh_token"]}))
        .send(server.port)
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    tablet.token = r.json().unwrap()["access_token"].as_str().unwrap().to_string();
    let out = tablet.push(&[create(seq, "site", site, site_doc(site))]);
    outcome(&out["outcomes"][0], seq, "applied");
    report();
}
