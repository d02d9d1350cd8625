//! A stand-in of a browser's Web Push service, and the browser's side of a subscription.
//!
//! [`WebPushStandin::subscribe`] does what a browser does on `pushManager.subscribe`: a new
//! P-256 key pair and a 16-byte authentication secret, and an endpoint on the service bound to
//! the server's VAPID public key (`applicationServerKey`). A push to that endpoint must carry
//! `Authorization: vapid t=<JWT>, k=<key>` where the JWT is ES256-signed by that key's private
//! half, with `aud` = the service's origin, an `exp` in the future and at most 24 hours away,
//! and a `mailto:` or `https:` `sub` (otherwise 401), and `k` is that key (otherwise 403). The
//! body must be `aes128gcm` that decrypts with the subscription's private key and secret
//! (otherwise 400). Then the service answers what the test scripted, 201 by default.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aes_gcm::aead::Aead;
use aes_gcm::{Aes128Gcm, KeyInit, Nonce};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hkdf::Hkdf;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use serde::Deserialize;
use sha2::Sha256;
use splitsave_server::push::PushTarget;

use super::Running;

/// What the service answers a push that passed its checks.
#[derive(Clone, Debug)]
pub enum WebPushReply {
    /// 201 Created.
    Created,
    /// 404: no such subscription.
    NotFound,
    /// 410: the subscription expired or was unsubscribed.
    Gone,
    /// 429 with this `Retry-After`.
    TooManyRequests {
        /// The header's value.
        retry_after: String,
    },
}

/// A subscription as the browser keeps it: what it gives the app server, and its private key.
pub struct Subscription {
    /// The push endpoint.
    pub endpoint: String,
    /// `keys.p256dh`, base64url.
    pub p256dh: String,
    /// `keys.auth`, base64url.
    pub auth: String,
}

impl Subscription {
    /// The device as the server would have registered it.
    pub fn target(&self) -> PushTarget {
        PushTarget::WebPush {
            endpoint: self.endpoint.clone(),
            p256dh: self.p256dh.clone(),
            auth: self.auth.clone(),
        }
    }
}

/// The browser's secrets of one subscription, which only the browser (here: the stand-in)
/// holds.
struct BrowserKeys {
    secret: SecretKey,
    auth: [u8; 16],
}

/// One push that passed the checks.
#[derive(Clone, Debug)]
pub struct ReceivedPush {
    /// The subscription's id (the endpoint's last segment).
    pub subscription: String,
    /// The decrypted payload.
    pub plaintext: Vec<u8>,
    /// The `TTL` header.
    pub ttl: u64,
    /// The `Urgency` header.
    pub urgency: Option<String>,
    /// The `Topic` header.
    pub topic: Option<String>,
    /// The VAPID JWT's `sub`.
    pub vapid_subject: String,
    /// The status answered.
    pub status: u16,
}

struct ServiceState {
    origin: String,
    application_server_key: Vec<u8>,
    subscriptions: HashMap<String, BrowserKeys>,
    script: VecDeque<WebPushReply>,
    received: Vec<ReceivedPush>,
    refusals: Vec<String>,
}

/// The Web Push stand-in; stops when dropped.
pub struct WebPushStandin {
    server: Running,
    state: Arc<Mutex<ServiceState>>,
}

impl WebPushStandin {
    /// Starts a push service whose subscriptions are bound to the VAPID public key
    /// `application_server_key` (base64url, as browsers take it).
    pub async fn start(application_server_key: &str) -> WebPushStandin {
        let key = URL_SAFE_NO_PAD
            .decode(application_server_key)
            .expect("base64url application server key");
        let state = Arc::new(Mutex::new(ServiceState {
            origin: String::new(),
            application_server_key: key,
            subscriptions: HashMap::new(),
            script: VecDeque::new(),
            received: Vec::new(),
            refusals: Vec::new(),
        }));
        let router = Router::new()
            .route("/push/{id}", post(push))
            .with_state(state.clone());
        let server = Running::start(router).await;
        state.lock().unwrap().origin = server.origin();
        WebPushStandin { server, state }
    }

    /// The service's origin (`http://127.0.0.1:<port>`): the VAPID `aud` it expects.
    pub fn origin(&self) -> String {
        self.server.origin()
    }

