//! The client SDK's integration tests, one binary with a module per feature (each module's doc
//! says what it sets up): the sync connection against an in-process protocol server, the local
//! store across restarts and crashes, and interoperability with the stock JS sync server.
//!
//! The SDK working against the real SplitSave server is tested from the server's side
//! (`server/tests/integration/sdk_client.rs`) and end to end in the workspace's `tests/`.

mod connection;
mod js_server;
mod store;
