//! The background sync task: one connection to `/sync` at a time, reconnecting with backoff.
//!
//! Each connection: a valid access token (refreshed when needed), the partnership id (stored,
//! or asked of the server once), `join` with this device's stable `storageId` (so the server
//! keeps our sync state too), then automerge's sync protocol from the sync state saved in the
//! local store — a client that was offline for a day exchanges only what changed. Received
//! changes are written to the store before they are announced on the change feed; local edits
//! wake the task and go out at once.
//!
//! Failures (network, server restart, refused token) end the connection; the task waits
//! `min(max, min · 2^n)` with "equal jitter" (half fixed, half random) and tries again, and the
//! count resets once a connection reached [`SyncStatus::Synced`]. An access token is replaced
//! shortly before it expires by reconnecting with a fresh one. Only a refused refresh (the
//! server ended the session) stops the task for good.

use std::time::Duration;

use automerge::Change;
use chrono::Utc;
use rand::Rng;
use splitsave_sync_core::events;
use splitsave_sync_core::ids::{DocumentId, PartnershipId};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use uuid::Uuid;

use crate::client::Inner;
use crate::connection::{ConnectionError, DocSync, SyncConnection};
use crate::error::{ClientError, Result};
use crate::feed::{self, ClientEvent, SyncStatus};
use crate::session::REFRESH_MARGIN;
use std::sync::Arc;

/// How often, at most, the sync state and the last-synced time are written to the store while
/// changes stream. Both only shorten the next exchange; losing the last seconds of them to a
/// crash costs a slightly longer exchange, never data.
const SAVE_SYNC_STATE_EVERY: Duration = Duration::from_secs(2);

/// Paces outgoing sync messages below the server's per-connection limit. A message not sent
/// for want of a token is not generated either, so the changes made meanwhile go out together
/// in the next one (automerge's sync protocol batches whatever is new).
struct Pacer {
    per_second: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new(per_second: u32) -> Self {
        let per_second = f64::from(per_second.max(1));
        Pacer {
            per_second,
            burst: per_second * 2.0,
            tokens: per_second * 2.0,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let earned = now.saturating_duration_since(self.at).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + earned).min(self.burst);
        self.at = now;
    }

    /// Takes a token if there is one; otherwise says when there will be.
    fn take(&mut self, now: Instant) -> Result<(), Instant> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_second;
            Err(now + Duration::from_secs_f64(wait))
        }
    }
}

/// The running task and the switch that stops it.
pub(crate) struct SyncTask {
    stop: watch::Sender<bool>,
    handle: JoinHandle<()>,
}

impl SyncTask {
    pub(crate) fn spawn(inner: Arc<Inner>) -> SyncTask {
        let (stop, stop_rx) = watch::channel(false);
        let handle = tokio::spawn(run(inner, stop_rx));
        SyncTask { stop, handle }
    }

    pub(crate) fn is_finished(&self) -> bool {
        self.handle.is_finished()
    }

    /// Asks the task to stop without waiting.
    pub(crate) fn signal_stop(&self) {
        let _ = self.stop.send(true);
    }

    /// Stops the task and waits until it closed its connection and saved its state.
    pub(crate) async fn stop(self) {
        self.signal_stop();
        if let Err(err) = self.handle.await {
            tracing::warn!(%err, "the sync task ended abnormally");
        }
    }
}

/// Reconnect delays: exponential with equal jitter.
struct Backoff {
    min: Duration,
    max: Duration,
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let exp = self.min.saturating_mul(1u32 << self.failures.min(16));
        let cap = exp.min(self.max);
        self.failures = self.failures.saturating_add(1);
        let half = cap / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }
}

/// How one connection ended.
enum Ended {
    /// Asked to stop.
    Stopped,
    /// The access token is about to expire: reconnect at once with a fresh one.
    TokenExpiring,
    /// The connection failed after reaching `Synced` at least once (the backoff restarts).
    FailedAfterSync(ClientError),
}

