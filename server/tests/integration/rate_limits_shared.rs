//! Rate limits across several nodes, and the client address behind a trusted proxy.
//!
//! A "node" is an in-process app on a port of its own with its own rate-limit state; the nodes
//! of a test share one database (one store) and one configuration, as nodes behind nginx do.
//! The tests that share counters through Redis need `TEST_REDIS_URL` (skipped with a message
//! without it) and each uses a Redis key prefix of its own, so they run in parallel. The tests of
//! an unreachable Redis need none, and those about `X-Forwarded-For` use Redis when it is there
//! and each node's memory otherwise (the address logic is the same either way).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use splitsave_server::app::{router, AppState};
use splitsave_server::config::Config;
use splitsave_server::notify::mail::MemoryMailer;
use splitsave_server::ratelimit::TrustedProxies;
use uuid::Uuid;

use crate::common::{Backend, TestApp, PASSWORD};

/// Longer than any request may take while Redis is unreachable: a node waits at most 250 ms to
/// connect plus 250 ms for a command, so a second means a stall.
const QUICK: Duration = Duration::from_secs(1);

/// `TEST_REDIS_URL`, or `None` after saying the test is skipped.
fn redis_url() -> Option<String> {
    let url = std::env::var("TEST_REDIS_URL").ok();
    if url.is_none() {
        eprintln!("skipped: TEST_REDIS_URL not set");
    }
    url
}

/// A key prefix no other test uses.
fn prefix() -> String {
    format!("splitsave-test-{}:", Uuid::new_v4().simple())
}

/// The first node: an app on SQLite whose configuration `tweak` adjusts.
async fn first_node(tweak: impl FnOnce(&mut Config)) -> TestApp {
    TestApp::spawn_with(Backend::Sqlite, tweak)
        .await
        .expect("a SQLite app always starts")
}

/// A way to reach one node.
struct Node {
    base_url: String,
    client: reqwest::Client,
    /// The node's server when this test started it (the first node's belongs to its `TestApp`).
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(server) = &self.server {
            server.abort();
        }
    }
}

impl Node {
    /// The node `app` serves.
    fn of(app: &TestApp) -> Node {
        Node {
            base_url: app.base_url.clone(),
            client: app.client.clone(),
            server: None,
        }
    }

    /// Another node beside `app`: the same configuration (Redis URL and prefix included) and
    /// database, but its own state, rate limits included, on a port of its own.
    async fn join(app: &TestApp) -> Node {
        let config = Config::clone(&app.state.config);
        let state = AppState::with_parts(
            config,
            app.state.store.clone(),
            Arc::new(MemoryMailer::new()),
        )
        .expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let service = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, service).await.expect("serve");
        });
        Node {
            base_url: format!("http://{addr}"),
            client: app.client.clone(),
            server: Some(server),
        }
    }

    /// An API request (an unauthenticated `GET /api/users/profile`: 401 until the budget is
    /// spent), as if forwarded for `forwarded_for`; its status, `Retry-After` and duration.
    async fn api(&self, forwarded_for: Option<&str>) -> (StatusCode, Option<u64>, Duration) {
        let mut request = self
            .client
            .get(format!("{}/api/users/profile", self.base_url));
        if let Some(client) = forwarded_for {
            request = request.header("x-forwarded-for", client);
        }
        let started = Instant::now();
        let response = request.send().await.expect("request");
        let took = started.elapsed();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        (response.status(), retry_after, took)
    }

    /// The status of an API request.
    async fn api_status(&self, forwarded_for: Option<&str>) -> StatusCode {
        self.api(forwarded_for).await.0
    }

    /// The status of a login with `password`, as if forwarded for `forwarded_for`.
    async fn login(&self, email: &str, password: &str, forwarded_for: Option<&str>) -> StatusCode {
        let mut request = self
            .client
            .post(format!("{}/api/auth/login", self.base_url))
            .json(&json!({"email": email, "password": password}));
        if let Some(client) = forwarded_for {
            request = request.header("x-forwarded-for", client);
        }
        request.send().await.expect("request").status()
    }
}

