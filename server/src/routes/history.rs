//! `/api/history`, `/api/expenses/{id}/history`, `/api/goals/{id}/history`: the story of the
//! couple's money, newest first: who changed what (a partner, or SplitSave with the reason of
//! its correction), when the change was made and when the server received it (offline edits
//! arrive late), and each field's old and new value as the REST API shows it.
//!
//! Entries are read from the history index written with every commit (`store::history`), so a
//! page is one indexed query however long the couple's history is; every query is scoped by
//! the caller's partnership, so another couple's ids are simply not found.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use splitsave_sync_core::history::Kind;
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiPath, ApiQuery, FieldErrors};
use crate::routes::shared::{partnership_of, rfc3339, Paged};
use crate::store::{AuthorFilter, HistoryQuery, HistoryRecord, PartnershipRecord};
use splitsave_sync_core::time::Millis;

/// Entries per page when `limit` is not given.
const DEFAULT_LIMIT: u32 = 50;
/// The most entries one page holds.
const MAX_LIMIT: u32 = 100;
/// How the server's own changes are named, and the `author` filter that selects them.
const SERVER_NAME: &str = "SplitSave";
/// The `author` filter value for the server's own changes.
const SERVER_AUTHOR: &str = "splitsave";

/// The history routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/history", get(list_history))
        .route("/api/expenses/{id}/history", get(expense_history))
        .route("/api/goals/{id}/history", get(goal_history))
}

/// The OpenAPI description of the history endpoints.
#[derive(OpenApi)]
#[openapi(
    paths(list_history, expense_history, goal_history),
    components(schemas(HistoryEntryView, HistoryAuthorView, FieldChangeView)),
    tags((name = "history", description = "Who changed what in the couple's money, and when"))
)]
pub struct HistoryApi;

/// [`HistoryApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    HistoryApi::openapi()
}

/// Filters and paging of `GET /api/history`.
///
/// `parameter_in = Query`: the handler reads it through [`ApiQuery`], which utoipa does not
/// recognise as a query extractor.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryListQuery {
    /// Only entries about this kind of thing: `expense`, `goal`, `goal_contribution`,
    /// `approval`, `message`, `month`, `member` or `partnership`.
    pub kind: Option<String>,
    /// Only entries about this entity (an id, a month `YYYY-MM`, a user id).
    pub entity: Option<String>,
    /// Only changes by this user (a user id), or `splitsave` for the server's own.
    pub author: Option<String>,
    /// Only changes made at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Only changes made before this time (RFC 3339).
    pub to: Option<String>,
    /// Entries per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Paging of an item's history.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemHistoryQuery {
    /// Entries per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// The previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// Who made a change.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct HistoryAuthorView {
    /// `user` (a partner, through an app or the REST API) or `splitsave` (the server's own
    /// correction).
    #[serde(rename = "type")]
    pub kind: String,
    /// The user's id; absent for SplitSave.
    pub user_id: Option<Uuid>,
    /// The user's name, or `SplitSave`.
    pub name: String,
}

/// One field's old and new value, as the REST API shows them (amounts as decimal strings,
/// times RFC 3339, `null` for absent). A field of an inner map is `outer.inner`
/// (`paid.<user id>`, `request_data.amount`).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldChangeView {
    /// The field.
    pub field: String,
    /// Before the change.
    pub old: serde_json::Value,
    /// After the change.
    pub new: serde_json::Value,
}

/// What one change did to one thing.
#[derive(Clone, Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "id": "1042",
    "change": "5f1c0a…",
    "author": {"type": "splitsave", "user_id": null, "name": "SplitSave"},
    "reason": "edit needs approval: amount restored",
    "changed_at": "2026-11-25T09:30:00.000Z",
    "received_at": "2026-11-25T18:02:11.417Z",
    "received_at_exact": true,
    "kind": "expense",
    "entity_id": "01937a3e-4b2c-7d11-9a3e-5f0c2b7e8d41",
    "action": "changed",
    "changes": [{"field": "amount", "old": "2400.00", "new": "1200.00"}]
}))]
pub struct HistoryEntryView {
    /// The entry's position (newer entries have larger ones).
    pub id: String,
    /// The Automerge change (hex hash) the entry comes from.
    pub change: String,
    /// Who made it.
    pub author: HistoryAuthorView,
    /// For SplitSave's own changes, why (`edit needs approval: amount restored`).
    pub reason: Option<String>,
    /// When the change was made, by its author's clock (RFC 3339); null when it carries none.
    pub changed_at: Option<String>,
    /// When the server received it (RFC 3339): later than `changed_at` for an edit made
    /// offline.
    pub received_at: String,
    /// False when the receive time is no longer stored (history rebuilt after the changes were
    /// compacted): `received_at` is then the change's own time.
    pub received_at_exact: bool,
    /// What the entry is about: `expense`, `goal`, `goal_contribution`, `approval`, `message`,
    /// `month`, `member` or `partnership`.
    pub kind: String,
    /// Its id (a month `YYYY-MM` for a month, a user id for a member).
    pub entity_id: String,
    /// `created`, `changed` or `removed`.
    pub action: String,
    /// The fields that changed.
    pub changes: Vec<FieldChangeView>,
}

