//! `splitsave-loadgen`: drives a release `splitsave` server on PostgreSQL over real WebSockets
//! (the automerge-repo protocol, Automerge sync, sync-core operations) and prints the figures
//! the sync layer is held to: durable merges per second, partner-to-partner propagation latency
//! at a fixed offered load, server memory per idle connection and per hot document, and the
//! cold-open time of a large document.
//!
//! Bounded in time and count and loopback only. By default it creates a fresh PostgreSQL
//! database, starts `target/release/splitsave` on it, and drops both at the end. Accounts,
//! partnerships and the large documents are written straight through `splitsave_server::store`
//! (REST registration with production argon2 costs ~18 ms of CPU per user, which would spend
//! most of the time budget on hashing instead of sync), and access tokens are signed with the
//! server's own JWT secret. Everything after that goes over `GET /sync` like a real app.
//!
//! Run `splitsave-loadgen --help` for the flags; docs/benchmarks.md, "Sync load generator", has
//! the figures measured on the project's 2-core machine.

use std::alloc::GlobalAlloc;
use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::{ActorId, Automerge, ChangeHash, ReadDoc};
use chrono::Utc;
use clap::{Parser, ValueEnum};
use futures::stream::{self, SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use rust_decimal::Decimal;
use splitsave_server::auth::tokens::TokenKeys;
use splitsave_server::store::{
    AcceptInvitation, NewChange, NewInvitation, NewSnapshot, NewUser, PgStore, Store,
};
use splitsave_sync_core::document::{new_partnership_document, NewMember, NewPartnership};
use splitsave_sync_core::enums::{Category, Frequency};
use splitsave_sync_core::ids::{DocumentId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense};
use splitsave_sync_core::protocol::{self, PeerMetadata, WireMessage};
use splitsave_sync_core::time::Millis;
use sqlx::Connection;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use uuid::Uuid;

/// Everything that can stop a run.
#[derive(Debug, thiserror::Error)]
enum LoadError {
    /// Bad flags or environment.
    #[error("{0}")]
    Usage(String),
    /// The server process could not be started or did not become ready.
    #[error("server: {0}")]
    Server(String),
    /// Database administration (create/drop) failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The store refused a setup write.
    #[error("store: {0}")]
    Store(#[from] splitsave_server::store::StoreError),
    /// A WebSocket failed.
    #[error("websocket: {0}")]
    Ws(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server spoke something unexpected or closed with an `error` message.
    #[error("protocol: {0}")]
    Protocol(String),
    /// An Automerge or sync-core operation failed.
    #[error("document: {0}")]
    Doc(String),
    /// Waited too long.
    #[error("timed out: {0}")]
    Timeout(&'static str),
}

type Result<T, E = LoadError> = std::result::Result<T, E>;

/// mimalloc (as in the server: it spends less CPU on Automerge's many small allocations, which
/// leaves more of the shared cores to the server), counting the bytes live in this process, so
/// the generator can tell how much of a hot document's server footprint is the Automerge
/// document itself.
struct CountingAlloc;

static LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static INNER: mimalloc::MiMalloc = mimalloc::MiMalloc;

// SAFETY: every call is forwarded unchanged to mimalloc; the counter is only
// arithmetic on the sizes the caller passes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { INNER.alloc(layout) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { INNER.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { INNER.realloc(ptr, layout, new) };
        if !p.is_null() {
            LIVE_BYTES.fetch_add(new as u64, Ordering::Relaxed);
            LIVE_BYTES.fetch_sub(layout.size() as u64, Ordering::Relaxed);
        }
        p
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// The scenarios a run can include.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Scenario {
    /// Every client edits as fast as its acknowledgements come back.
    Throughput,
    /// A fixed offered load; partner-to-partner propagation latency.
    Latency,
    /// Server RSS per idle connection and per hot document.
    Memory,
    /// First sync of a large document that is not loaded.
    Cold,
}

/// Load generator for SplitSave's `/sync` (real WebSockets, PostgreSQL, loopback only).
#[derive(Debug, Parser)]
#[command(name = "splitsave-loadgen", version)]
struct Args {
    /// Base URL of a running server (loopback only), e.g. http://127.0.0.1:3000. Without it the
    /// generator starts target/release/splitsave on a fresh database and stops it afterwards.
    #[arg(long)]
    url: Option<String>,
    /// PostgreSQL URL. Without --url: an administrative connection used to create (and drop) a
    /// fresh database for the run. With --url: the running server's own database.
    #[arg(long, env = "TEST_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// The running server's JWT_SECRET (only with --url: tokens are signed locally).
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The running server's process id (only with --url), for the memory figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The server binary to start (default: `splitsave` beside this binary).
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// Partnerships (each with two connected clients) for the throughput and latency scenarios.
    #[arg(short = 'n', long, default_value_t = 1000)]
    partnerships: usize,
    /// Length of the throughput scenario, seconds.
    #[arg(short = 's', long, default_value_t = 20)]
    seconds: u64,
    /// Offered load of the latency scenario, merges per second over all partnerships.
    #[arg(long, default_value_t = 1000)]
    rate: u32,
    /// Length of the latency scenario, seconds.
    #[arg(long, default_value_t = 20)]
    latency_seconds: u64,
    /// Extra idle connections (spread over the partnerships' users) for the memory figure.
    #[arg(short = 'k', long, default_value_t = 2000)]
    idle: usize,
    /// Hot documents for the memory figure.
    #[arg(short = 'd', long, default_value_t = 200)]
    hot: usize,
    /// Items (expenses) in each hot document.
    #[arg(long, default_value_t = 200)]
    hot_items: usize,
    /// Cold documents opened (one at a time) for the cold-open figure.
    #[arg(short = 'c', long, default_value_t = 100)]
    cold: usize,
    /// Items (expenses) in each cold document.
    #[arg(long, default_value_t = 2000)]
    cold_items: usize,
    /// Of those, how many are stored as changes after the snapshot (the server compacts every
    /// 500 by default, so a loaded document has 0-499 of them).
    #[arg(long, default_value_t = 250)]
    cold_tail: usize,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "memory,cold,latency,throughput"
    )]
    scenarios: Vec<Scenario>,
    /// Worker threads of the generator (keep it at 1 on 2 cores so the server keeps one).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Concurrent setup writes and connection handshakes.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// SYNC_MESSAGES_PER_SECOND for the started server (burst: twice this). The production
    /// default (50 per connection) is an abuse limit; a flood from few partnerships would trip it.
    #[arg(long, default_value_t = 1000)]
    sync_rate_limit: u32,
    /// SYNC_IDLE_EVICTION_SECS for the started server: a document with no connection is evicted
    /// (and compacted) after this long, which the cold-open scenario waits for.
    #[arg(long, default_value_t = 2)]
    idle_eviction_secs: u64,
    /// Upper bound of the whole run, seconds: past it (or on Ctrl-C) the run stops and cleans up.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// Keep the database (and the server log) instead of dropping them.
    #[arg(long)]
    keep: bool,
    /// After the memory figures, keep their connections open this long (seconds), so the
    /// server's memory can be inspected with other tools while the documents are hot.
    #[arg(long, default_value_t = 0)]
    hold_seconds: u64,
}

/// Amounts in the generated expenses: well under the default approval threshold (100.00), so
/// every edit applies directly and needs no compensation.
const EXPENSE_MINOR: i64 = 500;
/// Longest wait for one connection's handshake and first sync.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for in-flight edits after a scenario ends.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads.max(1))
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(err) => {
            eprintln!("splitsave-loadgen: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("splitsave-loadgen: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

// ---- environment: database and server -----------------------------------------------------------

/// The database and server of one run, torn down at the end unless `--keep`.
struct Environment {
    http_base: String,
    ws_base: String,
    database_url: String,
    keys: TokenKeys,
    server: Option<Child>,
    server_pid: Option<u32>,
    /// Database to drop at the end: (admin URL, name).
    created_db: Option<(String, String)>,
    data_dir: Option<PathBuf>,
}

impl Environment {
    async fn prepare(args: &Args) -> Result<Self> {
        let Some(db) = args.database_url.clone() else {
            return Err(LoadError::Usage(
                "set --database-url or TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)".into(),
            ));
        };
        if let Some(url) = &args.url {
            let base = url.trim_end_matches('/').to_string();
            if !is_loopback(&base) {
                return Err(LoadError::Usage(format!(
                    "{base} is not a loopback address"
                )));
            }
            let secret = args.jwt_secret.clone().ok_or_else(|| {
                LoadError::Usage("--url needs --jwt-secret (the server's JWT_SECRET)".into())
            })?;
            // Only the access-token key matters here; the opaque-token key is never used.
            let keys = TokenKeys::from_secrets(secret.as_bytes(), b"unused-by-the-load-generator");
            return Ok(Self {
                ws_base: ws_of(&base),
                http_base: base,
                database_url: db,
                keys,
                server: None,
                server_pid: args.server_pid,
                created_db: None,
                data_dir: None,
            });
        }
        let name = format!(
            "splitsave_loadgen_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let mut admin = sqlx::PgConnection::connect(&db).await?;
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut admin)
            .await?;
        admin.close().await?;
        let database_url = with_database(&db, &name);
        let mut env = Self {
            http_base: String::new(),
            ws_base: String::new(),
            database_url,
            keys: TokenKeys::from_secrets(b"placeholder", b"placeholder"),
            server: None,
            server_pid: None,
            created_db: Some((db, name)),
            data_dir: None,
        };
        if let Err(err) = env.start_server(args).await {
            env.teardown(args.keep).await;
            return Err(err);
        }
        Ok(env)
    }

    async fn start_server(&mut self, args: &Args) -> Result<()> {
        // Applies the migrations before the server starts, like a deployment's migration job.
        drop(PgStore::connect(&self.database_url).await?);
        let bin = match &args.server_bin {
            Some(b) => b.clone(),
            None => std::env::current_exe()
                .map_err(|e| LoadError::Server(e.to_string()))?
                .with_file_name("splitsave"),
        };
        if !bin.exists() {
            return Err(LoadError::Server(format!(
                "{} not found: build it with `cargo build --release -p splitsave-server`",
                bin.display()
            )));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| LoadError::Server(e.to_string()))?
            .port();
        let data_dir =
            std::env::temp_dir().join(format!("splitsave-loadgen-{}", std::process::id()));
        std::fs::create_dir_all(&data_dir).map_err(|e| LoadError::Server(e.to_string()))?;
        let log = std::fs::File::create(data_dir.join("server.log"))
            .map_err(|e| LoadError::Server(e.to_string()))?;
        let log_err = log
            .try_clone()
            .map_err(|e| LoadError::Server(e.to_string()))?;
        let jwt_secret = hex::encode(rand::random::<[u8; 32]>());
        let refresh_secret = hex::encode(rand::random::<[u8; 32]>());
        let child = Command::new(&bin)
            .arg("serve")
            .env("SPLITSAVE_ENV", "production")
            .env("RUST_LOG", "warn")
            .env("PORT", port.to_string())
            .env("SPLITSAVE_DATA_DIR", &data_dir)
            .env("DATABASE_URL", &self.database_url)
            .env("JWT_SECRET", &jwt_secret)
            .env("JWT_REFRESH_SECRET", &refresh_secret)
            .env("SYNC_MESSAGES_PER_SECOND", args.sync_rate_limit.to_string())
            .env(
                "SYNC_IDLE_EVICTION_SECS",
                args.idle_eviction_secs.to_string(),
            )
            .env(
                "SYNC_MESSAGE_BURST",
                args.sync_rate_limit.saturating_mul(2).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .spawn()
            .map_err(|e| LoadError::Server(format!("cannot start {}: {e}", bin.display())))?;
        self.server_pid = Some(child.id());
        self.server = Some(child);
        self.data_dir = Some(data_dir);
        self.keys = TokenKeys::from_secrets(jwt_secret.as_bytes(), refresh_secret.as_bytes());
        self.http_base = format!("http://127.0.0.1:{port}");
        self.ws_base = ws_of(&self.http_base);
        self.wait_ready().await
    }

    /// Polls `/readyz` until it answers 200, with a deadline.
    async fn wait_ready(&mut self) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{}/readyz", self.http_base);
        loop {
            if let Some(child) = self.server.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(LoadError::Server(format!(
                        "exited with {status} (see its log)"
                    )));
                }
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(LoadError::Timeout("server readiness"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn teardown(&mut self, keep: bool) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if keep {
            if let Some((_, name)) = &self.created_db {
                println!("kept database {name}");
            }
            if let Some(dir) = &self.data_dir {
                println!("kept server log {}", dir.join("server.log").display());
            }
            return;
        }
        if let Some(dir) = self.data_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
        if let Some((admin, name)) = self.created_db.take() {
            let dropped = async {
                let mut c = sqlx::PgConnection::connect(&admin).await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut c)
                    .await?;
                c.close().await
            };
            if let Err(err) = dropped.await {
                eprintln!("cannot drop database {name}: {err}");
            }
        }
    }

    fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server_pid?)).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }
}

fn is_loopback(base: &str) -> bool {
    let rest = base
        .strip_prefix("http://")
        .or_else(|| base.strip_prefix("ws://"))
        .unwrap_or("");
    ["127.0.0.1", "localhost", "[::1]"].iter().any(|h| {
        rest == *h || rest.starts_with(&format!("{h}:")) || rest.starts_with(&format!("{h}/"))
    })
}

fn ws_of(http: &str) -> String {
    match http.strip_prefix("http://") {
        Some(rest) => format!("ws://{rest}"),
        None => http.to_string(),
    }
}

/// The URL with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

// ---- CPU accounting ---------------------------------------------------------------------------

/// CPU seconds (user + system) of a process, from /proc (clock ticks of 1/100 s).
fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(path).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds of every `postgres` process on the machine (the database is shared, so this
/// includes anyone else's queries).
fn postgres_cpu_secs() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| cpu_secs(Some(pid)))
        .sum()
}

