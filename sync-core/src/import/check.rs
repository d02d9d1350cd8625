//! The rules of [`Import::check`](super::Import::check), listed in the parent module's
//! documentation: each section checked in the export's order, every problem kept, names and
//! texts normalised as the operations normalise them.

use std::collections::HashMap;
use std::fmt::Display;
use std::hash::Hash;

use crate::enums::{ApprovalStatus, ItemStatus, RequestType};
use crate::ids::EntityId;
use crate::money::MinorUnits;
use crate::ops::{expense_add_data, goal_add_data};
use crate::policy::add_request_id;
use crate::schema::*;
use crate::time::Millis;
use crate::validate;

use super::{Import, Problem, Section, Target};

/// Every problem of `import` for `target`, in the order of the sections; `import`'s names,
/// texts and notes normalised on the way.
pub(super) fn check(import: &mut Import, target: &Target) -> Vec<Problem> {
    let mut c = Checker {
        target,
        problems: Vec::new(),
    };
    let expenses = c.unique(Section::Expenses, import.expenses.iter().map(|e| e.id));
    let goals = c.unique(Section::Goals, import.goals.iter().map(|g| g.id));
    let contributed = contributed(&import.goal_contributions);
    let pending_adds: HashMap<EntityId, RequestType> = import
        .approvals
        .iter()
        .filter(|a| a.status == ApprovalStatus::Pending && is_add(a.request_type))
        .filter(|a| a.id == add_request_id(a.target_id))
        .map(|a| (a.target_id, a.request_type))
        .collect();

    for (i, e) in import.expenses.iter_mut().enumerate() {
        c.expense(i, e, pending_adds.get(&e.id));
    }
    for (i, g) in import.goals.iter_mut().enumerate() {
        let saved = contributed.get(&g.id).copied().unwrap_or(0);
        c.goal(i, g, saved, pending_adds.get(&g.id));
    }
    c.unique(
        Section::GoalContributions,
        import.goal_contributions.iter().map(|g| g.id),
    );
    for (i, gc) in import.goal_contributions.iter().enumerate() {
        c.goal_contribution(i, gc, goals.contains_key(&gc.goal_id));
    }
    c.unique(Section::Months, import.months.iter().map(|m| m.month));
    for (i, m) in import.months.iter().enumerate() {
        c.month(i, m);
    }
    c.unique(Section::Approvals, import.approvals.iter().map(|a| a.id));
    let items = Items {
        expenses: &import.expenses,
        goals: &import.goals,
        expense_at: &expenses,
        goal_at: &goals,
    };
    for (i, a) in import.approvals.iter_mut().enumerate() {
        c.approval(i, a, &items);
    }
    c.unique(Section::Messages, import.messages.iter().map(|m| m.id));
    for (i, m) in import.messages.iter_mut().enumerate() {
        c.message(i, m);
    }
    c.problems
}

/// Each goal's contributions summed (wider than the amounts, so no sum overflows).
fn contributed(contributions: &[GoalContribution]) -> HashMap<EntityId, i128> {
    let mut sums = HashMap::new();
    for c in contributions {
        *sums.entry(c.goal_id).or_insert(0) += i128::from(c.amount.0);
    }
    sums
}

fn is_add(t: RequestType) -> bool {
    matches!(t, RequestType::ExpenseAdd | RequestType::GoalAdd)
}

/// The expenses and goals a request may target: the items, and the index of each id.
struct Items<'a> {
    expenses: &'a [Expense],
    goals: &'a [Goal],
    expense_at: &'a HashMap<EntityId, usize>,
    goal_at: &'a HashMap<EntityId, usize>,
}

struct Checker<'a> {
    target: &'a Target,
    problems: Vec<Problem>,
}

