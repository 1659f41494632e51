//! HTTP routes, a module per resource.

pub mod admin;
pub mod auth;
pub mod hazards;
pub mod health;
pub mod metrics;
pub mod photos;
pub mod records;
pub mod reviews;
pub mod schedule;
pub mod sync;
pub mod uploads;

/// Every route's path and method, so a known path asked with another method
/// is answered 405 with `Allow` rather than 404. Keep in step with the
/// services registered in `startup`.
pub const ROUTES: &[(&str, &str)] = &[
    ("/healthz", "GET"),
    ("/metrics", "GET"),
    ("/api/v1/auth/login", "POST"),
    ("/api/v1/auth/refresh", "POST"),
    ("/api/v1/sync/push", "POST"),
    ("/api/v1/sync/pull", "GET"),
    ("/api/v1/records/{id}", "GET"),
    ("/api/v1/schedule", "GET"),
    ("/api/v1/schedule/generate", "POST"),
    ("/api/v1/schedule/compliance", "GET"),
    ("/api/v1/schedule/obligations", "GET"),
    ("/api/v1/schedule/regenerate", "POST"),
    ("/api/v1/reviews", "GET"),
    ("/api/v1/reviews/{inspection_id}", "GET"),
    ("/api/v1/reviews/{inspection_id}/approve", "POST"),
    ("/api/v1/reviews/{inspection_id}/return", "POST"),
    ("/api/v1/inspections", "GET"),
    ("/api/v1/hazards", "GET"),
    ("/api/v1/hazards/overdue", "GET"),
    ("/api/v1/hazards/{id}/{action}", "POST"),
];
