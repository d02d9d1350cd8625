/**
 * After every kind of compensation the server writes (docs/schema-and-rules.md's table), and
 * after REST writes, each string field of the document is stored with its declared type: free
 * text as Text (a JS `string`), ids and enums as scalar strings (`ImmutableString`), decided by
 * the generated `FIELDS` table; and the package's readers return plain strings for all of them.
 *
 * The misbehaving app is a stock automerge-repo client writing plain JS values (so every string
 * it writes is Text, enums included). Each case gets its own couple.
 */

import assert from "node:assert/strict"
import { randomUUID } from "node:crypto"
import { after, before, test } from "node:test"

import * as A from "@automerge/automerge"
import type { DocHandle, Repo } from "@automerge/automerge-repo"

import {
  type CollectionName,
  addExpense,
  addGoal,
  addRequestId,
  approve,
  readDocument,
  sendMessage,
} from "../src/index.js"
import { misstoredStrings, nonStringReads, type RawDoc, rawHandle } from "./support/doc.js"
import { type Couple, TestServer, call, eventually, makeCouple } from "./support/server.js"

let server: TestServer
const repos: Repo[] = []
before(async () => {
  server = await TestServer.start()
})
after(async () => {
  await Promise.all(repos.map(r => r.shutdown()))
  await server?.stop()
})

interface Case {
  couple: Couple
  /** Ann's stock client. */
  ann: DocHandle<RawDoc>
  /** Ben's stock client. */
  ben: DocHandle<RawDoc>
  annCtx: () => { user: string; now: number }
  benCtx: () => { user: string; now: number }
}

async function setup(): Promise<Case> {
  const couple = await makeCouple(server)
  const a = await rawHandle(server, couple.inviter, couple.documentUrl)
  const b = await rawHandle(server, couple.invitee, couple.documentUrl)
  repos.push(a.repo, b.repo)
  return {
    couple,
    ann: a.handle,
    ben: b.handle,
    annCtx: () => ({ user: couple.inviter.id, now: Date.now() }),
    benCtx: () => ({ user: couple.invitee.id, now: Date.now() }),
  }
}

/** A plain JS expense as a stock app writes it: every string a Text. */
function plainExpense(c: Case, fields: Record<string, unknown> = {}): Record<string, unknown> {
  const now = Date.now()
  return { name: "Rent", amount: 4_000, category: "housing", frequency: "monthly", added_by: c.couple.inviter.id, status: "active", created_at: now, updated_at: now, ...fields }
}

/**
 * The document as Ann's replica holds it: every string field in its declared type, and the
 * package's reader gives plain strings for every one of them.
 */
function assertTypes(c: Case, what: string, touched: [CollectionName, string][]): void {
  const doc = c.ann.doc()
  const { wrong, checked } = misstoredStrings(doc)
  assert.deepEqual(wrong, [], `${what}: fields stored in another type than declared`)
  assert.ok(checked > 0)
  const state = readDocument(doc)
  assert.deepEqual(state.malformed, [], `${what}: everything reads`)
  const reads: string[] = []
  for (const coll of ["members", "expenses", "goals", "goal_contributions", "approvals", "messages"] as const) {
    for (const entity of state[coll]) reads.push(...nonStringReads(coll, entity as unknown as Record<string, unknown>, coll))
  }
  reads.push(...nonStringReads("partnership", state.partnership as unknown as Record<string, unknown>, "partnership"))
  assert.deepEqual(reads, [], `${what}: the readers return plain strings`)
  // Each touched entity is there and was checked field by field above.
  for (const [coll, key] of touched) assert.ok(doc[coll]?.[key] !== undefined, `${what}: ${coll}.${key} is in the document`)
}

const str = (v: unknown): string | undefined => (typeof v === "string" ? v : A.isImmutableString(v) ? v.val : undefined)

/** Ann's replica holds the server's compensation. */
async function settled(c: Case, what: string, check: (d: RawDoc) => boolean): Promise<RawDoc> {
  await eventually(what, () => check(c.ann.doc()), 20_000)
  return c.ann.doc()
}

function approvalsOf(d: RawDoc, target: string, type: string): [string, RawDoc][] {
  return Object.entries((d.approvals ?? {}) as Record<string, RawDoc>).filter(([, a]) => str(a.target_id) === target && str(a.request_type) === type)
}

