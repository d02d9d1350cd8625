/**
 * The real SplitSave server for tests: the `splitsave` binary on its embedded SQLite database,
 * in a fresh temporary directory, on a free port.
 *
 * Usage (node:test):
 *
 * ```ts
 * import { after, before, test } from "node:test"
 * import { TestServer, makeCouple } from "./support/server.js"
 *
 * let server: TestServer
 * before(async () => { server = await TestServer.start() })
 * after(async () => { await server.stop() })
 *
 * test("…", async () => {
 *   const couple = await makeCouple(server)          // two users, partners, and their document
 *   // couple.inviter / couple.invitee: { email, password, id, accessToken, refreshToken }
 *   // couple.documentUrl: "automerge:…"; server.baseUrl, server.syncUrl
 * })
 * ```
 *
 * - The binary is `$SPLITSAVE_BIN`, else `<repo>/target/debug/splitsave` (under
 *   `$CARGO_TARGET_DIR` when set). When it is missing it is built first with
 *   `cargo build -p splitsave-server --bin splitsave` — the tests never skip for want of it.
 * - The server listens on `PORT=0` (the kernel picks a free port, no race with other tests)
 *   and the port is read from its "listening" log line; start-up is complete when `/readyz`
 *   answers 200, polled until a deadline.
 * - Each server gets its own data directory (SQLite file, logs) and fixed test JWT secrets
 *   ({@link TEST_JWT_SECRET}), so a test may mint or inspect tokens. `env` adds or overrides
 *   any variable of docs/configuration.md (e.g. `SYNC_REVALIDATE_SECS`).
 * - `stop()` kills the process and deletes the directory; a process-exit hook kills servers a
 *   crashed test left behind. `restart()` keeps the directory and (by default) the port, as a
 *   server restart looks to clients that reconnect by themselves.
 */

import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { randomUUID } from "node:crypto"
import { existsSync, mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"

/** The HMAC key of access tokens on every test server (≥ 32 bytes, as the server requires). */
export const TEST_JWT_SECRET = "test-access-token-secret-0123456789abcdef"
/** The key of refresh-token hashes on every test server. */
export const TEST_JWT_REFRESH_SECRET = "test-refresh-token-secret-0123456789abcdef"
/** The password of users made by {@link registerUser}. */
export const TEST_PASSWORD = "correct horse battery staple"

/** How long a server may take from spawn to a 200 on `/readyz`. */
const START_DEADLINE_MS = 30_000
const POLL_MS = 50
/** How much of the server's output is kept for failure messages. */
const LOG_KEEP_CHARS = 200_000

export interface ServerOptions {
  /** Extra environment (docs/configuration.md), on top of the test defaults. */
  env?: Record<string, string>
  /** The binary; default {@link serverBinary}. */
  binary?: string
  /** A fixed port instead of a free one. */
  port?: number
  /** Deadline for `/readyz`, default 30 s. */
  startDeadlineMs?: number
}

/** The repository root: the nearest directory above this file holding `Cargo.lock`. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (;;) {
    if (existsSync(join(dir, "Cargo.lock"))) return dir
    const up = dirname(dir)
    if (up === dir) throw new Error("cannot find the repository root (no Cargo.lock above the test files)")
    dir = up
  }
}

/** `$SPLITSAVE_BIN`, or the debug build of the workspace. */
export function serverBinary(): string {
  const explicit = process.env["SPLITSAVE_BIN"]
  if (explicit !== undefined && explicit !== "") return explicit
  const target = process.env["CARGO_TARGET_DIR"] || join(repoRoot(), "target")
  return join(target, "debug", "splitsave")
}

/** The binary, built first when it is missing (cargo's own lock serialises parallel builds). */
export function ensureServerBinary(binary = serverBinary()): string {
  if (existsSync(binary)) return binary
  if (process.env["SPLITSAVE_BIN"]) throw new Error(`SPLITSAVE_BIN=${binary} does not exist`)
  process.stderr.write(`building the server (${binary} is missing)…\n`)
  const built = spawnSync("nice", ["cargo", "build", "-p", "splitsave-server", "--bin", "splitsave"], {
    cwd: repoRoot(),
    stdio: ["ignore", "inherit", "inherit"],
  })
  if (built.status !== 0 || !existsSync(binary)) {
    throw new Error(`cargo build -p splitsave-server --bin splitsave failed (status ${built.status}); ${binary} is still missing`)
  }
  return binary
}

const running = new Set<ChildProcess>()
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL")
})

/** One running server; see the module comment. */
export class TestServer {
  readonly dataDir: string
  readonly #options: ServerOptions
  #child: ChildProcess | undefined
  #port = 0
  #log = ""

  private constructor(dataDir: string, options: ServerOptions) {
    this.dataDir = dataDir
    this.#options = options
  }

