#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The HTTP transport against small HTTP servers in this process: scripted ones
//! for retries, tokens and errors, and the reference server behind the HTTP
//! contract for whole syncs.

mod support;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::record::RecordKind;
use mobile_schema::workflow::Role;
use replica::{
    Credentials, HttpConfig, HttpTransport, Identity, Replica, ReplicaConfig, ReplicaError, Transport, TransportError,
};
use support::{Act, FakeServer, ReferenceHttp, Response};
use sync_protocol::clock::{Clock, ManualClock};
use sync_protocol::wire::{
    DeviceRegistration, LoginRequest, PullResponse, PushRequest, PushResponse, RefreshRequest, TokenResponse, UserInfo,
};
use sync_protocol::{Actor, ReplicaId};

// ---------------------------------------------------------------- helpers

fn fast(url: &str) -> HttpConfig {
    let mut c = HttpConfig::new(url);
    c.attempts = 3;
    c.backoff_initial = Duration::from_millis(5);
    c.backoff_max = Duration::from_millis(20);
    c.connect_timeout = Duration::from_secs(2);
    c.request_timeout = Duration::from_secs(10);
    c
}

fn user() -> UserInfo {
    UserInfo {
        id: UserId::generate(),
        username: "wei".into(),
        role: Role::Inspector,
    }
}

fn token(n: u32, user: &UserInfo) -> TokenResponse {
    TokenResponse {
        access_token: format!("a{n}"),
        refresh_token: format!("r{n}"),
        expires_in: 900,
        token_type: "Bearer".into(),
        user: user.clone(),
        rules: None,
    }
}

fn actor(replica: ReplicaId, device: DeviceId, user: &UserInfo) -> Actor {
    Actor {
        replica,
        user: user.id,
        device,
        role: user.role,
    }
}

fn credentials(url: &str, device: DeviceId, replica: Option<ReplicaId>, user: &UserInfo) -> Credentials {
    Credentials::from_token(url, device, replica, token(1, user), ManualClock::at(1_000).now_ms())
}

fn push_response(seq: u64) -> PushResponse {
    PushResponse {
        outcomes: Vec::new(),
        expected_seq: seq,
        server_time_ms: 1_746_500_000_000,
        epoch: "e1".into(),
    }
}

fn pull_response(next: &str) -> PullResponse {
    PullResponse {
        records: Vec::new(),
        next: next.into(),
        more: false,
        server_time_ms: 1_746_500_000_000,
        epoch: "e1".into(),
        purge: Vec::new(),
    }
}

// ---------------------------------------------------------------- scripted

#[test]
fn a_push_is_sent_again_after_a_lost_reply_and_a_503_and_the_zstd_answer_is_decoded() {
    let server = FakeServer::scripted(vec![
        Act::Drop,
        Act::Answer(Response::error(503, "unavailable")),
        Act::Answer(Response::json(200, &push_response(1)).zstd()),
    ]);
    let (device, replica, user) = (DeviceId::generate(), ReplicaId::generate(), user());
    let clock = ManualClock::at(1_000);
    let mut t = HttpTransport::new(fast(&server.url()))
        .with_clock(Arc::new(clock))
        .with_credentials(credentials(&server.url(), device, Some(replica), &user));
    t.identify(&actor(replica, device, &user)).unwrap();
    let answer = t.push(PushRequest { changes: Vec::new() }).unwrap();
    assert_eq!(answer, push_response(1));

    let seen = server.seen();
    assert_eq!(seen.len(), 3, "bound and fresh: no refresh, three tries");
    for r in &seen {
        assert_eq!((r.method.as_str(), r.path()), ("POST", "/api/v1/sync/push"));
        assert_eq!(r.headers["content-encoding"], "zstd");
        assert_eq!(r.headers["accept-encoding"], "zstd, gzip");
        assert_eq!(r.headers["authorization"], "Bearer a1");
        assert_eq!(r.json::<PushRequest>(), PushRequest { changes: Vec::new() });
        assert_eq!(r.raw_body, seen[0].raw_body, "the same bytes every time");
    }
    let stats = t.stats();
    assert_eq!((stats.requests, stats.retries, stats.refreshes), (3, 2, 0));
    assert_eq!(stats.body_bytes_sent, 3 * seen[0].raw_body.len() as u64);
    let zstd_answer = Response::json(200, &push_response(1)).zstd().body.len() as u64;
    let error_answer = Response::error(503, "unavailable").body.len() as u64;
    assert_eq!(stats.body_bytes_received, zstd_answer + error_answer);
    assert!(
        stats.header_bytes_sent > 3 * 100 && stats.header_bytes_received > 2 * 50,
        "{stats:?}"
    );
}

