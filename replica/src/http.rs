//! The replica's [`Transport`] over HTTP: the contract of `docs/protocol.md` §6
//! and the auth endpoints, with blocking `ureq` over rustls.
//!
//! - **Compression.** Request bodies go out as zstd (`Content-Encoding: zstd`);
//!   every request says `Accept-Encoding: zstd, gzip` and a response is decoded
//!   by its `Content-Encoding`, so [`WireStats`] counts the bytes as they crossed
//!   the network, not as JSON.
//! - **Retries.** A connect error, reset, timeout, cut body, 408, 429 or 5xx
//!   (507 included: the server could not make a push durable) is sent again with
//!   exponential, jittered, bounded backoff, [`HttpConfig::attempts`] times in all.
//!   Sending a push again is safe: the server answers a replay of
//!   `(replica, seq)` with the outcome it recorded.
//! - **Tokens.** The access token is bound to a replica. [`Transport::identify`]
//!   rebinds it with a refresh when the store's replica differs (a new store, a
//!   re-key); an expired token is refreshed before use; a 401 gets one refresh
//!   and a retry, then [`TransportError::Unauthorized`]: the device must log in.
//!   The owner persists the new pair through [`HttpTransport::on_credentials`].
//! - **Cursor.** A pull answered 410 `cursor_expired` is
//!   [`TransportError::CursorExpired`]; `Replica::sync` restarts from `0`.

use std::io::Read as _;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sync_protocol::clock::{Clock, SystemClock};
use sync_protocol::device_report::DeviceReport;
use sync_protocol::wire::{
    DeviceRegistration, ErrorBody, LoginRequest, PullPage, PullResponse, PushRequest, PushResponse, RefreshRequest,
    TokenResponse, UserInfo, percent_encode,
};
use sync_protocol::{Actor, ReplicaId};

use crate::credentials::Credentials;
use crate::transport::{Transport, TransportError};

pub const LOGIN_PATH: &str = "/api/v1/auth/login";
pub const REFRESH_PATH: &str = "/api/v1/auth/refresh";
pub const PUSH_PATH: &str = "/api/v1/sync/push";
pub const PULL_PATH: &str = "/api/v1/sync/pull";
pub const RECOVER_PATH: &str = "/api/v1/sync/recover";
pub const HEALTH_PATH: &str = "/healthz";

/// What this client accepts, in order of preference.
pub const ACCEPT_ENCODING: &str = "zstd, gzip";

/// How the transport talks to the server.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL, e.g. `https://sync.example.org` or `http://127.0.0.1:8080`.
    pub server: String,
    /// Tries per request, the first included; at least 1.
    pub attempts: u32,
    /// Wait before the first retry; doubled for each further one.
    pub backoff_initial: Duration,
    /// Longest wait between tries, `Retry-After` included.
    pub backoff_max: Duration,
    pub connect_timeout: Duration,
    /// Whole exchange, body included.
    pub request_timeout: Duration,
    /// Largest response body accepted, compressed on the wire and again decoded.
    pub max_response_bytes: u64,
    /// zstd level for request bodies.
    pub zstd_level: i32,
    pub user_agent: String,
}

impl HttpConfig {
    pub fn new(server: impl Into<String>) -> Self {
        Self {
            server: server.into(),
            attempts: 5,
            backoff_initial: Duration::from_millis(250),
            backoff_max: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(120),
            max_response_bytes: 64 * 1024 * 1024,
            zstd_level: 3,
            user_agent: concat!("fieldsync-device/", env!("CARGO_PKG_VERSION")).to_string(),
        }
    }
}

/// Traffic counters, for the benchmark's wire bytes per record.
///
/// Body bytes are exact: as sent (compressed) and as received (before decoding).
/// Header bytes are the HTTP/1.1 header block rebuilt from the header maps: the
/// request line and every header this client sets plus `host` and
/// `content-length` that ureq adds; the status line and every response header.
/// Not counted: chunked-transfer framing, TLS records, TCP/IP. Attempts that
/// failed before connecting count nothing; other failed attempts count what was
/// sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WireStats {
    /// HTTP exchanges attempted, retries included.
    pub requests: u64,
    /// Of `requests`: tries after a transient failure.
    pub retries: u64,
    /// Token refreshes made.
    pub refreshes: u64,
    pub body_bytes_sent: u64,
    pub body_bytes_received: u64,
    pub header_bytes_sent: u64,
    pub header_bytes_received: u64,
    /// Request bodies before compression (the JSON), counted per attempt like
    /// `body_bytes_sent`.
    pub raw_body_bytes_sent: u64,
    /// Response bodies after decoding (the JSON).
    pub raw_body_bytes_received: u64,
}

