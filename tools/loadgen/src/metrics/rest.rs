//! A small REST load for `--compare-metrics`: the requests apps make besides `/sync`, so the
//! HTTP metrics layer (a route label, a status, a timer per request) is measured where it runs
//! most often. Each client is one of the partnerships' users (signed in: its access token),
//! sends one request at a time on a keep-alive connection, and mixes reads with writes: every
//! k-th request a `POST /api/expenses` (a merge into the couple's document, fanned out to the
//! partners' connected apps), the others `GET /api/expenses` (the first page) and
//! `GET /api/partnerships/current` in turn.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{CpuMeter, CpuUse, Environment, LoadError, Pair, Percentiles, Result};

/// Requests sent before the measured window (connections opened, the documents' actors and
/// the auth cache warm), not recorded.
const WARMUP: Duration = Duration::from_secs(2);
/// Amount of each created expense: under the partnerships' approval threshold, so each is a
/// direct write answered 201.
const EXPENSE_AMOUNT: &str = "7.25";

/// The load's shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RestLoad {
    pub(crate) clients: usize,
    pub(crate) seconds: u64,
    /// Every k-th request is a write (0: none).
    pub(crate) post_every: u64,
}

/// One request of the mix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `GET /api/expenses`: the first page.
    ListExpenses,
    /// `GET /api/partnerships/current`.
    CurrentPartnership,
    /// `POST /api/expenses`: a direct write.
    CreateExpense,
}

/// The `n`-th request (from 1) of a client: a write every `post_every`-th, the reads in turn
/// otherwise.
pub(crate) fn kind_of(n: u64, post_every: u64) -> Kind {
    if post_every > 0 && n.is_multiple_of(post_every) {
        Kind::CreateExpense
    } else if n % 2 == 1 {
        Kind::ListExpenses
    } else {
        Kind::CurrentPartnership
    }
}

/// Which user each client signs in as: (partnership index, side), first partners of every
/// partnership first, then second partners, then around again.
pub(crate) fn users_of(partnerships: usize, clients: usize) -> Vec<(usize, usize)> {
    if partnerships == 0 {
        return Vec::new();
    }
    (0..clients)
        .map(|c| (c % partnerships, (c / partnerships) % 2))
        .collect()
}

/// What the load measured over its window.
pub(crate) struct RestFigures {
    pub(crate) clients: usize,
    pub(crate) post_every: u64,
    /// Length of the measured window, seconds.
    pub(crate) seconds: f64,
    /// Requests answered with a success status in the window, and of them the writes.
    pub(crate) requests: u64,
    pub(crate) posts: u64,
    /// Requests answered otherwise, or not at all, in the window.
    pub(crate) failed: u64,
    pub(crate) first_failure: Option<String>,
    /// Request sent -> response read, all kinds.
    pub(crate) latency: Option<Percentiles>,
    pub(crate) cpu: CpuUse,
}

impl RestFigures {
    /// Successful requests per second.
    pub(crate) fn rate(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| self.requests as f64 / self.seconds)
    }

    /// Server CPU per successful request, microseconds.
    pub(crate) fn server_us_per_request(&self) -> Option<f64> {
        self.cpu.server_ms_per(self.requests).map(|ms| ms * 1000.0)
    }
}

/// What the clients share: the window flags and the counts.
#[derive(Default)]
struct Shared {
    recording: AtomicBool,
    stop: AtomicBool,
    requests: AtomicU64,
    posts: AtomicU64,
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
}

