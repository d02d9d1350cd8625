//! Push-notification devices: an FCM registration token or a Web Push subscription per row,
//! owned by one user and tied to the session (refresh-token family) that registered it. The SQL
//! is written once in [`device_queries!`] (see the store module documentation).
//!
//! A token or an endpoint names one device, whoever holds it: registering it again (the same
//! phone signed in as the partner, or a browser that renewed its keys) updates the one row and
//! moves it to the caller.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::StoreError;

/// The kind of app a device runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DevicePlatform {
    /// An Android app (FCM).
    Android,
    /// An iOS app (FCM, which relays to APNs).
    Ios,
    /// A browser: Web Push, or a web app on the Firebase SDK (FCM).
    Web,
}

impl DevicePlatform {
    /// Every platform, in the order the API documents them.
    pub const ALL: [DevicePlatform; 3] = [
        DevicePlatform::Android,
        DevicePlatform::Ios,
        DevicePlatform::Web,
    ];

    /// The stored and serialized name.
    pub fn as_str(&self) -> &'static str {
        match self {
            DevicePlatform::Android => "android",
            DevicePlatform::Ios => "ios",
            DevicePlatform::Web => "web",
        }
    }
}

impl fmt::Display for DevicePlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DevicePlatform {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DevicePlatform::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| StoreError::Corrupt(format!("device platform {s:?}")))
    }
}

/// Where a device receives notifications.
#[derive(Clone, PartialEq, Eq)]
pub enum DeviceTarget {
    /// A Firebase Cloud Messaging registration token.
    Fcm {
        /// The token the app got from the FCM SDK.
        token: String,
    },
    /// A browser's Web Push subscription (`PushSubscription.toJSON()`).
    WebPush {
        /// The push service URL notifications are posted to.
        endpoint: String,
        /// The subscription's P-256 public key, uncompressed, base64url without padding.
        p256dh: String,
        /// The subscription's 16-byte authentication secret, base64url without padding.
        auth: String,
    },
}

impl DeviceTarget {
    /// The stored `kind`: `fcm` or `webpush`.
    pub fn kind(&self) -> &'static str {
        match self {
            DeviceTarget::Fcm { .. } => "fcm",
            DeviceTarget::WebPush { .. } => "webpush",
        }
    }
}

impl fmt::Debug for DeviceTarget {
    /// Leaves out the Web Push authentication secret: whoever holds it can read the device's
    /// notifications.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceTarget::Fcm { token } => f.debug_struct("Fcm").field("token", token).finish(),
            DeviceTarget::WebPush {
                endpoint, p256dh, ..
            } => f
                .debug_struct("WebPush")
                .field("endpoint", endpoint)
                .field("p256dh", p256dh)
                .field("auth", &"<redacted>")
                .finish(),
        }
    }
}

/// A device to register for the caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDevice {
    /// The kind of app.
    pub platform: DevicePlatform,
    /// Where it receives notifications. A Web Push subscription is always `Web`.
    pub target: DeviceTarget,
    /// The refresh-token family (the login) it registers under, when the caller's token says.
    pub session_id: Option<Uuid>,
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRecord {
    /// The device's id (kept when it is registered again).
    pub id: Uuid,
    /// Whom it notifies.
    pub user_id: Uuid,
    /// The kind of app.
    pub platform: DevicePlatform,
    /// Where it receives notifications.
    pub target: DeviceTarget,
    /// The refresh-token family that registered it last, if known: signing out of that session
    /// removes the device.
    pub session_id: Option<Uuid>,
    /// When it was last registered.
    pub created_at: DateTime<Utc>,
}

