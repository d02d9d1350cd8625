//! [`RedisCounter`]: fixed windows kept in Redis, shared by every node of a deployment.
//!
//! One key per counter, `<REDIS_PREFIX>rl:<sha256 of the counter's name>`, holding the count and
//! expiring when the window ends. The name is hashed because it carries who is limited (an
//! email address for the login and forgot-password limits, a client address): Redis, its
//! snapshots and its `MONITOR` need not hold them.
//!
//!
//! * `hit` runs one Lua script, so it is atomic however many nodes count at once: `INCR`, then
//!   `PEXPIRE <window>` when the key was just created (or, should one ever be found, has no
//!   expiry), and answers the count with the key's `PTTL` as the rest of the window.
//! * `peek` reads `GET` and `PTTL` in one `MULTI`; `clear` is `DEL`.
//!
//! The counter holds one multiplexed connection, made on first use (building it needs neither a
//! runtime nor a reachable Redis) and made again after it fails. Every call is bounded: at most
//! [`CONNECT_TIMEOUT`] to connect (and hear a `PING` back) and [`COMMAND_TIMEOUT`] for the
//! command. After a failure the connection is dropped and the next attempt waits a backoff
//! (100 ms, doubling up to 2 s while Redis keeps failing) during which calls fail at once, and
//! only one call at a time tries again; so a dead or hanging Redis costs a request at most about
//! half a second, and almost every request nothing. Failures are returned as [`CounterError`]; the server wraps this
//! counter in a [`super::FallbackCounter`], which counts in memory meanwhile.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::aio::MultiplexedConnection;

use super::{CounterError, WindowCount, WindowCounter};