impl WireStats {
    pub fn bytes_sent(&self) -> u64 {
        self.body_bytes_sent + self.header_bytes_sent
    }

    pub fn bytes_received(&self) -> u64 {
        self.body_bytes_received + self.header_bytes_received
    }
}

type CredentialsSink = Box<dyn FnMut(&Credentials) + Send>;

/// The sync server over HTTP. One request at a time, blocking.
pub struct HttpTransport {
    agent: ureq::Agent,
    config: HttpConfig,
    base: String,
    clock: Arc<dyn Clock>,
    credentials: Option<Credentials>,
    /// The actor of the last `identify`: push and pull speak for its replica.
    actor: Option<Actor>,
    stats: WireStats,
    on_credentials: Option<CredentialsSink>,
    /// Sent as headers with every push and pull.
    report: Option<DeviceReport>,
}

impl std::fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTransport")
            .field("server", &self.base)
            .field("credentials", &self.credentials)
            .field("actor", &self.actor)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// A response read whole, its body decoded.
#[derive(Debug)]
struct Reply {
    status: u16,
    body: Vec<u8>,
}

/// A request as this client sends it.
struct Outgoing<'a> {
    method: &'static str,
    /// Path and query.
    target: &'a str,
    bearer: Option<&'a str>,
    body: Option<&'a Compressed>,
}

/// A JSON request body, zstd-compressed, with its size before compression.
struct Compressed {
    bytes: Vec<u8>,
    json_len: u64,
}

