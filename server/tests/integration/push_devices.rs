//! `/api/devices` and `/api/users/notifications` on both backends: registering FCM and Web Push
//! devices, listing and deleting them (never another user's), the 422 of each bad field with
//! nothing stored, a token registered again moving to its new owner, signing out removing the
//! session's devices, account deletion removing them all, and the preferences.

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_server::config::Environment;
use splitsave_server::store::NotificationPreferences;

use crate::common::{Backend, Session, TestApp, PASSWORD};

on_both_backends!(
    fcm_and_web_push_devices_are_registered_and_listed,
    a_device_is_deleted_by_its_owner_only,
    each_bad_field_is_named_and_nothing_is_stored,
    a_token_registered_again_moves_to_the_caller,
    signing_out_removes_the_devices_of_that_session_only,
    deleting_the_account_removes_every_device_and_preference,
    notification_preferences_round_trip,
    an_unknown_notification_kind_is_named_and_nothing_changes,
    in_production_a_web_push_endpoint_inside_the_network_is_refused,
);

/// The public key of RFC 8291's example, uncompressed, base64url.
const P256DH: &str =
    "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4";
/// Its authentication secret.
const AUTH: &str = "BTBZMqHH6r4Tts7J_aSIgg";

fn fcm(platform: &str, token: &str) -> Value {
    json!({"platform": platform, "fcm_token": token})
}

fn web_push(endpoint: &str) -> Value {
    json!({"platform": "web", "web_push": {"endpoint": endpoint, "keys": {"p256dh": P256DH, "auth": AUTH}}})
}

/// Registers a device; panics unless 201. Returns the answer.
async fn register(app: &TestApp, who: &Session, body: Value) -> Value {
    let (status, device) = app
        .post("/api/devices", Some(&who.access_token), body)
        .await;
    assert_eq!(status, StatusCode::CREATED, "{device}");
    device
}

