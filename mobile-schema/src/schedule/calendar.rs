//! Working days (工作日) under China's official calendar: weekends are off except
//! the 调休 working weekends, and the official holidays are off.
//!
//! Deadlines such as "a dismantling plan filed ≥ 15 working days before works"
//! (拆除活动土壤污染防治工作方案备案) are counted with it.

use std::collections::BTreeSet;
use std::ops::RangeInclusive;

use chrono::{Datelike, Days, NaiveDate, Weekday};

/// The official calendar 2020–2026 (holidays and 调休 working weekends).
const OFFICIAL_CSV: &str = include_str!("../../../fixtures/cn_official_calendar.csv");

/// Working days before works that a dismantling plan must be filed.
pub const DISMANTLING_PLAN_WORKING_DAYS: u32 = 15;

/// The calendar text could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar line {line}: {reason}")]
    BadLine { line: usize, reason: String },
}

/// Which days are working days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkingCalendar {
    holidays: BTreeSet<NaiveDate>,
    working_weekends: BTreeSet<NaiveDate>,
    /// The years the calendar has entries for: every year has holidays, so a
    /// year without any is one whose arrangement was not loaded.
    years: BTreeSet<i32>,
}

impl WorkingCalendar {
    /// The official calendar embedded from `fixtures/cn_official_calendar.csv`.
    pub fn official() -> Result<Self, CalendarError> {
        Self::parse(OFFICIAL_CSV)
    }

    /// Parse `date,kind,festival` lines, `kind` being `holiday` or `working_weekend`.
    pub fn parse(csv_text: &str) -> Result<Self, CalendarError> {
        let mut cal = WorkingCalendar {
            holidays: BTreeSet::new(),
            working_weekends: BTreeSet::new(),
            years: BTreeSet::new(),
        };
        for (i, raw) in csv_text.lines().enumerate() {
            let line = i + 1;
            let raw = raw.trim();
            if raw.is_empty() || (line == 1 && raw.starts_with("date")) {
                continue;
            }
            let mut cols = raw.split(',');
            let (Some(date), Some(kind)) = (cols.next(), cols.next()) else {
                return Err(CalendarError::BadLine {
                    line,
                    reason: "expected date,kind,festival".into(),
                });
            };
            let date: NaiveDate = date.trim().parse().map_err(|e| CalendarError::BadLine {
                line,
                reason: format!("bad date: {e}"),
            })?;
            cal.years.insert(date.year());
            match kind.trim() {
                "holiday" => cal.holidays.insert(date),
                "working_weekend" => cal.working_weekends.insert(date),
                other => {
                    return Err(CalendarError::BadLine {
                        line,
                        reason: format!("unknown kind {other:?}"),
                    });
                }
            };
        }
        Ok(cal)
    }

    /// This calendar with the years of `more` taken from it: a year `more` has
    /// entries for is replaced whole (the State Council publishes each year's
    /// arrangement in the autumn before; an operator loads it).
    pub fn extended(mut self, more: &WorkingCalendar) -> Self {
        let replaced = |d: &NaiveDate| more.years.contains(&d.year());
        self.holidays.retain(|d| !replaced(d));
        self.working_weekends.retain(|d| !replaced(d));
        self.holidays.extend(more.holidays.iter().copied());
        self.working_weekends.extend(more.working_weekends.iter().copied());
        self.years.extend(more.years.iter().copied());
        self
    }

    /// Whether the official arrangement of `year` is loaded.
    pub fn knows_year(&self, year: i32) -> bool {
        self.years.contains(&year)
    }

    /// Whether every year `days` touches is loaded: a count of working days
    /// over them is then official, not provisional.
    pub fn knows_days(&self, days: RangeInclusive<NaiveDate>) -> bool {
        (days.start().year()..=days.end().year()).all(|y| self.knows_year(y))
    }

    /// Whether `date` is a working day. Outside the calendar's years only weekends
    /// are known, so Monday to Friday count as working days there (see
    /// [`Self::knows_days`] to tell such a count apart).
    pub fn is_working_day(&self, date: NaiveDate) -> bool {
        if self.working_weekends.contains(&date) {
            return true;
        }
        if self.holidays.contains(&date) {
            return false;
        }
        !matches!(date.weekday(), Weekday::Sat | Weekday::Sun)
    }

    /// The `n`-th working day after `from` (`from` itself not counted); a negative
    /// `n` counts backwards; `0` gives `from`.
    pub fn add_working_days(&self, from: NaiveDate, n: i32) -> NaiveDate {
        let mut day = from;
        let mut left = n.unsigned_abs();
        while left > 0 {
            let next = if n > 0 {
                day.checked_add_days(Days::new(1))
            } else {
                day.checked_sub_days(Days::new(1))
            };
            // The ends of chrono's range are far beyond any schedule; stop there.
            let Some(next) = next else { return day };
            day = next;
            if self.is_working_day(day) {
                left -= 1;
            }
        }
        day
    }

    /// Working days strictly between `a` and `b` (neither end counted); 0 when `b <= a`.
    pub fn working_days_between(&self, a: NaiveDate, b: NaiveDate) -> u32 {
        a.iter_days()
            .skip(1)
            .take_while(|d| *d < b)
            .filter(|d| self.is_working_day(*d))
            .count() as u32
    }

