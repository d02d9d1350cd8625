//! Storage: one [`Store`] trait, implemented for PostgreSQL (production, several nodes) and
//! SQLite (the embedded default), both held to one conformance suite
//! (`tests/integration/store_conformance.rs`).
//!
//! Relational-only data (users, partnerships, refresh tokens, password resets, push devices,
//! notification preferences, actor bindings) lives here, and so does each partnership document:
//! its latest compacted snapshot plus the changes received since (`docs/operations.md`,
//! Storage), and the outbox of notifications waiting to be sent (`notifications`).
//!
//! Invariants the store enforces, whatever the caller does:
//! - emails are stored lower-cased and unique;
//! - a user belongs to at most one partnership that is `pending`, `active` or `paused`, whether as
//!   inviter (`user1_id`) or as invitee (`user2_id`): checked inside the writing transaction with
//!   the users' rows locked, and backed by partial unique indexes per column;
//! - a document change is stored once per partnership (idempotent on its hash);
//! - an actor id is bound to one user per partnership;
//! - an FCM token or a Web Push endpoint is one device, of one user;
//! - a notification waits in the outbox once per (recipient, dedupe key), and two senders never
//!   hold one at the same time.
//!
//! # Every query written once
//!
//! The SQL of each domain lives in one module, as a macro that generates that domain's query
//! functions over a backend: `users`, `sessions` (refresh tokens, password resets),
//! `partnerships`, `documents`, `devices`, `notifications` (preferences, the outbox), `sync`
//! (merge commits, materialized rows, sync states), `reads` (expenses, goals, contributions),
//! `approvals_messages` and `export` (the data export's pages of every materialized table). A backend module,
//! [`postgres`] or [`sqlite`], holds only its glue — what truly differs — and expands every domain
//! in a child module of the same name with `backend::backend!`, which also implements [`Store`]
//! once for both. The glue each backend provides, used by the domains through `super::`:
//!
//! | item | PostgreSQL | SQLite |
//! | --- | --- | --- |
//! | `Db` | `sqlx::Postgres` | `sqlx::Sqlite` |
//! | `begin_write(pool)` | `BEGIN` (READ COMMITTED) | `BEGIN IMMEDIATE` (the write lock) |
//! | `begin_read(pool)` | REPEATABLE READ READ ONLY | deferred |
//! | `FOR_UPDATE` | `" FOR UPDATE"` | `""` (the write lock is held) |
//! | `SKIP_LOCKED` (claiming outbox rows) | `" FOR UPDATE SKIP LOCKED"` | `""` (the write lock) |
//! | `lock_users(tx, ids)` | one `= ANY($1) ... FOR UPDATE` | one existence check per id |
//! | `delete_changes(tx, pid, hashes)` | one `= ANY($2)` | one `DELETE` per hash |
//! | `money(d)` / `read_money` / `read_optional_money` | NUMERIC as `Decimal` | decimal TEXT |
//! | `commit_batch` (`Store::commit_merges`) | one statement if it can, kept connections | one tx |
//!
//! Macros rather than generic functions over `sqlx::Database`: the queries bind values whose
//! encoding differs per backend (money) and run on pools, transactions and connections alike,
//! and the bounds that would take per query cost more to read than the queries; `sqlx::Any`
//! cannot carry NUMERIC or TIMESTAMPTZ. Row decoding is written once too: the sync reads decode
//! with the REST reads' decoders; and each materialized table's upsert is built from its column
//! list (`sync::Upsert`), which PostgreSQL's one-statement merge commit reuses.

mod approvals_messages;
mod backend;
#[cfg(test)]
mod conflict_tests;
mod devices;
mod documents;
mod export;
mod history;
mod notifications;
mod partnerships;
pub mod postgres;
mod reads;
mod sessions;
pub mod sqlite;
mod sync;
mod users;

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::materialize::RowChange;
use uuid::Uuid;

pub use approvals_messages::MessageCursor;
pub use devices::{DevicePlatform, DeviceRecord, DeviceTarget, NewDevice};
pub use export::{ExportKey, ExportTable};
pub use history::{AuthorFilter, HistoryQuery, HistoryRecord, NewHistoryEntry, Received};
pub use notifications::{
    ClaimedNotification, NewNotification, NotificationKind, NotificationPreferences,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use sync::stored_millis;

/// What can go wrong in the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A uniqueness or business rule was broken; [`Conflict::code`] is the API's 409 code.
    #[error("conflict: {}", .0.code())]
    Conflict(Conflict),
    /// The row the operation needs does not exist (or is not the caller's).
    #[error("not found")]
    NotFound,
    /// The database failed or is unreachable.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A stored value could not be decoded (corrupt row).
    #[error("corrupt stored value: {0}")]
    Corrupt(String),
    /// The component that writes to the store is shutting down; nothing was written.
    #[error("storage unavailable")]
    Unavailable,
    /// `DATABASE_URL` names neither PostgreSQL nor SQLite (shown without its password).
    #[error("DATABASE_URL must start with postgres://, postgresql:// or sqlite: (got {0})")]
    UnknownScheme(String),
}