impl Checker<'_> {
    fn push(&mut self, s: Section, i: usize, field: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: s.path(i, field),
            message: message.into(),
        });
    }

    /// The index of each key's first item; a later item with the same key is a problem.
    fn unique<K: Copy + Eq + Hash + Display>(
        &mut self,
        s: Section,
        keys: impl Iterator<Item = K>,
    ) -> HashMap<K, usize> {
        let field = if s == Section::Months { "month" } else { "id" };
        let mut first = HashMap::new();
        for (i, key) in keys.enumerate() {
            if let Some(j) = first.get(&key) {
                let message = format!("{key} is also the {field} of {}", s.path(*j, ""));
                self.push(s, i, field, message);
            } else {
                first.insert(key, i);
            }
        }
        first
    }

    fn member(&mut self, s: Section, i: usize, field: &str, user: crate::ids::UserId) {
        if !self.target.members.contains(&user) {
            self.push(
                s,
                i,
                field,
                format!("{user} is not a member of the partnership"),
            );
        }
    }

    fn time(&mut self, s: Section, i: usize, field: &str, at: Millis) {
        if at.at_most(self.target.now) != at {
            self.push(s, i, field, "is in the future");
        }
    }

    fn name(&mut self, s: Section, i: usize, field: &'static str, name: &mut String) {
        match validate::name(field, name) {
            Ok(trimmed) => *name = trimmed,
            Err(e) => self.push(s, i, field, e.message),
        }
    }

    fn positive(&mut self, s: Section, i: usize, field: &'static str, amount: MinorUnits) {
        if let Err(e) = validate::positive_amount(field, amount, &self.target.currency) {
            self.push(s, i, field, e.message);
        }
    }

    fn at_least_zero(&mut self, s: Section, i: usize, field: &str, amount: i128) {
        if amount < 0 {
            self.push(s, i, field, "must not be negative");
        } else if amount > i128::from(self.target.currency.max_minor().0) {
            self.push(s, i, field, "is too large");
        }
    }

    /// A pending addition request of `kind` must exist for an item waiting for approval.
    fn waiting(
        &mut self,
        s: Section,
        i: usize,
        id: EntityId,
        kind: RequestType,
        pending: Option<&RequestType>,
    ) {
        if pending != Some(&kind) {
            self.push(
                s,
                i,
                "status",
                format!(
                    "is pending_approval, but approval_requests has no pending {kind} request \
                     for it (id {})",
                    add_request_id(id)
                ),
            );
        }
    }

    fn expense(&mut self, i: usize, e: &mut Expense, pending: Option<&RequestType>) {
        let s = Section::Expenses;
        self.name(s, i, "name", &mut e.name);
        self.positive(s, i, "amount", e.amount);
        self.member(s, i, "added_by", e.added_by);
        self.time(s, i, "created_at", e.created_at);
        self.time(s, i, "updated_at", e.updated_at);
        if e.status == ItemStatus::PendingApproval {
            self.waiting(s, i, e.id, RequestType::ExpenseAdd, pending);
        }
    }

    fn goal(&mut self, i: usize, g: &mut Goal, contributed: i128, pending: Option<&RequestType>) {
        let s = Section::Goals;
        self.name(s, i, "name", &mut g.name);
        self.positive(s, i, "target_amount", g.target_amount);
        self.at_least_zero(s, i, "saved_amount", i128::from(g.saved_amount.0));
        if i128::from(g.saved_amount.0) != contributed {
            let message = format!(
                "is not the sum of the goal's goal_contributions ({})",
                self.target
                    .currency
                    .from_minor(MinorUnits(i64::try_from(contributed).unwrap_or(i64::MAX)))
            );
            self.push(s, i, "saved_amount", message);
        }
        self.member(s, i, "added_by", g.added_by);
        self.time(s, i, "created_at", g.created_at);
        self.time(s, i, "updated_at", g.updated_at);
        if g.status == ItemStatus::PendingApproval {
            self.waiting(s, i, g.id, RequestType::GoalAdd, pending);
        }
    }

    fn goal_contribution(&mut self, i: usize, c: &GoalContribution, goal_exists: bool) {
        let s = Section::GoalContributions;
        if !goal_exists {
            self.push(
                s,
                i,
                "goal_id",
                format!("names goal {}, which is not in goals", c.goal_id),
            );
        }
        self.member(s, i, "user_id", c.user_id);
        self.positive(s, i, "amount", c.amount);
        self.time(s, i, "created_at", c.created_at);
    }

    fn month(&mut self, i: usize, m: &MonthContribution) {
        let s = Section::Months;
        self.at_least_zero(s, i, "total_required", i128::from(m.total_required.0));
        let mut sum = 0i128;
        for (user, amount) in &m.amounts {
            self.member(s, i, "shares", *user);
            self.at_least_zero(s, i, "shares", i128::from(amount.0));
            sum += i128::from(amount.0);
        }
        if !m.amounts.is_empty() && sum != i128::from(m.total_required.0) {
            self.push(s, i, "shares", "the shares do not add up to total_required");
        }
        for (user, at) in &m.paid {
            self.member(s, i, "shares", *user);
            if let Some(at) = at {
                self.time(s, i, "shares", *at);
            }
        }
    }

    fn approval(&mut self, i: usize, a: &mut Approval, items: &Items<'_>) {
        let s = Section::Approvals;
        self.member(s, i, "requested_by", a.requested_by);
        self.time(s, i, "created_at", a.created_at);
        self.request_data(i, a);
        match validate::note(a.message.as_deref()) {
            Ok(note) => a.message = note,
            Err(e) => self.push(s, i, "message", e.message),
        }
        self.answer(i, a);
        let (kind, section, item) = match a.request_type {
            RequestType::ExpenseAdd | RequestType::ExpenseEdit => (
                "expense",
                "expenses",
                items.expense_at.get(&a.target_id).map(|j| {
                    let e = &items.expenses[*j];
                    (expense_add_data(e), e.status)
                }),
            ),
            RequestType::GoalAdd | RequestType::GoalEdit => (
                "goal",
                "goals",
                items.goal_at.get(&a.target_id).map(|j| {
                    let g = &items.goals[*j];
                    (goal_add_data(g), g.status)
                }),
            ),
        };
        let Some((item_data, item_status)) = item else {
            self.push(
                s,
                i,
                "target_id",
                format!(
                    "names {kind} {}, which is not in {section} ({} requests target an {kind})",
                    a.target_id, a.request_type
                ),
            );
            return;
        };
        if !is_add(a.request_type) {
            return;
        }
        let derived = add_request_id(a.target_id);
        if a.id != derived {
            self.push(
                s,
                i,
                "id",
                format!(
                    "must be {derived}: the id of a {} request is derived from its {kind}",
                    a.request_type
                ),
            );
        }
        if a.status != ApprovalStatus::Pending {
            return;
        }
        if item_status != ItemStatus::PendingApproval {
            self.push(
                s,
                i,
                "status",
                format!("is pending, but its {kind} is {item_status}, not pending_approval"),
            );
        } else if a.request_data != item_data {
            self.push(
                s,
                i,
                "request_data",
                format!("does not describe its {kind} as it is (a pending addition's request holds the {kind}'s fields)"),
            );
        }
    }

    /// The proposed values: of the request type's kind, valid, every field for an addition
    /// and at least one for an edit.
    fn request_data(&mut self, i: usize, a: &mut Approval) {
        let s = Section::Approvals;
        let add = is_add(a.request_type);
        match (&mut a.request_data, a.request_type) {
            (RequestData::Expense(f), RequestType::ExpenseAdd | RequestType::ExpenseEdit) => {
                if let Some(name) = &mut f.name {
                    self.name(s, i, "request_data.name", name);
                }
                if let Some(amount) = f.amount {
                    self.positive(s, i, "request_data.amount", amount);
                }
                let complete = f.name.is_some()
                    && f.amount.is_some()
                    && f.category.is_some()
                    && f.frequency.is_some();
                if add && !complete {
                    self.push(
                        s,
                        i,
                        "request_data",
                        "an expense_add request proposes name, amount, category and frequency",
                    );
                } else if f.is_empty() {
                    self.push(s, i, "request_data", "proposes no change");
                }
            }
            (RequestData::Goal(f), RequestType::GoalAdd | RequestType::GoalEdit) => {
                if let Some(name) = &mut f.name {
                    self.name(s, i, "request_data.name", name);
                }
                if let Some(amount) = f.target_amount {
                    self.positive(s, i, "request_data.target_amount", amount);
                }
                let complete = f.name.is_some()
                    && f.target_amount.is_some()
                    && f.goal_type.is_some()
                    && f.priority.is_some();
                if add && !complete {
                    self.push(
                        s,
                        i,
                        "request_data",
                        "a goal_add request proposes name, target_amount, goal_type and priority",
                    );
                } else if f.is_empty() {
                    self.push(s, i, "request_data", "proposes no change");
                }
            }
            (_, t) => self.push(
                s,
                i,
                "request_data",
                format!("does not hold the fields of a {t} request"),
            ),
        }
    }

    /// Pending: nobody answered. Answered: by the partner who did not ask, at a time.
    fn answer(&mut self, i: usize, a: &Approval) {
        let s = Section::Approvals;
        if a.status == ApprovalStatus::Pending {
            if a.responded_by.is_some() {
                self.push(s, i, "responded_by", "must be null while pending");
            }
            if a.responded_at.is_some() {
                self.push(s, i, "responded_at", "must be null while pending");
            }
            return;
        }
        match a.responded_by {
            None => self.push(s, i, "responded_by", "is required once answered"),
            Some(by) if by == a.requested_by => {
                self.push(s, i, "responded_by", "must be the partner who did not ask")
            }
            Some(by) => self.member(s, i, "responded_by", by),
        }
        match a.responded_at {
            None => self.push(s, i, "responded_at", "is required once answered"),
            Some(at) => self.time(s, i, "responded_at", at),
        }
    }

    fn message(&mut self, i: usize, m: &mut Message) {
        let s = Section::Messages;
        self.member(s, i, "sender_id", m.sender_id);
        match validate::message_text(&m.text) {
            Ok(text) => m.text = text,
            Err(e) => self.push(s, i, "text", e.message),
        }
        self.time(s, i, "created_at", m.created_at);
    }
}
