//! The operator's commands on a database: `splitsave check` and `splitsave rebuild-rows`
//! (`docs/operations.md`, "Checking and rebuilding the rows").
//!
//! The relational rows (`expenses`, `goals`, …) are derived from each partnership's document, so
//! they can be verified and repaired from it. [`check`] loads every stored document the way a
//! server loads it, materializes it with sync-core (the code every merge commit uses) and
//! compares the result with the stored rows, field by field; it also checks that every change's
//! actor is the server's or bound to one of the partners. [`rebuild_rows`] rewrites a
//! partnership's rows from its document in one transaction that takes the document's next version
//! as a merge commit does ([`Store::rebuild_materialized`]), so it is safe while servers run: a
//! merge committed meanwhile makes the rebuild start again, and a server's merge made from the
//! version before makes that server catch up and merge again.
//!
//! Both report on stdout (one line per problem, then a summary) and show progress on stderr.
//! Exit codes: [`EXIT_CLEAN`], [`EXIT_PROBLEMS`], [`EXIT_CANNOT_RUN`].

mod diff;
mod history;
mod inspect;

pub use history::{rebuild_history, HistorySummary};

use std::collections::HashMap;
use std::io::Write;
use std::str::FromStr;
use std::sync::Arc;

use uuid::Uuid;

pub use diff::{Difference, Value, What};
pub use inspect::Finding;

use crate::store::{self, Conflict, PartnershipRecord, Store, StoreError};

/// Exit code: nothing wrong (`check`), or every partnership's rows match its document now
/// (`rebuild-rows`).
pub const EXIT_CLEAN: u8 = 0;
/// Exit code: `check` found something wrong, or `rebuild-rows` could not rebuild a partnership.
pub const EXIT_PROBLEMS: u8 = 1;
/// Exit code: the command could not run (bad arguments, no database, the database failed).
pub const EXIT_CANNOT_RUN: u8 = 2;

/// How many partnerships are read per page, and how often progress is shown.
const PAGE: u32 = 100;

/// How many times a partnership is read again when a merge commits while it is being read,
/// before it is reported as too busy to check.
const ATTEMPTS: usize = 10;

/// Which command to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Task {
    /// `splitsave check`.
    Check,
    /// `splitsave rebuild-rows`.
    RebuildRows,
    /// `splitsave rebuild-history`.
    RebuildHistory,
}

/// Why an admin command could not run (exit code [`EXIT_CANNOT_RUN`]).
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The database cannot be opened.
    #[error("cannot open the database: {0}")]
    Open(StoreError),
    /// A SQLite URL names a file that does not exist (opening it would create an empty one).
    #[error("no SQLite database at {0}")]
    NoSqliteFile(String),
    /// `--partnership` names no partnership.
    #[error("no partnership {0}")]
    UnknownPartnership(Uuid),
    /// The database failed during the run.
    #[error("database error: {0}")]
    Store(#[from] StoreError),
    /// The report could not be written.
    #[error("cannot write the report: {0}")]
    Output(#[from] std::io::Error),
}

/// What `check` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckSummary {
    /// Partnerships checked.
    pub partnerships: usize,
    /// Partnerships with at least one problem.
    pub with_problems: usize,
    /// Problems (lines reported).
    pub problems: usize,
}

impl CheckSummary {
    /// The process exit code for this result.
    pub fn exit_code(&self) -> u8 {
        if self.problems == 0 {
            EXIT_CLEAN
        } else {
            EXIT_PROBLEMS
        }
    }
}

/// What `rebuild-rows` did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RebuildSummary {
    /// Partnerships looked at.
    pub partnerships: usize,
    /// Partnerships whose rows were rewritten.
    pub rebuilt: usize,
    /// Rows that were missing, stray or different, and are now as the documents say.
    pub rows_changed: usize,
    /// Partnerships left as they were: their document does not load, or kept changing.
    pub failed: usize,
}

impl RebuildSummary {
    /// The process exit code for this result.
    pub fn exit_code(&self) -> u8 {
        if self.failed == 0 {
            EXIT_CLEAN
        } else {
            EXIT_PROBLEMS
        }
    }
}

