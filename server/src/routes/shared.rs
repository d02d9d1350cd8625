//! What the REST routes share: finding the caller's account and partnership, the partnership's
//! currency, required-field checks, and writing to the partnership's document through the
//! document actor — exactly like a sync merge, so REST and sync clients see one truth under the
//! same rules.

use automerge::transaction::Transaction;
use splitsave_sync_core::enums::ItemStatus;
use splitsave_sync_core::ids::UserId;
use splitsave_sync_core::ops::{Ctx, OpError};
use splitsave_sync_core::time::Millis;
use utoipa::openapi::{ObjectBuilder, RefOr, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, FieldErrors};
use crate::store::{PartnershipRecord, PartnershipStatus, UserRecord};
use crate::sync::SyncError;
use splitsave_sync_core::money::Currency;

/// The caller's account; a token whose user is gone is refused like a bad token.
pub async fn load_user(state: &AppState, user: &AuthUser) -> Result<UserRecord, ApiError> {
    state
        .store
        .user_by_id(user.user_id)
        .await?
        .ok_or(ApiError::Unauthorized("invalid or expired token"))
}

/// The currency with ISO code `code` (a stored one: unparseable means corrupt, a 500).
pub fn currency(code: &str) -> Result<Currency, ApiError> {
    Currency::parse(code).map_err(ApiError::internal)
}

/// The partnership currency (every amount of its document is in it).
pub fn currency_of(p: &PartnershipRecord) -> Result<Currency, ApiError> {
    currency(&p.currency)
}

/// Records "is required" for `field` when a required value is missing, and passes it on.
pub fn required<T>(errors: &mut FieldErrors, field: &str, value: Option<T>) -> Option<T> {
    if value.is_none() {
        errors.push(field, "is required");
    }
    value
}

/// The caller's partnership when it has a document (active or paused). Anyone else gets 404:
/// there is nothing of theirs to read or write. Remembered for up to a second (see
/// `auth::cache`); a change of partnership made here is seen at once.
pub async fn partnership_of(
    state: &AppState,
    user: &AuthUser,
) -> Result<PartnershipRecord, ApiError> {
    if let Some(cached) = state.auth_cache.partnership(user.user_id) {
        return cached.ok_or(ApiError::NotFound);
    }
    let generation = state.auth_cache.generation();
    let live = state
        .store
        .current_partnership(user.user_id)
        .await?
        .filter(|p| {
            matches!(
                p.status,
                PartnershipStatus::Active | PartnershipStatus::Paused
            )
        });
    state
        .auth_cache
        .put_partnership(user.user_id, live.clone(), generation);
    live.ok_or(ApiError::NotFound)
}

