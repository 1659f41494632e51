//! Plain HTTP against a test server: raw status, headers and JSON, so tests can
//! see exactly what the server answers (errors included), and helpers for the
//! admin API that every scope test needs (create users, list and revoke devices).

use std::time::Duration;

use anyhow::{Context, bail};
use mobile_schema::ids::DeviceId;
use serde_json::{Value, json};

/// One answer: the status, `Retry-After` if any, and the JSON body (`Null` if empty
/// or not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Answer {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }

    /// Requires a 2xx and returns the body.
    pub fn ok(self) -> anyhow::Result<Value> {
        if !(200..=299).contains(&self.status) {
            bail!("HTTP {}: {}", self.status, self.body);
        }
        Ok(self.body)
    }
}

/// A blocking client for one server.
#[derive(Debug, Clone)]
pub struct Api {
    agent: ureq::Agent,
    base: String,
}

/// A token pair from a login or refresh.
#[derive(Debug, Clone)]
pub struct Tokens {
    pub access: String,
    pub refresh: String,
}

impl Tokens {
    pub fn from_body(body: &Value) -> anyhow::Result<Self> {
        Ok(Self {
            access: body["access_token"].as_str().context("no access_token")?.to_string(),
            refresh: body["refresh_token"].as_str().context("no refresh_token")?.to_string(),
        })
    }
}

impl Api {
    /// `base` like `http://127.0.0.1:PORT`.
    pub fn new(base: impl Into<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(60)))
            .build();
        Self {
            agent: ureq::Agent::new_with_config(config),
            base: base.into().trim_end_matches('/').to_string(),
        }
    }

    /// Any request; `body` is sent as JSON.
    pub fn send(&self, method: &str, path: &str, bearer: Option<&str>, body: Option<&Value>) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.base);
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let result = match body {
            None if method == "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    "PATCH" => self.agent.patch(&url),
                    "PUT" => self.agent.put(&url),
                    other => bail!("no body method {other}"),
                };
                if let Some(a) = &auth {
                    r = r.header("authorization", a);
                }
                let bytes = serde_json::to_vec(body.unwrap_or(&Value::Null))?;
                r.header("content-type", "application/json").send(&bytes[..])
            }
        };
        let mut response = result.with_context(|| format!("{method} {url}"))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = response.body_mut().read_to_vec()?;
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    }

    pub fn get(&self, path: &str, bearer: Option<&str>) -> anyhow::Result<Answer> {
        self.send("GET", path, bearer, None)
    }

    pub fn post(&self, path: &str, bearer: Option<&str>, body: &Value) -> anyhow::Result<Answer> {
        self.send("POST", path, bearer, Some(body))
    }

    /// `POST /api/v1/auth/login` from `device`.
    pub fn login_as(&self, username: &str, password: &str, device: DeviceId) -> anyhow::Result<Answer> {
        self.post(
            "/api/v1/auth/login",
            None,
            &json!({"username": username, "password": password, "device": {"id": device, "name": "api test"}}),
        )
    }

    /// A successful login from a new device.
    pub fn login(&self, username: &str, password: &str) -> anyhow::Result<Tokens> {
        Tokens::from_body(&self.login_as(username, password, DeviceId::generate())?.ok()?)
    }

    /// `POST /api/v1/auth/refresh`.
    pub fn refresh(&self, refresh_token: &str) -> anyhow::Result<Answer> {
        self.post("/api/v1/auth/refresh", None, &json!({"refresh_token": refresh_token}))
    }

    /// Creates a user through the admin API.
    pub fn create_user(
        &self,
        admin_token: &str,
        username: &str,
        password: &str,
        role: &str,
        regions: &[&str],
    ) -> anyhow::Result<Value> {
        self.post(
            "/api/v1/admin/users",
            Some(admin_token),
            &json!({"username": username, "password": password, "role": role, "regions": regions}),
        )?
        .ok()
    }

    /// Changes a user through the admin API.
    pub fn update_user(&self, admin_token: &str, username: &str, change: &Value) -> anyhow::Result<Answer> {
        self.send(
            "PATCH",
            &format!("/api/v1/admin/users/{}", sync_protocol::wire::percent_encode(username)),
            Some(admin_token),
            Some(change),
        )
    }

    /// Every device, as the admin API lists them.
    pub fn devices(&self, admin_token: &str) -> anyhow::Result<Vec<Value>> {
        let body = self.get("/api/v1/admin/devices", Some(admin_token))?.ok()?;
        Ok(body["devices"].as_array().cloned().unwrap_or_default())
    }

    pub fn revoke_device(&self, admin_token: &str, device: &str) -> anyhow::Result<Answer> {
        self.post(
            &format!("/api/v1/admin/devices/{device}/revoke"),
            Some(admin_token),
            &json!({}),
        )
    }
}