/// Asserts that `node` answers the API with something other than 429, `times` times.
async fn spend(nodes: &[&Node], times: usize, forwarded_for: Option<&str>) {
    for i in 0..times {
        let status = nodes[i % nodes.len()].api_status(forwarded_for).await;
        assert_ne!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "request {} of the budget (as {forwarded_for:?})",
            i + 1
        );
    }
}

#[tokio::test]
async fn two_nodes_share_one_api_budget_per_client() {
    let Some(redis) = redis_url() else {
        return;
    };
    let app = first_node(|config| {
        config.redis_url = Some(redis);
        config.redis_prefix = prefix();
        config.api_rate_limit = 6;
    })
    .await;
    let (a, b) = (Node::of(&app), Node::join(&app).await);

    // Six requests in all, alternating between the nodes: three each.
    spend(&[&a, &b], 6, None).await;

    // The budget is spent on both nodes: the seventh is refused whichever node it reaches, not
    // only after each node has seen six.
    for node in [&a, &b] {
        let (status, retry_after, _) = node.api(None).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let retry_after = retry_after.expect("a 429 says when to come back");
        assert!((1..=900).contains(&retry_after), "{retry_after}");
    }
}

#[tokio::test]
async fn login_attempts_on_one_node_block_the_account_and_address_on_the_other() {
    let Some(redis) = redis_url() else {
        return;
    };
    let app = first_node(|config| {
        config.redis_url = Some(redis);
        config.redis_prefix = prefix();
        config.login_max_failures_per_minute = 3;
    })
    .await;
    let (a, b) = (Node::of(&app), Node::join(&app).await);
    let ann = app.register("ann@example.com", "Ann").await;
    let bob = app.register("bob@example.com", "Bob").await;
    assert_eq!(
        b.login(&ann.email, PASSWORD, None).await,
        StatusCode::OK,
        "the account works on the other node"
    );

    for _ in 0..3 {
        assert_eq!(
            a.login(&ann.email, "wrong password", None).await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        a.login(&ann.email, PASSWORD, None).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        b.login(&ann.email, PASSWORD, None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "the attempts made on node a count on node b, even with the right password"
    );
    assert_eq!(
        b.login(&bob.email, PASSWORD, None).await,
        StatusCode::OK,
        "another account from the same address is not blocked"
    );
}

/// A local port nothing listens on.
fn unused_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local address").port()
}

/// With `redis_url` unusable, two nodes each limit on their own (the stated fallback) and
/// every request is answered within [`QUICK`].
async fn each_node_limits_on_its_own_and_quickly(redis_url: String) {
    let app = first_node(|config| {
        config.redis_url = Some(redis_url);
        config.redis_prefix = prefix();
        config.api_rate_limit = 5;
    })
    .await;
    let (a, b) = (Node::of(&app), Node::join(&app).await);
    for (name, node) in [("a", &a), ("b", &b)] {
        for i in 1..=5 {
            let (status, _, took) = node.api(None).await;
            assert_ne!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "node {name}, request {i}"
            );
            assert!(took < QUICK, "node {name}, request {i} took {took:?}");
        }
        let (status, retry_after, took) = node.api(None).await;
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "node {name} still limits"
        );
        assert!(retry_after.is_some());
        assert!(took < QUICK, "node {name}, the 429 took {took:?}");
    }
}

#[tokio::test]
async fn with_nothing_listening_at_redis_url_each_node_still_limits_and_answers_quickly() {
    each_node_limits_on_its_own_and_quickly(format!("redis://127.0.0.1:{}", unused_port())).await;
}

