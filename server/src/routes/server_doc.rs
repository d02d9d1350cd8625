//! The server's own reads and writes of a partnership document, through its document actor.
//!
//! Server-owned parts of the document (`members`, `partnership.status`, the amounts of
//! `contributions`) follow the relational data: a change of income or name, a pause or resume
//! is written into the document here, so synced apps see it and the split uses it. Reads that
//! need the document itself (the members' incomes, which have no table) run inside the actor
//! too, so they see one consistent state of the document.
//!
//! Unlike [`crate::routes::documents::apply`], these calls also run on a paused partnership:
//! the server keeps its own fields up to date whatever the couple's state.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use automerge::transaction::Transaction;
use splitsave_sync_core::enums::{ItemStatus, PartnershipStatus as DocStatus};
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, OpError, Outcome};
use splitsave_sync_core::read;
use splitsave_sync_core::schema::{Collection, Member, MonthContribution};
use splitsave_sync_core::split::{self, Month, Split, SplitExpense, SplitInput};
use uuid::Uuid;

use crate::app::AppState;
use crate::error::ApiError;
use crate::routes::documents::api_error;
use crate::store::{PartnershipRecord, PartnershipStatus, UserRecord};
use crate::sync::doc_actor::Command;

/// Runs `f` on the partnership's document inside its actor, as `user` (who is recorded as the
/// sender of any change `f` writes), and returns what `f` returned. Changes are committed and
/// fanned out like any REST write; a read-only `f` writes nothing and commits nothing.
pub async fn run<T, F>(state: &AppState, pid: Uuid, user: Uuid, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Fn(&mut Transaction<'_>) -> Result<T, OpError> + Send + Sync + 'static,
{
    let slot: Arc<Mutex<Option<T>>> = Arc::new(Mutex::new(None));
    let f = Arc::new(f);
    let uid = UserId(user);
    let out = slot.clone();
    state
        .sync
        .call(PartnershipId(pid), |reply| {
            let f = f.clone();
            let out = out.clone();
            Command::Apply {
                user: uid,
                op: Arc::new(move |tx: &mut Transaction<'_>| {
                    let value = f(tx)?;
                    if let Ok(mut guard) = out.lock() {
                        *guard = Some(value);
                    }
                    Ok(Outcome::Applied {
                        id: EntityId(Uuid::nil()),
                    })
                }),
                reply,
            }
        })
        .await
        .and_then(|r| r)
        .map_err(api_error)?;
    let value = slot.lock().ok().and_then(|mut guard| guard.take());
    value.ok_or_else(|| ApiError::internal("the document operation returned nothing"))
}

/// The split as the document has it now: its active expenses and its members' incomes.
#[derive(Clone, Debug)]
pub struct DocSplit {
    /// The partnership currency.
    pub currency: Currency,
    /// The two members, slot 1 first (fewer while the document lacks one).
    pub members: Vec<Member>,
    /// The result of `split::calculate`.
    pub split: Split,
    /// How many active expenses it counts.
    pub active_expenses: usize,
}

/// Computes the split from the document in a transaction (active expenses, members' incomes
/// by slot).
pub fn split_in(tx: &Transaction<'_>) -> Result<DocSplit, OpError> {
    let info = read::read_partnership(tx)?;
    let mut members = read::read_members(tx)?;
    members.sort_by_key(|m| m.slot);
    let mut expenses = Vec::new();
    for (key, obj) in read::collection_entries(tx, Collection::Expenses) {
        let Some(obj) = obj else { continue };
        let path = format!("expenses.{key}");
        // An entity that does not read (a faulty client's) is not counted, as in materializing.
        if let Ok(e) = read::expense_in(tx, &key, &obj, path) {
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

/// Makes sure `month` exists in the document: written from the current split when absent, and
/// its amounts kept in step with the split until a partner marks their share paid (from then
/// on the month is fixed, so nobody's paid amount changes under them).
pub fn ensure_month(tx: &mut Transaction<'_>, month: Month) -> Result<(), OpError> {
    let existing = read::read_month(tx, &month.to_string())?;
    if existing
        .as_ref()
        .is_some_and(|m| m.paid.values().any(Option::is_some))
    {
        return Ok(());
    }
    let DocSplit { members, split, .. } = split_in(tx)?;
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
    let wanted = MonthContribution {
        month,
        total_required: due.total_required,
        amounts,
        paid,
    };
    if let Some(existing) = existing {
        if existing.total_required == wanted.total_required && existing.amounts == wanted.amounts {
            return Ok(());
        }
    }
    ops::server_set_month(tx, &wanted)
}

/// The income a member brings into the document: their income when it is in the partnership
/// currency (an income in another currency is left out rather than converted at a guessed
/// rate, and the split falls back to equal halves).
pub fn member_income(user: &UserRecord, currency: Currency) -> Option<MinorUnits> {
    if user.currency != currency.code() {
        return None;
    }
    user.income
        .and_then(|i| currency.to_minor_non_negative(i).ok())
}

/// Writes a user's name and income into their partnership's document, when they have one
/// (active or paused). Called after every change of name, income or currency.
pub async fn sync_member(state: &AppState, user: &UserRecord) -> Result<(), ApiError> {
    let Some(p) = state.store.current_partnership(user.id).await? else {
        return Ok(());
    };
    if !has_document(&p) {
        return Ok(());
    }
    let currency = Currency::parse(&p.currency).map_err(ApiError::internal)?;
    let member = Member {
        user_id: UserId(user.id),
        name: user.name.clone(),
        income: member_income(user, currency),
        slot: if p.user1_id == user.id { 1 } else { 2 },
    };
    run(state, p.id, user.id, move |tx| {
        let current = read::read_member(tx, &member.user_id.to_string())?;
        if current.as_ref() != Some(&member) {
            ops::server_set_member(tx, &member)?;
        }
        Ok(())
    })
    .await
}

/// Writes the partnership's status (paused or active) into its document.
pub async fn sync_status(
    state: &AppState,
    p: &PartnershipRecord,
    user: Uuid,
) -> Result<(), ApiError> {
    let status = match p.status {
        PartnershipStatus::Active => DocStatus::Active,
        PartnershipStatus::Paused => DocStatus::Paused,
        PartnershipStatus::Pending => return Ok(()),
    };
    run(state, p.id, user, move |tx| {
        if read::read_partnership(tx)?.status != status {
            ops::server_set_status(tx, status)?;
        }
        Ok(())
    })
    .await
}

fn has_document(p: &PartnershipRecord) -> bool {
    matches!(
        p.status,
        PartnershipStatus::Active | PartnershipStatus::Paused
    )
}
