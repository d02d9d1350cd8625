//! Rate limits: one per client IP for the whole API, and stricter ones for guessing passwords.
//!
//! * **Per IP** ([`per_ip`]): at most `API_RATE_LIMIT` requests per 15 minutes from one IP
//!   address; the next ones answer 429 with `Retry-After` until the window ends.
//! * **Login attempts** ([`RateLimits::check_login_attempt`]): after `LOGIN_RATE_LIMIT`
//!   (default 5) wrong passwords for one account from one IP within a minute, further attempts
//!   for that account from that IP answer 429 until the minute is over. From all IPs together
//!   an account may have four times as many attempts a minute before it is blocked everywhere:
//!   enough to stop a distributed guesser, while one attacker alone cannot lock the owner out
//!   of their account from another network.
//! * **Forgot-password** ([`RateLimits::check_forgot_password`]): the same number of requests
//!   per minute per (email, IP) and four times that per email, so nobody can flood an inbox with
//!   reset mails. The limit is counted before the account is looked up, so a 429 says nothing
//!   about whether the email is registered.
//! * **Data exports** ([`RateLimits::check_export`]): `EXPORT_RATE_LIMIT` (default
//!   [`EXPORTS_PER_HOUR`]) per user an hour (`GET /api/export` reads every row of a couple; a
//!   client repeating it in a loop would cost the database far more than ordinary requests).
//! * **Data imports** ([`RateLimits::check_import`]): `IMPORT_RATE_LIMIT` (default
//!   [`IMPORTS_PER_HOUR`]) attempts per user an hour (`POST /api/import` parses and checks a
//!   body of up to `IMPORT_BODY_LIMIT_BYTES`; a successful import happens once per partnership,
//!   so the budget is for retries of a file being fixed).
//!
//! # Where the counts live
//!
//! Counters are fixed windows kept behind the [`WindowCounter`] trait; [`RateLimits::new`]
//! picks the implementation from the configuration:
//!
//! * Without `REDIS_URL`, [`MemoryCounter`] keeps them in this process: right for one node.
//! * With `REDIS_URL`, [`RedisCounter`] keeps them in Redis (one expiring key per counter,
//!   `<REDIS_PREFIX>rl:<hashed key>`, counted atomically), so every node behind the load balancer
//!   counts against the same budget: a client gets `API_RATE_LIMIT` requests in all, not per
//!   node, and login attempts on one node count on the others.
//!
//! **When Redis is unreachable** (down, refusing, or not answering within 250 ms), each node
//! falls back to counting in its own memory ([`FallbackCounter`]) for as long as Redis fails:
//! requests are neither all refused nor let through unlimited, but the limits are per node
//! again, so across `N` nodes a client may get up to `N` times a limit. One warning is logged
//! when an outage starts (not one per request) and one notice when Redis answers again; from
//! then on the counts are shared again (the counts made in memory meanwhile are not carried
//! over). A dead Redis does not stall requests: a call waits at most about half a second, and
//! while Redis keeps failing the node only tries it again after a backoff of up to 2 s, the
//! calls in between going straight to memory. A `REDIS_URL` that is not a Redis URL at all is
//! logged as an error at start-up and the node counts in memory.
//!
//! # The client address
//!
//! The client IP is the socket peer address, so the server must be served with
//! `into_make_service_with_connect_info::<SocketAddr>()`. Behind a reverse proxy, list the
//! proxy's addresses in `TRUSTED_PROXIES`: a request whose peer is one of them is attributed to
//! the right-most address in `X-Forwarded-For` that is not itself a trusted proxy; from any
//! other peer the header is ignored, so no client can choose its own rate-limit key (see
//! [`TrustedProxies::client_ip`]). Without `TRUSTED_PROXIES`, every client behind a proxy
//! shares the proxy's address and budget.

use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::app::AppState;
use crate::config::Config;
use crate::error::ApiError;
use crate::metrics::{Metrics, RateLimit};
use crate::validation::Email;

mod client_addr;
mod fallback;
mod redis_counter;

