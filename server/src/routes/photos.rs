//! Stored photos and the evidence checks.
//!
//! | request | answer |
//! |---|---|
//! | `HEAD /api/v1/photos/{sha256}` | 200 when stored (the replica skips the upload), else 404 |
//! | `GET /api/v1/photos/{sha256}` | the file; `ETag` is the digest; `Range` and `If-None-Match` honoured |
//! | `GET /api/v1/photos/{sha256}/thumbnail` | 320 px JPEG; 503 + `Retry-After` while it is made; 404 `no_preview` for HEIC/PDF |
//! | `GET /api/v1/photos/{sha256}/info` | JSON: size, format, dimensions, EXIF facts, thumbnail state |
//! | `GET /api/v1/inspections/{id}/evidence` | JSON: the evidence checks' flags and each declared photo |

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::PathBuf;

use actix_web::body::SizedStream;
use actix_web::http::{Method, StatusCode};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use mobile_schema::ids::RecordId;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::photos::{PhotoError, PhotoMeta, Photos, ThumbState, access};

/// Bytes read from disk per step of a download.
const READ_CHUNK: usize = 1024 * 1024;

/// Registers the photo and evidence routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/api/v1/photos/{sha}")
            .route(web::get().to(original))
            .route(web::head().to(original))
            .default_service(web::to(super::no_route)),
    )
    .service(
        web::resource("/api/v1/photos/{sha}/thumbnail")
            .route(web::get().to(thumbnail))
            .route(web::head().to(thumbnail))
            .default_service(web::to(super::no_route)),
    )
    .service(
        web::resource("/api/v1/photos/{sha}/info")
            .route(web::get().to(info))
            .default_service(web::to(super::no_route)),
    )
    .service(
        web::resource("/api/v1/inspections/{id}/evidence")
            .route(web::get().to(evidence))
            .default_service(web::to(super::no_route)),
    );
}

fn readable(auth: &Authenticated, photos: &Photos, sha: &str) -> Result<PhotoMeta, PhotoError> {
    let meta = photos.photo(sha)?.ok_or(PhotoError::NotFound)?;
    if !access::may_read_photo(auth, photos, &meta)? {
        // Not revealing that it exists.
        return Err(PhotoError::NotFound);
    }
    Ok(meta)
}

#[utoipa::path(
    method(get, head),
    path = "/api/v1/photos/{sha}",
    tag = "photos",
    summary = "A photo's original bytes (ETag, Range); HEAD asks whether the server has it",
    params(("sha" = String, Path)),
    responses((status = 200, description = "the bytes"), (status = 206, description = "a range"), (status = 404, description = "no such photo in the caller's scope")),
    security(("bearer" = [])),
)]
pub async fn original(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    sha: web::Path<String>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    let meta = readable(&auth, &photos, &sha)?;
    let path = photos.dirs().blob(&meta.sha256);
    serve(&req, path, format!("\"{}\"", meta.sha256), meta.format.mime()).await
}

