//! The local store keeps the document, every change and the session across
//! restarts and crashes.
//!
//! The tests look inside `store.sqlite3` with their own SQLite connection, but only while no
//! store has it open: an open store holds an exclusive lock. The crash tests run a store in a
//! child process and kill it: the test runs itself (this test binary, that one test) with
//! [`CHILD_DIR`] set, and in the child the same test plays the child's part.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ChangeHash, ReadDoc, ScalarValue, Value, ROOT};
use splitsave_client::store::{LocalStore, StoreError, StoredTokens, STORE_FORMAT};
use uuid::Uuid;

const DB_FILE: &str = "store.sqlite3";
const WAL_FILE: &str = "store.sqlite3-wal";
/// SQLite's default page size, which the store keeps.
const PAGE_SIZE: u64 = 4096;
/// The files of a format-1 store, as the fixture has them.
const FORMAT_1_FILES: [&str; 4] = [
    "meta.json",
    "document.automerge",
    "changes.log",
    "sync-state.bin",
];

fn put(doc: &mut Automerge, key: &str, value: impl Into<ScalarValue>) {
    let mut tx = doc.transaction();
    tx.put(ROOT, key, value.into()).unwrap();
    tx.commit();
}

fn get_str(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(ROOT, key).unwrap() {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            other => panic!("{key} is {other:?}"),
        },
        Some(other) => panic!("{key} is {other:?}"),
        None => None,
    }
}

fn get_int(doc: &Automerge, key: &str) -> Option<i64> {
    match doc.get(ROOT, key).unwrap() {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Int(i) => Some(*i),
            other => panic!("{key} is {other:?}"),
        },
        Some(other) => panic!("{key} is {other:?}"),
        None => None,
    }
}

/// A connection of the test's own to the database of a store that is not open.
fn sqlite(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open_with_flags(
        dir.join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE,
    )
    .unwrap()
}

/// `SELECT count(*) FROM table` in a store that is not open.
fn rows(dir: &Path, table: &str) -> i64 {
    sqlite(dir)
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// The names in a directory, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every file of a directory with its content, sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    names(dir)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap();
            (name, bytes)
        })
        .collect()
}

fn wal_len(dir: &Path) -> u64 {
    fs::metadata(dir.join(WAL_FILE))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// A closed store holding three appended changes (keys "one", "two", "three"), the document
/// that wrote them and the bytes of each append.
fn store_with_three_records() -> (tempfile::TempDir, Automerge, Vec<Vec<u8>>) {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut doc = Automerge::new();
    let mut appended = Vec::new();
    for key in ["one", "two", "three"] {
        let heads = doc.get_heads();
        put(&mut doc, key, key);
        appended.push(doc.save_after(&heads));
        store.append_changes(&mut doc).unwrap();
    }
    drop(store);
    (tmp, doc, appended)
}

#[test]
fn a_fresh_store_gets_ids_that_stay_the_same_across_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("not-yet-created");
    let store = LocalStore::open(&dir).unwrap();
    assert_eq!(store.dir(), dir);
    let meta = store.meta().clone();
    assert_eq!(meta.format, STORE_FORMAT);
    assert_eq!(meta.actor_id.len(), 32);
    assert!(meta.actor_id.chars().all(|c| c.is_ascii_hexdigit()));
    let peer_uuid = meta.peer_id.strip_prefix("splitsave-client-").unwrap();
    assert_eq!(Uuid::parse_str(peer_uuid).unwrap().get_version_num(), 4);
    assert_eq!(
        Uuid::parse_str(&meta.storage_id).unwrap().get_version_num(),
        4
    );
    assert_eq!(meta.server_url, None);
    assert_eq!(meta.user_id, None);
    assert_eq!(meta.email, None);
    assert_eq!(meta.tokens, None);
    assert_eq!(meta.partnership_id, None);
    assert_eq!(meta.last_synced_at_ms, None);
    assert!(store.load_document().unwrap().is_none());
    assert!(store.load_sync_state().unwrap().is_none());
    drop(store);
    assert_eq!(names(&dir), [DB_FILE], "a closed store is one file");
    let user_version: u32 = sqlite(&dir)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(user_version, STORE_FORMAT);

    let reopened = LocalStore::open(&dir).unwrap();
    assert_eq!(reopened.meta(), &meta);

    let other = LocalStore::open(tmp.path().join("another")).unwrap();
    assert_ne!(other.meta().actor_id, meta.actor_id);
    assert_ne!(other.meta().peer_id, meta.peer_id);
    assert_ne!(other.meta().storage_id, meta.storage_id);
}

