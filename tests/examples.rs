//! The runnable examples, run the way a user runs them, and checked by the `SUMMARY` lines they
//! print at the end.
//!
//! Each example starts its own in-process server, so these tests need nothing running. They
//! execute the example binaries that `cargo test` builds next to the test binaries
//! (`target/<profile>/examples/<name>`). Only a plain `cargo test` (no target filter) builds the
//! examples as programs; with `--test examples`, build them first
//! (`cargo build -p splitsave-e2e --examples`), or the test says so.
//!
//! Adding an example's test is one more function: `run_example("<name>")`, then assertions on
//! its [`Run::summary`].

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use rust_decimal::Decimal;

/// How long one example may run before it is killed and the test fails.
const DEADLINE: Duration = Duration::from_secs(120);

/// A finished run of an example.
struct Run {
    name: String,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The `SUMMARY` lines as `key → value`. In `SUMMARY split monthly_total=1.00 share_1=…`
    /// the first word without `=` is a prefix: the keys are `split.monthly_total`, and so on.
    fn summary(&self) -> BTreeMap<String, String> {
        let mut values = BTreeMap::new();
        for line in self.stdout.lines() {
            let Some(rest) = line.strip_prefix("SUMMARY ") else {
                continue;
            };
            let mut prefix = String::new();
            for word in rest.split_whitespace() {
                match word.split_once('=') {
                    Some((key, value)) => {
                        values.insert(format!("{prefix}{key}"), value.to_string());
                    }
                    None => prefix = format!("{word}."),
                }
            }
        }
        values
    }

    /// The summary value of `key`, failing the test (with the output) when it is missing.
    fn value(&self, key: &str) -> String {
        self.summary()
            .remove(key)
            .unwrap_or_else(|| self.fail(&format!("no SUMMARY value {key}")))
    }

    /// The summary value of `key` as an amount.
    fn amount(&self, key: &str) -> Decimal {
        let value = self.value(key);
        Decimal::from_str(&value)
            .unwrap_or_else(|_| self.fail(&format!("SUMMARY {key}={value} is not an amount")))
    }

    fn fail(&self, why: &str) -> ! {
        panic!(
            "example {}: {why}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.name, self.stdout, self.stderr
        )
    }
}

/// Where cargo put the example `name`: `…/target/<profile>/examples/<name>`, next to the
/// `deps` directory this test binary runs from.
fn example_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in target/<profile>/deps");
    profile_dir
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Fails unless the example's binary exists and is newer than its sources (a binary left from an
/// earlier build would test old code).
fn current_binary(name: &str) -> PathBuf {
    let binary = example_binary(name);
    let how = format!(
        "run the example tests through a plain `cargo test` (it builds the examples as programs), \
         or build this one first: `cargo build -p splitsave-e2e --example {name}`"
    );
    let built = std::fs::metadata(&binary)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| panic!("example binary {} is missing: {how}", binary.display()));
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for source in [
        examples.join(format!("{name}.rs")),
        examples.join("support").join("mod.rs"),
    ] {
        let changed = std::fs::metadata(&source)
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        assert!(
            changed <= built,
            "example binary {} is older than {}: {how}",
            binary.display(),
            source.display()
        );
    }
    binary
}

/// Runs the example `name` with its own embedded server and returns its output once it exited
/// successfully within [`DEADLINE`]; otherwise fails the test with the output so far.
fn run_example(name: &str) -> Run {
    let binary = current_binary(name);
    let mut child = Command::new(&binary)
        // The examples use SPLITSAVE_URL when it is set; these tests want the embedded server.
        .env_remove("SPLITSAVE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
    // Drain both pipes while the example runs, so a full pipe never stalls it.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = pipe.read_to_end(&mut out);
            String::from_utf8_lossy(&out).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().expect("stdout is piped")));
    let stderr = drain(Box::new(child.stderr.take().expect("stderr is piped")));

    let started = Instant::now();
    let outcome: Result<ExitStatus, Duration> = loop {
        match child.try_wait().expect("the example's status") {
            Some(status) => break Ok(status),
            None if started.elapsed() > DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break Err(started.elapsed());
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let run = Run {
        name: name.to_string(),
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    };
    match outcome {
        Ok(status) if status.success() => run,
        Ok(status) => run.fail(&format!("exited with {status}")),
        Err(after) => run.fail(&format!("still running after {after:?}; killed")),
    }
}

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).expect("a decimal")
}

