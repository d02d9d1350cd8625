//! The SplitSave server library: configuration, HTTP, auth, storage.
//!
//! The binary (`src/main.rs`) only parses the command line, reads [`config::Config`] and calls
//! [`serve`] or [`store::migrate`]; tests build the same [`app::router`] on a random port.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod metrics;
pub mod notify;
pub mod openapi;
pub mod push;
pub mod ratelimit;
pub mod routes;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod validation;

use std::net::SocketAddr;

/// Serves the application on `0.0.0.0:<port>` (and the metrics on `METRICS_ADDR`, when set)
/// until Ctrl-C or SIGTERM, then finishes the requests in flight.
pub async fn serve(state: app::AppState) -> std::io::Result<()> {
    let addr = SocketAddr::from(([0, 0, 0, 0], state.config.port));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(address = %listener.local_addr()?, env = ?state.config.env, "listening");
    state.start_metrics().await?;
    state.start_cluster();
    state.start_push().map_err(std::io::Error::other)?;
    let drain = state.clone();
    let sockets = state.sockets.clone();
    let mut drained = state.draining.subscribe();
    let app = app::router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                // Stop accepting (axum), and close the long-lived connections so that the
                // graceful shutdown does not wait for them: their clients reconnect elsewhere.
                drain.drain();
            })
            .await?;
        // The WebSockets were upgraded out of the HTTP server: wait for their close frames.
        sockets.all_closed().await;
        Ok(())
    };
    // Whatever still runs `DRAIN_DEADLINE` after the signal is cut off, so a node always exits
    // within its orchestrator's grace period (10 s is common).
    let deadline = async move {
        let _ = drained.wait_for(|d| *d).await;
        tokio::time::sleep(DRAIN_DEADLINE).await;
    };
    tokio::select! {
        served = server => served,
        () = deadline => {
            tracing::warn!(after = ?DRAIN_DEADLINE, "requests still open at the drain deadline: exiting anyway");
            Ok(())
        }
    }
}

/// Longest a draining node waits for open requests before it exits.
pub const DRAIN_DEADLINE: std::time::Duration = std::time::Duration::from_secs(8);

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(error = %err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}
