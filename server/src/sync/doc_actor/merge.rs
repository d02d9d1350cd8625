//! A client's sync message inside the document actor: bounded and authored as it must be, applied
//! in place (in several merges for a long backlog), settled by sync-core (rescue, enforcement,
//! compensation), committed with its rows, and only then answered.

use super::*;
use crate::metrics::MergeSource;
use crate::sync::cluster::{CommittedChanges, NOTICE_CHANGES_MAX};

impl DocActor {
    pub(super) async fn receive(&mut self, conn: ConnId, bytes: &[u8]) -> Result<(), SyncError> {
        if self.revoked.contains(&conn) {
            return Err(SyncError::AccessEnded);
        }
        self.follow_status();
        let peer = self.peers.get(&conn).ok_or(SyncError::NotAttached)?;
        let (user, read_only) = (peer.user, peer.read_only);
        let mut message = sync::Message::decode(bytes).map_err(|_| SyncError::Malformed)?;
        if read_only {
            // Paused: the peer still receives the document; its changes wait on its side (its
            // read-only sync state tells it so) and nothing of them is applied or stored.
            message.changes = sync::ChunkList::empty();
        }
        let new: Vec<Change> = parse_changes(&message, &self.limits)?
            .into_iter()
            .filter(|c| self.doc.get_change_meta_by_hash(&c.hash()).is_none())
            .collect();
        check_values(&self.doc, &new, &self.limits)?;
        // Changes automerge queued earlier (their dependencies were missing) are applied by
        // whichever later message completes them, so while any are queued, what applying adds is
        // not just `new`: take the slow path, which checks and stores everything that was added.
        if !deps_satisfied(&self.doc, &new) || !self.doc.get_missing_deps(&[]).is_empty() {
            return self.receive_on_clone(conn, user, message).await;
        }
        let mut bindings = self.check_authorship(user, &new).await?;
        // A backlog larger than one merge (a device back from a long time offline) is taken in
        // several merges, in causal order, each enforced and committed on its own; the last one
        // goes through the sync exchange below like any message.
        let mut merges = in_merges(new, &self.limits);
        let new = merges.pop().unwrap_or_default();
        for earlier in merges {
            self.merge_changes(user, earlier, std::mem::take(&mut bindings))
                .await?;
        }
        if message.changes.len() != new.len() {
            message.changes = sync::ChunkList::from(
                new.iter()
                    .map(|c| c.raw_bytes().to_vec())
                    .collect::<Vec<_>>(),
            );
        }
        let before = if new.is_empty() {
            None
        } else {
            let touched = touched_before_apply(&self.doc, &new);
            Some(Before::capture(&self.doc, touched))
        };
        let peer = self.peers.get_mut(&conn).ok_or(SyncError::NotAttached)?;
        peer.answered_at = None;
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.doc.receive_sync_message(&mut peer.state, message)
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "sync message refused by automerge");
                self.recover(conn).await?;
                return Err(SyncError::Malformed);
            }
            Err(_) => {
                tracing::error!(partnership = %self.pid, "automerge panicked applying a sync message");
                self.recover(conn).await?;
                return Ok(());
            }
        }
        if let Some(before) = before {
            self.commit(user, &before, new, bindings).await?;
        }
        self.fan_out();
        Ok(())
    }

    /// Applies, enforces and commits one merge's worth of a backlog outside the sync exchange
    /// (its last part goes through the exchange, which then answers for all of it).
    pub(super) async fn merge_changes(
        &mut self,
        user: UserId,
        changes: Vec<Change>,
        bindings: Vec<(String, Uuid)>,
    ) -> Result<(), SyncError> {
        let touched = touched_before_apply(&self.doc, &changes);
        let before = Before::capture(&self.doc, touched);
        let applied = catch_unwind(AssertUnwindSafe(|| {
            self.doc.apply_changes(changes.iter().cloned())
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "a backlog's changes were refused by automerge");
                self.reload().await?;
                return Err(SyncError::Malformed);
            }
            Err(_) => {
                tracing::error!(partnership = %self.pid, "automerge panicked applying a backlog");
                self.reload().await?;
                return Err(SyncError::Malformed);
            }
        }
        self.commit(user, &before, changes, bindings).await?;
        self.fan_out();
        Ok(())
    }

    /// The slow path for changes whose dependencies are not all known (automerge queues them,
    /// so what applying adds is not exactly the message's changes): apply to a clone, inspect
    /// what it added, and adopt the clone only if it passes.
    pub(super) async fn receive_on_clone(
        &mut self,
        conn: ConnId,
        user: UserId,
        message: sync::Message,
    ) -> Result<(), SyncError> {
        let peer = self.peers.get(&conn).ok_or(SyncError::NotAttached)?;
        let mut state = peer.state.clone();
        let mut candidate = self.doc.clone();
        let applied = catch_unwind(AssertUnwindSafe(|| {
            candidate.receive_sync_message(&mut state, message)
        }));
        match applied {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(SyncError::Malformed),
            Err(_) => {
                if let Some(p) = self.peers.get_mut(&conn) {
                    p.state = sync::State::new();
                    p.answered_at = None;
                }
                return Ok(());
            }
        }
        let new = enforce::new_changes(&self.doc, &candidate);
        check_limits(&new, &self.limits)?;
        check_values(&self.doc, &new, &self.limits)?;
        let bindings = self.check_authorship(user, &new).await?;
        if !new.is_empty() {
            let touched = splitsave_sync_core::touched::touched_by(&self.doc, &candidate, &new);
            let before = Before::capture(&self.doc, touched);
            let previous = std::mem::replace(&mut self.doc, candidate);
            let reloads = self.reloads;
            if let Err(err) = self.commit(user, &before, new, bindings).await {
                // Unless the failed commit reloaded the truth from storage, go back to the
                // state before the message.
                if self.reloads == reloads {
                    self.doc = previous;
                }
                return Err(err);
            }
        } else {
            self.doc = candidate;
        }
        if let Some(p) = self.peers.get_mut(&conn) {
            p.state = state;
            p.answered_at = None;
        }
        self.fan_out();
        Ok(())
    }

    /// Refuses the message when a new change carries the server's actor prefix or an actor id
    /// bound to another user; returns the actor ids to bind to `user` in the commit.
    pub(super) async fn check_authorship(
        &mut self,
        user: UserId,
        new: &[Change],
    ) -> Result<Vec<(String, Uuid)>, SyncError> {
        let mut to_bind = Vec::new();
        let mut seen = HashSet::new();
        for c in new {
            let actor = c.actor_id().clone();
            if !seen.insert(actor.clone()) {
                continue;
            }
            if is_server_actor(&actor) {
                return Err(SyncError::ForeignActor);
            }
            let owner = match self.bindings.get(&actor) {
                Some(u) => Some(*u),
                None => self
                    .store
                    .actor_owner(self.pid.0, &actor.to_hex_string())
                    .await?
                    .map(UserId),
            };
            match owner {
                Some(u) if u == user => {
                    self.bindings.insert(actor, u);
                }
                Some(_) => return Err(SyncError::ForeignActor),
                None => to_bind.push((actor.to_hex_string(), user.0)),
            }
        }
        Ok(to_bind)
    }

    /// Enforces, compensates and commits a merge that has been applied to `self.doc`. On a
    /// storage failure the document is reloaded from storage (nothing unacknowledged survives in
    /// memory) and the error returned.
    pub(super) async fn commit(
        &mut self,
        user: UserId,
        before: &Before,
        new: Vec<Change>,
        bindings: Vec<(String, Uuid)>,
    ) -> Result<(), SyncError> {
        let now = Millis::now();
        let settled = match settle(&mut self.doc, before, &new, user, now) {
            Ok(s) => s,
            Err(err) => {
                tracing::error!(error = %err, "enforcement failed");
                self.reload().await?;
                return Err(SyncError::Internal);
            }
        };
        let enforcement = settled.enforcement;
        let mut changes: Vec<NewChange> =
            new.iter().map(|c| stored_change(c, Some(user.0))).collect();
        // The client's changes and the server's (rescue, compensation) together make the
        // merge's events.
        let mut merged = new;
        for hash in settled.server_changes {
            if let Some(c) = self.doc.get_change_by_hash(&hash) {
                changes.push(stored_change(&c, None));
                merged.push(c);
            }
        }
        let rows = materialize::rows_for(&self.doc, &enforcement.affected())
            .map(|m| m.changes)
            .unwrap_or_default();
        let notifications = self.notifications_for(&merged, user);
        let history = self.history_for(&merged, Some(user));
        self.persist(changes, bindings, rows, notifications, history, Some(user))
            .await?;
        self.merges += 1;
        let metrics = self.registry.metrics();
        metrics.merges(MergeSource::Sync, 1);
        metrics.compensations(&enforcement.fixes);
        self.publish(&merged, Some(user));
        Ok(())
    }

    pub(super) async fn persist(
        &mut self,
        changes: Vec<NewChange>,
        bindings: Vec<(String, Uuid)>,
        rows: Vec<materialize::RowChange>,
        notifications: Vec<crate::store::NewNotification>,
        history: Vec<crate::store::NewHistoryEntry>,
        user: Option<UserId>,
    ) -> Result<(), SyncError> {
        let hashes: Vec<String> = changes.iter().map(|c| c.hash.clone()).collect();
        let bound: Vec<ActorId> = bindings
            .iter()
            .filter_map(|(hex, _)| ActorId::try_from(hex.as_str()).ok())
            .collect();
        let version = self.stored.version + 1;
        // The changes travel with the commit notice when small: the other nodes holding the
        // document then apply them without reading them back.
        let announced = self.registry.clustered().then(|| {
            let size: usize = changes.iter().map(|c| c.bytes.len()).sum();
            (size <= NOTICE_CHANGES_MAX).then(|| {
                CommittedChanges(
                    changes
                        .iter()
                        .map(|c| (c.user_id, c.bytes.clone()))
                        .collect(),
                )
            })
        });
        let commit = MergeCommit {
            changes,
            bindings,
            rows,
            version: Some(version),
            notifications,
            history,
        };
        let notifying = !commit.notifications.is_empty();
        match self.registry.committer().commit(self.pid.0, commit).await {
            Ok(_) => {
                self.stored.version = version;
                if notifying {
                    if let Some(push) = self.registry.push() {
                        push.wake.notify_one();
                    }
                }
                self.registry
                    .announce_commit(self.pid, version, announced.flatten());
                // Before anyone hears of the change (events, sync acknowledgements, answers).
                self.drop_stale_split();
                if let Some(user) = user {
                    for a in bound {
                        self.bindings.insert(a, user);
                    }
                }
                self.uncompacted.extend(hashes);
                self.compact_if_due(self.limits.compact_after_changes).await;
                Ok(())
            }
            Err(crate::store::StoreError::Conflict(crate::store::Conflict::ActorBound)) => {
                self.reload().await?;
                Err(SyncError::ForeignActor)
            }
            // Another node committed first: the truth (with its merge) is loaded, and the
            // caller makes this merge again on it.
            Err(err @ crate::store::StoreError::Conflict(crate::store::Conflict::Stale)) => {
                tracing::debug!(partnership = %self.pid, version, "another node committed first");
                self.reload().await?;
                Err(SyncError::Store(err))
            }
            Err(err) => {
                tracing::error!(error = %err, partnership = %self.pid, "merge commit failed");
                self.reload().await?;
                Err(SyncError::Store(err))
            }
        }
    }
}
