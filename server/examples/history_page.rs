//! Issue 18: the first page of a three-year couple's history (about 100,000 changes) must take
//! at most 50 ms of server time. This builds that couple's document with the generator of
//! `sync-core/examples/history_cost.rs` (`sync-core/examples/support/couple_history.rs`),
//! stores it in a real store on PostgreSQL and on SQLite, builds the history index with
//! `splitsave rebuild-history` ([`admin::rebuild_history`]) and measures what
//! `GET /api/history` does for a page of 50: `Store::history_page` (limit 51: one more tells
//! whether another page follows), the partners' names (`routes::history::Names::of`),
//! `routes::history::view` of each record, and the JSON of the page. Also the added cost of the
//! commit path: `history::entries_of_change` (and the stored form) per change.
//!
//! Run with
//! `CARGO_TARGET_DIR=/work/target-release nice cargo run --release -p splitsave-server --example history_page`.
//!
//! - `HISTORY_CHANGES`: changes after the partnership's creation (default 100,000);
//! - `TEST_DATABASE_URL`: the PostgreSQL server (default
//!   `postgres://postgres@127.0.0.1:5432/postgres`); a database `splitsave_bench_<uuid>` is
//!   created for the run and dropped after it. `HISTORY_BACKENDS=sqlite` skips PostgreSQL.
//! - `HISTORY_REPS`: measured repetitions of each query (default 200, after 20 warm-up).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use automerge::{Change, ChangeHash, ReadDoc};
use chrono::Utc;
use rust_decimal::Decimal;
use splitsave_server::admin;
use splitsave_server::app::AppState;
use splitsave_server::config::Config;
use splitsave_server::notify::mail::MemoryMailer;
use splitsave_server::routes::history::{view, HistoryEntryView, Names};
use splitsave_server::store::{
    self, AcceptInvitation, AuthorFilter, HistoryQuery, NewChange, NewHistoryEntry, NewInvitation,
    NewSnapshot, NewUser, PartnershipRecord, Store,
};
use splitsave_sync_core::history;
use uuid::Uuid;

#[path = "../../sync-core/examples/support/couple_history.rs"]
mod couple_history;

use couple_history::{Built, Couple};

/// Changes stored as changes after the snapshot (the rest is the snapshot), as a document
/// that was compacted a while ago and has received changes since.
const TAIL: usize = 1_000;
/// Entries per page, as `GET /api/history` answers by default.
const PAGE: u32 = 50;
/// Where the deep page starts: after this many entries.
const DEEP: u32 = 50_000;
/// The target of issue 18.
const TARGET: Duration = Duration::from_millis(50);

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// p50, p99 and max of some timings.
struct Stats {
    p50: Duration,
    p99: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut xs: Vec<Duration>) -> Stats {
        xs.sort();
        let at = |q: f64| xs[((xs.len() as f64 * q).ceil() as usize).clamp(1, xs.len()) - 1];
        Stats {
            p50: at(0.50),
            p99: at(0.99),
            max: *xs.last().expect("timings"),
        }
    }
}

/// One row of the table: a backend, a query, its timings (whole answer and the query alone)
/// and how many entries the page held.
struct Row {
    backend: &'static str,
    case: String,
    answer: Stats,
    query: Stats,
    entries: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let n: usize = env_or("HISTORY_CHANGES", 100_000);
    let reps: usize = env_or("HISTORY_REPS", 200);
    let backends = std::env::var("HISTORY_BACKENDS").unwrap_or_else(|_| "postgres,sqlite".into());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let couple = Couple::random();
    let t = Instant::now();
    let built = couple_history::build(n, &couple);
    let c = built.counts;
    println!(
        "built {} changes in {:.1} s ({} by devices, {} REST operations, {} compensations; \
         {} expenses, {} goals), {} ops",
        n + 1,
        t.elapsed().as_secs_f64(),
        c.device,
        c.rest,
        c.compensations,
        c.expenses,
        c.goals,
        built.doc.stats().num_ops
    );