impl HttpTransport {
    /// A transport with no login yet: call [`HttpTransport::login`] or
    /// [`HttpTransport::with_credentials`] before syncing.
    pub fn new(config: HttpConfig) -> Self {
        let agent_config = ureq::Agent::config_builder()
            // Statuses are answers to interpret here, not errors.
            .http_status_as_error(false)
            // A redirect would re-send a push elsewhere and hide the wire bytes.
            .max_redirects(0)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.request_timeout))
            .user_agent(config.user_agent.as_str())
            .build();
        Self {
            agent: ureq::Agent::new_with_config(agent_config),
            base: config.server.trim_end_matches('/').to_string(),
            config,
            clock: Arc::new(SystemClock),
            credentials: None,
            actor: None,
            stats: WireStats::default(),
            on_credentials: None,
            report: None,
        }
    }

    /// The report sent with pushes and pulls: the replica's last one, the app
    /// named by the user agent.
    fn device_report(&self) -> DeviceReport {
        let mut report = self.report.clone().unwrap_or_default();
        if report.app.is_none() {
            report.app = Some(self.config.user_agent.clone());
        }
        report
    }

    /// Use these saved credentials.
    pub fn with_credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The clock token expiry is judged by.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Called with the new credentials after every login and refresh, before the
    /// request that needed them: persist them there, since the server has spent
    /// the old refresh token.
    pub fn on_credentials(&mut self, sink: impl FnMut(&Credentials) + Send + 'static) {
        self.on_credentials = Some(Box::new(sink));
    }

    pub fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    pub fn stats(&self) -> WireStats {
        self.stats
    }

    pub fn reset_stats(&mut self) {
        self.stats = WireStats::default();
    }

    /// `GET /healthz` answers 200.
    pub fn health(&mut self) -> Result<(), TransportError> {
        let reply = self.exchange(&Outgoing {
            method: "GET",
            target: HEALTH_PATH,
            bearer: None,
            body: None,
        })?;
        match reply.status {
            200..=299 => Ok(()),
            _ => Err(rejection(&reply)),
        }
    }

    /// Log in as `username` from `device`; the tokens speak for
    /// `device.replica` (none before the device has a store).
    pub fn login(
        &mut self,
        username: &str,
        password: &str,
        device: DeviceRegistration,
    ) -> Result<UserInfo, TransportError> {
        let request = LoginRequest {
            username: username.to_string(),
            password: password.to_string(),
            device: device.clone(),
        };
        let body = self.compress(&request)?;
        let reply = self.exchange(&Outgoing {
            method: "POST",
            target: LOGIN_PATH,
            bearer: None,
            body: Some(&body),
        })?;
        if !(200..=299).contains(&reply.status) {
            return Err(rejection(&reply));
        }
        let token: TokenResponse = decode_json(&reply.body)?;
        check_token_type(&token)?;
        let user = token.user.clone();
        let credentials = Credentials::from_token(&self.base, device.id, device.replica, token, self.clock.now_ms());
        self.store_credentials(credentials);
        Ok(user)
    }

    /// A new token pair for `replica` (or unbound); the old refresh token is spent.
    pub fn refresh(&mut self, replica: Option<ReplicaId>) -> Result<(), TransportError> {
        let refresh_token = self
            .credentials
            .as_ref()
            .map(|c| c.refresh_token.clone())
            .ok_or_else(|| TransportError::Unauthorized("this device has not logged in".into()))?;
        let body = self.compress(&RefreshRequest { refresh_token, replica })?;
        self.stats.refreshes += 1;
        // Retried like everything else: the server honours the spent token again
        // within its grace window (`refresh_grace_s`, 2 minutes by default) while
        // the pair whose reply was lost is unused, so a retry after a lost reply
        // gets a fresh pair.
        let reply = self.exchange(&Outgoing {
            method: "POST",
            target: REFRESH_PATH,
            bearer: None,
            body: Some(&body),
        })?;
        match reply.status {
            200..=299 => {}
            401 => {
                let why = error_body(&reply);
                return Err(TransportError::Unauthorized(format!("{}: {}", why.code, why.message)));
            }
            _ => return Err(rejection(&reply)),
        }
        let token: TokenResponse = decode_json(&reply.body)?;
        check_token_type(&token)?;
        let now = self.clock.now_ms();
        if let Some(mut credentials) = self.credentials.clone() {
            credentials.renew(token, replica, now);
            self.store_credentials(credentials);
        }
        Ok(())
    }

    fn store_credentials(&mut self, credentials: Credentials) {
        if let Some(sink) = self.on_credentials.as_mut() {
            sink(&credentials);
        }
        self.credentials = Some(credentials);
    }

    /// Refresh an expired access token before using it.
    fn ensure_fresh(&mut self) -> Result<(), TransportError> {
        let now = self.clock.now_ms();
        let Some(c) = self.credentials.as_ref() else {
            return Err(TransportError::Unauthorized("this device has not logged in".into()));
        };
        if c.is_expired(now) {
            let replica = c.replica;
            self.refresh(replica)?;
        }
        Ok(())
    }

    fn access_token(&self) -> Result<String, TransportError> {
        self.credentials
            .as_ref()
            .map(|c| c.access_token.clone())
            .ok_or_else(|| TransportError::Unauthorized("this device has not logged in".into()))
    }

    /// A request with the access token: one refresh on 401, one rebind on
    /// `replica_required`, then the answer or the error.
    fn authorized(
        &mut self,
        method: &'static str,
        target: &str,
        body: Option<&Compressed>,
    ) -> Result<Reply, TransportError> {
        self.ensure_fresh()?;
        let mut refreshed = false;
        let mut rebound = false;
        loop {
            let token = self.access_token()?;
            let reply = self.exchange(&Outgoing {
                method,
                target,
                bearer: Some(&token),
                body,
            })?;
            match reply.status {
                200..=299 => return Ok(reply),
                401 if !refreshed => {
                    refreshed = true;
                    let replica = self.credentials.as_ref().and_then(|c| c.replica);
                    self.refresh(replica)?;
                }
                401 => {
                    let why = error_body(&reply);
                    return Err(TransportError::Unauthorized(format!("{}: {}", why.code, why.message)));
                }
                400 if !rebound && error_body(&reply).code == "replica_required" => {
                    rebound = true;
                    let replica = self
                        .actor
                        .map(|a| a.replica)
                        .ok_or_else(|| TransportError::Request("sync before identify".into()))?;
                    self.refresh(Some(replica))?;
                }
                _ => return Err(rejection(&reply)),
            }
        }
    }

    fn compress<T: Serialize>(&self, value: &T) -> Result<Compressed, TransportError> {
        let json = serde_json::to_vec(value).map_err(|e| TransportError::Request(e.to_string()))?;
        let bytes =
            zstd::bulk::compress(&json, self.config.zstd_level).map_err(|e| TransportError::Request(e.to_string()))?;
        Ok(Compressed {
            bytes,
            json_len: json.len() as u64,
        })
    }

    /// One request, tried again on transient failures. Answers that are not
    /// transient come back whatever their status.
    fn exchange(&mut self, out: &Outgoing<'_>) -> Result<Reply, TransportError> {
        let attempts = self.config.attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.stats.requests += 1;
            if attempt > 1 {
                self.stats.retries += 1;
            }
            let (failure, retry_after) = match self.once(out) {
                Ok(reply) if !is_transient_status(reply.0.status) => return Ok(reply.0),
                Ok((reply, retry_after)) => {
                    let why = error_body(&reply);
                    (
                        format!("HTTP {} {}: {}", reply.status, why.code, why.message),
                        retry_after,
                    )
                }
                Err(Failure::Transient(why)) => (why, None),
                Err(Failure::Fatal(e)) => return Err(e),
            };
            if attempt >= attempts {
                return Err(TransportError::Unavailable(format!(
                    "{} {} failed {attempt} times, last: {failure}",
                    out.method, out.target
                )));
            }
            let mut wait = backoff(&self.config, attempt, jitter());
            if let Some(after) = retry_after {
                wait = wait.max(after).min(self.config.backoff_max);
            }
            std::thread::sleep(wait);
        }
    }

    /// One try: the reply and its `Retry-After`, or why there is none.
    fn once(&mut self, out: &Outgoing<'_>) -> Result<(Reply, Option<Duration>), Failure> {
        let url = format!("{}{}", self.base, out.target);
        let mut headers: Vec<(&str, String)> = vec![
            ("accept", "application/json".into()),
            ("accept-encoding", ACCEPT_ENCODING.into()),
            ("user-agent", self.config.user_agent.clone()),
        ];
        if let Some(token) = out.bearer {
            headers.push(("authorization", format!("Bearer {token}")));
            if out.target.starts_with(PUSH_PATH) || out.target.starts_with(PULL_PATH) {
                headers.extend(self.device_report().headers());
            }
        }
        if let Some(body) = out.body {
            headers.push(("content-type", "application/json".into()));
            headers.push(("content-encoding", "zstd".into()));
            headers.push(("content-length", body.bytes.len().to_string()));
        }
        let sent_headers = request_header_bytes(out.method, out.target, host_of(&self.base), &headers);
        let sent_body = out.body.map_or(0, |b| b.bytes.len() as u64);
        let sent_raw = out.body.map_or(0, |b| b.json_len);
        let result = match out.body {
            Some(body) => {
                let mut req = self.agent.post(&url);
                for (k, v) in &headers {
                    // ureq sets content-length from the body itself.
                    if *k != "content-length" {
                        req = req.header(*k, v.as_str());
                    }
                }
                req.send(&body.bytes[..])
            }
            None => {
                let mut req = self.agent.get(&url);
                for (k, v) in &headers {
                    req = req.header(*k, v.as_str());
                }
                req.call()
            }
        };
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                let class = classify(&e);
                if class != Class::Unreached {
                    self.stats.header_bytes_sent += sent_headers;
                    self.stats.body_bytes_sent += sent_body;
                    self.stats.raw_body_bytes_sent += sent_raw;
                }
                return Err(match class {
                    Class::Unreached | Class::Transient => Failure::Transient(e.to_string()),
                    Class::Config => Failure::Fatal(TransportError::Request(e.to_string())),
                    Class::Unreadable => Failure::Fatal(TransportError::Malformed(e.to_string())),
                });
            }
        };
        self.stats.header_bytes_sent += sent_headers;
        self.stats.body_bytes_sent += sent_body;
        self.stats.raw_body_bytes_sent += sent_raw;
        let status = response.status().as_u16();
        self.stats.header_bytes_received += response_header_bytes(
            status,
            response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().len(), v.as_bytes().len())),
        );
        let encoding = response
            .headers()
            .get("content-encoding")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let raw = response
            .body_mut()
            .with_config()
            .limit(self.config.max_response_bytes)
            .read_to_vec();
        let raw = match raw {
            Ok(raw) => raw,
            // Cut mid-body: the server's answer is lost, ask again.
            Err(e) => {
                return match classify(&e) {
                    Class::Unreached | Class::Transient => Err(Failure::Transient(e.to_string())),
                    Class::Config | Class::Unreadable => Err(Failure::Fatal(TransportError::Malformed(e.to_string()))),
                };
            }
        };
        self.stats.body_bytes_received += raw.len() as u64;
        let body = decode_body(encoding.as_deref(), raw, self.config.max_response_bytes)
            .map_err(|e| Failure::Fatal(TransportError::Malformed(e)))?;
        self.stats.raw_body_bytes_received += body.len() as u64;
        Ok((Reply { status, body }, retry_after))
    }
}

