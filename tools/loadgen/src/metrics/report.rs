//! `--compare-metrics`' figures and the table it prints: the sessions side by side (metrics
//! off and on, alternating), the on/off ratios of durable merges/s and REST req/s against the
//! issue's target, and of the server CPU each costs.

use super::rest::RestFigures;
use super::scrape::ScrapeFigures;
use crate::compare::ThroughputFigures;
use crate::sessions::{
    cores, figure_row, mean, ms, pair, ratio, ratios_line, render_table, session_heads, Bound,
    OnOff,
};

/// How far merges/s and REST req/s may fall with metrics on (the issue: within 5 % of off).
pub(crate) const RATE_TARGET: Bound = Bound::AtLeast(0.95);
/// The same 5 % applied to the server CPU each merge and request costs (not the issue's
/// criterion, but the figure least moved by the rest of the machine).
pub(crate) const COST_TARGET: Bound = Bound::AtMost(1.05);

/// What one session measured.
pub(crate) struct MetricsSession {
    pub(crate) metrics_on: bool,
    /// The machine's 1, 5 and 15 minute load averages when the session started.
    pub(crate) load_average: String,
    pub(crate) throughput: ThroughputFigures,
    pub(crate) rest: RestFigures,
    /// Only with metrics on.
    pub(crate) scrapes: Option<ScrapeFigures>,
}

impl OnOff for MetricsSession {
    fn on(&self) -> bool {
        self.metrics_on
    }
}

impl MetricsSession {
    fn merges_per_sec(&self) -> Option<f64> {
        Some(self.throughput.rate).filter(|r| *r > 0.0)
    }

    fn server_ms_per_merge(&self) -> Option<f64> {
        self.throughput.server_ms_per_merge
    }

    fn rest_per_sec(&self) -> Option<f64> {
        self.rest.rate().filter(|r| *r > 0.0)
    }

    fn server_us_per_request(&self) -> Option<f64> {
        self.rest.server_us_per_request()
    }
}

/// The acceptance line's verdict: both rates' on/off ratios (means over the sessions) within
/// the target; "not measured" when either is missing.
pub(crate) fn acceptance(sessions: &[MetricsSession]) -> &'static str {
    let overall = |f: fn(&MetricsSession) -> Option<f64>| {
        let side = |on: bool| mean(sessions.iter().filter(|s| s.metrics_on == on).map(f));
        ratio(side(false), side(true))
    };
    match (
        overall(MetricsSession::merges_per_sec),
        overall(MetricsSession::rest_per_sec),
    ) {
        (Some(m), Some(r)) if RATE_TARGET.holds(m) && RATE_TARGET.holds(r) => "met",
        (Some(_), Some(_)) => "MISSED",
        _ => "not measured",
    }
}

fn num(v: Option<f64>, unit: &str) -> String {
    v.filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.0}{unit}"))
}

fn count(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.0}"))
}

