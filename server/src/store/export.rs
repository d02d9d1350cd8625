//! Reads for the data export (`GET /api/export`): the materialized tables of one partnership,
//! page by page, so that an export of a couple with tens of thousands of entries never holds
//! more than one page of rows.
//!
//! Pages are keyset pages on each table's primary key (`(partnership_id, id)`, months by
//! `(partnership_id, month)`): each page is one index range scan, however deep into the table
//! it starts (an offset would rescan every row before it, quadratic over a whole table), and a
//! row written while an export runs never makes another row show twice or go missing. Each page
//! is its own short read, not one transaction for the whole export: an export may take as long
//! as the client takes to download it, and a transaction (a pool connection, and on SQLite the
//! WAL kept from checkpointing) must not be held for that long. A write that commits meanwhile
//! may or may not be in the export.
//!
//! The SQL is written once in [`export_queries!`] (see the store module documentation); rows are
//! decoded by the REST reads' decoders, so an exported row is exactly what the REST API shows.

use uuid::Uuid;

/// A materialized table the export reads, in the order the export writes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportTable {
    /// `expenses`.
    Expenses,
    /// `goals`.
    Goals,
    /// `goal_contributions`: every logged contribution to a goal.
    GoalContributions,
    /// `contributions` with their `contribution_shares`: the months.
    Contributions,
    /// `approval_requests`.
    ApprovalRequests,
    /// `messages`.
    Messages,
}

impl ExportTable {
    /// Every table, in export order.
    pub const ALL: [ExportTable; 6] = [
        ExportTable::Expenses,
        ExportTable::Goals,
        ExportTable::GoalContributions,
        ExportTable::Contributions,
        ExportTable::ApprovalRequests,
        ExportTable::Messages,
    ];

    /// The table's name: its key in the JSON export and its file name (`<name>.csv`) in the CSV
    /// one.
    pub fn name(&self) -> &'static str {
        match self {
            ExportTable::Expenses => "expenses",
            ExportTable::Goals => "goals",
            ExportTable::GoalContributions => "goal_contributions",
            ExportTable::Contributions => "contributions",
            ExportTable::ApprovalRequests => "approval_requests",
            ExportTable::Messages => "messages",
        }
    }
}

/// Where the next page of an export's table starts: after this key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportKey {
    /// After the entity with this id (every table but the months).
    Id(Uuid),
    /// After this month (`YYYY-MM`).
    Month(String),
}

impl ExportKey {
    /// The key of a row, to continue after it.
    pub fn of(row: &splitsave_sync_core::materialize::Row) -> ExportKey {
        use splitsave_sync_core::materialize::Row;
        match row {
            Row::Expense(r) => ExportKey::Id(r.id.0),
            Row::Goal(r) => ExportKey::Id(r.id.0),
            Row::GoalContribution(r) => ExportKey::Id(r.id.0),
            Row::Approval(r) => ExportKey::Id(r.id.0),
            Row::Message(r) => ExportKey::Id(r.id.0),
            Row::Contribution(r) => ExportKey::Month(r.month.clone()),
        }
    }
}