    let derivation = derivation_cost(&built);

    let mut rows = Vec::new();
    for backend in backends.split(',').map(str::trim) {
        let rows_of = match backend {
            "postgres" => runtime.block_on(on_postgres(&built, &couple, reps)),
            "sqlite" => runtime.block_on(on_sqlite(&built, &couple, reps)),
            other => panic!("unknown backend {other}"),
        };
        rows.extend(rows_of);
    }

    println!();
    println!(
        "GET /api/history, page of {PAGE}: {reps} runs after 20 warm-up; answer = history_page \
         + Names::of + view + JSON; query = history_page alone (ms)"
    );
    println!("| backend | page | entries | answer p50 | p99 | max | query p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.backend,
            r.case,
            r.entries,
            ms(r.answer.p50),
            ms(r.answer.p99),
            ms(r.answer.max),
            ms(r.query.p50),
            ms(r.query.p99),
            ms(r.query.max)
        );
    }
    println!();
    println!(
        "commit path: history::entries_of_change + NewHistoryEntry::from_entry, mean over the \
         {} newest changes: {:.1} µs per change ({:.2} entries per change)",
        derivation.0, derivation.1, derivation.2
    );
    let worst = rows.iter().map(|r| r.answer.p99).max().unwrap_or_default();
    let worst_max = rows.iter().map(|r| r.answer.max).max().unwrap_or_default();
    println!(
        "verdict: worst p99 {} ms, worst max {} ms against the {} ms target: {}",
        ms(worst),
        ms(worst_max),
        TARGET.as_millis(),
        if worst <= TARGET { "met" } else { "NOT met" }
    );
}

/// The commit path's added work: the entries of each of the newest 1,000 changes, as a merge
/// words them. Returns (changes, mean µs per change, entries per change).
fn derivation_cost(built: &Built) -> (usize, f64, f64) {
    let doc = &built.doc;
    let currency = history::currency_of(doc);
    // The newest changes (`get_changes` lists them in causal order, oldest first).
    let all = doc.get_changes(&[]);
    let recent: Vec<Change> = all[all.len().saturating_sub(1_000)..].to_vec();
    // Warm-up.
    for c in recent.iter().take(50) {
        std::hint::black_box(history::entries_of_change(doc, c, currency));
    }
    let mut entries = 0usize;
    let t = Instant::now();
    for c in &recent {
        for e in history::entries_of_change(doc, c, currency) {
            std::hint::black_box(NewHistoryEntry::from_entry(&e, None));
            entries += 1;
        }
    }
    let mean = t.elapsed().as_secs_f64() * 1e6 / recent.len() as f64;
    (recent.len(), mean, entries as f64 / recent.len() as f64)
}

async fn on_postgres(built: &Built, couple: &Couple, reps: usize) -> Vec<Row> {
    let admin_url = std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let name = format!("splitsave_bench_{}", Uuid::new_v4().simple());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("connect to TEST_DATABASE_URL");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create the database");
    let url = with_database(&admin_url, &name);
    let rows = {
        let store = store::connect(&url).await.expect("open the store");
        let rows = run("postgres", store.clone(), &url, built, couple, reps).await;
        drop(store);
        rows
    };
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .expect("drop the database");
    admin.close().await;
    rows
}

async fn on_sqlite(built: &Built, couple: &Couple, reps: usize) -> Vec<Row> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("history.db").display());
    let store = store::connect(&url).await.expect("open the store");
    run("sqlite", store, &url, built, couple, reps).await
}