#[test]
fn identify_binds_an_unbound_token_to_the_replica_and_hands_the_new_pair_to_the_owner() {
    let user = user();
    let server = FakeServer::scripted(vec![Act::Answer(Response::json(200, &token(2, &user)))]);
    let (device, replica) = (DeviceId::generate(), ReplicaId::generate());
    let saved: Arc<Mutex<Vec<Credentials>>> = Arc::default();
    let saved2 = saved.clone();
    let mut t = HttpTransport::new(fast(&server.url()))
        .with_clock(Arc::new(ManualClock::at(1_000)))
        .with_credentials(credentials(&server.url(), device, None, &user));
    t.on_credentials(move |c| saved2.lock().unwrap().push(c.clone()));
    t.identify(&actor(replica, device, &user)).unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path(), "/api/v1/auth/refresh");
    assert_eq!(
        seen[0].json::<RefreshRequest>(),
        RefreshRequest {
            refresh_token: "r1".into(),
            replica: Some(replica),
        }
    );
    let saved = saved.lock().unwrap();
    assert_eq!(saved.len(), 1);
    assert_eq!(saved[0].access_token, "a2");
    assert_eq!(saved[0].refresh_token, "r2");
    assert_eq!(saved[0].replica, Some(replica));
    assert_eq!(t.credentials(), Some(&saved[0]));
    // Bound now: identifying again asks nothing.
    t.identify(&actor(replica, device, &user)).unwrap();
    assert_eq!(server.seen().len(), 1);
}

#[test]
fn an_expired_access_token_is_refreshed_before_it_is_used() {
    let user = user();
    let server = FakeServer::scripted(vec![
        Act::Answer(Response::json(200, &token(2, &user))),
        Act::Answer(Response::json(200, &pull_response("5"))),
    ]);
    let (device, replica) = (DeviceId::generate(), ReplicaId::generate());
    let clock = ManualClock::at(1_000);
    let mut t = HttpTransport::new(fast(&server.url()))
        .with_clock(Arc::new(clock.clone()))
        .with_credentials(credentials(&server.url(), device, Some(replica), &user));
    t.identify(&actor(replica, device, &user)).unwrap();
    assert!(server.seen().is_empty());
    clock.advance(900_000);
    t.pull("4", 10).unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].path(), "/api/v1/auth/refresh");
    assert_eq!(
        seen[0].json::<RefreshRequest>().replica,
        Some(replica),
        "keeps its binding"
    );
    assert_eq!(
        seen[1].target, "/api/v1/sync/pull?since=4&limit=10&layout=columns",
        "asks for columns; the rows this server answers still read"
    );
    assert_eq!(seen[1].bearer(), Some("a2"));
}

