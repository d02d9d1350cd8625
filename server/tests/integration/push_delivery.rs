//! Push delivery (`splitsave_server::push`) over real HTTP to the local stand-ins of FCM (with
//! Google's token endpoint) and of a Web Push service: what each answer of theirs becomes, the
//! access-token cache, and what reaches the device.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant, SystemTime};

use splitsave_server::push::{
    generate_vapid_keys, Platform, PushConfig, PushMessage, PushTarget, Pusher, SendOutcome,
    VapidKeyPair,
};
use tempfile::TempDir;

use crate::push_standins::fcm::{FcmReply, FcmStandin, TokenReply, CLIENT_EMAIL, PROJECT_ID};
use crate::push_standins::test_only_key::TEST_ONLY_PRIVATE_KEY_PEM;
use crate::push_standins::webpush::{decrypt_aes128gcm, WebPushReply, WebPushStandin};

const SUBJECT: &str = "mailto:ops@splitsave.example";

fn message(collapse_key: &str) -> PushMessage {
    PushMessage {
        title: "Approval needed".into(),
        body: "Ann asks you to approve an expense".into(),
        data: BTreeMap::from([
            ("approval_id".to_string(), "0b5c0f5e-42".to_string()),
            ("partnership_id".to_string(), "7d1e".to_string()),
        ]),
        collapse_key: collapse_key.into(),
    }
}

fn device(token: &str, platform: Platform) -> PushTarget {
    PushTarget::Fcm {
        token: token.into(),
        platform,
    }
}

fn config(vars: &[(&str, String)]) -> PushConfig {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    PushConfig::from_lookup(&|name| vars.get(name).cloned()).expect("valid push configuration")
}

/// A pusher configured for the FCM stand-in through a service-account file, as in production
/// (the directory holding the file lives as long as the pusher is used).
fn fcm_pusher(standin: &FcmStandin) -> (Pusher, TempDir) {
    fcm_pusher_with_account(standin, &standin.service_account_json())
}

fn fcm_pusher_with_account(standin: &FcmStandin, account_json: &str) -> (Pusher, TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("service-account.json");
    std::fs::write(&file, account_json).expect("write the service account");
    let config = config(&[
        ("FCM_SERVICE_ACCOUNT_FILE", file.display().to_string()),
        ("FCM_ENDPOINT", standin.endpoint()),
    ]);
    (Pusher::new(&config).expect("pusher"), dir)
}

fn web_pusher(keys: &VapidKeyPair) -> Pusher {
    let config = config(&[
        ("VAPID_PRIVATE_KEY", keys.private_key.clone()),
        ("VAPID_PUBLIC_KEY", keys.public_key.clone()),
        ("VAPID_SUBJECT", SUBJECT.to_string()),
    ]);
    Pusher::new(&config).expect("pusher")
}

#[tokio::test]
async fn fcm_delivers_many_messages_with_one_token_exchange() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    let msg = message("approval-42");
    // Twenty sends find the cache empty at once: one exchange serves them all.
    let targets: Vec<_> = (0..20)
        .map(|i| device(&format!("token-{i}"), Platform::Android))
        .collect();
    let outcomes = futures::future::join_all(targets.iter().map(|t| pusher.send(t, &msg))).await;
    assert!(
        outcomes.iter().all(|o| *o == SendOutcome::Delivered),
        "{outcomes:?}"
    );
    for i in 0..5 {
        let target = device(&format!("later-{i}"), Platform::Ios);
        assert_eq!(pusher.send(&target, &msg).await, SendOutcome::Delivered);
    }
    assert_eq!(fcm.token_exchanges(), 1);
    assert_eq!(fcm.problems(), Vec::<String>::new());
    let received = fcm.received();
    assert_eq!(received.len(), 25);
    assert!(received.iter().all(|r| r.status == 200));
    let first = &received
        .iter()
        .find(|r| r.body["message"]["token"] == "token-0")
        .expect("token-0 received")
        .body["message"];
    assert_eq!(first["notification"]["title"], "Approval needed");
    assert_eq!(
        first["notification"]["body"],
        "Ann asks you to approve an expense"
    );
    assert_eq!(first["data"]["approval_id"], "0b5c0f5e-42");
    assert_eq!(first["android"]["priority"], "high");
    assert_eq!(first["apns"]["headers"]["apns-priority"], "10");
}

