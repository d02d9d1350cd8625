//! Web Push: a POST of the encrypted message to the subscription's push service (RFC 8030),
//! encrypted for the browser with `aes128gcm` (RFC 8291) and signed by the server with VAPID
//! (RFC 8292).
//!
//! The payload encryption is `web-push-native`'s: it is written on the RustCrypto crates
//! (`p256`, `aes-gcm`, `hkdf`), brings no HTTP client (the request goes out through the
//! server's one reqwest client, on rustls) and no OpenSSL. The `web-push` crate sends through
//! its own client (isahc, that is libcurl, or hyper-tls) and encrypts with `ece`, whose only
//! backend is OpenSSL. `web-push-native`'s VAPID feature is left off: it would add a second
//! JWT library (`jwt-simple`), and the VAPID token, a small ES256 JWT, is signed with
//! `jsonwebtoken`, which already signs the server's other tokens.
//!
//! Each request carries `TTL` ([`TTL`]: how long the push service keeps the message for an
//! offline browser), `Urgency: high`, `Topic` (the collapse key, see [`topic_for`]: a newer
//! message with the same topic replaces a queued one) and
//! `Authorization: vapid t=<JWT>, k=<public key>`, the JWT claiming `aud` = the endpoint's
//! origin, `exp` = 12 hours from now (RFC 8292 allows at most 24) and `sub` = the operator's
//! contact (`VAPID_SUBJECT`).

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::pkcs8::EncodePrivateKey;
use p256::{PublicKey, SecretKey};
use reqwest::{StatusCode, Url};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::config::VapidConfig;
use super::{network_failure, quote, retry_after, unix_seconds, PushMessage, SendOutcome};
use crate::validation::push::{is_public_host, is_public_ip};

/// How long a push service keeps a message for a browser that is offline: a day, after which
/// a notification about the couple's money is stale (the app shows the current state anyway).
pub const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// The largest encrypted body push services must accept (RFC 8030 section 7.2: 4096 bytes).
pub const MAX_ENCRYPTED_BYTES: usize = 4096;

/// How long a VAPID token is valid (RFC 8292 allows at most 24 hours).
const VAPID_TOKEN_LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);

/// RFC 8030 section 5.4: a topic is at most 32 characters of the URL-safe base64 alphabet.
const TOPIC_MAX_CHARS: usize = 32;

/// A VAPID key pair, base64url without padding: the P-256 private scalar (32 bytes) and the
/// uncompressed public point (65 bytes), which browsers take as `applicationServerKey`. Its
/// `Debug` never shows the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct VapidKeyPair {
    /// `VAPID_PRIVATE_KEY`.
    pub private_key: String,
    /// `VAPID_PUBLIC_KEY`.
    pub public_key: String,
}

impl std::fmt::Debug for VapidKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VapidKeyPair")
            .field("private_key", &"<redacted>")
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// A new random VAPID key pair (what `splitsave vapid-keys` prints).
pub fn generate_vapid_keys() -> VapidKeyPair {
    let secret = SecretKey::random(&mut rand::rngs::OsRng);
    VapidKeyPair {
        private_key: URL_SAFE_NO_PAD.encode(secret.to_bytes()),
        public_key: URL_SAFE_NO_PAD.encode(secret.public_key().to_encoded_point(false).as_bytes()),
    }
}

/// Decodes base64url as browsers and key tools write it: padded or not, and tolerating the
/// standard alphabet that some clients send.
pub fn decode_base64url(text: &str) -> Option<Vec<u8>> {
    let normalized: String = text
        .trim()
        .trim_end_matches('=')
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    URL_SAFE_NO_PAD.decode(normalized).ok()
}

