//! The client SDK against a real server: offline edits that survive an app restart and arrive
//! exactly once, the session ending when the server refuses the refresh token, reconnecting by
//! itself after the server process restarts, and the partner's change feed.
//!
//! In-process servers run on SQLite and on PostgreSQL (when `TEST_DATABASE_URL` is set); the
//! restart test runs the real `splitsave` binary.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_client::api::Registration;
use splitsave_client::enums::{
    ApprovalStatus, Category, Frequency, GoalType, ItemStatus, Priority,
};
use splitsave_client::events::EventKind;
use splitsave_client::money::MinorUnits;
use splitsave_client::ops::{NewExpense, NewGoal, Outcome};
use splitsave_client::{
    Client, ClientConfig, ClientError, ClientEvent, Credentials, Events, SyncState, SyncStatus,
};
use tempfile::TempDir;
use uuid::Uuid;

use crate::common::{Backend, TestApp};
use crate::real_server::{self, RealServer};

pub(crate) const DEADLINE: Duration = Duration::from_secs(30);
const PASSWORD: &str = "correct horse battery";

/// One partner's device: its store directory and client.
pub(crate) struct Device {
    pub(crate) dir: TempDir,
    pub(crate) email: String,
    pub(crate) client: Client,
}

pub(crate) fn config(base_url: &str, dir: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(base_url, dir);
    // Tests restart servers: keep the retries quick.
    config.reconnect_min = Duration::from_millis(50);
    config.reconnect_max = Duration::from_millis(500);
    config
}

pub(crate) async fn register(base_url: &str, name: &str, income: i64) -> Device {
    let dir = TempDir::new().expect("store dir");
    let client = Client::open(config(base_url, dir.path())).expect("open");
    let email = format!("{name}-{}@example.com", Uuid::new_v4().simple());
    client
        .register(&Registration {
            email: email.clone(),
            password: PASSWORD.into(),
            name: name.into(),
            currency: Some("USD".into()),
            income: Some(income.into()),
        })
        .await
        .expect("register");
    Device { dir, email, client }
}

/// Two partners paired through the SDK, both synced.
async fn couple(base_url: &str) -> (Device, Device) {
    let ann = register(base_url, "ann", 4000).await;
    let bob = register(base_url, "bob", 2000).await;
    pair(&ann, &bob).await;
    (ann, bob)
}

/// Ann invites Bob, Bob accepts, and both devices sync until each has the shared document.
pub(crate) async fn pair(ann: &Device, bob: &Device) {
    ann.client.invite(&bob.email).await.expect("invite");
    let invitations = bob
        .client
        .received_invitations()
        .await
        .expect("invitations");
    assert_eq!(invitations.len(), 1);
    bob.client
        .accept_invitation(invitations[0])
        .await
        .expect("accept");
    for device in [&ann, &bob] {
        device.client.start_sync().await.expect("start");
        device
            .client
            .wait_until(DEADLINE, |d| d.members.len() == 2)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "the document with both members arrives: {err}; sync state {:?}; doc {:?}",
                    device.client.sync_state(),
                    device.client.document()
                )
            });
        device
            .client
            .wait_until_synced(DEADLINE)
            .await
            .expect("synced");
    }
}

pub(crate) fn expense(name: &str, cents: i64) -> NewExpense {
    NewExpense {
        name: name.into(),
        amount: MinorUnits(cents),
        category: Category::Utilities,
        frequency: Frequency::Monthly,
    }
}

/// Waits for a feed event matching `pick`, returning what it returned; panics at the deadline.
pub(crate) async fn next_matching<T>(
    events: &mut Events,
    pick: impl Fn(&ClientEvent) -> Option<T>,
) -> T {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let event = events.next().await.expect("feed open");
            if let Some(found) = pick(&event) {
                return found;
            }
        }
    })
    .await
    .expect("the event within the deadline")
}

