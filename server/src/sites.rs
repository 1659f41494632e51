//! Sites through the API: listing, creating one, and importing the official
//! lists (ponds, key supervision units, funded projects).
//!
//! A site is a record like any other, so the server commits it as a change of
//! its own replica through the same engine and scope rules as a tablet's push
//! (as the schedule does). Imports are idempotent because the importers derive
//! each site's id from the row's natural key (pond code, credit code, project
//! name; UUIDv5): a site already stored is compared unit by unit and only what
//! differs is written, so the same file twice creates and changes nothing.

use mobile_schema::ids::RecordId;
use mobile_schema::imports::{self, ImportError, RejectedRow};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::site::{Site, SiteKind};
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};
use sync_protocol::RecordState;
use sync_protocol::change::{Op, UnitWrite};
use sync_protocol::outcome::{Outcome, Refusal, RefusalCode};
use sync_protocol::value::UnitValue;

use crate::auth::Authenticated;
use crate::startup::AppState;
use crate::storage::{StorageError, SyncStorage};

use crate::server_replica::{self, ServerReplica};

/// Most sites in one listing page.
pub const MAX_PAGE: usize = 500;
/// Most data rows in one import request: the CLI sends files in batches.
pub const MAX_IMPORT_ROWS: usize = 500;
/// Record states read per step of a listing scan.
const SCAN_PAGE: usize = 1000;
/// The province the official lists are of.
const PROVINCE: &str = "450000";

#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("the list cannot be read: {0}")]
    List(#[from] ImportError),
    /// The engine refused the site (structure, scope, already there).
    #[error("{}: {}", .0.code.as_str(), .0.message)]
    Refused(Refusal),
}

/// Which official list a file is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// 尾矿库环境监管清单.
    Ponds,
    /// 土壤污染重点监管单位名录.
    KeyUnits,
    /// 中央土壤污染防治资金项目.
    Projects,
}

impl std::str::FromStr for ListKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.replace('-', "_").as_str() {
            "ponds" => Ok(ListKind::Ponds),
            "key_units" => Ok(ListKind::KeyUnits),
            "projects" => Ok(ListKind::Projects),
            _ => Err(format!("`{s}` is not a list: ponds, key_units or projects")),
        }
    }
}

/// `POST /api/v1/sites/import`: a batch of a list, as CSV with its header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    pub kind: ListKind,
    /// The header line and at most `MAX_IMPORT_ROWS` rows, one per line.
    pub csv: String,
    /// The line in the original file of each row (so reports name the file's
    /// lines, not the batch's); absent: the batch is the file.
    #[serde(default)]
    pub lines: Option<Vec<usize>>,
}

/// What an import batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportResponse {
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    /// Rows the importer could not take, with their line in the file.
    pub rejected: Vec<RejectedLine>,
    /// Sites the store refused (scope, structure), with the reason.
    pub refused: Vec<RefusedSite>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedLine {
    pub line: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedSite {
    pub site: RecordId,
    pub name: String,
    pub code: String,
    pub message: String,
}

/// `GET /api/v1/sites` filters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct SiteFilter {
    /// A county, a city (its counties) or the province.
    pub region: Option<RegionCode>,
    pub kind: Option<SiteKind>,
    /// The `next` of the previous page.
    pub after: u64,
    pub limit: usize,
}

/// One site as listed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SiteEntry {
    pub commit_seq: u64,
    pub site: Site,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<sync_protocol::Flag>,
    /// Units with concurrent versions: the site shown is each unit's winner.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SitePage {
    pub sites: Vec<SiteEntry>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// The server's site replica: the author of the sites written through the API.
#[derive(Debug)]
pub struct SiteService {
    replica: ServerReplica,
}

impl SiteService {
    pub fn open(db: &sled::Db) -> Result<Self, SiteError> {
        Ok(Self {
            replica: ServerReplica::open(db, server_replica::SITES)?,
        })
    }

