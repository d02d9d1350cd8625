//! Documents stored before the string fields had declared types ([`splitsave_sync_core::fields`])
//! hold names the server wrote as scalar strings, and ids or enums that JS clients wrote as Text.
//! Readers accept both, but a JS app must meet one type per field, so the first actor to open
//! such a document rewrites every misshapen field (same value, declared type) in one change of
//! its own, committed before any peer is served. Opening a document already in shape costs one
//! lookup per string field and writes nothing; a commit that loses to another node is left to
//! that node or to the next open.

use automerge::AutomergeError;
use splitsave_sync_core::strings;

use super::*;

impl DocActor {
    /// Normalizes the string types of the whole document, if any is off (see the module doc).
    pub(super) async fn normalize_string_types(&mut self) {
        if !strings::predates_declared_types(&self.doc) {
            return;
        }
        let holders = strings::misshapen_document(&self.doc);
        if holders.is_empty() {
            return;
        }
        let now = Millis::now();
        let heads = self.doc.get_heads();
        let written = self.doc.transact_with::<_, _, AutomergeError, _>(
            |_| {
                CommitOptions::default()
                    .with_message("splitsave: string fields in their declared types")
                    .with_time(now.0 / 1000)
            },
            |tx| holders.iter().try_for_each(|h| strings::normalize(tx, h)),
        );
        if let Err(failure) = written {
            tracing::error!(error = %failure.error, partnership = %self.pid, "normalizing string types failed");
            let _ = self.reload().await;
            return;
        }
        let changes: Vec<NewChange> = self
            .doc
            .get_changes(&heads)
            .iter()
            .map(|c| stored_change(c, None))
            .collect();
        if changes.is_empty() {
            return;
        }
        match self
            .persist(
                changes,
                Vec::new(),
                Vec::new(),
                Vec::new(),
                Vec::new(),
                None,
            )
            .await
        {
            Ok(()) => tracing::info!(
                partnership = %self.pid,
                entities = holders.len(),
                "string fields rewritten in their declared types"
            ),
            // `persist` has reloaded the stored truth; the next open tries again.
            Err(err) => tracing::warn!(
                error = %err,
                partnership = %self.pid,
                "normalizing string types not committed"
            ),
        }
    }
}
