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

/// Whether a batch of merges can be written by [`commit_merges_in_one_statement`]: no actor id
/// to bind (binding checks the owner first) and no rows but expense upserts — what nearly every
/// merge of a synced app is.
pub(super) fn fits_one_statement(merges: &[(uuid::Uuid, super::MergeCommit)]) -> bool {
    use splitsave_sync_core::materialize::{Row, RowChange};
    merges.iter().all(|(_, m)| {
        m.bindings.is_empty()
            && m.rows
                .iter()
                .all(|r| matches!(r, RowChange::Upsert(Row::Expense(_))))
    })
}

/// The merges of [`fits_one_statement`] written by one statement: the new changes and the
/// expense rows, each table through one multi-row insert. A single statement is atomic and
/// commits on its own, so this saves the `BEGIN` and `COMMIT` round trips and one per change and
/// row of the transaction path — three of four round trips of a one-change merge. Returns how
/// many changes of each merge were new.
pub(super) async fn commit_merges_in_one_statement(
    conn: &mut sqlx::PgConnection,
    merges: &[(uuid::Uuid, super::MergeCommit)],
    now: chrono::DateTime<chrono::Utc>,
) -> super::StoreResult<Vec<u64>> {
    use splitsave_sync_core::materialize::{ExpenseRow, Row, RowChange};
    use splitsave_sync_core::time::Millis;
    use uuid::Uuid;

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
    let column = |f: fn(&ExpenseRow) -> &str| rows.iter().map(|(_, r)| f(r)).collect::<Vec<_>>();
    let time = |f: fn(&ExpenseRow) -> Millis| {
        rows.iter()
            .map(|(_, r)| super::sync_rows::time_of(f(r)))
            .collect::<Vec<_>>()
    };
    let counted: Vec<(Uuid, i64)> = sqlx::query_as(
        "WITH new_changes AS ( \
           INSERT INTO doc_changes (partnership_id, hash, actor, seq, user_id, bytes, received_at) \
           SELECT p, h, a, s, u, b, $7 \
           FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::uuid[], $6::bytea[]) \
             AS t(p, h, a, s, u, b) \
           ON CONFLICT (partnership_id, hash) DO NOTHING \
           RETURNING partnership_id), \
         upserted AS ( \
           INSERT INTO expenses (partnership_id, id, name, amount, category, frequency, \
             added_by, status, created_at, updated_at) \
           SELECT * FROM UNNEST($8::uuid[], $9::uuid[], $10::text[], $11::numeric[], \
             $12::text[], $13::text[], $14::uuid[], $15::text[], $16::timestamptz[], \
             $17::timestamptz[]) \
           ON CONFLICT (partnership_id, id) DO UPDATE SET name = excluded.name, \
             amount = excluded.amount, category = excluded.category, \
             frequency = excluded.frequency, added_by = excluded.added_by, \
             status = excluded.status, created_at = excluded.created_at, \
             updated_at = excluded.updated_at) \
         SELECT partnership_id, count(*) FROM new_changes GROUP BY partnership_id",
    )
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
    .fetch_all(conn)
    .await
    .map_err(super::sync_rows::write_error)?;
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
