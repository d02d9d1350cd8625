//! The `/api/auth/*` endpoints (all `POST`, JSON in and out):
//!
//! | path               | success                         | failures (besides 400/415/422/429)     |
//! |--------------------|---------------------------------|----------------------------------------|
//! | `/register`        | 201 session (tokens + user)     | 409 `email_taken`                      |
//! | `/login`           | 200 session                     | 401 `invalid_credentials`              |
//! | `/refresh`         | 200 new token pair              | 401 `invalid_refresh_token`            |
//! | `/logout`          | 204 (the session's devices go)  | —                                      |
//! | `/forgot-password` | 202, same body for any email    | —                                      |
//! | `/reset-password`  | 204                             | 400 `invalid_reset_token`              |
//! | `/change-password` | 200 session (bearer token)      | 401 `unauthorized`, `invalid_credentials` |
//!
//! Missing required fields and values that break a rule answer 422 `validation_failed` with
//! per-field details; malformed JSON and wrong JSON types answer 400 `bad_request`.
//!
//! The OpenAPI description of these paths is [`AuthApi`] (full paths under `/api/auth`), to be
//! merged into the server's document: `ApiDoc::openapi().merge_from(auth::routes::openapi())`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::ids::{PartnershipId, UserId};
use tracing::Instrument as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use super::extractor::AuthUser;
use super::tokens::{TokenKeys, REFRESH_TOKEN_TTL, RESET_TOKEN_TTL};
use super::AuthError;
use crate::app::AppState;
use crate::error::{ApiJson, ErrorBody, FieldErrors};
use crate::metrics::LoginOutcome;
use crate::notify::mail::Mail;
use crate::ratelimit::{ClientIp, RateLimitError};
use crate::store::{
    NewPasswordReset, NewRefreshToken, NewUser, PartnershipStatus, RefreshTokenRecord, UserRecord,
};
use crate::validation::{
    AvatarUrl, CountryCode, CurrencyCode, Email, Income, Password, Payday, PersonName,
    PersonalAllowance, PASSWORD_MAX_CHARS,
};

/// The auth router, to be nested under `/api/auth`. Handlers read the caller's IP from
/// `ConnectInfo<SocketAddr>` (see [`crate::ratelimit`]).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/register", post(register))
        .route("/login", post(login))
        .route("/refresh", post(refresh))
        .route("/logout", post(logout))
        .route("/forgot-password", post(forgot_password))
        .route("/reset-password", post(reset_password))
        .route("/change-password", post(change_password))
}

/// The OpenAPI description of the auth endpoints (paths already under `/api/auth`) and the
/// `bearer` security scheme that protected endpoints refer to.
#[derive(OpenApi)]
#[openapi(
    paths(register, login, refresh, logout, forgot_password, reset_password, change_password),
    components(schemas(
        RegisterRequest,
        LoginRequest,
        RefreshRequest,
        ForgotPasswordRequest,
        ResetPasswordRequest,
        ChangePasswordRequest,
        AuthSession,
        TokenPair,
        UserView,
        MessageResponse,
        ErrorBody
    )),
    modifiers(&BearerScheme)
)]
pub struct AuthApi;

/// [`AuthApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AuthApi::openapi()
}

/// Adds the `bearer` (JWT access token) security scheme to the document.
struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".into());
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

// ---- request and response bodies ---------------------------------------------------------------

/// Body of `POST /api/auth/register`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Email address (at most 254 characters); stored lower-cased.
    #[schema(required = true, value_type = String, example = "ann@example.com")]
    pub email: Option<String>,
    /// 10 to 128 characters.
    #[schema(required = true, value_type = String, format = Password)]
    pub password: Option<String>,
    /// Display name, 1 to 100 characters.
    #[schema(required = true, value_type = String, example = "Ann")]
    pub name: Option<String>,
    /// ISO 4217 code, upper-case; default `USD`.
    #[schema(value_type = Option<String>, example = "USD")]
    pub currency: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    #[schema(value_type = Option<String>, example = "US")]
    pub country: Option<String>,
    /// Monthly income in `currency`: zero or more, at most the currency's decimals.
    #[schema(value_type = Option<String>, example = "4200.00")]
    pub income: Option<Decimal>,
    /// Day of the month the user is paid, `"1"`..`"31"`, or `"last"`.
    #[schema(value_type = Option<String>, example = "25")]
    pub payday: Option<String>,
    /// The `https://` URL of the user's picture: absolute, with a host, at most 2048
    /// characters, no user name or password, no whitespace, control or non-URL characters.
    #[schema(
        value_type = Option<String>,
        format = "uri",
        max_length = 2048,
        pattern = "^https://",
        example = "https://cdn.example.com/ann.png"
    )]
    pub avatar_url: Option<String>,
    /// Monthly personal allowance in `currency`: zero or more, at most the currency's decimals
    /// and ten integer digits.
    #[schema(value_type = Option<String>, example = "150.00")]
    pub personal_allowance: Option<Decimal>,
}

