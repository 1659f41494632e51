//! A raw HTTP/1.1 client over a `TcpStream`, for tests that must send what no
//! well-behaved client would: invalid UTF-8, a `Content-Length` larger than
//! the bytes that follow, unknown encodings, headers with raw bytes.
//!
//! Every request says `Connection: close`. The response is read by its own
//! framing (`Content-Length` or chunked), not to EOF, so a reply the server
//! sends before reading the body arrives even though the body never does.
//! A body with `Content-Encoding: gzip` or `zstd` is decoded into
//! [`Response::body`]; the bytes as they crossed the wire stay in
//! [`Response::wire_body`].

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{Context, bail};
use sync_protocol::wire::ErrorBody;

/// How long a test waits for a response before calling the server stuck.
const READ_TIMEOUT: Duration = Duration::from_secs(20);

/// A request to send once.
#[derive(Debug, Clone)]
pub struct Request {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    /// `Content-Length` to announce when it is not the body's length.
    declared_length: Option<u64>,
    /// Send the body with `Transfer-Encoding: chunked`, no length announced.
    chunked: bool,
}

impl Request {
    pub fn new(method: &str, path: &str) -> Self {
        Self {
            method: method.into(),
            path: path.into(),
            headers: Vec::new(),
            body: Vec::new(),
            declared_length: None,
            chunked: false,
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn post(path: &str) -> Self {
        Self::new("POST", path)
    }

    /// A header; the value is sent as these bytes, whatever they are.
    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.into(), value.as_ref().to_vec()));
        self
    }

    pub fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// A JSON body with its content type.
    pub fn json(self, value: &serde_json::Value) -> Self {
        self.header("Content-Type", "application/json").body(value.to_string())
    }

    /// Announce `length` bytes but send only the body given: a client that
    /// stalls, or a huge upload the server should never wait for.
    pub fn declare_length(mut self, length: u64) -> Self {
        self.declared_length = Some(length);
        self
    }

    /// Send the body in chunks, its length never announced.
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }

    /// Send on a new connection and read the response.
    pub fn send(&self, port: u16) -> anyhow::Result<Response> {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).context("connecting")?;
        stream.set_read_timeout(Some(READ_TIMEOUT))?;
        stream.set_write_timeout(Some(READ_TIMEOUT))?;
        let mut head = Vec::new();
        write!(
            head,
            "{} {} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n",
            self.method, self.path
        )?;
        head.extend_from_slice(b"Connection: close\r\n");
        let length = self.declared_length.unwrap_or(self.body.len() as u64);
        let has_body = !self.body.is_empty() || self.declared_length.is_some() || self.method == "POST";
        if self.chunked {
            head.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
        } else if has_body {
            write!(head, "Content-Length: {length}\r\n")?;
        }
        for (name, value) in &self.headers {
            head.extend_from_slice(name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(value);
            head.extend_from_slice(b"\r\n");
        }
        head.extend_from_slice(b"\r\n");
        // A server may answer and close before taking the whole body (a 401 or a
        // 413): a failed write is not the outcome, the response is.
        let mut wire = head;
        if self.chunked {
            for chunk in self.body.chunks(64 * 1024) {
                write!(wire, "{:x}\r\n", chunk.len())?;
                wire.extend_from_slice(chunk);
                wire.extend_from_slice(b"\r\n");
            }
            wire.extend_from_slice(b"0\r\n\r\n");
        } else {
            wire.extend_from_slice(&self.body);
        }
        let written = stream.write_all(&wire);
        match read_response(&mut stream) {
            Ok(r) => Ok(r),
            Err(e) => match written {
                Err(w) => bail!("writing the request failed ({w}) and no response came: {e:#}"),
                Ok(()) => Err(e),
            },
        }
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// As it crossed the wire (compressed if the server compressed it).
    pub wire_body: Vec<u8>,
    /// Decoded by `Content-Encoding`.
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> anyhow::Result<serde_json::Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("the body is not JSON: {}", self.text()))
    }

    /// The body as an API error; fails unless it is exactly `{code, message, field?}`.
    pub fn error(&self) -> anyhow::Result<ErrorBody> {
        let value = self.json()?;
        let Some(object) = value.as_object() else {
            bail!("the error body is not an object: {value}");
        };
        if let Some(extra) = object
            .keys()
            .find(|k| !["code", "message", "field"].contains(&k.as_str()))
        {
            bail!("the error body has an unexpected member {extra:?}: {value}");
        }
        serde_json::from_value(value.clone()).with_context(|| format!("not an ErrorBody: {value}"))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A login from a new device named "console": its access token.
pub fn login(port: u16, username: &str, password: &str) -> anyhow::Result<String> {
    let r = Request::post("/api/v1/auth/login")
        .json(&serde_json::json!({"username": username, "password": password,
                      "device": {"id": mobile_schema::ids::DeviceId::generate(), "name": "console"}}))
        .send(port)?;
    if r.status != 200 {
        bail!("login {username}: HTTP {}: {}", r.status, r.text());
    }
    let body = r.json()?;
    Ok(body["access_token"].as_str().context("no access_token")?.to_string())
}

fn read_response(stream: &mut TcpStream) -> anyhow::Result<Response> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).context("reading the status line")?;
    let status = line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| line.strip_prefix("HTTP/1.0 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("not an HTTP status line: {line:?}"))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).context("reading a header")?;
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header
            .split_once(':')
            .with_context(|| format!("not a header: {header:?}"))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let get = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let chunked = get("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked"));
    let mut wire_body = Vec::new();
    if chunked {
        loop {
            line.clear();
            reader.read_line(&mut line).context("reading a chunk size")?;
            let size_text = line.trim().split(';').next().unwrap_or_default();
            let size = usize::from_str_radix(size_text, 16).with_context(|| format!("bad chunk size {line:?}"))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let start = wire_body.len();
            wire_body.resize(start + size, 0);
            reader.read_exact(&mut wire_body[start..]).context("reading a chunk")?;
            line.clear();
            reader.read_line(&mut line)?;
        }
    } else if let Some(length) = get("content-length") {
        let length: usize = length.parse().context("bad Content-Length")?;
        wire_body.resize(length, 0);
        reader.read_exact(&mut wire_body).context("reading the body")?;
    } else if status != 204 && status != 304 {
        reader.read_to_end(&mut wire_body).context("reading the body to EOF")?;
    }
    let body = match get("content-encoding").as_deref() {
        None | Some("identity") => wire_body.clone(),
        Some("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(wire_body.as_slice())
                .read_to_end(&mut out)
                .context("the gzip response does not decode")?;
            out
        }
        Some("zstd") => zstd::stream::decode_all(wire_body.as_slice()).context("the zstd response does not decode")?,
        Some(other) => bail!("the server answered in an encoding the client never offered: {other}"),
    };
    Ok(Response {
        status,
        headers,
        wire_body,
        body,
    })
}
