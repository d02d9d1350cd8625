//! `/api/expenses/*`: the couple's shared expenses and the split.
//!
//! Reads come from the materialized `expenses` table, scoped by the caller's partnership (an id
//! of another couple is 404). Writes run the sync-core operations as the caller through the
//! partnership's document actor (`shared::apply`), so they obey the same policy as synced
//! apps and reach them at once:
//! - `POST` adds an expense: `201` with it when at or under the approval threshold, otherwise
//!   `202` with the `expense_add` approval request (the expense exists as `pending_approval`);
//! - `PUT /{id}` proposes an edit: always `202` with an `expense_edit` request; the values
//!   change only when the partner approves;
//! - `DELETE /{id}` archives (no approval needed): `200` with the archived expense; archiving
//!   an archived expense is a no-op that answers the same;
//! - `GET /split-calculation` computes the split (`split::calculate`) from the document: its
//!   active expenses and its members' incomes (server-owned copies of the users' incomes in the
//!   partnership currency, kept in step by `PUT /api/users/update-income`).

use std::str::FromStr;

use automerge::transaction::Transaction;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use splitsave_sync_core::enums::{Category, Frequency, ItemStatus};
use splitsave_sync_core::ids::{EntityId, PartnershipId};
use splitsave_sync_core::materialize::{self, request_data_json, ExpenseRow, Row, RowChange};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, NewExpense, Outcome};
use splitsave_sync_core::read;
use splitsave_sync_core::schema::Collection;
use splitsave_sync_core::schema::{Approval, ExpenseFields};
use splitsave_sync_core::split::SplitBasis;
use splitsave_sync_core::split_doc;
use splitsave_sync_core::touched::Touched;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, FieldErrors};
use crate::routes::shared::{
    self, currency_of, partnership_of, required, rfc3339, PageParams, Paged,
};
use crate::store::PartnershipRecord;

/// The `/api/expenses` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/expenses", get(list).post(create))
        .route("/api/expenses/split-calculation", get(split_calculation))
        .route(
            "/api/expenses/{id}",
            get(get_one).put(update).delete(archive),
        )
}

// ---- input ----------------------------------------------------------------------------------

/// An amount as the API accepts it: a decimal string (`"12.50"`) or a JSON number (`12.5`) read
/// from its text, never through a float. Any other JSON type is a malformed body (400); text
/// that is not a plain decimal is an invalid field (422).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AmountInput {
    /// A decimal as written.
    Decimal(Decimal),
    /// A string that is not a decimal.
    NotADecimal,
}

impl AmountInput {
    /// A decimal as written in a string: digits, an optional sign and fraction, nothing else
    /// (no exponent, no `_`).
    pub(crate) fn parse_text(text: &str) -> AmountInput {
        let plain = text.strip_prefix('-').unwrap_or(text);
        let (int, frac) = plain.split_once('.').unwrap_or((plain, "0"));
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        let parsed = if digits(int) && digits(frac) {
            Decimal::from_str(text).ok()
        } else {
            // JSON numbers may have an exponent (`1e2`); strings may not.
            None
        };
        parsed.map_or(AmountInput::NotADecimal, AmountInput::Decimal)
    }

    /// Checks the amount against the partnership currency: positive, at most its decimals,
    /// under 10^10 major units. Pushes the field's error and returns `None` when invalid.
    pub fn minor(
        &self,
        field: &str,
        currency: Currency,
        errors: &mut FieldErrors,
    ) -> Option<MinorUnits> {
        match self {
            AmountInput::NotADecimal => {
                errors.push(field, "must be a decimal amount such as \"12.50\"");
                None
            }
            AmountInput::Decimal(d) => match currency.to_minor_positive(*d) {
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push(field, e.to_string());
                    None
                }
            },
        }
    }
}

