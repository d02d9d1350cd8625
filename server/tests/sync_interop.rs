//! Interop with the stock `@automerge/automerge-repo` 2.5.6 client (`tests/js/client.mjs`, a
//! `Repo` with the stock WebSocket adapter) against the real `splitsave` binary: the JS client
//! finds the partnership document by its URL and adds an expense that a Rust client
//! (`splitsave_client::connection`) then sees, and the other way round; an over-threshold
//! expense the JS client adds as active comes back to it `pending_approval` (the server's
//! compensation reached the stock client).
//!
//! The JS dependencies are installed by `scripts/js-deps.sh` (`npm ci` from the committed
//! lockfile), once, under a file lock shared by every test process. Without `node` and `npm`
//! on PATH the tests print "skipped: node not installed" and pass.

mod common;
mod real_server;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use real_server::{add_expense, default_backend, expense, Couple, RealServer, SYNC_DEADLINE};
use serde_json::Value;
use splitsave_sync_core::enums::ItemStatus;
use splitsave_sync_core::ops::Outcome;
use tokio::time::Instant;
use uuid::Uuid;

/// How long one run of the JS client may take.
const JS_TIMEOUT: Duration = Duration::from_secs(20);

fn js_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("tests")
        .join("js")
}

fn on_path(program: &str) -> bool {
    std::process::Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs the JS client's dependencies once per machine (a file lock keeps parallel test
/// processes from running npm twice; the once-cell keeps this process from asking twice).
/// False, after printing why, when node or npm is missing.
fn js_client_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        if !on_path("node") || !on_path("npm") {
            eprintln!("skipped: node not installed (the JS interop tests need node >= 20 and npm)");
            return false;
        }
        let lock_path = std::env::temp_dir().join("splitsave-js-deps.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .expect("open the js-deps lock file");
        lock.lock().expect("lock the js-deps lock file");
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("scripts")
            .join("js-deps.sh");
        let output = std::process::Command::new("bash")
            .arg(&script)
            .output()
            .expect("run scripts/js-deps.sh");
        assert!(
            output.status.success(),
            "scripts/js-deps.sh failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let installed = js_dir()
            .join("node_modules")
            .join("@automerge")
            .join("automerge-repo")
            .join("package.json");
        assert!(
            installed.exists(),
            "{} missing after install",
            installed.display()
        );
        let _ = lock.unlock();
        true
    })
}

/// Runs the JS client with `vars` and returns its one JSON line.
async fn run_js(
    server: &RealServer,
    token: &str,
    couple: &Couple,
    vars: &[(&str, String)],
) -> Value {
    let mut command = tokio::process::Command::new("node");
    command
        .arg("client.mjs")
        .current_dir(js_dir())
        .env("SYNC_URL", server.ws_url(token))
        .env("DOC_URL", &couple.document_url)
        .env("TIMEOUT_MS", JS_TIMEOUT.as_millis().to_string())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (k, v) in vars {
        command.env(k, v);
    }
    let output = tokio::time::timeout(JS_TIMEOUT + Duration::from_secs(10), command.output())
        .await
        .expect("the JS client finishes within its timeout")
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|_| {
        panic!(
            "JS client printed no JSON line; stdout: {stdout}\nstderr: {}\nserver log:\n{}",
            String::from_utf8_lossy(&output.stderr),
            server.log_tail()
        )
    })
}

async fn js_add_expense(
    server: &RealServer,
    couple: &Couple,
    id: Uuid,
    name: &str,
    amount: i64,
) -> Value {
    let vars = [
        ("ACTION", "add-expense".to_string()),
        ("EXPENSE_ID", id.to_string()),
        ("EXPENSE_NAME", name.to_string()),
        ("EXPENSE_AMOUNT", amount.to_string()),
        ("ADDED_BY", couple.a.id.to_string()),
    ];
    let result = run_js(server, &couple.a.token, couple, &vars).await;
    assert_eq!(
        result["ok"],
        true,
        "JS add-expense failed: {result}\nserver log:\n{}",
        server.log_tail()
    );
    result
}

async fn start() -> Option<(RealServer, Couple)> {
    if !js_client_ready() {
        return None;
    }
    let server = RealServer::start(default_backend(), &[]).await?;
    let couple = server.register_couple().await;
    Some((server, couple))
}

#[tokio::test]
async fn an_expense_added_by_the_stock_js_client_reaches_a_rust_client() {
    let Some((server, couple)) = start().await else {
        return;
    };
    let id = Uuid::new_v4();

    let result = js_add_expense(&server, &couple, id, "Weekly shop", 4250).await;
    let written = &result["expenses"][id.to_string()];
    assert_eq!(written["amount"], 4250, "{result}");
    assert_eq!(written["status"], "active", "{result}");

    let (_conn, _sync, doc) = server
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;
    let seen = expense(&doc, id).expect("the partner's Rust client sees the JS client's expense");
    assert_eq!(seen.name, "Weekly shop");
    assert_eq!(seen.amount.0, 4250);
    assert_eq!(seen.added_by.0, couple.a.id);
    assert_eq!(seen.status, ItemStatus::Active);
}

#[tokio::test]
async fn an_expense_added_by_a_rust_client_reaches_the_stock_js_client() {
    let Some((server, couple)) = start().await else {
        return;
    };
    let id = Uuid::new_v4();

    let (mut conn, mut sync, mut doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let outcome = add_expense(&mut doc, couple.a.id, id, "Internet", 3999);
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");
    sync.sync_until_settled(&mut conn, &mut doc, Instant::now() + SYNC_DEADLINE)
        .await
        .expect("the server acknowledges the change");

    let vars = [
        ("ACTION", "read".to_string()),
        ("EXPENSE_ID", id.to_string()),
    ];
    let result = run_js(&server, &couple.b.token, &couple, &vars).await;
    assert_eq!(
        result["ok"],
        true,
        "JS read failed: {result}\nserver log:\n{}",
        server.log_tail()
    );
    let seen = &result["expense"];
    assert_eq!(seen["name"], "Internet", "{result}");
    assert_eq!(seen["amount"], 3999, "{result}");
    assert_eq!(seen["added_by"], couple.a.id.to_string(), "{result}");
    assert_eq!(seen["status"], "active", "{result}");
}

#[tokio::test]
async fn an_over_threshold_expense_from_the_stock_js_client_comes_back_pending_approval() {
    let Some((server, couple)) = start().await else {
        return;
    };
    let id = Uuid::new_v4();

    // 1,500.00 USD, over the default 100.00 threshold, written as active by a client that
    // knows nothing of the rule: the server compensates instead of refusing.
    let result = js_add_expense(&server, &couple, id, "TV", 150_000).await;
    assert_eq!(
        result["expenses"][id.to_string()]["status"],
        "pending_approval",
        "the compensation reached the stock client: {result}"
    );

    let (_conn, _sync, doc) = server
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;
    let seen = expense(&doc, id).expect("the partner sees the expense");
    assert_eq!(seen.status, ItemStatus::PendingApproval);
    assert_eq!(seen.amount.0, 150_000);
}
