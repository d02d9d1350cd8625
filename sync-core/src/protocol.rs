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
use std::fmt;

use crate::ids::DocumentId;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

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

/// Encodes a message the way the JS adapter decodes it: a CBOR map with text keys, binary
/// payloads as byte strings, optional fields left out rather than written as `null`.
pub fn encode(message: &WireMessage) -> Vec<u8> {
    let mut w = CborWriter::default();
    match message {
        WireMessage::Join {
            sender_id,
            supported_protocol_versions,
            peer_metadata,
        } => {
            w.map(
                2 + usize::from(supported_protocol_versions.is_some())
                    + usize::from(peer_metadata.is_some()),
            );
            w.text_field("type", "join");
            w.text_field("senderId", sender_id);
            if let Some(versions) = supported_protocol_versions {
                w.text("supportedProtocolVersions");
                w.text_list(versions);
            }
            if let Some(metadata) = peer_metadata {
                w.text("peerMetadata");
                w.metadata(metadata);
            }
        }
        WireMessage::Peer {
            sender_id,
            target_id,
            selected_protocol_version,
            peer_metadata,
        } => {
            w.map(4 + usize::from(peer_metadata.is_some()));
            w.text_field("type", "peer");
            w.text_field("senderId", sender_id);
            w.text_field("targetId", target_id);
            w.text_field("selectedProtocolVersion", selected_protocol_version);
            if let Some(metadata) = peer_metadata {
                w.text("peerMetadata");
                w.metadata(metadata);
            }
        }
        WireMessage::Error {
            sender_id,
            target_id,
            message,
        } => {
            w.map(2 + usize::from(sender_id.is_some()) + usize::from(target_id.is_some()));
            w.text_field("type", "error");
            w.optional_text_field("senderId", sender_id.as_deref());
            w.optional_text_field("targetId", target_id.as_deref());
            w.text_field("message", message);
        }
        WireMessage::Leave { sender_id } => {
            w.map(2);
            w.text_field("type", "leave");
            w.text_field("senderId", sender_id);
        }
        WireMessage::Request {
            sender_id,
            target_id,
            document_id,
            data,
        } => w.document_message("request", sender_id, target_id, document_id, data),
        WireMessage::Sync {
            sender_id,
            target_id,
            document_id,
            data,
        } => w.document_message("sync", sender_id, target_id, document_id, data),
        WireMessage::DocUnavailable {
            sender_id,
            target_id,
            document_id,
        } => {
            w.map(4);
            w.text_field("type", "doc-unavailable");
            w.text_field("senderId", sender_id);
            w.text_field("targetId", target_id);
            w.text_field("documentId", document_id);
        }
        WireMessage::Ephemeral {
            sender_id,
            target_id,
            count,
            session_id,
            document_id,
            data,
        } => {
            w.map(7);
            w.text_field("type", "ephemeral");
            w.text_field("senderId", sender_id);
            w.text_field("targetId", target_id);
            w.text("count");
            w.js_number(*count);
            w.text_field("sessionId", session_id);
            w.text_field("documentId", document_id);
            w.text("data");
            w.bytes(data);
        }
        WireMessage::RemoteSubscriptionChange {
            sender_id,
            target_id,
            add,
            remove,
        } => {
            w.map(4 + usize::from(add.is_some()));
            w.text_field("type", "remote-subscription-change");
            w.text_field("senderId", sender_id);
            w.text_field("targetId", target_id);
            if let Some(add) = add {
                w.text("add");
                w.text_list(add);
            }
            w.text("remove");
            w.text_list(remove);
        }
        WireMessage::RemoteHeadsChanged {
            sender_id,
            target_id,
            document_id,
            new_heads,
        } => {
            w.map(5);
            w.text_field("type", "remote-heads-changed");
            w.text_field("senderId", sender_id);
            w.text_field("targetId", target_id);
            w.text_field("documentId", document_id);
            w.text("newHeads");
            w.map(new_heads.len());
            for (storage_id, remote) in new_heads {
                w.text(storage_id);
                w.map(2);
                w.text("heads");
                w.text_list(&remote.heads);
                w.text("timestamp");
                w.js_number(remote.timestamp);
            }
        }
        WireMessage::Unknown {
            message_type,
            sender_id,
            target_id,
        } => {
            w.map(1 + usize::from(sender_id.is_some()) + usize::from(target_id.is_some()));
            w.text_field("type", message_type);
            w.optional_text_field("senderId", sender_id.as_deref());
            w.optional_text_field("targetId", target_id.as_deref());
        }
    }
    w.out
}

/// A minimal CBOR writer: definite lengths, minimal heads, only the item kinds messages use.
/// Writing into a `Vec` cannot fail, so neither can [`encode`].
#[derive(Default)]
struct CborWriter {
    out: Vec<u8>,
}

impl CborWriter {
    const UNSIGNED: u8 = 0;
    const BYTES: u8 = 2;
    const TEXT: u8 = 3;
    const ARRAY: u8 = 4;
    const MAP: u8 = 5;

