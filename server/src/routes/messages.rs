//! `/api/messages/*`: the couple's messages.
//!
//! Messages are listed newest first and paged by a keyset cursor (the last message's time and
//! id), so a message sent while a partner pages back through older ones neither repeats nor
//! hides one. Only the recipient marks a message read (the sender gets 403); marking it again
//! changes nothing. Texts are 1–4000 characters once trimmed.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use splitsave_sync_core::ids::EntityId;
use splitsave_sync_core::materialize::MessageRow;
use splitsave_sync_core::ops::{self, Outcome};
use splitsave_sync_core::time::Millis;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody, FieldErrors};
use crate::routes::shared::{apply, partnership_of, rfc3339};
use crate::store::MessageCursor;

/// Items per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The most items one page holds.
const MAX_LIMIT: u32 = 100;

/// The `/api/messages` routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/messages", get(list_messages).post(send_message))
        .route("/api/messages/{id}/read", put(mark_read))
}

/// The OpenAPI description of the message endpoints.
#[derive(OpenApi)]
#[openapi(
    paths(list_messages, send_message, mark_read),
    components(schemas(MessageView, MessagePage, NewMessageRequest)),
    tags((name = "messages", description = "Messages between the partners"))
)]
pub struct MessagesApi;

/// [`MessagesApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    MessagesApi::openapi()
}

/// A message as the API shows it (also as `POST /api/import` reads it from an export).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[schema(example = json!({
    "id": "01937a3e-4b2c-7d11-9a3e-5f0c2b7e8d41",
    "sender_id": "01937a3e-1111-7abc-8def-0123456789ab",
    "text": "Rent is paid for December",
    "message_type": "text",
    "read_by_recipient": false,
    "created_at": "2026-11-25T09:30:00.000Z"
}))]
pub struct MessageView {
    /// The message's id.
    pub id: Uuid,
    /// Who wrote it.
    pub sender_id: Uuid,
    /// The text.
    pub text: String,
    /// `text` (written by a partner) or `approval` (a note about an approval request).
    pub message_type: String,
    /// Whether the recipient has read it.
    pub read_by_recipient: bool,
    /// When it was sent (RFC 3339).
    pub created_at: String,
}

impl From<MessageRow> for MessageView {
    fn from(m: MessageRow) -> Self {
        MessageView {
            id: m.id.0,
            sender_id: m.sender_id.0,
            text: m.text,
            message_type: m.message_type,
            read_by_recipient: m.read_by_recipient,
            created_at: rfc3339(m.created_at),
        }
    }
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// The messages of this page, newest first.
    pub items: Vec<MessageView>,
    /// Pass as `cursor` for older messages; null on the last page.
    #[schema(example = "bToxNzY0MDYyNjAwMDAwOjAxOTM3YTNlLTRiMmMtN2QxMS05YTNlLTVmMGMyYjdlOGQ0MQ")]
    pub next_cursor: Option<String>,
}

/// A message to send.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NewMessageRequest {
    /// Required: 1–4000 characters once trimmed.
    #[schema(required = true, value_type = String, example = "Rent is paid for December")]
    pub text: Option<String>,
}

/// Query of `GET /api/messages`.
///
/// `parameter_in = Query`: the handler reads it through [`ApiQuery`], which utoipa does not
/// recognise as a query extractor, so it would otherwise document the fields as required path
/// parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MessagesQuery {
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// Where to continue (older messages), from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

impl MessagesQuery {
    /// The checked limit and cursor (422 on a bad one).
    fn checked(&self) -> Result<(u32, Option<MessageCursor>), ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        let mut errors = FieldErrors::default();
        if !(1..=MAX_LIMIT).contains(&limit) {
            errors.push("limit", "must be between 1 and 100");
        }
        let cursor = match self.cursor.as_deref().map(decode_cursor) {
            None => None,
            Some(Some(c)) => Some(c),
            Some(None) => {
                errors.push("cursor", "is not a cursor from a previous page");
                None
            }
        };
        errors.into_result()?;
        Ok((limit, cursor))
    }
}

fn encode_cursor(c: MessageCursor) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!(
        "m:{}:{}",
        c.created_at.0,
        c.id.hyphenated()
    ))
}

