//! Prometheus metrics as an operator scrapes them: on their own listener (`METRICS_ADDR`, here
//! `127.0.0.1:0`), never on the API's port, in the Prometheus text format, and moving with the
//! work the server did — logins by outcome, requests by route template (never a raw path, an id
//! or a token), WebSockets open, merges with their latency and compensations, the pool, the
//! process. Off unless configured.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use reqwest::StatusCode;
use serde_json::json;
use splitsave_server::config::Config;
use splitsave_sync_core::enums::{Category, Frequency, ItemStatus};
use splitsave_sync_core::ids::EntityId;
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{OpError, Outcome};
use splitsave_sync_core::schema::Expense;
use splitsave_sync_core::write;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{Backend, TestApp, PASSWORD};
use crate::real_server::{free_port, RealServer};
use crate::sync_support::SyncClient;

on_both_backends!(
    the_figures_follow_the_work_done,
    metrics_are_off_unless_an_address_is_configured,
);

/// How long a gauge may take to follow a WebSocket opening or closing.
const SETTLE: Duration = Duration::from_secs(10);

/// One scrape: the samples by series (`name{labels}`), and the text as served.
struct Scrape {
    text: String,
    samples: HashMap<String, f64>,
}

impl Scrape {
    /// The value of `series`; panics when the scrape does not have it.
    fn get(&self, series: &str) -> f64 {
        match self.samples.get(series) {
            Some(v) => *v,
            None => panic!("{series} is not in the scrape:\n{}", self.text),
        }
    }

    /// The value of `series`, or 0 when it does not exist yet (a label set never seen).
    fn or_zero(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }

    /// How much `series` grew since `before`.
    fn delta(&self, before: &Scrape, series: &str) -> f64 {
        self.or_zero(series) - before.or_zero(series)
    }
}

/// `GET /metrics` on the metrics listener: 200 in the Prometheus text format.
async fn scrape(client: &reqwest::Client, addr: SocketAddr) -> Scrape {
    let response = client
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()[reqwest::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = response.text().await.expect("scrape body");
    let samples = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("a sample line");
            let value = match value {
                "+Inf" => f64::INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("a number in {l:?}")),
            };
            (series.to_string(), value)
        })
        .collect();
    Scrape { text, samples }
}

