//! Compliance: per pond and level, what the rules required against what was done,
//! and the overdue tasks. An inspection counts for a task when it is submitted,
//! of the task's site, and made inside the task's window; an off-site fix still
//! counts but is flagged for the supervisor.

use std::collections::HashMap;

use chrono::NaiveDate;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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
    pub required: u32,
    pub done: u32,
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
    /// 三级: ponds with a drawn task; others: all ponds.
    pub ponds_scheduled: u32,
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
        let required: u32 = rules.iter().filter(own).map(|r| r.required).sum();
        let done_n: u32 = rules.iter().filter(own).map(|r| r.done).sum();
        let label = level.map(|l| l.label_zh()).unwrap_or("无等级");
        let mut message = if level == Some(SupervisionLevel::Three) && required == 0 {
            format!("{label}: not drawn this year")
        } else {
            format!("{label}: {done_n} of {required} done")
        };
        for r in rules.iter().filter(|r| r.done < r.required) {
            if r.rule == TaskRule::LevelOnePreFlood {
                message.push_str("; none before the flood season");
            } else if r.rule == TaskRule::Intensified {
                message.push_str(&format!("; intensified: {} of {} done", r.done, r.required));
            } else if r.outcome == RuleOutcome::Missed {
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
            if required > 0 {
                sum.ponds_scheduled += 1;
                if rules.iter().all(|r| r.outcome == RuleOutcome::Met) {
                    sum.ponds_met += 1;
                }
            }
            sum.required += required;
            sum.done += done_n;
        }
        report_ponds.push(PondCompliance {
            site_id: s.id,
            site_name: s.name.clone(),
            region_code: s.region_code,
            level,
            required,
            done: done_n,
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
        assert_eq!(report.ponds[0].done, 0);
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