impl Shared {
    fn fail(&self, what: String) {
        if !self.recording.load(Ordering::Relaxed) {
            return;
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_failure.lock().unwrap_or_else(|e| e.into_inner());
        if first.is_none() {
            *first = Some(what);
        }
    }
}

/// Runs the load against node 1: [`WARMUP`] unrecorded, then `load.seconds` measured.
pub(crate) async fn run(env: &Environment, pairs: &[Pair], load: RestLoad) -> Result<RestFigures> {
    let users = users_of(pairs.len(), load.clients);
    if users.is_empty() {
        return Err(LoadError::Usage(
            "--rest-clients and --partnerships must be at least 1".into(),
        ));
    }
    println!(
        "rest: {} clients (users of {} partnerships), one request at a time each: POST /api/expenses every {}th, GET /api/expenses and GET /api/partnerships/current otherwise; {} s after {} s unrecorded",
        users.len(),
        pairs.len().min(users.len()),
        load.post_every,
        load.seconds,
        WARMUP.as_secs()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(users.len())
        .build()
        .map_err(|e| LoadError::Server(format!("HTTP client: {e}")))?;
    let shared = Arc::new(Shared::default());
    let tasks: Vec<_> = users
        .iter()
        .enumerate()
        .map(|(c, &(p, side))| {
            tokio::spawn(client(
                http.clone(),
                env.http_base.clone(),
                pairs[p].tokens[side].clone(),
                c,
                load.post_every,
                shared.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(WARMUP).await;
    shared.recording.store(true, Ordering::Relaxed);
    let cpu = CpuMeter::start(env);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(load.seconds)).await;
    shared.recording.store(false, Ordering::Relaxed);
    let cpu = cpu.measure();
    let seconds = start.elapsed().as_secs_f64();
    shared.stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let figures = RestFigures {
        clients: users.len(),
        post_every: load.post_every,
        seconds,
        requests: shared.requests.load(Ordering::Relaxed),
        posts: shared.posts.load(Ordering::Relaxed),
        failed: shared.failed.load(Ordering::Relaxed),
        first_failure: shared
            .first_failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        latency: Percentiles::of(latencies),
        cpu,
    };
    println!(
        "  {} requests answered in {seconds:.1} s = {:.0} req/s ({} POST /api/expenses); {} failed{}",
        figures.requests,
        figures.rate().unwrap_or(0.0),
        figures.posts,
        figures.failed,
        figures
            .first_failure
            .as_ref()
            .map_or(String::new(), |f| format!(" (first: {f})"))
    );
    if let Some(l) = &figures.latency {
        println!("  request -> response read: {l}");
    }
    println!("  {}", crate::cpu_line(&figures.cpu, 1));
    if let Some(us) = figures.server_us_per_request() {
        println!("  server CPU per request: {us:.0} µs");
    }
    Ok(figures)
}

/// One client's loop until `stop`; the latencies (microseconds) of its requests in the window.
async fn client(
    http: reqwest::Client,
    base: String,
    token: String,
    number: usize,
    post_every: u64,
    shared: Arc<Shared>,
) -> Vec<u64> {
    let mut latencies = Vec::new();
    let expenses = format!("{base}/api/expenses");
    let current = format!("{base}/api/partnerships/current");
    let mut n = 0u64;
    while !shared.stop.load(Ordering::Relaxed) {
        n += 1;
        let kind = kind_of(n, post_every);
        let request = match kind {
            Kind::ListExpenses => http.get(&expenses),
            Kind::CurrentPartnership => http.get(&current),
            Kind::CreateExpense => http.post(&expenses).json(&serde_json::json!({
                "name": format!("rest {number}.{n}"),
                "amount": EXPENSE_AMOUNT,
                "category": "groceries",
                "frequency": "monthly",
            })),
        };
        let sent = Instant::now();
        let answer = request.bearer_auth(&token).send().await;
        // The body is read whole, as an app would, before the connection serves the next.
        let outcome = match answer {
            Ok(r) => {
                let status = r.status();
                match r.bytes().await {
                    Ok(_) if status.is_success() => Ok(()),
                    Ok(body) => Err(format!(
                        "{kind:?} answered {status}: {}",
                        String::from_utf8_lossy(&body[..body.len().min(200)])
                    )),
                    Err(e) => Err(format!("{kind:?}: reading the body: {e}")),
                }
            }
            Err(e) => Err(format!("{kind:?}: {e}")),
        };
        match outcome {
            Ok(()) if shared.recording.load(Ordering::Relaxed) => {
                latencies.push(sent.elapsed().as_micros() as u64);
                shared.requests.fetch_add(1, Ordering::Relaxed);
                if kind == Kind::CreateExpense {
                    shared.posts.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(()) => {}
            Err(what) => {
                shared.fail(what);
                // A refused client does not spin: the server's answer may be a limit.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    latencies
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kth_request_is_a_write_and_the_reads_take_turns() {
        let kinds: Vec<Kind> = (1..=10).map(|n| kind_of(n, 5)).collect();
        use Kind::*;
        assert_eq!(
            kinds,
            [
                ListExpenses,
                CurrentPartnership,
                ListExpenses,
                CurrentPartnership,
                CreateExpense,
                CurrentPartnership,
                ListExpenses,
                CurrentPartnership,
                ListExpenses,
                CreateExpense,
            ]
        );
        // 0: reads only.
        assert!((1..=100).all(|n| kind_of(n, 0) != CreateExpense));
        let writes = (1..=1000)
            .filter(|&n| kind_of(n, 10) == CreateExpense)
            .count();
        assert_eq!(writes, 100);
    }

    #[test]
    fn clients_take_first_partners_then_second_partners_then_wrap() {
        assert_eq!(
            users_of(3, 7),
            [(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1), (0, 0)]
        );
        assert_eq!(users_of(0, 5), []);
        assert_eq!(users_of(200, 2), [(0, 0), (1, 0)]);
    }
}
