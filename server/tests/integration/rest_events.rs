//! `GET /api/events` through real WebSockets: REST writes reach connected sync clients and the
//! event stream with the product's event names and the entity exactly as REST answers with it; a
//! write made over `/sync` reaches the event stream and REST reads once it committed; partner
//! presence; and the stream's refusals and closes. Each test runs on SQLite and, when
//! `TEST_DATABASE_URL` is set, on PostgreSQL.

use std::collections::HashMap;
use std::time::Duration;

use automerge::Automerge;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use splitsave_client::connection::{DocSync, SyncConnection};
use splitsave_sync_core::document::read_document;
use splitsave_sync_core::enums::{Category, Frequency, ItemStatus};
use splitsave_sync_core::ids::{DocumentId, EntityId, UserId};
use splitsave_sync_core::materialize::{Row, RowChange};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Ctx, NewExpense, Outcome};
use splitsave_sync_core::time::Millis;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use crate::common::{Backend, Session, TestApp, PASSWORD};

on_both_backends!(
    a_rest_write_reaches_sync_clients_and_the_event_stream,
    approvals_goals_and_messages_stream_with_their_event_names,
    a_sync_write_reaches_the_event_stream_and_rest_reads,
    partner_presence_reaches_the_event_stream,
    the_event_stream_refuses_bad_tokens_foreign_origins_and_plain_http,
    the_event_stream_closes_when_the_token_expires,
    the_event_stream_closes_when_the_partnership_ends,
    the_event_stream_closes_at_once_when_the_password_changes,
);

/// How long one exchange may take on a busy 2-core machine.
const TIMEOUT: Duration = Duration::from_secs(20);

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

fn deadline() -> Instant {
    Instant::now() + TIMEOUT
}

fn ws_base(app: &TestApp) -> String {
    app.base_url.replacen("http://", "ws://", 1)
}

/// Opens `/api/events` with the token in the query string.
async fn events(app: &TestApp, token: &str) -> Ws {
    let url = format!("{}/api/events?token={token}", ws_base(app));
    let (ws, response) = tokio_tungstenite::connect_async(url)
        .await
        .expect("event stream connects");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// The next text frame as JSON (pings skipped); panics on a close or at the deadline.
async fn next_frame(ws: &mut Ws, until: Instant) -> Value {
    loop {
        let message = tokio::time::timeout_at(until, ws.next())
            .await
            .expect("an event before the deadline")
            .expect("the stream is open")
            .expect("a frame");
        match message {
            Message::Text(text) => return serde_json::from_str(&text).expect("a JSON frame"),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

/// Reads frames until every one of `names` arrived, and returns them by name. Presence frames
/// are skipped (partners connect in the background); any other event is a failure.
async fn expect_events(ws: &mut Ws, names: &[&str]) -> HashMap<String, Value> {
    let until = deadline();
    let mut seen = HashMap::new();
    while seen.len() < names.len() {
        let frame = next_frame(ws, until).await;
        let name = frame["event"].as_str().expect("event name").to_string();
        if name.starts_with("partner:") {
            continue;
        }
        assert!(
            names.contains(&name.as_str()) && !seen.contains_key(&name),
            "unexpected event {frame} while waiting for {names:?}"
        );
        seen.insert(name, frame);
    }
    seen
}

/// The close frame that ends the stream (frames before it are skipped).
async fn expect_close(ws: &mut Ws, within: Duration) -> (u16, String) {
    let until = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, ws.next())
            .await
            .expect("the stream closes before the deadline")
        {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string())
            }
            Some(Ok(Message::Close(None))) | None => panic!("closed without a reason"),
            Some(Ok(_)) => continue,
            Some(Err(err)) => panic!("stream failed before a close frame: {err}"),
        }
    }
}

fn assert_rfc3339(value: &Value) {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is a time"));
    assert!(
        DateTime::parse_from_rfc3339(text).is_ok(),
        "{text} is RFC 3339"
    );
}

fn expense(name: &str, minor: i64) -> NewExpense {
    NewExpense {
        name: name.into(),
        amount: MinorUnits(minor),
        category: Category::Groceries,
        frequency: Frequency::Weekly,
    }
}

/// One partner's device: an empty replica that gets the couple's document over `/sync`.
struct Device {
    conn: SyncConnection,
    sync: DocSync,
    doc: Automerge,
}

