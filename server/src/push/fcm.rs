//! Firebase Cloud Messaging, HTTP v1 API: `POST {endpoint}/v1/projects/{project}/messages:send`
//! with an OAuth 2.0 access token that the service account obtains for itself.
//!
//! The access token comes from Google's token endpoint through the JWT-bearer grant (RFC 7523):
//! the server signs an RS256 assertion with the service account's private key
//! (`iss` = its `client_email`, `scope` = [`FCM_SCOPE`], `aud` = the token endpoint, valid for an
//! hour) and trades it for a bearer token that lives about an hour (`expires_in`). The token is
//! cached and shared by every send until [`REFRESH_MARGIN`] before it expires; one exchange
//! serves all the sends waiting for it, and a failed exchange fails all of them at once instead
//! of being repeated by each. A 401 from FCM (the token was revoked or expired early) drops the
//! cached token and the send is tried once more with a new one.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::FcmConfig;
use super::SendOutcome;
use super::{network_failure, quote, retry_after, unix_seconds, webpush, Platform, PushMessage};

/// The OAuth 2.0 scope that lets a service account send FCM messages.
pub const FCM_SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// Base URL of the FCM HTTP v1 API (`FCM_ENDPOINT` overrides it).
pub const DEFAULT_FCM_ENDPOINT: &str = "https://fcm.googleapis.com";

/// Google's token endpoint, for service-account files that do not name one.
pub const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";

/// The RFC 7523 grant type: "here is a signed JWT, give me an access token".
pub const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How long the signed assertion is valid: Google accepts at most an hour.
const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// How long before its announced expiry a cached access token is replaced (at most half its
/// lifetime, so that a short-lived token is still used): a request signed with a token that
/// expires on the way would be refused.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

/// `apns-collapse-id` may not exceed 64 bytes.
const APNS_COLLAPSE_ID_MAX_BYTES: usize = 64;

/// The fields of a Google service-account key file (JSON) that sending needs. Its `Debug`
/// never shows the private key.
#[derive(Clone, Deserialize)]
pub struct ServiceAccount {
    /// The Firebase (Google Cloud) project the messages are sent for.
    pub project_id: String,
    /// The service account's address: the assertion's issuer.
    pub client_email: String,
    /// The RSA private key, PEM (PKCS#8), that signs the assertion.
    pub private_key: String,
    /// The token endpoint; Google's files name `https://oauth2.googleapis.com/token`.
    #[serde(default)]
    pub token_uri: Option<String>,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("project_id", &self.project_id)
            .field("client_email", &self.client_email)
            .field("private_key", &"<redacted>")
            .field("token_uri", &self.token_uri)
            .finish()
    }
}

impl ServiceAccount {
    /// Parses a service-account key file's JSON and checks that the fields sending needs are
    /// there and that its key can sign an assertion.
    pub fn from_json(text: &str) -> Result<ServiceAccount, String> {
        let account: ServiceAccount = serde_json::from_str(text)
            .map_err(|e| format!("not a service-account key file: {e}"))?;
        for (field, value) in [
            ("project_id", &account.project_id),
            ("client_email", &account.client_email),
        ] {
            if value.trim().is_empty() {
                return Err(format!("{field} is empty"));
            }
        }
        signing_key(&account)?;
        Ok(account)
    }

    /// Reads and parses a service-account key file.
    pub fn read(path: &Path) -> Result<ServiceAccount, String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        ServiceAccount::from_json(&text)
    }
}

/// The service account's key, checked by signing a throwaway assertion: a PEM that parses can
/// still hold a key the signer refuses, and that should stop the server at start-up rather
/// than fail every notification.
fn signing_key(account: &ServiceAccount) -> Result<EncodingKey, String> {
    let key = EncodingKey::from_rsa_pem(account.private_key.as_bytes())
        .map_err(|e| format!("private_key is not an RSA private key in PEM: {e}"))?;
    sign_assertion(&key, account, DEFAULT_TOKEN_URI, SystemTime::now())
        .map_err(|e| format!("private_key cannot sign: {e}"))?;
    Ok(key)
}

