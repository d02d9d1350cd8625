//! Isolation between couples through real HTTP: every partnership-scoped endpoint of the OpenAPI
//! document (so a new endpoint cannot be left out), called with another couple's token and every
//! id of couple A, answers 404 exactly like an id that never existed (never 403, never A's data),
//! lists and the event stream show nothing of A, and A's materialized rows are unchanged. Runs on
//! SQLite and, when `TEST_DATABASE_URL` is set, on PostgreSQL.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::common::{Backend, TestApp};

on_both_backends!(another_couples_token_finds_nothing_of_couple_a);

/// The path prefixes of everything a partnership owns.
const SCOPED: [&str; 6] = [
    "/api/expenses",
    "/api/goals",
    "/api/approvals",
    "/api/messages",
    "/api/contributions",
    "/api/events",
];

/// A valid body for each write, so that a 404 can only mean "not yours". A new write endpoint
/// fails the test until it is given one here.
fn probe_body(method: &Method, template: &str) -> Option<Value> {
    let body = match (method.as_str(), template) {
        ("GET" | "DELETE", _) => return None,
        ("POST", "/api/approvals/{id}/approve" | "/api/approvals/{id}/decline") => return None,
        ("PUT", "/api/messages/{id}/read") => return None,
        ("POST", "/api/contributions/mark-paid") => return None,
        ("POST", "/api/expenses") => {
            json!({"name": "Probe", "amount": "5.00", "category": "other", "frequency": "monthly"})
        }
        ("PUT", "/api/expenses/{id}") => json!({"amount": "6.00", "message": "probe"}),
        ("POST", "/api/goals") => {
            json!({"name": "Probe", "target_amount": "100.00", "goal_type": "other", "priority": "low"})
        }
        ("PUT", "/api/goals/{id}") => json!({"name": "Renamed"}),
        ("PUT", "/api/goals/{id}/contribution") => json!({"amount": "1.00"}),
        ("POST", "/api/messages") => json!({"text": "probe"}),
        _ => panic!("no probe body for {method} {template}: add a valid one to probe_body"),
    };
    Some(body)
}

/// `template` with every `{param}` replaced by `id`.
fn fill(template: &str, id: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').expect("closing brace") + start;
        out.push_str(&rest[..start]);
        out.push_str(id);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The partnership-scoped operations of the served OpenAPI document.
async fn scoped_operations(app: &TestApp) -> Vec<(Method, String)> {
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        if !SCOPED.iter().any(|p| path.starts_with(p)) {
            continue;
        }
        for (method, _) in item.as_object().expect("path item") {
            let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes());
            if let Ok(m) = method {
                if [
                    Method::GET,
                    Method::POST,
                    Method::PUT,
                    Method::DELETE,
                    Method::PATCH,
                ]
                .contains(&m)
                {
                    ops.push((m, path.clone()));
                }
            }
        }
    }
    ops
}

fn id_of(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
        .to_string()
}

/// A's rows in a stable order.
async fn rows_of(app: &TestApp, pid: Uuid) -> Vec<String> {
    let mut rows: Vec<String> = app
        .state
        .store
        .materialized_rows(pid)
        .await
        .expect("rows")
        .iter()
        .map(|r| format!("{r:?}"))
        .collect();
    rows.sort();
    rows
}

fn assert_reveals_nothing(what: &str, body: &Value, secrets: &BTreeSet<String>) {
    let text = body.to_string();
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what} reveals {s}: {text}");
    }
}