impl<'de> Deserialize<'de> for AmountInput {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw = Box::<RawValue>::deserialize(d)?;
        let text = raw.get();
        if text.starts_with('"') {
            let s: String = serde_json::from_str(text).map_err(D::Error::custom)?;
            Ok(AmountInput::parse_text(&s))
        } else if text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
            let exact = if text.contains(['e', 'E']) {
                Decimal::from_scientific(text).ok()
            } else {
                Decimal::from_str(text).ok()
            };
            Ok(exact.map_or(AmountInput::NotADecimal, AmountInput::Decimal))
        } else {
            Err(D::Error::custom(
                "an amount must be a decimal string or a number",
            ))
        }
    }
}

/// A new expense. Every field is required.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(example = json!({"name": "Rent", "amount": "1200.00", "category": "housing", "frequency": "monthly"}))]
pub struct CreateExpenseRequest {
    /// 1–200 characters after trimming, no control characters.
    #[schema(required = true, value_type = String, example = "Rent")]
    pub name: Option<String>,
    /// Positive, at most the currency's decimals: a decimal string, or a JSON number.
    #[schema(required = true, value_type = String, example = "1200.00")]
    pub amount: Option<AmountInput>,
    /// One of `housing`, `utilities`, `groceries`, `transport`, `insurance`, `health`,
    /// `childcare`, `subscriptions`, `dining`, `entertainment`, `debt`, `pets`, `other`.
    #[schema(required = true, value_type = String, example = "housing")]
    pub category: Option<String>,
    /// `weekly`, `monthly` or `yearly`.
    #[schema(required = true, value_type = String, example = "monthly")]
    pub frequency: Option<String>,
}

/// A proposed edit: any of the fields, at least one different from the current value, and an
/// optional note for the partner.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[schema(example = json!({"amount": "1250.00", "message": "The rent went up"}))]
pub struct UpdateExpenseRequest {
    /// 1–200 characters.
    #[schema(value_type = Option<String>)]
    pub name: Option<String>,
    /// Positive amount.
    #[schema(value_type = Option<String>, example = "1250.00")]
    pub amount: Option<AmountInput>,
    /// A category.
    #[schema(value_type = Option<String>)]
    pub category: Option<String>,
    /// A frequency.
    #[schema(value_type = Option<String>)]
    pub frequency: Option<String>,
    /// A note for the partner, at most 4000 characters.
    #[schema(value_type = Option<String>, example = "The rent went up")]
    pub message: Option<String>,
}
fn parse_name(raw: &str, errors: &mut FieldErrors) -> Option<String> {
    match splitsave_sync_core::validate::name("name", raw) {
        Ok(n) => Some(n),
        Err(e) => {
            errors.push("name", e.message);
            None
        }
    }
}

fn parse_category(raw: &str, errors: &mut FieldErrors) -> Option<Category> {
    let parsed = Category::parse(raw);
    if parsed.is_none() {
        errors.push(
            "category",
            format!("must be one of {}", spellings(Category::ALL)),
        );
    }
    parsed
}

/// The schema of `?category=` of `GET /api/expenses`: a [`Category`] spelling, as
/// [`parse_category`] accepts.
pub struct CategoryParam;

impl utoipa::PartialSchema for CategoryParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        shared::string_enum_schema(Category::ALL.iter().map(Category::as_str), None)
    }
}

impl ToSchema for CategoryParam {}

fn parse_frequency(raw: &str, errors: &mut FieldErrors) -> Option<Frequency> {
    let parsed = Frequency::parse(raw);
    if parsed.is_none() {
        errors.push(
            "frequency",
            format!("must be one of {}", spellings(Frequency::ALL)),
        );
    }
    parsed
}

