// Operations write the declared types, refuse what sync-core refuses (including what only a JS
// caller can pass), and work inside automerge-repo's DocHandle.change.
import { test } from "node:test"
import assert from "node:assert/strict"
import * as A from "@automerge/automerge"
import { Repo } from "@automerge/automerge-repo"

import {
  OpError,
  addExpense,
  addGoal,
  addRequestId,
  approve,
  calculate,
  contributeToGoal,
  editExpense,
  formatMinor,
  initPartnershipDocument,
  markPaid,
  MoneyError,
  putEntity,
  readDocument,
  sendMessage,
  SplitError,
  toMinor,
  toMinorNonNegative,
  type NewExpense,
} from "../src/index.js"

const ALEX = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
const SAM = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
const T0 = 1764000000000
const alex = { user: ALEX, now: T0 }
const sam = { user: SAM, now: T0 + 1000 }

function couple(): A.Doc<Record<string, unknown>> {
  return A.change(A.init<Record<string, unknown>>(), (d) =>
    initPartnershipDocument(d, {
      partnership: { id: "dddddddd-dddd-4ddd-8ddd-dddddddddddd", currency: "USD", approval_threshold: 10000, status: "active" },
      members: [
        { user_id: ALEX, name: "Alex", income: null, slot: 1 },
        { user_id: SAM, name: "Sam", income: null, slot: 2 },
      ],
    }),
  )
}

const rent: NewExpense = { name: "Rent", amount: 150000, category: "housing", frequency: "monthly" }

type Raw = Record<string, Record<string, Record<string, unknown>>>

test("free text is written as Text, ids and enums as scalar strings, amounts as integers", () => {
  let id = ""
  const doc = A.change(couple(), (d) => {
    const out = addExpense(d, alex, rent)
    assert.equal(out.kind, "approval_requested")
    if (out.kind === "approval_requested") id = out.targetId
  })
  const e = (doc as unknown as Raw).expenses![id]!
  assert.equal(typeof e.name, "string", "a Text reads as a JS string")
  assert.notEqual(A.getObjectId(e, "name"), null, "and is an object (Text) in the document")
  for (const f of ["category", "frequency", "status", "added_by"]) {
    assert.ok(e[f] instanceof A.ImmutableString, `${f} is a scalar string`)
  }
  assert.equal(e.amount, 150000)
  const request = (doc as unknown as Raw).approvals![addRequestId(id)]!
  assert.ok(request.request_type instanceof A.ImmutableString)
  assert.ok(request.target_id instanceof A.ImmutableString)
  const data = request.request_data as Record<string, unknown>
  assert.equal(typeof data.name, "string", "the proposed name is Text")
  assert.ok(data.category instanceof A.ImmutableString)
})

test("an approved rename writes the new name as Text", () => {
  let doc = couple()
  let expenseId = ""
  doc = A.change(doc, (d) => {
    const out = addExpense(d, alex, { ...rent, amount: 5000 })
    expenseId = out.kind === "applied" ? out.id : ""
  })
  let requestId = ""
  doc = A.change(doc, (d) => {
    const out = editExpense(d, sam, expenseId, { name: "Rent + parking" }, "Parking too")
    requestId = out.kind === "approval_requested" ? out.requestId : ""
  })
  doc = A.change(doc, (d) => {
    approve(d, alex, requestId)
  })
  const e = (doc as unknown as Raw).expenses![expenseId]!
  assert.equal(e.name, "Rent + parking")
  assert.notEqual(A.getObjectId(e, "name"), null)
  assert.equal(readDocument(doc).expenses[0]!.updated_at, T0)
})

test("inputs only a JS caller can pass are refused with the field named", () => {
  const doc = couple()
  const refusal = (f: (d: object) => unknown) => {
    try {
      A.change(A.clone(doc), (d) => {
        f(d)
      })
    } catch (e) {
      if (e instanceof OpError) return { kind: e.kind, field: e.field }
      throw e
    }
    return "applied"
  }
  assert.deepEqual(refusal((d) => addExpense(d, alex, { ...rent, name: "Rent \ud800" })), { kind: "validation", field: "name" })
  assert.deepEqual(refusal((d) => addExpense(d, alex, { ...rent, category: "rent" as "housing" })), { kind: "validation", field: "category" })
  assert.deepEqual(refusal((d) => addExpense(d, alex, { ...rent, amount: 12.5 })), { kind: "validation", field: "amount" })
  assert.deepEqual(refusal((d) => addExpense(d, alex, rent, "not-an-id")), { kind: "validation", field: "id" })
  assert.deepEqual(refusal((d) => addGoal(d, alex, { name: "Car", target_amount: 100, goal_type: "boat" as "car", priority: "low" })), { kind: "validation", field: "goal_type" })
  assert.deepEqual(refusal((d) => sendMessage(d, { user: "someone", now: T0 }, "Hi")), { kind: "not_member", field: undefined })
})

