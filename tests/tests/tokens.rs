#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Accounts and tokens against the real server: forged and expired access
//! tokens, refresh rotation with a lost reply and its grace window, reuse after
//! the window (theft detection), revoked devices (a real replica keeps its
//! unsynced edits), disabled users, role changes taking effect at once, login
//! rate limits, and the admin API and CLI.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mobile_schema::ids::{DeviceId, InspectionId, RecordId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use replica::{HttpConfig, ReplicaError, TransportError};
use serde_json::{Value, json};
use tests::api::{Api, Tokens};
use tests::device::DeviceCli;
use tests::harness::{ServerProcess, run_fieldsync};
use tests::proxy::LossyProxy;
use tests::tablet::Tablet;

const ADMIN_PASSWORD: &str = "tokens-test-Qw81-password";
const WEI_PASSWORD: &str = "wei-inspects-ponds-77";

/// A server over a fresh folder, with a config file holding `toml`.
fn server(root: &Path, toml: &str) -> ServerProcess {
    let config = root.join("fieldsync.toml");
    std::fs::write(&config, toml).unwrap();
    ServerProcess::start_with_args(
        &root.join("store"),
        &[("FIELDSYNC_ADMIN_PASSWORD", ADMIN_PASSWORD)],
        &["--config", config.to_str().unwrap()],
    )
    .unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

/// A token's header and claims, read without checking anything.
fn parts(token: &str) -> (Value, Value) {
    let mut it = token.split('.');
    let mut next = || serde_json::from_slice(&URL_SAFE_NO_PAD.decode(it.next().unwrap()).unwrap()).unwrap();
    (next(), next())
}

fn hs(alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: &Value, key: &[u8]) -> String {
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_secret(key)).unwrap()
}

#[test]
fn forged_tokens_are_refused_with_401_before_any_other_check() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    assert_eq!(api.get("/api/v1/admin/users", Some(&admin.access)).unwrap().status, 200);

    let (header, claims) = parts(&admin.access);
    assert_eq!(header["alg"], "HS256");
    let kid = header["kid"].as_str().unwrap();
    // Role and scope are never in the token.
    assert!(
        claims.get("role").is_none() && claims.get("regions").is_none(),
        "{claims}"
    );

    let signature = admin.access.rsplit('.').next().unwrap();
    let forged = [
        (
            "wrong key",
            hs(
                jsonwebtoken::Algorithm::HS256,
                Some(kid),
                &claims,
                b"not the server's key",
            ),
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
                b64(&claims)
            ),
        ),
        (
            "alg none with the real signature",
            format!(
                "{}.{}.{signature}",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
                b64(&claims)
            ),
        ),
        (
            "HS512",
            hs(
                jsonwebtoken::Algorithm::HS512,
                Some(kid),
                &claims,
                b"not the server's key",
            ),
        ),
        (
            "RS256 header",
            format!(
                "{}.{}.{signature}",
                b64(&json!({"alg": "RS256", "typ": "JWT", "kid": kid})),
                b64(&claims)
            ),
        ),
        (
            "unknown kid",
            hs(jsonwebtoken::Algorithm::HS256, Some("0123456789abcdef"), &claims, b"k"),
        ),
        ("no kid", hs(jsonwebtoken::Algorithm::HS256, None, &claims, b"k")),
        (
            "claims changed under the real signature",
            format!(
                "{}.{}.{signature}",
                b64(&header),
                b64(
                    &json!({"sub": claims["sub"], "dev": claims["dev"], "gen": 0, "iat": claims["iat"], "exp": claims["exp"].as_u64().unwrap() + 3600})
                )
            ),
        ),
        ("not a JWT", "garbage".to_string()),
    ];
    for (what, token) in &forged {
        // An admin route: 401, not 403 or 200.
        let a = api.get("/api/v1/admin/users", Some(token)).unwrap();
        assert_eq!(a.status, 401, "{what}: {:?}", a.body);
        assert_eq!(a.code(), "invalid_token", "{what}: {:?}", a.body);
        assert!(a.body["message"].is_string(), "{what}");
        // A push with a body that is not even JSON: 401 before 400.
        let push = api
            .send("POST", "/api/v1/sync/push", Some(token), Some(&json!("not a push")))
            .unwrap();
        assert_eq!(push.status, 401, "{what}: {:?}", push.body);
    }
    let why = |i: usize| {
        api.get("/api/v1/admin/users", Some(&forged[i].1)).unwrap().body["message"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(why(0).contains("signature"), "{}", why(0));
    assert!(why(3).contains("algorithm"), "{}", why(3));
    assert!(why(5).contains("key id"), "{}", why(5));

    let none = api.get("/api/v1/admin/users", None).unwrap();
    assert_eq!((none.status, none.code()), (401, "missing_token"));
    let basic = api.get("/api/v1/admin/users", Some("")).unwrap();
    assert_eq!(basic.status, 401);
    // The genuine token still works.
    assert_eq!(api.get("/api/v1/admin/users", Some(&admin.access)).unwrap().status, 200);
}

#[test]
fn an_expired_access_token_is_refused_and_a_refresh_replaces_it() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "access_token_ttl_s = 2\n");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    let (_, claims) = parts(&admin.access);
    assert_eq!(claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(), 2);
    // `iat` is whole seconds and there is no leeway: the token lives 2 to 3 s.
    std::thread::sleep(Duration::from_millis(3_200));
    let a = api.get("/api/v1/admin/users", Some(&admin.access)).unwrap();
    assert_eq!((a.status, a.code()), (401, "token_expired"), "{:?}", a.body);
    let fresh = Tokens::from_body(&api.refresh(&admin.refresh).unwrap().ok().unwrap()).unwrap();
    assert_eq!(api.get("/api/v1/admin/users", Some(&fresh.access)).unwrap().status, 200);
}

