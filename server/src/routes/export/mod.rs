//! `GET /api/export?format=json|csv|automerge`: the caller's data to take away.
//!
//! - `json`: one JSON object: the caller's profile, their partnership, and every expense, goal,
//!   goal contribution, month, approval request and message of the couple, each exactly as the
//!   REST API's views show it (decimals as strings, times RFC 3339).
//! - `csv`: a zip of one CSV file per table (`profile.csv`, `partnership.csv`, `expenses.csv`,
//!   …), with a header row, amounts as decimals and times RFC 3339.
//! - `automerge`: the partnership's Automerge document as it is stored: the latest snapshot
//!   (`Automerge::save()`'s output) followed by every change stored since, each a change chunk
//!   (what `Automerge::save_incremental()` appends), which any Automerge implementation loads
//!   as one document.
//!
//! Only the caller's own partnership is read: every row comes from a store read filtered by the
//! partnership id of the caller's current partnership, never by an id from the request. A caller
//! without a partnership that has a document (none, or an invitation not accepted yet) gets
//! their profile (and the invitation), no items; the `automerge` format answers them 404
//! `no_partnership`.
//!
//! # Streaming
//!
//! The JSON and CSV exports are written while the client downloads them, so memory stays
//! bounded whatever the couple's size: a task reads each table a page of [`PAGE_ROWS`] rows at a
//! time (`Store::export_page`, keyset pages), encodes the page, and hands the bytes to the
//! response body through a channel of [`CHUNKS_IN_FLIGHT`] chunks. When the client reads slowly
//! the channel is full, the task waits, and no further page is read; when the client goes away
//! the channel closes and the task stops. At no time does the task hold more than one page of
//! rows and its encoded bytes. A failure after the headers went out (the database failing
//! mid-export) cannot become an error status any more: the task logs it and breaks the body off,
//! so the client sees a failed download instead of a file that looks complete.
//!
//! The Automerge document is not loaded: Automerge's file format is a sequence of chunks, a
//! document chunk and change chunks, and `load` in every implementation reads such a sequence as
//! one document, so the stored snapshot and the stored changes are sent as they are, one chunk
//! after the other. The export holds the document's stored form (about 60 bytes an entry, most
//! of it the snapshot, which is compacted every 500 changes), never the loaded document, which
//! is a hundred times larger: loading a 20,000-entry couple's document to `save()` it made the
//! server grow by about 170 MiB for the download (docs/benchmarks.md, "Export memory").

use std::io::{self, Write as _};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use splitsave_sync_core::materialize::{GoalContributionRow, Row};
use tokio::sync::mpsc;
use tracing::Instrument as _;
use utoipa::openapi::{RefOr, Schema};
use utoipa::{IntoParams, OpenApi, PartialSchema, ToSchema};
use uuid::Uuid;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

use crate::app::AppState;
use crate::auth::extractor::AuthUser;
use crate::error::{ApiError, ApiQuery, FieldErrors};
use crate::routes::approvals::ApprovalView;
use crate::routes::contributions::{MonthView, ShareView};
use crate::routes::expenses::ExpenseView;
use crate::routes::goals::GoalView;
use crate::routes::history::{self, HistoryEntryView, Names};
use crate::routes::messages::MessageView;
use crate::routes::partnerships::{partnership_view, PartnershipView};
use crate::routes::shared::{self, rfc3339};
use crate::routes::users::Profile;
use crate::store::{ExportKey, ExportTable, PartnershipStatus, Store, StoreError, StoredDocument};

/// The version of the JSON export's layout (`format_version`); raised when a key changes
/// meaning or goes away (a new key is not a new version).
pub const FORMAT_VERSION: u32 = 1;
/// Rows read from the store per page, and encoded before the next page is read: the most rows
/// of a table an export holds at once.
pub const PAGE_ROWS: u32 = 250;
/// The capacity a chunk starts with: about one page of encoded rows. Every page is handed to
/// the response body at its end, so a chunk is at most one page.
const CHUNK_BYTES: usize = 64 * 1024;
/// Chunks waiting for the client: when they are all unread, the export waits before reading on.
const CHUNKS_IN_FLIGHT: usize = 4;

/// The `/api/export` route.
pub fn router() -> Router<AppState> {
    Router::new().route("/api/export", get(export_data))
}

