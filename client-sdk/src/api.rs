//! The REST calls the SDK needs around sync: signing in, keeping the session alive, pairing
//! with a partner and finding the partnership document.
//!
//! Everything else (expenses, goals, approvals, messages) goes through the synced document, so
//! it works offline; these calls are the few that only the server can answer. Each one maps the
//! server's answer onto [`ClientError`] the same way, so the rest of the SDK can decide what to
//! do from the variant alone:
//! - a non-2xx answer is [`ClientError::Api`] with the `code` and `message` of the server's JSON
//!   error body (`{"error": {"code", "message", "details"}}`), or the status text when a proxy
//!   in between answered with something else;
//! - an answer that never came (offline, DNS, TLS, connect or request timeout) is
//!   [`ClientError::Network`], the one case worth retrying later;
//! - a refused refresh is [`ClientError::SignedOut`], because no retry can revive that session.
//!
//! Money is [`Decimal`] end to end (the server writes decimal strings), never a float.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, RequestBuilder, StatusCode, Url};
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{ClientError, Result};

/// How long establishing a connection may take: long enough for a slow mobile network, short
/// enough that an app offline notices quickly and keeps working locally.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a whole request may take, answer included. The server's own limit is 30 s; a client
/// gives up earlier so that a stalled call never blocks a sign-in screen for long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The `User-Agent` every request carries, so server logs can tell SDK versions apart.
pub const USER_AGENT: &str = concat!("splitsave-client/", env!("CARGO_PKG_VERSION"));

/// A user as the server shows them.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct User {
    /// Id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Name.
    pub name: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Country.
    pub country: Option<String>,
    /// Monthly income.
    pub income: Option<Decimal>,
    /// Payday.
    pub payday: Option<String>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

/// What registering needs.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Registration {
    /// Email.
    pub email: String,
    /// Password (10–128 characters).
    pub password: String,
    /// Display name.
    pub name: String,
    /// ISO 4217 currency (default USD).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Monthly income.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub income: Option<Decimal>,
}

/// A signed-in session as login and register answer it.
#[derive(Clone, Debug, Deserialize)]
pub struct AuthSession {
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// The user.
    pub user: User,
}

/// A rotated token pair.
#[derive(Clone, Debug, Deserialize)]
pub struct TokenPair {
    /// Access token.
    pub access_token: String,
    /// Refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: i64,
}

/// The other partner.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Person {
    /// Id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Email.
    pub email: String,
}

/// A partnership as the server shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct Partnership {
    /// Id (the document id is derived from it).
    pub id: Uuid,
    /// `pending`, `active` or `paused`.
    pub status: String,
    /// `inviter` or `invitee`.
    pub role: String,
    /// The partner once they accepted.
    pub partner: Option<Person>,
    /// Currency.
    pub currency: String,
    /// Approval threshold.
    pub approval_threshold: Decimal,
    /// `automerge:` URL of the document once active.
    pub document_url: Option<String>,
}

/// An invitation as `POST /api/partnerships/invite` and `GET /api/partnerships/invitations`
/// show it. Private: callers see the partnership it starts ([`Partnership`]) or its id.
#[derive(Debug, Deserialize)]
struct Invitation {
    id: Uuid,
    #[serde(default = "pending")]
    status: String,
    currency: String,
    approval_threshold: Decimal,
}

fn pending() -> String {
    "pending".to_string()
}

/// `GET /api/partnerships/invitations`; only the received side matters to the SDK.
#[derive(Debug, Deserialize)]
struct Invitations {
    #[serde(default)]
    received: Vec<Invitation>,
}

/// Body of refresh and logout.
#[derive(Serialize)]
struct RefreshBody<'a> {
    refresh_token: &'a str,
}