/// Which uniqueness or business rule a write broke (a 409 of the API).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Conflict {
    /// The email is already registered (`users.email` is unique).
    EmailTaken,
    /// A refresh token or password reset with this hash is already stored.
    TokenExists,
    /// The inviter cannot invite their own email.
    CannotInviteSelf,
    /// The user already has a pending, active or paused partnership.
    PartnershipExists,
    /// The registered invitee already has a pending, active or paused partnership.
    PartnerHasPartnership,
    /// The partnership is still pending, so it cannot be paused or resumed.
    PartnershipNotActive,
    /// A partnership cannot be set back to `pending`.
    InvalidStatus,
    /// The actor id is bound to another user in this partnership.
    ActorBound,
    /// The document moved on: another node committed a merge of it on top of the version this
    /// merge was made from (`doc_commits`' primary key). The merge is caught up and made again;
    /// it never reaches a client.
    Stale,
}

impl Conflict {
    /// The API's stable 409 code (clients switch on it: never change one).
    pub fn code(&self) -> &'static str {
        match self {
            Conflict::EmailTaken => "email_taken",
            Conflict::TokenExists => "token_exists",
            Conflict::CannotInviteSelf => "cannot_invite_self",
            Conflict::PartnershipExists => "partnership_exists",
            Conflict::PartnerHasPartnership => "partner_has_partnership",
            Conflict::PartnershipNotActive => "partnership_not_active",
            Conflict::InvalidStatus => "invalid_status",
            Conflict::ActorBound => "actor_bound",
            Conflict::Stale => "stale",
        }
    }

    /// The conflict a unique constraint stands for, by the constraint's PostgreSQL name
    /// (`users_email_key`) or by what SQLite's message names (`users.email`, the table and column
    /// of a unique column or index); `None` for any other, which is not a conflict the API knows
    /// (a duplicate primary key, say) and stays a database error.
    fn of_unique(name: &str) -> Option<Conflict> {
        match name {
            "users_email_key" | "users.email" => Some(Conflict::EmailTaken),
            "refresh_tokens_token_hash_key"
            | "refresh_tokens.token_hash"
            | "password_resets_token_hash_key"
            | "password_resets.token_hash" => Some(Conflict::TokenExists),
            // Inviter (user1) or invitee (user2): either way the writing user has one already.
            "partnerships_one_per_user1"
            | "partnerships.user1_id"
            | "partnerships_one_per_user2"
            | "partnerships.user2_id" => Some(Conflict::PartnershipExists),
            "doc_commits_pkey" | "doc_commits.partnership_id, doc_commits.version" => {
                Some(Conflict::Stale)
            }
            _ => None,
        }
    }
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A failed write as the store reports it: a unique constraint the API knows as its
/// [`Conflict`], a foreign key (a missing partnership or user) as `NotFound`, anything else (an
/// unknown unique violation included) as a database error.
pub(crate) fn write_error(err: sqlx::Error) -> StoreError {
    let Some(db) = err.as_database_error() else {
        return StoreError::Database(err);
    };
    if db.is_unique_violation() {
        // PostgreSQL names the constraint; SQLite only says "UNIQUE constraint failed: t.c".
        let name = db.constraint().map(str::to_owned).or_else(|| {
            db.message()
                .strip_prefix("UNIQUE constraint failed: ")
                .map(str::to_owned)
        });
        if let Some(conflict) = name.as_deref().and_then(Conflict::of_unique) {
            return StoreError::Conflict(conflict);
        }
    } else if db.is_foreign_key_violation() {
        return StoreError::NotFound;
    }
    StoreError::Database(err)
}

/// Result alias of the storage layer.
pub type StoreResult<T> = Result<T, StoreError>;

/// A user to create at registration.
#[derive(Clone, Debug)]
pub struct NewUser {
    /// Chosen by the caller (UUID v7).
    pub id: Uuid,
    /// Any case; stored lower-cased.
    pub email: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// Display name.
    pub name: String,
    /// ISO 4217 code of the user's own currency.
    pub currency: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Monthly income in `currency`.
    pub income: Option<Decimal>,
    /// Payday: day of month `"1"`..`"31"` or `"last"`.
    pub payday: Option<String>,
    /// The `https://` URL of the user's picture.
    pub avatar_url: Option<String>,
    /// Monthly personal allowance in `currency`.
    pub personal_allowance: Option<Decimal>,
}

/// A stored user.
#[derive(Clone, Debug, PartialEq)]
pub struct UserRecord {
    /// The user's id.
    pub id: Uuid,
    /// Lower-cased email.
    pub email: String,
    /// The argon2id PHC string.
    pub password_hash: String,
    /// Display name.
    pub name: String,
    /// Monthly income in `currency`.
    pub income: Option<Decimal>,
    /// ISO 4217 code.
    pub currency: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Payday: day of month `"1"`..`"31"` or `"last"`.
    pub payday: Option<String>,
    /// The `https://` URL of the user's picture.
    pub avatar_url: Option<String>,
    /// Monthly personal allowance in `currency`, as written (a change of currency leaves it as
    /// it is, like `income`; the API shows it at the currency's scale).
    pub personal_allowance: Option<Decimal>,
    /// Bumped by a password change or reset; access tokens carry it as `ver`.
    pub token_version: i64,
    /// Last authenticated activity.
    pub last_seen: Option<DateTime<Utc>>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
    /// Last profile change.
    pub updated_at: DateTime<Utc>,
}