/// The claims of the JWT-bearer assertion (RFC 7523 section 3, with Google's `scope`).
#[derive(Serialize)]
struct AssertionClaims<'a> {
    iss: &'a str,
    scope: &'a str,
    aud: &'a str,
    iat: u64,
    exp: u64,
}

fn sign_assertion(
    key: &EncodingKey,
    account: &ServiceAccount,
    token_uri: &str,
    now: SystemTime,
) -> Result<String, jsonwebtoken::errors::Error> {
    let iat = unix_seconds(now);
    let claims = AssertionClaims {
        iss: &account.client_email,
        scope: FCM_SCOPE,
        aud: token_uri,
        iat,
        exp: iat + ASSERTION_LIFETIME_SECS,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, key)
}

/// The token endpoint's answer (RFC 6749 section 5.1).
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    expires_in: u64,
}

/// A cached access token and when to stop using it.
struct AccessToken {
    value: String,
    fresh_until: Instant,
}

/// What the cache holds, behind one lock that the exchange is made under.
#[derive(Default)]
struct TokenCache {
    token: Option<AccessToken>,
    /// The outcome of the last exchange when it failed, for the sends that waited for it.
    last_failure: Option<SendOutcome>,
}

/// Sends to FCM for one service account. Built by [`super::Pusher`].
pub struct FcmSender {
    client: reqwest::Client,
    account: ServiceAccount,
    key: EncodingKey,
    send_url: String,
    token_uri: String,
    cache: tokio::sync::Mutex<TokenCache>,
    /// Exchanges finished so far; read before waiting for the cache, so that a send can tell
    /// whether an exchange finished while it waited.
    exchanges: AtomicU64,
}

impl std::fmt::Debug for FcmSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FcmSender")
            .field("project_id", &self.account.project_id)
            .field("send_url", &self.send_url)
            .field("token_uri", &self.token_uri)
            .finish_non_exhaustive()
    }
}

/// The answer to one `messages:send`, before the 401 retry is decided.
enum Posted {
    /// 401: the access token was refused; the body says why.
    Unauthorized(String),
    /// Anything else, classified.
    Done(SendOutcome),
}

impl FcmSender {
    /// A sender using `client` (whose timeouts apply) and the configured service account.
    pub fn new(client: reqwest::Client, config: &FcmConfig) -> Result<FcmSender, String> {
        let key = signing_key(&config.service_account)?;
        let send_url = format!(
            "{}/v1/projects/{}/messages:send",
            config.endpoint.trim_end_matches('/'),
            config.service_account.project_id
        );
        Ok(FcmSender {
            client,
            account: config.service_account.clone(),
            key,
            send_url,
            token_uri: config.token_uri.clone(),
            cache: tokio::sync::Mutex::new(TokenCache::default()),
            exchanges: AtomicU64::new(0),
        })
    }

