//! `GET /api/events`: the partnership's events as JSON text frames over a WebSocket, for clients
//! that do not run Automerge (web dashboards, scripts, bots).
//!
//! Every frame is one JSON object:
//! `{"event": "expense:added", "data": {...}, "by": "<user id>", "at": "<RFC 3339>"}`.
//! Merge events (`expense:added|updated|deleted`, `goal:added|progress`,
//! `approval:requested|responded`, `message:new|read`) come from the document actor after the
//! merge committed, whether the write came over REST or sync; `data` is the entity as the REST API
//! shows it (amounts as decimal strings at the currency scale, times RFC 3339). Presence
//! (`partner:online|offline`, `data: {"user_id", "last_seen"}`) is about the partner only.
//! A subscriber that falls too far behind gets `{"event": "resync", "data": {"missed": n}}`
//! instead of silently missing events, and should re-read what it shows over REST.
//!
//! Unlike `/sync`, whose clients are stock automerge-repo adapters that crash on an HTTP error at
//! upgrade time, a bad token here is a plain 401 before the upgrade. The socket closes (code
//! [`CLOSE_TOKEN_EXPIRED`]) when the token expires and (code [`CLOSE_ACCESS_ENDED`]) when a
//! periodic re-check (`SyncLimits::revalidate_every`) finds the user may no longer read the
//! partnership: it ended, or the token version changed.

use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use splitsave_sync_core::events::{Event, EventKind};
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::materialize::Row;
use tokio::sync::broadcast::error::RecvError;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::ApiError;
use crate::routes::approvals::ApprovalView;
use crate::routes::expenses::ExpenseView;
use crate::routes::goals::GoalView;
use crate::routes::messages::MessageView;
use crate::routes::shared::{partnership_of, rfc3339};
use crate::store::{PartnershipStatus, StoreError};
use crate::sync::connection::{bearer, origin_allowed};
use crate::sync::registry::EventSubscription;
use crate::sync::DocEvent;

/// Close code sent when the access token expires: reconnect with a fresh token.
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code sent when the user may no longer read the partnership (it ended, or the token
/// version changed after a password change).
pub const CLOSE_ACCESS_ENDED: u16 = 4003;
/// Close code sent when the client does not read its frames for [`SEND_TIMEOUT`].
pub const CLOSE_TOO_SLOW: u16 = 4008;

/// How long one frame may wait for a client that does not read before the socket is closed (the
/// events it would miss meanwhile are announced by `resync` anyway; this bounds a dead peer).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Clients only listen; anything they send is ignored, and a large message is refused.
const MAX_INCOMING_BYTES: usize = 4096;

/// The events route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(stream))
}

/// Query parameters of `/api/events`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EventsQuery {
    /// The access token (browsers cannot set headers on a WebSocket); an
    /// `Authorization: Bearer` header works too.
    pub token: Option<String>,
}

/// One text frame of `/api/events`. Documents the stream's shape in the OpenAPI document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({
    "event": "expense:added",
    "data": {"id": "01936f0e-5b7a-7c3e-9d1f-2a4b6c8d0e1f", "name": "Groceries", "amount": "42.50",
             "category": "groceries", "frequency": "weekly",
             "added_by": "01936f0e-0000-7000-8000-000000000001", "status": "active",
             "created_at": "2026-11-25T03:00:00.000Z", "updated_at": "2026-11-25T03:00:00.000Z"},
    "by": "01936f0e-0000-7000-8000-000000000001",
    "at": "2026-11-25T03:00:00.120Z"
}))]
pub struct EventFrame {
    /// `expense:added|updated|deleted`, `goal:added|progress`, `approval:requested|responded`,
    /// `message:new|read`, `partner:online|offline`, or `resync`.
    pub event: String,
    /// The entity as the REST API shows it; for presence `{"user_id", "last_seen"}`; for
    /// `resync` `{"missed": <count>}`.
    pub data: Value,
    /// Who made the change (for presence: the partner). Absent on `resync`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// When the server sent the event (RFC 3339).
    pub at: String,
}

