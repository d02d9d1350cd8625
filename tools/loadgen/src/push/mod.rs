//! `--compare-push`: what push notifications cost the sync path, measured in one run.
//!
//! Sessions alternate push off and push on (a fresh database and node each, the same load): the
//! latency scenario's couples (both partners connected, so never notified) beside a background
//! of extra couples whose first partner sends messages at a fixed rate while the second is
//! offline with a registered Web Push device. With push on, each of those messages writes an
//! outbox row in its merge's transaction and the node's sender delivers it to a Web Push service
//! stand-in on loopback ([`standin`]); with push off the same merges write nothing. The
//! propagation figures of the two kinds of session, side by side, say what the notifications
//! cost the partners who are watching. Each push-on session then writes `--drain-rows` rows
//! straight into the outbox and times the sender emptying it.

mod report;
mod standin;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use futures::stream::{self, StreamExt};
use sqlx::Connection;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::sessions::{alternate, in_fresh_env};
use crate::{
    checkpoint, durability, finish_drivers, latency, new_setup, server_bin, start_drivers, Args,
    Cmd, CpuMeter, Environment, LoadError, Pair, Percentiles, Probes, Result, Stats,
};
use report::{DrainFigures, PushSession};
use standin::StandIn;

/// The contact the nodes give push services (`VAPID_SUBJECT`); the stand-in never writes.
const VAPID_SUBJECT: &str = "mailto:loadgen@splitsave.invalid";
/// Longest wait for the background's notifications to leave the outbox after the latency
/// scenario.
const OUTBOX_SETTLE: Duration = Duration::from_secs(30);

/// A VAPID key pair as `splitsave vapid-keys` prints it.
#[derive(Debug, PartialEq, Eq)]
struct VapidKeys {
    private_key: String,
    public_key: String,
}

/// Reads the `VAPID_PRIVATE_KEY=` and `VAPID_PUBLIC_KEY=` lines of `splitsave vapid-keys`.
fn parse_vapid_keys(text: &str) -> Option<VapidKeys> {
    let value = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    Some(VapidKeys {
        private_key: value("VAPID_PRIVATE_KEY")?,
        public_key: value("VAPID_PUBLIC_KEY")?,
    })
}

/// A new key pair from the server binary itself, as an operator would make one.
fn vapid_keys(bin: &Path) -> Result<VapidKeys> {
    let out = std::process::Command::new(bin)
        .arg("vapid-keys")
        .output()
        .map_err(|e| LoadError::Server(format!("{} vapid-keys: {e}", bin.display())))?;
    parse_vapid_keys(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        LoadError::Server(format!(
            "{} vapid-keys printed no key pair ({})",
            bin.display(),
            out.status
        ))
    })
}

/// The body of `POST /api/devices` for a browser's Web Push subscription.
fn device_body(endpoint: &str, p256dh: &str, auth: &str) -> serde_json::Value {
    serde_json::json!({
        "platform": "web",
        "web_push": {
            "endpoint": endpoint,
            "keys": { "p256dh": p256dh, "auth": auth },
        },
    })
}

/// An outbox payload shaped like a one-message notification's (both wordings, ids, a collapse
/// key), as the server's sender reads it.
fn drain_payload(message: Uuid) -> String {
    serde_json::json!({
        "detailed": { "title": "SplitSave", "body": "Load: dinner at 8?" },
        "private": { "title": "SplitSave", "body": "New message from Load" },
        "data": { "count": "1", "ids": message.to_string(), "kind": "message" },
        "collapse_key": format!("message:{message}"),
    })
    .to_string()
}

/// Matches each device's pushes with the messages sent to its user, in order: a device is
/// matched when it got as many pushes as messages were sent to it, none before its message
/// (one merge, one notification, one push per message; two messages in one merge would make one
/// notification). Returns message -> push in microseconds and (devices matched, devices with
/// messages).
fn match_pushes(
    sent: &[(String, Instant)],
    arrived: &[(String, Instant)],
) -> (Vec<u64>, (usize, usize)) {
    let group = |v: &[(String, Instant)]| {
        let mut by: HashMap<String, Vec<Instant>> = HashMap::new();
        for (device, at) in v {
            by.entry(device.clone()).or_default().push(*at);
        }
        for times in by.values_mut() {
            times.sort();
        }
        by
    };
    let (sent, arrived) = (group(sent), group(arrived));
    let mut out = Vec::new();
    let mut matched = 0;
    for (device, messages) in &sent {
        let Some(pushes) = arrived.get(device) else {
            continue;
        };
        if pushes.len() != messages.len() || messages.iter().zip(pushes).any(|(m, p)| p < m) {
            continue;
        }
        matched += 1;
        out.extend(
            messages
                .iter()
                .zip(pushes)
                .map(|(m, p)| p.duration_since(*m).as_micros() as u64),
        );
    }
    (out, (matched, sent.len()))
}

