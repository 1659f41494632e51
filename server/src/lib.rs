//! # server
//!
//! The fieldsync sync server: actix-web over an embedded sled store. The binary
//! `fieldsync` is thin (`main.rs`); everything testable lives here.

pub mod config;
pub mod routes;
pub mod startup;
