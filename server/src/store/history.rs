//! History entries (`history_entries`): what each change of a partnership's document did to
//! each entity, derived by sync-core ([`splitsave_sync_core::history`]) and written with the
//! merge's commit ([`MergeCommit::history`](super::MergeCommit::history)) in its transaction, so
//! the index never holds an entry of a change that is not stored, nor misses one that is.
//!
//! Read newest first by `id` (the keyset cursor): a page is one index range scan on
//! `(partnership_id, id)` (or the entity's, author's or kind's index when filtered), however
//! many entries the couple has. Like the materialized rows it is derived: `replace_history`
//! writes a partnership's entries again from its document (`splitsave rebuild-history`).
//!
//! The SQL is written once in [`history_queries!`] (see the store module documentation).

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// One entry to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewHistoryEntry {
    /// The change (hex hash).
    pub change_hash: String,
    /// Who made it; `None` for the server's own changes.
    pub author_id: Option<Uuid>,
    /// `expense`, `goal`, ... ([`splitsave_sync_core::history::Kind`]).
    pub kind: &'static str,
    /// The entity's key.
    pub entity_id: String,
    /// `created`, `changed` or `removed`.
    pub action: &'static str,
    /// For the server's own changes, why.
    pub reason: Option<String>,
    /// The change's own time.
    pub changed_at: Option<DateTime<Utc>>,
    /// The field changes as a JSON array of `{field, old, new}`.
    pub fields: String,
}

impl NewHistoryEntry {
    /// The stored form of sync-core's entry, made by `author_id` (resolved by the caller:
    /// sync-core knows a device's actor, the server its binding to a user).
    pub fn from_entry(e: &splitsave_sync_core::history::Entry, author_id: Option<Uuid>) -> Self {
        NewHistoryEntry {
            change_hash: e.change.to_string(),
            author_id,
            kind: e.kind.as_str(),
            entity_id: e.entity.clone(),
            action: e.action.as_str(),
            reason: e.reason.clone(),
            changed_at: e
                .changed_at
                .and_then(|t| DateTime::from_timestamp_millis(t.0)),
            fields: serde_json::to_string(&e.fields).unwrap_or_else(|_| "[]".into()),
        }
    }
}

/// When the server received the change of an entry written outside a merge's commit (a
/// rebuild): the stored receive time, or the change's own time when compaction dropped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The time.
    pub at: DateTime<Utc>,
    /// Whether it is the real receive time.
    pub exact: bool,
}

/// One stored entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HistoryRecord {
    /// Its position (newest is largest): the keyset cursor.
    pub id: i64,
    /// The entry as written.
    pub entry: NewHistoryEntry,
    /// When the server received the change.
    pub received: Received,
}

/// Whose changes a listing keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorFilter {
    /// One user's.
    User(Uuid),
    /// The server's own.
    Server,
}

/// A page of history: filters, where to continue, how many.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Only this kind (`expense`, ...).
    pub kind: Option<&'static str>,
    /// Only this entity.
    pub entity_id: Option<String>,
    /// Only this author.
    pub author: Option<AuthorFilter>,
    /// Only changes made at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only changes made before this time.
    pub to: Option<DateTime<Utc>>,
    /// Only entries older than this one (the previous page's last `id`).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: u32,
}

/// The columns an entry is read with, in [`history_queries!`]'s decoding order.
pub(super) const HISTORY_COLUMNS: &str = "id, change_hash, author_id, kind, entity_id, action, \
     reason, changed_at, received_at, received_exact, fields";

