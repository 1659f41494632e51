//! tus 1.0 at `/api/v1/uploads`: core, creation, checksum (sha1, sha256),
//! expiration and termination, behind the same bearer token as the API.
//!
//! | request | answer |
//! |---|---|
//! | `OPTIONS /api/v1/uploads` | 204, `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`, `Tus-Checksum-Algorithm` |
//! | `POST /api/v1/uploads` (`Upload-Length`, `Upload-Metadata`) | 201, `Location`, `Upload-Expires` |
//! | `HEAD /api/v1/uploads/{id}` | 200, `Upload-Offset`, `Upload-Length`, `Upload-Expires` |
//! | `PATCH /api/v1/uploads/{id}` (`Upload-Offset`, optional `Upload-Checksum`) | 204, `Upload-Offset` |
//! | `DELETE /api/v1/uploads/{id}` | 204 |
//!
//! Metadata the server reads: `sha256` (hex: the upload is verified against
//! it) and `record` (the id of the record the photo belongs to); anything
//! else (`filename`, `filetype`) is kept as sent. `POST` with
//! `X-HTTP-Method-Override: PATCH|DELETE` works for clients that cannot send
//! those methods. A finished upload's answer also carries
//! `Fieldsync-Photo-Sha256` and, when the photo was already stored,
//! `Fieldsync-Deduplicated: true`.

use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::Method;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use base64::Engine as _;

use crate::auth::Authenticated;
use crate::error::ApiError;
use crate::photos::error::TUS_VERSION;
use crate::photos::tus::{CHECKSUM_ALGORITHMS, ChunkChecksum, Upload, parse_metadata};
use crate::photos::{PhotoError, Photos, access};

pub const UPLOADS_PATH: &str = "/api/v1/uploads";
const EXTENSIONS: &str = "creation,expiration,checksum,termination";

/// Registers the upload routes.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource(UPLOADS_PATH)
            .route(web::method(Method::OPTIONS).to(options))
            .route(web::post().to(create))
            .default_service(web::to(super::no_route)),
    )
    .service(
        web::resource("/api/v1/uploads/{id}")
            .route(web::method(Method::OPTIONS).to(upload_options))
            .route(web::head().to(head))
            .route(web::patch().to(patch))
            .route(web::delete().to(terminate))
            .route(web::post().to(method_override))
            .default_service(web::to(super::no_route)),
    );
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Every tus request but OPTIONS names the protocol version.
fn check_version(req: &HttpRequest) -> Result<(), PhotoError> {
    match header(req, "Tus-Resumable") {
        Some(TUS_VERSION) => Ok(()),
        _ => Err(PhotoError::TusVersion),
    }
}

fn number(req: &HttpRequest, name: &'static str) -> Result<Option<u64>, PhotoError> {
    match header(req, name) {
        None => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| {
            PhotoError::bad(
                "invalid_header",
                format!("{name} is a non-negative integer"),
                Some(name),
            )
        }),
    }
}

fn http_date(ms: u64) -> String {
    httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_millis(ms))
}

fn tus(status: actix_web::http::StatusCode) -> HttpResponseBuilder {
    let mut b = HttpResponse::build(status);
    b.insert_header(("Tus-Resumable", TUS_VERSION));
    b.insert_header(("Cache-Control", "no-store"));
    b
}

#[utoipa::path(
    options,
    path = "/api/v1/uploads",
    tag = "uploads",
    summary = "tus: the server's capabilities (no auth)",
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")),
)]
pub async fn options(photos: web::Data<Photos>) -> HttpResponse {
    tus(actix_web::http::StatusCode::NO_CONTENT)
        .insert_header(("Tus-Version", TUS_VERSION))
        .insert_header(("Tus-Extension", EXTENSIONS))
        .insert_header(("Tus-Max-Size", photos.settings().max_upload_bytes.to_string()))
        .insert_header(("Tus-Checksum-Algorithm", CHECKSUM_ALGORITHMS))
        .finish()
}

/// The same capabilities, asked of an upload (tus clients may ask either).
#[utoipa::path(
    options,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    summary = "tus: the server's capabilities, asked of an upload (no auth)",
    params(("id" = String, Path)),
    responses((status = 204, description = "Tus-Version, Tus-Extension, Tus-Max-Size, Tus-Checksum-Algorithm")),
)]
pub async fn upload_options(photos: web::Data<Photos>) -> HttpResponse {
    options(photos).await
}

#[utoipa::path(
    post,
    path = "/api/v1/uploads",
    tag = "uploads",
    summary = "tus creation: start an upload naming its record and declared SHA-256",
    responses((status = 201, description = "Location of the upload"), (status = 400, description = "invalid metadata"), (status = 403, description = "scope"), (status = 413, description = "over the size limit"), (status = 429, description = "too_many_uploads: too many unfinished uploads of this user"), (status = 507, description = "photo_storage_full: the upload would eat into the free space kept for records")),
    security(("bearer" = [])),
)]
pub async fn create(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    check_version(&req)?;
    if header(&req, "Upload-Defer-Length").is_some() {
        return Err(PhotoError::bad(
            "defer_length_unsupported",
            "declare Upload-Length at creation (creation-defer-length is not supported)",
            Some("Upload-Defer-Length"),
        ));
    }
    let length = number(&req, "Upload-Length")?
        .ok_or_else(|| PhotoError::bad("missing_length", "Upload-Length is required", Some("Upload-Length")))?;
    let metadata = match header(&req, "Upload-Metadata") {
        Some(h) => parse_metadata(h)?,
        None => Default::default(),
    };
    let record = metadata.get("record").and_then(|r| r.trim().parse().ok());
    if !access::may_attach(&auth, &photos, record)? {
        return Err(PhotoError::Forbidden);
    }
    let (user, device) = (auth.user.id, auth.device);
    let p = photos.clone();
    let upload = web::block(move || p.create_upload(user, device, length, metadata)).await??;
    let info = req.connection_info();
    let location = format!("{}://{}{UPLOADS_PATH}/{}", info.scheme(), info.host(), upload.id);
    Ok(tus(actix_web::http::StatusCode::CREATED)
        .insert_header(("Location", location))
        .insert_header(("Upload-Expires", http_date(upload.expires_ms)))
        .insert_header(("Upload-Offset", "0"))
        .finish())
}

