//! Test support shared by the server's behaviour tests: a fresh database per test (a SQLite file
//! in a temporary directory, or a new PostgreSQL database created through `TEST_DATABASE_URL`),
//! and [`TestApp`], the real router served on `127.0.0.1:0` with a [`MemoryMailer`].
//!
//! Not every test file uses every helper.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_server::app::{router, AppState};
use splitsave_server::config::Config;
use splitsave_server::notify::mail::MemoryMailer;
use splitsave_server::store::{self, Store};
use tempfile::TempDir;
use uuid::Uuid;

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in a temporary directory.
    Sqlite,
    /// A new database on the server named by `TEST_DATABASE_URL`.
    Postgres,
}

/// A fresh, empty database (migrations not yet applied) that disappears with the value.
pub struct TestDb {
    /// URL to connect to.
    pub url: String,
    /// Temporary directory (the SQLite file, or a data directory for PostgreSQL tests).
    pub dir: TempDir,
    /// For PostgreSQL: (admin URL, database name) to drop on drop.
    postgres: Option<(String, String)>,
}

const SKIP_MESSAGE: &str = "skipped: TEST_DATABASE_URL not set";

impl TestDb {
    /// A fresh database of the given kind; `None` (after printing why) when PostgreSQL is asked
    /// for and `TEST_DATABASE_URL` is unset.
    pub async fn new(backend: Backend) -> Option<TestDb> {
        match backend {
            Backend::Sqlite => Some(Self::sqlite()),
            Backend::Postgres => Self::postgres().await,
        }
    }

    /// A SQLite file in a new temporary directory.
    pub fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temporary directory");
        let url = format!("sqlite://{}", dir.path().join("test.db").display());
        TestDb {
            url,
            dir,
            postgres: None,
        }
    }

    /// A new database `splitsave_t_<uuid>` on the `TEST_DATABASE_URL` server.
    pub async fn postgres() -> Option<TestDb> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            eprintln!("{SKIP_MESSAGE}");
            return None;
        };
        let name = format!("splitsave_t_{}", Uuid::new_v4().simple());
        let admin = sqlx::PgPool::connect(&admin_url)
            .await
            .expect("connect to TEST_DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&admin)
            .await
            .expect("create test database");
        admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(TestDb {
            url,
            dir: tempfile::tempdir().expect("temporary directory"),
            postgres: Some((admin_url, name)),
        })
    }

    /// Opens the store on this database (applying migrations).
    pub async fn store(&self) -> Arc<dyn Store> {
        store::connect(&self.url).await.expect("open store")
    }
}

/// `admin_url` with its database name replaced by `name` (query string kept).
pub fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let path_start = base[scheme_end..].find('/').map(|i| i + scheme_end);
    let host_part = match path_start {
        Some(i) => &base[..i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin_url, name)) = self.postgres.take() else {
            return;
        };
        // Dropping runs outside any async context guarantee: use a private runtime on a thread.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(admin) = sqlx::PgPool::connect(&admin_url).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&admin)
                        .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

/// A signed-in user of a [`TestApp`].
#[derive(Clone, Debug)]
pub struct Session {
    /// The user's id.
    pub user_id: Uuid,
    /// Their email.
    pub email: String,
    /// Their password.
    pub password: String,
    /// A current access token.
    pub access_token: String,
    /// A current refresh token.
    pub refresh_token: String,
}

/// The real application on a random local port.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// A plain client (no cookies, no redirects).
    pub client: reqwest::Client,
    /// Mails the app sent.
    pub mailer: MemoryMailer,
    /// The state the router runs with (store access for assertions).
    pub state: AppState,
    /// The database (kept alive for the app's lifetime).
    pub db: TestDb,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The password every helper-registered user gets.
pub const PASSWORD: &str = "correct horse battery";