pub use client_addr::{IpNet, TrustedProxies, X_FORWARDED_FOR};
pub use fallback::FallbackCounter;
pub use redis_counter::{RedisCounter, COMMAND_TIMEOUT, CONNECT_TIMEOUT};

/// Window of the per-IP API limit.
pub const API_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Window of the login and forgot-password limits.
pub const AUTH_WINDOW: Duration = Duration::from_secs(60);
/// Window of the data-export limit.
pub const EXPORT_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Data exports a user may start per [`EXPORT_WINDOW`] unless `EXPORT_RATE_LIMIT` says
/// otherwise: plenty for someone taking their data away (a retry or two of each format), few
/// enough that a loop cannot keep the database busy.
pub const EXPORTS_PER_HOUR: u32 = 5;
/// Window of the data-import limit.
pub const IMPORT_WINDOW: Duration = Duration::from_secs(60 * 60);
/// Data imports a user may attempt per [`IMPORT_WINDOW`] unless `IMPORT_RATE_LIMIT` says
/// otherwise: an import succeeds once per partnership, so these are attempts at a file being
/// corrected (each refused one names what is wrong); few enough that a loop cannot keep a node
/// busy parsing 64 MiB bodies.
pub const IMPORTS_PER_HOUR: u32 = 10;
/// How many times the per-(account, IP) limit an account may reach from all IPs together.
const ACCOUNT_WIDE_FACTOR: u32 = 4;

/// The state of one counter after counting or reading it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCount {
    /// Events counted in the current window.
    pub count: u64,
    /// Time until the window ends and the count starts again from zero.
    pub resets_in: Duration,
}

/// The counter backend could not be used.
#[derive(Debug, thiserror::Error)]
#[error("rate limit backend failed: {0}")]
pub struct CounterError(pub String);

/// Fixed-window event counters keyed by string: the storage behind every limit, replaceable by a
/// shared implementation when several nodes serve the API.
#[async_trait]
pub trait WindowCounter: Send + Sync + 'static {
    /// Counts one event for `key`; a window of length `window` starts with the first event after
    /// the previous one ended.
    async fn hit(&self, key: &str, window: Duration) -> Result<WindowCount, CounterError>;
    /// The current window of `key`, without counting (`None` when no window is open).
    async fn peek(&self, key: &str) -> Result<Option<WindowCount>, CounterError>;
    /// Forgets `key` (e.g. a login succeeded).
    async fn clear(&self, key: &str) -> Result<(), CounterError>;
    /// Whether the shared store of the counts answered the last call (metrics): `None` for
    /// counts kept in this process, which cannot be out of reach.
    fn shared_up(&self) -> Option<bool> {
        None
    }
    /// Asks the shared store of the counts whether it answers now (readiness): `None` for
    /// counts kept in this process.
    async fn ping_shared(&self) -> Option<Result<(), CounterError>> {
        None
    }
}

/// In-process [`WindowCounter`]: a map from key to (count, window end), pruned of ended windows
/// as it grows so that one-off keys do not accumulate.
#[derive(Debug, Default)]
pub struct MemoryCounter {
    windows: Mutex<HashMap<String, OpenWindow>>,
}

#[derive(Clone, Copy, Debug)]
struct OpenWindow {
    count: u64,
    ends_at: Instant,
}

/// Map size above which ended windows are removed on the next hit.
const PRUNE_ABOVE: usize = 10_000;

impl MemoryCounter {
    /// An empty counter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, OpenWindow>> {
        // A panic while holding the lock cannot leave a window half-updated, so a poisoned map
        // is still consistent.
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// [`WindowCounter::hit`] at an explicit instant (lets tests move time without sleeping).
    pub fn hit_at(&self, key: &str, window: Duration, now: Instant) -> WindowCount {
        let mut windows = self.lock();
        if windows.len() > PRUNE_ABOVE {
            windows.retain(|_, w| w.ends_at > now);
        }
        let open = windows
            .entry(key.to_string())
            .and_modify(|w| {
                if w.ends_at <= now {
                    *w = OpenWindow {
                        count: 0,
                        ends_at: now + window,
                    };
                }
            })
            .or_insert(OpenWindow {
                count: 0,
                ends_at: now + window,
            });
        open.count += 1;
        WindowCount {
            count: open.count,
            resets_in: open.ends_at - now,
        }
    }