fn decode_cursor(raw: &str) -> Option<MessageCursor> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(raw)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (millis, id) = text.strip_prefix("m:")?.split_once(':')?;
    Some(MessageCursor {
        created_at: Millis(millis.parse().ok()?),
        id: id.parse().ok()?,
    })
}

/// The caller's partnership's messages, newest first.
#[utoipa::path(get, path = "/api/messages", tag = "messages", security(("bearer" = [])),
    params(MessagesQuery),
    responses(
        (status = 200, description = "A page of messages, newest first", body = MessagePage),
        (status = 400, description = "`bad_request`: a limit that is not a number", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = ErrorBody),
        (status = 422, description = "`validation_failed`: limit outside 1–100 or a foreign cursor", body = ErrorBody),
    ))]
pub async fn list_messages(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<MessagesQuery>,
) -> Result<Json<MessagePage>, ApiError> {
    let (limit, before) = query.checked()?;
    let partnership = partnership_of(&state, &user).await?;
    let mut rows = state
        .store
        .list_messages(partnership.id, before, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|last| {
        encode_cursor(MessageCursor {
            created_at: last.created_at,
            id: last.id.0,
        })
    });
    Ok(Json(MessagePage {
        items: rows.into_iter().map(MessageView::from).collect(),
        next_cursor,
    }))
}

/// Sends a message to the partner.
#[utoipa::path(post, path = "/api/messages", tag = "messages", security(("bearer" = [])),
    request_body = NewMessageRequest,
    responses(
        (status = 201, description = "The message as sent", body = MessageView),
        (status = 400, description = "`bad_request`: malformed JSON or wrong types", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = ErrorBody),
        (status = 409, description = "`partnership_paused`: a paused partnership is read-only", body = ErrorBody),
        (status = 422, description = "`validation_failed`: text missing, empty or over 4000 characters", body = ErrorBody),
    ))]
pub async fn send_message(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(body): ApiJson<NewMessageRequest>,
) -> Result<(StatusCode, Json<MessageView>), ApiError> {
    let Some(text) = body.text else {
        return Err(ApiError::Validation(
            FieldErrors::default().add("text", "is required"),
        ));
    };
    let partnership = partnership_of(&state, &user).await?;
    let outcome = apply(&state, &user, move |tx, ctx| {
        ops::send_message(tx, ctx, &text)
    })
    .await?;
    let Outcome::Applied { id } = outcome else {
        return Err(ApiError::internal("sending a message asked for approval"));
    };
    let view = committed(&state, partnership.id, id.0).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Marks a message from the partner read (idempotent).
#[utoipa::path(put, path = "/api/messages/{id}/read", operation_id = "mark_message_read", tag = "messages", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The message")),
    responses(
        (status = 200, description = "The message, read", body = MessageView),
        (status = 400, description = "`bad_request`: the id is not a UUID", body = ErrorBody),
        (status = 401, description = "Missing or invalid token", body = ErrorBody),
        (status = 403, description = "`forbidden`: the caller sent it; only the recipient marks it read", body = ErrorBody),
        (status = 404, description = "No such message in the caller's partnership", body = ErrorBody),
        (status = 409, description = "`partnership_paused`: a paused partnership is read-only", body = ErrorBody),
    ))]
pub async fn mark_read(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<MessageView>, ApiError> {
    let partnership = partnership_of(&state, &user).await?;
    let message = EntityId(id);
    apply(&state, &user, move |tx, ctx| {
        ops::mark_read(tx, ctx, message)
    })
    .await?;
    committed(&state, partnership.id, id).await.map(Json)
}

/// A message as committed by a write that just succeeded.
async fn committed(
    state: &AppState,
    partnership_id: Uuid,
    id: Uuid,
) -> Result<MessageView, ApiError> {
    state
        .store
        .message(partnership_id, id)
        .await?
        .map(MessageView::from)
        .ok_or_else(|| ApiError::internal(format!("message {id} missing after its write")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_cursors_round_trip_and_foreign_ones_are_refused() {
        let c = MessageCursor {
            created_at: Millis(1_764_062_600_000),
            id: Uuid::now_v7(),
        };
        assert_eq!(decode_cursor(&encode_cursor(c)), Some(c));
        assert_eq!(decode_cursor("garbage"), None);
        // An offset cursor of another list is not a message cursor.
        assert_eq!(decode_cursor("bzoxMA"), None);
    }
}
