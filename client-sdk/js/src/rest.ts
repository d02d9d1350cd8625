/**
 * A small typed client for the REST API under `/api`, over `fetch`.
 *
 * Paths, path and query parameters, request bodies and success bodies are all typed from
 * `src/generated/openapi.ts`, which openapi-typescript generates from the server's own OpenAPI
 * document (`npm run generate:openapi`), so a call the server would not understand does not
 * compile. Errors arrive as {@link ApiError}, carrying the server's error body
 * (`{"error": {"code", "message", "details"?}}`) and the HTTP status.
 *
 * Authentication is pluggable ({@link AuthProvider}): with one, every call carries
 * `Authorization: Bearer <access token>` and a 401 triggers one token refresh and one retry —
 * the server may refuse a token before its expiry (a password change bumps the token version).
 */

import type { components, paths } from "./generated/openapi.js"

/** The error body every failing endpoint answers with. */
export type ErrorBody = components["schemas"]["ErrorBody"]

/** The HTTP methods the API uses, as openapi-typescript names them. */
export type HttpMethod = "get" | "put" | "post" | "delete" | "patch"

/** The paths that have an operation for `M`. */
export type PathsWith<M extends HttpMethod> = {
  [P in keyof paths]: paths[P] extends { [K in M]: infer Op } ? ([Op] extends [never] ? never : Op extends undefined ? never : P) : never
}[keyof paths]

/** The operation (parameters, body, responses) of `M` on `P`. */
export type OperationOf<P extends keyof paths, M extends HttpMethod> = NonNullable<paths[P][M & keyof paths[P]]>

type ParametersOf<Op> = Op extends { parameters: infer X } ? X : never
type PathParamsOf<Op> = ParametersOf<Op> extends { path: infer X } ? ([X] extends [never] ? never : X) : never
type QueryParamsOf<Op> = ParametersOf<Op> extends { query?: infer X } ? ([X] extends [never] ? never : Exclude<X, undefined>) : never
type BodyOf<Op> = Op extends { requestBody: { content: { "application/json": infer B } } }
  ? B
  : Op extends { requestBody?: { content: { "application/json": infer B } } }
    ? ([B] extends [never] ? never : B | undefined)
    : never

/** The options of one call: `path` and `body` are required exactly when the operation needs them. */
export type RequestOptions<Op> = ([PathParamsOf<Op>] extends [never] ? { path?: undefined } : { path: PathParamsOf<Op> }) &
  ([QueryParamsOf<Op>] extends [never] ? { query?: undefined } : { query?: QueryParamsOf<Op> }) &
  ([BodyOf<Op>] extends [never] ? { body?: undefined } : undefined extends BodyOf<Op> ? { body?: BodyOf<Op> } : { body: BodyOf<Op> }) & {
    /** Aborts the request (e.g. when a screen closes). */
    signal?: AbortSignal
    /** Extra headers (a request id for tracing, say). */
    headers?: Record<string, string>
  }

type SuccessStatus = 200 | 201 | 202 | 203 | 204
type JsonContentOf<R> = R extends { content: { "application/json": infer J } } ? J : undefined
type ResponsesOf<Op> = Op extends { responses: infer R } ? R : never

/** The body of a successful answer (`undefined` for 204). */
export type SuccessBody<Op> = {
  [S in keyof ResponsesOf<Op>]: S extends SuccessStatus ? JsonContentOf<ResponsesOf<Op>[S]> : never
}[keyof ResponsesOf<Op>]

/** Options are optional in a call exactly when nothing in them is required. */
type OptionsArg<Op> = {} extends RequestOptions<Op> ? [options?: RequestOptions<Op>] : [options: RequestOptions<Op>]

/**
 * Supplies access tokens to the client; {@link Session} implements it. Kept an interface so
 * the REST client does not own the session and tests can plug a fake.
 */
export interface AuthProvider {
  /** A token valid for a while yet (refreshed first when it is about to expire). */
  accessToken(): Promise<string>
  /**
   * The server refused `token` (401): a fresh token, refreshing only if `token` is still the
   * current one, so that concurrent refusals of the same token cost one refresh.
   */
  tokenRejected(token: string): Promise<string>
}

/** The server answered with an error status: its status and its JSON error body. */
export class ApiError extends Error {
  override readonly name = "ApiError"
  /** The HTTP status (401, 409, 422…). */
  readonly status: number
  /** The server's stable error code (`invalid_credentials`, `validation_failed`…), or `http_<status>` for a non-JSON answer. */
  readonly code: string
  /** Per-field messages of a 422, or other details the server gave. */
  readonly details: unknown
  /** The parsed body when it was the server's error shape. */
  readonly body: ErrorBody | undefined
  /** The request that failed, `METHOD /path`. */
  readonly request: string

  constructor(status: number, body: ErrorBody | undefined, request: string, text?: string) {
    const code = body?.error.code ?? `http_${status}`
    super(`${request} failed with ${status} ${code}: ${body?.error.message ?? text ?? ""}`.trim())
    this.status = status
    this.code = code
    this.details = body?.error.details
    this.body = body
    this.request = request
  }
}

