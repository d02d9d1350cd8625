//! The on-disk local store.
//!
//! A phone app embeds the SDK and may be killed at any moment, then restarted
//! without a network. The store is what lets it come back with the partnership
//! document, every change the user wrote and the session's tokens. The app
//! chooses the directory; the store owns everything inside it.
//!
//! # Layout
//!
//! One SQLite database, `store.sqlite3`, in the directory:
//!
//! | table | holds |
//! | --- | --- |
//! | `meta` | one row: [`StoreMeta`] as JSON (format, device ids, session, partnership), with the fields this SDK does not know |
//! | `snapshot` | at most one row: a full `Automerge::save()` of the document |
//! | `changes` | the changes written since the snapshot, one row per append in `seq` order, each in automerge's change-chunk encoding (`Automerge::save_after`) |
//! | `sync_state` | at most one row: `automerge::sync::State::encode()` for the server |
//!
//! The document is the snapshot (when there is one) with every change row
//! applied in order. `PRAGMA user_version` is the store format
//! ([`STORE_FORMAT`]). While a store is open, SQLite keeps its write-ahead log
//! beside the file (`store.sqlite3-wal`, folded into the file every 256 pages
//! and cut back to 1 MiB then) and folds it back in when the store is dropped;
//! a crash leaves it there for the next open to recover. There is no `-shm`
//! file (see Locking).
//!
//! # Durability
//!
//! Every call that writes is one SQLite transaction, committed before it
//! returns. The journal is the write-ahead log with `synchronous = FULL`: each
//! commit fsyncs the log, so a change the app was told is saved survives a
//! power cut. (`NORMAL` would skip that fsync and stay consistent, but a power
//! cut could then roll back the last acknowledged edits, which is the one
//! thing this store promises not to do; the cost of `FULL` is one fsync per
//! append, what the format-1 file store paid too.) `fullfsync` is on, so that
//! on Apple platforms, where `fsync` leaves data in the drive's cache, commits
//! use `F_FULLFSYNC` as the format-1 store's `File::sync_all` did; elsewhere
//! it changes nothing. A crash mid-transaction leaves log frames without a
//! commit, which SQLite's recovery drops: the store is the old state or the
//! new one, never a mix. Writing a snapshot and emptying `changes` is one
//! transaction. When `changes` grows past [`LOG_COMPACT_BYTES`] or
//! [`LOG_COMPACT_RECORDS`], the next append writes a snapshot instead, so that
//! opening the store never replays an unbounded log.
//!
//! Damage is reported, never skipped: a file SQLite finds damaged, or a
//! snapshot or change that does not load (automerge checks each chunk's
//! checksum), is [`StoreError::Corrupt`] naming `store.sqlite3`.
//!
//! # Locking
//!
//! The connection runs in `locking_mode = EXCLUSIVE`: the first read at open
//! takes an exclusive lock on the file and keeps it until the store is dropped
//! (the system drops it when the process dies). Another [`LocalStore`], in this
//! process or another, gets `SQLITE_BUSY` at once and so
//! [`StoreError::Locked`]: two writers would interleave their changes and lose
//! some. Holding the lock also lets SQLite keep the log's index in memory
//! instead of a `-shm` file. The flip side is that nothing else can read the
//! file while the store is open (a debugging tool included), and two opens
//! racing for the same directory may both be refused. The lock is a POSIX
//! record lock, which a process drops when it closes *any* descriptor of the
//! file: nothing in this process may open `store.sqlite3` other than through
//! SQLite while a store is open.
//!
//! # Why SQLite, and why `rusqlite`
//!
//! Format 1 was hand-made durability: a framed, checksummed log, temp files,
//! renames, directory fsyncs and a lock file. SQLite does the same with
//! transactions, crash recovery and locking that have been tested far more,
//! in one file that mobile developers know how to inspect, back up and
//! exclude from backups. `rusqlite` is the synchronous binding: the store's
//! API is synchronous (the SDK calls it under its own lock, from sync and
//! async code alike), and `sqlx`, already in the tree for the server, is async
//! only and would need a runtime inside every call. `rusqlite` 0.32 links the
//! same `libsqlite3-sys` (0.30, with SQLite bundled) as `sqlx-sqlite`, so the
//! tree holds one SQLite.
//!
//! # Compatibility
//!
//! The promise: every later SDK opens stores of every earlier format,
//! migrating them forward; a store of a newer format than this SDK's is
//! refused with [`StoreError::NewerFormat`] and left as it was. The format of
//! a SQLite store is its `user_version`, read before anything is written; a
//! later format changes it in the same transaction as its schema.
//!
//! Format 1 (files, see `format1`) is migrated at open: its files are read
//! with the format-1 reader (a torn last log record dropped, other damage
//! refused as [`StoreError::Corrupt`] naming the file, with nothing touched),
//! copied into `store.sqlite3` in one transaction that also sets
//! `user_version`, the file is checkpointed, the directory fsynced, and only
//! then are the old files removed, `meta.json` first. `store.sqlite3` is the
//! truth only once `user_version` says so: a crash before that commit leaves a
//! file at `user_version` 0, which the next open migrates again from the
//! untouched old files; a crash during the removal leaves some old files
//! beside a committed store, which the next open removes. The committed
//! fixture in `tests/fixtures/store-format-1/` holds that promise to account.
//!
//! Within one format, new [`StoreMeta`] fields are always optional, unknown
//! fields are kept when the metadata is rewritten, and missing optional
//! fields read as `None`.