#[test]
fn the_document_round_trips_through_snapshot_and_many_small_appends() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut doc = Automerge::new();
    put(&mut doc, "title", "ours");
    store.save_snapshot(&mut doc).unwrap();
    for i in 0..50i64 {
        put(&mut doc, &format!("expense-{i}"), i * 100);
        store.append_changes(&mut doc).unwrap();
    }
    drop(store);
    assert_eq!(rows(tmp.path(), "snapshot"), 1);
    assert_eq!(
        rows(tmp.path(), "changes"),
        50,
        "small appends go to the log"
    );

    let store = LocalStore::open(tmp.path()).unwrap();
    let loaded = store.load_document().unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert_eq!(get_str(&loaded, "title").as_deref(), Some("ours"));
    for i in 0..50i64 {
        assert_eq!(get_int(&loaded, &format!("expense-{i}")), Some(i * 100));
    }
    assert_eq!(
        loaded.get_actor().to_hex_string(),
        store.meta().actor_id,
        "new changes are attributed to this device"
    );
}

#[test]
fn changes_made_after_a_restart_are_appended_without_losing_earlier_ones() {
    let tmp = tempfile::tempdir().unwrap();
    {
        let mut store = LocalStore::open(tmp.path()).unwrap();
        let mut doc = Automerge::new();
        put(&mut doc, "before", "restart");
        store.append_changes(&mut doc).unwrap();
    }
    {
        let mut store = LocalStore::open(tmp.path()).unwrap();
        let mut doc = store.load_document().unwrap().unwrap();
        let before = wal_len(tmp.path());
        store.append_changes(&mut doc).unwrap();
        assert_eq!(wal_len(tmp.path()), before, "nothing new, nothing written");
        put(&mut doc, "after", "restart");
        store.append_changes(&mut doc).unwrap();
        assert!(wal_len(tmp.path()) > before);
    }
    assert_eq!(
        rows(tmp.path(), "changes"),
        2,
        "each change is stored once, none again after the restart"
    );
    let store = LocalStore::open(tmp.path()).unwrap();
    let doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&doc, "before").as_deref(), Some("restart"));
    assert_eq!(get_str(&doc, "after").as_deref(), Some("restart"));
}

#[test]
fn a_document_lacking_stored_changes_does_not_erase_them() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut base = Automerge::new();
    put(&mut base, "shared", 1i64);
    let mut other = base.fork();
    store.append_changes(&mut base).unwrap();
    put(&mut base, "only-stored", 2i64);
    store.append_changes(&mut base).unwrap();

    put(&mut other, "only-other", 3i64);
    store.append_changes(&mut other).unwrap();
    store.save_snapshot(&mut other).unwrap();
    drop(store);

    let store = LocalStore::open(tmp.path()).unwrap();
    let doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_int(&doc, "shared"), Some(1));
    assert_eq!(get_int(&doc, "only-stored"), Some(2));
    assert_eq!(get_int(&doc, "only-other"), Some(3));
}

