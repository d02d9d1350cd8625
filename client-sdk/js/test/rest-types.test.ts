/**
 * The REST client's types follow the OpenAPI document: wrong paths, missing path parameters and
 * bodies of the wrong shape do not compile (checked by `tsc` in `npm test`; the
 * `@ts-expect-error` lines fail the build if they ever compile), and answers are typed.
 */

import assert from "node:assert/strict"
import { test } from "node:test"

import { ApiError, RestClient } from "../src/rest.js"

test("calls are typed from the OpenAPI document", async () => {
  const requests: { method: string; url: string; body: unknown }[] = []
  const rest = new RestClient({
    baseUrl: "http://splitsave.invalid/",
    fetch: async (input, init) => {
      requests.push({ method: String(init?.method), url: String(input), body: init?.body === undefined ? undefined : JSON.parse(String(init.body)) })
      return new Response(JSON.stringify({ items: [], next_cursor: null }), { status: 200 })
    },
  })
  const page = await rest.get("/api/expenses", { query: { status: "active", limit: 20 } })
  const items: unknown[] = page.items
  assert.deepEqual(items, [])
  await rest.post("/api/partnerships/accept/{id}", { path: { id: "a b" } })
  await rest.put("/api/partnerships/status", { body: { status: "paused" } })
  assert.deepEqual(
    requests.map(r => [r.method, r.url, r.body]),
    [
      ["GET", "http://splitsave.invalid/api/expenses?status=active&limit=20", undefined],
      ["POST", "http://splitsave.invalid/api/partnerships/accept/a%20b", undefined],
      ["PUT", "http://splitsave.invalid/api/partnerships/status", { status: "paused" }],
    ]
  )

  if (Math.random() > 2) {
    // Never run: only compiled.
    // @ts-expect-error not a path of the API
    await rest.get("/api/nope")
    // @ts-expect-error the path parameter is required
    await rest.post("/api/partnerships/accept/{id}")
    // @ts-expect-error login needs a body
    await rest.post("/api/auth/login")
    // @ts-expect-error a body of the wrong shape
    await rest.post("/api/auth/login", { body: { email: "a@b.c", pass: "x" } })
    // @ts-expect-error PUT is not defined on this path
    await rest.put("/api/auth/login", { body: {} })
  }
})

test("a failure is an ApiError carrying the server's error body", async () => {
  const rest = new RestClient({
    baseUrl: "http://splitsave.invalid",
    fetch: async () =>
      new Response(JSON.stringify({ error: { code: "validation_failed", message: "invalid", details: { email: ["too long"] } } }), { status: 422 }),
  })
  const err = await rest.post("/api/auth/login", { body: { email: "x", password: "y" } }).catch(e => e)
  assert.ok(err instanceof ApiError)
  assert.equal(err.status, 422)
  assert.equal(err.code, "validation_failed")
  assert.deepEqual(err.details, { email: ["too long"] })
  assert.equal(err.request, "POST /api/auth/login")
})
