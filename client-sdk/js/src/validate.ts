/**
 * Input validation, the same rules as sync-core's `validate.rs`: text is trimmed the way Rust's
 * `str::trim` trims (Unicode White_Space, which differs from JS `trim()`: U+0085 is trimmed,
 * U+FEFF is not), counted in characters (code points, like `chars().count()`, not UTF-16
 * units), and may hold no control character (category Cc) other than newline and tab.
 */
import { OpError } from "./errors.js"
import { LIMITS, type CurrencyCode } from "./generated/schema.js"
import { maxMinor } from "./money.js"

/** Unicode White_Space: what Rust's `char::is_whitespace` and `str::trim` use. */
function isWhitespace(cp: number): boolean {
  return (
    (cp >= 0x09 && cp <= 0x0d) ||
    cp === 0x20 ||
    cp === 0x85 ||
    cp === 0xa0 ||
    cp === 0x1680 ||
    (cp >= 0x2000 && cp <= 0x200a) ||
    cp === 0x2028 ||
    cp === 0x2029 ||
    cp === 0x202f ||
    cp === 0x205f ||
    cp === 0x3000
  )
}

/** General category Cc: what Rust's `char::is_control` tests. */
function isControl(cp: number): boolean {
  return cp <= 0x1f || (cp >= 0x7f && cp <= 0x9f)
}

/** `s` without leading and trailing Unicode White_Space (Rust's `str::trim`). */
export function trimText(s: string): string {
  const cps = Array.from(s)
  let start = 0
  let end = cps.length
  while (start < end && isWhitespace(cps[start]!.codePointAt(0)!)) start++
  while (end > start && isWhitespace(cps[end - 1]!.codePointAt(0)!)) end--
  return cps.slice(start, end).join("")
}

/** Number of characters (code points) in `s`, as Rust's `chars().count()`. */
export function charCount(s: string): number {
  let n = 0
  for (const _ of s) n++
  return n
}

/** True when `s` holds a lone surrogate, which no Rust string (and no document) can hold. */
function hasLoneSurrogate(s: string): boolean {
  for (const ch of s) {
    const cp = ch.codePointAt(0)!
    if (cp >= 0xd800 && cp <= 0xdfff) return true
  }
  return false
}

function text(field: string, raw: unknown, max: number): string {
  if (typeof raw !== "string") throw OpError.validation(field, "must be a string")
  if (hasLoneSurrogate(raw)) throw OpError.validation(field, "must be valid Unicode text")
  const t = trimText(raw)
  const n = charCount(t)
  if (n === 0) throw OpError.validation(field, "must not be empty")
  if (n > max) throw OpError.validation(field, `must be at most ${max} characters`)
  for (const ch of t) {
    const cp = ch.codePointAt(0)!
    if (isControl(cp) && ch !== "\n" && ch !== "\t") {
      throw OpError.validation(field, "must not contain control characters")
    }
  }
  return t
}

/** Trims and checks a name: 1–200 characters, no control characters. */
export function validateName(field: string, raw: unknown): string {
  return text(field, raw, LIMITS.NAME_MAX)
}

/** Checks a message text: 1–4000 characters after trimming (field `text`). */
export function validateMessageText(raw: unknown): string {
  return text("text", raw, LIMITS.MESSAGE_MAX)
}

/** Checks an optional approval note (field `message`): ≤ 4000 characters; empty becomes null. */
export function validateNote(raw: string | null | undefined): string | null {
  if (raw === null || raw === undefined) return null
  if (typeof raw !== "string") throw OpError.validation("message", "must be a string")
  const t = trimText(raw)
  if (t === "") return null
  return text("message", t, LIMITS.MESSAGE_MAX)
}

/**
 * Checks a positive amount of minor units within the currency's limit (at most ten integer
 * digits). Amounts are integers of minor units; a fraction is refused rather than rounded.
 */
export function validatePositiveAmount(field: string, amount: unknown, currency: CurrencyCode): number {
  if (typeof amount !== "number" || !Number.isSafeInteger(amount)) {
    throw OpError.validation(field, "must be a whole number of minor units")
  }
  if (amount <= 0) throw OpError.validation(field, "must be greater than zero")
  if (amount > maxMinor(currency)) throw OpError.validation(field, "is too large")
  return amount
}

/** Checks that `value` is one of `values` (Rust takes typed enums; JS callers may pass anything). */
export function validateEnum<T extends string>(field: string, value: unknown, values: readonly T[]): T {
  if (typeof value === "string" && (values as readonly string[]).includes(value)) return value as T
  throw OpError.validation(field, `must be one of ${values.join(", ")}`)
}
