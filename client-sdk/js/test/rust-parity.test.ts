/**
 * The same operations through the TypeScript package and through the Rust SDK give the same
 * document. One couple runs a script with the Rust SDK's `Client`
 * (`client-sdk/examples/script.rs`), another couple runs it with two SplitSaveClients; after
 * syncing, the two documents are equal up to ids and times (entities named by what a user
 * sees), including the type each value is stored as (Text or scalar string, Counter, ...).
 */

import assert from "node:assert/strict"
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { after, before, test } from "node:test"
import { promisify } from "node:util"

import type { DocHandle } from "@automerge/automerge-repo"

import {
  type Category,
  type Frequency,
  type GoalType,
  type Outcome,
  type Priority,
  SplitSaveClient,
  addExpense,
  addGoal,
  approve,
  archiveExpense,
  contributeToGoal,
  decline,
  editExpense,
  sendMessage,
} from "../src/index.js"
import { type Dumped, dump, type RawDoc, sortedHeads } from "./support/doc.js"
import { type Couple, TestServer, type TestUser, buildClientExample, eventually, makeCouple } from "./support/server.js"

type Step = { as: "ann" | "ben"; ref?: string; request_ref?: string } & (
  | { op: "add_expense"; name: string; amount: number; category: Category; frequency: Frequency }
  | { op: "edit_expense"; expense: string; fields: { name?: string; amount?: number; category?: Category; frequency?: Frequency }; message?: string }
  | { op: "archive_expense"; expense: string }
  | { op: "add_goal"; name: string; target_amount: number; goal_type: GoalType; priority: Priority }
  | { op: "contribute"; goal: string; amount: number }
  | { op: "approve"; request: string }
  | { op: "decline"; request: string }
  | { op: "send_message"; text: string }
)

/** Over the 100.00 threshold: rent and the gym wait for approval; everything a couple does in a month. */
const SCRIPT: Step[] = [
  { as: "ann", op: "add_expense", ref: "rent", request_ref: "rent_add", name: "Rent", amount: 150_000, category: "housing", frequency: "monthly" },
  { as: "ann", op: "add_expense", ref: "coffee", name: "Coffee", amount: 450, category: "dining", frequency: "weekly" },
  { as: "ben", op: "approve", request: "rent_add" },
  { as: "ben", op: "add_goal", ref: "holiday", request_ref: "holiday_add", name: "Holiday in Lisbon", target_amount: 300_000, goal_type: "vacation", priority: "high" },
  { as: "ann", op: "approve", request: "holiday_add" },
  { as: "ann", op: "contribute", goal: "holiday", amount: 5_000 },
  { as: "ben", op: "contribute", goal: "holiday", amount: 7_550 },
  { as: "ben", op: "edit_expense", expense: "coffee", fields: { name: "Coffee beans", amount: 600 }, message: "beans are cheaper", request_ref: "coffee_edit" },
  { as: "ann", op: "approve", request: "coffee_edit" },
  { as: "ann", op: "edit_expense", expense: "rent", fields: { amount: 160_000 }, message: "the landlord wrote", request_ref: "rent_edit" },
  { as: "ben", op: "decline", request: "rent_edit" },
  { as: "ben", op: "add_expense", ref: "gym", request_ref: "gym_add", name: "Gym", amount: 20_000, category: "health", frequency: "monthly" },
  { as: "ann", op: "decline", request: "gym_add" },
  { as: "ann", op: "add_expense", ref: "streaming", name: "Streaming", amount: 1_299, category: "subscriptions", frequency: "monthly" },
  { as: "ben", op: "archive_expense", expense: "streaming" },
  { as: "ann", op: "send_message", text: "See you at dinner 🍝" },
  { as: "ben", op: "send_message", text: "Bringing wine\nand bread" },
]

let server: TestServer
let example: string
const clients: SplitSaveClient[] = []
before(async () => {
  example = buildClientExample("script")
  server = await TestServer.start()
})
after(async () => {
  await Promise.all(clients.map(c => c.close()))
  await server?.stop()
})

type Phone = { client: SplitSaveClient; doc: DocHandle<RawDoc> }

