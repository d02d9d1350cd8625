//! Profiles, invitations and partnerships through real HTTP, on SQLite and PostgreSQL.

use automerge::ReadDoc;
use reqwest::StatusCode;
use serde_json::json;
use splitsave_sync_core::ids::{DocumentId, PartnershipId};
use uuid::Uuid;

use crate::common::{Backend, TestApp, PASSWORD};

on_both_backends!(
    profile_shows_and_updates_the_callers_own_data,
    income_is_exact_and_follows_the_currency_decimals,
    avatar_and_allowance_are_set_at_registration_changed_and_cleared,
    bad_avatars_and_allowances_are_refused_and_change_nothing,
    the_allowance_follows_the_currency_decimals,
    the_partner_sees_the_avatar_but_not_the_allowance,
    invitation_then_acceptance_makes_an_active_partnership_with_a_document,
    an_invitation_waits_for_a_partner_who_registers_later,
    nobody_can_invite_themselves,
    a_second_partnership_is_refused,
    only_the_invitee_can_accept,
    declining_and_withdrawing_remove_the_invitation,
    partners_can_pause_and_resume,
    deleting_an_account_ends_the_partnership_and_frees_the_partner,
    account_deletion_needs_the_password,
    protected_endpoints_refuse_anonymous_callers,
);