#[test]
fn a_refresh_whose_reply_was_lost_can_be_retried_within_the_grace_window() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    api.create_user(&admin.access, "wei", WEI_PASSWORD, "inspector", &["450300"])
        .unwrap();
    let first = api.login("wei", WEI_PASSWORD).unwrap();

    // The server rotates the token; the reply never reaches the tablet.
    let lost = Tokens::from_body(&api.refresh(&first.refresh).unwrap().ok().unwrap()).unwrap();
    assert_ne!(lost.refresh, first.refresh);
    // The tablet retries with the token it still has: a new pair, and the
    // pair it never saw is dropped.
    let retried = Tokens::from_body(&api.refresh(&first.refresh).unwrap().ok().unwrap()).unwrap();
    assert_ne!(retried.refresh, lost.refresh);
    let dropped = api.refresh(&lost.refresh).unwrap();
    assert_eq!(
        (dropped.status, dropped.code()),
        (401, "invalid_token"),
        "{:?}",
        dropped.body
    );
    // A third try within the window still works (the reply may be lost again).
    let again = Tokens::from_body(&api.refresh(&first.refresh).unwrap().ok().unwrap()).unwrap();
    assert_eq!(
        api.get("/api/v1/sync/pull?since=x", Some(&again.access))
            .unwrap()
            .status,
        400
    );

    // The new pair works and rotates in turn.
    let next = Tokens::from_body(&api.refresh(&again.refresh).unwrap().ok().unwrap()).unwrap();
    let (_, claims) = parts(&next.access);
    assert!(claims.get("role").is_none());
    // Once the new pair has been used, the old token coming back is not a lost
    // reply but a copy: even within the window the device's sessions end.
    let reused = api.refresh(&first.refresh).unwrap();
    assert_eq!(
        (reused.status, reused.code()),
        (401, "token_reused"),
        "{:?}",
        reused.body
    );
    let after = api.refresh(&next.refresh).unwrap();
    assert_eq!(
        (after.status, after.code()),
        (401, "session_revoked"),
        "{:?}",
        after.body
    );
}

