/**
 * The signed-in session: access tokens refreshed before they expire, refresh tokens rotated and
 * kept in a {@link TokenStore}, and a clean end when the server refuses a refresh.
 *
 * It behaves like the Rust SDK (`client-sdk/src/session.rs`):
 *
 * - Refresh tokens are single-use. Each refresh answers a new pair and spends the old refresh
 *   token; presenting a spent one makes the server revoke the whole login ("family"), since it
 *   looks like a stolen token. So refreshes are serialised here — one at a time, however many
 *   requests want a token at once — and the new pair is written to the store before anything
 *   uses it, so a crash cannot leave the app holding only a spent token.
 * - A refresh the server refuses (a 4xx: the token was spent, revoked by a reuse elsewhere, by a
 *   password change or a logout, or expired) ends the session: the tokens are forgotten, every
 *   `onSignedOut` listener hears it once, and later calls fail with {@link SignedOutError}
 *   without touching the network. Nothing retries a refused refresh. A refresh that got no
 *   answer (offline, 5xx) keeps the session; the next call tries again.
 */

import type { components } from "./generated/openapi.js"
import { ApiError, type AuthProvider, RestClient } from "./rest.js"

/** What a session needs to survive an app restart. */
export interface StoredSession {
  accessToken: string
  refreshToken: string
  /** When the access token expires, unix milliseconds on the session's clock. */
  accessExpiresAt: number
  /** The signed-in user's id, when known. */
  userId?: string
  /** The partnership document's `automerge:` URL once it was asked for, so the app opens it offline. */
  documentUrl?: string
}

/**
 * Where the session's tokens live. Methods may be synchronous or return promises.
 *
 * The default, {@link MemoryTokenStore}, forgets everything when the app closes. To keep the user
 * signed in across restarts use {@link KeyValueTokenStore} over `window.localStorage` (web) or
 * React Native's `AsyncStorage` — or, for refresh tokens at rest on a phone, a keychain-backed
 * store such as `expo-secure-store` with the same three methods.
 */
export interface TokenStore {
  load(): Promise<StoredSession | null> | StoredSession | null
  save(session: StoredSession): Promise<void> | void
  clear(): Promise<void> | void
}

/** Keeps the session in memory only (the default; tests, or apps that sign in every launch). */
export class MemoryTokenStore implements TokenStore {
  #value: StoredSession | null = null
  load(): StoredSession | null {
    return this.#value === null ? null : { ...this.#value }
  }
  save(session: StoredSession): void {
    this.#value = { ...session }
  }
  clear(): void {
    this.#value = null
  }
}

/** The `getItem`/`setItem`/`removeItem` trio of `localStorage`, `AsyncStorage` and their kin. */
export interface StringStore {
  getItem(key: string): Promise<string | null | undefined> | string | null | undefined
  setItem(key: string, value: string): Promise<void> | void
  removeItem(key: string): Promise<void> | void
}

/** Keeps the session as one JSON entry of a string store (`localStorage`, `AsyncStorage`). */
export class KeyValueTokenStore implements TokenStore {
  readonly #store: StringStore
  readonly #key: string
  constructor(store: StringStore, key = "splitsave.session") {
    this.#store = store
    this.#key = key
  }
  async load(): Promise<StoredSession | null> {
    const raw = await this.#store.getItem(this.#key)
    if (raw === null || raw === undefined) return null
    try {
      const value = JSON.parse(raw) as Partial<StoredSession>
      if (typeof value.accessToken !== "string" || typeof value.refreshToken !== "string") return null
      return { accessExpiresAt: 0, ...value } as StoredSession
    } catch {
      // A corrupt entry is as good as none: the user signs in again.
      return null
    }
  }
  async save(session: StoredSession): Promise<void> {
    await this.#store.setItem(this.#key, JSON.stringify(session))
  }
  async clear(): Promise<void> {
    await this.#store.removeItem(this.#key)
  }
}

