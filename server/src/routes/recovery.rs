//! `POST /api/v1/sync/recover`: after a restore, tablets send back the record
//! states they hold from the previous epoch (docs/protocol.md §9).

use actix_web::{HttpRequest, HttpResponse, post, web};
use sync_protocol::recovery::{
    MAX_RECOVER_RECORDS, RecoverRefusal, RecoverRequest, RecoverResponse, Recovered, RestoreBase,
};

use crate::access;
use crate::auth::Authenticated;
use crate::body;
use crate::error::ApiError;
use crate::startup::AppState;

#[utoipa::path(
    post,
    path = "/api/v1/sync/recover",
    tag = "sync",
    summary = "After a restore: record states a tablet held past the backup, applied once each",
    responses((status = 200, description = "{epoch, base_seq, added, workflow_restored, refused?}"), (status = 400, description = "invalid body"), (status = 409, description = "unknown epoch"), (status = 413, description = "too many records")),
    security(("bearer" = [])),
)]
#[post("/api/v1/sync/recover")]
pub async fn recover(
    auth: Authenticated,
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let request: RecoverRequest = body::json(&req, payload, state.settings.limits.max_push_bytes).await?;
    if request.records.len() > MAX_RECOVER_RECORDS {
        return Err(ApiError::TooLarge {
            limit: MAX_RECOVER_RECORDS,
            field: Some("records".into()),
        });
    }
    // Only the epoch this store was restored from: versions of any other
    // history are not the server's to take back.
    let restored = state
        .storage
        .restored_from()
        .filter(|r| r.from_epoch == request.epoch)
        .ok_or_else(|| ApiError::Conflict {
            code: "unknown_epoch",
            message: "this server was not restored from that epoch: nothing to recover".into(),
            field: Some("epoch".into()),
        })?;
    let base = RestoreBase {
        base_seq: restored.base_seq,
        restored_ms: restored.restored_ms,
    };
    let scope = access::scope_of(&auth.user);
    let ids: Vec<_> = request.records.iter().map(|r| r.id).collect();
    let st = state.clone();
    // As for a push: moves, and records that waited.
    let answers = web::block(move || crate::push_effects::recover(&st, &scope, request.records, base)).await??;
    let mut response = RecoverResponse {
        epoch: state.storage.epoch(),
        base_seq: base.base_seq,
        added: 0,
        workflow_restored: 0,
        refused: Vec::new(),
        server_time_ms: state.clock.now_ms(),
    };
    for (record, answer) in ids.into_iter().zip(answers) {
        match answer {
            Recovered::Taken { added, workflow } => {
                response.added += added;
                response.workflow_restored += usize::from(workflow);
            }
            Recovered::Known => {}
            Recovered::Refused(refusal) => response.refused.push(RecoverRefusal { record, refusal }),
        }
    }
    if response.added > 0 || response.workflow_restored > 0 || !response.refused.is_empty() {
        tracing::info!(
            user = %auth.user.username,
            device = %auth.device,
            added = response.added,
            workflow = response.workflow_restored,
            refused = response.refused.len(),
            "versions recovered from a tablet after a restore"
        );
    }
    Ok(HttpResponse::Ok().json(response))
}
