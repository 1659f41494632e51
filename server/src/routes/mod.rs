//! HTTP routes, a module per resource.

pub mod health;
