//! What partners observe through `GET /sync` on the in-process router: offline edits converge to
//! the enforced state, the security refusals (forged actor ids, another couple's document, ended
//! access, expired or bad tokens, foreign origins), presence, resuming by storageId, compaction,
//! and REST-style operations through the document actor. Each test runs on SQLite and, when
//! `TEST_DATABASE_URL` is set, on PostgreSQL.

use std::time::Duration;

use automerge::sync::SyncDoc;
use automerge::{Automerge, ChangeHash};
use chrono::Utc;
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::json;
use splitsave_client::connection::{ConnectionError, SyncConnection};
use splitsave_server::sync::SyncError;
use splitsave_sync_core::document::read_document;
use splitsave_sync_core::enums::{
    ApprovalStatus, Category, Frequency, GoalType, ItemStatus, PartnershipStatus, Priority,
    RequestType,
};
use splitsave_sync_core::ids::{DocumentId, EntityId, PartnershipId, UserId};
use splitsave_sync_core::materialize::{self, Row, RowChange};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, Outcome};
use splitsave_sync_core::policy::add_request_id;
use splitsave_sync_core::protocol::{self, WireMessage};
use splitsave_sync_core::schema::Expense;
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::write;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message};
use uuid::Uuid;

use crate::common::{Backend, TestApp, PASSWORD};
use crate::sync_support::{
    self, settle_all, stored_document, stored_heads, sync_url, SyncClient, EXCHANGE_TIMEOUT,
};

on_both_backends!(
    offline_edits_converge_to_the_enforced_state,
    a_change_under_the_partners_actor_id_is_refused_whole,
    another_couples_document_is_unavailable_like_a_missing_one,
    a_deleted_partner_is_cut_off_at_the_next_revalidation,
    an_expired_token_closes_the_socket,
    sync_refuses_plain_http_bad_tokens_and_foreign_origins,
    partners_see_each_other_come_online_and_go_offline,
    a_reconnecting_device_resumes_with_only_the_missing_changes,
    compaction_keeps_the_document_and_drops_covered_changes,
    an_operation_through_the_actor_reaches_connected_partners,
    a_user_dropped_by_the_actor_is_disconnected,
    a_pause_holds_for_the_next_message_of_a_connection_opened_before_it,
    a_password_change_ends_open_sync_connections_before_it_is_answered,
    a_deleted_account_ends_the_partners_sync_before_it_is_answered,
    compacting_after_every_merge_loses_nothing,
    a_paused_partnership_is_read_only_until_resumed,
    a_change_held_back_for_its_dependency_is_stored_when_applied,
    the_split_read_over_rest_follows_a_synced_edit,
);

fn expense(name: &str, minor: i64) -> NewExpense {
    NewExpense {
        name: name.into(),
        amount: MinorUnits(minor),
        category: Category::Other,
        frequency: Frequency::Monthly,
    }
}

/// `major.minor` in the partnership currency (USD: two decimals).
fn dollars(minor: i64) -> Decimal {
    Decimal::new(minor, 2)
}

/// Rows in a canonical order, so the store's order and sync-core's need not agree.
fn canonical(mut rows: Vec<RowChange>) -> Vec<RowChange> {
    rows.sort_by_key(|r| format!("{r:?}"));
    rows
}

async fn assert_materialized_matches(app: &TestApp, pid: PartnershipId, doc: &Automerge) {
    let stored = app
        .state
        .store
        .materialized_rows(pid.0)
        .await
        .expect("rows");
    let expected = materialize::all_rows(doc).expect("materializes").changes;
    assert_eq!(canonical(stored), canonical(expected));
}

