//! Writing typed values into the document.
//!
//! Every string is written in its declared type ([`crate::fields`]): free text as a Text
//! object (JS reads a `string`), identifiers and enums as scalar strings (JS reads an
//! `ImmutableString`). Readers accept both. Writers put whole entities or single fields, so
//! compensations touch only what they must and stay small in history.

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, ScalarValue, ROOT};

use crate::read;
use crate::schema::*;

/// Result of a write.
pub type WriteResult<T> = Result<T, AutomergeError>;

/// The collection's map object, created when missing.
pub fn ensure_collection<T: Transactable>(tx: &mut T, c: Collection) -> WriteResult<ObjId> {
    match read::collection_obj(tx, c) {
        Some(o) => Ok(o),
        None => tx.put_object(ROOT, c.key(), ObjType::Map),
    }
}

/// A fresh map for an entity at `collection.<key>` (replacing anything there).
pub fn new_entity<T: Transactable>(tx: &mut T, c: Collection, key: &str) -> WriteResult<ObjId> {
    let coll = ensure_collection(tx, c)?;
    tx.put_object(&coll, key, ObjType::Map)
}

/// Removes `collection.<key>`.
pub fn delete_entity<T: Transactable>(tx: &mut T, c: Collection, key: &str) -> WriteResult<()> {
    if let Some(coll) = read::collection_obj(tx, c) {
        tx.delete(&coll, key)?;
    }
    Ok(())
}

/// Puts free text as a new Text object holding `s` (the declared type of names, message texts
/// and notes). A new object rather than an edit of the old one: the field changes whole, as a
/// scalar assignment would, and a JS client's `doc.name = "…"` writes the same.
pub fn put_text<T: Transactable>(tx: &mut T, obj: &ObjId, key: &str, s: &str) -> WriteResult<()> {
    let text = tx.put_object(obj, key, ObjType::Text)?;
    tx.splice_text(&text, 0, 0, s)
}

/// Puts free text as Text ([`put_text`]), or null for `None`.
pub fn put_opt_text<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    v: Option<&str>,
) -> WriteResult<()> {
    match v {
        Some(s) => put_text(tx, obj, key, s),
        None => tx.put(obj, key, ScalarValue::Null),
    }
}

/// Puts a scalar string, or null for `None`.
pub fn put_opt_str<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    v: Option<&str>,
) -> WriteResult<()> {
    match v {
        Some(s) => tx.put(obj, key, s),
        None => tx.put(obj, key, ScalarValue::Null),
    }
}

/// Puts an integer, or null for `None`.
pub fn put_opt_int<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    key: &str,
    v: Option<i64>,
) -> WriteResult<()> {
    match v {
        Some(n) => tx.put(obj, key, n),
        None => tx.put(obj, key, ScalarValue::Null),
    }
}

/// Writes every field of an expense into `obj`.
pub fn put_expense_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    e: &Expense,
) -> WriteResult<()> {
    put_text(tx, obj, "name", &e.name)?;
    tx.put(obj, "amount", e.amount.0)?;
    tx.put(obj, "category", e.category.as_str())?;
    tx.put(obj, "frequency", e.frequency.as_str())?;
    tx.put(obj, "added_by", e.added_by.to_string())?;
    tx.put(obj, "status", e.status.as_str())?;
    tx.put(obj, "created_at", e.created_at.0)?;
    tx.put(obj, "updated_at", e.updated_at.0)?;
    Ok(())
}

/// Writes a whole new expense.
pub fn put_expense<T: Transactable>(tx: &mut T, e: &Expense) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::Expenses, &e.id.to_string())?;
    put_expense_fields(tx, &obj, e)
}

/// Writes the fields of a goal except `saved_amount` into `obj`.
pub fn put_goal_fields<T: Transactable>(tx: &mut T, obj: &ObjId, g: &Goal) -> WriteResult<()> {
    put_text(tx, obj, "name", &g.name)?;
    tx.put(obj, "target_amount", g.target_amount.0)?;
    tx.put(obj, "goal_type", g.goal_type.as_str())?;
    tx.put(obj, "priority", g.priority.as_str())?;
    tx.put(obj, "added_by", g.added_by.to_string())?;
    tx.put(obj, "status", g.status.as_str())?;
    tx.put(obj, "created_at", g.created_at.0)?;
    tx.put(obj, "updated_at", g.updated_at.0)?;
    Ok(())
}

/// Writes a whole new goal; `saved_amount` starts as a Counter at the goal's value.
pub fn put_goal<T: Transactable>(tx: &mut T, g: &Goal) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::Goals, &g.id.to_string())?;
    put_goal_fields(tx, &obj, g)?;
    tx.put(&obj, "saved_amount", ScalarValue::counter(g.saved_amount.0))
}

/// Writes a logged goal contribution.
pub fn put_goal_contribution<T: Transactable>(tx: &mut T, c: &GoalContribution) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::GoalContributions, &c.id.to_string())?;
    tx.put(&obj, "goal_id", c.goal_id.to_string())?;
    tx.put(&obj, "user_id", c.user_id.to_string())?;
    tx.put(&obj, "amount", c.amount.0)?;
    tx.put(&obj, "created_at", c.created_at.0)?;
    Ok(())
}