mod format1;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use automerge::sync;
use automerge::{ActorId, Automerge, ChangeHash};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

/// The store format this SDK writes.
///
/// Raised only when the layout changes in a way an older SDK could misread;
/// every later SDK still opens stores of every earlier format. Format 1 was
/// files; format 2 is one SQLite database.
pub const STORE_FORMAT: u32 = 2;

/// Past this many bytes of logged changes, the next append writes a snapshot
/// instead, so that opening the store never replays an unbounded log.
pub const LOG_COMPACT_BYTES: u64 = 1024 * 1024;

/// Past this many logged changes (appends), the next append writes a snapshot
/// instead, for the same reason as [`LOG_COMPACT_BYTES`].
pub const LOG_COMPACT_RECORDS: usize = 1000;

/// The store's database.
const DB_FILE: &str = "store.sqlite3";
/// SQLite's write-ahead log of [`DB_FILE`].
const WAL_FILE: &str = "store.sqlite3-wal";

/// Pages (4 KiB each) the write-ahead log may hold before a commit folds it
/// into the file. SQLite's default is 1,000; a small change still costs a
/// whole page in the log, so at 256 the log of an open store stays near 1 MiB
/// instead of 4 MiB, and appends are faster (measured in `docs/benchmarks.md`:
/// a log that stops growing is rewritten in place, without new blocks to sync).
const WAL_CHECKPOINT_PAGES: i64 = 256;

/// Bytes the write-ahead log file is cut back to after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 1024 * 1024;

/// The tables of format 2 (see the module doc).
const SCHEMA: &str = "
    CREATE TABLE meta (id INTEGER PRIMARY KEY CHECK (id = 1), json TEXT NOT NULL) STRICT;
    CREATE TABLE snapshot (id INTEGER PRIMARY KEY CHECK (id = 1), document BLOB NOT NULL) STRICT;
    CREATE TABLE changes (seq INTEGER PRIMARY KEY, chunk BLOB NOT NULL) STRICT;
    CREATE TABLE sync_state (id INTEGER PRIMARY KEY CHECK (id = 1), state BLOB NOT NULL) STRICT;
";

/// Why the local store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file could not be read or written (SQLite's errors included).
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
    #[error("local store {path} is already open elsewhere ({lock} is locked)")]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// The file whose lock is held: `store.sqlite3`, or a format-1 store's
        /// `store.lock`.
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
/// Written as JSON in the `meta` table (format 1 kept it in `meta.json`).
/// Fields added later must be optional (`#[serde(default)]`) so that older
/// stores keep opening.
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
/// Holds the database's lock for its whole lifetime, so only one
/// `LocalStore` at a time reads and writes a directory.
pub struct LocalStore {
    dir: PathBuf,
    /// `dir/store.sqlite3`, named in errors.
    db_path: PathBuf,
    meta: StoreMeta,
    /// Metadata fields this SDK does not know, written back unchanged.
    meta_extra: Map<String, Value>,
    /// The connection and what is known of the database's content.
    db: Mutex<Db>,
    /// Compaction thresholds (fields so that unit tests can lower them).
    compact_bytes: u64,
    compact_records: usize,
}

