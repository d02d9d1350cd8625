//! The server's integration tests, in one test binary (one link of the server, automerge and
//! sqlx instead of one per file): a module per feature, and the helpers they share declared
//! once here.
//!
//! Tests are named `<feature>::…` inside the `integration` binary; run one feature with
//! `cargo test -p splitsave-server --test integration <feature>::`.

// Test support. `common` comes first so that its `on_both_backends!` is in scope in every
// module declared after it (the `auth_load` bench includes it too, by path).
#[macro_use]
mod common;
mod auth_common;
mod push_standins;
mod real_server;
mod sync_support;

// One module per feature.
mod admin_commands;
mod auth_flow;
mod cluster;
mod deploy_stack;
mod every_endpoint_auth;
mod export;
mod history;
mod http_skeleton;
mod import;
mod metrics;
mod partnerships_api;
mod push_delivery;
mod push_devices;
mod push_e2e;
mod rate_limits_shared;
mod rest_events;
mod rest_expenses;
mod rest_goals_approvals_messages;
mod rest_isolation;
mod run_modes;
mod sdk_client;
mod store_conformance;
mod store_push;
mod store_reads_approvals_messages;
mod store_sync;
mod string_types;
mod sync_behaviour;
mod sync_durability;
mod sync_interop;
mod sync_limits;
mod tracing_context;
