/** The package entry point exports the server-facing API (index.ts's "server" block). */

import assert from "node:assert/strict"
import { test } from "node:test"

import * as pkg from "../src/index.js"

test("the package exports the client, session, REST, connection and storage API", () => {
  for (const name of [
    "SplitSaveClient",
    "Session",
    "RestClient",
    "ApiError",
    "NetworkError",
    "SignedOutError",
    "MemoryTokenStore",
    "KeyValueTokenStore",
    "SyncConnection",
    "FreshTokenWebSocketAdapter",
    "KeyValueStorageAdapter",
    "indexedDbStorage",
    "documentUrlForPartnership",
    "syncUrlFor",
  ]) {
    assert.equal(typeof (pkg as Record<string, unknown>)[name], "function", `${name} is exported`)
  }
})
