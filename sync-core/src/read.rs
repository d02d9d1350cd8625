//! Tolerant, typed reading of the document.
//!
//! Stock JS clients (`@automerge/automerge` 3.x) write strings as Text objects and dates as
//! Timestamps, while Rust writers use scalar strings and integers; these readers accept both.
//! Unknown extra keys are ignored. A value of the wrong type is a [`ShapeError`], never a panic.
//!
//! Entities are read one at a time (`read_expense(doc, id)`) so that enforcement touches only
//! what a merge changed.

use std::collections::BTreeMap;
use std::str::FromStr;

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, Value, ROOT};

use crate::enums::*;
use crate::ids::{EntityId, PartnershipId, UserId};
use crate::money::{Currency, MinorUnits};
use crate::schema::*;
use crate::split::Month;
use crate::time::Millis;

/// A value in the document that does not have the shape schema 1 requires.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ShapeError {
    /// Where, e.g. `expenses.<id>.amount`.
    pub path: String,
    /// What is wrong.
    pub reason: &'static str,
}

fn shape(path: impl Into<String>, reason: &'static str) -> ShapeError {
    ShapeError {
        path: path.into(),
        reason,
    }
}

/// What a key holds, simplified for reading.
enum Slot {
    Missing,
    Scalar(ScalarValue),
    Object(ObjId, ObjType),
}

fn slot<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Slot {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => Slot::Scalar(s.into_owned()),
        Ok(Some((Value::Object(t), id))) => Slot::Object(id, t),
        _ => Slot::Missing,
    }
}

/// The map object under `key` of `obj`, if it is a map.
pub fn map_at<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<ObjId> {
    match doc.get(obj, key) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    }
}

/// The object of a top-level collection, if present and a map.
pub fn collection_obj<R: ReadDoc>(doc: &R, c: Collection) -> Option<ObjId> {
    map_at(doc, &ROOT, c.key())
}

/// Reads a string written as a scalar string or as a Text object.
pub fn string<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<String, ShapeError> {
    opt_string(doc, obj, key, path)?.ok_or_else(|| shape(format!("{path}.{key}"), "missing"))
}

/// Like [`string`], `None` when missing or null.
pub fn opt_string<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<String>, ShapeError> {
    match slot(doc, obj, key) {
        Slot::Missing | Slot::Scalar(ScalarValue::Null) => Ok(None),
        Slot::Scalar(ScalarValue::Str(s)) => Ok(Some(s.to_string())),
        Slot::Object(id, ObjType::Text) => doc
            .text(&id)
            .map(Some)
            .map_err(|_| shape(format!("{path}.{key}"), "unreadable text")),
        _ => Err(shape(format!("{path}.{key}"), "expected a string")),
    }
}

/// Reads an integer (Int, or Uint that fits).
pub fn int<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, path: &str) -> Result<i64, ShapeError> {
    opt_int(doc, obj, key, path)?.ok_or_else(|| shape(format!("{path}.{key}"), "missing"))
}

/// Like [`int`], `None` when missing or null.
pub fn opt_int<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<i64>, ShapeError> {
    match slot(doc, obj, key) {
        Slot::Missing | Slot::Scalar(ScalarValue::Null) => Ok(None),
        Slot::Scalar(ScalarValue::Int(n)) => Ok(Some(n)),
        Slot::Scalar(ScalarValue::Uint(n)) => i64::try_from(n)
            .map(Some)
            .map_err(|_| shape(format!("{path}.{key}"), "integer out of range")),
        _ => Err(shape(format!("{path}.{key}"), "expected an integer")),
    }
}

/// Reads a counter (an integer is accepted too: the value is what counts for reading).
pub fn counter<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, path: &str) -> Result<i64, ShapeError> {
    match slot(doc, obj, key) {
        Slot::Scalar(ScalarValue::Counter(c)) => Ok(i64::from(&c)),
        _ => int(doc, obj, key, path),
    }
}

/// True when `key` holds an Automerge Counter (as opposed to a plain integer).
pub fn is_counter<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> bool {
    matches!(slot(doc, obj, key), Slot::Scalar(ScalarValue::Counter(_)))
}

