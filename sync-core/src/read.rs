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

use automerge::{ObjId, ObjType, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef, ROOT};

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

/// A scalar as read, detached from the document.
#[derive(Clone, Debug, PartialEq)]
enum Scalar {
    Str(String),
    Int(i64),
    Uint(u64),
    Counter(i64),
    Timestamp(i64),
    Bool(bool),
    Null,
    Other,
}

impl Scalar {
    fn of(v: &ScalarValueRef<'_>) -> Self {
        match v {
            ScalarValueRef::Str(s) => Scalar::Str(s.to_string()),
            ScalarValueRef::Int(n) => Scalar::Int(*n),
            ScalarValueRef::Uint(n) => Scalar::Uint(*n),
            ScalarValueRef::Counter(n) => Scalar::Counter(*n),
            ScalarValueRef::Timestamp(n) => Scalar::Timestamp(*n),
            ScalarValueRef::Boolean(b) => Scalar::Bool(*b),
            ScalarValueRef::Null => Scalar::Null,
            _ => Scalar::Other,
        }
    }

    fn of_owned(v: &ScalarValue) -> Self {
        match v {
            ScalarValue::Str(s) => Scalar::Str(s.to_string()),
            ScalarValue::Int(n) => Scalar::Int(*n),
            ScalarValue::Uint(n) => Scalar::Uint(*n),
            ScalarValue::Counter(c) => Scalar::Counter(i64::from(c)),
            ScalarValue::Timestamp(n) => Scalar::Timestamp(*n),
            ScalarValue::Boolean(b) => Scalar::Bool(*b),
            ScalarValue::Null => Scalar::Null,
            _ => Scalar::Other,
        }
    }
}

/// What a key holds, simplified for reading.
#[derive(Clone, Debug)]
enum Slot {
    Missing,
    Scalar(Scalar),
    Object(ObjId, ObjType),
}

/// Every key of one map object, read in a single pass (one `map_range` instead of a lookup
/// per field: reading a whole document stays linear and cheap).
struct Fields(Vec<(String, Slot)>);

impl Fields {
    fn of<R: ReadDoc>(doc: &R, obj: &ObjId) -> Self {
        Fields(
            doc.map_range(obj, ..)
                .map(|item| {
                    let slot = match &item.value {
                        ValueRef::Object(t) => Slot::Object(item.id(), *t),
                        ValueRef::Scalar(s) => Slot::Scalar(Scalar::of(s)),
                    };
                    (item.key.into_owned(), slot)
                })
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Slot {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, s)| s.clone())
            .unwrap_or(Slot::Missing)
    }
}

fn slot<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Slot {
    match doc.get(obj, key) {
        Ok(Some((Value::Scalar(s), _))) => Slot::Scalar(Scalar::of_owned(&s)),
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

fn missing(key: &str, path: &str) -> ShapeError {
    shape(format!("{path}.{key}"), "missing")
}

fn slot_opt_string<R: ReadDoc>(
    doc: &R,
    slot: Slot,
    key: &str,
    path: &str,
) -> Result<Option<String>, ShapeError> {
    match slot {
        Slot::Missing | Slot::Scalar(Scalar::Null) => Ok(None),
        Slot::Scalar(Scalar::Str(s)) => Ok(Some(s)),
        Slot::Object(id, ObjType::Text) => doc
            .text(&id)
            .map(Some)
            .map_err(|_| shape(format!("{path}.{key}"), "unreadable text")),
        _ => Err(shape(format!("{path}.{key}"), "expected a string")),
    }
}

fn slot_opt_int(slot: Slot, key: &str, path: &str) -> Result<Option<i64>, ShapeError> {
    match slot {
        Slot::Missing | Slot::Scalar(Scalar::Null) => Ok(None),
        Slot::Scalar(Scalar::Int(n)) => Ok(Some(n)),
        Slot::Scalar(Scalar::Uint(n)) => i64::try_from(n)
            .map(Some)
            .map_err(|_| shape(format!("{path}.{key}"), "integer out of range")),
        _ => Err(shape(format!("{path}.{key}"), "expected an integer")),
    }
}

fn slot_opt_time(slot: Slot, key: &str, path: &str) -> Result<Option<Millis>, ShapeError> {
    match slot {
        Slot::Scalar(Scalar::Timestamp(n)) => Ok(Some(Millis(n))),
        Slot::Missing | Slot::Scalar(Scalar::Null | Scalar::Int(_) | Scalar::Uint(_)) => {
            slot_opt_int(slot, key, path).map(|n| n.map(Millis))
        }
        _ => Err(shape(format!("{path}.{key}"), "expected a time")),
    }
}

/// Reads a string written as a scalar string or as a Text object.
pub fn string<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<String, ShapeError> {
    opt_string(doc, obj, key, path)?.ok_or_else(|| missing(key, path))
}

/// Like [`string`], `None` when missing or null.
pub fn opt_string<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<String>, ShapeError> {
    slot_opt_string(doc, slot(doc, obj, key), key, path)
}

/// Reads an integer (Int, or Uint that fits).
pub fn int<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str, path: &str) -> Result<i64, ShapeError> {
    opt_int(doc, obj, key, path)?.ok_or_else(|| missing(key, path))
}

/// Like [`int`], `None` when missing or null.
pub fn opt_int<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<i64>, ShapeError> {
    slot_opt_int(slot(doc, obj, key), key, path)
}

/// True when `key` holds an Automerge Counter (as opposed to a plain integer).
pub fn is_counter<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> bool {
    matches!(slot(doc, obj, key), Slot::Scalar(Scalar::Counter(_)))
}

/// Reads a time written as an integer of milliseconds or an Automerge Timestamp.
pub fn opt_time<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    key: &str,
    path: &str,
) -> Result<Option<Millis>, ShapeError> {
    slot_opt_time(slot(doc, obj, key), key, path)
}

