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

use std::any::Any;
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
use splitsave_sync_core::ops::OpError;
use splitsave_sync_core::split_doc::{self, DocSplit};
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::touched::{touched_after_apply, touched_before_apply, Touched};
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument as _;
use uuid::Uuid;

mod access;
mod catch_up;
mod compaction;
mod ephemeral;
mod history;
mod limits;
mod merge;
mod notify;
mod operations;
mod string_types;

use limits::{check_limits, check_values, deps_satisfied, in_merges, parse_changes};

use super::registry::Registry;
use super::{DocEvent, SyncError, SyncLimits};
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

/// What an operation hands back to its caller once committed: whatever the caller's closure
/// returned, boxed so that one mailbox carries operations of every result type.
/// [`Registry::apply`](super::registry::Registry::apply) boxes it and unboxes it again, so
/// callers never see the box.
pub type OpValue = Box<dyn Any + Send>;

/// An operation run on the document as a user (REST writes), inside one transaction. `Fn` and
/// shareable, so a request can be retried on a fresh actor if the first was evicted meanwhile.
pub type DocOp = Arc<dyn Fn(&mut Transaction<'_>) -> Result<OpValue, OpError> + Send + Sync>;

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
        /// When the connection read it (the merge latency runs from here); `None` while metrics
        /// are off, which then cost no clock read.
        received: Option<std::time::Instant>,
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
    /// Another node committed a merge of this document (at `version`): read what was
    /// committed after what the actor has, apply it, tell the connections and subscribers.
    CatchUp {
        /// The version announced; nothing to do when the actor already has it.
        version: i64,
    },
    /// Another node says `user` is connected to this document there (`online`), or no longer.
    RemotePresence {
        /// Whose presence.
        user: UserId,
        /// The node that says so.
        node: String,
        /// Connected there now?
        online: bool,
    },
    /// Repeat this node's presence to the others; forget what they said too long ago.
    PresenceHeartbeat,
    /// Run an operation as `user` (REST writes), commit it like a merge.
    Apply {
        /// The acting user.
        user: UserId,
        /// The operation.
        op: DocOp,
        /// What the operation returned, once committed and fanned out.
        reply: oneshot::Sender<Result<OpValue, SyncError>>,
        /// The trace of the request that asked for it: the merge's span is its child.
        trace: Option<crate::telemetry::TraceContext>,
    },
    /// Compute the split of the document (or reuse the one computed at the same heads) and
    /// publish it in the registry for reads that follow.
    Split {
        /// The document version the split must include (the actor catches up first when it
        /// is behind).
        at_least: i64,
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
    /// Where the document stands in storage: the version its content is exactly, the snapshot
    /// it was loaded from and the last stored change it has read (see [`Stored`]).
    stored: Stored,
    /// How many times the document was reloaded from storage (so a caller holding an earlier
    /// copy knows not to put it back).
    reloads: u64,
    /// Users connected to this document through other nodes: by node, when it last said so.
    remote_presence: HashMap<UserId, HashMap<String, tokio::time::Instant>>,
    /// The compaction running in the background, if any. One at a time: two in flight could
    /// commit out of order, and the older snapshot would then replace the newer one after the
    /// newer one had deleted the changes the older one lacks.
    compaction: Option<tokio::task::JoinHandle<Option<i64>>>,
    /// The heads at which the split published in the registry was computed, if one is.
    split_heads: Option<Vec<ChangeHash>>,
    /// A command taken from the mailbox while gathering a batch of REST operations, to handle
    /// next.
    deferred: Option<Command>,
    /// Connections whose access was revoked: whatever they still send (or an attempt to attach
    /// again) is refused.
    revoked: HashSet<ConnId>,
    /// Sync merges this actor committed, so that answering a message tells whether it merged
    /// anything (the merge latency is recorded only then).
    merges: u64,
}

/// Most REST operations committed in one transaction (see [`DocActor::apply_batch`]).
const MAX_APPLY_BATCH: usize = 64;

/// A REST operation waiting in a batch: who runs it, what, and where its answer goes.
type PendingOp = (UserId, DocOp, oneshot::Sender<Result<OpValue, SyncError>>);

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
        let Loaded {
            doc,
            uncompacted,
            stored,
        } = load(&*store, pid, &actor).await?;
        let (tx, rx) = mpsc::channel(limits.actor_mailbox);
        let mut me = DocActor {
            pid,
            store,
            registry,
            limits,
            doc,
            actor,
            peers: HashMap::new(),
            bindings: HashMap::new(),
            uncompacted,
            stored,
            reloads: 0,
            remote_presence: HashMap::new(),
            compaction: None,
            split_heads: None,
            deferred: None,
            revoked: HashSet::new(),
            merges: 0,
        };
        // A split published by an earlier actor of this document (one that stopped without
        // being evicted) would not be cleared when this one changes the document.
        me.registry.clear_split(pid);
        me.normalize_string_types().await;
        // Partners connected through other nodes count as online here at once.
        me.registry.ask_presence(pid);
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
            if let Command::Apply {
                user,
                op,
                reply,
                trace,
            } = cmd
            {
                let batch = self.gather_batch((user, op, reply), &mut rx);
                let span = merge_span(self.pid, "rest", trace.as_ref());
                Box::pin(self.apply_batch(batch)).instrument(span).await;
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

    /// One sync message: caught up with what other nodes announced, then received; a merge
    /// made from a state another node had moved on from is made again on the state caught up
    /// from storage (the actor reloaded when its commit failed).
    async fn receive_retrying(&mut self, conn: ConnId, message: &[u8]) -> Result<(), SyncError> {
        self.catch_up_if_announced().await;
        let mut r = self.receive(conn, message).await;
        for attempt in 0..MAX_STALE_RETRIES {
            if !r.as_ref().is_err_and(SyncError::is_stale) {
                break;
            }
            stale_backoff(attempt).await;
            r = self.receive(conn, message).await;
        }
        r
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
                received,
                reply,
            } => {
                let span = merge_span(self.pid, "sync", None);
                let merges = self.merges;
                let r = self.receive_retrying(conn, &message).instrument(span).await;
                self.drop_stale_split();
                // Committed and its acknowledgements queued (`fan_out`): the merge is answered.
                if let Some(received) = received.filter(|_| self.merges != merges && r.is_ok()) {
                    self.registry
                        .metrics()
                        .merge_acknowledged(received.elapsed());
                }
                let _ = reply.send(r.map_err(|e| {
                    if e.is_stale() {
                        SyncError::Unavailable
                    } else {
                        e
                    }
                }));
            }
            Command::CatchUp { version } => {
                if version > self.stored.version {
                    if let Err(err) = self.catch_up(version).await {
                        tracing::warn!(error = %err, partnership = %self.pid, "catching up failed");
                    }
                }
            }
            Command::Ephemeral { conn, data } => self.forward_ephemeral(conn, data),
            Command::RemotePresence { user, node, online } => {
                self.remote_presence(user, node, online);
            }
            Command::PresenceHeartbeat => self.presence_heartbeat(),
            Command::Detach { conn } => self.detach(conn).await,
            Command::Apply {
                user,
                op,
                reply,
                trace,
            } => {
                let span = merge_span(self.pid, "rest", trace.as_ref());
                self.apply_batch(vec![(user, op, reply)])
                    .instrument(span)
                    .await;
            }
            Command::Split { at_least, reply } => {
                if at_least > self.stored.version {
                    if let Err(err) = self.catch_up(at_least).await {
                        let _ = reply.send(Err(err));
                        return;
                    }
                }
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
        self.registry
            .publish_split(self.pid, self.stored.version, split.clone());
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

    /// Publishes the typed events of committed changes to subscribers.
    fn publish(&self, changes: &[Change], by: Option<UserId>) {
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
        let loaded = load(&*self.store, self.pid, &self.actor).await?;
        self.adopt(loaded);
        for p in self.peers.values_mut() {
            p.state = sync::State::new();
            p.answered_at = None;
        }
        Ok(())
    }

    /// Takes a freshly loaded document as the live one.
    fn adopt(&mut self, loaded: Loaded) {
        self.doc = loaded.doc;
        self.uncompacted = loaded.uncompacted;
        self.stored = loaded.stored;
        self.reloads += 1;
        self.drop_stale_split();
    }
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

/// Where a live document stands in storage.
#[derive(Clone, Copy, Debug, Default)]
struct Stored {
    /// The committed version the document's content is exactly (its next merge commits
    /// `version + 1`).
    version: i64,
    /// The row id of the snapshot it was loaded from.
    snapshot_id: i64,
    /// The row id of the last stored change it has read: a catch-up reads the ones after it.
    last_change: i64,
}

/// A document loaded from storage.
struct Loaded {
    doc: Automerge,
    /// Hashes of the stored changes beside the snapshot.
    uncompacted: Vec<String>,
    stored: Stored,
}

/// Loads a document from storage: the latest snapshot plus the changes stored after it, as of
/// one instant (so its content is exactly the version read).
async fn load(store: &dyn Store, pid: PartnershipId, actor: &ActorId) -> Result<Loaded, SyncError> {
    let stored = store.stored_document(pid.0).await?;
    let Some((snapshot_id, snapshot)) = stored.snapshot else {
        return Err(SyncError::NoDocument);
    };
    let mut doc = Automerge::load(&snapshot).map_err(|err| {
        tracing::error!(error = %err, partnership = %pid, "stored snapshot unreadable");
        SyncError::Internal
    })?;
    let last_change = stored.changes.last().map_or(0, |c| c.id);
    let parsed = parse_stored(pid, stored.changes)?;
    let hashes = parsed.iter().map(|(c, _)| c.hash().to_string()).collect();
    // One batch: automerge 0.12 walks the whole document on every apply, so applying the
    // changes one by one made opening a document cost O(changes x document).
    doc.apply_changes(parsed.into_iter().map(|(c, _)| c))
        .map_err(|_| SyncError::Internal)?;
    doc.set_actor(actor.clone());
    Ok(Loaded {
        doc,
        uncompacted: hashes,
        stored: Stored {
            version: stored.version,
            snapshot_id,
            last_change,
        },
    })
}

/// Parses stored changes, keeping who stored each.
fn parse_stored(
    pid: PartnershipId,
    changes: Vec<crate::store::StoredChange>,
) -> Result<Vec<(Change, Option<Uuid>)>, SyncError> {
    changes
        .into_iter()
        .map(|c| match Change::from_bytes(c.bytes) {
            Ok(change) => Ok((change, c.user_id)),
            Err(_) => {
                tracing::error!(partnership = %pid, "stored change unreadable");
                Err(SyncError::Internal)
            }
        })
        .collect()
}

/// How many times a merge is made again after another node committed first, before its sender
/// is told to try later.
const MAX_STALE_RETRIES: u32 = 16;

/// Waits a random time before a merge is made again after another node committed first, up to
/// The span of one message or batch of REST writes worked on by the actor, with its own trace
/// id (a sync message starts a trace; a REST write continues its request's, `parent`).
fn merge_span(
    pid: PartnershipId,
    source: &'static str,
    parent: Option<&crate::telemetry::TraceContext>,
) -> tracing::Span {
    let span = tracing::info_span!(
        "merge",
        partnership = %pid,
        source,
        trace_id = tracing::field::Empty,
    );
    crate::telemetry::place_span(&span, parent);
    span
}

/// 1, 2, 4, ... 32 ms as the attempts go on: two nodes writing one document as fast as they can
/// would otherwise keep colliding (each reloading while the other commits).
async fn stale_backoff(attempt: u32) {
    let most = 1u64 << attempt.min(5);
    let wait = rand::random::<u64>() % (most * 1000 + 1);
    tokio::time::sleep(Duration::from_micros(wait)).await;
}

/// How long an actor with no connections stays loaded.
pub const DEFAULT_IDLE_EVICTION: Duration = Duration::from_secs(120);