#[tokio::test]
async fn fcm_exchanges_a_new_token_before_the_old_one_expires() {
    let fcm = FcmStandin::start().await;
    // A 2-second token is used for its first half (the refresh margin is at most half the
    // lifetime), then replaced before the stand-in would refuse it.
    fcm.set_token_lifetime(2);
    let (pusher, _dir) = fcm_pusher(&fcm);
    let target = device("token-a", Platform::Android);
    assert_eq!(
        pusher.send(&target, &message("")).await,
        SendOutcome::Delivered
    );
    assert_eq!(fcm.token_exchanges(), 1);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut sends = 1;
    while fcm.token_exchanges() < 2 {
        assert!(
            Instant::now() < deadline,
            "no new token after {sends} sends"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            pusher.send(&target, &message("")).await,
            SendOutcome::Delivered
        );
        sends += 1;
    }
    assert_eq!(fcm.token_exchanges(), 2);
    assert_eq!(
        fcm.unauthenticated(),
        0,
        "the token was replaced before it expired, not after a 401"
    );
    assert_eq!(fcm.received().len(), sends);
}

#[tokio::test]
async fn fcm_unregistered_or_invalid_token_means_the_device_is_gone() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    fcm.script([FcmReply::Unregistered, FcmReply::InvalidToken]);
    let target = device("stale-token", Platform::Android);
    assert_eq!(pusher.send(&target, &message("")).await, SendOutcome::Gone);
    assert_eq!(pusher.send(&target, &message("")).await, SendOutcome::Gone);
    let statuses: Vec<u16> = fcm.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [404, 400]);
}

#[tokio::test]
async fn fcm_rate_limit_is_retried_after_what_retry_after_says() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    let in_30_s = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
    fcm.script([
        FcmReply::RateLimited {
            retry_after: "7".into(),
        },
        FcmReply::RateLimited {
            retry_after: in_30_s,
        },
    ]);
    let target = device("token", Platform::Android);
    assert_eq!(
        pusher.send(&target, &message("")).await,
        SendOutcome::Retry {
            after: Some(Duration::from_secs(7))
        }
    );
    let SendOutcome::Retry { after: Some(after) } = pusher.send(&target, &message("")).await else {
        panic!("an HTTP-date Retry-After is a retry with a wait");
    };
    // HTTP-dates have whole seconds, and the answer took a moment.
    assert!(
        after > Duration::from_secs(27) && after <= Duration::from_secs(30),
        "{after:?}"
    );
}

#[tokio::test]
async fn fcm_server_errors_are_retried() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    fcm.script([FcmReply::Unavailable, FcmReply::Internal]);
    let target = device("token", Platform::Android);
    for _ in 0..2 {
        assert_eq!(
            pusher.send(&target, &message("")).await,
            SendOutcome::Retry { after: None }
        );
    }
    let statuses: Vec<u16> = fcm.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [503, 500]);
}

#[tokio::test]
async fn fcm_other_bad_requests_are_rejected_with_fcms_reason() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    fcm.script([FcmReply::InvalidData]);
    let outcome = pusher
        .send(&device("token", Platform::Android), &message(""))
        .await;
    let SendOutcome::Rejected(why) = outcome else {
        panic!("not rejected: {outcome:?}");
    };
    assert!(why.contains("fcm 400: INVALID_ARGUMENT"), "{why}");
    assert!(why.contains("message.data[0].value"), "{why}");
}

#[tokio::test]
async fn fcm_401_drops_the_cached_token_and_delivers_with_a_new_one() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    let target = device("token", Platform::Android);
    assert_eq!(
        pusher.send(&target, &message("")).await,
        SendOutcome::Delivered
    );
    assert_eq!(fcm.token_exchanges(), 1);
    fcm.script([FcmReply::Unauthorized]);
    assert_eq!(
        pusher.send(&target, &message("")).await,
        SendOutcome::Delivered
    );
    assert_eq!(fcm.token_exchanges(), 2);
    let statuses: Vec<u16> = fcm.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [200, 401, 200]);
    // The new token stays cached.
    assert_eq!(
        pusher.send(&target, &message("")).await,
        SendOutcome::Delivered
    );
    assert_eq!(fcm.token_exchanges(), 2);
}

#[tokio::test]
async fn fcm_401_with_a_new_token_too_is_rejected_after_one_refresh() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    fcm.script([FcmReply::Unauthorized, FcmReply::Unauthorized]);
    let outcome = pusher
        .send(&device("token", Platform::Android), &message(""))
        .await;
    assert!(
        matches!(&outcome, SendOutcome::Rejected(why) if why.starts_with("fcm 401")),
        "{outcome:?}"
    );
    assert_eq!(fcm.token_exchanges(), 2);
    assert_eq!(fcm.received().len(), 2);
}

