//! The store's sync storage, run against both backends like `store_conformance.rs`: merge
//! commits (changes, actor bindings and materialized rows in one transaction), rebuilding the
//! derived tables from a document, peer sync states and the server's storageId. Every function
//! runs once on a fresh SQLite file and once on a fresh PostgreSQL database (skipped, with a
//! message, when `TEST_DATABASE_URL` is unset).

use std::sync::Arc;

use chrono::Utc;
use rust_decimal::Decimal;
use serde_json::json;
use splitsave_server::store::*;
use splitsave_sync_core::document::{new_partnership_document, NewMember, NewPartnership};
use splitsave_sync_core::enums::{Category, Frequency, GoalType, Priority};
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::materialize::{
    all_rows, ApprovalRow, ContributionRow, ContributionShare, ExpenseRow, GoalContributionRow,
    GoalRow, MessageRow, Row, RowChange,
};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, Outcome};
use splitsave_sync_core::schema::{Collection, MonthContribution};
use splitsave_sync_core::time::Millis;
use uuid::Uuid;

use crate::common::{is_conflict, Backend, TestDb};

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
    every_row_type_round_trips_at_the_currency_scale,
    upserts_replace_rows_and_deletes_remove_them,
    changes_are_stored_once_and_counted_until_compaction,
    an_actor_bound_to_another_user_rolls_back_the_whole_commit,
    binding_a_non_member_rolls_back_the_whole_commit,
    rebuilt_tables_equal_what_the_document_materializes,
    two_couples_may_use_the_same_entity_id,
    merges_of_several_couples_commit_together_or_not_at_all,
    merges_of_changes_and_expenses_only_are_stored_the_same,
    the_committer_answers_each_merge_of_a_failed_batch_on_its_own,
    a_peer_sync_state_is_kept_per_user_and_peer,
    the_server_storage_id_is_created_once_and_shared,
    each_merge_takes_the_next_version_and_a_taken_one_is_stale_and_writes_nothing,
    a_node_catches_up_with_what_was_committed_after_its_last_change,
    a_snapshot_never_replaces_one_of_a_later_version,
);

// ---- helpers ---------------------------------------------------------------------------------

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

/// Ann invites Ben to share money in `currency`, Ben accepts.
async fn couple(
    store: &Arc<dyn Store>,
    currency: &str,
) -> (UserRecord, UserRecord, PartnershipRecord) {
    let ann = user(store, "ann").await;
    let ben = user(store, "ben").await;
    let invitation = store
        .create_invitation(NewInvitation {
            id: Uuid::now_v7(),
            inviter_id: ann.id,
            invitee_email: ben.email.clone(),
            currency: currency.to_string(),
            approval_threshold: Decimal::from(100),
            now: Utc::now(),
        })
        .await
        .expect("invite");
    let partnership = store
        .accept_invitation(AcceptInvitation {
            partnership_id: invitation.id,
            user_id: ben.id,
            email: ben.email.clone(),
            snapshot: NewSnapshot {
                version: 0,
                bytes: b"first snapshot".to_vec(),
                heads: vec!["ab".repeat(32)],
                change_count: 1,
            },
            now: Utc::now(),
        })
        .await
        .expect("accept");
    (ann, ben, partnership)
}

fn change(hash: &str, actor: &str, user: Option<Uuid>) -> NewChange {
    NewChange {
        hash: hash.to_string(),
        actor: actor.to_string(),
        seq: 1,
        user_id: user,
        bytes: format!("change {hash}").into_bytes(),
    }
}

/// Millisecond times that a seconds- or microseconds-only round trip would not keep.
const T0: i64 = 1_764_000_000_123;