/// The connection, and what the store knows of the document in the database,
/// so that appends need not reread it.
struct Db {
    conn: Connection,
    /// Heads whose transitive dependencies are exactly the changes stored.
    /// Not necessarily minimal; `None` until the document has been read.
    persisted_heads: Option<Vec<ChangeHash>>,
    /// The size of the `changes` table; `None` until it has been read.
    log: Option<LogState>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct LogState {
    /// Number of change rows.
    records: usize,
    /// Their bytes.
    bytes: u64,
}

impl LocalStore {
    /// Opens (creating when missing) the store in `dir`.
    ///
    /// A new directory gets a fresh identity (actor id, peer id, storage id);
    /// a format-1 store is migrated (see the module doc). Fails with
    /// [`StoreError::Locked`] while another `LocalStore` has the directory
    /// open, and with [`StoreError::NewerFormat`] (writing nothing) when a
    /// newer SDK wrote it.
    pub fn open(dir: impl AsRef<Path>) -> Result<LocalStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let db_path = dir.join(DB_FILE);

        // Without a database, a newer format could only say so in a meta.json: refuse it before
        // creating anything.
        if !exists(&db_path)? {
            let meta_path = dir.join(format1::META_FILE);
            if let Some(bytes) = read_optional(&meta_path)? {
                format1::parse_meta(&meta_path, &bytes)?;
            }
        }
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)?;
            }
        }

        let wal_existed = exists(&dir.join(WAL_FILE))?;
        let conn = connect(&db_path)?;
        // The first read takes the lock, and the connection keeps it.
        let found = match conn.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        {
            Ok(found) => found,
            Err(e) if is_busy(&e) => {
                return Err(StoreError::Locked {
                    path: dir,
                    lock: db_path,
                })
            }
            Err(e) => return Err(sql_error(&db_path)(e)),
        };
        let format = u32::try_from(found)
            .map_err(|_| corrupt(&db_path, format!("user_version {found} is no store format")))?;
        if format > STORE_FORMAT {
            if wal_existed {
                // Closing would fold the newer SDK's log into the file: leave both as they are.
                conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
                    .map_err(sql_error(&db_path))?;
            }
            return Err(StoreError::NewerFormat { found: format });
        }
        // Durable commits and a bounded log. (Setting `synchronous` reads the schema, so only
        // now that the lock is held.)
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql_error(&db_path))?;
        conn.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(sql_error(&db_path))?;
        conn.pragma_update_and_check(None, "journal_size_limit", WAL_SIZE_LIMIT, |_| Ok(()))
            .map_err(sql_error(&db_path))?;
        let (meta, meta_extra) = match format {
            0 => create(&conn, &dir, &db_path)?,
            STORE_FORMAT => {
                let meta = read_meta(&conn, &db_path)?;
                // Old files beside a committed store: a migration stopped while removing them.
                format1::remove(&dir)?;
                meta
            }
            other => {
                return Err(corrupt(
                    &db_path,
                    format!("no SDK kept format {other} in SQLite"),
                ))
            }
        };
        Ok(LocalStore {
            dir,
            db_path,
            meta,
            meta_extra,
            db: Mutex::new(Db {
                conn,
                persisted_heads: None,
                log: None,
            }),
            compact_bytes: LOG_COMPACT_BYTES,
            compact_records: LOG_COMPACT_RECORDS,
        })
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
            let json = meta_json(&self.db_path, &meta, &self.meta_extra)?;
            let db = self.db();
            db.conn
                .execute("UPDATE meta SET json = ?1 WHERE id = 1", [json])
                .map_err(sql_error(&self.db_path))?;
            drop(db);
            self.meta = meta;
        }
        Ok(())
    }

    /// The stored document (snapshot plus logged changes), if any.
    ///
    /// The document's actor is set to this device's [`StoreMeta::actor_id`], so
    /// that changes made on it are attributed to this device across restarts.
    /// A snapshot or change that does not load is [`StoreError::Corrupt`].
    pub fn load_document(&self) -> Result<Option<Automerge>, StoreError> {
        let Some(mut doc) = self.read_document(&mut self.db())? else {
            return Ok(None);
        };
        doc.set_actor(self.actor()?);
        Ok(Some(doc))
    }

    /// Appends the document's changes that are not stored yet, durably.
    ///
    /// The store remembers which changes it has written, so this may be called
    /// after every edit; it writes nothing when there is nothing new. When the
    /// log has grown past [`LOG_COMPACT_BYTES`] or [`LOG_COMPACT_RECORDS`] it
    /// writes a snapshot (see [`LocalStore::save_snapshot`]) instead. Changes
    /// already stored that `doc` lacks are kept, never dropped.
    pub fn append_changes(&mut self, doc: &mut Automerge) -> Result<(), StoreError> {
        let mut db = self.db();
        let persisted = self.persisted_heads(&mut db)?;
        let (known, _) = split_heads(doc, &persisted);
        let payload = doc.save_after(&known);
        if payload.is_empty() {
            return Ok(());
        }
        let log = self.log_state(&mut db)?;
        if log.records + 1 > self.compact_records
            || log.bytes + payload.len() as u64 > self.compact_bytes
        {
            return self.write_snapshot(&mut db, doc, persisted);
        }
        db.conn
            .prepare_cached("INSERT INTO changes (chunk) VALUES (?1)")
            .and_then(|mut insert| insert.execute([&payload]))
            .map_err(sql_error(&self.db_path))?;
        db.log = Some(LogState {
            records: log.records + 1,
            bytes: log.bytes + payload.len() as u64,
        });
        db.persisted_heads = Some(union_heads(doc, &persisted));
        Ok(())
    }

    /// Writes a full snapshot durably and empties the change log, in one
    /// transaction.
    ///
    /// Changes already stored that `doc` lacks are merged into the snapshot
    /// rather than lost; to replace the document with an unrelated one, call
    /// [`LocalStore::clear_document`] first.
    pub fn save_snapshot(&mut self, doc: &mut Automerge) -> Result<(), StoreError> {
        let mut db = self.db();
        let persisted = self.persisted_heads(&mut db)?;
        self.write_snapshot(&mut db, doc, persisted)
    }

    /// Deletes the stored document, change log and sync state, in one
    /// transaction.
    ///
    /// Used when the user's partnership changes: the old document must not mix
    /// with the new one. The metadata stays.
    pub fn clear_document(&mut self) -> Result<(), StoreError> {
        let mut db = self.db();
        transaction(&db.conn, |conn| {
            conn.execute_batch("DELETE FROM sync_state; DELETE FROM changes; DELETE FROM snapshot;")
        })
        .map_err(sql_error(&self.db_path))?;
        db.persisted_heads = Some(Vec::new());
        db.log = Some(LogState {
            records: 0,
            bytes: 0,
        });
        Ok(())
    }

    /// The saved sync state with the server, so that a reconnect resumes
    /// from what the server already has instead of starting over.
    pub fn load_sync_state(&self) -> Result<Option<sync::State>, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .db()
            .conn
            .query_row("SELECT state FROM sync_state WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(sql_error(&self.db_path))?;
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        sync::State::decode(&bytes)
            .map(Some)
            .map_err(|e| corrupt(&self.db_path, format!("not an automerge sync state: {e}")))
    }

    /// Saves the sync state with the server durably.
    ///
    /// Save the document's changes first: a sync state must not describe
    /// changes the store does not have.
    pub fn save_sync_state(&mut self, state: &sync::State) -> Result<(), StoreError> {
        self.db()
            .conn
            .prepare_cached("INSERT OR REPLACE INTO sync_state (id, state) VALUES (1, ?1)")
            .and_then(|mut upsert| upsert.execute([state.encode()]))
            .map_err(sql_error(&self.db_path))?;
        Ok(())
    }

    /// This device's automerge actor id, so every change the device ever writes carries the
    /// same actor (the server binds it to the user on first use) and a document started before
    /// anything was stored gets it too.
    pub fn actor(&self) -> Result<ActorId, StoreError> {
        parse_actor(&self.meta.actor_id).map_err(|reason| corrupt(&self.db_path, reason))
    }

    fn db(&self) -> MutexGuard<'_, Db> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces the snapshot with `doc` (merged with the stored changes it
    /// lacks) and empties the log, in one transaction.
    fn write_snapshot(
        &self,
        db: &mut Db,
        doc: &mut Automerge,
        persisted: Vec<ChangeHash>,
    ) -> Result<(), StoreError> {
        let (_, missing) = split_heads(doc, &persisted);
        let bytes = if missing.is_empty() {
            doc.save()
        } else {
            let mut full = self.read_document(db)?.unwrap_or_default();
            full.merge(&mut doc.clone()).map_err(|e| {
                corrupt(
                    &self.db_path,
                    format!("cannot merge the document into the stored one: {e}"),
                )
            })?;
            full.save()
        };
        transaction(&db.conn, |conn| {
            conn.execute(
                "INSERT OR REPLACE INTO snapshot (id, document) VALUES (1, ?1)",
                [&bytes],
            )?;
            conn.execute("DELETE FROM changes", [])?;
            Ok(())
        })
        .map_err(sql_error(&self.db_path))?;
        db.log = Some(LogState {
            records: 0,
            bytes: 0,
        });
        db.persisted_heads = Some(union_heads(doc, &persisted));
        Ok(())
    }

    /// Reads snapshot and changes into a document (actor not set), and records
    /// what is stored.
    fn read_document(&self, db: &mut Db) -> Result<Option<Automerge>, StoreError> {
        let err = sql_error(&self.db_path);
        let snapshot: Option<Vec<u8>> = db
            .conn
            .query_row("SELECT document FROM snapshot WHERE id = 1", [], |row| {
                row.get(0)
            })
            .optional()
            .map_err(&err)?;
        let changes: Vec<(i64, Vec<u8>)> = db
            .conn
            .prepare_cached("SELECT seq, chunk FROM changes ORDER BY seq")
            .and_then(|mut select| {
                select
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                    .collect()
            })
            .map_err(&err)?;
        let log = LogState {
            records: changes.len(),
            bytes: changes.iter().map(|(_, c)| c.len() as u64).sum(),
        };

        let doc = if snapshot.is_none() && changes.is_empty() {
            None
        } else {
            // One load of everything: automerge applies the changes in one batch and checks
            // every chunk. A document chunk first lets changes wait for missing dependencies
            // (kept, as a snapshot would keep them) instead of failing the load.
            let snapshot = snapshot.unwrap_or_else(|| Automerge::new().save());
            let mut bytes = Vec::with_capacity(snapshot.len() + log.bytes as usize);
            bytes.extend_from_slice(&snapshot);
            for (_, chunk) in &changes {
                bytes.extend_from_slice(chunk);
            }
            let doc = Automerge::load(&bytes)
                .map_err(|e| corrupt(&self.db_path, what_does_not_load(&snapshot, &changes, e)))?;
            Some(doc)
        };

        db.log = Some(log);
        db.persisted_heads = Some(doc.as_ref().map(|d| d.get_heads()).unwrap_or_default());
        Ok(doc)
    }

    fn persisted_heads(&self, db: &mut Db) -> Result<Vec<ChangeHash>, StoreError> {
        if let Some(heads) = &db.persisted_heads {
            return Ok(heads.clone());
        }
        self.read_document(db)?;
        Ok(db.persisted_heads.clone().unwrap_or_default())
    }

    fn log_state(&self, db: &mut Db) -> Result<LogState, StoreError> {
        if let Some(log) = db.log {
            return Ok(log);
        }
        let (records, bytes): (i64, i64) = db
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(length(chunk)), 0) FROM changes",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(sql_error(&self.db_path))?;
        let log = LogState {
            records: usize::try_from(records).unwrap_or(usize::MAX),
            bytes: u64::try_from(bytes).unwrap_or(u64::MAX),
        };
        db.log = Some(log);
        Ok(log)
    }
}

