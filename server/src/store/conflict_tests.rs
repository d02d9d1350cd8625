//! Each [`Conflict`] as the store reports it, on SQLite (the conformance suite in
//! `tests/integration/store_conformance.rs` holds both backends to the same answers).

use std::sync::Arc;

use chrono::{Duration, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;

struct Db {
    store: Arc<dyn Store>,
    /// Keeps the database file until the test ends.
    _dir: tempfile::TempDir,
}

impl Db {
    /// A registered user.
    async fn user(&self, email: &str) -> UserRecord {
        self.store.create_user(new_user(email)).await.unwrap()
    }

    /// An invitation from `inviter` to `email`.
    async fn invite(&self, inviter: Uuid, email: &str) -> StoreResult<PartnershipRecord> {
        self.store
            .create_invitation(invitation(inviter, email))
            .await
    }
}

async fn sqlite() -> Db {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    Db {
        store: connect(&url).await.unwrap(),
        _dir: dir,
    }
}

fn new_user(email: &str) -> NewUser {
    NewUser {
        id: Uuid::now_v7(),
        email: email.to_string(),
        password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".to_string(),
        name: "Ann".to_string(),
        currency: "USD".to_string(),
        country: None,
        income: None,
        payday: None,
        avatar_url: None,
        personal_allowance: None,
    }
}

fn invitation(inviter: Uuid, invitee_email: &str) -> NewInvitation {
    NewInvitation {
        id: Uuid::now_v7(),
        inviter_id: inviter,
        invitee_email: invitee_email.to_string(),
        currency: "USD".to_string(),
        approval_threshold: Decimal::new(10000, 2),
        now: Utc::now(),
    }
}

fn refresh(user_id: Uuid, token_hash: &str) -> NewRefreshToken {
    NewRefreshToken {
        id: Uuid::now_v7(),
        user_id,
        family_id: Uuid::now_v7(),
        token_hash: token_hash.to_string(),
        expires_at: Utc::now() + Duration::days(30),
    }
}

/// The conflict of a result that must be one.
fn conflict<T: std::fmt::Debug>(result: StoreResult<T>) -> Conflict {
    match result {
        Err(StoreError::Conflict(conflict)) => conflict,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

/// Two users in an active partnership (`ann` invited `bob`).
async fn partners(db: &Db) -> (Uuid, Uuid, PartnershipRecord) {
    let ann = db.user("ann@example.com").await;
    let bob = db.user("bob@example.com").await;
    let invited = db.invite(ann.id, "bob@example.com").await.unwrap();
    let active = db
        .store
        .accept_invitation(AcceptInvitation {
            partnership_id: invited.id,
            user_id: bob.id,
            email: bob.email.clone(),
            snapshot: NewSnapshot {
                version: 0,
                bytes: vec![1, 2, 3],
                heads: vec![],
                change_count: 0,
            },
            now: Utc::now(),
        })
        .await
        .unwrap();
    (ann.id, bob.id, active)
}

#[test]
fn each_conflict_keeps_its_api_code() {
    for (conflict, code) in [
        (Conflict::EmailTaken, "email_taken"),
        (Conflict::TokenExists, "token_exists"),
        (Conflict::CannotInviteSelf, "cannot_invite_self"),
        (Conflict::PartnershipExists, "partnership_exists"),
        (Conflict::PartnerHasPartnership, "partner_has_partnership"),
        (Conflict::PartnershipNotActive, "partnership_not_active"),
        (Conflict::InvalidStatus, "invalid_status"),
        (Conflict::ActorBound, "actor_bound"),
    ] {
        assert_eq!(conflict.code(), code);
        assert_eq!(
            StoreError::Conflict(conflict).to_string(),
            format!("conflict: {code}")
        );
    }
}

#[test]
fn only_the_unique_constraints_the_api_knows_are_conflicts() {
    for (name, conflict) in [
        ("users_email_key", Conflict::EmailTaken),
        ("users.email", Conflict::EmailTaken),
        ("refresh_tokens_token_hash_key", Conflict::TokenExists),
        ("refresh_tokens.token_hash", Conflict::TokenExists),
        ("password_resets_token_hash_key", Conflict::TokenExists),
        ("password_resets.token_hash", Conflict::TokenExists),
        ("partnerships_one_per_user1", Conflict::PartnershipExists),
        ("partnerships.user1_id", Conflict::PartnershipExists),
        ("partnerships_one_per_user2", Conflict::PartnershipExists),
        ("partnerships.user2_id", Conflict::PartnershipExists),
    ] {
        assert_eq!(Conflict::of_unique(name), Some(conflict), "{name}");
    }
    for name in [
        "users_pkey",
        "users.id",
        "partnerships_pkey",
        "doc_changes.hash",
    ] {
        assert_eq!(Conflict::of_unique(name), None, "{name}");
    }
}

#[tokio::test]
async fn a_registered_email_is_email_taken_in_any_case() {
    let db = sqlite().await;
    db.user("ann@example.com").await;
    let again = db.store.create_user(new_user("Ann@Example.com")).await;
    assert_eq!(conflict(again), Conflict::EmailTaken);
}

#[tokio::test]
async fn an_unknown_unique_violation_is_a_database_error_not_a_conflict() {
    let db = sqlite().await;
    let ann = db.user("ann@example.com").await;
    let same_id = NewUser {
        id: ann.id,
        ..new_user("other@example.com")
    };
    match db.store.create_user(same_id).await {
        Err(StoreError::Database(_)) => {}
        other => panic!("expected a database error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_stored_token_hash_is_token_exists() {
    let db = sqlite().await;
    let ann = db.user("ann@example.com").await;
    db.store
        .insert_refresh_token(refresh(ann.id, "aa"))
        .await
        .unwrap();
    let again = db.store.insert_refresh_token(refresh(ann.id, "aa")).await;
    assert_eq!(conflict(again), Conflict::TokenExists);

    let reset = || NewPasswordReset {
        id: Uuid::now_v7(),
        user_id: ann.id,
        token_hash: "bb".to_string(),
        expires_at: Utc::now() + Duration::hours(1),
    };
    db.store.insert_password_reset(reset()).await.unwrap();
    let again = db.store.insert_password_reset(reset()).await;
    assert_eq!(conflict(again), Conflict::TokenExists);
}

#[tokio::test]
async fn inviting_ones_own_email_is_cannot_invite_self() {
    let db = sqlite().await;
    let ann = db.user("ann@example.com").await;
    let own = db.invite(ann.id, "ANN@example.com").await;
    assert_eq!(conflict(own), Conflict::CannotInviteSelf);
}

#[tokio::test]
async fn a_second_invitation_is_partnership_exists() {
    let db = sqlite().await;
    let ann = db.user("ann@example.com").await;
    db.invite(ann.id, "bob@example.com").await.unwrap();
    let second = db.invite(ann.id, "cat@example.com").await;
    assert_eq!(conflict(second), Conflict::PartnershipExists);
}

#[tokio::test]
async fn a_second_live_partnership_row_is_refused_by_the_unique_index_as_partnership_exists() {
    // The store checks before it writes; this is what a writer that raced past the check meets.
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("x.db").display());
    let store = SqliteStore::connect(&url).await.unwrap();
    let ann = store
        .create_user(new_user("ann@example.com"))
        .await
        .unwrap();
    let insert = |invitee: &'static str| {
        sqlx::query(
            "INSERT INTO partnerships (id, user1_id, invitee_email, status, currency, \
             approval_threshold, created_at) VALUES ($1, $2, $3, 'pending', 'USD', '0', $4)",
        )
        .bind(Uuid::now_v7())
        .bind(ann.id)
        .bind(invitee)
        .bind(Utc::now())
    };
    insert("bob@example.com")
        .execute(store.pool())
        .await
        .unwrap();
    let second = insert("cat@example.com")
        .execute(store.pool())
        .await
        .map_err(write_error);
    assert_eq!(conflict(second), Conflict::PartnershipExists);
}

#[tokio::test]
async fn inviting_someone_in_a_partnership_is_partner_has_partnership() {
    let db = sqlite().await;
    partners(&db).await;
    let cat = db.user("cat@example.com").await;
    let invited = db.invite(cat.id, "bob@example.com").await;
    assert_eq!(conflict(invited), Conflict::PartnerHasPartnership);
}

#[tokio::test]
async fn pausing_a_pending_partnership_is_partnership_not_active() {
    let db = sqlite().await;
    let ann = db.user("ann@example.com").await;
    let pending = db.invite(ann.id, "bob@example.com").await.unwrap();
    let paused = db
        .store
        .set_partnership_status(pending.id, ann.id, PartnershipStatus::Paused)
        .await;
    assert_eq!(conflict(paused), Conflict::PartnershipNotActive);
}

#[tokio::test]
async fn setting_a_partnership_back_to_pending_is_invalid_status() {
    let db = sqlite().await;
    let (ann, _, active) = partners(&db).await;
    let back = db
        .store
        .set_partnership_status(active.id, ann, PartnershipStatus::Pending)
        .await;
    assert_eq!(conflict(back), Conflict::InvalidStatus);
}

#[tokio::test]
async fn an_actor_of_the_partner_is_actor_bound() {
    let db = sqlite().await;
    let (ann, bob, active) = partners(&db).await;
    let now = Utc::now();
    db.store
        .bind_actor(active.id, "ab01", ann, now)
        .await
        .unwrap();
    db.store
        .bind_actor(active.id, "AB01", ann, now)
        .await
        .unwrap();
    let taken = db.store.bind_actor(active.id, "ab01", bob, now).await;
    assert_eq!(conflict(taken), Conflict::ActorBound);

    let commit = MergeCommit {
        version: None,
        bindings: vec![("ab01".to_string(), bob)],
        ..MergeCommit::default()
    };
    let merged = db.store.commit_merge(active.id, commit, now).await;
    assert_eq!(conflict(merged), Conflict::ActorBound);
}

#[tokio::test]
async fn a_version_another_merge_took_is_stale() {
    let db = sqlite().await;
    let (_ann, _bob, active) = partners(&db).await;
    let now = Utc::now();
    let merge = || MergeCommit {
        version: Some(1),
        ..MergeCommit::default()
    };
    db.store
        .commit_merge(active.id, merge(), now)
        .await
        .unwrap();
    let late = db.store.commit_merge(active.id, merge(), now).await;
    assert_eq!(conflict(late), Conflict::Stale);
}
