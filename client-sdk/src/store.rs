//! The on-disk local store.
//!
//! A phone app embeds the SDK and may be killed at any moment, then restarted
//! without a network. The store is what lets it come back with the partnership
//! document, every change the user wrote and the session's tokens. The app
//! chooses the directory; the store owns everything inside it.
//!
//! # Layout
//!
//! | file | holds |
//! | --- | --- |
//! | `meta.json` | [`StoreMeta`] as JSON: format, device ids, session, partnership |
//! | `document.automerge` | a full `Automerge::save()` snapshot of the document |
//! | `changes.log` | changes written since the snapshot, append-only |
//! | `sync-state.bin` | `automerge::sync::State::encode()` for the server |
//! | `store.lock` | locked while a [`LocalStore`] is open; its content is meaningless |
//!
//! Each `changes.log` record is framed as
//! `length: u32 LE | payload crc32: u32 LE | header crc32: u32 LE | payload`,
//! where the header checksum covers the first eight bytes and the payload holds
//! the changes in automerge's change-chunk encoding (`Automerge::save_after`).
//! The document is the snapshot (when there is one) with every record applied
//! in order. A record cut short by a crash can only be the last one: it is
//! ignored when reading and cut away by the next append. Damage anywhere
//! before the tail is reported as [`StoreError::Corrupt`] rather than skipped,
//! because skipping it would silently drop the user's changes.
//!
//! # Durability
//!
//! Every call that writes has made its write durable before it returns.
//! Whole files (`meta.json`, `document.automerge`, `sync-state.bin`) are
//! written to a `.tmp` sibling, fsynced, renamed over the old file, and the
//! directory is fsynced, so a crash leaves either the old or the new file,
//! never a mix. Appends fsync the log. When the log grows past
//! [`LOG_COMPACT_BYTES`] or [`LOG_COMPACT_RECORDS`], the next append writes a
//! snapshot instead and only then empties the log, so at every instant the
//! files on disk hold every change that was acknowledged.
//!
//! # Compatibility
//!
//! `meta.json` carries the store format ([`STORE_FORMAT`]). The promise: every
//! later SDK opens format-1 stores, migrating them forward when it needs to
//! (see `migrate`); the fixture in `tests/fixtures/store-format-1/` holds that
//! promise to account. A store whose format is newer than this SDK's is refused
//! with [`StoreError::NewerFormat`] and left untouched. Within one format, new
//! `meta.json` fields are always optional, unknown fields are kept when the
//! file is rewritten, and missing optional fields read as `None`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use automerge::sync;
use automerge::{ActorId, Automerge, ChangeHash};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The store format this SDK writes.
///
/// Raised only when the layout changes in a way an older SDK could misread;
/// every later SDK still opens stores of every earlier format.
pub const STORE_FORMAT: u32 = 1;

/// Past this many bytes of change log, the next append writes a snapshot
/// instead, so that opening the store never replays an unbounded log.
pub const LOG_COMPACT_BYTES: u64 = 1024 * 1024;

/// Past this many change log records, the next append writes a snapshot
/// instead, for the same reason as [`LOG_COMPACT_BYTES`].
pub const LOG_COMPACT_RECORDS: usize = 1000;

const META_FILE: &str = "meta.json";
const DOCUMENT_FILE: &str = "document.automerge";
const LOG_FILE: &str = "changes.log";
const SYNC_STATE_FILE: &str = "sync-state.bin";
const LOCK_FILE: &str = "store.lock";

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
    /// Another [`LocalStore`] (in this or another process) has the directory
    /// open; two writers would interleave their changes and lose some.
    #[error("local store {path} is already open elsewhere (lock file {lock} is held)")]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// The lock file that is held.
        lock: PathBuf,
    },
}