/// The kind or action spelled `s` in sync-core's vocabulary, as the `'static` spelling entries
/// carry (a stored value outside it reads as `"unknown"`).
pub(super) fn spelling(s: &str, all: &[&'static str]) -> &'static str {
    all.iter().copied().find(|k| *k == s).unwrap_or("unknown")
}

/// Generates `insert_entries` (inside the caller's transaction), `history_page`,
/// `replace_history` and `received_times` for one backend; expanded in the backend's
/// `history` module, whose parent provides the backend's glue.
macro_rules! history_queries {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::{Row as _, Transaction};
        use uuid::Uuid;

        use super::{begin_write, Db};
        use $crate::store::history::{spelling, HISTORY_COLUMNS};
        use $crate::store::{
            write_error, AuthorFilter, HistoryQuery, HistoryRecord, NewHistoryEntry, Received,
            StoreResult,
        };

        type Pool = sqlx::Pool<Db>;
        type Tx<'c> = Transaction<'c, Db>;

        /// Writes entries received at `received`; an entry of a change already indexed is
        /// left as it is (a change committed again writes nothing twice).
        pub(in $crate::store) async fn insert_entries(
            tx: &mut Tx<'_>,
            partnership_id: Uuid,
            entries: &[NewHistoryEntry],
            received: &Received,
        ) -> StoreResult<()> {
            for e in entries {
                sqlx::query(
                    "INSERT INTO history_entries (partnership_id, change_hash, author_id, kind, \
                     entity_id, action, reason, changed_at, received_at, received_exact, fields) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                     ON CONFLICT (partnership_id, change_hash, kind, entity_id) DO NOTHING",
                )
                .bind(partnership_id)
                .bind(&e.change_hash)
                .bind(e.author_id)
                .bind(e.kind)
                .bind(&e.entity_id)
                .bind(e.action)
                .bind(&e.reason)
                .bind(e.changed_at)
                .bind(received.at)
                .bind(received.exact)
                .bind(&e.fields)
                .execute(&mut **tx)
                .await
                .map_err(write_error)?;
            }
            Ok(())
        }

        /// See `Store::history_page`.
        pub(in $crate::store) async fn history_page(
            pool: &Pool,
            partnership_id: Uuid,
            q: &HistoryQuery,
        ) -> StoreResult<Vec<HistoryRecord>> {
            let mut sql = format!(
                "SELECT {HISTORY_COLUMNS} FROM history_entries WHERE partnership_id = $1"
            );
            let mut n = 1;
            let mut next = |cond: &str, sql: &mut String| {
                n += 1;
                sql.push_str(&format!(" AND {cond} ${n}"));
            };
            if q.kind.is_some() {
                next("kind =", &mut sql);
            }
            if q.entity_id.is_some() {
                next("entity_id =", &mut sql);
            }
            match q.author {
                Some(AuthorFilter::User(_)) => next("author_id =", &mut sql),
                Some(AuthorFilter::Server) => sql.push_str(" AND author_id IS NULL"),
                None => {}
            }
            if q.from.is_some() {
                next("changed_at >=", &mut sql);
            }
            if q.to.is_some() {
                next("changed_at <", &mut sql);
            }
            if q.before_id.is_some() {
                next("id <", &mut sql);
            }
            sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", q.limit));
            let mut query = sqlx::query(&sql).bind(partnership_id);
            if let Some(kind) = q.kind {
                query = query.bind(kind);
            }
            if let Some(entity) = &q.entity_id {
                query = query.bind(entity);
            }
            if let Some(AuthorFilter::User(user)) = q.author {
                query = query.bind(user);
            }
            if let Some(from) = q.from {
                query = query.bind(from);
            }
            if let Some(to) = q.to {
                query = query.bind(to);
            }
            if let Some(before) = q.before_id {
                query = query.bind(before);
            }
            let rows = query.fetch_all(pool).await?;
            let kinds: Vec<&'static str> = splitsave_sync_core::history::Kind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect();
            rows.iter()
                .map(|row| {
                    let kind: String = row.try_get("kind")?;
                    let action: String = row.try_get("action")?;
                    Ok(HistoryRecord {
                        id: row.try_get("id")?,
                        entry: NewHistoryEntry {
                            change_hash: row.try_get("change_hash")?,
                            author_id: row.try_get("author_id")?,
                            kind: spelling(&kind, &kinds),
                            entity_id: row.try_get("entity_id")?,
                            action: spelling(&action, &["created", "changed", "removed"]),
                            reason: row.try_get("reason")?,
                            changed_at: row.try_get("changed_at")?,
                            fields: row.try_get("fields")?,
                        },
                        received: Received {
                            at: row.try_get("received_at")?,
                            exact: row.try_get("received_exact")?,
                        },
                    })
                })
                .collect()
        }

        /// See `Store::replace_history`.
        pub(in $crate::store) async fn replace_history(
            pool: &Pool,
            partnership_id: Uuid,
            from_version: i64,
            entries: &[(NewHistoryEntry, Received)],
        ) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            // The next version, as a merge commit takes it (see `rebuild_materialized`): a merge
            // committed since the entries were derived fails this with `Conflict::Stale`, and a
            // server's merge made meanwhile commits again after it.
            sqlx::query(
                "INSERT INTO doc_commits (partnership_id, version, committed_at) \
                 VALUES ($1, $2, $3)",
            )
            .bind(partnership_id)
            .bind(from_version + 1)
            .bind(Utc::now())
            .execute(&mut *tx)
            .await
            .map_err(write_error)?;
            sqlx::query("DELETE FROM history_entries WHERE partnership_id = $1")
                .bind(partnership_id)
                .execute(&mut *tx)
                .await?;
            for (entry, received) in entries {
                insert_entries(&mut tx, partnership_id, std::slice::from_ref(entry), received)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        }

        /// See `Store::analyze_history` (`ANALYZE` is the same statement on both backends).
        pub(in $crate::store) async fn analyze(pool: &Pool) -> StoreResult<()> {
            sqlx::query("ANALYZE history_entries").execute(pool).await?;
            Ok(())
        }

        /// See `Store::received_times`.
        pub(in $crate::store) async fn received_times(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
            Ok(sqlx::query_as(
                "SELECT hash, received_at FROM doc_changes WHERE partnership_id = $1",
            )
            .bind(partnership_id)
            .fetch_all(pool)
            .await?)
        }
    };
}
pub(super) use history_queries;
