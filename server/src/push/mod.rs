//! Push delivery: one notification to one device, through Firebase Cloud Messaging (HTTP v1) or
//! a browser's Web Push service, and what became of it.
//!
//! This layer does not choose whom to notify, store anything or retry: its caller (the sender
//! task working through the outbox) does. [`Pusher::send`] makes one attempt (two when FCM
//! refuses a cached access token) and answers a [`SendOutcome`] that tells the caller what to
//! do with the device and the message:
//!
//! | outcome | FCM | Web Push | the caller |
//! |---|---|---|---|
//! | [`Delivered`](SendOutcome::Delivered) | 2xx | 2xx (201) | marks the message sent |
//! | [`Gone`](SendOutcome::Gone) | 404, `UNREGISTERED`, 400 about the token | 404, 410 | deletes the device |
//! | [`Retry`](SendOutcome::Retry) | 429, 5xx, network error, timeout | 429, 5xx, network error, timeout | tries again later, not before `after` |
//! | [`Rejected`](SendOutcome::Rejected) | any other 4xx, sender not configured | any other 4xx, payload too large | drops the message, keeps the device |
//!
//! `docs/push.md` ("Delivery") says the same for operators, with how to get credentials.

pub mod config;
pub mod fcm;
pub mod webpush;

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::Serialize;

pub use config::{FcmConfig, PushConfig, VapidConfig};
pub use fcm::{FcmSender, ServiceAccount};
pub use webpush::{generate_vapid_keys, VapidKeyPair, WebPushSender};

/// Longest one request to a push service (or to Google's token endpoint) may take by default:
/// a slow service must not hold the sender's queue, and a timeout is retried later anyway.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest the TCP and TLS connection to a push service may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How much of a push service's error body an outcome or a log line quotes.
const QUOTED_BODY_CHARS: usize = 300;

/// The kind of app behind an FCM registration token. FCM delivers to all three; the platform
/// decides which platform block of the message matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Platform {
    /// An Android app.
    Android,
    /// An iOS app (FCM relays to APNs).
    Ios,
    /// A web app using the Firebase JS SDK.
    Web,
}

/// Where one device receives notifications, as it registered itself.
#[derive(Clone, PartialEq, Eq)]
pub enum PushTarget {
    /// A Firebase Cloud Messaging registration token.
    Fcm {
        /// The registration token the app got from the FCM SDK.
        token: String,
        /// Which kind of app holds it.
        platform: Platform,
    },
    /// A browser's Web Push subscription (`PushSubscription.toJSON()`).
    WebPush {
        /// The push service URL to POST to.
        endpoint: String,
        /// The subscription's P-256 public key, uncompressed, base64url (`keys.p256dh`).
        p256dh: String,
        /// The subscription's 16-byte authentication secret, base64url (`keys.auth`).
        auth: String,
    },
}

impl fmt::Debug for PushTarget {
    /// Leaves out the Web Push authentication secret, which lets anyone holding it read the
    /// device's notifications.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PushTarget::Fcm { token, platform } => f
                .debug_struct("Fcm")
                .field("token", token)
                .field("platform", platform)
                .finish(),
            PushTarget::WebPush {
                endpoint, p256dh, ..
            } => f
                .debug_struct("WebPush")
                .field("endpoint", endpoint)
                .field("p256dh", p256dh)
                .field("auth", &"<redacted>")
                .finish(),
        }
    }
}

/// One notification. It carries what the lock screen shows and ids for the app to fetch the
/// rest with: never amounts, names of expenses or message texts beyond `title` and `body`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PushMessage {
    /// The notification's title.
    pub title: String,
    /// The notification's text.
    pub body: String,
    /// Ids only (`partnership_id`, `approval_id`, …), for the app to open the right screen.
    pub data: BTreeMap<String, String>,
    /// Messages with the same key replace each other on the device and in the push service's
    /// queue (FCM `collapse_key` and `apns-collapse-id`, Web Push `Topic`); empty for none.
    pub collapse_key: String,
}

