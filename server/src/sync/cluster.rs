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
//!   <version> <node>` on `<prefix>cluster`; revocations (password change or reset, account
//!   deletion) go out as `r <partnership> <user or -> <node>`. Every node subscribes and hands
//!   commits of documents it holds live to their actors, which read what was committed after what
//!   they have ([`super::doc_actor`]'s catch-up).
//! - **Polling PostgreSQL, the slow path.** Every `poll_every` while Redis is not subscribed
//!   (not configured, down, or reconnecting) and every `safety_poll_every` while it is, a node
//!   reads the versions of its live documents in one query and catches up those that moved. A
//!   node that re-subscribes after a gap polls at once, so nothing it missed waits.
//!
//! Publishing never waits on Redis: notices go through a bounded queue to one task, and a notice
//! that cannot be sent is dropped (the other nodes' polls find the commit).

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

impl Notice {
    fn encode(&self, node: &str) -> String {
        match self {
            Notice::Commit { pid, version } => format!("c {pid} {version} {node}"),
            Notice::Who { pid } => format!("w {pid} {node}"),
            Notice::Presence { pid, user, online } => {
                format!("p {pid} {user} {} {node}", u8::from(*online))
            }
            Notice::Revoke { pid, user } => {
                let user = user.map_or_else(|| "-".to_owned(), |u| u.to_string());
                format!("r {pid} {user} {node}")
            }
        }
    }

    /// The notice and the node that sent it.
    fn decode(text: &str) -> Option<(Notice, &str)> {
        let mut parts = text.split(' ');
        let kind = parts.next()?;
        let pid = PartnershipId(parts.next()?.parse::<Uuid>().ok()?);
        let notice = match kind {
            "c" => Notice::Commit {
                pid,
                version: parts.next()?.parse().ok()?,
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
/// remote presence not heard of for too long.
async fn heartbeat(registry: std::sync::Weak<Registry>, every: Duration) {
    let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
    loop {
        tick.tick().await;
        let Some(registry) = registry.upgrade() else {
            return;
        };
        registry.presence_heartbeat();
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
    while let Some(notice) = rx.recv().await {
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
        let sent: redis::RedisResult<i64> = redis::cmd("PUBLISH")
            .arg(&channel)
            .arg(notice.encode(&node))
            .query_async(c)
            .await;
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
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            match Notice::decode(&text) {
                Some((_, from)) if from == node => {}
                Some((notice, from)) => registry.heard(notice, from).await,
                None => tracing::warn!(notice = %text, "unreadable cluster notice"),
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
            Notice::Commit { pid, version: 42 },
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
        ] {
            let text = notice.encode("n1");
            assert_eq!(Notice::decode(&text), Some((notice, "n1")));
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
        ] {
            assert!(Notice::decode(&garbage).is_none(), "{garbage:?}");
        }
    }
}
