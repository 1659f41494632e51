//! Generating the year's tasks, and regenerating one pond's after a level change.

use std::collections::BTreeMap;

use chrono::{Datelike, Days, Months, NaiveDate};

use super::draw::{self, DRAW_METHOD};
use super::flood::FloodSeason;
use super::teams::TeamPool;
use super::{
    IntensifiedPeriod, PeriodDates, Periodicity, Schedule, ScheduleError, ScheduleRequest,
};
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
fn intensified_windows(
    year: i32,
    period: &IntensifiedPeriod,
    flood: FloodSeason,
    n: u32,
) -> Vec<TaskWindow> {
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
            tasks.push(new_task(
                year,
                site.id,
                TaskRule::LevelOnePreFlood,
                "0",
                pre,
            ));
            tasks.push(new_task(
                year,
                site.id,
                TaskRule::LevelOneSecond,
                "0",
                second,
            ));
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
            t.hidden_until = Some(t.window.earliest_start);
            tasks.push(t);
        }
    }
    for (pi, period) in req.intensified.iter().enumerate() {
        let windows = intensified_windows(year, period, season, period.extra_for(level));
        for (k, w) in windows.into_iter().enumerate() {
            let mut t = new_task(
                year,
                site.id,
                TaskRule::Intensified,
                &format!("{pi}.{k}"),
                w,
            );
            if level == SupervisionLevel::Three {
                // Would reveal a drawn pond early otherwise.
                t.hidden_until = Some(w.earliest_start);
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
        let ids: Vec<SiteId> = ponds.iter().map(|(id, _)| *id).collect();
        let pool_hash = draw::pool_hash(&ids);
        let draw_id = DrawId::from_name(
            "fieldsync-draw",
            &format!("{}:{county}:{seed}:{pool_hash}", req.year),
        );
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
    let deadline = req
        .flood
        .season_for(pond.region_code, req.year)
        .pre_flood_deadline();

    let started = |t: &&Task| matches!(t.state, TaskState::Done | TaskState::InProgress);
    let mut used = vec![false; mine.len()];
    let mut open = vec![true; slots.len()];
    // Same rule (and, for extras, same window) first: kept or planned alike.
    for (si, slot) in slots.iter().enumerate() {
        let found = (0..mine.len()).find(|&i| {
            !used[i]
                && mine[i].rule == slot.rule
                && (slot.rule != TaskRule::Intensified || mine[i].window == slot.window)
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
            t.hidden_until = Some(start);
        }
        t.assigned = pool.assign(pond.id, pond.region_code)?;
        add.push(t);
    }
    Ok(Regeneration { cancel, add })
}