#[test]
fn a_real_tablet_whose_refresh_reply_is_lost_retries_and_syncs_thanks_to_the_grace_window() {
    for grace_s in [120, 0] {
        let root = tempfile::tempdir().unwrap();
        let server = server(root.path(), &format!("refresh_grace_s = {grace_s}\n"));
        let api = Api::new(server.url(""));
        let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
        api.create_user(&admin.access, "wei", WEI_PASSWORD, "inspector", &["450000"])
            .unwrap();
        let proxy = LossyProxy::start(([127, 0, 0, 1], server.port).into()).unwrap();
        // Enrolling logs in, then binds the tokens to the new store with a
        // refresh: the server rotates the token and the reply is lost on the way.
        proxy.lose_replies("/api/v1/auth/refresh", 1);
        let enrolled = Tablet::enrol(
            &root.path().join("tablet"),
            HttpConfig::new(proxy.url()),
            "wei",
            WEI_PASSWORD,
            None,
        );
        assert_eq!(proxy.lost(), 1);
        if grace_s == 0 {
            // Without a grace window the retry looks like a stolen token.
            let e = format!("{:#}", enrolled.unwrap_err());
            assert!(e.contains("token_reused"), "{e}");
            continue;
        }
        // The transport sent the same refresh token again and got a new pair.
        let mut tablet = enrolled.unwrap();
        assert!(tablet.transport.http.stats().retries >= 1);
        inspection(&mut tablet);
        let report = tablet.sync().unwrap();
        assert_eq!((report.pushed, report.refused), (2, 0), "{report:?}");
        assert_eq!(tablet.replica.pending_count(), 0);
    }
}

#[test]
fn a_refresh_token_reused_after_the_grace_window_revokes_the_devices_sessions() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "refresh_grace_s = 1\n");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    api.create_user(&admin.access, "wei", WEI_PASSWORD, "inspector", &["450300"])
        .unwrap();
    let device = DeviceId::generate();
    let first = Tokens::from_body(&api.login_as("wei", WEI_PASSWORD, device).unwrap().ok().unwrap()).unwrap();
    let second = Tokens::from_body(&api.refresh(&first.refresh).unwrap().ok().unwrap()).unwrap();
    // Another device of the same user is not affected by what follows.
    let other = api.login("wei", WEI_PASSWORD).unwrap();
    let probe = |token: &str| api.get("/api/v1/sync/pull?since=x", Some(token)).unwrap();
    // 400: past authentication (the cursor is bad).
    assert_eq!(probe(&second.access).status, 400);

    std::thread::sleep(Duration::from_millis(1_600));
    // Someone presents the spent token: a copy of it is loose.
    let reused = api.refresh(&first.refresh).unwrap();
    assert_eq!(
        (reused.status, reused.code()),
        (401, "token_reused"),
        "{:?}",
        reused.body
    );
    // Every token of the device stops working at once, access tokens included.
    let a = probe(&second.access);
    assert_eq!((a.status, a.code()), (401, "session_revoked"), "{:?}", a.body);
    let r = api.refresh(&second.refresh).unwrap();
    assert_eq!((r.status, r.code()), (401, "session_revoked"), "{:?}", r.body);
    assert_eq!(probe(&other.access).status, 400);
    // The owner logs in again with the password on the same device.
    let back = Tokens::from_body(&api.login_as("wei", WEI_PASSWORD, device).unwrap().ok().unwrap()).unwrap();
    assert_eq!(probe(&back.access).status, 400);
    let listed = api.devices(&admin.access).unwrap();
    let entry = listed.iter().find(|d| d["id"] == json!(device)).unwrap();
    assert_eq!(
        entry["revoked"], false,
        "theft detection ends sessions, not the device: {entry}"
    );
}

/// A site and an inspection of it, created on the tablet.
fn inspection(tablet: &mut Tablet) -> RecordId {
    let site = SiteId::generate();
    let insp = InspectionId::generate();
    tablet
        .replica
        .create(AnyRecord::Site(mobile_schema::sample::pond(site)))
        .unwrap();
    tablet
        .replica
        .create(AnyRecord::Inspection(mobile_schema::sample::inspection(
            insp,
            site,
            DeviceId::generate(),
        )))
        .unwrap();
    insp.into()
}

