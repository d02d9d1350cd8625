//! Operations: what a partner does, as functions over a document transaction.
//!
//! The SDK calls these locally (offline) and the server calls them for REST writes, so both
//! follow the same policy: each operation either applies directly or writes an approval
//! request instead ([`Outcome`]). Every operation validates its input and refuses with a typed
//! [`OpError`] before writing anything.

use automerge::transaction::Transactable;
use automerge::AutomergeError;

use crate::enums::*;
use crate::ids::{EntityId, UserId};
use crate::money::{Currency, MinorUnits};
use crate::policy::{add_request_id, Policy};
use crate::read::{self, ShapeError};
use crate::schema::*;
use crate::split::Month;
use crate::time::Millis;
use crate::validate::{self, ValidationError};
use crate::write;

/// Who acts, and when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// The acting partner.
    pub user: UserId,
    /// The time written into the document.
    pub now: Millis,
}

/// What an operation did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Applied directly; `id` is the entity written or changed.
    Applied {
        /// The entity.
        id: EntityId,
    },
    /// Needs the partner's approval: a request was filed.
    ApprovalRequested {
        /// The approval request.
        request_id: EntityId,
        /// The expense or goal concerned.
        target_id: EntityId,
    },
}

/// Why an operation was refused. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    /// Bad input.
    #[error(transparent)]
    Validation(#[from] ValidationError),
    /// The entity does not exist in this partnership.
    #[error("not found")]
    NotFound,
    /// The caller may not do this (e.g. approving their own request).
    #[error("forbidden: {0}")]
    Forbidden(&'static str),
    /// The entity is not in a state that allows this (e.g. already answered).
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The caller is not a member of this partnership.
    #[error("not a member of this partnership")]
    NotMember,
    /// The partnership is not active (paused partnerships are read-only).
    #[error("partnership is not active")]
    Inactive,
    /// The document does not have the expected shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// Automerge refused a write.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
}

/// Result of an operation.
pub type OpResult<T> = Result<T, OpError>;

/// Input of [`add_expense`].
#[derive(Clone, Debug)]
pub struct NewExpense {
    /// 1–200 characters.
    pub name: String,
    /// Positive, in minor units.
    pub amount: MinorUnits,
    /// Category.
    pub category: Category,
    /// Frequency.
    pub frequency: Frequency,
}

/// Input of [`add_goal`].
#[derive(Clone, Debug)]
pub struct NewGoal {
    /// 1–200 characters.
    pub name: String,
    /// Positive target.
    pub target_amount: MinorUnits,
    /// Kind.
    pub goal_type: GoalType,
    /// Priority.
    pub priority: Priority,
}

/// The partnership settings, after checking the caller may write.
pub(crate) fn writable<T: Transactable>(tx: &T, ctx: &Ctx) -> OpResult<PartnershipInfo> {
    let info = read::read_partnership(tx)?;
    if read::read_member(tx, &ctx.user.to_string())?.is_none() {
        return Err(OpError::NotMember);
    }
    if info.status != PartnershipStatus::Active {
        return Err(OpError::Inactive);
    }
    Ok(info)
}

fn check_expense_fields(f: &ExpenseFields, currency: &Currency) -> OpResult<ExpenseFields> {
    Ok(ExpenseFields {
        name: f
            .name
            .as_deref()
            .map(|n| validate::name("name", n))
            .transpose()?,
        amount: f
            .amount
            .map(|a| validate::positive_amount("amount", a, currency))
            .transpose()?,
        category: f.category,
        frequency: f.frequency,
    })
}

fn check_goal_fields(f: &GoalFields, currency: &Currency) -> OpResult<GoalFields> {
    Ok(GoalFields {
        name: f
            .name
            .as_deref()
            .map(|n| validate::name("name", n))
            .transpose()?,
        target_amount: f
            .target_amount
            .map(|a| validate::positive_amount("target_amount", a, currency))
            .transpose()?,
        goal_type: f.goal_type,
        priority: f.priority,
    })
}

fn request(
    ctx: &Ctx,
    id: EntityId,
    request_type: RequestType,
    target_id: EntityId,
    request_data: RequestData,
    message: Option<String>,
) -> Approval {
    Approval {
        id,
        requested_by: ctx.user,
        request_type,
        target_id,
        request_data,
        message,
        status: ApprovalStatus::Pending,
        responded_by: None,
        responded_at: None,
        created_at: ctx.now,
    }
}

/// Adds an expense: directly when at or under the threshold, otherwise as `pending_approval`
/// with an `expense_add` request whose id is [`add_request_id`] of the expense.
pub fn add_expense<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    input: &NewExpense,
) -> OpResult<Outcome> {
    add_expense_with_id(tx, ctx, EntityId::new_v7(), input)
}