/// An answer of [`HttpTransport::raw`]: the status, the headers, and the body
/// when it was not streamed to a sink.
#[derive(Debug)]
pub(crate) struct RawReply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Vec<u8>,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
    }

    pub fn error(&self) -> ErrorBody {
        error_body(&Reply {
            status: self.status,
            body: self.body.clone(),
        })
    }
}

impl HttpTransport {
    /// One authorized request with the caller's headers and a raw body (the
    /// photo uploads): one refresh on 401, no retries (the caller resumes). A
    /// 2xx body goes to `sink` when given, else into the reply.
    pub(crate) fn raw(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        mut sink: Option<&mut dyn std::io::Write>,
    ) -> Result<RawReply, TransportError> {
        self.ensure_fresh()?;
        let mut refreshed = false;
        loop {
            let token = self.access_token()?;
            let reply = self.raw_once(method, target, &token, headers, body, &mut sink)?;
            match reply.status {
                401 if !refreshed => {
                    refreshed = true;
                    let replica = self.credentials.as_ref().and_then(|c| c.replica);
                    self.refresh(replica)?;
                }
                401 => {
                    let why = reply.error();
                    return Err(TransportError::Unauthorized(format!("{}: {}", why.code, why.message)));
                }
                _ => return Ok(reply),
            }
        }
    }

