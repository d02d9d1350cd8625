/**
 * Operations: what a partner does, as functions over a document inside
 * `handle.change(d => ...)` (or `A.change`). The same policy, validation, outcomes, refusals
 * and derived ids as sync-core's `ops.rs`, so an app applies exactly the rules the server
 * enforces while offline: each operation either applies directly or files an approval request
 * instead, and refuses with a typed `OpError` before writing anything (a throw inside a change
 * also rolls the change back).
 *
 * Every value is written with its declared stored type (`write.ts`): free text as Text, ids and
 * enums as scalar strings, so the server has nothing to normalize.
 */
import { isCounter } from "@automerge/automerge"

import { OpError, ShapeError } from "./errors.js"
import {
  CATEGORY_VALUES,
  FREQUENCY_VALUES,
  GOAL_TYPE_VALUES,
  PRIORITY_VALUES,
  type Approval,
  type Category,
  type CollectionName,
  type Expense,
  type Frequency,
  type Goal,
  type GoalType,
  type Partnership,
  type Priority,
  type RequestData,
  type RequestType,
} from "./generated/schema.js"
import { addRequestId, newId, parseUuid } from "./ids.js"
import { collectionOf, isMap, isMonthKey, readEntity, readPartnership, type DocMap } from "./read.js"
import {
  validateEnum,
  validateMessageText,
  validateName,
  validateNote,
  validatePositiveAmount,
} from "./validate.js"
import { deleteEntity, putEntity, setField } from "./write.js"

/** Who acts, and when (Unix milliseconds written into the document). */
export interface Ctx {
  user: string
  now: number
}

/** What an operation did. */
export type Outcome =
  /** Applied directly; `id` is the entity written or changed. */
  | { kind: "applied"; id: string }
  /** Needs the partner's approval: a request was filed. */
  | { kind: "approval_requested"; requestId: string; targetId: string }

/** Input of `addExpense`. */
export interface NewExpense {
  /** 1–200 characters (trimmed). */
  name: string
  /** Positive, in minor units. */
  amount: number
  category: Category
  frequency: Frequency
}

/** Input of `addGoal`. */
export interface NewGoal {
  name: string
  /** Positive target, in minor units. */
  target_amount: number
  goal_type: GoalType
  priority: Priority
}

/** The editable fields of an expense: what an edit proposes (absent = unchanged). */
export interface ExpenseFields {
  name?: string
  amount?: number
  category?: Category
  frequency?: Frequency
}

/** The editable fields of a goal: what an edit proposes (absent = unchanged). */
export interface GoalFields {
  name?: string
  target_amount?: number
  goal_type?: GoalType
  priority?: Priority
}

function shapeToOp(e: unknown): never {
  if (e instanceof ShapeError) throw new OpError("shape", e.message)
  throw e
}

/** Reads an entity for an operation: a malformed one is a `shape` refusal, as in sync-core. */
function read<C extends CollectionName>(d: object, coll: C, key: string) {
  try {
    return readEntity(d, coll, key)
  } catch (e) {
    return shapeToOp(e)
  }
}

/** The entity's map in the change proxy (it was just read, so it exists and is a map). */
function entityObj(d: object, coll: CollectionName, key: string): DocMap {
  const obj = collectionOf(d, coll)?.[key]
  if (!isMap(obj)) throw new OpError("not_found", "not found")
  return obj
}

/** An id argument as the document keys it; a validation refusal when it is not a UUID. */
function idArg(field: string, v: unknown): string {
  const id = typeof v === "string" ? parseUuid(v) : null
  if (id === null) throw OpError.validation(field, "must be a UUID")
  return id
}

