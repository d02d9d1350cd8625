//! REST reads of the materialized tables (expenses, goals, monthly contributions), scoped by
//! partnership so another couple's ids find nothing. The SQL is written once in
//! [`read_queries!`] (see the store module documentation); only how an amount column is read
//! differs (the backend's `read_money`). Amounts come back at the partnership currency's scale,
//! exactly as `Store::materialized_rows` gives them (which decodes its rows with these).

/// Generates `list_expenses`, `expense`, `list_goals`, `goal`, `list_contributions` and
/// `contribution` for one backend, each taking the pool, and the row decoders the sync reads
/// share; expanded in the backend's `reads` module, whose parent provides the backend's glue.
macro_rules! read_queries {
    () => {
        use chrono::{DateTime, Utc};
        use splitsave_sync_core::enums::{Category, ItemStatus};
        use splitsave_sync_core::ids::{EntityId, UserId};
        use splitsave_sync_core::materialize::{
            ContributionRow, ContributionShare, ExpenseRow, GoalRow,
        };
        use splitsave_sync_core::time::Millis;
        use sqlx::Row as _;
        use uuid::Uuid;

        use super::{read_money, Db};
        use $crate::store::sync::{at_scale, currency_scale, millis_of};
        use $crate::store::StoreResult;

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        pub(super) const EXPENSE_COLUMNS: &str =
            "id, name, amount, category, frequency, added_by, status, \
                                       created_at, updated_at";
        pub(super) const GOAL_COLUMNS: &str =
            "id, name, target_amount, saved_amount, goal_type, priority, \
                                    added_by, status, created_at, updated_at";

        /// The scale of the partnership's amounts (its currency's decimals).
        async fn scale_of(pool: &Pool, pid: Uuid) -> StoreResult<Option<u32>> {
            let currency: Option<String> =
                sqlx::query_scalar("SELECT currency FROM partnerships WHERE id = $1")
                    .bind(pid)
                    .fetch_optional(pool)
                    .await?;
            Ok(currency_scale(currency.as_deref()))
        }

        pub(super) fn time_column(row: &DbRow, column: &str) -> StoreResult<Millis> {
            Ok(millis_of(row.try_get::<DateTime<Utc>, _>(column)?))
        }

        fn limit_offset(limit: u32, offset: u64) -> (i64, i64) {
            (i64::from(limit), i64::try_from(offset).unwrap_or(i64::MAX))
        }

        pub(super) fn expense_row(row: &DbRow, scale: Option<u32>) -> StoreResult<ExpenseRow> {
            Ok(ExpenseRow {
                id: EntityId(row.try_get("id")?),
                name: row.try_get("name")?,
                amount: at_scale(read_money(row, "amount")?, scale),
                category: row.try_get("category")?,
                frequency: row.try_get("frequency")?,
                added_by: UserId(row.try_get("added_by")?),
                status: row.try_get("status")?,
                created_at: time_column(row, "created_at")?,
                updated_at: time_column(row, "updated_at")?,
            })
        }

        pub(super) fn goal_row(row: &DbRow, scale: Option<u32>) -> StoreResult<GoalRow> {
            Ok(GoalRow {
                id: EntityId(row.try_get("id")?),
                name: row.try_get("name")?,
                target_amount: at_scale(read_money(row, "target_amount")?, scale),
                saved_amount: at_scale(read_money(row, "saved_amount")?, scale),
                goal_type: row.try_get("goal_type")?,
                priority: row.try_get("priority")?,
                added_by: UserId(row.try_get("added_by")?),
                status: row.try_get("status")?,
                created_at: time_column(row, "created_at")?,
                updated_at: time_column(row, "updated_at")?,
            })
        }

        /// See `Store::list_expenses`. A missing filter matches everything (the bound NULL).
        pub(in $crate::store) async fn list_expenses(
            pool: &Pool,
            pid: Uuid,
            status: Option<ItemStatus>,
            category: Option<Category>,
            limit: u32,
            offset: u64,
        ) -> StoreResult<Vec<ExpenseRow>> {
            let scale = scale_of(pool, pid).await?;
            let (limit, offset) = limit_offset(limit, offset);
            let rows = sqlx::query(&format!(
                "SELECT {EXPENSE_COLUMNS} FROM expenses WHERE partnership_id = $1 \
                 AND ($2 IS NULL OR status = $2) AND ($3 IS NULL OR category = $3) \
                 ORDER BY created_at DESC, id LIMIT $4 OFFSET $5"
            ))
            .bind(pid)
            .bind(status.map(|s| s.as_str()))
            .bind(category.map(|c| c.as_str()))
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| expense_row(r, scale)).collect()
        }

        /// See `Store::expense`.
        pub(in $crate::store) async fn expense(
            pool: &Pool,
            pid: Uuid,
            id: Uuid,
        ) -> StoreResult<Option<ExpenseRow>> {
            let scale = scale_of(pool, pid).await?;
            let row = sqlx::query(&format!(
                "SELECT {EXPENSE_COLUMNS} FROM expenses WHERE partnership_id = $1 AND id = $2"
            ))
            .bind(pid)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| expense_row(r, scale)).transpose()
        }

        /// See `Store::list_goals`.
        pub(in $crate::store) async fn list_goals(
            pool: &Pool,
            pid: Uuid,
            status: Option<ItemStatus>,
            limit: u32,
            offset: u64,
        ) -> StoreResult<Vec<GoalRow>> {
            let scale = scale_of(pool, pid).await?;
            let (limit, offset) = limit_offset(limit, offset);
            let rows = sqlx::query(&format!(
                "SELECT {GOAL_COLUMNS} FROM goals WHERE partnership_id = $1 \
                 AND ($2 IS NULL OR status = $2) \
                 ORDER BY created_at DESC, id LIMIT $3 OFFSET $4"
            ))
            .bind(pid)
            .bind(status.map(|s| s.as_str()))
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            rows.iter().map(|r| goal_row(r, scale)).collect()
        }

        /// See `Store::goal`.
        pub(in $crate::store) async fn goal(
            pool: &Pool,
            pid: Uuid,
            id: Uuid,
        ) -> StoreResult<Option<GoalRow>> {
            let scale = scale_of(pool, pid).await?;
            let row = sqlx::query(&format!(
                "SELECT {GOAL_COLUMNS} FROM goals WHERE partnership_id = $1 AND id = $2"
            ))
            .bind(pid)
            .bind(id)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(|r| goal_row(r, scale)).transpose()
        }

        /// One row of `contribution_shares` (`month, user_id, amount, paid_at`): its month and
        /// the share.
        pub(super) fn share_row(
            row: &DbRow,
            scale: Option<u32>,
        ) -> StoreResult<(String, ContributionShare)> {
            let share = ContributionShare {
                user_id: UserId(row.try_get("user_id")?),
                amount: at_scale(read_money(row, "amount")?, scale),
                paid_at: row
                    .try_get::<Option<DateTime<Utc>>, _>("paid_at")?
                    .map(millis_of),
            };
            Ok((row.try_get("month")?, share))
        }

        /// Rows of `contributions` (`month`, `total_required`) with their shares, in the order
        /// given: the listing's pages and the export's.
        pub(super) async fn month_rows(
            pool: &Pool,
            pid: Uuid,
            rows: &[<Db as sqlx::Database>::Row],
            scale: Option<u32>,
        ) -> StoreResult<Vec<ContributionRow>> {
            let months = rows
                .iter()
                .map(|r| r.try_get::<String, _>("month"))
                .collect::<Result<Vec<_>, _>>()?;
            let mut shares = shares_of(pool, pid, &months, scale).await?;
            rows.iter()
                .zip(months)
                .map(|(row, month)| {
                    Ok(ContributionRow {
                        total_required: at_scale(read_money(row, "total_required")?, scale),
                        shares: shares.remove(&month).unwrap_or_default(),
                        month,
                    })
                })
                .collect()
        }

        /// The shares of the given months, each month's ordered by user id.
        async fn shares_of(
            pool: &Pool,
            pid: Uuid,
            months: &[String],
            scale: Option<u32>,
        ) -> StoreResult<std::collections::BTreeMap<String, Vec<ContributionShare>>> {
            let mut by_month = std::collections::BTreeMap::new();
            let (Some(first), Some(last)) = (months.iter().min(), months.iter().max()) else {
                return Ok(by_month);
            };
            let rows = sqlx::query(
                "SELECT month, user_id, amount, paid_at FROM contribution_shares \
                 WHERE partnership_id = $1 AND month >= $2 AND month <= $3 \
                 ORDER BY month, user_id",
            )
            .bind(pid)
            .bind(first)
            .bind(last)
            .fetch_all(pool)
            .await?;
            for row in &rows {
                let (month, share) = share_row(row, scale)?;
                by_month.entry(month).or_insert_with(Vec::new).push(share);
            }
            for shares in by_month.values_mut() {
                shares.sort_by_key(|s: &ContributionShare| s.user_id);
            }
            Ok(by_month)
        }

        /// See `Store::list_contributions`.
        pub(in $crate::store) async fn list_contributions(
            pool: &Pool,
            pid: Uuid,
            limit: u32,
            offset: u64,
        ) -> StoreResult<Vec<ContributionRow>> {
            let scale = scale_of(pool, pid).await?;
            let (limit, offset) = limit_offset(limit, offset);
            let rows = sqlx::query(
                "SELECT month, total_required FROM contributions WHERE partnership_id = $1 \
                 ORDER BY month DESC LIMIT $2 OFFSET $3",
            )
            .bind(pid)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await?;
            month_rows(pool, pid, &rows, scale).await
        }

        /// See `Store::contribution`.
        pub(in $crate::store) async fn contribution(
            pool: &Pool,
            pid: Uuid,
            month: &str,
        ) -> StoreResult<Option<ContributionRow>> {
            let scale = scale_of(pool, pid).await?;
            let row = sqlx::query(
                "SELECT month, total_required FROM contributions \
                 WHERE partnership_id = $1 AND month = $2",
            )
            .bind(pid)
            .bind(month)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let months = vec![month.to_string()];
            let mut shares = shares_of(pool, pid, &months, scale).await?;
            Ok(Some(ContributionRow {
                month: month.to_string(),
                total_required: at_scale(read_money(&row, "total_required")?, scale),
                shares: shares.remove(month).unwrap_or_default(),
            }))
        }
    };
}

pub(super) use read_queries;
