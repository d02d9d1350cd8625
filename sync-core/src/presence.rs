//! Presence: the `ephemeral` payload that tells a partner when the other comes online or goes
//! offline, with the last-seen time. The server writes it and apps (the SDK, stock automerge-repo
//! clients) read it, so its encoding lives here, beside the wire protocol.
//!
//! A CBOR map (the automerge-repo `ephemeral` payload is opaque CBOR):
//! `{"type": "partner:online" | "partner:offline", "user_id": "<uuid>", "last_seen": "<RFC 3339>"}`.

use ciborium::value::Value;

use crate::ids::UserId;

/// `type` of a presence payload announcing a partner online.
pub const ONLINE: &str = "partner:online";
/// `type` of a presence payload announcing a partner offline.
pub const OFFLINE: &str = "partner:offline";

/// A decoded presence payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// [`ONLINE`] or [`OFFLINE`].
    pub kind: String,
    /// Whose presence.
    pub user_id: String,
    /// When last seen (RFC 3339).
    pub last_seen: String,
}

/// The payload announcing `user` online or offline, last seen at `last_seen` (RFC 3339).
pub fn encode(user: UserId, online: bool, last_seen: &str) -> Vec<u8> {
    let kind = if online { ONLINE } else { OFFLINE };
    let value = Value::Map(vec![
        (Value::Text("type".into()), Value::Text(kind.into())),
        (Value::Text("user_id".into()), Value::Text(user.to_string())),
        (
            Value::Text("last_seen".into()),
            Value::Text(last_seen.into()),
        ),
    ]);
    let mut out = Vec::new();
    // Writing a small in-memory map into a Vec cannot fail.
    if ciborium::into_writer(&value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// Decodes a presence payload; anything else (another app's ephemeral data) is `None`.
pub fn decode(bytes: &[u8]) -> Option<Presence> {
    let value: Value = ciborium::from_reader(bytes).ok()?;
    let map = value.into_map().ok()?;
    let get = |k: &str| {
        map.iter()
            .find(|(key, _)| key.as_text() == Some(k))
            .and_then(|(_, v)| v.as_text().map(str::to_string))
    };
    Some(Presence {
        kind: get("type")?,
        user_id: get("user_id")?,
        last_seen: get("last_seen")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_round_trips_and_other_payloads_are_none() {
        let user = UserId::new_v7();
        let p = decode(&encode(user, false, "2026-11-25T10:00:00.000Z")).expect("decodes");
        assert_eq!(p.kind, OFFLINE);
        assert_eq!(p.user_id, user.to_string());
        assert_eq!(p.last_seen, "2026-11-25T10:00:00.000Z");
        assert_eq!(decode(&[0xff, 0x00]), None);
        let mut other = Vec::new();
        ciborium::into_writer(&Value::Text("cursor".into()), &mut other).expect("encode");
        assert_eq!(decode(&other), None);
    }
}
