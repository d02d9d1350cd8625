//! What storing strings as Automerge Text costs, against scalar strings (docs/js-field-types.md).
//!
//! Builds one realistic couple's document three times, identical except for how string values
//! are stored:
//!
//! - `scalar`: every string a scalar string (what `sync-core` writes today);
//! - `free-text`: names, message texts and approval notes as Text, ids and enums scalar;
//! - `all-text`: every string Text (what a stock `@automerge/automerge` 3.x client writes when it
//!   assigns plain JS strings everywhere).
//!
//! For each it prints the operation count, the saved size, the size of the changes (as
//! stored and as sent), the live heap after building and after `Automerge::load` (a counting
//! global allocator), the peak heap during load, and the median time to load and to read every
//! field back with `read_document`. The three documents must read back equal.
//!
//! Run with `cargo run --release -p splitsave-sync-core --example text_vs_scalar`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, AutomergeError, ObjId, ObjType, ReadDoc, ScalarValue, ROOT};
use splitsave_sync_core::document::{read_document, server_actor, DocumentState};
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::strings::misshapen_document;
use splitsave_sync_core::time::Millis;

// ---------------------------------------------------------------------------------------------
// Heap accounting: live and peak bytes requested from the system allocator.

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(n: usize) {
    let now = LIVE.fetch_add(n, Ordering::Relaxed) + n;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// updates counters on the side, so `System`'s guarantees carry over.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which we pass on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (every allocation goes there).
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; the caller upholds `realloc`'s contract.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts a peak measurement from the current live size.
fn reset_peak() {
    PEAK.store(live(), Ordering::Relaxed);
}

// ---------------------------------------------------------------------------------------------
// A deterministic couple: the same typed values for every layout.

const EXPENSES: usize = 200;
const GOALS: usize = 20;
const GOAL_CONTRIBUTIONS: usize = 60;
const EXPENSE_EDITS: usize = 20;
const MESSAGES: usize = 500;
const MONTHS: u8 = 12;

/// xorshift64*: reproducible text and amounts with no extra dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len() as u64) as usize]
    }

    /// Words joined by spaces, about `len` characters (± a third), at least one word.
    fn phrase(&mut self, len: usize) -> String {
        // One string, split at use, so rustfmt keeps it to a few lines.
        const WORDS: &str = "rent groceries power water internet phone gym car loan dinner \
            cinema coffee dentist vet insurance daycare train pass streaming weekend holiday \
            savings birthday gift shared monthly bill paid can you check the this month again \
            thanks tomorrow okay café naïve señora";
        let words: Vec<&str> = WORDS.split_whitespace().collect();
        let target = len * 2 / 3 + self.below(len as u64 * 2 / 3 + 1) as usize;
        let mut s = String::new();
        while s.chars().count() < target || s.is_empty() {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(self.pick(&words));
        }
        s
    }
}

struct Couple {
    partnership: PartnershipInfo,
    members: [Member; 2],
    expenses: Vec<Expense>,
    goals: Vec<Goal>,
    contributions: Vec<GoalContribution>,
    approvals: Vec<Approval>,
    messages: Vec<Message>,
    months: Vec<MonthContribution>,
}

const T0: i64 = 1_780_000_000_000;

fn id(rng: &mut Rng) -> EntityId {
    EntityId(uuid::Uuid::from_u64_pair(rng.next(), rng.next()))
}