impl TestApp {
    /// Spawns the app on the given backend with the test configuration; `None` when the backend
    /// is unavailable (PostgreSQL without `TEST_DATABASE_URL`).
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], with a chance to change the configuration first.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let db = TestDb::new(backend).await?;
        let mut config = Config::for_tests(db.dir.path(), db.url.clone());
        tweak(&mut config);
        let mailer = MemoryMailer::new();
        let store = db.store().await;
        let state =
            AppState::with_parts(config, store, Arc::new(mailer.clone())).expect("app state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("local address");
        let app = router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Some(TestApp {
            base_url: format!("http://{addr}"),
            client,
            mailer,
            state,
            db,
            server,
        })
    }

    /// Absolute URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// Sends a request with an optional bearer token and JSON body; returns status and JSON body
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// `GET path`.
    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    /// `POST path` with a JSON body.
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body))
            .await
    }

    /// `PUT path` with a JSON body.
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(reqwest::Method::PUT, path, token, Some(body))
            .await
    }

    /// `DELETE path` with an optional JSON body.
    pub async fn delete(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(reqwest::Method::DELETE, path, token, body).await
    }

    /// Registers `email` with [`PASSWORD`], name `name` and currency USD; panics unless 201.
    pub async fn register(&self, email: &str, name: &str) -> Session {
        self.register_with(
            json!({"email": email, "password": PASSWORD, "name": name, "currency": "USD"}),
        )
        .await
    }

    /// Registers with a full body (must include `email` and `password`); panics unless 201.
    pub async fn register_with(&self, body: Value) -> Session {
        let email = body["email"].as_str().expect("email").to_string();
        let password = body["password"].as_str().expect("password").to_string();
        let (status, session) = self.post("/api/auth/register", None, body).await;
        assert_eq!(status, StatusCode::CREATED, "register {email}: {session}");
        session_from(&session, &email, &password)
    }

    /// Logs in; panics unless 200.
    pub async fn login(&self, email: &str, password: &str) -> Session {
        let (status, session) = self
            .post(
                "/api/auth/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "login {email}: {session}");
        session_from(&session, email, password)
    }

    /// Registers two users, `inviter` invites `invitee`, who accepts; returns both sessions and
    /// the partnership id.
    pub async fn register_couple(&self, inviter: &str, invitee: &str) -> (Session, Session, Uuid) {
        let a = self.register(inviter, "Ann").await;
        let b = self.register(invitee, "Ben").await;
        let (status, invitation) = self
            .post(
                "/api/partnerships/invite",
                Some(&a.access_token),
                json!({"email": invitee}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{invitation}");
        let id: Uuid = invitation["id"]
            .as_str()
            .expect("id")
            .parse()
            .expect("uuid");
        let (status, body) = self
            .post(
                &format!("/api/partnerships/accept/{id}"),
                Some(&b.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (a, b, id)
    }
}

/// A raw answer: status, headers and body bytes (for answers that are not JSON, such as the
/// data export's files).
pub struct RawResponse {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: reqwest::header::HeaderMap,
    /// The whole body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// A header's value as text (empty when absent).
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    }

    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {}",
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)])
            )
        })
    }
}

impl TestApp {
    /// `GET path` with an optional bearer token, the answer as it came.
    pub async fn get_raw(&self, path: &str, token: Option<&str>) -> RawResponse {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("request");
        RawResponse {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.bytes().await.expect("body").to_vec(),
        }
    }

