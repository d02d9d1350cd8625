//! History: what each change of a couple's document did, entity by entity and field by field,
//! with old and new values as the REST API shows them.
//!
//! Derived from the document alone: a change's operations name the entities it wrote
//! ([`crate::touched`]), and each of them is read at the change's parents and at the change
//! (`hydrate` at heads, a per-entity read whose cost does not grow with the history:
//! `docs/history-design.md` has the measurements). The server writes these entries into an
//! index with the merge's commit (so a page is one indexed query whatever the document's age)
//! and can rebuild that index from the document; the SDK walks its local document with the same
//! functions, so both word an entry the same way.
//!
//! Who: a client's change is its actor's (the server binds actors to users; the SDK knows its
//! own); a REST write is the server's actor writing for a user and says so in its message
//! ([`OPERATION_MESSAGE_PREFIX`]); the server's own changes (compensations, the rescue of writes
//! into replaced objects) are "SplitSave", with a reason worded from what they did.

use std::collections::{BTreeMap, BinaryHeap, HashSet};

use automerge::{hydrate, ActorId, Automerge, Change, ChangeHash, ObjType, ReadDoc, ScalarValue};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::document::is_server_actor;
use crate::ids::UserId;
use crate::money::{Currency, MinorUnits};
use crate::read;
use crate::schema::{keys, Collection};
use crate::time::{rfc3339, Millis};
use crate::touched::touched_after_apply;

/// The message of a change the server writes for a user's REST operation, followed by the
/// user's id: how a reader of the document alone tells who made it.
pub const OPERATION_MESSAGE_PREFIX: &str = "splitsave: operation by ";
/// The message of the server's compensating change.
pub const COMPENSATION_MESSAGE: &str = "splitsave: compensation";
/// The message of the server's change carrying writes into replaced objects to the current ones.
pub const RESCUE_MESSAGE: &str = "splitsave: rescue of writes into replaced objects";

/// What kind of thing an entry is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An expense.
    Expense,
    /// A savings goal.
    Goal,
    /// A contribution logged towards a goal.
    GoalContribution,
    /// An approval request.
    Approval,
    /// A chat message.
    Message,
    /// A month of contributions.
    Month,
    /// A member (name, income).
    Member,
    /// The partnership's settings (threshold, pause).
    Partnership,
}

impl Kind {
    /// Every kind.
    pub const ALL: [Kind; 8] = [
        Kind::Expense,
        Kind::Goal,
        Kind::GoalContribution,
        Kind::Approval,
        Kind::Message,
        Kind::Month,
        Kind::Member,
        Kind::Partnership,
    ];

    /// Its spelling in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Kind::Expense => "expense",
            Kind::Goal => "goal",
            Kind::GoalContribution => "goal_contribution",
            Kind::Approval => "approval",
            Kind::Message => "message",
            Kind::Month => "month",
            Kind::Member => "member",
            Kind::Partnership => "partnership",
        }
    }

    /// The kind spelled `s`.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    fn of(c: Collection) -> Kind {
        match c {
            Collection::Expenses => Kind::Expense,
            Collection::Goals => Kind::Goal,
            Collection::GoalContributions => Kind::GoalContribution,
            Collection::Approvals => Kind::Approval,
            Collection::Messages => Kind::Message,
            Collection::Contributions => Kind::Month,
            Collection::Members => Kind::Member,
        }
    }

    fn collection(&self) -> Option<Collection> {
        Some(match self {
            Kind::Expense => Collection::Expenses,
            Kind::Goal => Collection::Goals,
            Kind::GoalContribution => Collection::GoalContributions,
            Kind::Approval => Collection::Approvals,
            Kind::Message => Collection::Messages,
            Kind::Month => Collection::Contributions,
            Kind::Member => Collection::Members,
            Kind::Partnership => return None,
        })
    }
}

/// What happened to the entity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// It appeared (added, or restored after a deletion).
    Created,
    /// Some of its fields changed.
    Changed,
    /// It disappeared.
    Removed,
}

impl Action {
    /// Its spelling in the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Changed => "changed",
            Action::Removed => "removed",
        }
    }

    /// The action spelled `s`.
    pub fn parse(s: &str) -> Option<Action> {
        [Action::Created, Action::Changed, Action::Removed]
            .into_iter()
            .find(|a| a.as_str() == s)
    }
}

