//! The push notifications a commit queues (docs/push.md): sync-core says who is told what about
//! a merge; the actor keeps those for partners who are not watching (no sync connection to the
//! document and no `/api/events` stream on it, on any node) and the commit writes them to the outbox
//! in its own transaction.

use super::*;
use crate::notify::push_outbox::outbox_rows;
use crate::store::NewNotification;

impl DocActor {
    /// The outbox rows of a merge by `author` whose `changes` are applied to the document;
    /// none while push notifications are off.
    pub(super) fn notifications_for(
        &self,
        changes: &[Change],
        author: UserId,
    ) -> Vec<NewNotification> {
        let Some(push) = self.registry.push() else {
            return Vec::new();
        };
        // Only the author's partner is ever told: while every other member watches (the common
        // case, both apps open), the merge's notifications are not worked out at all.
        let anyone_away = splitsave_sync_core::read::read_members(&self.doc)
            .map(|members| {
                members
                    .iter()
                    .any(|m| m.user_id != author && !self.watching(m.user_id))
            })
            .unwrap_or(true);
        if !anyone_away {
            return Vec::new();
        }
        let told: Vec<_> =
            splitsave_sync_core::notifications::from_merge(&self.doc, changes, author)
                .into_iter()
                .filter(|n| !self.watching(n.recipient))
                .collect();
        outbox_rows(Some(self.pid.0), &told, push.give_up_after)
    }

    /// Whether `user` sees the document change live: a sync connection to it or an
    /// `/api/events` stream on it, here or on another node.
    fn watching(&self, user: UserId) -> bool {
        self.online_here(user)
            || self.online_elsewhere(user)
            || self.registry.watching(self.pid, user)
            || self.registry.watching_elsewhere(self.pid, user)
    }
}
