/**
 * Exact money, as sync-core's `money.rs`: amounts are integer minor units of the partnership
 * currency (cents for USD, yen for JPY, fils for KWD). No floating point anywhere: decimal
 * strings are converted digit by digit with BigInt, so `0.1 + 0.2` problems cannot occur.
 */
import { CURRENCIES, type CurrencyCode } from "./generated/schema.js"

/** Why an amount or a currency code was refused (sync-core's `MoneyError`, plus `invalid`). */
export type MoneyErrorKind =
  /** Not a plain decimal number (`12`, `12.34`, `-1.5`). */
  | "invalid"
  | "unknown_currency"
  /** More decimals than the currency's minor unit: refused, never rounded. */
  | "too_many_decimals"
  /** 10^10 major units or more. */
  | "too_large"
  | "not_positive"
  | "negative"

/** A refused amount or currency code. */
export class MoneyError extends Error {
  readonly kind: MoneyErrorKind

  constructor(kind: MoneyErrorKind, message: string) {
    super(message)
    this.name = "MoneyError"
    this.kind = kind
  }
}

/** Largest number of integer digits an amount may have (the `DECIMAL(12,2)`-scale columns). */
const MAX_INTEGER_DIGITS = 10

/** True for a code sync-core accepts (canonical upper case, in its ISO 4217 table). */
export function isCurrencyCode(code: string): code is CurrencyCode {
  return Object.prototype.hasOwnProperty.call(CURRENCIES, code)
}

/** The currency's exponent: decimals of its minor unit (USD 2, JPY 0, KWD 3). */
export function currencyExponent(code: string): number {
  if (!isCurrencyCode(code)) throw new MoneyError("unknown_currency", `unknown currency code ${JSON.stringify(code)}`)
  return CURRENCIES[code]
}

function exponentOf(currency: string | number): number {
  if (typeof currency === "number") {
    if (!Number.isInteger(currency) || currency < 0 || currency > 18) throw new RangeError("exponent must be 0–18")
    return currency
  }
  return currencyExponent(currency)
}

/** Largest allowed absolute amount in minor units: 10^10 major units less one minor unit. */
export function maxMinor(currency: string | number): number {
  // At most 10^14 - 1 for the currencies in the table: exact as a JS number.
  return Number(10n ** BigInt(MAX_INTEGER_DIGITS + exponentOf(currency)) - 1n)
}

/**
 * Minor units as the currency's usual decimal (scale = exponent), as sync-core's
 * `Currency::from_minor(..).to_string()`: 1234 USD → "12.34", 5 → "0.05", -750 → "-7.50",
 * 500 JPY → "500", 1500 KWD → "1.500".
 */
export function formatMinor(minor: number | bigint, currency: string | number): string {
  if (typeof minor === "number" && !Number.isSafeInteger(minor)) {
    throw new RangeError("minor units must be a safe integer (use a bigint beyond 2^53)")
  }
  const exp = exponentOf(currency)
  const value = BigInt(minor)
  const negative = value < 0n
  const digits = (negative ? -value : value).toString().padStart(exp + 1, "0")
  const body = exp === 0 ? digits : `${digits.slice(0, -exp)}.${digits.slice(-exp)}`
  return negative ? `-${body}` : body
}

const DECIMAL = /^([+-])?(\d+)(?:\.(\d+))?$/

/**
 * A decimal string to minor units, exactly (`Currency::to_minor`): trailing zeros do not count
 * as decimals (`150.000` JPY is 150), more decimals than the exponent are refused
 * (`too_many_decimals`, checked first), and 10^10 major units or more are `too_large`. Zero and
 * negative amounts convert; use `toMinorPositive` / `toMinorNonNegative` for user input.
 */
export function toMinor(text: string, currency: string | number): number {
  const exp = exponentOf(currency)
  const m = DECIMAL.exec(text)
  if (m === null) throw new MoneyError("invalid", `not a decimal amount: ${JSON.stringify(text)}`)
  const sign = m[1] === "-" ? -1n : 1n
  const whole = m[2]!
  const fraction = (m[3] ?? "").replace(/0+$/, "")
  if (fraction.length > exp) {
    throw new MoneyError("too_many_decimals", `too many decimals: this currency allows at most ${exp}`)
  }
  const magnitude = BigInt(whole + fraction.padEnd(exp, "0"))
  if (magnitude > BigInt(maxMinor(exp))) {
    throw new MoneyError("too_large", "amount too large: at most 10 integer digits are allowed")
  }
  return Number(sign * magnitude)
}

/** `toMinor`, refusing zero and negatives: expenses, goal targets, contributions, thresholds. */
export function toMinorPositive(text: string, currency: string | number): number {
  const minor = toMinor(text, currency)
  if (minor <= 0) throw new MoneyError("not_positive", "amount must be greater than zero")
  return minor
}

/** `toMinor`, refusing negatives and allowing zero: incomes and saved amounts. */
export function toMinorNonNegative(text: string, currency: string | number): number {
  const minor = toMinor(text, currency)
  if (minor < 0) throw new MoneyError("negative", "amount must not be negative")
  return minor
}
