//! [`SyncClient`]: one partner's device in the sync tests. It holds a local Automerge replica
//! that starts empty (as an app's does), connects to the in-process server's `/sync` as a
//! registered user, requests the couple's document, edits it with sync-core operations (or raw
//! writes, to break the rules on purpose) and syncs until settled, counting what it receives.
//!
//! The exchange loop uses `splitsave_client`'s [`SyncConnection`] and the settledness rule of its
//! [`DocSync`] (`heads_settled`), but drives the messages itself so a test can count them, look at
//! the change chunks the server sent, and collect presence messages while it waits.
#![allow(dead_code)]

use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transaction;
use automerge::{ActorId, Automerge, Change, ChangeHash};
use splitsave_client::connection::{ConnectionError, DocSync, SyncConnection};
use splitsave_server::sync::presence::{self, Presence};
use splitsave_sync_core::document::{read_document, DocumentState};
use splitsave_sync_core::ids::{DocumentId, PartnershipId, UserId};
use splitsave_sync_core::ops::{Ctx, OpError, Outcome};
use splitsave_sync_core::protocol::WireMessage;
use splitsave_sync_core::time::Millis;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{Session, TestApp};

/// How long one exchange may take before the test fails (a 2-core machine under load).
pub const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(20);

/// The `ws://…/sync?token=…` URL of the app for an access token.
pub fn sync_url(app: &TestApp, token: &str) -> String {
    format!(
        "{}/sync?token={token}",
        app.base_url.replacen("http://", "ws://", 1)
    )
}

/// The partnership and its document id, as the app learns them from
/// `GET /api/partnerships/current` (`id`, `document_url`).
pub async fn current_document(app: &TestApp, session: &Session) -> (PartnershipId, String) {
    let (status, body) = app
        .get("/api/partnerships/current", Some(&session.access_token))
        .await;
    assert!(status.is_success(), "current partnership: {status} {body}");
    let pid: Uuid = body["id"]
        .as_str()
        .expect("partnership id")
        .parse()
        .expect("uuid");
    let url = body["document_url"].as_str().expect("document_url");
    let id = DocumentId::parse(url).expect("document url parses");
    assert_eq!(id, DocumentId::for_partnership(PartnershipId(pid)));
    (PartnershipId(pid), id.to_string())
}

/// What one exchange carried from the server.
#[derive(Debug, Default, Clone)]
pub struct Exchange {
    /// Sync messages received.
    pub messages: usize,
    /// Sync messages sent.
    pub sent: usize,
    /// The change chunks the received sync messages carried, in order.
    pub chunks: Vec<Vec<u8>>,
}

impl Exchange {
    /// Total bytes of change data received.
    pub fn change_bytes(&self) -> usize {
        self.chunks.iter().map(Vec::len).sum()
    }

    /// Hashes of the changes the received chunks carried; `None` when a chunk is not a run of
    /// changes (a whole saved document).
    pub fn change_hashes(&self) -> Option<Vec<ChangeHash>> {
        let mut hashes = Vec::new();
        for chunk in &self.chunks {
            hashes.extend(split_changes(chunk)?.iter().map(Change::hash));
        }
        Some(hashes)
    }
}

/// One partner's device: a local replica plus, while online, a connection to the server.
pub struct SyncClient {
    /// The signed-in user.
    pub user: UserId,
    /// Their access token (reconnects use it).
    pub token: String,
    /// The couple's partnership.
    pub pid: PartnershipId,
    /// The document id the device syncs.
    pub document_id: String,
    /// The local replica.
    pub doc: Automerge,
    /// Automerge's sync state with the server and the presence messages received.
    pub sync: DocSync,
    /// The connection while online.
    pub conn: Option<SyncConnection>,
    /// The device's peer id.
    pub peer_id: String,
    /// The device's storageId (a device that persists its replica), if any.
    pub storage_id: Option<String>,
    /// Everything received since [`SyncClient::take_exchange`] was last called.
    pub exchange: Exchange,
    url: String,
    requested: bool,
}

impl SyncClient {
    /// Signs the device in as `session`'s user with an empty replica and no storageId, and
    /// connects (the document is requested by the first [`SyncClient::settle`]).
    pub async fn connect(app: &TestApp, session: &Session) -> SyncClient {
        Self::connect_with(app, session, None).await
    }

