//! Workflow state machines. These are not merged: the server applies each
//! transition in arrival order against the current state and refuses one that is
//! not allowed from that state or by that role.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// What a user may do is decided by the role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// 执法人员 on a tablet.
    Inspector,
    /// Reviews inspections and follows hazards.
    Supervisor,
    /// Everything, including accounts.
    Admin,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("`{action}` is not allowed from `{from}`")]
    NotAllowedFrom { action: &'static str, from: &'static str },
    #[error("the {role:?} role may not `{action}`")]
    RoleMayNot { action: &'static str, role: Role },
}

impl TransitionError {
    /// A stable code for the wire.
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::NotAllowedFrom { .. } => "transition_not_allowed",
            TransitionError::RoleMayNot { .. } => "role_not_allowed",
        }
    }
}

/// A state machine: states, actions, and who may take each step.
pub trait StateMachine: Copy + Eq + Sized + 'static {
    type Action: Copy + Eq + 'static;

    fn name(self) -> &'static str;
    fn action_name(action: Self::Action) -> &'static str;
    /// The state an action leads to from `self`, if the action is allowed here.
    fn target(self, action: Self::Action) -> Option<Self>;
    /// The roles that may take the action (admin always may).
    fn roles(action: Self::Action) -> &'static [Role];

    fn apply(self, action: Self::Action, role: Role) -> Result<Self, TransitionError> {
        let name = Self::action_name(action);
        if role != Role::Admin && !Self::roles(action).contains(&role) {
            return Err(TransitionError::RoleMayNot { action: name, role });
        }
        self.target(action).ok_or(TransitionError::NotAllowedFrom {
            action: name,
            from: self.name(),
        })
    }
}

const INSPECTOR: &[Role] = &[Role::Inspector];
const SUPERVISOR: &[Role] = &[Role::Supervisor];
const BOTH: &[Role] = &[Role::Inspector, Role::Supervisor];

/// Inspection status. Signing is not a status: it locks content (see the protocol).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum InspectionStatus {
    #[default]
    Draft,
    Submitted,
    Returned,
    Approved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InspectionAction {
    /// Draft or returned → submitted (a resubmission goes back to review).
    Submit,
    /// Submitted → approved, by a supervisor.
    Approve,
    /// Submitted → returned with comments, by a supervisor.
    Return,
    /// The inspected party signed or refused: locks the content; status unchanged.
    Sign,
}

impl StateMachine for InspectionStatus {
    type Action = InspectionAction;

    fn name(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Returned => "returned",
            Self::Approved => "approved",
        }
    }

    fn action_name(a: InspectionAction) -> &'static str {
        match a {
            InspectionAction::Submit => "submit",
            InspectionAction::Approve => "approve",
            InspectionAction::Return => "return",
            InspectionAction::Sign => "sign",
        }
    }

    fn target(self, a: InspectionAction) -> Option<Self> {
        use InspectionAction as A;
        use InspectionStatus as S;
        match (self, a) {
            (S::Draft | S::Returned, A::Submit) => Some(S::Submitted),
            (S::Submitted, A::Approve) => Some(S::Approved),
            (S::Submitted, A::Return) => Some(S::Returned),
            (S::Draft | S::Submitted | S::Returned, A::Sign) => Some(self),
            _ => None,
        }
    }

    fn roles(a: InspectionAction) -> &'static [Role] {
        match a {
            InspectionAction::Submit | InspectionAction::Sign => INSPECTOR,
            InspectionAction::Approve | InspectionAction::Return => SUPERVISOR,
        }
    }
}

/// Hazard lifecycle (整改销号).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum HazardState {
    #[default]
    Identified,
    /// 责令整改: the responsible party was notified with a deadline.
    Notified,
    Rectifying,
    RectificationSubmitted,
    /// Verified on site by an inspector.
    Verified,
    /// 销号.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HazardAction {
    Notify,
    StartRectification,
    SubmitRectification,
    /// The submitted rectification is not enough: back to rectifying.
    RejectRectification,
    Verify,
    Close,
    Reopen,
}

impl StateMachine for HazardState {
    type Action = HazardAction;

    fn name(self) -> &'static str {
        match self {
            Self::Identified => "identified",
            Self::Notified => "notified",
            Self::Rectifying => "rectifying",
            Self::RectificationSubmitted => "rectification_submitted",
            Self::Verified => "verified",
            Self::Closed => "closed",
        }
    }

    fn action_name(a: HazardAction) -> &'static str {
        match a {
            HazardAction::Notify => "notify",
            HazardAction::StartRectification => "start_rectification",
            HazardAction::SubmitRectification => "submit_rectification",
            HazardAction::RejectRectification => "reject_rectification",
            HazardAction::Verify => "verify",
            HazardAction::Close => "close",
            HazardAction::Reopen => "reopen",
        }
    }

    fn target(self, a: HazardAction) -> Option<Self> {
        use HazardAction as A;
        use HazardState as S;
        match (self, a) {
            (S::Identified, A::Notify) => Some(S::Notified),
            (S::Notified, A::StartRectification) => Some(S::Rectifying),
            (S::Notified | S::Rectifying, A::SubmitRectification) => Some(S::RectificationSubmitted),
            (S::RectificationSubmitted, A::RejectRectification) => Some(S::Rectifying),
            (S::RectificationSubmitted, A::Verify) => Some(S::Verified),
            (S::Verified, A::Close) => Some(S::Closed),
            (S::Verified | S::Closed, A::Reopen) => Some(S::Rectifying),
            _ => None,
        }
    }

    fn roles(a: HazardAction) -> &'static [Role] {
        match a {
            // Inspectors order rectification on site (已现场责令整改) and verify on site.
            HazardAction::Notify
            | HazardAction::StartRectification
            | HazardAction::SubmitRectification
            | HazardAction::RejectRectification => BOTH,
            HazardAction::Verify => INSPECTOR,
            HazardAction::Close | HazardAction::Reopen => SUPERVISOR,
        }
    }
}

