//! `GET /api/export` through real HTTP, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL:
//! the JSON export holds a furnished couple's items exactly as the REST views show them and no
//! id of a second couple; the CSV export is a zip whose files all parse and whose expenses add
//! up to the REST listing and the split; the Automerge export loads and reads the same
//! expenses; a caller without a partnership gets their profile only; the per-user limit, an
//! unknown format and a missing token.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;

use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use splitsave_sync_core::money::Currency;

use crate::common::{Backend, RawResponse, Session, TestApp};

on_both_backends!(
    json_export_holds_the_couples_items_as_the_rest_views_and_nothing_of_another_couple,
    csv_export_is_a_zip_of_csv_files_that_parse_and_add_up,
    automerge_export_loads_and_reads_the_same_expenses,
    a_caller_without_a_partnership_gets_their_profile_only,
    exports_are_limited_per_user_and_bad_requests_refused,
    the_export_limit_is_the_configured_one,
    tables_longer_than_a_page_are_exported_whole_once_each,
);

/// The export's filename from `Content-Disposition`, checked to be today's (UTC) with `ext`.
fn assert_attachment(response: &RawResponse, ext: &str) {
    let disposition = response.header("content-disposition");
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let yesterday = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .format("%Y-%m-%d")
        .to_string();
    assert!(
        [today, yesterday]
            .iter()
            .any(|d| disposition == format!("attachment; filename=\"splitsave-export-{d}.{ext}\"")),
        "{disposition}"
    );
}

/// Items by their `id` (months by `month`).
fn by_key(items: &[Value]) -> BTreeMap<String, Value> {
    items
        .iter()
        .map(|item| {
            let key = item
                .get("id")
                .or_else(|| item.get("month"))
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("no key in {item}"));
            (key.to_string(), item.clone())
        })
        .collect()
}

/// Every approval request of the caller's partnership, whatever its status.
async fn all_approvals(app: &TestApp, token: &str) -> Vec<Value> {
    let mut all = Vec::new();
    for status in ["pending", "approved", "declined"] {
        all.extend(
            app.list_all(&format!("/api/approvals?status={status}"), token)
                .await,
        );
    }
    all
}

/// Every id and email of a couple that another couple's export must never contain.
async fn secrets_of(app: &TestApp, one: &Session, other: &Session) -> BTreeSet<String> {
    let token = &one.access_token;
    let mut secrets: BTreeSet<String> = [
        one.user_id.to_string(),
        other.user_id.to_string(),
        one.email.clone(),
        other.email.clone(),
    ]
    .into();
    let (status, partnership) = app.get("/api/partnerships/current", Some(token)).await;
    assert_eq!(status, StatusCode::OK);
    secrets.insert(partnership["id"].as_str().expect("id").to_string());
    secrets.insert(
        partnership["document_url"]
            .as_str()
            .expect("document url")
            .to_string(),
    );
    for path in ["/api/expenses", "/api/goals", "/api/messages"] {
        for item in app.list_all(path, token).await {
            secrets.insert(item["id"].as_str().expect("id").to_string());
        }
    }
    for item in all_approvals(app, token).await {
        secrets.insert(item["id"].as_str().expect("id").to_string());
    }
    secrets
}

fn assert_reveals_nothing(what: &str, text: &str, secrets: &BTreeSet<String>) {
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{what} contains {secret} of the other couple"
        );
    }
}

