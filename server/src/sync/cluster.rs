//! Several nodes on one PostgreSQL database: how a node hears what the others committed.
//!
//! Correctness never depends on this module. Every merge commit of a document takes the next
//! version of that document (`doc_commits`), so a node whose live copy missed another node's
//! merge cannot commit: its commit fails as stale, it reloads the document from PostgreSQL and
//! makes the merge again (see the document actor). What this module adds is *speed*: the live
//! copies on other nodes learn of a commit soon enough to fan it out to their own connections and
//! `/api/events` subscribers, and rarely hit a stale commit.
//!
//! - **Redis pub/sub, the fast path.** After each commit a node publishes `c <partnership>
//!   <version> <node>` on `<prefix>cluster`, or, when the merge's changes are small (at most
//!   [`NOTICE_CHANGES_MAX`] bytes, which is nearly every merge), `C <partnership> <version>
//!   <node>` followed by the changes themselves; revocations (password change or reset, account
//!   deletion) go out as `r <partnership> <user or -> <node>`. Every node subscribes and hands
//!   commits of documents it holds live to their actors. An actor whose live copy is exactly one
//!   version behind a notice that carries its changes applies them as they are: they are what
//!   PostgreSQL committed (the notice is sent only after the commit). Otherwise (a notice
//!   without changes, or one missed in between) it reads what was committed after what it has
//!   ([`super::doc_actor`]'s catch-up). Carrying the changes spares the other nodes a
//!   PostgreSQL transaction per merge, which is what made propagation across nodes slow.
//! - **Polling PostgreSQL, the slow path.** Every `poll_every` while Redis is not subscribed
//!   (not configured, down, or reconnecting) and every `safety_poll_every` while it is, a node
//!   reads the versions of its live documents in one query and catches up those that moved. A
//!   node that re-subscribes after a gap polls at once, so nothing it missed waits.
//!
//! Publishing never waits on Redis: notices go through a bounded queue to one task, which sends
//! whatever has queued up as one pipeline (one round trip for a burst), and a notice that
//! cannot be sent is dropped (the other nodes' polls find the commit). Presence heartbeats are
//! spread over their period in [`HEARTBEAT_SLOTS`] slices, so they never queue up all at once in
//! front of commit notices.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use splitsave_sync_core::ids::{PartnershipId, UserId};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::registry::Registry;
use crate::store::Store;

/// Notices waiting to be published; beyond it they are dropped (polling covers them).
const QUEUE: usize = 4096;
/// Most notices sent in one pipeline.
const PIPELINE: usize = 256;
/// The most change bytes a commit notice carries; a larger merge is announced without them
/// (the other nodes read it from PostgreSQL).
pub(crate) const NOTICE_CHANGES_MAX: usize = 32 * 1024;
/// How many slices the presence heartbeat is spread over: each tick repeats the presence of
/// the live documents of one slice.
pub(crate) const HEARTBEAT_SLOTS: u32 = 8;
/// Longest a connection attempt to Redis may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Backoff between attempts to reach Redis again.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// How a node takes part in a cluster.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// `REDIS_URL`; without it the nodes learn of each other's commits by polling only.
    pub redis_url: Option<String>,
    /// `REDIS_PREFIX`: the prefix of every Redis key and channel (several deployments, or
    /// parallel tests, can share one Redis).
    pub prefix: String,
    /// How often live documents' versions are polled while Redis is not subscribed.
    pub poll_every: Duration,
    /// How often they are polled while it is (a last resort against a notice lost in between).
    pub safety_poll_every: Duration,
    /// How long a partner connected to another node counts as online without hearing of it
    /// again; nodes repeat their presence every quarter of it, so a node that dies leaves its
    /// users online at most `presence_ttl` + a quarter of it.
    pub presence_ttl: Duration,
}