/// Polls `check` until it holds or `within` passes.
async fn eventually<F, Fut>(within: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn offline_edits_converge_to_the_enforced_state(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;

    // Ann proposes a goal, Ben approves it: an active goal both see.
    let goal = match a.edit(|tx, ctx| {
        ops::add_goal(
            tx,
            ctx,
            &NewGoal {
                name: "Holiday".into(),
                target_amount: MinorUnits(500_000),
                goal_type: GoalType::Vacation,
                priority: Priority::High,
            },
        )
    }) {
        Outcome::ApprovalRequested {
            request_id,
            target_id,
        } => {
            assert_eq!(request_id, add_request_id(target_id));
            target_id
        }
        other => panic!("a goal needs approval, got {other:?}"),
    };
    settle_all(&app, &mut [&mut a, &mut b]).await;
    b.edit(|tx, ctx| ops::approve(tx, ctx, add_request_id(goal)));
    settle_all(&app, &mut [&mut b, &mut a]).await;
    let active_goal = |c: &SyncClient| {
        c.state()
            .goals
            .iter()
            .any(|g| g.id == goal && g.status == ItemStatus::Active)
    };
    assert!(active_goal(&a) && active_goal(&b));

    // Both go offline and edit.
    a.disconnect().await;
    b.disconnect().await;
    a.edit(|tx, ctx| ops::contribute_to_goal(tx, ctx, goal, MinorUnits(5_000)));
    b.edit(|tx, ctx| ops::contribute_to_goal(tx, ctx, goal, MinorUnits(5_000)));
    let tv = EntityId::new_v7();
    a.edit(|tx, ctx| {
        // Bypasses the policy: an over-threshold expense written straight as active.
        let now = ctx.now;
        write::put_expense(
            tx,
            &Expense {
                id: tv,
                name: "TV".into(),
                amount: MinorUnits(15_000),
                category: Category::Entertainment,
                frequency: Frequency::Monthly,
                added_by: ctx.user,
                status: ItemStatus::Active,
                created_at: now,
                updated_at: now,
            },
        )
        .map_err(ops::OpError::Automerge)?;
        Ok(Outcome::Applied { id: tv })
    });
    let coffee = match b.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Coffee", 1_250))) {
        Outcome::Applied { id } => id,
        other => panic!("a small expense applies directly, got {other:?}"),
    };

    a.reconnect().await;
    b.reconnect().await;
    settle_all(&app, &mut [&mut a, &mut b]).await;

    let server = stored_heads(&app, a.pid).await;
    assert_eq!(a.heads(), server, "Ann's replica and the server agree");
    assert_eq!(b.heads(), server, "Ben's replica and the server agree");
    for state in [a.state(), b.state()] {
        let g = state.goals.iter().find(|g| g.id == goal).expect("goal");
        assert_eq!(
            g.saved_amount,
            MinorUnits(10_000),
            "both contributions count"
        );
        let big = state.expenses.iter().find(|e| e.id == tv).expect("TV");
        assert_eq!(big.status, ItemStatus::PendingApproval);
        let request = state
            .approvals
            .iter()
            .find(|r| r.target_id == tv)
            .expect("an approval request for the TV");
        assert_eq!(request.id, add_request_id(tv));
        assert_eq!(request.request_type, RequestType::ExpenseAdd);
        assert_eq!(request.status, ApprovalStatus::Pending);
        assert_eq!(request.requested_by, a.user);
        let small = state
            .expenses
            .iter()
            .find(|e| e.id == coffee)
            .expect("coffee");
        assert_eq!(small.status, ItemStatus::Active);
    }
    assert_materialized_matches(&app, a.pid, &a.doc).await;
    let rows = app
        .state
        .store
        .materialized_rows(a.pid.0)
        .await
        .expect("rows");
    let saved = rows.iter().find_map(|r| match r {
        RowChange::Upsert(Row::Goal(g)) if g.id == goal => Some(g.saved_amount),
        _ => None,
    });
    assert_eq!(saved, Some(dollars(10_000)), "goals.saved_amount is 100.00");
}

async fn a_change_under_the_partners_actor_id_is_refused_whole(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;
    a.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Rent share", 5_000)));
    settle_all(&app, &mut [&mut a, &mut b]).await;
    let pid = a.pid;
    let heads_before = stored_heads(&app, pid).await;
    let changes_before = app
        .state
        .store
        .document_change_count(pid.0)
        .await
        .expect("count");

    // One message: a legitimate change of Ben's own device, then one under Ann's actor id.
    let bens_actor = b.actor();
    b.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Ben's own", 1_000)));
    b.doc.set_actor(a.actor());
    b.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Forged", 1_000)));
    assert!(
        b.send_pending().await.expect("sent"),
        "the message carries changes"
    );
    let reason = b.expect_refusal(EXCHANGE_TIMEOUT).await;
    assert!(reason.contains("actor id"), "{reason}");

    assert_eq!(stored_heads(&app, pid).await, heads_before);
    assert_eq!(
        app.state
            .store
            .document_change_count(pid.0)
            .await
            .expect("count"),
        changes_before,
        "no change of the message was stored"
    );
    assert_eq!(
        app.state
            .store
            .actor_owner(pid.0, &bens_actor.to_hex_string())
            .await
            .expect("owner"),
        None,
        "not even the legitimate change's actor was bound"
    );
    // Ann, still connected, sees nothing new, and a fresh device of hers gets the old heads.
    a.settle().await.expect("settles");
    assert_eq!(a.heads(), heads_before);
    let mut fresh = SyncClient::connect(&app, &ann).await;
    fresh.settle().await.expect("settles");
    assert_eq!(fresh.heads(), heads_before);
    assert!(!fresh.state().expenses.iter().any(|e| e.name == "Forged"));
}