    /// Every item of a paged list endpoint (`{items, next_cursor}`), following the cursors.
    /// `path` may carry a query already.
    pub async fn list_all(&self, path: &str, token: &str) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        let join = if path.contains('?') { '&' } else { '?' };
        loop {
            let url = match &cursor {
                None => format!("{path}{join}limit=100"),
                Some(c) => format!("{path}{join}limit=100&cursor={c}"),
            };
            let (status, page) = self.get(&url, Some(token)).await;
            assert_eq!(status, StatusCode::OK, "GET {url}: {page}");
            items.extend(page["items"].as_array().expect("items").iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return items,
            }
        }
    }

    /// [`TestApp::register_couple`], then gives the couple some of everything a partnership
    /// holds, through the REST API: incomes (so the split is by income), expenses (one added
    /// directly, one approved over the threshold, one declined, one archived, with a comma,
    /// quotes and a non-ASCII letter in a name), a goal approved and contributed to by both, an
    /// edit request left pending, messages (one with a newline and quotes) and this month's
    /// contribution with Ben's share paid. Returns both sessions and the partnership id.
    pub async fn furnish_couple(&self, inviter: &str, invitee: &str) -> (Session, Session, Uuid) {
        let (ann, ben, pid) = self.register_couple(inviter, invitee).await;
        let (a, b) = (
            Some(ann.access_token.as_str()),
            Some(ben.access_token.as_str()),
        );
        for (token, income) in [(a, "3000.00"), (b, "1500.00")] {
            let (status, body) = self
                .put("/api/users/update-income", token, json!({"income": income}))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let expense = |name: &str, amount: &str| json!({"name": name, "amount": amount, "category": "utilities", "frequency": "monthly"});
        let (status, body) = self
            .post(
                "/api/expenses",
                a,
                expense("Internet, \"fibre\" – Zürich", "39.90"),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let (status, rent) = self
            .post("/api/expenses", a, expense("Rent", "1200.00"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{rent}");
        let (status, body) = self
            .post(
                &format!(
                    "/api/approvals/{}/approve",
                    rent["id"].as_str().expect("id")
                ),
                b,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, sofa) = self
            .post("/api/expenses", b, expense("Sofa", "450.00"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sofa}");
        let (status, body) = self
            .post(
                &format!(
                    "/api/approvals/{}/decline",
                    sofa["id"].as_str().expect("id")
                ),
                a,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, gym) = self.post("/api/expenses", b, expense("Gym", "25.00")).await;
        assert_eq!(status, StatusCode::CREATED, "{gym}");
        let (status, body) = self
            .delete(
                &format!("/api/expenses/{}", gym["id"].as_str().expect("id")),
                b,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, trip) = self
            .post(
                "/api/goals",
                a,
                json!({"name": "Trip to Lisbon", "target_amount": "2500.00", "goal_type": "vacation"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{trip}");
        let goal = trip["target_id"].as_str().expect("goal id").to_string();
        let (status, body) = self
            .post(
                &format!(
                    "/api/approvals/{}/approve",
                    trip["id"].as_str().expect("id")
                ),
                b,
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for (token, amount) in [(a, "150.00"), (b, "99.50")] {
            let (status, body) = self
                .put(
                    &format!("/api/goals/{goal}/contribution"),
                    token,
                    json!({"amount": amount}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        let (status, body) = self
            .put(
                &format!("/api/goals/{goal}"),
                b,
                json!({"target_amount": "3000.00", "message": "flights went up"}),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        for (token, text) in [
            (b, "Booked the flights"),
            (a, "Great, \"thanks\"!\nSee you at 8"),
        ] {
            let (status, body) = self
                .post("/api/messages", token, json!({"text": text}))
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
        let (status, body) = self.get("/api/contributions/current", a).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = self
            .post("/api/contributions/mark-paid", b, json!({}))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        (ann, ben, pid)
    }
}

fn session_from(body: &Value, email: &str, password: &str) -> Session {
    Session {
        user_id: body["user"]["id"]
            .as_str()
            .expect("user id")
            .parse()
            .expect("uuid"),
        email: email.to_string(),
        password: password.to_string(),
        access_token: body["access_token"]
            .as_str()
            .expect("access token")
            .to_string(),
        refresh_token: body["refresh_token"]
            .as_str()
            .expect("refresh token")
            .to_string(),
    }
}

/// Runs `test` against the app on both backends (PostgreSQL skipped with a message when
/// `TEST_DATABASE_URL` is unset).
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await;
                }
            )*
        }
    };
}

/// Whether a store call failed with the conflict whose API code is `code`.
pub fn is_conflict(result: store::StoreResult<impl std::fmt::Debug>, code: &str) -> bool {
    matches!(result, Err(store::StoreError::Conflict(c)) if c.code() == code)
}