/// The signing key of a VAPID key pair, after checking that the public key is the private
/// key's (a mismatch would have every browser refuse the server's messages).
pub(crate) fn vapid_signing_key(
    private_key: &str,
    public_key: &str,
) -> Result<EncodingKey, String> {
    let scalar = decode_base64url(private_key)
        .filter(|b| b.len() == 32)
        .ok_or("VAPID_PRIVATE_KEY is not 32 bytes of base64url")?;
    let secret =
        SecretKey::from_slice(&scalar).map_err(|_| "VAPID_PRIVATE_KEY is not a P-256 key")?;
    let public = decode_base64url(public_key).ok_or("VAPID_PUBLIC_KEY is not base64url")?;
    if secret.public_key().to_encoded_point(false).as_bytes() != public.as_slice() {
        return Err("VAPID_PUBLIC_KEY is not the public key of VAPID_PRIVATE_KEY".into());
    }
    let pkcs8 = secret
        .to_pkcs8_der()
        .map_err(|e| format!("VAPID_PRIVATE_KEY cannot be encoded: {e}"))?;
    let key = EncodingKey::from_ec_der(pkcs8.as_bytes());
    sign_vapid(
        &key,
        "https://push.example",
        "mailto:check@example.com",
        SystemTime::now(),
    )
    .map_err(|e| format!("VAPID_PRIVATE_KEY cannot sign: {e}"))?;
    Ok(key)
}

/// The VAPID token's claims (RFC 8292 section 2).
#[derive(Serialize)]
struct VapidClaims<'a> {
    aud: &'a str,
    exp: u64,
    sub: &'a str,
}

fn sign_vapid(
    key: &EncodingKey,
    audience: &str,
    subject: &str,
    now: SystemTime,
) -> Result<String, jsonwebtoken::errors::Error> {
    let claims = VapidClaims {
        aud: audience,
        exp: unix_seconds(now) + VAPID_TOKEN_LIFETIME.as_secs(),
        sub: subject,
    };
    jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, key)
}

/// The `Topic` header for a collapse key: the key itself when it is at most 32 URL-safe base64
/// characters, otherwise the first 32 characters of the base64url SHA-256 of the key (192
/// bits, so two keys never share a topic by accident, as replacing characters could make
/// them). `None` for an empty key.
pub fn topic_for(collapse_key: &str) -> Option<String> {
    if collapse_key.is_empty() {
        return None;
    }
    let url_safe = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if collapse_key.len() <= TOPIC_MAX_CHARS && collapse_key.chars().all(url_safe) {
        return Some(collapse_key.to_string());
    }
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(collapse_key.as_bytes()));
    Some(digest[..TOPIC_MAX_CHARS].to_string())
}

/// Sends to Web Push services with the server's VAPID key. Built by [`super::Pusher`].
pub struct WebPushSender {
    client: reqwest::Client,
    /// Refuse endpoints whose host is an address that is not public (names are checked by
    /// the client's resolver).
    public_only: bool,
    key: EncodingKey,
    public_key: String,
    subject: String,
}

impl std::fmt::Debug for WebPushSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebPushSender")
            .field("public_key", &self.public_key)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

impl WebPushSender {
    /// A sender using `client` (whose timeouts apply) and the configured VAPID keys.
    pub fn new(
        client: reqwest::Client,
        config: &VapidConfig,
        public_only: bool,
    ) -> Result<WebPushSender, String> {
        let key = vapid_signing_key(&config.private_key, &config.public_key)?;
        let public_key = decode_base64url(&config.public_key)
            .map(|bytes| URL_SAFE_NO_PAD.encode(bytes))
            .ok_or("VAPID_PUBLIC_KEY is not base64url")?;
        Ok(WebPushSender {
            client,
            public_only,
            key,
            public_key,
            subject: config.subject.clone(),
        })
    }