/// Sends a `request` for `document_id` and returns the answer.
async fn request_document(conn: &mut SyncConnection, document_id: &str) -> WireMessage {
    let data = automerge::sync::SyncDoc::generate_sync_message(
        &Automerge::new(),
        &mut automerge::sync::State::new(),
    )
    .expect("a first message")
    .encode();
    let request = WireMessage::Request {
        sender_id: conn.peer_id().to_string(),
        target_id: conn.server_peer_id().to_string(),
        document_id: document_id.to_string(),
        data,
    };
    conn.send(&request).await.expect("send");
    tokio::time::timeout(EXCHANGE_TIMEOUT, conn.recv())
        .await
        .expect("an answer")
        .expect("not refused")
        .expect("not closed")
}

async fn another_couples_document_is_unavailable_like_a_missing_one(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (cat, _dan, _) = app
        .register_couple("cat@example.com", "dan@example.com")
        .await;
    let (_, anns_document) = sync_support::current_document(&app, &ann).await;
    let missing = DocumentId::for_partnership(PartnershipId(Uuid::new_v4())).to_string();

    let mut conn = SyncConnection::connect(
        &sync_url(&app, &cat.access_token),
        "cats-phone",
        None,
        EXCHANGE_TIMEOUT,
    )
    .await
    .expect("connect");
    let foreign = request_document(&mut conn, &anns_document).await;
    let absent = request_document(&mut conn, &missing).await;
    let expect = |document_id: &str| WireMessage::DocUnavailable {
        sender_id: "splitsave-server".into(),
        target_id: "cats-phone".into(),
        document_id: document_id.into(),
    };
    assert_eq!(foreign, expect(&anns_document));
    assert_eq!(absent, expect(&missing));
    // Byte for byte the same once the echoed id is the same.
    let normalized = |m: WireMessage| match m {
        WireMessage::DocUnavailable {
            sender_id,
            target_id,
            ..
        } => protocol::encode(&WireMessage::DocUnavailable {
            sender_id,
            target_id,
            document_id: "x".into(),
        }),
        other => panic!("{other:?}"),
    };
    assert_eq!(normalized(foreign), normalized(absent));

    // Cat's own document is served as usual.
    let mut own = SyncClient::connect(&app, &cat).await;
    own.settle().await.expect("Cat syncs her own document");
    assert_eq!(own.state().members.len(), 2);
}

async fn a_deleted_partner_is_cut_off_at_the_next_revalidation(backend: Backend) {
    let revalidate = Duration::from_millis(250);
    let Some(app) = TestApp::spawn_with(backend, |c| c.sync.revalidate_every = revalidate).await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut b = SyncClient::connect(&app, &ben).await;
    b.settle().await.expect("settles");
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settles");

    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ben.access_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let deleted_at = Instant::now();
    let reason = b.expect_refusal(revalidate * 20).await;
    assert!(reason.contains("ended"), "{reason}");
    let took = deleted_at.elapsed();
    assert!(
        took < revalidate * 8,
        "cut off {took:?} after the deletion (revalidation every {revalidate:?})"
    );
    // The partnership is gone for Ann too.
    let reason = a.expect_refusal(revalidate * 20).await;
    assert!(reason.contains("ended"), "{reason}");
}

async fn an_expired_token_closes_the_socket(backend: Backend) {
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
    // Issued long enough ago that two seconds of validity are left.
    let ttl = splitsave_server::auth::tokens::ACCESS_TOKEN_TTL_SECS;
    let issued_at = Utc::now() - chrono::Duration::seconds(ttl - 2);
    let token = app
        .state
        .tokens
        .issue_access_token(ann.user_id, Some(pid), user.token_version, issued_at)
        .expect("token");
    let mut a = SyncClient::connect_with_token(&app, &ann, &token.token).await;
    a.settle().await.expect("syncs while the token is valid");
    let connected = Instant::now();
    let reason = a.expect_refusal(Duration::from_secs(10)).await;
    assert!(reason.contains("expired"), "{reason}");
    assert!(connected.elapsed() < Duration::from_secs(5));
}

