//! Format 1 of the local store, kept only to read it once and migrate it to SQLite.
//!
//! A format-1 store is a directory of files:
//!
//! | file | holds |
//! | --- | --- |
//! | `meta.json` | [`StoreMeta`] as JSON, `"format": 1` |
//! | `document.automerge` | a full `Automerge::save()` snapshot of the document |
//! | `changes.log` | changes written since the snapshot, append-only |
//! | `sync-state.bin` | `automerge::sync::State::encode()` for the server |
//! | `store.lock` | locked while a format-1 SDK had the store open; its content is meaningless |
//!
//! Each `changes.log` record is framed as
//! `length: u32 LE | payload crc32: u32 LE | header crc32: u32 LE | payload`,
//! where the header checksum covers the first eight bytes and the payload holds the changes in
//! automerge's change-chunk encoding (`Automerge::save_after`). The document is the snapshot
//! (when there is one) with every record applied in order. A record cut short by a crash can
//! only be the last one: it was never acknowledged, so reading ignores it. Damage anywhere
//! before the tail is [`StoreError::Corrupt`] rather than skipped, because skipping it would
//! silently drop the user's changes.
//!
//! Writing format 1 is gone; what is left is the reader (framing, CRC-32, torn-tail tolerance,
//! the `format` check of `meta.json`), the lock a format-1 SDK takes, and the removal of the
//! files once their content is committed to SQLite.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use serde_json::{Map, Value};

use super::{meta_from_fields, read_optional, sync_dir, StoreError, StoreMeta, STORE_FORMAT};

pub(super) const META_FILE: &str = "meta.json";
pub(super) const DOCUMENT_FILE: &str = "document.automerge";
pub(super) const LOG_FILE: &str = "changes.log";
pub(super) const SYNC_STATE_FILE: &str = "sync-state.bin";
pub(super) const LOCK_FILE: &str = "store.lock";

/// The files that hold a format-1 store's data: a directory with any of them is a format-1
/// store (a format-1 SDK gave a directory without `meta.json` a fresh identity and kept the
/// rest, and so does the migration).
const DATA_FILES: [&str; 4] = [META_FILE, DOCUMENT_FILE, LOG_FILE, SYNC_STATE_FILE];

/// Everything a format-1 SDK may have left in a directory, in the order the migration removes
/// it: `meta.json` first, because it is what marks a directory as format 1; the temp files of
/// its atomic writes; the lock last.
const FILES_IN_REMOVAL_ORDER: [&str; 8] = [
    META_FILE,
    "meta.json.tmp",
    SYNC_STATE_FILE,
    "sync-state.bin.tmp",
    LOG_FILE,
    DOCUMENT_FILE,
    "document.automerge.tmp",
    LOCK_FILE,
];

/// The content of a format-1 store, as the SQLite store takes it over.
pub(super) struct Store1 {
    /// `meta.json`, already brought to [`STORE_FORMAT`] (or a fresh identity when missing).
    pub(super) meta: StoreMeta,
    /// `meta.json` fields this SDK does not know.
    pub(super) meta_extra: Map<String, Value>,
    /// `document.automerge`.
    pub(super) document: Option<Vec<u8>>,
    /// The payloads of the valid `changes.log` records, in order (a torn last record left out).
    pub(super) changes: Vec<Vec<u8>>,
    /// `sync-state.bin`.
    pub(super) sync_state: Option<Vec<u8>>,
    /// `store.lock`, held until the migration is done: a format-1 SDK holds it while it has the
    /// store open, and its later writes would be lost.
    pub(super) _lock: File,
}

/// Reads the format-1 store in `dir`, if there is one. Fails with [`StoreError::Locked`] while
/// a format-1 SDK has it open, and with [`StoreError::Corrupt`] (naming the file) for damage
/// that is not a torn last log record.
pub(super) fn read(dir: &Path) -> Result<Option<Store1>, StoreError> {
    let mut present = false;
    for name in DATA_FILES {
        present |= super::exists(&dir.join(name))?;
    }
    if !present {
        return Ok(None);
    }
    let lock = acquire_lock(dir)?;

    let meta_path = dir.join(META_FILE);
    let (meta, meta_extra) = match read_optional(&meta_path)? {
        Some(bytes) => parse_meta(&meta_path, &bytes)?,
        None => (StoreMeta::fresh(), Map::new()),
    };
    let document = read_optional(&dir.join(DOCUMENT_FILE))?;
    let log_path = dir.join(LOG_FILE);
    let log = read_optional(&log_path)?.unwrap_or_default();
    let changes = parse_log(&log)
        .map_err(|reason| StoreError::Corrupt {
            path: log_path,
            reason,
        })?
        .records
        .into_iter()
        .map(|(_, payload)| payload.to_vec())
        .collect();
    let sync_state = read_optional(&dir.join(SYNC_STATE_FILE))?;
    Ok(Some(Store1 {
        meta,
        meta_extra,
        document,
        changes,
        sync_state,
        _lock: lock,
    }))
}

