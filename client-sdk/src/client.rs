//! [`Client`]: the one type an app holds.
//!
//! A client owns a local store (a directory the app chooses), the partnership document in
//! memory, the session, and — once [`Client::start_sync`] is called — a background task that
//! keeps the document in sync with the server whenever it can reach it. Every operation and
//! read works on the local document, online or not; operations are written to the store before
//! they return, so an app killed right after an edit still has it on restart.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use automerge::transaction::{CommitOptions, Transaction};
use automerge::Automerge;
use chrono::{DateTime, TimeZone, Utc};
use splitsave_sync_core::document::{read_document, DocumentState};
use splitsave_sync_core::enums::ApprovalStatus;
use splitsave_sync_core::history;
use splitsave_sync_core::ids::{EntityId, UserId};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, OpResult, Outcome};
use splitsave_sync_core::schema::{
    Approval, Expense, ExpenseFields, Goal, GoalFields, Message, MonthContribution,
};
use splitsave_sync_core::split::Month;
use splitsave_sync_core::split_doc::{self, DocSplit};
use splitsave_sync_core::time::Millis;
use tokio::sync::{broadcast, watch, Notify};
use uuid::Uuid;

use crate::api::{Api, AuthSession, Partnership, Registration, User};
use crate::error::{ClientError, Result};
use crate::feed::{ClientEvent, Events, SyncState, SyncStatus};
use crate::session::expires_at_ms;
use crate::store::{LocalStore, StoredTokens};
use crate::sync::SyncTask;

/// How many events the change feed holds for a subscriber that is not reading.
pub const FEED_CAPACITY: usize = 1024;

/// What a client needs to start: the server and the directory of its local store.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// `http://host:port` or `https://host` of the SplitSave server.
    pub server_url: String,
    /// Where the local store lives; one directory per signed-in device.
    pub store_dir: PathBuf,
    /// The first reconnect delay; it doubles after each failure, up to `reconnect_max`, with
    /// random jitter so many phones do not reconnect in step after an outage.
    pub reconnect_min: Duration,
    /// The longest reconnect delay.
    pub reconnect_max: Duration,
    /// How long opening a sync connection (WebSocket and handshake) may take.
    pub connect_timeout: Duration,
    /// How many sync messages per second the client sends at most (after a burst of twice as
    /// many). The server closes a connection that sends more than its own limit (50 per second
    /// after a burst of 100 by default); edits made faster than this are not delayed one by one
    /// but travel together in the next message.
    pub max_messages_per_second: u32,
}

impl ClientConfig {
    /// The defaults: reconnect after 250 ms, backing off to 30 s; 10 s to connect; at most 40
    /// sync messages a second.
    ///
    /// ```
    /// use std::time::Duration;
    /// let mut config = splitsave_client::ClientConfig::new("https://api.example.com", "/data/splitsave");
    /// config.reconnect_max = Duration::from_secs(60); // gentler on a metered connection
    /// assert_eq!(config.reconnect_min, Duration::from_millis(250));
    /// ```
    pub fn new(server_url: impl Into<String>, store_dir: impl Into<PathBuf>) -> Self {
        Self {
            server_url: server_url.into(),
            store_dir: store_dir.into(),
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            max_messages_per_second: 40,
        }
    }
}

/// How [`Client::connect`] signs in.
#[derive(Clone, Debug)]
pub enum Credentials {
    /// Sign in with a password.
    Login {
        /// The account's email.
        email: String,
        /// Its password.
        password: String,
    },
    /// Create the account, then sign in with it.
    Register(Registration),
    /// Use the session kept in the local store (an app starting again); fails with
    /// [`ClientError::NotSignedIn`] when the store holds none.
    Stored,
}

/// The local state behind one lock: the store and the document it persists.
pub(crate) struct Local {
    pub(crate) store: LocalStore,
    pub(crate) doc: Automerge,
}

