//! Sync storage on SQLite: merge commits, materialized rows, peer sync states and the server's
//! storageId (the SQL is shared with PostgreSQL, see `sync_rows`). Amounts are exact decimal
//! TEXT (never REAL), times RFC 3339 TEXT as in the rest of the schema, `request_data` JSON TEXT.

use rust_decimal::Decimal;
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::Sqlite;

use super::sync_rows::{decimal_text, sync_backend};

/// Amounts are bound as their decimal text, which keeps the scale (`12.50`).
fn money(amount: Decimal) -> String {
    amount.to_string()
}

/// A decimal TEXT amount column.
fn read_money(row: &SqliteRow, column: &str) -> Result<Decimal, super::StoreError> {
    use sqlx::Row as _;
    let text: String = row.try_get(column)?;
    decimal_text(&text, column)
}

/// Takes SQLite's write lock up front, as the rest of the store does, so no transaction fails
/// upgrading a read lock.
async fn begin_write(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin_with("BEGIN IMMEDIATE").await
}

/// A deferred transaction: in WAL mode its reads see one snapshot.
async fn begin_read(pool: &SqlitePool) -> Result<sqlx::Transaction<'static, Sqlite>, sqlx::Error> {
    pool.begin().await
}

sync_backend! {
    db: Sqlite,
    money: money,
    read_money: read_money,
    begin_write: begin_write,
    begin_read: begin_read,
}

/// See `Store::commit_merge`.
pub(super) async fn commit_merge(
    pool: &SqlitePool,
    partnership_id: uuid::Uuid,
    commit: super::MergeCommit,
    now: chrono::DateTime<chrono::Utc>,
) -> super::StoreResult<u64> {
    let counts = commit_merges(pool, &[(partnership_id, commit)], now).await?;
    Ok(counts.into_iter().sum())
}

/// See `Store::commit_merges`.
pub(super) async fn commit_merges(
    pool: &SqlitePool,
    merges: &[(uuid::Uuid, super::MergeCommit)],
    now: chrono::DateTime<chrono::Utc>,
) -> super::StoreResult<Vec<u64>> {
    let mut tx = begin_write(pool).await?;
    let mut counts = Vec::with_capacity(merges.len());
    for (partnership_id, commit) in merges {
        counts.push(write_merge(&mut tx, *partnership_id, commit, now).await?);
    }
    tx.commit().await?;
    Ok(counts)
}
