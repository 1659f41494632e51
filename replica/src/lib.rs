//! # replica
//!
//! The tablet's store and sync client. A [`Replica`] keeps, in an embedded sled
//! database, the server's record states, this replica's local views of records
//! with changes the server has not answered or not yet sent back, the outbox of
//! changes, and the photo queue (tree layout in [`keys`]).
//!
//! - Every local edit ([`Replica::create`], [`Replica::edit`],
//!   [`Replica::transition`], [`Replica::resolve`]) is checked against the typed
//!   record, then commits the new view, the outbox entry, the per-record pending
//!   index, the next seq and the HLC in one transaction and flushes before it
//!   returns.
//! - [`Replica::sync`] pushes the outbox in seq order through a [`Transport`] and
//!   pulls from the stored cursor; a sync cut at any point resumes on the next call.
//!   [`HttpTransport`] is the real one (zstd bodies, retries, tokens);
//!   [`InProcessTransport`] calls the reference server in tests.
//! - Photos ([`Replica::attach_photo_to`]) upload after their record syncs, over
//!   resumable tus uploads ([`Replica::upload_photos`], [`PhotoClient`]).
//! - Stores of an older layout are migrated on open ([`migrate`]).

pub mod check;
pub mod credentials;
pub mod device;
pub mod error;
pub mod http;
pub mod keys;
pub mod migrate;
pub mod pacing;
pub mod photo_upload;
mod photos;
pub mod recovery;
pub mod store;
pub mod stored;
pub mod sync;
pub mod transport;
pub mod workflow;

pub use credentials::{Credentials, CredentialsError};
pub use error::ReplicaError;
pub use http::{HttpConfig, HttpTransport, WireStats};
pub use photo_upload::{PhotoClient, PhotoSyncReport, Progress, QueueProgress, UploadConfig, UploadOutcome};
pub use photos::PhotoRefusal;
pub use store::{
    ConflictVersion, EditReceipt, Identity, RecordView, RefusedChange, Replica, ReplicaConfig, UnitConflict,
};
pub use sync::SyncReport;
pub use transport::{InProcessTransport, PushFailure, Transport, TransportError};
