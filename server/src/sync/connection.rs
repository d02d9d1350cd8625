//! One WebSocket connection on `GET /sync`.
//!
//! Authentication happens before the upgrade: the access token comes from the `token` query
//! parameter (browsers cannot set headers on a WebSocket) or an `Authorization: Bearer` header.
//! A request that is not an upgrade gets a plain 401 (or 426 with a valid token). An upgrade with
//! a missing or bad token is still upgraded, then answered with the protocol's `error` message
//! and closed: stock automerge-repo clients crash on an HTTP 401 at upgrade time.
//!
//! Then the automerge-repo handshake (`join` → `peer`, advertising the server's stable
//! `storageId` with `isEphemeral: false`), and a loop that forwards `request`/`sync` for the
//! user's own partnership document to its [`DocActor`](super::doc_actor::DocActor), answers
//! `doc-unavailable` for every other document id (identically whether it exists or not),
//! relays `ephemeral` presence, and sends what the actor queues. The connection closes, with an
//! `error` message saying why, when the token expires, when the user may no longer sync (the
//! partnership ended, the token version changed), on a security violation, or past a limit.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use splitsave_sync_core::ids::{DocumentId, PartnershipId, UserId};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::doc_actor::{Command, ConnId, Outbound};
use super::protocol::{self, PeerMetadata, WireMessage};
use super::{SyncError, SERVER_PEER_ID};
use crate::app::AppState;
use crate::error::ApiError;
use crate::metrics::{RateLimit, SocketKind};
use crate::store::PartnershipStatus;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Query parameters of `/sync`.
#[derive(Debug, Deserialize)]
pub struct SyncQuery {
    /// The access token (browsers cannot set headers on a WebSocket).
    pub token: Option<String>,
}

/// `GET /sync`.
pub async fn handler(
    State(state): State<AppState>,
    Query(query): Query<SyncQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if !origin_allowed(&headers, &state.config.cors_origins) {
        return ApiError::Forbidden("origin not allowed").into_response();
    }
    let token = query.token.or_else(|| bearer(&headers));
    let auth = match &token {
        Some(t) => authenticate(&state, t).await,
        None => Err("missing access token"),
    };
    let Ok(upgrade) = upgrade else {
        return match auth {
            Err(_) => ApiError::Unauthorized("invalid or expired token").into_response(),
            Ok(_) => (
                StatusCode::UPGRADE_REQUIRED,
                [(header::UPGRADE, "websocket")],
                "expected a WebSocket upgrade",
            )
                .into_response(),
        };
    };
    let limits = state.sync.limits().clone();
    upgrade
        .max_message_size(limits.max_message_bytes)
        .max_frame_size(limits.max_message_bytes)
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_write_buffer_size(limits.max_message_bytes * 4)
        .on_upgrade(move |socket| async move {
            let _open = state.sockets.open(SocketKind::Sync);
            match auth {
                Ok(session) => run(state, session, socket).await,
                Err(reason) => refuse(socket, reason).await,
            }
        })
}

/// Who is connected, and until when.
#[derive(Clone, Copy, Debug)]
struct Session {
    user: UserId,
    token_version: i64,
    expires_at: Instant,
}

async fn authenticate(state: &AppState, token: &str) -> Result<Session, &'static str> {
    let claims = state
        .tokens
        .verify_access_token(token)
        .map_err(|_| "invalid or expired token")?;
    let user = crate::auth::extractor::authenticate(state, token)
        .await
        .map_err(|_| "invalid or expired token")?;
    let remaining = claims.exp - chrono::Utc::now().timestamp();
    let remaining = Duration::from_secs(u64::try_from(remaining.max(0)).unwrap_or(0));
    Ok(Session {
        user: UserId(user.user_id),
        token_version: user.token_version,
        expires_at: Instant::now() + remaining,
    })
}

/// The token of an `Authorization: Bearer` header (also used by `/api/events`).
pub(crate) fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
}

/// Browsers send `Origin`; it must be one of `CORS_ORIGIN`. Native apps send none. Also used by
/// `/api/events`.
pub(crate) fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    match headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) {
        None => true,
        Some(origin) => allowed.iter().any(|a| a == "*" || a == origin),
    }
}

async fn refuse(mut socket: WebSocket, reason: &str) {
    let msg = WireMessage::Error {
        sender_id: Some(SERVER_PEER_ID.into()),
        target_id: None,
        message: reason.into(),
    };
    let _ = socket
        .send(Message::Binary(protocol::encode(&msg).into()))
        .await;
    let _ = socket.send(Message::Close(None)).await;
}

