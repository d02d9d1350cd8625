//! `--compare-nodes`: one node, then two, in one run, and a table of the two sessions' figures
//! side by side with their ratios. (`--compare-push` prints its own table: `push::report`.)

use crate::{cpu_line, Args, CpuUse, Percentiles, Placement, Row};

/// What one session (an environment and its scenarios) measured.
pub(crate) struct Session {
    pub(crate) nodes: usize,
    /// `nginx` or `direct`.
    pub(crate) front: &'static str,
    pub(crate) rows: Vec<Row>,
    pub(crate) latency: Option<LatencyFigures>,
    pub(crate) throughput: Option<ThroughputFigures>,
}

/// The latency scenario's figures.
pub(crate) struct LatencyFigures {
    pub(crate) rate: u32,
    pub(crate) propagation: Option<Percentiles>,
    pub(crate) delivered: u64,
    pub(crate) expected: u64,
    pub(crate) skipped: u64,
    pub(crate) cpu: CpuUse,
    pub(crate) server_ms_per_merge: Option<f64>,
    /// PostgreSQL transactions (committed, rolled back) in the run's database.
    pub(crate) xacts: Option<(i64, i64)>,
    /// Edit scheduled -> its author saw it acknowledged (committed on the author's node).
    pub(crate) to_ack: Option<Percentiles>,
    /// Edit scheduled -> the generator heard the commit notice on Redis.
    pub(crate) to_notice: Option<Percentiles>,
    /// Author acknowledged -> the generator heard the commit notice.
    pub(crate) ack_to_notice: Option<Percentiles>,
    /// Commit notice heard -> the partner has the edit (negative: the partner had it first).
    pub(crate) after_notice: Option<Percentiles>,
    /// Documents whose notices matched their edits, of all documents with deliveries.
    pub(crate) matched_docs: Option<(usize, usize)>,
    pub(crate) redis_ping: Option<Percentiles>,
    pub(crate) catch_up_read: Option<Percentiles>,
    /// How late the generator itself was at each scheduled edit.
    pub(crate) generator_lag: Option<Percentiles>,
    pub(crate) bursts: Option<BurstFigures>,
    /// Merges of a background load offered over the same window (`--compare-push`'s messages).
    pub(crate) background_merges: Option<u64>,
}

/// The presence heartbeats' bursts of Redis notices, and the propagation of the edits made
/// during them and outside them.
pub(crate) struct BurstFigures {
    pub(crate) count: usize,
    pub(crate) mean_notices: f64,
    pub(crate) mean_ms: f64,
    /// Share of the measured time within a burst's window.
    pub(crate) share: f64,
    pub(crate) during: Option<Percentiles>,
    pub(crate) outside: Option<Percentiles>,
}

/// The throughput scenario's figures.
pub(crate) struct ThroughputFigures {
    pub(crate) rate: f64,
    pub(crate) rtt: Option<Percentiles>,
    pub(crate) cpu: CpuUse,
    pub(crate) server_ms_per_merge: Option<f64>,
    pub(crate) xacts: Option<(i64, i64)>,
}

fn ms(v: Option<f64>) -> String {
    v.filter(|x| x.is_finite())
        .map_or("-".into(), |x| format!("{x:.2} ms"))
}

fn ratio(one: Option<f64>, two: Option<f64>) -> Option<f64> {
    let (a, b) = (one?, two?);
    (a.is_finite() && b.is_finite() && a > 0.0).then_some(b / a)
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn cores(u: &CpuUse) -> String {
    let f = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.2}"));
    format!(
        "servers {}, gen {}, pg {:.2}, nginx {}, redis {}, others {}",
        f(u.servers),
        f(u.generator),
        u.postgres,
        f(u.nginx),
        f(u.redis),
        f(u.others)
    )
}

fn pct(p: &Option<Percentiles>, pick: fn(&Percentiles) -> f64) -> Option<f64> {
    p.as_ref().map(pick)
}

fn pair(p: &Option<Percentiles>) -> String {
    p.as_ref().map_or("-".into(), |p| {
        format!("p50 {:.2} / p99 {:.2} ms", p.p50, p.p99)
    })
}

