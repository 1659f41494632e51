//! Local checks of a workflow action against the local view, so an action that
//! can never apply is refused before it reaches the outbox.

use mobile_schema::ids::UserId;
use mobile_schema::record::RecordKind;
use mobile_schema::workflow::{
    AddendumState, HazardState, InspectionStatus, Role, StateMachine, TaskState, TransitionError,
};
use sync_protocol::{RecordState, Refusal, RefusalCode};

/// Whether `action` is allowed for `user` in `role` from the view's workflow state.
pub fn check_transition(view: &RecordState, action: &str, role: Role, user: UserId) -> Result<(), Refusal> {
    match view.kind {
        RecordKind::Inspection => {
            if matches!(action, "approve" | "return") {
                // The server only takes these as Review records.
                return Err(Refusal::new(
                    RefusalCode::UnknownAction,
                    "approve and return are made by creating a Review",
                )
                .at("action"));
            }
            if action == "sign" && view.lock.is_some() {
                return Err(
                    Refusal::new(RefusalCode::TransitionNotAllowed, "the inspection is already signed").at("action"),
                );
            }
            step::<InspectionStatus>(view, action, role)
        }
        RecordKind::Hazard => {
            step::<HazardState>(view, action, role)?;
            match serde_json::from_value::<mobile_schema::workflow::HazardAction>(serde_json::Value::String(
                action.to_string(),
            )) {
                Ok(a) => sync_protocol::engine::hazard_evidence(view, a),
                Err(_) => Ok(()),
            }
        }
        RecordKind::Task => step::<TaskState>(view, action, role),
        RecordKind::Addendum => {
            step::<AddendumState>(view, action, role)?;
            sync_protocol::scope::may_decide_addendum(view, role, user)
        }
        kind => Err(Refusal::new(
            RefusalCode::UnknownAction,
            format!("a {} has no workflow", kind.as_str()),
        )
        .at("action")),
    }
}

fn step<M>(view: &RecordState, action: &str, role: Role) -> Result<(), Refusal>
where
    M: StateMachine + serde::de::DeserializeOwned,
    M::Action: serde::de::DeserializeOwned,
{
    let unknown = || {
        Refusal::new(
            RefusalCode::UnknownAction,
            format!("`{action}` is not an action of a {}", view.kind.as_str()),
        )
        .at("action")
    };
    let a: M::Action = serde_json::from_value(serde_json::Value::String(action.to_string())).map_err(|_| unknown())?;
    let state: M = view
        .workflow
        .clone()
        .and_then(|s| serde_json::from_value(serde_json::Value::String(s)).ok())
        .ok_or_else(|| {
            Refusal::new(
                RefusalCode::InvalidStructure,
                "the record has no readable workflow state",
            )
        })?;
    match state.apply(a, role) {
        Ok(_) => Ok(()),
        Err(e @ TransitionError::NotAllowedFrom { .. }) => {
            Err(Refusal::new(RefusalCode::TransitionNotAllowed, e.to_string()).at("action"))
        }
        Err(e @ TransitionError::RoleMayNot { .. }) => {
            Err(Refusal::new(RefusalCode::RoleNotAllowed, e.to_string()).at("action"))
        }
    }
}