#[test]
fn a_large_log_is_compacted_into_the_snapshot_without_losing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut doc = Automerge::new();
    // Incompressible values, so each change is about 300 KiB in the log.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for i in 0..8 {
        let value: String = (0..300 * 1024)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                char::from(b'a' + (seed % 26) as u8)
            })
            .collect();
        put(&mut doc, &format!("big-{i}"), value.as_str());
        let mut store = LocalStore::open(tmp.path()).unwrap();
        store.append_changes(&mut doc).unwrap();
        drop(store);
        let logged: i64 = sqlite(tmp.path())
            .query_row(
                "SELECT coalesce(sum(length(chunk)), 0) FROM changes",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(logged <= 1024 * 1024, "log stays under 1 MiB, is {logged}");
    }
    assert_eq!(rows(tmp.path(), "snapshot"), 1);
    let mut store = LocalStore::open(tmp.path()).unwrap();
    put(&mut doc, "small", "after compaction");
    store.append_changes(&mut doc).unwrap();
    drop(store);

    let store = LocalStore::open(tmp.path()).unwrap();
    let loaded = store.load_document().unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert_eq!(
        get_str(&loaded, "small").as_deref(),
        Some("after compaction")
    );
    for i in 0..8 {
        assert_eq!(
            get_str(&loaded, &format!("big-{i}")),
            get_str(&doc, &format!("big-{i}"))
        );
    }
}

#[test]
fn more_than_a_thousand_appends_are_compacted_without_losing_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut doc = Automerge::new();
    for i in 0..1010i64 {
        put(&mut doc, "counter", i);
        store.append_changes(&mut doc).unwrap();
    }
    drop(store);
    assert_eq!(rows(tmp.path(), "snapshot"), 1);
    assert!(rows(tmp.path(), "changes") < 1000);

    let store = LocalStore::open(tmp.path()).unwrap();
    let loaded = store.load_document().unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert_eq!(get_int(&loaded, "counter"), Some(1009));
}

// ---------------------------------------------------------------------------
// crashes, in a child process

/// Where a child process keeps its store; unset in a normal test run.
const CHILD_DIR: &str = "SPLITSAVE_STORE_TEST_CHILD_DIR";

/// In a child process, the store directory its parent gave it.
fn child_dir() -> Option<PathBuf> {
    std::env::var_os(CHILD_DIR).map(PathBuf::from)
}

/// Runs the test `name` of this module again, alone, as a child process on the store in `dir`
/// (where it takes the child's part), and reads its marked output lines (`@@ key value`) until
/// it says `@@ ready`; the child then waits for its standard input to close.
fn spawn_child(name: &str, dir: &Path) -> (Child, Vec<(String, String)>) {
    // The harness names a test by its path below the crate root.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let test = if module.is_empty() {
        name.to_owned()
    } else {
        format!("{module}::{name}")
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_DIR, dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut said = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("{name} ended before it was ready: {said:?}"))
            .unwrap();
        let Some(marked) = line.split_once("@@ ").map(|(_, m)| m) else {
            continue;
        };
        let marked = marked.trim_end();
        if marked == "ready" {
            break;
        }
        let (key, value) = marked.split_once(' ').unwrap();
        said.push((key.to_owned(), value.to_owned()));
    }
    (child, said)
}

/// What a child says to its parent.
fn say(key: &str, value: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "\n@@ {key} {value}").unwrap();
    out.flush().unwrap();
}

/// Blocks a child until its parent closes its standard input (or kills it).
fn wait_for_parent() {
    say("ready", "");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
}

/// Child: appends "one", "two", "three", writes a snapshot, telling the length of the
/// write-ahead log after each, and waits to be killed.
fn child_appends_and_snapshots_then_waits(dir: &Path) {
    let mut store = LocalStore::open(dir).unwrap();
    let mut doc = Automerge::new();
    say("wal-start", wal_len(dir));
    for key in ["one", "two", "three"] {
        put(&mut doc, key, key);
        store.append_changes(&mut doc).unwrap();
        say(&format!("wal-{key}"), wal_len(dir));
    }
    store.save_snapshot(&mut doc).unwrap();
    say("wal-snapshot", wal_len(dir));
    wait_for_parent();
}

/// Child: opens the store and holds it until its parent lets go.
fn child_holds_the_store_open(dir: &Path) {
    let store = LocalStore::open(dir).unwrap();
    wait_for_parent();
    drop(store);
}

/// Copies a crashed store's files into a new directory, the log cut to `wal_len` bytes.
fn crash_image(crashed: &Path, wal_len: Option<u64>) -> tempfile::TempDir {
    let image = tempfile::tempdir().unwrap();
    for name in names(crashed) {
        fs::copy(crashed.join(&name), image.path().join(&name)).unwrap();
    }
    if let Some(len) = wal_len {
        let wal = fs::OpenOptions::new()
            .write(true)
            .open(image.path().join(WAL_FILE))
            .unwrap();
        wal.set_len(len).unwrap();
    }
    image
}

