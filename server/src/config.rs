//! Server settings: defaults, then a TOML file, then `FIELDSYNC_*` variables and
//! command-line flags (the last two through clap, flag over variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the server keeps its data, where it listens, and its limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// The sled store's folder.
    pub data_dir: PathBuf,
    pub bind: SocketAddr,
    /// PEM certificate chain and key: both or neither.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// sled's page cache (its default is 1 GiB, far above the server's budget).
    pub cache_capacity_mb: u64,
    /// Where records live. `memory` is the protocol's reference server: nothing
    /// survives a restart; it exists so story tests run the same HTTP surface
    /// over both implementations of the storage trait.
    pub records: RecordStore,
    pub access_token_ttl_s: u64,
    pub refresh_token_ttl_s: u64,
    /// How long a spent refresh token still gets a new pair (its reply may have
    /// been lost on the way); presented after this, it revokes the device's sessions.
    pub refresh_grace_s: u64,
    pub limits: Limits,
    /// Photo uploads, thumbnails, garbage collection and evidence checks.
    pub photos: crate::photos::PhotoSettings,
    pub login_limit: LoginLimit,
    pub schedule: ScheduleSettings,
    pub metrics: MetricsSettings,
    /// What the rules leave to the deployment: severity scale, on-site distance.
    pub rules: RulesSection,
    /// Log lines as JSON objects (one per line, for a log shipper) instead of text.
    pub log_json: bool,
}

/// The `[metrics]` section.
#[derive(Clone, PartialEq, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// A bearer token for the Prometheus scraper; without one, `/metrics` needs an admin's access token.
    pub token: Option<String>,
}

impl std::fmt::Debug for MetricsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Settings get logged; the token must not be.
        f.debug_struct("MetricsSettings")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// The `[rules]` section. The server validates with it and hands it to
/// tablets at login, so both judge a record alike.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RulesSection {
    /// A built-in hazard severity scale: `low_to_critical` (low/medium/high/
    /// critical, the default), `general_major` (一般/重大), `low_medium_high`
    /// (低/中/高) or `yellow_orange_red` (黄/橙/红).
    pub severity_scale: String,
    /// Or the bureau's own scale, least severe first (`[[rules.severity_levels]]`
    /// with `code` and `label`); it replaces `severity_scale`.
    pub severity_levels: Vec<mobile_schema::severity::SeverityLevel>,
    /// Metres a GNSS fix may lie outside its site, on top of its accuracy,
    /// before it is flagged.
    pub on_site_tolerance_m: u32,
}

/// Most levels a bureau's own severity scale may have, and the longest code.
const MAX_SEVERITY_LEVELS: usize = 16;
const MAX_SEVERITY_CODE: usize = 32;
/// 50 km: beyond it, "on site" says nothing.
const MAX_ON_SITE_TOLERANCE_M: u32 = 50_000;

impl Default for RulesSection {
    fn default() -> Self {
        let d = mobile_schema::rule_settings::RuleSettings::default();
        Self {
            severity_scale: d.severity_scale.id,
            severity_levels: Vec::new(),
            on_site_tolerance_m: d.on_site_tolerance_m,
        }
    }
}

impl RulesSection {
    /// The settings this section names, or why they cannot be used.
    pub fn resolve(&self) -> Result<mobile_schema::rule_settings::RuleSettings, ConfigError> {
        let bad = |key: &str, message: String| ConfigError::Invalid {
            key: format!("rules.{key}"),
            message,
        };
        let severity_scale = if self.severity_levels.is_empty() {
            mobile_schema::severity::SeverityScale::builtin(&self.severity_scale).ok_or_else(|| {
                bad(
                    "severity_scale",
                    format!(
                        "{:?} is not a built-in scale: low_to_critical, general_major, low_medium_high or yellow_orange_red",
                        self.severity_scale
                    ),
                )
            })?
        } else {
            let levels = &self.severity_levels;
            let mut codes = std::collections::BTreeSet::new();
            if levels.len() > MAX_SEVERITY_LEVELS {
                return Err(bad("severity_levels", format!("at most {MAX_SEVERITY_LEVELS} levels")));
            }
            for l in levels {
                let code_ok = !l.code.is_empty()
                    && l.code.len() <= MAX_SEVERITY_CODE
                    && l.code
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                if !code_ok || l.label.trim().is_empty() || !codes.insert(l.code.as_str()) {
                    return Err(bad(
                        "severity_levels",
                        format!(
                            "level {:?}: codes are distinct, 1 to {MAX_SEVERITY_CODE} of a-z, 0-9 and _, with a label",
                            l.code
                        ),
                    ));
                }
            }
            mobile_schema::severity::SeverityScale {
                id: "custom".into(),
                levels: levels.clone(),
            }
        };
        if self.on_site_tolerance_m > MAX_ON_SITE_TOLERANCE_M {
            return Err(bad(
                "on_site_tolerance_m",
                format!("at most {MAX_ON_SITE_TOLERANCE_M} m"),
            ));
        }
        Ok(mobile_schema::rule_settings::RuleSettings {
            severity_scale,
            on_site_tolerance_m: self.on_site_tolerance_m,
        })
    }
}

/// The `[schedule]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// How often the server looks for drawn tasks whose window opened, in seconds.
    pub window_check_s: u64,
    /// The day taken as today for task windows and overdue lists, instead of the
    /// clock's date in Asia/Shanghai: for drills and tests of a schedule ahead
    /// of time. Unset in production.
    pub today: Option<chrono::NaiveDate>,
    /// A file of official working-day arrangements (`date,kind,festival`, as
    /// `fixtures/cn_official_calendar.csv`) for years the built-in calendar
    /// lacks, such as next year's once the State Council publishes it. A year
    /// the file names replaces the built-in one.
    pub calendar: Option<std::path::PathBuf>,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            window_check_s: 60,
            today: None,
            calendar: None,
        }
    }
}

