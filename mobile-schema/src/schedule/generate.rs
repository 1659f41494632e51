//! Generating the year's tasks, and regenerating one pond's after a level change.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate};

use super::draw::{self, DRAW_METHOD};
use super::flood::FloodSeason;
use super::teams::TeamPool;
use super::{IntensifiedPeriod, PeriodDates, Periodicity, Schedule, ScheduleError, ScheduleRequest};
use crate::ids::{DrawId, SiteId, TaskId, UserId};
use crate::region::RegionCode;
use crate::site::{Site, SiteKind, SiteStatus, SupervisionLevel};
use crate::task::{RandomDraw, Task, TaskRule, TaskWindow};
use crate::workflow::TaskState;

fn ymd(year: i32, month: u32, day: u32) -> NaiveDate {
    // Callers pass valid days of valid months; MIN only satisfies the types.
    NaiveDate::from_ymd_opt(year, month, day).unwrap_or(NaiveDate::MIN)
}

fn year_window(year: i32) -> TaskWindow {
    TaskWindow {
        earliest_start: ymd(year, 1, 1),
        due: ymd(year, 12, 31),
    }
}

/// Months `first..first+months` of `year` as one window (first is 1-based).
fn month_window(year: i32, first: u32, months: u32) -> TaskWindow {
    let start = ymd(year, first, 1);
    let due = start
        .checked_add_months(Months::new(months))
        .and_then(|d| d.pred_opt())
        .unwrap_or(start);
    TaskWindow {
        earliest_start: start,
        due,
    }
}

fn rule_key(rule: TaskRule) -> &'static str {
    match rule {
        TaskRule::LevelOnePreFlood => "level_one_pre_flood",
        TaskRule::LevelOneSecond => "level_one_second",
        TaskRule::LevelTwoAnnual => "level_two_annual",
        TaskRule::LevelThreeDrawn => "level_three_drawn",
        TaskRule::Intensified => "intensified",
        TaskRule::KeyUnitPeriodic => "key_unit_periodic",
        TaskRule::RemediationPeriodic => "remediation_periodic",
    }
}

/// A task without a team yet. Ids derive from what the task is, so the same
/// inputs give the same schedule, ids included.
fn new_task(year: i32, site: SiteId, rule: TaskRule, slot: &str, window: TaskWindow) -> Task {
    let name = format!("{year}:{site}:{}:{slot}", rule_key(rule));
    Task {
        id: TaskId::from_name("fieldsync-task", &name),
        schema_version: Task::SCHEMA_VERSION,
        site_id: site,
        year,
        window,
        rule,
        assigned: Vec::new(),
        draw_id: None,
        hidden_until: None,
        note: String::new(),
        state: TaskState::Planned,
    }
}

/// Hide a task from inspectors until `from`; its id then mixes in the
/// deployment's secret, so it cannot be worked out from its pond's.
fn hide(t: &mut Task, from: NaiveDate, salt: &str) {
    t.hidden_until = Some(from);
    t.id = TaskId::from_name("fieldsync-hidden-task", &format!("{}:{salt}", t.id));
}

/// The day whose level applies: the day of generation, but not before the year.
fn level_day(req: &ScheduleRequest<'_>) -> NaiveDate {
    req.generated_on.max(ymd(req.year, 1, 1))
}

fn validate_periods(periods: &[IntensifiedPeriod]) -> Result<(), ScheduleError> {
    for p in periods {
        if let PeriodDates::Fixed { start, end } = p.dates
            && end < start
        {
            return Err(ScheduleError::BadPeriod {
                label: p.label.clone(),
                reason: "ends before it starts".into(),
            });
        }
    }
    Ok(())
}

/// The windows of a pond's extra inspections in one period: the period (clipped
/// to the year) split into `n` consecutive parts so that they spread out.
fn intensified_windows(year: i32, period: &IntensifiedPeriod, flood: FloodSeason, n: u32) -> Vec<TaskWindow> {
    let (start, end) = match period.dates {
        PeriodDates::FloodSeason => (flood.start, flood.end),
        PeriodDates::Fixed { start, end } => (start, end),
    };
    let year = year_window(year);
    let (start, end) = (start.max(year.earliest_start), end.min(year.due));
    if end < start || n == 0 {
        return Vec::new();
    }
    let days = (end - start).num_days() as u64 + 1;
    let n = u64::from(n).min(days);
    (0..n)
        .filter_map(|k| {
            let s = start.checked_add_days(Days::new(k * days / n))?;
            let e = start.checked_add_days(Days::new((k + 1) * days / n - 1))?;
            Some(TaskWindow {
                earliest_start: s,
                due: e,
            })
        })
        .collect()
}

