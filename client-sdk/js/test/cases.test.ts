// The shared case tables (sync-core/tests/cases/*.json) run against this package. sync-core
// runs the same files (sync-core/tests/integration/op_cases.rs), so a rule cannot differ
// between the Rust and the JS client without one of the two suites failing.
import { test } from "node:test"
import assert from "node:assert/strict"
import { existsSync, readFileSync } from "node:fs"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import * as A from "@automerge/automerge"

import {
  FIELDS,
  OpError,
  addExpense,
  addGoal,
  approve,
  archiveExpense,
  archiveGoal,
  calculate,
  contributeToGoal,
  decline,
  documentSplit,
  editExpense,
  editGoal,
  formatMinor,
  initPartnershipDocument,
  markRead,
  monthlyAmount,
  monthlyContribution,
  MoneyError,
  putEntity,
  readDocument,
  sendMessage,
  SplitError,
  toMinorPositive,
  type CollectionName,
  type CollectionTypes,
  type DocumentState,
  type FieldSpec,
  type Outcome,
  type Split,
  type SplitInput,
} from "../src/index.js"

type Json = null | boolean | number | string | Json[] | { [k: string]: Json }
type Obj = { [k: string]: Json }

/** sync-core/tests/cases, found from this file whether run from src or from dist-test. */
function casesDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    const candidate = join(dir, "sync-core", "tests", "cases")
    if (existsSync(candidate)) return candidate
    const up = dirname(dir)
    if (up === dir) throw new Error("sync-core/tests/cases not found")
    dir = up
  }
}

const load = (name: string): Obj => JSON.parse(readFileSync(join(casesDir(), name), "utf8")) as Obj
const OPS = load("ops.json")
const SPLIT = load("split.json")
const BASE = OPS.base as Obj
const NEW = "$new"
const COLLECTIONS = ["expenses", "goals", "goal_contributions", "approvals", "messages"] as const

function merged(doc: Json | undefined): Obj {
  return { ...BASE, ...((doc ?? {}) as Obj) }
}

/** The starting document, written by this package's own writers (declared types). */
function build(spec: Obj): A.Doc<unknown> {
  return A.change(A.init<unknown>(), (d) => {
    initPartnershipDocument(d as object, {
      partnership: {
        id: spec.partnership_id as string,
        currency: spec.currency as "USD",
        approval_threshold: spec.approval_threshold as number,
        status: spec.status as "active",
      },
      members: Object.entries(spec.members as Obj).map(([user_id, m]) => ({ user_id, ...(m as Obj) }) as unknown as CollectionTypes["members"]),
    })
    for (const coll of COLLECTIONS) {
      for (const [id, e] of Object.entries((spec[coll] ?? {}) as Obj)) {
        putEntity(d as object, coll, { id, ...(e as Obj) } as unknown as CollectionTypes[typeof coll])
      }
    }
  })
}

/** A read collection as the case files hold it: entities by id, without the id field. */
function byId(items: readonly { id: string }[]): Obj {
  const out: Obj = {}
  for (const { id, ...rest } of items) out[id] = rest as unknown as Json
  return out
}

function collections(state: DocumentState): Record<(typeof COLLECTIONS)[number], Obj> {
  return {
    expenses: byId(state.expenses),
    goals: byId(state.goals),
    goal_contributions: byId(state.goal_contributions),
    approvals: byId(state.approvals),
    messages: byId(state.messages),
  }
}

