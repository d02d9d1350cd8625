//! Decoding: every field a message may carry is read leniently (cbor-x's non-minimal lengths,
//! `undefined`, whole numbers as floats), then checked against what the message's type requires.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::*;

/// Every field any message may carry, each absent until seen; [`RawMessage::into_message`] then
/// checks what the message's type requires.
#[derive(Default)]
pub(super) struct RawMessage {
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
    pub(super) fn into_message(self) -> Result<WireMessage, ProtocolError> {
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
