//! The automerge-repo network protocol: the CBOR messages that one WebSocket binary frame carries,
//! as the JS `@automerge/automerge-repo` 2.x WebSocket adapter and the Rust `samod` crate speak
//! them.
//!
//! Each frame is one CBOR map with text keys. JS peers encode with cbor-x, which writes map lengths
//! non-minimally (`b9 00 04`), writes JS `undefined` as the simple value `0xf7` and may write whole
//! numbers such as `count` or `timestamp` as floats, so decoding is lenient about all three. It is
//! strict about size and shape instead: input longer than the caller's limit is refused before any
//! parsing, nesting deeper than [`MAX_NESTING`] and lists longer than [`MAX_LIST_ITEMS`] are
//! refused, and one frame must hold exactly one message. Encoding writes what the JS side reads:
//! text keys, `data` as a byte string, metadata under `peerMetadata`.
//!
//! Identifiers stay the strings the peer sent (a `doc-unavailable` answer must echo the requested
//! `documentId` verbatim); `splitsave_sync_core::ids::DocumentId::parse` turns a document id into
//! SplitSave's type.

use std::collections::BTreeMap;

use crate::ids::DocumentId;

mod decode;
mod encode;
#[cfg(test)]
mod tests;

use decode::RawMessage;
pub use encode::encode;

/// The only protocol version that exists (`ProtocolV1` in the JS adapter); peers negotiate it in
/// `join`/`peer`.
pub const PROTOCOL_V1: &str = "1";

/// The frame size [`decode`] accepts: large enough for the first sync message of a big
/// partnership document, small enough that one frame cannot tie up the server.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// How deeply CBOR arrays and maps may nest. The deepest legitimate message
/// (`remote-heads-changed`: message → newHeads → entry → heads) nests four levels; anything far
/// deeper is an attack on the decoder's stack.
pub const MAX_NESTING: usize = 16;

/// How many items a list or map inside a message may hold (protocol versions, storage ids,
/// heads), so a small frame cannot expand into a huge allocation.
pub const MAX_LIST_ITEMS: usize = 1024;

/// Why a frame is not a protocol message. The connection answers any of these with an `error`
/// message and closes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtocolError {
    /// The frame is longer than the limit; it was not parsed at all.
    #[error("message of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The frame's length in bytes.
        len: usize,
        /// The limit it exceeded.
        max: usize,
    },
    /// Arrays or maps nest deeper than [`MAX_NESTING`].
    #[error("message nests deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// The frame ends in the middle of a CBOR item.
    #[error("message is truncated")]
    Truncated,
    /// The bytes are not well-formed CBOR.
    #[error("message is not valid CBOR (at byte {offset})")]
    Syntax {
        /// Where the decoder gave up.
        offset: usize,
    },
    /// Well-formed CBOR, but not a message: not a map, a field of the wrong type, a list that is
    /// too long, a duplicate key, bytes after the message.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The message has no `type` field.
    #[error("message has no type")]
    MissingType,
    /// A field the message type requires is absent (or `null`/`undefined`).
    #[error("{message_type} message lacks the {field} field")]
    MissingField {
        /// The message's `type`.
        message_type: &'static str,
        /// The CBOR key that is missing.
        field: &'static str,
    },
}

/// What a peer tells about itself in `join` and `peer`: whether it has durable storage, so the
/// other side knows whether keeping its sync state is worth it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    /// The id of the peer's durable storage; absent for a peer without storage.
    pub storage_id: Option<String>,
    /// True when the peer will not come back with this storage id (JS: no storage configured).
    /// Absent on the wire means false.
    pub is_ephemeral: bool,
}

/// The heads one storage holds for a document, as gossiped in `remote-heads-changed`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemoteHeads {
    /// The document heads, each bs58check-encoded as automerge-repo 2.x encodes them.
    pub heads: Vec<String>,
    /// When the storage's peer first reported these heads, in milliseconds since the Unix epoch.
    pub timestamp: u64,
}