/** The partnership settings, after checking the caller may write (member, active partnership). */
function writable(d: object, ctx: Ctx): { partnership: Partnership; user: string } {
  let partnership: Partnership
  try {
    partnership = readPartnership(d)
  } catch (e) {
    return shapeToOp(e)
  }
  const user = typeof ctx.user === "string" ? parseUuid(ctx.user) : null
  if (user === null || read(d, "members", user) === null) {
    throw new OpError("not_member", "not a member of this partnership")
  }
  if (partnership.status !== "active") throw new OpError("inactive", "partnership is not active")
  if (!Number.isSafeInteger(ctx.now)) throw new TypeError("ctx.now must be Unix milliseconds (an integer)")
  return { partnership, user }
}

function request(
  user: string,
  now: number,
  id: string,
  requestType: RequestType,
  targetId: string,
  requestData: RequestData,
  message: string | null,
): Approval {
  return {
    id,
    requested_by: user,
    request_type: requestType,
    target_id: targetId,
    request_data: requestData,
    message,
    status: "pending",
    responded_by: null,
    responded_at: null,
    created_at: now,
  }
}

/** The request data of an `expense_add` request: every field of the expense. */
export function expenseAddData(e: Expense): RequestData {
  return { name: e.name, amount: e.amount, category: e.category, frequency: e.frequency }
}

/** The request data of a `goal_add` request: every field of the goal. */
export function goalAddData(g: Goal): RequestData {
  return { name: g.name, target_amount: g.target_amount, goal_type: g.goal_type, priority: g.priority }
}

/**
 * Adds an expense: directly when at or under the partnership's threshold, otherwise as
 * `pending_approval` with an `expense_add` request whose id is `addRequestId(id)`. `id` may be
 * given for idempotent retries; a fresh UUID v7 otherwise.
 */
export function addExpense(d: object, ctx: Ctx, input: NewExpense, id?: string): Outcome {
  const { partnership, user } = writable(d, ctx)
  const name = validateName("name", input.name)
  const amount = validatePositiveAmount("amount", input.amount, partnership.currency)
  const category = validateEnum("category", input.category, CATEGORY_VALUES)
  const frequency = validateEnum("frequency", input.frequency, FREQUENCY_VALUES)
  const key = id === undefined ? newId() : idArg("id", id)
  if (existsReadable(d, "expenses", key)) throw new OpError("conflict", "expense already exists")
  const needsApproval = amount > partnership.approval_threshold
  const expense: Expense = {
    id: key,
    name,
    amount,
    category,
    frequency,
    added_by: user,
    status: needsApproval ? "pending_approval" : "active",
    created_at: ctx.now,
    updated_at: ctx.now,
  }
  putEntity(d, "expenses", expense)
  if (!needsApproval) return { kind: "applied", id: key }
  const requestId = addRequestId(key)
  putEntity(d, "approvals", request(user, ctx.now, requestId, "expense_add", key, expenseAddData(expense), null))
  return { kind: "approval_requested", requestId, targetId: key }
}

/** An entity that exists AND reads (sync-core overwrites one that exists but does not read). */
function existsReadable(d: object, coll: CollectionName, key: string): boolean {
  try {
    return readEntity(d, coll, key) !== null
  } catch {
    return false
  }
}

function checkExpenseFields(f: ExpenseFields, partnership: Partnership): ExpenseFields {
  const out: ExpenseFields = {}
  if (f.name !== undefined) out.name = validateName("name", f.name)
  if (f.amount !== undefined) out.amount = validatePositiveAmount("amount", f.amount, partnership.currency)
  if (f.category !== undefined) out.category = validateEnum("category", f.category, CATEGORY_VALUES)
  if (f.frequency !== undefined) out.frequency = validateEnum("frequency", f.frequency, FREQUENCY_VALUES)
  return out
}

function checkGoalFields(f: GoalFields, partnership: Partnership): GoalFields {
  const out: GoalFields = {}
  if (f.name !== undefined) out.name = validateName("name", f.name)
  if (f.target_amount !== undefined) {
    out.target_amount = validatePositiveAmount("target_amount", f.target_amount, partnership.currency)
  }
  if (f.goal_type !== undefined) out.goal_type = validateEnum("goal_type", f.goal_type, GOAL_TYPE_VALUES)
  if (f.priority !== undefined) out.priority = validateEnum("priority", f.priority, PRIORITY_VALUES)
  return out
}