/** Why the session ended. */
export type SignedOutReason =
  /** The app called `logout()`. */
  | "logout"
  /** The server refused the refresh token (spent, revoked, expired): sign in again. */
  | "refresh_refused"

export interface SignedOutEvent {
  reason: SignedOutReason
  /** The server's refusal, for `refresh_refused`. */
  error?: ApiError
}

/** There is no session (never signed in, signed out, or the server ended it). */
export class SignedOutError extends Error {
  override readonly name = "SignedOutError"
  readonly reason: SignedOutReason | "not_signed_in"
  constructor(reason: SignedOutReason | "not_signed_in", options?: { cause?: unknown }) {
    super(reason === "not_signed_in" ? "not signed in" : `signed out (${reason})`, options)
    this.reason = reason
  }
}

export type RegisterRequest = components["schemas"]["RegisterRequest"]
export type User = components["schemas"]["UserView"]

/** How long before its expiry an access token is replaced: a request or a connection never starts with a token about to lapse. */
export const DEFAULT_REFRESH_MARGIN_MS = 60_000

export interface SessionOptions {
  baseUrl: string
  tokenStore?: TokenStore
  /** The `fetch` used for auth calls (and by default for {@link Session.rest}). */
  fetch?: typeof fetch
  /** See {@link DEFAULT_REFRESH_MARGIN_MS}. */
  refreshMarginMs?: number
  /** The clock, unix milliseconds; tests move it forward to make tokens look old. */
  now?: () => number
}

type TokenAnswer = { access_token: string; refresh_token: string; expires_in: number }

/** See the module comment. */
export class Session implements AuthProvider {
  /** Anonymous calls: register, login, refresh, logout. */
  readonly #anonymous: RestClient
  /** Calls signed with this session's tokens. */
  readonly rest: RestClient
  readonly #store: TokenStore
  readonly #margin: number
  readonly now: () => number
  /** The session as last loaded or saved; `undefined` until loaded from the store. */
  #current: StoredSession | null | undefined
  /** Serialises token reads and refreshes (see the module comment). */
  #queue: Promise<unknown> = Promise.resolve()
  readonly #listeners = new Set<(event: SignedOutEvent) => void>()

  constructor(options: SessionOptions) {
    this.#anonymous = new RestClient({ baseUrl: options.baseUrl, fetch: options.fetch })
    this.rest = this.#anonymous.withAuth(this)
    this.#store = options.tokenStore ?? new MemoryTokenStore()
    this.#margin = options.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS
    this.now = options.now ?? Date.now
  }

  /** Whether there are tokens (loaded from the store on first use). */
  async isSignedIn(): Promise<boolean> {
    return (await this.#load()) !== null
  }

  /** The stored session (tokens included), or null. */
  async stored(): Promise<StoredSession | null> {
    const s = await this.#load()
    return s === null ? null : { ...s }
  }

  /** Creates the account and signs in. */
  async register(request: RegisterRequest): Promise<User> {
    const answer = await this.#anonymous.post("/api/auth/register", { body: request })
    await this.#begin(answer, answer.user.id)
    return answer.user
  }

  /** Signs in with email and password. */
  async login(email: string, password: string): Promise<User> {
    const answer = await this.#anonymous.post("/api/auth/login", { body: { email, password } })
    await this.#begin(answer, answer.user.id)
    return answer.user
  }

  /**
   * Revokes the refresh token on the server and forgets the tokens locally. The local state is
   * signed out even when the server cannot be reached; that error is then rethrown, since the
   * server-side session lives on until its refresh token expires.
   */
  async logout(): Promise<void> {
    const session = await this.#exclusive(() => this.#load())
    if (session === null) return
    let failure: unknown
    try {
      await this.#anonymous.post("/api/auth/logout", { body: { refresh_token: session.refreshToken } })
    } catch (err) {
      failure = err
    }
    await this.#exclusive(() => this.#end({ reason: "logout" }))
    if (failure !== undefined) throw failure
  }

  /** Calls `listener` when the session ends (logout or a refused refresh); returns the unsubscribe. */
  onSignedOut(listener: (event: SignedOutEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  /** A token with more than the refresh margin left, refreshing first if needed. */
  accessToken(): Promise<string> {
    return this.#exclusive(async () => {
      const s = await this.#required()
      if (s.accessExpiresAt - this.now() > this.#margin) return s.accessToken
      return this.#refresh(s)
    })
  }

  /** The server refused `token`: refreshes unless another caller already replaced it. */
  tokenRejected(token: string): Promise<string> {
    return this.#exclusive(async () => {
      const s = await this.#required()
      if (s.accessToken !== token) return s.accessToken
      return this.#refresh(s)
    })
  }

