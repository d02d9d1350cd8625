//! Merge cost on a large partnership document: automerge's bare apply of a 10-change merge,
//! the same merge with SplitSave's enforcement (clone, apply, find touched entities from the
//! changes' ops, check, compensate), and materialization of the whole document.
//!
//! Document: 5,000 expenses and 50,000 changes of history. Run with
//! `cargo bench -p splitsave-sync-core --bench merge`.

use std::time::Duration;

use automerge::{Automerge, Change};
mod common;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use splitsave_sync_core::enforce::{check, compensate, enforce, new_changes, Before};
use splitsave_sync_core::enums::{Category, Frequency};
use splitsave_sync_core::ids::{EntityId, UserId};
use splitsave_sync_core::materialize::all_rows;
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Ctx, NewExpense};
use splitsave_sync_core::read;
use splitsave_sync_core::schema::Collection;
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::touched::touched_before_apply;

const EXPENSES: usize = 5_000;
const HISTORY: usize = 50_000;

struct Fixture {
    server: Automerge,
    author: UserId,
    changes: Vec<Change>,
}

fn build() -> Fixture {
    let (mut server, a, _) = common::couple();
    let mut client = server.fork();
    let ctx = Ctx {
        user: a,
        now: common::CREATED,
    };
    let mut ids = Vec::with_capacity(EXPENSES);
    for i in 0..EXPENSES {
        let input = NewExpense {
            name: format!("Expense {i}"),
            amount: MinorUnits(100 + (i as i64 % 9_000)),
            category: Category::Groceries,
            frequency: Frequency::Monthly,
        };
        client
            .transact(|tx| ops::add_expense(tx, &ctx, &input))
            .expect("add");
        ids.push(EntityId::new_v7());
    }
    // The rest of the history: small edits (archive/unarchive-free `updated_at` touches),
    // one change each, the way a long-lived document accumulates them.
    let keys = read::collection_keys(&client, Collection::Expenses);
    let mut n = client.get_changes(&[]).len();
    let mut i = 0usize;
    while n <= HISTORY {
        let key = &keys[i % keys.len()];
        client
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                let obj = read::entity_obj(tx, Collection::Expenses, key)
                    .unwrap()
                    .unwrap();
                automerge::transaction::Transactable::put(
                    tx,
                    &obj,
                    "updated_at",
                    1_764_000_000_000i64 + i as i64,
                )
            })
            .expect("edit");
        i += 1;
        n += 1;
    }
    server.merge(&mut client).expect("merge history");
    // The merge under test: 10 changes from one client, one of them forbidden (an expense
    // over the threshold written as active), the others ordinary adds and archives.
    let mut incoming = server.fork();
    let before = incoming.get_heads();
    for j in 0..8 {
        let input = NewExpense {
            name: format!("New {j}"),
            amount: MinorUnits(2_500),
            category: Category::Dining,
            frequency: Frequency::Weekly,
        };
        incoming
            .transact(|tx| ops::add_expense(tx, &ctx, &input))
            .expect("add");
    }
    let archived = EntityId(keys[0].parse().expect("uuid"));
    incoming
        .transact(|tx| ops::archive_expense(tx, &ctx, archived))
        .expect("archive");
    incoming
        .transact::<_, _, automerge::AutomergeError>(|tx| {
            let e = splitsave_sync_core::write::new_entity(
                tx,
                Collection::Expenses,
                &EntityId::new_v7().to_string(),
            )?;
            use automerge::transaction::Transactable;
            tx.put(&e, "name", "Raw TV")?;
            tx.put(&e, "amount", 250_000)?;
            tx.put(&e, "category", "entertainment")?;
            tx.put(&e, "frequency", "monthly")?;
            tx.put(&e, "added_by", a.to_string())?;
            tx.put(&e, "status", "active")?;
            tx.put(&e, "created_at", 1_764_000_000_000i64)?;
            tx.put(&e, "updated_at", 1_764_000_000_000i64)
        })
        .expect("raw");
    let changes = incoming.get_changes(&before);
    assert_eq!(changes.len(), 10);
    let _ = ids;
    assert!(server.get_changes(&[]).len() >= HISTORY);
    Fixture {
        server,
        author: a,
        changes,
    }
}

fn bench(c: &mut Criterion) {
    let f = build();
    eprintln!(
        "document: {} expenses, {} changes, save() {} bytes",
        read::collection_keys(&f.server, Collection::Expenses).len(),
        f.server.get_changes(&[]).len(),
        f.server.save().len()
    );
    let now = Millis(1_764_000_100_000);
    let mut g = c.benchmark_group("merge_10_changes_5000_expenses_50000_history");
    g.sample_size(30).measurement_time(Duration::from_secs(10));
    g.bench_function("bare_automerge_apply", |bch| {
        bch.iter_batched(
            || f.server.clone(),
            |mut doc| {
                doc.apply_changes(f.changes.clone()).expect("apply");
                doc
            },
            BatchSize::LargeInput,
        )
    });
    // What the server does per merge: place the changes' operations, capture the touched
    // entities' state, apply in place (no clone), check, write the compensation.
    g.bench_function("apply_with_enforcement", |bch| {
        bch.iter_batched(
            || f.server.clone(),
            |mut live| {
                let touched = touched_before_apply(&live, &f.changes);
                let before = Before::capture(&live, touched);
                live.apply_changes(f.changes.clone()).expect("apply");
                let e = check(&before, &live, f.author, now).expect("enforce");
                assert_eq!(
                    e.fixes.len(),
                    2,
                    "the raw over-threshold expense is compensated"
                );
                compensate(&mut live, &e, now).expect("compensate");
                live
            },
            BatchSize::LargeInput,
        )
    });
    // The same with a clone of the live document as the candidate (the path the server takes
    // when a sync message carries a whole-document chunk it cannot inspect before applying).
    g.bench_function("apply_with_enforcement_on_clone", |bch| {
        bch.iter_batched(
            || f.server.clone(),
            |live| {
                let mut candidate = live.clone();
                candidate.apply_changes(f.changes.clone()).expect("apply");
                let e = enforce(&live, &candidate, &f.changes, f.author, now).expect("enforce");
                compensate(&mut candidate, &e, now).expect("compensate");
                (live, candidate)
            },
            BatchSize::LargeInput,
        )
    });
    g.bench_function("part_clone", |bch| bch.iter(|| f.server.clone()));
    let mut merged = f.server.clone();
    merged.apply_changes(f.changes.clone()).expect("apply");
    g.bench_function("part_touched", |bch| {
        bch.iter(|| splitsave_sync_core::touched::touched_by(&f.server, &merged, &f.changes))
    });
    g.bench_function("part_check", |bch| {
        bch.iter(|| enforce(&f.server, &merged, &f.changes, f.author, now).expect("enforce"))
    });
    let e = enforce(&f.server, &merged, &f.changes, f.author, now).expect("enforce");
    g.bench_function("part_compensate", |bch| {
        bch.iter_batched(
            || merged.clone(),
            |mut d| {
                compensate(&mut d, &e, now).expect("compensate");
                d
            },
            BatchSize::LargeInput,
        )
    });
    let mut merged = f.server.clone();
    merged.apply_changes(f.changes.clone()).expect("apply");
    g.bench_function("find_new_changes_after_sync_merge", |bch| {
        bch.iter(|| new_changes(&f.server, &merged).len())
    });
    g.finish();
    let mut g = c.benchmark_group("materialize");
    g.sample_size(20);
    g.bench_function("all_rows_5000_expenses", |bch| {
        bch.iter(|| all_rows(&merged).expect("rows").changes.len())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
