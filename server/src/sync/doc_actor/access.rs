//! Who may still write, inside the document actor: the partnership's status as its document holds
//! it (paused means read-only for every peer, from the next message on), and connections whose
//! access was revoked.

use super::*;

impl DocActor {
    /// Whether the partnership is paused, as its document says (the server writes the status
    /// into the document through this actor before a pause is answered, so the next message
    /// after it sees it).
    pub(super) fn paused(&self) -> bool {
        matches!(
            splitsave_sync_core::read::read_partnership(&self.doc),
            Ok(p) if p.status == splitsave_sync_core::enums::PartnershipStatus::Paused
        )
    }

    /// Makes every peer read-only while the partnership is paused, and read-write again once it
    /// is resumed. A peer switched to read-only is told so (its changes wait on its side); one
    /// switched back is asked to send again what it held back (automerge's sync reset).
    pub(super) fn follow_status(&mut self) {
        let paused = self.paused();
        for p in self.peers.values_mut() {
            if p.read_only != paused {
                p.read_only = paused;
                p.state.set_read_only(paused);
                p.answered_at = None;
            }
        }
    }

    /// Ends access for `user`'s connections (every connection when `None`): they are detached
    /// (their outbound stream ends, so they close) and any message they still send is refused,
    /// never applied. Called when a partnership ends, an account is deleted or a password
    /// changes, before the request that caused it is answered.
    pub(super) async fn revoke(&mut self, user: Option<UserId>) {
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| user.is_none_or(|u| p.user == u))
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            self.revoked.insert(c);
            self.send(c, Outbound::End("access to this document ended: reconnect"));
            // Detaching drops the sender, which ends the connection's outbound stream (it
            // closes), and tells the partner the user went offline.
            self.detach(c).await;
        }
    }
}