fn xacts(x: Option<(i64, i64)>) -> String {
    x.map_or("-".into(), |(c, r)| format!("{c} / {r}"))
}

/// Prints the comparison of a one-node session and a two-node session.
pub(crate) fn print(command_line: &str, args: &Args, one: &Session, two: &Session) {
    println!();
    let (placement, two_label) = match args.placement {
        Placement::Partners => (
            "with two nodes each couple's first partner on node 1, the second on node 2",
            "2 nodes, cross-node",
        ),
        Placement::Couples => (
            "with two nodes both partners of a couple on one node, couples alternating",
            "2 nodes, couples spread",
        ),
    };
    println!("== splitsave-loadgen: one node vs two nodes, same run ==");
    println!("command: {command_line}");
    println!(
        "{} partnerships (2 clients each; {placement}); clients {}; latency {} merges/s offered for {} s; throughput {} s",
        args.partnerships,
        if two.front == "nginx" {
            "through nginx (one listen port per node)"
        } else {
            "directly on the nodes' ports"
        },
        args.rate,
        args.latency_secs(),
        args.seconds
    );
    let mut table: Vec<[String; 4]> = Vec::new();
    let mut p99_ratio = None;
    if let (Some(a), Some(b)) = (&one.latency, &two.latency) {
        let rate = a.rate;
        for (label, pick) in [
            ("p50", (|p: &Percentiles| p.p50) as fn(&Percentiles) -> f64),
            ("p99", |p: &Percentiles| p.p99),
            ("p99.9", |p: &Percentiles| p.p999),
            ("max", |p: &Percentiles| p.max),
        ] {
            let (x, y) = (pct(&a.propagation, pick), pct(&b.propagation, pick));
            let r = ratio(x, y);
            if label == "p99" {
                p99_ratio = r;
            }
            table.push([
                format!("propagation {label} at {rate}/s offered"),
                ms(x),
                ms(y),
                fmt_ratio(r),
            ]);
        }
        table.push([
            "  delivered / offered (not offered)".into(),
            format!("{} / {} ({})", a.delivered, a.expected, a.skipped),
            format!("{} / {} ({})", b.delivered, b.expected, b.skipped),
            String::new(),
        ]);
        table.push([
            "  server CPU per merge, all nodes".into(),
            ms(a.server_ms_per_merge),
            ms(b.server_ms_per_merge),
            fmt_ratio(ratio(a.server_ms_per_merge, b.server_ms_per_merge)),
        ]);
        table.push([
            "  CPU, cores".into(),
            cores(&a.cpu),
            cores(&b.cpu),
            String::new(),
        ]);
        table.push([
            "  scheduled -> author acknowledged".into(),
            pair(&a.to_ack),
            pair(&b.to_ack),
            fmt_ratio(ratio(pct(&a.to_ack, |p| p.p99), pct(&b.to_ack, |p| p.p99))),
        ]);
        table.push([
            "  scheduled -> commit notice heard (Redis)".into(),
            pair(&a.to_notice),
            pair(&b.to_notice),
            String::new(),
        ]);
        table.push([
            "  author acknowledged -> notice heard".into(),
            pair(&a.ack_to_notice),
            pair(&b.ack_to_notice),
            String::new(),
        ]);
        table.push([
            "  commit notice heard -> partner has it".into(),
            pair(&a.after_notice),
            pair(&b.after_notice),
            String::new(),
        ]);
        let docs = |m: Option<(usize, usize)>| m.map_or("-".into(), |(m, d)| format!("{m} of {d}"));
        table.push([
            "  documents matched to notices".into(),
            docs(a.matched_docs),
            docs(b.matched_docs),
            String::new(),
        ]);
        let burst = |b: &Option<BurstFigures>| {
            b.as_ref().map_or("-".into(), |b| {
                if b.count == 0 {
                    return "none heard".to_string();
                }
                format!(
                    "{} x {:.0} notices, {:.0} ms ({:.1}% of the time)",
                    b.count,
                    b.mean_notices,
                    b.mean_ms,
                    b.share * 100.0
                )
            })
        };
        table.push([
            "  presence heartbeat bursts on Redis".into(),
            burst(&a.bursts),
            burst(&b.bursts),
            String::new(),
        ]);
        let during = |b: &Option<BurstFigures>| b.as_ref().and_then(|b| b.during);
        let outside = |b: &Option<BurstFigures>| b.as_ref().and_then(|b| b.outside);
        table.push([
            "  propagation, edits during a burst".into(),
            pair(&during(&a.bursts)),
            pair(&during(&b.bursts)),
            fmt_ratio(ratio(
                pct(&during(&a.bursts), |p| p.p99),
                pct(&during(&b.bursts), |p| p.p99),
            )),
        ]);
        table.push([
            "  propagation, edits outside the bursts".into(),
            pair(&outside(&a.bursts)),
            pair(&outside(&b.bursts)),
            fmt_ratio(ratio(
                pct(&outside(&a.bursts), |p| p.p99),
                pct(&outside(&b.bursts), |p| p.p99),
            )),
        ]);
        table.push([
            "  generator's own lateness".into(),
            pair(&a.generator_lag),
            pair(&b.generator_lag),
            String::new(),
        ]);
        table.push([
            "  Redis PING round trip (generator)".into(),
            pair(&a.redis_ping),
            pair(&b.redis_ping),
            String::new(),
        ]);
        table.push([
            "  catch-up read, one change (generator)".into(),
            pair(&a.catch_up_read),
            pair(&b.catch_up_read),
            String::new(),
        ]);
        table.push([
            "  PostgreSQL xacts committed / rolled back".into(),
            xacts(a.xacts),
            xacts(b.xacts),
            String::new(),
        ]);
    }
    if let (Some(a), Some(b)) = (&one.throughput, &two.throughput) {
        table.push([
            format!(
                "durable merges/s, {} clients flooding",
                2 * args.partnerships
            ),
            format!("{:.0}", a.rate),
            format!("{:.0}", b.rate),
            fmt_ratio(ratio(Some(a.rate), Some(b.rate))),
        ]);
        table.push([
            "  edit -> ack".into(),
            pair(&a.rtt),
            pair(&b.rtt),
            String::new(),
        ]);
        table.push([
            "  server CPU per merge, all nodes".into(),
            ms(a.server_ms_per_merge),
            ms(b.server_ms_per_merge),
            fmt_ratio(ratio(a.server_ms_per_merge, b.server_ms_per_merge)),
        ]);
        table.push([
            "  CPU, cores".into(),
            cores(&a.cpu),
            cores(&b.cpu),
            String::new(),
        ]);
        table.push([
            "  PostgreSQL xacts committed / rolled back".into(),
            xacts(a.xacts),
            xacts(b.xacts),
            String::new(),
        ]);
    }
    let heads = [
        "figure".to_string(),
        format!("1 node ({})", one.front),
        format!("{two_label} ({})", two.front),
        "2 / 1".to_string(),
    ];
    let widths: Vec<usize> = (0..4)
        .map(|i| {
            table
                .iter()
                .map(|r| r[i].chars().count())
                .chain([heads[i].chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: &[String; 4]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    println!("{}", line(&heads));
    println!(
        "|{}|",
        widths
            .iter()
            .map(|w| "-".repeat(w + 2))
            .collect::<Vec<_>>()
            .join("|")
    );
    for r in &table {
        println!("{}", line(r));
    }
    match p99_ratio {
        Some(r) => println!(
            "two-node p99 / single-node p99 = {r:.2} (target <= 2.00): {}",
            if r <= 2.0 { "met" } else { "MISSED" }
        ),
        None => println!("two-node p99 / single-node p99: not measured"),
    }
    if let (Some(a), Some(b)) = (&one.latency, &two.latency) {
        println!("  one node:  {}", cpu_line(&a.cpu, one.nodes));
        println!("  two nodes: {}", cpu_line(&b.cpu, two.nodes));
    }
}