/// The rule-tasks of one pond at `level`, before teams. `drawn_quarter` is the
/// quarter (0..4) of a drawn 三级 pond; an undrawn 三级 pond gets nothing.
fn pond_tasks(
    req: &ScheduleRequest<'_>,
    site: &Site,
    level: SupervisionLevel,
    drawn_quarter: Option<u32>,
) -> Vec<Task> {
    let year = req.year;
    let season = req.flood.season_for(site.region_code, year);
    let mut tasks = Vec::new();
    match level {
        SupervisionLevel::One => {
            let pre = TaskWindow {
                earliest_start: ymd(year, 1, 1),
                due: season.pre_flood_deadline(),
            };
            let second = TaskWindow {
                earliest_start: season.second_inspection_start(),
                due: ymd(year, 12, 31),
            };
            tasks.push(new_task(year, site.id, TaskRule::LevelOnePreFlood, "0", pre));
            tasks.push(new_task(year, site.id, TaskRule::LevelOneSecond, "0", second));
        }
        SupervisionLevel::Two => tasks.push(new_task(
            year,
            site.id,
            TaskRule::LevelTwoAnnual,
            "0",
            year_window(year),
        )),
        SupervisionLevel::Three => {
            let Some(q) = drawn_quarter else { return tasks };
            let mut t = new_task(
                year,
                site.id,
                TaskRule::LevelThreeDrawn,
                "0",
                month_window(year, q * 3 + 1, 3),
            );
            let opens = t.window.earliest_start;
            hide(&mut t, opens, req.hidden_salt);
            tasks.push(t);
        }
    }
    for (pi, period) in req.intensified.iter().enumerate() {
        let windows = intensified_windows(year, period, season, period.extra_for(level));
        for (k, w) in windows.into_iter().enumerate() {
            let mut t = new_task(year, site.id, TaskRule::Intensified, &format!("{pi}.{k}"), w);
            if level == SupervisionLevel::Three {
                // Would reveal a drawn pond early otherwise.
                hide(&mut t, w.earliest_start, req.hidden_salt);
            }
            tasks.push(t);
        }
    }
    tasks
}

fn periodic_tasks(req: &ScheduleRequest<'_>, site: &Site) -> Vec<Task> {
    let rule = match site.kind() {
        SiteKind::KeyUnit => TaskRule::KeyUnitPeriodic,
        SiteKind::RemediationSite => TaskRule::RemediationPeriodic,
        // Ponds follow the graded-supervision rules instead.
        SiteKind::TailingsPond => return Vec::new(),
    };
    let mut tasks = Vec::new();
    for check in req.periodic.iter().filter(|c| c.kind == site.kind()) {
        let m = check.every.months();
        for p in 0..12 / m {
            let slot = format!("{}.{p}", periodicity_key(check.every));
            tasks.push(new_task(
                req.year,
                site.id,
                rule,
                &slot,
                month_window(req.year, p * m + 1, m),
            ));
        }
    }
    tasks
}

fn periodicity_key(p: Periodicity) -> &'static str {
    match p {
        Periodicity::Monthly => "m",
        Periodicity::Quarterly => "q",
        Periodicity::HalfYearly => "h",
        Periodicity::Yearly => "y",
    }
}

/// One county's draw while the schedule is built.
struct CountyRun {
    county: RegionCode,
    seed: u64,
    ponds: Vec<(SiteId, bool)>,
    draw: draw::CountyDraw,
}