/// Runs the sessions (off, on, off, on, ...) and prints their table.
pub(crate) async fn compare(args: &Args, command_line: &str, deadline: Instant) -> Result<()> {
    let bin = server_bin(args)?;
    let vapid = vapid_keys(&bin)?;
    let standin = StandIn::start()
        .map_err(|e| LoadError::Server(format!("the push service stand-in: {e}")))?;
    println!(
        "push service stand-in: {} (answers 201 to every POST)",
        standin.endpoint("<device>")
    );
    let sessions = alternate(args.push_rounds, "push", async |push_on| {
        session(args, push_on, &vapid, &standin, deadline).await
    })
    .await?;
    println!();
    println!("== splitsave-loadgen: push notifications off vs on, same run ==");
    println!("command: {command_line}");
    println!(
        "{} partnerships (2 clients each, never notified: both connected) at {} merges/s offered for {} s after {} s of warm-up; beside them {} couples whose first partner sends {} messages/s in all while the second is offline with a Web Push device; {} outbox rows drained per push-on session; one node, SPLITSAVE_ENV=development in every session",
        args.partnerships,
        args.rate,
        args.latency_secs(),
        args.latency_warmup_secs(),
        args.push_couples,
        args.push_rate,
        args.drain_rows
    );
    if standin.malformed() > 0 {
        println!(
            "warning: {} pushes came without VAPID authorization or aes128gcm encoding",
            standin.malformed()
        );
    }
    println!("{}", report::render(&sessions));
    Ok(())
}

/// One session: a fresh database and node, with or without Web Push configured.
async fn session(
    args: &Args,
    push_on: bool,
    vapid: &VapidKeys,
    standin: &StandIn,
    deadline: Instant,
) -> Result<PushSession> {
    // Production refuses push endpoints on loopback, where the stand-in is; every session runs
    // the same configuration, push on or off. Device registration is REST from one address.
    let mut env_vars = vec![
        ("SPLITSAVE_ENV".to_string(), "development".to_string()),
        ("API_RATE_LIMIT".to_string(), "1000000".to_string()),
    ];
    if push_on {
        env_vars.extend([
            ("VAPID_PRIVATE_KEY".to_string(), vapid.private_key.clone()),
            ("VAPID_PUBLIC_KEY".to_string(), vapid.public_key.clone()),
            ("VAPID_SUBJECT".to_string(), VAPID_SUBJECT.to_string()),
        ]);
    }
    let (mut s, load) = in_fresh_env(args, 1, &env_vars, deadline, async |env| {
        measure(args, env, push_on, vapid, standin).await
    })
    .await?;
    s.load_average = load;
    Ok(s)
}