/// One row of every table, amounts at `scale` decimals; the month has a share for each partner.
fn sample_rows(ann: Uuid, ben: Uuid, scale: u32) -> Vec<Row> {
    let (ann, ben) = (UserId(ann), UserId(ben));
    let expense = EntityId::new_v7();
    let goal = EntityId::new_v7();
    let mut shares = vec![
        ContributionShare {
            user_id: ann,
            amount: Decimal::new(180_000, scale),
            paid_at: Some(Millis(T0 + 7)),
        },
        ContributionShare {
            user_id: ben,
            amount: Decimal::new(120_005, scale),
            paid_at: None,
        },
    ];
    shares.sort_by_key(|s| s.user_id);
    vec![
        Row::Expense(ExpenseRow {
            id: expense,
            name: "Rent".into(),
            amount: Decimal::new(123_450, scale),
            category: "housing".into(),
            frequency: "monthly".into(),
            added_by: ann,
            status: "active".into(),
            created_at: Millis(T0),
            updated_at: Millis(T0 + 1),
        }),
        Row::Goal(GoalRow {
            id: goal,
            name: "Holiday".into(),
            target_amount: Decimal::new(500_000, scale),
            // Zero, which PostgreSQL hands back without its scale.
            saved_amount: Decimal::new(0, scale),
            goal_type: "vacation".into(),
            priority: "high".into(),
            added_by: ben,
            status: "pending_approval".into(),
            created_at: Millis(T0 + 2),
            updated_at: Millis(T0 + 3),
        }),
        Row::GoalContribution(GoalContributionRow {
            id: EntityId::new_v7(),
            goal_id: goal,
            user_id: ann,
            amount: Decimal::new(2_500, scale),
            created_at: Millis(T0 + 4),
        }),
        Row::Approval(ApprovalRow {
            id: EntityId::new_v7(),
            requested_by: ann,
            request_type: "expense_edit".into(),
            target_id: expense,
            request_data: json!({"name": "Rent (new flat)", "amount": "1500.00"}),
            message: Some("bigger flat".into()),
            status: "approved".into(),
            responded_by: Some(ben),
            responded_at: Some(Millis(T0 + 5)),
            created_at: Millis(T0 + 4),
        }),
        Row::Approval(ApprovalRow {
            id: EntityId::new_v7(),
            requested_by: ben,
            request_type: "goal_add".into(),
            target_id: goal,
            request_data: json!({}),
            message: None,
            status: "pending".into(),
            responded_by: None,
            responded_at: None,
            created_at: Millis(T0 + 6),
        }),
        Row::Message(MessageRow {
            id: EntityId::new_v7(),
            sender_id: ben,
            text: "Dinner at 8? 🍝".into(),
            message_type: "text".into(),
            read_by_recipient: true,
            created_at: Millis(T0 + 8),
        }),
        Row::Contribution(ContributionRow {
            month: "2026-11".into(),
            total_required: Decimal::new(300_005, scale),
            shares,
        }),
    ]
}

fn upserts(rows: &[Row]) -> Vec<RowChange> {
    rows.iter().cloned().map(RowChange::Upsert).collect()
}

fn table_rank(row: &Row) -> u8 {
    match row {
        Row::Expense(_) => 0,
        Row::Goal(_) => 1,
        Row::GoalContribution(_) => 2,
        Row::Approval(_) => 3,
        Row::Message(_) => 4,
        Row::Contribution(_) => 5,
    }
}

fn row_key(row: &Row) -> String {
    match row {
        Row::Expense(r) => r.id.to_string(),
        Row::Goal(r) => r.id.to_string(),
        Row::GoalContribution(r) => r.id.to_string(),
        Row::Approval(r) => r.id.to_string(),
        Row::Message(r) => r.id.to_string(),
        Row::Contribution(r) => r.month.clone(),
    }
}

/// The order the store promises: by table, then id or month.
fn in_store_order(rows: &[Row]) -> Vec<RowChange> {
    let mut rows = rows.to_vec();
    rows.sort_by_key(|r| (table_rank(r), row_key(r)));
    upserts(&rows)
}

/// Every amount as text: `Decimal` equality ignores the scale, the text does not.
fn amount_texts(changes: &[RowChange]) -> Vec<String> {
    let mut out = Vec::new();
    for change in changes {
        let RowChange::Upsert(row) = change else {
            continue;
        };
        let amounts: Vec<Decimal> = match row {
            Row::Expense(r) => vec![r.amount],
            Row::Goal(r) => vec![r.target_amount, r.saved_amount],
            Row::GoalContribution(r) => vec![r.amount],
            Row::Contribution(r) => std::iter::once(r.total_required)
                .chain(r.shares.iter().map(|s| s.amount))
                .collect(),
            Row::Approval(_) | Row::Message(_) => vec![],
        };
        out.extend(amounts.iter().map(Decimal::to_string));
    }
    out
}

fn commit(rows: Vec<RowChange>) -> MergeCommit {
    MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![],
        bindings: vec![],
        rows,
    }
}

// ---- tests -----------------------------------------------------------------------------------

async fn every_row_type_round_trips_at_the_currency_scale(db: &TestDb) {
    let store = db.store().await;
    for (currency, scale) in [("USD", 2), ("JPY", 0), ("KWD", 3)] {
        let (ann, ben, p) = couple(&store, currency).await;
        let rows = sample_rows(ann.id, ben.id, scale);
        store
            .commit_merge(p.id, commit(upserts(&rows)), Utc::now())
            .await
            .expect("commit");
        let read = store.materialized_rows(p.id).await.expect("read");
        let expected = in_store_order(&rows);
        assert_eq!(read, expected, "{currency}");
        assert_eq!(amount_texts(&read), amount_texts(&expected), "{currency}");
        let zero = match &read[1] {
            RowChange::Upsert(Row::Goal(g)) => g.saved_amount.to_string(),
            other => panic!("expected the goal second, got {other:?}"),
        };
        let expected_zero = match scale {
            0 => "0",
            2 => "0.00",
            _ => "0.000",
        };
        assert_eq!(zero, expected_zero, "{currency}");
    }
}