    /// Create one site; 409 when its id exists.
    pub fn create(
        &self,
        state: &AppState,
        who: &Authenticated,
        site: Site,
        now_ms: u64,
    ) -> Result<SiteEntry, SiteError> {
        let storage = state.storage.as_ref();
        may_write_sites(who)?;
        let id = RecordId::from(site.id);
        let op = create_op(&site)?;
        let _one = self.replica.hold()?;
        let outcome = self.commit(state, who, vec![(id, op)], now_ms)?;
        match outcome.into_iter().next() {
            Some(Outcome::Refused(r)) => Err(SiteError::Refused(r)),
            Some(_) => {
                let state = storage.record(id)?.ok_or(SiteError::Refused(Refusal::new(
                    RefusalCode::UnknownRecord,
                    "the site was committed but is not readable",
                )))?;
                Ok(entry(state).ok_or_else(|| SiteError::Invalid {
                    field: "site".into(),
                    message: "the stored site does not form a document".into(),
                })?)
            }
            None => Err(SiteError::Refused(Refusal::new(
                RefusalCode::UnknownRecord,
                "no outcome",
            ))),
        }
    }

    /// Import one batch of a list.
    pub fn import(
        &self,
        state: &AppState,
        who: &Authenticated,
        request: &ImportRequest,
        now_ms: u64,
    ) -> Result<ImportResponse, SiteError> {
        let storage = state.storage.as_ref();
        may_write_sites(who)?;
        let province: RegionCode = PROVINCE.parse().map_err(|_| SiteError::Invalid {
            field: "kind".into(),
            message: "the province code does not parse".into(),
        })?;
        // Counted as the importers read the text (a bare CR ends a row for
        // csv, not for `str::lines`), and no further than the limit.
        let rows = csv::ReaderBuilder::new()
            .flexible(true)
            .has_headers(true)
            .from_reader(request.csv.as_bytes())
            .records()
            .take(MAX_IMPORT_ROWS + 1)
            .count();
        if rows > MAX_IMPORT_ROWS {
            return Err(SiteError::Invalid {
                field: "csv".into(),
                message: format!("at most {MAX_IMPORT_ROWS} rows per request: send the file in batches"),
            });
        }
        if let Some(lines) = &request.lines
            && lines.len() > MAX_IMPORT_ROWS
        {
            return Err(SiteError::Invalid {
                field: "lines".into(),
                message: format!("at most {MAX_IMPORT_ROWS} lines"),
            });
        }
        // The batch's row starting on line n is its i-th row, the file's lines[i].
        let starts = crate::list_batches::row_lines(&request.csv);
        let file_line = |line: usize| match &request.lines {
            Some(lines) => starts
                .iter()
                .position(|&l| l == line)
                .and_then(|i| lines.get(i))
                .copied()
                .unwrap_or(line),
            None => line,
        };
        let reader = request.csv.as_bytes();
        let (sites, rejected): (Vec<ImportedSite>, Vec<RejectedRow>) = match request.kind {
            ListKind::Ponds => {
                let report = imports::ponds::import_ponds(reader, province)?;
                (
                    report.taken.into_iter().map(ImportedSite::Pond).collect(),
                    report.rejected,
                )
            }
            ListKind::KeyUnits => {
                let report = imports::key_units::import_key_units(reader, province)?;
                (
                    report.taken.into_iter().map(ImportedSite::Plain).collect(),
                    report.rejected,
                )
            }
            ListKind::Projects => {
                let report = imports::projects::import_projects(reader, province)?;
                (
                    report.taken.into_iter().map(ImportedSite::Plain).collect(),
                    report.rejected,
                )
            }
        };
        let mut response = ImportResponse {
            rejected: rejected
                .into_iter()
                .map(|r| RejectedLine {
                    line: file_line(r.line),
                    reason: r.reason,
                })
                .collect(),
            ..ImportResponse::default()
        };
        let _one = self.replica.hold()?;
        let mut ops = Vec::new();
        let mut names = Vec::new();
        let mut created = Vec::new();
        for imported in sites {
            let id = RecordId::from(imported.site().id);
            let existing = storage.record(id)?;
            // Concurrent versions are for a person to resolve, not for a list
            // to overwrite.
            if existing.as_ref().is_some_and(|s| !s.conflicted_units().is_empty()) {
                response
                    .refused
                    .push(refused_site(id, &imported.site().name, conflicted()));
                continue;
            }
            let (site, name) = match (&existing, imported) {
                (None, i) => {
                    let s = i.into_site();
                    let name = s.name.clone();
                    (s, name)
                }
                (Some(state), ImportedSite::Pond(listing)) => {
                    // Level history is appended to, never rewritten.
                    let Some(mut current) = materialize_site(state) else {
                        response
                            .refused
                            .push(refused_site(id, &listing.site.name, conflicted()));
                        continue;
                    };
                    if let Err(e) = listing.apply_to(&mut current) {
                        response.refused.push(RefusedSite {
                            site: id,
                            name: listing.site.name.clone(),
                            code: "invalid_record".into(),
                            message: e.to_string(),
                        });
                        continue;
                    }
                    let name = current.name.clone();
                    (current, name)
                }
                (Some(_), ImportedSite::Plain(s)) => {
                    let name = s.name.clone();
                    (s, name)
                }
            };
            let op = match &existing {
                None => create_op(&site)?,
                Some(state) => match edit_op(state, &site)? {
                    Some(op) => op,
                    None => {
                        response.unchanged += 1;
                        continue;
                    }
                },
            };
            created.push(existing.is_none());
            names.push(name);
            ops.push((id, op));
        }
        let ids: Vec<RecordId> = ops.iter().map(|(id, _)| *id).collect();
        let outcomes = self.commit(state, who, ops, now_ms)?;
        for (((id, name), outcome), was_new) in ids.into_iter().zip(names).zip(outcomes).zip(created) {
            match outcome {
                Outcome::Refused(r) => response.refused.push(refused_site(id, &name, r)),
                _ if was_new => response.created += 1,
                _ => response.updated += 1,
            }
        }
        Ok(response)
    }