fn couple() -> Couple {
    let mut rng = Rng(0x5EED_5A1E_0000_0001);
    let users = [
        UserId(uuid::Uuid::from_u64_pair(1, 1)),
        UserId(uuid::Uuid::from_u64_pair(2, 2)),
    ];
    let mut t = T0;
    let mut tick = |rng: &mut Rng| {
        t += 60_000 + rng.below(3_600_000) as i64;
        Millis(t)
    };
    let members = [
        Member {
            user_id: users[0],
            name: "Alex Moreau".into(),
            income: Some(MinorUnits(420_000)),
            slot: 1,
        },
        Member {
            user_id: users[1],
            name: "Sam Okafor-Lindqvist".into(),
            income: Some(MinorUnits(380_000)),
            slot: 2,
        },
    ];
    let expenses: Vec<Expense> = (0..EXPENSES)
        .map(|i| {
            let at = tick(&mut rng);
            Expense {
                id: id(&mut rng),
                name: rng.phrase(15),
                amount: MinorUnits(500 + rng.below(50_000) as i64),
                category: rng.pick(Category::ALL),
                frequency: rng.pick(&[Frequency::Weekly, Frequency::Monthly, Frequency::Yearly]),
                added_by: users[i % 2],
                status: if i % 10 == 0 {
                    ItemStatus::Archived
                } else {
                    ItemStatus::Active
                },
                created_at: at,
                updated_at: at,
            }
        })
        .collect();
    let goals: Vec<Goal> = (0..GOALS)
        .map(|i| {
            let at = tick(&mut rng);
            Goal {
                id: id(&mut rng),
                name: rng.phrase(15),
                target_amount: MinorUnits(100_000 + rng.below(2_000_000) as i64),
                saved_amount: MinorUnits(0),
                goal_type: rng.pick(GoalType::ALL),
                priority: rng.pick(&[Priority::Low, Priority::Medium, Priority::High]),
                added_by: users[i % 2],
                status: ItemStatus::Active,
                created_at: at,
                updated_at: at,
            }
        })
        .collect();
    let mut approvals = Vec::new();
    // Every goal went through a goal_add request, answered by the other partner.
    for (i, g) in goals.iter().enumerate() {
        approvals.push(Approval {
            id: id(&mut rng),
            requested_by: g.added_by,
            request_type: RequestType::GoalAdd,
            target_id: g.id,
            request_data: RequestData::Goal(GoalFields {
                name: Some(g.name.clone()),
                target_amount: Some(g.target_amount),
                goal_type: Some(g.goal_type),
                priority: Some(g.priority),
            }),
            message: (i % 2 == 0).then(|| rng.phrase(40)),
            status: ApprovalStatus::Approved,
            responded_by: Some(users[1 - i % 2]),
            responded_at: Some(Millis(g.created_at.0 + 3_600_000)),
            created_at: g.created_at,
        });
    }
    // Some expense edits proposed by one partner, half still pending.
    for (i, e) in expenses.iter().take(EXPENSE_EDITS).enumerate() {
        let answered = i % 2 == 0;
        approvals.push(Approval {
            id: id(&mut rng),
            requested_by: e.added_by,
            request_type: RequestType::ExpenseEdit,
            target_id: e.id,
            request_data: RequestData::Expense(ExpenseFields {
                name: Some(rng.phrase(15)),
                amount: Some(MinorUnits(e.amount.0 + 100)),
                category: None,
                frequency: None,
            }),
            message: Some(rng.phrase(40)),
            status: if answered {
                ApprovalStatus::Declined
            } else {
                ApprovalStatus::Pending
            },
            responded_by: answered.then_some(users[1 - i % 2]),
            responded_at: answered.then_some(Millis(e.created_at.0 + 7_200_000)),
            created_at: Millis(e.created_at.0 + 60_000),
        });
    }
    let contributions = (0..GOAL_CONTRIBUTIONS)
        .map(|i| GoalContribution {
            id: id(&mut rng),
            goal_id: goals[i % GOALS].id,
            user_id: users[i % 2],
            amount: MinorUnits(1_000 + rng.below(50_000) as i64),
            created_at: tick(&mut rng),
        })
        .collect();
    let messages = (0..MESSAGES)
        .map(|i| Message {
            id: id(&mut rng),
            sender_id: users[i % 2],
            text: rng.phrase(60),
            message_type: if i % 25 == 0 {
                MessageType::Approval
            } else {
                MessageType::Text
            },
            read_by_recipient: i + 10 < MESSAGES,
            created_at: tick(&mut rng),
        })
        .collect();
    let months = (1..=MONTHS)
        .map(|m| MonthContribution {
            month: Month::new(2026, m).expect("valid month"),
            total_required: MinorUnits(250_000),
            amounts: BTreeMap::from([
                (users[0], MinorUnits(131_250)),
                (users[1], MinorUnits(118_750)),
            ]),
            paid: BTreeMap::from([(users[0], Some(Millis(T0))), (users[1], None)]),
        })
        .collect();
    Couple {
        partnership: PartnershipInfo {
            id: PartnershipId(uuid::Uuid::from_u64_pair(7, 7)),
            currency: Currency::USD,
            approval_threshold: MinorUnits(10_000),
            status: PartnershipStatus::Active,
        },
        members,
        expenses,
        goals,
        contributions,
        approvals,
        messages,
        months,
    }
}

// ---------------------------------------------------------------------------------------------
// Writing the couple with each string layout.

