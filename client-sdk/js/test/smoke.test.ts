import { test } from "node:test"
import assert from "node:assert/strict"
import * as pkg from "../src/index.js"

test("the package loads", () => {
  assert.equal(typeof pkg, "object")
})
