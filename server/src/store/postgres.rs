//! The PostgreSQL store: production and multi-node deployments.
//!
//! Partnership rules that span rows (one partnership per user, as inviter or invitee) are checked
//! inside the writing transaction after locking the users' rows (`FOR UPDATE`, in id order so two
//! writers cannot deadlock), which serialises every partnership change of one user across nodes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::*;

/// Store backed by a PostgreSQL pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// Connections held out of the pool for merge commits (see [`PgStore::merge_connection`]),
    /// shared by clones.
    merge_connections: std::sync::Arc<std::sync::Mutex<Vec<sqlx::PgConnection>>>,
}

/// Most connections kept for merge commits: the committer runs at most four transactions at
/// once, so more are only ever needed briefly.
const MAX_MERGE_CONNECTIONS: usize = 8;

const USER_COLUMNS: &str =
    "id, email, password_hash, name, income, currency, country, payday, token_version, last_seen, created_at, updated_at";
const PARTNERSHIP_COLUMNS: &str =
    "id, user1_id, user2_id, invitee_email, status, currency, approval_threshold, created_at, accepted_at";
const LIVE: &str = "('pending', 'active', 'paused')";

impl PgStore {
    /// Connects and applies the migrations in `migrations/postgres`.
    pub async fn connect(database_url: &str) -> StoreResult<Self> {
        // No ping before every acquire: it costs a round trip per transaction (6.5% of the
        // server's time per merge under load); a connection that died is found by its first
        // query and replaced by the pool.
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .test_before_acquire(false)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(database_url)
            .await?;
        Self::from_pool(pool).await
    }

    /// Wraps an existing pool and applies the migrations.
    pub async fn from_pool(pool: PgPool) -> StoreResult<Self> {
        sqlx::migrate!("../migrations/postgres").run(&pool).await?;
        Ok(Self {
            pool,
            merge_connections: Default::default(),
        })
    }

    /// A connection for one merge commit. Merge commits are the hottest write, and a pooled
    /// connection costs an extra round trip each time it goes back to the pool (sqlx pings it on
    /// release: 3 % of the server's time at 1,000 merges/s), so they run on connections held
    /// here, detached from the pool; one that failed is dropped, not kept.
    async fn merge_connection(&self) -> StoreResult<sqlx::PgConnection> {
        let held = self
            .merge_connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop();
        match held {
            Some(conn) => Ok(conn),
            None => Ok(self.pool.acquire().await?.detach()),
        }
    }

    /// Keeps a connection that just committed a merge for the next one.
    fn keep_merge_connection(&self, conn: sqlx::PgConnection) {
        let mut held = self
            .merge_connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.len() < MAX_MERGE_CONNECTIONS {
            held.push(conn);
        }
    }

