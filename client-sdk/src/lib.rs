//! The SplitSave client SDK (offline store, sync, typed operations). Work in progress.

pub mod api;
pub mod connection;
pub mod error;
pub mod store;

pub use error::{ClientError, Result};
