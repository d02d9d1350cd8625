//! What a sync message may hold, checked before anything of it is applied: its chunks parsed one
//! by one within the message's bounds, the size of every value it writes, and a backlog split
//! into merges of bounded size in causal order.

use std::collections::{HashMap, HashSet};

use automerge::sync;
use automerge::{Automerge, Change, ChangeHash, ReadDoc};

use crate::sync::{SyncError, SyncLimits};

/// The first bytes of every Automerge chunk (document, change, compressed change, bundle).
const CHUNK_MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
/// Chunk type of a whole document.
const CHUNK_DOCUMENT: u8 = 0;
/// Chunk type of a DEFLATE-compressed change.
const CHUNK_COMPRESSED_CHANGE: u8 = 2;
/// Chunk type of a bundle of changes.
const CHUNK_BUNDLE: u8 = 3;

/// Parses the message's chunks as individual changes, refusing before anything is decompressed
/// beyond the limits or applied: malformed or corrupt chunks, whole-document and bundle chunks
/// (their expansion cannot be bounded without loading them; the server advertises no
/// version-2 support, so well-behaved peers never send them), and compressed changes that
/// inflate beyond `max_change_bytes`. Then [`check_limits`].
pub(super) fn parse_changes(
    message: &sync::Message,
    limits: &SyncLimits,
) -> Result<Vec<Change>, SyncError> {
    if message.changes.len() > limits.max_changes_per_message {
        return Err(SyncError::TooLarge("too many changes in one message"));
    }
    let mut changes = Vec::with_capacity(message.changes.len());
    let mut ops = 0usize;
    for chunk in message.changes.iter() {
        let (kind, body) = chunk_parts(chunk).ok_or(SyncError::Malformed)?;
        match kind {
            CHUNK_DOCUMENT | CHUNK_BUNDLE => {
                return Err(SyncError::TooLarge(
                    "whole-document chunks are not accepted: send changes",
                ))
            }
            CHUNK_COMPRESSED_CHANGE => inflates_within(body, limits.max_change_bytes)?,
            _ => {}
        }
        let change = Change::from_bytes(chunk.to_vec()).map_err(|_| SyncError::Malformed)?;
        if !checksum_matches(chunk, &change) {
            return Err(SyncError::Malformed);
        }
        // Counted as each change is parsed: automerge walks every operation of a change while
        // parsing it, and a change of a hundred bytes can hold a million run-length-encoded
        // operations, so thousands of them must not all be parsed before the total is checked.
        ops = ops.saturating_add(change.len());
        if ops > limits.max_ops_per_message {
            return Err(SyncError::TooLarge("too many operations in one message"));
        }
        changes.push(change);
    }
    check_limits(&changes, limits)?;
    Ok(changes)
}

/// Automerge parses a change without checking the chunk's checksum (the first four bytes of the
/// change's hash, kept in the header; a compressed chunk carries its uncompressed change's). A
/// corrupted byte can still parse as some other change; storing it would leave a document that
/// no longer loads, so a mismatch is refused as malformed.
fn checksum_matches(chunk: &[u8], change: &Change) -> bool {
    chunk.get(4..8) == Some(&change.hash().0[..4])
}

/// The type byte and the body of a chunk (magic, 4-byte checksum, type, LEB128 body length,
/// body); `None` unless the header is well-formed and the length matches exactly.
fn chunk_parts(chunk: &[u8]) -> Option<(u8, &[u8])> {
    if chunk.len() < 10 || chunk[..4] != CHUNK_MAGIC {
        return None;
    }
    let kind = chunk[8];
    let mut length = 0u64;
    let mut used = 0;
    for (i, byte) in chunk[9..].iter().enumerate().take(10) {
        length |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            used = i + 1;
            break;
        }
    }
    let body = chunk.get(9 + used..)?;
    (used > 0 && u64::try_from(body.len()).ok()? == length).then_some((kind, body))
}

/// Inflates a compressed change's body into nothing, stopping past `limit` bytes: a small
/// change that expands to megabytes is refused without being decompressed, let alone parsed.
fn inflates_within(body: &[u8], limit: usize) -> Result<(), SyncError> {
    use std::io::Read;
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut inflated = flate2::bufread::DeflateDecoder::new(body).take(cap);
    let size =
        std::io::copy(&mut inflated, &mut std::io::sink()).map_err(|_| SyncError::Malformed)?;
    if size >= cap {
        return Err(SyncError::TooLarge("a change is too large"));
    }
    Ok(())
}

/// Bounds what a message may expand to before anything is applied: number of changes, number
/// of operations, and the uncompressed size of each change.
pub(super) fn check_limits(changes: &[Change], limits: &SyncLimits) -> Result<(), SyncError> {
    if changes.len() > limits.max_changes_per_message {
        return Err(SyncError::TooLarge("too many changes in one message"));
    }
    let mut ops = 0usize;
    for c in changes {
        if c.raw_bytes().len() > limits.max_change_bytes {
            return Err(SyncError::TooLarge("a change is too large"));
        }
        if c.len() > limits.max_ops_per_merge {
            return Err(SyncError::TooLarge("a change has too many operations"));
        }
        ops += c.len();
        if ops > limits.max_ops_per_message {
            return Err(SyncError::TooLarge("too many operations in one message"));
        }
    }
    Ok(())
}