async fn run(inner: Arc<Inner>, mut stop: watch::Receiver<bool>) {
    let mut backoff = Backoff {
        min: inner.config.reconnect_min,
        max: inner.config.reconnect_max,
        failures: 0,
    };
    let mut force_refresh = false;
    loop {
        if *stop.borrow() {
            break;
        }
        inner.set_status(SyncStatus::Connecting, None);
        let error = match connection(&inner, &mut stop, force_refresh).await {
            Ok(Ended::Stopped) => break,
            Ok(Ended::TokenExpiring) => {
                force_refresh = false;
                continue;
            }
            Ok(Ended::FailedAfterSync(err)) => {
                backoff.failures = 0;
                err
            }
            Err(err) => err,
        };
        force_refresh = false;
        match &error {
            ClientError::SignedOut(_) | ClientError::NotSignedIn => {
                inner.set_status(SyncStatus::Offline, Some(error.to_string()));
                break;
            }
            ClientError::Connection(ConnectionError::Refused(reason))
                if reason.to_ascii_lowercase().contains("token") =>
            {
                // The server refused the token before its time (revoked, version changed):
                // the next attempt refreshes it, and a refused refresh ends the session. Other
                // refusals (a rate limit, access re-checked) just reconnect later.
                force_refresh = true;
            }
            ClientError::Connection(ConnectionError::DocUnavailable) => {
                // The partnership ended or changed: ask the server again next time.
                if let Err(err) = inner
                    .lock_local()
                    .store
                    .update_meta(|m| m.partnership_id = None)
                {
                    tracing::warn!(%err, "cannot forget the partnership");
                }
            }
            _ => {}
        }
        let delay = backoff.next();
        tracing::info!(error = %error, delay_ms = delay.as_millis() as u64, "sync: reconnecting later");
        inner.set_status(SyncStatus::Offline, Some(error.to_string()));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            _ = stop.changed() => break,
        }
    }
    inner.set_status(SyncStatus::Offline, None);
}

/// The partnership whose document to sync: the stored one, or the server's answer.
async fn partnership_id(inner: &Inner) -> Result<Uuid> {
    if let Some(id) = inner.lock_local().store.meta().partnership_id {
        return Ok(id);
    }
    let api = &inner.api;
    let current = inner
        .authed(|t| async move { api.current_partnership(&t).await })
        .await?;
    let Some(p) = current.filter(|p| p.document_url.is_some()) else {
        return Err(ClientError::NoPartnership);
    };
    inner
        .lock_local()
        .store
        .update_meta(|m| m.partnership_id = Some(p.id))?;
    Ok(p.id)
}

/// One connection, from token to close.
async fn connection(
    inner: &Inner,
    stop: &mut watch::Receiver<bool>,
    force_refresh: bool,
) -> Result<Ended> {
    let token = inner.access_token(force_refresh).await?;
    let pid = partnership_id(inner).await?;
    let document_id = DocumentId::for_partnership(PartnershipId(pid)).to_string();
    let (peer_id, storage_id, expires_at_ms, saved_state) = {
        let local = inner.lock_local();
        let meta = local.store.meta();
        (
            meta.peer_id.clone(),
            meta.storage_id.clone(),
            meta.tokens.as_ref().map(|t| t.access_expires_at_ms),
            local.store.load_sync_state()?,
        )
    };
    let url = format!("{}?token={}", inner.api.sync_url(), token);
    let mut conn = tokio::select! {
        conn = SyncConnection::connect(&url, &peer_id, Some(storage_id), inner.config.connect_timeout) => conn?,
        _ = stop.changed() => return Ok(Ended::Stopped),
    };
    inner.set_status(SyncStatus::Syncing, None);
    let mut exchange = DocSync::new(document_id.clone());
    if let Some(state) = saved_state {
        exchange.state = state;
    }
    // Reconnect a little before the token lapses (the server closes the connection then).
    let renew_at = expires_at_ms
        .map(|ms| ms - REFRESH_MARGIN.as_millis() as i64 / 2 - Utc::now().timestamp_millis())
        .map(|left| Instant::now() + Duration::from_millis(left.max(1_000) as u64))
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));

    let mut reached_sync = false;
    let mut last_saved: Option<Instant> = None;
    let mut dirty_state = false;
    let mut pacer = Pacer::new(inner.config.max_messages_per_second);
    let outcome = loop {
        // Send what we have (when the pacer allows), then see whether both sides hold the same
        // document. When the pacer holds the message back, `held_until` is the time to retry.
        let held_until = pacer.take(Instant::now()).err();
        let may_send = held_until.is_none();
        let next = {
            let local = inner.lock_local();
            let message = if may_send {
                exchange.next_message(&conn, &local.doc)
            } else {
                None
            };
            if may_send && message.is_none() {
                // The token was not needed.
                pacer.tokens += 1.0;
            }
            let sent_changes = message.as_ref().is_some_and(|(_, changes)| *changes);
            let settled = may_send && !sent_changes && exchange.heads_settled(&local.doc);
            (message, settled)
        };
        let (message, settled) = next;
        if let Some((wire, carries)) = message {
            tracing::trace!(peer = conn.peer_id(), changes = carries, "sync: sending");
            if let Err(err) = conn.send(&wire).await {
                break fail(reached_sync, err.into());
            }
        }
        if settled {
            reached_sync = true;
            inner.mark_synced(Utc::now());
            dirty_state = true;
        }
        if dirty_state && last_saved.is_none_or(|at| at.elapsed() >= SAVE_SYNC_STATE_EVERY) {
            save_sync_state(inner, &exchange);
            last_saved = Some(Instant::now());
            dirty_state = false;
        }

        tokio::select! {
            () = inner.local_change.notified() => {}
            received = conn.recv_for_document(&document_id) => {
                let message = match received {
                    Ok(Some(message)) => message,
                    Ok(None) => break fail(reached_sync, ConnectionError::Closed.into()),
                    Err(err) => break fail(reached_sync, err.into()),
                };
                if let Err(err) = apply(inner, &mut exchange, message) {
                    break fail(reached_sync, err);
                }
                dirty_state = true;
            }
            () = sleep_until_some(held_until) => {}
            () = tokio::time::sleep_until(renew_at) => break Ok(Ended::TokenExpiring),
            _ = stop.changed() => break Ok(Ended::Stopped),
        }
    };
    if dirty_state || reached_sync {
        save_sync_state(inner, &exchange);
    }
    conn.close().await;
    outcome
}

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn fail(reached_sync: bool, err: ClientError) -> Result<Ended> {
    if reached_sync {
        Ok(Ended::FailedAfterSync(err))
    } else {
        Err(err)
    }
}