fn spellings<T: std::fmt::Display>(all: &[T]) -> String {
    all.iter()
        .map(|v| v.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl CreateExpenseRequest {
    /// The operation's input, or every field's error at once.
    fn validate(self, currency: Currency) -> Result<NewExpense, ApiError> {
        let mut errors = FieldErrors::default();
        let name =
            required(&mut errors, "name", self.name).and_then(|n| parse_name(&n, &mut errors));
        let amount = required(&mut errors, "amount", self.amount)
            .and_then(|a| a.minor("amount", currency, &mut errors));
        let category = required(&mut errors, "category", self.category)
            .and_then(|c| parse_category(&c, &mut errors));
        let frequency = required(&mut errors, "frequency", self.frequency)
            .and_then(|f| parse_frequency(&f, &mut errors));
        match (name, amount, category, frequency) {
            (Some(name), Some(amount), Some(category), Some(frequency)) if errors.is_empty() => {
                Ok(NewExpense {
                    name,
                    amount,
                    category,
                    frequency,
                })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

impl UpdateExpenseRequest {
    /// The proposed fields and note, or every field's error at once.
    fn validate(self, currency: Currency) -> Result<(ExpenseFields, Option<String>), ApiError> {
        let mut errors = FieldErrors::default();
        let fields = ExpenseFields {
            name: self.name.and_then(|n| parse_name(&n, &mut errors)),
            amount: self
                .amount
                .and_then(|a| a.minor("amount", currency, &mut errors)),
            category: self.category.and_then(|c| parse_category(&c, &mut errors)),
            frequency: self
                .frequency
                .and_then(|f| parse_frequency(&f, &mut errors)),
        };
        if let Err(e) = splitsave_sync_core::validate::note(self.message.as_deref()) {
            errors.push("message", e.message);
        }
        errors.into_result()?;
        Ok((fields, self.message))
    }
}

/// Filters and pagination of `GET /api/expenses`.
///
/// `parameter_in = Query`: the handler reads it through [`ApiQuery`], which utoipa does not
/// recognise as a query extractor, so it would otherwise document the fields as required path
/// parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExpenseListQuery {
    /// `active`, `pending_approval` or `archived`; all statuses when absent.
    #[param(value_type = Option<shared::ItemStatusParam>, inline)]
    pub status: Option<String>,
    /// One category; all when absent.
    #[param(value_type = Option<CategoryParam>, inline)]
    pub category: Option<String>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

// ---- output ---------------------------------------------------------------------------------

/// An expense as the API shows it (also as `POST /api/import` reads it from an export).
// Deserialize: `POST /api/import` reads the views back from an export; decimals only from
// their strings (`rust_decimal::serde::str`), never through a float.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "01936f5e-8a3b-7c6d-9e0f-123456789abc", "name": "Rent", "amount": "1200.00",
    "category": "housing", "frequency": "monthly",
    "added_by": "01936f5e-0000-7000-8000-000000000001", "status": "active",
    "created_at": "2026-11-25T10:00:00.000Z", "updated_at": "2026-11-25T10:00:00.000Z"}))]
pub struct ExpenseView {
    /// The expense id.
    pub id: Uuid,
    /// Name.
    pub name: String,
    /// Amount per occurrence, a decimal string in the partnership currency.
    #[schema(value_type = String, example = "1200.00")]
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub amount: Decimal,
    /// Category.
    pub category: String,
    /// `weekly`, `monthly` or `yearly`.
    pub frequency: String,
    /// The partner who added it.
    pub added_by: Uuid,
    /// `active`, `pending_approval` or `archived`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

impl From<ExpenseRow> for ExpenseView {
    fn from(r: ExpenseRow) -> Self {
        ExpenseView {
            id: r.id.0,
            name: r.name,
            amount: r.amount,
            category: r.category,
            frequency: r.frequency,
            added_by: r.added_by.0,
            status: r.status,
            created_at: rfc3339(r.created_at),
            updated_at: rfc3339(r.updated_at),
        }
    }
}

/// An approval request, as `202 Accepted` answers it: the change waits for the partner
/// (`POST /api/approvals/{id}/approve` or `/decline`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "01936f5e-8a3b-7c6d-9e0f-aaaaaaaaaaaa", "request_type": "expense_add",
    "target_id": "01936f5e-8a3b-7c6d-9e0f-123456789abc",
    "requested_by": "01936f5e-0000-7000-8000-000000000001",
    "request_data": {"name": "Sofa", "amount": "100.01", "category": "other", "frequency": "monthly"},
    "message": null, "status": "pending", "created_at": "2026-11-25T10:00:00.000Z"}))]