/// One protocol message. Field names follow the wire keys (`senderId` → `sender_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    /// First message of the connecting peer: who it is and which protocol versions it speaks.
    Join {
        /// The connecting peer's self-chosen peer id.
        sender_id: String,
        /// The versions it speaks; absent means version 1 (see [`select_protocol_version`]).
        supported_protocol_versions: Option<Vec<String>>,
        /// Its storage id and whether it is ephemeral.
        peer_metadata: Option<PeerMetadata>,
    },
    /// The accepting peer's answer to `join`.
    Peer {
        /// The accepting peer's id.
        sender_id: String,
        /// The connecting peer's id, echoed from `join`.
        target_id: String,
        /// The version chosen for this connection.
        selected_protocol_version: String,
        /// The accepting peer's storage id; a durable one lets clients see when changes are
        /// stored.
        peer_metadata: Option<PeerMetadata>,
    },
    /// The sender is about to close the connection because of `message`.
    Error {
        /// The sender's peer id (JS adds it; the protocol does not require it).
        sender_id: Option<String>,
        /// The receiver's peer id (JS adds it; the protocol does not require it).
        target_id: Option<String>,
        /// A human-readable reason.
        message: String,
    },
    /// The sender is about to disconnect (advisory).
    Leave {
        /// The leaving peer's id.
        sender_id: String,
    },
    /// A sync message that also asks for `doc-unavailable` if the receiver lacks the document.
    Request {
        /// The sender's peer id.
        sender_id: String,
        /// The receiver's peer id.
        target_id: String,
        /// The document, bs58check as the peer sent it.
        document_id: String,
        /// An encoded `automerge::sync::Message`.
        data: Vec<u8>,
    },
    /// A sync message for one document.
    Sync {
        /// The sender's peer id.
        sender_id: String,
        /// The receiver's peer id.
        target_id: String,
        /// The document, bs58check as the peer sent it.
        document_id: String,
        /// An encoded `automerge::sync::Message`.
        data: Vec<u8>,
    },
    /// The sender does not have (or will not share) the document.
    DocUnavailable {
        /// The sender's peer id.
        sender_id: String,
        /// The receiver's peer id.
        target_id: String,
        /// The document asked for, verbatim.
        document_id: String,
    },
    /// Application data about a document that is relayed but never stored (presence).
    Ephemeral {
        /// The sender's peer id.
        sender_id: String,
        /// The receiver's peer id.
        target_id: String,
        /// Sequence number within the session; receivers drop repeats.
        count: u64,
        /// The sender's session, so counts restart safely when it restarts.
        session_id: String,
        /// The document the data is about.
        document_id: String,
        /// Arbitrary CBOR chosen by the application.
        data: Vec<u8>,
    },
    /// Changes the set of storage ids whose heads the sender wants gossiped to it.
    RemoteSubscriptionChange {
        /// The sender's peer id.
        sender_id: String,
        /// The receiver's peer id.
        target_id: String,
        /// Storage ids to add; JS leaves it out when there are none.
        add: Option<Vec<String>>,
        /// Storage ids to remove; absent or `undefined` on the wire reads as empty.
        remove: Vec<String>,
    },
    /// Heads of a document held by other storages changed.
    RemoteHeadsChanged {
        /// The sender's peer id.
        sender_id: String,
        /// The receiver's peer id.
        target_id: String,
        /// The document whose heads changed.
        document_id: String,
        /// Storage id → its heads.
        new_heads: BTreeMap<String, RemoteHeads>,
    },
    /// A message of a type this module does not know; kept so the caller can decide to ignore
    /// it rather than close the connection. Only its addressing survives decoding.
    Unknown {
        /// The `type` field as sent.
        message_type: String,
        /// The sender's peer id, when present.
        sender_id: Option<String>,
        /// The receiver's peer id, when present.
        target_id: Option<String>,
    },
}

