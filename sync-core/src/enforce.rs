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
//!
//! Writes that landed in a collection or entity another client replaced are carried to the
//! current one first ([`crate::rescue`], run by [`settle`]), so they are judged like any edit.
//!
//! Compensation ids are derived from what they compensate ([`EntityId::derived`]), so two
//! servers compensating the same merge write the same keys and converge. Unknown top-level keys
//! are left alone (a newer client may add them).

use std::collections::BTreeMap;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    Automerge, AutomergeError, Change, ChangeHash, ObjId, ObjType, ReadDoc, ScalarValue,
};

use crate::enums::*;
use crate::ids::{EntityId, UserId};
use crate::money::{Currency, MinorUnits};
use crate::ops::{self, OpError};
use crate::policy::{add_request_id, Policy};
use crate::read::{self, ShapeError};
use crate::schema::*;
use crate::time::Millis;
use crate::touched::{touched_by, Touched};
use crate::validate;
use crate::write;

/// One compensating write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fix {
    /// Write these expense fields over the current ones (or recreate it).
    PutExpense(Expense),
    /// Write these goal fields (not the counter) over the current ones (or recreate it).
    PutGoal(Goal),
    /// Write a fresh saved-amount counter holding `value`. A fresh counter rather than an
    /// increment by the difference: two servers that compensate the same merge both write the
    /// same value and converge, where two increments would correct twice. A partner's
    /// increment concurrent with it is hidden by it, but that partner's merge re-checks the
    /// goal against its logged contributions and writes the counter again.
    FixSaved {
        /// The goal.
        goal: EntityId,
        /// The value the counter must have.
        value: MinorUnits,
    },
    /// Write a goal contribution (restore or correct it).
    PutGoalContribution(GoalContribution),
    /// File or restore an approval request.
    PutApproval(Approval),
    /// Restore a message.
    PutMessage(Message),
    /// Restore a month of contributions.
    PutMonth(MonthContribution),
    /// Restore a member.
    PutMember(Member),
    /// Restore the partnership settings.
    PutPartnership(PartnershipInfo),
    /// Restore the schema version.
    PutSchema(i64),
    /// Remove an invalid entity.
    Remove {
        /// The collection.
        collection: Collection,
        /// Its key.
        key: String,
    },
}

