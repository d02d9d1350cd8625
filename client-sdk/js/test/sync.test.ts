/**
 * The sync connection against the real server: two partners' clients exchange changes; the
 * offline switch really disconnects and a change made meanwhile arrives after going online;
 * every reconnect presents a fresh access token (after a server restart with an aged token, by
 * the adapter's own renewal before expiry, and after the server refused the socket's token).
 */

import assert from "node:assert/strict"
import { randomUUID } from "node:crypto"
import { after, before, test } from "node:test"

import type { AutomergeUrl, DocHandle } from "@automerge/automerge-repo"

import { SplitSaveClient } from "../src/client.js"
import { SyncConnection, documentUrlForPartnership } from "../src/connection.js"
import { MemoryTokenStore, Session } from "../src/session.js"
import { type Couple, TestServer, type TestUser, eventually, makeCouple } from "./support/server.js"

type Expense = { name: string; amount: number; added_by: string; status: string }
type Doc = { expenses?: Record<string, Expense> }

let server: TestServer
let couple: Couple
const clients: SplitSaveClient[] = []
before(async () => {
  server = await TestServer.start()
  couple = await makeCouple(server)
})
after(async () => {
  await Promise.all(clients.map(c => c.close()))
  await server?.stop()
})

/** A signed-in client of `user` that retries quickly (tests wait on reconnects). */
async function clientOf(user: TestUser, options: { now?: () => number; tokenStore?: MemoryTokenStore; login?: boolean } = {}): Promise<SplitSaveClient> {
  const client = new SplitSaveClient({
    baseUrl: server.baseUrl,
    retryIntervalMs: 100,
    now: options.now,
    tokenStore: options.tokenStore,
  })
  clients.push(client)
  if (options.login !== false) await client.login(user.email, user.password)
  return client
}

/** Adds an expense the way an app does (a valid one: below the approval threshold). */
function addExpense(handle: DocHandle<Doc>, user: TestUser, name: string): string {
  const id = randomUUID()
  handle.change(d => {
    if (d.expenses === undefined) d.expenses = {}
    const now = Date.now()
    d.expenses[id] = {
      name,
      amount: 4250,
      category: "groceries",
      frequency: "monthly",
      added_by: user.id,
      status: "active",
      created_at: now,
      updated_at: now,
    } as Expense
  })
  return id
}

async function seen(handle: DocHandle<Doc>, id: string, what: string): Promise<Expense> {
  return eventually(what, () => handle.doc()?.expenses?.[id])
}

test("partners open the same document and see each other's changes", async () => {
  const ann = await clientOf(couple.inviter)
  const ben = await clientOf(couple.invitee)
  const annDoc = await ann.open<Doc>()
  const benDoc = await ben.open<Doc>()
  assert.equal(annDoc.url, couple.documentUrl)
  assert.equal(documentUrlForPartnership(couple.partnershipId), couple.documentUrl, "the URL derives from the partnership id as on the server")

  const id = addExpense(annDoc, couple.inviter, "Groceries")
  const heads = await ann.whenSynced()
  assert.deepEqual(heads, annDoc.heads(), "the server holds Ann's change")
  assert.equal((await seen(benDoc, id, "Ben to see Ann's expense")).name, "Groceries")
  const listed = await ben.rest.get("/api/expenses")
  assert.ok(listed.items.some(e => e.id === id), "the server materialised it")
  await Promise.all([ann.close(), ben.close()])
})

test("going offline really disconnects; a change made offline syncs after going online", async () => {
  const ann = await clientOf(couple.inviter)
  const ben = await clientOf(couple.invitee)
  const annDoc = await ann.open<Doc>()
  const benDoc = await ben.open<Doc>()
  await ann.whenSynced()
  const adapter = ann.connection!.adapter

  ann.goOffline()
  assert.equal(ann.online, false)
  assert.equal(adapter.socket, undefined, "the socket is closed")
  await eventually("the server peer to be gone", () => ann.connection!.repo.peers.length === 0)

  const id = addExpense(annDoc, couple.inviter, "Made offline")
  await assert.rejects(ann.whenSynced({ timeoutMs: 300 }), /did not acknowledge/)
  const whileOffline = await ann.rest.get("/api/expenses")
  assert.ok(!whileOffline.items.some(e => e.id === id), "the server has not got it")
  assert.equal(adapter.socket, undefined, "nothing reconnected by itself")

  ann.goOnline()
  assert.equal(ann.online, true)
  await ann.whenSynced()
  assert.equal((await seen(benDoc, id, "Ben to see the offline change")).name, "Made offline")
  await Promise.all([ann.close(), ben.close()])
})