fn put_request_data<T: Transactable>(tx: &mut T, obj: &ObjId, d: &RequestData) -> WriteResult<()> {
    let data = tx.put_object(obj, "request_data", ObjType::Map)?;
    match d {
        RequestData::Expense(f) => {
            if let Some(v) = &f.name {
                put_text(tx, &data, "name", v)?;
            }
            if let Some(v) = f.amount {
                tx.put(&data, "amount", v.0)?;
            }
            if let Some(v) = f.category {
                tx.put(&data, "category", v.as_str())?;
            }
            if let Some(v) = f.frequency {
                tx.put(&data, "frequency", v.as_str())?;
            }
        }
        RequestData::Goal(f) => {
            if let Some(v) = &f.name {
                put_text(tx, &data, "name", v)?;
            }
            if let Some(v) = f.target_amount {
                tx.put(&data, "target_amount", v.0)?;
            }
            if let Some(v) = f.goal_type {
                tx.put(&data, "goal_type", v.as_str())?;
            }
            if let Some(v) = f.priority {
                tx.put(&data, "priority", v.as_str())?;
            }
        }
    }
    Ok(())
}

/// Writes every field of an approval request into `obj`.
pub fn put_approval_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    a: &Approval,
) -> WriteResult<()> {
    tx.put(obj, "requested_by", a.requested_by.to_string())?;
    tx.put(obj, "request_type", a.request_type.as_str())?;
    tx.put(obj, "target_id", a.target_id.to_string())?;
    put_request_data(tx, obj, &a.request_data)?;
    put_opt_text(tx, obj, "message", a.message.as_deref())?;
    tx.put(obj, "status", a.status.as_str())?;
    put_opt_str(
        tx,
        obj,
        "responded_by",
        a.responded_by.map(|u| u.to_string()).as_deref(),
    )?;
    put_opt_int(tx, obj, "responded_at", a.responded_at.map(|t| t.0))?;
    tx.put(obj, "created_at", a.created_at.0)?;
    Ok(())
}

/// Writes a whole approval request.
pub fn put_approval<T: Transactable>(tx: &mut T, a: &Approval) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::Approvals, &a.id.to_string())?;
    put_approval_fields(tx, &obj, a)
}

/// Writes every field of a message into `obj`.
pub fn put_message_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    m: &Message,
) -> WriteResult<()> {
    tx.put(obj, "sender_id", m.sender_id.to_string())?;
    put_text(tx, obj, "text", &m.text)?;
    tx.put(obj, "message_type", m.message_type.as_str())?;
    tx.put(obj, "read_by_recipient", m.read_by_recipient)?;
    tx.put(obj, "created_at", m.created_at.0)?;
    Ok(())
}

/// Writes a whole message.
pub fn put_message<T: Transactable>(tx: &mut T, m: &Message) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::Messages, &m.id.to_string())?;
    put_message_fields(tx, &obj, m)
}

/// Writes a whole month of contributions (server-owned amounts and the paid map).
pub fn put_month<T: Transactable>(tx: &mut T, m: &MonthContribution) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::Contributions, &m.month.to_string())?;
    put_month_fields(tx, &obj, m)
}

/// Writes the fields of a month into `obj`.
pub fn put_month_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    m: &MonthContribution,
) -> WriteResult<()> {
    tx.put(obj, "total_required", m.total_required.0)?;
    let amounts = tx.put_object(obj, "amounts", ObjType::Map)?;
    for (user, amount) in &m.amounts {
        tx.put(&amounts, user.to_string(), amount.0)?;
    }
    let paid = tx.put_object(obj, "paid", ObjType::Map)?;
    for (user, at) in &m.paid {
        put_opt_int(tx, &paid, &user.to_string(), at.map(|t| t.0))?;
    }
    Ok(())
}

/// Writes `members.<user_id>`.
pub fn put_member<T: Transactable>(tx: &mut T, m: &Member) -> WriteResult<()> {
    let obj = new_entity(tx, Collection::Members, &m.user_id.to_string())?;
    put_member_fields(tx, &obj, m)
}

/// Writes the fields of a member into `obj`.
pub fn put_member_fields<T: Transactable>(tx: &mut T, obj: &ObjId, m: &Member) -> WriteResult<()> {
    put_text(tx, obj, "name", &m.name)?;
    put_opt_int(tx, obj, "income", m.income.map(|i| i.0))?;
    tx.put(obj, "slot", i64::from(m.slot))?;
    Ok(())
}

/// Writes the `partnership` map's fields into `obj`.
pub fn put_partnership_fields<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    p: &PartnershipInfo,
) -> WriteResult<()> {
    tx.put(obj, "id", p.id.to_string())?;
    tx.put(obj, "currency", p.currency.code())?;
    tx.put(obj, "approval_threshold", p.approval_threshold.0)?;
    tx.put(obj, "status", p.status.as_str())?;
    Ok(())
}