/// Failed logins allowed within a sliding window, per username and per client
/// address; beyond them a login is answered 429 until the oldest failure ages out.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoginLimit {
    pub window_s: u64,
    pub max_failures_per_user: usize,
    pub max_failures_per_address: usize,
}

impl Default for LoginLimit {
    fn default() -> Self {
        Self {
            window_s: 300,
            max_failures_per_user: 10,
            max_failures_per_address: 30,
        }
    }
}

/// The record store behind the sync endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum RecordStore {
    /// The sled store in `data_dir`: durable.
    Sled,
    /// In memory, lost on exit: for tests only.
    Memory,
}

/// Sizes a client controls, bounded.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// A push body after decompression.
    pub max_push_bytes: usize,
    pub max_changes_per_push: usize,
    /// Any other JSON body (login, refresh) after decompression.
    pub max_small_body_bytes: usize,
    pub max_pull_records: usize,
    /// A pull page stops once its records reach this many bytes of JSON.
    pub max_pull_bytes: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("fieldsync-data"),
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            tls_cert: None,
            tls_key: None,
            cache_capacity_mb: 64,
            records: RecordStore::Sled,
            access_token_ttl_s: 15 * 60,
            refresh_token_ttl_s: 30 * 24 * 3600,
            refresh_grace_s: 120,
            limits: Limits::default(),
            photos: crate::photos::PhotoSettings::default(),
            login_limit: LoginLimit::default(),
            schedule: ScheduleSettings::default(),
            metrics: MetricsSettings::default(),
            rules: RulesSection::default(),
            log_json: false,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_push_bytes: 16 * 1024 * 1024,
            max_changes_per_push: 1_000,
            max_small_body_bytes: 16 * 1024,
            max_pull_records: 1_000,
            max_pull_bytes: 4 * 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("the config file {path} is not valid: {source}")]
    Parse { path: String, source: toml::de::Error },
    #[error("--tls-cert and --tls-key go together")]
    HalfTls,
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
}

impl Settings {
    /// The file's settings over the defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }

    pub fn check(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::HalfTls);
        }
        self.rules.resolve()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_only_what_it_names() {
        let s: Settings = toml::from_str("bind = \"0.0.0.0:9000\"\n[limits]\nmax_pull_records = 50\n").unwrap();
        assert_eq!(s.bind.port(), 9000);
        assert_eq!(s.limits.max_pull_records, 50);
        assert_eq!(s.limits.max_push_bytes, Limits::default().max_push_bytes);
        assert_eq!(s.data_dir, PathBuf::from("fieldsync-data"));
    }

    #[test]
    fn token_and_login_limit_settings_have_defaults_and_can_be_set() {
        let d = Settings::default();
        assert_eq!((d.access_token_ttl_s, d.refresh_grace_s), (900, 120));
        assert_eq!(d.login_limit, LoginLimit::default());
        let s: Settings =
            toml::from_str("refresh_grace_s = 1\n[login_limit]\nwindow_s = 2\nmax_failures_per_user = 3\n").unwrap();
        assert_eq!(s.refresh_grace_s, 1);
        assert_eq!((s.login_limit.window_s, s.login_limit.max_failures_per_user), (2, 3));
        assert_eq!(s.login_limit.max_failures_per_address, 30);
        assert!(toml::from_str::<Settings>("[login_limit]\nwindow = 2\n").is_err());
    }

    #[test]
    fn the_rules_section_names_a_built_in_scale_or_the_bureaus_own() {
        let d = Settings::default().rules.resolve().unwrap();
        assert_eq!(
            (d.severity_scale.id.as_str(), d.on_site_tolerance_m),
            ("low_to_critical", 500)
        );
        let s: Settings =
            toml::from_str("[rules]\nseverity_scale = \"yellow_orange_red\"\non_site_tolerance_m = 800\n").unwrap();
        let r = s.rules.resolve().unwrap();
        assert!(r.severity_scale.contains("orange") && r.on_site_tolerance_m == 800);
        let own: Settings = toml::from_str(
            "[[rules.severity_levels]]\ncode = \"minor\"\nlabel = \"较小\"\n[[rules.severity_levels]]\ncode = \"grave\"\nlabel = \"重大\"\n",
        )
        .unwrap();
        assert_eq!(own.rules.resolve().unwrap().severity_scale.rank("grave"), Some(1));
        for bad in [
            "[rules]\nseverity_scale = \"purple\"\n",
            "[rules]\non_site_tolerance_m = 60000\n",
            "[[rules.severity_levels]]\ncode = \"A B\"\nlabel = \"x\"\n",
            "[[rules.severity_levels]]\ncode = \"a\"\nlabel = \"x\"\n[[rules.severity_levels]]\ncode = \"a\"\nlabel = \"y\"\n",
        ] {
            let s: Settings = toml::from_str(bad).unwrap();
            assert!(matches!(s.check(), Err(ConfigError::Invalid { .. })), "{bad}");
        }
    }

    #[test]
    fn unknown_keys_and_half_tls_are_errors() {
        assert!(toml::from_str::<Settings>("bnd = \"x\"").is_err());
        let s = Settings {
            tls_cert: Some("c.pem".into()),
            ..Settings::default()
        };
        assert!(matches!(s.check(), Err(ConfigError::HalfTls)));
    }
}
