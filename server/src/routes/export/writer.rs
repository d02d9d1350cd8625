//! The JSON and CSV exports written as a stream (see the parent module's doc): the parts
//! gathered before the response starts ([`Export::gather`]), the tables read a page at a time,
//! each page encoded (JSON values, or CSV records in a zip) and handed to the response body.

use super::*;

/// Everything a JSON or CSV export is made of, gathered before the response starts (so a
/// failure here is still an error status): the small parts, and where to read the tables.
pub(super) struct Export {
    store: Arc<dyn Store>,
    exported_at: DateTime<Utc>,
    profile: Profile,
    partnership: Option<PartnershipView>,
    /// The partnership whose tables are exported, and its currency: the caller's own, only when
    /// it has a document.
    tables: Option<(Uuid, String)>,
    /// The partners' names, for the authors of history entries.
    names: Option<Names>,
}

/// Why an export stopped after its response started.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    /// The client went away (the response body was dropped): nothing to report.
    #[error("the client went away")]
    Gone,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("encoding: {0}")]
    Encode(String),
}

impl From<serde_json::Error> for ExportError {
    fn from(err: serde_json::Error) -> Self {
        ExportError::Encode(err.to_string())
    }
}

impl From<csv::Error> for ExportError {
    fn from(err: csv::Error) -> Self {
        ExportError::Encode(err.to_string())
    }
}

impl From<zip::result::ZipError> for ExportError {
    fn from(err: zip::result::ZipError) -> Self {
        ExportError::Encode(err.to_string())
    }
}

impl From<io::Error> for ExportError {
    fn from(err: io::Error) -> Self {
        ExportError::Encode(err.to_string())
    }
}

impl Export {
    pub(super) async fn gather(
        state: &AppState,
        user: &AuthUser,
        exported_at: DateTime<Utc>,
    ) -> Result<Export, ApiError> {
        let profile = Profile::from(shared::load_user(state, user).await?);
        let current = state.store.current_partnership(user.user_id).await?;
        let tables = current
            .as_ref()
            .filter(|p| has_document(p.status))
            .map(|p| (p.id, p.currency.clone()));
        let names = match current.as_ref().filter(|p| has_document(p.status)) {
            Some(p) => Some(Names::of(state, p).await?),
            None => None,
        };
        let partnership = match current {
            Some(p) => Some(partnership_view(state, p, user.user_id).await?),
            None => None,
        };
        Ok(Export {
            store: state.store.clone(),
            exported_at,
            profile,
            partnership,
            tables,
            names,
        })
    }

    /// Writes the export into `out` until done, the client gone, or a failure (logged, and the
    /// body broken off).
    pub(super) async fn run(self, format: ExportFormat, mut out: Out) {
        let written = match format {
            ExportFormat::Csv => self.write_csv(&mut out).await,
            // The document is not streamed (the handler answers it whole): never asked here.
            ExportFormat::Json | ExportFormat::Automerge => self.write_json(&mut out).await,
        };
        match written {
            Ok(()) | Err(ExportError::Gone) => {}
            Err(err) => {
                tracing::error!(error = %err, format = format.as_str(), "export failed midway");
                out.break_off(err).await;
            }
        }
    }