pub struct ApprovalRequestView {
    /// The request id.
    pub id: Uuid,
    /// `expense_add` or `expense_edit`.
    pub request_type: String,
    /// The expense concerned.
    pub target_id: Uuid,
    /// The partner who asked (the caller).
    pub requested_by: Uuid,
    /// The proposed values (amounts as decimal strings).
    #[schema(value_type = Object)]
    pub request_data: serde_json::Value,
    /// The note for the partner.
    pub message: Option<String>,
    /// `pending`.
    pub status: String,
    /// RFC 3339.
    pub created_at: String,
}

impl ApprovalRequestView {
    fn of(a: &Approval, currency: &Currency) -> Self {
        ApprovalRequestView {
            id: a.id.0,
            request_type: a.request_type.as_str().to_string(),
            target_id: a.target_id.0,
            requested_by: a.requested_by.0,
            request_data: request_data_json(&a.request_data, currency),
            message: a.message.clone(),
            status: a.status.as_str().to_string(),
            created_at: rfc3339(a.created_at),
        }
    }
}

/// Sums of the active expenses' raw amounts, per frequency (not normalised).
#[derive(Debug, Serialize, ToSchema)]
pub struct FrequencyTotals {
    /// Sum of weekly amounts, per week.
    #[schema(value_type = String, example = "0.00")]
    pub weekly: Decimal,
    /// Sum of monthly amounts.
    #[schema(value_type = String, example = "100.00")]
    pub monthly: Decimal,
    /// Sum of yearly amounts, per year.
    #[schema(value_type = String, example = "0.00")]
    pub yearly: Decimal,
}

/// One partner's part of the split.
#[derive(Debug, Serialize, ToSchema)]
pub struct PartnerShare {
    /// The partner's user id.
    pub user_id: Uuid,
    /// Display name.
    pub name: String,
    /// 1 for the inviter, 2 for the invitee.
    pub slot: u8,
    /// The monthly income the split used (null when not entered, or in another currency).
    #[schema(value_type = Option<String>, example = "1000.00")]
    pub income: Option<Decimal>,
    /// Monthly share of the total.
    #[schema(value_type = String, example = "33.33")]
    pub share: Decimal,
    /// Whole percentage; the two add up to 100.
    #[schema(example = 33)]
    pub ratio: u8,
}

/// The split of the couple's active expenses (`split::calculate`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "currency": "USD", "basis": "income", "active_expenses": 1,
    "totals": {"weekly": "0.00", "monthly": "100.00", "yearly": "0.00"},
    "monthly_total": "100.00",
    "partners": [
        {"user_id": "01936f5e-0000-7000-8000-000000000001", "name": "Ann", "slot": 1,
         "income": "1000.00", "share": "33.33", "ratio": 33},
        {"user_id": "01936f5e-0000-7000-8000-000000000002", "name": "Ben", "slot": 2,
         "income": "2000.00", "share": "66.67", "ratio": 67}]}))]
pub struct SplitView {
    /// ISO 4217 code of every amount.
    pub currency: String,
    /// `income` (in proportion to incomes) or `equal` (an income missing, or both zero).
    pub basis: String,
    /// How many active expenses count.
    pub active_expenses: usize,
    /// Raw sums per frequency.
    pub totals: FrequencyTotals,
    /// Everything normalised to a month (weekly × 52 / 12, yearly / 12), rounded once.
    #[schema(value_type = String, example = "100.00")]
    pub monthly_total: Decimal,
    /// Both partners, slot 1 first; the shares add up to `monthly_total` exactly.
    pub partners: Vec<PartnerShare>,
}

