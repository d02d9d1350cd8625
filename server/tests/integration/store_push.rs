//! The store's push-notification part on both backends: devices, preferences, and the outbox —
//! enqueued alone or with a merge commit (all or nothing), claimed by one sender at a time,
//! retried, remembering the devices a notification reached.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use splitsave_server::store::*;
use uuid::Uuid;

use crate::common::{is_conflict, Backend, TestDb};

on_both_backends!(
    enqueueing_an_event_twice_keeps_one_notification,
    enqueueing_for_an_unknown_recipient_writes_nothing,
    a_merge_commit_writes_its_notifications_in_its_transaction,
    a_failed_merge_commit_writes_no_notification,
    one_event_in_two_merges_of_a_batch_is_one_notification,
    a_claimed_notification_is_claimed_again_only_once_its_lease_lapsed,
    a_retry_counts_the_attempt_and_waits_until_the_next_one,
    only_due_notifications_are_claimed_oldest_first_up_to_the_limit,
    deliveries_are_remembered_until_the_device_goes,
    a_finished_notification_leaves_the_outbox,
    two_concurrent_claimers_never_get_the_same_notification,
    a_kind_this_build_does_not_know_is_not_claimed,
    devices_are_registered_listed_moved_and_deleted,
    signing_out_deletes_only_the_devices_of_that_session,
    preferences_default_to_everything_and_round_trip,
    the_device_tokens_of_before_become_fcm_devices,
);

/// A fresh store of the backend; `None` when PostgreSQL is not configured.
async fn store_on(backend: Backend) -> Option<(TestDb, Arc<dyn Store>)> {
    let db = TestDb::new(backend).await?;
    let store = db.store().await;
    Some((db, store))
}

/// Now, at the microsecond (what both backends keep), so stored times compare equal.
fn now() -> DateTime<Utc> {
    DateTime::from_timestamp_micros(Utc::now().timestamp_micros()).expect("time")
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

async fn user(store: &Arc<dyn Store>, name: &str) -> UserRecord {
    store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            email: format!("{name}-{}@example.com", Uuid::new_v4().simple()),
            password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".into(),
            name: name.into(),
            currency: "USD".into(),
            country: None,
            income: None,
            payday: None,
            avatar_url: None,
            personal_allowance: None,
        })
        .await
        .expect("create user")
}

/// Ann and Ben, partners; returns both and the partnership id.
async fn couple(store: &Arc<dyn Store>) -> (UserRecord, UserRecord, Uuid) {
    let ann = user(store, "ann").await;
    let ben = user(store, "ben").await;
    let invitation = store
        .create_invitation(NewInvitation {
            id: Uuid::now_v7(),
            inviter_id: ann.id,
            invitee_email: ben.email.clone(),
            currency: "USD".into(),
            approval_threshold: Decimal::from(100),
            now: Utc::now(),
        })
        .await
        .expect("invite");
    store
        .accept_invitation(AcceptInvitation {
            partnership_id: invitation.id,
            user_id: ben.id,
            email: ben.email.clone(),
            snapshot: NewSnapshot {
                bytes: b"first snapshot".to_vec(),
                heads: vec!["ab".repeat(32)],
                change_count: 1,
                version: 0,
            },
            now: Utc::now(),
        })
        .await
        .expect("accept");
    (ann, ben, invitation.id)
}

