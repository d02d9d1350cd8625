//! `POST /api/import` through real HTTP, on SQLite and (with `TEST_DATABASE_URL`) PostgreSQL: a
//! furnished couple's JSON export (expenses of every status, a pending addition with its
//! request, a goal with contributions and an edit pending, a paid and an unpaid month, read and
//! unread messages, and a `history` key the importer ignores) imported into a fresh couple's
//! partnership gives the same REST views, the same split and the same CSV tables, the old
//! couple's ids mapped onto the new one's; a broken import (a bad amount deep in the file,
//! another currency, an unknown goal, a duplicate id, a third user, malformed JSON, a
//! partnership with entries, …) answers 4xx naming what is wrong and writes nothing; the body
//! limit is the import's own; the per-user limit holds.

use std::collections::BTreeMap;
use std::io::Read as _;

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::ops;
use splitsave_sync_core::schema::MonthContribution;
use splitsave_sync_core::split::Month;
use uuid::Uuid;

use crate::common::{Backend, Session, TestApp};

on_both_backends!(
    an_export_imported_into_a_fresh_partnership_gives_the_same_rows_and_split,
    a_broken_import_names_what_is_wrong_and_writes_nothing,
    the_import_has_its_own_body_limit_and_rate_limit,
);

/// An app whose export and import limits do not get in a test's way.
async fn spawn(backend: Backend) -> Option<TestApp> {
    TestApp::spawn_with(backend, |c| {
        c.export_rate_limit = 1000;
        c.import_rate_limit = 1000;
    })
    .await
}

