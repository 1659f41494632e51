//! Review (审核) from the office: the queue of submitted inspections, one
//! inspection with its earlier decisions, and a supervisor's decision.
//!
//! A decision is a Review record created through the office replica (see
//! `office`), naming the content versions it reviewed; the engine applies it
//! as the inspection's approve/return transition and marks the inspection.
//! The inspector's tablet pulls both: the inspection shows `returned` with the
//! review mark, and the Review record carries the comments.

use chrono::NaiveDate;
use mobile_schema::ids::{InspectionId, ItemId, RecordId, ReviewId, SiteId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::review::{Comment, Decision, Review};
use mobile_schema::workflow::Role;
use serde::{Deserialize, Serialize};
use sync_protocol::outcome::{Flag, Outcome, Refusal, RefusalCode};
use sync_protocol::scope;
use sync_protocol::state::ReviewMark;
use sync_protocol::{RecordState, VersionSet};

use crate::auth::Authenticated;
use crate::office::{OfficeError, OfficeReplica};
use crate::query::{ListPage, ListQuery, Row, Snapshot, SortKey};
use crate::storage::{StorageError, SyncStorage};

/// Bounds on a decision's body.
const MAX_COMMENTS: usize = 50;
const MAX_COMMENT_CHARS: usize = 4000;
const MAX_UNIT_CHARS: usize = 200;
const MAX_REVIEWED_UNITS: usize = 2048;
const MAX_VERSIONS_PER_UNIT: usize = 64;

/// The inspection statuses a listing may filter on.
pub const INSPECTION_STATUSES: &[&str] = &["draft", "submitted", "returned", "approved"];

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Office(#[from] OfficeError),
    #[error("no inspection {0}")]
    NotFound(RecordId),
    #[error("{message}")]
    Denied { code: &'static str, message: String },
    #[error("the inspection is `{status}`: only a submitted inspection can be decided")]
    NotSubmitted { status: String },
    #[error("{message}")]
    Invalid { field: String, message: String },
    /// The content changed after the supervisor read it (`seen`).
    #[error("the inspection changed since it was read (content {seen}, now {now}): read it again before deciding")]
    ChangedSinceRead { seen: String, now: String },
    /// The engine refused the change (a race with another decision or push).
    #[error("{}", .0.message)]
    Refused(Refusal),
}

/// An inspection as listings show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InspectionSummary {
    pub id: InspectionId,
    pub site_id: SiteId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionCode>,
    pub status: String,
    pub start: chrono::DateTime<chrono::FixedOffset>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<chrono::DateTime<chrono::FixedOffset>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<mobile_schema::ids::TaskId>,
    pub team: Vec<String>,
    pub signed: bool,
    #[serde(default)]
    pub flags: Vec<Flag>,
    /// Units holding concurrent versions.
    #[serde(default)]
    pub conflicts: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewMark>,
}

/// The inspections `scope` sees, as filterable rows sorted by visit start.
pub fn inspection_rows(snapshot: &Snapshot, who: &Authenticated, today: NaiveDate) -> Vec<(Row, InspectionSummary)> {
    let scope = crate::access::scope_of(&who.user);
    let mut out = Vec::new();
    for state in snapshot.of_kind(RecordKind::Inspection) {
        if !snapshot.visible(&scope, state, today) {
            continue;
        }
        // The engine refuses any written value that would not decode, so every
        // stored inspection materializes; one that did not (a corrupt entry)
        // is left out rather than failing the whole listing.
        let Ok(AnyRecord::Inspection(i)) = state.materialize() else {
            continue;
        };
        let region = snapshot.region_of(state);
        let site_name = snapshot
            .records
            .get(&RecordId::from(i.site_id))
            .and_then(|s| match s.materialize() {
                Ok(AnyRecord::Site(site)) => Some(site.name),
                _ => None,
            });
        let status = state.workflow.clone().unwrap_or_default();
        let row = Row {
            key: SortKey {
                ms: i.times.start.timestamp_millis(),
                id: state.id,
            },
            site: Some(i.site_id),
            region,
            status: Some(status.clone()),
            day: Some(mobile_schema::time::shanghai_date(&i.times.start)),
            flags: crate::query::flag_codes(state),
        };
        out.push((
            row,
            InspectionSummary {
                id: i.id,
                site_id: i.site_id,
                site_name,
                region,
                status,
                start: i.times.start,
                end: i.times.end,
                task_id: i.task_id,
                team: i.team.iter().map(|m| m.name.clone()).collect(),
                signed: state.lock.is_some(),
                flags: state.flags.iter().chain(&state.evidence).cloned().collect(),
                conflicts: state.conflicted_units().into_iter().map(str::to_string).collect(),
                review: state.review.clone(),
            },
        ));
    }
    out
}

/// `GET /api/v1/inspections`: filtered and paged.
pub fn list_inspections(
    storage: &dyn SyncStorage,
    who: &Authenticated,
    q: &ListQuery,
    today: NaiveDate,
) -> Result<ListPage<InspectionSummary>, StorageError> {
    let snapshot = Snapshot::load(storage)?;
    Ok(crate::query::paginate(q, inspection_rows(&snapshot, who, today)))
}

/// `GET /api/v1/reviews`: the submitted inspections of the caller's scope,
/// oldest visit first. Only supervisors and admins review.
pub fn queue(
    storage: &dyn SyncStorage,
    who: &Authenticated,
    q: &ListQuery,
    today: NaiveDate,
) -> Result<ListPage<InspectionSummary>, ReviewError> {
    may_review(who)?;
    let mut q = q.clone();
    q.status = Some("submitted".into());
    let snapshot = Snapshot::load(storage)?;
    Ok(crate::query::paginate(&q, inspection_rows(&snapshot, who, today)))
}

/// One earlier decision, as `show` lists it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionShown {
    pub review_id: ReviewId,
    pub decision: Decision,
    pub reviewer: UserId,
    pub decided_at: chrono::DateTime<chrono::FixedOffset>,
    pub comments: Vec<Comment>,
}

