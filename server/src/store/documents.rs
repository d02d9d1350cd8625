//! Documents: each partnership's latest snapshot and the changes received since, compaction,
//! and the actor ids bound to its members. The SQL is written once in [`document_queries!`]
//! (see the store module documentation); a change and an actor binding are written by the same
//! statements as a merge commit's (`sync`).

/// Generates the document queries of one backend; expanded in the backend's `documents`
/// module, whose parent provides the backend's glue.
macro_rules! document_queries {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::Transaction;
        use uuid::Uuid;

        use super::{begin_read, begin_write, delete_changes, Db, FOR_UPDATE};
        use $crate::store::{
            write_error, DocumentTail, NewChange, NewSnapshot, StoreError, StoreResult,
            StoredChange, StoredDocument,
        };

        type Pool = sqlx::Pool<Db>;

        /// Stores a snapshot in the caller's transaction; its id. `NotFound` when the
        /// partnership is gone.
        pub(in $crate::store) async fn insert_snapshot(
            tx: &mut Transaction<'_, Db>,
            partnership_id: Uuid,
            snapshot: &NewSnapshot,
            now: DateTime<Utc>,
        ) -> StoreResult<i64> {
            sqlx::query_scalar(
                "INSERT INTO doc_snapshots (partnership_id, bytes, heads, change_count, \
                 version, created_at) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(partnership_id)
            .bind(&snapshot.bytes)
            .bind(snapshot.heads.join(","))
            .bind(snapshot.change_count)
            .bind(snapshot.version)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .map_err(write_error)
        }

        /// The latest committed version, in the caller's transaction.
        async fn version_in(
            tx: &mut Transaction<'_, Db>,
            partnership_id: Uuid,
        ) -> StoreResult<i64> {
            let version: Option<i64> = sqlx::query_scalar(
                "SELECT max(version) FROM doc_commits WHERE partnership_id = $1",
            )
            .bind(partnership_id)
            .fetch_one(&mut **tx)
            .await?;
            Ok(version.unwrap_or(0))
        }

        /// The changes stored after row id `after`, in the caller's transaction.
        async fn changes_after(
            tx: &mut Transaction<'_, Db>,
            partnership_id: Uuid,
            after: i64,
        ) -> StoreResult<Vec<StoredChange>> {
            let rows: Vec<(i64, Option<Uuid>, Vec<u8>)> = sqlx::query_as(
                "SELECT id, user_id, bytes FROM doc_changes \
                 WHERE partnership_id = $1 AND id > $2 ORDER BY id",
            )
            .bind(partnership_id)
            .bind(after)
            .fetch_all(&mut **tx)
            .await?;
            Ok(rows
                .into_iter()
                .map(|(id, user_id, bytes)| StoredChange { id, user_id, bytes })
                .collect())
        }

        /// The latest snapshot's id, in the caller's transaction.
        async fn latest_snapshot_id(
            tx: &mut Transaction<'_, Db>,
            partnership_id: Uuid,
        ) -> StoreResult<Option<i64>> {
            Ok(sqlx::query_scalar(
                "SELECT id FROM doc_snapshots WHERE partnership_id = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(partnership_id)
            .fetch_optional(&mut **tx)
            .await?)
        }

        /// See `Store::stored_document`. One read transaction: the version, the snapshot and
        /// the changes are of one instant, so the content is exactly that version's.
        pub(in $crate::store) async fn stored_document(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<StoredDocument> {
            let mut tx = begin_read(pool).await?;
            let version = version_in(&mut tx, partnership_id).await?;
            let changes = changes_after(&mut tx, partnership_id, 0).await?;
            let snapshot: Option<(i64, Vec<u8>)> = sqlx::query_as(
                "SELECT id, bytes FROM doc_snapshots WHERE partnership_id = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(partnership_id)
            .fetch_optional(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(StoredDocument {
                version,
                snapshot,
                changes,
            })
        }

        /// See `Store::document_tail`.
        pub(in $crate::store) async fn document_tail(
            pool: &Pool,
            partnership_id: Uuid,
            snapshot_id: i64,
            after: i64,
        ) -> StoreResult<DocumentTail> {
            let mut tx = begin_read(pool).await?;
            if latest_snapshot_id(&mut tx, partnership_id).await? != Some(snapshot_id) {
                return Ok(DocumentTail::Compacted);
            }
            let version = version_in(&mut tx, partnership_id).await?;
            let changes = changes_after(&mut tx, partnership_id, after).await?;
            tx.commit().await?;
            Ok(DocumentTail::Changes { version, changes })
        }

        /// See `Store::document_version`.
        pub(in $crate::store) async fn document_version(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<i64> {
            let version: Option<i64> = sqlx::query_scalar(
                "SELECT max(version) FROM doc_commits WHERE partnership_id = $1",
            )
            .bind(partnership_id)
            .fetch_one(pool)
            .await?;
            Ok(version.unwrap_or(0))
        }

        /// See `Store::append_changes`.
        pub(in $crate::store) async fn append_changes(
            pool: &Pool,
            partnership_id: Uuid,
            changes: &[NewChange],
            now: DateTime<Utc>,
        ) -> StoreResult<u64> {
            let mut tx = begin_write(pool).await?;
            let mut inserted = 0;
            for change in changes {
                inserted +=
                    super::sync::insert_change(&mut tx, partnership_id, change, now).await?;
            }
            tx.commit().await?;
            Ok(inserted)
        }

        /// See `Store::compact`.
        pub(in $crate::store) async fn compact(
            pool: &Pool,
            partnership_id: Uuid,
            snapshot: NewSnapshot,
            covered: &[String],
            now: DateTime<Utc>,
        ) -> StoreResult<Option<i64>> {
            let mut tx = begin_write(pool).await?;
            // One compaction of a document at a time, whichever node runs it.
            let partnership: Option<Uuid> = sqlx::query_scalar(&format!(
                "SELECT id FROM partnerships WHERE id = $1{FOR_UPDATE}"
            ))
            .bind(partnership_id)
            .fetch_optional(&mut *tx)
            .await?;
            if partnership.is_none() {
                return Err(StoreError::NotFound);
            }
            let newest: Option<i64> = sqlx::query_scalar(
                "SELECT max(version) FROM doc_snapshots WHERE partnership_id = $1",
            )
            .bind(partnership_id)
            .fetch_one(&mut *tx)
            .await?;
            // A snapshot of the same version holds exactly the same changes: replacing it is
            // harmless (and the covered changes it holds may go).
            if newest.is_some_and(|v| v > snapshot.version) {
                return Ok(None);
            }
            let id = insert_snapshot(&mut tx, partnership_id, &snapshot, now).await?;
            sqlx::query("DELETE FROM doc_snapshots WHERE partnership_id = $1 AND id <> $2")
                .bind(partnership_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            delete_changes(&mut tx, partnership_id, covered).await?;
            // The latest commit's version is at least the snapshot's: it stays.
            sqlx::query("DELETE FROM doc_commits WHERE partnership_id = $1 AND version < $2")
                .bind(partnership_id)
                .bind(snapshot.version)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(Some(id))
        }

        /// See `Store::bind_actor`.
        pub(in $crate::store) async fn bind_actor(
            pool: &Pool,
            partnership_id: Uuid,
            actor_id: &str,
            user_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            super::sync::bind_actor(&mut tx, partnership_id, actor_id, user_id, now).await?;
            tx.commit().await?;
            Ok(())
        }

        /// See `Store::actor_bindings`.
        pub(in $crate::store) async fn actor_bindings(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<Vec<(String, Uuid)>> {
            Ok(sqlx::query_as(
                "SELECT actor_id, user_id FROM actor_bindings WHERE partnership_id = $1 \
                 ORDER BY actor_id",
            )
            .bind(partnership_id)
            .fetch_all(pool)
            .await?)
        }

        /// See `Store::actor_owner`.
        pub(in $crate::store) async fn actor_owner<'e, E>(
            executor: E,
            partnership_id: Uuid,
            actor_id: &str,
        ) -> StoreResult<Option<Uuid>>
        where
            E: sqlx::Executor<'e, Database = Db>,
        {
            Ok(sqlx::query_scalar(
                "SELECT user_id FROM actor_bindings WHERE partnership_id = $1 AND actor_id = $2",
            )
            .bind(partnership_id)
            .bind(actor_id.to_ascii_lowercase())
            .fetch_optional(executor)
            .await?)
        }
    };
}

pub(super) use document_queries;
