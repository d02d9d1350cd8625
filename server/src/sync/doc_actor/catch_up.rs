//! Catching up with the other nodes: when another node commits a merge of a document this node
//! holds live (announced over Redis, or seen by polling the stored version), the actor applies
//! what was committed (no enforcement: the committing node enforced it from a state that
//! included everything before it), and then does what a local merge does after its commit:
//! connections get their sync messages, `/api/events` subscribers the typed events, and the
//! split read from the registry is dropped.
//!
//! What was committed comes from the notices when they carried the changes and follow on from
//! the live copy's version without a gap (each is exactly what PostgreSQL committed as that
//! version, so applying them in order gives the stored document version by version); otherwise
//! the actor reads what was committed after the last change it has read.

use super::*;
use crate::store::DocumentTail;
use limits::deps_satisfied;

impl DocActor {
    /// Catches up first when another node announced a version this document does not have yet
    /// (its notice may still wait in the mailbox behind this command): a merge made on the
    /// latest state commits at the first try instead of reloading after a stale commit.
    pub(super) async fn catch_up_if_announced(&mut self) {
        let announced = self.registry.announced(self.pid);
        if announced > self.stored.version {
            if let Err(err) = self.catch_up(announced).await {
                tracing::warn!(error = %err, partnership = %self.pid, "catching up failed");
            }
        }
    }

    /// In a cluster, catches up with the stored version first. A REST operation answers from
    /// the state it runs on (a refusal such as "goal not active" included), so it must run on
    /// a state no older than the request: a write acknowledged by another node just before (its
    /// notice may not have arrived yet) is seen. One indexed read per batch of operations.
    pub(super) async fn catch_up_with_storage(&mut self) {
        if !self.registry.clustered() {
            return;
        }
        match self.store.document_version(self.pid.0).await {
            Ok(version) if version > self.stored.version => {
                if let Err(err) = self.catch_up(version).await {
                    tracing::warn!(error = %err, partnership = %self.pid, "catching up failed");
                }
            }
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, partnership = %self.pid, "cannot read the document version")
            }
        }
    }

    /// Brings the live document up to at least version `want` (to the latest committed one
    /// when the announced changes do not reach `want`).
    pub(super) async fn catch_up(&mut self, want: i64) -> Result<(), SyncError> {
        self.take_finished_compaction().await;
        self.apply_announced();
        if self.stored.version >= want {
            self.fan_out();
            return Ok(());
        }
        let tail = self
            .store
            .document_tail(self.pid.0, self.stored.snapshot_id, self.stored.last_change)
            .await?;
        match tail {
            DocumentTail::Changes { version, changes } => {
                self.apply_committed(version, changes);
            }
            DocumentTail::Compacted => {
                // Another node's snapshot replaced the one this document was loaded from: load
                // it all again. What it adds to the live document is what to announce.
                let loaded = load(&*self.store, self.pid, &self.actor).await?;
                let added = enforce::new_changes(&self.doc, &loaded.doc);
                self.adopt(loaded);
                // The new document holds everything the old one did, so every peer's sync
                // state still holds: no exchange starts afresh.
                self.publish(&added, None);
            }
        }
        self.fan_out();
        Ok(())
    }

    /// Applies the changes other nodes' notices carried for the versions right after the live
    /// copy's, in order; stops at the first that does not apply cleanly (the stored changes
    /// then bring the document up to date).
    fn apply_announced(&mut self) {
        for (version, committed) in self.registry.take_announced(self.pid, self.stored.version) {
            let parsed: Option<Vec<(Change, Option<Uuid>)>> = committed
                .0
                .iter()
                .map(|(user, bytes)| Change::from_bytes(bytes.clone()).ok().map(|c| (c, *user)))
                .collect();
            let Some(parsed) = parsed else {
                tracing::warn!(partnership = %self.pid, version, "announced changes unreadable");
                return;
            };
            let new: Vec<(Change, Option<Uuid>)> = parsed
                .into_iter()
                .filter(|(c, _)| self.doc.get_change_meta_by_hash(&c.hash()).is_none())
                .collect();
            let changes: Vec<Change> = new.iter().map(|(c, _)| c.clone()).collect();
            // The commit was made on the version this copy is at, so its changes depend on
            // nothing this copy lacks; if they did, something is off: read the stored ones.
            if !deps_satisfied(&self.doc, &changes) || !self.apply_new(version, new) {
                return;
            }
        }
    }

    /// Applies changes other nodes committed (those the document lacks), up to `version`.
    fn apply_committed(&mut self, version: i64, changes: Vec<crate::store::StoredChange>) {
        let Some(last) = changes.last().map(|c| c.id) else {
            self.stored.version = self.stored.version.max(version);
            return;
        };
        let parsed = match parse_stored(self.pid, changes) {
            Ok(parsed) => parsed,
            Err(_) => return,
        };
        let new: Vec<(Change, Option<Uuid>)> = parsed
            .into_iter()
            .filter(|(c, _)| self.doc.get_change_meta_by_hash(&c.hash()).is_none())
            .collect();
        if self.apply_new(version, new) {
            self.stored.last_change = last;
        }
    }

    /// Applies committed changes the document lacks, which bring it to `version`, and tells
    /// subscribers; false (nothing changed) when automerge refuses them.
    fn apply_new(&mut self, version: i64, new: Vec<(Change, Option<Uuid>)>) -> bool {
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.doc.apply_changes(new.iter().map(|(c, _)| c.clone()))
        }));
        if !matches!(applied, Ok(Ok(()))) {
            tracing::error!(partnership = %self.pid, "changes committed by another node did not apply");
            return false;
        }
        self.stored.version = self.stored.version.max(version);
        self.uncompacted
            .extend(new.iter().map(|(c, _)| c.hash().to_string()));
        self.drop_stale_split();
        self.follow_status();
        // One event batch per author, in commit order; the server's own changes (compensations)
        // go with the author whose merge they belong to.
        let mut by: Option<Uuid> = None;
        let mut group: Vec<Change> = Vec::new();
        for (change, user) in new {
            if user.is_some() && user != by && !group.is_empty() {
                self.publish_by(&std::mem::take(&mut group), by);
            }
            if user.is_some() {
                by = user;
            }
            group.push(change);
        }
        if !group.is_empty() {
            self.publish_by(&group, by);
        }
        true
    }

    /// Publishes the events of caught-up changes as made by `by` (when known).
    fn publish_by(&self, changes: &[Change], by: Option<Uuid>) {
        self.publish(changes, by.map(UserId));
    }
}
