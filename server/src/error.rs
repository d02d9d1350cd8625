//! The one error type of the HTTP layer and its single JSON shape:
//! `{"error": {"code": "...", "message": "...", "details": {...}}}`.
//!
//! Every failure a client can see maps to a stable `code` here, once. Internal causes are logged
//! (inside the request's span, which carries the request id) and never shown to the client.
//!
//! | status | code                     | when                                                        |
//! |--------|--------------------------|-------------------------------------------------------------|
//! | 400    | `bad_request`            | malformed JSON, wrong JSON types, missing fields, bad path   |
//! | 401    | `unauthorized`           | missing, expired, tampered token; wrong credentials          |
//! | 403    | `forbidden`              | authenticated but not allowed                                |
//! | 404    | `not_found`              | unknown route or resource (or one that is not yours)         |
//! | 404    | `no_partnership`         | the resource is the caller's partnership, and they have none |
//! | 405    | `method_not_allowed`     | known route, other method                                    |
//! | 409    | the conflict's own code  | e.g. `email_taken`, `partnership_exists`                     |
//! | 413    | `payload_too_large`      | body over `BODY_LIMIT_BYTES`                                 |
//! | 415    | `unsupported_media_type` | a JSON body without `Content-Type: application/json`         |
//! | 422    | `validation_failed`      | well-formed input that breaks a rule; `details` per field    |
//! | 429    | `rate_limited`           | too many requests; `Retry-After` says when to come back      |
//! | 500    | `internal_error`         | a bug or an unreachable dependency; details only in the log  |
//! | 503    | `service_unavailable` / `timeout` | database down (readyz), request over the time limit |

use std::collections::BTreeMap;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// Per-field validation messages, keyed by the JSON field name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldErrors(pub BTreeMap<String, Vec<String>>);

impl FieldErrors {
    /// Adds one message for `field` (builder style).
    pub fn add(mut self, field: impl Into<String>, message: impl Into<String>) -> Self {
        self.push(field, message);
        self
    }

    /// Adds one message for `field` in place.
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.entry(field.into()).or_default().push(message.into());
    }

    /// True when no field has a message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Ok(())` when empty, else the validation error to return.
    pub fn into_result(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self))
        }
    }

    /// Records the outcome of a parse: the value on success, the message under `field` otherwise.
    pub fn check<T>(&mut self, field: &str, parsed: Result<T, String>) -> Option<T> {
        match parsed {
            Ok(v) => Some(v),
            Err(message) => {
                self.push(field, message);
                None
            }
        }
    }
}

/// A boxed internal cause: logged, never shown.
pub type InternalError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything an HTTP handler can fail with; see the module table for status and code.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422 `validation_failed` with per-field details.
    #[error("validation failed")]
    Validation(FieldErrors),
    /// 400 `bad_request`.
    #[error("{0}")]
    BadRequest(String),
    /// 401 `unauthorized`.
    #[error("{0}")]
    Unauthorized(&'static str),
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404 `not_found`.
    #[error("not found")]
    NotFound,
    /// 404 `no_partnership`: what was asked for is the caller's partnership (its document), and
    /// they have none with a document (none at all, or only an invitation not accepted yet).
    #[error("you have no partnership")]
    NoPartnership,
    /// 405 `method_not_allowed`.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409 with the given stable code, e.g. `email_taken`, `partnership_exists`.
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// 413 `payload_too_large`.
    #[error("request body too large")]
    PayloadTooLarge,
    /// 415 `unsupported_media_type`.
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    /// 429 `rate_limited`, with `Retry-After`.
    #[error("too many requests")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after_secs: u64,
    },
    /// 503 `service_unavailable` (a dependency such as the database is down).
    #[error("service unavailable: {0}")]
    ServiceUnavailable(&'static str),
    /// 503 `timeout`: the request took longer than the configured limit.
    #[error("request timed out")]
    Timeout,
    /// 500 `internal_error`: logged with the request id, never shown.
    #[error("internal error: {0}")]
    Internal(InternalError),
}