/// Removes whatever a format-1 SDK left in `dir` (once its content is committed to SQLite),
/// then makes the removals durable. Any of the files may already be gone: a crash may have
/// stopped an earlier removal halfway.
pub(super) fn remove(dir: &Path) -> Result<(), StoreError> {
    let mut removed = false;
    for name in FILES_IN_REMOVAL_ORDER {
        let path = dir.join(name);
        match fs::remove_file(&path) {
            Ok(()) => removed = true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path, source }),
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Parses a format-1 `meta.json` and brings it to [`STORE_FORMAT`]: the metadata and the
/// fields this SDK does not know. A newer `format` is [`StoreError::NewerFormat`].
pub(super) fn parse_meta(
    path: &Path,
    bytes: &[u8],
) -> Result<(StoreMeta, Map<String, Value>), StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not JSON: {e}")))?;
    let mut fields = check_format(value).map_err(|e| match e {
        FormatError::Newer(found) => StoreError::NewerFormat { found },
        FormatError::Invalid(reason) => corrupt(reason),
    })?;
    // The only change from format 1 to 2 in the metadata is where it lives.
    fields.insert("format".into(), STORE_FORMAT.into());
    meta_from_fields(path, fields)
}

#[derive(Debug, PartialEq, Eq)]
enum FormatError {
    /// Written by a newer SDK.
    Newer(u32),
    /// Not what any SDK wrote.
    Invalid(String),
}

/// The fields of a `meta.json` of format 1, the only format that kept one.
fn check_format(meta_json: Value) -> Result<Map<String, Value>, FormatError> {
    let Value::Object(fields) = meta_json else {
        return Err(FormatError::Invalid("not a JSON object".into()));
    };
    let format = fields
        .get("format")
        .and_then(Value::as_u64)
        .ok_or_else(|| FormatError::Invalid("no numeric `format` field".into()))?;
    let format = u32::try_from(format).map_err(|_| FormatError::Newer(u32::MAX))?;
    match format {
        1 => Ok(fields),
        newer if newer > STORE_FORMAT => Err(FormatError::Newer(newer)),
        other => Err(FormatError::Invalid(format!(
            "no SDK wrote a meta.json of format {other}"
        ))),
    }
}

fn acquire_lock(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|source| StoreError::Io {
            path: path.clone(),
            source,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StoreError::Locked {
            path: dir.to_path_buf(),
            lock: path,
        }),
        Err(fs::TryLockError::Error(source)) => Err(StoreError::Io { path, source }),
    }
}

// ---------------------------------------------------------------------------
// changes.log framing

const RECORD_HEADER_LEN: usize = 12;

/// Frames one log record: length, payload checksum, header checksum, payload. Only the tests
/// write format-1 logs now.
#[cfg(test)]
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
    #[cfg_attr(not(test), allow(dead_code))]
    valid_len: usize,
}

