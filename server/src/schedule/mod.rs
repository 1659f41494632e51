//! The yearly inspection schedule on the server (issue 9).
//!
//! The rules live in `mobile_schema::schedule`; here they meet the store: the
//! sites are the Site records, the inspectors are the users with that role, and
//! a generated schedule is committed as Task and RandomDraw records through the
//! same engine as any push, so tasks reach tablets by pull like any record and
//! scope rules apply to them. Compliance reads the Inspection records back.

pub mod export;
pub mod windows;

use std::collections::{HashMap, HashSet};

use chrono::{Datelike as _, NaiveDate};
use mobile_schema::ids::{RecordId, SiteId, TaskId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::schedule::{
    self, ComplianceReport, DoneInspection, FloodCalendar, FloodOverride, Inspector, IntensifiedPeriod,
    ObligationStatus, PeriodicCheck, Schedule, ScheduleError, ScheduleRequest, WorkingCalendar,
};
use mobile_schema::site::{Site, SiteKind};
use mobile_schema::task::{RandomDraw, Task};
use mobile_schema::workflow::{InspectionStatus, Role, TaskState};
use serde::{Deserialize, Serialize};
use sync_protocol::change::{Change, Op};
use sync_protocol::outcome::Outcome;
use sync_protocol::scope::Scope;
use sync_protocol::value::UnitValue;
use sync_protocol::{Actor, RecordState};

use crate::server_replica::{self, ServerReplica};

use crate::accounts::{AccountError, Accounts, User};
use crate::auth::Authenticated;
use crate::storage::{self, StorageError, SyncStorage};

/// Where the server's own replica id is kept: the author of the changes it makes.
/// Bounds on what a request may ask for: each intensified period or periodic
/// check multiplies the tasks of every pond.
const MAX_PERIODS: usize = 12;
const MAX_EXTRA_PER_LEVEL: u32 = 12;
const MAX_PERIODIC: usize = 6;
/// A plan names at most this many flood seasons (the province, its 14 cities
/// and a few counties is the most a real one needs).
const MAX_FLOOD_SEASONS: usize = 64;

/// The flag the evidence rules raise when the fix is away from the site.
const OFF_SITE_FLAG: &str = "outside_site";

#[derive(Debug, thiserror::Error)]
pub enum ScheduleServiceError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Accounts(#[from] AccountError),
    #[error("{0}")]
    Rules(#[from] ScheduleError),
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    #[error("the {year} schedule of {region} exists: {what}")]
    Exists {
        year: i32,
        region: RegionCode,
        what: String,
    },
    #[error("the store refused part of the schedule: {0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the official calendar does not load: {0}")]
    Calendar(#[from] mobile_schema::schedule::CalendarError),
    #[error("the calendar file {path} does not load: {reason}")]
    CalendarFile { path: String, reason: String },
}

/// `POST /api/v1/schedule/generate`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerateRequest {
    pub year: i32,
    /// The jurisdiction: a county, a city (its counties) or the province.
    pub region: RegionCode,
    /// The draw's seed as decimal text; a random one when absent (it is recorded
    /// in each RandomDraw, so the draw can be re-run by anyone).
    #[serde(default)]
    pub seed: Option<String>,
    /// The day whose levels apply; today (Asia/Shanghai) when absent.
    #[serde(default)]
    pub generated_on: Option<NaiveDate>,
    /// Flood seasons that differ from 04-01..09-30, per region and year.
    #[serde(default)]
    pub flood_seasons: Vec<FloodOverride>,
    #[serde(default)]
    pub intensified: Vec<IntensifiedPeriod>,
    /// Periodic checks of key units and remediation sites.
    #[serde(default)]
    pub periodic: Vec<PeriodicCheck>,
    /// Inspectors (by username) recused from sites (回避).
    #[serde(default)]
    pub recusals: HashMap<String, Vec<SiteId>>,
    /// Compute and return the schedule without storing it.
    #[serde(default)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GenerateResponse {
    pub stored: bool,
    pub schedule: Schedule,
}

/// `POST /api/v1/schedule/regenerate`: a pond's level changed during the year.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegenerateRequest {
    pub year: i32,
    pub site_id: SiteId,
    /// The day the new level took effect; today when absent.
    #[serde(default)]
    pub change_day: Option<NaiveDate>,
    #[serde(default)]
    pub flood_seasons: Vec<FloodOverride>,
    #[serde(default)]
    pub intensified: Vec<IntensifiedPeriod>,
    #[serde(default)]
    pub recusals: HashMap<String, Vec<SiteId>>,
}

/// `POST /api/v1/schedule/flood-season`: 入汛 declared for a region and year.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloodSeasonRequest {
    pub year: i32,
    pub region: RegionCode,
    pub start: NaiveDate,
    pub end: NaiveDate,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodSeasonResponse {
    pub season: FloodOverride,
    /// The 一级 ponds of the region re-planned from today for the new season
    /// (none for a past year: its record is kept, its plan is history).
    pub replanned: Vec<PondReplanned>,
    /// Ponds whose re-plan failed, and why: the season stands, and a
    /// supervisor re-plans them by hand once the cause is mended.
    pub not_replanned: Vec<PondNotReplanned>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PondNotReplanned {
    pub site_id: SiteId,
    pub error: String,
}

/// `GET /api/v1/schedule/flood-seasons`: the season in force in a region
/// and year, and the seasons declared that bear on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FloodSeasonsView {
    pub year: i32,
    pub region: RegionCode,
    /// What plans of the region use: its own declaration, else its city's,
    /// else the province's, else 04-01..09-30.
    pub in_force: mobile_schema::schedule::FloodSeason,
    /// Declarations of the year for the region, the regions above it and the
    /// counties under it.
    pub declared: Vec<FloodOverride>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PondReplanned {
    pub site_id: SiteId,
    pub cancelled: Vec<TaskId>,
    pub added: Vec<Task>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RegenerateResponse {
    /// Planned tasks the new level no longer needs, now cancelled.
    pub cancelled: Vec<TaskId>,
    /// Tasks added for what the new level still needs.
    pub added: Vec<Task>,
}

/// The server's part in schedules: the author identity of the records it makes,
/// and one generation at a time (their change seqs must be contiguous).
#[derive(Debug)]
pub struct ScheduleService {
    replica: ServerReplica,
    /// The official working-day calendar (调休 included), for filing deadlines.
    pub calendar: WorkingCalendar,
    /// Flood seasons declared per region and year (given to a generation, a
    /// re-plan or declared alone): every later plan of that year uses them.
    floods: sled::Tree,
    /// The deployment's secret mixed into the ids of tasks hidden from
    /// inspectors (`ScheduleRequest::hidden_salt`): made once, kept in the
    /// store (and its backups), so plans stay the same across restarts.
    hidden_salt: String,
}

const FLOOD_SEASONS_TREE: &str = "flood_seasons";
const SCHEDULE_SECRET_TREE: &str = "schedule_secret";
const HIDDEN_SALT_KEY: &[u8] = b"hidden_salt";

/// The stored salt, made and flushed on first use (as the JWT secret is).
fn hidden_salt(db: &sled::Db) -> Result<String, StorageError> {
    let tree = db.open_tree(SCHEDULE_SECRET_TREE)?;
    if let Some(v) = tree.get(HIDDEN_SALT_KEY)? {
        return Ok(String::from_utf8_lossy(&v).into_owned());
    }
    let salt = crate::accounts::random_token();
    tree.insert(HIDDEN_SALT_KEY, salt.as_bytes())?;
    tree.flush()?;
    Ok(salt)
}

fn flood_key(region: RegionCode, year: i32) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&region.as_u32().to_be_bytes());
    key[4..].copy_from_slice(&year.to_be_bytes());
    key
}

impl ScheduleService {
    /// `calendar`: a file of the arrangements of years the built-in calendar
    /// lacks (see `ScheduleSettings::calendar`).
    pub fn open(db: &sled::Db, calendar: Option<&std::path::Path>) -> Result<Self, ScheduleServiceError> {
        let mut official = WorkingCalendar::official()?;
        if let Some(path) = calendar {
            let failed = |reason: String| ScheduleServiceError::CalendarFile {
                path: path.display().to_string(),
                reason,
            };
            let text = std::fs::read_to_string(path).map_err(|e| failed(e.to_string()))?;
            let more = WorkingCalendar::parse(&text).map_err(|e| failed(e.to_string()))?;
            official = official.extended(&more);
        }
        Ok(Self {
            replica: ServerReplica::open(db, server_replica::SCHEDULE)?,
            calendar: official,
            floods: db.open_tree(FLOOD_SEASONS_TREE).map_err(StorageError::from)?,
            hidden_salt: hidden_salt(db)?,
        })
    }

    /// The stored flood seasons with `given` on top (a request's own win).
    fn flood_calendar(&self, given: &[FloodOverride]) -> Result<FloodCalendar, ScheduleServiceError> {
        let mut stored = Vec::new();
        for item in self.floods.iter() {
            let (_, value) = item.map_err(StorageError::from)?;
            let o: FloodOverride = serde_json::from_slice(&value).map_err(|source| StorageError::Corrupt {
                what: "flood season",
                source,
            })?;
            stored.push(o);
        }
        Ok(FloodCalendar::from_overrides(
            stored.into_iter().chain(given.iter().copied()),
        )?)
    }

    /// The season in force in `region` and `year`, and the declarations that
    /// bear on it: what a supervisor checks before planning.
    pub fn flood_seasons(&self, year: i32, region: RegionCode) -> Result<FloodSeasonsView, ScheduleServiceError> {
        check_year(year)?;
        let calendar = self.flood_calendar(&[])?;
        let declared = calendar
            .overrides()
            .filter(|o| o.year == year && (o.region.covers(region) || region.covers(o.region)))
            .collect();
        Ok(FloodSeasonsView {
            year,
            region,
            in_force: calendar.season_for(region, year),
            declared,
        })
    }

    /// Keeps `overrides` (already validated) for the later plans of their
    /// year, durably before the answer that used them.
    fn store_floods(&self, overrides: &[FloodOverride]) -> Result<(), ScheduleServiceError> {
        if overrides.is_empty() {
            return Ok(());
        }
        for o in overrides {
            let value = serde_json::to_vec(o).map_err(|source| StorageError::Corrupt {
                what: "flood season",
                source,
            })?;
            self.floods
                .insert(flood_key(o.region, o.year), value)
                .map_err(StorageError::from)?;
        }
        self.floods.flush().map_err(StorageError::from)?;
        Ok(())
    }

    /// 入汛 declared for `region` and `year`: kept for every later plan, and
    /// the region's 一级 ponds with tasks that year re-planned from today, so
    /// their pre-flood tasks are due before the new season.
    #[allow(clippy::too_many_arguments)]
    pub fn declare_flood_season(
        &self,
        storage: &dyn SyncStorage,
        accounts: &Accounts,
        who: &Authenticated,
        req: &FloodSeasonRequest,
        today: NaiveDate,
        now_ms: u64,
    ) -> Result<FloodSeasonResponse, ScheduleServiceError> {
        may_plan(&who.user, req.region)?;
        check_year(req.year)?;
        let season = FloodOverride {
            region: req.region,
            year: req.year,
            season: mobile_schema::schedule::FloodSeason {
                start: req.start,
                end: req.end,
            },
        };
        // Validated as a generation would, naming this request's field.
        if let Err(e) = FloodCalendar::from_overrides([season]) {
            return Err(ScheduleServiceError::Invalid {
                field: if req.end < req.start || req.end.year() != req.year {
                    "end"
                } else {
                    "start"
                },
                message: e.to_string(),
            });
        }
        let _one_at_a_time = self.replica.hold()?;
        self.store_floods(&[season])?;
        let mut answer = FloodSeasonResponse {
            season,
            replanned: Vec::new(),
            not_replanned: Vec::new(),
        };
        // A past year's season is kept for the record (compliance reads it);
        // re-planning a year that is over would only cancel its history.
        if req.year < today.year() {
            return Ok(answer);
        }
        let mut records = Records::load(storage)?;
        let day = today.max(NaiveDate::from_ymd_opt(req.year, 1, 1).unwrap_or(today));
        let ponds: Vec<SiteId> = records
            .sites
            .iter()
            .filter(|s| s.kind() == SiteKind::TailingsPond && req.region.covers(s.region_code))
            .filter(|s| {
                s.level_on(day)
                    .is_some_and(|l| l.level == mobile_schema::site::SupervisionLevel::One)
            })
            .filter(|s| records.tasks.iter().any(|t| t.site_id == s.id && t.year == req.year))
            .map(|s| s.id)
            .collect();
        for site_id in ponds {
            match self.replan_one(storage, accounts, who, &mut records, req.year, site_id, day, now_ms)? {
                Ok(plan) => answer.replanned.push(PondReplanned {
                    site_id,
                    cancelled: plan.cancelled,
                    added: plan.added,
                }),
                Err(e) => {
                    tracing::warn!(%site_id, error = %e, "a flood season was declared but a pond was not re-planned");
                    answer.not_replanned.push(PondNotReplanned {
                        site_id,
                        error: e.to_string(),
                    });
                }
            }
        }
        Ok(answer)
    }

    /// Re-plans `site_id` for `year` from `change_day` over `records`, and
    /// keeps `records` true to what the store now holds, since the next
    /// pond's teams are balanced against it. The outer error is the store's
    /// or the accounts'; the inner one is this pond's, after which the next
    /// may still go.
    #[allow(clippy::too_many_arguments)]
    fn replan_one(
        &self,
        storage: &dyn SyncStorage,
        accounts: &Accounts,
        who: &Authenticated,
        records: &mut Records,
        year: i32,
        site_id: SiteId,
        change_day: NaiveDate,
        now_ms: u64,
    ) -> Result<Result<RegenerateResponse, ScheduleServiceError>, ScheduleServiceError> {
        let req = RegenerateRequest {
            year,
            site_id,
            change_day: Some(change_day),
            flood_seasons: Vec::new(),
            intensified: Vec::new(),
            recusals: HashMap::new(),
        };
        match self.replan(storage, accounts, who, &req, records, now_ms) {
            Ok(plan) => {
                for t in records.tasks.iter_mut().filter(|t| plan.cancelled.contains(&t.id)) {
                    t.state = TaskState::Cancelled;
                }
                records.tasks.extend(plan.added.iter().cloned());
                Ok(Ok(plan))
            }
            // The store or the accounts failing is no one pond's trouble.
            Err(e @ (ScheduleServiceError::Storage(_) | ScheduleServiceError::Accounts(_))) => Err(e),
            // Part of its changes may be stored: read again what is.
            Err(e @ ScheduleServiceError::Refused(_)) => {
                *records = Records::load(storage)?;
                Ok(Err(e))
            }
            // Refused before anything was committed (no team of two, ...).
            Err(e) => Ok(Err(e)),
        }
    }

    /// Says in the log which of this year and the next have no official
    /// working-day arrangement loaded: filing deadlines there are counted
    /// Monday to Friday and reported as provisional.
    pub fn warn_of_missing_years(&self, today: NaiveDate) {
        use chrono::Datelike as _;
        for year in [today.year(), today.year() + 1] {
            if !self.calendar.knows_year(year) {
                tracing::warn!(
                    year,
                    "the official working-day calendar of this year is not loaded: filing deadlines \
                     that fall in it are counted Monday to Friday and marked provisional; load the \
                     State Council's arrangement with --calendar FILE"
                );
            }
        }
    }

    /// Generate `req` for `user` and, unless a dry run, commit it.
    pub fn generate(
        &self,
        storage: &dyn SyncStorage,
        accounts: &Accounts,
        who: &Authenticated,
        req: &GenerateRequest,
        today: NaiveDate,
        now_ms: u64,
    ) -> Result<GenerateResponse, ScheduleServiceError> {
        let user = &who.user;
        may_plan(user, req.region)?;
        let seed = match &req.seed {
            Some(s) => s.trim().parse::<u64>().map_err(|_| ScheduleServiceError::Invalid {
                field: "seed",
                message: "the seed is a whole number from 0 to 18446744073709551615, as text".into(),
            })?,
            None => rand_seed(),
        };
        check_year(req.year)?;
        check_periods(&req.intensified)?;
        check_floods(user, req.year, &req.flood_seasons)?;
        if req.periodic.len() > MAX_PERIODIC {
            return Err(ScheduleServiceError::Invalid {
                field: "periodic",
                message: format!("at most {MAX_PERIODIC} periodic checks"),
            });
        }
        let flood = self.flood_calendar(&req.flood_seasons)?;
        let _one_at_a_time = self.replica.hold()?;
        let records = Records::load(storage)?;
        let inspectors = inspectors(accounts, &req.recusals)?;
        let drawn_at = mobile_schema::time::shanghai_at_ms(now_ms);
        let request = ScheduleRequest {
            year: req.year,
            jurisdiction: req.region,
            generated_on: req.generated_on.unwrap_or(today),
            sites: &records.sites,
            flood: &flood,
            intensified: &req.intensified,
            periodic: &req.periodic,
            inspectors: &inspectors,
            seed,
            drawn_by: user.id,
            drawn_at,
            hidden_salt: &self.hidden_salt,
        };
        let schedule = schedule::generate(&request)?;
        let mut ids = HashSet::with_capacity(schedule.tasks.len());
        if let Some(t) = schedule.tasks.iter().find(|t| !ids.insert(t.id)) {
            return Err(ScheduleServiceError::Invalid {
                field: "periodic",
                message: format!(
                    "two entries plan the same task {} (a periodic check listed twice?)",
                    t.id
                ),
            });
        }
        let existing: HashSet<_> = records.tasks.iter().map(|t| t.id).collect();
        if let Some(t) = schedule.tasks.iter().find(|t| existing.contains(&t.id)) {
            return Err(ScheduleServiceError::Exists {
                year: req.year,
                region: req.region,
                what: format!("task {} is already planned", t.id),
            });
        }
        if let Some(d) = records
            .draws
            .iter()
            .find(|d| d.year == req.year && schedule.draws.iter().any(|n| n.region_code == d.region_code))
        {
            return Err(ScheduleServiceError::Exists {
                year: req.year,
                region: req.region,
                what: format!("the draw of county {} was made ({})", d.region_code, d.id),
            });
        }
        if !req.dry_run {
            let actor = Actor {
                replica: self.replica.id(),
                user: user.id,
                device: who.device,
                role: user.role,
            };
            let scope = crate::access::scope_of(user);
            let mut ops = Vec::with_capacity(schedule.draws.len() + schedule.tasks.len());
            for doc in schedule.draws.iter().cloned().map(AnyRecord::RandomDraw) {
                ops.push(create_op(doc)?);
            }
            for doc in schedule.tasks.iter().cloned().map(AnyRecord::Task) {
                ops.push(create_op(doc)?);
            }
            self.commit(storage, &actor, &scope, ops, now_ms)?;
            self.store_floods(&req.flood_seasons)?;
        }
        Ok(GenerateResponse {
            stored: !req.dry_run,
            schedule,
        })
    }

    /// Re-plan one pond after its level changed: what was done is kept and
    /// counts, planned tasks the new level does not need are cancelled, what
    /// it still needs is added. Running it again the same day changes nothing.
    pub fn regenerate(
        &self,
        storage: &dyn SyncStorage,
        accounts: &Accounts,
        who: &Authenticated,
        req: &RegenerateRequest,
        today: NaiveDate,
        now_ms: u64,
    ) -> Result<RegenerateResponse, ScheduleServiceError> {
        check_year(req.year)?;
        check_periods(&req.intensified)?;
        check_floods(&who.user, req.year, &req.flood_seasons)?;
        let _one_at_a_time = self.replica.hold()?;
        let records = Records::load(storage)?;
        let mut req = req.clone();
        req.change_day.get_or_insert(today);
        let plan = self.replan(storage, accounts, who, &req, &records, now_ms)?;
        self.store_floods(&req.flood_seasons)?;
        Ok(plan)
    }

    /// The body of [`Self::regenerate`], over records already read, under the
    /// lock; `req.change_day` is set.
    fn replan(
        &self,
        storage: &dyn SyncStorage,
        accounts: &Accounts,
        who: &Authenticated,
        req: &RegenerateRequest,
        records: &Records,
        now_ms: u64,
    ) -> Result<RegenerateResponse, ScheduleServiceError> {
        let user = &who.user;
        let flood = self.flood_calendar(&req.flood_seasons)?;
        let pond = records
            .sites
            .iter()
            .find(|s| s.id == req.site_id)
            .ok_or_else(|| ScheduleServiceError::NotFound(format!("no site {}", req.site_id)))?;
        may_plan(user, pond.region_code)?;
        let inspectors = inspectors(accounts, &req.recusals)?;
        let change_day = req
            .change_day
            .unwrap_or_else(|| mobile_schema::time::shanghai_at_ms(now_ms).date_naive());
        let request = ScheduleRequest {
            year: req.year,
            jurisdiction: pond.region_code,
            generated_on: change_day,
            sites: &records.sites,
            flood: &flood,
            intensified: &req.intensified,
            periodic: &[],
            inspectors: &inspectors,
            seed: 0,
            drawn_by: user.id,
            drawn_at: mobile_schema::time::shanghai_at_ms(now_ms),
            hidden_salt: &self.hidden_salt,
        };
        let mut plan = schedule::regenerate_for_pond(&request, pond, &records.tasks, change_day)?;
        // `records` was read before: a task an inspector started since is kept.
        let mut still_planned = Vec::with_capacity(plan.cancel.len());
        for id in plan.cancel {
            let planned = storage
                .record(RecordId::from(id))?
                .and_then(|state| state.materialize().ok())
                .is_some_and(|r| matches!(r, AnyRecord::Task(t) if t.state == TaskState::Planned));
            if planned {
                still_planned.push(id);
            }
        }
        plan.cancel = still_planned;
        let existing: HashSet<TaskId> = records.tasks.iter().map(|t| t.id).collect();
        let added: Vec<Task> = plan.add.into_iter().filter(|t| !existing.contains(&t.id)).collect();
        let mut ops = Vec::with_capacity(plan.cancel.len() + added.len());
        for id in &plan.cancel {
            ops.push((
                RecordKind::Task,
                RecordId::from(*id),
                Op::Transition {
                    action: "cancel".into(),
                    versions: None,
                },
            ));
        }
        for t in &added {
            ops.push(create_op(AnyRecord::Task(t.clone()))?);
        }
        let actor = Actor {
            replica: self.replica.id(),
            user: user.id,
            device: who.device,
            role: user.role,
        };
        self.commit(storage, &actor, &crate::access::scope_of(user), ops, now_ms)?;
        Ok(RegenerateResponse {
            cancelled: plan.cancel,
            added,
        })
    }

    /// After a push that changed ponds' supervision levels: re-plan each pond's
    /// tasks of the current year, if it has any, from the first day the new
    /// level is in force (the flood seasons stored for the year; an intensified
    /// period of the original plan is not known here). One answer per pond planned
    /// (`None`: it has no tasks this year, or is no pond). The store is read once for all of them (a yearly
    /// list re-imported changes every pond's level: a read per pond made an
    /// import of 500 ponds take 14 s), and what each re-plan commits is kept
    /// in that reading, since the next pond's teams are balanced against it.
    pub fn replan_ponds(
        &self,
        storage: &dyn SyncStorage,
        accounts: &Accounts,
        who: &Authenticated,
        sites: &[RecordId],
        today: NaiveDate,
        now_ms: u64,
    ) -> Result<Vec<PondReplan>, ScheduleServiceError> {
        use chrono::Datelike as _;
        let year = today.year();
        // Inspectors do not plan: no need to read the store to be refused.
        if sites.is_empty() || who.user.role == Role::Inspector {
            return Ok(Vec::new());
        }
        let _one_at_a_time = self.replica.hold()?;
        let mut records = Records::load(storage)?;
        // The counties whose year is planned: a pond there without tasks (one
        // the list brings mid-year, an undrawn 三级 raised) is planned now; in
        // a county not yet planned, the year's generation will include it.
        let region_of: HashMap<SiteId, RegionCode> = records.sites.iter().map(|s| (s.id, s.region_code)).collect();
        let planned: HashSet<RegionCode> = records
            .tasks
            .iter()
            .filter(|t| t.year == year && t.state != TaskState::Cancelled)
            .filter_map(|t| region_of.get(&t.site_id).copied())
            .collect();
        let mut out = Vec::with_capacity(sites.len());
        for &site in sites {
            let Some(pond) = records
                .sites
                .iter()
                .find(|s| RecordId::from(s.id) == site && s.kind() == SiteKind::TailingsPond)
            else {
                out.push((site, Ok(None)));
                continue;
            };
            let has_tasks = records.tasks.iter().any(|t| t.site_id == pond.id && t.year == year);
            if !has_tasks && !planned.contains(&pond.region_code) {
                out.push((site, Ok(None)));
                continue;
            }
            // A pond new to the plan is planned from today: a window already
            // closed helps no one (compliance reports what the rule missed).
            let change_day = if has_tasks {
                pond.levels
                    .iter()
                    .filter(|l| l.effective_from.year() == year)
                    .map(|l| l.effective_from)
                    .max()
                    .unwrap_or(today)
            } else {
                today
            };
            let pond_id = pond.id;
            let answer = self.replan_one(storage, accounts, who, &mut records, year, pond_id, change_day, now_ms)?;
            out.push((site, answer.map(Some)));
        }
        Ok(out)
    }

    /// Apply `ops` as changes of the server's replica, in pushes of at most
    /// `CHUNK`, through the same engine and scope rules as a tablet's push.
    fn commit(
        &self,
        storage: &dyn SyncStorage,
        actor: &Actor,
        scope: &Scope,
        ops: Vec<(RecordKind, RecordId, Op)>,
        now_ms: u64,
    ) -> Result<(), ScheduleServiceError> {
        const CHUNK: usize = 500;
        for changes in self.replica.changes(storage, ops, now_ms, CHUNK)? {
            let answer = storage.apply_push(actor, Some(scope), changes, now_ms)?;
            let refused: Vec<String> = answer
                .outcomes
                .iter()
                .filter_map(|o| match &o.outcome {
                    Outcome::Refused(refusal) => Some(format!("{:?}: {}", refusal.code, refusal.message)),
                    _ => None,
                })
                .collect();
            if !refused.is_empty() {
                return Err(ScheduleServiceError::Refused(refused.join("; ")));
            }
        }
        Ok(())
    }
}

/// Creating `doc`, as a replica writes it: the record without its kind tag.
fn create_op(doc: AnyRecord) -> Result<(RecordKind, RecordId, Op), ScheduleServiceError> {
    let kind = doc.kind();
    let record = doc.id();
    let mut value = serde_json::to_value(&doc).map_err(|e| ScheduleServiceError::Refused(e.to_string()))?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("kind");
    }
    let value = UnitValue::of(&value).map_err(|e| ScheduleServiceError::Refused(e.to_string()))?;
    Ok((
        kind,
        record,
        Op::Create {
            record: value,
            versions: None,
        },
    ))
}

