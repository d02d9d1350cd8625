//! Push-notification device tokens. The SQL is written once in [`device_queries!`] (see the
//! store module documentation).

/// Generates the device-token queries of one backend; expanded in the backend's `devices`
/// module, whose parent provides the backend's glue.
macro_rules! device_queries {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::Row as _;
        use uuid::Uuid;

        use super::Db;
        use $crate::store::{write_error, DeviceTokenRecord, StoreResult};

        type Pool = sqlx::Pool<Db>;

        /// See `Store::register_device_token`.
        pub(in $crate::store) async fn register_device_token(
            pool: &Pool,
            user_id: Uuid,
            token: &str,
            platform: &str,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO device_tokens (token, user_id, platform, created_at) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (token) DO UPDATE SET \
                 user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, \
                 created_at = EXCLUDED.created_at",
            )
            .bind(token)
            .bind(user_id)
            .bind(platform)
            .bind(now)
            .execute(pool)
            .await
            .map_err(write_error)?;
            Ok(())
        }

        /// See `Store::remove_device_token`.
        pub(in $crate::store) async fn remove_device_token(
            pool: &Pool,
            user_id: Uuid,
            token: &str,
        ) -> StoreResult<()> {
            sqlx::query("DELETE FROM device_tokens WHERE user_id = $1 AND token = $2")
                .bind(user_id)
                .bind(token)
                .execute(pool)
                .await?;
            Ok(())
        }

        /// See `Store::device_tokens`.
        pub(in $crate::store) async fn device_tokens(
            pool: &Pool,
            user_id: Uuid,
        ) -> StoreResult<Vec<DeviceTokenRecord>> {
            let rows = sqlx::query(
                "SELECT user_id, token, platform, created_at FROM device_tokens \
                 WHERE user_id = $1 ORDER BY created_at, token",
            )
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(DeviceTokenRecord {
                        user_id: row.try_get("user_id")?,
                        token: row.try_get("token")?,
                        platform: row.try_get("platform")?,
                        created_at: row.try_get("created_at")?,
                    })
                })
                .collect()
        }
    };
}

pub(super) use device_queries;