#[test]
fn a_killed_process_loses_no_acknowledged_write_and_a_torn_last_commit_loses_only_itself() {
    if let Some(dir) = child_dir() {
        return child_appends_and_snapshots_then_waits(&dir);
    }
    let crashed = tempfile::tempdir().unwrap();
    let (mut child, said) = spawn_child(
        "a_killed_process_loses_no_acknowledged_write_and_a_torn_last_commit_loses_only_itself",
        crashed.path(),
    );
    child.kill().unwrap();
    assert!(!child.wait().unwrap().success());
    let wal = |key: &str| -> u64 {
        said.iter()
            .find(|(k, _)| k == &format!("wal-{key}"))
            .unwrap_or_else(|| panic!("the child did not say wal-{key}: {said:?}"))
            .1
            .parse()
            .unwrap()
    };
    // Each write went to the log; the killed process never folded it into the file.
    assert!(wal("start") < wal("one"));
    assert!(wal("one") < wal("two") && wal("two") < wal("three"));
    assert!(wal("three") < wal("snapshot"));
    assert_eq!(wal_len(crashed.path()), wal("snapshot"));
    assert_eq!(
        names(crashed.path()),
        [DB_FILE, WAL_FILE],
        "no -shm: the lock keeps the log's index in memory"
    );

    // Killed after every write returned: everything is there, as the snapshot.
    let image = crash_image(crashed.path(), None);
    let store = LocalStore::open(image.path()).unwrap();
    let doc = store.load_document().unwrap().unwrap();
    for key in ["one", "two", "three"] {
        assert_eq!(get_str(&doc, key).as_deref(), Some(key));
    }
    drop(store);
    assert_eq!(rows(image.path(), "snapshot"), 1);
    assert_eq!(rows(image.path(), "changes"), 0);

    // Killed while the snapshot was being written, at every frame of it (a frame is a page and
    // its 24-byte header): the old state, all three changes in the log and no snapshot.
    let mut cut = wal("three") + 100;
    while cut < wal("snapshot") {
        let image = crash_image(crashed.path(), Some(cut));
        let store = LocalStore::open(image.path()).unwrap();
        let doc = store.load_document().unwrap().unwrap();
        for key in ["one", "two", "three"] {
            assert_eq!(get_str(&doc, key).as_deref(), Some(key), "cut at {cut}");
        }
        drop(store);
        assert_eq!(
            (
                rows(image.path(), "snapshot"),
                rows(image.path(), "changes")
            ),
            (0, 3),
            "cut at {cut}: a half-written snapshot or a half-emptied log"
        );
        cut += PAGE_SIZE + 24;
    }

    // Killed while "three" was being appended (its write had not returned): only it is lost,
    // and the next append works.
    let image = crash_image(crashed.path(), Some(wal("two") + 100));
    let mut store = LocalStore::open(image.path()).unwrap();
    let mut doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&doc, "one").as_deref(), Some("one"));
    assert_eq!(get_str(&doc, "two").as_deref(), Some("two"));
    assert_eq!(get_str(&doc, "three"), None);
    put(&mut doc, "four", "four");
    store.append_changes(&mut doc).unwrap();
    drop(store);
    let store = LocalStore::open(image.path()).unwrap();
    let doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&doc, "one").as_deref(), Some("one"));
    assert_eq!(get_str(&doc, "two").as_deref(), Some("two"));
    assert_eq!(get_str(&doc, "three"), None);
    assert_eq!(get_str(&doc, "four").as_deref(), Some("four"));
}

#[test]
fn a_second_open_is_refused_while_the_first_is_alive_and_allowed_after_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let first = LocalStore::open(tmp.path()).unwrap();
    match LocalStore::open(tmp.path()) {
        Err(err @ StoreError::Locked { .. }) => {
            assert!(err.to_string().contains("already open"), "{err}");
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("the store was opened twice"),
    }
    drop(first);
    LocalStore::open(tmp.path()).unwrap();
}