    /// Like [`SyncClient::connect`], for a device that announces `storage_id`.
    pub async fn connect_with(
        app: &TestApp,
        session: &Session,
        storage_id: Option<&str>,
    ) -> SyncClient {
        let (pid, document_id) = current_document(app, session).await;
        let mut client = SyncClient {
            user: UserId(session.user_id),
            token: session.access_token.clone(),
            pid,
            sync: DocSync::new(document_id.clone()),
            document_id,
            doc: Automerge::new(),
            conn: None,
            peer_id: format!("device-{}", Uuid::new_v4().simple()),
            storage_id: storage_id.map(str::to_string),
            exchange: Exchange::default(),
            url: sync_url(app, &session.access_token),
            requested: false,
        };
        client.reconnect().await;
        client
    }

    /// Like [`SyncClient::connect`] with another access token (e.g. a short-lived one).
    pub async fn connect_with_token(app: &TestApp, session: &Session, token: &str) -> SyncClient {
        let (pid, document_id) = current_document(app, session).await;
        let mut client = SyncClient {
            user: UserId(session.user_id),
            token: token.to_string(),
            pid,
            sync: DocSync::new(document_id.clone()),
            document_id,
            doc: Automerge::new(),
            conn: None,
            peer_id: format!("device-{}", Uuid::new_v4().simple()),
            storage_id: None,
            exchange: Exchange::default(),
            url: sync_url(app, token),
            requested: false,
        };
        client.reconnect().await;
        client
    }

    /// Connects again (after [`SyncClient::disconnect`]) keeping the replica and what automerge
    /// persists of the sync state (the heads both sides shared), as an app does after a restart.
    pub async fn reconnect(&mut self) {
        let conn = SyncConnection::connect(
            &self.url,
            &self.peer_id,
            self.storage_id.clone(),
            EXCHANGE_TIMEOUT,
        )
        .await
        .expect("connect to /sync");
        let persisted = self.sync.state.encode();
        let mut fresh = DocSync::new(self.document_id.clone());
        fresh.state = sync::State::decode(&persisted).expect("sync state decodes");
        fresh.ephemeral = std::mem::take(&mut self.sync.ephemeral);
        self.sync = fresh;
        self.requested = false;
        self.conn = Some(conn);
    }

