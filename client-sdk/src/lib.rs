//! The SplitSave client SDK: an offline-first partnership document for apps.
//!
//! A [`Client`] keeps the couple's partnership document in a local store (a directory the app
//! chooses), applies every operation locally with the same rules as the server (sync-core's
//! operations and policy), and syncs with the server over `/sync` whenever it can reach it. An
//! app reads and edits offline; edits are on disk before the call returns and go to the server
//! on reconnect; the partner's changes arrive on the change feed ([`Client::events`]).
//!
//! Start with [`Client::open`], then [`Client::register`] or [`Client::login`], pair with
//! [`Client::invite`] / [`Client::accept_invitation`], and [`Client::start_sync`]. The crate
//! README walks through it; the `offline_couple` example runs it end to end.
//!
//! Layers, from the top: [`client`] (the app's API), [`sync`] (the reconnecting background task),
//! [`session`] (tokens), [`store`] (the on-disk format), [`api`] (REST calls) and [`connection`]
//! (the automerge-repo wire protocol, also used by the server's tests and load generator).

#![warn(missing_docs)]

pub mod api;
pub mod client;
pub mod connection;
pub mod error;
pub mod feed;
pub mod session;
pub mod store;
pub mod sync;

pub use client::{Client, ClientConfig, Credentials};
pub use error::{ClientError, Result};
pub use feed::{ClientEvent, Events, SyncState, SyncStatus};

/// The document's types and operations' inputs, from sync-core (the same crate the server
/// enforces with), so apps need no second dependency.
pub use splitsave_sync_core::{enums, events, history, ids, money, ops, schema, split, split_doc};

/// The crate README's example, compiled as a doctest so it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
