//! Enforcement on merge: given the document before and after merging changes authored by one
//! partner, find every change the policy forbids and say how to compensate it.
//!
//! Business-rule violations are never refused (refusing a change poisons every later change of
//! that replica); the server accepts the merge and writes a **compensating change** as its own
//! actor. Compensations are computed from state, per touched entity:
//!
//! | client did | compensation |
//! |---|---|
//! | added an expense over the threshold as `active` | status → `pending_approval`, `expense_add` request filed |
//! | added a `pending_approval` expense or goal without a request | request filed |
//! | filed an add request that differs from its item, or under another id | rewritten from the item, at [`add_request_id`] |
//! | filed an add request for an item not waiting for approval, or an edit that changes nothing | removed |
//! | archived an item waiting for approval | its add request withdrawn |
//! | wrote a time more than [`crate::time::MAX_CLOCK_SKEW`] ahead of `now` | replaced by `now` |
//! | added a goal as `active` | status → `pending_approval`, `goal_add` request filed |
//! | edited an expense's or goal's fields | old values restored, an edit request filed with the new ones |
//! | activated a pending item or revived an archived one without approval | status restored |
//! | changed `added_by`/`created_at` | restored |
//! | deleted an expense, goal, request, message, contribution or month | restored |
//! | answered their own request, or answered one already answered | answer reverted |
//! | approved a partner's request | the request is applied (idempotently) |
//! | changed a request's content | restored |
//! | wrote a message with another sender, or edited a message | removed / restored |
//! | marked their own message read, or unmarked one | restored |
//! | marked the partner's month paid, or changed amounts | restored |
//! | changed `partnership`, `members`, `schema`, or added a month | restored / removed |
//! | changed a goal's saved amount other than by logged contributions | counter rewritten with the logged value |
//! | logged a contribution for someone else | `user_id` corrected |
//! | wrote an entity of the wrong shape or with invalid values | removed (or restored if it existed) |
//! | wrote a string field in the other type than declared (Text for an enum, a scalar for a name) | rewritten, same value, in the declared type ([`crate::fields`]) |
//!
//! Writes that landed in a collection or entity another client replaced are carried to the
//! current one first ([`crate::rescue`], run by [`settle`]), so they are judged like any edit.
//!
//! Compensation ids are derived from what they compensate ([`EntityId::derived`]), so two
//! servers compensating the same merge write the same keys and converge. Unknown top-level keys
//! are left alone (a newer client may add them).

use std::collections::BTreeMap;

use automerge::{Automerge, AutomergeError, Change, ChangeHash, ReadDoc};

use crate::enums::*;
use crate::ids::{EntityId, UserId};
use crate::money::{Currency, MinorUnits};
use crate::ops::{self, OpError};
use crate::policy::{add_request_id, Policy};
use crate::read::{self, ShapeError};
use crate::schema::*;
use crate::strings::{self, Holder};
use crate::time::Millis;
use crate::touched::{touched_by, Touched};
use crate::validate;
mod compensation;
mod items;
mod messages;
mod months;
mod requests;

pub use compensation::{apply_fixes, compensate, Fix};