    /// The pages of one table, or none without a partnership that has a document.
    fn pages(&self, table: ExportTable) -> Option<Pages<'_>> {
        self.tables.as_ref().map(|(pid, _)| Pages {
            store: self.store.as_ref(),
            partnership: *pid,
            table,
            after: None,
            done: false,
        })
    }

    fn currency(&self) -> &str {
        self.tables.as_ref().map_or("", |(_, c)| c.as_str())
    }

    /// The JSON export: one object, every key of which is written here, in this order (the
    /// order of [`ExportDocument`]). A new section (the document's history, say) is one more
    /// key written here and one more field there. Each table is an array written a page at a
    /// time.
    async fn write_json(&self, out: &mut Out) -> Result<(), ExportError> {
        out.buf.push(b'{');
        out.json_key(true, "format_version");
        serde_json::to_writer(&mut out.buf, &FORMAT_VERSION)?;
        out.json_key(false, "exported_at");
        serde_json::to_writer(
            &mut out.buf,
            &self
                .exported_at
                .to_rfc3339_opts(SecondsFormat::Millis, true),
        )?;
        out.json_key(false, "profile");
        serde_json::to_writer(&mut out.buf, &self.profile)?;
        out.json_key(false, "partnership");
        serde_json::to_writer(&mut out.buf, &self.partnership)?;
        for table in ExportTable::ALL {
            out.json_key(false, table.name());
            self.write_json_table(out, table).await?;
        }
        out.json_key(false, HISTORY);
        out.buf.push(b'[');
        let mut first = true;
        let mut pages = self.history();
        while let Some(entries) = pages.next().await? {
            for entry in entries {
                if !first {
                    out.buf.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut out.buf, &entry)?;
            }
            out.flush().await?;
        }
        out.buf.push(b']');
        out.buf.push(b'}');
        out.flush().await
    }

    /// The history entries a page at a time, newest first (none without a partnership that has
    /// a document).
    fn history(&self) -> HistoryPages<'_> {
        HistoryPages {
            export: self,
            before: None,
            done: self.tables.is_none(),
        }
    }

    /// One table as a JSON array of the REST views, a page at a time.
    async fn write_json_table(&self, out: &mut Out, table: ExportTable) -> Result<(), ExportError> {
        out.buf.push(b'[');
        if let Some(mut pages) = self.pages(table) {
            let mut first = true;
            while let Some(rows) = pages.next().await? {
                for row in rows {
                    if !first {
                        out.buf.push(b',');
                    }
                    first = false;
                    write_json_row(&mut out.buf, row, self.currency())?;
                }
                out.flush().await?;
            }
        }
        out.buf.push(b']');
        Ok(())
    }

    /// The CSV export: a zip of `profile.csv`, `partnership.csv` (with a partnership) and, with
    /// a partnership that has a document, one file per table, each with its header row.
    ///
    /// The zip crate writes it as a stream (`ZipWriter::new_stream`): each entry's sizes and
    /// checksum follow its data (a data descriptor) instead of being patched into its header,
    /// so the zip needs no seekable sink, neither a temporary file nor the whole archive in
    /// memory. The zip writes into a [`SharedBuf`], a buffer this task empties into the response
    /// after every page: it holds one page's compressed bytes at most. Deflating a page is a
    /// few hundred rows of CPU work, done in this task between two awaits rather than on a
    /// thread of its own.
    async fn write_csv(&self, out: &mut Out) -> Result<(), ExportError> {
        let sink = SharedBuf::default();
        let mut zip = ZipWriter::new_stream(sink.clone());
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .last_modified_time(zip_time(self.exported_at));

        // One row each: headers from the row's own fields (a profile field added later is
        // exported without a change here).
        zip.start_file("profile.csv", options)?;
        let mut csv = csv_writer(true);
        csv.writer.serialize(&self.profile)?;
        zip.write_all(&take_csv(&mut csv)?)?;
        if let Some(p) = &self.partnership {
            zip.start_file("partnership.csv", options)?;
            let mut csv = csv_writer(true);
            csv.writer.serialize(PartnershipCsv::of(p))?;
            zip.write_all(&take_csv(&mut csv)?)?;
        }
        out.buf.extend(sink.take());
        out.flush().await?;

        for table in ExportTable::ALL {
            let Some(mut pages) = self.pages(table) else {
                continue;
            };
            zip.start_file(format!("{}.csv", table.name()), options)?;
            // Headers written from the table's column list: a table may have no row to derive
            // them from.
            let mut csv = csv_writer(false);
            csv.writer.write_record(csv_header(table))?;
            while let Some(rows) = pages.next().await? {
                for row in rows {
                    write_csv_row(&mut csv, row, self.currency())?;
                }
                zip.write_all(&take_csv(&mut csv)?)?;
                out.buf.extend(sink.take());
                out.flush().await?;
            }
            zip.write_all(&take_csv(&mut csv)?)?;
        }
        if self.tables.is_some() {
            zip.start_file(format!("{HISTORY}.csv"), options)?;
            let mut csv = csv_writer(false);
            csv.writer.write_record(HistoryCsv::HEADER)?;
            let mut pages = self.history();
            while let Some(entries) = pages.next().await? {
                for entry in &entries {
                    csv.writer.serialize(HistoryCsv::of(entry))?;
                }
                zip.write_all(&take_csv(&mut csv)?)?;
                out.buf.extend(sink.take());
                out.flush().await?;
            }
            zip.write_all(&take_csv(&mut csv)?)?;
        }
        zip.finish()?;
        out.buf.extend(sink.take());
        out.flush().await
    }
}

