//! Schema 1 of the partnership document as Rust types.
//!
//! ```text
//! schema: 1
//! partnership: { id, currency, approval_threshold, status }         server-owned
//! members:     { <user_id>: { name, income, slot: 1|2 } }            server-owned
//! expenses:    { <id>: { name, amount, category, frequency, added_by, status, created_at, updated_at } }
//! goals:       { <id>: { name, target_amount, saved_amount: Counter, goal_type, priority,
//!                        added_by, status, created_at, updated_at } }
//! goal_contributions: { <id>: { goal_id, user_id, amount, created_at } }
//! approvals:   { <id>: { requested_by, request_type, target_id, request_data, message, status,
//!                        responded_by, responded_at, created_at } }
//! messages:    { <id>: { sender_id, text, message_type, read_by_recipient, created_at } }
//! contributions: { "YYYY-MM": { total_required, amounts: {<user_id>: amount},
//!                               paid: {<user_id>: paid_at|null} } }
//! ```
//!
//! Money is integer minor units of the partnership currency; times are Unix milliseconds.
//! Entities live in maps keyed by their UUID so concurrent inserts never collide.

use std::collections::BTreeMap;

use crate::enums::{
    ApprovalStatus, Category, Frequency, GoalType, ItemStatus, MessageType, PartnershipStatus,
    Priority, RequestType,
};
use crate::ids::{EntityId, PartnershipId, UserId};
use crate::money::{Currency, MinorUnits};
use crate::split::Month;
use crate::time::Millis;

/// The schema version this crate writes and fully understands.
pub const SCHEMA_VERSION: u64 = 1;

/// Top-level keys of the document.
pub mod keys {
    /// Schema version (integer).
    pub const SCHEMA: &str = "schema";
    /// Server-owned partnership settings.
    pub const PARTNERSHIP: &str = "partnership";
    /// Server-owned member profiles.
    pub const MEMBERS: &str = "members";
    /// Expenses by id.
    pub const EXPENSES: &str = "expenses";
    /// Goals by id.
    pub const GOALS: &str = "goals";
    /// Logged goal contributions by id.
    pub const GOAL_CONTRIBUTIONS: &str = "goal_contributions";
    /// Approval requests by id.
    pub const APPROVALS: &str = "approvals";
    /// Messages by id.
    pub const MESSAGES: &str = "messages";
    /// Monthly contributions by "YYYY-MM".
    pub const CONTRIBUTIONS: &str = "contributions";
}

/// The entity collections (maps keyed by id or month) of the document.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Collection {
    /// `expenses`
    Expenses,
    /// `goals`
    Goals,
    /// `goal_contributions`
    GoalContributions,
    /// `approvals`
    Approvals,
    /// `messages`
    Messages,
    /// `contributions` (keyed by month)
    Contributions,
    /// `members` (keyed by user id; server-owned)
    Members,
}

impl Collection {
    /// Every collection.
    pub const ALL: [Collection; 7] = [
        Collection::Expenses,
        Collection::Goals,
        Collection::GoalContributions,
        Collection::Approvals,
        Collection::Messages,
        Collection::Contributions,
        Collection::Members,
    ];

    /// The top-level key holding this collection.
    pub fn key(&self) -> &'static str {
        match self {
            Collection::Expenses => keys::EXPENSES,
            Collection::Goals => keys::GOALS,
            Collection::GoalContributions => keys::GOAL_CONTRIBUTIONS,
            Collection::Approvals => keys::APPROVALS,
            Collection::Messages => keys::MESSAGES,
            Collection::Contributions => keys::CONTRIBUTIONS,
            Collection::Members => keys::MEMBERS,
        }
    }

    /// The collection stored under a top-level key.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.key() == key)
    }
}

/// `partnership`: server-owned settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartnershipInfo {
    /// The partnership id (also derives the document id).
    pub id: PartnershipId,
    /// The currency of every amount in the document.
    pub currency: Currency,
    /// Expenses above this amount need the partner's approval.
    pub approval_threshold: MinorUnits,
    /// Lifecycle.
    pub status: PartnershipStatus,
}

/// `members.<user_id>`: server-owned profile of a partner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The user.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Monthly income, if the partner gave it; the split uses it.
    pub income: Option<MinorUnits>,
    /// 1 for the inviter, 2 for the invitee: fixes the order of shares in the split.
    pub slot: u8,
}

/// `expenses.<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expense {
    /// Key in `expenses`.
    pub id: EntityId,
    /// 1–200 characters.
    pub name: String,
    /// Positive amount per `frequency`.
    pub amount: MinorUnits,
    /// Category from the fixed list.
    pub category: Category,
    /// How often it recurs.
    pub frequency: Frequency,
    /// The partner who added it.
    pub added_by: UserId,
    /// Lifecycle.
    pub status: ItemStatus,
    /// Creation time.
    pub created_at: Millis,
    /// Last change of the editable fields or status.
    pub updated_at: Millis,
}

/// The editable fields of an expense: what an edit request proposes (absent = unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpenseFields {
    /// New name.
    pub name: Option<String>,
    /// New amount.
    pub amount: Option<MinorUnits>,
    /// New category.
    pub category: Option<Category>,
    /// New frequency.
    pub frequency: Option<Frequency>,
}

