/**
 * The sync connection: an automerge-repo `Repo` talking to the server's `/sync` WebSocket
 * (the stock automerge-repo protocol, see docs/sync-protocol.md), with
 *
 * - a fresh access token on every (re)connect: the stock `WebSocketClientAdapter` keeps the URL
 *   it was built with, but the server authenticates a socket by the `?token=` it opened with and
 *   closes it when that token expires. {@link FreshTokenWebSocketAdapter} asks the session for a
 *   current token before each connect, refreshes it when the server refused it, and reconnects
 *   on its own shortly before the token would lapse;
 * - an offline switch that really closes the socket (and keeps it closed) and reconnects later;
 * - {@link SyncConnection.whenSynced}: resolves once the server holds every local change — the
 *   server's heads, as it last reported them under its stable `storageId`, equal ours.
 */

import {
  type AutomergeUrl,
  type BinaryDocumentId,
  type DocHandle,
  type PeerId,
  type PeerMetadata,
  Repo,
  type StorageAdapterInterface,
  type UrlHeads,
  cbor,
  stringifyAutomergeUrl,
} from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"
import { parse as parseUuid } from "uuid"

import { SignedOutError } from "./session.js"

/** Where the adapter gets its tokens; {@link Session} is one. */
export interface TokenSource {
  /** A token good for a while yet. */
  accessToken(): Promise<string>
  /** The server refused `token`: a new one (refreshing unless someone already did). */
  tokenRejected(token: string): Promise<string>
  /** Milliseconds until `token` should be replaced on a long-lived connection, if known. */
  renewAfterMs?(token: string): number | undefined
}

export interface AdapterOptions {
  /** Delay between reconnection attempts, default 5 s (the stock adapter's). */
  retryIntervalMs?: number
  /** Told about failures the adapter recovers from by itself (logging, diagnostics). */
  onError?: (error: unknown) => void
}

/** The `/sync` URL of a server whose base URL is `baseUrl` (`https:` becomes `wss:`). */
export function syncUrlFor(baseUrl: string): string {
  const url = new URL(baseUrl.replace(/\/+$/, "") + "/sync")
  url.protocol = url.protocol === "https:" ? "wss:" : url.protocol === "http:" ? "ws:" : url.protocol
  return url.toString()
}

/**
 * The `automerge:` URL of a partnership's document, derived as the server derives it
 * (sync-core/src/ids.rs): the partnership's 16 UUID bytes, bs58check-encoded. The server also
 * answers it as `document_url` of `GET /api/partnerships/current`.
 */
export function documentUrlForPartnership(partnershipId: string): AutomergeUrl {
  return stringifyAutomergeUrl({ documentId: parseUuid(partnershipId) as BinaryDocumentId })
}

/**
 * The stock WebSocket client adapter, presenting a current access token on each connection.
 *
 * Every path by which the stock adapter (re)connects — the first connect, its retry timer, its
 * reconnect after a close — goes through `connect`, which this class overrides: it fetches a
 * token first (asynchronously; only the latest of overlapping attempts goes on), then sets the
 * URL and lets the stock code open the socket. The stock adapter's wire protocol is untouched.
 */
export class FreshTokenWebSocketAdapter extends WebSocketClientAdapter {
  readonly #syncUrl: string
  readonly #tokens: TokenSource
  readonly #onError: ((error: unknown) => void) | undefined
  #offline = false
  #signedOut = false
  /** Bumped by every connect and disconnect: a token arriving for an older attempt is dropped. */
  #attempt = 0
  #retryTimer: ReturnType<typeof setTimeout> | undefined
  #renewTimer: ReturnType<typeof setTimeout> | undefined
  /** The token of the current socket, and whether the server refused it (an `error` message). */
  #token: string | undefined
  #refused = false
  #connectArgs: [PeerId, PeerMetadata | undefined] | undefined
  /** Sockets opened so far (a diagnostic; tests check reconnects with it). */
  socketsOpened = 0
  readonly #offlineReady: Promise<void>
  #resolveOfflineReady!: () => void

