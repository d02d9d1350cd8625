//! One task per live partnership document: it owns the Automerge document and serialises
//! everything that touches it — sync messages from connections, operations from REST, presence.
//!
//! Per merge (docs/sync-protocol.md, "What the server does with a message"):
//! 1. parse the incoming sync message's changes and refuse the whole message, before applying
//!    anything, when a change new to the server breaks a limit or carries an actor id that is not
//!    bound to the connected user (a device's actor id is bound on first use);
//! 2. capture the state of the entities the changes touch, apply the message in place (a panic in
//!    automerge is caught: the document is reloaded from storage and that peer's sync state reset),
//!    and let sync-core compute the compensations, written as the server's own change;
//! 3. commit the new changes and the materialized rows they touch in one transaction;
//! 4. only then send sync messages (acknowledging the new heads) to every connection.
//!
//! Business-rule violations are compensated, never refused, so replicas never get stuck; only
//! security violations (foreign actor ids, malformed or oversized input) are refused.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use automerge::sync::{self, MessageFlags, SyncDoc};
use automerge::transaction::{CommitOptions, Transaction};
use automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use chrono::Utc;
use splitsave_sync_core::document::{is_server_actor, server_actor};
use splitsave_sync_core::enforce::{self, settle, Before};
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::materialize;
use splitsave_sync_core::ops::{OpError, Outcome};
use splitsave_sync_core::split_doc::{self, DocSplit};
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::touched::{touched_after_apply, touched_before_apply, Touched};
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::registry::Registry;
use super::{presence, DocEvent, SyncError, SyncLimits};
use crate::store::{MergeCommit, NewChange, NewSnapshot, Store};

/// Identifies one WebSocket connection within the server process.
pub type ConnId = u64;

