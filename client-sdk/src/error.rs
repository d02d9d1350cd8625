//! The SDK's one error type.

use splitsave_sync_core::document::DocumentError;
use splitsave_sync_core::ops::OpError;

use crate::connection::ConnectionError;
use crate::store::StoreError;

/// Why an SDK call failed. Local data is never lost by an error: a refused operation wrote
/// nothing, and a session that ended keeps the local store.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server no longer accepts this session (its refresh token was revoked, reused or
    /// expired). Sign in again; the local document and pending changes are kept and sync once a
    /// new session exists.
    #[error("signed out: {0}")]
    SignedOut(String),
    /// The call needs a signed-in session and there is none.
    #[error("not signed in")]
    NotSignedIn,
    /// The server answered with an error (its JSON error body's `code` and `message`).
    #[error("the server answered {status} {code}: {message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The error body's machine-readable code (`validation_failed`, `not_found`, ...).
        code: String,
        /// The error body's human-readable message.
        message: String,
    },
    /// The server could not be reached (offline, DNS, TLS, timeout).
    #[error("network: {0}")]
    Network(String),
    /// The sync connection failed.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The local store could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A local operation was refused by the rules (nothing was written).
    #[error(transparent)]
    Op(#[from] OpError),
    /// The document cannot be read by this SDK (e.g. a newer schema).
    #[error(transparent)]
    Document(#[from] DocumentError),
    /// The user has no active or paused partnership yet.
    #[error("no partnership yet")]
    NoPartnership,
    /// The partnership document has not been received from the server yet: sync once online.
    #[error("the partnership document has not been synced yet")]
    NotSyncedYet,
    /// This month is not open in the document yet and the server, which opens it, cannot be
    /// reached.
    #[error("the month {0} is not open yet; it opens once the server is reachable")]
    MonthNotOpen(String),
    /// The client was shut down.
    #[error("the client is shut down")]
    Closed,
    /// A wait ended before its condition held.
    #[error("timed out")]
    Timeout,
}

/// The SDK's result type.
pub type Result<T, E = ClientError> = std::result::Result<T, E>;
