//! The history entries of a commit: sync-core words what each new change did to each entity
//! ([`splitsave_sync_core::history`]); the actor knows who made it (the merging user for a
//! client's changes, whose authorship it has just checked; the user named in a REST write's
//! message; nobody for the server's own changes) and hands the entries to the commit.

use super::*;
use crate::store::NewHistoryEntry;
use splitsave_sync_core::history::{self, Author};

impl DocActor {
    /// The entries of `changes` (all in `self.doc`), a client's changes being `user`'s.
    pub(super) fn history_for(
        &self,
        changes: &[Change],
        user: Option<UserId>,
    ) -> Vec<NewHistoryEntry> {
        let currency = history::currency_of(&self.doc);
        let mut out = Vec::new();
        for change in changes {
            // The document's first change makes the partnership: it is where history starts,
            // not an entry of it.
            if change.deps().is_empty() {
                continue;
            }
            for entry in history::entries_of_change(&self.doc, change, currency) {
                let author = match &entry.author {
                    Author::Server => None,
                    Author::User(u) => Some(u.0),
                    Author::Device(_) => user.map(|u| u.0),
                };
                out.push(NewHistoryEntry::from_entry(&entry, author));
            }
        }
        out
    }
}
