// GENERATED from sync-core (splitsave_sync_core::fields, enums, ids, schema, policy, money)
// by sync-core/tests/integration/js_schema.rs. DO NOT EDIT: a hand edit fails that test.
// Regenerate from the repository root with:
//   SPLITSAVE_UPDATE_GENERATED=1 cargo test -p splitsave-sync-core --test integration js_schema

/** The schema version this package writes and fully understands. */
export const SCHEMA_VERSION = 1

/** UUID namespace of derived ids (v5 of the parts joined by U+001F), as `EntityId::derived`. */
export const DERIVED_NAMESPACE = "5b1e7a3c-9d42-4f08-a16e-2c779013d45f"

/** Limits on text fields, in characters (Unicode scalar values). */
export const LIMITS = {
  NAME_MAX: 200,
  MESSAGE_MAX: 4000,
} as const

/** The default approval threshold in major units of the partnership currency. */
export const DEFAULT_APPROVAL_THRESHOLD_MAJOR = 100

// Vocabularies: stored as scalar strings.

export const CATEGORY_VALUES = ["housing", "utilities", "groceries", "transport", "insurance", "health", "childcare", "subscriptions", "dining", "entertainment", "debt", "pets", "other"] as const
export type Category = (typeof CATEGORY_VALUES)[number]
export const FREQUENCY_VALUES = ["weekly", "monthly", "yearly"] as const
export type Frequency = (typeof FREQUENCY_VALUES)[number]
export const ITEM_STATUS_VALUES = ["active", "pending_approval", "archived"] as const
export type ItemStatus = (typeof ITEM_STATUS_VALUES)[number]
export const GOAL_TYPE_VALUES = ["emergency_fund", "vacation", "home", "car", "education", "retirement", "wedding", "other"] as const
export type GoalType = (typeof GOAL_TYPE_VALUES)[number]
export const PRIORITY_VALUES = ["low", "medium", "high"] as const
export type Priority = (typeof PRIORITY_VALUES)[number]
export const APPROVAL_STATUS_VALUES = ["pending", "approved", "declined"] as const
export type ApprovalStatus = (typeof APPROVAL_STATUS_VALUES)[number]
export const REQUEST_TYPE_VALUES = ["expense_add", "expense_edit", "goal_add", "goal_edit"] as const
export type RequestType = (typeof REQUEST_TYPE_VALUES)[number]
export const MESSAGE_TYPE_VALUES = ["text", "approval"] as const
export type MessageType = (typeof MESSAGE_TYPE_VALUES)[number]
export const PARTNERSHIP_STATUS_VALUES = ["pending", "active", "paused"] as const
export type PartnershipStatus = (typeof PARTNERSHIP_STATUS_VALUES)[number]

/** Every vocabulary by its name. */
export const VOCABULARIES = {
  category: CATEGORY_VALUES,
  frequency: FREQUENCY_VALUES,
  item_status: ITEM_STATUS_VALUES,
  goal_type: GOAL_TYPE_VALUES,
  priority: PRIORITY_VALUES,
  approval_status: APPROVAL_STATUS_VALUES,
  request_type: REQUEST_TYPE_VALUES,
  message_type: MESSAGE_TYPE_VALUES,
  partnership_status: PARTNERSHIP_STATUS_VALUES,
} as const
export type VocabularyName = keyof typeof VOCABULARIES