async fn sync_refuses_plain_http_bad_tokens_and_foreign_origins(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;

    let (status, body) = app.get("/sync", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    let (status, body) = app.get("/sync?token=garbage", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body["error"]["message"].is_string(), "{body}");

    // An upgrade with a bad token is accepted, answered with `error`, then closed.
    for url in [
        sync_url(&app, "garbage"),
        sync_url(&app, "").replace("?token=", ""),
    ] {
        let (mut socket, response) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("upgraded");
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS.as_u16());
        let first = tokio::time::timeout(EXCHANGE_TIMEOUT, futures::StreamExt::next(&mut socket))
            .await
            .expect("a message")
            .expect("not closed")
            .expect("a frame");
        let Message::Binary(bytes) = first else {
            panic!("expected a binary frame, got {first:?}")
        };
        match protocol::decode(&bytes).expect("decodes") {
            WireMessage::Error { message, .. } => {
                assert!(message.contains("token"), "{message}")
            }
            other => panic!("expected error, got {other:?}"),
        }
        let next = tokio::time::timeout(EXCHANGE_TIMEOUT, futures::StreamExt::next(&mut socket))
            .await
            .expect("closes");
        assert!(
            matches!(next, None | Some(Ok(Message::Close(_))) | Some(Err(_))),
            "expected a close, got {next:?}"
        );
    }
    let refused =
        SyncConnection::connect(&sync_url(&app, "garbage"), "p", None, EXCHANGE_TIMEOUT).await;
    assert!(
        matches!(refused, Err(ConnectionError::Refused(_))),
        "{:?}",
        refused.err()
    );

    // Origin: the configured one is accepted, any other is 403 before the upgrade.
    let with_origin = |origin: &'static str| {
        let mut request = sync_url(&app, &ann.access_token)
            .into_client_request()
            .expect("request");
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static(origin));
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example")).await {
        Err(tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), StatusCode::FORBIDDEN.as_u16())
        }
        other => panic!("expected 403, got {:?}", other.map(|(_, r)| r.status())),
    }
    let allowed = app.state.config.cors_origins[0].clone();
    let allowed: &'static str = Box::leak(allowed.into_boxed_str());
    let (_socket, response) = tokio_tungstenite::connect_async(with_origin(allowed))
        .await
        .expect("the configured origin may connect");
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS.as_u16());
}

async fn partners_see_each_other_come_online_and_go_offline(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settles");
    let ben_id = ben.user_id.to_string();
    let ann_id = ann.user_id.to_string();

    let mut b = SyncClient::connect(&app, &ben).await;
    b.settle().await.expect("settles");
    a.wait_until(|c| {
        c.presence()
            .iter()
            .any(|p| p.kind == "partner:online" && p.user_id == ben_id)
    })
    .await
    .expect("Ann hears Ben come online");
    b.wait_until(|c| {
        c.presence()
            .iter()
            .any(|p| p.kind == "partner:online" && p.user_id == ann_id)
    })
    .await
    .expect("Ben hears that Ann is online");
    assert!(
        a.presence().iter().all(|p| p.user_id != ann_id),
        "nobody is told about themselves"
    );

    b.disconnect().await;
    a.wait_until(|c| {
        c.presence()
            .iter()
            .any(|p| p.kind == "partner:offline" && p.user_id == ben_id)
    })
    .await
    .expect("Ann hears Ben go offline");
    let offline = a
        .presence()
        .into_iter()
        .find(|p| p.kind == "partner:offline")
        .expect("offline");
    let last_seen = chrono::DateTime::parse_from_rfc3339(&offline.last_seen)
        .expect("RFC 3339")
        .with_timezone(&Utc);
    // users.last_seen is written beside the document's actor: it holds the announced time soon.
    let store = app.state.store.clone();
    let ben_uuid = ben.user_id;
    eventually(
        Duration::from_secs(10),
        "users.last_seen = the announced time",
        || {
            let store = store.clone();
            async move {
                let stored = store
                    .user_by_id(ben_uuid)
                    .await
                    .expect("user")
                    .expect("exists")
                    .last_seen;
                stored.is_some_and(|s| (s - last_seen).num_milliseconds().abs() <= 1)
            }
        },
    )
    .await;
}

