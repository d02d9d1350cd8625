//! A stand-in of Google's token endpoint and FCM's HTTP v1 `messages:send`.
//!
//! The token endpoint takes the JWT-bearer grant only from the test service account: the
//! assertion must carry a valid RS256 signature by [`TEST_ONLY_PUBLIC_KEY_PEM`]'s private key,
//! `iss` = the account's address, `aud` = this endpoint, `scope` = FCM's, and an `exp` in the
//! future at most an hour after `iat`. It answers an access token living
//! [`FcmStandin::set_token_lifetime`] seconds (an hour unless a test says otherwise).
//!
//! `messages:send` wants `Authorization: Bearer <a token it issued that has not expired>`
//! (otherwise 401 `UNAUTHENTICATED`, counted) and FCM's message shape (otherwise 400, recorded
//! as a problem), then answers what the test scripted, 200 by default.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Form, Json, Router};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use splitsave_server::push::fcm::{FCM_SCOPE, JWT_BEARER_GRANT};

use super::test_only_key::{TEST_ONLY_PRIVATE_KEY_PEM, TEST_ONLY_PUBLIC_KEY_PEM};
use super::Running;

/// The stand-in's Firebase project.
pub const PROJECT_ID: &str = "splitsave-standin";
/// The test service account's address.
pub const CLIENT_EMAIL: &str = "push@splitsave-standin.iam.gserviceaccount.com";

/// What `messages:send` answers, once the request passed its checks.
#[derive(Clone, Debug)]
pub enum FcmReply {
    /// 200 `{"name": "projects/<p>/messages/<n>"}`.
    Accept,
    /// 404 `NOT_FOUND` with `errorCode` `UNREGISTERED`.
    Unregistered,
    /// 400 `INVALID_ARGUMENT`: the registration token is not a valid FCM token.
    InvalidToken,
    /// 400 `INVALID_ARGUMENT` about a data value (not about the token).
    InvalidData,
    /// 429 `RESOURCE_EXHAUSTED` (`QUOTA_EXCEEDED`) with this `Retry-After`.
    RateLimited {
        /// The header's value: seconds or an HTTP-date.
        retry_after: String,
    },
    /// 500 `INTERNAL`.
    Internal,
    /// 503 `UNAVAILABLE`.
    Unavailable,
    /// 401 `UNAUTHENTICATED`, whatever the token (as if it had been revoked).
    Unauthorized,
}

/// What the token endpoint answers to a valid assertion.
#[derive(Clone, Debug)]
pub enum TokenReply {
    /// An access token.
    Issue,
    /// 503, no token.
    Unavailable,
}

/// One `messages:send` that passed the checks, with the status it was answered.
#[derive(Clone, Debug)]
pub struct ReceivedMessage {
    /// The request body (`{"message": {...}}`).
    pub body: Value,
    /// The status answered.
    pub status: u16,
    /// When it arrived.
    pub at: Instant,
}

struct FcmState {
    token_uri: String,
    token_lifetime: u64,
    issued: HashMap<String, Instant>,
    token_exchanges: usize,
    token_script: VecDeque<TokenReply>,
    script: VecDeque<FcmReply>,
    received: Vec<ReceivedMessage>,
    unauthenticated: usize,
    problems: Vec<String>,
}

/// The FCM stand-in; stops when dropped.
pub struct FcmStandin {
    server: Running,
    state: Arc<Mutex<FcmState>>,
}

impl FcmStandin {
    /// Starts the token endpoint (`/token`) and `messages:send` on a random port.
    pub async fn start() -> FcmStandin {
        let state = Arc::new(Mutex::new(FcmState {
            token_uri: String::new(),
            token_lifetime: 3600,
            issued: HashMap::new(),
            token_exchanges: 0,
            token_script: VecDeque::new(),
            script: VecDeque::new(),
            received: Vec::new(),
            unauthenticated: 0,
            problems: Vec::new(),
        }));
        let router = Router::new()
            .route("/token", post(token))
            .route("/v1/projects/{project}/{method}", post(send))
            .with_state(state.clone());
        let server = Running::start(router).await;
        state.lock().unwrap().token_uri = format!("{}/token", server.origin());
        FcmStandin { server, state }
    }