async fn json_export_holds_the_couples_items_as_the_rest_views_and_nothing_of_another_couple(
    backend: Backend,
) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _pid) = app
        .furnish_couple("ann@example.com", "ben@example.com")
        .await;
    let (cat, dan, _) = app
        .furnish_couple("cat@example.com", "dan@example.com")
        .await;
    let token = ann.access_token.as_str();

    let response = app.get_raw("/api/export?format=json", Some(token)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(response
        .header("content-type")
        .starts_with("application/json"));
    assert_attachment(&response, "json");
    let export = response.json();

    assert_eq!(export["format_version"], 1);
    chrono::DateTime::parse_from_rfc3339(export["exported_at"].as_str().expect("exported_at"))
        .expect("RFC 3339");
    let (_, profile) = app.get("/api/users/profile", Some(token)).await;
    assert_eq!(export["profile"], profile);
    let (_, partnership) = app.get("/api/partnerships/current", Some(token)).await;
    assert_eq!(export["partnership"], partnership);

    // Every item, as the REST API lists it.
    for (key, items) in [
        ("expenses", app.list_all("/api/expenses", token).await),
        ("goals", app.list_all("/api/goals", token).await),
        ("messages", app.list_all("/api/messages", token).await),
        (
            "contributions",
            app.list_all("/api/contributions", token).await,
        ),
        ("approval_requests", all_approvals(&app, token).await),
    ] {
        let exported = export[key].as_array().unwrap_or_else(|| panic!("{key}"));
        assert!(!items.is_empty(), "the couple has no {key}");
        assert_eq!(by_key(exported), by_key(&items), "{key}");
    }
    assert_eq!(export["expenses"].as_array().expect("expenses").len(), 4);
    assert_eq!(
        export["approval_requests"]
            .as_array()
            .expect("requests")
            .len(),
        4
    );
    // The history: every entry, newest first, as `GET /api/history` shows it.
    let history = app.list_all("/api/history", token).await;
    assert!(!history.is_empty());
    assert_eq!(export["history"].as_array().expect("history"), &history);
    // The goal contributions add up to the goal's saved amount.
    let goals = app.list_all("/api/goals", token).await;
    let goal = &goals[0];
    let contributions = export["goal_contributions"]
        .as_array()
        .expect("goal contributions");
    assert_eq!(contributions.len(), 2, "{contributions:?}");
    let saved: Decimal = contributions
        .iter()
        .map(|c| {
            assert_eq!(c["goal_id"], goal["id"]);
            c["amount"]
                .as_str()
                .expect("amount")
                .parse::<Decimal>()
                .expect("decimal")
        })
        .sum();
    assert_eq!(
        saved.to_string(),
        goal["saved_amount"].as_str().expect("saved")
    );
    let contributors: BTreeSet<&str> = contributions
        .iter()
        .map(|c| c["user_id"].as_str().expect("user"))
        .collect();
    assert_eq!(
        contributors,
        [ann.user_id.to_string(), ben.user_id.to_string()]
            .iter()
            .map(String::as_str)
            .collect()
    );

    // The keys are the documented ones.
    let (_, doc) = app.get("/api/openapi.json", None).await;
    let documented: BTreeSet<&String> = doc["components"]["schemas"]["ExportDocument"]
        ["properties"]
        .as_object()
        .expect("ExportDocument in the OpenAPI document")
        .keys()
        .collect();
    let written: BTreeSet<&String> = export.as_object().expect("object").keys().collect();
    assert_eq!(written, documented);

    // Nothing of the other couple, anywhere in the file.
    let secrets = secrets_of(&app, &cat, &dan).await;
    let text = String::from_utf8(response.body.clone()).expect("UTF-8");
    assert_reveals_nothing("the JSON export", &text, &secrets);

    // The partner's export is the same couple's.
    let bens = app
        .get_raw("/api/export?format=json", Some(&ben.access_token))
        .await
        .json();
    assert_eq!(bens["expenses"], export["expenses"]);
    assert_eq!(bens["profile"]["id"], json!(ben.user_id));
}

/// The zip's files, by name, as text.
fn unzip(bytes: &[u8]) -> BTreeMap<String, String> {
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a zip");
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).expect("entry");
        let mut text = String::new();
        file.read_to_string(&mut text).expect("UTF-8 entry");
        files.insert(file.name().expect("entry name").to_string(), text);
    }
    files
}

/// A CSV file's rows as maps from column to value (every row as long as the header).
fn parse_csv(name: &str, text: &str) -> Vec<BTreeMap<String, String>> {
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .unwrap_or_else(|e| panic!("{name}: {e}"))
        .iter()
        .map(str::to_string)
        .collect();
    assert!(!header.is_empty(), "{name} has no header");
    reader
        .records()
        .map(|record| {
            let record = record.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(record.len(), header.len(), "{name}: {record:?}");
            header
                .iter()
                .cloned()
                .zip(record.iter().map(str::to_string))
                .collect()
        })
        .collect()
}