/// Runs `op` on the caller's partnership document as the caller, commits it (changes and
/// materialized rows in one transaction) and fans it out to connected sync clients and event
/// subscribers, then returns what `op` returned (the outcome, and whatever the handler needs to
/// read from the document as this commit leaves it). A paused partnership is read-only (409
/// `partnership_paused`).
pub async fn apply<T, F>(state: &AppState, user: &AuthUser, op: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Fn(&mut Transaction<'_>, &Ctx) -> Result<T, OpError> + Send + Sync + 'static,
{
    let partnership = partnership_of(state, user).await?;
    apply_in(state, &partnership, user, op).await
}

/// [`apply`] on the partnership the handler already looked up with [`partnership_of`].
pub async fn apply_in<T, F>(
    state: &AppState,
    partnership: &PartnershipRecord,
    user: &AuthUser,
    op: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: Fn(&mut Transaction<'_>, &Ctx) -> Result<T, OpError> + Send + Sync + 'static,
{
    if partnership.status == PartnershipStatus::Paused {
        return Err(ApiError::Conflict("partnership_paused"));
    }
    let uid = UserId(user.user_id);
    crate::routes::server_doc::run(state, partnership.id, user.user_id, move |tx| {
        let ctx = Ctx {
            user: uid,
            now: Millis::now(),
        };
        op(tx, &ctx)
    })
    .await
}

/// Maps the sync layer's and the policy's refusals to the API's error shape.
pub fn api_error(err: SyncError) -> ApiError {
    match err {
        SyncError::Op(op) => match op {
            OpError::Validation(v) => {
                ApiError::Validation(FieldErrors::default().add(v.field, v.message))
            }
            OpError::NotFound | OpError::NotMember => ApiError::NotFound,
            OpError::Forbidden(msg) => ApiError::Forbidden(msg),
            OpError::Conflict(msg) => ApiError::Conflict(conflict_code(msg)),
            OpError::Inactive => ApiError::Conflict("partnership_paused"),
            other => ApiError::internal(other.to_string()),
        },
        SyncError::Store(e) => ApiError::from(e),
        SyncError::Unavailable => ApiError::ServiceUnavailable("document unavailable"),
        other => ApiError::internal(other.to_string()),
    }
}

/// Stable codes for the policy's conflicts.
fn conflict_code(msg: &'static str) -> &'static str {
    match msg {
        "request already answered" => "already_answered",
        "expense is archived" | "goal is archived" => "archived",
        "goal is not active" => "goal_not_active",
        "expense already exists" | "goal already exists" => "already_exists",
        splitsave_sync_core::import::NOT_EMPTY => crate::routes::import::NOT_EMPTY,
        _ => "conflict",
    }
}

/// Document times (Unix milliseconds) as RFC 3339, the API's time format (sync-core's, which
/// history entries use too).
pub use splitsave_sync_core::time::rfc3339;

/// Pagination of every list endpoint: `?limit=` (1–100, default 50) and an opaque `?cursor=`
/// taken from the previous page's `next_cursor`.
///
/// `parameter_in = Query` because the handlers read it through [`crate::error::ApiQuery`],
/// which utoipa does not recognise as a query extractor: without it the fields would be
/// documented as required path parameters.
#[derive(Clone, Debug, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Items per page, 1–100 (default 50).
    #[param(minimum = 1, maximum = 100, default = 50)]
    pub limit: Option<u32>,
    /// Where to continue, from the previous page's `next_cursor`.
    pub cursor: Option<String>,
}

/// The schema of a query parameter that takes one of `values`, a string enum of sync-core's
/// spellings (`ItemStatus::ALL`…), so the OpenAPI document lists exactly what the handler's
/// parser accepts; `default` is what the handler assumes when the parameter is absent.
///
/// For the `PartialSchema` of a marker type used as `#[param(value_type = Option<…>, inline)]`:
/// `#[param(schema_with = …)]` would drop the field's description.
pub fn string_enum_schema(
    values: impl IntoIterator<Item = &'static str>,
    default: Option<&'static str>,
) -> RefOr<Schema> {
    RefOr::T(Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(values))
            .default(default.map(serde_json::Value::from))
            .build(),
    ))
}

/// The schema of `?status=` of the expense and goal lists: an [`ItemStatus`] spelling.
pub struct ItemStatusParam;

impl PartialSchema for ItemStatusParam {
    fn schema() -> RefOr<Schema> {
        string_enum_schema(ItemStatus::ALL.iter().map(ItemStatus::as_str), None)
    }
}

impl ToSchema for ItemStatusParam {}

/// A validated page request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Items per page.
    pub limit: u32,
    /// Items to skip.
    pub offset: u64,
}

impl PageParams {
    /// Checks the parameters (422 on a bad limit or cursor).
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(50);
        let mut errors = FieldErrors::default();
        if !(1..=100).contains(&limit) {
            errors.push("limit", "must be between 1 and 100");
        }
        let offset = match &self.cursor {
            None => 0,
            Some(c) => match decode_cursor(c) {
                Some(o) => o,
                None => {
                    errors.push("cursor", "is not a cursor from a previous page");
                    0
                }
            },
        };
        errors.into_result()?;
        Ok(Page { limit, offset })
    }
}

impl Page {
    /// The cursor of the next page, when this page was full (`fetched` = rows returned, asking
    /// the store for `limit + 1` tells whether more exist).
    pub fn next_cursor(&self, more: bool) -> Option<String> {
        more.then(|| encode_cursor(self.offset + u64::from(self.limit)))
    }
}

fn encode_cursor(offset: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_cursor(c: &str) -> Option<u64> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("o:")?
        .parse()
        .ok()
}

/// A page of items: `{"items": [...], "next_cursor": "..." | null}`.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Paged<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_bad_ones_are_refused() {
        let p = PageParams {
            limit: Some(10),
            cursor: None,
        }
        .page()
        .unwrap();
        let next = p.next_cursor(true).unwrap();
        let p2 = PageParams {
            limit: Some(10),
            cursor: Some(next),
        }
        .page()
        .unwrap();
        assert_eq!(p2.offset, 10);
        assert!(PageParams {
            limit: Some(0),
            cursor: None
        }
        .page()
        .is_err());
        assert!(PageParams {
            limit: None,
            cursor: Some("garbage".into())
        }
        .page()
        .is_err());
        assert_eq!(p.next_cursor(false), None);
    }
}
