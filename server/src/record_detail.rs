//! A record as people read it: its current values, the conflicts a person must
//! resolve with every live version's author, its flags, workflow state and
//! review mark, and its history — every change the server answered for it,
//! refusals included, with author, device, device time, effective HLC, receive
//! time and outcome. Scope is that of pull: a record the user cannot pull is
//! not found.

use std::collections::{BTreeMap, HashMap};

use mobile_schema::ids::{DeviceId, RecordId, UserId};
use mobile_schema::record::RecordKind;
use serde::{Deserialize, Serialize};
use sync_protocol::history::{ChangeOp, HistoryItem, Via};
use sync_protocol::state::{Lock, ReviewMark, VersionMeta};
use sync_protocol::{Flag, Hlc, Outcome, RecordState, Refusal, ReplicaId, UnitValue, VersionId};

use crate::access::{Visibility, scope_of};
use crate::accounts::{AccountError, Accounts, User};
use crate::storage::{StorageError, SyncStorage};

/// Changes read per record at most: a record edited more often than this shows
/// its first ones by author and says `truncated`.
pub const MAX_HISTORY_READ: usize = 10_000;
/// Changes per page when the client does not say, and at most.
pub const DEFAULT_HISTORY_PAGE: usize = 100;
pub const MAX_HISTORY_PAGE: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DetailError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Accounts(#[from] AccountError),
}

/// Who wrote a version or sent a change, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub user: UserId,
    /// `None` if the user record is gone.
    pub username: Option<String>,
    pub device: DeviceId,
    /// The author's HLC as the device stamped it; its `ms` is the device's time.
    pub device_hlc: Hlc,
    pub device_time_ms: u64,
    /// When the server received the change.
    pub received_ms: u64,
}

/// One live version of a unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionView {
    pub version: VersionId,
    /// The HLC the merge ordered it at (the server's when the device clock ran ahead).
    pub effective_hlc: Hlc,
    pub value: UnitValue,
    /// `None` only for versions stored before authors were kept.
    pub author: Option<Author>,
}

/// A unit with more than one live version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictView {
    pub unit: String,
    /// Every live version, the merge's current winner first.
    pub versions: Vec<VersionView>,
}

/// One change in the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeView {
    pub version: VersionId,
    pub replica: ReplicaId,
    pub seq: u64,
    /// `create`, `edit` or `transition`; `None` for changes stored before this was kept.
    pub op: Option<ChangeOp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// The units it wrote (asked to write, when refused).
    pub units: Vec<String>,
    pub author: Option<Author>,
    pub effective_hlc: Option<Hlc>,
    /// `applied`, `conflict`, `locked` or `refused`; `None` if the store has no outcome for it.
    pub outcome: Option<String>,
    /// The commit that made it visible (not for a refusal).
    pub commit_seq: Option<u64>,
    /// Units left with concurrent versions by it (`conflict`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflict_units: Vec<String>,
    /// Pending addenda its content became on a signed record (`locked`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addenda: Vec<RecordId>,
    /// Why it was refused: `code`, `message`, `field`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<Refusal>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
    /// The record the change was made to, when it touched this one from
    /// another: a review deciding this inspection, a pending addendum made here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<Via>,
}

/// A page of the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPage {
    pub changes: Vec<ChangeView>,
    /// Changes in the whole history (as read).
    pub total: usize,
    pub offset: usize,
    /// Ask again with `offset` set to this for the rest.
    pub next_offset: Option<usize>,
    /// The record had more than [`MAX_HISTORY_READ`] changes; only that many were read.
    pub truncated: bool,
}

/// `GET /api/v1/records/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordDetail {
    pub id: RecordId,
    pub kind: RecordKind,
    pub commit_seq: u64,
    pub workflow: Option<String>,
    /// Each unit's current value (the merge's winner).
    pub values: BTreeMap<String, UnitValue>,
    pub conflicts: Vec<ConflictView>,
    pub flags: Vec<Flag>,
    pub evidence: Vec<Flag>,
    pub lock: Option<Lock>,
    pub review: Option<ReviewMark>,
    pub history: HistoryPage,
}

/// Which part of the history to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub offset: usize,
    pub limit: usize,
}