fn decimal(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

async fn csv_export_is_a_zip_of_csv_files_that_parse_and_add_up(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, pid) = app
        .furnish_couple("ann@example.com", "ben@example.com")
        .await;
    let (cat, dan, _) = app
        .furnish_couple("cat@example.com", "dan@example.com")
        .await;
    let token = ann.access_token.as_str();

    let response = app.get_raw("/api/export?format=csv", Some(token)).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), "application/zip");
    assert_attachment(&response, "zip");
    let files = unzip(&response.body);
    let names: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "approval_requests.csv",
            "contributions.csv",
            "expenses.csv",
            "goal_contributions.csv",
            "goals.csv",
            "history.csv",
            "messages.csv",
            "partnership.csv",
            "profile.csv",
        ]
    );
    let tables: BTreeMap<&str, Vec<BTreeMap<String, String>>> = files
        .iter()
        .map(|(name, text)| (name.as_str(), parse_csv(name, text)))
        .collect();

    // The history: one row per entry of `GET /api/history`, its changes the same JSON.
    let history = app.list_all("/api/history", token).await;
    let rows = &tables["history.csv"];
    assert_eq!(rows.len(), history.len());
    for (row, entry) in rows.iter().zip(&history) {
        assert_eq!(row["id"], entry["id"].as_str().expect("id"));
        assert_eq!(
            row["author_name"],
            entry["author"]["name"].as_str().expect("name")
        );
        let changes: Value = serde_json::from_str(&row["changes"]).expect("changes JSON");
        assert_eq!(changes, entry["changes"]);
    }
    let profile = &tables["profile.csv"];
    assert_eq!(profile.len(), 1);
    assert_eq!(profile[0]["email"], "ann@example.com");
    assert_eq!(profile[0]["income"], "3000.00");
    let partnership = &tables["partnership.csv"];
    assert_eq!(partnership.len(), 1);
    assert_eq!(partnership[0]["id"], pid.to_string());
    assert_eq!(partnership[0]["partner_email"], "ben@example.com");

    // The expenses: the same rows as the REST listing, the quoted name intact, the amounts
    // adding up to the listing's, and the active ones (all monthly) to the split's total.
    let listed = app.list_all("/api/expenses", token).await;
    let expenses = &tables["expenses.csv"];
    assert_eq!(expenses.len(), listed.len());
    let listed_by_id = by_key(&listed);
    for row in expenses {
        let rest = &listed_by_id[&row["id"]];
        for column in [
            "name",
            "amount",
            "category",
            "frequency",
            "status",
            "created_at",
        ] {
            assert_eq!(
                row[column],
                rest[column].as_str().expect(column),
                "{column}"
            );
        }
    }
    assert!(expenses
        .iter()
        .any(|r| r["name"] == "Internet, \"fibre\" – Zürich"));
    let sum = |rows: &mut dyn Iterator<Item = Decimal>| rows.sum::<Decimal>();
    assert_eq!(
        sum(&mut expenses.iter().map(|r| decimal(&r["amount"]))),
        sum(&mut listed
            .iter()
            .map(|e| decimal(e["amount"].as_str().expect("amount"))))
    );
    let (status, split) = app
        .get("/api/expenses/split-calculation", Some(token))
        .await;
    assert_eq!(status, StatusCode::OK);
    let active = sum(&mut expenses
        .iter()
        .filter(|r| r["status"] == "active")
        .map(|r| decimal(&r["amount"])));
    assert_eq!(
        active,
        decimal(split["monthly_total"].as_str().expect("total"))
    );
    assert_eq!(active.to_string(), "1239.90");

    // This month: one row per share, adding up to the month's total, which is the split's.
    let shares = &tables["contributions.csv"];
    assert_eq!(shares.len(), 2, "{shares:?}");
    let total = decimal(&shares[0]["total_required"]);
    assert_eq!(total, active);
    assert_eq!(
        sum(&mut shares.iter().map(|s| decimal(&s["amount"]))),
        total
    );
    assert_eq!(
        shares.iter().filter(|s| s["paid"] == "true").count(),
        1,
        "{shares:?}"
    );

    let messages = &tables["messages.csv"];
    assert!(messages
        .iter()
        .any(|m| m["text"] == "Great, \"thanks\"!\nSee you at 8"));
    assert_eq!(tables["goals.csv"].len(), 1);
    assert_eq!(tables["goal_contributions.csv"].len(), 2);
    let requests = &tables["approval_requests.csv"];
    assert_eq!(requests.len(), 4);
    for request in requests {
        let data: Value = serde_json::from_str(&request["request_data"]).expect("JSON");
        assert!(data.is_object(), "{data}");
    }

    let secrets = secrets_of(&app, &cat, &dan).await;
    for (name, text) in &files {
        assert_reveals_nothing(name, text, &secrets);
    }
}

