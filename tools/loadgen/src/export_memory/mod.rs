//! `--export-memory`: the server's memory while it streams `GET /api/export` (issue 18: "export
//! memory for a 20,000-entry couple, RSS growth during the export at most 32 MiB").
//!
//! For each backend (`--export-backends`: PostgreSQL on a fresh database, and the embedded
//! SQLite file) a release server is started with `EXPORT_RATE_LIMIT` raised, and two couples are
//! seeded ([`seed`]): the measured one with `--export-entries` rows in the proportions of a couple
//! that logs every purchase, and a second, smaller one. Format by format (`json`, `csv`,
//! `automerge`), the second couple's export goes first (it warms the server's code paths, and
//! must hold its own rows only); then the measured couple's export is downloaded, first as fast
//! as it comes, then read at `--export-slow-kib` KiB/s, over a connection with a small
//! receive buffer ([`probe::get`]), so that a server that did not stream would have to hold the
//! body. For each download: the body's size, the time to the first byte and to the end, the
//! server's CPU time, its `VmRSS` just before, its peak during the download (sampled every
//! `--export-sample-ms` on a thread of the generator's own, and the kernel's `VmHWM`, reset
//! just before by writing 5 to `/proc/<pid>/clear_refs`), the growth (peak minus before) against
//! the budget, whether the body holds exactly the couple's rows (counts per table, and its
//! ids: nothing of the other couple), and how many history entries it holds (JSON and CSV; the
//! seeded couple's history is written by `splitsave rebuild-history`).

mod probe;
mod seed;

use std::collections::BTreeSet;
use std::io::Read as _;
use std::time::{Duration, Instant};

use automerge::Automerge;
use clap::ValueEnum;
use splitsave_sync_core::document::read_document;

use crate::sessions::render_table;
use crate::{checkpoint, cpu_secs, load_average, server_bin, Args, Environment, LoadError, Result};
use seed::{Counts, Couple, TABLES};

/// The server's per-user hourly export budget in every session (the production default, 5,
/// would refuse the benchmark's own downloads).
const EXPORT_RATE_LIMIT: &str = "1000000";
/// Quiet time before each download, so that what the previous one freed is returned (the
/// server's allocator gives freed pages back after a short delay).
const SETTLE: Duration = Duration::from_secs(2);

/// A database the server runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Backend {
    /// A fresh database on --database-url / TEST_DATABASE_URL.
    Postgres,
    /// The embedded SQLite file, in the node's data directory.
    Sqlite,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "PostgreSQL",
            Backend::Sqlite => "SQLite",
        }
    }
}

/// The export's formats, in the order they are measured.
const FORMATS: [&str; 3] = ["json", "csv", "automerge"];

/// One measured download.
struct Measured {
    backend: Backend,
    format: &'static str,
    /// Bytes a second the body was read at; `None`: as fast as it came.
    rate: Option<u64>,
    body_bytes: usize,
    first_byte: Duration,
    total: Duration,
    server_cpu: Option<f64>,
    rss_before_kib: u64,
    sampled_peak_kib: u64,
    samples: u64,
    /// The kernel's peak since the reset (`None` when it could not be reset).
    hwm_kib: Option<u64>,
    rss_after_kib: Option<u64>,
    /// The body holds exactly the couple's rows.
    rows: std::result::Result<Counts, String>,
    /// Entries of the body's history section (JSON and CSV), when it has one.
    history: Option<usize>,
}

impl Measured {
    fn peak_kib(&self) -> u64 {
        self.sampled_peak_kib.max(self.hwm_kib.unwrap_or(0))
    }

    fn growth_kib(&self) -> u64 {
        self.peak_kib().saturating_sub(self.rss_before_kib)
    }
}

