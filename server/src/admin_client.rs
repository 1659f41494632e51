//! The admin API from the command line: `fieldsync user ...` and `fieldsync
//! device ...` log in to a running server as an admin and call
//! `/api/v1/admin/*`, so accounts change without stopping the server.
//!
//! The command line logs in as a device of its own: one id per admin username
//! (a UUIDv5 of it), named `fieldsync CLI`, so the device list shows one entry
//! per admin rather than one per command.

use std::time::Duration;

use mobile_schema::ids::DeviceId;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sync_protocol::wire::{DeviceRegistration, ErrorBody, LoginRequest, TokenResponse, percent_encode};

use crate::routes::admin::{DeviceList, DeviceView, NewUser, UserChange, UserList, UserView};

/// Largest answer read (a device list of a large deployment fits many times).
const MAX_RESPONSE_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server answered {status} {}: {}{}", .body.code, .body.message, .body.field.as_deref().map(|f| format!(" (field `{f}`)")).unwrap_or_default())]
    Api { status: u16, body: ErrorBody },
    #[error("unreadable answer from the server: {0}")]
    Malformed(String),
}

impl ClientError {
    /// The API's error code, if the server answered one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { body, .. } => Some(&body.code),
            _ => None,
        }
    }
}

/// A logged-in admin session.
#[derive(Debug)]
pub struct AdminClient {
    agent: ureq::Agent,
    base: String,
    access_token: String,
}

/// The device id the command line uses for `username`.
pub fn cli_device(username: &str) -> DeviceId {
    DeviceId::from_name("fieldsync-cli", username)
}

