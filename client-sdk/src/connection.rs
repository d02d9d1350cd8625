//! A low-level automerge-repo sync client: one WebSocket connection to a sync server and the
//! exchange of one document over it.
//!
//! [`SyncConnection`] speaks the wire protocol of `splitsave_sync_core::protocol` (the messages
//! the stock `@automerge/automerge-repo` 2.x WebSocket adapter speaks): it sends `join`, waits for
//! `peer`, then carries single messages. [`DocSync`] runs automerge's sync protocol for one
//! document on top of it. The server's end-to-end tests and load generators drive the server
//! through these two types, and the SDK builds its reconnecting sync loop on them.
//!
//! # When is a document "settled"?
//!
//! Automerge's sync protocol is finished only when *both* sides' `generate_sync_message` return
//! `None`. The client cannot see the server's sync state, so [`DocSync::sync_until_settled`] uses
//! what it can observe, all of it from messages the server actually sent:
//!
//! 1. the server has acknowledged every one of our heads: each head of our document is in
//!    `state.shared_heads` (automerge sets it from heads the server announced and we know), which
//!    means the server holds all our changes;
//! 2. we hold everything the server announced: each of `state.their_heads` is a change in our
//!    document (so together with 1, both sides have the same heads);
//! 3. the server's heads are not empty: an empty reply means it lacks the document (the stock
//!    JS server sends one before `doc-unavailable`), and a document created through
//!    automerge-repo always holds a first change;
//! 4. our side has nothing left to send: `generate_sync_message` returned `None`, or the message
//!    it returned (and that we sent) carries no changes — it only tells the server our heads.
//!
//! Condition 1 needs at least one message from the server received after our last change, so a
//! fresh exchange always takes a round trip. What the client cannot observe is whether the server
//! will send one more change-free message (its own acknowledgement of our last heads); such a
//! message stays on the connection and is applied by the next call, where it changes nothing.

use std::collections::VecDeque;
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::{Automerge, ChangeHash};
use futures::{SinkExt, StreamExt};
use splitsave_sync_core::protocol::{self, PeerMetadata, WireMessage};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The largest frame the client decodes. A server's first sync message carries the whole
/// document, so this is far above the server's own inbound limit; it still bounds what one frame
/// can make the client allocate.
pub const MAX_INCOMING_MESSAGE_BYTES: usize = 64 * 1024 * 1024;

/// How many messages for other documents a connection keeps while one [`DocSync`] waits for its
/// own. A server that floods a connection with messages nobody reads is a protocol error rather
/// than unbounded memory.
pub const MAX_PENDING_MESSAGES: usize = 4096;

/// Why a connection or a sync exchange failed. Every variant ends the exchange; callers decide
/// whether to reconnect.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The server refused us: an `error` message (bad token, unsupported protocol, limits) or an
    /// HTTP error at the upgrade. Holds the server's reason.
    #[error("the server refused the connection: {0}")]
    Refused(String),
    /// The server closed the connection before the exchange finished.
    #[error("the server closed the connection")]
    Closed,
    /// The deadline passed before the exchange finished.
    #[error("timed out")]
    Timeout,
    /// The server answered `doc-unavailable`: it does not have the document or will not share it.
    #[error("the server does not serve this document")]
    DocUnavailable,
    /// The server sent something the protocol does not allow here (undecodable frame, text frame,
    /// a reply to another peer, an invalid automerge sync message).
    #[error("protocol violation: {0}")]
    Protocol(String),
    /// The network failed (connect, read or write).
    #[error("network error: {0}")]
    Io(String),
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One authenticated WebSocket connection to a sync server after the `join`/`peer` handshake.
pub struct SyncConnection {
    socket: Socket,
    peer_id: String,
    server_peer_id: String,
    server_storage_id: Option<String>,
    /// Messages about other documents that arrived while a [`DocSync`] waited for its own.
    pending: VecDeque<WireMessage>,
}

