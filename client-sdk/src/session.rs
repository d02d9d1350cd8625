//! The signed-in session: access tokens refreshed before they expire, refresh tokens rotated
//! and kept in the local store, and the end of the session when the server refuses a refresh.
//!
//! Refresh tokens are single-use: each refresh answers a new pair and the old refresh token is
//! spent. Presenting a spent one makes the server revoke the whole family (it looks like a
//! stolen token). So refreshes are serialised here (one at a time per client) and the new pair
//! is written to the store before it is used; a refused refresh signs the user out with
//! [`ClientError::SignedOut`] and keeps every local document and change.

use std::time::Duration;

use chrono::Utc;

use crate::client::Inner;
use crate::error::{ClientError, Result};
use crate::feed::ClientEvent;
use crate::store::StoredTokens;

/// How long before its expiry an access token is refreshed, so a request or a connection never
/// starts with a token about to lapse.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

impl Inner {
    /// A valid access token: the stored one while it has more than [`REFRESH_MARGIN`] left,
    /// else a freshly refreshed one. `force` refreshes anyway (the server refused the token
    /// before its time, e.g. after a password change bumped the token version).
    pub(crate) async fn access_token(&self, force: bool) -> Result<String> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let tokens = self.lock_local().store.meta().tokens.clone();
        let Some(tokens) = tokens else {
            return Err(ClientError::NotSignedIn);
        };
        let margin = REFRESH_MARGIN.as_millis() as i64;
        if !force && tokens.access_expires_at_ms - Utc::now().timestamp_millis() > margin {
            return Ok(tokens.access_token);
        }
        match self.api.refresh(&tokens.refresh_token).await {
            Ok(pair) => {
                let stored = StoredTokens {
                    access_token: pair.access_token.clone(),
                    refresh_token: pair.refresh_token,
                    access_expires_at_ms: expires_at_ms(pair.expires_in),
                };
                self.lock_local()
                    .store
                    .update_meta(|m| m.tokens = Some(stored))?;
                Ok(pair.access_token)
            }
            Err(ClientError::SignedOut(reason)) => {
                self.end_session(&reason)?;
                Err(ClientError::SignedOut(reason))
            }
            Err(other) => Err(other),
        }
    }

    /// Forgets the tokens (the local document and pending changes stay) and tells the app.
    pub(crate) fn end_session(&self, reason: &str) -> Result<()> {
        tracing::warn!(reason, "the server ended the session; signed out");
        self.lock_local().store.update_meta(|m| m.tokens = None)?;
        // Nobody listening is fine: the error is also returned to the caller.
        let _ = self.events.send(ClientEvent::SignedOut {
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Runs a REST call with a valid access token; when the server answers 401 anyway (the
    /// token was revoked early), refreshes once and retries.
    pub(crate) async fn authed<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let token = self.access_token(false).await?;
        match call(token).await {
            Err(ClientError::Api { status: 401, .. }) => {
                let token = self.access_token(true).await?;
                call(token).await
            }
            other => other,
        }
    }
}

/// The unix-millisecond expiry of a token valid for `expires_in` seconds from now.
pub(crate) fn expires_at_ms(expires_in: i64) -> i64 {
    Utc::now().timestamp_millis() + expires_in.saturating_mul(1000)
}