impl SplitView {
    fn of(s: &split_doc::DocSplit) -> Self {
        let c = s.currency;
        let partners = s
            .members
            .iter()
            .map(|m| {
                let (share, ratio) = if m.slot == 1 {
                    (s.split.share_1, s.split.ratio_1)
                } else {
                    (s.split.share_2, s.split.ratio_2)
                };
                PartnerShare {
                    user_id: m.user_id.0,
                    name: m.name.clone(),
                    slot: m.slot,
                    income: m.income.map(|i| c.from_minor(i)),
                    share: c.from_minor(share),
                    ratio,
                }
            })
            .collect();
        SplitView {
            currency: c.code().to_string(),
            basis: match s.split.basis {
                SplitBasis::Income => "income",
                SplitBasis::Equal => "equal",
            }
            .to_string(),
            active_expenses: s.active_expenses,
            totals: FrequencyTotals {
                weekly: c.from_minor(s.split.weekly_total),
                monthly: c.from_minor(s.split.monthly_total_raw),
                yearly: c.from_minor(s.split.yearly_total),
            },
            monthly_total: c.from_minor(s.split.monthly_total),
            partners,
        }
    }
}

// ---- handlers -------------------------------------------------------------------------------

async fn load_expense(
    state: &AppState,
    p: &PartnershipRecord,
    id: Uuid,
) -> Result<ExpenseView, ApiError> {
    state
        .store
        .expense(p.id, id)
        .await?
        .map(ExpenseView::from)
        .ok_or(ApiError::NotFound)
}