/// Generates the device queries of one backend, each taking the pool; expanded in the backend's
/// `devices` module, whose parent provides the backend's glue.
macro_rules! device_queries {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::Row as _;
        use uuid::Uuid;

        use super::Db;
        use $crate::store::{
            write_error, DeviceRecord, DeviceTarget, NewDevice, StoreError, StoreResult,
        };

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        const DEVICE_COLUMNS: &str =
            "id, user_id, platform, kind, fcm_token, endpoint, p256dh, auth, session_id, created_at";

        fn device_from_row(row: &DbRow) -> StoreResult<DeviceRecord> {
            let platform: String = row.try_get("platform")?;
            let kind: String = row.try_get("kind")?;
            let target = match kind.as_str() {
                "fcm" => DeviceTarget::Fcm {
                    token: row.try_get("fcm_token")?,
                },
                "webpush" => DeviceTarget::WebPush {
                    endpoint: row.try_get("endpoint")?,
                    p256dh: row.try_get("p256dh")?,
                    auth: row.try_get("auth")?,
                },
                other => return Err(StoreError::Corrupt(format!("device kind {other:?}"))),
            };
            Ok(DeviceRecord {
                id: row.try_get("id")?,
                user_id: row.try_get("user_id")?,
                platform: platform.parse()?,
                target,
                session_id: row.try_get("session_id")?,
                created_at: row.try_get("created_at")?,
            })
        }

        /// See `Store::register_device`. One statement: the token's or endpoint's unique column
        /// decides whether the row is new or the existing one is updated and moved.
        pub(in $crate::store) async fn register_device(
            pool: &Pool,
            user_id: Uuid,
            device: NewDevice,
            now: DateTime<Utc>,
        ) -> StoreResult<DeviceRecord> {
            let (fcm_token, endpoint, p256dh, auth) = match &device.target {
                DeviceTarget::Fcm { token } => (Some(token), None, None, None),
                DeviceTarget::WebPush {
                    endpoint,
                    p256dh,
                    auth,
                } => (None, Some(endpoint), Some(p256dh), Some(auth)),
            };
            let key = if fcm_token.is_some() { "fcm_token" } else { "endpoint" };
            let sql = format!(
                "INSERT INTO devices ({DEVICE_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT ({key}) DO UPDATE SET user_id = excluded.user_id, \
                 platform = excluded.platform, p256dh = excluded.p256dh, auth = excluded.auth, \
                 session_id = excluded.session_id, created_at = excluded.created_at \
                 RETURNING {DEVICE_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(Uuid::now_v7())
                .bind(user_id)
                .bind(device.platform.as_str())
                .bind(device.target.kind())
                .bind(fcm_token)
                .bind(endpoint)
                .bind(p256dh)
                .bind(auth)
                .bind(device.session_id)
                .bind(now)
                .fetch_one(pool)
                .await
                .map_err(write_error)?;
            device_from_row(&row)
        }

        /// See `Store::devices`.
        pub(in $crate::store) async fn devices(
            pool: &Pool,
            user_id: Uuid,
        ) -> StoreResult<Vec<DeviceRecord>> {
            let rows = sqlx::query(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = $1 ORDER BY created_at, id"
            ))
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter().map(device_from_row).collect()
        }

        /// See `Store::delete_device`.
        pub(in $crate::store) async fn delete_device(
            pool: &Pool,
            user_id: Uuid,
            id: Uuid,
        ) -> StoreResult<()> {
            let deleted = sqlx::query("DELETE FROM devices WHERE id = $1 AND user_id = $2")
                .bind(id)
                .bind(user_id)
                .execute(pool)
                .await?
                .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        }

        /// See `Store::delete_device_by_id`.
        pub(in $crate::store) async fn delete_device_by_id(
            pool: &Pool,
            id: Uuid,
        ) -> StoreResult<bool> {
            let deleted = sqlx::query("DELETE FROM devices WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected();
            Ok(deleted > 0)
        }

        /// See `Store::delete_session_devices`.
        pub(in $crate::store) async fn delete_session_devices(
            pool: &Pool,
            user_id: Uuid,
            session_id: Uuid,
        ) -> StoreResult<u64> {
            Ok(
                sqlx::query("DELETE FROM devices WHERE user_id = $1 AND session_id = $2")
                    .bind(user_id)
                    .bind(session_id)
                    .execute(pool)
                    .await?
                    .rows_affected(),
            )
        }
    };
}

pub(super) use device_queries;
