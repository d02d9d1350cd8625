//! Materialization: the document's entities as rows of the relational tables (`expenses`,
//! `goals`, `goal_contributions`, `approval_requests`, `messages`, `contributions`), with money
//! as exact decimals in the partnership currency. The server upserts only the rows a merge
//! touched ([`rows_for`]); [`all_rows`] rebuilds everything (the tables are derived data).

use automerge::{ObjId, ReadDoc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::ids::{EntityId, PartnershipId, UserId};
use crate::money::Currency;
use crate::read::{self, ShapeError};
use crate::schema::*;
use crate::time::Millis;
use crate::touched::Touched;

/// A row of `expenses`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpenseRow {
    /// Entity id.
    pub id: EntityId,
    /// Name.
    pub name: String,
    /// Amount in the currency.
    pub amount: Decimal,
    /// Category spelling.
    pub category: String,
    /// Frequency spelling.
    pub frequency: String,
    /// Who added it.
    pub added_by: UserId,
    /// Status spelling.
    pub status: String,
    /// Created.
    pub created_at: Millis,
    /// Updated.
    pub updated_at: Millis,
}

/// A row of `goals`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalRow {
    /// Entity id.
    pub id: EntityId,
    /// Name.
    pub name: String,
    /// Target.
    pub target_amount: Decimal,
    /// Saved so far.
    pub saved_amount: Decimal,
    /// Goal type spelling.
    pub goal_type: String,
    /// Priority spelling.
    pub priority: String,
    /// Who added it.
    pub added_by: UserId,
    /// Status spelling.
    pub status: String,
    /// Created.
    pub created_at: Millis,
    /// Updated.
    pub updated_at: Millis,
}

/// A row of `goal_contributions`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalContributionRow {
    /// Entity id.
    pub id: EntityId,
    /// The goal.
    pub goal_id: EntityId,
    /// Who.
    pub user_id: UserId,
    /// Amount.
    pub amount: Decimal,
    /// When.
    pub created_at: Millis,
}

/// A row of `approval_requests`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRow {
    /// Entity id.
    pub id: EntityId,
    /// Who asked.
    pub requested_by: UserId,
    /// Request type spelling.
    pub request_type: String,
    /// Target expense or goal.
    pub target_id: EntityId,
    /// Proposed values as JSON (amounts as decimal strings).
    pub request_data: Value,
    /// Note.
    pub message: Option<String>,
    /// Status spelling.
    pub status: String,
    /// Who answered.
    pub responded_by: Option<UserId>,
    /// When.
    pub responded_at: Option<Millis>,
    /// Created.
    pub created_at: Millis,
}

/// A row of `messages`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageRow {
    /// Entity id.
    pub id: EntityId,
    /// Author.
    pub sender_id: UserId,
    /// Text.
    pub text: String,
    /// Type spelling.
    pub message_type: String,
    /// Read by the recipient.
    pub read_by_recipient: bool,
    /// Created.
    pub created_at: Millis,
}

/// One partner's part of a month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributionShare {
    /// The partner.
    pub user_id: UserId,
    /// Their amount.
    pub amount: Decimal,
    /// When they marked it paid.
    pub paid_at: Option<Millis>,
}

/// A row of `contributions` (unique per partnership and month).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContributionRow {
    /// "YYYY-MM".
    pub month: String,
    /// Total required.
    pub total_required: Decimal,
    /// Each partner's share, ordered by user id.
    pub shares: Vec<ContributionShare>,
}

/// A materialized row.
#[derive(Clone, Debug, PartialEq)]
pub enum Row {
    /// `expenses`
    Expense(ExpenseRow),
    /// `goals`
    Goal(GoalRow),
    /// `goal_contributions`
    GoalContribution(GoalContributionRow),
    /// `approval_requests`
    Approval(ApprovalRow),
    /// `messages`
    Message(MessageRow),
    /// `contributions`
    Contribution(ContributionRow),
}

/// What to do to one row.
#[derive(Clone, Debug, PartialEq)]
pub enum RowChange {
    /// Insert or update.
    Upsert(Row),
    /// Delete the row of `collection` with `key` (entity id or month) if present.
    Delete {
        /// Which table.
        collection: Collection,
        /// Its key.
        key: String,
    },
}

/// Rows for the whole document.
#[derive(Clone, Debug, PartialEq)]
pub struct Materialized {
    /// The partnership.
    pub partnership_id: PartnershipId,
    /// Row changes (only upserts for [`all_rows`]).
    pub changes: Vec<RowChange>,
}

fn to_row<R: ReadDoc>(
    doc: &R,
    c: Collection,
    key: &str,
    cur: &Currency,
) -> Result<Option<Row>, ShapeError> {
    match read::entity_obj(doc, c, key)? {
        None => Ok(None),
        Some(obj) => to_row_in(doc, c, key, &obj, cur),
    }
}

