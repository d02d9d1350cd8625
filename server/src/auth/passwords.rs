//! Password hashing with argon2id, off the async runtime and with bounded concurrency.
//!
//! One argon2id hash with OWASP's parameters takes tens of milliseconds of CPU and 19 MiB of
//! memory. Computing it on a runtime worker would stall every other request on that worker, and
//! computing an unbounded number at once would let a login flood take every core from sync
//! traffic. So each hash runs on `spawn_blocking`, and at most `HASH_CONCURRENCY` run at once:
//! the rest wait for a permit of a [`Semaphore`] without occupying a thread.

use std::fmt;
use std::sync::Arc;

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::AuthError;
use crate::config::{Argon2Params, Config};
use crate::validation::Password;

/// Hashes and verifies passwords; built once at start-up and shared through `AppState`.
#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// A hash of a random password with the current parameters, verified when an email is
    /// unknown so that a failed login takes about as long whether or not the account exists.
    dummy_hash: Arc<str>,
}

impl fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("params", self.argon2.params())
            .field("available_permits", &self.permits.available_permits())
            .finish()
    }
}

impl PasswordHasher {
    /// A hasher with the configured argon2 parameters and concurrency. Fails when the parameters
    /// are outside what argon2 accepts. Computes one hash (the dummy), so call it at start-up.
    pub fn new(config: &Config) -> Result<Self, AuthError> {
        Self::with_params(config.argon2, config.max_concurrent_hashes)
    }

    /// A hasher with explicit parameters; `max_concurrent_hashes` of 0 is treated as 1.
    pub fn with_params(
        params: Argon2Params,
        max_concurrent_hashes: usize,
    ) -> Result<Self, AuthError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| AuthError::Internal(format!("invalid argon2 parameters: {e}")))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random_password = [0u8; 32];
        rand::RngCore::fill_bytes(&mut OsRng, &mut random_password);
        let dummy_hash = hash_blocking(&argon2, &random_password)?;
        Ok(PasswordHasher {
            argon2,
            permits: Arc::new(Semaphore::new(max_concurrent_hashes.max(1))),
            dummy_hash: dummy_hash.into(),
        })
    }

    /// Hashes a new password into a PHC string (`$argon2id$v=19$m=...`) with a random salt.
    pub async fn hash(&self, password: &Password) -> Result<String, AuthError> {
        let argon2 = self.argon2.clone();
        let password = password.expose().as_bytes().to_vec();
        self.run_blocking(move || hash_blocking(&argon2, &password))
            .await?
    }

    /// Checks `password` against a stored PHC hash. `Ok(false)` means a wrong password; a
    /// stored hash that cannot be parsed is an internal error.
    pub async fn verify(&self, password: &str, stored_hash: &str) -> Result<bool, AuthError> {
        let argon2 = self.argon2.clone();
        let password = password.as_bytes().to_vec();
        let stored_hash = stored_hash.to_string();
        self.run_blocking(move || verify_blocking(&argon2, &password, &stored_hash))
            .await?
    }

    /// Checks `password` against the user's hash when there is a user, and against the dummy
    /// hash otherwise (then the answer is always `false`), so both cases cost one verification.
    pub async fn verify_or_dummy(
        &self,
        password: &str,
        stored_hash: Option<&str>,
    ) -> Result<bool, AuthError> {
        match stored_hash {
            Some(hash) => self.verify(password, hash).await,
            None => {
                let dummy = self.dummy_hash.clone();
                self.verify(password, &dummy).await?;
                Ok(false)
            }
        }
    }

    /// Runs `work` on the blocking pool once a permit is free. The permit moves into the
    /// blocking task, so it stays taken until the hash is done even if the request that asked
    /// for it is cancelled (a timeout must not let more hashes run than allowed).
    async fn run_blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| AuthError::Internal("password hasher closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let result = work();
            drop(permit);
            result
        })
        .await
        .map_err(|e| AuthError::Internal(format!("password hashing task failed: {e}")))
    }
}

fn hash_blocking(argon2: &Argon2<'_>, password: &[u8]) -> Result<String, AuthError> {
    let salt = SaltString::generate(&mut OsRng);
    argon2
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AuthError::Internal(format!("cannot hash password: {e}")))
}

