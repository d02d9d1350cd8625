//! `SyncConnection` and `DocSync` against a small in-process sync server that speaks the
//! automerge-repo protocol over a real WebSocket on 127.0.0.1:0. It serves one document, answers
//! everything else with `doc-unavailable`, refuses the token `bad` with an `error` message and
//! the token `http` with HTTP 401, pushes changes the test makes to its document, and echoes
//! ephemeral messages (first as if about another document, then about the same one).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ReadDoc, ROOT};
use futures::{SinkExt, StreamExt};
use splitsave_client::connection::{ConnectionError, DocSync, SyncConnection};
use splitsave_sync_core::protocol::{self, PeerMetadata, WireMessage};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Message;

const TIMEOUT: Duration = Duration::from_secs(10);
const DOC_ID: &str = "2ZorNZr7taHimrYix2h95fJcSEQh";
const SERVER_PEER: &str = "fake-server";
const SERVER_STORAGE: &str = "fake-storage";

struct FakeServer {
    port: u16,
    doc: Arc<Mutex<Automerge>>,
    changed: broadcast::Sender<()>,
}

impl FakeServer {
    async fn start(doc: Automerge) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let doc = Arc::new(Mutex::new(doc));
        let (changed, _) = broadcast::channel(16);
        let (shared, notify) = (doc.clone(), changed.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, shared.clone(), notify.subscribe()));
            }
        });
        Self { port, doc, changed }
    }

    fn url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/sync?token={token}", self.port)
    }

    /// Changes the server's document, as another client's edit would, and pushes it.
    fn put(&self, key: &str, value: i64) {
        put(&mut self.doc.lock().expect("lock"), key, value);
        let _ = self.changed.send(());
    }

    fn get(&self, key: &str) -> Option<i64> {
        get(&self.doc.lock().expect("lock"), key)
    }
}

async fn serve(
    stream: TcpStream,
    doc: Arc<Mutex<Automerge>>,
    mut changed: broadcast::Receiver<()>,
) {
    let mut token = String::new();
    // The error type is tungstenite's handshake callback signature, not ours to shrink.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| {
        token = request
            .uri()
            .query()
            .unwrap_or_default()
            .replace("token=", "");
        if token == "http" {
            let mut refusal = ErrorResponse::new(Some("no".to_owned()));
            *refusal.status_mut() = StatusCode::UNAUTHORIZED;
            return Err(refusal);
        }
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let Some(Ok(Message::Binary(join))) = socket.next().await else {
        return;
    };
    let Ok(WireMessage::Join {
        sender_id: client, ..
    }) = protocol::decode(&join)
    else {
        return;
    };
    let send = |message: WireMessage| Message::binary(protocol::encode(&message));
    if token == "bad" {
        let refusal = WireMessage::Error {
            sender_id: Some(SERVER_PEER.to_owned()),
            target_id: Some(client),
            message: "invalid token".to_owned(),
        };
        let _ = socket.send(send(refusal)).await;
        let _ = socket.close(None).await;
        return;
    }
    let peer = WireMessage::Peer {
        sender_id: SERVER_PEER.to_owned(),
        target_id: client.clone(),
        selected_protocol_version: protocol::PROTOCOL_V1.to_owned(),
        peer_metadata: Some(PeerMetadata {
            storage_id: Some(SERVER_STORAGE.to_owned()),
            is_ephemeral: false,
        }),
    };
    if socket.send(send(peer)).await.is_err() {
        return;
    }
    let mut state = sync::State::new();
    let sync_reply = |state: &mut sync::State| {
        let message = doc.lock().expect("lock").generate_sync_message(state)?;
        Some(send(WireMessage::Sync {
            sender_id: SERVER_PEER.to_owned(),
            target_id: client.clone(),
            document_id: DOC_ID.to_owned(),
            data: message.encode(),
        }))
    };
    loop {
        let frame = tokio::select! {
            frame = socket.next() => frame,
            _ = changed.recv() => {
                if let Some(reply) = sync_reply(&mut state) {
                    let _ = socket.send(reply).await;
                }
                continue;
            }
        };
        let Some(Ok(Message::Binary(bytes))) = frame else {
            return;
        };
        let replies = match protocol::decode(&bytes) {
            Err(err) => {
                let refusal = WireMessage::Error {
                    sender_id: None,
                    target_id: None,
                    message: err.to_string(),
                };
                let _ = socket.send(send(refusal)).await;
                let _ = socket.close(None).await;
                return;
            }
            Ok(WireMessage::Leave { .. }) => {
                let _ = socket.close(None).await;
                return;
            }
            Ok(
                WireMessage::Request {
                    document_id, data, ..
                }
                | WireMessage::Sync {
                    document_id, data, ..
                },
            ) if document_id == DOC_ID => {
                let message = sync::Message::decode(&data).expect("client sync message");
                doc.lock()
                    .expect("lock")
                    .receive_sync_message(&mut state, message)
                    .expect("apply");
                sync_reply(&mut state).into_iter().collect()
            }
            Ok(
                WireMessage::Request { document_id, .. } | WireMessage::Sync { document_id, .. },
            ) => {
                vec![send(WireMessage::DocUnavailable {
                    sender_id: SERVER_PEER.to_owned(),
                    target_id: client.clone(),
                    document_id,
                })]
            }
            Ok(WireMessage::Ephemeral {
                count,
                session_id,
                document_id,
                data,
                ..
            }) => {
                let echo = |document_id: String| {
                    send(WireMessage::Ephemeral {
                        sender_id: "partner".to_owned(),
                        target_id: client.clone(),
                        count,
                        session_id: session_id.clone(),
                        document_id,
                        data: data.clone(),
                    })
                };
                vec![echo("other-document".to_owned()), echo(document_id)]
            }
            Ok(_) => vec![],
        };
        for reply in replies {
            if socket.send(reply).await.is_err() {
                return;
            }
        }
    }
}

