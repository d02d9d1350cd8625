//! A partnership's stored rows against its document's materialization, row by row and field by
//! field: a report names the table, the row and the field that differ, with both values, so an
//! operator can see what a user saw wrong before the rows are rebuilt.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, SecondsFormat};
use rust_decimal::Decimal;
use splitsave_sync_core::materialize::{Row, RowChange};
use splitsave_sync_core::time::Millis;
use uuid::Uuid;

use crate::store::stored_millis;

/// One way a stored row differs from the document's.
#[derive(Clone, Debug, PartialEq)]
pub struct Difference {
    /// The table (`contributions` includes its `contribution_shares`).
    pub table: &'static str,
    /// The row's id, or the month of a contribution.
    pub key: String,
    /// What differs.
    pub what: What,
}

/// What differs in one row.
#[derive(Clone, Debug, PartialEq)]
pub enum What {
    /// The document has the row; the table does not.
    Missing,
    /// The table has a row the document does not.
    Stray,
    /// Both have the row; this field differs.
    Field {
        /// The column (for a contribution share: `share <user id> <column>`).
        field: String,
        /// The table's value.
        stored: Value,
        /// The document's.
        expected: Value,
    },
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: ", self.table, self.key)?;
        match &self.what {
            What::Missing => f.write_str("missing row (the document has it)"),
            What::Stray => f.write_str("stray row (the document does not have it)"),
            What::Field {
                field,
                stored,
                expected,
            } => write!(f, "{field}: stored {stored}, expected {expected}"),
        }
    }
}

/// A field's value, compared as its type compares (`12.5` equals `12.50`) and shown as an
/// operator reads it.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// NULL, or a share the month does not have.
    Absent,
    /// Text.
    Text(String),
    /// An amount.
    Money(Decimal),
    /// A time, as the store keeps it.
    Time(Millis),
    /// An id.
    Id(Uuid),
    /// A flag.
    Flag(bool),
    /// JSON (an approval's proposed values).
    Json(serde_json::Value),
}

impl Value {
    /// A document time as the store would hold it: times outside years 1..=9999 are clamped
    /// when stored, and that is not a difference.
    fn time(millis: Millis) -> Value {
        Value::Time(stored_millis(millis))
    }

    fn optional<T>(value: Option<T>, make: impl FnOnce(T) -> Value) -> Value {
        value.map_or(Value::Absent, make)
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Absent => f.write_str("(none)"),
            Value::Text(text) => write!(f, "{text:?}"),
            Value::Money(amount) => write!(f, "{amount}"),
            Value::Time(millis) => match DateTime::from_timestamp_millis(millis.0) {
                Some(time) => f.write_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true)),
                None => write!(f, "{} ms", millis.0),
            },
            Value::Id(id) => write!(f, "{id}"),
            Value::Flag(flag) => write!(f, "{flag}"),
            Value::Json(json) => write!(f, "{json}"),
        }
    }
}

/// The tables in the order reports list them.
const TABLES: [&str; 6] = [
    "expenses",
    "goals",
    "goal_contributions",
    "approval_requests",
    "messages",
    "contributions",
];

/// A row's table (as its index in [`TABLES`]) and key.
fn identify(row: &Row) -> (usize, String) {
    match row {
        Row::Expense(r) => (0, r.id.to_string()),
        Row::Goal(r) => (1, r.id.to_string()),
        Row::GoalContribution(r) => (2, r.id.to_string()),
        Row::Approval(r) => (3, r.id.to_string()),
        Row::Message(r) => (4, r.id.to_string()),
        Row::Contribution(r) => (5, r.month.clone()),
    }
}

/// A row's fields but its key, by column name.
fn fields(row: &Row) -> BTreeMap<String, Value> {
    let text = |s: &str| Value::Text(s.to_owned());
    let pairs: Vec<(String, Value)> = match row {
        Row::Expense(r) => vec![
            ("name".into(), text(&r.name)),
            ("amount".into(), Value::Money(r.amount)),
            ("category".into(), text(&r.category)),
            ("frequency".into(), text(&r.frequency)),
            ("added_by".into(), Value::Id(r.added_by.0)),
            ("status".into(), text(&r.status)),
            ("created_at".into(), Value::time(r.created_at)),
            ("updated_at".into(), Value::time(r.updated_at)),
        ],
        Row::Goal(r) => vec![
            ("name".into(), text(&r.name)),
            ("target_amount".into(), Value::Money(r.target_amount)),
            ("saved_amount".into(), Value::Money(r.saved_amount)),
            ("goal_type".into(), text(&r.goal_type)),
            ("priority".into(), text(&r.priority)),
            ("added_by".into(), Value::Id(r.added_by.0)),
            ("status".into(), text(&r.status)),
            ("created_at".into(), Value::time(r.created_at)),
            ("updated_at".into(), Value::time(r.updated_at)),
        ],
        Row::GoalContribution(r) => vec![
            ("goal_id".into(), Value::Id(r.goal_id.0)),
            ("user_id".into(), Value::Id(r.user_id.0)),
            ("amount".into(), Value::Money(r.amount)),
            ("created_at".into(), Value::time(r.created_at)),
        ],
        Row::Approval(r) => vec![
            ("requested_by".into(), Value::Id(r.requested_by.0)),
            ("request_type".into(), text(&r.request_type)),
            ("target_id".into(), Value::Id(r.target_id.0)),
            ("request_data".into(), Value::Json(r.request_data.clone())),
            (
                "message".into(),
                Value::optional(r.message.as_deref(), text),
            ),
            ("status".into(), text(&r.status)),
            (
                "responded_by".into(),
                Value::optional(r.responded_by, |u| Value::Id(u.0)),
            ),
            (
                "responded_at".into(),
                Value::optional(r.responded_at, Value::time),
            ),
            ("created_at".into(), Value::time(r.created_at)),
        ],
        Row::Message(r) => vec![
            ("sender_id".into(), Value::Id(r.sender_id.0)),
            ("text".into(), text(&r.text)),
            ("message_type".into(), text(&r.message_type)),
            ("read_by_recipient".into(), Value::Flag(r.read_by_recipient)),
            ("created_at".into(), Value::time(r.created_at)),
        ],
        Row::Contribution(r) => {
            let mut pairs = vec![("total_required".into(), Value::Money(r.total_required))];
            for share in &r.shares {
                let who = share.user_id;
                pairs.push((format!("share {who} amount"), Value::Money(share.amount)));
                pairs.push((
                    format!("share {who} paid_at"),
                    Value::optional(share.paid_at, Value::time),
                ));
            }
            pairs
        }
    };
    pairs.into_iter().collect()
}