fn conclusion(tablet: &Tablet, id: RecordId) -> String {
    match tablet.replica.get(id).unwrap().unwrap().record {
        AnyRecord::Inspection(i) => i.conclusion,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_revoked_device_gets_401_and_the_tablet_keeps_its_unsynced_edits() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    api.create_user(&admin.access, "wei", WEI_PASSWORD, "inspector", &["450000"])
        .unwrap();
    let mut tablet = Tablet::enrol(
        &root.path().join("tablet"),
        HttpConfig::new(server.url("")),
        "wei",
        WEI_PASSWORD,
        None,
    )
    .unwrap();
    let id = inspection(&mut tablet);
    let report = tablet.sync().unwrap();
    assert_eq!((report.pushed, report.refused), (2, 0), "{report:?}");

    // Offline edits, not yet synced.
    tablet
        .edit(RecordKind::Inspection, id, "conclusion", json!("坝体渗水已处理"))
        .unwrap();
    let pending = tablet.replica.pending_count();
    assert_eq!(pending, 1);

    let devices = api.devices(&admin.access).unwrap();
    let device = devices
        .iter()
        .find(|d| d["username"] == "wei")
        .unwrap_or_else(|| panic!("{devices:?}"));
    assert_eq!(device["revoked"], false);
    assert!(device["last_seen_ms"].as_u64().unwrap() >= device["registered_ms"].as_u64().unwrap());
    assert_eq!(device["replica"], json!(tablet.replica.replica_id()));
    let device_id = device["id"].as_str().unwrap().to_string();
    let revoked = api.revoke_device(&admin.access, &device_id).unwrap().ok().unwrap();
    assert_eq!(revoked["revoked"], true);

    // The very next request of the device is refused, access token included.
    let access = tablet.transport.http.credentials().unwrap().access_token.clone();
    let a = api.get("/api/v1/sync/pull?since=0", Some(&access)).unwrap();
    assert_eq!((a.status, a.code()), (401, "device_revoked"), "{:?}", a.body);
    match tablet.sync() {
        Err(ReplicaError::Transport(TransportError::Unauthorized(why))) => {
            assert!(why.contains("device_revoked"), "{why}")
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    // Nothing was lost on the tablet.
    assert_eq!(tablet.replica.pending_count(), pending);
    assert_eq!(conclusion(&tablet, id), "坝体渗水已处理");
    // A password login cannot bring the revoked device id back.
    let relogin = api.login_as("wei", WEI_PASSWORD, device_id.parse().unwrap()).unwrap();
    assert_eq!((relogin.status, relogin.code()), (401, "device_revoked"));
    let listed = api.devices(&admin.access).unwrap();
    let entry = listed.iter().find(|d| d["id"] == device["id"]).unwrap();
    assert_eq!(entry["revoked"], true);
    assert!(entry["revoked_ms"].is_u64());
}

#[test]
fn fieldsync_device_tells_a_revoked_tablet_to_enrol_again_and_pushes_its_edits_after() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let url = server.url("");
    let admin_cli = |args: &[&str]| -> Value {
        let args = [args, &["--server", url.as_str()]].concat();
        let (ok, stdout, stderr) = run_fieldsync(
            &args,
            &[
                ("FIELDSYNC_PASSWORD", ADMIN_PASSWORD),
                ("FIELDSYNC_USER_PASSWORD", WEI_PASSWORD),
            ],
        )
        .unwrap();
        assert!(ok, "fieldsync {args:?}: {stderr}");
        serde_json::from_str(&stdout).unwrap()
    };
    let wei = admin_cli(&["user", "add", "wei", "--role", "inspector", "--regions", "450000"]);
    assert_eq!(wei["role"], "inspector");
    assert_eq!(wei["regions"], json!(["450000"]));
    let set = admin_cli(&["user", "set", "wei", "--regions", "450332,450300", "--disable"]);
    assert_eq!(
        (&set["regions"], &set["disabled"]),
        (&json!(["450300", "450332"]), &json!(true))
    );
    let set = admin_cli(&["user", "set", "wei", "--regions", "", "--enable"]);
    assert_eq!((&set["regions"], &set["disabled"]), (&json!([]), &json!(false)));
    admin_cli(&["user", "set", "wei", "--regions", "450000"]);
    let users = admin_cli(&["user", "list"]);
    assert_eq!(users[1]["username"], "wei", "{users}");
    assert_eq!(users[1]["regions"], json!(["450000"]), "{users}");

    let tablet = DeviceCli::new(root.path().join("tablet"))
        .unwrap()
        .env("FIELDSYNC_PASSWORD", WEI_PASSWORD);
    let init = tablet
        .json(&[
            "init",
            "--server",
            url.as_str(),
            "--username",
            "wei",
            "--name",
            "wei's tablet",
        ])
        .unwrap();
    let site = SiteId::generate();
    let pond = root.path().join("pond.json");
    std::fs::write(&pond, serde_json::to_vec(&mobile_schema::sample::pond(site)).unwrap()).unwrap();
    tablet.text(&["create", "site", pond.to_str().unwrap()]).unwrap();
    assert_eq!(tablet.json(&["sync"]).unwrap()["pending"], 0);
    tablet
        .text(&["edit", &site.to_string(), "name", "\"恭城尾矿库\""])
        .unwrap();

    let devices = admin_cli(&["device", "list", "--user", "wei"]);
    assert_eq!(devices.as_array().unwrap().len(), 1, "{devices}");
    assert_eq!(devices[0]["id"], init["device"]);
    assert_eq!(devices[0]["name"], "wei's tablet");
    let revoked = admin_cli(&["device", "revoke", init["device"].as_str().unwrap()]);
    assert_eq!(revoked["revoked"], true);

    let out = tablet.output(&["sync"]).unwrap();
    assert_eq!(out.status.code(), Some(3), "exit 3: log in again");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("enrol it again"), "{stderr}");
    assert!(stderr.contains("1 changes not yet synced are kept"), "{stderr}");
    let status = tablet.output(&["status"]).unwrap();
    assert!(status.status.success());
    let shown: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(shown["pending"], 1, "{shown}");
    assert!(
        shown["login_required"].as_str().unwrap().contains("device_revoked"),
        "{shown}"
    );
    assert!(String::from_utf8_lossy(&status.stderr).contains("fieldsync-device init"));

    // Enrolling again gives the folder a new device id and keeps its store.
    let again = tablet
        .json(&["init", "--server", url.as_str(), "--username", "wei"])
        .unwrap();
    assert_ne!(again["device"], init["device"]);
    assert_eq!(again["replica"], init["replica"]);
    let status = tablet.json(&["status"]).unwrap();
    assert!(status.get("login_required").is_none(), "{status}");
    let sync = tablet.json(&["sync"]).unwrap();
    assert_eq!(
        (sync["pushed"].as_u64(), sync["pending"].as_u64()),
        (Some(1), Some(0)),
        "{sync}"
    );
    let devices = admin_cli(&["device", "list", "--user", "wei"]);
    assert_eq!(devices.as_array().unwrap().len(), 2, "{devices}");
}

#[test]
fn a_disabled_user_is_refused_at_once_and_a_role_change_applies_to_the_next_request() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    let created = api
        .create_user(&admin.access, "li", WEI_PASSWORD, "supervisor", &["450300", "450332"])
        .unwrap();
    assert_eq!(created["regions"], json!(["450300", "450332"]));
    assert!(created.get("password_hash").is_none());
    let li = api.login("li", WEI_PASSWORD).unwrap();

    // A supervisor's token, unchanged, gains the admin role with the record.
    let users = api.get("/api/v1/admin/users", Some(&li.access)).unwrap();
    assert_eq!((users.status, users.code()), (403, "forbidden"));
    let up = api
        .update_user(&admin.access, "li", &json!({"role": "admin", "regions": []}))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(
        (up["role"].as_str(), up["regions"].as_array().map(Vec::len)),
        (Some("admin"), Some(0))
    );
    assert_eq!(api.get("/api/v1/admin/users", Some(&li.access)).unwrap().status, 200);
    api.update_user(&admin.access, "li", &json!({"role": "supervisor"}))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(api.get("/api/v1/admin/users", Some(&li.access)).unwrap().status, 403);

    api.update_user(&admin.access, "li", &json!({"disabled": true}))
        .unwrap()
        .ok()
        .unwrap();
    let a = api.get("/api/v1/sync/pull?since=0", Some(&li.access)).unwrap();
    assert_eq!((a.status, a.code()), (401, "user_disabled"), "{:?}", a.body);
    let r = api.refresh(&li.refresh).unwrap();
    assert_eq!((r.status, r.code()), (401, "user_disabled"), "{:?}", r.body);
    let l = api.login_as("li", WEI_PASSWORD, DeviceId::generate()).unwrap();
    assert_eq!((l.status, l.code()), (401, "user_disabled"), "{:?}", l.body);
    // A wrong password does not reveal that the account is disabled.
    let w = api.login_as("li", "wrong password!", DeviceId::generate()).unwrap();
    assert_eq!((w.status, w.code()), (401, "bad_credentials"));

    // Enabled again with a new password; the old one no longer works.
    api.update_user(
        &admin.access,
        "li",
        &json!({"disabled": false, "password": "a-new-password-9"}),
    )
    .unwrap()
    .ok()
    .unwrap();
    assert_eq!(
        api.login_as("li", WEI_PASSWORD, DeviceId::generate()).unwrap().status,
        401
    );
    api.login("li", "a-new-password-9").unwrap();
    let users = api
        .get("/api/v1/admin/users", Some(&admin.access))
        .unwrap()
        .ok()
        .unwrap();
    let names: Vec<&str> = users["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "li"]);
}

#[test]
fn failed_logins_are_limited_per_user_and_per_address_until_the_window_passes() {
    let root = tempfile::tempdir().unwrap();
    // A window long enough that argon2 on a loaded machine cannot age the first
    // failures out before the limit is reached.
    let server = server(
        root.path(),
        "[login_limit]\nwindow_s = 10\nmax_failures_per_user = 3\nmax_failures_per_address = 5\n",
    );
    let api = Api::new(server.url(""));
    let device = DeviceId::generate();
    for _ in 0..3 {
        let a = api.login_as("admin", "wrong password", device).unwrap();
        assert_eq!((a.status, a.code()), (401, "bad_credentials"));
    }
    // Even the right password waits now.
    let limited = api.login_as("admin", ADMIN_PASSWORD, device).unwrap();
    assert_eq!(
        (limited.status, limited.code()),
        (429, "rate_limited"),
        "{:?}",
        limited.body
    );
    assert!(limited.body["message"].is_string());
    let wait: u64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=10).contains(&wait), "Retry-After {wait}");
    // Other usernames from this address: two more failures, then the address is limited.
    for name in ["nobody", "someone"] {
        assert_eq!(api.login_as(name, "wrong password", device).unwrap().status, 401);
    }
    let last_failure = std::time::Instant::now();
    let by_address = api.login_as("third", "wrong password", device).unwrap();
    assert_eq!((by_address.status, by_address.code()), (429, "rate_limited"));

    // Once the window has passed over the last failure, logins go through.
    std::thread::sleep(Duration::from_secs(10).saturating_sub(last_failure.elapsed()) + Duration::from_millis(300));
    let a = api.login_as("admin", ADMIN_PASSWORD, device).unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
}

