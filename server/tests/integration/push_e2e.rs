//! Push notifications end to end: writes by one partner reach the other partner's phone
//! through the outbox and the FCM stand-in, worded as their privacy setting says, never the
//! author's, never a partner who is watching, once per event across a crash, with the push
//! service's failures retried as it asks and its gone devices forgotten.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_server::config::Config;
use splitsave_server::push::PushConfig;
use splitsave_sync_core::enums::{Category, Frequency};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, NewExpense};
use tempfile::TempDir;

use crate::common::{Backend, Session, TestApp};
use crate::push_standins::fcm::{FcmReply, FcmStandin, ReceivedMessage};
use crate::real_server::RealServer;
use crate::sync_support::SyncClient;

on_both_backends!(
    an_offline_partner_gets_one_notification_worded_as_they_chose,
    a_server_killed_between_the_commit_and_the_send_still_notifies_once,
);

/// How long a notification may take to arrive (retries included) on a busy machine.
const ARRIVAL: Duration = Duration::from_secs(20);

/// Polls the stand-in until it has received `n` messages, or panics at the deadline.
async fn wait_for_received(fcm: &FcmStandin, n: usize) -> Vec<ReceivedMessage> {
    let deadline = Instant::now() + ARRIVAL;
    loop {
        let got = fcm.received();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls the stand-in until it has `n` messages, or panics at the deadline; their bodies.
async fn wait_for_messages(fcm: &FcmStandin, n: usize) -> Vec<Value> {
    wait_for_received(fcm, n)
        .await
        .into_iter()
        .map(|m| m.body)
        .collect()
}

/// The messages the stand-in accepted (200), as bodies.
fn delivered(fcm: &FcmStandin) -> Vec<Value> {
    fcm.received()
        .into_iter()
        .filter(|m| m.status == 200)
        .map(|m| m.body)
        .collect()
}

/// The environment that points the server's FCM client at `fcm`, with the service account
/// file written into `dir`.
fn fcm_vars(fcm: &FcmStandin, dir: &TempDir) -> Vec<(&'static str, String)> {
    let account = dir.path().join("service-account.json");
    std::fs::write(&account, fcm.service_account_json()).expect("write the service account");
    vec![
        ("FCM_SERVICE_ACCOUNT_FILE", account.display().to_string()),
        ("FCM_ENDPOINT", fcm.endpoint()),
    ]
}

/// The app on `backend` with push through `fcm`, its sender running.
async fn push_app(backend: Backend, fcm: &FcmStandin) -> Option<(TestApp, TempDir)> {
    push_app_with(backend, fcm, |_| {}).await
}

async fn push_app_with(
    backend: Backend,
    fcm: &FcmStandin,
    tweak: impl FnOnce(&mut Config),
) -> Option<(TestApp, TempDir)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = fcm_vars(fcm, &dir);
    let push = PushConfig::from_lookup(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("push configuration");
    let app = TestApp::spawn_with(backend, |c| {
        c.push = push;
        tweak(c);
    })
    .await?;
    app.state.start_push().expect("push starts");
    Some((app, dir))
}

/// Ann and Ben, partners; Ben has one Android phone, `token`.
async fn couple_with_bens_phone(app: &TestApp, token: &str) -> (Session, Session) {
    let (ann, ben) = couple(app).await;
    register_phone(app, &ben, token).await;
    (ann, ben)
}

/// Ann and Ben, partners, with nothing left in the outbox: Ben was a registered invitee, so
/// the invitation queued a notification for him; it is dropped (no device yet) before a test
/// registers phones, so it can never reach one of them.
async fn couple(app: &TestApp) -> (Session, Session) {
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    wait_for_empty_outbox(app).await;
    (ann, ben)
}

/// Registers `token` as an Android phone of `who`.
async fn register_phone(app: &TestApp, who: &Session, token: &str) {
    let (status, body) = app
        .post(
            "/api/devices",
            Some(&who.access_token),
            json!({"platform": "android", "fcm_token": token}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

/// Ann adds an expense of `amount` over REST; over the threshold it needs Ben's approval.
async fn add_expense(app: &TestApp, ann: &Session, name: &str, amount: &str) {
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": name, "amount": amount, "category": "housing", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "approval requested: {body}");
}

/// Waits until the outbox is empty (every notification sent or dropped).
async fn wait_for_empty_outbox(app: &TestApp) {
    let deadline = Instant::now() + ARRIVAL;
    while app.state.store.outbox_depth().await.expect("depth") > 0 {
        assert!(Instant::now() < deadline, "the outbox drains");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn an_offline_partner_gets_one_notification_worded_as_they_chose(backend: Backend) {
    let fcm = FcmStandin::start().await;
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, ben) = couple(&app).await;
    register_phone(&app, &ann, "ann-phone").await;
    register_phone(&app, &ben, "ben-phone").await;

    // Ann adds a sofa over the approval threshold; Ben is not connected.
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Sofa", "amount": "900.00", "category": "housing", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "approval requested: {body}");
    let got = wait_for_messages(&fcm, 1).await;
    let message = &got[0]["message"];
    assert_eq!(
        message["token"], "ben-phone",
        "only the partner is told: {got:?}"
    );
    let text = message["notification"]["body"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Ann asked for your approval: Sofa, 900.00"),
        "{text}"
    );
    assert_eq!(message["data"]["kind"], "approval_requested");

    // Ben keeps his lock screen private: the next one says who, not what.
    let (status, body) = app
        .put(
            "/api/users/notifications",
            Some(&ben.access_token),
            json!({"show_details": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Television", "amount": "1200.00", "category": "other", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "approval requested: {body}");
    let got = wait_for_messages(&fcm, 2).await;
    let message = &got[1]["message"];
    assert_eq!(message["token"], "ben-phone");
    assert_eq!(
        message["notification"]["body"],
        "Ann asked for your approval"
    );
    assert!(!message.to_string().contains("Television"), "{message}");
    assert!(!message.to_string().contains("1200"), "{message}");
    // Each event once: nothing more arrives, and the outbox is empty.
    wait_for_empty_outbox(&app).await;
    assert_eq!(fcm.received().len(), 2, "{:?}", fcm.received());
}

/// Ben's phone is told nothing while he looks at the couple's data (a sync connection or an
/// event stream); once he closes the app, the next request for his approval reaches it.
#[tokio::test]
async fn a_partner_who_is_watching_is_not_notified() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, ben) = couple_with_bens_phone(&app, "ben-phone").await;
    let nothing_queued = || async {
        // A notification is written in the merge's own transaction, before the write is
        // answered: an empty outbox and a silent stand-in mean none was queued.
        app.state.store.outbox_depth().await.expect("depth") == 0 && fcm.received().is_empty()
    };

    // Ben's app is open and synced.
    let mut ben_app = SyncClient::connect(&app, &ben).await;
    ben_app.settle().await.expect("Ben's app syncs");
    add_expense(&app, &ann, "Sofa", "900.00").await;
    assert!(nothing_queued().await, "{:?}", fcm.received());

    // Ben's web app shows the event stream; his phone app goes to the background.
    let url = format!(
        "{}/api/events?token={}",
        app.base_url.replacen("http://", "ws://", 1),
        ben.access_token
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("event stream");
    add_expense(&app, &ann, "Lamp", "800.00").await;
    // The stream's first event proves it is subscribed.
    let event = tokio::time::timeout(ARRIVAL, futures::StreamExt::next(&mut stream))
        .await
        .expect("an event")
        .expect("stream open")
        .expect("frame");
    assert!(event.is_text(), "{event:?}");
    ben_app.disconnect().await;
    add_expense(&app, &ann, "Rug", "700.00").await;
    assert!(nothing_queued().await, "{:?}", fcm.received());

    // Ben closes everything; once the server has seen him go, Ann's next request reaches his
    // phone.
    drop(stream);
    let deadline = Instant::now() + ARRIVAL;
    let mut last = String::new();
    for i in 0.. {
        assert!(Instant::now() < deadline, "Ben is never taken for away");
        last = format!("Table {i}");
        add_expense(&app, &ann, &last, "600.00").await;
        if !nothing_queued().await {
            break;
        }
    }
    let got = wait_for_messages(&fcm, 1).await;
    wait_for_empty_outbox(&app).await;
    let got_all = delivered(&fcm);
    assert_eq!(got_all.len(), 1, "{got_all:?}");
    let text = got[0]["message"]["notification"]["body"]
        .as_str()
        .unwrap_or_default();
    assert!(text.contains(&last), "about the last expense only: {text}");
}

/// Ten over-threshold expenses Ann made on a plane reach the server in one sync: Ben's phone
/// gets one notification about ten items, not ten.
#[tokio::test]
async fn ten_expenses_made_offline_become_one_notification() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, _) = couple_with_bens_phone(&app, "ben-phone").await;
    let mut ann_app = SyncClient::connect(&app, &ann).await;
    ann_app.settle().await.expect("Ann's app syncs");
    ann_app.disconnect().await;
    for i in 1..=10 {
        ann_app.edit(|tx, ctx| {
            ops::add_expense(
                tx,
                ctx,
                &NewExpense {
                    name: format!("Souvenir {i}"),
                    amount: MinorUnits(90_000),
                    category: Category::Other,
                    frequency: Frequency::Monthly,
                },
            )
        });
    }
    ann_app.reconnect().await;
    ann_app.settle().await.expect("the flight's edits sync");
    let got = wait_for_messages(&fcm, 1).await;
    wait_for_empty_outbox(&app).await;
    assert_eq!(fcm.received().len(), 1, "{:?}", fcm.received());
    let message = &got[0]["message"];
    assert_eq!(message["token"], "ben-phone");
    assert_eq!(
        message["notification"]["body"],
        "Ann asked for your approval on 10 items"
    );
    assert_eq!(message["data"]["count"], "10", "{message}");
}

/// FCM answers 503 twice: the notification is tried again, later each time, and delivered
/// once.
#[tokio::test]
async fn an_unavailable_push_service_is_retried_with_backoff() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    fcm.script([FcmReply::Unavailable, FcmReply::Unavailable]);
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, _) = couple_with_bens_phone(&app, "ben-phone").await;
    add_expense(&app, &ann, "Sofa", "900.00").await;
    let got = wait_for_received(&fcm, 3).await;
    wait_for_empty_outbox(&app).await;
    let statuses: Vec<u16> = fcm.received().iter().map(|m| m.status).collect();
    assert_eq!(statuses, [503, 503, 200], "{got:?}");
    // The first retry waits between one and two seconds (half to all of the 2 s base), the
    // second between two and four.
    let first = got[1].at - got[0].at;
    let second = got[2].at - got[1].at;
    assert!(first >= Duration::from_millis(950), "{first:?}");
    assert!(second >= Duration::from_millis(1950), "{second:?}");
    assert_eq!(got[0].body, got[2].body, "the same message each time");
}

/// FCM answers 429 with `Retry-After: 3`: the next attempt comes no sooner.
#[tokio::test]
async fn a_rate_limited_push_is_retried_no_sooner_than_retry_after() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    fcm.script([FcmReply::RateLimited {
        retry_after: "3".into(),
    }]);
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, _) = couple_with_bens_phone(&app, "ben-phone").await;
    add_expense(&app, &ann, "Sofa", "900.00").await;
    let got = wait_for_received(&fcm, 2).await;
    wait_for_empty_outbox(&app).await;
    let statuses: Vec<u16> = fcm.received().iter().map(|m| m.status).collect();
    assert_eq!(statuses, [429, 200]);
    let waited = got[1].at - got[0].at;
    assert!(waited >= Duration::from_millis(2950), "{waited:?}");
}

/// Ben has two phones; FCM takes the message for the first and answers 503 for the second: the
/// retry goes to the second phone only.
#[tokio::test]
async fn a_retry_goes_only_to_the_phones_not_yet_reached() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    fcm.script([FcmReply::Accept, FcmReply::Unavailable]);
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, ben) = couple_with_bens_phone(&app, "phone-a").await;
    register_phone(&app, &ben, "phone-b").await;
    add_expense(&app, &ann, "Sofa", "900.00").await;
    wait_for_received(&fcm, 3).await;
    wait_for_empty_outbox(&app).await;
    let got: Vec<(String, u16)> = fcm
        .received()
        .iter()
        .map(|m| {
            (
                m.body["message"]["token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                m.status,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("phone-a".to_owned(), 200),
            ("phone-b".to_owned(), 503),
            ("phone-b".to_owned(), 200)
        ]
    );
}

/// A phone FCM no longer knows (`UNREGISTERED`) disappears from Ben's devices; his other phone
/// still gets the notification.
#[tokio::test]
async fn a_device_fcm_calls_unregistered_is_forgotten() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    fcm.script([FcmReply::Unregistered]);
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let (ann, ben) = couple_with_bens_phone(&app, "old-phone").await;
    add_expense(&app, &ann, "Sofa", "900.00").await;
    wait_for_received(&fcm, 1).await;
    wait_for_empty_outbox(&app).await;
    let (status, devices) = app.get("/api/devices", Some(&ben.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(devices, json!([]), "the gone phone is forgotten");

    // A new phone registers and gets the next one.
    register_phone(&app, &ben, "new-phone").await;
    add_expense(&app, &ann, "Television", "1200.00").await;
    let got = wait_for_received(&fcm, 2).await;
    assert_eq!(got[0].status, 404);
    assert_eq!(got[0].body["message"]["token"], "old-phone");
    assert_eq!(got[1].status, 200);
    assert_eq!(got[1].body["message"]["token"], "new-phone");
}

/// Ann invites Ben, who already has the app: his phone says so, and Ann's says nothing.
#[tokio::test]
async fn a_registered_invitee_hears_of_the_invitation() {
    let backend = Backend::Sqlite;
    let fcm = FcmStandin::start().await;
    let Some((app, _dir)) = push_app(backend, &fcm).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let ben = app.register("ben@example.com", "Ben").await;
    register_phone(&app, &ann, "ann-phone").await;
    register_phone(&app, &ben, "ben-phone").await;
    let (status, invitation) = app
        .post(
            "/api/partnerships/invite",
            Some(&ann.access_token),
            json!({"email": "ben@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let got = wait_for_messages(&fcm, 1).await;
    wait_for_empty_outbox(&app).await;
    assert_eq!(fcm.received().len(), 1);
    let message = &got[0]["message"];
    assert_eq!(message["token"], "ben-phone");
    assert_eq!(message["data"]["kind"], "invitation");
    assert_eq!(message["data"]["invitation_id"], invitation["id"]);
    assert_eq!(
        message["notification"]["body"],
        "Ann invited you to share your finances"
    );
}

/// The notification is in the outbox when the write is answered: a server killed before it
/// could reach FCM sends it after the restart, once.
async fn a_server_killed_between_the_commit_and_the_send_still_notifies_once(backend: Backend) {
    let fcm = FcmStandin::start().await;
    // FCM is down at first: the notification stays queued, waiting for its next attempt.
    fcm.script(std::iter::repeat_n(FcmReply::Unavailable, 1000));
    let dir = tempfile::tempdir().expect("temp dir");
    let vars = fcm_vars(&fcm, &dir);
    let env: Vec<(&str, &str)> = vars.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let Some(mut server) = RealServer::start(backend, &env).await else {
        return;
    };
    let couple = server.register_couple().await;
    // The invitation's notification (Ben had no device then) leaves the outbox first.
    let probe = OutboxProbe::connect(backend, &server.db.url).await;
    let deadline = Instant::now() + ARRIVAL;
    while probe.depth().await > 0 {
        assert!(Instant::now() < deadline, "the invitation's row is handled");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for (who, token) in [
        (&couple.a.token, "ann-phone"),
        (&couple.b.token, "ben-phone"),
    ] {
        let (status, body) = server
            .post_json(
                "/api/devices",
                who,
                json!({"platform": "android", "fcm_token": token}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = server
        .post_json(
            "/api/expenses",
            &couple.a.token,
            json!({"name": "Sofa", "amount": "900.00", "category": "housing", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    // Killed while the notification waits for its retry (tried once, not held by a claim).
    let deadline = Instant::now() + ARRIVAL;
    while !(fcm.received().iter().any(|m| m.status == 503) && probe.waiting_for_retry().await) {
        assert!(
            Instant::now() < deadline,
            "the first attempt fails and is rescheduled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    assert!(delivered(&fcm).is_empty());

    // FCM is back; so is the server.
    fcm.clear_script();
    server.restart().await;
    let deadline = Instant::now() + ARRIVAL;
    while delivered(&fcm).is_empty() {
        assert!(Instant::now() < deadline, "delivered after the restart");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deadline = Instant::now() + ARRIVAL;
    while probe.depth().await > 0 {
        assert!(Instant::now() < deadline, "the outbox drains");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let got = delivered(&fcm);
    assert_eq!(got.len(), 1, "once: {got:?}");
    assert_eq!(got[0]["message"]["token"], "ben-phone");
    assert_eq!(got[0]["message"]["data"]["kind"], "approval_requested");
}

/// Reads the outbox of a real server's database directly (the test must not open a second
/// store that would run migrations or hold SQLite's writer).
enum OutboxProbe {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

impl OutboxProbe {
    async fn connect(backend: Backend, url: &str) -> OutboxProbe {
        match backend {
            Backend::Sqlite => OutboxProbe::Sqlite(
                sqlx::SqlitePool::connect(url)
                    .await
                    .expect("open the SQLite file"),
            ),
            Backend::Postgres => {
                OutboxProbe::Postgres(sqlx::PgPool::connect(url).await.expect("connect"))
            }
        }
    }

    async fn count(&self, sql: &str) -> i64 {
        match self {
            OutboxProbe::Sqlite(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
            OutboxProbe::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await,
        }
        .expect("outbox query")
    }

    /// Whether a row has been tried and waits for its next attempt, unclaimed.
    async fn waiting_for_retry(&self) -> bool {
        self.count(
            "SELECT COUNT(*) FROM notification_outbox \
             WHERE attempts > 0 AND claimed_until IS NULL",
        )
        .await
            > 0
    }

    async fn depth(&self) -> i64 {
        self.count("SELECT COUNT(*) FROM notification_outbox").await
    }
}