/// Something one node tells the others.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Notice {
    /// A merge of the document committed as `version`.
    Commit {
        /// The document.
        pid: PartnershipId,
        /// Its new version.
        version: i64,
        /// The merge's changes, when small enough to travel with the notice.
        changes: Option<Arc<CommittedChanges>>,
    },
    /// `user` is connected to the document on the sending node (`online`), or no longer is.
    /// Repeated every [`ClusterConfig::presence_ttl`] / 4 while true: a node that stops
    /// repeating it (it died) stops counting after `presence_ttl`.
    Presence {
        /// The document.
        pid: PartnershipId,
        /// Whose presence.
        user: UserId,
        /// Connected there now?
        online: bool,
    },
    /// `user` has an `/api/events` stream on the document open on the sending node
    /// (`watching`), or no longer has one. Repeated with the presence heartbeats while true: the
    /// other nodes count that user as watching (no push notification) until `presence_ttl`
    /// after they last heard it.
    Watching {
        /// The document.
        pid: PartnershipId,
        /// Who.
        user: UserId,
        /// A stream open there now?
        watching: bool,
    },
    /// The document just became live on the sending node: nodes holding it repeat their
    /// presence at once (instead of at their next heartbeat).
    Who {
        /// The document.
        pid: PartnershipId,
    },
    /// The access of `user` (everyone's when `None`) to the document ended.
    Revoke {
        /// The document.
        pid: PartnershipId,
        /// Whose access.
        user: Option<UserId>,
    },
}

/// The changes of one merge commit, in commit order, each with the user who sent it (`None`
/// for the server's own changes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct CommittedChanges(pub(crate) Vec<(Option<Uuid>, Vec<u8>)>);

impl CommittedChanges {
    /// Bytes of change data carried.
    pub(crate) fn size(&self) -> usize {
        self.0.iter().map(|(_, bytes)| bytes.len()).sum()
    }

    /// Each change as `0` or `1` + the user's 16 bytes, then its length (u32, big-endian) and
    /// its bytes.
    fn encode_into(&self, out: &mut Vec<u8>) {
        for (user, bytes) in &self.0 {
            match user {
                Some(user) => {
                    out.push(1);
                    out.extend_from_slice(user.as_bytes());
                }
                None => out.push(0),
            }
            out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(bytes);
        }
    }

    fn decode(mut body: &[u8]) -> Option<CommittedChanges> {
        let mut changes = Vec::new();
        while let Some((&flag, rest)) = body.split_first() {
            let (user, rest) = match flag {
                0 => (None, rest),
                1 => {
                    let (id, rest) = rest.split_first_chunk::<16>()?;
                    (Some(Uuid::from_bytes(*id)), rest)
                }
                _ => return None,
            };
            let (len, rest) = rest.split_first_chunk::<4>()?;
            let len = usize::try_from(u32::from_be_bytes(*len)).ok()?;
            if rest.len() < len {
                return None;
            }
            let (bytes, rest) = rest.split_at(len);
            changes.push((user, bytes.to_vec()));
            body = rest;
        }
        Some(CommittedChanges(changes))
    }
}

impl Notice {
    fn encode(&self, node: &str) -> Vec<u8> {
        if let Notice::Commit {
            pid,
            version,
            changes: Some(changes),
        } = self
        {
            let mut out = format!("C {pid} {version} {node}\n").into_bytes();
            out.reserve(changes.size() + changes.0.len() * 21);
            changes.encode_into(&mut out);
            return out;
        }
        self.encode_text(node).into_bytes()
    }

    fn encode_text(&self, node: &str) -> String {
        match self {
            Notice::Commit { pid, version, .. } => format!("c {pid} {version} {node}"),
            Notice::Who { pid } => format!("w {pid} {node}"),
            Notice::Presence { pid, user, online } => {
                format!("p {pid} {user} {} {node}", u8::from(*online))
            }
            Notice::Watching {
                pid,
                user,
                watching,
            } => format!("e {pid} {user} {} {node}", u8::from(*watching)),
            Notice::Revoke { pid, user } => {
                let user = user.map_or_else(|| "-".to_owned(), |u| u.to_string());
                format!("r {pid} {user} {node}")
            }
        }
    }

