//! Convergence under random interleavings: two partners work offline on their own replicas of
//! one document, through the operations and through raw writes that bypass them, and sync with
//! the server (which merges with enforcement) in any order. Every replica ends with the server's
//! heads and state, every invariant of the policy holds, and the result is stable.

use crate::common::*;
use automerge::transaction::{Transactable, Transaction};
use automerge::{ActorId, Automerge, AutomergeError, ChangeHash};
use proptest::prelude::*;
use splitsave_sync_core::document::{
    new_partnership_document, read_document, server_actor, DocumentState, NewMember, NewPartnership,
};
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::materialize::all_rows;
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, OpError};
use splitsave_sync_core::policy::add_request_id;
use splitsave_sync_core::read;
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::write;

/// Approval threshold of the generated partnerships: 100.00 USD.
const THRESHOLD: i64 = 10_000;

/// One of the two partners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    A,
    B,
}

/// What a partner does on their replica. `pick` selects a target by index (modulo the number
/// of candidates present locally); with no candidate the action is skipped.
#[derive(Clone, Debug)]
enum Action {
    AddExpense {
        cents: i64,
    },
    EditExpense {
        pick: usize,
        cents: i64,
        rename: bool,
    },
    ArchiveExpense {
        pick: usize,
    },
    AddGoal {
        cents: i64,
    },
    EditGoal {
        pick: usize,
        cents: i64,
    },
    Contribute {
        pick: usize,
        cents: i64,
    },
    Approve {
        pick: usize,
    },
    Decline {
        pick: usize,
    },
    SendMessage {
        text: usize,
    },
    MarkRead {
        pick: usize,
    },
    MarkPaid,
    // Raw writes that the policy forbids.
    RawActiveOverThreshold {
        cents: i64,
    },
    RawAmountEdit {
        pick: usize,
        cents: i64,
    },
    RawSelfApproval {
        pick: usize,
    },
    RawForgedMessage,
    RawSavedIncrement {
        pick: usize,
        cents: i64,
    },
    RawMarkPartnerPaid,
    RawDelete {
        collection: usize,
        pick: usize,
    },
    /// Replaces a whole collection map with a new empty one (while the partner may be editing
    /// inside the old one offline).
    RawReplaceCollection {
        collection: usize,
    },
    /// Replaces the month's `paid` map with a new empty one.
    RawReplacePaid,
    /// A pending expense with its own add request whose data shows other values.
    RawLyingRequest {
        cents: i64,
        derived_id: bool,
    },
    /// A new expense dated a century ahead.
    RawFutureExpense,
}

#[derive(Clone, Debug)]
enum Step {
    Act(Who, Action),
    Sync(Who),
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![Just(Who::A), Just(Who::B)]
}

fn small() -> impl Strategy<Value = i64> {
    1..=THRESHOLD
}

fn over() -> impl Strategy<Value = i64> {
    THRESHOLD + 1..=20 * THRESHOLD
}

fn any_amount() -> impl Strategy<Value = i64> {
    prop_oneof![small(), over()]
}

fn pick() -> impl Strategy<Value = usize> {
    0..6usize
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => small().prop_map(|cents| Action::AddExpense { cents }),
        2 => over().prop_map(|cents| Action::AddExpense { cents }),
        2 => (pick(), any_amount(), any::<bool>())
            .prop_map(|(pick, cents, rename)| Action::EditExpense { pick, cents, rename }),
        1 => pick().prop_map(|pick| Action::ArchiveExpense { pick }),
        2 => small().prop_map(|cents| Action::AddGoal { cents: cents * 10 }),
        1 => (pick(), any_amount()).prop_map(|(pick, cents)| Action::EditGoal { pick, cents }),
        3 => (pick(), small()).prop_map(|(pick, cents)| Action::Contribute { pick, cents }),
        3 => pick().prop_map(|pick| Action::Approve { pick }),
        1 => pick().prop_map(|pick| Action::Decline { pick }),
        1 => (0..3usize).prop_map(|text| Action::SendMessage { text }),
        1 => pick().prop_map(|pick| Action::MarkRead { pick }),
        1 => Just(Action::MarkPaid),
        1 => over().prop_map(|cents| Action::RawActiveOverThreshold { cents }),
        1 => (pick(), any_amount()).prop_map(|(pick, cents)| Action::RawAmountEdit { pick, cents }),
        1 => pick().prop_map(|pick| Action::RawSelfApproval { pick }),
        1 => Just(Action::RawForgedMessage),
        1 => (pick(), small()).prop_map(|(pick, cents)| Action::RawSavedIncrement { pick, cents }),
        1 => Just(Action::RawMarkPartnerPaid),
        1 => (0..5usize, pick()).prop_map(|(collection, pick)| Action::RawDelete { collection, pick }),
        1 => (0..Collection::ALL.len()).prop_map(|collection| Action::RawReplaceCollection { collection }),
        1 => Just(Action::RawReplacePaid),
        1 => (over(), any::<bool>())
            .prop_map(|(cents, derived_id)| Action::RawLyingRequest { cents, derived_id }),
        1 => Just(Action::RawFutureExpense),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (who(), action()).prop_map(|(w, a)| Step::Act(w, a)),
        1 => who().prop_map(Step::Sync),
    ]
}

