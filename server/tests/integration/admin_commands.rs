//! `splitsave check` and `splitsave rebuild-rows`, run as the real binary against a database a
//! live server uses, on SQLite and PostgreSQL: a couple's data made through the API, rows broken
//! on purpose with raw SQL (an amount changed, a row deleted, a stray row added, a paid share
//! cleared, an actor binding removed, a snapshot overwritten), found and named by `check`,
//! repaired by `rebuild-rows` while the server keeps serving, and a clean database clean.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use splitsave_sync_core::ops;
use uuid::Uuid;

use crate::common::{is_conflict, Backend, Session, TestApp, TestDb};
use crate::sync_support::{settle_all, SyncClient};

on_both_backends!(
    a_clean_database_checks_clean,
    broken_rows_are_named_and_rebuilt_while_the_server_runs,
    a_change_whose_actor_is_bound_to_no_one_is_reported,
    a_document_that_does_not_load_is_reported_and_left_alone,
    an_unknown_partnership_cannot_be_checked,
    a_rebuild_made_from_an_older_version_writes_nothing,
);

const BINARY: &str = env!("CARGO_BIN_EXE_splitsave");

/// How long one run of an admin command may take on a loaded machine.
const RUN_DEADLINE: Duration = Duration::from_secs(60);

/// How a run of the binary ended.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Panics with the output unless the exit code is `code`.
    fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code, code,
            "exit code; stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// Panics with the output unless stdout has a line containing `needle`.
    fn expect_line(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.lines().any(|l| l.contains(needle)),
            "no line with {needle:?}; stdout:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
        self
    }
}