/// The record `id` as `user` may see it; `None` when it does not exist or is
/// outside their scope (the same answer, so scope does not leak existence).
pub fn detail(
    storage: &dyn SyncStorage,
    accounts: &Accounts,
    user: &User,
    today: chrono::NaiveDate,
    id: RecordId,
    window: Window,
) -> Result<Option<RecordDetail>, DetailError> {
    let Some(state) = storage.record(id)? else {
        return Ok(None);
    };
    if !Visibility::new(storage, today).visible(&scope_of(user), &state)? {
        return Ok(None);
    }
    let history = storage.record_history(id, MAX_HISTORY_READ)?;
    let mut names = Names::new(accounts);
    let total = history.items.len();
    let offset = window.offset.min(total);
    let end = offset.saturating_add(window.limit).min(total);
    let changes = history.items[offset..end]
        .iter()
        .map(|item| change_view(item, &mut names))
        .collect::<Result<Vec<_>, _>>()?;
    let conflicts = conflicts(&state, &mut names)?;
    Ok(Some(RecordDetail {
        id: state.id,
        kind: state.kind,
        commit_seq: state.commit_seq,
        workflow: state.workflow.clone(),
        values: state
            .units
            .iter()
            .filter_map(|(k, u)| u.winner().map(|w| (k.clone(), w.value.clone())))
            .collect(),
        conflicts,
        flags: state.flags.clone(),
        evidence: state.evidence.clone(),
        lock: state.lock.clone(),
        review: state.review.clone(),
        history: HistoryPage {
            changes,
            total,
            offset,
            next_offset: (end < total).then_some(end),
            truncated: history.truncated,
        },
    }))
}

fn conflicts(state: &RecordState, names: &mut Names<'_>) -> Result<Vec<ConflictView>, AccountError> {
    let mut out = Vec::new();
    for (key, unit) in state.units.iter().filter(|(_, u)| u.in_conflict()) {
        let mut live: Vec<_> = unit.live.iter().collect();
        // The winner is the greatest (hlc, id): show it first.
        live.sort_by_key(|v| std::cmp::Reverse((v.hlc, v.id)));
        let mut versions = Vec::with_capacity(live.len());
        for v in live {
            let author = match state.meta.get(&v.id) {
                Some(m) => Some(names.author(m)?),
                None => None,
            };
            versions.push(VersionView {
                version: v.id,
                effective_hlc: v.hlc,
                value: v.value.clone(),
                author,
            });
        }
        out.push(ConflictView {
            unit: key.clone(),
            versions,
        });
    }
    Ok(out)
}

fn change_view(item: &HistoryItem, names: &mut Names<'_>) -> Result<ChangeView, AccountError> {
    let author = match &item.meta {
        Some(m) => Some(names.author(m)?),
        None => None,
    };
    let mut view = ChangeView {
        version: item.version,
        replica: item.version.replica,
        seq: item.version.seq,
        op: item.op,
        action: item.action.clone(),
        units: item.units.clone(),
        author,
        effective_hlc: item.effective,
        outcome: None,
        commit_seq: None,
        conflict_units: Vec::new(),
        addenda: Vec::new(),
        refusal: None,
        flags: item.flags.clone(),
        via: item.via,
    };
    if let Some(outcome) = &item.outcome {
        view.commit_seq = outcome.commit_seq();
        view.outcome = Some(
            match outcome {
                Outcome::Applied { .. } => "applied",
                Outcome::Conflict { units, .. } => {
                    view.conflict_units = units.clone();
                    "conflict"
                }
                Outcome::Locked { addenda, .. } => {
                    view.addenda = addenda.clone();
                    "locked"
                }
                Outcome::Refused(r) => {
                    view.refusal = Some(r.clone());
                    "refused"
                }
            }
            .to_string(),
        );
    }
    Ok(view)
}

/// Usernames, each user read once per answer.
struct Names<'a> {
    accounts: &'a Accounts,
    known: HashMap<UserId, Option<String>>,
}

impl<'a> Names<'a> {
    fn new(accounts: &'a Accounts) -> Self {
        Self {
            accounts,
            known: HashMap::new(),
        }
    }

    fn author(&mut self, meta: &VersionMeta) -> Result<Author, AccountError> {
        let username = match self.known.get(&meta.user) {
            Some(n) => n.clone(),
            None => {
                let n = self.accounts.user(meta.user)?.map(|u| u.username);
                self.known.insert(meta.user, n.clone());
                n
            }
        };
        Ok(Author {
            user: meta.user,
            username,
            device: meta.device,
            device_hlc: meta.hlc,
            device_time_ms: meta.hlc.ms,
            received_ms: meta.received_ms,
        })
    }
}

