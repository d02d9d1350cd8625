//! Importing a couple's data into a partnership that has no entries yet (moving servers,
//! restoring): typed entities written into its document exactly as they were.
//!
//! The server's `POST /api/import` reads a JSON export into an [`Import`] (amounts in minor
//! units of the partnership currency, the old couple's user ids mapped onto the partnership's
//! members), checks it whole with [`Import::check`] and writes the [`CheckedImport`] with
//! [`write_import`] as one operation of the importing partner: one Automerge change, committed
//! with its materialized rows in one transaction.
//!
//! # Why not through the operations
//!
//! The operations make *new* items: `add_expense` decides from today's threshold whether to
//! file a request, a goal starts at zero saved, every time is `now`. An import restores items
//! that already went through their history: a declined expense is archived with its declined
//! request, a goal holds what was contributed, times are the original ones. So the import
//! writes whole entities with the [`crate::write`] helpers (every string in its declared type,
//! [`crate::fields`]), the way REST writes are server-run operations that merge enforcement
//! does not judge. In exchange, [`Import::check`] refuses anything the policy and enforcement
//! would never have let into a document, before a single value is written:
//!
//! - names, texts and notes valid as the operations require (trimmed, lengths, no control
//!   characters), amounts positive (a goal's saved amount, a month's total and shares at least
//!   zero) and within the currency's limit, times not ahead of the server's clock by more than
//!   [`MAX_CLOCK_SKEW`](crate::time::MAX_CLOCK_SKEW);
//! - every user one of the partnership's two members;
//! - ids unique within their section (a month by its `YYYY-MM`);
//! - a goal contribution names a goal of the import, and a goal's saved amount is the sum of
//!   its contributions (the counter enforcement keeps);
//! - a request targets an expense (`expense_*`) or a goal (`goal_*`) of the import, with data
//!   of that kind (an addition proposes every field, an edit at least one); an addition's
//!   request has the id derived from its item
//!   ([`add_request_id`](crate::policy::add_request_id)); an item waiting for approval has its
//!   pending addition request and that request describes it, and a pending addition request's
//!   item is waiting; an answered request names who answered (the partner who did not ask) and
//!   when, a pending one neither;
//! - a month's shares add up to its total.
//!
//! Problems name the JSON path of the export they come from (`expenses[3].amount`), since the
//! import's sections keep the export's order.

use automerge::transaction::Transactable;
use automerge::ReadDoc;

use crate::ids::UserId;
use crate::money::Currency;
use crate::ops::{self, Ctx, OpError, OpResult};
use crate::read;
use crate::schema::*;
use crate::time::Millis;
use crate::write;

mod check;

/// The conflict a partnership that already has entries answers ([`OpError::Conflict`]).
pub const NOT_EMPTY: &str = "partnership has entries";
/// The conflict when the partnership is no longer the one the import was checked for (its
/// currency or members differ).
pub const CHANGED: &str = "partnership changed since the import was checked";

/// Everything an import writes: each section in the order of the file it was read from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Import {
    /// `expenses`.
    pub expenses: Vec<Expense>,
    /// `goals`.
    pub goals: Vec<Goal>,
    /// `goal_contributions`.
    pub goal_contributions: Vec<GoalContribution>,
    /// The months (`contributions` in the export).
    pub months: Vec<MonthContribution>,
    /// The approval requests (`approval_requests` in the export).
    pub approvals: Vec<Approval>,
    /// `messages`.
    pub messages: Vec<Message>,
}

/// A section of an import, named as the JSON export names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Section {
    /// `expenses`
    Expenses,
    /// `goals`
    Goals,
    /// `goal_contributions`
    GoalContributions,
    /// `contributions` (the months)
    Months,
    /// `approval_requests`
    Approvals,
    /// `messages`
    Messages,
}

impl Section {
    /// Every section, in the export's order.
    pub const ALL: [Section; 6] = [
        Section::Expenses,
        Section::Goals,
        Section::GoalContributions,
        Section::Months,
        Section::Approvals,
        Section::Messages,
    ];

    /// The export's key of this section.
    pub fn key(&self) -> &'static str {
        match self {
            Section::Expenses => "expenses",
            Section::Goals => "goals",
            Section::GoalContributions => "goal_contributions",
            Section::Months => "contributions",
            Section::Approvals => "approval_requests",
            Section::Messages => "messages",
        }
    }

    /// The JSON path of `field` of the `index`th item (`expenses[3].amount`); the item itself
    /// for an empty `field`.
    pub fn path(&self, index: usize, field: &str) -> String {
        if field.is_empty() {
            format!("{}[{index}]", self.key())
        } else {
            format!("{}[{index}].{field}", self.key())
        }
    }
}