/// What the client and its sync task share.
pub(crate) struct Inner {
    pub(crate) api: Api,
    pub(crate) config: ClientConfig,
    local: Mutex<Local>,
    /// One token refresh at a time (refresh tokens are single-use).
    pub(crate) refresh_lock: tokio::sync::Mutex<()>,
    pub(crate) status: watch::Sender<SyncState>,
    pub(crate) events: broadcast::Sender<ClientEvent>,
    /// Woken after every local edit, so the sync task sends it at once.
    pub(crate) local_change: Notify,
    /// Bumped after every change of the document, local or remote.
    pub(crate) version: watch::Sender<u64>,
}

impl Inner {
    /// The local state. A panic while it was held cannot leave it half-written (every write
    /// is one automerge transaction followed by a store append), so a poisoned lock is used as
    /// is.
    pub(crate) fn lock_local(&self) -> MutexGuard<'_, Local> {
        self.local
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sets the sync status (and tells the feed when it changed).
    pub(crate) fn set_status(&self, status: SyncStatus, error: Option<String>) {
        let mut changed = None;
        self.status.send_if_modified(|s| {
            let error_changed = error.is_some() && s.last_error != error;
            if s.status == status && !error_changed {
                return false;
            }
            s.status = status;
            if status == SyncStatus::Synced {
                s.last_error = None;
            } else if error.is_some() {
                s.last_error = error.clone();
            }
            changed = Some(s.clone());
            true
        });
        if let Some(state) = changed {
            let _ = self.events.send(ClientEvent::Status(state));
        }
    }

    /// Records a sync point in memory (the store is updated by the sync task, throttled).
    pub(crate) fn mark_synced(&self, at: DateTime<Utc>) {
        self.status.send_modify(|s| s.last_synced_at = Some(at));
        self.set_status(SyncStatus::Synced, None);
    }

    /// After a local edit: the document is no longer known to be in sync, and the sync task
    /// should send the change now.
    fn changed_locally(&self) {
        self.status.send_if_modified(|s| {
            if s.status == SyncStatus::Synced {
                s.status = SyncStatus::Syncing;
                true
            } else {
                false
            }
        });
        self.version.send_modify(|v| *v += 1);
        self.local_change.notify_one();
    }
}

/// An offline-first SplitSave client for one device.
///
/// ```no_run
/// # async fn demo() -> splitsave_client::Result<()> {
/// use splitsave_client::{Client, ClientConfig};
/// use splitsave_client::ops::NewExpense;
/// use splitsave_client::enums::{Category, Frequency};
/// use splitsave_client::money::MinorUnits;
///
/// let client = Client::open(ClientConfig::new("http://127.0.0.1:3000", "/tmp/ann"))?;
/// if !client.is_signed_in() {
///     client.login("ann@example.com", "correct horse battery").await?;
/// }
/// client.start_sync().await?;
/// client.wait_until_synced(std::time::Duration::from_secs(10)).await?;
/// let outcome = client.add_expense(NewExpense {
///     name: "Rent".into(),
///     amount: MinorUnits(120_000),
///     category: Category::Housing,
///     frequency: Frequency::Monthly,
/// })?;
/// println!("{outcome:?}; split: {:?}", client.split()?.split);
/// client.shutdown().await;
/// # Ok(()) }
/// ```
pub struct Client {
    inner: Arc<Inner>,
    sync: tokio::sync::Mutex<Option<SyncTask>>,
}

impl Client {
    /// Opens the local store in `config.store_dir` (creating it when missing) and the document
    /// it holds. Nothing touches the network: an app can open its client offline and read and
    /// edit at once. A stored session is used as is; call [`Client::start_sync`] to sync.
    pub fn open(config: ClientConfig) -> Result<Client> {
        let api = Api::new(&config.server_url)?;
        let store = LocalStore::open(&config.store_dir)?;
        // A stored document already carries the device's actor; a new one gets it here.
        let doc = match store.load_document()? {
            Some(doc) => doc,
            None => Automerge::new().with_actor(store.actor()?),
        };
        let last_synced_at = store.meta().last_synced_at_ms.and_then(from_millis);
        let (status, _) = watch::channel(SyncState {
            status: SyncStatus::Offline,
            last_synced_at,
            last_error: None,
        });
        let (events, _) = broadcast::channel(FEED_CAPACITY);
        let (version, _) = watch::channel(0);
        Ok(Client {
            inner: Arc::new(Inner {
                api,
                config,
                local: Mutex::new(Local { store, doc }),
                refresh_lock: tokio::sync::Mutex::new(()),
                status,
                events,
                local_change: Notify::new(),
                version,
            }),
            sync: tokio::sync::Mutex::new(None),
        })
    }

