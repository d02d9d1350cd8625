//! Users: registration, lookup, profile and income, activity, password change, account deletion.
//! The SQL is written once in [`user_queries!`] (see the store module documentation).

/// Generates the user queries of one backend, each taking the pool; expanded in the backend's
/// `users` module, whose parent provides the backend's glue.
macro_rules! user_queries {
    () => {
        use chrono::{DateTime, Utc};
        use rust_decimal::Decimal;
        use sqlx::Row as _;
        use uuid::Uuid;

        use super::{begin_write, lock_users, money, read_optional_money, Db};
        use $crate::store::{
            normalize_email, write_error, NewUser, ProfileUpdate, StoreError, StoreResult,
            UserRecord,
        };

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        const USER_COLUMNS: &str = "id, email, password_hash, name, income, currency, country, \
                                    payday, avatar_url, personal_allowance, token_version, \
                                    last_seen, created_at, updated_at";

        fn user_from_row(row: &DbRow) -> StoreResult<UserRecord> {
            Ok(UserRecord {
                id: row.try_get("id")?,
                email: row.try_get("email")?,
                password_hash: row.try_get("password_hash")?,
                name: row.try_get("name")?,
                income: read_optional_money(row, "income")?,
                currency: row.try_get("currency")?,
                country: row.try_get("country")?,
                payday: row.try_get("payday")?,
                avatar_url: row.try_get("avatar_url")?,
                personal_allowance: read_optional_money(row, "personal_allowance")?,
                token_version: row.try_get("token_version")?,
                last_seen: row.try_get("last_seen")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        /// See `Store::create_user`.
        pub(in $crate::store) async fn create_user(
            pool: &Pool,
            u: NewUser,
        ) -> StoreResult<UserRecord> {
            let now = Utc::now();
            let sql = format!(
                "INSERT INTO users (id, email, password_hash, name, income, currency, country, \
                 payday, avatar_url, personal_allowance, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) \
                 RETURNING {USER_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(u.id)
                .bind(normalize_email(&u.email))
                .bind(&u.password_hash)
                .bind(&u.name)
                .bind(u.income.map(money))
                .bind(&u.currency)
                .bind(&u.country)
                .bind(&u.payday)
                .bind(&u.avatar_url)
                .bind(u.personal_allowance.map(money))
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(write_error)?;
            user_from_row(&row)
        }

        /// See `Store::user_by_id` and `Store::user_by_email` (`column` is `id` or `email`).
        pub(in $crate::store) async fn user_by<T>(
            pool: &Pool,
            column: &str,
            value: T,
        ) -> StoreResult<Option<UserRecord>>
        where
            T: for<'q> sqlx::Encode<'q, Db> + sqlx::Type<Db> + Send,
        {
            let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = $1");
            let row = sqlx::query(&sql).bind(value).fetch_optional(pool).await?;
            row.as_ref().map(user_from_row).transpose()
        }

        /// See `Store::set_password`.
        pub(in $crate::store) async fn set_password(
            pool: &Pool,
            user_id: Uuid,
            password_hash: &str,
        ) -> StoreResult<i64> {
            let mut tx = begin_write(pool).await?;
            let version =
                super::sessions::bump_password(&mut tx, user_id, password_hash, Utc::now())
                    .await?;
            tx.commit().await?;
            Ok(version)
        }

        /// See `Store::update_profile`. A clearable field is a flag (whether to set it) and its
        /// new value, so that `NULL` can be written, which `COALESCE` could not tell from
        /// "unchanged".
        pub(in $crate::store) async fn update_profile(
            pool: &Pool,
            user_id: Uuid,
            update: ProfileUpdate,
        ) -> StoreResult<UserRecord> {
            let sql = format!(
                "UPDATE users SET name = COALESCE($2, name), currency = COALESCE($3, currency), \
                 country = CASE WHEN $4 THEN $5 ELSE country END, \
                 payday = CASE WHEN $6 THEN $7 ELSE payday END, \
                 avatar_url = CASE WHEN $8 THEN $9 ELSE avatar_url END, \
                 personal_allowance = CASE WHEN $10 THEN $11 ELSE personal_allowance END, \
                 updated_at = $12 \
                 WHERE id = $1 RETURNING {USER_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(user_id)
                .bind(update.name)
                .bind(update.currency)
                .bind(update.country.is_some())
                .bind(update.country.flatten())
                .bind(update.payday.is_some())
                .bind(update.payday.flatten())
                .bind(update.avatar_url.is_some())
                .bind(update.avatar_url.flatten())
                .bind(update.personal_allowance.is_some())
                .bind(update.personal_allowance.flatten().map(money))
                .bind(Utc::now())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            user_from_row(&row)
        }

        /// See `Store::update_income`.
        pub(in $crate::store) async fn update_income(
            pool: &Pool,
            user_id: Uuid,
            income: Option<Decimal>,
        ) -> StoreResult<UserRecord> {
            let sql = format!(
                "UPDATE users SET income = $2, updated_at = $3 WHERE id = $1 \
                 RETURNING {USER_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(user_id)
                .bind(income.map(money))
                .bind(Utc::now())
                .fetch_optional(pool)
                .await?
                .ok_or(StoreError::NotFound)?;
            user_from_row(&row)
        }

        /// See `Store::touch_last_seen`.
        pub(in $crate::store) async fn touch_last_seen(
            pool: &Pool,
            user_id: Uuid,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "UPDATE users SET last_seen = $2 \
                 WHERE id = $1 AND (last_seen IS NULL OR last_seen < $2)",
            )
            .bind(user_id)
            .bind(now)
            .execute(pool)
            .await?;
            Ok(())
        }

        /// See `Store::delete_user`.
        pub(in $crate::store) async fn delete_user(pool: &Pool, user_id: Uuid) -> StoreResult<()> {
            let mut tx = begin_write(pool).await?;
            // Lock the partner too, so no invitation or acceptance of theirs interleaves.
            let partners: Vec<Uuid> = sqlx::query_scalar(
                "SELECT CASE WHEN user1_id = $1 THEN user2_id ELSE user1_id END FROM partnerships \
                 WHERE (user1_id = $1 OR user2_id = $1) AND user2_id IS NOT NULL",
            )
            .bind(user_id)
            .fetch_all(&mut *tx)
            .await?;
            let mut ids = partners;
            ids.push(user_id);
            lock_users(&mut tx, &ids).await?;
            sqlx::query("DELETE FROM partnerships WHERE user1_id = $1 OR user2_id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            let deleted = sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            tx.commit().await?;
            Ok(())
        }
    };
}

pub(super) use user_queries;
