//! `splitsave-loadgen`: drives a release `splitsave` server on PostgreSQL over real WebSockets
//! (the automerge-repo protocol, Automerge sync, sync-core operations) and prints the figures
//! the sync layer is held to: durable merges per second, partner-to-partner propagation latency
//! at a fixed offered load, server memory per idle connection and per hot document, and the
//! cold-open time of a large document. `--export-memory` measures something else: the server's
//! memory while it streams `GET /api/export` of a 20,000-entry couple (`export_memory`).
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

mod compare;
mod export_memory;
mod metrics;
mod nginx;
mod push;
mod redis_probe;
mod sessions;

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

/// How the clients reach the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Front {
    /// nginx with more than one node (and with --compare-nodes), direct otherwise.
    Auto,
    /// Through nginx: deploy/nginx.conf with one upstream and one listen port per node.
    Nginx,
    /// Straight to each node's port.
    Direct,
}

/// Which node each client connects to when there are several.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Placement {
    /// A couple's first partner on node 1, the second on node 2: every edit crosses nodes.
    Partners,
    /// Both partners of a couple on one node, the couples spread over the nodes: no edit
    /// crosses nodes (the common case in production, where nginx balances connections).
    Couples,
}

impl Placement {
    /// The node (index into `nodes`) of partner `user` of `pair`.
    fn node(self, pair: &Pair, user: usize, nodes: usize) -> usize {
        match self {
            Placement::Partners => user % nodes.max(1),
            Placement::Couples => pair.index % nodes.max(1),
        }
    }
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
    /// Length of the latency scenario, seconds [default: 20; 30 with --compare-nodes or
    /// --compare-push].
    #[arg(long)]
    latency_seconds: Option<u64>,
    /// Unrecorded edits at --rate before the latency scenario measures, seconds (database
    /// connections opened, documents warm) [default: 0; 3 with --compare-nodes or
    /// --compare-push].
    #[arg(long)]
    latency_warmup_seconds: Option<u64>,
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
    /// Server processes ("nodes") started on the run's one database, telling each other their
    /// commits over Redis (--redis-url). By default (--placement partners) each couple's first
    /// partner connects to node 1 and the second to node 2, so with N >= 2 every propagation the
    /// latency scenario measures crosses nodes. The memory and cold scenarios use node 1 only.
    #[arg(long, default_value_t = 1)]
    nodes: usize,
    /// Redis for the nodes (their REDIS_URL; every run gets a REDIS_PREFIX of its own). Given to
    /// the nodes with --nodes >= 2 and with --compare-nodes (its single node too, so both
    /// sessions run the same configuration); a lone node otherwise runs without it. Without it
    /// several nodes learn of each other's commits by polling (CLUSTER_POLL_MS, 1 s).
    #[arg(long, env = "TEST_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// How clients reach the nodes: through nginx (deploy/nginx.conf with one upstream and one
    /// listen port per node, so each client stays on its node), or directly.
    #[arg(long, value_enum, default_value_t = Front::Auto)]
    front: Front,
    /// With several nodes, which node each client goes to.
    #[arg(long, value_enum, default_value_t = Placement::Partners)]
    placement: Placement,
    /// An extra environment variable for every started node, KEY=VALUE (repeatable), e.g.
    /// PRESENCE_TTL_SECS=3600 to see what the presence heartbeats cost.
    #[arg(long, value_name = "KEY=VALUE")]
    node_env: Vec<String>,
    /// The nginx binary for --front nginx.
    #[arg(long, default_value = "/usr/sbin/nginx")]
    nginx_bin: PathBuf,
    /// In one run, measure one node and then two (a fresh database each, the same front): the
    /// latency scenario at --rate and the throughput scenario, then a table of single-node vs
    /// cross-node figures and their ratios. Ignores --scenarios and --nodes.
    #[arg(long)]
    compare_nodes: bool,
    /// In one run, measure the latency scenario with push notifications off and on, alternating
    /// (off, on, off, on, ...: --push-rounds pairs, a fresh database each), beside the same
    /// background of messages to offline partners (--push-couples, --push-rate) in every
    /// session, then time the sender draining --drain-rows outbox rows in each push-on session;
    /// a table of the sessions' figures and the on/off ratio of propagation p99. The nodes run
    /// with SPLITSAVE_ENV=development in every session (production refuses loopback push
    /// endpoints, and the push service stand-in is on loopback). Ignores --scenarios and --nodes.
    #[arg(long, conflicts_with = "compare_nodes")]
    compare_push: bool,
    /// With --compare-push: how many off/on pairs of sessions.
    #[arg(long, default_value_t = 2)]
    push_rounds: usize,
    /// With --compare-push: extra couples whose first partner sends messages while the second
    /// is offline (a registered Web Push device, no connection), so a push-on node queues and
    /// sends a notification per message.
    #[arg(long, default_value_t = 50)]
    push_couples: usize,
    /// With --compare-push: messages per second over those couples, in every session (from
    /// before the latency warm-up until the latency scenario ends).
    #[arg(long, default_value_t = 50)]
    push_rate: u32,
    /// With --compare-push: notifications written straight into the outbox in each push-on
    /// session after the latency scenario, to time the sender emptying it (0: skip).
    #[arg(long, default_value_t = 20_000)]
    drain_rows: usize,
    /// In one run, measure with the Prometheus metrics off and on, alternating (off, on, off,
    /// on, ...: --metrics-rounds pairs, a fresh database and node each; on = the node gets
    /// METRICS_ADDR on a free loopback port and is scraped once a second): the throughput
    /// scenario (durable merges/s, server CPU per merge), then a REST load (--rest-clients,
    /// --rest-seconds, --rest-post-every: req/s, server CPU per request); a table of the
    /// sessions' figures and the on/off ratios against the 5 % target. Ignores --scenarios and
    /// --nodes.
    #[arg(long, conflicts_with_all = ["compare_nodes", "compare_push"])]
    compare_metrics: bool,
    /// With --compare-metrics: how many off/on pairs of sessions.
    #[arg(long, default_value_t = 2)]
    metrics_rounds: usize,
    /// With --compare-metrics: concurrent REST clients, each a user of the partnerships (one
    /// request at a time, keep-alive connections).
    #[arg(long, default_value_t = 32)]
    rest_clients: usize,
    /// With --compare-metrics: length of the measured REST load, seconds (after 2 s unrecorded).
    #[arg(long, default_value_t = 15)]
    rest_seconds: u64,
    /// With --compare-metrics: every k-th request of a REST client is a POST /api/expenses; the
    /// others alternate GET /api/expenses and GET /api/partnerships/current.
    #[arg(long, default_value_t = 10)]
    rest_post_every: u64,
    /// Measure the server's memory while it streams `GET /api/export` (json, csv, automerge) of
    /// a couple of --export-entries rows, on each of --export-backends (a fresh server each,
    /// EXPORT_RATE_LIMIT raised): VmRSS before, its peak during each download (sampled, and the
    /// kernel's VmHWM reset before it), the growth against --export-budget-mib, the body's size,
    /// its time and the server's CPU time, and whether the body holds exactly the couple's rows.
    /// Ignores --scenarios and --nodes.
    #[arg(long, conflicts_with_all = ["compare_nodes", "compare_push", "compare_metrics"])]
    export_memory: bool,
    /// With --export-memory: rows of the measured couple (expenses, goals, goal contributions,
    /// months, approval requests and messages).
    #[arg(long, default_value_t = 20_000)]
    export_entries: usize,
    /// With --export-memory: rows of the second couple, whose ids must not be in the first's
    /// export.
    #[arg(long, default_value_t = 2_000)]
    export_other_entries: usize,
    /// With --export-memory: the databases to run the server on, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "postgres,sqlite")]
    export_backends: Vec<export_memory::Backend>,
    /// With --export-memory: after the downloads at full speed, download each format again
    /// reading this many KiB a second (0: skip).
    #[arg(long, default_value_t = 1024)]
    export_slow_kib: u64,
    /// With --export-memory: how often the server's VmRSS is sampled during a download, ms.
    #[arg(long, default_value_t = 2)]
    export_sample_ms: u64,
    /// With --export-memory: the most the server's RSS may grow during one export, MiB.
    #[arg(long, default_value_t = 32)]
    export_budget_mib: u64,
}

