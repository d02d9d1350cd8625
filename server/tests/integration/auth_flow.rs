//! Accounts and sessions through real HTTP, on SQLite and on PostgreSQL (`TEST_DATABASE_URL`;
//! the PostgreSQL variants say they were skipped when it is unset).

use std::time::{Duration, Instant};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::Utc;
use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_server::config::Argon2Params;
use splitsave_server::store::{NewPasswordReset, NewRefreshToken};

use crate::auth_common::{reset_token_from, Backend, TestApp, PASSWORD};

/// Runs each named `async fn(Backend)` once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(super::Backend::Sqlite).await
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(super::Backend::Postgres).await
            }
        }
    )*};
}

on_both_backends!(
    register_login_refresh_and_logout,
    reused_refresh_token_revokes_the_family,
    expired_and_unknown_refresh_tokens_are_refused,
    expired_reset_token_is_refused,
    duplicate_email_is_refused_with_email_taken,
    wrong_email_and_wrong_password_get_the_same_answer,
    unknown_email_login_takes_about_as_long_as_a_wrong_password,
    password_reset_by_mail_ends_every_session,
    forgot_password_answers_the_same_for_unknown_and_known_emails,
    change_password_kills_old_access_tokens_and_returns_new_ones,
    protected_endpoint_refuses_missing_expired_tampered_and_alg_none_tokens,
    sixth_wrong_password_within_a_minute_answers_429,
    bad_auth_input_answers_its_code_and_writes_nothing,
    concurrent_refreshes_with_one_token_succeed_exactly_once,
    tokens_name_the_partnership_once_an_invitation_is_accepted,
    api_rate_limit_per_ip_answers_429_with_retry_after,
);

fn token(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} in {body}"))
        .to_string()
}