/// Runs `task` on the database at `database_url` (one partnership when given), reporting on
/// stdout and stderr; the process exit code.
pub async fn run(task: Task, database_url: &str, partnership: Option<Uuid>) -> u8 {
    let mut out = std::io::stdout();
    let mut progress = std::io::stderr();
    let result = match open(database_url).await {
        Ok(store) => match task {
            Task::Check => check(&*store, partnership, &mut out, &mut progress)
                .await
                .map(|s| s.exit_code()),
            Task::RebuildRows => rebuild_rows(&*store, partnership, &mut out, &mut progress)
                .await
                .map(|s| s.exit_code()),
            Task::RebuildHistory => rebuild_history(&*store, partnership, &mut out, &mut progress)
                .await
                .map(|s| {
                    if s.failed == 0 {
                        EXIT_CLEAN
                    } else {
                        EXIT_PROBLEMS
                    }
                }),
        },
        Err(err) => Err(err),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            let _ = out.flush();
            eprintln!("splitsave: {err}");
            EXIT_CANNOT_RUN
        }
    }
}

/// Opens the store at `database_url`, applying pending migrations as a server's start does.
/// A SQLite file that does not exist is refused rather than created: checking an empty
/// database made by a typo would report it clean.
pub async fn open(database_url: &str) -> Result<Arc<dyn Store>, AdminError> {
    if database_url.starts_with("sqlite:") {
        if let Ok(options) = sqlx::sqlite::SqliteConnectOptions::from_str(database_url) {
            let file = options.get_filename();
            if file.as_os_str() != ":memory:" && !file.exists() {
                return Err(AdminError::NoSqliteFile(file.display().to_string()));
            }
        }
    }
    store::connect(database_url).await.map_err(AdminError::Open)
}

