//! The HTTP skeleton through real HTTP: one JSON error shape for every failure (including bad
//! input of every user and partnership endpoint, which must write nothing), security headers,
//! CORS, request ids, compression, the 404/405 fallbacks, health probes and the OpenAPI document.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::common::{self, Backend, TestApp};

on_both_backends!(
    bad_input_answers_its_documented_code_and_writes_nothing,
    readiness_answers_while_the_database_does,
);

/// A raw request body and its content type.
enum Body {
    Json(Value),
    Raw(&'static str, String),
}

struct Case {
    method: Method,
    path: &'static str,
    body: Body,
    status: StatusCode,
    code: &'static str,
    field: Option<&'static str>,
}

fn case(
    method: Method,
    path: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        method,
        path,
        body,
        status: StatusCode::from_u16(status).expect("status"),
        code,
        field,
    }
}

fn bad_inputs() -> Vec<Case> {
    use Body::{Json, Raw};
    let (put, post, delete) = (Method::PUT, Method::POST, Method::DELETE);
    let long_name = "n".repeat(101);
    let long_email = format!("{}@example.com", "a".repeat(250));
    let oversize = format!("{{\"name\": \"{}\"}}", "x".repeat(300 * 1024));
    vec![
        // PUT /api/users/profile
        case(
            put.clone(),
            "/api/users/profile",
            Raw("application/json", "{\"name\": ".into()),
            400,
            "bad_request",
            None,
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Raw("application/json", "[1, 2]".into()),
            400,
            "bad_request",
            None,
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"name": 5})),
            400,
            "bad_request",
            None,
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"country": ["US"]})),
            400,
            "bad_request",
            None,
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Raw("text/plain", "{\"name\": \"Zed\"}".into()),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"name": long_name})),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"name": "   "})),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"country": "XX"})),
            422,
            "validation_failed",
            Some("country"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"country": "USA"})),
            422,
            "validation_failed",
            Some("country"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"currency": "usd"})),
            422,
            "validation_failed",
            Some("currency"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"currency": "ABC"})),
            422,
            "validation_failed",
            Some("currency"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"payday": "32"})),
            422,
            "validation_failed",
            Some("payday"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Json(json!({"name": "Zed", "payday": "0"})),
            422,
            "validation_failed",
            Some("payday"),
        ),
        case(
            put.clone(),
            "/api/users/profile",
            Raw("application/json", oversize),
            413,
            "payload_too_large",
            None,
        ),
        // PUT /api/users/update-income
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({})),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({"income": "-1"})),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({"income": -250})),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({"income": "1.001"})),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({"income": "100000000000"})),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({"income": true})),
            400,
            "bad_request",
            None,
        ),
        case(
            put.clone(),
            "/api/users/update-income",
            Json(json!({"income": "lots"})),
            400,
            "bad_request",
            None,
        ),
        // POST /api/partnerships/invite
        case(
            post.clone(),
            "/api/partnerships/invite",
            Json(json!({})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Json(json!({"email": "not-an-email"})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Json(json!({"email": long_email})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Json(json!({"email": 5})),
            400,
            "bad_request",
            None,
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Json(json!({"email": "ben@example.com", "approval_threshold": "-5"})),
            422,
            "validation_failed",
            Some("approval_threshold"),
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Json(json!({"email": "ben@example.com", "approval_threshold": "0"})),
            422,
            "validation_failed",
            Some("approval_threshold"),
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Raw(
                "application/json",
                "{\"email\": \"ben@example.com\",}".into(),
            ),
            400,
            "bad_request",
            None,
        ),
        case(
            post.clone(),
            "/api/partnerships/invite",
            Raw(
                "application/x-www-form-urlencoded",
                "email=ben%40example.com".into(),
            ),
            415,
            "unsupported_media_type",
            None,
        ),
        // PUT /api/partnerships/status
        case(
            put.clone(),
            "/api/partnerships/status",
            Json(json!({})),
            422,
            "validation_failed",
            Some("status"),
        ),
        case(
            put.clone(),
            "/api/partnerships/status",
            Json(json!({"status": "banana"})),
            422,
            "validation_failed",
            Some("status"),
        ),
        case(
            put.clone(),
            "/api/partnerships/status",
            Json(json!({"status": 1})),
            400,
            "bad_request",
            None,
        ),
        // POST /api/partnerships/accept/{id}, DELETE /api/partnerships/decline/{id}
        case(
            post.clone(),
            "/api/partnerships/accept/123",
            Json(json!({})),
            400,
            "bad_request",
            None,
        ),
        case(
            delete.clone(),
            "/api/partnerships/decline/zzz",
            Json(json!({})),
            400,
            "bad_request",
            None,
        ),
        // DELETE /api/users/account
        case(
            delete.clone(),
            "/api/users/account",
            Json(json!({})),
            422,
            "validation_failed",
            Some("password"),
        ),
        case(
            delete.clone(),
            "/api/users/account",
            Json(json!({"password": 12345678901_i64})),
            400,
            "bad_request",
            None,
        ),
        case(
            delete,
            "/api/users/account",
            Raw("application/json", "password".into()),
            400,
            "bad_request",
            None,
        ),
    ]
}

async fn bad_input_answers_its_documented_code_and_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let (_, before) = app.get("/api/users/profile", Some(&ann.access_token)).await;
    for case in bad_inputs() {
        let mut request = app
            .client
            .request(case.method.clone(), app.url(case.path))
            .bearer_auth(&ann.access_token);
        request = match case.body {
            Body::Json(value) => request.json(&value),
            Body::Raw(content_type, text) => request.header(CONTENT_TYPE, content_type).body(text),
        };
        let response = request.send().await.expect("request");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let label = format!("{} {}", case.method, case.path);
        assert_eq!(status, case.status, "{label}: {body}");
        assert_eq!(body["error"]["code"], case.code, "{label}: {body}");
        assert!(body["error"]["message"].is_string(), "{label}: {body}");
        if let Some(field) = case.field {
            assert!(
                body["error"]["details"][field].is_array(),
                "{label}: details of {field} in {body}"
            );
        }
    }
    let (_, after) = app.get("/api/users/profile", Some(&ann.access_token)).await;
    assert_eq!(before, after, "no bad request changed the profile");
    let (status, _) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "no bad request created a partnership"
    );
    assert!(app.mailer.sent().is_empty(), "no invitation mail went out");
}

