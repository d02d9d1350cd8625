//! `--compare-metrics`: what the Prometheus metrics cost a node, measured in one run.
//!
//! Sessions alternate metrics off and on (a fresh database and node each, the same load). On,
//! the node gets `METRICS_ADDR` on a free loopback port, which builds the registry, installs
//! the HTTP metrics layer and turns on every counting site, and the generator scrapes it once a
//! second as Prometheus would ([`scrape`]); off, none of that exists. Each session runs the
//! throughput scenario (every client floods: durable merges/s and server CPU per merge), then a
//! REST load ([`rest`]: req/s and server CPU per request) with the sync clients still
//! connected, as apps are. The acceptance: both rates with metrics on within 5 % of off.

mod report;
mod rest;
mod scrape;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use crate::sessions::{alternate, in_fresh_env};
use crate::{
    checkpoint, durability, finish_drivers, free_port, new_setup, start_drivers, throughput, Args,
    Environment, Result, Stats,
};
use report::MetricsSession;
use rest::RestLoad;
use scrape::Scraper;

/// The nodes' per-IP budget of `/api` requests per 15 minutes: every REST client is on one
/// address, and the production default (1,000) would refuse the load within a second.
const API_RATE_LIMIT: &str = "4000000000";

/// Runs the sessions (off, on, off, on, ...) and prints their table.
pub(crate) async fn compare(args: &Args, command_line: &str, deadline: Instant) -> Result<()> {
    let sessions = alternate(args.metrics_rounds, "metrics", async |on| {
        session(args, on, deadline).await
    })
    .await?;
    println!();
    println!("== splitsave-loadgen: Prometheus metrics off vs on, same run ==");
    println!("command: {command_line}");
    println!(
        "{} partnerships (2 connected clients each): throughput {} s; then REST {} clients for {} s, a POST /api/expenses every {}th request; one node, SPLITSAVE_ENV=production, API_RATE_LIMIT={API_RATE_LIMIT} in every session; metrics on = METRICS_ADDR=127.0.0.1:<free port>, scraped every {} s",
        args.partnerships,
        args.seconds,
        args.rest_clients,
        args.rest_seconds,
        args.rest_post_every,
        scrape::EVERY.as_secs()
    );
    println!("{}", report::render(&sessions));
    Ok(())
}

/// One session: a fresh database and node, with or without metrics.
async fn session(args: &Args, metrics_on: bool, deadline: Instant) -> Result<MetricsSession> {
    let mut env_vars = vec![("API_RATE_LIMIT".to_string(), API_RATE_LIMIT.to_string())];
    let metrics_addr = if metrics_on {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, free_port()?));
        env_vars.push(("METRICS_ADDR".to_string(), addr.to_string()));
        Some(addr)
    } else {
        None
    };
    let (mut s, load) = in_fresh_env(args, 1, &env_vars, deadline, async |env| {
        measure(args, env, metrics_addr).await
    })
    .await?;
    s.load_average = load;
    Ok(s)
}

async fn measure(
    args: &Args,
    env: &Environment,
    metrics_addr: Option<SocketAddr>,
) -> Result<MetricsSession> {
    println!(
        "server {}, database {}; metrics {}",
        env.describe(),
        env.database_url.rsplit('/').next().unwrap_or(""),
        metrics_addr.map_or("off".to_string(), |a| format!("on at http://{a}/metrics"))
    );
    let (store, setup) = new_setup(env).await?;
    let step = Instant::now();
    let pairs = setup
        .partnerships("p", args.partnerships, 0, 0, args.concurrency)
        .await?;
    println!(
        "setup: {} partnerships (through the store) in {:.1} s",
        pairs.len(),
        step.elapsed().as_secs_f64()
    );
    checkpoint(&env.database_url).await;
    let scraper = metrics_addr.map(Scraper::start);
    let stats = Arc::new(Stats::default());
    let drivers = start_drivers(args, env, &pairs, &[0, 1], &stats).await?;
    let (_, throughput) = throughput(args, env, &drivers, &stats).await?;
    let rest = rest::run(
        env,
        &pairs,
        RestLoad {
            clients: args.rest_clients,
            seconds: args.rest_seconds,
            post_every: args.rest_post_every,
        },
    )
    .await?;
    finish_drivers(&drivers).await;
    let scrapes = match scraper {
        Some(s) => Some(s.finish().await),
        None => None,
    };
    if let Some(f) = &scrapes {
        println!(
            "  metrics: {} scrapes, {} failed{}",
            f.scrapes,
            f.failed,
            f.first_failure
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
        if let Some(d) = &f.duration {
            println!("  scrape sent -> text read: {d}");
        }
    }
    stats.print_errors("client errors");
    let confirmed = std::mem::take(&mut *stats.confirmed.lock().unwrap_or_else(|e| e.into_inner()));
    durability(&env.database_url, &*store, confirmed, args.concurrency).await?;
    Ok(MetricsSession {
        metrics_on: metrics_addr.is_some(),
        load_average: String::new(),
        throughput,
        rest,
        scrapes,
    })
}