/// Busy and total jiffies of the whole machine.
fn machine_jiffies() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// CPU use over a scenario: server, generator, and the whole machine.
struct CpuMeter {
    server_pid: Option<u32>,
    server: Option<f64>,
    me: Option<f64>,
    postgres: f64,
    machine: Option<(u64, u64)>,
    start: Instant,
}

impl CpuMeter {
    fn start(server_pid: Option<u32>) -> Self {
        Self {
            server_pid,
            server: cpu_secs(server_pid).filter(|_| server_pid.is_some()),
            me: cpu_secs(None),
            postgres: postgres_cpu_secs(),
            machine: machine_jiffies(),
            start: Instant::now(),
        }
    }

    fn report(&self) -> String {
        let wall = self.start.elapsed().as_secs_f64();
        let mut parts = Vec::new();
        if let (Some(a), Some(b)) = (self.server, cpu_secs(self.server_pid)) {
            parts.push(format!("server {:.0}%", (b - a) / wall * 100.0));
        }
        if let (Some(a), Some(b)) = (self.me, cpu_secs(None)) {
            parts.push(format!("generator {:.0}%", (b - a) / wall * 100.0));
        }
        parts.push(format!(
            "postgres {:.0}%",
            (postgres_cpu_secs() - self.postgres) / wall * 100.0
        ));
        if let (Some((b0, t0)), Some((b1, t1))) = (self.machine, machine_jiffies()) {
            let busy = (b1 - b0) as f64 / (t1 - t0).max(1) as f64;
            parts.push(format!("machine {:.0}% of all cores", busy * 100.0));
        }
        format!("CPU (100% = one core): {}", parts.join(", "))
    }
}