    /// The base URL to configure as `FCM_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        self.server.origin()
    }

    /// The token endpoint's URL.
    pub fn token_uri(&self) -> String {
        format!("{}/token", self.server.origin())
    }

    /// A service-account key file for the test account, naming this stand-in's token endpoint.
    pub fn service_account_json(&self) -> String {
        json!({
            "type": "service_account",
            "project_id": PROJECT_ID,
            "private_key_id": "test-only",
            "private_key": TEST_ONLY_PRIVATE_KEY_PEM,
            "client_email": CLIENT_EMAIL,
            "client_id": "000000000000000000000",
            "token_uri": self.token_uri(),
        })
        .to_string()
    }

    /// Queues answers for the next `messages:send` requests that pass the checks; once they
    /// are used up, messages are accepted.
    pub fn script(&self, replies: impl IntoIterator<Item = FcmReply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Forgets the answers still queued: messages are accepted from now on.
    pub fn clear_script(&self) {
        self.state.lock().unwrap().script.clear();
    }

    /// Queues answers for the next valid token requests; then tokens are issued.
    pub fn script_tokens(&self, replies: impl IntoIterator<Item = TokenReply>) {
        self.state.lock().unwrap().token_script.extend(replies);
    }

    /// How long the access tokens issued from now on live (`expires_in`, seconds).
    pub fn set_token_lifetime(&self, seconds: u64) {
        self.state.lock().unwrap().token_lifetime = seconds;
    }

    /// Valid assertions received by the token endpoint (answered or scripted to fail).
    pub fn token_exchanges(&self) -> usize {
        self.state.lock().unwrap().token_exchanges
    }

    /// `messages:send` requests refused for a missing, unknown or expired access token (scripted
    /// 401s are not counted).
    pub fn unauthenticated(&self) -> usize {
        self.state.lock().unwrap().unauthenticated
    }

    /// Every `messages:send` that passed the checks.
    pub fn received(&self) -> Vec<ReceivedMessage> {
        self.state.lock().unwrap().received.clone()
    }

    /// What the stand-in refused as malformed (assertions, messages), in order.
    pub fn problems(&self) -> Vec<String> {
        self.state.lock().unwrap().problems.clone()
    }
}

/// The assertion claims Google requires.
#[derive(Deserialize)]
struct Assertion {
    scope: String,
    iat: u64,
    exp: u64,
}

async fn token(
    State(state): State<Arc<Mutex<FcmState>>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = state.lock().unwrap();
    let verdict = check_assertion(&state.token_uri, &form);
    if let Err(problem) = verdict {
        state.problems.push(format!("token: {problem}"));
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant", "error_description": problem})),
        )
            .into_response();
    }
    state.token_exchanges += 1;
    if let Some(TokenReply::Unavailable) = state.token_script.pop_front() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "temporarily_unavailable"})),
        )
            .into_response();
    }
    let access_token = format!("ya29.standin-{}", state.token_exchanges);
    let lifetime = state.token_lifetime;
    state.issued.insert(
        access_token.clone(),
        Instant::now() + Duration::from_secs(lifetime),
    );
    Json(json!({
        "access_token": access_token,
        "expires_in": lifetime,
        "token_type": "Bearer",
    }))
    .into_response()
}

fn check_assertion(token_uri: &str, form: &HashMap<String, String>) -> Result<(), String> {
    if form.get("grant_type").map(String::as_str) != Some(JWT_BEARER_GRANT) {
        return Err(format!("grant_type {:?}", form.get("grant_type")));
    }
    let assertion = form.get("assertion").ok_or("no assertion")?;
    let key = DecodingKey::from_rsa_pem(TEST_ONLY_PUBLIC_KEY_PEM.as_bytes()).expect("test key");
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[token_uri]);
    validation.set_issuer(&[CLIENT_EMAIL]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<Assertion>(assertion, &key, &validation)
        .map_err(|e| format!("assertion refused: {e}"))?
        .claims;
    if claims.scope != FCM_SCOPE {
        return Err(format!("scope {:?}", claims.scope));
    }
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if claims.iat > now + 5 || claims.exp <= claims.iat || claims.exp - claims.iat > 3600 {
        return Err(format!("iat {} exp {} at {now}", claims.iat, claims.exp));
    }
    Ok(())
}

