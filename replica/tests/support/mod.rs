#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Small HTTP servers in the test process: a scripted one, and the reference
//! server behind the HTTP contract of `docs/protocol.md` with naive tokens.
//! (Each test crate uses a part of this, hence `dead_code`.)

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::workflow::Role;
use serde::Serialize;
use sync_protocol::clock::Clock;
use sync_protocol::engine::EngineConfig;
use sync_protocol::reference::ReferenceServer;
use sync_protocol::wire::{ErrorBody, LoginRequest, PushRequest, RefreshRequest, TokenResponse, UserInfo};
use sync_protocol::{Actor, ReplicaId};

// ---------------------------------------------------------------- fake server

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub target: String,
    pub headers: BTreeMap<String, String>,
    /// As it came over the wire.
    pub raw_body: Vec<u8>,
    /// Decoded by its content-encoding.
    pub body: Vec<u8>,
}

impl Request {
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    pub fn query(&self, name: &str) -> Option<String> {
        let q = self.target.split_once('?')?.1;
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn bearer(&self) -> Option<&str> {
        self.headers.get("authorization")?.strip_prefix("Bearer ")
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, value: &impl Serialize) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(value).unwrap(),
        }
    }

    pub fn error(status: u16, code: &str) -> Self {
        Self::json(
            status,
            &ErrorBody {
                code: code.into(),
                message: format!("{code} from the test server"),
                field: None,
            },
        )
    }

    pub fn zstd(mut self) -> Self {
        self.body = zstd::bulk::compress(&self.body, 3).unwrap();
        self.headers.push(("content-encoding".into(), "zstd".into()));
        self
    }

    pub fn gzip(mut self) -> Self {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(&self.body).unwrap();
        self.body = gz.finish().unwrap();
        self.headers.push(("content-encoding".into(), "gzip".into()));
        self
    }
}

pub enum Act {
    Answer(Response),
    /// Read the request, then close the connection without answering: a lost reply.
    Drop,
}

pub type Handler = Box<dyn FnMut(&Request) -> Act + Send>;

/// One request per connection (`connection: close`), handled in order.
pub struct FakeServer {
    port: u16,
    seen: Arc<Mutex<Vec<Request>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeServer {
    pub fn start(mut handler: Handler) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen2, stop2) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let Some(request) = read_request(&mut stream) else {
                    continue;
                };
                seen2.lock().unwrap().push(request.clone());
                match handler(&request) {
                    Act::Answer(r) => write_response(&mut stream, &r),
                    Act::Drop => drop(stream),
                }
            }
        });
        Self {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    pub fn scripted(acts: Vec<Act>) -> Self {
        let mut acts: VecDeque<Act> = acts.into();
        Self::start(Box::new(move |_| {
            acts.pop_front()
                .unwrap_or_else(|| Act::Answer(Response::error(500, "script_exhausted")))
        }))
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<Request> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

pub fn read_request(stream: &mut TcpStream) -> Option<Request> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut raw_body = vec![0; len];
    reader.read_exact(&mut raw_body).ok()?;
    let body = match headers.get("content-encoding").map(String::as_str) {
        Some("zstd") => zstd::stream::decode_all(raw_body.as_slice()).ok()?,
        _ => raw_body.clone(),
    };
    Some(Request {
        method,
        target,
        headers,
        raw_body,
        body,
    })
}

pub fn write_response(stream: &mut TcpStream, r: &Response) {
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        r.status,
        r.body.len()
    );
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&r.body);
    let _ = stream.flush();
}

// ---------------------------------------------------------------- reference server over HTTP

/// The reference server behind the HTTP contract, with naive tokens for the
/// users `wei`, `huang` (inspectors) and `admin`, all with password `pw`;
/// answering zstd when asked and failing every `flaky`-th push with a 503.
pub struct ReferenceHttp {
    pub server: FakeServer,
}

#[derive(Default)]
struct Tokens {
    next: u32,
    /// access token → (user, device, bound replica)
    access: HashMap<String, (UserInfo, DeviceId, Option<ReplicaId>)>,
    refresh: HashMap<String, (UserInfo, DeviceId)>,
}

impl Tokens {
    fn issue(&mut self, user: &UserInfo, device: DeviceId, replica: Option<ReplicaId>) -> TokenResponse {
        self.next += 1;
        let t = TokenResponse {
            access_token: format!("a{}", self.next),
            refresh_token: format!("r{}", self.next),
            expires_in: 900,
            token_type: "Bearer".into(),
            user: user.clone(),
            rules: None,
        };
        self.access
            .insert(t.access_token.clone(), (user.clone(), device, replica));
        self.refresh.insert(t.refresh_token.clone(), (user.clone(), device));
        t
    }
}

impl ReferenceHttp {
    pub fn start(clock: Arc<dyn Clock>, flaky: usize) -> Self {
        let reference = ReferenceServer::new(EngineConfig::default());
        let mut tokens = Tokens::default();
        let mut pushes = 0usize;
        let users: HashMap<String, UserInfo> = [
            ("wei", Role::Inspector),
            ("huang", Role::Inspector),
            ("admin", Role::Admin),
        ]
        .into_iter()
        .map(|(name, role)| {
            (
                name.to_string(),
                UserInfo {
                    id: UserId::generate(),
                    username: name.into(),
                    role,
                },
            )
        })
        .collect();
        let mut reference = reference;
        let handler = move |r: &Request| -> Act {
            let compress = |resp: Response| {
                if r.headers.get("accept-encoding").is_some_and(|a| a.contains("zstd")) {
                    resp.zstd()
                } else {
                    resp
                }
            };
            let now = clock.now_ms();
            let answer = match (r.method.as_str(), r.path()) {
                ("POST", "/api/v1/auth/login") => {
                    let req: LoginRequest = r.json();
                    match users.get(&req.username) {
                        Some(u) if req.password == "pw" => {
                            Response::json(200, &tokens.issue(u, req.device.id, req.device.replica))
                        }
                        _ => Response::error(401, "bad_credentials"),
                    }
                }
                ("POST", "/api/v1/auth/refresh") => {
                    let req: RefreshRequest = r.json();
                    match tokens.refresh.remove(&req.refresh_token) {
                        Some((u, d)) => Response::json(200, &tokens.issue(&u, d, req.replica)),
                        None => Response::error(401, "invalid_token"),
                    }
                }
                (_, path) if path.starts_with("/api/v1/sync/") => {
                    match r.bearer().and_then(|b| tokens.access.get(b)).cloned() {
                        None => Response::error(401, "invalid_token"),
                        Some((_, _, None)) if path.ends_with("/push") => Response::error(400, "replica_required"),
                        Some((u, d, replica)) => {
                            if path.ends_with("/push") {
                                pushes += 1;
                                if flaky > 0 && pushes.is_multiple_of(flaky) {
                                    return Act::Answer(Response::error(503, "busy"));
                                }
                                let req: PushRequest = r.json();
                                let actor = Actor {
                                    replica: replica.unwrap_or(ReplicaId(uuid::Uuid::nil())),
                                    user: u.id,
                                    device: d,
                                    role: u.role,
                                };
                                Response::json(200, &reference.push(&actor, &req.changes, now))
                            } else {
                                let since = r.query("since").unwrap_or_else(|| "0".into());
                                let limit = r.query("limit").and_then(|l| l.parse().ok()).unwrap_or(100);
                                Response::json(200, &reference.pull(&since, limit, now))
                            }
                        }
                    }
                }
                _ => Response::error(404, "not_found"),
            };
            Act::Answer(compress(answer))
        };
        Self {
            server: FakeServer::start(Box::new(handler)),
        }
    }
}