/// What the import is checked against: the partnership it goes into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    /// The partnership currency (every amount of the import is in it).
    pub currency: Currency,
    /// Its two members.
    pub members: [UserId; 2],
    /// The server's clock: no time of the import may be later than this plus the skew
    /// enforcement tolerates.
    pub now: Millis,
}

/// One thing wrong with an import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The JSON path in the export, e.g. `expenses[3].amount`.
    pub path: String,
    /// What is wrong, for people.
    pub message: String,
}

/// An [`Import`] that passed [`Import::check`] for a partnership: only this is written.
#[derive(Clone, Debug)]
pub struct CheckedImport {
    import: Import,
    currency: Currency,
    /// Sorted.
    members: [UserId; 2],
}

impl Import {
    /// How many items each section holds.
    pub fn counts(&self) -> [(Section, usize); 6] {
        Section::ALL.map(|s| {
            let n = match s {
                Section::Expenses => self.expenses.len(),
                Section::Goals => self.goals.len(),
                Section::GoalContributions => self.goal_contributions.len(),
                Section::Months => self.months.len(),
                Section::Approvals => self.approvals.len(),
                Section::Messages => self.messages.len(),
            };
            (s, n)
        })
    }

    /// Checks the whole import for `target` (the rules in the module documentation) and
    /// normalises it as the operations would (names and texts trimmed, an empty note none).
    /// Every problem is reported, in the order of the sections.
    pub fn check(mut self, target: &Target) -> Result<CheckedImport, Vec<Problem>> {
        let problems = check::check(&mut self, target);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(CheckedImport {
            import: self,
            currency: target.currency,
            members: sorted(target.members),
        })
    }
}

impl CheckedImport {
    /// The checked import.
    pub fn import(&self) -> &Import {
        &self.import
    }
}

fn sorted(mut members: [UserId; 2]) -> [UserId; 2] {
    members.sort();
    members
}

/// The first collection of the document that holds an entry, `None` when it has none: any
/// expense, goal, goal contribution, approval request or message, or a month with a paid mark.
///
/// A month nobody marked paid is the server's bookkeeping, not an entry: `GET
/// /api/contributions/current` writes this month from the split on first read, and it follows
/// the split until someone pays. An import replaces such a month by the imported one of the same
/// key and leaves the others.
pub fn first_entry<R: ReadDoc>(doc: &R) -> Option<Collection> {
    let items = [
        Collection::Expenses,
        Collection::Goals,
        Collection::GoalContributions,
        Collection::Approvals,
        Collection::Messages,
    ];
    if let Some(c) = items
        .into_iter()
        .find(|c| read::collection_obj(doc, *c).is_some_and(|obj| doc.length(&obj) > 0))
    {
        return Some(c);
    }
    let paid = read::collection_keys(doc, Collection::Contributions)
        .iter()
        .any(|key| match read::read_month(doc, key) {
            Ok(Some(m)) => m.paid.values().any(Option::is_some),
            Ok(None) => false,
            // A month that does not read is not the server's: count it, never overwrite it.
            Err(_) => true,
        });
    paid.then_some(Collection::Contributions)
}

/// Writes a checked import into the document as `ctx.user`, every entity as it was.
///
/// Refuses, writing nothing, when the caller may not write ([`OpError::NotMember`],
/// [`OpError::Inactive`]), when the document has an entry ([`first_entry`]; conflict
/// [`NOT_EMPTY`]), or when its currency or members are not those the import was checked for
/// (conflict [`CHANGED`]). Checked here, inside the transaction, and not only by the caller
/// beforehand: a write that reached the document meanwhile is seen.
pub fn write_import<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    checked: &CheckedImport,
) -> OpResult<()> {
    let info = ops::writable(tx, ctx)?;
    if first_entry(tx).is_some() {
        return Err(OpError::Conflict(NOT_EMPTY));
    }
    let members: Vec<UserId> = read::read_members(tx)?.iter().map(|m| m.user_id).collect();
    let same_members = <[UserId; 2]>::try_from(members)
        .map(sorted)
        .is_ok_and(|m| m == checked.members);
    if info.currency != checked.currency || !same_members {
        return Err(OpError::Conflict(CHANGED));
    }
    let import = &checked.import;
    for m in &import.months {
        // Replaces an unpaid month of the same key (`first_entry` let only those through).
        write::put_month(tx, m)?;
    }
    for e in &import.expenses {
        write::put_expense(tx, e)?;
    }
    for g in &import.goals {
        // The counter starts at the saved amount: the sum of the contributions written below.
        write::put_goal(tx, g)?;
    }
    for c in &import.goal_contributions {
        write::put_goal_contribution(tx, c)?;
    }
    for a in &import.approvals {
        write::put_approval(tx, a)?;
    }
    for m in &import.messages {
        write::put_message(tx, m)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
