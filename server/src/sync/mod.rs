//! `GET /sync`: the automerge-repo WebSocket protocol, one [`doc_actor::DocActor`] per live
//! partnership document, presence, and the limits that keep one client from hurting the rest.

pub mod cluster;
pub mod committer;
pub mod connection;
pub mod doc_actor;
pub mod presence;
/// The automerge-repo wire protocol (shared with the client SDK).
pub use splitsave_sync_core::protocol;
pub mod registry;

use std::time::Duration;

use splitsave_sync_core::ops::OpError;

use crate::store::StoreError;

/// What a document actor publishes for subscribers (`/api/events`, push notifications).
#[derive(Clone, Debug)]
pub enum DocEvent {
    /// A merge (over sync or REST) committed; its typed events.
    Merge {
        /// The events, at most one per entity.
        events: Vec<splitsave_sync_core::events::Event>,
        /// Who made the change (unknown for a change caught up with after another node's
        /// compaction).
        by: Option<splitsave_sync_core::ids::UserId>,
    },
    /// Access ended for `user` (for everyone when `None`): their event streams close.
    AccessEnded {
        /// Whose access ended.
        user: Option<splitsave_sync_core::ids::UserId>,
    },
    /// A partner came online or went offline.
    Presence {
        /// Whose presence changed.
        user: splitsave_sync_core::ids::UserId,
        /// Online now?
        online: bool,
        /// When.
        at: chrono::DateTime<chrono::Utc>,
    },
}

/// The server's peer id in the automerge-repo protocol.
pub const SERVER_PEER_ID: &str = "splitsave-server";

/// Limits and timings of the sync layer. The defaults are documented in the README; tests
/// shorten the timings.
#[derive(Clone, Debug)]
pub struct SyncLimits {
    /// Largest WebSocket message (and frame) accepted; larger ones close the connection.
    /// Automerge sends a device's whole offline backlog in one message, so this bounds how far
    /// behind a device may fall and still catch up in one exchange.
    pub max_message_bytes: usize,
    /// Most changes one sync message may carry; a message beyond it is refused before anything
    /// is applied.
    pub max_changes_per_message: usize,
    /// Most operations all changes of one message may hold (bounds what a small compressed
    /// message may expand to before it is applied; counted while parsing).
    pub max_ops_per_message: usize,
    /// Most changes applied, enforced and committed in one merge. A message with more (a
    /// device back from a long time offline) is applied in several merges, in causal order,
    /// each committed on its own: one transaction and one enforcement pass stay bounded.
    pub max_changes_per_merge: usize,
    /// Most operations in one merge (and so in any single change).
    pub max_ops_per_merge: usize,
    /// Largest uncompressed change.
    pub max_change_bytes: usize,
    /// Largest single value a change may write: a string or bytes, or the text a message
    /// inserts into one text object (together with what that object already holds). Enough
    /// for the longest field of the schema (a 4,000-character message in 4-byte characters);
    /// a larger value is refused before it is applied, so it never enters the history that
    /// every replica downloads.
    pub max_value_bytes: usize,
    /// Sustained messages per second per connection.
    pub messages_per_second: u32,
    /// Burst of messages allowed above the sustained rate.
    pub message_burst: u32,
    /// Capacity of a document actor's mailbox.
    pub actor_mailbox: usize,
    /// Messages queued for one connection before it is considered too slow and dropped.
    pub outbound_queue: usize,
    /// How long a document with no connections stays loaded.
    pub idle_eviction: Duration,
    /// Stored changes beyond the latest snapshot that trigger compaction.
    pub compact_after_changes: usize,
    /// How often a connection re-checks that its user may still sync (partnership, token
    /// version).
    pub revalidate_every: Duration,
    /// How long a new connection may take to send `join`.
    pub handshake_timeout: Duration,
    /// `CLUSTER_POLL_MS` (1,000): with several nodes, how often a node reads its live
    /// documents' versions while Redis is not subscribed (the fan-out delay without Redis).
    pub cluster_poll: Duration,
    /// `CLUSTER_SAFETY_POLL_MS` (15,000): how often it does while Redis is subscribed.
    pub cluster_safety_poll: Duration,
    /// `PRESENCE_TTL_SECS` (20): how long a partner connected to another node counts as online
    /// without hearing of it again (nodes repeat it every quarter of this).
    pub presence_ttl: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_message_bytes: 8 * 1024 * 1024,
            max_changes_per_message: 100_000,
            max_ops_per_message: 1_000_000,
            max_changes_per_merge: 5_000,
            max_ops_per_merge: 100_000,
            max_change_bytes: 1024 * 1024,
            max_value_bytes: 16 * 1024,
            messages_per_second: 50,
            message_burst: 100,
            actor_mailbox: 256,
            outbound_queue: 256,
            idle_eviction: doc_actor::DEFAULT_IDLE_EVICTION,
            compact_after_changes: 500,
            revalidate_every: Duration::from_secs(15),
            handshake_timeout: Duration::from_secs(10),
            cluster_poll: Duration::from_secs(1),
            cluster_safety_poll: Duration::from_secs(15),
            presence_ttl: Duration::from_secs(20),
        }
    }
}

/// Errors of the sync layer. Each closes the connection with the protocol's `error` message,
/// except where noted.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// A change carries an actor id bound to another user (or the server's): a security
    /// violation, refused whole.
    #[error("a change carries an actor id that is not yours")]
    ForeignActor,
    /// Not a valid Automerge sync message, or corrupt change bytes.
    #[error("malformed sync message")]
    Malformed,
    /// Beyond a size limit.
    #[error("message too large: {0}")]
    TooLarge(&'static str),
    /// The connection is not attached to the document.
    #[error("not attached to this document")]
    NotAttached,
    /// The connection's access ended (partnership ended, account deleted, password changed):
    /// nothing it sends is applied any more.
    #[error("access to this document ended: reconnect")]
    AccessEnded,
    /// The partnership has no stored document.
    #[error("document not found")]
    NoDocument,
    /// Storage failed; nothing of the message was kept.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// An operation (REST write) was refused by the policy.
    #[error(transparent)]
    Op(OpError),
    /// The document actor is gone (shutting down).
    #[error("document unavailable")]
    Unavailable,
    /// An internal failure; logged.
    #[error("internal error")]
    Internal,
}

impl SyncError {
    /// Another node committed a merge of the document first: the actor has caught up and the
    /// merge is to be made again.
    pub(crate) fn is_stale(&self) -> bool {
        matches!(
            self,
            SyncError::Store(StoreError::Conflict(crate::store::Conflict::Stale))
        )
    }
}
