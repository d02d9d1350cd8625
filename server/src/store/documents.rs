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

        use super::{begin_write, delete_changes, Db};
        use $crate::store::{write_error, NewChange, NewSnapshot, StoreResult};

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
                 created_at) VALUES ($1, $2, $3, $4, $5) RETURNING id",
            )
            .bind(partnership_id)
            .bind(&snapshot.bytes)
            .bind(snapshot.heads.join(","))
            .bind(snapshot.change_count)
            .bind(now)
            .fetch_one(&mut **tx)
            .await
            .map_err(write_error)
        }

        /// See `Store::load_document`.
        pub(in $crate::store) async fn load_document(
            pool: &Pool,
            partnership_id: Uuid,
        ) -> StoreResult<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
            // Changes first, then the snapshot: a compaction committing in between leaves us
            // with the new snapshot plus changes it already contains, which loading tolerates;
            // the other order could lose the changes it deleted.
            let changes: Vec<Vec<u8>> = sqlx::query_scalar(
                "SELECT bytes FROM doc_changes WHERE partnership_id = $1 ORDER BY id",
            )
            .bind(partnership_id)
            .fetch_all(pool)
            .await?;
            let snapshot: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT bytes FROM doc_snapshots WHERE partnership_id = $1 \
                 ORDER BY id DESC LIMIT 1",
            )
            .bind(partnership_id)
            .fetch_optional(pool)
            .await?;
            Ok((snapshot, changes))
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
        ) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            let id = insert_snapshot(&mut tx, partnership_id, &snapshot, now).await?;
            sqlx::query("DELETE FROM doc_snapshots WHERE partnership_id = $1 AND id < $2")
                .bind(partnership_id)
                .bind(id)
                .execute(&mut *tx)
                .await?;
            delete_changes(&mut tx, partnership_id, covered).await?;
            tx.commit().await?;
            Ok(())
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