/// A table's rows a page at a time (`Store::export_page`).
struct Pages<'a> {
    store: &'a dyn Store,
    partnership: Uuid,
    table: ExportTable,
    after: Option<ExportKey>,
    done: bool,
}

impl Pages<'_> {
    /// The next page, `None` after the last.
    async fn next(&mut self) -> Result<Option<Vec<Row>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let rows = self
            .store
            .export_page(self.partnership, self.table, self.after.as_ref(), PAGE_ROWS)
            .await?;
        self.done = rows.len() < PAGE_ROWS as usize;
        match rows.last() {
            Some(last) => self.after = Some(ExportKey::of(last)),
            None => return Ok(None),
        }
        Ok(Some(rows))
    }
}

/// The key of the history section in the JSON export, and its file name in the CSV one.
const HISTORY: &str = "history";

/// The history entries a page at a time, newest first (`Store::history_page`).
struct HistoryPages<'a> {
    export: &'a Export,
    before: Option<i64>,
    done: bool,
}

impl HistoryPages<'_> {
    /// The next page, `None` after the last.
    async fn next(&mut self) -> Result<Option<Vec<HistoryEntryView>>, StoreError> {
        let (Some((pid, _)), false) = (self.export.tables.as_ref(), self.done) else {
            return Ok(None);
        };
        let query = crate::store::HistoryQuery {
            before_id: self.before,
            limit: PAGE_ROWS,
            ..Default::default()
        };
        let records = self.export.store.history_page(*pid, &query).await?;
        self.done = records.len() < PAGE_ROWS as usize;
        let Some(last) = records.last() else {
            return Ok(None);
        };
        self.before = Some(last.id);
        let none = Names::empty();
        let names = self.export.names.as_ref().unwrap_or(&none);
        Ok(Some(
            records.iter().map(|r| history::view(r, names)).collect(),
        ))
    }
}

/// A history entry as a row of `history.csv`: the author in three columns, the field changes
/// as their JSON array.
#[derive(Serialize)]
struct HistoryCsv<'a> {
    id: &'a str,
    change: &'a str,
    author_type: &'a str,
    author_id: Option<Uuid>,
    author_name: &'a str,
    reason: Option<&'a str>,
    changed_at: Option<&'a str>,
    received_at: &'a str,
    received_at_exact: bool,
    kind: &'a str,
    entity_id: &'a str,
    action: &'a str,
    changes: String,
}

impl CsvRow for HistoryCsv<'_> {
    const HEADER: &'static [&'static str] = &[
        "id",
        "change",
        "author_type",
        "author_id",
        "author_name",
        "reason",
        "changed_at",
        "received_at",
        "received_at_exact",
        "kind",
        "entity_id",
        "action",
        "changes",
    ];
}

impl<'a> HistoryCsv<'a> {
    fn of(e: &'a HistoryEntryView) -> Self {
        HistoryCsv {
            id: &e.id,
            change: &e.change,
            author_type: &e.author.kind,
            author_id: e.author.user_id,
            author_name: &e.author.name,
            reason: e.reason.as_deref(),
            changed_at: e.changed_at.as_deref(),
            received_at: &e.received_at,
            received_at_exact: e.received_at_exact,
            kind: &e.kind,
            entity_id: &e.entity_id,
            action: &e.action,
            changes: serde_json::to_string(&e.changes).unwrap_or_default(),
        }
    }
}

/// The response body's end of an export: encoded bytes gathered in `buf`, handed over in chunks
/// through a bounded channel (the back-pressure that keeps a slow client from making the export
/// read ahead).
pub(super) struct Out {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buf: Vec<u8>,
}

impl Out {
    pub(super) fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        Out {
            tx,
            buf: Vec::with_capacity(CHUNK_BYTES),
        }
    }

    /// `"key":` after a comma unless it is the object's first.
    fn json_key(&mut self, first: bool, key: &str) {
        if !first {
            self.buf.push(b',');
        }
        // Keys are fixed ASCII names: no escaping needed.
        self.buf.push(b'"');
        self.buf.extend_from_slice(key.as_bytes());
        self.buf.extend_from_slice(b"\":");
    }

    /// Hands what is gathered to the body, waiting while the client is behind.
    async fn flush(&mut self) -> Result<(), ExportError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buf,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.tx.send(Ok(chunk)).await.map_err(|_| ExportError::Gone)
    }

    /// Ends the body with an error: the connection is closed without the body's proper end.
    async fn break_off(self, err: ExportError) {
        let _ = self.tx.send(Err(io::Error::other(err.to_string()))).await;
    }
}