  constructor(syncUrl: string, tokens: TokenSource, options: AdapterOptions = {}) {
    super(syncUrl, options.retryIntervalMs ?? 5000)
    this.#syncUrl = syncUrl
    this.#tokens = tokens
    this.#onError = options.onError
    this.#offlineReady = new Promise(resolve => (this.#resolveOfflineReady = resolve))
  }

  /** Whether the adapter is meant to be connected (not switched off, session not ended). */
  get online(): boolean {
    return !this.#offline && !this.#signedOut
  }

  /** The access token the current socket was opened with (undefined while disconnected). */
  get token(): string | undefined {
    return this.socket === undefined ? undefined : this.#token
  }

  /**
   * Ready also when offline: the Repo waits for its adapters before it decides a document is
   * unavailable, and an adapter that is off will not become ready by itself.
   */
  override isReady(): boolean {
    return super.isReady() || !this.online
  }

  override whenReady(): Promise<void> {
    return Promise.race([super.whenReady(), this.#offlineReady])
  }

  override connect(peerId: PeerId, peerMetadata?: PeerMetadata): void {
    // NetworkSubsystem.reconnect() passes no metadata: keep what the Repo first gave.
    this.#connectArgs = [peerId, peerMetadata ?? this.#connectArgs?.[1]]
    if (!this.online) return
    const attempt = ++this.#attempt
    clearTimeout(this.#retryTimer)
    const previous = this.#refused ? this.#token : undefined
    const token = previous !== undefined ? this.#tokens.tokenRejected(previous) : this.#tokens.accessToken()
    token.then(
      token => {
        if (attempt !== this.#attempt || !this.online) return
        this.#open(token)
      },
      (err: unknown) => {
        if (attempt !== this.#attempt) return
        if (err instanceof SignedOutError) {
          // The session is over: stay down; the app hears it from the session.
          this.#signedOut = true
          this.#stopSocket()
          this.#resolveOfflineReady()
          return
        }
        // No token for now (no network for the refresh): try again later.
        this.#onError?.(err)
        this.#retryTimer = setTimeout(() => this.#reconnect(), this.retryInterval)
      }
    )
  }

  #open(token: string): void {
    const [peerId, peerMetadata] = this.#connectArgs!
    // The stock adapter opens `this.url`, which it declares read-only; this class owns it.
    ;(this as { url: string }).url = withToken(this.#syncUrl, token)
    this.#token = token
    this.#refused = false
    this.socketsOpened += 1
    // A socket still connecting from an earlier attempt would otherwise stay open unnoticed.
    this.#closeQuietly()
    super.connect(peerId, peerMetadata)
    this.#scheduleRenewal(token)
  }

  /** Reconnects shortly before the token lapses, so the server never closes on us mid-sync. */
  #scheduleRenewal(token: string): void {
    clearTimeout(this.#renewTimer)
    const after = this.#tokens.renewAfterMs?.(token)
    if (after === undefined) return
    // Never a tight loop, even with a clock far off: at least a second between renewals.
    this.#renewTimer = setTimeout(() => {
      if (this.online && this.#token === token) this.#reconnect()
    }, Math.min(Math.max(after, 1000), 2 ** 31 - 1))
  }

  #reconnect(): void {
    if (!this.online || this.#connectArgs === undefined) return
    this.#stopSocket()
    this.connect(...this.#connectArgs)
  }

  /** Closes the current socket through the stock code (which also tells the Repo the peer left). */
  #stopSocket(): void {
    clearTimeout(this.#retryTimer)
    clearTimeout(this.#renewTimer)
    if (this.socket !== undefined && this.peerId !== undefined) super.disconnect()
  }

  /** Closes a socket left from an earlier attempt without triggering the stock close handling. */
  #closeQuietly(): void {
    const socket = this.socket
    if (socket === undefined) return
    socket.removeEventListener("open", this.onOpen)
    socket.removeEventListener("close", this.onClose)
    socket.removeEventListener("message", this.onMessage)
    socket.removeEventListener("error", this.onError)
    try {
      socket.close()
    } catch {
      // Already closed.
    }
    this.socket = undefined
  }

  /** Switches the connection off: closes the socket and makes no attempt until {@link goOnline}. */
  goOffline(): void {
    this.#offline = true
    this.#attempt += 1
    this.#stopSocket()
    this.#resolveOfflineReady()
  }

  /** Switches the connection back on (with a current token). */
  goOnline(): void {
    this.#offline = false
    // Asked by the app, e.g. after signing in again: the session may have tokens again.
    this.#signedOut = false
    if (this.#connectArgs !== undefined) this.connect(...this.#connectArgs)
  }

  /** Called by the Repo on shutdown: closes for good. */
  override disconnect(): void {
    this.goOffline()
  }

  /**
   * The stock Node handler throws any socket error but ECONNREFUSED from inside the event
   * listener, which crashes the process when a server restarts (ECONNRESET). An error is always
   * followed by a close, and the close handler reconnects: report and carry on.
   */
  override onError = (event: unknown): void => {
    const error = typeof event === "object" && event !== null && "error" in event ? (event as { error: unknown }).error : event
    this.#onError?.(error)
  }

  /**
   * Notes the server's `error` message (sent before it closes the socket): when it names the
   * token (expired, invalid, version changed), the next connect refreshes instead of presenting
   * the same token again.
   */
  override receiveMessage(messageBytes: Uint8Array): void {
    try {
      const message = cbor.decode(new Uint8Array(messageBytes)) as { type?: unknown; message?: unknown }
      if (message.type === "error") {
        const text = String(message.message ?? "")
        this.#onError?.(new Error(`the server closed the sync connection: ${text}`))
        if (/token/i.test(text)) this.#refused = true
      }
    } catch {
      // The stock code logs undecodable messages.
    }
    super.receiveMessage(messageBytes)
  }
}

function withToken(syncUrl: string, token: string): string {
  const url = new URL(syncUrl)
  url.searchParams.set("token", token)
  return url.toString()
}

export interface SyncConnectionOptions {
  /** The `/sync` URL (see {@link syncUrlFor}). */
  syncUrl: string
  tokens: TokenSource
  /** Where documents persist (see storage.ts); without it they live in memory only. */
  storage?: StorageAdapterInterface
  retryIntervalMs?: number
  onError?: (error: unknown) => void
  /** Start switched off (the app opens its local document before going online). */
  offline?: boolean
}

/** What an app shows of a document's sync: see {@link SyncConnection.onSyncState}. */
export type SyncState = "offline" | "syncing" | "synced"

/** How long {@link SyncConnection.whenSynced} and `open` wait by default. */
export const DEFAULT_SYNC_TIMEOUT_MS = 30_000
const POLL_MS = 25

/** A Repo with one {@link FreshTokenWebSocketAdapter}; see the module comment. */
export class SyncConnection {
  readonly repo: Repo
  readonly adapter: FreshTokenWebSocketAdapter

  constructor(options: SyncConnectionOptions) {
    this.adapter = new FreshTokenWebSocketAdapter(options.syncUrl, options.tokens, {
      retryIntervalMs: options.retryIntervalMs,
      onError: options.onError,
    })
    if (options.offline === true) this.adapter.goOffline()
    // The default share policy announces our documents to the server, which it needs to answer
    // a `request` for the partnership document (it refuses every other one).
    this.repo = new Repo({ network: [this.adapter], storage: options.storage })
  }

  get online(): boolean {
    return this.adapter.online
  }

  /** Closes the socket and keeps it closed; local changes keep accumulating in the document. */
  goOffline(): void {
    this.adapter.goOffline()
    for (const check of this.#stateListeners) check()
  }

  /** Reconnects; the exchange sends what changed on either side meanwhile. */
  goOnline(): void {
    this.adapter.goOnline()
    for (const check of this.#stateListeners) check()
  }

  /**
   * The handle of the document at `url`: from local storage when it is there (offline too),
   * else from the server. Rejects when neither has it, or after `timeoutMs`.
   */
  async open<T>(url: AutomergeUrl, options: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<DocHandle<T>> {
    // A plain controller and timer: React Native lacks AbortSignal.timeout and AbortSignal.any.
    const controller = new AbortController()
    const timer = setTimeout(() => controller.abort(new Error(`the document ${url} did not open in time`)), options.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS)
    const forward = () => controller.abort(options.signal?.reason)
    options.signal?.addEventListener("abort", forward)
    try {
      // automerge-repo calls a document unavailable when no peer had it at the moment it asked
      // (e.g. the socket was still opening, or reconnecting with a fresh token). Online, that is
      // not final: the server sends it once connected, so keep waiting until the deadline.
      const handle = await this.repo.find<T>(url, { signal: controller.signal, allowableStates: ["ready", "unavailable"] })
      if (handle.state !== "ready") {
        if (!this.online) throw new Error(`the document ${url} is not stored on this device; go online to fetch it`)
        await handle.whenReady(["ready"], { signal: controller.signal })
      }
      return handle
    } finally {
      clearTimeout(timer)
      options.signal?.removeEventListener("abort", forward)
    }
  }

  /** Whether the server holds every change of `handle` (its last reported heads equal ours). */
  isSynced(handle: DocHandle<unknown>): boolean {
    return this.#acknowledged(handle) !== undefined
  }

  /** Where `handle` stands: switched off, waiting for the server, or held by the server. */
  syncState(handle: DocHandle<unknown>): SyncState {
    if (!this.online) return "offline"
    return this.isSynced(handle) ? "synced" : "syncing"
  }

  /**
   * Calls `listener` with {@link syncState} at once and whenever it changes: a local or remote
   * change, the server's acknowledged heads, the socket opening or closing, the offline switch.
   * What an app shows as its sync indicator, without polling. Returns the unsubscribe function.
   */
  onSyncState(handle: DocHandle<unknown>, listener: (state: SyncState) => void): () => void {
    let last: SyncState | undefined
    const check = (): void => {
      const state = this.syncState(handle)
      if (state === last) return
      last = state
      listener(state)
    }
    this.#stateListeners.add(check)
    handle.on("change", check)
    handle.on("remote-heads", check)
    this.adapter.on("peer-candidate", check)
    this.adapter.on("peer-disconnected", check)
    check()
    return () => {
      this.#stateListeners.delete(check)
      handle.off("change", check)
      handle.off("remote-heads", check)
      this.adapter.off("peer-candidate", check)
      this.adapter.off("peer-disconnected", check)
    }
  }

  /** The listeners of {@link onSyncState}, told when the offline switch moves. */
  readonly #stateListeners = new Set<() => void>()

  /**
   * Resolves with our heads once the server acknowledged them, i.e. it holds every local change
   * of `handle` (committed: the server answers only after its transaction). Polls, since the
   * server's heads arrive with sync messages; rejects after `timeoutMs`. While offline it waits
   * for the app to go online.
   */
  async whenSynced(handle: DocHandle<unknown>, options: { timeoutMs?: number } = {}): Promise<UrlHeads> {
    const deadline = Date.now() + (options.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS)
    for (;;) {
      const heads = this.#acknowledged(handle)
      if (heads !== undefined) return heads
      if (Date.now() >= deadline) {
        throw new Error(`the server did not acknowledge the document's changes within ${options.timeoutMs ?? DEFAULT_SYNC_TIMEOUT_MS} ms`)
      }
      await new Promise(resolve => setTimeout(resolve, POLL_MS))
    }
  }

  #acknowledged(handle: DocHandle<unknown>): UrlHeads | undefined {
    const ours = handle.heads()
    for (const peer of this.repo.peers) {
      const storageId = this.repo.getStorageIdOfPeer(peer)
      if (storageId === undefined) continue
      const theirs = handle.getRemoteHeads(storageId)
      if (theirs !== undefined && sameHeads(theirs, ours)) return ours
    }
    return undefined
  }

  /** Flushes storage and closes the connection for good. */
  async close(): Promise<void> {
    await this.repo.shutdown()
  }
}

function sameHeads(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false
  const set = new Set(a)
  return b.every(h => set.has(h))
}
