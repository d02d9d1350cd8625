//! `POST /api/import`: a JSON export (`GET /api/export?format=json`) taken into the caller's
//! partnership while it has no entries yet (moving servers, restoring a backup).
//!
//! The handler is thin: [`file::read`] turns the body into sync-core's typed
//! [`Import`](splitsave_sync_core::import::Import) and checks it whole
//! ([`Import::check`](splitsave_sync_core::import::Import::check)); only a file without a single
//! problem is written, by [`write_import`] as one operation of the caller through the document
//! actor: one Automerge change, committed with its materialized rows in one transaction and
//! fanned out like any REST write. A refused import writes nothing.
//!
//! What the partnership keeps: its own settings (currency, approval threshold), members and
//! their incomes. The file's `profile` and `partnership` are read only for the user mapping and
//! the currency check (see [`mod@file`]); any other key (the export's `history`, say) is
//! ignored: history is derived from the document, and the import's is its own change.
//!
//! # Limits
//!
//! The body may be up to `IMPORT_BODY_LIMIT_BYTES` ([`DEFAULT_BODY_LIMIT_BYTES`], 64 MiB: a
//! 20,000-entry couple's export is about 5 MiB) instead of the API's `BODY_LIMIT_BYTES`, and
//! the request may take `IMPORT_TIMEOUT_SECS` ([`DEFAULT_TIMEOUT`]) instead of
//! `REQUEST_TIMEOUT_SECS`: the route is mounted outside the global limits (`app::router`).
//! Writing is one document operation whose cost grows with the file (seconds of Automerge work
//! for 20,000 entries, `sync-core/examples/import_cost.rs`); once handed to the document actor
//! it completes even if the client stops waiting, so a timed-out answer does not mean nothing
//! was written (a retry then answers 409 `partnership_not_empty`). `IMPORT_RATE_LIMIT`
//! attempts per user an hour (`RateLimits::check_import`). Parsing and checking run on a
//! blocking thread: a large file is CPU work that must not hold up the runtime's other tasks.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use serde::Serialize;
use splitsave_sync_core::ids::UserId;
use splitsave_sync_core::import::{first_entry, write_import, Section};
use splitsave_sync_core::time::Millis;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use utoipa::{OpenApi, ToSchema};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::ApiError;
use crate::routes::export::ExportDocument;
use crate::routes::server_doc;
use crate::routes::shared::{self, currency_of, partnership_of};
use crate::store::PartnershipStatus;

pub mod file;

/// `IMPORT_BODY_LIMIT_BYTES` unless configured: 64 MiB, room for the export of a couple far
/// larger than the 20,000 entries (a few MiB of JSON) the export is measured with.
pub const DEFAULT_BODY_LIMIT_BYTES: usize = 64 * 1024 * 1024;

/// `IMPORT_TIMEOUT_SECS` unless configured: 5 minutes. Writing an import is one document
/// operation whose cost grows with the file (`sync-core/examples/import_cost.rs`: seconds for
/// 20,000 entries), far beyond an ordinary request's `REQUEST_TIMEOUT_SECS`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// The `/api/import` route with its own body limit (`IMPORT_BODY_LIMIT_BYTES`) and time limit
/// (`IMPORT_TIMEOUT_SECS`), for the app to mount outside the API's global `BODY_LIMIT_BYTES`
/// and `REQUEST_TIMEOUT_SECS` (see `app::router`).
pub fn router(body_limit: usize, timeout: Duration) -> Router<AppState> {
    Router::new()
        .route("/api/import", post(import_data))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(RequestBodyLimitLayer::new(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
}

/// The OpenAPI description of the import.
#[derive(OpenApi)]
#[openapi(
    paths(import_data),
    components(schemas(ImportSummary, ImportCounts, UserMapping))
)]
pub struct ImportApi;

/// [`ImportApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ImportApi::openapi()
}

/// What an import wrote.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImportSummary {
    /// Items written per section of the file.
    pub imported: ImportCounts,
    /// How the file's users became the partnership's members (`from` the file, `to` the
    /// member who now stands for them in every imported item).
    pub users: Vec<UserMapping>,
}

/// Items written per section, named as the export names them.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ImportCounts {
    /// Expenses.
    pub expenses: usize,
    /// Goals.
    pub goals: usize,
    /// Contributions logged to goals.
    pub goal_contributions: usize,
    /// Months.
    pub contributions: usize,
    /// Approval requests.
    pub approval_requests: usize,
    /// Messages.
    pub messages: usize,
}

/// One user of the file and the member standing for them.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserMapping {
    /// The user id in the file.
    pub from: Uuid,
    /// The partnership member.
    pub to: Uuid,
}