/// `POST /api/import` with `body` as it is.
async fn import(app: &TestApp, token: &str, body: &str) -> (StatusCode, Value) {
    let response = app
        .client
        .post(app.url("/api/import"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    let status = response.status();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn export_json(app: &TestApp, token: &str) -> Value {
    let response = app.get_raw("/api/export?format=json", Some(token)).await;
    assert_eq!(response.status, StatusCode::OK);
    response.json()
}

/// Everything of a partnership the REST API shows, by section, and the split.
async fn views(app: &TestApp, token: &str) -> BTreeMap<&'static str, Value> {
    let mut approvals = Vec::new();
    for status in ["pending", "approved", "declined"] {
        approvals.extend(
            app.list_all(&format!("/api/approvals?status={status}"), token)
                .await,
        );
    }
    approvals.sort_by_key(|a| a["id"].as_str().map(str::to_string));
    let (status, split) = app
        .get("/api/expenses/split-calculation", Some(token))
        .await;
    assert_eq!(status, StatusCode::OK, "{split}");
    let export = export_json(app, token).await;
    BTreeMap::from([
        (
            "expenses",
            json!(app.list_all("/api/expenses", token).await),
        ),
        ("goals", json!(app.list_all("/api/goals", token).await)),
        (
            "messages",
            json!(app.list_all("/api/messages", token).await),
        ),
        (
            "contributions",
            json!(app.list_all("/api/contributions", token).await),
        ),
        ("approval_requests", json!(approvals)),
        ("goal_contributions", export["goal_contributions"].clone()),
        ("split", split),
    ])
}

/// The partnership's document as stored: its version and how many changes it has.
async fn stored(app: &TestApp, pid: Uuid) -> (i64, usize) {
    let doc = app
        .state
        .store
        .stored_document(pid)
        .await
        .expect("stored document");
    (doc.version, doc.changes.len())
}

/// `value` with every id of `mapping` replaced by what it maps to.
fn mapped(value: &Value, mapping: &[(Uuid, Uuid)]) -> Value {
    let mut text = value.to_string();
    for (from, to) in mapping {
        text = text.replace(&from.to_string(), &to.to_string());
    }
    serde_json::from_str(&text).expect("JSON")
}

/// The CSV files of an export's zip that hold the imported items, as text (not the profile's
/// and the partnership's, which are the importing couple's own, nor any other file such as the
/// history's, which an import does not carry over).
async fn csv_tables(app: &TestApp, token: &str) -> BTreeMap<String, String> {
    let response = app.get_raw("/api/export?format=csv", Some(token)).await;
    assert_eq!(response.status, StatusCode::OK);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(response.body)).expect("a zip");
    let mut files = BTreeMap::new();
    for i in 0..archive.len() {
        let mut file = archive.by_index(i).expect("entry");
        let name = file.name().expect("name").to_string();
        let items = [
            "expenses.csv",
            "goals.csv",
            "goal_contributions.csv",
            "contributions.csv",
            "approval_requests.csv",
            "messages.csv",
        ];
        if !items.contains(&name.as_str()) {
            continue;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).expect("UTF-8");
        files.insert(name, text);
    }
    files
}

/// Furnishes Ann and Ben (`furnish_couple`), then adds what it lacks: an expense waiting for
/// approval with its request, a message read by its recipient, and a past month nobody paid.
async fn furnished(app: &TestApp) -> (Session, Session, Uuid) {
    let (ann, ben, pid) = app
        .furnish_couple("ann@example.com", "ben@example.com")
        .await;
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Piano", "amount": "2400.00", "category": "entertainment", "frequency": "yearly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let messages = app.list_all("/api/messages", &ben.access_token).await;
    let from_ann = messages
        .iter()
        .find(|m| m["sender_id"] == json!(ann.user_id))
        .expect("a message from Ann");
    let (status, body) = app
        .put(
            &format!(
                "/api/messages/{}/read",
                from_ann["id"].as_str().expect("id")
            ),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let month = MonthContribution {
        month: Month::parse("2025-01").expect("month"),
        total_required: splitsave_sync_core::money::MinorUnits(9_000),
        amounts: BTreeMap::from([
            (
                UserId(ann.user_id),
                splitsave_sync_core::money::MinorUnits(6_000),
            ),
            (
                UserId(ben.user_id),
                splitsave_sync_core::money::MinorUnits(3_000),
            ),
        ]),
        paid: BTreeMap::from([(UserId(ann.user_id), None), (UserId(ben.user_id), None)]),
    };
    app.state
        .sync
        .apply(PartnershipId(pid), UserId(ann.user_id), move |tx| {
            ops::server_set_month(tx, &month)
        })
        .await
        .expect("a past month");
    (ann, ben, pid)
}

/// A fresh couple with Ann's and Ben's incomes, so the split can be compared.
async fn fresh_couple(app: &TestApp, inviter: &str, invitee: &str) -> (Session, Session, Uuid) {
    let (a, b, pid) = app.register_couple(inviter, invitee).await;
    for (s, income) in [(&a, "3000.00"), (&b, "1500.00")] {
        let (status, body) = app
            .put(
                "/api/users/update-income",
                Some(&s.access_token),
                json!({"income": income}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    (a, b, pid)
}

async fn an_export_imported_into_a_fresh_partnership_gives_the_same_rows_and_split(
    backend: Backend,
) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = furnished(&app).await;
    let (cat, dan, cat_pid) = fresh_couple(&app, "cat@example.com", "dan@example.com").await;
    let mut file = export_json(&app, &ann.access_token).await;
    // What the export will hold next: the importer takes no notice of it.
    file["history"] = json!([{"who": ann.user_id, "what": "anything"}]);
    let before = stored(&app, cat_pid).await;

    let (status, summary) = import(&app, &cat.access_token, &file.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{summary}");
    assert_eq!(
        summary["imported"],
        json!({"expenses": 5, "goals": 1, "goal_contributions": 2, "contributions": 2,
               "approval_requests": 5, "messages": 2})
    );
    let mut users: Vec<(String, String)> = summary["users"]
        .as_array()
        .expect("users")
        .iter()
        .map(|u| (u["from"].to_string(), u["to"].to_string()))
        .collect();
    users.sort();
    let mut expected = vec![
        (
            json!(ann.user_id).to_string(),
            json!(cat.user_id).to_string(),
        ),
        (
            json!(ben.user_id).to_string(),
            json!(dan.user_id).to_string(),
        ),
    ];
    expected.sort();
    assert_eq!(users, expected);
    // One commit, with one change.
    let after = stored(&app, cat_pid).await;
    assert_eq!(after.0, before.0 + 1, "one commit");

    // Every view, the split included, is the original's with Ann as Cat and Ben as Dan.
    let mapping = [(ann.user_id, cat.user_id), (ben.user_id, dan.user_id)];
    let original = views(&app, &ann.access_token).await;
    let imported = views(&app, &cat.access_token).await;
    for (section, items) in &original {
        assert_eq!(
            imported[section],
            mapped(items, &mapping),
            "{section} differ after the import"
        );
    }
    // Both partners see it, and the CSV export's tables match too.
    assert_eq!(views(&app, &dan.access_token).await, imported);
    let original_csv = csv_tables(&app, &ann.access_token).await;
    let imported_csv = csv_tables(&app, &cat.access_token).await;
    assert_eq!(original_csv.len(), 6);
    for (name, text) in &original_csv {
        let mut text = text.clone();
        for (from, to) in &mapping {
            text = text.replace(&from.to_string(), &to.to_string());
        }
        assert_eq!(imported_csv[name], text, "{name}");
    }

    // The imported items behave like any: Dan approves the piano Ann (now Cat) asked for.
    let pending = app
        .list_all("/api/approvals?status=pending", &dan.access_token)
        .await;
    let piano = pending
        .iter()
        .find(|a| a["request_data"]["name"] == "Piano")
        .expect("the piano's request");
    let (status, body) = app
        .post(
            &format!(
                "/api/approvals/{}/approve",
                piano["id"].as_str().expect("id")
            ),
            Some(&dan.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Now the partnership has entries: a second import is refused, and changes nothing.
    let before = (
        stored(&app, cat_pid).await,
        views(&app, &cat.access_token).await,
    );
    let (status, body) = import(&app, &cat.access_token, &file.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "partnership_not_empty");
    let after = (
        stored(&app, cat_pid).await,
        views(&app, &cat.access_token).await,
    );
    assert_eq!(after, before);
}

async fn a_broken_import_names_what_is_wrong_and_writes_nothing(backend: Backend) {
    let Some(app) = spawn(backend).await else {
        return;
    };
    let (ann, _ben, ann_pid) = furnished(&app).await;
    let (eve, _fay, pid) = fresh_couple(&app, "eve@example.com", "fay@example.com").await;
    let file = export_json(&app, &ann.access_token).await;
    let token = eve.access_token.as_str();
    let before = (stored(&app, pid).await, views(&app, token).await);
    let last = file["expenses"].as_array().expect("expenses").len() - 1;
    let edited = |edit: &dyn Fn(&mut Value)| {
        let mut f = file.clone();
        edit(&mut f);
        f.to_string()
    };
    let stranger = Uuid::now_v7();

    // (body, status, the error code, the path the details name)
    let cases: Vec<(String, StatusCode, &str, Option<String>)> = vec![
        (
            edited(&|f| f["expenses"][last]["amount"] = json!("12.345")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some(format!("expenses[{last}].amount")),
        ),
        (
            edited(&|f| f["partnership"]["currency"] = json!("EUR")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("partnership.currency".into()),
        ),
        (
            edited(&|f| f["goal_contributions"][1]["goal_id"] = json!(Uuid::now_v7())),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("goal_contributions[1].goal_id".into()),
        ),
        (
            edited(&|f| f["messages"][1]["id"] = f["messages"][0]["id"].clone()),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("messages[1].id".into()),
        ),
        (
            edited(&|f| f["messages"][0]["sender_id"] = json!(stranger)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("messages[0].sender_id".into()),
        ),
        (
            edited(&|f| f["approval_requests"][0]["status"] = json!("maybe")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("approval_requests[0].status".into()),
        ),
        (
            edited(&|f| f["goals"][0]["target_amount"] = json!(2500)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("goals[0].target_amount".into()),
        ),
        (
            edited(&|f| f["format_version"] = json!(2)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("format_version".into()),
        ),
        (
            truncated(&file.to_string()),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
    ];
    for (body, status, code, path) in cases {
        let (got, answer) = import(&app, token, &body).await;
        assert_eq!(got, status, "{path:?}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{answer}");
        if let Some(path) = &path {
            assert!(
                answer["error"]["details"][path.as_str()].is_array(),
                "{path} not named: {answer}"
            );
        }
        if path.as_deref() == Some("messages[0].sender_id") {
            assert!(
                answer.to_string().contains(&stranger.to_string()),
                "{answer}"
            );
        }
    }

    // Not JSON by its content type.
    let response = app
        .client
        .post(app.url("/api/import"))
        .bearer_auth(token)
        .header("content-type", "text/plain")
        .body(file.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Nothing of all that reached the partnership.
    let after = (stored(&app, pid).await, views(&app, token).await);
    assert_eq!(after, before);

    // Into a partnership with entries (Ann's own): 409, nothing written.
    let ann_before = stored(&app, ann_pid).await;
    let (status, body) = import(&app, &ann.access_token, &file.to_string()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "partnership_not_empty");
    assert_eq!(stored(&app, ann_pid).await, ann_before);

    // Without a partnership: the 404 of every partnership route.
    let gus = app.register("gus@example.com", "Gus").await;
    let (status, body) = import(&app, &gus.access_token, &file.to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, expenses) = app.get("/api/expenses", Some(&gus.access_token)).await;
    assert_eq!(body["error"]["code"], expenses["error"]["code"]);
}

/// The first half of `text` (cut where a character starts).
fn truncated(text: &str) -> String {
    let cut = (0..=text.len() / 2)
        .rev()
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(0);
    text[..cut].to_string()
}

/// A small valid file of `messages` messages by the exporter.
fn file_of_messages(exporter: Uuid, partner: Uuid, messages: usize) -> String {
    let at = "2026-01-02T03:04:05.678Z";
    let items: Vec<Value> = (0..messages)
        .map(|i| {
            json!({"id": Uuid::now_v7(), "sender_id": exporter,
                   "text": format!("message {i}: {}", "x".repeat(150)),
                   "message_type": "text", "read_by_recipient": false, "created_at": at})
        })
        .collect();
    json!({
        "format_version": 1, "exported_at": at,
        "profile": {"id": exporter}, "partnership": {"currency": "USD", "partner": {"id": partner}},
        "expenses": [], "goals": [], "goal_contributions": [], "contributions": [],
        "approval_requests": [], "messages": items,
    })
    .to_string()
}

async fn the_import_has_its_own_body_limit_and_rate_limit(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| {
        c.import_body_limit_bytes = 1024 * 1024;
        c.import_rate_limit = 3;
    })
    .await
    else {
        return;
    };
    let (a, b, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (old_a, old_b) = (Uuid::now_v7(), Uuid::now_v7());

    // Over the import's limit: 413 in the API's shape.
    let huge = file_of_messages(old_a, old_b, 6_000);
    assert!(huge.len() > 1024 * 1024);
    let (status, body) = import(&app, &a.access_token, &huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");

    // Over the API's 256 KiB, under the import's: taken.
    let large = file_of_messages(old_a, old_b, 2_000);
    assert!(large.len() > app.state.config.body_limit_bytes);
    let (status, body) = import(&app, &a.access_token, &large).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["imported"]["messages"], 2_000);
    let listed = app.list_all("/api/messages", &b.access_token).await;
    assert_eq!(listed.len(), 2_000);
    assert!(listed.iter().all(|m| m["sender_id"] == json!(a.user_id)));

    // Every attempt the handler sees counts (the 413 above never reached it): the third of
    // the hour is the last.
    for _ in 0..2 {
        let (status, body) = import(&app, &a.access_token, &large).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
    }
    let (status, body) = import(&app, &a.access_token, &large).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited");
}
