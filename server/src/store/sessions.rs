//! Sessions: refresh tokens (rotation, revocation) and password resets, with the password change
//! both end in. The SQL is written once in [`session_queries!`] (see the store module
//! documentation).

/// Generates the refresh-token and password-reset queries of one backend; expanded in the
/// backend's `sessions` module, whose parent provides the backend's glue.
macro_rules! session_queries {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::{Row as _, Transaction};
        use uuid::Uuid;

        use super::{begin_write, Db, FOR_UPDATE};
        use $crate::store::{
            write_error, NewPasswordReset, NewRefreshToken, RefreshTokenRecord, StoreError,
            StoreResult,
        };

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        fn refresh_from_row(row: &DbRow) -> StoreResult<RefreshTokenRecord> {
            Ok(RefreshTokenRecord {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                family_id: row.try_get("family_id")?,
                token_hash: row.try_get("token_hash")?,
                expires_at: row.try_get("expires_at")?,
                created_at: row.try_get("created_at")?,
                used_at: row.try_get("used_at")?,
                revoked_at: row.try_get("revoked_at")?,
            })
        }

        /// Revokes refresh tokens not revoked yet: the user's (`column` `user_id`), a family's
        /// (`family_id`) or one (`id`).
        async fn revoke_refresh<'e, E>(
            executor: E,
            column: &str,
            id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<()>
        where
            E: sqlx::Executor<'e, Database = Db>,
        {
            sqlx::query(&format!(
                "UPDATE refresh_tokens SET revoked_at = $2 \
                 WHERE {column} = $1 AND revoked_at IS NULL"
            ))
            .bind(id)
            .bind(now)
            .execute(executor)
            .await?;
            Ok(())
        }

        /// Sets a new password hash, bumps the token version and revokes every refresh token of
        /// the user, in the caller's transaction; the new token version.
        pub(in $crate::store) async fn bump_password(
            tx: &mut Transaction<'_, Db>,
            user_id: Uuid,
            password_hash: &str,
            now: DateTime<Utc>,
        ) -> StoreResult<i64> {
            let version: Option<i64> = sqlx::query_scalar(
                "UPDATE users SET password_hash = $2, token_version = token_version + 1, \
                 updated_at = $3 WHERE id = $1 RETURNING token_version",
            )
            .bind(user_id)
            .bind(password_hash)
            .bind(now)
            .fetch_optional(&mut **tx)
            .await?;
            let version = version.ok_or(StoreError::NotFound)?;
            revoke_refresh(&mut **tx, "user_id", user_id, now).await?;
            Ok(version)
        }

        async fn insert_refresh(
            tx: &mut Transaction<'_, Db>,
            t: &NewRefreshToken,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(t.id)
            .bind(t.user_id)
            .bind(t.family_id)
            .bind(&t.token_hash)
            .bind(t.expires_at)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(write_error)?;
            Ok(())
        }

        /// See `Store::insert_refresh_token`.
        pub(in $crate::store) async fn insert_refresh_token(
            pool: &Pool,
            token: NewRefreshToken,
        ) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            insert_refresh(&mut tx, &token, Utc::now()).await?;
            tx.commit().await?;
            Ok(())
        }

        /// See `Store::refresh_token_by_hash`.
        pub(in $crate::store) async fn refresh_token_by_hash(
            pool: &Pool,
            token_hash: &str,
        ) -> StoreResult<Option<RefreshTokenRecord>> {
            let row = sqlx::query(
                "SELECT id, user_id, family_id, token_hash, expires_at, created_at, used_at, \
                 revoked_at FROM refresh_tokens WHERE token_hash = $1",
            )
            .bind(token_hash)
            .fetch_optional(pool)
            .await?;
            row.as_ref().map(refresh_from_row).transpose()
        }

        /// See `Store::rotate_refresh_token`.
        pub(in $crate::store) async fn rotate_refresh_token(
            pool: &Pool,
            old_id: Uuid,
            new: NewRefreshToken,
            now: DateTime<Utc>,
        ) -> StoreResult<bool> {
            let mut tx = begin_write(pool).await?;
            let marked = sqlx::query(
                "UPDATE refresh_tokens SET used_at = $2 \
                 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL",
            )
            .bind(old_id)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if marked == 0 {
                tx.rollback().await?;
                return Ok(false);
            }
            insert_refresh(&mut tx, &new, now).await?;
            tx.commit().await?;
            Ok(true)
        }

        /// See `Store::revoke_refresh_token`.
        pub(in $crate::store) async fn revoke_refresh_token(
            pool: &Pool,
            id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            revoke_refresh(pool, "id", id, now).await
        }

        /// See `Store::revoke_refresh_family`.
        pub(in $crate::store) async fn revoke_refresh_family(
            pool: &Pool,
            family_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            revoke_refresh(pool, "family_id", family_id, now).await
        }

        /// See `Store::insert_password_reset`.
        pub(in $crate::store) async fn insert_password_reset(
            pool: &Pool,
            reset: NewPasswordReset,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO password_resets (id, user_id, token_hash, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(reset.id)
            .bind(reset.user_id)
            .bind(&reset.token_hash)
            .bind(reset.expires_at)
            .bind(Utc::now())
            .execute(pool)
            .await
            .map_err(write_error)?;
            Ok(())
        }

        /// See `Store::complete_password_reset`.
        pub(in $crate::store) async fn complete_password_reset(
            pool: &Pool,
            token_hash: &str,
            password_hash: &str,
            now: DateTime<Utc>,
        ) -> StoreResult<Option<Uuid>> {
            let mut tx = begin_write(pool).await?;
            let row = sqlx::query(&format!(
                "SELECT user_id, expires_at, used_at FROM password_resets \
                 WHERE token_hash = $1{FOR_UPDATE}"
            ))
            .bind(token_hash)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let user_id: Uuid = row.try_get("user_id")?;
            let expires_at: DateTime<Utc> = row.try_get("expires_at")?;
            let used_at: Option<DateTime<Utc>> = row.try_get("used_at")?;
            if used_at.is_some() || expires_at <= now {
                return Ok(None);
            }
            // Every outstanding reset of this user dies with the one used.
            sqlx::query(
                "UPDATE password_resets SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL",
            )
            .bind(user_id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            bump_password(&mut tx, user_id, password_hash, now).await?;
            tx.commit().await?;
            Ok(Some(user_id))
        }
    };
}

pub(super) use session_queries;
