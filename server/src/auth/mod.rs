//! Accounts and sessions: registration, login, token refresh with rotation and reuse detection,
//! logout, password reset by mail and password change (docs/rest-api.md, "Authentication").
//!
//! * [`tokens`]: HS256 access tokens (15 minutes) and opaque refresh/reset tokens stored hashed.
//! * [`passwords`]: argon2id off the async runtime, with bounded concurrency.
//! * [`cache`]: a per-process, one-second memory of token versions and live partnerships.
//! * [`extractor`]: [`extractor::AuthUser`], what protected handlers take to know the caller.
//! * [`routes`]: the `/api/auth/*` handlers.
//!
//! Error codes specific to this module, besides the API's common ones (see `crate::error`):
//!
//! | status | code                    | when                                                     |
//! |--------|-------------------------|----------------------------------------------------------|
//! | 401    | `invalid_credentials`   | wrong email or password (one answer for both)            |
//! | 401    | `invalid_refresh_token` | unknown, expired, revoked or reused refresh token        |
//! | 400    | `invalid_reset_token`   | unknown, used or expired password-reset token            |
//! | 401    | `unauthorized`          | missing, expired, tampered or outdated access token      |

pub mod cache;
pub mod extractor;
pub mod passwords;
pub mod routes;
pub mod tokens;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorBody, ErrorDetail, FieldErrors};
use crate::ratelimit::RateLimitError;
use crate::store::StoreError;

/// Everything the auth layer can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Wrong email or password; deliberately the same for both.
    #[error("invalid email or password")]
    InvalidCredentials,
    /// The access token is missing, malformed, tampered, expired, signed with another algorithm,
    /// or older than the user's last password change.
    #[error("invalid or expired token")]
    InvalidAccessToken,
    /// The refresh token is unknown, expired, revoked, or was already used (then its whole family
    /// has been revoked).
    #[error("invalid or expired refresh token")]
    InvalidRefreshToken,
    /// The password-reset token is unknown, used or expired.
    #[error("invalid or expired reset token")]
    InvalidResetToken,
    /// Input that breaks a rule, per field.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// Too many attempts (or the limiter failed).
    #[error(transparent)]
    RateLimited(#[from] RateLimitError),
    /// The store failed or refused (e.g. `email_taken`).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A bug or a broken dependency (hashing, signing); logged, never shown.
    #[error("{0}")]
    Internal(String),
}

impl AuthError {
    /// The codes this module adds to the API's common ones, with their status and message.
    fn own_code(&self) -> Option<(StatusCode, &'static str, &'static str)> {
        match self {
            AuthError::InvalidCredentials => Some((
                StatusCode::UNAUTHORIZED,
                "invalid_credentials",
                "invalid email or password",
            )),
            AuthError::InvalidRefreshToken => Some((
                StatusCode::UNAUTHORIZED,
                "invalid_refresh_token",
                "invalid or expired refresh token",
            )),
            AuthError::InvalidResetToken => Some((
                StatusCode::BAD_REQUEST,
                "invalid_reset_token",
                "invalid or expired reset token",
            )),
            _ => None,
        }
    }
}

impl From<AuthError> for ApiError {
    /// For handlers outside this module: the auth-specific codes fold into the common
    /// `unauthorized` / `bad_request` ones there.
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::InvalidCredentials => ApiError::Unauthorized("invalid email or password"),
            AuthError::InvalidAccessToken => ApiError::Unauthorized("invalid or expired token"),
            AuthError::InvalidRefreshToken => {
                ApiError::Unauthorized("invalid or expired refresh token")
            }
            AuthError::InvalidResetToken => {
                ApiError::BadRequest("invalid or expired reset token".into())
            }
            AuthError::Validation(fields) => ApiError::Validation(fields),
            AuthError::RateLimited(err) => err.into(),
            AuthError::Store(err) => err.into(),
            AuthError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl IntoResponse for AuthError {
    /// The API's one JSON error shape, with this module's own codes where it has one.
    fn into_response(self) -> Response {
        let Some((status, code, message)) = self.own_code() else {
            return ApiError::from(self).into_response();
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_string(),
                message: message.to_string(),
                details: None,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn code_of(err: AuthError) -> (StatusCode, String) {
        let response = err.into_response();
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("json");
        (
            status,
            body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    #[tokio::test]
    async fn each_error_has_its_status_and_code() {
        for (err, status, code) in [
            (AuthError::InvalidCredentials, 401, "invalid_credentials"),
            (AuthError::InvalidRefreshToken, 401, "invalid_refresh_token"),
            (AuthError::InvalidResetToken, 400, "invalid_reset_token"),
            (AuthError::InvalidAccessToken, 401, "unauthorized"),
            (
                AuthError::Store(StoreError::Conflict(crate::store::Conflict::EmailTaken)),
                409,
                "email_taken",
            ),
            (
                AuthError::Validation(FieldErrors::default().add("email", "is required")),
                422,
                "validation_failed",
            ),
            (
                AuthError::RateLimited(RateLimitError::Limited {
                    retry_after_secs: 5,
                }),
                429,
                "rate_limited",
            ),
            (
                AuthError::Internal("secret cause".into()),
                500,
                "internal_error",
            ),
        ] {
            assert_eq!(
                code_of(err).await,
                (
                    StatusCode::from_u16(status).expect("status"),
                    code.to_string()
                )
            );
        }
    }
}
