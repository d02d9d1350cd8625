//! The live documents of this server process: one [`DocActor`] per partnership, started on
//! first use and evicted when idle.

use std::collections::HashMap;
use std::sync::Arc;

use automerge::transaction::Transaction;
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::ops::OpError;
use splitsave_sync_core::split_doc::DocSplit;
use tokio::sync::{broadcast, mpsc, oneshot, OnceCell};

use super::cluster::{ClusterLink, CommittedChanges, Notice, HEARTBEAT_SLOTS};
use super::committer::Committer;
use super::doc_actor::{Command, DocActor, DocOp, OpValue};
use super::{DocEvent, SyncError, SyncLimits};
use crate::metrics::Metrics;
use crate::store::Store;

/// Events buffered per partnership for slow subscribers (beyond it they miss events and are
/// told so by the channel).
const EVENT_BUFFER: usize = 256;

/// A partnership's actor mailbox, set once its document has loaded. Loading happens outside the
/// registry's lock, so opening one document never waits for another to load.
type Slot = Arc<OnceCell<mpsc::Sender<Command>>>;

/// What other nodes said of their `/api/events` streams: per (document, user), the nodes and
/// when each last said so.
type RemoteWatchers = HashMap<(PartnershipId, UserId), HashMap<String, std::time::Instant>>;

/// Whether `pid` repeats its presence (and its event streams) in heartbeat slice `slot`.
fn in_heartbeat_slot(pid: PartnershipId, slot: u32) -> bool {
    pid.0.as_u128() % u128::from(HEARTBEAT_SLOTS) == u128::from(slot)
}

/// Live document actors by partnership.
pub struct Registry {
    docs: std::sync::Mutex<HashMap<PartnershipId, Slot>>,
    /// Per partnership with subscribers, the channel its actor publishes events on (kept apart
    /// from the actors so subscribing never loads a document).
    events: std::sync::Mutex<HashMap<PartnershipId, broadcast::Sender<Arc<DocEvent>>>>,
    /// Per partnership, the split its actor last computed, while the document is unchanged
    /// (the actor removes it before anyone hears of a change to the document), so reads
    /// of the split need no trip through the actor's mailbox.
    /// With the document version it was computed at.
    splits: std::sync::Mutex<HashMap<PartnershipId, (i64, Arc<DocSplit>)>>,
    store: Arc<dyn Store>,
    /// Commits the actors' merges, several documents' in one transaction.
    committer: Committer,
    limits: SyncLimits,
    /// Random per process: makes this process's server actor id unique.
    node: [u8; 8],
    /// The other nodes, when this one is part of a cluster ([`super::cluster::start`]).
    cluster: std::sync::OnceLock<ClusterLink>,
    /// Per live document, what other nodes announced (see [`Registry::announced`]).
    announced: std::sync::Mutex<HashMap<PartnershipId, Announced>>,
    /// Open `/api/events` streams per partnership and user: such a user is watching and gets
    /// no push notification.
    watchers: std::sync::Mutex<HashMap<(PartnershipId, UserId), usize>>,
    /// The `/api/events` streams other nodes said are open (who, on which document, heard
    /// from which node when): such a user is watching, as far as push notifications go.
    remote_watchers: std::sync::Mutex<RemoteWatchers>,
    /// Wakes this node's push sender after a commit that queued notifications; unset while
    /// push notifications are off (nothing is then derived or queued).
    push: std::sync::OnceLock<PushLink>,
    /// Where the actors and the committer count merges.
    metrics: Metrics,
}

/// How the actors reach the push sender.
pub(crate) struct PushLink {
    /// Notified after a commit that wrote notifications.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    /// How long a queued notification is worth sending.
    pub(crate) give_up_after: std::time::Duration,
}

/// What other nodes announced of one live document.
#[derive(Default)]
struct Announced {
    /// The latest version announced.
    latest: i64,
    /// The changes of the announced commits that carried them, by version, until the actor
    /// takes them (at most [`MAX_ANNOUNCED_CHANGES`]; the oldest go first, and the actor then
    /// reads what they held from storage).
    changes: std::collections::BTreeMap<i64, Arc<CommittedChanges>>,
}

/// Most announced commits whose changes wait for a document's actor.
const MAX_ANNOUNCED_CHANGES: usize = 64;