impl From<DetailError> for crate::error::ApiError {
    fn from(e: DetailError) -> Self {
        match e {
            DetailError::Storage(e) => e.into(),
            // Reading names is not the client's fault, whatever went wrong.
            DetailError::Accounts(e) => crate::error::ApiError::Internal(e.to_string()),
        }
    }
}

/// The detail as text for a terminal (`fieldsync record show`); times in Asia/Shanghai.
pub fn render(d: &RecordDetail) -> String {
    use std::fmt::Write as _;
    let at = |ms: u64| {
        mobile_schema::time::shanghai_at_ms(ms)
            .format("%Y-%m-%d %H:%M:%S%:z")
            .to_string()
    };
    let hlc = |h: &Hlc| format!("[{}, {}]", h.ms, h.c);
    let who = |a: &Author| {
        format!(
            "{} on device {} at {} (device time), hlc {}, received {}",
            a.username.as_deref().unwrap_or("(unknown user)"),
            a.device,
            at(a.device_time_ms),
            hlc(&a.device_hlc),
            at(a.received_ms)
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  workflow: {}  commit: {}",
        d.kind.as_str(),
        d.id,
        d.workflow.as_deref().unwrap_or("-"),
        d.commit_seq
    );
    if let Some(r) = &d.review {
        let _ = writeln!(
            out,
            "review: {} (review {}){}",
            r.decision,
            r.review,
            if r.changed_since_review {
                ", content changed since the review"
            } else {
                ""
            }
        );
    }
    if let Some(l) = &d.lock {
        let _ = writeln!(out, "signed by change {}: locked", l.by);
    }
    for (title, flags) in [("flags", &d.flags), ("evidence", &d.evidence)] {
        if !flags.is_empty() {
            let _ = writeln!(out, "{title}:");
            for f in flags {
                let _ = writeln!(out, "  {} {}: {}", f.code, f.field, f.message);
            }
        }
    }
    if !d.conflicts.is_empty() {
        let _ = writeln!(out, "conflicts (the first version of each unit is the current winner):");
        for c in &d.conflicts {
            let _ = writeln!(out, "  {}:", c.unit);
            for v in &c.versions {
                let by = v.author.as_ref().map(who).unwrap_or_else(|| "(author unknown)".into());
                let _ = writeln!(out, "    {} = {}  by {}", v.version, v.value.get(), by);
            }
        }
    }
    let h = &d.history;
    let _ = writeln!(
        out,
        "history: {} of {} changes{}",
        h.changes.len(),
        h.total,
        if h.truncated { " (more were not read)" } else { "" }
    );
    for c in &h.changes {
        let via = c
            .via
            .map(|v| format!(" of {} {}", v.kind.as_str(), v.id))
            .unwrap_or_default();
        let what = match (c.op, &c.action) {
            (Some(ChangeOp::Transition), Some(a)) => format!("transition {a}"),
            (Some(ChangeOp::Create), _) => "create".to_string(),
            (Some(ChangeOp::Edit), _) => format!("edit {}", c.units.join(", ")),
            (Some(ChangeOp::Recovered), _) => format!("brought back after a restore: {}", c.units.join(", ")),
            _ => format!("write {}", c.units.join(", ")),
        };
        let outcome = match (c.outcome.as_deref(), &c.refusal) {
            (Some("refused"), Some(r)) => format!(
                "REFUSED {}{}: {}",
                r.code.as_str(),
                r.field.as_deref().map(|f| format!(" at {f}")).unwrap_or_default(),
                r.message
            ),
            (Some("conflict"), _) => format!(
                "conflict on {} (commit {})",
                c.conflict_units.join(", "),
                c.commit_seq.unwrap_or(0)
            ),
            (Some("locked"), _) => format!("locked: {} pending addenda", c.addenda.len()),
            (Some(o), _) => format!("{o} (commit {})", c.commit_seq.unwrap_or(0)),
            (None, _) => "outcome unknown".to_string(),
        };
        let by = c.author.as_ref().map(who).unwrap_or_else(|| "(author unknown)".into());
        let effective = c.effective_hlc.as_ref().map(hlc).unwrap_or_else(|| "-".into());
        let _ = writeln!(out, "  {} {what}{via}: {outcome}", c.version);
        let _ = writeln!(out, "      by {by}; ordered at {effective}");
        for f in &c.flags {
            let _ = writeln!(out, "      flag {}: {}", f.code, f.message);
        }
    }
    out
}