/// Runs the benchmark on every backend asked for and prints its table.
pub(crate) async fn run(args: &Args, command_line: &str, deadline: Instant) -> Result<()> {
    if args.url.is_some() {
        return Err(LoadError::Usage(
            "--export-memory starts its own server: drop --url".into(),
        ));
    }
    let mut all = Vec::new();
    for backend in &args.export_backends {
        println!();
        println!("=== {} ===", backend.name());
        all.extend(session(args, *backend, deadline).await?);
    }
    println!();
    println!("== splitsave-loadgen: server memory during GET /api/export ==");
    println!("command: {command_line}");
    println!(
        "a couple of {} rows (and a second of {}); each format downloaded as fast as it comes{}; a {} KiB receive buffer; VmRSS sampled every {} ms; growth = peak (the higher of the sampled VmRSS and VmHWM, reset before each download) - VmRSS before; budget {} MiB",
        args.export_entries,
        args.export_other_entries,
        if args.export_slow_kib > 0 {
            format!(", then read at {} KiB/s", args.export_slow_kib)
        } else {
            String::new()
        },
        probe::RECV_BUFFER / 1024,
        args.export_sample_ms,
        args.export_budget_mib
    );
    println!("{}", render(&all));
    let budget = args.export_budget_mib * 1024;
    let worst = all.iter().max_by_key(|m| m.growth_kib());
    let within = all.iter().all(|m| m.growth_kib() <= budget);
    let rows_ok = all.iter().all(|m| m.rows.is_ok());
    if let Some(w) = worst {
        println!(
            "largest growth: {} ({} {}, {}); RSS growth during the export at most {} MiB: {}; every body held exactly the couple's rows: {}",
            mib(w.growth_kib()),
            w.backend.name(),
            w.format,
            read_label(w.rate),
            args.export_budget_mib,
            if within { "met" } else { "MISSED" },
            if rows_ok { "yes" } else { "NO" }
        );
    }
    if !rows_ok {
        return Err(LoadError::Protocol(
            "an export did not hold exactly the couple's rows".into(),
        ));
    }
    Ok(())
}

/// One backend: a fresh server (and database), the couples, the downloads; torn down whatever
/// happens.
async fn session(args: &Args, backend: Backend, deadline: Instant) -> Result<Vec<Measured>> {
    println!("machine: load average {}", load_average());
    let env_vars = [(
        "EXPORT_RATE_LIMIT".to_string(),
        EXPORT_RATE_LIMIT.to_string(),
    )];
    let mut env = match backend {
        Backend::Postgres => Environment::prepare(args, 1, &env_vars).await?,
        Backend::Sqlite => Environment::prepare_sqlite(args, &env_vars).await?,
    };
    let result = tokio::select! {
        r = measure(args, &env, backend) => r,
        _ = tokio::time::sleep_until(deadline.into()) => {
            Err(LoadError::Timeout("the whole run (--max-seconds)"))
        }
        _ = tokio::signal::ctrl_c() => Err(LoadError::Usage("interrupted".into())),
    };
    env.teardown(args.keep).await;
    result
}

async fn measure(args: &Args, env: &Environment, backend: Backend) -> Result<Vec<Measured>> {
    let pid = env
        .server_pid
        .ok_or_else(|| LoadError::Server("no server process id".into()))?;
    let port: u16 = env
        .http_base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| LoadError::Server(format!("no port in {}", env.http_base)))?;
    println!(
        "server {}, database {}; server VmRSS {} at start",
        env.describe(),
        env.database_url.rsplit('/').next().unwrap_or(""),
        opt_mib(probe::read_kib(pid, "VmRSS"))
    );
    let bin = server_bin(args)?;
    let store = splitsave_server::store::connect(&env.database_url).await?;
    let tag = format!("{:08x}", rand::random::<u32>());
    let step = Instant::now();
    let measured = seed::couple(
        &*store,
        &env.keys,
        &bin,
        &env.database_url,
        &format!("{tag}-1"),
        args.export_entries,
        1,
    )
    .await?;
    describe_couple("measured couple", &measured, step.elapsed());
    let step = Instant::now();
    let other = seed::couple(
        &*store,
        &env.keys,
        &bin,
        &env.database_url,
        &format!("{tag}-2"),
        args.export_other_entries,
        2,
    )
    .await?;
    describe_couple("second couple", &other, step.elapsed());
    drop(store);
    if backend == Backend::Postgres {
        checkpoint(&env.database_url).await;
    }

    // Format by format: the second couple's export first (the server's first of that format,
    // its code paths warmed; it must hold the second couple's rows only), then the measured
    // couple's, at full speed and then slowly. JSON and CSV go before the Automerge document, so
    // that whatever that one leaves in the allocator cannot hide their growth.
    let sample_every = Duration::from_millis(args.export_sample_ms.max(1));
    let rates: Vec<Option<u64>> = std::iter::once(None)
        .chain((args.export_slow_kib > 0).then_some(Some(args.export_slow_kib * 1024)))
        .collect();
    let mut out = Vec::new();
    for format in FORMATS {
        let m = download(
            backend,
            pid,
            port,
            format,
            &other,
            &measured,
            None,
            sample_every,
        )
        .await?;
        println!(
            "  second couple, {format}: {} in {:.0} ms, VmRSS {} -> peak {}, rows: {}",
            kib_or_mib(m.body_bytes),
            m.total.as_secs_f64() * 1000.0,
            mib(m.rss_before_kib),
            mib(m.peak_kib()),
            rows_cell(&m.rows)
        );
        if let Err(e) = &m.rows {
            return Err(LoadError::Protocol(format!(
                "the second couple's {format} export: {e}"
            )));
        }
        for rate in &rates {
            let m = download(
                backend,
                pid,
                port,
                format,
                &measured,
                &other,
                *rate,
                sample_every,
            )
            .await?;
            println!(
                "  {format}, {}: {} in {:.2} s (first byte {:.0} ms), server CPU {}, VmRSS {} -> peak {} (VmHWM {}, {} samples) = +{}, {} after; rows: {}; history entries: {}",
                read_label(m.rate),
                kib_or_mib(m.body_bytes),
                m.total.as_secs_f64(),
                m.first_byte.as_secs_f64() * 1000.0,
                m.server_cpu.map_or("?".into(), |s| format!("{:.2} s", s)),
                mib(m.rss_before_kib),
                mib(m.sampled_peak_kib),
                opt_mib(m.hwm_kib),
                m.samples,
                mib(m.growth_kib()),
                opt_mib(m.rss_after_kib),
                rows_cell(&m.rows),
                history_cell(m.history)
            );
            out.push(m);
        }
    }
    Ok(out)
}