/// Lists the couple's expenses, newest first.
#[utoipa::path(get, path = "/api/expenses", operation_id = "list_expenses", tag = "expenses", security(("bearer" = [])),
    params(ExpenseListQuery),
    responses(
        (status = 200, description = "A page of expenses `{items, next_cursor}`", body = Paged<ExpenseView>),
        (status = 400, description = "`bad_request`: a parameter of the wrong type (e.g. `limit=abc`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 422, description = "Unknown `status` or `category`, `limit` outside 1–100, or a bad `cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<ExpenseListQuery>,
) -> Result<Json<Paged<ExpenseView>>, ApiError> {
    let mut errors = FieldErrors::default();
    let status = q.status.as_deref().and_then(|s| {
        let parsed = ItemStatus::parse(s);
        if parsed.is_none() {
            errors.push(
                "status",
                format!("must be one of {}", spellings(ItemStatus::ALL)),
            );
        }
        parsed
    });
    let category = q
        .category
        .as_deref()
        .and_then(|c| parse_category(c, &mut errors));
    let page = PageParams {
        limit: q.limit,
        cursor: q.cursor,
    }
    .page();
    let page = match page {
        Ok(p) => Some(p),
        Err(ApiError::Validation(e)) => {
            for (field, messages) in e.0 {
                for m in messages {
                    errors.push(field.clone(), m);
                }
            }
            None
        }
        Err(other) => return Err(other),
    };
    errors.into_result()?;
    let page = page.ok_or_else(|| ApiError::internal("page missing after validation"))?;
    let p = partnership_of(&state, &user).await?;
    let mut rows = state
        .store
        .list_expenses(p.id, status, category, page.limit + 1, page.offset)
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    Ok(Json(Paged {
        items: rows.into_iter().map(ExpenseView::from).collect(),
        next_cursor: page.next_cursor(more),
    }))
}

/// One expense of the couple.
#[utoipa::path(get, path = "/api/expenses/{id}", operation_id = "get_expense", tag = "expenses", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The expense id")),
    responses(
        (status = 200, description = "The expense", body = ExpenseView),
        (status = 400, description = "`bad_request`: not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such expense in the caller's partnership", body = crate::error::ErrorBody),
    ))]
pub async fn get_one(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExpenseView>, ApiError> {
    let p = partnership_of(&state, &user).await?;
    Ok(Json(load_expense(&state, &p, id).await?))
}

/// Adds an expense: `201` with it, or `202` with the approval request when its amount is above
/// the partnership's approval threshold.
#[utoipa::path(post, path = "/api/expenses", operation_id = "create_expense", tag = "expenses", security(("bearer" = [])),
    request_body = CreateExpenseRequest,
    responses(
        (status = 201, description = "Added and active", body = ExpenseView),
        (status = 202, description = "Above the threshold: added as `pending_approval`; the partner must approve this request", body = ApprovalRequestView),
        (status = 400, description = "`bad_request`: malformed JSON or a field of the wrong type", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_paused`: the partnership is read-only while paused", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`: a missing field, a bad name, amount, category or frequency", body = crate::error::ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<CreateExpenseRequest>,
) -> Result<Response, ApiError> {
    let p = partnership_of(&state, &user).await?;
    let currency = currency_of(&p)?;
    let input = body.validate(currency)?;
    let (outcome, filed) = shared::apply_in(&state, &p, &user, move |tx, ctx| {
        let outcome = ops::add_expense(tx, ctx, &input)?;
        let filed = match outcome {
            Outcome::ApprovalRequested { request_id, .. } => {
                Filed::Request(read::read_approval(tx, &request_id.to_string())?)
            }
            // The row as it is materialized in this same commit: no read-back needed.
            Outcome::Applied { id } => Filed::Expense(expense_row_in(tx, id)),
        };
        Ok((outcome, filed))
    })
    .await?;
    match filed {
        Filed::Expense(Some(row)) => {
            Ok((StatusCode::CREATED, Json(ExpenseView::from(row))).into_response())
        }
        filed => respond(&state, &p, currency, outcome, filed, StatusCode::CREATED).await,
    }
}

/// Proposes an edit of an expense: `202` with the `expense_edit` request; the values change
/// when the partner approves it.
#[utoipa::path(put, path = "/api/expenses/{id}", operation_id = "update_expense", tag = "expenses", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The expense id")),
    request_body = UpdateExpenseRequest,
    responses(
        (status = 202, description = "The approval request for the edit", body = ApprovalRequestView),
        (status = 400, description = "`bad_request`: malformed JSON, a wrong type, or an id that is not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such expense in the caller's partnership", body = crate::error::ErrorBody),
        (status = 409, description = "`archived`: the expense is archived; `partnership_paused`", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`: a bad field, or nothing would change (`fields`)", body = crate::error::ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateExpenseRequest>,
) -> Result<Response, ApiError> {
    let p = partnership_of(&state, &user).await?;
    let currency = currency_of(&p)?;
    let (fields, message) = body.validate(currency)?;
    let (outcome, filed) = shared::apply(&state, &user, move |tx, ctx| {
        let outcome = ops::edit_expense(tx, ctx, EntityId(id), &fields, message.as_deref())?;
        let filed = match outcome {
            Outcome::ApprovalRequested { request_id, .. } => {
                Filed::Request(read::read_approval(tx, &request_id.to_string())?)
            }
            Outcome::Applied { .. } => Filed::Expense(None),
        };
        Ok((outcome, filed))
    })
    .await?;
    respond(&state, &p, currency, outcome, filed, StatusCode::OK).await
}

/// Archives an expense (either partner, no approval): `200` with the archived expense.
#[utoipa::path(delete, path = "/api/expenses/{id}", operation_id = "archive_expense", tag = "expenses", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The expense id")),
    responses(
        (status = 200, description = "The archived expense (archiving twice answers the same)", body = ExpenseView),
        (status = 400, description = "`bad_request`: not a UUID", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such expense in the caller's partnership", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_paused`", body = crate::error::ErrorBody),
    ))]
pub async fn archive(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ExpenseView>, ApiError> {
    let p = partnership_of(&state, &user).await?;
    shared::apply(&state, &user, move |tx, ctx| {
        ops::archive_expense(tx, ctx, EntityId(id))
    })
    .await?;
    Ok(Json(load_expense(&state, &p, id).await?))
}

/// The split of the couple's active expenses, from the document's expenses and incomes.
#[utoipa::path(get, path = "/api/expenses/split-calculation", tag = "expenses", security(("bearer" = [])),
    responses(
        (status = 200, description = "Totals, shares, ratios and basis", body = SplitView),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
    ))]
