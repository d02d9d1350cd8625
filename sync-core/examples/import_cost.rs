//! What importing a large couple costs (`POST /api/import`, docs/rest-api.md): the document
//! work the server does for one import of `N` entries (default 20,000; `IMPORT_ENTRIES` to
//! change it), as one operation in one change.
//!
//! The entries are like a long-lived couple's: 80% expenses (names as Text, about 20
//! characters), 10% messages (about 40 characters), 5% goals and 5% contributions to them. It
//! measures each step the document actor takes for a REST operation, once:
//!
//! - `Import::check` (the rules, before anything is written);
//! - `write_import` in one transaction (the change's operations);
//! - `get_changes` of the new change (what is stored and synced);
//! - `touched_after_apply` (which entities the commit materializes);
//! - `materialize::rows_for` (the rows);
//! - `events::events` and `notifications::from_merge` (what `/api/events` subscribers and push
//!   notifications are told; the actor computes them only when someone listens or is away).
//!
//! Run with `cargo run --release -p splitsave-sync-core --example import_cost`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use splitsave_sync_core::document::{new_partnership_document, NewMember, NewPartnership};
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::import::{write_import, Import, Target};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::Ctx;
use splitsave_sync_core::schema::*;
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::{events, materialize, notifications, touched};

fn ms(d: Duration) -> String {
    format!("{:>9.1} ms", d.as_secs_f64() * 1000.0)
}

fn timed<T>(what: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    println!("{what:<28}{}", ms(t.elapsed()));
    out
}

fn import(n: usize, [a, b]: [UserId; 2], now: Millis) -> Import {
    let at = |i: usize| Millis(now.0 - 1_000_000_000 + i as i64 * 1_000);
    let by = |i: usize| if i.is_multiple_of(2) { a } else { b };
    let mut import = Import::default();
    let goals = n / 20;
    for i in 0..goals {
        let id = EntityId::new_v7();
        import.goals.push(Goal {
            id,
            name: format!("Saving for thing {i}"),
            target_amount: MinorUnits(500_000),
            saved_amount: MinorUnits(2_500),
            goal_type: GoalType::Other,
            priority: Priority::Medium,
            added_by: by(i),
            status: ItemStatus::Active,
            created_at: at(i),
            updated_at: at(i),
        });
        import.goal_contributions.push(GoalContribution {
            id: EntityId::new_v7(),
            goal_id: id,
            user_id: by(i + 1),
            amount: MinorUnits(2_500),
            created_at: at(i),
        });
    }
    for i in 0..n / 10 {
        import.messages.push(Message {
            id: EntityId::new_v7(),
            sender_id: by(i),
            text: format!("Message {i}: paid the rent, see you at 8"),
            message_type: MessageType::Text,
            read_by_recipient: true,
            created_at: at(i),
        });
    }
    let expenses = n - 2 * goals - n / 10;
    for i in 0..expenses {
        import.expenses.push(Expense {
            id: EntityId::new_v7(),
            name: format!("Groceries, week {i}"),
            amount: MinorUnits(8_550),
            category: Category::Groceries,
            frequency: Frequency::Weekly,
            added_by: by(i),
            status: ItemStatus::Archived,
            created_at: at(i),
            updated_at: at(i),
        });
    }
    import.months.push(MonthContribution {
        month: splitsave_sync_core::split::Month::from_unix_millis(now.0),
        total_required: MinorUnits(0),
        amounts: BTreeMap::from([(a, MinorUnits(0)), (b, MinorUnits(0))]),
        paid: BTreeMap::from([(a, None), (b, None)]),
    });
    import
}

fn main() {
    let n: usize = std::env::var("IMPORT_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let users = [UserId::new_v7(), UserId::new_v7()];
    let now = Millis::now();
    let member = |user_id, name: &str, slot| NewMember {
        user_id,
        name: name.into(),
        income: Some(MinorUnits(300_000)),
        slot,
    };
    let mut doc = new_partnership_document(&NewPartnership {
        id: PartnershipId::new_v7(),
        currency: Currency::USD,
        approval_threshold: MinorUnits(10_000),
        members: [member(users[0], "Ann", 1), member(users[1], "Ben", 2)],
        created_at: now,
    })
    .expect("document");
    println!("importing {n} entries");
    let import = import(n, users, now);
    let target = Target {
        currency: Currency::USD,
        members: users,
        now,
    };
    let checked = timed("check", || import.check(&target).expect("valid"));
    let heads = doc.get_heads();
    let ctx = Ctx {
        user: users[0],
        now,
    };
    timed("write_import (transaction)", || {
        doc.transact(|tx| write_import(tx, &ctx, &checked))
            .map_err(|f| f.error)
            .expect("written")
    });
    let changes = timed("get_changes", || doc.get_changes(&heads));
    let ops: usize = changes.iter().map(|c| c.len()).sum();
    let bytes: usize = changes.iter().map(|c| c.raw_bytes().len()).sum();
    println!(
        "  {} change(s), {ops} operations, {bytes} bytes",
        changes.len()
    );
    let touched = timed("touched_after_apply", || {
        touched::touched_after_apply(&doc, &changes)
    });
    let rows = timed("materialize::rows_for", || {
        materialize::rows_for(&doc, &touched).expect("rows")
    });
    println!("  {} rows", rows.changes.len());
    let events = timed("events::events", || events::events(&doc, &changes));
    println!("  {} events", events.len());
    timed("notifications::from_merge", || {
        notifications::from_merge(&doc, &changes, users[0])
    });
    timed("save", || doc.save().len());
}
