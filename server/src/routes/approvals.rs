//! `/api/approvals/*`: the partnership's approval requests and answering them.
//!
//! Rules (the document's policy, applied through the document actor exactly as for a synced
//! app): only the partner who did not ask may answer (the requester gets 403); a request is
//! answered once (409 `already_answered`); approving applies the request (an added goal or
//! expense becomes active, an edit takes effect), declining an addition archives the item and
//! declining an edit leaves the old values. An id of another partnership answers 404.

use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use splitsave_sync_core::enums::ApprovalStatus;
use splitsave_sync_core::ids::EntityId;
use splitsave_sync_core::materialize::ApprovalRow;
use splitsave_sync_core::ops;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiPath, ApiQuery, ErrorBody, FieldErrors};
use crate::routes::shared::{self, apply, partnership_of, rfc3339, PageParams};

/// The `/api/approvals` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/approvals", get(list_approvals))
        .route("/api/approvals/{id}/approve", post(approve))
        .route("/api/approvals/{id}/decline", post(decline))
}

/// The OpenAPI description of the approval endpoints.
#[derive(OpenApi)]
#[openapi(
    paths(list_approvals, approve, decline),
    components(schemas(ApprovalView, ApprovalPage)),
    tags((name = "approvals", description = "Requests that need the partner's approval, and answering them"))
)]
pub struct ApprovalsApi;

/// [`ApprovalsApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApprovalsApi::openapi()
}

/// An approval request as the API shows it (also as `POST /api/import` reads it from an
/// export).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "01937a3e-4b2c-7d11-9a3e-5f0c2b7e8d41",
    "requested_by": "01937a3e-1111-7abc-8def-0123456789ab",
    "request_type": "goal_add",
    "target_id": "01937a3e-2222-7abc-8def-0123456789ab",
    "request_data": {"name": "Trip to Lisbon", "target_amount": "2500.00", "goal_type": "vacation", "priority": "medium"},
    "message": null,
    "status": "pending",
    "responded_by": null,
    "responded_at": null,
    "created_at": "2026-11-25T09:30:00.000Z"
}))]
pub struct ApprovalView {
    /// The request's id.
    pub id: Uuid,
    /// The partner who asked.
    pub requested_by: Uuid,
    /// `expense_add`, `expense_edit`, `goal_add` or `goal_edit`.
    pub request_type: String,
    /// The expense or goal concerned.
    pub target_id: Uuid,
    /// The proposed values (amounts as decimal strings); for an edit, only the changed fields.
    #[schema(value_type = Object)]
    pub request_data: serde_json::Value,
    /// The requester's note, if any.
    pub message: Option<String>,
    /// `pending`, `approved` or `declined`.
    pub status: String,
    /// The partner who answered.
    pub responded_by: Option<Uuid>,
    /// When it was answered (RFC 3339).
    pub responded_at: Option<String>,
    /// When it was asked (RFC 3339).
    pub created_at: String,
}

impl From<ApprovalRow> for ApprovalView {
    fn from(a: ApprovalRow) -> Self {
        ApprovalView {
            id: a.id.0,
            requested_by: a.requested_by.0,
            request_type: a.request_type,
            target_id: a.target_id.0,
            request_data: a.request_data,
            message: a.message,
            status: a.status,
            responded_by: a.responded_by.map(|u| u.0),
            responded_at: a.responded_at.map(rfc3339),
            created_at: rfc3339(a.created_at),
        }
    }
}

/// A page of approval requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalPage {
    /// The requests of this page, newest first.
    pub items: Vec<ApprovalView>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// Query of `GET /api/approvals`.
///
/// `parameter_in = Query`: the handler reads it through [`ApiQuery`], which utoipa does not
/// recognise as a query extractor, so it would otherwise document the fields as required path
/// parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApprovalsQuery {
    /// `pending` (default), `approved` or `declined`.
    #[param(value_type = Option<ApprovalStatusParam>, inline)]
    pub status: Option<String>,
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// Where to continue, from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The schema of `?status=` of `GET /api/approvals`: an [`ApprovalStatus`] spelling, as
/// [`status_filter`] accepts, `pending` when absent.
pub struct ApprovalStatusParam;