    /// Encrypts `message` for the subscription (`p256dh`, `auth`) and posts it to `endpoint`.
    pub async fn send(
        &self,
        endpoint: &str,
        p256dh: &str,
        auth: &str,
        message: &PushMessage,
    ) -> SendOutcome {
        let url = match Url::parse(endpoint) {
            Ok(url) if matches!(url.scheme(), "https" | "http") => url,
            _ => {
                return SendOutcome::Rejected("web push: the endpoint is not an http(s) URL".into())
            }
        };
        if self.public_only
            && (url.scheme() != "https" || !url.host_str().is_some_and(is_public_host))
        {
            return SendOutcome::Rejected(
                "web push: the endpoint is not a public https URL".into(),
            );
        }
        let body = match encrypt(message, p256dh, auth) {
            Ok(body) => body,
            Err(why) => return SendOutcome::Rejected(format!("web push: {why}")),
        };
        let origin = url.origin().ascii_serialization();
        let token = match sign_vapid(&self.key, &origin, &self.subject, SystemTime::now()) {
            Ok(token) => token,
            Err(e) => return SendOutcome::Rejected(format!("web push: cannot sign VAPID: {e}")),
        };
        let mut request = self
            .client
            .post(url)
            .header("TTL", TTL.as_secs())
            .header("Urgency", "high")
            .header(reqwest::header::CONTENT_ENCODING, "aes128gcm")
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .header(
                reqwest::header::AUTHORIZATION,
                format!("vapid t={token}, k={}", self.public_key),
            );
        if let Some(topic) = topic_for(&message.collapse_key) {
            request = request.header("Topic", topic);
        }
        let response = match request.body(body).send().await {
            Ok(response) => response,
            Err(err) => return network_failure("web push", &err),
        };
        let status = response.status();
        let after = retry_after(response.headers(), SystemTime::now());
        let text = response.text().await.unwrap_or_default();
        outcome_of(status, after, &text)
    }
}

/// The `aes128gcm` body for one subscription: the JSON of `message`, encrypted. Refused when
/// the subscription's keys are malformed or the result exceeds [`MAX_ENCRYPTED_BYTES`].
pub fn encrypt(message: &PushMessage, p256dh: &str, auth: &str) -> Result<Vec<u8>, String> {
    let ua_public = decode_base64url(p256dh)
        .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
        .ok_or("the subscription's p256dh is not a P-256 public key")?;
    let ua_auth = decode_base64url(auth)
        .filter(|bytes| bytes.len() == 16)
        .ok_or("the subscription's auth secret is not 16 bytes")?;
    let plaintext = serde_json::to_vec(message).map_err(|e| e.to_string())?;
    let body = web_push_native::encrypt(
        plaintext,
        &ua_public,
        web_push_native::Auth::from_slice(&ua_auth),
    )
    .map_err(|e| format!("cannot encrypt: {e}"))?;
    if body.len() > MAX_ENCRYPTED_BYTES {
        return Err(format!(
            "the message is {} bytes encrypted, more than {MAX_ENCRYPTED_BYTES}",
            body.len()
        ));
    }
    Ok(body)
}