    fn raw_once(
        &mut self,
        method: &str,
        target: &str,
        token: &str,
        headers: &[(&str, String)],
        body: Option<&[u8]>,
        sink: &mut Option<&mut dyn std::io::Write>,
    ) -> Result<RawReply, TransportError> {
        let url = if target.starts_with("http://") || target.starts_with("https://") {
            // An upload URL from a server's Location header: the token goes
            // only to the server this device logged in to.
            let scheme = self.base.split_once("://").map_or("", |(s, _)| s);
            let origin = format!("{scheme}://{}", host_of(&self.base));
            let same = target
                .strip_prefix(&origin)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if !same {
                return Err(TransportError::Request(format!(
                    "{target} is not on {origin}: the token is not sent there"
                )));
            }
            target.to_string()
        } else {
            format!("{}{}", self.base, target)
        };
        let path = url
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| rest[i..].to_string()))
            .unwrap_or_else(|| "/".into());
        let mut all: Vec<(&str, String)> = vec![
            ("authorization", format!("Bearer {token}")),
            ("user-agent", self.config.user_agent.clone()),
        ];
        all.extend(headers.iter().cloned());
        if let Some(b) = body {
            all.push(("content-length", b.len().to_string()));
        }
        let sent_headers = request_header_bytes(method, &path, host_of(&self.base), &all);
        let mut builder = ureq::http::Request::builder().method(method).uri(url.as_str());
        for (k, v) in &all {
            // ureq sets content-length from the body itself.
            if *k != "content-length" {
                builder = builder.header(*k, v.as_str());
            }
        }
        self.stats.requests += 1;
        let result = match body {
            Some(b) => builder.body(b).map(|r| self.agent.run(r)),
            None => builder.body(()).map(|r| self.agent.run(r)),
        };
        let result = result.map_err(|e| TransportError::Request(e.to_string()))?;
        let mut response = match result {
            Ok(r) => r,
            Err(e) => {
                let class = classify(&e);
                if class != Class::Unreached {
                    self.stats.header_bytes_sent += sent_headers;
                    self.stats.body_bytes_sent += body.map_or(0, |b| b.len() as u64);
                }
                return Err(match class {
                    Class::Unreached | Class::Transient => TransportError::Unavailable(e.to_string()),
                    Class::Config => TransportError::Request(e.to_string()),
                    Class::Unreadable => TransportError::Malformed(e.to_string()),
                });
            }
        };
        self.stats.header_bytes_sent += sent_headers;
        self.stats.body_bytes_sent += body.map_or(0, |b| b.len() as u64);
        let status = response.status().as_u16();
        self.stats.header_bytes_received += response_header_bytes(
            status,
            response
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().len(), v.as_bytes().len())),
        );
        let headers = response.headers().clone();
        let mut reader = response
            .body_mut()
            .with_config()
            .limit(self.config.max_response_bytes)
            .reader();
        let mut out = Vec::new();
        let read = match sink {
            Some(sink) if (200..=299).contains(&status) => copy_large(&mut reader, sink),
            _ => std::io::Read::read_to_end(&mut reader, &mut out).map(|n| n as u64),
        };
        let n = read.map_err(|e| TransportError::Unavailable(format!("the answer was cut: {e}")))?;
        self.stats.body_bytes_received += n;
        Ok(RawReply {
            status,
            headers,
            body: out,
        })
    }
}

/// `std::io::copy` with a buffer sized for photos: its 8 KiB one costs a
/// write per 8 KiB into the sink.
fn copy_large(reader: &mut impl std::io::Read, sink: &mut dyn std::io::Write) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sink.write_all(&buf[..n])?;
        total += n as u64;
    }
}

impl Transport for HttpTransport {
    fn rules(&self) -> Option<mobile_schema::rule_settings::RuleSettings> {
        self.credentials.as_ref().and_then(|c| c.rules.clone())
    }