/// The upserts of `changes` by table and key (deletes name no row to compare).
fn by_key(changes: &[RowChange]) -> BTreeMap<(usize, String), &Row> {
    changes
        .iter()
        .filter_map(|change| match change {
            RowChange::Upsert(row) => Some((identify(row), row)),
            RowChange::Delete { .. } => None,
        })
        .collect()
}

/// Every difference between the stored rows and the expected ones, by table, then key, then
/// field. Empty when the tables hold exactly what materializing the document writes.
pub fn compare(stored: &[RowChange], expected: &[RowChange]) -> Vec<Difference> {
    let stored = by_key(stored);
    let expected = by_key(expected);
    let mut keys: Vec<&(usize, String)> = stored.keys().chain(expected.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut differences = Vec::new();
    for key in keys {
        let (table, id) = (TABLES[key.0], &key.1);
        let difference = |what| Difference {
            table,
            key: id.clone(),
            what,
        };
        match (stored.get(key), expected.get(key)) {
            (None, Some(_)) => differences.push(difference(What::Missing)),
            (Some(_), None) => differences.push(difference(What::Stray)),
            (Some(stored), Some(expected)) => {
                let stored = fields(stored);
                let expected = fields(expected);
                let mut names: Vec<&String> = stored.keys().chain(expected.keys()).collect();
                names.sort();
                names.dedup();
                for name in names {
                    let left = stored.get(name).cloned().unwrap_or(Value::Absent);
                    let right = expected.get(name).cloned().unwrap_or(Value::Absent);
                    if left != right {
                        differences.push(difference(What::Field {
                            field: name.clone(),
                            stored: left,
                            expected: right,
                        }));
                    }
                }
            }
            (None, None) => {}
        }
    }
    differences
}

/// How many rows the differences touch (a row with three wrong fields counts once).
pub fn rows_touched(differences: &[Difference]) -> usize {
    let mut rows: Vec<(&str, &str)> = differences
        .iter()
        .map(|d| (d.table, d.key.as_str()))
        .collect();
    rows.sort_unstable();
    rows.dedup();
    rows.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use splitsave_sync_core::ids::{EntityId, UserId};
    use splitsave_sync_core::materialize::{ContributionRow, ContributionShare, ExpenseRow};

    fn expense(amount: &str) -> RowChange {
        RowChange::Upsert(Row::Expense(ExpenseRow {
            id: EntityId(Uuid::from_u128(7)),
            name: "Rent".into(),
            amount: amount.parse().expect("decimal"),
            category: "housing".into(),
            frequency: "monthly".into(),
            added_by: UserId(Uuid::from_u128(1)),
            status: "active".into(),
            created_at: Millis(1_700_000_000_000),
            updated_at: Millis(1_700_000_000_000),
        }))
    }

    fn month(shares: &[(u128, &str)]) -> RowChange {
        RowChange::Upsert(Row::Contribution(ContributionRow {
            month: "2026-03".into(),
            total_required: "100.00".parse().expect("decimal"),
            shares: shares
                .iter()
                .map(|(user, amount)| ContributionShare {
                    user_id: UserId(Uuid::from_u128(*user)),
                    amount: amount.parse().expect("decimal"),
                    paid_at: None,
                })
                .collect(),
        }))
    }

    #[test]
    fn equal_amounts_at_another_scale_are_no_difference() {
        assert!(compare(&[expense("12.5")], &[expense("12.50")]).is_empty());
    }

    #[test]
    fn a_changed_amount_is_named_with_both_values() {
        let differences = compare(&[expense("999.00")], &[expense("12.50")]);
        let lines: Vec<String> = differences.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [format!(
                "expenses {}: amount: stored 999.00, expected 12.50",
                Uuid::from_u128(7)
            )]
        );
        assert_eq!(rows_touched(&differences), 1);
    }

    #[test]
    fn missing_and_stray_rows_are_told_apart() {
        let missing = compare(&[], &[expense("1.00")]);
        assert_eq!(missing[0].what, What::Missing);
        let stray = compare(&[expense("1.00")], &[]);
        assert_eq!(stray[0].what, What::Stray);
    }

    #[test]
    fn a_missing_share_names_the_partner() {
        let stored = [month(&[(1, "60.00")])];
        let expected = [month(&[(1, "60.00"), (2, "40.00")])];
        let lines: Vec<String> = compare(&stored, &expected)
            .iter()
            .map(ToString::to_string)
            .collect();
        let partner = Uuid::from_u128(2);
        // An unpaid share and a missing one both have no paid_at: only the amount differs.
        assert_eq!(
            lines,
            [format!(
                "contributions 2026-03: share {partner} amount: stored (none), expected 40.00"
            )]
        );
    }
}
