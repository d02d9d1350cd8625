//! Prometheus metrics, in the Prometheus text format on a listener of their own (`METRICS_ADDR`,
//! off by default). `docs/observability.md` lists every metric and how to scrape it.
//!
//! # An owned registry, not a global recorder
//!
//! The figures live in a `prometheus_client` [`Registry`] that each application owns (it sits in
//! [`AppState`](crate::app::AppState) and is handed to the parts that count), not in a
//! process-wide recorder such as the `metrics` crate's global one: the server keeps no global
//! state, and the integration tests run many servers in one process at once, whose figures a
//! global recorder would add together. `prometheus-client` is the Prometheus project's own Rust
//! client; it encodes the text format (0.0.4) itself.
//!
//! # What counting costs
//!
//! [`Metrics`] is the handle every counting site holds. Without `METRICS_ADDR` it is empty and
//! each record is one branch on an `Option`; the HTTP layer is not even installed. With it,
//! every label set of a merge, a login, a rate limit or a push send is resolved once, when the
//! registry is built: recording increments an atomic picked by an enum, with no allocation and
//! no map lookup. An HTTP request looks its (route, method, status) up in a map behind a read
//! lock; its route label is the router's own `MatchedPath` (an `Arc` shared with the router,
//! never the raw path, so neither the `/sync` token nor an id can become a label).
//!
//! Figures that are cheaper to read than to keep up to date (live documents, the database pool,
//! Redis, the push outbox, the process) are read when scraped ([`scrape`]).

mod http;
mod listener;
mod process;

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use splitsave_sync_core::enforce::Fix;

pub use http::track_requests;
pub use listener::{scrape, serve, CONTENT_TYPE};

/// Upper bounds (seconds) of the latency histograms: from half a millisecond, a merge committed
/// to SQLite, to ten seconds, past any healthy request.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Upper bounds of the commit batch histogram; the committer writes at most 128 merges at once.
const BATCH_BUCKETS: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0];

/// Declares a closed set of label values: an enum whose variants index pre-resolved metrics.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $label:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant),+
        }

        impl $name {
            /// Every value, in the order of their metrics.
            pub const ALL: [$name; [$($label),+].len()] = [$($name::$variant),+];

            /// The label value.
            pub fn label(self) -> &'static str {
                match self {
                    $($name::$variant => $label),+
                }
            }
        }
    };
}

label_values! {
    /// Which kind of WebSocket is open.
    SocketKind {
        /// `GET /sync`.
        Sync => "sync",
        /// `GET /api/events`.
        Events => "events",
    }
}

label_values! {
    /// Where a merge came from.
    MergeSource {
        /// A client's sync message.
        Sync => "sync",
        /// A REST write, run on the document as an operation.
        Rest => "rest",
    }
}

label_values! {
    /// What a compensating change wrote ([`Fix`]).
    CompensationKind {
        /// An expense written back (an unapproved edit) or sent for approval.
        Expense => "expense",
        /// A goal written back or sent for approval.
        Goal => "goal",
        /// A goal's saved amount corrected to its logged contributions.
        GoalSaved => "goal_saved",
        /// A goal contribution restored or corrected.
        GoalContribution => "goal_contribution",
        /// An approval request filed or restored.
        Approval => "approval",
        /// A message restored.
        Message => "message",
        /// A month of contributions restored.
        Month => "month",
        /// A member restored.
        Member => "member",
        /// The partnership's settings restored.
        Partnership => "partnership",
        /// The schema version restored.
        Schema => "schema",
        /// An invalid entity removed.
        Removal => "removal",
        /// String fields rewritten in their declared types (Text or scalar).
        StringTypes => "string_types",
    }
}

