//! The change feed: what an app's UI reacts to.
//!
//! Events come from what the server sends: the partner's changes and the server's own
//! (compensations, approvals applied, the month written) as typed [`Event`]s computed by
//! sync-core from the merged changes — the same events `GET /api/events` streams — plus the
//! partner's presence and the client's own sync status. Local edits produce no event: the app
//! already knows what it just did, and reads show it at once.

use chrono::{DateTime, Utc};
use splitsave_sync_core::events::Event;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Where the client stands with the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    /// Not connected: never started, stopped, waiting to reconnect, or signed out.
    Offline,
    /// Opening the connection (token refresh, WebSocket, handshake).
    Connecting,
    /// Connected, and either side may still hold changes the other lacks.
    Syncing,
    /// Connected, and the server holds every local change and we hold every change it
    /// announced.
    Synced,
}

/// The sync status with the facts an app shows next to it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyncState {
    /// Where the client stands.
    pub status: SyncStatus,
    /// The last time the client and the server held the same document (kept in the local
    /// store, so an app started offline can show "last synced …").
    pub last_synced_at: Option<DateTime<Utc>>,
    /// Why the last connection attempt or connection failed, until the next success.
    pub last_error: Option<String>,
}

/// One thing an app may want to show.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientEvent {
    /// The partner or the server changed an entity (an expense added, an approval requested or
    /// answered, a message, goal progress, ...). The event holds the entity as it is now.
    Changed(Event),
    /// The partner connected.
    PartnerOnline {
        /// The partner.
        user_id: Uuid,
        /// When the server saw them.
        last_seen: DateTime<Utc>,
    },
    /// The partner's last connection closed.
    PartnerOffline {
        /// The partner.
        user_id: Uuid,
        /// When they were last seen.
        last_seen: DateTime<Utc>,
    },
    /// The sync status changed.
    Status(SyncState),
    /// The server ended the session (refresh token revoked or reused). Local data is kept;
    /// sign in again to resume syncing.
    SignedOut {
        /// The server's reason.
        reason: String,
    },
}

/// A subscription to the change feed. Every subscriber sees every event sent after it
/// subscribed; one that falls more than the feed's capacity behind skips the oldest events (a
/// UI that lags re-reads the document anyway) and is told how many through
/// [`Events::skipped`].
pub struct Events {
    rx: broadcast::Receiver<ClientEvent>,
    skipped: u64,
}

impl Events {
    pub(crate) fn new(rx: broadcast::Receiver<ClientEvent>) -> Self {
        Self { rx, skipped: 0 }
    }

    /// The next event; `None` once the client is dropped.
    pub async fn next(&mut self) -> Option<ClientEvent> {
        loop {
            match self.rx.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(n)) => self.skipped += n,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// How many events this subscriber missed by lagging.
    pub fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// The change-feed event of the server's presence payload (an `ephemeral` message decoded by
/// sync-core); anything else is not presence and is ignored.
pub(crate) fn presence(bytes: &[u8]) -> Option<ClientEvent> {
    let p = splitsave_sync_core::presence::decode(bytes)?;
    let user_id = p.user_id.parse().ok()?;
    let last_seen = DateTime::parse_from_rfc3339(&p.last_seen)
        .ok()?
        .with_timezone(&Utc);
    match p.kind.as_str() {
        splitsave_sync_core::presence::ONLINE => {
            Some(ClientEvent::PartnerOnline { user_id, last_seen })
        }
        splitsave_sync_core::presence::OFFLINE => {
            Some(ClientEvent::PartnerOffline { user_id, last_seen })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ciborium::value::Value;

    fn encode(kind: &str, user: &str, at: &str) -> Vec<u8> {
        let value = Value::Map(vec![
            (Value::Text("type".into()), Value::Text(kind.into())),
            (Value::Text("user_id".into()), Value::Text(user.into())),
            (Value::Text("last_seen".into()), Value::Text(at.into())),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&value, &mut out).expect("encode");
        out
    }

    #[test]
    fn presence_payloads_decode_and_others_are_ignored() {
        let user = Uuid::new_v4();
        let online = presence(&encode(
            "partner:online",
            &user.to_string(),
            "2026-11-25T10:00:00.000Z",
        ));
        assert_eq!(
            online,
            Some(ClientEvent::PartnerOnline {
                user_id: user,
                last_seen: "2026-11-25T10:00:00Z".parse().expect("time"),
            })
        );
        let offline = presence(&encode(
            "partner:offline",
            &user.to_string(),
            "2026-11-25T10:05:00.000Z",
        ));
        assert!(matches!(offline, Some(ClientEvent::PartnerOffline { .. })));
        assert_eq!(
            presence(&encode("cursor", &user.to_string(), "2026-11-25T10:00:00Z")),
            None
        );
        assert_eq!(presence(&encode("partner:online", "nope", "x")), None);
        assert_eq!(presence(&[0xff, 0x00]), None);
    }
}
