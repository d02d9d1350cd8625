//! `/api/contributions/*`: what each partner pays in every month.
//!
//! A month lives in the document (`contributions["YYYY-MM"]`, server-written amounts, each
//! partner's own paid mark) and is read back from the materialized `contributions` tables.
//! - Months are calendar months in UTC.
//! - `GET /current` creates this month on first read from the current split and writes it into
//!   the document, so synced apps get it too. Until a partner marks their share paid, the
//!   month's amounts follow the split (a new or archived expense changes them); from the first
//!   paid mark on, the month is fixed.
//! - `POST /mark-paid` marks the caller's own share of this month paid (creating the month
//!   first if needed). Marking again changes nothing and answers the first paid time.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::materialize::ContributionRow;
use splitsave_sync_core::ops;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::split_doc;
use splitsave_sync_core::time::Millis;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiQuery};
use crate::routes::server_doc;
use crate::routes::shared::{self, partnership_of, rfc3339, PageParams, Paged};
use crate::store::PartnershipRecord;

/// The `/api/contributions` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/contributions", get(history))
        .route("/api/contributions/current", get(current))
        .route("/api/contributions/mark-paid", post(mark_paid))
}

/// One partner's part of a month.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ShareView {
    /// The partner.
    pub user_id: Uuid,
    /// Their amount, a decimal string.
    #[schema(value_type = String, example = "33.33")]
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub amount: Decimal,
    /// Whether they marked it paid.
    pub paid: bool,
    /// When they marked it paid (RFC 3339), null until then.
    pub paid_at: Option<String>,
}

/// A month's contribution (also as `POST /api/import` reads it from an export).
// Deserialize: `POST /api/import` reads the views back from an export; decimals only from
// their strings (`rust_decimal::serde::str`), never through a float.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "month": "2026-11", "currency": "USD", "total_required": "100.00",
    "shares": [
        {"user_id": "01936f5e-0000-7000-8000-000000000001", "amount": "33.33", "paid": true,
         "paid_at": "2026-11-25T10:00:00.000Z"},
        {"user_id": "01936f5e-0000-7000-8000-000000000002", "amount": "66.67", "paid": false,
         "paid_at": null}]}))]
pub struct MonthView {
    /// `YYYY-MM`.
    pub month: String,
    /// ISO 4217 code of the amounts.
    pub currency: String,
    /// The month's total (the split's monthly total).
    #[schema(value_type = String, example = "100.00")]
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub total_required: Decimal,
    /// Each partner's share, ordered by user id; the amounts add up to `total_required`.
    pub shares: Vec<ShareView>,
}

impl MonthView {
    /// The month as the API shows it (also in the data export).
    pub(crate) fn of(row: ContributionRow, currency: &str) -> Self {
        MonthView {
            month: row.month,
            currency: currency.to_string(),
            total_required: row.total_required,
            shares: row
                .shares
                .into_iter()
                .map(|s| ShareView {
                    user_id: s.user_id.0,
                    amount: s.amount,
                    paid: s.paid_at.is_some(),
                    paid_at: s.paid_at.map(rfc3339),
                })
                .collect(),
        }
    }
}

fn this_month() -> Month {
    Month::from_unix_millis(Millis::now().0)
}

async fn load_month(
    state: &AppState,
    p: &PartnershipRecord,
    month: Month,
) -> Result<MonthView, ApiError> {
    state
        .store
        .contribution(p.id, &month.to_string())
        .await?
        .map(|row| MonthView::of(row, &p.currency))
        .ok_or_else(|| ApiError::internal(format!("month {month} missing after it was written")))
}

/// The couple's months, latest first.
#[utoipa::path(get, path = "/api/contributions", operation_id = "list_contributions", tag = "contributions", security(("bearer" = [])),
    params(PageParams),
    responses(
        (status = 200, description = "A page of months `{items, next_cursor}`", body = Paged<MonthView>),
        (status = 400, description = "`bad_request`: a parameter of the wrong type", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 422, description = "`limit` outside 1–100 or a bad `cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<PageParams>,
) -> Result<Json<Paged<MonthView>>, ApiError> {
    let page = q.page()?;
    let p = partnership_of(&state, &user).await?;
    let mut rows = state
        .store
        .list_contributions(p.id, page.limit + 1, page.offset)
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    Ok(Json(Paged {
        items: rows
            .into_iter()
            .map(|r| MonthView::of(r, &p.currency))
            .collect(),
        next_cursor: page.next_cursor(more),
    }))
}

/// This month (UTC): the total required and each partner's amount and paid state; created from
/// the current split on first read.
#[utoipa::path(get, path = "/api/contributions/current", operation_id = "current_contribution", tag = "contributions", security(("bearer" = [])),
    responses(
        (status = 200, description = "This month", body = MonthView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
    ))]
pub async fn current(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<MonthView>, ApiError> {
    let p = partnership_of(&state, &user).await?;
    let month = this_month();
    server_doc::run(&state, p.id, user.user_id, move |tx| {
        split_doc::server_ensure_month(tx, month)
    })
    .await?;
    Ok(Json(load_month(&state, &p, month).await?))
}

/// Marks the caller's own share of this month paid. Idempotent: marking again keeps (and
/// answers) the first paid time.
#[utoipa::path(post, path = "/api/contributions/mark-paid", operation_id = "mark_contribution_paid", tag = "contributions", security(("bearer" = [])),
    responses(
        (status = 200, description = "This month, with the caller's share paid", body = MonthView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_paused`", body = crate::error::ErrorBody),
    ))]
pub async fn mark_paid(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<MonthView>, ApiError> {
    let p = partnership_of(&state, &user).await?;
    let month = this_month();
    shared::apply(&state, &user, move |tx, ctx| {
        split_doc::server_ensure_month(tx, month)?;
        ops::mark_paid(tx, ctx, month)?;
        Ok(())
    })
    .await?;
    Ok(Json(load_month(&state, &p, month).await?))
}
