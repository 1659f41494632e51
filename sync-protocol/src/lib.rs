//! # sync-protocol
//!
//! How fieldsync's replicas and server name, order and merge changes, with no I/O.
//!
//! - A **change** `(replica_id, seq)` writes **versions** of a record's merge units
//!   ([`change`]); a unit's state is a function of the set of versions known
//!   ([`unit`]): live versions, the winner by `(hlc, id)`, and conflicts kept for a
//!   person to resolve.
//! - **Hybrid logical clocks** order versions ([`hlc`]); only the server judges
//!   skew and caps a clock that runs too far ahead.
//! - **Workflow** (inspection status, review, hazard lifecycle, task state) is not
//!   merged: the server applies transitions in arrival order ([`engine`]).
//! - Each change's **outcome** is recorded under `(replica_id, seq)`, so a retry is
//!   answered with the same outcome and nothing is applied twice ([`outcome`]).
//! - [`reference::ReferenceServer`] runs the rules over in-memory maps: it is the
//!   model the real server is checked against.
//!
//! `docs/protocol.md` describes the same precisely enough for another client.

pub mod change;
pub mod clock;
pub mod columns;
mod compact;
pub mod device_report;
pub mod engine;
pub mod history;
pub mod hlc;
pub mod ids;
pub mod local;
pub mod outcome;
pub mod prepared;
pub mod recovery;
pub mod reference;
pub mod rules;
pub mod scope;
pub mod state;
pub mod unit;
pub mod value;
pub mod wire;

pub use change::{Actor, Change, Op, UnitWrite, VersionSet};
pub use hlc::{Hlc, HlcClock};
pub use ids::{ReplicaId, VersionId};
pub use outcome::{ChangeOutcome, Flag, Outcome, Refusal, RefusalCode};
pub use prepared::Prepared;
pub use state::RecordState;
pub use value::UnitValue;
