//! `/api/users/*`: the caller's own profile, income, notification preferences and account.
//!
//! **The profile** holds, besides the name and money settings, an optional picture
//! (`avatar_url`, an `https://` URL the apps load; see [`AvatarUrl`]) and an optional
//! `personal_allowance` (the monthly amount the user keeps for themselves, in their currency,
//! under the income's rule; see [`PersonalAllowance`]). The partner sees the name and the picture
//! (`/api/partnerships/*`), never the allowance: like the income and the payday, it is the user's
//! own budgeting.
//!
//! **Notification preferences** (`GET`/`PUT /api/users/notifications`): which kinds of push
//! notification the user wants (all until they choose), and whether amounts and names may
//! appear on the lock screen (`show_details`; off, a notification says only who did what and
//! carries ids).
//!
//! **Deleting an account** (`DELETE /api/users/account`, password required) deletes the user's
//! personal data (profile, sessions, reset tokens, push devices, notification preferences and
//! the notifications waiting for them, actor bindings) and **ends their partnership**: the partnership, its document and every materialized row derived from it are
//! deleted, because shared data of a couple cannot be kept without one of its two members. The
//! former partner keeps their account and may invite or be invited again. Pending invitations the
//! user sent are deleted too; invitations other people sent to the user's email stay (they are
//! the inviters' data) and can be accepted by whoever registers that email later.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::routing::{delete, get, put};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use splitsave_sync_core::ids::PartnershipId;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiJson, FieldErrors};
use crate::routes::shared::load_user;
use crate::store::{NotificationKind, NotificationPreferences, ProfileUpdate, UserRecord};
use crate::validation::{
    AvatarUrl, CountryCode, CurrencyCode, Email, Income, Payday, PersonName, PersonalAllowance,
};

/// The `/api/users` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/users/profile", get(get_profile).put(update_profile))
        .route("/api/users/update-income", put(update_income))
        .route("/api/users/account", delete(delete_account))
        .route(
            "/api/users/notifications",
            get(get_notifications).put(update_notifications),
        )
}

/// A user's own profile as the API shows it (never the password hash).
#[derive(Debug, Serialize, ToSchema)]
pub struct Profile {
    /// The user's id.
    pub id: Uuid,
    /// Lower-cased email.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Monthly income as a decimal string in `currency`, e.g. `"4200.50"`.
    #[schema(value_type = Option<String>, example = "4200.50")]
    pub income: Option<Decimal>,
    /// ISO 4217 currency code.
    #[schema(example = "USD")]
    pub currency: String,
    /// ISO 3166-1 alpha-2 country code.
    #[schema(example = "US")]
    pub country: Option<String>,
    /// Payday: day of the month `"1"`..`"31"` (the last day in shorter months) or `"last"`.
    #[schema(example = "25")]
    pub payday: Option<String>,
    /// The `https://` URL of the user's picture (at most 2048 characters).
    #[schema(
        format = "uri",
        max_length = 2048,
        pattern = "^https://",
        example = "https://cdn.example.com/ann.png"
    )]
    pub avatar_url: Option<String>,
    /// Monthly personal allowance as a decimal string in `currency`, e.g. `"150.00"`.
    #[schema(value_type = Option<String>, example = "150.00")]
    pub personal_allowance: Option<Decimal>,
    /// Registration time (RFC 3339).
    pub created_at: DateTime<Utc>,
    /// Last profile change (RFC 3339).
    pub updated_at: DateTime<Utc>,
}