/// Errors of enforcement.
#[derive(Debug, thiserror::Error)]
pub enum EnforceError {
    /// The document before the merge is unreadable where it must not be (`partnership`).
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// Writing a compensation failed.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
    /// Applying an approved request failed.
    #[error(transparent)]
    Op(#[from] OpError),
    /// The author is not a member of the partnership.
    #[error("author is not a member of the partnership")]
    NotMember,
}

/// The verdict on one merge.
#[derive(Clone, Debug, Default)]
pub struct Enforcement {
    /// What the merge touched.
    pub touched: Touched,
    /// The compensations to write, in order.
    pub fixes: Vec<Fix>,
}

impl Enforcement {
    /// Everything the merge and its compensations touched: what to re-materialize.
    pub fn affected(&self) -> Touched {
        let mut t = self.touched.clone();
        for f in &self.fixes {
            if let Some((c, k)) = f.target() {
                t.add(c, k);
            }
        }
        t
    }
}

/// The state, before a merge, of everything the merge touches: captured from the live
/// document before the changes are applied (so the server can apply them in place, without
/// cloning the document). Entities the merge does not touch are unchanged by it, so their
/// "before" is read from the document after the merge.
#[derive(Clone, Debug)]
pub struct Before {
    touched: Touched,
    info: Result<PartnershipInfo, ShapeError>,
    members: Result<Vec<Member>, ShapeError>,
    schema: Option<i64>,
    members_by_key: BTreeMap<String, Read<Member>>,
    expenses: BTreeMap<String, Read<Expense>>,
    goals: BTreeMap<String, Read<Goal>>,
    goal_contributions: BTreeMap<String, Read<GoalContribution>>,
    approvals: BTreeMap<String, Read<Approval>>,
    messages: BTreeMap<String, Read<Message>>,
    months: BTreeMap<String, Read<MonthContribution>>,
}

impl Before {
    /// Reads what `touched` names from `doc` (the document before the merge).
    pub fn capture<R: ReadDoc>(doc: &R, touched: Touched) -> Self {
        fn grab<R: ReadDoc, T>(
            doc: &R,
            touched: &Touched,
            c: Collection,
            f: impl Fn(&R, &str) -> Read<T>,
        ) -> BTreeMap<String, Read<T>> {
            touched.keys(c).map(|k| (k.clone(), f(doc, k))).collect()
        }
        Self {
            info: read::read_partnership(doc),
            members: read::read_members(doc),
            schema: read::read_schema_version(doc),
            members_by_key: grab(doc, &touched, Collection::Members, read::read_member),
            expenses: grab(doc, &touched, Collection::Expenses, read::read_expense),
            goals: grab(doc, &touched, Collection::Goals, read::read_goal),
            goal_contributions: grab(
                doc,
                &touched,
                Collection::GoalContributions,
                read::read_goal_contribution,
            ),
            approvals: grab(doc, &touched, Collection::Approvals, read::read_approval),
            messages: grab(doc, &touched, Collection::Messages, read::read_message),
            months: grab(doc, &touched, Collection::Contributions, read::read_month),
            touched,
        }
    }