    /// The notice and the node that sent it.
    fn decode(payload: &[u8]) -> Option<(Notice, &str)> {
        if let Some(end) = payload.iter().position(|&b| b == b'\n') {
            let header = std::str::from_utf8(&payload[..end]).ok()?;
            let mut parts = header.split(' ');
            if parts.next()? != "C" {
                return None;
            }
            let pid = PartnershipId(parts.next()?.parse::<Uuid>().ok()?);
            let version = parts.next()?.parse().ok()?;
            let node = parts.next()?;
            if parts.next().is_some() {
                return None;
            }
            let changes = CommittedChanges::decode(&payload[end + 1..])?;
            let notice = Notice::Commit {
                pid,
                version,
                changes: Some(Arc::new(changes)),
            };
            return Some((notice, node));
        }
        let text = std::str::from_utf8(payload).ok()?;
        let mut parts = text.split(' ');
        let kind = parts.next()?;
        let pid = PartnershipId(parts.next()?.parse::<Uuid>().ok()?);
        let notice = match kind {
            "c" => Notice::Commit {
                pid,
                version: parts.next()?.parse().ok()?,
                changes: None,
            },
            "p" => Notice::Presence {
                pid,
                user: UserId(parts.next()?.parse().ok()?),
                online: match parts.next()? {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                },
            },
            "e" => Notice::Watching {
                pid,
                user: UserId(parts.next()?.parse().ok()?),
                watching: match parts.next()? {
                    "1" => true,
                    "0" => false,
                    _ => return None,
                },
            },
            "w" => Notice::Who { pid },
            "r" => Notice::Revoke {
                pid,
                user: match parts.next()? {
                    "-" => None,
                    u => Some(UserId(u.parse().ok()?)),
                },
            },
            _ => return None,
        };
        let node = parts.next()?;
        parts.next().is_none().then_some((notice, node))
    }
}

/// This node's end of the cluster: where the registry sends its notices.
pub(crate) struct ClusterLink {
    notices: mpsc::Sender<Notice>,
    /// Whether the Redis subscription is up (so the other nodes' notices arrive).
    subscribed: Arc<AtomicBool>,
}

impl ClusterLink {
    /// Queues a notice for the other nodes; dropped when the queue is full.
    pub(crate) fn tell(&self, notice: Notice) {
        if self.notices.try_send(notice).is_err() {
            tracing::debug!("cluster notice dropped: queue full");
        }
    }

    /// Whether the other nodes' notices arrive over Redis right now.
    pub(crate) fn subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }
}

/// Starts this node's part in the cluster (publisher, subscriber, poller) and links the
/// registry to it. The tasks end when the registry is dropped.
pub fn start(registry: &Arc<Registry>, store: Arc<dyn Store>, config: ClusterConfig) {
    let node = hex::encode(rand::random::<[u8; 8]>());
    let (tx, rx) = mpsc::channel(QUEUE);
    let subscribed = Arc::new(AtomicBool::new(false));
    let link = ClusterLink {
        notices: tx,
        subscribed: subscribed.clone(),
    };
    if !registry.link_cluster(link) {
        return;
    }
    let weak = Arc::downgrade(registry);
    let client = match config.redis_url.as_deref().map(redis::Client::open) {
        Some(Ok(client)) => Some(client),
        Some(Err(err)) => {
            tracing::error!(error = %err, "REDIS_URL is not usable: the nodes poll instead");
            None
        }
        None => None,
    };
    let channel = format!("{}cluster", config.prefix);
    let (wake_tx, wake_rx) = mpsc::channel(1);
    if let Some(client) = client {
        tokio::spawn(publish(client.clone(), channel.clone(), node.clone(), rx));
        tokio::spawn(subscribe(
            client,
            channel,
            node,
            weak.clone(),
            subscribed.clone(),
            wake_tx,
        ));
    } else {
        // Nobody to tell: notices are only drained.
        tokio::spawn(drain(rx));
    }
    tokio::spawn(heartbeat(weak.clone(), config.presence_ttl / 4));
    tokio::spawn(poll(weak, store, config, subscribed, wake_rx));
}

