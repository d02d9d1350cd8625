//! Notifications: each user's preferences, and the durable outbox a sender works through. The
//! SQL is written once in [`notification_queries!`] (see the store module documentation).
//!
//! The outbox's life cycle, as the store sees it:
//! 1. a merge commit (`MergeCommit::notifications`) or [`Store::enqueue_notifications`] writes a
//!    row per recipient and event, in the transaction of the write that caused it; the same
//!    (recipient, `dedupe_key`) is one row, however often it is enqueued while pending;
//! 2. [`Store::claim_notifications`] hands due rows to one sender until its lease ends (on
//!    PostgreSQL with `FOR UPDATE SKIP LOCKED`: two nodes never claim one row; a claim whose
//!    lease lapsed, a sender that crashed, is claimed again), with the devices it already
//!    reached ([`Store::record_delivery`]), so that no device gets it twice;
//! 3. the sender deletes the row once done ([`Store::finish_notification`]), or moves its next
//!    attempt ([`Store::retry_notification`]) until its `give_up_at`.
//!
//! [`Store::enqueue_notifications`]: super::Store::enqueue_notifications
//! [`Store::claim_notifications`]: super::Store::claim_notifications
//! [`Store::record_delivery`]: super::Store::record_delivery
//! [`Store::finish_notification`]: super::Store::finish_notification
//! [`Store::retry_notification`]: super::Store::retry_notification

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What a notification is about (sync-core's, which derives them from merges): users turn
/// kinds off one by one (their [`NotificationPreferences`]).
pub use splitsave_sync_core::notifications::NotificationKind;

/// What one user wants to be notified of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotificationPreferences {
    /// The kinds turned off; every other kind is on.
    pub disabled: BTreeSet<NotificationKind>,
    /// Whether amounts and names may appear on the lock screen. Off, a notification says only
    /// who did what ("Ann asked for your approval") and carries ids.
    pub show_details: bool,
}

impl Default for NotificationPreferences {
    /// A user who never chose: every kind, with details.
    fn default() -> Self {
        NotificationPreferences {
            disabled: BTreeSet::new(),
            show_details: true,
        }
    }
}

impl NotificationPreferences {
    /// Whether the user wants notifications of this kind.
    pub fn wants(&self, kind: NotificationKind) -> bool {
        !self.disabled.contains(&kind)
    }

    /// The stored form of `disabled`: names, comma-separated, in [`NotificationKind`] order.
    pub(super) fn disabled_text(&self) -> String {
        let names: Vec<&str> = self.disabled.iter().map(|k| k.as_str()).collect();
        names.join(",")
    }

    /// Reads the stored form back. A name this build does not know (a kind a later version
    /// added, then rolled back) is left out rather than making the preferences unreadable.
    pub(super) fn from_stored(disabled: &str, show_details: bool) -> Self {
        NotificationPreferences {
            disabled: disabled
                .split(',')
                .filter_map(NotificationKind::parse)
                .collect(),
            show_details,
        }
    }
}

/// A notification to send, one per recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewNotification {
    /// The recipient.
    pub user_id: Uuid,
    /// The partnership it is about, if any: the row goes when the partnership does.
    pub partnership_id: Option<Uuid>,
    /// What it is about.
    pub kind: NotificationKind,
    /// Names the event (for example `approval_requested:<approval id>`): the same recipient and
    /// key enqueued again while the first is still in the outbox is skipped.
    pub dedupe_key: String,
    /// What the sender needs to build the message (JSON); the store keeps it as it is.
    pub payload: String,
    /// How long the sender may keep trying, from when it is enqueued.
    pub give_up_after: Duration,
}

/// A notification a sender claimed ([`Store::claim_notifications`](super::Store)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimedNotification {
    /// The outbox row.
    pub id: Uuid,
    /// The recipient.
    pub user_id: Uuid,
    /// The partnership it is about, if any.
    pub partnership_id: Option<Uuid>,
    /// What it is about.
    pub kind: NotificationKind,
    /// The payload it was enqueued with.
    pub payload: String,
    /// Attempts that failed so far.
    pub attempts: u32,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// After this, the sender drops it.
    pub give_up_at: DateTime<Utc>,
    /// The devices it already reached, by id (ordered): not to be sent to again.
    pub delivered: Vec<Uuid>,
}

/// The latest time both backends store and read back: 9999-12-31T23:59:59Z.
const LATEST: i64 = 253_402_300_799;

/// When a notification enqueued at `now` is given up: `now + after`, saturating at the latest
/// storable time.
pub(super) fn give_up_at(now: DateTime<Utc>, after: Duration) -> DateTime<Utc> {
    let latest = DateTime::from_timestamp(LATEST, 0).unwrap_or(DateTime::<Utc>::MAX_UTC);
    chrono::Duration::from_std(after)
        .ok()
        .and_then(|after| now.checked_add_signed(after))
        .map_or(latest, |at| at.min(latest))
}