test("the sync state is told as it changes: offline, syncing, synced", async () => {
  const ann = await clientOf(couple.inviter)
  const annDoc = await ann.open<Doc>()
  await ann.whenSynced()
  const states: string[] = []
  const stop = ann.onSyncState(state => states.push(state))
  assert.deepEqual(states, ["synced"], "the current state at once")

  ann.goOffline()
  addExpense(annDoc, couple.inviter, "Made offline")
  assert.deepEqual(states, ["synced", "offline"], "an edit made offline changes nothing shown")

  ann.goOnline()
  await eventually("the server to hold the offline edit", () => states.at(-1) === "synced")
  assert.deepEqual(states.slice(0, 3), ["synced", "offline", "syncing"])

  addExpense(annDoc, couple.inviter, "Made online")
  await eventually("the online edit to be acknowledged", () => states.at(-1) === "synced")
  assert.ok(states.lastIndexOf("syncing") > 2, `a local edit shows as syncing until acknowledged: ${states}`)
  for (let i = 1; i < states.length; i++) assert.notEqual(states[i], states[i - 1], "told only on a change")

  stop()
  ann.goOffline()
  assert.notEqual(states.at(-1), "offline", "nothing is told after unsubscribing")
  await ann.close()
})

test("after a server restart the adapter reconnects with a fresh token and sync goes on", async () => {
  let skew = 0
  const store = new MemoryTokenStore()
  const ann = await clientOf(couple.inviter, { now: () => Date.now() + skew, tokenStore: store })
  const ben = await clientOf(couple.invitee)
  const annDoc = await ann.open<Doc>()
  const benDoc = await ben.open<Doc>()
  await ann.whenSynced()
  const adapter = ann.connection!.adapter
  const firstToken = adapter.token
  const firstRefresh = store.load()!.refreshToken
  assert.ok(firstToken !== undefined)

  // The token Ann connected with is now past its expiry as her clock sees it; the server goes away.
  skew = 16 * 60_000
  await server.restart()

  await eventually("Ann to reconnect", () => adapter.token !== undefined && ann.connection!.repo.peers.length > 0)
  assert.notEqual(adapter.token, firstToken, "the reconnect presented a new access token")
  assert.notEqual(store.load()!.refreshToken, firstRefresh, "got by a refresh, whose rotated token is stored")

  const id = addExpense(annDoc, couple.inviter, "After the restart")
  await ann.whenSynced()
  assert.equal((await seen(benDoc, id, "Ben to see it after the restart")).name, "After the restart")
  await Promise.all([ann.close(), ben.close()])
})

test("the adapter replaces its token before it expires, by itself", async () => {
  let skew = 0
  const ann = await clientOf(couple.inviter, { now: () => Date.now() + skew })
  // Just over the one-minute refresh margin left: used as it is, renewed about 4 s later.
  skew = 15 * 60_000 - 64_000
  const annDoc = await ann.open<Doc>()
  await ann.whenSynced()
  const adapter = ann.connection!.adapter
  const firstToken = adapter.token
  const opened = adapter.socketsOpened

  await eventually("a renewal", () => adapter.token !== undefined && adapter.token !== firstToken, 10_000)
  assert.equal(adapter.socketsOpened, opened + 1, "one new socket")
  const id = addExpense(annDoc, couple.inviter, "After the renewal")
  await ann.whenSynced()
  assert.ok((await ann.rest.get("/api/expenses")).items.some(e => e.id === id))
  await ann.close()
})

test("a token the server refuses on the socket is refreshed, not presented again", async () => {
  const store = new MemoryTokenStore()
  await new Session({ baseUrl: server.baseUrl, tokenStore: store }).login(couple.inviter.email, couple.inviter.password)
  const held = store.load()!
  // The stored token looks fresh but the server refuses it (broken signature).
  const refusedToken = held.accessToken.slice(0, -4) + (held.accessToken.endsWith("AAAA") ? "BBBB" : "AAAA")
  store.save({ ...held, accessToken: refusedToken })
  const session = new Session({ baseUrl: server.baseUrl, tokenStore: store })
  const errors: unknown[] = []
  // The connection alone (no REST call first, which would have refreshed the token already).
  const connection = new SyncConnection({ syncUrl: server.syncUrl, tokens: session, retryIntervalMs: 100, onError: e => errors.push(e) })
  try {
    const handle = await connection.open<Doc>(couple.documentUrl as AutomergeUrl)
    addExpense(handle, couple.inviter, "After a refused token")
    await connection.whenSynced(handle)
    assert.ok(errors.some(e => /token/.test(String(e))), `the server's refusal was reported: ${errors.map(String).join("; ")}`)
    assert.ok(connection.adapter.socketsOpened >= 2, "a second socket")
    assert.notEqual(connection.adapter.token, refusedToken)
    assert.notEqual(store.load()!.refreshToken, held.refreshToken, "a refresh happened")
  } finally {
    await connection.close()
  }
})