/// Every `every`, each live document repeats its local presence to the other nodes and forgets
/// remote presence not heard of for too long: one slice of the documents every `every` /
/// [`HEARTBEAT_SLOTS`], so the notices go out evenly rather than in one burst.
async fn heartbeat(registry: std::sync::Weak<Registry>, every: Duration) {
    let every = every.max(Duration::from_millis(100));
    let mut tick = tokio::time::interval(every / HEARTBEAT_SLOTS);
    let mut slot = 0;
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        registry.presence_heartbeat(slot);
        slot = (slot + 1) % HEARTBEAT_SLOTS;
    }
}

async fn drain(mut rx: mpsc::Receiver<Notice>) {
    while rx.recv().await.is_some() {}
}

/// Connects to Redis within [`CONNECT_TIMEOUT`].
async fn connect(client: &redis::Client) -> Option<redis::aio::MultiplexedConnection> {
    match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
        Ok(Ok(conn)) => Some(conn),
        Ok(Err(err)) => {
            tracing::debug!(error = %err, "cannot reach Redis");
            None
        }
        Err(_) => None,
    }
}

/// Publishes the registry's notices, reconnecting as needed. A notice that meets Redis down is
/// dropped: the other nodes poll while they are cut off from Redis too, and a node that stays
/// subscribed finds the commit at its next safety poll.
async fn publish(
    client: redis::Client,
    channel: String,
    node: String,
    mut rx: mpsc::Receiver<Notice>,
) {
    let mut conn: Option<redis::aio::MultiplexedConnection> = None;
    let mut backoff = RECONNECT_MIN;
    let mut retry_at = tokio::time::Instant::now();
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        batch.clear();
        if rx.recv_many(&mut batch, PIPELINE).await == 0 {
            return;
        }
        if conn.is_none() && tokio::time::Instant::now() >= retry_at {
            conn = connect(&client).await;
            if conn.is_none() {
                retry_at = tokio::time::Instant::now() + backoff;
                backoff = (backoff * 2).min(RECONNECT_MAX);
            } else {
                backoff = RECONNECT_MIN;
            }
        }
        let Some(c) = conn.as_mut() else {
            continue;
        };
        // Everything queued goes in one pipeline: a burst of notices costs one round trip, and
        // a commit notice never waits behind others' answers one by one.
        let mut pipe = redis::pipe();
        for notice in &batch {
            pipe.cmd("PUBLISH")
                .arg(&channel)
                .arg(notice.encode(&node))
                .ignore();
        }
        let sent: redis::RedisResult<()> = pipe.query_async(c).await;
        if let Err(err) = sent {
            tracing::warn!(error = %err, "cannot publish to Redis");
            conn = None;
        }
    }
}

/// Keeps a subscription to the cluster channel, handing other nodes' notices to the registry.
/// Each time it (re)subscribes it wakes the poller, which catches up whatever was missed.
async fn subscribe(
    client: redis::Client,
    channel: String,
    node: String,
    registry: std::sync::Weak<Registry>,
    subscribed: Arc<AtomicBool>,
    wake: mpsc::Sender<()>,
) {
    let mut backoff = RECONNECT_MIN;
    loop {
        if registry.strong_count() == 0 {
            return;
        }
        let pubsub = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_async_pubsub()).await {
            Ok(Ok(mut pubsub)) => match pubsub.subscribe(&channel).await {
                Ok(()) => Some(pubsub),
                Err(err) => {
                    tracing::debug!(error = %err, "cannot subscribe to Redis");
                    None
                }
            },
            _ => None,
        };
        let Some(mut pubsub) = pubsub else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(RECONNECT_MAX);
            continue;
        };
        backoff = RECONNECT_MIN;
        subscribed.store(true, Ordering::Relaxed);
        tracing::info!("subscribed to the cluster channel");
        let _ = wake.try_send(());
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            let Some(registry) = registry.upgrade() else {
                return;
            };
            let payload = message.get_payload_bytes();
            match Notice::decode(payload) {
                Some((_, from)) if from == node => {}
                Some((notice, from)) => registry.heard(notice, from).await,
                None => tracing::warn!(
                    notice = %String::from_utf8_lossy(&payload[..payload.len().min(200)]),
                    "unreadable cluster notice"
                ),
            }
        }
        subscribed.store(false, Ordering::Relaxed);
        tracing::warn!("lost the Redis subscription: polling until it is back");
        // The poller may be in its long sleep: from now on it polls often.
        let _ = wake.try_send(());
    }
}