/// `now + lease`, saturating like [`give_up_at`].
pub(super) fn lease_end(now: DateTime<Utc>, lease: Duration) -> DateTime<Utc> {
    give_up_at(now, lease)
}

/// The outbox's columns as a new row is written, in bind order.
pub(super) const OUTBOX_COLUMNS: &str = "id, user_id, partnership_id, kind, dedupe_key, payload, \
                                         created_at, next_attempt_at, attempts, give_up_at";

/// What a new outbox row whose (recipient, dedupe key) is already there does: nothing.
pub(super) const OUTBOX_ON_CONFLICT: &str = "ON CONFLICT (user_id, dedupe_key) DO NOTHING";

/// The kinds this build can send, as an SQL list (`'approval_requested', ...`): a sender claims
/// only those, so during a rolling upgrade an older node leaves a newer kind to the newer nodes.
pub(super) fn known_kinds_sql() -> String {
    let names: Vec<String> = NotificationKind::ALL
        .iter()
        .map(|k| format!("'{}'", k.as_str()))
        .collect();
    names.join(", ")
}

/// Generates the notification queries of one backend: preferences, the outbox, and
/// `insert_notifications` (also a merge commit's, in its transaction). Expanded in the backend's
/// `notifications` module, whose parent provides the backend's glue.
macro_rules! notification_queries {
    () => {
        use chrono::{DateTime, Utc};
        use sqlx::{Row as _, Transaction};
        use uuid::Uuid;

        use super::{begin_write, Db, SKIP_LOCKED};
        use $crate::store::notifications::{
            give_up_at, known_kinds_sql, lease_end, OUTBOX_COLUMNS, OUTBOX_ON_CONFLICT,
        };
        use $crate::store::{
            write_error, ClaimedNotification, NewNotification, NotificationPreferences,
            StoreError, StoreResult,
        };

        type Pool = sqlx::Pool<Db>;
        type Tx<'c> = Transaction<'c, Db>;

        /// See `Store::notification_preferences`.
        pub(in $crate::store) async fn preferences(
            pool: &Pool,
            user_id: Uuid,
        ) -> StoreResult<NotificationPreferences> {
            let row = sqlx::query(
                "SELECT disabled_kinds, show_details FROM notification_preferences \
                 WHERE user_id = $1",
            )
            .bind(user_id)
            .fetch_optional(pool)
            .await?;
            let Some(row) = row else {
                return Ok(NotificationPreferences::default());
            };
            let disabled: String = row.try_get("disabled_kinds")?;
            Ok(NotificationPreferences::from_stored(
                &disabled,
                row.try_get("show_details")?,
            ))
        }

        /// See `Store::set_notification_preferences`.
        pub(in $crate::store) async fn set_preferences(
            pool: &Pool,
            user_id: Uuid,
            preferences: &NotificationPreferences,
            now: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO notification_preferences \
                 (user_id, disabled_kinds, show_details, updated_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (user_id) DO UPDATE SET disabled_kinds = excluded.disabled_kinds, \
                 show_details = excluded.show_details, updated_at = excluded.updated_at",
            )
            .bind(user_id)
            .bind(preferences.disabled_text())
            .bind(preferences.show_details)
            .bind(now)
            .execute(pool)
            .await
            .map_err(write_error)?;
            Ok(())
        }

        /// See `Store::enqueue_notifications`.
        pub(in $crate::store) async fn enqueue(
            pool: &Pool,
            notifications: &[NewNotification],
            now: DateTime<Utc>,
        ) -> StoreResult<u64> {
            let mut tx = begin_write(pool).await?;
            let inserted = insert_notifications(&mut tx, notifications, now).await?;
            tx.commit().await?;
            Ok(inserted)
        }

        /// Writes notifications in the caller's transaction, skipping a (recipient, dedupe key)
        /// already there; how many were new.
        pub(in $crate::store) async fn insert_notifications(
            tx: &mut Tx<'_>,
            notifications: &[NewNotification],
            now: DateTime<Utc>,
        ) -> StoreResult<u64> {
            static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let sql = SQL.get_or_init(|| {
                format!(
                    "INSERT INTO notification_outbox ({OUTBOX_COLUMNS}) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 0, $8) {OUTBOX_ON_CONFLICT}"
                )
            });
            let mut inserted = 0;
            for n in notifications {
                inserted += sqlx::query(sql)
                    .bind(Uuid::now_v7())
                    .bind(n.user_id)
                    .bind(n.partnership_id)
                    .bind(n.kind.as_str())
                    .bind(&n.dedupe_key)
                    .bind(&n.payload)
                    .bind(now)
                    .bind(give_up_at(now, n.give_up_after))
                    .execute(&mut **tx)
                    .await
                    .map_err(write_error)?
                    .rows_affected();
            }
            Ok(inserted)
        }

        /// See `Store::claim_notifications`: one statement claims (skipping rows another
        /// transaction holds, on PostgreSQL), then the claimed rows' deliveries are read in
        /// the same transaction.
        pub(in $crate::store) async fn claim(
            pool: &Pool,
            now: DateTime<Utc>,
            limit: u32,
            lease: std::time::Duration,
        ) -> StoreResult<Vec<ClaimedNotification>> {
            static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            let sql = SQL.get_or_init(|| {
                format!(
                    "UPDATE notification_outbox SET claimed_until = $3 WHERE id IN ( \
                       SELECT id FROM notification_outbox WHERE next_attempt_at <= $1 \
                       AND (claimed_until IS NULL OR claimed_until <= $1) AND kind IN ({}) \
                       ORDER BY next_attempt_at, id LIMIT $2{SKIP_LOCKED}) \
                     RETURNING id, user_id, partnership_id, kind, payload, attempts, \
                       created_at, give_up_at",
                    known_kinds_sql()
                )
            });
            let until = lease_end(now, lease);
            let mut tx = begin_write(pool).await?;
            let rows = sqlx::query(sql)
                .bind(now)
                .bind(i64::from(limit))
                .bind(until)
                .fetch_all(&mut *tx)
                .await?;
            let mut claimed = Vec::with_capacity(rows.len());
            for row in &rows {
                let kind: String = row.try_get("kind")?;
                let attempts: i32 = row.try_get("attempts")?;
                claimed.push(ClaimedNotification {
                    id: row.try_get("id")?,
                    user_id: row.try_get("user_id")?,
                    partnership_id: row.try_get("partnership_id")?,
                    kind: $crate::store::NotificationKind::parse(&kind).ok_or_else(|| {
                        StoreError::Corrupt(format!("notification kind {kind:?}"))
                    })?,
                    payload: row.try_get("payload")?,
                    attempts: u32::try_from(attempts).map_err(|_| {
                        StoreError::Corrupt(format!("notification attempts {attempts}"))
                    })?,
                    created_at: row.try_get("created_at")?,
                    give_up_at: row.try_get("give_up_at")?,
                    delivered: Vec::new(),
                });
            }
            if !claimed.is_empty() {
                // The deliveries of every row claimed until this instant: ours, and perhaps
                // another sender's claimed at the same instant, which are left out below.
                let deliveries: Vec<(Uuid, Uuid)> = sqlx::query_as(
                    "SELECT d.outbox_id, d.device_id FROM notification_deliveries d \
                     JOIN notification_outbox o ON o.id = d.outbox_id \
                     WHERE o.claimed_until = $1 ORDER BY d.outbox_id, d.device_id",
                )
                .bind(until)
                .fetch_all(&mut *tx)
                .await?;
                for (outbox_id, device_id) in deliveries {
                    if let Some(n) = claimed.iter_mut().find(|n| n.id == outbox_id) {
                        n.delivered.push(device_id);
                    }
                }
            }
            tx.commit().await?;
            claimed.sort_by_key(|n| n.id);
            Ok(claimed)
        }

        /// See `Store::record_delivery`.
        pub(in $crate::store) async fn record_delivery(
            pool: &Pool,
            outbox_id: Uuid,
            device_id: Uuid,
        ) -> StoreResult<()> {
            sqlx::query(
                "INSERT INTO notification_deliveries (outbox_id, device_id) VALUES ($1, $2) \
                 ON CONFLICT (outbox_id, device_id) DO NOTHING",
            )
            .bind(outbox_id)
            .bind(device_id)
            .execute(pool)
            .await
            .map_err(write_error)?;
            Ok(())
        }

        /// See `Store::finish_notification`.
        pub(in $crate::store) async fn finish(pool: &Pool, id: Uuid) -> StoreResult<()> {
            sqlx::query("DELETE FROM notification_outbox WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?;
            Ok(())
        }

        /// See `Store::retry_notification`.
        pub(in $crate::store) async fn retry(
            pool: &Pool,
            id: Uuid,
            next_attempt_at: DateTime<Utc>,
        ) -> StoreResult<()> {
            sqlx::query(
                "UPDATE notification_outbox SET attempts = attempts + 1, \
                 next_attempt_at = $2, claimed_until = NULL WHERE id = $1",
            )
            .bind(id)
            .bind(next_attempt_at)
            .execute(pool)
            .await?;
            Ok(())
        }

        /// See `Store::outbox_depth`.
        pub(in $crate::store) async fn outbox_depth(pool: &Pool) -> StoreResult<i64> {
            Ok(sqlx::query_scalar("SELECT COUNT(*) FROM notification_outbox")
                .fetch_one(pool)
                .await?)
        }
    };
}

pub(super) use notification_queries;