/// Reads a time written as an integer of milliseconds or an Automerge Timestamp.
pub fn opt_time<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<Millis>, ShapeError> {
    match slot(doc, obj, key) {
        Slot::Missing | Slot::Scalar(ScalarValue::Null) => Ok(None),
        Slot::Scalar(ScalarValue::Timestamp(n)) | Slot::Scalar(ScalarValue::Int(n)) => {
            Ok(Some(Millis(n)))
        }
        Slot::Scalar(ScalarValue::Uint(n)) => i64::try_from(n)
            .map(|n| Some(Millis(n)))
            .map_err(|_| shape(format!("{path}.{key}"), "time out of range")),
        _ => Err(shape(format!("{path}.{key}"), "expected a time")),
    }
}

/// Like [`opt_time`] but required.
pub fn time<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, path: &str) -> Result<Millis, ShapeError> {
    opt_time(doc, obj, key, path)?.ok_or_else(|| shape(format!("{path}.{key}"), "missing"))
}

/// Reads a boolean.
pub fn boolean<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<bool, ShapeError> {
    match slot(doc, obj, key) {
        Slot::Scalar(ScalarValue::Boolean(b)) => Ok(b),
        Slot::Missing => Err(shape(format!("{path}.{key}"), "missing")),
        _ => Err(shape(format!("{path}.{key}"), "expected a boolean")),
    }
}

fn parsed<T>(
    v: String,
    key: &str,
    path: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ShapeError> {
    parse(&v).ok_or_else(|| shape(format!("{path}.{key}"), "unknown value"))
}

fn enum_field<R: ReadDoc, T>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<T, ShapeError> {
    parsed(string(doc, obj, key, path)?, key, path, parse)
}

fn user_field<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<UserId, ShapeError> {
    enum_field(doc, obj, key, path, |s| UserId::from_str(s).ok())
}

fn opt_user_field<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<UserId>, ShapeError> {
    match opt_string(doc, obj, key, path)? {
        None => Ok(None),
        Some(s) => UserId::from_str(&s)
            .map(Some)
            .map_err(|_| shape(format!("{path}.{key}"), "expected a user id")),
    }
}

fn entity_field<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<EntityId, ShapeError> {
    enum_field(doc, obj, key, path, |s| EntityId::from_str(s).ok())
}

fn minor(n: i64) -> MinorUnits {
    MinorUnits(n)
}

/// The entity map `collection.<key>`; `Ok(None)` when absent, an error when not a map.
pub fn entity_obj<R: ReadDoc>(
    doc: &R,
    c: Collection,
    key: &str,
) -> Result<Option<ObjId>, ShapeError> {
    let Some(coll) = collection_obj(doc, c) else {
        return Ok(None);
    };
    match doc.get(&coll, key) {
        Ok(None) | Err(_) => Ok(None),
        Ok(Some((Value::Object(ObjType::Map), id))) => Ok(Some(id)),
        Ok(Some(_)) => Err(shape(format!("{}.{key}", c.key()), "expected a map")),
    }
}

/// The keys present in a collection.
pub fn collection_keys<R: ReadDoc>(doc: &R, c: Collection) -> Vec<String> {
    collection_obj(doc, c)
        .map(|o| doc.keys(&o).collect())
        .unwrap_or_default()
}

/// Reads `partnership`.
pub fn read_partnership<R: ReadDoc>(doc: &R) -> Result<PartnershipInfo, ShapeError> {
    let p = "partnership";
    let obj = map_at(doc, &ROOT, keys::PARTNERSHIP).ok_or_else(|| shape(p, "missing"))?;
    let id = enum_field(doc, &obj, "id", p, |s| PartnershipId::from_str(s).ok())?;
    let currency = enum_field(doc, &obj, "currency", p, |s| Currency::parse(s).ok())?;
    let approval_threshold = minor(int(doc, &obj, "approval_threshold", p)?);
    let status = enum_field(doc, &obj, "status", p, PartnershipStatus::parse)?;
    Ok(PartnershipInfo {
        id,
        currency,
        approval_threshold,
        status,
    })
}

/// Reads the schema version; `None` when missing.
pub fn read_schema_version<R: ReadDoc>(doc: &R) -> Option<i64> {
    opt_int(doc, &ROOT, keys::SCHEMA, "").ok().flatten()
}

/// Reads `members.<user_id>`.
pub fn read_member<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Member>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::Members, key)? else {
        return Ok(None);
    };
    let p = format!("members.{key}");
    let user_id = UserId::from_str(key).map_err(|_| shape(&p, "key is not a user id"))?;
    let slot = int(doc, &obj, "slot", &p)?;
    let slot = u8::try_from(slot)
        .ok()
        .filter(|s| *s == 1 || *s == 2)
        .ok_or_else(|| shape(format!("{p}.slot"), "must be 1 or 2"))?;
    Ok(Some(Member {
        user_id,
        name: string(doc, &obj, "name", &p)?,
        income: opt_int(doc, &obj, "income", &p)?.map(minor),
        slot,
    }))
}

