//! Reading request bodies: gzip or zstd by `Content-Encoding`, bounded after
//! decompression, and decoded with the path of the field at fault.
//!
//! Decompression is ours rather than actix's decoder: that one inflates a
//! whole network chunk at once, and a 64 KiB zstd chunk can expand to
//! gigabytes before any limit is checked. Here output stops at the limit.

use std::io::Read;
use std::sync::Mutex;

use actix_web::{HttpRequest, http::header, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// Bodies above this many compressed bytes are inflated off the async workers.
const INLINE_INFLATE_BYTES: usize = 256 * 1024;

#[derive(Clone, Copy)]
enum Encoding {
    Identity,
    Gzip,
    Zstd,
}

fn encoding(req: &HttpRequest) -> Result<Encoding, ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_ENCODING) else {
        return Ok(Encoding::Identity);
    };
    // A value that is not even text names no encoding we know: not identity.
    let value = value
        .to_str()
        .map_err(|_| ApiError::UnsupportedEncoding)?
        .trim()
        .to_ascii_lowercase();
    match value.as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "zstd" => Ok(Encoding::Zstd),
        _ => Err(ApiError::UnsupportedEncoding),
    }
}

/// The whole body, decompressed, refused as soon as it passes `limit` bytes
/// (compressed or not).
pub async fn read(req: &HttpRequest, mut payload: web::Payload, limit: usize) -> Result<Vec<u8>, ApiError> {
    let encoding = encoding(req)?;
    // A body announced larger than the limit is refused before a byte of it is
    // read (the limit applies to the compressed bytes too).
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit, field: None });
    }
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| match e {
            actix_web::error::PayloadError::Overflow => ApiError::TooLarge { limit, field: None },
            other => ApiError::bad("bad_body", other.to_string(), None),
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit, field: None });
        }
        body.extend_from_slice(&chunk);
    }
    match encoding {
        Encoding::Identity => Ok(body),
        _ if body.len() <= INLINE_INFLATE_BYTES => inflate(encoding, &body, limit),
        _ => web::block(move || inflate(encoding, &body, limit)).await?,
    }
}

fn inflate(encoding: Encoding, compressed: &[u8], limit: usize) -> Result<Vec<u8>, ApiError> {
    let corrupt = |e: std::io::Error| {
        ApiError::bad(
            "bad_encoding",
            format!("the compressed body does not decode: {e}"),
            None,
        )
    };
    let reader: Box<dyn Read + '_> = match encoding {
        Encoding::Identity => return Ok(compressed.to_vec()),
        Encoding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(compressed)),
        Encoding::Zstd => Box::new(zstd::stream::read::Decoder::new(compressed).map_err(corrupt)?),
    };
    let mut out = Vec::new();
    // One byte past the limit tells "exactly at the limit" from "over it".
    reader.take(limit as u64 + 1).read_to_end(&mut out).map_err(corrupt)?;
    if out.len() > limit {
        return Err(ApiError::TooLarge { limit, field: None });
    }
    Ok(out)
}

/// Deepest nesting a body may have. Raw record documents are not parsed by
/// serde's recursion guard on the way in, so depth is checked up front.
pub const MAX_DEPTH: usize = 64;

/// The deepest nesting of arrays and objects, skipping strings; one pass.
fn depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The field a decode error names, as `changes[3].op.edit.units`: the path
/// up to the first segment serde could not know (a syntax error before a key
/// was read), plus the field a "missing field" or "duplicate field" error
/// names, which the path stops short of.
fn field_path(path: &serde_path_to_error::Path, named: Option<&str>) -> Option<String> {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Unknown => break,
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
        }
    }
    if let Some(name) = named {
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(name);
    }
    (!out.is_empty()).then_some(out)
}

