// A stock @automerge/automerge-repo client, driven by environment variables, that the end-to-end
// tests run against the SplitSave server to prove JS interop. It prints exactly one JSON line on
// stdout and exits 0 on success, 1 on failure; it never waits longer than TIMEOUT_MS.
//
//   SYNC_URL        ws://127.0.0.1:PORT/sync?token=JWT
//   DOC_URL         automerge:<document id>
//   ACTION          add-expense | read | change | session
//                   session: stays connected and takes commands, one JSON object a line on
//                   stdin, answering each with one JSON line on stdout (after a first
//                   {"ready": true}): {"change": BODY, "vars": {...}} writes and answers at once;
//                   {"until": EXPR} waits until the expression (over `d`) is true and answers
//                   with the document; {"acknowledged": true} waits until the server holds
//                   every local change; {"quit": true} ends the session
//   CHANGE          change: the body of a function (d, vars) run inside handle.change, as an app
//                   would write it; e.g. `d.expenses = {}` (the test's raw write)
//   VARS            change: a JSON object handed to CHANGE as `vars` (ids, amounts)
//   EXPENSE_ID      the key under `expenses`
//   EXPENSE_NAME    add-expense: the expense's name
//   EXPENSE_AMOUNT  add-expense: integer minor units (e.g. 4250 for 42.50)
//   ADDED_BY        add-expense: the adding user's uuid
//   TIMEOUT_MS      overall deadline (default 15000)

import { Repo } from "@automerge/automerge-repo"
import { WebSocketClientAdapter } from "@automerge/automerge-repo-network-websocket"

const POLL_MS = 25

function env(name, fallback) {
  const value = process.env[name]
  if (value === undefined || value === "") {
    if (fallback !== undefined) return fallback
    throw new Error(`missing environment variable ${name}`)
  }
  return value
}

function integerEnv(name, fallback) {
  const raw = env(name, fallback)
  if (!/^-?\d+$/.test(String(raw))) throw new Error(`${name} must be an integer, got ${raw}`)
  const value = Number(raw)
  if (!Number.isSafeInteger(value)) throw new Error(`${name} is out of range: ${raw}`)
  return value
}

/** Polls `check` until it returns a value other than undefined, or throws at the deadline. */
async function until(deadline, what, check) {
  for (;;) {
    const value = check()
    if (value !== undefined) return value
    if (Date.now() >= deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, POLL_MS))
  }
}