fn offline_steps() -> impl Strategy<Value = Vec<(Who, Action)>> {
    prop::collection::vec((who(), action()), 0..30)
}

/// The server's document and one device replica per partner, with fixed ids and actors so a
/// failing case replays the same way while it shrinks.
struct World {
    a: UserId,
    b: UserId,
    month: Month,
    server: Automerge,
    replica_a: Automerge,
    replica_b: Automerge,
    /// Expenses and goals a partner added through the operations: a valid edit, never lost,
    /// whatever the other partner wrote meanwhile.
    added: Vec<(Collection, String)>,
}

fn user(n: u128) -> UserId {
    UserId(EntityId::derived(&["convergence-user", &n.to_string()]).0)
}

impl World {
    fn new() -> Self {
        let (a, b) = (user(1), user(2));
        let doc = new_partnership_document(&NewPartnership {
            id: PartnershipId(EntityId::derived(&["convergence-partnership"]).0),
            currency: Currency::USD,
            approval_threshold: MinorUnits(THRESHOLD),
            members: [
                NewMember {
                    user_id: a,
                    name: "Alex".into(),
                    income: Some(MinorUnits(300_000)),
                    slot: 1,
                },
                NewMember {
                    user_id: b,
                    name: "Sam".into(),
                    income: None,
                    slot: 2,
                },
            ],
            created_at: T0,
        })
        .expect("create document");
        let mut couple = Couple {
            pid: PartnershipId(EntityId::derived(&["convergence-partnership"]).0),
            a,
            b,
            server: doc.with_actor(server_actor([1; 8])),
        };
        let month = Month::parse("2026-11").expect("month");
        couple.server_month(month, 3_333, 6_667);
        // An active expense and an approved goal to start from, so edits, contributions and
        // raw writes have targets from the first step.
        let (ctx_a, ctx_b) = (Ctx { user: a, now: T0 }, Ctx { user: b, now: T0 });
        let holiday = EntityId::derived(&["convergence", "holiday"]);
        couple
            .server
            .transact(|tx| {
                let rent = NewExpense {
                    name: "Rent".into(),
                    amount: MinorUnits(5_000),
                    category: Category::Housing,
                    frequency: Frequency::Monthly,
                };
                let rent_id = EntityId::derived(&["convergence", "rent"]);
                ops::add_expense_with_id(tx, &ctx_a, rent_id, &rent)?;
                let goal = NewGoal {
                    name: "Holiday".into(),
                    target_amount: MinorUnits(200_000),
                    goal_type: GoalType::Vacation,
                    priority: Priority::High,
                };
                ops::add_goal_with_id(tx, &ctx_a, holiday, &goal)?;
                ops::approve(tx, &ctx_b, add_request_id(holiday))
            })
            .expect("starting items");
        let server = couple.server;
        let replica_a = server
            .clone()
            .with_actor(ActorId::from(b"device-of-alex-1".to_vec()));
        let replica_b = server
            .clone()
            .with_actor(ActorId::from(b"device-of-sam-01".to_vec()));
        Self {
            a,
            b,
            month,
            server,
            replica_a,
            replica_b,
            added: Vec::new(),
        }
    }