/// Who made a change, as far as the document tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Author {
    /// The server on its own account (compensation, rescue, migration).
    Server,
    /// A user, through the REST API (the server's actor wrote it for them).
    User(UserId),
    /// A client device's actor; which user it belongs to is known to the server (actor
    /// bindings) and to the device itself, not to the document.
    Device(ActorId),
}

/// One field's old and new value (JSON `null` for absent), as the REST API shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field; a field of an inner map is `outer.inner` (`paid.<user id>`,
    /// `request_data.amount`).
    pub field: String,
    /// Before the change.
    pub old: Value,
    /// After the change.
    pub new: Value,
}

/// What one change did to one entity.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    /// The change.
    pub change: ChangeHash,
    /// Who made it.
    pub author: Author,
    /// The change's own time (its author's clock; absent when the change carries none).
    pub changed_at: Option<Millis>,
    /// What the entry is about.
    pub kind: Kind,
    /// The entity's key (an id, a month, a user id; the partnership's id).
    pub entity: String,
    /// Created, changed or removed.
    pub action: Action,
    /// For the server's own changes, why (`edit needs approval: amount restored`).
    pub reason: Option<String>,
    /// The fields that differ, in field order.
    pub fields: Vec<FieldChange>,
}

/// An entity's fields as the REST API shows them: amounts as decimal strings in the currency,
/// times as RFC 3339, text as strings; fields of inner maps flattened as `outer.inner`.
pub type View = BTreeMap<String, Value>;

/// The currency amounts are shown in: the partnership's, or none when the document has no
/// readable partnership (amounts are then shown in minor units).
pub fn currency_of(doc: &Automerge) -> Option<Currency> {
    read::read_partnership(doc).ok().map(|p| p.currency)
}

/// Who made `change`, as far as the document tells.
pub fn author_of(change: &Change) -> Author {
    if !is_server_actor(change.actor_id()) {
        return Author::Device(change.actor_id().clone());
    }
    match change
        .message()
        .and_then(|m| m.strip_prefix(OPERATION_MESSAGE_PREFIX))
        .and_then(|id| id.trim().parse::<UserId>().ok())
    {
        Some(user) => Author::User(user),
        None => Author::Server,
    }
}

/// The change's own time. Automerge records seconds (the JS and Rust libraries both do); a
/// value too large for seconds is taken as milliseconds, and zero or less as no time at all.
pub fn time_of(change: &Change) -> Option<Millis> {
    let t = change.timestamp();
    if t <= 0 {
        None
    } else if t > 100_000_000_000 {
        Some(Millis(t))
    } else {
        Some(Millis(t.saturating_mul(1000)))
    }
}