    /// Opens the local store, signs in (or keeps the stored session) and starts syncing: the
    /// one call most apps need at start-up. Offline, `Credentials::Stored` still succeeds and
    /// the client syncs once the server is reachable.
    ///
    /// ```no_run
    /// # async fn demo() -> splitsave_client::Result<()> {
    /// use splitsave_client::{Client, ClientConfig, Credentials};
    /// let config = ClientConfig::new("https://api.example.com", "/data/splitsave");
    /// let client = match Client::connect(config.clone(), Credentials::Stored).await {
    ///     Ok(client) => client,
    ///     Err(splitsave_client::ClientError::NotSignedIn) => {
    ///         let login = Credentials::Login {
    ///             email: "ann@example.com".into(),
    ///             password: "correct horse battery".into(),
    ///         };
    ///         Client::connect(config, login).await?
    ///     }
    ///     Err(other) => return Err(other),
    /// };
    /// # Ok(()) }
    /// ```
    pub async fn connect(config: ClientConfig, credentials: Credentials) -> Result<Client> {
        let client = Client::open(config)?;
        match credentials {
            Credentials::Login { email, password } => {
                client.login(&email, &password).await?;
            }
            Credentials::Register(registration) => {
                client.register(&registration).await?;
            }
            Credentials::Stored => {
                if !client.is_signed_in() {
                    return Err(ClientError::NotSignedIn);
                }
            }
        }
        client.start_sync().await?;
        Ok(client)
    }

    // ---- session --------------------------------------------------------------------------

    /// Creates an account and signs in with it.
    pub async fn register(&self, registration: &Registration) -> Result<User> {
        let session = self.inner.api.register(registration).await?;
        self.sign_in(session)
    }

    /// Signs in. Signing in as another user than the store's last one empties the local
    /// document (it belongs to the other user's partnership).
    pub async fn login(&self, email: &str, password: &str) -> Result<User> {
        let session = self.inner.api.login(email, password).await?;
        self.sign_in(session)
    }

    fn sign_in(&self, session: AuthSession) -> Result<User> {
        let mut local = self.inner.lock_local();
        let previous = local.store.meta().user_id;
        if previous.is_some_and(|id| id != session.user.id) {
            local.store.clear_document()?;
            local.store.update_meta(|m| {
                m.partnership_id = None;
                m.last_synced_at_ms = None;
            })?;
            local.doc = Automerge::new().with_actor(local.store.actor()?);
            self.inner.version.send_modify(|v| *v += 1);
        }
        let tokens = StoredTokens {
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            access_expires_at_ms: expires_at_ms(session.expires_in),
        };
        let user = session.user;
        let server = self.inner.api.base_url().to_owned();
        local.store.update_meta(|m| {
            m.user_id = Some(user.id);
            m.email = Some(user.email.clone());
            m.tokens = Some(tokens);
            m.server_url = Some(server);
        })?;
        Ok(user)
    }

    /// Signs out: stops syncing, revokes the refresh token on the server (when reachable) and
    /// forgets the tokens. The local document stays until another user signs in.
    pub async fn logout(&self) -> Result<()> {
        self.stop_sync().await;
        let tokens = self.inner.lock_local().store.meta().tokens.clone();
        let Some(tokens) = tokens else {
            return Ok(());
        };
        let revoked = self.inner.api.logout(&tokens.refresh_token).await;
        self.inner
            .lock_local()
            .store
            .update_meta(|m| m.tokens = None)?;
        match revoked {
            Ok(()) | Err(ClientError::SignedOut(_)) | Err(ClientError::Api { status: 401, .. }) => {
                Ok(())
            }
            Err(other) => Err(other),
        }
    }

