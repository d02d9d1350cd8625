//! The WebSocket sync layer.

/// The automerge-repo wire protocol (shared with the client SDK).
pub use splitsave_sync_core::protocol;
