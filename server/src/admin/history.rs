//! `splitsave rebuild-history`: each partnership's history index written again from its
//! document, for a database whose entries predate the index (or were lost): every change is
//! worded by sync-core as a commit words it, its author resolved through the actor bindings and
//! its receive time taken from the stored change (or, for a change compaction folded into the
//! snapshot, its own time, marked inexact). Safe while servers run: like `rebuild-rows`, the
//! rewrite takes the document's next version, so a merge committed meanwhile makes it start
//! again.

use std::collections::HashMap;
use std::io::Write;

use automerge::Automerge;
use chrono::{DateTime, Utc};
use splitsave_sync_core::history::{self, Author};
use uuid::Uuid;

use super::{counted, AdminError, Walk, ATTEMPTS};
use crate::store::{Conflict, NewHistoryEntry, PartnershipRecord, Received, Store, StoreError};

/// What `rebuild-history` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistorySummary {
    /// Partnerships looked at.
    pub partnerships: usize,
    /// Entries written.
    pub entries: usize,
    /// Partnerships left as they were: their document does not load, or kept changing.
    pub failed: usize,
}

/// `splitsave rebuild-history`: rewrites each partnership's (or the given one's) history
/// entries from its document, one transaction per partnership; a line per partnership that
/// could not be rebuilt, then a summary line.
pub async fn rebuild_history(
    store: &dyn Store,
    partnership: Option<Uuid>,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<HistorySummary, AdminError> {
    let mut summary = HistorySummary::default();
    let mut walk = Walk::new(partnership);
    while let Some(page) = walk.next_page(store).await? {
        for p in &page {
            summary.partnerships += 1;
            match rebuild_one(store, p).await? {
                Ok(n) => summary.entries += n,
                Err(why) => {
                    summary.failed += 1;
                    writeln!(out, "partnership {}: history not rebuilt: {why}", p.id)?;
                }
            }
        }
        if walk.paging() {
            writeln!(
                progress,
                "rebuild-history: {} done, {} written",
                counted(summary.partnerships, "partnership"),
                entries(summary.entries)
            )?;
        }
    }
    writeln!(
        out,
        "rebuilt the history of {}: {}{}",
        counted(summary.partnerships - summary.failed, "partnership"),
        entries(summary.entries),
        if summary.failed == 0 {
            String::new()
        } else {
            format!("; {} not rebuilt", counted(summary.failed, "partnership"))
        }
    )?;
    out.flush()?;
    // The planner's statistics of a table just filled: without them PostgreSQL reads a
    // filtered page (`kind`, `author`) by scanning instead of through its index until
    // autovacuum analyzes it (65-130 ms against 1-4 ms: docs/benchmarks.md, "History").
    store.analyze_history().await?;
    Ok(summary)
}

/// `n entries`, or `1 entry`.
fn entries(n: usize) -> String {
    if n == 1 {
        "1 entry".into()
    } else {
        format!("{n} entries")
    }
}

/// Rebuilds one partnership: how many entries it has now, or why it was left alone.
async fn rebuild_one(
    store: &dyn Store,
    p: &PartnershipRecord,
) -> Result<Result<usize, String>, StoreError> {
    for _ in 0..ATTEMPTS {
        let stored = store.stored_document(p.id).await?;
        let version = stored.version;
        let Some((_, snapshot)) = stored.snapshot else {
            return Ok(Err("no document".into()));
        };
        // Loaded as `check` loads it (a panic in automerge caught and reported).
        let doc = match super::inspect::load(&snapshot, stored.changes) {
            Ok(loaded) => loaded.doc,
            Err(findings) => {
                let why: Vec<String> = findings.iter().map(ToString::to_string).collect();
                return Ok(Err(why.join("; ")));
            }
        };
        let bindings: HashMap<String, Uuid> =
            store.actor_bindings(p.id).await?.into_iter().collect();
        let received: HashMap<String, DateTime<Utc>> =
            store.received_times(p.id).await?.into_iter().collect();
        let entries = derive(&doc, &bindings, &received);
        match store.replace_history(p.id, version, &entries).await {
            Ok(()) => return Ok(Ok(entries.len())),
            // A merge committed since the read: read the newer document and derive again.
            Err(StoreError::Conflict(Conflict::Stale)) => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(Err("the document kept changing".into()))
}

/// Every entry of `doc`'s history, oldest first, with its author and receive time.
pub fn derive(
    doc: &Automerge,
    bindings: &HashMap<String, Uuid>,
    received: &HashMap<String, DateTime<Utc>>,
) -> Vec<(NewHistoryEntry, Received)> {
    let currency = history::currency_of(doc);
    let mut out = Vec::new();
    for change in doc.get_changes(&[]) {
        // The document's first change makes the partnership (as the commits skip it).
        if change.deps().is_empty() {
            continue;
        }
        let hash = change.hash().to_string();
        for entry in history::entries_of_change(doc, &change, currency) {
            let author = match &entry.author {
                Author::Server => None,
                Author::User(u) => Some(u.0),
                Author::Device(actor) => bindings.get(&actor.to_hex_string()).copied(),
            };
            let stored = NewHistoryEntry::from_entry(&entry, author);
            let at = match received.get(&hash) {
                Some(at) => Received {
                    at: *at,
                    exact: true,
                },
                None => Received {
                    at: stored.changed_at.unwrap_or_default(),
                    exact: false,
                },
            };
            out.push((stored, at));
        }
    }
    out
}
