/**
 * Two partners, each with their own SplitSaveClient and storage, work offline at the same time
 * and converge once both are back online: the same expenses on both phones and on the server
 * (the one over the threshold waiting for approval with its derived request), the goal's saved
 * amount the sum of both contributions (a Counter), and the REST API's materialized views equal
 * to the document. Then the partner approves and the expense is active everywhere.
 */

import assert from "node:assert/strict"
import { after, before, test } from "node:test"

import type { DocHandle } from "@automerge/automerge-repo"

import {
  type DocumentState,
  KeyValueStorageAdapter,
  SplitSaveClient,
  addExpense,
  addGoal,
  addRequestId,
  approve,
  contributeToGoal,
  formatMinor,
  readDocument,
  readSchemaVersion,
  type Outcome,
} from "../src/index.js"
import { memoryKeyValueStore, type RawDoc, sortedHeads } from "./support/doc.js"
import { type Couple, TestServer, type TestUser, eventually, makeCouple } from "./support/server.js"

let server: TestServer
const clients: SplitSaveClient[] = []
before(async () => {
  server = await TestServer.start()
})
after(async () => {
  await Promise.all(clients.map(c => c.close()))
  await server?.stop()
})

async function phone(user: TestUser): Promise<{ client: SplitSaveClient; doc: DocHandle<RawDoc> }> {
  const client = new SplitSaveClient({
    baseUrl: server.baseUrl,
    storage: new KeyValueStorageAdapter(memoryKeyValueStore()),
    retryIntervalMs: 100,
  })
  clients.push(client)
  await client.login(user.email, user.password)
  return { client, doc: await client.open<RawDoc>() }
}

const ctx = (user: TestUser) => ({ user: user.id, now: Date.now() })

function run(handle: DocHandle<RawDoc>, op: (d: RawDoc) => Outcome): Outcome {
  let outcome: Outcome | undefined
  handle.change(d => {
    outcome = op(d)
  })
  return outcome!
}

/** Both phones hold the same heads and the server acknowledged them. */
async function converged(a: { client: SplitSaveClient; doc: DocHandle<RawDoc> }, b: typeof a, what: string): Promise<void> {
  await eventually(
    what,
    () => a.client.connection!.isSynced(a.doc) && b.client.connection!.isSynced(b.doc) && sortedHeads(a.doc.heads()) === sortedHeads(b.doc.heads()),
    30_000
  )
}

/** What a user compares between the app and the REST API: the fields as the API spells them. */
function expenseView(state: DocumentState): unknown[] {
  return state.expenses
    .map(e => ({
      id: e.id,
      name: e.name,
      amount: formatMinor(e.amount, state.partnership.currency),
      category: e.category,
      frequency: e.frequency,
      added_by: e.added_by,
      status: e.status,
    }))
    .sort((x, y) => x.id.localeCompare(y.id))
}

function goalView(state: DocumentState): unknown[] {
  return state.goals
    .map(g => ({
      id: g.id,
      name: g.name,
      target_amount: formatMinor(g.target_amount, state.partnership.currency),
      saved_amount: formatMinor(g.saved_amount, state.partnership.currency),
      goal_type: g.goal_type,
      priority: g.priority,
      added_by: g.added_by,
      status: g.status,
    }))
    .sort((x, y) => x.id.localeCompare(y.id))
}

function approvalView(state: DocumentState, status: string): unknown[] {
  const currency = state.partnership.currency
  return state.approvals
    .filter(a => a.status === status)
    .map(a => ({
      id: a.id,
      requested_by: a.requested_by,
      request_type: a.request_type,
      target_id: a.target_id,
      status: a.status,
      message: a.message,
      request_data: Object.fromEntries(
        Object.entries(a.request_data).map(([k, v]) => [k, typeof v === "number" ? formatMinor(v, currency) : v])
      ),
    }))
    .sort((x, y) => x.id.localeCompare(y.id))
}

/** The REST API's view in the same shape (amounts compared as the decimal strings it answers). */
async function restViews(client: SplitSaveClient, approvalStatus: "pending" | "approved" | "declined") {
  const expenses = (await client.rest.get("/api/expenses", { query: { limit: 100 } })).items
    .map(e => ({ id: e.id, name: e.name, amount: e.amount, category: e.category, frequency: e.frequency, added_by: e.added_by, status: e.status }))
    .sort((x, y) => x.id.localeCompare(y.id))
  const goals = (await client.rest.get("/api/goals", { query: { limit: 100 } })).items
    .map(g => ({
      id: g.id,
      name: g.name,
      target_amount: g.target_amount,
      saved_amount: g.saved_amount,
      goal_type: g.goal_type,
      priority: g.priority,
      added_by: g.added_by,
      status: g.status,
    }))
    .sort((x, y) => x.id.localeCompare(y.id))
  const approvals = (await client.rest.get("/api/approvals", { query: { status: approvalStatus, limit: 100 } })).items
    .map(a => ({
      id: a.id,
      requested_by: a.requested_by,
      request_type: a.request_type,
      target_id: a.target_id,
      status: a.status,
      message: a.message ?? null,
      request_data: a.request_data as Record<string, unknown>,
    }))
    .sort((x, y) => x.id.localeCompare(y.id))
  return { expenses, goals, approvals }
}

/** Polls until the REST views equal the document's (materialization runs after the merge); returns the last difference otherwise. */
async function restAgrees(client: SplitSaveClient, state: DocumentState, approvalStatus: "pending" | "approved"): Promise<void> {
  const want = { expenses: expenseView(state), goals: goalView(state), approvals: approvalView(state, approvalStatus) }
  let last: unknown
  try {
    await eventually("the REST API to show what the document says", async () => {
      last = await restViews(client, approvalStatus)
      try {
        assert.deepEqual(last, want)
        return true
      } catch {
        return false
      }
    }, 20_000)
  } catch (e) {
    assert.deepEqual(last, want, String(e))
  }
}