fn verify_blocking(
    argon2: &Argon2<'_>,
    password: &[u8],
    stored_hash: &str,
) -> Result<bool, AuthError> {
    let parsed = PasswordHash::new(stored_hash)
        .map_err(|e| AuthError::Internal(format!("stored password hash is unreadable: {e}")))?;
    match argon2.verify_password(password, &parsed) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::Password) => Ok(false),
        Err(e) => Err(AuthError::Internal(format!("cannot verify password: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    const FAST: Argon2Params = Argon2Params {
        memory_kib: 1024,
        iterations: 1,
        parallelism: 1,
    };

    fn password(raw: &str) -> Password {
        Password::parse(raw).expect("valid test password")
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::with_params(FAST, 2).expect("hasher");
        let hash = hasher.hash(&password("correct horse")).await.expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"));
        assert!(hasher.verify("correct horse", &hash).await.expect("verify"));
        assert!(!hasher.verify("correct horsE", &hash).await.expect("verify"));
    }

    #[tokio::test]
    async fn the_same_password_gets_a_different_salt_each_time() {
        let hasher = PasswordHasher::with_params(FAST, 2).expect("hasher");
        let a = hasher.hash(&password("correct horse")).await.expect("hash");
        let b = hasher.hash(&password("correct horse")).await.expect("hash");
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn the_owasp_default_parameters_are_used_when_configured() {
        let hasher = PasswordHasher::with_params(Argon2Params::OWASP, 1).expect("hasher");
        let hash = hasher.hash(&password("correct horse")).await.expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
    }

    #[tokio::test]
    async fn an_unknown_user_is_checked_against_the_dummy_hash() {
        let hasher = PasswordHasher::with_params(FAST, 2).expect("hasher");
        assert!(!hasher
            .verify_or_dummy("whatever password", None)
            .await
            .expect("verify"));
        let hash = hasher.hash(&password("correct horse")).await.expect("hash");
        assert!(hasher
            .verify_or_dummy("correct horse", Some(&hash))
            .await
            .expect("verify"));
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_an_internal_error() {
        let hasher = PasswordHasher::with_params(FAST, 2).expect("hasher");
        assert!(matches!(
            hasher.verify("x", "not a hash").await,
            Err(AuthError::Internal(_))
        ));
    }

    #[test]
    fn impossible_parameters_are_refused() {
        let bad = Argon2Params {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1,
        };
        assert!(PasswordHasher::with_params(bad, 1).is_err());
    }

    #[tokio::test]
    async fn hashing_does_not_block_the_runtime() {
        // A single-threaded runtime: if a hash ran on it, a 1 ms timer could not fire until the
        // hash was done. Measure how long one slow hash takes, then check that timers keep
        // firing much faster than that while three hashes run.
        let slow = Argon2Params {
            memory_kib: 19456,
            iterations: 4,
            parallelism: 1,
        };
        let hasher = PasswordHasher::with_params(slow, 1).expect("hasher");
        let started = Instant::now();
        hasher.hash(&password("correct horse")).await.expect("hash");
        let one_hash = started.elapsed();

        let hashes: Vec<_> = (0..3)
            .map(|_| {
                let hasher = hasher.clone();
                tokio::spawn(async move { hasher.hash(&password("correct horse")).await })
            })
            .collect();
        let mut worst_tick = Duration::ZERO;
        while !hashes.iter().all(|h| h.is_finished()) {
            let started = Instant::now();
            tokio::time::sleep(Duration::from_millis(1)).await;
            worst_tick = worst_tick.max(started.elapsed());
        }
        for handle in hashes {
            handle.await.expect("join").expect("hash");
        }
        assert!(
            worst_tick < one_hash / 2,
            "a 1 ms timer took {worst_tick:?} while hashes of {one_hash:?} each were running"
        );
    }

    #[tokio::test]
    async fn at_most_the_configured_number_of_hashes_run_at_once() {
        let hasher = PasswordHasher::with_params(FAST, 2).expect("hasher");
        assert_eq!(hasher.permits.available_permits(), 2);
        let held = hasher
            .permits
            .clone()
            .acquire_many_owned(2)
            .await
            .expect("permits");
        let waiting = {
            let hasher = hasher.clone();
            tokio::spawn(async move { hasher.hash(&password("correct horse")).await })
        };
        // With every permit held the hash cannot start; give it a generous chance to run.
        let blocked = tokio::time::timeout(Duration::from_millis(200), async {
            while !waiting.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(blocked.is_err(), "a hash ran without a permit");
        drop(held);
        let hash = tokio::time::timeout(Duration::from_secs(10), waiting)
            .await
            .expect("hash finishes once a permit is free")
            .expect("join")
            .expect("hash");
        assert!(hash.starts_with("$argon2id$"));
    }
}
