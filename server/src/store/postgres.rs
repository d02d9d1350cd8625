//! The PostgreSQL store: production and multi-node deployments. Amounts are NUMERIC, times
//! TIMESTAMPTZ, `request_data` JSONB.
//!
//! This module is the backend's glue (see the store module documentation): the pool, how
//! transactions begin, how money is bound and read, how rows are locked, and the merge commit of
//! one statement; every query lives in the domain modules it expands.
//!
//! Partnership rules that span rows (one partnership per user, as inviter or invitee) are checked
//! inside the writing transaction after locking the users' rows (`FOR UPDATE`, in id order so two
//! writers cannot deadlock), which serialises every partnership change of one user across nodes.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row as _, Transaction};
use uuid::Uuid;

use super::{MergeCommit, StoreResult};

/// Store backed by a PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Connections held out of the pool for merge commits (see [`PgStore::merge_connection`]),
    /// shared by clones.
    merge_connections: std::sync::Arc<std::sync::Mutex<Vec<sqlx::PgConnection>>>,
}

/// Most connections kept for merge commits: the committer runs at most four transactions at
/// once, so more are only ever needed briefly.
const MAX_MERGE_CONNECTIONS: usize = 8;

impl PgStore {
    /// Connects and applies the migrations in `migrations/postgres`.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        // No ping before every acquire: it costs a round trip per transaction (6.5% of the
        // server's time per merge under load); a connection that died is found by its first
        // query and replaced by the pool.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(database_url)
            .await?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations.
    pub async fn from_pool(pool: PgPool) -> StoreResult<Self> {
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            merge_connections: Default::default(),
        })
    }

    /// A connection for one merge commit. Merge commits are the hottest write, and a pooled
    /// connection costs an extra round trip each time it goes back to the pool (sqlx pings it on
    /// release: 3 % of the server's time at 1,000 merges/s), so they run on connections held
    /// here, detached from the pool; one that failed is dropped, not kept.
    async fn merge_connection(&self) -> StoreResult<sqlx::PgConnection> {
        let held = self
            .merge_connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match held {
            Some(conn) => Ok(conn),
            None => Ok(self.pool.acquire().await?.detach()),
        }
    }

    /// Keeps a connection that just committed a merge for the next one.
    fn keep_merge_connection(&self, conn: sqlx::PgConnection) {
        let mut held = self
            .merge_connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.len() < MAX_MERGE_CONNECTIONS {
            held.push(conn);
        }
    }

    /// `Store::commit_merges`: in one statement when the batch allows it, else in one
    /// transaction, on a held merge connection.
    async fn commit_batch(
        &self,
        merges: &[(Uuid, MergeCommit)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<u64>> {
        let mut conn = self.merge_connection().await?;
        let counts = if fits_one_statement(merges) {
            commit_merges_in_one_statement(&mut conn, merges, now).await?
        } else {
            commit_merges_on(&mut conn, merges, now).await?
        };
        self.keep_merge_connection(conn);
        Ok(counts)
    }
}

// ---- the backend's glue, used by the domain modules below ----------------------------------

type Db = Postgres;

/// Locks the rows a writing transaction reads before it decides.
const FOR_UPDATE: &str = " FOR UPDATE";

/// Locks the outbox rows a sender claims, skipping those another sender is claiming.
const SKIP_LOCKED: &str = " FOR UPDATE SKIP LOCKED";

/// Amounts are bound as NUMERIC, keeping their scale.
fn money(amount: Decimal) -> Decimal {
    amount
}

/// A NUMERIC amount column.
fn read_money(row: &PgRow, column: &str) -> StoreResult<Decimal> {
    Ok(row.try_get(column)?)
}

/// A NUMERIC amount column that may be NULL.
fn read_optional_money(row: &PgRow, column: &str) -> StoreResult<Option<Decimal>> {
    Ok(row.try_get(column)?)
}

/// Writers rely on row-level locking and unique indexes; READ COMMITTED is enough.
async fn begin_write(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

/// Readers see every table at one instant, so a merge committing meanwhile is all or nothing.
async fn begin_read(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
}

/// Locks the given users' rows in id order; returns how many exist.
async fn lock_users(tx: &mut Transaction<'_, Postgres>, ids: &[Uuid]) -> StoreResult<usize> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let rows = sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.len())
}

/// Deletes the partnership's changes with these hashes, in one statement.
async fn delete_changes(
    tx: &mut Transaction<'_, Postgres>,
    partnership_id: Uuid,
    hashes: &[String],
) -> StoreResult<()> {
    sqlx::query("DELETE FROM doc_changes WHERE partnership_id = $1 AND hash = ANY($2)")
        .bind(partnership_id)
        .bind(hashes)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The latest committed version of each of these documents that has one, in one statement.
async fn document_versions(pool: &PgPool, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, i64)>> {
    Ok(sqlx::query_as(
        "SELECT partnership_id, max(version) FROM doc_commits \
         WHERE partnership_id = ANY($1) GROUP BY partnership_id",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

// The domain modules (`users`, `sessions`, ..., `sync`) over the glue above, and `Store`.
super::backend::backend!(PgStore);

// ---- merge commits ---------------------------------------------------------------------------

/// `Store::commit_merges` on a connection the caller holds (see `PgStore::merge_connection`).
async fn commit_merges_on(
    conn: &mut sqlx::PgConnection,
    merges: &[(Uuid, MergeCommit)],
    now: DateTime<Utc>,
) -> StoreResult<Vec<u64>> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut counts = Vec::with_capacity(merges.len());
    for (partnership_id, commit) in merges {
        counts.push(sync::write_merge(&mut tx, *partnership_id, commit, now).await?);
    }
    tx.commit().await?;
    Ok(counts)
}

/// Whether a batch of merges can be written by [`commit_merges_in_one_statement`]: no actor id
/// to bind (binding checks the owner first) and no rows but expense upserts — what nearly every
/// merge of a synced app is.
fn fits_one_statement(merges: &[(Uuid, MergeCommit)]) -> bool {
    use splitsave_sync_core::materialize::{Row, RowChange};
    merges.iter().all(|(_, m)| {
        m.bindings.is_empty()
            && m.rows
                .iter()
                .all(|r| matches!(r, RowChange::Upsert(Row::Expense(_))))
    })
}

/// The merges of [`fits_one_statement`] written by one statement: the new changes, the expense
/// rows, the notifications and the history entries, each table through one multi-row insert. A single statement is
/// atomic and commits on its own, so this saves the `BEGIN` and `COMMIT` round trips and one per
/// change and row of the transaction path — three of four round trips of a one-change merge.
/// Returns how many changes of each merge were new.
async fn commit_merges_in_one_statement(
    conn: &mut sqlx::PgConnection,
    merges: &[(Uuid, MergeCommit)],
    now: DateTime<Utc>,
) -> StoreResult<Vec<u64>> {
    use splitsave_sync_core::materialize::{ExpenseRow, Row, RowChange};
    use splitsave_sync_core::time::Millis;

    let mut changes = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    // The last row of an entity wins, as the transaction path's upserts in order would.
    let mut expenses: std::collections::BTreeMap<(Uuid, Uuid), &ExpenseRow> = Default::default();
    for (pid, merge) in merges {
        for c in &merge.changes {
            changes.0.push(*pid);
            changes.1.push(c.hash.as_str());
            changes.2.push(c.actor.as_str());
            changes.3.push(c.seq);
            changes.4.push(c.user_id);
            changes.5.push(c.bytes.as_slice());
        }
        for row in &merge.rows {
            if let RowChange::Upsert(Row::Expense(r)) = row {
                expenses.insert((*pid, r.id.0), r);
            }
        }
    }
    let rows: Vec<(Uuid, &ExpenseRow)> = expenses.into_iter().map(|((p, _), r)| (p, r)).collect();
    let versions: (Vec<Uuid>, Vec<i64>) = merges
        .iter()
        .filter_map(|(pid, m)| m.version.map(|v| (*pid, v)))
        .unzip();
    let notifications: Vec<&super::NewNotification> =
        merges.iter().flat_map(|(_, m)| &m.notifications).collect();
    let history: Vec<(Uuid, &super::NewHistoryEntry)> = merges
        .iter()
        .flat_map(|(pid, m)| m.history.iter().map(move |e| (*pid, e)))
        .collect();
    let notification_column = |f: fn(&super::NewNotification) -> &str| {
        notifications.iter().map(|n| f(n)).collect::<Vec<_>>()
    };
    let column = |f: fn(&ExpenseRow) -> &str| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    let time = |f: fn(&ExpenseRow) -> Millis| {
        rows.iter()
            .map(|(_, r)| super::sync::time_of(f(r)))
            .collect::<Vec<_>>()
    };
    // The expense upsert is the transaction path's (`UPSERT_EXPENSES`), fed from arrays.
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        let expenses = &super::sync::UPSERT_EXPENSES;
        // The versions are taken in the same statement: a version another node took fails the
        // whole statement on `doc_commits_pkey`, and nothing of the batch is written. The
        // notifications are the transaction path's insert (`notifications::insert_notifications`)
        // fed from arrays.
        use super::notifications::{OUTBOX_COLUMNS, OUTBOX_ON_CONFLICT};
        format!(
            "WITH new_versions AS ( \
               INSERT INTO doc_commits (partnership_id, version, committed_at) \
               SELECT p, v, $7 FROM UNNEST($18::uuid[], $19::int8[]) AS t(p, v)), \
             new_changes AS ( \
               INSERT INTO doc_changes (partnership_id, hash, actor, seq, user_id, bytes, received_at) \
               SELECT p, h, a, s, u, b, $7 \
               FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::uuid[], $6::bytea[]) \
                 AS t(p, h, a, s, u, b) \
               ON CONFLICT (partnership_id, hash) DO NOTHING \
               RETURNING partnership_id), \
             upserted AS ( \
               INSERT INTO expenses ({}) \
               SELECT * FROM UNNEST($8::uuid[], $9::uuid[], $10::text[], $11::numeric[], \
                 $12::text[], $13::text[], $14::uuid[], $15::text[], $16::timestamptz[], \
                 $17::timestamptz[]) \
               {}), \
             new_notifications AS ( \
               INSERT INTO notification_outbox ({OUTBOX_COLUMNS}) \
               SELECT i, u, p, k, d, b, $7, $7, 0, g \
               FROM UNNEST($20::uuid[], $21::uuid[], $22::uuid[], $23::text[], $24::text[], \
                 $25::text[], $26::timestamptz[]) AS t(i, u, p, k, d, b, g) \
               {OUTBOX_ON_CONFLICT}), \
             new_history AS ( \
               INSERT INTO history_entries (partnership_id, change_hash, author_id, kind, \
                 entity_id, action, reason, changed_at, received_at, received_exact, fields) \
               SELECT p, h, u, k, e, a, r, c, $7, true, f \
               FROM UNNEST($27::uuid[], $28::text[], $29::uuid[], $30::text[], $31::text[], \
                 $32::text[], $33::text[], $34::timestamptz[], $35::text[]) \
                 AS t(p, h, u, k, e, a, r, c, f) \
               ON CONFLICT (partnership_id, change_hash, kind, entity_id) DO NOTHING) \
             SELECT partnership_id, count(*) FROM new_changes GROUP BY partnership_id",
            expenses.columns(),
            expenses.on_conflict()
        )
    });
    let counted: Vec<(Uuid, i64)> = sqlx::query_as(sql)
        .bind(&changes.0)
        .bind(&changes.1)
        .bind(&changes.2)
        .bind(&changes.3)
        .bind(&changes.4)
        .bind(&changes.5)
        .bind(now)
        .bind(rows.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .bind(rows.iter().map(|(_, r)| r.id.0).collect::<Vec<_>>())
        .bind(column(|r| &r.name))
        .bind(
            rows.iter()
                .map(|(_, r)| money(r.amount))
                .collect::<Vec<_>>(),
        )
        .bind(column(|r| &r.category))
        .bind(column(|r| &r.frequency))
        .bind(rows.iter().map(|(_, r)| r.added_by.0).collect::<Vec<_>>())
        .bind(column(|r| &r.status))
        .bind(time(|r| r.created_at))
        .bind(time(|r| r.updated_at))
        .bind(&versions.0)
        .bind(&versions.1)
        .bind(
            notifications
                .iter()
                .map(|_| Uuid::now_v7())
                .collect::<Vec<_>>(),
        )
        .bind(notifications.iter().map(|n| n.user_id).collect::<Vec<_>>())
        .bind(
            notifications
                .iter()
                .map(|n| n.partnership_id)
                .collect::<Vec<_>>(),
        )
        .bind(notification_column(|n| n.kind.as_str()))
        .bind(notification_column(|n| &n.dedupe_key))
        .bind(notification_column(|n| &n.payload))
        .bind(
            notifications
                .iter()
                .map(|n| super::notifications::give_up_at(now, n.give_up_after))
                .collect::<Vec<_>>(),
        )
        .bind(history.iter().map(|(p, _)| *p).collect::<Vec<_>>())
        .bind(
            history
                .iter()
                .map(|(_, e)| e.change_hash.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(history.iter().map(|(_, e)| e.author_id).collect::<Vec<_>>())
        .bind(history.iter().map(|(_, e)| e.kind).collect::<Vec<_>>())
        .bind(
            history
                .iter()
                .map(|(_, e)| e.entity_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(history.iter().map(|(_, e)| e.action).collect::<Vec<_>>())
        .bind(
            history
                .iter()
                .map(|(_, e)| e.reason.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            history
                .iter()
                .map(|(_, e)| e.changed_at)
                .collect::<Vec<_>>(),
        )
        .bind(
            history
                .iter()
                .map(|(_, e)| e.fields.as_str())
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await
        .map_err(super::write_error)?;
    Ok(merges
        .iter()
        .map(|(pid, _)| {
            counted
                .iter()
                .find(|(p, _)| p == pid)
                .map_or(0, |(_, n)| u64::try_from(*n).unwrap_or(0))
        })
        .collect())
}
