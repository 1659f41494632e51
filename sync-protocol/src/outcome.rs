//! What became of each change. Expected outcomes are values, not errors: one bad
//! change never sinks a batch.

use mobile_schema::ids::RecordId;
use serde::{Deserialize, Serialize};

/// Why a change was refused. Stable snake_case codes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The record's JSON does not decode into its kind (wrong type, unknown unit...).
    InvalidStructure,
    /// The record decodes but has errors that make it unusable.
    InvalidRecord,
    /// An edit or transition of a record the server does not have.
    UnknownRecord,
    /// A create of a record that exists.
    AlreadyExists,
    /// A workflow action this kind of record does not have.
    UnknownAction,
    /// The action is not allowed from the record's current state.
    TransitionNotAllowed,
    /// The author's role may not take this action.
    RoleNotAllowed,
    /// The record is outside the author's scope.
    ForbiddenScope,
    /// The change skips sequence numbers; resend from `expected`.
    SeqGap,
    /// The same (replica, seq) arrived with other content: the replica must re-key.
    ReplicaForked,
    /// Too many units or bytes in one change.
    TooLarge,
    /// A workflow step whose evidence is not on the record yet (a hazard
    /// notice without its deadline, a verification without its photos).
    EvidenceRequired,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::InvalidStructure => "invalid_structure",
            RefusalCode::InvalidRecord => "invalid_record",
            RefusalCode::UnknownRecord => "unknown_record",
            RefusalCode::AlreadyExists => "already_exists",
            RefusalCode::UnknownAction => "unknown_action",
            RefusalCode::TransitionNotAllowed => "transition_not_allowed",
            RefusalCode::RoleNotAllowed => "role_not_allowed",
            RefusalCode::ForbiddenScope => "forbidden_scope",
            RefusalCode::SeqGap => "seq_gap",
            RefusalCode::ReplicaForked => "replica_forked",
            RefusalCode::TooLarge => "too_large",
            RefusalCode::EvidenceRequired => "evidence_required",
        }
    }

    /// Refusals that are not recorded against the sequence: the replica must act
    /// (resend, re-key) and the same seq will come again.
    pub fn is_transient(self) -> bool {
        matches!(self, RefusalCode::SeqGap | RefusalCode::ReplicaForked)
    }
}

/// A refusal with its reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn at(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }
}

/// The outcome of one change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Applied; the record now has this commit sequence.
    Applied {
        commit_seq: u64,
    },
    /// Applied, and these units now hold concurrent versions a person must resolve.
    Conflict {
        commit_seq: u64,
        units: Vec<String>,
    },
    /// The record is signed: the content was not applied but kept as pending
    /// addenda, reported to the author.
    Locked {
        commit_seq: u64,
        addenda: Vec<RecordId>,
    },
    Refused(Refusal),
}

impl Outcome {
    pub fn commit_seq(&self) -> Option<u64> {
        match self {
            Outcome::Applied { commit_seq }
            | Outcome::Conflict { commit_seq, .. }
            | Outcome::Locked { commit_seq, .. } => Some(*commit_seq),
            Outcome::Refused(_) => None,
        }
    }

    pub fn refusal(&self) -> Option<&Refusal> {
        match self {
            Outcome::Refused(r) => Some(r),
            _ => None,
        }
    }
}

/// A flag a supervisor sees: a rule breach that never costs a record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub code: String,
    pub field: String,
    pub message: String,
}

/// The answer to one change of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeOutcome {
    pub seq: u64,
    #[serde(flatten)]
    pub outcome: Outcome,
    /// A retry: this is the outcome recorded the first time.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replayed: bool,
    /// Flags this change raised on its own (clock skew).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<Flag>,
}