impl Args {
    /// Whether this run compares sessions (their figures need a longer, warmed-up window).
    fn comparing(&self) -> bool {
        self.compare_nodes || self.compare_push || self.compare_metrics
    }

    fn latency_secs(&self) -> u64 {
        self.latency_seconds
            .unwrap_or(if self.comparing() { 30 } else { 20 })
    }

    fn latency_warmup_secs(&self) -> u64 {
        self.latency_warmup_seconds
            .unwrap_or(if self.comparing() { 3 } else { 0 })
    }

    /// Whether the clients go through nginx with `nodes` nodes.
    fn via_nginx(&self, nodes: usize) -> bool {
        match self.front {
            Front::Nginx => true,
            Front::Direct => false,
            Front::Auto => nodes > 1 || self.compare_nodes,
        }
    }

    /// The Redis the nodes get with `nodes` nodes.
    fn nodes_redis(&self, nodes: usize) -> Option<&str> {
        (nodes > 1 || self.compare_nodes)
            .then_some(self.redis_url.as_deref())
            .flatten()
    }
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

/// The database and server(s) of one run, torn down at the end unless `--keep`.
struct Environment {
    /// Node 1, directly (readiness, REST).
    http_base: String,
    /// Node 1 as the clients reach it (through nginx or directly).
    ws_base: String,
    /// Every node as the clients reach it (which client goes to which: `--placement`).
    ws_bases: Vec<String>,
    database_url: String,
    keys: TokenKeys,
    servers: Vec<Child>,
    /// Node 1's process id (memory figures).
    server_pid: Option<u32>,
    /// Every node's process id (CPU figures).
    server_pids: Vec<u32>,
    nginx: Option<nginx::Nginx>,
    /// The nodes' REDIS_URL and REDIS_PREFIX, when they have one.
    redis: Option<(String, String)>,
    /// Database to drop at the end: (admin URL, name).
    created_db: Option<(String, String)>,
    data_dir: Option<PathBuf>,
}

impl Environment {
    /// A fresh database and `nodes` servers on it (or the server at `--url`); `extra_env` is
    /// set for every node after the generator's own settings and before `--node-env`.
    async fn prepare(args: &Args, nodes: usize, extra_env: &[(String, String)]) -> Result<Self> {
        let Some(db) = args.database_url.clone() else {
            return Err(LoadError::Usage(
                "set --database-url or TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)".into(),
            ));
        };
        if nodes == 0 {
            return Err(LoadError::Usage("--nodes must be at least 1".into()));
        }
        if let Some(url) = &args.url {
            if nodes > 1 || args.comparing() {
                return Err(LoadError::Usage(
                    "--url drives one running server: --nodes > 1, --compare-nodes, --compare-push and --compare-metrics start their own".into(),
                ));
            }
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
            let ws = ws_of(&base);
            return Ok(Self {
                ws_bases: vec![ws.clone()],
                ws_base: ws,
                http_base: base,
                database_url: db,
                keys,
                servers: Vec::new(),
                server_pid: args.server_pid,
                server_pids: args.server_pid.into_iter().collect(),
                nginx: None,
                redis: None,
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
            created_db: Some((db, name)),
            ..Self::blank(database_url)
        };
        if let Err(err) = env.start_servers(args, nodes, extra_env).await {
            env.teardown(args.keep).await;
            return Err(err);
        }
        Ok(env)
    }

    /// An environment on `database_url` with nothing started yet.
    fn blank(database_url: String) -> Self {
        Self {
            http_base: String::new(),
            ws_base: String::new(),
            ws_bases: Vec::new(),
            database_url,
            keys: TokenKeys::from_secrets(b"placeholder", b"placeholder"),
            servers: Vec::new(),
            server_pid: None,
            server_pids: Vec::new(),
            nginx: None,
            redis: None,
            created_db: None,
            data_dir: None,
        }
    }

    /// One node on an embedded SQLite file of its own (`sqlite://<data dir>/splitsave.db`,
    /// removed with the data directory at the end unless `--keep`).
    async fn prepare_sqlite(args: &Args, extra_env: &[(String, String)]) -> Result<Self> {
        let data_dir = new_data_dir()?;
        let database_url = format!("sqlite://{}", data_dir.join("splitsave.db").display());
        let mut env = Self {
            data_dir: Some(data_dir),
            ..Self::blank(database_url)
        };
        if let Err(err) = env.start_servers(args, 1, extra_env).await {
            env.teardown(args.keep).await;
            return Err(err);
        }
        Ok(env)
    }

    async fn start_servers(
        &mut self,
        args: &Args,
        nodes: usize,
        extra_env: &[(String, String)],
    ) -> Result<()> {
        // Applies the migrations before the server starts, like a deployment's migration job.
        drop(splitsave_server::store::connect(&self.database_url).await?);
        let bin = server_bin(args)?;
        let data_dir = match &self.data_dir {
            Some(dir) => dir.clone(),
            None => {
                let dir = new_data_dir()?;
                self.data_dir = Some(dir.clone());
                dir
            }
        };
        // One pair of secrets for every node: a token issued by one is checked by the others.
        let jwt_secret = hex::encode(rand::random::<[u8; 32]>());
        let refresh_secret = hex::encode(rand::random::<[u8; 32]>());
        self.keys = TokenKeys::from_secrets(jwt_secret.as_bytes(), refresh_secret.as_bytes());
        self.redis = args.nodes_redis(nodes).map(|url| {
            let prefix = format!(
                "splitsave-loadgen-{}-{:08x}:",
                std::process::id(),
                rand::random::<u32>()
            );
            (url.to_string(), prefix)
        });
        if nodes > 1 && self.redis.is_none() {
            println!(
                "warning: {nodes} nodes without Redis (--redis-url / TEST_REDIS_URL): they learn of each other's commits by polling"
            );
        }
        let mut ports = Vec::with_capacity(nodes);
        for k in 0..nodes {
            let port = free_port()?;
            let node_dir = data_dir.join(format!("node{}", k + 1));
            std::fs::create_dir_all(&node_dir).map_err(|e| LoadError::Server(e.to_string()))?;
            let log_name = if nodes == 1 {
                "server.log".to_string()
            } else {
                format!("server{}.log", k + 1)
            };
            let log = std::fs::File::create(data_dir.join(log_name))
                .map_err(|e| LoadError::Server(e.to_string()))?;
            let log_err = log
                .try_clone()
                .map_err(|e| LoadError::Server(e.to_string()))?;
            let mut cmd = Command::new(&bin);
            cmd.arg("serve")
                .env("SPLITSAVE_ENV", "production")
                .env("RUST_LOG", "warn")
                .env("PORT", port.to_string())
                .env("SPLITSAVE_DATA_DIR", &node_dir)
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
                .env_remove("REDIS_URL")
                .env_remove("REDIS_PREFIX")
                // Metrics are the generator's choice (--compare-metrics, --node-env), never
                // inherited from the shell it runs in.
                .env_remove("METRICS_ADDR");
            if let Some((url, prefix)) = &self.redis {
                cmd.env("REDIS_URL", url).env("REDIS_PREFIX", prefix);
            }
            cmd.envs(extra_env.iter().map(|(k, v)| (k, v)));
            for kv in &args.node_env {
                let Some((key, value)) = kv.split_once('=') else {
                    return Err(LoadError::Usage(format!(
                        "--node-env {kv:?}: expected KEY=VALUE"
                    )));
                };
                cmd.env(key, value);
            }
            if args.via_nginx(nodes) {
                // nginx's address: its X-Forwarded-For is believed (deploy/nginx.conf).
                cmd.env("TRUSTED_PROXIES", "127.0.0.1");
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::from(log))
                .stderr(Stdio::from(log_err))
                .spawn()
                .map_err(|e| LoadError::Server(format!("cannot start {}: {e}", bin.display())))?;
            self.server_pids.push(child.id());
            self.servers.push(child);
            ports.push(port);
        }
        self.server_pid = self.server_pids.first().copied();
        self.http_base = format!("http://127.0.0.1:{}", ports[0]);
        for (k, port) in ports.iter().enumerate() {
            self.wait_ready(k, &format!("http://127.0.0.1:{port}"))
                .await?;
        }
        let bases: Vec<String> = if args.via_nginx(nodes) {
            let fronts: Vec<(u16, u16)> = ports
                .iter()
                .map(|&p| free_port().map(|f| (f, p)))
                .collect::<Result<_>>()?;
            let nginx = nginx::Nginx::start(&args.nginx_bin, &data_dir.join("nginx"), &fronts)
                .map_err(LoadError::Server)?;
            self.nginx = Some(nginx);
            let bases: Vec<String> = fronts
                .iter()
                .map(|(f, _)| format!("http://127.0.0.1:{f}"))
                .collect();
            // Every node answers through its front.
            for (k, b) in bases.iter().enumerate() {
                self.wait_ready(k, b).await?;
            }
            bases
        } else {
            ports
                .iter()
                .map(|p| format!("http://127.0.0.1:{p}"))
                .collect()
        };
        self.ws_bases = bases.iter().map(|b| ws_of(b)).collect();
        self.ws_base = self.ws_bases[0].clone();
        Ok(())
    }

    /// Polls `{base}/readyz` until it answers 200, with a deadline; node `k` must stay up.
    async fn wait_ready(&mut self, k: usize, base: &str) -> Result<()> {
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("{base}/readyz");
        loop {
            if let Some(child) = self.servers.get_mut(k) {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(LoadError::Server(format!(
                        "node {} exited with {status} (see its log)",
                        k + 1
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

    /// What the run's clients reach: one line.
    fn describe(&self) -> String {
        let nodes = self.server_pids.len().max(1);
        let front = if self.nginx.is_some() {
            "through nginx"
        } else {
            "directly"
        };
        let pids: Vec<String> = self.server_pids.iter().map(u32::to_string).collect();
        format!(
            "{nodes} node(s) (pid {}), clients {front}: {}; redis {}",
            if pids.is_empty() {
                "unknown".to_string()
            } else {
                pids.join(", ")
            },
            self.ws_bases.join(", "),
            self.redis
                .as_ref()
                .map_or("none".to_string(), |(_, prefix)| format!("prefix {prefix}"))
        )
    }

    async fn teardown(&mut self, keep: bool) {
        if let Some(mut nginx) = self.nginx.take() {
            nginx.stop();
        }
        for mut child in self.servers.drain(..) {
            let _ = child.kill();
            let _ = child.wait();
        }
        if keep {
            if let Some((_, name)) = &self.created_db {
                println!("kept database {name}");
            }
            if let Some(dir) = &self.data_dir {
                println!("kept server log(s) and nginx files in {}", dir.display());
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

/// A new directory for a run's node(s): their data, logs and nginx files.
fn new_data_dir() -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "splitsave-loadgen-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| LoadError::Server(e.to_string()))?;
    Ok(dir)
}

/// The server binary to start: `--server-bin`, or `splitsave` beside this binary.
fn server_bin(args: &Args) -> Result<PathBuf> {
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
    Ok(bin)
}

/// A port free on loopback right now.
fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| LoadError::Server(e.to_string()))
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
    stat_cpu_secs(&path)
}

/// CPU seconds (user + system) from a `stat` file of /proc: a process's, or one thread's
/// (`/proc/self/task/<tid>/stat`).
fn stat_cpu_secs(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// CPU seconds of a process's children that ended and were waited for (a PostgreSQL backend
/// that exited, in its postmaster's figure).
fn reaped_cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let cutime: f64 = fields.get(13)?.parse().ok()?;
    let cstime: f64 = fields.get(14)?.parse().ok()?;
    Some((cutime + cstime) / 100.0)
}

/// CPU seconds of every `postgres` process on the machine, the backends that already exited
/// included (the database is shared, so this includes anyone else's queries). Without the
/// exited ones a window in which connections close (a node replacing a failed merge
/// connection, say) could even come out negative.
fn postgres_cpu_secs() -> f64 {
    named_cpu_secs("postgres")
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

/// CPU seconds of every process named `name` on the machine, with their children that ended.
fn named_cpu_secs(name: &str) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == name)
        })
        .filter_map(|pid| Some(cpu_secs(Some(pid))? + reaped_cpu_secs(pid).unwrap_or(0.0)))
        .sum()
}

/// CPU seconds of a process and its children (nginx: the master and its workers).
fn tree_cpu_secs(root: u32) -> Option<f64> {
    let own = cpu_secs(Some(root))?;
    let dir = std::fs::read_dir("/proc").ok()?;
    let children: f64 = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
                stat.rfind(')')
                    .and_then(|i| stat.get(i + 2..))
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|ppid| ppid.parse::<u32>().ok())
                    == Some(root)
            })
        })
        .filter_map(|pid| cpu_secs(Some(pid)))
        .sum();
    Some(own + children)
}

/// CPU seconds of all the given processes; `None` when any cannot be read (or there is none).
fn sum_cpu_secs(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| cpu_secs(Some(*p))).sum()
}

/// CPU used over a measured window, in cores (CPU seconds per wall second).
#[derive(Clone, Copy, Debug, Default)]
struct CpuUse {
    wall: f64,
    /// Every node together.
    servers: Option<f64>,
    generator: Option<f64>,
    postgres: f64,
    nginx: Option<f64>,
    /// Every `redis-server` on the machine.
    redis: Option<f64>,
    /// Busy share of all cores (0..1).
    machine: Option<f64>,
    /// Cores busy with anything not counted above (other people's builds, the kernel's own
    /// work): the machine's busy cores minus the processes above.
    others: Option<f64>,
}

impl CpuUse {
    /// Server CPU per merge, milliseconds (all nodes together).
    fn server_ms_per(&self, merges: u64) -> Option<f64> {
        (merges > 0).then_some(())?;
        Some(self.servers? * self.wall / merges as f64 * 1000.0)
    }
}

/// CPU use over a scenario: the node(s), generator, PostgreSQL, nginx, Redis and the whole
/// machine.
struct CpuMeter {
    server_pids: Vec<u32>,
    nginx_pid: Option<u32>,
    redis_on: bool,
    server: Option<f64>,
    me: Option<f64>,
    postgres: f64,
    nginx: Option<f64>,
    redis: f64,
    machine: Option<(u64, u64)>,
    start: Instant,
}

impl CpuMeter {
    fn start(env: &Environment) -> Self {
        let nginx_pid = env.nginx.as_ref().map(nginx::Nginx::pid);
        Self {
            server_pids: env.server_pids.clone(),
            nginx_pid,
            redis_on: env.redis.is_some(),
            server: sum_cpu_secs(&env.server_pids),
            me: cpu_secs(None),
            postgres: postgres_cpu_secs(),
            nginx: nginx_pid.and_then(tree_cpu_secs),
            redis: named_cpu_secs("redis-server"),
            machine: machine_jiffies(),
            start: Instant::now(),
        }
    }