// ---- setup through the store --------------------------------------------------------------------

/// One partnership of the run and its two users' access tokens.
#[derive(Clone)]
struct Pair {
    pid: PartnershipId,
    users: [UserId; 2],
    tokens: [String; 2],
    /// The document's heads as stored (for the hot and cold documents).
    heads: Vec<ChangeHash>,
}

impl Pair {
    fn document_id(&self) -> String {
        DocumentId::for_partnership(self.pid).to_string()
    }
}

/// A prebuilt document: the snapshot and the changes stored after it.
struct BuiltDoc {
    snapshot: NewSnapshot,
    tail: Vec<NewChange>,
    actor: String,
    heads: Vec<ChangeHash>,
}

struct Setup {
    store: Arc<dyn Store>,
    keys: Arc<TokenKeys>,
    password_hash: String,
    run_tag: String,
}

impl Setup {
    /// Creates `count` active partnerships concurrently; `items` > 0 prebuilds each document
    /// with that many expenses (the last `tail` of them stored as changes after the snapshot).
    async fn partnerships(
        self: &Arc<Self>,
        kind: &str,
        count: usize,
        items: usize,
        tail: usize,
        concurrency: usize,
    ) -> Result<Vec<Pair>> {
        let results: Vec<Result<Pair>> = stream::iter(0..count)
            .map(|i| {
                let me = self.clone();
                let kind = kind.to_string();
                async move { me.partnership(&kind, i, items, tail).await }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        results.into_iter().collect()
    }

    async fn partnership(&self, kind: &str, i: usize, items: usize, tail: usize) -> Result<Pair> {
        let now = Utc::now();
        let mut users = Vec::with_capacity(2);
        for side in ["a", "b"] {
            let record = self
                .store
                .create_user(NewUser {
                    id: Uuid::now_v7(),
                    email: format!("{kind}{i}{side}.{}@loadgen.invalid", self.run_tag),
                    password_hash: self.password_hash.clone(),
                    name: format!("{kind} {i} {side}"),
                    currency: "EUR".into(),
                    country: None,
                    income: None,
                    payday: None,
                })
                .await?;
            users.push(record);
        }
        let threshold = Decimal::ONE_HUNDRED;
        let id = Uuid::now_v7();
        self.store
            .create_invitation(NewInvitation {
                id,
                inviter_id: users[0].id,
                invitee_email: users[1].email.clone(),
                currency: "EUR".into(),
                approval_threshold: threshold,
                now,
            })
            .await?;
        let currency = Currency::parse("EUR").map_err(|e| LoadError::Doc(e.to_string()))?;
        let new = NewPartnership {
            id: PartnershipId(id),
            currency,
            approval_threshold: currency
                .to_minor_positive(threshold)
                .map_err(|e| LoadError::Doc(e.to_string()))?,
            members: [
                NewMember {
                    user_id: UserId(users[0].id),
                    name: users[0].name.clone(),
                    income: None,
                    slot: 1,
                },
                NewMember {
                    user_id: UserId(users[1].id),
                    name: users[1].name.clone(),
                    income: None,
                    slot: 2,
                },
            ],
            created_at: Millis(now.timestamp_millis()),
        };
        let author = UserId(users[0].id);
        let built = tokio::task::spawn_blocking(move || build_document(&new, author, items, tail))
            .await
            .map_err(|e| LoadError::Doc(e.to_string()))??;
        self.store
            .accept_invitation(AcceptInvitation {
                partnership_id: id,
                user_id: users[1].id,
                email: users[1].email.clone(),
                snapshot: built.snapshot,
                now,
            })
            .await?;
        if items > 0 {
            self.store
                .bind_actor(id, &built.actor, users[0].id, now)
                .await?;
        }
        if !built.tail.is_empty() {
            self.store.append_changes(id, &built.tail, now).await?;
        }
        let mut tokens = Vec::with_capacity(2);
        for u in &users {
            let issued = self
                .keys
                .issue_access_token(u.id, Some(id), u.token_version, Utc::now())
                .map_err(|e| LoadError::Doc(e.to_string()))?;
            tokens.push(issued.token);
        }
        Ok(Pair {
            pid: PartnershipId(id),
            users: [UserId(users[0].id), UserId(users[1].id)],
            tokens: [tokens[0].clone(), tokens[1].clone()],
            heads: built.heads,
        })
    }
}

/// The partnership document as the server creates it, then `items` expenses added by `author`
/// one change each (as an app would), split into a snapshot and `tail` later changes.
fn build_document(
    p: &NewPartnership,
    author: UserId,
    items: usize,
    tail: usize,
) -> Result<BuiltDoc> {
    let mut doc = new_partnership_document(p).map_err(|e| LoadError::Doc(e.to_string()))?;
    let actor = ActorId::random();
    doc.set_actor(actor.clone());
    let tail = tail.min(items);
    let mut snapshot = None;
    let mut changes = Vec::with_capacity(tail);
    for i in 0..items {
        if i == items - tail {
            snapshot = Some(snapshot_of(&doc));
        }
        let hash = add_expense(&mut doc, author, i)?;
        if i >= items - tail {
            let change = doc
                .get_change_by_hash(&hash)
                .ok_or_else(|| LoadError::Doc("missing local change".into()))?;
            changes.push(NewChange {
                hash: change.hash().to_string(),
                actor: change.actor_id().to_hex_string(),
                seq: i64::try_from(change.seq()).unwrap_or(i64::MAX),
                user_id: Some(author.0),
                bytes: change.raw_bytes().to_vec(),
            });
        }
    }
    let snapshot = snapshot.unwrap_or_else(|| snapshot_of(&doc));
    Ok(BuiltDoc {
        snapshot,
        tail: changes,
        actor: actor.to_hex_string(),
        heads: doc.get_heads(),
    })
}

fn snapshot_of(doc: &Automerge) -> NewSnapshot {
    NewSnapshot {
        version: 0,
        heads: doc.get_heads().iter().map(|h| h.to_string()).collect(),
        change_count: i64::try_from(doc.get_changes(&[]).len()).unwrap_or(i64::MAX),
        bytes: doc.save(),
    }
}

/// Adds one small expense as `user` through sync-core (the operation apps use); returns the
/// change's hash.
fn add_expense(doc: &mut Automerge, user: UserId, n: usize) -> Result<ChangeHash> {
    let ctx = Ctx {
        user,
        now: Millis::now(),
    };
    let input = NewExpense {
        name: format!("load {n}"),
        amount: MinorUnits(EXPENSE_MINOR + (n % 100) as i64),
        category: Category::Groceries,
        frequency: Frequency::Monthly,
    };
    match doc.transact(|tx| ops::add_expense(tx, &ctx, &input)) {
        Ok(success) => success
            .hash
            .ok_or_else(|| LoadError::Doc("the edit wrote nothing".into())),
        Err(failure) => Err(LoadError::Doc(failure.error.to_string())),
    }
}

// ---- one client -----------------------------------------------------------------------------

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One app instance: a WebSocket, its own Automerge document and the sync state with the server.
struct Client {
    sink: SplitSink<Ws, Message>,
    stream: SplitStream<Ws>,
    doc: Automerge,
    state: sync::State,
    peer_id: String,
    document_id: String,
    user: UserId,
    edits: usize,
}

impl Client {
    /// Connects, joins, and sends the first `request` for the document (not waiting for it).
    async fn connect(
        ws_base: &str,
        token: &str,
        document_id: String,
        user: UserId,
    ) -> Result<Self> {
        let config = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0)
            .max_message_size(Some(64 << 20))
            .max_frame_size(Some(64 << 20));
        let url = format!("{ws_base}/sync?token={token}");
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        let (sink, stream) = ws.split();
        let peer_id = format!("loadgen-{}", Uuid::new_v4());
        let mut client = Self {
            sink,
            stream,
            doc: Automerge::new(),
            state: sync::State::new(),
            peer_id,
            document_id,
            user,
            edits: 0,
        };
        client
            .send(&WireMessage::Join {
                sender_id: client.peer_id.clone(),
                supported_protocol_versions: Some(vec![protocol::PROTOCOL_V1.into()]),
                peer_metadata: Some(PeerMetadata {
                    storage_id: None,
                    is_ephemeral: true,
                }),
            })
            .await?;
        loop {
            match client.next_wire().await? {
                WireMessage::Peer { .. } => break,
                WireMessage::Error { message, .. } => return Err(LoadError::Protocol(message)),
                _ => {}
            }
        }
        Ok(client)
    }

    async fn send(&mut self, msg: &WireMessage) -> Result<()> {
        self.sink
            .send(Message::Binary(protocol::encode(msg).into()))
            .await?;
        Ok(())
    }

    /// The next protocol message from the server; an `error` or a close is an error.
    async fn next_wire(&mut self) -> Result<WireMessage> {
        loop {
            match self.stream.next().await {
                Some(Ok(Message::Binary(bytes))) => {
                    let msg =
                        protocol::decode(&bytes).map_err(|e| LoadError::Protocol(e.to_string()))?;
                    if let WireMessage::Error { message, .. } = &msg {
                        return Err(LoadError::Protocol(format!("server closed: {message}")));
                    }
                    return Ok(msg);
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err(LoadError::Protocol("connection closed".into()))
                }
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err.into()),
            }
        }
    }