/// The field of serde's "missing field `x`" and "duplicate field `x`" errors.
fn named_field(message: &str) -> Option<&str> {
    ["missing field `", "duplicate field `"]
        .iter()
        .find_map(|prefix| message.strip_prefix(prefix))
        .and_then(|rest| rest.split_once('`'))
        .map(|(name, _)| name)
}

/// A JSON body of at most `limit` bytes: [`read`], then [`decode`].
pub async fn json<T: DeserializeOwned>(req: &HttpRequest, payload: web::Payload, limit: usize) -> Result<T, ApiError> {
    decode(&read(req, payload, limit).await?)
}

/// [`json`], where an empty body (white space at most) means `T::default()`.
pub async fn json_or_default<T: DeserializeOwned + Default>(
    req: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = read(req, payload, limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        decode(&bytes)
    }
}

/// JSON into `T`, or a 400 naming the field (`changes[3].kind`).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if depth(bytes) > MAX_DEPTH {
        return Err(ApiError::bad(
            "too_deep",
            format!("the JSON nests deeper than {MAX_DEPTH} levels"),
            None,
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = result.map_err(|e| {
        let inner = e.inner();
        let text = inner.to_string();
        let field = field_path(e.path(), named_field(&text));
        if inner.is_data() {
            ApiError::bad("invalid_field", text, field)
        } else {
            ApiError::bad("malformed_json", text, field)
        }
    })?;
    de.end()
        .map_err(|e| ApiError::bad("malformed_json", e.to_string(), None))?;
    Ok(value)
}

/// The zstd level of pull pages. actix's `Compress` uses level 3 for every
/// response; a pull page is the one large body a tablet on a weak signal
/// waits for. On the standard workload (fieldsync-bench pull_full) level 6
/// sent 9% fewer bytes than level 3; level 9 saved 11% but cost a quarter of
/// the pull rate.
pub const PULL_ZSTD_LEVEL: i32 = 6;

/// Compression contexts kept between pull pages, at most this many. A fresh
/// context per page is allocated by zstd's C code through the system malloc,
/// whose per-thread arenas kept what each blocking thread had freed: the
/// server's peak RSS in pull_full rose by 10 to 25 MB.
const KEPT_CONTEXTS: usize = 4;

static CONTEXTS: Mutex<Vec<zstd::bulk::Compressor<'static>>> = Mutex::new(Vec::new());

/// Whether the request's `Accept-Encoding` takes zstd (a `q=0` refuses it).
pub fn accepts_zstd(req: &HttpRequest) -> bool {
    use header::{AcceptEncoding, Encoding, Header, Preference, Quality};
    AcceptEncoding::parse(req).is_ok_and(|accepted| {
        accepted
            .iter()
            .any(|q| q.quality > Quality::ZERO && q.item == Preference::Specific(Encoding::zstd()))
    })
}

fn compress(body: &[u8]) -> std::io::Result<Vec<u8>> {
    // A poisoned lock only means another compression panicked: the list is fine.
    let kept = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let mut context = match kept {
        Some(c) => c,
        None => zstd::bulk::Compressor::new(PULL_ZSTD_LEVEL)?,
    };
    let packed = context.compress(body)?;
    let mut idle = CONTEXTS.lock().unwrap_or_else(|e| e.into_inner());
    if idle.len() < KEPT_CONTEXTS {
        idle.push(context);
    }
    Ok(packed)
}

/// A pull page compressed with zstd at [`PULL_ZSTD_LEVEL`], off the async workers.
pub async fn zstd_page(body: Vec<u8>) -> Result<Vec<u8>, ApiError> {
    web::block(move || compress(&body))
        .await?
        .map_err(|e| ApiError::Internal(format!("compressing the response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_protocol::wire::PushRequest;

    #[test]
    fn zstd_is_taken_when_named_without_q_zero() {
        let takes = |value: Option<&str>| {
            let mut req = actix_web::test::TestRequest::default();
            if let Some(v) = value {
                req = req.insert_header((header::ACCEPT_ENCODING, v));
            }
            accepts_zstd(&req.to_http_request())
        };
        assert!(takes(Some("zstd")));
        assert!(takes(Some("gzip, ZSTD;q=0.5")));
        assert!(takes(Some("zstd ; q=1, gzip")));
        assert!(!takes(None));
        assert!(!takes(Some("gzip, br")));
        assert!(!takes(Some("zstd;q=0, gzip")));
        assert!(!takes(Some("zstd; q=0.0")));
        assert!(!takes(Some("zstdx")));
    }

    #[test]
    fn a_kept_context_compresses_each_body_on_its_own() {
        let a = br#"{"records":[{"kind":"site","id":"a"}]}"#.repeat(50);
        let b = br#"{"records":[]}"#.to_vec();
        for body in [&a, &b, &a] {
            let packed = compress(body).unwrap();
            assert_eq!(zstd::stream::decode_all(&packed[..]).unwrap(), *body);
        }
        assert!(compress(&a).unwrap().len() < a.len() / 10);
    }

    fn code(e: ApiError) -> (&'static str, Option<String>) {
        match e {
            ApiError::BadRequest { code, field, .. } => (code, field),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_and_kind_of_fault() {
        let e = decode::<PushRequest>(br#"{"changes":[{"seq":1,"hlc":[1,0],"kind":"spaceship","record":"00000000-0000-0000-0000-000000000001","op":{"transition":{"action":"submit"}}}]}"#).unwrap_err();
        let (c, f) = code(e);
        assert_eq!(c, "invalid_field");
        assert_eq!(f.as_deref(), Some("changes[0].kind"));
        assert_eq!(
            code(decode::<PushRequest>(b"{\"changes\": [").unwrap_err()).0,
            "malformed_json"
        );
        assert_eq!(
            code(decode::<PushRequest>(b"{\"changes\": []} x").unwrap_err()).0,
            "malformed_json"
        );
        assert_eq!(
            code(decode::<PushRequest>(b"{\"changes\": \"\xff\"}").unwrap_err()).0,
            "malformed_json"
        );
        let deep = format!(
            r#"{{"changes":[{{"seq":1,"hlc":[1,0],"kind":"site","record":"00000000-0000-0000-0000-000000000001","op":{{"create":{{"record":{}{}}}}}}}]}}"#,
            "[".repeat(300),
            "]".repeat(300)
        );
        assert_eq!(code(decode::<PushRequest>(deep.as_bytes()).unwrap_err()).0, "too_deep");
        assert_eq!(depth(br#"{"a":"[[[[","b":[{"c":"\\"}]}"#), 3);
    }

    #[test]
    fn missing_and_duplicate_fields_are_named_and_unknown_segments_dropped() {
        use sync_protocol::wire::LoginRequest;
        let field = |bytes: &[u8]| code(decode::<LoginRequest>(bytes).unwrap_err());
        assert_eq!(
            field(br#"{"username":"a","password":"b"}"#),
            ("invalid_field", Some("device".into()))
        );
        assert_eq!(
            field(br#"{"username":"a","password":"b","device":{}}"#),
            ("invalid_field", Some("device.id".into()))
        );
        assert_eq!(
            field(br#"{"username":"a","username":"b"}"#),
            ("invalid_field", Some("username".into()))
        );
        // A syntax error before any key was read names no field, not `?`.
        assert_eq!(field(b"{"), ("malformed_json", None));
        assert_eq!(field(br#"{"device":{"#), ("malformed_json", Some("device".into())));
        let missing_kind = br#"{"changes":[{"seq":1,"hlc":[1,0],"record":"00000000-0000-0000-0000-000000000001","op":{"transition":{"action":"submit"}}}]}"#;
        assert_eq!(
            code(decode::<PushRequest>(missing_kind).unwrap_err()),
            ("invalid_field", Some("changes[0].kind".into()))
        );
    }
}
