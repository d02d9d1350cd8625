// `npm run update:openapi`: starts the real server with the test harness
// (test/support/server.ts, compiled to dist-test), saves its /api/openapi.json as
// client-sdk/js/openapi.json; the npm script then regenerates src/generated/openapi.ts.
// Kept outside test/ so that `node --test` never runs it.

import { writeFileSync } from "node:fs"
import { join } from "node:path"

import { TestServer, repoRoot } from "../dist-test/test/support/server.js"

const server = await TestServer.start()
try {
  const response = await fetch(`${server.baseUrl}/api/openapi.json`)
  if (response.status !== 200) throw new Error(`/api/openapi.json answered ${response.status}`)
  const target = join(repoRoot(), "client-sdk", "js", "openapi.json")
  writeFileSync(target, JSON.stringify(await response.json(), null, 2) + "\n")
  process.stdout.write(`wrote ${target}\n`)
} finally {
  await server.stop()
}