/// The tokens of a signed-in session.
///
/// Kept on disk so that a restarted app can keep working with its session
/// (and refresh it) without asking the user to sign in again.
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
///
/// Written as `meta.json`. Fields added later must be optional
/// (`#[serde(default)]`) so that format-1 stores keep opening.
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
    #[serde(default)]
    pub server_url: Option<String>,
    /// The signed-in user.
    #[serde(default)]
    pub user_id: Option<Uuid>,
    /// The signed-in user's email.
    #[serde(default)]
    pub email: Option<String>,
    /// The session's tokens; `None` when signed out.
    #[serde(default)]
    pub tokens: Option<StoredTokens>,
    /// The partnership whose document this store holds.
    #[serde(default)]
    pub partnership_id: Option<Uuid>,
    /// The last time the document was fully in sync with the server, unix milliseconds.
    #[serde(default)]
    pub last_synced_at_ms: Option<i64>,
}

impl StoreMeta {
    /// A new device's metadata: fresh random ids, nobody signed in.
    fn fresh() -> StoreMeta {
        StoreMeta {
            format: STORE_FORMAT,
            actor_id: to_hex(&rand::random::<[u8; 16]>()),
            peer_id: format!("splitsave-client-{}", Uuid::new_v4()),
            storage_id: Uuid::new_v4().to_string(),
            server_url: None,
            user_id: None,
            email: None,
            tokens: None,
            partnership_id: None,
            last_synced_at_ms: None,
        }
    }
}

/// The local store in a directory.
///
/// Holds the directory's lock for its whole lifetime, so only one
/// `LocalStore` at a time reads and writes a directory.
pub struct LocalStore {
    dir: PathBuf,
    meta: StoreMeta,
    /// `meta.json` fields this SDK does not know, written back unchanged.
    meta_extra: Map<String, Value>,
    /// What is known of the files on disk (filled lazily).
    disk: Mutex<DiskState>,
    /// Compaction thresholds (fields so that unit tests can lower them).
    compact_bytes: u64,
    compact_records: usize,
    /// Held open (and locked) until the store is dropped.
    _lock: File,
}

/// What the store knows of the document files, so that appends need not
/// reread them.
#[derive(Default)]
struct DiskState {
    /// Heads whose transitive dependencies are exactly the changes on disk.
    /// Not necessarily minimal; `None` until the files have been read.
    persisted_heads: Option<Vec<ChangeHash>>,
    /// Where the valid records of the log end; `None` until it has been read.
    log: Option<LogState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogState {
    /// Length of the valid records; anything after it is a torn record.
    valid_len: u64,
    /// Number of valid records.
    records: usize,
}

impl LocalStore {
    /// Opens (creating when missing) the store in `dir`.
    ///
    /// A directory without `meta.json` gets a fresh identity (actor id, peer id,
    /// storage id). Fails with [`StoreError::Locked`] while another
    /// `LocalStore` has the directory open, and with
    /// [`StoreError::NewerFormat`] (touching nothing) when a newer SDK wrote it.
    pub fn open(dir: impl AsRef<Path>) -> Result<LocalStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let meta_path = dir.join(META_FILE);

        // Refuse a newer store before creating anything in it (not even the lock).
        if let Some(bytes) = read_optional(&meta_path)? {
            parse_meta(&meta_path, &bytes)?;
        }

        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }
        let lock = acquire_lock(&dir)?;