test("over-threshold expense written active: made pending, its add request filed", async () => {
  const c = await setup()
  const id = randomUUID()
  c.ann.change(d => void (d.expenses[id] = plainExpense(c, { name: "New car", amount: 900_000 })))
  await settled(c, "the expense pending with a request", d => str(d.expenses[id]?.status) === "pending_approval" && d.approvals[addRequestId(id)] !== undefined)
  assertTypes(c, "over threshold", [["expenses", id], ["approvals", addRequestId(id)]])
  assert.equal(c.ann.doc().approvals[addRequestId(id)].request_data.name, "New car", "the request's name is Text")
})

test("pending expense written without a request: the request is filed", async () => {
  const c = await setup()
  const id = randomUUID()
  c.ann.change(d => void (d.expenses[id] = plainExpense(c, { amount: 500_000, status: "pending_approval" })))
  await settled(c, "the add request", d => d.approvals[addRequestId(id)] !== undefined)
  assertTypes(c, "pending without request", [["expenses", id], ["approvals", addRequestId(id)]])
})

test("goal written active: made pending, its add request filed", async () => {
  const c = await setup()
  const id = randomUUID()
  const now = Date.now()
  c.ann.change(d => {
    d.goals[id] = { name: "Boat", target_amount: 100_000, saved_amount: new A.Counter(0), goal_type: "other", priority: "low", added_by: c.couple.inviter.id, status: "active", created_at: now, updated_at: now }
  })
  await settled(c, "the goal pending with a request", d => str(d.goals[id]?.status) === "pending_approval" && d.approvals[addRequestId(id)] !== undefined)
  assertTypes(c, "goal active", [["goals", id], ["approvals", addRequestId(id)]])
})

test("edit of an expense's name and amount: old values restored, an edit request filed", async () => {
  const c = await setup()
  const id = randomUUID()
  c.ann.change(d => void (d.expenses[id] = plainExpense(c)))
  await settled(c, "the expense normalized", d => A.isImmutableString(d.expenses[id]?.status))
  c.ann.change(d => {
    d.expenses[id].name = "Rent and parking"
    d.expenses[id].amount = 4_500
  })
  const d = await settled(c, "the edit request", d => approvalsOf(d, id, "expense_edit").length === 1 && d.expenses[id].name === "Rent")
  assert.equal(d.expenses[id].amount, 4_000)
  const [[rid, request]] = approvalsOf(d, id, "expense_edit") as [[string, RawDoc]]
  assert.equal(request.request_data.name, "Rent and parking")
  assertTypes(c, "edit", [["expenses", id], ["approvals", rid]])
})

test("deleted expense: restored", async () => {
  const c = await setup()
  let id = ""
  c.ann.change(d => {
    const o = addExpense(d, c.annCtx(), { name: "Phone", amount: 2_000, category: "utilities", frequency: "monthly" })
    id = o.kind === "applied" ? o.id : ""
  })
  await eventually("Ben to see it", () => c.ben.doc().expenses[id] !== undefined)
  c.ben.change(d => void delete d.expenses[id])
  await eventually("the server to restore it for Ben", () => c.ben.doc().expenses[id] !== undefined, 20_000)
  await settled(c, "Ann to have the restore", d => d.expenses[id] !== undefined)
  const { wrong } = misstoredStrings(c.ben.doc())
  assert.deepEqual(wrong, [])
  assertTypes(c, "deleted", [["expenses", id]])
})

test("answering one's own request: the answer is reverted", async () => {
  const c = await setup()
  let id = ""
  c.ann.change(d => {
    const o = addExpense(d, c.annCtx(), { name: "Piano", amount: 300_000, category: "entertainment", frequency: "yearly" })
    id = o.kind === "approval_requested" ? o.targetId : ""
  })
  await settled(c, "the request on the server", d => d.approvals[addRequestId(id)] !== undefined)
  c.ann.change(d => {
    d.approvals[addRequestId(id)].status = "approved"
    d.approvals[addRequestId(id)].responded_by = c.couple.inviter.id
    d.approvals[addRequestId(id)].responded_at = Date.now()
    d.expenses[id].status = "active"
  })
  await eventually("the server to revert the answer", () => {
    const d = c.ann.doc()
    return str(d.approvals[addRequestId(id)].status) === "pending" && str(d.expenses[id].status) === "pending_approval" && A.isImmutableString(d.approvals[addRequestId(id)].status)
  }, 20_000)
  assertTypes(c, "own answer", [["expenses", id], ["approvals", addRequestId(id)]])
})

