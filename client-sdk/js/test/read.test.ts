// Readers on documents holding both string shapes: Text (what JS 3.x writes for a plain
// string) and scalar strings (ImmutableString: what sync-core wrote before free text became
// Text, and still writes for ids and enums), times as integers and as Timestamps.
import { test } from "node:test"
import assert from "node:assert/strict"
import * as A from "@automerge/automerge"

import {
  DocumentError,
  currentMonth,
  listExpenses,
  listMessages,
  pendingApprovalsFor,
  pendingRequestsBy,
  readDocument,
  readEntity,
  unreadMessagesFor,
} from "../src/index.js"

const ALEX = "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa"
const SAM = "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb"
const T0 = 1764000000000
const S = (v: string) => new A.ImmutableString(v)
const E1 = "e0000000-0000-7000-8000-000000000001"
const E2 = "e0000000-0000-7000-8000-000000000002"
const G1 = "90000000-0000-7000-8000-000000000001"
const G2 = "90000000-0000-7000-8000-000000000002"
const R1 = "a0000000-0000-7000-8000-000000000001"
const R2 = "a0000000-0000-7000-8000-000000000002"
const M1 = "30000000-0000-7000-8000-000000000001"
const M2 = "30000000-0000-7000-8000-000000000002"

/** A couple's document written partly by an old server (scalars everywhere) and partly by careless JS clients (Text everywhere). */
function mixedDocument(): A.Doc<unknown> {
  return A.change(A.init<Record<string, unknown>>(), (d) => {
    d.schema = 1
    // Server-owned, scalars, except the status a careless client rewrote as Text.
    d.partnership = { id: S("dddddddd-dddd-4ddd-8ddd-dddddddddddd"), currency: S("USD"), approval_threshold: 10000, status: "active" }
    d.members = {
      [ALEX]: { name: S("Alex"), income: 100000, slot: 1 },
      [SAM]: { name: "Sam", income: 200000, slot: 2 },
    }
    d.expenses = {
      // Written by the old server: every string a scalar, times integers.
      [E1]: { name: S("Rent"), amount: 10000, category: S("housing"), frequency: S("monthly"), added_by: S(ALEX), status: S("active"), created_at: T0, updated_at: T0 },
      // Written by a careless JS client: every string Text, times as Timestamps, an upper-case id.
      [E2]: { name: "Groceries", amount: 1200, category: "groceries", frequency: "yearly", added_by: SAM.toUpperCase(), status: "active", created_at: new Date(T0 + 1), updated_at: new Date(T0 + 2), unknown_extra: "ignored" },
      // Wrong shapes: listed in malformed, never thrown.
      "e0000000-0000-7000-8000-000000000003": { name: "Bad amount", amount: "12.50", category: S("housing"), frequency: S("monthly"), added_by: S(ALEX), status: S("active"), created_at: T0, updated_at: T0 },
      "not-a-uuid": { name: "Bad key", amount: 1, category: S("housing"), frequency: S("monthly"), added_by: S(ALEX), status: S("active"), created_at: T0, updated_at: T0 },
      "e0000000-0000-7000-8000-000000000004": { name: "Bad status", amount: 1, category: S("housing"), frequency: S("monthly"), added_by: S(ALEX), status: S("deleted"), created_at: T0, updated_at: T0 },
    }
    d.goals = {
      [G1]: { name: "Holiday", target_amount: 200000, saved_amount: new A.Counter(1500), goal_type: S("vacation"), priority: S("high"), added_by: S(ALEX), status: S("active"), created_at: T0, updated_at: T0 },
      // A saved amount written as a plain integer still reads (as in sync-core).
      [G2]: { name: S("Car"), target_amount: 900000, saved_amount: 300, goal_type: "car", priority: "low", added_by: SAM, status: "pending_approval", created_at: T0, updated_at: T0 },
    }
    d.goal_contributions = {}
    d.approvals = {
      [R1]: {
        requested_by: S(SAM), request_type: S("goal_add"), target_id: S(G2),
        // A field of the other kind of request is ignored, as sync-core ignores it.
        request_data: { name: S("Car"), target_amount: 900000, goal_type: "car", priority: S("low"), amount: 5 },
        message: null, status: S("pending"), responded_by: null, responded_at: null, created_at: T0 + 5,
      },
      [R2]: {
        requested_by: ALEX, request_type: "expense_edit", target_id: E1, request_data: { amount: 11000 },
        message: "Rent went up", status: "approved", responded_by: S(SAM), responded_at: new Date(T0 + 9), created_at: T0 + 3,
      },
    }
    d.messages = {
      [M2]: { sender_id: S(SAM), text: S("Later"), message_type: S("text"), read_by_recipient: false, created_at: T0 + 20 },
      [M1]: { sender_id: ALEX, text: "First", message_type: "text", read_by_recipient: true, created_at: new Date(T0 + 10) },
    }
    d.contributions = {
      "2026-11": { total_required: 10100, amounts: { [ALEX]: 3367, [SAM]: 6733 }, paid: { [ALEX]: new Date(T0 + 30), [SAM]: null } },
    }
  })
}