        let mut store = LocalStore {
            dir,
            meta: StoreMeta::fresh(),
            meta_extra: Map::new(),
            disk: Mutex::new(DiskState::default()),
            compact_bytes: LOG_COMPACT_BYTES,
            compact_records: LOG_COMPACT_RECORDS,
            _lock: lock,
        };
        // Read again under the lock: the file may have changed meanwhile.
        match read_optional(&meta_path)? {
            Some(bytes) => {
                let parsed = parse_meta(&meta_path, &bytes)?;
                store.meta = parsed.meta;
                store.meta_extra = parsed.extra;
                if parsed.migrated {
                    store.write_meta(&store.meta)?;
                }
            }
            None => store.write_meta(&store.meta)?,
        }
        Ok(store)
    }

    /// The directory, so the app can tell where its data lives.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The metadata, read once at open and kept in step with every update.
    pub fn meta(&self) -> &StoreMeta {
        &self.meta
    }

    /// Changes the metadata and writes it durably.
    ///
    /// On error the metadata in memory is left as it was, matching the disk.
    pub fn update_meta(&mut self, f: impl FnOnce(&mut StoreMeta)) -> Result<(), StoreError> {
        let mut meta = self.meta.clone();
        f(&mut meta);
        if meta != self.meta {
            self.write_meta(&meta)?;
            self.meta = meta;
        }
        Ok(())
    }

    /// The stored document (snapshot plus logged changes), if any.
    ///
    /// The document's actor is set to this device's [`StoreMeta::actor_id`], so
    /// that changes made on it are attributed to this device across restarts.
    /// A torn last log record is ignored; earlier damage is
    /// [`StoreError::Corrupt`].
    pub fn load_document(&self) -> Result<Option<Automerge>, StoreError> {
        let Some(mut doc) = self.read_document()? else {
            return Ok(None);
        };
        doc.set_actor(self.actor()?);
        Ok(Some(doc))
    }

    /// Appends the document's changes that are not on disk yet, durably.
    ///
    /// The store remembers which changes it has written, so this may be called
    /// after every edit; it writes nothing when there is nothing new. When the
    /// log has grown past [`LOG_COMPACT_BYTES`] or [`LOG_COMPACT_RECORDS`] it
    /// writes a snapshot (see [`LocalStore::save_snapshot`]) instead. Changes
    /// already on disk that `doc` lacks are kept, never dropped.
    pub fn append_changes(&mut self, doc: &mut Automerge) -> Result<(), StoreError> {
        let persisted = self.persisted_heads()?;
        let (known, _) = split_heads(doc, &persisted);
        let payload = doc.save_after(&known);
        if payload.is_empty() {
            return Ok(());
        }
        let log = self.log_state()?;
        let record_len = (RECORD_HEADER_LEN + payload.len()) as u64;
        if log.records + 1 > self.compact_records || log.valid_len + record_len > self.compact_bytes
        {
            return self.save_snapshot(doc);
        }
        let record = frame_record(&payload).map_err(|reason| StoreError::Corrupt {
            path: self.path(LOG_FILE),
            reason,
        })?;
        self.append_record(log, &record)?;
        let mut disk = self.disk();
        disk.log = Some(LogState {
            valid_len: log.valid_len + record.len() as u64,
            records: log.records + 1,
        });
        disk.persisted_heads = Some(union_heads(doc, &persisted));
        Ok(())
    }

    /// Writes a full snapshot durably and empties the change log.
    ///
    /// The snapshot is in place before the log is emptied, so a crash in
    /// between leaves both (which load to the same document). Changes already
    /// on disk that `doc` lacks are merged into the snapshot rather than lost;
    /// to replace the document with an unrelated one, call
    /// [`LocalStore::clear_document`] first.
    pub fn save_snapshot(&mut self, doc: &mut Automerge) -> Result<(), StoreError> {
        let persisted = self.persisted_heads()?;
        let (_, missing) = split_heads(doc, &persisted);
        let bytes = if missing.is_empty() {
            doc.save()
        } else {
            let mut full = self.read_document()?.unwrap_or_default();
            full.merge(&mut doc.clone())
                .map_err(|e| StoreError::Corrupt {
                    path: self.path(DOCUMENT_FILE),
                    reason: format!("cannot merge the document into the stored one: {e}"),
                })?;
            full.save()
        };
        write_atomic(&self.dir, DOCUMENT_FILE, &bytes)?;

        let log_path = self.path(LOG_FILE);
        match OpenOptions::new().write(true).open(&log_path) {
            Ok(file) => {
                file.set_len(0).map_err(io_error(&log_path))?;
                file.sync_all().map_err(io_error(&log_path))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&log_path)(e)),
        }

        let mut disk = self.disk();
        disk.log = Some(LogState {
            valid_len: 0,
            records: 0,
        });
        disk.persisted_heads = Some(union_heads(doc, &persisted));
        Ok(())
    }

    /// Deletes the stored document, change log and sync state.
    ///
    /// Used when the user's partnership changes: the old document must not mix
    /// with the new one. The metadata stays. The sync state goes first, so a
    /// crash midway never leaves a sync state claiming changes we no longer
    /// have; the log goes before the snapshot, so what remains is always a
    /// whole (if older) document.
    pub fn clear_document(&mut self) -> Result<(), StoreError> {
        for name in [SYNC_STATE_FILE, LOG_FILE, DOCUMENT_FILE] {
            let path = self.path(name);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(&path)(e)),
            }
        }
        sync_dir(&self.dir)?;
        let mut disk = self.disk();
        disk.persisted_heads = Some(Vec::new());
        disk.log = Some(LogState {
            valid_len: 0,
            records: 0,
        });
        Ok(())
    }

    /// The saved sync state with the server, so that a reconnect resumes
    /// from what the server already has instead of starting over.
    pub fn load_sync_state(&self) -> Result<Option<sync::State>, StoreError> {
        let path = self.path(SYNC_STATE_FILE);
        let Some(bytes) = read_optional(&path)? else {
            return Ok(None);
        };
        sync::State::decode(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                reason: format!("not an automerge sync state: {e}"),
            })
    }

    /// Saves the sync state with the server durably.
    ///
    /// Save the document's changes first: a sync state must not describe
    /// changes the store does not have.
    pub fn save_sync_state(&mut self, state: &sync::State) -> Result<(), StoreError> {
        write_atomic(&self.dir, SYNC_STATE_FILE, &state.encode())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn disk(&self) -> MutexGuard<'_, DiskState> {
        self.disk.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This device's automerge actor id, so every change the device ever writes carries the
    /// same actor (the server binds it to the user on first use) and a document started before
    /// anything was stored gets it too.
    pub fn actor(&self) -> Result<ActorId, StoreError> {
        parse_actor(&self.meta.actor_id).map_err(|reason| StoreError::Corrupt {
            path: self.path(META_FILE),
            reason,
        })
    }

    fn write_meta(&self, meta: &StoreMeta) -> Result<(), StoreError> {
        let path = self.path(META_FILE);
        let mut value = serde_json::to_value(meta).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        if let Value::Object(fields) = &mut value {
            for (key, extra) in &self.meta_extra {
                if !fields.contains_key(key) {
                    fields.insert(key.clone(), extra.clone());
                }
            }
        }
        let mut bytes = serde_json::to_vec_pretty(&value).map_err(|e| StoreError::Corrupt {
            path,
            reason: format!("cannot encode: {e}"),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.dir, META_FILE, &bytes)
    }

    /// Reads snapshot and log into a document (actor not set), and records
    /// what is on disk.
    fn read_document(&self) -> Result<Option<Automerge>, StoreError> {
        let doc_path = self.path(DOCUMENT_FILE);
        let log_path = self.path(LOG_FILE);
        let snapshot = read_optional(&doc_path)?;
        let log_bytes = read_optional(&log_path)?.unwrap_or_default();
        let log = parse_log(&log_bytes).map_err(|reason| StoreError::Corrupt {
            path: log_path.clone(),
            reason,
        })?;
        let log_state = LogState {
            valid_len: log.valid_len as u64,
            records: log.records.len(),
        };

        let doc = if snapshot.is_none() && log.records.is_empty() {
            None
        } else {
            let mut doc = match &snapshot {
                Some(bytes) => Automerge::load(bytes).map_err(|e| StoreError::Corrupt {
                    path: doc_path,
                    reason: format!("not an automerge document: {e}"),
                })?,
                None => Automerge::new(),
            };
            for (i, (offset, payload)) in log.records.iter().enumerate() {
                doc.load_incremental(payload)
                    .map_err(|e| StoreError::Corrupt {
                        path: log_path.clone(),
                        reason: format!("record {i} at byte {offset} does not load: {e}"),
                    })?;
            }
            Some(doc)
        };

        let mut disk = self.disk();
        disk.log = Some(log_state);
        disk.persisted_heads = Some(doc.as_ref().map(|d| d.get_heads()).unwrap_or_default());
        Ok(doc)
    }

    fn persisted_heads(&self) -> Result<Vec<ChangeHash>, StoreError> {
        if let Some(heads) = self.disk().persisted_heads.clone() {
            return Ok(heads);
        }
        self.read_document()?;
        Ok(self.disk().persisted_heads.clone().unwrap_or_default())
    }

    fn log_state(&self) -> Result<LogState, StoreError> {
        if let Some(log) = self.disk().log {
            return Ok(log);
        }
        let path = self.path(LOG_FILE);
        let bytes = read_optional(&path)?.unwrap_or_default();
        let parsed = parse_log(&bytes).map_err(|reason| StoreError::Corrupt { path, reason })?;
        let log = LogState {
            valid_len: parsed.valid_len as u64,
            records: parsed.records.len(),
        };
        self.disk().log = Some(log);
        Ok(log)
    }

    /// Writes `record` after the valid records (cutting away a torn tail) and
    /// fsyncs the log.
    fn append_record(&self, log: LogState, record: &[u8]) -> Result<(), StoreError> {
        let path = self.path(LOG_FILE);
        let err = io_error(&path);
        let existed = path.exists();
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(&err)?;
        let len = file.metadata().map_err(&err)?.len();
        if len != log.valid_len {
            file.set_len(log.valid_len).map_err(&err)?;
        }
        file.seek(SeekFrom::Start(log.valid_len)).map_err(&err)?;
        file.write_all(record).map_err(&err)?;
        file.sync_all().map_err(&err)?;
        if !existed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }
}

/// Splits `heads` into those `doc` has and those it lacks.
fn split_heads(doc: &Automerge, heads: &[ChangeHash]) -> (Vec<ChangeHash>, Vec<ChangeHash>) {
    heads
        .iter()
        .copied()
        .partition(|h| doc.get_change_meta_by_hash(h).is_some())
}

/// Heads covering both `doc` and the changes under `persisted`.
fn union_heads(doc: &Automerge, persisted: &[ChangeHash]) -> Vec<ChangeHash> {
    let (_, missing) = split_heads(doc, persisted);
    let mut heads = doc.get_heads();
    heads.extend(missing);
    heads.sort();
    heads.dedup();
    heads
}

// ---------------------------------------------------------------------------
// meta.json and its migrations

struct ParsedMeta {
    meta: StoreMeta,
    extra: Map<String, Value>,
    migrated: bool,
}

fn parse_meta(path: &Path, bytes: &[u8]) -> Result<ParsedMeta, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let (value, migrated) = migrate(value).map_err(|e| match e {
        MigrateError::Newer(found) => StoreError::NewerFormat { found },
        MigrateError::Invalid(reason) => corrupt(reason),
    })?;
    let meta: StoreMeta =
        serde_json::from_value(value.clone()).map_err(|e| corrupt(e.to_string()))?;
    parse_actor(&meta.actor_id).map_err(corrupt)?;
    let known = match serde_json::to_value(&meta) {
        Ok(Value::Object(fields)) => fields,
        _ => Map::new(),
    };
    let extra = match value {
        Value::Object(fields) => fields
            .into_iter()
            .filter(|(k, _)| !known.contains_key(k))
            .collect(),
        _ => Map::new(),
    };
    Ok(ParsedMeta {
        meta,
        extra,
        migrated,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum MigrateError {
    /// Written by a newer SDK.
    Newer(u32),
    /// Not a format any SDK wrote.
    Invalid(String),
}

/// One step of migration: turns a `meta.json` of format `from` into format
/// `from + 1` (other files would be handled alongside, should a step need it).
type MigrationStep = fn(&mut Map<String, Value>);

/// The migration steps, by the format they start from. Empty while format 1
/// is the only format; a format-2 SDK adds `(1, step)` here.
const MIGRATIONS: &[(u32, MigrationStep)] = &[];

/// Brings a `meta.json` of any format this SDK knows up to [`STORE_FORMAT`],
/// returning it and whether anything changed (so the caller writes it back).
///
/// This hook is how the compatibility promise is kept: a store of format `n`
/// goes through every step from `n` on.
fn migrate(meta_json: Value) -> Result<(Value, bool), MigrateError> {
    let Value::Object(mut fields) = meta_json else {
        return Err(MigrateError::Invalid("not a JSON object".into()));
    };
    let format = fields
        .get("format")
        .and_then(Value::as_u64)
        .ok_or_else(|| MigrateError::Invalid("no numeric `format` field".into()))?;
    let format = u32::try_from(format).map_err(|_| MigrateError::Newer(u32::MAX))?;
    if format > STORE_FORMAT {
        return Err(MigrateError::Newer(format));
    }
    let mut current = format;
    while current < STORE_FORMAT {
        let Some((_, step)) = MIGRATIONS.iter().find(|(from, _)| *from == current) else {
            return Err(MigrateError::Invalid(format!(
                "format {current} was never written by any SDK"
            )));
        };
        step(&mut fields);
        current += 1;
        fields.insert("format".into(), current.into());
    }
    Ok((Value::Object(fields), current != format))
}

fn parse_actor(hex: &str) -> Result<ActorId, String> {
    if hex.is_empty() {
        return Err("empty actor_id".into());
    }
    ActorId::try_from(hex).map_err(|_| format!("actor_id {hex:?} is not hex"))
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0x0f)] as char);
    }
    out
}

