/**
 * Sessions against the real server: login, refresh-token rotation and reuse detection, logout,
 * and the refresh that a 401 or an ageing token triggers — once, however many requests need it.
 */

import assert from "node:assert/strict"
import { after, before, test } from "node:test"

import { ApiError } from "../src/rest.js"
import { KeyValueTokenStore, MemoryTokenStore, Session, type SignedOutEvent, SignedOutError } from "../src/session.js"
import { TestServer, call, registerUser } from "./support/server.js"

let server: TestServer
before(async () => {
  server = await TestServer.start()
})
after(async () => {
  await server?.stop()
})

/** A `fetch` that counts the requests per path, so a test sees refreshes and retries. */
function countingFetch(): { fetch: typeof fetch; count: (path: string) => number; total: () => number } {
  const counts = new Map<string, number>()
  return {
    fetch: (input, init) => {
      const path = new URL(String(input)).pathname
      counts.set(path, (counts.get(path) ?? 0) + 1)
      return fetch(input, init)
    },
    count: path => counts.get(path) ?? 0,
    total: () => [...counts.values()].reduce((a, b) => a + b, 0),
  }
}

test("login stores a session whose token signs REST calls", async () => {
  const user = await registerUser(server, { name: "Ann" })
  const store = new MemoryTokenStore()
  const session = new Session({ baseUrl: server.baseUrl, tokenStore: store })
  assert.equal(await session.isSignedIn(), false)

  const me = await session.login(user.email, user.password)
  assert.equal(me.id, user.id)
  assert.equal(store.load()?.userId, user.id)
  const profile = await session.rest.get("/api/users/profile")
  assert.equal(profile.email, user.email)

  // A wrong password is the server's typed error, and the session is untouched.
  const refused = await session.login(user.email, "not the password at all").catch(e => e)
  assert.ok(refused instanceof ApiError)
  assert.equal(refused.status, 401)
  assert.equal(refused.code, "invalid_credentials")
  assert.equal((await session.rest.get("/api/users/profile")).id, user.id)
})

test("a session kept in a string store (localStorage, AsyncStorage) survives a restart", async () => {
  const user = await registerUser(server)
  const backing = new Map<string, string>()
  const storage = {
    getItem: (k: string) => backing.get(k) ?? null,
    setItem: (k: string, v: string) => void backing.set(k, v),
    removeItem: (k: string) => void backing.delete(k),
  }
  await new Session({ baseUrl: server.baseUrl, tokenStore: new KeyValueTokenStore(storage) }).login(user.email, user.password)
  const restarted = new Session({ baseUrl: server.baseUrl, tokenStore: new KeyValueTokenStore(storage) })
  assert.equal(await restarted.isSignedIn(), true)
  assert.equal((await restarted.rest.get("/api/users/profile")).id, user.id)
})

test("refresh rotates the refresh token; the old one is refused, and its reuse signs the session out", async () => {
  const user = await registerUser(server)
  const counter = countingFetch()
  const session = new Session({ baseUrl: server.baseUrl, fetch: counter.fetch })
  const events: SignedOutEvent[] = []
  session.onSignedOut(e => events.push(e))
  await session.login(user.email, user.password)
  const first = (await session.stored())!

  await session.refresh()
  const second = (await session.stored())!
  assert.notEqual(second.refreshToken, first.refreshToken, "a new refresh token is stored")
  assert.notEqual(second.accessToken, first.accessToken)
  assert.equal((await session.rest.get("/api/users/profile")).id, user.id, "the new access token works")

  await session.refresh()
  const third = (await session.stored())!
  assert.notEqual(third.refreshToken, second.refreshToken, "and the new refresh token works too")

  // Someone replays the first (spent) refresh token: refused, and the server revokes the login.
  const replay = await call(server, "POST", "/api/auth/refresh", { body: { refresh_token: first.refreshToken } })
  assert.equal(replay.status, 401)
  assert.equal(replay.body.error.code, "invalid_refresh_token")

  // The legitimate session finds out at its next refresh: signed out, told once, no retries.
  const ended = await session.refresh().catch(e => e)
  assert.ok(ended instanceof SignedOutError, String(ended))
  assert.equal(ended.reason, "refresh_refused")
  assert.deepEqual(events.map(e => [e.reason, e.error?.status]), [["refresh_refused", 401]])
  assert.equal(await session.stored(), null, "the tokens are forgotten")

  const requestsSoFar = counter.total()
  await assert.rejects(session.rest.get("/api/users/profile"), SignedOutError)
  await assert.rejects(session.accessToken(), SignedOutError)
  await assert.rejects(session.refresh(), SignedOutError)
  assert.equal(counter.total(), requestsSoFar, "a signed-out session makes no requests")
  assert.equal(events.length, 1, "the app hears it once")
})