async fn upserts_replace_rows_and_deletes_remove_them(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, p) = couple(&store, "USD").await;
    let mut rows = sample_rows(ann.id, ben.id, 2);
    store
        .commit_merge(p.id, commit(upserts(&rows)), Utc::now())
        .await
        .expect("first commit");

    // Edit the expense, mark the message read, and leave the month with one share.
    if let Row::Expense(e) = &mut rows[0] {
        e.name = "Rent (new flat)".into();
        e.amount = Decimal::new(150_000, 2);
        e.updated_at = Millis(T0 + 100);
    }
    if let Row::Message(m) = &mut rows[5] {
        m.read_by_recipient = false;
    }
    if let Row::Contribution(c) = &mut rows[6] {
        c.shares.truncate(1);
        c.shares[0].paid_at = None;
        c.total_required = Decimal::new(180_000, 2);
    }
    store
        .commit_merge(p.id, commit(upserts(&rows)), Utc::now())
        .await
        .expect("second commit");
    assert_eq!(
        store.materialized_rows(p.id).await.expect("read"),
        in_store_order(&rows)
    );

    // Delete one row of every table; keys that name nothing are no-ops.
    let deletes: Vec<RowChange> = rows
        .iter()
        .filter(|r| !matches!(r, Row::Approval(a) if a.status == "pending"))
        .map(|r| RowChange::Delete {
            collection: match r {
                Row::Expense(_) => Collection::Expenses,
                Row::Goal(_) => Collection::Goals,
                Row::GoalContribution(_) => Collection::GoalContributions,
                Row::Approval(_) => Collection::Approvals,
                Row::Message(_) => Collection::Messages,
                Row::Contribution(_) => Collection::Contributions,
            },
            key: row_key(r),
        })
        .chain([
            RowChange::Delete {
                collection: Collection::Expenses,
                key: "not-an-id".into(),
            },
            RowChange::Delete {
                collection: Collection::Members,
                key: ann.id.to_string(),
            },
            RowChange::Delete {
                collection: Collection::Contributions,
                key: "2030-01".into(),
            },
        ])
        .collect();
    store
        .commit_merge(p.id, commit(deletes), Utc::now())
        .await
        .expect("deletes");
    let pending: Vec<Row> = rows
        .into_iter()
        .filter(|r| matches!(r, Row::Approval(a) if a.status == "pending"))
        .collect();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        store.materialized_rows(p.id).await.expect("read"),
        upserts(&pending)
    );
}

async fn changes_are_stored_once_and_counted_until_compaction(db: &TestDb) {
    let store = db.store().await;
    let (ann, _ben, p) = couple(&store, "USD").await;
    let first = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![
            change("h1", "aa01", Some(ann.id)),
            change("h2", "aa01", Some(ann.id)),
        ],
        bindings: vec![("aa01".into(), ann.id)],
        rows: vec![],
    };
    assert_eq!(
        store
            .commit_merge(p.id, first.clone(), Utc::now())
            .await
            .expect("first"),
        2
    );
    // The same message again (a client resending after a lost acknowledgement), plus one more.
    let mut again = first;
    again.changes.push(change("h3", "ffff", None));
    assert_eq!(
        store
            .commit_merge(p.id, again, Utc::now())
            .await
            .expect("again"),
        1
    );
    let (_, changes) = store.load_document(p.id).await.expect("load");
    assert_eq!(
        changes,
        vec![
            b"change h1".to_vec(),
            b"change h2".to_vec(),
            b"change h3".to_vec()
        ]
    );
    assert_eq!(
        store.actor_owner(p.id, "AA01").await.expect("owner"),
        Some(ann.id)
    );
    assert_eq!(store.document_change_count(p.id).await.expect("count"), 3);
    store
        .compact(
            p.id,
            NewSnapshot {
                version: 0,
                bytes: b"compacted".to_vec(),
                heads: vec!["cd".repeat(32)],
                change_count: 3,
            },
            &["h1".to_string(), "h2".to_string()],
            Utc::now(),
        )
        .await
        .expect("compact");
    assert_eq!(store.document_change_count(p.id).await.expect("count"), 1);
}