    fn head(&mut self, major: u8, value: u64) {
        let major = major << 5;
        if value < 24 {
            // `value < 24` makes the cast lossless.
            self.out.push(major | value as u8);
        } else if let Ok(v) = u8::try_from(value) {
            self.out.extend_from_slice(&[major | 24, v]);
        } else if let Ok(v) = u16::try_from(value) {
            self.out.push(major | 25);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else if let Ok(v) = u32::try_from(value) {
            self.out.push(major | 26);
            self.out.extend_from_slice(&v.to_be_bytes());
        } else {
            self.out.push(major | 27);
            self.out.extend_from_slice(&value.to_be_bytes());
        }
    }

    fn len(&mut self, major: u8, len: usize) {
        // usize is at most 64 bits on every supported target.
        self.head(major, len as u64);
    }

    fn uint(&mut self, value: u64) {
        self.head(Self::UNSIGNED, value);
    }

    /// A JS number (`count`, `timestamp`). cbor-x reads a 64-bit CBOR integer as a `BigInt`,
    /// which JS code mixing it with numbers throws on, so values past 32 bits are written as
    /// float64 as cbor-x itself writes them; below 2^53 that is exact.
    fn js_number(&mut self, value: u64) {
        const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;
        if value <= u64::from(u32::MAX) || value > MAX_SAFE_INTEGER {
            self.uint(value);
        } else {
            self.out.push(0xfb);
            // `value <= 2^53 - 1`, so the conversion is exact.
            self.out.extend_from_slice(&(value as f64).to_be_bytes());
        }
    }

    fn bool(&mut self, value: bool) {
        self.out.push(if value { 0xf5 } else { 0xf4 });
    }

    fn text(&mut self, s: &str) {
        self.len(Self::TEXT, s.len());
        self.out.extend_from_slice(s.as_bytes());
    }

    fn bytes(&mut self, b: &[u8]) {
        self.len(Self::BYTES, b.len());
        self.out.extend_from_slice(b);
    }

    fn map(&mut self, entries: usize) {
        self.len(Self::MAP, entries);
    }

    fn text_list(&mut self, items: &[String]) {
        self.len(Self::ARRAY, items.len());
        for item in items {
            self.text(item);
        }
    }

    fn text_field(&mut self, key: &str, value: &str) {
        self.text(key);
        self.text(value);
    }

    fn optional_text_field(&mut self, key: &str, value: Option<&str>) {
        if let Some(value) = value {
            self.text_field(key, value);
        }
    }

    fn metadata(&mut self, metadata: &PeerMetadata) {
        self.map(1 + usize::from(metadata.storage_id.is_some()));
        self.optional_text_field("storageId", metadata.storage_id.as_deref());
        self.text("isEphemeral");
        self.bool(metadata.is_ephemeral);
    }

    fn document_message(
        &mut self,
        message_type: &str,
        sender_id: &str,
        target_id: &str,
        document_id: &str,
        data: &[u8],
    ) {
        self.map(5);
        self.text_field("type", message_type);
        self.text_field("senderId", sender_id);
        self.text_field("targetId", target_id);
        self.text_field("documentId", document_id);
        self.text("data");
        self.bytes(data);
    }
}

/// Every field any message may carry, each absent until seen; [`RawMessage::into_message`] then
/// checks what the message's type requires.
#[derive(Default)]
struct RawMessage {
    message_type: Option<String>,
    sender_id: Option<String>,
    target_id: Option<String>,
    document_id: Option<String>,
    data: Option<Vec<u8>>,
    count: Option<u64>,
    session_id: Option<String>,
    message: Option<String>,
    selected_protocol_version: Option<String>,
    supported_protocol_versions: Option<Vec<String>>,
    peer_metadata: Option<PeerMetadata>,
    add: Option<Vec<String>>,
    remove: Option<Vec<String>>,
    new_heads: Option<BTreeMap<String, RemoteHeads>>,
}

/// Takes a required field or names it in the error.
fn required<T>(
    value: Option<T>,
    message_type: &'static str,
    field: &'static str,
) -> Result<T, ProtocolError> {
    value.ok_or(ProtocolError::MissingField {
        message_type,
        field,
    })
}

impl RawMessage {
    fn into_message(self) -> Result<WireMessage, ProtocolError> {
        let message_type = self.message_type.ok_or(ProtocolError::MissingType)?;
        let message = match message_type.as_str() {
            "join" => WireMessage::Join {
                sender_id: required(self.sender_id, "join", "senderId")?,
                supported_protocol_versions: self.supported_protocol_versions,
                peer_metadata: self.peer_metadata,
            },
            "peer" => WireMessage::Peer {
                sender_id: required(self.sender_id, "peer", "senderId")?,
                target_id: required(self.target_id, "peer", "targetId")?,
                selected_protocol_version: required(
                    self.selected_protocol_version,
                    "peer",
                    "selectedProtocolVersion",
                )?,
                peer_metadata: self.peer_metadata,
            },
            "error" => WireMessage::Error {
                sender_id: self.sender_id,
                target_id: self.target_id,
                message: required(self.message, "error", "message")?,
            },
            "leave" => WireMessage::Leave {
                sender_id: required(self.sender_id, "leave", "senderId")?,
            },
            "request" => WireMessage::Request {
                sender_id: required(self.sender_id, "request", "senderId")?,
                target_id: required(self.target_id, "request", "targetId")?,
                document_id: required(self.document_id, "request", "documentId")?,
                data: required(self.data, "request", "data")?,
            },
            "sync" => WireMessage::Sync {
                sender_id: required(self.sender_id, "sync", "senderId")?,
                target_id: required(self.target_id, "sync", "targetId")?,
                document_id: required(self.document_id, "sync", "documentId")?,
                data: required(self.data, "sync", "data")?,
            },
            "doc-unavailable" => WireMessage::DocUnavailable {
                sender_id: required(self.sender_id, "doc-unavailable", "senderId")?,
                target_id: required(self.target_id, "doc-unavailable", "targetId")?,
                document_id: required(self.document_id, "doc-unavailable", "documentId")?,
            },
            "ephemeral" => WireMessage::Ephemeral {
                sender_id: required(self.sender_id, "ephemeral", "senderId")?,
                target_id: required(self.target_id, "ephemeral", "targetId")?,
                count: required(self.count, "ephemeral", "count")?,
                session_id: required(self.session_id, "ephemeral", "sessionId")?,
                document_id: required(self.document_id, "ephemeral", "documentId")?,
                data: required(self.data, "ephemeral", "data")?,
            },
            "remote-subscription-change" => WireMessage::RemoteSubscriptionChange {
                sender_id: required(self.sender_id, "remote-subscription-change", "senderId")?,
                target_id: required(self.target_id, "remote-subscription-change", "targetId")?,
                add: self.add,
                remove: self.remove.unwrap_or_default(),
            },
            "remote-heads-changed" => WireMessage::RemoteHeadsChanged {
                sender_id: required(self.sender_id, "remote-heads-changed", "senderId")?,
                target_id: required(self.target_id, "remote-heads-changed", "targetId")?,
                document_id: required(self.document_id, "remote-heads-changed", "documentId")?,
                new_heads: required(self.new_heads, "remote-heads-changed", "newHeads")?,
            },
            _ => WireMessage::Unknown {
                message_type,
                sender_id: self.sender_id,
                target_id: self.target_id,
            },
        };
        Ok(message)
    }
}

/// The keys a message may carry; anything else is skipped.
enum Key {
    Type,
    SenderId,
    TargetId,
    DocumentId,
    Data,
    Count,
    SessionId,
    Message,
    SelectedProtocolVersion,
    SupportedProtocolVersions,
    // `peerMetadata` in the code of both implementations, `metadata` in the written spec.
    PeerMetadata,
    Add,
    Remove,
    NewHeads,
    Other,
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text key")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "type" => Key::Type,
                    "senderId" => Key::SenderId,
                    "targetId" => Key::TargetId,
                    "documentId" => Key::DocumentId,
                    "data" => Key::Data,
                    "count" => Key::Count,
                    "sessionId" => Key::SessionId,
                    "message" => Key::Message,
                    "selectedProtocolVersion" => Key::SelectedProtocolVersion,
                    "supportedProtocolVersions" => Key::SupportedProtocolVersions,
                    "peerMetadata" | "metadata" => Key::PeerMetadata,
                    "add" => Key::Add,
                    "remove" => Key::Remove,
                    "newHeads" => Key::NewHeads,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_any(KeyVisitor)
    }
}