/// [`add_expense`] with a caller-chosen id (tests, idempotent retries).
pub fn add_expense_with_id<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    id: EntityId,
    input: &NewExpense,
) -> OpResult<Outcome> {
    let info = writable(tx, ctx)?;
    let name = validate::name("name", &input.name)?;
    let amount = validate::positive_amount("amount", input.amount, &info.currency)?;
    if read::read_expense(tx, &id.to_string())
        .ok()
        .flatten()
        .is_some()
    {
        return Err(OpError::Conflict("expense already exists"));
    }
    let needs_approval = Policy::of(&info).expense_add_needs_approval(amount);
    let expense = Expense {
        id,
        name,
        amount,
        category: input.category,
        frequency: input.frequency,
        added_by: ctx.user,
        status: if needs_approval {
            ItemStatus::PendingApproval
        } else {
            ItemStatus::Active
        },
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    write::put_expense(tx, &expense)?;
    if !needs_approval {
        return Ok(Outcome::Applied { id });
    }
    let request_id = add_request_id(id);
    let data = expense_add_data(&expense);
    write::put_approval(
        tx,
        &request(ctx, request_id, RequestType::ExpenseAdd, id, data, None),
    )?;
    Ok(Outcome::ApprovalRequested {
        request_id,
        target_id: id,
    })
}

/// Proposes an edit of an expense: always an `expense_edit` request (edits need approval).
pub fn edit_expense<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    id: EntityId,
    fields: &ExpenseFields,
    message: Option<&str>,
) -> OpResult<Outcome> {
    let info = writable(tx, ctx)?;
    let current = read::read_expense(tx, &id.to_string())?.ok_or(OpError::NotFound)?;
    if current.status == ItemStatus::Archived {
        return Err(OpError::Conflict("expense is archived"));
    }
    let fields = check_expense_fields(fields, &info.currency)?;
    let proposed = fields.apply_to(&current);
    let changed = ExpenseFields::changed(&current, &proposed);
    if changed.is_empty() {
        return Err(ValidationError::new("fields", "nothing to change").into());
    }
    let request_id = EntityId::new_v7();
    let note = validate::note(message)?;
    let data = RequestData::Expense(changed);
    write::put_approval(
        tx,
        &request(ctx, request_id, RequestType::ExpenseEdit, id, data, note),
    )?;
    Ok(Outcome::ApprovalRequested {
        request_id,
        target_id: id,
    })
}

/// Archives an expense (either partner; no approval). Archiving twice is a no-op.
pub fn archive_expense<T: Transactable>(tx: &mut T, ctx: &Ctx, id: EntityId) -> OpResult<Outcome> {
    writable(tx, ctx)?;
    let current = read::read_expense(tx, &id.to_string())?.ok_or(OpError::NotFound)?;
    if current.status != ItemStatus::Archived {
        let obj = read::entity_obj(tx, Collection::Expenses, &id.to_string())?
            .ok_or(OpError::NotFound)?;
        tx.put(&obj, "status", ItemStatus::Archived.as_str())?;
        tx.put(&obj, "updated_at", ctx.now.0)?;
        if current.status == ItemStatus::PendingApproval {
            withdraw_add_request(tx, id)?;
        }
    }
    Ok(Outcome::Applied { id })
}

