//! Push notifications from the durable outbox (docs/push.md).
//!
//! A merge or a REST write that should tell a partner who is not connected writes the
//! notification into `notification_outbox` in its own transaction ([`outbox_rows`]), so a crash
//! after the commit loses none. The [`PushSender`] of every node claims due rows (PostgreSQL's
//! `FOR UPDATE SKIP LOCKED`: two nodes never hold one row), sends each to the recipient's
//! devices that have not had it yet ([`crate::push::Pusher`]), and then:
//! - deletes the row once every device has it, or was refused for good;
//! - deletes a device its push service says is gone;
//! - on a passing failure, remembers the devices it did reach (the retry never sends twice to
//!   them) and tries again later: exponential backoff with equal jitter, never before the
//!   service's `Retry-After`, and gives up at the row's `give_up_at`.
//!
//! A node that dies after a push service accepted a message and before the row was finished
//! or rescheduled sends it again once the claim lapses: delivery is at least once per device
//! (the collapse key makes the device show one).
//!
//! Preferences are read when sending: a kind turned off is dropped, and without
//! `show_details` the private wording goes out (who, not what; ids only).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::notifications::{Notification, Wording};
use tokio::sync::Notify;
use uuid::Uuid;

use crate::metrics::{Metrics, PushOutcome};
use crate::push::{Platform, PushMessage, PushTarget, Pusher, SendOutcome};
use crate::store::{
    ClaimedNotification, DevicePlatform, DeviceRecord, DeviceTarget, NewNotification, Store,
};

/// How the sender paces itself.
#[derive(Clone, Debug)]
pub struct SenderConfig {
    /// Rows claimed at once.
    pub batch: usize,
    /// How long a claim holds; a node that dies holding rows frees them after it.
    pub lease: Duration,
    /// How often the outbox is looked at when nothing wakes the sender (rows written by other
    /// nodes, retries coming due).
    pub poll_every: Duration,
    /// How long a sender woken by a commit waits before claiming, so that the notifications of
    /// the commits right behind it go out in the same claim.
    pub gather: Duration,
    /// The first retry's longest wait; doubled per attempt up to `max_backoff`.
    pub base_backoff: Duration,
    /// The longest wait between two attempts.
    pub max_backoff: Duration,
    /// How long after the event a notification is still worth sending.
    pub give_up_after: Duration,
}