    /// What the merge touched.
    pub fn touched(&self) -> &Touched {
        &self.touched
    }
}

fn before_of<T: Clone, R: ReadDoc>(
    map: &BTreeMap<String, Read<T>>,
    after: &R,
    key: &str,
    f: impl Fn(&R, &str) -> Read<T>,
) -> Read<T> {
    match map.get(key) {
        Some(v) => v.clone(),
        None => f(after, key),
    }
}

/// The changes in `after` that `before` lacks (what a merge brought in).
pub fn new_changes(before: &Automerge, after: &Automerge) -> Vec<Change> {
    before.get_changes_added(after)
}

/// Checks a merge: `after` is `before` with `changes` (authored by `author`) applied. The
/// convenient form when both documents exist (e.g. the merge was applied to a clone).
pub fn enforce(
    before: &Automerge,
    after: &Automerge,
    changes: &[Change],
    author: UserId,
    now: Millis,
) -> Result<Enforcement, EnforceError> {
    let touched = touched_by(before, after, changes);
    check(&Before::capture(before, touched), after, author, now)
}

/// Checks the merge given the captured state before it and the document after it.
pub fn check(
    before: &Before,
    after: &Automerge,
    author: UserId,
    now: Millis,
) -> Result<Enforcement, EnforceError> {
    let info = before.info.clone()?;
    let members = before.members.clone()?;
    let partner = members
        .iter()
        .find(|m| m.user_id != author)
        .map(|m| m.user_id);
    if !members.iter().any(|m| m.user_id == author) {
        return Err(EnforceError::NotMember);
    }
    let mut touched = before.touched.clone();
    let mut e = Enforcer {
        before,
        after,
        author,
        partner,
        now,
        currency: info.currency,
        policy: Policy::of(&info),
        fixes: Vec::new(),
        sanctioned: BTreeMap::new(),
        new_requests: Vec::new(),
        add_notes: BTreeMap::new(),
    };
    e.check_root(&info);
    for key in touched
        .keys(Collection::Members)
        .cloned()
        .collect::<Vec<_>>()
    {
        e.check_member(&key);
    }
    for key in touched
        .keys(Collection::Approvals)
        .cloned()
        .collect::<Vec<_>>()
    {
        e.check_approval(&key);
    }
    // Targets of answers given in this merge must be checked even if untouched.
    for a in e.sanctioned.values() {
        let c = match a.request_type {
            RequestType::ExpenseAdd | RequestType::ExpenseEdit => Collection::Expenses,
            RequestType::GoalAdd | RequestType::GoalEdit => Collection::Goals,
        };
        touched.add(c, a.target_id.to_string());
    }
    // Goals whose contributions moved must have their counter checked.
    let mut contribution_deltas: BTreeMap<String, i64> = BTreeMap::new();
    for key in touched
        .keys(Collection::GoalContributions)
        .cloned()
        .collect::<Vec<_>>()
    {
        if let Some((goal, delta)) = e.check_goal_contribution(&key) {
            *contribution_deltas.entry(goal.clone()).or_default() += delta;
            touched.add(Collection::Goals, goal);
        }
    }
    for key in touched
        .keys(Collection::Expenses)
        .cloned()
        .collect::<Vec<_>>()
    {
        e.check_expense(&key);
    }
    for key in touched.keys(Collection::Goals).cloned().collect::<Vec<_>>() {
        let delta = contribution_deltas.get(&key).copied().unwrap_or(0);
        e.check_goal(&key, delta);
    }
    e.drop_add_requests_without_a_pending_item();
    for key in touched
        .keys(Collection::Messages)
        .cloned()
        .collect::<Vec<_>>()
    {
        e.check_message(&key);
    }
    for key in touched
        .keys(Collection::Contributions)
        .cloned()
        .collect::<Vec<_>>()
    {
        e.check_month(&key);
    }
    e.check_string_types(&touched);
    Ok(Enforcement {
        touched,
        fixes: e.fixes,
    })
}

struct Enforcer<'a> {
    before: &'a Before,
    after: &'a Automerge,
    author: UserId,
    partner: Option<UserId>,
    now: Millis,
    currency: Currency,
    policy: Policy,
    fixes: Vec<Fix>,
    /// Answers given validly in this merge, by request id.
    sanctioned: BTreeMap<EntityId, Approval>,
    /// Requests created validly in this merge (after fixes).
    new_requests: Vec<Approval>,
    /// Notes of add requests a client filed under an id other than the derived one, by target:
    /// the server's request that replaces them carries the note.
    add_notes: BTreeMap<EntityId, Option<String>>,
}

/// A pending item as its add request must describe it.
struct AddedItem {
    id: EntityId,
    added_by: UserId,
    data: RequestData,
}

impl AddedItem {
    fn expense(e: &Expense) -> Self {
        Self {
            id: e.id,
            added_by: e.added_by,
            data: ops::expense_add_data(e),
        }
    }

    fn goal(g: &Goal) -> Self {
        Self {
            id: g.id,
            added_by: g.added_by,
            data: ops::goal_add_data(g),
        }
    }
}

/// Reads an entity leniently: malformed counts as absent-but-present (`Err`).
type Read<T> = Result<Option<T>, ShapeError>;