impl Fix {
    /// The entity this fix writes, for materialization.
    pub fn target(&self) -> Option<(Collection, String)> {
        Some(match self {
            Fix::PutExpense(e) => (Collection::Expenses, e.id.to_string()),
            Fix::PutGoal(g) => (Collection::Goals, g.id.to_string()),
            Fix::FixSaved { goal, .. } => (Collection::Goals, goal.to_string()),
            Fix::PutGoalContribution(c) => (Collection::GoalContributions, c.id.to_string()),
            Fix::PutApproval(a) => (Collection::Approvals, a.id.to_string()),
            Fix::PutMessage(m) => (Collection::Messages, m.id.to_string()),
            Fix::PutMonth(m) => (Collection::Contributions, m.month.to_string()),
            Fix::PutMember(m) => (Collection::Members, m.user_id.to_string()),
            Fix::Remove { collection, key } => (*collection, key.clone()),
            Fix::PutPartnership(_) | Fix::PutSchema(_) => return None,
        })
    }
}

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

    // ---- approvals ----------------------------------------------------------------------

    fn target_exists(&self, a: &Approval) -> bool {
        let key = a.target_id.to_string();
        match a.request_type {
            RequestType::ExpenseAdd | RequestType::ExpenseEdit => {
                matches!(read::read_expense(self.after, &key), Ok(Some(_)))
            }
            RequestType::GoalAdd | RequestType::GoalEdit => {
                matches!(read::read_goal(self.after, &key), Ok(Some(_)))
            }
        }
    }

    fn request_data_valid(&self, a: &Approval) -> bool {
        let amount_ok = |m: Option<MinorUnits>| {
            m.is_none_or(|m| validate::positive_amount("amount", m, &self.currency).is_ok())
        };
        let name_ok = |n: &Option<String>| {
            n.as_deref()
                .is_none_or(|n| validate::name("name", n).is_ok())
        };
        let note_ok = validate::note(a.message.as_deref()).is_ok();
        note_ok
            && match (&a.request_type, &a.request_data) {
                (RequestType::ExpenseAdd | RequestType::ExpenseEdit, RequestData::Expense(f)) => {
                    name_ok(&f.name) && amount_ok(f.amount)
                }
                (RequestType::GoalAdd | RequestType::GoalEdit, RequestData::Goal(f)) => {
                    name_ok(&f.name) && amount_ok(f.target_amount)
                }
                _ => false,
            }
    }

    fn check_approval(&mut self, key: &str) {
        let before: Read<Approval> =
            before_of(&self.before.approvals, self.after, key, read::read_approval);
        let after: Read<Approval> = read::read_approval(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) => self.check_existing_approval(b, a),
            (Ok(Some(b)), Ok(None)) if self.withdrawn_with_its_item(&b) => {}
            (Ok(Some(b)), _) => self.fixes.push(Fix::PutApproval(b)),
            (_, Ok(None)) => {}
            (_, Ok(Some(a))) => self.check_new_approval(a),
            (_, Err(_)) => self.remove(Collection::Approvals, key),
        }
    }

    fn check_new_approval(&mut self, a: Approval) {
        let key = a.id.to_string();
        let is_add = matches!(
            a.request_type,
            RequestType::ExpenseAdd | RequestType::GoalAdd
        );
        // An add request lives at the id derived from its target, so there is exactly one per
        // item and its content can always be checked against the item (below, when the item is
        // checked). One filed under any other id is replaced by the server's own, which keeps
        // its note.
        if is_add && a.requested_by == self.author && a.id != add_request_id(a.target_id) {
            if a.message.is_some() && validate::note(a.message.as_deref()).is_ok() {
                self.add_notes.insert(a.target_id, a.message.clone());
            }
            return self.remove(Collection::Approvals, &key);
        }
        if a.requested_by != self.author || !self.target_exists(&a) || !self.request_data_valid(&a)
        {
            return self.remove(Collection::Approvals, &key);
        }
        if !is_add && !self.edit_would_change_target(&a) {
            // Approving it would change nothing (the target is archived, or the proposal
            // equals what it holds), so it would tell the partner something untrue.
            return self.remove(Collection::Approvals, &key);
        }
        // Answering one's own new request is self-approval: it stays pending.
        let fixed = Approval {
            status: ApprovalStatus::Pending,
            responded_by: None,
            responded_at: None,
            created_at: self.bounded(a.created_at),
            ..a.clone()
        };
        if fixed != a {
            self.fixes.push(Fix::PutApproval(fixed.clone()));
        }
        self.new_requests.push(fixed);
    }

    /// A pending add request removed in the merge that archived its item (withdrawing it, as
    /// the operations do) may go: approving it would no longer add anything.
    fn withdrawn_with_its_item(&self, b: &Approval) -> bool {
        let key = b.target_id.to_string();
        let archived = match b.request_type {
            RequestType::ExpenseAdd => matches!(
                (before_of(&self.before.expenses, self.after, &key, read::read_expense),
                 read::read_expense(self.after, &key)),
                (Ok(Some(was)), Ok(Some(now)))
                    if was.status == ItemStatus::PendingApproval && now.status == ItemStatus::Archived
            ),
            RequestType::GoalAdd => matches!(
                (before_of(&self.before.goals, self.after, &key, read::read_goal),
                 read::read_goal(self.after, &key)),
                (Ok(Some(was)), Ok(Some(now)))
                    if was.status == ItemStatus::PendingApproval && now.status == ItemStatus::Archived
            ),
            _ => false,
        };
        b.status == ApprovalStatus::Pending && b.id == add_request_id(b.target_id) && archived
    }

    /// An item archived while waiting for approval is withdrawn: its pending add request goes
    /// with it.
    fn withdraw_add_request(&mut self, item: EntityId) {
        let id = add_request_id(item);
        if self
            .request_now(id)
            .is_some_and(|r| r.status == ApprovalStatus::Pending)
        {
            self.new_requests.retain(|r| r.id != id);
            self.remove(Collection::Approvals, &id.to_string());
        }
    }

    /// Whether approving the edit request `a` would change its target (as the merge leaves it).
    fn edit_would_change_target(&self, a: &Approval) -> bool {
        let key = a.target_id.to_string();
        match &a.request_data {
            RequestData::Expense(f) => match read::read_expense(self.after, &key) {
                Ok(Some(t)) => t.status != ItemStatus::Archived && f.apply_to(&t) != t,
                _ => false,
            },
            RequestData::Goal(f) => match read::read_goal(self.after, &key) {
                Ok(Some(t)) => t.status != ItemStatus::Archived && f.apply_to(&t) != t,
                _ => false,
            },
        }
    }

    fn check_existing_approval(&mut self, b: Approval, a: Approval) {
        if a == b {
            return;
        }
        let content_changed = Approval {
            status: b.status,
            responded_by: b.responded_by,
            responded_at: b.responded_at,
            ..a.clone()
        } != b;
        let answering = b.status == ApprovalStatus::Pending && a.status != ApprovalStatus::Pending;
        let may_answer = b.requested_by != self.author;
        if answering && may_answer {
            let answered = Approval {
                responded_by: Some(self.author),
                responded_at: Some(a.responded_at.map_or(self.now, |t| self.bounded(t))),
                status: a.status,
                ..b.clone()
            };
            if content_changed
                || a.responded_by != answered.responded_by
                || a.responded_at != answered.responded_at
            {
                self.fixes.push(Fix::PutApproval(answered.clone()));
            }
            self.sanctioned.insert(answered.id, answered);
            return;
        }
        // Anything else (self-answer, re-answer, un-answer, content edit) is reverted.
        self.fixes.push(Fix::PutApproval(b));
    }

    /// The answers given in this merge that concern `target`.
    fn answers_for(&self, target: EntityId) -> Vec<Approval> {
        self.sanctioned
            .values()
            .filter(|a| a.target_id == target)
            .cloned()
            .collect()
    }

    /// An add request a client filed in this merge stands only while its item, as this merge
    /// leaves it, is waiting for approval and was added by the requester: approving one for an
    /// active or archived item (or someone else's) would change nothing it says.
    fn drop_add_requests_without_a_pending_item(&mut self) {
        let filed: Vec<Approval> = self
            .new_requests
            .iter()
            .filter(|a| {
                matches!(
                    a.request_type,
                    RequestType::ExpenseAdd | RequestType::GoalAdd
                )
            })
            .cloned()
            .collect();
        for a in filed {
            let item = match a.request_type {
                RequestType::ExpenseAdd => self
                    .expense_now(a.target_id)
                    .map(|e| (e.status, e.added_by)),
                _ => self.goal_now(a.target_id).map(|g| (g.status, g.added_by)),
            };
            if item != Some((ItemStatus::PendingApproval, a.requested_by)) {
                self.new_requests.retain(|r| r.id != a.id);
                self.remove(Collection::Approvals, &a.id.to_string());
            }
        }
    }

    /// The expense `id` as this merge leaves it so far (fixes included).
    fn expense_now(&self, id: EntityId) -> Option<Expense> {
        let key = id.to_string();
        for fix in self.fixes.iter().rev() {
            match fix {
                Fix::PutExpense(e) if e.id == id => return Some(e.clone()),
                Fix::Remove {
                    collection: Collection::Expenses,
                    key: k,
                } if *k == key => return None,
                _ => {}
            }
        }
        read::read_expense(self.after, &key).ok().flatten()
    }

    /// The goal `id` as this merge leaves it so far (fixes included).
    fn goal_now(&self, id: EntityId) -> Option<Goal> {
        let key = id.to_string();
        for fix in self.fixes.iter().rev() {
            match fix {
                Fix::PutGoal(g) if g.id == id => return Some(g.clone()),
                Fix::Remove {
                    collection: Collection::Goals,
                    key: k,
                } if *k == key => return None,
                _ => {}
            }
        }
        read::read_goal(self.after, &key).ok().flatten()
    }

    /// The request `id` as this merge leaves it so far: filed or corrected in it, removed by
    /// it, or as the document holds it.
    fn request_now(&self, id: EntityId) -> Option<Approval> {
        if let Some(a) = self.new_requests.iter().rev().find(|a| a.id == id) {
            return Some(a.clone());
        }
        let key = id.to_string();
        for fix in self.fixes.iter().rev() {
            match fix {
                Fix::PutApproval(a) if a.id == id => return Some(a.clone()),
                Fix::Remove {
                    collection: Collection::Approvals,
                    key: k,
                } if *k == key => return None,
                _ => {}
            }
        }
        read::read_approval(self.after, &key).ok().flatten()
    }

    /// A pending item has exactly one pending add request, at the id derived from it, and that
    /// request describes the item exactly as approving it will make it active: filed when
    /// missing, corrected when a client wrote other values into it (or an approved edit changed
    /// the pending item since).
    fn ensure_add_request(&mut self, rt: RequestType, item: &AddedItem) {
        let id = add_request_id(item.id);
        match self.request_now(id) {
            Some(r) if r.status != ApprovalStatus::Pending => {}
            Some(r) => {
                let fixed = Approval {
                    requested_by: item.added_by,
                    request_type: rt,
                    target_id: item.id,
                    request_data: item.data.clone(),
                    ..r.clone()
                };
                if fixed != r {
                    self.fixes.push(Fix::PutApproval(fixed.clone()));
                    self.new_requests.push(fixed);
                }
            }
            None => {
                let approval = Approval {
                    id,
                    requested_by: item.added_by,
                    request_type: rt,
                    target_id: item.id,
                    request_data: item.data.clone(),
                    message: self.add_notes.get(&item.id).cloned().flatten(),
                    status: ApprovalStatus::Pending,
                    responded_by: None,
                    responded_at: None,
                    created_at: self.now,
                };
                self.new_requests.push(approval.clone());
                self.fixes.push(Fix::PutApproval(approval));
            }
        }
    }

    fn file_request(&mut self, rt: RequestType, target: EntityId, data: RequestData, id: EntityId) {
        let approval = Approval {
            id,
            requested_by: self.author,
            request_type: rt,
            target_id: target,
            request_data: data,
            message: None,
            status: ApprovalStatus::Pending,
            responded_by: None,
            responded_at: None,
            created_at: self.now,
        };
        self.new_requests.push(approval.clone());
        self.fixes.push(Fix::PutApproval(approval));
    }

    /// A client-written time, bounded by the server's receive time plus the clock skew allowed
    /// ([`crate::time::MAX_CLOCK_SKEW`]): a later one is replaced by the receive time.
    fn bounded(&self, t: Millis) -> Millis {
        t.at_most(self.now)
    }

    // ---- expenses -----------------------------------------------------------------------

    fn expense_valid(&self, e: &Expense) -> bool {
        validate::name("name", &e.name).is_ok()
            && validate::positive_amount("amount", e.amount, &self.currency).is_ok()
    }

    fn check_expense(&mut self, key: &str) {
        let before: Read<Expense> =
            before_of(&self.before.expenses, self.after, key, read::read_expense);
        let after: Read<Expense> = read::read_expense(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) => self.check_existing_expense(b, a),
            (Ok(Some(b)), _) => {
                // Restored as the answers given in this merge left it (a declined addition
                // comes back archived, not pending without a request).
                let restored = self
                    .answers_for(b.id)
                    .iter()
                    .fold(b, |e, ans| expense_after_answer(&e, ans));
                if restored.status == ItemStatus::PendingApproval {
                    self.ensure_add_request(
                        RequestType::ExpenseAdd,
                        &AddedItem::expense(&restored),
                    );
                }
                self.fixes.push(Fix::PutExpense(restored));
            }
            (_, Ok(None)) => {}
            (_, Ok(Some(a))) if self.expense_valid(&a) => self.check_new_expense(a),
            (_, _) => self.remove(Collection::Expenses, key),
        }
    }

    fn check_new_expense(&mut self, a: Expense) {
        let mut fixed = a.clone();
        fixed.added_by = self.author;
        fixed.created_at = self.bounded(a.created_at);
        fixed.updated_at = self.bounded(a.updated_at);
        let over = self.policy.expense_add_needs_approval(a.amount);
        if a.status == ItemStatus::Active && over {
            fixed.status = ItemStatus::PendingApproval;
        }
        if fixed != a {
            self.fixes.push(Fix::PutExpense(fixed.clone()));
        }
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::ExpenseAdd, &AddedItem::expense(&fixed));
        }
    }

    fn check_existing_expense(&mut self, b: Expense, a: Expense) {
        // The state the merge may legitimately produce: before + answers given in it.
        let mut baseline = b.clone();
        for ans in self.answers_for(b.id) {
            baseline = expense_after_answer(&baseline, &ans);
        }
        let mut fixed = a.clone();
        fixed.added_by = b.added_by;
        fixed.created_at = b.created_at;
        if a.updated_at != b.updated_at {
            fixed.updated_at = self.bounded(a.updated_at);
        }
        // Status: only archiving is free; anything else must match the baseline.
        let free_archive = a.status == ItemStatus::Archived;
        if !free_archive {
            fixed.status = baseline.status;
        }
        // Fields: edits the client made itself become a request; unapplied answers get applied.
        let client_edit = ExpenseFields::changed(&b, &a);
        let sanctioned = ExpenseFields::changed(&b, &baseline);
        let unapproved = ExpenseFields {
            name: client_edit
                .name
                .filter(|v| Some(v) != sanctioned.name.as_ref()),
            amount: client_edit.amount.filter(|v| Some(*v) != sanctioned.amount),
            category: client_edit
                .category
                .filter(|v| Some(*v) != sanctioned.category),
            frequency: client_edit
                .frequency
                .filter(|v| Some(*v) != sanctioned.frequency),
        };
        fixed.name = baseline.name.clone();
        fixed.amount = baseline.amount;
        fixed.category = baseline.category;
        fixed.frequency = baseline.frequency;
        if !unapproved.is_empty() && self.expense_valid(&unapproved.apply_to(&baseline)) {
            let id = edit_request_id(b.id, &format!("{unapproved:?}"));
            self.file_request(
                RequestType::ExpenseEdit,
                b.id,
                RequestData::Expense(unapproved),
                id,
            );
        }
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::ExpenseAdd, &AddedItem::expense(&fixed));
        }
        if fixed.status == ItemStatus::Archived && baseline.status == ItemStatus::PendingApproval {
            self.withdraw_add_request(b.id);
        }
        if fixed != a {
            self.fixes.push(Fix::PutExpense(fixed));
        }
    }

    // ---- goals and their contributions --------------------------------------------------

    fn goal_valid(&self, g: &Goal) -> bool {
        validate::name("name", &g.name).is_ok()
            && validate::positive_amount("target_amount", g.target_amount, &self.currency).is_ok()
            && g.saved_amount.0 >= 0
    }

    /// Checks one touched contribution entry; returns the goal and by how much this merge
    /// legitimately moved its saved amount through it.
    fn check_goal_contribution(&mut self, key: &str) -> Option<(String, i64)> {
        let before: Read<GoalContribution> = before_of(
            &self.before.goal_contributions,
            self.after,
            key,
            read::read_goal_contribution,
        );
        let after: Read<GoalContribution> = read::read_goal_contribution(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => None,
            (Ok(Some(b)), _) => {
                self.fixes.push(Fix::PutGoalContribution(b.clone()));
                Some((b.goal_id.to_string(), 0))
            }
            (_, Ok(None)) => None,
            (_, Ok(Some(a))) => {
                let goal_key = a.goal_id.to_string();
                let before_goal =
                    before_of(&self.before.goals, self.after, &goal_key, read::read_goal);
                let goal_ok = match (&before_goal, read::read_goal(self.after, &goal_key)) {
                    (Ok(Some(b)), Ok(Some(g))) => {
                        b.status == ItemStatus::Active && g.status == ItemStatus::Active
                    }
                    // Deleted or broken in this merge: it is restored as it was, so the
                    // contribution is judged against that and counted in the restored goal.
                    (Ok(Some(b)), _) => b.status == ItemStatus::Active,
                    _ => false,
                };
                let amount_ok =
                    validate::positive_amount("amount", a.amount, &self.currency).is_ok();
                if !goal_ok || !amount_ok {
                    self.remove(Collection::GoalContributions, key);
                    return Some((goal_key, 0));
                }
                let fixed = GoalContribution {
                    user_id: self.author,
                    created_at: self.bounded(a.created_at),
                    ..a.clone()
                };
                if fixed != a {
                    self.fixes.push(Fix::PutGoalContribution(fixed));
                }
                Some((goal_key, a.amount.0))
            }
            (_, Err(_)) => {
                self.remove(Collection::GoalContributions, key);
                None
            }
        }
    }

    fn check_goal(&mut self, key: &str, contributed: i64) {
        let before: Read<Goal> = before_of(&self.before.goals, self.after, key, read::read_goal);
        let after: Read<Goal> = read::read_goal(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) => self.check_existing_goal(b, a, contributed),
            (Ok(Some(b)), _) => {
                let restored = self
                    .answers_for(b.id)
                    .iter()
                    .fold(b, |g, ans| goal_after_answer(&g, ans));
                if restored.status == ItemStatus::PendingApproval {
                    self.ensure_add_request(RequestType::GoalAdd, &AddedItem::goal(&restored));
                }
                self.fixes.push(Fix::PutGoal(restored.clone()));
                self.fix_saved(&restored, None, restored.saved_amount.0 + contributed);
            }
            (_, Ok(None)) => {}
            (_, Ok(Some(a))) if self.goal_valid(&a) => self.check_new_goal(a, contributed),
            (_, _) => self.remove(Collection::Goals, key),
        }
    }

    /// Makes the saved-amount counter equal `expected`.
    fn fix_saved(&mut self, goal: &Goal, current: Option<&Goal>, expected: i64) {
        let obj = read::entity_obj(self.after, Collection::Goals, &goal.id.to_string())
            .ok()
            .flatten();
        let is_counter = obj
            .as_ref()
            .is_some_and(|o| read::is_counter(self.after, o, "saved_amount"));
        let current_value = current.map(|g| g.saved_amount.0);
        if is_counter && current_value == Some(expected) {
            return;
        }
        self.fixes.push(Fix::FixSaved {
            goal: goal.id,
            value: MinorUnits(expected),
        });
    }

    fn check_new_goal(&mut self, a: Goal, contributed: i64) {
        let mut fixed = a.clone();
        fixed.added_by = self.author;
        fixed.created_at = self.bounded(a.created_at);
        fixed.updated_at = self.bounded(a.updated_at);
        if a.status == ItemStatus::Active {
            fixed.status = ItemStatus::PendingApproval;
        }
        let mut comparable = fixed.clone();
        comparable.saved_amount = a.saved_amount;
        if comparable != a {
            self.fixes.push(Fix::PutGoal(fixed.clone()));
        }
        self.fix_saved(&fixed, Some(&a), contributed);
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::GoalAdd, &AddedItem::goal(&fixed));
        }
    }

    fn check_existing_goal(&mut self, b: Goal, a: Goal, contributed: i64) {
        let mut baseline = b.clone();
        for ans in self.answers_for(b.id) {
            baseline = goal_after_answer(&baseline, &ans);
        }
        let mut fixed = a.clone();
        fixed.added_by = b.added_by;
        fixed.created_at = b.created_at;
        if a.updated_at != b.updated_at {
            fixed.updated_at = self.bounded(a.updated_at);
        }
        if a.status != ItemStatus::Archived {
            fixed.status = baseline.status;
        }
        let client_edit = GoalFields::changed(&b, &a);
        let sanctioned = GoalFields::changed(&b, &baseline);
        let unapproved = GoalFields {
            name: client_edit
                .name
                .filter(|v| Some(v) != sanctioned.name.as_ref()),
            target_amount: client_edit
                .target_amount
                .filter(|v| Some(*v) != sanctioned.target_amount),
            goal_type: client_edit
                .goal_type
                .filter(|v| Some(*v) != sanctioned.goal_type),
            priority: client_edit
                .priority
                .filter(|v| Some(*v) != sanctioned.priority),
        };
        fixed.name = baseline.name.clone();
        fixed.target_amount = baseline.target_amount;
        fixed.goal_type = baseline.goal_type;
        fixed.priority = baseline.priority;
        if !unapproved.is_empty() && self.goal_valid(&unapproved.apply_to(&baseline)) {
            let id = edit_request_id(b.id, &format!("{unapproved:?}"));
            self.file_request(
                RequestType::GoalEdit,
                b.id,
                RequestData::Goal(unapproved),
                id,
            );
        }
        if fixed.status == ItemStatus::PendingApproval {
            self.ensure_add_request(RequestType::GoalAdd, &AddedItem::goal(&fixed));
        }
        if fixed.status == ItemStatus::Archived && baseline.status == ItemStatus::PendingApproval {
            self.withdraw_add_request(b.id);
        }
        let mut comparable = fixed.clone();
        comparable.saved_amount = a.saved_amount;
        if comparable != a {
            self.fixes.push(Fix::PutGoal(fixed.clone()));
        }
        self.fix_saved(&fixed, Some(&a), b.saved_amount.0 + contributed);
    }

    // ---- messages -----------------------------------------------------------------------

    fn check_message(&mut self, key: &str) {
        let before: Read<Message> =
            before_of(&self.before.messages, self.after, key, read::read_message);
        let after: Read<Message> = read::read_message(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => {}
            (Ok(Some(b)), Ok(Some(a))) => {
                let only_read = Message {
                    read_by_recipient: b.read_by_recipient,
                    ..a.clone()
                } == b;
                let recipient_reads =
                    !b.read_by_recipient && a.read_by_recipient && b.sender_id != self.author;
                if !(only_read && recipient_reads) {
                    let mut fixed = b.clone();
                    if recipient_reads {
                        fixed.read_by_recipient = true;
                    }
                    self.fixes.push(Fix::PutMessage(fixed));
                }
            }
            (Ok(Some(b)), _) => self.fixes.push(Fix::PutMessage(b)),
            (_, Ok(None)) => {}
            (_, Ok(Some(a)))
                if a.sender_id == self.author && validate::message_text(&a.text).is_ok() =>
            {
                let fixed = Message {
                    read_by_recipient: false,
                    created_at: self.bounded(a.created_at),
                    ..a.clone()
                };
                if fixed != a {
                    self.fixes.push(Fix::PutMessage(fixed));
                }
            }
            (_, _) => self.remove(Collection::Messages, key),
        }
    }

    // ---- monthly contributions ----------------------------------------------------------

    fn check_month(&mut self, key: &str) {
        let before: Read<MonthContribution> =
            before_of(&self.before.months, self.after, key, read::read_month);
        let after: Read<MonthContribution> = read::read_month(self.after, key);
        match (before, after) {
            (Ok(Some(b)), Ok(Some(a))) if a == b => {}
            (Ok(Some(b)), after) => {
                let mut expected = b.clone();
                if let Ok(Some(a)) = &after {
                    let own_was_unpaid = !matches!(b.paid.get(&self.author), Some(Some(_)));
                    let own_now = a.paid.get(&self.author).copied().flatten();
                    let is_member = b.amounts.contains_key(&self.author)
                        || self.partner.is_some_and(|p| b.amounts.contains_key(&p));
                    if own_was_unpaid && is_member {
                        if let Some(at) = own_now {
                            expected.paid.insert(self.author, Some(self.bounded(at)));
                        }
                    }
                }
                if after.as_ref().ok().and_then(|a| a.as_ref()) != Some(&expected) {
                    self.fixes.push(Fix::PutMonth(expected));
                }
            }
            (_, Ok(None)) => {}
            (_, _) => self.remove(Collection::Contributions, key),
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

/// Writes the fixes into a transaction.
pub fn apply_fixes<T: Transactable>(tx: &mut T, fixes: &[Fix]) -> Result<(), EnforceError> {
    for fix in fixes {
        apply_fix(tx, fix)?;
    }
    Ok(())
}

fn entity_or_new<T: Transactable>(
    tx: &mut T,
    c: Collection,
    key: &str,
) -> Result<(ObjId, bool), EnforceError> {
    match read::entity_obj(tx, c, key) {
        Ok(Some(o)) => Ok((o, false)),
        _ => Ok((write::new_entity(tx, c, key)?, true)),
    }
}

fn apply_fix<T: Transactable>(tx: &mut T, fix: &Fix) -> Result<(), EnforceError> {
    match fix {
        Fix::PutExpense(e) => {
            let key = e.id.to_string();
            let current = read::read_expense(tx, &key).ok().flatten();
            let (obj, _) = entity_or_new(tx, Collection::Expenses, &key)?;
            match current {
                Some(cur) => put_changed_expense(tx, &obj, &cur, e)?,
                None => write::put_expense_fields(tx, &obj, e)?,
            }
        }
        Fix::PutGoal(g) => {
            let key = g.id.to_string();
            let current = read::read_goal(tx, &key).ok().flatten();
            let (obj, fresh) = entity_or_new(tx, Collection::Goals, &key)?;
            match current {
                Some(cur) => {
                    ops::write_goal_edit(tx, &obj, &cur, g)?;
                    if cur.status != g.status {
                        tx.put(&obj, "status", g.status.as_str())?;
                    }
                    if cur.added_by != g.added_by {
                        tx.put(&obj, "added_by", g.added_by.to_string())?;
                    }
                    if cur.created_at != g.created_at {
                        tx.put(&obj, "created_at", g.created_at.0)?;
                    }
                    if cur.updated_at != g.updated_at {
                        tx.put(&obj, "updated_at", g.updated_at.0)?;
                    }
                }
                None => {
                    write::put_goal_fields(tx, &obj, g)?;
                    if fresh {
                        tx.put(&obj, "saved_amount", ScalarValue::counter(g.saved_amount.0))?;
                    }
                }
            }
        }
        Fix::FixSaved { goal, value } => {
            if let Some(obj) = read::entity_obj(tx, Collection::Goals, &goal.to_string())? {
                tx.put(&obj, "saved_amount", ScalarValue::counter(value.0))?;
            }
        }
        Fix::PutGoalContribution(c) => {
            let (obj, _) = entity_or_new(tx, Collection::GoalContributions, &c.id.to_string())?;
            tx.put(&obj, "goal_id", c.goal_id.to_string())?;
            tx.put(&obj, "user_id", c.user_id.to_string())?;
            tx.put(&obj, "amount", c.amount.0)?;
            tx.put(&obj, "created_at", c.created_at.0)?;
        }
        Fix::PutApproval(a) => {
            let key = a.id.to_string();
            let current = read::read_approval(tx, &key).ok().flatten();
            if current.as_ref() != Some(a) {
                let (obj, _) = entity_or_new(tx, Collection::Approvals, &key)?;
                write::put_approval_fields(tx, &obj, a)?;
            }
        }
        Fix::PutMessage(m) => {
            let (obj, _) = entity_or_new(tx, Collection::Messages, &m.id.to_string())?;
            write::put_message_fields(tx, &obj, m)?;
        }
        Fix::PutMonth(m) => {
            let (obj, _) = entity_or_new(tx, Collection::Contributions, &m.month.to_string())?;
            write::put_month_fields(tx, &obj, m)?;
        }
        Fix::PutMember(m) => {
            let (obj, _) = entity_or_new(tx, Collection::Members, &m.user_id.to_string())?;
            write::put_member_fields(tx, &obj, m)?;
        }
        Fix::PutPartnership(p) => {
            let obj = match read::map_at(tx, &automerge::ROOT, keys::PARTNERSHIP) {
                Some(o) => o,
                None => tx.put_object(automerge::ROOT, keys::PARTNERSHIP, ObjType::Map)?,
            };
            write::put_partnership_fields(tx, &obj, p)?;
        }
        Fix::PutSchema(v) => tx.put(automerge::ROOT, keys::SCHEMA, *v)?,
        Fix::Remove { collection, key } => write::delete_entity(tx, *collection, key)?,
    }
    Ok(())
}

fn put_changed_expense<T: Transactable>(
    tx: &mut T,
    obj: &ObjId,
    cur: &Expense,
    e: &Expense,
) -> Result<(), AutomergeError> {
    ops::write_expense_edit(tx, obj, cur, e)?;
    if cur.status != e.status {
        tx.put(obj, "status", e.status.as_str())?;
    }
    if cur.added_by != e.added_by {
        tx.put(obj, "added_by", e.added_by.to_string())?;
    }
    if cur.created_at != e.created_at {
        tx.put(obj, "created_at", e.created_at.0)?;
    }
    if cur.updated_at != e.updated_at {
        tx.put(obj, "updated_at", e.updated_at.0)?;
    }
    Ok(())
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

/// Writes the compensations of `enforcement` into `doc` as one change by `doc`'s actor (the
/// server's), returning its hash, or `None` when nothing needed compensating.
pub fn compensate(
    doc: &mut Automerge,
    enforcement: &Enforcement,
    now: Millis,
) -> Result<Option<ChangeHash>, EnforceError> {
    if enforcement.fixes.is_empty() {
        return Ok(None);
    }
    let result = doc.transact_with::<_, _, EnforceError, _>(
        |_| {
            CommitOptions::default()
                .with_message("splitsave: compensation")
                .with_time(now.0 / 1000)
        },
        |tx| apply_fixes(tx, &enforcement.fixes),
    );
    match result {
        Ok(success) => Ok(success.hash),
        Err(failure) => Err(failure.error),
    }
}
