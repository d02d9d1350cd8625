//! Fixtures shared by sync-core's behaviour tests: a couple's document, client replicas with
//! their own actors, and a "server" that merges a client's changes and compensates them.

use std::collections::BTreeMap;

use automerge::{Automerge, ReadDoc};
use splitsave_sync_core::document::{
    new_partnership_document, read_document, server_actor, DocumentState, NewMember, NewPartnership,
};
use splitsave_sync_core::enforce::{new_changes, settle, Before, Enforcement};
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, Outcome};
use splitsave_sync_core::policy::add_request_id;
use splitsave_sync_core::read;
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::time::{Millis, MAX_CLOCK_SKEW};
use splitsave_sync_core::touched::touched_by;

/// A fixed clock for deterministic documents.
pub const T0: Millis = Millis(1_764_000_000_000);

/// A couple and their server-held document.
pub struct Couple {
    pub pid: PartnershipId,
    pub a: UserId,
    pub b: UserId,
    pub server: Automerge,
}

impl Couple {
    /// USD, threshold 100.00.
    pub fn new() -> Self {
        Self::with_currency(Currency::USD, MinorUnits(10_000))
    }

    pub fn with_currency(currency: Currency, threshold: MinorUnits) -> Self {
        let pid = PartnershipId::new_v7();
        let a = UserId::new_v7();
        let b = UserId::new_v7();
        let doc = new_partnership_document(&NewPartnership {
            id: pid,
            currency,
            approval_threshold: threshold,
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
                    income: Some(MinorUnits(600_000)),
                    slot: 2,
                },
            ],
            created_at: T0,
        })
        .expect("create document");
        let server = doc.with_actor(server_actor([1; 8]));
        Self { pid, a, b, server }
    }

    /// A replica of the server's document for `user`, with a fresh device actor.
    pub fn client(&self, _user: UserId) -> Automerge {
        self.server.fork()
    }

    pub fn ctx(&self, user: UserId) -> Ctx {
        Ctx { user, now: T0 }
    }

    /// What the server does with a client's changes: apply them to a candidate, enforce,
    /// compensate as the server, and adopt the candidate. Returns the verdict.
    pub fn merge_from(&mut self, client: &Automerge, author: UserId) -> Enforcement {
        merge_into(&mut self.server, client, author)
    }

    /// Server merge followed by the client pulling the server's state.
    pub fn sync(&mut self, client: &mut Automerge, author: UserId) -> Enforcement {
        let e = self.merge_from(client, author);
        client.merge(&mut self.server.clone()).expect("pull");
        e
    }

    pub fn state(&self) -> DocumentState {
        read_document(&self.server).expect("read document")
    }

    /// Creates month `m` as the server does, from fixed amounts.
    pub fn server_month(&mut self, m: Month, a_amount: i64, b_amount: i64) {
        let mut amounts = BTreeMap::new();
        amounts.insert(self.a, MinorUnits(a_amount));
        amounts.insert(self.b, MinorUnits(b_amount));
        let mut paid = BTreeMap::new();
        paid.insert(self.a, None);
        paid.insert(self.b, None);
        let month = MonthContribution {
            month: m,
            total_required: MinorUnits(a_amount + b_amount),
            amounts,
            paid,
        };
        self.server
            .transact(|tx| ops::server_set_month(tx, &month))
            .expect("server month");
    }
}

/// Merges `client`'s new changes into `server` with enforcement and compensation.
pub fn merge_into(server: &mut Automerge, client: &Automerge, author: UserId) -> Enforcement {
    let mut candidate = server.clone();
    candidate.merge(&mut client.clone()).expect("merge");
    let changes = new_changes(server, &candidate);
    let before = Before::capture(server, touched_by(server, &candidate, &changes));
    let settled = settle(&mut candidate, &before, &changes, author, T0).expect("settle");
    *server = candidate;
    settled.enforcement
}

/// Runs a closure in a transaction on a client replica (a raw write, bypassing operations).
pub fn raw<F>(doc: &mut Automerge, f: F)
where
    F: FnOnce(
        &mut automerge::transaction::Transaction<'_>,
    ) -> Result<(), automerge::AutomergeError>,
{
    doc.transact(|tx| f(tx)).expect("raw write");
}

/// Runs an operation on a client replica.
pub fn op<F>(doc: &mut Automerge, f: F) -> Outcome
where
    F: FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<Outcome, ops::OpError>,
{
    doc.transact(|tx| f(tx)).expect("operation").result
}

pub fn expense(name: &str, cents: i64) -> NewExpense {
    NewExpense {
        name: name.into(),
        amount: MinorUnits(cents),
        category: Category::Groceries,
        frequency: Frequency::Monthly,
    }
}

pub fn goal(name: &str, cents: i64) -> NewGoal {
    NewGoal {
        name: name.into(),
        target_amount: MinorUnits(cents),
        goal_type: GoalType::Vacation,
        priority: Priority::Medium,
    }
}

/// The object of `collection.<id>` in `doc`.
pub fn obj_of<R: ReadDoc>(doc: &R, c: Collection, id: impl ToString) -> automerge::ObjId {
    read::entity_obj(doc, c, &id.to_string())
        .expect("shape")
        .expect("present")
}