/// Archiving an item still waiting for approval withdraws it: its pending add request goes
/// too, so the partner is not asked to approve what approving would no longer add.
fn withdraw_add_request<T: Transactable>(tx: &mut T, item: EntityId) -> OpResult<()> {
    let key = add_request_id(item).to_string();
    if let Some(request) = read::read_approval(tx, &key)? {
        if request.status == ApprovalStatus::Pending {
            write::delete_entity(tx, Collection::Approvals, &key)?;
        }
    }
    Ok(())
}

/// Proposes a goal: always `pending_approval` with a `goal_add` request.
pub fn add_goal<T: Transactable>(tx: &mut T, ctx: &Ctx, input: &NewGoal) -> OpResult<Outcome> {
    add_goal_with_id(tx, ctx, EntityId::new_v7(), input)
}

/// [`add_goal`] with a caller-chosen id.
pub fn add_goal_with_id<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    id: EntityId,
    input: &NewGoal,
) -> OpResult<Outcome> {
    let info = writable(tx, ctx)?;
    let name = validate::name("name", &input.name)?;
    let target = validate::positive_amount("target_amount", input.target_amount, &info.currency)?;
    if read::read_goal(tx, &id.to_string())
        .ok()
        .flatten()
        .is_some()
    {
        return Err(OpError::Conflict("goal already exists"));
    }
    let goal = Goal {
        id,
        name,
        target_amount: target,
        saved_amount: MinorUnits(0),
        goal_type: input.goal_type,
        priority: input.priority,
        added_by: ctx.user,
        status: ItemStatus::PendingApproval,
        created_at: ctx.now,
        updated_at: ctx.now,
    };
    write::put_goal(tx, &goal)?;
    let request_id = add_request_id(id);
    let data = goal_add_data(&goal);
    write::put_approval(
        tx,
        &request(ctx, request_id, RequestType::GoalAdd, id, data, None),
    )?;
    Ok(Outcome::ApprovalRequested {
        request_id,
        target_id: id,
    })
}

/// Proposes an edit of a goal: always a `goal_edit` request.
pub fn edit_goal<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    id: EntityId,
    fields: &GoalFields,
    message: Option<&str>,
) -> OpResult<Outcome> {
    let info = writable(tx, ctx)?;
    let current = read::read_goal(tx, &id.to_string())?.ok_or(OpError::NotFound)?;
    if current.status == ItemStatus::Archived {
        return Err(OpError::Conflict("goal is archived"));
    }
    let fields = check_goal_fields(fields, &info.currency)?;
    let proposed = fields.apply_to(&current);
    let changed = GoalFields::changed(&current, &proposed);
    if changed.is_empty() {
        return Err(ValidationError::new("fields", "nothing to change").into());
    }
    let request_id = EntityId::new_v7();
    let note = validate::note(message)?;
    write::put_approval(
        tx,
        &request(
            ctx,
            request_id,
            RequestType::GoalEdit,
            id,
            RequestData::Goal(changed),
            note,
        ),
    )?;
    Ok(Outcome::ApprovalRequested {
        request_id,
        target_id: id,
    })
}

/// Archives a goal (either partner; no approval).
pub fn archive_goal<T: Transactable>(tx: &mut T, ctx: &Ctx, id: EntityId) -> OpResult<Outcome> {
    writable(tx, ctx)?;
    let current = read::read_goal(tx, &id.to_string())?.ok_or(OpError::NotFound)?;
    if current.status != ItemStatus::Archived {
        let obj =
            read::entity_obj(tx, Collection::Goals, &id.to_string())?.ok_or(OpError::NotFound)?;
        tx.put(&obj, "status", ItemStatus::Archived.as_str())?;
        tx.put(&obj, "updated_at", ctx.now.0)?;
        if current.status == ItemStatus::PendingApproval {
            withdraw_add_request(tx, id)?;
        }
    }
    Ok(Outcome::Applied { id })
}

