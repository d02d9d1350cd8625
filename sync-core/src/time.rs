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
