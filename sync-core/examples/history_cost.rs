//! What deriving a couple's history from the document's own changes costs on a long-lived
//! document (docs/history-design.md): the numbers that choose between reading history out of
//! Automerge at request time and keeping a derived index at commit time.
//!
//! Builds a document of `N` changes (default 100,000; `HISTORY_CHANGES` to change it), each one
//! user action: expenses added (names as Text), their amounts edited, some archived, and chat
//! messages. Then it measures, medians of a few runs:
//!
//! - `save()` size and `Automerge::load` time;
//! - `get_changes(&[])` (every change, what a walk of the history starts from);
//! - `diff(parents, change)` of the newest change over the whole document (Automerge's patches:
//!   old and new values of what one change did);
//! - `diff_obj` of only the entity that change touched, non-recursive;
//! - `get_at` of one field at the change's parents (the old value of one edited field).
//!
//! Run with `cargo run --release -p splitsave-sync-core --example history_cost`.

use std::time::{Duration, Instant};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, AutomergeError, ChangeHash, ObjType, ReadDoc, ROOT};
use splitsave_sync_core::schema::Collection;
use splitsave_sync_core::write;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Duration {
    median(
        (0..runs)
            .map(|_| {
                let t = Instant::now();
                std::hint::black_box(f());
                t.elapsed()
            })
            .collect(),
    )
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1000.0)
}

fn build(n: usize) -> Automerge {
    let mut doc = Automerge::new();
    doc.set_actor(ActorId::from(b"partner-one-device".to_vec()));
    doc.transact::<_, _, AutomergeError>(|tx| {
        for c in [Collection::Expenses, Collection::Messages] {
            tx.put_object(ROOT, c.key(), ObjType::Map)?;
        }
        Ok(())
    })
    .expect("collections");
    let mut expenses: Vec<String> = Vec::new();
    for i in 0..n {
        let at = 1_700_000_000_000i64 + i as i64 * 60_000;
        doc.transact_with::<_, _, AutomergeError, _>(
            |_| CommitOptions::default().with_time(at / 1000),
            |tx| {
                match i % 10 {
                    // 3 in 10: an expense added.
                    0 | 3 | 6 => {
                        let key = format!("expense-{i:08}");
                        let e = write::new_entity(tx, Collection::Expenses, &key)?;
                        write::put_text(tx, &e, "name", &format!("Groceries week {i}"))?;
                        tx.put(&e, "amount", 4_250 + (i % 97) as i64)?;
                        tx.put(&e, "category", "groceries")?;
                        tx.put(&e, "frequency", "weekly")?;
                        tx.put(&e, "status", "active")?;
                        tx.put(&e, "created_at", at)?;
                        tx.put(&e, "updated_at", at)?;
                        expenses.push(key);
                    }
                    // 2 in 10: an amount edited (an approved edit).
                    1 | 4 => {
                        if let Some(key) = expenses.last() {
                            let coll = tx.get(ROOT, "expenses")?.expect("expenses").1;
                            let e = tx.get(&coll, key.as_str())?.expect("expense").1;
                            tx.put(&e, "amount", 5_000 + (i % 89) as i64)?;
                            tx.put(&e, "updated_at", at)?;
                        }
                    }
                    // 1 in 10: the oldest still listed expense archived.
                    2 => {
                        if let Some(key) = expenses.get(i / 30) {
                            let coll = tx.get(ROOT, "expenses")?.expect("expenses").1;
                            let e = tx.get(&coll, key.as_str())?.expect("expense").1;
                            tx.put(&e, "status", "archived")?;
                        }
                    }
                    // 4 in 10: a message.
                    _ => {
                        let key = format!("message-{i:08}");
                        let m = write::new_entity(tx, Collection::Messages, &key)?;
                        write::put_text(tx, &m, "text", "See you at eight, I'll bring dessert")?;
                        tx.put(&m, "message_type", "text")?;
                        tx.put(&m, "read_by_recipient", false)?;
                        tx.put(&m, "created_at", at)?;
                    }
                }
                Ok(())
            },
        )
        .expect("a change");
    }
    doc
}

fn main() {
    let n: usize = std::env::var("HISTORY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t = Instant::now();
    let doc = build(n);
    println!(
        "built {n} changes in {:.1} s; {} ops",
        t.elapsed().as_secs_f64(),
        doc.stats().num_ops
    );
    let saved = doc.save();
    println!("save(): {:.1} KiB", saved.len() as f64 / 1024.0);
    println!(
        "load: {}",
        ms(time(5, || Automerge::load(&saved).expect("loads")))
    );
    let doc = Automerge::load(&saved).expect("loads");
    println!(
        "get_changes(&[]): {}",
        ms(time(5, || doc.get_changes(&[]).len()))
    );

    // The newest change that edited an expense: its parents and itself.
    let heads = doc.get_heads();
    let mut change = doc.get_change_by_hash(&heads[0]).expect("head").clone();
    while change.message().is_some() || change.len() != 2 {
        let dep = change.deps()[0];
        change = doc.get_change_by_hash(&dep).expect("dep").clone();
    }
    let parents: Vec<ChangeHash> = change.deps().to_vec();
    let after = vec![change.hash()];
    println!(
        "diff(parents, change) over the document: {} ({} patches)",
        ms(time(5, || doc.diff(&parents, &after).len())),
        doc.diff(&parents, &after).len()
    );
    let coll = doc.get(ROOT, "expenses").unwrap().unwrap().1;
    let key = doc.keys(&coll).last().expect("an expense");
    let entity = doc.get(&coll, key.as_str()).unwrap().unwrap().1;
    println!(
        "diff_obj(entity, parents, change), non-recursive: {}",
        ms(time(5, || doc
            .diff_obj(&entity, &parents, &after, false)
            .map(|p| p.len())))
    );
    println!(
        "get_at(entity.amount, parents): {}",
        ms(time(5, || doc.get_at(&entity, "amount", &parents).is_ok()))
    );
    println!(
        "50 x diff(parents, change) (a first page read out of Automerge): {}",
        ms(time(3, || {
            (0..50)
                .map(|_| doc.diff(&parents, &after).len())
                .sum::<usize>()
        }))
    );
}