    /// A new subscription, made like a browser makes one.
    pub fn subscribe(&self) -> Subscription {
        let secret = SecretKey::random(&mut rand::rngs::OsRng);
        let mut auth = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut auth);
        let id = uuid::Uuid::new_v4().simple().to_string();
        let subscription = Subscription {
            endpoint: format!("{}/push/{id}", self.origin()),
            p256dh: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
            auth: URL_SAFE_NO_PAD.encode(auth),
        };
        self.state
            .lock()
            .unwrap()
            .subscriptions
            .insert(id, BrowserKeys { secret, auth });
        subscription
    }

    /// Queues answers for the next pushes that pass the checks; then pushes are accepted.
    pub fn script(&self, replies: impl IntoIterator<Item = WebPushReply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Every push that passed the checks.
    pub fn received(&self) -> Vec<ReceivedPush> {
        self.state.lock().unwrap().received.clone()
    }

    /// Why pushes were refused, in order.
    pub fn refusals(&self) -> Vec<String> {
        self.state.lock().unwrap().refusals.clone()
    }
}

/// The VAPID claims a push service reads.
#[derive(Deserialize)]
struct VapidClaims {
    exp: u64,
    sub: String,
}

async fn push(
    State(state): State<Arc<Mutex<ServiceState>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut state = state.lock().unwrap();
    let verdict = check_push(&state, &id, &headers, &body);
    let received = match verdict {
        Ok(received) => received,
        Err((status, why)) => {
            state.refusals.push(why.clone());
            return (status, why).into_response();
        }
    };
    let (status, retry_after) = match state.script.pop_front().unwrap_or(WebPushReply::Created) {
        WebPushReply::Created => (StatusCode::CREATED, None),
        WebPushReply::NotFound => (StatusCode::NOT_FOUND, None),
        WebPushReply::Gone => (StatusCode::GONE, None),
        WebPushReply::TooManyRequests { retry_after } => {
            (StatusCode::TOO_MANY_REQUESTS, Some(retry_after))
        }
    };
    state.received.push(ReceivedPush {
        status: status.as_u16(),
        ..received
    });
    let mut response = status.into_response();
    if let Some(retry_after) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, retry_after.parse().unwrap());
    }
    response
}

fn check_push(
    state: &ServiceState,
    id: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<ReceivedPush, (StatusCode, String)> {
    let keys = state
        .subscriptions
        .get(id)
        .ok_or((StatusCode::NOT_FOUND, "no such subscription".to_string()))?;
    let subject = check_vapid(state, headers)?;
    let text = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let bad = |why: String| (StatusCode::BAD_REQUEST, why);
    let ttl = text("ttl")
        .and_then(|v| v.parse::<u64>().ok())
        .ok_or_else(|| bad("TTL is missing".into()))?;
    if text("content-encoding").as_deref() != Some("aes128gcm") {
        return Err(bad("content-encoding is not aes128gcm".into()));
    }
    if body.len() > 4096 {
        return Err((StatusCode::PAYLOAD_TOO_LARGE, "over 4096 bytes".into()));
    }
    let topic = text("topic");
    if let Some(topic) = &topic {
        let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if topic.len() > 32 || !topic.chars().all(url_safe) {
            return Err(bad(format!(
                "topic {topic:?} is not 32 base64url characters"
            )));
        }
    }
    let plaintext = decrypt_aes128gcm(body, &keys.secret, &keys.auth)
        .map_err(|why| bad(format!("decryption: {why}")))?;
    Ok(ReceivedPush {
        subscription: id.to_string(),
        plaintext,
        ttl,
        urgency: text("urgency"),
        topic,
        vapid_subject: subject,
        status: 0,
    })
}

/// RFC 8292: the JWT is checked against the subscription's application server key, whatever
/// key the request names; then the named key must be that key. Returns the `sub`.
fn check_vapid(state: &ServiceState, headers: &HeaderMap) -> Result<String, (StatusCode, String)> {
    let unauthorized = |why: &str| (StatusCode::UNAUTHORIZED, format!("vapid: {why}"));
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("no authorization"))?;
    let params = value
        .strip_prefix("vapid ")
        .ok_or_else(|| unauthorized("not the vapid scheme"))?;
    let mut token = None;
    let mut named_key = None;
    for param in params.split(',') {
        match param.trim().split_once('=') {
            Some(("t", v)) => token = Some(v.trim()),
            Some(("k", v)) => named_key = Some(v.trim()),
            _ => return Err(unauthorized("unknown parameter")),
        }
    }
    let (token, named_key) = token
        .zip(named_key)
        .ok_or_else(|| unauthorized("t and k are both needed"))?;
    let key = &state.application_server_key;
    let (x, y) = (&key[1..33], &key[33..65]);
    let decoding =
        DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
            .expect("application server key");
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[&state.origin]);
    validation.set_required_spec_claims(&["exp", "aud", "sub"]);
    validation.leeway = 0;
    let claims = jsonwebtoken::decode::<VapidClaims>(token, &decoding, &validation)
        .map_err(|e| unauthorized(&format!("signature or claims refused: {e}")))?
        .claims;
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    if claims.exp > now + 24 * 60 * 60 {
        return Err(unauthorized("exp more than 24 hours away"));
    }
    if !(claims.sub.starts_with("mailto:") || claims.sub.starts_with("https:")) {
        return Err(unauthorized("sub is not a mailto: or https: contact"));
    }
    if URL_SAFE_NO_PAD.decode(named_key).ok().as_ref() != Some(key) {
        return Err((
            StatusCode::FORBIDDEN,
            "vapid: k is not the subscription's application server key".into(),
        ));
    }
    Ok(claims.sub)
}