  /** Starts a server in a new data directory and waits until it is ready. */
  static async start(options: ServerOptions = {}): Promise<TestServer> {
    const binary = ensureServerBinary(options.binary)
    const server = new TestServer(mkdtempSync(join(tmpdir(), "splitsave-js-test-")), { ...options, binary })
    try {
      await server.#launch(options.port ?? 0)
    } catch (err) {
      rmSync(server.dataDir, { recursive: true, force: true })
      throw err
    }
    return server
  }

  get port(): number {
    return this.#port
  }

  /** `http://127.0.0.1:<port>`; REST paths start with `/api`. */
  get baseUrl(): string {
    return `http://127.0.0.1:${this.#port}`
  }

  /** `ws://127.0.0.1:<port>/sync` (add `?token=`). */
  get syncUrl(): string {
    return `ws://127.0.0.1:${this.#port}/sync`
  }

  /** `ws://127.0.0.1:<port>/sync?token=<token>`, as a stock automerge-repo client connects. */
  syncUrlWithToken(token: string): string {
    return `${this.syncUrl}?token=${encodeURIComponent(token)}`
  }

  /** The server's output so far (the last 200 kB), for failure messages. */
  log(): string {
    return this.#log
  }

  /** Kills the server (SIGKILL: no graceful drain) and starts it again on the same data; by default on the same port. */
  async restart(options: { samePort?: boolean } = {}): Promise<void> {
    await this.#kill()
    await this.#launch(options.samePort === false ? 0 : this.#port)
  }

  /** Kills the server and deletes its data directory. */
  async stop(): Promise<void> {
    await this.#kill()
    rmSync(this.dataDir, { recursive: true, force: true })
  }

  async #launch(port: number): Promise<void> {
    const env: Record<string, string> = {
      PATH: process.env["PATH"] ?? "/usr/bin:/bin",
      SPLITSAVE_DATA_DIR: this.dataDir,
      DATABASE_URL: `sqlite://${join(this.dataDir, "splitsave.db")}`,
      PORT: String(port),
      JWT_SECRET: TEST_JWT_SECRET,
      JWT_REFRESH_SECRET: TEST_JWT_REFRESH_SECRET,
      RUST_LOG: "info,sqlx=warn,tower_http=warn",
      NO_COLOR: "1",
      ...this.#options.env,
    }
    // The data directory as working directory: no `.env` of the repository is picked up.
    const child = spawn(this.#options.binary!, ["serve"], { cwd: this.dataDir, env, stdio: ["ignore", "pipe", "pipe"] })
    this.#child = child
    running.add(child)
    child.on("exit", () => running.delete(child))
    let exited: string | undefined
    child.on("exit", (code, signal) => (exited = `exited with ${code ?? signal}`))
    child.on("error", err => (exited = `failed to spawn: ${err.message}`))
    let listening: number | undefined
    const onOutput = (chunk: Buffer): void => {
      this.#log = (this.#log + chunk.toString("utf8")).slice(-LOG_KEEP_CHARS)
      if (listening === undefined) listening = listeningPort(this.#log)
    }
    child.stdout!.on("data", onOutput)
    child.stderr!.on("data", onOutput)

    const deadline = Date.now() + (this.#options.startDeadlineMs ?? START_DEADLINE_MS)
    for (;;) {
      if (exited !== undefined) throw new Error(`the server ${exited} before it was ready; log:\n${this.#log}`)
      if (listening !== undefined && (await answers200(`http://127.0.0.1:${listening}/readyz`))) {
        this.#port = listening
        return
      }
      if (Date.now() >= deadline) {
        await this.#kill()
        throw new Error(`the server was not ready within the deadline; log:\n${this.#log}`)
      }
      await new Promise(resolve => setTimeout(resolve, POLL_MS))
    }
  }

  async #kill(): Promise<void> {
    const child = this.#child
    this.#child = undefined
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    const gone = new Promise(resolve => child.once("exit", resolve))
    child.kill("SIGKILL")
    await gone
  }
}

/** The port of the server's "listening address=0.0.0.0:PORT" line, once it appeared. */
function listeningPort(log: string): number | undefined {
  // eslint-disable-next-line no-control-regex
  const plain = log.replace(/\x1b\[[0-9;]*m/g, "")
  for (const line of plain.split("\n")) {
    if (!/\blistening\b/.test(line) || /metrics/.test(line)) continue
    const match = /(?:0\.0\.0\.0|127\.0\.0\.1|\[::\]|\[::1\]):(\d+)/.exec(line)
    if (match !== null) return Number(match[1])
  }
  return undefined
}

async function answers200(url: string): Promise<boolean> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) })
    await response.body?.cancel()
    return response.status === 200
  } catch {
    return false
  }
}