/// How string values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strings {
    /// Every string a scalar string.
    Scalar,
    /// Free text (names, message texts, approval notes) as Text; ids and enums scalar.
    FreeText,
    /// Every string a Text object.
    AllText,
}

impl Strings {
    const ALL: [Strings; 3] = [Strings::Scalar, Strings::FreeText, Strings::AllText];

    fn label(self) -> &'static str {
        match self {
            Strings::Scalar => "scalar",
            Strings::FreeText => "free-text",
            Strings::AllText => "all-text",
        }
    }
}

/// What a string field holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Id,
    Enum,
    FreeText,
}

struct Writer {
    strings: Strings,
}

impl Writer {
    fn str<T: Transactable>(
        &self,
        tx: &mut T,
        obj: &ObjId,
        key: &str,
        v: &str,
        kind: Kind,
    ) -> Result<(), AutomergeError> {
        let text = match self.strings {
            Strings::Scalar => false,
            Strings::FreeText => kind == Kind::FreeText,
            Strings::AllText => true,
        };
        if text {
            // What `doc.key = "…"` does in @automerge/automerge 3.x: a new Text object, then
            // the whole string spliced in (one insert op per character).
            let t = tx.put_object(obj, key, ObjType::Text)?;
            tx.splice_text(&t, 0, 0, v)
        } else {
            tx.put(obj, key, v)
        }
    }

    fn opt_str<T: Transactable>(
        &self,
        tx: &mut T,
        obj: &ObjId,
        key: &str,
        v: Option<&str>,
        kind: Kind,
    ) -> Result<(), AutomergeError> {
        match v {
            Some(s) => self.str(tx, obj, key, s, kind),
            None => tx.put(obj, key, ScalarValue::Null),
        }
    }

    fn entity<T: Transactable>(
        &self,
        tx: &mut T,
        c: Collection,
        key: &str,
    ) -> Result<ObjId, AutomergeError> {
        let coll = match tx.get(ROOT, c.key())? {
            Some((_, id)) => id,
            None => tx.put_object(ROOT, c.key(), ObjType::Map)?,
        };
        tx.put_object(&coll, key, ObjType::Map)
    }

    fn create<T: Transactable>(&self, tx: &mut T, c: &Couple) -> Result<(), AutomergeError> {
        tx.put(ROOT, keys::SCHEMA, SCHEMA_VERSION)?;
        let p = tx.put_object(ROOT, keys::PARTNERSHIP, ObjType::Map)?;
        let info = &c.partnership;
        self.str(tx, &p, "id", &info.id.to_string(), Kind::Id)?;
        self.str(tx, &p, "currency", info.currency.code(), Kind::Enum)?;
        tx.put(&p, "approval_threshold", info.approval_threshold.0)?;
        self.str(tx, &p, "status", info.status.as_str(), Kind::Enum)?;
        for coll in Collection::ALL {
            tx.put_object(ROOT, coll.key(), ObjType::Map)?;
        }
        for m in &c.members {
            let obj = self.entity(tx, Collection::Members, &m.user_id.to_string())?;
            self.str(tx, &obj, "name", &m.name, Kind::FreeText)?;
            match m.income {
                Some(i) => tx.put(&obj, "income", i.0)?,
                None => tx.put(&obj, "income", ScalarValue::Null)?,
            }
            tx.put(&obj, "slot", i64::from(m.slot))?;
        }
        Ok(())
    }

    fn expense<T: Transactable>(&self, tx: &mut T, e: &Expense) -> Result<(), AutomergeError> {
        let obj = self.entity(tx, Collection::Expenses, &e.id.to_string())?;
        self.str(tx, &obj, "name", &e.name, Kind::FreeText)?;
        tx.put(&obj, "amount", e.amount.0)?;
        self.str(tx, &obj, "category", e.category.as_str(), Kind::Enum)?;
        self.str(tx, &obj, "frequency", e.frequency.as_str(), Kind::Enum)?;
        self.str(tx, &obj, "added_by", &e.added_by.to_string(), Kind::Id)?;
        self.str(tx, &obj, "status", e.status.as_str(), Kind::Enum)?;
        tx.put(&obj, "created_at", e.created_at.0)?;
        tx.put(&obj, "updated_at", e.updated_at.0)
    }