/// Body of `POST /api/auth/login`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The account's email (any case).
    #[schema(required = true, value_type = String)]
    pub email: Option<String>,
    /// The account's password.
    #[schema(required = true, value_type = String, format = Password)]
    pub password: Option<String>,
}

/// Body of `POST /api/auth/refresh` and `POST /api/auth/logout`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RefreshRequest {
    /// The refresh token from the last login or refresh.
    #[schema(required = true, value_type = String)]
    pub refresh_token: Option<String>,
}

/// Body of `POST /api/auth/forgot-password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ForgotPasswordRequest {
    /// The email of the account to reset.
    #[schema(required = true, value_type = String)]
    pub email: Option<String>,
}

/// Body of `POST /api/auth/reset-password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    /// The token from the reset mail.
    #[schema(required = true, value_type = String)]
    pub token: Option<String>,
    /// The new password, 10 to 128 characters.
    #[schema(required = true, value_type = String, format = Password)]
    pub new_password: Option<String>,
}

/// Body of `POST /api/auth/change-password`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    #[schema(required = true, value_type = String, format = Password)]
    pub current_password: Option<String>,
    /// The new password, 10 to 128 characters.
    #[schema(required = true, value_type = String, format = Password)]
    pub new_password: Option<String>,
}

/// A user as the auth endpoints show it (no password hash, no token version).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    /// The user's id.
    pub id: Uuid,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// ISO 4217 code of the user's currency.
    pub currency: String,
    /// ISO 3166-1 alpha-2 country.
    pub country: Option<String>,
    /// Monthly income in `currency`, as a decimal string.
    #[schema(value_type = Option<String>, example = "4200.00")]
    pub income: Option<Decimal>,
    /// Payday: `"1"`..`"31"` or `"last"`.
    pub payday: Option<String>,
    /// The `https://` URL of the user's picture (at most 2048 characters).
    #[schema(
        format = "uri",
        max_length = 2048,
        pattern = "^https://",
        example = "https://cdn.example.com/ann.png"
    )]
    pub avatar_url: Option<String>,
    /// Monthly personal allowance in `currency`, as a decimal string.
    #[schema(value_type = Option<String>, example = "150.00")]
    pub personal_allowance: Option<Decimal>,
    /// Registration time.
    pub created_at: DateTime<Utc>,
}

impl From<&UserRecord> for UserView {
    fn from(user: &UserRecord) -> Self {
        UserView {
            id: user.id,
            email: user.email.clone(),
            name: user.name.clone(),
            currency: user.currency.clone(),
            country: user.country.clone(),
            income: user.income.map(|i| Income::shown(i, &user.currency)),
            payday: user.payday.clone(),
            avatar_url: user.avatar_url.clone(),
            personal_allowance: user
                .personal_allowance
                .map(|a| Income::shown(a, &user.currency)),
            created_at: user.created_at,
        }
    }
}

/// A new access token and refresh token.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// JWT for `Authorization: Bearer`, valid for `expires_in` seconds.
    pub access_token: String,
    /// Opaque token for `/api/auth/refresh`, valid 30 days, usable once.
    pub refresh_token: String,
    /// Always `"Bearer"`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires (900).
    #[schema(example = 900)]
    pub expires_in: i64,
}

/// A signed-in session: tokens and the user.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AuthSession {
    /// JWT for `Authorization: Bearer`, valid for `expires_in` seconds.
    pub access_token: String,
    /// Opaque token for `/api/auth/refresh`, valid 30 days, usable once.
    pub refresh_token: String,
    /// Always `"Bearer"`.
    #[schema(example = "Bearer")]
    pub token_type: String,
    /// Seconds until the access token expires (900).
    #[schema(example = 900)]
    pub expires_in: i64,
    /// The signed-in user.
    pub user: UserView,
}

