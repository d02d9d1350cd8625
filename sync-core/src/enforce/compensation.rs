//! The compensations: what enforcement decided to write ([`Fix`]), and writing it as the
//! server's own change.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{Automerge, AutomergeError, ChangeHash, ObjId, ObjType, ScalarValue};

use super::{EnforceError, Enforcement};
use crate::ids::EntityId;
use crate::money::MinorUnits;
use crate::ops;
use crate::read;
use crate::schema::*;
use crate::strings::{self, Holder};
use crate::time::Millis;
use crate::write;

/// One compensating write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Write these expense fields over the current ones (or recreate it).
    PutExpense(Expense),
    /// Write these goal fields (not the counter) over the current ones (or recreate it).
    PutGoal(Goal),
    /// Write a fresh saved-amount counter holding `value`. A fresh counter rather than an
    /// increment by the difference: two servers that compensate the same merge both write the
    /// same value and converge, where two increments would correct twice. A partner's
    /// increment concurrent with it is hidden by it, but that partner's merge re-checks the
    /// goal against its logged contributions and writes the counter again.
    FixSaved {
        /// The goal.
        goal: EntityId,
        /// The value the counter must have.
        value: MinorUnits,
    },
    /// Write a goal contribution (restore or correct it).
    PutGoalContribution(GoalContribution),
    /// File or restore an approval request.
    PutApproval(Approval),
    /// Restore a message.
    PutMessage(Message),
    /// Restore a month of contributions.
    PutMonth(MonthContribution),
    /// Restore a member.
    PutMember(Member),
    /// Restore the partnership settings.
    PutPartnership(PartnershipInfo),
    /// Restore the schema version.
    PutSchema(i64),
    /// Rewrite, same values, the string fields of the partnership map or of an entity that the
    /// merge left in the other type than declared ([`crate::strings`]).
    NormalizeStrings(Holder),
    /// Remove an invalid entity.
    Remove {
        /// The collection.
        collection: Collection,
        /// Its key.
        key: String,
    },
}

impl Fix {
    /// The entity this fix writes, for materialization.
    pub fn target(&self) -> Option<(Collection, String)> {
        Some(match self {
            Fix::PutExpense(e) => (Collection::Expenses, e.id.to_string()),
            Fix::PutGoal(g) => (Collection::Goals, g.id.to_string()),
            Fix::FixSaved { goal, .. } => (Collection::Goals, goal.to_string()),
            Fix::PutGoalContribution(c) => (Collection::GoalContributions, c.id.to_string()),
            Fix::PutApproval(a) => (Collection::Approvals, a.id.to_string()),
            Fix::PutMessage(m) => (Collection::Messages, m.id.to_string()),
            Fix::PutMonth(m) => (Collection::Contributions, m.month.to_string()),
            Fix::PutMember(m) => (Collection::Members, m.user_id.to_string()),
            Fix::Remove { collection, key } => (*collection, key.clone()),
            Fix::NormalizeStrings(Holder::Entity(c, key)) => (*c, key.clone()),
            Fix::NormalizeStrings(Holder::Partnership)
            | Fix::PutPartnership(_)
            | Fix::PutSchema(_) => return None,
        })
    }
}

/// Writes the fixes into a transaction.
pub fn apply_fixes<T: Transactable>(tx: &mut T, fixes: &[Fix]) -> Result<(), EnforceError> {
    for fix in fixes {
        apply_fix(tx, fix)?;
    }
    Ok(())
}

fn entity_or_new<T: Transactable>(
    tx: &mut T,
    c: Collection,
    key: &str,
) -> Result<(ObjId, bool), EnforceError> {
    match read::entity_obj(tx, c, key) {
        Ok(Some(o)) => Ok((o, false)),
        _ => Ok((write::new_entity(tx, c, key)?, true)),
    }
}

