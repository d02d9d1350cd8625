//! Load benchmark of the real router over HTTP: `POST /api/auth/login` (production argon2id
//! parameters, `HASH_CONCURRENCY` permits) and an authenticated `GET /api/users/profile`.
//!
//! Runs on PostgreSQL when `TEST_DATABASE_URL` is set (a fresh database), on SQLite otherwise.
//! `BENCH_SECS` (default 10) sets the duration of each phase, `BENCH_CONCURRENCY` (default 16)
//! the number of clients.
//!
//! ```text
//! cargo bench -p splitsave-server --bench auth_load
//! ```

#[path = "../tests/integration/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Backend, TestDb};
use serde_json::{json, Value};
use splitsave_server::app::{router, AppState};
use splitsave_server::config::{Argon2Params, Config};
use splitsave_server::notify::mail::MemoryMailer;

/// What one phase measured.
struct Figures {
    requests: usize,
    failures: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Figures {
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[rank.min(self.latencies.len() - 1)]
    }

    fn print(&self, name: &str) {
        let rps = self.requests as f64 / self.elapsed.as_secs_f64();
        println!(
            "{name:<28} {:>8.1} req/s   p50 {:>8.2} ms   p99 {:>8.2} ms   ({} requests, {} failed, {:.1} s)",
            rps,
            self.percentile(0.50).as_secs_f64() * 1000.0,
            self.percentile(0.99).as_secs_f64() * 1000.0,
            self.requests,
            self.failures,
            self.elapsed.as_secs_f64(),
        );
    }
}

/// Runs `concurrency` clients for `duration`, each sending `make(client, worker)` requests back to
/// back; a request counts as failed unless it answers 200.
async fn phase<F, Fut>(concurrency: usize, duration: Duration, make: F) -> Figures
where
    F: Fn(usize) -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = reqwest::Result<reqwest::Response>> + Send,
{
    let start = Instant::now();
    let deadline = start + duration;
    let mut workers = Vec::new();
    for worker in 0..concurrency {
        let make = make.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut failures = 0;
            while Instant::now() < deadline {
                let sent = Instant::now();
                match make(worker).await {
                    Ok(response) if response.status() == reqwest::StatusCode::OK => {
                        let _ = response.bytes().await;
                        latencies.push(sent.elapsed());
                    }
                    _ => failures += 1,
                }
            }
            (latencies, failures)
        }));
    }
    let mut figures = Figures {
        requests: 0,
        failures: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for worker in workers {
        let (latencies, failures) = worker.await.expect("worker");
        figures.requests += latencies.len();
        figures.failures += failures;
        figures.latencies.extend(latencies);
    }
    figures.elapsed = start.elapsed();
    figures.latencies.sort();
    figures
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let secs = env_number("BENCH_SECS", 10);
    let concurrency = env_number("BENCH_CONCURRENCY", 16) as usize;
    let backend = if std::env::var("TEST_DATABASE_URL").is_ok() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    let db = TestDb::new(backend).await.expect("database");
    let mut config = Config::for_tests(db.dir.path(), db.url.clone());
    // Production hashing cost; limits out of the way (this measures throughput, not limiting).
    config.argon2 = Argon2Params::OWASP;
    config.api_rate_limit = u32::MAX;
    config.login_max_failures_per_minute = u32::MAX;
    let hashes = config.max_concurrent_hashes;
    let state = AppState::with_parts(config, db.store().await, Arc::new(MemoryMailer::new()))
        .expect("state");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let password = "benchmark password";
    let users = concurrency;
    let mut tokens = Vec::new();
    for i in 0..users {
        let email = format!("bench{i}@example.com");
        let response = client
            .post(format!("{base}/api/auth/register"))
            .json(&json!({"email": email, "password": password, "name": format!("User {i}")}))
            .send()
            .await
            .expect("register");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
        let body: Value = response.json().await.expect("json");
        tokens.push(body["access_token"].as_str().expect("token").to_string());
    }
    let tokens = Arc::new(tokens);

    println!(
        "auth_load: {backend:?}, {concurrency} clients, {secs} s per phase, argon2id m={} KiB t={} p={}, {hashes} hashes at once, {} cores",
        Argon2Params::OWASP.memory_kib,
        Argon2Params::OWASP.iterations,
        Argon2Params::OWASP.parallelism,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
    );
    let duration = Duration::from_secs(secs);
    let login = {
        let (client, base) = (client.clone(), base.clone());
        phase(concurrency, duration, move |worker| {
            let request = client
                .post(format!("{base}/api/auth/login"))
                .json(&json!({"email": format!("bench{}@example.com", worker % users), "password": password}));
            request.send()
        })
        .await
    };
    login.print("POST /api/auth/login");
    let profile = {
        let (client, base, tokens) = (client.clone(), base.clone(), tokens.clone());
        phase(concurrency, duration, move |worker| {
            client
                .get(format!("{base}/api/users/profile"))
                .bearer_auth(&tokens[worker % tokens.len()])
                .send()
        })
        .await
    };
    profile.print("GET /api/users/profile");
}