impl AuthSession {
    fn new(tokens: TokenPair, user: &UserRecord) -> Self {
        AuthSession {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_type: tokens.token_type,
            expires_in: tokens.expires_in,
            user: user.into(),
        }
    }
}

/// A human-readable acknowledgement.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    /// What happened, or will.
    pub message: String,
}

/// The one answer of forgot-password, whether or not the email is registered.
const FORGOT_PASSWORD_ANSWER: &str =
    "If an account exists for this email, a link to reset its password has been sent.";

// ---- handlers ----------------------------------------------------------------------------------

/// Creates an account and signs it in.
#[utoipa::path(
    post, path = "/api/auth/register", operation_id = "register_user", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Account created and signed in", body = AuthSession),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 409, description = "`email_taken`", body = ErrorBody),
        (status = 422, description = "`validation_failed`, per field", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<AuthSession>), AuthError> {
    let registration = Registration::parse(body)?;
    let password_hash = state.passwords.hash(&registration.password).await?;
    let user = state
        .store
        .create_user(NewUser {
            id: Uuid::now_v7(),
            email: registration.email.into_inner(),
            password_hash,
            name: registration.name.into_inner(),
            currency: registration.currency.as_str().to_string(),
            country: registration.country.map(|c| c.as_str().to_string()),
            income: registration.income.map(|i| i.amount()),
            payday: registration.payday.map(|p| p.to_string()),
            avatar_url: registration.avatar_url.map(AvatarUrl::into_inner),
            personal_allowance: registration.personal_allowance.map(|a| a.amount()),
        })
        .await?;
    tracing::info!(user_id = %user.id, "account registered");
    let tokens = start_session(&state, &user, Utc::now()).await?;
    Ok((StatusCode::CREATED, Json(AuthSession::new(tokens, &user))))
}

/// Signs in with email and password.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = AuthSession),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 401, description = "`invalid_credentials`: wrong email or password", body = ErrorBody),
        (status = 422, description = "`validation_failed`, per field", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many failures; see `Retry-After`", body = ErrorBody),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<AuthSession>, AuthError> {
    let (email, password) = parse_login(body)?;
    let attempt = state.limits.check_login_attempt(&email, ip).await;
    if matches!(attempt, Err(RateLimitError::Limited { .. })) {
        state.metrics.login(LoginOutcome::Limited);
    }
    attempt?;
    let user = state.store.user_by_email(email.as_str()).await?;
    let stored_hash = user.as_ref().map(|u| u.password_hash.as_str());
    let matches = state
        .passwords
        .verify_or_dummy(&password, stored_hash)
        .await?;
    let Some(user) = user.filter(|_| matches) else {
        state.metrics.login(LoginOutcome::Failed);
        return Err(AuthError::InvalidCredentials);
    };
    state.limits.record_login_success(&email, ip).await?;
    let tokens = start_session(&state, &user, Utc::now()).await?;
    state.metrics.login(LoginOutcome::Ok);
    Ok(Json(AuthSession::new(tokens, &user)))
}

/// Exchanges a refresh token for a new pair. The presented token is used up; presenting it again
/// revokes every token descended from the same login.
#[utoipa::path(
    post, path = "/api/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens", body = TokenPair),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 401, description = "`invalid_refresh_token`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: the token is missing", body = ErrorBody),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, AuthError> {
    let presented = required("refresh_token", body.refresh_token)?;
    let now = Utc::now();
    let record = usable_refresh_token(&state, &presented, now).await?;
    let user = state
        .store
        .user_by_id(record.user_id)
        .await?
        .ok_or(AuthError::InvalidRefreshToken)?;
    let next = state.tokens.generate_opaque();
    let rotated = state
        .store
        .rotate_refresh_token(
            record.id,
            NewRefreshToken {
                id: Uuid::now_v7(),
                user_id: user.id,
                family_id: record.family_id,
                token_hash: next.hash,
                expires_at: now + REFRESH_TOKEN_TTL,
            },
            now,
        )
        .await?;
    if !rotated {
        // Another request used the same token a moment ago: the same theft signal as a reuse.
        return Err(refuse_reuse(&state, &record, now).await);
    }
    let access = state.tokens.issue_session_token(
        user.id,
        current_partnership_id(&state, user.id).await?,
        user.token_version,
        record.family_id,
        now,
    )?;
    Ok(Json(TokenPair {
        access_token: access.token,
        refresh_token: next.token,
        token_type: "Bearer".into(),
        expires_in: access.expires_in,
    }))
}

