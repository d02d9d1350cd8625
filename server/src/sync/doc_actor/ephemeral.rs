//! Presence inside the document actor: a partner's first connection and last disconnection are
//! announced to the other partner's connections, and ephemeral messages are relayed.
//!
//! With several nodes, a partner may be connected through another node: nodes tell each other
//! (over Redis) when a user's first connection opens or last one closes, and repeat it while
//! connected, so a node that dies stops counting after the presence TTL. Without Redis, each
//! node knows only its own connections.

use super::*;

impl DocActor {
    /// A user's first connection to the document on this node opened (`online`) or the last
    /// one closed: keeps `users.last_seen` current, tells the other nodes, and tells this
    /// node's connections and subscribers unless the user is connected through another node
    /// too (then nothing changed for the partner).
    ///
    /// The `last_seen` write runs beside the actor: it is a durable commit, and waiting for it
    /// held up the new connection's first sync message (and every other message of the
    /// document) by a WAL flush; the stored time only ever moves forward, so writes finishing
    /// out of order keep the latest.
    pub(super) async fn announce_presence(&mut self, user: UserId, online: bool) {
        let now = Utc::now();
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.touch_last_seen(user.0, now).await {
                tracing::warn!(error = %err, "cannot record last seen");
            }
        });
        self.registry.announce_presence(self.pid, user, online);
        if !self.online_elsewhere(user) {
            self.tell_presence(user, online);
        }
    }

    /// Sends `partner:online`/`partner:offline` about `user` to the partner's connections on
    /// this node and to the document's event subscribers here.
    fn tell_presence(&mut self, user: UserId, online: bool) {
        let now = Utc::now();
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

    /// Whether `user` is connected to this document on this node.
    pub(super) fn online_here(&self, user: UserId) -> bool {
        self.peers.values().any(|p| p.user == user)
    }

    /// Whether another node said lately that `user` is connected there.
    pub(super) fn online_elsewhere(&self, user: UserId) -> bool {
        self.remote_presence
            .get(&user)
            .is_some_and(|n| !n.is_empty())
    }

    /// Another node says `user` is connected to the document there (`online`), or no longer is.
    pub(super) fn remote_presence(&mut self, user: UserId, node: String, online: bool) {
        let before = self.online_here(user) || self.online_elsewhere(user);
        let nodes = self.remote_presence.entry(user).or_default();
        if online {
            nodes.insert(node, tokio::time::Instant::now());
        } else {
            nodes.remove(&node);
        }
        let after = self.online_here(user) || self.online_elsewhere(user);
        if before != after {
            self.tell_presence(user, after);
        }
    }

    /// Repeats this node's presence to the others, and forgets what other nodes said about a
    /// user longer ago than the presence TTL (the node died or lost Redis): such users go
    /// offline here.
    pub(super) fn presence_heartbeat(&mut self) {
        let here: HashSet<UserId> = self.peers.values().map(|p| p.user).collect();
        for user in &here {
            self.registry.announce_presence(self.pid, *user, true);
        }
        let ttl = self.registry.presence_ttl();
        let mut gone = Vec::new();
        for (user, nodes) in &mut self.remote_presence {
            let had = !nodes.is_empty();
            nodes.retain(|_, heard| heard.elapsed() < ttl);
            if had && nodes.is_empty() && !here.contains(user) {
                gone.push(*user);
            }
        }
        self.remote_presence.retain(|_, nodes| !nodes.is_empty());
        for user in gone {
            self.tell_presence(user, false);
        }
    }

    pub(super) fn send_partner_presence_to(&mut self, conn: ConnId, user: UserId) {
        let mut online_partners: HashSet<UserId> = self
            .peers
            .values()
            .filter(|p| p.user != user)
            .map(|p| p.user)
            .collect();
        online_partners.extend(
            self.remote_presence
                .iter()
                .filter(|(u, nodes)| **u != user && !nodes.is_empty())
                .map(|(u, _)| *u),
        );
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
