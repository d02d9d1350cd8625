//! The application: [`AppState`] (everything handlers share, built once at start-up) and
//! [`router`], which assembles the routes and the HTTP layers around them.
//!
//! Layers, outermost first: request id (set when absent, then propagated to the response), the
//! request trace span (method, path without the query string — the `/sync` `token=` parameter
//! must never reach the logs — and request id), sensitive-header redaction, security headers,
//! CORS, gzip compression, the JSON error shape for errors produced by layers, the request
//! timeout and the body size limit; the per-IP rate limit wraps the `/api` routes only, so
//! health probes are never limited. With metrics on (`METRICS_ADDR`), one more layer outside
//! all of these counts and times every request ([`crate::metrics`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

use crate::auth::cache::AuthCache;
use crate::auth::passwords::PasswordHasher;
use crate::auth::tokens::TokenKeys;
use crate::config::Config;
use crate::error::{error_for_status, ApiError};
use crate::metrics::{Metrics, SocketKind};
use crate::notify::mail::{mailer_from_config, Mailer};
use crate::ratelimit::{self, RateLimits};
use crate::store::{self, Store};
use crate::sync::registry::Registry;

/// Everything the handlers share. Cheap to clone: only `Arc`s.
#[derive(Clone)]
pub struct AppState {
    /// The configuration read at start-up.
    pub config: Arc<Config>,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Access-token signing and opaque-token hashing keys.
    pub tokens: Arc<TokenKeys>,
    /// Argon2id hashing with bounded concurrency.
    pub passwords: Arc<PasswordHasher>,
    /// Outgoing mail (SMTP, the log, or memory in tests).
    pub mailer: Arc<dyn Mailer>,
    /// Per-IP and per-account rate limits.
    pub limits: Arc<RateLimits>,
    /// The live partnership documents (one actor each) behind `/sync` and REST writes.
    pub sync: Arc<Registry>,
    /// Token versions and live partnerships read by recent requests (see
    /// [`crate::auth::cache`] for how stale they may be).
    pub auth_cache: Arc<AuthCache>,
    /// Set once the process is shutting down ([`AppState::drain`]): `/readyz` answers 503, and
    /// sync connections and event streams close with 1012 so clients reconnect elsewhere.
    pub draining: Arc<tokio::sync::watch::Sender<bool>>,
    /// The open WebSockets (sync connections, event streams), which a draining node waits for.
    pub sockets: OpenSockets,
    /// The Prometheus metrics, recorded only when `METRICS_ADDR` is set ([`crate::metrics`]).
    pub metrics: Metrics,
}

/// Counts the open WebSockets. An upgraded connection is no longer the HTTP server's, whose
/// graceful shutdown therefore does not wait for it: a draining node waits here until each has
/// sent its close frame, so clients see 1012 rather than a reset.
#[derive(Clone, Default)]
pub struct OpenSockets {
    open: Arc<(std::sync::atomic::AtomicUsize, tokio::sync::Notify)>,
    /// Where the open sockets are also counted by kind.
    metrics: Metrics,
}

impl OpenSockets {
    /// No WebSocket open yet; each one is also counted in `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self {
            open: Arc::default(),
            metrics,
        }
    }

    /// Counts one WebSocket of `kind` as open until the guard is dropped.
    pub fn open(&self, kind: SocketKind) -> OpenSocket {
        self.open
            .0
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.metrics.socket_opened(kind);
        OpenSocket {
            sockets: self.clone(),
            kind,
        }
    }

    /// Returns once no WebSocket is open.
    pub async fn all_closed(&self) {
        loop {
            // Created before the check, so a close in between still wakes it.
            let closed = self.open.1.notified();
            if self.open.0.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            closed.await;
        }
    }
}

/// One open WebSocket ([`OpenSockets::open`]).
pub struct OpenSocket {
    sockets: OpenSockets,
    kind: SocketKind,
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        self.sockets.metrics.socket_closed(self.kind);
        let counter = &self.sockets.open;
        if counter.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            counter.1.notify_waiters();
        }
    }
}