/// A profile change; `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Clone, Debug, Default)]
pub struct ProfileUpdate {
    /// New display name.
    pub name: Option<String>,
    /// New ISO 4217 currency.
    pub currency: Option<String>,
    /// New country, or `Some(None)` to clear it.
    pub country: Option<Option<String>>,
    /// New payday, or `Some(None)` to clear it.
    pub payday: Option<Option<String>>,
    /// New avatar URL, or `Some(None)` to clear it.
    pub avatar_url: Option<Option<String>>,
    /// New personal allowance, or `Some(None)` to clear it.
    pub personal_allowance: Option<Option<Decimal>>,
}

/// A refresh token to store (only its hash is kept).
#[derive(Clone, Debug)]
pub struct NewRefreshToken {
    /// Row id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Rotation family: reuse of a rotated token revokes the whole family.
    pub family_id: Uuid,
    /// Hex HMAC of the token.
    pub token_hash: String,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
}

/// A stored refresh token.
#[derive(Clone, Debug, PartialEq)]
pub struct RefreshTokenRecord {
    /// Row id.
    pub id: Uuid,
    /// Owner.
    pub user_id: Uuid,
    /// Rotation family.
    pub family_id: Uuid,
    /// Hex HMAC of the token.
    pub token_hash: String,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Set when rotated.
    pub used_at: Option<DateTime<Utc>>,
    /// Set when revoked (logout, family revocation, password change).
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A password reset to store (only its hash is kept).
#[derive(Clone, Debug)]
pub struct NewPasswordReset {
    /// Row id.
    pub id: Uuid,
    /// Whose password.
    pub user_id: Uuid,
    /// Hex HMAC of the token sent by mail.
    pub token_hash: String,
    /// End of validity.
    pub expires_at: DateTime<Utc>,
}

/// Status of a partnership (`docs/schema-and-rules.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnershipStatus {
    /// Invitation sent, not accepted yet.
    Pending,
    /// Both partners in; the document exists.
    Active,
    /// Paused by a partner; resumable.
    Paused,
}

impl PartnershipStatus {
    /// The stored and serialized name.
    pub fn as_str(&self) -> &'static str {
        match self {
            PartnershipStatus::Pending => "pending",
            PartnershipStatus::Active => "active",
            PartnershipStatus::Paused => "paused",
        }
    }
}

impl fmt::Display for PartnershipStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PartnershipStatus {
    type Err = StoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(PartnershipStatus::Pending),
            "active" => Ok(PartnershipStatus::Active),
            "paused" => Ok(PartnershipStatus::Paused),
            other => Err(StoreError::Corrupt(format!("partnership status {other:?}"))),
        }
    }
}

/// A stored partnership (pending ones are invitations).
#[derive(Clone, Debug, PartialEq)]
pub struct PartnershipRecord {
    /// The partnership's id; its document id derives from it.
    pub id: Uuid,
    /// The inviter.
    pub user1_id: Uuid,
    /// The invitee, once accepted.
    pub user2_id: Option<Uuid>,
    /// Lower-cased email the invitation was sent to.
    pub invitee_email: String,
    /// Lifecycle state.
    pub status: PartnershipStatus,
    /// ISO 4217 currency of the shared money (the inviter's).
    pub currency: String,
    /// Expenses above this (in `currency`) need the partner's approval.
    pub approval_threshold: Decimal,
    /// Invitation time.
    pub created_at: DateTime<Utc>,
    /// Acceptance time.
    pub accepted_at: Option<DateTime<Utc>>,
}

impl PartnershipRecord {
    /// True when `user_id` is one of the two partners.
    pub fn has_member(&self, user_id: Uuid) -> bool {
        self.user1_id == user_id || self.user2_id == Some(user_id)
    }

    /// The other partner of `user_id`, if there is one yet.
    pub fn partner_of(&self, user_id: Uuid) -> Option<Uuid> {
        if self.user1_id == user_id {
            self.user2_id
        } else if self.user2_id == Some(user_id) {
            Some(self.user1_id)
        } else {
            None
        }
    }
}

/// An invitation to create.
#[derive(Clone, Debug)]
pub struct NewInvitation {
    /// The future partnership's id.
    pub id: Uuid,
    /// Who invites.
    pub inviter_id: Uuid,
    /// Who is invited (any case; stored lower-cased); need not be registered.
    pub invitee_email: String,
    /// ISO 4217 currency of the partnership.
    pub currency: String,
    /// Approval threshold in `currency`.
    pub approval_threshold: Decimal,
    /// Invitation time.
    pub now: DateTime<Utc>,
}