impl Device {
    async fn connect(app: &TestApp, session: &Session) -> Device {
        let (status, current) = app
            .get("/api/partnerships/current", Some(&session.access_token))
            .await;
        assert_eq!(status, StatusCode::OK, "{current}");
        let url = current["document_url"].as_str().expect("document_url");
        let document_id = DocumentId::parse(url).expect("document url parses");
        let sync_url = format!("{}/sync?token={}", ws_base(app), session.access_token);
        let conn = SyncConnection::connect(
            &sync_url,
            &format!("device-{}", Uuid::new_v4()),
            None,
            TIMEOUT,
        )
        .await
        .expect("sync connects");
        let mut device = Device {
            conn,
            sync: DocSync::new(document_id.to_string()),
            doc: Automerge::new(),
        };
        device.settle().await;
        device
    }

    async fn settle(&mut self) {
        self.sync
            .sync_until_settled(&mut self.conn, &mut self.doc, deadline())
            .await
            .expect("sync settles");
    }

    async fn wait_for_expense(&mut self, id: EntityId) -> splitsave_sync_core::schema::Expense {
        self.sync
            .wait_for(&mut self.conn, &mut self.doc, deadline(), |doc| {
                read_document(doc).is_ok_and(|s| s.expenses.iter().any(|e| e.id == id))
            })
            .await
            .expect("the expense arrives over sync");
        read_document(&self.doc)
            .expect("document reads")
            .expenses
            .into_iter()
            .find(|e| e.id == id)
            .expect("expense")
    }
}

