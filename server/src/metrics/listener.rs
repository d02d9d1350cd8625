//! The metrics listener: `GET /metrics` on `METRICS_ADDR`, apart from the API's port so that
//! the figures are never served to the public by the API's listener, and its scrapes are
//! neither rate limited nor counted among the API's requests.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::prometheus_text;

use super::{Metrics, PoolState, RedisClient};
use crate::app::AppState;

/// The `Content-Type` of a scrape: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

/// How long a scrape waits for the outbox count before answering without refreshing it.
const OUTBOX_TIMEOUT: Duration = Duration::from_secs(2);

/// Serves `GET /metrics` on `listener` until the runtime stops. Everything else answers 404.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(state);
    axum::serve(listener, app).await
}

async fn metrics(State(state): State<AppState>) -> Response {
    match scrape(&state).await {
        Some(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Reads the figures kept elsewhere (live documents, the pool, Redis, the outbox) into their
/// gauges and encodes every metric; `None` when metrics are off.
pub async fn scrape(state: &AppState) -> Option<String> {
    let m = state.metrics.0.as_deref()?;
    m.live_documents
        .set(gauge_value(state.sync.live_documents().await));
    let pool = state.store.pool_stats();
    m.db_pool[PoolState::InUse as usize].set(i64::from(pool.open.saturating_sub(pool.idle)));
    m.db_pool[PoolState::Idle as usize].set(i64::from(pool.idle));
    m.db_pool_max.set(i64::from(pool.max));
    if state.config.redis_url.is_some() {
        // Created only here, so a node without Redis shows no Redis series at all.
        if state.sync.clustered() {
            m.redis
                .get_or_create(&[("client", RedisClient::Cluster.label())])
                .set(i64::from(state.sync.cluster_subscribed()));
        }
        if let Some(up) = state.limits.shared_counter_up() {
            m.redis
                .get_or_create(&[("client", RedisClient::RateLimits.label())])
                .set(i64::from(up));
        }
    }
    match tokio::time::timeout(OUTBOX_TIMEOUT, state.store.outbox_depth()).await {
        Ok(Ok(depth)) => {
            m.outbox_depth.set(depth);
        }
        Ok(Err(err)) => tracing::warn!(error = %err, "metrics: cannot count the push outbox"),
        Err(_) => tracing::warn!("metrics: counting the push outbox timed out"),
    }
    encode(&state.metrics)
}

/// The registry in the text format; `None` when metrics are off.
pub(super) fn encode(metrics: &Metrics) -> Option<String> {
    let m = metrics.0.as_deref()?;
    let mut text = String::new();
    // Writing into a String cannot fail.
    prometheus_text::encode(&mut text, &m.registry).ok()?;
    Some(text)
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