function runOp(d: object, ctx: { user: string; now: number }, op: string, input: Obj): Outcome {
  const s = (k: string) => input[k] as string
  const n = (k: string) => input[k] as number
  const msg = input.message as string | undefined
  switch (op) {
    case "add_expense":
      return addExpense(d, ctx, { name: s("name"), amount: n("amount"), category: s("category") as "housing", frequency: s("frequency") as "monthly" }, s("id"))
    case "add_goal":
      return addGoal(d, ctx, { name: s("name"), target_amount: n("target_amount"), goal_type: s("goal_type") as "vacation", priority: s("priority") as "low" }, s("id"))
    case "edit_expense":
      return editExpense(d, ctx, s("id"), input.fields as Obj, msg)
    case "edit_goal":
      return editGoal(d, ctx, s("id"), input.fields as Obj, msg)
    case "archive_expense":
      return archiveExpense(d, ctx, s("id"))
    case "archive_goal":
      return archiveGoal(d, ctx, s("id"))
    case "contribute_to_goal":
      return contributeToGoal(d, ctx, s("goal_id"), n("amount"))
    case "approve":
      return approve(d, ctx, s("request_id"))
    case "decline":
      return decline(d, ctx, s("request_id"))
    case "send_message":
      return sendMessage(d, ctx, s("text"))
    case "mark_read":
      return markRead(d, ctx, s("id"))
    default:
      throw new Error(`unknown op ${op}`)
  }
}

/** The outcome as the case files spell it (snake_case, like sync-core's). */
function outcomeJson(r: Outcome | OpError): Obj {
  if (r instanceof OpError) return r.kind === "validation" ? { kind: "refused", error: r.kind, field: r.field ?? null } : { kind: "refused", error: r.kind }
  if (r.kind === "applied") return { kind: "applied", id: r.id }
  return { kind: "approval_requested", request_id: r.requestId, target_id: r.targetId }
}

function bindNew(v: Json, id: string | undefined): Json {
  if (id === undefined) return v
  if (v === NEW) return id
  if (Array.isArray(v)) return v.map((x) => bindNew(x, id))
  if (v !== null && typeof v === "object") {
    const out: Obj = {}
    for (const [k, x] of Object.entries(v)) out[k === NEW ? id : k] = bindNew(x, id)
    return out
  }
  return v
}

/**
 * Every string field of every entity is stored with its declared type: free text as Text
 * (reads as a JS string), ids and enums as scalar strings (read as ImmutableString).
 */
function assertDeclaredTypes(doc: A.Doc<unknown>, name: string): void {
  const check = (spec: FieldSpec, v: unknown, path: string) => {
    if (v === null || v === undefined) return
    if (spec.kind === "text") assert.equal(typeof v, "string", `${name}: ${path} should be Text`)
    if (spec.kind === "id" || spec.kind === "enum" || spec.kind === "currency") {
      assert.ok(A.isImmutableString(v), `${name}: ${path} should be a scalar string`)
    }
    if (spec.kind === "counter") assert.ok(A.isCounter(v), `${name}: ${path} should be a Counter`)
    if (spec.kind === "map") {
      for (const [k, f] of Object.entries(spec.fields)) check(f, (v as Record<string, unknown>)[k], `${path}.${k}`)
    }
  }
  const root = doc as Record<string, Record<string, Record<string, unknown>>>
  for (const coll of [...COLLECTIONS, "members"] as CollectionName[]) {
    const specs = FIELDS[coll] as Readonly<Record<string, FieldSpec>>
    for (const [key, entity] of Object.entries(root[coll] ?? {})) {
      for (const [field, spec] of Object.entries(specs)) check(spec, entity[field], `${coll}.${key}.${field}`)
    }
  }
  for (const [field, spec] of Object.entries(FIELDS.partnership as Readonly<Record<string, FieldSpec>>)) {
    check(spec, (root.partnership as unknown as Record<string, unknown>)[field], `partnership.${field}`)
  }
}

const cases = OPS.cases as Obj[]

test("the shared table has its cases", () => {
  assert.ok(cases.length >= 60)
  assert.equal(new Set(cases.map((c) => c.name)).size, cases.length, "case names are unique")
})

