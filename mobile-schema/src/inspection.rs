//! An inspection (现场检查): who, where, when, the checklist answers, evidence and
//! the inspected party's signature or refusal.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::geo::{GnssFix, LatLon};
use crate::ids::{DeviceId, InspectionId, ItemId, Sha256Hex, SiteId, TaskId, UserId};
use crate::workflow::InspectionStatus;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Inspection {
    pub id: InspectionId,
    pub schema_version: u32,
    pub site_id: SiteId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    /// The inspectors; the rules want at least two (执法人员不少于两人).
    pub team: Vec<TeamMember>,
    /// The device that created the record.
    pub device_id: DeviceId,
    /// Start and end merge together: an end from one edit and a start from another
    /// could put the end before the start.
    pub times: TimeSpan,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<GnssFix>,
    pub checklist: ChecklistRef,
    /// Answers by item code; each item merges on its own.
    #[serde(default)]
    pub answers: BTreeMap<String, ChecklistAnswer>,
    /// Photos and files; an observed-remove collection keyed by item id.
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub conclusion: String,
    /// The inspected party's signature, or its recorded refusal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signoff: Option<Signoff>,
    /// Decided by the server's workflow, never merged.
    #[serde(default)]
    pub status: InspectionStatus,
}

impl Inspection {
    pub const SCHEMA_VERSION: u32 = 1;
}

/// One inspector of the team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TeamMember {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<UserId>,
    pub name: String,
    /// Law-enforcement certificate number (执法证号).
    pub certificate_no: String,
}

/// Start and end of the visit, from the device clock with its offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TimeSpan {
    pub start: DateTime<FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime<FixedOffset>>,
}

/// Which checklist template, and which version of it, the answers follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChecklistRef {
    pub template_id: String,
    pub version: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemResult {
    Ok,
    Problem,
    NotApplicable,
}

/// The answer to one checklist item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ChecklistAnswer {
    pub result: ItemResult,
    #[serde(default)]
    pub note: String,
    /// Evidence items of this inspection that support the answer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<ItemId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    #[default]
    Photo,
    Document,
}

/// A photo or file, addressed by its SHA-256; the bytes travel separately.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Evidence {
    pub id: ItemId,
    pub sha256: Sha256Hex,
    #[serde(default)]
    pub kind: EvidenceKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_time: Option<DateTime<FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<LatLon>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    #[serde(default)]
    pub caption: String,
}

/// Either the inspected party signed, or refused with a reason before a witness.
/// Either one makes the record signed, and a signed record is locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Signoff {
    Signed {
        signer_name: String,
        #[serde(default)]
        signer_title: String,
        /// The signature image, stored as evidence.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        image_sha256: Option<Sha256Hex>,
        signed_at: DateTime<FixedOffset>,
    },
    Refused {
        reason: String,
        witness: Witness,
        recorded_at: DateTime<FixedOffset>,
    },
}

/// The person who saw the refusal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Witness {
    pub name: String,
    #[serde(default)]
    pub role: String,
}