pub async fn split_calculation(
    State(state): State<AppState>,
    user: AuthUser,
) -> Result<Json<SplitView>, ApiError> {
    let p = partnership_of(&state, &user).await?;
    let split = state
        .sync
        .split(PartnershipId(p.id))
        .await
        .map_err(shared::api_error)?;
    Ok(Json(SplitView::of(&split)))
}

/// What a write read from the document in the commit that made it, for its answer.
enum Filed {
    /// The approval request it filed (`None` if it could not be read back).
    Request(Option<Approval>),
    /// The expense's row as materialized by the commit, when the handler reads it there.
    Expense(Option<ExpenseRow>),
}

/// The `expenses` row of an expense of the document, as the commit materializes it.
fn expense_row_in(tx: &Transaction<'_>, id: EntityId) -> Option<ExpenseRow> {
    let mut touched = Touched::default();
    touched.add(Collection::Expenses, id.to_string());
    let rows = materialize::rows_for(tx, &touched).ok()?;
    rows.changes.into_iter().find_map(|change| match change {
        RowChange::Upsert(Row::Expense(row)) => Some(row),
        _ => None,
    })
}

/// `applied` with the expense, or `202` with the filed request.
async fn respond(
    state: &AppState,
    p: &PartnershipRecord,
    currency: Currency,
    outcome: Outcome,
    filed: Filed,
    applied: StatusCode,
) -> Result<Response, ApiError> {
    match outcome {
        Outcome::Applied { id } => {
            Ok((applied, Json(load_expense(state, p, id.0).await?)).into_response())
        }
        Outcome::ApprovalRequested { .. } => {
            let Filed::Request(Some(approval)) = filed else {
                return Err(ApiError::internal("the filed request was not read back"));
            };
            Ok((
                StatusCode::ACCEPTED,
                Json(ApprovalRequestView::of(&approval, &currency)),
            )
                .into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amount(json: &str) -> Result<AmountInput, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn amounts_are_read_from_their_text() {
        let d = |s: &str| AmountInput::Decimal(Decimal::from_str(s).unwrap());
        assert_eq!(amount("\"12.50\"").unwrap(), d("12.50"));
        assert_eq!(amount("12.5").unwrap(), d("12.5"));
        assert_eq!(amount("100.01").unwrap(), d("100.01"));
        assert_eq!(amount("1e2").unwrap(), d("100"));
        // Beyond f64's precision, still exact.
        assert_eq!(
            amount("123456789.123456789").unwrap(),
            d("123456789.123456789")
        );
        assert_eq!(amount("\"1_000\"").unwrap(), AmountInput::NotADecimal);
        assert_eq!(amount("\"abc\"").unwrap(), AmountInput::NotADecimal);
        assert_eq!(amount("\"1e2\"").unwrap(), AmountInput::NotADecimal);
        assert_eq!(amount("\" 1\"").unwrap(), AmountInput::NotADecimal);
        assert!(amount("true").is_err());
        assert!(amount("[1]").is_err());
    }

    #[test]
    fn amounts_are_checked_against_the_currency() {
        let mut errors = FieldErrors::default();
        let ok = AmountInput::Decimal(Decimal::from_str("0.01").unwrap());
        assert_eq!(
            ok.minor("amount", Currency::USD, &mut errors),
            Some(MinorUnits(1))
        );
        for bad in ["0", "-1", "1.001"] {
            let a = AmountInput::Decimal(Decimal::from_str(bad).unwrap());
            assert_eq!(a.minor("amount", Currency::USD, &mut errors), None, "{bad}");
        }
        assert_eq!(errors.0["amount"].len(), 3);
    }
}