#[tokio::test]
async fn with_a_redis_that_never_answers_each_node_still_limits_and_answers_quickly() {
    // Connections are accepted (by the kernel) and never answered.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("local address").port();
    each_node_limits_on_its_own_and_quickly(format!("redis://127.0.0.1:{port}")).await;
    drop(silent);
}

/// Uses `TEST_REDIS_URL` under a prefix of its own when it is set (the per-node memory
/// otherwise).
fn maybe_redis(config: &mut Config) {
    if let Ok(url) = std::env::var("TEST_REDIS_URL") {
        config.redis_url = Some(url);
        config.redis_prefix = prefix();
    }
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = first_node(|config| {
        maybe_redis(config);
        config.api_rate_limit = 4;
    })
    .await;
    let node = Node::of(&app);
    // A client that forges a different address on every request still has one budget.
    for (i, forged) in ["203.0.113.1", "203.0.113.2", "198.51.100.9", "10.0.0.1"]
        .iter()
        .enumerate()
    {
        assert_ne!(
            node.api_status(Some(forged)).await,
            StatusCode::TOO_MANY_REQUESTS,
            "request {}",
            i + 1
        );
    }
    for forged in [Some("203.0.113.77"), Some("192.0.2.1, 192.0.2.2"), None] {
        assert_eq!(
            node.api_status(forged).await,
            StatusCode::TOO_MANY_REQUESTS,
            "{forged:?}"
        );
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_budget() {
    let app = first_node(|config| {
        maybe_redis(config);
        config.api_rate_limit = 3;
        config.trusted_proxies = TrustedProxies::parse("127.0.0.1").expect("valid list");
    })
    .await;
    let node = Node::of(&app);
    spend(&[&node], 3, Some("203.0.113.1")).await;
    assert_eq!(
        node.api_status(Some("203.0.113.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // nginx appends the address it saw; what a client wrote before it changes nothing.
    assert_eq!(
        node.api_status(Some("198.51.100.50, 203.0.113.1")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other clients behind the same proxy are not affected.
    spend(&[&node], 3, Some("203.0.113.2")).await;
    spend(&[&node], 3, Some("2001:db8::7")).await;
    // A request without the header (or with one that cannot be read) is the proxy's own.
    spend(&[&node], 2, None).await;
    spend(&[&node], 1, Some("not an address")).await;
    assert_eq!(node.api_status(None).await, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn login_limits_are_per_forwarded_client_only_behind_a_trusted_proxy() {
    for trusted in [false, true] {
        let app = first_node(|config| {
            maybe_redis(config);
            config.login_max_failures_per_minute = 2;
            if trusted {
                config.trusted_proxies = TrustedProxies::parse("127.0.0.0/8").expect("valid");
            }
        })
        .await;
        let node = Node::of(&app);
        let ann = app.register("ann@example.com", "Ann").await;
        let mallory = Some("203.0.113.66");
        for _ in 0..2 {
            assert_eq!(
                node.login(&ann.email, "guess", mallory).await,
                StatusCode::UNAUTHORIZED
            );
        }
        assert_eq!(
            node.login(&ann.email, "guess", mallory).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        let owner = node.login(&ann.email, PASSWORD, Some("198.51.100.1")).await;
        if trusted {
            assert_eq!(
                owner,
                StatusCode::OK,
                "behind a trusted proxy the guesser's address is blocked, not the owner's"
            );
        } else {
            assert_eq!(
                owner,
                StatusCode::TOO_MANY_REQUESTS,
                "from an untrusted peer the header changes nothing: one address, one budget"
            );
        }
    }
}

/// A TCP relay from a local port to the `TEST_REDIS_URL` server, which can be cut (every
/// connection through it closed, nothing listening) and restored on the same port.
struct Relay {
    /// `TEST_REDIS_URL` with its address replaced by the relay's.
    url: String,
    port: u16,
    target: String,
    running: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
}

impl Relay {
    /// A running relay to the Redis at `redis_url`; `None` (after saying why) when that is not
    /// a plain `redis://host:port` URL.
    async fn start(redis_url: &str) -> Option<Relay> {
        let info = redis::Client::open(redis_url)
            .expect("TEST_REDIS_URL is a Redis URL")
            .get_connection_info()
            .clone();
        let redis::ConnectionAddr::Tcp(host, port) = &info.addr else {
            eprintln!("skipped: TEST_REDIS_URL is not a plain TCP address");
            return None;
        };
        let target = format!("{host}:{port}");
        if !redis_url.contains(&target) {
            eprintln!("skipped: TEST_REDIS_URL has no explicit host:port");
            return None;
        }
        let port = unused_port();
        let mut relay = Relay {
            url: redis_url.replacen(&target, &format!("127.0.0.1:{port}"), 1),
            port,
            target,
            running: None,
        };
        relay.up().await;
        Some(relay)
    }

    /// Listens again and relays new connections.
    async fn up(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the relay's port again");
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let target = self.target.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    accepted = listener.accept() => {
                        let Ok((mut inbound, _)) = accepted else { continue };
                        let target = target.clone();
                        connections.spawn(async move {
                            if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound)
                                    .await;
                            }
                        });
                    }
                }
            }
            // Every relayed connection is closed before `down` returns.
            connections.shutdown().await;
        });
        self.running = Some((stop, task));
    }

    /// Closes every relayed connection and stops listening.
    async fn down(&mut self) {
        if let Some((stop, task)) = self.running.take() {
            let _ = stop.send(());
            task.await.expect("relay task");
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some((_, task)) = &self.running {
            task.abort();
        }
    }
}

#[tokio::test]
async fn a_node_counts_in_redis_again_once_redis_answers_again() {
    let Some(redis_url) = redis_url() else {
        return;
    };
    let Some(mut relay) = Relay::start(&redis_url).await else {
        return;
    };
    let prefix = prefix();
    let app = first_node(|config| {
        config.redis_url = Some(relay.url.clone());
        config.redis_prefix = prefix.clone();
        config.api_rate_limit = 4;
    })
    .await;
    let node = Node::of(&app);
    let mut admin = redis::Client::open(redis_url.as_str())
        .expect("client")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to TEST_REDIS_URL");
    let key = splitsave_server::ratelimit::RedisCounter::new(&redis_url, &prefix)
        .expect("counter")
        .redis_key("api:127.0.0.1");
    let mut shared_count = async || -> Option<u64> {
        redis::cmd("GET")
            .arg(&key)
            .query_async(&mut admin)
            .await
            .expect("GET")
    };

    assert_ne!(node.api_status(None).await, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(shared_count().await, Some(1), "counted in Redis");

    // Redis is cut off: the node answers (quickly) and counts on its own, from zero.
    relay.down().await;
    for i in 1..=4 {
        let (status, _, took) = node.api(None).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "request {i}");
        assert!(took < QUICK, "request {i} took {took:?}");
    }
    assert_eq!(shared_count().await, Some(1), "nothing reached Redis");
    let (status, _, _) = node.api(None).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the node's own count of the outage (5) is over the limit"
    );

    // Redis answers again: after its backoff (at most 2 s) the node counts in Redis again, where
    // the window opened before the outage still holds one request.
    relay.up().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, took) = node.api(None).await;
        assert!(took < QUICK, "took {took:?}");
        if let Some(count) = shared_count().await.filter(|count| *count > 1) {
            assert_eq!(count, 2, "the first request after the outage reached Redis");
            assert_ne!(
                status,
                StatusCode::TOO_MANY_REQUESTS,
                "and the shared budget (2 of 4) decides again, not the outage's count"
            );
            break;
        }
        assert_eq!(
            status,
            StatusCode::TOO_MANY_REQUESTS,
            "still counted in memory"
        );
        assert!(
            Instant::now() < deadline,
            "the node never went back to Redis"
        );
        // Polling: the node tries Redis again only after its backoff.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