/// Longest a connection attempt to Redis may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);
/// Longest one counter command may take once connected.
pub const COMMAND_TIMEOUT: Duration = Duration::from_millis(250);
/// Backoff between connection attempts while Redis is unreachable.
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// `KEYS[1]`: the counter; `ARGV[1]`: the window in milliseconds. Returns `{count, pttl}`.
const HIT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('PTTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// Fixed-window counters in Redis (see the module documentation).
pub struct RedisCounter {
    client: redis::Client,
    /// `<REDIS_PREFIX>rl:`.
    prefix: String,
    hit_script: redis::Script,
    link: Mutex<Link>,
    /// Held while connecting, so that concurrent calls make one connection, not one each.
    connecting: tokio::sync::Mutex<()>,
}

/// The connection, or when the next attempt to make one may start.
struct Link {
    /// The connection and its generation (so that a call whose command failed on an older
    /// connection does not throw away a newer one).
    conn: Option<(u64, MultiplexedConnection)>,
    generation: u64,
    /// After a failed attempt: no new attempt before this.
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Link {
    /// Redis failed: no connection attempt before the backoff is over, and the next backoff
    /// is longer.
    fn back_off(&mut self) {
        self.retry_at = Some(Instant::now() + self.backoff);
        self.backoff = (self.backoff * 2).min(RETRY_MAX);
    }

    fn connect_failed(&mut self, reason: String) -> CounterError {
        self.back_off();
        CounterError(reason)
    }
}

impl std::fmt::Debug for RedisCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisCounter")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisCounter {
    /// Counters in the Redis at `url`, under `<prefix>rl:`. Only checks the URL: the
    /// connection is made on first use.
    pub fn new(url: &str, prefix: &str) -> Result<RedisCounter, CounterError> {
        let client = redis::Client::open(url)
            .map_err(|err| CounterError(format!("REDIS_URL is not usable: {err}")))?;
        Ok(RedisCounter {
            client,
            prefix: format!("{prefix}rl:"),
            hit_script: redis::Script::new(HIT_SCRIPT),
            link: Mutex::new(Link {
                conn: None,
                generation: 0,
                retry_at: None,
                backoff: RETRY_MIN,
            }),
            connecting: tokio::sync::Mutex::new(()),
        })
    }

    /// The Redis key of counter `key` (its name hashed, see the module documentation).
    pub fn redis_key(&self, key: &str) -> String {
        use sha2::Digest;
        format!("{}{}", self.prefix, hex::encode(sha2::Sha256::digest(key)))
    }

    fn link(&self) -> MutexGuard<'_, Link> {
        // Every update of the link is a single assignment: a poisoned lock is still consistent.
        self.link
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current connection; `Ok(None)` when there is none and an attempt may be made now.
    fn current(&self) -> Result<Option<(u64, MultiplexedConnection)>, CounterError> {
        let link = self.link();
        if let Some(conn) = &link.conn {
            return Ok(Some(conn.clone()));
        }
        match link.retry_at {
            Some(at) if Instant::now() < at => Err(CounterError(
                "Redis is unreachable (the next connection attempt is not due yet)".into(),
            )),
            _ => Ok(None),
        }
    }

    /// The connection, made now if there is none (within [`CONNECT_TIMEOUT`]).
    async fn connection(&self) -> Result<(u64, MultiplexedConnection), CounterError> {
        if let Some(conn) = self.current()? {
            return Ok(conn);
        }
        let outage = self.link().retry_at.is_some();
        let _connecting = if outage {
            // Redis has been failing: one call tries again, the others do not wait for it.
            self.connecting
                .try_lock()
                .map_err(|_| CounterError("Redis is unreachable (reconnecting)".into()))?
        } else {
            tokio::time::timeout(CONNECT_TIMEOUT, self.connecting.lock())
                .await
                .map_err(|_| CounterError("no connection to Redis yet".into()))?
        };
        if let Some(conn) = self.current()? {
            return Ok(conn);
        }
        // A new connection is shared only once Redis has answered on it, so that a Redis that
        // accepts connections but does not answer stalls this one call, not every call.
        let made = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut conn = self.client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<()>(&mut conn).await?;
            Ok::<_, redis::RedisError>(conn)
        })
        .await;
        let mut link = self.link();
        match made {
            Ok(Ok(conn)) => {
                link.generation += 1;
                link.conn = Some((link.generation, conn.clone()));
                link.retry_at = None;
                Ok((link.generation, conn))
            }
            Ok(Err(err)) => Err(link.connect_failed(format!("cannot connect to Redis: {err}"))),
            Err(_) => Err(link.connect_failed(format!(
                "Redis did not accept a connection within {CONNECT_TIMEOUT:?}"
            ))),
        }
    }

    /// The outcome of a command sent on connection `generation` (bounded by
    /// [`COMMAND_TIMEOUT`] with [`timed`]). A connection that timed out or broke is dropped,
    /// and a new one is tried after the backoff.
    fn settle<T>(
        &self,
        generation: u64,
        what: &str,
        result: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, CounterError> {
        let (broken, reason) = match result {
            Ok(Ok(value)) => {
                self.link().backoff = RETRY_MIN;
                return Ok(value);
            }
            Ok(Err(err)) => (
                err.is_io_error() || err.is_unrecoverable_error(),
                format!("Redis {what} failed: {err}"),
            ),
            Err(_) => (
                true,
                format!("Redis {what} did not answer within {COMMAND_TIMEOUT:?}"),
            ),
        };
        if broken {
            let mut link = self.link();
            if link.conn.as_ref().is_some_and(|(g, _)| *g == generation) {
                link.conn = None;
                link.back_off();
            }
        }
        Err(CounterError(reason))
    }
}