/// Opens a connection to `db_path` (creating the file when missing) set up
/// for the store: no waiting for locks, exclusive locking, full fsyncs. Reads
/// nothing, so takes no lock yet.
fn connect(db_path: &Path) -> Result<Connection, StoreError> {
    let err = sql_error(db_path);
    let conn = Connection::open_with_flags(
        db_path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(&err)?;
    // A held lock means another store has the directory: say so at once rather than wait.
    conn.busy_timeout(Duration::ZERO).map_err(&err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |row| row.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("exclusive") {
        return Err(sql_refused(db_path, "locking_mode", &mode));
    }
    conn.pragma_update(None, "fullfsync", true).map_err(&err)?;
    Ok(conn)
}

/// Fills a database that holds nothing yet (`user_version` 0): with the
/// format-1 store in `dir` if there is one, else with a fresh identity. Returns
/// the metadata.
fn create(
    conn: &Connection,
    dir: &Path,
    db_path: &Path,
) -> Result<(StoreMeta, Map<String, Value>), StoreError> {
    let err = sql_error(db_path);
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get(0))
        .map_err(&err)?;
    if tables != 0 {
        return Err(corrupt(
            db_path,
            "has tables but no store format (user_version 0): not a SplitSave store",
        ));
    }
    // Read (and lock) the format-1 files before writing anything: damage stops here.
    let old = format1::read(dir)?;

    // Both take effect only on a database without tables, and last for the file's life.
    // FULL auto-vacuum gives back the pages a compaction frees.
    conn.pragma_update(None, "auto_vacuum", "FULL")
        .map_err(&err)?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(&err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(sql_refused(db_path, "journal_mode", &mode));
    }

    let (meta, meta_extra) = match &old {
        Some(old) => (old.meta.clone(), old.meta_extra.clone()),
        None => (StoreMeta::fresh(), Map::new()),
    };
    let json = meta_json(db_path, &meta, &meta_extra)?;
    transaction(conn, |conn| {
        conn.execute_batch(SCHEMA)?;
        conn.execute("INSERT INTO meta (id, json) VALUES (1, ?1)", [&json])?;
        if let Some(old) = &old {
            if let Some(document) = &old.document {
                conn.execute(
                    "INSERT INTO snapshot (id, document) VALUES (1, ?1)",
                    [document],
                )?;
            }
            let mut insert = conn.prepare("INSERT INTO changes (chunk) VALUES (?1)")?;
            for chunk in &old.changes {
                insert.execute([chunk])?;
            }
            if let Some(state) = &old.sync_state {
                conn.execute("INSERT INTO sync_state (id, state) VALUES (1, ?1)", [state])?;
            }
        }
        conn.pragma_update(None, "user_version", STORE_FORMAT)
    })
    .map_err(&err)?;

    // From here on the file alone must hold the store: fold the log into it and make its
    // directory entry durable (SQLite syncs the directory for the log, not for the file).
    let busy: i64 = conn
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))
        .map_err(&err)?;
    if busy != 0 {
        return Err(sql_refused(db_path, "wal_checkpoint", "busy"));
    }
    sync_dir(dir)?;
    // Only now may the format-1 files go (the lock among them, while still held).
    format1::remove(dir)?;
    Ok((meta, meta_extra))
}