#[tokio::test]
async fn fcm_a_failed_token_exchange_fails_the_waiting_sends_without_repeating_it() {
    let fcm = FcmStandin::start().await;
    let (pusher, _dir) = fcm_pusher(&fcm);
    fcm.script_tokens([TokenReply::Unavailable]);
    let targets: Vec<_> = (0..10)
        .map(|i| device(&format!("token-{i}"), Platform::Android))
        .collect();
    let msg = message("");
    let outcomes = futures::future::join_all(targets.iter().map(|t| pusher.send(t, &msg))).await;
    assert!(
        outcomes
            .iter()
            .all(|o| *o == SendOutcome::Retry { after: None }),
        "{outcomes:?}"
    );
    assert_eq!(fcm.token_exchanges(), 1);
    assert!(fcm.received().is_empty());
    // The next send tries again.
    assert_eq!(
        pusher.send(&targets[0], &message("")).await,
        SendOutcome::Delivered
    );
    assert_eq!(fcm.token_exchanges(), 2);
}

#[tokio::test]
async fn fcm_token_endpoint_refuses_an_assertion_from_another_account() {
    let fcm = FcmStandin::start().await;
    let mut account: serde_json::Value = serde_json::from_str(&fcm.service_account_json()).unwrap();
    account["client_email"] = "intruder@elsewhere.iam.gserviceaccount.com".into();
    let (pusher, _dir) = fcm_pusher_with_account(&fcm, &account.to_string());
    let outcome = pusher
        .send(&device("token", Platform::Android), &message(""))
        .await;
    assert!(
        matches!(&outcome, SendOutcome::Rejected(why) if why.contains("token exchange refused")),
        "{outcome:?}"
    );
    let problems = fcm.problems();
    assert!(
        problems.len() == 1 && problems[0].contains("assertion refused"),
        "{problems:?}"
    );
    assert_eq!(fcm.token_exchanges(), 0);
    assert!(fcm.received().is_empty());
}

#[tokio::test]
async fn fcm_service_account_file_is_read_and_its_key_never_printed() {
    let fcm = FcmStandin::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sa.json");
    std::fs::write(&file, fcm.service_account_json()).unwrap();
    let from_file = config(&[("FCM_SERVICE_ACCOUNT_FILE", file.display().to_string())]);
    let fcm_config = from_file.fcm.as_ref().expect("fcm configured");
    assert_eq!(fcm_config.service_account.project_id, PROJECT_ID);
    assert_eq!(fcm_config.service_account.client_email, CLIENT_EMAIL);
    assert_eq!(
        fcm_config.token_uri,
        fcm.token_uri(),
        "the file's token_uri"
    );
    assert_eq!(fcm_config.endpoint, "https://fcm.googleapis.com");
    let overridden = config(&[
        ("FCM_SERVICE_ACCOUNT_FILE", file.display().to_string()),
        ("FCM_TOKEN_URI", "http://127.0.0.1:9/token".into()),
    ]);
    assert_eq!(
        overridden.fcm.as_ref().unwrap().token_uri,
        "http://127.0.0.1:9/token"
    );
    let shown = format!("{from_file:?} {from_file:#?}");
    let key_line = TEST_ONLY_PRIVATE_KEY_PEM.lines().nth(1).unwrap();
    assert!(!shown.contains(key_line), "{shown}");
    assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    assert!(shown.contains(PROJECT_ID), "{shown}");

    std::fs::write(
        &file,
        r#"{"project_id": "p", "client_email": "a@b", "private_key": "x"}"#,
    )
    .unwrap();
    let vars = HashMap::from([(
        "FCM_SERVICE_ACCOUNT_FILE".to_string(),
        file.display().to_string(),
    )]);
    let err = PushConfig::from_lookup(&|name| vars.get(name).cloned()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("FCM_SERVICE_ACCOUNT_FILE is invalid"),
        "{err}"
    );
}