/// Generates `export_page` for one backend, taking the pool; expanded in the backend's `export`
/// module, whose parent provides the backend's glue.
macro_rules! export_queries {
    () => {
        use splitsave_sync_core::ids::{EntityId, UserId};
        use splitsave_sync_core::materialize::{GoalContributionRow, Row};
        use sqlx::Row as _;
        use uuid::Uuid;

        use super::approvals_messages::{
            approval_row, message_row, APPROVAL_COLUMNS, MESSAGE_COLUMNS,
        };
        use super::reads::{
            expense_row, goal_row, month_rows, time_column, EXPENSE_COLUMNS, GOAL_COLUMNS,
        };
        use super::{read_money, Db};
        use $crate::store::sync::{at_scale, currency_scale};
        use $crate::store::{ExportKey, ExportTable, StoreError, StoreResult};

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        const GOAL_CONTRIBUTION_COLUMNS: &str = "id, goal_id, user_id, amount, created_at";

        /// See `Store::export_page`.
        pub(in $crate::store) async fn export_page(
            pool: &Pool,
            pid: Uuid,
            table: ExportTable,
            after: Option<&ExportKey>,
            limit: u32,
        ) -> StoreResult<Vec<Row>> {
            let currency: Option<String> =
                sqlx::query_scalar("SELECT currency FROM partnerships WHERE id = $1")
                    .bind(pid)
                    .fetch_optional(pool)
                    .await?;
            let scale = currency_scale(currency.as_deref());
            let limit = i64::from(limit);
            type Decode = fn(&DbRow, Option<u32>) -> StoreResult<Row>;
            let (columns, name, decode): (&str, &str, Decode) = match table {
                ExportTable::Contributions => {
                    return months_page(pool, pid, after, limit, scale).await;
                }
                ExportTable::Expenses => (EXPENSE_COLUMNS, "expenses", |r, scale| {
                    Ok(Row::Expense(expense_row(r, scale)?))
                }),
                ExportTable::Goals => (GOAL_COLUMNS, "goals", |r, scale| {
                    Ok(Row::Goal(goal_row(r, scale)?))
                }),
                ExportTable::GoalContributions => (
                    GOAL_CONTRIBUTION_COLUMNS,
                    "goal_contributions",
                    |r, scale| Ok(Row::GoalContribution(goal_contribution_row(r, scale)?)),
                ),
                ExportTable::ApprovalRequests => (APPROVAL_COLUMNS, "approval_requests", |r, _| {
                    Ok(Row::Approval(approval_row(r)?))
                }),
                ExportTable::Messages => (MESSAGE_COLUMNS, "messages", |r, _| {
                    Ok(Row::Message(message_row(r)?))
                }),
            };
            let rows = match after {
                None => {
                    sqlx::query(&format!(
                        "SELECT {columns} FROM {name} WHERE partnership_id = $1 \
                         ORDER BY id LIMIT $2"
                    ))
                    .bind(pid)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
                Some(ExportKey::Id(id)) => {
                    sqlx::query(&format!(
                        "SELECT {columns} FROM {name} WHERE partnership_id = $1 AND id > $2 \
                         ORDER BY id LIMIT $3"
                    ))
                    .bind(pid)
                    .bind(*id)
                    .bind(limit)
                    .fetch_all(pool)
                    .await?
                }
                Some(ExportKey::Month(_)) => {
                    return Err(StoreError::Corrupt(format!(
                        "a month cannot continue the {name} table"
                    )));
                }
            };
            rows.iter().map(|r| decode(r, scale)).collect()
        }

        /// One page of months, oldest first, each with its shares.
        async fn months_page(
            pool: &Pool,
            pid: Uuid,
            after: Option<&ExportKey>,
            limit: i64,
            scale: Option<u32>,
        ) -> StoreResult<Vec<Row>> {
            let after = match after {
                None => "",
                Some(ExportKey::Month(month)) => month.as_str(),
                Some(ExportKey::Id(_)) => {
                    return Err(StoreError::Corrupt(
                        "an id cannot continue the months".into(),
                    ));
                }
            };
            // Every `YYYY-MM` sorts after the empty string.
            let rows = sqlx::query(
                "SELECT month, total_required FROM contributions \
                 WHERE partnership_id = $1 AND month > $2 ORDER BY month LIMIT $3",
            )
            .bind(pid)
            .bind(after)
            .bind(limit)
            .fetch_all(pool)
            .await?;
            let months = month_rows(pool, pid, &rows, scale).await?;
            Ok(months.into_iter().map(Row::Contribution).collect())
        }

        fn goal_contribution_row(
            r: &DbRow,
            scale: Option<u32>,
        ) -> StoreResult<GoalContributionRow> {
            Ok(GoalContributionRow {
                id: EntityId(r.try_get("id")?),
                goal_id: EntityId(r.try_get("goal_id")?),
                user_id: UserId(r.try_get("user_id")?),
                amount: at_scale(read_money(r, "amount")?, scale),
                created_at: time_column(r, "created_at")?,
            })
        }
    };
}

pub(super) use export_queries;