impl From<UserRecord> for Profile {
    fn from(u: UserRecord) -> Self {
        let personal_allowance = u.personal_allowance.map(|a| Income::shown(a, &u.currency));
        Profile {
            id: u.id,
            email: u.email,
            name: u.name,
            income: u.income.map(|i| Income::shown(i, &u.currency)),
            currency: u.currency,
            country: u.country,
            payday: u.payday,
            avatar_url: u.avatar_url,
            personal_allowance,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

/// Distinguishes an absent field (`None`: leave unchanged) from `null` (`Some(None)`: clear).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A profile change: absent fields stay as they are; `country`, `payday`, `avatar_url` and
/// `personal_allowance` may be `null` to clear them. The email cannot be changed here, nor the
/// income (`PUT /api/users/update-income`).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct UpdateProfileRequest {
    /// 1–100 characters after trimming.
    pub name: Option<String>,
    /// ISO 4217 code, upper-case; the income and the personal allowance must fit its decimals.
    pub currency: Option<String>,
    /// ISO 3166-1 alpha-2 code, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub country: Option<Option<String>>,
    /// `"1"`..`"31"` or `"last"`, or `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub payday: Option<Option<String>>,
    /// An absolute `https://` URL with a host, at most 2048 characters: no other scheme, no
    /// user name or password, no whitespace, control or non-URL characters (percent-encode
    /// them). `null` removes the picture.
    #[serde(default, deserialize_with = "present")]
    #[schema(
        value_type = Option<String>,
        format = "uri",
        max_length = 2048,
        pattern = "^https://",
        example = "https://cdn.example.com/ann.png"
    )]
    pub avatar_url: Option<Option<String>>,
    /// A decimal string (or JSON number) ≥ 0 in the currency (the new one when `currency` is in
    /// the same request), with at most its decimals and ten integer digits; `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, example = "150.00")]
    pub personal_allowance: Option<Option<Decimal>>,
}

/// A new monthly income.
#[derive(Debug, Deserialize, ToSchema)]
pub struct UpdateIncomeRequest {
    /// Required: a decimal string (or JSON number) ≥ 0 with at most the currency's decimals, or
    /// `null` to clear.
    #[serde(default, deserialize_with = "present")]
    #[schema(required = true, value_type = Option<String>, example = "4200.50")]
    pub income: Option<Option<Decimal>>,
}

/// Confirmation for deleting the account.
#[derive(Deserialize, ToSchema)]
pub struct DeleteAccountRequest {
    /// The account's current password.
    #[schema(required = true, value_type = String, format = Password)]
    pub password: Option<String>,
}

impl std::fmt::Debug for DeleteAccountRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DeleteAccountRequest(<password>)")
    }
}
/// The caller's profile.
#[utoipa::path(get, path = "/api/users/profile", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The profile", body = Profile),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
    ))]
pub async fn get_profile(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<Profile>, ApiError> {
    Ok(Json(load_user(&state, &user).await?.into()))
}

/// Changes name, currency, country, payday, avatar URL or personal allowance. The name (and the
/// income, whose currency may now match the partnership's) is written into the partnership
/// document's `members`. Every field is checked before anything is written: one invalid field
/// changes nothing.
#[utoipa::path(put, path = "/api/users/profile", tag = "users", security(("bearer" = [])),
    request_body = UpdateProfileRequest,
    responses(
        (status = 200, description = "The updated profile", body = Profile),
        (status = 400, description = "Malformed JSON or wrong types", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 422, description = "Invalid fields", body = crate::error::ErrorBody),
    ))]
