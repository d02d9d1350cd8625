//! Probes for orchestrators: `/healthz` (the process answers) and `/readyz` (it can serve:
//! the database answers).

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

/// Body of a healthy probe.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// Always `"ok"`.
    pub status: &'static str,
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
    Json(HealthStatus { status: "ok" })
}

/// Readiness: 200 when the database answers within two seconds, 503 `service_unavailable`
/// otherwise.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready to serve", body = HealthStatus),
        (status = 503, description = "The database does not answer", body = crate::error::ErrorBody),
    ))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<HealthStatus>, ApiError> {
    if state.is_draining() {
        return Err(ApiError::ServiceUnavailable("shutting down"));
    }
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(Json(HealthStatus { status: "ok" })),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "readiness: database ping failed");
            Err(ApiError::ServiceUnavailable("database"))
        }
        Err(_) => Err(ApiError::ServiceUnavailable("database")),
    }
}
