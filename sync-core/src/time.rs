//! Time in the document: Unix milliseconds (JS clients may write Automerge Timestamps, which
//! read the same).

use serde::{Deserialize, Serialize};

/// A point in time as Unix milliseconds, the document's representation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    /// The current time. The only clock read in sync-core; operations take it as a parameter
    /// so tests and compensations stay deterministic.
    pub fn now() -> Self {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }
}

/// How far ahead of the server's clock a client-written time may be. Phones keep their clocks
/// within seconds of true time (network time); five minutes tolerates a badly set one while a
/// time written ahead on purpose can no longer keep an item at the top of a newest-first list:
/// enforcement replaces any later time with the server's receive time.
pub const MAX_CLOCK_SKEW: Millis = Millis(5 * 60 * 1000);

impl Millis {
    /// This time, or `now` when this time is more than [`MAX_CLOCK_SKEW`] after `now`.
    pub fn at_most(self, now: Millis) -> Millis {
        if self.0 > now.0.saturating_add(MAX_CLOCK_SKEW.0) {
            now
        } else {
            self
        }
    }
}

/// A document time as RFC 3339 with milliseconds in UTC (`2026-12-03T18:04:05.123Z`), the
/// REST API's time format.
pub fn rfc3339(at: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at.0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