async fn a_reconnecting_device_resumes_with_only_the_missing_changes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let storage = "anns-phone-storage";
    let mut a = SyncClient::connect_with(&app, &ann, Some(storage)).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;
    // A history long enough that automerge sends missing changes one by one (it sends the
    // whole document instead when a third of it is missing).
    for month in 1..=9 {
        a.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense(&format!("Internet {month}"), 4_000)));
    }
    settle_all(&app, &mut [&mut a, &mut b]).await;
    a.disconnect().await;
    let (pid, user) = (a.pid.0, a.user.0);
    let store = app.state.store.clone();
    eventually(
        EXCHANGE_TIMEOUT,
        "the server to keep Ann's sync state",
        || {
            let store = store.clone();
            async move { matches!(store.load_sync_state(pid, user, storage).await, Ok(Some(_))) }
        },
    )
    .await;

    // Ben edits while Ann is away.
    let before = b.doc.get_heads();
    b.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Gym", 3_000)));
    b.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Books", 2_000)));
    b.settle().await.expect("settles");
    let bens_new: Vec<ChangeHash> = b
        .doc
        .get_changes(&before)
        .iter()
        .map(|c| c.hash())
        .collect();

    a.take_exchange();
    a.reconnect().await;
    a.settle().await.expect("Ann catches up");
    let resumed = a.take_exchange();
    assert_eq!(a.heads(), b.heads());
    let names: Vec<String> = a.state().expenses.into_iter().map(|e| e.name).collect();
    assert!(names.contains(&"Gym".into()) && names.contains(&"Books".into()));
    assert!(
        resumed.messages <= 3,
        "caught up in {} messages",
        resumed.messages
    );
    let mut received = resumed
        .change_hashes()
        .expect("changes, not a whole document");
    received.sort();
    let mut expected = bens_new.clone();
    expected.sort();
    assert_eq!(received, expected, "only Ben's new changes were sent");

    // A device without saved state receives the whole document.
    let mut fresh = SyncClient::connect(&app, &ann).await;
    fresh.settle().await.expect("settles");
    assert_eq!(fresh.heads(), a.heads());
    let full = fresh.take_exchange();
    assert!(
        full.change_bytes() > resumed.change_bytes(),
        "a fresh device received {} bytes, the resumed one {}",
        full.change_bytes(),
        resumed.change_bytes()
    );
}

async fn compaction_keeps_the_document_and_drops_covered_changes(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.sync.compact_after_changes = 5;
        c.sync.idle_eviction = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let pid = sync_support::current_document(&app, &ann).await.0;
    let (first_snapshot, _) = app.state.store.load_document(pid.0).await.expect("load");
    let mut a = SyncClient::connect(&app, &ann).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;
    let merges = 12;
    for i in 0..merges {
        let who = if i % 2 == 0 { &mut a } else { &mut b };
        who.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense(&format!("Item {i}"), 1_000 + i)));
        who.settle().await.expect("settles");
    }
    settle_all(&app, &mut [&mut a, &mut b]).await;
    let store = app.state.store.clone();
    eventually(EXCHANGE_TIMEOUT, "a compaction", || {
        let store = store.clone();
        let first = first_snapshot.clone();
        async move {
            let (snapshot, _) = store.load_document(pid.0).await.expect("load");
            let count = store.document_change_count(pid.0).await.expect("count");
            snapshot != first && count < 5
        }
    })
    .await;
    assert_eq!(stored_heads(&app, pid).await, a.heads());
    assert_eq!(
        read_document(&stored_document(&app, pid).await).expect("reads"),
        a.state()
    );

    // Everybody leaves; the actor is evicted; a new device gets the same document from storage.
    a.disconnect().await;
    b.disconnect().await;
    let registry = app.state.sync.clone();
    eventually(EXCHANGE_TIMEOUT, "the idle document to be evicted", || {
        let registry = registry.clone();
        async move { registry.live_documents().await == 0 }
    })
    .await;
    let mut fresh = SyncClient::connect(&app, &ben).await;
    fresh.settle().await.expect("settles");
    assert_eq!(fresh.heads(), a.heads());
    assert_eq!(fresh.state(), a.state());
    assert_eq!(fresh.state().expenses.len(), merges as usize);
    assert_materialized_matches(&app, pid, &fresh.doc).await;
}