impl Default for SenderConfig {
    fn default() -> Self {
        Self {
            batch: 64,
            lease: Duration::from_secs(60),
            poll_every: Duration::from_secs(1),
            gather: Duration::from_millis(20),
            base_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// What an outbox row holds: both wordings, so the recipient's privacy setting at send time
/// decides which one goes out.
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    detailed: Text,
    private: Text,
    data: std::collections::BTreeMap<String, String>,
    collapse_key: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct Text {
    title: String,
    body: String,
}

impl From<&Wording> for Text {
    fn from(w: &Wording) -> Self {
        Text {
            title: w.title.clone(),
            body: w.body.clone(),
        }
    }
}

/// The outbox rows of a merge's (or a REST write's) notifications.
pub fn outbox_rows(
    partnership: Option<Uuid>,
    notifications: &[Notification],
    give_up_after: Duration,
) -> Vec<NewNotification> {
    notifications
        .iter()
        .filter_map(|n| {
            let mut data = n.data.clone();
            if let Some(pid) = partnership {
                data.insert("partnership_id".to_owned(), pid.to_string());
            }
            let payload = Payload {
                detailed: (&n.detailed).into(),
                private: (&n.private).into(),
                data,
                collapse_key: n.collapse_key.clone(),
            };
            Some(NewNotification {
                user_id: n.recipient.0,
                partnership_id: partnership,
                kind: n.kind,
                dedupe_key: n.dedupe_key.clone(),
                payload: serde_json::to_string(&payload).ok()?,
                give_up_after,
            })
        })
        .collect()
}

/// Sends what the outbox holds. One per node; they share the outbox safely.
pub struct PushSender {
    store: Arc<dyn Store>,
    pusher: Arc<Pusher>,
    wake: Arc<Notify>,
    config: SenderConfig,
    metrics: Metrics,
}

impl PushSender {
    /// A sender; `wake` is notified after a commit that wrote notifications.
    pub fn new(
        store: Arc<dyn Store>,
        pusher: Arc<Pusher>,
        wake: Arc<Notify>,
        config: SenderConfig,
    ) -> Self {
        Self {
            store,
            pusher,
            wake,
            config,
            metrics: Metrics::off(),
        }
    }

    /// This sender, counting what the push services answer in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Runs until `stop` turns true.
    pub async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            let sent = self.round().await;
            if sent == 0 {
                tokio::select! {
                    () = self.wake.notified() => {
                        // Woken by a commit: the commits right behind it queue theirs too, and
                        // one claim then takes them all (one claim per notification otherwise,
                        // at a few notifications per second and more).
                        tokio::time::sleep(self.config.gather).await;
                    }
                    () = tokio::time::sleep(self.config.poll_every) => {}
                    _ = stop.changed() => {}
                }
            }
        }
    }

    /// Claims a batch and handles every row of it; how many rows it had.
    pub async fn round(&self) -> usize {
        let claimed = match self
            .store
            .claim_notifications(
                Utc::now(),
                u32::try_from(self.config.batch).unwrap_or(u32::MAX),
                self.config.lease,
            )
            .await
        {
            Ok(claimed) => claimed,
            Err(err) => {
                tracing::warn!(error = %err, "cannot claim push notifications");
                return 0;
            }
        };
        let n = claimed.len();
        futures::future::join_all(claimed.into_iter().map(|c| self.handle(c))).await;
        n
    }

    async fn handle(&self, row: ClaimedNotification) {
        let id = row.id;
        if let Err(err) = self.deliver(row).await {
            // The claim lapses and the row is tried again.
            tracing::warn!(error = %err, notification = %id, "push notification not handled");
        }
    }

    async fn deliver(&self, row: ClaimedNotification) -> Result<(), crate::store::StoreError> {
        let (prefs, devices) = tokio::try_join!(
            self.store.notification_preferences(row.user_id),
            self.store.devices(row.user_id),
        )?;
        let Ok(payload) = serde_json::from_str::<Payload>(&row.payload) else {
            tracing::error!(notification = %row.id, "unreadable outbox payload: dropped");
            return self.store.finish_notification(row.id).await;
        };
        if prefs.disabled.contains(&row.kind) {
            return self.store.finish_notification(row.id).await;
        }
        let text = if prefs.show_details {
            &payload.detailed
        } else {
            &payload.private
        };
        let message = PushMessage {
            title: text.title.clone(),
            body: text.body.clone(),
            data: payload.data.clone(),
            collapse_key: payload.collapse_key.clone(),
        };
        let devices: Vec<DeviceRecord> = devices
            .into_iter()
            .filter(|d| !row.delivered.contains(&d.id))
            .collect();
        let mut retry: Option<Option<Duration>> = None;
        let mut reached = Vec::new();
        for device in devices {
            match self.pusher.send(&target(&device), &message).await {
                SendOutcome::Delivered => {
                    self.metrics.push_sent(PushOutcome::Delivered);
                    reached.push(device.id);
                }
                SendOutcome::Gone => {
                    self.metrics.push_sent(PushOutcome::Gone);
                    tracing::info!(device = %device.id, "push device gone: removed");
                    self.store.delete_device_by_id(device.id).await?;
                }
                SendOutcome::Retry { after } => {
                    self.metrics.push_sent(PushOutcome::Retry);
                    retry = Some(match retry {
                        Some(Some(a)) => Some(after.map_or(a, |b| a.max(b))),
                        _ => after,
                    });
                }
                SendOutcome::Rejected(why) => {
                    self.metrics.push_sent(PushOutcome::Rejected);
                    tracing::warn!(device = %device.id, reason = %why, "push refused for good");
                }
            }
        }
        let Some(after) = retry else {
            return self.store.finish_notification(row.id).await;
        };
        let now = Utc::now();
        // A service's Retry-After is honoured up to the longest backoff (a broken or hostile
        // answer must not park a notification for days).
        let asked = after.unwrap_or_default().min(self.config.max_backoff);
        let wait = backoff(&self.config, row.attempts).max(asked);
        let next = now + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::MAX);
        if next > row.give_up_at {
            tracing::warn!(notification = %row.id, attempts = row.attempts + 1, "push notification given up");
            return self.store.finish_notification(row.id).await;
        }
        // Only a row that is tried again needs to remember the devices it reached (a row that
        // finishes is deleted with its deliveries): one write per device saved in the common
        // case of every device reached at the first attempt.
        for device in reached {
            self.store.record_delivery(row.id, device).await?;
        }
        self.store.retry_notification(row.id, next).await
    }
}

/// The wait before attempt `attempts + 1`: between half of and all of base x 2^attempts
/// (capped), at random ("equal jitter"), so devices that failed together do not retry together
/// and no retry comes immediately.
fn backoff(config: &SenderConfig, attempts: u32) -> Duration {
    let exp = attempts.min(20);
    let most = config
        .base_backoff
        .saturating_mul(1 << exp)
        .min(config.max_backoff);
    let millis = u64::try_from(most.as_millis()).unwrap_or(u64::MAX).max(1);
    Duration::from_millis(millis / 2 + rand::random::<u64>() % (millis / 2 + 1))
}

fn target(device: &DeviceRecord) -> PushTarget {
    match &device.target {
        DeviceTarget::Fcm { token } => PushTarget::Fcm {
            token: token.clone(),
            platform: match device.platform {
                DevicePlatform::Android => Platform::Android,
                DevicePlatform::Ios => Platform::Ios,
                DevicePlatform::Web => Platform::Web,
            },
        },
        DeviceTarget::WebPush {
            endpoint,
            p256dh,
            auth,
        } => PushTarget::WebPush {
            endpoint: endpoint.clone(),
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_within_its_cap_and_is_jittered() {
        let c = SenderConfig::default();
        for attempts in 0..12 {
            let most = c
                .base_backoff
                .saturating_mul(1 << attempts)
                .min(c.max_backoff);
            let waits: Vec<Duration> = (0..50).map(|_| backoff(&c, attempts)).collect();
            assert!(
                waits.iter().all(|w| *w >= most / 2 && *w <= most),
                "{attempts}"
            );
            assert!(waits.iter().any(|w| *w != waits[0]), "jittered");
        }
    }
}
