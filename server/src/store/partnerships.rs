//! Partnerships: invitations, acceptance, decline and withdrawal, pause and resume. The rules
//! that span rows (one live partnership per user, as inviter or invitee) are checked inside the
//! writing transaction after the backend's `lock_users`. The SQL is written once in
//! [`partnership_queries!`] (see the store module documentation).

/// Generates the partnership queries of one backend; expanded in the backend's `partnerships`
/// module, whose parent provides the backend's glue.
macro_rules! partnership_queries {
    () => {
        use sqlx::{Row as _, Transaction};
        use uuid::Uuid;

        use super::{begin_write, lock_users, money, read_money, Db, FOR_UPDATE};
        use $crate::store::{
            normalize_email, write_error, AcceptInvitation, Conflict, InvitationRecord,
            NewInvitation, PartnershipRecord, PartnershipStatus, StoreError, StoreResult,
        };

        type Pool = sqlx::Pool<Db>;
        type DbRow = <Db as sqlx::Database>::Row;

        const PARTNERSHIP_COLUMNS: &str = "id, user1_id, user2_id, invitee_email, status, \
                                           currency, approval_threshold, created_at, accepted_at";
        const LIVE: &str = "('pending', 'active', 'paused')";

        fn partnership_from_row(row: &DbRow) -> StoreResult<PartnershipRecord> {
            let status: String = row.try_get("status")?;
            Ok(PartnershipRecord {
                id: row.try_get("id")?,
                user1_id: row.try_get("user1_id")?,
                user2_id: row.try_get("user2_id")?,
                invitee_email: row.try_get("invitee_email")?,
                status: status.parse()?,
                currency: row.try_get("currency")?,
                approval_threshold: read_money(row, "approval_threshold")?,
                created_at: row.try_get("created_at")?,
                accepted_at: row.try_get("accepted_at")?,
            })
        }

        /// True when the user is in a live partnership other than `except`.
        async fn has_partnership(
            tx: &mut Transaction<'_, Db>,
            user_id: Uuid,
            except: Option<Uuid>,
        ) -> StoreResult<bool> {
            let sql = format!(
                "SELECT EXISTS (SELECT 1 FROM partnerships WHERE (user1_id = $1 OR user2_id = $1) \
                 AND status IN {LIVE} AND ($2 IS NULL OR id <> $2))"
            );
            let exists: bool = sqlx::query_scalar(&sql)
                .bind(user_id)
                .bind(except)
                .fetch_one(&mut **tx)
                .await?;
            Ok(exists)
        }

        /// See `Store::create_invitation`.
        pub(in $crate::store) async fn create_invitation(
            pool: &Pool,
            inv: NewInvitation,
        ) -> StoreResult<PartnershipRecord> {
            let invitee_email = normalize_email(&inv.invitee_email);
            let mut tx = begin_write(pool).await?;
            let invitee: Option<Uuid> =
                sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(&invitee_email)
                    .fetch_optional(&mut *tx)
                    .await?;
            if invitee == Some(inv.inviter_id) {
                return Err(StoreError::Conflict(Conflict::CannotInviteSelf));
            }
            let mut ids = vec![inv.inviter_id];
            ids.extend(invitee);
            if lock_users(&mut tx, &ids).await? != ids.len() {
                return Err(StoreError::NotFound);
            }
            if has_partnership(&mut tx, inv.inviter_id, None).await? {
                return Err(StoreError::Conflict(Conflict::PartnershipExists));
            }
            if let Some(invitee) = invitee {
                if has_partnership(&mut tx, invitee, None).await? {
                    return Err(StoreError::Conflict(Conflict::PartnerHasPartnership));
                }
            }
            let sql = format!(
                "INSERT INTO partnerships (id, user1_id, invitee_email, status, currency, \
                 approval_threshold, created_at) VALUES ($1, $2, $3, 'pending', $4, $5, $6) \
                 RETURNING {PARTNERSHIP_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(inv.id)
                .bind(inv.inviter_id)
                .bind(&invitee_email)
                .bind(&inv.currency)
                .bind(money(inv.approval_threshold))
                .bind(inv.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(write_error)?;
            let record = partnership_from_row(&row)?;
            tx.commit().await?;
            Ok(record)
        }

        /// See `Store::invitations_for`.
        pub(in $crate::store) async fn invitations_for(
            pool: &Pool,
            user_id: Uuid,
            email: &str,
        ) -> StoreResult<Vec<InvitationRecord>> {
            let rows = sqlx::query(
                "SELECT p.id, p.user1_id, p.user2_id, p.invitee_email, p.status, p.currency, \
                 p.approval_threshold, p.created_at, p.accepted_at, u.name AS inviter_name, \
                 u.email AS inviter_email, u.avatar_url AS inviter_avatar_url \
                 FROM partnerships p JOIN users u ON u.id = p.user1_id \
                 WHERE p.status = 'pending' AND (p.invitee_email = $1 OR p.user1_id = $2) \
                 ORDER BY p.created_at, p.id",
            )
            .bind(normalize_email(email))
            .bind(user_id)
            .fetch_all(pool)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok(InvitationRecord {
                        partnership: partnership_from_row(row)?,
                        inviter_name: row.try_get("inviter_name")?,
                        inviter_email: row.try_get("inviter_email")?,
                        inviter_avatar_url: row.try_get("inviter_avatar_url")?,
                    })
                })
                .collect()
        }

        /// See `Store::partnership_by_id`.
        pub(in $crate::store) async fn partnership_by_id(
            pool: &Pool,
            id: Uuid,
        ) -> StoreResult<Option<PartnershipRecord>> {
            let sql = format!("SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE id = $1");
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
            row.as_ref().map(partnership_from_row).transpose()
        }

        /// See `Store::partnerships_after`.
        pub(in $crate::store) async fn partnerships_after(
            pool: &Pool,
            after: Option<Uuid>,
            limit: u32,
        ) -> StoreResult<Vec<PartnershipRecord>> {
            let sql = format!(
                "SELECT {PARTNERSHIP_COLUMNS} FROM partnerships \
                 WHERE $1 IS NULL OR id > $1 ORDER BY id LIMIT $2"
            );
            let rows = sqlx::query(&sql)
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?;
            rows.iter().map(partnership_from_row).collect()
        }

        /// See `Store::current_partnership`.
        pub(in $crate::store) async fn current_partnership(
            pool: &Pool,
            user_id: Uuid,
        ) -> StoreResult<Option<PartnershipRecord>> {
            let sql = format!(
                "SELECT {PARTNERSHIP_COLUMNS} FROM partnerships \
                 WHERE (user1_id = $1 OR user2_id = $1) \
                 AND status IN {LIVE} ORDER BY created_at DESC LIMIT 1"
            );
            let row = sqlx::query(&sql).bind(user_id).fetch_optional(pool).await?;
            row.as_ref().map(partnership_from_row).transpose()
        }

        /// See `Store::accept_invitation`.
        pub(in $crate::store) async fn accept_invitation(
            pool: &Pool,
            accept: AcceptInvitation,
        ) -> StoreResult<PartnershipRecord> {
            let email = normalize_email(&accept.email);
            let mut tx = begin_write(pool).await?;
            // Read once without a lock (to learn whom to lock), then again under the locks: the
            // invitation may have been withdrawn meanwhile.
            let pending = "SELECT user1_id FROM partnerships \
                           WHERE id = $1 AND status = 'pending' AND invitee_email = $2";
            let inviter: Option<Uuid> = sqlx::query_scalar(pending)
                .bind(accept.partnership_id)
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
            let inviter = inviter.ok_or(StoreError::NotFound)?;
            if inviter == accept.user_id {
                return Err(StoreError::NotFound);
            }
            lock_users(&mut tx, &[inviter, accept.user_id]).await?;
            let still_pending: Option<Uuid> = sqlx::query_scalar(&format!("{pending}{FOR_UPDATE}"))
                .bind(accept.partnership_id)
                .bind(&email)
                .fetch_optional(&mut *tx)
                .await?;
            if still_pending.is_none() {
                return Err(StoreError::NotFound);
            }
            if has_partnership(&mut tx, accept.user_id, Some(accept.partnership_id)).await? {
                return Err(StoreError::Conflict(Conflict::PartnershipExists));
            }
            let sql = format!(
                "UPDATE partnerships SET user2_id = $2, status = 'active', accepted_at = $3 \
                 WHERE id = $1 RETURNING {PARTNERSHIP_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(accept.partnership_id)
                .bind(accept.user_id)
                .bind(accept.now)
                .fetch_one(&mut *tx)
                .await
                .map_err(write_error)?;
            let record = partnership_from_row(&row)?;
            super::documents::insert_snapshot(
                &mut tx,
                accept.partnership_id,
                &accept.snapshot,
                accept.now,
            )
            .await?;
            sqlx::query(
                "DELETE FROM partnerships \
                 WHERE status = 'pending' AND invitee_email = $1 AND id <> $2",
            )
            .bind(&email)
            .bind(accept.partnership_id)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(record)
        }

        /// See `Store::decline_invitation`.
        pub(in $crate::store) async fn decline_invitation(
            pool: &Pool,
            partnership_id: Uuid,
            user_id: Uuid,
            email: &str,
        ) -> StoreResult<()> {
            let deleted = sqlx::query(
                "DELETE FROM partnerships WHERE id = $1 AND status = 'pending' \
                 AND (invitee_email = $2 OR user1_id = $3)",
            )
            .bind(partnership_id)
            .bind(normalize_email(email))
            .bind(user_id)
            .execute(pool)
            .await?
            .rows_affected();
            if deleted == 0 {
                return Err(StoreError::NotFound);
            }
            Ok(())
        }

        /// See `Store::set_partnership_status`.
        pub(in $crate::store) async fn set_partnership_status(
            pool: &Pool,
            partnership_id: Uuid,
            user_id: Uuid,
            status: PartnershipStatus,
        ) -> StoreResult<PartnershipRecord> {
            if status == PartnershipStatus::Pending {
                return Err(StoreError::Conflict(Conflict::InvalidStatus));
            }
            let mut tx = begin_write(pool).await?;
            let sql = format!(
                "SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE id = $1{FOR_UPDATE}"
            );
            let row = sqlx::query(&sql)
                .bind(partnership_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or(StoreError::NotFound)?;
            let current = partnership_from_row(&row)?;
            if !current.has_member(user_id) {
                return Err(StoreError::NotFound);
            }
            if current.status == PartnershipStatus::Pending {
                return Err(StoreError::Conflict(Conflict::PartnershipNotActive));
            }
            let sql = format!(
                "UPDATE partnerships SET status = $2 WHERE id = $1 RETURNING {PARTNERSHIP_COLUMNS}"
            );
            let row = sqlx::query(&sql)
                .bind(partnership_id)
                .bind(status.as_str())
                .fetch_one(&mut *tx)
                .await?;
            let record = partnership_from_row(&row)?;
            tx.commit().await?;
            Ok(record)
        }
    };
}

pub(super) use partnership_queries;