/// `GET /api/v1/reviews/{inspection_id}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewDetail {
    pub summary: InspectionSummary,
    /// The inspection as its winning values make it.
    pub inspection: serde_json::Value,
    /// The content versions a decision now would review (pass as `reviewed`).
    pub versions: VersionSet,
    /// A short name of `versions` (pass as `seen`): a decision naming it is
    /// refused if the content changed since.
    pub content_tag: String,
    /// Every decision on it, oldest first.
    pub decisions: Vec<DecisionShown>,
}

pub fn show(
    storage: &dyn SyncStorage,
    who: &Authenticated,
    id: InspectionId,
    today: NaiveDate,
) -> Result<ReviewDetail, ReviewError> {
    // Decisions and their comments are for reviewers: inspectors read the
    // reviews of their own inspections by pull.
    may_review(who)?;
    let snapshot = Snapshot::load(storage)?;
    let record = RecordId::from(id);
    let state = snapshot
        .records
        .get(&record)
        .filter(|s| s.kind == RecordKind::Inspection)
        .ok_or(ReviewError::NotFound(record))?;
    let scope = crate::access::scope_of(&who.user);
    if !snapshot.visible(&scope, state, today) {
        // As if it did not exist, like a record outside one's scope elsewhere.
        return Err(ReviewError::NotFound(record));
    }
    let summary = inspection_rows(&snapshot, who, today)
        .into_iter()
        .map(|(_, s)| s)
        .find(|s| s.id == id)
        .ok_or_else(|| ReviewError::Invalid {
            field: "inspection_id".into(),
            message: "the inspection's current values do not form a valid record: resolve its conflicts".into(),
        })?;
    let inspection = state
        .materialize()
        .ok()
        .and_then(|r| serde_json::to_value(r).ok())
        .unwrap_or(serde_json::Value::Null);
    let mut decisions: Vec<DecisionShown> = snapshot
        .of_kind(RecordKind::Review)
        .filter_map(|r| match r.materialize() {
            Ok(AnyRecord::Review(v)) if v.inspection_id == id => Some(DecisionShown {
                review_id: v.id,
                decision: v.decision,
                reviewer: v.reviewer,
                decided_at: v.decided_at,
                comments: v.comments,
            }),
            _ => None,
        })
        .collect();
    decisions.sort_by_key(|d| (d.decided_at, d.review_id));
    let versions = state.live_set();
    Ok(ReviewDetail {
        summary,
        inspection,
        content_tag: content_tag(&versions),
        versions,
        decisions,
    })
}