for (const c of cases) {
  test(`op case: ${c.name as string}`, () => {
    const spec = merged(c.doc)
    const start = build(spec)
    const startState = readDocument(start)
    assert.deepEqual(startState.malformed, [])
    const startJson = collections(startState)
    for (const coll of COLLECTIONS) {
      assert.deepEqual(startJson[coll], spec[coll] ?? {}, `the starting ${coll} read back as written`)
    }
    const ctx = { user: c.as as string, now: c.now as number }
    // A refusal thrown inside the change rolls it back: the document stays at `start`.
    let result: Outcome | OpError
    let after: A.Doc<unknown>
    const before = A.clone(start)
    try {
      let applied: Outcome | undefined
      after = A.change(before, (d) => {
        applied = runOp(d as object, ctx, c.op as string, c.input as Obj)
      })
      assert.ok(applied !== undefined)
      result = applied
    } catch (e) {
      if (!(e instanceof OpError)) throw e
      result = e
      after = before
      assert.deepEqual(A.getHeads(before), A.getHeads(start), "a refused operation writes nothing")
    }
    const actual = outcomeJson(result)
    const expect = c.expect as Obj
    const newId = expect.id === NEW ? (actual.id as string) : expect.request_id === NEW ? (actual.request_id as string) : undefined
    if (newId !== undefined) {
      for (const coll of COLLECTIONS) assert.equal(startJson[coll][newId], undefined, `${newId} is new`)
    }
    assert.deepEqual(actual, bindNew(expect, newId), "outcome")
    const afterState = readDocument(after)
    assert.deepEqual(afterState.malformed, [])
    const afterJson = collections(afterState)
    const patches = bindNew((c.after ?? {}) as Obj, newId) as Obj
    for (const coll of COLLECTIONS) {
      const wanted: Obj = { ...startJson[coll] }
      for (const [k, v] of Object.entries((patches[coll] ?? {}) as Obj)) {
        if (v === null) delete wanted[k]
        else wanted[k] = v
      }
      assert.deepEqual(afterJson[coll], wanted, coll)
    }
    assertDeclaredTypes(after, c.name as string)
  })
}

function splitInput(c: Obj): SplitInput {
  return {
    expenses: (c.expenses as Obj[]).map((e) => ({ amount: e.amount as number, frequency: e.frequency as "weekly" })),
    income_1: c.income_1 as number | null,
    income_2: c.income_2 as number | null,
  }
}

for (const c of SPLIT.split as Obj[]) {
  test(`split case: ${c.name as string}`, () => {
    let actual: Split | { error: string }
    try {
      actual = calculate(splitInput(c))
    } catch (e) {
      if (!(e instanceof SplitError)) throw e
      actual = { error: e.kind }
    }
    assert.deepEqual(actual, c.expect)
  })
}

test("split cases: monthly amounts of single expenses", () => {
  for (const c of SPLIT.monthly_amount as Obj[]) {
    assert.equal(monthlyAmount(c.amount as number, c.frequency as "weekly"), c.expect, JSON.stringify(c))
  }
})

test("split cases: the month's contribution", () => {
  for (const c of SPLIT.contributions as Obj[]) {
    assert.deepEqual(monthlyContribution(c.month as string, calculate(splitInput(c))), c.expect, c.name as string)
  }
})

for (const c of SPLIT.documents as Obj[]) {
  test(`document split case: ${c.name as string}`, () => {
    const got = documentSplit(build(merged(c.doc)))
    assert.deepEqual({ active_expenses: got.active_expenses, split: got.split }, c.expect)
  })
}

test("money cases: decimal strings to minor units", () => {
  for (const c of SPLIT.parse as Obj[]) {
    let actual: Obj
    try {
      actual = { expect: toMinorPositive(c.text as string, c.currency as string) }
    } catch (e) {
      if (!(e instanceof MoneyError)) throw e
      actual = { error: e.kind }
    }
    const wanted: Obj = "error" in c ? { error: c.error as string } : { expect: c.expect as number }
    assert.deepEqual(actual, wanted, JSON.stringify(c))
  }
})

test("money cases: minor units to the currency's decimal", () => {
  for (const c of SPLIT.format as Obj[]) {
    assert.equal(formatMinor(c.minor as number, c.currency as string), c.expect, JSON.stringify(c))
  }
})
