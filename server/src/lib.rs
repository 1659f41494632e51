//! # server
//!
//! The fieldsync sync server: actix-web over an embedded sled store. The binary
//! `fieldsync` is thin (`main.rs`); everything testable lives here.

pub mod access;
pub mod accounts;
pub mod admin_client;
pub mod auth;
pub mod body;
pub mod config;
pub mod device_status;
pub mod error;
pub mod hazards;
pub mod list_batches;
pub mod metrics;
pub mod office;
pub mod openapi;
pub mod orphans;
pub mod photos;
pub mod push_effects;
pub mod query;
pub mod ratelimit;
pub mod record_detail;
pub mod review;
pub mod review_cli;
pub mod routes;
pub mod schedule;
pub mod server_replica;
pub mod site_moves;
pub mod sites;
pub mod startup;
pub mod storage;
pub mod tls;