/// Logs a contribution to an active goal: increments the goal's counter (so two partners
/// adding offline add up) and records who gave what. Returns the contribution's id.
pub fn contribute_to_goal<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    goal_id: EntityId,
    amount: MinorUnits,
) -> OpResult<Outcome> {
    let info = writable(tx, ctx)?;
    let amount = validate::positive_amount("amount", amount, &info.currency)?;
    let goal = read::read_goal(tx, &goal_id.to_string())?.ok_or(OpError::NotFound)?;
    if goal.status != ItemStatus::Active {
        return Err(OpError::Conflict("goal is not active"));
    }
    let obj =
        read::entity_obj(tx, Collection::Goals, &goal_id.to_string())?.ok_or(OpError::NotFound)?;
    if !read::is_counter(tx, &obj, "saved_amount") {
        return Err(OpError::Shape(ShapeError {
            path: format!("goals.{goal_id}.saved_amount"),
            reason: "expected a counter",
        }));
    }
    tx.increment(&obj, "saved_amount", amount.0)?;
    let id = EntityId::new_v7();
    write::put_goal_contribution(
        tx,
        &GoalContribution {
            id,
            goal_id,
            user_id: ctx.user,
            amount,
            created_at: ctx.now,
        },
    )?;
    Ok(Outcome::Applied { id })
}

/// Approves a pending request (only the partner who did not ask) and applies it.
pub fn approve<T: Transactable>(tx: &mut T, ctx: &Ctx, request_id: EntityId) -> OpResult<Outcome> {
    respond(tx, ctx, request_id, ApprovalStatus::Approved)
}

/// Declines a pending request (only the partner who did not ask). A declined addition is
/// archived; a declined edit leaves the old values.
pub fn decline<T: Transactable>(tx: &mut T, ctx: &Ctx, request_id: EntityId) -> OpResult<Outcome> {
    respond(tx, ctx, request_id, ApprovalStatus::Declined)
}

fn respond<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    request_id: EntityId,
    answer: ApprovalStatus,
) -> OpResult<Outcome> {
    writable(tx, ctx)?;
    let key = request_id.to_string();
    let approval = read::read_approval(tx, &key)?.ok_or(OpError::NotFound)?;
    if approval.requested_by == ctx.user {
        return Err(OpError::Forbidden(
            "only the partner who did not ask may answer",
        ));
    }
    if approval.status != ApprovalStatus::Pending {
        return Err(OpError::Conflict("request already answered"));
    }
    let obj = read::entity_obj(tx, Collection::Approvals, &key)?.ok_or(OpError::NotFound)?;
    tx.put(&obj, "status", answer.as_str())?;
    tx.put(&obj, "responded_by", ctx.user.to_string())?;
    tx.put(&obj, "responded_at", ctx.now.0)?;
    let answered = Approval {
        status: answer,
        responded_by: Some(ctx.user),
        responded_at: Some(ctx.now),
        ..approval
    };
    apply_answer(tx, &answered, ctx.now)?;
    Ok(Outcome::Applied { id: request_id })
}

/// Applies the effect of an answered request to its target. Idempotent: applying it twice
/// leaves the same state, so the client that approves and the server that checks the
/// approval may both apply it and the request still takes effect exactly once.
pub fn apply_answer<T: Transactable>(tx: &mut T, approval: &Approval, now: Millis) -> OpResult<()> {
    let target = approval.target_id.to_string();
    match (
        approval.status,
        approval.request_type,
        &approval.request_data,
    ) {
        (ApprovalStatus::Pending, _, _) => {}
        (answer, RequestType::ExpenseAdd | RequestType::GoalAdd, _) => {
            let coll = if approval.request_type == RequestType::ExpenseAdd {
                Collection::Expenses
            } else {
                Collection::Goals
            };
            let status = if answer == ApprovalStatus::Approved {
                ItemStatus::Active
            } else {
                ItemStatus::Archived
            };
            let current = match coll {
                Collection::Expenses => read::read_expense(tx, &target)?.map(|e| e.status),
                _ => read::read_goal(tx, &target)?.map(|g| g.status),
            };
            if current == Some(ItemStatus::PendingApproval) {
                let obj = read::entity_obj(tx, coll, &target)?.ok_or(OpError::NotFound)?;
                tx.put(&obj, "status", status.as_str())?;
                tx.put(&obj, "updated_at", now.0)?;
            }
        }
        (ApprovalStatus::Declined, _, _) => {}
        (ApprovalStatus::Approved, RequestType::ExpenseEdit, RequestData::Expense(f)) => {
            if let Some(current) = read::read_expense(tx, &target)? {
                let next = f.apply_to(&current);
                if next != current && current.status != ItemStatus::Archived {
                    let obj = read::entity_obj(tx, Collection::Expenses, &target)?
                        .ok_or(OpError::NotFound)?;
                    write_expense_edit(tx, &obj, &current, &next)?;
                    tx.put(&obj, "updated_at", now.0)?;
                    if current.status == ItemStatus::PendingApproval {
                        describe_pending_addition(tx, approval.target_id, expense_add_data(&next))?;
                    }
                }
            }
        }
        (ApprovalStatus::Approved, RequestType::GoalEdit, RequestData::Goal(f)) => {
            if let Some(current) = read::read_goal(tx, &target)? {
                let next = f.apply_to(&current);
                if next != current && current.status != ItemStatus::Archived {
                    let obj = read::entity_obj(tx, Collection::Goals, &target)?
                        .ok_or(OpError::NotFound)?;
                    write_goal_edit(tx, &obj, &current, &next)?;
                    tx.put(&obj, "updated_at", now.0)?;
                    if current.status == ItemStatus::PendingApproval {
                        describe_pending_addition(tx, approval.target_id, goal_add_data(&next))?;
                    }
                }
            }
        }
        (ApprovalStatus::Approved, _, _) => {
            return Err(OpError::Shape(ShapeError {
                path: format!("approvals.{}.request_data", approval.id),
                reason: "does not match the request type",
            }))
        }
    }
    Ok(())
}

