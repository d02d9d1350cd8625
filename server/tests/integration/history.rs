//! `GET /api/history`, `/api/expenses/{id}/history` and `/api/goals/{id}/history` through real
//! HTTP and real sync connections, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL: an
//! offline edit the server corrected shows the partner's entry (made hours before it arrived)
//! and SplitSave's correction with its reason; the same edit through REST and through sync
//! reads alike; filters and keyset pages; another couple's ids are not found; and
//! `rebuild-history` writes the entries the commits wrote.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_sync_core::enums::{Category, Frequency};
use splitsave_sync_core::ids::EntityId;
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, NewExpense, Outcome};
use splitsave_sync_core::time::Millis;

use crate::common::{Backend, Session, TestApp};
use crate::sync_support::{settle_all, SyncClient};

on_both_backends!(
    an_offline_edit_the_server_corrected_shows_the_partner_then_splitsave_with_its_reason,
    an_edit_through_rest_and_one_through_sync_read_alike,
    filters_and_pages_cover_every_entry_once_newest_first,
    another_couples_ids_are_not_found_and_bad_parameters_are_refused,
    rebuilding_the_history_gives_the_entries_the_commits_wrote,
);

async fn add_expense(app: &TestApp, who: &Session, name: &str, amount: &str) -> String {
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&who.access_token),
            json!({"name": name, "amount": amount, "category": "housing", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().expect("id").to_string()
}

async fn history(app: &TestApp, who: &Session, path: &str) -> Vec<Value> {
    let (status, body) = app.get(path, Some(&who.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["items"].as_array().expect("items").clone()
}

/// An entry's changes as field → (old, new).
fn changes(entry: &Value) -> BTreeMap<String, (Value, Value)> {
    entry["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["field"].as_str().expect("field").to_string(),
                (c["old"].clone(), c["new"].clone()),
            )
        })
        .collect()
}

fn time(v: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

async fn an_offline_edit_the_server_corrected_shows_the_partner_then_splitsave_with_its_reason(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let rent = add_expense(&app, &ann, "Rent", "50.00").await;
    let mut a = SyncClient::connect(&app, &ann).await;
    settle_all(&app, &mut [&mut a]).await;

    // Ann, offline since two hours ago, raises the rent on her phone without asking Ben.
    a.disconnect().await;
    let two_hours_ago = Millis(Millis::now().0 - 2 * 3600 * 1000);
    let id = EntityId(rent.parse().expect("uuid"));
    a.edit_at(two_hours_ago, |tx, _| {
        use automerge::transaction::Transactable;
        use automerge::ReadDoc;
        let (_, expenses) = tx
            .get(automerge::ROOT, "expenses")
            .map_err(ops::OpError::Automerge)?
            .expect("expenses");
        let (_, obj) = tx
            .get(&expenses, rent.as_str())
            .map_err(ops::OpError::Automerge)?
            .expect("the rent");
        tx.put(&obj, "amount", 8_000_i64)
            .map_err(ops::OpError::Automerge)?;
        Ok(Outcome::Applied { id })
    });
    a.reconnect().await;
    settle_all(&app, &mut [&mut a]).await;

    let entries = history(&app, &ben, &format!("/api/expenses/{rent}/history")).await;
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let (correction, edit, added) = (&entries[0], &entries[1], &entries[2]);

    assert_eq!(correction["author"]["type"], "splitsave");
    assert_eq!(correction["author"]["name"], "SplitSave");
    assert_eq!(correction["reason"], "edit needs approval: amount restored");
    assert_eq!(correction["action"], "changed");
    assert_eq!(
        changes(correction)["amount"],
        (json!("80.00"), json!("50.00"))
    );

    assert_eq!(edit["author"]["type"], "user");
    assert_eq!(edit["author"]["user_id"], ann.user_id.to_string());
    assert_eq!(edit["author"]["name"], "Ann");
    assert_eq!(edit["reason"], Value::Null);
    assert_eq!(changes(edit)["amount"], (json!("50.00"), json!("80.00")));
    // Made two hours before the server received it.
    let made = time(&edit["changed_at"]);
    let received = time(&edit["received_at"]);
    assert_eq!(edit["received_at_exact"], true);
    assert!(
        (made.timestamp() - two_hours_ago.0 / 1000).abs() <= 1,
        "{made}"
    );
    assert!(
        received - made >= chrono::Duration::minutes(119),
        "{made} {received}"
    );

    assert_eq!(added["action"], "created");
    assert_eq!(added["author"]["name"], "Ann");
    let fields = changes(added);
    assert_eq!(fields["name"], (Value::Null, json!("Rent")));
    assert_eq!(fields["amount"], (Value::Null, json!("50.00")));
    assert_eq!(fields["status"], (Value::Null, json!("active")));

    // The edit request the server filed for Ann is in the couple's history, by SplitSave.
    let requests = history(&app, &ben, "/api/history?kind=approval").await;
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert_eq!(requests[0]["author"]["type"], "splitsave");
    assert_eq!(requests[0]["reason"], "edit needs approval: request filed");
    let filed = changes(&requests[0]);
    assert_eq!(filed["target_id"].1, json!(rent));
    assert_eq!(filed["request_data.amount"].1, json!("80.00"));
    assert_eq!(filed["requested_by"].1, json!(ann.user_id.to_string()));

    // Who did what: the author filter.
    let by_server = history(&app, &ann, "/api/history?author=splitsave").await;
    assert!(by_server.len() >= 2);
    assert!(by_server.iter().all(|e| e["author"]["type"] == "splitsave"));
    let by_ann = history(&app, &ann, &format!("/api/history?author={}", ann.user_id)).await;
    assert!(by_ann.iter().all(|e| e["author"]["name"] == "Ann"));
    assert!(by_ann.iter().any(|e| e["change"] == edit["change"]));
}

async fn an_edit_through_rest_and_one_through_sync_read_alike(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    // Ann adds over REST; Ben adds the same kind of expense from his phone.
    let by_rest = add_expense(&app, &ann, "Internet", "45.50").await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut b]).await;
    let by_sync = match b.edit(|tx, ctx| {
        ops::add_expense(
            tx,
            ctx,
            &NewExpense {
                name: "Internet".into(),
                amount: MinorUnits(4_550),
                category: Category::Housing,
                frequency: Frequency::Monthly,
            },
        )
    }) {
        Outcome::Applied { id } => id.to_string(),
        other => panic!("a small expense applies, got {other:?}"),
    };
    settle_all(&app, &mut [&mut b]).await;

    // A second one from the same phone: a merge with no actor to bind, which PostgreSQL
    // commits in one statement (history entries included).
    let second = match b.edit(|tx, ctx| {
        ops::add_expense(
            tx,
            ctx,
            &NewExpense {
                name: "Water".into(),
                amount: MinorUnits(1_999),
                category: Category::Utilities,
                frequency: Frequency::Monthly,
            },
        )
    }) {
        Outcome::Applied { id } => id.to_string(),
        other => panic!("a small expense applies, got {other:?}"),
    };
    settle_all(&app, &mut [&mut b]).await;
    let water = history(&app, &ann, &format!("/api/expenses/{second}/history")).await;
    assert_eq!(water.len(), 1, "{water:#?}");
    assert_eq!(water[0]["author"]["name"], "Ben");
    assert_eq!(changes(&water[0])["amount"], (Value::Null, json!("19.99")));

    let rest = history(&app, &ann, &format!("/api/expenses/{by_rest}/history")).await;
    let sync = history(&app, &ann, &format!("/api/expenses/{by_sync}/history")).await;
    assert_eq!((rest.len(), sync.len()), (1, 1), "{rest:#?} {sync:#?}");
    let (r, s) = (&rest[0], &sync[0]);
    for e in [r, s] {
        assert_eq!(e["kind"], "expense");
        assert_eq!(e["action"], "created");
        assert_eq!(e["author"]["type"], "user");
        assert_eq!(e["reason"], Value::Null);
        assert!(e["changed_at"].is_string(), "{e}");
    }
    assert_eq!(r["author"]["name"], "Ann");
    assert_eq!(s["author"]["name"], "Ben");
    // The same fields, shown the same way; only ids, authors and times differ.
    let strip = |e: &Value| -> BTreeMap<String, Value> {
        changes(e)
            .into_iter()
            .filter(|(f, _)| !["id", "added_by", "created_at", "updated_at"].contains(&f.as_str()))
            .map(|(f, (_, new))| (f, new))
            .collect()
    };
    assert_eq!(strip(r), strip(s));
    assert_eq!(strip(r)["amount"], json!("45.50"));
    let keys = |e: &Value| changes(e).into_keys().collect::<BTreeSet<_>>();
    assert_eq!(keys(r), keys(s));

    // An edit over REST waits for Ben; his approval applies it, and the expense's history says
    // so, with Ben as the author of the change of amount.
    let (status, request) = app
        .put(
            &format!("/api/expenses/{by_rest}"),
            Some(&ann.access_token),
            json!({"amount": "60.00"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let request_id = request["id"].as_str().expect("request id");
    let (status, body) = app
        .post(
            &format!("/api/approvals/{request_id}/approve"),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let entries = history(&app, &ann, &format!("/api/expenses/{by_rest}/history")).await;
    let applied = &entries[0];
    assert_eq!(applied["author"]["name"], "Ben");
    assert_eq!(changes(applied)["amount"], (json!("45.50"), json!("60.00")));
    let approvals = history(
        &app,
        &ann,
        &format!("/api/history?kind=approval&entity={request_id}"),
    )
    .await;
    assert_eq!(approvals.len(), 2, "{approvals:#?}");
    assert_eq!(approvals[0]["author"]["name"], "Ben");
    assert_eq!(
        changes(&approvals[0])["status"],
        (json!("pending"), json!("approved"))
    );
    assert_eq!(approvals[1]["author"]["name"], "Ann");
    assert_eq!(approvals[1]["action"], "created");
}

async fn filters_and_pages_cover_every_entry_once_newest_first(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let who = if i % 2 == 0 { &ann } else { &ben };
        ids.push(add_expense(&app, who, &format!("Item {i}"), &format!("{}.00", 10 + i)).await);
    }
    let (status, _) = app
        .post(
            "/api/messages",
            Some(&ben.access_token),
            json!({"text": "All added"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let all = history(&app, &ann, "/api/history?limit=100").await;
    let expenses: Vec<&Value> = all.iter().filter(|e| e["kind"] == "expense").collect();
    assert_eq!(expenses.len(), 7);
    assert_eq!(all.iter().filter(|e| e["kind"] == "message").count(), 1);
    assert_eq!(all[0]["kind"], "message", "newest first");
    let positions: Vec<i64> = all
        .iter()
        .map(|e| e["id"].as_str().expect("id").parse().expect("number"))
        .collect();
    assert!(positions.windows(2).all(|w| w[0] > w[1]), "{positions:?}");

    // Pages of 3 cover the same entries once each, in the same order.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/history?limit=3&cursor={c}"),
            None => "/api/history?limit=3".to_string(),
        };
        let (status, body) = app.get(&path, Some(&ann.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().expect("items");
        assert!(items.len() <= 3);
        paged.extend(items.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(paged, all);

    // Filters: kind, entity, author, time.
    let only = history(&app, &ann, "/api/history?kind=expense&limit=100").await;
    assert_eq!(only.len(), 7);
    let one = history(&app, &ann, &format!("/api/history?entity={}", ids[3])).await;
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["entity_id"], ids[3].as_str());
    let bens = history(
        &app,
        &ann,
        &format!("/api/history?author={}&kind=expense", ben.user_id),
    )
    .await;
    assert_eq!(bens.len(), 3);
    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let past = (Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let enc = |t: &str| t.replace('+', "%2B");
    assert!(
        history(&app, &ann, &format!("/api/history?from={}", enc(&future)))
            .await
            .is_empty()
    );
    assert_eq!(
        history(
            &app,
            &ann,
            &format!(
                "/api/history?from={}&to={}&limit=100",
                enc(&past),
                enc(&future)
            )
        )
        .await
        .len(),
        all.len()
    );
}

async fn another_couples_ids_are_not_found_and_bad_parameters_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (cat, _dan, _) = app
        .register_couple("cat@example.com", "dan@example.com")
        .await;
    let theirs = add_expense(&app, &cat, "Their rent", "40.00").await;
    let (status, goal) = app
        .post(
            "/api/goals",
            Some(&cat.access_token),
            json!({"name": "Their trip", "target_amount": "500.00", "goal_type": "vacation", "priority": "high"}),
        )
        .await;
    assert!(status.is_success(), "{goal}");
    let their_goal = goal["target_id"]
        .as_str()
        .or_else(|| goal["id"].as_str())
        .expect("goal id");
    let token = Some(ann.access_token.as_str());
    for path in [
        format!("/api/expenses/{theirs}/history"),
        format!("/api/goals/{their_goal}/history"),
        format!("/api/expenses/{}/history", uuid::Uuid::now_v7()),
    ] {
        let (status, body) = app.get(&path, token).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let none = history(&app, &ann, &format!("/api/history?entity={theirs}")).await;
    assert!(none.is_empty(), "{none:#?}");
    let mine = history(&app, &ann, "/api/history?limit=100").await;
    let text = serde_json::to_string(&mine).expect("json");
    assert!(!text.contains(&theirs) && !text.contains(&cat.user_id.to_string()));

    let (status, _) = app.get("/api/history", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let loner = app.register("lone@example.com", "Lone").await;
    let (status, _) = app.get("/api/history", Some(&loner.access_token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for (query, field) in [
        ("kind=bogus", "kind"),
        ("author=someone", "author"),
        ("from=yesterday", "from"),
        ("to=2026-13-01", "to"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("cursor=zzz", "cursor"),
    ] {
        let (status, body) = app.get(&format!("/api/history?{query}"), token).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert!(body.to_string().contains(field), "{query}: {body}");
    }
}

async fn rebuilding_the_history_gives_the_entries_the_commits_wrote(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let rent = add_expense(&app, &ann, "Rent", "50.00").await;
    let mut b = SyncClient::connect(&app, &ben).await;
    settle_all(&app, &mut [&mut b]).await;
    // Ben bypasses the rules: an expense over the threshold written straight as active.
    b.edit(|tx, ctx| {
        ops::add_expense(
            tx,
            ctx,
            &NewExpense {
                name: "Sofa".into(),
                amount: MinorUnits(250_000),
                category: Category::Other,
                frequency: Frequency::Yearly,
            },
        )
    });
    settle_all(&app, &mut [&mut b]).await;
    let (status, _) = app
        .put(
            &format!("/api/expenses/{rent}"),
            Some(&ann.access_token),
            json!({"name": "Flat"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);

    let before = history(&app, &ann, "/api/history?limit=100").await;
    assert!(before.len() >= 4, "{before:#?}");
    let mut out = Vec::new();
    let mut progress = Vec::new();
    let summary = splitsave_server::admin::rebuild_history(
        &*app.state.store,
        Some(pid),
        &mut out,
        &mut progress,
    )
    .await
    .expect("rebuilds");
    assert_eq!(summary.failed, 0, "{}", String::from_utf8_lossy(&out));
    assert_eq!(summary.entries, before.len());
    let after = history(&app, &ann, "/api/history?limit=100").await;
    // The same entries in the same order; only their positions are new.
    let strip = |entries: &[Value]| -> Vec<Value> {
        entries
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().expect("object").remove("id");
                e
            })
            .collect()
    };
    assert_eq!(strip(&after), strip(&before));
}
