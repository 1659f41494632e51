//! HTTP routes, a module per resource.

pub mod admin;
pub mod auth;
pub mod backup;
pub mod health;
pub mod photos;
pub mod recovery;
pub mod schedule;
pub mod sites;
pub mod sync;
pub mod uploads;

/// Every route's path and method, so a known path asked with another method
/// is answered 405 with `Allow` rather than 404. Keep in step with the
/// services registered in `startup`.
pub const ROUTES: &[(&str, &str)] = &[
    ("/healthz", "GET"),
    ("/api/v1/auth/login", "POST"),
    ("/api/v1/auth/refresh", "POST"),
    ("/api/v1/sync/push", "POST"),
    ("/api/v1/sync/pull", "GET"),
    ("/api/v1/schedule", "GET"),
    ("/api/v1/schedule/generate", "POST"),
    ("/api/v1/schedule/compliance", "GET"),
    ("/api/v1/schedule/obligations", "GET"),
    ("/api/v1/schedule/regenerate", "POST"),
    ("/api/v1/sync/recover", "POST"),
    ("/api/v1/admin/backup", "POST"),
    ("/api/v1/sites", "GET, POST"),
    ("/api/v1/sites/import", "POST"),
];