fn put(doc: &mut Automerge, key: &str, value: i64) {
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value).expect("put");
    tx.commit();
}

fn get(doc: &Automerge, key: &str) -> Option<i64> {
    let (value, _) = doc.get(ROOT, key).expect("get")?;
    value.as_i64()
}

fn server_doc() -> Automerge {
    let mut doc = Automerge::new();
    put(&mut doc, "from_server", 1);
    doc
}

fn deadline() -> Instant {
    Instant::now() + TIMEOUT
}

async fn connect(server: &FakeServer) -> SyncConnection {
    SyncConnection::connect(&server.url("good"), "client-1", None, TIMEOUT)
        .await
        .expect("connect")
}

#[tokio::test]
async fn the_handshake_learns_the_server_peer_and_its_storage() {
    let server = FakeServer::start(server_doc()).await;
    let conn = connect(&server).await;
    assert_eq!(conn.server_peer_id(), SERVER_PEER);
    assert_eq!(conn.server_storage_id(), Some(SERVER_STORAGE));
    assert_eq!(conn.peer_id(), "client-1");
    conn.close().await;
}

#[tokio::test]
async fn an_error_message_at_join_is_a_refusal_with_its_reason() {
    let server = FakeServer::start(server_doc()).await;
    let result = SyncConnection::connect(&server.url("bad"), "c", None, TIMEOUT).await;
    assert!(
        matches!(&result, Err(ConnectionError::Refused(reason)) if reason == "invalid token"),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn an_http_error_at_upgrade_is_a_refusal() {
    let server = FakeServer::start(server_doc()).await;
    let result = SyncConnection::connect(&server.url("http"), "c", None, TIMEOUT).await;
    assert!(
        matches!(&result, Err(ConnectionError::Refused(reason)) if reason.contains("401")),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    // Accepted by the kernel's backlog but never by anyone: the upgrade gets no response.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("ws://{}/sync", silent.local_addr().expect("addr"));
    let result = SyncConnection::connect(&url, "c", None, Duration::from_millis(200)).await;
    assert!(
        matches!(result, Err(ConnectionError::Timeout)),
        "{:?}",
        result.err()
    );
}

#[tokio::test]
async fn syncing_exchanges_changes_both_ways_and_settles() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    let mut doc = Automerge::new();
    put(&mut doc, "from_client", 2);
    let mut sync = DocSync::new(DOC_ID);

    sync.sync_until_settled(&mut conn, &mut doc, deadline())
        .await
        .expect("settles");

    assert_eq!(get(&doc, "from_server"), Some(1));
    assert_eq!(server.get("from_client"), Some(2));
    assert_eq!(
        doc.get_heads(),
        server.doc.lock().expect("lock").get_heads()
    );

    put(&mut doc, "second", 3);
    sync.sync_until_settled(&mut conn, &mut doc, deadline())
        .await
        .expect("settles again");
    assert_eq!(server.get("second"), Some(3));
}

#[tokio::test]
async fn wait_for_applies_changes_the_server_pushes() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    let mut doc = Automerge::new();
    let mut sync = DocSync::new(DOC_ID);
    sync.sync_until_settled(&mut conn, &mut doc, deadline())
        .await
        .expect("settles");
    assert_eq!(get(&doc, "pushed"), None);

    server.put("pushed", 7);
    sync.wait_for(&mut conn, &mut doc, deadline(), |d| {
        get(d, "pushed") == Some(7)
    })
    .await
    .expect("push arrives");

    // A second push works too: wait_for answered the first, so the server is not stuck waiting.
    server.put("pushed", 8);
    sync.wait_for(&mut conn, &mut doc, deadline(), |d| {
        get(d, "pushed") == Some(8)
    })
    .await
    .expect("second push arrives");
}

#[tokio::test]
async fn wait_for_times_out_when_the_condition_never_holds() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    let mut doc = Automerge::new();
    let mut sync = DocSync::new(DOC_ID);
    let result = sync
        .wait_for(
            &mut conn,
            &mut doc,
            Instant::now() + Duration::from_millis(300),
            |d| get(d, "never").is_some(),
        )
        .await;
    assert!(
        matches!(result, Err(ConnectionError::Timeout)),
        "{result:?}"
    );
    // The wait still synced what the server had.
    assert_eq!(get(&doc, "from_server"), Some(1));
}