impl WireMessage {
    /// The `type` string this message has on the wire, for logs and metrics.
    pub fn message_type(&self) -> &str {
        match self {
            Self::Join { .. } => "join",
            Self::Peer { .. } => "peer",
            Self::Error { .. } => "error",
            Self::Leave { .. } => "leave",
            Self::Request { .. } => "request",
            Self::Sync { .. } => "sync",
            Self::DocUnavailable { .. } => "doc-unavailable",
            Self::Ephemeral { .. } => "ephemeral",
            Self::RemoteSubscriptionChange { .. } => "remote-subscription-change",
            Self::RemoteHeadsChanged { .. } => "remote-heads-changed",
            Self::Unknown { message_type, .. } => message_type,
        }
    }

    /// The claimed sender, which the connection checks against the authenticated peer.
    pub fn sender_id(&self) -> Option<&str> {
        match self {
            Self::Join { sender_id, .. }
            | Self::Peer { sender_id, .. }
            | Self::Leave { sender_id }
            | Self::Request { sender_id, .. }
            | Self::Sync { sender_id, .. }
            | Self::DocUnavailable { sender_id, .. }
            | Self::Ephemeral { sender_id, .. }
            | Self::RemoteSubscriptionChange { sender_id, .. }
            | Self::RemoteHeadsChanged { sender_id, .. } => Some(sender_id),
            Self::Error { sender_id, .. } | Self::Unknown { sender_id, .. } => sender_id.as_deref(),
        }
    }

    /// The document a message is about, which authorization checks before anything else.
    pub fn document_id(&self) -> Option<&str> {
        match self {
            Self::Request { document_id, .. }
            | Self::Sync { document_id, .. }
            | Self::DocUnavailable { document_id, .. }
            | Self::Ephemeral { document_id, .. }
            | Self::RemoteHeadsChanged { document_id, .. } => Some(document_id),
            _ => None,
        }
    }
}

/// Picks the protocol version for a connection from the versions a `join` lists, as the JS
/// server adapter does: a missing list means version 1, a list containing "1" gets "1", anything
/// else gets `None` (answer with `error` and close).
pub fn select_protocol_version(supported: Option<&[String]>) -> Option<&'static str> {
    match supported {
        None => Some(PROTOCOL_V1),
        Some(versions) if versions.iter().any(|v| v == PROTOCOL_V1) => Some(PROTOCOL_V1),
        Some(_) => None,
    }
}

/// Decodes one frame with the [`DEFAULT_MAX_MESSAGE_BYTES`] limit.
pub fn decode(bytes: &[u8]) -> Result<WireMessage, ProtocolError> {
    decode_bounded(bytes, DEFAULT_MAX_MESSAGE_BYTES)
}

/// Decodes one frame, refusing it unparsed when it is longer than `max_bytes`. Never panics,
/// whatever the input.
pub fn decode_bounded(bytes: &[u8], max_bytes: usize) -> Result<WireMessage, ProtocolError> {
    if bytes.len() > max_bytes {
        return Err(ProtocolError::TooLarge {
            len: bytes.len(),
            max: max_bytes,
        });
    }
    let mut rest = bytes;
    let raw: RawMessage = ciborium::de::from_reader_with_recursion_limit(&mut rest, MAX_NESTING)
        .map_err(|err| match err {
            ciborium::de::Error::Io(_) => ProtocolError::Truncated,
            ciborium::de::Error::Syntax(offset) => ProtocolError::Syntax { offset },
            ciborium::de::Error::Semantic(_, reason) => ProtocolError::Invalid(reason),
            ciborium::de::Error::RecursionLimitExceeded => ProtocolError::TooDeep,
        })?;
    if !rest.is_empty() {
        return Err(ProtocolError::Invalid(format!(
            "{} bytes after the message",
            rest.len()
        )));
    }
    raw.into_message()
}
