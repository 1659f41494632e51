//! The dated obligations of key supervision units (重点监管单位), tracked per
//! unit: each one's due date, whether and when it was received, and whether
//! that was on time. A dismantling plan (拆除活动土壤污染防治工作方案) is due 15
//! working days before its works start, counted with the official calendar
//! (调休 weekends included), so its due date is computed, not typed.

use chrono::{Datelike as _, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::calendar::WorkingCalendar;
use crate::ids::{ItemId, SiteId};
use crate::region::RegionCode;
use crate::site::{Obligation, ObligationKind, Site, SiteKind};

/// Where an obligation stands on the report's day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObligationState {
    /// Received by its due date.
    OnTime,
    /// Received after its due date.
    Late,
    /// Not received and its due date has passed.
    Overdue,
    /// Not received, not yet due.
    Pending,
    /// Neither due date nor works start recorded: it cannot be judged.
    Undated,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObligationStatus {
    pub site_id: SiteId,
    pub site_name: String,
    pub region_code: RegionCode,
    pub obligation_id: ItemId,
    pub kind: ObligationKind,
    pub period: String,
    /// The due date in force: the recorded one, or for a dismantling plan the
    /// latest filing day before its works.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub due: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received: Option<NaiveDate>,
    pub state: ObligationState,
    /// The due date was counted over a year whose official calendar is not
    /// loaded (Monday to Friday taken as working days): it may move once the
    /// operator loads that year's arrangement.
    #[serde(default, skip_serializing_if = "is_false")]
    pub provisional: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Whether `o`'s due date rests on a working-day count over a year the
/// calendar does not know.
pub fn provisional(o: &Obligation, due: Option<NaiveDate>, calendar: &WorkingCalendar) -> bool {
    match (o.kind, o.works_start, due) {
        (ObligationKind::DemolitionPlanFiling, Some(start), Some(due)) => !calendar.knows_days(due.min(start)..=start),
        _ => false,
    }
}

/// The due date an obligation is judged by.
pub fn due_date(o: &Obligation, calendar: &WorkingCalendar) -> Option<NaiveDate> {
    match (o.kind, o.works_start) {
        (ObligationKind::DemolitionPlanFiling, Some(start)) => Some(calendar.latest_filing_date(start)),
        _ => o.due,
    }
}

/// How an obligation stands on `today`.
pub fn state_of(o: &Obligation, calendar: &WorkingCalendar, today: NaiveDate) -> ObligationState {
    state_for(due_date(o, calendar), o.received, today)
}

fn state_for(due: Option<NaiveDate>, received: Option<NaiveDate>, today: NaiveDate) -> ObligationState {
    match (due, received) {
        (Some(due), Some(got)) if got <= due => ObligationState::OnTime,
        (Some(_), Some(_)) => ObligationState::Late,
        (Some(due), None) if due < today => ObligationState::Overdue,
        (Some(_), None) => ObligationState::Pending,
        (None, _) => ObligationState::Undated,
    }
}

/// The obligations of the key units of `region` that belong to `year` (their
/// period names the year, or their due date falls in it), by unit and due date.
pub fn obligations_report(
    year: i32,
    region: RegionCode,
    today: NaiveDate,
    sites: &[Site],
    calendar: &WorkingCalendar,
) -> Vec<ObligationStatus> {
    let year_text = year.to_string();
    let mut out = Vec::new();
    for s in sites
        .iter()
        .filter(|s| s.kind() == SiteKind::KeyUnit && region.covers(s.region_code))
    {
        for o in &s.obligations {
            let due = due_date(o, calendar);
            let of_year = o.period.starts_with(&year_text) || due.is_some_and(|d| d.year() == year);
            if !of_year {
                continue;
            }
            out.push(ObligationStatus {
                site_id: s.id,
                site_name: s.name.clone(),
                region_code: s.region_code,
                obligation_id: o.id,
                kind: o.kind,
                period: o.period.clone(),
                due,
                received: o.received,
                state: state_for(due, o.received, today),
                provisional: provisional(o, due, calendar),
            });
        }
    }
    out.sort_by_key(|o| (o.region_code, o.site_id, o.due));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn obligation(kind: ObligationKind, due: Option<&str>, received: Option<&str>, works: Option<&str>) -> Obligation {
        Obligation {
            id: ItemId::generate(),
            kind,
            period: "2024".into(),
            due: due.map(d),
            received: received.map(d),
            works_start: works.map(d),
            note: String::new(),
        }
    }

    #[test]
    fn received_due_and_missing_obligations_are_told_apart() {
        let cal = WorkingCalendar::official().unwrap();
        let today = d("2024-07-01");
        let report = |due, received| {
            state_of(
                &obligation(ObligationKind::EmissionReport, due, received, None),
                &cal,
                today,
            )
        };
        assert_eq!(report(Some("2024-06-30"), Some("2024-06-30")), ObligationState::OnTime);
        assert_eq!(report(Some("2024-06-30"), Some("2024-07-01")), ObligationState::Late);
        assert_eq!(report(Some("2024-06-30"), None), ObligationState::Overdue);
        assert_eq!(report(Some("2024-07-01"), None), ObligationState::Pending);
        assert_eq!(report(None, None), ObligationState::Undated);
    }

    #[test]
    fn a_dismantling_plan_is_due_fifteen_working_days_before_works_across_national_day() {
        let cal = WorkingCalendar::official().unwrap();
        // Works on 2024-10-21: 国庆 (10-01..07 off, Sunday 09-29 and Saturday 10-12
        // worked) lies in between. Strictly between 09-24 and 10-21 are 09-25..27,
        // 09-29, 09-30, 10-08..12 and 10-14..18: fifteen working days.
        let o = obligation(
            ObligationKind::DemolitionPlanFiling,
            None,
            Some("2024-09-25"),
            Some("2024-10-21"),
        );
        let due = due_date(&o, &cal).unwrap();
        assert_eq!(due, d("2024-09-24"));
        assert_eq!(cal.working_days_between(due, d("2024-10-21")), 15);
        assert_eq!(due, cal.latest_filing_date(d("2024-10-21")));
        assert!(due < d("2024-09-30"));
        assert_eq!(state_of(&o, &cal, d("2024-10-01")), ObligationState::Late);
        // A typed due date does not override the computed one for a dismantling plan.
        let mut typed = o.clone();
        typed.due = Some(d("2024-10-20"));
        assert_eq!(due_date(&typed, &cal), Some(due));
        assert!(!provisional(&o, Some(due), &cal));
    }

    #[test]
    fn a_due_date_counted_over_a_year_without_its_calendar_is_provisional() {
        let cal = WorkingCalendar::official().unwrap();
        let mut o = obligation(ObligationKind::DemolitionPlanFiling, None, None, Some("2027-10-25"));
        o.period = "2027".into();
        let site = crate::sample::pond(SiteId::generate());
        let mut unit = site.clone();
        unit.details = crate::site::SiteDetails::KeyUnit(crate::site::KeySupervisionUnit {
            industry: "有色金属冶炼".into(),
            list_year: 2025,
            credit_code: None,
        });
        unit.obligations = vec![o.clone()];
        let region = unit.region_code;
        let report = obligations_report(2027, region, d("2027-01-01"), std::slice::from_ref(&unit), &cal);
        assert_eq!(report.len(), 1);
        // Monday to Friday: 2027-10-01 (National Day) counted as a working day.
        assert_eq!(report[0].due, Some(d("2027-10-01")));
        assert!(report[0].provisional);
        // With 2027 loaded, the count is official.
        let more = WorkingCalendar::parse("2027-10-01,holiday,国庆节").unwrap();
        let cal = cal.extended(&more);
        let report = obligations_report(2027, region, d("2027-01-01"), &[unit], &cal);
        assert_eq!(report[0].due, Some(d("2027-09-30")));
        assert!(!report[0].provisional);
        // A typed due date of a report is never provisional.
        let typed = obligation(ObligationKind::EmissionReport, Some("2027-06-30"), None, None);
        assert!(!provisional(&typed, typed.due, &cal));
    }
}