async fn another_couples_token_finds_nothing_of_couple_a(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid_a) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (cat, _dan, _pid_b) = app
        .register_couple("cat@example.com", "dan@example.com")
        .await;
    let a = Some(ann.access_token.as_str());
    let b = Some(ben.access_token.as_str());
    let c = Some(cat.access_token.as_str());

    // Couple A's data, of every kind, through the API.
    let (status, small) = app
        .post(
            "/api/expenses",
            a,
            json!({"name": "Groceries", "amount": "42.50", "category": "groceries", "frequency": "weekly"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{small}");
    let (status, big) = app
        .post(
            "/api/expenses",
            a,
            json!({"name": "Sofa", "amount": "150.00", "category": "other", "frequency": "yearly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{big}");
    let (status, goal) = app
        .post(
            "/api/goals",
            a,
            json!({"name": "Trip", "target_amount": "2000.00", "goal_type": "vacation", "priority": "high"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{goal}");
    let goal_id = id_of(&goal, "target_id");
    let (status, body) = app
        .post(
            &format!("/api/approvals/{}/approve", id_of(&goal, "id")),
            b,
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .put(
            &format!("/api/goals/{goal_id}/contribution"),
            a,
            json!({"amount": "10.00"}),
        )
        .await;
    assert!(status.is_success(), "{status} {body}");
    let (status, edit) = app
        .put(
            &format!("/api/expenses/{}", id_of(&small, "id")),
            a,
            json!({"amount": "43.00"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let (status, message) = app
        .post("/api/messages", a, json!({"text": "dinner at 8?"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    let (status, month) = app.get("/api/contributions/current", a).await;
    assert_eq!(status, StatusCode::OK, "{month}");

    let ids: BTreeSet<String> = [
        id_of(&small, "id"),
        id_of(&big, "id"),
        id_of(&big, "target_id"),
        id_of(&goal, "id"),
        goal_id.clone(),
        id_of(&edit, "id"),
        id_of(&message, "id"),
        pid_a.to_string(),
        ann.user_id.to_string(),
        ben.user_id.to_string(),
    ]
    .into_iter()
    .collect();
    let mut secrets = ids.clone();
    secrets.extend(["Groceries", "Sofa", "Trip", "dinner at 8?"].map(String::from));
    let before = rows_of(&app, pid_a).await;

    let ops = scoped_operations(&app).await;
    let templates: BTreeSet<&str> = ops.iter().map(|(_, p)| p.as_str()).collect();
    for prefix in SCOPED {
        assert!(
            templates.iter().any(|t| t.starts_with(prefix)),
            "the OpenAPI document lists nothing under {prefix}: {templates:?}"
        );
    }

    let mut probes = 0;
    for (method, template) in &ops {
        let body = probe_body(method, template);
        if template.contains('{') {
            // What an id that never existed answers: A's ids must be indistinguishable from it.
            let never = fill(template, &Uuid::now_v7().to_string());
            let (status, expected) = app.call(method.clone(), &never, c, body.clone()).await;
            assert_eq!(
                status,
                StatusCode::NOT_FOUND,
                "{method} {never}: {expected}"
            );
            assert_eq!(expected["error"]["code"], "not_found", "{expected}");
            if *method == Method::GET {
                // The owner reads one of these ids: a 404 below means "not yours", not "no route".
                let mut found = false;
                for id in &ids {
                    found |= app.get(&fill(template, id), a).await.0 == StatusCode::OK;
                }
                assert!(
                    found,
                    "couple A reads none of its ids through GET {template}"
                );
            }
            for id in &ids {
                let path = fill(template, id);
                let (status, answer) = app.call(method.clone(), &path, c, body.clone()).await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
                assert_eq!(
                    answer, expected,
                    "{method} {path} differs from a missing id"
                );
                probes += 1;
            }
        } else if template == "/api/events" {
            continue;
        } else {
            let (status, answer) = app.call(method.clone(), template, c, body).await;
            assert!(
                status.is_success(),
                "{method} {template}: {status} {answer}"
            );
            assert_reveals_nothing(&format!("{method} {template}"), &answer, &secrets);
            probes += 1;
        }
    }
    assert!(
        probes >= 60,
        "only {probes} probes: is the OpenAPI document complete?"
    );

    // Nothing of A changed.
    assert_eq!(rows_of(&app, pid_a).await, before);
    for (path, field) in [("/api/expenses", "items"), ("/api/goals", "items")] {
        let (status, list) = app.get(path, a).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let names: Vec<&str> = list[field]
            .as_array()
            .map(|items| items.iter().filter_map(|i| i["name"].as_str()).collect())
            .unwrap_or_default();
        assert!(
            !names.contains(&"Probe") && !names.contains(&"Renamed"),
            "{list}"
        );
    }

    // The event stream: Cat hears her own couple's write, never A's.
    let url = format!(
        "{}/api/events?token={}",
        app.base_url.replacen("http://", "ws://", 1),
        cat.access_token
    );
    let (mut stream, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("event stream");
    let (status, _) = app
        .post("/api/messages", a, json!({"text": "for Ben only"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, mine) = app
        .post("/api/messages", c, json!({"text": "hi Dan"}))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let deadline = Instant::now() + Duration::from_secs(20);
    let frame: Value = loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("an event")
            .expect("open")
            .expect("frame");
        if let Message::Text(text) = next {
            break serde_json::from_str(&text).expect("json");
        }
    };
    assert_eq!(frame["event"], "message:new", "{frame}");
    assert_eq!(frame["data"]["id"], mine["id"], "{frame}");
    assert_reveals_nothing("the event stream", &frame, &secrets);
}