    /// The underlying pool, for the layers that add their own queries (materialization).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn user_from_row(row: &PgRow) -> Result<UserRecord, sqlx::Error> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        password_hash: row.try_get("password_hash")?,
        name: row.try_get("name")?,
        income: row.try_get("income")?,
        currency: row.try_get("currency")?,
        country: row.try_get("country")?,
        payday: row.try_get("payday")?,
        token_version: row.try_get("token_version")?,
        last_seen: row.try_get("last_seen")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn partnership_from_row(row: &PgRow) -> StoreResult<PartnershipRecord> {
    let status: String = row.try_get("status")?;
    Ok(PartnershipRecord {
        id: row.try_get("id")?,
        user1_id: row.try_get("user1_id")?,
        user2_id: row.try_get("user2_id")?,
        invitee_email: row.try_get("invitee_email")?,
        status: status.parse()?,
        currency: row.try_get("currency")?,
        approval_threshold: row.try_get("approval_threshold")?,
        created_at: row.try_get("created_at")?,
        accepted_at: row.try_get("accepted_at")?,
    })
}

fn refresh_from_row(row: &PgRow) -> Result<RefreshTokenRecord, sqlx::Error> {
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

fn is_unique_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    err.as_database_error()
        .is_some_and(|e| e.is_foreign_key_violation())
}

/// Locks the given users' rows in id order; returns how many exist.
async fn lock_users(tx: &mut Transaction<'_, Postgres>, ids: &[Uuid]) -> StoreResult<usize> {
    let mut ids = ids.to_vec();
    ids.sort();
    ids.dedup();
    let rows = sqlx::query("SELECT id FROM users WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .fetch_all(&mut **tx)
        .await?;
    Ok(rows.len())
}

/// True when the user is in a live partnership other than `except`.
async fn has_partnership(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    except: Option<Uuid>,
) -> StoreResult<bool> {
    let sql = format!(
        "SELECT EXISTS (SELECT 1 FROM partnerships WHERE (user1_id = $1 OR user2_id = $1) \
         AND status IN {LIVE} AND ($2::uuid IS NULL OR id <> $2))"
    );
    let exists: bool = sqlx::query_scalar(&sql)
        .bind(user_id)
        .bind(except)
        .fetch_one(&mut **tx)
        .await?;
    Ok(exists)
}

async fn revoke_all_refresh(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "UPDATE refresh_tokens SET revoked_at = $2 WHERE user_id = $1 AND revoked_at IS NULL",
    )
    .bind(user_id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn bump_password(
    tx: &mut Transaction<'_, Postgres>,
    user_id: Uuid,
    password_hash: &str,
    now: DateTime<Utc>,
) -> StoreResult<i64> {
    let version: Option<i64> = sqlx::query_scalar(
        "UPDATE users SET password_hash = $2, token_version = token_version + 1, updated_at = $3 \
         WHERE id = $1 RETURNING token_version",
    )
    .bind(user_id)
    .bind(password_hash)
    .bind(now)
    .fetch_optional(&mut **tx)
    .await?;
    let version = version.ok_or(StoreError::NotFound)?;
    revoke_all_refresh(tx, user_id, now).await?;
    Ok(version)
}

async fn insert_refresh(
    tx: &mut Transaction<'_, Postgres>,
    t: &NewRefreshToken,
    now: DateTime<Utc>,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(t.id)
    .bind(t.user_id)
    .bind(t.family_id)
    .bind(&t.token_hash)
    .bind(t.expires_at)
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(|e| {
        if is_unique_violation(&e) {
            StoreError::Conflict("token_exists")
        } else if is_foreign_key_violation(&e) {
            StoreError::NotFound
        } else {
            e.into()
        }
    })?;
    Ok(())
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn create_user(&self, u: NewUser) -> StoreResult<UserRecord> {
        let now = Utc::now();
        let sql = format!(
            "INSERT INTO users (id, email, password_hash, name, income, currency, country, payday, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(u.id)
            .bind(normalize_email(&u.email))
            .bind(&u.password_hash)
            .bind(&u.name)
            .bind(u.income)
            .bind(&u.currency)
            .bind(&u.country)
            .bind(&u.payday)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("email_taken")
                } else {
                    e.into()
                }
            })?;
        Ok(user_from_row(&row)?)
    }

    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1");
        let row = sqlx::query(&sql)
            .bind(normalize_email(email))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(user_from_row).transpose()?)
    }

    async fn set_password(&self, user_id: Uuid, password_hash: &str) -> StoreResult<i64> {
        let mut tx = self.pool.begin().await?;
        let version = bump_password(&mut tx, user_id, password_hash, Utc::now()).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn update_profile(
        &self,
        user_id: Uuid,
        update: ProfileUpdate,
    ) -> StoreResult<UserRecord> {
        let sql = format!(
            "UPDATE users SET name = COALESCE($2, name), currency = COALESCE($3, currency), \
             country = CASE WHEN $4 THEN $5 ELSE country END, \
             payday = CASE WHEN $6 THEN $7 ELSE payday END, updated_at = $8 \
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
            .bind(Utc::now())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(user_from_row(&row)?)
    }

    async fn update_income(
        &self,
        user_id: Uuid,
        income: Option<Decimal>,
    ) -> StoreResult<UserRecord> {
        let sql = format!(
            "UPDATE users SET income = $2, updated_at = $3 WHERE id = $1 RETURNING {USER_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .bind(income)
            .bind(Utc::now())
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(user_from_row(&row)?)
    }

    async fn touch_last_seen(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE users SET last_seen = $2 WHERE id = $1 AND (last_seen IS NULL OR last_seen < $2)",
        )
            .bind(user_id)
            .bind(now)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn delete_user(&self, user_id: Uuid) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
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

    async fn insert_refresh_token(&self, token: NewRefreshToken) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        insert_refresh(&mut tx, &token, Utc::now()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn refresh_token_by_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>> {
        let row = sqlx::query(
            "SELECT id, user_id, family_id, token_hash, expires_at, created_at, used_at, revoked_at \
             FROM refresh_tokens WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.as_ref().map(refresh_from_row).transpose()?)
    }

    async fn rotate_refresh_token(
        &self,
        old_id: Uuid,
        new: NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let marked = sqlx::query(
            "UPDATE refresh_tokens SET used_at = $2 WHERE id = $1 AND used_at IS NULL AND revoked_at IS NULL",
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

    async fn revoke_refresh_token(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
        )
        .bind(id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn revoke_refresh_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET revoked_at = $2 WHERE family_id = $1 AND revoked_at IS NULL",
        )
        .bind(family_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn insert_password_reset(&self, reset: NewPasswordReset) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO password_resets (id, user_id, token_hash, expires_at, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(reset.id)
        .bind(reset.user_id)
        .bind(&reset.token_hash)
        .bind(reset.expires_at)
        .bind(Utc::now())
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound
            } else if is_unique_violation(&e) {
                StoreError::Conflict("token_exists")
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn complete_password_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Uuid>> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT user_id, expires_at, used_at FROM password_resets WHERE token_hash = $1 FOR UPDATE",
        )
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

    async fn create_invitation(&self, inv: NewInvitation) -> StoreResult<PartnershipRecord> {
        let invitee_email = normalize_email(&inv.invitee_email);
        let mut tx = self.pool.begin().await?;
        let invitee: Option<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(&invitee_email)
            .fetch_optional(&mut *tx)
            .await?;
        if invitee == Some(inv.inviter_id) {
            return Err(StoreError::Conflict("cannot_invite_self"));
        }
        let mut ids = vec![inv.inviter_id];
        ids.extend(invitee);
        if lock_users(&mut tx, &ids).await? != ids.len() {
            return Err(StoreError::NotFound);
        }
        if has_partnership(&mut tx, inv.inviter_id, None).await? {
            return Err(StoreError::Conflict("partnership_exists"));
        }
        if let Some(invitee) = invitee {
            if has_partnership(&mut tx, invitee, None).await? {
                return Err(StoreError::Conflict("partner_has_partnership"));
            }
        }
        let sql = format!(
            "INSERT INTO partnerships (id, user1_id, invitee_email, status, currency, approval_threshold, created_at) \
             VALUES ($1, $2, $3, 'pending', $4, $5, $6) RETURNING {PARTNERSHIP_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(inv.id)
            .bind(inv.inviter_id)
            .bind(&invitee_email)
            .bind(&inv.currency)
            .bind(inv.approval_threshold)
            .bind(inv.now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("partnership_exists")
                } else {
                    e.into()
                }
            })?;
        let record = partnership_from_row(&row)?;
        tx.commit().await?;
        Ok(record)
    }

    async fn invitations_for(
        &self,
        user_id: Uuid,
        email: &str,
    ) -> StoreResult<Vec<InvitationRecord>> {
        let rows = sqlx::query(
            "SELECT p.id, p.user1_id, p.user2_id, p.invitee_email, p.status, p.currency, p.approval_threshold, \
             p.created_at, p.accepted_at, u.name AS inviter_name, u.email AS inviter_email \
             FROM partnerships p JOIN users u ON u.id = p.user1_id \
             WHERE p.status = 'pending' AND (p.invitee_email = $1 OR p.user1_id = $2) \
             ORDER BY p.created_at, p.id",
        )
        .bind(normalize_email(email))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(InvitationRecord {
                    partnership: partnership_from_row(row)?,
                    inviter_name: row.try_get("inviter_name")?,
                    inviter_email: row.try_get("inviter_email")?,
                })
            })
            .collect()
    }

    async fn partnership_by_id(&self, id: Uuid) -> StoreResult<Option<PartnershipRecord>> {
        let sql = format!("SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(partnership_from_row).transpose()
    }

    async fn current_partnership(&self, user_id: Uuid) -> StoreResult<Option<PartnershipRecord>> {
        let sql = format!(
            "SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE (user1_id = $1 OR user2_id = $1) \
             AND status IN {LIVE} ORDER BY created_at DESC LIMIT 1"
        );
        let row = sqlx::query(&sql)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(partnership_from_row).transpose()
    }

    async fn accept_invitation(&self, accept: AcceptInvitation) -> StoreResult<PartnershipRecord> {
        let email = normalize_email(&accept.email);
        let mut tx = self.pool.begin().await?;
        let inviter: Option<Uuid> = sqlx::query_scalar(
            "SELECT user1_id FROM partnerships WHERE id = $1 AND status = 'pending' AND invitee_email = $2",
        )
        .bind(accept.partnership_id)
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        let inviter = inviter.ok_or(StoreError::NotFound)?;
        if inviter == accept.user_id {
            return Err(StoreError::NotFound);
        }
        lock_users(&mut tx, &[inviter, accept.user_id]).await?;
        // Re-check under the locks: the invitation may have been withdrawn meanwhile.
        let still_pending: Option<Uuid> = sqlx::query_scalar(
            "SELECT id FROM partnerships WHERE id = $1 AND status = 'pending' AND invitee_email = $2 FOR UPDATE",
        )
        .bind(accept.partnership_id)
        .bind(&email)
        .fetch_optional(&mut *tx)
        .await?;
        if still_pending.is_none() {
            return Err(StoreError::NotFound);
        }
        if has_partnership(&mut tx, accept.user_id, Some(accept.partnership_id)).await? {
            return Err(StoreError::Conflict("partnership_exists"));
        }
        let sql = format!(
            "UPDATE partnerships SET user2_id = $2, status = 'active', accepted_at = $3 WHERE id = $1 \
             RETURNING {PARTNERSHIP_COLUMNS}"
        );
        let row = sqlx::query(&sql)
            .bind(accept.partnership_id)
            .bind(accept.user_id)
            .bind(accept.now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::Conflict("partnership_exists")
                } else {
                    e.into()
                }
            })?;
        let record = partnership_from_row(&row)?;
        sqlx::query(
            "INSERT INTO doc_snapshots (partnership_id, bytes, heads, change_count, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(accept.partnership_id)
        .bind(&accept.snapshot.bytes)
        .bind(accept.snapshot.heads.join(","))
        .bind(accept.snapshot.change_count)
        .bind(accept.now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM partnerships WHERE status = 'pending' AND invitee_email = $1 AND id <> $2",
        )
        .bind(&email)
        .bind(accept.partnership_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn decline_invitation(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        email: &str,
    ) -> StoreResult<()> {
        let deleted = sqlx::query(
            "DELETE FROM partnerships WHERE id = $1 AND status = 'pending' AND (invitee_email = $2 OR user1_id = $3)",
        )
        .bind(partnership_id)
        .bind(normalize_email(email))
        .bind(user_id)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if deleted == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn set_partnership_status(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        status: PartnershipStatus,
    ) -> StoreResult<PartnershipRecord> {
        if status == PartnershipStatus::Pending {
            return Err(StoreError::Conflict("invalid_status"));
        }
        let mut tx = self.pool.begin().await?;
        let sql =
            format!("SELECT {PARTNERSHIP_COLUMNS} FROM partnerships WHERE id = $1 FOR UPDATE");
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
            return Err(StoreError::Conflict("partnership_not_active"));
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

    async fn load_document(
        &self,
        partnership_id: Uuid,
    ) -> StoreResult<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
        // Changes first, then the snapshot: a compaction committing in between leaves us with the
        // new snapshot plus changes it already contains, which loading tolerates; the other order
        // could lose the changes it deleted.
        let changes: Vec<Vec<u8>> = sqlx::query_scalar(
            "SELECT bytes FROM doc_changes WHERE partnership_id = $1 ORDER BY id",
        )
        .bind(partnership_id)
        .fetch_all(&self.pool)
        .await?;
        let snapshot: Option<Vec<u8>> = sqlx::query_scalar(
            "SELECT bytes FROM doc_snapshots WHERE partnership_id = $1 ORDER BY id DESC LIMIT 1",
        )
        .bind(partnership_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok((snapshot, changes))
    }

    async fn append_changes(
        &self,
        partnership_id: Uuid,
        changes: &[NewChange],
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for change in changes {
            inserted += sqlx::query(
                "INSERT INTO doc_changes (partnership_id, hash, actor, seq, user_id, bytes, received_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (partnership_id, hash) DO NOTHING",
            )
            .bind(partnership_id)
            .bind(&change.hash)
            .bind(&change.actor)
            .bind(change.seq)
            .bind(change.user_id)
            .bind(&change.bytes)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_foreign_key_violation(&e) {
                    StoreError::NotFound
                } else {
                    e.into()
                }
            })?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    async fn compact(
        &self,
        partnership_id: Uuid,
        snapshot: NewSnapshot,
        covered: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO doc_snapshots (partnership_id, bytes, heads, change_count, created_at) \
             VALUES ($1, $2, $3, $4, $5) RETURNING id",
        )
        .bind(partnership_id)
        .bind(&snapshot.bytes)
        .bind(snapshot.heads.join(","))
        .bind(snapshot.change_count)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound
            } else {
                e.into()
            }
        })?;
        sqlx::query("DELETE FROM doc_snapshots WHERE partnership_id = $1 AND id < $2")
            .bind(partnership_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM doc_changes WHERE partnership_id = $1 AND hash = ANY($2)")
            .bind(partnership_id)
            .bind(covered)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn bind_actor(
        &self,
        partnership_id: Uuid,
        actor_id: &str,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let actor_id = actor_id.to_ascii_lowercase();
        sqlx::query(
            "INSERT INTO actor_bindings (partnership_id, actor_id, user_id, created_at) \
             SELECT $1, $2, $3, $4 WHERE EXISTS (SELECT 1 FROM partnerships WHERE id = $1 \
             AND (user1_id = $3 OR user2_id = $3)) ON CONFLICT (partnership_id, actor_id) DO NOTHING",
        )
        .bind(partnership_id)
        .bind(&actor_id)
        .bind(user_id)
        .bind(now)
        .execute(&self.pool)
        .await?;
        match self.actor_owner(partnership_id, &actor_id).await? {
            Some(owner) if owner == user_id => Ok(()),
            Some(_) => Err(StoreError::Conflict("actor_bound")),
            None => Err(StoreError::NotFound),
        }
    }

    async fn actor_owner(&self, partnership_id: Uuid, actor_id: &str) -> StoreResult<Option<Uuid>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM actor_bindings WHERE partnership_id = $1 AND actor_id = $2",
        )
        .bind(partnership_id)
        .bind(actor_id.to_ascii_lowercase())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn register_device_token(
        &self,
        user_id: Uuid,
        token: &str,
        platform: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO device_tokens (token, user_id, platform, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (token) DO UPDATE SET user_id = EXCLUDED.user_id, platform = EXCLUDED.platform, \
             created_at = EXCLUDED.created_at",
        )
        .bind(token)
        .bind(user_id)
        .bind(platform)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(|e| {
            if is_foreign_key_violation(&e) {
                StoreError::NotFound
            } else {
                e.into()
            }
        })?;
        Ok(())
    }

    async fn remove_device_token(&self, user_id: Uuid, token: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM device_tokens WHERE user_id = $1 AND token = $2")
            .bind(user_id)
            .bind(token)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn device_tokens(&self, user_id: Uuid) -> StoreResult<Vec<DeviceTokenRecord>> {
        let rows = sqlx::query(
            "SELECT user_id, token, platform, created_at FROM device_tokens WHERE user_id = $1 ORDER BY created_at, token",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
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

    // ---- sync (implemented in sync_postgres.rs) -------------------------------------------------------

    async fn commit_merge(
        &self,
        partnership_id: Uuid,
        commit: MergeCommit,
        now: DateTime<Utc>,
    ) -> StoreResult<u64> {
        let counts = self.commit_merges(&[(partnership_id, commit)], now).await?;
        Ok(counts.into_iter().sum())
    }

    async fn commit_merges(
        &self,
        merges: &[(Uuid, MergeCommit)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<u64>> {
        let mut conn = self.merge_connection().await?;
        let counts = if super::sync_postgres::fits_one_statement(merges) {
            super::sync_postgres::commit_merges_in_one_statement(&mut conn, merges, now).await?
        } else {
            super::sync_postgres::commit_merges_on(&mut conn, merges, now).await?
        };
        self.keep_merge_connection(conn);
        Ok(counts)
    }

    async fn replace_materialized(
        &self,
        partnership_id: Uuid,
        rows: Vec<RowChange>,
    ) -> StoreResult<()> {
        super::sync_postgres::replace_materialized(&self.pool, partnership_id, rows, Utc::now())
            .await
    }

    async fn materialized_rows(&self, partnership_id: Uuid) -> StoreResult<Vec<RowChange>> {
        super::sync_postgres::materialized_rows(&self.pool, partnership_id).await
    }

    async fn save_sync_state(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        peer_storage_id: &str,
        state: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        super::sync_postgres::save_sync_state(
            &self.pool,
            partnership_id,
            user_id,
            peer_storage_id,
            state,
            now,
        )
        .await
    }

    async fn load_sync_state(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        peer_storage_id: &str,
    ) -> StoreResult<Option<Vec<u8>>> {
        super::sync_postgres::load_sync_state(&self.pool, partnership_id, user_id, peer_storage_id)
            .await
    }

    async fn server_storage_id(&self) -> StoreResult<String> {
        super::sync_postgres::server_storage_id(&self.pool).await
    }

    async fn document_change_count(&self, partnership_id: Uuid) -> StoreResult<i64> {
        super::sync_postgres::document_change_count(&self.pool, partnership_id).await
    }

    // ---- REST reads (approvals, messages) ----

    async fn list_approvals(
        &self,
        partnership_id: Uuid,
        status: splitsave_sync_core::enums::ApprovalStatus,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::ApprovalRow>> {
        super::reads_approvals_messages::postgres::list_approvals(
            &self.pool,
            partnership_id,
            status,
            limit,
            offset,
        )
        .await
    }

    async fn approval(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::ApprovalRow>> {
        super::reads_approvals_messages::postgres::approval(&self.pool, partnership_id, id).await
    }

    async fn list_messages(
        &self,
        partnership_id: Uuid,
        before: Option<super::MessageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::MessageRow>> {
        super::reads_approvals_messages::postgres::list_messages(
            &self.pool,
            partnership_id,
            before,
            limit,
        )
        .await
    }

    async fn message(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::MessageRow>> {
        super::reads_approvals_messages::postgres::message(&self.pool, partnership_id, id).await
    }

    // ---- REST reads (expenses, goals, contributions; implemented in reads.rs) ----

    async fn list_expenses(
        &self,
        partnership_id: Uuid,
        status: Option<splitsave_sync_core::enums::ItemStatus>,
        category: Option<splitsave_sync_core::enums::Category>,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::ExpenseRow>> {
        super::reads::pg::list_expenses(&self.pool, partnership_id, status, category, limit, offset)
            .await
    }

    async fn expense(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::ExpenseRow>> {
        super::reads::pg::expense(&self.pool, partnership_id, id).await
    }

    async fn list_goals(
        &self,
        partnership_id: Uuid,
        status: Option<splitsave_sync_core::enums::ItemStatus>,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::GoalRow>> {
        super::reads::pg::list_goals(&self.pool, partnership_id, status, limit, offset).await
    }

    async fn goal(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::GoalRow>> {
        super::reads::pg::goal(&self.pool, partnership_id, id).await
    }

    async fn list_contributions(
        &self,
        partnership_id: Uuid,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::ContributionRow>> {
        super::reads::pg::list_contributions(&self.pool, partnership_id, limit, offset).await
    }

    async fn contribution(
        &self,
        partnership_id: Uuid,
        month: &str,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::ContributionRow>> {
        super::reads::pg::contribution(&self.pool, partnership_id, month).await
    }
}
