/**
 * Helpers for tests that look at the partnership document as stored, not as the package reads
 * it: a stock automerge-repo connection (what a misbehaving or stock app uses), a per-field
 * check of stored string types against the generated field table, a tagged dump of the stored
 * values (the same format `client-sdk/examples/script.rs` prints), and an in-memory key-value
 * store for `KeyValueStorageAdapter`.
 */

import * as A from "@automerge/automerge"
import { type AutomergeUrl, type DocHandle, Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

import { FIELDS, type FieldSpec, type TableName } from "../../src/generated/schema.js"
import type { KeyValueStore } from "../../src/storage.js"
import type { TestServer, TestUser } from "./server.js"

export type RawDoc = Record<string, any>

/** A stock automerge-repo Repo signed in as `user` (token in the URL), and the couple's document. */
export async function rawHandle(server: TestServer, user: TestUser, documentUrl: string): Promise<{ repo: Repo; handle: DocHandle<RawDoc> }> {
  const repo = new Repo({ network: [new WebSocketClientAdapter(server.syncUrlWithToken(user.accessToken), 100)] })
  const handle = await repo.find<RawDoc>(documentUrl as AutomergeUrl, { allowableStates: ["ready", "unavailable"] })
  if (handle.state !== "ready") await handle.whenReady(["ready"])
  return { repo, handle }
}

/** The stored type of a value as `script.rs` names it. */
export function storedType(v: unknown): string {
  if (v === null) return "null"
  if (typeof v === "string") return "text"
  if (A.isImmutableString(v)) return "str"
  if (A.isCounter(v)) return "counter"
  if (v instanceof Date) return "timestamp"
  if (typeof v === "number" || typeof v === "bigint") return "num"
  if (typeof v === "boolean") return "bool"
  if (v instanceof Uint8Array) return "bytes"
  if (Array.isArray(v)) return "list"
  return "map"
}

export type Dumped = { t: string; v: unknown } | { [key: string]: Dumped }

/** The document's maps as objects and every other value as `{ t: type, v: value }`, as `script.rs` prints it. */
export function dump(v: unknown): Dumped {
  const t = storedType(v)
  switch (t) {
    case "map": {
      const out: Record<string, Dumped> = {}
      for (const key of Object.keys(v as object)) out[key] = dump((v as Record<string, unknown>)[key])
      return out
    }
    case "text":
      return { t, v }
    case "str":
      return { t, v: (v as A.ImmutableString).val }
    case "counter":
      return { t, v: (v as A.Counter).value }
    case "timestamp":
      return { t, v: (v as Date).getTime() }
    case "num":
      return { t, v: Number(v) }
    case "bytes":
      return { t, v: Buffer.from(v as Uint8Array).toString("hex") }
    case "list":
      return { t, v: (v as unknown[]).map(dump) }
    default:
      return { t, v }
  }
}

/** The type a string field of `spec` must be stored as, or undefined for non-string fields. */
export function declaredStringType(spec: FieldSpec): "text" | "str" | undefined {
  if (spec.kind === "text") return "text"
  if (spec.kind === "id" || spec.kind === "enum" || spec.kind === "currency") return "str"
  return undefined
}

/** The collection (or `partnership`) whose fields `FIELDS` describes. */
const TABLES = Object.keys(FIELDS) as TableName[]

/**
 * Every string field of every entity (and of `partnership`) stored in another type than
 * `FIELDS` declares, as `"expenses.<id>.status: text, declared str"`; empty when all are right.
 * Also counts how many string fields were checked, so a test can tell it looked at something.
 */
export function misstoredStrings(doc: RawDoc): { wrong: string[]; checked: number } {
  const wrong: string[] = []
  let checked = 0
  const visit = (obj: Record<string, unknown>, specs: Readonly<Record<string, FieldSpec>>, path: string): void => {
    for (const [name, spec] of Object.entries(specs)) {
      const value = obj[name]
      if (spec.kind === "map") {
        if (value !== null && typeof value === "object" && storedType(value) === "map") visit(value as Record<string, unknown>, spec.fields, `${path}.${name}`)
        continue
      }
      const declared = declaredStringType(spec)
      if (declared === undefined || value === undefined || value === null) continue
      checked++
      const stored = storedType(value)
      if (stored !== declared) wrong.push(`${path}.${name}: ${stored}, declared ${declared}`)
    }
  }
  for (const table of TABLES) {
    const specs = FIELDS[table] as Readonly<Record<string, FieldSpec>>
    if (table === "partnership") {
      if (doc.partnership !== undefined) visit(doc.partnership, specs, "partnership")
      continue
    }
    const coll = doc[table] as Record<string, Record<string, unknown>> | undefined
    for (const [key, entity] of Object.entries(coll ?? {})) visit(entity, specs, `${table}.${key}`)
  }
  return { wrong, checked }
}

/** Every string-typed field (per `FIELDS`) of a plain read value that is not a JS string. */
export function nonStringReads(table: TableName, entity: Record<string, unknown>, path: string): string[] {
  const out: string[] = []
  const visit = (obj: Record<string, unknown>, specs: Readonly<Record<string, FieldSpec>>, p: string): void => {
    for (const [name, spec] of Object.entries(specs)) {
      const value = obj[name]
      if (spec.kind === "map") {
        if (value !== undefined && value !== null) visit(value as Record<string, unknown>, spec.fields, `${p}.${name}`)
        continue
      }
      if (declaredStringType(spec) === undefined || value === undefined || value === null) continue
      if (typeof value !== "string") out.push(`${p}.${name}: ${storedType(value)}`)
    }
  }
  visit(entity, FIELDS[table] as Readonly<Record<string, FieldSpec>>, path)
  return out
}

/** A `KeyValueStore` in memory: each app's own storage in tests. */
export function memoryKeyValueStore(): KeyValueStore & { size(): number } {
  const map = new Map<string, string>()
  return {
    getItem: async key => map.get(key) ?? null,
    setItem: async (key, value) => void map.set(key, value),
    removeItem: async key => void map.delete(key),
    getAllKeys: async () => [...map.keys()],
    size: () => map.size,
  }
}

/** Heads as a sorted list, for comparing replicas. */
export function sortedHeads(heads: readonly string[]): string {
  return [...heads].sort().join(",")
}
