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

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;
use splitsave_sync_core::enums::ItemStatus;
use splitsave_sync_core::ops::Outcome;
use tokio::time::Instant;
use uuid::Uuid;

use crate::real_server::{
    add_expense, default_backend, expense, Couple, RealServer, SYNC_DEADLINE,
};

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

/// Runs a raw write (`CHANGE`, a JS function body over `d` and `vars`) with the stock client as
/// `token`, and returns its result once the server acknowledged it.
async fn js_change(
    server: &RealServer,
    couple: &Couple,
    token: &str,
    change: &str,
    vars: Value,
) -> Value {
    let vars = [
        ("ACTION", "change".to_string()),
        ("CHANGE", change.to_string()),
        ("VARS", vars.to_string()),
    ];
    let result = run_js(server, token, couple, &vars).await;
    assert_eq!(
        result["ok"],
        true,
        "JS change failed: {result}\nserver log:\n{}",
        server.log_tail()
    );
    result
}

/// The approval requests about `target`, as the partner reads them over REST.
async fn requests_about(server: &RealServer, token: &str, target: Uuid) -> Vec<Value> {
    let (status, page) = server.get_json("/api/approvals", token).await;
    assert_eq!(status, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|a| a["target_id"] == target.to_string())
        .cloned()
        .collect()
}

#[tokio::test]
async fn a_request_from_the_stock_js_client_that_lies_about_its_expense_shows_the_real_one() {
    let Some((server, couple)) = start().await else {
        return;
    };
    let (expense_id, request_id) = (Uuid::now_v7(), Uuid::now_v7());
    // A pending 2,500.00 bag with its own request saying "Coffee, 1.00".
    let change = r#"
        const now = Date.now()
        d.expenses[vars.expense] = {
          name: "Designer bag", amount: 250000, category: "other", frequency: "monthly",
          added_by: vars.me, status: "pending_approval", created_at: now, updated_at: now,
        }
        d.approvals[vars.request] = {
          requested_by: vars.me, request_type: "expense_add", target_id: vars.expense,
          request_data: { name: "Coffee", amount: 100, category: "dining", frequency: "monthly" },
          message: "just a coffee", status: "pending", created_at: now,
        }
    "#;
    let vars = serde_json::json!({
        "expense": expense_id, "request": request_id, "me": couple.a.id,
    });
    let result = js_change(&server, &couple, &couple.a.token, change, vars).await;

    // What Ben is asked to approve is what approving makes active.
    let requests = requests_about(&server, &couple.b.token, expense_id).await;
    assert_eq!(requests.len(), 1, "one request: {requests:?}");
    let r = &requests[0];
    assert_eq!(r["request_type"], "expense_add", "{r}");
    assert_eq!(r["status"], "pending", "{r}");
    assert_eq!(r["request_data"]["name"], "Designer bag", "{r}");
    assert_eq!(r["request_data"]["amount"], "2500.00", "{r}");
    assert_eq!(r["message"], "just a coffee", "the note is kept: {r}");
    // The stock client holds the same truth.
    let mine = result["doc"]["approvals"].as_object().expect("approvals");
    assert!(
        !mine.contains_key(&request_id.to_string()),
        "the lying request is gone from the client's document: {result}"
    );
    assert!(
        mine.values()
            .any(|a| a["target_id"] == expense_id.to_string()
                && a["request_data"]["amount"] == 250000),
        "{result}"
    );
}

#[tokio::test]
async fn the_stock_js_client_replacing_the_expenses_loses_nothing_the_partner_added_offline() {
    let Some((server, couple)) = start().await else {
        return;
    };
    // Ann's phone has the document, goes offline and adds an expense.
    let (mut conn, mut sync, mut doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let lamp = Uuid::now_v7();
    let outcome = add_expense(&mut doc, couple.a.id, lamp, "Lamp", 4_500);
    assert!(matches!(outcome, Outcome::Applied { .. }), "{outcome:?}");

    // Meanwhile Ben's stock client replaces the whole expenses map.
    js_change(
        &server,
        &couple,
        &couple.b.token,
        "d.expenses = {}",
        Value::Null,
    )
    .await;

    // Ann comes back: her expense lands in the current map, for both of them.
    sync.sync_until_settled(&mut conn, &mut doc, Instant::now() + SYNC_DEADLINE)
        .await
        .expect("Ann's change is acknowledged");
    let seen = expense(&doc, lamp).expect("Ann still sees her lamp");
    assert_eq!(seen.amount.0, 4_500);
    let (status, page) = server.get_json("/api/expenses", &couple.b.token).await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["id"] == lamp.to_string()),
        "Ben reads the lamp over REST: {page}"
    );
    let vars = [
        ("ACTION", "read".to_string()),
        ("EXPENSE_ID", lamp.to_string()),
    ];
    let result = run_js(&server, &couple.b.token, &couple, &vars).await;
    assert_eq!(result["ok"], true, "Ben's stock client sees it: {result}");
    assert_eq!(result["expense"]["amount"], 4_500, "{result}");
}

