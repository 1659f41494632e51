//! The flood season (汛期) of each region and year. Defaults to 04-01..09-30;
//! 入汛 is declared earlier in some years and regions (桂北 in March), so the
//! dates are overridable per region and year. A county without its own override
//! inherits its city's, then its province's.

use std::collections::BTreeMap;

use chrono::{Datelike, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ScheduleError;
use crate::region::RegionCode;

/// A flood season: first and last day, inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FloodSeason {
    pub start: NaiveDate,
    pub end: NaiveDate,
}

impl FloodSeason {
    /// Guangxi's usual 4–9月.
    pub fn default_for(year: i32) -> Self {
        // Every year has April 1 and September 30; the fallback only satisfies the types.
        let day = |m, d| NaiveDate::from_ymd_opt(year, m, d).unwrap_or(NaiveDate::MIN);
        FloodSeason {
            start: day(4, 1),
            end: day(9, 30),
        }
    }

    /// The last day that counts as "before the flood season" (汛期前).
    pub fn pre_flood_deadline(&self) -> NaiveDate {
        self.start.pred_opt().unwrap_or(self.start)
    }

    /// The first day of the month after the pre-flood deadline's month, or the
    /// start of the season if later: the earliest start of 一级's second inspection,
    /// so that the two fall in different calendar months.
    pub fn second_inspection_start(&self) -> NaiveDate {
        let deadline = self.pre_flood_deadline();
        let next_month = deadline
            .with_day(1)
            .and_then(|d| d.checked_add_months(chrono::Months::new(1)))
            .unwrap_or(self.start);
        next_month.max(self.start)
    }

    fn validate(&self, region: RegionCode, year: i32) -> Result<(), ScheduleError> {
        let bad = |reason: &str| ScheduleError::BadFloodSeason {
            region,
            year,
            reason: reason.to_string(),
        };
        if self.start.year() != year || self.end.year() != year {
            return Err(bad("the season must lie within the year"));
        }
        if self.end < self.start {
            return Err(bad("the season ends before it starts"));
        }
        if self.start.ordinal() == 1 {
            return Err(bad("a season starting on January 1 leaves no day before it"));
        }
        // The second 一级 inspection needs a later month within the year.
        if self.pre_flood_deadline().month() == 12 {
            return Err(bad("a season starting in December leaves no later month"));
        }
        Ok(())
    }
}

/// One override, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FloodOverride {
    pub region: RegionCode,
    pub year: i32,
    pub season: FloodSeason,
}

/// The flood seasons in force: defaults plus overrides per region and year.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FloodCalendar {
    overrides: BTreeMap<(RegionCode, i32), FloodSeason>,
}

impl FloodCalendar {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_overrides(overrides: impl IntoIterator<Item = FloodOverride>) -> Result<Self, ScheduleError> {
        let mut cal = Self::new();
        for o in overrides {
            cal.set(o.region, o.year, o.season)?;
        }
        Ok(cal)
    }

    /// Set the season of `region` in `year`; refused if it would leave the 一级 rule unschedulable.
    pub fn set(&mut self, region: RegionCode, year: i32, season: FloodSeason) -> Result<(), ScheduleError> {
        season.validate(region, year)?;
        self.overrides.insert((region, year), season);
        Ok(())
    }

    /// The season of `region` in `year`: its own override, else its city's, else its province's, else the default.
    pub fn season_for(&self, region: RegionCode, year: i32) -> FloodSeason {
        [region, region.city(), region.province()]
            .into_iter()
            .find_map(|r| self.overrides.get(&(r, year)).copied())
            .unwrap_or_else(|| FloodSeason::default_for(year))
    }

    pub fn overrides(&self) -> impl Iterator<Item = FloodOverride> + '_ {
        self.overrides
            .iter()
            .map(|(&(region, year), &season)| FloodOverride { region, year, season })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    fn r(s: &str) -> RegionCode {
        s.parse().unwrap()
    }

    #[test]
    fn default_season_is_april_to_september_with_deadline_march_31() {
        let s = FloodCalendar::new().season_for(r("450332"), 2025);
        assert_eq!(
            s,
            FloodSeason {
                start: d("2025-04-01"),
                end: d("2025-09-30")
            }
        );
        assert_eq!(s.pre_flood_deadline(), d("2025-03-31"));
        assert_eq!(s.second_inspection_start(), d("2025-04-01"));
    }

    #[test]
    fn county_inherits_city_then_province_override() {
        let mut cal = FloodCalendar::new();
        let early = FloodSeason {
            start: d("2025-03-15"),
            end: d("2025-09-30"),
        };
        let province = FloodSeason {
            start: d("2025-03-20"),
            end: d("2025-10-31"),
        };
        cal.set(r("450300"), 2025, early).unwrap();
        cal.set(r("450000"), 2025, province).unwrap();
        assert_eq!(cal.season_for(r("450332"), 2025), early);
        assert_eq!(cal.season_for(r("450103"), 2025), province);
        assert_eq!(cal.season_for(r("450332"), 2024), FloodSeason::default_for(2024));
        assert_eq!(early.pre_flood_deadline(), d("2025-03-14"));
        // Deadline in March, so the second inspection starts in April, not on 03-15.
        assert_eq!(early.second_inspection_start(), d("2025-04-01"));
    }

    #[test]
    fn seasons_that_break_the_rule_are_refused() {
        let mut cal = FloodCalendar::new();
        let outside = FloodSeason {
            start: d("2024-12-01"),
            end: d("2025-09-30"),
        };
        assert!(cal.set(r("450300"), 2025, outside).is_err());
        let jan1 = FloodSeason {
            start: d("2025-01-01"),
            end: d("2025-09-30"),
        };
        assert!(cal.set(r("450300"), 2025, jan1).is_err());
        let backwards = FloodSeason {
            start: d("2025-05-01"),
            end: d("2025-04-30"),
        };
        assert!(cal.set(r("450300"), 2025, backwards).is_err());
    }
}