/// Waits until the watched sync status is Offline; panics at the deadline with `what`.
async fn until_offline(status: &mut tokio::sync::watch::Receiver<SyncState>, what: &str) {
    tokio::time::timeout(
        DEADLINE,
        status.wait_for(|s| s.status == SyncStatus::Offline),
    )
    .await
    .expect(what)
    .expect("status");
}

async fn rest_get(base_url: &str, token: &str, path: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .get(format!("{base_url}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn offline_edits_survive_an_app_restart_and_arrive_exactly_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, bob) = couple(&app.base_url).await;
    let mut bob_feed = bob.client.events();

    // Ann goes offline and edits.
    ann.client.stop_sync().await;
    assert_eq!(ann.client.sync_state().status, SyncStatus::Offline);
    let names = ["Water", "Power", "Internet"];
    for (i, name) in names.iter().enumerate() {
        let outcome = ann
            .client
            .add_expense(expense(name, 1_000 + i as i64))
            .expect("offline add");
        assert!(matches!(outcome, Outcome::Applied { .. }));
    }
    let big = ann
        .client
        .add_expense(expense("Sofa", 45_000))
        .expect("offline big add");
    assert!(matches!(big, Outcome::ApprovalRequested { .. }));
    ann.client.send_message("bought the sofa").expect("message");

    // The app is killed and started again, still offline: everything is there.
    let Device { dir, client, .. } = ann;
    client.shutdown().await;
    let ann = Client::open(config(&app.base_url, dir.path())).expect("reopen");
    assert!(ann.is_signed_in());
    assert_eq!(ann.sync_state().status, SyncStatus::Offline);
    let local: Vec<String> = ann
        .expenses()
        .expect("local")
        .into_iter()
        .map(|e| e.name)
        .collect();
    for name in names.iter().chain(["Sofa"].iter()) {
        assert!(
            local.contains(&name.to_string()),
            "{name} kept across the restart"
        );
    }
    assert_eq!(ann.pending_approvals().expect("pending").len(), 1);

    // Back online: everything reaches the server and the partner, each exactly once.
    drop(ann);
    let ann = Client::connect(config(&app.base_url, dir.path()), Credentials::Stored)
        .await
        .expect("connect with the stored session");
    ann.wait_until_synced(DEADLINE).await.expect("synced");
    let state = bob
        .client
        .wait_until(DEADLINE, |d| {
            d.expenses.len() == 4 && d.messages.len() == 1 && d.approvals.len() == 1
        })
        .await
        .expect("bob receives everything");
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for e in &state.expenses {
        *by_name.entry(e.name.clone()).or_default() += 1;
    }
    assert!(by_name.values().all(|n| *n == 1), "{by_name:?}");

    let token = ann.access_token().await.expect("token");
    let (status, listed) = rest_get(&app.base_url, &token, "/api/expenses?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let rows = listed["items"].as_array().expect("items");
    let mut server_names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    server_names.sort_unstable();
    assert_eq!(server_names, vec!["Internet", "Power", "Sofa", "Water"]);

    // Bob's feed announced each new expense once.
    let mut added = BTreeMap::new();
    while added.len() < 4 {
        let key = next_matching(&mut bob_feed, |e| match e {
            ClientEvent::Changed(ev) if ev.kind == EventKind::ExpenseAdded => Some(ev.key.clone()),
            _ => None,
        })
        .await;
        *added.entry(key).or_insert(0) += 1;
    }
    assert!(added.values().all(|n| *n == 1), "{added:?}");

    // Bob approves the sofa on his device; Ann's split includes it after sync.
    let request = bob.client.pending_approvals().expect("pending")[0].id;
    bob.client.approve(request).expect("approve");
    let ann_state = ann
        .wait_until(DEADLINE, |d| {
            d.expenses
                .iter()
                .any(|e| e.name == "Sofa" && e.status == ItemStatus::Active)
        })
        .await
        .expect("approval reaches ann");
    assert_eq!(
        ann_state
            .approvals
            .iter()
            .find(|a| a.id == request)
            .map(|a| a.status),
        Some(ApprovalStatus::Approved)
    );
    let split = ann.split().expect("split");
    assert_eq!(
        split.split.monthly_total,
        MinorUnits(1_000 + 1_001 + 1_002 + 45_000)
    );
    ann.shutdown().await;
    bob.client.shutdown().await;
}

async fn a_refused_refresh_token_signs_the_client_out_and_keeps_local_data(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, bob) = couple(&app.base_url).await;
    ann.client.add_expense(expense("Kept", 2_500)).expect("add");
    ann.client
        .wait_until_synced(DEADLINE)
        .await
        .expect("synced");

    // Someone else presents Ann's refresh token (read from her store, which the client holds
    // locked while open) twice: the server sees a reuse and revokes the whole family, Ann's
    // current token included.
    let Device { dir, email, client } = ann;
    client.shutdown().await;
    let stolen = stored_refresh_token(dir.path()).await;
    let client = Client::open(config(&app.base_url, dir.path())).expect("reopen");
    assert!(client.is_signed_in(), "the session survives a restart");
    let ann = Device { dir, email, client };
    let mut feed = ann.client.events();
    let http = reqwest::Client::new();
    for _ in 0..2 {
        http.post(app.url("/api/auth/refresh"))
            .json(&json!({ "refresh_token": stolen }))
            .send()
            .await
            .expect("refresh call");
    }

    let refused = ann.client.refresh_session().await;
    assert!(
        matches!(refused, Err(ClientError::SignedOut(_))),
        "{refused:?}"
    );
    next_matching(&mut feed, |e| {
        matches!(e, ClientEvent::SignedOut { .. }).then_some(())
    })
    .await;
    assert!(!ann.client.is_signed_in());
    assert!(matches!(
        ann.client.access_token().await,
        Err(ClientError::NotSignedIn)
    ));
    // Local data stays readable and writable; it syncs once Ann signs in again.
    assert!(ann
        .client
        .expenses()
        .expect("kept")
        .iter()
        .any(|e| e.name == "Kept"));
    ann.client
        .add_expense(expense("Written while signed out", 700))
        .expect("local edit");
    ann.client
        .login(&ann.email, PASSWORD)
        .await
        .expect("login again");
    ann.client.start_sync().await.expect("restart sync");
    bob.client
        .wait_until(DEADLINE, |d| {
            d.expenses
                .iter()
                .any(|e| e.name == "Written while signed out")
        })
        .await
        .expect("the edit made while signed out arrives");
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

/// The refresh token a closed client's store keeps (the `meta` row of `store.sqlite3`).
async fn stored_refresh_token(dir: &Path) -> String {
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Connection};
    let mut conn = SqliteConnectOptions::new()
        .filename(dir.join("store.sqlite3"))
        .read_only(true)
        .connect()
        .await
        .expect("open the store");
    let json: String = sqlx::query_scalar("SELECT json FROM meta")
        .fetch_one(&mut conn)
        .await
        .expect("meta row");
    conn.close().await.expect("close");
    let meta: Value = serde_json::from_str(&json).expect("json");
    meta["tokens"]["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned()
}

async fn a_password_change_elsewhere_ends_the_synced_session(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.sync.revalidate_every = Duration::from_millis(200);
    })
    .await
    else {
        return;
    };
    let (ann, bob) = couple(&app.base_url).await;
    let mut feed = ann.client.events();
    // Another device of Ann's changes the password: every session's refresh token is revoked
    // and the token version changes, so the server closes the sync connection; the client's
    // refresh is refused and it signs out by itself.
    let other = ann
        .client
        .api()
        .login(&ann.email, PASSWORD)
        .await
        .expect("login");
    let response = reqwest::Client::new()
        .post(app.url("/api/auth/change-password"))
        .bearer_auth(&other.access_token)
        .json(&json!({ "current_password": PASSWORD, "new_password": "another long password" }))
        .send()
        .await
        .expect("change password");
    assert_eq!(response.status(), StatusCode::OK);
    next_matching(&mut feed, |e| {
        matches!(e, ClientEvent::SignedOut { .. }).then_some(())
    })
    .await;
    let mut status = ann.client.watch_sync_state();
    until_offline(&mut status, "offline in time").await;
    assert!(!ann.client.is_signed_in());
    assert!(ann.client.document().is_ok(), "the document is kept");
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

async fn the_partner_sees_changes_and_presence_on_the_feed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, bob) = couple(&app.base_url).await;
    let mut feed = bob.client.events();

    // A goal needs approval; both partners contribute once it is active.
    let Outcome::ApprovalRequested {
        request_id,
        target_id,
    } = ann
        .client
        .add_goal(NewGoal {
            name: "Holiday".into(),
            target_amount: MinorUnits(200_000),
            goal_type: GoalType::Vacation,
            priority: Priority::High,
        })
        .expect("goal")
    else {
        panic!("a goal needs approval");
    };
    let requested = next_matching(&mut feed, |e| match e {
        ClientEvent::Changed(ev) if ev.kind == EventKind::ApprovalRequested => Some(ev.key.clone()),
        _ => None,
    })
    .await;
    assert_eq!(requested, request_id.to_string());
    bob.client.approve(request_id).expect("approve");
    ann.client
        .wait_until(DEADLINE, |d| {
            d.goals
                .iter()
                .any(|g| g.id == target_id && g.status == ItemStatus::Active)
        })
        .await
        .expect("goal active at ann");
    ann.client
        .contribute(target_id, MinorUnits(5_000))
        .expect("ann contributes");
    bob.client
        .contribute(target_id, MinorUnits(2_500))
        .expect("bob contributes");
    for device in [&ann, &bob] {
        device
            .client
            .wait_until(DEADLINE, |d| {
                d.goals
                    .iter()
                    .any(|g| g.id == target_id && g.saved_amount == MinorUnits(7_500))
            })
            .await
            .expect("contributions add up");
    }
    next_matching(&mut feed, |e| match e {
        ClientEvent::Changed(ev) if ev.kind == EventKind::GoalProgress => Some(()),
        _ => None,
    })
    .await;

    // Presence: Ann going offline and online again is announced to Bob.
    ann.client.stop_sync().await;
    let ann_id = ann.client.user_id().expect("ann id");
    let offline = next_matching(&mut feed, |e| match e {
        ClientEvent::PartnerOffline { user_id, .. } => Some(*user_id),
        _ => None,
    })
    .await;
    assert_eq!(offline, ann_id);
    ann.client.start_sync().await.expect("start");
    let online = next_matching(&mut feed, |e| match e {
        ClientEvent::PartnerOnline { user_id, .. } => Some(*user_id),
        _ => None,
    })
    .await;
    assert_eq!(online, ann_id);

    // The month: opened by the server on first use, marked paid locally, seen by the partner.
    let paid_at = ann.client.mark_paid().await.expect("mark paid");
    let again = ann.client.mark_paid().await.expect("mark paid twice");
    assert_eq!(paid_at, again, "marking twice keeps the first time");
    let month = bob
        .client
        .wait_until(DEADLINE, |d| {
            d.contributions.iter().any(|m| {
                m.paid
                    .get(&splitsave_client::ids::UserId(ann_id))
                    .is_some_and(Option::is_some)
            })
        })
        .await
        .expect("bob sees the paid mark");
    assert_eq!(month.contributions.len(), 1);
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

/// The SDK tells the couple's history offline, worded as the server's `GET /api/history`:
/// the same changes, kinds, entities, actions, field values and SplitSave's reasons.
async fn the_sdk_tells_the_history_offline_as_the_server_does(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, bob) = couple(&app.base_url).await;
    ann.client
        .add_expense(expense("Phone", 2_500))
        .expect("add");
    // Over the threshold: it waits for Bob, the request filed with it by Ann's phone.
    ann.client
        .add_expense(expense("Sofa", 250_000))
        .expect("add");
    ann.client
        .wait_until_synced(DEADLINE)
        .await
        .expect("synced");
    bob.client
        .wait_until(DEADLINE, |d| d.expenses.len() == 2)
        .await
        .expect("Bob has both");
    let token = bob.client.access_token().await.expect("token");
    let (status, bob_rest) = rest_get(&app.base_url, &token, "/api/history?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{bob_rest}");
    bob.client.stop_sync().await;

    // Offline now: Bob's phone reads the same story from its own document.
    let local = bob
        .client
        .history(&Default::default(), 100, None)
        .expect("history");
    let server = bob_rest["items"].as_array().expect("items");
    let key = |change: &str, kind: &str, entity: &str, action: &str| {
        format!("{change} {kind} {entity} {action}")
    };
    let from_server: BTreeMap<String, Value> = server
        .iter()
        .map(|e| {
            (
                key(
                    e["change"].as_str().unwrap(),
                    e["kind"].as_str().unwrap(),
                    e["entity_id"].as_str().unwrap(),
                    e["action"].as_str().unwrap(),
                ),
                json!({"reason": e["reason"], "changes": e["changes"]}),
            )
        })
        .collect();
    let from_sdk: BTreeMap<String, Value> = local
        .iter()
        .map(|e| {
            (
                key(
                    &e.change.to_string(),
                    e.kind.as_str(),
                    &e.entity,
                    e.action.as_str(),
                ),
                json!({"reason": e.reason, "changes": e.fields}),
            )
        })
        .collect();
    assert_eq!(from_sdk, from_server);
    // The sofa's entries: Ann's, through a device this phone does not know, and a time.
    let sofa = bob
        .client
        .expenses()
        .expect("expenses")
        .into_iter()
        .find(|e| e.name == "Sofa")
        .expect("sofa");
    let only_sofa = splitsave_client::history::Filter {
        entity: Some(sofa.id.to_string()),
        ..Default::default()
    };
    let entries = bob.client.history(&only_sofa, 10, None).expect("history");
    assert!(!entries.is_empty());
    assert!(entries.iter().all(|e| e.entity == sofa.id.to_string()));
    let created = entries.last().expect("created");
    assert_eq!(created.action, splitsave_client::history::Action::Created);
    assert!(matches!(
        created.author,
        splitsave_client::history::Author::Device(_)
    ));
    assert!(
        created.changed_at.is_some(),
        "the SDK's changes carry their time"
    );
}