/// Ends the session the refresh token belongs to, and removes the push devices registered in
/// it. Answers 204 whatever the token.
#[utoipa::path(
    post, path = "/api/auth/logout", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "Signed out, the session's devices removed (also 204 for an unknown token)"),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 422, description = "`validation_failed`: the token is missing", body = ErrorBody),
    )
)]
pub async fn logout(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<StatusCode, AuthError> {
    let presented = required("refresh_token", body.refresh_token)?;
    if TokenKeys::looks_like_opaque(&presented) {
        let hash = state.tokens.hash_opaque(&presented);
        if let Some(record) = state.store.refresh_token_by_hash(&hash).await? {
            // The whole family: the presented token and, if it was an older one of the same
            // login, its successors, so that signing out always ends the session.
            state
                .store
                .revoke_refresh_family(record.family_id, Utc::now())
                .await?;
            // A signed-out phone must not keep receiving the account's notifications.
            let removed = state
                .store
                .delete_session_devices(record.user_id, record.family_id)
                .await?;
            tracing::info!(user_id = %record.user_id, devices = removed, "signed out");
        }
    }
    Ok(StatusCode::NO_CONTENT)
}

/// Mails a password-reset link if the email belongs to an account. The answer (and its timing)
/// is the same either way: the lookup and the mail happen after the response.
#[utoipa::path(
    post, path = "/api/auth/forgot-password", tag = "auth",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted, whether or not the email is registered", body = MessageResponse),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 422, description = "`validation_failed`: missing or invalid email", body = ErrorBody),
        (status = 429, description = "`rate_limited`", body = ErrorBody),
    )
)]
pub async fn forgot_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> Result<(StatusCode, Json<MessageResponse>), AuthError> {
    let mut errors = FieldErrors::default();
    let email = errors.check(
        "email",
        required_str(body.email.as_deref()).and_then(Email::parse),
    );
    let email = email.ok_or(AuthError::Validation(errors))?;
    state.limits.check_forgot_password(&email, ip).await?;
    let background = state.clone();
    tokio::spawn(
        async move {
            if let Err(err) = send_reset_mail(&background, &email, Utc::now()).await {
                tracing::error!(error = %err, "password reset mail failed");
            }
        }
        .in_current_span(),
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: FORGOT_PASSWORD_ANSWER.into(),
        }),
    ))
}