impl CompensationKind {
    /// The kind of a compensating write.
    pub fn of(fix: &Fix) -> Self {
        match fix {
            Fix::PutExpense(_) => Self::Expense,
            Fix::PutGoal(_) => Self::Goal,
            Fix::FixSaved { .. } => Self::GoalSaved,
            Fix::PutGoalContribution(_) => Self::GoalContribution,
            Fix::PutApproval(_) => Self::Approval,
            Fix::PutMessage(_) => Self::Message,
            Fix::PutMonth(_) => Self::Month,
            Fix::PutMember(_) => Self::Member,
            Fix::PutPartnership(_) => Self::Partnership,
            Fix::PutSchema(_) => Self::Schema,
            Fix::Remove { .. } => Self::Removal,
            Fix::NormalizeStrings(_) => Self::StringTypes,
        }
    }
}

label_values! {
    /// How a password login ended.
    LoginOutcome {
        /// Signed in.
        Ok => "ok",
        /// Wrong email or password.
        Failed => "failed",
        /// Refused by the login rate limit before the password was checked.
        Limited => "limited",
    }
}

label_values! {
    /// Which rate limit refused a request.
    RateLimit {
        /// The per-IP budget of `/api` (`API_RATE_LIMIT`).
        Api => "api",
        /// Password attempts per account (`LOGIN_RATE_LIMIT`), at login or password change.
        Login => "login",
        /// Forgot-password requests per email.
        ForgotPassword => "forgot_password",
        /// Messages per second on one `/sync` connection (the connection is closed).
        SyncMessages => "sync_messages",
        /// Data exports per user an hour (`GET /api/export`).
        Export => "export",
        /// Data import attempts per user an hour (`POST /api/import`).
        Import => "import",
    }
}

label_values! {
    /// What a push service answered for one device.
    PushOutcome {
        /// Accepted for delivery.
        Delivered => "delivered",
        /// The device is gone (unregistered); it was removed.
        Gone => "gone",
        /// A passing failure; the notification is tried again later.
        Retry => "retry",
        /// Refused for good (a bad request, or the service is not configured).
        Rejected => "rejected",
    }
}

label_values! {
    /// The state of a pooled database connection.
    PoolState {
        /// Lent out to a query or transaction.
        InUse => "in_use",
        /// Open and waiting in the pool.
        Idle => "idle",
    }
}

label_values! {
    /// What the server uses Redis for.
    RedisClient {
        /// Commit notices, presence and revocations between nodes (PostgreSQL only).
        Cluster => "cluster",
        /// The shared rate-limit counters.
        RateLimits => "rate_limits",
    }
}

/// A family with one label whose values are known in advance, as one counter per value.
type OneLabel = [(&'static str, &'static str); 1];

/// The metrics of one application, or nothing when metrics are off. Cheap to clone.
#[derive(Clone, Default)]
pub struct Metrics(Option<Arc<Instruments>>);

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_on() {
            "Metrics(on)"
        } else {
            "Metrics(off)"
        })
    }
}

/// Every metric, registered in `registry`; the arrays are indexed by their label enum.
struct Instruments {
    registry: Registry,
    http_requests: Family<http::RequestLabels, Counter>,
    http_duration: Family<http::RouteLabels, Histogram, fn() -> Histogram>,
    websockets: [Gauge; SocketKind::ALL.len()],
    live_documents: Gauge,
    merges: [Counter; MergeSource::ALL.len()],
    merge_duration: Histogram,
    compensations: [Counter; CompensationKind::ALL.len()],
    commit_batch: Histogram,
    logins: [Counter; LoginOutcome::ALL.len()],
    refresh_reuse: Counter,
    rate_limited: [Counter; RateLimit::ALL.len()],
    db_pool: [Gauge; PoolState::ALL.len()],
    db_pool_max: Gauge,
    redis: Family<OneLabel, Gauge>,
    outbox_depth: Gauge,
    push_sends: [Counter; PushOutcome::ALL.len()],
}

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// Registers a family of one label and creates its metric for every value, so each series is
/// there (at zero) from the first scrape, and recording needs no lookup.
fn family_of<M, const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [M; N]
where
    M: prometheus_client::metrics::TypedMetric
        + prometheus_client::encoding::EncodeMetric
        + Clone
        + Default
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let family = Family::<OneLabel, M>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create_owned(&[(label, value)]))
}

impl Metrics {
    /// Metrics off: recording does nothing.
    pub fn off() -> Self {
        Self(None)
    }