/** Every ISO 4217 currency sync-core accepts, with its exponent (decimals of the minor unit). */
export const CURRENCIES = {
  AED: 2,
  AFN: 2,
  ALL: 2,
  AMD: 2,
  ANG: 2,
  AOA: 2,
  ARS: 2,
  AUD: 2,
  AWG: 2,
  AZN: 2,
  BAM: 2,
  BBD: 2,
  BDT: 2,
  BGN: 2,
  BHD: 3,
  BIF: 0,
  BMD: 2,
  BND: 2,
  BOB: 2,
  BOV: 2,
  BRL: 2,
  BSD: 2,
  BTN: 2,
  BWP: 2,
  BYN: 2,
  BZD: 2,
  CAD: 2,
  CDF: 2,
  CHE: 2,
  CHF: 2,
  CHW: 2,
  CLF: 4,
  CLP: 0,
  CNY: 2,
  COP: 2,
  COU: 2,
  CRC: 2,
  CUC: 2,
  CUP: 2,
  CVE: 2,
  CZK: 2,
  DJF: 0,
  DKK: 2,
  DOP: 2,
  DZD: 2,
  EGP: 2,
  ERN: 2,
  ETB: 2,
  EUR: 2,
  FJD: 2,
  FKP: 2,
  GBP: 2,
  GEL: 2,
  GHS: 2,
  GIP: 2,
  GMD: 2,
  GNF: 0,
  GTQ: 2,
  GYD: 2,
  HKD: 2,
  HNL: 2,
  HRK: 2,
  HTG: 2,
  HUF: 2,
  IDR: 2,
  ILS: 2,
  INR: 2,
  IQD: 3,
  IRR: 2,
  ISK: 0,
  JMD: 2,
  JOD: 3,
  JPY: 0,
  KES: 2,
  KGS: 2,
  KHR: 2,
  KMF: 0,
  KPW: 2,
  KRW: 0,
  KWD: 3,
  KYD: 2,
  KZT: 2,
  LAK: 2,
  LBP: 2,
  LKR: 2,
  LRD: 2,
  LSL: 2,
  LYD: 3,
  MAD: 2,
  MDL: 2,
  MGA: 2,
  MKD: 2,
  MMK: 2,
  MNT: 2,
  MOP: 2,
  MRU: 2,
  MUR: 2,
  MVR: 2,
  MWK: 2,
  MXN: 2,
  MXV: 2,
  MYR: 2,
  MZN: 2,
  NAD: 2,
  NGN: 2,
  NIO: 2,
  NOK: 2,
  NPR: 2,
  NZD: 2,
  OMR: 3,
  PAB: 2,
  PEN: 2,
  PGK: 2,
  PHP: 2,
  PKR: 2,
  PLN: 2,
  PYG: 0,
  QAR: 2,
  RON: 2,
  RSD: 2,
  RUB: 2,
  RWF: 0,
  SAR: 2,
  SBD: 2,
  SCR: 2,
  SDG: 2,
  SEK: 2,
  SGD: 2,
  SHP: 2,
  SLE: 2,
  SLL: 2,
  SOS: 2,
  SRD: 2,
  SSP: 2,
  STN: 2,
  SVC: 2,
  SYP: 2,
  SZL: 2,
  THB: 2,
  TJS: 2,
  TMT: 2,
  TND: 3,
  TOP: 2,
  TRY: 2,
  TTD: 2,
  TWD: 2,
  TZS: 2,
  UAH: 2,
  UGX: 0,
  USD: 2,
  USN: 2,
  UYI: 0,
  UYU: 2,
  UYW: 4,
  UZS: 2,
  VED: 2,
  VES: 2,
  VND: 0,
  VUV: 0,
  WST: 2,
  XAF: 0,
  XCD: 2,
  XCG: 2,
  XOF: 0,
  XPF: 0,
  YER: 2,
  ZAR: 2,
  ZMW: 2,
  ZWG: 2,
  ZWL: 2,
} as const
export type CurrencyCode = keyof typeof CURRENCIES

// Entities as read: plain JS values (strings, numbers of minor units and Unix
// milliseconds, booleans, null where nullable).

/** `approvals.<id>.request_data`: the proposed fields, each present only when proposed. */
export interface RequestData {
  name?: string
  amount?: number
  category?: Category
  frequency?: Frequency
  target_amount?: number
  goal_type?: GoalType
  priority?: Priority
}

/** `partnership`. */
export interface Partnership {
  id: string
  currency: CurrencyCode
  approval_threshold: number
  status: PartnershipStatus
}

/** `members.<user_id>`. */
export interface Member {
  user_id: string
  name: string
  income: number | null
  slot: number
}

/** `expenses.<id>`. */
export interface Expense {
  id: string
  name: string
  amount: number
  category: Category
  frequency: Frequency
  added_by: string
  status: ItemStatus
  created_at: number
  updated_at: number
}

/** `goals.<id>`. */
export interface Goal {
  id: string
  name: string
  target_amount: number
  saved_amount: number
  goal_type: GoalType
  priority: Priority
  added_by: string
  status: ItemStatus
  created_at: number
  updated_at: number
}

/** `goal_contributions.<id>`. */
export interface GoalContribution {
  id: string
  goal_id: string
  user_id: string
  amount: number
  created_at: number
}

/** `approvals.<id>`. */
export interface Approval {
  id: string
  requested_by: string
  request_type: RequestType
  target_id: string
  request_data: RequestData
  message: string | null
  status: ApprovalStatus
  responded_by: string | null
  responded_at: number | null
  created_at: number
}