    /// [`WindowCounter::peek`] at an explicit instant.
    pub fn peek_at(&self, key: &str, now: Instant) -> Option<WindowCount> {
        self.lock()
            .get(key)
            .filter(|w| w.ends_at > now)
            .map(|w| WindowCount {
                count: w.count,
                resets_in: w.ends_at - now,
            })
    }
}

#[async_trait]
impl WindowCounter for MemoryCounter {
    async fn hit(&self, key: &str, window: Duration) -> Result<WindowCount, CounterError> {
        Ok(self.hit_at(key, window, Instant::now()))
    }

    async fn peek(&self, key: &str) -> Result<Option<WindowCount>, CounterError> {
        Ok(self.peek_at(key, Instant::now()))
    }

    async fn clear(&self, key: &str) -> Result<(), CounterError> {
        self.lock().remove(key);
        Ok(())
    }
}

/// A limit was reached, or could not be checked.
#[derive(Debug, thiserror::Error)]
pub enum RateLimitError {
    /// Too many requests; come back after `retry_after_secs`.
    #[error("rate limited for {retry_after_secs} s")]
    Limited {
        /// Seconds until the window ends (at least 1).
        retry_after_secs: u64,
    },
    /// The counter backend failed; the request is refused rather than let through unchecked.
    #[error(transparent)]
    Backend(#[from] CounterError),
}

impl From<RateLimitError> for ApiError {
    fn from(err: RateLimitError) -> Self {
        match err {
            RateLimitError::Limited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            RateLimitError::Backend(e) => ApiError::internal(e),
        }
    }
}

/// Every rate limit of the server; built once at start-up and shared through `AppState`.
#[derive(Clone)]
pub struct RateLimits {
    counter: Arc<dyn WindowCounter>,
    api_per_window: u32,
    auth_per_window: u32,
    exports_per_window: u32,
    imports_per_window: u32,
    trusted_proxies: TrustedProxies,
    metrics: Metrics,
}

impl fmt::Debug for RateLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimits")
            .field("api_per_window", &self.api_per_window)
            .field("auth_per_window", &self.auth_per_window)
            .field("exports_per_window", &self.exports_per_window)
            .field("imports_per_window", &self.imports_per_window)
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

fn retry_after(count: WindowCount) -> RateLimitError {
    // Round up, so that a client that waits exactly this long finds the window over.
    let secs = count.resets_in.as_secs() + u64::from(count.resets_in.subsec_nanos() > 0);
    RateLimitError::Limited {
        retry_after_secs: secs.max(1),
    }
}

impl RateLimits {
    /// The limits of the configuration (`API_RATE_LIMIT`, `LOGIN_RATE_LIMIT`,
    /// `TRUSTED_PROXIES`), counted in Redis under `REDIS_PREFIX` when `REDIS_URL` is set (with
    /// this process's memory to fall back on while Redis fails) and in memory otherwise.
    ///
    /// Needs neither a runtime nor a reachable Redis: the connection is made on first use.
    pub fn new(config: &Config) -> Self {
        let counter: Arc<dyn WindowCounter> = match config.redis_url.as_deref() {
            None => Arc::new(MemoryCounter::new()),
            Some(url) => match RedisCounter::new(url, &config.redis_prefix) {
                Ok(redis) => Arc::new(FallbackCounter::new(redis)),
                Err(err) => {
                    tracing::error!(error = %err, "rate limits are counted per node");
                    Arc::new(MemoryCounter::new())
                }
            },
        };
        Self::with_counter(
            counter,
            config.api_rate_limit,
            config.login_max_failures_per_minute,
        )
        .with_exports_per_hour(config.export_rate_limit)
        .with_imports_per_hour(config.import_rate_limit)
        .with_trusted_proxies(config.trusted_proxies.clone())
    }