fn describe_couple(what: &str, c: &Couple, took: Duration) {
    println!(
        "setup: {what} {} ({}): {}; {} changes, a {} snapshot and the last changes after it; seeded in {:.1} s",
        c.pid,
        c.counts.total(),
        c.counts,
        c.changes,
        kib_or_mib(c.snapshot_bytes),
        took.as_secs_f64()
    );
}

/// Downloads `couple`'s export in `format` while watching the server's memory, and checks the
/// body against the couple (and that nothing of `other` is in it).
#[allow(clippy::too_many_arguments)]
async fn download(
    backend: Backend,
    pid: u32,
    port: u16,
    format: &'static str,
    couple: &Couple,
    other: &Couple,
    rate: Option<u64>,
    sample_every: Duration,
) -> Result<Measured> {
    tokio::time::sleep(SETTLE).await;
    let rss_before_kib = probe::read_kib(pid, "VmRSS")
        .ok_or_else(|| LoadError::Server(format!("cannot read /proc/{pid}/status")))?;
    let reset = probe::reset_peak(pid);
    let cpu_before = cpu_secs(Some(pid));
    let sampler = probe::Sampler::start(pid, sample_every);
    let got = probe::get(
        port,
        &format!("/api/export?format={format}"),
        &couple.token,
        rate,
    )
    .await;
    let samples = sampler.finish();
    let hwm_kib = reset.then(|| probe::read_kib(pid, "VmHWM")).flatten();
    let cpu_after = cpu_secs(Some(pid));
    let got = got?;
    let rss_after_kib = probe::read_kib(pid, "VmRSS");
    if got.status != 200 {
        return Err(LoadError::Protocol(format!(
            "GET /api/export?format={format}: status {}: {}",
            got.status,
            String::from_utf8_lossy(&got.body[..got.body.len().min(300)])
        )));
    }
    let rows = verify(format, &got.body, couple, other);
    let history = history_len(format, &got.body);
    Ok(Measured {
        backend,
        format,
        rate,
        body_bytes: got.body.len(),
        first_byte: got.first_byte,
        total: got.total,
        server_cpu: match (cpu_before, cpu_after) {
            (Some(a), Some(b)) => Some(b - a),
            _ => None,
        },
        rss_before_kib,
        sampled_peak_kib: samples.peak_kib,
        samples: samples.count,
        hwm_kib,
        rss_after_kib,
        rows,
        history,
    })
}