async fn send(
    State(state): State<Arc<Mutex<FcmState>>>,
    Path((project, method)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let mut state = state.lock().unwrap();
    if project != PROJECT_ID || method != "messages:send" {
        state
            .problems
            .push(format!("send: wrong path {project}/{method}"));
        return StatusCode::NOT_FOUND.into_response();
    }
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let valid = bearer
        .and_then(|token| state.issued.get(token))
        .is_some_and(|expires| Instant::now() < *expires);
    if !valid {
        state.unauthenticated += 1;
        return fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            json!([]),
        );
    }
    if let Err(problem) = check_message(&body) {
        state.problems.push(format!("send: {problem}"));
        return fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            &format!("stand-in: {problem}"),
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest"}]),
        );
    }
    let reply = state.script.pop_front().unwrap_or(FcmReply::Accept);
    let response = match &reply {
        FcmReply::Accept => {
            let n = state.received.len() + 1;
            (
                StatusCode::OK,
                Json(json!({"name": format!("projects/{PROJECT_ID}/messages/{n}")})),
            )
                .into_response()
        }
        FcmReply::Unregistered => fcm_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Requested entity was not found.",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]),
        ),
        FcmReply::InvalidToken => fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "The registration token is not a valid FCM registration token",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INVALID_ARGUMENT"}]),
        ),
        FcmReply::InvalidData => fcm_error(
            StatusCode::BAD_REQUEST,
            "INVALID_ARGUMENT",
            "Invalid value at 'message.data[0].value' (TYPE_STRING), 12",
            json!([{"@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "message.data[0].value",
                                         "description": "Invalid value at 'message.data[0].value' (TYPE_STRING), 12"}]}]),
        ),
        FcmReply::RateLimited { retry_after } => {
            let mut response = fcm_error(
                StatusCode::TOO_MANY_REQUESTS,
                "RESOURCE_EXHAUSTED",
                "Quota exceeded.",
                json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "QUOTA_EXCEEDED"}]),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, retry_after.parse().unwrap());
            response
        }
        FcmReply::Internal => fcm_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            "Internal error encountered.",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "INTERNAL"}]),
        ),
        FcmReply::Unavailable => fcm_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "UNAVAILABLE",
            "The service is currently unavailable.",
            json!([{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNAVAILABLE"}]),
        ),
        FcmReply::Unauthorized => fcm_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials.",
            json!([]),
        ),
    };
    state.received.push(ReceivedMessage {
        body,
        status: response.status().as_u16(),
        at: Instant::now(),
    });
    response
}

fn fcm_error(status: StatusCode, code: &str, message: &str, details: Value) -> Response {
    (
        status,
        Json(json!({"error": {
            "code": status.as_u16(),
            "message": message,
            "status": code,
            "details": details,
        }})),
    )
        .into_response()
}

/// FCM's checks on the parts of a message the server sends: known fields only, a token,
/// string data, and the platform blocks' types.
fn check_message(body: &Value) -> Result<(), String> {
    let top = body.as_object().ok_or("body is not an object")?;
    if top.keys().any(|k| k != "message" && k != "validate_only") {
        return Err(format!("unknown top-level field in {top:?}"));
    }
    let message = body["message"].as_object().ok_or("no message")?;
    const FIELDS: [&str; 6] = [
        "token",
        "notification",
        "data",
        "android",
        "apns",
        "webpush",
    ];
    if let Some(unknown) = message.keys().find(|k| !FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field message.{unknown}"));
    }
    let token = message.get("token").and_then(Value::as_str).unwrap_or("");
    if token.is_empty() {
        return Err("message.token is missing".into());
    }
    let notification = message.get("notification").ok_or("no notification")?;
    for field in ["title", "body"] {
        if !notification[field].is_string() {
            return Err(format!("notification.{field} is not a string"));
        }
    }
    if let Some(data) = message.get("data") {
        let data = data.as_object().ok_or("data is not an object")?;
        if data.values().any(|v| !v.is_string()) {
            return Err("data values must be strings".into());
        }
    }
    let android = message.get("android").ok_or("no android block")?;
    if !matches!(
        android["priority"].as_str(),
        Some("high" | "normal" | "HIGH" | "NORMAL")
    ) {
        return Err(format!("android.priority {:?}", android["priority"]));
    }
    if !(android.get("collapse_key").is_none() || android["collapse_key"].is_string()) {
        return Err("android.collapse_key is not a string".into());
    }
    let apns_headers = message
        .get("apns")
        .and_then(|a| a.get("headers"))
        .and_then(Value::as_object)
        .ok_or("no apns.headers")?;
    if apns_headers.values().any(|v| !v.is_string()) {
        return Err("apns header values must be strings".into());
    }
    if let Some(id) = apns_headers.get("apns-collapse-id").and_then(Value::as_str) {
        if id.len() > 64 {
            return Err("apns-collapse-id longer than 64 bytes".into());
        }
    }
    Ok(())
}