    /// Sends `message` to the app holding registration `token`.
    pub async fn send(
        &self,
        token: &str,
        platform: Platform,
        message: &PushMessage,
    ) -> SendOutcome {
        let body = message_body(token, platform, message);
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(outcome) => return outcome,
        };
        let refused = match self.post(&access, &body).await {
            Posted::Done(outcome) => return outcome,
            Posted::Unauthorized(refused) => refused,
        };
        // FCM also answers 401 when Apple or the browser refuses the project's own credentials
        // (THIRD_PARTY_AUTH_ERROR): a new access token would not help.
        if error_codes(&parse_error(&refused)).any(|c| c == "THIRD_PARTY_AUTH_ERROR") {
            return SendOutcome::Rejected(format!("fcm 401: {}", quote(&refused)));
        }
        // The access token was revoked or expired early: forget it and try once more.
        self.forget(&access).await;
        let access = match self.access_token().await {
            Ok(access) => access,
            Err(outcome) => return outcome,
        };
        match self.post(&access, &body).await {
            Posted::Done(outcome) => outcome,
            Posted::Unauthorized(refused) => SendOutcome::Rejected(format!(
                "fcm 401 with a new access token: {}",
                quote(&refused)
            )),
        }
    }

    async fn post(&self, access: &str, body: &Value) -> Posted {
        let response = match self
            .client
            .post(&self.send_url)
            .bearer_auth(access)
            .json(body)
            .send()
            .await
        {
            Ok(response) => response,
            Err(err) => return Posted::Done(network_failure("fcm", &err)),
        };
        let status = response.status();
        let after = retry_after(response.headers(), SystemTime::now());
        // A body that cannot be read leaves the status to decide.
        let text = response.text().await.unwrap_or_default();
        if status == StatusCode::UNAUTHORIZED {
            return Posted::Unauthorized(text);
        }
        Posted::Done(outcome_of(status, after, &text))
    }

    /// The cached access token, or a new one. Sends that find the cache stale while an
    /// exchange is under way wait for it and take its result, success or failure.
    async fn access_token(&self) -> Result<String, SendOutcome> {
        let seen = self.exchanges.load(Ordering::Acquire);
        let mut cache = self.cache.lock().await;
        if let Some(token) = &cache.token {
            if Instant::now() < token.fresh_until {
                return Ok(token.value.clone());
            }
        }
        if self.exchanges.load(Ordering::Acquire) != seen {
            if let Some(failure) = &cache.last_failure {
                return Err(failure.clone());
            }
        }
        let result = self.exchange().await;
        // Counted under the lock, before the waiters get it.
        self.exchanges.fetch_add(1, Ordering::AcqRel);
        match result {
            Ok(token) => {
                let value = token.value.clone();
                cache.token = Some(token);
                cache.last_failure = None;
                Ok(value)
            }
            Err(failure) => {
                cache.token = None;
                cache.last_failure = Some(failure.clone());
                Err(failure)
            }
        }
    }

    /// Drops the cached token if it is still `used` (another send may have replaced it).
    async fn forget(&self, used: &str) {
        let mut cache = self.cache.lock().await;
        if cache.token.as_ref().is_some_and(|t| t.value == used) {
            cache.token = None;
        }
    }

    /// One JWT-bearer exchange at the token endpoint.
    async fn exchange(&self) -> Result<AccessToken, SendOutcome> {
        let started = Instant::now();
        let assertion =
            sign_assertion(&self.key, &self.account, &self.token_uri, SystemTime::now()).map_err(
                |e| SendOutcome::Rejected(format!("fcm: cannot sign the assertion: {e}")),
            )?;
        let response = self
            .client
            .post(&self.token_uri)
            .form(&[("grant_type", JWT_BEARER_GRANT), ("assertion", &assertion)])
            .send()
            .await
            .map_err(|e| network_failure("fcm token endpoint", &e))?;
        let status = response.status();
        if !status.is_success() {
            let after = retry_after(response.headers(), SystemTime::now());
            let body = response.text().await.unwrap_or_default();
            tracing::warn!(%status, body = %quote(&body), "fcm: the token endpoint refused the service account");
            return Err(
                if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
                    SendOutcome::Retry { after }
                } else {
                    // invalid_grant and friends: a revoked key or a wrong clock, which no
                    // retry of this message mends.
                    SendOutcome::Rejected(format!(
                        "fcm token exchange refused: {status} {}",
                        quote(&body)
                    ))
                },
            );
        }
        let token: TokenResponse = response.json().await.map_err(|e| {
            tracing::warn!(error = %e, "fcm: unreadable answer from the token endpoint");
            SendOutcome::Retry { after: None }
        })?;
        let lifetime = Duration::from_secs(token.expires_in);
        let margin = REFRESH_MARGIN.min(lifetime / 2);
        Ok(AccessToken {
            value: token.access_token,
            fresh_until: started + lifetime - margin,
        })
    }
}