/// What the actor sends to a connection.
#[derive(Debug)]
pub enum Outbound {
    /// An Automerge sync message for the connection's peer.
    Sync(Vec<u8>),
    /// An ephemeral (presence) payload, CBOR, from `sender` (a peer id, or the server's).
    Ephemeral {
        /// The peer id the payload comes from.
        sender: String,
        /// Opaque CBOR bytes.
        data: Vec<u8>,
    },
    /// The connection's access ended: close it with this reason.
    End(&'static str),
}

/// An operation run on the document as a user (REST writes), inside one transaction. `Fn` and
/// shareable, so a request can be retried on a fresh actor if the first was evicted meanwhile.
pub type DocOp = Arc<dyn Fn(&mut Transaction<'_>) -> Result<Outcome, OpError> + Send + Sync>;

/// Requests to a document actor.
pub enum Command {
    /// A connection starts syncing this document.
    Attach {
        /// The connection.
        conn: ConnId,
        /// Its authenticated user.
        user: UserId,
        /// The client's peer id.
        peer_id: String,
        /// The client's storage id, to resume from its saved sync state.
        storage_id: Option<String>,
        /// A paused partnership: the peer receives the document but its changes are ignored
        /// (the sync state says so, so the peer keeps them for later instead of resending).
        read_only: bool,
        /// Where to send messages for it.
        out: mpsc::Sender<Outbound>,
        /// Answered once attached (and the first sync message queued).
        reply: oneshot::Sender<Result<(), SyncError>>,
    },
    /// An Automerge sync message from a connection.
    Receive {
        /// The connection.
        conn: ConnId,
        /// The sync message bytes.
        message: Vec<u8>,
        /// Answered after the merge committed and the acknowledgements were queued.
        reply: oneshot::Sender<Result<(), SyncError>>,
    },
    /// An ephemeral message from a connection, forwarded to the other connections.
    Ephemeral {
        /// The connection.
        conn: ConnId,
        /// Opaque CBOR bytes.
        data: Vec<u8>,
    },
    /// A connection stopped syncing this document.
    Detach {
        /// The connection.
        conn: ConnId,
    },
    /// Run an operation as `user` (REST writes), commit it like a merge.
    Apply {
        /// The acting user.
        user: UserId,
        /// The operation.
        op: DocOp,
        /// The operation's outcome once committed and fanned out.
        reply: oneshot::Sender<Result<Outcome, SyncError>>,
    },
    /// Compute the split of the document (or reuse the one computed at the same heads) and
    /// publish it in the registry for reads that follow.
    Split {
        /// The split.
        reply: oneshot::Sender<Result<Arc<DocSplit>, SyncError>>,
    },
    /// End the access of `user`'s connections (everyone's when `None`): close them and refuse
    /// whatever they still send. Answered once in effect.
    Revoke {
        /// The user, or `None` for every connection (the partnership ended).
        user: Option<UserId>,
        /// Answered once no message of theirs can be applied any more.
        reply: oneshot::Sender<()>,
    },
}

/// One connection's state inside the actor.
struct Peer {
    user: UserId,
    peer_id: String,
    storage_id: Option<String>,
    state: sync::State,
    /// The document's heads when automerge last answered this peer, if neither the document
    /// nor the peer's state changed since: automerge would then answer nothing (it has
    /// answered, or is waiting for an acknowledgement), but it would rebuild the bloom filter
    /// and the list of changes to send to find that out. Cleared whenever the state changes.
    answered_at: Option<Vec<ChangeHash>>,
    /// Paused partnership: the peer's changes are not applied.
    read_only: bool,
    out: mpsc::Sender<Outbound>,
}

/// The actor's state.
pub struct DocActor {
    pid: PartnershipId,
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    limits: SyncLimits,
    doc: Automerge,
    actor: ActorId,
    peers: HashMap<ConnId, Peer>,
    /// Actor ids known to belong to a user (cache of the store's bindings).
    bindings: HashMap<ActorId, UserId>,
    /// Hashes of stored changes not yet covered by a snapshot.
    uncompacted: Vec<String>,
    /// The compaction running in the background, if any. One at a time: two in flight could
    /// commit out of order, and the older snapshot would then replace the newer one after the
    /// newer one had deleted the changes the older one lacks.
    compaction: Option<tokio::task::JoinHandle<()>>,
    /// The heads at which the split published in the registry was computed, if one is.
    split_heads: Option<Vec<ChangeHash>>,
    /// A command taken from the mailbox while gathering a batch of REST operations, to handle
    /// next.
    deferred: Option<Command>,
    /// Connections whose access was revoked: whatever they still send (or an attempt to attach
    /// again) is refused.
    revoked: HashSet<ConnId>,
}

/// Most REST operations committed in one transaction (see [`DocActor::apply_batch`]).
const MAX_APPLY_BATCH: usize = 64;

/// A REST operation waiting in a batch: who runs it, what, and where its answer goes.
type PendingOp = (UserId, DocOp, oneshot::Sender<Result<Outcome, SyncError>>);

impl DocActor {
    /// Loads the document from storage and starts the actor's task. The returned sender is the
    /// actor's mailbox.
    pub async fn spawn(
        pid: PartnershipId,
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        limits: SyncLimits,
        node: [u8; 8],
    ) -> Result<mpsc::Sender<Command>, SyncError> {
        let actor = server_actor(node);
        let (doc, uncompacted) = load(&*store, pid, &actor).await?;
        let (tx, rx) = mpsc::channel(limits.actor_mailbox);
        let me = DocActor {
            pid,
            store,
            registry,
            limits,
            doc,
            actor,
            peers: HashMap::new(),
            bindings: HashMap::new(),
            uncompacted,
            compaction: None,
            split_heads: None,
            deferred: None,
            revoked: HashSet::new(),
        };
        // A split published by an earlier actor of this document (one that stopped without
        // being evicted) would not be cleared when this one changes the document.
        me.registry.clear_split(pid);
        // Boxed: the task then holds a pointer instead of the actor's state, which async fns
        // otherwise keep twice (argument and local), ~4 KiB each.
        tokio::spawn(Box::new(me).run(rx));
        Ok(tx)
    }

    async fn run(mut self: Box<Self>, mut rx: mpsc::Receiver<Command>) {
        loop {
            let idle = self.limits.idle_eviction;
            let cmd = if let Some(cmd) = self.deferred.take() {
                Some(cmd)
            } else if self.peers.is_empty() {
                match tokio::time::timeout(idle, rx.recv()).await {
                    Ok(cmd) => cmd,
                    Err(_) => {
                        if Box::pin(self.evict_if_idle(&rx)).await {
                            return;
                        }
                        continue;
                    }
                }
            } else {
                rx.recv().await
            };
            let Some(cmd) = cmd else { return };
            // The work on a command is a large future (a candidate document and the merge's
            // state held across the commit): boxed, it takes memory only while it runs instead
            // of sitting in every live document's task. With the actor boxed too, the task's
            // future went from about 18 KiB to under 1 KiB (heaptrack had shown ~22 KiB per live
            // document allocated by the spawn).
            if let Command::Apply { user, op, reply } = cmd {
                let batch = self.gather_batch((user, op, reply), &mut rx);
                Box::pin(self.apply_batch(batch)).await;
                continue;
            }
            Box::pin(self.handle(cmd)).await;
        }
    }

    /// Compacts (and waits for it) while still registered, then leaves the registry if nothing
    /// arrived meanwhile; true once evicted. Compacting first means an actor started for this
    /// document after the eviction never compacts alongside this one.
    async fn evict_if_idle(&mut self, rx: &mpsc::Receiver<Command>) -> bool {
        self.finish_compaction().await;
        self.compact_if_due(0).await;
        self.finish_compaction().await;
        let evicted = self.registry.evict_if_idle(self.pid, rx).await;
        if evicted {
            tracing::debug!(partnership = %self.pid, "document evicted");
        }
        evicted
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Attach {
                conn,
                user,
                peer_id,
                storage_id,
                read_only,
                out,
                reply,
            } => {
                let r = self
                    .attach(conn, user, peer_id, storage_id, read_only, out)
                    .await;
                let _ = reply.send(r);
            }
            Command::Receive {
                conn,
                message,
                reply,
            } => {
                let r = self.receive(conn, message).await;
                self.drop_stale_split();
                let _ = reply.send(r);
            }
            Command::Ephemeral { conn, data } => self.forward_ephemeral(conn, data),
            Command::Detach { conn } => self.detach(conn).await,
            Command::Apply { user, op, reply } => self.apply_batch(vec![(user, op, reply)]).await,
            Command::Split { reply } => {
                let _ = reply.send(self.split());
            }
            Command::Revoke { user, reply } => {
                self.revoke(user).await;
                let _ = reply.send(());
            }
        }
        // Whatever the command, a split computed at other heads is not served again.
        self.drop_stale_split();
    }

    /// The split of the document as it is now, published in the registry for the reads that
    /// follow until the document changes.
    fn split(&mut self) -> Result<Arc<DocSplit>, SyncError> {
        let heads = self.doc.get_heads();
        let split = Arc::new(split_doc::document_split(&self.doc).map_err(SyncError::Op)?);
        self.registry.publish_split(self.pid, split.clone());
        self.split_heads = Some(heads);
        Ok(split)
    }

    /// Withdraws the published split when the document no longer has the heads it was
    /// computed at. Runs before any answer about a change is sent, so a read that follows an
    /// acknowledged write never sees the split from before it.
    fn drop_stale_split(&mut self) {
        if let Some(heads) = &self.split_heads {
            if *heads != self.doc.get_heads() {
                self.registry.clear_split(self.pid);
                self.split_heads = None;
            }
        }
    }

    async fn attach(
        &mut self,
        conn: ConnId,
        user: UserId,
        peer_id: String,
        storage_id: Option<String>,
        read_only: bool,
        out: mpsc::Sender<Outbound>,
    ) -> Result<(), SyncError> {
        if self.revoked.contains(&conn) {
            return Err(SyncError::AccessEnded);
        }
        // The document's own status decides, not the connection's view of it at join: a pause
        // written since then already holds.
        let read_only = read_only || self.paused();
        let mut state = sync::State::new();
        if read_only {
            state = sync::State::new_read_only();
        } else if let Some(sid) = &storage_id {
            if let Some(bytes) = self.store.load_sync_state(self.pid.0, user.0, sid).await? {
                if let Ok(s) = sync::State::decode(&bytes) {
                    state = s;
                }
            }
        }
        let first_of_user = !self.peers.values().any(|p| p.user == user);
        self.peers.insert(
            conn,
            Peer {
                user,
                peer_id,
                storage_id,
                state,
                answered_at: None,
                read_only,
                out,
            },
        );
        if first_of_user {
            self.announce_presence(user, true).await;
        }
        // Tell the partner's presence to the newcomer too.
        self.send_partner_presence_to(conn, user);
        Ok(())
    }

    async fn detach(&mut self, conn: ConnId) {
        let Some(peer) = self.peers.remove(&conn) else {
            return;
        };
        if let Some(sid) = &peer.storage_id {
            let bytes = peer.state.encode();
            if let Err(err) = self
                .store
                .save_sync_state(self.pid.0, peer.user.0, sid, &bytes, Utc::now())
                .await
            {
                tracing::warn!(error = %err, "cannot save a peer's sync state");
            }
        }
        if !self.peers.values().any(|p| p.user == peer.user) {
            self.announce_presence(peer.user, false).await;
        }
    }

    /// Sends `partner:online`/`partner:offline` about `user` to the partner's connections, and
    /// keeps `users.last_seen` current. The write runs beside the actor: it is a durable commit,
    /// and waiting for it held up the new connection's first sync message (and every other
    /// message of the document) by a WAL flush; the stored time only ever moves forward, so
    /// writes finishing out of order keep the latest.
    async fn announce_presence(&mut self, user: UserId, online: bool) {
        let now = Utc::now();
        let store = self.store.clone();
        tokio::spawn(async move {
            if let Err(err) = store.touch_last_seen(user.0, now).await {
                tracing::warn!(error = %err, "cannot record last seen");
            }
        });
        if let Some(events) = self.registry.publisher(self.pid) {
            let _ = events.send(Arc::new(DocEvent::Presence {
                user,
                online,
                at: now,
            }));
        }
        let data = presence::encode(user, online, now);
        let targets: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.user != user)
            .map(|(c, _)| *c)
            .collect();
        for c in targets {
            self.send(
                c,
                Outbound::Ephemeral {
                    sender: super::SERVER_PEER_ID.to_string(),
                    data: data.clone(),
                },
            );
        }
    }