    /// Apply `ops` as changes of the server's site replica, under the caller's
    /// name and scope, in pushes of at most `CHUNK`, with what a tablet's push
    /// of the same changes sets off: a site moving county takes its records
    /// along, a pond's new level re-plans its tasks. One outcome per op.
    fn commit(
        &self,
        state: &AppState,
        who: &Authenticated,
        ops: Vec<(RecordId, Op)>,
        now_ms: u64,
    ) -> Result<Vec<Outcome>, SiteError> {
        let storage = state.storage.as_ref();
        const CHUNK: usize = 500;
        let actor = self.replica.actor(who);
        let scope = crate::access::scope_of(&who.user);
        let mut out = Vec::with_capacity(ops.len());
        let ops = ops
            .into_iter()
            .map(|(record, op)| (RecordKind::Site, record, op))
            .collect();
        for changes in self.replica.changes(storage, ops, now_ms, CHUNK)? {
            let answer = crate::push_effects::apply(state, who, &actor, &scope, changes, now_ms)?;
            out.extend(answer.outcomes.into_iter().map(|o| o.outcome));
        }
        Ok(out)
    }
}

/// A row of a list: ponds merge their level history into a stored pond.
enum ImportedSite {
    Pond(imports::ponds::PondListing),
    Plain(Site),
}

impl ImportedSite {
    fn site(&self) -> &Site {
        match self {
            ImportedSite::Pond(l) => &l.site,
            ImportedSite::Plain(s) => s,
        }
    }

    fn into_site(self) -> Site {
        match self {
            ImportedSite::Pond(l) => l.site,
            ImportedSite::Plain(s) => s,
        }
    }
}

fn conflicted() -> Refusal {
    Refusal::new(
        RefusalCode::InvalidStructure,
        "the stored site has conflicting versions: resolve them before importing again",
    )
}

fn refused_site(site: RecordId, name: &str, r: Refusal) -> RefusedSite {
    RefusedSite {
        site,
        name: name.to_string(),
        code: r.code.as_str().to_string(),
        message: r.message,
    }
}

/// Supervisors (within their regions, which the engine checks) and admins.
pub(crate) fn may_write_sites(who: &Authenticated) -> Result<(), SiteError> {
    match who.user.role {
        Role::Admin | Role::Supervisor => Ok(()),
        Role::Inspector => Err(SiteError::Denied {
            code: "role_not_allowed",
            message: "sites are created and imported by supervisors and admins".into(),
        }),
    }
}