/// The OpenAPI description of the export.
#[derive(OpenApi)]
#[openapi(
    paths(export_data),
    components(schemas(ExportDocument, GoalContributionView)),
    tags((name = "export", description = "The caller's data to take away: JSON, CSV files in a zip, or the Automerge document"))
)]
pub struct ExportApi;

/// [`ExportApi`]'s document, ready to merge.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ExportApi::openapi()
}

// ---- the request ----------------------------------------------------------------------------

/// The formats of the export.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object (`application/json`).
    Json,
    /// A zip of CSV files (`application/zip`).
    Csv,
    /// The Automerge document (`application/octet-stream`).
    Automerge,
}

impl ExportFormat {
    /// Every format, as `?format=` spells it.
    pub const ALL: [ExportFormat; 3] = [
        ExportFormat::Json,
        ExportFormat::Csv,
        ExportFormat::Automerge,
    ];

    /// The `?format=` spelling.
    pub fn as_str(&self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "csv",
            ExportFormat::Automerge => "automerge",
        }
    }

    /// The format `?format=` names; 422 naming `format` when absent or unknown.
    fn parse(value: Option<&str>) -> Result<ExportFormat, ApiError> {
        let message = match value {
            None => "is required".to_string(),
            Some(v) => match Self::ALL.into_iter().find(|f| f.as_str() == v) {
                Some(format) => return Ok(format),
                None => format!("must be one of json, csv, automerge (got {v:?})"),
            },
        };
        Err(ApiError::Validation(
            FieldErrors::default().add("format", message),
        ))
    }

    /// The downloaded file's extension.
    fn extension(&self) -> &'static str {
        match self {
            ExportFormat::Json => "json",
            ExportFormat::Csv => "zip",
            ExportFormat::Automerge => "automerge",
        }
    }

    fn content_type(&self) -> &'static str {
        match self {
            ExportFormat::Json => "application/json",
            ExportFormat::Csv => "application/zip",
            ExportFormat::Automerge => "application/octet-stream",
        }
    }
}

/// The schema of `?format=`: an [`ExportFormat`] spelling.
pub struct ExportFormatParam;

impl PartialSchema for ExportFormatParam {
    fn schema() -> RefOr<Schema> {
        shared::string_enum_schema(ExportFormat::ALL.iter().map(ExportFormat::as_str), None)
    }
}

impl ToSchema for ExportFormatParam {}

/// Query of `GET /api/export`.
///
/// `parameter_in = Query`: the handler reads it through [`ApiQuery`], which utoipa does not
/// recognise as a query extractor. `format` is an `Option` so that a missing one is the 422
/// naming it, like an unknown one, rather than the extractor's 400.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `json` (one JSON object), `csv` (a zip of CSV files) or `automerge` (the document).
    #[param(value_type = ExportFormatParam, inline, required = true)]
    pub format: Option<String>,
}

/// A schema for a binary body (the zip and the Automerge document).
pub struct BinaryFile;

impl PartialSchema for BinaryFile {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            utoipa::openapi::ObjectBuilder::new()
                .schema_type(utoipa::openapi::Type::String)
                .format(Some(utoipa::openapi::SchemaFormat::KnownFormat(
                    utoipa::openapi::KnownFormat::Binary,
                )))
                .build(),
        ))
    }
}

impl ToSchema for BinaryFile {}

// ---- what the export shows --------------------------------------------------------------------

/// The JSON export (`format=json`), key by key in the order it is written. Documentation only:
/// the export is written as a stream by `Export::write_json`, never built as this value (a test
/// keeps the two equal).
#[derive(ToSchema)]
pub struct ExportDocument {
    /// The layout's version, `1`.
    pub format_version: u32,
    /// When the export was made (RFC 3339).
    pub exported_at: String,
    /// The caller's profile, as `GET /api/users/profile` shows it.
    pub profile: Profile,
    /// The caller's partnership as `GET /api/partnerships/current` shows it; null without one.
    pub partnership: Option<PartnershipView>,
    /// Every expense, by id (empty without an active or paused partnership, like the others).
    pub expenses: Vec<ExpenseView>,
    /// Every goal, by id.
    pub goals: Vec<GoalView>,
    /// Every contribution logged to a goal, by id.
    pub goal_contributions: Vec<GoalContributionView>,
    /// Every month, oldest first.
    pub contributions: Vec<MonthView>,
    /// Every approval request, whatever its status, by id.
    pub approval_requests: Vec<ApprovalView>,
    /// Every message, by id.
    pub messages: Vec<MessageView>,
    /// The couple's history, newest first, as `GET /api/history` shows it (derived from the
    /// document: `POST /api/import` does not read it back).
    pub history: Vec<HistoryEntryView>,
}

