// --- document layer (schema, readers, operations, split, money) ---
export * from "./generated/schema.js"
export * from "./errors.js"
export { parseUuid, derivedId, addRequestId, newId } from "./ids.js"
export * from "./money.js"
export { trimText, charCount, validateName, validateMessageText, validateNote, validatePositiveAmount } from "./validate.js"
export * from "./read.js"
export { toStored, ensureCollection, putEntity, setField, deleteEntity, initPartnershipDocument } from "./write.js"
export type { NewPartnershipDocument } from "./write.js"
export * from "./ops.js"
export * from "./split.js"
// --- end document layer ---

// --- server: REST, sessions, sync connection, storage, client (rest.ts, session.ts,
// connection.ts, storage.ts, client.ts) ---
export { ApiError, NetworkError, RestClient } from "./rest.js"
export type { AuthProvider, ErrorBody, HttpMethod, PathsWith, RequestOptions, RestClientOptions, SuccessBody } from "./rest.js"
export type { components as ApiComponents, paths as ApiPaths } from "./generated/openapi.js"
export { DEFAULT_REFRESH_MARGIN_MS, KeyValueTokenStore, MemoryTokenStore, Session, SignedOutError } from "./session.js"
export type {
  RegisterRequest,
  SessionOptions,
  SignedOutEvent,
  SignedOutReason,
  StoredSession,
  StringStore,
  TokenStore,
  User,
} from "./session.js"
export { DEFAULT_SYNC_TIMEOUT_MS, FreshTokenWebSocketAdapter, SyncConnection, documentUrlForPartnership, syncUrlFor } from "./connection.js"
export type { AdapterOptions, SyncConnectionOptions, SyncState, TokenSource } from "./connection.js"
export { DEFAULT_INDEXEDDB_NAME, KeyValueStorageAdapter, fromBase64, indexedDbStorage, toBase64 } from "./storage.js"
export type { KeyValueStore } from "./storage.js"
export { NoPartnershipError, SplitSaveClient } from "./client.js"
export type { SplitSaveClientOptions } from "./client.js"
// --- end server ---