/// Entries of the history section of a JSON export (`history`) or a CSV one (`history.csv`).
fn history_len(format: &str, body: &[u8]) -> Option<usize> {
    match format {
        "json" => serde_json::from_slice::<serde_json::Value>(body)
            .ok()?
            .get("history")?
            .as_array()
            .map(Vec::len),
        "csv" => {
            let mut zip = zip::ZipArchive::new(std::io::Cursor::new(body)).ok()?;
            let mut text = String::new();
            zip.by_name("history.csv")
                .ok()?
                .read_to_string(&mut text)
                .ok()?;
            Some(csv::Reader::from_reader(text.as_bytes()).records().count())
        }
        _ => None,
    }
}

/// The rows a body holds, when they are exactly `couple`'s: its counts per table and its ids
/// (months by `YYYY-MM`), none of `other`'s.
fn verify(
    format: &str,
    body: &[u8],
    couple: &Couple,
    other: &Couple,
) -> std::result::Result<Counts, String> {
    let (counts, ids) = match format {
        "json" => json_rows(body)?,
        "csv" => csv_rows(body)?,
        _ => automerge_rows(body)?,
    };
    let foreign = ids
        .iter()
        .filter(|id| other.ids.contains(*id) && !couple.ids.contains(*id))
        .count();
    if foreign > 0 {
        return Err(format!("{foreign} ids of the other couple"));
    }
    if counts != couple.counts {
        return Err(format!("{counts}, expected {}", couple.counts));
    }
    if ids != couple.ids {
        let missing = couple.ids.difference(&ids).count();
        let stray = ids.difference(&couple.ids).count();
        return Err(format!("{missing} ids missing, {stray} unknown"));
    }
    Ok(counts)
}

type Rows = (Counts, BTreeSet<String>);

/// The key of a table's rows: `month` for the months, `id` otherwise.
fn key_of(table: &str) -> &'static str {
    if table == "contributions" {
        "month"
    } else {
        "id"
    }
}

/// The JSON export's tables: array lengths and the rows' keys.
pub(crate) fn json_rows(body: &[u8]) -> std::result::Result<Rows, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let mut counts = Counts::default();
    let mut ids = BTreeSet::new();
    for (k, table) in TABLES.iter().enumerate() {
        let items = value
            .get(table)
            .and_then(|v| v.as_array())
            .ok_or_else(|| format!("no {table} array"))?;
        counts.0[k] = items.len();
        for item in items {
            let id = item
                .get(key_of(table))
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("a row of {table} without {}", key_of(table)))?;
            ids.insert(id.to_string());
        }
    }
    Ok((counts, ids))
}

/// The zip's CSV files: rows (months: distinct months, one row per partner's share) and keys.
pub(crate) fn csv_rows(body: &[u8]) -> std::result::Result<Rows, String> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(body)).map_err(|e| format!("not a zip: {e}"))?;
    let mut counts = Counts::default();
    let mut ids = BTreeSet::new();
    for (k, table) in TABLES.iter().enumerate() {
        let mut text = String::new();
        zip.by_name(&format!("{table}.csv"))
            .map_err(|e| format!("{table}.csv: {e}"))?
            .read_to_string(&mut text)
            .map_err(|e| format!("{table}.csv: {e}"))?;
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let column = reader
            .headers()
            .map_err(|e| format!("{table}.csv: {e}"))?
            .iter()
            .position(|h| h == key_of(table))
            .ok_or_else(|| format!("{table}.csv has no {} column", key_of(table)))?;
        let mut keys = BTreeSet::new();
        let mut rows = 0;
        for record in reader.records() {
            let record = record.map_err(|e| format!("{table}.csv: {e}"))?;
            rows += 1;
            keys.insert(record.get(column).unwrap_or("").to_string());
        }
        counts.0[k] = if *table == "contributions" {
            keys.len()
        } else {
            rows
        };
        ids.extend(keys);
    }
    Ok((counts, ids))
}

/// The Automerge document's entities, as sync-core reads them.
fn automerge_rows(body: &[u8]) -> std::result::Result<Rows, String> {
    let doc = Automerge::load(body).map_err(|e| format!("not an Automerge document: {e}"))?;
    let state = read_document(&doc).map_err(|e| e.to_string())?;
    Ok((Counts::of_document(&state), seed::ids_of(&state)))
}

// ---- the report -------------------------------------------------------------------------------

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn opt_mib(kib: Option<u64>) -> String {
    kib.map_or("?".into(), mib)
}