/// The `messages:send` request body for one device. Android and APNs blocks are always there
/// (FCM uses the one for the token's platform); a web app also gets a `webpush` block.
pub fn message_body(token: &str, platform: Platform, message: &PushMessage) -> Value {
    let mut android = json!({ "priority": "high" });
    let mut apns_headers = json!({ "apns-priority": "10" });
    if !message.collapse_key.is_empty() {
        android["collapse_key"] = json!(message.collapse_key);
        apns_headers["apns-collapse-id"] = json!(truncate_to_bytes(
            &message.collapse_key,
            APNS_COLLAPSE_ID_MAX_BYTES
        ));
    }
    let mut body = json!({
        "token": token,
        "notification": { "title": message.title, "body": message.body },
        "data": message.data,
        "android": android,
        "apns": { "headers": apns_headers },
    });
    if platform == Platform::Web {
        let mut headers = json!({ "Urgency": "high" });
        if let Some(topic) = webpush::topic_for(&message.collapse_key) {
            headers["Topic"] = json!(topic);
        }
        body["webpush"] = json!({ "headers": headers });
    }
    json!({ "message": body })
}

/// The longest prefix of `text` that fits `max` bytes without splitting a character.
fn truncate_to_bytes(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// FCM's error body: `{"error": {"code", "message", "status", "details": [...]}}`.
#[derive(Default, Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error: ErrorDetail,
}