fn check_year(year: i32) -> Result<(), ScheduleServiceError> {
    if (2000..=2100).contains(&year) {
        Ok(())
    } else {
        Err(ScheduleServiceError::Invalid {
            field: "year",
            message: "the year is between 2000 and 2100".into(),
        })
    }
}

fn check_periods(periods: &[IntensifiedPeriod]) -> Result<(), ScheduleServiceError> {
    let too_many = periods.len() > MAX_PERIODS
        || periods
            .iter()
            .any(|p| p.extra.len() > 3 || p.extra.iter().any(|(_, n)| *n > MAX_EXTRA_PER_LEVEL));
    if too_many {
        return Err(ScheduleServiceError::Invalid {
            field: "intensified",
            message: format!(
                "at most {MAX_PERIODS} periods, one entry per level each, at most {MAX_EXTRA_PER_LEVEL} extra inspections per level"
            ),
        });
    }
    Ok(())
}

/// A plan's own flood seasons are kept for every later plan of their year, so
/// they are declarations like `POST /api/v1/schedule/flood-season`: of the
/// plan's year, in regions the planner may plan, and few.
fn check_floods(user: &User, year: i32, seasons: &[FloodOverride]) -> Result<(), ScheduleServiceError> {
    if seasons.len() > MAX_FLOOD_SEASONS {
        return Err(ScheduleServiceError::Invalid {
            field: "flood_seasons",
            message: format!("at most {MAX_FLOOD_SEASONS} flood seasons"),
        });
    }
    for o in seasons {
        if o.year != year {
            return Err(ScheduleServiceError::Invalid {
                field: "flood_seasons",
                message: format!(
                    "a flood season of {} in a plan of {year}: declare another year's with POST /api/v1/schedule/flood-season",
                    o.year
                ),
            });
        }
        may_plan(user, o.region)?;
    }
    Ok(())
}