/// A contribution logged to a goal (what `PUT /api/goals/{id}/contribution` adds to its
/// `saved_amount`), as the export and the event stream show it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GoalContributionView {
    /// The contribution's id.
    pub id: Uuid,
    /// The goal.
    pub goal_id: Uuid,
    /// The partner who contributed.
    pub user_id: Uuid,
    /// The amount, a decimal string in the partnership currency.
    #[schema(value_type = String, example = "150.00")]
    #[serde(deserialize_with = "rust_decimal::serde::str::deserialize")]
    pub amount: Decimal,
    /// When (RFC 3339).
    pub created_at: String,
}

impl From<GoalContributionRow> for GoalContributionView {
    fn from(c: GoalContributionRow) -> Self {
        GoalContributionView {
            id: c.id.0,
            goal_id: c.goal_id.0,
            user_id: c.user_id.0,
            amount: c.amount,
            created_at: rfc3339(c.created_at),
        }
    }
}

// ---- the handler ------------------------------------------------------------------------------

/// Exports the caller's data: their profile, their partnership and all of its items as JSON or
/// as CSV files in a zip, or the partnership's Automerge document. Downloaded as a file
/// (`Content-Disposition: attachment`). At most 5 exports per user an hour.
#[utoipa::path(get, path = "/api/export", operation_id = "export_data", tag = "export", security(("bearer" = [])),
    params(ExportQuery),
    responses(
        (status = 200, description = "The export, as a file `splitsave-export-<date>.<json|zip|automerge>`",
            content(
                (ExportDocument = "application/json"),
                (BinaryFile = "application/zip"),
                (BinaryFile = "application/octet-stream"),
            ),
            headers(("content-disposition" = String, description = "`attachment; filename=\"splitsave-export-YYYY-MM-DD.<ext>\"`"))),
        (status = 400, description = "`bad_request`: a malformed query string", body = crate::error::ErrorBody),
        (status = 401, description = "Missing or invalid token", body = crate::error::ErrorBody),
        (status = 404, description = "`no_partnership` (`format=automerge` only): no partnership with a document", body = crate::error::ErrorBody),
        (status = 422, description = "`format` missing or not `json`, `csv` or `automerge`", body = crate::error::ErrorBody),
        (status = 429, description = "`rate_limited`: the hourly exports are used up; see `Retry-After`", body = crate::error::ErrorBody,
            headers(("retry-after" = u64, description = "Seconds until another export is allowed"))),
    ))]
