//! The on-disk local store. (Being implemented: see the signatures.)

use std::path::{Path, PathBuf};

use automerge::sync;
use automerge::Automerge;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The store format this SDK writes.
pub const STORE_FORMAT: u32 = 1;

/// Why the local store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written.
    #[error("local store {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file exists but does not hold what it should.
    #[error("local store {path} is corrupt: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The store was written by a newer SDK.
    #[error("local store format {found} is newer than this SDK's ({STORE_FORMAT})")]
    NewerFormat {
        /// The format found.
        found: u32,
    },
}

/// The tokens of a signed-in session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredTokens {
    /// JWT access token.
    pub access_token: String,
    /// Opaque refresh token (single use).
    pub refresh_token: String,
    /// When the access token expires, unix milliseconds.
    pub access_expires_at_ms: i64,
}

/// Everything the store keeps besides the document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMeta {
    /// Format version of the store.
    pub format: u32,
    /// This device's automerge actor id (hex).
    pub actor_id: String,
    /// This device's peer id on the sync protocol.
    pub peer_id: String,
    /// This device's storage id (so the server keeps our sync state across connections).
    pub storage_id: String,
    /// The server the store belongs to.
    pub server_url: Option<String>,
    /// The signed-in user.
    pub user_id: Option<Uuid>,
    /// The signed-in user's email.
    pub email: Option<String>,
    /// The session's tokens; `None` when signed out.
    pub tokens: Option<StoredTokens>,
    /// The partnership whose document this store holds.
    pub partnership_id: Option<Uuid>,
    /// The last time the document was fully in sync with the server, unix milliseconds.
    pub last_synced_at_ms: Option<i64>,
}

/// The local store in a directory.
pub struct LocalStore {
    dir: PathBuf,
    meta: StoreMeta,
}

impl LocalStore {
    /// Opens (creating when missing) the store in `dir`.
    pub fn open(dir: impl AsRef<Path>) -> Result<LocalStore, StoreError> {
        let _ = dir;
        todo!()
    }
    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// The metadata.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }
    /// Changes the metadata and writes it durably.
    pub fn update_meta(&mut self, f: impl FnOnce(&mut StoreMeta)) -> Result<(), StoreError> {
        let _ = f;
        todo!()
    }
    /// The stored document, if any.
    pub fn load_document(&self) -> Result<Option<Automerge>, StoreError> {
        todo!()
    }
    /// Appends the document's changes since the last save durably.
    pub fn append_changes(&mut self, doc: &mut Automerge) -> Result<(), StoreError> {
        let _ = doc;
        todo!()
    }
    /// Writes a full snapshot durably and empties the change log.
    pub fn save_snapshot(&mut self, doc: &mut Automerge) -> Result<(), StoreError> {
        let _ = doc;
        todo!()
    }
    /// Deletes the stored document, change log and sync state.
    pub fn clear_document(&mut self) -> Result<(), StoreError> {
        todo!()
    }
    /// The saved sync state with the server.
    pub fn load_sync_state(&self) -> Result<Option<sync::State>, StoreError> {
        todo!()
    }
    /// Saves the sync state with the server durably.
    pub fn save_sync_state(&mut self, state: &sync::State) -> Result<(), StoreError> {
        let _ = state;
        todo!()
    }
}
