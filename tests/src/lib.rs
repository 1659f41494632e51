//! # tests
//!
//! End-to-end tests of fieldsync: the real `fieldsync` server as its own process
//! on a free port with its own temporary sled folder, and real device replicas,
//! in process or as `fieldsync-device` processes ([`device`]).

pub mod api;
pub mod bench;
pub mod device;
pub mod harness;
pub mod http;
pub mod photos;
pub mod proxy;
pub mod storm;
pub mod tablet;