#[derive(Default, Deserialize)]
struct ErrorDetail {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

fn parse_error(body: &str) -> ErrorDetail {
    serde_json::from_str::<ErrorBody>(body)
        .map(|b| b.error)
        .unwrap_or_default()
}

/// The `errorCode`s of the `google.firebase.fcm.v1.FcmError` details.
fn error_codes(error: &ErrorDetail) -> impl Iterator<Item = &str> {
    error
        .details
        .iter()
        .filter_map(|d| d.get("errorCode").and_then(Value::as_str))
}

/// True when a 400 is about the registration token itself (malformed, truncated, or not an
/// FCM token): the device can never be reached with it. FCM says so in a
/// `google.rpc.BadRequest` field violation on `message.token`, or in its message.
fn is_about_the_token(error: &ErrorDetail) -> bool {
    let field_violation = error.details.iter().any(|d| {
        d.get("fieldViolations")
            .and_then(Value::as_array)
            .is_some_and(|v| {
                v.iter()
                    .any(|f| f.get("field").and_then(Value::as_str) == Some("message.token"))
            })
    });
    field_violation || error.message.contains("registration token")
}

/// What an FCM answer other than 401 means (see the table in [`super`]).
///
/// A 403 `SENDER_ID_MISMATCH` (the token belongs to another project) is rejected, not gone: a
/// deployment configured with the wrong project would otherwise delete every device.
pub fn outcome_of(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendOutcome {
    if status.is_success() {
        return SendOutcome::Delivered;
    }
    let error = parse_error(body);
    if status == StatusCode::NOT_FOUND || error_codes(&error).any(|c| c == "UNREGISTERED") {
        return SendOutcome::Gone;
    }
    if status == StatusCode::BAD_REQUEST && is_about_the_token(&error) {
        return SendOutcome::Gone;
    }
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        return SendOutcome::Retry { after: retry_after };
    }
    let why = if error.status.is_empty() && error.message.is_empty() {
        quote(body)
    } else {
        quote(&format!("{} {}", error.status, error.message))
    };
    SendOutcome::Rejected(format!("fcm {}: {why}", status.as_u16()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    fn fcm_error(code: u16, status: &str, message: &str, details: Value) -> String {
        json!({"error": {"code": code, "message": message, "status": status, "details": details}})
            .to_string()
    }

    #[test]
    fn unregistered_and_bad_tokens_are_gone() {
        let unregistered = fcm_error(
            404,
            "NOT_FOUND",
            "Requested entity was not found.",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]),
        );
        assert_eq!(
            outcome_of(status(404), None, &unregistered),
            SendOutcome::Gone
        );
        assert_eq!(outcome_of(status(404), None, ""), SendOutcome::Gone);
        let invalid_token = fcm_error(
            400,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]),
        );
        assert_eq!(
            outcome_of(status(400), None, &invalid_token),
            SendOutcome::Gone
        );
        let token_field = fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.token", "description": "Invalid registration"}]}]),
        );
        assert_eq!(
            outcome_of(status(400), None, &token_field),
            SendOutcome::Gone
        );
    }

    #[test]
    fn other_bad_requests_are_rejected_with_the_reason() {
        let bad_data = fcm_error(
            400,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.data[0].value"}]}]),
        );
        let SendOutcome::Rejected(why) = outcome_of(status(400), None, &bad_data) else {
            panic!("not rejected");
        };
        assert!(
            why.starts_with("fcm 400: INVALID_ARGUMENT Invalid value"),
            "{why}"
        );
        let mismatch = fcm_error(
            403,
            "PERMISSION_DENIED",
            "SenderId mismatch",
            json!([{"errorCode": "SENDER_ID_MISMATCH"}]),
        );
        assert!(matches!(
            outcome_of(status(403), None, &mismatch),
            SendOutcome::Rejected(_)
        ));
        assert!(matches!(
            outcome_of(status(413), None, "<html>too large</html>"),
            SendOutcome::Rejected(why) if why == "fcm 413: <html>too large</html>"
        ));
    }

    #[test]
    fn rate_limits_and_server_errors_are_retried_when_the_service_says() {
        let after = Some(Duration::from_secs(7));
        for code in [429, 500, 502, 503, 504] {
            assert_eq!(
                outcome_of(status(code), after, "{}"),
                SendOutcome::Retry { after },
                "{code}"
            );
        }
        assert_eq!(
            outcome_of(status(503), None, ""),
            SendOutcome::Retry { after: None }
        );
        assert_eq!(outcome_of(status(200), None, "{}"), SendOutcome::Delivered);
    }

    fn message(collapse_key: &str) -> PushMessage {
        PushMessage {
            title: "New expense".into(),
            body: "Ann added an expense".into(),
            data: BTreeMap::from([("expense_id".to_string(), "e1".to_string())]),
            collapse_key: collapse_key.into(),
        }
    }

    #[test]
    fn the_message_carries_the_collapse_key_for_android_and_apns() {
        let body = message_body("tok", Platform::Ios, &message("expense-e1"));
        let m = &body["message"];
        assert_eq!(m["token"], "tok");
        assert_eq!(m["notification"]["title"], "New expense");
        assert_eq!(m["data"]["expense_id"], "e1");
        assert_eq!(m["android"]["collapse_key"], "expense-e1");
        assert_eq!(m["android"]["priority"], "high");
        assert_eq!(m["apns"]["headers"]["apns-collapse-id"], "expense-e1");
        assert_eq!(m["apns"]["headers"]["apns-priority"], "10");
        assert!(m.get("webpush").is_none());
        let web = message_body("tok", Platform::Web, &message("expense-e1"));
        assert_eq!(web["message"]["webpush"]["headers"]["Topic"], "expense-e1");
        let none = message_body("tok", Platform::Android, &message(""));
        assert!(none["message"]["android"].get("collapse_key").is_none());
        assert!(none["message"]["apns"]["headers"]
            .get("apns-collapse-id")
            .is_none());
    }

    #[test]
    fn the_apns_collapse_id_is_cut_to_64_bytes_on_a_character_boundary() {
        let long = "é".repeat(40); // 80 bytes
        let body = message_body("tok", Platform::Ios, &message(&long));
        let id = body["message"]["apns"]["headers"]["apns-collapse-id"]
            .as_str()
            .unwrap();
        assert_eq!(id.len(), 64);
        assert_eq!(id, "é".repeat(32));
    }

    #[test]
    fn a_file_without_a_usable_key_is_refused() {
        let err = ServiceAccount::from_json(
            r#"{"project_id": "p", "client_email": "a@p.iam.gserviceaccount.com", "private_key": "not a key"}"#,
        )
        .unwrap_err();
        assert!(err.contains("private_key"), "{err}");
        let err = ServiceAccount::from_json(r#"{"project_id": "p"}"#).unwrap_err();
        assert!(err.contains("client_email"), "{err}");
    }
}