#[test]
fn a_store_open_in_another_process_is_refused_until_that_process_dies() {
    if let Some(dir) = child_dir() {
        return child_holds_the_store_open(&dir);
    }
    let tmp = tempfile::tempdir().unwrap();
    LocalStore::open(tmp.path()).unwrap();
    let (mut child, _) = spawn_child(
        "a_store_open_in_another_process_is_refused_until_that_process_dies",
        tmp.path(),
    );
    match LocalStore::open(tmp.path()) {
        Err(StoreError::Locked { path, lock }) => {
            assert_eq!(path, tmp.path());
            assert_eq!(lock, tmp.path().join(DB_FILE));
        }
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("the store was opened in two processes"),
    }
    child.kill().unwrap();
    child.wait().unwrap();
    LocalStore::open(tmp.path()).unwrap();
}

// ---------------------------------------------------------------------------
// damage

#[test]
fn a_flipped_byte_in_a_middle_change_is_reported_as_corrupt_naming_the_database() {
    let (tmp, mut doc, appended) = store_with_three_records();
    let db_path = tmp.path().join(DB_FILE);
    let mut bytes = fs::read(&db_path).unwrap();
    let second = &appended[1];
    let at = bytes
        .windows(second.len())
        .position(|w| w == &second[..])
        .expect("the second change is in the file");
    bytes[at + second.len() - 2] ^= 0x40;
    fs::write(&db_path, &bytes).unwrap();

    let mut store = LocalStore::open(tmp.path()).unwrap();
    match store.load_document() {
        Err(StoreError::Corrupt { path, reason }) => {
            assert_eq!(path, db_path, "{reason}");
            assert!(reason.contains("change 2"), "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|d| d.is_some())),
    }
    let message = store.load_document().err().unwrap().to_string();
    assert!(message.contains(DB_FILE), "{message}");

    put(&mut doc, "four", "four");
    assert!(matches!(
        store.append_changes(&mut doc),
        Err(StoreError::Corrupt { .. })
    ));
    drop(store);
    assert_eq!(
        contents(tmp.path()),
        [(DB_FILE.to_owned(), bytes)],
        "a corrupt store is not written to"
    );
}

#[test]
fn a_file_that_is_not_a_database_is_reported_as_corrupt() {
    let tmp = tempfile::tempdir().unwrap();
    LocalStore::open(tmp.path()).unwrap();
    let db_path = tmp.path().join(DB_FILE);
    let mut bytes = fs::read(&db_path).unwrap();
    bytes[..16].copy_from_slice(b"not a database!\0");
    fs::write(&db_path, &bytes).unwrap();

    match LocalStore::open(tmp.path()) {
        Err(StoreError::Corrupt { path, .. }) => assert_eq!(path, db_path),
        Err(other) => panic!("expected Corrupt, got {other}"),
        Ok(_) => panic!("a damaged store was opened"),
    }
    assert_eq!(contents(tmp.path()), [(DB_FILE.to_owned(), bytes)]);
}

// ---------------------------------------------------------------------------
// formats

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_untouched() {
    // In a meta.json, where format 1 said its format.
    let tmp = tempfile::tempdir().unwrap();
    let meta = format!(
        r#"{{"format": {}, "actor_id": "00ff", "peer_id": "p", "storage_id": "s", "new_thing": true}}"#,
        STORE_FORMAT + 1
    );
    fs::write(tmp.path().join("meta.json"), &meta).unwrap();
    match LocalStore::open(tmp.path()) {
        Err(StoreError::NewerFormat { found }) => assert_eq!(found, STORE_FORMAT + 1),
        Err(other) => panic!("expected NewerFormat, got {other}"),
        Ok(_) => panic!("a newer store was opened"),
    }
    assert_eq!(
        contents(tmp.path()),
        [("meta.json".to_owned(), meta.into_bytes())]
    );

    // In the database.
    let tmp = tempfile::tempdir().unwrap();
    LocalStore::open(tmp.path()).unwrap();
    sqlite(tmp.path())
        .execute_batch(&format!(
            "CREATE TABLE from_a_newer_sdk (x); PRAGMA user_version = {};",
            STORE_FORMAT + 1
        ))
        .unwrap();
    let before = contents(tmp.path());
    assert_eq!(names(tmp.path()), [DB_FILE]);
    match LocalStore::open(tmp.path()) {
        Err(StoreError::NewerFormat { found }) => assert_eq!(found, STORE_FORMAT + 1),
        Err(other) => panic!("expected NewerFormat, got {other}"),
        Ok(_) => panic!("a newer store was opened"),
    }
    assert!(
        contents(tmp.path()) == before,
        "the newer store was changed"
    );
}

#[test]
fn a_newer_format_still_in_the_write_ahead_log_is_refused_and_the_log_kept() {
    let tmp = tempfile::tempdir().unwrap();
    LocalStore::open(tmp.path()).unwrap();
    // A newer SDK's upgrade, committed to the log, then a crash before the log was folded in.
    let newer = sqlite(tmp.path());
    newer
        .set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .unwrap();
    newer
        .execute_batch(&format!(
            "CREATE TABLE from_a_newer_sdk (x); PRAGMA user_version = {};",
            STORE_FORMAT + 1
        ))
        .unwrap();
    drop(newer);
    assert!(wal_len(tmp.path()) > 0);
    let before = contents(tmp.path());
    let header = &before.iter().find(|(n, _)| n == DB_FILE).unwrap().1;
    assert_eq!(
        u32::from_be_bytes(header[60..64].try_into().unwrap()),
        STORE_FORMAT,
        "the file itself still says the old format: only the log has the new one"
    );

    match LocalStore::open(tmp.path()) {
        Err(StoreError::NewerFormat { found }) => assert_eq!(found, STORE_FORMAT + 1),
        Err(other) => panic!("expected NewerFormat, got {other}"),
        Ok(_) => panic!("a newer store was opened"),
    }
    assert!(
        contents(tmp.path()) == before,
        "the newer store was changed"
    );
}

#[test]
fn the_sync_state_round_trips() {
    let tmp = tempfile::tempdir().unwrap();
    let mut doc = Automerge::new();
    put(&mut doc, "title", "ours");
    let mut server = Automerge::new();
    let (mut ours, mut theirs) = (sync::State::new(), sync::State::new());
    loop {
        let to_server = doc.generate_sync_message(&mut ours);
        let to_us = server.generate_sync_message(&mut theirs);
        if to_server.is_none() && to_us.is_none() {
            break;
        }
        if let Some(message) = to_server {
            server.receive_sync_message(&mut theirs, message).unwrap();
        }
        if let Some(message) = to_us {
            doc.receive_sync_message(&mut ours, message).unwrap();
        }
    }
    assert_eq!(ours.shared_heads, doc.get_heads());

    let mut store = LocalStore::open(tmp.path()).unwrap();
    store.append_changes(&mut doc).unwrap();
    store.save_sync_state(&ours).unwrap();
    drop(store);
    let store = LocalStore::open(tmp.path()).unwrap();
    let loaded = store.load_sync_state().unwrap().unwrap();
    assert_eq!(loaded.shared_heads, doc.get_heads());
}

/// The metadata JSON of a store that is not open.
fn stored_meta(dir: &Path) -> serde_json::Value {
    let json: String = sqlite(dir)
        .query_row("SELECT json FROM meta", [], |r| r.get(0))
        .unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn tokens_and_meta_round_trip_and_unknown_fields_are_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let user = Uuid::new_v4();
    let partnership = Uuid::new_v4();
    let tokens = StoredTokens {
        access_token: "access".into(),
        refresh_token: "refresh".into(),
        access_expires_at_ms: 1_700_000_000_000,
    };
    let mut store = LocalStore::open(tmp.path()).unwrap();
    store
        .update_meta(|m| {
            m.server_url = Some("https://splitsave.example".into());
            m.user_id = Some(user);
            m.email = Some("ana@example.com".into());
            m.tokens = Some(tokens.clone());
            m.partnership_id = Some(partnership);
            m.last_synced_at_ms = Some(42);
        })
        .unwrap();
    let meta = store.meta().clone();
    assert_eq!(meta.tokens.as_ref(), Some(&tokens));
    drop(store);
    let store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(store.meta(), &meta);
    drop(store);

    // A field from a later SDK, and optional fields left out.
    let written = format!(
        r#"{{"format": {STORE_FORMAT}, "actor_id": "{}", "peer_id": "{}", "storage_id": "{}", "from_a_later_sdk": [1, 2]}}"#,
        meta.actor_id, meta.peer_id, meta.storage_id
    );
    sqlite(tmp.path())
        .execute("UPDATE meta SET json = ?1", [written])
        .unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(store.meta().actor_id, meta.actor_id);
    assert_eq!(store.meta().tokens, None);
    assert_eq!(store.meta().user_id, None);
    store.update_meta(|m| m.tokens = None).unwrap();
    store
        .update_meta(|m| m.email = Some("bo@example.com".into()))
        .unwrap();
    drop(store);
    let json = stored_meta(tmp.path());
    assert_eq!(json["from_a_later_sdk"], serde_json::json!([1, 2]));
    assert_eq!(json["email"], "bo@example.com");
    assert_eq!(json["format"], STORE_FORMAT);

    // The same through a migration from a format-1 meta.json.
    let tmp = tempfile::tempdir().unwrap();
    let written = format!(
        r#"{{"format": 1, "actor_id": "{}", "peer_id": "{}", "storage_id": "{}", "from_a_later_sdk": "kept"}}"#,
        meta.actor_id, meta.peer_id, meta.storage_id
    );
    fs::write(tmp.path().join("meta.json"), written).unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(store.meta().actor_id, meta.actor_id);
    assert_eq!(store.meta().format, STORE_FORMAT);
    store
        .update_meta(|m| m.email = Some("cy@example.com".into()))
        .unwrap();
    drop(store);
    let json = stored_meta(tmp.path());
    assert_eq!(json["from_a_later_sdk"], "kept");
    assert_eq!(json["email"], "cy@example.com");
}

#[test]
fn clear_document_removes_document_log_and_sync_state_but_keeps_meta() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    store
        .update_meta(|m| m.email = Some("ana@example.com".into()))
        .unwrap();
    let mut doc = Automerge::new();
    put(&mut doc, "old", "partnership");
    store.save_snapshot(&mut doc).unwrap();
    put(&mut doc, "more", "changes");
    store.append_changes(&mut doc).unwrap();
    store.save_sync_state(&sync::State::new()).unwrap();

    store.clear_document().unwrap();
    assert!(store.load_document().unwrap().is_none());
    assert!(store.load_sync_state().unwrap().is_none());
    drop(store);
    for table in ["snapshot", "changes", "sync_state"] {
        assert_eq!(rows(tmp.path(), table), 0, "{table} still has rows");
    }

    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut new_doc = Automerge::new();
    put(&mut new_doc, "new", "partnership");
    store.append_changes(&mut new_doc).unwrap();
    let meta = store.meta().clone();
    drop(store);
    let store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(store.meta(), &meta);
    assert_eq!(store.meta().email.as_deref(), Some("ana@example.com"));
    let loaded = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&loaded, "new").as_deref(), Some("partnership"));
    assert_eq!(get_str(&loaded, "old"), None);
}

