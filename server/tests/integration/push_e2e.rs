//! Push notifications end to end: a REST write by one partner reaches the other partner's
//! phone through the outbox and the FCM stand-in, worded as their privacy setting says, and
//! never the author's.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use splitsave_server::push::PushConfig;

use crate::common::{Backend, TestApp};
use crate::push_standins::fcm::FcmStandin;

on_both_backends!(an_offline_partner_gets_one_notification_worded_as_they_chose);

/// Polls the stand-in until it has `n` messages, or panics after 15 s.
async fn wait_for_messages(fcm: &FcmStandin, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got: Vec<Value> = fcm.received().into_iter().map(|m| m.body).collect();
        if got.len() >= n {
            return got;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {n} messages: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn an_offline_partner_gets_one_notification_worded_as_they_chose(backend: Backend) {
    let fcm = FcmStandin::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let account = dir.path().join("service-account.json");
    std::fs::write(&account, fcm.service_account_json()).expect("write the service account");
    let vars = [
        ("FCM_SERVICE_ACCOUNT_FILE", account.display().to_string()),
        ("FCM_ENDPOINT", fcm.endpoint()),
    ];
    let push = PushConfig::from_lookup(&|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("push configuration");
    let Some(app) = TestApp::spawn_with(backend, |c| c.push = push).await else {
        return;
    };
    app.state.start_push().expect("push starts");
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    for (who, token) in [(&ann, "ann-phone"), (&ben, "ben-phone")] {
        let (status, body) = app
            .post(
                "/api/devices",
                Some(&who.access_token),
                json!({"platform": "android", "fcm_token": token}),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }

    // Ann adds a sofa over the approval threshold; Ben is not connected.
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Sofa", "amount": "900.00", "category": "housing", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "approval requested: {body}");
    let got = wait_for_messages(&fcm, 1).await;
    let message = &got[0]["message"];
    assert_eq!(
        message["token"], "ben-phone",
        "only the partner is told: {got:?}"
    );
    let text = message["notification"]["body"].as_str().unwrap_or_default();
    assert!(
        text.starts_with("Ann asked for your approval: Sofa, 900.00"),
        "{text}"
    );
    assert_eq!(message["data"]["kind"], "approval_requested");

    // Ben keeps his lock screen private: the next one says who, not what.
    let (status, body) = app
        .put(
            "/api/users/notifications",
            Some(&ben.access_token),
            json!({"show_details": false}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .post(
            "/api/expenses",
            Some(&ann.access_token),
            json!({"name": "Television", "amount": "1200.00", "category": "other", "frequency": "monthly"}),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "approval requested: {body}");
    let got = wait_for_messages(&fcm, 2).await;
    let message = &got[1]["message"];
    assert_eq!(message["token"], "ben-phone");
    assert_eq!(
        message["notification"]["body"],
        "Ann asked for your approval"
    );
    assert!(!message.to_string().contains("Television"), "{message}");
    assert!(!message.to_string().contains("1200"), "{message}");
    // Each event once: nothing more arrives, and the outbox is empty.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.store.outbox_depth().await.expect("depth") > 0 {
        assert!(Instant::now() < deadline, "the outbox drains");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(fcm.received().len(), 2, "{:?}", fcm.received());
}