impl SyncConnection {
    /// Connects to `url` (e.g. `ws://127.0.0.1:PORT/sync?token=JWT`), sends `join` (senderId =
    /// `peer_id`, supportedProtocolVersions `["1"]`, peerMetadata `{storageId, isEphemeral:
    /// storage_id.is_none()}`) and waits for `peer`. An `error` message or an HTTP error status at
    /// the upgrade is [`ConnectionError::Refused`]; `timeout` bounds the whole handshake.
    pub async fn connect(
        url: &str,
        peer_id: &str,
        storage_id: Option<String>,
        timeout: Duration,
    ) -> Result<Self, ConnectionError> {
        let deadline = Instant::now() + timeout;
        let (socket, _response) =
            tokio::time::timeout_at(deadline, tokio_tungstenite::connect_async(url))
                .await
                .map_err(|_| ConnectionError::Timeout)?
                .map_err(handshake_error)?;
        let mut connection = Self {
            socket,
            peer_id: peer_id.to_owned(),
            server_peer_id: String::new(),
            server_storage_id: None,
            pending: VecDeque::new(),
        };
        let join = WireMessage::Join {
            sender_id: peer_id.to_owned(),
            supported_protocol_versions: Some(vec![protocol::PROTOCOL_V1.to_owned()]),
            peer_metadata: Some(PeerMetadata {
                is_ephemeral: storage_id.is_none(),
                storage_id,
            }),
        };
        connection.send(&join).await?;
        let reply = tokio::time::timeout_at(deadline, connection.recv_from_socket())
            .await
            .map_err(|_| ConnectionError::Timeout)??;
        match reply {
            Some(WireMessage::Peer {
                sender_id,
                target_id,
                selected_protocol_version,
                peer_metadata,
            }) => {
                if target_id != peer_id {
                    return Err(ConnectionError::Protocol(format!(
                        "peer message addressed to {target_id:?}, not to us"
                    )));
                }
                if selected_protocol_version != protocol::PROTOCOL_V1 {
                    return Err(ConnectionError::Protocol(format!(
                        "server selected protocol version {selected_protocol_version:?}"
                    )));
                }
                connection.server_peer_id = sender_id;
                connection.server_storage_id = peer_metadata.and_then(|m| m.storage_id);
                tracing::debug!(
                    peer_id,
                    server_peer_id = %connection.server_peer_id,
                    "sync connection established"
                );
                Ok(connection)
            }
            Some(WireMessage::Error { message, .. }) => Err(ConnectionError::Refused(message)),
            Some(other) => Err(ConnectionError::Protocol(format!(
                "expected peer, got {}",
                other.message_type()
            ))),
            None => Err(ConnectionError::Closed),
        }
    }

    /// Our own peer id, the `senderId` of everything we send.
    pub fn peer_id(&self) -> &str {
        &self.peer_id
    }

    /// The server's peer id from its `peer` message: the `targetId` of everything we send.
    pub fn server_peer_id(&self) -> &str {
        &self.server_peer_id
    }

    /// The server's durable storage id, if it advertised one; a client knows its changes are
    /// stored once this storage's heads include them.
    pub fn server_storage_id(&self) -> Option<&str> {
        self.server_storage_id.as_deref()
    }

    /// Sends one protocol message as one binary frame.
    pub async fn send(&mut self, msg: &WireMessage) -> Result<(), ConnectionError> {
        self.send_raw(protocol::encode(msg)).await
    }

    /// Sends arbitrary bytes as one binary frame, so tests can send malformed or oversized
    /// messages the encoder would never produce.
    pub async fn send_raw(&mut self, bytes: Vec<u8>) -> Result<(), ConnectionError> {
        self.socket
            .send(Message::binary(bytes))
            .await
            .map_err(socket_error)
    }

    /// The next message from the server; `Ok(None)` when the server closed the connection. An
    /// `error` message from the server is [`ConnectionError::Refused`] with its reason.
    pub async fn recv(&mut self) -> Result<Option<WireMessage>, ConnectionError> {
        let message = match self.pending.pop_front() {
            Some(message) => Some(message),
            None => self.recv_from_socket().await?,
        };
        match message {
            Some(WireMessage::Error { message, .. }) => Err(ConnectionError::Refused(message)),
            other => Ok(other),
        }
    }