#[test]
fn admin_endpoints_refuse_other_roles_and_validate_what_they_are_given() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    api.create_user(&admin.access, "wei", WEI_PASSWORD, "inspector", &["450332"])
        .unwrap();
    let wei = api.login("wei", WEI_PASSWORD).unwrap();
    let device = DeviceId::generate().to_string();
    let calls: [(&str, String, Option<Value>); 5] = [
        ("GET", "/api/v1/admin/users".into(), None),
        (
            "POST",
            "/api/v1/admin/users".into(),
            Some(json!({"username": "x", "password": "12345678", "role": "admin"})),
        ),
        (
            "PATCH",
            "/api/v1/admin/users/wei".into(),
            Some(json!({"role": "admin"})),
        ),
        ("GET", "/api/v1/admin/devices".into(), None),
        (
            "POST",
            format!("/api/v1/admin/devices/{device}/revoke"),
            Some(json!({})),
        ),
    ];
    for (method, path, body) in &calls {
        let a = api.send(method, path, Some(&wei.access), body.as_ref()).unwrap();
        assert_eq!(
            (a.status, a.code()),
            (403, "forbidden"),
            "{method} {path}: {:?}",
            a.body
        );
        let a = api.send(method, path, None, body.as_ref()).unwrap();
        assert_eq!(a.status, 401, "{method} {path}");
    }
    // Nothing changed.
    let users = api
        .get("/api/v1/admin/users", Some(&admin.access))
        .unwrap()
        .ok()
        .unwrap();
    assert_eq!(users["users"][1]["role"], "inspector");

    let create = |body: Value| api.post("/api/v1/admin/users", Some(&admin.access), &body).unwrap();
    let user = |patch: Value| {
        let mut base = json!({"username": "zhang", "password": "long-enough-1", "role": "inspector"});
        for (k, v) in patch.as_object().unwrap() {
            base[k] = v.clone();
        }
        base
    };
    let cases = [
        (user(json!({"regions": ["4503"]})), "invalid_field", Some("regions[0]")),
        (
            user(json!({"regions": ["450300", "45033X"]})),
            "invalid_field",
            Some("regions[1]"),
        ),
        (user(json!({"regions": [450300]})), "invalid_field", Some("regions[0]")),
        (
            user(json!({"regions": ["459999"]})),
            "invalid_field",
            Some("regions[0]"),
        ),
        (user(json!({"role": "boss"})), "invalid_field", Some("role")),
        (user(json!({"password": "short"})), "invalid_field", Some("password")),
        (user(json!({"username": "  "})), "invalid_field", Some("username")),
        (user(json!({"colour": "red"})), "invalid_field", None),
        (json!({"username": "zhang", "role": "inspector"}), "invalid_field", None),
    ];
    for (body, code, field) in &cases {
        let a = create(body.clone());
        assert_eq!((a.status, a.code()), (400, *code), "{body}: {:?}", a.body);
        if let Some(field) = field {
            assert_eq!(a.body["field"], *field, "{body}: {:?}", a.body);
        }
    }
    let dup = create(user(json!({"username": "wei"})));
    assert_eq!((dup.status, dup.code()), (409, "user_exists"));
    assert_eq!(dup.body["field"], "username");
    let made = create(user(json!({"regions": ["450332", "450300", "450332"]})));
    assert_eq!(made.status, 201, "{:?}", made.body);
    assert_eq!(made.body["regions"], json!(["450300", "450332"]));

    let missing = api
        .update_user(&admin.access, "nobody", &json!({"disabled": true}))
        .unwrap();
    assert_eq!((missing.status, missing.code()), (404, "not_found"));
    let bad = api
        .update_user(&admin.access, "wei", &json!({"regions": ["12"]}))
        .unwrap();
    assert_eq!((bad.status, bad.body["field"].as_str()), (400, Some("regions[0]")));
    // The only admin cannot demote or disable themselves.
    for change in [json!({"role": "supervisor"}), json!({"disabled": true})] {
        let a = api.update_user(&admin.access, "admin", &change).unwrap();
        assert_eq!((a.status, a.code()), (409, "last_admin"), "{change}");
    }
    let bad_id = api.revoke_device(&admin.access, "not-a-uuid").unwrap();
    assert_eq!((bad_id.status, bad_id.code()), (400, "invalid_field"));
    let unknown = api.revoke_device(&admin.access, &device).unwrap();
    assert_eq!((unknown.status, unknown.code()), (404, "not_found"));
}