async fn readiness_answers_while_the_database_does(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["redis"], "not_configured");
    let (status, body) = app.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// A draining node stops being ready (so nginx and orchestrators send no new work) while it
/// stays alive to finish what it has.
#[tokio::test]
async fn a_draining_node_is_alive_but_not_ready() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (status, _) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    app.state.drain();
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "service_unavailable");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "alive while draining");
}

/// Redis is asked and reported; without it a node still works (slower fan-out, rate limits in
/// memory), so it stays ready and says it is degraded.
#[tokio::test]
async fn readiness_reports_redis_and_stays_ready_without_it() {
    if let Ok(redis) = std::env::var("TEST_REDIS_URL") {
        let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.redis_url = Some(redis)).await
        else {
            return;
        };
        let (status, body) = app.get("/readyz", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ok");
        assert_eq!(body["checks"]["redis"], "ok");
    } else {
        eprintln!("skipped the reachable-Redis half: TEST_REDIS_URL not set");
    }
    // Nothing listens on port 1.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.redis_url = Some("redis://127.0.0.1:1".into());
    })
    .await
    else {
        return;
    };
    let asked = std::time::Instant::now();
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "degraded");
    assert_eq!(body["checks"]["database"], "ok");
    assert_eq!(body["checks"]["redis"], "unavailable");
    assert!(
        asked.elapsed() < std::time::Duration::from_secs(3),
        "answered within the probe's time: {:?}",
        asked.elapsed()
    );
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let Some(app) = TestApp::spawn(Backend::Postgres).await else {
        return;
    };
    let (status, _) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    let admin_url = std::env::var("TEST_DATABASE_URL").expect("set when the app spawned");
    let name = app
        .db
        .url
        .rsplit('/')
        .next()
        .expect("database name")
        .to_string();
    let admin = sqlx::PgPool::connect(&admin_url).await.expect("admin");
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .expect("drop");
    let (status, body) = app.get("/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "service_unavailable");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "liveness does not depend on the database"
    );
}