#[tokio::test]
async fn an_expense_the_stock_js_client_dates_a_century_ahead_gets_the_time_it_arrived() {
    let Some((server, couple)) = start().await else {
        return;
    };
    let id = Uuid::now_v7();
    let change = r#"
        const later = Date.now() + 100 * 365 * 24 * 3600 * 1000
        d.expenses[vars.id] = {
          name: "Top of the list forever", amount: 500, category: "other", frequency: "monthly",
          added_by: vars.me, status: "active", created_at: later, updated_at: later,
        }
    "#;
    let sent_at = chrono::Utc::now();
    let vars = serde_json::json!({ "id": id, "me": couple.a.id });
    js_change(&server, &couple, &couple.a.token, change, vars).await;
    let (status, page) = server.get_json("/api/expenses", &couple.b.token).await;
    assert_eq!(status, 200, "{page}");
    let e = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["id"] == id.to_string())
        .cloned()
        .expect("the expense is kept");
    let created: chrono::DateTime<chrono::Utc> = e["created_at"]
        .as_str()
        .expect("created_at")
        .parse()
        .expect("RFC 3339");
    assert!(
        created >= sent_at - chrono::Duration::seconds(5)
            && created <= chrono::Utc::now() + chrono::Duration::minutes(5),
        "created_at is the time it arrived, not a century ahead: {e}"
    );
}

/// A stock JS client that stays connected and takes commands (`ACTION=session`).
struct JsSession {
    child: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl JsSession {
    async fn start(server: &RealServer, token: &str, couple: &Couple) -> JsSession {
        let mut child = tokio::process::Command::new("node")
            .arg("client.mjs")
            .current_dir(js_dir())
            .env("SYNC_URL", server.ws_url(token))
            .env("DOC_URL", &couple.document_url)
            .env("ACTION", "session")
            .env("TIMEOUT_MS", "60000")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run node");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let mut session = JsSession {
            child,
            stdin,
            lines: tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout)),
        };
        let ready = session.next_line().await;
        assert_eq!(ready["ready"], true, "{ready}");
        session
    }

    async fn next_line(&mut self) -> Value {
        let line = tokio::time::timeout(JS_TIMEOUT, self.lines.next_line())
            .await
            .expect("the JS client answers in time")
            .expect("read stdout")
            .expect("the JS client is still running");
        serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"))
    }

    /// Sends one command and returns its answer, which must be `ok`.
    async fn command(&mut self, command: Value) -> Value {
        use tokio::io::AsyncWriteExt;
        let mut line = command.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write a command");
        let answer = self.next_line().await;
        assert_eq!(answer["ok"], true, "{command} failed: {answer}");
        answer
    }

    async fn quit(mut self) {
        let _ = self.command(serde_json::json!({"quit": true})).await;
        let _ = tokio::time::timeout(JS_TIMEOUT, self.child.wait()).await;
    }
}

#[tokio::test]
async fn a_pause_holds_for_a_stock_js_client_connected_before_it() {
    let Some((server, couple)) = start().await else {
        return;
    };
    let mut ann = JsSession::start(&server, &couple.a.token, &couple).await;
    let (status, body) = server
        .put_json(
            "/api/partnerships/status",
            &couple.b.token,
            serde_json::json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ann.command(serde_json::json!({
        // Strings the server writes are scalars, which automerge 3 hands out as ImmutableString.
        "until": "String(d.partnership.status) === 'paused'"
    }))
    .await;

    // Ann's app, connected since before the pause, adds an expense anyway.
    let lamp = Uuid::now_v7();
    let add = r#"
        const now = Date.now()
        d.expenses[vars.id] = {
          name: "Lamp", amount: 2500, category: "other", frequency: "monthly",
          added_by: vars.me, status: "active", created_at: now, updated_at: now,
        }
    "#;
    ann.command(serde_json::json!({
        "change": add, "vars": {"id": lamp, "me": couple.a.id},
    }))
    .await;
    // Before the fix the server applied it within milliseconds; watch the stored document
    // for a while (a fresh device sees what storage holds) to see that it does not.
    let watch_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < watch_until {
        let (_conn, _sync, stored) = server
            .fetch_document(&couple.b.token, &couple.document_id)
            .await;
        assert!(
            expense(&stored, lamp).is_none(),
            "a change sent while paused was stored"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Resumed: the same connection sends it again, and it is taken.
    let (status, body) = server
        .put_json(
            "/api/partnerships/status",
            &couple.b.token,
            serde_json::json!({"status": "active"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    ann.command(serde_json::json!({"acknowledged": true})).await;
    let (_conn, _sync, stored) = server
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;
    let seen = expense(&stored, lamp).expect("stored after the resume");
    assert_eq!(seen.status, ItemStatus::Active);
    ann.quit().await;
}