    /// Sends the `request` that starts the document's exchange.
    async fn request(&mut self) -> Result<()> {
        let data = self
            .doc
            .generate_sync_message(&mut self.state)
            .map(sync::Message::encode)
            .unwrap_or_default();
        let msg = WireMessage::Request {
            sender_id: self.peer_id.clone(),
            target_id: splitsave_server::sync::SERVER_PEER_ID.into(),
            document_id: self.document_id.clone(),
            data,
        };
        self.send(&msg).await
    }

    /// Sends whatever sync message the state calls for.
    async fn flush(&mut self) -> Result<()> {
        if let Some(m) = self.doc.generate_sync_message(&mut self.state) {
            let msg = WireMessage::Sync {
                sender_id: self.peer_id.clone(),
                target_id: splitsave_server::sync::SERVER_PEER_ID.into(),
                document_id: self.document_id.clone(),
                data: m.encode(),
            };
            self.send(&msg).await?;
        }
        Ok(())
    }

    /// Applies one server message; returns the server's heads it carried (None for messages
    /// that are not sync messages).
    fn apply(&mut self, msg: WireMessage) -> Result<Option<Vec<ChangeHash>>> {
        match msg {
            WireMessage::Sync { data, .. } | WireMessage::Request { data, .. } => {
                let m =
                    sync::Message::decode(&data).map_err(|e| LoadError::Protocol(e.to_string()))?;
                let heads = m.heads.clone();
                self.doc
                    .receive_sync_message(&mut self.state, m)
                    .map_err(|e| LoadError::Doc(e.to_string()))?;
                Ok(Some(heads))
            }
            WireMessage::DocUnavailable { .. } => {
                Err(LoadError::Protocol("document unavailable".into()))
            }
            _ => Ok(None),
        }
    }

    /// Exchanges messages until the document has `target` heads (or, with none given, any heads
    /// equal to the server's).
    async fn sync_until(&mut self, target: Option<&[ChangeHash]>, deadline: Instant) -> Result<()> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(remaining, self.next_wire())
                .await
                .map_err(|_| LoadError::Timeout("first sync"))??;
            let server_heads = self.apply(msg)?;
            self.flush().await?;
            let mut mine = self.doc.get_heads();
            mine.sort();
            let done = match (target, server_heads) {
                (Some(t), _) => {
                    let mut t = t.to_vec();
                    t.sort();
                    mine == t
                }
                (None, Some(mut s)) => {
                    s.sort();
                    !mine.is_empty() && mine == s
                }
                (None, None) => false,
            };
            if done {
                return Ok(());
            }
        }
    }

    fn edit(&mut self) -> Result<ChangeHash> {
        self.edits += 1;
        add_expense(&mut self.doc, self.user, self.edits)
    }

    /// True when the server's `heads` contain `change` (directly, or as an ancestor).
    fn server_has(&self, heads: &[ChangeHash], change: &ChangeHash) -> bool {
        if heads.contains(change) {
            return true;
        }
        if heads
            .iter()
            .any(|h| self.doc.get_change_meta_by_hash(h).is_none())
        {
            return false;
        }
        !self
            .doc
            .get_changes(heads)
            .iter()
            .any(|c| c.hash() == *change)
    }
}

// ---- the clients of the throughput and latency scenarios -------------------------------------------

/// Orders to a running client.
enum Cmd {
    /// Make one edit now; its propagation time counts from `scheduled`.
    Edit { scheduled: Instant },
    /// Edit again each time the previous edit is acknowledged, until `until`.
    Flood { until: Instant },
    /// Report (edits made, acknowledged edits outstanding) once nothing is in flight, then stop.
    Finish {
        done: oneshot::Sender<(usize, bool)>,
    },
}

/// Shared by the two clients of a partnership: edits waiting to reach the partner.
struct PairState {
    pid: PartnershipId,
    pending: Mutex<HashMap<ChangeHash, Instant>>,
}

/// Figures collected by all clients.
#[derive(Default)]
struct Stats {
    acks_in_window: AtomicU64,
    acks_total: AtomicU64,
    ack_rtt_us: Mutex<Vec<u64>>,
    propagation_us: Mutex<Vec<u64>>,
    delivered: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
    /// Every edit a client saw acknowledged, or its partner received: each must be stored.
    confirmed: Mutex<Vec<(PartnershipId, ChangeHash)>>,
}

impl Stats {
    fn error(&self, err: &LoadError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(err.to_string());
        }
    }
}

struct Driver {
    cmds: mpsc::Sender<Cmd>,
}

