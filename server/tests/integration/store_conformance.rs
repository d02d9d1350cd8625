//! One store test suite, run against both backends: every function below runs once on a fresh
//! SQLite file and once on a fresh PostgreSQL database (skipped, with a message, when
//! `TEST_DATABASE_URL` is unset).

use std::sync::Arc;

use chrono::{Duration, Utc};
use rust_decimal::Decimal;
use splitsave_server::store::*;
use uuid::Uuid;

use crate::common::{is_conflict, Backend, TestDb};

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::TestDb::new(super::Backend::Sqlite).await.expect("sqlite");
                    super::$name(db.store().await).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() {
                    let Some(db) = super::TestDb::new(super::Backend::Postgres).await else {
                        return;
                    };
                    super::$name(db.store().await).await;
                }
            )*
        }
    };
}

conformance!(
    ping_answers,
    emails_are_lower_cased_and_unique,
    users_are_found_by_id_and_email,
    profile_update_changes_only_given_fields,
    income_keeps_its_exact_decimal,
    last_seen_is_recorded,
    set_password_bumps_version_and_revokes_refresh_tokens,
    a_refresh_token_rotates_once,
    revoking_a_family_revokes_every_token_in_it,
    logout_revokes_one_token,
    a_password_reset_is_single_use_and_expires,
    an_accepted_invitation_is_active_with_a_first_snapshot,
    a_user_holds_at_most_one_partnership,
    only_the_invited_email_may_accept,
    accepting_withdraws_other_invitations_to_the_same_user,
    concurrent_acceptances_leave_one_partnership,
    invitations_are_listed_for_invitee_and_inviter,
    decline_and_withdraw_delete_the_invitation,
    pause_and_resume_need_an_active_member,
    appended_changes_are_idempotent_and_ordered,
    compaction_replaces_snapshot_and_covered_changes,
    an_actor_is_bound_to_one_member,
    deleting_a_user_ends_the_partnership_and_frees_the_partner,
);

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        email: email.to_string(),
        password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".to_string(),
        name: "Ann".to_string(),
        currency: "USD".to_string(),
        country: Some("US".to_string()),
        income: Some(Decimal::new(420050, 2)),
        payday: Some("25".to_string()),
        avatar_url: Some("https://cdn.example.com/ann.png".to_string()),
        personal_allowance: Some(Decimal::new(15000, 2)),
    }
}

async fn user(store: &Arc<dyn Store>, email: &str) -> UserRecord {
    store
        .create_user(new_user(email))
        .await
        .expect("create user")
}

fn invitation(inviter: Uuid, email: &str) -> NewInvitation {
    NewInvitation {
        id: Uuid::now_v7(),
        inviter_id: inviter,
        invitee_email: email.to_string(),
        currency: "USD".to_string(),
        approval_threshold: Decimal::from(100),
        now: Utc::now(),
    }
}

fn snapshot(bytes: &[u8]) -> NewSnapshot {
    NewSnapshot {
        version: 0,
        bytes: bytes.to_vec(),
        heads: vec!["ab".repeat(32)],
        change_count: 1,
    }
}

fn acceptance(partnership_id: Uuid, user: &UserRecord) -> AcceptInvitation {
    AcceptInvitation {
        partnership_id,
        user_id: user.id,
        email: user.email.clone(),
        snapshot: snapshot(b"first snapshot"),
        now: Utc::now(),
    }
}

/// Ann invites Ben, Ben accepts; returns both and the partnership.
async fn couple(store: &Arc<dyn Store>) -> (UserRecord, UserRecord, PartnershipRecord) {
    let ann = user(
        store,
        &format!("ann-{}@example.com", Uuid::new_v4().simple()),
    )
    .await;
    let ben = user(
        store,
        &format!("ben-{}@example.com", Uuid::new_v4().simple()),
    )
    .await;
    let inv = store
        .create_invitation(invitation(ann.id, &ben.email))
        .await
        .expect("invite");
    let p = store
        .accept_invitation(acceptance(inv.id, &ben))
        .await
        .expect("accept");
    (ann, ben, p)
}

