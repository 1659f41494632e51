//! A scheduled inspection (检查任务) and the random draw (双随机抽查) that chose it.

use chrono::{DateTime, FixedOffset, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{DrawId, SiteId, TaskId, UserId};
use crate::region::RegionCode;
use crate::workflow::TaskState;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Task {
    pub id: TaskId,
    pub schema_version: u32,
    pub site_id: SiteId,
    pub year: i32,
    pub window: TaskWindow,
    /// The rule the task serves.
    pub rule: TaskRule,
    /// The team: two distinct inspectors.
    pub assigned: Vec<UserId>,
    /// Set for drawn tasks: the draw that chose the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw_id: Option<DrawId>,
    /// Drawn tasks stay hidden from inspectors until this day (Asia/Shanghai).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hidden_until: Option<NaiveDate>,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub state: TaskState,
}

impl Task {
    pub const SCHEMA_VERSION: u32 = 1;
}

/// Earliest start and due date, both inclusive days in Asia/Shanghai.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TaskWindow {
    pub earliest_start: NaiveDate,
    pub due: NaiveDate,
}

impl TaskWindow {
    pub fn contains(&self, day: NaiveDate) -> bool {
        self.earliest_start <= day && day <= self.due
    }
}

/// Why a task exists: the rule of the graded-supervision plan it serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskRule {
    /// 一级: the inspection before the flood season.
    LevelOnePreFlood,
    /// 一级: the second inspection, after the flood season has begun.
    LevelOneSecond,
    /// 二级: the yearly inspection.
    LevelTwoAnnual,
    /// 三级: chosen by the random draw (or first, for a flagged pond).
    LevelThreeDrawn,
    /// Extra inspection in an intensified period (汛期, 重大活动).
    Intensified,
    /// A periodic check of a key supervision unit.
    KeyUnitPeriodic,
    /// A periodic check of remediation works.
    RemediationPeriodic,
}

/// A recorded random draw, so that anyone can re-run it and get the same result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RandomDraw {
    pub id: DrawId,
    pub schema_version: u32,
    pub year: i32,
    pub region_code: RegionCode,
    /// SHA-256 of the pool (ids sorted, flags marked) the draw was made from:
    /// see `schedule::draw::pool_hash`.
    pub pool_hash: String,
    pub pool_size: u32,
    /// The pool: the county's 三级 ponds on the day of the draw, sorted. Empty
    /// in draws recorded before pools were.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<SiteId>,
    /// The ponds of the pool flagged for priority (优先抽查) that day, sorted:
    /// a later list may change the flags, the draw must still re-run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flagged: Vec<SiteId>,
    /// The seed, as decimal text (a u64 does not fit a JSON number everywhere).
    pub seed: String,
    /// How the draw was made, e.g. `chacha20-v1: flagged first, then Fisher-Yates`.
    pub method: String,
    pub drawn_sites: Vec<SiteId>,
    pub drawn_inspectors: Vec<UserId>,
    pub drawn_by: UserId,
    pub drawn_at: DateTime<FixedOffset>,
}

impl RandomDraw {
    pub const SCHEMA_VERSION: u32 = 1;
}