/// The REST client.
#[derive(Clone, Debug)]
pub struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    /// A client for the server at `base_url` (`http://host:port`).
    ///
    /// The URL is checked once here rather than on every call, so a typo in an app's settings
    /// shows up at start-up: it must be `http` or `https` with a host, and may carry a path
    /// prefix (a server behind a reverse proxy) but no query or fragment. Trailing slashes are
    /// dropped so paths join without doubling them. A bad URL is [`ClientError::Network`], since
    /// no server can be reached through it.
    pub fn new(base_url: &str) -> Result<Api> {
        let base = normalize_base_url(base_url)?;
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(USER_AGENT)
            .build()
            .map_err(|e| ClientError::Network(error_chain(&e)))?;
        Ok(Api { http, base })
    }

    /// The base URL, normalised (no trailing slash), for building other URLs and for logs.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// `ws://…/sync` or `wss://…/sync` for this server: the sync connection lives on the same
    /// host as the REST API, with TLS exactly when the REST API uses it.
    pub fn sync_url(&self) -> String {
        let rest = self
            .base
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| {
                self.base
                    .strip_prefix("http://")
                    .map(|rest| format!("ws://{rest}"))
            })
            // `new` admits only http and https, so this is unreachable; keep the base as is.
            .unwrap_or_else(|| self.base.clone());
        format!("{rest}/sync")
    }

    /// `POST /api/auth/register`: creates the account and signs it in at once, so a new user
    /// needs no second round trip.
    pub async fn register(&self, r: &Registration) -> Result<AuthSession> {
        self.json(
            self.request(Method::POST, "/api/auth/register", None)
                .json(r),
        )
        .await
    }

    /// `POST /api/auth/login`. Wrong credentials are [`ClientError::Api`] with status 401 and
    /// code `invalid_credentials`; the session is not signed out, it never started.
    pub async fn login(&self, email: &str, password: &str) -> Result<AuthSession> {
        #[derive(Serialize)]
        struct Login<'a> {
            email: &'a str,
            password: &'a str,
        }
        let body = Login { email, password };
        self.json(
            self.request(Method::POST, "/api/auth/login", None)
                .json(&body),
        )
        .await
    }

    /// `POST /api/auth/refresh`; a 401 is `ClientError::SignedOut`.
    ///
    /// The presented token is used up whatever happens next: store the returned pair before
    /// anything else. A 401 means the token was revoked, reused or expired, so the only way
    /// forward is a new sign-in, which is what [`ClientError::SignedOut`] tells the app.
    pub async fn refresh(&self, refresh_token: &str) -> Result<TokenPair> {
        let request = self
            .request(Method::POST, "/api/auth/refresh", None)
            .json(&RefreshBody { refresh_token });
        match self.json(request).await {
            Err(ClientError::Api {
                status: 401,
                message,
                ..
            }) => Err(ClientError::SignedOut(message)),
            other => other,
        }
    }

    /// `POST /api/auth/logout`: revokes the session on the server so a stolen refresh token is
    /// useless afterwards. The server answers 204 whatever the token, so signing out twice is
    /// harmless.
    pub async fn logout(&self, refresh_token: &str) -> Result<()> {
        let request = self
            .request(Method::POST, "/api/auth/logout", None)
            .json(&RefreshBody { refresh_token });
        self.send(request).await.map(drop)
    }

    /// `GET /api/users/profile`.
    pub async fn profile(&self, access: &str) -> Result<User> {
        self.json(self.request(Method::GET, "/api/users/profile", Some(access)))
            .await
    }

    /// `PUT /api/users/update-income`: the income is server-owned in the partnership document
    /// (the split uses it), so it is changed here and not by a local operation.
    pub async fn update_income(&self, access: &str, income: Decimal) -> Result<User> {
        #[derive(Serialize)]
        struct Income {
            income: Decimal,
        }
        self.json(
            self.request(Method::PUT, "/api/users/update-income", Some(access))
                .json(&Income { income }),
        )
        .await
    }

    /// `POST /api/partnerships/invite`.
    ///
    /// The server answers with the invitation; it is returned as the caller's pending
    /// partnership (`role` `inviter`, no partner or document yet), which is what
    /// [`Api::current_partnership`] shows from then on.
    pub async fn invite(&self, access: &str, email: &str) -> Result<Partnership> {
        #[derive(Serialize)]
        struct Invite<'a> {
            email: &'a str,
        }
        let invitation: Invitation = self
            .json(
                self.request(Method::POST, "/api/partnerships/invite", Some(access))
                    .json(&Invite { email }),
            )
            .await?;
        Ok(Partnership {
            id: invitation.id,
            status: invitation.status,
            role: "inviter".to_string(),
            partner: None,
            currency: invitation.currency,
            approval_threshold: invitation.approval_threshold,
            document_url: None,
        })
    }

    /// The ids of invitations the user received (`GET /api/partnerships/invitations`).
    ///
    /// Ids are all [`Api::accept`] needs; the invitations the user sent are left out because
    /// they show as the pending partnership.
    pub async fn received_invitations(&self, access: &str) -> Result<Vec<Uuid>> {
        let invitations: Invitations = self
            .json(self.request(Method::GET, "/api/partnerships/invitations", Some(access)))
            .await?;
        Ok(invitations.received.into_iter().map(|i| i.id).collect())
    }

    /// `POST /api/partnerships/accept/{id}`: the partnership becomes active and its document
    /// exists on the server from this answer on (its `document_url` is set).
    pub async fn accept(&self, access: &str, id: Uuid) -> Result<Partnership> {
        let path = format!("/api/partnerships/accept/{id}");
        self.json(self.request(Method::POST, &path, Some(access)))
            .await
    }

    /// `GET /api/partnerships/current`; `None` on 404.
    ///
    /// Having no partnership is a normal state (before pairing), not an error, so it is `None`
    /// rather than [`ClientError::Api`].
    pub async fn current_partnership(&self, access: &str) -> Result<Option<Partnership>> {
        let request = self.request(Method::GET, "/api/partnerships/current", Some(access));
        match self.json(request).await {
            Ok(partnership) => Ok(Some(partnership)),
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// `GET /api/contributions/current` (the server creates this month in the document).
    ///
    /// A month's amounts are server-written, so an app that wants this month in its synced
    /// document asks the server to create it; the month then arrives through sync.
    pub async fn open_current_month(&self, access: &str) -> Result<()> {
        self.send(self.request(Method::GET, "/api/contributions/current", Some(access)))
            .await
            .map(drop)
    }

    /// A request to `path` (which starts with `/`) with the bearer token when one is given.
    fn request(&self, method: Method, path: &str, access: Option<&str>) -> RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match access {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    /// Sends the request and returns the body of a 2xx answer; any other answer is
    /// [`ClientError::Api`], a failure to get one is [`ClientError::Network`].
    async fn send(&self, request: RequestBuilder) -> Result<Vec<u8>> {
        let response = request.send().await.map_err(network)?;
        let status = response.status();
        let body = response.bytes().await.map_err(network)?;
        if status.is_success() {
            Ok(body.to_vec())
        } else {
            Err(api_error(status.as_u16(), &body))
        }
    }

    /// [`Api::send`], then reads the 2xx body as `T`.
    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let body = self.send(request).await?;
        serde_json::from_slice(&body).map_err(|e| ClientError::Api {
            // A 2xx whose body is not what this SDK expects: a server of another version or
            // something else answering at this URL. Retrying will not help, so not `Network`.
            status: 200,
            code: "unexpected_response".to_string(),
            message: format!("the answer could not be read: {e}"),
        })
    }
}

/// Checks and normalises a base URL; see [`Api::new`].
fn normalize_base_url(raw: &str) -> Result<String> {
    let invalid = |why: &str| ClientError::Network(format!("invalid server URL {raw:?}: {why}"));
    let url = Url::parse(raw.trim()).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("a host is required"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("a query or fragment has no place in a base URL"));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The server's error body, as `server::error::ErrorBody` writes it.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

/// The error for a non-2xx answer: the server's own `code` and `message` when the body is its
/// JSON error shape; otherwise (a proxy's HTML page, an empty body) a code and message made from
/// the status, so callers can always switch on `code`.
fn api_error(status: u16, body: &[u8]) -> ClientError {
    if let Ok(ErrorBody { error }) = serde_json::from_slice::<ErrorBody>(body) {
        return ClientError::Api {
            status,
            code: error.code,
            message: error.message,
        };
    }
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    let (code, message) = match reason {
        Some(reason) => (
            reason.to_ascii_lowercase().replace([' ', '-'], "_"),
            reason.to_string(),
        ),
        None => (format!("http_{status}"), format!("HTTP {status}")),
    };
    ClientError::Api {
        status,
        code,
        message,
    }
}

/// A transport failure as [`ClientError::Network`], with its causes: reqwest's own message
/// ("error sending request") says little without them.
fn network(err: reqwest::Error) -> ClientError {
    let mut message = error_chain(&err);
    if err.is_timeout() && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    ClientError::Network(message)
}

fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn base_urls_lose_trailing_slashes_and_keep_a_path_prefix() {
        for (given, expected) in [
            ("http://localhost:3000", "http://localhost:3000"),
            ("http://localhost:3000/", "http://localhost:3000"),
            ("  https://Example.COM//  ", "https://example.com"),
            (
                "https://example.com/splitsave/",
                "https://example.com/splitsave",
            ),
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ] {
            assert_eq!(Api::new(given).unwrap().base_url(), expected, "{given}");
        }
    }

    #[test]
    fn base_urls_other_than_http_or_https_are_refused() {
        for given in [
            "ftp://example.com",
            "ws://example.com",
            "localhost:3000",
            "example.com",
            "",
            "http://example.com/?x=1",
            "http://example.com/#top",
        ] {
            let err = Api::new(given).expect_err(given);
            assert!(
                matches!(&err, ClientError::Network(m) if m.contains("invalid server URL")),
                "{given}: {err:?}"
            );
        }
    }

    #[test]
    fn the_sync_url_follows_the_rest_scheme() {
        let url = |base: &str| Api::new(base).unwrap().sync_url();
        assert_eq!(url("http://localhost:3000/"), "ws://localhost:3000/sync");
        assert_eq!(url("https://api.example.com"), "wss://api.example.com/sync");
        assert_eq!(
            url("https://example.com/splitsave/"),
            "wss://example.com/splitsave/sync"
        );
    }

    /// Status, code and message of the error a response body makes.
    fn api_parts(status: u16, body: &[u8]) -> (u16, String, String) {
        match api_error(status, body) {
            ClientError::Api {
                status,
                code,
                message,
            } => (status, code, message),
            other => panic!("not an API error: {other:?}"),
        }
    }

    #[test]
    fn the_servers_error_body_gives_code_and_message() {
        let body = br#"{"error":{"code":"validation_failed","message":"some fields are invalid",
            "details":{"email":["must be a valid email"]}}}"#;
        assert_eq!(
            api_parts(422, body),
            (
                422,
                "validation_failed".into(),
                "some fields are invalid".into()
            )
        );
    }

    #[test]
    fn a_body_that_is_not_the_error_shape_falls_back_to_the_status_text() {
        for body in [
            &b"<html>Bad Gateway</html>"[..],
            b"",
            br#"{"message":"nope"}"#,
        ] {
            assert_eq!(
                api_parts(502, body),
                (502, "bad_gateway".into(), "Bad Gateway".into())
            );
        }
        assert_eq!(
            api_parts(599, b""),
            (599, "http_599".into(), "HTTP 599".into())
        );
    }

    /// A one-request HTTP server answering `status` with `body`; yields the request it got.
    async fn answer_once(status: &str, body: &str) -> (String, tokio::task::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{body}",
            body.len()
        );
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head and as much body as its content-length announces.
            loop {
                let n = socket.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length || n == 0 {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (base, handle)
    }

    #[tokio::test]
    async fn a_refused_refresh_is_signed_out_with_the_servers_message() {
        let (base, server) = answer_once(
            "401 Unauthorized",
            r#"{"error":{"code":"invalid_refresh_token","message":"the refresh token is invalid"}}"#,
        )
        .await;
        let err = Api::new(&base).unwrap().refresh("old").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::SignedOut(m) if m == "the refresh token is invalid"),
            "{err:?}"
        );
        let request = server.await.unwrap();
        assert!(request.starts_with("POST /api/auth/refresh "), "{request}");
        assert!(request.contains(r#"{"refresh_token":"old"}"#), "{request}");
        assert!(
            request
                .to_ascii_lowercase()
                .contains(&format!("user-agent: {USER_AGENT}")),
            "{request}"
        );
    }

    #[tokio::test]
    async fn no_partnership_is_none_and_other_errors_stay_errors() {
        let (base, _server) = answer_once(
            "404 Not Found",
            r#"{"error":{"code":"not_found","message":"not found"}}"#,
        )
        .await;
        let api = Api::new(&base).unwrap();
        assert!(api.current_partnership("token").await.unwrap().is_none());

        let (base, server) = answer_once(
            "401 Unauthorized",
            r#"{"error":{"code":"unauthorized","message":"invalid or expired token"}}"#,
        )
        .await;
        let err = Api::new(&base)
            .unwrap()
            .current_partnership("expired")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ClientError::Api { status: 401, code, .. } if code == "unauthorized"),
            "{err:?}"
        );
        let request = server.await.unwrap();
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer expired"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn answers_are_read_with_decimal_money() {
        let (base, _server) = answer_once(
            "200 OK",
            r#"{"id":"01936f5e-0000-7000-8000-000000000001","email":"ann@example.com",
                "name":"Ann","currency":"USD","country":null,"income":"4200.50","payday":null,
                "created_at":"2026-11-25T10:00:00Z","updated_at":"2026-11-25T10:00:00Z"}"#,
        )
        .await;
        let user = Api::new(&base)
            .unwrap()
            .update_income("token", Decimal::from_str("4200.50").unwrap())
            .await
            .unwrap();
        assert_eq!(user.income, Some(Decimal::from_str("4200.50").unwrap()));
    }

    #[tokio::test]
    async fn an_unreachable_server_is_a_network_error() {
        // A port that was free a moment ago and has no listener now.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = Api::new(&base)
            .unwrap()
            .login("ann@example.com", "correct horse battery")
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Network(_)), "{err:?}");
    }
}
