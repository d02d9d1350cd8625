/**
 * The split: what the couple's shared expenses cost per month and what each partner pays, by
 * the same rules as sync-core's `split.rs` (the product's definition), so an app offline shows
 * exactly the numbers the server writes into the month:
 *
 * 1. every active expense normalised to a month (weekly × 52 / 12, yearly / 12), summed exactly
 *    in "per year" minor units and divided by 12 once, rounded half up;
 * 2. income basis when both incomes are entered and add up to more than zero: floors of the
 *    exact proportional shares, the leftover unit to the larger remainder (ties to partner 1);
 * 3. equal halves otherwise, an odd unit to partner 1;
 * 4. always exact: `share_1 + share_2 === monthly_total`, `ratio_1 + ratio_2 === 100`.
 *
 * All arithmetic is BigInt, so no product (total × income reaches ~10^29) loses precision.
 */
import type { CurrencyCode, Frequency, Member, MonthContribution } from "./generated/schema.js"
import { OpError, ShapeError } from "./errors.js"
import { isMonthKey, readCollection, readEntity, readPartnership } from "./read.js"

/** Why a split or a month could not be computed (sync-core's `SplitError`). */
export type SplitErrorKind = "overflow" | "negative_expense" | "negative_income" | "invalid_month"

/** A split that cannot be computed. */
export class SplitError extends Error {
  readonly kind: SplitErrorKind

  constructor(kind: SplitErrorKind, message: string) {
    super(message)
    this.name = "SplitError"
    this.kind = kind
  }
}

/** One active expense as the split sees it. */
export interface SplitExpense {
  /** Amount per occurrence, in minor units (an integer; a bigint beyond 2^53). */
  amount: number | bigint
  frequency: Frequency
}

/** Everything the split depends on; partner 1 and 2 are the members' slots. */
export interface SplitInput {
  /** Active expenses only. */
  expenses: readonly SplitExpense[]
  /** Partner 1's monthly income; null while not entered (which is not the same as zero). */
  income_1: number | bigint | null
  income_2: number | bigint | null
}

/** How the shares were divided. */
export type SplitBasis = "income" | "equal"

/** The result of `calculate`; field names as sync-core's `Split` serializes them. */
export interface Split {
  /** Sum of the raw amounts of weekly expenses (per week). */
  weekly_total: number
  /** Sum of the amounts of monthly expenses. */
  monthly_total_raw: number
  /** Sum of the raw amounts of yearly expenses (per year). */
  yearly_total: number
  /** Everything normalised to one month, rounded once. */
  monthly_total: number
  share_1: number
  share_2: number
  ratio_1: number
  ratio_2: number
  basis: SplitBasis
}

const I64_MAX = (1n << 63n) - 1n
const I64_MIN = -(1n << 63n)

function big(v: number | bigint, what: string): bigint {
  if (typeof v === "bigint") return v
  if (!Number.isSafeInteger(v)) throw new RangeError(`${what} must be an integer of minor units`)
  return BigInt(v)
}

/**
 * A result as a JS number. Beyond i64 is `overflow`, as in sync-core; beyond 2^53 (which no
 * amount within a currency's limit reaches) is `overflow` too, since a number could not hold
 * it exactly.
 */
function toNumber(v: bigint): number {
  if (v > I64_MAX || v < I64_MIN) throw new SplitError("overflow", "the split does not fit in 64-bit minor units")
  if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) {
    throw new SplitError("overflow", "the split does not fit a JS number exactly")
  }
  return Number(v)
}

function perYearFactor(f: Frequency): bigint {
  switch (f) {
    case "weekly":
      return 52n
    case "monthly":
      return 12n
    case "yearly":
      return 1n
  }
}

/** `n / d` rounded half up, for n ≥ 0 and d > 0. */
function divRoundHalfUp(n: bigint, d: bigint): bigint {
  return (n + d / 2n) / d
}

/** Divides `total` by weights: floors, the leftover unit to the larger remainder, ties to the first. */
function apportion(total: bigint, w1: bigint, w2: bigint): [bigint, bigint] {
  const sum = w1 + w2
  const q1 = (total * w1) / sum
  const r1 = (total * w1) % sum
  const q2 = (total * w2) / sum
  const r2 = (total * w2) % sum
  const leftover = total - q1 - q2
  if (leftover === 0n) return [q1, q2]
  return r1 >= r2 ? [q1 + leftover, q2] : [q1, q2 + leftover]
}