fn to_row_in<R: ReadDoc>(
    doc: &R,
    c: Collection,
    key: &str,
    obj: &ObjId,
    cur: &Currency,
) -> Result<Option<Row>, ShapeError> {
    let d = |m: crate::money::MinorUnits| cur.from_minor(m);
    let p = format!("{}.{key}", c.key());
    Ok(Some(match c {
        Collection::Expenses => {
            let e = read::expense_in(doc, key, obj, p)?;
            Row::Expense(ExpenseRow {
                id: e.id,
                name: e.name,
                amount: d(e.amount),
                category: e.category.as_str().into(),
                frequency: e.frequency.as_str().into(),
                added_by: e.added_by,
                status: e.status.as_str().into(),
                created_at: e.created_at,
                updated_at: e.updated_at,
            })
        }
        Collection::Goals => {
            let g = read::goal_in(doc, key, obj, p)?;
            Row::Goal(GoalRow {
                id: g.id,
                name: g.name,
                target_amount: d(g.target_amount),
                saved_amount: d(g.saved_amount),
                goal_type: g.goal_type.as_str().into(),
                priority: g.priority.as_str().into(),
                added_by: g.added_by,
                status: g.status.as_str().into(),
                created_at: g.created_at,
                updated_at: g.updated_at,
            })
        }
        Collection::GoalContributions => {
            let c = read::goal_contribution_in(doc, key, obj, p)?;
            Row::GoalContribution(GoalContributionRow {
                id: c.id,
                goal_id: c.goal_id,
                user_id: c.user_id,
                amount: d(c.amount),
                created_at: c.created_at,
            })
        }
        Collection::Approvals => {
            let a = read::approval_in(doc, key, obj, p)?;
            Row::Approval(ApprovalRow {
                id: a.id,
                requested_by: a.requested_by,
                request_type: a.request_type.as_str().into(),
                target_id: a.target_id,
                request_data: request_data_json(&a.request_data, cur),
                message: a.message,
                status: a.status.as_str().into(),
                responded_by: a.responded_by,
                responded_at: a.responded_at,
                created_at: a.created_at,
            })
        }
        Collection::Messages => {
            let m = read::message_in(doc, key, obj, p)?;
            Row::Message(MessageRow {
                id: m.id,
                sender_id: m.sender_id,
                text: m.text,
                message_type: m.message_type.as_str().into(),
                read_by_recipient: m.read_by_recipient,
                created_at: m.created_at,
            })
        }
        Collection::Contributions => {
            let m = read::month_in(doc, key, obj, p)?;
            let shares = m
                .amounts
                .iter()
                .map(|(u, a)| ContributionShare {
                    user_id: *u,
                    amount: d(*a),
                    paid_at: m.paid.get(u).copied().flatten(),
                })
                .collect();
            Row::Contribution(ContributionRow {
                month: m.month.to_string(),
                total_required: d(m.total_required),
                shares,
            })
        }
        Collection::Members => return Ok(None),
    }))
}

/// `request_data` as JSON: amounts as decimal strings, enums as their spellings.
pub fn request_data_json(data: &RequestData, cur: &Currency) -> Value {
    let mut m = Map::new();
    match data {
        RequestData::Expense(f) => {
            if let Some(v) = &f.name {
                m.insert("name".into(), json!(v));
            }
            if let Some(v) = f.amount {
                m.insert("amount".into(), json!(cur.from_minor(v).to_string()));
            }
            if let Some(v) = f.category {
                m.insert("category".into(), json!(v.as_str()));
            }
            if let Some(v) = f.frequency {
                m.insert("frequency".into(), json!(v.as_str()));
            }
        }
        RequestData::Goal(f) => {
            if let Some(v) = &f.name {
                m.insert("name".into(), json!(v));
            }
            if let Some(v) = f.target_amount {
                m.insert("target_amount".into(), json!(cur.from_minor(v).to_string()));
            }
            if let Some(v) = f.goal_type {
                m.insert("goal_type".into(), json!(v.as_str()));
            }
            if let Some(v) = f.priority {
                m.insert("priority".into(), json!(v.as_str()));
            }
        }
    }
    Value::Object(m)
}

/// Row changes for the entities in `touched`: an upsert for each that exists and is well
/// formed, a delete for each that is gone (or malformed: the relational tables hold only
/// valid rows).
pub fn rows_for<R: ReadDoc>(doc: &R, touched: &Touched) -> Result<Materialized, ShapeError> {
    let info = read::read_partnership(doc)?;
    let mut changes = Vec::new();
    for (c, keys) in &touched.entities {
        if *c == Collection::Members {
            continue;
        }
        for key in keys {
            match to_row(doc, *c, key, &info.currency) {
                Ok(Some(row)) => changes.push(RowChange::Upsert(row)),
                Ok(None) | Err(_) => changes.push(RowChange::Delete {
                    collection: *c,
                    key: key.clone(),
                }),
            }
        }
    }
    Ok(Materialized {
        partnership_id: info.id,
        changes,
    })
}

/// Every row of the document (for rebuilding the tables or checking them).
pub fn all_rows<R: ReadDoc>(doc: &R) -> Result<Materialized, ShapeError> {
    let info = read::read_partnership(doc)?;
    let mut changes = Vec::new();
    for c in Collection::ALL {
        if c == Collection::Members {
            continue;
        }
        for (key, obj) in read::collection_entries(doc, c) {
            let Some(obj) = obj else { continue };
            if let Ok(Some(row)) = to_row_in(doc, c, &key, &obj, &info.currency) {
                changes.push(RowChange::Upsert(row));
            }
        }
    }
    Ok(Materialized {
        partnership_id: info.id,
        changes,
    })
}