/// Decrypts a Web Push message body (RFC 8291 section 3.4 key derivation over RFC 8188's
/// `aes128gcm` framing) as the browser holding `ua_secret` and `auth` does. The body is one
/// record, as RFC 8291 requires.
pub fn decrypt_aes128gcm(
    body: &[u8],
    ua_secret: &SecretKey,
    auth: &[u8; 16],
) -> Result<Vec<u8>, String> {
    // Header: salt (16) | record size (4) | key id length (1) | key id (the sender's key).
    if body.len() < 21 {
        return Err("shorter than the header".into());
    }
    let salt = &body[..16];
    let record_size = u32::from_be_bytes(body[16..20].try_into().unwrap()) as usize;
    let id_len = usize::from(body[20]);
    if id_len != 65 || body.len() < 21 + id_len {
        return Err(format!("key id of {id_len} bytes"));
    }
    let as_public = PublicKey::from_sec1_bytes(&body[21..21 + id_len])
        .map_err(|_| "the key id is not a P-256 point")?;
    let record = &body[21 + id_len..];
    if record.len() > record_size || record.len() < 17 {
        return Err(format!(
            "a record of {} bytes with record size {record_size}",
            record.len()
        ));
    }
    let shared = p256::ecdh::diffie_hellman(ua_secret.to_nonzero_scalar(), as_public.as_affine());
    // IKM = HKDF(salt = auth, ikm = ECDH, info = "WebPush: info" 0x00 ua_public as_public).
    let mut key_info = b"WebPush: info\0".to_vec();
    key_info.extend_from_slice(ua_secret.public_key().to_encoded_point(false).as_bytes());
    key_info.extend_from_slice(as_public.to_encoded_point(false).as_bytes());
    let mut ikm = [0u8; 32];
    Hkdf::<Sha256>::new(Some(auth), shared.raw_secret_bytes().as_slice())
        .expand(&key_info, &mut ikm)
        .map_err(|e| e.to_string())?;
    // CEK and nonce = HKDF(salt, IKM) with RFC 8188's info strings.
    let prk = Hkdf::<Sha256>::new(Some(salt), &ikm);
    let mut cek = [0u8; 16];
    let mut nonce = [0u8; 12];
    prk.expand(b"Content-Encoding: aes128gcm\0", &mut cek)
        .map_err(|e| e.to_string())?;
    prk.expand(b"Content-Encoding: nonce\0", &mut nonce)
        .map_err(|e| e.to_string())?;
    // The only record is the last: its nonce is the base nonce (sequence number 0).
    let padded = Aes128Gcm::new_from_slice(&cek)
        .map_err(|e| e.to_string())?
        .decrypt(Nonce::from_slice(&nonce), record)
        .map_err(|_| "authentication failed")?;
    // The last record's plaintext ends with the delimiter 0x02 and then zero padding.
    let end = padded
        .iter()
        .rposition(|b| *b != 0)
        .ok_or("no padding delimiter")?;
    if padded[end] != 2 {
        return Err(format!("padding delimiter {:#04x}, not 0x02", padded[end]));
    }
    Ok(padded[..end].to_vec())
}