/// What became of one attempt to deliver one message to one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendOutcome {
    /// The push service accepted the message.
    Delivered,
    /// The device is no longer registered with its push service: delete it.
    Gone,
    /// A passing failure (rate limit, server error, network, timeout): try again later, not
    /// before `after` when the service said when (`Retry-After`).
    Retry {
        /// How long the push service asked to wait, if it did.
        after: Option<Duration>,
    },
    /// A permanent refusal of this message (or a sender that is not configured): do not retry
    /// it, keep the device. The text says why, for the log.
    Rejected(String),
}

/// Why a [`Pusher`] cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum PushSetupError {
    /// The FCM service account cannot be used (its private key does not sign).
    #[error("FCM: {0}")]
    Fcm(String),
    /// The VAPID keys cannot be used.
    #[error("Web Push: {0}")]
    WebPush(String),
    /// The HTTP client could not be built (TLS initialisation).
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Delivers notifications to whichever service a device registered with. Build one at start-up
/// and share it (`Arc<Pusher>`): it holds one HTTP client (one connection pool) for both
/// services and FCM's cached access token.
pub struct Pusher {
    fcm: Option<FcmSender>,
    web_push: Option<WebPushSender>,
}

impl fmt::Debug for Pusher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pusher")
            .field("fcm", &self.fcm.is_some())
            .field("web_push", &self.web_push.is_some())
            .finish()
    }
}

impl Pusher {
    /// A pusher for the configured services; either may be missing, and then sending to it
    /// answers [`SendOutcome::Rejected`].
    pub fn new(config: &PushConfig) -> Result<Pusher, PushSetupError> {
        let client = push_client(config, false)?;
        let fcm = match &config.fcm {
            Some(fcm) => Some(FcmSender::new(client.clone(), fcm).map_err(PushSetupError::Fcm)?),
            None => None,
        };
        let web_push = match &config.web_push {
            Some(vapid) => {
                let client = if config.public_endpoints_only {
                    // Users name Web Push hosts: resolved names must not lead inside.
                    push_client(config, true)?
                } else {
                    client
                };
                Some(
                    WebPushSender::new(client, vapid, config.public_endpoints_only)
                        .map_err(PushSetupError::WebPush)?,
                )
            }
            None => None,
        };
        Ok(Pusher { fcm, web_push })
    }

    /// True when FCM targets can be served.
    pub fn fcm_configured(&self) -> bool {
        self.fcm.is_some()
    }

    /// True when Web Push targets can be served.
    pub fn web_push_configured(&self) -> bool {
        self.web_push.is_some()
    }

    /// Makes one attempt to deliver `message` to `target` and says what became of it. Never
    /// fails: every error is one of the outcomes.
    pub async fn send(&self, target: &PushTarget, message: &PushMessage) -> SendOutcome {
        let outcome = match target {
            PushTarget::Fcm { token, platform } => match &self.fcm {
                Some(fcm) => fcm.send(token, *platform, message).await,
                None => SendOutcome::Rejected("fcm not configured".into()),
            },
            PushTarget::WebPush {
                endpoint,
                p256dh,
                auth,
            } => match &self.web_push {
                Some(web_push) => web_push.send(endpoint, p256dh, auth, message).await,
                None => SendOutcome::Rejected("web push not configured".into()),
            },
        };
        let service = match target {
            PushTarget::Fcm { .. } => "fcm",
            PushTarget::WebPush { .. } => "web_push",
        };
        tracing::debug!(service, ?outcome, "push attempt");
        outcome
    }
}