/// Splits new changes (whose dependencies are all in the document or among them) into merges of
/// at most `max_changes_per_merge` changes and `max_ops_per_merge` operations, in causal order
/// (every change after its dependencies), so each merge applies on top of the ones before it.
/// Nearly every message is one merge, returned as it came.
pub(super) fn in_merges(new: Vec<Change>, limits: &SyncLimits) -> Vec<Vec<Change>> {
    let ops: usize = new.iter().map(Change::len).sum();
    if new.len() <= limits.max_changes_per_merge && ops <= limits.max_ops_per_merge {
        return vec![new];
    }
    let mut merges = vec![Vec::new()];
    let mut merge_ops = 0;
    for change in causal_order(new) {
        let current = merges.last().map_or(0, Vec::len);
        if current > 0
            && (current >= limits.max_changes_per_merge
                || merge_ops + change.len() > limits.max_ops_per_merge)
        {
            merges.push(Vec::new());
            merge_ops = 0;
        }
        merge_ops += change.len();
        if let Some(m) = merges.last_mut() {
            m.push(change);
        }
    }
    merges
}

/// The changes ordered so that each comes after those of its dependencies that are among them
/// (depth-first, iteratively: a backlog can be a chain of 100,000 changes).
fn causal_order(changes: Vec<Change>) -> Vec<Change> {
    let index: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash(), i))
        .collect();
    let mut placed = vec![false; changes.len()];
    let mut order = Vec::with_capacity(changes.len());
    for start in 0..changes.len() {
        let mut stack = vec![(start, false)];
        while let Some((i, deps_done)) = stack.pop() {
            if placed[i] {
                continue;
            }
            if deps_done {
                placed[i] = true;
                order.push(i);
                continue;
            }
            stack.push((i, true));
            for d in changes[i].deps() {
                if let Some(&j) = index.get(d) {
                    if !placed[j] {
                        stack.push((j, false));
                    }
                }
            }
        }
    }
    let mut slots: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

/// Longest map key a change may write (the schema's are at most 36 bytes; unknown keys that a
/// newer app adds have room to spare).
const MAX_KEY_BYTES: usize = 256;

/// Refuses, before anything is applied, a change that writes a value larger than
/// `max_value_bytes`: a string or bytes put whole, or text inserted into one object (what the
/// message inserts plus what the object already holds). Enforcement would remove such a value
/// from the document, but not from the history that every replica downloads.
pub(super) fn check_values(
    doc: &Automerge,
    changes: &[Change],
    limits: &SyncLimits,
) -> Result<(), SyncError> {
    use automerge::legacy::{Key, ObjectId, OpType};
    use automerge::ScalarValue;
    let too_large = || SyncError::TooLarge("a value is too large");
    let mut inserted: HashMap<String, usize> = HashMap::new();
    for change in changes {
        for op in change.decode().operations {
            // A map key is a value too: every key of the schema is a UUID, a field name or a
            // month, and a long one would stay in the history just the same.
            if matches!(&op.key, Key::Map(k) if k.len() > MAX_KEY_BYTES) {
                return Err(SyncError::TooLarge("a key is too long"));
            }
            let size = match &op.action {
                OpType::Put(ScalarValue::Str(s)) => s.len(),
                OpType::Put(ScalarValue::Bytes(b)) => b.len(),
                _ => continue,
            };
            if size > limits.max_value_bytes {
                return Err(too_large());
            }
            if op.insert {
                if let ObjectId::Id(id) = &op.obj {
                    *inserted.entry(id.to_string()).or_default() += size;
                }
            }
        }
    }
    for (obj, added) in inserted {
        let held = doc.import(&obj).ok().map_or(0, |(id, _)| doc.length(&id));
        if held + added > limits.max_value_bytes {
            return Err(too_large());
        }
    }
    Ok(())
}

/// True when every new change's dependencies are in the document or among the new changes (so
/// applying the message adds exactly these changes).
pub(super) fn deps_satisfied(doc: &Automerge, new: &[Change]) -> bool {
    let incoming: HashSet<ChangeHash> = new.iter().map(Change::hash).collect();
    new.iter().all(|c| {
        c.deps()
            .iter()
            .all(|d| incoming.contains(d) || doc.get_change_meta_by_hash(d).is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;

    fn one_change() -> Vec<u8> {
        let mut doc = Automerge::new();
        doc.transact::<_, _, automerge::AutomergeError>(|tx| {
            tx.put(
                automerge::ROOT,
                "name",
                "a string long enough to corrupt safely",
            )?;
            Ok(())
        })
        .expect("change");
        doc.get_changes(&[])[0].raw_bytes().to_vec()
    }

    #[test]
    fn a_corrupted_byte_that_still_parses_is_refused_by_its_checksum() {
        let bytes = one_change();
        let good = Change::from_bytes(bytes.clone()).expect("parses");
        assert!(checksum_matches(&bytes, &good));
        // Change one character of the string value: still a well-formed change.
        let at = bytes
            .windows(6)
            .position(|w| w == b"string")
            .expect("the value is in the chunk");
        let mut corrupt = bytes.clone();
        corrupt[at] = b'S';
        let parsed = Change::from_bytes(corrupt.clone()).expect("automerge still parses it");
        assert!(!checksum_matches(&corrupt, &parsed));
        let limits = SyncLimits::default();
        let message = sync::Message {
            heads: Vec::new(),
            need: Vec::new(),
            have: Vec::new(),
            changes: vec![corrupt].into(),
            flags: None,
            version: sync::MessageVersion::V1,
        };
        assert!(matches!(
            parse_changes(&message, &limits),
            Err(SyncError::Malformed)
        ));
    }
}
