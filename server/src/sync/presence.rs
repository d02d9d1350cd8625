//! Presence: the ephemeral messages that tell a partner when the other comes online or goes
//! offline, with the last-seen time. Encoded as CBOR maps (the automerge-repo `ephemeral`
//! payload is opaque CBOR):
//! `{"type": "partner:online" | "partner:offline", "user_id": "<uuid>", "last_seen": "<RFC 3339>"}`.

use chrono::{DateTime, SecondsFormat, Utc};
use ciborium::value::Value;
use splitsave_sync_core::ids::UserId;

/// The payload announcing `user` online or offline at `at`.
pub fn encode(user: UserId, online: bool, at: DateTime<Utc>) -> Vec<u8> {
    let kind = if online {
        "partner:online"
    } else {
        "partner:offline"
    };
    let value = Value::Map(vec![
        (Value::Text("type".into()), Value::Text(kind.into())),
        (Value::Text("user_id".into()), Value::Text(user.to_string())),
        (
            Value::Text("last_seen".into()),
            Value::Text(at.to_rfc3339_opts(SecondsFormat::Millis, true)),
        ),
    ]);
    let mut out = Vec::new();
    // Writing a small in-memory map into a Vec cannot fail.
    if ciborium::into_writer(&value, &mut out).is_err() {
        out.clear();
    }
    out
}

/// A decoded presence payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    /// `partner:online` or `partner:offline`.
    pub kind: String,
    /// Whose presence.
    pub user_id: String,
    /// When last seen (RFC 3339).
    pub last_seen: String,
}

/// Decodes a presence payload (tests and the SDK read them).
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
    fn presence_round_trips() {
        let user = UserId::new_v7();
        let p = decode(&encode(user, false, Utc::now())).unwrap();
        assert_eq!(p.kind, "partner:offline");
        assert_eq!(p.user_id, user.to_string());
        assert!(DateTime::parse_from_rfc3339(&p.last_seen).is_ok());
    }
}