    fn goal<T: Transactable>(&self, tx: &mut T, g: &Goal) -> Result<(), AutomergeError> {
        let obj = self.entity(tx, Collection::Goals, &g.id.to_string())?;
        self.str(tx, &obj, "name", &g.name, Kind::FreeText)?;
        tx.put(&obj, "target_amount", g.target_amount.0)?;
        tx.put(&obj, "saved_amount", ScalarValue::counter(g.saved_amount.0))?;
        self.str(tx, &obj, "goal_type", g.goal_type.as_str(), Kind::Enum)?;
        self.str(tx, &obj, "priority", g.priority.as_str(), Kind::Enum)?;
        self.str(tx, &obj, "added_by", &g.added_by.to_string(), Kind::Id)?;
        self.str(tx, &obj, "status", g.status.as_str(), Kind::Enum)?;
        tx.put(&obj, "created_at", g.created_at.0)?;
        tx.put(&obj, "updated_at", g.updated_at.0)
    }

    /// A new request, as its author files it (pending, unanswered).
    fn request<T: Transactable>(&self, tx: &mut T, a: &Approval) -> Result<(), AutomergeError> {
        let obj = self.entity(tx, Collection::Approvals, &a.id.to_string())?;
        self.str(
            tx,
            &obj,
            "requested_by",
            &a.requested_by.to_string(),
            Kind::Id,
        )?;
        self.str(
            tx,
            &obj,
            "request_type",
            a.request_type.as_str(),
            Kind::Enum,
        )?;
        self.str(tx, &obj, "target_id", &a.target_id.to_string(), Kind::Id)?;
        let data = tx.put_object(&obj, "request_data", ObjType::Map)?;
        match &a.request_data {
            RequestData::Expense(f) => {
                if let Some(v) = &f.name {
                    self.str(tx, &data, "name", v, Kind::FreeText)?;
                }
                if let Some(v) = f.amount {
                    tx.put(&data, "amount", v.0)?;
                }
                if let Some(v) = f.category {
                    self.str(tx, &data, "category", v.as_str(), Kind::Enum)?;
                }
                if let Some(v) = f.frequency {
                    self.str(tx, &data, "frequency", v.as_str(), Kind::Enum)?;
                }
            }
            RequestData::Goal(f) => {
                if let Some(v) = &f.name {
                    self.str(tx, &data, "name", v, Kind::FreeText)?;
                }
                if let Some(v) = f.target_amount {
                    tx.put(&data, "target_amount", v.0)?;
                }
                if let Some(v) = f.goal_type {
                    self.str(tx, &data, "goal_type", v.as_str(), Kind::Enum)?;
                }
                if let Some(v) = f.priority {
                    self.str(tx, &data, "priority", v.as_str(), Kind::Enum)?;
                }
            }
        }
        self.opt_str(tx, &obj, "message", a.message.as_deref(), Kind::FreeText)?;
        self.str(
            tx,
            &obj,
            "status",
            ApprovalStatus::Pending.as_str(),
            Kind::Enum,
        )?;
        tx.put(&obj, "responded_by", ScalarValue::Null)?;
        tx.put(&obj, "responded_at", ScalarValue::Null)?;
        tx.put(&obj, "created_at", a.created_at.0)
    }

    /// The partner's answer to a request (a later change by the other actor).
    fn answer<T: Transactable>(&self, tx: &mut T, a: &Approval) -> Result<(), AutomergeError> {
        let (_, obj) = tx.get(ROOT, keys::APPROVALS)?.expect("approvals map");
        let (_, obj) = tx.get(&obj, a.id.to_string())?.expect("the request");
        self.str(tx, &obj, "status", a.status.as_str(), Kind::Enum)?;
        let by = a.responded_by.map(|u| u.to_string());
        self.opt_str(tx, &obj, "responded_by", by.as_deref(), Kind::Id)?;
        match a.responded_at {
            Some(t) => tx.put(&obj, "responded_at", t.0),
            None => tx.put(&obj, "responded_at", ScalarValue::Null),
        }
    }

    fn contribution<T: Transactable>(
        &self,
        tx: &mut T,
        c: &GoalContribution,
    ) -> Result<(), AutomergeError> {
        let obj = self.entity(tx, Collection::GoalContributions, &c.id.to_string())?;
        self.str(tx, &obj, "goal_id", &c.goal_id.to_string(), Kind::Id)?;
        self.str(tx, &obj, "user_id", &c.user_id.to_string(), Kind::Id)?;
        tx.put(&obj, "amount", c.amount.0)?;
        tx.put(&obj, "created_at", c.created_at.0)?;
        // The goal's counter grows by the logged amount in the same change.
        let (_, goals) = tx.get(ROOT, keys::GOALS)?.expect("goals map");
        let (_, goal) = tx.get(&goals, c.goal_id.to_string())?.expect("the goal");
        tx.increment(&goal, "saved_amount", c.amount.0)
    }

