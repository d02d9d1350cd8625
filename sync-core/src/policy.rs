//! The approval policy (docs/schema-and-rules.md), in one place.
//!
//! - adding an expense over the partnership's `approval_threshold` needs the partner's
//!   approval; smaller ones (and one exactly at the threshold) go straight in;
//! - adding any goal needs approval;
//! - editing an existing expense or goal needs approval; logging a contribution to a goal,
//!   and archiving an expense or goal, do not;
//! - only the partner who did not ask may approve or decline; an approved request is applied;
//! - a message's sender is its author; only the recipient marks it read; messages are not edited;
//! - a partner marks only their own monthly contribution paid;
//! - `partnership`, `members` and the `contributions` amounts are written by the server only.

use crate::ids::EntityId;
use crate::money::MinorUnits;
use crate::schema::PartnershipInfo;

/// The default approval threshold in major units of the partnership currency.
pub const DEFAULT_APPROVAL_THRESHOLD_MAJOR: i64 = 100;

/// Limits on text fields, in characters (Unicode scalar values).
pub mod limits {
    /// Expense and goal names.
    pub const NAME_MAX: usize = 200;
    /// Message text and approval notes.
    pub const MESSAGE_MAX: usize = 4000;
}

/// The policy parameters of one partnership.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Expenses strictly above this amount need approval.
    pub approval_threshold: MinorUnits,
}

impl Policy {
    /// The policy of a document's partnership.
    pub fn of(info: &PartnershipInfo) -> Self {
        Self {
            approval_threshold: info.approval_threshold,
        }
    }

    /// Whether adding an expense of `amount` needs the partner's approval.
    pub fn expense_add_needs_approval(&self, amount: MinorUnits) -> bool {
        amount > self.approval_threshold
    }
}

/// The id of the approval request that goes with adding `target` (an expense over the
/// threshold or any goal). Derived, so a well-behaved client and a compensating server name
/// the same request and never file two.
pub fn add_request_id(target: EntityId) -> EntityId {
    EntityId::derived(&["add-request", &target.to_string()])
}