/** Computes the split of the couple's active expenses (`split::calculate`). */
export function calculate(input: SplitInput): Split {
  let weekly = 0n
  let monthly = 0n
  let yearly = 0n
  let perYear = 0n
  for (const e of input.expenses) {
    const amount = big(e.amount, "an expense amount")
    if (amount < 0n) throw new SplitError("negative_expense", "an expense amount is negative")
    if (e.frequency === "weekly") weekly += amount
    else if (e.frequency === "monthly") monthly += amount
    else yearly += amount
    perYear += amount * perYearFactor(e.frequency)
  }
  const total = divRoundHalfUp(perYear, 12n)
  // Checked before it is divided, and before the incomes, in sync-core's order.
  const monthlyTotal = toNumber(total)
  const i1 = input.income_1 === null ? null : big(input.income_1, "income_1")
  const i2 = input.income_2 === null ? null : big(input.income_2, "income_2")
  if ((i1 !== null && i1 < 0n) || (i2 !== null && i2 < 0n)) {
    throw new SplitError("negative_income", "an income is negative")
  }
  let shares: [bigint, bigint]
  let ratios: [bigint, bigint]
  let basis: SplitBasis
  if (i1 !== null && i2 !== null && i1 + i2 > 0n) {
    shares = apportion(total, i1, i2)
    ratios = apportion(100n, i1, i2)
    basis = "income"
  } else {
    shares = apportion(total, 1n, 1n)
    ratios = [50n, 50n]
    basis = "equal"
  }
  return {
    weekly_total: toNumber(weekly),
    monthly_total_raw: toNumber(monthly),
    yearly_total: toNumber(yearly),
    monthly_total: monthlyTotal,
    share_1: toNumber(shares[0]),
    share_2: toNumber(shares[1]),
    ratio_1: Number(ratios[0]),
    ratio_2: Number(ratios[1]),
    basis,
  }
}

/**
 * The monthly amount of one expense, for showing next to the item: its exact monthly value
 * rounded half up (half away from zero when negative), as `split::monthly_amount`. The total
 * of a split is rounded once on the sum, so per-item amounts may differ from it by a few units.
 */
export function monthlyAmount(amount: number | bigint, frequency: Frequency): number {
  const perYear = big(amount, "amount") * perYearFactor(frequency)
  const magnitude = divRoundHalfUp(perYear < 0n ? -perYear : perYear, 12n)
  return Number(perYear < 0n ? -magnitude : magnitude)
}

/** What the couple owes for one month (`split::MonthlyContribution`). */
export interface MonthlyContribution {
  month: string
  total_required: number
  amount_1: number
  amount_2: number
}

/** The contribution due for `month` ("YYYY-MM") under `split`. */
export function monthlyContribution(month: string, split: Split): MonthlyContribution {
  if (!isMonthKey(month)) throw new SplitError("invalid_month", `invalid month ${JSON.stringify(month)}: expected YYYY-MM`)
  return { month, total_required: split.monthly_total, amount_1: split.share_1, amount_2: split.share_2 }
}

/** The UTC month ("YYYY-MM") of a Unix-milliseconds instant, clamped to 0000-01 … 9999-12. */
export function monthOf(ms: number): string {
  const d = new Date(ms)
  const year = d.getUTCFullYear()
  if (Number.isNaN(year)) return ms > 0 ? "9999-12" : "0000-01"
  if (year < 0) return "0000-01"
  if (year > 9999) return "9999-12"
  return `${String(year).padStart(4, "0")}-${String(d.getUTCMonth() + 1).padStart(2, "0")}`
}

/** The split as a document has it now (`split_doc::DocSplit`). */
export interface DocSplit {
  currency: CurrencyCode
  /** The members, slot 1 first. */
  members: Member[]
  split: Split
  /** How many active expenses it counts. */
  active_expenses: number
}

/**
 * The split of a document: its active expenses (those that read; a faulty client's entity is
 * not counted) and the members' incomes by slot (`split_doc::document_split`).
 */
export function documentSplit(doc: object): DocSplit {
  let currency: CurrencyCode
  let members: Member[]
  try {
    currency = readPartnership(doc).currency
    const r = readCollection(doc, "members")
    const bad = r.malformed[0]
    if (bad !== undefined) throw new ShapeError(bad.path, bad.reason)
    members = r.items.sort((a, b) => a.slot - b.slot)
  } catch (e) {
    if (e instanceof ShapeError) throw new OpError("shape", e.message)
    throw e
  }
  const active = readCollection(doc, "expenses").items.filter((e) => e.status === "active")
  const income = (slot: number) => members.find((m) => m.slot === slot)?.income ?? null
  let split: Split
  try {
    split = calculate({
      expenses: active.map((e) => ({ amount: e.amount, frequency: e.frequency })),
      income_1: income(1),
      income_2: income(2),
    })
  } catch (e) {
    if (e instanceof SplitError) {
      throw new OpError("shape", e.kind === "overflow" ? "expenses: the split overflows" : "expenses: the split cannot be computed")
    }
    throw e
  }
  return { currency, members, split, active_expenses: active.length }
}

/** What `month` should hold when written from the current split: each member's amount, nothing paid. */
export function monthFromSplit(doc: object, month: string): MonthContribution {
  const { members, split } = documentSplit(doc)
  const due = monthlyContribution(month, split)
  const amounts: Record<string, number> = {}
  const paid: Record<string, number | null> = {}
  for (const m of members) {
    amounts[m.user_id] = m.slot === 1 ? due.amount_1 : due.amount_2
    paid[m.user_id] = null
  }
  return { month, total_required: due.total_required, amounts, paid }
}

/**
 * The month as an app should show it: the document's month when the server has written it,
 * else what the server will write from the current split (`split_doc::current_month`). `month`
 * is "YYYY-MM" or a Unix-milliseconds instant (its UTC month).
 */
export function currentMonth(doc: object, month: string | number): MonthContribution {
  const key = typeof month === "number" ? monthOf(month) : month
  try {
    const existing = readEntity(doc, "contributions", key)
    if (existing !== null) return existing
  } catch (e) {
    if (e instanceof ShapeError) throw new OpError("shape", e.message)
    throw e
  }
  return monthFromSplit(doc, key)
}
