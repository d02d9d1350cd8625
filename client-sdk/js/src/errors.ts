/**
 * Why an operation was refused: the same kinds as sync-core's `ops::OpError`, so an app shows
 * the same message whether the refusal came from this package offline or from the server.
 * Nothing was written when an operation throws one (the automerge change is rolled back, and
 * every check runs before the first write anyway).
 */
export type OpErrorKind =
  | "validation"
  | "not_found"
  | "forbidden"
  | "conflict"
  | "not_member"
  | "inactive"
  /** The document does not have the shape schema 1 requires (a faulty client wrote it). */
  | "shape"

/** A refused operation. `field` names the input field for `validation`. */
export class OpError extends Error {
  readonly kind: OpErrorKind
  readonly field: string | undefined

  constructor(kind: OpErrorKind, message: string, field?: string) {
    super(field === undefined ? message : `${field}: ${message}`)
    this.name = "OpError"
    this.kind = kind
    this.field = field
  }

  /** Bad input, naming the field (`name`, `amount`, ...). */
  static validation(field: string, message: string): OpError {
    return new OpError("validation", message, field)
  }
}

/**
 * A value in the document that does not have the shape schema 1 requires, like sync-core's
 * `read::ShapeError`: where (`expenses.<id>.amount`) and what is wrong.
 */
export interface ShapeIssue {
  path: string
  reason: string
}

/** Thrown by the single-entity readers; `readDocument` lists these in `malformed` instead. */
export class ShapeError extends Error implements ShapeIssue {
  readonly path: string
  readonly reason: string

  constructor(path: string, reason: string) {
    super(`${path}: ${reason}`)
    this.name = "ShapeError"
    this.path = path
    this.reason = reason
  }
}

/** A whole document that cannot be read: a newer schema, or an unreadable `partnership`. */
export class DocumentError extends Error {
  readonly kind: "unsupported_schema" | "shape"
  /** The schema version found, for `unsupported_schema`. */
  readonly found: number | undefined

  constructor(kind: "unsupported_schema" | "shape", message: string, found?: number) {
    super(message)
    this.name = "DocumentError"
    this.kind = kind
    this.found = found
  }
}