test("a message with another sender is removed; an edited message is restored", async () => {
  const c = await setup()
  const forged = randomUUID()
  let mine = ""
  c.ann.change(d => {
    const o = sendMessage(d, c.annCtx(), "See you at eight")
    mine = o.kind === "applied" ? o.id : ""
    d.messages[forged] = { sender_id: c.couple.invitee.id, text: "I owe you 100", message_type: "text", read_by_recipient: false, created_at: Date.now() }
  })
  await settled(c, "the forged message removed", d => d.messages[forged] === undefined)
  c.ann.change(d => void (d.messages[mine].text = "See you at nine"))
  await settled(c, "the message restored", d => d.messages[mine].text === "See you at eight")
  assertTypes(c, "messages", [["messages", mine]])
})

test("the partner's month marked paid: restored", async () => {
  const c = await setup()
  const month = await call(server, "GET", "/api/contributions/current", { token: c.couple.inviter.accessToken })
  assert.equal(month.status, 200)
  const key = await eventually("the month in the document", () => Object.keys(c.ann.doc().contributions ?? {})[0])
  c.ann.change(d => void (d.contributions[key].paid[c.couple.invitee.id] = Date.now()))
  await eventually("the month to be written back", () => (c.ann.doc().contributions[key].paid[c.couple.invitee.id] ?? null) === null, 20_000)
  assertTypes(c, "month", [["contributions", key]])
})

test("a member's name changed: restored, as Text", async () => {
  const c = await setup()
  c.ann.change(d => void (d.members[c.couple.invitee.id].name = "Benjamin"))
  const d = await settled(c, "the name restored", d => d.members[c.couple.invitee.id].name === "Ben")
  assert.equal(typeof d.members[c.couple.invitee.id].name, "string")
  assertTypes(c, "member", [["members", c.couple.invitee.id]])
})

test("enums written as Text by plain assignment: normalized, same value, no edit request", async () => {
  const c = await setup()
  let id = ""
  c.ann.change(d => {
    const o = addExpense(d, c.annCtx(), { name: "Water", amount: 3_000, category: "utilities", frequency: "monthly" })
    id = o.kind === "applied" ? o.id : ""
  })
  await settled(c, "the expense on the server", d => d.expenses[id] !== undefined)
  c.ann.change(d => {
    d.expenses[id].status = "active" // a plain JS string: Text
    d.expenses[id].category = "utilities"
    d.expenses[id].name = new A.ImmutableString("Water") // free text as a scalar
  })
  assert.equal(typeof c.ann.doc().expenses[id].status, "string", "the stock client wrote Text")
  const d = await settled(c, "the types rewritten", d => A.isImmutableString(d.expenses[id].status) && A.isImmutableString(d.expenses[id].category) && typeof d.expenses[id].name === "string")
  assert.equal(str(d.expenses[id].status), "active")
  assert.equal(str(d.expenses[id].category), "utilities")
  assert.equal(d.expenses[id].name, "Water")
  assert.deepEqual(approvalsOf(d, id, "expense_edit"), [], "the same values: nothing to approve")
  assertTypes(c, "enums as Text", [["expenses", id]])
})

test("partnership settings and added_by changed: restored", async () => {
  const c = await setup()
  let id = ""
  c.ann.change(d => {
    const o = addExpense(d, c.annCtx(), { name: "Gas", amount: 5_000, category: "utilities", frequency: "monthly" })
    id = o.kind === "applied" ? o.id : ""
  })
  await settled(c, "the expense on the server", d => d.expenses[id] !== undefined)
  c.ann.change(d => {
    d.partnership.status = "paused"
    d.partnership.currency = "USD"
    d.expenses[id].added_by = c.couple.invitee.id
  })
  await settled(c, "restored", d => str(d.partnership.status) === "active" && str(d.partnership.currency) === "EUR" && str(d.expenses[id].added_by) === c.couple.inviter.id)
  assertTypes(c, "partnership", [["expenses", id]])
})