/// Stores a field's value, refusing a second occurrence of the same key.
fn set_once<T, E: de::Error>(
    slot: &mut Option<T>,
    value: Option<T>,
    key: &'static str,
) -> Result<(), E> {
    if let Some(value) = value {
        if slot.is_some() {
            return Err(E::custom(format_args!("duplicate key {key}")));
        }
        *slot = Some(value);
    }
    Ok(())
}

impl<'de> Deserialize<'de> for RawMessage {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MessageVisitor;
        impl<'de> Visitor<'de> for MessageVisitor {
            type Value = RawMessage;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawMessage, A::Error> {
                let mut raw = RawMessage::default();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Type => {
                            set_once(&mut raw.message_type, map.next_value::<Text>()?.0, "type")?
                        }
                        Key::SenderId => {
                            set_once(&mut raw.sender_id, map.next_value::<Text>()?.0, "senderId")?
                        }
                        Key::TargetId => {
                            set_once(&mut raw.target_id, map.next_value::<Text>()?.0, "targetId")?
                        }
                        Key::DocumentId => set_once(
                            &mut raw.document_id,
                            map.next_value::<DocumentIdValue>()?.0,
                            "documentId",
                        )?,
                        Key::Data => set_once(&mut raw.data, map.next_value::<Bytes>()?.0, "data")?,
                        Key::Count => {
                            set_once(&mut raw.count, map.next_value::<Number>()?.0, "count")?
                        }
                        Key::SessionId => set_once(
                            &mut raw.session_id,
                            map.next_value::<Text>()?.0,
                            "sessionId",
                        )?,
                        Key::Message => {
                            set_once(&mut raw.message, map.next_value::<Text>()?.0, "message")?
                        }
                        Key::SelectedProtocolVersion => set_once(
                            &mut raw.selected_protocol_version,
                            map.next_value::<Text>()?.0,
                            "selectedProtocolVersion",
                        )?,
                        Key::SupportedProtocolVersions => set_once(
                            &mut raw.supported_protocol_versions,
                            map.next_value::<TextList>()?.0,
                            "supportedProtocolVersions",
                        )?,
                        Key::PeerMetadata => set_once(
                            &mut raw.peer_metadata,
                            map.next_value::<Metadata>()?.0,
                            "peerMetadata",
                        )?,
                        Key::Add => set_once(&mut raw.add, map.next_value::<TextList>()?.0, "add")?,
                        Key::Remove => {
                            set_once(&mut raw.remove, map.next_value::<TextList>()?.0, "remove")?
                        }
                        Key::NewHeads => set_once(
                            &mut raw.new_heads,
                            map.next_value::<NewHeads>()?.0,
                            "newHeads",
                        )?,
                        Key::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        deserializer.deserialize_any(MessageVisitor)
    }
}

/// Implements `visit_none`/`visit_unit` (CBOR `null` and `undefined`) as "absent" for the
/// optional-value visitors below.
macro_rules! absent_is_none {
    () => {
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
}

/// A text value, or absent.
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a text string")
            }
            absent_is_none!();
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
        }
        deserializer.deserialize_any(TextVisitor).map(Text)
    }
}