// ---------------------------------------------------------------------------
// changes.log framing

const RECORD_HEADER_LEN: usize = 12;

/// Frames one log record: length, payload checksum, header checksum, payload.
fn frame_record(payload: &[u8]) -> Result<Vec<u8>, String> {
    if payload.is_empty() {
        return Err("refusing to write an empty record".into());
    }
    let len = u32::try_from(payload.len())
        .map_err(|_| format!("a record of {} bytes is too large", payload.len()))?;
    let mut record = Vec::with_capacity(RECORD_HEADER_LEN + payload.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(&crc32(payload).to_le_bytes());
    let header_crc = crc32(&record[..8]);
    record.extend_from_slice(&header_crc.to_le_bytes());
    record.extend_from_slice(payload);
    Ok(record)
}

/// The valid records of a log.
#[derive(Debug)]
struct ParsedLog<'a> {
    /// Each record's byte offset and payload.
    records: Vec<(usize, &'a [u8])>,
    /// Where the valid records end; bytes after it are a torn last record.
    valid_len: usize,
}

/// Reads the records of a log. A damaged record that is the last thing in the
/// file is what a crash mid-append leaves, so it ends the log; a damaged
/// record with anything after it is an error.
fn parse_log(bytes: &[u8]) -> Result<ParsedLog<'_>, String> {
    let mut records = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let rest = &bytes[pos..];
        if rest.len() < RECORD_HEADER_LEN {
            break; // torn header
        }
        let word = |i: usize| u32::from_le_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
        let (len, payload_crc, header_crc) = (word(0), word(4), word(8));
        if crc32(&rest[..8]) != header_crc {
            if rest.iter().all(|&b| b == 0) {
                break; // space allocated by the crash but never written
            }
            return Err(format!(
                "record {} at byte {pos}: header checksum mismatch",
                records.len()
            ));
        }
        if len == 0 {
            return Err(format!("record {} at byte {pos} is empty", records.len()));
        }
        let end = RECORD_HEADER_LEN + len as usize;
        if end > rest.len() {
            break; // torn payload
        }
        let payload = &rest[RECORD_HEADER_LEN..end];
        if crc32(payload) != payload_crc {
            if end == rest.len() {
                break; // last record, partly written
            }
            return Err(format!(
                "record {} at byte {pos}: payload checksum mismatch",
                records.len()
            ));
        }
        records.push((pos, payload));
        pos += end;
    }
    Ok(ParsedLog {
        records,
        valid_len: pos,
    })
}

