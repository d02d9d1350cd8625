/**
 * Where the partnership document lives on the device, so the app opens and edits it offline
 * and a restart exchanges only what changed since.
 *
 * - Browsers: IndexedDB, through automerge-repo's own adapter ({@link indexedDbStorage}).
 * - React Native: there is no IndexedDB, but every app has a string key/value store
 *   (`@react-native-async-storage/async-storage`, MMKV, SecureStore…). {@link KeyValueStorageAdapter}
 *   implements automerge-repo's `StorageAdapterInterface` over any store with AsyncStorage's
 *   shape, keeping binary chunks as base64 strings.
 */

import type { Chunk, StorageAdapterInterface, StorageKey } from "@automerge/automerge-repo"
import { IndexedDBStorageAdapter } from "@automerge/automerge-repo-storage-indexeddb"

/** The default IndexedDB database name: one per app origin is enough (documents are keyed). */
export const DEFAULT_INDEXEDDB_NAME = "splitsave"

/**
 * automerge-repo's IndexedDB adapter under SplitSave's database name. The adapter opens the
 * database lazily through the global `indexedDB` (in Node tests, `fake-indexeddb/auto`).
 */
export function indexedDbStorage(
  database: string = DEFAULT_INDEXEDDB_NAME,
  store = "documents"
): StorageAdapterInterface {
  return new IndexedDBStorageAdapter(database, store)
}

/**
 * The subset of React Native's AsyncStorage this adapter needs. Values are strings; the methods
 * may return promises (AsyncStorage, SecureStore) or plain values (MMKV, `localStorage`), both
 * are awaited. `multiGet` / `multiRemove` are used when present, to read a document's chunks in
 * one bridge call instead of one per chunk.
 */
export interface KeyValueStore {
  getItem(key: string): Promise<string | null | undefined> | string | null | undefined
  setItem(key: string, value: string): Promise<void> | void
  removeItem(key: string): Promise<void> | void
  getAllKeys(): Promise<readonly string[]> | readonly string[]
  multiGet?(
    keys: readonly string[]
  ): Promise<readonly (readonly [string, string | null])[]> | readonly (readonly [string, string | null])[]
  multiRemove?(keys: readonly string[]): Promise<void> | void
}

/**
 * automerge-repo storage over a string key/value store (React Native's AsyncStorage and the
 * like). Each `StorageKey` (an array of segments such as `[documentId, "incremental", hash]`)
 * becomes one entry named `<prefix>` followed by the URI-encoded segments joined with `/`, so a
 * key prefix is a string prefix ending at a segment boundary, and entries of other libraries in
 * the same store are never touched. Chunks are stored as base64.
 */
export class KeyValueStorageAdapter implements StorageAdapterInterface {
  readonly #store: KeyValueStore
  readonly #prefix: string

  /**
   * @param store the key/value store (e.g. `AsyncStorage`)
   * @param prefix the namespace of this adapter's entries; change it to keep several repos apart
   */
  constructor(store: KeyValueStore, prefix = "splitsave:automerge:") {
    this.#store = store
    this.#prefix = prefix
  }

  async load(key: StorageKey): Promise<Uint8Array | undefined> {
    const value = await this.#store.getItem(this.#name(key))
    return value === null || value === undefined ? undefined : fromBase64(value)
  }

  async save(key: StorageKey, data: Uint8Array): Promise<void> {
    await this.#store.setItem(this.#name(key), toBase64(data))
  }

  async remove(key: StorageKey): Promise<void> {
    await this.#store.removeItem(this.#name(key))
  }

  async loadRange(keyPrefix: StorageKey): Promise<Chunk[]> {
    const names = await this.#namesUnder(keyPrefix)
    if (names.length === 0) return []
    let pairs: (readonly [string, string | null | undefined])[]
    if (this.#store.multiGet !== undefined) {
      pairs = [...(await this.#store.multiGet(names))]
    } else {
      pairs = await Promise.all(names.map(async n => [n, await this.#store.getItem(n)] as const))
    }
    const chunks: Chunk[] = []
    for (const [name, value] of pairs) {
      // Removed between listing and reading: it is simply no longer part of the range.
      if (value === null || value === undefined) continue
      chunks.push({ key: this.#key(name), data: fromBase64(value) })
    }
    return chunks
  }

  async removeRange(keyPrefix: StorageKey): Promise<void> {
    const names = await this.#namesUnder(keyPrefix)
    if (names.length === 0) return
    if (this.#store.multiRemove !== undefined) {
      await this.#store.multiRemove(names)
    } else {
      await Promise.all(names.map(n => this.#store.removeItem(n)))
    }
  }

  #name(key: StorageKey): string {
    return this.#prefix + key.map(encodeURIComponent).join("/")
  }

  #key(name: string): StorageKey {
    const rest = name.slice(this.#prefix.length)
    return rest === "" ? [] : rest.split("/").map(decodeURIComponent)
  }

  /** Every stored name whose key starts with the segments of `keyPrefix`. */
  async #namesUnder(keyPrefix: StorageKey): Promise<string[]> {
    const exact = this.#name(keyPrefix)
    const under = keyPrefix.length === 0 ? this.#prefix : exact + "/"
    const all = await this.#store.getAllKeys()
    return all.filter(n => n === exact || n.startsWith(under))
  }
}

const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
const DECODE = new Map<string, number>([...ALPHABET].map((c, i) => [c, i]))

/**
 * Standard base64 of `bytes`. Written out rather than relying on `btoa` or `Buffer`, which not
 * every React Native engine provides, and `btoa` wants a binary string built byte by byte anyway.
 */
export function toBase64(bytes: Uint8Array): string {
  let out = ""
  let i = 0
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + ALPHABET[n & 63]!
  }
  const left = bytes.length - i
  if (left === 1) {
    const n = bytes[i]! << 16
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + "=="
  } else if (left === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8)
    out += ALPHABET[n >> 18]! + ALPHABET[(n >> 12) & 63]! + ALPHABET[(n >> 6) & 63]! + "="
  }
  return out
}

/** The bytes of standard base64 `text` (padding optional); throws on any other character. */
export function fromBase64(text: string): Uint8Array {
  const clean = text.replace(/=+$/, "")
  if (clean.length % 4 === 1) throw new Error("invalid base64: bad length")
  const out = new Uint8Array(Math.floor((clean.length * 3) / 4))
  let bits = 0
  let value = 0
  let at = 0
  for (const c of clean) {
    const d = DECODE.get(c)
    if (d === undefined) throw new Error(`invalid base64 character ${JSON.stringify(c)}`)
    value = (value << 6) | d
    bits += 6
    if (bits >= 8) {
      bits -= 8
      out[at++] = (value >> bits) & 0xff
    }
  }
  return out
}