/// A pending invitation as its inviter or invitee sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct InvitationRecord {
    /// The pending partnership.
    pub partnership: PartnershipRecord,
    /// The inviter's display name.
    pub inviter_name: String,
    /// The inviter's email.
    pub inviter_email: String,
    /// The inviter's avatar URL: the invitation shows who invites as the partnership will.
    pub inviter_avatar_url: Option<String>,
}

/// What accepting an invitation stores, in one transaction with the status change.
#[derive(Clone, Debug)]
pub struct AcceptInvitation {
    /// The pending partnership.
    pub partnership_id: Uuid,
    /// The invitee accepting.
    pub user_id: Uuid,
    /// The invitee's (lower-cased) email, which must be the invitation's.
    pub email: String,
    /// The document's first snapshot (`Automerge::save()`).
    pub snapshot: NewSnapshot,
    /// Acceptance time.
    pub now: DateTime<Utc>,
}

/// A compacted document snapshot.
#[derive(Clone, Debug, PartialEq)]
pub struct NewSnapshot {
    /// `Automerge::save()` bytes.
    pub bytes: Vec<u8>,
    /// The document heads the snapshot contains, hex change hashes.
    pub heads: Vec<String>,
    /// Number of changes the snapshot contains.
    pub change_count: i64,
    /// The document version the snapshot holds exactly (0 for a new document): a compaction
    /// never replaces a snapshot of a later version.
    pub version: i64,
}

/// A stored change as the document's loader reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredChange {
    /// Its row id: increasing with the version that committed it, so a node that has every
    /// change up to some id catches up with the ones after it.
    pub id: i64,
    /// The user whose merge stored it (`None` for the server's own changes).
    pub user_id: Option<Uuid>,
    /// Raw automerge change bytes.
    pub bytes: Vec<u8>,
}

/// A document as stored at one instant: its version, the latest snapshot and the changes
/// stored since (read in one consistent snapshot of the database, so the content is exactly
/// that version's).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StoredDocument {
    /// The latest committed version (0 before the first merge commit).
    pub version: i64,
    /// The latest snapshot: its row id and bytes.
    pub snapshot: Option<(i64, Vec<u8>)>,
    /// The changes stored beside it, in arrival order.
    pub changes: Vec<StoredChange>,
}

/// What was committed to a document after a given change, read at one instant.
#[derive(Clone, Debug, PartialEq)]
pub enum DocumentTail {
    /// The latest snapshot is still the one the reader has: the version and the changes after
    /// the reader's last one.
    Changes {
        /// The latest committed version.
        version: i64,
        /// Changes stored after the given id, in order.
        changes: Vec<StoredChange>,
    },
    /// A compaction replaced the snapshot (the changes after the reader's last one may be
    /// gone): load the whole document again.
    Compacted,
}

/// A document change received by the server (a client's or its own compensation).
#[derive(Clone, Debug, PartialEq)]
pub struct NewChange {
    /// Hex change hash; unique per partnership.
    pub hash: String,
    /// Hex actor id.
    pub actor: String,
    /// The actor's sequence number of this change.
    pub seq: i64,
    /// The authenticated user who sent it; `None` for the server's own changes.
    pub user_id: Option<Uuid>,
    /// Raw change bytes.
    pub bytes: Vec<u8>,
}

/// The connection pool as it is now (metrics). sqlx does not say how many tasks wait for a
/// connection; PostgreSQL's merge commits run on connections held out of the pool, which are
/// not counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open, lent out or idle.
    pub open: u32,
    /// Open connections waiting in the pool.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