/// CRC-32 (IEEE 802.3), the checksum of zip and PNG.
fn crc32(bytes: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0xEDB8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            table[i] = c;
            i += 1;
        }
        table
    };
    let mut crc = !0u32;
    for &b in bytes {
        crc = TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    !crc
}

// ---------------------------------------------------------------------------
// files

fn io_error(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(path)(e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_error(path))?;
    Ok(Some(bytes))
}

/// Replaces `dir/name` with `bytes` so that a crash leaves the old file or the
/// new one: temp file, fsync, rename, fsync of the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
    file.write_all(bytes).map_err(io_error(&tmp))?;
    file.sync_all().map_err(io_error(&tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io_error(&path))?;
    sync_dir(dir)
}

/// Makes a directory's entries (created, renamed, removed files) durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn acquire_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_error(&path))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.to_path_buf(),
            lock: path,
        }),
        Err(fs::TryLockError::Error(e)) => Err(io_error(&path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    fn log_of(payloads: &[&[u8]]) -> Vec<u8> {
        payloads
            .iter()
            .flat_map(|p| frame_record(p).unwrap())
            .collect()
    }

    #[test]
    fn framed_records_read_back_in_order() {
        let log = log_of(&[b"one", b"two two", b"three"]);
        let parsed = parse_log(&log).unwrap();
        let payloads: Vec<&[u8]> = parsed.records.iter().map(|(_, p)| *p).collect();
        assert_eq!(payloads, [&b"one"[..], b"two two", b"three"]);
        assert_eq!(parsed.valid_len, log.len());
        assert_eq!(parsed.records[1].0, RECORD_HEADER_LEN + 3);
    }

    #[test]
    fn empty_records_are_never_framed() {
        assert!(frame_record(b"").is_err());
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_torn_tail() {
        let log = log_of(&[b"first record", b"second record"]);
        let first_len = RECORD_HEADER_LEN + b"first record".len();
        for cut in first_len..log.len() {
            let parsed = parse_log(&log[..cut]).unwrap();
            assert_eq!(parsed.records.len(), 1, "cut at {cut}");
            assert_eq!(parsed.valid_len, first_len, "cut at {cut}");
        }
    }

    #[test]
    fn a_zero_filled_tail_is_a_torn_tail() {
        let mut log = log_of(&[b"first record"]);
        let valid = log.len();
        log.extend_from_slice(&[0; 40]);
        let parsed = parse_log(&log).unwrap();
        assert_eq!(parsed.records.len(), 1);
        assert_eq!(parsed.valid_len, valid);
    }

    #[test]
    fn a_garbled_last_payload_is_a_torn_tail() {
        let mut log = log_of(&[b"first record", b"second record"]);
        let last = log.len() - 1;
        log[last] ^= 0xff;
        assert_eq!(parse_log(&log).unwrap().records.len(), 1);
    }

    #[test]
    fn any_flipped_byte_before_the_last_record_is_corrupt() {
        let log = log_of(&[b"first record", b"second record", b"third"]);
        let second_end = 2 * RECORD_HEADER_LEN + b"first record".len() + b"second record".len();
        for i in 0..second_end {
            let mut damaged = log.clone();
            damaged[i] ^= 0x01;
            assert!(
                parse_log(&damaged).is_err(),
                "flip at byte {i} went unnoticed"
            );
        }
    }

    #[test]
    fn migrate_accepts_format_1_and_refuses_others() {
        let meta = serde_json::json!({"format": 1, "actor_id": "00"});
        assert_eq!(migrate(meta.clone()), Ok((meta, false)));
        assert_eq!(
            migrate(serde_json::json!({"format": 2})),
            Err(MigrateError::Newer(2))
        );
        assert!(matches!(
            migrate(serde_json::json!({"format": 0})),
            Err(MigrateError::Invalid(_))
        ));
        assert!(matches!(
            migrate(serde_json::json!({"actor_id": "00"})),
            Err(MigrateError::Invalid(_))
        ));
        assert!(matches!(
            migrate(serde_json::json!([1])),
            Err(MigrateError::Invalid(_))
        ));
    }

    #[test]
    fn compaction_by_record_count_keeps_every_change() {
        use automerge::transaction::Transactable;
        let dir = tempfile::tempdir().unwrap();
        let mut store = LocalStore::open(dir.path()).unwrap();
        store.compact_records = 5;
        let mut doc = Automerge::new();
        for i in 0..12i64 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, format!("k{i}"), i).unwrap();
            tx.commit();
            store.append_changes(&mut doc).unwrap();
            let log = store.log_state().unwrap();
            assert!(log.records <= 5, "log has {} records", log.records);
        }
        assert!(dir.path().join(DOCUMENT_FILE).exists());
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        let loaded = store.load_document().unwrap().unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
    }
}
