//! `/api/goals/*`: the couple's savings goals.
//!
//! Rules (the document's policy, through the document actor as for a synced app):
//! - adding a goal always needs the partner's approval: `POST` answers 202 with the approval
//!   request and the goal waits as `pending_approval` until the partner answers;
//! - an edit is always a request too (202); it takes effect when the partner approves;
//! - `DELETE` archives (either partner, no approval; archiving twice is harmless);
//! - a contribution is logged against an active goal and added to its saved amount as a counter,
//!   so contributions made at the same time by both partners (or offline) add up.
//!
//! Amounts come in as the expenses endpoints take them ([`AmountInput`]): a decimal string
//! (`"12.50"`) or a JSON number read from its text (`12.5`), never through a float.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::enums::{GoalType, ItemStatus, Priority};
use splitsave_sync_core::ids::EntityId;
use splitsave_sync_core::materialize::GoalRow;
use splitsave_sync_core::money::Currency;
use splitsave_sync_core::ops::{self, NewGoal, Outcome};
use splitsave_sync_core::schema::GoalFields;
use splitsave_sync_core::validate;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, FieldErrors};
use crate::routes::approvals::{self, ApprovalView};
use crate::routes::expenses::AmountInput;
use crate::routes::shared::{
    self, apply, currency_of, partnership_of, required, rfc3339, PageParams,
};
use crate::store::PartnershipRecord;

/// The `/api/goals` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/goals", get(list_goals).post(add_goal))
        .route("/api/goals/{id}", put(edit_goal).delete(archive_goal))
        .route("/api/goals/{id}/contribution", put(contribute))
}

/// The OpenAPI description of the goal endpoints.
#[derive(OpenApi)]
#[openapi(
    paths(list_goals, add_goal, edit_goal, archive_goal, contribute),
    components(schemas(GoalView, GoalPage, NewGoalRequest, EditGoalRequest, ContributionRequest)),
    tags((name = "goals", description = "Savings goals and contributions to them"))
)]
pub struct GoalsApi;

/// [`GoalsApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    GoalsApi::openapi()
}

/// A goal as the API shows it (also as `POST /api/import` reads it from an export).
// Deserialize: `POST /api/import` reads the views back from an export; decimals only from
// their strings (`rust_decimal::serde::str`), never through a float.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "01937a3e-2222-7abc-8def-0123456789ab",
    "name": "Trip to Lisbon",
    "target_amount": "2500.00",
    "saved_amount": "320.00",
    "goal_type": "vacation",
    "priority": "medium",
    "added_by": "01937a3e-1111-7abc-8def-0123456789ab",
    "status": "active",
    "created_at": "2026-11-25T09:30:00.000Z",
    "updated_at": "2026-11-26T18:02:11.250Z"
}))]
pub struct GoalView {
    /// The goal's id.
    pub id: Uuid,
    /// Its name.
    pub name: String,
    /// What the couple wants to save, decimal string in the partnership currency.
    #[schema(value_type = String)]
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub target_amount: Decimal,
    /// Saved so far (every logged contribution), decimal string.
    #[schema(value_type = String)]
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub saved_amount: Decimal,
    /// `emergency_fund`, `vacation`, `home`, `car`, `education`, `retirement`, `wedding`, `other`.
    pub goal_type: String,
    /// `low`, `medium` or `high`.
    pub priority: String,
    /// Who proposed it.
    pub added_by: Uuid,
    /// `pending_approval`, `active` or `archived`.
    pub status: String,
    /// When it was proposed (RFC 3339).
    pub created_at: String,
    /// Last change (RFC 3339).
    pub updated_at: String,
}

impl From<GoalRow> for GoalView {
    fn from(g: GoalRow) -> Self {
        GoalView {
            id: g.id.0,
            name: g.name,
            target_amount: g.target_amount,
            saved_amount: g.saved_amount,
            goal_type: g.goal_type,
            priority: g.priority,
            added_by: g.added_by.0,
            status: g.status,
            created_at: rfc3339(g.created_at),
            updated_at: rfc3339(g.updated_at),
        }
    }
}

