//! Probes for orchestrators: `/healthz` (the process answers) and `/readyz` (it can serve:
//! the database answers, and it is not draining). Redis, when configured, is checked and
//! reported too, but a node whose Redis is away still serves correctly (commits reach the other
//! nodes by polling PostgreSQL, rate limits count in memory: docs/several-nodes.md), so it
//! stays ready and says `degraded`: taking every node out of the load balancer because their
//! shared Redis went away would stop a service that works.

use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::ApiError;

/// How long readiness waits for the database before answering 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long readiness waits for Redis (its commands time out sooner anyway).
const REDIS_TIMEOUT: Duration = Duration::from_secs(1);

/// Body of a healthy probe.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// `"ok"`; from `/readyz`, `"degraded"` when Redis is configured but does not answer.
    pub status: &'static str,
    /// What `/readyz` checked (absent from `/healthz`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checks: Option<ReadyChecks>,
}

/// The dependencies `/readyz` asked.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyChecks {
    /// `"ok"` (otherwise the answer is a 503).
    pub database: &'static str,
    /// `"ok"`, `"unavailable"` (no answer to a PING within a second) or `"not_configured"`.
    pub redis: &'static str,
}

/// The probe routes (not rate limited).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// Liveness: answers as long as the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is alive", body = HealthStatus)))]
pub async fn healthz() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok",
        checks: None,
    })
}

/// Readiness: 200 when the database answers within two seconds (with Redis, when configured,
/// asked at the same time and reported: `degraded` when it does not answer, still 200); 503
/// `service_unavailable` when the database does not answer or the node is draining.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve (`degraded` without Redis)", body = HealthStatus),
        (status = 503, description = "The database does not answer, or the node is shutting down", body = crate::error::ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::ServiceUnavailable("shutting down"));
    }
    let database = tokio::time::timeout(READY_TIMEOUT, state.store.ping());
    let redis = tokio::time::timeout(REDIS_TIMEOUT, state.limits.ping_shared());
    let (database, redis) = tokio::join!(database, redis);
    match database {
        Ok(Ok(())) => {}
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database ping failed");
            return Err(ApiError::ServiceUnavailable("database"));
        }
        Err(_) => return Err(ApiError::ServiceUnavailable("database")),
    }
    let redis = match redis {
        Ok(None) => "not_configured",
        Ok(Some(Ok(()))) => "ok",
        Ok(Some(Err(err))) => {
            tracing::warn!(error = %err, "readiness: Redis does not answer");
            "unavailable"
        }
        Err(_) => {
            tracing::warn!("readiness: Redis did not answer within a second");
            "unavailable"
        }
    };
    Ok(Json(HealthStatus {
        status: if redis == "unavailable" {
            "degraded"
        } else {
            "ok"
        },
        checks: Some(ReadyChecks {
            database: "ok",
            redis,
        }),
    }))
}