    /// Bind the tokens to `actor.replica` if they speak for another (a new store,
    /// a re-key), else refresh them if they have expired.
    fn identify(&mut self, actor: &Actor) -> Result<(), TransportError> {
        let Some(c) = self.credentials.as_ref() else {
            return Err(TransportError::Unauthorized("this device has not logged in".into()));
        };
        if c.device != actor.device {
            return Err(TransportError::Request(format!(
                "the store belongs to device {} but this login is for device {}",
                actor.device, c.device
            )));
        }
        // The server credits a change to whoever's token pushes it.
        if c.user.id != actor.user {
            return Err(TransportError::Request(format!(
                "the store is user {}'s but this login is {}'s: log in as that user",
                actor.user, c.user.username
            )));
        }
        self.actor = Some(*actor);
        if c.replica != Some(actor.replica) {
            self.refresh(Some(actor.replica))
        } else {
            self.ensure_fresh()
        }
    }

    fn push(&mut self, request: PushRequest) -> Result<PushResponse, TransportError> {
        let body = self.compress(&request)?;
        let reply = self.authorized("POST", PUSH_PATH, Some(&body))?;
        decode_json(&reply.body)
    }

    fn pull(&mut self, since: &str, limit: usize) -> Result<PullResponse, TransportError> {
        Ok(self.pull_page(since, limit)?.into_response()?)
    }

    fn pull_page(&mut self, since: &str, limit: usize) -> Result<PullPage, TransportError> {
        // Columns: 17% fewer bytes on the air than rows (bench). A server
        // that does not know the layout answers rows, which read as well.
        let target = format!(
            "{PULL_PATH}?since={}&limit={limit}&layout=columns",
            percent_encode(since)
        );
        let reply = self.authorized("GET", &target, None)?;
        decode_json::<PullPage>(&reply.body)
    }

    fn report(&mut self, report: DeviceReport) {
        self.report = Some(report);
    }

    fn recover(
        &mut self,
        request: sync_protocol::recovery::RecoverRequest,
    ) -> Result<sync_protocol::recovery::RecoverResponse, TransportError> {
        let body = self.compress(&request)?;
        let reply = self.authorized("POST", RECOVER_PATH, Some(&body))?;
        decode_json(&reply.body)
    }
}

/// Why a single try brought no usable answer.
enum Failure {
    Transient(String),
    Fatal(TransportError),
}

/// What a ureq error says about trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// The server was never reached: nothing was sent. Worth another try.
    Unreached,
    /// Reset, cut, timed out: the request may or may not have arrived. Worth another try.
    Transient,
    /// The request cannot be made as configured (bad URL, TLS required...).
    Config,
    /// The server's answer cannot be read (too large, bad header block).
    Unreadable,
}

fn classify(e: &ureq::Error) -> Class {
    use std::io::ErrorKind as K;
    use ureq::Error as E;
    use ureq::Timeout as T;
    match e {
        E::HostNotFound | E::ConnectionFailed => Class::Unreached,
        E::Timeout(T::Resolve | T::Connect) => Class::Unreached,
        E::Io(io) if matches!(io.kind(), K::ConnectionRefused | K::NotFound | K::AddrNotAvailable) => Class::Unreached,
        E::Io(_) | E::Timeout(_) | E::Protocol(_) | E::BodyStalled => Class::Transient,
        // A captive portal or a proxy in the way: the network, not this request.
        E::Tls(_) | E::Rustls(_) | E::ConnectProxyFailed(_) => Class::Transient,
        E::BodyExceedsLimit(_) | E::LargeResponseHeader(..) => Class::Unreadable,
        _ => Class::Config,
    }
}

/// Statuses worth sending the same request again for.
fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 429) || ((500..=599).contains(&status) && !matches!(status, 501 | 505))
}

/// Wait before try `attempt + 1`: `initial · 2^(attempt-1)`, at most `max`, then
/// scaled into `[½, 1]` of that by `jitter ∈ [0, 1]` so a fleet of tablets
/// coming back after an outage does not retry in lockstep.
fn backoff(config: &HttpConfig, attempt: u32, jitter: f64) -> Duration {
    let exp = attempt.saturating_sub(1).min(20);
    let full = config
        .backoff_initial
        .saturating_mul(1u32 << exp)
        .min(config.backoff_max);
    full.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
}

/// A number in `[0, 1]` from the random bits of a v4 UUID: enough for jitter,
/// without another dependency.
fn jitter() -> f64 {
    (uuid::Uuid::new_v4().as_u128() & 0xFFFF) as f64 / 65_535.0
}