/// The storage interface of the server; see the module documentation for its invariants.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers (readiness probe).
    async fn ping(&self) -> StoreResult<()>;

    /// The connection pool as it is now.
    fn pool_stats(&self) -> PoolStats;

    // ---- users -------------------------------------------------------------------------------

    /// Creates a user; `Conflict::EmailTaken` when the email is already registered.
    async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord>;
    /// The user with this id.
    async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>>;
    /// The user with this email (any case).
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>>;
    /// Sets a new password hash, bumps token_version and revokes every refresh token of the user,
    /// in one transaction; returns the new token version.
    async fn set_password(&self, user_id: Uuid, password_hash: &str) -> StoreResult<i64>;
    /// Applies a profile change; `NotFound` for an unknown user.
    async fn update_profile(&self, user_id: Uuid, update: ProfileUpdate)
        -> StoreResult<UserRecord>;
    /// Sets (or clears) the monthly income.
    async fn update_income(
        &self,
        user_id: Uuid,
        income: Option<Decimal>,
    ) -> StoreResult<UserRecord>;
    /// Records authenticated activity. Only moves forward: a time before the stored one (a
    /// write that finished late) changes nothing.
    async fn touch_last_seen(&self, user_id: Uuid, now: DateTime<Utc>) -> StoreResult<()>;
    /// Deletes the account and its personal data, and ends every partnership the user is in
    /// (pending, active or paused): each is deleted with its document and materialized rows, so
    /// the partner may pair again. One transaction. `NotFound` for an unknown user.
    async fn delete_user(&self, user_id: Uuid) -> StoreResult<()>;

    // ---- auth tokens -------------------------------------------------------------------------

    /// Stores a refresh token's hash.
    async fn insert_refresh_token(&self, token: NewRefreshToken) -> StoreResult<()>;
    /// The refresh token with this hash.
    async fn refresh_token_by_hash(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<RefreshTokenRecord>>;
    /// Atomically marks `old_id` used (only if neither used nor revoked) and inserts `new`;
    /// `Ok(false)` if `old_id` was already used or revoked (nothing inserted).
    async fn rotate_refresh_token(
        &self,
        old_id: Uuid,
        new: NewRefreshToken,
        now: DateTime<Utc>,
    ) -> StoreResult<bool>;
    /// Revokes one refresh token (logout).
    async fn revoke_refresh_token(&self, id: Uuid, now: DateTime<Utc>) -> StoreResult<()>;
    /// Revokes every token of a rotation family (reuse detected).
    async fn revoke_refresh_family(&self, family_id: Uuid, now: DateTime<Utc>) -> StoreResult<()>;
    /// Stores a password reset's hash.
    async fn insert_password_reset(&self, reset: NewPasswordReset) -> StoreResult<()>;
    /// One transaction: the reset must exist, be unused and unexpired at `now`; marks it used,
    /// sets the hash, bumps token_version, revokes all refresh tokens. `Ok(None)` when the token
    /// is unknown, used or expired; otherwise the user's id.
    async fn complete_password_reset(
        &self,
        token_hash: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> StoreResult<Option<Uuid>>;

    // ---- partnerships ------------------------------------------------------------------------

    /// Creates a pending partnership (an invitation). `Conflict::PartnershipExists` when the
    /// inviter already has one, `Conflict::PartnerHasPartnership` when a registered invitee
    /// already has one, `Conflict::CannotInviteSelf` for the inviter's own email.
    async fn create_invitation(&self, invitation: NewInvitation) -> StoreResult<PartnershipRecord>;
    /// Pending invitations addressed to `email` (received) and sent by `user_id`.
    async fn invitations_for(
        &self,
        user_id: Uuid,
        email: &str,
    ) -> StoreResult<Vec<InvitationRecord>>;
    /// The partnership with this id.
    async fn partnership_by_id(&self, id: Uuid) -> StoreResult<Option<PartnershipRecord>>;
    /// Every partnership (of any status) whose id is above `after` (all when `None`), in id
    /// order, at most `limit`: how the admin commands walk the whole database page by page.
    async fn partnerships_after(
        &self,
        after: Option<Uuid>,
        limit: u32,
    ) -> StoreResult<Vec<PartnershipRecord>>;
    /// The user's pending, active or paused partnership.
    async fn current_partnership(&self, user_id: Uuid) -> StoreResult<Option<PartnershipRecord>>;
    /// Accepts an invitation in one transaction: re-checks that it is pending and addressed to
    /// the user and that the user has no other partnership, makes it active, stores the first
    /// document snapshot, and withdraws the other invitations addressed to the user.
    /// `NotFound` when there is no such pending invitation for this user,
    /// `Conflict::PartnershipExists` when the user already has one.
    async fn accept_invitation(&self, accept: AcceptInvitation) -> StoreResult<PartnershipRecord>;
    /// Deletes a pending invitation, as its invitee (decline) or its inviter (withdraw).
    /// `NotFound` when there is no such pending invitation for this user.
    async fn decline_invitation(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        email: &str,
    ) -> StoreResult<()>;
    /// Pauses or resumes an active or paused partnership of `user_id`. `NotFound` when the user
    /// is not a member, `Conflict::PartnershipNotActive` while it is pending, and
    /// `Conflict::InvalidStatus` for `Pending`.
    async fn set_partnership_status(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        status: PartnershipStatus,
    ) -> StoreResult<PartnershipRecord>;

    // ---- documents ---------------------------------------------------------------------------

    /// The latest snapshot (if any) and the changes received since, in arrival order.
    async fn load_document(
        &self,
        partnership_id: Uuid,
    ) -> StoreResult<(Option<Vec<u8>>, Vec<Vec<u8>>)> {
        let stored = self.stored_document(partnership_id).await?;
        Ok((
            stored.snapshot.map(|(_, bytes)| bytes),
            stored.changes.into_iter().map(|c| c.bytes).collect(),
        ))
    }
    /// The document as stored, with its version and row ids, read at one instant.
    async fn stored_document(&self, partnership_id: Uuid) -> StoreResult<StoredDocument>;
    /// What was committed after the change with row id `after` while the latest snapshot is
    /// still `snapshot_id`, read at one instant (how a node catches up with the others).
    async fn document_tail(
        &self,
        partnership_id: Uuid,
        snapshot_id: i64,
        after: i64,
    ) -> StoreResult<DocumentTail>;
    /// The document's latest committed version (0 before the first merge commit).
    async fn document_version(&self, partnership_id: Uuid) -> StoreResult<i64>;
    /// The latest committed version of each of these documents that has had a merge commit
    /// (how a node without Redis learns what the others committed).
    async fn document_versions(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, i64)>>;
    /// Appends changes; a change whose hash is already stored is skipped. Returns how many were new.
    async fn append_changes(
        &self,
        partnership_id: Uuid,
        changes: &[NewChange],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// One transaction: stores `snapshot` as the latest, deletes older snapshots, the changes
    /// whose hashes are in `covered` and the commit versions below the snapshot's. Compactions of
    /// one document are serialized (its partnership row is locked), and one whose snapshot is of
    /// an older version than the stored one writes nothing: two nodes never compact a document at
    /// once, and an older snapshot never replaces a newer one (one of the same version holds the
    /// same changes). Returns the new snapshot's row id, `None` when the stored one was newer.
    async fn compact(
        &self,
        partnership_id: Uuid,
        snapshot: NewSnapshot,
        covered: &[String],
        now: DateTime<Utc>,
    ) -> StoreResult<Option<i64>>;
    /// Binds a hex actor id to a user within a partnership. Binding it again to the same user is
    /// fine; `Conflict::ActorBound` when it is bound to another user.
    async fn bind_actor(
        &self,
        partnership_id: Uuid,
        actor_id: &str,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The user an actor id is bound to in a partnership.
    async fn actor_owner(&self, partnership_id: Uuid, actor_id: &str) -> StoreResult<Option<Uuid>>;
    /// Every actor id bound in a partnership, as (lower-case hex actor id, user), by actor id.
    async fn actor_bindings(&self, partnership_id: Uuid) -> StoreResult<Vec<(String, Uuid)>>;

    // ---- devices -----------------------------------------------------------------------------

    /// Registers a device of `user_id`. A token or endpoint already registered (by anyone) is
    /// the same device: its one row is updated (platform, keys, session, time) and moved to
    /// `user_id`, keeping its id. `NotFound` for an unknown user.
    async fn register_device(
        &self,
        user_id: Uuid,
        device: NewDevice,
        now: DateTime<Utc>,
    ) -> StoreResult<DeviceRecord>;
    /// The user's devices, oldest registration first.
    async fn devices(&self, user_id: Uuid) -> StoreResult<Vec<DeviceRecord>>;
    /// Deletes one of the user's devices; `NotFound` when the user has no device with this id
    /// (another user's included).
    async fn delete_device(&self, user_id: Uuid, id: Uuid) -> StoreResult<()>;
    /// Deletes a device whoever it belongs to (the push service said it is gone); whether
    /// there was one.
    async fn delete_device_by_id(&self, id: Uuid) -> StoreResult<bool>;
    /// Deletes the devices the user registered in one session (refresh-token family): signing
    /// out. Returns how many.
    async fn delete_session_devices(&self, user_id: Uuid, session_id: Uuid) -> StoreResult<u64>;

    // ---- notifications -----------------------------------------------------------------------

    /// The user's notification preferences (the defaults when they never chose).
    async fn notification_preferences(&self, user_id: Uuid)
        -> StoreResult<NotificationPreferences>;
    /// Replaces the user's notification preferences; `NotFound` for an unknown user.
    async fn set_notification_preferences(
        &self,
        user_id: Uuid,
        preferences: &NotificationPreferences,
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// Writes notifications to the outbox in one transaction, due at `now`. One whose
    /// (recipient, dedupe key) is already in the outbox is skipped, never an error; a recipient
    /// or partnership that is gone is `NotFound`, and nothing is written. Returns how many were
    /// new. (A merge's notifications go with its commit: [`MergeCommit::notifications`].)
    async fn enqueue_notifications(
        &self,
        notifications: &[NewNotification],
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Claims up to `limit` notifications due at `now` (`next_attempt_at <= now`) that no one
    /// holds (never claimed, or the claim lapsed), until `now + lease`, in one transaction: on
    /// PostgreSQL rows another transaction is claiming are skipped (`FOR UPDATE SKIP LOCKED`),
    /// so two senders never get one row. Only kinds this build knows are claimed. Each comes
    /// with the devices it already reached. Ordered by id (enqueue order).
    async fn claim_notifications(
        &self,
        now: DateTime<Utc>,
        limit: u32,
        lease: std::time::Duration,
    ) -> StoreResult<Vec<ClaimedNotification>>;
    /// Remembers that a notification reached a device (idempotent): a later claim lists it in
    /// `delivered`. `NotFound` when the notification or the device is gone.
    async fn record_delivery(&self, outbox_id: Uuid, device_id: Uuid) -> StoreResult<()>;
    /// Deletes a notification from the outbox: sent, or given up (nothing when it is gone).
    async fn finish_notification(&self, id: Uuid) -> StoreResult<()>;
    /// Counts a failed attempt, makes the notification due again at `next_attempt_at` and
    /// releases the claim (nothing when it is gone).
    async fn retry_notification(&self, id: Uuid, next_attempt_at: DateTime<Utc>)
        -> StoreResult<()>;
    /// How many notifications the outbox holds (sent ones are deleted).
    async fn outbox_depth(&self) -> StoreResult<i64>;

    // ---- sync --------------------------------------------------------------------------------

    /// Makes one merge durable, in one transaction (`docs/operations.md`, Storage): binds the
    /// new actor ids, stores the new changes (a hash already stored is skipped), applies the
    /// materialized row changes and writes its notifications to the outbox (a (recipient, dedupe
    /// key) already there is skipped). `Conflict::ActorBound` when an actor is bound to another user and
    /// `NotFound` when a bound user is not a member or the partnership is gone; either way
    /// nothing of the commit is written. Returns how many changes were new.
    async fn commit_merge(
        &self,
        partnership_id: Uuid,
        commit: MergeCommit,
        now: DateTime<Utc>,
    ) -> StoreResult<u64>;
    /// Makes several merges (of different partnerships) durable in one transaction, each with
    /// the meaning of [`Store::commit_merge`]; one flush for all of them (group commit). Any
    /// failure writes nothing of any merge; returns how many changes of each were new.
    async fn commit_merges(
        &self,
        merges: &[(Uuid, MergeCommit)],
        now: DateTime<Utc>,
    ) -> StoreResult<Vec<u64>>;
    /// Rebuilds the derived tables from a document, in one transaction: deletes every
    /// materialized row of the partnership and writes the given upserts (deletes are moot).
    async fn replace_materialized(
        &self,
        partnership_id: Uuid,
        rows: Vec<RowChange>,
    ) -> StoreResult<()>;
    /// [`Store::replace_materialized`] for rows derived from the document at version
    /// `from_version`, committed as a merge of that version would be: it takes version
    /// `from_version + 1`, so it fails with `Conflict::Stale` (writing nothing) when a merge
    /// committed since, and a merge made from `from_version` fails the same way after it (the
    /// server catches up and merges again). Safe while servers run (`splitsave rebuild-rows`).
    async fn rebuild_materialized(
        &self,
        partnership_id: Uuid,
        from_version: i64,
        rows: Vec<RowChange>,
    ) -> StoreResult<()>;
    /// Every materialized row of the partnership as `RowChange::Upsert`, ordered by table
    /// (expenses, goals, goal contributions, approvals, messages, contributions) then by id or
    /// month, with amounts at the partnership currency's scale: comparable with what
    /// `materialize::all_rows` gives for the document.
    async fn materialized_rows(&self, partnership_id: Uuid) -> StoreResult<Vec<RowChange>>;
    /// Keeps a peer's sync state (by the storageId it announced, at most 200 characters) so a
    /// reconnecting client resumes cheaply; replaces the previous one. `NotFound` when the
    /// partnership or user is gone.
    async fn save_sync_state(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        peer_storage_id: &str,
        state: &[u8],
        now: DateTime<Utc>,
    ) -> StoreResult<()>;
    /// The sync state saved for this peer, if any.
    async fn load_sync_state(
        &self,
        partnership_id: Uuid,
        user_id: Uuid,
        peer_storage_id: &str,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// The server's automerge-repo storageId: created once (a random UUID) and then always the
    /// same, for every node sharing the database and across restarts, so clients can trust the
    /// server's remote heads as durable.
    async fn server_storage_id(&self) -> StoreResult<String>;
    /// How many changes are stored beside the latest snapshot; past a threshold the sync layer
    /// compacts.
    async fn document_change_count(&self, partnership_id: Uuid) -> StoreResult<i64>;

    // ---- REST reads (approvals, messages) ----

    /// The partnership's approval requests with `status`, newest first: `limit` of them after
    /// skipping `offset` (`GET /api/approvals`).
    async fn list_approvals(
        &self,
        partnership_id: Uuid,
        status: splitsave_sync_core::enums::ApprovalStatus,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::ApprovalRow>>;
    /// One approval request of the partnership; `None` when it has no such id (another
    /// couple's id included).
    async fn approval(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::ApprovalRow>>;
    /// The partnership's messages newest first (creation time, then id), at most `limit`,
    /// strictly older than `before` when given (`GET /api/messages`).
    async fn list_messages(
        &self,
        partnership_id: Uuid,
        before: Option<MessageCursor>,
        limit: u32,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::MessageRow>>;
    /// One message of the partnership; `None` when it has no such id.
    async fn message(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::MessageRow>>;

    // ---- REST reads (expenses, goals, contributions) ----

    /// The partnership's expenses, newest first (creation time descending, then id), `limit` of
    /// them after skipping `offset`; `status` and `category` narrow the list when given
    /// (`GET /api/expenses`). Amounts at the currency's scale.
    async fn list_expenses(
        &self,
        partnership_id: Uuid,
        status: Option<splitsave_sync_core::enums::ItemStatus>,
        category: Option<splitsave_sync_core::enums::Category>,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::ExpenseRow>>;
    /// One expense of the partnership; `None` when it has no such id (another couple's id
    /// included).
    async fn expense(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::ExpenseRow>>;
    /// The partnership's goals, newest first (creation time descending, then id), `limit` of
    /// them after skipping `offset`, with `status` when given (`GET /api/goals`).
    async fn list_goals(
        &self,
        partnership_id: Uuid,
        status: Option<splitsave_sync_core::enums::ItemStatus>,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::GoalRow>>;
    /// One goal of the partnership; `None` when it has no such id.
    async fn goal(
        &self,
        partnership_id: Uuid,
        id: Uuid,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::GoalRow>>;
    /// The partnership's monthly contributions, latest month first, each with its shares
    /// (ordered by user id), `limit` months after skipping `offset` (`GET /api/contributions`).
    async fn list_contributions(
        &self,
        partnership_id: Uuid,
        limit: u32,
        offset: u64,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::ContributionRow>>;
    /// One month (`YYYY-MM`) of the partnership's contributions, with its shares.
    async fn contribution(
        &self,
        partnership_id: Uuid,
        month: &str,
    ) -> StoreResult<Option<splitsave_sync_core::materialize::ContributionRow>>;

    // ---- the data export ----

    /// One page of a materialized table of the partnership for `GET /api/export`: at most
    /// `limit` rows after `after` (the first page when `None`), in key order (by id; the months
    /// by month, each with its shares), decoded exactly as the REST reads decode them. Continue
    /// with [`ExportKey::of`] the page's last row until a page is shorter than `limit`. Each
    /// page is its own read (see the `export` module for why not one transaction).
    async fn export_page(
        &self,
        partnership_id: Uuid,
        table: ExportTable,
        after: Option<&ExportKey>,
        limit: u32,
    ) -> StoreResult<Vec<splitsave_sync_core::materialize::Row>>;

    // ---- history ----

    /// A page of the partnership's history entries, newest first (see the `history` module).
    async fn history_page(
        &self,
        partnership_id: Uuid,
        query: &HistoryQuery,
    ) -> StoreResult<Vec<HistoryRecord>>;

    /// Replaces the partnership's history entries with `entries` derived from its document at
    /// `from_version`, in one transaction that takes the next version as a merge commit does:
    /// `Conflict::Stale` when a merge committed since.
    async fn replace_history(
        &self,
        partnership_id: Uuid,
        from_version: i64,
        entries: &[(NewHistoryEntry, Received)],
    ) -> StoreResult<()>;

    /// Refreshes the query planner's statistics of the history index (after a rebuild).
    async fn analyze_history(&self) -> StoreResult<()>;

    /// When each stored change of the partnership was received (changes compaction folded into
    /// the snapshot are no longer listed).
    async fn received_times(
        &self,
        partnership_id: Uuid,
    ) -> StoreResult<Vec<(String, DateTime<Utc>)>>;
}

/// Everything one merge makes durable at once (see [`Store::commit_merge`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MergeCommit {
    /// Changes new to the server: the client's and the server's compensations.
    pub changes: Vec<NewChange>,
    /// Actor ids seen for the first time, as (hex actor id, the user who sent them).
    pub bindings: Vec<(String, Uuid)>,
    /// The materialized rows the merge touched.
    pub rows: Vec<RowChange>,
    /// The document version this merge creates (the one it was made from, plus one), or `None`
    /// to write without the check (tools and tests that seed documents). A version another
    /// merge already took fails the commit with `Conflict::Stale`.
    pub version: Option<i64>,
    /// The notifications the merge causes, written to the outbox in the same transaction: a
    /// commit that fails writes none, one that succeeds loses none.
    pub notifications: Vec<NewNotification>,
    /// The history entries of the merge's changes, indexed in the same transaction.
    pub history: Vec<NewHistoryEntry>,
}

/// Opens the store the URL names (`postgres://…` or `sqlite:…`) and applies the migrations.
pub async fn connect(database_url: &str) -> StoreResult<std::sync::Arc<dyn Store>> {
    if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PgStore::connect(database_url).await?))
    } else if database_url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(
            SqliteStore::connect(database_url).await?,
        ))
    } else {
        // A typo (`postgress://`, `mysql://`) must not silently become a SQLite file.
        Err(StoreError::UnknownScheme(crate::config::redact_url(
            database_url,
        )))
    }
}

/// Applies the migrations of the backend the URL names, without serving (`splitsave migrate`).
pub async fn migrate(database_url: &str) -> StoreResult<()> {
    connect(database_url).await.map(|_| ())
}

/// Lower-cases an email the way it is stored.
pub(crate) fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_database_url_of_an_unknown_kind_is_refused_not_taken_for_sqlite() {
        for url in [
            "postgress://app:hunter2@db/splitsave",
            "mysql://app:hunter2@db/splitsave",
            "./data/splitsave.db",
        ] {
            match connect(url).await {
                Err(err @ StoreError::UnknownScheme(_)) => {
                    let shown = err.to_string();
                    assert!(shown.contains("must start with"), "{shown}");
                    assert!(!shown.contains("hunter2"), "the password is shown: {shown}");
                }
                Err(other) => panic!("{url}: {other}"),
                Ok(_) => panic!("{url} was accepted"),
            }
        }
    }
}