async fn an_actor_bound_to_another_user_rolls_back_the_whole_commit(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, p) = couple(&store, "USD").await;
    store
        .bind_actor(p.id, "bb02", ben.id, Utc::now())
        .await
        .expect("ben's device");
    let forged = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![
            change("h1", "aa01", Some(ann.id)),
            change("h2", "bb02", Some(ann.id)),
        ],
        // Ann's new device binds fine; claiming Ben's device does not.
        bindings: vec![("aa01".into(), ann.id), ("bb02".into(), ann.id)],
        rows: upserts(&sample_rows(ann.id, ben.id, 2)),
    };
    assert!(is_conflict(
        store.commit_merge(p.id, forged, Utc::now()).await,
        "actor_bound"
    ));
    assert_eq!(store.actor_owner(p.id, "aa01").await.expect("owner"), None);
    assert_eq!(
        store.actor_owner(p.id, "bb02").await.expect("owner"),
        Some(ben.id)
    );
    let (_, changes) = store.load_document(p.id).await.expect("load");
    assert!(changes.is_empty(), "{} changes stored", changes.len());
    assert_eq!(store.materialized_rows(p.id).await.expect("read"), vec![]);
}

async fn binding_a_non_member_rolls_back_the_whole_commit(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, p) = couple(&store, "USD").await;
    let stranger = user(&store, "eve").await;
    let merge = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h1", "ee05", Some(stranger.id))],
        bindings: vec![("ee05".into(), stranger.id)],
        rows: upserts(&sample_rows(ann.id, ben.id, 2)),
    };
    assert!(matches!(
        store.commit_merge(p.id, merge, Utc::now()).await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.document_change_count(p.id).await.expect("count"), 0);
    assert_eq!(store.materialized_rows(p.id).await.expect("read"), vec![]);
}

async fn rebuilt_tables_equal_what_the_document_materializes(db: &TestDb) {
    let store = db.store().await;
    for currency in ["USD", "JPY", "KWD"] {
        let (ann, ben, p) = couple(&store, currency).await;
        // Stale rows that the rebuild must drop.
        store
            .commit_merge(
                p.id,
                commit(upserts(&sample_rows(ann.id, ben.id, 2))),
                Utc::now(),
            )
            .await
            .expect("stale rows");

        let cur = Currency::parse(currency).expect("currency");
        let (a, b) = (UserId(ann.id), UserId(ben.id));
        let member = |user_id, name: &str, slot| NewMember {
            user_id,
            name: name.into(),
            income: None,
            slot,
        };
        let mut doc = new_partnership_document(&NewPartnership {
            id: PartnershipId(p.id),
            currency: cur,
            approval_threshold: MinorUnits(100_000),
            members: [member(a, "Ann", 1), member(b, "Ben", 2)],
            created_at: Millis(T0),
        })
        .expect("document");
        let ann_ctx = Ctx {
            user: a,
            now: Millis(T0 + 10),
        };
        let ben_ctx = Ctx {
            user: b,
            now: Millis(T0 + 20),
        };
        doc.transact(|tx| {
            ops::add_expense(
                tx,
                &ann_ctx,
                &NewExpense {
                    name: "Groceries".into(),
                    amount: MinorUnits(8_550),
                    category: Category::Groceries,
                    frequency: Frequency::Weekly,
                },
            )?;
            // Over the threshold: an approval request for Ben.
            let big = ops::add_expense(
                tx,
                &ann_ctx,
                &NewExpense {
                    name: "Sofa".into(),
                    amount: MinorUnits(250_001),
                    category: Category::Other,
                    frequency: Frequency::Yearly,
                },
            )?;
            assert!(matches!(big, Outcome::ApprovalRequested { .. }), "{big:?}");
            // Goals always need the partner's approval: Ann approves Ben's.
            let goal = match ops::add_goal(
                tx,
                &ben_ctx,
                &NewGoal {
                    name: "Holiday".into(),
                    target_amount: MinorUnits(90_000),
                    goal_type: GoalType::Vacation,
                    priority: Priority::High,
                },
            )? {
                Outcome::ApprovalRequested {
                    request_id,
                    target_id,
                } => {
                    ops::approve(tx, &ann_ctx, request_id)?;
                    target_id
                }
                other => panic!("goal without approval: {other:?}"),
            };
            ops::contribute_to_goal(tx, &ann_ctx, goal, MinorUnits(1_234))?;
            ops::send_message(tx, &ben_ctx, "Booked it")?;
            let month = "2026-11".parse().expect("month");
            ops::server_set_month(
                tx,
                &MonthContribution {
                    month,
                    total_required: MinorUnits(300_001),
                    amounts: [(a, MinorUnits(180_000)), (b, MinorUnits(120_001))].into(),
                    paid: [(a, None), (b, None)].into(),
                },
            )?;
            ops::mark_paid(tx, &ann_ctx, month)?;
            Ok::<_, ops::OpError>(())
        })
        .map_err(|f| f.error)
        .expect("edits");

        let expected = all_rows(&doc).expect("materialize").changes;
        let mut tables: Vec<u8> = expected
            .iter()
            .filter_map(|c| match c {
                RowChange::Upsert(row) => Some(table_rank(row)),
                RowChange::Delete { .. } => None,
            })
            .collect();
        tables.dedup();
        assert_eq!(
            tables,
            vec![0, 1, 2, 3, 4, 5],
            "a row of every table: {expected:?}"
        );
        store
            .replace_materialized(p.id, expected.clone())
            .await
            .expect("rebuild");
        let read = store.materialized_rows(p.id).await.expect("read");
        assert_eq!(read, expected, "{currency}");
        assert_eq!(amount_texts(&read), amount_texts(&expected), "{currency}");
    }
}