async fn measure(
    args: &Args,
    env: &Environment,
    push_on: bool,
    vapid: &VapidKeys,
    standin: &StandIn,
) -> Result<PushSession> {
    println!(
        "server {}, database {}",
        env.describe(),
        env.database_url.rsplit('/').next().unwrap_or("")
    );
    let (store, setup) = new_setup(env).await?;
    let step = Instant::now();
    let pairs = setup
        .partnerships("p", args.partnerships, 0, 0, args.concurrency)
        .await?;
    let quiet = setup
        .partnerships("q", args.push_couples, 0, 0, args.concurrency)
        .await?;
    let all: Vec<Pair> = pairs.iter().chain(&quiet).cloned().collect();
    let users = register_devices(env, &all, standin, &vapid.public_key, args.concurrency).await?;
    println!(
        "setup: {} measured and {} messaging partnerships (through the store), {} Web Push devices (POST /api/devices) in {:.1} s",
        pairs.len(),
        quiet.len(),
        users.len(),
        step.elapsed().as_secs_f64()
    );
    checkpoint(&env.database_url).await;
    let stats = Arc::new(Stats::default());
    let drivers = start_drivers(args, env, &pairs, &[0, 1], &stats).await?;
    // Only the first partner of a messaging couple connects: the second is offline.
    let quiet_stats = Arc::new(Stats::default());
    let senders = start_drivers(args, env, &quiet, &[0], &quiet_stats).await?;
    let targets: Vec<(String, mpsc::Sender<Cmd>)> = quiet
        .iter()
        .filter_map(|p| {
            let d = senders.get(&(p.pid, 0))?;
            Some((p.users[1].0.to_string(), d.cmds.clone()))
        })
        .collect();

    standin.take_arrivals();
    let pushes_before = standin.accepted();
    let offered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let background = tokio::spawn(messages(
        args.push_rate,
        targets,
        offered.clone(),
        stop.clone(),
    ));
    let probes = Probes {
        store: store.clone(),
        redis: None,
        notices: None,
        extra_merges: Some(offered.clone()),
    };
    let measured = latency(args, env, &pairs, &drivers, &stats, &probes).await;
    stop.store(true, Ordering::Relaxed);
    let (sent, messages_skipped) = background.await.unwrap_or_default();
    let (_, latency) = measured?;
    let messages_offered = offered.load(Ordering::Relaxed);

    let mut conn = sqlx::PgConnection::connect(&env.database_url).await?;
    let outbox_after = outbox_depth(&mut conn).await.ok();
    if push_on {
        // Once the outbox is empty every push has been answered: the sender deletes a row
        // after its request returns.
        let waited = Instant::now();
        let left = wait_empty(&mut conn, OUTBOX_SETTLE).await?;
        println!(
            "  outbox: {} rows right after the latency scenario; {} ({:.1} s later)",
            outbox_after.map_or("?".into(), |n| n.to_string()),
            if left == 0 {
                "empty".to_string()
            } else {
                format!("{left} left")
            },
            waited.elapsed().as_secs_f64()
        );
    }
    let pushes = standin.accepted() - pushes_before;
    let (deltas, push_matched) = match_pushes(&sent, &standin.take_arrivals());
    let push_latency = Percentiles::of(deltas);
    println!(
        "  background: {messages_offered} messages offered ({messages_skipped} refused by a full queue), {} in the measured window; the stand-in accepted {pushes} pushes",
        latency.background_merges.unwrap_or(0)
    );
    if let Some(p) = &push_latency {
        println!(
            "  message scheduled -> push at the stand-in ({} of {} devices matched): {p}",
            push_matched.0, push_matched.1
        );
    }
    quiet_stats.print_errors("  messaging clients' errors");

    let drain = if push_on && args.drain_rows > 0 {
        Some(drain(&mut conn, env, &users, args.drain_rows, standin).await?)
    } else {
        None
    };
    conn.close().await?;

    finish_drivers(&senders).await;
    finish_drivers(&drivers).await;
    stats.print_errors("client errors");
    let confirmed = std::mem::take(&mut *stats.confirmed.lock().unwrap_or_else(|e| e.into_inner()));
    durability(&env.database_url, &*store, confirmed, args.concurrency).await?;
    Ok(PushSession {
        push_on,
        load_average: String::new(),
        latency,
        messages_offered,
        messages_skipped,
        pushes,
        outbox_after,
        push_latency,
        push_matched,
        drain,
    })
}

