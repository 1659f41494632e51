//! HTTP routes, a module per resource.

pub mod admin;
pub mod auth;
pub mod health;
pub mod sync;