/// Runs `splitsave <args>` on the test database, with nothing of the developer's environment.
async fn splitsave(db: &TestDb, args: &[&str]) -> Run {
    let run = tokio::process::Command::new(BINARY)
        .args(args)
        .env_clear()
        .current_dir(db.dir.path())
        .env("DATABASE_URL", &db.url)
        .env("RUST_LOG", "warn")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(RUN_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("splitsave {args:?} did not finish within {RUN_DEADLINE:?}"))
        .expect("run splitsave");
    Run {
        code: output.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A value bound into a raw statement.
enum Arg {
    Id(Uuid),
    Money(&'static str),
    Text(String),
    Time(DateTime<Utc>),
    Flag(bool),
    Bytes(&'static [u8]),
}

/// A connection of its own to the test database, to break rows behind the server's back.
enum Raw {
    Postgres(sqlx::PgPool),
    Sqlite(sqlx::SqlitePool),
}

/// Binds `args` in order; `money` turns an amount into the backend's column type.
macro_rules! bind_args {
    ($query:expr, $args:expr, $money:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match arg {
                Arg::Id(id) => query.bind(*id),
                Arg::Money(amount) => query.bind($money(amount)),
                Arg::Text(text) => query.bind(text.as_str()),
                Arg::Time(time) => query.bind(*time),
                Arg::Flag(flag) => query.bind(*flag),
                Arg::Bytes(bytes) => query.bind(*bytes),
            };
        }
        query
    }};
}

impl Raw {
    async fn open(db: &TestDb) -> Raw {
        if db.url.starts_with("sqlite:") {
            Raw::Sqlite(sqlx::SqlitePool::connect(&db.url).await.expect("open"))
        } else {
            Raw::Postgres(sqlx::PgPool::connect(&db.url).await.expect("open"))
        }
    }

    /// Runs one statement; panics unless it touched exactly one row.
    async fn one(&self, sql: &str, args: &[Arg]) {
        let affected = match self {
            Raw::Postgres(pool) => {
                let money = |a: &str| a.parse::<Decimal>().expect("decimal");
                bind_args!(sqlx::query(sql), args, money)
                    .execute(pool)
                    .await
                    .expect(sql)
                    .rows_affected()
            }
            Raw::Sqlite(pool) => {
                // Amounts are exact decimal text in SQLite.
                let money = |a: &str| a.to_string();
                bind_args!(sqlx::query(sql), args, money)
                    .execute(pool)
                    .await
                    .expect(sql)
                    .rows_affected()
            }
        };
        assert_eq!(affected, 1, "{sql}");
    }
}

fn id_of(body: &Value, field: &str) -> Uuid {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
        .parse()
        .expect("uuid")
}

/// A couple with some of everything, made through the API.
struct Furnished {
    ann: Session,
    ben: Session,
    pid: Uuid,
    /// Ann's 42.50 groceries (active).
    groceries: Uuid,
    /// Ann's goal, approved by Ben, with 25.00 saved.
    holiday: Uuid,
    /// This month (`YYYY-MM`), Ann's share marked paid.
    month: String,
}

async fn furnished(app: &TestApp, ann: &str, ben: &str) -> Furnished {
    let (ann, ben, pid) = app.register_couple(ann, ben).await;
    let expense = |name: &str, amount: &str| json!({"name": name, "amount": amount, "category": "groceries", "frequency": "monthly"});
    let (status, groceries) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            expense("Groceries", "42.50"),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{groceries}");
    // Over the threshold: a pending expense and an approval request.
    let (status, rent) = app
        .post(
            "/api/expenses",
            Some(&ben.access_token),
            expense("Rent", "1200"),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{rent}");
    let (status, request) = app
        .post(
            "/api/goals",
            Some(&ann.access_token),
            json!({"name": "Holiday", "target_amount": "3000", "goal_type": "vacation"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let holiday = id_of(&request, "target_id");
    let (status, body) = app
        .post(
            &format!("/api/approvals/{}/approve", id_of(&request, "id")),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .put(
            &format!("/api/goals/{holiday}/contribution"),
            Some(&ben.access_token),
            json!({"amount": "25.00"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            "/api/messages",
            Some(&ann.access_token),
            json!({"text": "Rent is due"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, month) = app
        .post(
            "/api/contributions/mark-paid",
            Some(&ann.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{month}");
    Furnished {
        groceries: id_of(&groceries, "id"),
        holiday,
        month: month["month"].as_str().expect("month").to_string(),
        ann,
        ben,
        pid,
    }
}

/// The value of `field` of the item with `id` in the list at `path`, as `who` reads it.
async fn listed(app: &TestApp, who: &Session, path: &str, id: Uuid) -> Option<Value> {
    let (status, page) = app.get(path, Some(&who.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|item| item["id"] == id.to_string())
        .cloned()
}

async fn a_clean_database_checks_clean(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    furnished(&app, "ann@example.com", "ben@example.com").await;
    // A pending invitation: a partnership with no document and no rows yet.
    let carl = app.register("carl@example.com", "Carl").await;
    let (status, body) = app
        .post(
            "/api/partnerships/invite",
            Some(&carl.access_token),
            json!({"email": "dora@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    splitsave(&app.db, &["check"])
        .await
        .expect_code(0)
        .expect_line("checked 2 partnerships: clean");
    splitsave(&app.db, &["rebuild-rows"])
        .await
        .expect_code(0)
        .expect_line("rebuilt the rows of 0 of 2 partnerships: 0 rows changed");
}

async fn broken_rows_are_named_and_rebuilt_while_the_server_runs(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let f = furnished(&app, "ann@example.com", "ben@example.com").await;
    let raw = Raw::open(&app.db).await;
    raw.one(
        "UPDATE expenses SET amount = $1 WHERE partnership_id = $2 AND id = $3",
        &[Arg::Money("999.00"), Arg::Id(f.pid), Arg::Id(f.groceries)],
    )
    .await;
    raw.one(
        "DELETE FROM goals WHERE partnership_id = $1 AND id = $2",
        &[Arg::Id(f.pid), Arg::Id(f.holiday)],
    )
    .await;
    let stray = Uuid::now_v7();
    raw.one(
        "INSERT INTO messages (partnership_id, id, sender_id, text, message_type, \
         read_by_recipient, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            Arg::Id(f.pid),
            Arg::Id(stray),
            Arg::Id(f.ben.user_id),
            Arg::Text("never sent".into()),
            Arg::Text("text".into()),
            Arg::Flag(false),
            Arg::Time(Utc::now()),
        ],
    )
    .await;
    raw.one(
        "UPDATE contribution_shares SET paid_at = NULL \
         WHERE partnership_id = $1 AND month = $2 AND user_id = $3",
        &[
            Arg::Id(f.pid),
            Arg::Text(f.month.clone()),
            Arg::Id(f.ann.user_id),
        ],
    )
    .await;
    // What a user now sees is wrong.
    let groceries = format!("/api/expenses/{}", f.groceries);
    let (_, shown) = app.get(&groceries, Some(&f.ben.access_token)).await;
    assert_eq!(shown["amount"], "999.00");
    assert!(listed(&app, &f.ann, "/api/goals", f.holiday)
        .await
        .is_none());

    let pid = f.pid;
    let run = splitsave(&app.db, &["check"]).await.expect_code(1);
    run.expect_line(&format!(
        "partnership {pid}: expenses {}: amount: stored 999.00, expected 42.50",
        f.groceries
    ))
    .expect_line(&format!(
        "partnership {pid}: goals {}: missing row",
        f.holiday
    ))
    .expect_line(&format!("partnership {pid}: messages {stray}: stray row"))
    .expect_line(&format!(
        "partnership {pid}: contributions {}: share {} paid_at: stored (none), expected 20",
        f.month, f.ann.user_id
    ))
    .expect_line("checked 1 partnership: 4 problems in 1 partnership");
    // Only the broken fields are named.
    assert_eq!(run.stdout.lines().count(), 5, "{}", run.stdout);

    // The server keeps running while the rows are rebuilt.
    splitsave(&app.db, &["rebuild-rows"])
        .await
        .expect_code(0)
        .expect_line(&format!(
            "partnership {pid}: 4 rows rewritten (1 missing, 1 stray, 2 changed)"
        ))
        .expect_line("rebuilt the rows of 1 of 1 partnership: 4 rows changed");
    splitsave(&app.db, &["check"])
        .await
        .expect_code(0)
        .expect_line("checked 1 partnership: clean");

    let (_, shown) = app.get(&groceries, Some(&f.ben.access_token)).await;
    assert_eq!(shown["amount"], "42.50");
    let goal = listed(&app, &f.ann, "/api/goals", f.holiday)
        .await
        .expect("the goal is back");
    assert_eq!(goal["saved_amount"], "25.00");
    assert!(listed(&app, &f.ann, "/api/messages", stray).await.is_none());
    let (_, month) = app
        .get("/api/contributions/current", Some(&f.ann.access_token))
        .await;
    let share = month["shares"]
        .as_array()
        .expect("shares")
        .iter()
        .find(|s| s["user_id"] == f.ann.user_id.to_string())
        .expect("Ann's share")
        .clone();
    assert_eq!(share["paid"], true, "{month}");

    // The live document was made before the rebuild took its next version: a write still
    // succeeds (the server catches up and commits again), and everything still checks.
    let (status, coffee) = app
        .post(
            "/api/expenses",
            Some(&f.ben.access_token),
            json!({"name": "Coffee", "amount": "3.20", "category": "dining", "frequency": "weekly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{coffee}");
    assert!(listed(&app, &f.ann, "/api/expenses", id_of(&coffee, "id"))
        .await
        .is_some());
    splitsave(&app.db, &["check"]).await.expect_code(0);
}

async fn a_change_whose_actor_is_bound_to_no_one_is_reported(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    // Ben's phone writes with its own actor id, bound to him on its first merge.
    let mut phone = SyncClient::connect(&app, &ben).await;
    let mut laptop = SyncClient::connect(&app, &ann).await;
    settle_all(&app, &mut [&mut phone, &mut laptop]).await;
    phone.edit(|tx, ctx| ops::send_message(tx, ctx, "sent from my phone"));
    settle_all(&app, &mut [&mut phone, &mut laptop]).await;
    splitsave(&app.db, &["check"]).await.expect_code(0);

    let actor = phone.actor().to_hex_string();
    let raw = Raw::open(&app.db).await;
    raw.one(
        "DELETE FROM actor_bindings WHERE partnership_id = $1 AND actor_id = $2",
        &[Arg::Id(pid), Arg::Text(actor.clone())],
    )
    .await;
    let run = splitsave(&app.db, &["check"]).await.expect_code(1);
    run.expect_line(&format!("partnership {pid}: actor {actor} wrote "))
        .expect_line("but is bound to no user of the partnership");

    // The rows are right: rebuilding changes none of them, and does not vouch for the author.
    splitsave(&app.db, &["rebuild-rows"])
        .await
        .expect_code(0)
        .expect_line("0 rows changed");
    splitsave(&app.db, &["check"])
        .await
        .expect_code(1)
        .expect_line(&format!("actor {actor}"));
}

async fn a_document_that_does_not_load_is_reported_and_left_alone(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let broken = furnished(&app, "ann@example.com", "ben@example.com").await;
    let fine = furnished(&app, "cara@example.com", "dan@example.com").await;
    let raw = Raw::open(&app.db).await;
    raw.one(
        "UPDATE doc_snapshots SET bytes = $1 WHERE partnership_id = $2",
        &[
            Arg::Bytes(b"not an automerge document"),
            Arg::Id(broken.pid),
        ],
    )
    .await;

    let run = splitsave(&app.db, &["check"]).await.expect_code(1);
    run.expect_line(&format!(
        "partnership {}: document does not load: snapshot unreadable",
        broken.pid
    ))
    .expect_line("checked 2 partnerships: 1 problem in 1 partnership");
    assert!(
        !run.stdout.contains(&fine.pid.to_string()),
        "{}",
        run.stdout
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);

    // One partnership at a time.
    let fine_pid = fine.pid.to_string();
    splitsave(&app.db, &["check", "--partnership", &fine_pid])
        .await
        .expect_code(0)
        .expect_line("checked 1 partnership: clean");

    // Nothing to rebuild from: its rows are left as they are, and the run says so.
    splitsave(&app.db, &["rebuild-rows"])
        .await
        .expect_code(1)
        .expect_line(&format!(
            "partnership {}: not rebuilt: document does not load",
            broken.pid
        ))
        .expect_line("1 partnership not rebuilt");
    let (status, kept) = app
        .get(
            &format!("/api/expenses/{}", broken.groceries),
            Some(&broken.ann.access_token),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["amount"], "42.50");
}

/// The guard that makes `rebuild-rows` safe beside a server: rows derived from a version a merge
/// has moved on from are not written.
async fn a_rebuild_made_from_an_older_version_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let f = furnished(&app, "ann@example.com", "ben@example.com").await;
    let store = &app.state.store;
    let read_at = store.document_version(f.pid).await.expect("version");
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&f.ann.access_token),
            json!({"name": "Bus", "amount": "2.40", "category": "transport", "frequency": "weekly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let before = store.materialized_rows(f.pid).await.expect("rows");
    assert!(is_conflict(
        store.rebuild_materialized(f.pid, read_at, Vec::new()).await,
        "stale"
    ));
    assert_eq!(store.materialized_rows(f.pid).await.expect("rows"), before);
    assert!(listed(&app, &f.ben, "/api/expenses", id_of(&body, "id"))
        .await
        .is_some());
}

async fn an_unknown_partnership_cannot_be_checked(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    drop(db.store().await);
    let unknown = Uuid::now_v7().to_string();
    let run = splitsave(&db, &["check", "--partnership", &unknown])
        .await
        .expect_code(2);
    assert!(
        run.stderr.contains(&format!("no partnership {unknown}")),
        "{}",
        run.stderr
    );
    splitsave(&db, &["rebuild-rows", "--partnership", "not-a-uuid"])
        .await
        .expect_code(2);
}

#[tokio::test]
async fn a_missing_database_is_refused_not_created() {
    let db = TestDb::sqlite();
    let run = splitsave(&db, &["check"]).await.expect_code(2);
    assert!(
        run.stderr.contains("no SQLite database at"),
        "{}",
        run.stderr
    );
    assert!(
        !db.dir.path().join("test.db").exists(),
        "an empty database was created"
    );
}