/// `admin_url` with its database name replaced by `name` (query string kept), as the
/// integration tests' helper does.
fn with_database(admin_url: &str, name: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (admin_url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..i + scheme_end],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

fn new_user(id: Uuid, name: &str) -> NewUser {
    NewUser {
        id,
        email: format!("{}-{}@example.com", name.to_lowercase(), id.simple()),
        password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".to_string(),
        name: name.to_string(),
        currency: "EUR".to_string(),
        country: None,
        income: None,
        payday: None,
        avatar_url: None,
        personal_allowance: None,
    }
}

/// The couple and their document in `store`: the users, the invitation accepted with the
/// document's snapshot (all but the newest [`TAIL`] changes), the device actors bound, and the
/// newest changes stored as received changes.
async fn store_couple(store: &dyn Store, built: &Built, couple: &Couple) -> PartnershipRecord {
    let ann = store
        .create_user(new_user(couple.ann.0, "Ann"))
        .await
        .expect("Ann");
    let ben = store
        .create_user(new_user(couple.ben.0, "Ben"))
        .await
        .expect("Ben");
    let now = Utc::now();
    store
        .create_invitation(NewInvitation {
            id: couple.partnership.0,
            inviter_id: ann.id,
            invitee_email: ben.email.clone(),
            currency: "EUR".into(),
            approval_threshold: Decimal::from(10_000),
            now,
        })
        .await
        .expect("invite");

    // The changes in causal order, oldest first: any prefix holds its changes' dependencies,
    // so the snapshot is the document at the prefix's heads and the rest applies after it.
    let doc = &built.doc;
    let all: Vec<Change> = doc.get_changes(&[]);
    let split = all.len().saturating_sub(TAIL);
    let depended: HashSet<ChangeHash> = all[..split]
        .iter()
        .flat_map(|c| c.deps().iter().copied())
        .collect();
    let snapshot_heads: Vec<ChangeHash> = all[..split]
        .iter()
        .map(Change::hash)
        .filter(|h| !depended.contains(h))
        .collect();
    let snapshot = doc.fork_at(&snapshot_heads).expect("fork").save();
    let p = store
        .accept_invitation(AcceptInvitation {
            partnership_id: couple.partnership.0,
            user_id: ben.id,
            email: ben.email.clone(),
            snapshot: NewSnapshot {
                version: 0,
                bytes: snapshot,
                heads: snapshot_heads.iter().map(|h| h.to_string()).collect(),
                change_count: split as i64,
            },
            now,
        })
        .await
        .expect("accept");
    let owners: HashMap<String, Uuid> = built
        .devices
        .iter()
        .map(|(actor, user)| (actor.to_hex_string(), user.0))
        .collect();
    for (actor, user) in &owners {
        store
            .bind_actor(p.id, actor, *user, now)
            .await
            .expect("bind");
    }
    let tail: Vec<NewChange> = all[split..]
        .iter()
        .map(|c| {
            let actor = c.actor_id().to_hex_string();
            NewChange {
                hash: c.hash().to_string(),
                user_id: owners.get(&actor).copied(),
                actor,
                seq: i64::try_from(c.seq()).unwrap_or(i64::MAX),
                bytes: c.raw_bytes().to_vec(),
            }
        })
        .collect();
    for chunk in tail.chunks(200) {
        store
            .append_changes(p.id, chunk, Utc::now())
            .await
            .expect("append");
    }
    p
}

async fn run(
    backend: &'static str,
    store: Arc<dyn Store>,
    url: &str,
    built: &Built,
    couple: &Couple,
    reps: usize,
) -> Vec<Row> {
    let t = Instant::now();
    let p = store_couple(&*store, built, couple).await;
    println!(
        "{backend}: stored the couple and the document in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut out = Vec::new();
    let summary = admin::rebuild_history(&*store, Some(p.id), &mut out, &mut std::io::sink())
        .await
        .expect("rebuild-history");
    println!(
        "{backend}: rebuild-history: {} entries in {:.1} s ({})",
        summary.entries,
        t.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&out).trim()
    );
    assert_eq!(summary.failed, 0, "the rebuild failed");

    let dir = tempfile::tempdir().expect("a temporary directory");
    let state = AppState::with_parts(
        Config::for_tests(dir.path(), url.to_string()),
        store.clone(),
        Arc::new(MemoryMailer::new()),
    )
    .expect("app state");

    // The deep page's cursor: the id of the 50,000th newest entry.
    let deep = store
        .history_page(
            p.id,
            &HistoryQuery {
                limit: DEEP,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("the first 50,000 entries");
    let deep_cursor = deep.last().map(|r| r.id);
    drop(deep);

    let page = |q: HistoryQuery| HistoryQuery {
        limit: PAGE + 1,
        ..q
    };
    let cases: Vec<(String, HistoryQuery)> = vec![
        ("first page".into(), page(HistoryQuery::default())),
        (
            "kind=expense".into(),
            page(HistoryQuery {
                kind: Some("expense"),
                ..HistoryQuery::default()
            }),
        ),
        (
            "entity=<the rent>".into(),
            page(HistoryQuery {
                entity_id: Some(built.rent.to_string()),
                ..HistoryQuery::default()
            }),
        ),
        (
            "author=<Ben>".into(),
            page(HistoryQuery {
                author: Some(AuthorFilter::User(couple.ben.0)),
                ..HistoryQuery::default()
            }),
        ),
        (
            "author=splitsave".into(),
            page(HistoryQuery {
                author: Some(AuthorFilter::Server),
                ..HistoryQuery::default()
            }),
        ),
        (
            format!("deep: cursor after {DEEP} entries"),
            page(HistoryQuery {
                before_id: deep_cursor,
                ..HistoryQuery::default()
            }),
        ),
    ];

    // How many entries the rent has, to show the entity is a long one.
    let rent_entries = store
        .history_page(
            p.id,
            &HistoryQuery {
                entity_id: Some(built.rent.to_string()),
                limit: 1_000_000,
                ..HistoryQuery::default()
            },
        )
        .await
        .expect("the rent's entries")
        .len();
    println!("{backend}: the rent has {rent_entries} entries");

    let mut rows = measure(backend, &*store, &state, &p, &cases, reps).await;
    if url.starts_with("postgres") {
        // The index was just bulk-written: PostgreSQL plans with the statistics of an empty
        // table until autovacuum analyzes it. The same pages after an ANALYZE:
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        sqlx::query("ANALYZE history_entries")
            .execute(&pool)
            .await
            .expect("analyze");
        pool.close().await;
        rows.extend(measure("postgres, analyzed", &*store, &state, &p, &cases, reps).await);
    }
    drop(state);
    rows
}

/// Each page of `cases`, `reps` times after 20 warm-up runs: the whole answer (as
/// `routes::history::page` builds it) and the query alone.
async fn measure(
    backend: &'static str,
    store: &dyn Store,
    state: &AppState,
    p: &PartnershipRecord,
    cases: &[(String, HistoryQuery)],
    reps: usize,
) -> Vec<Row> {
    let mut rows = Vec::new();
    for (case, query) in cases {
        let case = case.clone();
        let mut answer = Vec::with_capacity(reps);
        let mut alone = Vec::with_capacity(reps);
        let mut entries = 0;
        for i in 0..20 + reps {
            // The whole answer, as `routes::history::page` builds it.
            let t = Instant::now();
            let mut records = store.history_page(p.id, query).await.expect("history_page");
            let more = records.len() > PAGE as usize;
            records.truncate(PAGE as usize);
            let names = Names::of(state, p).await.expect("names");
            let items: Vec<HistoryEntryView> = records.iter().map(|r| view(r, &names)).collect();
            let next = more
                .then(|| records.last().map(|r| format!("h{}", r.id)))
                .flatten();
            let json = serde_json::to_vec(&serde_json::json!({
                "items": items,
                "next_cursor": next,
            }))
            .expect("json");
            std::hint::black_box(json);
            let took = t.elapsed();
            entries = items.len();

            // The query alone.
            let t = Instant::now();
            std::hint::black_box(store.history_page(p.id, query).await.expect("history_page"));
            let query_took = t.elapsed();
            if i >= 20 {
                answer.push(took);
                alone.push(query_took);
            }
        }
        rows.push(Row {
            backend,
            case,
            answer: Stats::of(answer),
            query: Stats::of(alone),
            entries,
        });
    }
    rows
}
