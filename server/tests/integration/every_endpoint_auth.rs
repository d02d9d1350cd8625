//! Every endpoint the OpenAPI document marks as needing the bearer token refuses a missing,
//! expired, tampered, `alg: none` or otherwise bad token with 401 — enumerated from the served
//! document, so a new endpoint cannot be forgotten.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use crate::common::{Backend, TestApp};

/// (method, path) of every operation with a `security` requirement.
fn protected_operations(doc: &Value) -> Vec<(Method, String)> {
    let mut out = Vec::new();
    let Some(paths) = doc["paths"].as_object() else {
        return out;
    };
    for (path, item) in paths {
        let Some(ops) = item.as_object() else {
            continue;
        };
        for (method, op) in ops {
            let secured = op
                .get("security")
                .and_then(Value::as_array)
                .is_some_and(|s| !s.is_empty());
            let Ok(method) = method.to_uppercase().parse::<Method>() else {
                continue;
            };
            if secured {
                out.push((method, concrete(path)));
            }
        }
    }
    out
}

/// The path with every `{param}` replaced by a fresh UUID.
fn concrete(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with('{') && seg.ends_with('}') {
                Uuid::new_v4().to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn every_protected_endpoint_refuses_bad_tokens(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, _pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (status, doc) = app.get("/api/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let operations = protected_operations(&doc);
    assert!(
        operations.len() >= 8,
        "the document lists only {} protected operations",
        operations.len()
    );

    let valid = ann.access_token.clone();
    let claims = app
        .state
        .tokens
        .verify_access_token(&valid)
        .expect("valid token");
    let expired = app
        .state
        .tokens
        .issue_access_token(
            claims.sub,
            claims.pid,
            claims.ver,
            chrono::Utc::now() - chrono::Duration::minutes(16),
        )
        .expect("sign")
        .token;
    let parts: Vec<&str> = valid.split('.').collect();
    let (header, payload, signature) = (parts[0], parts[1], parts[2]);
    let mut forged: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    forged["sub"] = json!(Uuid::new_v4());
    let tampered = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(forged.to_string())
    );
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{payload}.");
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("expired", Some(expired)),
        ("tampered", Some(tampered)),
        ("alg none", Some(alg_none)),
        ("garbage", Some("not.a.token".into())),
    ];
    for (method, path) in &operations {
        for (what, token) in &bad {
            let body = matches!(*method, Method::POST | Method::PUT).then(|| json!({}));
            let (status, answer) = app.call(method.clone(), path, token.as_deref(), body).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with a {what} token answered {answer}"
            );
            assert_eq!(
                answer["error"]["code"], "unauthorized",
                "{method} {path} ({what})"
            );
        }
    }
}

#[tokio::test]
async fn every_protected_endpoint_refuses_bad_tokens_on_sqlite() {
    every_protected_endpoint_refuses_bad_tokens(Backend::Sqlite).await;
}

#[tokio::test]
async fn every_protected_endpoint_refuses_bad_tokens_on_postgres() {
    every_protected_endpoint_refuses_bad_tokens(Backend::Postgres).await;
}