#[tokio::test]
async fn collapse_key_reaches_both_services() {
    let fcm = FcmStandin::start().await;
    let (fcm_pusher, _dir) = fcm_pusher(&fcm);
    for platform in [Platform::Android, Platform::Ios, Platform::Web] {
        let outcome = fcm_pusher
            .send(&device("token", platform), &message("approval-42"))
            .await;
        assert_eq!(outcome, SendOutcome::Delivered, "{platform:?}");
    }
    for received in fcm.received() {
        let m = &received.body["message"];
        assert_eq!(m["android"]["collapse_key"], "approval-42");
        assert_eq!(m["apns"]["headers"]["apns-collapse-id"], "approval-42");
    }
    assert_eq!(
        fcm.received()[2].body["message"]["webpush"]["headers"]["Topic"],
        "approval-42"
    );

    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let web = web_pusher(&keys);
    let subscription = service.subscribe();
    let long_key = "approval:0b5c0f5e-4242-4242-4242-424242424242";
    for key in ["approval-42", long_key] {
        assert_eq!(
            web.send(&subscription.target(), &message(key)).await,
            SendOutcome::Delivered
        );
    }
    let received = service.received();
    assert_eq!(received[0].topic.as_deref(), Some("approval-42"));
    let hashed = received[1].topic.clone().expect("a topic for a long key");
    assert_eq!(hashed.len(), 32);
    let sent: serde_json::Value = serde_json::from_slice(&received[1].plaintext).unwrap();
    assert_eq!(sent["collapse_key"], long_key, "the payload keeps the key");
}

#[tokio::test]
async fn web_push_delivers_and_the_service_decrypts_the_exact_json() {
    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let pusher = web_pusher(&keys);
    let subscription = service.subscribe();
    let msg = message("approval-42");
    assert_eq!(
        pusher.send(&subscription.target(), &msg).await,
        SendOutcome::Delivered
    );
    assert_eq!(service.refusals(), Vec::<String>::new());
    let received = service.received();
    assert_eq!(received.len(), 1);
    let push = &received[0];
    assert_eq!(push.plaintext, serde_json::to_vec(&msg).unwrap());
    let json: serde_json::Value = serde_json::from_slice(&push.plaintext).unwrap();
    assert_eq!(json["title"], "Approval needed");
    assert_eq!(json["data"]["approval_id"], "0b5c0f5e-42");
    assert_eq!(push.status, 201);
    assert_eq!(push.ttl, 24 * 60 * 60);
    assert_eq!(push.urgency.as_deref(), Some("high"));
    assert_eq!(push.vapid_subject, SUBJECT);
}

/// A subscription stored before the rule, or one whose name resolves inside the network, is
/// not posted to in production: the same local service that takes it in development is never
/// reached.
#[tokio::test]
async fn web_push_in_production_never_posts_inside_the_network() {
    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let mut config = config(&[
        ("VAPID_PRIVATE_KEY", keys.private_key.clone()),
        ("VAPID_PUBLIC_KEY", keys.public_key.clone()),
        ("VAPID_SUBJECT", SUBJECT.to_string()),
    ]);
    config.public_endpoints_only = true;
    let pusher = Pusher::new(&config).expect("pusher");
    let subscription = service.subscribe();
    let msg = message("approval-42");
    let PushTarget::WebPush {
        endpoint,
        p256dh,
        auth,
    } = subscription.target()
    else {
        panic!("a web push target");
    };
    let port = endpoint
        .trim_start_matches("http://127.0.0.1:")
        .split('/')
        .next()
        .expect("port")
        .to_string();
    for inside in [
        endpoint.clone(),
        endpoint.replacen("http://", "https://", 1),
        format!("https://localhost:{port}/push"),
        format!("https://[::1]:{port}/push"),
        "https://169.254.169.254/latest/meta-data".to_string(),
    ] {
        let target = PushTarget::WebPush {
            endpoint: inside.clone(),
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        };
        let outcome = pusher.send(&target, &msg).await;
        assert!(
            matches!(outcome, SendOutcome::Rejected(_)),
            "{inside}: {outcome:?}"
        );
    }
    assert!(service.received().is_empty());
    // The development configuration reaches the same service.
    assert_eq!(
        web_pusher(&keys).send(&subscription.target(), &msg).await,
        SendOutcome::Delivered
    );
}

#[tokio::test]
async fn web_push_signed_with_another_key_is_refused_by_the_service() {
    let subscribed_with = generate_vapid_keys();
    let service = WebPushStandin::start(&subscribed_with.public_key).await;
    let subscription = service.subscribe();
    let other = generate_vapid_keys();
    let outcome = web_pusher(&other)
        .send(&subscription.target(), &message(""))
        .await;
    assert!(
        matches!(&outcome, SendOutcome::Rejected(why) if why.starts_with("web push 401")),
        "{outcome:?}"
    );
    let refusals = service.refusals();
    assert!(
        refusals.len() == 1 && refusals[0].contains("vapid: signature or claims refused"),
        "{refusals:?}"
    );
    assert!(service.received().is_empty());
    // The same subscription with the right key goes through.
    assert_eq!(
        web_pusher(&subscribed_with)
            .send(&subscription.target(), &message(""))
            .await,
        SendOutcome::Delivered
    );
}