/// Decode a response body by its `Content-Encoding` (codings applied in the
/// listed order, so undone in reverse), at most `limit` bytes decoded.
fn decode_body(content_encoding: Option<&str>, mut body: Vec<u8>, limit: u64) -> Result<Vec<u8>, String> {
    let Some(codings) = content_encoding else {
        return Ok(body);
    };
    let codings: Vec<String> = codings
        .split(',')
        .map(|c| c.trim().to_ascii_lowercase())
        .filter(|c| !c.is_empty() && c != "identity")
        .collect();
    for coding in codings.iter().rev() {
        let mut out = Vec::new();
        let read = match coding.as_str() {
            "zstd" => {
                zstd::stream::read::Decoder::new(body.as_slice()).and_then(|d| d.take(limit + 1).read_to_end(&mut out))
            }
            "gzip" | "x-gzip" => flate2::read::GzDecoder::new(body.as_slice())
                .take(limit + 1)
                .read_to_end(&mut out),
            other => return Err(format!("unsupported content-encoding `{other}`")),
        };
        read.map_err(|e| format!("decoding {coding}: {e}"))?;
        if out.len() as u64 > limit {
            return Err(format!("the decoded body exceeds {limit} bytes"));
        }
        body = out;
    }
    Ok(body)
}

fn decode_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, TransportError> {
    serde_json::from_slice(body).map_err(|e| TransportError::Malformed(e.to_string()))
}

fn check_token_type(token: &TokenResponse) -> Result<(), TransportError> {
    if token.token_type.eq_ignore_ascii_case("bearer") {
        Ok(())
    } else {
        Err(TransportError::Malformed(format!(
            "token type `{}`, expected Bearer",
            token.token_type
        )))
    }
}

/// The error body of a reply, or one made up from its status when the body is
/// not the JSON `ErrorBody` (a proxy's HTML page, say).
fn error_body(reply: &Reply) -> ErrorBody {
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| {
        let text = String::from_utf8_lossy(&reply.body);
        ErrorBody {
            code: format!("http_{}", reply.status),
            message: text.chars().take(200).collect(),
            field: None,
        }
    })
}

/// The error for an answer that is neither success nor worth retrying.
fn rejection(reply: &Reply) -> TransportError {
    let body = error_body(reply);
    match (reply.status, body.code.as_str()) {
        (410, "cursor_expired") => TransportError::CursorExpired,
        _ => TransportError::Rejected {
            status: reply.status,
            body,
        },
    }
}