impl ExpenseFields {
    /// True when no field is proposed.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.amount.is_none()
            && self.category.is_none()
            && self.frequency.is_none()
    }

    /// The fields of `after` that differ from `before`.
    pub fn changed(before: &Expense, after: &Expense) -> Self {
        Self {
            name: (before.name != after.name).then(|| after.name.clone()),
            amount: (before.amount != after.amount).then_some(after.amount),
            category: (before.category != after.category).then_some(after.category),
            frequency: (before.frequency != after.frequency).then_some(after.frequency),
        }
    }

    /// `expense` with these fields applied.
    pub fn apply_to(&self, expense: &Expense) -> Expense {
        let mut e = expense.clone();
        if let Some(v) = &self.name {
            e.name = v.clone();
        }
        if let Some(v) = self.amount {
            e.amount = v;
        }
        if let Some(v) = self.category {
            e.category = v;
        }
        if let Some(v) = self.frequency {
            e.frequency = v;
        }
        e
    }
}

/// `goals.<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Goal {
    /// Key in `goals`.
    pub id: EntityId,
    /// 1–200 characters.
    pub name: String,
    /// Positive target.
    pub target_amount: MinorUnits,
    /// An Automerge Counter: concurrent contributions add up.
    pub saved_amount: MinorUnits,
    /// Kind of goal.
    pub goal_type: GoalType,
    /// Ordering hint.
    pub priority: Priority,
    /// The partner who added it.
    pub added_by: UserId,
    /// Lifecycle.
    pub status: ItemStatus,
    /// Creation time.
    pub created_at: Millis,
    /// Last change of the editable fields or status.
    pub updated_at: Millis,
}

/// The editable fields of a goal: what an edit request proposes (absent = unchanged).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoalFields {
    /// New name.
    pub name: Option<String>,
    /// New target.
    pub target_amount: Option<MinorUnits>,
    /// New kind.
    pub goal_type: Option<GoalType>,
    /// New priority.
    pub priority: Option<Priority>,
}

impl GoalFields {
    /// True when no field is proposed.
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.target_amount.is_none()
            && self.goal_type.is_none()
            && self.priority.is_none()
    }

    /// The editable fields of `after` that differ from `before`.
    pub fn changed(before: &Goal, after: &Goal) -> Self {
        Self {
            name: (before.name != after.name).then(|| after.name.clone()),
            target_amount: (before.target_amount != after.target_amount)
                .then_some(after.target_amount),
            goal_type: (before.goal_type != after.goal_type).then_some(after.goal_type),
            priority: (before.priority != after.priority).then_some(after.priority),
        }
    }

    /// `goal` with these fields applied.
    pub fn apply_to(&self, goal: &Goal) -> Goal {
        let mut g = goal.clone();
        if let Some(v) = &self.name {
            g.name = v.clone();
        }
        if let Some(v) = self.target_amount {
            g.target_amount = v;
        }
        if let Some(v) = self.goal_type {
            g.goal_type = v;
        }
        if let Some(v) = self.priority {
            g.priority = v;
        }
        g
    }
}

/// `goal_contributions.<id>`: one logged contribution (the goal's counter holds the sum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalContribution {
    /// Key in `goal_contributions`.
    pub id: EntityId,
    /// The goal.
    pub goal_id: EntityId,
    /// Who contributed.
    pub user_id: UserId,
    /// Positive amount.
    pub amount: MinorUnits,
    /// When.
    pub created_at: Millis,
}

/// What an approval request proposes, stored under `request_data`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestData {
    /// For `expense_add` (a copy of the proposed expense's fields) and `expense_edit`.
    Expense(ExpenseFields),
    /// For `goal_add` and `goal_edit`.
    Goal(GoalFields),
}

/// `approvals.<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Approval {
    /// Key in `approvals`.
    pub id: EntityId,
    /// The partner asking.
    pub requested_by: UserId,
    /// What is asked.
    pub request_type: RequestType,
    /// The expense or goal concerned.
    pub target_id: EntityId,
    /// The proposed values.
    pub request_data: RequestData,
    /// Optional note, ≤ 4000 characters.
    pub message: Option<String>,
    /// Lifecycle.
    pub status: ApprovalStatus,
    /// The partner who answered.
    pub responded_by: Option<UserId>,
    /// When they answered.
    pub responded_at: Option<Millis>,
    /// Creation time.
    pub created_at: Millis,
}

/// `messages.<id>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Key in `messages`.
    pub id: EntityId,
    /// The author (must be the user whose change wrote it).
    pub sender_id: UserId,
    /// 1–4000 characters; never edited.
    pub text: String,
    /// Kind.
    pub message_type: MessageType,
    /// Set by the recipient only.
    pub read_by_recipient: bool,
    /// Creation time.
    pub created_at: Millis,
}

/// `contributions.<YYYY-MM>`: what each partner pays in for a month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthContribution {
    /// The month (the map key).
    pub month: Month,
    /// The month's total (server-written, from the split).
    pub total_required: MinorUnits,
    /// Each partner's amount (server-written).
    pub amounts: BTreeMap<UserId, MinorUnits>,
    /// When each partner marked their amount paid (each marks only their own).
    pub paid: BTreeMap<UserId, Option<Millis>>,
}