impl AdminClient {
    /// Logs in to `server` (base URL) as `username`; the user must be an admin
    /// for the calls to succeed.
    pub fn login(server: &str, username: &str, password: &str) -> Result<Self, ClientError> {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("fieldsync-cli/", env!("CARGO_PKG_VERSION")))
            .build();
        let mut client = Self {
            agent: ureq::Agent::new_with_config(config),
            base: server.trim_end_matches('/').to_string(),
            access_token: String::new(),
        };
        let request = LoginRequest {
            username: username.to_string(),
            password: password.to_string(),
            device: DeviceRegistration {
                id: cli_device(username),
                replica: None,
                name: Some("fieldsync CLI".into()),
                app_version: Some(env!("CARGO_PKG_VERSION").into()),
            },
        };
        let token: TokenResponse = client.call("POST", "/api/v1/auth/login", Some(&request))?;
        client.access_token = token.access_token;
        Ok(client)
    }

    pub fn create_user(&self, user: &NewUser) -> Result<UserView, ClientError> {
        self.call("POST", "/api/v1/admin/users", Some(user))
    }

    pub fn users(&self) -> Result<Vec<UserView>, ClientError> {
        Ok(self.call::<(), UserList>("GET", "/api/v1/admin/users", None)?.users)
    }

    pub fn update_user(&self, username: &str, change: &UserChange) -> Result<UserView, ClientError> {
        let path = format!("/api/v1/admin/users/{}", percent_encode(username));
        self.call("PATCH", &path, Some(change))
    }

    pub fn devices(&self) -> Result<Vec<DeviceView>, ClientError> {
        Ok(self
            .call::<(), DeviceList>("GET", "/api/v1/admin/devices", None)?
            .devices)
    }

    pub fn revoke_device(&self, id: DeviceId) -> Result<DeviceView, ClientError> {
        self.call::<(), DeviceView>("POST", &format!("/api/v1/admin/devices/{id}/revoke"), None)
    }

    /// `POST /api/v1/schedule/generate` (a supervisor or an admin).
    pub fn generate_schedule(
        &self,
        request: &crate::schedule::GenerateRequest,
    ) -> Result<crate::schedule::GenerateResponse, ClientError> {
        self.call("POST", "/api/v1/schedule/generate", Some(request))
    }

    /// `POST /api/v1/schedule/regenerate`.
    pub fn regenerate_schedule(
        &self,
        request: &crate::schedule::RegenerateRequest,
    ) -> Result<crate::schedule::RegenerateResponse, ClientError> {
        self.call("POST", "/api/v1/schedule/regenerate", Some(request))
    }

    /// `GET /api/v1/reviews?QUERY`: one page of the review queue.
    pub fn review_queue(
        &self,
        query: &str,
    ) -> Result<crate::query::ListPage<crate::review::InspectionSummary>, ClientError> {
        self.call::<(), _>("GET", &format!("/api/v1/reviews?{query}"), None)
    }

    /// `GET /api/v1/reviews/{id}`.
    pub fn review_show(
        &self,
        id: mobile_schema::ids::InspectionId,
    ) -> Result<crate::review::ReviewDetail, ClientError> {
        self.call::<(), _>("GET", &format!("/api/v1/reviews/{id}"), None)
    }

    /// `POST /api/v1/reviews/{id}/approve` or `/return`.
    pub fn decide(
        &self,
        id: mobile_schema::ids::InspectionId,
        decision: mobile_schema::review::Decision,
        request: &crate::review::DecisionRequest,
    ) -> Result<crate::review::DecisionAnswer, ClientError> {
        let verb = match decision {
            mobile_schema::review::Decision::Approve => "approve",
            mobile_schema::review::Decision::Return => "return",
        };
        self.call("POST", &format!("/api/v1/reviews/{id}/{verb}"), Some(request))
    }

    /// `GET /api/v1/hazards?QUERY`.
    pub fn hazards(&self, query: &str) -> Result<crate::query::ListPage<crate::hazards::HazardSummary>, ClientError> {
        self.call::<(), _>("GET", &format!("/api/v1/hazards?{query}"), None)
    }

    /// `GET /api/v1/hazards/overdue?QUERY`.
    pub fn overdue_hazards(&self, query: &str) -> Result<crate::hazards::OverdueAnswer, ClientError> {
        self.call::<(), _>("GET", &format!("/api/v1/hazards/overdue?{query}"), None)
    }

    /// `GET /api/v1/records/{id}` with its whole history (every page, up to
    /// the server's bound).
    pub fn record(&self, id: mobile_schema::ids::RecordId) -> Result<crate::record_detail::RecordDetail, ClientError> {
        let page = crate::record_detail::MAX_HISTORY_PAGE;
        let mut detail: crate::record_detail::RecordDetail =
            self.call::<(), _>("GET", &format!("/api/v1/records/{id}?limit={page}"), None)?;
        while let Some(offset) = detail.history.next_offset {
            let more: crate::record_detail::RecordDetail = self.call::<(), _>(
                "GET",
                &format!("/api/v1/records/{id}?offset={offset}&limit={page}"),
                None,
            )?;
            // A server that does not move on would loop for ever.
            if more.history.offset != offset || more.history.changes.is_empty() {
                break;
            }
            detail.history.changes.extend(more.history.changes);
            detail.history.next_offset = more.history.next_offset;
        }
        Ok(detail)
    }

    /// `POST /api/v1/admin/backup`: `dir` is a folder on the server's machine.
    pub fn backup(&self, dir: &str) -> Result<crate::storage::backup::BackupInfo, ClientError> {
        let request = crate::routes::backup::BackupRequest { dir: dir.to_string() };
        self.call("POST", "/api/v1/admin/backup", Some(&request))
    }

    /// `GET /api/v1/sites` with the query as given (`region=...&kind=...`).
    pub fn sites(&self, query: &str) -> Result<crate::sites::SitePage, ClientError> {
        self.call::<(), _>("GET", &format!("/api/v1/sites?{query}"), None)
    }

    /// `POST /api/v1/sites`.
    pub fn create_site(&self, site: &serde_json::Value) -> Result<crate::sites::SiteEntry, ClientError> {
        self.call("POST", "/api/v1/sites", Some(site))
    }

    /// `POST /api/v1/sites/import`: one batch of a list.
    pub fn import_sites(
        &self,
        request: &crate::sites::ImportRequest,
    ) -> Result<crate::sites::ImportResponse, ClientError> {
        self.call("POST", "/api/v1/sites/import", Some(request))
    }

    /// A GET whose answer is text (CSV) or JSON, returned as it came.
    pub fn get_text(&self, path_and_query: &str) -> Result<String, ClientError> {
        let bytes = self.send::<()>("GET", path_and_query, None)?;
        String::from_utf8(bytes).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    fn call<B: Serialize, T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let bytes = self.send(method, path, body)?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Malformed(e.to_string()))
    }

    /// The answer's body on a 2xx, else the server's error.
    fn send<B: Serialize>(&self, method: &str, path: &str, body: Option<&B>) -> Result<Vec<u8>, ClientError> {
        let url = format!("{}{path}", self.base);
        let unreachable = |e: ureq::Error| ClientError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let bearer = format!("Bearer {}", self.access_token);
        let json = match body {
            Some(b) => serde_json::to_vec(b).map_err(|e| ClientError::Malformed(e.to_string()))?,
            None => b"{}".to_vec(),
        };
        let result = match method {
            "GET" => {
                let mut r = self.agent.get(&url).header("accept", "application/json, text/csv");
                if !self.access_token.is_empty() {
                    r = r.header("authorization", &bearer);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "PATCH" => self.agent.patch(&url),
                    _ => self.agent.post(&url),
                }
                .header("accept", "application/json")
                .header("content-type", "application/json");
                if !self.access_token.is_empty() {
                    r = r.header("authorization", &bearer);
                }
                r.send(&json[..])
            }
        };
        let mut response = result.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE_BYTES)
            .read_to_vec()
            .map_err(|e| ClientError::Malformed(e.to_string()))?;
        if !(200..=299).contains(&status) {
            let body = serde_json::from_slice(&bytes).unwrap_or_else(|_| ErrorBody {
                code: format!("http_{status}"),
                message: String::from_utf8_lossy(&bytes).chars().take(200).collect(),
                field: None,
            });
            return Err(ClientError::Api { status, body });
        }
        Ok(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_escaped_in_paths_and_cli_devices_are_stable() {
        assert_eq!(percent_encode("wei"), "wei");
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
        assert_eq!(percent_encode("韦"), "%E9%9F%A6");
        assert_eq!(cli_device("admin"), cli_device("admin"));
        assert_ne!(cli_device("admin"), cli_device("root"));
    }
}