#[test]
fn a_401_refreshes_once_and_retries_and_a_spent_refresh_token_means_log_in_again() {
    let user = user();
    let server = FakeServer::scripted(vec![
        Act::Answer(Response::error(401, "invalid_token")),
        Act::Answer(Response::json(200, &token(2, &user))),
        Act::Answer(Response::json(200, &pull_response("9")).gzip()),
        Act::Answer(Response::error(401, "invalid_token")),
        Act::Answer(Response::error(401, "invalid_token")),
    ]);
    let (device, replica) = (DeviceId::generate(), ReplicaId::generate());
    let mut t = HttpTransport::new(fast(&server.url()))
        .with_clock(Arc::new(ManualClock::at(1_000)))
        .with_credentials(credentials(&server.url(), device, Some(replica), &user));
    t.identify(&actor(replica, device, &user)).unwrap();
    assert_eq!(t.pull("0", 50).unwrap(), pull_response("9"));
    let seen = server.seen();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].bearer(), Some("a2"), "the retry carries the new token");

    match t.pull("9", 50) {
        Err(TransportError::Unauthorized(why)) => assert!(why.contains("invalid_token"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.seen().len(), 5, "one refresh, no loop");
}

#[test]
fn a_token_without_a_replica_is_rebound_and_the_push_sent_again() {
    let user = user();
    let server = FakeServer::scripted(vec![
        Act::Answer(Response::error(400, "replica_required")),
        Act::Answer(Response::json(200, &token(2, &user))),
        Act::Answer(Response::json(200, &push_response(1))),
    ]);
    let (device, replica) = (DeviceId::generate(), ReplicaId::generate());
    let mut t = HttpTransport::new(fast(&server.url()))
        .with_clock(Arc::new(ManualClock::at(1_000)))
        .with_credentials(credentials(&server.url(), device, Some(replica), &user));
    t.identify(&actor(replica, device, &user)).unwrap();
    t.push(PushRequest { changes: Vec::new() }).unwrap();
    let seen = server.seen();
    assert_eq!(seen[1].json::<RefreshRequest>().replica, Some(replica));
    assert_eq!(seen[2].bearer(), Some("a2"));
}

#[test]
fn an_expired_cursor_and_a_refusal_are_typed_errors_that_are_not_retried() {
    let server = FakeServer::scripted(vec![
        Act::Answer(Response::error(410, "cursor_expired")),
        Act::Answer(Response::error(413, "too_large")),
    ]);
    let (device, replica, user) = (DeviceId::generate(), ReplicaId::generate(), user());
    let mut t = HttpTransport::new(fast(&server.url()))
        .with_clock(Arc::new(ManualClock::at(1_000)))
        .with_credentials(credentials(&server.url(), device, Some(replica), &user));
    t.identify(&actor(replica, device, &user)).unwrap();
    assert_eq!(t.pull("17", 10), Err(TransportError::CursorExpired));
    match t.push(PushRequest { changes: Vec::new() }) {
        Err(TransportError::Rejected { status: 413, body }) => assert_eq!(body.code, "too_large"),
        other => panic!("{other:?}"),
    }
    assert_eq!(t.stats().requests, 2);
}

#[test]
fn an_unreachable_server_is_unavailable_after_the_configured_attempts() {
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}");
    let (device, replica, user) = (DeviceId::generate(), ReplicaId::generate(), user());
    let mut t = HttpTransport::new(fast(&url))
        .with_clock(Arc::new(ManualClock::at(1_000)))
        .with_credentials(credentials(&url, device, Some(replica), &user));
    t.identify(&actor(replica, device, &user)).unwrap();
    let e = t.push(PushRequest { changes: Vec::new() }).unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert_eq!((t.stats().requests, t.stats().retries), (3, 2));
    assert_eq!(t.stats().bytes_sent(), 0, "nothing reached the wire");
}

#[test]
fn login_registers_the_device_and_keeps_the_tokens_unbound() {
    let user = user();
    let server = FakeServer::scripted(vec![
        Act::Answer(Response::json(200, &token(1, &user))),
        Act::Answer(Response::error(401, "bad_credentials")),
    ]);
    let device = DeviceId::generate();
    let mut t = HttpTransport::new(fast(&server.url())).with_clock(Arc::new(ManualClock::at(1_000)));
    let registration = DeviceRegistration {
        id: device,
        replica: None,
        name: Some("tablet 7".into()),
        app_version: None,
    };
    let who = t.login("wei", "secret", registration.clone()).unwrap();
    assert_eq!(who, user);
    let c = t.credentials().unwrap();
    assert_eq!((c.device, c.replica, c.access_token.as_str()), (device, None, "a1"));
    let sent: LoginRequest = server.seen()[0].json();
    assert_eq!(sent.device, registration);
    assert_eq!(sent.password, "secret");
    match t.login("wei", "wrong", registration) {
        Err(TransportError::Rejected { status: 401, body }) => assert_eq!(body.code, "bad_credentials"),
        other => panic!("{other:?}"),
    }
}