    fn send_partner_presence_to(&mut self, conn: ConnId, user: UserId) {
        let online_partners: HashSet<UserId> = self
            .peers
            .values()
            .filter(|p| p.user != user)
            .map(|p| p.user)
            .collect();
        for partner in online_partners {
            let data = presence::encode(partner, true, Utc::now());
            self.send(
                conn,
                Outbound::Ephemeral {
                    sender: super::SERVER_PEER_ID.to_string(),
                    data,
                },
            );
        }
    }

    fn forward_ephemeral(&mut self, from: ConnId, data: Vec<u8>) {
        let Some(sender) = self.peers.get(&from).map(|p| p.peer_id.clone()) else {
            return;
        };
        let targets: Vec<ConnId> = self.peers.keys().copied().filter(|c| *c != from).collect();
        for c in targets {
            self.send(
                c,
                Outbound::Ephemeral {
                    sender: sender.clone(),
                    data: data.clone(),
                },
            );
        }
    }

    /// Queues a message for a connection. A connection whose queue is full reads too slowly:
    /// it is dropped (its stream ends and it closes) rather than buffered without bound.
    fn send(&mut self, conn: ConnId, msg: Outbound) {
        let full = match self.peers.get(&conn) {
            Some(p) => p.out.try_send(msg).is_err(),
            None => false,
        };
        if full {
            tracing::warn!(partnership = %self.pid, conn, "dropping a connection that reads too slowly");
            self.peers.remove(&conn);
        }
    }

    /// Sends every connection whatever sync message its state calls for. A peer whose state
    /// and document are as they were when it was last answered is skipped (see
    /// [`Peer::answered_at`]): after a message without changes, only its sender is asked.
    fn fan_out(&mut self) {
        let heads = self.doc.get_heads();
        let conns: Vec<ConnId> = self.peers.keys().copied().collect();
        for c in conns {
            let msg = match self.peers.get_mut(&c) {
                Some(p) if p.answered_at.as_ref() == Some(&heads) => None,
                Some(p) => {
                    p.answered_at = Some(heads.clone());
                    self.doc.generate_sync_message(&mut p.state).map(|mut m| {
                        // No flags means no version-2 support: peers then send their changes
                        // one by one, which are bounded before applying, never a whole-document
                        // chunk (refused: see `parse_changes`). Read-only peers keep the flags,
                        // whose READ_ONLY bit tells them to keep their changes (which are
                        // dropped here).
                        // A sync reset (the peer was read-write again after a pause) keeps them
                        // too: the flag asks the peer to send again what it held back.
                        let reset = m
                            .flags
                            .is_some_and(|f| f.contains(MessageFlags::SYNC_RESET));
                        if !p.read_only && !reset {
                            m.flags = None;
                        }
                        m
                    })
                }
                None => None,
            };
            if let Some(m) = msg {
                self.send(c, Outbound::Sync(m.encode()));
            }
        }
    }