pub async fn update_profile(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<UpdateProfileRequest>,
) -> Result<Json<Profile>, ApiError> {
    let current = load_user(&state, &user).await?;
    let mut errors = FieldErrors::default();
    let name = body
        .name
        .as_deref()
        .and_then(|n| errors.check("name", PersonName::parse(n)))
        .map(PersonName::into_inner);
    let currency = body
        .currency
        .as_deref()
        .and_then(|c| errors.check("currency", CurrencyCode::parse(c)));
    let country = body.country.map(|c| {
        c.as_deref()
            .and_then(|c| errors.check("country", CountryCode::parse(c)))
            .map(|c| c.as_str().to_string())
    });
    let payday = body.payday.map(|p| {
        p.as_deref()
            .and_then(|p| errors.check("payday", Payday::parse(p)))
            .map(|p| p.to_string())
    });
    let avatar_url = body.avatar_url.map(|a| {
        a.as_deref()
            .and_then(|a| errors.check("avatar_url", AvatarUrl::parse(a)))
            .map(AvatarUrl::into_inner)
    });
    // The allowance is in the currency the profile will have: the new one when this request
    // changes it. An invalid new currency is reported as such, and the allowance cannot be
    // checked against it (nothing is written either way).
    let allowance_currency = match (&body.currency, currency) {
        (None, _) => Some(CurrencyCode::parse(&current.currency).map_err(ApiError::internal)?),
        (Some(_), new) => new,
    };
    let personal_allowance = body.personal_allowance.map(|a| {
        a.zip(allowance_currency)
            .and_then(|(amount, currency)| {
                errors.check(
                    "personal_allowance",
                    PersonalAllowance::parse(amount, currency.currency()),
                )
            })
            .map(|a| a.amount())
    });
    if let Some(currency) = currency {
        if let Some(income) = current.income {
            if Income::parse(income, currency.currency()).is_err() {
                errors.push(
                    "currency",
                    "the current income has more decimals than this currency allows",
                );
            }
        }
        // A stored allowance that this request does not replace must fit the new currency, as
        // the income must: otherwise the profile would hold an amount its currency cannot.
        if let (None, Some(allowance)) = (&body.personal_allowance, current.personal_allowance) {
            if PersonalAllowance::parse(allowance, currency.currency()).is_err() {
                errors.push(
                    "currency",
                    "the current personal allowance has more decimals than this currency allows",
                );
            }
        }
    }
    errors.into_result()?;
    let update = ProfileUpdate {
        name,
        currency: currency.map(|c| c.as_str().to_string()),
        country,
        payday,
        avatar_url,
        personal_allowance,
    };
    let updated = state.store.update_profile(user.user_id, update).await?;
    crate::routes::server_doc::sync_member(&state, &updated).await?;
    Ok(Json(updated.into()))
}

/// Sets the monthly income (in the user's currency), and writes it into the partnership
/// document's `members` (the split's incomes) when it is in the partnership currency.
#[utoipa::path(put, path = "/api/users/update-income", tag = "users", security(("bearer" = [])),
    request_body = UpdateIncomeRequest,
    responses(
        (status = 200, description = "The updated profile", body = Profile),
        (status = 400, description = "Malformed JSON or wrong types", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 422, description = "Negative, too large, or too many decimals", body = crate::error::ErrorBody),
    ))]
pub async fn update_income(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<UpdateIncomeRequest>,
) -> Result<Json<Profile>, ApiError> {
    let current = load_user(&state, &user).await?;
    let currency = CurrencyCode::parse(&current.currency).map_err(ApiError::internal)?;
    let income = match body.income {
        None => {
            return Err(ApiError::Validation(
                FieldErrors::default().add("income", "is required"),
            ))
        }
        Some(None) => None,
        Some(Some(amount)) => Some(
            Income::parse(amount, currency.currency())
                .map_err(|m| ApiError::Validation(FieldErrors::default().add("income", m)))?
                .amount(),
        ),
    };
    let updated = state.store.update_income(user.user_id, income).await?;
    crate::routes::server_doc::sync_member(&state, &updated).await?;
    Ok(Json(updated.into()))
}

/// Deletes the caller's account after checking the password: personal data goes, and so does
/// the partnership with its document (see the module documentation). Attempts count towards
/// the same per-account limit as logins.
#[utoipa::path(delete, path = "/api/users/account", tag = "users", security(("bearer" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 204, description = "Account, personal data and partnership deleted"),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 403, description = "Wrong password", body = crate::error::ErrorBody),
        (status = 429, description = "Too many wrong passwords", body = crate::error::ErrorBody),
    ))]