/// A `documentId`: text as JS sends it, or the id's 16 raw bytes (which samod also accepts),
/// normalised to the bs58check text.
struct DocumentIdValue(Option<String>);

impl<'de> Deserialize<'de> for DocumentIdValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct DocumentIdVisitor;
        impl Visitor<'_> for DocumentIdVisitor {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a document id as text or 16 bytes")
            }
            absent_is_none!();
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                let bytes: [u8; 16] = v
                    .try_into()
                    .map_err(|_| E::custom("a binary documentId must be 16 bytes"))?;
                Ok(Some(DocumentId(bytes).to_string()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                self.visit_bytes(&v)
            }
        }
        deserializer
            .deserialize_any(DocumentIdVisitor)
            .map(DocumentIdValue)
    }
}

/// A byte string, or absent.
struct Bytes(Option<Vec<u8>>);

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Option<Vec<u8>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a byte string")
            }
            absent_is_none!();
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                Ok(Some(v.to_vec()))
            }
            fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
        }
        deserializer.deserialize_any(BytesVisitor).map(Bytes)
    }
}

/// A non-negative whole number written as an integer or, as cbor-x may, as a float (a fraction
/// is dropped), or absent.
struct Number(Option<u64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NumberVisitor;
        impl Visitor<'_> for NumberVisitor {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative number")
            }
            absent_is_none!();
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(Some)
                    .map_err(|_| E::custom("a count or timestamp cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // 2^64 as f64; every finite float in [0, 2^64) truncates into a u64.
                const LIMIT: f64 = 18_446_744_073_709_551_616.0;
                if v.is_finite() && (0.0..LIMIT).contains(&v) {
                    // The range check above makes the conversion exact up to the dropped
                    // fraction.
                    Ok(Some(v as u64))
                } else {
                    Err(E::custom(
                        "a count or timestamp must be a finite non-negative number",
                    ))
                }
            }
        }
        deserializer.deserialize_any(NumberVisitor).map(Number)
    }
}

/// A list of at most [`MAX_LIST_ITEMS`] text strings, or absent.
struct TextList(Option<Vec<String>>);

impl<'de> Deserialize<'de> for TextList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextListVisitor;
        impl<'de> Visitor<'de> for TextListVisitor {
            type Value = Option<Vec<String>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of text strings")
            }
            absent_is_none!();
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut items = Vec::new();
                while let Some(Text(item)) = seq.next_element::<Text>()? {
                    if items.len() == MAX_LIST_ITEMS {
                        return Err(de::Error::custom("list too long"));
                    }
                    items.push(item.ok_or_else(|| de::Error::custom("null in a list of text"))?);
                }
                Ok(Some(items))
            }
        }
        deserializer.deserialize_any(TextListVisitor).map(TextList)
    }
}

/// `true`/`false`, or absent.
struct Flag(Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FlagVisitor;
        impl Visitor<'_> for FlagVisitor {
            type Value = Option<bool>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a boolean")
            }
            absent_is_none!();
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
        }
        deserializer.deserialize_any(FlagVisitor).map(Flag)
    }
}

/// `peerMetadata`: `{storageId?, isEphemeral?}`, unknown keys skipped, or absent.
struct Metadata(Option<PeerMetadata>);

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MetadataVisitor;
        impl<'de> Visitor<'de> for MetadataVisitor {
            type Value = Option<PeerMetadata>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a peer metadata map")
            }
            absent_is_none!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut storage_id = None;
                let mut is_ephemeral = None;
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    match key.as_deref() {
                        Some("storageId") => {
                            set_once(&mut storage_id, map.next_value::<Text>()?.0, "storageId")?
                        }
                        Some("isEphemeral") => set_once(
                            &mut is_ephemeral,
                            map.next_value::<Flag>()?.0,
                            "isEphemeral",
                        )?,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Some(PeerMetadata {
                    storage_id,
                    is_ephemeral: is_ephemeral.unwrap_or(false),
                }))
            }
        }
        deserializer.deserialize_any(MetadataVisitor).map(Metadata)
    }
}

/// `newHeads`: storage id → `{heads, timestamp}`, at most [`MAX_LIST_ITEMS`] entries, or absent.
struct NewHeads(Option<BTreeMap<String, RemoteHeads>>);

