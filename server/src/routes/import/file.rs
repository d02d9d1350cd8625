//! Reading an import's body: the JSON export parsed into the REST views it is made of, turned
//! into sync-core's typed [`Import`] for the caller's partnership, and checked whole.
//!
//! # What is refused, and how
//!
//! - Not JSON at all (a syntax error, a truncated file): 400 `bad_request`, the message naming
//!   line and column.
//! - JSON of the wrong shape (a missing key, a number where a string belongs, an id that is not
//!   a UUID, an amount that is not a decimal string): 422 `validation_failed` naming the value's
//!   JSON path, e.g. `{"expenses[3].amount": ["invalid type: …"]}` (the first such value only:
//!   parsing stops there).
//! - Values that break a rule: 422 naming every problem by its path, at most [`MAX_PROBLEMS`]
//!   of them. First what each value must be (an unknown category, an amount with more decimals
//!   than the currency has, a time that is not RFC 3339, a third user); once every value reads,
//!   the rules across items ([`Import::check`]: a duplicate id, a goal contribution to a goal
//!   not in the file, …). Another currency is the only problem reported when it occurs: no
//!   amount can be judged against the wrong one.
//!
//! # Users
//!
//! The file names users of the couple that exported it: `profile.id` (the exporter) and
//! `partnership.partner.id` (their partner). Each becomes one of the caller's partnership's two
//! members: a file user who *is* a member stays that member (restoring on the same server, by
//! either partner); the others take the members left, the exporter first going to the caller
//! (moving servers: whoever imports their own export keeps their own items). Any other user id
//! in an item is refused as a third user.
//!
//! # Currency
//!
//! Every amount is in the exporting partnership's currency (`partnership.currency`, and each
//! month's `currency`); the partnership imported into keeps its own, so the two must be the
//! same: amounts are not converted.

use std::collections::BTreeMap;

use chrono::DateTime;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::Value;
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, UserId};
use splitsave_sync_core::import::{CheckedImport, Import, Section, Target};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::time::Millis;
use uuid::Uuid;

use crate::error::{ApiError, FieldErrors};
use crate::routes::approvals::ApprovalView;
use crate::routes::contributions::MonthView;
use crate::routes::expenses::{AmountInput, ExpenseView};
use crate::routes::export::{GoalContributionView, FORMAT_VERSION};
use crate::routes::goals::GoalView;
use crate::routes::messages::MessageView;

/// The most problems a refusal lists (a file broken everywhere would otherwise answer with
/// one per item); the rest are counted under `more`.
pub const MAX_PROBLEMS: usize = 100;

/// The JSON export as the import reads it: the export's own views for the items; of the
/// profile and partnership only what the import uses (the partnership keeps its settings, so
/// the rest of them is not read, and not refused). Keys not listed here are ignored. Every key
/// is optional to serde so that a missing one is reported by name with the other problems.
#[derive(Debug, Deserialize)]
struct ExportFile {
    format_version: Option<u32>,
    profile: Option<FileUser>,
    partnership: Option<FilePartnership>,
    expenses: Option<Vec<ExpenseView>>,
    goals: Option<Vec<GoalView>>,
    goal_contributions: Option<Vec<GoalContributionView>>,
    contributions: Option<Vec<MonthView>>,
    approval_requests: Option<Vec<ApprovalView>>,
    messages: Option<Vec<MessageView>>,
}

/// `profile` (or `partnership.partner`): the user's id.
#[derive(Debug, Deserialize)]
struct FileUser {
    id: Uuid,
}

/// `partnership`: its currency and the partner.
#[derive(Debug, Deserialize)]
struct FilePartnership {
    currency: String,
    partner: Option<FileUser>,
}

/// The partnership an import goes into, as the handler found it.
#[derive(Clone, Copy, Debug)]
pub struct Destination {
    /// Its currency.
    pub currency: Currency,
    /// The importing member.
    pub caller: UserId,
    /// The other member.
    pub partner: UserId,
    /// The server's clock (no imported time may be later, beyond the tolerated skew).
    pub now: Millis,
}