pub async fn delete_account(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    user: AuthUser,
    ApiJson(body): ApiJson<DeleteAccountRequest>,
) -> Result<StatusCode, ApiError> {
    let Some(password) = body.password.filter(|p| !p.is_empty()) else {
        return Err(ApiError::Validation(
            FieldErrors::default().add("password", "is required"),
        ));
    };
    let current = load_user(&state, &user).await?;
    let email = Email::parse(&current.email).map_err(ApiError::internal)?;
    state.limits.check_login_attempt(&email, peer.ip()).await?;
    if !state
        .passwords
        .verify(&password, &current.password_hash)
        .await?
    {
        return Err(ApiError::Forbidden("the password is not correct"));
    }
    state.limits.record_login_success(&email, peer.ip()).await?;
    let partnership = state.store.current_partnership(user.user_id).await?;
    let deleted = state.store.delete_user(user.user_id).await;
    state.auth_cache.forget_all();
    deleted?;
    // The partnership ended with the account: both partners' open sync connections end now,
    // and nothing they still send is applied.
    if let Some(p) = partnership {
        state.sync.revoke(PartnershipId(p.id), None).await;
    }
    tracing::info!(user_id = %user.user_id, "account deleted");
    Ok(StatusCode::NO_CONTENT)
}

/// A user's notification preferences as the API shows them.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "kinds": {
        "approval_requested": true, "approval_answered": true, "message": false,
        "invitation": true, "contributions_opened": true, "partner_paid": true,
        "goal_reached": true
    },
    "show_details": false
}))]
pub struct NotificationSettings {
    /// Every kind of notification, and whether the user wants it.
    pub kinds: BTreeMap<&'static str, bool>,
    /// Whether amounts and names may appear on the lock screen.
    pub show_details: bool,
}

impl From<NotificationPreferences> for NotificationSettings {
    fn from(p: NotificationPreferences) -> Self {
        NotificationSettings {
            kinds: NotificationKind::ALL
                .into_iter()
                .map(|k| (k.as_str(), p.wants(k)))
                .collect(),
            show_details: p.show_details,
        }
    }
}

/// A change of notification preferences: kinds not named, and `show_details` when absent, stay
/// as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"kinds": {"message": false}, "show_details": false}))]
pub struct UpdateNotificationSettings {
    /// Kinds to turn on (`true`) or off (`false`): `approval_requested`, `approval_answered`,
    /// `message`, `invitation`, `contributions_opened`, `partner_paid`, `goal_reached`.
    pub kinds: Option<BTreeMap<String, bool>>,
    /// Whether amounts and names may appear on the lock screen.
    pub show_details: Option<bool>,
}

/// The caller's notification preferences.
#[utoipa::path(get, path = "/api/users/notifications", tag = "users", security(("bearer" = [])),
    responses(
        (status = 200, description = "The preferences", body = NotificationSettings),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
    ))]
pub async fn get_notifications(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<NotificationSettings>, ApiError> {
    let preferences = state.store.notification_preferences(user.user_id).await?;
    Ok(Json(preferences.into()))
}

/// Turns kinds of notification on or off, and details on the lock screen.
#[utoipa::path(put, path = "/api/users/notifications", tag = "users", security(("bearer" = [])),
    request_body = UpdateNotificationSettings,
    responses(
        (status = 200, description = "The updated preferences", body = NotificationSettings),
        (status = 400, description = "Malformed JSON or wrong types", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 422, description = "An unknown kind, named as `kinds.<name>`", body = crate::error::ErrorBody),
    ))]
pub async fn update_notifications(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<UpdateNotificationSettings>,
) -> Result<Json<NotificationSettings>, ApiError> {
    let mut preferences = state.store.notification_preferences(user.user_id).await?;
    apply_notification_settings(&mut preferences, body)?;
    state
        .store
        .set_notification_preferences(user.user_id, &preferences, Utc::now())
        .await?;
    Ok(Json(preferences.into()))
}

/// Applies a change to the preferences; every unknown kind is a validation error (and nothing
/// changes).
fn apply_notification_settings(
    preferences: &mut NotificationPreferences,
    change: UpdateNotificationSettings,
) -> Result<(), ApiError> {
    let mut errors = FieldErrors::default();
    for (name, wanted) in change.kinds.unwrap_or_default() {
        match NotificationKind::parse(&name) {
            Some(kind) if wanted => {
                preferences.disabled.remove(&kind);
            }
            Some(kind) => {
                preferences.disabled.insert(kind);
            }
            None => errors.push(format!("kinds.{name}"), "is not a notification kind"),
        }
    }
    errors.into_result()?;
    if let Some(show_details) = change.show_details {
        preferences.show_details = show_details;
    }
    Ok(())
}
