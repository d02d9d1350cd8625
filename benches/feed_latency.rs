//! Time from a local edit on one partner's phone to the event on the other partner's change
//! feed, through a real server: the SDK writes the edit to its store, sends it over `/sync`, the
//! server enforces, commits and fans it out, and the partner's SDK applies it, stores it and
//! announces it.
//!
//! ```sh
//! cargo bench --bench feed_latency                          # embedded server (SQLite)
//! cargo bench --bench feed_latency -- --url http://host:port  # a running server
//! EDITS=5000 INTERVAL_MS=20 cargo bench --bench feed_latency
//! ```
//!
//! Edits are made one at a time (each waits for its event) and paced (`INTERVAL_MS`), so the
//! figures are latency, not queueing. Prints p50/p90/p99/p99.9/max over `EDITS` edits (default 1,000) after 50 warm-up
//! edits.

#[path = "../examples/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use splitsave_client::api::Registration;
use splitsave_client::enums::{Category, Frequency};
use splitsave_client::events::EventKind;
use splitsave_client::money::MinorUnits;
use splitsave_client::ops::{NewExpense, Outcome};
use splitsave_client::{Client, ClientConfig, ClientEvent, Events};
use tempfile::TempDir;

const WAIT: Duration = Duration::from_secs(30);
const WARM_UP: usize = 50;

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; only `--url` matters here (read by the support module).
    let edits: usize = std::env::var("EDITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let (url, _server) = support::server_url().await;
    let run_id = uuid::Uuid::new_v4().simple().to_string();
    let (ann, _a) = partner(&url, "ann", &run_id).await;
    let (bob, _b) = partner(&url, "bob", &run_id).await;
    ann.invite(&format!("bob-{run_id}@example.com"))
        .await
        .expect("invite");
    let invitation = bob.received_invitations().await.expect("invitations")[0];
    bob.accept_invitation(invitation).await.expect("accept");
    for c in [&ann, &bob] {
        c.start_sync().await.expect("sync");
        c.wait_until(WAIT, |d| d.members.len() == 2)
            .await
            .expect("document");
        c.wait_until_synced(WAIT).await.expect("synced");
    }
    let mut feed = bob.events();

    // One edit every `INTERVAL_MS` (default 50: 20 edits a second, far faster than a person
    // types, and within the server's per-connection message limit, so the figures are the path's
    // latency rather than the pacing of a flood).
    let interval = Duration::from_millis(
        std::env::var("INTERVAL_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );
    let mut ticker = tokio::time::interval(interval);
    let mut samples = Vec::with_capacity(edits);
    let started = Instant::now();
    for i in 0..WARM_UP + edits {
        ticker.tick().await;
        let t0 = Instant::now();
        let outcome = ann
            .add_expense(NewExpense {
                name: format!("Item {i}"),
                amount: MinorUnits(100 + i as i64 % 50),
                category: Category::Other,
                frequency: Frequency::Monthly,
            })
            .expect("add");
        let Outcome::Applied { id } = outcome else {
            panic!("a small expense applies directly");
        };
        wait_for(&mut feed, &id.to_string()).await;
        if i >= WARM_UP {
            samples.push(t0.elapsed());
        }
    }
    let wall = started.elapsed();
    samples.sort_unstable();
    let at = |q: f64| {
        let index = ((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[index].as_secs_f64() * 1e3
    };
    println!(
        "edit -> partner feed event, {edits} edits one at a time every {} ms, server {url}",
        interval.as_millis()
    );
    println!(
        "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        at(1.0)
    );
    println!(
        "{} edits incl. warm-up in {:.2} s; feed skipped {}",
        WARM_UP + edits,
        wall.as_secs_f64(),
        feed.skipped()
    );
    ann.shutdown().await;
    bob.shutdown().await;
}

async fn partner(url: &str, name: &str, run_id: &str) -> (Client, TempDir) {
    let dir = TempDir::new().expect("dir");
    let client = Client::open(ClientConfig::new(url, dir.path())).expect("open");
    client
        .register(&Registration {
            email: format!("{name}-{run_id}@example.com"),
            password: "correct horse battery".into(),
            name: name.into(),
            currency: Some("USD".into()),
            income: None,
        })
        .await
        .expect("register");
    (client, dir)
}

async fn wait_for(feed: &mut Events, key: &str) {
    tokio::time::timeout(WAIT, async {
        loop {
            match feed.next().await.expect("feed open") {
                ClientEvent::Changed(e) if e.kind == EventKind::ExpenseAdded && e.key == key => {
                    return
                }
                _ => {}
            }
        }
    })
    .await
    .expect("the partner's event within 30 s");
}