test("logout revokes the refresh token and signs the session out", async () => {
  const user = await registerUser(server)
  const session = new Session({ baseUrl: server.baseUrl })
  const events: SignedOutEvent[] = []
  session.onSignedOut(e => events.push(e))
  await session.login(user.email, user.password)
  const tokens = (await session.stored())!

  await session.logout()
  assert.deepEqual(events.map(e => e.reason), ["logout"])
  assert.equal(await session.isSignedIn(), false)
  await assert.rejects(session.rest.get("/api/users/profile"), SignedOutError)
  const reuse = await call(server, "POST", "/api/auth/refresh", { body: { refresh_token: tokens.refreshToken } })
  assert.equal(reuse.status, 401, "the server no longer accepts the refresh token")
})

test("a 401 mid-session triggers one refresh, even for concurrent requests", async () => {
  const user = await registerUser(server)
  const store = new MemoryTokenStore()
  await new Session({ baseUrl: server.baseUrl, tokenStore: store }).login(user.email, user.password)
  // The app restarts holding an access token the server refuses although it looks fresh
  // (revoked, or the device clock is off): here, one with a broken signature.
  const held = store.load()!
  store.save({ ...held, accessToken: held.accessToken.slice(0, -4) + (held.accessToken.endsWith("AAAA") ? "BBBB" : "AAAA") })

  const counter = countingFetch()
  const session = new Session({ baseUrl: server.baseUrl, tokenStore: store, fetch: counter.fetch })
  const profiles = await Promise.all(Array.from({ length: 5 }, () => session.rest.get("/api/users/profile")))
  assert.deepEqual(profiles.map(p => p.id), Array(5).fill(user.id), "every request succeeds after the refresh")
  assert.equal(counter.count("/api/auth/refresh"), 1, "one refresh for all of them")
  assert.equal(counter.count("/api/users/profile"), 10, "each request was refused once and retried once")
  assert.notEqual(store.load()!.refreshToken, held.refreshToken, "the rotated refresh token is stored")
})

test("an access token about to expire is refreshed before use, once", async () => {
  const user = await registerUser(server)
  let skew = 0
  const counter = countingFetch()
  const session = new Session({ baseUrl: server.baseUrl, fetch: counter.fetch, now: () => Date.now() + skew })
  await session.login(user.email, user.password)
  const before = (await session.stored())!

  await session.rest.get("/api/users/profile")
  assert.equal(counter.count("/api/auth/refresh"), 0, "a fresh token is used as it is")

  skew = 14.5 * 60_000 // 30 s left: within the refresh margin
  await Promise.all([session.rest.get("/api/users/profile"), session.rest.get("/api/partnerships/invitations")])
  assert.equal(counter.count("/api/auth/refresh"), 1)
  assert.equal(counter.count("/api/users/profile"), 2, "no request was sent with the old token")
  const after = (await session.stored())!
  assert.notEqual(after.accessToken, before.accessToken)
  assert.ok(after.accessExpiresAt - (Date.now() + skew) > 14 * 60_000, "the new token's expiry is counted from now")
})
