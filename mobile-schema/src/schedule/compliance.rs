//! Compliance: per pond and level, what the rules required against what was done,
//! and the overdue tasks.
//!
//! A pond is judged by the rule itself (DOMAIN): 一级 at least two on-site
//! inspections in the calendar year, one of them before the flood season; 二级
//! at least one; a drawn 三级 pond at least one. Every submitted inspection of
//! the pond in the year counts, on distinct days (two records of one visit are
//! one inspection), wherever the plan's windows put its tasks. The plan is
//! reported beside it: an inspection counts for a task when it is submitted,
//! of the task's site, and made inside the task's window; an off-site fix still
//! counts but is flagged for the supervisor.

use std::collections::{BTreeSet, HashMap};

use chrono::{Datelike as _, NaiveDate};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::flood::FloodSeason;
use crate::ids::{SiteId, TaskId};
use crate::region::RegionCode;
use crate::site::{Site, SiteKind, SupervisionLevel};
use crate::task::{Task, TaskRule};
use crate::workflow::TaskState;

/// An inspection, as far as compliance needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DoneInspection {
    pub site_id: SiteId,
    /// The task it was made for, when the inspector picked one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<TaskId>,
    pub submitted: bool,
    /// The day (Asia/Shanghai) of the GNSS fix, else of the device clock.
    pub when: NaiveDate,
    /// The fix was farther from the site than allowed.
    #[serde(default)]
    pub off_site: bool,
}

/// Whether a rule is met.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RuleOutcome {
    Met,
    /// A required task's window has closed without a counting inspection.
    Missed,
    /// Not met yet, but every open task's window is still open.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RuleStatus {
    pub rule: TaskRule,
    pub required: u32,
    pub done: u32,
    pub outcome: RuleOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PondCompliance {
    pub site_id: SiteId,
    pub site_name: String,
    pub region_code: RegionCode,
    /// The level in force on the report's day (or on December 31 for a past year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub level: Option<SupervisionLevel>,
    /// Inspections the rule requires this year (一级 2, 二级 1, drawn 三级 1).
    pub required: u32,
    /// Submitted inspections of the pond this year, one per day.
    pub done: u32,
    /// The rule's verdict: met, missed (the year or the pre-flood deadline has
    /// passed short of it), or pending.
    pub outcome: RuleOutcome,
    /// Whether the plan holds tasks of the pond's level for it this year; a
    /// pond the rule requires inspections of without them needs a re-plan.
    pub planned: bool,
    /// The plan's tasks by rule, as counted against their windows.
    pub rules: Vec<RuleStatus>,
    /// E.g. "一级: 1 of 2 done; none before the flood season".
    pub message: String,
    /// Tasks that count only through an off-site fix.
    pub off_site: Vec<TaskId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LevelSummary {
    pub level: SupervisionLevel,
    pub ponds: u32,
    /// Ponds with tasks of their level in the plan (三级: the drawn ones).
    pub ponds_scheduled: u32,
    /// Ponds the rule requires inspections of that met it.
    pub ponds_met: u32,
    pub required: u32,
    pub done: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OverdueTask {
    pub task_id: TaskId,
    pub site_id: SiteId,
    pub rule: TaskRule,
    pub due: NaiveDate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ComplianceReport {
    pub year: i32,
    pub region: RegionCode,
    pub today: NaiveDate,
    pub ponds: Vec<PondCompliance>,
    pub levels: Vec<LevelSummary>,
    pub overdue: Vec<OverdueTask>,
}

/// Which task each counting inspection satisfies: the one it names, else the
/// site's earliest-due open task whose window holds the day. One inspection
/// satisfies one task; the value is whether the fix was off-site.
fn match_inspections<'t>(tasks: &[&'t Task], inspections: &[DoneInspection]) -> HashMap<TaskId, bool> {
    let mut by_site: HashMap<SiteId, Vec<&'t Task>> = HashMap::new();
    for t in tasks {
        by_site.entry(t.site_id).or_default().push(t);
    }
    for list in by_site.values_mut() {
        list.sort_by_key(|t| (t.window.due, t.id));
    }
    let mut done: HashMap<TaskId, bool> = HashMap::new();
    let mut sorted: Vec<&DoneInspection> = inspections.iter().filter(|i| i.submitted).collect();
    // Named tasks first, so that an unnamed inspection does not take a named one's task.
    sorted.sort_by_key(|i| (i.task_id.is_none(), i.when));
    for insp in sorted {
        let Some(list) = by_site.get(&insp.site_id) else {
            continue;
        };
        let fits = |t: &Task| t.window.contains(insp.when) && !done.contains_key(&t.id);
        let hit = match insp.task_id {
            Some(id) => list.iter().copied().find(|t| t.id == id).filter(|t| fits(t)),
            None => list.iter().copied().find(|t| fits(t)),
        };
        if let Some(t) = hit {
            done.insert(t.id, insp.off_site);
        }
    }
    done
}

fn rule_label(rule: TaskRule) -> &'static str {
    match rule {
        TaskRule::LevelOnePreFlood => "before the flood season",
        TaskRule::LevelOneSecond => "after the flood season began",
        TaskRule::LevelTwoAnnual => "yearly",
        TaskRule::LevelThreeDrawn => "drawn",
        TaskRule::Intensified => "intensified",
        TaskRule::KeyUnitPeriodic => "key unit periodic",
        TaskRule::RemediationPeriodic => "remediation periodic",
    }
}