async fn two_couples_may_use_the_same_entity_id(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, first) = couple(&store, "USD").await;
    let (cat, dan, second) = couple(&store, "USD").await;
    let ours = sample_rows(ann.id, ben.id, 2);
    // The other couple's document names the very same ids (a client may pick any id).
    let mut theirs = ours.clone();
    for row in &mut theirs {
        match row {
            Row::Expense(e) => {
                e.name = "Their rent".into();
                e.added_by = UserId(cat.id);
            }
            Row::Message(m) => m.sender_id = UserId(dan.id),
            _ => {}
        }
    }
    store
        .commit_merge(first.id, commit(upserts(&ours)), Utc::now())
        .await
        .expect("ours");
    store
        .commit_merge(second.id, commit(upserts(&theirs)), Utc::now())
        .await
        .expect("theirs");
    assert_eq!(
        store.materialized_rows(first.id).await.expect("ours"),
        in_store_order(&ours)
    );
    assert_eq!(
        store.materialized_rows(second.id).await.expect("theirs"),
        in_store_order(&theirs)
    );
    // Rebuilding one couple's tables leaves the other's alone.
    store
        .replace_materialized(second.id, vec![])
        .await
        .expect("rebuild");
    assert_eq!(
        store.materialized_rows(second.id).await.expect("theirs"),
        vec![]
    );
    assert_eq!(
        store.materialized_rows(first.id).await.expect("ours"),
        in_store_order(&ours)
    );
}

async fn merges_of_several_couples_commit_together_or_not_at_all(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, first) = couple(&store, "USD").await;
    let (cat, dan, second) = couple(&store, "USD").await;
    let their_rows = sample_rows(cat.id, dan.id, 2);
    let ours = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h1", "aa01", Some(ann.id))],
        bindings: vec![("aa01".into(), ann.id)],
        rows: upserts(&sample_rows(ann.id, ben.id, 2)),
    };
    let theirs = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![
            change("h1", "cc03", Some(cat.id)),
            change("h2", "cc03", Some(cat.id)),
        ],
        bindings: vec![("cc03".into(), cat.id)],
        rows: upserts(&their_rows),
    };
    let counts = store
        .commit_merges(
            &[(first.id, ours.clone()), (second.id, theirs.clone())],
            Utc::now(),
        )
        .await
        .expect("batch");
    assert_eq!(counts, vec![1, 2]);
    assert_eq!(store.document_change_count(first.id).await.expect("n"), 1);
    assert_eq!(store.document_change_count(second.id).await.expect("n"), 2);
    assert_eq!(
        store.materialized_rows(second.id).await.expect("theirs"),
        in_store_order(&their_rows)
    );
    assert_eq!(
        store.actor_owner(second.id, "cc03").await.expect("owner"),
        Some(cat.id)
    );

    // A batch where one merge claims a device bound to someone else writes nothing at all.
    let mut more = ours;
    more.changes.push(change("h9", "aa01", Some(ann.id)));
    let forged = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h8", "cc03", Some(dan.id))],
        bindings: vec![("cc03".into(), dan.id)],
        rows: vec![],
    };
    assert!(is_conflict(
        store
            .commit_merges(&[(first.id, more), (second.id, forged)], Utc::now())
            .await,
        "actor_bound"
    ));
    assert_eq!(store.document_change_count(first.id).await.expect("n"), 1);
    assert_eq!(store.document_change_count(second.id).await.expect("n"), 2);
}