    /// A fresh registry holding every metric.
    pub fn on() -> Self {
        let mut r = Registry::default();
        let http_requests = Family::<http::RequestLabels, Counter>::default();
        r.register(
            "splitsave_http_requests",
            "HTTP requests answered, by route template, method and status",
            http_requests.clone(),
        );
        let http_duration: Family<http::RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        r.register_with_unit(
            "splitsave_http_request_duration",
            "Time from a request's arrival to its response, by route template and method",
            Unit::Seconds,
            http_duration.clone(),
        );
        let websockets = family_of(
            &mut r,
            "splitsave_websocket_connections",
            "WebSocket connections open",
            "kind",
            SocketKind::ALL.map(SocketKind::label),
        );
        let live_documents = Gauge::default();
        r.register(
            "splitsave_live_documents",
            "Partnership documents loaded in this node (one actor each)",
            live_documents.clone(),
        );
        let merges = family_of(
            &mut r,
            "splitsave_merges",
            "Merges committed, by where they came from",
            "source",
            MergeSource::ALL.map(MergeSource::label),
        );
        let merge_duration = latency_histogram();
        r.register_with_unit(
            "splitsave_merge_duration",
            "Time from reading a sync message that merged changes to queueing its acknowledgement",
            Unit::Seconds,
            merge_duration.clone(),
        );
        let compensations = family_of(
            &mut r,
            "splitsave_compensations",
            "Compensating writes the server made after merges, by what they wrote",
            "kind",
            CompensationKind::ALL.map(CompensationKind::label),
        );
        let commit_batch = Histogram::new(BATCH_BUCKETS);
        r.register(
            "splitsave_commit_batch_merges",
            "Merges written per database transaction by the group committer",
            commit_batch.clone(),
        );
        let logins = family_of(
            &mut r,
            "splitsave_logins",
            "Password logins, by outcome",
            "outcome",
            LoginOutcome::ALL.map(LoginOutcome::label),
        );
        let refresh_reuse = Counter::default();
        r.register(
            "splitsave_refresh_token_reuse",
            "Refresh tokens presented again after use (their session family was revoked)",
            refresh_reuse.clone(),
        );
        let rate_limited = family_of(
            &mut r,
            "splitsave_rate_limited",
            "Requests refused by a rate limit, by limit",
            "limit",
            RateLimit::ALL.map(RateLimit::label),
        );
        let db_pool = family_of(
            &mut r,
            "splitsave_db_pool_connections",
            "Database pool connections, by state",
            "state",
            PoolState::ALL.map(PoolState::label),
        );
        let db_pool_max = Gauge::default();
        r.register(
            "splitsave_db_pool_max_connections",
            "Most connections the database pool opens",
            db_pool_max.clone(),
        );
        let redis = Family::<OneLabel, Gauge>::default();
        r.register(
            "splitsave_redis_connected",
            "Whether Redis answers (1) or not (0), by use; only with REDIS_URL",
            redis.clone(),
        );
        let outbox_depth = Gauge::default();
        r.register(
            "splitsave_push_outbox_depth",
            "Push notifications waiting in the outbox (all nodes)",
            outbox_depth.clone(),
        );
        let push_sends = family_of(
            &mut r,
            "splitsave_push_sends",
            "Push sends to one device, by what the push service answered",
            "outcome",
            PushOutcome::ALL.map(PushOutcome::label),
        );
        r.register_collector(Box::new(process::ProcessCollector));
        Self(Some(Arc::new(Instruments {
            registry: r,
            http_requests,
            http_duration,
            websockets,
            live_documents,
            merges,
            merge_duration,
            compensations,
            commit_batch,
            logins,
            refresh_reuse,
            rate_limited,
            db_pool,
            db_pool_max,
            redis,
            outbox_depth,
            push_sends,
        })))
    }

    /// Whether metrics are recorded.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// A WebSocket of `kind` opened; [`Metrics::socket_closed`] when it closes.
    pub fn socket_opened(&self, kind: SocketKind) {
        if let Some(m) = &self.0 {
            m.websockets[kind as usize].inc();
        }
    }

