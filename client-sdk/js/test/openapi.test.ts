/**
 * The committed OpenAPI document (client-sdk/js/openapi.json), and the types generated from it,
 * are what the real server serves: the typed REST client cannot drift from the server.
 */

import assert from "node:assert/strict"
import { readFileSync } from "node:fs"
import { join } from "node:path"
import { after, before, test } from "node:test"

import { pathToFileURL } from "node:url"

import { TestServer, repoRoot } from "./support/server.js"

const HOW_TO_UPDATE =
  "run `npm run update:openapi` in client-sdk/js (it starts the server, writes openapi.json from " +
  "/api/openapi.json and regenerates src/generated/openapi.ts), then review and commit both"

const packageDir = join(repoRoot(), "client-sdk", "js")

let server: TestServer
before(async () => {
  server = await TestServer.start()
})
after(async () => {
  await server?.stop()
})

test("the committed openapi.json is the document the server serves", async () => {
  const response = await fetch(`${server.baseUrl}/api/openapi.json`)
  assert.equal(response.status, 200)
  const served: unknown = await response.json()
  const committed: unknown = JSON.parse(readFileSync(join(packageDir, "openapi.json"), "utf8"))
  assert.deepStrictEqual(committed, served, `client-sdk/js/openapi.json differs from the server's /api/openapi.json: ${HOW_TO_UPDATE}`)
})

test("src/generated/openapi.ts is generated from the committed openapi.json", async () => {
  // The generator itself (scripts/generate-openapi.mjs).
  const script = pathToFileURL(join(packageDir, "scripts", "generate-openapi.mjs")).href
  const { generate } = (await import(script)) as { generate: (spec: unknown) => Promise<string> }
  const spec: unknown = JSON.parse(readFileSync(join(packageDir, "openapi.json"), "utf8"))
  const generated = readFileSync(join(packageDir, "src", "generated", "openapi.ts"), "utf8")
  assert.ok(generated === (await generate(spec)), `src/generated/openapi.ts is stale: ${HOW_TO_UPDATE}`)
})