/// Generate the year's schedule for the request's jurisdiction. Either every task
/// gets a valid team or the whole schedule is refused.
pub fn generate(req: &ScheduleRequest<'_>) -> Result<Schedule, ScheduleError> {
    validate_periods(req.intensified)?;
    let day = level_day(req);

    let mut sites: Vec<&Site> = req
        .sites
        .iter()
        .filter(|s| s.status == SiteStatus::Active && req.jurisdiction.covers(s.region_code))
        .collect();
    sites.sort_unstable_by_key(|s| (s.region_code, s.id));

    let mut unlevelled = Vec::new();
    let mut levels: Vec<Option<SupervisionLevel>> = Vec::with_capacity(sites.len());
    let mut three_by_county: BTreeMap<RegionCode, Vec<(SiteId, bool)>> = BTreeMap::new();
    for s in &sites {
        let level = if s.kind() == SiteKind::TailingsPond {
            let level = s.level_on(day).map(|l| l.level);
            if level.is_none() {
                unlevelled.push(s.id);
            }
            level
        } else {
            None
        };
        if level == Some(SupervisionLevel::Three) {
            three_by_county
                .entry(s.region_code)
                .or_default()
                .push((s.id, s.priority.any()));
        }
        levels.push(level);
    }

    let mut pool = TeamPool::new(req.inspectors);
    // Per county: the draw and each drawn pond's position in it.
    let mut draws: Vec<CountyRun> = Vec::new();
    let mut drawn_at: BTreeMap<SiteId, (usize, u32)> = BTreeMap::new();
    for (county, ponds) in three_by_county {
        let seed = draw::county_seed(req.seed, county);
        let d = draw::draw_county(seed, &ponds, &pool.of_region(county));
        pool.set_rank(&d.inspectors);
        for (i, id) in d.sites.iter().enumerate() {
            // Drawn ponds spread over the quarters in drawn order.
            drawn_at.insert(*id, (draws.len(), (i % 4) as u32));
        }
        draws.push(CountyRun {
            county,
            seed,
            ponds,
            draw: d,
        });
    }

    let mut tasks = Vec::new();
    let mut task_draw: Vec<Option<usize>> = Vec::new();
    for (s, level) in sites.iter().zip(&levels) {
        let new = match level {
            Some(level) => {
                let at = drawn_at.get(&s.id).copied();
                pond_tasks(req, s, *level, at.map(|(_, q)| q))
            }
            None => periodic_tasks(req, s),
        };
        let draw_index = drawn_at.get(&s.id).map(|(d, _)| *d);
        for mut t in new {
            t.assigned = pool.assign(s.id, s.region_code)?;
            let drawn = t.rule == TaskRule::LevelThreeDrawn;
            task_draw.push(if drawn { draw_index } else { None });
            tasks.push(t);
        }
    }

    let mut records = Vec::with_capacity(draws.len());
    for (
        di,
        CountyRun {
            county,
            seed,
            ponds,
            draw: d,
        },
    ) in draws.into_iter().enumerate()
    {
        let mut ids: Vec<SiteId> = ponds.iter().map(|(id, _)| *id).collect();
        ids.sort_unstable();
        let mut flagged: Vec<SiteId> = ponds.iter().filter(|(_, f)| *f).map(|(id, _)| *id).collect();
        flagged.sort_unstable();
        let pool_hash = draw::pool_hash(&ponds);
        let draw_id = DrawId::from_name("fieldsync-draw", &format!("{}:{county}:{seed}:{pool_hash}", req.year));
        let mut drawn_inspectors: Vec<UserId> = Vec::new();
        for (t, td) in tasks.iter_mut().zip(&task_draw) {
            if *td == Some(di) {
                t.draw_id = Some(draw_id);
                for u in &t.assigned {
                    if !drawn_inspectors.contains(u) {
                        drawn_inspectors.push(*u);
                    }
                }
            }
        }
        records.push(RandomDraw {
            id: draw_id,
            schema_version: RandomDraw::SCHEMA_VERSION,
            year: req.year,
            region_code: county,
            pool_hash,
            pool_size: ids.len() as u32,
            pool: ids,
            flagged,
            seed: seed.to_string(),
            method: DRAW_METHOD.to_string(),
            drawn_sites: d.sites,
            drawn_inspectors,
            drawn_by: req.drawn_by,
            drawn_at: req.drawn_at,
        });
    }

    Ok(Schedule {
        year: req.year,
        jurisdiction: req.jurisdiction,
        tasks,
        draws: records,
        unlevelled,
    })
}

/// What to change after a pond's level changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Regeneration {
    /// Planned tasks the new level no longer needs.
    pub cancel: Vec<TaskId>,
    /// New tasks for what the new level still needs from `change_day` on.
    pub add: Vec<Task>,
}