/// One row as its REST view, JSON.
fn write_json_row(buf: &mut Vec<u8>, row: Row, currency: &str) -> serde_json::Result<()> {
    match row {
        Row::Expense(r) => serde_json::to_writer(buf, &ExpenseView::from(r)),
        Row::Goal(r) => serde_json::to_writer(buf, &GoalView::from(r)),
        Row::GoalContribution(r) => serde_json::to_writer(buf, &GoalContributionView::from(r)),
        Row::Contribution(r) => serde_json::to_writer(buf, &MonthView::of(r, currency)),
        Row::Approval(r) => serde_json::to_writer(buf, &ApprovalView::from(r)),
        Row::Message(r) => serde_json::to_writer(buf, &MessageView::from(r)),
    }
}

// ---- CSV ----------------------------------------------------------------------------------------

/// Where the CSV writers and the zip write: a buffer shared with the export task, which takes
/// the bytes out after every page (a writer owns its sink, so the task keeps a second handle on
/// it). Never locked across an await.
#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);

impl SharedBuf {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        // Nothing panics while holding it; a poisoned buffer is still a buffer.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.lock())
    }
}

impl io::Write for SharedBuf {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.lock().extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A CSV writer (RFC 4180 quoting) into memory, whose bytes [`take_csv`] takes out to go on to
/// the zip page by page.
struct CsvOut {
    writer: csv::Writer<SharedBuf>,
    buf: SharedBuf,
}

fn csv_writer(headers_from_rows: bool) -> CsvOut {
    let buf = SharedBuf::default();
    CsvOut {
        writer: csv::WriterBuilder::new()
            .has_headers(headers_from_rows)
            .from_writer(buf.clone()),
        buf,
    }
}

/// What the CSV writer has written so far, taken out of it.
fn take_csv(csv: &mut CsvOut) -> io::Result<Vec<u8>> {
    csv.writer.flush()?;
    Ok(csv.buf.take())
}

/// The zip entries' modification time: the export's, in UTC (the format's range is 1980–2107).
fn zip_time(at: DateTime<Utc>) -> zip::DateTime {
    u16::try_from(at.year())
        .ok()
        .and_then(|year| {
            zip::DateTime::from_date_and_time(
                year,
                at.month() as u8,
                at.day() as u8,
                at.hour() as u8,
                at.minute() as u8,
                at.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

/// A CSV row type of a table, with its columns (the header row, which a table without rows
/// still has); `tests::csv_headers_are_the_rows_fields` keeps them equal to the fields.
trait CsvRow: Serialize {
    const HEADER: &'static [&'static str];
}

impl CsvRow for ExpenseView {
    const HEADER: &'static [&'static str] = &[
        "id",
        "name",
        "amount",
        "category",
        "frequency",
        "added_by",
        "status",
        "created_at",
        "updated_at",
    ];
}

impl CsvRow for GoalView {
    const HEADER: &'static [&'static str] = &[
        "id",
        "name",
        "target_amount",
        "saved_amount",
        "goal_type",
        "priority",
        "added_by",
        "status",
        "created_at",
        "updated_at",
    ];
}

impl CsvRow for GoalContributionView {
    const HEADER: &'static [&'static str] = &["id", "goal_id", "user_id", "amount", "created_at"];
}

impl CsvRow for MessageView {
    const HEADER: &'static [&'static str] = &[
        "id",
        "sender_id",
        "text",
        "message_type",
        "read_by_recipient",
        "created_at",
    ];
}

/// `contributions.csv`: one row per partner's share of a month, the month's columns repeated
/// (CSV has no nesting; a month without shares, which the server never writes, is one row with
/// empty share columns).
#[derive(Serialize)]
struct MonthShareCsv<'a> {
    month: &'a str,
    currency: &'a str,
    total_required: Decimal,
    user_id: Option<Uuid>,
    amount: Option<Decimal>,
    paid: Option<bool>,
    paid_at: Option<&'a str>,
}