/** The proposed fields that differ from the current values (`ExpenseFields::changed`). */
function changedFields<T extends object>(current: T, proposed: Partial<T>): Partial<T> {
  const out: Partial<T> = {}
  for (const k of Object.keys(proposed) as (keyof T)[]) {
    const v = proposed[k]
    if (v !== undefined && v !== current[k]) out[k] = v
  }
  return out
}

/**
 * Proposes an edit of an expense: always an `expense_edit` request holding only the fields
 * that change (edits need the partner's approval); the expense itself is unchanged.
 */
export function editExpense(
  d: object,
  ctx: Ctx,
  id: string,
  fields: ExpenseFields,
  message?: string | null,
  requestId?: string,
): Outcome {
  const { partnership, user } = writable(d, ctx)
  const key = idArg("id", id)
  const current = read(d, "expenses", key)
  if (current === null) throw new OpError("not_found", "not found")
  if (current.status === "archived") throw new OpError("conflict", "expense is archived")
  const changed = changedFields(current, checkExpenseFields(fields, partnership))
  if (Object.keys(changed).length === 0) throw OpError.validation("fields", "nothing to change")
  const note = validateNote(message)
  const rid = requestId === undefined ? newId() : idArg("request_id", requestId)
  putEntity(d, "approvals", request(user, ctx.now, rid, "expense_edit", key, changed, note))
  return { kind: "approval_requested", requestId: rid, targetId: key }
}

/** Archiving an item still waiting for approval withdraws its pending add request. */
function withdrawAddRequest(d: object, item: string): void {
  const key = addRequestId(item)
  const req = read(d, "approvals", key)
  if (req !== null && req.status === "pending") deleteEntity(d, "approvals", key)
}

function archive(d: object, ctx: Ctx, coll: "expenses" | "goals", id: string): Outcome {
  writable(d, ctx)
  const key = idArg("id", id)
  const current = read(d, coll, key)
  if (current === null) throw new OpError("not_found", "not found")
  if (current.status !== "archived") {
    const obj = entityObj(d, coll, key)
    setField(obj, coll, "status", "archived")
    setField(obj, coll, "updated_at", ctx.now)
    if (current.status === "pending_approval") withdrawAddRequest(d, key)
  }
  return { kind: "applied", id: key }
}

/** Archives an expense (either partner; no approval). Archiving twice changes nothing. */
export function archiveExpense(d: object, ctx: Ctx, id: string): Outcome {
  return archive(d, ctx, "expenses", id)
}

/** Proposes a goal: always `pending_approval` with a `goal_add` request at `addRequestId(id)`. */
export function addGoal(d: object, ctx: Ctx, input: NewGoal, id?: string): Outcome {
  const { partnership, user } = writable(d, ctx)
  const name = validateName("name", input.name)
  const target = validatePositiveAmount("target_amount", input.target_amount, partnership.currency)
  const goalType = validateEnum("goal_type", input.goal_type, GOAL_TYPE_VALUES)
  const priority = validateEnum("priority", input.priority, PRIORITY_VALUES)
  const key = id === undefined ? newId() : idArg("id", id)
  if (existsReadable(d, "goals", key)) throw new OpError("conflict", "goal already exists")
  const goal: Goal = {
    id: key,
    name,
    target_amount: target,
    saved_amount: 0,
    goal_type: goalType,
    priority,
    added_by: user,
    status: "pending_approval",
    created_at: ctx.now,
    updated_at: ctx.now,
  }
  putEntity(d, "goals", goal)
  const requestId = addRequestId(key)
  putEntity(d, "approvals", request(user, ctx.now, requestId, "goal_add", key, goalAddData(goal), null))
  return { kind: "approval_requested", requestId, targetId: key }
}