fn apply_fix<T: Transactable>(tx: &mut T, fix: &Fix) -> Result<(), EnforceError> {
    match fix {
        Fix::PutExpense(e) => {
            let key = e.id.to_string();
            let current = read::read_expense(tx, &key).ok().flatten();
            let (obj, _) = entity_or_new(tx, Collection::Expenses, &key)?;
            match current {
                Some(cur) => put_changed_expense(tx, &obj, &cur, e)?,
                None => write::put_expense_fields(tx, &obj, e)?,
            }
        }
        Fix::PutGoal(g) => {
            let key = g.id.to_string();
            let current = read::read_goal(tx, &key).ok().flatten();
            let (obj, fresh) = entity_or_new(tx, Collection::Goals, &key)?;
            match current {
                Some(cur) => {
                    ops::write_goal_edit(tx, &obj, &cur, g)?;
                    if cur.status != g.status {
                        tx.put(&obj, "status", g.status.as_str())?;
                    }
                    if cur.added_by != g.added_by {
                        tx.put(&obj, "added_by", g.added_by.to_string())?;
                    }
                    if cur.created_at != g.created_at {
                        tx.put(&obj, "created_at", g.created_at.0)?;
                    }
                    if cur.updated_at != g.updated_at {
                        tx.put(&obj, "updated_at", g.updated_at.0)?;
                    }
                }
                None => {
                    write::put_goal_fields(tx, &obj, g)?;
                    if fresh {
                        tx.put(&obj, "saved_amount", ScalarValue::counter(g.saved_amount.0))?;
                    }
                }
            }
        }
        Fix::FixSaved { goal, value } => {
            if let Some(obj) = read::entity_obj(tx, Collection::Goals, &goal.to_string())? {
                tx.put(&obj, "saved_amount", ScalarValue::counter(value.0))?;
            }
        }
        Fix::PutGoalContribution(c) => {
            let (obj, _) = entity_or_new(tx, Collection::GoalContributions, &c.id.to_string())?;
            tx.put(&obj, "goal_id", c.goal_id.to_string())?;
            tx.put(&obj, "user_id", c.user_id.to_string())?;
            tx.put(&obj, "amount", c.amount.0)?;
            tx.put(&obj, "created_at", c.created_at.0)?;
        }
        Fix::PutApproval(a) => {
            let key = a.id.to_string();
            let current = read::read_approval(tx, &key).ok().flatten();
            if current.as_ref() != Some(a) {
                let (obj, _) = entity_or_new(tx, Collection::Approvals, &key)?;
                write::put_approval_fields(tx, &obj, a)?;
            }
        }
        Fix::PutMessage(m) => {
            let (obj, _) = entity_or_new(tx, Collection::Messages, &m.id.to_string())?;
            write::put_message_fields(tx, &obj, m)?;
        }
        Fix::PutMonth(m) => {
            let (obj, _) = entity_or_new(tx, Collection::Contributions, &m.month.to_string())?;
            write::put_month_fields(tx, &obj, m)?;
        }
        Fix::PutMember(m) => {
            let (obj, _) = entity_or_new(tx, Collection::Members, &m.user_id.to_string())?;
            write::put_member_fields(tx, &obj, m)?;
        }
        Fix::PutPartnership(p) => {
            let obj = match read::map_at(tx, &automerge::ROOT, keys::PARTNERSHIP) {
                Some(o) => o,
                None => tx.put_object(automerge::ROOT, keys::PARTNERSHIP, ObjType::Map)?,
            };
            write::put_partnership_fields(tx, &obj, p)?;
        }
        Fix::PutSchema(v) => tx.put(automerge::ROOT, keys::SCHEMA, *v)?,
        Fix::Remove { collection, key } => write::delete_entity(tx, *collection, key)?,
        Fix::NormalizeStrings(holder) => strings::normalize(tx, holder)?,
    }
    Ok(())
}

fn put_changed_expense<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    cur: &Expense,
    e: &Expense,
) -> Result<(), AutomergeError> {
    ops::write_expense_edit(tx, obj, cur, e)?;
    if cur.status != e.status {
        tx.put(obj, "status", e.status.as_str())?;
    }
    if cur.added_by != e.added_by {
        tx.put(obj, "added_by", e.added_by.to_string())?;
    }
    if cur.created_at != e.created_at {
        tx.put(obj, "created_at", e.created_at.0)?;
    }
    if cur.updated_at != e.updated_at {
        tx.put(obj, "updated_at", e.updated_at.0)?;
    }
    Ok(())
}

/// Writes the compensations of `enforcement` into `doc` as one change by `doc`'s actor (the
/// server's), returning its hash, or `None` when nothing needed compensating.
pub fn compensate(
    doc: &mut Automerge,
    enforcement: &Enforcement,
    now: Millis,
) -> Result<Option<ChangeHash>, EnforceError> {
    if enforcement.fixes.is_empty() {
        return Ok(None);
    }
    let result = doc.transact_with::<_, _, EnforceError, _>(
        |_| {
            CommitOptions::default()
                .with_message(crate::history::COMPENSATION_MESSAGE)
                .with_time(now.0 / 1000)
        },
        |tx| apply_fixes(tx, &enforcement.fixes),
    );
    match result {
        Ok(success) => Ok(success.hash),
        Err(failure) => Err(failure.error),
    }
}