fn host_of(base: &str) -> &str {
    let rest = base.split_once("://").map_or(base, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// `METHOD target HTTP/1.1\r\n`, `host`, the given headers, the blank line.
fn request_header_bytes(method: &str, target: &str, host: &str, headers: &[(&str, String)]) -> u64 {
    let line = method.len() + 1 + target.len() + " HTTP/1.1\r\n".len();
    let host = "host: ".len() + host.len() + 2;
    let fields: usize = headers.iter().map(|(k, v)| k.len() + 2 + v.len() + 2).sum();
    (line + host + fields + 2) as u64
}

/// `HTTP/1.1 200 OK\r\n`, each `name: value\r\n`, the blank line.
fn response_header_bytes(status: u16, headers: impl Iterator<Item = (usize, usize)>) -> u64 {
    let reason = ureq::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .map_or(0, str::len);
    let line = "HTTP/1.1 200 ".len() + reason + 2;
    let fields: usize = headers.map(|(k, v)| k + 2 + v + 2).sum();
    (line + fields + 2) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn bodies_decode_by_their_content_encoding() {
        let json = br#"{"records":[],"next":"7"}"#.to_vec();
        let zstd_body = zstd::bulk::compress(&json, 3).unwrap();
        assert_eq!(decode_body(Some("zstd"), zstd_body.clone(), 1 << 20).unwrap(), json);
        assert_eq!(decode_body(Some(" ZSTD "), zstd_body, 1 << 20).unwrap(), json);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&json).unwrap();
        let gz = gz.finish().unwrap();
        assert_eq!(decode_body(Some("gzip"), gz.clone(), 1 << 20).unwrap(), json);
        assert_eq!(decode_body(None, json.clone(), 1 << 20).unwrap(), json);
        assert_eq!(decode_body(Some("identity"), json.clone(), 1 << 20).unwrap(), json);
        // Applied gzip then zstd: undone zstd first.
        let both = zstd::bulk::compress(&gz, 3).unwrap();
        assert_eq!(decode_body(Some("gzip, zstd"), both, 1 << 20).unwrap(), json);
    }

    #[test]
    fn an_unknown_or_broken_encoding_is_an_error_not_a_panic() {
        assert!(decode_body(Some("br"), b"x".to_vec(), 100).unwrap_err().contains("br"));
        assert!(decode_body(Some("zstd"), b"not zstd".to_vec(), 100).is_err());
        assert!(decode_body(Some("gzip"), b"not gzip".to_vec(), 100).is_err());
    }

    #[test]
    fn a_body_decoding_past_the_limit_is_refused() {
        let big = vec![b'a'; 10_000];
        let z = zstd::bulk::compress(&big, 3).unwrap();
        assert!(z.len() < 100);
        assert!(
            decode_body(Some("zstd"), z.clone(), 9_999)
                .unwrap_err()
                .contains("exceeds")
        );
        assert_eq!(decode_body(Some("zstd"), z, 10_000).unwrap().len(), 10_000);
    }

    #[test]
    fn server_trouble_is_retried_and_answers_are_not() {
        for s in [408, 429, 500, 502, 503, 504, 507] {
            assert!(is_transient_status(s), "{s}");
        }
        for s in [200, 400, 401, 403, 404, 410, 413, 422, 501, 505] {
            assert!(!is_transient_status(s), "{s}");
        }
    }

    #[test]
    fn network_errors_are_classified_for_retry() {
        use std::io::{Error, ErrorKind};
        let io = |k| ureq::Error::Io(Error::from(k));
        assert_eq!(classify(&io(ErrorKind::ConnectionRefused)), Class::Unreached);
        assert_eq!(classify(&ureq::Error::HostNotFound), Class::Unreached);
        assert_eq!(
            classify(&ureq::Error::Timeout(ureq::Timeout::Connect)),
            Class::Unreached
        );
        assert_eq!(classify(&io(ErrorKind::ConnectionReset)), Class::Transient);
        assert_eq!(classify(&io(ErrorKind::UnexpectedEof)), Class::Transient);
        assert_eq!(classify(&ureq::Error::Timeout(ureq::Timeout::Global)), Class::Transient);
        assert_eq!(classify(&ureq::Error::BadUri("x".into())), Class::Config);
        assert_eq!(classify(&ureq::Error::BodyExceedsLimit(10)), Class::Unreadable);
    }

    #[test]
    fn backoff_doubles_up_to_the_bound_and_jitters_within_half() {
        let mut c = HttpConfig::new("http://x");
        c.backoff_initial = Duration::from_millis(100);
        c.backoff_max = Duration::from_millis(1_000);
        assert_eq!(backoff(&c, 1, 1.0), Duration::from_millis(100));
        assert_eq!(backoff(&c, 2, 1.0), Duration::from_millis(200));
        assert_eq!(backoff(&c, 3, 0.0), Duration::from_millis(200));
        assert_eq!(backoff(&c, 9, 1.0), Duration::from_millis(1_000));
        assert_eq!(backoff(&c, u32::MAX, 1.0), Duration::from_millis(1_000));
        let j = jitter();
        assert!((0.0..=1.0).contains(&j));
    }

    #[test]
    fn error_answers_map_to_typed_errors() {
        let reply = |status, body: &str| Reply {
            status,
            body: body.as_bytes().to_vec(),
        };
        assert_eq!(
            rejection(&reply(410, r#"{"code":"cursor_expired","message":"compacted"}"#)),
            TransportError::CursorExpired
        );
        match rejection(&reply(413, r#"{"code":"too_large","message":"big","field":"changes"}"#)) {
            TransportError::Rejected { status, body } => {
                assert_eq!(
                    (status, body.code.as_str(), body.field.as_deref()),
                    (413, "too_large", Some("changes"))
                );
            }
            other => panic!("{other:?}"),
        }
        match rejection(&reply(404, "<html>not here</html>")) {
            TransportError::Rejected { status, body } => {
                assert_eq!((status, body.code.as_str()), (404, "http_404"));
                assert!(body.message.contains("not here"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn header_bytes_are_counted_as_http_1_1_would_send_them() {
        let h = vec![("accept", "application/json".to_string())];
        // "GET /x HTTP/1.1\r\n" 17 + "host: a:1\r\n" 11 + "accept: application/json\r\n" 26 + "\r\n" 2
        assert_eq!(request_header_bytes("GET", "/x", "a:1", &h), 56);
        // "HTTP/1.1 200 OK\r\n" 17 + "a: bc\r\n" 7 + "\r\n" 2
        assert_eq!(response_header_bytes(200, [(1, 2)].into_iter()), 26);
        assert_eq!(host_of("https://sync.example.org:8443/base"), "sync.example.org:8443");
    }

    #[test]
    fn cursors_are_percent_encoded() {
        assert_eq!(percent_encode("0"), "0");
        assert_eq!(percent_encode("42:a b&c=d/é"), "42%3Aa%20b%26c%3Dd%2F%C3%A9");
    }
}