/// Why the application could not be assembled at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The database could not be opened or migrated.
    #[error("database: {0}")]
    Store(#[from] store::StoreError),
    /// The mailer could not be configured (bad `SMTP_URL`).
    #[error("mail: {0}")]
    Mail(#[from] crate::notify::mail::MailError),
    /// Auth could not be set up (argon2 parameters).
    #[error("auth: {0}")]
    Auth(#[from] crate::auth::AuthError),
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("env", &self.config.env)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the database named by the configuration (applying migrations) and builds every
    /// shared component, with the mailer the configuration asks for.
    pub async fn from_config(config: Config) -> Result<AppState, StartupError> {
        let store = store::connect(&config.database_url).await?;
        let mailer = mailer_from_config(&config)?;
        Self::with_parts(config, store, mailer)
    }

    /// Starts draining: no longer ready, and every sync connection and event stream closes
    /// (between two messages, so a merge in progress completes and is answered first).
    pub fn drain(&self) {
        self.draining.send_replace(true);
    }

    /// Whether the process is shutting down.
    pub fn is_draining(&self) -> bool {
        *self.draining.borrow()
    }

    /// Takes part in a cluster when the database is PostgreSQL (which several nodes can share):
    /// live documents then follow what the other nodes commit, told over Redis when `REDIS_URL`
    /// is set and by polling the database otherwise (`sync::cluster`). Needs a runtime.
    pub fn start_cluster(&self) {
        let url = &self.config.database_url;
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            crate::sync::cluster::start(
                &self.sync,
                self.store.clone(),
                crate::sync::cluster::ClusterConfig {
                    redis_url: self.config.redis_url.clone(),
                    prefix: self.config.redis_prefix.clone(),
                    poll_every: self.config.sync.cluster_poll,
                    safety_poll_every: self.config.sync.cluster_safety_poll,
                    presence_ttl: self.config.sync.presence_ttl,
                },
            );
        }
    }

    /// Starts this node's push sender when FCM or Web Push is configured: merges and operations
    /// then queue notifications for partners who are not watching (docs/push.md). Needs a
    /// runtime; the sender stops when the node drains.
    pub fn start_push(&self) -> Result<(), crate::push::PushSetupError> {
        let push = &self.config.push;
        if push.fcm.is_none() && push.web_push.is_none() {
            return Ok(());
        }
        let pusher = Arc::new(crate::push::Pusher::new(push)?);
        let wake = Arc::new(tokio::sync::Notify::new());
        self.sync
            .link_push(wake.clone(), self.config.push_give_up_after);
        let config = crate::notify::push_outbox::SenderConfig {
            give_up_after: self.config.push_give_up_after,
            ..Default::default()
        };
        let sender =
            crate::notify::push_outbox::PushSender::new(self.store.clone(), pusher, wake, config)
                .with_metrics(self.metrics.clone());
        tokio::spawn(sender.run(self.draining.subscribe()));
        tracing::info!("push notifications on");
        Ok(())
    }

    /// Binds `METRICS_ADDR` and serves the metrics there in the background (until the runtime
    /// stops: a draining node can still be watched). Returns the bound address (`METRICS_ADDR`
    /// may ask for port 0), or `None` when metrics are off. Needs a runtime.
    pub async fn start_metrics(&self) -> std::io::Result<Option<SocketAddr>> {
        let Some(addr) = self.config.metrics_addr else {
            return Ok(None);
        };
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let bound = listener.local_addr()?;
        let state = self.clone();
        tokio::spawn(async move {
            if let Err(err) = crate::metrics::serve(listener, state).await {
                tracing::error!(error = %err, "the metrics listener stopped");
            }
        });
        tracing::info!(address = %bound, "metrics listening");
        Ok(Some(bound))
    }

    /// Builds the state around an open store and a chosen mailer (tests pass a `MemoryMailer`).
    pub fn with_parts(
        config: Config,
        store: Arc<dyn Store>,
        mailer: Arc<dyn Mailer>,
    ) -> Result<AppState, StartupError> {
        let metrics = if config.metrics_addr.is_some() {
            Metrics::on()
        } else {
            Metrics::off()
        };
        Ok(AppState {
            sync: Registry::new(store.clone(), config.sync.clone(), metrics.clone()),
            auth_cache: Arc::new(AuthCache::default()),
            draining: Arc::new(tokio::sync::watch::channel(false).0),
            sockets: OpenSockets::new(metrics.clone()),
            tokens: Arc::new(TokenKeys::new(&config)),
            passwords: Arc::new(PasswordHasher::new(&config)?),
            limits: Arc::new(RateLimits::new(&config).with_metrics(metrics.clone())),
            metrics,
            store,
            mailer,
            config: Arc::new(config),
        })
    }
}

/// The whole HTTP application: `/api/*` (auth, users, partnerships, OpenAPI, docs), `/healthz`,
/// `/readyz`, and a JSON 404 for everything else.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()`: the per-IP rate limit
/// reads the peer address.
pub fn router(state: AppState) -> Router {
    let metrics = state.metrics.clone();
    let api = Router::new()
        .nest("/api/auth", crate::auth::routes::router())
        .merge(crate::routes::users::router())
        .merge(crate::routes::devices::router())
        .merge(crate::routes::partnerships::router())
        .merge(crate::routes::expenses::router())
        .merge(crate::routes::contributions::router())
        .merge(crate::routes::goals::router())
        .merge(crate::routes::approvals::router())
        .merge(crate::routes::messages::router())
        .merge(crate::routes::events::router())
        .merge(crate::routes::export::router())
        .merge(crate::routes::history::router())
        .merge(crate::openapi::router())
        .layer(middleware::from_fn_with_state(
            state.limits.clone(),
            ratelimit::per_ip,
        ));

    let body_limit = state.config.body_limit_bytes;
    let import = crate::routes::import::router(
        state.config.import_body_limit_bytes,
        state.config.import_timeout,
    )
    .layer(middleware::from_fn_with_state(
        state.limits.clone(),
        ratelimit::per_ip,
    ))
    .with_state(state.clone());
    let timeout = state.config.request_timeout;
    let cors = cors_layer(&state.config.cors_origins);

    let inner = Router::new()
        .merge(api)
        .route(
            "/sync",
            axum::routing::get(crate::sync::connection::handler),
        )
        .merge(crate::routes::health::router())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        // Merged after the global body limit and timeout, with its own: the import takes a
        // whole export, and writing a large one takes longer than any other request.
        .merge(import)
        .layer(middleware::from_fn(json_error_bodies))
        .layer(CompressionLayer::new().gzip(true))
        .layer(cors);
    let with_headers = SECURITY_HEADERS.iter().fold(inner, |app, (name, value)| {
        app.layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ))
    });
    // Applied last, so outermost: the id exists before the span is made, and the span covers all.
    let app = with_headers
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::COOKIE,
        ]))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(middleware::from_fn(crate::telemetry::trace_requests))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    // Outside everything, so it times the whole request and sees the status the client gets;
    // not installed at all while metrics are off.
    if metrics.is_on() {
        app.layer(middleware::from_fn_with_state(
            metrics,
            crate::metrics::track_requests,
        ))
    } else {
        app
    }
}

