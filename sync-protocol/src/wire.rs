//! Push and pull messages.

use serde::{Deserialize, Serialize};

use crate::change::Change;
use crate::outcome::ChangeOutcome;
use crate::state::RecordState;

/// `POST /api/v1/sync/push`: changes of the token's replica, in seq order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushRequest {
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResponse {
    /// One per change, in the order sent.
    pub outcomes: Vec<ChangeOutcome>,
    /// The next seq the server expects from this replica.
    pub expected_seq: u64,
    pub server_time_ms: u64,
    /// Changes when the server is restored from a backup.
    pub epoch: String,
}

/// `GET /api/v1/sync/pull?since=CURSOR&limit=N`: the current state of every record
/// changed after the cursor, one entry per record, in commit order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullResponse {
    pub records: Vec<RecordState>,
    /// Opaque; pass it back as `since`.
    pub next: String,
    pub more: bool,
    pub server_time_ms: u64,
    pub epoch: String,
}
