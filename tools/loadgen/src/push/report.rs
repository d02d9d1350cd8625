//! `--compare-push`'s figures and the tables it prints: the sessions side by side (push off and
//! on, alternating), the on/off ratio of propagation p99 against its target, and the outbox's
//! drain in each push-on session.

use std::time::Duration;

use crate::compare::LatencyFigures;
use crate::sessions::{
    cores, figure_row, ms, pair, ratios_line, render_table, session_heads, Bound, OnOff,
};
use crate::{CpuUse, Percentiles};

/// How much slower propagation p99 may be with push on than off (the target: +10 %).
pub(crate) const P99_TARGET: f64 = 1.10;

/// What one session measured.
pub(crate) struct PushSession {
    pub(crate) push_on: bool,
    /// The machine's 1, 5 and 15 minute load averages when the session started.
    pub(crate) load_average: String,
    pub(crate) latency: LatencyFigures,
    /// Background messages offered over the whole session (warm-up and drain included), and
    /// how many a full client queue refused.
    pub(crate) messages_offered: u64,
    pub(crate) messages_skipped: u64,
    /// Pushes the stand-in accepted during the session's load (before any drain).
    pub(crate) pushes: u64,
    /// Rows in the outbox right after the latency scenario.
    pub(crate) outbox_after: Option<i64>,
    /// Message scheduled -> its push reached the stand-in, for the devices whose pushes could
    /// be matched one to one with their messages.
    pub(crate) push_latency: Option<Percentiles>,
    /// (devices matched, devices with messages).
    pub(crate) push_matched: (usize, usize),
    pub(crate) drain: Option<DrainFigures>,
}

/// The sender emptying an outbox filled at once.
pub(crate) struct DrainFigures {
    pub(crate) rows: u64,
    /// How long the one `INSERT` of the rows took.
    pub(crate) insert: Duration,
    /// From the insert's commit until the outbox was seen empty; None when it was not within
    /// the time allowed.
    pub(crate) emptied: Option<Duration>,
    /// Rows still there when the drain stopped being watched.
    pub(crate) left: i64,
    /// First and last push the stand-in accepted, from the insert's commit.
    pub(crate) first_push: Option<Duration>,
    pub(crate) last_push: Option<Duration>,
    pub(crate) deliveries: u64,
    pub(crate) cpu: CpuUse,
    /// CPU seconds of the stand-in's thread over the drain.
    pub(crate) standin_cpu: Option<f64>,
}

impl DrainFigures {
    /// Rows gone per second, from the insert until the outbox was empty.
    pub(crate) fn rows_per_sec(&self) -> Option<f64> {
        let gone = self.rows as f64 - self.left as f64;
        self.emptied
            .map(|d| gone / d.as_secs_f64().max(1e-9))
            .filter(|r| r.is_finite())
    }

    /// Deliveries per second while the sender was sending (first to last push).
    pub(crate) fn deliveries_per_sec(&self) -> Option<f64> {
        let span = self.last_push?.checked_sub(self.first_push?)?;
        (self.deliveries > 1 && !span.is_zero())
            .then(|| (self.deliveries - 1) as f64 / span.as_secs_f64())
    }

    /// CPU milliseconds per delivered notification of the process(es) `cores` picks.
    pub(crate) fn ms_per_delivery(&self, cores: Option<f64>) -> Option<f64> {
        (self.deliveries > 0).then_some(())?;
        Some(cores? * self.cpu.wall / self.deliveries as f64 * 1000.0)
    }
}

impl OnOff for PushSession {
    fn on(&self) -> bool {
        self.push_on
    }
}

impl PushSession {
    /// Server CPU per merge, the background's messages counted with the measured edits.
    pub(crate) fn server_ms_per_merge(&self) -> Option<f64> {
        let l = &self.latency;
        let merges = l.delivered + l.background_merges.unwrap_or(0);
        l.cpu.server_ms_per(merges)
    }

    fn p99(&self) -> Option<f64> {
        self.latency.propagation.as_ref().map(|p| p.p99)
    }
}