/// The body of one client's task.
async fn drive(
    mut client: Client,
    mut cmds: mpsc::Receiver<Cmd>,
    pair: Arc<PairState>,
    stats: Arc<Stats>,
) {
    if let Err(err) = drive_inner(&mut client, &mut cmds, &pair, &stats).await {
        stats.error(&err);
    }
    let _ = client.sink.send(Message::Close(None)).await;
}

async fn drive_inner(
    client: &mut Client,
    cmds: &mut mpsc::Receiver<Cmd>,
    pair: &PairState,
    stats: &Stats,
) -> Result<()> {
    // The edit waiting for the server's acknowledgement (flood mode), and when it was made.
    let mut outstanding: Option<(ChangeHash, Instant)> = None;
    let mut flood_until: Option<Instant> = None;
    let mut finish: Option<oneshot::Sender<(usize, bool)>> = None;
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return Ok(()),
                Some(Cmd::Edit { scheduled }) => {
                    let hash = client.edit()?;
                    pair.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(hash, scheduled);
                    client.flush().await?;
                }
                Some(Cmd::Flood { until }) => {
                    flood_until = Some(until);
                    if outstanding.is_none() {
                        outstanding = Some((client.edit()?, Instant::now()));
                        client.flush().await?;
                    }
                }
                Some(Cmd::Finish { done }) => {
                    flood_until = None;
                    if outstanding.is_none() {
                        let _ = done.send((client.edits, false));
                        return Ok(());
                    }
                    finish = Some(done);
                }
            },
            msg = client.next_wire() => {
                let msg = msg?;
                let before = client.doc.get_heads();
                let Some(server_heads) = client.apply(msg)? else { continue };
                record_arrivals(client, &before, pair, stats);
                if let Some((hash, made)) = outstanding {
                    if client.server_has(&server_heads, &hash) {
                        let now = Instant::now();
                        stats.acks_total.fetch_add(1, Ordering::Relaxed);
                        stats.confirmed.lock().unwrap_or_else(|e| e.into_inner()).push((pair.pid, hash));
                        if flood_until.is_some_and(|u| now <= u) {
                            stats.acks_in_window.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.ack_rtt_us.lock().unwrap_or_else(|e| e.into_inner())
                            .push(now.duration_since(made).as_micros() as u64);
                        outstanding = None;
                        if flood_until.is_some_and(|u| now < u) {
                            outstanding = Some((client.edit()?, now));
                        }
                    }
                }
                client.flush().await?;
                if outstanding.is_none() {
                    if let Some(done) = finish.take() {
                        let _ = done.send((client.edits, false));
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// Records the propagation time of every partner edit the last message brought.
fn record_arrivals(client: &Client, before: &[ChangeHash], pair: &PairState, stats: &Stats) {
    let now = Instant::now();
    let mut pending = pair.pending.lock().unwrap_or_else(|e| e.into_inner());
    if pending.is_empty() || client.doc.get_heads() == before {
        return;
    }
    for change in client.doc.get_changes(before) {
        if let Some(scheduled) = pending.remove(&change.hash()) {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            stats
                .confirmed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pair.pid, change.hash()));
            stats
                .propagation_us
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(now.duration_since(scheduled).as_micros() as u64);
        }
    }
}

/// Connects a client for `user` (0 or 1) of `pair` and syncs its document; `target` is the
/// document's expected heads, if known.
async fn open(ws_base: &str, pair: &Pair, user: usize) -> Result<Client> {
    let deadline = Instant::now() + CONNECT_TIMEOUT;
    let mut c = Client::connect(
        ws_base,
        &pair.tokens[user],
        pair.document_id(),
        pair.users[user],
    )
    .await?;
    c.request().await?;
    let target = (!pair.heads.is_empty()).then_some(pair.heads.as_slice());
    c.sync_until(target, deadline).await?;
    Ok(c)
}

/// Opens many clients concurrently; fails on the first error.
async fn open_many(
    ws_base: &str,
    targets: Vec<(Pair, usize)>,
    concurrency: usize,
) -> Result<Vec<(Pair, usize, Client)>> {
    let results: Vec<Result<(Pair, usize, Client)>> = stream::iter(targets)
        .map(|(pair, user)| async move {
            let c = open(ws_base, &pair, user).await?;
            Ok((pair, user, c))
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

// ---- figures ----------------------------------------------------------------------------------

/// Percentiles of a sample in microseconds.
struct Percentiles {
    n: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    fn of(mut v: Vec<u64>) -> Option<Self> {
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let at = |p: f64| {
            let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
            v[rank - 1] as f64 / 1000.0
        };
        Some(Self {
            n: v.len(),
            p50: at(0.50),
            p99: at(0.99),
            p999: at(0.999),
            max: at(1.0),
        })
    }
}

impl fmt::Display for Percentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms (n = {})",
            self.p50, self.p99, self.p999, self.max, self.n
        )
    }
}

/// One row of the summary table.
struct Row {
    figure: String,
    measured: String,
    target: String,
    verdict: &'static str,
}

fn row(figure: &str, measured: String, target: &str, pass: Option<bool>) -> Row {
    Row {
        figure: figure.into(),
        measured,
        target: target.into(),
        verdict: match pass {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "-",
        },
    }
}

// ---- the run ----------------------------------------------------------------------------------

async fn run(args: Args) -> Result<()> {
    if args.partnerships == 0
        && args.scenarios.iter().any(|s| {
            matches!(
                s,
                Scenario::Throughput | Scenario::Latency | Scenario::Memory
            )
        })
    {
        return Err(LoadError::Usage("--partnerships must be at least 1".into()));
    }
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    println!("command: {command_line}");
    let mut env = Environment::prepare(&args).await?;
    let result = tokio::select! {
        r = run_scenarios(&args, &env) => r,
        _ = tokio::time::sleep(Duration::from_secs(args.max_seconds)) => {
            Err(LoadError::Timeout("the whole run (--max-seconds)"))
        }
        _ = tokio::signal::ctrl_c() => Err(LoadError::Usage("interrupted".into())),
    };
    env.teardown(args.keep).await;
    let rows = result?;
    print_summary(&command_line, &args, &rows);
    Ok(())
}

/// Asks PostgreSQL to write out what the setup just wrote (tens of MiB of WAL: the cold and
/// hot documents, the accounts), so that flush does not land inside a measured window as a
/// stall of every commit, which would be the setup's cost, not the server's. Needs a superuser
/// (or `pg_checkpoint`); without one the run goes on and says so.
async fn checkpoint(database_url: &str) {
    let done = async {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        sqlx::query("CHECKPOINT").execute(&mut conn).await?;
        conn.close().await
    };
    match done.await {
        Ok(()) => println!(
            "setup: CHECKPOINT done, so the setup's writes are not flushed during a measurement"
        ),
        Err(err) => println!(
            "setup: CHECKPOINT refused ({err}); a checkpoint may land inside a measurement"
        ),
    }
}

async fn run_scenarios(args: &Args, env: &Environment) -> Result<Vec<Row>> {
    let t0 = Instant::now();
    println!(
        "server {} (pid {}), database {}",
        env.http_base,
        env.server_pid.map_or("unknown".into(), |p| p.to_string()),
        env.database_url.rsplit('/').next().unwrap_or("")
    );
    let store: Arc<dyn Store> = Arc::new(PgStore::connect(&env.database_url).await?);
    let password_hash = {
        use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut OsRng);
        argon2::Argon2::default()
            .hash_password(b"loadgen password, never used to log in", &salt)
            .map_err(|e| LoadError::Doc(e.to_string()))?
            .to_string()
    };
    let setup = Arc::new(Setup {
        store: store.clone(),
        keys: Arc::new(env.keys.clone()),
        password_hash,
        run_tag: format!("{:08x}", rand::random::<u32>()),
    });
    let wants = |s: Scenario| args.scenarios.contains(&s);
    let n = if wants(Scenario::Throughput) || wants(Scenario::Latency) || wants(Scenario::Memory) {
        args.partnerships
    } else {
        0
    };
    let step = Instant::now();
    let pairs = setup.partnerships("p", n, 0, 0, args.concurrency).await?;
    let hot = if wants(Scenario::Memory) {
        setup
            .partnerships("h", args.hot, args.hot_items, 0, args.concurrency)
            .await?
    } else {
        Vec::new()
    };
    let cold = if wants(Scenario::Cold) {
        setup
            .partnerships(
                "c",
                args.cold,
                args.cold_items,
                args.cold_tail,
                args.concurrency,
            )
            .await?
    } else {
        Vec::new()
    };
    println!(
        "setup: {} partnerships, {} hot ({} items), {} cold ({} items, {} after the snapshot) in {:.1} s (through the store)",
        pairs.len(),
        hot.len(),
        args.hot_items,
        cold.len(),
        args.cold_items,
        args.cold_tail.min(args.cold_items),
        step.elapsed().as_secs_f64()
    );
    checkpoint(&env.database_url).await;

    // Two clients per partnership, connected and synced.
    let step = Instant::now();
    let rss_before_clients = env.rss_kib();
    let targets: Vec<(Pair, usize)> = pairs
        .iter()
        .flat_map(|p| [(p.clone(), 0), (p.clone(), 1)])
        .collect();
    let opened = open_many(&env.ws_base, targets, args.concurrency).await?;
    println!(
        "connected {} clients in {:.1} s (server RSS {} -> {} KiB)",
        opened.len(),
        step.elapsed().as_secs_f64(),
        fmt_opt(rss_before_clients),
        fmt_opt(env.rss_kib())
    );
    let stats = Arc::new(Stats::default());
    let mut drivers: HashMap<(PartnershipId, usize), Driver> = HashMap::new();
    let mut pair_states: HashMap<PartnershipId, Arc<PairState>> = HashMap::new();
    for (pair, user, client) in opened {
        let state = pair_states
            .entry(pair.pid)
            .or_insert_with(|| {
                Arc::new(PairState {
                    pid: pair.pid,
                    pending: Mutex::new(HashMap::new()),
                })
            })
            .clone();
        let (tx, rx) = mpsc::channel(256);
        tokio::spawn(drive(client, rx, state, stats.clone()));
        drivers.insert((pair.pid, user), Driver { cmds: tx });
    }

    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        match scenario {
            Scenario::Memory => rows.extend(memory(args, env, &*store, &pairs, &hot).await?),
            Scenario::Cold => rows.extend(cold_open(args, env, &*store, &cold).await?),
            Scenario::Latency => rows.extend(latency(args, env, &pairs, &drivers, &stats).await?),
            Scenario::Throughput => rows.extend(throughput(args, env, &drivers, &stats).await?),
        }
    }
    if stats.errors.load(Ordering::Relaxed) > 0 {
        let first = stats
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        println!(
            "client errors: {} (first: {})",
            stats.errors.load(Ordering::Relaxed),
            first.unwrap_or_default()
        );
    }

    // Stop the clients once nothing is in flight.
    for d in drivers.values() {
        let (tx, rx) = oneshot::channel();
        if d.cmds.send(Cmd::Finish { done: tx }).await.is_ok() {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, rx).await;
        }
    }
    if !pairs.is_empty() && (wants(Scenario::Throughput) || wants(Scenario::Latency)) {
        let confirmed =
            std::mem::take(&mut *stats.confirmed.lock().unwrap_or_else(|e| e.into_inner()));
        rows.extend(durability(&env.database_url, &*store, confirmed, args.concurrency).await?);
    }
    println!("total run time {:.1} s", t0.elapsed().as_secs_f64());
    Ok(rows)
}

