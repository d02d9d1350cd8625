//! Compaction inside the document actor: once enough changes are stored beyond the latest
//! snapshot, a new snapshot replaces them in one transaction, in the background.
//!
//! With several nodes, each node's actor of a document may decide to compact; the store
//! serializes them and never lets a snapshot replace one of a later document version, and
//! an actor deletes only changes its own snapshot holds. A change another node committed meanwhile
//! is not among them, so it stays stored until a snapshot holding it replaces it.

use super::*;

impl DocActor {
    /// Compacts when more than `threshold` changes are stored beyond the latest snapshot:
    /// saves a snapshot and deletes the changes it covers, in one transaction, in the
    /// background (the snapshot bytes are taken here, from the actor's current document).
    pub(super) async fn compact_if_due(&mut self, threshold: usize) {
        if self.uncompacted.is_empty() || self.uncompacted.len() < threshold.max(1) {
            return;
        }
        if self.compaction.as_ref().is_some_and(|c| !c.is_finished()) {
            return;
        }
        self.take_finished_compaction().await;
        let bytes = self.doc.save();
        let heads: Vec<String> = self.doc.get_heads().iter().map(|h| h.to_string()).collect();
        let change_count = i64::try_from(self.doc.stats().num_changes).unwrap_or(i64::MAX);
        let covered = std::mem::take(&mut self.uncompacted);
        let store = self.store.clone();
        let pid = self.pid;
        let version = self.stored.version;
        self.compaction = Some(tokio::spawn(async move {
            let snapshot = NewSnapshot {
                bytes,
                heads,
                change_count,
                version,
            };
            match store.compact(pid.0, snapshot, &covered, Utc::now()).await {
                Ok(Some(id)) => {
                    tracing::info!(partnership = %pid, changes = covered.len(), "compacted");
                    Some(id)
                }
                Ok(None) => {
                    tracing::debug!(partnership = %pid, "a newer snapshot is stored: not compacted");
                    None
                }
                Err(err) => {
                    tracing::warn!(error = %err, partnership = %pid, "compaction failed");
                    None
                }
            }
        }));
    }

    /// Waits for the background compaction, if one is running, and takes note of its snapshot.
    pub(super) async fn finish_compaction(&mut self) {
        if let Some(running) = self.compaction.take() {
            self.note_snapshot(running.await.ok().flatten());
        }
    }

    /// Takes note of the background compaction's snapshot if it has finished.
    pub(super) async fn take_finished_compaction(&mut self) {
        if self.compaction.as_ref().is_some_and(|c| c.is_finished()) {
            self.finish_compaction().await;
        }
    }

    /// The actor's own compaction stored a snapshot: catching up goes on from it (the changes
    /// it deleted were all in the document already).
    fn note_snapshot(&mut self, id: Option<i64>) {
        if let Some(id) = id {
            self.stored.snapshot_id = id;
        }
    }
}