/// `GET /api/events`.
#[utoipa::path(get, path = "/api/events", operation_id = "stream_events", tag = "events", security(("bearer" = [])),
    params(EventsQuery),
    description = "A WebSocket (send `Upgrade: websocket`) streaming the partnership's events as \
        JSON text frames, one `EventFrame` each: `{\"event\", \"data\", \"by\", \"at\"}`. Events: \
        `expense:added|updated|deleted` and `goal:added|progress` (data: the expense or goal as \
        `GET /api/expenses` / `GET /api/goals` show it), `approval:requested|responded` (the \
        approval request), `message:new|read` (the message), `partner:online|offline` (data: \
        `{user_id, last_seen}`, about the partner only). A subscriber that falls behind gets \
        `{\"event\": \"resync\", \"data\": {\"missed\": n}}` and should re-read over REST. \
        The server ignores what the client sends. Close codes: 4001 token expired (reconnect \
        with a fresh token), 4003 access ended (partnership gone or password changed), 4008 \
        client too slow.",
    responses(
        (status = 101, description = "Switching protocols; then text frames", body = EventFrame),
        (status = 401, description = "Missing, invalid or expired token", body = crate::error::ErrorBody),
        (status = 403, description = "`Origin` not in CORS_ORIGIN", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 426, description = "Not a WebSocket upgrade"),
    ))]
pub async fn stream(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    if !origin_allowed(&headers, &state.config.cors_origins) {
        return Err(ApiError::Forbidden("origin not allowed"));
    }
    let token = query
        .token
        .or_else(|| bearer(&headers))
        .ok_or(ApiError::Unauthorized("missing access token"))?;
    let claims = state.tokens.verify_access_token(&token)?;
    let user = crate::auth::extractor::authenticate(&state, &token).await?;
    let partnership = partnership_of(&state, &user).await?;
    let Ok(upgrade) = upgrade else {
        return Ok((
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "expected a WebSocket upgrade",
        )
            .into_response());
    };
    let pid = PartnershipId(partnership.id);
    // Subscribed before the 101 goes out: a client that writes right after connecting sees its
    // own write on the stream.
    let events = state.sync.subscribe_as(pid, UserId(user.user_id));
    // With several nodes, what the others commit reaches this node's subscribers through the
    // document's live actor here: load it (it stays while subscribed).
    if state.sync.clustered() {
        state
            .sync
            .handle(pid)
            .await
            .map_err(crate::routes::shared::api_error)?;
    }
    let remaining = u64::try_from(claims.exp - Utc::now().timestamp()).unwrap_or(0);
    let subscription = Subscription {
        user,
        pid,
        expires_at: tokio::time::Instant::now() + Duration::from_secs(remaining),
    };
    Ok(upgrade
        .max_message_size(MAX_INCOMING_BYTES)
        .max_frame_size(MAX_INCOMING_BYTES)
        .on_upgrade(move |socket| async move {
            let _open = state.sockets.open(crate::metrics::SocketKind::Events);
            run(state, subscription, events, socket).await;
        }))
}

/// Who listens to which partnership, and until when.
struct Subscription {
    user: AuthUser,
    pid: PartnershipId,
    expires_at: tokio::time::Instant,
}

async fn run(state: AppState, sub: Subscription, mut events: EventSubscription, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let me = UserId(sub.user.user_id);
    let expiry = tokio::time::sleep_until(sub.expires_at);
    tokio::pin!(expiry);
    let mut revalidate = tokio::time::interval(state.sync.limits().revalidate_every);
    revalidate.tick().await;
    let mut draining = state.draining.subscribe();
    let close: Option<(u16, &'static str)> = loop {
        let frames = tokio::select! {
            true = async { draining.wait_for(|d| *d).await.is_ok() } => {
                break Some((crate::sync::connection::CLOSE_RESTARTING, "server restarting: reconnect"))
            }
            received = events.recv() => match received {
                Ok(event) => match &*event {
                    DocEvent::AccessEnded { user } if user.is_none_or(|u| u == me) => {
                        break Some((CLOSE_ACCESS_ENDED, "access to this partnership ended"))
                    }
                    _ => frames_for(&event, me, Utc::now()),
                },
                Err(RecvError::Lagged(missed)) => vec![resync(missed, Utc::now())],
                // The channel lives in the registry while subscribed; gone means shutdown.
                Err(RecvError::Closed) => break Some((1001, "server shutting down")),
            },
            message = incoming.next() => match message {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break None,
                Some(Ok(_)) => continue,
            },
            () = &mut expiry => {
                break Some((CLOSE_TOKEN_EXPIRED, "access token expired: reconnect with a fresh token"))
            }
            _ = revalidate.tick() => match still_allowed(&state, &sub).await {
                Ok(true) => continue,
                Ok(false) => break Some((CLOSE_ACCESS_ENDED, "access to this partnership ended")),
                Err(err) => {
                    tracing::warn!(error = %err, "cannot re-check event stream access");
                    continue;
                }
            },
        };
        if let Err(reason) = send_frames(&mut sink, &frames).await {
            break reason;
        }
    };
    if let Some((code, reason)) = close {
        tracing::info!(user = %me, partnership = %sub.pid, reason, "closing event stream");
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Close(Some(frame)))).await;
    }
}