  /** Refreshes now, whatever the token's age (e.g. after the app was suspended for long). */
  refresh(): Promise<string> {
    return this.#exclusive(async () => this.#refresh(await this.#required()))
  }

  /**
   * How long `token` may still be used for a long-lived connection before it should be
   * replaced (when {@link accessToken} would refresh it), or undefined if it is not current.
   */
  renewAfterMs(token: string): number | undefined {
    const s = this.#current
    if (s === null || s === undefined || s.accessToken !== token) return undefined
    return s.accessExpiresAt - this.#margin - this.now()
  }

  /** Remembers the partnership document URL with the session (for opening it offline). */
  async rememberDocumentUrl(documentUrl: string): Promise<void> {
    await this.#exclusive(async () => {
      const s = await this.#load()
      if (s === null || s.documentUrl === documentUrl) return
      await this.#save({ ...s, documentUrl })
    })
  }

  async #begin(answer: TokenAnswer, userId: string): Promise<void> {
    await this.#exclusive(() =>
      this.#save({
        accessToken: answer.access_token,
        refreshToken: answer.refresh_token,
        accessExpiresAt: this.now() + answer.expires_in * 1000,
        userId,
      })
    )
  }

  async #refresh(s: StoredSession): Promise<string> {
    let answer: TokenAnswer
    try {
      answer = await this.#anonymous.post("/api/auth/refresh", { body: { refresh_token: s.refreshToken } })
    } catch (err) {
      if (err instanceof ApiError && refusesSession(err)) {
        await this.#end({ reason: "refresh_refused", error: err })
        throw new SignedOutError("refresh_refused", { cause: err })
      }
      throw err
    }
    // Stored before it is used: the old refresh token is spent from now on.
    await this.#save({
      ...s,
      accessToken: answer.access_token,
      refreshToken: answer.refresh_token,
      accessExpiresAt: this.now() + answer.expires_in * 1000,
    })
    return answer.access_token
  }

  async #required(): Promise<StoredSession> {
    const s = await this.#load()
    if (s === null) throw new SignedOutError("not_signed_in")
    return s
  }

  async #load(): Promise<StoredSession | null> {
    if (this.#current === undefined) this.#current = (await this.#store.load()) ?? null
    return this.#current
  }

  async #save(s: StoredSession): Promise<void> {
    await this.#store.save(s)
    this.#current = s
  }

  async #end(event: SignedOutEvent): Promise<void> {
    this.#current = null
    await this.#store.clear()
    for (const listener of [...this.#listeners]) {
      try {
        listener(event)
      } catch (err) {
        // A failing listener must not keep the others from hearing it.
        queueMicrotask(() => {
          throw err
        })
      }
    }
  }

  /** Runs `task` after every earlier one finished (a promise-chain mutex). */
  #exclusive<T>(task: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(task)
    this.#queue = run.catch(() => undefined)
    return run
  }
}

/**
 * Whether a refused refresh means the session is over: any 4xx but a rate limit or a timeout,
 * which say "later", not "never".
 */
function refusesSession(err: ApiError): boolean {
  return err.status >= 400 && err.status < 500 && err.status !== 408 && err.status !== 429
}