fn notification(user_id: Uuid, partnership_id: Option<Uuid>, key: &str) -> NewNotification {
    NewNotification {
        user_id,
        partnership_id,
        kind: NotificationKind::ApprovalRequested,
        dedupe_key: key.into(),
        payload: format!(r#"{{"key":"{key}"}}"#),
        give_up_after: secs(3600),
    }
}

fn change(hash: &str, user: Uuid) -> NewChange {
    NewChange {
        hash: hash.into(),
        actor: "0a0b".into(),
        seq: 1,
        user_id: Some(user),
        bytes: hash.as_bytes().to_vec(),
    }
}

/// A merge of one change, at `version`, with these notifications and actor bindings.
fn merge(
    hash: &str,
    user: Uuid,
    version: i64,
    bindings: Vec<(String, Uuid)>,
    notifications: Vec<NewNotification>,
) -> MergeCommit {
    MergeCommit {
        changes: vec![change(hash, user)],
        bindings,
        rows: Vec::new(),
        version: Some(version),
        notifications,
        history: Vec::new(),
    }
}

fn fcm(token: &str, session_id: Option<Uuid>) -> NewDevice {
    NewDevice {
        platform: DevicePlatform::Android,
        target: DeviceTarget::Fcm {
            token: token.into(),
        },
        session_id,
    }
}

fn web_push(endpoint: &str, auth: &str) -> NewDevice {
    NewDevice {
        platform: DevicePlatform::Web,
        target: DeviceTarget::WebPush {
            endpoint: endpoint.into(),
            p256dh: "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4"
                .into(),
            auth: auth.into(),
        },
        session_id: None,
    }
}

/// The dedupe-key payloads of what a claim returned, to compare whole claims at once.
fn keys(claimed: &[ClaimedNotification]) -> Vec<String> {
    claimed.iter().map(|n| n.payload.clone()).collect()
}

fn payload(key: &str) -> String {
    format!(r#"{{"key":"{key}"}}"#)
}

async fn claim(store: &Arc<dyn Store>, at: DateTime<Utc>, limit: u32) -> Vec<ClaimedNotification> {
    store
        .claim_notifications(at, limit, secs(30))
        .await
        .expect("claim")
}

async fn enqueueing_an_event_twice_keeps_one_notification(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let (ann, ben, pid) = couple(&store).await;
    let now = now();
    let first = [
        notification(ben.id, Some(pid), "approval:1"),
        notification(ben.id, Some(pid), "approval:1"),
        notification(ann.id, Some(pid), "approval:1"),
    ];
    assert_eq!(
        store
            .enqueue_notifications(&first, now)
            .await
            .expect("enqueue"),
        2
    );
    let again = [notification(ben.id, Some(pid), "approval:1")];
    assert_eq!(
        store
            .enqueue_notifications(&again, now)
            .await
            .expect("again"),
        0
    );
    assert_eq!(store.outbox_depth().await.expect("depth"), 2);
    let users: BTreeSet<Uuid> = claim(&store, now, 10)
        .await
        .iter()
        .map(|n| n.user_id)
        .collect();
    assert_eq!(users, BTreeSet::from([ann.id, ben.id]));
}

async fn enqueueing_for_an_unknown_recipient_writes_nothing(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let batch = [
        notification(ann.id, None, "invitation:1"),
        notification(Uuid::now_v7(), None, "invitation:1"),
    ];
    assert!(matches!(
        store.enqueue_notifications(&batch, now()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.outbox_depth().await.expect("depth"), 0);
}

async fn a_merge_commit_writes_its_notifications_in_its_transaction(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let (ann, ben, pid) = couple(&store).await;
    let now = now();
    // No binding: on PostgreSQL the one-statement commit.
    let plain = merge(
        "h1",
        ann.id,
        1,
        vec![],
        vec![notification(ben.id, Some(pid), "a:1")],
    );
    assert_eq!(
        store.commit_merge(pid, plain, now).await.expect("commit"),
        1
    );
    // A binding: the transaction path on both backends.
    let bound = merge(
        "h2",
        ann.id,
        2,
        vec![("0a0b".into(), ann.id)],
        vec![notification(ben.id, Some(pid), "a:2")],
    );
    assert_eq!(
        store.commit_merge(pid, bound, now).await.expect("commit"),
        1
    );
    let claimed = claim(&store, now, 10).await;
    assert_eq!(keys(&claimed), [payload("a:1"), payload("a:2")]);
    let first = &claimed[0];
    assert_eq!(
        (
            first.user_id,
            first.partnership_id,
            first.kind,
            first.attempts
        ),
        (ben.id, Some(pid), NotificationKind::ApprovalRequested, 0)
    );
    assert_eq!(
        (first.created_at, first.give_up_at),
        (now, now + secs(3600))
    );
    assert_eq!(first.delivered, Vec::<Uuid>::new());
}

async fn a_failed_merge_commit_writes_no_notification(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let (ann, ben, pid) = couple(&store).await;
    let now = now();
    store
        .commit_merge(pid, merge("h1", ann.id, 1, vec![], vec![]), now)
        .await
        .expect("first");
    // Another merge made from version 0: stale, on the one-statement path and in a batch.
    let stale = merge(
        "h2",
        ann.id,
        1,
        vec![],
        vec![notification(ben.id, Some(pid), "s")],
    );
    assert!(is_conflict(
        store.commit_merge(pid, stale.clone(), now).await,
        "stale"
    ));
    let (dan, _, other) = couple(&store).await;
    let fine = merge(
        "h3",
        dan.id,
        1,
        vec![],
        vec![notification(dan.id, Some(other), "f")],
    );
    assert!(is_conflict(
        store
            .commit_merges(&[(other, fine), (pid, stale)], now)
            .await,
        "stale"
    ));
    // An actor bound to Ann sent as Ben: the transaction path.
    store
        .bind_actor(pid, "0c0d", ann.id, now)
        .await
        .expect("bind");
    let forged = merge(
        "h4",
        ben.id,
        2,
        vec![("0c0d".into(), ben.id)],
        vec![notification(ann.id, Some(pid), "b")],
    );
    assert!(is_conflict(
        store.commit_merge(pid, forged, now).await,
        "actor_bound"
    ));
    assert_eq!(store.outbox_depth().await.expect("depth"), 0);
    assert_eq!(claim(&store, now, 10).await, vec![]);
}

async fn one_event_in_two_merges_of_a_batch_is_one_notification(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let (ann, ben, pid) = couple(&store).await;
    let (cat, dan, other) = couple(&store).await;
    let now = now();
    // Ben is notified of the same event by two merges (of two documents, for the batch's sake).
    let batch = [
        (
            pid,
            merge(
                "h1",
                ann.id,
                1,
                vec![],
                vec![notification(ben.id, Some(pid), "e")],
            ),
        ),
        (
            other,
            merge(
                "h2",
                cat.id,
                1,
                vec![],
                vec![
                    notification(ben.id, Some(pid), "e"),
                    notification(dan.id, Some(other), "e"),
                ],
            ),
        ),
    ];
    assert_eq!(
        store.commit_merges(&batch, now).await.expect("commit"),
        [1, 1]
    );
    let claimed = claim(&store, now, 10).await;
    let recipients: Vec<Uuid> = claimed.iter().map(|n| n.user_id).collect();
    assert_eq!(recipients, [ben.id, dan.id]);
}

async fn a_claimed_notification_is_claimed_again_only_once_its_lease_lapsed(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let now = now();
    store
        .enqueue_notifications(&[notification(ann.id, None, "k")], now)
        .await
        .expect("enqueue");
    let first = claim(&store, now, 10).await;
    assert_eq!(keys(&first), [payload("k")]);
    assert_eq!(claim(&store, now, 10).await, vec![]);
    assert_eq!(claim(&store, now + secs(29), 10).await, vec![]);
    // The sender that claimed it crashed: once the lease is over, another one gets it.
    let again = claim(&store, now + secs(30), 10).await;
    assert_eq!(again, first);
    assert_eq!(claim(&store, now + secs(31), 10).await, vec![]);
}

async fn a_retry_counts_the_attempt_and_waits_until_the_next_one(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let now = now();
    store
        .enqueue_notifications(&[notification(ann.id, None, "k")], now)
        .await
        .expect("enqueue");
    let id = claim(&store, now, 10).await[0].id;
    store
        .retry_notification(id, now + secs(60))
        .await
        .expect("retry");
    // The claim is released, but the notification is not due before its next attempt.
    assert_eq!(claim(&store, now + secs(59), 10).await, vec![]);
    let due = claim(&store, now + secs(60), 10).await;
    assert_eq!((due[0].id, due[0].attempts), (id, 1));
    store
        .retry_notification(id, now + secs(120))
        .await
        .expect("retry");
    assert_eq!(claim(&store, now + secs(120), 10).await[0].attempts, 2);
    // A notification that is gone is nothing to retry.
    store
        .retry_notification(Uuid::now_v7(), now)
        .await
        .expect("retry a missing one");
}

async fn only_due_notifications_are_claimed_oldest_first_up_to_the_limit(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let now = now();
    for i in 0..5 {
        store
            .enqueue_notifications(
                &[notification(ann.id, None, &format!("k{i}"))],
                now + secs(i),
            )
            .await
            .expect("enqueue");
    }
    assert_eq!(claim(&store, now - secs(1), 10).await, vec![]);
    assert_eq!(
        keys(&claim(&store, now + secs(3), 2).await),
        [payload("k0"), payload("k1")]
    );
    assert_eq!(
        keys(&claim(&store, now + secs(3), 10).await),
        [payload("k2"), payload("k3")]
    );
    assert_eq!(
        keys(&claim(&store, now + secs(4), 10).await),
        [payload("k4")]
    );
}

async fn deliveries_are_remembered_until_the_device_goes(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let now = now();
    let phone = store
        .register_device(ann.id, fcm("phone", None), now)
        .await
        .expect("phone");
    let browser = store
        .register_device(
            ann.id,
            web_push("https://push.example.com/1", "BTBZMqHH6r4Tts7J_aSIgg"),
            now,
        )
        .await
        .expect("browser");
    store
        .enqueue_notifications(&[notification(ann.id, None, "k")], now)
        .await
        .expect("enqueue");
    let id = claim(&store, now, 10).await[0].id;
    store.record_delivery(id, phone.id).await.expect("record");
    store.record_delivery(id, phone.id).await.expect("again");
    assert!(matches!(
        store.record_delivery(id, Uuid::now_v7()).await,
        Err(StoreError::NotFound)
    ));
    store.retry_notification(id, now).await.expect("retry");
    let again = claim(&store, now, 10).await;
    assert_eq!(again[0].delivered, [phone.id]);
    store.record_delivery(id, browser.id).await.expect("record");
    store.retry_notification(id, now).await.expect("retry");
    let mut both = vec![phone.id, browser.id];
    both.sort();
    assert_eq!(claim(&store, now, 10).await[0].delivered, both);
    // The push service said the phone is gone: it goes, and so does its delivery.
    assert!(store.delete_device_by_id(phone.id).await.expect("delete"));
    assert!(!store.delete_device_by_id(phone.id).await.expect("again"));
    store.retry_notification(id, now).await.expect("retry");
    assert_eq!(claim(&store, now, 10).await[0].delivered, [browser.id]);
}

async fn a_finished_notification_leaves_the_outbox(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let phone = store
        .register_device(ann.id, fcm("phone", None), now())
        .await
        .expect("phone");
    let now = now();
    store
        .enqueue_notifications(
            &[
                notification(ann.id, None, "a"),
                notification(ann.id, None, "b"),
            ],
            now,
        )
        .await
        .expect("enqueue");
    let claimed = claim(&store, now, 10).await;
    store
        .record_delivery(claimed[0].id, phone.id)
        .await
        .expect("record");
    store
        .finish_notification(claimed[0].id)
        .await
        .expect("finish");
    store
        .finish_notification(claimed[0].id)
        .await
        .expect("finish again");
    assert_eq!(store.outbox_depth().await.expect("depth"), 1);
    assert_eq!(
        keys(&claim(&store, now + secs(30), 10).await),
        [payload("b")]
    );
}

async fn two_concurrent_claimers_never_get_the_same_notification(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let now = now();
    let batch: Vec<NewNotification> = (0..200)
        .map(|i| notification(ann.id, None, &format!("k{i}")))
        .collect();
    assert_eq!(
        store
            .enqueue_notifications(&batch, now)
            .await
            .expect("enqueue"),
        200
    );
    let claimer = |store: Arc<dyn Store>| async move {
        let mut got = Vec::new();
        loop {
            let claimed = store
                .claim_notifications(now, 7, secs(60))
                .await
                .expect("claim");
            if claimed.is_empty() {
                return got;
            }
            got.extend(claimed.into_iter().map(|n| n.id));
            tokio::task::yield_now().await;
        }
    };
    let one = tokio::spawn(claimer(store.clone()));
    let two = tokio::spawn(claimer(store.clone()));
    let (one, two) = (one.await.expect("one"), two.await.expect("two"));
    let one_set: BTreeSet<Uuid> = one.iter().copied().collect();
    let two_set: BTreeSet<Uuid> = two.iter().copied().collect();
    assert_eq!((one_set.len(), two_set.len()), (one.len(), two.len()));
    assert_eq!(one_set.intersection(&two_set).count(), 0);
    assert_eq!(one_set.len() + two_set.len(), 200);
}

async fn a_kind_this_build_does_not_know_is_not_claimed(backend: Backend) {
    let Some((db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let now = now();
    // A row a newer node wrote, of a kind this build has never heard of.
    let sql = "INSERT INTO notification_outbox (id, user_id, partnership_id, kind, dedupe_key, \
               payload, created_at, next_attempt_at, attempts, give_up_at) \
               VALUES ($1, $2, NULL, 'budget_exceeded', 'x', '{}', $3, $3, 0, $3)";
    match backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.expect("connect");
            sqlx::query(sql)
                .bind(Uuid::now_v7())
                .bind(ann.id)
                .bind(now)
                .execute(&pool)
                .await
                .expect("insert");
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
            sqlx::query(sql)
                .bind(Uuid::now_v7())
                .bind(ann.id)
                .bind(now)
                .execute(&pool)
                .await
                .expect("insert");
        }
    }
    store
        .enqueue_notifications(&[notification(ann.id, None, "k")], now)
        .await
        .expect("enqueue");
    assert_eq!(keys(&claim(&store, now, 10).await), [payload("k")]);
    assert_eq!(store.outbox_depth().await.expect("depth"), 2);
}

async fn devices_are_registered_listed_moved_and_deleted(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let ben = user(&store, "ben").await;
    let now = now();
    let session = Uuid::new_v4();
    let phone = store
        .register_device(ann.id, fcm("t1", Some(session)), now)
        .await
        .expect("phone");
    assert_eq!(
        (
            phone.user_id,
            phone.platform,
            phone.session_id,
            phone.created_at
        ),
        (ann.id, DevicePlatform::Android, Some(session), now)
    );
    let browser = store
        .register_device(ann.id, web_push("https://push.example.com/a", "old"), now)
        .await
        .expect("browser");
    assert_eq!(
        store.devices(ann.id).await.expect("list"),
        [phone.clone(), browser.clone()]
    );
    // The browser renewed its keys: the same device, updated.
    let later = now + secs(5);
    let renewed = store
        .register_device(ann.id, web_push("https://push.example.com/a", "new"), later)
        .await
        .expect("renew");
    assert_eq!(renewed.id, browser.id);
    assert!(matches!(&renewed.target, DeviceTarget::WebPush { auth, .. } if auth == "new"));
    // The phone signed in as Ben now notifies Ben only.
    let moved = store
        .register_device(ben.id, fcm("t1", None), later)
        .await
        .expect("move");
    assert_eq!(
        (moved.id, moved.user_id, moved.session_id),
        (phone.id, ben.id, None)
    );
    assert_eq!(store.devices(ann.id).await.expect("list"), vec![renewed]);
    assert_eq!(
        store.devices(ben.id).await.expect("list"),
        vec![moved.clone()]
    );
    // Ann cannot delete Ben's device; Ben can.
    assert!(matches!(
        store.delete_device(ann.id, moved.id).await,
        Err(StoreError::NotFound)
    ));
    store.delete_device(ben.id, moved.id).await.expect("delete");
    assert_eq!(store.devices(ben.id).await.expect("list"), vec![]);
    assert!(matches!(
        store
            .register_device(Uuid::now_v7(), fcm("t9", None), now)
            .await,
        Err(StoreError::NotFound)
    ));
}

async fn signing_out_deletes_only_the_devices_of_that_session(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let ben = user(&store, "ben").await;
    let (one, two) = (Uuid::new_v4(), Uuid::new_v4());
    let now = now();
    store
        .register_device(ann.id, fcm("a1", Some(one)), now)
        .await
        .expect("a1");
    let kept = store
        .register_device(ann.id, fcm("a2", Some(two)), now)
        .await
        .expect("a2");
    let bens = store
        .register_device(ben.id, fcm("b1", Some(one)), now)
        .await
        .expect("b1");
    assert_eq!(
        store
            .delete_session_devices(ann.id, one)
            .await
            .expect("sign out"),
        1
    );
    assert_eq!(store.devices(ann.id).await.expect("list"), [kept]);
    assert_eq!(store.devices(ben.id).await.expect("list"), [bens]);
}

async fn preferences_default_to_everything_and_round_trip(backend: Backend) {
    let Some((_db, store)) = store_on(backend).await else {
        return;
    };
    let ann = user(&store, "ann").await;
    let defaults = store
        .notification_preferences(ann.id)
        .await
        .expect("defaults");
    assert_eq!(
        defaults,
        NotificationPreferences {
            disabled: BTreeSet::new(),
            show_details: true
        }
    );
    let quiet = NotificationPreferences {
        disabled: BTreeSet::from([NotificationKind::Message, NotificationKind::PartnerPaid]),
        show_details: false,
    };
    store
        .set_notification_preferences(ann.id, &quiet, now())
        .await
        .expect("set");
    assert_eq!(
        store.notification_preferences(ann.id).await.expect("read"),
        quiet
    );
    store
        .set_notification_preferences(ann.id, &defaults, now())
        .await
        .expect("reset");
    assert_eq!(
        store.notification_preferences(ann.id).await.expect("read"),
        defaults
    );
    assert!(matches!(
        store
            .set_notification_preferences(Uuid::now_v7(), &quiet, now())
            .await,
        Err(StoreError::NotFound)
    ));
}

/// Applies every migration before the push one to the database, as a server of the previous
/// version left it.
async fn migrate_to_before_push<DB>(pool: &sqlx::Pool<DB>, backend: Backend) -> tempfile::TempDir
where
    DB: sqlx::Database,
    <DB as sqlx::Database>::Connection: sqlx::migrate::Migrate,
{
    let name = match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrations")
        .join(name);
    let earlier = tempfile::tempdir().expect("temporary directory");
    for entry in std::fs::read_dir(&source).expect("migrations") {
        let path = entry.expect("entry").path();
        let file = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        if file.as_str() < "20261203000002" {
            std::fs::copy(&path, earlier.path().join(&file)).expect("copy");
        }
    }
    sqlx::migrate::Migrator::new(earlier.path())
        .await
        .expect("migrator")
        .run(pool)
        .await
        .expect("earlier migrations");
    earlier
}

async fn the_device_tokens_of_before_become_fcm_devices(backend: Backend) {
    let Some(db) = TestDb::new(backend).await else {
        return;
    };
    let user_id = Uuid::now_v7();
    let registered = now();
    let insert_user = "INSERT INTO users (id, email, password_hash, name, currency, created_at, \
                       updated_at) VALUES ($1, 'ann@example.com', 'x', 'Ann', 'USD', $2, $2)";
    let insert_token = "INSERT INTO device_tokens (token, user_id, platform, created_at) \
                        VALUES ($1, $2, $3, $4)";
    macro_rules! seed {
        ($pool:expr) => {{
            let pool = $pool;
            let _dir = migrate_to_before_push(&pool, backend).await;
            sqlx::query(insert_user)
                .bind(user_id)
                .bind(registered)
                .execute(&pool)
                .await
                .expect("user");
            for (token, platform) in [("old-android", "android"), ("old-web", "web")] {
                sqlx::query(insert_token)
                    .bind(token)
                    .bind(user_id)
                    .bind(platform)
                    .bind(registered)
                    .execute(&pool)
                    .await
                    .expect("token");
            }
            pool.close().await;
        }};
    }
    match backend {
        Backend::Sqlite => seed!(sqlx::SqlitePool::connect(&format!("{}?mode=rwc", db.url))
            .await
            .expect("connect")),
        Backend::Postgres => seed!(sqlx::PgPool::connect(&db.url).await.expect("connect")),
    }
    let store = db.store().await;
    let mut devices: Vec<(String, DevicePlatform, Option<Uuid>, DateTime<Utc>)> = store
        .devices(user_id)
        .await
        .expect("devices")
        .into_iter()
        .map(|d| match d.target {
            DeviceTarget::Fcm { token } => (token, d.platform, d.session_id, d.created_at),
            other => panic!("not an FCM device: {other:?}"),
        })
        .collect();
    devices.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        devices,
        [
            (
                "old-android".to_string(),
                DevicePlatform::Android,
                None,
                registered
            ),
            ("old-web".to_string(), DevicePlatform::Web, None, registered),
        ]
    );
}