async fn automerge_export_loads_and_reads_the_same_expenses(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, pid) = app
        .furnish_couple("ann@example.com", "ben@example.com")
        .await;
    let token = ann.access_token.as_str();
    let response = app
        .get_raw("/api/export?format=automerge", Some(token))
        .await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("content-type"), "application/octet-stream");
    assert_attachment(&response, "automerge");

    let doc = automerge::Automerge::load(&response.body).expect("an Automerge document");
    let state = splitsave_sync_core::document::read_document(&doc).expect("readable");
    assert_eq!(state.partnership.id.0, pid);
    assert!(state.malformed.is_empty(), "{:?}", state.malformed);
    let from_doc: BTreeMap<String, (String, String, String)> = state
        .expenses
        .iter()
        .map(|e| {
            (
                e.id.0.to_string(),
                (
                    e.name.clone(),
                    Currency::USD.from_minor(e.amount).to_string(),
                    e.status.as_str().to_string(),
                ),
            )
        })
        .collect();
    let from_rest: BTreeMap<String, (String, String, String)> = app
        .list_all("/api/expenses", token)
        .await
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().expect(k).to_string();
            (text("id"), (text("name"), text("amount"), text("status")))
        })
        .collect();
    assert_eq!(from_doc, from_rest);
    assert_eq!(state.goal_contributions.len(), 2);
    assert_eq!(state.messages.len(), 2);
}