/// A seed nobody chose; it is recorded in each draw.
fn rand_seed() -> u64 {
    use rand_core::{OsRng, RngCore};
    OsRng.next_u64()
}

/// Only supervisors and admins plan: checked before a request's body is read.
pub(crate) fn may_plan_somewhere(user: &User) -> Result<(), ScheduleServiceError> {
    match user.role {
        Role::Inspector => Err(ScheduleServiceError::Denied {
            code: "role_not_allowed",
            message: "schedules are generated and reported by supervisors and admins".into(),
        }),
        Role::Supervisor | Role::Admin => Ok(()),
    }
}

/// Only supervisors and admins plan, and a supervisor only within their regions.
fn may_plan(user: &User, region: RegionCode) -> Result<(), ScheduleServiceError> {
    let scope = crate::access::scope_of(user);
    may_plan_somewhere(user)?;
    match user.role {
        _ if !scope.covers(region) => Err(ScheduleServiceError::Denied {
            code: "forbidden_scope",
            message: format!("region {region} is outside this user's regions"),
        }),
        _ => Ok(()),
    }
}

/// Inspectors able to be put on a team: enabled users with that role and a
/// region (the first one listed is their bureau's).
fn inspectors(
    accounts: &Accounts,
    recusals: &HashMap<String, Vec<SiteId>>,
) -> Result<Vec<Inspector>, ScheduleServiceError> {
    let users = accounts.users()?;
    if let Some(unknown) = recusals.keys().find(|name| !users.iter().any(|u| &u.username == *name)) {
        return Err(ScheduleServiceError::Invalid {
            field: "recusals",
            message: format!("no user {unknown}"),
        });
    }
    Ok(users
        .into_iter()
        .filter(|u| u.role == Role::Inspector && !u.disabled)
        .filter_map(|u| {
            let region = *u.regions.first()?;
            Some(Inspector {
                id: u.id,
                region,
                recused_from: recusals.get(&u.username).cloned().unwrap_or_default(),
            })
        })
        .collect())
}

