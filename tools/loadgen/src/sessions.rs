//! Sessions: a fresh database and node(s) per measurement, and runs that alternate a setting
//! off and on (`--compare-push`, `--compare-metrics`) so that both sides see the same machine.
//!
//! On this project's shared 2-core machines the load drifts over minutes. Two sessions taken one
//! after the other would fold that drift into the comparison; off, on, off, on, ... spreads it
//! over both sides, and a ratio per round shows how far one pair alone can be trusted. The
//! figures are compared as on / off ratios of their means over the sessions of each side.

use std::fmt;
use std::time::Instant;

use crate::{load_average, Args, CpuUse, Environment, LoadError, Percentiles, Result};

/// A fresh database and `nodes` node(s) started with `env_vars`, `measure` run on them, and
/// everything torn down (unless `--keep`) whether it succeeded, failed, ran past `deadline` or
/// was interrupted. Returns the figures and the load average (1/5/15 min) at the start.
pub(crate) async fn in_fresh_env<T>(
    args: &Args,
    nodes: usize,
    env_vars: &[(String, String)],
    deadline: Instant,
    measure: impl AsyncFnOnce(&Environment) -> Result<T>,
) -> Result<(T, String)> {
    let load = load_average();
    println!("machine: load average {load}");
    let mut env = Environment::prepare(args, nodes, env_vars).await?;
    let result = tokio::select! {
        r = measure(&env) => r,
        _ = tokio::time::sleep_until(deadline.into()) => {
            Err(LoadError::Timeout("the whole run (--max-seconds)"))
        }
        _ = tokio::signal::ctrl_c() => Err(LoadError::Usage("interrupted".into())),
    };
    env.teardown(args.keep).await;
    Ok((result?, load))
}

/// Runs `rounds` (at least one) pairs of sessions, the setting off then on, announcing each;
/// the sessions' figures in the order measured.
pub(crate) async fn alternate<T>(
    rounds: usize,
    setting: &str,
    mut session: impl AsyncFnMut(bool) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for round in 1..=rounds.max(1) {
        for on in [false, true] {
            println!();
            println!(
                "=== session {}: {setting} {} (round {round}) ===",
                out.len() + 1,
                on_off(on)
            );
            out.push(session(on).await?);
        }
    }
    Ok(out)
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// A session of an alternating run: whether its setting was on.
pub(crate) trait OnOff {
    /// True for a session with the setting on.
    fn on(&self) -> bool;
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
/// all sessions, from (setting on, value) in the order measured.
pub(crate) fn on_off_ratios(values: &[(bool, Option<f64>)]) -> (Vec<Option<f64>>, Option<f64>) {
    let rounds = values
        .windows(2)
        .filter(|w| !w[0].0 && w[1].0)
        .map(|w| ratio(w[0].1, w[1].1))
        .collect();
    let side = |on: bool| mean(values.iter().filter(|(o, _)| *o == on).map(|(_, v)| *v));
    (rounds, ratio(side(false), side(true)))
}

/// The target an on / off ratio is held to.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Bound {
    /// The ratio may not exceed this (a latency, a cost).
    AtMost(f64),
    /// The ratio may not fall below this (a rate).
    AtLeast(f64),
}

impl Bound {
    /// Whether `ratio` is within the target.
    pub(crate) fn holds(self, ratio: f64) -> bool {
        match self {
            Bound::AtMost(limit) => ratio <= limit,
            Bound::AtLeast(limit) => ratio >= limit,
        }
    }

    /// "met" or "MISSED".
    pub(crate) fn verdict(self, ratio: f64) -> &'static str {
        if self.holds(ratio) {
            "met"
        } else {
            "MISSED"
        }
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Bound::AtMost(limit) => write!(f, "<= {limit:.2}x"),
            Bound::AtLeast(limit) => write!(f, ">= {limit:.2}x"),
        }
    }
}

/// `1.23x`, or `-` when there is no ratio.
pub(crate) fn times(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// Milliseconds with two decimals, or `-`.
pub(crate) fn ms(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.2} ms"))
}

/// `p50 … / p99 … ms`, or `-`.
pub(crate) fn pair(p: &Option<Percentiles>) -> String {
    p.as_ref().map_or("-".into(), |p| {
        format!("p50 {:.2} / p99 {:.2} ms", p.p50, p.p99)
    })
}

/// The cores a measured window used: the node(s), the generator, PostgreSQL, everything else.
pub(crate) fn cores(u: &CpuUse) -> String {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    format!(
        "server {}, gen {}, pg {:.2}, others {}",
        f(u.servers),
        f(u.generator),
        u.postgres,
        f(u.others)
    )
}