impl Enforcer<'_> {
    fn remove(&mut self, collection: Collection, key: &str) {
        self.fixes.push(Fix::Remove {
            collection,
            key: key.to_string(),
        });
    }

    /// Fields the merge left in the other string type than declared are rewritten in the
    /// declared one. Checked last and applied last: a field another fix rewrites is written in
    /// its declared type by that fix, and the normalization then finds nothing left to do.
    fn check_string_types(&mut self, touched: &Touched) {
        let entities = Collection::ALL
            .into_iter()
            .flat_map(|c| touched.keys(c).map(move |k| Holder::Entity(c, k.clone())));
        for holder in std::iter::once(Holder::Partnership).chain(entities) {
            if strings::misshapen(self.after, &holder) {
                self.fixes.push(Fix::NormalizeStrings(holder));
            }
        }
    }

    fn check_root(&mut self, info: &PartnershipInfo) {
        match read::read_partnership(self.after) {
            Ok(now) if &now == info => {}
            _ => self.fixes.push(Fix::PutPartnership(info.clone())),
        }
        let before = self.before.schema.unwrap_or(SCHEMA_VERSION as i64);
        if read::read_schema_version(self.after) != Some(before) {
            self.fixes.push(Fix::PutSchema(before));
        }
    }

    fn check_member(&mut self, key: &str) {
        let before: Read<Member> = before_of(
            &self.before.members_by_key,
            self.after,
            key,
            read::read_member,
        );
        let after: Read<Member> = read::read_member(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => {}
            (Ok(Some(b)), _) => self.fixes.push(Fix::PutMember(b)),
            (_, Ok(None)) => {}
            (_, _) => self.remove(Collection::Members, key),
        }
    }
}

/// An expense after an answered request about it.
fn expense_after_answer(e: &Expense, a: &Approval) -> Expense {
    match (a.status, a.request_type, &a.request_data) {
        (ApprovalStatus::Approved, RequestType::ExpenseAdd, _)
            if e.status == ItemStatus::PendingApproval =>
        {
            Expense {
                status: ItemStatus::Active,
                ..e.clone()
            }
        }
        (ApprovalStatus::Declined, RequestType::ExpenseAdd, _)
            if e.status == ItemStatus::PendingApproval =>
        {
            Expense {
                status: ItemStatus::Archived,
                ..e.clone()
            }
        }
        (ApprovalStatus::Approved, RequestType::ExpenseEdit, RequestData::Expense(f))
            if e.status != ItemStatus::Archived =>
        {
            f.apply_to(e)
        }
        _ => e.clone(),
    }
}

/// A goal after an answered request about it.
fn goal_after_answer(g: &Goal, a: &Approval) -> Goal {
    match (a.status, a.request_type, &a.request_data) {
        (ApprovalStatus::Approved, RequestType::GoalAdd, _)
            if g.status == ItemStatus::PendingApproval =>
        {
            Goal {
                status: ItemStatus::Active,
                ..g.clone()
            }
        }
        (ApprovalStatus::Declined, RequestType::GoalAdd, _)
            if g.status == ItemStatus::PendingApproval =>
        {
            Goal {
                status: ItemStatus::Archived,
                ..g.clone()
            }
        }
        (ApprovalStatus::Approved, RequestType::GoalEdit, RequestData::Goal(f))
            if g.status != ItemStatus::Archived =>
        {
            f.apply_to(g)
        }
        _ => g.clone(),
    }
}

/// The id of the request filed for an unapproved edit: derived from the target and the
/// proposed values, so the same edit compensated twice files one request.
fn edit_request_id(target: EntityId, proposal: &str) -> EntityId {
    EntityId::derived(&["edit-request", &target.to_string(), proposal])
}

/// What the server wrote to settle one merge.
#[derive(Clone, Debug, Default)]
pub struct Settled {
    /// The verdict on the merge.
    pub enforcement: Enforcement,
    /// The server's own changes, in the order written: the rescue of writes into replaced
    /// objects, then the compensation; either may be absent.
    pub server_changes: Vec<ChangeHash>,
}

/// The server's side of a merge already applied to `doc` (`before` captured just before it,
/// `changes` what it added, authored by `author`): writes that landed in replaced objects are
/// carried to the current ones ([`crate::rescue`]), the merge is checked, and the
/// compensations are written. On an error `doc` may hold part of this: reload it.
pub fn settle(
    doc: &mut Automerge,
    before: &Before,
    changes: &[Change],
    author: UserId,
    now: Millis,
) -> Result<Settled, EnforceError> {
    let mut server_changes = Vec::new();
    server_changes.extend(crate::rescue::rescue_orphaned_writes(doc, changes, now)?);
    let enforcement = check(before, doc, author, now)?;
    server_changes.extend(compensate(doc, &enforcement, now)?);
    Ok(Settled {
        enforcement,
        server_changes,
    })
}