async fn profile_shows_and_updates_the_callers_own_data(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app
        .register_with(json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann",
                               "currency": "EUR", "country": "DE", "payday": "25", "income": "3000.50"}))
        .await;
    let (status, profile) = app.get("/api/users/profile", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["email"], "ann@example.com");
    assert_eq!(profile["name"], "Ann");
    assert_eq!(profile["currency"], "EUR");
    assert_eq!(profile["country"], "DE");
    assert_eq!(profile["payday"], "25");
    assert_eq!(profile["income"], "3000.50");
    assert!(profile.get("password_hash").is_none());

    let (status, updated) = app
        .put(
            "/api/users/profile",
            Some(&ann.access_token),
            json!({"name": "  Annie ", "country": "fr", "payday": "last"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["name"], "Annie");
    assert_eq!(updated["country"], "FR");
    assert_eq!(updated["payday"], "last");
    assert_eq!(updated["currency"], "EUR", "absent fields stay");

    let (status, cleared) = app
        .put(
            "/api/users/profile",
            Some(&ann.access_token),
            json!({"country": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cleared["country"], serde_json::Value::Null);
    assert_eq!(cleared["payday"], "last");

    let (_, again) = app.get("/api/users/profile", Some(&ann.access_token)).await;
    assert_eq!(again["name"], "Annie");
    assert_eq!(again["country"], serde_json::Value::Null);
}

async fn income_is_exact_and_follows_the_currency_decimals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let token = Some(ann.access_token.as_str());
    let (status, body) = app
        .put(
            "/api/users/update-income",
            token,
            json!({"income": "4200.1"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["income"], "4200.10");
    let (status, body) = app
        .put(
            "/api/users/update-income",
            token,
            json!({"income": 1234.56}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["income"], "1234.56");
    let (status, body) = app
        .put(
            "/api/users/update-income",
            token,
            json!({"income": "10.005"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["details"]["income"].is_array());
    // A currency with no minor unit cannot hold the cents of the current income.
    let (status, body) = app
        .put("/api/users/profile", token, json!({"currency": "JPY"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["currency"].is_array());
    let (status, body) = app
        .put("/api/users/update-income", token, json!({"income": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["income"], serde_json::Value::Null);
    let (status, body) = app
        .put("/api/users/profile", token, json!({"currency": "JPY"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(profile["currency"], "JPY");
    assert_eq!(profile["income"], serde_json::Value::Null);

    // An income is shown at its currency's decimals on both backends: a zero too (PostgreSQL
    // stores any zero without its scale), and after a change to a currency with more decimals.
    let (status, body) = app
        .put(
            "/api/users/update-income",
            token,
            json!({"income": "20000"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = app
        .put("/api/users/profile", token, json!({"currency": "KWD"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["income"], "20000.000");
    let (_, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(profile["income"], "20000.000");
    let (status, body) = app
        .put("/api/users/update-income", token, json!({"income": "0"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["income"], "0.000");
    let (_, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(profile["income"], "0.000");
}

/// The profile fields as one JSON object, to compare what a view shows with what was written.
fn avatar_and_allowance(view: &serde_json::Value) -> serde_json::Value {
    json!({"avatar_url": view["avatar_url"], "personal_allowance": view["personal_allowance"]})
}

async fn avatar_and_allowance_are_set_at_registration_changed_and_cleared(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let body = json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann",
                      "currency": "EUR", "avatar_url": "https://cdn.example.com/ann.png",
                      "personal_allowance": "150.5"});
    let (status, registered) = app.post("/api/auth/register", None, body).await;
    assert_eq!(status, StatusCode::CREATED, "{registered}");
    let written = json!({"avatar_url": "https://cdn.example.com/ann.png",
                         "personal_allowance": "150.50"});
    assert_eq!(avatar_and_allowance(&registered["user"]), written);
    let ann = app.login("ann@example.com", PASSWORD).await;
    let token = Some(ann.access_token.as_str());
    let (status, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(avatar_and_allowance(&profile), written);

    // A change: the scheme is stored lower-case, a JSON number is an exact decimal too.
    let (status, updated) = app
        .put(
            "/api/users/profile",
            token,
            json!({"avatar_url": "HTTPS://img.example.org:8443/a/ann%20b.png?s=64#x",
                   "personal_allowance": 99.99}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let changed = json!({"avatar_url": "https://img.example.org:8443/a/ann%20b.png?s=64#x",
                         "personal_allowance": "99.99"});
    assert_eq!(avatar_and_allowance(&updated), changed);
    let (_, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(avatar_and_allowance(&profile), changed);
    let (status, session) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{session}");
    assert_eq!(avatar_and_allowance(&session["user"]), changed);

    // Absent fields stay; a zero allowance is an allowance, not a missing one.
    let (status, updated) = app
        .put(
            "/api/users/profile",
            token,
            json!({"name": "Annie", "personal_allowance": "0"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["avatar_url"], changed["avatar_url"]);
    assert_eq!(updated["personal_allowance"], "0.00");

    // `null` clears each, independently.
    let (status, cleared) = app
        .put("/api/users/profile", token, json!({"avatar_url": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(
        avatar_and_allowance(&cleared),
        json!({"avatar_url": null, "personal_allowance": "0.00"})
    );
    let (status, cleared) = app
        .put(
            "/api/users/profile",
            token,
            json!({"personal_allowance": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    let (_, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(
        avatar_and_allowance(&profile),
        json!({"avatar_url": null, "personal_allowance": null})
    );
    assert_eq!(profile["name"], "Annie");

    // Registering without them leaves both null.
    let ben = app.register("ben@example.com", "Ben").await;
    let (_, profile) = app.get("/api/users/profile", Some(&ben.access_token)).await;
    assert_eq!(
        avatar_and_allowance(&profile),
        json!({"avatar_url": null, "personal_allowance": null})
    );
}

async fn bad_avatars_and_allowances_are_refused_and_change_nothing(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app
        .register_with(
            json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann",
                              "currency": "USD", "avatar_url": "https://cdn.example.com/ann.png",
                              "personal_allowance": "150.00"}),
        )
        .await;
    let token = Some(ann.access_token.as_str());
    let (_, before) = app.get("/api/users/profile", token).await;
    let too_long = format!("https://cdn.example.com/{}", "a".repeat(2048 - 23));
    assert_eq!(too_long.len(), 2049);
    let bad_avatars = [
        json!(""),
        json!("http://cdn.example.com/ann.png"),
        json!("javascript:alert(1)"),
        json!("data:image/png;base64,iVBORw0KGgo="),
        json!("/avatars/ann.png"),
        json!("//cdn.example.com/ann.png"),
        json!("https://"),
        json!("https:///ann.png"),
        json!("https://user:pass@cdn.example.com/ann.png"),
        json!("https://cdn.example.com@evil.example/ann.png"),
        json!(" https://cdn.example.com/ann.png"),
        json!("https://cdn.example.com/a nn.png"),
        json!("https://cdn.example.com/ann.png\n"),
        json!("https://cdn.example.com/\u{0}"),
        json!("https://cdn.example.com\\@evil.example/"),
        json!("https://cdn.example.com/\"><script>"),
        json!("https://cdn.example.com/café.png"),
        json!(too_long),
    ];
    for bad in &bad_avatars {
        // With a valid change beside it: one invalid field writes nothing at all.
        let (status, body) = app
            .put(
                "/api/users/profile",
                token,
                json!({"name": "Changed", "avatar_url": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "validation_failed");
        assert!(
            body["error"]["details"]["avatar_url"].is_array(),
            "{bad}: {body}"
        );
    }
    let bad_allowances = [
        json!("-0.01"),
        json!(-5),
        json!("10.005"),
        json!("10000000000"),
    ];
    for bad in &bad_allowances {
        let (status, body) = app
            .put(
                "/api/users/profile",
                token,
                json!({"name": "Changed", "personal_allowance": bad}),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
        assert!(
            body["error"]["details"]["personal_allowance"].is_array(),
            "{bad}: {body}"
        );
    }
    // Wrong JSON types are malformed requests, as for every other field.
    for body in [
        json!({"avatar_url": 5}),
        json!({"personal_allowance": "lots"}),
    ] {
        let (status, answer) = app.put("/api/users/profile", token, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    }
    let (_, after) = app.get("/api/users/profile", token).await;
    assert_eq!(after, before, "nothing was written");

    // Registration refuses them the same way, naming each field, and creates no account.
    let (status, body) = app
        .post(
            "/api/auth/register",
            None,
            json!({"email": "ben@example.com", "password": PASSWORD, "name": "Ben",
                   "currency": "JPY", "avatar_url": "http://cdn.example.com/ben.png",
                   "personal_allowance": "10.5"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["avatar_url"].is_array(), "{body}");
    assert!(
        body["error"]["details"]["personal_allowance"].is_array(),
        "{body}"
    );
    assert!(app
        .state
        .store
        .user_by_email("ben@example.com")
        .await
        .expect("lookup")
        .is_none());
}

async fn the_allowance_follows_the_currency_decimals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app
        .register_with(
            json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann",
                              "currency": "USD", "personal_allowance": "150.50"}),
        )
        .await;
    let token = Some(ann.access_token.as_str());
    // A currency without a minor unit cannot hold the cents of the current allowance.
    let (status, body) = app
        .put("/api/users/profile", token, json!({"currency": "JPY"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["currency"].is_array(), "{body}");
    // An allowance sent with the new currency is checked against the new currency.
    let (status, body) = app
        .put(
            "/api/users/profile",
            token,
            json!({"currency": "JPY", "personal_allowance": "20000.5"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["details"]["personal_allowance"].is_array(),
        "{body}"
    );
    assert!(body["error"]["details"]["currency"].is_null(), "{body}");
    // An unknown currency is reported as such; the allowance is not judged against it.
    let (status, body) = app
        .put(
            "/api/users/profile",
            token,
            json!({"currency": "XYZ", "personal_allowance": "1"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["currency"].is_array(), "{body}");
    assert!(
        body["error"]["details"]["personal_allowance"].is_null(),
        "{body}"
    );
    let (_, profile) = app.get("/api/users/profile", token).await;
    assert_eq!(profile["currency"], "USD");
    assert_eq!(profile["personal_allowance"], "150.50");

    // Replacing the allowance in the same request lets the currency change.
    let (status, body) = app
        .put(
            "/api/users/profile",
            token,
            json!({"currency": "JPY", "personal_allowance": "20000"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["currency"], "JPY");
    assert_eq!(body["personal_allowance"], "20000");
    // Without a change of currency, the allowance is checked against the current one.
    let (status, body) = app
        .put(
            "/api/users/profile",
            token,
            json!({"personal_allowance": "0.5"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["details"]["personal_allowance"].is_array(),
        "{body}"
    );
    // A whole allowance fits any currency; three decimals fit a three-decimal one.
    let (status, body) = app
        .put("/api/users/profile", token, json!({"currency": "KWD"}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["personal_allowance"], "20000.000",
        "shown at KWD's scale"
    );
    let (status, body) = app
        .put(
            "/api/users/profile",
            token,
            json!({"personal_allowance": "12.345"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["personal_allowance"], "12.345");
    // Clearing it in the same request also lets the currency change.
    let (status, body) = app
        .put(
            "/api/users/profile",
            token,
            json!({"currency": "USD", "personal_allowance": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["personal_allowance"], serde_json::Value::Null);
}

async fn the_partner_sees_the_avatar_but_not_the_allowance(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app
        .register_with(
            json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann",
                              "currency": "USD", "avatar_url": "https://cdn.example.com/ann.png",
                              "personal_allowance": "150.00", "income": "4000"}),
        )
        .await;
    let ben = app.register("ben@example.com", "Ben").await;
    let (status, invitation) = app
        .post(
            "/api/partnerships/invite",
            Some(&ann.access_token),
            json!({"email": "ben@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    assert_eq!(
        invitation["inviter"]["avatar_url"],
        "https://cdn.example.com/ann.png"
    );
    let (_, listed) = app
        .get("/api/partnerships/invitations", Some(&ben.access_token))
        .await;
    let inviter = &listed["received"][0]["inviter"];
    assert_eq!(inviter["avatar_url"], "https://cdn.example.com/ann.png");
    assert!(inviter.get("personal_allowance").is_none(), "{inviter}");
    let id = invitation["id"].as_str().expect("id");
    let (status, active) = app
        .post(
            &format!("/api/partnerships/accept/{id}"),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{active}");
    assert_eq!(
        active["partner"]["avatar_url"],
        "https://cdn.example.com/ann.png"
    );

    // The partner view shows who the partner is, never their own budgeting.
    let (status, current) = app
        .get("/api/partnerships/current", Some(&ben.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{current}");
    let partner = current["partner"].as_object().expect("partner");
    let mut keys: Vec<&str> = partner.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["avatar_url", "email", "id", "name"]);
    assert_eq!(partner["avatar_url"], "https://cdn.example.com/ann.png");
    // Ann sees Ben's (none set).
    let (_, current) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(current["partner"]["avatar_url"], serde_json::Value::Null);

    // A change of picture, and its removal, show at once.
    let (status, body) = app
        .put(
            "/api/users/profile",
            Some(&ann.access_token),
            json!({"avatar_url": "https://cdn.example.com/ann-2.png"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, current) = app
        .get("/api/partnerships/current", Some(&ben.access_token))
        .await;
    assert_eq!(
        current["partner"]["avatar_url"],
        "https://cdn.example.com/ann-2.png"
    );
    let (status, body) = app
        .put(
            "/api/users/profile",
            Some(&ann.access_token),
            json!({"avatar_url": null}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, current) = app
        .get("/api/partnerships/current", Some(&ben.access_token))
        .await;
    assert_eq!(current["partner"]["avatar_url"], serde_json::Value::Null);
}

async fn invitation_then_acceptance_makes_an_active_partnership_with_a_document(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app
        .register_with(
            json!({"email": "ann@example.com", "password": PASSWORD, "name": "Ann",
                               "currency": "USD", "income": "5000"}),
        )
        .await;
    let ben = app.register("ben@example.com", "Ben").await;

    let (status, invitation) = app
        .post(
            "/api/partnerships/invite",
            Some(&ann.access_token),
            json!({"email": "Ben@Example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    assert_eq!(invitation["invitee_email"], "ben@example.com");
    assert_eq!(invitation["currency"], "USD");
    assert_eq!(invitation["approval_threshold"], "100.00");
    assert_eq!(invitation["status"], "pending");
    let id = invitation["id"].as_str().expect("id").to_string();
    let mails = app.mailer.sent_to("ben@example.com");
    assert_eq!(mails.len(), 1, "the invitee is told by mail");
    assert!(mails[0].subject.contains("Ann"));

    let (status, pending) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(status, StatusCode::OK, "{pending}");
    assert_eq!(pending["status"], "pending");
    assert_eq!(pending["role"], "inviter");
    assert_eq!(pending["document_url"], serde_json::Value::Null);

    let (status, listed) = app
        .get("/api/partnerships/invitations", Some(&ben.access_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["received"][0]["id"], id.as_str());
    assert_eq!(listed["received"][0]["inviter"]["name"], "Ann");
    assert_eq!(listed["sent"], json!([]));

    let (status, active) = app
        .post(
            &format!("/api/partnerships/accept/{id}"),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{active}");
    assert_eq!(active["status"], "active");
    assert_eq!(active["role"], "invitee");
    assert_eq!(active["partner"]["email"], "ann@example.com");

    let pid: Uuid = id.parse().expect("uuid");
    let expected_url = DocumentId::for_partnership(PartnershipId(pid)).url();
    for session in [&ann, &ben] {
        let (status, current) = app
            .get("/api/partnerships/current", Some(&session.access_token))
            .await;
        assert_eq!(status, StatusCode::OK, "{current}");
        assert_eq!(current["id"], id.as_str());
        assert_eq!(current["status"], "active");
        assert_eq!(current["document_url"], expected_url.as_str());
    }

    // The first snapshot is a real partnership document with both members.
    let (snapshot, changes) = app.state.store.load_document(pid).await.expect("load");
    assert!(changes.is_empty());
    let doc = automerge::Automerge::load(&snapshot.expect("snapshot")).expect("valid document");
    let members = doc
        .get(automerge::ROOT, "members")
        .expect("read")
        .expect("members");
    let members_id = members.1;
    assert_eq!(doc.keys(&members_id).count(), 2);
    assert!(doc
        .get(&members_id, ann.user_id.to_string())
        .expect("read")
        .is_some());
    assert!(doc
        .get(&members_id, ben.user_id.to_string())
        .expect("read")
        .is_some());
    let (status, listed) = app
        .get("/api/partnerships/invitations", Some(&ben.access_token))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(listed["received"], json!([]));
}

async fn an_invitation_waits_for_a_partner_who_registers_later(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let (status, invitation) = app
        .post(
            "/api/partnerships/invite",
            Some(&ann.access_token),
            json!({"email": "later@example.com", "approval_threshold": "250.5"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{invitation}");
    assert_eq!(invitation["approval_threshold"], "250.50");
    let later = app.register("later@example.com", "Lee").await;
    let (_, listed) = app
        .get("/api/partnerships/invitations", Some(&later.access_token))
        .await;
    let id = listed["received"][0]["id"]
        .as_str()
        .expect("invitation")
        .to_string();
    let (status, active) = app
        .post(
            &format!("/api/partnerships/accept/{id}"),
            Some(&later.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{active}");
    assert_eq!(active["approval_threshold"], "250.50");
}

async fn nobody_can_invite_themselves(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let (status, body) = app
        .post(
            "/api/partnerships/invite",
            Some(&ann.access_token),
            json!({"email": "ANN@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "validation_failed");
    assert!(body["error"]["details"]["email"].is_array());
    let (status, _) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was created");
}

async fn a_second_partnership_is_refused(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let cat = app.register("cat@example.com", "Cat").await;
    for session in [&ann, &ben] {
        let (status, body) = app
            .post(
                "/api/partnerships/invite",
                Some(&session.access_token),
                json!({"email": "cat@example.com"}),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "partnership_exists");
    }
    let (status, body) = app
        .post(
            "/api/partnerships/invite",
            Some(&cat.access_token),
            json!({"email": "ann@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "partner_has_partnership");
    let (status, body) = app
        .post(
            "/api/partnerships/invite",
            Some(&cat.access_token),
            json!({"email": "dan@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = app
        .post(
            "/api/partnerships/invite",
            Some(&cat.access_token),
            json!({"email": "eve@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "partnership_exists");
}

async fn only_the_invitee_can_accept(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let eve = app.register("eve@example.com", "Eve").await;
    let (_, invitation) = app
        .post(
            "/api/partnerships/invite",
            Some(&ann.access_token),
            json!({"email": "ben@example.com"}),
        )
        .await;
    let id = invitation["id"].as_str().expect("id").to_string();
    for session in [&eve, &ann] {
        let (status, body) = app
            .post(
                &format!("/api/partnerships/accept/{id}"),
                Some(&session.access_token),
                json!({}),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, body) = app
        .post(
            "/api/partnerships/accept/not-a-uuid",
            Some(&eve.access_token),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["code"], "bad_request");
    let (_, current) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(current["status"], "pending");
}

async fn declining_and_withdrawing_remove_the_invitation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let ben = app.register("ben@example.com", "Ben").await;
    let invite = |token: String| {
        let app = &app;
        async move {
            let (status, body) = app
                .post(
                    "/api/partnerships/invite",
                    Some(&token),
                    json!({"email": "ben@example.com"}),
                )
                .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["id"].as_str().expect("id").to_string()
        }
    };
    let id = invite(ann.access_token.clone()).await;
    let (status, body) = app
        .delete(
            &format!("/api/partnerships/decline/{id}"),
            Some(&ben.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (_, listed) = app
        .get("/api/partnerships/invitations", Some(&ben.access_token))
        .await;
    assert_eq!(listed["received"], json!([]));
    let (status, _) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = app
        .post(
            &format!("/api/partnerships/accept/{id}"),
            Some(&ben.access_token),
            json!({}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a declined invitation cannot be accepted"
    );

    let id = invite(ann.access_token.clone()).await;
    let (status, _) = app
        .delete(
            &format!("/api/partnerships/decline/{id}"),
            Some(&ann.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "the inviter withdraws");
    let (status, body) = app
        .delete(
            &format!("/api/partnerships/decline/{id}"),
            Some(&ann.access_token),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
}

async fn partners_can_pause_and_resume(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, _) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&ben.access_token),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "paused");
    let (_, current) = app
        .get("/api/partnerships/current", Some(&ann.access_token))
        .await;
    assert_eq!(current["status"], "paused");
    assert!(
        current["document_url"].is_string(),
        "a paused partnership keeps its document"
    );
    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&ann.access_token),
            json!({"status": "active"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "active");
    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&ann.access_token),
            json!({"status": "pending"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

    let cat = app.register("cat@example.com", "Cat").await;
    let (status, _) = app
        .put(
            "/api/partnerships/status",
            Some(&cat.access_token),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no partnership to pause");
    app.post(
        "/api/partnerships/invite",
        Some(&cat.access_token),
        json!({"email": "dan@example.com"}),
    )
    .await;
    let (status, body) = app
        .put(
            "/api/partnerships/status",
            Some(&cat.access_token),
            json!({"status": "paused"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"]["code"], "partnership_not_active");
}

async fn deleting_an_account_ends_the_partnership_and_frees_the_partner(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ann.access_token),
            Some(json!({"password": PASSWORD})),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");

    // Ann is gone: her token, her login and her data.
    let (status, _) = app.get("/api/users/profile", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = app
        .post(
            "/api/auth/login",
            None,
            json!({"email": "ann@example.com", "password": PASSWORD}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(app
        .state
        .store
        .user_by_email("ann@example.com")
        .await
        .expect("read")
        .is_none());
    // The partnership and its document are gone; Ben keeps his account and can pair again.
    assert_eq!(
        app.state.store.load_document(pid).await.expect("load"),
        (None, vec![])
    );
    let (status, _) = app
        .get("/api/partnerships/current", Some(&ben.access_token))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, profile) = app.get("/api/users/profile", Some(&ben.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["email"], "ben@example.com");
    let (status, body) = app
        .post(
            "/api/partnerships/invite",
            Some(&ben.access_token),
            json!({"email": "cat@example.com"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn account_deletion_needs_the_password(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let ann = app.register("ann@example.com", "Ann").await;
    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ann.access_token),
            Some(json!({"password": "wrong password!"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"]["code"], "forbidden");
    let (status, body) = app
        .delete(
            "/api/users/account",
            Some(&ann.access_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["error"]["details"]["password"].is_array());
    let (status, _) = app.get("/api/users/profile", Some(&ann.access_token)).await;
    assert_eq!(status, StatusCode::OK, "the account is still there");
}

async fn protected_endpoints_refuse_anonymous_callers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let id = Uuid::now_v7();
    let cases = [
        (reqwest::Method::GET, "/api/users/profile".to_string()),
        (reqwest::Method::PUT, "/api/users/profile".to_string()),
        (reqwest::Method::PUT, "/api/users/update-income".to_string()),
        (reqwest::Method::DELETE, "/api/users/account".to_string()),
        (
            reqwest::Method::POST,
            "/api/partnerships/invite".to_string(),
        ),
        (
            reqwest::Method::GET,
            "/api/partnerships/invitations".to_string(),
        ),
        (
            reqwest::Method::POST,
            format!("/api/partnerships/accept/{id}"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/api/partnerships/decline/{id}"),
        ),
        (
            reqwest::Method::GET,
            "/api/partnerships/current".to_string(),
        ),
        (reqwest::Method::PUT, "/api/partnerships/status".to_string()),
    ];
    for (method, path) in cases {
        for token in [None, Some("not-a-jwt")] {
            let (status, body) = app
                .call(method.clone(), &path, token, Some(json!({})))
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{method} {path}");
        }
    }
}
