//! A running server for the auth tests: the real router on `127.0.0.1:0`, served with connect
//! info like the binary, its own database (a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database under `TEST_DATABASE_URL`), and a [`MemoryMailer`] to read mails from.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_server::app::{self, AppState};
use splitsave_server::config::Config;
use splitsave_server::notify::mail::{MemoryMailer, SentMail};
use sqlx::{Connection, Executor, PgConnection};

use crate::common::with_database;

/// Which database a test runs on, and the password every test user starts with: the same as
/// the other tests'.
pub use crate::common::{Backend, PASSWORD};

/// The server under test.
pub struct TestApp {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// HTTP client (no cookies, no redirects needed).
    pub client: reqwest::Client,
    /// The mails the server sent.
    pub mailer: MemoryMailer,
    /// The server's state: store, token keys, config.
    pub state: AppState,
    postgres: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

/// An HTTP answer, read completely.
#[derive(Debug)]
pub struct Answer {
    /// Status code.
    pub status: StatusCode,
    /// Response headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
}

impl Answer {
    /// `error.code` of an error body.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    /// Starts a server on `backend`; `None` (after saying so) when PostgreSQL is asked for and
    /// `TEST_DATABASE_URL` is unset.
    pub async fn spawn(backend: Backend) -> Option<TestApp> {
        Self::spawn_with(backend, |_| {}).await
    }

    /// Like [`TestApp::spawn`], with a chance to change the configuration first.
    pub async fn spawn_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Option<TestApp> {
        let dir = tempfile::tempdir().expect("temporary directory");
        let (database_url, postgres) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("test.db").display()),
                None,
            ),
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
                    eprintln!("skipped: TEST_DATABASE_URL is not set, so the PostgreSQL variant of this test did not run");
                    return None;
                };
                let name = format!("auth_{}", uuid::Uuid::new_v4().simple());
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .expect("connect to TEST_DATABASE_URL");
                admin
                    .execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create test database");
                (with_database(&admin_url, &name), Some((admin_url, name)))
            }
        };
        let mut config = Config::for_tests(dir.path(), database_url.clone());
        tweak(&mut config);
        let store = splitsave_server::store::connect(&database_url)
            .await
            .expect("open store");
        let mailer = MemoryMailer::new();
        let state = AppState::with_parts(config, store, Arc::new(mailer.clone())).expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let service =
            app::router(state.clone()).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move {
            axum::serve(listener, service).await.expect("serve");
        });
        Some(TestApp {
            base: format!("http://{addr}"),
            client: reqwest::Client::new(),
            mailer,
            state,
            postgres,
            _dir: dir,
        })
    }

    /// Drops the PostgreSQL database of this test (nothing to do for SQLite).
    pub async fn cleanup(self) {
        if let Some((admin_url, name)) = &self.postgres {
            if let Ok(mut admin) = PgConnection::connect(admin_url).await {
                let _ = admin
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await;
            }
        }
    }

    /// `POST` a JSON body.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.send(self.client.post(self.url(path)).json(body)).await
    }

    /// `POST` a JSON body with a bearer token.
    pub async fn post_auth(&self, path: &str, token: &str, body: &Value) -> Answer {
        self.send(
            self.client
                .post(self.url(path))
                .bearer_auth(token)
                .json(body),
        )
        .await
    }

    /// `POST` raw bytes with an optional content type.
    pub async fn post_raw(
        &self,
        path: &str,
        body: impl Into<reqwest::Body>,
        content_type: Option<&str>,
    ) -> Answer {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        self.send(request).await
    }

    /// `GET` with an optional `Authorization` header value.
    pub async fn get_with_authorization(&self, path: &str, authorization: Option<&str>) -> Answer {
        let mut request = self.client.get(self.url(path));
        if let Some(value) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, value);
        }
        self.send(request).await
    }

    /// `GET /api/users/profile` with a bearer token: the protected endpoint the tests probe.
    pub async fn profile(&self, access_token: &str) -> Answer {
        self.get_with_authorization(
            "/api/users/profile",
            Some(&format!("Bearer {access_token}")),
        )
        .await
    }

    /// Registers `email` with [`PASSWORD`]; panics unless the answer is 201.
    pub async fn register(&self, email: &str) -> Value {
        let answer = self
            .post(
                "/api/auth/register",
                &json!({"email": email, "password": PASSWORD, "name": "Test User"}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::CREATED,
            "register {email}: {:?}",
            answer.body
        );
        answer.body
    }

    /// Logs in; returns the whole answer.
    pub async fn login(&self, email: &str, password: &str) -> Answer {
        self.post(
            "/api/auth/login",
            &json!({"email": email, "password": password}),
        )
        .await
    }

    /// Waits (up to 10 s) until `to` has received `count` mails, and returns them.
    pub async fn wait_for_mails(&self, to: &str, count: usize) -> Vec<SentMail> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mails = self.mailer.sent_to(to);
            if mails.len() >= count {
                return mails;
            }
            assert!(Instant::now() < deadline, "no mail for {to} within 10 s");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("request");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
        }
    }
}

/// The reset token from a reset mail: the `token=` parameter of its link.
pub fn reset_token_from(mail: &SentMail) -> String {
    let start = mail.body.find("token=").expect("reset link in the mail") + "token=".len();
    mail.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect()
}