test("two partners contributing offline both count: the saved amount is a Counter", () => {
  const goalId = "90000000-0000-7000-8000-000000000001"
  const base = A.change(couple(), (d) => {
    putEntity(d, "goals", {
      id: goalId, name: "Holiday", target_amount: 200000, saved_amount: 0, goal_type: "vacation",
      priority: "high", added_by: ALEX, status: "active", created_at: T0, updated_at: T0,
    })
  })
  const a = A.change(A.clone(base), (d) => {
    contributeToGoal(d, alex, goalId, 5000)
  })
  const b = A.change(A.clone(base), (d) => {
    contributeToGoal(d, sam, goalId, 5000)
  })
  const merged = A.merge(A.clone(a), b)
  const state = readDocument(merged)
  assert.equal(state.goals[0]!.saved_amount, 10000)
  assert.equal(state.goal_contributions.length, 2)
})

test("a partner marks only their own month paid, once", () => {
  const doc = A.change(couple(), (d) => {
    putEntity(d, "contributions", { month: "2026-11", total_required: 100, amounts: { [ALEX]: 50, [SAM]: 50 }, paid: { [ALEX]: null, [SAM]: null } })
  })
  let first = 0
  const paid = A.change(doc, (d) => {
    first = markPaid(d, alex, "2026-11")
  })
  assert.equal(first, T0)
  let again = 0
  const twice = A.change(paid, (d) => {
    again = markPaid(d, { user: ALEX, now: T0 + 99 }, "2026-11")
  })
  assert.equal(again, T0, "the first time is kept")
  assert.deepEqual(readDocument(twice).contributions[0]!.paid, { [ALEX]: T0, [SAM]: null })
  assert.throws(
    () => A.change(A.clone(doc), (d) => void markPaid(d, alex, "2026-12")),
    (e: unknown) => e instanceof OpError && e.kind === "not_found",
  )
})

test("operations work inside automerge-repo's DocHandle.change", async () => {
  const repo = new Repo()
  const handle = repo.create<Record<string, unknown>>()
  handle.change((d) =>
    initPartnershipDocument(d, {
      partnership: { id: "dddddddd-dddd-4ddd-8ddd-dddddddddddd", currency: "JPY", approval_threshold: 10000, status: "active" },
      members: [
        { user_id: ALEX, name: "Alex", income: null, slot: 1 },
        { user_id: SAM, name: "Sam", income: null, slot: 2 },
      ],
    }),
  )
  handle.change((d) => {
    addExpense(d, alex, { name: "Internet", amount: 5000, category: "utilities", frequency: "monthly" })
  })
  const state = readDocument(handle.doc())
  assert.deepEqual(state.expenses.map((e) => [e.name, e.amount, e.status]), [["Internet", 5000, "active"]])
  await repo.shutdown()
})

test("money helpers are exact and refuse what sync-core refuses", () => {
  assert.equal(toMinor("0.1", "USD") + toMinor("0.2", "USD"), toMinor("0.3", "USD"))
  assert.equal(formatMinor(123456789012345678n, 2), "1234567890123456.78")
  assert.equal(toMinorNonNegative("0.00", "USD"), 0)
  for (const bad of ["1e5", "12,50", "", " 1", ".5", "1."]) {
    assert.throws(() => toMinor(bad, "USD"), (e: unknown) => e instanceof MoneyError && e.kind === "invalid", bad)
  }
  assert.throws(() => toMinor("1", "usd"), (e: unknown) => e instanceof MoneyError && e.kind === "unknown_currency")
  assert.throws(() => toMinorNonNegative("-0.01", "USD"), (e: unknown) => e instanceof MoneyError && e.kind === "negative")
})

test("a split beyond 64 bits is an overflow, not a wrapped or rounded number", () => {
  const max = (1n << 63n) - 1n
  assert.throws(
    () => calculate({ expenses: [{ amount: max, frequency: "monthly" }, { amount: 1, frequency: "monthly" }], income_1: null, income_2: null }),
    (e: unknown) => e instanceof SplitError && e.kind === "overflow",
  )
  assert.throws(
    () => calculate({ expenses: [{ amount: max, frequency: "weekly" }], income_1: null, income_2: null }),
    (e: unknown) => e instanceof SplitError && e.kind === "overflow",
  )
})
