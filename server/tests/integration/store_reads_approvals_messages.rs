//! The store's REST reads of approval requests and messages, on both backends like
//! `store_conformance.rs`: scoped by partnership, filtered by status, newest first, and message
//! pages that continue exactly where the last one ended, even through messages of the same
//! millisecond and across second boundaries (SQLite compares times as text).

use std::sync::Arc;

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::json;
use splitsave_server::store::*;
use splitsave_sync_core::enums::ApprovalStatus;
use splitsave_sync_core::ids::{EntityId, UserId};
use splitsave_sync_core::materialize::{ApprovalRow, MessageRow, Row, RowChange};
use splitsave_sync_core::time::Millis;
use uuid::Uuid;

use crate::common::{Backend, TestDb};

macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    let db = super::TestDb::new(super::Backend::Sqlite).await.expect("sqlite");
                    super::$name(&db).await;
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
                    super::$name(&db).await;
                }
            )*
        }
    };
}

on_both_stores!(
    approvals_are_filtered_by_status_newest_first_and_paged,
    approvals_and_messages_of_another_partnership_are_not_found,
    message_pages_continue_exactly_through_equal_times,
);

/// 2025-11-24T16:00:00.000Z: a whole second, which SQLite's text form writes without decimals.
const T0: i64 = 1_764_000_000_000;

async fn user(store: &Arc<dyn Store>, name: &str) -> UserRecord {
    store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            email: format!("{name}-{}@example.com", Uuid::new_v4().simple()),
            password_hash: "$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA".to_string(),
            name: name.to_string(),
            currency: "USD".to_string(),
            country: None,
            income: None,
            payday: None,
            avatar_url: None,
            personal_allowance: None,
        })
        .await
        .expect("create user")
}

/// Two users and their active partnership; returns (first user, second user, partnership id).
async fn couple(store: &Arc<dyn Store>) -> (Uuid, Uuid, Uuid) {
    let a = user(store, "a").await;
    let b = user(store, "b").await;
    let invitation = store
        .create_invitation(NewInvitation {
            id: Uuid::now_v7(),
            inviter_id: a.id,
            invitee_email: b.email.clone(),
            currency: "USD".to_string(),
            approval_threshold: Decimal::from(100),
            now: Utc::now(),
        })
        .await
        .expect("invite");
    store
        .accept_invitation(AcceptInvitation {
            partnership_id: invitation.id,
            user_id: b.id,
            email: b.email.clone(),
            snapshot: NewSnapshot {
                version: 0,
                bytes: b"snapshot".to_vec(),
                heads: vec!["ab".repeat(32)],
                change_count: 1,
            },
            now: Utc::now(),
        })
        .await
        .expect("accept");
    (a.id, b.id, invitation.id)
}

fn approval(by: Uuid, status: &str, created_at: i64) -> ApprovalRow {
    let answered = status != "pending";
    ApprovalRow {
        id: EntityId(Uuid::new_v4()),
        requested_by: UserId(by),
        request_type: "goal_add".into(),
        target_id: EntityId(Uuid::new_v4()),
        request_data: json!({"name": "Trip", "target_amount": "10.00"}),
        message: None,
        status: status.into(),
        responded_by: answered.then_some(UserId(by)),
        responded_at: answered.then_some(Millis(created_at + 1)),
        created_at: Millis(created_at),
    }
}

fn message(by: Uuid, text: &str, created_at: i64) -> MessageRow {
    MessageRow {
        id: EntityId(Uuid::new_v4()),
        sender_id: UserId(by),
        text: text.into(),
        message_type: "text".into(),
        read_by_recipient: false,
        created_at: Millis(created_at),
    }
}

async fn write(store: &Arc<dyn Store>, partnership_id: Uuid, rows: Vec<Row>) {
    store
        .replace_materialized(
            partnership_id,
            rows.into_iter().map(RowChange::Upsert).collect(),
        )
        .await
        .expect("write rows");
}

/// Newest first, and by id (descending) within one millisecond.
fn newest_first<T>(rows: &mut [T], key: impl Fn(&T) -> (Millis, Uuid)) {
    rows.sort_by_key(|r| std::cmp::Reverse(key(r)));
}