/// The span every request's logs are recorded in. The path is logged without its query string:
/// `/sync?token=…` carries an access token there. Its `trace_id` continues the caller's
/// `traceparent` (see [`crate::telemetry`]).
fn request_span(request: &Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-");
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        request_id = %request_id,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace) = request.extensions().get::<crate::telemetry::RequestTrace>() {
        trace.set(crate::telemetry::place_span(&span, trace.incoming.as_ref()));
    }
    span
}

fn cors_layer(origins: &[String]) -> CorsLayer {
    let base = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(crate::telemetry::TRACEPARENT),
        ])
        .expose_headers([
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static(crate::telemetry::TRACERESPONSE),
            header::RETRY_AFTER,
        ])
        .max_age(Duration::from_secs(600));
    if origins.iter().any(|o| o == "*") {
        return base.allow_origin(Any);
    }
    let allowed: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    base.allow_origin(AllowOrigin::list(allowed))
}

/// The Content-Security-Policy of API responses: they are JSON, never rendered as pages.
pub const API_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// The helmet set of security headers, added to every response that does not set its own
/// (the interactive docs page sets a wider Content-Security-Policy).
pub const SECURITY_HEADERS: [(&str, &str); 13] = [
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("content-security-policy", API_CSP),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("origin-agent-cluster", "?1"),
    ("x-dns-prefetch-control", "off"),
    ("x-download-options", "noopen"),
    ("x-permitted-cross-domain-policies", "none"),
    ("x-xss-protection", "0"),
    ("cache-control", "no-store"),
];

/// Rewrites error responses produced outside the handlers (axum's 405, tower-http's timeout and
/// body limit) into the API's JSON error shape, keeping their headers (`Allow`, `Retry-After`).
async fn json_error_bodies(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let Some(error) = error_for_status(status) else {
        return response;
    };
    let (parts, _) = response.into_parts();
    let mut rewritten = error.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
