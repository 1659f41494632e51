//! The yearly inspection schedule (issue 9): pure rules, no I/O.
//!
//! - 一级 ponds: two inspections a year, one before the flood season, the other
//!   after it has begun in a later calendar month.
//! - 二级 ponds: one a year.
//! - 三级 ponds: in each county at least half (rounded up), every flagged pond
//!   first, the rest by a seeded, recorded random draw (双随机, see [`draw`]).
//! - Intensified periods (汛期, 重大活动): extra inspections per level.
//! - Key supervision units and remediation sites: configurable periodic checks.
//!
//! Every task gets a team of two distinct inspectors ([`teams`]); [`compliance`]
//! measures what was done against what the rules require; [`calendar`] counts
//! working days for dated obligations.

pub mod calendar;
pub mod compliance;
pub mod draw;
pub mod flood;
pub mod generate;
pub mod obligations;
pub mod teams;

use chrono::{DateTime, FixedOffset, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use calendar::{CalendarError, WorkingCalendar};
pub use compliance::{ComplianceReport, DoneInspection, compliance};
pub use flood::{FloodCalendar, FloodOverride, FloodSeason};
pub use generate::{Regeneration, generate, regenerate_for_pond};
pub use obligations::{ObligationState, ObligationStatus, obligations_report};

use crate::ids::{SiteId, UserId};
use crate::region::RegionCode;
use crate::site::{Site, SiteKind, SupervisionLevel};
use crate::task::{RandomDraw, Task};

/// Why a schedule could not be made. No partial schedule is ever returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error(
        "no valid team of two inspectors for site {site} in county {county}: \
         fewer than two unrecused inspectors in the county, its city and its province"
    )]
    NoValidTeam { county: RegionCode, site: SiteId },
    #[error("flood season of {region} in {year}: {reason}")]
    BadFloodSeason {
        region: RegionCode,
        year: i32,
        reason: String,
    },
    #[error("intensified period {label:?}: {reason}")]
    BadPeriod { label: String, reason: String },
}

/// An inspector (执法人员) who can be put on a team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Inspector {
    pub id: UserId,
    /// The bureau's region: a county, a city or the province.
    pub region: RegionCode,
    /// Sites the inspector is recused from (回避).
    #[serde(default)]
    pub recused_from: Vec<SiteId>,
}

/// When an intensified period runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PeriodDates {
    /// Each pond's own flood season (汛期), from the flood calendar.
    FloodSeason,
    /// Fixed dates, e.g. a major event (重大活动); inclusive.
    Fixed { start: NaiveDate, end: NaiveDate },
}

/// A period of intensified supervision (加大监督检查力度和频次) and how many extra
/// inspections each scheduled pond of a level gets in it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct IntensifiedPeriod {
    pub label: String,
    pub dates: PeriodDates,
    /// Extra inspections per pond, by level; a level not listed gets none.
    pub extra: Vec<(SupervisionLevel, u32)>,
}

impl IntensifiedPeriod {
    pub fn extra_for(&self, level: SupervisionLevel) -> u32 {
        self.extra.iter().filter(|(l, _)| *l == level).map(|(_, n)| *n).sum()
    }
}

/// How often a periodic check recurs; periods are calendar-aligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Periodicity {
    Monthly,
    Quarterly,
    HalfYearly,
    Yearly,
}

impl Periodicity {
    /// Months per period.
    pub fn months(self) -> u32 {
        match self {
            Periodicity::Monthly => 1,
            Periodicity::Quarterly => 3,
            Periodicity::HalfYearly => 6,
            Periodicity::Yearly => 12,
        }
    }
}

/// A periodic check of one kind of site: key supervision units (e.g. quarterly)
/// or remediation works (e.g. monthly).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeriodicCheck {
    pub kind: SiteKind,
    pub every: Periodicity,
}

/// Everything a schedule is generated from.
#[derive(Debug, Clone)]
pub struct ScheduleRequest<'a> {
    pub year: i32,
    /// The jurisdiction: a county, or a city (covering its counties), or a province.
    pub jurisdiction: RegionCode,
    /// The day of generation: the level in force on this day applies (or on
    /// January 1 of the year when generated ahead of it).
    pub generated_on: NaiveDate,
    /// Sites of any kind; those outside the jurisdiction or closed are ignored.
    pub sites: &'a [Site],
    pub flood: &'a FloodCalendar,
    pub intensified: &'a [IntensifiedPeriod],
    pub periodic: &'a [PeriodicCheck],
    pub inspectors: &'a [Inspector],
    /// The draw's seed; each county's seed is derived from it ([`draw::county_seed`]).
    pub seed: u64,
    pub drawn_by: UserId,
    pub drawn_at: DateTime<FixedOffset>,
    /// A secret of the deployment, mixed into the ids of tasks hidden from
    /// inspectors: a task id is otherwise worked out from its pond's, and a
    /// write to it would tell which ponds were drawn. The same salt gives the
    /// same ids.
    pub hidden_salt: &'a str,
}

/// A generated schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Schedule {
    pub year: i32,
    pub jurisdiction: RegionCode,
    pub tasks: Vec<Task>,
    /// One per county with 三级 ponds.
    pub draws: Vec<RandomDraw>,
    /// Active ponds with no level in force: nothing is scheduled for them.
    pub unlevelled: Vec<SiteId>,
}