/// Sends frames in order; `Err` carries how to close (`None`: the client is gone).
async fn send_frames<S>(
    sink: &mut S,
    frames: &[EventFrame],
) -> Result<(), Option<(u16, &'static str)>>
where
    S: futures::Sink<Message> + Unpin,
{
    for frame in frames {
        let text = match serde_json::to_string(frame) {
            Ok(t) => t,
            Err(err) => {
                tracing::error!(error = %err, "cannot encode an event frame");
                continue;
            }
        };
        match tokio::time::timeout(SEND_TIMEOUT, sink.send(Message::Text(text.into()))).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(None),
            Err(_) => return Err(Some((CLOSE_TOO_SLOW, "client too slow"))),
        }
    }
    Ok(())
}

/// Whether the subscriber may still read the partnership: the user exists with the token's
/// version and the same partnership is still active or paused.
async fn still_allowed(state: &AppState, sub: &Subscription) -> Result<bool, StoreError> {
    let Some(user) = state.store.user_by_id(sub.user.user_id).await? else {
        return Ok(false);
    };
    if user.token_version != sub.user.token_version {
        return Ok(false);
    }
    Ok(matches!(
        state.store.current_partnership(sub.user.user_id).await?,
        Some(p) if p.id == sub.pid.0
            && matches!(p.status, PartnershipStatus::Active | PartnershipStatus::Paused)
    ))
}

/// The frames `viewer` gets for one published event: one per merge event; presence only when it
/// is about the partner.
pub fn frames_for(event: &DocEvent, viewer: UserId, at: DateTime<Utc>) -> Vec<EventFrame> {
    let at_text = at.to_rfc3339_opts(SecondsFormat::Millis, true);
    match event {
        DocEvent::Merge { events, by } => events
            .iter()
            .map(|e| EventFrame {
                event: e.kind.name().to_string(),
                data: event_data(e),
                by: by.map(|u| u.to_string()),
                at: at_text.clone(),
            })
            .collect(),
        DocEvent::Presence { user, online, at } if *user != viewer => {
            let name = if *online {
                "partner:online"
            } else {
                "partner:offline"
            };
            let last_seen = at.to_rfc3339_opts(SecondsFormat::Millis, true);
            vec![EventFrame {
                event: name.to_string(),
                data: json!({"user_id": user.to_string(), "last_seen": last_seen}),
                by: Some(user.to_string()),
                at: at_text,
            }]
        }
        DocEvent::Presence { .. } | DocEvent::AccessEnded { .. } => Vec::new(),
    }
}

/// The notice that `missed` events were dropped for a slow subscriber.
pub fn resync(missed: u64, at: DateTime<Utc>) -> EventFrame {
    EventFrame {
        event: "resync".to_string(),
        data: json!({ "missed": missed }),
        by: None,
        at: at.to_rfc3339_opts(SecondsFormat::Millis, true),
    }
}

/// The entity of an event as the REST API shows it; only its id when it no longer exists (an
/// expense removed from the document).
fn event_data(event: &Event) -> Value {
    match &event.row {
        Some(row) => row_json(row),
        None => {
            debug_assert!(matches!(event.kind, EventKind::ExpenseDeleted));
            json!({ "id": event.key })
        }
    }
}