impl Announced {
    /// Takes a notice heard.
    fn heard(&mut self, version: i64, changes: Option<Arc<CommittedChanges>>) {
        self.latest = self.latest.max(version);
        if let Some(changes) = changes {
            self.changes.insert(version, changes);
            while self.changes.len() > MAX_ANNOUNCED_CHANGES {
                self.changes.pop_first();
            }
        }
    }

    /// Takes the changes of the versions right after `version`, without a gap; drops those
    /// of `version` and before.
    fn take_after(&mut self, version: i64) -> Vec<(i64, Arc<CommittedChanges>)> {
        self.changes = self.changes.split_off(&(version + 1));
        let mut chain = Vec::new();
        let mut next = version + 1;
        while let Some(changes) = self.changes.remove(&next) {
            chain.push((next, changes));
            next += 1;
        }
        chain
    }
}

impl Registry {
    /// An empty registry, counting merges in `metrics`.
    pub fn new(store: Arc<dyn Store>, limits: SyncLimits, metrics: Metrics) -> Arc<Self> {
        let node: [u8; 8] = rand::random();
        Arc::new(Self {
            docs: std::sync::Mutex::new(HashMap::new()),
            events: std::sync::Mutex::new(HashMap::new()),
            splits: std::sync::Mutex::new(HashMap::new()),
            committer: Committer::new(store.clone()).with_metrics(metrics.clone()),
            metrics,
            store,
            limits,
            node,
            cluster: std::sync::OnceLock::new(),
            announced: std::sync::Mutex::new(HashMap::new()),
            watchers: std::sync::Mutex::new(HashMap::new()),
            remote_watchers: std::sync::Mutex::new(HashMap::new()),
            push: std::sync::OnceLock::new(),
        })
    }

    /// Turns push notifications on: merges and operations queue them from now on, and `wake`
    /// is notified after each commit that did.
    pub fn link_push(&self, wake: Arc<tokio::sync::Notify>, give_up_after: std::time::Duration) {
        let _ = self.push.set(PushLink {
            wake,
            give_up_after,
        });
    }

    /// The push sender's link, when push notifications are on.
    pub(crate) fn push(&self) -> Option<&PushLink> {
        self.push.get()
    }

    fn watchers(&self) -> std::sync::MutexGuard<'_, HashMap<(PartnershipId, UserId), usize>> {
        self.watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn remote_watchers(&self) -> std::sync::MutexGuard<'_, RemoteWatchers> {
        self.remote_watchers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `user` has an `/api/events` stream of the partnership open on this node.
    pub(crate) fn watching(&self, pid: PartnershipId, user: UserId) -> bool {
        self.watchers().get(&(pid, user)).is_some_and(|n| *n > 0)
    }

    /// Whether another node said lately (within the presence TTL) that `user` has an
    /// `/api/events` stream on `pid` open there.
    pub(crate) fn watching_elsewhere(&self, pid: PartnershipId, user: UserId) -> bool {
        let ttl = self.limits.presence_ttl;
        self.remote_watchers()
            .get(&(pid, user))
            .is_some_and(|nodes| nodes.values().any(|heard| heard.elapsed() < ttl))
    }