async fn an_operation_through_the_actor_reaches_connected_partners(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settles");
    let pid = a.pid;
    let ben_id = UserId(ben.user_id);

    let apply = |id: EntityId, input: NewExpense| {
        let registry = app.state.sync.clone();
        async move {
            registry
                .apply(pid, ben_id, move |tx| {
                    let ctx = Ctx {
                        user: ben_id,
                        now: Millis::now(),
                    };
                    ops::add_expense_with_id(tx, &ctx, id, &input)
                })
                .await
        }
    };

    let groceries = EntityId::new_v7();
    let outcome = apply(groceries, expense("Groceries", 30_000 / 4)).await;
    assert_eq!(
        outcome.expect("applied"),
        Outcome::Applied { id: groceries }
    );
    a.wait_until(|c| c.state().expenses.iter().any(|e| e.id == groceries))
        .await
        .expect("Ann receives Ben's expense");
    let seen = a
        .state()
        .expenses
        .into_iter()
        .find(|e| e.id == groceries)
        .expect("expense");
    assert_eq!(
        (seen.name.as_str(), seen.amount, seen.added_by, seen.status),
        ("Groceries", MinorUnits(7_500), ben_id, ItemStatus::Active)
    );

    let sofa = EntityId::new_v7();
    let outcome = apply(sofa, expense("Sofa", 90_000)).await;
    assert_eq!(
        outcome.expect("filed"),
        Outcome::ApprovalRequested {
            request_id: add_request_id(sofa),
            target_id: sofa
        }
    );
    // A refused operation changes nothing.
    let count = app
        .state
        .store
        .document_change_count(pid.0)
        .await
        .expect("count");
    let refused = apply(EntityId::new_v7(), expense("", 100)).await;
    assert!(matches!(refused, Err(SyncError::Op(_))), "{refused:?}");
    assert_eq!(
        app.state
            .store
            .document_change_count(pid.0)
            .await
            .expect("count"),
        count
    );

    a.wait_until(|c| {
        c.state()
            .expenses
            .iter()
            .any(|e| e.id == sofa && e.status == ItemStatus::PendingApproval)
    })
    .await
    .expect("Ann receives the request");
    a.settle().await.expect("settles");
    assert_eq!(a.heads(), stored_heads(&app, pid).await);
    assert_materialized_matches(&app, pid, &a.doc).await;
    let rows = app
        .state
        .store
        .materialized_rows(pid.0)
        .await
        .expect("rows");
    assert!(rows.iter().any(|r| matches!(r,
        RowChange::Upsert(Row::Expense(e)) if e.id == groceries && e.amount == dollars(7_500)
    )));
}

async fn a_user_dropped_by_the_actor_is_disconnected(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;

    app.state.sync.revoke(b.pid, Some(b.user)).await;
    let reason = b.expect_refusal(EXCHANGE_TIMEOUT).await;
    assert!(reason.contains("access to this document ended"), "{reason}");
    let ben_id = ben.user_id.to_string();
    a.wait_until(|c| {
        c.presence()
            .iter()
            .any(|p| p.kind == "partner:offline" && p.user_id == ben_id)
    })
    .await
    .expect("Ann sees Ben go offline");
    // Ann stays connected and in sync.
    a.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Still here", 1_000)));
    a.settle().await.expect("Ann still syncs");
    assert_eq!(a.heads(), stored_heads(&app, a.pid).await);
}

async fn compacting_after_every_merge_loses_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.sync.compact_after_changes = 1;
        c.sync.idle_eviction = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;
    let merges = 24;
    for i in 0..merges {
        let who = if i % 2 == 0 { &mut a } else { &mut b };
        who.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense(&format!("Thing {i}"), 100 + i)));
        who.settle().await.expect("settles");
    }
    settle_all(&app, &mut [&mut a, &mut b]).await;
    a.disconnect().await;
    b.disconnect().await;
    let registry = app.state.sync.clone();
    eventually(EXCHANGE_TIMEOUT, "the idle document to be evicted", || {
        let registry = registry.clone();
        async move { registry.live_documents().await == 0 }
    })
    .await;
    assert_eq!(stored_heads(&app, a.pid).await, a.heads());
    let stored = read_document(&stored_document(&app, a.pid).await).expect("reads");
    assert_eq!(stored.expenses.len(), merges as usize);
    let mut fresh = SyncClient::connect(&app, &ann).await;
    fresh.settle().await.expect("settles");
    assert_eq!(fresh.heads(), a.heads());
}