/// The body read, converted and checked: the import to write and the user mapping (file id →
/// member), or the refusal naming everything wrong.
pub fn read(
    body: &[u8],
    into: &Destination,
) -> Result<(CheckedImport, Vec<(Uuid, UserId)>), ApiError> {
    let file = parse(body)?;
    let mut problems = Problems::default();
    let Some(sections) = sections(file, &mut problems) else {
        return Err(problems.into_error());
    };
    let users = users(&sections, into, &mut problems);
    if let Some(other) = sections
        .currency
        .as_deref()
        .filter(|c| *c != into.currency.code())
    {
        // Every amount would be judged against the wrong currency: that is the one problem.
        problems.push(
            "partnership.currency",
            format!(
                "is {other}, but this partnership's currency is {}: amounts are not converted",
                into.currency.code()
            ),
        );
    }
    let Some(users) = users.filter(|_| problems.is_empty()) else {
        return Err(problems.into_error());
    };
    let mut convert = Convert {
        currency: into.currency,
        users: &users,
        problems,
    };
    let import = convert.import(sections);
    let mut problems = convert.problems;
    if !problems.is_empty() {
        return Err(problems.into_error());
    }
    let target = Target {
        currency: into.currency,
        members: [into.caller, into.partner],
        now: into.now,
    };
    match import.check(&target) {
        Ok(checked) => Ok((checked, users)),
        Err(found) => {
            for p in found {
                problems.push(p.path, p.message);
            }
            Err(problems.into_error())
        }
    }
}

/// The body as an [`ExportFile`]: 400 when it is not JSON, 422 naming the path of the first
/// value of the wrong shape.
fn parse(body: &[u8]) -> Result<ExportFile, ApiError> {
    let not_json = |err: serde_json::Error| {
        ApiError::BadRequest(format!("the body is not a JSON export: {err}"))
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let file = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if !inner.is_data() {
            return not_json(inner);
        }
        let message = inner.to_string();
        // serde's "missing field `x`" is the path of `x`, which is required.
        let (path, message) = match message.strip_prefix("missing field `") {
            Some(rest) => {
                let field = rest.split('`').next().unwrap_or_default();
                match path.as_str() {
                    "." => (field.to_string(), "is required".to_string()),
                    _ => (format!("{path}.{field}"), "is required".to_string()),
                }
            }
            None if path == "." => ("body".to_string(), message),
            None => (path, message),
        };
        ApiError::Validation(FieldErrors::default().add(path, message))
    })?;
    // Anything after the object is not JSON any more.
    de.end().map_err(not_json)?;
    Ok(file)
}

/// Problems by JSON path, in the order found.
#[derive(Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push((path.into(), message.into()));
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The 422, listing the first [`MAX_PROBLEMS`].
    fn into_error(self) -> ApiError {
        let total = self.0.len();
        let mut fields = FieldErrors::default();
        for (path, message) in self.0.into_iter().take(MAX_PROBLEMS) {
            fields.push(path, message);
        }
        if total > MAX_PROBLEMS {
            fields.push(
                "more",
                format!("{} more problems are not listed", total - MAX_PROBLEMS),
            );
        }
        ApiError::Validation(fields)
    }
}

/// The parts of the file the import uses, every required key present.
struct Sections {
    exporter: Uuid,
    partner: Option<Uuid>,
    currency: Option<String>,
    expenses: Vec<ExpenseView>,
    goals: Vec<GoalView>,
    goal_contributions: Vec<GoalContributionView>,
    months: Vec<MonthView>,
    approvals: Vec<ApprovalView>,
    messages: Vec<MessageView>,
}

impl Sections {
    fn has_items(&self) -> bool {
        !(self.expenses.is_empty()
            && self.goals.is_empty()
            && self.goal_contributions.is_empty()
            && self.months.is_empty()
            && self.approvals.is_empty()
            && self.messages.is_empty())
    }
}

fn sections(file: ExportFile, problems: &mut Problems) -> Option<Sections> {
    match file.format_version {
        None => problems.push("format_version", "is required"),
        Some(FORMAT_VERSION) => {}
        Some(other) => problems.push(
            "format_version",
            format!("is {other}: this server reads exports of version {FORMAT_VERSION}"),
        ),
    }
    fn required<T>(problems: &mut Problems, key: &str, v: Option<T>) -> Option<T> {
        if v.is_none() {
            problems.push(key, "is required");
        }
        v
    }
    let profile = required(problems, "profile", file.profile);
    let expenses = required(problems, "expenses", file.expenses);
    let goals = required(problems, "goals", file.goals);
    let goal_contributions = required(problems, "goal_contributions", file.goal_contributions);
    let months = required(problems, "contributions", file.contributions);
    let approvals = required(problems, "approval_requests", file.approval_requests);
    let messages = required(problems, "messages", file.messages);
    let sections = Sections {
        exporter: profile?.id,
        partner: file
            .partnership
            .as_ref()
            .and_then(|p| p.partner.as_ref())
            .map(|u| u.id),
        currency: file.partnership.map(|p| p.currency),
        expenses: expenses?,
        goals: goals?,
        goal_contributions: goal_contributions?,
        months: months?,
        approvals: approvals?,
        messages: messages?,
    };
    if sections.has_items() && sections.currency.is_none() {
        problems.push(
            "partnership",
            "is required when the file has items (their currency and the partner)",
        );
    }
    problems.is_empty().then_some(sections)
}