/// What `change` (already in `doc`) did to each entity it wrote: the entity read at the change's
/// parents against the entity read at the change. Entities it wrote without changing what the
/// API shows (a string rewritten in its declared type, a value written again) have no entry.
pub fn entries_of_change(
    doc: &Automerge,
    change: &Change,
    currency: Option<Currency>,
) -> Vec<Entry> {
    let author = author_of(change);
    let changed_at = time_of(change);
    let before: Vec<ChangeHash> = change.deps().to_vec();
    let after = [change.hash()];
    let touched = touched_after_apply(doc, std::slice::from_ref(change));
    let mut targets: Vec<(Kind, String)> = Vec::new();
    for (c, keys) in &touched.entities {
        targets.extend(keys.iter().map(|k| (Kind::of(*c), k.clone())));
    }
    let partnership_touched = touched.root_keys.contains(keys::PARTNERSHIP);
    let mut entries = Vec::new();
    for (kind, key) in targets {
        let old = view_at(doc, kind, &key, &before, currency);
        let new = view_at(doc, kind, &key, &after, currency);
        if let Some((action, fields)) = diff(old.as_ref(), new.as_ref()) {
            entries.push(Entry {
                change: change.hash(),
                author: author.clone(),
                changed_at,
                kind,
                entity: key,
                action,
                reason: None,
                fields,
            });
        }
    }
    if partnership_touched {
        let old = view_at(doc, Kind::Partnership, "", &before, currency);
        let new = view_at(doc, Kind::Partnership, "", &after, currency);
        let id = new
            .as_ref()
            .or(old.as_ref())
            .and_then(|v| v.get("id"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if let Some((action, fields)) = diff(old.as_ref(), new.as_ref()) {
            entries.push(Entry {
                change: change.hash(),
                author: author.clone(),
                changed_at,
                kind: Kind::Partnership,
                entity: id,
                action,
                reason: None,
                fields,
            });
        }
    }
    if author == Author::Server {
        explain(doc, change, &mut entries);
    }
    entries
}

/// The entity `kind`/`key` as it was at `heads` (`None` when absent then, or not a map). The
/// partnership's settings ignore `key`.
pub fn view_at(
    doc: &Automerge,
    kind: Kind,
    key: &str,
    heads: &[ChangeHash],
    currency: Option<Currency>,
) -> Option<View> {
    if heads.is_empty() {
        return None;
    }
    let obj = match kind.collection() {
        Some(c) => {
            let coll = map_child(doc, &automerge::ROOT, c.key(), heads)?;
            map_child(doc, &coll, key, heads)?
        }
        None => map_child(doc, &automerge::ROOT, keys::PARTNERSHIP, heads)?,
    };
    let hydrate::Value::Map(map) = ReadDoc::hydrate(doc, &obj, Some(heads)).ok()? else {
        return None;
    };
    let mut view = View::new();
    for (field, value) in map.iter() {
        match &value.value {
            hydrate::Value::Map(inner) => {
                for (k, v) in inner.iter() {
                    view.insert(
                        format!("{field}.{k}"),
                        present(Some(field), k, &v.value, currency),
                    );
                }
            }
            other => {
                view.insert(field.clone(), present(None, field, other, currency));
            }
        }
    }
    Some(view)
}

/// The map object at `obj[key]` at `heads`.
fn map_child(
    doc: &Automerge,
    obj: &automerge::ObjId,
    key: &str,
    heads: &[ChangeHash],
) -> Option<automerge::ObjId> {
    match doc.get_at(obj, key, heads).ok()?? {
        (automerge::Value::Object(ObjType::Map), id) => Some(id),
        _ => None,
    }
}

/// Fields holding money, in the currency's minor units in the document.
const MONEY_FIELDS: [&str; 6] = [
    "amount",
    "target_amount",
    "saved_amount",
    "total_required",
    "income",
    "approval_threshold",
];
/// Fields holding document times (Unix milliseconds).
const TIME_FIELDS: [&str; 3] = ["created_at", "updated_at", "responded_at"];

/// One value as the REST API shows it; `outer` is the inner map it sits in, if any (`amounts`
/// holds money per user, `paid` a time per user).
fn present(
    outer: Option<&str>,
    field: &str,
    value: &hydrate::Value,
    currency: Option<Currency>,
) -> Value {
    let (money, time) = match outer {
        Some("amounts") => (true, false),
        Some("paid") => (false, true),
        _ => (MONEY_FIELDS.contains(&field), TIME_FIELDS.contains(&field)),
    };
    let int = |n: i64| match currency {
        Some(c) if money => Value::String(c.from_minor(MinorUnits(n)).to_string()),
        _ if time => Value::String(rfc3339(Millis(n))),
        _ => Value::from(n),
    };
    match value {
        hydrate::Value::Text(t) => Value::String(String::from(t)),
        hydrate::Value::Scalar(s) => match s {
            ScalarValue::Str(s) => Value::String(s.to_string()),
            ScalarValue::Int(n) => int(*n),
            ScalarValue::Uint(n) => int(i64::try_from(*n).unwrap_or(i64::MAX)),
            ScalarValue::Counter(c) => int(i64::from(c)),
            ScalarValue::Timestamp(n) => Value::String(rfc3339(Millis(*n))),
            ScalarValue::Boolean(b) => Value::Bool(*b),
            ScalarValue::F64(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            ScalarValue::Null => Value::Null,
            ScalarValue::Bytes(_) | ScalarValue::Unknown { .. } => Value::String("<bytes>".into()),
        },
        hydrate::Value::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), present(Some(field), k, &v.value, currency)))
                .collect(),
        ),
        hydrate::Value::List(l) => Value::Array(
            l.iter()
                .map(|v| present(Some(field), field, &v.value, currency))
                .collect(),
        ),
    }
}

