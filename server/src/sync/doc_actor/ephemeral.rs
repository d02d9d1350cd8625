//! Presence inside the document actor: a partner's first connection and last disconnection are
//! announced to the other partner's connections, and ephemeral messages are relayed.

use super::*;

impl DocActor {
    /// Sends `partner:online`/`partner:offline` about `user` to the partner's connections, and
    /// keeps `users.last_seen` current. The write runs beside the actor: it is a durable commit,
    /// and waiting for it held up the new connection's first sync message (and every other
    /// message of the document) by a WAL flush; the stored time only ever moves forward, so
    /// writes finishing out of order keep the latest.
    pub(super) async fn announce_presence(&mut self, user: UserId, online: bool) {
        let now = Utc::now();
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.touch_last_seen(user.0, now).await {
                tracing::warn!(error = %err, "cannot record last seen");
            }
        });
        if let Some(events) = self.registry.publisher(self.pid) {
            let _ = events.send(Arc::new(DocEvent::Presence {
                user,
                online,
                at: now,
            }));
        }
        let data = crate::sync::presence::encode(user, online, now);
        let targets: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.user != user)
            .map(|(c, _)| *c)
            .collect();
        for c in targets {
            self.send(
                c,
                Outbound::Ephemeral {
                    sender: crate::sync::SERVER_PEER_ID.to_string(),
                    data: data.clone(),
                },
            );
        }
    }

    pub(super) fn send_partner_presence_to(&mut self, conn: ConnId, user: UserId) {
        let online_partners: HashSet<UserId> = self
            .peers
            .values()
            .filter(|p| p.user != user)
            .map(|p| p.user)
            .collect();
        for partner in online_partners {
            let data = crate::sync::presence::encode(partner, true, Utc::now());
            self.send(
                conn,
                Outbound::Ephemeral {
                    sender: crate::sync::SERVER_PEER_ID.to_string(),
                    data,
                },
            );
        }
    }

    pub(super) fn forward_ephemeral(&mut self, from: ConnId, data: Vec<u8>) {
        let Some(sender) = self.peers.get(&from).map(|p| p.peer_id.clone()) else {
            return;
        };
        let targets: Vec<ConnId> = self.peers.keys().copied().filter(|c| *c != from).collect();
        for c in targets {
            self.send(
                c,
                Outbound::Ephemeral {
                    sender: sender.clone(),
                    data: data.clone(),
                },
            );
        }
    }
}