// ---------------------------------------------------------------------------
// the format-1 fixture

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1")
}

/// A copy of the format-1 fixture in a temporary directory.
fn fixture_copy() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for name in FORMAT_1_FILES {
        fs::copy(fixture().join(name), tmp.path().join(name)).unwrap();
    }
    tmp
}

/// Checks that `store` holds what the format-1 fixture holds; returns the document's heads.
fn assert_fixture_content(store: &LocalStore) -> Vec<ChangeHash> {
    let meta = store.meta();
    assert_eq!(meta.format, STORE_FORMAT);
    assert_eq!(meta.actor_id, "5a175a7e00000000000000000000f001");
    assert_eq!(
        meta.peer_id,
        "splitsave-client-0b6f1d3e-2a4c-4e8b-9c1d-5e7f8a9b0c1d"
    );
    assert_eq!(meta.storage_id, "7c3e9a51-4b2d-4f6e-8a1c-2d3e4f5a6b7c");
    assert_eq!(
        meta.server_url.as_deref(),
        Some("https://splitsave.example")
    );
    assert_eq!(
        meta.user_id,
        Some(Uuid::parse_str("11111111-2222-4333-8444-555555555555").unwrap())
    );
    assert_eq!(meta.email.as_deref(), Some("ana@example.com"));
    assert_eq!(
        meta.tokens,
        Some(StoredTokens {
            access_token: "access.fixture.token".into(),
            refresh_token: "refresh-fixture".into(),
            access_expires_at_ms: 1_767_225_600_000,
        })
    );
    assert_eq!(
        meta.partnership_id,
        Some(Uuid::parse_str("99999999-8888-4777-8666-555555555555").unwrap())
    );
    assert_eq!(meta.last_synced_at_ms, Some(1_767_222_000_000));

    let doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&doc, "fixture").as_deref(), Some("store-format-1"));
    assert_eq!(get_int(&doc, "amount_cents"), Some(12345));
    assert_eq!(
        get_str(&doc, "note").as_deref(),
        Some("from the change log")
    );
    let sync_state = store.load_sync_state().unwrap().unwrap();
    assert_eq!(sync_state.shared_heads, doc.get_heads());
    doc.get_heads()
}

