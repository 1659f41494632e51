//! A replica's optimistic view: the server's last state of a record with the
//! replica's own unacknowledged changes applied on top. Content applies as the
//! server would; workflow steps apply when allowed from the local state, and the
//! server's outcome is adopted on the next pull.

use mobile_schema::ids::{DeviceId, UserId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::workflow::{
    AddendumState, HazardAction, HazardState, InspectionStatus, Role, StateMachine, TaskState,
};

use crate::change::{Change, Op};
use crate::ids::ReplicaId;
use crate::outcome::{Refusal, RefusalCode};
use crate::state::{Lock, RecordState, VersionMeta};
use crate::unit::LiveVersion;
use crate::value::UnitValue;

/// The author of local changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAuthor {
    pub replica: ReplicaId,
    pub user: UserId,
    pub device: DeviceId,
    pub role: Role,
}

/// Apply one of the replica's own changes to its view of the record.
/// Errors only for changes that could never apply (structure); the caller
/// refuses those before they reach the outbox.
pub fn apply_local(view: Option<RecordState>, change: &Change, author: &LocalAuthor) -> Result<RecordState, Refusal> {
    let id = change.id(author.replica);
    let meta = VersionMeta {
        user: author.user,
        device: author.device,
        hlc: change.hlc,
        received_ms: 0,
    };
    match &change.op {
        Op::Create { record, .. } => {
            if let Some(existing) = view {
                // Already applied (a replay of the overlay): nothing to do.
                return Ok(existing);
            }
            let typed = AnyRecord::from_json(change.kind, record.get())
                .map_err(|e| Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field()))?;
            let units = typed
                .units()
                .map_err(|e| Refusal::new(RefusalCode::InvalidStructure, e.to_string()).at(e.field()))?;
            let mut state = RecordState::new(change.kind, change.record);
            for (key, value) in units {
                let v = LiveVersion {
                    id,
                    hlc: change.hlc,
                    value: UnitValue::from_raw(value),
                };
                state.apply(&key, v, &[], meta);
            }
            Ok(state)
        }
        Op::Edit { units } => {
            let mut state = view.ok_or_else(|| Refusal::new(RefusalCode::UnknownRecord, "no such record"))?;
            let layout = change.kind.layout();
            for w in units {
                let Some(field) = layout.field_of(&w.key) else {
                    return Err(
                        Refusal::new(RefusalCode::InvalidStructure, "not a unit of this kind").at(w.key.clone())
                    );
                };
                if field.lockable && state.lock.is_some() {
                    continue; // the server will keep it as a pending addendum
                }
                let v = LiveVersion {
                    id,
                    hlc: change.hlc,
                    value: w.value.clone(),
                };
                state.apply(&w.key, v, &w.bases, meta);
            }
            Ok(state)
        }
        Op::Transition { action, versions } => {
            let mut state = view.ok_or_else(|| Refusal::new(RefusalCode::UnknownRecord, "no such record"))?;
            let hazard_action = (change.kind == RecordKind::Hazard)
                .then(|| crate::engine::parse_action::<HazardAction>(action))
                .flatten();
            let next = match change.kind {
                RecordKind::Inspection => local_step::<InspectionStatus>(&state, action, author.role),
                RecordKind::Hazard => local_step::<HazardState>(&state, action, author.role)
                    .filter(|_| hazard_action.is_some_and(|a| crate::engine::hazard_evidence(&state, a).is_ok())),
                RecordKind::Task => local_step::<TaskState>(&state, action, author.role),
                RecordKind::Addendum => local_step::<AddendumState>(&state, action, author.role)
                    .filter(|_| crate::scope::may_decide_addendum(&state, author.role, author.user).is_ok()),
                _ => None,
            };
            if let Some(next) = next {
                state.workflow = Some(next);
                if let Some(a) = hazard_action {
                    crate::engine::set_aside_evidence(&mut state, a, id, change.hlc, meta);
                }
                if change.kind == RecordKind::Inspection && action == "sign" && state.lock.is_none() {
                    state.lock = Some(Lock {
                        by: id,
                        units: versions.clone().unwrap_or_default(),
                    });
                }
            }
            Ok(state)
        }
    }
}

fn local_step<M>(state: &RecordState, action: &str, role: Role) -> Option<String>
where
    M: StateMachine + serde::de::DeserializeOwned,
    M::Action: serde::de::DeserializeOwned,
{
    let current: M = serde_json::from_value(serde_json::Value::String(state.workflow.clone()?)).ok()?;
    let action: M::Action = serde_json::from_value(serde_json::Value::String(action.to_string())).ok()?;
    current.apply(action, role).ok().map(|s| s.name().to_string())
}