/// The records schedules are made of, read in one scan of the store.
#[derive(Debug, Default)]
pub struct Records {
    pub sites: Vec<Site>,
    pub tasks: Vec<Task>,
    pub draws: Vec<RandomDraw>,
    /// Inspections as compliance counts them.
    pub inspections: Vec<DoneInspection>,
    /// The stored state of each task, for visibility checks.
    pub task_states: HashMap<mobile_schema::ids::TaskId, RecordState>,
}

impl Records {
    pub fn load(storage: &dyn SyncStorage) -> Result<Self, StorageError> {
        let mut out = Self::default();
        storage::each_record(storage, |state| {
            out.add(state);
            Ok(())
        })?;
        Ok(out)
    }

    fn add(&mut self, state: RecordState) {
        if !matches!(
            state.kind,
            RecordKind::Site | RecordKind::Task | RecordKind::RandomDraw | RecordKind::Inspection
        ) {
            return;
        }
        // A record whose current value does not form a valid document (a
        // conflict being resolved) is left out rather than failing the report.
        let Ok(record) = state.materialize() else {
            return;
        };
        match record {
            AnyRecord::Site(s) => self.sites.push(s),
            AnyRecord::Task(t) => {
                self.task_states.insert(t.id, state);
                self.tasks.push(t);
            }
            AnyRecord::RandomDraw(d) => self.draws.push(d),
            AnyRecord::Inspection(i) => {
                let when = i.fix.as_ref().map(|f| f.fix_time).unwrap_or(i.times.start);
                self.inspections.push(DoneInspection {
                    site_id: i.site_id,
                    task_id: i.task_id,
                    submitted: matches!(i.status, InspectionStatus::Submitted | InspectionStatus::Approved),
                    when: mobile_schema::time::shanghai_date(&when),
                    off_site: state.flags.iter().any(|f| f.code == OFF_SITE_FLAG),
                });
            }
            _ => {}
        }
    }
}