/// Every later SDK must open this store, written by the first one: it is migrated once.
#[test]
fn a_format_1_store_opens_with_its_document_and_meta() {
    let tmp = fixture_copy();
    let store = LocalStore::open(tmp.path()).unwrap();
    let heads = assert_fixture_content(&store);
    drop(store);
    assert_eq!(names(tmp.path()), [DB_FILE], "the format-1 files are gone");
    assert_eq!(rows(tmp.path(), "snapshot"), 1);
    assert_eq!(rows(tmp.path(), "changes"), 1, "the log's one record");

    let store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(assert_fixture_content(&store), heads);
}

#[test]
fn a_migration_cut_before_its_commit_is_done_again_from_the_untouched_files() {
    let tmp = fixture_copy();
    // What a crash during the migration's transaction leaves: the file set up for the log,
    // with nothing committed (the log's uncommitted frames are dropped on recovery).
    let cut = rusqlite::Connection::open(tmp.path().join(DB_FILE)).unwrap();
    cut.pragma_update(None, "auto_vacuum", "FULL").unwrap();
    cut.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))
        .unwrap();
    drop(cut);
    assert!(tmp.path().join(DB_FILE).exists());

    let store = LocalStore::open(tmp.path()).unwrap();
    assert_fixture_content(&store);
    drop(store);
    assert_eq!(names(tmp.path()), [DB_FILE]);
}

#[test]
fn a_migration_cut_while_removing_the_old_files_is_finished_without_doubling_anything() {
    let migrated = fixture_copy();
    let store = LocalStore::open(migrated.path()).unwrap();
    let heads = assert_fixture_content(&store);
    drop(store);
    let db = fs::read(migrated.path().join(DB_FILE)).unwrap();

    // The migration removes meta.json, sync-state.bin, changes.log, document.automerge in that
    // order: a crash after each step leaves the rest of them beside the committed database.
    for removed in 0..=FORMAT_1_FILES.len() {
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(DB_FILE), &db).unwrap();
        let order = [
            "meta.json",
            "sync-state.bin",
            "changes.log",
            "document.automerge",
        ];
        for name in &order[removed..] {
            fs::copy(fixture().join(name), tmp.path().join(name)).unwrap();
        }
        fs::write(tmp.path().join("store.lock"), b"").unwrap();

        let store = LocalStore::open(tmp.path()).unwrap();
        assert_eq!(assert_fixture_content(&store), heads, "{removed} removed");
        drop(store);
        assert_eq!(names(tmp.path()), [DB_FILE], "{removed} removed");
        assert_eq!(rows(tmp.path(), "changes"), 1, "{removed} removed");
    }
}