/// `splitsave check`: every partnership (or the one given) is checked, and each problem is
/// written to `out` as `partnership <id>: <problem>`, then a summary line; progress goes to
/// `progress` every [`PAGE`] partnerships.
pub async fn check(
    store: &dyn Store,
    partnership: Option<Uuid>,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<CheckSummary, AdminError> {
    let mut summary = CheckSummary::default();
    let mut walk = Walk::new(partnership);
    while let Some(page) = walk.next_page(store).await? {
        for p in &page {
            let findings = check_one(store, p).await?;
            summary.partnerships += 1;
            if !findings.is_empty() {
                summary.with_problems += 1;
                summary.problems += findings.len();
            }
            for finding in findings {
                writeln!(out, "partnership {}: {finding}", p.id)?;
            }
        }
        if walk.paging() {
            writeln!(
                progress,
                "check: {} checked, {} with problems",
                counted(summary.partnerships, "partnership"),
                summary.with_problems
            )?;
        }
    }
    let checked = counted(summary.partnerships, "partnership");
    if summary.problems == 0 {
        writeln!(out, "checked {checked}: clean")?;
    } else {
        writeln!(
            out,
            "checked {checked}: {} in {}",
            counted(summary.problems, "problem"),
            counted(summary.with_problems, "partnership")
        )?;
    }
    out.flush()?;
    Ok(summary)
}

/// `splitsave rebuild-rows`: each partnership's (or the given one's) rows that differ from its
/// document are rewritten from it, in one transaction per partnership; each rebuilt partnership
/// and each one that cannot be rebuilt is written to `out`, then a summary line.
pub async fn rebuild_rows(
    store: &dyn Store,
    partnership: Option<Uuid>,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<RebuildSummary, AdminError> {
    let mut summary = RebuildSummary::default();
    let mut walk = Walk::new(partnership);
    while let Some(page) = walk.next_page(store).await? {
        for p in &page {
            summary.partnerships += 1;
            match rebuild_one(store, p).await? {
                Rebuilt::Unchanged => {}
                Rebuilt::Rewritten(differences) => {
                    let rows = diff::rows_touched(&differences);
                    summary.rebuilt += 1;
                    summary.rows_changed += rows;
                    let count = |what: fn(&What) -> bool| {
                        let of_kind: Vec<Difference> = differences
                            .iter()
                            .filter(|d| what(&d.what))
                            .cloned()
                            .collect();
                        diff::rows_touched(&of_kind)
                    };
                    writeln!(
                        out,
                        "partnership {}: {} rewritten ({} missing, {} stray, {} changed)",
                        p.id,
                        counted(rows, "row"),
                        count(|w| matches!(w, What::Missing)),
                        count(|w| matches!(w, What::Stray)),
                        count(|w| matches!(w, What::Field { .. })),
                    )?;
                }
                Rebuilt::Failed(findings) => {
                    summary.failed += 1;
                    for finding in findings {
                        writeln!(out, "partnership {}: not rebuilt: {finding}", p.id)?;
                    }
                }
            }
        }
        if walk.paging() {
            writeln!(
                progress,
                "rebuild-rows: {} done, {} rebuilt",
                counted(summary.partnerships, "partnership"),
                summary.rebuilt
            )?;
        }
    }
    writeln!(
        out,
        "rebuilt the rows of {} of {}: {} changed{}",
        summary.rebuilt,
        counted(summary.partnerships, "partnership"),
        counted(summary.rows_changed, "row"),
        if summary.failed == 0 {
            String::new()
        } else {
            format!("; {} not rebuilt", counted(summary.failed, "partnership"))
        }
    )?;
    out.flush()?;
    Ok(summary)
}

/// `1 row`, `2 rows`.
fn counted(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// The partnerships to visit: one, or all of them page by page in id order.
struct Walk {
    one: Option<Uuid>,
    after: Option<Uuid>,
    done: bool,
}

impl Walk {
    fn new(one: Option<Uuid>) -> Walk {
        Walk {
            one,
            after: None,
            done: false,
        }
    }

    /// Whether the whole database is walked (progress is worth showing).
    fn paging(&self) -> bool {
        self.one.is_none()
    }

    async fn next_page(
        &mut self,
        store: &dyn Store,
    ) -> Result<Option<Vec<PartnershipRecord>>, AdminError> {
        if self.done {
            return Ok(None);
        }
        if let Some(id) = self.one {
            self.done = true;
            return match store.partnership_by_id(id).await? {
                Some(p) => Ok(Some(vec![p])),
                None => Err(AdminError::UnknownPartnership(id)),
            };
        }
        let page = store.partnerships_after(self.after, PAGE).await?;
        self.after = page.last().map(|p| p.id);
        self.done = page.len() < PAGE as usize;
        Ok((!page.is_empty()).then_some(page))
    }
}

/// A partnership's document (and bindings) and its stored rows as of one version: both are
/// read again when a merge commits between the reads, which bumps the version.
struct Snapshot {
    version: i64,
    derived: inspect::Derived,
    rows: Vec<splitsave_sync_core::materialize::RowChange>,
}

/// Reads a partnership consistently; `None` when it kept changing for [`ATTEMPTS`] reads.
async fn read(store: &dyn Store, p: &PartnershipRecord) -> Result<Option<Snapshot>, StoreError> {
    for _ in 0..ATTEMPTS {
        let stored = store.stored_document(p.id).await?;
        let version = stored.version;
        let bindings: HashMap<String, Uuid> =
            store.actor_bindings(p.id).await?.into_iter().collect();
        let derived = inspect::derive(p, stored, &bindings);
        let rows = store.materialized_rows(p.id).await?;
        if store.document_version(p.id).await? == version {
            return Ok(Some(Snapshot {
                version,
                derived,
                rows,
            }));
        }
    }
    Ok(None)
}

/// Everything wrong with one partnership.
async fn check_one(store: &dyn Store, p: &PartnershipRecord) -> Result<Vec<Finding>, StoreError> {
    let Some(snapshot) = read(store, p).await? else {
        return Ok(vec![Finding::Unsettled]);
    };
    let mut findings = snapshot.derived.findings;
    if let Some(expected) = &snapshot.derived.expected {
        findings.extend(
            diff::compare(&snapshot.rows, expected)
                .into_iter()
                .map(Finding::Row),
        );
    }
    Ok(findings)
}

/// What rebuilding one partnership did.
enum Rebuilt {
    /// Its rows already matched its document: nothing written.
    Unchanged,
    /// Its rows were rewritten; what differed before.
    Rewritten(Vec<Difference>),
    /// Nothing written: why.
    Failed(Vec<Finding>),
}

/// Rewrites one partnership's rows from its document when they differ.
async fn rebuild_one(store: &dyn Store, p: &PartnershipRecord) -> Result<Rebuilt, StoreError> {
    for _ in 0..ATTEMPTS {
        let Some(snapshot) = read(store, p).await? else {
            break;
        };
        let Some(expected) = snapshot.derived.expected else {
            let blocking = snapshot
                .derived
                .findings
                .into_iter()
                .filter(Finding::blocks_rebuild)
                .collect();
            return Ok(Rebuilt::Failed(blocking));
        };
        let differences = diff::compare(&snapshot.rows, &expected);
        if differences.is_empty() {
            return Ok(Rebuilt::Unchanged);
        }
        match store
            .rebuild_materialized(p.id, snapshot.version, expected)
            .await
        {
            Ok(()) => return Ok(Rebuilt::Rewritten(differences)),
            // A merge committed since the read: read the newer document and compare again.
            Err(StoreError::Conflict(Conflict::Stale)) => continue,
            Err(err) => return Err(err),
        }
    }
    Ok(Rebuilt::Failed(vec![Finding::Unsettled]))
}
