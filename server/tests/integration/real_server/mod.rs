//! The real `splitsave` binary as a child process, for the sync tests that must see the process
//! from outside: kill it with SIGKILL and restart it on the same data, or read its memory from
//! `/proc/<pid>/status`.
//!
//! [`RealServer::start`] runs the binary on a free port with a temporary `SPLITSAVE_DATA_DIR`
//! (which also keeps the generated development JWT secrets, so tokens survive a restart) and a
//! fresh database (a SQLite file, or a new PostgreSQL database when `TEST_DATABASE_URL` is set),
//! waits for `/healthz`, and kills the child on drop. [`RealServer::register_couple`] registers
//! two users through REST and links them. The sync helpers connect the SDK's
//! [`SyncConnection`] and fetch the partnership document.
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use automerge::Automerge;
use serde_json::{json, Value};
use splitsave_client::connection::{DocSync, SyncConnection};
use splitsave_sync_core::ids::DocumentId;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::{Backend, TestDb};

const BINARY: &str = env!("CARGO_BIN_EXE_splitsave");

/// How long the binary may take to answer `/healthz` after it was started.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// How long a sync exchange in these tests may take.
pub const SYNC_DEADLINE: Duration = Duration::from_secs(20);

/// The password every registered user gets.
pub const PASSWORD: &str = "correct horse battery";

/// A running `splitsave` binary (or one that was killed and may be restarted).
pub struct RealServer {
    child: Option<Child>,
    /// The port it listens on.
    pub port: u16,
    /// The database and the data directory (kept across restarts; shared by the nodes of a
    /// cluster, [`RealServer::join`]).
    pub db: Arc<TestDb>,
    /// Names this node's log files (`server-<node>-<start>.log`).
    node: usize,
    /// Extra environment variables (e.g. `SYNC_*` limits).
    env: Vec<(String, String)>,
    starts: usize,
    http: reqwest::Client,
}

impl RealServer {
    /// Starts the binary on `backend` with the extra environment `env`; `None` (after printing
    /// why) when the backend is PostgreSQL and `TEST_DATABASE_URL` is unset.
    pub async fn start(backend: Backend, env: &[(&str, &str)]) -> Option<RealServer> {
        let db = TestDb::new(backend).await?;
        let mut server = RealServer {
            child: None,
            port: 0,
            db: Arc::new(db),
            node: 0,
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            starts: 0,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
        };
        server.launch().await;
        Some(server)
    }

    /// Starts another node on this one's database and data directory (so on its JWT secrets:
    /// a token from one node is good on every other), with the extra environment `env` and
    /// this node's own.
    pub async fn join(&self, env: &[(&str, &str)]) -> RealServer {
        let mut all = self.env.clone();
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut server = RealServer {
            child: None,
            port: 0,
            db: self.db.clone(),
            node: self.node + 1 + (Uuid::new_v4().as_u128() % 1_000_000) as usize,
            env: all,
            starts: 0,
            http: self.http.clone(),
        };
        server.launch().await;
        server
    }

    /// Spawns the binary on a free port and waits until `/healthz` answers. A port taken between
    /// choosing and binding makes the child exit: then another port is tried.
    async fn launch(&mut self) {
        self.launch_on(None).await;
    }

