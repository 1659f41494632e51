//! A device folder: what the `fieldsync-device` CLI acts on, so a person or a
//! script can play a tablet. The folder holds the sled replica (`replica/`) and
//! the login (`credentials.json`, mode 0600: server URL, device id, user, token
//! pair; never the password).
//!
//! Every operation here returns plain values that serialize to the JSON the CLI
//! prints; the binary only parses arguments and prints.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mobile_schema::ids::{DeviceId, RecordId};
use mobile_schema::record::{AnyRecord, RecordKind};
use serde::Serialize;
use sync_protocol::ReplicaId;
use sync_protocol::state::{ReviewMark, VersionMeta};
use sync_protocol::wire::{DeviceRegistration, UserInfo};
use sync_protocol::{Flag, VersionId};

use crate::check::Issue;
use crate::credentials::{Credentials, CredentialsError};
use crate::error::ReplicaError;
use crate::http::{HttpConfig, HttpTransport, WireStats};
use crate::store::{EditReceipt, Identity, RecordView, RefusedChange, Replica, ReplicaConfig};
use crate::transport::{Transport, TransportError};

/// The login, in the device folder.
pub const CREDENTIALS_FILE: &str = "credentials.json";
/// The sled replica, in the device folder.
pub const STORE_DIR: &str = "replica";

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{} is not a device folder (no {CREDENTIALS_FILE}): run `fieldsync-device init` first", .dir.display())]
    NotInitialized { dir: PathBuf },
    #[error(transparent)]
    Replica(#[from] ReplicaError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown record kind `{given}`; one of: {}", RecordKind::ALL.map(|k| k.as_str()).join(", "))]
    UnknownKind { given: String },
    #[error("no record {0} on this device")]
    NotFound(RecordId),
    /// Input that does not parse: the argument or file, the field, the reason.
    #[error("{what}{}: {reason}", .field.as_deref().filter(|f| !f.is_empty()).map(|f| format!(" at `{f}`")).unwrap_or_default())]
    BadInput {
        what: String,
        field: Option<String>,
        reason: String,
    },
}

/// What `init` set up.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    pub server: String,
    pub device: DeviceId,
    pub replica: ReplicaId,
    pub user: UserInfo,
}

/// How to log a device in.
#[derive(Debug, Clone)]
pub struct Login {
    pub username: String,
    pub password: String,
    /// Shown to administrators next to the device.
    pub device_name: Option<String>,
}

/// What one sync did, as the CLI prints it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncSummary {
    pub pushed: usize,
    /// Changes the server applied, conflicts and locked ones included.
    pub applied: usize,
    pub conflicts: usize,
    pub locked: usize,
    pub refused: usize,
    pub pulled: usize,
    pub rekeyed: bool,
    pub cursor_restarted: bool,
    /// The server had been restored from a backup: versions sent back, and
    /// record states it refused to take back.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub epoch_recovered: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub recovered: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub recover_refused: usize,
    /// Changes still waiting for an answer.
    pub pending: usize,
    /// Server time minus this device's time, ms.
    pub clock_offset_ms: Option<i64>,
    pub wire: WireStats,
}

