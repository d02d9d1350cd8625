//! Compaction inside the document actor: once enough changes are stored beyond the latest
//! snapshot, a new snapshot replaces them in one transaction, in the background.

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
        let bytes = self.doc.save();
        let heads: Vec<String> = self.doc.get_heads().iter().map(|h| h.to_string()).collect();
        let change_count = i64::try_from(self.doc.stats().num_changes).unwrap_or(i64::MAX);
        let covered = std::mem::take(&mut self.uncompacted);
        let store = self.store.clone();
        let pid = self.pid;
        self.compaction = Some(tokio::spawn(async move {
            let snapshot = NewSnapshot {
                bytes,
                heads,
                change_count,
            };
            match store.compact(pid.0, snapshot, &covered, Utc::now()).await {
                Ok(()) => tracing::info!(partnership = %pid, changes = covered.len(), "compacted"),
                Err(err) => tracing::warn!(error = %err, partnership = %pid, "compaction failed"),
            }
        }));
    }

    /// Waits for the background compaction, if one is running.
    pub(super) async fn finish_compaction(&mut self) {
        if let Some(running) = self.compaction.take() {
            let _ = running.await;
        }
    }
}