    fn user(&self, w: Who) -> UserId {
        match w {
            Who::A => self.a,
            Who::B => self.b,
        }
    }

    fn replica(&mut self, w: Who) -> &mut Automerge {
        match w {
            Who::A => &mut self.replica_a,
            Who::B => &mut self.replica_b,
        }
    }

    fn act(&mut self, w: Who, action: &Action, n: usize) {
        let me = self.user(w);
        let partner = self.user(other(w));
        let month = self.month;
        let had: Vec<(Collection, String)> = self.added.clone();
        perform(self.replica(w), me, partner, month, action, n);
        // A partner who deletes their own addition before the server ever saw it withdrew it:
        // nobody else's write lost it.
        for (c, key) in had {
            let gone = !read::collection_keys(self.replica(w), c).contains(&key);
            if gone && !read::collection_keys(&self.server, c).contains(&key) {
                self.added.retain(|(ac, ak)| !(*ac == c && *ak == key));
            }
        }
        let (c, kind) = match action {
            Action::AddExpense { .. } => (Collection::Expenses, "expense"),
            Action::AddGoal { .. } => (Collection::Goals, "goal"),
            _ => return,
        };
        let id = EntityId::derived(&["convergence", kind, &me.to_string(), &n.to_string()]);
        if read::collection_keys(self.replica(w), c).contains(&id.to_string()) {
            self.added.push((c, id.to_string()));
        }
    }

    /// Server merge with enforcement, then the partner pulls. Returns the number of fixes.
    fn sync(&mut self, w: Who) -> usize {
        let author = self.user(w);
        let replica = match w {
            Who::A => &mut self.replica_a,
            Who::B => &mut self.replica_b,
        };
        let e = merge_into(&mut self.server, replica, author);
        replica.merge(&mut self.server.clone()).expect("pull");
        e.fixes.len()
    }

    /// Syncs both partners round after round until a round compensates nothing and every
    /// replica holds the server's heads.
    fn settle(&mut self) {
        for _ in 0..6 {
            let fixes = self.sync(Who::A) + self.sync(Who::B);
            if fixes == 0
                && heads(&self.replica_a) == heads(&self.server)
                && heads(&self.replica_b) == heads(&self.server)
            {
                return;
            }
        }
        panic!("replicas did not settle within six sync rounds");
    }
}

fn other(w: Who) -> Who {
    match w {
        Who::A => Who::B,
        Who::B => Who::A,
    }
}

fn heads(doc: &Automerge) -> Vec<ChangeHash> {
    let mut h = doc.get_heads();
    h.sort();
    h
}

fn nth<T: Clone>(items: &[T], pick: usize) -> Option<T> {
    (!items.is_empty()).then(|| items[pick % items.len()].clone())
}