/// A token bucket: `rate` messages per second with bursts of `burst`.
struct Bucket {
    tokens: f64,
    rate: f64,
    burst: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: u32, burst: u32) -> Self {
        Self {
            tokens: f64::from(burst),
            rate: f64::from(rate),
            burst: f64::from(burst),
            last: Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The user's document while they may sync it, and whether it is read-only (paused).
async fn allowed_document(
    state: &AppState,
    session: &Session,
) -> Result<Option<(PartnershipId, bool)>, SyncError> {
    let Some(user) = state.store.user_by_id(session.user.0).await? else {
        return Ok(None);
    };
    if user.token_version != session.token_version {
        return Ok(None);
    }
    let Some(p) = state.store.current_partnership(session.user.0).await? else {
        return Ok(None);
    };
    Ok(match p.status {
        PartnershipStatus::Active => Some((PartnershipId(p.id), false)),
        PartnershipStatus::Paused => Some((PartnershipId(p.id), true)),
        _ => None,
    })
}

struct Conn {
    id: ConnId,
    session: Session,
    client_peer: String,
    storage_id: Option<String>,
    /// The user's document and whether it is read-only.
    allowed: Option<(PartnershipId, bool)>,
    /// The document this connection is attached to, with the id string the client used.
    attached: Option<(PartnershipId, String, mpsc::Sender<Command>)>,
    ephemeral_count: u64,
    session_id: String,
    /// The outbound sender until the first attach hands it to the actor. From then on only the
    /// actor holds strong senders, so when it drops this connection (too slow a reader, access
    /// ended) the outbound stream ends and the connection closes instead of going silent.
    first_out: Option<mpsc::Sender<Outbound>>,
}

async fn run(state: AppState, session: Session, socket: WebSocket) {
    let (mut sink, mut stream) = socket.split();
    let limits = state.sync.limits().clone();
    let send_wire = |msg: &WireMessage| Message::Binary(protocol::encode(msg).into());

    // Handshake: the first message must be `join`.
    let first = tokio::time::timeout(limits.handshake_timeout, stream.next()).await;
    let join = match first {
        Ok(Some(Ok(Message::Binary(bytes)))) => {
            protocol::decode_bounded(&bytes, limits.max_message_bytes)
        }
        _ => {
            let _ = sink
                .send(send_wire(&error_msg(None, "expected join")))
                .await;
            return;
        }
    };
    let (client_peer, storage_id) = match join {
        Ok(WireMessage::Join {
            sender_id,
            supported_protocol_versions,
            peer_metadata,
        }) => {
            if protocol::select_protocol_version(supported_protocol_versions.as_deref()).is_none() {
                let _ = sink
                    .send(send_wire(&error_msg(
                        Some(&sender_id),
                        "unsupported protocol version",
                    )))
                    .await;
                return;
            }
            let storage =
                peer_metadata.and_then(|m| if m.is_ephemeral { None } else { m.storage_id });
            (sender_id, storage)
        }
        _ => {
            let _ = sink
                .send(send_wire(&error_msg(None, "expected join")))
                .await;
            return;
        }
    };
    let server_storage = match state.store.server_storage_id().await {
        Ok(s) => s,
        Err(err) => {
            tracing::error!(error = %err, "cannot read the server storage id");
            let _ = sink
                .send(send_wire(&error_msg(Some(&client_peer), "internal error")))
                .await;
            return;
        }
    };
    let peer = WireMessage::Peer {
        sender_id: SERVER_PEER_ID.into(),
        target_id: client_peer.clone(),
        selected_protocol_version: protocol::PROTOCOL_V1.into(),
        peer_metadata: Some(PeerMetadata {
            storage_id: Some(server_storage),
            is_ephemeral: false,
        }),
    };
    if sink.send(send_wire(&peer)).await.is_err() {
        return;
    }
    let allowed = allowed_document(&state, &session).await.unwrap_or(None);
    let (out_tx, mut out_rx) = mpsc::channel::<Outbound>(limits.outbound_queue);
    let out_weak = out_tx.downgrade();
    let mut conn = Conn {
        id: NEXT_CONN.fetch_add(1, Ordering::Relaxed),
        session,
        client_peer,
        storage_id,
        allowed,
        attached: None,
        ephemeral_count: 0,
        session_id: Uuid::new_v4().to_string(),
        first_out: Some(out_tx),
    };
    let mut bucket = Bucket::new(limits.messages_per_second, limits.message_burst);
    let expiry = tokio::time::sleep_until(session.expires_at.into());
    tokio::pin!(expiry);
    let mut revalidate = tokio::time::interval(limits.revalidate_every);
    revalidate.tick().await;
    let mut draining = state.draining.subscribe();
    let mut restarting = false;

    let close_reason: Option<String> = loop {
        tokio::select! {
            // Checked between messages: one being merged is committed and answered first.
            true = async { draining.wait_for(|d| *d).await.is_ok() } => {
                restarting = true;
                break None;
            }
            incoming = stream.next() => {
                let bytes = match incoming {
                    Some(Ok(Message::Binary(b))) => b,
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Text(_))) => break Some("text frames are not supported".into()),
                    Some(Ok(Message::Close(_))) | None => break None,
                    Some(Err(err)) => break Some(format!("connection error: {err}")),
                };
                if !bucket.take() {
                    state.metrics.rate_limited(RateLimit::SyncMessages);
                    break Some("rate limit exceeded".into());
                }
                match handle_message(&state, &mut conn, &out_weak, &bytes).await {
                    Ok(Some(reply)) => {
                        if sink.send(send_wire(&reply)).await.is_err() { break None; }
                    }
                    Ok(None) => {}
                    Err(reason) => break Some(reason),
                }
            }
            out = out_rx.recv() => {
                let Some(out) = out else { break Some("connection dropped".into()) };
                let Some((_, doc_str, _)) = &conn.attached else { continue };
                let msg = match out {
                    Outbound::End(reason) => break Some(reason.into()),
                    Outbound::Sync(data) => WireMessage::Sync {
                        sender_id: SERVER_PEER_ID.into(),
                        target_id: conn.client_peer.clone(),
                        document_id: doc_str.clone(),
                        data,
                    },
                    Outbound::Ephemeral { sender, data } => {
                        conn.ephemeral_count += 1;
                        WireMessage::Ephemeral {
                            sender_id: sender,
                            target_id: conn.client_peer.clone(),
                            count: conn.ephemeral_count,
                            session_id: conn.session_id.clone(),
                            document_id: doc_str.clone(),
                            data,
                        }
                    }
                };
                if sink.send(send_wire(&msg)).await.is_err() { break None; }
            }
            () = &mut expiry => break Some("access token expired: reconnect with a fresh token".into()),
            _ = revalidate.tick() => {
                match allowed_document(&state, &conn.session).await {
                    Ok(now) if now == conn.allowed => {}
                    // Paused or resumed: reconnect so the exchange restarts in the right mode.
                    Ok(Some(now)) if Some(now.0) == conn.allowed.map(|a| a.0) => {
                        break Some("partnership status changed: reconnect".into())
                    }
                    Ok(_) => break Some("access to this document ended".into()),
                    Err(err) => tracing::warn!(error = %err, "cannot re-check sync access"),
                }
            }
        }
    };
    if let Some((_, _, tx)) = &conn.attached {
        let _ = tx.send(Command::Detach { conn: conn.id }).await;
    }
    if let Some(reason) = close_reason {
        tracing::info!(conn = conn.id, user = %conn.session.user, reason = %reason, "closing sync connection");
        let _ = sink
            .send(send_wire(&error_msg(Some(&conn.client_peer), &reason)))
            .await;
    }
    let close = restarting.then(|| axum::extract::ws::CloseFrame {
        code: CLOSE_RESTARTING,
        reason: "server restarting: reconnect".into(),
    });
    let _ = sink.send(Message::Close(close)).await;
}