/// The device's state, as the CLI prints it.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub server: String,
    pub device: DeviceId,
    pub user: UserInfo,
    pub replica: ReplicaId,
    /// The tokens speak for this store's replica.
    pub bound: bool,
    pub pending: usize,
    pub refused: Vec<RefusedShown>,
    /// Local time of the last completed sync, ms since the epoch.
    pub last_sync_ms: Option<u64>,
    pub clock_offset_ms: Option<i64>,
    /// Why the server refused this device's tokens at the last sync
    /// (`device_revoked: ...`, `session_revoked: ...`): run `init` to log in or
    /// enrol again. The pending changes are kept and pushed after.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub login_required: Option<String>,
    /// Records this build cannot read (`list` leaves them out), with why:
    /// a newer app version reads them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unreadable: Vec<UnreadableShown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnreadableShown {
    pub record: RecordId,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefusedShown {
    pub seq: u64,
    pub kind: RecordKind,
    pub record: RecordId,
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl From<RefusedChange> for RefusedShown {
    fn from(r: RefusedChange) -> Self {
        Self {
            seq: r.seq,
            kind: r.kind,
            record: r.record,
            code: r.code.as_str().to_string(),
            field: r.field,
            message: r.message,
        }
    }
}

/// One record with everything a person needs to act on it.
#[derive(Debug, Clone, Serialize)]
pub struct RecordShown {
    pub id: RecordId,
    pub kind: RecordKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    /// The record as the app shows it (the local view).
    pub record: AnyRecord,
    pub conflicts: Vec<ConflictShown>,
    pub flags: Vec<Flag>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review: Option<ReviewMark>,
    /// The latest decision's comments, when its Review record is on the tablet:
    /// what a returned inspection's inspector must fix.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub review_comments: Vec<mobile_schema::review::Comment>,
    pub locked: bool,
    /// Local changes of this record the server has not answered.
    pub pending: usize,
    /// This device's changes of this record that the server refused.
    pub refused: Vec<RefusedShown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ConflictShown {
    pub unit: String,
    pub versions: Vec<VersionShown>,
}

#[derive(Debug, Clone, Serialize)]
pub struct VersionShown {
    pub id: VersionId,
    pub value: serde_json::Value,
    pub winner: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<VersionMeta>,
}

/// A line of `list`.
#[derive(Debug, Clone, Serialize)]
pub struct RecordLine {
    pub id: RecordId,
    pub kind: RecordKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<String>,
    pub conflicts: usize,
    pub flags: usize,
    pub locked: bool,
    pub pending: usize,
}

/// A local edit's result: durable, with the rule breaches it leaves (warnings).
#[derive(Debug, Clone, Serialize)]
pub struct Receipt {
    pub record: RecordId,
    pub seq: u64,
    pub flags: Vec<Issue>,
}

impl From<EditReceipt> for Receipt {
    fn from(r: EditReceipt) -> Self {
        Self {
            record: r.record,
            seq: r.seq,
            flags: r.flags,
        }
    }
}

/// An open device folder.
#[derive(Debug)]
pub struct Device {
    dir: PathBuf,
    replica: Replica,
    credentials: Credentials,
}

fn credentials_path(dir: &Path) -> PathBuf {
    dir.join(CREDENTIALS_FILE)
}

impl Device {
    /// Log in and set up (or re-log into) the device folder `dir`: a device id
    /// (kept from an earlier login in the folder), a login without a replica, a
    /// store with the login's identity, then the tokens bound to the store's
    /// replica. Saves the server URL and tokens, never the password. A device id
    /// an administrator revoked is replaced by a new one (re-enrolment); the
    /// store keeps its replica and its pending changes.
    pub fn init(dir: &Path, http: HttpConfig, login: &Login) -> Result<(Self, InitReport), DeviceError> {
        std::fs::create_dir_all(dir).map_err(|source| DeviceError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let cred_path = credentials_path(dir);
        let previous = match Credentials::load(&cred_path) {
            Ok(c) => Some(c),
            Err(CredentialsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        // Another user's login would end this one's session on the server:
        // refuse it before, while this user's work waits.
        if let Some(c) = &previous
            && c.user.username != login.username
            && dir.join(STORE_DIR).exists()
        {
            let (changes, photos) = Replica::open(dir.join(STORE_DIR))?.unsynced_work()?;
            if changes > 0 || photos > 0 {
                return Err(ReplicaError::OtherUsersWork {
                    user: c.user.id,
                    changes,
                    photos,
                }
                .into());
            }
        }
        let device = previous.as_ref().map_or_else(DeviceId::generate, |c| c.device);
        let server = http.server.trim_end_matches('/').to_string();
        let mut transport = HttpTransport::new(http);
        let sink_error = persist_to(&mut transport, cred_path.clone());
        let registration = |id| DeviceRegistration {
            id,
            replica: None,
            name: login.device_name.clone(),
            app_version: Some(env!("CARGO_PKG_VERSION").to_string()),
        };
        let (device, user) = match transport.login(&login.username, &login.password, registration(device)) {
            Ok(user) => (device, user),
            // An administrator revoked this device id for good: enrol the
            // folder as a new device. The store, and its pending changes, stay.
            Err(TransportError::Rejected { status: 401, body }) if body.code == "device_revoked" => {
                let fresh = DeviceId::generate();
                (
                    fresh,
                    transport.login(&login.username, &login.password, registration(fresh))?,
                )
            }
            Err(e) => return Err(e.into()),
        };
        let config = ReplicaConfig::for_identity(Identity::of(&user, device));
        let mut replica = match Replica::open_with(dir.join(STORE_DIR), config) {
            Ok(r) => r,
            Err(e @ ReplicaError::OtherUsersWork { .. }) => {
                // The login saved its tokens as they came: the folder goes
                // back to the previous user's, whose work waits to be synced.
                match &previous {
                    Some(c) => c.save(&cred_path)?,
                    None => match std::fs::remove_file(&cred_path) {
                        Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                            return Err(DeviceError::Io {
                                path: cred_path,
                                source,
                            });
                        }
                        _ => {}
                    },
                }
                return Err(e.into());
            }
            Err(e) => return Err(e.into()),
        };
        transport.identify(&replica.actor())?;
        // The deployment's rules from the first edit on, before any sync.
        if let Some(rules) = transport.rules() {
            replica.adopt_rules(rules)?;
        }
        let credentials = saved(&transport, &cred_path, &sink_error)?;
        let report = InitReport {
            server,
            device,
            replica: replica.replica_id(),
            user,
        };
        Ok((
            Self {
                dir: dir.to_path_buf(),
                replica,
                credentials,
            },
            report,
        ))
    }

    /// Open a folder set up by [`Device::init`].
    pub fn open(dir: &Path) -> Result<Self, DeviceError> {
        let cred_path = credentials_path(dir);
        if !cred_path.exists() {
            return Err(DeviceError::NotInitialized { dir: dir.to_path_buf() });
        }
        let credentials = Credentials::load(&cred_path)?;
        let replica = Replica::open(dir.join(STORE_DIR))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            replica,
            credentials,
        })
    }

    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// HTTP settings for this device's server, with the defaults.
    pub fn http_config(&self) -> HttpConfig {
        HttpConfig::new(self.credentials.server.clone())
    }

    /// A new record of `kind` from its JSON document (a `kind` member, if
    /// present, must match). Validation errors refuse it; flags come back.
    pub fn create(&mut self, kind: &str, document: &str) -> Result<Receipt, DeviceError> {
        let kind = parse_kind(kind)?;
        let mut value: serde_json::Value = serde_json::from_str(document).map_err(|e| DeviceError::BadInput {
            what: "the record file is not JSON".into(),
            field: None,
            reason: e.to_string(),
        })?;
        if let Some(obj) = value.as_object_mut()
            && let Some(tag) = obj.remove("kind")
            && tag.as_str() != Some(kind.as_str())
        {
            return Err(DeviceError::BadInput {
                what: format!("the file holds a {tag} record, not a {}", kind.as_str()),
                field: Some("kind".into()),
                reason: "kinds differ".into(),
            });
        }
        let record = AnyRecord::from_json(kind, &value.to_string()).map_err(|e| DeviceError::BadInput {
            what: format!("not a valid {} record", kind.as_str()),
            field: Some(e.field().to_string()),
            reason: e.to_string(),
        })?;
        Ok(self.replica.create(record)?.into())
    }

    /// New value of one unit, replacing the value this device shows.
    pub fn edit(&mut self, id: RecordId, unit: &str, value: &str) -> Result<Receipt, DeviceError> {
        let kind = self.kind_of(id)?;
        let value = parse_value(value)?;
        Ok(self.replica.edit(kind, id, vec![(unit.to_string(), value)])?.into())
    }

    /// One value replacing every live version of a unit: ends a conflict.
    pub fn resolve(&mut self, id: RecordId, unit: &str, value: &str) -> Result<Receipt, DeviceError> {
        let kind = self.kind_of(id)?;
        let value = parse_value(value)?;
        Ok(self.replica.resolve(kind, id, unit, value)?.into())
    }

    pub fn transition(&mut self, id: RecordId, action: &str) -> Result<Receipt, DeviceError> {
        let kind = self.kind_of(id)?;
        Ok(self.replica.transition(kind, id, action)?.into())
    }

    fn kind_of(&self, id: RecordId) -> Result<RecordKind, DeviceError> {
        self.replica.kind_of(id)?.ok_or(DeviceError::NotFound(id))
    }

    pub fn show(&self, id: RecordId) -> Result<RecordShown, DeviceError> {
        let view = self.replica.get(id)?.ok_or(DeviceError::NotFound(id))?;
        let state = self.replica.view(id)?.ok_or(DeviceError::NotFound(id))?;
        let refused = self
            .replica
            .refused()?
            .into_iter()
            .filter(|r| r.record == id)
            .map(RefusedShown::from)
            .collect();
        let review_comments = match &state.review {
            Some(mark) => match self.replica.get(mark.review)?.map(|v| v.record) {
                Some(AnyRecord::Review(r)) => r.comments,
                _ => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(RecordShown {
            id,
            kind: state.kind,
            workflow: view.record.workflow_state(),
            conflicts: conflicts(&view),
            record: view.record,
            flags: view.flags,
            review: state.review,
            review_comments,
            locked: view.locked,
            pending: view.pending,
            refused,
        })
    }

    /// Records of one kind, or of every kind.
    pub fn list(&self, kind: Option<&str>) -> Result<Vec<RecordLine>, DeviceError> {
        let kinds = match kind {
            Some(k) => vec![parse_kind(k)?],
            None => RecordKind::ALL.to_vec(),
        };
        let mut out = Vec::new();
        for kind in kinds {
            for v in self.replica.list(kind)? {
                out.push(RecordLine {
                    id: v.record.id(),
                    kind,
                    workflow: v.record.workflow_state(),
                    conflicts: v.conflicts.len(),
                    flags: v.flags.len(),
                    locked: v.locked,
                    pending: v.pending,
                });
            }
        }
        Ok(out)
    }

    /// Push everything pending and pull everything new. New tokens are saved as
    /// soon as they arrive, and again at the end whatever happened.
    pub fn sync(&mut self, http: HttpConfig) -> Result<SyncSummary, DeviceError> {
        let cred_path = credentials_path(&self.dir);
        let mut transport = HttpTransport::new(http).with_credentials(self.credentials.clone());
        let sink_error = persist_to(&mut transport, cred_path.clone());
        let result = self.replica.sync(&mut transport);
        self.credentials = saved(&transport, &cred_path, &sink_error)?;
        if let Err(ReplicaError::Transport(TransportError::Unauthorized(why))) = &result {
            // Remembered for `status`, until a login clears it.
            self.credentials.refused = Some(why.clone());
            self.credentials.save(&cred_path)?;
        }
        let report = result?;
        Ok(SyncSummary {
            pushed: report.pushed,
            applied: report.acked,
            conflicts: report.conflicts,
            locked: report.locked,
            refused: report.refused,
            pulled: report.pulled,
            rekeyed: report.rekeyed,
            cursor_restarted: report.cursor_restarted,
            epoch_recovered: report.epoch_recovered,
            recovered: report.recovered,
            recover_refused: report.recover_refused,
            pending: self.replica.pending_count(),
            clock_offset_ms: self.replica.clock_offset_ms()?,
            wire: transport.stats(),
        })
    }

    pub fn status(&self) -> Result<Status, DeviceError> {
        Ok(Status {
            server: self.credentials.server.clone(),
            device: self.credentials.device,
            user: self.credentials.user.clone(),
            replica: self.replica.replica_id(),
            bound: self.credentials.replica == Some(self.replica.replica_id()),
            pending: self.replica.pending_count(),
            refused: self.replica.refused()?.into_iter().map(RefusedShown::from).collect(),
            last_sync_ms: self.replica.last_sync_ms()?,
            clock_offset_ms: self.replica.clock_offset_ms()?,
            login_required: self.credentials.refused.clone(),
            unreadable: self
                .replica
                .unreadable()?
                .into_iter()
                .map(|(record, reason)| UnreadableShown { record, reason })
                .collect(),
        })
    }
}

type SinkError = Arc<Mutex<Option<CredentialsError>>>;

/// Save every new token pair the moment it arrives: the server has spent the
/// old refresh token, so losing the new pair means logging in again. The first
/// failure is kept for [`saved`] to report.
fn persist_to(transport: &mut HttpTransport, path: PathBuf) -> SinkError {
    let error: SinkError = Arc::default();
    let slot = error.clone();
    transport.on_credentials(move |c| {
        if let Err(e) = c.save(&path)
            && let Ok(mut slot) = slot.lock()
        {
            slot.get_or_insert(e);
        }
    });
    error
}

/// The transport's credentials, written once more, or the first error saving them.
fn saved(transport: &HttpTransport, path: &Path, sink_error: &SinkError) -> Result<Credentials, DeviceError> {
    let credentials = transport
        .credentials()
        .cloned()
        .ok_or_else(|| TransportError::Unauthorized("this device has not logged in".into()))?;
    if let Ok(mut slot) = sink_error.lock()
        && let Some(e) = slot.take()
    {
        return Err(e.into());
    }
    credentials.save(path)?;
    Ok(credentials)
}

fn parse_kind(kind: &str) -> Result<RecordKind, DeviceError> {
    RecordKind::parse(kind).ok_or_else(|| DeviceError::UnknownKind {
        given: kind.to_string(),
    })
}

fn parse_value(text: &str) -> Result<serde_json::Value, DeviceError> {
    serde_json::from_str(text).map_err(|e| DeviceError::BadInput {
        what: "the value is not JSON (quote a string: '\"ok\"')".into(),
        field: None,
        reason: e.to_string(),
    })
}

/// A record id from the command line.
pub fn parse_record_id(text: &str) -> Result<RecordId, DeviceError> {
    text.trim().parse().map_err(|e: uuid::Error| DeviceError::BadInput {
        what: format!("`{text}` is not a record id"),
        field: None,
        reason: e.to_string(),
    })
}

fn conflicts(view: &RecordView) -> Vec<ConflictShown> {
    view.conflicts
        .iter()
        .map(|c| ConflictShown {
            unit: c.key.clone(),
            versions: c
                .versions
                .iter()
                .map(|v| VersionShown {
                    id: v.id,
                    value: v.value.clone(),
                    winner: v.winner,
                    author: v.author,
                })
                .collect(),
        })
        .collect()
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use mobile_schema::ids::{InspectionId, SiteId, UserId};
    use mobile_schema::workflow::Role;
    use sync_protocol::wire::TokenResponse;

    /// A device folder as `init` leaves it, without a server.
    fn offline_device(dir: &Path) -> Device {
        let user = UserInfo {
            id: UserId::generate(),
            username: "wei".into(),
            role: Role::Inspector,
        };
        let device = DeviceId::generate();
        let config = ReplicaConfig::for_identity(Identity::of(&user, device));
        let replica = Replica::open_with(dir.join(STORE_DIR), config).unwrap();
        let token = TokenResponse {
            access_token: "a".into(),
            refresh_token: "r".into(),
            expires_in: 900,
            token_type: "Bearer".into(),
            user,
            rules: None,
        };
        let c = Credentials::from_token("http://127.0.0.1:9", device, Some(replica.replica_id()), token, 0);
        c.save(&credentials_path(dir)).unwrap();
        drop(replica);
        Device::open(dir).unwrap()
    }

    fn documents() -> (String, String, RecordId) {
        let site = SiteId::generate();
        let insp = InspectionId::generate();
        let pond = serde_json::to_string(&mobile_schema::sample::pond(site)).unwrap();
        let inspection =
            serde_json::to_string(&mobile_schema::sample::inspection(insp, site, DeviceId::generate())).unwrap();
        (pond, inspection, insp.into())
    }

    #[test]
    fn a_folder_without_credentials_asks_for_init() {
        let dir = tempfile::tempdir().unwrap();
        let e = Device::open(dir.path()).unwrap_err();
        assert!(matches!(e, DeviceError::NotInitialized { .. }), "{e}");
        assert!(e.to_string().contains("fieldsync-device init"));
    }

    #[test]
    fn create_edit_and_show_work_offline_and_stay_pending() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = offline_device(dir.path());
        let (pond, inspection, id) = documents();
        d.create("site", &pond).unwrap();
        let r = d.create("inspection", &inspection).unwrap();
        assert_eq!(r.record, id);
        d.edit(id, "conclusion", r#""复查合格""#).unwrap();
        let shown = d.show(id).unwrap();
        assert_eq!(shown.kind, RecordKind::Inspection);
        assert_eq!(shown.workflow.as_deref(), Some("draft"));
        assert_eq!(shown.pending, 2);
        match &shown.record {
            AnyRecord::Inspection(i) => assert_eq!(i.conclusion, "复查合格"),
            other => panic!("{other:?}"),
        }
        let json = serde_json::to_value(&shown).unwrap();
        assert_eq!(json["record"]["conclusion"], "复查合格");
        assert_eq!(d.list(Some("inspection")).unwrap().len(), 1);
        assert_eq!(d.list(None).unwrap().len(), 2);
        let status = d.status().unwrap();
        assert_eq!((status.pending, status.bound, status.last_sync_ms), (3, true, None));
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = offline_device(dir.path());
        let (pond, inspection, id) = documents();
        assert!(matches!(d.create("pond", &pond), Err(DeviceError::UnknownKind { .. })));
        assert!(matches!(d.create("site", "{"), Err(DeviceError::BadInput { .. })));
        match d.create("inspection", &pond) {
            Err(DeviceError::BadInput { field, .. }) => assert!(field.is_some()),
            other => panic!("{other:?}"),
        }
        // A `kind` member must agree with the command.
        let mut tagged: serde_json::Value = serde_json::from_str(&pond).unwrap();
        tagged["kind"] = "inspection".into();
        assert!(matches!(
            d.create("site", &tagged.to_string()),
            Err(DeviceError::BadInput { .. })
        ));
        tagged["kind"] = "site".into();
        d.create("site", &tagged.to_string()).unwrap();
        d.create("inspection", &inspection).unwrap();
        // A latitude beyond 90° is a validation error: refused, not queued.
        let before = d.replica().pending_count();
        let fix = serde_json::json!({"lat": 95.0, "lon": 107.5, "accuracy_m": 5.0,
            "fix_time": "2025-05-06T09:02:00+08:00", "crs": "wgs84"});
        match d.edit(id, "fix", &fix.to_string()) {
            Err(DeviceError::Replica(ReplicaError::Invalid { errors })) => assert!(!errors.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(d.replica().pending_count(), before);
        assert!(matches!(
            d.edit(id, "conclusion", "ok"),
            Err(DeviceError::BadInput { .. })
        ));
        assert!(matches!(
            d.edit(RecordId::generate(), "conclusion", "\"x\""),
            Err(DeviceError::NotFound(_))
        ));
        assert!(parse_record_id("nope").is_err());
        assert_eq!(parse_record_id(&id.to_string()).unwrap(), id);
    }
}