async fn a_paused_partnership_is_read_only_until_resumed(backend: Backend) {
    let revalidate = Duration::from_millis(250);
    let Some(app) = TestApp::spawn_with(backend, |c| c.sync.revalidate_every = revalidate).await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut a, &mut b]).await;

    // Ann goes offline and adds an expense; meanwhile Ben pauses the partnership.
    a.disconnect().await;
    let lamp = match a.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Lamp", 2_500))) {
        Outcome::Applied { id } => id,
        other => panic!("{other:?}"),
    };
    let lamp_change = a.heads()[0];
    let set_status = |status: &'static str| {
        app.put(
            "/api/partnerships/status",
            Some(&ben.access_token),
            json!({ "status": status }),
        )
    };
    let (status, body) = set_status("paused").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reason = b.expect_refusal(revalidate * 20).await;
    assert!(reason.contains("reconnect"), "{reason}");

    // Back online while paused: Ann receives the document (paused) but her change is not taken.
    let heads_paused = stored_heads(&app, a.pid).await;
    a.reconnect().await;
    a.wait_until(|c| c.state().partnership.status == PartnershipStatus::Paused)
        .await
        .expect("Ann learns of the pause");
    a.send_pending().await.expect("sends");
    a.barrier()
        .await
        .expect("the server handled Ann's messages");
    // The server told Ann's replica it is read-only, so the replica holds her change back
    // instead of offering it (and is not stuck resending it).
    assert!(
        a.sync.state.peer_read_only,
        "the server announced read-only"
    );
    assert!(
        !a.sync.state.sent_hashes.contains(&lamp_change),
        "Ann's change was held back"
    );
    assert_eq!(
        stored_heads(&app, a.pid).await,
        heads_paused,
        "nothing stored"
    );
    assert!(
        a.state().expenses.iter().any(|e| e.id == lamp),
        "Ann keeps her change"
    );

    // Resumed: Ann is asked to reconnect, and then her change goes through.
    let (status, body) = set_status("active").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let reason = a.expect_refusal(revalidate * 20).await;
    assert!(reason.contains("reconnect"), "{reason}");
    a.reconnect().await;
    a.settle().await.expect("settles");
    assert_eq!(a.state().partnership.status, PartnershipStatus::Active);
    let stored = read_document(&stored_document(&app, a.pid).await).expect("reads");
    let lamp = stored
        .expenses
        .iter()
        .find(|e| e.id == lamp)
        .expect("stored");
    assert_eq!(lamp.status, ItemStatus::Active);
}

/// A change whose dependency has not arrived is held back by automerge and applied with the
/// later message that completes it: both must be checked and stored, not only the later
/// message's own change (an acknowledged change would otherwise be lost on restart).
async fn a_change_held_back_for_its_dependency_is_stored_when_applied(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settle");
    let before = a.heads();
    let mut added = Vec::new();
    for name in ["First", "Second"] {
        let outcome = a.edit(|tx, ctx| {
            ops::add_expense(
                tx,
                ctx,
                &NewExpense {
                    name: name.into(),
                    amount: MinorUnits(1_000),
                    category: Category::Groceries,
                    frequency: Frequency::Monthly,
                },
            )
        });
        let Outcome::Applied { id } = outcome else {
            panic!("a small expense applies directly: {outcome:?}")
        };
        added.push(id);
    }
    let changes = a.doc.get_changes(&before);
    assert_eq!(changes.len(), 2, "one change per operation");
    let (first, second) = (&changes[0], &changes[1]);
    assert!(second.deps().contains(&first.hash()));

    // The second change alone (its dependency missing), then the first.
    for change in [second, first] {
        let mut state = a.sync.state.clone();
        let mut message = a
            .doc
            .generate_sync_message(&mut state)
            .expect("a message with changes");
        message.changes = automerge::sync::ChunkList::from(vec![change.raw_bytes().to_vec()]);
        let conn = a.conn.as_mut().expect("online");
        let wire = WireMessage::Sync {
            sender_id: conn.peer_id().to_string(),
            target_id: conn.server_peer_id().to_string(),
            document_id: a.document_id.clone(),
            data: message.encode(),
        };
        conn.send(&wire).await.expect("send");
        a.barrier().await.expect("barrier");
    }

    let stored = stored_document(&app, a.pid).await;
    for change in [first, second] {
        assert!(
            stored.get_change_meta_by_hash(&change.hash()).is_some(),
            "change {} is not stored",
            change.hash()
        );
    }
    let state = read_document(&stored).expect("readable");
    for id in &added {
        assert!(
            state.expenses.iter().any(|e| e.id == *id),
            "expense {id} lost"
        );
    }
    let rows = app
        .state
        .store
        .materialized_rows(a.pid.0)
        .await
        .expect("rows");
    let expense_rows = rows
        .iter()
        .filter(|r| matches!(r, RowChange::Upsert(Row::Expense(_))))
        .count();
    assert_eq!(expense_rows, 2, "both expenses are materialized");
}