/// The tasks of `year` in `region` that `scope` may see, by due date.
pub fn tasks_for(
    storage: &dyn SyncStorage,
    scope: &Scope,
    year: i32,
    region: RegionCode,
    today: NaiveDate,
) -> Result<(Vec<Task>, Vec<Site>), StorageError> {
    let records = Records::load(storage)?;
    let region_of: HashMap<SiteId, RegionCode> = records.sites.iter().map(|s| (s.id, s.region_code)).collect();
    let mut visibility = crate::access::Visibility::new(storage, today);
    let mut out = Vec::new();
    for t in records.tasks {
        let in_region = region_of.get(&t.site_id).is_some_and(|r| region.covers(*r));
        if t.year != year || !in_region {
            continue;
        }
        let Some(state) = records.task_states.get(&t.id) else {
            continue;
        };
        if visibility.visible(scope, state)? {
            out.push(t);
        }
    }
    out.sort_by_key(|t| (t.window.due, t.site_id, t.rule, t.id));
    Ok((out, records.sites))
}

/// The compliance report of `year` in `region` for `user`.
pub fn compliance_for(
    storage: &dyn SyncStorage,
    user: &User,
    year: i32,
    region: RegionCode,
    today: NaiveDate,
) -> Result<ComplianceReport, ScheduleServiceError> {
    may_plan(user, region)?;
    let records = Records::load(storage)?;
    Ok(schedule::compliance(
        year,
        region,
        today,
        &records.sites,
        &records.tasks,
        &records.inspections,
    ))
}

