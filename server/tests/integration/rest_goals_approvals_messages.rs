//! Goals, approvals and messages over real HTTP, on SQLite and PostgreSQL: the approval rules,
//! concurrent contributions, message reading and paging, isolation between couples and the
//! bad-input table.

use reqwest::StatusCode;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{Backend, Session, TestApp};

on_both_backends!(
    an_added_goal_waits_for_the_partner_and_becomes_active_on_approval,
    the_requester_cannot_answer_and_a_request_is_answered_once,
    declining_an_added_goal_archives_it,
    an_edit_applies_on_approval_and_a_declined_edit_keeps_the_old_values,
    concurrent_contributions_of_both_partners_add_up,
    archiving_a_goal_stops_contributions,
    only_the_recipient_marks_a_message_read,
    messages_page_newest_first_with_stable_cursors,
    approvals_list_filters_by_status,
    another_couples_ids_are_not_found_and_nothing_changes,
    bad_input_is_refused_with_its_code_and_nothing_is_written,
    a_paused_partnership_is_read_only,
    the_openapi_document_describes_every_endpoint,
);

/// Two partners of one couple.
struct Couple {
    app: TestApp,
    ann: Session,
    ben: Session,
    partnership_id: Uuid,
}

async fn couple(backend: Backend) -> Option<Couple> {
    let app = TestApp::spawn(backend).await?;
    let (ann, ben, partnership_id) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    Some(Couple {
        app,
        ann,
        ben,
        partnership_id,
    })
}

fn id_of(body: &Value, field: &str) -> Uuid {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
        .parse()
        .expect("uuid")
}

