//! The API's description, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /api/v1/openapi.json`. It is also the route
//! table the 405 answer reads (which methods a known path takes), so the
//! description and the router cannot drift apart without a test noticing
//! (`tests/tests/openapi.rs` calls every documented route on a real server).

use std::sync::OnceLock;

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "fieldsync",
        description = "Offline-first sync for environmental field inspections: push and pull of records, \
                       photos over tus, review, hazards, schedules and administration. \
                       Errors are JSON `{code, message, field}`."
    ),
    paths(
        routes::health::healthz,
        routes::metrics::metrics,
        openapi_json,
        routes::auth::login,
        routes::auth::refresh,
        routes::admin::create_user,
        routes::admin::list_users,
        routes::admin::update_user,
        routes::admin::list_devices,
        routes::admin::revoke_device,
        routes::sites::list,
        routes::sites::create,
        routes::sites::import,
        routes::backup::backup,
        routes::sync::push,
        routes::sync::pull,
        routes::recovery::recover,
        routes::records::show,
        routes::reviews::queue,
        routes::reviews::show,
        routes::reviews::approve,
        routes::reviews::return_,
        routes::reviews::list_inspections,
        routes::hazards::list,
        routes::hazards::overdue,
        routes::hazards::step,
        routes::schedule::generate,
        routes::schedule::regenerate,
        routes::schedule::flood_season,
        routes::schedule::flood_seasons,
        routes::schedule::show,
        routes::schedule::compliance,
        routes::schedule::obligations,
        routes::uploads::options,
        routes::uploads::upload_options,
        routes::uploads::create,
        routes::uploads::head,
        routes::uploads::patch,
        routes::uploads::terminate,
        routes::uploads::method_override,
        routes::photos::original,
        routes::photos::thumbnail,
        routes::photos::info,
        routes::photos::evidence,
    ),
    modifiers(&BearerToken)
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The access token from `/api/v1/auth/login`, as `Authorization: Bearer`.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The description as JSON, built once.
pub fn document() -> &'static str {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| ApiDoc::openapi().to_json().unwrap_or_else(|_| "{}".into()))
}

/// One documented path: its segments (`{x}` matches any one segment) and methods.
#[derive(Debug)]
struct Route {
    segments: Vec<String>,
    methods: Vec<&'static str>,
}

fn table() -> &'static [Route] {
    static TABLE: OnceLock<Vec<Route>> = OnceLock::new();
    TABLE.get_or_init(|| {
        let doc = ApiDoc::openapi();
        doc.paths
            .paths
            .iter()
            .map(|(path, item)| {
                let ops = [
                    ("GET", item.get.is_some()),
                    ("HEAD", item.head.is_some()),
                    ("POST", item.post.is_some()),
                    ("PUT", item.put.is_some()),
                    ("PATCH", item.patch.is_some()),
                    ("DELETE", item.delete.is_some()),
                    ("OPTIONS", item.options.is_some()),
                ];
                Route {
                    segments: path.split('/').map(str::to_owned).collect(),
                    methods: ops.iter().filter(|(_, on)| *on).map(|(m, _)| *m).collect(),
                }
            })
            .collect()
    })
}

/// The methods a documented path takes (`Allow`), or `None` for a path the
/// server does not serve at all.
pub fn allowed_methods(path: &str) -> Option<String> {
    let asked: Vec<&str> = path.split('/').collect();
    // A literal segment beats a template: `/hazards/overdue` is not `/hazards/{id}`.
    let fits = |r: &&Route| {
        r.segments.len() == asked.len()
            && r.segments
                .iter()
                .zip(&asked)
                .all(|(s, a)| s == a || (s.starts_with('{') && s.ends_with('}') && !a.is_empty()))
    };
    let literal = |r: &&Route| r.segments.iter().filter(|s| !s.starts_with('{')).count();
    table()
        .iter()
        .filter(fits)
        .max_by_key(literal)
        .map(|r| r.methods.join(", "))
}

#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    summary = "This description (OpenAPI 3.1)",
    responses((status = 200, description = "the OpenAPI document"))
)]
#[actix_web::get("/api/v1/openapi.json")]
pub async fn openapi_json() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok()
        .content_type("application/json")
        .body(document())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_is_written_in_full_and_has_a_method() {
        let doc = ApiDoc::openapi();
        assert!(doc.paths.paths.len() >= 30);
        for (path, _) in doc.paths.paths.iter() {
            assert!(
                path == "/healthz" || path == "/metrics" || path.starts_with("/api/v1/"),
                "{path}"
            );
            assert!(allowed_methods(path).is_some_and(|m| !m.is_empty()), "{path}");
        }
    }

    #[test]
    fn templates_match_one_segment_and_literals_win() {
        assert_eq!(allowed_methods("/api/v1/sync/push").as_deref(), Some("POST"));
        assert_eq!(allowed_methods("/api/v1/hazards/overdue").as_deref(), Some("GET"));
        assert_eq!(allowed_methods("/api/v1/hazards/abc/close").as_deref(), Some("POST"));
        assert_eq!(allowed_methods("/api/v1/photos/abc").as_deref(), Some("GET, HEAD"));
        assert_eq!(allowed_methods("/api/v1/photos//thumbnail"), None);
        assert_eq!(allowed_methods("/api/v1/sync/push/extra"), None);
        assert_eq!(allowed_methods("/api/v1/sync"), None);
    }
}

#[cfg(test)]
mod served {
    use super::*;

    /// Every path a route module registers (`#[get("...")]` and the like, or
    /// `web::resource("...")`), read from the source: a route served but not
    /// described fails here.
    fn registered_paths() -> Vec<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
        let mut out = Vec::new();
        let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).collect();
        files.push(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/openapi.rs"));
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for line in text.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
                let quoted = |prefix: &str| {
                    let at = line.find(prefix)? + prefix.len();
                    line[at..].split('"').next().map(str::to_owned)
                };
                for prefix in [
                    "#[get(\"",
                    "#[post(\"",
                    "#[put(\"",
                    "#[patch(\"",
                    "#[delete(\"",
                    "#[head(\"",
                    "#[actix_web::get(\"",
                    "web::resource(\"",
                    "const UPLOADS_PATH: &str = \"",
                ] {
                    if let Some(path) = quoted(prefix) {
                        out.push(path);
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_registered_path_is_described() {
        let doc = ApiDoc::openapi();
        let registered = registered_paths();
        assert!(registered.len() >= 30, "the scan found too little: {registered:?}");
        for path in registered {
            assert!(
                doc.paths.paths.contains_key(&path),
                "{path} is served but not in the OpenAPI document"
            );
        }
    }
}
