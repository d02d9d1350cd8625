//! The live documents of this server process: one [`DocActor`] per partnership, started on
//! first use and evicted when idle.

use std::collections::HashMap;
use std::sync::Arc;

use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::split_doc::DocSplit;
use tokio::sync::{broadcast, mpsc, oneshot, OnceCell};

use super::committer::Committer;
use super::doc_actor::{Command, DocActor};
use super::{DocEvent, SyncError, SyncLimits};
use crate::store::Store;

/// Events buffered per partnership for slow subscribers (beyond it they miss events and are
/// told so by the channel).
const EVENT_BUFFER: usize = 256;

/// A partnership's actor mailbox, set once its document has loaded. Loading happens outside the
/// registry's lock, so opening one document never waits for another to load.
type Slot = Arc<OnceCell<mpsc::Sender<Command>>>;

/// Live document actors by partnership.
pub struct Registry {
    docs: std::sync::Mutex<HashMap<PartnershipId, Slot>>,
    /// Per partnership, the channel its actor publishes events on (kept apart from the actors
    /// so subscribing never loads a document).
    events: std::sync::Mutex<HashMap<PartnershipId, broadcast::Sender<Arc<DocEvent>>>>,
    /// Per partnership, the split its actor last computed, while the document is unchanged
    /// (the actor removes it before anyone hears of a change to the document), so reads
    /// of the split need no trip through the actor's mailbox.
    splits: std::sync::Mutex<HashMap<PartnershipId, Arc<DocSplit>>>,
    store: Arc<dyn Store>,
    /// Commits the actors' merges, several documents' in one transaction.
    committer: Committer,
    limits: SyncLimits,
    /// Random per process: makes this process's server actor id unique.
    node: [u8; 8],
}

impl Registry {
    /// An empty registry.
    pub fn new(store: Arc<dyn Store>, limits: SyncLimits) -> Arc<Self> {
        let node: [u8; 8] = rand::random();
        Arc::new(Self {
            docs: std::sync::Mutex::new(HashMap::new()),
            events: std::sync::Mutex::new(HashMap::new()),
            splits: std::sync::Mutex::new(HashMap::new()),
            committer: Committer::new(store.clone()),
            store,
            limits,
            node,
        })
    }

    /// Where the actors make their merges durable.
    pub(crate) fn committer(&self) -> &Committer {
        &self.committer
    }

    /// The limits the actors run with.
    pub fn limits(&self) -> &SyncLimits {
        &self.limits
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, HashMap<PartnershipId, Slot>> {
        self.docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The mailbox of the partnership's actor, loading the document if it is not live. Callers
    /// asking for the same document while it loads wait for that one load.
    pub async fn handle(
        self: &Arc<Self>,
        pid: PartnershipId,
    ) -> Result<mpsc::Sender<Command>, SyncError> {
        loop {
            let slot = self.docs().entry(pid).or_default().clone();
            let tx = slot
                .get_or_try_init(|| {
                    DocActor::spawn(
                        pid,
                        self.store.clone(),
                        self.clone(),
                        self.limits.clone(),
                        self.node,
                    )
                })
                .await?
                .clone();
            if !tx.is_closed() {
                return Ok(tx);
            }
            // The actor stopped (evicted): forget its slot, unless someone already did.
            let mut docs = self.docs();
            if docs.get(&pid).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                docs.remove(&pid);
            }
        }
    }

    /// Sends a request to the partnership's actor and waits for the answer. If the actor was
    /// evicted in between, the request is retried once on a fresh actor.
    pub async fn call<T>(
        self: &Arc<Self>,
        pid: PartnershipId,
        make: impl Fn(oneshot::Sender<T>) -> Command,
    ) -> Result<T, SyncError> {
        for _ in 0..2 {
            let tx = self.handle(pid).await?;
            let (reply, rx) = oneshot::channel();
            if tx.send(make(reply)).await.is_err() {
                continue;
            }
            if let Ok(v) = rx.await {
                return Ok(v);
            }
        }
        Err(SyncError::Unavailable)
    }

    /// Sends a request that needs no answer to a live actor (none is started for it).
    pub async fn notify(&self, pid: PartnershipId, cmd: Command) {
        let tx = self.docs().get(&pid).and_then(|s| s.get().cloned());
        if let Some(tx) = tx {
            let _ = tx.send(cmd).await;
        }
    }

    /// Closes `user`'s connections to the partnership's document (their access ended).
    pub async fn drop_user(&self, pid: PartnershipId, user: UserId) {
        self.notify(pid, Command::DropUser { user }).await;
    }

    /// Called by an idle actor: removes it from the registry when no request is waiting in its
    /// mailbox, so no request is lost. Returns whether it was removed (and must stop).
    pub async fn evict_if_idle(&self, pid: PartnershipId, rx: &mpsc::Receiver<Command>) -> bool {
        let mut docs = self.docs();
        if !rx.is_empty() {
            return false;
        }
        docs.remove(&pid);
        self.clear_split(pid);
        true
    }

    fn splits(&self) -> std::sync::MutexGuard<'_, HashMap<PartnershipId, Arc<DocSplit>>> {
        self.splits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The split of the partnership's document as it is now, if its actor has one computed.
    pub fn cached_split(&self, pid: PartnershipId) -> Option<Arc<DocSplit>> {
        self.splits().get(&pid).cloned()
    }

    /// Called by the actor: the split of its document as it is now.
    pub(crate) fn publish_split(&self, pid: PartnershipId, split: Arc<DocSplit>) {
        self.splits().insert(pid, split);
    }

    /// Called by the actor when its document changed (or a new actor starts): the published
    /// split no longer holds.
    pub(crate) fn clear_split(&self, pid: PartnershipId) {
        self.splits().remove(&pid);
    }

    /// The split of the partnership's document: the published one, or computed by its actor
    /// (which publishes it for the next reads).
    pub async fn split(self: &Arc<Self>, pid: PartnershipId) -> Result<Arc<DocSplit>, SyncError> {
        if let Some(split) = self.cached_split(pid) {
            return Ok(split);
        }
        self.call(pid, |reply| Command::Split { reply })
            .await
            .and_then(|r| r)
    }

    /// The event channel of a partnership (created on first use).
    pub fn event_sender(&self, pid: PartnershipId) -> broadcast::Sender<Arc<DocEvent>> {
        let mut map = self
            .events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(pid)
            .or_insert_with(|| broadcast::channel(EVENT_BUFFER).0)
            .clone()
    }

    /// Subscribes to a partnership's events (merges over sync or REST, presence).
    pub fn subscribe(&self, pid: PartnershipId) -> broadcast::Receiver<Arc<DocEvent>> {
        self.event_sender(pid).subscribe()
    }

    /// How many documents are live (metrics, tests).
    pub async fn live_documents(&self) -> usize {
        self.docs().len()
    }
}