/** Proposes an edit of a goal: always a `goal_edit` request with the fields that change. */
export function editGoal(
  d: object,
  ctx: Ctx,
  id: string,
  fields: GoalFields,
  message?: string | null,
  requestId?: string,
): Outcome {
  const { partnership, user } = writable(d, ctx)
  const key = idArg("id", id)
  const current = read(d, "goals", key)
  if (current === null) throw new OpError("not_found", "not found")
  if (current.status === "archived") throw new OpError("conflict", "goal is archived")
  const changed = changedFields(current, checkGoalFields(fields, partnership))
  if (Object.keys(changed).length === 0) throw OpError.validation("fields", "nothing to change")
  const note = validateNote(message)
  const rid = requestId === undefined ? newId() : idArg("request_id", requestId)
  putEntity(d, "approvals", request(user, ctx.now, rid, "goal_edit", key, changed, note))
  return { kind: "approval_requested", requestId: rid, targetId: key }
}

/** Archives a goal (either partner; no approval). */
export function archiveGoal(d: object, ctx: Ctx, id: string): Outcome {
  return archive(d, ctx, "goals", id)
}

/**
 * Logs a contribution to an active goal: increments the goal's Counter (so two partners adding
 * offline add up) and records who gave what. The outcome's id is the contribution's.
 */
export function contributeToGoal(d: object, ctx: Ctx, goalId: string, amount: number, id?: string): Outcome {
  const { partnership, user } = writable(d, ctx)
  const value = validatePositiveAmount("amount", amount, partnership.currency)
  const key = idArg("goal_id", goalId)
  const goal = read(d, "goals", key)
  if (goal === null) throw new OpError("not_found", "not found")
  if (goal.status !== "active") throw new OpError("conflict", "goal is not active")
  const obj = entityObj(d, "goals", key)
  const counter = obj.saved_amount
  if (!isCounter(counter)) throw new OpError("shape", `goals.${key}.saved_amount: expected a counter`)
  counter.increment(value)
  const cid = id === undefined ? newId() : idArg("id", id)
  putEntity(d, "goal_contributions", { id: cid, goal_id: key, user_id: user, amount: value, created_at: ctx.now })
  return { kind: "applied", id: cid }
}

/** Approves a pending request (only the partner who did not ask) and applies it. */
export function approve(d: object, ctx: Ctx, requestId: string): Outcome {
  return respond(d, ctx, requestId, "approved")
}

/** Declines a pending request: a declined addition is archived; a declined edit leaves the old values. */
export function decline(d: object, ctx: Ctx, requestId: string): Outcome {
  return respond(d, ctx, requestId, "declined")
}

function respond(d: object, ctx: Ctx, requestId: string, answer: "approved" | "declined"): Outcome {
  const { user } = writable(d, ctx)
  const key = idArg("request_id", requestId)
  const approval = read(d, "approvals", key)
  if (approval === null) throw new OpError("not_found", "not found")
  if (approval.requested_by === user) {
    throw new OpError("forbidden", "only the partner who did not ask may answer")
  }
  if (approval.status !== "pending") throw new OpError("conflict", "request already answered")
  const obj = entityObj(d, "approvals", key)
  setField(obj, "approvals", "status", answer)
  setField(obj, "approvals", "responded_by", user)
  setField(obj, "approvals", "responded_at", ctx.now)
  applyAnswer(d, { ...approval, status: answer, responded_by: user, responded_at: ctx.now }, ctx.now)
  return { kind: "applied", id: key }
}

/**
 * Applies the effect of an answered request to its target, idempotently (`ops::apply_answer`):
 * an answered addition activates or archives an item still waiting; an approved edit writes
 * the fields that differ, unless the item was archived meanwhile.
 */