    /// The next message about `document_id`, or one that concerns the whole connection
    /// (`error`, `leave`, ...). Messages about other documents are kept, in order, for later
    /// calls, so several [`DocSync`]s can share a connection.
    pub async fn recv_for_document(
        &mut self,
        document_id: &str,
    ) -> Result<Option<WireMessage>, ConnectionError> {
        let position = self
            .pending
            .iter()
            .position(|m| m.document_id().is_none_or(|id| id == document_id));
        if let Some(message) = position.and_then(|at| self.pending.remove(at)) {
            return Ok(Some(message));
        }
        loop {
            let Some(message) = self.recv_from_socket().await? else {
                return Ok(None);
            };
            if let WireMessage::Error { message, .. } = message {
                return Err(ConnectionError::Refused(message));
            }
            match message.document_id() {
                Some(id) if id != document_id => {
                    if self.pending.len() >= MAX_PENDING_MESSAGES {
                        return Err(ConnectionError::Protocol(format!(
                            "more than {MAX_PENDING_MESSAGES} unread messages for other documents"
                        )));
                    }
                    self.pending.push_back(message);
                }
                _ => return Ok(Some(message)),
            }
        }
    }

    /// Closes the connection politely; errors are irrelevant because we are leaving anyway.
    pub async fn close(mut self) {
        if let Err(err) = self.socket.close(None).await {
            tracing::debug!(%err, "closing the sync connection failed");
        }
    }