    /// A WebSocket of `kind` closed.
    pub fn socket_closed(&self, kind: SocketKind) {
        if let Some(m) = &self.0 {
            m.websockets[kind as usize].dec();
        }
    }

    /// `count` merges from `source` committed.
    pub fn merges(&self, source: MergeSource, count: usize) {
        if let Some(m) = &self.0 {
            m.merges[source as usize].inc_by(count as u64);
        }
    }

    /// A sync message that merged changes was acknowledged, `elapsed` after it was read.
    pub fn merge_acknowledged(&self, elapsed: Duration) {
        if let Some(m) = &self.0 {
            m.merge_duration.observe(elapsed.as_secs_f64());
        }
    }

    /// The compensating writes of a committed merge.
    pub fn compensations(&self, fixes: &[Fix]) {
        if let Some(m) = &self.0 {
            for fix in fixes {
                m.compensations[CompensationKind::of(fix) as usize].inc();
            }
        }
    }

    /// One transaction of the group committer wrote `merges` merges.
    pub fn commit_batch(&self, merges: usize) {
        if let Some(m) = &self.0 {
            m.commit_batch.observe(merges as f64);
        }
    }

    /// A password login ended with `outcome`.
    pub fn login(&self, outcome: LoginOutcome) {
        if let Some(m) = &self.0 {
            m.logins[outcome as usize].inc();
        }
    }

    /// A used refresh token was presented again.
    pub fn refresh_reuse(&self) {
        if let Some(m) = &self.0 {
            m.refresh_reuse.inc();
        }
    }

    /// `limit` refused a request.
    pub fn rate_limited(&self, limit: RateLimit) {
        if let Some(m) = &self.0 {
            m.rate_limited[limit as usize].inc();
        }
    }

    /// A push service answered `outcome` for one device.
    pub fn push_sent(&self, outcome: PushOutcome) {
        if let Some(m) = &self.0 {
            m.push_sends[outcome as usize].inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_records_nothing_and_scrapes_nothing() {
        let off = Metrics::off();
        off.login(LoginOutcome::Ok);
        off.merges(MergeSource::Sync, 3);
        assert!(!off.is_on());
        assert_eq!(format!("{off:?}"), "Metrics(off)");
    }

    #[test]
    fn every_labelled_series_is_there_from_the_start() {
        let metrics = Metrics::on();
        let text = listener::encode(&metrics).expect("on");
        for line in [
            "splitsave_logins_total{outcome=\"limited\"} 0",
            "splitsave_merges_total{source=\"rest\"} 0",
            "splitsave_compensations_total{kind=\"removal\"} 0",
            "splitsave_push_sends_total{outcome=\"gone\"} 0",
            "splitsave_rate_limited_total{limit=\"sync_messages\"} 0",
            "splitsave_websocket_connections{kind=\"events\"} 0",
            "splitsave_merge_duration_seconds_count 0",
            "splitsave_commit_batch_merges_bucket{le=\"128\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
        metrics.login(LoginOutcome::Limited);
        metrics.merges(MergeSource::Rest, 2);
        metrics.commit_batch(3);
        let text = listener::encode(&metrics).expect("on");
        assert!(text.contains("splitsave_logins_total{outcome=\"limited\"} 1"));
        assert!(text.contains("splitsave_merges_total{source=\"rest\"} 2"));
        assert!(text.contains("splitsave_commit_batch_merges_bucket{le=\"4\"} 1"));
        assert!(text.contains("splitsave_commit_batch_merges_bucket{le=\"2\"} 0"));
    }

    #[test]
    fn two_applications_count_apart() {
        let (a, b) = (Metrics::on(), Metrics::on());
        a.refresh_reuse();
        let (a, b) = (
            listener::encode(&a).expect("on"),
            listener::encode(&b).expect("on"),
        );
        assert!(a.contains("splitsave_refresh_token_reuse_total 1"), "{a}");
        assert!(b.contains("splitsave_refresh_token_reuse_total 0"), "{b}");
    }
}
