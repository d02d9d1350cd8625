//! Encoding: messages as the JS adapter decodes them, with a minimal CBOR writer.

use super::*;

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
pub(super) struct CborWriter {
    pub(super) out: Vec<u8>,
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

    pub(super) fn len(&mut self, major: u8, len: usize) {
        // usize is at most 64 bits on every supported target.
        self.head(major, len as u64);
    }

    pub(super) fn uint(&mut self, value: u64) {
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