test("a goal's saved amount changed by hand, a contribution logged for the partner: corrected", async () => {
  const c = await setup()
  let goal = ""
  c.ann.change(d => {
    const o = addGoal(d, c.annCtx(), { name: "Bike", target_amount: 80_000, goal_type: "other", priority: "medium" })
    goal = o.kind === "approval_requested" ? o.targetId : ""
  })
  await eventually("Ben to see the goal", () => c.ben.doc().approvals?.[addRequestId(goal)] !== undefined)
  c.ben.change(d => void approve(d, c.benCtx(), addRequestId(goal)))
  await settled(c, "the goal active", d => str(d.goals[goal].status) === "active")
  const contribution = randomUUID()
  c.ann.change(d => {
    d.goals[goal].saved_amount.increment(9_000)
    d.goal_contributions[contribution] = { goal_id: goal, user_id: c.couple.invitee.id, amount: 1_000, created_at: Date.now() }
  })
  const d = await settled(c, "corrected", d => d.goals[goal].saved_amount.value === 1_000 && str(d.goal_contributions[contribution]?.user_id) === c.couple.inviter.id)
  assert.equal(str(d.goal_contributions[contribution].goal_id), goal)
  assertTypes(c, "counter", [["goals", goal], ["goal_contributions", contribution]])
})

test("REST writes: expense, edit request, goal, approvals, message, contribution", async () => {
  const c = await setup()
  const ann = c.couple.inviter.accessToken
  const ben = c.couple.invitee.accessToken
  const big = await call(server, "POST", "/api/expenses", { token: ann, body: { name: "Kitchen", amount: "2500.00", category: "housing", frequency: "yearly" } })
  assert.equal(big.status, 202, `over the threshold: an approval request; ${JSON.stringify(big.body)}`)
  const kitchen: string = big.body.target_id
  const small = await call(server, "POST", "/api/expenses", { token: ann, body: { name: "Milk", amount: "12.50", category: "groceries", frequency: "weekly" } })
  assert.equal(small.status, 201, JSON.stringify(small.body))
  const edit = await call(server, "PUT", `/api/expenses/${small.body.id}`, { token: ann, body: { name: "Oat milk", message: "we switched" } })
  assert.ok(edit.status < 300, JSON.stringify(edit.body))
  const goal = await call(server, "POST", "/api/goals", { token: ben, body: { name: "Garden", target_amount: "1000.00", goal_type: "home", priority: "high" } })
  assert.ok(goal.status === 201 || goal.status === 202, JSON.stringify(goal.body))
  const garden: string = goal.status === 202 ? goal.body.target_id : goal.body.id
  const pending = await call(server, "GET", "/api/approvals", { token: ben })
  const forBen = (pending.body.items as { id: string; requested_by: string; request_type: string }[]).filter(a => a.requested_by === c.couple.inviter.id)
  assert.equal(forBen.length, 2, JSON.stringify(pending.body))
  for (const a of forBen) {
    const answer = a.request_type === "expense_add" ? "approve" : "decline"
    const r = await call(server, "POST", `/api/approvals/${a.id}/${answer}`, { token: ben })
    assert.ok(r.status < 300, JSON.stringify(r.body))
  }
  const goalRequest = (await call(server, "GET", "/api/approvals", { token: ann })).body.items.find((a: { target_id: string }) => a.target_id === garden)
  assert.ok((await call(server, "POST", `/api/approvals/${goalRequest.id}/approve`, { token: ann })).status < 300)
  const contributed = await call(server, "PUT", `/api/goals/${garden}/contribution`, { token: ann, body: { amount: "25.00" } })
  assert.ok(contributed.status < 300, JSON.stringify(contributed.body))
  const message = await call(server, "POST", "/api/messages", { token: ben, body: { text: "Done ✓" } })
  assert.ok(message.status < 300, JSON.stringify(message.body))

  const d = await settled(c, "every REST write in Ann's replica", d =>
    str(d.expenses?.[kitchen]?.status) === "active" &&
    Object.keys(d.approvals ?? {}).length === 3 &&
    Object.values(d.approvals as Record<string, RawDoc>).every(a => str(a.status) !== "pending") &&
    d.goals?.[garden]?.saved_amount?.value === 2_500 &&
    d.messages?.[message.body.id] !== undefined
  )
  const editRequest = approvalsOf(d, small.body.id, "expense_edit")[0]!
  assert.equal(editRequest[1].message, "we switched", "the note is Text")
  assert.equal(str(editRequest[1].status), "declined")
  assert.equal(d.expenses[small.body.id].name, "Milk")
  assertTypes(c, "REST", [
    ["expenses", kitchen],
    ["expenses", small.body.id],
    ["goals", garden],
    ["approvals", editRequest[0]],
    ["messages", message.body.id],
  ])
})