/// Reads every member, ordered by slot.
pub fn read_members<R: ReadDoc>(doc: &R) -> Result<Vec<Member>, ShapeError> {
    let mut out = Vec::new();
    for k in collection_keys(doc, Collection::Members) {
        if let Some(m) = read_member(doc, &k)? {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.slot);
    Ok(out)
}

fn entity_id(key: &str, path: &str) -> Result<EntityId, ShapeError> {
    EntityId::from_str(key).map_err(|_| shape(path, "key is not a UUID"))
}

/// Reads `expenses.<id>`.
pub fn read_expense<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Expense>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::Expenses, key)? else {
        return Ok(None);
    };
    let p = format!("expenses.{key}");
    Ok(Some(Expense {
        id: entity_id(key, &p)?,
        name: string(doc, &obj, "name", &p)?,
        amount: minor(int(doc, &obj, "amount", &p)?),
        category: enum_field(doc, &obj, "category", &p, Category::parse)?,
        frequency: enum_field(doc, &obj, "frequency", &p, Frequency::parse)?,
        added_by: user_field(doc, &obj, "added_by", &p)?,
        status: enum_field(doc, &obj, "status", &p, ItemStatus::parse)?,
        created_at: time(doc, &obj, "created_at", &p)?,
        updated_at: time(doc, &obj, "updated_at", &p)?,
    }))
}

/// Reads `goals.<id>`.
pub fn read_goal<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Goal>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::Goals, key)? else {
        return Ok(None);
    };
    let p = format!("goals.{key}");
    Ok(Some(Goal {
        id: entity_id(key, &p)?,
        name: string(doc, &obj, "name", &p)?,
        target_amount: minor(int(doc, &obj, "target_amount", &p)?),
        saved_amount: minor(counter(doc, &obj, "saved_amount", &p)?),
        goal_type: enum_field(doc, &obj, "goal_type", &p, GoalType::parse)?,
        priority: enum_field(doc, &obj, "priority", &p, Priority::parse)?,
        added_by: user_field(doc, &obj, "added_by", &p)?,
        status: enum_field(doc, &obj, "status", &p, ItemStatus::parse)?,
        created_at: time(doc, &obj, "created_at", &p)?,
        updated_at: time(doc, &obj, "updated_at", &p)?,
    }))
}

/// Reads `goal_contributions.<id>`.
pub fn read_goal_contribution<R: ReadDoc>(
    doc: &R,
    key: &str,
) -> Result<Option<GoalContribution>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::GoalContributions, key)? else {
        return Ok(None);
    };
    let p = format!("goal_contributions.{key}");
    Ok(Some(GoalContribution {
        id: entity_id(key, &p)?,
        goal_id: entity_field(doc, &obj, "goal_id", &p)?,
        user_id: user_field(doc, &obj, "user_id", &p)?,
        amount: minor(int(doc, &obj, "amount", &p)?),
        created_at: time(doc, &obj, "created_at", &p)?,
    }))
}

fn read_expense_fields<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    p: &str,
) -> Result<ExpenseFields, ShapeError> {
    let opt_enum = |key: &str, parse: fn(&str) -> Option<_>| -> Result<_, ShapeError> {
        match opt_string(doc, obj, key, p)? {
            None => Ok(None),
            Some(s) => parsed(s, key, p, parse).map(Some),
        }
    };
    Ok(ExpenseFields {
        name: opt_string(doc, obj, "name", p)?,
        amount: opt_int(doc, obj, "amount", p)?.map(minor),
        category: opt_enum("category", Category::parse)?,
        frequency: match opt_string(doc, obj, "frequency", p)? {
            None => None,
            Some(s) => Some(parsed(s, "frequency", p, Frequency::parse)?),
        },
    })
}