/** The request never got an answer (no network, DNS, server down); worth retrying later. */
export class NetworkError extends Error {
  override readonly name = "NetworkError"
  constructor(request: string, cause: unknown) {
    super(`${request} got no answer: ${cause instanceof Error ? cause.message : String(cause)}`, { cause })
  }
}

export interface RestClientOptions {
  /** The server's base URL, e.g. `https://api.example.com` (paths start with `/api`). */
  baseUrl: string
  /** Signs requests in; without it requests are anonymous (register, login, refresh). */
  auth?: AuthProvider
  /** The `fetch` to use (a test's counting wrapper, a polyfill); default the global one. */
  fetch?: typeof fetch
}

/** Typed calls to `/api`; see the module comment. */
export class RestClient {
  readonly baseUrl: string
  readonly #auth: AuthProvider | undefined
  readonly #fetch: typeof fetch

  constructor(options: RestClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "")
    this.#auth = options.auth
    this.#fetch = options.fetch ?? ((input, init) => globalThis.fetch(input, init))
  }

  /** A client for the same server with other authentication (or none). */
  withAuth(auth: AuthProvider | undefined): RestClient {
    return new RestClient({ baseUrl: this.baseUrl, auth, fetch: this.#fetch })
  }

  get<P extends PathsWith<"get">>(path: P, ...[options]: OptionsArg<OperationOf<P, "get">>): Promise<SuccessBody<OperationOf<P, "get">>> {
    return this.request("GET", path, options) as Promise<SuccessBody<OperationOf<P, "get">>>
  }

  post<P extends PathsWith<"post">>(path: P, ...[options]: OptionsArg<OperationOf<P, "post">>): Promise<SuccessBody<OperationOf<P, "post">>> {
    return this.request("POST", path, options) as Promise<SuccessBody<OperationOf<P, "post">>>
  }

  put<P extends PathsWith<"put">>(path: P, ...[options]: OptionsArg<OperationOf<P, "put">>): Promise<SuccessBody<OperationOf<P, "put">>> {
    return this.request("PUT", path, options) as Promise<SuccessBody<OperationOf<P, "put">>>
  }

  delete<P extends PathsWith<"delete">>(
    path: P,
    ...[options]: OptionsArg<OperationOf<P, "delete">>
  ): Promise<SuccessBody<OperationOf<P, "delete">>> {
    return this.request("DELETE", path, options) as Promise<SuccessBody<OperationOf<P, "delete">>>
  }

  /**
   * The untyped call under the typed methods: fills `{name}` path segments, adds the query,
   * sends the body as JSON, and answers the parsed JSON body (or `undefined` when empty).
   */
  async request(
    method: string,
    path: string,
    options: { path?: unknown; query?: unknown; body?: unknown; signal?: AbortSignal; headers?: Record<string, string> } = {}
  ): Promise<unknown> {
    const url = this.baseUrl + fillPath(path, options.path) + queryString(options.query)
    const label = `${method} ${path}`
    const headers: Record<string, string> = { accept: "application/json", ...options.headers }
    let body: string | undefined
    if (options.body !== undefined) {
      headers["content-type"] = "application/json"
      body = JSON.stringify(options.body)
    }
    const send = async (token: string | undefined): Promise<Response> => {
      const h = token === undefined ? headers : { ...headers, authorization: `Bearer ${token}` }
      try {
        return await this.#fetch(url, { method, headers: h, body, signal: options.signal })
      } catch (err) {
        if (options.signal?.aborted) throw err
        throw new NetworkError(label, err)
      }
    }

    let token = this.#auth === undefined ? undefined : await this.#auth.accessToken()
    let response = await send(token)
    if (response.status === 401 && this.#auth !== undefined && token !== undefined) {
      // Refused before its expiry (revoked, token version bumped): one refresh, one retry.
      await response.body?.cancel()
      token = await this.#auth.tokenRejected(token)
      response = await send(token)
    }
    return readAnswer(response, label)
  }
}

/** The parsed success body, or an {@link ApiError} built from the error body. */
async function readAnswer(response: Response, label: string): Promise<unknown> {
  const text = await response.text()
  if (response.ok) {
    return text === "" ? undefined : JSON.parse(text)
  }
  let parsed: unknown
  try {
    parsed = text === "" ? undefined : JSON.parse(text)
  } catch {
    parsed = undefined
  }
  throw new ApiError(response.status, isErrorBody(parsed) ? parsed : undefined, label, text.slice(0, 200))
}

function isErrorBody(value: unknown): value is ErrorBody {
  if (typeof value !== "object" || value === null || !("error" in value)) return false
  const error = (value as { error: unknown }).error
  return typeof error === "object" && error !== null && typeof (error as { code?: unknown }).code === "string"
}

function fillPath(template: string, params: unknown): string {
  return template.replace(/\{([^}]+)\}/g, (_, name: string) => {
    const value = (params as Record<string, unknown> | undefined)?.[name]
    if (value === undefined || value === null) throw new TypeError(`missing path parameter ${name} for ${template}`)
    return encodeURIComponent(String(value))
  })
}

function queryString(query: unknown): string {
  if (typeof query !== "object" || query === null) return ""
  const search = new URLSearchParams()
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined || value === null) continue
    search.append(key, String(value))
  }
  const s = search.toString()
  return s === "" ? "" : `?${s}`
}