/// A device as `fieldsync-device init` makes one: log in unbound, open the store
/// with the login's identity, bind on the first identify.
fn device(dir: &std::path::Path, url: &str, username: &str, clock: &ManualClock) -> (Replica, HttpTransport) {
    let device = DeviceId::generate();
    let mut t = HttpTransport::new(fast(url)).with_clock(Arc::new(clock.clone()));
    let who = t
        .login(
            username,
            "pw",
            DeviceRegistration {
                id: device,
                replica: None,
                name: None,
                app_version: None,
            },
        )
        .unwrap();
    let config = ReplicaConfig {
        clock: Arc::new(clock.clone()),
        // Fixed small sizes, so that every third request meets a 503.
        push_batch: 2,
        push_batch_max: 2,
        pull_limit: 2,
        pull_limit_max: 2,
        ..ReplicaConfig::for_identity(Identity::of(&who, device))
    };
    (Replica::open_with(dir, config).unwrap(), t)
}

#[test]
fn two_replicas_sync_over_http_through_503s_with_compressed_bodies() {
    let clock = ManualClock::at(1_746_500_000_000);
    let server = ReferenceHttp::start(Arc::new(clock.clone()), 3);
    let url = server.server.url();
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (mut a, mut ta) = device(da.path(), &url, "wei", &clock);
    let (mut b, mut tb) = device(db.path(), &url, "huang", &clock);

    let mut inspections = Vec::new();
    for _ in 0..3 {
        let site = mobile_schema::ids::SiteId::generate();
        let insp = mobile_schema::ids::InspectionId::generate();
        a.create(mobile_schema::sample::pond(site).into()).unwrap();
        a.create(mobile_schema::sample::inspection(insp, site, a.identity().device).into())
            .unwrap();
        inspections.push(insp);
    }
    let rep = a.sync(&mut ta).unwrap();
    assert_eq!((rep.acked, rep.refused), (6, 0), "{rep:?}");
    assert_eq!(a.pending_count(), 0);
    assert!(ta.stats().retries >= 1, "a 503 was retried: {:?}", ta.stats());
    assert_eq!(ta.credentials().unwrap().replica, Some(a.replica_id()));

    let rep = b.sync(&mut tb).unwrap();
    assert_eq!(rep.pulled, 6);
    let id = inspections[0].into();
    b.edit(
        RecordKind::Inspection,
        id,
        vec![("conclusion".into(), serde_json::json!("黄丽复核"))],
    )
    .unwrap();
    b.sync(&mut tb).unwrap();
    a.sync(&mut ta).unwrap();
    let shown = a.get(id).unwrap().unwrap();
    match shown.record {
        mobile_schema::record::AnyRecord::Inspection(i) => assert_eq!(i.conclusion, "黄丽复核"),
        other => panic!("{other:?}"),
    }

    // Every body went out compressed, and every answer came back compressed.
    for r in server.server.seen() {
        if r.method == "POST" {
            assert_eq!(r.headers.get("content-encoding").map(String::as_str), Some("zstd"));
        }
        assert_eq!(r.headers["accept-encoding"], "zstd, gzip");
    }
    let stats = ta.stats();
    assert!(stats.body_bytes_sent > 0 && stats.body_bytes_received > 0, "{stats:?}");
}