/// The couple's history, newest first.
#[utoipa::path(get, path = "/api/history", operation_id = "list_history", tag = "history", security(("bearer" = [])),
    params(HistoryListQuery),
    responses(
        (status = 200, description = "A page of entries `{items, next_cursor}`", body = Paged<HistoryEntryView>),
        (status = 400, description = "`bad_request`: a parameter of the wrong type (e.g. `limit=abc`)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 422, description = "Unknown `kind`, an `author` that is neither a user id nor `splitsave`, a `from` or `to` that is not RFC 3339, `limit` outside 1–100, or a bad `cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn list_history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(q): ApiQuery<HistoryListQuery>,
) -> Result<Json<Paged<HistoryEntryView>>, ApiError> {
    let mut errors = FieldErrors::default();
    let kind = q.kind.as_deref().and_then(|k| {
        let parsed = Kind::parse(k).map(|k| k.as_str());
        if parsed.is_none() {
            let all: Vec<&str> = Kind::ALL.iter().map(Kind::as_str).collect();
            errors.push("kind", format!("must be one of {}", all.join(", ")));
        }
        parsed
    });
    let author = q.author.as_deref().and_then(|a| {
        if a == SERVER_AUTHOR {
            return Some(AuthorFilter::Server);
        }
        let parsed = Uuid::parse_str(a).ok().map(AuthorFilter::User);
        if parsed.is_none() {
            errors.push("author", format!("must be a user id or `{SERVER_AUTHOR}`"));
        }
        parsed
    });
    let from = time_param(q.from.as_deref(), "from", &mut errors);
    let to = time_param(q.to.as_deref(), "to", &mut errors);
    if q.entity
        .as_ref()
        .is_some_and(|e| e.is_empty() || e.len() > 64)
    {
        errors.push("entity", "must be 1–64 characters");
    }
    let (limit, before_id) = paging(q.limit, q.cursor.as_deref(), &mut errors);
    errors.into_result()?;
    let p = partnership_of(&state, &user).await?;
    let query = HistoryQuery {
        kind,
        entity_id: q.entity,
        author,
        from,
        to,
        before_id,
        limit: limit + 1,
    };
    page(&state, &p, query).await.map(Json)
}

/// One expense's history, newest first.
#[utoipa::path(get, path = "/api/expenses/{id}/history", operation_id = "expense_history", tag = "history", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The expense id"), ItemHistoryQuery),
    responses(
        (status = 200, description = "A page of the expense's entries `{items, next_cursor}`", body = Paged<HistoryEntryView>),
        (status = 400, description = "`bad_request`: not a UUID, or a parameter of the wrong type", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such expense in the caller's partnership", body = crate::error::ErrorBody),
        (status = 422, description = "`limit` outside 1–100, or a bad `cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn expense_history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ItemHistoryQuery>,
) -> Result<Json<Paged<HistoryEntryView>>, ApiError> {
    item_history(&state, &user, Kind::Expense, id, q).await
}

/// One goal's history, newest first.
#[utoipa::path(get, path = "/api/goals/{id}/history", operation_id = "goal_history", tag = "history", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The goal id"), ItemHistoryQuery),
    responses(
        (status = 200, description = "A page of the goal's entries `{items, next_cursor}`", body = Paged<HistoryEntryView>),
        (status = 400, description = "`bad_request`: not a UUID, or a parameter of the wrong type", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "No such goal in the caller's partnership", body = crate::error::ErrorBody),
        (status = 422, description = "`limit` outside 1–100, or a bad `cursor`", body = crate::error::ErrorBody),
    ))]
pub async fn goal_history(
    State(state): State<AppState>,
    user: AuthUser,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<ItemHistoryQuery>,
) -> Result<Json<Paged<HistoryEntryView>>, ApiError> {
    item_history(&state, &user, Kind::Goal, id, q).await
}

