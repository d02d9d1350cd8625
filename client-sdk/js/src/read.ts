/**
 * Tolerant, typed reading of the partnership document, the same rules as sync-core's
 * `read.rs` and `document::read_document`.
 *
 * A string field may be stored as Text (what `@automerge/automerge` 3.x writes for a plain JS
 * string; it reads back as a `string`) or as a scalar string (what sync-core wrote before
 * free text became Text, and what it still writes for ids and enums; it reads back as an
 * `ImmutableString`). A time may be an integer of milliseconds or a Timestamp (`Date`). These
 * readers accept every such shape and return plain values: strings, numbers, booleans, null.
 * An entity of the wrong shape is listed in `malformed` by `readDocument` instead of failing the
 * read, so one faulty client's write never hides the rest of the couple's data.
 */
import { isCounter, isImmutableString } from "@automerge/automerge"

import { DocumentError, ShapeError, type ShapeIssue } from "./errors.js"
import {
  FIELDS,
  SCHEMA_VERSION,
  VOCABULARIES,
  type Approval,
  type CollectionName,
  type Expense,
  type FieldSpec,
  type Goal,
  type GoalContribution,
  type ItemStatus,
  type Member,
  type Message,
  type MonthContribution,
  type Partnership,
  type RequestData,
  type RequestType,
  type TableName,
} from "./generated/schema.js"
import { parseUuid } from "./ids.js"
import { isCurrencyCode } from "./money.js"

/** A map as read from the document (a frozen doc, a view or a change proxy). */
export type DocMap = Record<string, unknown>

/** True for an Automerge map (not a list, Text, scalar object, counter, date or bytes). */
export function isMap(v: unknown): v is DocMap {
  return (
    typeof v === "object" &&
    v !== null &&
    !Array.isArray(v) &&
    !(v instanceof Date) &&
    !(v instanceof Uint8Array) &&
    !isCounter(v) &&
    !isImmutableString(v)
  )
}

/** A string stored either as Text (read as `string`) or as a scalar (`ImmutableString`). */
export function asString(v: unknown): string | undefined {
  if (typeof v === "string") return v
  if (isImmutableString(v)) return v.val
  return undefined
}

/** A time stored as an integer of milliseconds or as an Automerge Timestamp (`Date`). */
export function asTime(v: unknown): number | undefined {
  if (v instanceof Date) return v.getTime()
  if (typeof v === "number" && Number.isInteger(v)) return v
  return undefined
}

const MONTH_KEY = /^\d{4}-(0[1-9]|1[0-2])$/

/** True for a `YYYY-MM` month key (year 0000–9999, month 01–12), as `split::Month::parse`. */
export function isMonthKey(s: string): boolean {
  return MONTH_KEY.test(s)
}

function absent(v: unknown): boolean {
  return v === undefined || v === null
}

/** Reads one value by its field spec; throws a ShapeError naming `path`. */
function readValue(spec: FieldSpec, raw: unknown, path: string, nullable: boolean): unknown {
  if (absent(raw) && spec.kind !== "bool" && spec.kind !== "per_user" && spec.kind !== "map") {
    if (nullable) return null
    throw new ShapeError(path, "missing")
  }
  switch (spec.kind) {
    case "text":
    case "id":
    case "currency":
    case "enum": {
      const s = asString(raw)
      if (s === undefined) throw new ShapeError(path, "expected a string")
      if (spec.kind === "text") return s
      if (spec.kind === "id") {
        const id = parseUuid(s)
        if (id === null) throw new ShapeError(path, "unknown value")
        return id
      }
      if (spec.kind === "currency") {
        if (!isCurrencyCode(s)) throw new ShapeError(path, "unknown value")
        return s
      }
      if (!(VOCABULARIES[spec.vocabulary] as readonly string[]).includes(s)) {
        throw new ShapeError(path, "unknown value")
      }
      return s
    }
    case "minor_units":
    case "int":
      if (typeof raw === "number" && Number.isInteger(raw)) return raw
      throw new ShapeError(path, "expected an integer")
    case "counter":
      if (isCounter(raw)) return raw.value
      if (typeof raw === "number" && Number.isInteger(raw)) return raw
      throw new ShapeError(path, "expected an integer")
    case "time": {
      const t = asTime(raw)
      if (t === undefined) throw new ShapeError(path, "expected a time")
      return t
    }
    case "bool":
      if (typeof raw === "boolean") return raw
      if (raw === undefined) throw new ShapeError(path, "missing")
      throw new ShapeError(path, "expected a boolean")
    case "per_user": {
      if (!isMap(raw)) throw new ShapeError(path, "expected a map")
      const out: Record<string, unknown> = {}
      for (const key of Object.keys(raw).sort()) {
        const user = parseUuid(key)
        if (user === null) throw new ShapeError(path, "bad user id")
        out[user] = readValue(spec.value, raw[key], `${path}.${key}`, spec.value.nullable === true)
      }
      return out
    }
    case "map": {
      if (!isMap(raw)) throw new ShapeError(path, "expected a map")
      const out: Record<string, unknown> = {}
      for (const [name, field] of Object.entries(spec.fields)) {
        const v = readValue(field, raw[name], `${path}.${name}`, true)
        if (v !== null) out[name] = v
      }
      return out
    }
  }
}

