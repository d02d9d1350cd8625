//! The SplitSave client SDK (offline store, sync, typed operations). Work in progress.

pub mod connection;