    /// Whether the store holds a session (it may still be refused by the server).
    pub fn is_signed_in(&self) -> bool {
        self.inner.lock_local().store.meta().tokens.is_some()
    }

    /// The signed-in (or last signed-in) user.
    pub fn user_id(&self) -> Option<Uuid> {
        self.inner.lock_local().store.meta().user_id
    }

    /// A valid access token, refreshed when needed, for apps that call other REST endpoints
    /// themselves.
    pub async fn access_token(&self) -> Result<String> {
        self.inner.access_token(false).await
    }

    /// Refreshes the session now (rotating the refresh token), e.g. when an app comes back to
    /// the foreground after a long time. A refused refresh signs the user out
    /// ([`ClientError::SignedOut`], and [`ClientEvent::SignedOut`] on the feed); local data
    /// stays.
    pub async fn refresh_session(&self) -> Result<()> {
        self.inner.access_token(true).await.map(|_| ())
    }

    /// The REST client, for calls the SDK does not wrap.
    pub fn api(&self) -> &Api {
        &self.inner.api
    }

    // ---- partnership ----------------------------------------------------------------------

    /// Invites a partner by email.
    pub async fn invite(&self, email: &str) -> Result<Partnership> {
        let api = &self.inner.api;
        self.inner
            .authed(|t| async move { api.invite(&t, email).await })
            .await
    }

    /// The ids of the invitations this user received.
    pub async fn received_invitations(&self) -> Result<Vec<Uuid>> {
        let api = &self.inner.api;
        self.inner
            .authed(|t| async move { api.received_invitations(&t).await })
            .await
    }

    /// Accepts an invitation: the partnership becomes active and its document exists.
    pub async fn accept_invitation(&self, id: Uuid) -> Result<Partnership> {
        let api = &self.inner.api;
        self.inner
            .authed(|t| async move { api.accept(&t, id).await })
            .await
    }

    /// The user's partnership as the server has it now; `None` without one.
    pub async fn partnership(&self) -> Result<Option<Partnership>> {
        let api = &self.inner.api;
        self.inner
            .authed(|t| async move { api.current_partnership(&t).await })
            .await
    }

    /// Sets the user's monthly income (the split follows it once the server writes it into the
    /// document, which then syncs down).
    pub async fn update_income(&self, income: rust_decimal::Decimal) -> Result<User> {
        let api = &self.inner.api;
        self.inner
            .authed(|t| async move { api.update_income(&t, income).await })
            .await
    }

    // ---- sync -----------------------------------------------------------------------------

    /// Starts syncing in the background (idempotent). The task connects when it can, resumes
    /// from the stored sync state, sends every local edit as it happens, reconnects with
    /// backoff and jitter, and ends only on [`Client::stop_sync`], [`Client::shutdown`] or when
    /// the server ends the session ([`ClientEvent::SignedOut`]).
    pub async fn start_sync(&self) -> Result<()> {
        if !self.is_signed_in() {
            return Err(ClientError::NotSignedIn);
        }
        let mut slot = self.sync.lock().await;
        if slot.as_ref().is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        *slot = Some(SyncTask::spawn(self.inner.clone()));
        Ok(())
    }

    /// Stops syncing and waits for the connection to close. Local edits go on working and are
    /// sent after the next [`Client::start_sync`].
    pub async fn stop_sync(&self) {
        let task = self.sync.lock().await.take();
        if let Some(task) = task {
            task.stop().await;
        }
    }

    /// Stops syncing and releases the local store (another client may open it afterwards).
    pub async fn shutdown(self) {
        self.stop_sync().await;
    }

    /// The sync status now.
    pub fn sync_state(&self) -> SyncState {
        self.inner.status.borrow().clone()
    }

    /// A receiver that sees every status change, for UIs that bind to it.
    pub fn watch_sync_state(&self) -> watch::Receiver<SyncState> {
        self.inner.status.subscribe()
    }