fn refresh(user_id: Uuid, family_id: Uuid) -> NewRefreshToken {
    NewRefreshToken {
        id: Uuid::now_v7(),
        user_id,
        family_id,
        token_hash: hex_of(Uuid::new_v4()),
        expires_at: Utc::now() + Duration::days(30),
    }
}

fn hex_of(id: Uuid) -> String {
    id.simple().to_string()
}

fn change(hash: &str, seq: i64, user: Option<Uuid>) -> NewChange {
    NewChange {
        hash: hash.to_string(),
        actor: "0a0b".to_string(),
        seq,
        user_id: user,
        bytes: format!("change {hash}").into_bytes(),
    }
}

async fn ping_answers(store: Arc<dyn Store>) {
    store.ping().await.expect("ping");
}

async fn emails_are_lower_cased_and_unique(store: Arc<dyn Store>) {
    let created = user(&store, "Ann.Smith@Example.COM").await;
    assert_eq!(created.email, "ann.smith@example.com");
    assert_eq!(created.token_version, 0);
    let again = store.create_user(new_user("ann.smith@example.com")).await;
    assert!(is_conflict(again, "email_taken"));
    let other_case = store.create_user(new_user("ANN.SMITH@example.com")).await;
    assert!(is_conflict(other_case, "email_taken"));
}

async fn users_are_found_by_id_and_email(store: Arc<dyn Store>) {
    let created = user(&store, "ann@example.com").await;
    let by_id = store
        .user_by_id(created.id)
        .await
        .expect("by id")
        .expect("found");
    assert_eq!(by_id, created);
    let by_email = store
        .user_by_email("ANN@example.com")
        .await
        .expect("by email")
        .expect("found");
    assert_eq!(by_email.id, created.id);
    assert_eq!(by_email.income, Some(Decimal::new(420050, 2)));
    assert_eq!(by_email.country.as_deref(), Some("US"));
    assert_eq!(by_email.payday.as_deref(), Some("25"));
    assert_eq!(
        by_email.avatar_url.as_deref(),
        Some("https://cdn.example.com/ann.png")
    );
    assert_eq!(by_email.personal_allowance, Some(Decimal::new(15000, 2)));
    assert!(store
        .user_by_id(Uuid::now_v7())
        .await
        .expect("lookup")
        .is_none());
    assert!(store
        .user_by_email("nobody@example.com")
        .await
        .expect("lookup")
        .is_none());
}