    fn message<T: Transactable>(&self, tx: &mut T, m: &Message) -> Result<(), AutomergeError> {
        let obj = self.entity(tx, Collection::Messages, &m.id.to_string())?;
        self.str(tx, &obj, "sender_id", &m.sender_id.to_string(), Kind::Id)?;
        self.str(tx, &obj, "text", &m.text, Kind::FreeText)?;
        self.str(
            tx,
            &obj,
            "message_type",
            m.message_type.as_str(),
            Kind::Enum,
        )?;
        tx.put(&obj, "read_by_recipient", m.read_by_recipient)?;
        tx.put(&obj, "created_at", m.created_at.0)
    }

    fn month<T: Transactable>(
        &self,
        tx: &mut T,
        m: &MonthContribution,
    ) -> Result<(), AutomergeError> {
        // Month keys and user-id keys are map keys, never values: no choice to make here.
        let obj = self.entity(tx, Collection::Contributions, &m.month.to_string())?;
        tx.put(&obj, "total_required", m.total_required.0)?;
        let amounts = tx.put_object(&obj, "amounts", ObjType::Map)?;
        for (user, amount) in &m.amounts {
            tx.put(&amounts, user.to_string(), amount.0)?;
        }
        let paid = tx.put_object(&obj, "paid", ObjType::Map)?;
        for (user, at) in &m.paid {
            match at {
                Some(t) => tx.put(&paid, user.to_string(), t.0)?,
                None => tx.put(&paid, user.to_string(), ScalarValue::Null)?,
            }
        }
        Ok(())
    }
}

/// One change per user action, by the acting partner (or the server), as in real use.
fn commit(
    doc: &mut Automerge,
    actor: &ActorId,
    at: Millis,
    f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<(), AutomergeError>,
) {
    doc.set_actor(actor.clone());
    doc.transact_with::<_, _, AutomergeError, _>(
        |_| CommitOptions::default().with_time(at.0 / 1000),
        f,
    )
    .map_err(|f| f.error)
    .expect("write");
}

fn build(c: &Couple, strings: Strings) -> Automerge {
    let w = Writer { strings };
    let server = server_actor([0; 8]);
    let actor_of = |u: UserId| ActorId::from(u.0.as_bytes().to_vec());
    let mut doc = Automerge::new();
    commit(&mut doc, &server, Millis(T0), |tx| w.create(tx, c));
    for e in &c.expenses {
        commit(&mut doc, &actor_of(e.added_by), e.created_at, |tx| {
            w.expense(tx, e)
        });
    }
    let by_target: BTreeMap<EntityId, &Approval> =
        c.approvals.iter().map(|a| (a.target_id, a)).collect();
    for g in &c.goals {
        let req = by_target[&g.id];
        // A new goal and its add request in one change, then the partner's answer.
        commit(&mut doc, &actor_of(g.added_by), g.created_at, |tx| {
            w.goal(tx, g)?;
            w.request(tx, req)
        });
        let by = req.responded_by.expect("answered");
        commit(
            &mut doc,
            &actor_of(by),
            req.responded_at.expect("answered"),
            |tx| w.answer(tx, req),
        );
    }
    for a in c
        .approvals
        .iter()
        .filter(|a| a.request_type == RequestType::ExpenseEdit)
    {
        commit(&mut doc, &actor_of(a.requested_by), a.created_at, |tx| {
            w.request(tx, a)
        });
        if let (Some(by), Some(at)) = (a.responded_by, a.responded_at) {
            commit(&mut doc, &actor_of(by), at, |tx| w.answer(tx, a));
        }
    }
    for gc in &c.contributions {
        commit(&mut doc, &actor_of(gc.user_id), gc.created_at, |tx| {
            w.contribution(tx, gc)
        });
    }
    for m in &c.messages {
        commit(&mut doc, &actor_of(m.sender_id), m.created_at, |tx| {
            w.message(tx, m)
        });
    }
    for m in &c.months {
        commit(&mut doc, &server, Millis(T0), |tx| w.month(tx, m));
    }
    doc
}

// ---------------------------------------------------------------------------------------------
// Measuring.