/// The dated obligations of the key units of `region` in `year`.
pub fn obligations_for(
    storage: &dyn SyncStorage,
    user: &User,
    year: i32,
    region: RegionCode,
    today: NaiveDate,
    calendar: &WorkingCalendar,
) -> Result<Vec<ObligationStatus>, ScheduleServiceError> {
    may_plan(user, region)?;
    let records = Records::load(storage)?;
    Ok(schedule::obligations_report(
        year,
        region,
        today,
        &records.sites,
        calendar,
    ))
}

/// A pond's re-plan after its level changed: `None` when it had nothing planned.
pub type PondReplan = (RecordId, Result<Option<RegenerateResponse>, ScheduleServiceError>);

/// What [`ScheduleService::replan_ponds`] did, in the log: the push or import
/// that changed the levels stands whatever happened (a supervisor can
/// re-plan by hand).
pub fn log_replans(replanned: Result<Vec<PondReplan>, ScheduleServiceError>) {
    match replanned {
        Ok(ponds) => {
            for (site, answer) in ponds {
                match answer {
                    Ok(Some(plan)) => tracing::info!(
                        %site,
                        cancelled = plan.cancelled.len(),
                        added = plan.added.len(),
                        "a pond's level changed: its tasks were re-planned"
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(%site, error = %e, "a pond's level changed but its tasks were not re-planned")
                    }
                }
            }
        }
        Err(e) => tracing::warn!(error = %e, "ponds' levels changed but their tasks were not re-planned"),
    }
}

/// Sites whose supervision levels a batch edits, and ponds it creates (a pond
/// the list brings mid-year joins a planned year). Other sites' creates are
/// left out: each answer here costs a read of the whole store.
pub fn level_changes(changes: &[Change]) -> Vec<RecordId> {
    /// Just the kind of a created site, read without the rest.
    #[derive(Deserialize)]
    struct Created {
        details: Details,
    }
    #[derive(Deserialize)]
    struct Details {
        kind: SiteKind,
    }
    let mut out: Vec<RecordId> = Vec::new();
    for c in changes {
        let edits_levels = c.kind == RecordKind::Site
            && match &c.op {
                Op::Edit { units } => units.iter().any(|u| u.key.starts_with("levels/") || u.key == "levels"),
                // One that does not decode is refused by the engine anyway.
                Op::Create { record, .. } => serde_json::from_str::<Created>(record.get())
                    .is_ok_and(|c| c.details.kind == SiteKind::TailingsPond),
                Op::Transition { .. } => false,
            };
        if edits_levels && !out.contains(&c.record) {
            out.push(c.record);
        }
    }
    out
}