#[utoipa::path(
    method(get, head),
    path = "/api/v1/photos/{sha}/thumbnail",
    tag = "photos",
    summary = "A 320 px upright JPEG thumbnail",
    params(("sha" = String, Path)),
    responses((status = 200, description = "JPEG"), (status = 404, description = "no such photo, or no thumbnail yet")),
    security(("bearer" = [])),
)]
pub async fn thumbnail(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    sha: web::Path<String>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    let meta = match readable(&auth, &photos, &sha) {
        Ok(meta) => Some(meta),
        Err(PhotoError::NotFound) => None,
        Err(e) => return Err(e),
    };
    if let Some(meta) = &meta
        && meta.thumbnail == ThumbState::Ready
    {
        let path = photos.dirs().thumb(&meta.sha256);
        let etag = format!("\"{}-t{}\"", meta.sha256, photos.settings().thumbnail_px);
        return serve(&req, path, etag, "image/jpeg").await;
    }
    // The original is not here (or has no thumbnail yet): the tablet's
    // preview stands in, readable by the same rule as any photo.
    if let Some(preview) = photos.preview_for(&sha)?
        && let Ok(p) = readable(&auth, &photos, &preview)
    {
        let path = photos.dirs().blob(&p.sha256);
        let mut answer = serve(&req, path, format!("\"{}-p\"", p.sha256), "image/jpeg").await?;
        answer.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("fieldsync-preview"),
            actix_web::http::header::HeaderValue::from_static("true"),
        );
        return Ok(answer);
    }
    match meta {
        None => Err(PhotoError::NotFound),
        Some(meta) => match meta.thumbnail {
            ThumbState::Ready | ThumbState::Pending => {
                // Turned away by a full queue earlier, or still queued: ask again.
                photos.inner.thumbs.offer(&meta);
                Err(PhotoError::ThumbnailPending)
            }
            ThumbState::NoPreview | ThumbState::Failed => Err(PhotoError::NoPreview),
        },
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/photos/{sha}/info",
    tag = "photos",
    summary = "A photo's metadata and EXIF",
    params(("sha" = String, Path)),
    responses((status = 200, description = "metadata"), (status = 404, description = "no such photo")),
    security(("bearer" = [])),
)]
pub async fn info(
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    sha: web::Path<String>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    let mut meta = readable(&auth, &photos, &sha)?;
    if auth.user.role != mobile_schema::workflow::Role::Admin {
        // Other records naming the same photo may lie in other regions.
        let mut visibility = crate::access::Visibility::new(photos.inner.storage.as_ref(), access::today(&photos));
        let scope = crate::access::scope_of(&auth.user);
        let mut shown = std::collections::BTreeSet::new();
        for id in &meta.records {
            if let Some(state) = photos.inner.storage.record(*id)?
                && visibility.visible(&scope, &state)?
            {
                shown.insert(*id);
            }
        }
        meta.records = shown;
    }
    Ok(HttpResponse::Ok().json(meta))
}

#[utoipa::path(
    get,
    path = "/api/v1/inspections/{id}/evidence",
    tag = "photos",
    summary = "The evidence checks of an inspection's photos and fix",
    params(("id" = String, Path)),
    responses((status = 200, description = "the flags"), (status = 404, description = "no such inspection in scope")),
    security(("bearer" = [])),
)]
pub async fn evidence(
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    id: web::Path<String>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    let id: RecordId = id
        .parse()
        .map_err(|_| PhotoError::bad("invalid_id", "the inspection id is a UUID", Some("id")))?;
    if !access::may_read_record(&auth, &photos, id)? {
        return Err(PhotoError::NotFound);
    }
    let p = photos.clone();
    let report = web::block(move || p.refresh_evidence(id)).await??;
    match report {
        Some(r) => Ok(HttpResponse::Ok().json(r)),
        None => Err(PhotoError::NotFound),
    }
}

/// What `Range` asked for, judged against the file.
#[derive(Debug, PartialEq, Eq)]
enum RangeAsk {
    Whole,
    Part(u64, u64),
    Unsatisfiable,
}

/// One `bytes=` range (first-last, first-, or -suffix); anything else (several
/// ranges, other units) is answered with the whole file, as RFC 9110 allows.
fn parse_range(header: Option<&str>, size: u64) -> RangeAsk {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAsk::Whole;
    };
    if spec.contains(',') {
        return RangeAsk::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAsk::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    let parsed = match (first.is_empty(), last.is_empty()) {
        (true, false) => match last.parse::<u64>() {
            Ok(0) => return RangeAsk::Unsatisfiable,
            Ok(n) => Some((size.saturating_sub(n), size.saturating_sub(1))),
            Err(_) => None,
        },
        (false, _) => match (first.parse::<u64>(), last.parse::<u64>()) {
            (Ok(a), _) if last.is_empty() => Some((a, size.saturating_sub(1))),
            (Ok(a), Ok(b)) if b >= a => Some((a, b.min(size.saturating_sub(1)))),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeAsk::Whole,
        Some((a, _)) if size == 0 || a >= size => RangeAsk::Unsatisfiable,
        Some((a, b)) => RangeAsk::Part(a, b),
    }
}

fn etag_matches(list: &str, etag: &str) -> bool {
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag)
}