/// The action and field changes from `old` to `new`; `None` when nothing the API shows differs.
pub fn diff(old: Option<&View>, new: Option<&View>) -> Option<(Action, Vec<FieldChange>)> {
    let empty = View::new();
    let action = match (old, new) {
        (None, None) => return None,
        (None, Some(_)) => Action::Created,
        (Some(_), None) => Action::Removed,
        (Some(_), Some(_)) => Action::Changed,
    };
    let (o, n) = (old.unwrap_or(&empty), new.unwrap_or(&empty));
    let mut fields: Vec<FieldChange> = Vec::new();
    let names: std::collections::BTreeSet<&String> = o.keys().chain(n.keys()).collect();
    for name in names {
        let (a, b) = (o.get(name), n.get(name));
        if a != b {
            fields.push(FieldChange {
                field: name.clone(),
                old: a.cloned().unwrap_or(Value::Null),
                new: b.cloned().unwrap_or(Value::Null),
            });
        }
    }
    if action == Action::Changed && fields.is_empty() {
        return None;
    }
    Some((action, fields))
}

/// Words the reason of each entity the server's own change wrote.
fn explain(doc: &Automerge, change: &Change, entries: &mut [Entry]) {
    let message = change.message().unwrap_or_default();
    if message == RESCUE_MESSAGE {
        for e in entries.iter_mut() {
            e.reason = Some("kept an edit made to a copy another device replaced".into());
        }
        return;
    }
    if message != COMPENSATION_MESSAGE {
        return;
    }
    // Requests the same change filed, by their target: an item restored beside an edit request
    // for it was an edit that needs approval.
    let filed: Vec<(String, String)> = entries
        .iter()
        .filter(|e| e.kind == Kind::Approval && e.action == Action::Created)
        .filter_map(|e| Some((field_str(e, "target_id")?, field_str(e, "request_type")?)))
        .collect();
    let mut approved: Option<HashSet<String>> = None;
    let mut reason_of = |e: &Entry| -> String {
        let names: Vec<&str> = e
            .fields
            .iter()
            .map(|f| f.field.as_str())
            .filter(|f| *f != "updated_at")
            .collect();
        let listed = names.join(", ");
        let status = e.fields.iter().find(|f| f.field == "status");
        match (e.kind, e.action) {
            (Kind::Approval, Action::Created) => match field_str(e, "request_type").as_deref() {
                Some(t) if t.ends_with("_edit") => "edit needs approval: request filed".to_string(),
                Some(t) if t.ends_with("_add") => {
                    "needs the partner's approval: request filed".to_string()
                }
                _ => "request filed".to_string(),
            },
            (Kind::Approval, Action::Removed) => "request withdrawn: nothing to approve".into(),
            (Kind::Approval, Action::Changed) if status.is_some() => "answer reverted".into(),
            (Kind::Approval, Action::Changed) => "request corrected to match its item".into(),
            (_, Action::Created) => "deletion undone: restored".into(),
            (_, Action::Removed) => "invalid entry removed".into(),
            (Kind::Expense | Kind::Goal, Action::Changed) => {
                let edit_filed = filed
                    .iter()
                    .any(|(target, t)| *target == e.entity && t.ends_with("_edit"));
                if edit_filed {
                    format!("edit needs approval: {listed} restored")
                } else if status.is_some_and(|s| s.new == "pending_approval") {
                    "needs the partner's approval: waits for it".into()
                } else if !names.is_empty() && names.iter().all(|f| TIME_FIELDS.contains(f)) {
                    "time ahead of the server's clock: set to when it arrived".into()
                } else if names == ["saved_amount"] {
                    "saved amount follows the logged contributions".into()
                } else {
                    let approved = approved.get_or_insert_with(|| approved_targets(doc, change));
                    if approved.contains(&e.entity) {
                        "approved request applied".into()
                    } else {
                        format!("{listed} restored")
                    }
                }
            }
            (Kind::GoalContribution, Action::Changed) if names == ["user_id"] => {
                "contribution credited to the partner who logged it".into()
            }
            (_, Action::Changed)
                if !names.is_empty() && names.iter().all(|f| TIME_FIELDS.contains(f)) =>
            {
                "time ahead of the server's clock: set to when it arrived".into()
            }
            (_, Action::Changed) => format!("{listed} restored"),
        }
    };
    let reasons: Vec<String> = entries.iter().map(&mut reason_of).collect();
    for (e, reason) in entries.iter_mut().zip(reasons) {
        e.reason = Some(reason);
    }
}

