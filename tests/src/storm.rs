//! Push storms: tablets creating and editing inspections and syncing while the
//! server is killed, backed up or restored, and the server's view to check
//! what they saw acknowledged against.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mobile_schema::ids::{DeviceId, InspectionId, RecordId, SiteId};
use mobile_schema::record::{AnyRecord, RecordKind};
use mobile_schema::sample;
use replica::{HttpConfig, HttpTransport, Transport};
use serde_json::json;
use sync_protocol::RecordState;
use sync_protocol::wire::DeviceRegistration;

use crate::tablet::Tablet;

/// Few quick tries: a sync against a dead server fails fast and the tablet
/// tries again on its next round, as a real one would.
pub fn http(url: &str) -> HttpConfig {
    HttpConfig {
        attempts: 2,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(50),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        ..HttpConfig::new(url)
    }
}

/// `count` tablets logged in as the admin (folders `t0`, `t1`… under `root`),
/// each holding one pond: the site their inspections name.
pub fn tablets_with_a_pond(
    root: &Path,
    url: &str,
    password: &str,
    count: usize,
) -> anyhow::Result<(Vec<Tablet>, SiteId)> {
    let mut tablets = (0..count)
        .map(|i| Tablet::enrol(&root.join(format!("t{i}")), http(url), "admin", password, None))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let site = SiteId::generate();
    if let Some(first) = tablets.first_mut() {
        first.replica.create(sample::pond(site).into())?;
    }
    for t in &mut tablets {
        t.sync()?;
    }
    Ok((tablets, site))
}

/// The admin logged in from a device with no replica, to read the server.
pub fn checker(url: &str, password: &str) -> anyhow::Result<HttpTransport> {
    let mut t = HttpTransport::new(http(url));
    t.login(
        "admin",
        password,
        DeviceRegistration {
            id: DeviceId::generate(),
            replica: None,
            name: Some("checker".into()),
            app_version: None,
        },
    )?;
    Ok(t)
}

/// Every record state on the server, pulled from 0.
///
/// A record a commit re-sequenced while a page was read is missing from it and
/// comes later at its new seq; the server says a pull that reached the end
/// read a store that held still by moving the cursor's complete seq up to it
/// (`seq.tag.complete`). Until then the pull goes on from its cursor, so a
/// record the storm moved during the check is not taken for lost.
pub fn server_records(t: &mut HttpTransport) -> anyhow::Result<BTreeMap<RecordId, RecordState>> {
    let mut out: BTreeMap<RecordId, RecordState> = BTreeMap::new();
    let mut since = "0".to_string();
    for _ in 0..10_000 {
        let page = t.pull(&since, 1000)?;
        for r in page.records {
            match out.get_mut(&r.id) {
                Some(held) if r.partial => held.merge_delta(r),
                _ => {
                    out.insert(r.id, r);
                }
            }
        }
        since = page.next;
        if !page.more && cursor_is_complete(&since) {
            return Ok(out);
        }
    }
    anyhow::bail!("the pull never read a store that held still (cursor {since})")
}

/// Whether a cursor's complete seq is its seq: every record up to it was read.
fn cursor_is_complete(cursor: &str) -> bool {
    let mut parts = cursor.split('.');
    let seq = parts.next().unwrap_or_default();
    let complete = parts.nth(1).unwrap_or("0");
    seq == complete
}

/// The conclusion of an inspection's state; the storm writes
/// "tablet:record:edit" there.
pub fn conclusion_of(state: &RecordState) -> anyhow::Result<String> {
    match state.materialize()? {
        AnyRecord::Inspection(i) => Ok(i.conclusion),
        other => anyhow::bail!("not an inspection: {other:?}"),
    }
}

/// The edit number a conclusion ends with (0 for none).
pub fn edit_number(conclusion: &str) -> u64 {
    conclusion.rsplit(':').next().and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// How hard one tablet storms.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Inspections it makes at the most.
    pub records: usize,
    /// A new inspection every this many steps.
    pub new_every: u64,
    /// A sync every this many steps.
    pub sync_every: u64,
    pub pause: Duration,
    /// A failed sync is tried again next round (the server may be down);
    /// otherwise it fails the test.
    pub retry_failed_syncs: bool,
}

/// One tablet's storm until `stop`: new inspections and edits of their
/// conclusions ("tablet:record:edit"), a sync every few steps. `acked` is
/// given, per record, the last edit number a sync that ended with an empty
/// outbox delivered. Returns the tablet for the checks after.
pub fn storm(
    index: usize,
    mut tablet: Tablet,
    site: SiteId,
    pace: Pace,
    stop: &AtomicBool,
    mut acked: impl FnMut(&BTreeMap<RecordId, u64>),
) -> anyhow::Result<Tablet> {
    let mut made: BTreeMap<RecordId, u64> = BTreeMap::new();
    let mut ids: Vec<RecordId> = Vec::new();
    let mut step = 0u64;
    while !stop.load(Ordering::Relaxed) {
        step += 1;
        if ids.len() < pace.records && step % pace.new_every == 1 {
            let insp = InspectionId::generate();
            let device = tablet.replica.identity().device;
            tablet.replica.create(sample::inspection(insp, site, device).into())?;
            ids.push(insp.into());
            made.insert(insp.into(), 0);
        }
        for (i, id) in ids.iter().enumerate() {
            if (step + i as u64).is_multiple_of(2) {
                let n = made[id] + 1;
                tablet.edit(
                    RecordKind::Inspection,
                    *id,
                    "conclusion",
                    json!(format!("{index}:{i}:{n}")),
                )?;
                made.insert(*id, n);
            }
        }
        if step.is_multiple_of(pace.sync_every) {
            match tablet.sync() {
                Ok(_) if tablet.replica.pending_count() == 0 => acked(&made),
                Ok(_) => {}
                Err(_) if pace.retry_failed_syncs => {}
                Err(e) => return Err(anyhow::Error::from(e).context(format!("tablet {index}: sync"))),
            }
        }
        std::thread::sleep(pace.pause);
    }
    Ok(tablet)
}