/// Sends a file with its ETag, honouring `If-None-Match`, `Range` and `If-Range`;
/// the body is read from disk in steps, never whole.
async fn serve(req: &HttpRequest, path: PathBuf, etag: String, mime: &'static str) -> Result<HttpResponse, PhotoError> {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
    let p = path.clone();
    let (file, size) = web::block(move || -> Result<_, PhotoError> {
        let f = std::fs::File::open(&p).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => PhotoError::NotFound,
            _ => PhotoError::io(&p, e),
        })?;
        let size = f.metadata().map_err(|e| PhotoError::io(&p, e))?.len();
        Ok((f, size))
    })
    .await??;
    let mut b = HttpResponse::build(StatusCode::OK);
    b.insert_header(("ETag", etag.as_str()))
        .insert_header(("Accept-Ranges", "bytes"))
        // Content-addressed: the bytes under this name never change.
        .insert_header(("Cache-Control", "private, max-age=31536000, immutable"))
        // Already compressed; and Range offsets are in these bytes.
        .insert_header(("Content-Encoding", "identity"));
    if header("If-None-Match").is_some_and(|l| etag_matches(l, &etag)) {
        return Ok(b.status(StatusCode::NOT_MODIFIED).finish());
    }
    let range_applies = header("If-Range").is_none_or(|v| v.trim() == etag);
    let ask = if range_applies {
        parse_range(header("Range"), size)
    } else {
        RangeAsk::Whole
    };
    let (start, len) = match ask {
        RangeAsk::Whole => (0, size),
        RangeAsk::Part(a, z) => {
            b.status(StatusCode::PARTIAL_CONTENT);
            b.insert_header(("Content-Range", format!("bytes {a}-{z}/{size}")));
            (a, z - a + 1)
        }
        RangeAsk::Unsatisfiable => return Err(PhotoError::RangeNotSatisfiable { size }),
    };
    b.content_type(mime);
    if req.method() == Method::HEAD {
        return Ok(b.body(SizedStream::new(
            len,
            futures_util::stream::empty::<Result<Bytes, std::io::Error>>(),
        )));
    }
    let stream = futures_util::stream::unfold((Some(file), start, len), |(file, pos, left)| async move {
        let file = file?;
        if left == 0 {
            return None;
        }
        let n = left.min(READ_CHUNK as u64) as usize;
        let read = web::block(move || -> std::io::Result<_> {
            let mut f = file;
            f.seek(SeekFrom::Start(pos))?;
            let mut buf = vec![0u8; n];
            f.read_exact(&mut buf)?;
            Ok((f, buf))
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        Some(match read {
            Ok((f, buf)) => (Ok(Bytes::from(buf)), (Some(f), pos + n as u64, left - n as u64)),
            Err(e) => (Err(e), (None, pos, 0)),
        })
    });
    Ok(b.body(SizedStream::new(len, Box::pin(stream))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_as_rfc_9110_says() {
        assert_eq!(parse_range(None, 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=0-9"), 100), RangeAsk::Part(0, 9));
        assert_eq!(parse_range(Some("bytes=90-"), 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-10"), 100), RangeAsk::Part(90, 99));
        assert_eq!(parse_range(Some("bytes=-1000"), 100), RangeAsk::Part(0, 99));
        assert_eq!(parse_range(Some("bytes=50-1000"), 100), RangeAsk::Part(50, 99));
        assert_eq!(parse_range(Some("bytes=100-"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=-0"), 100), RangeAsk::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeAsk::Whole);
        assert_eq!(parse_range(Some("bytes=9-1"), 100), RangeAsk::Whole);
    }

    #[test]
    fn etags_match_lists_and_weak_forms() {
        assert!(etag_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_matches("W/\"b\"", "\"b\""));
        assert!(etag_matches("*", "\"b\""));
        assert!(!etag_matches("\"a\"", "\"b\""));
    }
}