    /// Goes offline: closes the connection politely.
    pub async fn disconnect(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.close().await;
        }
    }

    /// The connection; panics when offline (a test bug).
    fn conn(&mut self) -> &mut SyncConnection {
        self.conn.as_mut().expect("the device is online")
    }

    /// Runs one operation on the local replica as this user, now, and commits it.
    pub fn edit(
        &mut self,
        op: impl FnOnce(&mut Transaction<'_>, &Ctx) -> Result<Outcome, OpError>,
    ) -> Outcome {
        self.edit_at(Millis::now(), op)
    }

    /// Runs one operation as if made at `now` (a device offline since then), its change
    /// carrying that time as the apps' changes do.
    pub fn edit_at(
        &mut self,
        now: Millis,
        op: impl FnOnce(&mut Transaction<'_>, &Ctx) -> Result<Outcome, OpError>,
    ) -> Outcome {
        let ctx = Ctx {
            user: self.user,
            now,
        };
        self.doc
            .transact_with(
                |_| automerge::transaction::CommitOptions::default().with_time(now.0 / 1000),
                |tx| op(tx, &ctx),
            )
            .map(|ok| ok.result)
            .map_err(|failure| failure.error)
            .expect("operation applies locally")
    }

    /// The local replica's actor id.
    pub fn actor(&self) -> ActorId {
        self.doc.get_actor().clone()
    }

    /// The local replica's heads, sorted.
    pub fn heads(&self) -> Vec<ChangeHash> {
        sorted(self.doc.get_heads())
    }

    /// The local replica, typed.
    pub fn state(&self) -> DocumentState {
        read_document(&self.doc).expect("document reads")
    }

    /// Presence messages received so far, decoded.
    pub fn presence(&self) -> Vec<Presence> {
        self.sync
            .ephemeral
            .iter()
            .filter_map(|(_, data)| presence::decode(data))
            .collect()
    }

    /// Returns what was received since the last call and starts counting afresh.
    pub fn take_exchange(&mut self) -> Exchange {
        std::mem::take(&mut self.exchange)
    }

    /// Sends what the replica has that the server lacks and applies what arrives, until the
    /// server acknowledged all our heads and we hold all of its heads (DocSync's rule).
    pub async fn settle(&mut self) -> Result<(), ConnectionError> {
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            let sent_changes = self.send_pending().await?;
            if !sent_changes && self.sync.heads_settled(&self.doc) {
                return Ok(());
            }
            self.receive_one(deadline).await?;
        }
    }

    /// Keeps the exchange going (answering as the protocol requires) until `until(self)` holds;
    /// checked first, then after every message. Fails at the deadline.
    pub async fn wait_until(
        &mut self,
        until: impl Fn(&SyncClient) -> bool,
    ) -> Result<(), ConnectionError> {
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            self.send_pending().await?;
            if until(self) {
                return Ok(());
            }
            self.receive_one(deadline).await?;
        }
    }

    /// Reads until the server refuses us (`error` message, whose reason is returned) and checks
    /// that the connection then ends; any other failure, or the deadline, panics.
    ///
    /// The exchange goes on meanwhile, as on a device: automerge may hold a change back from a
    /// message when the server's Bloom filter wrongly says it has it (about 1 % per change),
    /// and the server then asks for it; without answering, the refusal it would bring never
    /// comes.
    pub async fn expect_refusal(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            match self.receive_one(deadline).await {
                Ok(()) => {
                    // A send failing because the server already refused is read below.
                    let _ = self.send_pending().await;
                }
                Err(ConnectionError::Refused(reason)) => {
                    self.expect_closed(deadline).await;
                    return reason;
                }
                Err(other) => panic!("expected an error message, got {other:?}"),
            }
        }
    }

    /// Asserts that the server ends the connection (no further protocol message) by `deadline`.
    async fn expect_closed(&mut self, deadline: Instant) {
        let conn = self.conn();
        let next = tokio::time::timeout_at(deadline, conn.recv())
            .await
            .expect("the server closes the connection after its error message");
        match next {
            Ok(None) | Err(ConnectionError::Closed | ConnectionError::Io(_)) => {}
            other => panic!("expected the connection to close, got {other:?}"),
        }
        self.conn = None;
    }

    /// Sends our next sync message, if automerge has one; returns whether it carried changes.
    /// The first message of a connection is a `request`, later ones `sync`.
    pub async fn send_pending(&mut self) -> Result<bool, ConnectionError> {
        let Some(message) = self.doc.generate_sync_message(&mut self.sync.state) else {
            return Ok(false);
        };
        let carries_changes = !message.changes.is_empty();
        let data = message.encode();
        let document_id = self.document_id.clone();
        let requested = std::mem::replace(&mut self.requested, true);
        let conn = self.conn();
        let (sender_id, target_id) = (
            conn.peer_id().to_string(),
            conn.server_peer_id().to_string(),
        );
        let wire = if requested {
            WireMessage::Sync {
                sender_id,
                target_id,
                document_id,
                data,
            }
        } else {
            WireMessage::Request {
                sender_id,
                target_id,
                document_id,
                data,
            }
        };
        conn.send(&wire).await?;
        self.exchange.sent += 1;
        Ok(carries_changes)
    }

    /// Awaits one message about the document and applies it.
    async fn receive_one(&mut self, deadline: Instant) -> Result<(), ConnectionError> {
        let document_id = self.document_id.clone();
        let conn = self.conn();
        let message = tokio::time::timeout_at(deadline, conn.recv_for_document(&document_id))
            .await
            .map_err(|_| ConnectionError::Timeout)??
            .ok_or(ConnectionError::Closed)?;
        self.apply(message)
    }

    /// Applies one incoming message to the replica and the exchange.
    fn apply(&mut self, message: WireMessage) -> Result<(), ConnectionError> {
        match message {
            WireMessage::Sync { data, .. } | WireMessage::Request { data, .. } => {
                let decoded = sync::Message::decode(&data)
                    .map_err(|e| ConnectionError::Protocol(format!("invalid sync message: {e}")))?;
                self.exchange.messages += 1;
                self.exchange
                    .chunks
                    .extend(decoded.changes.iter().map(<[u8]>::to_vec));
                self.doc
                    .receive_sync_message(&mut self.sync.state, decoded)
                    .map_err(|e| ConnectionError::Protocol(format!("not applicable: {e}")))
            }
            WireMessage::DocUnavailable { .. } => Err(ConnectionError::DocUnavailable),
            WireMessage::Ephemeral {
                sender_id, data, ..
            } => {
                self.sync.ephemeral.push((sender_id, data));
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// Returns once the server has handled everything sent before: the connection handles
    /// frames in order, so the answer to a `request` for a document nobody has (sent now)
    /// comes after every earlier message was merged or ignored. Messages meanwhile are applied.
    pub async fn barrier(&mut self) -> Result<(), ConnectionError> {
        let probe = DocumentId::for_partnership(PartnershipId(Uuid::new_v4())).to_string();
        let data = Automerge::new()
            .generate_sync_message(&mut sync::State::new())
            .map(|m| m.encode())
            .unwrap_or_default();
        let conn = self.conn();
        let request = WireMessage::Request {
            sender_id: conn.peer_id().to_string(),
            target_id: conn.server_peer_id().to_string(),
            document_id: probe.clone(),
            data,
        };
        conn.send(&request).await?;
        let deadline = Instant::now() + EXCHANGE_TIMEOUT;
        loop {
            let message = tokio::time::timeout_at(deadline, self.conn().recv())
                .await
                .map_err(|_| ConnectionError::Timeout)??
                .ok_or(ConnectionError::Closed)?;
            match message {
                WireMessage::DocUnavailable { document_id, .. } if document_id == probe => {
                    return Ok(())
                }
                other => self.apply(other)?,
            }
        }
    }
}

/// Heads in a stable order, for comparing replicas.
pub fn sorted(mut heads: Vec<ChangeHash>) -> Vec<ChangeHash> {
    heads.sort();
    heads
}

/// The document as storage holds it (latest snapshot plus the changes after it): what a fresh
/// server process would load. The actor commits before it tells anyone, so these are the
/// server's heads once a client's exchange settled.
pub async fn stored_document(app: &TestApp, pid: PartnershipId) -> Automerge {
    let (snapshot, changes) = app.state.store.load_document(pid.0).await.expect("load");
    let mut doc = Automerge::load(&snapshot.expect("a snapshot")).expect("snapshot loads");
    for c in changes {
        doc.load_incremental(&c).expect("change loads");
    }
    doc
}

/// The stored document's heads, sorted.
pub async fn stored_heads(app: &TestApp, pid: PartnershipId) -> Vec<ChangeHash> {
    sorted(stored_document(app, pid).await.get_heads())
}

/// Brings every client to the server's heads: each settles in turn (so the server holds every
/// client's changes), then each waits for what the server pushes until it holds the stored
/// heads. (A settled client cannot know the server got news meanwhile without reading, so
/// the target comes from storage.)
pub async fn settle_all(app: &TestApp, clients: &mut [&mut SyncClient]) {
    for c in clients.iter_mut() {
        c.settle().await.expect("settles");
    }
    let Some(first) = clients.first() else { return };
    let target = stored_heads(app, first.pid).await;
    for c in clients.iter_mut() {
        c.wait_until(|c| c.heads() == target)
            .await
            .expect("receives the partner's changes");
        c.settle().await.expect("settles");
        assert_eq!(c.heads(), target, "replicas agree with the server");
    }
}

/// Splits a sync message chunk into the changes it holds. Automerge's V1 messages carry one
/// change per chunk; V2 messages carry the changes' bytes back to back in one chunk. Each
/// storage chunk starts with a 4-byte magic, a 4-byte checksum, a type byte and a LEB128 length.
/// `None` when the chunk holds anything but changes (a whole saved document).
pub fn split_changes(mut bytes: &[u8]) -> Option<Vec<Change>> {
    const HEADER: usize = 9;
    let mut changes = Vec::new();
    while !bytes.is_empty() {
        let rest = bytes.get(HEADER..)?;
        let (len, leb) = leb128_u64(rest)?;
        let total = HEADER + leb + usize::try_from(len).ok()?;
        let one = bytes.get(..total)?;
        changes.push(Change::from_bytes(one.to_vec()).ok()?);
        bytes = &bytes[total..];
    }
    Some(changes)
}

/// An unsigned LEB128 number and how many bytes it took.
fn leb128_u64(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}