/// The compliance of the tailings ponds of `region` in `year`, as of `today`.
pub fn compliance(
    year: i32,
    region: RegionCode,
    today: NaiveDate,
    sites: &[Site],
    tasks: &[Task],
    inspections: &[DoneInspection],
) -> ComplianceReport {
    let level_day = today.min(NaiveDate::from_ymd_opt(year, 12, 31).unwrap_or(today));
    let mut ponds: Vec<&Site> = sites
        .iter()
        .filter(|s| s.kind() == SiteKind::TailingsPond && region.covers(s.region_code))
        .collect();
    ponds.sort_by_key(|s| (s.region_code, s.id));
    let pond_ids: HashMap<SiteId, ()> = ponds.iter().map(|s| (s.id, ())).collect();
    let live: Vec<&Task> = tasks
        .iter()
        .filter(|t| t.year == year && t.state != TaskState::Cancelled && pond_ids.contains_key(&t.site_id))
        .collect();
    let done = match_inspections(&live, inspections);
    // The days each pond was inspected this year, for the rule itself.
    let mut visits: HashMap<SiteId, BTreeSet<NaiveDate>> = HashMap::new();
    for i in inspections.iter().filter(|i| i.submitted && i.when.year() == year) {
        visits.entry(i.site_id).or_default().insert(i.when);
    }
    let year_end = NaiveDate::from_ymd_opt(year, 12, 31).unwrap_or(today);
    let mut by_site: HashMap<SiteId, Vec<&Task>> = HashMap::new();
    for t in &live {
        by_site.entry(t.site_id).or_default().push(t);
    }

    let mut report_ponds = Vec::with_capacity(ponds.len());
    let mut levels: Vec<LevelSummary> = [SupervisionLevel::One, SupervisionLevel::Two, SupervisionLevel::Three]
        .into_iter()
        .map(|level| LevelSummary {
            level,
            ponds: 0,
            ponds_scheduled: 0,
            ponds_met: 0,
            required: 0,
            done: 0,
        })
        .collect();
    let mut overdue = Vec::new();
    for s in ponds {
        let level = s.level_on(level_day).map(|l| l.level);
        let mine = by_site.get(&s.id).cloned().unwrap_or_default();
        let mut rules: Vec<RuleStatus> = Vec::new();
        let mut off_site = Vec::new();
        for t in &mine {
            let counted = done.get(&t.id).copied();
            if counted == Some(true) {
                off_site.push(t.id);
            }
            if counted.is_none() && t.window.due < today {
                overdue.push(OverdueTask {
                    task_id: t.id,
                    site_id: s.id,
                    rule: t.rule,
                    due: t.window.due,
                });
            }
            let entry = match rules.iter_mut().find(|r| r.rule == t.rule) {
                Some(e) => e,
                None => {
                    rules.push(RuleStatus {
                        rule: t.rule,
                        required: 0,
                        done: 0,
                        outcome: RuleOutcome::Met,
                    });
                    let last = rules.len() - 1;
                    &mut rules[last]
                }
            };
            entry.required += 1;
            if counted.is_some() {
                entry.done += 1;
            } else if t.window.due < today {
                entry.outcome = RuleOutcome::Missed;
            } else if entry.outcome == RuleOutcome::Met {
                entry.outcome = RuleOutcome::Pending;
            }
        }
        rules.sort_by_key(|r| r.rule);
        // The level's own rules; extras of intensified periods are shown apart.
        let own = |r: &&RuleStatus| r.rule != TaskRule::Intensified;
        let planned = rules.iter().any(|r| own(&r));
        let drawn = rules.iter().any(|r| r.rule == TaskRule::LevelThreeDrawn);
        // The rule itself, whatever the plan.
        let days = visits.get(&s.id);
        let done_n = days.map_or(0, |d| d.len() as u32);
        let required: u32 = match level {
            Some(SupervisionLevel::One) => 2,
            Some(SupervisionLevel::Two) => 1,
            Some(SupervisionLevel::Three) => u32::from(drawn),
            None => 0,
        };
        // Before the flood season the plan was made with (its pre-flood task's
        // deadline), else the default season.
        let pre_flood_deadline = mine
            .iter()
            .find(|t| t.rule == TaskRule::LevelOnePreFlood)
            .map(|t| t.window.due)
            .unwrap_or_else(|| FloodSeason::default_for(year).pre_flood_deadline());
        let pre_flood_needed = level == Some(SupervisionLevel::One);
        let pre_flood_done = days.is_some_and(|d| d.iter().any(|day| *day <= pre_flood_deadline));
        let outcome = if done_n >= required && (!pre_flood_needed || pre_flood_done) {
            RuleOutcome::Met
        } else if today > year_end || (pre_flood_needed && !pre_flood_done && today > pre_flood_deadline) {
            RuleOutcome::Missed
        } else {
            RuleOutcome::Pending
        };
        let label = level.map(|l| l.label_zh()).unwrap_or("无等级");
        let mut message = if level == Some(SupervisionLevel::Three) && !drawn {
            format!("{label}: not drawn this year")
        } else {
            format!("{label}: {done_n} of {required} done")
        };
        if pre_flood_needed && !pre_flood_done {
            message.push_str("; none before the flood season");
        }
        if required > 0 && !planned {
            message.push_str("; no task planned: re-plan the year");
        }
        for r in rules.iter().filter(|r| r.done < r.required) {
            if r.rule == TaskRule::Intensified {
                message.push_str(&format!("; intensified: {} of {} done", r.done, r.required));
            } else if r.outcome == RuleOutcome::Missed
                && outcome != RuleOutcome::Met
                && r.rule != TaskRule::LevelOnePreFlood
            {
                message.push_str(&format!("; {} missed", rule_label(r.rule)));
            }
        }
        if !off_site.is_empty() {
            message.push_str(&format!("; {} counted with an off-site fix", off_site.len()));
        }
        if let Some(l) = level
            && let Some(sum) = levels.iter_mut().find(|x| x.level == l)
        {
            sum.ponds += 1;
            if planned {
                sum.ponds_scheduled += 1;
            }
            if required > 0 && outcome == RuleOutcome::Met {
                sum.ponds_met += 1;
            }
            sum.required += required;
            sum.done += done_n.min(required);
        }
        report_ponds.push(PondCompliance {
            site_id: s.id,
            site_name: s.name.clone(),
            region_code: s.region_code,
            level,
            required,
            done: done_n,
            outcome,
            planned,
            rules,
            message,
            off_site,
        });
    }
    overdue.sort_by_key(|o| (o.due, o.task_id));
    ComplianceReport {
        year,
        region,
        today,
        ponds: report_ponds,
        levels,
        overdue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::FloodCalendar;
    use crate::schedule::generate::generate;
    use crate::schedule::generate::tests::{d, inspector, pond, r, request};
    use crate::site::SupervisionLevel::{One, Three};

    fn insp(site: SiteId, task: Option<TaskId>, when: &str, off_site: bool) -> DoneInspection {
        DoneInspection {
            site_id: site,
            task_id: task,
            submitted: true,
            when: d(when),
            off_site,
        }
    }

    #[test]
    fn level_one_with_only_the_second_done_says_none_before_the_flood_season() {
        let sites = [pond(1, "450332", &[(One, "2025-01-01")], false)];
        let people = [inspector("a", "450332"), inspector("b", "450332")];
        let flood = FloodCalendar::new();
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &people)).unwrap();
        let done = [
            insp(sites[0].id, None, "2025-05-10", true),
            // Not submitted: does not count.
            DoneInspection {
                submitted: false,
                ..insp(sites[0].id, None, "2025-03-01", false)
            },
        ];
        let report = compliance(2025, r("450300"), d("2025-06-01"), &sites, &s.tasks, &done);
        let p = &report.ponds[0];
        assert_eq!(
            p.message,
            "一级: 1 of 2 done; none before the flood season; 1 counted with an off-site fix"
        );
        assert_eq!((p.required, p.done), (2, 1));
        assert_eq!(p.off_site.len(), 1);
        assert_eq!(report.overdue.len(), 1);
        assert_eq!(report.overdue[0].rule, TaskRule::LevelOnePreFlood);
        let pre = p.rules.iter().find(|x| x.rule == TaskRule::LevelOnePreFlood).unwrap();
        assert_eq!(pre.outcome, RuleOutcome::Missed);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["ponds"][0]["rules"][0]["outcome"], "missed");
    }

    #[test]
    fn an_inspection_outside_its_task_window_does_not_count() {
        let sites = [pond(1, "450332", &[(One, "2025-01-01")], false)];
        let people = [inspector("a", "450332"), inspector("b", "450332")];
        let flood = FloodCalendar::new();
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &people)).unwrap();
        let pre = s.tasks.iter().find(|t| t.rule == TaskRule::LevelOnePreFlood).unwrap();
        let done = [insp(sites[0].id, Some(pre.id), "2025-04-02", false)];
        let report = compliance(2025, r("450332"), d("2025-04-03"), &sites, &s.tasks, &done);
        let p = &report.ponds[0];
        // Not for the pre-flood task: its window closed on 03-31 ...
        let pre_rule = p.rules.iter().find(|x| x.rule == TaskRule::LevelOnePreFlood).unwrap();
        assert_eq!((pre_rule.done, pre_rule.outcome), (0, RuleOutcome::Missed));
        // ... but one of the year's two, and the pre-flood one is missed for good.
        assert_eq!((p.required, p.done, p.outcome), (2, 1, RuleOutcome::Missed));
        assert_eq!(p.message, "一级: 1 of 2 done; none before the flood season");
    }

    #[test]
    fn the_rule_counts_every_inspection_of_the_year_whatever_the_task_windows() {
        let sites = [
            pond(1, "450332", &[(One, "2025-01-01")], false),
            pond(2, "450332", &[(Three, "2025-01-01")], false),
            pond(3, "450332", &[(Three, "2025-01-01")], false),
        ];
        let people = [inspector("a", "450332"), inspector("b", "450332")];
        let flood = FloodCalendar::new();
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &people)).unwrap();
        let drawn: Vec<SiteId> = s
            .tasks
            .iter()
            .filter(|t| t.rule == TaskRule::LevelThreeDrawn)
            .map(|t| t.site_id)
            .collect();
        assert!(!drawn.is_empty());
        let drawn_task = s.tasks.iter().find(|t| t.rule == TaskRule::LevelThreeDrawn).unwrap();
        // A day of the year outside the drawn task's window.
        let outside = ["2025-02-15", "2025-11-20"]
            .into_iter()
            .find(|day| !drawn_task.window.contains(d(day)))
            .unwrap();
        let done = [
            // 一级: twice before the flood season, on two days; a second record
            // of the second visit is the same inspection.
            insp(sites[0].id, None, "2025-02-10", false),
            insp(sites[0].id, None, "2025-03-20", false),
            insp(sites[0].id, None, "2025-03-20", false),
            // Last year's does not count.
            insp(sites[0].id, None, "2024-12-30", false),
            insp(drawn_task.site_id, None, outside, false),
        ];
        let report = compliance(2025, r("450332"), d("2025-12-01"), &sites, &s.tasks, &done);
        let one = &report.ponds.iter().find(|p| p.site_id == sites[0].id).unwrap();
        assert_eq!(
            (one.required, one.done, one.outcome),
            (2, 2, RuleOutcome::Met),
            "{one:?}"
        );
        assert_eq!(one.message, "一级: 2 of 2 done");
        let three = &report.ponds.iter().find(|p| p.site_id == drawn_task.site_id).unwrap();
        assert_eq!(
            (three.required, three.done, three.outcome),
            (1, 1, RuleOutcome::Met),
            "{three:?}"
        );
        let sum = report.levels.iter().find(|l| l.level == One).unwrap();
        assert_eq!((sum.ponds, sum.ponds_met, sum.required, sum.done), (1, 1, 2, 2));
    }

    #[test]
    fn a_pond_the_rule_requires_inspections_of_without_tasks_does_not_look_compliant() {
        let sites = [pond(1, "450332", &[(One, "2025-01-01")], false)];
        // No schedule generated at all.
        let report = compliance(2025, r("450332"), d("2025-02-01"), &sites, &[], &[]);
        let p = &report.ponds[0];
        assert_eq!(
            (p.required, p.done, p.outcome, p.planned),
            (2, 0, RuleOutcome::Pending, false)
        );
        assert_eq!(
            p.message,
            "一级: 0 of 2 done; none before the flood season; no task planned: re-plan the year"
        );
        // After the pre-flood deadline of the default season it is missed.
        let report = compliance(2025, r("450332"), d("2025-04-01"), &sites, &[], &[]);
        assert_eq!(report.ponds[0].outcome, RuleOutcome::Missed);
        let sum = report.levels.iter().find(|l| l.level == One).unwrap();
        assert_eq!((sum.ponds, sum.ponds_scheduled, sum.ponds_met), (1, 0, 0));
    }

    #[test]
    fn undrawn_level_three_ponds_require_nothing() {
        let sites: Vec<Site> = (0..3)
            .map(|n| pond(n, "450332", &[(Three, "2025-01-01")], false))
            .collect();
        let people = [inspector("a", "450332"), inspector("b", "450332")];
        let flood = FloodCalendar::new();
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &people)).unwrap();
        let report = compliance(2025, r("450332"), d("2025-01-05"), &sites, &s.tasks, &[]);
        let three = report.levels.iter().find(|l| l.level == Three).unwrap();
        assert_eq!((three.ponds, three.ponds_scheduled, three.required), (3, 2, 2));
        assert!(report.ponds.iter().any(|p| p.message == "三级: not drawn this year"));
        assert!(report.overdue.is_empty());
    }
}
