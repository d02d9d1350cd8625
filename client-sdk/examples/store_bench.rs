//! Measures the local store: open time, append latency and size on disk.
//!
//! ```text
//! cargo run --release -p splitsave-client --example store_bench [-- DIR]
//! ```
//!
//! The store holds what a couple's phone has after a while: a snapshot of the partnership
//! document with 200 expenses, then 500 changes appended one at a time (each a short message).
//! Then:
//! - *open*: `LocalStore::open` alone, and `open` + `load_document` (what `Client::new` does),
//!   [`OPENS`] times each;
//! - *append*: [`APPENDS`] appends of one small change each (a message), every one durable
//!   before it returns, timed one by one (the edit itself is not timed; a compaction that an
//!   append triggers is);
//! - *size*: the bytes of every file in the store's directory after the setup (closed), and
//!   after the appends, while the store is still open and once it is closed.
//!
//! The store lives in a temporary directory under `DIR` (default: the system's temp directory),
//! which should be on the disk the app would use: fsync costs what that disk makes it cost.

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::Automerge;
use splitsave_client::store::{LocalStore, STORE_FORMAT};
use splitsave_sync_core::document::{
    new_partnership_document, server_actor, NewMember, NewPartnership,
};
use splitsave_sync_core::enums::{Category, Frequency};
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense};
use splitsave_sync_core::time::Millis;

const EXPENSES: usize = 200;
const LOGGED_CHANGES: usize = 500;
const OPENS: usize = 30;
const APPENDS: usize = 1000;

fn main() {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base).expect("temp dir");
    let dir = tmp.path().join("store");
    println!(
        "store format {STORE_FORMAT}, directory {}",
        tmp.path().display()
    );

    // The setup: a snapshot of 200 expenses, then 500 logged changes.
    let user = UserId::new_v7();
    let mut now = 1_764_000_000_000i64;
    let setup = Instant::now();
    {
        let mut store = LocalStore::open(&dir).expect("open");
        let mut doc = couple(user);
        doc.set_actor(store.actor().expect("actor"));
        for i in 0..EXPENSES {
            now += 1000;
            let ctx = Ctx {
                user,
                now: Millis(now),
            };
            let input = NewExpense {
                name: format!("expense {i}"),
                amount: MinorUnits(1_000 + i as i64),
                category: Category::Other,
                frequency: Frequency::Monthly,
            };
            doc.transact::<_, _, ops::OpError>(|tx| ops::add_expense(tx, &ctx, &input))
                .expect("add expense");
        }
        store.save_snapshot(&mut doc).expect("snapshot");
        for i in 0..LOGGED_CHANGES {
            now += 1000;
            message(&mut doc, user, now, i);
            store.append_changes(&mut doc).expect("append");
        }
    }
    let setup = setup.elapsed();
    let size_setup = dir_size(&dir);

    // Open time.
    let mut open_only = Vec::with_capacity(OPENS);
    let mut open_load = Vec::with_capacity(OPENS);
    for _ in 0..OPENS {
        let start = Instant::now();
        let store = LocalStore::open(&dir).expect("open");
        open_only.push(start.elapsed());
        drop(store);

        let start = Instant::now();
        let store = LocalStore::open(&dir).expect("open");
        let doc = store.load_document().expect("load").expect("a document");
        open_load.push(start.elapsed());
        assert_eq!(doc.get_changes(&[]).len(), 1 + EXPENSES + LOGGED_CHANGES);
    }

    // Append latency, each append durable.
    let mut appends = Vec::with_capacity(APPENDS);
    let heads;
    let size_open;
    {
        let mut store = LocalStore::open(&dir).expect("open");
        let mut doc = store.load_document().expect("load").expect("a document");
        for i in 0..APPENDS {
            now += 1000;
            message(&mut doc, user, now, LOGGED_CHANGES + i);
            let start = Instant::now();
            store.append_changes(&mut doc).expect("append");
            appends.push(start.elapsed());
        }
        heads = doc.get_heads();
        size_open = dir_size(&dir);
    }
    let size_after = dir_size(&dir);
    let store = LocalStore::open(&dir).expect("open");
    let doc = store.load_document().expect("load").expect("a document");
    assert_eq!(doc.get_heads(), heads, "every append is on disk");

    println!("setup (snapshot of {EXPENSES} expenses + {LOGGED_CHANGES} appends): {setup:.2?}");
    println!("open only ({OPENS}x): {}", summary(&mut open_only));
    println!(
        "open + load_document ({OPENS}x): {}",
        summary(&mut open_load)
    );
    println!("append ({APPENDS}x): {}", summary(&mut appends));
    println!(
        "size after setup: {size_setup} bytes; after {APPENDS} more appends: {size_open} bytes \
         while open, {size_after} bytes closed"
    );
}

/// A new partnership in USD whose first member is `user`.
fn couple(user: UserId) -> Automerge {
    let member = |user_id, name: &str, income, slot| NewMember {
        user_id,
        name: name.into(),
        income: Some(MinorUnits(income)),
        slot,
    };
    let doc = new_partnership_document(&NewPartnership {
        id: PartnershipId::new_v7(),
        currency: Currency::USD,
        approval_threshold: MinorUnits(100_000),
        members: [
            member(user, "A", 400_000, 1),
            member(UserId::new_v7(), "B", 500_000, 2),
        ],
        created_at: Millis(1_764_000_000_000),
    })
    .expect("document");
    doc.with_actor(server_actor([7; 8]))
}

/// One small change: a message to the partner.
fn message(doc: &mut Automerge, user: UserId, now: i64, i: usize) {
    let ctx = Ctx {
        user,
        now: Millis(now),
    };
    doc.transact::<_, _, ops::OpError>(|tx| ops::send_message(tx, &ctx, &format!("message {i}")))
        .expect("message");
}

/// Sum of the lengths of the files in `dir`.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum()
}

fn summary(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    format!(
        "median {:.3?}, p99 {:.3?}, min {:.3?}, max {:.3?}",
        at(0.5),
        at(0.99),
        samples[0],
        samples[samples.len() - 1]
    )
}