/// Creating `site`, as a replica writes it: the record without its kind tag.
fn create_op(site: &Site) -> Result<Op, SiteError> {
    let mut value = serde_json::to_value(AnyRecord::Site(site.clone())).map_err(|e| SiteError::Invalid {
        field: "site".into(),
        message: e.to_string(),
    })?;
    if let Some(obj) = value.as_object_mut() {
        obj.remove("kind");
    }
    let record = UnitValue::of(&value).map_err(|e| SiteError::Invalid {
        field: "site".into(),
        message: e.to_string(),
    })?;
    Ok(Op::Create { record, versions: None })
}

/// The units of `site` that differ from the stored winners, each replacing
/// the live versions it was compared with; `None` when nothing differs.
fn edit_op(state: &RecordState, site: &Site) -> Result<Option<Op>, SiteError> {
    let units = AnyRecord::Site(site.clone()).units().map_err(|e| SiteError::Invalid {
        field: e.field().to_string(),
        message: e.to_string(),
    })?;
    let mut writes = Vec::new();
    for (key, raw) in units {
        let new: serde_json::Value = serde_json::from_str(raw.get()).unwrap_or(serde_json::Value::Null);
        let unit = state.units.get(&key);
        let same = unit
            .and_then(|u| u.winner())
            .is_some_and(|w| serde_json::from_str::<serde_json::Value>(w.value.get()).is_ok_and(|old| old == new));
        if same || (unit.is_none() && new.is_null()) {
            continue;
        }
        let value = UnitValue::of(&new).map_err(|e| SiteError::Invalid {
            field: key.clone(),
            message: e.to_string(),
        })?;
        writes.push(UnitWrite {
            bases: unit.map(|u| u.live_ids()).unwrap_or_default(),
            key,
            value,
        });
    }
    Ok((!writes.is_empty()).then_some(Op::Edit { units: writes }))
}

fn materialize_site(state: &RecordState) -> Option<Site> {
    match state.materialize().ok()? {
        AnyRecord::Site(s) => Some(s),
        _ => None,
    }
}

fn entry(state: RecordState) -> Option<SiteEntry> {
    let site = match state.materialize().ok()? {
        AnyRecord::Site(s) => s,
        _ => return None,
    };
    Some(SiteEntry {
        commit_seq: state.commit_seq,
        conflicts: state.conflicted_units().into_iter().map(str::to_string).collect(),
        flags: state.flags,
        site,
    })
}

/// Sites in commit order after `filter.after`, those `who` may see and the
/// filter keeps, at most `filter.limit`.
pub fn list(storage: &dyn SyncStorage, who: &Authenticated, filter: &SiteFilter) -> Result<SitePage, SiteError> {
    let scope = crate::access::scope_of(&who.user);
    let limit = filter.limit.clamp(1, MAX_PAGE);
    let mut sites = Vec::new();
    let mut since = filter.after;
    loop {
        let page = storage.records_since(since, SCAN_PAGE, usize::MAX)?;
        for bytes in &page.records {
            let state: RecordState =
                serde_json::from_slice(bytes).map_err(|source| StorageError::Corrupt { what: "record", source })?;
            if state.kind != RecordKind::Site {
                continue;
            }
            let seq = state.commit_seq;
            let Some(e) = entry(state) else { continue };
            let region = e.site.region_code;
            let visible = scope.is_admin() || scope.covers(region);
            let kept = filter.region.is_none_or(|r| covers(r, region))
                && filter.kind.is_none_or(|k| k == e.site.details.kind());
            if visible && kept {
                sites.push(e);
                if sites.len() == limit {
                    let more = storage.visible_seq() > seq;
                    return Ok(SitePage {
                        sites,
                        next: more.then_some(seq),
                    });
                }
            }
        }
        since = page.next;
        if !page.more {
            return Ok(SitePage { sites, next: None });
        }
    }
}

/// Whether the region filter `filter` includes `region` (a city its counties).
fn covers(filter: RegionCode, region: RegionCode) -> bool {
    sync_protocol::scope::Scope {
        user: mobile_schema::ids::UserId::from_name("fieldsync.sites", "filter"),
        role: Role::Supervisor,
        regions: vec![filter],
    }
    .covers(region)
}