test("two partners offline, then online: both phones and the server converge, and the approval goes through", async () => {
  const couple: Couple = await makeCouple(server) // threshold 100.00 EUR
  const ann = await phone(couple.inviter)
  const ben = await phone(couple.invitee)

  // A goal both will save for, approved while online.
  const proposed = run(ann.doc, d => addGoal(d, ctx(couple.inviter), { name: "Holiday", target_amount: 300_000, goal_type: "vacation", priority: "high" }))
  assert.equal(proposed.kind, "approval_requested")
  const goalId = proposed.kind === "approval_requested" ? proposed.targetId : ""
  await eventually("Ben to see the goal request", () => readDocument(ben.doc.doc()).approvals.some(a => a.target_id === goalId))
  run(ben.doc, d => approve(d, ctx(couple.invitee), addRequestId(goalId)))
  await eventually("Ann to see the goal active", () => readDocument(ann.doc.doc()).goals.find(g => g.id === goalId)?.status === "active")
  await converged(ann, ben, "both phones to agree before going offline")

  ann.client.goOffline()
  ben.client.goOffline()
  await eventually("both sockets closed", () => ann.client.connection!.repo.peers.length === 0 && ben.client.connection!.repo.peers.length === 0)

  const sofa = run(ann.doc, d => addExpense(d, ctx(couple.inviter), { name: "New sofa", amount: 25_000, category: "housing", frequency: "yearly" }))
  const groceries = run(ann.doc, d => addExpense(d, ctx(couple.inviter), { name: "Groceries", amount: 4_500, category: "groceries", frequency: "weekly" }))
  run(ann.doc, d => contributeToGoal(d, ctx(couple.inviter), goalId, 5_000))
  run(ben.doc, d => contributeToGoal(d, ctx(couple.invitee), goalId, 7_550))
  const internet = run(ben.doc, d => addExpense(d, ctx(couple.invitee), { name: "Internet", amount: 3_999, category: "utilities", frequency: "monthly" }))
  const bus = run(ben.doc, d => addExpense(d, ctx(couple.invitee), { name: "Bus pass", amount: 6_000, category: "transport", frequency: "monthly" }))
  assert.equal(sofa.kind, "approval_requested", "over the threshold: waits for Ben")
  for (const o of [groceries, internet, bus]) assert.equal(o.kind, "applied")
  const sofaId = sofa.kind === "approval_requested" ? sofa.targetId : ""
  // Offline, each phone sees only its own work.
  assert.equal(readDocument(ann.doc.doc()).goals[0]!.saved_amount, 5_000)
  assert.equal(readDocument(ben.doc.doc()).goals[0]!.saved_amount, 7_550)
  const serverBefore = await ann.client.rest.get("/api/expenses")
  assert.equal(serverBefore.items.length, 0, "the server has none of the offline work")

  ann.client.goOnline()
  ben.client.goOnline()
  await converged(ann, ben, "both phones and the server to converge")

  const a = readDocument(ann.doc.doc())
  const b = readDocument(ben.doc.doc())
  assert.deepEqual(a, b, "both phones read the same document")
  assert.deepEqual(a.malformed, [])
  assert.equal(readSchemaVersion(ann.doc.doc()), 1, "the server's schema version (a uint, read by JS as a bigint) reads")
  assert.deepEqual(
    a.expenses.map(e => [e.name, e.amount, e.status]).sort(),
    [
      ["Bus pass", 6_000, "active"],
      ["Groceries", 4_500, "active"],
      ["Internet", 3_999, "active"],
      ["New sofa", 25_000, "pending_approval"],
    ]
  )
  const request = a.approvals.find(r => r.id === addRequestId(sofaId))
  assert.ok(request, "the sofa's add request, at its derived id")
  assert.equal(request.request_type, "expense_add")
  assert.equal(request.target_id, sofaId)
  assert.equal(request.requested_by, couple.inviter.id)
  assert.equal(request.status, "pending")
  assert.deepEqual(request.request_data, { name: "New sofa", amount: 25_000, category: "housing", frequency: "yearly" })
  assert.equal(a.goals.find(g => g.id === goalId)!.saved_amount, 12_550, "both offline contributions add up")
  assert.deepEqual(
    a.goal_contributions.map(c => [c.user_id, c.amount]).sort(),
    [[couple.inviter.id, 5_000], [couple.invitee.id, 7_550]].sort()
  )
  await restAgrees(ann.client, a, "pending")
  await restAgrees(ben.client, a, "pending")

  // Ben approves the sofa; it is active on both phones and on the server.
  run(ben.doc, d => approve(d, ctx(couple.invitee), addRequestId(sofaId)))
  await converged(ann, ben, "the approval to reach Ann")
  const after = readDocument(ann.doc.doc())
  assert.deepEqual(after, readDocument(ben.doc.doc()))
  assert.equal(after.expenses.find(e => e.id === sofaId)!.status, "active")
  const answered = after.approvals.find(r => r.id === addRequestId(sofaId))!
  assert.equal(answered.status, "approved")
  assert.equal(answered.responded_by, couple.invitee.id)
  await restAgrees(ann.client, after, "approved")
  const pending = await ann.client.rest.get("/api/approvals")
  assert.deepEqual(pending.items, [], "nothing is waiting any more")
})