    /// Limits kept in `counter`: `api_per_15_min` requests per IP per 15 minutes, and
    /// `auth_per_minute` login failures (or forgot-password requests) per (account, IP) a minute.
    pub fn with_counter(
        counter: Arc<dyn WindowCounter>,
        api_per_15_min: u32,
        auth_per_minute: u32,
    ) -> Self {
        RateLimits {
            counter,
            api_per_window: api_per_15_min,
            auth_per_window: auth_per_minute,
            exports_per_window: EXPORTS_PER_HOUR,
            imports_per_window: IMPORTS_PER_HOUR,
            trusted_proxies: TrustedProxies::none(),
            metrics: Metrics::off(),
        }
    }

    /// These limits, with `per_hour` data exports a user may start an hour.
    pub fn with_exports_per_hour(mut self, per_hour: u32) -> Self {
        self.exports_per_window = per_hour;
        self
    }

    /// These limits, with `per_hour` data imports a user may attempt an hour.
    pub fn with_imports_per_hour(mut self, per_hour: u32) -> Self {
        self.imports_per_window = per_hour;
        self
    }

    /// These limits, counting their refusals in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Whether the shared counts (Redis) answered the last call; `None` when the counts are
    /// kept in this process.
    pub fn shared_counter_up(&self) -> Option<bool> {
        self.counter.shared_up()
    }

    /// Whether the shared counts (Redis) answer a PING now, within the command timeout;
    /// `None` when the counts are kept in this process.
    pub async fn ping_shared(&self) -> Option<Result<(), CounterError>> {
        self.counter.ping_shared().await
    }

    /// These limits, with the clients behind `proxies` told apart by `X-Forwarded-For`.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }

    /// The client address of a request from `peer` with `headers`: what every limit is keyed
    /// by (see [`TrustedProxies::client_ip`]).
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        self.trusted_proxies.client_ip(peer, headers)
    }

    fn account_wide_limit(&self) -> u64 {
        u64::from(self.auth_per_window) * u64::from(ACCOUNT_WIDE_FACTOR)
    }

    /// Counts one API request from `ip`; `Limited` once the 15-minute budget is spent.
    pub async fn check_api(&self, ip: IpAddr) -> Result<(), RateLimitError> {
        let count = self.counter.hit(&format!("api:{ip}"), API_WINDOW).await?;
        if count.count > u64::from(self.api_per_window) {
            self.metrics.rate_limited(RateLimit::Api);
            return Err(retry_after(count));
        }
        Ok(())
    }

    /// Counts one password attempt for `email` from `ip`, before the password is checked;
    /// `Limited` when that account has used up its attempts from this IP, or from everywhere.
    ///
    /// Attempts are counted up front rather than failures afterwards, so that a burst of
    /// parallel guesses cannot all pass the check before the first failure is recorded; a
    /// successful login then gives the (account, IP) pair its budget back
    /// ([`RateLimits::record_login_success`]). Unknown emails are counted the same way, so the
    /// limit tells nothing about which accounts exist.
    pub async fn check_login_attempt(
        &self,
        email: &Email,
        ip: IpAddr,
    ) -> Result<(), RateLimitError> {
        let pair = self
            .counter
            .hit(&login_key(email, Some(ip)), AUTH_WINDOW)
            .await?;
        let account = self
            .counter
            .hit(&login_key(email, None), AUTH_WINDOW)
            .await?;
        if pair.count > u64::from(self.auth_per_window) {
            self.metrics.rate_limited(RateLimit::Login);
            return Err(retry_after(pair));
        }
        if account.count > self.account_wide_limit() {
            self.metrics.rate_limited(RateLimit::Login);
            return Err(retry_after(account));
        }
        Ok(())
    }

    /// After a successful login: forgets the failures of this (account, IP) pair, so the owner
    /// who mistyped a few times starts again with a full budget. The account-wide count stays.
    pub async fn record_login_success(
        &self,
        email: &Email,
        ip: IpAddr,
    ) -> Result<(), RateLimitError> {
        self.counter.clear(&login_key(email, Some(ip))).await?;
        Ok(())
    }