/** The proposed fields each request type carries (sync-core reads only these). */
const REQUEST_FIELDS: Record<"expense" | "goal", readonly (keyof RequestData)[]> = {
  expense: ["name", "amount", "category", "frequency"],
  goal: ["name", "target_amount", "goal_type", "priority"],
}

function requestKind(t: RequestType): "expense" | "goal" {
  return t === "expense_add" || t === "expense_edit" ? "expense" : "goal"
}

/** Reads the fields of `table` from map `obj` (at `path`), every field by its declared spec. */
function readFields(table: TableName, obj: DocMap, path: string): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const specs: Readonly<Record<string, FieldSpec>> = FIELDS[table]
  for (const [name, spec] of Object.entries(specs)) {
    if (table === "approvals" && name === "request_data") continue
    out[name] = readValue(spec, obj[name], `${path}.${name}`, spec.nullable === true)
  }
  if (table === "approvals") {
    // Which proposed fields count depends on the request type, as in sync-core.
    const dataPath = `${path}.request_data`
    const raw = obj.request_data
    if (!isMap(raw)) throw new ShapeError(dataPath, "expected a map")
    const specsOfData = FIELDS.approvals.request_data.fields as Readonly<Record<string, FieldSpec>>
    const data: Record<string, unknown> = {}
    for (const name of REQUEST_FIELDS[requestKind(out.request_type as RequestType)]) {
      const v = readValue(specsOfData[name]!, raw[name], `${dataPath}.${name}`, true)
      if (v !== null) data[name] = v
    }
    out.request_data = data
  }
  return out
}

/** Reads one entity of `coll` stored under `key` in map `obj`; throws a ShapeError. */
function readEntityIn(coll: CollectionName, key: string, obj: unknown, path: string): Record<string, unknown> {
  if (!isMap(obj)) throw new ShapeError(path, "expected a map")
  if (coll === "contributions") {
    if (!isMonthKey(key)) throw new ShapeError(path, "key is not YYYY-MM")
    return { month: key, ...readFields(coll, obj, path) }
  }
  const id = parseUuid(key)
  if (coll === "members") {
    if (id === null) throw new ShapeError(path, "key is not a user id")
    const m = readFields(coll, obj, path)
    if (m.slot !== 1 && m.slot !== 2) throw new ShapeError(`${path}.slot`, "must be 1 or 2")
    return { user_id: id, ...m }
  }
  if (id === null) throw new ShapeError(path, "key is not a UUID")
  return { id, ...readFields(coll, obj, path) }
}

/** What each collection holds when read. */
export interface CollectionTypes {
  members: Member
  expenses: Expense
  goals: Goal
  goal_contributions: GoalContribution
  approvals: Approval
  messages: Message
  contributions: MonthContribution
}

function root(doc: object): DocMap {
  return doc as DocMap
}

/** The collection's map, or undefined when missing or not a map. */
export function collectionOf(doc: object, coll: CollectionName): DocMap | undefined {
  const c = root(doc)[coll]
  return isMap(c) ? c : undefined
}

/** Every entity of a collection that reads, and the shape problems of those that do not. */
export function readCollection<C extends CollectionName>(
  doc: object,
  coll: C,
): { items: CollectionTypes[C][]; malformed: ShapeIssue[] } {
  const items: CollectionTypes[C][] = []
  const malformed: ShapeIssue[] = []
  const c = collectionOf(doc, coll)
  if (c === undefined) return { items, malformed }
  for (const key of Object.keys(c).sort()) {
    const path = `${coll}.${key}`
    try {
      items.push(readEntityIn(coll, key, c[key], path) as unknown as CollectionTypes[C])
    } catch (e) {
      if (!(e instanceof ShapeError)) throw e
      malformed.push({ path: e.path, reason: e.reason })
    }
  }
  return { items, malformed }
}

/**
 * Reads `collection.<key>`: null when absent, a ShapeError when it does not read. `key` may be
 * any UUID spelling; it is looked up in the lower-case hyphenated form every writer uses.
 */