on_both_backends!(
    the_sdk_tells_the_history_offline_as_the_server_does,
    offline_edits_survive_an_app_restart_and_arrive_exactly_once,
    a_refused_refresh_token_signs_the_client_out_and_keeps_local_data,
    a_password_change_elsewhere_ends_the_synced_session,
    the_partner_sees_changes_and_presence_on_the_feed,
);

/// The real binary is killed and started again on the same port: the client notices, goes
/// offline, reconnects by itself and keeps syncing in both directions.
#[tokio::test]
async fn the_client_reconnects_by_itself_after_a_server_restart() {
    let Some(mut server) = RealServer::start(real_server::default_backend(), &[]).await else {
        return;
    };
    let base_url = server.url("");
    let base_url = base_url.trim_end_matches('/').to_owned();
    let (ann, bob) = couple(&base_url).await;
    let mut status = ann.client.watch_sync_state();

    server.kill();
    until_offline(&mut status, "offline after the kill").await;
    // Edits while the server is down are kept and sent after it is back.
    ann.client
        .add_expense(expense("During the outage", 900))
        .expect("add");
    server.restart_on_same_port().await;

    ann.client
        .wait_until_synced(DEADLINE)
        .await
        .expect("ann resyncs by herself");
    bob.client
        .wait_until(DEADLINE, |d| {
            d.expenses.iter().any(|e| e.name == "During the outage")
        })
        .await
        .expect("bob gets the outage edit");
    bob.client
        .add_expense(expense("After the restart", 800))
        .expect("bob adds");
    ann.client
        .wait_until(DEADLINE, |d| {
            d.expenses.iter().any(|e| e.name == "After the restart")
        })
        .await
        .expect("ann keeps receiving");
    assert!(ann.client.sync_state().last_synced_at.is_some());
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}
