//! The split and the month's contribution as a document holds them now.
//!
//! The server (REST reads, the month it writes into the document) and the SDK (what an app
//! shows offline) both compute them here from the same document, so they agree to the minor
//! unit.

use std::collections::BTreeMap;

use automerge::transaction::Transactable;
use automerge::ReadDoc;

use crate::enums::ItemStatus;
use crate::money::Currency;
use crate::ops::{self, OpError, OpResult};
use crate::read;
use crate::schema::{Collection, Member, MonthContribution};
use crate::split::{self, Month, Split, SplitExpense, SplitInput};

/// The split as the document has it now: its active expenses and its members' incomes.
#[derive(Clone, Debug)]
pub struct DocSplit {
    /// The partnership currency.
    pub currency: Currency,
    /// The two members, slot 1 first (fewer while the document lacks one).
    pub members: Vec<Member>,
    /// The result of [`split::calculate`].
    pub split: Split,
    /// How many active expenses it counts.
    pub active_expenses: usize,
}

/// Computes the split from the document (active expenses, members' incomes by slot).
pub fn document_split<R: ReadDoc>(doc: &R) -> OpResult<DocSplit> {
    let info = read::read_partnership(doc)?;
    let mut members = read::read_members(doc)?;
    members.sort_by_key(|m| m.slot);
    let mut expenses = Vec::new();
    for (key, obj) in read::collection_entries(doc, Collection::Expenses) {
        let Some(obj) = obj else { continue };
        let path = format!("expenses.{key}");
        // An entity that does not read (a faulty client's) is not counted, as in materializing.
        if let Ok(e) = read::expense_in(doc, &key, &obj, path) {
            if e.status == ItemStatus::Active {
                expenses.push(SplitExpense {
                    amount: e.amount,
                    frequency: e.frequency,
                });
            }
        }
    }
    let income = |slot: u8| {
        members
            .iter()
            .find(|m| m.slot == slot)
            .and_then(|m| m.income)
    };
    let input = SplitInput {
        income_1: income(1),
        income_2: income(2),
        expenses,
    };
    let split = split::calculate(&input).map_err(|e| {
        OpError::Shape(read::ShapeError {
            path: "expenses".into(),
            reason: match e {
                split::SplitError::Overflow => "the split overflows",
                _ => "the split cannot be computed",
            },
        })
    })?;
    Ok(DocSplit {
        currency: info.currency,
        active_expenses: input.expenses.len(),
        members,
        split,
    })
}

/// What `month` should hold when it is written from the current split: each member's amount
/// and no paid marks.
pub fn month_from_split<R: ReadDoc>(doc: &R, month: Month) -> OpResult<MonthContribution> {
    let DocSplit { members, split, .. } = document_split(doc)?;
    let due = split::monthly_contribution(month, &split);
    let mut amounts = BTreeMap::new();
    let mut paid = BTreeMap::new();
    for m in &members {
        let amount = if m.slot == 1 {
            due.amount_1
        } else {
            due.amount_2
        };
        amounts.insert(m.user_id, amount);
        paid.insert(m.user_id, None);
    }
    Ok(MonthContribution {
        month,
        total_required: due.total_required,
        amounts,
        paid,
    })
}

/// The month as an app should show it: the document's month when it exists, else what the
/// server will write from the current split (the server creates a month on first read; until
/// then an offline app shows the same amounts).
pub fn current_month<R: ReadDoc>(doc: &R, month: Month) -> OpResult<MonthContribution> {
    match read::read_month(doc, &month.to_string())? {
        Some(existing) => Ok(existing),
        None => month_from_split(doc, month),
    }
}

/// Server only: makes sure `month` exists in the document, written from the current split when
/// absent, and its amounts kept in step with the split until a partner marks their share paid
/// (from then on the month is fixed, so nobody's paid amount changes under them).
pub fn server_ensure_month<T: Transactable>(tx: &mut T, month: Month) -> OpResult<()> {
    let existing = read::read_month(tx, &month.to_string())?;
    if existing
        .as_ref()
        .is_some_and(|m| m.paid.values().any(Option::is_some))
    {
        return Ok(());
    }
    let wanted = month_from_split(tx, month)?;
    if let Some(existing) = existing {
        if existing.total_required == wanted.total_required && existing.amounts == wanted.amounts {
            return Ok(());
        }
    }
    ops::server_set_month(tx, &wanted)
}