/// Every invariant of the policy that must hold after enforcement. Empty when all hold.
pub fn invariant_violations(doc: &Automerge, members: &[UserId]) -> Vec<String> {
    let mut v = Vec::new();
    let s = match read_document(doc) {
        Ok(s) => s,
        Err(e) => return vec![format!("unreadable: {e}")],
    };
    if !s.malformed.is_empty() {
        v.push(format!("malformed entities: {:?}", s.malformed));
    }
    let is_member = |u: &UserId| members.contains(u);
    // A pending item has its pending add request at the derived id, describing it exactly.
    let pending_add = |target: EntityId, added_by: UserId, rt: RequestType, data: RequestData| {
        s.approvals.iter().any(|a| {
            a.id == add_request_id(target)
                && a.target_id == target
                && a.request_type == rt
                && a.status == ApprovalStatus::Pending
                && a.requested_by == added_by
                && a.request_data == data
        })
    };
    let latest = Millis(T0.0 + MAX_CLOCK_SKEW.0 + 3_600_000);
    let mut times: Vec<(String, Millis)> = Vec::new();
    for e in &s.expenses {
        if !is_member(&e.added_by) {
            v.push(format!("expense {} added by a non-member", e.id));
        }
        if e.amount.0 <= 0 || e.name.trim().is_empty() {
            v.push(format!("expense {} invalid", e.id));
        }
        if e.status == ItemStatus::PendingApproval
            && !pending_add(
                e.id,
                e.added_by,
                RequestType::ExpenseAdd,
                ops::expense_add_data(e),
            )
        {
            v.push(format!(
                "pending expense {} without a pending request describing it",
                e.id
            ));
        }
        times.push((format!("expense {}", e.id), e.created_at));
        times.push((format!("expense {}", e.id), e.updated_at));
    }
    for g in &s.goals {
        if !is_member(&g.added_by) {
            v.push(format!("goal {} added by a non-member", g.id));
        }
        if g.status == ItemStatus::PendingApproval
            && !pending_add(
                g.id,
                g.added_by,
                RequestType::GoalAdd,
                ops::goal_add_data(g),
            )
        {
            v.push(format!(
                "pending goal {} without a pending request describing it",
                g.id
            ));
        }
        times.push((format!("goal {}", g.id), g.created_at));
        times.push((format!("goal {}", g.id), g.updated_at));
        let logged: i64 = s
            .goal_contributions
            .iter()
            .filter(|c| c.goal_id == g.id)
            .map(|c| c.amount.0)
            .sum();
        if logged != g.saved_amount.0 {
            v.push(format!(
                "goal {} saved {} but contributions sum to {logged}",
                g.id, g.saved_amount.0
            ));
        }
        let obj = obj_of(doc, Collection::Goals, g.id);
        if !read::is_counter(doc, &obj, "saved_amount") {
            v.push(format!("goal {} saved_amount is not a counter", g.id));
        }
    }
    for c in &s.goal_contributions {
        if !is_member(&c.user_id) || c.amount.0 <= 0 {
            v.push(format!("contribution {} invalid", c.id));
        }
        times.push((format!("contribution {}", c.id), c.created_at));
    }
    for a in &s.approvals {
        if !is_member(&a.requested_by) {
            v.push(format!("request {} by a non-member", a.id));
        }
        let is_add = matches!(
            a.request_type,
            RequestType::ExpenseAdd | RequestType::GoalAdd
        );
        if is_add && a.id != add_request_id(a.target_id) {
            v.push(format!(
                "add request {} not at its target's derived id",
                a.id
            ));
        }
        times.push((format!("request {}", a.id), a.created_at));
        times.extend(a.responded_at.map(|t| (format!("request {}", a.id), t)));
        match a.status {
            ApprovalStatus::Pending => {
                if a.responded_by.is_some() {
                    v.push(format!("pending request {} has a responder", a.id));
                }
            }
            _ => match a.responded_by {
                Some(r) if r != a.requested_by && is_member(&r) => {}
                _ => v.push(format!(
                    "request {} answered by its requester or nobody",
                    a.id
                )),
            },
        }
        if matches!(
            a.request_type,
            RequestType::ExpenseAdd | RequestType::GoalAdd
        ) && a.status == ApprovalStatus::Pending
        {
            let target_status = s
                .expenses
                .iter()
                .find(|e| e.id == a.target_id)
                .map(|e| e.status)
                .or_else(|| {
                    s.goals
                        .iter()
                        .find(|g| g.id == a.target_id)
                        .map(|g| g.status)
                });
            if target_status != Some(ItemStatus::PendingApproval) {
                v.push(format!(
                    "pending add request {} for an item not waiting for approval ({target_status:?})",
                    a.id
                ));
            }
        }
    }
    for m in &s.messages {
        if !is_member(&m.sender_id) || m.text.trim().is_empty() {
            v.push(format!("message {} invalid", m.id));
        }
        times.push((format!("message {}", m.id), m.created_at));
    }
    for month in &s.contributions {
        for u in month.paid.keys() {
            if !is_member(u) {
                v.push(format!("month {} paid by a non-member", month.month));
            }
        }
        times.extend(
            month
                .paid
                .values()
                .flatten()
                .map(|t| (format!("month {}", month.month), *t)),
        );
    }
    for (what, t) in times {
        if t > latest {
            v.push(format!("{what} holds a time from the future: {}", t.0));
        }
    }
    v
}