impl<'a> MonthShareCsv<'a> {
    fn of(month: &'a MonthView, share: Option<&'a ShareView>) -> Self {
        MonthShareCsv {
            month: &month.month,
            currency: &month.currency,
            total_required: month.total_required,
            user_id: share.map(|s| s.user_id),
            amount: share.map(|s| s.amount),
            paid: share.map(|s| s.paid),
            paid_at: share.and_then(|s| s.paid_at.as_deref()),
        }
    }
}

impl CsvRow for MonthShareCsv<'_> {
    const HEADER: &'static [&'static str] = &[
        "month",
        "currency",
        "total_required",
        "user_id",
        "amount",
        "paid",
        "paid_at",
    ];
}

/// `approval_requests.csv`: the view, with `request_data` as its JSON text.
#[derive(Serialize)]
struct ApprovalCsv {
    id: Uuid,
    requested_by: Uuid,
    request_type: String,
    target_id: Uuid,
    request_data: String,
    message: Option<String>,
    status: String,
    responded_by: Option<Uuid>,
    responded_at: Option<String>,
    created_at: String,
}

impl CsvRow for ApprovalCsv {
    const HEADER: &'static [&'static str] = &[
        "id",
        "requested_by",
        "request_type",
        "target_id",
        "request_data",
        "message",
        "status",
        "responded_by",
        "responded_at",
        "created_at",
    ];
}

impl ApprovalCsv {
    fn of(a: ApprovalView) -> Self {
        ApprovalCsv {
            id: a.id,
            requested_by: a.requested_by,
            request_type: a.request_type,
            target_id: a.target_id,
            request_data: a.request_data.to_string(),
            message: a.message,
            status: a.status,
            responded_by: a.responded_by,
            responded_at: a.responded_at,
            created_at: a.created_at,
        }
    }
}

/// `partnership.csv`: the view with the partner's fields flattened (`partner_id`, …).
#[derive(Serialize)]
struct PartnershipCsv<'a> {
    id: Uuid,
    status: &'static str,
    role: &'static str,
    partner_id: Option<Uuid>,
    partner_name: Option<&'a str>,
    partner_email: Option<&'a str>,
    partner_avatar_url: Option<&'a str>,
    invitee_email: &'a str,
    currency: &'a str,
    approval_threshold: Decimal,
    document_url: Option<&'a str>,
    created_at: DateTime<Utc>,
    accepted_at: Option<DateTime<Utc>>,
}

impl<'a> PartnershipCsv<'a> {
    fn of(p: &'a PartnershipView) -> Self {
        PartnershipCsv {
            id: p.id,
            status: p.status.as_str(),
            role: p.role,
            partner_id: p.partner.as_ref().map(|x| x.id),
            partner_name: p.partner.as_ref().map(|x| x.name.as_str()),
            partner_email: p.partner.as_ref().map(|x| x.email.as_str()),
            partner_avatar_url: p.partner.as_ref().and_then(|x| x.avatar_url.as_deref()),
            invitee_email: &p.invitee_email,
            currency: &p.currency,
            approval_threshold: p.approval_threshold,
            document_url: p.document_url.as_deref(),
            created_at: p.created_at,
            accepted_at: p.accepted_at,
        }
    }
}

/// The header row of a table's file.
fn csv_header(table: ExportTable) -> &'static [&'static str] {
    match table {
        ExportTable::Expenses => ExpenseView::HEADER,
        ExportTable::Goals => GoalView::HEADER,
        ExportTable::GoalContributions => GoalContributionView::HEADER,
        ExportTable::Contributions => MonthShareCsv::HEADER,
        ExportTable::ApprovalRequests => ApprovalCsv::HEADER,
        ExportTable::Messages => MessageView::HEADER,
    }
}