async fn register_login_refresh_and_logout(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let registered = app
        .post(
            "/api/auth/register",
            &json!({
                "email": "Ann@Example.com", "password": PASSWORD, "name": " Ann ",
                "country": "de", "currency": "EUR", "income": "3200.5", "payday": "last"
            }),
        )
        .await;
    assert_eq!(
        registered.status,
        StatusCode::CREATED,
        "{:?}",
        registered.body
    );
    let user = &registered.body["user"];
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["name"], "Ann");
    assert_eq!(user["country"], "DE");
    assert_eq!(user["currency"], "EUR");
    assert_eq!(user["income"], "3200.50");
    assert_eq!(user["payday"], "last");
    assert!(user.get("password_hash").is_none());
    assert_eq!(
        app.profile(&token(&registered.body, "access_token"))
            .await
            .status,
        StatusCode::OK
    );

    let login = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
    assert_eq!(login.body["token_type"], "Bearer");
    assert_eq!(login.body["expires_in"], 900);
    assert_eq!(login.body["user"]["id"], user["id"]);
    let access = token(&login.body, "access_token");
    assert_eq!(app.profile(&access).await.status, StatusCode::OK);

    let first_refresh = token(&login.body, "refresh_token");
    let refreshed = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": first_refresh}),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{:?}", refreshed.body);
    assert_eq!(refreshed.body["token_type"], "Bearer");
    assert_eq!(refreshed.body["expires_in"], 900);
    let second_refresh = token(&refreshed.body, "refresh_token");
    assert_ne!(second_refresh, first_refresh);
    assert_eq!(
        app.profile(&token(&refreshed.body, "access_token"))
            .await
            .status,
        StatusCode::OK
    );

    let logout = app
        .post(
            "/api/auth/logout",
            &json!({"refresh_token": second_refresh}),
        )
        .await;
    assert_eq!(logout.status, StatusCode::NO_CONTENT);
    let after_logout = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": second_refresh}),
        )
        .await;
    assert_eq!(after_logout.status, StatusCode::UNAUTHORIZED);
    assert_eq!(after_logout.code(), "invalid_refresh_token");
    // Logging out twice, or with a token the server never issued, is not an error.
    let again = app
        .post(
            "/api/auth/logout",
            &json!({"refresh_token": second_refresh}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    app.cleanup().await;
}

async fn reused_refresh_token_revokes_the_family(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let other_session = app.login("ann@example.com", PASSWORD).await.body;
    let first = token(&session, "refresh_token");

    let rotated = app
        .post("/api/auth/refresh", &json!({"refresh_token": first}))
        .await;
    assert_eq!(rotated.status, StatusCode::OK);
    let newest = token(&rotated.body, "refresh_token");

    // The old token is refused, and presenting it revoked the newest one of its family too.
    let reuse = app
        .post("/api/auth/refresh", &json!({"refresh_token": first}))
        .await;
    assert_eq!(reuse.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reuse.code(), "invalid_refresh_token");
    let newest_after_reuse = app
        .post("/api/auth/refresh", &json!({"refresh_token": newest}))
        .await;
    assert_eq!(newest_after_reuse.status, StatusCode::UNAUTHORIZED);

    // Another login of the same user is another family and keeps working.
    let other = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": token(&other_session, "refresh_token")}),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    app.cleanup().await;
}

fn user_id(session: &Value) -> uuid::Uuid {
    session["user"]["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("user id")
}

async fn expired_and_unknown_refresh_tokens_are_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let expired = app.state.tokens.generate_opaque();
    app.state
        .store
        .insert_refresh_token(NewRefreshToken {
            id: uuid::Uuid::now_v7(),
            user_id: user_id(&session),
            family_id: uuid::Uuid::new_v4(),
            token_hash: expired.hash.clone(),
            expires_at: Utc::now() - chrono::Duration::seconds(1),
        })
        .await
        .expect("store expired token");
    let never_issued = app.state.tokens.generate_opaque();
    for (what, presented) in [
        ("expired", expired.token),
        ("never issued", never_issued.token),
    ] {
        let answer = app
            .post("/api/auth/refresh", &json!({"refresh_token": presented}))
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(answer.code(), "invalid_refresh_token", "{what}");
    }
    app.cleanup().await;
}

async fn expired_reset_token_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let expired = app.state.tokens.generate_opaque();
    app.state
        .store
        .insert_password_reset(NewPasswordReset {
            id: uuid::Uuid::now_v7(),
            user_id: user_id(&session),
            token_hash: expired.hash.clone(),
            expires_at: Utc::now() - chrono::Duration::seconds(1),
        })
        .await
        .expect("store expired reset");
    let answer = app
        .post(
            "/api/auth/reset-password",
            &json!({"token": expired.token, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.code(), "invalid_reset_token");
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.profile(&token(&session, "access_token")).await.status,
        StatusCode::OK
    );
    app.cleanup().await;
}

async fn duplicate_email_is_refused_with_email_taken(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.register("ann@example.com").await;
    let again = app
        .post(
            "/api/auth/register",
            &json!({"email": "ANN@example.com", "password": "another password", "name": "Ann 2"}),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.code(), "email_taken");
    // The first account is untouched.
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.login("ann@example.com", "another password")
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    app.cleanup().await;
}

async fn wrong_email_and_wrong_password_get_the_same_answer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.register("ann@example.com").await;
    let wrong_password = app.login("ann@example.com", "not the password").await;
    let unknown_email = app.login("nobody@example.com", PASSWORD).await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong_password.code(), "invalid_credentials");
    assert_eq!(unknown_email.status, wrong_password.status);
    assert_eq!(unknown_email.body, wrong_password.body);
    app.cleanup().await;
}

async fn unknown_email_login_takes_about_as_long_as_a_wrong_password(backend: Backend) {
    // With production-strength argon2 a real verification takes tens of milliseconds; an unknown
    // email must cost the same (a dummy hash is verified), or response times would tell which
    // emails have accounts. Attempts alternate so that load on the machine hits both alike, and
    // the fastest of each is compared: the fastest shows the work done, whatever else runs.
    let Some(app) = TestApp::spawn_with(backend, |c| c.argon2 = Argon2Params::OWASP).await else {
        return;
    };
    app.register("ann@example.com").await;
    let mut fastest = [Duration::MAX, Duration::MAX];
    for _ in 0..5 {
        for (i, email) in ["ann@example.com", "nobody@example.com"]
            .into_iter()
            .enumerate()
        {
            let started = Instant::now();
            let answer = app.login(email, "not the password").await;
            fastest[i] = fastest[i].min(started.elapsed());
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        }
    }
    let [known, unknown] = fastest;
    assert!(
        unknown * 3 >= known && known * 3 >= unknown,
        "wrong password took at least {known:?}, unknown email at least {unknown:?}"
    );
    app.cleanup().await;
}