    fn measure(&self) -> CpuUse {
        let wall = self.start.elapsed().as_secs_f64().max(1e-9);
        let rate = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / wall);
        let redis = (named_cpu_secs("redis-server") - self.redis) / wall;
        let mut u = CpuUse {
            wall,
            servers: rate(self.server, sum_cpu_secs(&self.server_pids)),
            generator: rate(self.me, cpu_secs(None)),
            postgres: (postgres_cpu_secs() - self.postgres) / wall,
            nginx: rate(self.nginx, self.nginx_pid.and_then(tree_cpu_secs)),
            redis: self.redis_on.then_some(redis),
            machine: match (self.machine, machine_jiffies()) {
                (Some((b0, t0)), Some((b1, t1))) => {
                    Some((b1 - b0) as f64 / (t1 - t0).max(1) as f64)
                }
                _ => None,
            },
            others: None,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        u.others = u.machine.map(|m| {
            let known = u.servers.unwrap_or(0.0)
                + u.generator.unwrap_or(0.0)
                + u.postgres
                + u.nginx.unwrap_or(0.0)
                + redis;
            (m * cores - known).max(0.0)
        });
        u
    }

    fn report(&self) -> String {
        cpu_line(&self.measure(), self.server_pids.len())
    }
}

fn cpu_line(u: &CpuUse, nodes: usize) -> String {
    let mut parts = Vec::new();
    if let Some(s) = u.servers {
        if nodes > 1 {
            parts.push(format!("servers ({nodes} nodes) {:.0}%", s * 100.0));
        } else {
            parts.push(format!("server {:.0}%", s * 100.0));
        }
    }
    if let Some(g) = u.generator {
        parts.push(format!("generator {:.0}%", g * 100.0));
    }
    parts.push(format!("postgres {:.0}%", u.postgres * 100.0));
    if let Some(n) = u.nginx {
        parts.push(format!("nginx {:.0}%", n * 100.0));
    }
    if let Some(r) = u.redis {
        parts.push(format!("redis {:.0}%", r * 100.0));
    }
    if let Some(m) = u.machine {
        parts.push(format!("machine {:.0}% of all cores", m * 100.0));
    }
    if let Some(o) = u.others {
        parts.push(format!("everything else {:.0}%", o * 100.0));
    }
    format!("CPU (100% = one core): {}", parts.join(", "))
}

// ---- setup through the store --------------------------------------------------------------------

/// One partnership of the run and its two users' access tokens.
#[derive(Clone)]
struct Pair {
    /// Its number among the partnerships of its kind.
    index: usize,
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
                    avatar_url: None,
                    personal_allowance: None,
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
            index: i,
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

/// Sends one message to the partner as `user` through sync-core (the operation apps use): a
/// merge that notifies the partner when the partner is not watching.
fn send_message(doc: &mut Automerge, user: UserId, n: usize) -> Result<ChangeHash> {
    let ctx = Ctx {
        user,
        now: Millis::now(),
    };
    let text = format!("load message {n}");
    match doc.transact(|tx| ops::send_message(tx, &ctx, &text)) {
        Ok(success) => success
            .hash
            .ok_or_else(|| LoadError::Doc("the message wrote nothing".into())),
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

    fn message(&mut self) -> Result<ChangeHash> {
        self.edits += 1;
        send_message(&mut self.doc, self.user, self.edits)
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
    /// Send the partner a message now (not timed: the background of `--compare-push`).
    Message,
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
    /// (document, scheduled, partner has it) of every delivered edit while `timeline` is set.
    deliveries: Mutex<Vec<(PartnershipId, Instant, Instant)>>,
    /// (document, scheduled, the author saw it acknowledged) of offered edits while `timeline`
    /// is set.
    ack_times: Mutex<Vec<(PartnershipId, Instant, Instant)>>,
    timeline: std::sync::atomic::AtomicBool,
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

    /// Prints `{label}: N (first: ...)` when the clients had errors.
    fn print_errors(&self, label: &str) {
        let errors = self.errors.load(Ordering::Relaxed);
        if errors > 0 {
            let first = self
                .first_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            println!("{label}: {errors} (first: {})", first.unwrap_or_default());
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
    // Offered edits whose acknowledgement is timed (while `stats.timeline` is set).
    let mut awaiting_ack: Vec<(ChangeHash, Instant)> = Vec::new();
    loop {
        tokio::select! {
            cmd = cmds.recv() => match cmd {
                None => return Ok(()),
                Some(Cmd::Edit { scheduled }) => {
                    let hash = client.edit()?;
                    pair.pending.lock().unwrap_or_else(|e| e.into_inner()).insert(hash, scheduled);
                    if stats.timeline.load(Ordering::Relaxed) {
                        awaiting_ack.push((hash, scheduled));
                    }
                    client.flush().await?;
                }
                Some(Cmd::Message) => {
                    client.message()?;
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
                if !awaiting_ack.is_empty() {
                    let now = Instant::now();
                    awaiting_ack.retain(|(hash, scheduled)| {
                        if !client.server_has(&server_heads, hash) {
                            return true;
                        }
                        stats.ack_times.lock().unwrap_or_else(|e| e.into_inner())
                            .push((pair.pid, *scheduled, now));
                        false
                    });
                }
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
            if stats.timeline.load(Ordering::Relaxed) {
                stats
                    .deliveries
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((pair.pid, scheduled, now));
            }
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

/// Opens many clients concurrently; fails on the first error. Each goes to the node of
/// `ws_bases` that `placement` gives it.
async fn open_many(
    ws_bases: &[String],
    placement: Placement,
    targets: Vec<(Pair, usize)>,
    concurrency: usize,
) -> Result<Vec<(Pair, usize, Client)>> {
    let results: Vec<Result<(Pair, usize, Client)>> = stream::iter(targets)
        .map(|(pair, user)| async move {
            let ws_base = &ws_bases[placement.node(&pair, user, ws_bases.len())];
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
#[derive(Clone, Copy, Debug)]
struct Percentiles {
    n: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

impl Percentiles {
    fn of(v: Vec<u64>) -> Option<Self> {
        Self::of_signed(v.into_iter().map(|x| x as i64).collect())
    }

    /// Of a sample that may hold negative values (a difference of two clocks' events).
    fn of_signed(mut v: Vec<i64>) -> Option<Self> {
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
    let scenarios: Vec<Scenario> = if args.comparing() {
        vec![Scenario::Latency, Scenario::Throughput]
    } else {
        args.scenarios.clone()
    };
    if args.partnerships == 0
        && scenarios.iter().any(|s| {
            matches!(
                s,
                Scenario::Throughput | Scenario::Latency | Scenario::Memory
            )
        })
    {
        return Err(LoadError::Usage("--partnerships must be at least 1".into()));
    }
    if args.compare_nodes && args.redis_url.is_none() {
        return Err(LoadError::Usage(
            "--compare-nodes needs --redis-url or TEST_REDIS_URL (the nodes' REDIS_URL)".into(),
        ));
    }
    let command_line = std::env::args().collect::<Vec<_>>().join(" ");
    println!("command: {command_line}");
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    if args.export_memory {
        return export_memory::run(&args, &command_line, deadline).await;
    }
    if args.compare_push {
        return push::compare(&args, &command_line, deadline).await;
    }
    if args.compare_metrics {
        return metrics::compare(&args, &command_line, deadline).await;
    }
    if !args.compare_nodes {
        let session = session(&args, args.nodes, &scenarios, deadline).await?;
        print_summary(&command_line, &args, &session);
        return Ok(());
    }
    let mut sessions = Vec::with_capacity(2);
    for nodes in [1, 2] {
        println!();
        println!("=== session {}: {nodes} node(s) ===", sessions.len() + 1);
        let session = session(&args, nodes, &scenarios, deadline).await?;
        print_summary(&command_line, &args, &session);
        sessions.push(session);
    }
    compare::print(&command_line, &args, &sessions[0], &sessions[1]);
    Ok(())
}

/// One environment (fresh database, `nodes` nodes), the scenarios, and the teardown.
async fn session(
    args: &Args,
    nodes: usize,
    scenarios: &[Scenario],
    deadline: Instant,
) -> Result<compare::Session> {
    let ((rows, latency, throughput), _) =
        sessions::in_fresh_env(args, nodes, &[], deadline, async |env| {
            run_scenarios(args, env, scenarios).await
        })
        .await?;
    Ok(compare::Session {
        // A server at --url is one node.
        nodes: if args.url.is_some() { 1 } else { nodes.max(1) },
        front: if args.via_nginx(nodes) && args.url.is_none() {
            "nginx"
        } else {
            "direct"
        },
        rows,
        latency,
        throughput,
    })
}

/// The 1, 5 and 15 minute load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
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

type Figures = (
    Vec<Row>,
    Option<compare::LatencyFigures>,
    Option<compare::ThroughputFigures>,
);

async fn run_scenarios(args: &Args, env: &Environment, scenarios: &[Scenario]) -> Result<Figures> {
    let t0 = Instant::now();
    println!(
        "server {}, database {}",
        env.describe(),
        env.database_url.rsplit('/').next().unwrap_or("")
    );
    // The generator's own ear on the nodes' cluster channel (where the time goes).
    let notices = Arc::new(redis_probe::Notices::default());
    let redis_addr = match &env.redis {
        Some((url, _)) => Some(redis_probe::RedisAddr::parse(url).map_err(LoadError::Usage)?),
        None => None,
    };
    let listener = match (&redis_addr, &env.redis) {
        (Some(addr), Some((_, prefix))) => Some(tokio::spawn(redis_probe::subscribe(
            addr.clone(),
            format!("{prefix}cluster"),
            notices.clone(),
        ))),
        _ => None,
    };
    let (store, setup) = new_setup(env).await?;
    let wants = |s: Scenario| scenarios.contains(&s);
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
    let stats = Arc::new(Stats::default());
    let drivers = start_drivers(args, env, &pairs, &[0, 1], &stats).await?;

    let mut rows = Vec::new();
    let mut latency_figures = None;
    let mut throughput_figures = None;
    for scenario in scenarios {
        match scenario {
            Scenario::Memory => rows.extend(memory(args, env, &*store, &pairs, &hot).await?),
            Scenario::Cold => rows.extend(cold_open(args, env, &*store, &cold).await?),
            Scenario::Latency => {
                let probes = Probes {
                    store: store.clone(),
                    redis: redis_addr.clone(),
                    notices: listener.is_some().then(|| notices.clone()),
                    extra_merges: None,
                };
                let (r, f) = latency(args, env, &pairs, &drivers, &stats, &probes).await?;
                rows.extend(r);
                latency_figures = Some(f);
            }
            Scenario::Throughput => {
                let (r, f) = throughput(args, env, &drivers, &stats).await?;
                rows.extend(r);
                throughput_figures = Some(f);
            }
        }
    }
    if let Some(task) = listener {
        task.abort();
    }
    stats.print_errors("client errors");

    finish_drivers(&drivers).await;
    if !pairs.is_empty() && (wants(Scenario::Throughput) || wants(Scenario::Latency)) {
        let confirmed =
            std::mem::take(&mut *stats.confirmed.lock().unwrap_or_else(|e| e.into_inner()));
        rows.extend(durability(&env.database_url, &*store, confirmed, args.concurrency).await?);
    }
    println!("total run time {:.1} s", t0.elapsed().as_secs_f64());
    Ok((rows, latency_figures, throughput_figures))
}

/// The store on the run's database and the setup that writes accounts and partnerships
/// through it.
async fn new_setup(env: &Environment) -> Result<(Arc<dyn Store>, Arc<Setup>)> {
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
    Ok((store, setup))
}

/// Connects and syncs a client for each of `sides` (0: the first partner, 1: the second) of
/// every partnership, each on its node (`--placement`), and starts its task.
async fn start_drivers(
    args: &Args,
    env: &Environment,
    pairs: &[Pair],
    sides: &[usize],
    stats: &Arc<Stats>,
) -> Result<HashMap<(PartnershipId, usize), Driver>> {
    let step = Instant::now();
    let rss_before_clients = env.rss_kib();
    let targets: Vec<(Pair, usize)> = pairs
        .iter()
        .flat_map(|p| sides.iter().map(|&side| (p.clone(), side)))
        .collect();
    let opened = open_many(&env.ws_bases, args.placement, targets, args.concurrency).await?;
    println!(
        "connected {} clients in {:.1} s (server RSS {} -> {} KiB)",
        opened.len(),
        step.elapsed().as_secs_f64(),
        fmt_opt(rss_before_clients),
        fmt_opt(env.rss_kib())
    );
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
    Ok(drivers)
}

/// Stops the clients once nothing they sent is in flight (or [`DRAIN_TIMEOUT`] passed).
async fn finish_drivers(drivers: &HashMap<(PartnershipId, usize), Driver>) {
    for d in drivers.values() {
        let (tx, rx) = oneshot::channel();
        if d.cmds.send(Cmd::Finish { done: tx }).await.is_ok() {
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, rx).await;
        }
    }
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

/// PostgreSQL's committed and rolled-back transactions in the run's database so far (the
/// statistics lag by up to a second or so; a stale merge commit on a node that missed another
/// node's commit is a rollback).
async fn pg_xacts(database_url: &str) -> Option<(i64, i64)> {
    let read = async {
        let mut conn = sqlx::PgConnection::connect(database_url).await?;
        let row: (i64, i64) = sqlx::query_as(
            "SELECT xact_commit, xact_rollback FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(&mut conn)
        .await?;
        conn.close().await?;
        Ok::<_, sqlx::Error>(row)
    };
    read.await.ok()
}

fn xacts_delta(before: Option<(i64, i64)>, after: Option<(i64, i64)>) -> Option<(i64, i64)> {
    let (b, a) = (before?, after?);
    Some((a.0 - b.0, a.1 - b.1))
}

async fn throughput(
    args: &Args,
    env: &Environment,
    drivers: &HashMap<(PartnershipId, usize), Driver>,
    stats: &Arc<Stats>,
) -> Result<(Vec<Row>, compare::ThroughputFigures)> {
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
    let xacts_before = pg_xacts(&env.database_url).await;
    let cpu = CpuMeter::start(env);
    let start = Instant::now();
    let until = start + Duration::from_secs(args.seconds);
    for d in drivers.values() {
        let _ = d.cmds.send(Cmd::Flood { until }).await;
    }
    tokio::time::sleep_until(until.into()).await;
    let acks = stats.acks_in_window.load(Ordering::Relaxed);
    let cpu_use = cpu.measure();
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
    println!("  {}", cpu_line(&cpu_use, env.server_pids.len()));
    let per_merge = cpu_use.server_ms_per(acks);
    if let Some(ms) = per_merge {
        println!("  server CPU per durable merge (all nodes): {ms:.3} ms");
    }
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
    let xacts = xacts_delta(xacts_before, pg_xacts(&env.database_url).await);
    if let Some((commits, rollbacks)) = xacts {
        println!(
            "  PostgreSQL transactions in the run's database over the flood: {commits} committed, {rollbacks} rolled back"
        );
    }
    let figures = compare::ThroughputFigures {
        rate,
        rtt,
        cpu: cpu_use,
        server_ms_per_merge: per_merge,
        xacts,
    };
    Ok((
        vec![
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
            row(
                "  server CPU per merge (all nodes)",
                per_merge.map_or("-".into(), |ms| format!("{ms:.3} ms")),
                "",
                None,
            ),
        ],
        figures,
    ))
}

/// What the latency scenario measures besides the clients: the generator's own Redis
/// subscription and probes of Redis and PostgreSQL under the same load.
struct Probes {
    store: Arc<dyn Store>,
    redis: Option<redis_probe::RedisAddr>,
    notices: Option<Arc<redis_probe::Notices>>,
    /// Merges made by something else running beside the scenario (a background load), counted
    /// as they are offered: the CPU figures then cover them too.
    extra_merges: Option<Arc<AtomicU64>>,
}

/// Offers `rate` edits per second for `seconds`, partners alternating, edit `first` onwards;
/// returns (offered, not offered because a client's queue was full, how late the generator
/// was for each edit in microseconds: its own scheduling lag).
async fn offer(
    rate: u32,
    seconds: u64,
    first: u64,
    pairs: &[Pair],
    drivers: &HashMap<(PartnershipId, usize), Driver>,
) -> (u64, u64, Vec<u64>) {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let total = u64::from(rate) * seconds;
    let mut skipped = 0u64;
    let mut lag = Vec::with_capacity(total as usize);
    for i in first..first + total {
        let scheduled = interval.tick().await.into_std();
        lag.push(scheduled.elapsed().as_micros() as u64);
        let idx = (i as usize) % pairs.len();
        let side = ((i as usize) / pairs.len()) % 2;
        let Some(d) = drivers.get(&(pairs[idx].pid, side)) else {
            continue;
        };
        if d.cmds.try_send(Cmd::Edit { scheduled }).is_err() {
            skipped += 1;
        }
    }
    (total, skipped, lag)
}

/// Waits until `expected` edits were delivered (or [`DRAIN_TIMEOUT`] passed).
async fn await_delivered(stats: &Stats, expected: u64) {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    while stats.delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Times `PING` on its own connection every `every` until `stop`; microseconds.
async fn ping_probe(
    addr: redis_probe::RedisAddr,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u64> {
    let mut out = Vec::new();
    let Ok(mut pinger) = redis_probe::Pinger::connect(&addr).await else {
        return out;
    };
    let mut tick = tokio::time::interval(every);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        match pinger.ping().await {
            Ok(d) => out.push(d.as_micros() as u64),
            Err(_) => break,
        }
    }
    out
}

/// Every `every` until `stop`, times the read a node makes to catch up with another node's
/// commit (`Store::document_tail` after the document's second-to-last stored change, so it
/// reads one change, as a catch-up after one merge does) on the next of `pids`; microseconds.
async fn catch_up_probe(
    store: Arc<dyn Store>,
    pids: Vec<Uuid>,
    every: Duration,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<u64> {
    let mut out = Vec::new();
    let mut tick = tokio::time::interval(every);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) && !pids.is_empty() {
        tick.tick().await;
        let pid = pids[i % pids.len()];
        i += 1;
        let Ok(stored) = store.stored_document(pid).await else {
            continue;
        };
        let (Some((snapshot_id, _)), Some(last)) = (stored.snapshot, stored.changes.last()) else {
            continue;
        };
        let start = Instant::now();
        if store
            .document_tail(pid, snapshot_id, last.id - 1)
            .await
            .is_ok()
        {
            out.push(start.elapsed().as_micros() as u64);
        }
    }
    out
}

/// Bursts of presence notices: every live document repeats its local users' presence every
/// PRESENCE_TTL_SECS / 4 (5 s by default), all at once. Clusters of at least 10 notices less
/// than 200 ms apart: (first heard, last heard, notices).
fn presence_bursts(mut at: Vec<Instant>) -> Vec<(Instant, Instant, usize)> {
    at.sort();
    let gap = Duration::from_millis(200);
    let mut out = Vec::new();
    let mut i = 0;
    while i < at.len() {
        let mut j = i;
        while j + 1 < at.len() && at[j + 1].duration_since(at[j]) < gap {
            j += 1;
        }
        if j + 1 - i >= 10 {
            out.push((at[i], at[j], j + 1 - i));
        }
        i = j + 1;
    }
    out
}

/// Propagation of the edits scheduled during a presence burst (from 100 ms before its first
/// notice was heard until 50 ms after its last) and of the others.
fn burst_figures(
    bursts: Vec<(Instant, Instant, usize)>,
    deliveries: &[(PartnershipId, Instant, Instant)],
    phase: Duration,
) -> compare::BurstFigures {
    let windows: Vec<(Instant, Instant)> = bursts
        .iter()
        .map(|(first, last, _)| {
            (
                first
                    .checked_sub(Duration::from_millis(100))
                    .unwrap_or(*first),
                *last + Duration::from_millis(50),
            )
        })
        .collect();
    let (mut during, mut outside) = (Vec::new(), Vec::new());
    for (_, scheduled, delivered) in deliveries {
        let us = delivered.duration_since(*scheduled).as_micros() as u64;
        if windows
            .iter()
            .any(|(a, b)| scheduled >= a && scheduled <= b)
        {
            during.push(us);
        } else {
            outside.push(us);
        }
    }
    let count = bursts.len();
    let covered: f64 = windows
        .iter()
        .map(|(a, b)| b.duration_since(*a).as_secs_f64())
        .sum();
    compare::BurstFigures {
        count,
        mean_notices: bursts.iter().map(|b| b.2 as f64).sum::<f64>() / count.max(1) as f64,
        mean_ms: bursts
            .iter()
            .map(|(a, b, _)| b.duration_since(*a).as_secs_f64() * 1000.0)
            .sum::<f64>()
            / count.max(1) as f64,
        share: covered / phase.as_secs_f64().max(1e-9),
        during: Percentiles::of(during),
        outside: Percentiles::of(outside),
    }
}

/// Each delivered edit's propagation cut where the generator saw the author's
/// acknowledgement and heard the committing node's notice on Redis, in microseconds.
#[derive(Default)]
struct NoticeSplit {
    /// Scheduled -> notice heard.
    to_notice: Vec<i64>,
    /// Author acknowledged -> notice heard (the publisher's queue and Redis).
    ack_to_notice: Vec<i64>,
    /// Notice heard -> partner has it (negative: the partner had it first).
    after_notice: Vec<i64>,
    /// Documents matched, of those with deliveries.
    matched: usize,
    docs: usize,
}

fn signed_us(from: Instant, to: Instant) -> i64 {
    if to >= from {
        to.duration_since(from).as_micros() as i64
    } else {
        -(from.duration_since(to).as_micros() as i64)
    }
}

/// Matches each document's delivered edits with the commit notices heard for it: a document is
/// matched when it has as many notices as delivered edits, each notice no earlier than its
/// edit (one commit per edit, in order); the others are left out.
fn split_at_notices(
    deliveries: &[(PartnershipId, Instant, Instant)],
    mut notices: HashMap<Uuid, Vec<Instant>>,
    acked: &HashMap<(PartnershipId, Instant), Instant>,
) -> NoticeSplit {
    let mut by_pid: HashMap<Uuid, Vec<(Instant, Instant)>> = HashMap::new();
    for (pid, scheduled, delivered) in deliveries {
        by_pid
            .entry(pid.0)
            .or_default()
            .push((*scheduled, *delivered));
    }
    let mut out = NoticeSplit {
        docs: by_pid.len(),
        ..NoticeSplit::default()
    };
    for (pid, mut edits) in by_pid {
        let Some(mut heard) = notices.remove(&pid) else {
            continue;
        };
        if heard.len() != edits.len() {
            continue;
        }
        edits.sort();
        heard.sort();
        if edits.iter().zip(&heard).any(|((s, _), n)| n < s) {
            continue;
        }
        out.matched += 1;
        for ((scheduled, delivered), notice) in edits.iter().zip(&heard) {
            out.to_notice.push(signed_us(*scheduled, *notice));
            out.after_notice.push(signed_us(*notice, *delivered));
            if let Some(ack) = acked.get(&(PartnershipId(pid), *scheduled)) {
                out.ack_to_notice.push(signed_us(*ack, *notice));
            }
        }
    }
    out
}

async fn latency(
    args: &Args,
    env: &Environment,
    pairs: &[Pair],
    drivers: &HashMap<(PartnershipId, usize), Driver>,
    stats: &Arc<Stats>,
    probes: &Probes,
) -> Result<(Vec<Row>, compare::LatencyFigures)> {
    let rate = args.rate.max(1);
    let seconds = args.latency_secs();
    let warmup = args.latency_warmup_secs();
    let nodes = env.server_pids.len().max(1);
    println!(
        "latency: {rate} merges/s offered over {} partnerships for {seconds} s (tokio interval; time from the scheduled edit to the partner having it){}",
        pairs.len(),
        match (nodes > 1, args.placement) {
            (false, _) => String::new(),
            (true, Placement::Partners) => format!("; partners on different nodes ({nodes})"),
            (true, Placement::Couples) => {
                format!("; each couple on one node, couples spread over {nodes}")
            }
        }
    );
    let mut first = 0;
    if warmup > 0 {
        stats.delivered.store(0, Ordering::Relaxed);
        let (total, skipped, _) = offer(rate, warmup, 0, pairs, drivers).await;
        await_delivered(stats, total - skipped).await;
        // Notices of the warm-up's last commits must not land in the measured window.
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!(
            "  warm-up: {warmup} s at the same rate, {} of {total} delivered (not recorded)",
            stats.delivered.load(Ordering::Relaxed)
        );
        first = total;
    }
    stats
        .propagation_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    stats
        .deliveries
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    stats
        .ack_times
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clear();
    stats.delivered.store(0, Ordering::Relaxed);
    stats.timeline.store(true, Ordering::Relaxed);
    if let Some(n) = &probes.notices {
        n.arm();
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let every = Duration::from_millis(50);
    let pinger = probes
        .redis
        .clone()
        .map(|addr| tokio::spawn(ping_probe(addr, every, stop.clone())));
    // Both probes run whenever the nodes have Redis, so a one-node and a two-node session
    // carry the same extra load.
    let reader = probes.redis.is_some().then(|| {
        tokio::spawn(catch_up_probe(
            probes.store.clone(),
            pairs.iter().map(|p| p.pid.0).collect(),
            every,
            stop.clone(),
        ))
    });
    let xacts_before = pg_xacts(&env.database_url).await;
    let extra_count = || {
        probes
            .extra_merges
            .as_ref()
            .map(|c| c.load(Ordering::Relaxed))
    };
    let cpu = CpuMeter::start(env);
    let extra_before = extra_count();
    let phase = Instant::now();
    let (total, skipped, lag) = offer(rate, seconds, first, pairs, drivers).await;
    let phase = phase.elapsed();
    let generator_lag = Percentiles::of(lag);
    let expected = total - skipped;
    await_delivered(stats, expected).await;
    let cpu_use = cpu.measure();
    let background_merges = extra_count()
        .zip(extra_before)
        .map(|(after, before)| after - before);
    stop.store(true, Ordering::Relaxed);
    stats.timeline.store(false, Ordering::Relaxed);
    let heard = probes
        .notices
        .as_ref()
        .map(|n| (n.subscribed(), n.heard(), n.disarm()));
    let xacts = xacts_delta(xacts_before, pg_xacts(&env.database_url).await);
    let ping = match pinger {
        Some(task) => Percentiles::of(task.await.unwrap_or_default()),
        None => None,
    };
    let catch_up_read = match reader {
        Some(task) => Percentiles::of(task.await.unwrap_or_default()),
        None => None,
    };
    let delivered = stats.delivered.load(Ordering::Relaxed);
    let p = Percentiles::of(std::mem::take(
        &mut *stats
            .propagation_us
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    ));
    let deliveries =
        std::mem::take(&mut *stats.deliveries.lock().unwrap_or_else(|e| e.into_inner()));
    let acked: HashMap<(PartnershipId, Instant), Instant> =
        std::mem::take(&mut *stats.ack_times.lock().unwrap_or_else(|e| e.into_inner()))
            .into_iter()
            .map(|(pid, scheduled, at)| ((pid, scheduled), at))
            .collect();
    let to_ack = Percentiles::of(
        deliveries
            .iter()
            .filter_map(|(pid, s, _)| acked.get(&(*pid, *s)).map(|a| a.duration_since(*s)))
            .map(|d| d.as_micros() as u64)
            .collect(),
    );
    println!("  delivered {delivered}/{expected} (lost {}, not offered because a client queue was full: {skipped})", expected.saturating_sub(delivered));
    if let Some(p) = &p {
        println!("  A edits -> B has it: {p}");
    }
    if let Some(a) = &to_ack {
        println!("  A edits -> A has the acknowledgement (the merge committed on A's node): {a}");
    }
    println!("  {}", cpu_line(&cpu_use, nodes));
    let per_merge = cpu_use.server_ms_per(delivered);
    if let Some(ms) = per_merge {
        println!("  server CPU per delivered merge (all nodes): {ms:.3} ms");
    }
    if let Some((commits, rollbacks)) = xacts {
        println!(
            "  PostgreSQL transactions in the run's database: {commits} committed, {rollbacks} rolled back"
        );
    }
    if let Some(l) = &generator_lag {
        println!("  generator's own lateness at each scheduled edit (its event loop on the shared cores): {l}");
    }
    let mut split = None;
    let mut bursts = None;
    if let Some((subscribed, count, (notices, presence))) = heard {
        let b = burst_figures(presence_bursts(presence), &deliveries, phase);
        if b.count == 0 {
            println!("  presence heartbeat bursts heard on Redis: none");
        } else {
            println!(
            "  presence heartbeat bursts heard on Redis: {} of {:.0} notices on average, {:.0} ms long; {:.1}% of the time",
            b.count,
            b.mean_notices,
            b.mean_ms,
            b.share * 100.0
        );
        }
        if let Some(d) = &b.during {
            println!("    edits scheduled during a burst: {d}");
        }
        if let Some(o) = &b.outside {
            println!("    edits scheduled outside the bursts: {o}");
        }
        bursts = Some(b);
        let cut = split_at_notices(&deliveries, notices, &acked);
        let (matched, docs) = (cut.matched, cut.docs);
        let a = Percentiles::of_signed(cut.to_notice);
        let b = Percentiles::of_signed(cut.after_notice);
        let c = Percentiles::of_signed(cut.ack_to_notice);
        println!(
            "  the generator's Redis subscription ({}): {count} commit notices heard; {matched} of {docs} documents matched one notice per edit",
            if subscribed { "up" } else { "down" }
        );
        if let (Some(a), Some(b)) = (&a, &b) {
            println!("    edit scheduled -> commit notice heard (commit on the author's node, publish, Redis): {a}");
            if let Some(c) = &c {
                println!("    author acknowledged -> commit notice heard (the node's publisher queue, Redis): {c}");
            }
            println!("    commit notice heard -> partner has it: {b}");
        }
        split = Some((a, b, c, matched, docs));
    }
    if let Some(r) = &ping {
        println!("  Redis PING round trip from the generator, every 50 ms: {r}");
    }
    if let Some(r) = &catch_up_read {
        println!("  catch-up read (Store::document_tail of one change) from the generator, every 50 ms: {r}");
    }
    let (p50, p99, p999) = p
        .as_ref()
        .map_or((f64::NAN, f64::NAN, f64::NAN), |p| (p.p50, p.p99, p.p999));
    let mut rows = vec![
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
        row(
            "  server CPU per merge (all nodes)",
            per_merge.map_or("-".into(), |ms| format!("{ms:.3} ms")),
            "",
            None,
        ),
    ];
    if let Some((Some(a), Some(b), _, _, _)) = &split {
        rows.push(row(
            "  scheduled -> commit notice heard",
            format!("p50 {:.2} ms, p99 {:.2} ms", a.p50, a.p99),
            "",
            None,
        ));
        rows.push(row(
            "  commit notice heard -> partner has it",
            format!("p50 {:.2} ms, p99 {:.2} ms", b.p50, b.p99),
            "",
            None,
        ));
    }
    let figures = compare::LatencyFigures {
        rate,
        propagation: p,
        delivered,
        expected,
        skipped,
        cpu: cpu_use,
        server_ms_per_merge: per_merge,
        xacts,
        to_ack,
        to_notice: split.as_ref().and_then(|s| s.0),
        after_notice: split.as_ref().and_then(|s| s.1),
        ack_to_notice: split.as_ref().and_then(|s| s.2),
        matched_docs: split.as_ref().map(|s| (s.3, s.4)),
        redis_ping: ping,
        catch_up_read,
        generator_lag,
        bursts,
        background_merges,
    };
    Ok((rows, figures))
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
    let idle = open_many(
        std::slice::from_ref(&env.ws_base),
        Placement::Partners,
        targets,
        args.concurrency,
    )
    .await?;
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
    let hot_conns = open_many(
        std::slice::from_ref(&env.ws_base),
        Placement::Partners,
        targets,
        args.concurrency,
    )
    .await?;
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
    let cpu = CpuMeter::start(env);
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

fn print_summary(command_line: &str, args: &Args, session: &compare::Session) {
    let rows = &session.rows;
    println!();
    println!("== splitsave-loadgen summary ==");
    println!("command: {command_line}");
    println!(
        "partnerships {} (x2 clients), throughput {} s, offered {} merges/s for {} s, idle {}, hot {} x {} items, cold {} x {} items, generator threads {}, nodes {} ({})",
        args.partnerships,
        args.seconds,
        args.rate,
        args.latency_secs(),
        args.idle,
        args.hot,
        args.hot_items,
        args.cold,
        args.cold_items,
        args.threads,
        session.nodes,
        session.front
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
