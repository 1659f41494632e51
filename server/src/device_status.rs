//! Device status for operators: per device its last sync (push or pull) and what
//! the tablet last reported about itself on one (outbox length, clock, app and
//! schema versions; `sync_protocol::device_report`).
//!
//! Kept with the devices in the accounts tree under `y` + device id. Written on
//! every push and pull without a flush of its own: the next flush of the store
//! (the next push's, or sled's periodic one) makes it durable, so after a crash
//! the status may lag by a sync. Never a reason to fail a sync.

use std::collections::HashMap;

use mobile_schema::ids::DeviceId;
use serde::{Deserialize, Serialize};
use sync_protocol::device_report::DeviceReport;

use crate::storage::StorageError;

const STATUS: u8 = b'y';

/// Which kind of sync request was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    Push,
    Pull,
}

/// A device's status as last reported; a value the device never sent stays `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// When the server last answered a push or pull of the device.
    pub last_sync_ms: Option<u64>,
    pub last_sync: Option<SyncKind>,
    pub last_push_ms: Option<u64>,
    pub last_pull_ms: Option<u64>,
    /// Changes waiting on the device, as it reported with its last sync.
    pub outbox: Option<u64>,
    /// Device clock minus server clock at the last sync, in ms (positive: the
    /// device is ahead). Estimated on receipt, so it includes the request's
    /// one-way delay.
    pub clock_offset_ms: Option<i64>,
    pub app_version: Option<String>,
    pub schema_version: Option<u32>,
    /// When the values above were last reported.
    pub reported_ms: Option<u64>,
}

impl DeviceStatus {
    /// This status after a sync of `kind` at `now_ms` that carried `report`.
    pub fn after(mut self, kind: SyncKind, report: &DeviceReport, now_ms: u64) -> Self {
        self.last_sync_ms = Some(now_ms);
        self.last_sync = Some(kind);
        match kind {
            SyncKind::Push => self.last_push_ms = Some(now_ms),
            SyncKind::Pull => self.last_pull_ms = Some(now_ms),
        }
        if !report.is_empty() {
            self.reported_ms = Some(now_ms);
        }
        if let Some(n) = report.outbox {
            self.outbox = Some(n);
        }
        if let Some(ms) = report.clock_ms {
            self.clock_offset_ms = Some((i128::from(ms) - i128::from(now_ms)) as i64);
        }
        if let Some(app) = &report.app {
            self.app_version = Some(app.clone());
        }
        if let Some(v) = report.schema {
            self.schema_version = Some(v);
        }
        self
    }
}

fn key(device: DeviceId) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[0] = STATUS;
    k[1..].copy_from_slice(device.as_uuid().as_bytes());
    k
}

/// The statuses, in the accounts tree.
#[derive(Debug, Clone)]
pub struct DeviceStatuses {
    tree: sled::Tree,
}

impl DeviceStatuses {
    pub fn open(db: &sled::Db) -> Result<Self, StorageError> {
        Ok(Self {
            tree: db.open_tree(crate::storage::keys::ACCOUNTS)?,
        })
    }

    /// Note a sync of `device`; not flushed (see the module's notes).
    pub fn note(
        &self,
        device: DeviceId,
        kind: SyncKind,
        report: &DeviceReport,
        now_ms: u64,
    ) -> Result<(), StorageError> {
        let mut corrupt = None;
        self.tree.update_and_fetch(key(device), |old| {
            let before = match old.map(serde_json::from_slice::<DeviceStatus>) {
                Some(Ok(s)) => s,
                // A status that does not decode is replaced: it is only a report.
                Some(Err(e)) => {
                    corrupt = Some(e);
                    DeviceStatus::default()
                }
                None => DeviceStatus::default(),
            };
            serde_json::to_vec(&before.after(kind, report, now_ms)).ok()
        })?;
        if let Some(e) = corrupt {
            tracing::warn!(%device, error = %e, "a device status did not decode and was replaced");
        }
        Ok(())
    }

    pub fn get(&self, device: DeviceId) -> Result<Option<DeviceStatus>, StorageError> {
        match self.tree.get(key(device))? {
            Some(v) => serde_json::from_slice(&v)
                .map(Some)
                .map_err(|source| StorageError::Corrupt {
                    what: "device status",
                    source,
                }),
            None => Ok(None),
        }
    }

    /// Every device's status.
    pub fn all(&self) -> Result<HashMap<DeviceId, DeviceStatus>, StorageError> {
        let mut out = HashMap::new();
        for item in self.tree.scan_prefix([STATUS]) {
            let (k, v) = item?;
            let Some(id) = k.get(1..17).and_then(|b| uuid::Uuid::from_slice(b).ok()) else {
                continue;
            };
            let status = serde_json::from_slice(&v).map_err(|source| StorageError::Corrupt {
                what: "device status",
                source,
            })?;
            out.insert(DeviceId::from(id), status);
        }
        Ok(out)
    }
}

/// Reads the report headers of a sync request.
pub fn report_of(req: &actix_web::HttpRequest) -> DeviceReport {
    DeviceReport::parse(|name| req.headers().get(name).and_then(|v| v.to_str().ok()))
}

/// Note a sync; a failure is logged, never the sync's.
pub fn note(
    db: &sled::Db,
    data_dir: &std::path::Path,
    device: DeviceId,
    kind: SyncKind,
    report: &DeviceReport,
    now_ms: u64,
) {
    // Pulls go on when the disk is full; a report must not eat the reserve.
    if crate::storage::below_reserve(data_dir) {
        return;
    }
    if let Err(e) = DeviceStatuses::open(db).and_then(|s| s.note(device, kind, report, now_ms)) {
        tracing::warn!(%device, error = %e, "the device status was not noted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_keeps_what_a_later_sync_did_not_report() {
        let first = DeviceReport {
            outbox: Some(4),
            clock_ms: Some(1_000_000 + 7_200_000),
            app: Some("fieldsync-device/0.1.0".into()),
            schema: Some(2),
        };
        let s = DeviceStatus::default().after(SyncKind::Push, &first, 1_000_000);
        assert_eq!(s.clock_offset_ms, Some(7_200_000));
        assert_eq!(s.last_push_ms, Some(1_000_000));
        let s = s.after(SyncKind::Pull, &DeviceReport::default(), 2_000_000);
        assert_eq!(s.last_sync, Some(SyncKind::Pull));
        assert_eq!(s.last_sync_ms, Some(2_000_000));
        assert_eq!(s.last_push_ms, Some(1_000_000));
        assert_eq!(s.outbox, Some(4));
        assert_eq!(s.reported_ms, Some(1_000_000));
        let behind = DeviceReport {
            clock_ms: Some(1_000_000),
            ..DeviceReport::default()
        };
        assert_eq!(
            s.after(SyncKind::Pull, &behind, 3_000_000).clock_offset_ms,
            Some(-2_000_000)
        );
    }
}