/// Applies one received message: new changes are written to the store, then announced.
fn apply(
    inner: &Inner,
    exchange: &mut DocSync,
    message: splitsave_sync_core::protocol::WireMessage,
) -> Result<()> {
    tracing::trace!(kind = message.message_type(), "sync: received");
    let mut local = inner.lock_local();
    let before = local.doc.get_heads();
    exchange.receive(&mut local.doc, message)?;
    let presence: Vec<ClientEvent> = exchange
        .ephemeral
        .drain(..)
        .filter_map(|(_, data)| feed::presence(&data))
        .collect();
    let mut changed = Vec::new();
    let doc_changed = local.doc.get_heads() != before;
    if doc_changed {
        let crate::client::Local { store, doc } = &mut *local;
        store.append_changes(doc)?;
        let changes: Vec<Change> = doc.get_changes(&before);
        changed = events::events(doc, &changes);
    }
    drop(local);
    if doc_changed {
        inner.version.send_modify(|v| *v += 1);
    }
    for event in changed {
        let _ = inner.events.send(ClientEvent::Changed(event));
    }
    for event in presence {
        let _ = inner.events.send(event);
    }
    Ok(())
}

/// Writes the sync state and the last-synced time; a failure only costs a longer exchange
/// next time, so it is logged, not fatal.
fn save_sync_state(inner: &Inner, exchange: &DocSync) {
    let synced_at = inner
        .status
        .borrow()
        .last_synced_at
        .map(|t| t.timestamp_millis());
    let mut local = inner.lock_local();
    let saved = local.store.save_sync_state(&exchange.state).and_then(|()| {
        local
            .store
            .update_meta(|m| m.last_synced_at_ms = synced_at.or(m.last_synced_at_ms))
    });
    if let Err(err) = saved {
        tracing::warn!(%err, "cannot save the sync state");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pacer_allows_a_burst_then_the_steady_rate() {
        let start = Instant::now();
        let mut p = Pacer::new(10);
        for _ in 0..20 {
            assert!(p.take(start).is_ok(), "the burst is twice the rate");
        }
        let next = p.take(start).expect_err("the burst is spent");
        assert_eq!(next - start, Duration::from_millis(100));
        assert!(p.take(start + Duration::from_millis(100)).is_ok());
        assert!(p.take(start + Duration::from_millis(150)).is_err());
        // A long pause refills up to the burst, not beyond.
        let later = start + Duration::from_secs(60);
        for _ in 0..20 {
            assert!(p.take(later).is_ok());
        }
        assert!(p.take(later).is_err());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_within_half() {
        let mut b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(2),
            failures: 0,
        };
        let caps = [100u64, 200, 400, 800, 1600, 2000, 2000, 2000];
        for cap in caps {
            let d = b.next().as_millis() as u64;
            assert!(
                d >= cap / 2 && d <= cap,
                "delay {d} ms outside [{}, {cap}]",
                cap / 2
            );
        }
        b.failures = 0;
        assert!(b.next() <= Duration::from_millis(100));
    }
}