async fn approvals_are_filtered_by_status_newest_first_and_paged(db: &TestDb) {
    let store = db.store().await;
    let (a, b, pid) = couple(&store).await;
    let mut pending: Vec<ApprovalRow> = [T0 + 5, T0, T0 + 999, T0 + 1000, T0 + 1000, T0 - 1]
        .into_iter()
        .map(|t| approval(a, "pending", t))
        .collect();
    let approved = vec![
        approval(b, "approved", T0 + 3),
        approval(a, "approved", T0 + 2),
    ];
    let declined = approval(b, "declined", T0 + 4);
    let mut rows: Vec<Row> = pending.iter().cloned().map(Row::Approval).collect();
    rows.extend(approved.iter().cloned().map(Row::Approval));
    rows.push(Row::Approval(declined.clone()));
    write(&store, pid, rows).await;

    newest_first(&mut pending, |r| (r.created_at, r.id.0));
    let all = store
        .list_approvals(pid, ApprovalStatus::Pending, 100, 0)
        .await
        .unwrap();
    assert_eq!(all, pending);
    let mut paged = Vec::new();
    for offset in (0..pending.len() as u64).step_by(4) {
        paged.extend(
            store
                .list_approvals(pid, ApprovalStatus::Pending, 4, offset)
                .await
                .unwrap(),
        );
    }
    assert_eq!(paged, pending);
    assert_eq!(
        store
            .list_approvals(pid, ApprovalStatus::Approved, 10, 0)
            .await
            .unwrap(),
        approved
    );
    assert_eq!(
        store
            .list_approvals(pid, ApprovalStatus::Declined, 10, 0)
            .await
            .unwrap(),
        vec![declined.clone()]
    );
    assert_eq!(
        store.approval(pid, declined.id.0).await.unwrap(),
        Some(declined)
    );
    assert_eq!(store.approval(pid, Uuid::new_v4()).await.unwrap(), None);
}

async fn approvals_and_messages_of_another_partnership_are_not_found(db: &TestDb) {
    let store = db.store().await;
    let (a, _, first) = couple(&store).await;
    let (c, _, second) = couple(&store).await;
    let request = approval(a, "pending", T0);
    let note = message(a, "hello", T0);
    write(
        &store,
        first,
        vec![Row::Approval(request.clone()), Row::Message(note.clone())],
    )
    .await;
    // The other couple has rows of its own, one of them under the same id.
    let same_id = MessageRow {
        text: "theirs".into(),
        sender_id: UserId(c),
        ..note.clone()
    };
    write(&store, second, vec![Row::Message(same_id.clone())]).await;

    assert_eq!(store.approval(second, request.id.0).await.unwrap(), None);
    assert_eq!(
        store
            .list_approvals(second, ApprovalStatus::Pending, 10, 0)
            .await
            .unwrap(),
        vec![]
    );
    assert_eq!(
        store.message(second, note.id.0).await.unwrap(),
        Some(same_id.clone())
    );
    assert_eq!(
        store.message(first, note.id.0).await.unwrap(),
        Some(note.clone())
    );
    assert_eq!(
        store.list_messages(second, None, 10).await.unwrap(),
        vec![same_id]
    );
    assert_eq!(
        store.list_messages(first, None, 10).await.unwrap(),
        vec![note]
    );
}

async fn message_pages_continue_exactly_through_equal_times(db: &TestDb) {
    let store = db.store().await;
    let (a, b, pid) = couple(&store).await;
    // Three in one millisecond, a whole second next to fractions of the second before it,
    // and one in the millisecond right after.
    let times = [
        T0,
        T0,
        T0,
        T0 + 1,
        T0 - 1,
        T0 + 1000,
        T0 + 999,
        T0 + 1100,
        T0 - 1000,
        T0 + 100,
    ];
    let mut all: Vec<MessageRow> = times
        .iter()
        .enumerate()
        .map(|(i, t)| message(if i % 2 == 0 { a } else { b }, &format!("m{i}"), *t))
        .collect();
    write(&store, pid, all.iter().cloned().map(Row::Message).collect()).await;
    newest_first(&mut all, |m| (m.created_at, m.id.0));

    assert_eq!(store.list_messages(pid, None, 100).await.unwrap(), all);
    for limit in [1, 2, 3, 4] {
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = store.list_messages(pid, before, limit).await.unwrap();
            assert!(page.len() <= limit as usize);
            let Some(last) = page.last() else {
                break;
            };
            before = Some(MessageCursor {
                created_at: last.created_at,
                id: last.id.0,
            });
            seen.extend(page);
        }
        assert_eq!(seen, all, "pages of {limit}");
    }
    // A cursor past the oldest message gives nothing.
    let oldest = all.last().unwrap();
    let after_oldest = MessageCursor {
        created_at: oldest.created_at,
        id: oldest.id.0,
    };
    assert_eq!(
        store
            .list_messages(pid, Some(after_oldest), 10)
            .await
            .unwrap(),
        vec![]
    );
}
