//! What makes a backend of its glue, written once in [`backend!`]: the domain query modules
//! expanded over the glue, and the [`Store`](super::Store) implementation, every method of which
//! hands the store's pool to the query module of its domain. The one method a backend writes
//! itself is `commit_batch` (how a group of merges is made durable).

/// Expands, in a backend's module, one child module per domain (`users`, `sessions`,
/// `partnerships`, `documents`, `devices`, `notifications`, `sync`, `reads`,
/// `approvals_messages`), each holding
/// that domain's queries over the backend's glue, gives the backend's store type its public
/// `pool()` and implements `Store` for it. The type has a `pool` field and a
/// `commit_batch(&self, merges, now)` method.
macro_rules! backend {
    ($store:ident) => {
        mod users {
            $crate::store::users::user_queries!();
        }
        mod sessions {
            $crate::store::sessions::session_queries!();
        }
        mod partnerships {
            $crate::store::partnerships::partnership_queries!();
        }
        mod documents {
            $crate::store::documents::document_queries!();
        }
        mod devices {
            $crate::store::devices::device_queries!();
        }
        mod notifications {
            $crate::store::notifications::notification_queries!();
        }
        mod sync {
            $crate::store::sync::sync_queries!();
        }
        mod reads {
            $crate::store::reads::read_queries!();
        }
        mod approvals_messages {
            $crate::store::approvals_messages::approval_message_queries!();
        }
        mod export {
            $crate::store::export::export_queries!();
        }
        mod history {
            $crate::store::history::history_queries!();
        }

        impl $store {
            /// The underlying pool, for the layers that add their own queries (materialization).
            pub fn pool(&self) -> &sqlx::Pool<Db> {
                &self.pool
            }
        }

        mod trait_impl {
            use super::{
                approvals_messages, devices, documents, export, history, notifications,
                partnerships, reads, sessions, sync, users, $store,
            };
            use chrono::{DateTime, Utc};
            use rust_decimal::Decimal;
            use splitsave_sync_core::enums::{ApprovalStatus, Category, ItemStatus};
            use splitsave_sync_core::materialize::{
                ApprovalRow, ContributionRow, ExpenseRow, GoalRow, MessageRow, RowChange,
            };
            use uuid::Uuid;

            use $crate::store::{
                AcceptInvitation, ClaimedNotification, DeviceRecord, InvitationRecord, MergeCommit,
                MessageCursor, NewChange, NewDevice, NewInvitation, NewNotification,
                NewPasswordReset, NewRefreshToken, NewSnapshot, NewUser, NotificationPreferences,
                PartnershipRecord, PartnershipStatus, ProfileUpdate, RefreshTokenRecord, Store,
                StoreResult, UserRecord,
            };

            #[async_trait::async_trait]
            impl Store for $store {
                async fn ping(&self) -> StoreResult<()> {
                    sqlx::query("SELECT 1").execute(&self.pool).await?;
                    Ok(())
                }

                fn pool_stats(&self) -> $crate::store::PoolStats {
                    $crate::store::PoolStats {
                        open: self.pool.size(),
                        idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
                        max: self.pool.options().get_max_connections(),
                    }
                }

                // ---- users ----

                async fn create_user(&self, user: NewUser) -> StoreResult<UserRecord> {
                    users::create_user(&self.pool, user).await
                }

                async fn user_by_id(&self, id: Uuid) -> StoreResult<Option<UserRecord>> {
                    users::user_by(&self.pool, "id", id).await
                }

                async fn user_by_email(&self, email: &str) -> StoreResult<Option<UserRecord>> {
                    let email = $crate::store::normalize_email(email);
                    users::user_by(&self.pool, "email", email).await
                }

                async fn set_password(
                    &self,
                    user_id: Uuid,
                    password_hash: &str,
                ) -> StoreResult<i64> {
                    users::set_password(&self.pool, user_id, password_hash).await
                }

                async fn update_profile(
                    &self,
                    user_id: Uuid,
                    update: ProfileUpdate,
                ) -> StoreResult<UserRecord> {
                    users::update_profile(&self.pool, user_id, update).await
                }

                async fn update_income(
                    &self,
                    user_id: Uuid,
                    income: Option<Decimal>,
                ) -> StoreResult<UserRecord> {
                    users::update_income(&self.pool, user_id, income).await
                }

                async fn touch_last_seen(
                    &self,
                    user_id: Uuid,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    users::touch_last_seen(&self.pool, user_id, now).await
                }

                async fn delete_user(&self, user_id: Uuid) -> StoreResult<()> {
                    users::delete_user(&self.pool, user_id).await
                }

                // ---- sessions ----

                async fn insert_refresh_token(&self, token: NewRefreshToken) -> StoreResult<()> {
                    sessions::insert_refresh_token(&self.pool, token).await
                }

                async fn refresh_token_by_hash(
                    &self,
                    token_hash: &str,
                ) -> StoreResult<Option<RefreshTokenRecord>> {
                    sessions::refresh_token_by_hash(&self.pool, token_hash).await
                }

                async fn rotate_refresh_token(
                    &self,
                    old_id: Uuid,
                    new: NewRefreshToken,
                    now: DateTime<Utc>,
                ) -> StoreResult<bool> {
                    sessions::rotate_refresh_token(&self.pool, old_id, new, now).await
                }

                async fn revoke_refresh_token(
                    &self,
                    id: Uuid,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    sessions::revoke_refresh_token(&self.pool, id, now).await
                }

                async fn revoke_refresh_family(
                    &self,
                    family_id: Uuid,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    sessions::revoke_refresh_family(&self.pool, family_id, now).await
                }

                async fn insert_password_reset(&self, reset: NewPasswordReset) -> StoreResult<()> {
                    sessions::insert_password_reset(&self.pool, reset).await
                }

                async fn complete_password_reset(
                    &self,
                    token_hash: &str,
                    password_hash: &str,
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<Uuid>> {
                    sessions::complete_password_reset(&self.pool, token_hash, password_hash, now)
                        .await
                }

                // ---- partnerships ----

                async fn create_invitation(
                    &self,
                    invitation: NewInvitation,
                ) -> StoreResult<PartnershipRecord> {
                    partnerships::create_invitation(&self.pool, invitation).await
                }

                async fn invitations_for(
                    &self,
                    user_id: Uuid,
                    email: &str,
                ) -> StoreResult<Vec<InvitationRecord>> {
                    partnerships::invitations_for(&self.pool, user_id, email).await
                }

                async fn partnership_by_id(
                    &self,
                    id: Uuid,
                ) -> StoreResult<Option<PartnershipRecord>> {
                    partnerships::partnership_by_id(&self.pool, id).await
                }

                async fn partnerships_after(
                    &self,
                    after: Option<Uuid>,
                    limit: u32,
                ) -> StoreResult<Vec<PartnershipRecord>> {
                    partnerships::partnerships_after(&self.pool, after, limit).await
                }

                async fn current_partnership(
                    &self,
                    user_id: Uuid,
                ) -> StoreResult<Option<PartnershipRecord>> {
                    partnerships::current_partnership(&self.pool, user_id).await
                }

                async fn accept_invitation(
                    &self,
                    accept: AcceptInvitation,
                ) -> StoreResult<PartnershipRecord> {
                    partnerships::accept_invitation(&self.pool, accept).await
                }

                async fn decline_invitation(
                    &self,
                    partnership_id: Uuid,
                    user_id: Uuid,
                    email: &str,
                ) -> StoreResult<()> {
                    partnerships::decline_invitation(&self.pool, partnership_id, user_id, email)
                        .await
                }

                async fn set_partnership_status(
                    &self,
                    partnership_id: Uuid,
                    user_id: Uuid,
                    status: PartnershipStatus,
                ) -> StoreResult<PartnershipRecord> {
                    partnerships::set_partnership_status(
                        &self.pool,
                        partnership_id,
                        user_id,
                        status,
                    )
                    .await
                }

                // ---- documents ----

                async fn stored_document(
                    &self,
                    partnership_id: Uuid,
                ) -> StoreResult<$crate::store::StoredDocument> {
                    documents::stored_document(&self.pool, partnership_id).await
                }

                async fn document_tail(
                    &self,
                    partnership_id: Uuid,
                    snapshot_id: i64,
                    after: i64,
                ) -> StoreResult<$crate::store::DocumentTail> {
                    documents::document_tail(&self.pool, partnership_id, snapshot_id, after).await
                }

                async fn document_version(&self, partnership_id: Uuid) -> StoreResult<i64> {
                    documents::document_version(&self.pool, partnership_id).await
                }

                async fn document_versions(&self, ids: &[Uuid]) -> StoreResult<Vec<(Uuid, i64)>> {
                    super::document_versions(&self.pool, ids).await
                }

                async fn append_changes(
                    &self,
                    partnership_id: Uuid,
                    changes: &[NewChange],
                    now: DateTime<Utc>,
                ) -> StoreResult<u64> {
                    documents::append_changes(&self.pool, partnership_id, changes, now).await
                }

                async fn compact(
                    &self,
                    partnership_id: Uuid,
                    snapshot: NewSnapshot,
                    covered: &[String],
                    now: DateTime<Utc>,
                ) -> StoreResult<Option<i64>> {
                    documents::compact(&self.pool, partnership_id, snapshot, covered, now).await
                }

                async fn bind_actor(
                    &self,
                    partnership_id: Uuid,
                    actor_id: &str,
                    user_id: Uuid,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    documents::bind_actor(&self.pool, partnership_id, actor_id, user_id, now).await
                }

                async fn actor_owner(
                    &self,
                    partnership_id: Uuid,
                    actor_id: &str,
                ) -> StoreResult<Option<Uuid>> {
                    documents::actor_owner(&self.pool, partnership_id, actor_id).await
                }

                async fn actor_bindings(
                    &self,
                    partnership_id: Uuid,
                ) -> StoreResult<Vec<(String, Uuid)>> {
                    documents::actor_bindings(&self.pool, partnership_id).await
                }

                // ---- devices ----

                async fn register_device(
                    &self,
                    user_id: Uuid,
                    device: NewDevice,
                    now: DateTime<Utc>,
                ) -> StoreResult<DeviceRecord> {
                    devices::register_device(&self.pool, user_id, device, now).await
                }

                async fn devices(&self, user_id: Uuid) -> StoreResult<Vec<DeviceRecord>> {
                    devices::devices(&self.pool, user_id).await
                }

                async fn delete_device(&self, user_id: Uuid, id: Uuid) -> StoreResult<()> {
                    devices::delete_device(&self.pool, user_id, id).await
                }

                async fn delete_device_by_id(&self, id: Uuid) -> StoreResult<bool> {
                    devices::delete_device_by_id(&self.pool, id).await
                }

                async fn delete_session_devices(
                    &self,
                    user_id: Uuid,
                    session_id: Uuid,
                ) -> StoreResult<u64> {
                    devices::delete_session_devices(&self.pool, user_id, session_id).await
                }

                // ---- notifications ----

                async fn notification_preferences(
                    &self,
                    user_id: Uuid,
                ) -> StoreResult<NotificationPreferences> {
                    notifications::preferences(&self.pool, user_id).await
                }

                async fn set_notification_preferences(
                    &self,
                    user_id: Uuid,
                    preferences: &NotificationPreferences,
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    notifications::set_preferences(&self.pool, user_id, preferences, now).await
                }

                async fn enqueue_notifications(
                    &self,
                    new: &[NewNotification],
                    now: DateTime<Utc>,
                ) -> StoreResult<u64> {
                    notifications::enqueue(&self.pool, new, now).await
                }

                async fn claim_notifications(
                    &self,
                    now: DateTime<Utc>,
                    limit: u32,
                    lease: std::time::Duration,
                ) -> StoreResult<Vec<ClaimedNotification>> {
                    notifications::claim(&self.pool, now, limit, lease).await
                }

                async fn record_delivery(
                    &self,
                    outbox_id: Uuid,
                    device_id: Uuid,
                ) -> StoreResult<()> {
                    notifications::record_delivery(&self.pool, outbox_id, device_id).await
                }

                async fn finish_notification(&self, id: Uuid) -> StoreResult<()> {
                    notifications::finish(&self.pool, id).await
                }

                async fn retry_notification(
                    &self,
                    id: Uuid,
                    next_attempt_at: DateTime<Utc>,
                ) -> StoreResult<()> {
                    notifications::retry(&self.pool, id, next_attempt_at).await
                }

                async fn outbox_depth(&self) -> StoreResult<i64> {
                    notifications::outbox_depth(&self.pool).await
                }

                // ---- sync ----

                async fn commit_merge(
                    &self,
                    partnership_id: Uuid,
                    commit: MergeCommit,
                    now: DateTime<Utc>,
                ) -> StoreResult<u64> {
                    let counts = self.commit_batch(&[(partnership_id, commit)], now).await?;
                    Ok(counts.into_iter().sum())
                }

                async fn commit_merges(
                    &self,
                    merges: &[(Uuid, MergeCommit)],
                    now: DateTime<Utc>,
                ) -> StoreResult<Vec<u64>> {
                    self.commit_batch(merges, now).await
                }

                async fn replace_materialized(
                    &self,
                    partnership_id: Uuid,
                    rows: Vec<RowChange>,
                ) -> StoreResult<()> {
                    sync::replace_materialized(&self.pool, partnership_id, rows, Utc::now()).await
                }

                async fn rebuild_materialized(
                    &self,
                    partnership_id: Uuid,
                    from_version: i64,
                    rows: Vec<RowChange>,
                ) -> StoreResult<()> {
                    sync::rebuild_materialized(
                        &self.pool,
                        partnership_id,
                        from_version,
                        rows,
                        Utc::now(),
                    )
                    .await
                }

                async fn materialized_rows(
                    &self,
                    partnership_id: Uuid,
                ) -> StoreResult<Vec<RowChange>> {
                    sync::materialized_rows(&self.pool, partnership_id).await
                }

                async fn save_sync_state(
                    &self,
                    partnership_id: Uuid,
                    user_id: Uuid,
                    peer_storage_id: &str,
                    state: &[u8],
                    now: DateTime<Utc>,
                ) -> StoreResult<()> {
                    sync::save_sync_state(
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
                    sync::load_sync_state(&self.pool, partnership_id, user_id, peer_storage_id)
                        .await
                }

                async fn server_storage_id(&self) -> StoreResult<String> {
                    sync::server_storage_id(&self.pool).await
                }

                async fn document_change_count(&self, partnership_id: Uuid) -> StoreResult<i64> {
                    sync::document_change_count(&self.pool, partnership_id).await
                }

                // ---- REST reads ----

                async fn list_approvals(
                    &self,
                    partnership_id: Uuid,
                    status: ApprovalStatus,
                    limit: u32,
                    offset: u64,
                ) -> StoreResult<Vec<ApprovalRow>> {
                    approvals_messages::list_approvals(
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
                ) -> StoreResult<Option<ApprovalRow>> {
                    approvals_messages::approval(&self.pool, partnership_id, id).await
                }

                async fn list_messages(
                    &self,
                    partnership_id: Uuid,
                    before: Option<MessageCursor>,
                    limit: u32,
                ) -> StoreResult<Vec<MessageRow>> {
                    approvals_messages::list_messages(&self.pool, partnership_id, before, limit)
                        .await
                }

                async fn message(
                    &self,
                    partnership_id: Uuid,
                    id: Uuid,
                ) -> StoreResult<Option<MessageRow>> {
                    approvals_messages::message(&self.pool, partnership_id, id).await
                }

                async fn list_expenses(
                    &self,
                    partnership_id: Uuid,
                    status: Option<ItemStatus>,
                    category: Option<Category>,
                    limit: u32,
                    offset: u64,
                ) -> StoreResult<Vec<ExpenseRow>> {
                    reads::list_expenses(
                        &self.pool,
                        partnership_id,
                        status,
                        category,
                        limit,
                        offset,
                    )
                    .await
                }

                async fn expense(
                    &self,
                    partnership_id: Uuid,
                    id: Uuid,
                ) -> StoreResult<Option<ExpenseRow>> {
                    reads::expense(&self.pool, partnership_id, id).await
                }

                async fn list_goals(
                    &self,
                    partnership_id: Uuid,
                    status: Option<ItemStatus>,
                    limit: u32,
                    offset: u64,
                ) -> StoreResult<Vec<GoalRow>> {
                    reads::list_goals(&self.pool, partnership_id, status, limit, offset).await
                }

                async fn goal(
                    &self,
                    partnership_id: Uuid,
                    id: Uuid,
                ) -> StoreResult<Option<GoalRow>> {
                    reads::goal(&self.pool, partnership_id, id).await
                }

                async fn list_contributions(
                    &self,
                    partnership_id: Uuid,
                    limit: u32,
                    offset: u64,
                ) -> StoreResult<Vec<ContributionRow>> {
                    reads::list_contributions(&self.pool, partnership_id, limit, offset).await
                }

                async fn contribution(
                    &self,
                    partnership_id: Uuid,
                    month: &str,
                ) -> StoreResult<Option<ContributionRow>> {
                    reads::contribution(&self.pool, partnership_id, month).await
                }

                // ---- the data export ----

                async fn export_page(
                    &self,
                    partnership_id: Uuid,
                    table: $crate::store::ExportTable,
                    after: Option<&$crate::store::ExportKey>,
                    limit: u32,
                ) -> StoreResult<Vec<splitsave_sync_core::materialize::Row>> {
                    export::export_page(&self.pool, partnership_id, table, after, limit).await
                }

                // ---- history ----

                async fn history_page(
                    &self,
                    partnership_id: Uuid,
                    query: &$crate::store::HistoryQuery,
                ) -> StoreResult<Vec<$crate::store::HistoryRecord>> {
                    history::history_page(&self.pool, partnership_id, query).await
                }

                async fn replace_history(
                    &self,
                    partnership_id: Uuid,
                    from_version: i64,
                    entries: &[($crate::store::NewHistoryEntry, $crate::store::Received)],
                ) -> StoreResult<()> {
                    history::replace_history(&self.pool, partnership_id, from_version, entries)
                        .await
                }

                async fn analyze_history(&self) -> StoreResult<()> {
                    history::analyze(&self.pool).await
                }

                async fn received_times(
                    &self,
                    partnership_id: Uuid,
                ) -> StoreResult<Vec<(String, DateTime<Utc>)>> {
                    history::received_times(&self.pool, partnership_id).await
                }
            }
        }
    };
}

pub(super) use backend;