/// One line: the ratio of each round and of the means over all sessions, against `bound`,
/// from (setting on, value) in the order measured.
pub(crate) fn ratios_line(label: &str, values: &[(bool, Option<f64>)], bound: Bound) -> String {
    let (rounds, overall) = on_off_ratios(values);
    let rounds: Vec<String> = rounds
        .iter()
        .enumerate()
        .map(|(i, r)| format!("round {} {}", i + 1, times(*r)))
        .collect();
    match overall {
        Some(r) => format!(
            "{label}: {}; means of all sessions {r:.2}x (target {bound}): {}",
            rounds.join(", "),
            bound.verdict(r)
        ),
        None => format!("{label}: not measured"),
    }
}

/// The heads of a sessions' table: `figure`, one column per session (`push off #1`, `push on
/// #1`, ...) and the ratio column.
pub(crate) fn session_heads<S: OnOff>(sessions: &[S], setting: &str) -> Vec<String> {
    let mut heads = vec!["figure".to_string()];
    let mut round = [0usize; 2];
    for s in sessions {
        let k = &mut round[usize::from(s.on())];
        *k += 1;
        heads.push(format!("{setting} {} #{k}", on_off(s.on())));
    }
    heads.push("on / off".into());
    heads
}

/// A session's numeric figure, for the on/off ratio of a row.
pub(crate) type Figure<'a, S> = &'a dyn Fn(&S) -> Option<f64>;

/// One row of a sessions' table: a label, a cell per session and, for a number, the ratio of
/// its mean over the sessions with the setting on to its mean over those with it off.
pub(crate) fn figure_row<S: OnOff>(
    label: &str,
    sessions: &[S],
    cell: impl Fn(&S) -> String,
    number: Option<Figure<'_, S>>,
) -> Vec<String> {
    let mut r = vec![label.to_string()];
    r.extend(sessions.iter().map(&cell));
    r.push(number.map_or(String::new(), |n| {
        let side = |on: bool| mean(sessions.iter().filter(|s| s.on() == on).map(n));
        times(ratio(side(false), side(true)))
    }));
    r
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

#[cfg(test)]
mod tests {
    use super::*;

    struct S(bool, f64);

    impl OnOff for S {
        fn on(&self) -> bool {
            self.0
        }
    }

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
    fn an_upper_bound_holds_up_to_its_limit_and_a_lower_bound_down_to_it() {
        assert_eq!(Bound::AtMost(1.10).verdict(1.10), "met");
        assert_eq!(Bound::AtMost(1.10).verdict(1.1001), "MISSED");
        assert_eq!(Bound::AtMost(1.10).verdict(0.5), "met");
        assert_eq!(Bound::AtLeast(0.95).verdict(0.95), "met");
        assert_eq!(Bound::AtLeast(0.95).verdict(0.9499), "MISSED");
        assert_eq!(Bound::AtLeast(0.95).verdict(1.3), "met");
        assert_eq!(Bound::AtMost(1.1).to_string(), "<= 1.10x");
        assert_eq!(Bound::AtLeast(0.95).to_string(), ">= 0.95x");
    }

    #[test]
    fn the_ratios_line_gives_each_round_and_the_verdict_on_the_means() {
        let values = [
            (false, Some(100.0)),
            (true, Some(90.0)),
            (false, Some(100.0)),
            (true, Some(102.0)),
        ];
        assert_eq!(
            ratios_line("merges/s, on / off", &values, Bound::AtLeast(0.95)),
            "merges/s, on / off: round 1 0.90x, round 2 1.02x; means of all sessions 0.96x (target >= 0.95x): met"
        );
        assert_eq!(
            ratios_line("x", &[(false, None), (true, None)], Bound::AtLeast(0.95)),
            "x: not measured"
        );
    }

    #[test]
    fn heads_number_each_side_and_rows_end_with_the_ratio_of_the_means() {
        let sessions = [S(false, 10.0), S(true, 12.0), S(false, 30.0), S(true, 32.0)];
        assert_eq!(
            session_heads(&sessions, "metrics"),
            [
                "figure",
                "metrics off #1",
                "metrics on #1",
                "metrics off #2",
                "metrics on #2",
                "on / off"
            ]
        );
        let value = |s: &S| Some(s.1);
        let row = figure_row("v", &sessions, |s| s.1.to_string(), Some(&value));
        assert_eq!(row, ["v", "10", "12", "30", "32", "1.10x"]);
        let text = figure_row("t", &sessions, |_| "a".into(), None);
        assert_eq!(text.last().map(String::as_str), Some(""));
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
}
