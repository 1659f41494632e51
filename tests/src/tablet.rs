//! Tablets in process: a real replica in its own sled folder syncing over HTTP
//! to a real server, optionally teeing every push it makes to the protocol's
//! reference server so a test can check the server against the model fed the
//! very same changes in the very same order.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use mobile_schema::ids::{DeviceId, RecordId};
use mobile_schema::record::RecordKind;
use replica::{HttpConfig, HttpTransport, Identity, Replica, ReplicaConfig, SyncReport, Transport, TransportError};
use sync_protocol::reference::ReferenceServer;
use sync_protocol::wire::{DeviceRegistration, PullResponse, PushRequest, PushResponse};
use sync_protocol::{Actor, RecordState};

#[derive(Debug)]
/// The HTTP transport, and a copy of each acknowledged push for the reference.
pub struct Tee {
    pub http: HttpTransport,
    reference: Option<Arc<Mutex<ReferenceServer>>>,
    actor: Option<Actor>,
    /// Every record state pulled, as the server sent it (whole or partial).
    pub pulled: Vec<RecordState>,
}

impl Transport for Tee {
    fn rules(&self) -> Option<mobile_schema::rule_settings::RuleSettings> {
        self.http.rules()
    }

    fn identify(&mut self, actor: &Actor) -> Result<(), TransportError> {
        self.actor = Some(*actor);
        self.http.identify(actor)
    }

    fn push(&mut self, request: PushRequest) -> Result<PushResponse, TransportError> {
        let changes = self.reference.is_some().then(|| request.changes.clone());
        let response = self.http.push(request)?;
        // Only what the server answered reaches the model, in the same order:
        // a push whose reply was lost is retried, and both replay it.
        if let (Some(reference), Some(actor), Some(changes)) = (&self.reference, &self.actor, changes) {
            let mut model = reference
                .lock()
                .map_err(|_| TransportError::Request("reference poisoned".into()))?;
            model.push(actor, &changes, response.server_time_ms);
        }
        Ok(response)
    }

    fn pull(&mut self, since: &str, limit: usize) -> Result<PullResponse, TransportError> {
        let page = self.http.pull(since, limit)?;
        self.pulled.extend(page.records.iter().cloned());
        Ok(page)
    }

    fn report(&mut self, report: sync_protocol::device_report::DeviceReport) {
        self.http.report(report);
    }

    fn recover(
        &mut self,
        request: sync_protocol::recovery::RecoverRequest,
    ) -> Result<sync_protocol::recovery::RecoverResponse, TransportError> {
        self.http.recover(request)
    }
}

/// A replica logged in to a server.
#[derive(Debug)]
pub struct Tablet {
    pub replica: Replica,
    pub transport: Tee,
}

impl Tablet {
    /// A fresh replica in `dir`, logged in as `username` from a new device, its
    /// tokens bound to the replica.
    pub fn enrol(
        dir: &Path,
        http: HttpConfig,
        username: &str,
        password: &str,
        reference: Option<Arc<Mutex<ReferenceServer>>>,
    ) -> anyhow::Result<Self> {
        Self::enrol_with(dir, http, username, password, reference, ReplicaConfig::default())
    }

    /// [`Tablet::enrol`] with the replica's settings (its clock, its batch sizes);
    /// the identity is the login's.
    pub fn enrol_with(
        dir: &Path,
        http: HttpConfig,
        username: &str,
        password: &str,
        reference: Option<Arc<Mutex<ReferenceServer>>>,
        config: ReplicaConfig,
    ) -> anyhow::Result<Self> {
        let device = DeviceId::generate();
        let mut http = HttpTransport::new(http);
        let user = http
            .login(
                username,
                password,
                DeviceRegistration {
                    id: device,
                    replica: None,
                    name: Some(format!("tablet {}", dir.display())),
                    app_version: None,
                },
            )
            .context("login")?;
        let config = ReplicaConfig {
            identity: Some(Identity::of(&user, device)),
            ..config
        };
        let replica = Replica::open_with(dir, config)?;
        let mut transport = Tee {
            http,
            reference,
            actor: None,
            pulled: Vec::new(),
        };
        transport
            .identify(&replica.actor())
            .context("binding the tokens to the replica")?;
        Ok(Self { replica, transport })
    }

    pub fn sync(&mut self) -> Result<SyncReport, replica::ReplicaError> {
        self.replica.sync(&mut self.transport)
    }

    pub fn edit(&mut self, kind: RecordKind, id: RecordId, unit: &str, value: serde_json::Value) -> anyhow::Result<()> {
        self.replica.edit(kind, id, vec![(unit.to_string(), value)])?;
        Ok(())
    }
}

/// A record state as every party must agree on it: without the server's local
/// bookkeeping (its commit seq and the receive times it stamped), which differ
/// between the server and a model fed later.
pub fn comparable(state: &RecordState) -> anyhow::Result<serde_json::Value> {
    let mut state = state.clone().normalized();
    state.commit_seq = 0;
    state.whole_since = 0;
    for meta in state.meta.values_mut() {
        meta.received_ms = 0;
    }
    Ok(serde_json::to_value(&state)?)
}