/// Sets a new password with the token from the reset mail. Every session of the account ends:
/// outstanding access tokens stop working and refresh tokens are revoked.
#[utoipa::path(
    post, path = "/api/auth/reset-password", tag = "auth",
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "Password changed; sign in again"),
        (status = 400, description = "`invalid_reset_token`, or malformed JSON", body = ErrorBody),
        (status = 422, description = "`validation_failed`, per field", body = ErrorBody),
    )
)]
pub async fn reset_password(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode, AuthError> {
    let mut errors = FieldErrors::default();
    let token = errors.check(
        "token",
        required_str(body.token.as_deref()).map(str::to_string),
    );
    let password = errors.check(
        "new_password",
        required_str(body.new_password.as_deref()).and_then(Password::parse),
    );
    let (Some(token), Some(password)) = (token, password) else {
        return Err(AuthError::Validation(errors));
    };
    if !TokenKeys::looks_like_opaque(&token) {
        return Err(AuthError::InvalidResetToken);
    }
    let password_hash = state.passwords.hash(&password).await?;
    let user_id = state
        .store
        .complete_password_reset(
            &state.tokens.hash_opaque(&token),
            &password_hash,
            Utc::now(),
        )
        .await;
    state.auth_cache.forget_all();
    let user_id = user_id?.ok_or(AuthError::InvalidResetToken)?;
    revoke_sync_access(&state, user_id).await?;
    tracing::info!(%user_id, "password reset; every session ended");
    Ok(StatusCode::NO_CONTENT)
}

/// Changes the password of the signed-in user. Every other session ends; the answer carries a
/// new session for the caller.
#[utoipa::path(
    post, path = "/api/auth/change-password", tag = "auth",
    request_body = ChangePasswordRequest,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Password changed; a new session", body = AuthSession),
        (status = 400, description = "Malformed JSON or wrong types", body = ErrorBody),
        (status = 401, description = "`unauthorized` (token) or `invalid_credentials` (current password)", body = ErrorBody),
        (status = 422, description = "`validation_failed`, per field", body = ErrorBody),
        (status = 429, description = "`rate_limited`: too many wrong current passwords", body = ErrorBody),
    )
)]
pub async fn change_password(
    State(state): State<AppState>,
    caller: AuthUser,
    ClientIp(ip): ClientIp,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<Json<AuthSession>, AuthError> {
    let mut errors = FieldErrors::default();
    let current = errors.check(
        "current_password",
        required_str(body.current_password.as_deref()).map(str::to_string),
    );
    let new = errors.check(
        "new_password",
        required_str(body.new_password.as_deref()).and_then(Password::parse),
    );
    let (Some(current), Some(new)) = (current, new) else {
        return Err(AuthError::Validation(errors));
    };
    let user = state
        .store
        .user_by_id(caller.user_id)
        .await?
        .ok_or(AuthError::InvalidAccessToken)?;
    // A stolen access token must not become an unlimited password-guessing oracle.
    let email = Email::parse(&user.email).map_err(AuthError::Internal)?;
    state.limits.check_login_attempt(&email, ip).await?;
    if !state
        .passwords
        .verify(&current, &user.password_hash)
        .await?
    {
        return Err(AuthError::InvalidCredentials);
    }
    state.limits.record_login_success(&email, ip).await?;
    let password_hash = state.passwords.hash(&new).await?;
    let token_version = state.store.set_password(user.id, &password_hash).await;
    state.auth_cache.forget_all();
    let token_version = token_version?;
    revoke_sync_access(&state, user.id).await?;
    tracing::info!(user_id = %user.id, "password changed; other sessions ended");
    let user = UserRecord {
        password_hash,
        token_version,
        ..user
    };
    let tokens = start_session(&state, &user, Utc::now()).await?;
    Ok(Json(AuthSession::new(tokens, &user)))
}

// ---- the work behind the handlers --------------------------------------------------------------

/// After a password change or reset: the user's open sync connections (opened with tokens that
/// no longer count) end before the request is answered, and nothing they still send is applied.
async fn revoke_sync_access(state: &AppState, user: Uuid) -> Result<(), AuthError> {
    if let Some(p) = state.store.current_partnership(user).await? {
        state
            .sync
            .revoke(PartnershipId(p.id), Some(UserId(user)))
            .await;
    }
    Ok(())
}

/// Validated registration input.
struct Registration {
    email: Email,
    password: Password,
    name: PersonName,
    currency: CurrencyCode,
    country: Option<CountryCode>,
    income: Option<Income>,
    payday: Option<Payday>,
    avatar_url: Option<AvatarUrl>,
    personal_allowance: Option<PersonalAllowance>,
}

impl Registration {
    /// Checks every field and reports every problem at once.
    fn parse(body: RegisterRequest) -> Result<Registration, AuthError> {
        let mut errors = FieldErrors::default();
        let email = errors.check(
            "email",
            required_str(body.email.as_deref()).and_then(Email::parse),
        );
        let password = errors.check(
            "password",
            required_str(body.password.as_deref()).and_then(Password::parse),
        );
        let name = errors.check(
            "name",
            required_str(body.name.as_deref()).and_then(PersonName::parse),
        );
        let currency = errors.check(
            "currency",
            body.currency
                .as_deref()
                .map_or(CurrencyCode::parse("USD"), CurrencyCode::parse),
        );
        let country = body
            .country
            .as_deref()
            .and_then(|raw| errors.check("country", CountryCode::parse(raw)));
        // An income can only be checked against a known currency.
        let income = match (body.income, currency) {
            (Some(amount), Some(currency)) => {
                errors.check("income", Income::parse(amount, currency.currency()))
            }
            _ => None,
        };
        let payday = body
            .payday
            .as_deref()
            .and_then(|raw| errors.check("payday", Payday::parse(raw)));
        let avatar_url = body
            .avatar_url
            .as_deref()
            .and_then(|raw| errors.check("avatar_url", AvatarUrl::parse(raw)));
        // Like the income, an allowance can only be checked against a known currency.
        let personal_allowance = match (body.personal_allowance, currency) {
            (Some(amount), Some(currency)) => errors.check(
                "personal_allowance",
                PersonalAllowance::parse(amount, currency.currency()),
            ),
            _ => None,
        };
        match (email, password, name, currency) {
            (Some(email), Some(password), Some(name), Some(currency)) if errors.is_empty() => {
                Ok(Registration {
                    email,
                    password,
                    name,
                    currency,
                    country,
                    income,
                    payday,
                    avatar_url,
                    personal_allowance,
                })
            }
            _ => Err(AuthError::Validation(errors)),
        }
    }
}

/// Validated login input. The password is only checked for presence and the maximum length (a
/// longer one cannot be right, and need not be hashed).
fn parse_login(body: LoginRequest) -> Result<(Email, String), AuthError> {
    let mut errors = FieldErrors::default();
    let email = errors.check(
        "email",
        required_str(body.email.as_deref()).and_then(Email::parse),
    );
    let password = errors.check(
        "password",
        required_str(body.password.as_deref()).and_then(|p| {
            if p.chars().count() > PASSWORD_MAX_CHARS {
                Err(format!("must be at most {PASSWORD_MAX_CHARS} characters"))
            } else {
                Ok(p.to_string())
            }
        }),
    );
    match (email, password) {
        (Some(email), Some(password)) => Ok((email, password)),
        _ => Err(AuthError::Validation(errors)),
    }
}

/// `Err("is required")` for a missing or empty field.
fn required_str(value: Option<&str>) -> Result<&str, String> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err("is required".into()),
    }
}