/// Imports a JSON export (`GET /api/export?format=json`, `format_version` 1) into the caller's
/// partnership, which must have no entries yet: every item lands as it was (ids, statuses,
/// times, saved amounts, months and their paid marks), its authors mapped onto the
/// partnership's two members. The file is checked whole first: a problem anywhere answers 422
/// naming its JSON path (`expenses[3].amount`), and nothing is written.
#[utoipa::path(post, path = "/api/import", operation_id = "import_data", tag = "export", security(("bearer" = [])),
    request_body(content = ExportDocument, content_type = "application/json",
        description = "A JSON export, as `GET /api/export?format=json` wrote it; keys it does not know (`history`) are ignored"),
    responses(
        (status = 201, description = "Imported, in one change of the partnership's document", body = ImportSummary),
        (status = 400, description = "`bad_request`: the body is not JSON (the message names line and column)", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "The caller has no active or paused partnership", body = crate::error::ErrorBody),
        (status = 409, description = "`partnership_not_empty`: the partnership has an expense, goal, goal contribution, approval request, message or paid month; `partnership_paused`", body = crate::error::ErrorBody),
        (status = 413, description = "`payload_too_large`: over `IMPORT_BODY_LIMIT_BYTES` (64 MiB by default)", body = crate::error::ErrorBody),
        (status = 415, description = "`unsupported_media_type`: not `Content-Type: application/json`", body = crate::error::ErrorBody),
        (status = 422, description = "`validation_failed`: `details` names each problem by its JSON path (`expenses[3].amount`, `partnership.currency`, …)", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: the hourly import attempts are used up; see `Retry-After`", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds until another import is allowed"))),
        (status = 503, description = "`timeout`: over `IMPORT_TIMEOUT_SECS` (a write already begun still completes: look before retrying); `service_unavailable`: the document could not be reached", body = crate::error::ErrorBody),
    ))]
pub async fn import_data(
    State(state): State<AppState>,
    user: AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<ImportSummary>), ApiError> {
    let body = body.map_err(|r| match r.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
        _ => ApiError::BadRequest(r.body_text()),
    })?;
    if !is_json(&headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    state.limits.check_import(user.user_id).await?;
    let p = partnership_of(&state, &user).await?;
    if p.status == PartnershipStatus::Paused {
        return Err(ApiError::Conflict("partnership_paused"));
    }
    // Before the file is read: no use naming its problems to someone who cannot import it.
    // `write_import` checks again inside the write, which is what makes it safe.
    let has_entries = server_doc::run(&state, p.id, user.user_id, |tx| {
        Ok(first_entry(tx).is_some())
    })
    .await?;
    if has_entries {
        return Err(ApiError::Conflict(NOT_EMPTY));
    }
    let partner = p
        .partner_of(user.user_id)
        .ok_or_else(|| ApiError::internal("an active partnership without a partner"))?;
    let into = file::Destination {
        currency: currency_of(&p)?,
        caller: UserId(user.user_id),
        partner: UserId(partner),
        now: Millis::now(),
    };
    let (checked, users) = tokio::task::spawn_blocking(move || file::read(&body, &into))
        .await
        .map_err(ApiError::internal)??;
    let imported = counts(&checked);
    let checked = Arc::new(checked);
    shared::apply_in(&state, &p, &user, move |tx, ctx| {
        write_import(tx, ctx, &checked)
    })
    .await?;
    let users = users
        .into_iter()
        .map(|(from, to)| UserMapping { from, to: to.0 })
        .collect();
    Ok((StatusCode::CREATED, Json(ImportSummary { imported, users })))
}

/// The conflict code of a partnership that already has entries.
pub const NOT_EMPTY: &str = "partnership_not_empty";

/// `application/json` or a `+json` type, as the API's JSON bodies require.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn counts(checked: &splitsave_sync_core::import::CheckedImport) -> ImportCounts {
    let mut c = ImportCounts::default();
    for (section, n) in checked.import().counts() {
        let slot = match section {
            Section::Expenses => &mut c.expenses,
            Section::Goals => &mut c.goals,
            Section::GoalContributions => &mut c.goal_contributions,
            Section::Months => &mut c.contributions,
            Section::Approvals => &mut c.approval_requests,
            Section::Messages => &mut c.messages,
        };
        *slot = n;
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ExportTable;

    #[test]
    fn the_import_reads_the_sections_the_export_writes() {
        let exported: Vec<&str> = ExportTable::ALL.iter().map(|t| t.name()).collect();
        let imported: Vec<&str> = Section::ALL.iter().map(|s| s.key()).collect();
        assert_eq!(imported, exported);
    }

    #[test]
    fn json_bodies_are_told_by_their_content_type() {
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, v.parse().expect("header"));
            is_json(&h)
        };
        assert!(with("application/json"));
        assert!(with("application/json; charset=utf-8"));
        assert!(with("Application/JSON"));
        assert!(with("application/vnd.splitsave+json"));
        assert!(!with("text/plain"));
        assert!(!with("application/zip"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