/// One row (a month: one per share) as its REST view, CSV.
fn write_csv_row(csv: &mut CsvOut, row: Row, currency: &str) -> Result<(), csv::Error> {
    let csv = &mut csv.writer;
    match row {
        Row::Expense(r) => csv.serialize(ExpenseView::from(r)),
        Row::Goal(r) => csv.serialize(GoalView::from(r)),
        Row::GoalContribution(r) => csv.serialize(GoalContributionView::from(r)),
        Row::Approval(r) => csv.serialize(ApprovalCsv::of(ApprovalView::from(r))),
        Row::Message(r) => csv.serialize(MessageView::from(r)),
        Row::Contribution(r) => {
            let month = MonthView::of(r, currency);
            if month.shares.is_empty() {
                return csv.serialize(MonthShareCsv::of(&month, None));
            }
            for share in &month.shares {
                csv.serialize(MonthShareCsv::of(&month, Some(share)))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header a CSV writer derives from the row's fields.
    fn derived_header(row: impl Serialize) -> Vec<String> {
        let mut csv = csv_writer(true);
        csv.writer.serialize(row).expect("serialize");
        let bytes = take_csv(&mut csv).expect("flush");
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        reader
            .headers()
            .expect("headers")
            .iter()
            .map(str::to_string)
            .collect()
    }

    fn owned(header: &[&str]) -> Vec<String> {
        header.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn csv_headers_are_the_rows_fields() {
        let id = Uuid::nil();
        let at = "2026-11-25T10:00:00.000Z".to_string();
        let expense = ExpenseView {
            id,
            name: "Rent".into(),
            amount: Decimal::new(120000, 2),
            category: "housing".into(),
            frequency: "monthly".into(),
            added_by: id,
            status: "active".into(),
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        assert_eq!(derived_header(expense), owned(ExpenseView::HEADER));
        let goal = GoalView {
            id,
            name: "Trip".into(),
            target_amount: Decimal::ONE,
            saved_amount: Decimal::ZERO,
            goal_type: "vacation".into(),
            priority: "low".into(),
            added_by: id,
            status: "active".into(),
            created_at: at.clone(),
            updated_at: at.clone(),
        };
        assert_eq!(derived_header(goal), owned(GoalView::HEADER));
        let contribution = GoalContributionView {
            id,
            goal_id: id,
            user_id: id,
            amount: Decimal::ONE,
            created_at: at.clone(),
        };
        assert_eq!(
            derived_header(contribution),
            owned(GoalContributionView::HEADER)
        );
        let message = MessageView {
            id,
            sender_id: id,
            text: "hi".into(),
            message_type: "text".into(),
            read_by_recipient: false,
            created_at: at.clone(),
        };
        assert_eq!(derived_header(message), owned(MessageView::HEADER));
        let entry = HistoryEntryView {
            id: "1".into(),
            change: "ab".into(),
            author: history::HistoryAuthorView {
                kind: "user".into(),
                user_id: Some(id),
                name: "Ann".into(),
            },
            reason: None,
            changed_at: Some(at.clone()),
            received_at: at.clone(),
            received_at_exact: true,
            kind: "expense".into(),
            entity_id: id.to_string(),
            action: "created".into(),
            changes: Vec::new(),
        };
        assert_eq!(
            derived_header(HistoryCsv::of(&entry)),
            owned(HistoryCsv::HEADER)
        );
        let share = MonthShareCsv {
            month: "2026-11",
            currency: "USD",
            total_required: Decimal::ONE,
            user_id: Some(id),
            amount: Some(Decimal::ONE),
            paid: Some(true),
            paid_at: Some(&at),
        };
        assert_eq!(derived_header(share), owned(MonthShareCsv::HEADER));
        let approval = ApprovalCsv {
            id,
            requested_by: id,
            request_type: "expense_add".into(),
            target_id: id,
            request_data: "{}".into(),
            message: None,
            status: "pending".into(),
            responded_by: None,
            responded_at: None,
            created_at: at,
        };
        assert_eq!(derived_header(approval), owned(ApprovalCsv::HEADER));
    }

    #[test]
    fn an_unknown_or_missing_format_is_a_422_naming_format() {
        for value in [None, Some("xml"), Some("JSON"), Some("")] {
            match ExportFormat::parse(value) {
                Err(ApiError::Validation(fields)) => {
                    assert!(fields.0.contains_key("format"), "{value:?}: {fields:?}")
                }
                other => panic!("{value:?}: {other:?}"),
            }
        }
        for format in ExportFormat::ALL {
            assert_eq!(
                ExportFormat::parse(Some(format.as_str())).ok(),
                Some(format)
            );
        }
    }

    #[test]
    fn zip_times_outside_the_formats_range_fall_back() {
        let at = DateTime::parse_from_rfc3339("2026-11-25T10:20:31Z")
            .expect("time")
            .with_timezone(&Utc);
        let time = zip_time(at);
        assert_eq!((time.year(), time.month(), time.day()), (2026, 11, 25));
        let ancient = DateTime::parse_from_rfc3339("1970-01-01T00:00:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(zip_time(ancient), zip::DateTime::default());
    }
}
