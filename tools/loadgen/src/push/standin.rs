//! A Web Push service stand-in on loopback for `--compare-push`: every `POST /push/<device>`
//! answers 201 Created (RFC 8030's answer to an accepted message) and is counted and
//! timestamped. It decrypts nothing: the server's encryption and VAPID signing are part of what
//! is measured, the service's own work is not.
//!
//! It runs on a thread of its own with a single-threaded runtime, so its work never queues
//! behind the generator's clients (whose event loop times the propagation) and its CPU can be
//! read from that thread alone.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use tokio::sync::oneshot;

/// The stand-in thread's name, by which its CPU time is found in /proc.
const THREAD_NAME: &str = "push-standin";

/// What the stand-in has seen.
#[derive(Default)]
struct Seen {
    /// Requests answered 201.
    accepted: AtomicU64,
    /// Requests without the headers a Web Push service requires (`Authorization: vapid ...`,
    /// `Content-Encoding: aes128gcm`); answered 201 all the same, counted to show they exist.
    malformed: AtomicU64,
    /// (device, when it arrived) of every request since the last [`StandIn::take_arrivals`].
    arrivals: Mutex<Vec<(String, Instant)>>,
}

/// The running stand-in; stopped when dropped.
pub(crate) struct StandIn {
    port: u16,
    seen: Arc<Seen>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl StandIn {
    /// Binds a loopback port and starts serving on a thread of its own.
    pub(crate) fn start() -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let seen = Arc::new(Seen::default());
        let (stop, stopped) = oneshot::channel::<()>();
        let state = seen.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                        return;
                    };
                    let app = Router::new()
                        .route("/push/{device}", post(accept))
                        .with_state(state);
                    let _ = axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            })?;
        Ok(Self {
            port,
            seen,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The endpoint of device `device` (a subscription's `endpoint`).
    pub(crate) fn endpoint(&self, device: &str) -> String {
        format!("http://127.0.0.1:{}/push/{device}", self.port)
    }

    /// Requests accepted so far.
    pub(crate) fn accepted(&self) -> u64 {
        self.seen.accepted.load(Ordering::Relaxed)
    }

    /// Requests so far that lacked a Web Push service's required headers.
    pub(crate) fn malformed(&self) -> u64 {
        self.seen.malformed.load(Ordering::Relaxed)
    }

    /// The arrivals since the last call, and forgets them.
    pub(crate) fn take_arrivals(&self) -> Vec<(String, Instant)> {
        std::mem::take(&mut *self.seen.arrivals.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// CPU seconds the stand-in's thread has used (None where /proc cannot tell).
    pub(crate) fn cpu_secs(&self) -> Option<f64> {
        let tasks = std::fs::read_dir("/proc/self/task").ok()?;
        tasks
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .find(|dir| {
                std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == THREAD_NAME)
            })
            .and_then(|dir| crate::stat_cpu_secs(&dir.join("stat").to_string_lossy()))
    }
}

impl Drop for StandIn {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept(
    State(seen): State<Arc<Seen>>,
    Path(device): Path<String>,
    headers: HeaderMap,
    _body: Bytes,
) -> StatusCode {
    let now = Instant::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let signed = header("authorization").is_some_and(|a| a.starts_with("vapid t="));
    let encrypted = header("content-encoding") == Some("aes128gcm");
    if !(signed && encrypted) {
        seen.malformed.fetch_add(1, Ordering::Relaxed);
    }
    seen.accepted.fetch_add(1, Ordering::Relaxed);
    seen.arrivals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((device, now));
    StatusCode::CREATED
}
