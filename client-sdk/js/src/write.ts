/**
 * Writing plain values into the document with each field's DECLARED stored type, read from the
 * generated table (`FIELDS`, from sync-core's `fields.rs`): free text by plain assignment (a
 * Text in `@automerge/automerge` 3.x), ids, currency codes and enums as `ImmutableString`
 * (scalar strings: they must change whole; two in-place edits of a Text `status` would merge
 * into a value of neither vocabulary), amounts and times as integers, `saved_amount` as a
 * Counter. Used inside `handle.change(d => ...)` / `A.change(doc, d => ...)`.
 */
import { Counter, ImmutableString } from "@automerge/automerge"

import { COLLECTION_KEYS, FIELDS, SCHEMA_VERSION, type CollectionName, type FieldSpec, type Partnership } from "./generated/schema.js"
import type { CollectionTypes, DocMap } from "./read.js"
import { isMap } from "./read.js"

/** The stored form of a plain value of a field with `spec`. */
export function toStored(spec: FieldSpec, value: unknown): unknown {
  if (value === null || value === undefined) return null
  switch (spec.kind) {
    case "text":
      return String(value)
    case "id":
    case "currency":
    case "enum":
      return new ImmutableString(String(value))
    case "minor_units":
    case "int":
    case "time":
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        throw new TypeError(`expected an integer, got ${String(value)}`)
      }
      return value
    case "counter":
      if (typeof value !== "number" || !Number.isSafeInteger(value)) {
        throw new TypeError(`expected an integer, got ${String(value)}`)
      }
      return new Counter(value)
    case "bool":
      return Boolean(value)
    case "per_user": {
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) out[k] = toStored(spec.value, v)
      return out
    }
    case "map": {
      const out: Record<string, unknown> = {}
      for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
        const field = spec.fields[k]
        if (field !== undefined && v !== undefined && v !== null) out[k] = toStored(field, v)
      }
      return out
    }
  }
}

/** The collection's map in a change proxy, created when missing (or not a map). */
export function ensureCollection(d: object, coll: CollectionName): DocMap {
  const r = d as DocMap
  if (!isMap(r[coll])) r[coll] = {}
  return r[coll] as DocMap
}

/** Writes a whole entity at `coll.<key>` (replacing what was there), every field in its declared type. */
export function putEntity<C extends CollectionName>(d: object, coll: C, entity: CollectionTypes[C]): void {
  const values = entity as unknown as Record<string, unknown>
  const key = String(values[COLLECTION_KEYS[coll]])
  const specs: Readonly<Record<string, FieldSpec>> = FIELDS[coll]
  const stored: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(specs)) stored[name] = toStored(spec, values[name])
  ensureCollection(d, coll)[key] = stored
}

/** Sets one field of an entity map in its declared type. */
export function setField<C extends CollectionName>(
  obj: DocMap,
  coll: C,
  field: keyof CollectionTypes[C] & string,
  value: unknown,
): void {
  const spec = (FIELDS[coll] as Readonly<Record<string, FieldSpec>>)[field]
  if (spec === undefined) throw new TypeError(`${coll} has no field ${field}`)
  obj[field] = toStored(spec, value)
}

/** Removes `coll.<key>`. */
export function deleteEntity(d: object, coll: CollectionName, key: string): void {
  const c = (d as DocMap)[coll]
  if (isMap(c)) delete c[key]
}

/** What the server knows when a partnership's document is created (`document::NewPartnership`). */
export interface NewPartnershipDocument {
  partnership: Partnership
  /** The two partners, slots 1 and 2. */
  members: CollectionTypes["members"][]
}

/**
 * Writes a new partnership document into an empty change proxy, as sync-core's
 * `new_partnership_document` does on the server: schema, partnership, every collection (so
 * clients never create a top-level map concurrently) and the members. For tests and local
 * tools; in production the server creates the document.
 */
export function initPartnershipDocument(d: object, p: NewPartnershipDocument): void {
  const r = d as DocMap
  r.schema = SCHEMA_VERSION
  const partnership: Record<string, unknown> = {}
  for (const [name, spec] of Object.entries(FIELDS.partnership as Readonly<Record<string, FieldSpec>>)) {
    partnership[name] = toStored(spec, (p.partnership as unknown as Record<string, unknown>)[name])
  }
  r.partnership = partnership
  for (const coll of Object.keys(COLLECTION_KEYS) as CollectionName[]) ensureCollection(d, coll)
  for (const m of p.members) putEntity(d, "members", m)
}