/// Changes plus expense rows and no new device: the shape of nearly every synced edit, which
/// PostgreSQL writes as one statement. Stored, counted, updated and refused like any merge.
async fn merges_of_changes_and_expenses_only_are_stored_the_same(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, first) = couple(&store, "USD").await;
    let (cat, _dan, second) = couple(&store, "USD").await;
    store
        .bind_actor(first.id, "aa01", ann.id, Utc::now())
        .await
        .expect("bind");
    store
        .bind_actor(second.id, "cc03", cat.id, Utc::now())
        .await
        .expect("bind");
    let expense = |by: Uuid, name: &str, cents: i64| ExpenseRow {
        id: EntityId::new_v7(),
        name: name.into(),
        amount: Decimal::new(cents, 2),
        category: "groceries".into(),
        frequency: "monthly".into(),
        added_by: UserId(by),
        status: "active".into(),
        created_at: Millis(T0),
        updated_at: Millis(T0 + 1),
    };
    let (mut milk, bread, rent) = (
        expense(ann.id, "Milk", 199),
        expense(ben.id, "Bread", 350),
        expense(cat.id, "Rent", 90_000),
    );
    let ours = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![
            change("h1", "aa01", Some(ann.id)),
            change("h2", "aa01", Some(ann.id)),
        ],
        bindings: vec![],
        rows: upserts(&[Row::Expense(milk.clone()), Row::Expense(bread.clone())]),
    };
    let theirs = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h1", "cc03", Some(cat.id))],
        bindings: vec![],
        rows: upserts(&[Row::Expense(rent.clone())]),
    };
    let counts = store
        .commit_merges(&[(first.id, ours.clone()), (second.id, theirs)], Utc::now())
        .await
        .expect("batch");
    assert_eq!(counts, vec![2, 1]);
    let ours_read = store.materialized_rows(first.id).await.expect("ours");
    assert_eq!(
        ours_read,
        in_store_order(&[Row::Expense(milk.clone()), Row::Expense(bread.clone())])
    );
    assert_eq!(
        store.materialized_rows(second.id).await.expect("theirs"),
        in_store_order(&[Row::Expense(rent)])
    );

    // Resent with one more change and an edit: only the new change counts, the row is updated.
    milk.name = "Oat milk".into();
    milk.amount = Decimal::new(249, 2);
    let mut again = ours;
    again.changes.push(change("h3", "aa01", Some(ann.id)));
    again.rows = upserts(&[Row::Expense(milk.clone())]);
    assert_eq!(
        store
            .commit_merge(first.id, again, Utc::now())
            .await
            .expect("again"),
        1
    );
    assert_eq!(
        store.materialized_rows(first.id).await.expect("ours"),
        in_store_order(&[Row::Expense(milk.clone()), Row::Expense(bread.clone())])
    );
    assert_eq!(store.document_change_count(first.id).await.expect("n"), 3);

    // A batch with a merge for a partnership that no longer exists leaves nothing behind.
    let more = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h4", "aa01", Some(ann.id))],
        bindings: vec![],
        rows: upserts(&[Row::Expense(expense(ann.id, "Tea", 300))]),
    };
    let orphan = MergeCommit {
        version: None,
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h9", "ee09", None)],
        bindings: vec![],
        rows: vec![],
    };
    assert!(matches!(
        store
            .commit_merges(&[(first.id, more), (Uuid::now_v7(), orphan)], Utc::now())
            .await,
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.document_change_count(first.id).await.expect("n"), 3);
    assert_eq!(
        store.materialized_rows(first.id).await.expect("ours"),
        in_store_order(&[Row::Expense(milk), Row::Expense(bread)])
    );
}

async fn the_committer_answers_each_merge_of_a_failed_batch_on_its_own(db: &TestDb) {
    use splitsave_server::sync::committer::Committer;
    let store = db.store().await;
    let committer = Arc::new(Committer::new(store.clone()));
    let mut couples = Vec::new();
    for _ in 0..6 {
        couples.push(couple(&store, "USD").await);
    }
    // Bound to the first partner of the first couple; the forged merge below claims it for the
    // second partner.
    store
        .bind_actor(couples[0].2.id, "ab01", couples[0].0.id, Utc::now())
        .await
        .expect("bind");
    // All at once, so they queue together and the batch holding the forged one fails.
    let rows: Vec<Vec<Row>> = couples
        .iter()
        .map(|(a, b, _)| sample_rows(a.id, b.id, 2))
        .collect();
    let mut tasks = Vec::new();
    for (i, (a, b, p)) in couples.iter().enumerate() {
        let forged = i == 0;
        let merge = MergeCommit {
            version: None,
            notifications: Vec::new(),
            history: Vec::new(),
            changes: vec![change(&format!("h{i}"), "ab01", Some(a.id))],
            bindings: vec![("ab01".into(), if forged { b.id } else { a.id })],
            rows: if forged { vec![] } else { upserts(&rows[i]) },
        };
        let (committer, pid) = (committer.clone(), p.id);
        tasks.push(tokio::spawn(
            async move { committer.commit(pid, merge).await },
        ));
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let result = task.await.expect("task");
        let pid = couples[i].2.id;
        if i == 0 {
            let shown = format!("{result:?}");
            assert!(is_conflict(result, "actor_bound"), "{shown}");
            assert_eq!(store.document_change_count(pid).await.expect("n"), 0);
        } else {
            assert_eq!(result.expect("committed"), 1, "couple {i}");
            assert_eq!(store.document_change_count(pid).await.expect("n"), 1);
            assert_eq!(
                store.materialized_rows(pid).await.expect("rows"),
                in_store_order(&rows[i])
            );
        }
    }
}

