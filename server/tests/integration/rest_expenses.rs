//! Expenses, the split and monthly contributions over real HTTP, on SQLite and PostgreSQL:
//! the approval policy as REST applies it, exact shares, the current month, idempotent
//! mark-paid, isolation between couples and the bad-input table.

use automerge::transaction::Transaction;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use splitsave_server::routes::server_doc;
use splitsave_server::sync::SyncError;
use splitsave_sync_core::enums::PartnershipStatus;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::ops;
use splitsave_sync_core::read;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::time::Millis;
use uuid::Uuid;

use crate::common::{Backend, Session, TestApp};

on_both_backends!(
    small_expense_is_added_directly,
    over_threshold_expense_needs_the_partners_approval,
    edit_is_applied_only_when_the_partner_approves,
    declined_edit_keeps_the_old_values,
    split_follows_the_incomes_exactly,
    current_month_is_created_from_the_split_and_mark_paid_is_idempotent,
    another_couples_expense_is_not_found_and_stays_unchanged,
    bad_input_is_refused_and_nothing_is_written,
    pausing_reaches_the_document_and_blocks_writes,
    list_filters_and_pages,
    concurrent_adds_are_each_committed_and_counted_by_the_split,
);

struct Couple {
    app: TestApp,
    ann: Session,
    ben: Session,
    pid: Uuid,
}

async fn couple(backend: Backend) -> Option<Couple> {
    let app = TestApp::spawn(backend).await?;
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    Some(Couple { app, ann, ben, pid })
}

fn expense(name: &str, amount: Value) -> Value {
    json!({"name": name, "amount": amount, "category": "housing", "frequency": "monthly"})
}

async fn add(c: &Couple, who: &Session, body: Value) -> (StatusCode, Value) {
    c.app
        .post("/api/expenses", Some(&who.access_token), body)
        .await
}

/// Whether the approvals API is served (it is in the OpenAPI document).
async fn approvals_api(app: &TestApp) -> bool {
    let (_, doc) = app.get("/api/openapi.json", None).await;
    doc["paths"]["/api/approvals/{id}/approve"].is_object()
}

/// Answers a request as `who`: through the approvals API when it is served, otherwise as the
/// same operation through the document actor. Returns the HTTP status the API gives (or the one
/// the operation's error maps to).
async fn answer(c: &Couple, who: &Session, request_id: &str, approve: bool) -> StatusCode {
    let verb = if approve { "approve" } else { "decline" };
    if approvals_api(&c.app).await {
        let (status, body) = c
            .app
            .post(
                &format!("/api/approvals/{request_id}/{verb}"),
                Some(&who.access_token),
                json!({}),
            )
            .await;
        assert!(status.is_success() || status.is_client_error(), "{body}");
        return status;
    }
    let user = UserId(who.user_id);
    let id = EntityId(request_id.parse().expect("request id"));
    let result = c
        .app
        .state
        .sync
        .apply(
            PartnershipId(c.pid),
            user,
            move |tx: &mut Transaction<'_>| {
                let ctx = ops::Ctx {
                    user,
                    now: Millis::now(),
                };
                if approve {
                    ops::approve(tx, &ctx, id)
                } else {
                    ops::decline(tx, &ctx, id)
                }
            },
        )
        .await;
    match result {
        Ok(_) => StatusCode::OK,
        Err(SyncError::Op(ops::OpError::Forbidden(_))) => StatusCode::FORBIDDEN,
        Err(SyncError::Op(ops::OpError::Conflict(_))) => StatusCode::CONFLICT,
        Err(other) => panic!("answer failed: {other}"),
    }
}

async fn get_expense(c: &Couple, who: &Session, id: &str) -> (StatusCode, Value) {
    c.app
        .get(&format!("/api/expenses/{id}"), Some(&who.access_token))
        .await
}

