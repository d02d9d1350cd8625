//! The CPU one synced edit costs, protocol included, on a 200-expense partnership document —
//! the unit behind the sync load generator's "durable merges per second".
//!
//! One cycle is what the server's traffic makes of an edit: partner A adds an expense and sends
//! the Automerge sync message; the server applies it with SplitSave's rules around it (the
//! touched entities captured before, checked after, the materialized rows of what changed) and
//! answers both A (acknowledgement) and B (the change); B applies it and acknowledges; the
//! server takes that acknowledgement; A takes the server's. Messages are encoded and decoded as
//! on the wire; there is no network, storage or async runtime, so these are lower bounds of
//! what the server and the clients spend per merge. Each role is reported on its own:
//!
//! - `clients`: A's edit and message, A and B receiving and answering;
//! - `server_automerge`: the server's Automerge work (apply, the sync messages it generates);
//! - `server_rules`: the server's SplitSave work (touched, capture, check, rows);
//! - `whole`: all of it, as a single core would spend it.
//!
//! Run with `cargo bench -p splitsave-sync-core --bench sync_cycle`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use automerge::sync::{self, SyncDoc};
use automerge::Automerge;
mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use splitsave_sync_core::enforce::{self, Before};
use splitsave_sync_core::enums::{Category, Frequency};
use splitsave_sync_core::ids::UserId;
use splitsave_sync_core::materialize::rows_for;
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Ctx, NewExpense};
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::touched::touched_before_apply;

/// Expenses in the document before the measured edits (the load generator's hot document).
const ITEMS: usize = 200;
/// When the measured edits are made.
const EDITED: Millis = Millis(1_764_000_100_000);
/// Cycles run on one copy of the fixture before starting again from a fresh copy, so the
/// document stays near `ITEMS` however many iterations criterion asks for.
const CHUNK: u64 = 50;

/// Three replicas in sync, with the sync states of both connections on both sides.
#[derive(Clone)]
struct Replicas {
    server: Automerge,
    a: Automerge,
    b: Automerge,
    server_a: sync::State,
    server_b: sync::State,
    a_server: sync::State,
    b_server: sync::State,
    user_a: UserId,
    user_b: UserId,
    edits: usize,
}

/// Time spent per role.
#[derive(Default)]
struct Spent {
    clients: Duration,
    server_automerge: Duration,
    server_rules: Duration,
    /// Sync messages exchanged, and cycles run.
    messages: u64,
    cycles: u64,
}

fn expense(n: usize) -> NewExpense {
    NewExpense {
        name: format!("Expense {n}"),
        amount: MinorUnits(500 + (n % 100) as i64),
        category: Category::Groceries,
        frequency: Frequency::Monthly,
    }
}

/// Runs the exchange between a client and the server until neither has anything to send;
/// returns the size of the largest message the server sent.
fn settle(
    server: &mut Automerge,
    ss: &mut sync::State,
    client: &mut Automerge,
    cs: &mut sync::State,
) -> usize {
    let mut largest = 0;
    for _ in 0..20 {
        let to_server = client.generate_sync_message(cs);
        let to_client = server.generate_sync_message(ss);
        if to_server.is_none() && to_client.is_none() {
            return largest;
        }
        if let Some(m) = to_server {
            server
                .receive_sync_message(ss, wire(m))
                .expect("server receives");
        }
        if let Some(m) = to_client {
            let bytes = m.encode();
            largest = largest.max(bytes.len());
            let m = sync::Message::decode(&bytes).expect("decode");
            client.receive_sync_message(cs, m).expect("client receives");
        }
    }
    panic!("the exchange did not settle");
}

fn build() -> Replicas {
    let (mut server, user_a, user_b) = common::couple();
    let mut a = server.fork();
    let ctx = Ctx {
        user: user_a,
        now: common::CREATED,
    };
    // One change per expense, as an app adds them.
    for i in 0..ITEMS {
        a.transact(|tx| ops::add_expense(tx, &ctx, &expense(i)))
            .expect("add");
    }
    server.merge(&mut a).expect("merge");
    let mut b = server.fork();
    let (mut server_a, mut a_server) = (sync::State::new(), sync::State::new());
    let (mut server_b, mut b_server) = (sync::State::new(), sync::State::new());
    settle(&mut server, &mut server_a, &mut a, &mut a_server);
    settle(&mut server, &mut server_b, &mut b, &mut b_server);
    Replicas {
        server,
        a,
        b,
        server_a,
        server_b,
        a_server,
        b_server,
        user_a,
        user_b,
        edits: ITEMS,
    }
}

/// Over the wire and back: what each side really receives.
fn wire(m: sync::Message) -> sync::Message {
    sync::Message::decode(&m.encode()).expect("decode")
}

