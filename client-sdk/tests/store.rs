//! The local store keeps the document, every change and the session across
//! restarts and crashes.

use std::fs;
use std::path::Path;

use automerge::sync::{self, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ReadDoc, ScalarValue, Value, ROOT};
use splitsave_client::store::{LocalStore, StoreError, StoredTokens, STORE_FORMAT};
use uuid::Uuid;

/// Length of a log record's header (length, payload crc, header crc).
const RECORD_HEADER_LEN: usize = 12;

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

/// Byte offsets of the log's records, read from their length prefixes.
fn record_offsets(log: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut pos = 0;
    while pos < log.len() {
        offsets.push(pos);
        let len = u32::from_le_bytes(log[pos..pos + 4].try_into().unwrap()) as usize;
        pos += RECORD_HEADER_LEN + len;
    }
    offsets
}

fn log_len(dir: &Path) -> u64 {
    fs::metadata(dir.join("changes.log"))
        .map(|m| m.len())
        .unwrap_or(0)
}

/// A closed store whose change log holds three records (keys "one", "two", "three"), the log's
/// path and the document that wrote them, for the tests that damage the log.
fn store_with_three_records() -> (tempfile::TempDir, std::path::PathBuf, Automerge) {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut doc = Automerge::new();
    for key in ["one", "two", "three"] {
        put(&mut doc, key, key);
        store.append_changes(&mut doc).unwrap();
    }
    drop(store);
    let log_path = tmp.path().join("changes.log");
    (tmp, log_path, doc)
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
    assert!(log_len(tmp.path()) > 0, "small appends go to the log");
    drop(store);

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
        let before = log_len(tmp.path());
        store.append_changes(&mut doc).unwrap();
        assert_eq!(log_len(tmp.path()), before, "nothing new, nothing written");
        put(&mut doc, "after", "restart");
        store.append_changes(&mut doc).unwrap();
        assert!(log_len(tmp.path()) > before);
    }
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
    let mut store = LocalStore::open(tmp.path()).unwrap();
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
        store.append_changes(&mut doc).unwrap();
        assert!(
            log_len(tmp.path()) <= 1024 * 1024,
            "log stays under 1 MiB, is {}",
            log_len(tmp.path())
        );
    }
    assert!(tmp.path().join("document.automerge").exists());
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
    assert!(tmp.path().join("document.automerge").exists());
    let log = fs::read(tmp.path().join("changes.log")).unwrap();
    assert!(record_offsets(&log).len() < 1000);
    drop(store);

    let store = LocalStore::open(tmp.path()).unwrap();
    let loaded = store.load_document().unwrap().unwrap();
    assert_eq!(loaded.get_heads(), doc.get_heads());
    assert_eq!(get_int(&loaded, "counter"), Some(1009));
}

#[test]
fn a_torn_last_record_loses_only_that_record_and_the_next_append_works() {
    let (tmp, log_path, _) = store_with_three_records();
    let full = fs::read(&log_path).unwrap();
    let third = record_offsets(&full)[2];
    // A crash in the middle of writing the third record.
    fs::write(&log_path, &full[..full.len() - 3]).unwrap();

    let mut store = LocalStore::open(tmp.path()).unwrap();
    let mut doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&doc, "one").as_deref(), Some("one"));
    assert_eq!(get_str(&doc, "two").as_deref(), Some("two"));
    assert_eq!(get_str(&doc, "three"), None);

    put(&mut doc, "four", "four");
    store.append_changes(&mut doc).unwrap();
    let log = fs::read(&log_path).unwrap();
    assert_eq!(log[..third], full[..third], "valid records are untouched");
    assert_eq!(
        record_offsets(&log).len(),
        3,
        "the torn record was cut away"
    );
    drop(store);

    let store = LocalStore::open(tmp.path()).unwrap();
    let doc = store.load_document().unwrap().unwrap();
    assert_eq!(get_str(&doc, "one").as_deref(), Some("one"));
    assert_eq!(get_str(&doc, "two").as_deref(), Some("two"));
    assert_eq!(get_str(&doc, "three"), None);
    assert_eq!(get_str(&doc, "four").as_deref(), Some("four"));
}

#[test]
fn a_flipped_byte_in_a_middle_record_is_reported_as_corrupt_naming_the_log() {
    let (tmp, log_path, mut doc) = store_with_three_records();
    let mut log = fs::read(&log_path).unwrap();
    let offsets = record_offsets(&log);
    log[offsets[1] + RECORD_HEADER_LEN + 5] ^= 0x40;
    fs::write(&log_path, &log).unwrap();

    let mut store = LocalStore::open(tmp.path()).unwrap();
    match store.load_document() {
        Err(StoreError::Corrupt { path, reason }) => {
            assert_eq!(path, log_path, "{reason}");
        }
        other => panic!("expected Corrupt, got {:?}", other.map(|d| d.is_some())),
    }
    let message = store.load_document().err().unwrap().to_string();
    assert!(message.contains("changes.log"), "{message}");

    put(&mut doc, "four", "four");
    assert!(matches!(
        store.append_changes(&mut doc),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(
        fs::read(&log_path).unwrap(),
        log,
        "a corrupt log is not written to"
    );
}

#[test]
fn a_store_of_a_newer_format_is_refused_and_left_untouched() {
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
    let names: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["meta.json"]);
    assert_eq!(
        fs::read_to_string(tmp.path().join("meta.json")).unwrap(),
        meta
    );
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
    let meta_path = tmp.path().join("meta.json");
    let written = format!(
        r#"{{"format": 1, "actor_id": "{}", "peer_id": "{}", "storage_id": "{}", "from_a_later_sdk": [1, 2]}}"#,
        meta.actor_id, meta.peer_id, meta.storage_id
    );
    fs::write(&meta_path, written).unwrap();
    let mut store = LocalStore::open(tmp.path()).unwrap();
    assert_eq!(store.meta().actor_id, meta.actor_id);
    assert_eq!(store.meta().tokens, None);
    assert_eq!(store.meta().user_id, None);
    store.update_meta(|m| m.tokens = None).unwrap();
    store
        .update_meta(|m| m.email = Some("bo@example.com".into()))
        .unwrap();
    drop(store);
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(json["from_a_later_sdk"], serde_json::json!([1, 2]));
    assert_eq!(json["email"], "bo@example.com");
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
    for name in ["document.automerge", "changes.log", "sync-state.bin"] {
        assert!(!tmp.path().join(name).exists(), "{name} is still there");
    }

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

/// Every later SDK must open this store, written by the first one.
#[test]
fn a_format_1_store_opens_with_its_document_and_meta() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-format-1");
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "meta.json",
        "document.automerge",
        "changes.log",
        "sync-state.bin",
    ] {
        fs::copy(fixture.join(name), tmp.path().join(name)).unwrap();
    }
    let log = fs::read(tmp.path().join("changes.log")).unwrap();
    assert!(!record_offsets(&log).is_empty());

    let store = LocalStore::open(tmp.path()).unwrap();
    let meta = store.meta();
    assert_eq!(meta.format, 1);
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
}
