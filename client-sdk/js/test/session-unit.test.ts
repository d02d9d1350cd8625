/**
 * Session behaviours the real server cannot easily show: a refresh that gets no answer, or a
 * server error, keeps the session (the next call tries again); only a refusal ends it.
 */

import assert from "node:assert/strict"
import { test } from "node:test"

import { ApiError, NetworkError } from "../src/rest.js"
import { MemoryTokenStore, Session, type SignedOutEvent } from "../src/session.js"

/** A session whose access token is due for a refresh, over a scripted `fetch`. */
function sessionWith(answer: () => Promise<Response>) {
  const store = new MemoryTokenStore()
  store.save({ accessToken: "old-access", refreshToken: "r1", accessExpiresAt: Date.now() + 10_000 })
  const calls: string[] = []
  const session = new Session({
    baseUrl: "http://splitsave.invalid",
    tokenStore: store,
    fetch: async (input, init) => {
      calls.push(`${init?.method} ${new URL(String(input)).pathname}`)
      return answer()
    },
  })
  const events: SignedOutEvent[] = []
  session.onSignedOut(e => events.push(e))
  return { session, store, calls, events }
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } })

test("a refresh without an answer keeps the session and is tried again by the next call", async () => {
  let online = false
  const { session, store, calls, events } = sessionWith(async () => {
    if (!online) throw new TypeError("fetch failed")
    return json(200, { access_token: "new-access", refresh_token: "r2", token_type: "Bearer", expires_in: 900 })
  })
  await assert.rejects(session.accessToken(), NetworkError)
  assert.equal(await session.isSignedIn(), true)
  assert.deepEqual(events, [])
  online = true
  assert.equal(await session.accessToken(), "new-access")
  assert.equal(store.load()?.refreshToken, "r2")
  assert.deepEqual(calls, ["POST /api/auth/refresh", "POST /api/auth/refresh"])
})

test("a server error on refresh keeps the session; a refusal ends it", async () => {
  let status = 503
  const { session, events } = sessionWith(async () =>
    json(status, { error: { code: status === 503 ? "service_unavailable" : "invalid_refresh_token", message: "…" } })
  )
  const unavailable = await session.accessToken().catch(e => e)
  assert.ok(unavailable instanceof ApiError && unavailable.status === 503)
  assert.equal(await session.isSignedIn(), true)
  status = 401
  await assert.rejects(session.accessToken(), { name: "SignedOutError", reason: "refresh_refused" })
  assert.deepEqual(events.map(e => [e.reason, e.error?.code]), [["refresh_refused", "invalid_refresh_token"]])
})

test("concurrent callers share one refresh", async () => {
  let release!: () => void
  const gate = new Promise<void>(resolve => (release = resolve))
  const { session, calls } = sessionWith(async () => {
    await gate
    return json(200, { access_token: "new-access", refresh_token: "r2", token_type: "Bearer", expires_in: 900 })
  })
  const tokens = Promise.all(Array.from({ length: 10 }, () => session.accessToken()))
  await new Promise(resolve => setImmediate(resolve))
  release()
  assert.deepEqual(await tokens, Array(10).fill("new-access"))
  assert.equal(calls.length, 1)
})