/// `command` bounded by [`COMMAND_TIMEOUT`].
async fn timed<F: std::future::Future>(
    command: F,
) -> Result<F::Output, tokio::time::error::Elapsed> {
    tokio::time::timeout(COMMAND_TIMEOUT, command).await
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl WindowCounter for RedisCounter {
    async fn hit(&self, key: &str, window: Duration) -> Result<WindowCount, CounterError> {
        let key = self.redis_key(key);
        let (generation, mut conn) = self.connection().await?;
        let invocation = timed(
            self.hit_script
                .key(&key)
                .arg(millis(window))
                .invoke_async(&mut conn),
        )
        .await;
        let (count, ttl): (u64, i64) = self.settle(generation, "INCR", invocation)?;
        Ok(WindowCount {
            count,
            resets_in: Duration::from_millis(u64::try_from(ttl).unwrap_or(0)),
        })
    }

    async fn peek(&self, key: &str) -> Result<Option<WindowCount>, CounterError> {
        let key = self.redis_key(key);
        let (generation, mut conn) = self.connection().await?;
        let read = timed(
            redis::pipe()
                .atomic()
                .cmd("GET")
                .arg(&key)
                .cmd("PTTL")
                .arg(&key)
                .query_async(&mut conn),
        )
        .await;
        let (count, ttl): (Option<u64>, i64) = self.settle(generation, "GET", read)?;
        Ok(match (count, u64::try_from(ttl)) {
            (Some(count), Ok(ttl)) if ttl > 0 => Some(WindowCount {
                count,
                resets_in: Duration::from_millis(ttl),
            }),
            _ => None,
        })
    }

    async fn ping_shared(&self) -> Option<Result<(), CounterError>> {
        let ping = async {
            let (generation, mut conn) = self.connection().await?;
            let answered = timed(redis::cmd("PING").query_async::<()>(&mut conn)).await;
            self.settle(generation, "PING", answered)
        };
        Some(ping.await)
    }

    async fn clear(&self, key: &str) -> Result<(), CounterError> {
        let key = self.redis_key(key);
        let (generation, mut conn) = self.connection().await?;
        let deleted = timed(redis::cmd("DEL").arg(&key).query_async::<i64>(&mut conn)).await;
        self.settle(generation, "DEL", deleted)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A counter on the `TEST_REDIS_URL` server under a prefix of its own; `None` (after saying
    /// so) when it is unset.
    fn counter() -> Option<(RedisCounter, redis::Client, String)> {
        let Ok(url) = std::env::var("TEST_REDIS_URL") else {
            eprintln!("skipped: TEST_REDIS_URL not set");
            return None;
        };
        let prefix = format!("splitsave-test-{}:", uuid::Uuid::new_v4().simple());
        let counter = RedisCounter::new(&url, &prefix).expect("counter");
        let admin = redis::Client::open(url).expect("admin client");
        Some((counter, admin, prefix))
    }

    async fn pttl(admin: &redis::Client, key: &str) -> i64 {
        let mut conn = admin
            .get_multiplexed_async_connection()
            .await
            .expect("admin connection");
        redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("PTTL")
    }

    #[tokio::test]
    async fn a_window_lives_in_one_prefixed_key_that_expires_when_it_ends() {
        let Some((counter, admin, prefix)) = counter() else {
            return;
        };
        let window = Duration::from_secs(60);
        let first = counter.hit("api:10.0.0.1", window).await.expect("hit");
        assert_eq!(first.count, 1);
        assert!(first.resets_in <= window && first.resets_in > Duration::from_secs(55));
        let key = counter.redis_key("api:10.0.0.1");
        assert!(key.starts_with(&format!("{prefix}rl:")), "{key}");
        assert!(
            !key.contains("10.0.0.1"),
            "the client address is not in the key: {key}"
        );
        let ttl = pttl(&admin, &key).await;
        assert!((55_000..=60_000).contains(&ttl), "{key} expires: {ttl}");

        // Later hits count on without moving the end of the window.
        let second = counter
            .hit("api:10.0.0.1", Duration::from_secs(3600))
            .await
            .expect("hit");
        assert_eq!(second.count, 2);
        assert!(second.resets_in <= window, "{second:?}");
        assert!(pttl(&admin, &key).await <= 60_000);

        let peeked = counter.peek("api:10.0.0.1").await.expect("peek");
        assert_eq!(peeked.map(|c| c.count), Some(2));
        assert_eq!(counter.peek("api:10.0.0.2").await.expect("peek"), None);

        counter.clear("api:10.0.0.1").await.expect("clear");
        assert_eq!(pttl(&admin, &key).await, -2, "the key is gone");
        assert_eq!(counter.hit("api:10.0.0.1", window).await.unwrap().count, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_hits_each_get_their_own_count() {
        let Some((counter, _, _)) = counter() else {
            return;
        };
        let counter = std::sync::Arc::new(counter);
        let hits: Vec<_> = (0..40)
            .map(|_| {
                let counter = counter.clone();
                tokio::spawn(async move { counter.hit("k", Duration::from_secs(60)).await })
            })
            .collect();
        let mut counts = Vec::new();
        for hit in hits {
            counts.push(hit.await.expect("join").expect("hit").count);
        }
        counts.sort_unstable();
        assert_eq!(counts, (1..=40).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn a_key_left_without_expiry_gets_one() {
        let Some((counter, admin, _)) = counter() else {
            return;
        };
        let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
        let key = counter.redis_key("stuck");
        let () = redis::cmd("SET")
            .arg(&key)
            .arg(7)
            .query_async(&mut conn)
            .await
            .unwrap();
        let count = counter.hit("stuck", Duration::from_secs(60)).await.unwrap();
        assert_eq!(count.count, 8);
        assert!(pttl(&admin, &key).await > 0, "no key may count forever");
    }

    #[tokio::test]
    async fn a_dropped_connection_is_replaced_and_the_count_goes_on() {
        let Some((counter, admin, _)) = counter() else {
            return;
        };
        let window = Duration::from_secs(60);
        counter.hit("k", window).await.expect("hit");
        let (generation, mut conn) = counter.connection().await.expect("connected");
        let id = timed(redis::cmd("CLIENT").arg("ID").query_async::<i64>(&mut conn)).await;
        let id = counter
            .settle(generation, "CLIENT ID", id)
            .expect("client id");
        let mut conn = admin.get_multiplexed_async_connection().await.unwrap();
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(killed, 1);
        // The call that finds the connection dead may fail; a later one reconnects.
        let deadline = Instant::now() + Duration::from_secs(5);
        let count = loop {
            match counter.hit("k", window).await {
                Ok(count) => break count,
                Err(err) => assert!(Instant::now() < deadline, "never reconnected: {err}"),
            }
            // Polling: the reconnection waits out a backoff of 100 ms first.
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(count.count >= 2, "the count lives in Redis: {count:?}");
    }

    #[tokio::test]
    async fn nothing_listening_fails_at_once_and_then_waits_before_trying_again() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let counter = RedisCounter::new(&format!("redis://127.0.0.1:{port}"), "t:").unwrap();
        let started = Instant::now();
        let err = counter.hit("k", Duration::from_secs(60)).await.unwrap_err();
        assert!(err.0.contains("cannot connect"), "{err}");
        let err = counter.hit("k", Duration::from_secs(60)).await.unwrap_err();
        assert!(err.0.contains("not due yet"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn a_redis_that_never_answers_costs_a_call_a_bounded_time() {
        // Accepts connections (the kernel does) but never reads or answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let counter = RedisCounter::new(&format!("redis://127.0.0.1:{port}"), "t:").unwrap();
        let started = Instant::now();
        assert!(counter.hit("k", Duration::from_secs(60)).await.is_err());
        let first = started.elapsed();
        assert!(
            first < CONNECT_TIMEOUT + COMMAND_TIMEOUT + Duration::from_millis(250),
            "{first:?}"
        );
        // Until the backoff is over, calls do not wait at all.
        let started = Instant::now();
        assert!(counter.hit("k", Duration::from_secs(60)).await.is_err());
        assert!(started.elapsed() < Duration::from_millis(50));
        drop(silent);
    }

    #[test]
    fn building_the_counter_needs_no_runtime_and_refuses_a_bad_url() {
        assert!(RedisCounter::new("redis://127.0.0.1:1", "p:").is_ok());
        let err = RedisCounter::new("http://not-redis", "p:").unwrap_err();
        assert!(err.0.contains("REDIS_URL"), "{err}");
    }
}