pub async fn export_data(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = ExportFormat::parse(query.format.as_deref())?;
    state.limits.check_export(user.user_id).await?;
    let now = Utc::now();
    let body = match format {
        ExportFormat::Automerge => {
            let chunks = stored_chunks(&state, &user).await?;
            Body::from_stream(futures::stream::iter(
                chunks
                    .into_iter()
                    .map(|c| Ok::<_, io::Error>(Bytes::from(c))),
            ))
        }
        ExportFormat::Json | ExportFormat::Csv => {
            let export = Export::gather(&state, &user, now).await?;
            let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
            tokio::spawn(export.run(format, Out::new(tx)).in_current_span());
            Body::from_stream(chunk_stream(rx))
        }
    };
    let disposition = format!(
        "attachment; filename=\"splitsave-export-{}.{}\"",
        now.format("%Y-%m-%d"),
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// The partnership's document as stored, read at one instant (what the document actor would
/// load): the snapshot's bytes, then each change stored since, in arrival order (a change whose
/// dependencies come later is queued by `load` until they arrive). Reading the store rather
/// than asking the live actor keeps a large export from holding up the couple's syncing; every
/// change a client was told is saved is in the store.
async fn stored_chunks(state: &AppState, user: &AuthUser) -> Result<Vec<Vec<u8>>, ApiError> {
    let p = state
        .store
        .current_partnership(user.user_id)
        .await?
        .filter(|p| has_document(p.status))
        .ok_or(ApiError::NoPartnership)?;
    document_chunks(state.store.stored_document(p.id).await?)
}

/// The first bytes of every Automerge chunk (document, change or compressed change).
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];

fn document_chunks(stored: StoredDocument) -> Result<Vec<Vec<u8>>, ApiError> {
    let Some((_, snapshot)) = stored.snapshot else {
        // An active or paused partnership's document is stored when it is accepted.
        return Err(ApiError::internal("the partnership has no stored document"));
    };
    let chunks: Vec<Vec<u8>> = std::iter::once(snapshot)
        .chain(stored.changes.into_iter().map(|c| c.bytes))
        .collect();
    // Checked before the response starts, so that a damaged store is an error status rather
    // than a file that does not load (`load` checks each chunk's checksum).
    if chunks.iter().any(|c| !c.starts_with(&CHUNK_MAGIC)) {
        return Err(ApiError::internal(
            "a stored chunk is not an Automerge chunk",
        ));
    }
    Ok(chunks)
}

/// Whether a partnership in this status has a document (and so items).
fn has_document(status: PartnershipStatus) -> bool {
    matches!(
        status,
        PartnershipStatus::Active | PartnershipStatus::Paused
    )
}

mod writer;

use writer::{Export, Out};

/// The response body over the writer's chunks, fused: polled again after its end (a layer
/// above the handler did so once a writer had broken off, and an unfused `unfold` panics then,
/// cutting the connection mid-body), it answers the end again.
fn chunk_stream(
    rx: mpsc::Receiver<io::Result<Bytes>>,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    futures::StreamExt::fuse(futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|chunk| (chunk, rx))
    }))
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable as _;
    use automerge::{Automerge, ReadDoc as _, ROOT};

    use super::*;
    use crate::store::StoredChange;

    #[tokio::test]
    async fn the_body_answers_its_end_again_when_polled_after_it() {
        use futures::StreamExt as _;
        let (tx, rx) = mpsc::channel(2);
        tx.send(Ok(Bytes::from_static(b"{}"))).await.expect("send");
        drop(tx);
        let mut body = Box::pin(chunk_stream(rx));
        assert!(matches!(body.next().await, Some(Ok(_))));
        assert!(body.next().await.is_none());
        assert!(body.next().await.is_none(), "polled after its end");
    }

    #[test]
    fn the_stored_snapshot_and_changes_load_as_the_whole_document() {
        fn put(doc: &mut Automerge, k: &str) {
            doc.transact::<_, _, automerge::AutomergeError>(|tx| {
                tx.put(ROOT, k, 1)?;
                Ok(())
            })
            .expect("change");
        }
        let mut doc = Automerge::new();
        put(&mut doc, "a");
        put(&mut doc, "b");
        let snapshot = doc.save();
        put(&mut doc, "c");
        put(&mut doc, "d");
        let changes = doc.get_changes(&[]);
        // The last two changes after the snapshot, and one the snapshot already has (a
        // compaction racing a merge can leave one): `load` takes it once.
        let stored = StoredDocument {
            version: 3,
            snapshot: Some((1, snapshot)),
            changes: [1, 2, 3]
                .iter()
                .map(|&i| StoredChange {
                    id: i as i64,
                    user_id: None,
                    bytes: changes[i].raw_bytes().to_vec(),
                })
                .collect(),
        };
        let body = document_chunks(stored).expect("chunks").concat();
        let loaded = Automerge::load(&body).expect("loads");
        assert_eq!(loaded.get_heads(), doc.get_heads());
        assert_eq!(loaded.keys(ROOT).collect::<Vec<_>>(), ["a", "b", "c", "d"]);
    }

    #[test]
    fn a_stored_chunk_that_is_not_automerge_is_an_error_before_the_response() {
        let not_a_change = StoredDocument {
            version: 1,
            snapshot: Some((1, Automerge::new().save())),
            changes: vec![StoredChange {
                id: 1,
                user_id: None,
                bytes: b"garbage".to_vec(),
            }],
        };
        assert!(document_chunks(not_a_change).is_err());
        let no_snapshot = StoredDocument {
            version: 0,
            snapshot: None,
            changes: Vec::new(),
        };
        assert!(document_chunks(no_snapshot).is_err());
    }
}
