//! The closed vocabularies of the document: statuses, frequencies, categories and kinds.
//!
//! Each is stored in the document as its lower-case string (`as_str`) so JS clients read and
//! write plain strings. Parsing is strict: an unknown value is a validation error on input and
//! a shape error in a merged document.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $s:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The document and API spelling.
            pub fn as_str(&self) -> &'static str {
                match self { $($name::$variant => $s),+ }
            }

            /// Parses the document and API spelling.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// How often an expense recurs; the split normalises each to a monthly amount.
    Frequency {
        /// × 52 / 12 per month.
        Weekly => "weekly",
        /// As is.
        Monthly => "monthly",
        /// / 12 per month.
        Yearly => "yearly",
    }
);

string_enum!(
    /// Expense categories: a fixed list so reports group reliably across both partners' apps.
    Category {
        /// Rent, mortgage, property tax.
        Housing => "housing",
        /// Energy, water, internet, phone.
        Utilities => "utilities",
        /// Food and household supplies.
        Groceries => "groceries",
        /// Car, fuel, public transport.
        Transport => "transport",
        /// Insurance premiums.
        Insurance => "insurance",
        /// Health care and pharmacy.
        Health => "health",
        /// Children and childcare.
        Childcare => "childcare",
        /// Streaming, software, memberships.
        Subscriptions => "subscriptions",
        /// Eating out.
        Dining => "dining",
        /// Leisure, travel, hobbies.
        Entertainment => "entertainment",
        /// Loan and credit repayments.
        Debt => "debt",
        /// Pets.
        Pets => "pets",
        /// Anything else.
        Other => "other",
    }
);

string_enum!(
    /// Lifecycle of an expense or a goal.
    ItemStatus {
        /// Counts (in the split, in progress).
        Active => "active",
        /// Waiting for the partner's approval; does not count yet.
        PendingApproval => "pending_approval",
        /// Removed from use (archived by a partner, or its addition was declined).
        Archived => "archived",
    }
);

string_enum!(
    /// Lifecycle of an approval request.
    ApprovalStatus {
        /// Waiting for the partner who did not ask.
        Pending => "pending",
        /// Approved and applied.
        Approved => "approved",
        /// Declined; nothing applied.
        Declined => "declined",
    }
);

string_enum!(
    /// What an approval request asks for.
    RequestType {
        /// Add an expense over the threshold (the expense waits as `pending_approval`).
        ExpenseAdd => "expense_add",
        /// Change an existing expense's fields to `request_data`.
        ExpenseEdit => "expense_edit",
        /// Add a goal (the goal waits as `pending_approval`).
        GoalAdd => "goal_add",
        /// Change an existing goal's fields to `request_data`.
        GoalEdit => "goal_edit",
    }
);

string_enum!(
    /// Kinds of goals.
    GoalType {
        /// Rainy-day money.
        EmergencyFund => "emergency_fund",
        /// Holidays and trips.
        Vacation => "vacation",
        /// Buying or improving a home.
        Home => "home",
        /// A vehicle.
        Car => "car",
        /// Education.
        Education => "education",
        /// Retirement.
        Retirement => "retirement",
        /// A wedding or celebration.
        Wedding => "wedding",
        /// Anything else.
        Other => "other",
    }
);

string_enum!(
    /// Goal priority, for ordering.
    Priority {
        /// Low.
        Low => "low",
        /// Medium (default).
        Medium => "medium",
        /// High.
        High => "high",
    }
);

string_enum!(
    /// Kinds of messages.
    MessageType {
        /// Written by a partner.
        Text => "text",
        /// A note attached to an approval request or response.
        Approval => "approval",
    }
);

string_enum!(
    /// Partnership lifecycle (server-owned in the document).
    PartnershipStatus {
        /// Invitation sent, not accepted.
        Pending => "pending",
        /// Both partners in; documents sync read-write.
        Active => "active",
        /// Paused: read-only.
        Paused => "paused",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_round_trips_its_spelling() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(*c));
        }
        for r in RequestType::ALL {
            assert_eq!(RequestType::parse(r.as_str()), Some(*r));
        }
        assert_eq!(Frequency::parse("fortnightly"), None);
        assert_eq!(ItemStatus::parse("Active"), None);
    }
}
