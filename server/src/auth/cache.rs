//! [`AuthCache`]: a short-lived, per-process memory of what every authenticated request looks
//! up — the user's current token version and their live partnership — so a burst of requests
//! from one user costs one database read per [`AUTH_CACHE_TTL`] instead of two per request.
//!
//! Correctness bound:
//! - a change made through this process (password change or reset, account deletion, an
//!   invitation accepted, a partnership paused or resumed) empties the cache before its answer
//!   is sent, so this process refuses an outdated token or a left partnership at once;
//! - a change made through another process sharing the database (another node) is seen here
//!   at most [`AUTH_CACHE_TTL`] later;
//! - a read that started before a change cannot put its older value back afterwards: the cache
//!   keeps a generation, bumped by every change, and only stores values read within one
//!   generation.
//!
//! A token whose version differs from the cached one is never refused from the cache: it is
//! checked against the database (it may be the newer one, issued on another node).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::store::PartnershipRecord;

/// How long a looked-up token version or partnership is trusted without reading it again: the
/// longest a change made on another node goes unseen here.
pub const AUTH_CACHE_TTL: Duration = Duration::from_secs(1);

/// Beyond this many users, expired entries are swept on insert (keeps memory bounded by the
/// users active within one TTL).
const SWEEP_ABOVE: usize = 4096;

/// A cached value and when it was read.
struct Entry<T> {
    value: T,
    read_at: Instant,
}

/// The per-process cache of token versions and live partnerships, by user.
pub struct AuthCache {
    ttl: Duration,
    generation: AtomicU64,
    versions: Mutex<HashMap<Uuid, Entry<i64>>>,
    partnerships: Mutex<HashMap<Uuid, Entry<Option<PartnershipRecord>>>>,
}

/// A generation number taken before a database read, handed back when storing what it read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Generation(u64);

impl Default for AuthCache {
    fn default() -> Self {
        Self::new(AUTH_CACHE_TTL)
    }
}

impl AuthCache {
    /// An empty cache trusting entries for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            generation: AtomicU64::new(0),
            versions: Mutex::new(HashMap::new()),
            partnerships: Mutex::new(HashMap::new()),
        }
    }

    /// The current generation: take it before reading the database, pass it to `put_*`.
    pub fn generation(&self) -> Generation {
        Generation(self.generation.load(Ordering::Acquire))
    }

    /// Whether `version` is the user's current token version as last read (within the TTL).
    /// `false` means "ask the database", never "refuse".
    pub fn version_is_current(&self, user: Uuid, version: i64) -> bool {
        let now = Instant::now();
        lock(&self.versions)
            .get(&user)
            .is_some_and(|e| e.value == version && now.duration_since(e.read_at) < self.ttl)
    }

    /// Remembers the user's token version read from the database during `generation`.
    pub fn put_version(&self, user: Uuid, version: i64, generation: Generation) {
        let mut map = lock(&self.versions);
        if self.generation() == generation {
            insert(&mut map, user, version, self.ttl);
        }
    }

    /// The user's live (active or paused) partnership as last read within the TTL: `None`
    /// when unknown, `Some(None)` when they had none.
    pub fn partnership(&self, user: Uuid) -> Option<Option<PartnershipRecord>> {
        let now = Instant::now();
        lock(&self.partnerships)
            .get(&user)
            .filter(|e| now.duration_since(e.read_at) < self.ttl)
            .map(|e| e.value.clone())
    }

    /// Remembers the user's live partnership (or that they have none) read during `generation`.
    pub fn put_partnership(
        &self,
        user: Uuid,
        partnership: Option<PartnershipRecord>,
        generation: Generation,
    ) {
        let mut map = lock(&self.partnerships);
        if self.generation() == generation {
            insert(&mut map, user, partnership, self.ttl);
        }
    }

    /// Forgets everything. Called after every change of a token version or a partnership (rare
    /// events), once the change is committed and before it is answered.
    pub fn forget_all(&self) {
        // Bumped while both maps are locked: a `put_*` holding a map's lock either stored
        // before the bump (and is cleared here) or sees the new generation (and stores nothing).
        let mut versions = lock(&self.versions);
        let mut partnerships = lock(&self.partnerships);
        self.generation.fetch_add(1, Ordering::AcqRel);
        versions.clear();
        partnerships.clear();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn insert<T>(map: &mut HashMap<Uuid, Entry<T>>, user: Uuid, value: T, ttl: Duration) {
    let now = Instant::now();
    if map.len() >= SWEEP_ABOVE {
        map.retain(|_, e| now.duration_since(e.read_at) < ttl);
    }
    map.insert(
        user,
        Entry {
            value,
            read_at: now,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_trusted_only_as_read_and_only_within_the_ttl() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let user = Uuid::now_v7();
        assert!(!cache.version_is_current(user, 0));
        cache.put_version(user, 3, cache.generation());
        assert!(cache.version_is_current(user, 3));
        assert!(!cache.version_is_current(user, 2));
        assert!(!cache.version_is_current(user, 4));

        let expired = AuthCache::new(Duration::ZERO);
        expired.put_version(user, 3, expired.generation());
        assert!(!expired.version_is_current(user, 3));
    }

    #[test]
    fn forgetting_drops_entries_and_refuses_reads_that_started_before() {
        let cache = AuthCache::new(Duration::from_secs(60));
        let user = Uuid::now_v7();
        cache.put_version(user, 1, cache.generation());
        cache.put_partnership(user, None, cache.generation());
        assert_eq!(cache.partnership(user), Some(None));

        let before = cache.generation();
        cache.forget_all();
        assert!(!cache.version_is_current(user, 1));
        assert_eq!(cache.partnership(user), None);
        // A read that began before the change must not store its outdated answer.
        cache.put_version(user, 1, before);
        cache.put_partnership(user, None, before);
        assert!(!cache.version_is_current(user, 1));
        assert_eq!(cache.partnership(user), None);
    }
}
