/**
 * `SplitSaveClient`: the session, the REST client and the sync connection of one app, wired
 * together. Each piece is usable on its own (session.ts, rest.ts, connection.ts); this only
 * decides the order of things: sign in, ask the server for the partnership document once (and
 * remember its URL, so the next launch opens it offline), sync it, and stop syncing when the
 * session ends.
 */

import type { AutomergeUrl, DocHandle, StorageAdapterInterface, UrlHeads } from "@automerge/automerge-repo"

import { DEFAULT_SYNC_TIMEOUT_MS, SyncConnection, type SyncState, syncUrlFor } from "./connection.js"
import { ApiError, NetworkError, type RestClient } from "./rest.js"
import {
  type RegisterRequest,
  Session,
  type SignedOutEvent,
  SignedOutError,
  type TokenStore,
  type User,
} from "./session.js"

export interface SplitSaveClientOptions {
  /** The server, e.g. `https://splitsave.example.com`. */
  baseUrl: string
  /** Where the document persists (see storage.ts); default in memory only. */
  storage?: StorageAdapterInterface
  /** Where the tokens persist (see session.ts); default in memory only. */
  tokenStore?: TokenStore
  /** Delay between sync reconnection attempts, default 5 s. */
  retryIntervalMs?: number
  /** Failures the sync connection recovers from by itself (for logging). */
  onSyncError?: (error: unknown) => void
  /** The `fetch` for REST calls; default the global one. */
  fetch?: typeof fetch
  /** See {@link Session}: refresh margin and clock (tests move the clock). */
  refreshMarginMs?: number
  now?: () => number
}

/** The user has no active or paused partnership yet (invite or accept one first). */
export class NoPartnershipError extends Error {
  override readonly name = "NoPartnershipError"
  constructor() {
    super("no partnership with a document yet: invite your partner or accept their invitation")
  }
}

/** See the module comment. */
export class SplitSaveClient {
  readonly session: Session
  /** Typed REST calls, signed with the session's tokens. */
  readonly rest: RestClient
  readonly #options: SplitSaveClientOptions
  #connection: SyncConnection | undefined
  #handle: DocHandle<unknown> | undefined
  /** The user whose session the connection syncs for. */
  #connectionUser: string | undefined
  #wantOffline = false

  constructor(options: SplitSaveClientOptions) {
    this.#options = options
    this.session = new Session({
      baseUrl: options.baseUrl,
      tokenStore: options.tokenStore,
      fetch: options.fetch,
      refreshMarginMs: options.refreshMarginMs,
      now: options.now,
    })
    this.rest = this.session.rest
    // A session the server ended syncs no further; the local document stays readable.
    this.session.onSignedOut(() => this.#connection?.goOffline())
  }

  async register(request: RegisterRequest): Promise<User> {
    return this.#signedIn(await this.session.register(request))
  }

  async login(email: string, password: string): Promise<User> {
    return this.#signedIn(await this.session.login(email, password))
  }

  /**
   * After a sign-in: the connection a refused refresh left offline syncs again for the same
   * user; another user's is closed (their document is not this user's).
   */
  async #signedIn(user: User): Promise<User> {
    if (this.#connection !== undefined) {
      if (this.#connectionUser !== user.id) await this.#closeConnection()
      else if (!this.#wantOffline) this.#connection.goOnline()
    }
    return user
  }

  /** Closes the sync connection and ends the session (see `Session.logout`). */
  async logout(): Promise<void> {
    await this.#closeConnection()
    await this.session.logout()
  }

  /** Calls `listener` when the session ends; returns the unsubscribe. */
  onSignedOut(listener: (event: SignedOutEvent) => void): () => void {
    return this.session.onSignedOut(listener)
  }

  /**
   * The partnership document's handle, synced with the server from now on (unless offline).
   * The URL comes from `GET /api/partnerships/current` and is remembered with the session; when
   * the server cannot be reached, the remembered URL and local storage open it offline.
   */
  async open<T = Record<string, unknown>>(options: { timeoutMs?: number } = {}): Promise<DocHandle<T>> {
    if (this.#handle !== undefined) return this.#handle as DocHandle<T>
    const url = await this.documentUrl()
    const connection = this.#connect((await this.session.stored())?.userId)
    const handle = await connection.open<T>(url, { timeoutMs: options.timeoutMs })
    this.#handle = handle as DocHandle<unknown>
    return handle
  }

  /** The partnership document's `automerge:` URL: the server's answer, or the remembered one when offline. */
  async documentUrl(): Promise<AutomergeUrl> {
    const stored = await this.session.stored()
    if (stored === null) throw new SignedOutError("not_signed_in")
    try {
      const partnership = await this.rest.get("/api/partnerships/current")
      if (partnership.document_url == null) throw new NoPartnershipError()
      await this.session.rememberDocumentUrl(partnership.document_url)
      return partnership.document_url as AutomergeUrl
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) throw new NoPartnershipError()
      if (err instanceof NetworkError && stored.documentUrl !== undefined) return stored.documentUrl as AutomergeUrl
      throw err
    }
  }

  /** Closes the sync connection and keeps it closed; edits go on locally. */
  goOffline(): void {
    this.#wantOffline = true
    this.#connection?.goOffline()
  }

  /** Reconnects; whatever changed meanwhile on either side is exchanged. */
  goOnline(): void {
    this.#wantOffline = false
    this.#connection?.goOnline()
  }

  get online(): boolean {
    return this.#connection?.online ?? !this.#wantOffline
  }

  /** Resolves once the server holds every local change of the open document. */
  async whenSynced(options: { timeoutMs?: number } = {}): Promise<UrlHeads> {
    if (this.#handle === undefined || this.#connection === undefined) throw new Error("open() the document first")
    return this.#connection.whenSynced(this.#handle, { timeoutMs: options.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS })
  }

  /**
   * Calls `listener` with the open document's sync state (`offline`, `syncing`, `synced`) now
   * and whenever it changes; returns the unsubscribe function. What a sync indicator shows.
   */
  onSyncState(listener: (state: SyncState) => void): () => void {
    if (this.#handle === undefined || this.#connection === undefined) throw new Error("open() the document first")
    return this.#connection.onSyncState(this.#handle, listener)
  }

  /** The Repo and its adapter, for apps that need more than the partnership document. */
  get connection(): SyncConnection | undefined {
    return this.#connection
  }

  /** Flushes storage and closes the connection (the session stays). */
  async close(): Promise<void> {
    await this.#closeConnection()
  }

  #connect(userId: string | undefined): SyncConnection {
    if (this.#connection === undefined) {
      this.#connectionUser = userId
      this.#connection = new SyncConnection({
        syncUrl: syncUrlFor(this.#options.baseUrl),
        tokens: this.session,
        storage: this.#options.storage,
        retryIntervalMs: this.#options.retryIntervalMs,
        onError: this.#options.onSyncError,
        offline: this.#wantOffline,
      })
    }
    return this.#connection
  }

  async #closeConnection(): Promise<void> {
    const connection = this.#connection
    this.#connection = undefined
    this.#handle = undefined
    await connection?.close()
  }
}