/// The file's users mapped onto the members (the rule in the module documentation).
fn users(s: &Sections, into: &Destination, problems: &mut Problems) -> Option<Vec<(Uuid, UserId)>> {
    if s.partner == Some(s.exporter) {
        problems.push(
            "partnership.partner.id",
            "is the exporter's own id (profile.id)",
        );
        return None;
    }
    let file_users: Vec<Uuid> = std::iter::once(s.exporter).chain(s.partner).collect();
    let members = [into.caller, into.partner];
    let mut mapped: Vec<(Uuid, Option<UserId>)> = file_users
        .iter()
        .map(|u| (*u, members.iter().copied().find(|m| m.0 == *u)))
        .collect();
    let taken: Vec<UserId> = mapped.iter().filter_map(|(_, to)| *to).collect();
    let mut free = members.into_iter().filter(|m| !taken.contains(m));
    for (_, to) in mapped.iter_mut().filter(|(_, to)| to.is_none()) {
        *to = free.next();
    }
    Some(
        mapped
            .into_iter()
            .filter_map(|(from, to)| to.map(|to| (from, to)))
            .collect(),
    )
}

/// The conversion of the views into sync-core's entities, collecting problems.
struct Convert<'a> {
    currency: Currency,
    users: &'a [(Uuid, UserId)],
    problems: Problems,
}