    /// Counts one forgot-password request for `email` from `ip`; `Limited` beyond the budget.
    pub async fn check_forgot_password(
        &self,
        email: &Email,
        ip: IpAddr,
    ) -> Result<(), RateLimitError> {
        let pair = self
            .counter
            .hit(&forgot_key(email, Some(ip)), AUTH_WINDOW)
            .await?;
        let account = self
            .counter
            .hit(&forgot_key(email, None), AUTH_WINDOW)
            .await?;
        if pair.count > u64::from(self.auth_per_window) {
            self.metrics.rate_limited(RateLimit::ForgotPassword);
            return Err(retry_after(pair));
        }
        if account.count > self.account_wide_limit() {
            self.metrics.rate_limited(RateLimit::ForgotPassword);
            return Err(retry_after(account));
        }
        Ok(())
    }

    /// Counts one data export of `user`, whatever its format; `Limited` once the user has
    /// started `EXPORT_RATE_LIMIT` (default [`EXPORTS_PER_HOUR`]) within the hour. Keyed by user, not IP: the cost is the
    /// couple's data, wherever the request comes from.
    pub async fn check_export(&self, user: uuid::Uuid) -> Result<(), RateLimitError> {
        let count = self
            .counter
            .hit(&format!("export:{user}"), EXPORT_WINDOW)
            .await?;
        if count.count > u64::from(self.exports_per_window) {
            self.metrics.rate_limited(RateLimit::Export);
            return Err(retry_after(count));
        }
        Ok(())
    }

    /// Counts one data import attempt of `user`, refused or not; `Limited` once the user has
    /// made `IMPORT_RATE_LIMIT` (default [`IMPORTS_PER_HOUR`]) within the hour. Keyed by user
    /// like the export's.
    pub async fn check_import(&self, user: uuid::Uuid) -> Result<(), RateLimitError> {
        let count = self
            .counter
            .hit(&format!("import:{user}"), IMPORT_WINDOW)
            .await?;
        if count.count > u64::from(self.imports_per_window) {
            self.metrics.rate_limited(RateLimit::Import);
            return Err(retry_after(count));
        }
        Ok(())
    }
}

fn login_key(email: &Email, ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("login:{}:{ip}", email.as_str()),
        None => format!("login:{}", email.as_str()),
    }
}

fn forgot_key(email: &Email, ip: Option<IpAddr>) -> String {
    match ip {
        Some(ip) => format!("forgot:{}:{ip}", email.as_str()),
        None => format!("forgot:{}", email.as_str()),
    }
}

/// Middleware enforcing the per-IP API limit. Layer it on the API router:
///
/// ```
/// # use std::sync::Arc;
/// # use splitsave_server::ratelimit::{self, RateLimits};
/// # fn wire(router: axum::Router, limits: Arc<RateLimits>) -> axum::Router {
/// router.layer(axum::middleware::from_fn_with_state(limits, ratelimit::per_ip))
/// # }
/// ```
///
/// It reads the peer address from `ConnectInfo<SocketAddr>` (and, from a trusted proxy, the
/// client's from `X-Forwarded-For`), so the server must be served with
/// `router.into_make_service_with_connect_info::<SocketAddr>()`. Without it every request
/// answers 500 and the cause is logged, rather than all clients silently sharing one budget.
/// The address it counted is left in the request's extensions as a [`ClientIp`].
pub async fn per_ip(
    State(limits): State<Arc<RateLimits>>,
    mut request: Request,
    next: Next,
) -> Response {
    let Some(ConnectInfo(peer)) = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .copied()
    else {
        return missing_connect_info().into_response();
    };
    let ip = limits.client_ip(peer.ip(), request.headers());
    request.extensions_mut().insert(ClientIp(ip));
    match limits.check_api(ip).await {
        Ok(()) => next.run(request).await,
        Err(err) => ApiError::from(err).into_response(),
    }
}