/// `POST /api/v1/reviews/{inspection_id}/approve` and `/return`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// One comment as text, or several with the unit each is about.
    #[serde(default)]
    pub comments: Comments,
    /// The content versions the supervisor reviewed ([`ReviewDetail::versions`]);
    /// the current ones when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewed: Option<VersionSet>,
    /// The `content_tag` of what the supervisor read: refused 409
    /// `changed_since_read` if the content moved on since, so a decision
    /// never covers an edit its reviewer did not see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen: Option<String>,
}

/// A short, stable name of a record's content versions: what a supervisor
/// read, to be named again when deciding.
pub fn content_tag(versions: &VersionSet) -> String {
    use sha2::Digest as _;
    // A map of version ids: serializing it cannot fail.
    let bytes = serde_json::to_vec(versions).unwrap_or_default();
    hex::encode(&sha2::Sha256::digest(&bytes)[..8])
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Comments {
    Text(String),
    List(Vec<CommentIn>),
}

impl Default for Comments {
    fn default() -> Self {
        Comments::List(Vec::new())
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommentIn {
    pub text: String,
    /// The part of the inspection it is about, e.g. `answers/TP-09`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

/// What a decision answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionAnswer {
    pub review_id: ReviewId,
    pub inspection_id: InspectionId,
    pub decision: Decision,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewMark>,
}

impl DecisionRequest {
    /// The comments, checked: bounded, and at least one with text for a return.
    fn comments(&self, decision: Decision) -> Result<Vec<CommentIn>, ReviewError> {
        let list = match &self.comments {
            Comments::Text(t) if t.trim().is_empty() => Vec::new(),
            Comments::Text(t) => vec![CommentIn {
                text: t.clone(),
                unit: None,
            }],
            Comments::List(l) => l.clone(),
        };
        let invalid = |field: String, message: String| ReviewError::Invalid { field, message };
        if list.len() > MAX_COMMENTS {
            return Err(invalid(
                "comments".into(),
                format!("at most {MAX_COMMENTS} comments per decision"),
            ));
        }
        for (i, c) in list.iter().enumerate() {
            if c.text.trim().is_empty() {
                return Err(invalid(format!("comments[{i}].text"), "a comment has text".into()));
            }
            if c.text.chars().count() > MAX_COMMENT_CHARS {
                return Err(invalid(
                    format!("comments[{i}].text"),
                    format!("a comment is at most {MAX_COMMENT_CHARS} characters"),
                ));
            }
            if let Some(unit) = &c.unit
                && (unit.is_empty() || unit.chars().count() > MAX_UNIT_CHARS)
            {
                return Err(invalid(
                    format!("comments[{i}].unit"),
                    format!("a unit key is 1 to {MAX_UNIT_CHARS} characters"),
                ));
            }
        }
        if decision == Decision::Return && list.is_empty() {
            return Err(invalid(
                "comments".into(),
                "a returned inspection needs comments: the inspector must see what to fix".into(),
            ));
        }
        if let Some(reviewed) = &self.reviewed
            && (reviewed.len() > MAX_REVIEWED_UNITS || reviewed.values().any(|v| v.len() > MAX_VERSIONS_PER_UNIT))
        {
            return Err(invalid(
                "reviewed".into(),
                format!("at most {MAX_REVIEWED_UNITS} units of {MAX_VERSIONS_PER_UNIT} versions"),
            ));
        }
        Ok(list)
    }
}

/// Supervisors and admins review; inspectors are refused before anything is read.
pub(crate) fn may_review(who: &Authenticated) -> Result<(), ReviewError> {
    if who.user.role == Role::Inspector {
        return Err(ReviewError::Denied {
            code: "role_not_allowed",
            message: "only supervisors and admins review inspections".into(),
        });
    }
    Ok(())
}

fn outside(region: Option<RegionCode>) -> ReviewError {
    ReviewError::Denied {
        code: "forbidden_scope",
        message: match region {
            Some(r) => format!("the record belongs to region {r}, outside this user's regions"),
            None => "the record's site is not on the server yet: only its author sees it".into(),
        },
    }
}

/// Whether the caller may act on a record of this region (admins: any).
pub fn check_region(
    storage: &dyn SyncStorage,
    who: &Authenticated,
    state: &RecordState,
) -> Result<Option<RegionCode>, ReviewError> {
    let mut lookup = |id: RecordId| storage.record(id);
    let region = scope::region_of(scope::link_of_state(state), &mut lookup)?;
    if who.user.role == Role::Admin {
        return Ok(region);
    }
    match region {
        Some(r) if who.covers(r) => Ok(region),
        _ => Err(outside(region)),
    }
}

pub fn decide(
    office: &OfficeReplica,
    storage: &dyn SyncStorage,
    who: &Authenticated,
    id: InspectionId,
    decision: Decision,
    request: &DecisionRequest,
    now_ms: u64,
) -> Result<DecisionAnswer, ReviewError> {
    may_review(who)?;
    let comments = request.comments(decision)?;
    let record = RecordId::from(id);
    let state = storage
        .record(record)?
        .filter(|s| s.kind == RecordKind::Inspection)
        .ok_or(ReviewError::NotFound(record))?;
    check_region(storage, who, &state)?;
    let status = state.workflow.clone().unwrap_or_default();
    if status != "submitted" {
        return Err(ReviewError::NotSubmitted { status });
    }
    let live = state.live_set();
    if let Some(seen) = &request.seen {
        let now = content_tag(&live);
        if *seen != now {
            return Err(ReviewError::ChangedSinceRead {
                seen: seen.clone(),
                now,
            });
        }
    }
    let decided_at = mobile_schema::time::shanghai_at_ms(now_ms);
    let review = Review {
        id: ReviewId::generate(),
        schema_version: Review::SCHEMA_VERSION,
        inspection_id: id,
        reviewer: who.user.id,
        decision,
        decided_at,
        comments: comments
            .into_iter()
            .map(|c| Comment {
                id: ItemId::generate(),
                author: who.user.id,
                text: c.text,
                unit: c.unit,
                written_at: decided_at,
            })
            .collect(),
    };
    let reviewed = request.reviewed.clone().unwrap_or(live);
    let review_id = review.id;
    let op = crate::office::create_op(&AnyRecord::Review(review), Some(reviewed))?;
    let outcomes = office.commit(storage, who, vec![(RecordKind::Review, review_id.into(), op)], now_ms)?;
    if let Some(Outcome::Refused(refusal)) = outcomes.into_iter().next().map(|o| o.outcome) {
        return Err(match refusal.code {
            // Another decision got there first.
            RefusalCode::TransitionNotAllowed => {
                let status = storage.record(record)?.and_then(|s| s.workflow).unwrap_or_default();
                ReviewError::NotSubmitted { status }
            }
            _ => ReviewError::Refused(refusal),
        });
    }
    let after = storage.record(record)?.ok_or(ReviewError::NotFound(record))?;
    Ok(DecisionAnswer {
        review_id,
        inspection_id: id,
        decision,
        status: after.workflow.unwrap_or_default(),
        review: after.review,
    })
}