impl ApiError {
    /// Wraps any error as an internal one.
    pub fn internal(err: impl Into<InternalError>) -> Self {
        ApiError::Internal(err.into())
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound | ApiError::NoPartnership => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable(_) | ApiError::Timeout => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code clients switch on.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation_failed",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::NoPartnership => "no_partnership",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(code) => code,
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::ServiceUnavailable(_) => "service_unavailable",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal_error",
        }
    }

    fn public_message(&self) -> String {
        match self {
            ApiError::Validation(_) => "some fields are invalid".into(),
            ApiError::Conflict(code) => conflict_message(code).into(),
            ApiError::Internal(_) => "something went wrong on our side".into(),
            other => other.to_string(),
        }
    }
}

fn conflict_message(code: &str) -> &'static str {
    match code {
        "email_taken" => "an account with this email already exists",
        "partnership_exists" => "you already have a partnership or a pending invitation",
        "partner_has_partnership" => "this person already has a partnership",
        "partnership_not_active" => "the partnership is not active yet",
        "partnership_not_empty" => {
            "the partnership already has entries: an import goes only into one without any"
        }
        _ => "the request conflicts with the current state",
    }
}

/// The JSON error body, as documented in the OpenAPI document.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `validation_failed`.
    pub code: String,
    /// Human-readable message; not meant for parsing.
    pub message: String,
    /// For `validation_failed`: messages per field.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(cause) => tracing::error!(error = %cause, "internal error"),
            ApiError::ServiceUnavailable(what) => tracing::warn!(%what, "service unavailable"),
            _ => {}
        }
        let details = match &self {
            ApiError::Validation(fields) => serde_json::to_value(fields).ok(),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: self.public_message(),
                details,
            },
        };
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            ApiError::RateLimited { retry_after_secs } => {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs.max(1)),
                );
            }
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Conflict(conflict) => ApiError::Conflict(conflict.code()),
            StoreError::NotFound => ApiError::NotFound,
            other => ApiError::Internal(Box::new(other)),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        match rejection {
            JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType,
            JsonRejection::BytesRejection(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                ApiError::PayloadTooLarge
            }
            other => ApiError::BadRequest(other.body_text()),
        }
    }
}

/// A JSON body extractor whose rejections use the API's error shape (400, 413, 415) instead of
/// axum's plain-text ones. Handlers take `ApiJson<T>` wherever they would take `Json<T>`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A path extractor whose rejections (e.g. a malformed UUID) answer 400 in the API's shape.
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|r: PathRejection| ApiError::BadRequest(r.body_text()))
    }
}

/// A query-string extractor whose rejections answer 400 in the API's shape.
#[derive(Debug, Clone, Copy)]
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|r: QueryRejection| ApiError::BadRequest(r.body_text()))
    }
}

/// Builds the API error for a bare status produced outside the handlers (axum's 405, tower-http's
/// 408/413), so that every error response has the same JSON shape.
pub fn error_for_status(status: StatusCode) -> Option<ApiError> {
    Some(match status {
        StatusCode::BAD_REQUEST => ApiError::BadRequest("bad request".into()),
        StatusCode::UNAUTHORIZED => ApiError::Unauthorized("unauthorized"),
        StatusCode::FORBIDDEN => ApiError::Forbidden("forbidden"),
        StatusCode::NOT_FOUND => ApiError::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ApiError::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::UnsupportedMediaType,
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => ApiError::Timeout,
        StatusCode::TOO_MANY_REQUESTS => ApiError::RateLimited {
            retry_after_secs: 1,
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn validation_errors_carry_per_field_details() {
        let err =
            ApiError::Validation(FieldErrors::default().add("email", "must be a valid email"));
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "validation_failed");
        assert_eq!(
            body["error"]["details"]["email"][0],
            "must be a valid email"
        );
    }

    #[tokio::test]
    async fn internal_errors_hide_their_cause() {
        let response = ApiError::internal("database password is hunter2").into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(!body.to_string().contains("hunter2"));
    }

    #[tokio::test]
    async fn rate_limited_sets_retry_after() {
        let response = ApiError::RateLimited {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
    }

    #[tokio::test]
    async fn store_conflicts_keep_their_code() {
        let response = ApiError::from(StoreError::Conflict(crate::store::Conflict::EmailTaken))
            .into_response();
        assert_eq!(response.status(), StatusCode::CONFLICT);
        assert_eq!(body_json(response).await["error"]["code"], "email_taken");
    }
}