    /// Waits until the client is [`SyncStatus::Synced`] (every local edit so far is on the
    /// server and every change the server announced is here), or `timeout`.
    pub async fn wait_until_synced(&self, timeout: Duration) -> Result<()> {
        let mut rx = self.inner.status.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|s| s.status == SyncStatus::Synced))
            .await
            .map_err(|_| ClientError::Timeout)?
            .map_err(|_| ClientError::Closed)?;
        Ok(())
    }

    /// Waits until `until` holds for the local document (checked now and after every change,
    /// local or remote), or `timeout`.
    ///
    /// ```no_run
    /// # async fn demo(client: &splitsave_client::Client) -> splitsave_client::Result<()> {
    /// // Wait for the partner's first expense to arrive.
    /// let doc = client
    ///     .wait_until(std::time::Duration::from_secs(30), |d| !d.expenses.is_empty())
    ///     .await?;
    /// println!("{} expense(s)", doc.expenses.len());
    /// # Ok(()) }
    /// ```
    pub async fn wait_until(
        &self,
        timeout: Duration,
        until: impl Fn(&DocumentState) -> bool,
    ) -> Result<DocumentState> {
        let mut rx = self.inner.version.subscribe();
        let check = async {
            loop {
                if let Ok(state) = self.document() {
                    if until(&state) {
                        return Ok(state);
                    }
                }
                rx.changed().await.map_err(|_| ClientError::Closed)?;
            }
        };
        tokio::time::timeout(timeout, check)
            .await
            .map_err(|_| ClientError::Timeout)?
    }

    /// Subscribes to the change feed.
    ///
    /// ```no_run
    /// # async fn demo(client: &splitsave_client::Client) {
    /// use splitsave_client::events::EventKind;
    /// use splitsave_client::ClientEvent;
    ///
    /// let mut feed = client.events();
    /// while let Some(event) = feed.next().await {
    ///     match event {
    ///         ClientEvent::Changed(e) if e.kind == EventKind::ApprovalRequested => {
    ///             println!("your partner asks for approval: {}", e.key);
    ///         }
    ///         ClientEvent::Changed(e) => println!("{} {}", e.kind.name(), e.key),
    ///         ClientEvent::PartnerOnline { .. } => println!("partner online"),
    ///         ClientEvent::PartnerOffline { last_seen, .. } => println!("partner seen {last_seen}"),
    ///         ClientEvent::Status(s) => println!("sync: {:?}", s.status),
    ///         ClientEvent::SignedOut { reason } => println!("please sign in again ({reason})"),
    ///     }
    /// }
    /// # }
    /// ```
    pub fn events(&self) -> Events {
        Events::new(self.inner.events.subscribe())
    }

    // ---- operations -----------------------------------------------------------------------

    /// Runs one operation on the local document as the signed-in user and writes it to the
    /// store before returning. A refused operation writes nothing.
    fn write<T>(&self, f: impl FnOnce(&mut Transaction<'_>, &Ctx) -> OpResult<T>) -> Result<T> {
        let mut local = self.inner.lock_local();
        let user = local.store.meta().user_id.ok_or(ClientError::NotSignedIn)?;
        if local.doc.get_heads().is_empty() {
            return Err(ClientError::NotSyncedYet);
        }
        let ctx = Ctx {
            user: UserId(user),
            now: Millis::now(),
        };
        let mut tx = local.doc.transaction();
        let value = match f(&mut tx, &ctx) {
            Ok(value) => value,
            Err(err) => {
                tx.rollback();
                return Err(err.into());
            }
        };
        // The change carries its time (Automerge's seconds): history shows when it was made,
        // which for an offline edit is not when the server received it.
        tx.commit_with(CommitOptions::default().with_time(ctx.now.0 / 1000));
        let Local { store, doc } = &mut *local;
        store.append_changes(doc)?;
        drop(local);
        self.inner.changed_locally();
        Ok(value)
    }

    /// Adds an expense: applied at once when at or under the approval threshold, otherwise it
    /// waits for the partner's approval ([`Outcome::ApprovalRequested`]).
    pub fn add_expense(&self, expense: NewExpense) -> Result<Outcome> {
        self.write(|tx, ctx| ops::add_expense(tx, ctx, &expense))
    }

    /// Proposes new values for an expense; the partner approves or declines the edit.
    pub fn edit_expense(
        &self,
        id: EntityId,
        fields: ExpenseFields,
        message: Option<&str>,
    ) -> Result<Outcome> {
        self.write(|tx, ctx| ops::edit_expense(tx, ctx, id, &fields, message))
    }

    /// Archives an expense (it leaves the split).
    pub fn archive_expense(&self, id: EntityId) -> Result<Outcome> {
        self.write(|tx, ctx| ops::archive_expense(tx, ctx, id))
    }

    /// Proposes a savings goal (goals always need the partner's approval).
    pub fn add_goal(&self, goal: NewGoal) -> Result<Outcome> {
        self.write(|tx, ctx| ops::add_goal(tx, ctx, &goal))
    }

    /// Proposes new values for a goal.
    pub fn edit_goal(
        &self,
        id: EntityId,
        fields: GoalFields,
        message: Option<&str>,
    ) -> Result<Outcome> {
        self.write(|tx, ctx| ops::edit_goal(tx, ctx, id, &fields, message))
    }

    /// Archives a goal.
    pub fn archive_goal(&self, id: EntityId) -> Result<Outcome> {
        self.write(|tx, ctx| ops::archive_goal(tx, ctx, id))
    }

    /// Adds to a goal's saved amount. Contributions from both partners made offline at the same
    /// time add up.
    pub fn contribute(&self, goal: EntityId, amount: MinorUnits) -> Result<Outcome> {
        self.write(|tx, ctx| ops::contribute_to_goal(tx, ctx, goal, amount))
    }

    /// Approves the partner's request; what it asked for applies.
    pub fn approve(&self, request: EntityId) -> Result<Outcome> {
        self.write(|tx, ctx| ops::approve(tx, ctx, request))
    }

    /// Declines the partner's request; nothing it asked for applies.
    pub fn decline(&self, request: EntityId) -> Result<Outcome> {
        self.write(|tx, ctx| ops::decline(tx, ctx, request))
    }

    /// Sends a message to the partner.
    pub fn send_message(&self, text: &str) -> Result<Outcome> {
        self.write(|tx, ctx| ops::send_message(tx, ctx, text))
    }

    /// Marks a message from the partner read.
    pub fn mark_read(&self, message: EntityId) -> Result<Outcome> {
        self.write(|tx, ctx| ops::mark_read(tx, ctx, message))
    }

    /// Marks the user's own share of this month paid (idempotent: the first time is kept).
    ///
    /// The server opens each month in the document (from the split) on first use; when this
    /// month is not in the local document yet, the client asks the server to open it and waits
    /// for it to sync down, so this needs the server once a month. Offline before that, it
    /// fails with [`ClientError::MonthNotOpen`].
    pub async fn mark_paid(&self) -> Result<DateTime<Utc>> {
        let month = Month::from_unix_millis(Utc::now().timestamp_millis());
        let key = month.to_string();
        if !self
            .document()?
            .contributions
            .iter()
            .any(|m| m.month == month)
        {
            let api = &self.inner.api;
            let opened = self
                .inner
                .authed(|t| async move { api.open_current_month(&t).await })
                .await;
            match opened {
                Ok(()) => {}
                Err(ClientError::Network(_)) => return Err(ClientError::MonthNotOpen(key)),
                Err(other) => return Err(other),
            }
            self.wait_until(Duration::from_secs(10), |d| {
                d.contributions.iter().any(|m| m.month == month)
            })
            .await
            .map_err(|_| ClientError::MonthNotOpen(key.clone()))?;
        }
        let at = self.write(|tx, ctx| ops::mark_paid(tx, ctx, month))?;
        at.and_then(|m| from_millis(m.0))
            .ok_or(ClientError::MonthNotOpen(key))
    }

    // ---- reads ----------------------------------------------------------------------------

    /// The whole document, typed.
    pub fn document(&self) -> Result<DocumentState> {
        let local = self.inner.lock_local();
        if local.doc.get_heads().is_empty() {
            return Err(ClientError::NotSyncedYet);
        }
        Ok(read_document(&local.doc)?)
    }

    /// Every expense (active, pending approval and archived), oldest first.
    pub fn expenses(&self) -> Result<Vec<Expense>> {
        let mut expenses = self.document()?.expenses;
        expenses.sort_by_key(|e| (e.created_at, e.id.to_string()));
        Ok(expenses)
    }

    /// Every goal, oldest first.
    pub fn goals(&self) -> Result<Vec<Goal>> {
        let mut goals = self.document()?.goals;
        goals.sort_by_key(|g| (g.created_at, g.id.to_string()));
        Ok(goals)
    }

    /// Approval requests still waiting for an answer, oldest first.
    pub fn pending_approvals(&self) -> Result<Vec<Approval>> {
        let mut pending: Vec<Approval> = self
            .document()?
            .approvals
            .into_iter()
            .filter(|a| a.status == ApprovalStatus::Pending)
            .collect();
        pending.sort_by_key(|a| (a.created_at, a.id.to_string()));
        Ok(pending)
    }

    /// Messages, newest first.
    pub fn messages(&self) -> Result<Vec<Message>> {
        let mut messages = self.document()?.messages;
        messages.sort_by_key(|m| (std::cmp::Reverse(m.created_at), m.id.to_string()));
        Ok(messages)
    }

    /// The couple's history as the local document tells it, offline: what each change did to
    /// each entity, newest first, the entries `filter` keeps, `limit` or a few more (a page
    /// holds whole changes). Continue with `after`: the last entry's `change`.
    ///
    /// Worded by sync-core exactly as the server's `GET /api/history` words it (field names,
    /// values as the REST API shows them, SplitSave's reasons). Authors: this device's own
    /// changes and REST writes are [`Author::User`](splitsave_sync_core::history::Author);
    /// another device's are `Author::Device` with its actor id (the partner's phone, or another
    /// of this user's devices: the document does not say whose; `GET /api/history` does).
    /// There is no receive time offline.
    pub fn history(
        &self,
        filter: &history::Filter,
        limit: usize,
        after: Option<automerge::ChangeHash>,
    ) -> Result<Vec<history::Entry>> {
        let local = self.inner.lock_local();
        if local.doc.get_heads().is_empty() {
            return Err(ClientError::NotSyncedYet);
        }
        let me = local.store.meta().user_id.map(UserId);
        let own = local.doc.get_actor().clone();
        let kept = history::walk(&local.doc, limit, after, |e| {
            if let (history::Author::Device(actor), Some(me)) = (&e.author, me) {
                if *actor == own {
                    e.author = history::Author::User(me);
                }
            }
            filter.keeps(e)
        });
        Ok(kept)
    }

    /// The split as the local document has it: computed exactly as the server computes it.
    pub fn split(&self) -> Result<DocSplit> {
        let local = self.inner.lock_local();
        if local.doc.get_heads().is_empty() {
            return Err(ClientError::NotSyncedYet);
        }
        Ok(split_doc::document_split(&local.doc)?)
    }

    /// This month's contribution: the document's when the server opened it, otherwise the
    /// amounts the server will write from the current split.
    pub fn current_month(&self) -> Result<MonthContribution> {
        let local = self.inner.lock_local();
        if local.doc.get_heads().is_empty() {
            return Err(ClientError::NotSyncedYet);
        }
        let month = Month::from_unix_millis(Utc::now().timestamp_millis());
        Ok(split_doc::current_month(&local.doc, month)?)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        // Without `shutdown`, the task is told to stop and ends on its own; the store is
        // released when it has.
        if let Ok(mut slot) = self.sync.try_lock() {
            if let Some(task) = slot.take() {
                task.signal_stop();
            }
        }
    }
}

pub(crate) fn from_millis(ms: i64) -> Option<DateTime<Utc>> {
    Utc.timestamp_millis_opt(ms).single()
}