async function phone(user: TestUser): Promise<Phone> {
  const client = new SplitSaveClient({ baseUrl: server.baseUrl, retryIntervalMs: 100 })
  clients.push(client)
  await client.login(user.email, user.password)
  return { client, doc: await client.open<RawDoc>() }
}

async function converged(a: Phone, b: Phone, what: string): Promise<void> {
  await eventually(
    what,
    () => a.client.connection!.isSynced(a.doc) && b.client.connection!.isSynced(b.doc) && sortedHeads(a.doc.heads()) === sortedHeads(b.doc.heads()),
    30_000
  )
}

/** Runs the script with the TypeScript package, as the Rust example does: one step, then both phones converge. */
async function runWithPackage(couple: Couple): Promise<RawDoc> {
  const phones = { ann: await phone(couple.inviter), ben: await phone(couple.invitee) }
  const users = { ann: couple.inviter, ben: couple.invitee }
  await converged(phones.ann, phones.ben, "both phones open")
  const refs = new Map<string, string>()
  const id = (name: string): string => {
    const found = refs.get(name)
    if (found === undefined) throw new Error(`no entity named ${name} yet`)
    return found
  }
  for (const [n, step] of SCRIPT.entries()) {
    const ctx = { user: users[step.as].id, now: Date.now() }
    let outcome: Outcome | undefined
    phones[step.as].doc.change(d => {
      switch (step.op) {
        case "add_expense":
          outcome = addExpense(d, ctx, { name: step.name, amount: step.amount, category: step.category, frequency: step.frequency })
          break
        case "edit_expense":
          outcome = editExpense(d, ctx, id(step.expense), step.fields, step.message)
          break
        case "archive_expense":
          outcome = archiveExpense(d, ctx, id(step.expense))
          break
        case "add_goal":
          outcome = addGoal(d, ctx, { name: step.name, target_amount: step.target_amount, goal_type: step.goal_type, priority: step.priority })
          break
        case "contribute":
          outcome = contributeToGoal(d, ctx, id(step.goal), step.amount)
          break
        case "approve":
          outcome = approve(d, ctx, id(step.request))
          break
        case "decline":
          outcome = decline(d, ctx, id(step.request))
          break
        case "send_message":
          outcome = sendMessage(d, ctx, step.text)
          break
      }
    })
    assert.ok(outcome !== undefined, `step ${n} ran`)
    const target = outcome.kind === "applied" ? outcome.id : outcome.targetId
    if (step.ref !== undefined) refs.set(step.ref, target)
    if (step.request_ref !== undefined && outcome.kind === "approval_requested") refs.set(step.request_ref, outcome.requestId)
    await converged(phones.ann, phones.ben, `step ${n} (${step.op}) to reach both phones`)
  }
  return phones.ann.doc.doc()
}