/// The sessions' table and the ratio lines, as printed at the end of a run.
pub(crate) fn render(sessions: &[MetricsSession]) -> String {
    let heads = session_heads(sessions, "metrics");
    let clients = sessions.first().map_or(0, |s| s.rest.clients);
    let post_every = sessions.first().map_or(0, |s| s.rest.post_every);
    let mut rows = Vec::new();
    let merges = |s: &MetricsSession| s.merges_per_sec();
    rows.push(figure_row(
        "durable merges/s (throughput, flooding)",
        sessions,
        |s| num(merges(s), ""),
        Some(&merges),
    ));
    let ack_p99 = |s: &MetricsSession| s.throughput.rtt.as_ref().map(|p| p.p99);
    rows.push(figure_row(
        "  edit -> ack",
        sessions,
        |s| pair(&s.throughput.rtt),
        Some(&ack_p99),
    ));
    let per_merge = |s: &MetricsSession| s.server_ms_per_merge();
    rows.push(figure_row(
        "  server CPU per merge",
        sessions,
        |s| ms(per_merge(s)),
        Some(&per_merge),
    ));
    rows.push(figure_row(
        "  CPU, cores",
        sessions,
        |s| cores(&s.throughput.cpu),
        None,
    ));
    rows.push(figure_row(
        "  PostgreSQL xacts committed / rolled back",
        sessions,
        |s| {
            s.throughput
                .xacts
                .map_or("-".into(), |(c, r)| format!("{c} / {r}"))
        },
        None,
    ));
    let rest = |s: &MetricsSession| s.rest_per_sec();
    rows.push(figure_row(
        &format!("REST req/s ({clients} clients, a POST every {post_every}th)"),
        sessions,
        |s| num(rest(s), ""),
        Some(&rest),
    ));
    rows.push(figure_row(
        "  answered (of them POST /api/expenses) / failed",
        sessions,
        |s| format!("{} ({}) / {}", s.rest.requests, s.rest.posts, s.rest.failed),
        None,
    ));
    let rest_p99 = |s: &MetricsSession| s.rest.latency.as_ref().map(|p| p.p99);
    rows.push(figure_row(
        "  request -> response",
        sessions,
        |s| pair(&s.rest.latency),
        Some(&rest_p99),
    ));
    let per_request = |s: &MetricsSession| s.server_us_per_request();
    rows.push(figure_row(
        "  server CPU per request",
        sessions,
        |s| num(per_request(s), " µs"),
        Some(&per_request),
    ));
    rows.push(figure_row(
        "  CPU, cores",
        sessions,
        |s| cores(&s.rest.cpu),
        None,
    ));
    rows.push(figure_row(
        "scrapes (failed), last size, time",
        sessions,
        |s| {
            s.scrapes.as_ref().map_or("-".into(), |f| {
                format!(
                    "{} ({}), {}, {}",
                    f.scrapes,
                    f.failed,
                    f.bytes
                        .map_or("-".into(), |b| format!("{:.1} KiB", b as f64 / 1024.0)),
                    pair(&f.duration)
                )
            })
        },
        None,
    ));
    rows.push(figure_row(
        "  node's count: merges sync + rest, HTTP requests",
        sessions,
        |s| {
            s.scrapes.as_ref().map_or("-".into(), |f| {
                format!(
                    "{} + {}, {}",
                    count(f.merges_sync),
                    count(f.merges_rest),
                    count(f.http_requests)
                )
            })
        },
        None,
    ));
    rows.push(figure_row(
        "load average at the start (1/5/15 min)",
        sessions,
        |s| s.load_average.clone(),
        None,
    ));
    let mut out = render_table(&heads, &rows);
    let values = |f: fn(&MetricsSession) -> Option<f64>| -> Vec<(bool, Option<f64>)> {
        sessions.iter().map(|s| (s.metrics_on, f(s))).collect()
    };
    for (label, f, bound) in [
        (
            "durable merges/s, metrics on / off",
            MetricsSession::merges_per_sec as fn(&MetricsSession) -> Option<f64>,
            RATE_TARGET,
        ),
        (
            "REST req/s, metrics on / off",
            MetricsSession::rest_per_sec,
            RATE_TARGET,
        ),
        (
            "server CPU per merge, metrics on / off",
            MetricsSession::server_ms_per_merge,
            COST_TARGET,
        ),
        (
            "server CPU per REST request, metrics on / off",
            MetricsSession::server_us_per_request,
            COST_TARGET,
        ),
    ] {
        out.push('\n');
        out.push_str(&ratios_line(label, &values(f), bound));
    }
    out.push('\n');
    out.push_str(&format!(
        "acceptance (merges/s and REST req/s with metrics on within 5 % of off, means of all sessions): {}",
        acceptance(sessions)
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CpuUse;

    fn session(on: bool, merges: f64, rest_requests: u64) -> MetricsSession {
        MetricsSession {
            metrics_on: on,
            load_average: "0.10 0.20 0.30".into(),
            throughput: ThroughputFigures {
                rate: merges,
                rtt: None,
                cpu: CpuUse::default(),
                server_ms_per_merge: Some(merges / 1000.0),
                xacts: Some((10, 0)),
            },
            rest: RestFigures {
                clients: 32,
                post_every: 10,
                seconds: 10.0,
                requests: rest_requests,
                posts: rest_requests / 10,
                failed: 0,
                first_failure: None,
                latency: None,
                cpu: CpuUse {
                    wall: 10.0,
                    servers: Some(1.0),
                    ..CpuUse::default()
                },
            },
            scrapes: on.then(|| ScrapeFigures {
                scrapes: 30,
                bytes: Some(2048),
                merges_sync: Some(25_000.0),
                merges_rest: Some(900.0),
                http_requests: Some(60_000.0),
                ..ScrapeFigures::default()
            }),
        }
    }

    #[test]
    fn rest_figures_give_requests_per_second_and_cpu_per_request() {
        let s = session(false, 2000.0, 50_000);
        assert_eq!(s.rest_per_sec(), Some(5000.0));
        // One core for 10 s over 50,000 requests: 200 µs each.
        assert!((s.server_us_per_request().unwrap() - 200.0).abs() < 1e-9);
        let idle = session(false, 0.0, 0);
        assert_eq!(idle.rest_per_sec(), None);
        assert_eq!(idle.merges_per_sec(), None);
    }

    #[test]
    fn acceptance_needs_both_rates_within_five_percent() {
        let met = [
            session(false, 2000.0, 50_000),
            session(true, 1920.0, 48_000),
            session(false, 2000.0, 50_000),
            session(true, 1980.0, 49_000),
        ];
        assert_eq!(acceptance(&met), "met");
        // REST at 0.94x of off.
        let missed = [
            session(false, 2000.0, 50_000),
            session(true, 2000.0, 47_000),
        ];
        assert_eq!(acceptance(&missed), "MISSED");
        assert_eq!(
            acceptance(&[session(false, 2000.0, 50_000)]),
            "not measured"
        );
    }

    #[test]
    fn the_table_has_a_column_per_session_and_the_ratio_lines() {
        let sessions = [
            session(false, 2000.0, 50_000),
            session(true, 1900.0, 50_000),
        ];
        let text = render(&sessions);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("| figure"));
        assert!(lines[0].contains("metrics off #1") && lines[0].contains("metrics on #1"));
        assert!(lines[0].trim_end().ends_with("on / off |"));
        let merges = lines
            .iter()
            .find(|l| l.starts_with("| durable merges/s"))
            .expect("merges row");
        assert!(merges.contains("| 2000 ") && merges.contains("| 1900 "));
        assert!(merges.contains("0.95x"));
        // The off session was not scraped; the on session shows what its node counted.
        let counted = lines
            .iter()
            .find(|l| l.contains("node's count"))
            .expect("count row");
        assert!(counted.contains("| -") && counted.contains("25000 + 900, 60000"));
        assert!(text.contains(
            "durable merges/s, metrics on / off: round 1 0.95x; means of all sessions 0.95x (target >= 0.95x): met"
        ));
        assert!(text.contains("REST req/s, metrics on / off: round 1 1.00x"));
        assert!(text.ends_with("of all sessions): met"));
    }
}
