//! What the two backends share for sync storage: the value conversions between sync-core's rows
//! and the columns, and the SQL itself, written once in [`sync_backend!`] so that PostgreSQL
//! and SQLite cannot drift apart. Each backend instantiates the macro with the few things that
//! really differ: how money is bound and read (NUMERIC against decimal TEXT) and how
//! transactions begin.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use splitsave_sync_core::money::Currency;
use splitsave_sync_core::time::Millis;

use super::StoreError;

/// 0001-01-01T00:00:00Z: the earliest time both backends store and read back exactly.
const MIN_MILLIS: i64 = -62_135_596_800_000;
/// 9999-12-31T23:59:59.999Z: the latest one (RFC 3339 in SQLite has four-digit years).
const MAX_MILLIS: i64 = 253_402_300_799_999;

/// A document time as a column value. Times outside years 1..=9999 (only a faulty or hostile
/// client writes them) are clamped: refusing the row would make the merge impossible to commit.
pub(super) fn time_of(millis: Millis) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(millis.0.clamp(MIN_MILLIS, MAX_MILLIS)).unwrap_or_default()
}

/// A column time as document milliseconds.
pub(super) fn millis_of(time: DateTime<Utc>) -> Millis {
    Millis(time.timestamp_millis())
}

/// The number of decimals amounts of this partnership have (`None` for a code sync-core does
/// not know, whose amounts are then read as stored).
pub(super) fn currency_scale(code: Option<&str>) -> Option<u32> {
    code.and_then(|c| Currency::parse(c).ok())
        .map(|c| c.exponent())
}

/// An amount read back at the currency's scale, as sync-core writes it (PostgreSQL returns a
/// stored `0.00` as `0`). Extra decimals, if any were stored, are kept, never rounded.
pub(super) fn at_scale(mut amount: Decimal, scale: Option<u32>) -> Decimal {
    if let Some(scale) = scale {
        if amount.scale() < scale {
            amount.rescale(scale);
        }
    }
    amount
}

/// Parses an amount stored as decimal text.
pub(super) fn decimal_text(text: &str, column: &str) -> Result<Decimal, StoreError> {
    text.parse()
        .map_err(|e| StoreError::Corrupt(format!("{column} {text:?}: {e}")))
}

/// A database error, with a missing partnership or user (foreign key) as `NotFound`.
pub(super) fn write_error(err: sqlx::Error) -> StoreError {
    if err
        .as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
    {
        StoreError::NotFound
    } else {
        StoreError::Database(err)
    }
}