/// A required string field, as a validation error naming `field` when missing.
fn required(field: &str, value: Option<String>) -> Result<String, AuthError> {
    match value {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(AuthError::Validation(
            FieldErrors::default().add(field, "is required"),
        )),
    }
}

/// The partnership to name in a new access token: the active or paused one (an invitation that
/// is still pending is not a partnership yet).
async fn current_partnership_id(
    state: &AppState,
    user_id: Uuid,
) -> Result<Option<Uuid>, AuthError> {
    Ok(state
        .store
        .current_partnership(user_id)
        .await?
        .filter(|p| p.status != PartnershipStatus::Pending)
        .map(|p| p.id))
}

/// Issues an access token and the first refresh token of a new family (a login).
async fn start_session(
    state: &AppState,
    user: &UserRecord,
    now: DateTime<Utc>,
) -> Result<TokenPair, AuthError> {
    let pid = current_partnership_id(state, user.id).await?;
    // The refresh-token family is the session: the access tokens of this login name it.
    let family_id = Uuid::new_v4();
    let access =
        state
            .tokens
            .issue_session_token(user.id, pid, user.token_version, family_id, now)?;
    let refresh = state.tokens.generate_opaque();
    state
        .store
        .insert_refresh_token(NewRefreshToken {
            id: Uuid::now_v7(),
            user_id: user.id,
            family_id,
            token_hash: refresh.hash,
            expires_at: now + REFRESH_TOKEN_TTL,
        })
        .await?;
    Ok(TokenPair {
        access_token: access.token,
        refresh_token: refresh.token,
        token_type: "Bearer".into(),
        expires_in: access.expires_in,
    })
}

/// The stored refresh token for `presented` if it may be used now. A token that was already
/// used means it was copied: its family is revoked, which also ends the legitimate holder's
/// session, who must sign in again.
async fn usable_refresh_token(
    state: &AppState,
    presented: &str,
    now: DateTime<Utc>,
) -> Result<RefreshTokenRecord, AuthError> {
    if !TokenKeys::looks_like_opaque(presented) {
        return Err(AuthError::InvalidRefreshToken);
    }
    let record = state
        .store
        .refresh_token_by_hash(&state.tokens.hash_opaque(presented))
        .await?
        .ok_or(AuthError::InvalidRefreshToken)?;
    if record.revoked_at.is_some() || record.expires_at <= now {
        return Err(AuthError::InvalidRefreshToken);
    }
    if record.used_at.is_some() {
        return Err(refuse_reuse(state, &record, now).await);
    }
    Ok(record)
}

/// Revokes the family of a reused refresh token and returns the error to answer with.
async fn refuse_reuse(
    state: &AppState,
    record: &RefreshTokenRecord,
    now: DateTime<Utc>,
) -> AuthError {
    tracing::warn!(
        user_id = %record.user_id,
        family_id = %record.family_id,
        "refresh token reused: revoking its family"
    );
    state.metrics.refresh_reuse();
    match state
        .store
        .revoke_refresh_family(record.family_id, now)
        .await
    {
        Ok(()) => AuthError::InvalidRefreshToken,
        Err(err) => err.into(),
    }
}

