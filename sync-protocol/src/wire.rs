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
    /// Records the user may no longer see (their scope shrank): remove them
    /// from the device. Sent with the first page after the change.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub purge: Vec<mobile_schema::ids::RecordId>,
}

/// A pull page as a client reads it: `records`, or with `layout=columns` the
/// same records as `columns` (see [`crate::columns`]).
#[derive(Debug, Clone, Deserialize)]
pub struct PullPage {
    #[serde(default)]
    pub records: Option<Vec<RecordState>>,
    #[serde(default)]
    pub columns: Option<Box<serde_json::value::RawValue>>,
    pub next: String,
    pub more: bool,
    pub server_time_ms: u64,
    pub epoch: String,
    #[serde(default)]
    pub purge: Vec<mobile_schema::ids::RecordId>,
}

/// Why a pull page's columns did not give records.
#[derive(Debug, thiserror::Error)]
pub enum PullPageError {
    #[error(transparent)]
    Columns(#[from] crate::columns::ColumnsError),
    #[error("a record of the columns: {0}")]
    Record(#[from] serde_json::Error),
    #[error("a pull page holds `records` or `columns`, one of them")]
    Shape,
}

impl From<PullResponse> for PullPage {
    /// A page already in rows.
    fn from(r: PullResponse) -> Self {
        PullPage {
            records: Some(r.records),
            columns: None,
            next: r.next,
            more: r.more,
            server_time_ms: r.server_time_ms,
            epoch: r.epoch,
            purge: r.purge,
        }
    }
}

impl PullPage {
    /// The page with its records in rows.
    pub fn into_response(self) -> Result<PullResponse, PullPageError> {
        let records = match (self.records, self.columns) {
            (Some(records), None) => records,
            (None, Some(columns)) => serde_json::from_slice(&crate::columns::rows(columns.get())?)?,
            _ => return Err(PullPageError::Shape),
        };
        Ok(PullResponse {
            records,
            next: self.next,
            more: self.more,
            server_time_ms: self.server_time_ms,
            epoch: self.epoch,
            purge: self.purge,
        })
    }
}

/// `POST /api/v1/auth/login`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    pub device: DeviceRegistration,
}

/// The device a login registers, and the replica its tokens speak for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRegistration {
    pub id: mobile_schema::ids::DeviceId,
    /// Absent before the device has a store; bind one later with a refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::ids::ReplicaId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
}

/// `POST /api/v1/auth/refresh`: a new token pair; the old refresh token is spent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshRequest {
    pub refresh_token: String,
    /// Rebind the device's tokens to this replica (a new store, or a re-key after a fork).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<crate::ids::ReplicaId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub refresh_token: String,
    /// Seconds the access token lives.
    pub expires_in: u64,
    pub token_type: String,
    pub user: UserInfo,
    /// The deployment's rule settings, which the tablet validates with
    /// (absent from older servers: the defaults apply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<mobile_schema::rule_settings::RuleSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub id: mobile_schema::ids::UserId,
    pub username: String,
    pub role: mobile_schema::workflow::Role,
}

/// Every 4xx/5xx body: a stable code, a sentence for people, and the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Percent-encode a path segment or a query value: everything but RFC 3986's
/// unreserved characters (a cursor is opaque, a username may be Chinese).
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
