//! The real `splitsave` binary: its command line, its refusal to run in production without
//! secrets, a development start on an empty data directory, and its logs (human-readable in
//! development, JSON lines in production, never a query-string token).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_splitsave");

/// A command for the binary with an empty environment (no stray `DATABASE_URL` or `.env` from
/// the developer's shell) run inside `dir`.
fn splitsave(dir: &Path) -> Command {
    let mut command = Command::new(BINARY);
    command.env_clear().current_dir(dir).env("RUST_LOG", "info");
    command
}

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = splitsave(dir.path()).arg("--help").output().expect("run");
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("serve"), "{text}");
    assert!(text.contains("migrate"), "{text}");
}

#[test]
fn production_without_secrets_refuses_to_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = splitsave(dir.path())
        .env("SPLITSAVE_ENV", "production")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/x.db", dir.path().display()),
        )
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("JWT_SECRET must be set when SPLITSAVE_ENV=production"),
        "{stderr}"
    );

    let output = splitsave(dir.path())
        .env("SPLITSAVE_ENV", "production")
        .env("JWT_SECRET", "s".repeat(32))
        .env("JWT_REFRESH_SECRET", "r".repeat(32))
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL must be set"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn migrate_creates_the_database_and_exits() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("m.db");
    let output = splitsave(dir.path())
        .arg("migrate")
        .env("DATABASE_URL", format!("sqlite://{}", db.display()))
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(db.exists());
    // A production migration job needs the database, not the JWT secrets.
    let prod = dir.path().join("prod.db");
    let output = splitsave(dir.path())
        .arg("migrate")
        .env("SPLITSAVE_ENV", "production")
        .env("DATABASE_URL", format!("sqlite://{}", prod.display()))
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(prod.exists());
}

/// A running server whose stdout lines are collected as they come.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (up to 60 s) for a log line containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(200)) {
                self.seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}; log: {:#?}", self.seen);
            }
        }
        panic!(
            "no log line with {needle:?} within 60 s; log: {:#?}",
            self.seen
        );
    }

    /// Every line logged so far.
    fn drain(&mut self) -> Vec<String> {
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The port in a "listening" log line (`0.0.0.0:<port>`).
fn port_of(line: &str) -> u16 {
    let start = line.find("0.0.0.0:").expect("address in the line") + "0.0.0.0:".len();
    line[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("port")
}

fn get(port: u16, path: &str) -> (u16, String) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let response = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .expect("request");
        (
            response.status().as_u16(),
            response.text().await.expect("body"),
        )
    })
}

#[test]
fn development_start_creates_the_database_and_secrets_and_serves() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut command = splitsave(dir.path());
    command
        .arg("serve")
        .env("PORT", "0")
        .env("SPLITSAVE_DATA_DIR", &data);
    let mut server = Running::start(command);
    let listening = server.wait_for("listening");
    let port = port_of(&listening);
    assert!(
        data.join("splitsave.db").exists(),
        "the SQLite file is created"
    );
    let secrets =
        std::fs::read_to_string(data.join("secrets")).expect("secrets kept in the data dir");
    assert!(secrets.contains("JWT_SECRET=") && secrets.contains("JWT_REFRESH_SECRET="));

    let (status, body) = get(port, "/healthz?token=do-not-log-me");
    assert_eq!(status, 200, "{body}");
    let (status, _) = get(port, "/readyz");
    assert_eq!(status, 200);
    server.wait_for("/healthz");
    let log = server.drain();
    assert!(
        log.iter().all(|l| !l.contains("do-not-log-me")),
        "a query-string token reached the log: {log:#?}"
    );
    assert!(
        log.iter().all(|l| !l.trim_start().starts_with('{')),
        "development logs are human-readable"
    );
    assert!(
        log.iter()
            .any(|l| l.contains("generated development JWT secrets")),
        "{log:#?}"
    );
}

#[test]
fn production_logs_json_lines() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut command = splitsave(dir.path());
    command
        .env("SPLITSAVE_ENV", "production")
        .env("PORT", "0")
        .env("JWT_SECRET", "s".repeat(40))
        .env("JWT_REFRESH_SECRET", "r".repeat(40))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/prod.db", dir.path().display()),
        );
    let mut server = Running::start(command);
    let listening = server.wait_for("listening");
    let port = port_of(&listening);
    let (status, _) = get(port, "/healthz?token=secret-token-value");
    assert_eq!(status, 200);
    server.wait_for("/healthz");
    let log = server.drain();
    for line in &log {
        let parsed: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(parsed["level"].is_string(), "{line}");
        assert!(!line.contains("secret-token-value"), "{line}");
    }
}