/// The REST split is kept per document state: an expense merged over sync counts in the very
/// next split read once the device has the server's acknowledgement.
async fn the_split_read_over_rest_follows_a_synced_edit(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settles");
    for expected in 0..3 {
        let (status, split) = app
            .get("/api/expenses/split-calculation", Some(&ben.access_token))
            .await;
        assert_eq!(status, StatusCode::OK, "{split}");
        assert_eq!(split["active_expenses"], expected);
        a.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Internet", 4_000)));
        a.settle().await.expect("the server acknowledges the edit");
    }
    let (_, split) = app
        .get("/api/expenses/split-calculation", Some(&ben.access_token))
        .await;
    assert_eq!(split["active_expenses"], 3);
    assert_eq!(split["monthly_total"], "120.00");
}

/// No periodic re-check in these tests: what they show must hold without it.
const NO_REVALIDATION: Duration = Duration::from_secs(3_600);

async fn a_pause_holds_for_the_next_message_of_a_connection_opened_before_it(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, |c| c.sync.revalidate_every = NO_REVALIDATION).await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settles");
    let before = stored_heads(&app, a.pid).await;

    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&ben.access_token),
            json!({ "status": "paused" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let paused = stored_heads(&app, a.pid).await;
    assert_ne!(paused, before, "the pause is written into the document");

    // Ann's connection was opened before the pause. Her app writes anyway, and sends it as a
    // client that ignores the server's read-only announcement would.
    let lamp = match a.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("Lamp", 2_500))) {
        Outcome::Applied { id } => id,
        other => panic!("{other:?}"),
    };
    a.sync.state.peer_read_only = false;
    a.sync.state.in_flight = false;
    assert!(a.send_pending().await.expect("sends"), "the change is sent");
    a.barrier().await.expect("the server handled it");
    assert_eq!(stored_heads(&app, a.pid).await, paused, "nothing stored");
    let (status, list) = app.get("/api/expenses", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert!(
        !list.to_string().contains("Lamp"),
        "not in the REST reads: {list}"
    );

    // Resumed: the same connection sends it again and it is taken.
    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&ben.access_token),
            json!({ "status": "active" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    a.settle().await.expect("settles after the resume");
    let stored = read_document(&stored_document(&app, a.pid).await).expect("reads");
    assert!(
        stored.expenses.iter().any(|e| e.id == lamp),
        "stored after the resume"
    );
}

async fn a_password_change_ends_open_sync_connections_before_it_is_answered(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, |c| c.sync.revalidate_every = NO_REVALIDATION).await
    else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    // Ann's phone syncs; a thief who has her old session changes nothing once she changed her
    // password (and the other way round).
    let mut phone = SyncClient::connect(&app, &ann).await;
    phone.settle().await.expect("settles");
    let before = stored_heads(&app, phone.pid).await;
    let (status, body) = app
        .post(
            "/api/auth/change-password",
            Some(&ann.access_token),
            json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    phone.edit(|tx, ctx| ops::add_expense(tx, ctx, &expense("After", 1_000)));
    // Whatever the phone still sends is refused, never applied.
    let _ = phone.send_pending().await;
    let reason = phone.expect_refusal(EXCHANGE_TIMEOUT).await;
    assert!(reason.contains("access to this document ended"), "{reason}");
    assert_eq!(
        stored_heads(&app, phone.pid).await,
        before,
        "nothing stored"
    );
}

async fn a_deleted_account_ends_the_partners_sync_before_it_is_answered(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, |c| c.sync.revalidate_every = NO_REVALIDATION).await
    else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut a = SyncClient::connect(&app, &ann).await;
    a.settle().await.expect("settles");
    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ben.access_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let reason = a.expect_refusal(EXCHANGE_TIMEOUT).await;
    assert!(reason.contains("access to this document ended"), "{reason}");
}