/// Proposes a goal as `who`; returns (approval request, goal id).
async fn propose_goal(app: &TestApp, who: &Session, name: &str, target: Value) -> (Value, Uuid) {
    let (status, request) = app
        .post(
            "/api/goals",
            Some(&who.access_token),
            json!({"name": name, "target_amount": target, "goal_type": "vacation"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let goal_id = id_of(&request, "target_id");
    (request, goal_id)
}

/// Proposes a goal as `proposer` and has `approver` approve it; returns the goal id.
async fn active_goal(app: &TestApp, proposer: &Session, approver: &Session, target: &str) -> Uuid {
    let (request, goal_id) = propose_goal(app, proposer, "Trip", json!(target)).await;
    let request_id = id_of(&request, "id");
    let (status, body) = app
        .post(
            &format!("/api/approvals/{request_id}/approve"),
            Some(&approver.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    goal_id
}

/// The goal as `GET /api/goals` lists it to `who`.
async fn listed_goal(app: &TestApp, who: &Session, id: Uuid) -> Option<Value> {
    let (status, page) = app.get("/api/goals", Some(&who.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|g| g["id"] == id.to_string())
        .cloned()
}

async fn an_added_goal_waits_for_the_partner_and_becomes_active_on_approval(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let (request, goal_id) = propose_goal(&app, &ann, "Trip to Lisbon", json!("2500.00")).await;
    assert_eq!(request["request_type"], "goal_add");
    assert_eq!(request["status"], "pending");
    assert_eq!(request["requested_by"], ann.user_id.to_string());
    assert_eq!(request["request_data"]["target_amount"], "2500.00");
    assert_eq!(request["request_data"]["name"], "Trip to Lisbon");

    let goal = listed_goal(&app, &ben, goal_id).await.expect("goal listed");
    assert_eq!(goal["status"], "pending_approval");
    assert_eq!(goal["target_amount"], "2500.00");
    assert_eq!(goal["saved_amount"], "0.00");
    assert_eq!(goal["priority"], "medium");

    // Ben sees it among the pending requests (the default filter).
    let (status, pending) = app.get("/api/approvals", Some(&ben.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    assert_eq!(pending["items"].as_array().unwrap().len(), 1);
    assert_eq!(pending["items"][0]["id"], request["id"]);

    let request_id = id_of(&request, "id");
    let (status, answered) = app
        .post(
            &format!("/api/approvals/{request_id}/approve"),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["status"], "approved");
    assert_eq!(answered["responded_by"], ben.user_id.to_string());
    assert!(answered["responded_at"].is_string());

    let goal = listed_goal(&app, &ann, goal_id).await.expect("goal listed");
    assert_eq!(goal["status"], "active");
    let (_, active) = app
        .get("/api/goals?status=active", Some(&ann.access_token))
        .await;
    assert_eq!(active["items"].as_array().unwrap().len(), 1);
    let (_, pending) = app.get("/api/approvals", Some(&ben.access_token)).await;
    assert_eq!(pending["items"], json!([]));
}

async fn the_requester_cannot_answer_and_a_request_is_answered_once(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let (request, goal_id) = propose_goal(&app, &ann, "Car", json!("8000")).await;
    let request_id = id_of(&request, "id");
    for verb in ["approve", "decline"] {
        let (status, body) = app
            .post(
                &format!("/api/approvals/{request_id}/{verb}"),
                Some(&ann.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{verb}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    assert_eq!(
        listed_goal(&app, &ann, goal_id).await.unwrap()["status"],
        "pending_approval"
    );

    let approve = format!("/api/approvals/{request_id}/approve");
    let (status, _) = app.post(&approve, Some(&ben.access_token), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for verb in ["approve", "decline"] {
        let (status, body) = app
            .post(
                &format!("/api/approvals/{request_id}/{verb}"),
                Some(&ben.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{verb}: {body}");
        assert_eq!(body["error"]["code"], "already_answered");
    }
    // The second answer changed nothing.
    assert_eq!(
        listed_goal(&app, &ann, goal_id).await.unwrap()["status"],
        "active"
    );
    let (_, approved) = app
        .get("/api/approvals?status=approved", Some(&ann.access_token))
        .await;
    assert_eq!(approved["items"][0]["status"], "approved");
}

async fn declining_an_added_goal_archives_it(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let (request, goal_id) = propose_goal(&app, &ben, "Boat", json!(12000)).await;
    let request_id = id_of(&request, "id");
    let (status, answered) = app
        .post(
            &format!("/api/approvals/{request_id}/decline"),
            Some(&ann.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answered}");
    assert_eq!(answered["status"], "declined");
    let goal = listed_goal(&app, &ben, goal_id).await.unwrap();
    assert_eq!(goal["status"], "archived");
    assert_eq!(goal["target_amount"], "12000.00");
    let (_, declined) = app
        .get("/api/approvals?status=declined", Some(&ben.access_token))
        .await;
    assert_eq!(declined["items"][0]["id"], request_id.to_string());
}

async fn an_edit_applies_on_approval_and_a_declined_edit_keeps_the_old_values(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let goal_id = active_goal(&app, &ann, &ben, "1000.00").await;

    let (status, edit) = app
        .put(
            &format!("/api/goals/{goal_id}"),
            Some(&ben.access_token),
            json!({"target_amount": "1500.50", "priority": "high", "message": "Prices went up"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    assert_eq!(edit["request_type"], "goal_edit");
    assert_eq!(edit["target_id"], goal_id.to_string());
    assert_eq!(edit["message"], "Prices went up");
    assert_eq!(
        edit["request_data"],
        json!({"target_amount": "1500.50", "priority": "high"})
    );
    // Nothing changes before the answer.
    let goal = listed_goal(&app, &ann, goal_id).await.unwrap();
    assert_eq!(goal["target_amount"], "1000.00");
    assert_eq!(goal["priority"], "medium");

    let edit_id = id_of(&edit, "id");
    let (status, _) = app
        .post(
            &format!("/api/approvals/{edit_id}/approve"),
            Some(&ann.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let goal = listed_goal(&app, &ann, goal_id).await.unwrap();
    assert_eq!(goal["target_amount"], "1500.50");
    assert_eq!(goal["priority"], "high");
    assert_eq!(goal["name"], "Trip");
    assert_eq!(goal["status"], "active");

    // A declined edit leaves the values as they were.
    let (status, edit) = app
        .put(
            &format!("/api/goals/{goal_id}"),
            Some(&ann.access_token),
            json!({"name": "Two weeks away"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{edit}");
    let edit_id = id_of(&edit, "id");
    let (status, _) = app
        .post(
            &format!("/api/approvals/{edit_id}/decline"),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let goal = listed_goal(&app, &ann, goal_id).await.unwrap();
    assert_eq!(goal["name"], "Trip");
    assert_eq!(goal["target_amount"], "1500.50");
}

async fn concurrent_contributions_of_both_partners_add_up(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let goal_id = active_goal(&app, &ann, &ben, "5000").await;
    let path = format!("/api/goals/{goal_id}/contribution");
    for round in 0..3 {
        let ((s1, b1), (s2, b2)) = tokio::join!(
            app.put(&path, Some(&ann.access_token), json!({"amount": "100.25"})),
            app.put(&path, Some(&ben.access_token), json!({"amount": 49.75})),
        );
        assert_eq!(s1, StatusCode::OK, "round {round}: {b1}");
        assert_eq!(s2, StatusCode::OK, "round {round}: {b2}");
        assert_eq!(b1["id"], goal_id.to_string());
    }
    let goal = listed_goal(&app, &ann, goal_id).await.unwrap();
    assert_eq!(goal["saved_amount"], "450.00");
    // The last answer of a sequential contribution shows the new total.
    let (status, goal) = app
        .put(&path, Some(&ben.access_token), json!({"amount": "0.01"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{goal}");
    assert_eq!(goal["saved_amount"], "450.01");
}

async fn archiving_a_goal_stops_contributions(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    // A goal waiting for approval takes no contribution yet.
    let (_, pending_goal) = propose_goal(&app, &ann, "Later", json!("10")).await;
    let (status, body) = app
        .put(
            &format!("/api/goals/{pending_goal}/contribution"),
            Some(&ann.access_token),
            json!({"amount": "5"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "goal_not_active");

    let goal_id = active_goal(&app, &ann, &ben, "300").await;
    let (status, goal) = app
        .delete(
            &format!("/api/goals/{goal_id}"),
            Some(&ben.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{goal}");
    assert_eq!(goal["status"], "archived");
    // Archiving again is harmless.
    let (status, _) = app
        .delete(
            &format!("/api/goals/{goal_id}"),
            Some(&ann.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = app
        .put(
            &format!("/api/goals/{goal_id}/contribution"),
            Some(&ann.access_token),
            json!({"amount": "5"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "goal_not_active");
    let (status, body) = app
        .put(
            &format!("/api/goals/{goal_id}"),
            Some(&ann.access_token),
            json!({"name": "Revived"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "archived");
    assert_eq!(
        listed_goal(&app, &ann, goal_id).await.unwrap()["saved_amount"],
        "0.00"
    );
}

async fn only_the_recipient_marks_a_message_read(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let (status, message) = app
        .post(
            "/api/messages",
            Some(&ann.access_token),
            json!({"text": "  Rent is paid  "}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["text"], "Rent is paid");
    assert_eq!(message["sender_id"], ann.user_id.to_string());
    assert_eq!(message["message_type"], "text");
    assert_eq!(message["read_by_recipient"], false);
    let read = format!("/api/messages/{}/read", id_of(&message, "id"));

    let (status, body) = app.put(&read, Some(&ann.access_token), json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (_, page) = app.get("/api/messages", Some(&ben.access_token)).await;
    assert_eq!(page["items"][0]["read_by_recipient"], false);

    for _ in 0..2 {
        let (status, body) = app.put(&read, Some(&ben.access_token), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["read_by_recipient"], true);
    }
    let (_, page) = app.get("/api/messages", Some(&ann.access_token)).await;
    assert_eq!(page["items"][0]["read_by_recipient"], true);
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
}

fn texts(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|m| m["text"].as_str().expect("text").to_string())
        .collect()
}

async fn messages_page_newest_first_with_stable_cursors(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    for i in 1..=7 {
        let who = if i % 2 == 0 { &ben } else { &ann };
        let (status, body) = app
            .post(
                "/api/messages",
                Some(&who.access_token),
                json!({"text": format!("m{i}")}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let (status, first) = app
        .get("/api/messages?limit=3", Some(&ann.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(texts(&first), ["m7", "m6", "m5"]);
    let cursor = first["next_cursor"].as_str().expect("cursor").to_string();

    // A message arriving meanwhile neither repeats nor hides older ones.
    let (status, _) = app
        .post(
            "/api/messages",
            Some(&ben.access_token),
            json!({"text": "m8"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);

    let (_, second) = app
        .get(
            &format!("/api/messages?limit=3&cursor={cursor}"),
            Some(&ann.access_token),
        )
        .await;
    assert_eq!(texts(&second), ["m4", "m3", "m2"]);
    let cursor = second["next_cursor"].as_str().expect("cursor").to_string();
    let (_, third) = app
        .get(
            &format!("/api/messages?limit=3&cursor={cursor}"),
            Some(&ben.access_token),
        )
        .await;
    assert_eq!(texts(&third), ["m1"]);
    assert_eq!(third["next_cursor"], Value::Null);

    let (_, all) = app.get("/api/messages", Some(&ben.access_token)).await;
    assert_eq!(
        texts(&all),
        ["m8", "m7", "m6", "m5", "m4", "m3", "m2", "m1"]
    );
    assert_eq!(all["next_cursor"], Value::Null);
}

async fn approvals_list_filters_by_status(backend: Backend) {
    let Some(Couple { app, ann, ben, .. }) = couple(backend).await else {
        return;
    };
    let mut requests = Vec::new();
    for i in 0..5 {
        let (request, _) = propose_goal(&app, &ann, &format!("g{i}"), json!("10")).await;
        requests.push(id_of(&request, "id"));
    }
    // Approve the first two, decline the third.
    for (id, verb) in [
        (requests[0], "approve"),
        (requests[1], "approve"),
        (requests[2], "decline"),
    ] {
        let (status, _) = app
            .post(
                &format!("/api/approvals/{id}/{verb}"),
                Some(&ben.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, pending) = app.get("/api/approvals", Some(&ben.access_token)).await;
    assert_eq!(
        ids(&pending),
        [requests[4].to_string(), requests[3].to_string()]
    );
    let (_, approved) = app
        .get(
            "/api/approvals?status=approved&limit=1",
            Some(&ben.access_token),
        )
        .await;
    assert_eq!(ids(&approved), [requests[1].to_string()]);
    let cursor = approved["next_cursor"].as_str().expect("cursor");
    let (_, rest) = app
        .get(
            &format!("/api/approvals?status=approved&limit=1&cursor={cursor}"),
            Some(&ben.access_token),
        )
        .await;
    assert_eq!(ids(&rest), [requests[0].to_string()]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, declined) = app
        .get("/api/approvals?status=declined", Some(&ann.access_token))
        .await;
    assert_eq!(ids(&declined), [requests[2].to_string()]);
    let (_, goals) = app
        .get(
            "/api/goals?status=pending_approval",
            Some(&ann.access_token),
        )
        .await;
    assert_eq!(goals["items"].as_array().unwrap().len(), 2);
}

async fn another_couples_ids_are_not_found_and_nothing_changes(backend: Backend) {
    let Some(Couple {
        app,
        ann,
        ben,
        partnership_id,
    }) = couple(backend).await
    else {
        return;
    };
    let (cat, dan, _) = app
        .register_couple("cat@example.com", "dan@example.com")
        .await;
    // Couple A: an active goal, a pending goal with its request, a pending edit, a message.
    let active = active_goal(&app, &ann, &ben, "100").await;
    let (request, pending) = propose_goal(&app, &ann, "Pending", json!("50")).await;
    let request_id = id_of(&request, "id");
    let (_, edit) = app
        .put(
            &format!("/api/goals/{active}"),
            Some(&ben.access_token),
            json!({"name": "Edited"}),
        )
        .await;
    let edit_id = id_of(&edit, "id");
    let (_, message) = app
        .post(
            "/api/messages",
            Some(&ann.access_token),
            json!({"text": "hi"}),
        )
        .await;
    let message_id = id_of(&message, "id");
    let before = app
        .state
        .store
        .materialized_rows(partnership_id)
        .await
        .unwrap();

    for intruder in [&cat, &dan] {
        let token = Some(intruder.access_token.as_str());
        let attempts: Vec<(reqwest::Method, String, Option<Value>)> = vec![
            (
                reqwest::Method::PUT,
                format!("/api/goals/{active}"),
                Some(json!({"name": "Mine"})),
            ),
            (
                reqwest::Method::PUT,
                format!("/api/goals/{pending}"),
                Some(json!({"name": "Mine"})),
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/goals/{active}"),
                None,
            ),
            (
                reqwest::Method::DELETE,
                format!("/api/goals/{pending}"),
                None,
            ),
            (
                reqwest::Method::PUT,
                format!("/api/goals/{active}/contribution"),
                Some(json!({"amount": "10"})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/approvals/{request_id}/approve"),
                Some(json!({})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/approvals/{request_id}/decline"),
                Some(json!({})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/approvals/{edit_id}/approve"),
                Some(json!({})),
            ),
            (
                reqwest::Method::POST,
                format!("/api/approvals/{edit_id}/decline"),
                Some(json!({})),
            ),
            (
                reqwest::Method::PUT,
                format!("/api/messages/{message_id}/read"),
                Some(json!({})),
            ),
        ];
        for (method, path, body) in attempts {
            let (status, answer) = app.call(method.clone(), &path, token, body).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {answer}");
            assert_eq!(answer["error"]["code"], "not_found");
        }
        // Their lists hold nothing of couple A.
        for path in [
            "/api/goals",
            "/api/approvals",
            "/api/approvals?status=approved",
            "/api/messages",
        ] {
            let (status, page) = app.get(path, token).await;
            assert_eq!(status, StatusCode::OK, "{path}: {page}");
            assert_eq!(page["items"], json!([]), "{path}");
        }
    }

    let after = app
        .state
        .store
        .materialized_rows(partnership_id)
        .await
        .unwrap();
    assert_eq!(before, after, "couple A's rows changed");
    let goal = listed_goal(&app, &ann, active).await.unwrap();
    assert_eq!(goal["name"], "Trip");
    assert_eq!(goal["saved_amount"], "0.00");
    assert_eq!(goal["status"], "active");
    let (_, pending_requests) = app.get("/api/approvals", Some(&ann.access_token)).await;
    assert_eq!(pending_requests["items"].as_array().unwrap().len(), 2);
}

/// Sends `body` as it is (possibly not JSON) with a JSON content type.
async fn raw_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: &str,
    body: &str,
) -> (StatusCode, Value) {
    let response = app
        .client
        .request(method, app.url(path))
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

/// One row of the bad-input table: a request and the error it must get.
struct Case {
    method: reqwest::Method,
    path: String,
    body: String,
    status: StatusCode,
    code: &'static str,
    /// The field `details` must name.
    field: Option<&'static str>,
}

/// 422 `validation_failed` naming `field`.
fn invalid(method: reqwest::Method, path: &str, body: &str, field: &'static str) -> Case {
    Case {
        method,
        path: path.to_string(),
        body: body.to_string(),
        status: StatusCode::UNPROCESSABLE_ENTITY,
        code: "validation_failed",
        field: Some(field),
    }
}

/// 400 `bad_request`: not JSON, wrong JSON types, a malformed id or query.
fn bad(method: reqwest::Method, path: &str, body: &str) -> Case {
    Case {
        method,
        path: path.to_string(),
        body: body.to_string(),
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        field: None,
    }
}

/// 404 `not_found`: an id the partnership does not have.
fn not_found(method: reqwest::Method, path: &str, body: &str) -> Case {
    Case {
        method,
        path: path.to_string(),
        body: body.to_string(),
        status: StatusCode::NOT_FOUND,
        code: "not_found",
        field: None,
    }
}

async fn bad_input_is_refused_with_its_code_and_nothing_is_written(backend: Backend) {
    let Some(Couple {
        app,
        ann,
        ben,
        partnership_id,
    }) = couple(backend).await
    else {
        return;
    };
    let goal = active_goal(&app, &ann, &ben, "100").await;
    let (_, message) = app
        .post(
            "/api/messages",
            Some(&ann.access_token),
            json!({"text": "hi"}),
        )
        .await;
    let message_id = id_of(&message, "id");
    let before = app
        .state
        .store
        .materialized_rows(partnership_id)
        .await
        .unwrap();

    use reqwest::Method as M;
    let too_long = json!({ "text": "x".repeat(4001) }).to_string();
    let contribution = format!("/api/goals/{goal}/contribution");
    let edit = format!("/api/goals/{goal}");
    let unknown = Uuid::now_v7();
    let table = [
        // Messages.
        invalid(M::POST, "/api/messages", "{}", "text"),
        invalid(M::POST, "/api/messages", r#"{"text": ""}"#, "text"),
        invalid(M::POST, "/api/messages", r#"{"text": "   "}"#, "text"),
        invalid(M::POST, "/api/messages", &too_long, "text"),
        bad(M::POST, "/api/messages", r#"{"text": 5}"#),
        bad(M::POST, "/api/messages", "not json"),
        bad(M::PUT, "/api/messages/not-a-uuid/read", "{}"),
        not_found(M::PUT, &format!("/api/messages/{unknown}/read"), "{}"),
        // New goals.
        invalid(
            M::POST,
            "/api/goals",
            r#"{"target_amount": "10", "goal_type": "car"}"#,
            "name",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "", "target_amount": "10", "goal_type": "car"}"#,
            "name",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "goal_type": "car"}"#,
            "target_amount",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": "-10", "goal_type": "car"}"#,
            "target_amount",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": 0, "goal_type": "car"}"#,
            "target_amount",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": "10.001", "goal_type": "car"}"#,
            "target_amount",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": "ten", "goal_type": "car"}"#,
            "target_amount",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": "10"}"#,
            "goal_type",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": "10", "goal_type": "yacht"}"#,
            "goal_type",
        ),
        invalid(
            M::POST,
            "/api/goals",
            r#"{"name": "Car", "target_amount": "10", "goal_type": "car", "priority": "urgent"}"#,
            "priority",
        ),
        bad(M::POST, "/api/goals", r#"{"name": "Car", "target_amount""#),
        // Goal edits.
        invalid(M::PUT, &edit, "{}", "fields"),
        invalid(M::PUT, &edit, r#"{"name": "Trip"}"#, "fields"),
        invalid(M::PUT, &edit, r#"{"target_amount": "-1"}"#, "target_amount"),
        invalid(M::PUT, &edit, r#"{"goal_type": "yacht"}"#, "goal_type"),
        invalid(M::PUT, &edit, r#"{"priority": "asap"}"#, "priority"),
        bad(M::PUT, &edit, "["),
        not_found(M::PUT, &format!("/api/goals/{unknown}"), r#"{"name": "X"}"#),
        not_found(M::DELETE, &format!("/api/goals/{unknown}"), ""),
        // Contributions.
        invalid(M::PUT, &contribution, "{}", "amount"),
        invalid(M::PUT, &contribution, r#"{"amount": -5}"#, "amount"),
        invalid(M::PUT, &contribution, r#"{"amount": "-5"}"#, "amount"),
        invalid(M::PUT, &contribution, r#"{"amount": 0}"#, "amount"),
        invalid(M::PUT, &contribution, r#"{"amount": "0.00"}"#, "amount"),
        bad(M::PUT, &contribution, r#"{"amount": true}"#),
        invalid(M::PUT, &contribution, r#"{"amount": "1e2"}"#, "amount"),
        invalid(
            M::PUT,
            &contribution,
            r#"{"amount": "10000000000"}"#,
            "amount",
        ),
        bad(M::PUT, &contribution, "{amount: 5}"),
        not_found(
            M::PUT,
            &format!("/api/goals/{unknown}/contribution"),
            r#"{"amount": "1"}"#,
        ),
        // Lists.
        invalid(M::GET, "/api/approvals?status=maybe", "", "status"),
        invalid(M::GET, "/api/approvals?limit=0", "", "limit"),
        invalid(M::GET, "/api/approvals?cursor=garbage", "", "cursor"),
        invalid(M::GET, "/api/goals?status=done", "", "status"),
        invalid(M::GET, "/api/goals?limit=101", "", "limit"),
        invalid(M::GET, "/api/messages?limit=0", "", "limit"),
        // An offset cursor of another list is not a message cursor.
        invalid(M::GET, "/api/messages?cursor=bzoxMA", "", "cursor"),
        bad(M::GET, "/api/messages?limit=many", ""),
        // Approvals.
        not_found(M::POST, &format!("/api/approvals/{unknown}/approve"), "{}"),
        not_found(M::POST, &format!("/api/approvals/{unknown}/decline"), "{}"),
        bad(M::POST, "/api/approvals/42/decline", "{}"),
    ];
    for case in table {
        let (got, answer) = raw_call(
            &app,
            case.method.clone(),
            &case.path,
            &ben.access_token,
            &case.body,
        )
        .await;
        let what = format!("{} {} {}: {answer}", case.method, case.path, case.body);
        assert_eq!(got, case.status, "{what}");
        assert_eq!(answer["error"]["code"], case.code, "{what}");
        if let Some(field) = case.field {
            assert!(answer["error"]["details"][field].is_array(), "{what}");
        }
    }
    // A JSON body without its content type.
    let response = app
        .client
        .post(app.url("/api/messages"))
        .bearer_auth(&ann.access_token)
        .body(r#"{"text": "hi"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    let after = app
        .state
        .store
        .materialized_rows(partnership_id)
        .await
        .unwrap();
    assert_eq!(before, after, "a refused request wrote something");
    let (_, page) = app.get("/api/messages", Some(&ann.access_token)).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["id"], message_id.to_string());
}

async fn a_paused_partnership_is_read_only(backend: Backend) {
    let Some(Couple {
        app,
        ann,
        ben,
        partnership_id,
    }) = couple(backend).await
    else {
        return;
    };
    let goal = active_goal(&app, &ann, &ben, "100").await;
    let (request, _) = propose_goal(&app, &ann, "Later", json!("10")).await;
    let request_id = id_of(&request, "id");
    let (_, message) = app
        .post(
            "/api/messages",
            Some(&ann.access_token),
            json!({"text": "hi"}),
        )
        .await;
    let message_id = id_of(&message, "id");
    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&ben.access_token),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let before = app
        .state
        .store
        .materialized_rows(partnership_id)
        .await
        .unwrap();

    let writes: Vec<(reqwest::Method, String, Value)> = vec![
        (
            reqwest::Method::POST,
            "/api/goals".into(),
            json!({"name": "New", "target_amount": "5", "goal_type": "other"}),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/goals/{goal}"),
            json!({"name": "Renamed"}),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/goals/{goal}/contribution"),
            json!({"amount": "1"}),
        ),
        (
            reqwest::Method::POST,
            format!("/api/approvals/{request_id}/approve"),
            json!({}),
        ),
        (
            reqwest::Method::POST,
            "/api/messages".into(),
            json!({"text": "still there?"}),
        ),
        (
            reqwest::Method::PUT,
            format!("/api/messages/{message_id}/read"),
            json!({}),
        ),
    ];
    for (method, path, body) in writes {
        let (status, answer) = app
            .call(method.clone(), &path, Some(&ben.access_token), Some(body))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path}: {answer}");
        assert_eq!(answer["error"]["code"], "partnership_paused");
    }
    let (status, _) = app
        .delete(&format!("/api/goals/{goal}"), Some(&ann.access_token), None)
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Reads still work.
    for path in ["/api/goals", "/api/approvals", "/api/messages"] {
        let (status, page) = app.get(path, Some(&ann.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{path}: {page}");
        assert!(!page["items"].as_array().unwrap().is_empty(), "{path}");
    }
    let after = app
        .state
        .store
        .materialized_rows(partnership_id)
        .await
        .unwrap();
    assert_eq!(before, after);
}

async fn the_openapi_document_describes_every_endpoint(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let operations = [
        ("/api/goals", "get", "200"),
        ("/api/goals", "post", "202"),
        ("/api/goals/{id}", "put", "202"),
        ("/api/goals/{id}", "delete", "200"),
        ("/api/goals/{id}/contribution", "put", "200"),
        ("/api/approvals", "get", "200"),
        ("/api/approvals/{id}/approve", "post", "200"),
        ("/api/approvals/{id}/decline", "post", "200"),
        ("/api/messages", "get", "200"),
        ("/api/messages", "post", "201"),
        ("/api/messages/{id}/read", "put", "200"),
    ];
    for (path, method, success) in operations {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        let schema = &op["responses"][success]["content"]["application/json"]["schema"];
        assert!(schema.is_object(), "{method} {path}: no {success} schema");
        assert!(
            op["responses"]["404"].is_object(),
            "{method} {path}: 404 undocumented"
        );
        assert_eq!(op["security"][0]["bearer"], json!([]), "{method} {path}");
    }
    for (path, method) in [
        ("/api/goals", "post"),
        ("/api/goals/{id}", "put"),
        ("/api/goals/{id}/contribution", "put"),
        ("/api/messages", "post"),
    ] {
        let body = &doc["paths"][path][method]["requestBody"]["content"]["application/json"];
        assert!(
            body["schema"].is_object(),
            "{method} {path}: no request schema"
        );
    }
    let schemas = &doc["components"]["schemas"];
    for name in ["GoalView", "ApprovalView", "MessageView"] {
        assert!(
            schemas[name]["example"].is_object(),
            "{name} has no example"
        );
    }
    assert_eq!(
        schemas["NewGoalRequest"]["properties"]["target_amount"]["example"],
        "2500.00"
    );
}
