//! The device's token pair and who it speaks for, kept in memory by the HTTP
//! transport and persisted by its owner (the `fieldsync-device` CLI keeps it in
//! `credentials.json` in the device folder, readable by its owner only).
//!
//! A refresh spends the old refresh token, so the new pair must reach disk before
//! the old one is forgotten: [`Credentials::save`] writes a temporary file, syncs
//! it and renames it over the old one.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use mobile_schema::ids::DeviceId;
use serde::{Deserialize, Serialize};
use sync_protocol::ReplicaId;
use sync_protocol::wire::{TokenResponse, UserInfo};

/// Why credentials could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("credentials file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is unreadable: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// A device's login: the server, the token pair, the user and the replica the
/// access token is bound to.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// Base URL of the server, e.g. `https://sync.example.org`.
    pub server: String,
    pub device: DeviceId,
    pub user: UserInfo,
    pub access_token: String,
    pub refresh_token: String,
    /// Local time (ms since the epoch) from which the access token counts as
    /// expired; a little before the server's expiry so a request never races it.
    pub access_expires_at_ms: u64,
    /// The replica the tokens speak for; `None` until a store is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica: Option<ReplicaId>,
    /// Why the server last refused these tokens (`device_revoked: ...`): the
    /// device must log in (or be enrolled) again. Cleared by a login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// The deployment's rule settings the server gave with the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules: Option<mobile_schema::rule_settings::RuleSettings>,
}

// Tokens are secrets: never in logs or error messages.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("server", &self.server)
            .field("device", &self.device)
            .field("user", &self.user)
            .field("access_token", &"<redacted>")
            .field("refresh_token", &"<redacted>")
            .field("access_expires_at_ms", &self.access_expires_at_ms)
            .field("replica", &self.replica)
            .field("refused", &self.refused)
            .field("rules", &self.rules)
            .finish()
    }
}

/// Refresh this long before the server's expiry at most (ms).
const EXPIRY_MARGIN_MS: u64 = 30_000;

impl Credentials {
    /// Credentials from a login or refresh answer received at `now_ms`.
    pub fn from_token(
        server: impl Into<String>,
        device: DeviceId,
        replica: Option<ReplicaId>,
        token: TokenResponse,
        now_ms: u64,
    ) -> Self {
        Self {
            server: server.into(),
            device,
            user: token.user,
            access_expires_at_ms: expires_at(token.expires_in, now_ms),
            access_token: token.access_token,
            refresh_token: token.refresh_token,
            replica,
            refused: None,
            rules: token.rules,
        }
    }

    /// Take a refresh answer received at `now_ms`; the tokens now speak for `replica`.
    pub fn renew(&mut self, token: TokenResponse, replica: Option<ReplicaId>, now_ms: u64) {
        self.access_expires_at_ms = expires_at(token.expires_in, now_ms);
        self.access_token = token.access_token;
        self.refresh_token = token.refresh_token;
        self.user = token.user;
        self.replica = replica;
        self.refused = None;
        if token.rules.is_some() {
            self.rules = token.rules;
        }
    }

    pub fn is_expired(&self, now_ms: u64) -> bool {
        now_ms >= self.access_expires_at_ms
    }

    /// Read credentials saved by [`Credentials::save`].
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let bytes = std::fs::read(path).map_err(|source| CredentialsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_slice(&bytes).map_err(|e| CredentialsError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// Write atomically, readable and writable by the owner only (0600 on Unix).
    pub fn save(&self, path: &Path) -> Result<(), CredentialsError> {
        let io = |source| CredentialsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| CredentialsError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(io)?;
        // The mode applies only when the file is created: a leftover temp file
        // from an older build keeps its mode, so set it again.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(io)?;
        }
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        drop(file);
        std::fs::rename(&tmp, path).map_err(io)?;
        // Make the rename itself durable; not every platform can sync a directory.
        if let Some(dir) = path.parent()
            && let Ok(d) = std::fs::File::open(dir)
        {
            d.sync_all().ok();
        }
        Ok(())
    }
}

fn expires_at(expires_in_s: u64, now_ms: u64) -> u64 {
    let lifetime = expires_in_s.saturating_mul(1000);
    // A tenth of the lifetime, at most 30 s: short test tokens still get most of their life.
    let margin = (lifetime / 10).min(EXPIRY_MARGIN_MS);
    now_ms.saturating_add(lifetime - margin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobile_schema::ids::UserId;
    use mobile_schema::workflow::Role;

    fn token(access: &str, refresh: &str, expires_in: u64) -> TokenResponse {
        TokenResponse {
            access_token: access.into(),
            refresh_token: refresh.into(),
            expires_in,
            token_type: "Bearer".into(),
            user: UserInfo {
                id: UserId::generate(),
                username: "wei".into(),
                role: Role::Inspector,
            },
            rules: None,
        }
    }

    #[test]
    fn credentials_round_trip_through_a_file_readable_by_the_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        let c = Credentials::from_token(
            "http://127.0.0.1:8080",
            DeviceId::generate(),
            Some(ReplicaId::generate()),
            token("a1", "r1", 900),
            1_000,
        );
        c.save(&path).unwrap();
        assert_eq!(Credentials::load(&path).unwrap(), c);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Saving again replaces the file whole.
        let mut c2 = c.clone();
        c2.renew(token("a2", "r2", 900), None, 2_000);
        c2.save(&path).unwrap();
        assert_eq!(Credentials::load(&path).unwrap(), c2);
        assert!(!path.with_extension("json.tmp").exists());
    }

    #[test]
    fn debug_output_hides_the_tokens() {
        let c = Credentials::from_token("s", DeviceId::generate(), None, token("secret-a", "secret-r", 60), 0);
        let shown = format!("{c:?}");
        assert!(!shown.contains("secret-a") && !shown.contains("secret-r"), "{shown}");
    }

    #[test]
    fn the_access_token_counts_as_expired_a_little_before_the_server_says() {
        let c = Credentials::from_token("s", DeviceId::generate(), None, token("a", "r", 900), 10_000);
        assert!(!c.is_expired(10_000 + 869_999));
        assert!(c.is_expired(10_000 + 870_000));
        let short = Credentials::from_token("s", DeviceId::generate(), None, token("a", "r", 10), 0);
        assert!(!short.is_expired(8_999));
        assert!(short.is_expired(9_000));
    }

    #[test]
    fn a_corrupt_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.json");
        std::fs::write(&path, b"{not json").unwrap();
        let e = Credentials::load(&path).unwrap_err();
        assert!(e.to_string().contains("credentials.json"), "{e}");
    }
}