export function applyAnswer(d: object, approval: Approval, now: number): void {
  if (approval.status === "pending") return
  const target = approval.target_id
  const t = approval.request_type
  if (t === "expense_add" || t === "goal_add") {
    const coll = t === "expense_add" ? "expenses" : "goals"
    const current = read(d, coll, target)
    if (current !== null && current.status === "pending_approval") {
      const obj = entityObj(d, coll, target)
      setField(obj, coll, "status", approval.status === "approved" ? "active" : "archived")
      setField(obj, coll, "updated_at", now)
    }
    return
  }
  if (approval.status === "declined") return
  const coll = t === "expense_edit" ? "expenses" : "goals"
  const editable: readonly string[] =
    coll === "expenses" ? ["name", "amount", "category", "frequency"] : ["name", "target_amount", "goal_type", "priority"]
  const current = read(d, coll, target)
  if (current === null || current.status === "archived") return
  const cur = current as unknown as Record<string, unknown>
  const data = approval.request_data as Record<string, unknown>
  const changes = editable.filter((f) => data[f] !== undefined && data[f] !== cur[f])
  if (changes.length === 0) return
  const obj = entityObj(d, coll, target)
  for (const f of changes) setField(obj, coll, f as "name", data[f])
  setField(obj, coll, "updated_at", now)
  if (current.status === "pending_approval") {
    const next = { ...cur }
    for (const f of changes) next[f] = data[f]
    describePendingAddition(
      d,
      target,
      coll === "expenses" ? expenseAddData(next as unknown as Expense) : goalAddData(next as unknown as Goal),
    )
  }
}

/**
 * After an approved edit of an item still waiting for its own approval, its add request is
 * rewritten to describe the item as it now stands, so the partner never approves an addition
 * whose request shows other values than approving makes active.
 */
function describePendingAddition(d: object, target: string, data: RequestData): void {
  const key = addRequestId(target)
  const req = read(d, "approvals", key)
  if (req === null || req.status !== "pending") return
  const cur = req.request_data as Record<string, unknown>
  const next = data as Record<string, unknown>
  const same = Object.keys(cur).length === Object.keys(next).length && Object.keys(next).every((k) => cur[k] === next[k])
  if (same) return
  setField(entityObj(d, "approvals", key), "approvals", "request_data", data)
}

/** Sends a message to the partner (trimmed, 1–4000 characters). */
export function sendMessage(d: object, ctx: Ctx, text: string, id?: string): Outcome {
  const { user } = writable(d, ctx)
  const body = validateMessageText(text)
  const key = id === undefined ? newId() : idArg("id", id)
  putEntity(d, "messages", {
    id: key,
    sender_id: user,
    text: body,
    message_type: "text",
    read_by_recipient: false,
    created_at: ctx.now,
  })
  return { kind: "applied", id: key }
}

/** Marks a message read (the recipient only; idempotent). */
export function markRead(d: object, ctx: Ctx, id: string): Outcome {
  const { user } = writable(d, ctx)
  const key = idArg("id", id)
  const m = read(d, "messages", key)
  if (m === null) throw new OpError("not_found", "not found")
  if (m.sender_id === user) throw new OpError("forbidden", "only the recipient marks a message read")
  if (!m.read_by_recipient) setField(entityObj(d, "messages", key), "messages", "read_by_recipient", true)
  return { kind: "applied", id: key }
}

/**
 * Marks the caller's own share of `month` ("YYYY-MM") paid. Idempotent: the first time is kept
 * and returned. The month must exist (the server writes it).
 */
export function markPaid(d: object, ctx: Ctx, month: string): number {
  const { user } = writable(d, ctx)
  if (typeof month !== "string" || !isMonthKey(month)) throw OpError.validation("month", "must be YYYY-MM")
  const m = read(d, "contributions", month)
  if (m === null) throw new OpError("not_found", "not found")
  const at = m.paid[user]
  if (typeof at === "number") return at
  const paid = entityObj(d, "contributions", month).paid
  if (!isMap(paid)) throw new OpError("not_found", "not found")
  paid[user] = ctx.now
  return ctx.now
}