async fn profile_update_changes_only_given_fields(store: Arc<dyn Store>) {
    let created = user(&store, "ann@example.com").await;
    let renamed = store
        .update_profile(
            created.id,
            ProfileUpdate {
                name: Some("Annie".into()),
                ..Default::default()
            },
        )
        .await
        .expect("rename");
    assert_eq!(renamed.name, "Annie");
    assert_eq!(renamed.country.as_deref(), Some("US"));
    assert_eq!(renamed.payday.as_deref(), Some("25"));
    assert_eq!(renamed.currency, "USD");
    assert_eq!(renamed.avatar_url, created.avatar_url);
    assert_eq!(renamed.personal_allowance, Some(Decimal::new(15000, 2)));
    let cleared = store
        .update_profile(
            created.id,
            ProfileUpdate {
                currency: Some("EUR".into()),
                country: Some(None),
                payday: Some(Some("last".into())),
                avatar_url: Some(None),
                personal_allowance: Some(Some(Decimal::new(123456789012, 3))),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(cleared.name, "Annie");
    assert_eq!(cleared.currency, "EUR");
    assert_eq!(cleared.country, None);
    assert_eq!(cleared.payday.as_deref(), Some("last"));
    assert_eq!(cleared.avatar_url, None);
    // Exact, scale kept: 123456789.012 reads back with its three decimals on both backends.
    assert_eq!(
        cleared.personal_allowance.map(|d| d.to_string()).as_deref(),
        Some("123456789.012")
    );
    let swapped = store
        .update_profile(
            created.id,
            ProfileUpdate {
                avatar_url: Some(Some("https://img.example.org/a.png".into())),
                personal_allowance: Some(None),
                ..Default::default()
            },
        )
        .await
        .expect("update");
    assert_eq!(
        swapped.avatar_url.as_deref(),
        Some("https://img.example.org/a.png")
    );
    assert_eq!(swapped.personal_allowance, None);
    assert_eq!(
        swapped.payday.as_deref(),
        Some("last"),
        "absent fields stay"
    );
    assert!(cleared.updated_at >= created.updated_at);
    let missing = store
        .update_profile(Uuid::now_v7(), ProfileUpdate::default())
        .await;
    assert!(matches!(missing, Err(StoreError::NotFound)));
}

async fn income_keeps_its_exact_decimal(store: Arc<dyn Store>) {
    let created = user(&store, "ann@example.com").await;
    for income in ["0.10", "1234567890.12", "0", "99999.999"] {
        let value: Decimal = income.parse().expect("decimal");
        let updated = store
            .update_income(created.id, Some(value))
            .await
            .expect("income");
        assert_eq!(
            updated.income.map(|d| d.to_string()),
            Some(income.to_string())
        );
        let read = store
            .user_by_id(created.id)
            .await
            .expect("read")
            .expect("found");
        assert_eq!(read.income.map(|d| d.to_string()), Some(income.to_string()));
    }
    let cleared = store.update_income(created.id, None).await.expect("clear");
    assert_eq!(cleared.income, None);
}

async fn last_seen_is_recorded(store: Arc<dyn Store>) {
    let created = user(&store, "ann@example.com").await;
    assert_eq!(created.last_seen, None);
    let now = Utc::now();
    store.touch_last_seen(created.id, now).await.expect("touch");
    let read = store
        .user_by_id(created.id)
        .await
        .expect("read")
        .expect("found");
    let seen = read.last_seen.expect("last seen");
    assert!((seen - now).num_milliseconds().abs() < 1, "{seen} vs {now}");
    // A write that finished late, with an earlier time, does not move it back.
    store
        .touch_last_seen(created.id, now - chrono::Duration::seconds(5))
        .await
        .expect("touch");
    let read = store.user_by_id(created.id).await.expect("read");
    assert_eq!(read.expect("found").last_seen, Some(seen));
}

async fn set_password_bumps_version_and_revokes_refresh_tokens(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let token = refresh(ann.id, Uuid::now_v7());
    store
        .insert_refresh_token(token.clone())
        .await
        .expect("insert");
    let version = store
        .set_password(ann.id, "new-hash")
        .await
        .expect("set password");
    assert_eq!(version, 1);
    let read = store
        .user_by_id(ann.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read.password_hash, "new-hash");
    assert_eq!(read.token_version, 1);
    let stored = store
        .refresh_token_by_hash(&token.token_hash)
        .await
        .expect("read")
        .expect("found");
    assert!(stored.revoked_at.is_some());
    assert_eq!(store.set_password(ann.id, "newer").await.expect("again"), 2);
    assert!(matches!(
        store.set_password(Uuid::now_v7(), "x").await,
        Err(StoreError::NotFound)
    ));
}

async fn a_refresh_token_rotates_once(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let family = Uuid::now_v7();
    let first = refresh(ann.id, family);
    store
        .insert_refresh_token(first.clone())
        .await
        .expect("insert");
    let stored = store
        .refresh_token_by_hash(&first.token_hash)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(stored.family_id, family);
    assert_eq!(stored.user_id, ann.id);
    assert!(stored.used_at.is_none() && stored.revoked_at.is_none());

    let second = refresh(ann.id, family);
    assert!(store
        .rotate_refresh_token(first.id, second.clone(), Utc::now())
        .await
        .expect("rotate"));
    let used = store
        .refresh_token_by_hash(&first.token_hash)
        .await
        .expect("read")
        .expect("found");
    assert!(used.used_at.is_some());
    assert!(store
        .refresh_token_by_hash(&second.token_hash)
        .await
        .expect("read")
        .is_some());

    let third = refresh(ann.id, family);
    assert!(!store
        .rotate_refresh_token(first.id, third.clone(), Utc::now())
        .await
        .expect("rotate again"));
    assert!(store
        .refresh_token_by_hash(&third.token_hash)
        .await
        .expect("read")
        .is_none());
}

async fn revoking_a_family_revokes_every_token_in_it(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let family = Uuid::now_v7();
    let a = refresh(ann.id, family);
    let b = refresh(ann.id, family);
    let other = refresh(ann.id, Uuid::now_v7());
    for t in [&a, &b, &other] {
        store.insert_refresh_token(t.clone()).await.expect("insert");
    }
    store
        .revoke_refresh_family(family, Utc::now())
        .await
        .expect("revoke");
    for t in [&a, &b] {
        let read = store
            .refresh_token_by_hash(&t.token_hash)
            .await
            .expect("read")
            .expect("found");
        assert!(read.revoked_at.is_some());
    }
    let untouched = store
        .refresh_token_by_hash(&other.token_hash)
        .await
        .expect("read")
        .expect("found");
    assert!(untouched.revoked_at.is_none());
    let next = refresh(ann.id, family);
    assert!(!store
        .rotate_refresh_token(b.id, next, Utc::now())
        .await
        .expect("rotate revoked"));
}

async fn logout_revokes_one_token(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let family = Uuid::now_v7();
    let a = refresh(ann.id, family);
    let b = refresh(ann.id, Uuid::now_v7());
    store.insert_refresh_token(a.clone()).await.expect("insert");
    store.insert_refresh_token(b.clone()).await.expect("insert");
    store
        .revoke_refresh_token(a.id, Utc::now())
        .await
        .expect("revoke");
    let read_a = store
        .refresh_token_by_hash(&a.token_hash)
        .await
        .expect("read")
        .expect("found");
    let read_b = store
        .refresh_token_by_hash(&b.token_hash)
        .await
        .expect("read")
        .expect("found");
    assert!(read_a.revoked_at.is_some());
    assert!(read_b.revoked_at.is_none());
}

async fn a_password_reset_is_single_use_and_expires(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let session = refresh(ann.id, Uuid::now_v7());
    store
        .insert_refresh_token(session.clone())
        .await
        .expect("insert");
    let now = Utc::now();
    let reset = NewPasswordReset {
        id: Uuid::now_v7(),
        user_id: ann.id,
        token_hash: "reset-1".into(),
        expires_at: now + Duration::minutes(30),
    };
    store
        .insert_password_reset(reset)
        .await
        .expect("insert reset");
    let expired = NewPasswordReset {
        id: Uuid::now_v7(),
        user_id: ann.id,
        token_hash: "reset-old".into(),
        expires_at: now - Duration::seconds(1),
    };
    store
        .insert_password_reset(expired)
        .await
        .expect("insert expired");

    assert_eq!(
        store
            .complete_password_reset("reset-old", "h", now)
            .await
            .expect("expired"),
        None
    );
    assert_eq!(
        store
            .complete_password_reset("unknown", "h", now)
            .await
            .expect("unknown"),
        None
    );
    assert_eq!(
        store
            .complete_password_reset("reset-1", "reset-hash", now)
            .await
            .expect("reset"),
        Some(ann.id)
    );
    let read = store
        .user_by_id(ann.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(read.password_hash, "reset-hash");
    assert_eq!(read.token_version, 1);
    let revoked = store
        .refresh_token_by_hash(&session.token_hash)
        .await
        .expect("read")
        .expect("found");
    assert!(revoked.revoked_at.is_some());
    assert_eq!(
        store
            .complete_password_reset("reset-1", "again", now)
            .await
            .expect("reuse"),
        None
    );
    let unchanged = store
        .user_by_id(ann.id)
        .await
        .expect("read")
        .expect("found");
    assert_eq!(unchanged.password_hash, "reset-hash");
}

async fn an_accepted_invitation_is_active_with_a_first_snapshot(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let ben = user(&store, "ben@example.com").await;
    let inv = store
        .create_invitation(invitation(ann.id, "Ben@Example.com"))
        .await
        .expect("invite");
    assert_eq!(inv.status, PartnershipStatus::Pending);
    assert_eq!(inv.user2_id, None);
    assert_eq!(inv.invitee_email, "ben@example.com");
    assert_eq!(inv.approval_threshold, Decimal::from(100));
    assert_eq!(
        store
            .current_partnership(ann.id)
            .await
            .expect("current")
            .map(|p| p.id),
        Some(inv.id)
    );
    assert_eq!(
        store.current_partnership(ben.id).await.expect("current"),
        None
    );
    assert_eq!(
        store.load_document(inv.id).await.expect("load"),
        (None, vec![])
    );

    let active = store
        .accept_invitation(acceptance(inv.id, &ben))
        .await
        .expect("accept");
    assert_eq!(active.status, PartnershipStatus::Active);
    assert_eq!(active.user1_id, ann.id);
    assert_eq!(active.user2_id, Some(ben.id));
    assert!(active.accepted_at.is_some());
    assert_eq!(active.partner_of(ann.id), Some(ben.id));
    for member in [ann.id, ben.id] {
        let current = store
            .current_partnership(member)
            .await
            .expect("current")
            .expect("has one");
        assert_eq!(current, active);
    }
    let (snapshot, changes) = store.load_document(inv.id).await.expect("load");
    assert_eq!(snapshot.as_deref(), Some(&b"first snapshot"[..]));
    assert!(changes.is_empty());
}

async fn a_user_holds_at_most_one_partnership(store: Arc<dyn Store>) {
    let (ann, ben, _) = couple(&store).await;
    let cat = user(&store, "cat@example.com").await;
    // Members of an active partnership cannot invite, nor be invited.
    assert!(is_conflict(
        store
            .create_invitation(invitation(ann.id, &cat.email))
            .await,
        "partnership_exists"
    ));
    assert!(is_conflict(
        store
            .create_invitation(invitation(ben.id, &cat.email))
            .await,
        "partnership_exists"
    ));
    assert!(is_conflict(
        store
            .create_invitation(invitation(cat.id, &ann.email))
            .await,
        "partner_has_partnership"
    ));
    // Fay invites Cat; Cat then sends an invitation of her own (she is not in Fay's yet).
    let fay = user(&store, "fay@example.com").await;
    let to_cat = store
        .create_invitation(invitation(fay.id, &cat.email))
        .await
        .expect("invite cat");
    store
        .create_invitation(invitation(cat.id, "dan@example.com"))
        .await
        .expect("first");
    // One pending invitation at a time.
    assert!(is_conflict(
        store
            .create_invitation(invitation(cat.id, "eve@example.com"))
            .await,
        "partnership_exists"
    ));
    // Someone with a pending invitation of their own cannot accept another one, nor be invited.
    assert!(is_conflict(
        store.accept_invitation(acceptance(to_cat.id, &cat)).await,
        "partnership_exists"
    ));
    assert!(is_conflict(
        store
            .create_invitation(invitation(fay.id, &cat.email))
            .await,
        "partnership_exists"
    ));
    assert!(is_conflict(
        store
            .create_invitation(invitation(cat.id, &cat.email))
            .await,
        "cannot_invite_self"
    ));
}

async fn only_the_invited_email_may_accept(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let ben = user(&store, "ben@example.com").await;
    let cat = user(&store, "cat@example.com").await;
    let inv = store
        .create_invitation(invitation(ann.id, &ben.email))
        .await
        .expect("invite");
    assert!(matches!(
        store.accept_invitation(acceptance(inv.id, &cat)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.accept_invitation(acceptance(inv.id, &ann)).await,
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store
            .accept_invitation(acceptance(Uuid::now_v7(), &ben))
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store
            .partnership_by_id(inv.id)
            .await
            .expect("read")
            .expect("found")
            .status,
        PartnershipStatus::Pending
    );
    store
        .accept_invitation(acceptance(inv.id, &ben))
        .await
        .expect("accept");
    // Accepting twice finds no pending invitation.
    assert!(matches!(
        store.accept_invitation(acceptance(inv.id, &ben)).await,
        Err(StoreError::NotFound)
    ));
}

async fn accepting_withdraws_other_invitations_to_the_same_user(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let cat = user(&store, "cat@example.com").await;
    let ben = user(&store, "ben@example.com").await;
    let from_ann = store
        .create_invitation(invitation(ann.id, &ben.email))
        .await
        .expect("ann invites");
    let from_cat = store
        .create_invitation(invitation(cat.id, &ben.email))
        .await
        .expect("cat invites");
    store
        .accept_invitation(acceptance(from_ann.id, &ben))
        .await
        .expect("accept");
    assert_eq!(
        store.partnership_by_id(from_cat.id).await.expect("read"),
        None
    );
    // Cat is free to invite someone else.
    store
        .create_invitation(invitation(cat.id, "dan@example.com"))
        .await
        .expect("cat again");
}

async fn concurrent_acceptances_leave_one_partnership(store: Arc<dyn Store>) {
    // Ben, invited by two people, accepts both at the same moment: exactly one wins.
    let ann = user(&store, "ann@example.com").await;
    let cat = user(&store, "cat@example.com").await;
    let ben = user(&store, "ben@example.com").await;
    let a = store
        .create_invitation(invitation(ann.id, &ben.email))
        .await
        .expect("ann invites");
    let c = store
        .create_invitation(invitation(cat.id, &ben.email))
        .await
        .expect("cat invites");
    let (s1, s2) = (store.clone(), store.clone());
    let (acc_a, acc_c) = (acceptance(a.id, &ben), acceptance(c.id, &ben));
    let (r1, r2) = tokio::join!(
        tokio::spawn(async move { s1.accept_invitation(acc_a).await }),
        tokio::spawn(async move { s2.accept_invitation(acc_c).await }),
    );
    let results = [r1.expect("task"), r2.expect("task")];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, 1, "{results:?}");
    let current = store
        .current_partnership(ben.id)
        .await
        .expect("current")
        .expect("one");
    assert_eq!(current.status, PartnershipStatus::Active);
}

async fn invitations_are_listed_for_invitee_and_inviter(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let cat = user(&store, "cat@example.com").await;
    let from_ann = store
        .create_invitation(invitation(ann.id, "ben@example.com"))
        .await
        .expect("invite");
    let from_cat = store
        .create_invitation(invitation(cat.id, "ben@example.com"))
        .await
        .expect("invite");
    // Ben is not registered yet: the invitations wait for his email.
    let ben = user(&store, "ben@example.com").await;
    let received = store
        .invitations_for(ben.id, "BEN@example.com")
        .await
        .expect("list");
    let ids: Vec<Uuid> = received.iter().map(|i| i.partnership.id).collect();
    assert_eq!(ids, vec![from_ann.id, from_cat.id]);
    assert_eq!(received[0].inviter_name, "Ann");
    assert_eq!(received[0].inviter_email, "ann@example.com");
    assert_eq!(received[0].inviter_avatar_url, ann.avatar_url);
    let sent = store
        .invitations_for(ann.id, &ann.email)
        .await
        .expect("list");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].partnership.id, from_ann.id);
}

async fn decline_and_withdraw_delete_the_invitation(store: Arc<dyn Store>) {
    let ann = user(&store, "ann@example.com").await;
    let ben = user(&store, "ben@example.com").await;
    let cat = user(&store, "cat@example.com").await;
    let inv = store
        .create_invitation(invitation(ann.id, &ben.email))
        .await
        .expect("invite");
    assert!(matches!(
        store.decline_invitation(inv.id, cat.id, &cat.email).await,
        Err(StoreError::NotFound)
    ));
    store
        .decline_invitation(inv.id, ben.id, &ben.email)
        .await
        .expect("decline");
    assert_eq!(store.partnership_by_id(inv.id).await.expect("read"), None);
    let again = store
        .create_invitation(invitation(ann.id, &ben.email))
        .await
        .expect("invite again");
    store
        .decline_invitation(again.id, ann.id, &ann.email)
        .await
        .expect("withdraw");
    assert_eq!(
        store.current_partnership(ann.id).await.expect("current"),
        None
    );
    // An active partnership is not an invitation: decline does not end it.
    let (_, dan, p) = couple(&store).await;
    assert!(matches!(
        store.decline_invitation(p.id, dan.id, &dan.email).await,
        Err(StoreError::NotFound)
    ));
}

async fn pause_and_resume_need_an_active_member(store: Arc<dyn Store>) {
    let (ann, ben, p) = couple(&store).await;
    let paused = store
        .set_partnership_status(p.id, ben.id, PartnershipStatus::Paused)
        .await
        .expect("pause");
    assert_eq!(paused.status, PartnershipStatus::Paused);
    assert_eq!(
        store
            .current_partnership(ann.id)
            .await
            .expect("current")
            .map(|p| p.status),
        Some(PartnershipStatus::Paused)
    );
    let resumed = store
        .set_partnership_status(p.id, ann.id, PartnershipStatus::Active)
        .await
        .expect("resume");
    assert_eq!(resumed.status, PartnershipStatus::Active);
    let cat = user(&store, "cat@example.com").await;
    assert!(matches!(
        store
            .set_partnership_status(p.id, cat.id, PartnershipStatus::Paused)
            .await,
        Err(StoreError::NotFound)
    ));
    assert!(is_conflict(
        store
            .set_partnership_status(p.id, ann.id, PartnershipStatus::Pending)
            .await,
        "invalid_status"
    ));
    let pending = store
        .create_invitation(invitation(cat.id, "dan@example.com"))
        .await
        .expect("invite");
    assert!(is_conflict(
        store
            .set_partnership_status(pending.id, cat.id, PartnershipStatus::Paused)
            .await,
        "partnership_not_active"
    ));
}

async fn appended_changes_are_idempotent_and_ordered(store: Arc<dyn Store>) {
    let (ann, _, p) = couple(&store).await;
    let now = Utc::now();
    let first = [change("h1", 1, Some(ann.id)), change("h2", 2, Some(ann.id))];
    assert_eq!(
        store
            .append_changes(p.id, &first, now)
            .await
            .expect("append"),
        2
    );
    let again = [change("h2", 2, Some(ann.id)), change("h3", 3, None)];
    assert_eq!(
        store
            .append_changes(p.id, &again, now)
            .await
            .expect("append"),
        1
    );
    let (snapshot, changes) = store.load_document(p.id).await.expect("load");
    assert!(snapshot.is_some());
    assert_eq!(
        changes,
        vec![
            b"change h1".to_vec(),
            b"change h2".to_vec(),
            b"change h3".to_vec()
        ]
    );
    let unknown = store.append_changes(Uuid::now_v7(), &first, now).await;
    assert!(matches!(unknown, Err(StoreError::NotFound)), "{unknown:?}");
    // The same hash in another partnership is another change.
    let (_, _, q) = couple(&store).await;
    assert_eq!(
        store
            .append_changes(q.id, &first, now)
            .await
            .expect("append"),
        2
    );
}

async fn compaction_replaces_snapshot_and_covered_changes(store: Arc<dyn Store>) {
    let (_, _, p) = couple(&store).await;
    let now = Utc::now();
    let changes = [
        change("h1", 1, None),
        change("h2", 2, None),
        change("h3", 3, None),
    ];
    store
        .append_changes(p.id, &changes, now)
        .await
        .expect("append");
    store
        .compact(
            p.id,
            snapshot(b"compacted"),
            &["h1".into(), "h2".into()],
            now,
        )
        .await
        .expect("compact");
    let (snap, rest) = store.load_document(p.id).await.expect("load");
    assert_eq!(snap.as_deref(), Some(&b"compacted"[..]));
    assert_eq!(rest, vec![b"change h3".to_vec()]);
    // A change already compacted away may arrive again; it is stored again (harmless to load).
    assert_eq!(
        store
            .append_changes(p.id, &[change("h1", 1, None)], now)
            .await
            .expect("append"),
        1
    );
}

async fn an_actor_is_bound_to_one_member(store: Arc<dyn Store>) {
    let (ann, ben, p) = couple(&store).await;
    let now = Utc::now();
    store
        .bind_actor(p.id, "A1B2", ann.id, now)
        .await
        .expect("bind");
    store
        .bind_actor(p.id, "a1b2", ann.id, now)
        .await
        .expect("bind again is fine");
    assert_eq!(
        store.actor_owner(p.id, "a1b2").await.expect("owner"),
        Some(ann.id)
    );
    assert!(is_conflict(
        store.bind_actor(p.id, "a1b2", ben.id, now).await,
        "actor_bound"
    ));
    let outsider = user(&store, "cat@example.com").await;
    assert!(matches!(
        store.bind_actor(p.id, "c3", outsider.id, now).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.actor_owner(p.id, "c3").await.expect("owner"), None);
    // Another partnership may bind the same actor id to its own member.
    let (dan, _, q) = couple(&store).await;
    store
        .bind_actor(q.id, "a1b2", dan.id, now)
        .await
        .expect("bind elsewhere");
}

async fn deleting_a_user_ends_the_partnership_and_frees_the_partner(store: Arc<dyn Store>) {
    let (ann, ben, p) = couple(&store).await;
    let now = Utc::now();
    store
        .append_changes(p.id, &[change("h1", 1, Some(ann.id))], now)
        .await
        .expect("append");
    store
        .bind_actor(p.id, "aa", ann.id, now)
        .await
        .expect("bind");
    store
        .insert_refresh_token(refresh(ann.id, Uuid::now_v7()))
        .await
        .expect("token");
    store
        .register_device(
            ann.id,
            NewDevice {
                platform: DevicePlatform::Ios,
                target: DeviceTarget::Fcm {
                    token: "device-1".into(),
                },
                session_id: None,
            },
            now,
        )
        .await
        .expect("device");
    let quiet = NotificationPreferences {
        disabled: [NotificationKind::Message].into(),
        show_details: false,
    };
    store
        .set_notification_preferences(ann.id, &quiet, now)
        .await
        .expect("preferences");
    let notification = |user_id| NewNotification {
        user_id,
        partnership_id: Some(p.id),
        kind: NotificationKind::Message,
        dedupe_key: "message:1".into(),
        payload: "{}".into(),
        give_up_after: std::time::Duration::from_secs(3600),
    };
    store
        .enqueue_notifications(&[notification(ann.id), notification(ben.id)], now)
        .await
        .expect("enqueue");

    store.delete_user(ann.id).await.expect("delete");
    assert_eq!(store.user_by_id(ann.id).await.expect("read"), None);
    assert_eq!(store.user_by_email(&ann.email).await.expect("read"), None);
    assert_eq!(store.partnership_by_id(p.id).await.expect("read"), None);
    assert_eq!(
        store.current_partnership(ben.id).await.expect("current"),
        None
    );
    assert_eq!(
        store.load_document(p.id).await.expect("load"),
        (None, vec![])
    );
    assert_eq!(store.actor_owner(p.id, "aa").await.expect("owner"), None);
    assert_eq!(store.devices(ann.id).await.expect("devices"), vec![]);
    assert_eq!(
        store
            .notification_preferences(ann.id)
            .await
            .expect("preferences"),
        NotificationPreferences::default()
    );
    // Ann's own notifications, and Ben's about the partnership that ended (they may name Ann).
    assert_eq!(store.outbox_depth().await.expect("depth"), 0);
    // Ben keeps his account and can pair again; Ann's email can register again.
    let cat = user(&store, "cat@example.com").await;
    store
        .create_invitation(invitation(ben.id, &cat.email))
        .await
        .expect("ben invites");
    user(&store, &ann.email).await;
    assert!(matches!(
        store.delete_user(ann.id).await,
        Err(StoreError::NotFound)
    ));
}