    /// Tells the other nodes that `user`'s first event stream on `pid` here opened, or its
    /// last one closed.
    fn announce_watching(&self, pid: PartnershipId, user: UserId, watching: bool) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(Notice::Watching {
                pid,
                user,
                watching,
            });
        }
    }

    /// Links the registry to the cluster; false when it already is.
    pub(crate) fn link_cluster(&self, link: ClusterLink) -> bool {
        self.cluster.set(link).is_ok()
    }

    /// Whether other nodes may share this node's documents: live documents then stay up to
    /// date with them, and `/api/events` subscriptions keep their document live.
    pub fn clustered(&self) -> bool {
        self.cluster.get().is_some()
    }

    /// Whether the other nodes' notices arrive over Redis right now (false without a cluster).
    pub fn cluster_subscribed(&self) -> bool {
        self.cluster.get().is_some_and(ClusterLink::subscribed)
    }

    /// Called by an actor once a merge committed: the other nodes holding the document catch up
    /// (from `changes`, the merge's, when given).
    pub(crate) fn announce_commit(
        &self,
        pid: PartnershipId,
        version: i64,
        changes: Option<CommittedChanges>,
    ) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(Notice::Commit {
                pid,
                version,
                changes: changes.map(Arc::new),
            });
        }
    }

    fn announced_versions(&self) -> std::sync::MutexGuard<'_, HashMap<PartnershipId, Announced>> {
        self.announced
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The latest version of the document other nodes announced while it was live here (0 when
    /// none): an actor behind it catches up before its next merge.
    pub(crate) fn announced(&self, pid: PartnershipId) -> i64 {
        self.announced_versions().get(&pid).map_or(0, |a| a.latest)
    }

    /// The announced changes of the commits right after `version`, in order and without a gap
    /// (`version + 1`, `version + 2`, ...), taken; those of earlier commits are dropped.
    pub(crate) fn take_announced(
        &self,
        pid: PartnershipId,
        version: i64,
    ) -> Vec<(i64, Arc<CommittedChanges>)> {
        self.announced_versions()
            .get_mut(&pid)
            .map(|a| a.take_after(version))
            .unwrap_or_default()
    }

    /// The partnerships whose documents are live here.
    pub(crate) fn live_ids(&self) -> Vec<uuid::Uuid> {
        self.docs().keys().map(|p| p.0).collect()
    }

    /// What another node told: a commit makes the document's live actor here (if any) catch up;
    /// a revocation is carried out here as on the node where it happened.
    pub(crate) async fn heard(&self, notice: Notice, from: &str) {
        match notice {
            Notice::Commit {
                pid,
                version,
                changes,
            } => {
                let tx = self.docs().get(&pid).and_then(|s| s.get().cloned());
                if tx.is_some() {
                    let mut announced = self.announced_versions();
                    announced.entry(pid).or_default().heard(version, changes);
                }
                // Never waits: a busy actor misses this notice, and its next commit (stale)
                // or the next poll brings it up to date.
                if let Some(tx) = tx {
                    let _ = tx.try_send(Command::CatchUp { version });
                }
            }
            Notice::Presence { pid, user, online } => {
                let tx = self.docs().get(&pid).and_then(|s| s.get().cloned());
                if let Some(tx) = tx {
                    let _ = tx.try_send(Command::RemotePresence {
                        user,
                        node: from.to_owned(),
                        online,
                    });
                }
            }
            Notice::Watching {
                pid,
                user,
                watching,
            } => {
                let mut remote = self.remote_watchers();
                if watching {
                    remote
                        .entry((pid, user))
                        .or_default()
                        .insert(from.to_owned(), std::time::Instant::now());
                } else if let Some(nodes) = remote.get_mut(&(pid, user)) {
                    nodes.remove(from);
                    if nodes.is_empty() {
                        remote.remove(&(pid, user));
                    }
                }
            }
            Notice::Who { pid } => {
                let tx = self.docs().get(&pid).and_then(|s| s.get().cloned());
                if let Some(tx) = tx {
                    let _ = tx.try_send(Command::PresenceHeartbeat);
                }
                let streams: Vec<UserId> = self
                    .watchers()
                    .iter()
                    .filter(|((p, _), n)| *p == pid && **n > 0)
                    .map(|((_, user), _)| *user)
                    .collect();
                for user in streams {
                    self.announce_watching(pid, user, true);
                }
            }
            Notice::Revoke { pid, user } => self.revoke_here(pid, user).await,
        }
    }

    /// Called by a new actor: the other nodes holding the document say who is connected there.
    pub(crate) fn ask_presence(&self, pid: PartnershipId) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(Notice::Who { pid });
        }
    }

    /// Called by an actor when a user's first connection to its document opened here or the
    /// last one closed: the other nodes tell their connections.
    pub(crate) fn announce_presence(&self, pid: PartnershipId, user: UserId, online: bool) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(Notice::Presence { pid, user, online });
        }
    }

    /// The live documents of heartbeat slice `slot` repeat their local presence and forget
    /// stale remote presence.
    pub(crate) fn presence_heartbeat(&self, slot: u32) {
        self.watching_heartbeat(slot);
        let live: Vec<mpsc::Sender<Command>> = self
            .docs()
            .iter()
            .filter(|(pid, _)| in_heartbeat_slot(**pid, slot))
            .filter_map(|(_, s)| s.get().cloned())
            .collect();
        for tx in live {
            let _ = tx.try_send(Command::PresenceHeartbeat);
        }
    }

    /// The event streams of heartbeat slice `slot` are announced again, and what other nodes
    /// said of theirs is forgotten once older than the presence TTL (a node that died).
    fn watching_heartbeat(&self, slot: u32) {
        let here: Vec<(PartnershipId, UserId)> = self
            .watchers()
            .iter()
            .filter(|((pid, _), n)| **n > 0 && in_heartbeat_slot(*pid, slot))
            .map(|(key, _)| *key)
            .collect();
        for (pid, user) in here {
            self.announce_watching(pid, user, true);
        }
        let ttl = self.limits.presence_ttl;
        let mut remote = self.remote_watchers();
        remote.retain(|_, nodes| {
            nodes.retain(|_, heard| heard.elapsed() < ttl);
            !nodes.is_empty()
        });
    }

    /// How long a partner on another node counts as online without hearing of it again.
    pub(crate) fn presence_ttl(&self) -> std::time::Duration {
        self.limits.presence_ttl
    }

    /// Where the actors make their merges durable.
    pub(crate) fn committer(&self) -> &Committer {
        &self.committer
    }

    /// The limits the actors run with.
    pub fn limits(&self) -> &SyncLimits {
        &self.limits
    }

    /// Where the actors count merges.
    pub(crate) fn metrics(&self) -> &Metrics {
        &self.metrics
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

    /// Runs `op` on the partnership's document as `user` (a REST write, or the server's own
    /// read or write of its fields) and returns what `op` returned once its changes are
    /// committed and fanned out. A read-only `op` writes nothing and commits nothing.
    pub async fn apply<T, F>(
        self: &Arc<Self>,
        pid: PartnershipId,
        user: UserId,
        op: F,
    ) -> Result<T, SyncError>
    where
        T: Send + 'static,
        F: Fn(&mut Transaction<'_>) -> Result<T, OpError> + Send + Sync + 'static,
    {
        let op: DocOp = Arc::new(move |tx| op(tx).map(|value| Box::new(value) as OpValue));
        let value = self
            .call(pid, |reply| Command::Apply {
                user,
                op: op.clone(),
                reply,
                trace: crate::telemetry::current_trace(),
            })
            .await??;
        // The box holds the `T` boxed just above: the downcast cannot miss.
        value
            .downcast::<T>()
            .map(|value| *value)
            .map_err(|_| SyncError::Internal)
    }

    /// Ends the access of `user`'s connections to the partnership's document (everyone's when
    /// `None`), and returns once the document's actor has done so: from then on nothing those
    /// connections send is applied, and their event streams are told to close. Nothing to do when the document is not loaded (it has no
    /// connection; new ones check access when they attach).
    pub async fn revoke(&self, pid: PartnershipId, user: Option<UserId>) {
        if let Some(cluster) = self.cluster.get() {
            cluster.tell(Notice::Revoke { pid, user });
        }
        self.revoke_here(pid, user).await;
    }

    /// [`Registry::revoke`] on this node only.
    async fn revoke_here(&self, pid: PartnershipId, user: Option<UserId>) {
        let tx = self.docs().get(&pid).and_then(|s| s.get().cloned());
        if let Some(tx) = tx {
            let (reply, done) = oneshot::channel();
            if tx.send(Command::Revoke { user, reply }).await.is_ok() {
                let _ = done.await;
            }
        }
        // Event streams (`/api/events`) of those users close too.
        if let Some(events) = self.publisher(pid) {
            let _ = events.send(Arc::new(DocEvent::AccessEnded { user }));
        }
    }

    /// Called by an idle actor: removes it from the registry when no request is waiting in its
    /// mailbox, so no request is lost. Returns whether it was removed (and must stop).
    /// In a cluster, a document with `/api/events` subscribers stays: its actor is what hears
    /// the other nodes' commits and turns them into events.
    pub async fn evict_if_idle(&self, pid: PartnershipId, rx: &mpsc::Receiver<Command>) -> bool {
        if self.clustered() && self.publisher(pid).is_some() {
            return false;
        }
        let mut docs = self.docs();
        if !rx.is_empty() {
            return false;
        }
        docs.remove(&pid);
        self.clear_split(pid);
        self.announced_versions().remove(&pid);
        true
    }

    fn splits(&self) -> std::sync::MutexGuard<'_, HashMap<PartnershipId, (i64, Arc<DocSplit>)>> {
        self.splits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The split of the partnership's document as it is now on this node, if its actor has one
    /// computed, with the document version it was computed at.
    fn cached_split(&self, pid: PartnershipId) -> Option<(i64, Arc<DocSplit>)> {
        self.splits().get(&pid).cloned()
    }

    /// Called by the actor: the split of its document as it is now (at `version`).
    pub(crate) fn publish_split(&self, pid: PartnershipId, version: i64, split: Arc<DocSplit>) {
        self.splits().insert(pid, (version, split));
    }

    /// Called by the actor when its document changed (or a new actor starts): the published
    /// split no longer holds.
    pub(crate) fn clear_split(&self, pid: PartnershipId) {
        self.splits().remove(&pid);
    }

    /// The split of the partnership's document: the published one, or computed by its actor
    /// (which publishes it for the next reads). In a cluster the stored version is read first,
    /// so a read that follows a write acknowledged by another node sees it: a split from an
    /// older version is not served, and the actor catches up before computing.
    pub async fn split(self: &Arc<Self>, pid: PartnershipId) -> Result<Arc<DocSplit>, SyncError> {
        let at_least = if self.clustered() {
            self.store.document_version(pid.0).await?
        } else {
            0
        };
        if let Some((version, split)) = self.cached_split(pid) {
            if version >= at_least {
                return Ok(split);
            }
        }
        self.call(pid, |reply| Command::Split { at_least, reply })
            .await
            .and_then(|r| r)
    }

    fn events(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PartnershipId, broadcast::Sender<Arc<DocEvent>>>> {
        self.events
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Where the partnership's actor publishes events, if anyone listens. Channels exist only
    /// while subscribed: a document nobody follows on `/api/events` carries no event buffer
    /// (about 10 KiB each), and the map does not grow with every partnership ever loaded.
    pub(crate) fn publisher(&self, pid: PartnershipId) -> Option<broadcast::Sender<Arc<DocEvent>>> {
        self.events()
            .get(&pid)
            .filter(|tx| tx.receiver_count() > 0)
            .cloned()
    }

    /// Subscribes to a partnership's events (merges over sync or REST, presence). The channel is
    /// forgotten when its last subscription is dropped.
    pub fn subscribe(self: &Arc<Self>, pid: PartnershipId) -> EventSubscription {
        let rx = self
            .events()
            .entry(pid)
            .or_insert_with(|| broadcast::channel(EVENT_BUFFER).0)
            .subscribe();
        EventSubscription {
            rx: Some(rx),
            registry: self.clone(),
            pid,
            user: None,
        }
    }

    /// [`Registry::subscribe`] for `user`, who counts as watching the partnership while the
    /// subscription lasts (no push notifications for them meanwhile).
    pub fn subscribe_as(self: &Arc<Self>, pid: PartnershipId, user: UserId) -> EventSubscription {
        let mut sub = self.subscribe(pid);
        let first = {
            let mut watchers = self.watchers();
            let n = watchers.entry((pid, user)).or_insert(0);
            *n += 1;
            *n == 1
        };
        if first {
            self.announce_watching(pid, user, true);
        }
        sub.user = Some(user);
        sub
    }

    /// Removes the partnership's channel once nobody is subscribed.
    fn forget_events_if_unused(&self, pid: PartnershipId) {
        let mut events = self.events();
        if events.get(&pid).is_some_and(|tx| tx.receiver_count() == 0) {
            events.remove(&pid);
        }
    }

    /// How many documents are live (metrics, tests).
    pub async fn live_documents(&self) -> usize {
        self.docs().len()
    }
}

/// A subscription to one partnership's events ([`Registry::subscribe`]).
pub struct EventSubscription {
    /// Always `Some` until dropped.
    rx: Option<broadcast::Receiver<Arc<DocEvent>>>,
    registry: Arc<Registry>,
    pid: PartnershipId,
    /// Who watches through it, if known.
    user: Option<UserId>,
}

impl EventSubscription {
    /// The next event; `Lagged` when this subscriber fell more than the buffer behind.
    pub async fn recv(&mut self) -> Result<Arc<DocEvent>, broadcast::error::RecvError> {
        match self.rx.as_mut() {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for EventSubscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        self.registry.forget_events_if_unused(self.pid);
        if let Some(user) = self.user {
            let last = {
                let mut watchers = self.registry.watchers();
                match watchers.get_mut(&(self.pid, user)) {
                    Some(n) => {
                        *n -= 1;
                        let last = *n == 0;
                        if last {
                            watchers.remove(&(self.pid, user));
                        }
                        last
                    }
                    None => false,
                }
            };
            if last {
                self.registry.announce_watching(self.pid, user, false);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registry() -> (Arc<Registry>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("registry.db").display());
        let store = crate::store::connect(&url).await.expect("store");
        (
            Registry::new(store, SyncLimits::default(), Metrics::off()),
            dir,
        )
    }

    fn presence() -> Arc<DocEvent> {
        Arc::new(DocEvent::Presence {
            user: UserId(uuid::Uuid::now_v7()),
            online: true,
            at: chrono::Utc::now(),
        })
    }

    #[tokio::test]
    async fn an_event_channel_exists_only_while_someone_is_subscribed() {
        let (registry, _dir) = registry().await;
        let pid = PartnershipId(uuid::Uuid::now_v7());
        assert!(registry.publisher(pid).is_none(), "nobody listens yet");

        let mut first = registry.subscribe(pid);
        let mut second = registry.subscribe(pid);
        let sent = registry.publisher(pid).expect("subscribed");
        sent.send(presence()).expect("delivered");
        assert!(matches!(
            *first.recv().await.expect("first"),
            DocEvent::Presence { .. }
        ));
        assert!(matches!(
            *second.recv().await.expect("second"),
            DocEvent::Presence { .. }
        ));

        drop(first);
        assert!(registry.publisher(pid).is_some(), "one subscriber left");
        drop(second);
        assert!(registry.publisher(pid).is_none(), "nobody listens any more");
        assert!(registry.events().is_empty(), "the channel is forgotten");

        // A later subscriber gets a fresh channel that the actor finds again.
        let mut again = registry.subscribe(pid);
        registry
            .publisher(pid)
            .expect("subscribed again")
            .send(presence())
            .expect("delivered");
        assert!(again.recv().await.is_ok());
    }
}

#[cfg(test)]
mod announced_tests {
    use super::*;

    fn changes(tag: u8) -> Option<Arc<CommittedChanges>> {
        Some(Arc::new(CommittedChanges(vec![(None, vec![tag])])))
    }

    #[test]
    fn announced_changes_are_taken_in_order_up_to_the_first_gap() {
        let mut a = Announced::default();
        a.heard(5, changes(5));
        a.heard(3, changes(3));
        a.heard(4, changes(4));
        a.heard(7, changes(7));
        a.heard(8, None);
        assert_eq!(a.latest, 8);
        // The live copy is at 3: 4 and 5 follow on; 6 was not carried, so 7 waits (a read
        // from storage brings 6 and 7); 3 is dropped as already had.
        let chain: Vec<i64> = a.take_after(3).into_iter().map(|(v, _)| v).collect();
        assert_eq!(chain, vec![4, 5]);
        assert_eq!(a.changes.keys().copied().collect::<Vec<_>>(), vec![7]);
        // Caught up to 7 from storage: nothing is left to apply.
        assert!(a.take_after(7).is_empty());
        assert!(a.changes.is_empty());
    }

    #[test]
    fn a_document_far_behind_keeps_only_the_latest_announced_changes() {
        let mut a = Announced::default();
        for v in 1..=(MAX_ANNOUNCED_CHANGES as i64 + 10) {
            a.heard(v, changes(0));
        }
        assert_eq!(a.changes.len(), MAX_ANNOUNCED_CHANGES);
        assert_eq!(a.changes.keys().next(), Some(&11));
        // At version 0 the chain cannot start (1 to 10 were dropped): storage is read instead.
        assert!(a.take_after(0).is_empty());
    }
}