async fn a_rest_write_reaches_sync_clients_and_the_event_stream(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;
    let mut bens_phone = Device::connect(&app, &ben).await;

    let (status, created) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Groceries", "amount": "42.50", "category": "groceries", "frequency": "weekly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id: EntityId = EntityId(
        created["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("expense id"),
    );

    let synced = bens_phone.wait_for_expense(id).await;
    assert_eq!(synced.amount, MinorUnits(4_250));
    assert_eq!(synced.added_by, UserId(ann.user_id));

    let got = expect_events(&mut stream, &["expense:added"]).await;
    let frame = &got["expense:added"];
    assert_eq!(frame["by"], ann.user_id.to_string());
    assert_rfc3339(&frame["at"]);
    // The event carries the expense exactly as the REST answer showed it.
    assert_eq!(frame["data"], created);
    let data = &frame["data"];
    assert_eq!(data["name"], "Groceries");
    assert_eq!(data["amount"], "42.50");
    assert_eq!(data["status"], "active");
    assert_eq!(data["added_by"], ann.user_id.to_string());
    assert_rfc3339(&data["created_at"]);

    // Ben's stream sees the archive he makes himself, with the row's new status.
    let mut bens_stream = events(&app, &ben.access_token).await;
    let (status, body) = app
        .delete(
            &format!("/api/expenses/{id}"),
            Some(&ben.access_token),
            None,
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    for s in [&mut stream, &mut bens_stream] {
        let got = expect_events(s, &["expense:deleted"]).await;
        let frame = &got["expense:deleted"];
        assert_eq!(frame["by"], ben.user_id.to_string());
        assert_eq!(frame["data"]["id"], id.to_string());
        assert_eq!(frame["data"]["status"], "archived");
    }
    bens_phone
        .sync
        .wait_for(
            &mut bens_phone.conn,
            &mut bens_phone.doc,
            deadline(),
            |doc| {
                read_document(doc).is_ok_and(|s| {
                    s.expenses
                        .iter()
                        .any(|e| e.id == id && e.status == ItemStatus::Archived)
                })
            },
        )
        .await
        .expect("the archive reaches the sync client");
}

async fn approvals_goals_and_messages_stream_with_their_event_names(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (a, b) = (
        Some(ann.access_token.as_str()),
        Some(ben.access_token.as_str()),
    );
    let mut stream = events(&app, &ann.access_token).await;

    // Over the 100.00 threshold: the expense waits for Ben.
    let (status, asked) = app
        .post(
            "/api/expenses",
            a,
            json!({"name": "Sofa", "amount": "150.00", "category": "other", "frequency": "yearly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
    let got = expect_events(&mut stream, &["expense:added", "approval:requested"]).await;
    let added = &got["expense:added"]["data"];
    assert_eq!(added["id"], asked["target_id"]);
    assert_eq!(added["status"], "pending_approval");
    assert_eq!(added["amount"], "150.00");
    let request = &got["approval:requested"]["data"];
    assert_eq!(request["id"], asked["id"]);
    assert_eq!(request["target_id"], asked["target_id"]);
    assert_eq!(request["requested_by"], ann.user_id.to_string());
    assert_eq!(request["status"], "pending");
    assert_eq!(request["responded_by"], Value::Null);

    let (status, answered) = app
        .post(
            &format!("/api/approvals/{}/approve", text(&asked["id"])),
            b,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    let got = expect_events(&mut stream, &["approval:responded", "expense:updated"]).await;
    let frame = &got["approval:responded"];
    assert_eq!(frame["by"], ben.user_id.to_string());
    assert_eq!(frame["data"], answered);
    assert_eq!(frame["data"]["status"], "approved");
    assert_eq!(frame["data"]["responded_by"], ben.user_id.to_string());
    assert_rfc3339(&frame["data"]["responded_at"]);
    assert_eq!(got["expense:updated"]["data"]["status"], "active");

    // Goals: added (pending approval), then progress after approval.
    let (status, goal_request) = app
        .post(
            "/api/goals",
            a,
            json!({"name": "Trip", "target_amount": "2000.00", "goal_type": "vacation", "priority": "high"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{goal_request}");
    let goal = text(&goal_request["target_id"]);
    let got = expect_events(&mut stream, &["goal:added", "approval:requested"]).await;
    let g = &got["goal:added"]["data"];
    assert_eq!(g["id"], goal);
    assert_eq!(g["target_amount"], "2000.00");
    assert_eq!(g["saved_amount"], "0.00");
    assert_eq!(g["goal_type"], "vacation");
    assert_eq!(g["priority"], "high");
    let (status, body) = app
        .post(
            &format!("/api/approvals/{}/approve", text(&goal_request["id"])),
            b,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    expect_events(&mut stream, &["approval:responded"]).await;
    let (status, body) = app
        .put(
            &format!("/api/goals/{goal}/contribution"),
            b,
            json!({"amount": "50.25"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let got = expect_events(&mut stream, &["goal:progress"]).await;
    assert_eq!(got["goal:progress"]["by"], ben.user_id.to_string());
    assert_eq!(got["goal:progress"]["data"]["id"], goal);
    assert_eq!(got["goal:progress"]["data"]["saved_amount"], "50.25");

    // Messages: new, then read by the recipient.
    let (status, message) = app
        .post("/api/messages", a, json!({"text": "dinner at 8?"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let got = expect_events(&mut stream, &["message:new"]).await;
    assert_eq!(got["message:new"]["data"], message);
    assert_eq!(got["message:new"]["data"]["read_by_recipient"], false);
    let (status, body) = app
        .put(
            &format!("/api/messages/{}/read", text(&message["id"])),
            b,
            json!({}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let got = expect_events(&mut stream, &["message:read"]).await;
    assert_eq!(got["message:read"]["data"]["id"], message["id"]);
    assert_eq!(got["message:read"]["data"]["read_by_recipient"], true);
    assert_eq!(got["message:read"]["by"], ben.user_id.to_string());
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{value} is a string"))
        .to_string()
}

async fn a_sync_write_reaches_the_event_stream_and_rest_reads(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;
    let mut phone = Device::connect(&app, &ben).await;

    let ctx = Ctx {
        user: UserId(ben.user_id),
        now: Millis::now(),
    };
    let outcome = phone
        .doc
        .transact(|tx| ops::add_expense(tx, &ctx, &expense("Internet", 3_999)))
        .expect("local write")
        .result;
    let Outcome::Applied { id } = outcome else {
        panic!("a small expense is added directly: {outcome:?}")
    };
    // Settled: the server acknowledged the change, so it is committed.
    phone.settle().await;

    let got = expect_events(&mut stream, &["expense:added"]).await;
    let frame = &got["expense:added"];
    assert_eq!(frame["by"], ben.user_id.to_string());
    assert_eq!(frame["data"]["id"], id.to_string());
    assert_eq!(frame["data"]["amount"], "39.99");
    assert_eq!(frame["data"]["added_by"], ben.user_id.to_string());

    let rows = app.state.store.materialized_rows(pid).await.expect("rows");
    let row = rows
        .iter()
        .find_map(|r| match r {
            RowChange::Upsert(Row::Expense(e)) if e.id == id => Some(e.clone()),
            _ => None,
        })
        .expect("the synced expense is in the expenses table");
    assert_eq!(row.amount, Decimal::new(3_999, 2));
    assert_eq!(row.status, ItemStatus::Active.as_str());
    assert_eq!(row.added_by, UserId(ben.user_id));
    assert_eq!(
        frame["data"]["created_at"],
        json!(splitsave_server::routes::shared::rfc3339(row.created_at))
    );
    // REST reads show it, in the shape the stream used.
    let (status, read) = app
        .get(&format!("/api/expenses/{id}"), Some(&ann.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{read}");
    assert_eq!(read, frame["data"]);

    // Over the threshold, a well-behaved app files the approval request itself: the stream and
    // the approvals list show it once the merge committed.
    let outcome = phone
        .doc
        .transact(|tx| ops::add_expense(tx, &ctx, &expense("Bike", 45_000)))
        .expect("local write")
        .result;
    let Outcome::ApprovalRequested { request_id, .. } = outcome else {
        panic!("a big expense needs approval: {outcome:?}")
    };
    phone.settle().await;
    let got = expect_events(&mut stream, &["expense:added", "approval:requested"]).await;
    assert_eq!(
        got["approval:requested"]["data"]["id"],
        request_id.to_string()
    );
    assert_eq!(got["expense:added"]["data"]["status"], "pending_approval");
    let (status, pending) = app.get("/api/approvals", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    assert!(
        pending["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|a| a["id"] == request_id.to_string())),
        "{pending}"
    );
}

async fn partner_presence_reaches_the_event_stream(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;
    // Ann's own devices coming online are not news to her.
    let _anns_laptop = Device::connect(&app, &ann).await;
    let bens_phone = Device::connect(&app, &ben).await;

    let online = next_frame(&mut stream, deadline()).await;
    assert_eq!(online["event"], "partner:online", "{online}");
    assert_eq!(online["data"]["user_id"], ben.user_id.to_string());
    assert_eq!(online["by"], ben.user_id.to_string());
    assert_rfc3339(&online["data"]["last_seen"]);

    bens_phone.conn.close().await;
    let offline = next_frame(&mut stream, deadline()).await;
    assert_eq!(offline["event"], "partner:offline", "{offline}");
    assert_eq!(offline["data"]["user_id"], ben.user_id.to_string());
    let seen_online: DateTime<Utc> = online["data"]["last_seen"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("time");
    let seen_offline: DateTime<Utc> = offline["data"]["last_seen"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .expect("time");
    assert!(seen_offline >= seen_online);
}

async fn the_event_stream_refuses_bad_tokens_foreign_origins_and_plain_http(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.cors_origins = vec!["https://app.example.com".into()]
    })
    .await
    else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;

    let (status, body) = app.get("/api/events", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, body) = app.get("/api/events?token=garbage", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A WebSocket upgrade with a bad token is refused with the HTTP status, before upgrading.
    let url = format!("{}/api/events?token=not-a-token", ws_base(&app));
    match tokio_tungstenite::connect_async(url).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("expected a 401 at upgrade, got {other:?}"),
    }

    let mut request = format!("{}/api/events", ws_base(&app))
        .into_client_request()
        .expect("request");
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {}", ann.access_token)).expect("header"),
    );
    let mut foreign = request.clone();
    foreign.headers_mut().insert(
        "origin",
        HeaderValue::from_static("https://evil.example.com"),
    );
    match tokio_tungstenite::connect_async(foreign).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN)
        }
        other => panic!("expected a 403 for a foreign origin, got {other:?}"),
    }
    // The bearer header works, and from an allowed origin.
    request.headers_mut().insert(
        "origin",
        HeaderValue::from_static("https://app.example.com"),
    );
    let (ws, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("bearer upgrade");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    drop(ws);

    let (status, _) = app.get("/api/events", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::UPGRADE_REQUIRED);

    // No partnership: nothing to stream.
    let single = app.register("solo@example.com", "Sol").await;
    let (status, body) = app.get("/api/events", Some(&single.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found", "{body}");
}

async fn the_event_stream_closes_when_the_token_expires(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let user = app
        .state
        .store
        .user_by_id(ann.user_id)
        .await
        .expect("user")
        .expect("exists");
    let ttl = splitsave_server::auth::tokens::ACCESS_TOKEN_TTL_SECS;
    let issued_at = Utc::now() - chrono::Duration::seconds(ttl - 2);
    let token = app
        .state
        .tokens
        .issue_access_token(ann.user_id, Some(pid), user.token_version, issued_at)
        .expect("token");
    let mut stream = events(&app, &token.token).await;
    let (code, reason) = expect_close(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(code, 4001, "{reason}");
    assert!(reason.contains("expired"), "{reason}");
}

async fn the_event_stream_closes_when_the_partnership_ends(backend: Backend) {
    let revalidate = Duration::from_millis(200);
    let Some(app) = TestApp::spawn_with(backend, |c| c.sync.revalidate_every = revalidate).await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;
    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ben.access_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (code, reason) = expect_close(&mut stream, revalidate * 25).await;
    assert_eq!(code, 4003, "{reason}");
    assert!(reason.contains("ended"), "{reason}");
}

async fn the_event_stream_closes_at_once_when_the_password_changes(backend: Backend) {
    // No periodic re-check: the change itself ends the stream.
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.sync.revalidate_every = Duration::from_secs(3_600)
    })
    .await
    else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;
    let (status, body) = app
        .post(
            "/api/auth/change-password",
            Some(&ann.access_token),
            json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (code, reason) = expect_close(&mut stream, Duration::from_secs(10)).await;
    assert_eq!(code, 4003, "{reason}");
    assert!(reason.contains("ended"), "{reason}");
}