/// The server receives a message from `from` (0 = A, 1 = B): SplitSave's rules around the
/// apply when it carries changes; then answers whoever has something due (the sender always
/// gets asked, the other only when the document changed).
fn server_receives(
    r: &mut Replicas,
    from: usize,
    m: sync::Message,
    spent: &mut Spent,
) -> [Option<sync::Message>; 2] {
    let now = EDITED;
    let user = if from == 0 { r.user_a } else { r.user_b };
    let heads = r.server.get_heads();
    let t = Instant::now();
    let changes: Vec<automerge::Change> = m
        .changes
        .iter()
        .map(|c| automerge::Change::try_from(c).expect("change"))
        .collect();
    let before = (!changes.is_empty()).then(|| {
        let touched = touched_before_apply(&r.server, &changes);
        Before::capture(&r.server, touched)
    });
    spent.server_rules += t.elapsed();
    let t = Instant::now();
    let state = if from == 0 {
        &mut r.server_a
    } else {
        &mut r.server_b
    };
    r.server
        .receive_sync_message(state, m)
        .expect("server applies");
    spent.server_automerge += t.elapsed();
    if let Some(before) = before {
        let t = Instant::now();
        let settled = enforce::settle(&mut r.server, &before, &changes, user, now).expect("settle");
        let enforcement = settled.enforcement;
        assert!(enforcement.fixes.is_empty(), "a small expense needs no fix");
        let rows = rows_for(&r.server, &enforcement.affected()).expect("rows");
        assert!(!rows.changes.is_empty(), "the new expense has its row");
        spent.server_rules += t.elapsed();
    }
    let changed = r.server.get_heads() != heads;
    let t = Instant::now();
    let mut out = [None, None];
    for (side, slot) in out.iter_mut().enumerate() {
        if side == from || changed {
            let state = if side == 0 {
                &mut r.server_a
            } else {
                &mut r.server_b
            };
            *slot = r.server.generate_sync_message(state).map(wire);
        }
    }
    spent.server_automerge += t.elapsed();
    out
}

/// A sync message on its way: to the server from a client, or to a client (0 = A, 1 = B).
enum Hop {
    ToServer(usize, sync::Message),
    ToClient(usize, sync::Message),
}

/// One synced edit by A (see the module documentation), timing each role into `spent`: the
/// messages are delivered in the order they were sent until nobody has anything to send.
fn cycle(r: &mut Replicas, spent: &mut Spent) {
    r.edits += 1;
    let t = Instant::now();
    let ctx = Ctx {
        user: r.user_a,
        now: EDITED,
    };
    let input = expense(r.edits);
    r.a.transact(|tx| ops::add_expense(tx, &ctx, &input))
        .expect("edit");
    let first = r.a.generate_sync_message(&mut r.a_server).map(wire);
    spent.clients += t.elapsed();
    let mut queue: VecDeque<Hop> = first.map(|m| Hop::ToServer(0, m)).into_iter().collect();
    let mut delivered = 0;
    while let Some(hop) = queue.pop_front() {
        delivered += 1;
        assert!(delivered <= 40, "the exchange did not settle");
        match hop {
            Hop::ToServer(from, m) => {
                let answers = server_receives(r, from, m, spent);
                for (to, answer) in answers.into_iter().enumerate() {
                    queue.extend(answer.map(|a| Hop::ToClient(to, a)));
                }
            }
            Hop::ToClient(to, m) => {
                let t = Instant::now();
                let (doc, state) = if to == 0 {
                    (&mut r.a, &mut r.a_server)
                } else {
                    (&mut r.b, &mut r.b_server)
                };
                doc.receive_sync_message(state, m).expect("client receives");
                let reply = doc.generate_sync_message(state).map(wire);
                spent.clients += t.elapsed();
                queue.extend(reply.map(|m| Hop::ToServer(to, m)));
            }
        }
    }
    debug_assert_eq!(r.a.get_heads(), r.server.get_heads());
    debug_assert_eq!(r.b.get_heads(), r.server.get_heads());
    spent.messages += delivered;
    spent.cycles += 1;
}

/// Runs `iters` cycles in chunks on fresh copies and returns what `pick` says was spent.
fn run(fixture: &Replicas, iters: u64, pick: fn(&Spent) -> Duration) -> Duration {
    let mut spent = Spent::default();
    let mut done = 0;
    while done < iters {
        let mut r = fixture.clone();
        for _ in 0..CHUNK.min(iters - done) {
            cycle(&mut r, &mut spent);
            done += 1;
        }
    }
    pick(&spent)
}

fn bench(c: &mut Criterion) {
    let fixture = build();
    let mut sample = Spent::default();
    let mut r = fixture.clone();
    for _ in 0..CHUNK {
        cycle(&mut r, &mut sample);
    }
    eprintln!(
        "sync messages per edit: {:.2}",
        sample.messages as f64 / sample.cycles as f64
    );
    eprintln!(
        "document: {ITEMS} expenses, {} changes, save() {} bytes",
        fixture.server.get_changes(&[]).len(),
        fixture.server.save().len()
    );
    // What a newly installed app receives: the server's largest message to an empty replica.
    let (mut server, mut fresh) = (fixture.server.clone(), Automerge::new());
    let (mut ss, mut cs) = (sync::State::new(), sync::State::new());
    let largest = settle(&mut server, &mut ss, &mut fresh, &mut cs);
    assert_eq!(
        fresh.get_heads(),
        server.get_heads(),
        "the new replica caught up"
    );
    eprintln!("largest message to a new replica: {largest} bytes");
    let mut g = c.benchmark_group("sync_cycle_200_expenses");
    g.sample_size(30).measurement_time(Duration::from_secs(8));
    g.bench_function("clients", |b| {
        b.iter_custom(|iters| run(&fixture, iters, |s| s.clients))
    });
    g.bench_function("server_automerge", |b| {
        b.iter_custom(|iters| run(&fixture, iters, |s| s.server_automerge))
    });
    g.bench_function("server_rules", |b| {
        b.iter_custom(|iters| run(&fixture, iters, |s| s.server_rules))
    });
    g.bench_function("whole", |b| {
        b.iter_custom(|iters| {
            run(&fixture, iters, |s| {
                s.clients + s.server_automerge + s.server_rules
            })
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