async fn a_caller_without_a_partnership_gets_their_profile_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let solo = app.register("solo@example.com", "Solo").await;
    let token = solo.access_token.as_str();

    let export = app.get_raw("/api/export?format=json", Some(token)).await;
    assert_eq!(export.status, StatusCode::OK);
    let export = export.json();
    let (_, profile) = app.get("/api/users/profile", Some(token)).await;
    assert_eq!(export["profile"], profile);
    assert_eq!(export["partnership"], Value::Null);
    for key in [
        "expenses",
        "goals",
        "goal_contributions",
        "contributions",
        "approval_requests",
        "messages",
    ] {
        assert_eq!(export[key], json!([]), "{key}");
    }

    let zip = app.get_raw("/api/export?format=csv", Some(token)).await;
    assert_eq!(zip.status, StatusCode::OK);
    let files = unzip(&zip.body);
    assert_eq!(files.keys().collect::<Vec<_>>(), ["profile.csv"]);
    let rows = parse_csv("profile.csv", &files["profile.csv"]);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["email"], "solo@example.com");

    let (status, body) = app.get("/api/export?format=automerge", Some(token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "no_partnership");

    // An invitation sent is shown, but it has no items and no document yet.
    let (status, invitation) = app
        .post(
            "/api/partnerships/invite",
            Some(token),
            json!({"email": "later@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    let export = app
        .get_raw("/api/export?format=json", Some(token))
        .await
        .json();
    assert_eq!(export["partnership"]["status"], "pending");
    assert_eq!(export["partnership"]["id"], invitation["id"]);
    assert_eq!(export["expenses"], json!([]));
    let (status, body) = app.get("/api/export?format=automerge", Some(token)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "no_partnership");
}

async fn exports_are_limited_per_user_and_bad_requests_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;

    // Refused before counting: no token, no format, an unknown format.
    let (status, body) = app.get("/api/export?format=json", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    for query in ["", "?format=xml", "?format=JSON", "?format="] {
        let (status, body) = app
            .get(&format!("/api/export{query}"), Some(&ann.access_token))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed");
        assert!(body["error"]["details"]["format"].is_array(), "{body}");
    }

    // Five exports an hour, whatever the format; the sixth is 429 with Retry-After.
    for format in ["json", "csv", "automerge", "json", "csv"] {
        let response = app
            .get_raw(
                &format!("/api/export?format={format}"),
                Some(&ann.access_token),
            )
            .await;
        assert_eq!(response.status, StatusCode::OK, "{format}");
    }
    let refused = app
        .get_raw("/api/export?format=json", Some(&ann.access_token))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.json()["error"]["code"], "rate_limited");
    let retry_after: u64 = refused.header("retry-after").parse().expect("Retry-After");
    assert!((1..=3600).contains(&retry_after), "{retry_after}");
    // The limit is the user's: the partner still exports.
    let response = app
        .get_raw("/api/export?format=json", Some(&ben.access_token))
        .await;
    assert_eq!(response.status, StatusCode::OK);
}

/// `EXPORT_RATE_LIMIT` sets how many exports a user may start an hour.
async fn the_export_limit_is_the_configured_one(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.export_rate_limit = 2).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    for _ in 0..2 {
        let response = app
            .get_raw("/api/export?format=json", Some(&ann.access_token))
            .await;
        assert_eq!(response.status, StatusCode::OK);
    }
    let refused = app
        .get_raw("/api/export?format=json", Some(&ann.access_token))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
}

/// More rows than a page (`PAGE_ROWS`, 250) in three tables, written straight into the couple's
/// materialized tables (the export reads only those): every row is exported once, in key
/// order, in both formats, across the keyset pages.
async fn tables_longer_than_a_page_are_exported_whole_once_each(backend: Backend) {
    use splitsave_sync_core::ids::{EntityId, UserId};
    use splitsave_sync_core::materialize::{
        ContributionRow, ContributionShare, ExpenseRow, MessageRow, Row, RowChange,
    };
    use splitsave_sync_core::time::Millis;

    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (cat, _dan, other) = app
        .register_couple("cat@example.com", "dan@example.com")
        .await;
    let page = splitsave_server::routes::export::PAGE_ROWS as usize;
    let (expenses, messages, months) = (2 * page + 7, page, page + 1);
    let now = Millis::now();
    let mut rows = Vec::new();
    for i in 0..expenses {
        rows.push(RowChange::Upsert(Row::Expense(ExpenseRow {
            id: EntityId(uuid::Uuid::new_v4()),
            name: format!("Expense {i}, \"n\u{b0}{i}\""),
            amount: Decimal::new(100 + i as i64, 2),
            category: "other".into(),
            frequency: "monthly".into(),
            added_by: UserId(ann.user_id),
            status: "active".into(),
            created_at: now,
            updated_at: now,
        })));
    }
    for i in 0..messages {
        rows.push(RowChange::Upsert(Row::Message(MessageRow {
            id: EntityId(uuid::Uuid::new_v4()),
            sender_id: UserId(ben.user_id),
            text: format!("message {i}\nsecond line"),
            message_type: "text".into(),
            read_by_recipient: false,
            created_at: now,
        })));
    }
    for i in 0..months {
        let month = format!("{}-{:02}", 2000 + i / 12, i % 12 + 1);
        rows.push(RowChange::Upsert(Row::Contribution(ContributionRow {
            month,
            total_required: Decimal::new(300, 2),
            shares: vec![
                ContributionShare {
                    user_id: UserId(ann.user_id),
                    amount: Decimal::new(100, 2),
                    paid_at: None,
                },
                ContributionShare {
                    user_id: UserId(ben.user_id),
                    amount: Decimal::new(200, 2),
                    paid_at: Some(now),
                },
            ],
        })));
    }
    app.state
        .store
        .replace_materialized(pid, rows)
        .await
        .expect("seed rows");
    // The other couple has rows too, which must not come along.
    app.state
        .store
        .replace_materialized(
            other,
            vec![RowChange::Upsert(Row::Expense(ExpenseRow {
                id: EntityId(uuid::Uuid::new_v4()),
                name: "Theirs".into(),
                amount: Decimal::ONE,
                category: "other".into(),
                frequency: "monthly".into(),
                added_by: UserId(cat.user_id),
                status: "active".into(),
                created_at: now,
                updated_at: now,
            }))],
        )
        .await
        .expect("seed the other couple");

    let export = app
        .get_raw("/api/export?format=json", Some(&ann.access_token))
        .await;
    assert_eq!(export.status, StatusCode::OK);
    let export = export.json();
    let ids = |key: &str, field: &str| -> Vec<String> {
        export[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}"))
            .iter()
            .map(|item| item[field].as_str().expect(field).to_string())
            .collect()
    };
    for (key, field, count) in [
        ("expenses", "id", expenses),
        ("messages", "id", messages),
        ("contributions", "month", months),
    ] {
        let keys = ids(key, field);
        assert_eq!(keys.len(), count, "{key}");
        let mut sorted = keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), count, "{key}: a row twice");
        if key == "contributions" {
            assert_eq!(keys, sorted, "months oldest first");
        }
    }
    let listed = app.list_all("/api/expenses", &ann.access_token).await;
    assert_eq!(
        by_key(export["expenses"].as_array().expect("expenses")),
        by_key(&listed)
    );

    let zip = app
        .get_raw("/api/export?format=csv", Some(&ann.access_token))
        .await;
    assert_eq!(zip.status, StatusCode::OK);
    let files = unzip(&zip.body);
    let expense_rows = parse_csv("expenses.csv", &files["expenses.csv"]);
    assert_eq!(expense_rows.len(), expenses);
    let total: Decimal = expense_rows.iter().map(|r| decimal(&r["amount"])).sum();
    let listed_total: Decimal = listed
        .iter()
        .map(|e| decimal(e["amount"].as_str().expect("amount")))
        .sum();
    assert_eq!(total, listed_total);
    assert!(!files["expenses.csv"].contains("Theirs"));
    assert_eq!(
        parse_csv("messages.csv", &files["messages.csv"]).len(),
        messages
    );
    assert_eq!(
        parse_csv("contributions.csv", &files["contributions.csv"]).len(),
        2 * months
    );
    // Tables without rows still have their header.
    let goals = &files["goals.csv"];
    assert!(goals.starts_with("id,name,target_amount,"), "{goals}");
    assert!(parse_csv("goals.csv", goals).is_empty());
}