/// Runs an operation; a refused one (`OpError`) writes nothing and is skipped.
fn try_op<O>(doc: &mut Automerge, f: impl FnOnce(&mut Transaction<'_>) -> Result<O, OpError>) {
    let _ = doc.transact(f);
}

/// Runs a raw write that bypasses the operations.
fn raw_write(
    doc: &mut Automerge,
    f: impl FnOnce(&mut Transaction<'_>) -> Result<(), AutomergeError>,
) {
    doc.transact(f).expect("raw write");
}

fn perform(
    doc: &mut Automerge,
    me: UserId,
    partner: UserId,
    month: Month,
    action: &Action,
    n: usize,
) {
    let now = Millis(T0.0 + 1_000 * n as i64);
    let ctx = Ctx { user: me, now };
    let state = read_document(doc).expect("replica readable");
    let new_id =
        |kind: &str| EntityId::derived(&["convergence", kind, &me.to_string(), &n.to_string()]);
    let expenses: Vec<EntityId> = state.expenses.iter().map(|e| e.id).collect();
    let goals: Vec<EntityId> = state.goals.iter().map(|g| g.id).collect();
    match *action {
        Action::AddExpense { cents } => {
            let input = NewExpense {
                name: format!("Expense {n}"),
                amount: MinorUnits(cents),
                category: Category::Groceries,
                frequency: Frequency::Monthly,
            };
            try_op(doc, |tx| {
                ops::add_expense_with_id(tx, &ctx, new_id("expense"), &input)
            });
        }
        Action::EditExpense {
            pick,
            cents,
            rename,
        } => {
            if let Some(id) = nth(&expenses, pick) {
                let fields = ExpenseFields {
                    name: rename.then(|| format!("Renamed {n}")),
                    amount: Some(MinorUnits(cents)),
                    ..Default::default()
                };
                try_op(doc, |tx| ops::edit_expense(tx, &ctx, id, &fields, None));
            }
        }
        Action::ArchiveExpense { pick } => {
            if let Some(id) = nth(&expenses, pick) {
                try_op(doc, |tx| ops::archive_expense(tx, &ctx, id));
            }
        }
        Action::AddGoal { cents } => {
            let input = NewGoal {
                name: format!("Goal {n}"),
                target_amount: MinorUnits(cents),
                goal_type: GoalType::Vacation,
                priority: Priority::Medium,
            };
            try_op(doc, |tx| {
                ops::add_goal_with_id(tx, &ctx, new_id("goal"), &input)
            });
        }
        Action::EditGoal { pick, cents } => {
            if let Some(id) = nth(&goals, pick) {
                let fields = GoalFields {
                    target_amount: Some(MinorUnits(cents)),
                    ..Default::default()
                };
                try_op(doc, |tx| ops::edit_goal(tx, &ctx, id, &fields, None));
            }
        }
        Action::Contribute { pick, cents } => {
            let active: Vec<EntityId> = state
                .goals
                .iter()
                .filter(|g| g.status == ItemStatus::Active)
                .map(|g| g.id)
                .collect();
            if let Some(id) = nth(&active, pick) {
                try_op(doc, |tx| {
                    ops::contribute_to_goal(tx, &ctx, id, MinorUnits(cents))
                });
            }
        }
        Action::Approve { pick } | Action::Decline { pick } => {
            let pending: Vec<EntityId> = state
                .approvals
                .iter()
                .filter(|a| a.status == ApprovalStatus::Pending && a.requested_by != me)
                .map(|a| a.id)
                .collect();
            if let Some(id) = nth(&pending, pick) {
                if matches!(action, Action::Approve { .. }) {
                    try_op(doc, |tx| ops::approve(tx, &ctx, id));
                } else {
                    try_op(doc, |tx| ops::decline(tx, &ctx, id));
                }
            }
        }
        Action::SendMessage { text } => {
            let text = ["See you tonight", "Rent is due", "Groceries done ✓"][text % 3];
            try_op(doc, |tx| ops::send_message(tx, &ctx, text));
        }
        Action::MarkRead { pick } => {
            let unread: Vec<EntityId> = state
                .messages
                .iter()
                .filter(|m| m.sender_id != me && !m.read_by_recipient)
                .map(|m| m.id)
                .collect();
            if let Some(id) = nth(&unread, pick) {
                try_op(doc, |tx| ops::mark_read(tx, &ctx, id));
            }
        }
        Action::MarkPaid => try_op(doc, |tx| ops::mark_paid(tx, &ctx, month)),
        Action::RawActiveOverThreshold { cents } => {
            let id = new_id("raw-expense");
            raw_write(doc, |tx| {
                let e = write::new_entity(tx, Collection::Expenses, &id.to_string())?;
                tx.put(&e, "name", "Raw big one")?;
                tx.put(&e, "amount", cents)?;
                tx.put(&e, "category", "other")?;
                tx.put(&e, "frequency", "monthly")?;
                tx.put(&e, "added_by", me.to_string())?;
                tx.put(&e, "status", "active")?;
                tx.put(&e, "created_at", now.0)?;
                tx.put(&e, "updated_at", now.0)?;
                Ok(())
            });
        }
        Action::RawAmountEdit { pick, cents } => {
            if let Some(id) = nth(&expenses, pick) {
                raw_write(doc, |tx| {
                    let o = obj_of(tx, Collection::Expenses, id);
                    tx.put(&o, "amount", cents)
                });
            }
        }
        Action::RawSelfApproval { pick } => {
            let own: Vec<EntityId> = state
                .approvals
                .iter()
                .filter(|a| a.status == ApprovalStatus::Pending && a.requested_by == me)
                .map(|a| a.id)
                .collect();
            if let Some(id) = nth(&own, pick) {
                raw_write(doc, |tx| {
                    let o = obj_of(tx, Collection::Approvals, id);
                    tx.put(&o, "status", "approved")?;
                    tx.put(&o, "responded_by", me.to_string())?;
                    tx.put(&o, "responded_at", now.0)
                });
            }
        }
        Action::RawForgedMessage => {
            let m = Message {
                id: new_id("forged-message"),
                sender_id: partner,
                text: "I agree to everything".into(),
                message_type: MessageType::Text,
                read_by_recipient: false,
                created_at: now,
            };
            raw_write(doc, |tx| write::put_message(tx, &m));
        }
        Action::RawSavedIncrement { pick, cents } => {
            if let Some(id) = nth(&goals, pick) {
                raw_write(doc, |tx| {
                    let o = obj_of(tx, Collection::Goals, id);
                    if read::is_counter(tx, &o, "saved_amount") {
                        tx.increment(&o, "saved_amount", cents)?;
                    }
                    Ok(())
                });
            }
        }
        Action::RawMarkPartnerPaid => raw_write(doc, |tx| {
            if let Ok(Some(o)) = read::entity_obj(tx, Collection::Contributions, &month.to_string())
            {
                if let Some(paid) = read::map_at(tx, &o, "paid") {
                    tx.put(&paid, partner.to_string(), now.0)?;
                }
            }
            Ok(())
        }),
        Action::RawDelete { collection, pick } => {
            let (c, keys): (Collection, Vec<String>) = match collection {
                0 => (Collection::Expenses, keys_of(&state, Collection::Expenses)),
                1 => (Collection::Goals, keys_of(&state, Collection::Goals)),
                2 => (
                    Collection::Approvals,
                    keys_of(&state, Collection::Approvals),
                ),
                3 => (Collection::Messages, keys_of(&state, Collection::Messages)),
                _ => (
                    Collection::GoalContributions,
                    keys_of(&state, Collection::GoalContributions),
                ),
            };
            if let Some(key) = nth(&keys, pick) {
                raw_write(doc, |tx| write::delete_entity(tx, c, &key));
            }
        }
        Action::RawReplaceCollection { collection } => {
            let c = Collection::ALL[collection % Collection::ALL.len()];
            raw_write(doc, |tx| {
                tx.put_object(automerge::ROOT, c.key(), automerge::ObjType::Map)
                    .map(|_| ())
            });
        }
        Action::RawReplacePaid => raw_write(doc, |tx| {
            if let Ok(Some(o)) = read::entity_obj(tx, Collection::Contributions, &month.to_string())
            {
                tx.put_object(&o, "paid", automerge::ObjType::Map)?;
            }
            Ok(())
        }),
        Action::RawLyingRequest { cents, derived_id } => {
            let id = new_id("lying-expense");
            let request = if derived_id {
                add_request_id(id)
            } else {
                new_id("lying-request")
            };
            raw_write(doc, |tx| {
                let e = write::new_entity(tx, Collection::Expenses, &id.to_string())?;
                tx.put(&e, "name", "Designer bag")?;
                tx.put(&e, "amount", cents)?;
                tx.put(&e, "category", "other")?;
                tx.put(&e, "frequency", "yearly")?;
                tx.put(&e, "added_by", me.to_string())?;
                tx.put(&e, "status", "pending_approval")?;
                tx.put(&e, "created_at", now.0)?;
                tx.put(&e, "updated_at", now.0)?;
                let r = write::new_entity(tx, Collection::Approvals, &request.to_string())?;
                tx.put(&r, "requested_by", me.to_string())?;
                tx.put(&r, "request_type", "expense_add")?;
                tx.put(&r, "target_id", id.to_string())?;
                let data = tx.put_object(&r, "request_data", automerge::ObjType::Map)?;
                tx.put(&data, "name", "Coffee")?;
                tx.put(&data, "amount", 100)?;
                tx.put(&r, "status", "pending")?;
                tx.put(&r, "created_at", now.0)?;
                Ok(())
            });
        }
        Action::RawFutureExpense => {
            let id = new_id("future-expense");
            let century = 100 * 365 * 24 * 3_600_000;
            raw_write(doc, |tx| {
                let e = write::new_entity(tx, Collection::Expenses, &id.to_string())?;
                tx.put(&e, "name", "From the future")?;
                tx.put(&e, "amount", 500)?;
                tx.put(&e, "category", "other")?;
                tx.put(&e, "frequency", "monthly")?;
                tx.put(&e, "added_by", me.to_string())?;
                tx.put(&e, "status", "active")?;
                tx.put(&e, "created_at", now.0 + century)?;
                tx.put(&e, "updated_at", now.0 + century)?;
                Ok(())
            });
        }
    }
}

fn keys_of(s: &DocumentState, c: Collection) -> Vec<String> {
    match c {
        Collection::Expenses => s.expenses.iter().map(|e| e.id.to_string()).collect(),
        Collection::Goals => s.goals.iter().map(|g| g.id.to_string()).collect(),
        Collection::Approvals => s.approvals.iter().map(|a| a.id.to_string()).collect(),
        Collection::Messages => s.messages.iter().map(|m| m.id.to_string()).collect(),
        _ => s
            .goal_contributions
            .iter()
            .map(|g| g.id.to_string())
            .collect(),
    }
}

/// The final checks on a settled world.
fn assert_converged(w: &mut World) -> Result<(), TestCaseError> {
    let server_state = read_document(&w.server).expect("server readable");
    let server_rows = all_rows(&w.server).expect("server rows");
    for (name, replica) in [("A", &w.replica_a), ("B", &w.replica_b)] {
        prop_assert_eq!(heads(replica), heads(&w.server), "heads of {}", name);
        prop_assert_eq!(&read_document(replica).expect("readable"), &server_state);
        prop_assert_eq!(&all_rows(replica).expect("rows"), &server_rows);
    }
    let violations = invariant_violations(&w.server, &[w.a, w.b]);
    prop_assert!(violations.is_empty(), "invariants: {:?}", violations);
    for (c, key) in &w.added {
        prop_assert!(
            read::collection_keys(&w.server, *c).contains(key),
            "{:?} {} added through the operations was lost",
            c,
            key
        );
    }
    // Stable: merging either replica once more compensates nothing and writes nothing.
    let before = heads(&w.server);
    for who in [Who::A, Who::B] {
        prop_assert_eq!(w.sync(who), 0, "fixes on a final merge of {:?}", who);
    }
    prop_assert_eq!(heads(&w.server), before);
    Ok(())
}

fn run_interleaving(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut w = World::new();
    for (n, s) in steps.iter().enumerate() {
        match s {
            Step::Act(who, action) => w.act(*who, action, n),
            Step::Sync(who) => {
                w.sync(*who);
            }
        }
    }
    w.settle();
    assert_converged(&mut w)
}

/// Two servers merge both partners' offline work in opposite orders, each compensating on its
/// own; after exchanging their documents they agree and every invariant holds.
fn run_two_servers(steps: &[(Who, Action)]) -> Result<(), TestCaseError> {
    let mut w = World::new();
    for (n, (who, action)) in steps.iter().enumerate() {
        w.act(*who, action, n);
    }
    let mut s1 = w.server.clone().with_actor(server_actor([1; 8]));
    let mut s2 = w.server.clone().with_actor(server_actor([2; 8]));
    merge_into(&mut s1, &w.replica_a, w.a);
    merge_into(&mut s1, &w.replica_b, w.b);
    merge_into(&mut s2, &w.replica_b, w.b);
    merge_into(&mut s2, &w.replica_a, w.a);
    for s in [&s1, &s2] {
        let violations = invariant_violations(s, &[w.a, w.b]);
        prop_assert!(violations.is_empty(), "one server: {:?}", violations);
    }
    s1.merge(&mut s2.clone()).expect("merge s2 into s1");
    s2.merge(&mut s1.clone()).expect("merge s1 into s2");
    prop_assert_eq!(heads(&s1), heads(&s2));
    let state = read_document(&s1).expect("readable");
    prop_assert_eq!(&read_document(&s2).expect("readable"), &state);
    let violations = invariant_violations(&s1, &[w.a, w.b]);
    prop_assert!(
        violations.is_empty(),
        "after the servers merged: {:?}",
        violations
    );
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn random_interleavings_converge_and_keep_every_invariant(
        steps in prop::collection::vec(step(), 0..40)
    ) {
        run_interleaving(&steps)?;
    }

    #[test]
    fn two_servers_merging_in_opposite_orders_converge(steps in offline_steps()) {
        run_two_servers(&steps)?;
    }
}

/// The smallest case the two-server property found: a counter corrected by an increment of
/// the difference is corrected twice when two servers compensate the same merge.
#[test]
fn two_servers_correcting_the_same_unlogged_saving_agree_on_the_logged_sum() {
    let steps = [
        (Who::A, Action::AddGoal { cents: 10 }),
        (Who::A, Action::RawSavedIncrement { pick: 0, cents: 1 }),
    ];
    run_two_servers(&steps).unwrap();
}

/// Found by the interleaving property: a partner deletes a pending goal and declines its
/// request in the same offline session. The restored goal must take the decline into account
/// (archived), or it would wait for a request that is no longer pending.
#[test]
fn deleted_pending_goal_whose_request_was_declined_comes_back_archived() {
    let steps = [
        Step::Act(Who::A, Action::AddGoal { cents: 82_130 }),
        Step::Sync(Who::A),
        Step::Sync(Who::B),
        Step::Act(
            Who::B,
            Action::RawDelete {
                collection: 1,
                pick: 0,
            },
        ),
        Step::Act(Who::B, Action::Decline { pick: 0 }),
    ];
    run_interleaving(&steps).unwrap();
}

/// The same for an expense over the threshold whose addition is approved while it is deleted.
#[test]
fn deleted_pending_expense_whose_request_was_approved_comes_back_active() {
    let steps = [
        Step::Act(Who::A, Action::AddExpense { cents: 50_000 }),
        Step::Sync(Who::A),
        Step::Sync(Who::B),
        Step::Act(
            Who::B,
            Action::RawDelete {
                collection: 0,
                pick: 0,
            },
        ),
        Step::Act(Who::B, Action::Approve { pick: 0 }),
    ];
    run_interleaving(&steps).unwrap();
}

/// Found by the two-server property: one partner deletes a goal, the other contributes to it
/// and deletes it too. A server that merges the contributor first must not drop the
/// contribution (the goal is restored anyway), or the two servers disagree on whether it
/// counts and their merged document holds a saved amount no contribution explains.
#[test]
fn a_contribution_to_a_goal_deleted_in_the_same_merge_counts_in_the_restored_goal() {
    let steps = [
        (
            Who::A,
            Action::RawDelete {
                collection: 1,
                pick: 0,
            },
        ),
        (Who::B, Action::Contribute { pick: 0, cents: 1 }),
        (
            Who::B,
            Action::RawDelete {
                collection: 1,
                pick: 0,
            },
        ),
        // Later operations move the op counters, which decide whose restored goal wins.
        (Who::A, Action::AddExpense { cents: 1 }),
        (Who::A, Action::AddExpense { cents: 1 }),
    ];
    run_two_servers(&steps).unwrap();
}

/// Found by the property: the partner replaced the expenses map, then approved an edit of a
/// pending expense (which their replica could no longer apply); the server restored the
/// expense with the approved edit, and its add request must show the edited values.
#[test]
fn an_edit_approved_after_the_collection_was_replaced_is_shown_by_the_add_request() {
    let steps = [
        Step::Act(Who::A, Action::RawActiveOverThreshold { cents: 10_001 }),
        Step::Sync(Who::A),
        Step::Act(Who::B, Action::AddExpense { cents: 1 }),
        Step::Act(Who::A, Action::RawActiveOverThreshold { cents: 10_001 }),
        Step::Act(
            Who::A,
            Action::EditExpense {
                pick: 4,
                cents: 1,
                rename: false,
            },
        ),
        Step::Sync(Who::A),
        Step::Sync(Who::B),
        Step::Act(Who::B, Action::Approve { pick: 4 }),
        Step::Act(Who::B, Action::RawReplaceCollection { collection: 0 }),
        Step::Act(Who::B, Action::Approve { pick: 2 }),
    ];
    run_interleaving(&steps).unwrap();
}
