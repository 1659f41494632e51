//! A supervisor's decision on an inspection, and an addendum: a correction
//! appended to a signed inspection.

use chrono::{DateTime, FixedOffset};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{AddendumId, InspectionId, ItemId, ReviewId, UserId};
use crate::workflow::AddendumState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    /// Returned to the inspector with comments.
    Return,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Review {
    pub id: ReviewId,
    pub schema_version: u32,
    pub inspection_id: InspectionId,
    pub reviewer: UserId,
    pub decision: Decision,
    pub decided_at: DateTime<FixedOffset>,
    /// Comments; people add them over time, so they merge one by one.
    #[serde(default)]
    pub comments: Vec<Comment>,
}

impl Review {
    pub const SCHEMA_VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Comment {
    pub id: ItemId,
    pub author: UserId,
    pub text: String,
    /// The part of the inspection the comment is about, e.g. `answers/TP-03`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    pub written_at: DateTime<FixedOffset>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Addendum {
    pub id: AddendumId,
    pub schema_version: u32,
    pub inspection_id: InspectionId,
    pub author: UserId,
    pub text: String,
    /// The unit of the inspection it corrects and the value proposed, when it
    /// came from an edit that arrived after signing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrects: Option<Correction>,
    pub written_at: DateTime<FixedOffset>,
    #[serde(default)]
    pub state: AddendumState,
}

impl Addendum {
    pub const SCHEMA_VERSION: u32 = 1;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Correction {
    pub unit: String,
    pub value: serde_json::Value,
}