async fn a_peer_sync_state_is_kept_per_user_and_peer(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, p) = couple(&store, "USD").await;
    let phone = "5f1c2b7e-0000-4000-8000-000000000001";
    let laptop = "5f1c2b7e-0000-4000-8000-000000000002";
    assert_eq!(
        store
            .load_sync_state(p.id, ann.id, phone)
            .await
            .expect("load"),
        None
    );
    store
        .save_sync_state(p.id, ann.id, phone, b"state one", Utc::now())
        .await
        .expect("save");
    store
        .save_sync_state(p.id, ann.id, laptop, b"laptop", Utc::now())
        .await
        .expect("save laptop");
    store
        .save_sync_state(p.id, ann.id, phone, b"state two", Utc::now())
        .await
        .expect("replace");
    assert_eq!(
        store
            .load_sync_state(p.id, ann.id, phone)
            .await
            .expect("load"),
        Some(b"state two".to_vec())
    );
    assert_eq!(
        store
            .load_sync_state(p.id, ann.id, laptop)
            .await
            .expect("load"),
        Some(b"laptop".to_vec())
    );
    // Another user announcing the same storageId does not see Ann's state.
    assert_eq!(
        store
            .load_sync_state(p.id, ben.id, phone)
            .await
            .expect("load"),
        None
    );
    assert!(matches!(
        store
            .save_sync_state(Uuid::now_v7(), ann.id, phone, b"x", Utc::now())
            .await,
        Err(StoreError::NotFound)
    ));
    // Deleting the account deletes its partnership and with it the states.
    store.delete_user(ann.id).await.expect("delete");
    assert_eq!(
        store
            .load_sync_state(p.id, ann.id, laptop)
            .await
            .expect("load"),
        None
    );
}

async fn the_server_storage_id_is_created_once_and_shared(db: &TestDb) {
    let first_node = db.store().await;
    let second_node = db.store().await;
    // Both nodes ask at once on a fresh database: one id wins for both.
    let (a, b) = tokio::join!(
        first_node.server_storage_id(),
        second_node.server_storage_id()
    );
    let id = a.expect("first node");
    assert_eq!(b.expect("second node"), id);
    Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(first_node.server_storage_id().await.expect("again"), id);
    // A restart (a new store on the same database) keeps it.
    drop(first_node);
    drop(second_node);
    let restarted = db.store().await;
    assert_eq!(restarted.server_storage_id().await.expect("restarted"), id);
}

/// The expense row of `sample_rows`, as an upsert named `name`.
fn expense_upsert(ann: Uuid, ben: Uuid, name: &str) -> RowChange {
    let mut expense = sample_rows(ann, ben, 2)
        .into_iter()
        .find_map(|r| match r {
            Row::Expense(e) => Some(e),
            _ => None,
        })
        .expect("an expense row");
    expense.id = EntityId::new_v7();
    expense.name = name.to_string();
    RowChange::Upsert(Row::Expense(expense))
}

async fn each_merge_takes_the_next_version_and_a_taken_one_is_stale_and_writes_nothing(
    db: &TestDb,
) {
    let store = db.store().await;
    let (ann, ben, p) = couple(&store, "USD").await;
    assert_eq!(store.document_version(p.id).await.expect("version"), 0);
    let first = MergeCommit {
        version: Some(1),
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h1", "aa01", Some(ann.id))],
        bindings: vec![],
        rows: vec![expense_upsert(ann.id, ben.id, "first")],
    };
    store
        .commit_merge(p.id, first, Utc::now())
        .await
        .expect("version 1");
    assert_eq!(store.document_version(p.id).await.expect("version"), 1);
    let before = store.materialized_rows(p.id).await.expect("rows");

    // Another node made its merge from version 0 too: both the one-statement path (changes and
    // expense rows only) and the transaction path (an actor to bind) refuse it whole.
    let late = MergeCommit {
        version: Some(1),
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h2", "bb01", Some(ben.id))],
        bindings: vec![],
        rows: vec![expense_upsert(ann.id, ben.id, "late")],
    };
    let mut late_binding = late.clone();
    late_binding.bindings = vec![("bb01".into(), ben.id)];
    for merge in [late, late_binding] {
        let refused = store.commit_merge(p.id, merge, Utc::now()).await;
        assert!(is_conflict(refused, "stale"));
    }
    assert_eq!(store.document_version(p.id).await.expect("version"), 1);
    assert_eq!(store.materialized_rows(p.id).await.expect("rows"), before);
    let (_, changes) = store.load_document(p.id).await.expect("load");
    assert_eq!(changes, vec![b"change h1".to_vec()]);
    assert_eq!(store.actor_owner(p.id, "bb01").await.expect("owner"), None);

    // Made again from version 1, it commits as version 2.
    let again = MergeCommit {
        version: Some(2),
        notifications: Vec::new(),
        history: Vec::new(),
        changes: vec![change("h2", "bb01", Some(ben.id))],
        bindings: vec![("bb01".into(), ben.id)],
        rows: vec![expense_upsert(ann.id, ben.id, "late")],
    };
    store
        .commit_merge(p.id, again, Utc::now())
        .await
        .expect("version 2");
    assert_eq!(store.document_version(p.id).await.expect("version"), 2);
    assert_eq!(
        store.document_versions(&[p.id]).await.expect("versions"),
        vec![(p.id, 2)]
    );
}