/// Runs `f` in one transaction, committed when it succeeds.
fn transaction<T>(
    conn: &Connection,
    f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let tx = conn.unchecked_transaction()?;
    let value = f(&tx)?;
    tx.commit()?;
    Ok(value)
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

/// Why a stored document does not load, naming the part that fails by itself.
fn what_does_not_load(
    snapshot: &[u8],
    changes: &[(i64, Vec<u8>)],
    error: automerge::AutomergeError,
) -> String {
    if let Err(e) = Automerge::load(snapshot) {
        return format!("the snapshot does not load: {e}");
    }
    let empty = Automerge::new().save();
    for (seq, chunk) in changes {
        if let Err(e) = Automerge::load(&[&empty[..], chunk].concat()) {
            return format!("change {seq} does not load: {e}");
        }
    }
    format!("the document does not load: {error}")
}

// ---------------------------------------------------------------------------
// metadata

/// The metadata in the `meta` table.
fn read_meta(
    conn: &Connection,
    db_path: &Path,
) -> Result<(StoreMeta, Map<String, Value>), StoreError> {
    let json: Option<String> = conn
        .query_row("SELECT json FROM meta WHERE id = 1", [], |row| row.get(0))
        .optional()
        .map_err(sql_error(db_path))?;
    let json = json.ok_or_else(|| corrupt(db_path, "no metadata row"))?;
    match serde_json::from_str(&json) {
        Ok(Value::Object(mut fields)) => {
            fields.insert("format".into(), STORE_FORMAT.into());
            meta_from_fields(db_path, fields)
        }
        Ok(_) => Err(corrupt(db_path, "the metadata is not a JSON object")),
        Err(e) => Err(corrupt(db_path, format!("the metadata is not JSON: {e}"))),
    }
}

/// Splits metadata fields into [`StoreMeta`] and the fields this SDK does not know.
fn meta_from_fields(
    path: &Path,
    fields: Map<String, Value>,
) -> Result<(StoreMeta, Map<String, Value>), StoreError> {
    let meta: StoreMeta = serde_json::from_value(Value::Object(fields.clone()))
        .map_err(|e| corrupt(path, format!("metadata: {e}")))?;
    parse_actor(&meta.actor_id).map_err(|reason| corrupt(path, reason))?;
    let known = match serde_json::to_value(&meta) {
        Ok(Value::Object(known)) => known,
        _ => Map::new(),
    };
    let extra = fields
        .into_iter()
        .filter(|(k, _)| !known.contains_key(k))
        .collect();
    Ok((meta, extra))
}

/// The metadata as stored: `meta`'s fields, then the unknown ones.
fn meta_json(
    path: &Path,
    meta: &StoreMeta,
    extra: &Map<String, Value>,
) -> Result<String, StoreError> {
    let encode_error = |e: serde_json::Error| corrupt(path, format!("cannot encode: {e}"));
    let mut value = serde_json::to_value(meta).map_err(encode_error)?;
    if let Value::Object(fields) = &mut value {
        for (key, extra) in extra {
            if !fields.contains_key(key) {
                fields.insert(key.clone(), extra.clone());
            }
        }
    }
    serde_json::to_string(&value).map_err(encode_error)
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
// errors and files

fn corrupt(path: &Path, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// SQLite's errors as the store's: a damaged file is [`StoreError::Corrupt`],
/// content that is not what the store wrote too, the rest is
/// [`StoreError::Io`].
fn sql_error(path: &Path) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| {
        let kind = match e.sqlite_error_code() {
            Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => {
                return corrupt(path, e.to_string())
            }
            // Not SQLite's error but the binding's: a value of the wrong type or shape.
            None => return corrupt(path, format!("unexpected content: {e}")),
            Some(ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied) => {
                io::ErrorKind::PermissionDenied
            }
            Some(ErrorCode::DiskFull) => io::ErrorKind::StorageFull,
            Some(ErrorCode::ReadOnly) => io::ErrorKind::ReadOnlyFilesystem,
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => io::ErrorKind::WouldBlock,
            Some(_) => io::ErrorKind::Other,
        };
        StoreError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(kind, e),
        }
    }
}

/// A setting SQLite did not take.
fn sql_refused(path: &Path, setting: &str, got: &str) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        source: io::Error::other(format!("SQLite refused {setting} (got {got:?})")),
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    path.try_exists().map_err(io_error(path))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_by_record_count_keeps_every_change() {
        use automerge::transaction::Transactable;
        let dir = tempfile::tempdir().unwrap();
        let mut store = LocalStore::open(dir.path()).unwrap();
        store.compact_records = 5;
        let mut doc = Automerge::new();
        let mut compacted = false;
        for i in 0..12i64 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, format!("k{i}"), i).unwrap();
            tx.commit();
            store.append_changes(&mut doc).unwrap();
            let log = store.log_state(&mut store.db()).unwrap();
            assert!(log.records <= 5, "log has {} records", log.records);
            compacted |= log.records == 0;
            // What the store believes is what the table holds.
            store.db().log = None;
            assert_eq!(store.log_state(&mut store.db()).unwrap(), log);
        }
        assert!(compacted, "no append wrote a snapshot");
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        let loaded = store.load_document().unwrap().unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
    }

    #[test]
    fn compaction_by_size_keeps_every_change() {
        use automerge::transaction::Transactable;
        let dir = tempfile::tempdir().unwrap();
        let mut store = LocalStore::open(dir.path()).unwrap();
        store.compact_bytes = 400;
        let mut doc = Automerge::new();
        let mut compacted = false;
        for i in 0..12i64 {
            let mut tx = doc.transaction();
            tx.put(automerge::ROOT, format!("k{i}"), "x".repeat(100))
                .unwrap();
            tx.commit();
            store.append_changes(&mut doc).unwrap();
            let log = store.log_state(&mut store.db()).unwrap();
            assert!(log.bytes <= 400, "log has {} bytes", log.bytes);
            compacted |= log.records == 0;
        }
        assert!(compacted, "no append wrote a snapshot");
        drop(store);
        let store = LocalStore::open(dir.path()).unwrap();
        let loaded = store.load_document().unwrap().unwrap();
        assert_eq!(loaded.get_heads(), doc.get_heads());
    }
}
