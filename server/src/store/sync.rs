//! Sync storage: merge commits, materialized rows, peer sync states and the server's storageId,
//! with the value conversions between sync-core's rows and the columns. The SQL is written once
//! in [`sync_queries!`] (see the store module documentation); what differs per backend (how money
//! is bound and read, how transactions begin, PostgreSQL's one-statement merge commit) is the
//! backend's glue.

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

/// A document time as a materialized row holds it once stored and read back (clamped like
/// [`time_of`]): what a row read from the store is compared with.
pub fn stored_millis(millis: Millis) -> Millis {
    millis_of(time_of(millis))
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

/// The upsert of one row, written from its table's columns: `INSERT INTO table (columns)
/// VALUES ($1, ...) ON CONFLICT (key) DO UPDATE SET` every other column to the new value. The
/// statement is built once, on first use.
pub(super) struct Upsert {
    table: &'static str,
    /// Comma-separated, in the order they are bound.
    columns: &'static str,
    /// How many of the first columns are the key.
    key: usize,
    sql: std::sync::OnceLock<String>,
}

impl Upsert {
    const fn new(table: &'static str, columns: &'static str, key: usize) -> Self {
        Self {
            table,
            columns,
            key,
            sql: std::sync::OnceLock::new(),
        }
    }

    /// The statement, the columns bound in order as `$1`, `$2`, ...
    pub(super) fn sql(&self) -> &str {
        self.sql.get_or_init(|| {
            let count = self.columns.split(", ").count();
            let params: Vec<String> = (1..=count).map(|i| format!("${i}")).collect();
            format!(
                "INSERT INTO {} ({}) VALUES ({}) {}",
                self.table,
                self.columns(),
                params.join(", "),
                self.on_conflict()
            )
        })
    }

    /// The columns, comma-separated, in the order they are bound.
    pub(super) fn columns(&self) -> &str {
        self.columns
    }

    /// `ON CONFLICT (key) DO UPDATE SET column = excluded.column, ...` for the other columns.
    pub(super) fn on_conflict(&self) -> String {
        let columns: Vec<&str> = self.columns.split(", ").collect();
        let (key, rest) = columns.split_at(self.key);
        let set: Vec<String> = rest.iter().map(|c| format!("{c} = excluded.{c}")).collect();
        format!(
            "ON CONFLICT ({}) DO UPDATE SET {}",
            key.join(", "),
            set.join(", ")
        )
    }
}

/// The upsert into `expenses`.
pub(super) static UPSERT_EXPENSES: Upsert = Upsert::new(
    "expenses",
    "partnership_id, id, name, amount, category, frequency, added_by, status, \
     created_at, updated_at",
    2,
);

/// The upsert into `goals`.
pub(super) static UPSERT_GOALS: Upsert = Upsert::new(
    "goals",
    "partnership_id, id, name, target_amount, saved_amount, goal_type, priority, \
     added_by, status, created_at, updated_at",
    2,
);

/// The upsert into `goal_contributions`.
pub(super) static UPSERT_GOAL_CONTRIBUTIONS: Upsert = Upsert::new(
    "goal_contributions",
    "partnership_id, id, goal_id, user_id, amount, created_at",
    2,
);

/// The upsert into `approval_requests`.
pub(super) static UPSERT_APPROVALS: Upsert = Upsert::new(
    "approval_requests",
    "partnership_id, id, requested_by, request_type, target_id, request_data, message, \
     status, responded_by, responded_at, created_at",
    2,
);

/// The upsert into `messages`.
pub(super) static UPSERT_MESSAGES: Upsert = Upsert::new(
    "messages",
    "partnership_id, id, sender_id, text, message_type, read_by_recipient, created_at",
    2,
);

/// The upsert into `contributions`.
pub(super) static UPSERT_CONTRIBUTIONS: Upsert = Upsert::new(
    "contributions",
    "partnership_id, month, total_required, updated_at",
    2,
);

/// The upsert into `contribution_shares`.
pub(super) static UPSERT_CONTRIBUTION_SHARES: Upsert = Upsert::new(
    "contribution_shares",
    "partnership_id, month, user_id, amount, paid_at",
    3,
);

/// The upsert into `sync_states`.
pub(super) static UPSERT_SYNC_STATES: Upsert = Upsert::new(
    "sync_states",
    "partnership_id, user_id, peer_storage_id, state, updated_at",
    3,
);

/// Generates the sync storage functions of one backend: `write_merge` (one merge's writes in
/// the caller's transaction, its notifications included: each backend runs merge commits its
/// own way), `insert_change` and `bind_actor` (also the documents' own writes), and
/// `replace_materialized`, `rebuild_materialized`, `materialized_rows`, `save_sync_state`,
/// `load_sync_state`, `server_storage_id` and `document_change_count`, each taking the pool.
/// Expanded in the backend's `sync` module, whose parent provides the backend's glue; the rows
/// are decoded as the REST reads decode them.
macro_rules! sync_queries {
    () => {
        use chrono::{DateTime, Utc};
        use splitsave_sync_core::ids::{EntityId, UserId};
        use splitsave_sync_core::materialize::{
            ContributionRow, GoalContributionRow, Row, RowChange,
        };
        use splitsave_sync_core::schema::Collection;
        use sqlx::types::Json;
        use sqlx::{Row as _, Transaction};
        use uuid::Uuid;

        use super::approvals_messages::{approval_row, message_row, APPROVAL_COLUMNS, MESSAGE_COLUMNS};
        use super::reads::{
            expense_row, goal_row, share_row, time_column, EXPENSE_COLUMNS, GOAL_COLUMNS,
        };
        use super::{begin_read, begin_write, money, read_money, Db};
        use $crate::store::sync::{
            at_scale, currency_scale, time_of, UPSERT_APPROVALS, UPSERT_CONTRIBUTIONS,
            UPSERT_CONTRIBUTION_SHARES, UPSERT_EXPENSES, UPSERT_GOALS, UPSERT_GOAL_CONTRIBUTIONS,
            UPSERT_MESSAGES, UPSERT_SYNC_STATES,
        };
        use $crate::store::{write_error, MergeCommit, NewChange, StoreError, StoreResult};

        type Tx<'c> = Transaction<'c, Db>;
        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        /// One merge's writes inside the caller's transaction; how many changes were new.
        pub(super) async fn write_merge(
            tx: &mut Tx<'_>,
            partnership_id: Uuid,
            commit: &MergeCommit,
            now: DateTime<Utc>,
        ) -> StoreResult<u64> {
            // The version first: a merge made from a state another node has moved on from
            // fails here (`Conflict::Stale`) before it writes anything else.
            if let Some(version) = commit.version {
                sqlx::query(
                    "INSERT INTO doc_commits (partnership_id, version, committed_at) \
                     VALUES ($1, $2, $3)",
                )
                .bind(partnership_id)
                .bind(version)
                .bind(now)
                .execute(&mut **tx)
                .await
                .map_err(write_error)?;
            }
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
            super::notifications::insert_notifications(tx, &commit.notifications, now).await?;
            let received = $crate::store::Received { at: now, exact: true };
            super::history::insert_entries(tx, partnership_id, &commit.history, &received).await?;
            Ok(inserted)
        }

        /// See `Store::replace_materialized`.
        pub(super) async fn replace_materialized(
            pool: &Pool,
            partnership_id: Uuid,
            rows: Vec<RowChange>,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            replace_rows(&mut tx, partnership_id, &rows, now).await?;
            tx.commit().await?;
            Ok(())
        }

        /// See `Store::rebuild_materialized`.
        pub(super) async fn rebuild_materialized(
            pool: &Pool,
            partnership_id: Uuid,
            from_version: i64,
            rows: Vec<RowChange>,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            // The next version, as a merge commit takes it: a merge committed since the rows
            // were derived (or one committing now, on PostgreSQL: the insert waits for it) holds
            // it already, and this rebuild fails `Conflict::Stale` instead of writing old rows.
            sqlx::query(
                "INSERT INTO doc_commits (partnership_id, version, committed_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(partnership_id)
            .bind(from_version + 1)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
            replace_rows(&mut tx, partnership_id, &rows, now).await?;
            tx.commit().await?;
            Ok(())
        }

        /// Deletes every materialized row of the partnership and writes the upserts of `rows`,
        /// in the caller's transaction.
        async fn replace_rows(
            tx: &mut Tx<'_>,
            partnership_id: Uuid,
            rows: &[RowChange],
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
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
                    .execute(&mut **tx)
                    .await?;
            }
            for row in rows.iter().filter(|r| matches!(r, RowChange::Upsert(_))) {
                apply_row(tx, partnership_id, row, now).await?;
            }
            Ok(())
        }

        /// See `Store::materialized_rows`.
        pub(super) async fn materialized_rows(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<Vec<RowChange>> {
            let mut tx = begin_read(pool).await?;
            let currency: Option<String> =
                sqlx::query_scalar("SELECT currency FROM partnerships WHERE id = $1")
                    .bind(partnership_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let scale = currency_scale(currency.as_deref());
            let mut rows = Vec::new();
            let pid = partnership_id;
            let expense = |r: &DbRow| Ok(Row::Expense(expense_row(r, scale)?));
            read_table(&mut tx, EXPENSE_COLUMNS, "expenses", pid, expense, &mut rows).await?;
            let goal = |r: &DbRow| Ok(Row::Goal(goal_row(r, scale)?));
            read_table(&mut tx, GOAL_COLUMNS, "goals", pid, goal, &mut rows).await?;
            let goal_contribution = |r: &DbRow| {
                Ok(Row::GoalContribution(GoalContributionRow {
                    id: EntityId(r.try_get("id")?),
                    goal_id: EntityId(r.try_get("goal_id")?),
                    user_id: UserId(r.try_get("user_id")?),
                    amount: at_scale(read_money(r, "amount")?, scale),
                    created_at: time_column(r, "created_at")?,
                }))
            };
            let columns = "id, goal_id, user_id, amount, created_at";
            read_table(&mut tx, columns, "goal_contributions", pid, goal_contribution, &mut rows)
                .await?;
            let approval = |r: &DbRow| Ok(Row::Approval(approval_row(r)?));
            read_table(&mut tx, APPROVAL_COLUMNS, "approval_requests", pid, approval, &mut rows)
                .await?;
            let message = |r: &DbRow| Ok(Row::Message(message_row(r)?));
            read_table(&mut tx, MESSAGE_COLUMNS, "messages", pid, message, &mut rows).await?;
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
            sqlx::query(UPSERT_SYNC_STATES.sql())
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
        pub(super) async fn bind_actor(
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
            match super::documents::actor_owner(&mut **tx, partnership_id, &actor).await? {
                Some(owner) if owner == user_id => Ok(()),
                Some(_) => Err(StoreError::Conflict($crate::store::Conflict::ActorBound)),
                None => Err(StoreError::NotFound),
            }
        }

        /// Stores one change unless its hash is already stored; 1 when it was new.
        pub(super) async fn insert_change(
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
            let upsert = match change {
                RowChange::Upsert(Row::Expense(r)) => sqlx::query(UPSERT_EXPENSES.sql())
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(&r.name)
                    .bind(money(r.amount))
                    .bind(&r.category)
                    .bind(&r.frequency)
                    .bind(r.added_by.0)
                    .bind(&r.status)
                    .bind(time_of(r.created_at))
                    .bind(time_of(r.updated_at)),
                RowChange::Upsert(Row::Goal(r)) => sqlx::query(UPSERT_GOALS.sql())
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(&r.name)
                    .bind(money(r.target_amount))
                    .bind(money(r.saved_amount))
                    .bind(&r.goal_type)
                    .bind(&r.priority)
                    .bind(r.added_by.0)
                    .bind(&r.status)
                    .bind(time_of(r.created_at))
                    .bind(time_of(r.updated_at)),
                RowChange::Upsert(Row::GoalContribution(r)) => sqlx::query(UPSERT_GOAL_CONTRIBUTIONS.sql())
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(r.goal_id.0)
                    .bind(r.user_id.0)
                    .bind(money(r.amount))
                    .bind(time_of(r.created_at)),
                RowChange::Upsert(Row::Approval(r)) => sqlx::query(UPSERT_APPROVALS.sql())
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
                    .bind(time_of(r.created_at)),
                RowChange::Upsert(Row::Message(r)) => sqlx::query(UPSERT_MESSAGES.sql())
                    .bind(pid)
                    .bind(r.id.0)
                    .bind(r.sender_id.0)
                    .bind(&r.text)
                    .bind(&r.message_type)
                    .bind(r.read_by_recipient)
                    .bind(time_of(r.created_at)),
                RowChange::Upsert(Row::Contribution(r)) => {
                    sqlx::query(UPSERT_CONTRIBUTIONS.sql())
                    .bind(pid)
                    .bind(&r.month)
                    .bind(money(r.total_required))
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
                        sqlx::query(UPSERT_CONTRIBUTION_SHARES.sql())
                        .bind(pid)
                        .bind(&r.month)
                        .bind(share.user_id.0)
                        .bind(money(share.amount))
                        .bind(share.paid_at.map(time_of))
                        .execute(&mut **tx)
                        .await
                        .map_err(write_error)?;
                    }
                    return Ok(());
                }
                RowChange::Delete { collection, key } => {
                    return delete_row(tx, pid, *collection, key).await;
                }
            };
            upsert.execute(&mut **tx).await.map_err(write_error)?;
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

        /// Every row of one table of the partnership, by id, decoded into `out`.
        async fn read_table(
            tx: &mut Tx<'_>,
            columns: &str,
            table: &str,
            pid: Uuid,
            decode: impl Fn(&DbRow) -> StoreResult<Row>,
            out: &mut Vec<Row>,
        ) -> StoreResult<()> {
            let rows = sqlx::query(&format!(
                "SELECT {columns} FROM {table} WHERE partnership_id = $1 ORDER BY id"
            ))
            .bind(pid)
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                out.push(decode(row)?);
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
            let mut by_month: std::collections::BTreeMap<String, Vec<_>> =
                std::collections::BTreeMap::new();
            for row in &shares {
                let (month, share) = share_row(row, scale)?;
                by_month.entry(month).or_default().push(share);
            }
            for row in &months {
                let month: String = row.try_get("month")?;
                let mut shares = by_month.remove(&month).unwrap_or_default();
                shares.sort_by_key(|s| s.user_id);
                out.push(Row::Contribution(ContributionRow {
                    month,
                    total_required: at_scale(read_money(row, "total_required")?, scale),
                    shares,
                }));
            }
            Ok(())
        }
    };
}

pub(super) use sync_queries;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upsert_sets_every_column_but_its_key() {
        assert_eq!(
            UPSERT_CONTRIBUTION_SHARES.sql(),
            "INSERT INTO contribution_shares (partnership_id, month, user_id, amount, paid_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (partnership_id, month, user_id) \
             DO UPDATE SET amount = excluded.amount, paid_at = excluded.paid_at"
        );
    }
}
