//! `GET /api/events` through real WebSockets: writes made through the document actor (as REST
//! handlers make them) reach connected sync clients and the event stream with the product's event
//! names and the entity in the REST shape; a write made over `/sync` reaches the event stream and
//! the materialized tables REST reads from; partner presence; and the stream's refusals and
//! closes. Each test runs on SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use automerge::Automerge;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use splitsave_client::connection::{DocSync, SyncConnection};
use splitsave_server::sync::doc_actor::{Command, DocOp};
use splitsave_sync_core::document::read_document;
use splitsave_sync_core::enums::{Category, Frequency, GoalType, ItemStatus, Priority};
use splitsave_sync_core::ids::{DocumentId, EntityId, PartnershipId, UserId};
use splitsave_sync_core::materialize::{Row, RowChange};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, Outcome};
use splitsave_sync_core::time::Millis;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

use common::{Backend, Session, TestApp, PASSWORD};

on_both_backends!(
    a_rest_write_reaches_sync_clients_and_the_event_stream,
    approvals_goals_and_messages_stream_with_their_event_names,
    a_sync_write_reaches_the_event_stream_and_rest_reads,
    partner_presence_reaches_the_event_stream,
    the_event_stream_refuses_bad_tokens_foreign_origins_and_plain_http,
    the_event_stream_closes_when_the_token_expires,
    the_event_stream_closes_when_the_partnership_ends,
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

/// Runs an operation on the couple's document as `user`, as a REST handler does.
async fn write_as(
    app: &TestApp,
    pid: Uuid,
    user: Uuid,
    op: impl Fn(&mut automerge::transaction::Transaction<'_>, &Ctx) -> Result<Outcome, ops::OpError>
        + Send
        + Sync
        + 'static,
) -> Outcome {
    let uid = UserId(user);
    let op = Arc::new(op);
    let doc_op: DocOp = Arc::new(move |tx| {
        op(
            tx,
            &Ctx {
                user: uid,
                now: Millis::now(),
            },
        )
    });
    app.state
        .sync
        .call(PartnershipId(pid), |reply| Command::Apply {
            user: uid,
            op: doc_op.clone(),
            reply,
        })
        .await
        .expect("actor answers")
        .expect("operation applies")
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

fn applied(outcome: Outcome) -> EntityId {
    match outcome {
        Outcome::Applied { id } => id,
        other => panic!("expected a direct write, got {other:?}"),
    }
}

fn requested(outcome: Outcome) -> (EntityId, EntityId) {
    match outcome {
        Outcome::ApprovalRequested {
            request_id,
            target_id,
        } => (request_id, target_id),
        other => panic!("expected an approval request, got {other:?}"),
    }
}

async fn a_rest_write_reaches_sync_clients_and_the_event_stream(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;
    let mut bens_phone = Device::connect(&app, &ben).await;

    let id = applied(
        write_as(&app, pid, ann.user_id, |tx, ctx| {
            ops::add_expense(tx, ctx, &expense("Groceries", 4_250))
        })
        .await,
    );

    let synced = bens_phone.wait_for_expense(id).await;
    assert_eq!(synced.amount, MinorUnits(4_250));
    assert_eq!(synced.added_by, UserId(ann.user_id));

    let got = expect_events(&mut stream, &["expense:added"]).await;
    let frame = &got["expense:added"];
    assert_eq!(frame["by"], ann.user_id.to_string());
    assert_rfc3339(&frame["at"]);
    let data = &frame["data"];
    assert_eq!(data["id"], id.to_string());
    assert_eq!(data["name"], "Groceries");
    assert_eq!(data["amount"], "42.50");
    assert_eq!(data["category"], "groceries");
    assert_eq!(data["frequency"], "weekly");
    assert_eq!(data["status"], "active");
    assert_eq!(data["added_by"], ann.user_id.to_string());
    assert_rfc3339(&data["created_at"]);
    assert_rfc3339(&data["updated_at"]);

    // Ben's stream sees the archive he makes himself, with the row's new status.
    let mut bens_stream = events(&app, &ben.access_token).await;
    write_as(&app, pid, ben.user_id, move |tx, ctx| {
        ops::archive_expense(tx, ctx, id)
    })
    .await;
    for s in [&mut stream, &mut bens_stream] {
        let got = expect_events(s, &["expense:deleted"]).await;
        let frame = &got["expense:deleted"];
        assert_eq!(frame["by"], ben.user_id.to_string());
        assert_eq!(frame["data"]["id"], id.to_string());
        assert_eq!(frame["data"]["status"], "archived");
    }
}

async fn approvals_goals_and_messages_stream_with_their_event_names(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut stream = events(&app, &ann.access_token).await;

    // Over the 100.00 threshold: the expense waits for Ben.
    let (request, target) = requested(
        write_as(&app, pid, ann.user_id, |tx, ctx| {
            ops::add_expense(tx, ctx, &expense("Sofa", 15_000))
        })
        .await,
    );
    let got = expect_events(&mut stream, &["expense:added", "approval:requested"]).await;
    let added = &got["expense:added"]["data"];
    assert_eq!(added["id"], target.to_string());
    assert_eq!(added["status"], "pending_approval");
    assert_eq!(added["amount"], "150.00");
    let asked = &got["approval:requested"]["data"];
    assert_eq!(asked["id"], request.to_string());
    assert_eq!(asked["target_id"], target.to_string());
    assert_eq!(asked["requested_by"], ann.user_id.to_string());
    assert_eq!(asked["status"], "pending");
    assert_eq!(asked["responded_by"], Value::Null);

    write_as(&app, pid, ben.user_id, move |tx, ctx| {
        ops::approve(tx, ctx, request)
    })
    .await;
    let got = expect_events(&mut stream, &["approval:responded", "expense:updated"]).await;
    let answered = &got["approval:responded"];
    assert_eq!(answered["by"], ben.user_id.to_string());
    assert_eq!(answered["data"]["status"], "approved");
    assert_eq!(answered["data"]["responded_by"], ben.user_id.to_string());
    assert_rfc3339(&answered["data"]["responded_at"]);
    assert_eq!(got["expense:updated"]["data"]["status"], "active");

    // Goals: added (pending approval), then progress after approval.
    let (goal_request, goal) = requested(
        write_as(&app, pid, ann.user_id, |tx, ctx| {
            ops::add_goal(
                tx,
                ctx,
                &NewGoal {
                    name: "Trip".into(),
                    target_amount: MinorUnits(200_000),
                    goal_type: GoalType::Vacation,
                    priority: Priority::High,
                },
            )
        })
        .await,
    );
    let got = expect_events(&mut stream, &["goal:added", "approval:requested"]).await;
    let g = &got["goal:added"]["data"];
    assert_eq!(g["id"], goal.to_string());
    assert_eq!(g["target_amount"], "2000.00");
    assert_eq!(g["saved_amount"], "0.00");
    assert_eq!(g["goal_type"], "vacation");
    assert_eq!(g["priority"], "high");
    write_as(&app, pid, ben.user_id, move |tx, ctx| {
        ops::approve(tx, ctx, goal_request)
    })
    .await;
    expect_events(&mut stream, &["approval:responded"]).await;
    write_as(&app, pid, ben.user_id, move |tx, ctx| {
        ops::contribute_to_goal(tx, ctx, goal, MinorUnits(5_025))
    })
    .await;
    let got = expect_events(&mut stream, &["goal:progress"]).await;
    assert_eq!(got["goal:progress"]["by"], ben.user_id.to_string());
    assert_eq!(got["goal:progress"]["data"]["saved_amount"], "50.25");

    // Messages: new, then read by the recipient.
    let message = applied(
        write_as(&app, pid, ann.user_id, |tx, ctx| {
            ops::send_message(tx, ctx, "dinner at 8?")
        })
        .await,
    );
    let got = expect_events(&mut stream, &["message:new"]).await;
    let m = &got["message:new"]["data"];
    assert_eq!(m["id"], message.to_string());
    assert_eq!(m["text"], "dinner at 8?");
    assert_eq!(m["sender_id"], ann.user_id.to_string());
    assert_eq!(m["read_by_recipient"], false);
    write_as(&app, pid, ben.user_id, move |tx, ctx| {
        ops::mark_read(tx, ctx, message)
    })
    .await;
    let got = expect_events(&mut stream, &["message:read"]).await;
    assert_eq!(got["message:read"]["data"]["read_by_recipient"], true);
    assert_eq!(got["message:read"]["by"], ben.user_id.to_string());
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
    let id = applied(
        phone
            .doc
            .transact(|tx| ops::add_expense(tx, &ctx, &expense("Internet", 3_999)))
            .expect("local write")
            .result,
    );
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
        json!(splitsave_server::routes::documents::rfc3339(row.created_at))
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
