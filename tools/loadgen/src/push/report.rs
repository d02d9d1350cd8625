//! `--compare-push`'s figures and the tables it prints: the sessions side by side (push off and
//! on, alternating), the on/off ratio of propagation p99 against its target, and the outbox's
//! drain in each push-on session.

use std::time::Duration;

use crate::compare::LatencyFigures;
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

/// The mean of the values that are there and finite; None when there is none.
pub(crate) fn mean(values: impl IntoIterator<Item = Option<f64>>) -> Option<f64> {
    let v: Vec<f64> = values
        .into_iter()
        .flatten()
        .filter(|x| x.is_finite())
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `on / off`, when both are there and `off` is positive.
pub(crate) fn ratio(off: Option<f64>, on: Option<f64>) -> Option<f64> {
    let (a, b) = (off?, on?);
    (a > 0.0 && a.is_finite() && b.is_finite()).then_some(b / a)
}

/// The ratio of each round (an off session followed by an on session) and of the means over
/// all sessions, from (push on, value) in the order measured.
pub(crate) fn on_off_ratios(values: &[(bool, Option<f64>)]) -> (Vec<Option<f64>>, Option<f64>) {
    let rounds = values
        .windows(2)
        .filter(|w| !w[0].0 && w[1].0)
        .map(|w| ratio(w[0].1, w[1].1))
        .collect();
    let side = |on: bool| mean(values.iter().filter(|(o, _)| *o == on).map(|(_, v)| *v));
    (rounds, ratio(side(false), side(true)))
}

/// "met" or "MISSED" for a ratio against its upper bound.
pub(crate) fn verdict(ratio: f64, limit: f64) -> &'static str {
    if ratio <= limit {
        "met"
    } else {
        "MISSED"
    }
}

/// A Markdown table, each column as wide as its widest cell. Rows shorter than the header are
/// padded with empty cells.
pub(crate) fn render_table(heads: &[String], rows: &[Vec<String>]) -> String {
    let cell = |r: &[String], i: usize| r.get(i).map_or("", String::as_str).to_string();
    let widths: Vec<usize> = (0..heads.len())
        .map(|i| {
            rows.iter()
                .map(|r| cell(r, i).chars().count())
                .chain([heads[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |r: &[String]| {
        let padded: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| format!("{:w$}", cell(r, i)))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![line(heads)];
    out.push(format!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    ));
    out.extend(rows.iter().map(|r| line(r)));
    out.join("\n")
}

fn ms(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.2} ms"))
}

fn x(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn pair(p: &Option<Percentiles>) -> String {
    p.as_ref().map_or("-".into(), |p| {
        format!("p50 {:.2} / p99 {:.2} ms", p.p50, p.p99)
    })
}

fn cores(u: &CpuUse) -> String {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    format!(
        "server {}, gen {}, pg {:.2}, others {}",
        f(u.servers),
        f(u.generator),
        u.postgres,
        f(u.others)
    )
}

/// A session's numeric figure, for the on/off ratio of a row.
type Figure<'a> = &'a dyn Fn(&PushSession) -> Option<f64>;

/// One row of the sessions' table: a label, a cell per session and, for a number, the ratio of
/// its mean over the push-on sessions to its mean over the push-off ones.
fn figure_row(
    label: &str,
    sessions: &[PushSession],
    cell: impl Fn(&PushSession) -> String,
    number: Option<Figure<'_>>,
) -> Vec<String> {
    let mut r = vec![label.to_string()];
    r.extend(sessions.iter().map(&cell));
    r.push(number.map_or(String::new(), |n| {
        let side = |on: bool| mean(sessions.iter().filter(|s| s.push_on == on).map(n));
        x(ratio(side(false), side(true)))
    }));
    r
}

/// The sessions' table, the p99 verdict and the drain table, as printed at the end of a run.
pub(crate) fn render(sessions: &[PushSession]) -> String {
    let mut heads = vec!["figure".to_string()];
    let mut round = [0usize; 2];
    for s in sessions {
        let k = &mut round[usize::from(s.push_on)];
        *k += 1;
        heads.push(format!(
            "push {} #{k}",
            if s.push_on { "on" } else { "off" }
        ));
    }
    heads.push("on / off".into());
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
    let (rounds, overall) = on_off_ratios(&values);
    let rounds: Vec<String> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| format!("round {} {}", i + 1, x(*r)))
        .collect();
    out.push('\n');
    out.push_str(&match overall {
        Some(r) => format!(
            "propagation p99, push on / off: {}; means of all sessions {r:.2}x (target <= {P99_TARGET:.2}x): {}",
            rounds.join(", "),
            verdict(r, P99_TARGET)
        ),
        None => "propagation p99, push on / off: not measured".into(),
    });
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
    fn rounds_pair_each_off_session_with_the_on_session_after_it() {
        let values = [
            (false, Some(10.0)),
            (true, Some(11.0)),
            (false, Some(20.0)),
            (true, Some(18.0)),
        ];
        let (rounds, overall) = on_off_ratios(&values);
        assert_eq!(rounds.len(), 2);
        assert!((rounds[0].unwrap() - 1.1).abs() < 1e-9);
        assert!((rounds[1].unwrap() - 0.9).abs() < 1e-9);
        // Means of the sides: 29 / 30.
        assert!((overall.unwrap() - 29.0 / 30.0).abs() < 1e-9);
    }

    #[test]
    fn a_missing_or_zero_figure_gives_no_ratio() {
        let (rounds, overall) = on_off_ratios(&[(false, None), (true, Some(5.0))]);
        assert_eq!(rounds, [None]);
        assert_eq!(overall, None);
        assert_eq!(ratio(Some(0.0), Some(1.0)), None);
        assert_eq!(mean([None, Some(f64::NAN)]), None);
        assert_eq!(mean([Some(1.0), None, Some(3.0)]), Some(2.0));
    }

    #[test]
    fn the_target_is_an_upper_bound() {
        assert_eq!(verdict(1.10, P99_TARGET), "met");
        assert_eq!(verdict(1.1001, P99_TARGET), "MISSED");
        assert_eq!(verdict(0.5, P99_TARGET), "met");
    }

    #[test]
    fn tables_align_every_column_and_pad_short_rows() {
        let heads = vec!["figure".to_string(), "a".into(), "b".into()];
        let rows = vec![
            vec!["p99".to_string(), "10.00 ms".into(), "1".into()],
            vec!["wide label here".to_string()],
        ];
        let table = render_table(&heads, &rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines
            .iter()
            .all(|l| l.chars().count() == lines[0].chars().count()));
        assert_eq!(lines[0], "| figure          | a        | b |");
        assert_eq!(lines[1], "|-----------------|----------|---|");
        assert_eq!(lines[3], "| wide label here |          |   |");
    }

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