for (const [label, make] of [
  ["as written", mixedDocument],
  ["after save and load", () => A.load<unknown>(A.save(mixedDocument()))],
] as const) {
  test(`readDocument returns plain values whatever the stored shape (${label})`, () => {
    const state = readDocument(make())
    assert.deepEqual(state.partnership, { id: "dddddddd-dddd-4ddd-8ddd-dddddddddddd", currency: "USD", approval_threshold: 10000, status: "active" })
    assert.deepEqual(state.members, [
      { user_id: ALEX, name: "Alex", income: 100000, slot: 1 },
      { user_id: SAM, name: "Sam", income: 200000, slot: 2 },
    ])
    assert.deepEqual(state.expenses, [
      { id: E1, name: "Rent", amount: 10000, category: "housing", frequency: "monthly", added_by: ALEX, status: "active", created_at: T0, updated_at: T0 },
      { id: E2, name: "Groceries", amount: 1200, category: "groceries", frequency: "yearly", added_by: SAM, status: "active", created_at: T0 + 1, updated_at: T0 + 2 },
    ])
    for (const e of state.expenses) {
      assert.equal(typeof e.name, "string")
      assert.equal(typeof e.category, "string")
      assert.equal(e.status === "active", true, "=== works on what the readers return")
    }
    assert.deepEqual(
      state.goals.map((g) => [g.name, g.saved_amount, g.status]),
      [["Holiday", 1500, "active"], ["Car", 300, "pending_approval"]],
    )
    assert.deepEqual(state.approvals.find((a) => a.id === R1)?.request_data, { name: "Car", target_amount: 900000, goal_type: "car", priority: "low" })
    assert.deepEqual(state.approvals.find((a) => a.id === R2), {
      id: R2, requested_by: ALEX, request_type: "expense_edit", target_id: E1, request_data: { amount: 11000 },
      message: "Rent went up", status: "approved", responded_by: SAM, responded_at: T0 + 9, created_at: T0 + 3,
    })
    assert.deepEqual(state.contributions, [
      { month: "2026-11", total_required: 10100, amounts: { [ALEX]: 3367, [SAM]: 6733 }, paid: { [ALEX]: T0 + 30, [SAM]: null } },
    ])
    assert.deepEqual(
      state.malformed.map((m) => m.path).sort(),
      [
        "expenses.e0000000-0000-7000-8000-000000000003.amount",
        "expenses.e0000000-0000-7000-8000-000000000004.status",
        "expenses.not-a-uuid",
      ],
    )
    assert.ok(JSON.stringify(state).indexOf("ImmutableString") === -1)
  })
}

test("convenient readers: expenses by status, requests awaiting an answer, messages in order, unread", () => {
  const doc = mixedDocument()
  assert.deepEqual(listExpenses(doc, "active").map((e) => e.name), ["Rent", "Groceries"])
  assert.deepEqual(pendingApprovalsFor(doc, ALEX).map((a) => a.id), [R1], "Sam's goal waits for Alex")
  assert.deepEqual(pendingApprovalsFor(doc, SAM), [], "nothing waits for Sam")
  assert.deepEqual(pendingRequestsBy(doc, SAM.toUpperCase()).map((a) => a.id), [R1])
  assert.deepEqual(listMessages(doc).map((m) => m.text), ["First", "Later"])
  assert.deepEqual(unreadMessagesFor(doc, ALEX).map((m) => m.text), ["Later"])
  assert.deepEqual(unreadMessagesFor(doc, SAM), [])
  assert.equal(readEntity(doc, "expenses", E1.toUpperCase())?.name, "Rent", "any UUID spelling finds the entity")
  assert.equal(readEntity(doc, "expenses", "e0000000-0000-7000-8000-00000000000f"), null)
  assert.throws(() => readEntity(doc, "expenses", "e0000000-0000-7000-8000-000000000003"), { name: "ShapeError" })
})

test("the current month is the document's when written, else the split the server will write", () => {
  const doc = mixedDocument()
  assert.deepEqual(currentMonth(doc, "2026-11").amounts, { [ALEX]: 3367, [SAM]: 6733 })
  // December is not written yet: active expenses 100.00 monthly + 12.00 yearly = 101.00, incomes 1:2.
  const december = currentMonth(doc, Date.UTC(2026, 11, 15))
  assert.deepEqual(december, { month: "2026-12", total_required: 10100, amounts: { [ALEX]: 3367, [SAM]: 6733 }, paid: { [ALEX]: null, [SAM]: null } })
})

test("a document of a newer schema is refused, not misread", () => {
  const doc = A.change(mixedDocument() as A.Doc<Record<string, unknown>>, (d) => {
    d.schema = 2
  })
  assert.throws(() => readDocument(doc), (e: unknown) => e instanceof DocumentError && e.kind === "unsupported_schema" && e.found === 2)
})

test("a document without a readable partnership cannot be read", () => {
  const doc = A.change(mixedDocument() as A.Doc<Record<string, unknown>>, (d) => {
    delete d.partnership
  })
  assert.throws(() => readDocument(doc), (e: unknown) => e instanceof DocumentError && e.kind === "shape")
})
