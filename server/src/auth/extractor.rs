//! [`AuthUser`]: the authenticated caller, extracted from `Authorization: Bearer <access token>`.
//!
//! A handler that takes an `AuthUser` only runs for a request whose token has a valid HS256
//! signature, has not expired, and carries the user's current token version (a password change
//! or reset bumps it, which ends every older token at once). Anything else answers 401
//! `unauthorized` in the API's JSON shape, with `WWW-Authenticate: Bearer`.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use uuid::Uuid;

use super::AuthError;
use crate::app::AppState;
use crate::error::ApiError;

/// The caller of a protected endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuthUser {
    /// The user's id.
    pub user_id: Uuid,
    /// The partnership the token was issued with. It may have changed since (an invitation was
    /// accepted); handlers that act on a partnership read the current one from the store.
    pub partnership_id: Option<Uuid>,
    /// The token version the token carries, equal to the user's current one.
    pub token_version: i64,
    /// The session (refresh-token family) the token belongs to; `None` for a token that names
    /// none (issued before sessions were named, or by a tool).
    pub session_id: Option<Uuid>,
}

impl<S> FromRequestParts<S> for AuthUser
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let token = bearer_token(parts).ok_or(ApiError::Unauthorized("missing bearer token"))?;
        authenticate(&state, token).await.map_err(ApiError::from)
    }
}

/// Checks an access token completely: signature, algorithm, expiry, and that the user still
/// exists with the token's version (remembered for up to a second, see `auth::cache`). Shared by the extractor and the WebSocket handshake, which
/// may carry the token elsewhere than in a header.
pub async fn authenticate(state: &AppState, token: &str) -> Result<AuthUser, AuthError> {
    let claims = state.tokens.verify_access_token(token)?;
    // The version as read within the last second on this process (see `auth::cache`);
    // otherwise, and for any other version, the database decides.
    if !state.auth_cache.version_is_current(claims.sub, claims.ver) {
        let generation = state.auth_cache.generation();
        let user = state
            .store
            .user_by_id(claims.sub)
            .await?
            .ok_or(AuthError::InvalidAccessToken)?;
        state
            .auth_cache
            .put_version(user.id, user.token_version, generation);
        if user.token_version != claims.ver {
            tracing::debug!(user_id = %user.id, "access token from before a password change refused");
            return Err(AuthError::InvalidAccessToken);
        }
    }
    Ok(AuthUser {
        user_id: claims.sub,
        partnership_id: claims.pid,
        token_version: claims.ver,
        session_id: claims.sid,
    })
}

/// The token of an `Authorization: Bearer <token>` header (scheme compared case-insensitively).
fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts_with(header: Option<&str>) -> Parts {
        let mut builder = Request::builder();
        if let Some(value) = header {
            builder = builder.header(AUTHORIZATION, value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    #[test]
    fn the_bearer_token_is_read_from_the_authorization_header() {
        assert_eq!(
            bearer_token(&parts_with(Some("Bearer abc.def.ghi"))),
            Some("abc.def.ghi")
        );
        assert_eq!(bearer_token(&parts_with(Some("bearer abc"))), Some("abc"));
        assert_eq!(bearer_token(&parts_with(None)), None);
        assert_eq!(bearer_token(&parts_with(Some("Bearer "))), None);
        assert_eq!(bearer_token(&parts_with(Some("Basic dXNlcjpwYXNz"))), None);
        assert_eq!(bearer_token(&parts_with(Some("abc.def.ghi"))), None);
    }
}