    async fn receive(&mut self, conn: ConnId, bytes: Vec<u8>) -> Result<(), SyncError> {
        if self.revoked.contains(&conn) {
            return Err(SyncError::AccessEnded);
        }
        self.follow_status();
        let peer = self.peers.get(&conn).ok_or(SyncError::NotAttached)?;
        let (user, read_only) = (peer.user, peer.read_only);
        let mut message = sync::Message::decode(&bytes).map_err(|_| SyncError::Malformed)?;
        if read_only {
            // Paused: the peer still receives the document; its changes wait on its side (its
            // read-only sync state tells it so) and nothing of them is applied or stored.
            message.changes = sync::ChunkList::empty();
        }
        let new: Vec<Change> = parse_changes(&message, &self.limits)?
            .into_iter()
            .filter(|c| self.doc.get_change_meta_by_hash(&c.hash()).is_none())
            .collect();
        check_values(&self.doc, &new, &self.limits)?;
        // Changes automerge queued earlier (their dependencies were missing) are applied by
        // whichever later message completes them, so while any are queued, what applying adds is
        // not just `new`: take the slow path, which checks and stores everything that was added.
        if !deps_satisfied(&self.doc, &new) || !self.doc.get_missing_deps(&[]).is_empty() {
            return self.receive_on_clone(conn, user, message).await;
        }
        let mut bindings = self.check_authorship(user, &new).await?;
        // A backlog larger than one merge (a device back from a long time offline) is taken in
        // several merges, in causal order, each enforced and committed on its own; the last one
        // goes through the sync exchange below like any message.
        let mut merges = in_merges(new, &self.limits);
        let new = merges.pop().unwrap_or_default();
        for earlier in merges {
            self.merge_changes(user, earlier, std::mem::take(&mut bindings))
                .await?;
        }
        if message.changes.len() != new.len() {
            message.changes = sync::ChunkList::from(
                new.iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        let before = if new.is_empty() {
            None
        } else {
            let touched = touched_before_apply(&self.doc, &new);
            Some(Before::capture(&self.doc, touched))
        };
        let peer = self.peers.get_mut(&conn).ok_or(SyncError::NotAttached)?;
        peer.answered_at = None;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.doc.receive_sync_message(&mut peer.state, message)
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "sync message refused by automerge");
                self.recover(conn).await?;
                return Err(SyncError::Malformed);
            }
            Err(_) => {
                tracing::error!(partnership = %self.pid, "automerge panicked applying a sync message");
                self.recover(conn).await?;
                return Ok(());
            }
        }
        if let Some(before) = before {
            self.commit(user, &before, new, bindings).await?;
        }
        self.fan_out();
        Ok(())
    }

    /// Applies, enforces and commits one merge's worth of a backlog outside the sync exchange
    /// (its last part goes through the exchange, which then answers for all of it).
    async fn merge_changes(
        &mut self,
        user: UserId,
        changes: Vec<Change>,
        bindings: Vec<(String, Uuid)>,
    ) -> Result<(), SyncError> {
        let touched = touched_before_apply(&self.doc, &changes);
        let before = Before::capture(&self.doc, touched);
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.doc.apply_changes(changes.iter().cloned())
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "a backlog's changes were refused by automerge");
                self.reload().await?;
                return Err(SyncError::Malformed);
            }
            Err(_) => {
                tracing::error!(partnership = %self.pid, "automerge panicked applying a backlog");
                self.reload().await?;
                return Err(SyncError::Malformed);
            }
        }
        self.commit(user, &before, changes, bindings).await?;
        self.fan_out();
        Ok(())
    }

    /// The slow path for changes whose dependencies are not all known (automerge queues them,
    /// so what applying adds is not exactly the message's changes): apply to a clone, inspect
    /// what it added, and adopt the clone only if it passes.
    async fn receive_on_clone(
        &mut self,
        conn: ConnId,
        user: UserId,
        message: sync::Message,
    ) -> Result<(), SyncError> {
        let peer = self.peers.get(&conn).ok_or(SyncError::NotAttached)?;
        let mut state = peer.state.clone();
        let mut candidate = self.doc.clone();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            candidate.receive_sync_message(&mut state, message)
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(SyncError::Malformed),
            Err(_) => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.state = sync::State::new();
                    p.answered_at = None;
                }
                return Ok(());
            }
        }
        let new = enforce::new_changes(&self.doc, &candidate);
        check_limits(&new, &self.limits)?;
        check_values(&self.doc, &new, &self.limits)?;
        let bindings = self.check_authorship(user, &new).await?;
        if !new.is_empty() {
            let touched = splitsave_sync_core::touched::touched_by(&self.doc, &candidate, &new);
            let before = Before::capture(&self.doc, touched);
            let previous = std::mem::replace(&mut self.doc, candidate);
            if let Err(err) = self.commit(user, &before, new, bindings).await {
                self.doc = previous;
                return Err(err);
            }
        } else {
            self.doc = candidate;
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.state = state;
            p.answered_at = None;
        }
        self.fan_out();
        Ok(())
    }

    /// Refuses the message when a new change carries the server's actor prefix or an actor id
    /// bound to another user; returns the actor ids to bind to `user` in the commit.
    async fn check_authorship(
        &mut self,
        user: UserId,
        new: &[Change],
    ) -> Result<Vec<(String, Uuid)>, SyncError> {
        let mut to_bind = Vec::new();
        let mut seen = HashSet::new();
        for c in new {
            let actor = c.actor_id().clone();
            if !seen.insert(actor.clone()) {
                continue;
            }
            if is_server_actor(&actor) {
                return Err(SyncError::ForeignActor);
            }
            let owner = match self.bindings.get(&actor) {
                Some(u) => Some(*u),
                None => self
                    .store
                    .actor_owner(self.pid.0, &actor.to_hex_string())
                    .await?
                    .map(UserId),
            };
            match owner {
                Some(u) if u == user => {
                    self.bindings.insert(actor, u);
                }
                Some(_) => return Err(SyncError::ForeignActor),
                None => to_bind.push((actor.to_hex_string(), user.0)),
            }
        }
        Ok(to_bind)
    }

    /// Enforces, compensates and commits a merge that has been applied to `self.doc`. On a
    /// storage failure the document is reloaded from storage (nothing unacknowledged survives in
    /// memory) and the error returned.
    async fn commit(
        &mut self,
        user: UserId,
        before: &Before,
        new: Vec<Change>,
        bindings: Vec<(String, Uuid)>,
    ) -> Result<(), SyncError> {
        let now = Millis::now();
        let settled = match settle(&mut self.doc, before, &new, user, now) {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(error = %err, "enforcement failed");
                self.reload().await?;
                return Err(SyncError::Internal);
            }
        };
        let enforcement = settled.enforcement;
        let mut changes: Vec<NewChange> =
            new.iter().map(|c| stored_change(c, Some(user.0))).collect();
        // The client's changes and the server's (rescue, compensation) together make the
        // merge's events.
        let mut merged = new;
        for hash in settled.server_changes {
            if let Some(c) = self.doc.get_change_by_hash(&hash) {
                changes.push(stored_change(&c, None));
                merged.push(c);
            }
        }
        let rows = materialize::rows_for(&self.doc, &enforcement.affected())
            .map(|m| m.changes)
            .unwrap_or_default();
        self.persist(changes, bindings, rows, user).await?;
        self.publish(&merged, user);
        Ok(())
    }

    async fn persist(
        &mut self,
        changes: Vec<NewChange>,
        bindings: Vec<(String, Uuid)>,
        rows: Vec<materialize::RowChange>,
        user: UserId,
    ) -> Result<(), SyncError> {
        let hashes: Vec<String> = changes.iter().map(|c| c.hash.clone()).collect();
        let bound: Vec<ActorId> = bindings
            .iter()
            .filter_map(|(hex, _)| ActorId::try_from(hex.as_str()).ok())
            .collect();
        let commit = MergeCommit {
            changes,
            bindings,
            rows,
        };
        match self.registry.committer().commit(self.pid.0, commit).await {
            Ok(_) => {
                // Before anyone hears of the change (events, sync acknowledgements, answers).
                self.drop_stale_split();
                for a in bound {
                    self.bindings.insert(a, user);
                }
                self.uncompacted.extend(hashes);
                self.compact_if_due(self.limits.compact_after_changes).await;
                Ok(())
            }
            Err(crate::store::StoreError::Conflict(crate::store::Conflict::ActorBound)) => {
                self.reload().await?;
                Err(SyncError::ForeignActor)
            }
            Err(err) => {
                tracing::error!(error = %err, partnership = %self.pid, "merge commit failed");
                self.reload().await?;
                Err(SyncError::Store(err))
            }
        }
    }

    /// The operation just received plus the REST operations queued right behind it (up to
    /// [`MAX_APPLY_BATCH`]); the first other command met is kept for next.
    fn gather_batch(
        &mut self,
        first: PendingOp,
        rx: &mut mpsc::Receiver<Command>,
    ) -> Vec<PendingOp> {
        let mut batch = vec![first];
        while batch.len() < MAX_APPLY_BATCH {
            match rx.try_recv() {
                Ok(Command::Apply { user, op, reply }) => batch.push((user, op, reply)),
                Ok(other) => {
                    self.deferred = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        batch
    }

    /// Runs REST operations in order, each as its user in its own Automerge change, then commits
    /// every change they wrote, with the rows they touch, in one database transaction (one WAL
    /// flush for the batch: group commit), fans out, and only then answers each. When the
    /// commit fails the document is reloaded from storage and every operation of the batch is
    /// answered with an error: none of them is acknowledged without being durable, and none
    /// answers from a state that was not committed.
    async fn apply_batch(&mut self, batch: Vec<PendingOp>) {
        let mut answers = Vec::with_capacity(batch.len());
        let mut written: Vec<(UserId, Vec<Change>)> = Vec::new();
        for (user, op, reply) in batch {
            let now = Millis::now();
            let heads = self.doc.get_heads();
            let result = self.doc.transact_with(
                |_| {
                    CommitOptions::default()
                        .with_message(format!("splitsave: operation by {user}"))
                        .with_time(now.0 / 1000)
                },
                |tx| op(tx),
            );
            let answer = match result {
                Ok(success) => {
                    let new = self.doc.get_changes(&heads);
                    if !new.is_empty() {
                        written.push((user, new));
                    }
                    Ok(success.result)
                }
                Err(failure) => Err(SyncError::Op(failure.error)),
            };
            answers.push((reply, answer));
        }
        if !written.is_empty() {
            let all: Vec<Change> = written
                .iter()
                .flat_map(|(_, c)| c.iter().cloned())
                .collect();
            let touched: Touched = touched_after_apply(&self.doc, &all);
            let rows = materialize::rows_for(&self.doc, &touched)
                .map(|m| m.changes)
                .unwrap_or_default();
            let changes = written
                .iter()
                .flat_map(|(user, new)| new.iter().map(|c| stored_change(c, Some(user.0))))
                .collect();
            let first_user = written[0].0;
            match self.persist(changes, Vec::new(), rows, first_user).await {
                Ok(()) => {
                    for (user, new) in &written {
                        self.publish(new, *user);
                    }
                    // A pause or resume written by this batch holds for the next message.
                    self.follow_status();
                    self.fan_out();
                }
                Err(err) => {
                    let mut err = Some(err);
                    for (_, answer) in answers.iter_mut().filter(|(_, a)| a.is_ok()) {
                        // The cause goes to the first; the rest learn the write did not happen.
                        *answer = Err(err.take().unwrap_or(SyncError::Unavailable));
                    }
                }
            }
        }
        self.drop_stale_split();
        for (reply, answer) in answers {
            let _ = reply.send(answer);
        }
    }

    /// Whether the partnership is paused, as its document says (the server writes the status
    /// into the document through this actor before a pause is answered, so the next message
    /// after it sees it).
    fn paused(&self) -> bool {
        matches!(
            splitsave_sync_core::read::read_partnership(&self.doc),
            Ok(p) if p.status == splitsave_sync_core::enums::PartnershipStatus::Paused
        )
    }

    /// Makes every peer read-only while the partnership is paused, and read-write again once it
    /// is resumed. A peer switched to read-only is told so (its changes wait on its side); one
    /// switched back is asked to send again what it held back (automerge's sync reset).
    fn follow_status(&mut self) {
        let paused = self.paused();
        for p in self.peers.values_mut() {
            if p.read_only != paused {
                p.read_only = paused;
                p.state.set_read_only(paused);
                p.answered_at = None;
            }
        }
    }

    /// Ends access for `user`'s connections (every connection when `None`): they are detached
    /// (their outbound stream ends, so they close) and any message they still send is refused,
    /// never applied. Called when a partnership ends, an account is deleted or a password
    /// changes, before the request that caused it is answered.
    async fn revoke(&mut self, user: Option<UserId>) {
        let conns: Vec<ConnId> = self
            .peers
            .iter()
            .filter(|(_, p)| user.is_none_or(|u| p.user == u))
            .map(|(c, _)| *c)
            .collect();
        for c in conns {
            self.revoked.insert(c);
            self.send(c, Outbound::End("access to this document ended: reconnect"));
            // Detaching drops the sender, which ends the connection's outbound stream (it
            // closes), and tells the partner the user went offline.
            self.detach(c).await;
        }
    }

    /// Publishes the typed events of committed changes to subscribers.
    fn publish(&self, changes: &[Change], by: UserId) {
        let Some(channel) = self.registry.publisher(self.pid) else {
            return;
        };
        let events = splitsave_sync_core::events::events(&self.doc, changes);
        if !events.is_empty() {
            let _ = channel.send(Arc::new(DocEvent::Merge { events, by }));
        }
    }

    /// After a failed apply: reload from storage and start that peer's exchange afresh.
    async fn recover(&mut self, conn: ConnId) -> Result<(), SyncError> {
        self.reload().await?;
        if let Some(p) = self.peers.get_mut(&conn) {
            p.state = sync::State::new();
            p.answered_at = None;
        }
        Ok(())
    }

    /// Replaces the in-memory document with what storage holds (the truth), and restarts every
    /// peer's sync exchange so nobody relies on heads that were never committed.
    async fn reload(&mut self) -> Result<(), SyncError> {
        let (doc, uncompacted) = load(&*self.store, self.pid, &self.actor).await?;
        self.doc = doc;
        self.uncompacted = uncompacted;
        self.drop_stale_split();
        for p in self.peers.values_mut() {
            p.state = sync::State::new();
            p.answered_at = None;
        }
        Ok(())
    }

    /// Compacts when more than `threshold` changes are stored beyond the latest snapshot:
    /// saves a snapshot and deletes the changes it covers, in one transaction, in the
    /// background (the snapshot bytes are taken here, from the actor's current document).
    async fn compact_if_due(&mut self, threshold: usize) {
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
    async fn finish_compaction(&mut self) {
        if let Some(running) = self.compaction.take() {
            let _ = running.await;
        }
    }
}

/// The first bytes of every Automerge chunk (document, change, compressed change, bundle).
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of a whole document.
const CHUNK_DOCUMENT: u8 = 0;
/// Chunk type of a DEFLATE-compressed change.
const CHUNK_COMPRESSED_CHANGE: u8 = 2;
/// Chunk type of a bundle of changes.
const CHUNK_BUNDLE: u8 = 3;

/// Parses the message's chunks as individual changes, refusing before anything is decompressed
/// beyond the limits or applied: malformed or corrupt chunks, whole-document and bundle chunks
/// (their expansion cannot be bounded without loading them; the server advertises no
/// version-2 support, so well-behaved peers never send them), and compressed changes that
/// inflate beyond `max_change_bytes`. Then [`check_limits`].
fn parse_changes(message: &sync::Message, limits: &SyncLimits) -> Result<Vec<Change>, SyncError> {
    if message.changes.len() > limits.max_changes_per_message {
        return Err(SyncError::TooLarge("too many changes in one message"));
    }
    let mut changes = Vec::with_capacity(message.changes.len());
    let mut ops = 0usize;
    for chunk in message.changes.iter() {
        let (kind, body) = chunk_parts(chunk).ok_or(SyncError::Malformed)?;
        match kind {
            CHUNK_DOCUMENT | CHUNK_BUNDLE => {
                return Err(SyncError::TooLarge(
                    "whole-document chunks are not accepted: send changes",
                ))
            }
            CHUNK_COMPRESSED_CHANGE => inflates_within(body, limits.max_change_bytes)?,
            _ => {}
        }
        let change = Change::from_bytes(chunk.to_vec()).map_err(|_| SyncError::Malformed)?;
        if !checksum_matches(chunk, &change) {
            return Err(SyncError::Malformed);
        }
        // Counted as each change is parsed: automerge walks every operation of a change while
        // parsing it, and a change of a hundred bytes can hold a million run-length-encoded
        // operations, so thousands of them must not all be parsed before the total is checked.
        ops = ops.saturating_add(change.len());
        if ops > limits.max_ops_per_message {
            return Err(SyncError::TooLarge("too many operations in one message"));
        }
        changes.push(change);
    }
    check_limits(&changes, limits)?;
    Ok(changes)
}

/// Automerge parses a change without checking the chunk's checksum (the first four bytes of the
/// change's hash, kept in the header; a compressed chunk carries its uncompressed change's). A
/// corrupted byte can still parse as some other change; storing it would leave a document that
/// no longer loads, so a mismatch is refused as malformed.
fn checksum_matches(chunk: &[u8], change: &Change) -> bool {
    chunk.get(4..8) == Some(&change.hash().0[..4])
}

/// The type byte and the body of a chunk (magic, 4-byte checksum, type, LEB128 body length,
/// body); `None` unless the header is well-formed and the length matches exactly.
fn chunk_parts(chunk: &[u8]) -> Option<(u8, &[u8])> {
    if chunk.len() < 10 || chunk[..4] != CHUNK_MAGIC {
        return None;
    }
    let kind = chunk[8];
    let mut length = 0u64;
    let mut used = 0;
    for (i, byte) in chunk[9..].iter().enumerate().take(10) {
        length |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            used = i + 1;
            break;
        }
    }
    let body = chunk.get(9 + used..)?;
    (used > 0 && u64::try_from(body.len()).ok()? == length).then_some((kind, body))
}

/// Inflates a compressed change's body into nothing, stopping past `limit` bytes: a small
/// change that expands to megabytes is refused without being decompressed, let alone parsed.
fn inflates_within(body: &[u8], limit: usize) -> Result<(), SyncError> {
    use std::io::Read;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut inflated = flate2::bufread::DeflateDecoder::new(body).take(cap);
    let size =
        std::io::copy(&mut inflated, &mut std::io::sink()).map_err(|_| SyncError::Malformed)?;
    if size >= cap {
        return Err(SyncError::TooLarge("a change is too large"));
    }
    Ok(())
}

/// Bounds what a message may expand to before anything is applied: number of changes, number
/// of operations, and the uncompressed size of each change.
fn check_limits(changes: &[Change], limits: &SyncLimits) -> Result<(), SyncError> {
    if changes.len() > limits.max_changes_per_message {
        return Err(SyncError::TooLarge("too many changes in one message"));
    }
    let mut ops = 0usize;
    for c in changes {
        if c.raw_bytes().len() > limits.max_change_bytes {
            return Err(SyncError::TooLarge("a change is too large"));
        }
        if c.len() > limits.max_ops_per_merge {
            return Err(SyncError::TooLarge("a change has too many operations"));
        }
        ops += c.len();
        if ops > limits.max_ops_per_message {
            return Err(SyncError::TooLarge("too many operations in one message"));
        }
    }
    Ok(())
}

/// Splits new changes (whose dependencies are all in the document or among them) into merges of
/// at most `max_changes_per_merge` changes and `max_ops_per_merge` operations, in causal order
/// (every change after its dependencies), so each merge applies on top of the ones before it.
/// Nearly every message is one merge, returned as it came.
fn in_merges(new: Vec<Change>, limits: &SyncLimits) -> Vec<Vec<Change>> {
    let ops: usize = new.iter().map(Change::len).sum();
    if new.len() <= limits.max_changes_per_merge && ops <= limits.max_ops_per_merge {
        return vec![new];
    }
    let mut merges = vec![Vec::new()];
    let mut merge_ops = 0;
    for change in causal_order(new) {
        let current = merges.last().map_or(0, Vec::len);
        if current > 0
            && (current >= limits.max_changes_per_merge
                || merge_ops + change.len() > limits.max_ops_per_merge)
        {
            merges.push(Vec::new());
            merge_ops = 0;
        }
        merge_ops += change.len();
        if let Some(m) = merges.last_mut() {
            m.push(change);
        }
    }
    merges
}

/// The changes ordered so that each comes after those of its dependencies that are among them
/// (depth-first, iteratively: a backlog can be a chain of 100,000 changes).
fn causal_order(changes: Vec<Change>) -> Vec<Change> {
    let index: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let mut placed = vec![false; changes.len()];
    let mut order = Vec::with_capacity(changes.len());
    for start in 0..changes.len() {
        let mut stack = vec![(start, false)];
        while let Some((i, deps_done)) = stack.pop() {
            if placed[i] {
                continue;
            }
            if deps_done {
                placed[i] = true;
                order.push(i);
                continue;
            }
            stack.push((i, true));
            for d in changes[i].deps() {
                if let Some(&j) = index.get(d) {
                    if !placed[j] {
                        stack.push((j, false));
                    }
                }
            }
        }
    }
    let mut slots: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Longest map key a change may write (the schema's are at most 36 bytes; unknown keys that a
/// newer app adds have room to spare).
const MAX_KEY_BYTES: usize = 256;

/// Refuses, before anything is applied, a change that writes a value larger than
/// `max_value_bytes`: a string or bytes put whole, or text inserted into one object (what the
/// message inserts plus what the object already holds). Enforcement would remove such a value
/// from the document, but not from the history that every replica downloads.
fn check_values(doc: &Automerge, changes: &[Change], limits: &SyncLimits) -> Result<(), SyncError> {
    use automerge::legacy::{Key, ObjectId, OpType};
    use automerge::ScalarValue;
    let too_large = || SyncError::TooLarge("a value is too large");
    let mut inserted: HashMap<String, usize> = HashMap::new();
    for change in changes {
        for op in change.decode().operations {
            // A map key is a value too: every key of the schema is a UUID, a field name or a
            // month, and a long one would stay in the history just the same.
            if matches!(&op.key, Key::Map(k) if k.len() > MAX_KEY_BYTES) {
                return Err(SyncError::TooLarge("a key is too long"));
            }
            let size = match &op.action {
                OpType::Put(ScalarValue::Str(s)) => s.len(),
                OpType::Put(ScalarValue::Bytes(b)) => b.len(),
                _ => continue,
            };
            if size > limits.max_value_bytes {
                return Err(too_large());
            }
            if op.insert {
                if let ObjectId::Id(id) = &op.obj {
                    *inserted.entry(id.to_string()).or_default() += size;
                }
            }
        }
    }
    for (obj, added) in inserted {
        let held = doc.import(&obj).ok().map_or(0, |(id, _)| doc.length(&id));
        if held + added > limits.max_value_bytes {
            return Err(too_large());
        }
    }
    Ok(())
}

/// True when every new change's dependencies are in the document or among the new changes (so
/// applying the message adds exactly these changes).
fn deps_satisfied(doc: &Automerge, new: &[Change]) -> bool {
    let incoming: HashSet<ChangeHash> = new.iter().map(Change::hash).collect();
    new.iter().all(|c| {
        c.deps()
            .iter()
            .all(|d| incoming.contains(d) || doc.get_change_meta_by_hash(d).is_some())
    })
}

fn stored_change(c: &Change, user: Option<Uuid>) -> NewChange {
    NewChange {
        hash: c.hash().to_string(),
        actor: c.actor_id().to_hex_string(),
        seq: i64::try_from(c.seq()).unwrap_or(i64::MAX),
        user_id: user,
        bytes: c.raw_bytes().to_vec(),
    }
}

/// Loads a document from storage: the latest snapshot plus the changes stored after it.
async fn load(
    store: &dyn Store,
    pid: PartnershipId,
    actor: &ActorId,
) -> Result<(Automerge, Vec<String>), SyncError> {
    let (snapshot, changes) = store.load_document(pid.0).await?;
    let Some(snapshot) = snapshot else {
        return Err(SyncError::NoDocument);
    };
    let mut doc = Automerge::load(&snapshot).map_err(|err| {
        tracing::error!(error = %err, partnership = %pid, "stored snapshot unreadable");
        SyncError::Internal
    })?;
    let mut hashes = Vec::with_capacity(changes.len());
    let mut parsed = Vec::with_capacity(changes.len());
    for bytes in changes {
        match Change::from_bytes(bytes) {
            Ok(c) => {
                hashes.push(c.hash().to_string());
                parsed.push(c);
            }
            Err(_) => {
                tracing::error!(partnership = %pid, "stored change unreadable");
                return Err(SyncError::Internal);
            }
        }
    }
    // One batch: automerge 0.12 walks the whole document on every apply, so applying the
    // changes one by one made opening a document cost O(changes x document).
    doc.apply_changes(parsed).map_err(|_| SyncError::Internal)?;
    doc.set_actor(actor.clone());
    Ok((doc, hashes))
}

/// How long an actor with no connections stays loaded.
pub const DEFAULT_IDLE_EVICTION: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn one_change() -> Vec<u8> {
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(
                automerge::ROOT,
                "name",
                "a string long enough to corrupt safely",
            )?;
            Ok(())
        })
        .expect("change");
        doc.get_changes(&[])[0].raw_bytes().to_vec()
    }

    #[test]
    fn a_corrupted_byte_that_still_parses_is_refused_by_its_checksum() {
        let bytes = one_change();
        let good = Change::from_bytes(bytes.clone()).expect("parses");
        assert!(checksum_matches(&bytes, &good));
        // Change one character of the string value: still a well-formed change.
        let at = bytes
            .windows(6)
            .position(|w| w == b"string")
            .expect("the value is in the chunk");
        let mut corrupt = bytes.clone();
        corrupt[at] = b'S';
        let parsed = Change::from_bytes(corrupt.clone()).expect("automerge still parses it");
        assert!(!checksum_matches(&corrupt, &parsed));
        let limits = SyncLimits::default();
        let message = sync::Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: Vec::new(),
            changes: vec![corrupt].into(),
            flags: None,
            version: sync::MessageVersion::V1,
        };
        assert!(matches!(
            parse_changes(&message, &limits),
            Err(SyncError::Malformed)
        ));
    }
}