impl HazardState {
    /// Still waiting for the responsible party or the bureau.
    pub fn is_open(self) -> bool {
        !matches!(self, HazardState::Verified | HazardState::Closed)
    }
}

/// Task state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum TaskState {
    #[default]
    Planned,
    InProgress,
    Done,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskAction {
    Start,
    Complete,
    Cancel,
}

impl StateMachine for TaskState {
    type Action = TaskAction;

    fn name(self) -> &'static str {
        match self {
            Self::Planned => "planned",
            Self::InProgress => "in_progress",
            Self::Done => "done",
            Self::Cancelled => "cancelled",
        }
    }

    fn action_name(a: TaskAction) -> &'static str {
        match a {
            TaskAction::Start => "start",
            TaskAction::Complete => "complete",
            TaskAction::Cancel => "cancel",
        }
    }

    fn target(self, a: TaskAction) -> Option<Self> {
        use TaskAction as A;
        use TaskState as S;
        match (self, a) {
            (S::Planned, A::Start) => Some(S::InProgress),
            (S::Planned | S::InProgress, A::Complete) => Some(S::Done),
            (S::Planned | S::InProgress, A::Cancel) => Some(S::Cancelled),
            _ => None,
        }
    }

    fn roles(a: TaskAction) -> &'static [Role] {
        match a {
            TaskAction::Start | TaskAction::Complete => INSPECTOR,
            TaskAction::Cancel => SUPERVISOR,
        }
    }
}

/// An addendum is pending until its author confirms or discards it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum AddendumState {
    #[default]
    Pending,
    Appended,
    Discarded,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AddendumAction {
    Append,
    Discard,
}

impl StateMachine for AddendumState {
    type Action = AddendumAction;

    fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Appended => "appended",
            Self::Discarded => "discarded",
        }
    }

    fn action_name(a: AddendumAction) -> &'static str {
        match a {
            AddendumAction::Append => "append",
            AddendumAction::Discard => "discard",
        }
    }

    fn target(self, a: AddendumAction) -> Option<Self> {
        match (self, a) {
            (Self::Pending, AddendumAction::Append) => Some(Self::Appended),
            (Self::Pending, AddendumAction::Discard) => Some(Self::Discarded),
            _ => None,
        }
    }

    fn roles(_: AddendumAction) -> &'static [Role] {
        BOTH
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspection_review_loop_follows_the_rules() {
        let s = InspectionStatus::Draft;
        let s = s.apply(InspectionAction::Submit, Role::Inspector).unwrap();
        assert_eq!(s, InspectionStatus::Submitted);
        let err = s.apply(InspectionAction::Approve, Role::Inspector).unwrap_err();
        assert_eq!(err.code(), "role_not_allowed");
        let s = s.apply(InspectionAction::Return, Role::Supervisor).unwrap();
        assert_eq!(s, InspectionStatus::Returned);
        let s = s.apply(InspectionAction::Submit, Role::Inspector).unwrap();
        let s = s.apply(InspectionAction::Approve, Role::Supervisor).unwrap();
        assert_eq!(s, InspectionStatus::Approved);
        let err = s.apply(InspectionAction::Return, Role::Supervisor).unwrap_err();
        assert_eq!(err.code(), "transition_not_allowed");
        assert_eq!(
            s.apply(InspectionAction::Sign, Role::Inspector).unwrap_err().code(),
            "transition_not_allowed"
        );
    }

    #[test]
    fn hazard_goes_to_closure_and_can_be_reopened() {
        use HazardAction as A;
        let mut s = HazardState::Identified;
        for (a, role) in [
            (A::Notify, Role::Inspector),
            (A::StartRectification, Role::Inspector),
            (A::SubmitRectification, Role::Inspector),
            (A::Verify, Role::Inspector),
            (A::Close, Role::Supervisor),
        ] {
            s = s.apply(a, role).unwrap();
        }
        assert_eq!(s, HazardState::Closed);
        assert!(HazardState::Closed.apply(A::Reopen, Role::Inspector).is_err());
        assert_eq!(s.apply(A::Reopen, Role::Supervisor).unwrap(), HazardState::Rectifying);
        assert!(HazardState::Identified.apply(A::Close, Role::Supervisor).is_err());
        assert!(
            HazardState::RectificationSubmitted
                .apply(A::Verify, Role::Supervisor)
                .is_err()
        );
        assert!(HazardState::Verified.apply(A::Close, Role::Admin).is_ok());
    }

    #[test]
    fn tasks_and_addenda() {
        assert_eq!(
            TaskState::Planned.apply(TaskAction::Complete, Role::Inspector).unwrap(),
            TaskState::Done
        );
        assert!(TaskState::Done.apply(TaskAction::Cancel, Role::Supervisor).is_err());
        assert!(TaskState::Planned.apply(TaskAction::Cancel, Role::Inspector).is_err());
        assert!(
            AddendumState::Appended
                .apply(AddendumAction::Discard, Role::Inspector)
                .is_err()
        );
    }
}