    /// Reads frames until one holds a protocol message. Pings are answered by the WebSocket
    /// layer; a text frame is a protocol violation (the protocol is binary only).
    async fn recv_from_socket(&mut self) -> Result<Option<WireMessage>, ConnectionError> {
        loop {
            let frame = match self.socket.next().await {
                None => return Ok(None),
                Some(Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                )) => return Ok(None),
                Some(Err(err)) => return Err(socket_error(err)),
                Some(Ok(frame)) => frame,
            };
            match frame {
                Message::Binary(bytes) => {
                    return protocol::decode_bounded(&bytes, MAX_INCOMING_MESSAGE_BYTES)
                        .map(Some)
                        .map_err(|err| ConnectionError::Protocol(err.to_string()));
                }
                Message::Close(_) => return Ok(None),
                Message::Text(_) => {
                    return Err(ConnectionError::Protocol(
                        "text frame on a binary protocol".to_owned(),
                    ))
                }
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

fn handshake_error(err: tungstenite::Error) -> ConnectionError {
    match err {
        tungstenite::Error::Http(response) => {
            ConnectionError::Refused(format!("HTTP {} at upgrade", response.status()))
        }
        other => socket_error(other),
    }
}

fn socket_error(err: tungstenite::Error) -> ConnectionError {
    match err {
        tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed => {
            ConnectionError::Closed
        }
        other => ConnectionError::Io(other.to_string()),
    }
}

/// One document's sync exchange over a connection: automerge's per-peer [`sync::State`] plus the
/// ephemeral messages that arrived for the document. Keep it for as long as the connection lives;
/// a new connection needs a new `DocSync` (or at least a state restored with
/// [`sync::State::decode`]).
pub struct DocSync {
    /// The document's id as the protocol carries it (bs58check).
    pub document_id: String,
    /// Automerge's record of what the server has and needs.
    pub state: sync::State,
    /// Ephemeral messages received for this document: (sender peer id, CBOR payload).
    pub ephemeral: Vec<(String, Vec<u8>)>,
    /// Whether our first sync message went out yet (it is a `request`, later ones `sync`).
    requested: bool,
    /// Our ephemeral session and the count of the last ephemeral message we sent in it.
    ephemeral_session: String,
    ephemeral_count: u64,
}

impl DocSync {
    /// A fresh exchange for `document_id`: the server is assumed to know nothing of us.
    pub fn new(document_id: impl Into<String>) -> Self {
        Self {
            document_id: document_id.into(),
            state: sync::State::new(),
            ephemeral: Vec::new(),
            requested: false,
            ephemeral_session: uuid::Uuid::new_v4().to_string(),
            ephemeral_count: 0,
        }
    }

    /// Whether the exchange is settled as far as the client can tell (see the module docs): the
    /// server acknowledged all our heads and we hold all of theirs. Sending nothing more is
    /// checked separately by the caller.
    pub fn heads_settled(&self, doc: &Automerge) -> bool {
        let Some(their_heads) = &self.state.their_heads else {
            return false;
        };
        if their_heads.is_empty() {
            // An empty document on the server means it does not have the document (yet): the
            // stock JS server answers a `request` for an unknown document with an empty `sync`
            // and then `doc-unavailable`. Documents created through automerge-repo always hold a
            // first change, so a real exchange never settles on empty heads.
            return false;
        }
        let ours_acknowledged = doc
            .get_heads()
            .iter()
            .all(|head| self.state.shared_heads.contains(head));
        let theirs_held = their_heads
            .iter()
            .all(|head: &ChangeHash| doc.get_change_meta_by_hash(head).is_some());
        ours_acknowledged && theirs_held
    }

    /// Sends what `doc` has that the server lacks and applies what arrives until settled (see
    /// the module docs for what that means) or until `deadline` ([`ConnectionError::Timeout`]).
    /// The first message is a `request`, so a server that will not serve the document answers
    /// `doc-unavailable` ([`ConnectionError::DocUnavailable`]); later ones are `sync`. Ephemeral
    /// messages for the document are appended to `self.ephemeral`.
    pub async fn sync_until_settled(
        &mut self,
        conn: &mut SyncConnection,
        doc: &mut Automerge,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        loop {
            let sent_changes = self.send_pending(conn, doc).await?;
            if !sent_changes && self.heads_settled(doc) {
                return Ok(());
            }
            self.receive_one(conn, doc, deadline).await?;
        }
    }

    /// Waits for the server to push changes and applies them (answering as the protocol
    /// requires, so the server keeps sending), until `until(doc)` holds; it is checked first,
    /// then after every message. Never sleeps: it awaits messages until `deadline`.
    pub async fn wait_for(
        &mut self,
        conn: &mut SyncConnection,
        doc: &mut Automerge,
        deadline: Instant,
        until: impl Fn(&Automerge) -> bool,
    ) -> Result<(), ConnectionError> {
        loop {
            self.send_pending(conn, doc).await?;
            if until(doc) {
                return Ok(());
            }
            self.receive_one(conn, doc, deadline).await?;
        }
    }

    /// Sends an ephemeral message (e.g. presence) about this document to the server, numbered
    /// within this exchange's session so the server can drop repeats.
    pub async fn send_ephemeral(
        &mut self,
        conn: &mut SyncConnection,
        data: Vec<u8>,
    ) -> Result<(), ConnectionError> {
        self.ephemeral_count += 1;
        let message = WireMessage::Ephemeral {
            sender_id: conn.peer_id().to_owned(),
            target_id: conn.server_peer_id().to_owned(),
            count: self.ephemeral_count,
            session_id: self.ephemeral_session.clone(),
            document_id: self.document_id.clone(),
            data,
        };
        conn.send(&message).await
    }

    /// Our next sync message for `conn`, if automerge has one, and whether it carries changes.
    /// For callers that keep the document behind a lock: generate under the lock, send after
    /// releasing it. The message must be sent (the sync state already counts it as sent).
    pub fn next_message(
        &mut self,
        conn: &SyncConnection,
        doc: &Automerge,
    ) -> Option<(WireMessage, bool)> {
        let message = doc.generate_sync_message(&mut self.state)?;
        let carries_changes = !message.changes.is_empty();
        let wire = self.wire_message(conn, message.encode());
        self.requested = true;
        Some((wire, carries_changes))
    }

    /// Applies one message received for this document (see [`SyncConnection::recv_for_document`]):
    /// sync data goes into `doc`, ephemeral payloads into `self.ephemeral`, `doc-unavailable` is
    /// [`ConnectionError::DocUnavailable`].
    pub fn receive(
        &mut self,
        doc: &mut Automerge,
        message: WireMessage,
    ) -> Result<(), ConnectionError> {
        self.apply(doc, message)
    }

    /// Sends our next sync message, if automerge has one. Returns whether it carried changes.
    async fn send_pending(
        &mut self,
        conn: &mut SyncConnection,
        doc: &Automerge,
    ) -> Result<bool, ConnectionError> {
        let Some((wire, carries_changes)) = self.next_message(conn, doc) else {
            return Ok(false);
        };
        conn.send(&wire).await?;
        Ok(carries_changes)
    }

    fn wire_message(&self, conn: &SyncConnection, data: Vec<u8>) -> WireMessage {
        let sender_id = conn.peer_id().to_owned();
        let target_id = conn.server_peer_id().to_owned();
        let document_id = self.document_id.clone();
        if self.requested {
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
        }
    }

    /// Awaits one message about this document and applies it.
    async fn receive_one(
        &mut self,
        conn: &mut SyncConnection,
        doc: &mut Automerge,
        deadline: Instant,
    ) -> Result<(), ConnectionError> {
        let message = tokio::time::timeout_at(deadline, conn.recv_for_document(&self.document_id))
            .await
            .map_err(|_| ConnectionError::Timeout)??
            .ok_or(ConnectionError::Closed)?;
        self.apply(doc, message)
    }

    /// Applies one incoming message to the exchange. Messages that do not concern a document's
    /// contents (gossip, `leave`, unknown types) are ignored, as the JS client ignores them.
    fn apply(&mut self, doc: &mut Automerge, message: WireMessage) -> Result<(), ConnectionError> {
        match message {
            WireMessage::Sync { data, .. } | WireMessage::Request { data, .. } => {
                let decoded = sync::Message::decode(&data).map_err(|err| {
                    ConnectionError::Protocol(format!("invalid sync message: {err}"))
                })?;
                doc.receive_sync_message(&mut self.state, decoded)
                    .map_err(|err| {
                        ConnectionError::Protocol(format!("sync message not applicable: {err}"))
                    })
            }
            WireMessage::DocUnavailable { .. } => Err(ConnectionError::DocUnavailable),
            WireMessage::Ephemeral {
                sender_id, data, ..
            } => {
                self.ephemeral.push((sender_id, data));
                Ok(())
            }
            other => {
                tracing::debug!(
                    message_type = other.message_type(),
                    "ignoring message during sync"
                );
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ReadDoc, ROOT};

    fn doc_with(key: &str, value: i64) -> Automerge {
        let mut doc = Automerge::new();
        put(&mut doc, key, value);
        doc
    }

    fn put(doc: &mut Automerge, key: &str, value: i64) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).expect("put");
        tx.commit();
    }

    fn get(doc: &Automerge, key: &str) -> Option<i64> {
        doc.get(ROOT, key)
            .expect("get")
            .and_then(|(value, _)| value.as_scalar().and_then(|s| s.as_i64()))
    }

    /// Runs the client half of `sync_until_settled` against an in-memory server document,
    /// handing messages over directly: returns how many round trips it took.
    fn settle_in_memory(
        client: &mut DocSync,
        doc: &mut Automerge,
        server: &mut Automerge,
        server_state: &mut sync::State,
    ) -> usize {
        for round in 1..=20 {
            let ours = doc.generate_sync_message(&mut client.state);
            let sent_changes = ours.as_ref().is_some_and(|m| !m.changes.is_empty());
            if !sent_changes && client.heads_settled(doc) {
                return round - 1;
            }
            if let Some(message) = ours {
                let bytes = message.encode();
                server
                    .receive_sync_message(
                        server_state,
                        sync::Message::decode(&bytes).expect("decode"),
                    )
                    .expect("server applies");
            }
            let Some(reply) = server.generate_sync_message(server_state) else {
                panic!("server went quiet in round {round} before the client settled");
            };
            let wire = WireMessage::Sync {
                sender_id: "server".to_owned(),
                target_id: "client".to_owned(),
                document_id: client.document_id.clone(),
                data: reply.encode(),
            };
            client.apply(doc, wire).expect("client applies");
        }
        panic!("no settlement in 20 rounds");
    }

    #[tokio::test]
    async fn wss_urls_are_supported() {
        // Nothing listens on the port: the attempt must fail at the network, not because TLS
        // is not built in.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        drop(listener);
        let err = SyncConnection::connect(
            &format!("wss://127.0.0.1:{port}/sync"),
            "peer",
            None,
            Duration::from_secs(5),
        )
        .await
        .err()
        .expect("nothing listens");
        let text = err.to_string();
        assert!(
            matches!(err, ConnectionError::Io(_)) && !text.contains("TLS"),
            "{text}"
        );
    }

    #[test]
    fn a_fresh_exchange_is_not_settled_before_the_server_answered() {
        let client = DocSync::new("doc");
        assert!(!client.heads_settled(&Automerge::new()));
        assert!(!client.heads_settled(&doc_with("a", 1)));
    }

    #[test]
    fn settles_once_both_documents_hold_each_others_changes() {
        let mut server = doc_with("from_server", 1);
        let mut doc = Automerge::new();
        put(&mut doc, "from_client", 2);
        let mut client = DocSync::new("doc");
        let mut server_state = sync::State::new();

        let rounds = settle_in_memory(&mut client, &mut doc, &mut server, &mut server_state);

        assert!(rounds >= 1);
        assert_eq!(get(&doc, "from_server"), Some(1));
        assert_eq!(get(&server, "from_client"), Some(2));
        assert_eq!(doc.get_heads(), server.get_heads());
    }

    #[test]
    fn a_local_change_after_settling_unsettles_until_the_server_acknowledges_it() {
        let mut server = doc_with("from_server", 1);
        let mut doc = Automerge::new();
        let mut client = DocSync::new("doc");
        let mut server_state = sync::State::new();
        settle_in_memory(&mut client, &mut doc, &mut server, &mut server_state);
        assert!(client.heads_settled(&doc));

        put(&mut doc, "later", 3);
        assert!(!client.heads_settled(&doc));
        settle_in_memory(&mut client, &mut doc, &mut server, &mut server_state);
        assert_eq!(get(&server, "later"), Some(3));
        assert!(client.heads_settled(&doc));
    }

    #[test]
    fn a_server_change_we_lack_keeps_the_exchange_unsettled() {
        let mut server = doc_with("a", 1);
        let mut doc = Automerge::new();
        let mut client = DocSync::new("doc");
        let mut server_state = sync::State::new();
        settle_in_memory(&mut client, &mut doc, &mut server, &mut server_state);

        // The server announces heads we do not hold (as after another client's change).
        put(&mut server, "b", 2);
        client.state.their_heads = Some(server.get_heads());
        assert!(!client.heads_settled(&doc));
    }

    #[test]
    fn an_empty_answer_does_not_settle_an_empty_document() {
        // What the stock JS server sends for a document it lacks, before `doc-unavailable`.
        let server = Automerge::new();
        let mut server_state = sync::State::new();
        let reply = server
            .generate_sync_message(&mut server_state)
            .expect("first message");
        let mut client = DocSync::new("doc");
        let mut doc = Automerge::new();
        let wire = WireMessage::Sync {
            sender_id: "server".to_owned(),
            target_id: "client".to_owned(),
            document_id: "doc".to_owned(),
            data: reply.encode(),
        };
        client.apply(&mut doc, wire).expect("applies");
        assert_eq!(client.state.their_heads, Some(vec![]));
        assert!(!client.heads_settled(&doc));
    }

    #[test]
    fn doc_unavailable_and_bad_sync_data_are_errors_and_ephemeral_is_collected() {
        let mut client = DocSync::new("doc");
        let mut doc = Automerge::new();
        let unavailable = WireMessage::DocUnavailable {
            sender_id: "s".to_owned(),
            target_id: "c".to_owned(),
            document_id: "doc".to_owned(),
        };
        assert!(matches!(
            client.apply(&mut doc, unavailable),
            Err(ConnectionError::DocUnavailable)
        ));
        let garbage = WireMessage::Sync {
            sender_id: "s".to_owned(),
            target_id: "c".to_owned(),
            document_id: "doc".to_owned(),
            data: vec![0x42, 1, 2, 3],
        };
        assert!(matches!(
            client.apply(&mut doc, garbage),
            Err(ConnectionError::Protocol(_))
        ));
        let presence = WireMessage::Ephemeral {
            sender_id: "partner".to_owned(),
            target_id: "c".to_owned(),
            count: 1,
            session_id: "x".to_owned(),
            document_id: "doc".to_owned(),
            data: vec![0xf5],
        };
        client.apply(&mut doc, presence).expect("ephemeral");
        assert_eq!(client.ephemeral, vec![("partner".to_owned(), vec![0xf5])]);
    }
}