async fn password_reset_by_mail_ends_every_session(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let old_access = token(&session, "access_token");
    let old_refresh = token(&session, "refresh_token");

    let forgot = app
        .post(
            "/api/auth/forgot-password",
            &json!({"email": "Ann@example.com"}),
        )
        .await;
    assert_eq!(forgot.status, StatusCode::ACCEPTED);
    let mails = app.wait_for_mails("ann@example.com", 1).await;
    assert_eq!(mails[0].subject, "Reset your SplitSave password");
    let reset_token = reset_token_from(&mails[0]);
    assert_eq!(reset_token.len(), 43, "{}", mails[0].body);
    // Until the reset, the old session works.
    assert_eq!(app.profile(&old_access).await.status, StatusCode::OK);

    let reset = app
        .post(
            "/api/auth/reset-password",
            &json!({"token": reset_token, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{:?}", reset.body);

    let old_access_after = app.profile(&old_access).await;
    assert_eq!(old_access_after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(old_access_after.code(), "unauthorized");
    let old_refresh_after = app
        .post("/api/auth/refresh", &json!({"refresh_token": old_refresh}))
        .await;
    assert_eq!(old_refresh_after.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    let new_login = app.login("ann@example.com", "a brand new password").await;
    assert_eq!(new_login.status, StatusCode::OK);
    assert_eq!(
        app.profile(&token(&new_login.body, "access_token"))
            .await
            .status,
        StatusCode::OK
    );

    // The token was single-use.
    let reused = app
        .post(
            "/api/auth/reset-password",
            &json!({"token": reset_token, "new_password": "yet another password"}),
        )
        .await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.code(), "invalid_reset_token");
    assert_eq!(
        app.login("ann@example.com", "a brand new password")
            .await
            .status,
        StatusCode::OK
    );
    app.cleanup().await;
}

async fn forgot_password_answers_the_same_for_unknown_and_known_emails(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.register("ann@example.com").await;
    let unknown = app
        .post(
            "/api/auth/forgot-password",
            &json!({"email": "nobody@example.com"}),
        )
        .await;
    let known = app
        .post(
            "/api/auth/forgot-password",
            &json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::ACCEPTED);
    assert_eq!(known.status, unknown.status);
    assert_eq!(known.body, unknown.body);
    app.wait_for_mails("ann@example.com", 1).await;
    assert!(app.mailer.sent_to("nobody@example.com").is_empty());
    assert_eq!(app.mailer.sent().len(), 1);
    app.cleanup().await;
}

async fn change_password_kills_old_access_tokens_and_returns_new_ones(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let old_access = token(&session, "access_token");
    let old_refresh = token(&session, "refresh_token");

    let wrong = app
        .post_auth(
            "/api/auth/change-password",
            &old_access,
            &json!({"current_password": "not the password", "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_eq!(wrong.code(), "invalid_credentials");
    assert_eq!(
        app.profile(&old_access).await.status,
        StatusCode::OK,
        "a wrong current password changes nothing"
    );

    let changed = app
        .post_auth(
            "/api/auth/change-password",
            &old_access,
            &json!({"current_password": PASSWORD, "new_password": "a brand new password"}),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{:?}", changed.body);
    assert_eq!(changed.body["token_type"], "Bearer");
    let new_access = token(&changed.body, "access_token");

    assert_eq!(
        app.profile(&old_access).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.profile(&new_access).await.status, StatusCode::OK);
    let old_refresh_after = app
        .post("/api/auth/refresh", &json!({"refresh_token": old_refresh}))
        .await;
    assert_eq!(old_refresh_after.status, StatusCode::UNAUTHORIZED);
    let new_refresh = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": token(&changed.body, "refresh_token")}),
        )
        .await;
    assert_eq!(new_refresh.status, StatusCode::OK);
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.login("ann@example.com", "a brand new password")
            .await
            .status,
        StatusCode::OK
    );
    app.cleanup().await;
}

async fn protected_endpoint_refuses_missing_expired_tampered_and_alg_none_tokens(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let valid = token(&session, "access_token");
    let user_id = user_id(&session);
    let claims = app
        .state
        .tokens
        .verify_access_token(&valid)
        .expect("valid token");

    let expired = app
        .state
        .tokens
        .issue_access_token(
            user_id,
            None,
            claims.ver,
            chrono::Utc::now() - chrono::Duration::minutes(16),
        )
        .expect("sign")
        .token;
    let [header, payload, signature]: [&str; 3] = valid
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three parts");
    let mut forged_claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64")).expect("json");
    forged_claims["exp"] = json!(forged_claims["exp"].as_i64().unwrap_or(0) + 86_400);
    let tampered = format!(
        "{header}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(forged_claims.to_string())
    );
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{payload}.");
    let alg_none_signed = format!("{none_header}.{payload}.{signature}");
    let hs512_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS512","typ":"JWT"}"#);
    let other_alg = format!("{hs512_header}.{payload}.{signature}");

    assert_eq!(app.profile(&valid).await.status, StatusCode::OK);
    for (what, authorization) in [
        ("no header", None),
        ("empty bearer", Some("Bearer ".to_string())),
        ("basic scheme", Some("Basic YW5uOnBhc3N3b3Jk".to_string())),
        ("token without scheme", Some(valid.clone())),
        ("expired", Some(format!("Bearer {expired}"))),
        ("tampered payload", Some(format!("Bearer {tampered}"))),
        ("alg none", Some(format!("Bearer {alg_none}"))),
        (
            "alg none with signature",
            Some(format!("Bearer {alg_none_signed}")),
        ),
        ("other algorithm", Some(format!("Bearer {other_alg}"))),
        ("garbage", Some("Bearer not.a.token".to_string())),
    ] {
        let answer = app
            .get_with_authorization("/api/users/profile", authorization.as_deref())
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{what}");
        assert_eq!(answer.code(), "unauthorized", "{what}");
        assert_eq!(
            answer.headers.get("www-authenticate").map(|v| v.as_bytes()),
            Some(&b"Bearer"[..]),
            "{what}"
        );
    }
    app.cleanup().await;
}

async fn sixth_wrong_password_within_a_minute_answers_429(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.register("ann@example.com").await;
    for attempt in 1..=5 {
        let answer = app.login("ann@example.com", "not the password").await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "attempt {attempt}");
    }
    // Even the right password is turned away now: the guesser cannot tell it was right.
    let sixth = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(sixth.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sixth.code(), "rate_limited");
    let retry_after: u64 = sixth
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    // Other accounts are not affected.
    app.register("bob@example.com").await;
    assert_eq!(
        app.login("bob@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    app.cleanup().await;
}

/// One row of the bad-input table.
struct Case {
    what: &'static str,
    path: &'static str,
    body: Body,
    status: StatusCode,
    code: &'static str,
    /// For 422: the field the details must name.
    field: Option<&'static str>,
}

enum Body {
    Json(Value),
    Raw(&'static str, Option<&'static str>),
    Bytes(Vec<u8>),
}

fn case(
    what: &'static str,
    path: &'static str,
    body: Body,
    status: u16,
    code: &'static str,
    field: Option<&'static str>,
) -> Case {
    Case {
        what,
        path,
        body,
        status: StatusCode::from_u16(status).expect("status"),
        code,
        field,
    }
}

async fn bad_auth_input_answers_its_code_and_writes_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    app.register("ann@example.com").await;
    let long_email = format!("{}@example.com", "a".repeat(250));
    let oversize = format!(
        r#"{{"email":"big@example.com","password":"{}","name":"Big"}}"#,
        "x".repeat(300 * 1024)
    );
    let valid = |email: &str| json!({"email": email, "password": PASSWORD, "name": "New"});
    let with = |email: &str, field: &str, value: Value| {
        let mut body = valid(email);
        body[field] = value;
        body
    };
    use Body::{Bytes, Json, Raw};
    const REG: &str = "/api/auth/register";
    let cases = vec![
        case(
            "malformed JSON",
            REG,
            Raw(r#"{"email": "x@example.com", "#, Some("application/json")),
            400,
            "bad_request",
            None,
        ),
        case(
            "wrong type",
            REG,
            Json(with("wrongtype@example.com", "name", json!(42))),
            400,
            "bad_request",
            None,
        ),
        case(
            "not an object",
            REG,
            Json(json!(["x1@example.com"])),
            400,
            "bad_request",
            None,
        ),
        case(
            "no content type",
            REG,
            Raw(
                r#"{"email":"ct@example.com","password":"correct horse battery","name":"X"}"#,
                None,
            ),
            415,
            "unsupported_media_type",
            None,
        ),
        case(
            "missing email",
            REG,
            Json(json!({"password": PASSWORD, "name": "X"})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "missing password",
            REG,
            Json(json!({"email": "nopw@example.com", "name": "X"})),
            422,
            "validation_failed",
            Some("password"),
        ),
        case(
            "missing name",
            REG,
            Json(json!({"email": "noname@example.com", "password": PASSWORD})),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            "invalid email",
            REG,
            Json(valid("not-an-email")),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "too long email",
            REG,
            Json(valid(&long_email)),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "short password",
            REG,
            Json(with("short@example.com", "password", json!("123456789"))),
            422,
            "validation_failed",
            Some("password"),
        ),
        case(
            "too long password",
            REG,
            Json(with(
                "longpw@example.com",
                "password",
                json!("x".repeat(129)),
            )),
            422,
            "validation_failed",
            Some("password"),
        ),
        case(
            "too long name",
            REG,
            Json(with("longname@example.com", "name", json!("n".repeat(101)))),
            422,
            "validation_failed",
            Some("name"),
        ),
        case(
            "invalid country",
            REG,
            Json(with("country@example.com", "country", json!("XX"))),
            422,
            "validation_failed",
            Some("country"),
        ),
        case(
            "invalid currency",
            REG,
            Json(with("currency@example.com", "currency", json!("usd"))),
            422,
            "validation_failed",
            Some("currency"),
        ),
        case(
            "negative income",
            REG,
            Json(with("income@example.com", "income", json!("-5"))),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            "too many decimals",
            REG,
            Json(with("decimals@example.com", "income", json!("10.001"))),
            422,
            "validation_failed",
            Some("income"),
        ),
        case(
            "invalid payday",
            REG,
            Json(with("payday@example.com", "payday", json!("32"))),
            422,
            "validation_failed",
            Some("payday"),
        ),
        case(
            "oversize body",
            REG,
            Bytes(oversize.into_bytes()),
            413,
            "payload_too_large",
            None,
        ),
        case(
            "login malformed JSON",
            "/api/auth/login",
            Raw("{", Some("application/json")),
            400,
            "bad_request",
            None,
        ),
        case(
            "login wrong type",
            "/api/auth/login",
            Json(json!({"email": "ann@example.com", "password": 12345678901u64})),
            400,
            "bad_request",
            None,
        ),
        case(
            "login missing password",
            "/api/auth/login",
            Json(json!({"email": "ann@example.com"})),
            422,
            "validation_failed",
            Some("password"),
        ),
        case(
            "login invalid email",
            "/api/auth/login",
            Json(json!({"email": "ann", "password": PASSWORD})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "refresh missing token",
            "/api/auth/refresh",
            Json(json!({})),
            422,
            "validation_failed",
            Some("refresh_token"),
        ),
        case(
            "refresh wrong type",
            "/api/auth/refresh",
            Json(json!({"refresh_token": 7})),
            400,
            "bad_request",
            None,
        ),
        case(
            "refresh garbage token",
            "/api/auth/refresh",
            Json(json!({"refresh_token": "nope"})),
            401,
            "invalid_refresh_token",
            None,
        ),
        case(
            "logout missing token",
            "/api/auth/logout",
            Json(json!({})),
            422,
            "validation_failed",
            Some("refresh_token"),
        ),
        case(
            "forgot missing email",
            "/api/auth/forgot-password",
            Json(json!({})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "forgot invalid email",
            "/api/auth/forgot-password",
            Json(json!({"email": "ann@"})),
            422,
            "validation_failed",
            Some("email"),
        ),
        case(
            "reset missing fields",
            "/api/auth/reset-password",
            Json(json!({})),
            422,
            "validation_failed",
            Some("token"),
        ),
        case(
            "reset short password",
            "/api/auth/reset-password",
            Json(json!({"token": "a".repeat(43), "new_password": "short"})),
            422,
            "validation_failed",
            Some("new_password"),
        ),
        case(
            "reset unknown token",
            "/api/auth/reset-password",
            Json(json!({"token": "a".repeat(43), "new_password": "a brand new password"})),
            400,
            "invalid_reset_token",
            None,
        ),
        case(
            "reset malformed token",
            "/api/auth/reset-password",
            Json(json!({"token": "../../etc", "new_password": "a brand new password"})),
            400,
            "invalid_reset_token",
            None,
        ),
        case(
            "change without token",
            "/api/auth/change-password",
            Json(json!({"current_password": PASSWORD, "new_password": "a brand new password"})),
            401,
            "unauthorized",
            None,
        ),
    ];
    for c in cases {
        let answer = match c.body {
            Json(body) => app.post(c.path, &body).await,
            Raw(text, content_type) => app.post_raw(c.path, text, content_type).await,
            Bytes(bytes) => app.post_raw(c.path, bytes, Some("application/json")).await,
        };
        assert_eq!(answer.status, c.status, "{}: {:?}", c.what, answer.body);
        assert_eq!(answer.code(), c.code, "{}: {:?}", c.what, answer.body);
        if let Some(field) = c.field {
            assert!(
                answer.body["error"]["details"][field].is_array(),
                "{}: details name {field}: {:?}",
                c.what,
                answer.body
            );
        }
    }

    // Nothing was written: none of the refused registrations created a user, no mail went out,
    // and Ann's password is unchanged.
    for email in [
        "x@example.com",
        "wrongtype@example.com",
        "x1@example.com",
        "ct@example.com",
        "nopw@example.com",
        "noname@example.com",
        "short@example.com",
        "longpw@example.com",
        "longname@example.com",
        "country@example.com",
        "currency@example.com",
        "income@example.com",
        "decimals@example.com",
        "payday@example.com",
        "big@example.com",
        long_email.as_str(),
    ] {
        let stored = app.state.store.user_by_email(email).await.expect("store");
        assert!(stored.is_none(), "{email} was created");
    }
    assert!(app.mailer.sent().is_empty());
    assert_eq!(
        app.login("ann@example.com", PASSWORD).await.status,
        StatusCode::OK
    );
    app.cleanup().await;
}

async fn concurrent_refreshes_with_one_token_succeed_exactly_once(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let session = app.register("ann@example.com").await;
    let body = json!({"refresh_token": token(&session, "refresh_token")});
    let answers =
        futures::future::join_all((0..4).map(|_| app.post("/api/auth/refresh", &body))).await;
    let succeeded: Vec<&Value> = answers
        .iter()
        .filter(|a| a.status == StatusCode::OK)
        .map(|a| &a.body)
        .collect();
    // Exactly one wins: a token is marked used only once, and its family can only be revoked
    // by a request that saw it used, that is after the winner's rotation.
    assert_eq!(succeeded.len(), 1, "{answers:?}");
    assert!(answers
        .iter()
        .all(|a| a.status == StatusCode::OK || a.code() == "invalid_refresh_token"));
    // The losers presented a used token: the family is revoked, the winner's new token too.
    let next = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": token(succeeded[0], "refresh_token")}),
        )
        .await;
    assert_eq!(next.status, StatusCode::UNAUTHORIZED);
    app.cleanup().await;
}

async fn tokens_name_the_partnership_once_an_invitation_is_accepted(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com").await;
    let ben = app.register("ben@example.com").await;
    let claims = |session: &Value| {
        app.state
            .tokens
            .verify_access_token(&token(session, "access_token"))
            .expect("valid token")
    };
    assert_eq!(claims(&ann).pid, None);

    let invite = app
        .post_auth(
            "/api/partnerships/invite",
            &token(&ann, "access_token"),
            &json!({"email": "ben@example.com"}),
        )
        .await;
    assert!(invite.status.is_success(), "{:?}", invite.body);
    let partnership_id: uuid::Uuid = invite.body["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("partnership id");
    // A pending invitation is not a partnership yet.
    assert_eq!(
        claims(&app.login("ann@example.com", PASSWORD).await.body).pid,
        None
    );

    let accept = app
        .post_auth(
            &format!("/api/partnerships/accept/{partnership_id}"),
            &token(&ben, "access_token"),
            &json!({}),
        )
        .await;
    assert!(accept.status.is_success(), "{:?}", accept.body);
    assert_eq!(
        claims(&app.login("ben@example.com", PASSWORD).await.body).pid,
        Some(partnership_id)
    );
    let refreshed = app
        .post(
            "/api/auth/refresh",
            &json!({"refresh_token": token(&ann, "refresh_token")}),
        )
        .await;
    assert_eq!(claims(&refreshed.body).pid, Some(partnership_id));
    app.cleanup().await;
}

async fn api_rate_limit_per_ip_answers_429_with_retry_after(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.api_rate_limit = 3).await else {
        return;
    };
    for _ in 0..3 {
        let answer = app.get_with_authorization("/api/users/profile", None).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let limited = app.login("ann@example.com", PASSWORD).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.code(), "rate_limited");
    let retry_after: u64 = limited
        .headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!(
        (890..=900).contains(&retry_after),
        "Retry-After {retry_after}"
    );
    // Health probes are outside the limit.
    let health = app
        .client
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(health.status(), StatusCode::OK);
    app.cleanup().await;
}