/// A page of goals.
#[derive(Debug, Serialize, ToSchema)]
pub struct GoalPage {
    /// The goals of this page, newest first.
    pub items: Vec<GoalView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/goals`.
///
/// `parameter_in = Query`: the handler reads it through [`ApiQuery`], which utoipa does not
/// recognise as a query extractor, so it would otherwise document the fields as required path
/// parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GoalsQuery {
    /// Only goals with this status: `active`, `pending_approval` or `archived` (default: all).
    #[param(value_type = Option<shared::ItemStatusParam>, inline)]
    pub status: Option<String>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// Where to continue, from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// A goal to propose.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewGoalRequest {
    /// Required: 1–200 characters once trimmed.
    #[schema(required = true, value_type = String, example = "Trip to Lisbon")]
    pub name: Option<String>,
    /// Required: positive, decimal string or exact number, at most the currency's decimals.
    #[schema(required = true, value_type = String, example = "2500.00")]
    pub target_amount: Option<AmountInput>,
    /// Required: `emergency_fund`, `vacation`, `home`, `car`, `education`, `retirement`,
    /// `wedding` or `other`.
    #[schema(required = true, value_type = String, example = "vacation")]
    pub goal_type: Option<String>,
    /// `low`, `medium` (default) or `high`.
    #[schema(value_type = Option<String>, example = "medium")]
    pub priority: Option<String>,
}

/// A proposed change of a goal: only the fields given change.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct EditGoalRequest {
    /// New name, 1–200 characters.
    #[schema(value_type = Option<String>, example = "Two weeks in Lisbon")]
    pub name: Option<String>,
    /// New target, positive decimal string or exact number.
    #[schema(value_type = Option<String>, example = "3000.00")]
    pub target_amount: Option<AmountInput>,
    /// New kind.
    #[schema(value_type = Option<String>, example = "vacation")]
    pub goal_type: Option<String>,
    /// New priority.
    #[schema(value_type = Option<String>, example = "high")]
    pub priority: Option<String>,
    /// A note for the partner, up to 4000 characters.
    #[schema(value_type = Option<String>, example = "Flights went up")]
    pub message: Option<String>,
}

/// A contribution to log.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContributionRequest {
    /// Required: positive, decimal string or exact number, at most the currency's decimals.
    #[schema(required = true, value_type = String, example = "150.00")]
    pub amount: Option<AmountInput>,
}

fn goal_type(raw: &str) -> Result<GoalType, String> {
    GoalType::parse(raw).ok_or_else(|| {
        "must be one of emergency_fund, vacation, home, car, education, retirement, wedding, other"
            .into()
    })
}

fn priority(raw: &str) -> Result<Priority, String> {
    Priority::parse(raw).ok_or_else(|| "must be low, medium or high".into())
}

fn goal_name(raw: &str) -> Result<String, String> {
    validate::name("name", raw).map_err(|e| e.message)
}
impl NewGoalRequest {
    /// The goal to propose, or every field's problem at once (422).
    fn parse(self, currency: Currency) -> Result<NewGoal, ApiError> {
        let mut errors = FieldErrors::default();
        let name = required(&mut errors, "name", self.name)
            .and_then(|n| errors.check("name", goal_name(&n)));
        let target = required(&mut errors, "target_amount", self.target_amount)
            .and_then(|a| a.minor("target_amount", currency, &mut errors));
        let kind = required(&mut errors, "goal_type", self.goal_type)
            .and_then(|t| errors.check("goal_type", goal_type(&t)));
        let priority = match self.priority {
            None => Some(Priority::Medium),
            Some(p) => errors.check("priority", priority(&p)),
        };
        match (name, target, kind, priority) {
            (Some(name), Some(target_amount), Some(goal_type), Some(priority))
                if errors.is_empty() =>
            {
                Ok(NewGoal {
                    name,
                    target_amount,
                    goal_type,
                    priority,
                })
            }
            _ => Err(ApiError::Validation(errors)),
        }
    }
}

impl EditGoalRequest {
    /// The proposed fields and note, or every field's problem at once (422).
    fn parse(self, currency: Currency) -> Result<(GoalFields, Option<String>), ApiError> {
        let mut errors = FieldErrors::default();
        let fields = GoalFields {
            name: self.name.and_then(|n| errors.check("name", goal_name(&n))),
            target_amount: self
                .target_amount
                .and_then(|a| a.minor("target_amount", currency, &mut errors)),
            goal_type: self
                .goal_type
                .and_then(|t| errors.check("goal_type", goal_type(&t))),
            priority: self
                .priority
                .and_then(|p| errors.check("priority", priority(&p))),
        };
        let message = self
            .message
            .and_then(|m| errors.check("message", validate::note(Some(&m)).map_err(|e| e.message)));
        if errors.is_empty() && fields.is_empty() {
            errors.push("fields", "nothing to change");
        }
        errors.into_result()?;
        Ok((fields, message.flatten()))
    }
}

/// The caller's partnership's goals, newest first.
#[utoipa::path(get, path = "/api/goals", tag = "goals", security(("bearer" = [])),
    params(GoalsQuery),
    responses(
        (status = 200, description = "A page of goals, newest first", body = GoalPage),
        (status = 400, description = "`bad_request`: a limit that is not a number", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = ErrorBody),
        (status = 422, description = "`validation_failed`: unknown status, limit outside 1–100 or a foreign cursor", body = ErrorBody),
    ))]
pub async fn list_goals(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<GoalsQuery>,
) -> Result<Json<GoalPage>, ApiError> {
    let status = match query.status.as_deref() {
        None => None,
        Some(s) => Some(ItemStatus::parse(s).ok_or_else(|| {
            ApiError::Validation(
                FieldErrors::default()
                    .add("status", "must be active, pending_approval or archived"),
            )
        })?),
    };
    let page = PageParams {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let partnership = partnership_of(&state, &user).await?;
    let mut rows = state
        .store
        .list_goals(partnership.id, status, page.limit + 1, page.offset)
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    Ok(Json(GoalPage {
        items: rows.into_iter().map(GoalView::from).collect(),
        next_cursor: page.next_cursor(more),
    }))
}

/// Proposes a goal: it waits as `pending_approval` until the partner answers the request.
#[utoipa::path(post, path = "/api/goals", tag = "goals", security(("bearer" = [])),
    request_body = NewGoalRequest,
    responses(
        (status = 202, description = "The approval request filed for the new goal (its `target_id` is the goal)", body = ApprovalView),
        (status = 400, description = "`bad_request`: malformed JSON or wrong types", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = ErrorBody),
        (status = 409, description = "`partnership_paused`: a paused partnership is read-only", body = ErrorBody),
        (status = 422, description = "`validation_failed`: name, target_amount, goal_type or priority missing or invalid", body = ErrorBody),
    ))]
pub async fn add_goal(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewGoalRequest>,
) -> Result<(StatusCode, Json<ApprovalView>), ApiError> {
    let partnership = partnership_of(&state, &user).await?;
    let goal = body.parse(currency_of(&partnership)?)?;
    let outcome = apply(&state, &user, move |tx, ctx| ops::add_goal(tx, ctx, &goal)).await?;
    requested(&state, &partnership, outcome).await
}

/// Proposes a change of a goal: it takes effect when the partner approves the request.
#[utoipa::path(put, path = "/api/goals/{id}", tag = "goals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The goal")),
    request_body = EditGoalRequest,
    responses(
        (status = 202, description = "The approval request filed for the change", body = ApprovalView),
        (status = 400, description = "`bad_request`: malformed JSON, wrong types or an id that is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such goal in the caller's partnership", body = ErrorBody),
        (status = 409, description = "`archived`: the goal is archived; `partnership_paused`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: an invalid field, or nothing to change", body = ErrorBody),
    ))]
pub async fn edit_goal(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<EditGoalRequest>,
) -> Result<(StatusCode, Json<ApprovalView>), ApiError> {
    let partnership = partnership_of(&state, &user).await?;
    let (fields, message) = body.parse(currency_of(&partnership)?)?;
    let goal = EntityId(id);
    let outcome = apply(&state, &user, move |tx, ctx| {
        ops::edit_goal(tx, ctx, goal, &fields, message.as_deref())
    })
    .await?;
    requested(&state, &partnership, outcome).await
}

/// Archives a goal (either partner, no approval).
#[utoipa::path(delete, path = "/api/goals/{id}", tag = "goals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The goal")),
    responses(
        (status = 200, description = "The goal, archived", body = GoalView),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such goal in the caller's partnership", body = ErrorBody),
        (status = 409, description = "`partnership_paused`: a paused partnership is read-only", body = ErrorBody),
    ))]
pub async fn archive_goal(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<GoalView>, ApiError> {
    let partnership = partnership_of(&state, &user).await?;
    let goal = EntityId(id);
    apply(&state, &user, move |tx, ctx| {
        ops::archive_goal(tx, ctx, goal)
    })
    .await?;
    committed(&state, partnership.id, id).await.map(Json)
}

/// Logs a contribution to an active goal; its saved amount grows by `amount`.
#[utoipa::path(put, path = "/api/goals/{id}/contribution", operation_id = "contribute_to_goal", tag = "goals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The goal")),
    request_body = ContributionRequest,
    responses(
        (status = 200, description = "The goal with its new saved amount", body = GoalView),
        (status = 400, description = "`bad_request`: malformed JSON or an id that is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "No such goal in the caller's partnership", body = ErrorBody),
        (status = 409, description = "`goal_not_active`: pending approval or archived; `partnership_paused`", body = ErrorBody),
        (status = 422, description = "`validation_failed`: amount missing, not positive, too precise or too large", body = ErrorBody),
    ))]
pub async fn contribute(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ContributionRequest>,
) -> Result<Json<GoalView>, ApiError> {
    let partnership = partnership_of(&state, &user).await?;
    let currency = currency_of(&partnership)?;
    let mut errors = FieldErrors::default();
    let amount = required(&mut errors, "amount", body.amount)
        .and_then(|a| a.minor("amount", currency, &mut errors));
    let Some(amount) = amount else {
        return Err(ApiError::Validation(errors));
    };
    let goal = EntityId(id);
    apply(&state, &user, move |tx, ctx| {
        ops::contribute_to_goal(tx, ctx, goal, amount)
    })
    .await?;
    committed(&state, partnership.id, id).await.map(Json)
}

/// The 202 answer of a write that filed an approval request.
async fn requested(
    state: &AppState,
    partnership: &PartnershipRecord,
    outcome: Outcome,
) -> Result<(StatusCode, Json<ApprovalView>), ApiError> {
    let Outcome::ApprovalRequested { request_id, .. } = outcome else {
        return Err(ApiError::internal("a goal change applied without approval"));
    };
    let view = approvals::committed(state, partnership.id, request_id.0).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// A goal as committed by a write that just succeeded.
async fn committed(state: &AppState, partnership_id: Uuid, id: Uuid) -> Result<GoalView, ApiError> {
    state
        .store
        .goal(partnership_id, id)
        .await?
        .map(GoalView::from)
        .ok_or_else(|| ApiError::internal(format!("goal {id} missing after its write")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_goal_reports_every_bad_field_at_once() {
        let body: NewGoalRequest = serde_json::from_str(
            r#"{"name": " ", "target_amount": -1, "goal_type": "yacht", "priority": "urgent"}"#,
        )
        .unwrap();
        let Err(ApiError::Validation(errors)) = body.parse(Currency::USD) else {
            panic!("expected a validation error");
        };
        for field in ["name", "target_amount", "goal_type", "priority"] {
            assert!(errors.0.contains_key(field), "{field}: {errors:?}");
        }
    }
}