async fn split(c: &Couple, who: &Session) -> Value {
    let (status, body) = c
        .app
        .get("/api/expenses/split-calculation", Some(&who.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

async fn set_income(c: &Couple, who: &Session, income: &str) {
    let (status, body) = c
        .app
        .put(
            "/api/users/update-income",
            Some(&who.access_token),
            json!({"income": income}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn expense_count(c: &Couple) -> usize {
    let (status, body) = c
        .app
        .get("/api/expenses?limit=100", Some(&c.ann.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["items"].as_array().expect("items").len()
}

/// The number of approval requests in the document.
async fn approvals_in_document(c: &Couple) -> usize {
    server_doc::run(&c.app.state, c.pid, c.ann.user_id, |tx| {
        Ok(read::collection_keys(tx, splitsave_sync_core::schema::Collection::Approvals).len())
    })
    .await
    .expect("read the document")
}

async fn small_expense_is_added_directly(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (status, created) = add(&c, &c.ann, expense("Internet", json!("12.50"))).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["status"], "active");
    assert_eq!(created["amount"], "12.50");
    assert_eq!(created["added_by"], c.ann.user_id.to_string());
    let id = created["id"].as_str().expect("id");

    // The partner sees it on the REST reads at once.
    let (status, seen) = get_expense(&c, &c.ben, id).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    assert_eq!(seen, created);
    let (_, list) = c.app.get("/api/expenses", Some(&c.ben.access_token)).await;
    assert_eq!(list["items"][0], created);
    assert_eq!(list["next_cursor"], Value::Null);

    // A JSON number is read exactly; the threshold itself needs no approval.
    let (status, at_threshold) = add(&c, &c.ben, expense("Rent", json!(100))).await;
    assert_eq!(status, StatusCode::CREATED, "{at_threshold}");
    assert_eq!(at_threshold["amount"], "100.00");
    assert_eq!(split(&c, &c.ann).await["monthly_total"], "112.50");

    // Archiving answers the archived expense, again the same, and it leaves the split.
    for _ in 0..2 {
        let (status, archived) = c
            .app
            .delete(
                &format!("/api/expenses/{id}"),
                Some(&c.ben.access_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{archived}");
        assert_eq!(archived["status"], "archived");
        assert_eq!(archived["name"], "Internet");
    }
    assert_eq!(split(&c, &c.ann).await["monthly_total"], "100.00");
}

async fn over_threshold_expense_needs_the_partners_approval(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (status, request) = add(&c, &c.ann, expense("Sofa", json!("100.01"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    assert_eq!(request["request_type"], "expense_add");
    assert_eq!(request["status"], "pending");
    assert_eq!(request["requested_by"], c.ann.user_id.to_string());
    assert_eq!(request["request_data"]["amount"], "100.01");
    let expense_id = request["target_id"].as_str().expect("target").to_string();
    let request_id = request["id"].as_str().expect("id").to_string();

    let (_, pending) = get_expense(&c, &c.ben, &expense_id).await;
    assert_eq!(pending["status"], "pending_approval");
    assert_eq!(split(&c, &c.ann).await["monthly_total"], "0.00");

    // The partner who asked cannot answer their own request.
    assert_eq!(
        answer(&c, &c.ann, &request_id, true).await,
        StatusCode::FORBIDDEN
    );
    let (_, still) = get_expense(&c, &c.ann, &expense_id).await;
    assert_eq!(still["status"], "pending_approval");

    assert_eq!(answer(&c, &c.ben, &request_id, true).await, StatusCode::OK);
    let (_, active) = get_expense(&c, &c.ann, &expense_id).await;
    assert_eq!(active["status"], "active");
    let s = split(&c, &c.ben).await;
    assert_eq!(s["monthly_total"], "100.01");
    assert_eq!(s["active_expenses"], 1);
    // Approving twice is a conflict.
    assert_eq!(
        answer(&c, &c.ben, &request_id, true).await,
        StatusCode::CONFLICT
    );
}

async fn propose_edit(c: &Couple, id: &str, body: Value) -> (StatusCode, Value) {
    c.app
        .put(
            &format!("/api/expenses/{id}"),
            Some(&c.ann.access_token),
            body,
        )
        .await
}

async fn edit_is_applied_only_when_the_partner_approves(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (_, created) = add(&c, &c.ann, expense("Gym", json!("30.00"))).await;
    let id = created["id"].as_str().expect("id").to_string();

    let (status, request) = propose_edit(
        &c,
        &id,
        json!({"amount": "35.00", "frequency": "monthly", "message": "price rise"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    assert_eq!(request["request_type"], "expense_edit");
    assert_eq!(request["target_id"], id.as_str());
    assert_eq!(request["message"], "price rise");
    // Only what changes is proposed.
    assert_eq!(request["request_data"]["amount"], "35.00");
    assert!(request["request_data"]
        .get("frequency")
        .is_none_or(Value::is_null));

    let (_, before) = get_expense(&c, &c.ann, &id).await;
    assert_eq!(before["amount"], "30.00");

    let request_id = request["id"].as_str().expect("id");
    assert_eq!(answer(&c, &c.ben, request_id, true).await, StatusCode::OK);
    let (_, after) = get_expense(&c, &c.ann, &id).await;
    assert_eq!(after["amount"], "35.00");
    assert_eq!(after["name"], "Gym");
    assert_eq!(split(&c, &c.ben).await["monthly_total"], "35.00");

    // Nothing to change: 422 on `fields`, and no request is filed.
    let requests = approvals_in_document(&c).await;
    let (status, body) = propose_edit(&c, &id, json!({"amount": "35"})).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["fields"].is_array(), "{body}");
    assert_eq!(approvals_in_document(&c).await, requests);
}

async fn declined_edit_keeps_the_old_values(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (_, created) = add(&c, &c.ann, expense("Phone", json!("20.00"))).await;
    let id = created["id"].as_str().expect("id").to_string();
    let (status, request) = propose_edit(
        &c,
        &id,
        json!({"name": "Phones", "amount": "40.00", "category": "utilities"}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{request}");
    let request_id = request["id"].as_str().expect("id");
    assert_eq!(answer(&c, &c.ben, request_id, false).await, StatusCode::OK);
    let (_, after) = get_expense(&c, &c.ann, &id).await;
    assert_eq!(after["name"], "Phone");
    assert_eq!(after["amount"], "20.00");
    assert_eq!(after["category"], "housing");
    assert_eq!(after["status"], "active");
}

async fn split_follows_the_incomes_exactly(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (status, _) = add(&c, &c.ann, expense("Rent", json!("100.00"))).await;
    assert_eq!(status, StatusCode::CREATED);

    // No incomes yet: equal halves.
    let s = split(&c, &c.ben).await;
    assert_eq!(s["basis"], "equal");
    assert_eq!(s["partners"][0]["share"], "50.00");
    assert_eq!(s["partners"][1]["share"], "50.00");

    // Incomes 1:2 reach the document's members and the split.
    set_income(&c, &c.ann, "1000.00").await;
    set_income(&c, &c.ben, "2000").await;
    let s = split(&c, &c.ben).await;
    assert_eq!(s["currency"], "USD");
    assert_eq!(s["basis"], "income");
    assert_eq!(s["monthly_total"], "100.00");
    assert_eq!(
        s["totals"],
        json!({"weekly": "0.00", "monthly": "100.00", "yearly": "0.00"})
    );
    let ann = &s["partners"][0];
    let ben = &s["partners"][1];
    assert_eq!(ann["user_id"], c.ann.user_id.to_string());
    assert_eq!(ann["name"], "Ann");
    assert_eq!(ann["slot"], 1);
    assert_eq!(ann["income"], "1000.00");
    assert_eq!(ann["share"], "33.33");
    assert_eq!(ann["ratio"], 33);
    assert_eq!(ben["user_id"], c.ben.user_id.to_string());
    assert_eq!(ben["name"], "Ben");
    assert_eq!(ben["income"], "2000.00");
    assert_eq!(ben["share"], "66.67");
    assert_eq!(ben["ratio"], 67);

    // Weekly and yearly amounts are normalised to a month.
    let weekly = json!({"name": "Groceries", "amount": "12.00", "category": "groceries", "frequency": "weekly"});
    let yearly = json!({"name": "Insurance", "amount": "60.00", "category": "insurance", "frequency": "yearly"});
    assert_eq!(add(&c, &c.ann, weekly).await.0, StatusCode::CREATED);
    assert_eq!(add(&c, &c.ann, yearly).await.0, StatusCode::CREATED);
    let s = split(&c, &c.ann).await;
    // 100 + 12 × 52 / 12 + 60 / 12 = 157.00
    assert_eq!(s["monthly_total"], "157.00");
    assert_eq!(s["totals"]["weekly"], "12.00");
    assert_eq!(s["totals"]["yearly"], "60.00");
    assert_eq!(s["partners"][0]["share"], "52.33");
    assert_eq!(s["partners"][1]["share"], "104.67");

    // An income in another currency than the partnership's is left out: equal halves.
    let (status, body) = c
        .app
        .put(
            "/api/users/profile",
            Some(&c.ben.access_token),
            json!({"currency": "EUR", "name": "Benjamin"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let s = split(&c, &c.ann).await;
    assert_eq!(s["basis"], "equal");
    assert_eq!(s["partners"][1]["name"], "Benjamin");
    assert_eq!(s["partners"][1]["income"], Value::Null);
    assert_eq!(s["partners"][1]["share"], "78.50");
}

async fn current_month_is_created_from_the_split_and_mark_paid_is_idempotent(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    set_income(&c, &c.ann, "1000").await;
    set_income(&c, &c.ben, "2000").await;
    add(&c, &c.ann, expense("Rent", json!("100.00"))).await;
    let month = Month::from_unix_millis(Millis::now().0).to_string();

    let (_, history) = c
        .app
        .get("/api/contributions", Some(&c.ann.access_token))
        .await;
    assert_eq!(history["items"], json!([]));

    let (status, current) = c
        .app
        .get("/api/contributions/current", Some(&c.ben.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{current}");
    assert_eq!(current["month"], month.as_str());
    assert_eq!(current["total_required"], "100.00");
    let share_of = |body: &Value, who: &Session| -> Value {
        body["shares"]
            .as_array()
            .expect("shares")
            .iter()
            .find(|s| s["user_id"] == who.user_id.to_string())
            .cloned()
            .expect("share")
    };
    assert_eq!(share_of(&current, &c.ann)["amount"], "33.33");
    assert_eq!(share_of(&current, &c.ben)["amount"], "66.67");
    assert_eq!(share_of(&current, &c.ann)["paid"], false);

    // The month is in the document, where synced apps get it.
    let m = month.clone();
    let in_doc = server_doc::run(&c.app.state, c.pid, c.ann.user_id, move |tx| {
        Ok(read::read_month(tx, &m)?)
    })
    .await
    .expect("read the document")
    .expect("month in the document");
    assert_eq!(in_doc.total_required.0, 10_000);
    assert_eq!(in_doc.amounts[&UserId(c.ann.user_id)].0, 3_333);

    // Reading the split or the month again writes nothing into the document.
    let changes = c
        .app
        .state
        .store
        .document_change_count(c.pid)
        .await
        .expect("count");
    split(&c, &c.ann).await;
    let (_, again) = c
        .app
        .get("/api/contributions/current", Some(&c.ann.access_token))
        .await;
    assert_eq!(again, current);
    assert_eq!(
        c.app
            .state
            .store
            .document_change_count(c.pid)
            .await
            .expect("count"),
        changes
    );

    // Before anyone has paid, the month follows the split.
    add(&c, &c.ann, expense("Power", json!("50.00"))).await;
    let (_, current) = c
        .app
        .get("/api/contributions/current", Some(&c.ben.access_token))
        .await;
    assert_eq!(current["total_required"], "150.00");
    assert_eq!(share_of(&current, &c.ann)["amount"], "50.00");
    assert_eq!(share_of(&current, &c.ben)["amount"], "100.00");

    let (status, first) = c
        .app
        .post(
            "/api/contributions/mark-paid",
            Some(&c.ann.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let paid_at = share_of(&first, &c.ann)["paid_at"].clone();
    assert!(paid_at.is_string(), "{first}");
    assert_eq!(share_of(&first, &c.ann)["paid"], true);
    assert_eq!(share_of(&first, &c.ben)["paid"], false);

    let (status, second) = c
        .app
        .post(
            "/api/contributions/mark-paid",
            Some(&c.ann.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second, first);

    // Once a share is paid the month is fixed: a new expense does not change it.
    add(&c, &c.ben, expense("Water", json!("30.00"))).await;
    let (_, current) = c
        .app
        .get("/api/contributions/current", Some(&c.ann.access_token))
        .await;
    assert_eq!(current, first);
    let (_, history) = c
        .app
        .get("/api/contributions", Some(&c.ben.access_token))
        .await;
    assert_eq!(history["items"], json!([first]));
}

async fn another_couples_expense_is_not_found_and_stays_unchanged(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (carl, dana, _) = c
        .app
        .register_couple("carl@example.com", "dana@example.com")
        .await;
    let (_, created) = add(&c, &c.ann, expense("Rent", json!("90.00"))).await;
    let id = created["id"].as_str().expect("id");
    let path = format!("/api/expenses/{id}");
    for who in [&carl, &dana] {
        let token = Some(who.access_token.as_str());
        let (status, body) = c.app.get(&path, token).await;
        assert_eq!(
            (status, body["error"]["code"].clone()),
            (StatusCode::NOT_FOUND, json!("not_found"))
        );
        let (status, _) = c.app.put(&path, token, json!({"amount": "1.00"})).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = c.app.delete(&path, token, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, list) = c.app.get("/api/expenses", token).await;
        assert_eq!(list["items"], json!([]));
        let (_, s) = c.app.get("/api/expenses/split-calculation", token).await;
        assert_eq!(s["monthly_total"], "0.00");
    }
    let (_, after) = get_expense(&c, &c.ann, id).await;
    assert_eq!(after, created);
    assert_eq!(approvals_in_document(&c).await, 0);
}

/// Sends a raw body (so malformed JSON can be sent).
async fn raw(
    app: &TestApp,
    method: Method,
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

/// (method, path, body, status, code, field with an error)
type BadInput = (
    Method,
    String,
    String,
    StatusCode,
    &'static str,
    Option<&'static str>,
);

async fn bad_input_is_refused_and_nothing_is_written(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let (_, existing) = add(&c, &c.ann, expense("Rent", json!("10.00"))).await;
    let id = existing["id"].as_str().expect("id").to_string();
    let put_path = format!("/api/expenses/{id}");
    let long = "x".repeat(201);
    let ok = r#""category": "housing", "frequency": "monthly""#;
    let cases: Vec<BadInput> = vec![
        // (method, path, body, status, code, field with an error)
        (
            Method::POST,
            "/api/expenses".into(),
            "{".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"amount": "5", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("name"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": 5, "amount": "5", {ok}}}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": true, {ok}}}"#),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "{long}", "amount": "5", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("name"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "   ", "amount": "5", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("name"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            r#"{"name": "A", "amount": "5", "category": "yachts", "frequency": "monthly"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("category"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            r#"{"name": "A", "amount": "5", "category": "housing", "frequency": "daily"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("frequency"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": "-5", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": 0, {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": "1.001", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": 1.001, {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": "12,50", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::POST,
            "/api/expenses".into(),
            format!(r#"{{"name": "A", "amount": "10000000000", {ok}}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::PUT,
            put_path.clone(),
            "{".into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::PUT,
            put_path.clone(),
            "{}".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("fields"),
        ),
        (
            Method::PUT,
            put_path.clone(),
            r#"{"amount": "0"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("amount"),
        ),
        (
            Method::PUT,
            put_path.clone(),
            r#"{"category": "yachts"}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("category"),
        ),
        (
            Method::PUT,
            put_path.clone(),
            format!(r#"{{"name": "{long}"}}"#),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("name"),
        ),
        (
            Method::PUT,
            put_path.clone(),
            format!(r#"{{"amount": "11", "message": "{}"}}"#, "m".repeat(4001)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("message"),
        ),
        (
            Method::PUT,
            "/api/expenses/not-a-uuid".into(),
            r#"{"amount": "11"}"#.into(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::DELETE,
            "/api/expenses/not-a-uuid".into(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::GET,
            "/api/expenses/not-a-uuid".into(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::GET,
            "/api/expenses?limit=0".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("limit"),
        ),
        (
            Method::GET,
            "/api/expenses?limit=101".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("limit"),
        ),
        (
            Method::GET,
            "/api/expenses?limit=abc".into(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
        (
            Method::GET,
            "/api/expenses?cursor=garbage".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("cursor"),
        ),
        (
            Method::GET,
            "/api/expenses?status=gone".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("status"),
        ),
        (
            Method::GET,
            "/api/expenses?category=yachts".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("category"),
        ),
        (
            Method::GET,
            "/api/contributions?limit=0".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("limit"),
        ),
        (
            Method::GET,
            "/api/contributions?cursor=%25%25".into(),
            String::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            Some("cursor"),
        ),
        (
            Method::GET,
            "/api/contributions?limit=-1".into(),
            String::new(),
            StatusCode::BAD_REQUEST,
            "bad_request",
            None,
        ),
    ];
    let approvals = approvals_in_document(&c).await;
    for (method, path, body, status, code, field) in cases {
        let label = format!("{method} {path} {body:.80}");
        let (got, answer) = raw(&c.app, method, &path, &c.ann.access_token, &body).await;
        assert_eq!(got, status, "{label}: {answer}");
        assert_eq!(answer["error"]["code"], code, "{label}: {answer}");
        if let Some(field) = field {
            assert!(
                answer["error"]["details"][field].is_array(),
                "{label}: {answer}"
            );
        }
    }
    // Nothing was written: the one expense is as it was, and no request was filed.
    assert_eq!(expense_count(&c).await, 1);
    assert_eq!(get_expense(&c, &c.ann, &id).await.1, existing);
    assert_eq!(approvals_in_document(&c).await, approvals);
    let (_, history) = c
        .app
        .get("/api/contributions", Some(&c.ann.access_token))
        .await;
    assert_eq!(history["items"], json!([]));
}

async fn pausing_reaches_the_document_and_blocks_writes(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let doc_status = |c: &Couple| {
        let state = c.app.state.clone();
        let (pid, user) = (c.pid, c.ann.user_id);
        async move {
            server_doc::run(&state, pid, user, |tx| {
                Ok(read::read_partnership(tx)?.status)
            })
            .await
            .expect("read the document")
        }
    };
    let (status, body) = c
        .app
        .put(
            "/api/partnerships/status",
            Some(&c.ben.access_token),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(doc_status(&c).await, PartnershipStatus::Paused);

    let (status, body) = add(&c, &c.ann, expense("Rent", json!("10.00"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "partnership_paused");
    let (status, _) = c
        .app
        .post(
            "/api/contributions/mark-paid",
            Some(&c.ann.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Reads still work while paused.
    assert_eq!(split(&c, &c.ann).await["monthly_total"], "0.00");
    assert_eq!(expense_count(&c).await, 0);

    let (status, _) = c
        .app
        .put(
            "/api/partnerships/status",
            Some(&c.ann.access_token),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc_status(&c).await, PartnershipStatus::Active);
    assert_eq!(
        add(&c, &c.ann, expense("Rent", json!("10.00"))).await.0,
        StatusCode::CREATED
    );
}

async fn list_filters_and_pages(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    let mut names = Vec::new();
    for i in 0..5 {
        let name = format!("Item {i}");
        let category = if i % 2 == 0 { "groceries" } else { "pets" };
        let body =
            json!({"name": name, "amount": "1.00", "category": category, "frequency": "weekly"});
        assert_eq!(add(&c, &c.ann, body).await.0, StatusCode::CREATED);
        names.push(name);
    }
    let (status, _) = add(&c, &c.ann, expense("Car", json!("500"))).await;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Pages of two, newest first, until the last page.
    let mut seen = Vec::new();
    let mut times = Vec::new();
    let mut path = "/api/expenses?limit=2".to_string();
    loop {
        let (status, page) = c.app.get(&path, Some(&c.ben.access_token)).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let items = page["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        for e in items {
            seen.push(e["name"].as_str().expect("name").to_string());
            times.push(e["created_at"].as_str().expect("time").to_string());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/api/expenses?limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    seen.sort();
    let mut expected = names.clone();
    expected.push("Car".into());
    expected.sort();
    assert_eq!(seen, expected);

    let (_, pets) = c
        .app
        .get(
            "/api/expenses?category=pets&status=active",
            Some(&c.ann.access_token),
        )
        .await;
    let pets: Vec<&str> = pets["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert_eq!(pets.len(), 2, "{pets:?}");
    assert!(pets.iter().all(|n| *n == "Item 1" || *n == "Item 3"));
    let (_, pending) = c
        .app
        .get(
            "/api/expenses?status=pending_approval",
            Some(&c.ann.access_token),
        )
        .await;
    assert_eq!(pending["items"].as_array().expect("items").len(), 1);
    assert_eq!(pending["items"][0]["name"], "Car");
}

/// Every endpoint of this area is in the OpenAPI document, behind the bearer token, with its
/// success and error answers, and its schemas carry examples.
#[tokio::test]
async fn openapi_describes_expenses_and_contributions() {
    let app = TestApp::spawn(Backend::Sqlite).await.expect("sqlite app");
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let endpoints: &[(&str, &str, &[&str])] = &[
        ("/api/expenses", "get", &["200", "401", "404", "422"]),
        (
            "/api/expenses",
            "post",
            &["201", "202", "400", "401", "404", "409", "422"],
        ),
        ("/api/expenses/{id}", "get", &["200", "400", "401", "404"]),
        (
            "/api/expenses/{id}",
            "put",
            &["202", "400", "401", "404", "409", "422"],
        ),
        (
            "/api/expenses/{id}",
            "delete",
            &["200", "400", "401", "404", "409"],
        ),
        (
            "/api/expenses/split-calculation",
            "get",
            &["200", "401", "404"],
        ),
        ("/api/contributions", "get", &["200", "401", "404", "422"]),
        ("/api/contributions/current", "get", &["200", "401", "404"]),
        (
            "/api/contributions/mark-paid",
            "post",
            &["200", "401", "404", "409"],
        ),
    ];
    for (path, method, statuses) in endpoints {
        let op = &doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} missing");
        assert_eq!(op["security"], json!([{"bearer": []}]), "{method} {path}");
        for s in *statuses {
            assert!(op["responses"][s].is_object(), "{method} {path} lacks {s}");
        }
    }
    let post = &doc["paths"]["/api/expenses"]["post"];
    assert!(post["requestBody"].is_object());
    for schema in [
        "CreateExpenseRequest",
        "UpdateExpenseRequest",
        "ExpenseView",
        "ApprovalRequestView",
        "SplitView",
        "MonthView",
    ] {
        let s = &doc["components"]["schemas"][schema];
        assert!(
            s.get("example").is_some() || s.get("examples").is_some(),
            "{schema} has no example: {s}"
        );
    }
    let create = &doc["components"]["schemas"]["CreateExpenseRequest"];
    let required: Vec<&str> = create["required"]
        .as_array()
        .expect("required")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    for field in ["name", "amount", "category", "frequency"] {
        assert!(required.contains(&field), "{field} not required: {create}");
    }
}

/// Many adds at once on one couple (the document actor commits queued writes together): each
/// is answered 201 with its own expense, each is stored, and the split read before them is not
/// served again afterwards.
async fn concurrent_adds_are_each_committed_and_counted_by_the_split(backend: Backend) {
    let Some(c) = couple(backend).await else {
        return;
    };
    assert_eq!(split(&c, &c.ben).await["active_expenses"], 0);
    let adds = (0..24).map(|i| {
        let who = if i % 2 == 0 { &c.ann } else { &c.ben };
        add(&c, who, expense(&format!("Bill {i}"), json!("1.25")))
    });
    let answers = futures::future::join_all(adds).await;
    let mut ids = std::collections::HashSet::new();
    for (status, created) in &answers {
        assert_eq!(*status, StatusCode::CREATED, "{created}");
        assert_eq!(created["amount"], "1.25");
        ids.insert(created["id"].as_str().expect("id").to_string());
    }
    assert_eq!(ids.len(), 24, "every add has its own expense");
    for (_, created) in &answers {
        let id = created["id"].as_str().expect("id");
        let (status, seen) = get_expense(&c, &c.ben, id).await;
        assert_eq!(status, StatusCode::OK, "{seen}");
        assert_eq!(&seen, created);
    }
    assert_eq!(expense_count(&c).await, 24);
    let after = split(&c, &c.ben).await;
    assert_eq!(after["active_expenses"], 24);
    assert_eq!(after["monthly_total"], "30.00");
}