fn read_goal_fields<R: ReadDoc>(doc: &R, obj: &ObjId, p: &str) -> Result<GoalFields, ShapeError> {
    Ok(GoalFields {
        name: opt_string(doc, obj, "name", p)?,
        target_amount: opt_int(doc, obj, "target_amount", p)?.map(minor),
        goal_type: match opt_string(doc, obj, "goal_type", p)? {
            None => None,
            Some(s) => Some(parsed(s, "goal_type", p, GoalType::parse)?),
        },
        priority: match opt_string(doc, obj, "priority", p)? {
            None => None,
            Some(s) => Some(parsed(s, "priority", p, Priority::parse)?),
        },
    })
}

/// Reads `approvals.<id>`.
pub fn read_approval<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Approval>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::Approvals, key)? else {
        return Ok(None);
    };
    let p = format!("approvals.{key}");
    let request_type = enum_field(doc, &obj, "request_type", &p, RequestType::parse)?;
    let data_path = format!("{p}.request_data");
    let data_obj = map_at(doc, &obj, "request_data");
    let request_data = match (request_type, data_obj) {
        (_, None) => return Err(shape(data_path, "expected a map")),
        (RequestType::ExpenseAdd | RequestType::ExpenseEdit, Some(o)) => {
            RequestData::Expense(read_expense_fields(doc, &o, &data_path)?)
        }
        (RequestType::GoalAdd | RequestType::GoalEdit, Some(o)) => {
            RequestData::Goal(read_goal_fields(doc, &o, &data_path)?)
        }
    };
    Ok(Some(Approval {
        id: entity_id(key, &p)?,
        requested_by: user_field(doc, &obj, "requested_by", &p)?,
        request_type,
        target_id: entity_field(doc, &obj, "target_id", &p)?,
        request_data,
        message: opt_string(doc, &obj, "message", &p)?,
        status: enum_field(doc, &obj, "status", &p, ApprovalStatus::parse)?,
        responded_by: opt_user_field(doc, &obj, "responded_by", &p)?,
        responded_at: opt_time(doc, &obj, "responded_at", &p)?,
        created_at: time(doc, &obj, "created_at", &p)?,
    }))
}

/// Reads `messages.<id>`.
pub fn read_message<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Message>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::Messages, key)? else {
        return Ok(None);
    };
    let p = format!("messages.{key}");
    Ok(Some(Message {
        id: entity_id(key, &p)?,
        sender_id: user_field(doc, &obj, "sender_id", &p)?,
        text: string(doc, &obj, "text", &p)?,
        message_type: enum_field(doc, &obj, "message_type", &p, MessageType::parse)?,
        read_by_recipient: boolean(doc, &obj, "read_by_recipient", &p)?,
        created_at: time(doc, &obj, "created_at", &p)?,
    }))
}

/// Reads `contributions.<YYYY-MM>`.
pub fn read_month<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<MonthContribution>, ShapeError> {
    let Some(obj) = entity_obj(doc, Collection::Contributions, key)? else {
        return Ok(None);
    };
    let p = format!("contributions.{key}");
    let month = Month::parse(key).map_err(|_| shape(&p, "key is not YYYY-MM"))?;
    let amounts_obj = map_at(doc, &obj, "amounts")
        .ok_or_else(|| shape(format!("{p}.amounts"), "expected a map"))?;
    let paid_obj =
        map_at(doc, &obj, "paid").ok_or_else(|| shape(format!("{p}.paid"), "expected a map"))?;
    let mut amounts = BTreeMap::new();
    for k in doc.keys(&amounts_obj) {
        let user =
            UserId::from_str(&k).map_err(|_| shape(format!("{p}.amounts"), "bad user id"))?;
        amounts.insert(
            user,
            minor(int(doc, &amounts_obj, &k, &format!("{p}.amounts"))?),
        );
    }
    let mut paid = BTreeMap::new();
    for k in doc.keys(&paid_obj) {
        let user = UserId::from_str(&k).map_err(|_| shape(format!("{p}.paid"), "bad user id"))?;
        paid.insert(user, opt_time(doc, &paid_obj, &k, &format!("{p}.paid"))?);
    }
    Ok(Some(MonthContribution {
        month,
        total_required: minor(int(doc, &obj, "total_required", &p)?),
        amounts,
        paid,
    }))
}
