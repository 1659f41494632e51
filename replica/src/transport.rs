//! How the replica reaches the server, and an in-process transport over the
//! reference server that the tests sync against.

use std::sync::{Arc, Mutex};

use sync_protocol::Actor;
use sync_protocol::clock::Clock;
use sync_protocol::device_report::DeviceReport;
use sync_protocol::reference::ReferenceServer;
use sync_protocol::wire::{ErrorBody, PullPage, PullPageError, PullResponse, PushRequest, PushResponse};

/// Why a request to the server did not bring an answer the sync can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransportError {
    /// The server could not be reached, or its answer was lost, after the
    /// transport's retries. Whatever the server did is found out by sending again:
    /// a retried change is answered `replayed`. Try again later.
    #[error("server unavailable: {0}")]
    Unavailable(String),
    /// The tokens are spent or revoked: the device must log in again.
    #[error("not authorized, the device must log in again: {0}")]
    Unauthorized(String),
    /// The pull cursor is older than the server keeps: pull again from `0`.
    #[error("the pull cursor has expired on the server")]
    CursorExpired,
    /// The server answered with an error that sending again will not change.
    #[error("the server rejected the request ({status} {}): {}", .body.code, .body.message)]
    Rejected { status: u16, body: ErrorBody },
    /// The server's answer could not be read.
    #[error("unreadable answer from the server: {0}")]
    Malformed(String),
    /// The request could not be made (a bad server URL, a body that does not encode).
    #[error("cannot make the request: {0}")]
    Request(String),
}

/// A pull page whose records do not decode is an answer that cannot be read.
impl From<PullPageError> for TransportError {
    fn from(e: PullPageError) -> Self {
        TransportError::Malformed(e.to_string())
    }
}

impl TransportError {
    /// Sending the same request later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, TransportError::Unavailable(_))
    }
}

/// One request at a time to the sync server.
pub trait Transport {
    /// Who the following requests speak for. A real transport fetches a token for
    /// this replica; called at the start of a sync and after a re-key.
    fn identify(&mut self, actor: &Actor) -> Result<(), TransportError>;
    fn push(&mut self, request: PushRequest) -> Result<PushResponse, TransportError>;
    fn pull(&mut self, since: &str, limit: usize) -> Result<PullResponse, TransportError>;
    /// A pull page as it came, its records perhaps still to be decoded
    /// ([`PullPage::into_response`]): a sync decodes one page on another
    /// thread while it fetches the next.
    fn pull_page(&mut self, since: &str, limit: usize) -> Result<PullPage, TransportError> {
        self.pull(since, limit).map(PullPage::from)
    }
    /// What the device says about itself with the following pushes and pulls
    /// (outbox length, clock, schema version: `docs/protocol.md` §7). A
    /// transport with nobody to tell, like the in-process one, drops it.
    fn report(&mut self, _report: DeviceReport) {}

    /// The deployment's rule settings the server gave at login or refresh;
    /// `None` when it gave none (the replica keeps what it has).
    fn rules(&self) -> Option<mobile_schema::rule_settings::RuleSettings> {
        None
    }

    /// Send back record states after the server was restored (`POST /api/v1/sync/recover`).
    fn recover(
        &mut self,
        _request: sync_protocol::recovery::RecoverRequest,
    ) -> Result<sync_protocol::recovery::RecoverResponse, TransportError> {
        Err(TransportError::Request("this transport cannot send a recovery".into()))
    }
}

/// Where an injected push failure strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushFailure {
    /// The request never reached the server.
    BeforeApply,
    /// The server applied the push and the reply was lost.
    LostReply,
}

/// A transport calling a shared [`ReferenceServer`] in process.
#[derive(Debug)]
pub struct InProcessTransport {
    server: Arc<Mutex<ReferenceServer>>,
    clock: Arc<dyn Clock>,
    actor: Option<Actor>,
    fail_next_push: Option<PushFailure>,
    /// Pull pages left before an injected failure.
    pulls_before_failure: Option<usize>,
    /// Answer the next pull from a cursor other than `0` with `CursorExpired`.
    expire_cursor: bool,
    pub pushes: usize,
    pub pulls: usize,
}

impl InProcessTransport {
    pub fn new(server: Arc<Mutex<ReferenceServer>>, clock: Arc<dyn Clock>) -> Self {
        Self {
            server,
            clock,
            actor: None,
            fail_next_push: None,
            pulls_before_failure: None,
            expire_cursor: false,
            pushes: 0,
            pulls: 0,
        }
    }

    pub fn fail_next_push(&mut self, how: PushFailure) {
        self.fail_next_push = Some(how);
    }

    /// Answer `pages` pulls, then fail the next one.
    pub fn fail_pull_after(&mut self, pages: usize) {
        self.pulls_before_failure = Some(pages);
    }

    /// As a server that has compacted its commit log: the next pull that does not
    /// start from `0` is answered [`TransportError::CursorExpired`].
    pub fn expire_cursor(&mut self) {
        self.expire_cursor = true;
    }

    fn server(&self) -> Result<std::sync::MutexGuard<'_, ReferenceServer>, TransportError> {
        self.server
            .lock()
            .map_err(|_| TransportError::Unavailable("server lock poisoned".into()))
    }
}

impl Transport for InProcessTransport {
    fn identify(&mut self, actor: &Actor) -> Result<(), TransportError> {
        self.actor = Some(*actor);
        Ok(())
    }

    fn push(&mut self, request: PushRequest) -> Result<PushResponse, TransportError> {
        let actor = self
            .actor
            .ok_or_else(|| TransportError::Request("push before identify".into()))?;
        self.pushes += 1;
        let failure = self.fail_next_push.take();
        if failure == Some(PushFailure::BeforeApply) {
            return Err(TransportError::Unavailable("injected: connection refused".into()));
        }
        let now = self.clock.now_ms();
        let response = self.server()?.push(&actor, &request.changes, now);
        if failure == Some(PushFailure::LostReply) {
            return Err(TransportError::Unavailable("injected: reply lost".into()));
        }
        Ok(response)
    }

    fn pull(&mut self, since: &str, limit: usize) -> Result<PullResponse, TransportError> {
        if let Some(left) = self.pulls_before_failure {
            if left == 0 {
                self.pulls_before_failure = None;
                return Err(TransportError::Unavailable("injected: pull cut".into()));
            }
            self.pulls_before_failure = Some(left - 1);
        }
        if self.expire_cursor && since != "0" {
            self.expire_cursor = false;
            return Err(TransportError::CursorExpired);
        }
        self.pulls += 1;
        let now = self.clock.now_ms();
        Ok(self.server()?.pull(since, limit, now))
    }
}