fn assert_security_headers(headers: &HeaderMap, what: &str) {
    let expect = [
        (
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        ),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
        ("referrer-policy", "no-referrer"),
        ("cross-origin-opener-policy", "same-origin"),
        ("x-permitted-cross-domain-policies", "none"),
    ];
    for (name, value) in expect {
        assert_eq!(
            headers.get(name).and_then(|v| v.to_str().ok()),
            Some(value),
            "{name} on {what}"
        );
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    for path in [
        "/healthz",
        "/api/users/profile",
        "/nowhere",
        "/api/openapi.json",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("request");
        assert_security_headers(response.headers(), path);
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_json_shape() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (status, body) = app.get("/api/does-not-exist", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(
        body,
        json!({"error": {"code": "not_found", "message": "not found"}})
    );
    let (status, body) = app.get("/favicon.ico", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
    let (status, body) = app.delete("/healthz", None, None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{body}");
    assert_eq!(body["error"]["code"], "method_not_allowed");
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.cors_origins = vec!["https://app.example".into()]
    })
    .await
    else {
        return;
    };
    let preflight = |origin: &'static str| {
        app.client
            .request(Method::OPTIONS, app.url("/api/users/profile"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };
    let allowed = preflight("https://app.example").await.expect("preflight");
    assert!(allowed.status().is_success(), "{}", allowed.status());
    let headers = allowed.headers();
    assert_eq!(
        headers["access-control-allow-origin"],
        "https://app.example"
    );
    let methods = headers["access-control-allow-methods"]
        .to_str()
        .expect("ascii");
    assert!(methods.contains("PUT"), "{methods}");
    let allowed_headers = headers["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_lowercase();
    assert!(
        allowed_headers.contains("authorization"),
        "{allowed_headers}"
    );

    let refused = preflight("https://evil.example").await.expect("preflight");
    assert!(refused
        .headers()
        .get("access-control-allow-origin")
        .is_none());
    let simple = app
        .client
        .get(app.url("/healthz"))
        .header("origin", "https://app.example")
        .send()
        .await
        .expect("request");
    assert_eq!(
        simple.headers()["access-control-allow-origin"],
        "https://app.example"
    );
}

#[tokio::test]
async fn request_ids_are_assigned_or_propagated() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("request");
    let assigned = response.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(uuid::Uuid::parse_str(&assigned).is_ok(), "{assigned}");
    let response = app
        .client
        .get(app.url("/nowhere"))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .expect("request");
    assert_eq!(response.headers()["x-request-id"], "trace-me-42");
}

#[tokio::test]
async fn large_responses_are_gzip_compressed_on_request() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let response = app
        .client
        .get(app.url("/api/openapi.json"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-encoding"], "gzip");
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/users/profile", "get"),
        ("/api/users/profile", "put"),
        ("/api/users/update-income", "put"),
        ("/api/users/account", "delete"),
        ("/api/partnerships/invite", "post"),
        ("/api/partnerships/invitations", "get"),
        ("/api/partnerships/accept/{id}", "post"),
        ("/api/partnerships/decline/{id}", "delete"),
        ("/api/partnerships/current", "get"),
        ("/api/partnerships/status", "put"),
        ("/api/export", "get"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["ErrorBody"].is_object());

    let docs = app
        .client
        .get(app.url("/api/docs"))
        .send()
        .await
        .expect("docs");
    assert_eq!(docs.status(), StatusCode::OK);
    let csp = docs.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = docs.text().await.expect("html");
    assert!(
        html.contains("/api/users/profile"),
        "the page embeds the document"
    );
}

/// Clients are generated from the document (client-sdk/js runs openapi-typescript on it): an
/// `operationId` used twice gives clashing names, and a parameter declared `in: path` without a
/// `{segment}` of its own is one no client can send (the list endpoints' `status`, `limit` and
/// `cursor` were once documented that way, because their handlers read the query through
/// `ApiQuery`, which utoipa does not recognise). The list endpoints' pages are checked against
/// what `PageParams::page` enforces.
#[tokio::test]
async fn the_openapi_document_has_unique_operation_ids_and_real_path_parameters() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut ids: BTreeMap<&str, String> = BTreeMap::new();
    let mut problems = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        // `{name}` variables of the template.
        let variables: BTreeSet<&str> = path
            .split('{')
            .skip(1)
            .filter_map(|rest| rest.split_once('}').map(|(name, _)| name))
            .collect();
        for (method, op) in item.as_object().expect("path item") {
            if !methods.contains(&method.as_str()) {
                continue;
            }
            let here = format!("{} {path}", method.to_uppercase());
            match op["operationId"].as_str() {
                None => problems.push(format!("{here}: no operationId")),
                Some(id) => {
                    if let Some(first) = ids.insert(id, here.clone()) {
                        problems.push(format!("operationId {id:?} of both {first} and {here}"));
                    }
                }
            }
            // Parameters may be declared on the path item too.
            let parameters = item["parameters"]
                .as_array()
                .into_iter()
                .chain(op["parameters"].as_array())
                .flatten();
            let mut declared = BTreeSet::new();
            for parameter in parameters {
                if parameter["in"] != "path" {
                    continue;
                }
                let name = parameter["name"].as_str().expect("parameter name");
                declared.insert(name);
                if !variables.contains(name) {
                    problems.push(format!(
                        "{here}: path parameter {name:?} is not in the path"
                    ));
                }
                if parameter["required"] != true {
                    problems.push(format!("{here}: path parameter {name:?} is not required"));
                }
            }
            for missing in variables.difference(&declared) {
                problems.push(format!("{here}: {{{missing}}} is not declared"));
            }
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(ids.len() >= 40, "only {} operations", ids.len());

    for path in [
        "/api/expenses",
        "/api/goals",
        "/api/approvals",
        "/api/contributions",
        "/api/messages",
    ] {
        let parameters = doc["paths"][path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("GET {path}: no parameters"));
        for parameter in parameters {
            assert_eq!(parameter["in"], "query", "GET {path}: {parameter}");
            assert_eq!(parameter["required"], false, "GET {path}: {parameter}");
        }
        let limit = parameters
            .iter()
            .find(|p| p["name"] == "limit")
            .unwrap_or_else(|| panic!("GET {path}: no limit"));
        assert_eq!(
            (
                &limit["schema"]["minimum"],
                &limit["schema"]["maximum"],
                &limit["schema"]["default"]
            ),
            (&json!(1), &json!(100), &json!(50)),
            "GET {path}: {limit}"
        );
        assert!(
            parameters.iter().any(|p| p["name"] == "cursor"),
            "GET {path}: no cursor"
        );
    }
    let status_values = |path: &str| {
        doc["paths"][path]["get"]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "status"))
            .map(|p| p["schema"]["enum"].clone())
    };
    let item_statuses = json!(["active", "pending_approval", "archived"]);
    assert_eq!(status_values("/api/expenses"), Some(item_statuses.clone()));
    assert_eq!(status_values("/api/goals"), Some(item_statuses));
    assert_eq!(
        status_values("/api/approvals"),
        Some(json!(["pending", "approved", "declined"]))
    );
}

#[tokio::test]
async fn the_per_ip_limit_answers_429_with_retry_after_and_spares_the_probes() {
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| c.api_rate_limit = 3).await else {
        return;
    };
    for _ in 0..3 {
        let (status, _) = app.get("/api/openapi.json", None).await;
        assert_eq!(status, StatusCode::OK);
    }
    let response = app
        .client
        .get(app.url("/api/users/profile"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "rate_limited");
    let (status, _) = app.get("/healthz", None).await;
    assert_eq!(status, StatusCode::OK, "probes are not limited");
}

#[tokio::test]
async fn requests_over_the_time_limit_answer_503_timeout() {
    // A registration hashes with production argon2 parameters (tens of milliseconds at least),
    // far longer than a 5 ms limit.
    let Some(app) = TestApp::spawn_with(Backend::Sqlite, |c| {
        c.argon2 = splitsave_server::config::Argon2Params::OWASP;
        c.request_timeout = std::time::Duration::from_millis(5);
    })
    .await
    else {
        return;
    };
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "slow@example.com", "password": common::PASSWORD, "name": "Slow"}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "timeout");
}