#[test]
fn a_sync_with_spent_tokens_fails_with_log_in_again_and_keeps_the_outbox() {
    let clock = ManualClock::at(1_746_500_000_000);
    let server = ReferenceHttp::start(Arc::new(clock.clone()), 0);
    let url = server.server.url();
    let dir = tempfile::tempdir().unwrap();
    let (mut a, ta) = device(dir.path(), &url, "wei", &clock);
    let mut stale = ta.credentials().unwrap().clone();
    stale.refresh_token = "spent".into();
    stale.access_token = "revoked".into();
    let mut t = HttpTransport::new(fast(&url))
        .with_clock(Arc::new(clock.clone()))
        .with_credentials(stale);
    let site = mobile_schema::ids::SiteId::generate();
    a.create(mobile_schema::sample::pond(site).into()).unwrap();
    match a.sync(&mut t) {
        Err(ReplicaError::Transport(TransportError::Unauthorized(_))) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(a.pending_count(), 1);
}

/// A replica whose transport already holds a fresh token bound to it: its
/// first request is the sync's own.
fn bound_replica(url: &str) -> (tempfile::TempDir, Replica, HttpTransport) {
    let clock = ManualClock::at(1_746_500_000_000);
    let who = user();
    let device = DeviceId::generate();
    let config = ReplicaConfig {
        clock: Arc::new(clock.clone()),
        ..ReplicaConfig::for_identity(Identity::of(&who, device))
    };
    let dir = tempfile::tempdir().unwrap();
    let replica = Replica::open_with(dir.path(), config).unwrap();
    let t = HttpTransport::new(fast(url))
        .with_clock(Arc::new(clock.clone()))
        .with_credentials(Credentials::from_token(
            url,
            device,
            Some(replica.replica_id()),
            token(1, &who),
            clock.now_ms(),
        ));
    (dir, replica, t)
}

/// A pull page whose columns run short: the page reads, its records do not.
fn undecodable_page(more: bool) -> serde_json::Value {
    serde_json::json!({
        "columns": {"kinds": ["site"], "cols": {}},
        "next": "p2", "more": more, "server_time_ms": 1_746_500_000_000u64, "epoch": "e1",
    })
}

#[test]
fn a_page_that_does_not_decode_stops_the_pull_after_the_pages_before_it() {
    let page = |next: &str, more: bool| PullResponse {
        more,
        ..pull_response(next)
    };
    let broken = undecodable_page(false);
    let server = FakeServer::scripted(vec![
        Act::Answer(Response::json(200, &page("p1", true))),
        Act::Answer(Response::json(200, &broken)),
        Act::Answer(Response::json(200, &page("p3", false))),
    ]);
    let (_dir, mut replica, mut t) = bound_replica(&server.url());
    match replica.pull(&mut t) {
        Err(ReplicaError::Transport(TransportError::Malformed(m))) => assert!(m.contains("site"), "{m}"),
        other => panic!("{other:?}"),
    }
    // The first page was written with its cursor; the broken one was not.
    replica.pull(&mut t).unwrap();
    let sinces: Vec<Option<String>> = server.seen().iter().map(|r| r.query("since")).collect();
    assert_eq!(sinces, [Some("0".into()), Some("p1".into()), Some("p1".into())]);
}

#[test]
fn a_page_that_does_not_decode_stops_the_fetching_too() {
    // Pages past the broken one are there for the asking: the pull must stop
    // asking once the broken one is found, not run on to the end.
    let broken = undecodable_page(true);
    let server = FakeServer::start(Box::new(move |r| {
        let since = r.query("since").unwrap_or_default();
        if since == "p1" {
            return Act::Answer(Response::json(200, &broken));
        }
        // Any other cursor: a good page that leads on (for long enough).
        let next = if since == "0" {
            "p1".to_string()
        } else {
            format!("{since}+")
        };
        Act::Answer(Response::json(
            200,
            &PullResponse {
                more: next.len() < 100,
                ..pull_response(&next)
            },
        ))
    }));
    let (_dir, mut replica, mut t) = bound_replica(&server.url());
    match replica.pull(&mut t) {
        Err(ReplicaError::Transport(TransportError::Malformed(_))) => {}
        other => panic!("{other:?}"),
    }
    // Page 0 and the broken page, and at most the one fetched while the broken
    // page was being decoded.
    let asked = server.seen().len();
    assert!((2..=3).contains(&asked), "{asked} requests");
}