#[test]
fn a_replica_id_belongs_to_the_device_that_bound_it_first() {
    let root = tempfile::tempdir().unwrap();
    let server = server(root.path(), "");
    let api = Api::new(server.url(""));
    let admin = api.login("admin", ADMIN_PASSWORD).unwrap();
    for name in ["wei", "bo"] {
        api.create_user(&admin.access, name, WEI_PASSWORD, "inspector", &["450000"])
            .unwrap();
    }
    let mut wei = Tablet::enrol(
        &root.path().join("wei"),
        HttpConfig::new(server.url("")),
        "wei",
        WEI_PASSWORD,
        None,
    )
    .unwrap();
    let id = inspection(&mut wei);
    let report = wei.sync().unwrap();
    assert_eq!((report.pushed, report.refused), (2, 0), "{report:?}");
    let taken = wei.replica.replica_id();
    let wei_device = wei.replica.identity().device;

    // bo names wei's replica at a refresh: refused, and his token is not spent.
    let bo_device = DeviceId::generate();
    let bo = Tokens::from_body(&api.login_as("bo", WEI_PASSWORD, bo_device).unwrap().ok().unwrap()).unwrap();
    let r = api
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": bo.refresh, "replica": taken}),
        )
        .unwrap();
    assert_eq!((r.status, r.code()), (409, "replica_taken"), "{:?}", r.body);
    assert_eq!(r.body["field"], "replica");
    // Nor at a login, from his device or a new one.
    for device in [bo_device, DeviceId::generate()] {
        let r = api
            .post(
                "/api/v1/auth/login",
                None,
                &json!({"username": "bo", "password": WEI_PASSWORD,
                        "device": {"id": device, "replica": taken}}),
            )
            .unwrap();
        assert_eq!((r.status, r.code()), (409, "replica_taken"), "{:?}", r.body);
        assert_eq!(r.body["field"], "device.replica");
    }
    let devices = api.devices(&admin.access).unwrap();
    let bo_entry = devices.iter().find(|d| d["id"] == json!(bo_device)).unwrap();
    assert!(bo_entry["replica"].is_null(), "{bo_entry}");
    assert_eq!(devices.iter().filter(|d| d["replica"] == json!(taken)).count(), 1);
    let again = api.refresh(&bo.refresh).unwrap();
    assert_eq!(again.status, 200, "the refused refresh spent nothing: {:?}", again.body);

    // wei's tablet goes on pushing under its replica.
    wei.edit(RecordKind::Inspection, id, "conclusion", json!("复查无异常"))
        .unwrap();
    let report = wei.sync().unwrap();
    assert_eq!((report.pushed, report.refused), (1, 0), "{report:?}");
    assert!(wei.replica.refused().unwrap().is_empty());

    // wei's own device logs in again with its replica, and may bind a new one
    // (a reset store).
    let back = api
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "wei", "password": WEI_PASSWORD,
                    "device": {"id": wei_device, "replica": taken}}),
        )
        .unwrap();
    assert_eq!(back.status, 200, "{:?}", back.body);
    let back = Tokens::from_body(&back.body).unwrap();
    let fresh = sync_protocol::ReplicaId::generate();
    let r = api
        .post(
            "/api/v1/auth/refresh",
            None,
            &json!({"refresh_token": back.refresh, "replica": fresh}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{:?}", r.body);
    // The replica wei left stays his: bo cannot take it up either.
    let r = api
        .post(
            "/api/v1/auth/login",
            None,
            &json!({"username": "bo", "password": WEI_PASSWORD,
                    "device": {"id": bo_device, "replica": taken}}),
        )
        .unwrap();
    assert_eq!((r.status, r.code()), (409, "replica_taken"), "{:?}", r.body);

    // Revoked, wei's device lets its store enrol again under a new device id
    // for wei, never for another user.
    api.revoke_device(&admin.access, &wei_device.to_string())
        .unwrap()
        .ok()
        .unwrap();
    let login_with = |user: &str| {
        api.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": user, "password": WEI_PASSWORD,
                    "device": {"id": DeviceId::generate(), "replica": taken}}),
        )
        .unwrap()
    };
    let r = login_with("bo");
    assert_eq!((r.status, r.code()), (409, "replica_taken"), "{:?}", r.body);
    assert_eq!(login_with("wei").status, 200);
}