/// The caller's device ids, in listed order.
async fn device_ids(app: &TestApp, who: &Session) -> Vec<String> {
    let (status, list) = app.get("/api/devices", Some(&who.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    list.as_array()
        .expect("a list")
        .iter()
        .map(|d| d["id"].as_str().expect("id").to_string())
        .collect()
}

async fn fcm_and_web_push_devices_are_registered_and_listed(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let phone = register(&app, &ann, fcm("ios", "fGz1:APA91bH-token")).await;
    assert_eq!(phone["platform"], "ios");
    assert_eq!(phone["kind"], "fcm");
    assert_eq!(phone["fcm_token"], "fGz1:APA91bH-token");
    assert_eq!(phone.get("web_push"), None);
    // Outside production a push service on this machine may be plain http.
    let endpoint = "http://127.0.0.1:9/push/abc";
    let browser = register(&app, &ann, web_push(endpoint)).await;
    assert_eq!(browser["platform"], "web");
    assert_eq!(browser["kind"], "web_push");
    assert_eq!(browser["web_push"], json!({"endpoint": endpoint}));
    assert_eq!(browser.get("fcm_token"), None);
    // The keys are never shown back.
    assert!(!browser.to_string().contains(AUTH), "{browser}");

    let (status, list) = app.get("/api/devices", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list, json!([phone, browser]));
    let ben = app.register("ben@example.com", "Ben").await;
    assert_eq!(device_ids(&app, &ben).await, Vec::<String>::new());
}

async fn a_device_is_deleted_by_its_owner_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let ben = app.register("ben@example.com", "Ben").await;
    let phone = register(&app, &ann, fcm("android", "ann-phone")).await;
    let id = phone["id"].as_str().expect("id");
    let path = format!("/api/devices/{id}");

    let (status, body) = app.delete(&path, Some(&ben.access_token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(device_ids(&app, &ann).await, [id]);

    let (status, _) = app.delete(&path, Some(&ann.access_token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(device_ids(&app, &ann).await, Vec::<String>::new());
    let (status, _) = app.delete(&path, Some(&ann.access_token), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = app
        .delete("/api/devices/not-a-uuid", Some(&ann.access_token), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

async fn each_bad_field_is_named_and_nothing_is_stored(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let keys = json!({"p256dh": P256DH, "auth": AUTH});
    let https = "https://push.example.com/x";
    let cases: Vec<(Value, Vec<&str>)> = vec![
        (json!({}), vec!["fcm_token", "platform"]),
        (json!({"fcm_token": "t"}), vec!["platform"]),
        (fcm("blackberry", "t"), vec!["platform"]),
        (fcm("android", ""), vec!["fcm_token"]),
        (fcm("android", "with space"), vec!["fcm_token"]),
        (fcm("android", &"a".repeat(4097)), vec!["fcm_token"]),
        (
            json!({"platform": "web", "fcm_token": "t", "web_push": {"endpoint": https, "keys": keys}}),
            vec!["web_push"],
        ),
        (
            json!({"platform": "ios", "web_push": {"endpoint": https, "keys": keys}}),
            vec!["platform"],
        ),
        (
            json!({"platform": "web", "web_push": {"endpoint": "http://push.example.com/x", "keys": keys}}),
            vec!["web_push.endpoint"],
        ),
        (
            json!({"platform": "web", "web_push": {"endpoint": format!("https://push.example.com/{}", "a".repeat(2048)), "keys": keys}}),
            vec!["web_push.endpoint"],
        ),
        (
            json!({"platform": "web", "web_push": {"keys": keys}}),
            vec!["web_push.endpoint"],
        ),
        (
            json!({"platform": "web", "web_push": {"endpoint": https, "keys": {"p256dh": "AAAA", "auth": AUTH}}}),
            vec!["web_push.keys.p256dh"],
        ),
        (
            json!({"platform": "web", "web_push": {"endpoint": https, "keys": {"p256dh": P256DH, "auth": "AAAA"}}}),
            vec!["web_push.keys.auth"],
        ),
        (
            json!({"platform": "web", "web_push": {"endpoint": https}}),
            vec!["web_push.keys.auth", "web_push.keys.p256dh"],
        ),
    ];
    for (body, fields) in cases {
        let (status, answer) = app
            .post("/api/devices", Some(&ann.access_token), body.clone())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
        let named: Vec<&str> = answer["error"]["details"]
            .as_object()
            .expect("details")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(named, fields, "{body}");
    }
    // A wrong JSON type is a malformed request.
    let (status, _) = app
        .post(
            "/api/devices",
            Some(&ann.access_token),
            json!({"platform": "web", "fcm_token": 42}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(device_ids(&app, &ann).await, Vec::<String>::new());
    assert_eq!(
        app.state
            .store
            .devices(ann.user_id)
            .await
            .expect("devices")
            .len(),
        0
    );
}

async fn a_token_registered_again_moves_to_the_caller(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let ben = app.register("ben@example.com", "Ben").await;
    let first = register(&app, &ann, fcm("android", "shared-phone")).await;
    let again = register(&app, &ann, fcm("android", "shared-phone")).await;
    assert_eq!(again["id"], first["id"]);
    assert_eq!(device_ids(&app, &ann).await.len(), 1);
    // Ben signs in on the same phone: the device notifies him, not Ann.
    let moved = register(&app, &ben, fcm("android", "shared-phone")).await;
    assert_eq!(moved["id"], first["id"]);
    assert_eq!(device_ids(&app, &ann).await, Vec::<String>::new());
    assert_eq!(
        device_ids(&app, &ben).await,
        [first["id"].as_str().expect("id")]
    );
    // The same holds for a Web Push endpoint.
    let endpoint = "https://push.example.com/sub/1";
    let browser = register(&app, &ann, web_push(endpoint)).await;
    let moved = register(&app, &ben, web_push(endpoint)).await;
    assert_eq!(moved["id"], browser["id"]);
    assert_eq!(device_ids(&app, &ann).await, Vec::<String>::new());
    assert_eq!(device_ids(&app, &ben).await.len(), 2);
}

async fn signing_out_removes_the_devices_of_that_session_only(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let phone_session = app.register("ann@example.com", "Ann").await;
    let laptop_session = app.login("ann@example.com", PASSWORD).await;
    let phone = register(&app, &phone_session, fcm("android", "phone")).await;
    let laptop = register(
        &app,
        &laptop_session,
        web_push("https://push.example.com/laptop"),
    )
    .await;
    let ben = app.register("ben@example.com", "Ben").await;
    let bens = register(&app, &ben, fcm("ios", "ben-phone")).await;
    // A refreshed access token still belongs to the phone's session.
    let (status, refreshed) = app
        .post(
            "/api/auth/refresh",
            None,
            json!({"refresh_token": phone_session.refresh_token}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    let phone_session = Session {
        access_token: refreshed["access_token"].as_str().expect("token").into(),
        refresh_token: refreshed["refresh_token"].as_str().expect("token").into(),
        ..phone_session
    };
    let tablet = register(&app, &phone_session, fcm("android", "phone-2")).await;

    let (status, _) = app
        .post(
            "/api/auth/logout",
            None,
            json!({"refresh_token": phone_session.refresh_token}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        device_ids(&app, &laptop_session).await,
        [laptop["id"].as_str().expect("id")]
    );
    assert_eq!(
        device_ids(&app, &ben).await,
        [bens["id"].as_str().expect("id")]
    );
    // Both devices of the phone's session are gone, not just listed elsewhere.
    for device in [&phone, &tablet] {
        let path = format!("/api/devices/{}", device["id"].as_str().expect("id"));
        let (status, _) = app
            .delete(&path, Some(&laptop_session.access_token), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
}

async fn deleting_the_account_removes_every_device_and_preference(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let other_session = app.login("ann@example.com", PASSWORD).await;
    register(&app, &ann, fcm("android", "phone")).await;
    register(&app, &other_session, web_push("https://push.example.com/a")).await;
    let (status, _) = app
        .put(
            "/api/users/notifications",
            Some(&ann.access_token),
            json!({"kinds": {"message": false}, "show_details": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let ben = app.register("ben@example.com", "Ben").await;
    register(&app, &ben, fcm("ios", "ben-phone")).await;

    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ann.access_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let store = &app.state.store;
    assert_eq!(store.devices(ann.user_id).await.expect("devices"), vec![]);
    assert_eq!(
        store
            .notification_preferences(ann.user_id)
            .await
            .expect("preferences"),
        NotificationPreferences::default()
    );
    assert_eq!(device_ids(&app, &ben).await.len(), 1);
    // The token is free again: whoever registers it next gets a new device.
    let cat = app.register("cat@example.com", "Cat").await;
    register(&app, &cat, fcm("android", "phone")).await;
    assert_eq!(device_ids(&app, &cat).await.len(), 1);
}

async fn notification_preferences_round_trip(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let token = Some(ann.access_token.as_str());
    let all_on = json!({
        "kinds": {
            "approval_requested": true, "approval_answered": true, "message": true,
            "invitation": true, "contributions_opened": true, "partner_paid": true,
            "goal_reached": true
        },
        "show_details": true
    });
    let (status, defaults) = app.get("/api/users/notifications", token).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(defaults, all_on);

    let (status, changed) = app
        .put(
            "/api/users/notifications",
            token,
            json!({"kinds": {"message": false, "partner_paid": false}, "show_details": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{changed}");
    let mut expected = all_on.clone();
    expected["kinds"]["message"] = json!(false);
    expected["kinds"]["partner_paid"] = json!(false);
    expected["show_details"] = json!(false);
    assert_eq!(changed, expected);
    assert_eq!(app.get("/api/users/notifications", token).await.1, expected);

    // What a change leaves out stays as it was.
    let (status, changed) = app
        .put(
            "/api/users/notifications",
            token,
            json!({"kinds": {"message": true}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expected["kinds"]["message"] = json!(true);
    assert_eq!(changed, expected);
    let (status, changed) = app
        .put(
            "/api/users/notifications",
            token,
            json!({"show_details": true}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    expected["show_details"] = json!(true);
    assert_eq!(changed, expected);
    // Another user's are their own.
    let ben = app.register("ben@example.com", "Ben").await;
    let (_, bens) = app
        .get("/api/users/notifications", Some(&ben.access_token))
        .await;
    assert_eq!(bens, all_on);
}

async fn an_unknown_notification_kind_is_named_and_nothing_changes(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let token = Some(ann.access_token.as_str());
    let (_, before) = app.get("/api/users/notifications", token).await;
    let (status, answer) = app
        .put(
            "/api/users/notifications",
            token,
            json!({"kinds": {"message": false, "horoscope": true}, "show_details": false}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{answer}");
    assert_eq!(
        answer["error"]["details"],
        json!({"kinds.horoscope": ["is not a notification kind"]})
    );
    assert_eq!(app.get("/api/users/notifications", token).await.1, before);
    let (status, _) = app
        .put(
            "/api/users/notifications",
            token,
            json!({"kinds": {"message": "no"}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// The server posts to whatever endpoint a subscription names: in production one that names
/// this machine, a private network or a cloud metadata address is refused, and nothing stored.
async fn in_production_a_web_push_endpoint_inside_the_network_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn_with(backend, |c| c.env = Environment::Production).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    for inside in [
        "https://169.254.169.254/latest/meta-data/iam",
        "https://127.0.0.1:6379/",
        "https://localhost/push",
        "https://10.0.0.7/push",
        "https://192.168.1.20/push",
        "https://[::1]/push",
        "https://[fd12::1]/push",
        "https://[::ffff:127.0.0.1]/push",
        "https://metadata.google.internal/computeMetadata/v1/",
        "http://127.0.0.1:8080/push",
    ] {
        let (status, answer) = app
            .post("/api/devices", Some(&ann.access_token), web_push(inside))
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{inside}: {answer}"
        );
        assert!(
            answer["error"]["details"]["web_push.endpoint"].is_array(),
            "{inside}: {answer}"
        );
    }
    assert_eq!(device_ids(&app, &ann).await, Vec::<String>::new());
    register(
        &app,
        &ann,
        web_push("https://updates.push.services.mozilla.com/wpush/v2/abc"),
    )
    .await;
    assert_eq!(device_ids(&app, &ann).await.len(), 1);
}