#[tokio::test]
async fn an_unknown_document_is_unavailable() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    let result = DocSync::new("someone-elses-document")
        .sync_until_settled(&mut conn, &mut Automerge::new(), deadline())
        .await;
    assert!(
        matches!(result, Err(ConnectionError::DocUnavailable)),
        "{result:?}"
    );
}

#[tokio::test]
async fn a_malformed_frame_is_answered_with_an_error_message() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    conn.send_raw(vec![0xff, 0x00, 0x13]).await.expect("send");
    let result = conn.recv().await;
    assert!(
        matches!(result, Err(ConnectionError::Refused(_))),
        "{result:?}"
    );
}

#[tokio::test]
async fn recv_reports_a_closed_connection_as_none() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    conn.send(&WireMessage::Leave {
        sender_id: "client-1".to_owned(),
    })
    .await
    .expect("send");
    assert_eq!(conn.recv().await.expect("clean close"), None);
}

#[tokio::test]
async fn ephemeral_messages_for_other_documents_wait_their_turn() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    let mut sync = DocSync::new(DOC_ID);
    sync.send_ephemeral(&mut conn, vec![0xf5])
        .await
        .expect("send");

    let mine = conn.recv_for_document(DOC_ID).await.expect("recv");
    let Some(WireMessage::Ephemeral {
        document_id,
        count,
        data,
        ..
    }) = mine
    else {
        panic!("expected the echo, got {mine:?}");
    };
    assert_eq!((document_id.as_str(), count, data), (DOC_ID, 1, vec![0xf5]));

    // The echo about the other document arrived first; it was kept, not dropped.
    let other = conn.recv().await.expect("recv");
    assert_eq!(
        other.as_ref().and_then(|m| m.document_id()),
        Some("other-document")
    );
}

#[tokio::test]
async fn ephemeral_messages_arriving_during_a_sync_are_collected() {
    let server = FakeServer::start(server_doc()).await;
    let mut conn = connect(&server).await;
    let mut doc = Automerge::new();
    let mut sync = DocSync::new(DOC_ID);
    sync.send_ephemeral(&mut conn, vec![0x01])
        .await
        .expect("send");
    // The echo arrives before the sync reply, so the exchange passes it on its way.
    sync.sync_until_settled(&mut conn, &mut doc, deadline())
        .await
        .expect("settles");
    assert_eq!(sync.ephemeral, vec![("partner".to_owned(), vec![0x01])]);
}