/// Polls the live documents' versions: often while Redis is not subscribed, rarely while it is,
/// and at once when woken (the subscription was just lost or made again).
async fn poll(
    registry: std::sync::Weak<Registry>,
    store: Arc<dyn Store>,
    config: ClusterConfig,
    subscribed: Arc<AtomicBool>,
    mut wake: mpsc::Receiver<()>,
) {
    loop {
        let every = if subscribed.load(Ordering::Relaxed) {
            config.safety_poll_every
        } else {
            config.poll_every
        };
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            Some(()) = wake.recv() => {}
        }
        let Some(registry) = registry.upgrade() else {
            return;
        };
        let live = registry.live_ids();
        if live.is_empty() {
            continue;
        }
        match store.document_versions(&live).await {
            Ok(versions) => {
                for (pid, version) in versions {
                    registry
                        .heard(
                            Notice::Commit {
                                pid: PartnershipId(pid),
                                version,
                                changes: None,
                            },
                            "",
                        )
                        .await;
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot poll document versions"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_read_back_as_written() {
        let pid = PartnershipId(Uuid::now_v7());
        let user = UserId(Uuid::now_v7());
        for notice in [
            Notice::Commit {
                pid,
                version: 42,
                changes: None,
            },
            Notice::Commit {
                pid,
                version: 43,
                changes: Some(Arc::new(CommittedChanges(vec![
                    (Some(user.0), vec![0x85, 0x6f, 0x4a, 0x83, b'\n', 0, 1]),
                    (None, Vec::new()),
                    (None, vec![b' '; 300]),
                ]))),
            },
            Notice::Commit {
                pid,
                version: 44,
                changes: Some(Arc::new(CommittedChanges::default())),
            },
            Notice::Presence {
                pid,
                user,
                online: true,
            },
            Notice::Presence {
                pid,
                user,
                online: false,
            },
            Notice::Revoke {
                pid,
                user: Some(user),
            },
            Notice::Revoke { pid, user: None },
            Notice::Who { pid },
            Notice::Watching {
                pid,
                user,
                watching: true,
            },
            Notice::Watching {
                pid,
                user,
                watching: false,
            },
        ] {
            let bytes = notice.encode("n1");
            assert_eq!(Notice::decode(&bytes), Some((notice, "n1")));
        }
        let nil = Uuid::nil();
        for garbage in [
            String::new(),
            "c".to_owned(),
            format!("x {nil} 2 n"),
            "c not-a-uuid 1 n".to_owned(),
            format!("c {nil} one n"),
            format!("r {nil} not-a-user n"),
            format!("p {nil} {nil} 2 n"),
            format!("c {nil} 1 n extra"),
            format!("C {nil} 1 n\n\x02"),
            format!("C {nil} 1 n\n\x00\x00\x00\x00\x05abc"),
            format!("C {nil} 1 n extra\n"),
            format!("c {nil} 1 n\n"),
        ] {
            assert!(Notice::decode(garbage.as_bytes()).is_none(), "{garbage:?}");
        }
    }
}