/// One item's page of history: the item must be the caller's couple's (404 otherwise, like a
/// missing one), then its entries are read as `/api/history?kind=&entity=` reads them.
async fn item_history(
    state: &AppState,
    user: &AuthUser,
    kind: Kind,
    id: Uuid,
    q: ItemHistoryQuery,
) -> Result<Json<Paged<HistoryEntryView>>, ApiError> {
    let mut errors = FieldErrors::default();
    let (limit, before_id) = paging(q.limit, q.cursor.as_deref(), &mut errors);
    errors.into_result()?;
    let p = partnership_of(state, user).await?;
    let exists = match kind {
        Kind::Expense => state.store.expense(p.id, id).await?.is_some(),
        Kind::Goal => state.store.goal(p.id, id).await?.is_some(),
        _ => false,
    };
    if !exists {
        return Err(ApiError::NotFound);
    }
    let query = HistoryQuery {
        kind: Some(kind.as_str()),
        entity_id: Some(id.hyphenated().to_string()),
        before_id,
        limit: limit + 1,
        ..HistoryQuery::default()
    };
    page(state, &p, query).await.map(Json)
}

/// Reads `query` (its limit one more than the page, to tell whether another follows) and
/// shows it.
async fn page(
    state: &AppState,
    p: &PartnershipRecord,
    query: HistoryQuery,
) -> Result<Paged<HistoryEntryView>, ApiError> {
    let limit = query.limit.saturating_sub(1) as usize;
    let mut records = state.store.history_page(p.id, &query).await?;
    let more = records.len() > limit;
    records.truncate(limit);
    let names = Names::of(state, p).await?;
    let next_cursor = more
        .then(|| records.last().map(|r| encode_cursor(r.id)))
        .flatten();
    Ok(Paged {
        items: records.iter().map(|r| view(r, &names)).collect(),
        next_cursor,
    })
}

/// The partners' names, to name authors.
pub struct Names(Vec<(Uuid, String)>);

impl Names {
    /// No names (every user is "a former member").
    pub fn empty() -> Names {
        Names(Vec::new())
    }

    /// The names of `p`'s members.
    pub async fn of(state: &AppState, p: &PartnershipRecord) -> Result<Names, ApiError> {
        let mut names = Vec::new();
        for id in std::iter::once(p.user1_id).chain(p.user2_id) {
            if let Some(u) = state.store.user_by_id(id).await? {
                names.push((id, u.name));
            }
        }
        Ok(Names(names))
    }

    fn author(&self, id: Option<Uuid>) -> HistoryAuthorView {
        match id {
            None => HistoryAuthorView {
                kind: SERVER_AUTHOR.into(),
                user_id: None,
                name: SERVER_NAME.into(),
            },
            Some(id) => HistoryAuthorView {
                kind: "user".into(),
                user_id: Some(id),
                name: self
                    .0
                    .iter()
                    .find(|(u, _)| *u == id)
                    .map_or_else(|| "a former member".into(), |(_, n)| n.clone()),
            },
        }
    }
}

/// An entry as the API shows it.
pub fn view(r: &HistoryRecord, names: &Names) -> HistoryEntryView {
    let e = &r.entry;
    HistoryEntryView {
        id: r.id.to_string(),
        change: e.change_hash.clone(),
        author: names.author(e.author_id),
        reason: e.reason.clone(),
        changed_at: e.changed_at.map(rfc3339_of),
        received_at: rfc3339_of(r.received.at),
        received_at_exact: r.received.exact,
        kind: e.kind.to_string(),
        entity_id: e.entity_id.clone(),
        action: e.action.to_string(),
        changes: serde_json::from_str(&e.fields).unwrap_or_default(),
    }
}

/// A stored time in the API's format (the shared `rfc3339` of document times).
fn rfc3339_of(t: DateTime<Utc>) -> String {
    rfc3339(Millis(t.timestamp_millis()))
}

/// `limit` (checked, default 50) and where the page starts, from `cursor`.
fn paging(
    limit: Option<u32>,
    cursor: Option<&str>,
    errors: &mut FieldErrors,
) -> (u32, Option<i64>) {
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        errors.push("limit", format!("must be between 1 and {MAX_LIMIT}"));
    }
    let before = cursor.and_then(|c| {
        let parsed = decode_cursor(c);
        if parsed.is_none() {
            errors.push("cursor", "is not a cursor of this listing");
        }
        parsed
    });
    (limit, before)
}

fn time_param(s: Option<&str>, field: &str, errors: &mut FieldErrors) -> Option<DateTime<Utc>> {
    let s = s?;
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(field, "must be an RFC 3339 time (2026-11-25T09:30:00Z)");
            None
        }
    }
}

/// The cursor after an entry: its id, marked so other listings' cursors are not taken for it.
fn encode_cursor(id: i64) -> String {
    format!("h{id}")
}

fn decode_cursor(c: &str) -> Option<i64> {
    c.strip_prefix('h')?.parse().ok().filter(|id| *id > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_others_are_refused() {
        assert_eq!(decode_cursor(&encode_cursor(1042)), Some(1042));
        for bad in ["", "h", "hx", "1042", "h-3", "h0"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }
}