/// One entity's fields, read in one pass, with typed accessors.
struct Entity<'d, R> {
    doc: &'d R,
    fields: Fields,
    path: String,
}

impl<'d, R: ReadDoc> Entity<'d, R> {
    fn new(doc: &'d R, obj: &ObjId, path: String) -> Self {
        Self {
            doc,
            fields: Fields::of(doc, obj),
            path,
        }
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, ShapeError> {
        slot_opt_string(self.doc, self.fields.get(key), key, &self.path)
    }

    fn string(&self, key: &str) -> Result<String, ShapeError> {
        self.opt_string(key)?
            .ok_or_else(|| missing(key, &self.path))
    }

    fn opt_int(&self, key: &str) -> Result<Option<i64>, ShapeError> {
        slot_opt_int(self.fields.get(key), key, &self.path)
    }

    fn int(&self, key: &str) -> Result<i64, ShapeError> {
        self.opt_int(key)?.ok_or_else(|| missing(key, &self.path))
    }

    fn counter(&self, key: &str) -> Result<i64, ShapeError> {
        match self.fields.get(key) {
            Slot::Scalar(Scalar::Counter(n)) => Ok(n),
            _ => self.int(key),
        }
    }

    fn opt_time(&self, key: &str) -> Result<Option<Millis>, ShapeError> {
        slot_opt_time(self.fields.get(key), key, &self.path)
    }

    fn time(&self, key: &str) -> Result<Millis, ShapeError> {
        self.opt_time(key)?.ok_or_else(|| missing(key, &self.path))
    }

    fn boolean(&self, key: &str) -> Result<bool, ShapeError> {
        match self.fields.get(key) {
            Slot::Scalar(Scalar::Bool(b)) => Ok(b),
            Slot::Missing => Err(missing(key, &self.path)),
            _ => Err(shape(format!("{}.{key}", self.path), "expected a boolean")),
        }
    }

    fn map(&self, key: &str) -> Result<ObjId, ShapeError> {
        match self.fields.get(key) {
            Slot::Object(id, ObjType::Map) => Ok(id),
            _ => Err(shape(format!("{}.{key}", self.path), "expected a map")),
        }
    }

    fn parsed<T>(&self, key: &str, parse: impl Fn(&str) -> Option<T>) -> Result<T, ShapeError> {
        parsed(self.string(key)?, key, &self.path, parse)
    }

    fn opt_parsed<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<T>, ShapeError> {
        match self.opt_string(key)? {
            None => Ok(None),
            Some(s) => parsed(s, key, &self.path, parse).map(Some),
        }
    }

    fn user(&self, key: &str) -> Result<UserId, ShapeError> {
        self.parsed(key, |s| UserId::from_str(s).ok())
    }

    fn opt_user(&self, key: &str) -> Result<Option<UserId>, ShapeError> {
        self.opt_parsed(key, |s| UserId::from_str(s).ok())
    }

    fn entity(&self, key: &str) -> Result<EntityId, ShapeError> {
        self.parsed(key, |s| EntityId::from_str(s).ok())
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

/// The entries of a collection in one pass: each key with its map object, or `None` when the
/// value is not a map (a shape error for the entity readers).
pub fn collection_entries<R: ReadDoc>(doc: &R, c: Collection) -> Vec<(String, Option<ObjId>)> {
    let Some(coll) = collection_obj(doc, c) else {
        return Vec::new();
    };
    doc.map_range(&coll, ..)
        .map(|item| {
            let obj = match item.value {
                ValueRef::Object(ObjType::Map) => Some(item.id()),
                _ => None,
            };
            (item.key.into_owned(), obj)
        })
        .collect()
}

/// Reads `partnership`.
pub fn read_partnership<R: ReadDoc>(doc: &R) -> Result<PartnershipInfo, ShapeError> {
    let obj =
        map_at(doc, &ROOT, keys::PARTNERSHIP).ok_or_else(|| shape("partnership", "missing"))?;
    let e = Entity::new(doc, &obj, "partnership".into());
    Ok(PartnershipInfo {
        id: e.parsed("id", |s| PartnershipId::from_str(s).ok())?,
        currency: e.parsed("currency", |s| Currency::parse(s).ok())?,
        approval_threshold: minor(e.int("approval_threshold")?),
        status: e.parsed("status", PartnershipStatus::parse)?,
    })
}

/// Reads the schema version; `None` when missing.
pub fn read_schema_version<R: ReadDoc>(doc: &R) -> Option<i64> {
    opt_int(doc, &ROOT, keys::SCHEMA, "").ok().flatten()
}

fn located<R: ReadDoc>(
    doc: &R,
    c: Collection,
    key: &str,
) -> Result<Option<(ObjId, String)>, ShapeError> {
    Ok(entity_obj(doc, c, key)?.map(|o| (o, format!("{}.{key}", c.key()))))
}

/// Reads `members.<user_id>`.
pub fn read_member<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Member>, ShapeError> {
    match located(doc, Collection::Members, key)? {
        None => Ok(None),
        Some((obj, p)) => member_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the member stored in map `obj` under `key`.
pub fn member_in<R: ReadDoc>(
    doc: &R,
    key: &str,
    obj: &ObjId,
    p: String,
) -> Result<Member, ShapeError> {
    let user_id = UserId::from_str(key).map_err(|_| shape(&p, "key is not a user id"))?;
    let e = Entity::new(doc, obj, p);
    let slot = e.int("slot")?;
    let slot = u8::try_from(slot)
        .ok()
        .filter(|s| *s == 1 || *s == 2)
        .ok_or_else(|| shape(format!("{}.slot", e.path), "must be 1 or 2"))?;
    Ok(Member {
        user_id,
        name: e.string("name")?,
        income: e.opt_int("income")?.map(minor),
        slot,
    })
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
    match located(doc, Collection::Expenses, key)? {
        None => Ok(None),
        Some((obj, p)) => expense_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the expense stored in map `obj` under `key`.
pub fn expense_in<R: ReadDoc>(
    doc: &R,
    key: &str,
    obj: &ObjId,
    p: String,
) -> Result<Expense, ShapeError> {
    let id = entity_id(key, &p)?;
    let e = Entity::new(doc, obj, p);
    Ok(Expense {
        id,
        name: e.string("name")?,
        amount: minor(e.int("amount")?),
        category: e.parsed("category", Category::parse)?,
        frequency: e.parsed("frequency", Frequency::parse)?,
        added_by: e.user("added_by")?,
        status: e.parsed("status", ItemStatus::parse)?,
        created_at: e.time("created_at")?,
        updated_at: e.time("updated_at")?,
    })
}

/// Reads `goals.<id>`.
pub fn read_goal<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Goal>, ShapeError> {
    match located(doc, Collection::Goals, key)? {
        None => Ok(None),
        Some((obj, p)) => goal_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the goal stored in map `obj` under `key`.
pub fn goal_in<R: ReadDoc>(doc: &R, key: &str, obj: &ObjId, p: String) -> Result<Goal, ShapeError> {
    let id = entity_id(key, &p)?;
    let e = Entity::new(doc, obj, p);
    Ok(Goal {
        id,
        name: e.string("name")?,
        target_amount: minor(e.int("target_amount")?),
        saved_amount: minor(e.counter("saved_amount")?),
        goal_type: e.parsed("goal_type", GoalType::parse)?,
        priority: e.parsed("priority", Priority::parse)?,
        added_by: e.user("added_by")?,
        status: e.parsed("status", ItemStatus::parse)?,
        created_at: e.time("created_at")?,
        updated_at: e.time("updated_at")?,
    })
}

/// Reads `goal_contributions.<id>`.
pub fn read_goal_contribution<R: ReadDoc>(
    doc: &R,
    key: &str,
) -> Result<Option<GoalContribution>, ShapeError> {
    match located(doc, Collection::GoalContributions, key)? {
        None => Ok(None),
        Some((obj, p)) => goal_contribution_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the goal contribution stored in map `obj` under `key`.
pub fn goal_contribution_in<R: ReadDoc>(
    doc: &R,
    key: &str,
    obj: &ObjId,
    p: String,
) -> Result<GoalContribution, ShapeError> {
    let id = entity_id(key, &p)?;
    let e = Entity::new(doc, obj, p);
    Ok(GoalContribution {
        id,
        goal_id: e.entity("goal_id")?,
        user_id: e.user("user_id")?,
        amount: minor(e.int("amount")?),
        created_at: e.time("created_at")?,
    })
}

fn expense_fields<R: ReadDoc>(e: &Entity<'_, R>) -> Result<ExpenseFields, ShapeError> {
    Ok(ExpenseFields {
        name: e.opt_string("name")?,
        amount: e.opt_int("amount")?.map(minor),
        category: e.opt_parsed("category", Category::parse)?,
        frequency: e.opt_parsed("frequency", Frequency::parse)?,
    })
}

fn goal_fields<R: ReadDoc>(e: &Entity<'_, R>) -> Result<GoalFields, ShapeError> {
    Ok(GoalFields {
        name: e.opt_string("name")?,
        target_amount: e.opt_int("target_amount")?.map(minor),
        goal_type: e.opt_parsed("goal_type", GoalType::parse)?,
        priority: e.opt_parsed("priority", Priority::parse)?,
    })
}

/// Reads `approvals.<id>`.
pub fn read_approval<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Approval>, ShapeError> {
    match located(doc, Collection::Approvals, key)? {
        None => Ok(None),
        Some((obj, p)) => approval_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the approval request stored in map `obj` under `key`.
pub fn approval_in<R: ReadDoc>(
    doc: &R,
    key: &str,
    obj: &ObjId,
    p: String,
) -> Result<Approval, ShapeError> {
    let id = entity_id(key, &p)?;
    let e = Entity::new(doc, obj, p);
    let request_type = e.parsed("request_type", RequestType::parse)?;
    let data = Entity::new(
        doc,
        &e.map("request_data")?,
        format!("{}.request_data", e.path),
    );
    let request_data = match request_type {
        RequestType::ExpenseAdd | RequestType::ExpenseEdit => {
            RequestData::Expense(expense_fields(&data)?)
        }
        RequestType::GoalAdd | RequestType::GoalEdit => RequestData::Goal(goal_fields(&data)?),
    };
    Ok(Approval {
        id,
        requested_by: e.user("requested_by")?,
        request_type,
        target_id: e.entity("target_id")?,
        request_data,
        message: e.opt_string("message")?,
        status: e.parsed("status", ApprovalStatus::parse)?,
        responded_by: e.opt_user("responded_by")?,
        responded_at: e.opt_time("responded_at")?,
        created_at: e.time("created_at")?,
    })
}

/// Reads `messages.<id>`.
pub fn read_message<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<Message>, ShapeError> {
    match located(doc, Collection::Messages, key)? {
        None => Ok(None),
        Some((obj, p)) => message_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the message stored in map `obj` under `key`.
pub fn message_in<R: ReadDoc>(
    doc: &R,
    key: &str,
    obj: &ObjId,
    p: String,
) -> Result<Message, ShapeError> {
    let id = entity_id(key, &p)?;
    let e = Entity::new(doc, obj, p);
    Ok(Message {
        id,
        sender_id: e.user("sender_id")?,
        text: e.string("text")?,
        message_type: e.parsed("message_type", MessageType::parse)?,
        read_by_recipient: e.boolean("read_by_recipient")?,
        created_at: e.time("created_at")?,
    })
}

/// Reads `contributions.<YYYY-MM>`.
pub fn read_month<R: ReadDoc>(doc: &R, key: &str) -> Result<Option<MonthContribution>, ShapeError> {
    match located(doc, Collection::Contributions, key)? {
        None => Ok(None),
        Some((obj, p)) => month_in(doc, key, &obj, p).map(Some),
    }
}

/// Reads the month stored in map `obj` under `key`.
pub fn month_in<R: ReadDoc>(
    doc: &R,
    key: &str,
    obj: &ObjId,
    p: String,
) -> Result<MonthContribution, ShapeError> {
    let month = Month::parse(key).map_err(|_| shape(&p, "key is not YYYY-MM"))?;
    let e = Entity::new(doc, obj, p);
    let amounts_e = Entity::new(doc, &e.map("amounts")?, format!("{}.amounts", e.path));
    let paid_e = Entity::new(doc, &e.map("paid")?, format!("{}.paid", e.path));
    let mut amounts = BTreeMap::new();
    for (k, _) in &amounts_e.fields.0 {
        let user = UserId::from_str(k).map_err(|_| shape(&amounts_e.path, "bad user id"))?;
        amounts.insert(user, minor(amounts_e.int(k)?));
    }
    let mut paid = BTreeMap::new();
    for (k, _) in &paid_e.fields.0 {
        let user = UserId::from_str(k).map_err(|_| shape(&paid_e.path, "bad user id"))?;
        paid.insert(user, paid_e.opt_time(k)?);
    }
    Ok(MonthContribution {
        month,
        total_required: minor(e.int("total_required")?),
        amounts,
        paid,
    })
}