/// WebSocket close code 1012 (service restart): the client should reconnect, and a load
/// balancer sends it to another node.
pub const CLOSE_RESTARTING: u16 = 1012;

fn error_msg(target: Option<&str>, message: &str) -> WireMessage {
    WireMessage::Error {
        sender_id: Some(SERVER_PEER_ID.into()),
        target_id: target.map(str::to_string),
        message: message.into(),
    }
}

/// Handles one decoded message. `Ok(Some(reply))` to answer directly, `Err(reason)` to close.
async fn handle_message(
    state: &AppState,
    conn: &mut Conn,
    out_tx: &mpsc::WeakSender<Outbound>,
    bytes: &[u8],
) -> Result<Option<WireMessage>, String> {
    let received = state.metrics.is_on().then(Instant::now);
    let limits = state.sync.limits();
    let msg = protocol::decode_bounded(bytes, limits.max_message_bytes)
        .map_err(|e| format!("malformed message: {e}"))?;
    match msg {
        WireMessage::Request {
            document_id, data, ..
        }
        | WireMessage::Sync {
            document_id, data, ..
        } => {
            let Some((pid, _)) = permitted(conn, &document_id) else {
                return Ok(Some(unavailable(conn, document_id)));
            };
            let tx = attach(state, conn, out_tx, pid, &document_id).await?;
            let registry = state.sync.clone();
            let conn_id = conn.id;
            let result = registry
                .call(pid, |reply| Command::Receive {
                    conn: conn_id,
                    message: data.clone(),
                    received,
                    reply,
                })
                .await
                .and_then(|r| r);
            let _ = tx;
            match result {
                Ok(()) => Ok(None),
                Err(SyncError::NotAttached) => {
                    // The actor was evicted and restarted: attach again and retry once.
                    conn.attached = None;
                    attach(state, conn, out_tx, pid, &document_id).await?;
                    registry
                        .call(pid, |reply| Command::Receive {
                            conn: conn_id,
                            message: data.clone(),
                            received,
                            reply,
                        })
                        .await
                        .and_then(|r| r)
                        .map(|()| None)
                        .map_err(|e| e.to_string())
                }
                Err(e) => Err(e.to_string()),
            }
        }
        WireMessage::Ephemeral {
            document_id, data, ..
        } => {
            if permitted(conn, &document_id).is_some() {
                if let Some((_, _, tx)) = &conn.attached {
                    let _ = tx.try_send(Command::Ephemeral {
                        conn: conn.id,
                        data,
                    });
                }
            }
            Ok(None)
        }
        WireMessage::Leave { .. } => Err("peer left".into()),
        WireMessage::Join { .. } => Err("unexpected join".into()),
        // Remote-heads gossip and unknown types are ignored (forward compatibility).
        _ => Ok(None),
    }
}

