//! Several nodes on one PostgreSQL database, telling each other over Redis: real `splitsave`
//! processes, each on its own port, one new database and one Redis key prefix per test (so the
//! tests run in parallel), partners' devices on different nodes and REST on a third.
//!
//! Skipped (with a message) unless both `TEST_DATABASE_URL` and `TEST_REDIS_URL` are set; CI
//! sets both.

use std::time::Duration;

use automerge::Automerge;
use serde_json::{json, Value};
use splitsave_client::enums::{ApprovalStatus, GoalType, ItemStatus, Priority};
use splitsave_client::money::MinorUnits;
use splitsave_client::ops::{NewGoal, Outcome};
use splitsave_client::{Client, ClientError, ClientEvent, SyncStatus};
use splitsave_sync_core::document::{read_document, DocumentState};
use splitsave_sync_core::materialize::{self, RowChange};
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::Backend;
use crate::push_standins::fcm::FcmStandin;
use crate::real_server::RealServer;
use crate::sdk_client::{config, expense, next_matching, pair, register, Device, DEADLINE};

/// `n` nodes on one new PostgreSQL database, telling each other over Redis under a prefix of
/// their own; `None` (after saying why) without `TEST_DATABASE_URL` or `TEST_REDIS_URL`.
async fn nodes(n: usize, env: &[(&str, &str)]) -> Option<Vec<RealServer>> {
    let Ok(redis) = std::env::var("TEST_REDIS_URL") else {
        eprintln!("skipped: set TEST_REDIS_URL and TEST_DATABASE_URL to run the cluster tests");
        return None;
    };
    let prefix = format!("splitsave-test-{}:", Uuid::new_v4().simple());
    // Every request comes from 127.0.0.1: the per-IP limit is not what these tests are about.
    let mut all = vec![
        ("REDIS_URL", redis.as_str()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("API_RATE_LIMIT", "1000000"),
    ];
    all.extend_from_slice(env);
    let first = RealServer::start(Backend::Postgres, &all).await?;
    let mut nodes = vec![first];
    for _ in 1..n {
        let node = nodes[0].join(&[]).await;
        nodes.push(node);
    }
    Some(nodes)
}

/// `GET path` on `node` as `token`: the JSON body of a 200.
async fn get(node: &RealServer, path: &str, token: &str) -> Value {
    let (status, body) = node.get_json(path, token).await;
    assert_eq!(status, 200, "GET {path} on port {}: {body}", node.port);
    body
}

/// Waits until `device`'s document satisfies `check`.
async fn until(device: &Device, what: &str, check: impl Fn(&DocumentState) -> bool) {
    if let Err(err) = device.client.wait_until(DEADLINE, check).await {
        panic!(
            "{what}: {err}; the device has {:?}",
            device.client.document()
        );
    }
}

/// Rows in a canonical order, so the store's order and sync-core's need not agree.
fn canonical(mut rows: Vec<RowChange>) -> Vec<RowChange> {
    rows.sort_by_key(|r| format!("{r:?}"));
    rows
}

/// The stored document (snapshot plus changes) equals what the materialized rows say.
async fn assert_rows_match_the_document(node: &RealServer, pid: Uuid) -> Automerge {
    let store = splitsave_server::store::connect(&node.db.url)
        .await
        .expect("store");
    let (snapshot, changes) = store.load_document(pid).await.expect("load");
    let mut doc = Automerge::load(&snapshot.expect("snapshot")).expect("snapshot loads");
    for change in changes {
        doc.load_incremental(&change).expect("change loads");
    }
    let expected = materialize::all_rows(&doc).expect("materializes").changes;
    let stored = store.materialized_rows(pid).await.expect("rows");
    assert_eq!(canonical(stored), canonical(expected));
    doc
}

#[tokio::test]
async fn three_nodes_serve_one_couple_and_every_node_agrees() {
    let Some(nodes) = nodes(3, &[]).await else {
        return;
    };
    let ann = register(&nodes[0].url(""), "ann", 4000).await;
    let bob = register(&nodes[1].url(""), "bob", 2000).await;
    pair(&ann, &bob).await;
    let token = ann.client.access_token().await.expect("token");
    let rest = &nodes[2];
    // Bob's web app follows the live events through node 3.
    let bob_token = bob.client.access_token().await.expect("token");
    let (mut events, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{}/api/events?token={bob_token}",
        rest.port
    ))
    .await
    .expect("event stream on node 3");

    // Online: Ann's edit through node 1 reaches Bob's device on node 2, and his event stream
    // on node 3.
    ann.client
        .add_expense(expense("Internet", 4_500))
        .expect("add");
    until(&bob, "Ann's expense reaches Bob", |d| {
        d.expenses.iter().any(|e| e.name == "Internet")
    })
    .await;
    let added = tokio::time::timeout(DEADLINE, async {
        use futures::StreamExt;
        loop {
            let frame = events.next().await.expect("stream open").expect("frame");
            if let tokio_tungstenite::tungstenite::Message::Text(text) = frame {
                let event: Value = serde_json::from_str(&text).expect("json");
                if event["event"] == "expense:added" {
                    return event;
                }
            }
        }
    })
    .await
    .expect("the event reaches node 3 within the deadline");
    assert_eq!(added["data"]["name"], "Internet");
    assert_eq!(
        added["by"],
        json!(ann.client.user_id().expect("ann").to_string())
    );
    // Bob proposes a goal through node 2; Ann approves it through node 1.
    let Outcome::ApprovalRequested {
        request_id,
        target_id: goal,
    } = bob
        .client
        .add_goal(NewGoal {
            name: "Holiday".into(),
            target_amount: MinorUnits(300_000),
            goal_type: GoalType::Vacation,
            priority: Priority::High,
        })
        .expect("goal")
    else {
        panic!("a new goal waits for the partner's approval");
    };
    until(&ann, "Bob's goal request reaches Ann", |d| {
        d.approvals.iter().any(|a| a.id == request_id)
    })
    .await;
    ann.client.approve(request_id).expect("approve");
    until(&bob, "Ann's approval reaches Bob", |d| {
        d.goals
            .iter()
            .any(|g| g.id == goal && g.status == ItemStatus::Active)
    })
    .await;

    // Bob goes offline and contributes and spends; Ann contributes through node 1 and REST
    // writes through node 3 meanwhile.
    bob.client.stop_sync().await;
    bob.client
        .contribute(goal, MinorUnits(10_000))
        .expect("offline contribution");
    let sofa = bob
        .client
        .add_expense(expense("New sofa", 80_000))
        .expect("offline expense");
    assert!(
        matches!(sofa, Outcome::ApprovalRequested { .. }),
        "{sofa:?}"
    );
    ann.client
        .contribute(goal, MinorUnits(2_500))
        .expect("online contribution");
    let (status, body) = rest
        .put_json(
            &format!("/api/goals/{goal}/contribution"),
            &token,
            json!({"amount": "12.34"}),
        )
        .await;
    assert_eq!(status, 200, "contribution through node 3: {body}");
    let (status, body) = rest
        .post_json(
            "/api/expenses",
            &token,
            json!({"name": "Water", "amount": "30.00", "category": "utilities", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, 201, "expense through node 3: {body}");
    bob.client.start_sync().await.expect("back online");

    // Both devices converge on every edit, the goal's counter exact.
    let converged = |d: &DocumentState| {
        let saved = d
            .goals
            .iter()
            .find(|g| g.id == goal)
            .map(|g| g.saved_amount);
        let names: Vec<&str> = d.expenses.iter().map(|e| e.name.as_str()).collect();
        saved == Some(MinorUnits(13_734))
            && ["Internet", "New sofa", "Water"]
                .iter()
                .all(|n| names.contains(n))
            && d.approvals
                .iter()
                .any(|a| a.status == ApprovalStatus::Pending)
    };
    until(&ann, "Ann's device has every edit", converged).await;
    until(&bob, "Bob's device has every edit", converged).await;
    assert_eq!(
        ann.client.document().expect("ann"),
        bob.client.document().expect("bob")
    );

    // Every node answers REST reads alike, from the same committed state.
    let mut answers = Vec::new();
    for node in &nodes {
        let goals = get(node, "/api/goals", &token).await;
        let saved = goals["items"]
            .as_array()
            .expect("goals")
            .iter()
            .find(|g| g["id"] == goal.to_string())
            .map(|g| g["saved_amount"].clone());
        assert_eq!(saved, Some(json!("137.34")), "goal on port {}", node.port);
        answers.push((
            get(node, "/api/expenses", &token).await,
            get(node, "/api/expenses/split-calculation", &token).await,
            get(node, "/api/approvals?status=pending", &token).await,
        ));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "the nodes disagree: {answers:#?}"
    );
    let pid = ann
        .client
        .partnership()
        .await
        .expect("partnership")
        .expect("one")
        .id;
    let stored = assert_rows_match_the_document(&nodes[0], pid).await;
    let state = read_document(&stored).expect("readable");
    assert_eq!(state, ann.client.document().expect("ann"));
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

#[tokio::test]
async fn a_password_change_on_one_node_closes_the_sessions_on_the_others_within_a_second() {
    // Revalidation every minute: only the cluster's notice can be this fast.
    let Some(nodes) = nodes(2, &[("SYNC_REVALIDATE_SECS", "60")]).await else {
        return;
    };
    let ann = register(&nodes[0].url(""), "ann", 4000).await;
    let bob = register(&nodes[0].url(""), "bob", 2000).await;
    pair(&ann, &bob).await;
    let mut status = ann.client.watch_sync_state();
    // Ann's phone syncs through node 1; she changes her password on another device through
    // node 2.
    let token = ann.client.access_token().await.expect("token");
    let started = Instant::now();
    let (code, body) = nodes[1]
        .post_json(
            "/api/auth/change-password",
            &token,
            json!({"current_password": crate::real_server::PASSWORD, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_eq!(code, 200, "password change through node 2: {body}");
    tokio::time::timeout(
        Duration::from_secs(1),
        status.wait_for(|s| s.status == SyncStatus::Offline),
    )
    .await
    .expect("the sync connection on node 1 closed within a second")
    .expect("status");
    assert!(started.elapsed() < Duration::from_secs(2));
    let refused = ann.client.refresh_session().await;
    assert!(
        matches!(refused, Err(ClientError::SignedOut(_))),
        "{refused:?}"
    );
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

// ---- nginx in front, Redis of the test's own ------------------------------------------------

/// nginx running `deploy/nginx.conf` with the upstream `server` lines replaced by the given
/// nodes and its `listen` port by a free one; stopped on drop.
struct Nginx {
    port: u16,
    child: std::process::Child,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// `None` (after saying why) when nginx is not installed (`.ci/run` installs it).
    fn start(nodes: &[&RealServer]) -> Option<Nginx> {
        let binary = ["/usr/sbin/nginx", "/usr/bin/nginx"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists());
        let Some(binary) = binary else {
            eprintln!("skipped: nginx is not installed (.ci/run installs it)");
            return None;
        };
        let shipped = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/nginx.conf"),
        )
        .expect("deploy/nginx.conf");
        let port = crate::real_server::free_port();
        let mut lines = Vec::new();
        let mut replaced = false;
        for line in shipped.lines() {
            let trimmed = line.trim_start();
            if let Some(address) = trimmed.strip_prefix("server 127.0.0.1:") {
                // The shipped parameters (max_fails, ...) with the test's nodes' ports.
                let parameters = address.split_once(' ').map_or(";", |(_, rest)| rest);
                if !replaced {
                    lines.extend(
                        nodes
                            .iter()
                            .map(|n| format!("        server 127.0.0.1:{} {parameters}", n.port)),
                    );
                    replaced = true;
                }
            } else if trimmed.starts_with("listen ") {
                lines.push(format!("        listen 127.0.0.1:{port};"));
            } else if trimmed.starts_with("worker_processes") {
                lines.push("worker_processes 1;".to_owned());
            } else {
                lines.push(line.to_owned());
            }
        }
        assert!(replaced, "deploy/nginx.conf has no upstream servers");
        let prefix = tempfile::tempdir().expect("nginx prefix");
        for dir in ["logs", "tmp"] {
            std::fs::create_dir_all(prefix.path().join(dir)).expect("nginx dirs");
        }
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, lines.join("\n")).expect("write nginx.conf");
        let child = std::process::Command::new(binary)
            .arg("-p")
            .arg(format!("{}/", prefix.path().display()))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nginx did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nginx {
            port,
            child,
            _prefix: prefix,
        })
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Nginx {
    /// Fast shutdown (SIGTERM: the master stops its workers before it exits); SIGKILL only if
    /// it lingers. Killing the master outright would leave its workers running, orphaned.
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while std::time::Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `redis-server` of the test's own on a free port (so the test may kill and restart it
/// without disturbing the others); stopped on drop.
struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let mut redis = OwnRedis {
            port: crate::real_server::free_port(),
            child: None,
        };
        redis.launch()?;
        Some(redis)
    }

    fn launch(&mut self) -> Option<()> {
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: redis-server is not installed");
            return None;
        };
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "redis-server did not listen"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long after Ann's edit Bob's device has it.
async fn propagation(ann: &Device, bob: &Device, name: &str) -> Duration {
    let started = Instant::now();
    ann.client.add_expense(expense(name, 1_000)).expect("add");
    until(bob, "the edit reaches the partner", |d| {
        d.expenses.iter().any(|e| e.name == name)
    })
    .await;
    started.elapsed()
}

/// Whether the stored document has each of `names` exactly once.
async fn stored_exactly_once(node: &RealServer, pid: Uuid, names: &[String]) {
    let doc = assert_rows_match_the_document(node, pid).await;
    let state = read_document(&doc).expect("readable");
    for name in names {
        let copies = state.expenses.iter().filter(|e| &e.name == name).count();
        assert_eq!(copies, 1, "{name} is stored {copies} times");
    }
}

/// Waits until `device` has an expense of each of `names`.
async fn has_every_expense(device: &Device, names: &[String]) {
    until(device, "every edit reaches the device", |d| {
        names
            .iter()
            .all(|n| d.expenses.iter().any(|e| &e.name == n))
    })
    .await;
}

/// Behind nginx the per-IP limit counts the client's address as nginx saw it: a client cannot
/// make each request look like another address by sending its own `X-Forwarded-For`, on REST
/// and on the WebSocket routes alike (nginx passes a location none of the server block's
/// headers once the location sets one of its own, so every location sets the address itself).
#[tokio::test]
async fn behind_nginx_a_client_cannot_choose_the_address_its_requests_are_counted_under() {
    let Some(nodes) = nodes(
        1,
        &[("API_RATE_LIMIT", "5"), ("TRUSTED_PROXIES", "127.0.0.1")],
    )
    .await
    else {
        return;
    };
    let Some(nginx) = Nginx::start(&[&nodes[0]]) else {
        return;
    };
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    for i in 0..8 {
        let response = client
            .get(format!("{}/api/users/profile", nginx.url()))
            .header("x-forwarded-for", format!("203.0.113.{i}"))
            .send()
            .await
            .expect("request");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(&statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // The WebSocket location (here `/api/events`) counts under the same address: refused.
    let response = client
        .get(format!("{}/api/events", nginx.url()))
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
}

/// nginx in front of the first two nodes and a couple whose devices reach them through it.
async fn couple_behind(nodes: &[RealServer]) -> Option<(Nginx, Device, Device)> {
    let nginx = Nginx::start(&[&nodes[0], &nodes[1]])?;
    let ann = register(&nginx.url(), "ann", 4000).await;
    let bob = register(&nginx.url(), "bob", 2000).await;
    pair(&ann, &bob).await;
    Some((nginx, ann, bob))
}

async fn partnership_id(device: &Device) -> Uuid {
    device
        .client
        .partnership()
        .await
        .expect("partnership")
        .expect("one")
        .id
}

#[tokio::test]
async fn with_redis_restarted_nothing_is_lost_and_the_fast_fan_out_comes_back_by_itself() {
    let Some(mut redis) = OwnRedis::start() else {
        return;
    };
    let url = redis.url();
    // Polling rarely while subscribed: a fast edit after the restart shows Redis is back.
    let env = [
        ("REDIS_URL", url.as_str()),
        ("CLUSTER_POLL_MS", "500"),
        ("CLUSTER_SAFETY_POLL_MS", "60000"),
    ];
    let Some(nodes) = nodes(2, &env).await else {
        return;
    };
    let ann = register(&nodes[0].url(""), "ann", 4000).await;
    let bob = register(&nodes[1].url(""), "bob", 2000).await;
    pair(&ann, &bob).await;
    let mut names = Vec::new();
    for i in 0..5 {
        names.push(format!("before {i}"));
        propagation(&ann, &bob, &names[i]).await;
    }
    redis.kill();
    // Redis down: the nodes poll PostgreSQL; every edit still arrives.
    let mut slow = Vec::new();
    for i in 0..5 {
        let name = format!("while down {i}");
        slow.push(propagation(&ann, &bob, &name).await);
        names.push(name);
    }
    redis.launch().expect("redis again");
    // Back: within a deadline, an edit arrives faster than the polling could carry it.
    let deadline = Instant::now() + DEADLINE;
    let mut i = 0;
    loop {
        let name = format!("after {i}");
        let took = propagation(&ann, &bob, &name).await;
        names.push(name);
        i += 1;
        if took < Duration::from_millis(150) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fast fan-out did not come back (last edit took {took:?})"
        );
    }
    eprintln!("propagation while Redis was down: {slow:?}");
    stored_exactly_once(&nodes[0], partnership_id(&ann).await, &names).await;
    has_every_expense(&bob, &names).await;
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

#[tokio::test]
async fn a_node_killed_mid_stream_loses_no_acknowledged_edit() {
    let Some(mut nodes) = nodes(2, &[]).await else {
        return;
    };
    let Some((_nginx, ann, bob)) = couple_behind(&nodes).await else {
        return;
    };
    let mut names = Vec::new();
    for i in 0..40 {
        if i == 15 {
            nodes[0].kill();
        }
        let name = format!("edit {i}");
        ann.client
            .add_expense(expense(&name, 1_000 + i))
            .expect("add");
        names.push(name);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // Synced: the server acknowledged every edit (whichever node took it).
    ann.client
        .wait_until_synced(DEADLINE)
        .await
        .expect("Ann's device syncs again through nginx");
    has_every_expense(&bob, &names).await;
    stored_exactly_once(&nodes[1], partnership_id(&ann).await, &names).await;
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

#[tokio::test]
async fn a_rolling_restart_under_a_steady_edit_stream_loses_nothing_and_strands_nobody() {
    let Some(mut nodes) = nodes(2, &[]).await else {
        return;
    };
    let Some((_nginx, ann, bob)) = couple_behind(&nodes).await else {
        return;
    };
    // Both partners edit steadily while each node in turn drains and restarts.
    async fn writer(device: &Device, who: &str, count: i64) -> Vec<String> {
        let mut names = Vec::new();
        for i in 0..count {
            let name = format!("{who} {i}");
            device
                .client
                .add_expense(expense(&name, 500 + i))
                .expect("add");
            names.push(name);
            tokio::time::sleep(Duration::from_millis(40)).await;
        }
        names
    }
    let restarts = async {
        for node in nodes.iter_mut() {
            tokio::time::sleep(Duration::from_millis(600)).await;
            let (took, clean) = node.terminate();
            assert!(clean, "the node exits cleanly on SIGTERM");
            assert!(
                took < Duration::from_secs(10),
                "the node exits within 10 s of SIGTERM ({took:?})"
            );
            node.restart_on_same_port().await;
        }
    };
    let (ann_names, bob_names, ()) =
        tokio::join!(writer(&ann, "ann", 60), writer(&bob, "bob", 60), restarts);
    let all: Vec<String> = ann_names.into_iter().chain(bob_names).collect();
    for device in [&ann, &bob] {
        device
            .client
            .wait_until_synced(DEADLINE)
            .await
            .expect("every device syncs again");
        has_every_expense(device, &all).await;
    }
    stored_exactly_once(&nodes[0], partnership_id(&ann).await, &all).await;
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

// ---- one document hammered from two nodes ---------------------------------------------------

/// One REST write of a random schedule.
#[derive(Clone, Debug)]
enum Write {
    /// An expense of this many cents (over the 100.00 threshold it waits for approval).
    Expense(i64),
    /// A contribution of this many cents to the couple's goal.
    Contribute(i64),
    /// A message.
    Message,
}

fn write_strategy() -> impl proptest::strategy::Strategy<Value = Write> {
    use proptest::prelude::*;
    prop_oneof![
        (1i64..30_000).prop_map(Write::Expense),
        (1i64..5_000).prop_map(Write::Contribute),
        Just(Write::Message),
    ]
}

/// Sends `writes` through `node` as `token`, each right after the previous one's answer;
/// returns the cents contributed (by 200 answers) and the expense names filed.
async fn hammer(
    node: &RealServer,
    token: &str,
    goal: &str,
    who: &str,
    writes: &[Write],
) -> (i64, Vec<String>) {
    let mut contributed = 0;
    let mut names = Vec::new();
    for (i, write) in writes.iter().enumerate() {
        match write {
            Write::Expense(cents) => {
                let name = format!("{who} {i}");
                let amount = format!("{}.{:02}", cents / 100, cents % 100);
                let (status, body) = node
                    .post_json(
                        "/api/expenses",
                        token,
                        json!({"name": name, "amount": amount, "category": "other", "frequency": "monthly"}),
                    )
                    .await;
                assert!(
                    status == 201 || status == 202,
                    "expense {amount}: {status} {body}; log:\n{}",
                    node.log_tail()
                );
                names.push(name);
            }
            Write::Contribute(cents) => {
                let amount = format!("{}.{:02}", cents / 100, cents % 100);
                let (status, body) = node
                    .put_json(
                        &format!("/api/goals/{goal}/contribution"),
                        token,
                        json!({ "amount": amount }),
                    )
                    .await;
                assert_eq!(
                    status,
                    200,
                    "contribution {amount}: {body}; log:\n{}",
                    node.log_tail()
                );
                contributed += cents;
            }
            Write::Message => {
                let (status, body) = node
                    .post_json(
                        "/api/messages",
                        token,
                        json!({"text": format!("{who} {i}")}),
                    )
                    .await;
                assert_eq!(status, 201, "message: {body}; log:\n{}", node.log_tail());
            }
        }
    }
    (contributed, names)
}

/// Two partners write through two nodes at once, each a random schedule: every write lands
/// once, the goal's counter is the exact sum of the contributions acknowledged, every expense
/// over the threshold waits for approval, the rows equal the document and both nodes answer
/// alike, with compaction and idle eviction running on both nodes meanwhile. Cases:
/// `PROPTEST_CASES` (default 3, each on a new couple).
#[test]
fn one_document_hammered_from_two_nodes_stays_exact() {
    use proptest::test_runner::{Config, TestRunner};
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // Compaction every 8 stored changes and eviction after a second idle, so both run on each
    // node while the other commits: neither may lose what the other node committed meanwhile.
    let env = [
        ("SYNC_COMPACT_AFTER", "8"),
        ("SYNC_IDLE_EVICTION_SECS", "1"),
    ];
    let Some(nodes) = runtime.block_on(nodes(2, &env)) else {
        return;
    };
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);
    let mut runner = TestRunner::new(Config {
        cases,
        max_shrink_iters: 4,
        failure_persistence: None,
        ..Config::default()
    });
    let schedules = (
        proptest::collection::vec(write_strategy(), 4..16),
        proptest::collection::vec(write_strategy(), 4..16),
    );
    let outcome = runner.run(&schedules, |(ann_writes, bob_writes)| {
        runtime.block_on(hammered(&nodes, &ann_writes, &bob_writes));
        Ok(())
    });
    if let Err(err) = outcome {
        panic!("{err}");
    }
}

async fn hammered(nodes: &[RealServer], ann_writes: &[Write], bob_writes: &[Write]) {
    let couple = nodes[0].register_couple().await;
    let (status, goal) = nodes[0]
        .post_json(
            "/api/goals",
            &couple.a.token,
            json!({"name": "Roof", "target_amount": "900.00", "goal_type": "home", "priority": "high"}),
        )
        .await;
    assert_eq!(status, 202, "goal: {goal}");
    let (status, approved) = nodes[1]
        .post_json(
            &format!(
                "/api/approvals/{}/approve",
                goal["id"].as_str().expect("request id")
            ),
            &couple.b.token,
            json!({}),
        )
        .await;
    assert_eq!(
        status, 200,
        "approve the goal through the other node: {approved}"
    );
    let goal = goal["target_id"].as_str().expect("goal id").to_owned();
    let ((ann_cents, ann_names), (bob_cents, bob_names)) = tokio::join!(
        hammer(&nodes[0], &couple.a.token, &goal, "ann", ann_writes),
        hammer(&nodes[1], &couple.b.token, &goal, "bob", bob_writes),
    );
    let expected = ann_cents + bob_cents;
    let saved = format!("{}.{:02}", expected / 100, expected % 100);
    let mut answers = Vec::new();
    for node in nodes {
        let goals = get(node, "/api/goals", &couple.a.token).await;
        assert_eq!(
            goals["items"][0]["saved_amount"],
            json!(saved),
            "the goal's counter on port {}",
            node.port
        );
        answers.push((
            get(node, "/api/expenses?limit=100", &couple.a.token).await,
            get(node, "/api/expenses/split-calculation", &couple.b.token).await,
            get(node, "/api/approvals?status=pending", &couple.b.token).await,
        ));
    }
    assert_eq!(answers[0], answers[1], "both nodes answer alike");
    let names: Vec<String> = ann_names.into_iter().chain(bob_names).collect();
    stored_exactly_once(&nodes[0], couple.partnership_id, &names).await;
    let doc = assert_rows_match_the_document(&nodes[1], couple.partnership_id).await;
    let state = read_document(&doc).expect("readable");
    for expense in &state.expenses {
        let waiting = state
            .approvals
            .iter()
            .any(|a| a.target_id == expense.id && a.status == ApprovalStatus::Pending);
        let over = expense.amount > MinorUnits(10_000);
        assert_eq!(
            waiting, over,
            "{} ({:?}): a request waits exactly when it is over the threshold",
            expense.name, expense.amount
        );
    }
}

// ---- presence across nodes ------------------------------------------------------------------

#[tokio::test]
async fn presence_crosses_nodes_and_a_dead_node_stops_counting_its_users_online() {
    // A presence TTL of 2 s (nodes repeat their presence every 0.5 s) keeps the test short; the
    // default, 20 s, bounds a dead node's users at 25 s the same way.
    let Some(mut nodes) = nodes(2, &[("PRESENCE_TTL_SECS", "2")]).await else {
        return;
    };
    let ann = register(&nodes[0].url(""), "ann", 4000).await;
    let bob = register(&nodes[1].url(""), "bob", 2000).await;
    let mut feed = bob.client.events();
    pair(&ann, &bob).await;
    let ann_id = ann.client.user_id().expect("ann id");
    let presence = |online: bool| {
        move |e: &ClientEvent| match e {
            ClientEvent::PartnerOnline { user_id, .. } if online => Some(*user_id),
            ClientEvent::PartnerOffline { user_id, .. } if !online => Some(*user_id),
            _ => None,
        }
    };
    // Bob, syncing through node 2, hears that Ann (through node 1) is online, then offline
    // and online again as her phone disconnects and reconnects.
    assert_eq!(next_matching(&mut feed, presence(true)).await, ann_id);
    ann.client.stop_sync().await;
    assert_eq!(next_matching(&mut feed, presence(false)).await, ann_id);
    ann.client.start_sync().await.expect("online again");
    assert_eq!(next_matching(&mut feed, presence(true)).await, ann_id);
    // A newcomer on node 2 is told at once that Ann is online through node 1.
    let second_dir = tempfile::TempDir::new().expect("store dir");
    let second = Client::open(config(&nodes[1].url(""), second_dir.path())).expect("open");
    second
        .login(&bob.email, crate::real_server::PASSWORD)
        .await
        .expect("Bob signs in on a second device");
    let mut second_feed = second.events();
    second.start_sync().await.expect("second device syncs");
    assert_eq!(
        next_matching(&mut second_feed, presence(true)).await,
        ann_id
    );
    second.shutdown().await;

    // Ann's node dies without a word: Bob sees her offline once the TTL has passed.
    let killed = Instant::now();
    nodes[0].kill();
    let offline = tokio::time::timeout(
        Duration::from_secs(5),
        next_matching(&mut feed, presence(false)),
    )
    .await
    .expect("Ann goes offline within the TTL and one repeat");
    assert_eq!(offline, ann_id);
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_millis(1_500),
        "offline only once the TTL ran out, not at once ({took:?})"
    );
    ann.client.shutdown().await;
    bob.client.shutdown().await;
}

// ---- draining --------------------------------------------------------------------------------

#[tokio::test]
async fn a_draining_node_tells_its_websocket_clients_to_reconnect_elsewhere() {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::Message;

    let Some(mut nodes) = nodes(1, &[]).await else {
        return;
    };
    let couple = nodes[0].register_couple().await;
    // An event stream and a sync connection, both open when SIGTERM comes.
    let url = format!(
        "ws://127.0.0.1:{}/api/events?token={}",
        nodes[0].port, couple.a.token
    );
    let (mut events, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("event stream");
    let (mut sync, _, _) = nodes[0]
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;
    let (took, clean) = nodes[0].terminate();
    assert!(clean, "exits cleanly");
    assert!(
        took < Duration::from_secs(10),
        "exits within 10 s: {took:?}"
    );
    let close = loop {
        match events.next().await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(
        close.map(|f| f.code),
        Some(CloseCode::Restart),
        "1012: reconnect (through the load balancer, to another node)"
    );
    // The sync connection is closed too, without an `error` message: nothing went wrong, the
    // client just reconnects.
    loop {
        match tokio::time::timeout(Duration::from_secs(5), sync.recv()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => break,
            other => panic!("expected the sync connection to close, got {other:?}"),
        }
    }
}

// ---- push across nodes -------------------------------------------------------------------------

fn approval_pushes(fcm: &FcmStandin) -> usize {
    fcm.received()
        .iter()
        .filter(|m| m.body["message"]["data"]["kind"] == "approval_requested")
        .count()
}

/// Ben has the web app open (an event stream) on node 2 while Ann writes on node 1: his phone
/// is told nothing; once he closes it, node 1 hears so and the next request reaches his phone.
#[tokio::test]
async fn an_event_stream_on_another_node_keeps_the_partners_phone_quiet() {
    let fcm = FcmStandin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let account = dir.path().join("service-account.json");
    std::fs::write(&account, fcm.service_account_json()).expect("service account");
    let account = account.display().to_string();
    let endpoint = fcm.endpoint();
    let Some(nodes) = nodes(
        2,
        &[
            ("FCM_SERVICE_ACCOUNT_FILE", account.as_str()),
            ("FCM_ENDPOINT", endpoint.as_str()),
        ],
    )
    .await
    else {
        return;
    };
    let couple = nodes[0].register_couple().await;
    let (status, body) = nodes[0]
        .post_json(
            "/api/devices",
            &couple.b.token,
            json!({"platform": "android", "fcm_token": "ben-phone"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let db = sqlx::PgPool::connect(&nodes[0].db.url)
        .await
        .expect("the nodes' database");
    let mut n = 0;
    let mut ann_asks = || {
        n += 1;
        let node = &nodes[0];
        let token = couple.a.token.clone();
        let name = format!("Sofa {n}");
        async move {
            let (status, body) = node
                .post_json(
                    "/api/expenses",
                    &token,
                    json!({"name": name, "amount": "900.00", "category": "housing", "frequency": "monthly"}),
                )
                .await;
            assert_eq!(status, 202, "{body}");
            name
        }
    };

    // Ben opens the web app on node 2; node 1 hears of it over Redis.
    let (stream, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/events?token={}",
        nodes[1].url("").replacen("http://", "ws://", 1),
        couple.b.token
    ))
    .await
    .expect("event stream on node 2");
    // A row is written in the merge's own transaction, before the write is answered, and a
    // row the sender takes is sent before it is deleted: an empty outbox, read first, and no new
    // push, read second, mean the write queued nothing.
    let deadline = Instant::now() + DEADLINE;
    let mut base = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "node 1 never counts Ben as watching"
        );
        ann_asks().await;
        let empty = nothing_queued_rows(&db).await;
        if empty && approval_pushes(&fcm) == base {
            break;
        }
        // Queued before node 1 heard of the stream: let it go out, then try again.
        while !nothing_queued_rows(&db).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        fcm_quiet_since(&fcm).await;
        base = approval_pushes(&fcm);
    }
    let before = approval_pushes(&fcm);
    for _ in 0..3 {
        ann_asks().await;
        let empty = nothing_queued_rows(&db).await;
        let pushes = approval_pushes(&fcm);
        assert!(
            empty && pushes == before,
            "a watching partner's phone stays quiet"
        );
    }

    // Ben closes the web app: node 1 hears so, and the next request reaches his phone.
    drop(stream);
    let deadline = Instant::now() + DEADLINE;
    let last = loop {
        assert!(Instant::now() < deadline, "node 1 never hears Ben left");
        let name = ann_asks().await;
        if !nothing_queued_rows(&db).await || approval_pushes(&fcm) > before {
            break name;
        }
    };
    let deadline = Instant::now() + DEADLINE;
    while approval_pushes(&fcm) == before {
        assert!(Instant::now() < deadline, "the push arrives");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pushes: Vec<String> = fcm
        .received()
        .iter()
        .filter(|m| m.body["message"]["data"]["kind"] == "approval_requested")
        .skip(before)
        .map(|m| m.body["message"]["notification"]["body"].to_string())
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert!(pushes[0].contains(&last), "{pushes:?} about {last}");
}

/// Whether the outbox is empty.
async fn nothing_queued_rows(db: &sqlx::PgPool) -> bool {
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM notification_outbox")
        .fetch_one(db)
        .await
        .expect("count the outbox");
    rows == 0
}

/// Waits until the stand-in has heard nothing new for a moment (a push under way arrives).
async fn fcm_quiet_since(fcm: &FcmStandin) {
    let mut seen = fcm.received().len();
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = fcm.received().len();
        if now == seen {
            return;
        }
        seen = now;
    }
}
