#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! A server, or a proxy before it, with a lower body limit than the tablet's
//! batches: the batches shrink down to single changes, and a change too large
//! for any request still lets the pull bring what others did.
use std::sync::{Arc, Mutex};

use mobile_schema::ids::{DeviceId, InspectionId, SiteId, UserId};
use mobile_schema::record::RecordKind;
use mobile_schema::sample;
use mobile_schema::workflow::Role;
use replica::{Identity, InProcessTransport, Replica, ReplicaConfig, Transport, TransportError};
use sync_protocol::Actor;
use sync_protocol::clock::ManualClock;
use sync_protocol::engine::EngineConfig;
use sync_protocol::reference::ReferenceServer;
use sync_protocol::wire::{ErrorBody, PullResponse, PushRequest, PushResponse};
use tempfile::TempDir;

/// A server (or a proxy in front of it) with a body limit: 413 above `limit` bytes.
struct Limited {
    inner: InProcessTransport,
    limit: usize,
    refused: usize,
}
impl Transport for Limited {
    fn identify(&mut self, actor: &Actor) -> Result<(), TransportError> {
        self.inner.identify(actor)
    }
    fn push(&mut self, request: PushRequest) -> Result<PushResponse, TransportError> {
        let n = serde_json::to_vec(&request).unwrap().len();
        if n > self.limit {
            self.refused += 1;
            return Err(TransportError::Rejected {
                status: 413,
                body: ErrorBody {
                    code: "payload_too_large".into(),
                    message: format!("{n} bytes"),
                    field: None,
                },
            });
        }
        self.inner.push(request)
    }
    fn pull(&mut self, since: &str, limit: usize) -> Result<PullResponse, TransportError> {
        self.inner.pull(since, limit)
    }
}

struct Setup {
    a: Replica,
    ta: Limited,
    b: Replica,
    tb: InProcessTransport,
    insp: InspectionId,
    _dirs: (TempDir, TempDir),
}

fn setup(limit: usize) -> Setup {
    let server = Arc::new(Mutex::new(ReferenceServer::new(EngineConfig::default())));
    let clock = ManualClock::at(1_746_500_000_000);
    let ident = |role| Identity {
        user: UserId::generate(),
        device: DeviceId::generate(),
        role,
    };
    let cfg = |id| ReplicaConfig {
        clock: Arc::new(clock.clone()),
        ..ReplicaConfig::for_identity(id)
    };
    let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Replica::open_with(da.path(), cfg(ident(Role::Inspector))).unwrap();
    let mut b = Replica::open_with(db.path(), cfg(ident(Role::Inspector))).unwrap();
    let site = SiteId::generate();
    let insp = InspectionId::generate();
    b.create(sample::pond(site).into()).unwrap();
    b.create(sample::inspection(insp, site, DeviceId::generate()).into())
        .unwrap();
    let mut tb = InProcessTransport::new(server.clone(), Arc::new(clock.clone()));
    b.sync(&mut tb).unwrap();
    let mut ta = Limited {
        inner: InProcessTransport::new(server, Arc::new(clock.clone())),
        limit,
        refused: 0,
    };
    a.sync(&mut ta).unwrap();
    Setup {
        a,
        ta,
        b,
        tb,
        insp,
        _dirs: (da, db),
    }
}

/// `n` edits of about 70 KB each (under the 256 KiB unit limit).
fn large_edits(s: &mut Setup, n: usize) {
    for i in 0..n {
        let text = format!("{i}:{}", "渗".repeat(23_000));
        s.a.edit(
            RecordKind::Inspection,
            s.insp.into(),
            vec![("conclusion".into(), text.into())],
        )
        .unwrap();
    }
}

/// Another device's edit the inspector should receive.
fn news_from_b(s: &mut Setup) {
    s.b.edit(
        RecordKind::Inspection,
        s.insp.into(),
        vec![("conclusion".into(), "from b".into())],
    )
    .unwrap();
    s.b.sync(&mut s.tb).unwrap();
}

#[test]
fn under_a_one_mib_limit_the_batches_shrink_until_everything_is_pushed() {
    let mut s = setup(1 << 20);
    large_edits(&mut s, 20);
    let report = s.a.sync(&mut s.ta).unwrap();
    assert_eq!(report.pushed, 20, "{report:?}");
    assert!(s.ta.refused > 0, "the limit was met");
    assert_eq!(s.a.pending_count(), 0);
}

#[test]
fn a_change_too_large_for_any_request_still_lets_the_pull_run() {
    let mut s = setup(50_000);
    let before = s.a.cursor().unwrap();
    large_edits(&mut s, 1);
    news_from_b(&mut s);
    let e = s.a.sync(&mut s.ta).unwrap_err();
    assert!(
        matches!(
            &e,
            replica::ReplicaError::Transport(TransportError::Rejected { status: 413, .. })
        ),
        "{e:?}"
    );
    assert_eq!(s.a.pending_count(), 1, "the change waits in the outbox");
    assert_ne!(s.a.cursor().unwrap(), before, "the pull ran");
}