export function readEntity<C extends CollectionName>(doc: object, coll: C, key: string): CollectionTypes[C] | null {
  const k = coll === "contributions" ? key : (parseUuid(key) ?? key)
  const c = collectionOf(doc, coll)
  if (c === undefined) return null
  const obj = c[k]
  if (obj === undefined) return null
  return readEntityIn(coll, k, obj, `${coll}.${k}`) as unknown as CollectionTypes[C]
}

/** Reads `partnership`; a ShapeError when it is missing or does not read. */
export function readPartnership(doc: object): Partnership {
  const obj = root(doc).partnership
  if (!isMap(obj)) throw new ShapeError("partnership", "missing")
  return readFields("partnership", obj, "partnership") as unknown as Partnership
}

/**
 * The schema version; undefined when missing or not an integer. Documents created before the
 * server wrote it as a signed integer hold an unsigned one, which `@automerge/automerge` reads
 * back as a `bigint`.
 */
export function readSchemaVersion(doc: object): number | undefined {
  const v = root(doc).schema
  if (typeof v === "bigint") return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : Number.MAX_SAFE_INTEGER
  return typeof v === "number" && Number.isInteger(v) ? v : undefined
}

/** The whole document as plain values, like sync-core's `DocumentState`. */
export interface DocumentState {
  partnership: Partnership
  /** The two partners, by slot. */
  members: Member[]
  expenses: Expense[]
  goals: Goal[]
  goal_contributions: GoalContribution[]
  approvals: Approval[]
  messages: Message[]
  contributions: MonthContribution[]
  /** Entities skipped because of their shape (enforcement on the server removes or repairs them). */
  malformed: ShapeIssue[]
}

/**
 * Reads the whole document. Throws a DocumentError only when the schema is newer than this
 * package's or the server-owned `partnership` map does not read; unknown keys are ignored.
 */
export function readDocument(doc: object): DocumentState {
  const found = readSchemaVersion(doc)
  if (found !== undefined && found > SCHEMA_VERSION) {
    throw new DocumentError(
      "unsupported_schema",
      `document schema ${found} is newer than the supported schema ${SCHEMA_VERSION}`,
      found,
    )
  }
  let partnership: Partnership
  try {
    partnership = readPartnership(doc)
  } catch (e) {
    if (e instanceof ShapeError) throw new DocumentError("shape", e.message)
    throw e
  }
  const malformed: ShapeIssue[] = []
  const take = <C extends CollectionName>(coll: C): CollectionTypes[C][] => {
    const r = readCollection(doc, coll)
    malformed.push(...r.malformed)
    return r.items
  }
  const members = take("members").sort((a, b) => a.slot - b.slot)
  return {
    partnership,
    members,
    expenses: take("expenses"),
    goals: take("goals"),
    goal_contributions: take("goal_contributions"),
    approvals: take("approvals"),
    messages: take("messages"),
    contributions: take("contributions"),
    malformed,
  }
}

/** Expenses that read, optionally only those of one status. */
export function listExpenses(doc: object, status?: ItemStatus): Expense[] {
  const all = readCollection(doc, "expenses").items
  return status === undefined ? all : all.filter((e) => e.status === status)
}

/** Goals that read, optionally only those of one status. */
export function listGoals(doc: object, status?: ItemStatus): Goal[] {
  const all = readCollection(doc, "goals").items
  return status === undefined ? all : all.filter((g) => g.status === status)
}

/** Pending requests waiting for `user`'s answer (those their partner asked), oldest first. */
export function pendingApprovalsFor(doc: object, user: string): Approval[] {
  const me = parseUuid(user) ?? user
  return readCollection(doc, "approvals")
    .items.filter((a) => a.status === "pending" && a.requested_by !== me)
    .sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id))
}

/** Pending requests `user` asked and their partner has not answered yet, oldest first. */
export function pendingRequestsBy(doc: object, user: string): Approval[] {
  const me = parseUuid(user) ?? user
  return readCollection(doc, "approvals")
    .items.filter((a) => a.status === "pending" && a.requested_by === me)
    .sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id))
}

/** Messages in the order they were written (then by id, so both partners see one order). */
export function listMessages(doc: object): Message[] {
  return readCollection(doc, "messages").items.sort((a, b) => a.created_at - b.created_at || a.id.localeCompare(b.id))
}

/** Messages sent to `user` that they have not marked read. */
export function unreadMessagesFor(doc: object, user: string): Message[] {
  const me = parseUuid(user) ?? user
  return listMessages(doc).filter((m) => m.sender_id !== me && !m.read_by_recipient)
}