/** Runs the script with the Rust SDK (the example), returning what it printed. */
async function runWithRust(couple: Couple): Promise<{ document: Dumped; outcomes: { as: string; kind: string }[] }> {
  const dir = mkdtempSync(join(tmpdir(), "splitsave-script-"))
  try {
    const ops = join(dir, "script.json")
    writeFileSync(ops, JSON.stringify(SCRIPT))
    const { stdout } = await promisify(execFile)(
      example,
      [
        "--url", server.baseUrl,
        "--user", `ann=${couple.inviter.email}:${couple.inviter.password}`,
        "--user", `ben=${couple.invitee.email}:${couple.invitee.password}`,
        "--ops", ops,
      ],
      { timeout: 180_000, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, RUST_LOG: "warn" } }
    )
    return JSON.parse(stdout)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

type Tagged = { t: string; v: unknown }
const isTagged = (x: unknown): x is Tagged => typeof x === "object" && x !== null && "t" in x && "v" in x && Object.keys(x).length === 2
const TIME_FIELDS = new Set(["created_at", "updated_at", "responded_at"])

/**
 * The dump with every id replaced by a name a user would recognise (members by slot, expenses
 * and goals by name, messages by text, requests by type and target, contributions by goal,
 * partner and amount) and every time by "<time>" (its stored type kept).
 */
function normalize(doc: Dumped): unknown {
  const d = doc as Record<string, Record<string, Record<string, Dumped>>>
  const val = (x: Dumped | undefined): unknown => (isTagged(x) ? x.v : undefined)
  const labels = new Map<string, string>()
  labels.set(String(val(d.partnership!.id as unknown as Dumped)), "partnership")
  for (const [user, m] of Object.entries(d.members ?? {})) labels.set(user, `member:${String(val(m.slot))}`)
  for (const [id, e] of Object.entries(d.expenses ?? {})) labels.set(id, `expense:${String(val(e.name))}`)
  for (const [id, g] of Object.entries(d.goals ?? {})) labels.set(id, `goal:${String(val(g.name))}`)
  for (const [id, m] of Object.entries(d.messages ?? {})) labels.set(id, `message:${String(val(m.text))}`)
  for (const [id, c] of Object.entries(d.goal_contributions ?? {})) {
    labels.set(id, `contribution:${labels.get(String(val(c.goal_id)))}:${labels.get(String(val(c.user_id)))}:${String(val(c.amount))}`)
  }
  const requests = Object.entries(d.approvals ?? {}).sort(([, a], [, b]) => Number(val(a.created_at)) - Number(val(b.created_at)))
  const seen = new Map<string, number>()
  for (const [id, a] of requests) {
    const base = `request:${String(val(a.request_type))}:${labels.get(String(val(a.target_id)))}`
    const n = (seen.get(base) ?? 0) + 1
    seen.set(base, n)
    labels.set(id, `${base}:${n}`)
  }
  const walk = (x: Dumped, key: string, parent: string): unknown => {
    if (isTagged(x)) {
      if ((TIME_FIELDS.has(key) || parent === "paid") && typeof x.v === "number") return { t: x.t, v: "<time>" }
      if (typeof x.v === "string" && labels.has(x.v)) return { t: x.t, v: labels.get(x.v) }
      return x
    }
    const out: Record<string, unknown> = {}
    for (const k of Object.keys(x).sort()) out[labels.get(k) ?? k] = walk((x as Record<string, Dumped>)[k]!, k, key)
    return out
  }
  return walk(doc, "", "")
}

test("the same script through the TypeScript package and the Rust SDK gives the same document, stored types included", async () => {
  const [rustCouple, tsCouple] = await Promise.all([makeCouple(server), makeCouple(server)])
  const [rust, ts] = await Promise.all([runWithRust(rustCouple), runWithPackage(tsCouple)])

  assert.equal(rust.outcomes.length, SCRIPT.length)
  assert.deepEqual(
    rust.outcomes.map(o => o.kind),
    SCRIPT.map(s => (s.request_ref !== undefined ? "approval_requested" : "applied")),
    "the Rust SDK asked for approval exactly where the script expects it"
  )

  // What the Rust SDK printed is what the server holds for that couple.
  const observer = await phone(rustCouple.inviter)
  let seen: Dumped | undefined
  try {
    await eventually("the server's copy of the Rust couple's document to equal what the SDK printed", () => {
      seen = dump(observer.doc.doc())
      try {
        assert.deepEqual(seen, rust.document)
        return true
      } catch {
        return false
      }
    })
  } catch (e) {
    assert.deepEqual(seen, rust.document, String(e))
  }

  const fromRust = normalize(rust.document)
  const fromTs = normalize(dump(ts))
  assert.deepEqual(fromTs, fromRust)

  // The comparison saw the things that matter, with their stored types.
  const expenses = (fromRust as Record<string, Record<string, Record<string, Tagged>>>).expenses!
  assert.deepEqual(Object.keys(expenses).sort(), ["expense:Coffee beans", "expense:Gym", "expense:Rent", "expense:Streaming"])
  assert.deepEqual(expenses["expense:Coffee beans"]!.name, { t: "text", v: "Coffee beans" })
  assert.deepEqual(expenses["expense:Gym"]!.status, { t: "str", v: "archived" })
  assert.deepEqual(expenses["expense:Rent"]!.amount, { t: "num", v: 150_000 })
  const goals = (fromRust as Record<string, Record<string, Record<string, Tagged>>>).goals!
  assert.deepEqual(goals["goal:Holiday in Lisbon"]!.saved_amount, { t: "counter", v: 12_550 })
  const approvals = (fromRust as Record<string, Record<string, Record<string, Tagged>>>).approvals!
  assert.deepEqual(approvals["request:expense_edit:expense:Rent:1"]!.message, { t: "text", v: "the landlord wrote" })
})
