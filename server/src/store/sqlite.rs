//! The SQLite store: the embedded default, one file in the data directory, one node. Amounts are
//! exact decimal TEXT (never REAL), times RFC 3339 TEXT, `request_data` JSON TEXT.
//!
//! This module is the backend's glue (see the store module documentation): the pool, how
//! transactions begin, how money is bound and read, and how users are "locked"; every query
//! lives in the domain modules it expands.
//!
//! Writing transactions start with `BEGIN IMMEDIATE`, which takes SQLite's single write lock up
//! front: the checks that span rows (one partnership per user) and the writes that follow them
//! cannot interleave with another writer, and no transaction fails upgrading a read lock.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row as _, Sqlite, Transaction};
use uuid::Uuid;

use super::sync::decimal_text;
use super::{MergeCommit, StoreResult};

/// Store backed by a SQLite database file.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file and applies the migrations in
    /// `migrations/sqlite`. WAL mode lets readers proceed while one writer commits; foreign keys
    /// are on so the cascades of the schema apply.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations.
    pub async fn from_pool(pool: SqlitePool) -> StoreResult<Self> {
        sqlx::migrate!("../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// `Store::commit_merges`: every merge in one write transaction.
    async fn commit_batch(
        &self,
        merges: &[(Uuid, MergeCommit)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<u64>> {
        let mut tx = begin_write(&self.pool).await?;
        let mut counts = Vec::with_capacity(merges.len());
        for (partnership_id, commit) in merges {
            counts.push(sync::write_merge(&mut tx, *partnership_id, commit, now).await?);
        }
        tx.commit().await?;
        Ok(counts)
    }
}

// ---- the backend's glue, used by the domain modules below ----------------------------------

type Db = Sqlite;

/// No row locks: a writing transaction already holds SQLite's write lock (`BEGIN IMMEDIATE`).
const FOR_UPDATE: &str = "";

/// No row locks for claims either: one writer at a time, and the claim's transaction is one.
const SKIP_LOCKED: &str = "";

/// Amounts are bound as their decimal text, which keeps the scale (`12.50`).
fn money(amount: Decimal) -> String {
    amount.to_string()
}

/// A decimal TEXT amount column.
fn read_money(row: &SqliteRow, column: &str) -> StoreResult<Decimal> {
    let text: String = row.try_get(column)?;
    decimal_text(&text, column)
}

/// A decimal TEXT amount column that may be NULL.
fn read_optional_money(row: &SqliteRow, column: &str) -> StoreResult<Option<Decimal>> {
    let text: Option<String> = row.try_get(column)?;
    text.map(|t| decimal_text(&t, column)).transpose()
}

/// Takes SQLite's write lock up front, so no transaction fails upgrading a read lock.
async fn begin_write(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// A deferred transaction: in WAL mode its reads see one snapshot.
async fn begin_read(pool: &SqlitePool) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin().await
}

/// Counts how many of the given users exist. No row locks are needed: the transaction already
/// holds SQLite's write lock (`BEGIN IMMEDIATE`).
async fn lock_users(tx: &mut Transaction<'_, Sqlite>, ids: &[Uuid]) -> StoreResult<usize> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let mut found = 0;
    for id in ids {
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)")
            .bind(id)
            .fetch_one(&mut **tx)
            .await?;
        found += usize::from(exists);
    }
    Ok(found)
}

/// Deletes the partnership's changes with these hashes, one statement each (SQLite binds no
/// arrays).
async fn delete_changes(
    tx: &mut Transaction<'_, Sqlite>,
    partnership_id: Uuid,
    hashes: &[String],
) -> StoreResult<()> {
    for hash in hashes {
        sqlx::query("DELETE FROM doc_changes WHERE partnership_id = $1 AND hash = $2")
            .bind(partnership_id)
            .bind(hash)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The latest committed version of each of these documents that has one, one statement each.
async fn document_versions(pool: &SqlitePool, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, i64)>> {
    let mut versions = Vec::with_capacity(ids.len());
    for id in ids {
        let version: Option<i64> =
            sqlx::query_scalar("SELECT max(version) FROM doc_commits WHERE partnership_id = $1")
                .bind(id)
                .fetch_one(pool)
                .await?;
        if let Some(version) = version {
            versions.push((*id, version));
        }
    }
    Ok(versions)
}

// The domain modules (`users`, `sessions`, ..., `sync`) over the glue above, and `Store`.
super::backend::backend!(SqliteStore);
