//! # mobile-schema
//!
//! The domain of fieldsync as Rust types: the sites inspectors visit (tailings
//! ponds 尾矿库, key supervision units 土壤污染重点监管单位, remediation sites),
//! inspections, hazards (隐患), reviews, addenda, tasks and random draws; the
//! checklists and severity scales; the workflow state machines; validation into
//! errors and flags; the imports of official lists; and the schedule rules.
//!
//! Every record serializes to stable snake_case JSON with a `schema_version`, and
//! declares its merge units (see [`record`]), which the sync protocol merges.

pub mod checklist;
pub mod geo;
pub mod hazard;
pub mod ids;
pub mod imports;
pub mod inspection;
pub mod record;
pub mod region;
pub mod review;
pub mod rule_settings;
pub mod sample;
pub mod schedule;
pub mod schema;
pub mod severity;
pub mod site;
pub mod task;
pub mod time;
pub mod validation;
pub mod workflow;

pub use record::{AnyRecord, RecordKind};
