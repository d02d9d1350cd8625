//! Sync storage on PostgreSQL: merge commits, materialized rows, peer sync states and the
//! server's storageId (the SQL is shared with SQLite, see `sync_rows`). Amounts are NUMERIC,
//! times TIMESTAMPTZ, `request_data` JSONB.

use rust_decimal::Decimal;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Postgres;

use super::sync_rows::sync_backend;

/// Amounts are bound as NUMERIC, keeping their scale.
fn money(amount: Decimal) -> Decimal {
    amount
}

/// A NUMERIC amount column.
fn read_money(row: &PgRow, column: &str) -> Result<Decimal, super::StoreError> {
    use sqlx::Row as _;
    Ok(row.try_get(column)?)
}

/// Writers rely on row-level locking and unique indexes; READ COMMITTED is enough.
async fn begin_write(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin().await
}

/// Readers see every table at one instant, so a merge committing meanwhile is all or nothing.
async fn begin_read(pool: &PgPool) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
    pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
}

sync_backend! {
    db: Postgres,
    money: money,
    read_money: read_money,
    begin_write: begin_write,
    begin_read: begin_read,
}

/// `Store::commit_merges` on a connection the caller holds (see `PgStore::merge_connection`).
pub(super) async fn commit_merges_on(
    conn: &mut sqlx::PgConnection,
    merges: &[(uuid::Uuid, super::MergeCommit)],
    now: chrono::DateTime<chrono::Utc>,
) -> super::StoreResult<Vec<u64>> {
    let mut tx = sqlx::Connection::begin(conn).await?;
    let mut counts = Vec::with_capacity(merges.len());
    for (partnership_id, commit) in merges {
        counts.push(write_merge(&mut tx, *partnership_id, commit, now).await?);
    }
    tx.commit().await?;
    Ok(counts)
}
