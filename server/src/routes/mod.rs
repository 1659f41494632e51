//! HTTP routes, a module per resource.

pub mod auth;
pub mod health;
pub mod photos;
pub mod sync;
pub mod uploads;