/// Every confirmed edit (acknowledged to its author or received by the partner) must be in the
/// stored document, and each partnership's materialized expenses must match that document.
async fn durability(
    database_url: &str,
    store: &dyn Store,
    confirmed: Vec<(PartnershipId, ChangeHash)>,
    concurrency: usize,
) -> Result<Vec<Row>> {
    let mut by_pid: HashMap<PartnershipId, Vec<ChangeHash>> = HashMap::new();
    for (pid, hash) in confirmed {
        by_pid.entry(pid).or_default().push(hash);
    }
    let total: usize = by_pid.values().map(Vec::len).sum();
    let partnerships = by_pid.len();
    let mut conn = sqlx::PgConnection::connect(database_url).await?;
    let rows: Vec<(Uuid, i64)> =
        sqlx::query_as("SELECT partnership_id, count(*) FROM expenses GROUP BY partnership_id")
            .fetch_all(&mut conn)
            .await?;
    conn.close().await?;
    let stored_rows: HashMap<Uuid, i64> = rows.into_iter().collect();
    let checks: Vec<Result<(usize, bool)>> = stream::iter(by_pid)
        .map(|(pid, hashes)| {
            let expected_rows = stored_rows.get(&pid.0).copied().unwrap_or(0);
            async move {
                let (snapshot, changes) = store.load_document(pid.0).await?;
                let mut doc = Automerge::load(&snapshot.unwrap_or_default())
                    .map_err(|e| LoadError::Doc(e.to_string()))?;
                let parsed: Vec<automerge::Change> = changes
                    .into_iter()
                    .filter_map(|b| automerge::Change::from_bytes(b).ok())
                    .collect();
                doc.apply_changes(parsed)
                    .map_err(|e| LoadError::Doc(e.to_string()))?;
                let missing = hashes
                    .iter()
                    .filter(|h| doc.get_change_meta_by_hash(h).is_none())
                    .count();
                let in_doc = splitsave_sync_core::document::read_document(&doc)
                    .map_err(|e| LoadError::Doc(e.to_string()))?
                    .expenses
                    .len();
                Ok((missing, in_doc as i64 == expected_rows))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let mut missing = 0;
    let mut row_mismatch = 0;
    for c in checks {
        let (m, rows_match) = c?;
        missing += m;
        if !rows_match {
            row_mismatch += 1;
        }
    }
    println!(
        "durability: {total} confirmed edits, {missing} missing from the stored documents; {row_mismatch} of {partnerships} partnerships' expense rows differ from their stored document"
    );
    Ok(vec![
        row(
            "confirmed edits in the stored document",
            format!("{} of {total}", total - missing),
            "all",
            Some(missing == 0),
        ),
        row(
            "materialized expenses = stored document",
            format!(
                "{} of {} partnerships",
                partnerships - row_mismatch,
                partnerships
            ),
            "all",
            Some(row_mismatch == 0),
        ),
    ])
}

fn fmt_opt(v: Option<u64>) -> String {
    v.map_or("?".into(), |v| v.to_string())
}

async fn throughput(
    args: &Args,
    env: &Environment,
    drivers: &HashMap<(PartnershipId, usize), Driver>,
    stats: &Arc<Stats>,
) -> Result<Vec<Row>> {
    println!(
        "throughput: {} clients edit as fast as acknowledgements return, {} s",
        drivers.len(),
        args.seconds
    );
    stats.acks_in_window.store(0, Ordering::Relaxed);
    stats
        .ack_rtt_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    let cpu = CpuMeter::start(env.server_pid);
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    for d in drivers.values() {
        let _ = d.cmds.send(Cmd::Flood { until }).await;
    }
    tokio::time::sleep_until(until.into()).await;
    let acks = stats.acks_in_window.load(Ordering::Relaxed);
    let cpu_report = cpu.report();
    let rate = acks as f64 / args.seconds as f64;
    let rtt = Percentiles::of(std::mem::take(
        &mut *stats.ack_rtt_us.lock().unwrap_or_else(|e| e.into_inner()),
    ));
    println!(
        "  {acks} durable merges acknowledged in {} s = {rate:.0} merges/s",
        args.seconds
    );
    if let Some(r) = &rtt {
        println!("  edit -> acknowledgement: {r}");
    }
    println!("  {cpu_report}");
    // Let the last edits in flight land before the next scenario.
    let drain = Instant::now() + DRAIN_TIMEOUT;
    let mut last = stats.acks_total.load(Ordering::Relaxed);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = stats.acks_total.load(Ordering::Relaxed);
        if now == last || Instant::now() > drain {
            break;
        }
        last = now;
    }
    Ok(vec![
        row(
            &format!("durable merges/s ({} clients)", drivers.len()),
            format!("{rate:.0}"),
            ">= 5,000",
            Some(rate >= 5000.0),
        ),
        row(
            "  edit -> ack under that load",
            rtt.map_or("-".into(), |r| {
                format!("p50 {:.1} ms, p99 {:.1} ms", r.p50, r.p99)
            }),
            "",
            None,
        ),
    ])
}

async fn latency(
    args: &Args,
    env: &Environment,
    pairs: &[Pair],
    drivers: &HashMap<(PartnershipId, usize), Driver>,
    stats: &Arc<Stats>,
) -> Result<Vec<Row>> {
    let rate = args.rate.max(1);
    println!(
        "latency: {rate} merges/s offered over {} partnerships for {} s (tokio interval; time from the scheduled edit to the partner having it)",
        pairs.len(),
        args.latency_seconds
    );
    stats
        .propagation_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    stats.delivered.store(0, Ordering::Relaxed);
    let cpu = CpuMeter::start(env.server_pid);
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = u64::from(rate) * args.latency_seconds;
    let mut skipped = 0u64;
    for i in 0..total {
        let scheduled = interval.tick().await.into_std();
        let idx = (i as usize) % pairs.len();
        let side = ((i as usize) / pairs.len()) % 2;
        let Some(d) = drivers.get(&(pairs[idx].pid, side)) else {
            continue;
        };
        if d.cmds.try_send(Cmd::Edit { scheduled }).is_err() {
            skipped += 1;
        }
    }
    let sent_at = Instant::now();
    let expected = total - skipped;
    let deadline = sent_at + DRAIN_TIMEOUT;
    while stats.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cpu_report = cpu.report();
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let p = Percentiles::of(std::mem::take(
        &mut *stats
            .propagation_us
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    ));
    println!("  delivered {delivered}/{expected} (lost {}, not offered because a client queue was full: {skipped})", expected.saturating_sub(delivered));
    if let Some(p) = &p {
        println!("  A edits -> B has it: {p}");
    }
    println!("  {cpu_report}");
    let (p50, p99, p999) = p
        .as_ref()
        .map_or((f64::NAN, f64::NAN, f64::NAN), |p| (p.p50, p.p99, p.p999));
    Ok(vec![
        row(
            &format!("propagation p99 at {rate}/s offered"),
            format!("{p99:.2} ms (p50 {p50:.2}, p99.9 {p999:.2})"),
            "<= 10 ms",
            Some(p99 <= 10.0),
        ),
        row(
            "  delivered / offered",
            format!("{delivered} / {expected}"),
            "all",
            Some(delivered == expected && skipped == 0),
        ),
    ])
}

async fn memory(
    args: &Args,
    env: &Environment,
    store: &dyn Store,
    pairs: &[Pair],
    hot: &[Pair],
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    if env.server_pid.is_none() {
        println!("memory: skipped (no server pid: start the server from the generator or pass --server-pid)");
        return Ok(rows);
    }
    // Idle connections: extra devices of the partnerships' users, attached and synced.
    let targets: Vec<(Pair, usize)> = (0..args.idle)
        .map(|i| (pairs[i % pairs.len()].clone(), (i / pairs.len()) % 2))
        .collect();
    let rss0 = env.rss_kib();
    let idle = open_many(&env.ws_base, targets, args.concurrency).await?;
    let rss1 = env.rss_kib();
    let per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if !idle.is_empty() => {
            Some((b.saturating_sub(a)) as f64 / idle.len() as f64)
        }
        _ => None,
    };
    println!(
        "memory: {} idle connections: server RSS {} -> {} KiB = {} KiB each",
        idle.len(),
        fmt_opt(rss0),
        fmt_opt(rss1),
        per_conn.map_or("?".into(), |v| format!("{v:.1}"))
    );
    rows.push(row(
        &format!("idle connection ({} attached)", idle.len()),
        per_conn.map_or("?".into(), |v| format!("{v:.1} KiB")),
        "<= 16 KiB",
        per_conn.map(|v| v <= 16.0),
    ));
    // Hot documents: each loaded by one attached, synced connection.
    let rss2 = env.rss_kib();
    let targets: Vec<(Pair, usize)> = hot.iter().map(|p| (p.clone(), 0)).collect();
    let hot_conns = open_many(&env.ws_base, targets, args.concurrency).await?;
    let rss3 = env.rss_kib();
    if let (Some(a), Some(b)) = (rss2, rss3) {
        if !hot_conns.is_empty() {
            let gross = b.saturating_sub(a) as f64 / hot_conns.len() as f64;
            let net = gross - per_conn.unwrap_or(0.0);
            println!(
                "memory: {} hot documents of {} items: server RSS {a} -> {b} KiB = {gross:.1} KiB each with its connection, {net:.1} KiB without",
                hot_conns.len(),
                args.hot_items
            );
            rows.push(row(
                &format!(
                    "hot {}-item document ({} loaded)",
                    args.hot_items,
                    hot_conns.len()
                ),
                format!("{net:.1} KiB ({gross:.1} with its connection)"),
                "<= 100 KiB",
                Some(net <= 100.0),
            ));
        }
    }
    if let Some(pair) = hot.first() {
        let (snapshot, changes) = store.load_document(pair.pid.0).await?;
        let bytes = snapshot.unwrap_or_default();
        let before = LIVE_BYTES.load(Ordering::Relaxed);
        let mut doc = Automerge::load(&bytes).map_err(|e| LoadError::Doc(e.to_string()))?;
        for c in changes {
            doc.load_incremental(&c)
                .map_err(|e| LoadError::Doc(e.to_string()))?;
        }
        let heap = LIVE_BYTES.load(Ordering::Relaxed).saturating_sub(before) as f64 / 1024.0;
        println!(
            "memory: one {}-item document loaded with automerge in this process: {heap:.1} KiB of heap ({:.1} KiB stored)",
            args.hot_items,
            bytes.len() as f64 / 1024.0
        );
        drop(doc);
    }
    if args.hold_seconds > 0 {
        println!(
            "memory: holding the connections open for {} s (server pid {})",
            args.hold_seconds,
            fmt_opt(env.server_pid.map(u64::from))
        );
        tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    }
    for (_, _, mut c) in idle.into_iter().chain(hot_conns) {
        let _ = c.sink.send(Message::Close(None)).await;
    }
    Ok(rows)
}

async fn cold_open(
    args: &Args,
    env: &Environment,
    store: &dyn Store,
    cold: &[Pair],
) -> Result<Vec<Row>> {
    if cold.is_empty() {
        return Ok(Vec::new());
    }
    let mut rows = Vec::new();
    automerge_costs(store, &cold[0]).await?;
    // Never loaded by this server process: the snapshot plus the changes stored after it, as
    // after a restart.
    let label = format!(
        "cold open, as after a restart ({} changes after the snapshot)",
        args.cold_tail.min(args.cold_items)
    );
    let restart = cold_round(env, cold, &label).await?;
    rows.push(row(
        "cold open p99, as after a restart",
        restart,
        "<= 20 ms",
        None,
    ));
    // The same documents once the server evicted them (eviction compacts: one snapshot).
    let ids: Vec<Uuid> = cold.iter().map(|p| p.pid.0).collect();
    let deadline = Instant::now() + Duration::from_secs(args.idle_eviction_secs + 20);
    let mut conn = sqlx::PgConnection::connect(&env.database_url).await?;
    let evicted = loop {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM doc_changes WHERE partnership_id = ANY($1)")
                .bind(&ids)
                .fetch_one(&mut conn)
                .await?;
        if left == 0 {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    conn.close().await?;
    if !evicted {
        println!("cold open after eviction: skipped (the documents were not evicted and compacted in time; is SYNC_IDLE_EVICTION_SECS small?)");
        return Ok(rows);
    }
    let label = "cold open after idle eviction (compacted: snapshot only)";
    let measured = cold_round(env, cold, label).await?;
    let pass = measured
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .map(|p99| p99 <= 20.0);
    rows.push(row(
        "cold open p99, after eviction",
        measured,
        "<= 20 ms",
        pass,
    ));
    Ok(rows)
}

/// What the server's share of a cold open costs in automerge alone, timed in this process on
/// one stored document: loading the snapshot, applying the changes stored after it, and saving
/// the whole document (what the first sync message to an empty client carries).
async fn automerge_costs(store: &dyn Store, pair: &Pair) -> Result<()> {
    let (snapshot, changes) = store.load_document(pair.pid.0).await?;
    let snapshot = snapshot.unwrap_or_default();
    let tail = changes.len();
    let t = Instant::now();
    let mut doc = Automerge::load(&snapshot).map_err(|e| LoadError::Doc(e.to_string()))?;
    let load = t.elapsed();
    let t = Instant::now();
    let parsed: Vec<automerge::Change> = changes
        .into_iter()
        .filter_map(|b| automerge::Change::from_bytes(b).ok())
        .collect();
    doc.apply_changes(parsed)
        .map_err(|e| LoadError::Doc(e.to_string()))?;
    let apply = t.elapsed();
    let t = Instant::now();
    let saved = doc.save();
    let save = t.elapsed();
    println!(
        "cold open, automerge alone on one stored document ({:.0} KiB snapshot): load {:.1} ms, apply the {tail} later changes {:.1} ms, save the whole document ({:.0} KiB) {:.1} ms",
        snapshot.len() as f64 / 1024.0,
        load.as_secs_f64() * 1000.0,
        apply.as_secs_f64() * 1000.0,
        saved.len() as f64 / 1024.0,
        save.as_secs_f64() * 1000.0
    );
    Ok(())
}

/// Opens each document once, one at a time. Two figures per document: from `request` until the
/// server's answer carrying the document arrives (the server's cold open: reading the snapshot
/// and later changes from PostgreSQL, loading them into Automerge, answering — what the target
/// is about), and until the client has loaded it too (adds this generator's own Automerge load
/// of the same document, on the same cores).
async fn cold_round(env: &Environment, cold: &[Pair], label: &str) -> Result<String> {
    let cpu = CpuMeter::start(env.server_pid);
    let mut answered = Vec::with_capacity(cold.len());
    let mut loaded = Vec::with_capacity(cold.len());
    for pair in cold {
        let deadline = Instant::now() + CONNECT_TIMEOUT;
        let mut c = Client::connect(
            &env.ws_base,
            &pair.tokens[0],
            pair.document_id(),
            pair.users[0],
        )
        .await?;
        let start = Instant::now();
        c.request().await?;
        // The server's first answer to a client with nothing carries the whole document.
        let first = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(remaining, c.next_wire())
                .await
                .map_err(|_| LoadError::Timeout("cold open"))??;
            if matches!(msg, WireMessage::Sync { .. } | WireMessage::Request { .. }) {
                break msg;
            }
        };
        answered.push(start.elapsed().as_micros() as u64);
        c.apply(first)?;
        c.flush().await?;
        let mut mine = c.doc.get_heads();
        mine.sort();
        let mut target = pair.heads.clone();
        target.sort();
        if mine != target {
            c.sync_until(Some(&pair.heads), deadline).await?;
        }
        loaded.push(start.elapsed().as_micros() as u64);
        let _ = c.sink.send(Message::Close(None)).await;
    }
    let server = Percentiles::of(answered);
    let client = Percentiles::of(loaded);
    if let (Some(s), Some(c)) = (&server, &client) {
        println!(
            "{label}, {} documents one at a time:\n  request -> the server's answer with the document: {s}\n  request -> the client has loaded it: {c}",
            cold.len()
        );
    }
    println!("  {}", cpu.report());
    Ok(match (server, client) {
        (Some(s), Some(c)) => format!(
            "{:.2} ms (p50 {:.2}); client loaded p99 {:.2} ms",
            s.p99, s.p50, c.p99
        ),
        _ => "-".into(),
    })
}

fn print_summary(command_line: &str, args: &Args, rows: &[Row]) {
    println!();
    println!("== splitsave-loadgen summary ==");
    println!("command: {command_line}");
    println!(
        "partnerships {} (x2 clients), throughput {} s, offered {} merges/s for {} s, idle {}, hot {} x {} items, cold {} x {} items, generator threads {}",
        args.partnerships,
        args.seconds,
        args.rate,
        args.latency_seconds,
        args.idle,
        args.hot,
        args.hot_items,
        args.cold,
        args.cold_items,
        args.threads
    );
    let w0 = rows
        .iter()
        .map(|r| r.figure.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let w1 = rows
        .iter()
        .map(|r| r.measured.len())
        .max()
        .unwrap_or(8)
        .max(8);
    let w2 = rows
        .iter()
        .map(|r| r.target.len())
        .max()
        .unwrap_or(6)
        .max(6);
    println!(
        "| {:w0$} | {:w1$} | {:w2$} | result |",
        "figure", "measured", "target"
    );
    println!(
        "|{}|{}|{}|--------|",
        "-".repeat(w0 + 2),
        "-".repeat(w1 + 2),
        "-".repeat(w2 + 2)
    );
    for r in rows {
        println!(
            "| {:w0$} | {:w1$} | {:w2$} | {:6} |",
            r.figure, r.measured, r.target, r.verdict
        );
    }
}