/// The client's IP address: the socket peer (`ConnectInfo<SocketAddr>`), or behind a trusted
/// proxy the forwarded client (see [`RateLimits::client_ip`]); the same address [`per_ip`]
/// counts, and what the per-account limits of the auth handlers are keyed by. Like [`per_ip`],
/// it needs the server to be served with `into_make_service_with_connect_info::<SocketAddr>()`;
/// without it the request answers 500 and the cause is logged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if let Some(ip) = parts.extensions.get::<ClientIp>() {
            return Ok(*ip);
        }
        let ConnectInfo(peer) = *parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .ok_or_else(missing_connect_info)?;
        let state = AppState::from_ref(state);
        Ok(ClientIp(state.limits.client_ip(peer.ip(), &parts.headers)))
    }
}

fn missing_connect_info() -> ApiError {
    ApiError::internal(
        "no client address: serve the router with into_make_service_with_connect_info::<SocketAddr>()",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(raw: &str) -> Email {
        Email::parse(raw).expect("valid test email")
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn a_window_counts_until_it_ends_then_starts_again() {
        let counter = MemoryCounter::new();
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        assert_eq!(counter.hit_at("k", minute, start).count, 1);
        let second = counter.hit_at("k", minute, start + Duration::from_secs(20));
        assert_eq!(second.count, 2);
        assert_eq!(second.resets_in, Duration::from_secs(40));
        assert_eq!(
            counter
                .peek_at("k", start + Duration::from_secs(59))
                .map(|c| c.count),
            Some(2)
        );
        assert_eq!(counter.peek_at("k", start + minute), None);
        assert_eq!(counter.hit_at("k", minute, start + minute).count, 1);
    }

    #[test]
    fn keys_are_counted_separately() {
        let counter = MemoryCounter::new();
        let now = Instant::now();
        counter.hit_at("a", AUTH_WINDOW, now);
        counter.hit_at("a", AUTH_WINDOW, now);
        assert_eq!(counter.hit_at("b", AUTH_WINDOW, now).count, 1);
    }

    #[test]
    fn ended_windows_are_pruned_when_the_map_grows() {
        let counter = MemoryCounter::new();
        let start = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            counter.hit_at(&format!("old{i}"), Duration::from_secs(1), start);
        }
        counter.hit_at("new", AUTH_WINDOW, start + Duration::from_secs(2));
        assert_eq!(counter.lock().len(), 1);
    }

    #[tokio::test]
    async fn the_api_limit_answers_limited_after_the_budget_with_retry_after() {
        let limits = RateLimits::with_counter(Arc::new(MemoryCounter::new()), 3, 5);
        for _ in 0..3 {
            assert!(limits.check_api(ip(1)).await.is_ok());
        }
        match limits.check_api(ip(1)).await {
            Err(RateLimitError::Limited { retry_after_secs }) => {
                assert!(
                    (899..=900).contains(&retry_after_secs),
                    "{retry_after_secs}"
                )
            }
            other => panic!("expected Limited, got {other:?}"),
        }
        assert!(
            limits.check_api(ip(2)).await.is_ok(),
            "another IP has its own budget"
        );
    }

    #[tokio::test]
    async fn the_sixth_login_attempt_within_a_minute_is_limited() {
        let limits = RateLimits::with_counter(Arc::new(MemoryCounter::new()), 1000, 5);
        let ann = email("ann@example.com");
        for _ in 0..5 {
            assert!(limits.check_login_attempt(&ann, ip(1)).await.is_ok());
        }
        match limits.check_login_attempt(&ann, ip(1)).await {
            Err(RateLimitError::Limited { retry_after_secs }) => {
                assert!((1..=60).contains(&retry_after_secs))
            }
            other => panic!("expected Limited, got {other:?}"),
        }
        // Another account from the same IP, and the same account from another IP, still may try.
        let bob = email("bob@example.com");
        assert!(limits.check_login_attempt(&bob, ip(1)).await.is_ok());
        assert!(limits.check_login_attempt(&ann, ip(2)).await.is_ok());
    }

    #[tokio::test]
    async fn an_account_is_limited_everywhere_after_many_attempts_from_many_ips() {
        let limits = RateLimits::with_counter(Arc::new(MemoryCounter::new()), 1000, 5);
        let ann = email("ann@example.com");
        for i in 0..20u8 {
            assert!(
                limits.check_login_attempt(&ann, ip(i)).await.is_ok(),
                "attempt {i}"
            );
        }
        assert!(limits.check_login_attempt(&ann, ip(200)).await.is_err());
    }

    #[tokio::test]
    async fn a_successful_login_gives_that_ip_its_attempts_back() {
        let limits = RateLimits::with_counter(Arc::new(MemoryCounter::new()), 1000, 5);
        let ann = email("ann@example.com");
        for _ in 0..5 {
            assert!(limits.check_login_attempt(&ann, ip(1)).await.is_ok());
        }
        limits
            .record_login_success(&ann, ip(1))
            .await
            .expect("record");
        for _ in 0..5 {
            assert!(limits.check_login_attempt(&ann, ip(1)).await.is_ok());
        }
        assert!(limits.check_login_attempt(&ann, ip(1)).await.is_err());
    }

    #[tokio::test]
    async fn parallel_attempts_cannot_outrun_the_limit() {
        let limits = Arc::new(RateLimits::with_counter(
            Arc::new(MemoryCounter::new()),
            1000,
            5,
        ));
        let attempts: Vec<_> = (0..50)
            .map(|_| {
                let limits = limits.clone();
                tokio::spawn(async move {
                    let ann = email("ann@example.com");
                    limits.check_login_attempt(&ann, ip(1)).await.is_ok()
                })
            })
            .collect();
        let mut allowed = 0;
        for attempt in attempts {
            allowed += usize::from(attempt.await.expect("join"));
        }
        assert_eq!(allowed, 5);
    }

    #[tokio::test]
    async fn forgot_password_is_limited_per_email_and_ip() {
        let limits = RateLimits::with_counter(Arc::new(MemoryCounter::new()), 1000, 5);
        let ann = email("ann@example.com");
        for _ in 0..5 {
            assert!(limits.check_forgot_password(&ann, ip(1)).await.is_ok());
        }
        assert!(limits.check_forgot_password(&ann, ip(1)).await.is_err());
        assert!(limits
            .check_forgot_password(&email("bob@example.com"), ip(1))
            .await
            .is_ok());
    }

    #[test]
    fn the_limits_are_built_without_a_runtime_or_a_reachable_redis() {
        let mut config = Config::for_tests("/nonexistent", "sqlite::memory:");
        config.redis_url = Some("redis://127.0.0.1:1".into());
        config.trusted_proxies = TrustedProxies::parse("127.0.0.1").unwrap();
        let limits = RateLimits::new(&config);
        assert!(format!("{limits:?}").contains("127.0.0.1/32"));
        config.redis_url = Some("not a url".into());
        let _ = RateLimits::new(&config);
    }

    #[tokio::test]
    async fn a_node_whose_redis_is_unreachable_still_limits() {
        let mut config = Config::for_tests("/nonexistent", "sqlite::memory:");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        config.redis_url = Some(format!("redis://127.0.0.1:{port}"));
        config.api_rate_limit = 2;
        let limits = RateLimits::new(&config);
        assert!(limits.check_api(ip(1)).await.is_ok());
        assert!(limits.check_api(ip(1)).await.is_ok());
        assert!(matches!(
            limits.check_api(ip(1)).await,
            Err(RateLimitError::Limited { .. })
        ));
    }

    #[test]
    fn retry_after_rounds_up_and_is_at_least_one_second() {
        let limited = |resets_in| match retry_after(WindowCount {
            count: 9,
            resets_in,
        }) {
            RateLimitError::Limited { retry_after_secs } => retry_after_secs,
            RateLimitError::Backend(_) => 0,
        };
        assert_eq!(limited(Duration::from_millis(1500)), 2);
        assert_eq!(limited(Duration::from_secs(3)), 3);
        assert_eq!(limited(Duration::ZERO), 1);
    }
}
