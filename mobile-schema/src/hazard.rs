//! A hazard (隐患): a finding of an inspection, followed until it is closed (销号).

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{HazardId, InspectionId, SiteId};
use crate::inspection::Evidence;
use crate::workflow::HazardState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Hazard {
    pub id: HazardId,
    pub schema_version: u32,
    pub inspection_id: InspectionId,
    pub site_id: SiteId,
    /// A finding code such as `F-LEAK`.
    pub category: String,
    /// A level of the configured severity scale (see `severity`).
    pub severity: String,
    pub description: String,
    /// Deadline for rectification (整改期限), a day in Asia/Shanghai.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    #[serde(default)]
    pub responsible_party: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
    #[serde(default)]
    pub state: HazardState,
}

impl Hazard {
    pub const SCHEMA_VERSION: u32 = 1;
}