/// The operation as clients are generated from it: its id, `format` as a required query enum,
/// the three content types and the refusals.
#[tokio::test]
async fn the_export_is_described_in_the_openapi_document() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let op = &doc["paths"]["/api/export"]["get"];
    assert_eq!(op["operationId"], "export_data", "{op}");
    assert!(op["security"].as_array().is_some_and(|s| !s.is_empty()));
    let parameters = op["parameters"].as_array().expect("parameters");
    assert_eq!(parameters.len(), 1, "{parameters:?}");
    let format = &parameters[0];
    assert_eq!(
        (&format["name"], &format["in"], &format["required"]),
        (&json!("format"), &json!("query"), &json!(true)),
        "{format}"
    );
    assert_eq!(
        format["schema"]["enum"],
        json!(["json", "csv", "automerge"])
    );
    let content: BTreeSet<&String> = op["responses"]["200"]["content"]
        .as_object()
        .expect("content")
        .keys()
        .collect();
    assert_eq!(
        content,
        [
            "application/json",
            "application/octet-stream",
            "application/zip"
        ]
        .map(String::from)
        .iter()
        .collect()
    );
    for status in ["401", "404", "422", "429"] {
        assert!(op["responses"][status].is_object(), "no {status}");
    }
    assert!(op["responses"]["429"]["headers"]["retry-after"].is_object());
}