/// What a push service's answer means (see the table in [`super`]).
pub fn outcome_of(status: StatusCode, retry_after: Option<Duration>, body: &str) -> SendOutcome {
    match status {
        s if s.is_success() => SendOutcome::Delivered,
        StatusCode::NOT_FOUND | StatusCode::GONE => SendOutcome::Gone,
        s if s == StatusCode::TOO_MANY_REQUESTS || s.is_server_error() => {
            SendOutcome::Retry { after: retry_after }
        }
        s => SendOutcome::Rejected(format!("web push {}: {}", s.as_u16(), quote(body))),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::dns::Resolve as _;

    #[tokio::test]
    async fn the_public_only_resolver_gives_no_address_inside_the_network() {
        let name: reqwest::dns::Name = "localhost".parse().expect("a name");
        assert!(PublicOnlyResolver.resolve(name).await.is_err());
    }

    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn generated_keys_are_a_matching_p256_pair() {
        let pair = generate_vapid_keys();
        assert_eq!(decode_base64url(&pair.private_key).unwrap().len(), 32);
        let public = decode_base64url(&pair.public_key).unwrap();
        assert_eq!(public.len(), 65);
        assert_eq!(public[0], 0x04, "uncompressed point");
        assert!(vapid_signing_key(&pair.private_key, &pair.public_key).is_ok());
        assert_ne!(generate_vapid_keys(), pair);
        assert!(!format!("{pair:?}").contains(&pair.private_key));
    }

    #[test]
    fn a_public_key_of_another_pair_is_refused() {
        let a = generate_vapid_keys();
        let b = generate_vapid_keys();
        let Err(err) = vapid_signing_key(&a.private_key, &b.public_key) else {
            panic!("a mismatched pair is accepted");
        };
        assert!(err.contains("not the public key"), "{err}");
        assert!(vapid_signing_key("short", &a.public_key).is_err());
    }

    #[test]
    fn topics_keep_short_url_safe_keys_and_hash_the_rest() {
        assert_eq!(topic_for(""), None);
        assert_eq!(topic_for("approval-42_x").as_deref(), Some("approval-42_x"));
        let exactly_32 = "a".repeat(32);
        assert_eq!(topic_for(&exactly_32), Some(exactly_32.clone()));
        for key in ["approval:42", &"a".repeat(33), "dépense"] {
            let topic = topic_for(key).unwrap();
            assert_eq!(topic.len(), 32, "{key}");
            assert!(topic
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
            assert_eq!(topic_for(key), Some(topic), "stable");
        }
        assert_ne!(topic_for("approval:42"), topic_for("approval_42"));
    }

    #[test]
    fn base64url_is_read_padded_unpadded_and_in_the_standard_alphabet() {
        assert_eq!(decode_base64url("-_8").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64url("-_8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64url("+/8=").unwrap(), vec![0xfb, 0xff]);
        assert_eq!(decode_base64url("!!"), None);
    }

    #[test]
    fn push_service_answers_map_to_outcomes() {
        let s = |c| StatusCode::from_u16(c).unwrap();
        let after = Some(Duration::from_secs(3));
        assert_eq!(outcome_of(s(201), None, ""), SendOutcome::Delivered);
        assert_eq!(outcome_of(s(404), None, ""), SendOutcome::Gone);
        assert_eq!(outcome_of(s(410), None, ""), SendOutcome::Gone);
        assert_eq!(outcome_of(s(429), after, ""), SendOutcome::Retry { after });
        assert_eq!(
            outcome_of(s(503), None, ""),
            SendOutcome::Retry { after: None }
        );
        assert_eq!(
            outcome_of(s(413), None, "too big"),
            SendOutcome::Rejected("web push 413: too big".into())
        );
        assert!(matches!(
            outcome_of(s(403), None, ""),
            SendOutcome::Rejected(_)
        ));
    }

    #[test]
    fn a_message_too_large_for_push_services_is_refused() {
        let browser = SecretKey::random(&mut rand::rngs::OsRng);
        let p256dh =
            URL_SAFE_NO_PAD.encode(browser.public_key().to_encoded_point(false).as_bytes());
        let auth = URL_SAFE_NO_PAD.encode([7u8; 16]);
        let mut message = PushMessage {
            title: "t".into(),
            body: String::new(),
            data: BTreeMap::new(),
            collapse_key: String::new(),
        };
        assert!(encrypt(&message, &p256dh, &auth).is_ok());
        message.body = "x".repeat(MAX_ENCRYPTED_BYTES);
        let err = encrypt(&message, &p256dh, &auth).unwrap_err();
        assert!(err.contains("more than 4096"), "{err}");
        assert!(encrypt(&message, "not-a-key", &auth).is_err());
        assert!(encrypt(&message, &p256dh, "c2hvcnQ").is_err());
    }
}

/// Resolves push services' host names to public addresses only: a name that leads to a
/// private, loopback or link-local address (or to nothing else) fails to resolve, so a
/// subscription cannot make the server post into its own network, even by a name that
/// resolved elsewhere when it was registered.
#[derive(Debug)]
pub struct PublicOnlyResolver;

impl reqwest::dns::Resolve for PublicOnlyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public_ip(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} has no public address").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}
