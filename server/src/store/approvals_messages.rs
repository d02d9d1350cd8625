//! REST reads of approval requests and messages from the materialized tables, always scoped by
//! the partnership so one couple can never read another's rows (their ids simply match nothing).
//!
//! The SQL is written once in [`approval_message_queries!`] (see the store module documentation):
//! neither table holds money, so the two backends differ only in their database type.
//! Messages page by keyset (time, then id) rather than by offset, so a message arriving while a
//! client pages back never shows twice or pushes one out of sight.

use splitsave_sync_core::time::Millis;
use uuid::Uuid;

/// Where a page of messages continues: strictly older than this message (by creation time, then
/// id for messages of the same millisecond).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MessageCursor {
    /// Creation time of the last message of the previous page.
    pub created_at: Millis,
    /// Its id.
    pub id: Uuid,
}

/// Generates `list_approvals`, `approval`, `list_messages` and `message` for one backend, each
/// taking the pool, and the row decoders the sync reads share; expanded in the backend's
/// `approvals_messages` module, whose parent provides the backend's glue.
macro_rules! approval_message_queries {
    () => {
        use chrono::{DateTime, Utc};
        use splitsave_sync_core::enums::ApprovalStatus;
        use splitsave_sync_core::ids::{EntityId, UserId};
        use splitsave_sync_core::materialize::{ApprovalRow, MessageRow};
        use sqlx::types::Json;
        use sqlx::Row as _;
        use uuid::Uuid;

        use super::Db;
        use $crate::store::sync::{millis_of, time_of};
        use $crate::store::MessageCursor;
        use $crate::store::{StoreError, StoreResult};

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        pub(super) const APPROVAL_COLUMNS: &str =
            "id, requested_by, request_type, target_id, request_data, \
             message, status, responded_by, responded_at, created_at";
        pub(super) const MESSAGE_COLUMNS: &str =
            "id, sender_id, text, message_type, read_by_recipient, created_at";

        /// See `Store::list_approvals`.
        pub(in $crate::store) async fn list_approvals(
            pool: &Pool,
            partnership_id: Uuid,
            status: ApprovalStatus,
            limit: u32,
            offset: u64,
        ) -> StoreResult<Vec<ApprovalRow>> {
            let rows = sqlx::query(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approval_requests \
                 WHERE partnership_id = $1 AND status = $2 \
                 ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
            ))
            .bind(partnership_id)
            .bind(status.as_str())
            .bind(i64::from(limit))
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .fetch_all(pool)
            .await?;
            rows.iter().map(approval_row).collect()
        }

        /// See `Store::approval`.
        pub(in $crate::store) async fn approval(
            pool: &Pool,
            partnership_id: Uuid,
            id: Uuid,
        ) -> StoreResult<Option<ApprovalRow>> {
            sqlx::query(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approval_requests \
                 WHERE partnership_id = $1 AND id = $2"
            ))
            .bind(partnership_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(approval_row)
            .transpose()
        }

        /// See `Store::list_messages`.
        pub(in $crate::store) async fn list_messages(
            pool: &Pool,
            partnership_id: Uuid,
            before: Option<MessageCursor>,
            limit: u32,
        ) -> StoreResult<Vec<MessageRow>> {
            let rows = match before {
                None => {
                    sqlx::query(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE partnership_id = $1 \
                         ORDER BY created_at DESC, id DESC LIMIT $2"
                    ))
                    .bind(partnership_id)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?
                }
                Some(cursor) => {
                    sqlx::query(&format!(
                        "SELECT {MESSAGE_COLUMNS} FROM messages WHERE partnership_id = $1 \
                         AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
                         ORDER BY created_at DESC, id DESC LIMIT $4"
                    ))
                    .bind(partnership_id)
                    .bind(time_of(cursor.created_at))
                    .bind(cursor.id)
                    .bind(i64::from(limit))
                    .fetch_all(pool)
                    .await?
                }
            };
            rows.iter().map(message_row).collect()
        }

        /// See `Store::message`.
        pub(in $crate::store) async fn message(
            pool: &Pool,
            partnership_id: Uuid,
            id: Uuid,
        ) -> StoreResult<Option<MessageRow>> {
            sqlx::query(&format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE partnership_id = $1 AND id = $2"
            ))
            .bind(partnership_id)
            .bind(id)
            .fetch_optional(pool)
            .await?
            .as_ref()
            .map(message_row)
            .transpose()
        }

        pub(super) fn approval_row(row: &DbRow) -> StoreResult<ApprovalRow> {
            let Json(request_data) = row.try_get::<Json<serde_json::Value>, _>("request_data")?;
            let target_id: Option<Uuid> = row.try_get("target_id")?;
            Ok(ApprovalRow {
                id: EntityId(row.try_get("id")?),
                requested_by: UserId(row.try_get("requested_by")?),
                request_type: row.try_get("request_type")?,
                target_id: EntityId(
                    target_id.ok_or_else(|| StoreError::Corrupt("target_id is null".into()))?,
                ),
                request_data,
                message: row.try_get("message")?,
                status: row.try_get("status")?,
                responded_by: row.try_get::<Option<Uuid>, _>("responded_by")?.map(UserId),
                responded_at: row
                    .try_get::<Option<DateTime<Utc>>, _>("responded_at")?
                    .map(millis_of),
                created_at: millis_of(row.try_get("created_at")?),
            })
        }

        pub(super) fn message_row(row: &DbRow) -> StoreResult<MessageRow> {
            Ok(MessageRow {
                id: EntityId(row.try_get("id")?),
                sender_id: UserId(row.try_get("sender_id")?),
                text: row.try_get("text")?,
                message_type: row.try_get("message_type")?,
                read_by_recipient: row.try_get("read_by_recipient")?,
                created_at: millis_of(row.try_get("created_at")?),
            })
        }
    };
}

pub(super) use approval_message_queries;