/** Rejects at the deadline so a find() that never settles cannot hang the process. */
function withDeadline(promise, deadline, what) {
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${what}`)),
      Math.max(0, deadline - Date.now())
    )
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

const sameHeads = (a, b) =>
  a !== undefined &&
  b !== undefined &&
  JSON.stringify([...a].sort()) === JSON.stringify([...b].sort())

/** The server's acknowledged heads equal ours: the server holds every local change. */
function acknowledgedHeads(repo, handle) {
  const ours = handle.heads()
  for (const peer of repo.peers) {
    const storageId = repo.getStorageIdOfPeer(peer)
    if (storageId === undefined) continue
    if (sameHeads(handle.getRemoteHeads(storageId), ours)) return ours
  }
  return undefined
}

// Plain JSON of a document value; 64-bit integers the server wrote arrive as BigInt.
const plain = value =>
  JSON.parse(JSON.stringify(value ?? {}, (_, v) => (typeof v === "bigint" ? Number(v) : v)))

async function run(repo, deadline) {
  const docUrl = env("DOC_URL")
  const action = env("ACTION")
  const expenseId = ["add-expense", "read"].includes(action) ? env("EXPENSE_ID") : undefined

  const signal = AbortSignal.timeout(Math.max(1, deadline - Date.now()))
  const handle = await withDeadline(
    repo.find(docUrl, { signal }),
    deadline,
    `the document ${docUrl}`
  )

  if (action === "add-expense") {
    const name = env("EXPENSE_NAME")
    const amount = integerEnv("EXPENSE_AMOUNT")
    const addedBy = env("ADDED_BY")
    handle.change(d => {
      if (d.expenses === undefined) d.expenses = {}
      const now = Date.now()
      d.expenses[expenseId] = {
        name,
        amount,
        category: "groceries",
        frequency: "monthly",
        added_by: addedBy,
        status: "active",
        created_at: now,
        updated_at: now,
      }
    })
    const heads = await until(deadline, "the server to acknowledge our heads", () =>
      acknowledgedHeads(repo, handle)
    )
    return { ok: true, heads, expenses: plain(handle.doc().expenses) }
  }

  if (action === "read") {
    const expense = await until(deadline, `expense ${expenseId}`, () => {
      const doc = handle.doc()
      return doc?.expenses?.[expenseId]
    })
    return { ok: true, heads: handle.heads(), expense: plain(expense) }
  }

  if (action === "change") {
    const body = env("CHANGE")
    const vars = JSON.parse(env("VARS", "{}"))
    // The test's raw write, run exactly as an app's change callback would run it.
    const write = new Function("d", "vars", body)
    handle.change(d => write(d, vars))
    const heads = await until(deadline, "the server to acknowledge our heads", () =>
      acknowledgedHeads(repo, handle)
    )
    // Acknowledged means the server's heads equal ours: any compensation it wrote after our
    // change has reached us too.
    return { ok: true, heads, doc: plain(handle.doc()) }
  }

  if (action === "session") {
    return await session(repo, handle, deadline)
  }

  throw new Error(`unknown ACTION ${action} (expected add-expense, read, change or session)`)
}

/** Runs the commands read from stdin (see ACTION=session) until `quit` or the deadline. */
async function session(repo, handle, deadline) {
  const { createInterface } = await import("node:readline")
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]()
  const say = value => process.stdout.write(JSON.stringify(value) + "\n")
  say({ ready: true, heads: handle.heads() })
  for (;;) {
    const next = await withDeadline(lines.next(), deadline, "the next command")
    if (next.done) return { ok: true, ended: "stdin closed" }
    const command = JSON.parse(next.value)
    if (command.quit) return { ok: true, ended: "quit" }
    if (command.change !== undefined) {
      const write = new Function("d", "vars", command.change)
      handle.change(d => write(d, command.vars ?? {}))
      say({ ok: true, heads: handle.heads() })
    } else if (command.until !== undefined) {
      const holds = new Function("d", `return (${command.until})`)
      await until(deadline, command.until, () => (holds(handle.doc()) ? true : undefined))
      say({ ok: true, heads: handle.heads(), doc: plain(handle.doc()) })
    } else if (command.acknowledged) {
      const heads = await until(deadline, "the server to acknowledge our heads", () =>
        acknowledgedHeads(repo, handle)
      )
      say({ ok: true, heads })
    } else {
      throw new Error(`unknown command ${next.value}`)
    }
  }
}

async function main() {
  let repo
  let result
  let status = 0
  try {
    const timeoutMs = integerEnv("TIMEOUT_MS", "15000")
    const deadline = Date.now() + timeoutMs
    const adapter = new WebSocketClientAdapter(env("SYNC_URL"))
    // Default share policy: the client must announce its documents to the server, or find()
    // never asks the server and fails with "unavailable".
    repo = new Repo({ network: [adapter] })
    result = await run(repo, deadline)
  } catch (err) {
    result = { ok: false, error: err instanceof Error ? err.message : String(err) }
    status = 1
  }
  if (repo !== undefined) {
    try {
      await withDeadline(repo.shutdown(), Date.now() + 2000, "repo shutdown")
    } catch {
      // Exiting below ends the process regardless; the result already says what happened.
    }
  }
  finish(result, status)
}

let finished = false

/** Prints the one result line and exits; later calls are ignored. */
function finish(result, status) {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(status))
}

// A stock adapter may throw from a socket callback (e.g. an HTTP error at upgrade); report it in
// the same one-line shape instead of a stack trace.
process.on("uncaughtException", err => {
  finish({ ok: false, error: `uncaught: ${err?.message ?? String(err)}` }, 1)
})

main()
