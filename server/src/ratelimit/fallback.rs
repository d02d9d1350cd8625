//! [`FallbackCounter`]: a shared counter backend with this process's own counters to fall back
//! on while the backend fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::{CounterError, MemoryCounter, WindowCount, WindowCounter};

/// Counts in `primary` (the shared Redis counters) and, for as long as it fails, in a
/// [`MemoryCounter`] of this process: every node then limits on its own, so across `N` nodes a
/// client gets at most `N` times the limit, neither every request refused nor all let through.
///
/// It never returns an error. The first failure of an outage logs one warning, and the first
/// success after it one notice; the calls in between fall back silently. Counts made in memory
/// during an outage are not carried over to `primary` when it answers again (the windows are at
/// most 15 minutes long); they stay in memory, until their windows end, for the next outage.
pub struct FallbackCounter<P> {
    primary: P,
    fallback: MemoryCounter,
    failing: AtomicBool,
}

impl<P: WindowCounter> FallbackCounter<P> {
    /// Counts in `primary`, and in memory while it fails.
    pub fn new(primary: P) -> Self {
        FallbackCounter {
            primary,
            fallback: MemoryCounter::new(),
            failing: AtomicBool::new(false),
        }
    }

    /// The shared backend.
    pub fn primary(&self) -> &P {
        &self.primary
    }

    /// Whether the last call to the shared backend failed (counts are kept in memory).
    pub fn is_falling_back(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    fn failed(&self, err: &CounterError) {
        if !self.failing.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                error = %err,
                "rate limit counters unreachable: each node now limits on its own until they answer again"
            );
        }
    }

    fn answered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("rate limit counters reachable again: limits are shared again");
        }
    }
}

#[async_trait]
impl<P: WindowCounter> WindowCounter for FallbackCounter<P> {
    async fn hit(&self, key: &str, window: Duration) -> Result<WindowCount, CounterError> {
        match self.primary.hit(key, window).await {
            Ok(count) => {
                self.answered();
                Ok(count)
            }
            Err(err) => {
                self.failed(&err);
                self.fallback.hit(key, window).await
            }
        }
    }

    async fn peek(&self, key: &str) -> Result<Option<WindowCount>, CounterError> {
        match self.primary.peek(key).await {
            Ok(count) => {
                self.answered();
                Ok(count)
            }
            Err(err) => {
                self.failed(&err);
                self.fallback.peek(key).await
            }
        }
    }

    /// Forgets `key` in both places, so a count kept in memory during an earlier outage does
    /// not come back in the next one.
    async fn clear(&self, key: &str) -> Result<(), CounterError> {
        self.fallback.clear(key).await?;
        match self.primary.clear(key).await {
            Ok(()) => self.answered(),
            Err(err) => self.failed(&err),
        }
        Ok(())
    }

    fn shared_up(&self) -> Option<bool> {
        Some(!self.is_falling_back())
    }

    async fn ping_shared(&self) -> Option<Result<(), CounterError>> {
        self.primary.ping_shared().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// A primary that fails while `down` is set, and otherwise counts in memory of its own.
    #[derive(Default)]
    struct Flaky {
        down: AtomicBool,
        counts: MemoryCounter,
    }

    #[async_trait]
    impl WindowCounter for Flaky {
        async fn hit(&self, key: &str, window: Duration) -> Result<WindowCount, CounterError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(CounterError("connection refused".into()));
            }
            self.counts.hit(key, window).await
        }

        async fn peek(&self, key: &str) -> Result<Option<WindowCount>, CounterError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(CounterError("connection refused".into()));
            }
            self.counts.peek(key).await
        }

        async fn clear(&self, key: &str) -> Result<(), CounterError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(CounterError("connection refused".into()));
            }
            self.counts.clear(key).await
        }
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn counts_go_to_memory_while_the_primary_fails_and_back_when_it_answers() {
        let counter = FallbackCounter::new(Flaky::default());
        assert_eq!(counter.hit("k", MINUTE).await.unwrap().count, 1);
        assert_eq!(counter.hit("k", MINUTE).await.unwrap().count, 2);
        assert!(!counter.is_falling_back());

        counter.primary().down.store(true, Ordering::Relaxed);
        // The outage starts from an empty local count: every node limits on its own.
        assert_eq!(counter.hit("k", MINUTE).await.unwrap().count, 1);
        assert_eq!(counter.hit("k", MINUTE).await.unwrap().count, 2);
        assert_eq!(counter.peek("k").await.unwrap().map(|c| c.count), Some(2));
        assert!(counter.is_falling_back());

        counter.primary().down.store(false, Ordering::Relaxed);
        assert_eq!(
            counter.hit("k", MINUTE).await.unwrap().count,
            3,
            "shared again"
        );
        assert!(!counter.is_falling_back());
    }

    #[tokio::test]
    async fn clearing_forgets_the_key_in_memory_too_and_never_fails() {
        let counter = FallbackCounter::new(Flaky::default());
        counter.primary().down.store(true, Ordering::Relaxed);
        counter.hit("k", MINUTE).await.unwrap();
        counter.clear("k").await.expect("clear does not fail");
        assert_eq!(counter.peek("k").await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_limit_still_holds_during_an_outage() {
        let counter = Arc::new(FallbackCounter::new(Flaky::default()));
        counter.primary().down.store(true, Ordering::Relaxed);
        let limits = super::super::RateLimits::with_counter(counter, 3, 5);
        let ip = std::net::IpAddr::from([10, 0, 0, 1]);
        for _ in 0..3 {
            assert!(limits.check_api(ip).await.is_ok());
        }
        assert!(matches!(
            limits.check_api(ip).await,
            Err(super::super::RateLimitError::Limited { .. })
        ));
    }
}