impl<'de> Deserialize<'de> for NewHeads {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NewHeadsVisitor;
        impl<'de> Visitor<'de> for NewHeadsVisitor {
            type Value = Option<BTreeMap<String, RemoteHeads>>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map from storage id to heads")
            }
            absent_is_none!();
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut heads = BTreeMap::new();
                while let Some(Text(storage_id)) = map.next_key::<Text>()? {
                    if heads.len() == MAX_LIST_ITEMS {
                        return Err(de::Error::custom("too many storage ids in newHeads"));
                    }
                    let storage_id =
                        storage_id.ok_or_else(|| de::Error::custom("null storage id"))?;
                    let remote = map.next_value::<HeadsEntry>()?.0;
                    if heads.insert(storage_id, remote).is_some() {
                        return Err(de::Error::custom("duplicate storage id in newHeads"));
                    }
                }
                Ok(Some(heads))
            }
        }
        deserializer.deserialize_any(NewHeadsVisitor).map(NewHeads)
    }
}

/// One `newHeads` entry. Missing `heads` or `timestamp` read as empty and 0, as samod reads them.
struct HeadsEntry(RemoteHeads);

impl<'de> Deserialize<'de> for HeadsEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct HeadsEntryVisitor;
        impl<'de> Visitor<'de> for HeadsEntryVisitor {
            type Value = RemoteHeads;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a {heads, timestamp} map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut heads = None;
                let mut timestamp = None;
                while let Some(Text(key)) = map.next_key::<Text>()? {
                    match key.as_deref() {
                        Some("heads") => {
                            set_once(&mut heads, map.next_value::<TextList>()?.0, "heads")?
                        }
                        Some("timestamp") => {
                            set_once(&mut timestamp, map.next_value::<Number>()?.0, "timestamp")?
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(RemoteHeads {
                    heads: heads.unwrap_or_default(),
                    timestamp: timestamp.unwrap_or(0),
                })
            }
        }
        deserializer
            .deserialize_any(HeadsEntryVisitor)
            .map(HeadsEntry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// A CBOR value for hand-built fixtures, written the way cbor-x writes it.
    enum V {
        Map(Vec<(&'static str, V)>),
        Array(Vec<V>),
        Text(&'static str),
        Bytes(Vec<u8>),
        Uint(u64),
        Float(f64),
        Bool(bool),
        Undefined,
    }

    /// Writes `v` in cbor-x's style: every map length as a uint16 (`b9 00 NN`), numbers that are
    /// floats as float64.
    fn cborx(v: &V, out: &mut Vec<u8>) {
        fn head(major: u8, len: usize, out: &mut Vec<u8>) {
            let mut w = CborWriter::default();
            w.len(major, len);
            out.extend_from_slice(&w.out);
        }
        match v {
            V::Map(entries) => {
                out.push(0xb9);
                out.extend_from_slice(&u16::try_from(entries.len()).unwrap().to_be_bytes());
                for (k, v) in entries {
                    cborx(&V::Text(k), out);
                    cborx(v, out);
                }
            }
            V::Array(items) => {
                head(4, items.len(), out);
                items.iter().for_each(|i| cborx(i, out));
            }
            V::Text(s) => {
                head(3, s.len(), out);
                out.extend_from_slice(s.as_bytes());
            }
            V::Bytes(b) => {
                head(2, b.len(), out);
                out.extend_from_slice(b);
            }
            V::Uint(n) => {
                let mut w = CborWriter::default();
                w.uint(*n);
                out.extend_from_slice(&w.out);
            }
            V::Float(f) => {
                out.push(0xfb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            V::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
            V::Undefined => out.push(0xf7),
        }
    }

    fn bytes_of(v: V) -> Vec<u8> {
        let mut out = Vec::new();
        cborx(&v, &mut out);
        out
    }

    const DOC: &str = "2ZorNZr7taHimrYix2h95fJcSEQh";

    fn every_message_type() -> Vec<WireMessage> {
        let mut new_heads = BTreeMap::new();
        new_heads.insert(
            "storage-a".to_owned(),
            RemoteHeads {
                heads: vec!["3HJ1Dr6R3k".to_owned(), "8s4UuZ7G2m".to_owned()],
                timestamp: 1_764_037_000_123,
            },
        );
        new_heads.insert("storage-b".to_owned(), RemoteHeads::default());
        vec![
            WireMessage::Join {
                sender_id: "client-1".to_owned(),
                supported_protocol_versions: Some(vec!["1".to_owned()]),
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some("client-storage".to_owned()),
                    is_ephemeral: false,
                }),
            },
            WireMessage::Join {
                sender_id: "client-2".to_owned(),
                supported_protocol_versions: None,
                peer_metadata: None,
            },
            WireMessage::Peer {
                sender_id: "server".to_owned(),
                target_id: "client-1".to_owned(),
                selected_protocol_version: "1".to_owned(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some("server-storage".to_owned()),
                    is_ephemeral: false,
                }),
            },
            WireMessage::Peer {
                sender_id: "server".to_owned(),
                target_id: "client-1".to_owned(),
                selected_protocol_version: "1".to_owned(),
                peer_metadata: Some(PeerMetadata {
                    storage_id: None,
                    is_ephemeral: true,
                }),
            },
            WireMessage::Error {
                sender_id: Some("server".to_owned()),
                target_id: Some("client-1".to_owned()),
                message: "token expired".to_owned(),
            },
            WireMessage::Error {
                sender_id: None,
                target_id: None,
                message: "unsupported protocol version".to_owned(),
            },
            WireMessage::Leave {
                sender_id: "client-1".to_owned(),
            },
            WireMessage::Request {
                sender_id: "client-1".to_owned(),
                target_id: "server".to_owned(),
                document_id: DOC.to_owned(),
                data: vec![0x42, 0x00, 0xff],
            },
            WireMessage::Sync {
                sender_id: "server".to_owned(),
                target_id: "client-1".to_owned(),
                document_id: DOC.to_owned(),
                data: (0..=255).collect(),
            },
            WireMessage::DocUnavailable {
                sender_id: "server".to_owned(),
                target_id: "client-1".to_owned(),
                document_id: "not-a-real-id".to_owned(),
            },
            WireMessage::Ephemeral {
                sender_id: "server".to_owned(),
                target_id: "client-1".to_owned(),
                count: 70_000,
                session_id: "s-1".to_owned(),
                document_id: DOC.to_owned(),
                data: vec![0xa1, 0x61, 0x6b, 0x01],
            },
            WireMessage::RemoteSubscriptionChange {
                sender_id: "client-1".to_owned(),
                target_id: "server".to_owned(),
                add: Some(vec!["storage-a".to_owned()]),
                remove: vec!["storage-b".to_owned()],
            },
            WireMessage::RemoteSubscriptionChange {
                sender_id: "client-1".to_owned(),
                target_id: "server".to_owned(),
                add: None,
                remove: vec![],
            },
            WireMessage::RemoteHeadsChanged {
                sender_id: "server".to_owned(),
                target_id: "client-1".to_owned(),
                document_id: DOC.to_owned(),
                new_heads,
            },
            WireMessage::Unknown {
                message_type: "future-thing".to_owned(),
                sender_id: Some("client-1".to_owned()),
                target_id: None,
            },
        ]
    }

    #[test]
    fn every_message_type_round_trips() {
        let messages = every_message_type();
        let types: std::collections::BTreeSet<&str> =
            messages.iter().map(WireMessage::message_type).collect();
        assert_eq!(types.len(), 11, "one test message per variant: {types:?}");
        for message in messages {
            let bytes = encode(&message);
            assert_eq!(decode(&bytes), Ok(message.clone()), "{message:?}");
        }
    }

    #[test]
    fn encoding_uses_the_keys_and_kinds_the_js_side_reads() {
        let sync = encode(&WireMessage::Sync {
            sender_id: "s".to_owned(),
            target_id: "t".to_owned(),
            document_id: DOC.to_owned(),
            data: vec![1, 2, 3],
        });
        let value: ciborium::Value = ciborium::from_reader(&sync[..]).unwrap();
        let entries = value.as_map().unwrap();
        let get = |k: &str| {
            entries
                .iter()
                .find(|(key, _)| key.as_text() == Some(k))
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("type"), Some(ciborium::Value::Text("sync".into())));
        assert_eq!(get("documentId"), Some(ciborium::Value::Text(DOC.into())));
        assert_eq!(get("data"), Some(ciborium::Value::Bytes(vec![1, 2, 3])));

        let peer = encode(&WireMessage::Peer {
            sender_id: "server".to_owned(),
            target_id: "c".to_owned(),
            selected_protocol_version: "1".to_owned(),
            peer_metadata: Some(PeerMetadata {
                storage_id: Some("st".to_owned()),
                is_ephemeral: false,
            }),
        });
        let value: ciborium::Value = ciborium::from_reader(&peer[..]).unwrap();
        let metadata = value
            .as_map()
            .unwrap()
            .iter()
            .find(|(k, _)| k.as_text() == Some("peerMetadata"))
            .map(|(_, v)| v.clone())
            .expect("peerMetadata key");
        assert_eq!(
            metadata,
            ciborium::Value::Map(vec![
                ("storageId".into(), "st".into()),
                ("isEphemeral".into(), false.into()),
            ])
        );
    }

    #[test]
    fn decodes_a_join_as_cbor_x_writes_it_for_a_client_without_storage() {
        // cbor-x 1.6 (`new Encoder({ tagUint8Array: false, useRecords: false })`) encoding
        // {type: "join", senderId: "peer-a", peerMetadata: {storageId: undefined,
        // isEphemeral: true}, supportedProtocolVersions: ["1"]}.
        let bytes = hex(concat!(
            "b900046474797065646a6f696e6873656e646572496466706565722d61",
            "6c706565724d65746164617461b900026973746f726167654964f76b69",
            "73457068656d6572616cf57819737570706f7274656450726f746f636f",
            "6c56657273696f6e73816131"
        ));
        assert_eq!(
            decode(&bytes),
            Ok(WireMessage::Join {
                sender_id: "peer-a".to_owned(),
                supported_protocol_versions: Some(vec!["1".to_owned()]),
                peer_metadata: Some(PeerMetadata {
                    storage_id: None,
                    is_ephemeral: true,
                }),
            })
        );
    }

    #[test]
    fn decodes_remote_heads_with_a_float_timestamp_as_cbor_x_writes_it() {
        // cbor-x writing a Date.now() value (1795573265839) as float64 inside newHeads.
        let bytes = hex(concat!(
            "b9000564747970657472656d6f74652d68656164732d6368616e676564",
            "6873656e6465724964616168746172676574496461626a646f63756d65",
            "6e7449646164686e65774865616473b90001627374b900026568656164",
            "73816268316974696d657374616d70fb427a21081b5af000"
        ));
        let Ok(WireMessage::RemoteHeadsChanged { new_heads, .. }) = decode(&bytes) else {
            panic!("not decoded as remote-heads-changed");
        };
        let entry = &new_heads["st"];
        assert_eq!(entry.heads, vec!["h1".to_owned()]);
        assert_eq!(entry.timestamp, 1_795_573_265_839);
    }

    #[test]
    fn decodes_a_subscription_change_whose_remove_is_undefined() {
        let bytes = hex(concat!(
            "b900056474797065781a72656d6f74652d737562736372697074696f6e",
            "2d6368616e67656873656e6465724964616168746172676574496461",
            "6263616464816273746672656d6f7665f7"
        ));
        assert_eq!(
            decode(&bytes),
            Ok(WireMessage::RemoteSubscriptionChange {
                sender_id: "a".to_owned(),
                target_id: "b".to_owned(),
                add: Some(vec!["st".to_owned()]),
                remove: vec![],
            })
        );
    }

    #[test]
    fn decodes_hand_built_ephemeral_with_float_count_and_binary_document_id() {
        let id_bytes: [u8; 16] =
            *uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef).as_bytes();
        let bytes = bytes_of(V::Map(vec![
            ("type", V::Text("ephemeral")),
            ("senderId", V::Text("client-1")),
            ("targetId", V::Text("server")),
            ("count", V::Float(4_294_967_296.0)),
            ("sessionId", V::Text("abc")),
            ("documentId", V::Bytes(id_bytes.to_vec())),
            ("data", V::Bytes(vec![0xf6])),
            ("someFutureField", V::Array(vec![V::Uint(1), V::Undefined])),
        ]));
        assert_eq!(&bytes[..3], &[0xb9, 0x00, 0x08]);
        assert_eq!(
            decode(&bytes),
            Ok(WireMessage::Ephemeral {
                sender_id: "client-1".to_owned(),
                target_id: "server".to_owned(),
                count: 4_294_967_296,
                session_id: "abc".to_owned(),
                document_id: DocumentId(id_bytes).to_string(),
                data: vec![0xf6],
            })
        );
    }

    #[test]
    fn reads_the_spec_metadata_key_and_defaults_is_ephemeral_to_false() {
        let bytes = bytes_of(V::Map(vec![
            ("type", V::Text("join")),
            ("senderId", V::Text("c")),
            ("supportedProtocolVersions", V::Undefined),
            (
                "metadata",
                V::Map(vec![
                    ("storageId", V::Text("st")),
                    ("laterFlag", V::Bool(true)),
                ]),
            ),
        ]));
        assert_eq!(
            decode(&bytes),
            Ok(WireMessage::Join {
                sender_id: "c".to_owned(),
                supported_protocol_versions: None,
                peer_metadata: Some(PeerMetadata {
                    storage_id: Some("st".to_owned()),
                    is_ephemeral: false,
                }),
            })
        );
    }

    #[test]
    fn refuses_malformed_fields() {
        let cases: Vec<(V, &str)> = vec![
            (
                V::Map(vec![
                    ("type", V::Text("ephemeral")),
                    ("count", V::Float(-1.0)),
                ]),
                "negative count",
            ),
            (
                V::Map(vec![
                    ("type", V::Text("ephemeral")),
                    ("count", V::Float(f64::NAN)),
                ]),
                "NaN count",
            ),
            (
                V::Map(vec![
                    ("type", V::Text("sync")),
                    ("data", V::Text("not bytes")),
                ]),
                "text data",
            ),
            (
                V::Map(vec![
                    ("type", V::Text("sync")),
                    ("documentId", V::Bytes(vec![1; 5])),
                ]),
                "5-byte document id",
            ),
            (
                V::Map(vec![("type", V::Text("sync")), ("type", V::Text("sync"))]),
                "duplicate key",
            ),
            (
                V::Array(vec![V::Text("type"), V::Text("sync")]),
                "array at top level",
            ),
            (V::Text("sync"), "text at top level"),
            (
                V::Map(vec![("type", V::Text("join")), ("senderId", V::Uint(7))]),
                "numeric sender",
            ),
            (
                V::Map(vec![
                    ("type", V::Text("join")),
                    ("senderId", V::Text("c")),
                    (
                        "peerMetadata",
                        V::Map(vec![("isEphemeral", V::Text("yes"))]),
                    ),
                ]),
                "text isEphemeral",
            ),
        ];
        for (value, what) in cases {
            let bytes = bytes_of(value);
            assert!(
                matches!(decode(&bytes), Err(ProtocolError::Invalid(_))),
                "{what}: {:?}",
                decode(&bytes)
            );
        }
    }

    #[test]
    fn names_the_missing_field() {
        let bytes = bytes_of(V::Map(vec![
            ("type", V::Text("sync")),
            ("senderId", V::Text("c")),
            ("targetId", V::Text("s")),
            ("documentId", V::Text(DOC)),
            ("data", V::Undefined),
        ]));
        assert_eq!(
            decode(&bytes),
            Err(ProtocolError::MissingField {
                message_type: "sync",
                field: "data"
            })
        );
        let bytes = bytes_of(V::Map(vec![("senderId", V::Text("c"))]));
        assert_eq!(decode(&bytes), Err(ProtocolError::MissingType));
    }

    #[test]
    fn every_truncation_of_every_message_is_an_error() {
        for message in every_message_type() {
            let bytes = encode(&message);
            for end in 0..bytes.len() {
                assert!(
                    decode(&bytes[..end]).is_err(),
                    "{} truncated to {end} bytes decoded",
                    message.message_type()
                );
            }
        }
        let bytes = encode(&every_message_type()[0]);
        assert_eq!(
            decode(&bytes[..bytes.len() - 1]),
            Err(ProtocolError::Truncated)
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_errors() {
        for garbage in [
            &b""[..],
            &[0xff],
            &[0x1f],
            &[0xb9, 0xff, 0xff],
            &[0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff],
            &[0xfc],
            b"{\"type\":\"sync\"}",
        ] {
            assert!(decode(garbage).is_err(), "{garbage:?}");
        }
        let mut bytes = encode(&every_message_type()[6]);
        bytes.push(0x00);
        assert!(matches!(decode(&bytes), Err(ProtocolError::Invalid(_))));
    }

    #[test]
    fn refuses_input_over_the_limit_before_parsing() {
        let message = WireMessage::Sync {
            sender_id: "c".to_owned(),
            target_id: "s".to_owned(),
            document_id: DOC.to_owned(),
            data: vec![7; 2048],
        };
        let bytes = encode(&message);
        assert_eq!(decode_bounded(&bytes, bytes.len()), Ok(message));
        assert_eq!(
            decode_bounded(&bytes, 2048),
            Err(ProtocolError::TooLarge {
                len: bytes.len(),
                max: 2048
            })
        );
        // Garbage over the limit is refused as too large: it was never looked at.
        let big = vec![0xff; DEFAULT_MAX_MESSAGE_BYTES + 1];
        assert!(matches!(decode(&big), Err(ProtocolError::TooLarge { .. })));
    }

    #[test]
    fn refuses_absurd_nesting_and_overlong_lists() {
        // {"type": "leave", "x": [[[[ … 100,000 levels … 0 ]]]]}
        let mut bytes = vec![0xa2, 0x64];
        bytes.extend_from_slice(b"type");
        bytes.push(0x65);
        bytes.extend_from_slice(b"leave");
        bytes.extend_from_slice(&[0x61, b'x']);
        bytes.extend(std::iter::repeat_n(0x81, 100_000));
        bytes.push(0x00);
        assert_eq!(decode(&bytes), Err(ProtocolError::TooDeep));

        let versions: Vec<V> = (0..=MAX_LIST_ITEMS).map(|_| V::Text("1")).collect();
        let bytes = bytes_of(V::Map(vec![
            ("type", V::Text("join")),
            ("senderId", V::Text("c")),
            ("supportedProtocolVersions", V::Array(versions)),
        ]));
        assert!(matches!(decode(&bytes), Err(ProtocolError::Invalid(_))));
    }

    #[test]
    fn a_long_ignored_field_is_skipped_without_error() {
        let items: Vec<V> = (0..10_000).map(V::Uint).collect();
        let bytes = bytes_of(V::Map(vec![
            ("type", V::Text("leave")),
            ("senderId", V::Text("c")),
            ("extra", V::Array(items)),
        ]));
        assert_eq!(
            decode(&bytes),
            Ok(WireMessage::Leave {
                sender_id: "c".to_owned()
            })
        );
    }

    #[test]
    fn numbers_past_32_bits_are_written_as_cbor_x_writes_them() {
        let heads = |timestamp| WireMessage::RemoteHeadsChanged {
            sender_id: "s".to_owned(),
            target_id: "t".to_owned(),
            document_id: DOC.to_owned(),
            new_heads: BTreeMap::from([(
                "st".to_owned(),
                RemoteHeads {
                    heads: vec![],
                    timestamp,
                },
            )]),
        };
        // Date.now()-sized: float64, as in the cbor-x fixture above.
        let bytes = encode(&heads(1_795_573_265_839));
        assert!(bytes.ends_with(&hex("fb427a21081b5af000")), "{bytes:02x?}");
        assert_eq!(decode(&bytes), Ok(heads(1_795_573_265_839)));
        // Small: a plain integer.
        assert!(encode(&heads(70_000)).ends_with(&[0x1a, 0x00, 0x01, 0x11, 0x70]));
        // Past 2^53 a float would lose precision: a 64-bit integer.
        let huge = u64::MAX - 1;
        assert_eq!(decode(&encode(&heads(huge))), Ok(heads(huge)));
    }

    #[test]
    fn protocol_version_one_is_selected_when_missing_or_listed() {
        assert_eq!(select_protocol_version(None), Some("1"));
        assert_eq!(
            select_protocol_version(Some(&["2".to_owned(), "1".to_owned()])),
            Some("1")
        );
        assert_eq!(select_protocol_version(Some(&["2".to_owned()])), None);
        assert_eq!(select_protocol_version(Some(&[])), None);
    }

    #[test]
    fn accessors_report_addressing() {
        let sync = &every_message_type()[8];
        assert_eq!(sync.sender_id(), Some("server"));
        assert_eq!(sync.document_id(), Some(DOC));
        let join = &every_message_type()[0];
        assert_eq!(join.document_id(), None);
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decode_never_panics_on_mutated_messages(
            index in 0usize..15,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut bytes = encode(&every_message_type()[index]);
            for (at, value) in flips {
                let at = at.index(bytes.len());
                bytes[at] = value;
            }
            let _ = decode(&bytes);
        }
    }
}