/// Registers one Web Push device for each user of `pairs` over REST, its endpoint on the
/// stand-in named after the user; returns (user, partnership) of each.
async fn register_devices(
    env: &Environment,
    pairs: &[Pair],
    standin: &StandIn,
    p256dh: &str,
    concurrency: usize,
) -> Result<Vec<(Uuid, Uuid)>> {
    let client = reqwest::Client::new();
    let url = format!("{}/api/devices", env.http_base);
    let results: Vec<Result<(Uuid, Uuid)>> =
        stream::iter(pairs.iter().flat_map(|p| {
            (0..2).map(move |side| (p.tokens[side].clone(), p.users[side].0, p.pid.0))
        }))
        .map(|(token, user, pid)| {
            let (client, url) = (&client, &url);
            async move {
                let auth = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
                let body = device_body(&standin.endpoint(&user.to_string()), p256dh, &auth);
                let answer = client
                    .post(url)
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .map_err(|e| LoadError::Server(format!("POST /api/devices: {e}")))?;
                let status = answer.status();
                if status != reqwest::StatusCode::CREATED {
                    let text = answer.text().await.unwrap_or_default();
                    return Err(LoadError::Protocol(format!(
                        "POST /api/devices answered {status}: {text}"
                    )));
                }
                Ok((user, pid))
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// Offers `rate` messages per second, round robin over `targets` (recipient's device, the
/// sender's client), until `stop`; counts each one a client took in `offered`. Returns
/// (recipient's device, when scheduled) of each offered message, and how many a full client
/// queue refused.
async fn messages(
    rate: u32,
    targets: Vec<(String, mpsc::Sender<Cmd>)>,
    offered: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> (Vec<(String, Instant)>, u64) {
    let mut sent = Vec::new();
    let mut refused = 0;
    if targets.is_empty() || rate == 0 {
        return (sent, refused);
    }
    let mut interval = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = 0usize;
    while !stop.load(Ordering::Relaxed) {
        let scheduled = interval.tick().await.into_std();
        let (device, cmds) = &targets[i % targets.len()];
        i += 1;
        if cmds.try_send(Cmd::Message).is_ok() {
            offered.fetch_add(1, Ordering::Relaxed);
            sent.push((device.clone(), scheduled));
        } else {
            refused += 1;
        }
    }
    (sent, refused)
}

async fn outbox_depth(conn: &mut sqlx::PgConnection) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM notification_outbox")
            .fetch_one(conn)
            .await?,
    )
}

/// Polls the outbox until it is empty or `limit` passed; the rows left.
async fn wait_empty(conn: &mut sqlx::PgConnection, limit: Duration) -> Result<i64> {
    let deadline = Instant::now() + limit;
    loop {
        let left = outbox_depth(conn).await?;
        if left == 0 || Instant::now() > deadline {
            return Ok(left);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Writes `rows` notifications at once, due now, spread over `users` (each has one device),
/// and times the node's sender emptying the outbox.
async fn drain(
    conn: &mut sqlx::PgConnection,
    env: &Environment,
    users: &[(Uuid, Uuid)],
    rows: usize,
    standin: &StandIn,
) -> Result<DrainFigures> {
    let user_ids: Vec<Uuid> = users.iter().map(|u| u.0).collect();
    let pids: Vec<Uuid> = users.iter().map(|u| u.1).collect();
    let tag = format!("{:08x}", rand::random::<u32>());
    println!(
        "drain: {rows} notifications written straight into the outbox for {} users with a device each",
        users.len()
    );
    standin.take_arrivals();
    let accepted_before = standin.accepted();
    let standin_before = standin.cpu_secs();
    let cpu = CpuMeter::start(env);
    let start = Instant::now();
    sqlx::query(
        "INSERT INTO notification_outbox \
             (id, user_id, partnership_id, kind, dedupe_key, payload, created_at, \
              next_attempt_at, give_up_at) \
         SELECT gen_random_uuid(), \
                ($1::uuid[])[1 + (g % cardinality($1::uuid[]))::int], \
                ($2::uuid[])[1 + (g % cardinality($2::uuid[]))::int], \
                'message', 'message:loadgen-drain-' || $3 || '-' || g, $4, \
                now(), now(), now() + interval '1 day' \
         FROM generate_series(0::bigint, $5::bigint - 1) AS g",
    )
    .bind(&user_ids)
    .bind(&pids)
    .bind(&tag)
    .bind(drain_payload(Uuid::now_v7()))
    .bind(i64::try_from(rows).unwrap_or(i64::MAX))
    .execute(&mut *conn)
    .await?;
    let insert = start.elapsed();
    let committed = Instant::now();
    // Generous: a sender slower than 100 rows/s would still be timed to the end.
    let limit = Duration::from_secs(60).max(Duration::from_millis(rows as u64 * 10));
    let left = wait_empty(conn, limit).await?;
    let emptied = (left == 0).then(|| committed.elapsed());
    let cpu = cpu.measure();
    let standin_cpu = standin.cpu_secs().zip(standin_before).map(|(b, a)| b - a);
    let deliveries = standin.accepted() - accepted_before;
    let arrivals = standin.take_arrivals();
    let since = |t: Instant| t.saturating_duration_since(committed);
    let figures = DrainFigures {
        rows: rows as u64,
        insert,
        emptied,
        left,
        first_push: arrivals.iter().map(|a| a.1).min().map(since),
        last_push: arrivals.iter().map(|a| a.1).max().map(since),
        deliveries,
        cpu,
        standin_cpu,
    };
    println!(
        "  inserted in {:.2} s; {}; {deliveries} pushes accepted, first {} / last {} after the insert",
        insert.as_secs_f64(),
        match emptied {
            Some(e) => format!("outbox empty after {:.2} s", e.as_secs_f64()),
            None => format!("{left} rows still there after {:.0} s", limit.as_secs_f64()),
        },
        figures
            .first_push
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        figures
            .last_push
            .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
    );
    if let (Some(r), Some(d)) = (figures.rows_per_sec(), figures.deliveries_per_sec()) {
        println!("  {r:.0} rows/s from the insert to empty; {d:.0} deliveries/s while sending");
    }
    println!("  {}", crate::cpu_line(&figures.cpu, 1));
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vapid_keys_are_read_from_the_servers_lines() {
        let printed = "VAPID_PRIVATE_KEY=priv-key_1\nVAPID_PUBLIC_KEY=BPub-key_2\n";
        assert_eq!(
            parse_vapid_keys(printed),
            Some(VapidKeys {
                private_key: "priv-key_1".into(),
                public_key: "BPub-key_2".into(),
            })
        );
        // Order, blank lines and other lines do not matter; a missing or empty key does.
        assert!(parse_vapid_keys("\nnote=x\nVAPID_PUBLIC_KEY=b\nVAPID_PRIVATE_KEY=a\n").is_some());
        assert_eq!(parse_vapid_keys("VAPID_PRIVATE_KEY=a\n"), None);
        assert_eq!(
            parse_vapid_keys("VAPID_PRIVATE_KEY=\nVAPID_PUBLIC_KEY=b"),
            None
        );
    }

    #[test]
    fn a_device_is_registered_as_a_web_push_subscription() {
        let body = device_body("http://127.0.0.1:9/push/u", "BKey", "c2VjcmV0");
        assert_eq!(body["platform"], "web");
        assert_eq!(body["web_push"]["endpoint"], "http://127.0.0.1:9/push/u");
        assert_eq!(body["web_push"]["keys"]["p256dh"], "BKey");
        assert_eq!(body["web_push"]["keys"]["auth"], "c2VjcmV0");
        assert!(body.get("fcm_token").is_none());
    }

    #[test]
    fn drained_rows_carry_both_wordings_ids_and_a_collapse_key() {
        let id = Uuid::now_v7();
        let payload: serde_json::Value = serde_json::from_str(&drain_payload(id)).expect("JSON");
        for wording in ["detailed", "private"] {
            assert!(payload[wording]["title"].is_string(), "{wording}");
            assert!(payload[wording]["body"].is_string(), "{wording}");
        }
        assert_eq!(payload["data"]["kind"], "message");
        assert_eq!(payload["data"]["ids"], id.to_string());
        assert_eq!(payload["collapse_key"], format!("message:{id}"));
    }

    #[test]
    fn pushes_match_messages_per_device_in_order_or_not_at_all() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let sent = vec![
            ("a".to_string(), at(0)),
            ("a".to_string(), at(1000)),
            ("b".to_string(), at(0)),
            ("c".to_string(), at(500)),
        ];
        let arrived = vec![
            ("a".to_string(), at(1004)),
            ("a".to_string(), at(3)),
            // b's push never came: b is left out.
            ("c".to_string(), at(400)),
        ];
        let (deltas, (matched, devices)) = match_pushes(&sent, &arrived);
        assert_eq!((matched, devices), (1, 3));
        let mut deltas = deltas;
        deltas.sort_unstable();
        assert_eq!(deltas, [3_000, 4_000]);
        // c's push arrived before its message was scheduled: not that message's push.
        let (_, (matched, _)) = match_pushes(&sent[3..], &arrived[2..]);
        assert_eq!(matched, 0);
    }
}
