//! What deriving a couple's history from the document's own changes costs on a long-lived
//! document (docs/history-design.md): the numbers that choose between reading history out of
//! Automerge at request time and keeping a derived index at commit time.
//!
//! Builds a couple's document of `N` changes (default 100,000; `HISTORY_CHANGES` to change it)
//! over three years with the generator in `examples/support/couple_history.rs` (shared with
//! `server/examples/history_page.rs`): each change one action of a partner's device or a REST
//! operation (expenses added with Text names, amount edits asked for and approved, expenses
//! archived, goals and contributions, chat messages), and a few server compensations. Then it
//! measures, medians of a few runs:
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

use automerge::{Automerge, ChangeHash, ReadDoc, ROOT};

#[path = "support/couple_history.rs"]
mod couple_history;

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

fn main() {
    let n: usize = std::env::var("HISTORY_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let t = Instant::now();
    let built = couple_history::build(n, &couple_history::Couple::random());
    let doc = built.doc;
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

    // The newest change a device wrote to one expense's amount: its parents and itself.
    let (hash, expense) = built.last_direct_edit.expect("an amount edited");
    let change = doc.get_change_by_hash(&hash).expect("the edit").clone();
    let parents: Vec<ChangeHash> = change.deps().to_vec();
    let after = vec![change.hash()];
    println!(
        "diff(parents, change) over the document: {} ({} patches)",
        ms(time(5, || doc.diff(&parents, &after).len())),
        doc.diff(&parents, &after).len()
    );
    let coll = doc.get(ROOT, "expenses").unwrap().unwrap().1;
    let entity = doc
        .get(&coll, expense.to_string().as_str())
        .unwrap()
        .unwrap()
        .1;
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
