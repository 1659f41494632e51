//! Hazards (隐患) from the office: the filtered listing, the overdue ones per
//! region, and the lifecycle steps a supervisor takes without going on site
//! (all but `verify`, which is done on site from a tablet).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use mobile_schema::hazard::Hazard;
use mobile_schema::ids::{HazardId, InspectionId, RecordId, SiteId};
use mobile_schema::inspection::Evidence;
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::region::RegionCode;
use mobile_schema::workflow::{HazardAction, HazardState, StateMachine, TransitionError};
use serde::{Deserialize, Serialize};
use sync_protocol::change::{Op, UnitWrite};
use sync_protocol::outcome::{Flag, Outcome};
use sync_protocol::value::UnitValue;

use crate::auth::Authenticated;
use crate::office::OfficeReplica;
use crate::query::{ListPage, ListQuery, Row, Snapshot, SortKey, day_ms};
use crate::review::ReviewError;
use crate::storage::{StorageError, SyncStorage};

pub const HAZARD_STATES: &[&str] = &[
    "identified",
    "notified",
    "rectifying",
    "rectification_submitted",
    "verified",
    "closed",
];
const MAX_PARTY_CHARS: usize = 200;
const MAX_EVIDENCE_ITEMS: usize = 20;

/// A hazard as listings show it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HazardSummary {
    pub id: HazardId,
    pub inspection_id: InspectionId,
    pub site_id: SiteId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<RegionCode>,
    pub state: String,
    pub category: String,
    pub severity: String,
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_on: Option<NaiveDate>,
    pub responsible_party: String,
    /// Past its deadline and not rectified, today in Asia/Shanghai.
    pub overdue: bool,
    pub evidence: usize,
    pub rectification_evidence: usize,
    pub verification_evidence: usize,
    #[serde(default)]
    pub flags: Vec<Flag>,
}

/// Which day a hazard listing sorts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortBy {
    /// The notice day (责令整改), unnotified hazards first.
    Notified,
    /// The deadline, earliest first.
    Deadline,
}

fn summary(
    state: &sync_protocol::RecordState,
    h: Hazard,
    region: Option<RegionCode>,
    today: NaiveDate,
) -> HazardSummary {
    HazardSummary {
        overdue: h.is_overdue(today),
        id: h.id,
        inspection_id: h.inspection_id,
        site_id: h.site_id,
        region,
        state: state.workflow.clone().unwrap_or_default(),
        category: h.category,
        severity: h.severity,
        description: h.description,
        deadline: h.deadline,
        notified_on: h.notified_on,
        responsible_party: h.responsible_party,
        evidence: h.evidence.len(),
        rectification_evidence: h.rectification_evidence.len(),
        verification_evidence: h.verification_evidence.len(),
        flags: state.flags.iter().chain(&state.evidence).cloned().collect(),
    }
}

/// The hazards the caller sees, as filterable rows; the date filters compare
/// the notice day.
fn rows(snapshot: &Snapshot, who: &Authenticated, today: NaiveDate, by: SortBy) -> Vec<(Row, HazardSummary)> {
    let scope = crate::access::scope_of(&who.user);
    let mut out = Vec::new();
    for state in snapshot.of_kind(RecordKind::Hazard) {
        if !snapshot.visible(&scope, state, today) {
            continue;
        }
        let Ok(AnyRecord::Hazard(h)) = state.materialize() else {
            continue;
        };
        let region = snapshot.region_of(state);
        let sort_day = match by {
            SortBy::Notified => h.notified_on,
            SortBy::Deadline => h.deadline,
        };
        let row = Row {
            key: SortKey {
                ms: sort_day.map(day_ms).unwrap_or(i64::MIN),
                id: state.id,
            },
            site: Some(h.site_id),
            region,
            status: state.workflow.clone(),
            day: h.notified_on,
            flags: crate::query::flag_codes(state),
        };
        out.push((row, summary(state, h, region, today)));
    }
    out
}