/** `messages.<id>`. */
export interface Message {
  id: string
  sender_id: string
  text: string
  message_type: MessageType
  read_by_recipient: boolean
  created_at: number
}

/** `contributions.<month>`. */
export interface MonthContribution {
  month: string
  total_required: number
  amounts: Record<string, number>
  paid: Record<string, number | null>
}

/** What a field holds and how it is stored (`fields::FieldType`). */
export type FieldSpec =
  | { kind: "text"; max: number; nullable?: boolean }
  | { kind: "id"; nullable?: boolean }
  | { kind: "currency"; nullable?: boolean }
  | { kind: "minor_units"; nullable?: boolean }
  | { kind: "time"; nullable?: boolean }
  | { kind: "counter"; nullable?: boolean }
  | { kind: "bool"; nullable?: boolean }
  | { kind: "int"; nullable?: boolean }
  | { kind: "enum"; vocabulary: VocabularyName; nullable?: boolean }
  | { kind: "per_user"; value: FieldSpec; nullable?: boolean }
  | { kind: "map"; fields: Readonly<Record<string, FieldSpec>>; nullable?: boolean }

/** How a string field is stored: free text as Text, ids and enums as scalar strings. */
export type StringKind = "text" | "scalar"

/** The stored type of every field of every table, keyed by the table's document key. */
export const FIELDS = {
  partnership: {
    id: { kind: "id" },
    currency: { kind: "currency" },
    approval_threshold: { kind: "minor_units" },
    status: { kind: "enum", vocabulary: "partnership_status" },
  },
  members: {
    name: { kind: "text", max: 200 },
    income: { kind: "minor_units", nullable: true },
    slot: { kind: "int" },
  },
  expenses: {
    name: { kind: "text", max: 200 },
    amount: { kind: "minor_units" },
    category: { kind: "enum", vocabulary: "category" },
    frequency: { kind: "enum", vocabulary: "frequency" },
    added_by: { kind: "id" },
    status: { kind: "enum", vocabulary: "item_status" },
    created_at: { kind: "time" },
    updated_at: { kind: "time" },
  },
  goals: {
    name: { kind: "text", max: 200 },
    target_amount: { kind: "minor_units" },
    saved_amount: { kind: "counter" },
    goal_type: { kind: "enum", vocabulary: "goal_type" },
    priority: { kind: "enum", vocabulary: "priority" },
    added_by: { kind: "id" },
    status: { kind: "enum", vocabulary: "item_status" },
    created_at: { kind: "time" },
    updated_at: { kind: "time" },
  },
  goal_contributions: {
    goal_id: { kind: "id" },
    user_id: { kind: "id" },
    amount: { kind: "minor_units" },
    created_at: { kind: "time" },
  },
  approvals: {
    requested_by: { kind: "id" },
    request_type: { kind: "enum", vocabulary: "request_type" },
    target_id: { kind: "id" },
    request_data: {
      kind: "map",
      fields: {
        name: { kind: "text", max: 200 },
        amount: { kind: "minor_units" },
        category: { kind: "enum", vocabulary: "category" },
        frequency: { kind: "enum", vocabulary: "frequency" },
        target_amount: { kind: "minor_units" },
        goal_type: { kind: "enum", vocabulary: "goal_type" },
        priority: { kind: "enum", vocabulary: "priority" },
      },
    },
    message: { kind: "text", max: 4000, nullable: true },
    status: { kind: "enum", vocabulary: "approval_status" },
    responded_by: { kind: "id", nullable: true },
    responded_at: { kind: "time", nullable: true },
    created_at: { kind: "time" },
  },
  messages: {
    sender_id: { kind: "id" },
    text: { kind: "text", max: 4000 },
    message_type: { kind: "enum", vocabulary: "message_type" },
    read_by_recipient: { kind: "bool" },
    created_at: { kind: "time" },
  },
  contributions: {
    total_required: { kind: "minor_units" },
    amounts: { kind: "per_user", value: { kind: "minor_units" } },
    paid: { kind: "per_user", value: { kind: "time", nullable: true } },
  },
} as const satisfies Readonly<Record<string, Readonly<Record<string, FieldSpec>>>>
export type TableName = keyof typeof FIELDS

/** The entity collections (maps keyed by id, user id or month) and the key each entity is read with. */
export const COLLECTION_KEYS = {
  members: "user_id",
  expenses: "id",
  goals: "id",
  goal_contributions: "id",
  approvals: "id",
  messages: "id",
  contributions: "month",
} as const
export type CollectionName = keyof typeof COLLECTION_KEYS