/// The sessions' table, the p99 verdict and the drain table, as printed at the end of a run.
pub(crate) fn render(sessions: &[PushSession]) -> String {
    let heads = session_heads(sessions, "push");
    let rate = sessions.first().map_or(0, |s| s.latency.rate);
    let mut rows = Vec::new();
    for (label, pick) in [
        ("p50", (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64),
        ("p99", |p: &Percentiles| p.p99),
        ("p99.9", |p: &Percentiles| p.p999),
        ("max", |p: &Percentiles| p.max),
    ] {
        let value = move |s: &PushSession| s.latency.propagation.as_ref().map(pick);
        rows.push(figure_row(
            &format!("propagation {label} at {rate}/s offered"),
            sessions,
            |s| ms(value(s)),
            Some(&value),
        ));
    }
    rows.push(figure_row(
        "  delivered / offered (not offered)",
        sessions,
        |s| {
            let l = &s.latency;
            format!("{} / {} ({})", l.delivered, l.expected, l.skipped)
        },
        None,
    ));
    rows.push(figure_row(
        "  scheduled -> author acknowledged",
        sessions,
        |s| pair(&s.latency.to_ack),
        Some(&|s: &PushSession| s.latency.to_ack.as_ref().map(|p| p.p99)),
    ));
    rows.push(figure_row(
        "  generator's own lateness",
        sessions,
        |s| pair(&s.latency.generator_lag),
        None,
    ));
    let per_merge = |s: &PushSession| s.server_ms_per_merge();
    rows.push(figure_row(
        "  server CPU per merge (edits + messages)",
        sessions,
        |s| ms(per_merge(s)),
        Some(&per_merge),
    ));
    rows.push(figure_row(
        "  CPU, cores",
        sessions,
        |s| cores(&s.latency.cpu),
        None,
    ));
    rows.push(figure_row(
        "  PostgreSQL xacts committed / rolled back",
        sessions,
        |s| {
            s.latency
                .xacts
                .map_or("-".into(), |(c, r)| format!("{c} / {r}"))
        },
        None,
    ));
    rows.push(figure_row(
        "background messages offered (refused)",
        sessions,
        |s| format!("{} ({})", s.messages_offered, s.messages_skipped),
        None,
    ));
    rows.push(figure_row(
        "  of them in the measured window",
        sessions,
        |s| {
            s.latency
                .background_merges
                .map_or("-".into(), |n| n.to_string())
        },
        None,
    ));
    rows.push(figure_row(
        "pushes accepted by the stand-in",
        sessions,
        |s| s.pushes.to_string(),
        None,
    ));
    rows.push(figure_row(
        "  message -> push at the stand-in",
        sessions,
        |s| match (&s.push_latency, s.push_matched) {
            (Some(p), (m, of)) => format!("{} ({m} of {of} devices)", pair(&Some(*p))),
            (None, _) => "-".into(),
        },
        None,
    ));
    rows.push(figure_row(
        "outbox rows after the latency scenario",
        sessions,
        |s| s.outbox_after.map_or("-".into(), |n| n.to_string()),
        None,
    ));
    rows.push(figure_row(
        "load average at the start (1/5/15 min)",
        sessions,
        |s| s.load_average.clone(),
        None,
    ));
    let mut out = render_table(&heads, &rows);
    let values: Vec<(bool, Option<f64>)> = sessions.iter().map(|s| (s.push_on, s.p99())).collect();
    out.push('\n');
    out.push_str(&ratios_line(
        "propagation p99, push on / off",
        &values,
        Bound::AtMost(P99_TARGET),
    ));
    let drains: Vec<(usize, &DrainFigures)> = sessions
        .iter()
        .filter(|s| s.push_on)
        .enumerate()
        .filter_map(|(i, s)| s.drain.as_ref().map(|d| (i + 1, d)))
        .collect();
    if !drains.is_empty() {
        out.push_str("\n\n");
        out.push_str(&render_drains(&drains));
    }
    out
}

/// The drain table: one row per push-on session that drained.
fn render_drains(drains: &[(usize, &DrainFigures)]) -> String {
    let heads: Vec<String> = [
        "drain",
        "rows",
        "emptied after",
        "first / last push",
        "rows/s",
        "deliveries/s (sending)",
        "server CPU / notification",
        "pg CPU / notification",
        "stand-in CPU / push",
        "cores: server, pg",
    ]
    .map(String::from)
    .to_vec();
    let secs = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()));
    let rows: Vec<Vec<String>> = drains
        .iter()
        .map(|(k, d)| {
            vec![
                format!("push on #{k}"),
                format!("{} (insert {:.2} s)", d.rows, d.insert.as_secs_f64()),
                match d.emptied {
                    Some(e) => secs(Some(e)),
                    None => format!("not empty: {} left", d.left),
                },
                format!("{} / {}", secs(d.first_push), secs(d.last_push)),
                d.rows_per_sec().map_or("-".into(), |r| format!("{r:.0}")),
                d.deliveries_per_sec()
                    .map_or("-".into(), |r| format!("{r:.0} ({} pushes)", d.deliveries)),
                ms(d.ms_per_delivery(d.cpu.servers)),
                ms(d.ms_per_delivery(Some(d.cpu.postgres))),
                ms(d.standin_cpu
                    .filter(|_| d.deliveries > 0)
                    .map(|c| c / d.deliveries as f64 * 1000.0)),
                format!(
                    "{}, {:.2}",
                    d.cpu.servers.map_or("-".into(), |v| format!("{v:.2}")),
                    d.cpu.postgres
                ),
            ]
        })
        .collect();
    render_table(&heads, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_rates_count_what_left_the_outbox_and_the_sending_span() {
        let d = DrainFigures {
            rows: 1000,
            insert: Duration::from_millis(50),
            emptied: Some(Duration::from_secs(4)),
            left: 0,
            first_push: Some(Duration::from_millis(500)),
            last_push: Some(Duration::from_millis(3500)),
            deliveries: 1001,
            cpu: CpuUse {
                wall: 4.0,
                servers: Some(0.5),
                ..CpuUse::default()
            },
            standin_cpu: None,
        };
        assert_eq!(d.rows_per_sec(), Some(250.0));
        // 1,000 intervals between the first and last of 1,001 pushes, in 3 s.
        assert!((d.deliveries_per_sec().unwrap() - 1000.0 / 3.0).abs() < 1e-9);
        // 0.5 cores for 4 s over 1,001 deliveries.
        assert!((d.ms_per_delivery(d.cpu.servers).unwrap() - 2000.0 / 1001.0).abs() < 1e-9);
        let stuck = DrainFigures {
            emptied: None,
            left: 10,
            ..d
        };
        assert_eq!(stuck.rows_per_sec(), None);
    }
}