/// The wait a `Retry-After` header asks for: delay-seconds, or an HTTP-date (any of the three
/// forms RFC 9110 makes recipients accept) measured from `now`; a date in the past is no wait.
/// `None` without the header or when it cannot be read.
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The outcome of a transport failure: nothing was (knowingly) accepted, so it is worth
/// another try, timeouts included.
fn network_failure(service: &str, err: &reqwest::Error) -> SendOutcome {
    tracing::debug!(service, error = %err, timeout = err.is_timeout(), "push request failed");
    SendOutcome::Retry { after: None }
}

/// At most [`QUOTED_BODY_CHARS`] characters of an error body, on one line.
fn quote(body: &str) -> String {
    let one_line: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTED_BODY_CHARS)
        .collect();
    one_line.trim().to_string()
}

/// Seconds since the Unix epoch, for JWT claims.
fn unix_seconds(now: SystemTime) -> u64 {
    now.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The HTTP client for the push services (FCM, Web Push); with `public_only`, host names are
/// resolved to public addresses only ([`webpush::PublicOnlyResolver`]), for Web Push endpoints
/// that users name.
fn push_client(config: &PushConfig, public_only: bool) -> Result<reqwest::Client, reqwest::Error> {
    let mut builder = reqwest::Client::builder()
        .timeout(config.request_timeout)
        .connect_timeout(CONNECT_TIMEOUT.min(config.request_timeout))
        // A push service answers; it does not send us elsewhere. Following a redirect
        // would also carry the credentials to a host they were not made for.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("splitsave/", env!("CARGO_PKG_VERSION")));
    if public_only {
        builder = builder
            .dns_resolver(std::sync::Arc::new(webpush::PublicOnlyResolver))
            .no_proxy();
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry_after: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(retry_after).unwrap());
        headers
    }

    #[test]
    fn retry_after_reads_seconds_and_every_http_date_form() {
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:30 GMT").unwrap();
        assert_eq!(
            retry_after(&headers("7"), now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(" 120 "), now),
            Some(Duration::from_secs(120))
        );
        for date in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(
                retry_after(&headers(date), now),
                Some(Duration::from_secs(7)),
                "{date}"
            );
        }
        assert_eq!(
            retry_after(&headers("Sun, 06 Nov 1994 08:00:00 GMT"), now),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        assert_eq!(retry_after(&headers("soon"), now), None);
        assert_eq!(retry_after(&headers("-3"), now), None);
        assert_eq!(retry_after(&HeaderMap::new(), now), None);
    }

    #[test]
    fn a_web_push_target_never_prints_its_auth_secret() {
        let target = PushTarget::WebPush {
            endpoint: "https://push.example/abc".into(),
            p256dh: "BPublic".into(),
            auth: "secret-auth-value".into(),
        };
        let shown = format!("{target:?} {target:#?}");
        assert!(!shown.contains("secret-auth-value"), "{shown}");
        assert!(shown.contains("https://push.example/abc"), "{shown}");
    }

    #[test]
    fn quoting_keeps_error_bodies_short_and_on_one_line() {
        assert_eq!(quote(" a\nb\t"), "a b");
        assert_eq!(quote(&"x".repeat(1000)).len(), QUOTED_BODY_CHARS);
    }

    #[tokio::test]
    async fn an_unconfigured_service_rejects_without_a_request() {
        let pusher = Pusher::new(&PushConfig::default()).unwrap();
        assert!(!pusher.fcm_configured() && !pusher.web_push_configured());
        let message = PushMessage {
            title: "t".into(),
            body: "b".into(),
            data: BTreeMap::new(),
            collapse_key: String::new(),
        };
        let fcm = PushTarget::Fcm {
            token: "tok".into(),
            platform: Platform::Android,
        };
        assert_eq!(
            pusher.send(&fcm, &message).await,
            SendOutcome::Rejected("fcm not configured".into())
        );
        let web = PushTarget::WebPush {
            endpoint: "https://push.example/x".into(),
            p256dh: "k".into(),
            auth: "a".into(),
        };
        assert_eq!(
            pusher.send(&web, &message).await,
            SendOutcome::Rejected("web push not configured".into())
        );
    }
}