    /// The latest working day on which a dismantling plan can be filed for works
    /// starting on `works_start`: at least 15 working days must lie strictly between
    /// filing and works, since the day of filing is not counted (民法典 第二百零一条)
    /// and the period must have run out before the works begin.
    pub fn latest_filing_date(&self, works_start: NaiveDate) -> NaiveDate {
        self.add_working_days(works_start, -(DISMANTLING_PLAN_WORKING_DAYS as i32 + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_loaded_year_replaces_that_year_and_makes_its_counts_official() {
        let official = WorkingCalendar::official().unwrap();
        assert!(official.knows_year(2026) && !official.knows_year(2027));
        // Unknown 2027: Monday to Friday, National Day included.
        assert!(official.is_working_day(d("2027-10-01")));
        assert!(!official.knows_days(d("2027-09-20")..=d("2027-10-25")));
        assert!(!official.knows_days(d("2026-12-20")..=d("2027-01-10")));
        // A stand-in arrangement for 2027 (for the test; not the official one).
        let more = WorkingCalendar::parse(
            "date,kind,festival\n2027-10-01,holiday,国庆节\n2027-10-04,holiday,国庆节\n2027-10-09,working_weekend,国庆节\n",
        )
        .unwrap();
        let cal = official.extended(&more);
        assert!(!cal.is_working_day(d("2027-10-01")) && !cal.is_working_day(d("2027-10-04")));
        assert!(cal.is_working_day(d("2027-10-09")));
        assert!(cal.knows_days(d("2026-12-20")..=d("2027-01-10")));
        // 2026 untouched, and a loaded 2026 would replace the embedded one whole.
        assert!(!cal.is_working_day(d("2026-10-01")));
        let redone = WorkingCalendar::official()
            .unwrap()
            .extended(&WorkingCalendar::parse("2026-10-02,holiday,x").unwrap());
        assert!(redone.is_working_day(d("2026-10-01")) && !redone.is_working_day(d("2026-10-02")));
    }

    #[test]
    fn official_calendar_knows_holidays_and_tiaoxiu_weekends() {
        let cal = WorkingCalendar::official().unwrap();
        // 国庆 2024: Oct 1–7 off; Sunday 09-29 and Saturday 10-12 are working days.
        assert!(!cal.is_working_day(d("2024-10-01")));
        assert!(!cal.is_working_day(d("2024-10-07")));
        assert!(cal.is_working_day(d("2024-09-29")));
        assert!(cal.is_working_day(d("2024-10-12")));
        assert_eq!(d("2024-10-12").weekday(), Weekday::Sat);
        // 春节 2025: Jan 28 – Feb 4 off; Saturday 02-08 works.
        assert!(!cal.is_working_day(d("2025-01-28")));
        assert!(cal.is_working_day(d("2025-02-08")));
        // An ordinary weekend and weekday.
        assert!(!cal.is_working_day(d("2025-03-08")));
        assert!(cal.is_working_day(d("2025-03-10")));
    }

    #[test]
    fn adding_working_days_skips_the_national_day_week_and_counts_the_tiaoxiu_saturday() {
        let cal = WorkingCalendar::official().unwrap();
        // Mon 2024-09-30 is a working day; next working days: Tue 10-08, ..., Fri 10-11, Sat 10-12.
        assert_eq!(cal.add_working_days(d("2024-09-30"), 1), d("2024-10-08"));
        assert_eq!(cal.add_working_days(d("2024-09-30"), 5), d("2024-10-12"));
        assert_eq!(cal.add_working_days(d("2024-10-08"), -1), d("2024-09-30"));
        assert_eq!(cal.add_working_days(d("2024-10-08"), 0), d("2024-10-08"));
        assert_eq!(cal.working_days_between(d("2024-09-30"), d("2024-10-14")), 5);
        assert_eq!(cal.working_days_between(d("2024-10-14"), d("2024-09-30")), 0);
    }

    #[test]
    fn latest_filing_date_leaves_fifteen_working_days_across_spring_festival() {
        let cal = WorkingCalendar::official().unwrap();
        // Works start Mon 2025-02-17; 春节 01-28..02-04 is off.
        let start = d("2025-02-17");
        let filing = cal.latest_filing_date(start);
        assert_eq!(cal.working_days_between(filing, start), 15);
        assert!(cal.is_working_day(filing));
        // One working day later would leave only 14.
        let later = cal.add_working_days(filing, 1);
        assert_eq!(cal.working_days_between(later, start), 14);
        // Concretely: 15 working days strictly between are 01-21..01-24, 01-26, 01-27,
        // 02-05..02-08, 02-10..02-14; so the latest filing day is Mon 01-20.
        assert_eq!(filing, d("2025-01-20"));
    }

    #[test]
    fn latest_filing_date_around_national_day_2024() {
        let cal = WorkingCalendar::official().unwrap();
        let start = d("2024-10-21");
        let filing = cal.latest_filing_date(start);
        // Between: 10-08..10-12 (5 incl. Sat 调休), 10-14..10-18 (10), 09-29 (Sun 调休), 09-30,
        // and 09-25..09-27 → 15; so the filing day is Tue 09-24.
        assert_eq!(filing, d("2024-09-24"));
        assert_eq!(cal.working_days_between(filing, start), 15);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let err = WorkingCalendar::parse("date,kind,festival\n2024-01-01,vacation,x\n").unwrap_err();
        assert!(matches!(err, CalendarError::BadLine { line: 2, .. }));
    }
}