/// `GET /api/v1/hazards`.
pub fn list(
    storage: &dyn SyncStorage,
    who: &Authenticated,
    q: &ListQuery,
    today: NaiveDate,
) -> Result<ListPage<HazardSummary>, StorageError> {
    let snapshot = Snapshot::load(storage)?;
    Ok(crate::query::paginate(q, rows(&snapshot, who, today, SortBy::Notified)))
}

/// `GET /api/v1/hazards/overdue`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OverdueAnswer {
    /// The day counted from (Asia/Shanghai, or the server's configured today).
    pub today: NaiveDate,
    /// How many overdue hazards each county has (all pages, after the filters).
    pub by_region: BTreeMap<RegionCode, usize>,
    pub items: Vec<HazardSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

pub fn overdue(
    storage: &dyn SyncStorage,
    who: &Authenticated,
    q: &ListQuery,
    today: NaiveDate,
) -> Result<OverdueAnswer, StorageError> {
    let snapshot = Snapshot::load(storage)?;
    let rows: Vec<_> = rows(&snapshot, who, today, SortBy::Deadline)
        .into_iter()
        .filter(|(_, h)| h.overdue)
        .collect();
    let mut by_region = BTreeMap::new();
    for (row, h) in &rows {
        if q.matches(row)
            && let Some(r) = h.region
        {
            *by_region.entry(r).or_insert(0) += 1;
        }
    }
    let page = crate::query::paginate(q, rows);
    Ok(OverdueAnswer {
        today,
        by_region,
        items: page.items,
        next_cursor: page.next_cursor,
    })
}

/// `POST /api/v1/hazards/{id}/{action}`: what the step fills in on the way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responsible_party: Option<String>,
    /// The day the notice was served; today when a `notify` leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notified_on: Option<NaiveDate>,
    /// The responsible party's material, handed in at the bureau.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rectification_evidence: Vec<Evidence>,
}

/// The steps taken from the office; `verify` is done on site.
fn office_action(action: &str) -> Result<HazardAction, ReviewError> {
    let parsed: Option<HazardAction> = serde_json::from_value(serde_json::Value::String(action.to_string())).ok();
    match parsed {
        Some(HazardAction::Verify) => Err(ReviewError::Denied {
            code: "on_site_only",
            message: "a rectification is verified on site, from an inspector's tablet".into(),
        }),
        Some(a) => Ok(a),
        None => Err(ReviewError::Invalid {
            field: "action".into(),
            message: format!(
                "`{action}` is not a hazard step: notify, start_rectification, submit_rectification, \
                 reject_rectification, close or reopen"
            ),
        }),
    }
}