/** A JSON call to the server with plain `fetch`: the status and the parsed body (or undefined). */
export async function call(
  server: TestServer,
  method: string,
  path: string,
  options: { token?: string; body?: unknown } = {}
): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = {}
  if (options.token !== undefined) headers["authorization"] = `Bearer ${options.token}`
  if (options.body !== undefined) headers["content-type"] = "application/json"
  const response = await fetch(server.baseUrl + path, {
    method,
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
  })
  const text = await response.text()
  return { status: response.status, body: text === "" ? undefined : JSON.parse(text) }
}

/** A registered user and the tokens of its registration. */
export interface TestUser {
  id: string
  email: string
  password: string
  name: string
  accessToken: string
  refreshToken: string
}

/** Registers a user with a unique email and {@link TEST_PASSWORD}; `fields` adds or overrides registration fields. */
export async function registerUser(server: TestServer, fields: Record<string, unknown> = {}): Promise<TestUser> {
  const name = typeof fields["name"] === "string" ? fields["name"] : "Tester"
  const body = {
    email: `${name.toLowerCase().replace(/[^a-z0-9]/g, "")}-${randomUUID()}@example.com`,
    password: TEST_PASSWORD,
    name,
    currency: "EUR",
    ...fields,
  }
  const answer = await call(server, "POST", "/api/auth/register", { body })
  if (answer.status !== 201) throw new Error(`register answered ${answer.status}: ${JSON.stringify(answer.body)}`)
  return {
    id: answer.body.user.id,
    email: body.email,
    password: body.password,
    name,
    accessToken: answer.body.access_token,
    refreshToken: answer.body.refresh_token,
  }
}

/** Two partners and their shared document. */
export interface Couple {
  /** Registered first; sent the invitation. */
  inviter: TestUser
  /** Accepted it. */
  invitee: TestUser
  partnershipId: string
  /** `automerge:<documentId>`, as `GET /api/partnerships/current` answers it. */
  documentUrl: string
  /** The bs58check document id (the URL without `automerge:`). */
  documentId: string
}

/**
 * Registers two users and makes them partners through the REST API: the first invites the
 * second by email (`approval_threshold` optional), the second accepts.
 */
export async function makeCouple(
  server: TestServer,
  options: { inviter?: Record<string, unknown>; invitee?: Record<string, unknown>; approvalThreshold?: string } = {}
): Promise<Couple> {
  const inviter = await registerUser(server, { name: "Ann", ...options.inviter })
  const invitee = await registerUser(server, { name: "Ben", ...options.invitee })
  const invite = await call(server, "POST", "/api/partnerships/invite", {
    token: inviter.accessToken,
    body: { email: invitee.email, ...(options.approvalThreshold ? { approval_threshold: options.approvalThreshold } : {}) },
  })
  if (invite.status !== 201) throw new Error(`invite answered ${invite.status}: ${JSON.stringify(invite.body)}`)
  const accepted = await call(server, "POST", `/api/partnerships/accept/${invite.body.id}`, { token: invitee.accessToken })
  if (accepted.status !== 200) throw new Error(`accept answered ${accepted.status}: ${JSON.stringify(accepted.body)}`)
  const current = await call(server, "GET", "/api/partnerships/current", { token: inviter.accessToken })
  const documentUrl: unknown = current.body?.document_url
  if (current.status !== 200 || typeof documentUrl !== "string") {
    throw new Error(`no document after accepting: ${current.status} ${JSON.stringify(current.body)}`)
  }
  return {
    inviter,
    invitee,
    partnershipId: current.body.id,
    documentUrl,
    documentId: documentUrl.replace(/^automerge:/, ""),
  }
}

/** Polls `check` until it returns something other than undefined/false, or throws at the deadline. */
export async function eventually<T>(what: string, check: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await check()
    if (value !== undefined && value !== false) return value
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await new Promise(resolve => setTimeout(resolve, 25))
  }
}

/**
 * An example binary of the Rust client SDK (`client-sdk/examples/<name>.rs`), as
 * `cargo test --workspace` builds it (it builds every example): `cargo test --workspace --no-run`
 * here is a no-op after the Rust tests ran and builds what changed otherwise. Building the
 * example alone (`cargo build -p splitsave-client --example …`) would resolve the crates'
 * features differently from the workspace's test build and compile automerge, tokio and the
 * rest a second time (three minutes in CI). Returns the binary's path.
 */
export function buildClientExample(name: string): string {
  const target = process.env["CARGO_TARGET_DIR"] || join(repoRoot(), "target")
  const built = spawnSync("nice", ["cargo", "test", "--workspace", "--no-run", "--quiet"], {
    cwd: repoRoot(),
    stdio: ["ignore", "inherit", "inherit"],
  })
  const binary = join(target, "debug", "examples", name)
  if (built.status !== 0 || !existsSync(binary)) {
    throw new Error(`cargo test --workspace --no-run failed or built no example ${name} (status ${built.status})`)
  }
  return binary
}