/// Scrapes until `series` has `value`; panics with the last scrape at the deadline.
async fn until_value(client: &reqwest::Client, addr: SocketAddr, series: &str, value: f64) {
    let deadline = Instant::now() + SETTLE;
    loop {
        let now = scrape(client, addr).await;
        if now.or_zero(series) == value {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} never reached {value}:\n{}",
            now.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn http(route: &str, method: &str, status: u16) -> String {
    format!("splitsave_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
}

async fn login(app: &TestApp, email: &str, password: &str) -> (StatusCode, serde_json::Value) {
    app.post(
        "/api/auth/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await
}

/// An over-threshold expense written straight as active: the server compensates it (pending,
/// with an approval request).
fn big_active_expense(
    tx: &mut automerge::transaction::Transaction<'_>,
    ctx: &splitsave_sync_core::ops::Ctx,
) -> Result<Outcome, OpError> {
    let id = EntityId::new_v7();
    write::put_expense(
        tx,
        &Expense {
            id,
            name: "TV".into(),
            amount: MinorUnits(150_000),
            category: Category::Entertainment,
            frequency: Frequency::Monthly,
            added_by: ctx.user,
            status: ItemStatus::Active,
            created_at: ctx.now,
            updated_at: ctx.now,
        },
    )
    .map_err(OpError::Automerge)?;
    Ok(Outcome::Applied { id })
}

fn with_metrics(config: &mut Config) {
    config.metrics_addr = Some("127.0.0.1:0".parse().expect("address"));
    config.login_max_failures_per_minute = 2;
}

async fn the_figures_follow_the_work_done(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, with_metrics).await else {
        return;
    };
    let addr = app
        .state
        .start_metrics()
        .await
        .expect("bind the metrics listener")
        .expect("metrics are on");
    let client = reqwest::Client::new();
    let before = scrape(&client, addr).await;

    // The API's port does not serve the metrics; the metrics port serves nothing else.
    let (status, _) = app.get("/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let other = client
        .get(format!("http://{addr}/api/auth/login"))
        .send()
        .await
        .expect("request");
    assert_eq!(other.status(), StatusCode::NOT_FOUND);

    // Logins: two wrong passwords, a third attempt refused by the limit (2 a minute here), a
    // good one; then a refresh token presented twice.
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    for _ in 0..2 {
        let (status, _) = login(&app, &ann.email, "wrong password!").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let (status, _) = login(&app, &ann.email, "wrong password!").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let (status, session) = login(&app, &ben.email, PASSWORD).await;
    assert_eq!(status, StatusCode::OK);
    let refresh = json!({"refresh_token": session["refresh_token"]});
    let (status, _) = app.post("/api/auth/refresh", None, refresh.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = app.post("/api/auth/refresh", None, refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A REST write and a read of it by id.
    let (status, created) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Internet", "amount": "40.00", "category": "utilities", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let expense_id = created["id"].as_str().expect("expense id").to_string();
    let (status, _) = app
        .get(
            &format!("/api/expenses/{expense_id}"),
            Some(&ann.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    // A sync connection whose change the server must compensate.
    let sync_open = "splitsave_websocket_connections{kind=\"sync\"}";
    let mut phone = SyncClient::connect(&app, &ann).await;
    phone.settle().await.expect("first exchange");
    until_value(&client, addr, sync_open, 1.0).await;
    phone.edit(big_active_expense);
    phone.settle().await.expect("the change is acknowledged");
    phone.disconnect().await;
    until_value(&client, addr, sync_open, 0.0).await;

    // An event stream.
    let events_open = "splitsave_websocket_connections{kind=\"events\"}";
    let url = format!(
        "{}/api/events?token={}",
        app.base_url.replacen("http://", "ws://", 1),
        ben.access_token
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("open the event stream");
    until_value(&client, addr, events_open, 1.0).await;
    stream.close(None).await.expect("close");
    while stream.next().await.is_some() {}
    until_value(&client, addr, events_open, 0.0).await;

    let after = scrape(&client, addr).await;
    let delta = |series: &str| after.delta(&before, series);

    // Auth outcomes and the limit that refused.
    assert_eq!(delta("splitsave_logins_total{outcome=\"failed\"}"), 2.0);
    assert_eq!(delta("splitsave_logins_total{outcome=\"limited\"}"), 1.0);
    assert_eq!(delta("splitsave_logins_total{outcome=\"ok\"}"), 1.0);
    assert_eq!(delta("splitsave_rate_limited_total{limit=\"login\"}"), 1.0);
    assert_eq!(delta("splitsave_refresh_token_reuse_total"), 1.0);

    // Requests by route template, method and status, timed.
    assert_eq!(delta(&http("/api/auth/login", "POST", 401)), 2.0);
    assert_eq!(delta(&http("/api/auth/login", "POST", 429)), 1.0);
    assert_eq!(delta(&http("/api/auth/login", "POST", 200)), 1.0);
    assert_eq!(delta(&http("/api/expenses", "POST", 201)), 1.0);
    assert_eq!(delta(&http("/api/expenses/{id}", "GET", 200)), 1.0);
    assert!(delta(&http("/sync", "GET", 101)) >= 1.0);
    assert_eq!(delta(&http("/api/events", "GET", 101)), 1.0);
    assert_eq!(delta(&http("unmatched", "GET", 404)), 1.0);
    assert_eq!(
        delta(
            "splitsave_http_request_duration_seconds_count{route=\"/api/expenses/{id}\",method=\"GET\"}"
        ),
        1.0
    );
    assert!(
        delta("splitsave_http_request_duration_seconds_sum{route=\"/api/auth/login\",method=\"POST\"}")
            > 0.0
    );
    // No raw path, id or token became a label.
    for secret in [
        expense_id.as_str(),
        ann.access_token.as_str(),
        ben.access_token.as_str(),
        "token=",
        "ann@example.com",
    ] {
        assert!(!after.text.contains(secret), "{secret} is in the scrape");
    }

    // Merges: the sync change merged, was compensated (the expense sent for approval, with its
    // request) and answered; the REST write merged too; the committer wrote them.
    assert!(delta("splitsave_merges_total{source=\"sync\"}") >= 1.0);
    assert!(delta("splitsave_merges_total{source=\"rest\"}") >= 1.0);
    assert!(delta("splitsave_merge_duration_seconds_count") >= 1.0);
    assert!(delta("splitsave_merge_duration_seconds_sum") > 0.0);
    assert_eq!(
        delta("splitsave_compensations_total{kind=\"expense\"}"),
        1.0
    );
    assert_eq!(
        delta("splitsave_compensations_total{kind=\"approval\"}"),
        1.0
    );
    assert_eq!(
        delta("splitsave_compensations_total{kind=\"removal\"}"),
        0.0
    );
    assert!(delta("splitsave_commit_batch_merges_count") >= 2.0);
    assert!(delta("splitsave_commit_batch_merges_sum") >= 2.0);

    // What is read at scrape time.
    assert!(after.get("splitsave_live_documents") >= 1.0);
    assert!(after.get("splitsave_db_pool_max_connections") >= 1.0);
    assert!(
        after.get("splitsave_db_pool_connections{state=\"in_use\"}")
            + after.get("splitsave_db_pool_connections{state=\"idle\"}")
            >= 1.0
    );
    assert_eq!(after.get("splitsave_push_outbox_depth"), 0.0);
    assert!(
        !after.text.contains("splitsave_redis_connected{"),
        "no Redis series without REDIS_URL"
    );
    if cfg!(target_os = "linux") {
        assert!(after.get("process_resident_memory_bytes") > 0.0);
        assert!(after.get("process_open_fds") > 0.0);
        assert!(after.get("process_cpu_seconds_total") > 0.0);
    }
}

async fn metrics_are_off_unless_an_address_is_configured(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    assert_eq!(
        app.state.start_metrics().await.expect("nothing to bind"),
        None
    );
    assert_eq!(splitsave_server::metrics::scrape(&app.state).await, None);
    let (status, _) = app.get("/metrics", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// With `REDIS_URL`, whether Redis answers the rate-limit counters shows; skipped (with a
/// message) without `TEST_REDIS_URL`.
#[tokio::test]
async fn redis_shows_as_connected_once_it_answers() {
    let Ok(redis) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("skipped: TEST_REDIS_URL not set");
        return;
    };
    let prefix = format!("splitsave-test-{}:", Uuid::new_v4().simple());
    let app = TestApp::spawn_with(Backend::Sqlite, |config| {
        with_metrics(config);
        config.redis_url = Some(redis);
        config.redis_prefix = prefix;
    })
    .await
    .expect("SQLite is always there");
    let addr = app
        .state
        .start_metrics()
        .await
        .expect("bind")
        .expect("metrics are on");
    // Any API request is counted in Redis (the per-IP limit).
    let (status, _) = app.get("/api/partnerships/current", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let client = reqwest::Client::new();
    let now = scrape(&client, addr).await;
    assert_eq!(
        now.get("splitsave_redis_connected{client=\"rate_limits\"}"),
        1.0
    );
}

/// The `splitsave` binary started with `METRICS_ADDR` serves its metrics there, and only there.
#[tokio::test]
async fn the_binary_serves_its_metrics_on_metrics_addr_only() {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let server = RealServer::start(Backend::Sqlite, &[("METRICS_ADDR", &addr.to_string())])
        .await
        .expect("SQLite is always there");
    let client = reqwest::Client::new();
    let now = scrape(&client, addr).await;
    // Started only once `/healthz` answered, which was counted.
    assert!(
        now.get(&http("/healthz", "GET", 200)) >= 1.0,
        "{}",
        now.text
    );
    if cfg!(target_os = "linux") {
        assert!(now.get("process_resident_memory_bytes") > 0.0);
    }
    let on_api_port = client
        .get(server.url("/metrics"))
        .send()
        .await
        .expect("request");
    assert_eq!(on_api_port.status(), StatusCode::NOT_FOUND);
}
