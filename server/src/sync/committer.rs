//! Group commit across documents. Every document actor waits for its merge to be durable before
//! it acknowledges anything, so with one transaction per merge the server pays one WAL flush and
//! four round trips (begin, change, rows, commit) per merge however many documents are busy.
//! The committer takes the merges that arrive while earlier ones are being written and commits
//! them together in one transaction: one flush for the batch. A merge is still answered only
//! after the transaction holding it committed, so "acknowledged" keeps meaning "durable".
//!
//! When a batch fails, each of its merges is retried alone, so one merge's failure (an actor id
//! bound to someone else, a partnership gone) is answered to its own actor and the others still
//! commit.

use std::sync::{Arc, Mutex};

use chrono::Utc;
use tokio::sync::{mpsc, oneshot, Semaphore};
use uuid::Uuid;

use crate::metrics::Metrics;
use crate::store::{MergeCommit, Store, StoreError, StoreResult};

/// Most merges written in one transaction.
const MAX_BATCH: usize = 128;
/// Transactions in flight at once: while some wait for their flush, the next batch gathers.
const MAX_IN_FLIGHT: usize = 4;
/// Merges waiting for a transaction; actors beyond it wait to enqueue (backpressure).
const QUEUE: usize = 4096;

/// One merge waiting to be committed, and where its outcome goes.
struct Job {
    partnership: Uuid,
    commit: MergeCommit,
    reply: oneshot::Sender<StoreResult<u64>>,
}

/// What the committer's task starts with: its queue and the store it writes to.
type Idle = (mpsc::Receiver<Job>, Arc<dyn Store>);

/// The process's shared committer (one per [`super::Registry`]).
pub struct Committer {
    tx: mpsc::Sender<Job>,
    /// The receiving end until the loop starts: it is spawned on first use, inside the runtime,
    /// so building the application state needs no runtime.
    pending: Mutex<Option<Idle>>,
    /// Where the size of every batch is recorded.
    metrics: Metrics,
}

impl Committer {
    /// A committer writing to `store`; its task starts with the first commit.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        Self {
            tx,
            pending: Mutex::new(Some((rx, store))),
            metrics: Metrics::off(),
        }
    }

    /// This committer, recording the size of its batches in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Makes one merge of `partnership` durable (the contract of `Store::commit_merge`),
    /// possibly in one transaction with other documents' merges; returns once it committed.
    pub async fn commit(&self, partnership: Uuid, commit: MergeCommit) -> StoreResult<u64> {
        self.start();
        let (reply, answer) = oneshot::channel();
        let job = Job {
            partnership,
            commit,
            reply,
        };
        if self.tx.send(job).await.is_err() {
            return Err(StoreError::Unavailable);
        }
        answer.await.unwrap_or(Err(StoreError::Unavailable))
    }

    fn start(&self) {
        let taken = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some((rx, store)) = taken {
            tokio::spawn(run(rx, store, self.metrics.clone()));
        }
    }
}

/// Gathers batches (everything queued once a transaction slot is free) and writes each in its
/// own task. Ends when the committer is dropped.
async fn run(mut rx: mpsc::Receiver<Job>, store: Arc<dyn Store>, metrics: Metrics) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    while let Some(first) = rx.recv().await {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        // Taken only once a slot is free, so the batch holds everything that queued meanwhile.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        metrics.commit_batch(batch.len());
        let store = store.clone();
        tokio::spawn(async move {
            write(&*store, batch).await;
            drop(permit);
        });
    }
}

async fn write(store: &dyn Store, batch: Vec<Job>) {
    let now = Utc::now();
    let (commits, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|j| ((j.partnership, j.commit), j.reply))
        .unzip();
    match store.commit_merges(&commits, now).await {
        Ok(counts) => {
            for (reply, count) in replies.into_iter().zip(counts) {
                let _ = reply.send(Ok(count));
            }
        }
        // Alone, the merge's own error is the answer.
        Err(err) if commits.len() == 1 => {
            if let Some(reply) = replies.into_iter().next() {
                let _ = reply.send(Err(err));
            }
        }
        Err(err) => {
            tracing::debug!(error = %err, merges = commits.len(), "batch commit failed; committing one by one");
            for ((partnership, commit), reply) in commits.into_iter().zip(replies) {
                let result = store.commit_merge(partnership, commit, now).await;
                let _ = reply.send(result);
            }
        }
    }
}