struct Figures {
    ops: u64,
    changes: u64,
    saved: usize,
    changes_raw: usize,
    changes_sent: usize,
    heap_built: usize,
    heap_loaded: usize,
    peak_load: usize,
    load: Duration,
    read: Duration,
    /// What a server pays on every open for the string-type check (`misshapen_document`).
    check: Duration,
    /// Entities (and the partnership map) whose strings are not in their declared types.
    misshapen: usize,
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

const RUNS: usize = 31;

fn measure(c: &Couple, strings: Strings) -> (Figures, DocumentState) {
    let before = live();
    let doc = build(c, strings);
    let heap_built = live() - before;

    let stats = doc.stats();
    let saved = doc.save();
    let mut changes = doc.get_changes(&[]);
    let changes_raw = changes.iter().map(|ch| ch.raw_bytes().len()).sum();
    let changes_sent = changes.iter_mut().map(|ch| ch.bytes().len()).sum();
    drop(changes);
    let state = read_document(&doc).expect("readable");
    drop(doc);

    let before = live();
    reset_peak();
    let loaded = Automerge::load(&saved).expect("loads");
    let heap_loaded = live() - before;
    let peak_load = PEAK.load(Ordering::Relaxed) - before;

    let load = median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                black_box(Automerge::load(black_box(&saved)).expect("loads"));
                t.elapsed()
            })
            .collect(),
    );
    let read = median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                black_box(read_document(black_box(&loaded)).expect("readable"));
                t.elapsed()
            })
            .collect(),
    );
    let check = median(
        (0..RUNS)
            .map(|_| {
                let t = Instant::now();
                black_box(misshapen_document(black_box(&loaded)));
                t.elapsed()
            })
            .collect(),
    );
    let misshapen = misshapen_document(&loaded).len();
    assert_eq!(
        read_document(&loaded).expect("readable"),
        state,
        "load changed the document"
    );
    (
        Figures {
            ops: stats.num_ops,
            changes: stats.num_changes,
            saved: saved.len(),
            changes_raw,
            changes_sent,
            heap_built,
            heap_loaded,
            peak_load,
            load,
            read,
            check,
            misshapen,
        },
        state,
    )
}

fn kib(n: usize) -> String {
    format!("{:.1} KiB", n as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let c = couple();
    let chars =
        |it: &mut dyn Iterator<Item = &String>| it.map(|s| s.chars().count()).sum::<usize>();
    let free_text_chars = chars(&mut c.members.iter().map(|m| &m.name))
        + chars(&mut c.expenses.iter().map(|e| &e.name))
        + chars(&mut c.goals.iter().map(|g| &g.name))
        + chars(&mut c.messages.iter().map(|m| &m.text))
        + chars(&mut c.approvals.iter().filter_map(|a| a.message.as_ref()))
        + chars(
            &mut c.approvals.iter().filter_map(|a| match &a.request_data {
                RequestData::Expense(f) => f.name.as_ref(),
                RequestData::Goal(f) => f.name.as_ref(),
            }),
        );
    println!(
        "couple: {} expenses, {} goals, {} goal contributions, {} approvals, {} messages, {} months; \
         {} characters of free text",
        c.expenses.len(),
        c.goals.len(),
        c.contributions.len(),
        c.approvals.len(),
        c.messages.len(),
        c.months.len(),
        free_text_chars,
    );
    println!(
        "{:<10} {:>7} {:>7} {:>11} {:>13} {:>13} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9}",
        "strings",
        "ops",
        "changes",
        "save()",
        "changes raw",
        "changes sent",
        "heap built",
        "heap loaded",
        "peak load",
        "load",
        "read all",
        "check",
        "misshapen",
    );
    let mut states = Vec::new();
    for strings in Strings::ALL {
        let (f, state) = measure(&c, strings);
        assert!(state.malformed.is_empty(), "{:?}", state.malformed);
        println!(
            "{:<10} {:>7} {:>7} {:>11} {:>13} {:>13} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9}",
            strings.label(),
            f.ops,
            f.changes,
            kib(f.saved),
            kib(f.changes_raw),
            kib(f.changes_sent),
            kib(f.heap_built),
            kib(f.heap_loaded),
            kib(f.peak_load),
            ms(f.load),
            ms(f.read),
            ms(f.check),
            f.misshapen,
        );
        states.push(state);
    }
    assert!(
        states.windows(2).all(|w| w[0] == w[1]),
        "the layouts must hold the same values"
    );
    println!("all three documents read back equal (read_document)");
}
