import { v5 as uuidV5, v7 as uuidV7 } from "uuid"

import { DERIVED_NAMESPACE } from "./generated/schema.js"

const HEX32 = /^[0-9a-fA-F]{32}$/
const HYPHENATED = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/

/**
 * A UUID in any spelling sync-core's readers accept (`Uuid::parse_str`: hyphenated, 32 hex
 * digits, `{braced}`, `urn:uuid:`), as the lower-case hyphenated form Rust writes and
 * compares; `null` when it is not a UUID. Ids are compared after this, so a careless client's
 * upper-case id still matches, as it does on the server.
 */
export function parseUuid(s: string): string | null {
  let body = s
  if (body.startsWith("urn:uuid:")) body = body.slice("urn:uuid:".length)
  else if (body.length === 38 && body.startsWith("{") && body.endsWith("}")) body = body.slice(1, -1)
  let hex: string
  if (HYPHENATED.test(body)) hex = body.replace(/-/g, "")
  else if (HEX32.test(body)) hex = body
  else return null
  hex = hex.toLowerCase()
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/**
 * A deterministic id derived from `parts` (UUID v5 in SplitSave's namespace of the parts
 * joined by U+001F), exactly as sync-core's `EntityId::derived`: a client and a compensating
 * server name the same entity and never write two.
 */
export function derivedId(parts: readonly string[]): string {
  return uuidV5(parts.join("\u001f"), DERIVED_NAMESPACE)
}

/** The id of the approval request that goes with adding `target` (`policy::add_request_id`). */
export function addRequestId(target: string): string {
  return derivedId(["add-request", parseUuid(target) ?? target])
}

/** A fresh, time-ordered id (UUID v7), as the creator of an item makes it. */
export function newId(): string {
  return uuidV7()
}