fn upload_headers(b: &mut HttpResponseBuilder, u: &Upload) {
    let offset = if u.completed.is_some() { u.length } else { u.offset };
    b.insert_header(("Upload-Offset", offset.to_string()));
    b.insert_header(("Upload-Expires", http_date(u.expires_ms)));
    if let Some(sha) = &u.completed {
        b.insert_header(("Fieldsync-Photo-Sha256", sha.as_str()));
    }
}

#[utoipa::path(
    head,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    summary = "tus: the upload's offset",
    params(("id" = String, Path)),
    responses((status = 200, description = "Upload-Offset, Upload-Length (an upload whose bytes are all in is completed first: offset = length means the photo is stored)"), (status = 404, description = "no such upload, or one to send anew"), (status = 410, description = "expired"), (status = 423, description = "a PATCH is finishing it: ask again"), (status = 507, description = "photo_storage_full: its completion found no room; ask again later")),
    security(("bearer" = [])),
)]
pub async fn head(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    id: web::Path<String>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    check_version(&req)?;
    let p = photos.clone();
    let user = auth.user.id;
    let upload = web::block(move || p.resume_completion(&id, user)).await??;
    let mut b = tus(actix_web::http::StatusCode::OK);
    upload_headers(&mut b, &upload);
    b.insert_header(("Upload-Length", upload.length.to_string()));
    if !upload.metadata.is_empty() {
        let encoded: Vec<String> = upload
            .metadata
            .iter()
            .map(|(k, v)| {
                if v.is_empty() {
                    k.clone()
                } else {
                    format!("{k} {}", base64::engine::general_purpose::STANDARD.encode(v))
                }
            })
            .collect();
        b.insert_header(("Upload-Metadata", encoded.join(",")));
    }
    Ok(b.finish())
}

#[utoipa::path(
    patch,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    summary = "tus: append bytes at the offset",
    params(("id" = String, Path)),
    responses((status = 204, description = "the new Upload-Offset"), (status = 409, description = "wrong offset"), (status = 415, description = "not an accepted format"), (status = 460, description = "checksum mismatch"), (status = 507, description = "photo_storage_full: the chunk would eat into the free space kept for records; nothing of it was kept")),
    security(("bearer" = [])),
)]
pub async fn patch(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    check_version(&req)?;
    if header(&req, "Content-Type") != Some("application/offset+octet-stream") {
        return Err(PhotoError::WrongContentType);
    }
    let offset = number(&req, "Upload-Offset")?
        .ok_or_else(|| PhotoError::bad("missing_offset", "Upload-Offset is required", Some("Upload-Offset")))?;
    let checksum = header(&req, "Upload-Checksum").map(ChunkChecksum::parse).transpose()?;
    let upload = photos.upload(&id, auth.user.id)?;
    // A declared body that cannot fit is refused before a byte is read.
    if let Some(len) = number(&req, "Content-Length")?
        && upload.completed.is_none()
        && offset == upload.offset
        && offset.saturating_add(len) > upload.length
    {
        return Err(PhotoError::TooLarge {
            what: "the body",
            size: offset.saturating_add(len),
            limit: upload.length,
        });
    }
    let done = photos.append(&id, auth.user.id, offset, checksum, payload).await?;
    let mut b = tus(actix_web::http::StatusCode::NO_CONTENT);
    upload_headers(&mut b, &done.upload);
    if done.deduplicated {
        b.insert_header(("Fieldsync-Deduplicated", "true"));
    }
    Ok(b.finish())
}

#[utoipa::path(
    delete,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    summary = "tus termination",
    params(("id" = String, Path)),
    responses((status = 204, description = "terminated"), (status = 404, description = "no such upload")),
    security(("bearer" = [])),
)]
pub async fn terminate(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    id: web::Path<String>,
) -> Result<HttpResponse, PhotoError> {
    let auth = auth?;
    check_version(&req)?;
    let p = photos.clone();
    let user = auth.user.id;
    web::block(move || p.terminate(&id, user)).await??;
    Ok(tus(actix_web::http::StatusCode::NO_CONTENT).finish())
}

/// `POST` standing in for `PATCH` or `DELETE` (`X-HTTP-Method-Override`).
#[utoipa::path(
    post,
    path = "/api/v1/uploads/{id}",
    tag = "uploads",
    summary = "tus: PATCH or DELETE through X-HTTP-Method-Override",
    params(("id" = String, Path)),
    responses((status = 204, description = "as PATCH or DELETE"), (status = 400, description = "no override")),
    security(("bearer" = [])),
)]
pub async fn method_override(
    req: HttpRequest,
    auth: Result<Authenticated, ApiError>,
    photos: web::Data<Photos>,
    id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, PhotoError> {
    match header(&req, "X-HTTP-Method-Override")
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        Some("PATCH") => patch(req, auth, photos, id, payload).await,
        Some("DELETE") => terminate(req, auth, photos, id).await,
        _ => Err(PhotoError::bad(
            "method_not_allowed",
            "POST to an upload needs X-HTTP-Method-Override: PATCH or DELETE",
            Some("X-HTTP-Method-Override"),
        )),
    }
}