async fn a_node_catches_up_with_what_was_committed_after_its_last_change(db: &TestDb) {
    let store = db.store().await;
    let (ann, ben, p) = couple(&store, "USD").await;
    let commit = |version: i64, hash: &str, user: Uuid| MergeCommit {
        version: Some(version),
        changes: vec![
            change(hash, "aa01", Some(user)),
            change(&format!("{hash}s"), "ff01", None),
        ],
        ..MergeCommit::default()
    };
    store
        .commit_merge(p.id, commit(1, "h1", ann.id), Utc::now())
        .await
        .expect("v1");
    // What a node loads: the version its content is exactly, with row ids.
    let loaded = store.stored_document(p.id).await.expect("stored");
    assert_eq!(loaded.version, 1);
    let (snapshot_id, bytes) = loaded.snapshot.expect("snapshot");
    assert_eq!(bytes, b"first snapshot".to_vec());
    let last = loaded.changes.last().expect("changes").id;
    assert_eq!(
        loaded.changes.iter().map(|c| c.user_id).collect::<Vec<_>>(),
        vec![Some(ann.id), None]
    );
    assert_eq!(
        store
            .document_tail(p.id, snapshot_id, last)
            .await
            .expect("tail"),
        DocumentTail::Changes {
            version: 1,
            changes: vec![]
        }
    );
    // Another node commits twice; the tail is exactly that, in order, with who stored it.
    for (version, hash, user) in [(2, "h2", ben.id), (3, "h3", ann.id)] {
        store
            .commit_merge(p.id, commit(version, hash, user), Utc::now())
            .await
            .expect("commit");
    }
    let DocumentTail::Changes { version, changes } = store
        .document_tail(p.id, snapshot_id, last)
        .await
        .expect("tail")
    else {
        panic!("no compaction happened");
    };
    assert_eq!(version, 3);
    assert_eq!(
        changes
            .iter()
            .map(|c| (c.bytes.clone(), c.user_id))
            .collect::<Vec<_>>(),
        vec![
            (b"change h2".to_vec(), Some(ben.id)),
            (b"change h2s".to_vec(), None),
            (b"change h3".to_vec(), Some(ann.id)),
            (b"change h3s".to_vec(), None),
        ]
    );
    assert!(changes.windows(2).all(|w| w[0].id < w[1].id));
}

async fn a_snapshot_never_replaces_one_of_a_later_version(db: &TestDb) {
    let store = db.store().await;
    let (ann, _ben, p) = couple(&store, "USD").await;
    for (version, hash) in [(1, "h1"), (2, "h2"), (3, "h3")] {
        let merge = MergeCommit {
            version: Some(version),
            changes: vec![change(hash, "aa01", Some(ann.id))],
            ..MergeCommit::default()
        };
        store
            .commit_merge(p.id, merge, Utc::now())
            .await
            .expect("commit");
    }
    let loaded = store.stored_document(p.id).await.expect("stored");
    let (first_snapshot, _) = loaded.snapshot.expect("snapshot");
    let snapshot = |version: i64, bytes: &[u8]| NewSnapshot {
        version,
        bytes: bytes.to_vec(),
        heads: vec!["cd".repeat(32)],
        change_count: version,
    };
    // A node at version 2 compacts what it has.
    let newer = store
        .compact(
            p.id,
            snapshot(2, b"at 2"),
            &["h1".into(), "h2".into()],
            Utc::now(),
        )
        .await
        .expect("compact")
        .expect("stored");
    // A node still at version 1 compacts later: refused, nothing deleted.
    let older = store
        .compact(p.id, snapshot(1, b"at 1"), &["h1".into()], Utc::now())
        .await
        .expect("compact");
    assert_eq!(older, None);
    let (snap, rest) = store.load_document(p.id).await.expect("load");
    assert_eq!(snap.as_deref(), Some(&b"at 2"[..]));
    assert_eq!(rest, vec![b"change h3".to_vec()]);
    // A reader that loaded the first snapshot learns it must load again.
    assert_eq!(
        store
            .document_tail(p.id, first_snapshot, 0)
            .await
            .expect("tail"),
        DocumentTail::Compacted
    );
    assert!(store.document_tail(p.id, newer, 0).await.is_ok());
    // The latest version survives the compaction of the versions below it.
    assert_eq!(store.document_version(p.id).await.expect("version"), 3);
}