/// User names by id, for people-readable exports.
pub fn usernames(accounts: &Accounts) -> Result<HashMap<UserId, String>, AccountError> {
    Ok(accounts.users()?.into_iter().map(|u| (u.id, u.username)).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::accounts::UserPatch;
    use crate::storage::{SledStorage, test_create};
    use mobile_schema::ids::{DeviceId, ItemId};
    use mobile_schema::site::{LevelAssignment, SupervisionLevel};
    use sync_protocol::engine::EngineConfig;
    use sync_protocol::{Hlc, ReplicaId, UnitWrite};

    const PONDS: u32 = 8;

    fn day(m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, m, d).unwrap()
    }

    fn level(n: u32, level: SupervisionLevel, from: NaiveDate) -> LevelAssignment {
        LevelAssignment {
            id: ItemId(uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_OID,
                format!("level-{n}-{from}").as_bytes(),
            )),
            year: 2026,
            level,
            effective_from: from,
            source_document: "桂环函〔2026〕1号".into(),
            reason: String::new(),
        }
    }

    fn pond_id(n: u32) -> SiteId {
        SiteId::from_name("replan-test", &n.to_string())
    }

    /// A store with `PONDS` ponds of 南丹县 at 二级, three inspectors (or the
    /// users of `users_of`, so that ties between teams break alike), and the
    /// year's schedule; then every pond raised to 一级 from February.
    fn raised_store(users_of: Option<&sled::Db>) -> (sled::Db, SledStorage, Accounts, ScheduleService, Authenticated) {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let storage = SledStorage::open(db.clone(), EngineConfig::default()).unwrap();
        let nandan = RegionCode::new(451_221).unwrap();
        if let Some(other) = users_of {
            let from = other.open_tree(crate::storage::keys::ACCOUNTS).unwrap();
            let to = db.open_tree(crate::storage::keys::ACCOUNTS).unwrap();
            for item in from.iter() {
                let (k, v) = item.unwrap();
                to.insert(k, v).unwrap();
            }
        }
        let accounts = Accounts::open(&db).unwrap();
        if users_of.is_none() {
            for name in ["wei", "mo", "lan"] {
                accounts
                    .insert_user(name, "not-a-hash".into(), Role::Inspector, vec![nandan])
                    .unwrap();
            }
            accounts
                .insert_user("admin", "not-a-hash".into(), Role::Admin, Vec::new())
                .unwrap();
        }
        let admin = accounts.user_by_name("admin").unwrap().unwrap();
        let who = Authenticated {
            user: admin,
            device: DeviceId::generate(),
            replica: None,
        };
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: who.user.id,
            device: who.device,
            role: Role::Admin,
        };
        let ponds = (1..=PONDS)
            .map(|n| {
                let mut site = mobile_schema::sample::pond(pond_id(n));
                site.region_code = nandan;
                site.levels = vec![level(n, SupervisionLevel::Two, day(1, 1))];
                test_create(u64::from(n), site.into())
            })
            .collect();
        storage.apply_push(&actor, None, ponds, 1_000).unwrap();
        let service = ScheduleService::open(&db, None).unwrap();
        let req = GenerateRequest {
            year: 2026,
            region: nandan,
            seed: Some("7".into()),
            generated_on: Some(day(1, 2)),
            flood_seasons: Vec::new(),
            intensified: Vec::new(),
            periodic: Vec::new(),
            recusals: HashMap::new(),
            dry_run: false,
        };
        service
            .generate(&storage, &accounts, &who, &req, day(1, 2), 2_000)
            .unwrap();
        let raises = (1..=PONDS)
            .map(|n| {
                let raise = level(n, SupervisionLevel::One, day(2, 1));
                Change {
                    seq: u64::from(PONDS + n),
                    hlc: Hlc::new(3_000 + u64::from(n), 0),
                    kind: RecordKind::Site,
                    record: pond_id(n).into(),
                    op: Op::Edit {
                        units: vec![UnitWrite {
                            key: format!("levels/{}", raise.id.0),
                            bases: Vec::new(),
                            value: UnitValue::of(&raise).unwrap(),
                        }],
                    },
                }
            })
            .collect();
        storage.apply_push(&actor, None, raises, 3_000).unwrap();
        (db, storage, accounts, service, who)
    }

    /// Each task of the store: its state and who it is assigned to, by name.
    fn tasks(storage: &SledStorage, accounts: &Accounts) -> Vec<(TaskId, TaskState, Vec<String>)> {
        let names = usernames(accounts).unwrap();
        let mut out: Vec<_> = Records::load(storage)
            .unwrap()
            .tasks
            .into_iter()
            .map(|t| {
                let mut who: Vec<String> = t.assigned.iter().map(|u| names[u].clone()).collect();
                who.sort();
                (t.id, t.state, who)
            })
            .collect();
        out.sort_by_key(|t| t.0);
        out
    }

    #[test]
    fn ponds_replanned_together_get_the_tasks_and_teams_of_ponds_replanned_one_by_one() {
        let sites: Vec<RecordId> = (1..=PONDS).map(|n| pond_id(n).into()).collect();
        let (first, storage, accounts, service, who) = raised_store(None);
        let before = tasks(&storage, &accounts);
        let together = service
            .replan_ponds(&storage, &accounts, &who, &sites, day(5, 20), 4_000)
            .unwrap();
        assert_eq!(together.len(), sites.len());
        for (site, answer) in &together {
            let plan = answer.as_ref().unwrap().as_ref().unwrap();
            assert!(!plan.added.is_empty(), "{site}: a 一级 pond needs more inspections");
        }
        let together = tasks(&storage, &accounts);
        assert!(together.len() > before.len());

        let (_db, storage, accounts, service, who) = raised_store(Some(&first));
        assert_eq!(tasks(&storage, &accounts), before, "the same store");
        for site in &sites {
            service
                .replan_ponds(&storage, &accounts, &who, std::slice::from_ref(site), day(5, 20), 4_000)
                .unwrap();
        }
        assert_eq!(together, tasks(&storage, &accounts));
    }

    #[test]
    fn a_pond_created_mid_year_is_planned_where_its_county_has_a_schedule_and_not_elsewhere() {
        let (_db, storage, accounts, service, who) = raised_store(None);
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: who.user.id,
            device: who.device,
            role: Role::Admin,
        };
        // One more pond of 南丹县 (planned), one of 环江 (no schedule this year).
        let late = |seq: u64, n: u32, county: u32| {
            let mut site = mobile_schema::sample::pond(pond_id(n));
            site.region_code = RegionCode::new(county).unwrap();
            site.levels = vec![level(n, SupervisionLevel::One, day(1, 1))];
            test_create(seq, site.into())
        };
        let creates = vec![late(1, 100, 451_221), late(2, 101, 451_226)];
        let mut with_unit = creates.clone();
        let mut unit = mobile_schema::sample::pond(SiteId::generate());
        unit.levels.clear();
        unit.details = mobile_schema::site::SiteDetails::KeyUnit(mobile_schema::site::KeySupervisionUnit {
            industry: "有色金属冶炼".into(),
            list_year: 2024,
            credit_code: None,
        });
        with_unit.push(test_create(3, unit.into()));
        let changed = level_changes(&with_unit);
        assert_eq!(changed, vec![pond_id(100).into(), pond_id(101).into()], "ponds only");
        let pushed = storage.apply_push(&actor, None, creates, 4_000).unwrap();
        assert!(
            pushed.outcomes.iter().all(|o| o.outcome.commit_seq().is_some()),
            "{pushed:?}"
        );
        let answers = service
            .replan_ponds(&storage, &accounts, &who, &changed, day(5, 20), 5_000)
            .unwrap();
        let nandan = answers[0].1.as_ref().unwrap().as_ref().expect("planned");
        // 一级 from May: the pre-flood slot has closed, the second is added.
        assert_eq!(nandan.added.len(), 1, "{nandan:?}");
        assert_eq!(nandan.added[0].rule, mobile_schema::task::TaskRule::LevelOneSecond);
        assert!(
            answers[1].1.as_ref().unwrap().is_none(),
            "环江 has no schedule this year"
        );
    }

    #[test]
    fn a_task_started_after_the_store_was_read_is_not_cancelled_by_the_replan() {
        let (_db, storage, accounts, service, who) = raised_store(None);
        let read_before = Records::load(&storage).unwrap();
        let pond = pond_id(1);
        let planned: Vec<TaskId> = read_before
            .tasks
            .iter()
            .filter(|t| t.site_id == pond && t.state == TaskState::Planned)
            .map(|t| t.id)
            .collect();
        assert!(!planned.is_empty());
        // Meanwhile the team starts them on site.
        let actor = Actor {
            replica: ReplicaId::generate(),
            user: who.user.id,
            device: who.device,
            role: Role::Admin,
        };
        let starts = planned
            .iter()
            .zip(1u64..)
            .map(|(id, seq)| Change {
                seq,
                hlc: Hlc::new(5_000 + seq, 0),
                kind: RecordKind::Task,
                record: (*id).into(),
                op: Op::Transition {
                    action: "start".into(),
                    versions: None,
                },
            })
            .collect();
        let answer = storage.apply_push(&actor, None, starts, 5_000).unwrap();
        assert!(
            answer
                .outcomes
                .iter()
                .all(|o| matches!(o.outcome, Outcome::Applied { .. }))
        );
        let req = RegenerateRequest {
            year: 2026,
            site_id: pond,
            change_day: Some(day(2, 1)),
            flood_seasons: Vec::new(),
            intensified: Vec::new(),
            recusals: HashMap::new(),
        };
        let plan = service
            .replan(&storage, &accounts, &who, &req, &read_before, 6_000)
            .unwrap();
        assert!(
            plan.cancelled.iter().all(|id| !planned.contains(id)),
            "{:?}",
            plan.cancelled
        );
        let now = Records::load(&storage).unwrap();
        for t in now.tasks.iter().filter(|t| planned.contains(&t.id)) {
            assert_eq!(t.state, TaskState::InProgress, "{:?}", t.id);
        }
    }

    fn nandan() -> RegionCode {
        RegionCode::new(451_221).unwrap()
    }

    fn flood(region: u32, year: i32) -> FloodOverride {
        FloodOverride {
            region: RegionCode::new(region).unwrap(),
            year,
            season: mobile_schema::schedule::FloodSeason {
                start: NaiveDate::from_ymd_opt(year, 3, 15).unwrap(),
                end: NaiveDate::from_ymd_opt(year, 9, 30).unwrap(),
            },
        }
    }

    #[test]
    fn a_plan_keeps_no_season_of_another_year_or_outside_the_planners_regions() {
        let (_db, storage, accounts, service, _admin) = raised_store(None);
        accounts
            .insert_user("su", "not-a-hash".into(), Role::Supervisor, vec![nandan()])
            .unwrap();
        let su = Authenticated {
            user: accounts.user_by_name("su").unwrap().unwrap(),
            device: DeviceId::generate(),
            replica: None,
        };
        let generate = |seasons: Vec<FloodOverride>| GenerateRequest {
            year: 2027,
            region: nandan(),
            seed: Some("1".into()),
            generated_on: None,
            flood_seasons: seasons,
            intensified: Vec::new(),
            periodic: Vec::new(),
            recusals: HashMap::new(),
            dry_run: false,
        };
        let today = NaiveDate::from_ymd_opt(2027, 1, 5).unwrap();
        // 南宁市 is not su's to declare.
        let err = service
            .generate(
                &storage,
                &accounts,
                &su,
                &generate(vec![flood(450_100, 2027)]),
                today,
                9_000,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleServiceError::Denied {
                    code: "forbidden_scope",
                    ..
                }
            ),
            "{err:?}"
        );
        let err = service
            .generate(
                &storage,
                &accounts,
                &su,
                &generate(vec![flood(451_221, 2028)]),
                today,
                9_000,
            )
            .unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleServiceError::Invalid {
                    field: "flood_seasons",
                    ..
                }
            ),
            "{err:?}"
        );
        let many = (0..=MAX_FLOOD_SEASONS).map(|_| flood(451_221, 2027)).collect();
        let err = service
            .generate(&storage, &accounts, &su, &generate(many), today, 9_000)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleServiceError::Invalid {
                    field: "flood_seasons",
                    ..
                }
            ),
            "{err:?}"
        );
        let regenerate = RegenerateRequest {
            year: 2026,
            site_id: pond_id(1),
            change_day: Some(day(5, 1)),
            flood_seasons: vec![flood(450_100, 2026)],
            intensified: Vec::new(),
            recusals: HashMap::new(),
        };
        let err = service
            .regenerate(&storage, &accounts, &su, &regenerate, day(5, 1), 9_000)
            .unwrap_err();
        assert!(
            matches!(
                err,
                ScheduleServiceError::Denied {
                    code: "forbidden_scope",
                    ..
                }
            ),
            "{err:?}"
        );
        let nanning = RegionCode::new(450_100).unwrap();
        for year in [2026, 2027] {
            let view = service.flood_seasons(year, nanning).unwrap();
            assert_eq!(view.declared, Vec::new(), "{year}");
        }
    }

    #[test]
    fn a_past_years_season_is_kept_and_its_plan_left_alone() {
        let (_db, storage, accounts, service, admin) = raised_store(None);
        let before = tasks(&storage, &accounts);
        let req = FloodSeasonRequest {
            year: 2026,
            region: nandan(),
            start: day(3, 15),
            end: day(9, 30),
        };
        let today = NaiveDate::from_ymd_opt(2027, 1, 10).unwrap();
        let answer = service
            .declare_flood_season(&storage, &accounts, &admin, &req, today, 9_000)
            .unwrap();
        assert!(answer.replanned.is_empty(), "{answer:?}");
        assert_eq!(tasks(&storage, &accounts), before);
        assert_eq!(
            service.flood_seasons(2026, nandan()).unwrap().in_force.start,
            day(3, 15)
        );
    }

    #[test]
    fn a_pond_that_cannot_be_replanned_is_reported_and_the_season_stands() {
        let (_db, storage, accounts, service, admin) = raised_store(None);
        // Two of the three inspectors leave: no team of two for new tasks.
        for name in ["mo", "lan"] {
            accounts
                .update_user(
                    name,
                    UserPatch {
                        disabled: Some(true),
                        ..UserPatch::default()
                    },
                )
                .unwrap();
        }
        let req = FloodSeasonRequest {
            year: 2026,
            region: nandan(),
            start: day(3, 15),
            end: day(9, 30),
        };
        let answer = service
            .declare_flood_season(&storage, &accounts, &admin, &req, day(2, 5), 9_000)
            .unwrap();
        assert_eq!(answer.not_replanned.len(), PONDS as usize, "{answer:?}");
        assert!(answer.not_replanned.iter().all(|p| p.error.contains("no valid team")));
        assert_eq!(
            service.flood_seasons(2026, nandan()).unwrap().in_force.start,
            day(3, 15)
        );
    }
}