/// Regenerate one pond's remaining tasks after its level changed on `change_day`.
///
/// `existing` is the year's tasks (all sites: their teams give the load). Done and
/// in-progress tasks are kept and count towards the new level; planned tasks are
/// kept where the new level has the same rule, else cancelled; what is still
/// missing is added with windows starting no earlier than `change_day`. A slot
/// whose window has already closed is not added: compliance reports it missed.
/// A pond moving to 三级 is not drawn mid-year (the county's draw is recorded and
/// must stay re-runnable); it keeps a drawn task it already had.
pub fn regenerate_for_pond(
    req: &ScheduleRequest<'_>,
    pond: &Site,
    existing: &[Task],
    change_day: NaiveDate,
) -> Result<Regeneration, ScheduleError> {
    validate_periods(req.intensified)?;
    let Some(level) = pond.level_on(change_day).map(|l| l.level) else {
        // No level any more: nothing planned is required.
        let cancel = existing
            .iter()
            .filter(|t| t.site_id == pond.id && t.year == req.year && t.state == TaskState::Planned)
            .map(|t| t.id)
            .collect();
        return Ok(Regeneration {
            cancel,
            add: Vec::new(),
        });
    };
    let mine: Vec<&Task> = existing
        .iter()
        .filter(|t| t.site_id == pond.id && t.year == req.year && t.state != TaskState::Cancelled)
        .collect();
    let was_drawn = mine.iter().any(|t| t.rule == TaskRule::LevelThreeDrawn);
    let quarter = was_drawn.then(|| {
        mine.iter()
            .find(|t| t.rule == TaskRule::LevelThreeDrawn)
            .map(|t| (t.window.earliest_start.month() - 1) / 3)
            .unwrap_or(0)
    });
    let mut slots = pond_tasks(req, pond, level, quarter);
    let deadline = req.flood.season_for(pond.region_code, req.year).pre_flood_deadline();

    let started = |t: &&Task| matches!(t.state, TaskState::Done | TaskState::InProgress);
    let mut used = vec![false; mine.len()];
    let mut open = vec![true; slots.len()];
    // Same rule (and, for extras, same window) first: kept or planned alike.
    // A planned pre-flood task due on another day than the season now in force
    // (入汛 declared earlier) is replaced; one started or done stands.
    for (si, slot) in slots.iter().enumerate() {
        let found = (0..mine.len()).find(|&i| {
            !used[i]
                && mine[i].rule == slot.rule
                && (slot.rule != TaskRule::Intensified || mine[i].window == slot.window)
                && (slot.rule != TaskRule::LevelOnePreFlood
                    || mine[i].state != TaskState::Planned
                    || mine[i].window.due == slot.window.due)
        });
        if let Some(i) = found {
            used[i] = true;
            open[si] = false;
        }
    }
    // Then inspections already made under the old level count for the new one.
    for (si, slot) in slots.iter().enumerate() {
        if !open[si] || slot.rule == TaskRule::Intensified {
            continue;
        }
        let found = (0..mine.len()).find(|&i| {
            let t = mine[i];
            !used[i]
                && started(&t)
                && t.rule != TaskRule::Intensified
                && (slot.rule != TaskRule::LevelOnePreFlood || t.window.due <= deadline)
        });
        if let Some(i) = found {
            used[i] = true;
            open[si] = false;
        }
    }

    let cancel: Vec<TaskId> = mine
        .iter()
        .zip(&used)
        .filter(|(t, u)| !**u && t.state == TaskState::Planned)
        .map(|(t, _)| t.id)
        .collect();

    let mut pool = TeamPool::new(req.inspectors);
    for t in existing
        .iter()
        .filter(|t| t.state != TaskState::Cancelled && !cancel.contains(&t.id))
    {
        for u in &t.assigned {
            pool.add_load(*u);
        }
    }
    let mut add = Vec::new();
    for (slot, is_open) in slots.iter_mut().zip(open) {
        if !is_open || slot.window.due < change_day {
            continue;
        }
        let start = slot.window.earliest_start.max(change_day);
        let name_slot = format!("regen:{change_day}:{}", slot.id);
        let mut t = new_task(
            req.year,
            pond.id,
            slot.rule,
            &name_slot,
            TaskWindow {
                earliest_start: start,
                due: slot.window.due,
            },
        );
        if slot.hidden_until.is_some() {
            hide(&mut t, start, req.hidden_salt);
        }
        t.assigned = pool.assign(pond.id, pond.region_code)?;
        add.push(t);
    }
    Ok(Regeneration { cancel, add })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::{HashMap, HashSet};

    use chrono::{DateTime, FixedOffset};
    use proptest::prelude::*;

    use super::*;
    use crate::ids::ItemId;
    use crate::schedule::{FloodCalendar, Inspector, PeriodicCheck};
    use crate::site::{KeySupervisionUnit, LevelAssignment, PriorityFlags, SiteDetails, TailingsPond};

    pub(crate) fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }
    pub(crate) fn r(s: &str) -> RegionCode {
        s.parse().unwrap()
    }

    pub(crate) fn pond(n: usize, county: &str, levels: &[(SupervisionLevel, &str)], flagged: bool) -> Site {
        Site {
            id: SiteId::from_name("test-pond", &format!("{county}-{n}")),
            schema_version: 1,
            name: format!("尾矿库{n}"),
            operator: "某矿业公司".into(),
            region_code: r(county),
            location: None,
            status: SiteStatus::Active,
            details: SiteDetails::TailingsPond(TailingsPond::default()),
            priority: PriorityFlags {
                public_complaints: flagged,
                ..PriorityFlags::default()
            },
            levels: levels
                .iter()
                .map(|(level, from)| LevelAssignment {
                    id: ItemId::from_name("lvl", &format!("{county}-{n}-{from}")),
                    year: d(from).year(),
                    level: *level,
                    effective_from: d(from),
                    source_document: "桂环函".into(),
                    reason: String::new(),
                })
                .collect(),
            obligations: vec![],
            progress: vec![],
        }
    }

    pub(crate) fn inspector(name: &str, region: &str) -> Inspector {
        Inspector {
            id: UserId::from_name("test-user", name),
            region: r(region),
            recused_from: vec![],
        }
    }

    pub(crate) fn at() -> DateTime<FixedOffset> {
        "2025-01-02T09:00:00+08:00".parse().unwrap()
    }

    pub(crate) fn request<'a>(
        year: i32,
        jurisdiction: &str,
        sites: &'a [Site],
        flood: &'a FloodCalendar,
        intensified: &'a [IntensifiedPeriod],
        inspectors: &'a [Inspector],
    ) -> ScheduleRequest<'a> {
        ScheduleRequest {
            year,
            jurisdiction: r(jurisdiction),
            generated_on: NaiveDate::from_ymd_opt(year, 1, 2).unwrap(),
            sites,
            flood,
            intensified,
            periodic: &[],
            inspectors,
            seed: 20250101,
            drawn_by: UserId::from_name("test-user", "planner"),
            drawn_at: at(),
            hidden_salt: "test-salt",
        }
    }

    fn two(county: &str) -> Vec<Inspector> {
        vec![
            inspector(&format!("{county}-a"), county),
            inspector(&format!("{county}-b"), county),
        ]
    }

    fn of_rule(s: &Schedule, rule: TaskRule) -> Vec<&Task> {
        s.tasks.iter().filter(|t| t.rule == rule).collect()
    }

    use SupervisionLevel::{One, Three, Two};

    #[test]
    fn no_ponds_give_an_empty_schedule() {
        let flood = FloodCalendar::new();
        let s = generate(&request(2025, "450300", &[], &flood, &[], &[])).unwrap();
        assert!(s.tasks.is_empty() && s.draws.is_empty());
    }

    #[test]
    fn level_one_gets_a_pre_flood_and_a_later_month_inspection() {
        let sites = [pond(1, "450332", &[(One, "2025-01-01")], false)];
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let s = generate(&request(2025, "450300", &sites, &flood, &[], &insp)).unwrap();
        let pre = of_rule(&s, TaskRule::LevelOnePreFlood);
        let second = of_rule(&s, TaskRule::LevelOneSecond);
        assert_eq!(
            pre[0].window,
            TaskWindow {
                earliest_start: d("2025-01-01"),
                due: d("2025-03-31")
            }
        );
        assert_eq!(
            second[0].window,
            TaskWindow {
                earliest_start: d("2025-04-01"),
                due: d("2025-12-31")
            }
        );
        assert_eq!(s.tasks.len(), 2);
    }

    #[test]
    fn an_early_flood_season_moves_the_pre_flood_deadline() {
        let sites = [pond(1, "450332", &[(One, "2025-01-01")], false)];
        let mut flood = FloodCalendar::new();
        flood
            .set(
                r("450300"),
                2025,
                FloodSeason {
                    start: d("2025-03-15"),
                    end: d("2025-09-30"),
                },
            )
            .unwrap();
        let insp = two("450332");
        let s = generate(&request(2025, "450300", &sites, &flood, &[], &insp)).unwrap();
        assert_eq!(of_rule(&s, TaskRule::LevelOnePreFlood)[0].window.due, d("2025-03-14"));
        assert_eq!(
            of_rule(&s, TaskRule::LevelOneSecond)[0].window.earliest_start,
            d("2025-04-01")
        );
    }

    #[test]
    fn level_two_gets_one_task_in_the_year_and_a_leap_year_ends_on_december_31() {
        let sites = [pond(1, "450332", &[(Two, "2028-01-01")], false)];
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let s = generate(&request(2028, "450332", &sites, &flood, &[], &insp)).unwrap();
        assert_eq!(s.tasks.len(), 1);
        assert_eq!(
            s.tasks[0].window,
            TaskWindow {
                earliest_start: d("2028-01-01"),
                due: d("2028-12-31")
            }
        );
        // Leap year: a 1-day-per-extra split of Feb still lands on real days.
        let period = IntensifiedPeriod {
            label: "两会".into(),
            dates: PeriodDates::Fixed {
                start: d("2028-02-28"),
                end: d("2028-03-01"),
            },
            extra: vec![(Two, 3)],
        };
        let periods = [period];
        let s = generate(&request(2028, "450332", &sites, &flood, &periods, &insp)).unwrap();
        let extra: Vec<NaiveDate> = of_rule(&s, TaskRule::Intensified)
            .iter()
            .map(|t| t.window.due)
            .collect();
        assert_eq!(extra, vec![d("2028-02-28"), d("2028-02-29"), d("2028-03-01")]);
    }

    #[test]
    fn a_single_level_three_pond_is_drawn_and_hidden_until_its_window() {
        let sites = [pond(1, "450332", &[(Three, "2025-01-01")], false)];
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &insp)).unwrap();
        let drawn = of_rule(&s, TaskRule::LevelThreeDrawn);
        assert_eq!(drawn.len(), 1);
        assert_eq!(drawn[0].hidden_until, Some(drawn[0].window.earliest_start));
        assert_eq!(drawn[0].draw_id, Some(s.draws[0].id));
        assert_eq!(s.draws[0].drawn_sites, vec![sites[0].id]);
        assert_eq!(s.draws[0].pool_size, 1);
        assert_eq!(s.draws[0].method, DRAW_METHOD);
        // Its id is not the one its pond's id gives: it mixes in the
        // deployment's secret, the same one giving the same id.
        let public = TaskId::from_name("fieldsync-task", &format!("2025:{}:level_three_drawn:0", sites[0].id));
        assert_ne!(drawn[0].id, public);
        let again = generate(&request(2025, "450332", &sites, &flood, &[], &insp)).unwrap();
        assert_eq!(of_rule(&again, TaskRule::LevelThreeDrawn)[0].id, drawn[0].id);
        let other = ScheduleRequest {
            hidden_salt: "another deployment",
            ..request(2025, "450332", &sites, &flood, &[], &insp)
        };
        let other = generate(&other).unwrap();
        assert_ne!(of_rule(&other, TaskRule::LevelThreeDrawn)[0].id, drawn[0].id);
    }

    #[test]
    fn odd_counts_round_up_and_flagged_ponds_above_half_are_all_drawn() {
        let mut sites: Vec<Site> = (0..7)
            .map(|n| pond(n, "450332", &[(Three, "2025-01-01")], false))
            .collect();
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &insp)).unwrap();
        assert_eq!(of_rule(&s, TaskRule::LevelThreeDrawn).len(), 4);
        for site in sites.iter_mut().take(6) {
            site.priority.prominent_hazards = true;
        }
        let s = generate(&request(2025, "450332", &sites, &flood, &[], &insp)).unwrap();
        let drawn: HashSet<SiteId> = of_rule(&s, TaskRule::LevelThreeDrawn)
            .iter()
            .map(|t| t.site_id)
            .collect();
        assert_eq!(drawn.len(), 6);
        assert!(sites.iter().take(6).all(|p| drawn.contains(&p.id)));
    }

    #[test]
    fn a_county_with_one_inspector_borrows_from_its_city() {
        let sites = [pond(1, "450332", &[(Two, "2025-01-01")], false)];
        let insp = [
            inspector("own", "450332"),
            inspector("guilin", "450300"),
            inspector("nanning", "450103"),
        ];
        let flood = FloodCalendar::new();
        let s = generate(&request(2025, "450000", &sites, &flood, &[], &insp)).unwrap();
        assert_eq!(s.tasks[0].assigned, vec![insp[0].id, insp[1].id]);
    }

    #[test]
    fn no_valid_team_is_an_error_naming_the_county_not_a_partial_schedule() {
        let sites = [
            pond(1, "450332", &[(Two, "2025-01-01")], false),
            pond(2, "450103", &[(Two, "2025-01-01")], false),
        ];
        let mut insp = vec![
            inspector("a", "450103"),
            inspector("b", "450103"),
            inspector("c", "450332"),
        ];
        // 450332 has one inspector; of the province's others, both are recused from pond 1.
        insp[0].recused_from.push(sites[0].id);
        insp[1].recused_from.push(sites[0].id);
        let flood = FloodCalendar::new();
        let err = generate(&request(2025, "450000", &sites, &flood, &[], &insp)).unwrap_err();
        assert_eq!(
            err,
            ScheduleError::NoValidTeam {
                county: r("450332"),
                site: sites[0].id
            }
        );
        assert!(err.to_string().contains("county 450332"));
    }

    #[test]
    fn the_level_in_force_on_the_day_of_generation_applies() {
        let sites = [pond(1, "450332", &[(Two, "2025-01-01"), (One, "2025-06-01")], false)];
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let mut req = request(2025, "450332", &sites, &flood, &[], &insp);
        let s = generate(&req).unwrap();
        assert_eq!(
            s.tasks.iter().map(|t| t.rule).collect::<Vec<_>>(),
            vec![TaskRule::LevelTwoAnnual]
        );
        req.generated_on = d("2025-06-02");
        let s = generate(&req).unwrap();
        assert_eq!(s.tasks.len(), 2);
    }

    #[test]
    fn a_mid_year_level_change_keeps_what_was_done_and_regenerates_the_rest() {
        // 二级 from January, done in February; becomes 一级 on 06-01.
        let sites = [pond(1, "450332", &[(Two, "2025-01-01"), (One, "2025-06-01")], false)];
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let req = request(2025, "450332", &sites, &flood, &[], &insp);
        let mut tasks = generate(&req).unwrap().tasks;
        tasks[0].state = TaskState::Done;
        let regen = regenerate_for_pond(&req, &sites[0], &tasks, d("2025-06-01")).unwrap();
        // The done yearly inspection stands in for the second; pre-flood is past: missed.
        assert!(regen.cancel.is_empty());
        assert!(regen.add.is_empty());

        // Not done yet: the yearly task is cancelled, only the second can still be added.
        tasks[0].state = TaskState::Planned;
        let regen = regenerate_for_pond(&req, &sites[0], &tasks, d("2025-06-01")).unwrap();
        assert_eq!(regen.cancel, vec![tasks[0].id]);
        assert_eq!(regen.add.len(), 1);
        assert_eq!(regen.add[0].rule, TaskRule::LevelOneSecond);
        assert_eq!(regen.add[0].window.earliest_start, d("2025-06-01"));
        assert_eq!(regen.add[0].assigned.len(), 2);

        // Becoming 一级 in February: both inspections still fit.
        let sites = [pond(1, "450332", &[(Two, "2025-01-01"), (One, "2025-02-10")], false)];
        let regen = regenerate_for_pond(&req, &sites[0], &tasks, d("2025-02-10")).unwrap();
        let rules: Vec<TaskRule> = regen.add.iter().map(|t| t.rule).collect();
        assert_eq!(rules, vec![TaskRule::LevelOnePreFlood, TaskRule::LevelOneSecond]);
        assert_eq!(regen.add[0].window.earliest_start, d("2025-02-10"));
    }

    #[test]
    fn generation_is_deterministic_and_the_seed_changes_the_draw() {
        let sites: Vec<Site> = (0..20)
            .map(|n| pond(n, "450332", &[(Three, "2025-01-01")], false))
            .collect();
        let insp: Vec<Inspector> = (0..5).map(|i| inspector(&i.to_string(), "450332")).collect();
        let flood = FloodCalendar::new();
        let mut req = request(2025, "450332", &sites, &flood, &[], &insp);
        let a = generate(&req).unwrap();
        assert_eq!(a, generate(&req).unwrap());
        req.seed += 1;
        let b = generate(&req).unwrap();
        assert_ne!(a.draws[0].drawn_sites, b.draws[0].drawn_sites);
        assert_ne!(a.draws[0].pool_hash, "");
        assert_eq!(a.draws[0].pool_hash, b.draws[0].pool_hash);
    }

    #[test]
    fn key_units_and_remediation_sites_get_periodic_checks() {
        let mut unit = pond(1, "450332", &[], false);
        unit.details = SiteDetails::KeyUnit(KeySupervisionUnit {
            industry: "有色金属冶炼".into(),
            list_year: 2024,
            credit_code: None,
        });
        let sites = [unit];
        let (flood, insp) = (FloodCalendar::new(), two("450332"));
        let checks = [PeriodicCheck {
            kind: SiteKind::KeyUnit,
            every: Periodicity::Quarterly,
        }];
        let mut req = request(2025, "450332", &sites, &flood, &[], &insp);
        req.periodic = &checks;
        let s = generate(&req).unwrap();
        assert!(s.unlevelled.is_empty());
        let windows: Vec<TaskWindow> = of_rule(&s, TaskRule::KeyUnitPeriodic)
            .iter()
            .map(|t| t.window)
            .collect();
        assert_eq!(windows.len(), 4);
        assert_eq!(
            windows[0],
            TaskWindow {
                earliest_start: d("2025-01-01"),
                due: d("2025-03-31")
            }
        );
        assert_eq!(
            windows[3],
            TaskWindow {
                earliest_start: d("2025-10-01"),
                due: d("2025-12-31")
            }
        );
    }

    /// Every rule of the schedule, checked on any generated schedule.
    pub(crate) fn check_rules(req: &ScheduleRequest<'_>, s: &Schedule) -> Result<(), String> {
        let insp: HashMap<UserId, &Inspector> = req.inspectors.iter().map(|i| (i.id, i)).collect();
        let day = level_day(req);
        let by_id: HashMap<SiteId, &Site> = req.sites.iter().map(|s| (s.id, s)).collect();
        for t in &s.tasks {
            let site = by_id[&t.site_id];
            if t.assigned.len() != 2 || t.assigned[0] == t.assigned[1] {
                return Err(format!("team {:?}", t.assigned));
            }
            for u in &t.assigned {
                let i = insp[u];
                if i.recused_from.contains(&t.site_id) {
                    return Err("recusal broken".into());
                }
                if !i.region.province().covers(site.region_code) {
                    return Err("inspector from another province".into());
                }
            }
            if t.window.earliest_start > t.window.due
                || t.window.earliest_start.year() != req.year
                || t.window.due.year() != req.year
            {
                return Err(format!("window {:?}", t.window));
            }
            if t.rule == TaskRule::LevelThreeDrawn && t.hidden_until != Some(t.window.earliest_start) {
                return Err("drawn task not hidden".into());
            }
        }
        let mut per_county: HashMap<RegionCode, (usize, HashSet<SiteId>, Vec<SiteId>)> = HashMap::new();
        for site in req.sites {
            let level = site.level_on(day).map(|l| l.level);
            let rules: Vec<&Task> = s.tasks.iter().filter(|t| t.site_id == site.id).collect();
            match level {
                Some(One) => {
                    let pre: Vec<_> = rules.iter().filter(|t| t.rule == TaskRule::LevelOnePreFlood).collect();
                    let sec: Vec<_> = rules.iter().filter(|t| t.rule == TaskRule::LevelOneSecond).collect();
                    let season = req.flood.season_for(site.region_code, req.year);
                    if pre.len() != 1 || sec.len() != 1 {
                        return Err("一级 needs two".into());
                    }
                    if pre[0].window.due > season.pre_flood_deadline() {
                        return Err("pre-flood late".into());
                    }
                    if sec[0].window.earliest_start < season.start
                        || sec[0].window.earliest_start.month() <= pre[0].window.due.month()
                    {
                        return Err("second not in a later month after the season began".into());
                    }
                }
                Some(Two) if rules.iter().filter(|t| t.rule == TaskRule::LevelTwoAnnual).count() != 1 => {
                    return Err("二级 needs one".into());
                }
                Some(Two) => {}
                Some(Three) => {
                    let e = per_county.entry(site.region_code).or_default();
                    e.0 += 1;
                    if rules.iter().any(|t| t.rule == TaskRule::LevelThreeDrawn) {
                        e.1.insert(site.id);
                    }
                    if site.priority.any() {
                        e.2.push(site.id);
                    }
                }
                None => {}
            }
        }
        for (county, (n, drawn, flagged)) in per_county {
            if drawn.len() < n.div_ceil(2) {
                return Err(format!("{county}: {} of {n} drawn", drawn.len()));
            }
            if !flagged.iter().all(|f| drawn.contains(f)) {
                return Err(format!("{county}: a flagged pond is not drawn"));
            }
        }
        Ok(())
    }

    /// Sites, inspectors, seed, an early flood start (month, day), intensified or not.
    type World = (Vec<Site>, Vec<Inspector>, u64, Option<(u32, u32)>, bool);

    fn arb_world() -> impl Strategy<Value = World> {
        let counties = ["450332", "450330", "450103", "450203"];
        let ponds = prop::collection::vec((0..4usize, 0..3u8, any::<bool>(), prop::option::of(0..3u8)), 0..40);
        let inspectors = prop::collection::vec((0..6usize, prop::collection::vec(0..40usize, 0..3)), 0..20);
        let flood = prop::option::of((2..=6u32, 1..=28u32));
        (ponds, inspectors, any::<u64>(), flood, any::<bool>()).prop_map(move |(ponds, insp, seed, flood, intense)| {
            let lvl = |x: u8| [One, Two, Three][x as usize];
            let sites: Vec<Site> = ponds
                .iter()
                .enumerate()
                .map(|(n, (c, l, flagged, change))| {
                    let mut levels = vec![(lvl(*l), "2025-01-01")];
                    if let Some(c2) = change {
                        levels.push((lvl(*c2), "2025-07-01"));
                    }
                    pond(n, counties[*c], &levels, *flagged)
                })
                .collect();
            let regions = ["450332", "450330", "450103", "450203", "450300", "450000"];
            let inspectors = insp
                .iter()
                .enumerate()
                .map(|(n, (reg, recused))| {
                    let mut i = inspector(&n.to_string(), regions[*reg]);
                    i.recused_from = recused.iter().filter_map(|k| sites.get(*k).map(|s| s.id)).collect();
                    i
                })
                .collect();
            (sites, inspectors, seed, flood, intense)
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(64),
            ..ProptestConfig::default()
        })]

        #[test]
        fn every_generated_schedule_satisfies_every_rule((sites, insp, seed, early, intense) in arb_world()) {
            let mut flood = FloodCalendar::new();
            if let Some((m, day)) = early {
                let start = NaiveDate::from_ymd_opt(2025, m, day).unwrap();
                flood.set(r("450300"), 2025, FloodSeason { start, end: d("2025-09-30") }).unwrap();
            }
            let periods = [IntensifiedPeriod {
                label: "汛期".into(),
                dates: PeriodDates::FloodSeason,
                extra: vec![(One, 2), (Three, 1)],
            }];
            let periods: &[IntensifiedPeriod] = if intense { &periods } else { &[] };
            let mut req = request(2025, "450000", &sites, &flood, periods, &insp);
            req.seed = seed;
            match generate(&req) {
                Ok(s) => {
                    prop_assert_eq!(check_rules(&req, &s), Ok(()));
                    prop_assert_eq!(&s, &generate(&req).unwrap());
                }
                Err(ScheduleError::NoValidTeam { county, site }) => {
                    // Only when the county, city and province really lack two unrecused inspectors.
                    let free = insp.iter().filter(|i| i.region.province().covers(county) && !i.recused_from.contains(&site)).count();
                    let site_county = sites.iter().find(|s| s.id == site).map(|s| s.region_code);
                    prop_assert_eq!(site_county, Some(county));
                    prop_assert!(free < 2, "{} free inspectors but no team", free);
                }
                Err(e) => prop_assert!(false, "unexpected {}", e),
            }
        }
    }
}