/// Reads the records of a log. A damaged record that is the last thing in the file is what a
/// crash mid-append leaves, so it ends the log; a damaged record with anything after it is an
/// error.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use automerge::transaction::Transactable;
    use automerge::{Automerge, ReadDoc, ScalarValue, ROOT};

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
    fn only_format_1_meta_json_is_read() {
        let meta = serde_json::json!({"format": 1, "actor_id": "00"});
        assert_eq!(
            check_format(meta.clone()),
            Ok(meta.as_object().unwrap().clone())
        );
        assert_eq!(
            check_format(serde_json::json!({"format": STORE_FORMAT + 1})),
            Err(FormatError::Newer(STORE_FORMAT + 1))
        );
        for invalid in [
            serde_json::json!({"format": 0}),
            serde_json::json!({"format": 2}),
            serde_json::json!({"actor_id": "00"}),
            serde_json::json!([1]),
        ] {
            assert!(
                matches!(check_format(invalid.clone()), Err(FormatError::Invalid(_))),
                "{invalid}"
            );
        }
    }

    const ACTOR: &str = "5a175a7e00000000000000000000f001";

    /// Writes a format-1 store into `dir` (a snapshot holding "base", then one log record per
    /// key) as a format-1 SDK would have left it; returns the log.
    fn write_format_1_store(dir: &Path, keys: &[&str]) -> Vec<u8> {
        let meta = serde_json::json!({
            "format": 1,
            "actor_id": ACTOR,
            "peer_id": "splitsave-client-0b6f1d3e-2a4c-4e8b-9c1d-5e7f8a9b0c1d",
            "storage_id": "7c3e9a51-4b2d-4f6e-8a1c-2d3e4f5a6b7c",
        });
        fs::write(dir.join(META_FILE), meta.to_string()).unwrap();
        let mut doc = Automerge::new();
        put(&mut doc, "base", "snapshot");
        fs::write(dir.join(DOCUMENT_FILE), doc.save()).unwrap();
        let mut log = Vec::new();
        for key in keys {
            let heads = doc.get_heads();
            put(&mut doc, key, key);
            log.extend(frame_record(&doc.save_after(&heads)).unwrap());
        }
        fs::write(dir.join(LOG_FILE), &log).unwrap();
        File::create(dir.join(LOCK_FILE)).unwrap();
        log
    }

    fn put(doc: &mut Automerge, key: &str, value: &str) {
        let mut tx = doc.transaction();
        tx.put(ROOT, key, value).unwrap();
        tx.commit();
    }

    fn get(doc: &Automerge, key: &str) -> Option<String> {
        match doc.get(ROOT, key).unwrap() {
            Some((automerge::Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                other => panic!("{key} is {other:?}"),
            },
            Some(other) => panic!("{key} is {other:?}"),
            None => None,
        }
    }

    #[test]
    fn a_torn_last_record_is_left_behind_by_the_migration() {
        let tmp = tempfile::tempdir().unwrap();
        let log = write_format_1_store(tmp.path(), &["one", "two", "three"]);
        // A crash in the middle of writing the third record.
        fs::write(tmp.path().join(LOG_FILE), &log[..log.len() - 3]).unwrap();

        let mut store = LocalStore::open(tmp.path()).unwrap();
        assert_eq!(store.meta().actor_id, ACTOR);
        let mut doc = store.load_document().unwrap().unwrap();
        assert_eq!(get(&doc, "base").as_deref(), Some("snapshot"));
        assert_eq!(get(&doc, "one").as_deref(), Some("one"));
        assert_eq!(get(&doc, "two").as_deref(), Some("two"));
        assert_eq!(get(&doc, "three"), None);
        for name in FILES_IN_REMOVAL_ORDER {
            assert!(!tmp.path().join(name).exists(), "{name} is still there");
        }

        put(&mut doc, "four", "four");
        store.append_changes(&mut doc).unwrap();
        drop(store);
        let store = LocalStore::open(tmp.path()).unwrap();
        let doc = store.load_document().unwrap().unwrap();
        assert_eq!(get(&doc, "two").as_deref(), Some("two"));
        assert_eq!(get(&doc, "three"), None);
        assert_eq!(get(&doc, "four").as_deref(), Some("four"));
    }

    #[test]
    fn a_flipped_byte_in_a_middle_record_stops_the_migration_and_loses_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let mut log = write_format_1_store(tmp.path(), &["one", "two", "three"]);
        let second = parse_log(&log).unwrap().records[1].0;
        log[second + RECORD_HEADER_LEN + 5] ^= 0x40;
        fs::write(tmp.path().join(LOG_FILE), &log).unwrap();
        let before: Vec<_> = DATA_FILES
            .iter()
            .map(|name| fs::read(tmp.path().join(name)).ok())
            .collect();

        for _ in 0..2 {
            match LocalStore::open(tmp.path()) {
                Err(StoreError::Corrupt { path, reason }) => {
                    assert_eq!(path, tmp.path().join(LOG_FILE), "{reason}");
                    assert!(reason.contains("record 1"), "{reason}");
                }
                Err(other) => panic!("expected Corrupt, got {other}"),
                Ok(_) => panic!("a store with a damaged log was migrated"),
            }
        }
        let after: Vec<_> = DATA_FILES
            .iter()
            .map(|name| fs::read(tmp.path().join(name)).ok())
            .collect();
        assert!(before == after, "the format-1 files were changed");
    }
}