fn kib_or_mib(bytes: usize) -> String {
    if bytes >= 1 << 20 {
        format!("{:.2} MiB", bytes as f64 / f64::from(1 << 20))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn read_label(rate: Option<u64>) -> String {
    rate.map_or("full speed".into(), |r| format!("{} KiB/s", r / 1024))
}

fn rows_cell(rows: &std::result::Result<Counts, String>) -> String {
    match rows {
        Ok(c) => format!("{} rows, exact", c.total()),
        Err(e) => format!("WRONG: {e}"),
    }
}

fn history_cell(history: Option<usize>) -> String {
    history.map_or("-".into(), |n| n.to_string())
}

fn render(all: &[Measured]) -> String {
    let heads: Vec<String> = [
        "backend",
        "format",
        "read",
        "body",
        "time (first byte)",
        "server CPU",
        "VmRSS before",
        "peak (sampled / VmHWM)",
        "growth",
        "after",
        "rows",
        "history entries",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|m| {
            vec![
                m.backend.name().to_string(),
                m.format.to_string(),
                read_label(m.rate),
                kib_or_mib(m.body_bytes),
                format!(
                    "{:.2} s ({:.0} ms)",
                    m.total.as_secs_f64(),
                    m.first_byte.as_secs_f64() * 1000.0
                ),
                m.server_cpu.map_or("?".into(), |s| format!("{s:.2} s")),
                mib(m.rss_before_kib),
                format!("{} / {}", mib(m.sampled_peak_kib), opt_mib(m.hwm_kib)),
                format!("+{}", mib(m.growth_kib())),
                opt_mib(m.rss_after_kib),
                rows_cell(&m.rows),
                history_cell(m.history),
            ]
        })
        .collect();
    render_table(&heads, &rows)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn the_json_export_is_counted_table_by_table_with_its_keys() {
        let body = serde_json::json!({
            "format_version": 1,
            "profile": {"id": "u1"},
            "partnership": {"id": "p1"},
            "expenses": [{"id": "e1"}, {"id": "e2"}],
            "goals": [{"id": "g1"}],
            "goal_contributions": [],
            "contributions": [{"month": "2026-11", "shares": [{}, {}]}],
            "approval_requests": [{"id": "a1"}],
            "messages": [{"id": "m1"}, {"id": "m2"}, {"id": "m3"}],
        });
        let (counts, ids) = json_rows(body.to_string().as_bytes()).expect("rows");
        assert_eq!(counts, Counts([2, 1, 0, 1, 1, 3]));
        let want: BTreeSet<String> = ["e1", "e2", "g1", "2026-11", "a1", "m1", "m2", "m3"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(ids, want);
        // The profile and the partnership are not rows; a table missing is an error.
        assert!(json_rows(br#"{"expenses": []}"#).is_err());
        assert!(json_rows(b"{").is_err());
    }

    #[test]
    fn the_csv_zip_counts_months_once_whatever_their_shares() {
        let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        let files = [
            ("profile.csv", "id,name\nu1,Ann\n"),
            (
                "expenses.csv",
                "id,name,amount\ne1,\"Groceries, weekly\",12.50\ne2,\"Two\nlines\",3.00\n",
            ),
            ("goals.csv", "id,name\n"),
            ("goal_contributions.csv", "id,goal_id\nc1,g0\n"),
            (
                "contributions.csv",
                "month,currency,user_id\n2026-10,EUR,u1\n2026-10,EUR,u2\n2026-11,EUR,u1\n2026-11,EUR,u2\n",
            ),
            ("approval_requests.csv", "id,request_data\na1,\"{\"\"amount\"\":1}\"\n"),
            ("messages.csv", "sender_id,id\nu1,m1\n"),
        ];
        for (name, text) in files {
            zip.start_file(name, options).expect("file");
            zip.write_all(text.as_bytes()).expect("write");
        }
        let body = zip.finish().expect("zip").into_inner();
        let (counts, ids) = csv_rows(&body).expect("rows");
        // A quoted line break is inside a row, not a row.
        assert_eq!(counts, Counts([2, 0, 1, 2, 1, 1]));
        let want: BTreeSet<String> = ["e1", "e2", "c1", "2026-10", "2026-11", "a1", "m1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(ids, want);
        assert!(csv_rows(b"not a zip").is_err());
    }
}