impl utoipa::PartialSchema for ApprovalStatusParam {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::Schema> {
        shared::string_enum_schema(
            ApprovalStatus::ALL.iter().map(ApprovalStatus::as_str),
            Some(ApprovalStatus::Pending.as_str()),
        )
    }
}

impl ToSchema for ApprovalStatusParam {}

/// The status filter: pending unless another known status is named.
fn status_filter(raw: Option<&str>) -> Result<ApprovalStatus, ApiError> {
    match raw {
        None => Ok(ApprovalStatus::Pending),
        Some(s) => ApprovalStatus::parse(s).ok_or_else(|| {
            ApiError::Validation(
                FieldErrors::default().add("status", "must be pending, approved or declined"),
            )
        }),
    }
}

/// The caller's partnership's approval requests with one status, newest first.
#[utoipa::path(get, path = "/api/approvals", tag = "approvals", security(("bearer" = [])),
    params(ApprovalsQuery),
    responses(
        (status = 200, description = "A page of requests, newest first", body = ApprovalPage),
        (status = 400, description = "`bad_request`: a limit that is not a number", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = ErrorBody),
        (status = 422, description = "`validation_failed`: unknown status, limit outside 1–100 or a foreign cursor", body = ErrorBody),
    ))]
pub async fn list_approvals(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ApprovalsQuery>,
) -> Result<Json<ApprovalPage>, ApiError> {
    let status = status_filter(query.status.as_deref())?;
    let page = PageParams {
        limit: query.limit,
        cursor: query.cursor,
    }
    .page()?;
    let partnership = partnership_of(&state, &user).await?;
    let mut rows = state
        .store
        .list_approvals(partnership.id, status, page.limit + 1, page.offset)
        .await?;
    let more = rows.len() > page.limit as usize;
    rows.truncate(page.limit as usize);
    Ok(Json(ApprovalPage {
        items: rows.into_iter().map(ApprovalView::from).collect(),
        next_cursor: page.next_cursor(more),
    }))
}

/// Approves a pending request of the partner: it takes effect at once.
#[utoipa::path(post, path = "/api/approvals/{id}/approve", operation_id = "approve_approval", tag = "approvals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The approval request")),
    responses(
        (status = 200, description = "The approved request", body = ApprovalView),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller asked for it; only the partner answers", body = ErrorBody),
        (status = 404, description = "No such request in the caller's partnership", body = ErrorBody),
        (status = 409, description = "`already_answered`: approved or declined before; `partnership_paused`", body = ErrorBody),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ApprovalView>, ApiError> {
    answer(&state, &user, id, Answer::Approve).await.map(Json)
}

/// Declines a pending request of the partner: an addition is archived, an edit leaves the old
/// values.
#[utoipa::path(post, path = "/api/approvals/{id}/decline", operation_id = "decline_approval", tag = "approvals", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The approval request")),
    responses(
        (status = 200, description = "The declined request", body = ApprovalView),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller asked for it; only the partner answers", body = ErrorBody),
        (status = 404, description = "No such request in the caller's partnership", body = ErrorBody),
        (status = 409, description = "`already_answered`: approved or declined before; `partnership_paused`", body = ErrorBody),
    ))]
pub async fn decline(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ApprovalView>, ApiError> {
    answer(&state, &user, id, Answer::Decline).await.map(Json)
}

/// The two answers a partner can give.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Approve,
    Decline,
}

/// Answers the request through the document and returns it as committed.
async fn answer(
    state: &AppState,
    user: &AuthUser,
    id: Uuid,
    answer: Answer,
) -> Result<ApprovalView, ApiError> {
    let partnership = partnership_of(state, user).await?;
    let request = EntityId(id);
    apply(state, user, move |tx, ctx| match answer {
        Answer::Approve => ops::approve(tx, ctx, request),
        Answer::Decline => ops::decline(tx, ctx, request),
    })
    .await?;
    committed(state, partnership.id, id).await
}

/// A request as committed by a write that just succeeded (its row is written in the same
/// transaction as the change, so it is there).
pub async fn committed(
    state: &AppState,
    partnership_id: Uuid,
    id: Uuid,
) -> Result<ApprovalView, ApiError> {
    state
        .store
        .approval(partnership_id, id)
        .await?
        .map(ApprovalView::from)
        .ok_or_else(|| ApiError::internal(format!("approval {id} missing after its write")))
}