/// A string field's new value (or old, for a removal).
fn field_str(e: &Entry, field: &str) -> Option<String> {
    e.fields
        .iter()
        .find(|f| f.field == field)
        .and_then(|f| {
            if f.new.is_null() {
                f.old.as_str()
            } else {
                f.new.as_str()
            }
        })
        .map(str::to_string)
}

/// The targets of approval requests that the changes the server's change follows answered with
/// an approval: the server applies an approved request in its compensation.
fn approved_targets(doc: &Automerge, change: &Change) -> HashSet<String> {
    let mut out = HashSet::new();
    let heads = [change.hash()];
    for dep in change.deps() {
        let Some(prior) = doc.get_change_by_hash(dep) else {
            continue;
        };
        let touched = touched_after_apply(doc, std::slice::from_ref(&prior));
        for key in touched.keys(Collection::Approvals) {
            let Some(view) = view_at(doc, Kind::Approval, key, &heads, None) else {
                continue;
            };
            if view.get("status").and_then(Value::as_str) == Some("approved") {
                if let Some(target) = view.get("target_id").and_then(Value::as_str) {
                    out.insert(target.to_string());
                }
            }
        }
    }
    out
}

/// Which entries a history listing keeps.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this kind.
    pub kind: Option<Kind>,
    /// Only this entity.
    pub entity: Option<String>,
    /// Only changes by this author.
    pub author: Option<Author>,
    /// Only changes made at or after this time.
    pub from: Option<Millis>,
    /// Only changes made before this time.
    pub to: Option<Millis>,
}

impl Filter {
    /// Whether `e` passes.
    pub fn keeps(&self, e: &Entry) -> bool {
        self.kind.is_none_or(|k| k == e.kind)
            && self.entity.as_ref().is_none_or(|id| *id == e.entity)
            && self.author.as_ref().is_none_or(|a| *a == e.author)
            && self
                .from
                .is_none_or(|from| e.changed_at.is_some_and(|t| t >= from))
            && self
                .to
                .is_none_or(|to| e.changed_at.is_some_and(|t| t < to))
    }
}

/// The newest entries of `doc` that `filter` keeps, `limit` or a few more (a page holds whole
/// changes), walking back from the
/// heads through each change's dependencies (newest change time first among those reachable),
/// so the newest entries cost what they touch, not what the document weighs. `after` continues
/// a listing: the walk skips changes up to and including that one.
pub fn recent(
    doc: &Automerge,
    filter: &Filter,
    limit: usize,
    after: Option<ChangeHash>,
) -> Vec<Entry> {
    walk(doc, limit, after, |e| filter.keeps(e))
}

/// [`recent`] with the entries kept by `keep`, which may first rewrite an entry (a device
/// naming its own actor's changes as its user's, say).
pub fn walk(
    doc: &Automerge,
    limit: usize,
    after: Option<ChangeHash>,
    mut keep: impl FnMut(&mut Entry) -> bool,
) -> Vec<Entry> {
    let currency = currency_of(doc);
    let mut queue: BinaryHeap<(i64, ChangeHash)> = BinaryHeap::new();
    let mut seen: HashSet<ChangeHash> = HashSet::new();
    for h in doc.get_heads() {
        if seen.insert(h) {
            if let Some(c) = doc.get_change_by_hash(&h) {
                queue.push((c.timestamp(), h));
            }
        }
    }
    let mut skipping = after.is_some();
    let mut out = Vec::new();
    while let Some((_, hash)) = queue.pop() {
        let Some(change) = doc.get_change_by_hash(&hash) else {
            continue;
        };
        for dep in change.deps() {
            if seen.insert(*dep) {
                if let Some(c) = doc.get_change_by_hash(dep) {
                    queue.push((c.timestamp(), *dep));
                }
            }
        }
        if skipping {
            if Some(hash) == after {
                skipping = false;
            }
            continue;
        }
        if change.deps().is_empty() {
            // The document's first change makes the partnership: where history starts.
            continue;
        }
        for mut e in entries_of_change(doc, &change, currency) {
            if keep(&mut e) {
                out.push(e);
            }
        }
        // Whole changes only: a page ends after the change that filled it, so the next page
        // continues after that change without losing any of its entries.
        if out.len() >= limit {
            break;
        }
    }
    out
}