/// For a registered email: stores a new single-use reset token (hashed, 30 minutes) and mails
/// it. Nothing happens for an unknown email.
async fn send_reset_mail(
    state: &AppState,
    email: &Email,
    now: DateTime<Utc>,
) -> Result<(), AuthError> {
    let Some(user) = state.store.user_by_email(email.as_str()).await? else {
        return Ok(());
    };
    let token = state.tokens.generate_opaque();
    state
        .store
        .insert_password_reset(NewPasswordReset {
            id: Uuid::now_v7(),
            user_id: user.id,
            token_hash: token.hash,
            expires_at: now + RESET_TOKEN_TTL,
        })
        .await?;
    let link = format!(
        "{}/reset-password?token={}",
        state.config.public_url.trim_end_matches('/'),
        token.token
    );
    let body = format!(
        "Hello {name},\n\n\
         Someone (hopefully you) asked to reset the password of your SplitSave account.\n\
         Open this link within 30 minutes to choose a new password:\n\n\
         {link}\n\n\
         Or enter this code in the app: {code}\n\n\
         If you did not ask for this, ignore this mail: your password stays as it is.\n",
        name = user.name,
        code = token.token,
    );
    state
        .mailer
        .send(Mail {
            to: user.email.clone(),
            subject: "Reset your SplitSave password".into(),
            body,
        })
        .await
        .map_err(|e| AuthError::Internal(e.to_string()))?;
    tracing::info!(user_id = %user.id, "password reset mail sent");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registration(body: serde_json::Value) -> Result<Registration, FieldErrors> {
        let body: RegisterRequest = serde_json::from_value(body).expect("request shape");
        Registration::parse(body).map_err(|e| match e {
            AuthError::Validation(fields) => fields,
            other => panic!("unexpected error {other:?}"),
        })
    }

    fn fields(errors: &FieldErrors) -> Vec<&str> {
        errors.0.keys().map(String::as_str).collect()
    }

    #[test]
    fn a_minimal_registration_defaults_to_usd() {
        let parsed = registration(serde_json::json!({
            "email": " Ann@Example.com", "password": "correct horse", "name": "Ann"
        }))
        .map_err(|e| format!("{e:?}"))
        .expect("valid");
        assert_eq!(parsed.email.as_str(), "ann@example.com");
        assert_eq!(parsed.currency.as_str(), "USD");
        assert!(parsed.country.is_none() && parsed.income.is_none() && parsed.payday.is_none());
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let errors = registration(serde_json::json!({
            "email": "not-an-email", "password": "short", "name": "",
            "currency": "usd", "country": "XX", "payday": "32"
        }))
        .err()
        .expect("invalid");
        assert_eq!(
            fields(&errors),
            vec!["country", "currency", "email", "name", "password", "payday"]
        );
    }

    #[test]
    fn missing_required_fields_are_named() {
        let errors = registration(serde_json::json!({})).err().expect("invalid");
        assert_eq!(fields(&errors), vec!["email", "name", "password"]);
        assert_eq!(errors.0["email"], vec!["is required".to_string()]);
    }

    #[test]
    fn income_is_checked_against_the_chosen_currency() {
        let errors = registration(serde_json::json!({
            "email": "ann@example.com", "password": "correct horse", "name": "Ann",
            "currency": "JPY", "income": "1000.5"
        }))
        .err()
        .expect("invalid");
        assert_eq!(fields(&errors), vec!["income"]);
        let negative = registration(serde_json::json!({
            "email": "ann@example.com", "password": "correct horse", "name": "Ann",
            "income": "-1"
        }))
        .err()
        .expect("invalid");
        assert_eq!(fields(&negative), vec!["income"]);
    }

    #[test]
    fn the_openapi_document_lists_every_auth_path() {
        let doc = openapi();
        for path in [
            "/api/auth/register",
            "/api/auth/login",
            "/api/auth/refresh",
            "/api/auth/logout",
            "/api/auth/forgot-password",
            "/api/auth/reset-password",
            "/api/auth/change-password",
        ] {
            assert!(doc.paths.paths.contains_key(path), "{path} missing");
        }
        let json = serde_json::to_value(&doc).expect("json");
        assert_eq!(
            json["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