/// The partnership behind `document_id` when it is the user's own document.
fn permitted(conn: &Conn, document_id: &str) -> Option<(PartnershipId, bool)> {
    let (pid, read_only) = conn.allowed?;
    let requested = DocumentId::parse(document_id).ok()?;
    (requested == DocumentId::for_partnership(pid)).then_some((pid, read_only))
}

fn unavailable(conn: &Conn, document_id: String) -> WireMessage {
    WireMessage::DocUnavailable {
        sender_id: SERVER_PEER_ID.into(),
        target_id: conn.client_peer.clone(),
        document_id,
    }
}

async fn attach(
    state: &AppState,
    conn: &mut Conn,
    out_tx: &mpsc::WeakSender<Outbound>,
    pid: PartnershipId,
    document_id: &str,
) -> Result<mpsc::Sender<Command>, String> {
    if let Some((p, _, tx)) = &conn.attached {
        if *p == pid && !tx.is_closed() {
            return Ok(tx.clone());
        }
    }
    // Access is checked again whenever the connection attaches (its first sync message, or
    // after the document's actor was restarted), so a loss of access since `join` (an ended
    // partnership, a changed password) holds even where no actor was there to be told.
    let read_only = match allowed_document(state, &conn.session).await {
        Ok(Some((p, now_read_only))) if p == pid => now_read_only,
        Ok(_) => {
            conn.allowed = None;
            return Err(SyncError::AccessEnded.to_string());
        }
        Err(err) => return Err(err.to_string()),
    };
    let out = conn
        .first_out
        .take()
        .or_else(|| out_tx.upgrade())
        .ok_or_else(|| "connection dropped".to_string())?;
    let registry = state.sync.clone();
    let (id, user, peer_id, storage_id) = (
        conn.id,
        conn.session.user,
        conn.client_peer.clone(),
        conn.storage_id.clone(),
    );
    registry
        .call(pid, |reply| Command::Attach {
            conn: id,
            user,
            peer_id: peer_id.clone(),
            storage_id: storage_id.clone(),
            read_only,
            out: out.clone(),
            reply,
        })
        .await
        .and_then(|r| r)
        .map_err(|e| e.to_string())?;
    let tx = registry.handle(pid).await.map_err(|e| e.to_string())?;
    conn.attached = Some((pid, document_id.to_string(), tx.clone()));
    Ok(tx)
}