impl Convert<'_> {
    fn import(&mut self, s: Sections) -> Import {
        let mut import = Import::default();
        for (i, v) in s.expenses.into_iter().enumerate() {
            if let Some(e) = self.expense(i, v) {
                import.expenses.push(e);
            }
        }
        for (i, v) in s.goals.into_iter().enumerate() {
            if let Some(g) = self.goal(i, v) {
                import.goals.push(g);
            }
        }
        for (i, v) in s.goal_contributions.into_iter().enumerate() {
            if let Some(c) = self.goal_contribution(i, v) {
                import.goal_contributions.push(c);
            }
        }
        for (i, v) in s.months.into_iter().enumerate() {
            if let Some(m) = self.month(i, v) {
                import.months.push(m);
            }
        }
        for (i, v) in s.approvals.into_iter().enumerate() {
            if let Some(a) = self.approval(i, v) {
                import.approvals.push(a);
            }
        }
        for (i, v) in s.messages.into_iter().enumerate() {
            if let Some(m) = self.message(i, v) {
                import.messages.push(m);
            }
        }
        import
    }

    fn user(&mut self, path: String, id: Uuid) -> Option<UserId> {
        let found = self
            .users
            .iter()
            .find(|(from, _)| *from == id)
            .map(|(_, to)| *to);
        if found.is_none() {
            self.problems.push(
                path,
                format!(
                    "names user {id}, who is neither the exporter (profile.id) nor their \
                     partner (partnership.partner.id)"
                ),
            );
        }
        found
    }

    fn time(&mut self, path: String, text: &str) -> Option<Millis> {
        match DateTime::parse_from_rfc3339(text) {
            Ok(t) => Some(Millis(t.timestamp_millis())),
            Err(_) => {
                self.problems.push(
                    path,
                    "must be an RFC 3339 time such as \"2026-11-25T10:00:00.000Z\"",
                );
                None
            }
        }
    }

    /// An amount in minor units: at most the currency's decimals, within its range (the sign is
    /// the check's to judge, per field).
    fn amount(&mut self, path: String, amount: Decimal) -> Option<MinorUnits> {
        match self.currency.to_minor(amount) {
            Ok(m) => Some(m),
            Err(e) => {
                self.problems.push(path, e.to_string());
                None
            }
        }
    }

    fn spelling<T: Copy + std::fmt::Display>(
        &mut self,
        path: String,
        raw: &str,
        parse: fn(&str) -> Option<T>,
        all: &[T],
    ) -> Option<T> {
        let parsed = parse(raw);
        if parsed.is_none() {
            let values: Vec<String> = all.iter().map(ToString::to_string).collect();
            self.problems
                .push(path, format!("must be one of {}", values.join(", ")));
        }
        parsed
    }

    fn expense(&mut self, i: usize, v: ExpenseView) -> Option<Expense> {
        let at = |f: &str| Section::Expenses.path(i, f);
        let amount = self.amount(at("amount"), v.amount);
        let category = self.spelling(at("category"), &v.category, Category::parse, Category::ALL);
        let frequency = self.spelling(
            at("frequency"),
            &v.frequency,
            Frequency::parse,
            Frequency::ALL,
        );
        let added_by = self.user(at("added_by"), v.added_by);
        let status = self.spelling(at("status"), &v.status, ItemStatus::parse, ItemStatus::ALL);
        let created_at = self.time(at("created_at"), &v.created_at);
        let updated_at = self.time(at("updated_at"), &v.updated_at);
        Some(Expense {
            id: EntityId(v.id),
            name: v.name,
            amount: amount?,
            category: category?,
            frequency: frequency?,
            added_by: added_by?,
            status: status?,
            created_at: created_at?,
            updated_at: updated_at?,
        })
    }

    fn goal(&mut self, i: usize, v: GoalView) -> Option<Goal> {
        let at = |f: &str| Section::Goals.path(i, f);
        let target_amount = self.amount(at("target_amount"), v.target_amount);
        let saved_amount = self.amount(at("saved_amount"), v.saved_amount);
        let goal_type = self.spelling(
            at("goal_type"),
            &v.goal_type,
            GoalType::parse,
            GoalType::ALL,
        );
        let priority = self.spelling(at("priority"), &v.priority, Priority::parse, Priority::ALL);
        let added_by = self.user(at("added_by"), v.added_by);
        let status = self.spelling(at("status"), &v.status, ItemStatus::parse, ItemStatus::ALL);
        let created_at = self.time(at("created_at"), &v.created_at);
        let updated_at = self.time(at("updated_at"), &v.updated_at);
        Some(Goal {
            id: EntityId(v.id),
            name: v.name,
            target_amount: target_amount?,
            saved_amount: saved_amount?,
            goal_type: goal_type?,
            priority: priority?,
            added_by: added_by?,
            status: status?,
            created_at: created_at?,
            updated_at: updated_at?,
        })
    }

    fn goal_contribution(&mut self, i: usize, v: GoalContributionView) -> Option<GoalContribution> {
        let at = |f: &str| Section::GoalContributions.path(i, f);
        let user_id = self.user(at("user_id"), v.user_id);
        let amount = self.amount(at("amount"), v.amount);
        let created_at = self.time(at("created_at"), &v.created_at);
        Some(GoalContribution {
            id: EntityId(v.id),
            goal_id: EntityId(v.goal_id),
            user_id: user_id?,
            amount: amount?,
            created_at: created_at?,
        })
    }

    fn month(&mut self, i: usize, v: MonthView) -> Option<MonthContribution> {
        let at = |f: &str| Section::Months.path(i, f);
        let month = Month::parse(&v.month).ok();
        if month.is_none() {
            self.problems
                .push(at("month"), "must be a month such as \"2026-11\"");
        }
        if v.currency != self.currency.code() {
            self.problems.push(
                at("currency"),
                format!(
                    "is {}, but this partnership's currency is {}",
                    v.currency,
                    self.currency.code()
                ),
            );
        }
        let total_required = self.amount(at("total_required"), v.total_required);
        let mut amounts = BTreeMap::new();
        let mut paid = BTreeMap::new();
        let mut ok = true;
        for (j, share) in v.shares.into_iter().enumerate() {
            let at = |f: &str| at(&format!("shares[{j}].{f}"));
            let user = self.user(at("user_id"), share.user_id);
            let amount = self.amount(at("amount"), share.amount);
            let paid_at = match (share.paid, share.paid_at.as_deref()) {
                (true, Some(t)) => self.time(at("paid_at"), t).map(Some),
                (false, None) => Some(None),
                (true, None) => {
                    self.problems
                        .push(at("paid_at"), "is required when paid is true");
                    None
                }
                (false, Some(_)) => {
                    self.problems
                        .push(at("paid_at"), "must be null when paid is false");
                    None
                }
            };
            let (Some(user), Some(amount), Some(paid_at)) = (user, amount, paid_at) else {
                ok = false;
                continue;
            };
            if amounts.insert(user, amount).is_some() {
                self.problems
                    .push(at("user_id"), "has a share of this month already");
                ok = false;
            }
            paid.insert(user, paid_at);
        }
        ok.then_some(())?;
        Some(MonthContribution {
            month: month?,
            total_required: total_required?,
            amounts,
            paid,
        })
    }

    fn approval(&mut self, i: usize, v: ApprovalView) -> Option<Approval> {
        let at = |f: &str| Section::Approvals.path(i, f);
        let requested_by = self.user(at("requested_by"), v.requested_by);
        let request_type = self.spelling(
            at("request_type"),
            &v.request_type,
            RequestType::parse,
            RequestType::ALL,
        );
        let request_data =
            request_type.and_then(|t| self.request_data(&at("request_data"), t, &v.request_data));
        let status = self.spelling(
            at("status"),
            &v.status,
            ApprovalStatus::parse,
            ApprovalStatus::ALL,
        );
        let responded_by = match v.responded_by {
            Some(u) => self.user(at("responded_by"), u).map(Some),
            None => Some(None),
        };
        let responded_at = match v.responded_at.as_deref() {
            Some(t) => self.time(at("responded_at"), t).map(Some),
            None => Some(None),
        };
        let created_at = self.time(at("created_at"), &v.created_at);
        Some(Approval {
            id: EntityId(v.id),
            requested_by: requested_by?,
            request_type: request_type?,
            target_id: EntityId(v.target_id),
            request_data: request_data?,
            message: v.message,
            status: status?,
            responded_by: responded_by?,
            responded_at: responded_at?,
            created_at: created_at?,
        })
    }

    /// `request_data`: an object of the request type's fields, as the export writes it
    /// (amounts as decimal strings, enums as their spellings).
    fn request_data(&mut self, path: &str, t: RequestType, v: &Value) -> Option<RequestData> {
        let Some(object) = v.as_object() else {
            self.problems.push(path, "must be an object");
            return None;
        };
        let expense = matches!(t, RequestType::ExpenseAdd | RequestType::ExpenseEdit);
        let mut e = ExpenseFields::default();
        let mut g = GoalFields::default();
        let mut ok = true;
        for (key, value) in object {
            let at = format!("{path}.{key}");
            let Some(text) = value.as_str() else {
                self.problems.push(at, "must be a string");
                ok = false;
                continue;
            };
            let parsed = match (expense, key.as_str()) {
                (_, "name") => {
                    e.name = Some(text.to_string());
                    g.name = Some(text.to_string());
                    true
                }
                (true, "amount") => {
                    e.amount = self.decimal_text(&at, text);
                    e.amount.is_some()
                }
                (true, "category") => {
                    e.category = self.spelling(at, text, Category::parse, Category::ALL);
                    e.category.is_some()
                }
                (true, "frequency") => {
                    e.frequency = self.spelling(at, text, Frequency::parse, Frequency::ALL);
                    e.frequency.is_some()
                }
                (false, "target_amount") => {
                    g.target_amount = self.decimal_text(&at, text);
                    g.target_amount.is_some()
                }
                (false, "goal_type") => {
                    g.goal_type = self.spelling(at, text, GoalType::parse, GoalType::ALL);
                    g.goal_type.is_some()
                }
                (false, "priority") => {
                    g.priority = self.spelling(at, text, Priority::parse, Priority::ALL);
                    g.priority.is_some()
                }
                _ => {
                    self.problems
                        .push(at, format!("is not a field of a {t} request"));
                    false
                }
            };
            ok &= parsed;
        }
        let data = if expense {
            RequestData::Expense(e)
        } else {
            RequestData::Goal(g)
        };
        ok.then_some(data)
    }

    /// A decimal string (`"12.50"`) in minor units.
    fn decimal_text(&mut self, path: &str, text: &str) -> Option<MinorUnits> {
        match AmountInput::parse_text(text) {
            AmountInput::Decimal(d) => self.amount(path.to_string(), d),
            AmountInput::NotADecimal => {
                self.problems
                    .push(path, "must be a decimal amount such as \"12.50\"");
                None
            }
        }
    }

    fn message(&mut self, i: usize, v: MessageView) -> Option<Message> {
        let at = |f: &str| Section::Messages.path(i, f);
        let sender_id = self.user(at("sender_id"), v.sender_id);
        let message_type = self.spelling(
            at("message_type"),
            &v.message_type,
            MessageType::parse,
            MessageType::ALL,
        );
        let created_at = self.time(at("created_at"), &v.created_at);
        Some(Message {
            id: EntityId(v.id),
            sender_id: sender_id?,
            text: v.text,
            message_type: message_type?,
            read_by_recipient: v.read_by_recipient,
            created_at: created_at?,
        })
    }
}

#[cfg(test)]
mod tests;
