//! What every example needs before it can show anything: a SplitSave server to talk to.
//!
//! Included by each example with `#[path = "support/mod.rs"] mod support;` (a directory with a
//! `mod.rs` is not an example of its own to cargo). An example calls [`server_url`] once:
//! - with `--url <URL>` (or `--url=<URL>`) on its command line, or `SPLITSAVE_URL` set, it talks
//!   to that server, e.g. one started with `cargo run -p splitsave-server`;
//! - otherwise it starts the real server in-process on `127.0.0.1` with a random port and a
//!   fresh SQLite database in a temporary directory (migrations applied, as `splitsave serve`
//!   does), so `cargo run --example <name>` needs nothing else and leaves nothing behind.
//!
//! The embedded server logs nothing unless `RUST_LOG` is set (e.g. `RUST_LOG=info`), so the
//! example's own output stays readable.

// Each example uses its own subset of these helpers.
#![allow(dead_code)]

use std::net::SocketAddr;

use splitsave_server::app::{router, AppState};
use splitsave_server::config::Config;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The environment variable naming a server to use instead of an embedded one.
pub const URL_ENV: &str = "SPLITSAVE_URL";

/// A server running inside the example's process. Dropping it stops the server and deletes its
/// database, so an example run never leaves state behind for the next one.
pub struct EmbeddedServer {
    url: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    // Declared last: dropped after the server is told to stop.
    _data: TempDir,
}

impl EmbeddedServer {
    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Drop for EmbeddedServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        // Open connections (a sync socket, an event stream) would hold a graceful shutdown
        // open; the example is finished with them, so stop at once.
        self.task.abort();
    }
}

/// The server the example talks to: `(base URL, guard)`. The guard is `Some` when the server
/// runs in-process; keep it alive for as long as the example needs the server.
///
/// Exits the process with a message when `--url` has no value or the embedded server cannot
/// start: an example has nothing to show without a server.
pub async fn server_url() -> (String, Option<EmbeddedServer>) {
    match external_url() {
        Ok(Some(url)) => (url, None),
        Ok(None) => match EmbeddedServer::start().await {
            Ok(server) => (server.url.clone(), Some(server)),
            Err(err) => fail(&format!("cannot start the embedded server: {err}")),
        },
        Err(err) => fail(&err),
    }
}

/// The URL given with `--url` or `SPLITSAVE_URL` (the command line wins), without trailing
/// slashes; `None` when neither is given.
pub fn external_url() -> Result<Option<String>, String> {
    let mut args = std::env::args().skip(1);
    let mut from_args = None;
    while let Some(arg) = args.next() {
        if arg == "--url" {
            from_args = Some(
                args.next()
                    .ok_or("--url needs a value, e.g. --url http://127.0.0.1:3000")?,
            );
        } else if let Some(value) = arg.strip_prefix("--url=") {
            from_args = Some(value.to_string());
        }
    }
    let url = from_args.or_else(|| std::env::var(URL_ENV).ok());
    Ok(url
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty()))
}

impl EmbeddedServer {
    /// Starts the real application on `127.0.0.1:0` with the test configuration (fast password
    /// hashing, generated secrets) and a fresh SQLite database.
    pub async fn start() -> Result<EmbeddedServer, Box<dyn std::error::Error>> {
        init_logging();
        let data = tempfile::tempdir()?;
        let database_url = format!("sqlite://{}", data.path().join("splitsave.db").display());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let mut config = Config::for_tests(data.path(), database_url);
        config.public_url = url.clone();
        // Opening the store applies the migrations, exactly as `splitsave serve` does.
        let state = AppState::from_config(config).await?;
        let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
        let (shutdown, stop) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
            if let Err(err) = served {
                eprintln!("embedded server stopped: {err}");
            }
        });
        Ok(EmbeddedServer {
            url,
            shutdown: Some(shutdown),
            task,
            _data: data,
        })
    }
}

/// Server logs on stderr only when `RUST_LOG` asks for them.
fn init_logging() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
    }
}

fn fail(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(2);
}