/// After an approved edit of an item still waiting for its own approval: its add request is
/// rewritten to describe the item as it now stands, so the partner never approves an addition
/// whose request shows other values than approving makes active.
fn describe_pending_addition<T: Transactable>(
    tx: &mut T,
    target: EntityId,
    data: RequestData,
) -> OpResult<()> {
    let key = add_request_id(target).to_string();
    if let Some(request) = read::read_approval(tx, &key)? {
        if request.status == ApprovalStatus::Pending && request.request_data != data {
            let obj =
                read::entity_obj(tx, Collection::Approvals, &key)?.ok_or(OpError::NotFound)?;
            write::put_approval_fields(
                tx,
                &obj,
                &Approval {
                    request_data: data,
                    ..request
                },
            )?;
        }
    }
    Ok(())
}

/// The request data of an `expense_add` request: every field of the expense.
pub fn expense_add_data(e: &Expense) -> RequestData {
    RequestData::Expense(ExpenseFields {
        name: Some(e.name.clone()),
        amount: Some(e.amount),
        category: Some(e.category),
        frequency: Some(e.frequency),
    })
}

/// The request data of a `goal_add` request: every field of the goal.
pub fn goal_add_data(g: &Goal) -> RequestData {
    RequestData::Goal(GoalFields {
        name: Some(g.name.clone()),
        target_amount: Some(g.target_amount),
        goal_type: Some(g.goal_type),
        priority: Some(g.priority),
    })
}

/// Writes only the editable expense fields that differ between `from` and `to`.
pub fn write_expense_edit<T: Transactable>(
    tx: &mut T,
    obj: &automerge::ObjId,
    from: &Expense,
    to: &Expense,
) -> Result<(), AutomergeError> {
    if from.name != to.name {
        write::put_text(tx, obj, "name", &to.name)?;
    }
    if from.amount != to.amount {
        tx.put(obj, "amount", to.amount.0)?;
    }
    if from.category != to.category {
        tx.put(obj, "category", to.category.as_str())?;
    }
    if from.frequency != to.frequency {
        tx.put(obj, "frequency", to.frequency.as_str())?;
    }
    Ok(())
}

/// Writes only the editable goal fields that differ between `from` and `to`.
pub fn write_goal_edit<T: Transactable>(
    tx: &mut T,
    obj: &automerge::ObjId,
    from: &Goal,
    to: &Goal,
) -> Result<(), AutomergeError> {
    if from.name != to.name {
        write::put_text(tx, obj, "name", &to.name)?;
    }
    if from.target_amount != to.target_amount {
        tx.put(obj, "target_amount", to.target_amount.0)?;
    }
    if from.goal_type != to.goal_type {
        tx.put(obj, "goal_type", to.goal_type.as_str())?;
    }
    if from.priority != to.priority {
        tx.put(obj, "priority", to.priority.as_str())?;
    }
    Ok(())
}