/// Generates the sync storage functions of one backend (see the module documentation):
/// `write_merge` (one merge's writes in the caller's transaction: each backend runs merge
/// commits its own way), and `replace_materialized`, `materialized_rows`, `save_sync_state`,
/// `load_sync_state`, `server_storage_id` and `document_change_count`, each taking the pool.
///
/// - `db`: the sqlx database type;
/// - `money`: `fn(Decimal) -> T`, the bound value of an amount;
/// - `read_money`: `fn(&Row, &str) -> StoreResult<Decimal>`, an amount column read back;
/// - `begin_write` / `begin_read`: `async fn(&Pool) -> Result<Transaction, sqlx::Error>`.
macro_rules! sync_backend {
    (
        db: $db:ty,
        money: $money:path,
        read_money: $read_money:path,
        begin_write: $begin_write:path,
        begin_read: $begin_read:path $(,)?
    ) => {
        use chrono::{DateTime, Utc};
        use splitsave_sync_core::ids::{EntityId, UserId};
        use splitsave_sync_core::materialize::{
            ApprovalRow, ContributionRow, ContributionShare, ExpenseRow, GoalContributionRow,
            GoalRow, MessageRow, Row, RowChange,
        };
        use splitsave_sync_core::schema::Collection;
        use sqlx::types::Json;
        use sqlx::{Row as _, Transaction};
        use uuid::Uuid;

        use $crate::store::sync_rows::{
            at_scale, currency_scale, millis_of, time_of, write_error,
        };
        use $crate::store::{MergeCommit, NewChange, StoreError, StoreResult};

        type Tx<'c> = Transaction<'c, $db>;
        type Pool = sqlx::Pool<$db>;

        /// One merge's writes inside the caller's transaction; how many changes were new.
        pub(super) async fn write_merge(
            tx: &mut Tx<'_>,
            partnership_id: Uuid,
            commit: &MergeCommit,
            now: DateTime<Utc>,
        ) -> StoreResult<u64> {
            for (actor, user_id) in &commit.bindings {
                bind_actor(tx, partnership_id, actor, *user_id, now).await?;
            }
            let mut inserted = 0;
            for change in &commit.changes {
                inserted += insert_change(tx, partnership_id, change, now).await?;
            }
            for row in &commit.rows {
                apply_row(tx, partnership_id, row, now).await?;
            }
            Ok(inserted)
        }

        /// See `Store::replace_materialized`.
        pub(super) async fn replace_materialized(
            pool: &Pool,
            partnership_id: Uuid,
            rows: Vec<RowChange>,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let mut tx = $begin_write(pool).await?;
            // Shares first: they reference their month.
            for table in [
                "contribution_shares",
                "contributions",
                "expenses",
                "goals",
                "goal_contributions",
                "approval_requests",
                "messages",
            ] {
                sqlx::query(&format!("DELETE FROM {table} WHERE partnership_id = $1"))
                    .bind(partnership_id)
                    .execute(&mut *tx)
                    .await?;
            }
            for row in rows.iter().filter(|r| matches!(r, RowChange::Upsert(_))) {
                apply_row(&mut tx, partnership_id, row, now).await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// See `Store::materialized_rows`.
        pub(super) async fn materialized_rows(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<Vec<RowChange>> {
            let mut tx = $begin_read(pool).await?;
            let currency: Option<String> =
                sqlx::query_scalar("SELECT currency FROM partnerships WHERE id = $1")
                    .bind(partnership_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let scale = currency_scale(currency.as_deref());
            let mut rows = Vec::new();
            read_expenses(&mut tx, partnership_id, scale, &mut rows).await?;
            read_goals(&mut tx, partnership_id, scale, &mut rows).await?;
            read_goal_contributions(&mut tx, partnership_id, scale, &mut rows).await?;
            read_approvals(&mut tx, partnership_id, &mut rows).await?;
            read_messages(&mut tx, partnership_id, &mut rows).await?;
            read_contributions(&mut tx, partnership_id, scale, &mut rows).await?;
            tx.commit().await?;
            Ok(rows.into_iter().map(RowChange::Upsert).collect())
        }

        /// See `Store::save_sync_state`.
        pub(super) async fn save_sync_state(
            pool: &Pool,
            partnership_id: Uuid,
            user_id: Uuid,
            peer_storage_id: &str,
            state: &[u8],
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO sync_states (partnership_id, user_id, peer_storage_id, state, updated_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (partnership_id, user_id, peer_storage_id) \
                 DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
            )
            .bind(partnership_id)
            .bind(user_id)
            .bind(peer_storage_id)
            .bind(state)
            .bind(now)
            .execute(pool)
            .await
            .map_err(write_error)?;
            Ok(())
        }

        /// See `Store::load_sync_state`.
        pub(super) async fn load_sync_state(
            pool: &Pool,
            partnership_id: Uuid,
            user_id: Uuid,
            peer_storage_id: &str,
        ) -> StoreResult<Option<Vec<u8>>> {
            Ok(sqlx::query_scalar(
                "SELECT state FROM sync_states \
                 WHERE partnership_id = $1 AND user_id = $2 AND peer_storage_id = $3",
            )
            .bind(partnership_id)
            .bind(user_id)
            .bind(peer_storage_id)
            .fetch_optional(pool)
            .await?)
        }

        /// See `Store::server_storage_id`. The first writer wins; everyone reads its value.
        pub(super) async fn server_storage_id(pool: &Pool) -> StoreResult<String> {
            sqlx::query(
                "INSERT INTO server_meta (key, value) VALUES ('storage_id', $1) \
                 ON CONFLICT (key) DO NOTHING",
            )
            .bind(Uuid::new_v4().hyphenated().to_string())
            .execute(pool)
            .await?;
            Ok(
                sqlx::query_scalar("SELECT value FROM server_meta WHERE key = 'storage_id'")
                    .fetch_one(pool)
                    .await?,
            )
        }

        /// See `Store::document_change_count`.
        pub(super) async fn document_change_count(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<i64> {
            Ok(
                sqlx::query_scalar("SELECT COUNT(*) FROM doc_changes WHERE partnership_id = $1")
                    .bind(partnership_id)
                    .fetch_one(pool)
                    .await?,
            )
        }

        /// Binds an actor to a member inside the merge's transaction (the rules of
        /// `Store::bind_actor`).
        async fn bind_actor(
            tx: &mut Tx<'_>,
            partnership_id: Uuid,
            actor: &str,
            user_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let actor = actor.to_ascii_lowercase();
            sqlx::query(
                "INSERT INTO actor_bindings (partnership_id, actor_id, user_id, created_at) \
                 SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM partnerships WHERE id = $1 \
                 AND (user1_id = $3 OR user2_id = $3)) \
                 ON CONFLICT (partnership_id, actor_id) DO NOTHING",
            )
            .bind(partnership_id)
            .bind(&actor)
            .bind(user_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
            let owner: Option<Uuid> = sqlx::query_scalar(
                "SELECT user_id FROM actor_bindings WHERE partnership_id = $1 AND actor_id = $2",
            )
            .bind(partnership_id)
            .bind(&actor)
            .fetch_optional(&mut **tx)
            .await?;
            match owner {
                Some(owner) if owner == user_id => Ok(()),
                Some(_) => Err(StoreError::Conflict("actor_bound")),
                None => Err(StoreError::NotFound),
            }
        }

        /// Stores one change unless its hash is already stored; 1 when it was new.
        async fn insert_change(
            tx: &mut Tx<'_>,
            partnership_id: Uuid,
            change: &NewChange,
            now: DateTime<Utc>,
        ) -> StoreResult<u64> {
            Ok(sqlx::query(
                "INSERT INTO doc_changes (partnership_id, hash, actor, seq, user_id, bytes, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (partnership_id, hash) DO NOTHING",
            )
            .bind(partnership_id)
            .bind(&change.hash)
            .bind(&change.actor)
            .bind(change.seq)
            .bind(change.user_id)
            .bind(&change.bytes)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(write_error)?
            .rows_affected())
        }

        /// Applies one row change; `now` stamps a month's `updated_at` (the document keeps no
        /// such time).
        async fn apply_row(
            tx: &mut Tx<'_>,
            pid: Uuid,
            change: &RowChange,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            match change {
                RowChange::Upsert(Row::Expense(r)) => {
                    sqlx::query(
                        "INSERT INTO expenses (partnership_id, id, name, amount, category, frequency, \
                         added_by, status, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                         ON CONFLICT (partnership_id, id) DO UPDATE SET name = excluded.name, \
                         amount = excluded.amount, category = excluded.category, \
                         frequency = excluded.frequency, added_by = excluded.added_by, \
                         status = excluded.status, created_at = excluded.created_at, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(&r.name)
                    .bind($money(r.amount))
                    .bind(&r.category)
                    .bind(&r.frequency)
                    .bind(r.added_by.0)
                    .bind(&r.status)
                    .bind(time_of(r.created_at))
                    .bind(time_of(r.updated_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?;
                }
                RowChange::Upsert(Row::Goal(r)) => {
                    sqlx::query(
                        "INSERT INTO goals (partnership_id, id, name, target_amount, saved_amount, \
                         goal_type, priority, added_by, status, created_at, updated_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (partnership_id, id) DO UPDATE SET name = excluded.name, \
                         target_amount = excluded.target_amount, \
                         saved_amount = excluded.saved_amount, goal_type = excluded.goal_type, \
                         priority = excluded.priority, added_by = excluded.added_by, \
                         status = excluded.status, created_at = excluded.created_at, \
                         updated_at = excluded.updated_at",
                    )
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(&r.name)
                    .bind($money(r.target_amount))
                    .bind($money(r.saved_amount))
                    .bind(&r.goal_type)
                    .bind(&r.priority)
                    .bind(r.added_by.0)
                    .bind(&r.status)
                    .bind(time_of(r.created_at))
                    .bind(time_of(r.updated_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?;
                }
                RowChange::Upsert(Row::GoalContribution(r)) => {
                    sqlx::query(
                        "INSERT INTO goal_contributions (partnership_id, id, goal_id, user_id, \
                         amount, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
                         ON CONFLICT (partnership_id, id) DO UPDATE SET goal_id = excluded.goal_id, \
                         user_id = excluded.user_id, amount = excluded.amount, \
                         created_at = excluded.created_at",
                    )
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(r.goal_id.0)
                    .bind(r.user_id.0)
                    .bind($money(r.amount))
                    .bind(time_of(r.created_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?;
                }
                RowChange::Upsert(Row::Approval(r)) => {
                    sqlx::query(
                        "INSERT INTO approval_requests (partnership_id, id, requested_by, \
                         request_type, target_id, request_data, message, status, responded_by, \
                         responded_at, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                         ON CONFLICT (partnership_id, id) DO UPDATE SET \
                         requested_by = excluded.requested_by, \
                         request_type = excluded.request_type, target_id = excluded.target_id, \
                         request_data = excluded.request_data, message = excluded.message, \
                         status = excluded.status, responded_by = excluded.responded_by, \
                         responded_at = excluded.responded_at, created_at = excluded.created_at",
                    )
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(r.requested_by.0)
                    .bind(&r.request_type)
                    .bind(r.target_id.0)
                    .bind(Json(&r.request_data))
                    .bind(&r.message)
                    .bind(&r.status)
                    .bind(r.responded_by.map(|u| u.0))
                    .bind(r.responded_at.map(time_of))
                    .bind(time_of(r.created_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?;
                }
                RowChange::Upsert(Row::Message(r)) => {
                    sqlx::query(
                        "INSERT INTO messages (partnership_id, id, sender_id, text, message_type, \
                         read_by_recipient, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                         ON CONFLICT (partnership_id, id) DO UPDATE SET \
                         sender_id = excluded.sender_id, text = excluded.text, \
                         message_type = excluded.message_type, \
                         read_by_recipient = excluded.read_by_recipient, \
                         created_at = excluded.created_at",
                    )
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(r.sender_id.0)
                    .bind(&r.text)
                    .bind(&r.message_type)
                    .bind(r.read_by_recipient)
                    .bind(time_of(r.created_at))
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?;
                }
                RowChange::Upsert(Row::Contribution(r)) => {
                    sqlx::query(
                        "INSERT INTO contributions (partnership_id, month, total_required, updated_at) \
                         VALUES ($1, $2, $3, $4) ON CONFLICT (partnership_id, month) DO UPDATE SET \
                         total_required = excluded.total_required, updated_at = excluded.updated_at",
                    )
                    .bind(pid)
                    .bind(&r.month)
                    .bind($money(r.total_required))
                    .bind(now)
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?;
                    // The month's shares are replaced as a whole: a partner may have left it.
                    sqlx::query(
                        "DELETE FROM contribution_shares WHERE partnership_id = $1 AND month = $2",
                    )
                    .bind(pid)
                    .bind(&r.month)
                    .execute(&mut **tx)
                    .await?;
                    for share in &r.shares {
                        sqlx::query(
                            "INSERT INTO contribution_shares (partnership_id, month, user_id, amount, \
                             paid_at) VALUES ($1, $2, $3, $4, $5) \
                             ON CONFLICT (partnership_id, month, user_id) DO UPDATE SET \
                             amount = excluded.amount, paid_at = excluded.paid_at",
                        )
                        .bind(pid)
                        .bind(&r.month)
                        .bind(share.user_id.0)
                        .bind($money(share.amount))
                        .bind(share.paid_at.map(time_of))
                        .execute(&mut **tx)
                        .await
                        .map_err(write_error)?;
                    }
                }
                RowChange::Delete { collection, key } => {
                    delete_row(tx, pid, *collection, key).await?;
                }
            }
            Ok(())
        }

        /// Deletes one row if present. A key that is not an id names no row: nothing to do.
        async fn delete_row(
            tx: &mut Tx<'_>,
            pid: Uuid,
            collection: Collection,
            key: &str,
        ) -> StoreResult<()> {
            let table = match collection {
                Collection::Contributions => {
                    // Its shares go with it (ON DELETE CASCADE).
                    sqlx::query("DELETE FROM contributions WHERE partnership_id = $1 AND month = $2")
                        .bind(pid)
                        .bind(key)
                        .execute(&mut **tx)
                        .await?;
                    return Ok(());
                }
                Collection::Members => return Ok(()),
                Collection::Expenses => "expenses",
                Collection::Goals => "goals",
                Collection::GoalContributions => "goal_contributions",
                Collection::Approvals => "approval_requests",
                Collection::Messages => "messages",
            };
            let Ok(id) = Uuid::parse_str(key) else {
                return Ok(());
            };
            sqlx::query(&format!(
                "DELETE FROM {table} WHERE partnership_id = $1 AND id = $2"
            ))
            .bind(pid)
            .bind(id)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        fn required<T>(value: Option<T>, column: &str) -> StoreResult<T> {
            value.ok_or_else(|| StoreError::Corrupt(format!("{column} is null")))
        }

        fn time_column(row: &<$db as sqlx::Database>::Row, column: &str) -> StoreResult<splitsave_sync_core::time::Millis> {
            Ok(millis_of(row.try_get::<DateTime<Utc>, _>(column)?))
        }

        fn optional_time_column(
            row: &<$db as sqlx::Database>::Row,
            column: &str,
        ) -> StoreResult<Option<splitsave_sync_core::time::Millis>> {
            Ok(row.try_get::<Option<DateTime<Utc>>, _>(column)?.map(millis_of))
        }

        async fn read_expenses(
            tx: &mut Tx<'_>,
            pid: Uuid,
            scale: Option<u32>,
            out: &mut Vec<Row>,
        ) -> StoreResult<()> {
            let rows = sqlx::query(
                "SELECT id, name, amount, category, frequency, added_by, status, created_at, \
                 updated_at FROM expenses WHERE partnership_id = $1 ORDER BY id",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                out.push(Row::Expense(ExpenseRow {
                    id: EntityId(row.try_get("id")?),
                    name: row.try_get("name")?,
                    amount: at_scale($read_money(row, "amount")?, scale),
                    category: row.try_get("category")?,
                    frequency: row.try_get("frequency")?,
                    added_by: UserId(row.try_get("added_by")?),
                    status: row.try_get("status")?,
                    created_at: time_column(row, "created_at")?,
                    updated_at: time_column(row, "updated_at")?,
                }));
            }
            Ok(())
        }

        async fn read_goals(
            tx: &mut Tx<'_>,
            pid: Uuid,
            scale: Option<u32>,
            out: &mut Vec<Row>,
        ) -> StoreResult<()> {
            let rows = sqlx::query(
                "SELECT id, name, target_amount, saved_amount, goal_type, priority, added_by, \
                 status, created_at, updated_at FROM goals WHERE partnership_id = $1 ORDER BY id",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                out.push(Row::Goal(GoalRow {
                    id: EntityId(row.try_get("id")?),
                    name: row.try_get("name")?,
                    target_amount: at_scale($read_money(row, "target_amount")?, scale),
                    saved_amount: at_scale($read_money(row, "saved_amount")?, scale),
                    goal_type: row.try_get("goal_type")?,
                    priority: row.try_get("priority")?,
                    added_by: UserId(row.try_get("added_by")?),
                    status: row.try_get("status")?,
                    created_at: time_column(row, "created_at")?,
                    updated_at: time_column(row, "updated_at")?,
                }));
            }
            Ok(())
        }

        async fn read_goal_contributions(
            tx: &mut Tx<'_>,
            pid: Uuid,
            scale: Option<u32>,
            out: &mut Vec<Row>,
        ) -> StoreResult<()> {
            let rows = sqlx::query(
                "SELECT id, goal_id, user_id, amount, created_at FROM goal_contributions \
                 WHERE partnership_id = $1 ORDER BY id",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                out.push(Row::GoalContribution(GoalContributionRow {
                    id: EntityId(row.try_get("id")?),
                    goal_id: EntityId(row.try_get("goal_id")?),
                    user_id: UserId(row.try_get("user_id")?),
                    amount: at_scale($read_money(row, "amount")?, scale),
                    created_at: time_column(row, "created_at")?,
                }));
            }
            Ok(())
        }

        async fn read_approvals(tx: &mut Tx<'_>, pid: Uuid, out: &mut Vec<Row>) -> StoreResult<()> {
            let rows = sqlx::query(
                "SELECT id, requested_by, request_type, target_id, request_data, message, status, \
                 responded_by, responded_at, created_at FROM approval_requests \
                 WHERE partnership_id = $1 ORDER BY id",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                let Json(request_data) = row.try_get::<Json<serde_json::Value>, _>("request_data")?;
                out.push(Row::Approval(ApprovalRow {
                    id: EntityId(row.try_get("id")?),
                    requested_by: UserId(row.try_get("requested_by")?),
                    request_type: row.try_get("request_type")?,
                    target_id: EntityId(required(row.try_get("target_id")?, "target_id")?),
                    request_data,
                    message: row.try_get("message")?,
                    status: row.try_get("status")?,
                    responded_by: row.try_get::<Option<Uuid>, _>("responded_by")?.map(UserId),
                    responded_at: optional_time_column(row, "responded_at")?,
                    created_at: time_column(row, "created_at")?,
                }));
            }
            Ok(())
        }

        async fn read_messages(tx: &mut Tx<'_>, pid: Uuid, out: &mut Vec<Row>) -> StoreResult<()> {
            let rows = sqlx::query(
                "SELECT id, sender_id, text, message_type, read_by_recipient, created_at \
                 FROM messages WHERE partnership_id = $1 ORDER BY id",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                out.push(Row::Message(MessageRow {
                    id: EntityId(row.try_get("id")?),
                    sender_id: UserId(row.try_get("sender_id")?),
                    text: row.try_get("text")?,
                    message_type: row.try_get("message_type")?,
                    read_by_recipient: row.try_get("read_by_recipient")?,
                    created_at: time_column(row, "created_at")?,
                }));
            }
            Ok(())
        }

        async fn read_contributions(
            tx: &mut Tx<'_>,
            pid: Uuid,
            scale: Option<u32>,
            out: &mut Vec<Row>,
        ) -> StoreResult<()> {
            let months = sqlx::query(
                "SELECT month, total_required FROM contributions WHERE partnership_id = $1 \
                 ORDER BY month",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            let shares = sqlx::query(
                "SELECT month, user_id, amount, paid_at FROM contribution_shares \
                 WHERE partnership_id = $1 ORDER BY month, user_id",
            )
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            let mut by_month: std::collections::BTreeMap<String, Vec<ContributionShare>> =
                std::collections::BTreeMap::new();
            for row in &shares {
                by_month
                    .entry(row.try_get("month")?)
                    .or_default()
                    .push(ContributionShare {
                        user_id: UserId(row.try_get("user_id")?),
                        amount: at_scale($read_money(row, "amount")?, scale),
                        paid_at: optional_time_column(row, "paid_at")?,
                    });
            }
            for row in &months {
                let month: String = row.try_get("month")?;
                let mut shares = by_month.remove(&month).unwrap_or_default();
                shares.sort_by_key(|s| s.user_id);
                out.push(Row::Contribution(ContributionRow {
                    month,
                    total_required: at_scale($read_money(row, "total_required")?, scale),
                    shares,
                }));
            }
            Ok(())
        }
    };
}

pub(super) use sync_backend;