    /// Like [`Self::launch`], on `port` when given (a restart that clients must find again).
    async fn launch_on(&mut self, fixed_port: Option<u16>) {
        for _ in 0..3 {
            let port = fixed_port.unwrap_or_else(free_port);
            self.starts += 1;
            let log = self.log_path();
            let out = File::create(&log).expect("server log file");
            let err = out.try_clone().expect("server log file");
            let mut command = Command::new(BINARY);
            command
                .arg("serve")
                .env_clear()
                .current_dir(self.db.dir.path())
                .env("SPLITSAVE_DATA_DIR", self.db.dir.path())
                .env("DATABASE_URL", &self.db.url)
                .env("PORT", port.to_string())
                .env("RUST_LOG", "info,sqlx=warn,tower_http=warn")
                .stdin(Stdio::null())
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err));
            for (k, v) in &self.env {
                command.env(k, v);
            }
            let child = command.spawn().expect("spawn the splitsave binary");
            self.child = Some(child);
            self.port = port;
            if self.wait_healthy().await {
                return;
            }
            self.kill();
        }
        panic!("the server did not start; log:\n{}", self.log_tail());
    }

    /// Polls `/healthz` until it answers 200 (true) or the child exits (false); panics at the
    /// deadline.
    async fn wait_healthy(&mut self) -> bool {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(_status)) = child.try_wait() {
                    return false;
                }
            }
            if self.healthy().await {
                return true;
            }
            assert!(
                Instant::now() < deadline,
                "no /healthz within {START_DEADLINE:?}; log:\n{}",
                self.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether `/healthz` answers 200 now.
    pub async fn healthy(&self) -> bool {
        match self
            .http
            .get(self.url("/healthz"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(response) => response.status().is_success(),
            Err(_) => false,
        }
    }

    /// Kills the process with SIGKILL (`Child::kill` on Unix) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM and waits for the process to exit (panics after 30 s); how long it took
    /// and whether it exited successfully.
    pub fn terminate(&mut self) -> (Duration, bool) {
        let child = self.child.as_mut().expect("server running");
        let started = std::time::Instant::now();
        let sent = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                self.child = None;
                return (started.elapsed(), status.success());
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the server did not exit after SIGTERM; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the binary again on the same data directory and database (after [`Self::kill`]).
    pub async fn restart(&mut self) {
        self.kill();
        self.launch().await;
    }

    /// Starts the binary again on the same port, data directory and database (clients that
    /// reconnect by themselves find it where it was).
    pub async fn restart_on_same_port(&mut self) {
        self.kill();
        self.launch_on(Some(self.port)).await;
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("server running").id()
    }

    /// The child's resident set size in KiB (`VmRSS` in `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Whether the child is still running.
    pub fn running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn log_path(&self) -> PathBuf {
        self.db
            .dir
            .path()
            .join(format!("server-{}-{}.log", self.node, self.starts))
    }

    /// The last lines the current (or last) process logged, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The sync WebSocket URL with `token` in the query.
    pub fn ws_url(&self, token: &str) -> String {
        format!("ws://127.0.0.1:{}/sync?token={token}", self.port)
    }

    /// `GET path` as `token`: the status and the JSON body.
    pub async fn get_json(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(path, Some(token), None).await
    }

    /// `PUT path` with a JSON body as `token`: the status and the JSON body.
    pub async fn put_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let response = self
            .http
            .put(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `POST path` with a JSON body as `token`: the status and the JSON body.
    pub async fn post_json(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(path, Some(token), Some(body)).await
    }

    async fn call(&self, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = match &body {
            Some(_) => self.http.post(self.url(path)),
            None => self.http.get(self.url(path)),
        };
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Registers a user (currency USD); panics unless 201.
    pub async fn register(&self, email: &str, name: &str) -> User {
        let (status, body) = self
            .call(
                "/api/auth/register",
                None,
                Some(
                    json!({"email": email, "password": PASSWORD, "name": name, "currency": "USD"}),
                ),
            )
            .await;
        assert_eq!(status, 201, "register {email}: {body}");
        User {
            id: body["user"]["id"]
                .as_str()
                .expect("user id")
                .parse()
                .expect("uuid"),
            token: body["access_token"]
                .as_str()
                .expect("access token")
                .to_string(),
        }
    }

    /// Registers two users, links them (invitation + acceptance) and reads the partnership
    /// document's URL from `GET /api/partnerships/current`.
    pub async fn register_couple(&self) -> Couple {
        let tag = Uuid::new_v4().simple().to_string();
        let a = self
            .register(&format!("ann-{tag}@example.com"), "Ann")
            .await;
        let b = self
            .register(&format!("ben-{tag}@example.com"), "Ben")
            .await;
        let (status, invitation) = self
            .call(
                "/api/partnerships/invite",
                Some(&a.token),
                Some(json!({"email": format!("ben-{tag}@example.com")})),
            )
            .await;
        assert_eq!(status, 201, "invite: {invitation}");
        let id = invitation["id"]
            .as_str()
            .expect("invitation id")
            .to_string();
        let (status, body) = self
            .call(
                &format!("/api/partnerships/accept/{id}"),
                Some(&b.token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "accept: {body}");
        let (status, current) = self
            .call("/api/partnerships/current", Some(&a.token), None)
            .await;
        assert_eq!(status, 200, "current partnership: {current}");
        let document_url = current["document_url"]
            .as_str()
            .expect("document_url")
            .to_string();
        let document_id = DocumentId::parse(&document_url)
            .expect("document id")
            .to_string();
        Couple {
            a,
            b,
            partnership_id: id.parse().expect("uuid"),
            document_url,
            document_id,
        }
    }

    /// A new sync connection for `token` with a random peer id.
    pub async fn connect(&self, token: &str) -> SyncConnection {
        SyncConnection::connect(
            &self.ws_url(token),
            &format!("test-{}", Uuid::new_v4().simple()),
            None,
            Duration::from_secs(10),
        )
        .await
        .expect("sync connection")
    }

    /// Connects as `token` and syncs a fresh, empty document with the server's copy of
    /// `document_id` until settled: what a new device sees.
    pub async fn fetch_document(
        &self,
        token: &str,
        document_id: &str,
    ) -> (SyncConnection, DocSync, Automerge) {
        let mut conn = self.connect(token).await;
        let mut sync = DocSync::new(document_id);
        let mut doc = Automerge::new();
        sync.sync_until_settled(&mut conn, &mut doc, Instant::now() + SYNC_DEADLINE)
            .await
            .expect("sync the partnership document");
        (conn, sync, doc)
    }
}

impl Drop for RealServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A registered user.
#[derive(Clone, Debug)]
pub struct User {
    /// Their id.
    pub id: Uuid,
    /// A current access token.
    pub token: String,
}

/// Two linked users and their partnership document.
#[derive(Clone, Debug)]
pub struct Couple {
    /// The inviter.
    pub a: User,
    /// The invitee.
    pub b: User,
    /// The partnership.
    pub partnership_id: Uuid,
    /// `automerge:<id>`, as `GET /api/partnerships/current` gives it.
    pub document_url: String,
    /// The bare document id the protocol carries.
    pub document_id: String,
}

/// A port that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Adds an expense to `doc` as `user` through sync-core's operation (as the SDK does offline):
/// active at or under the approval threshold, `pending_approval` with a request above it.
pub fn add_expense(
    doc: &mut Automerge,
    user: Uuid,
    id: Uuid,
    name: &str,
    amount: i64,
) -> splitsave_sync_core::ops::Outcome {
    use splitsave_sync_core::enums::{Category, Frequency};
    use splitsave_sync_core::ids::{EntityId, UserId};
    use splitsave_sync_core::money::MinorUnits;
    use splitsave_sync_core::ops::{self, Ctx, NewExpense};
    use splitsave_sync_core::time::Millis;

    let ctx = Ctx {
        user: UserId(user),
        now: Millis::now(),
    };
    let input = NewExpense {
        name: name.to_string(),
        amount: MinorUnits(amount),
        category: Category::Groceries,
        frequency: Frequency::Monthly,
    };
    doc.transact(|tx| ops::add_expense_with_id(tx, &ctx, EntityId(id), &input))
        .expect("add expense")
        .result
}

/// The expense `id` in `doc`, if present.
pub fn expense(doc: &Automerge, id: Uuid) -> Option<splitsave_sync_core::schema::Expense> {
    splitsave_sync_core::read::read_expense(doc, &id.to_string()).expect("well-formed expense")
}

/// PostgreSQL when `TEST_DATABASE_URL` is set, SQLite otherwise: for tests whose subject is not
/// the database.
pub fn default_backend() -> Backend {
    if std::env::var("TEST_DATABASE_URL").is_ok_and(|u| !u.trim().is_empty()) {
        Backend::Postgres
    } else {
        Backend::Sqlite
    }
}