/// Sends a message to the partner.
pub fn send_message<T: Transactable>(tx: &mut T, ctx: &Ctx, text: &str) -> OpResult<Outcome> {
    writable(tx, ctx)?;
    let text = validate::message_text(text)?;
    let id = EntityId::new_v7();
    write::put_message(
        tx,
        &Message {
            id,
            sender_id: ctx.user,
            text,
            message_type: MessageType::Text,
            read_by_recipient: false,
            created_at: ctx.now,
        },
    )?;
    Ok(Outcome::Applied { id })
}

/// Marks a message read (recipient only; idempotent).
pub fn mark_read<T: Transactable>(tx: &mut T, ctx: &Ctx, id: EntityId) -> OpResult<Outcome> {
    writable(tx, ctx)?;
    let key = id.to_string();
    let m = read::read_message(tx, &key)?.ok_or(OpError::NotFound)?;
    if m.sender_id == ctx.user {
        return Err(OpError::Forbidden(
            "only the recipient marks a message read",
        ));
    }
    if !m.read_by_recipient {
        let obj = read::entity_obj(tx, Collection::Messages, &key)?.ok_or(OpError::NotFound)?;
        tx.put(&obj, "read_by_recipient", true)?;
    }
    Ok(Outcome::Applied { id })
}

/// Marks the caller's own share of `month` paid (idempotent: the first time is kept).
pub fn mark_paid<T: Transactable>(tx: &mut T, ctx: &Ctx, month: Month) -> OpResult<Option<Millis>> {
    writable(tx, ctx)?;
    let key = month.to_string();
    let m = read::read_month(tx, &key)?.ok_or(OpError::NotFound)?;
    if let Some(Some(at)) = m.paid.get(&ctx.user) {
        return Ok(Some(*at));
    }
    let obj = read::entity_obj(tx, Collection::Contributions, &key)?.ok_or(OpError::NotFound)?;
    let paid = read::map_at(tx, &obj, "paid").ok_or(OpError::NotFound)?;
    tx.put(&paid, ctx.user.to_string(), ctx.now.0)?;
    Ok(Some(ctx.now))
}

/// Server only: writes (or rewrites the amounts of) a month's contribution from the split,
/// keeping the paid marks already there.
pub fn server_set_month<T: Transactable>(tx: &mut T, month: &MonthContribution) -> OpResult<()> {
    let key = month.month.to_string();
    match read::read_month(tx, &key) {
        Ok(Some(existing)) => {
            let obj =
                read::entity_obj(tx, Collection::Contributions, &key)?.ok_or(OpError::NotFound)?;
            if existing.total_required != month.total_required {
                tx.put(&obj, "total_required", month.total_required.0)?;
            }
            if existing.amounts != month.amounts {
                let amounts = read::map_at(tx, &obj, "amounts").ok_or(OpError::NotFound)?;
                for (u, a) in &month.amounts {
                    tx.put(&amounts, u.to_string(), a.0)?;
                }
            }
            Ok(())
        }
        _ => Ok(write::put_month(tx, month)?),
    }
}

/// Server only: updates a member's profile fields (name, income) in the document.
pub fn server_set_member<T: Transactable>(tx: &mut T, member: &Member) -> OpResult<()> {
    let key = member.user_id.to_string();
    match read::entity_obj(tx, Collection::Members, &key)? {
        Some(obj) => Ok(write::put_member_fields(tx, &obj, member)?),
        None => Ok(write::put_member(tx, member)?),
    }
}

/// Server only: sets the partnership status (pause/resume) in the document.
pub fn server_set_status<T: Transactable>(tx: &mut T, status: PartnershipStatus) -> OpResult<()> {
    let obj = read::map_at(tx, &automerge::ROOT, keys::PARTNERSHIP).ok_or(OpError::NotFound)?;
    tx.put(&obj, "status", status.as_str())?;
    Ok(())
}