#[tokio::test]
async fn web_push_404_and_410_mean_the_subscription_is_gone() {
    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let pusher = web_pusher(&keys);
    let subscription = service.subscribe();
    service.script([WebPushReply::Gone, WebPushReply::NotFound]);
    for _ in 0..2 {
        assert_eq!(
            pusher.send(&subscription.target(), &message("")).await,
            SendOutcome::Gone
        );
    }
    let statuses: Vec<u16> = service.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [410, 404]);
}

#[tokio::test]
async fn web_push_rate_limit_is_retried_after_what_retry_after_says() {
    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let pusher = web_pusher(&keys);
    let subscription = service.subscribe();
    service.script([WebPushReply::TooManyRequests {
        retry_after: "120".into(),
    }]);
    assert_eq!(
        pusher.send(&subscription.target(), &message("")).await,
        SendOutcome::Retry {
            after: Some(Duration::from_secs(120))
        }
    );
}

#[tokio::test]
async fn web_push_timeouts_and_refused_connections_are_retried() {
    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let subscription = service.subscribe();
    // A server that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    // A port nobody listens on any more.
    let closed_addr = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let mut config = config(&[
        ("VAPID_PRIVATE_KEY", keys.private_key.clone()),
        ("VAPID_PUBLIC_KEY", keys.public_key.clone()),
        ("VAPID_SUBJECT", SUBJECT.to_string()),
    ]);
    config.request_timeout = Duration::from_millis(300);
    let pusher = Pusher::new(&config).unwrap();
    for addr in [silent_addr, closed_addr] {
        let target = PushTarget::WebPush {
            endpoint: format!("http://{addr}/push/x"),
            p256dh: subscription.p256dh.clone(),
            auth: subscription.auth.clone(),
        };
        let started = Instant::now();
        assert_eq!(
            pusher.send(&target, &message("")).await,
            SendOutcome::Retry { after: None },
            "{addr}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    holder.abort();
}

#[tokio::test]
async fn web_push_message_too_large_is_rejected_without_a_request() {
    let keys = generate_vapid_keys();
    let service = WebPushStandin::start(&keys.public_key).await;
    let subscription = service.subscribe();
    let mut msg = message("");
    msg.body = "x".repeat(4000);
    let outcome = web_pusher(&keys).send(&subscription.target(), &msg).await;
    assert!(
        matches!(&outcome, SendOutcome::Rejected(why) if why.contains("more than 4096")),
        "{outcome:?}"
    );
    assert!(service.received().is_empty() && service.refusals().is_empty());
}

/// The stand-in's own decryption reads RFC 8291's worked example (Appendix A), so a
/// delivery it decrypts is one a browser would.
#[test]
fn web_push_standin_decrypts_the_rfc_8291_example() {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
    let body = decode(
        "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN",
    );
    let ua_private =
        p256::SecretKey::from_slice(&decode("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94"))
            .unwrap();
    let auth: [u8; 16] = decode("BTBZMqHH6r4Tts7J_aSIgg").try_into().unwrap();
    assert_eq!(
        decrypt_aes128gcm(&body, &ua_private, &auth).unwrap(),
        b"When I grow up, I want to be a watermelon"
    );
    let mut tampered = body.clone();
    *tampered.last_mut().unwrap() ^= 1;
    assert!(decrypt_aes128gcm(&tampered, &ua_private, &auth).is_err());
}

#[tokio::test]
async fn vapid_keys_command_prints_a_pair_the_push_service_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_splitsave"))
        .arg("vapid-keys")
        .env_clear()
        .current_dir(dir.path())
        .output()
        .expect("run splitsave vapid-keys");
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let keys = VapidKeyPair {
        private_key: lines[0]
            .strip_prefix("VAPID_PRIVATE_KEY=")
            .expect("private key line")
            .to_string(),
        public_key: lines[1]
            .strip_prefix("VAPID_PUBLIC_KEY=")
            .expect("public key line")
            .to_string(),
    };
    let service = WebPushStandin::start(&keys.public_key).await;
    let subscription = service.subscribe();
    assert_eq!(
        web_pusher(&keys)
            .send(&subscription.target(), &message(""))
            .await,
        SendOutcome::Delivered
    );
    assert_eq!(service.received().len(), 1);
}