/// Take one lifecycle step: check role, state and evidence first (so a refused
/// step changes nothing), then commit the filled-in fields and, if they were
/// taken, the transition, through the office replica.
#[allow(clippy::too_many_arguments)]
pub fn step(
    office: &OfficeReplica,
    storage: &dyn SyncStorage,
    who: &Authenticated,
    id: HazardId,
    action: &str,
    request: &StepRequest,
    today: NaiveDate,
    now_ms: u64,
) -> Result<HazardSummary, ReviewError> {
    let action = office_action(action)?;
    let invalid = |field: &str, message: String| ReviewError::Invalid {
        field: field.into(),
        message,
    };
    if let Some(p) = &request.responsible_party
        && (p.trim().is_empty() || p.chars().count() > MAX_PARTY_CHARS)
    {
        return Err(invalid(
            "responsible_party",
            format!("the responsible party is 1 to {MAX_PARTY_CHARS} characters"),
        ));
    }
    if request.rectification_evidence.len() > MAX_EVIDENCE_ITEMS {
        return Err(invalid(
            "rectification_evidence",
            format!("at most {MAX_EVIDENCE_ITEMS} items per step"),
        ));
    }
    let record = RecordId::from(id);
    let state = storage
        .record(record)?
        .filter(|s| s.kind == RecordKind::Hazard)
        .ok_or(ReviewError::NotFound(record))?;
    let region = crate::review::check_region(storage, who, &state)?;
    let current: HazardState = state
        .workflow
        .as_deref()
        .and_then(|w| serde_json::from_value(serde_json::Value::String(w.to_string())).ok())
        .unwrap_or_default();
    if let Err(e) = current.apply(action, who.user.role) {
        return Err(match e {
            TransitionError::RoleMayNot { .. } => ReviewError::Denied {
                code: "role_not_allowed",
                message: e.to_string(),
            },
            TransitionError::NotAllowedFrom { .. } => ReviewError::Refused(
                sync_protocol::Refusal::new(sync_protocol::RefusalCode::TransitionNotAllowed, e.to_string())
                    .at("action"),
            ),
        });
    }
    let Ok(AnyRecord::Hazard(mut hazard)) = state.materialize() else {
        return Err(invalid(
            "id",
            "the hazard's current values do not form a valid record: resolve its conflicts".into(),
        ));
    };
    // The edit: each scalar replaces the versions the office sees now.
    let mut units = Vec::new();
    let mut scalar = |key: &str, value: serde_json::Value| -> Result<(), ReviewError> {
        let bases = state.units.get(key).map(|u| u.live_ids()).unwrap_or_default();
        let value = UnitValue::of(&value).map_err(|e| invalid(key, e.to_string()))?;
        units.push(UnitWrite {
            key: key.into(),
            bases,
            value,
        });
        Ok(())
    };
    if let Some(d) = request.deadline {
        hazard.deadline = Some(d);
        scalar("deadline", serde_json::json!(d))?;
    }
    if let Some(p) = &request.responsible_party {
        hazard.responsible_party = p.trim().to_string();
        scalar("responsible_party", serde_json::json!(p.trim()))?;
    }
    let notified_on = request
        .notified_on
        .or((action == HazardAction::Notify && hazard.notified_on.is_none()).then_some(today));
    if let Some(d) = notified_on {
        hazard.notified_on = Some(d);
        scalar("notified_on", serde_json::json!(d))?;
    }
    for ev in &request.rectification_evidence {
        let value = serde_json::to_value(ev).map_err(|e| invalid("rectification_evidence", e.to_string()))?;
        units.push(UnitWrite {
            key: format!("rectification_evidence/{}", ev.id),
            bases: Vec::new(),
            value: UnitValue::of(&value).map_err(|e| invalid("rectification_evidence", e.to_string()))?,
        });
        hazard.rectification_evidence.push(ev.clone());
    }
    if let Some(m) = hazard.missing_for(action) {
        return Err(ReviewError::Refused(
            sync_protocol::Refusal::new(sync_protocol::RefusalCode::EvidenceRequired, m.message).at(m.field),
        ));
    }
    let refusal_of = |outcomes: Vec<sync_protocol::ChangeOutcome>| {
        outcomes.into_iter().find_map(|o| match o.outcome {
            Outcome::Refused(r) => Some(r),
            _ => None,
        })
    };
    // The fields first, on their own: a refused edit (evidence the record
    // cannot hold) must leave the step untaken, which one push of both would
    // not, since each change of a push gets its own outcome.
    let edited = !units.is_empty();
    if edited
        && let Some(refusal) = refusal_of(office.commit(
            storage,
            who,
            vec![(RecordKind::Hazard, record, Op::Edit { units })],
            now_ms,
        )?)
    {
        return Err(ReviewError::Refused(refusal));
    }
    let transition = Op::Transition {
        action: HazardState::action_name(action).into(),
        versions: None,
    };
    if let Some(mut refusal) =
        refusal_of(office.commit(storage, who, vec![(RecordKind::Hazard, record, transition)], now_ms)?)
    {
        // Checked above, yet a tablet's step got in between: the fields stand
        // (they are content), the step does not. Say so rather than imply nothing changed.
        if edited {
            refusal
                .message
                .push_str(" (the fields sent were saved; the step was not taken)");
        }
        return Err(ReviewError::Refused(refusal));
    }
    let after = storage.record(record)?.ok_or(ReviewError::NotFound(record))?;
    match after.materialize() {
        Ok(AnyRecord::Hazard(h)) => Ok(summary(&after, h, region, today)),
        _ => Err(ReviewError::NotFound(record)),
    }
}
