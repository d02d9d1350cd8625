/**
 * Both storage adapters keep what automerge-repo saves, answer key prefixes by whole segments,
 * and hold a document across a restart of the app (a new Repo over the same storage, offline).
 * IndexedDB runs on fake-indexeddb; the React Native adapter on an in-memory AsyncStorage fake.
 */

import "fake-indexeddb/auto"

import assert from "node:assert/strict"
import { describe, test } from "node:test"

import { Repo, type StorageAdapterInterface } from "@automerge/automerge-repo"

import { KeyValueStorageAdapter, type KeyValueStore, fromBase64, indexedDbStorage, toBase64 } from "../src/storage.js"

/** AsyncStorage's shape over a Map: string values only, promises everywhere, multiGet/multiRemove. */
class FakeAsyncStorage implements KeyValueStore {
  readonly map = new Map<string, string>()
  async getItem(key: string): Promise<string | null> {
    return this.map.get(key) ?? null
  }
  async setItem(key: string, value: string): Promise<void> {
    assert.equal(typeof value, "string", "AsyncStorage only stores strings")
    this.map.set(key, value)
  }
  async removeItem(key: string): Promise<void> {
    this.map.delete(key)
  }
  async getAllKeys(): Promise<readonly string[]> {
    return [...this.map.keys()]
  }
  async multiGet(keys: readonly string[]): Promise<[string, string | null][]> {
    return keys.map(k => [k, this.map.get(k) ?? null])
  }
  async multiRemove(keys: readonly string[]): Promise<void> {
    for (const k of keys) this.map.delete(k)
  }
}

/** The same fake without the optional batch methods (MMKV-like, synchronous). */
class MinimalStore implements KeyValueStore {
  readonly map = new Map<string, string>()
  getItem(key: string): string | null {
    return this.map.get(key) ?? null
  }
  setItem(key: string, value: string): void {
    this.map.set(key, value)
  }
  removeItem(key: string): void {
    this.map.delete(key)
  }
  getAllKeys(): string[] {
    return [...this.map.keys()]
  }
}

const bytes = (...values: number[]) => new Uint8Array(values)
const sortedKeys = (chunks: { key: string[] }[]) => chunks.map(c => c.key.join("|")).sort()

const adapters: [string, () => StorageAdapterInterface][] = [
  ["IndexedDB", () => indexedDbStorage(`test-${Math.random()}`)],
  ["AsyncStorage (React Native)", () => new KeyValueStorageAdapter(new FakeAsyncStorage())],
  ["a synchronous key/value store without batch methods", () => new KeyValueStorageAdapter(new MinimalStore())],
]

for (const [name, make] of adapters) {
  describe(`storage on ${name}`, () => {
    test("keeps, overwrites and removes single chunks", async () => {
      const storage = make()
      assert.equal(await storage.load(["doc", "snapshot", "h1"]), undefined)
      await storage.save(["doc", "snapshot", "h1"], bytes(1, 2, 3))
      assert.deepEqual(await storage.load(["doc", "snapshot", "h1"]), bytes(1, 2, 3))
      await storage.save(["doc", "snapshot", "h1"], bytes(0, 255))
      assert.deepEqual(await storage.load(["doc", "snapshot", "h1"]), bytes(0, 255))
      await storage.remove(["doc", "snapshot", "h1"])
      assert.equal(await storage.load(["doc", "snapshot", "h1"]), undefined)
    })

    test("a range is a prefix of whole key segments", async () => {
      const storage = make()
      await storage.save(["doc", "incremental", "a"], bytes(1))
      await storage.save(["doc", "incremental", "b"], bytes(2))
      await storage.save(["doc", "snapshot", "c"], bytes(3))
      await storage.save(["doc2", "incremental", "d"], bytes(4))
      await storage.save(["do", "x"], bytes(5))

      assert.deepEqual(sortedKeys(await storage.loadRange(["doc", "incremental"])), ["doc|incremental|a", "doc|incremental|b"])
      assert.deepEqual(sortedKeys(await storage.loadRange(["doc"])), ["doc|incremental|a", "doc|incremental|b", "doc|snapshot|c"])
      const one = await storage.loadRange(["doc2"])
      assert.deepEqual(one.map(c => [c.key, c.data]), [[["doc2", "incremental", "d"], bytes(4)]])

      await storage.removeRange(["doc"])
      assert.deepEqual(await storage.loadRange(["doc"]), [])
      assert.deepEqual(await storage.load(["doc2", "incremental", "d"]), bytes(4), "another document is untouched")
      assert.deepEqual(await storage.load(["do", "x"]), bytes(5), "a key that merely starts with the same letters is untouched")
    })

    test("a document survives an app restart and opens offline", async () => {
      const storage = make()
      const first = new Repo({ storage, network: [] })
      const handle = first.create<{ expenses: Record<string, { name: string; amount: number }> }>({ expenses: {} })
      handle.change(d => {
        d.expenses["e1"] = { name: "Rent", amount: 120000 }
      })
      await first.flush()
      await first.shutdown()

      const second = new Repo({ storage, network: [] })
      const again = await second.find<{ expenses: Record<string, { name: string; amount: number }> }>(handle.url)
      assert.deepEqual(again.doc().expenses["e1"], { name: "Rent", amount: 120000 })
      assert.deepEqual(again.heads(), handle.heads())
      await second.shutdown()
    })
  })
}

test("the React Native adapter stores only strings, under its own prefix", async () => {
  const store = new FakeAsyncStorage()
  store.map.set("someone-else:key", "untouched")
  const storage = new KeyValueStorageAdapter(store, "app:")
  await storage.save(["d/oc", "snapshot", "h"], bytes(9, 8, 7))
  assert.deepEqual([...store.map.keys()].sort(), ["app:d%2Foc/snapshot/h", "someone-else:key"])
  assert.deepEqual(await storage.loadRange(["d/oc"]), [{ key: ["d/oc", "snapshot", "h"], data: bytes(9, 8, 7) }])
  await storage.removeRange([])
  assert.deepEqual([...store.map.keys()], ["someone-else:key"])
})

test("base64 round-trips every length and byte value", () => {
  for (let n = 0; n < 70; n++) {
    const data = Uint8Array.from({ length: n }, (_, i) => (i * 37 + n) & 255)
    const text = toBase64(data)
    assert.equal(text, Buffer.from(data).toString("base64"))
    assert.deepEqual(fromBase64(text), data)
  }
  const all = Uint8Array.from({ length: 256 }, (_, i) => i)
  assert.deepEqual(fromBase64(toBase64(all)), all)
  assert.throws(() => fromBase64("a*bc"), /invalid base64/)
})