/// The tour's inputs (see `examples/rest_tour.rs`): Ann earns 4000, Ben 2000; a 60.00 internet
/// bill and a 1200.00 rent, both monthly; a 3000.00 goal with 150.00 from Ann and 75.50 from Ben.
#[test]
fn rest_tour_ends_with_the_split_goal_and_month_its_inputs_imply() {
    let run = run_example("rest_tour");

    let (ann_income, ben_income) = (dec("4000"), dec("2000"));
    let total = dec("60.00") + dec("1200.00");
    // Ann is partner 1 (she invited); shares follow the incomes, 2:1.
    let share_1 = (total * ann_income / (ann_income + ben_income)).round_dp(2);
    let share_2 = total - share_1;
    assert_eq!((share_1, share_2), (dec("840.00"), dec("420.00")));

    assert_eq!(run.amount("split.monthly_total"), total);
    assert_eq!(run.amount("split.share_1"), share_1);
    assert_eq!(run.amount("split.share_2"), share_2);
    assert_eq!(run.value("split.basis"), "income");
    assert_eq!(run.value("expenses_active"), "2");
    assert_eq!(run.value("approvals_pending"), "0");

    assert_eq!(run.amount("goal_saved"), dec("150.00") + dec("75.50"));
    assert_eq!(run.amount("goal_target"), dec("3000.00"));
    assert_eq!(run.value("goal_status"), "active");

    assert_eq!(run.value("messages"), "2");
    assert_eq!(run.value("read"), "1");

    assert_eq!(run.amount("month.total_required"), total);
    assert_eq!(run.value("month.paid"), "1");
    assert_eq!(run.value("month.shares"), "2");

    // The transcript shows requests and answers, with tokens shortened.
    assert!(run.stdout.contains("-> POST /api/auth/register"));
    assert!(run.stdout.contains("<- 202 Accepted"));
    assert!(!run.stdout.contains("correct horse battery staple"));
}

/// The offline couple's inputs (see `examples/offline_couple.rs`): Ann earns 4000, Bob 2000;
/// offline, Ann adds a 900.00 rent (over the 100.00 threshold, so it waits for Bob) and Bob a
/// 60.00 groceries bill (applied); both put money into an approved 3000.00 goal, 150.00 and
/// 75.00, at the same time.
#[test]
fn offline_couple_converges_with_the_rent_pending_and_both_contributions_counted() {
    let run = run_example("offline_couple");

    assert_eq!(run.value("converged"), "true");
    // Only the applied expense is in the split; the rent waits for approval.
    let total = dec("60.00");
    let share_ann = (total * dec("4000") / dec("6000")).round_dp(2);
    assert_eq!(run.amount("split.monthly_total"), total);
    assert_eq!(run.amount("split.share_ann"), share_ann);
    assert_eq!(run.amount("split.share_bob"), total - share_ann);
    assert_eq!(run.value("split.ratio_ann"), "67");
    assert_eq!(run.value("split.ratio_bob"), "33");
    assert_eq!(run.value("pending_approvals"), "1");
    assert_eq!(run.value("pending_for"), "Rent");
    // Concurrent offline contributions add up instead of one overwriting the other.
    assert_eq!(run.amount("goal_saved"), dec("150.00") + dec("75.00"));
    assert_eq!(run.amount("goal_target"), dec("3000.00"));
}