/// A materialized row in the REST API's JSON shape: the same views the entity's own endpoints
/// answer with, so a stream client and a REST client read one shape.
pub fn row_json(row: &Row) -> Value {
    let value = match row.clone() {
        Row::Expense(e) => serde_json::to_value(ExpenseView::from(e)),
        Row::Goal(g) => serde_json::to_value(GoalView::from(g)),
        Row::Approval(a) => serde_json::to_value(ApprovalView::from(a)),
        Row::Message(m) => serde_json::to_value(MessageView::from(m)),
        // Merges yield no events for these; kept complete for any later event.
        Row::GoalContribution(c) => Ok(json!({
            "id": c.id.to_string(),
            "goal_id": c.goal_id.to_string(),
            "user_id": c.user_id.to_string(),
            "amount": c.amount.to_string(),
            "created_at": rfc3339(c.created_at),
        })),
        Row::Contribution(c) => Ok(json!({
            "month": c.month,
            "total_required": c.total_required.to_string(),
        })),
    };
    value.unwrap_or_else(|err| {
        tracing::error!(error = %err, "cannot encode an event's entity");
        Value::Null
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;
    use splitsave_sync_core::ids::EntityId;
    use splitsave_sync_core::materialize::ExpenseRow;
    use splitsave_sync_core::schema::Collection;
    use splitsave_sync_core::time::Millis;
    use std::sync::Arc;
    use tokio::sync::broadcast;

    fn expense(by: UserId) -> Event {
        Event {
            kind: EventKind::ExpenseAdded,
            collection: Collection::Expenses,
            key: "k".into(),
            row: Some(Row::Expense(ExpenseRow {
                id: EntityId::new_v7(),
                name: "Rent".into(),
                amount: Decimal::new(120_050, 2),
                category: "housing".into(),
                frequency: "monthly".into(),
                added_by: by,
                status: "active".into(),
                created_at: Millis(1_764_039_600_000),
                updated_at: Millis(1_764_039_600_000),
            })),
        }
    }

    #[test]
    fn merge_events_carry_the_entity_in_the_rest_shape() {
        let (me, partner) = (UserId::new_v7(), UserId::new_v7());
        let event = DocEvent::Merge {
            events: vec![expense(partner)],
            by: Some(partner),
        };
        let frames = frames_for(&event, me, Utc::now());
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event, "expense:added");
        assert_eq!(frames[0].by.as_deref(), Some(partner.to_string().as_str()));
        assert_eq!(frames[0].data["amount"], "1200.50");
        assert_eq!(frames[0].data["created_at"], "2025-11-25T03:00:00.000Z");
        assert_eq!(frames[0].data["added_by"], partner.to_string());
    }

    #[test]
    fn presence_is_only_about_the_partner() {
        let (me, partner) = (UserId::new_v7(), UserId::new_v7());
        let at = Utc::now();
        let mine = DocEvent::Presence {
            user: me,
            online: true,
            at,
        };
        assert!(frames_for(&mine, me, at).is_empty());
        let theirs = DocEvent::Presence {
            user: partner,
            online: false,
            at,
        };
        let frames = frames_for(&theirs, me, at);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].event, "partner:offline");
        assert_eq!(frames[0].data["user_id"], partner.to_string());
        assert_eq!(
            frames[0].data["last_seen"],
            at.to_rfc3339_opts(SecondsFormat::Millis, true)
        );
    }

    #[tokio::test]
    async fn a_lagging_subscriber_is_told_to_resync() {
        let (tx, mut rx) = broadcast::channel::<Arc<DocEvent>>(2);
        let by = UserId::new_v7();
        for _ in 0..5 {
            let _ = tx.send(Arc::new(DocEvent::Merge {
                events: vec![expense(by)],
                by: Some(by),
            }));
        }
        let Err(RecvError::Lagged(missed)) = rx.recv().await else {
            panic!("expected the receiver to lag");
        };
        let frame = resync(missed, Utc::now());
        assert_eq!(frame.event, "resync");
        assert_eq!(frame.data["missed"], 3);
        let text = serde_json::to_string(&frame).unwrap();
        assert!(!text.contains("\"by\""), "{text}");
    }
}
