//! Writes that land in an object no longer reachable from the document's root are carried to
//! the object that now stands in its place.
//!
//! A client may replace a whole collection (`expenses = {}`) or a map inside an entity (a
//! month's `paid`) while its partner, offline, edits inside the old object. Automerge merges
//! both: the replacement wins the key, and the partner's edits land in the old object, which
//! no reader reaches any more. Enforcement restores what the replacement removed, but only what
//! the server knew at the time; the partner's later edits would be lost because of someone
//! else's invalid write.
//!
//! So before enforcement, for every operation of the merged changes whose object is not
//! visible (overwritten, deleted, or the losing side of a conflict), the server copies the
//! value the operation wrote from the old object to the same path in the current document, as
//! its own change. The copy is made at the deepest level that still exists in the current
//! document (a field into the current entity; a whole entity into the current collection; the
//! collection map itself is recreated if it is gone), then enforcement judges the result as the
//! author's edit, exactly as if it had been written in the current object. What is copied
//! depends only on the document and the changes, and nothing is written where the current
//! value already equals the old one, so two servers rescuing the same merge write the same
//! values and converge.

use std::collections::{BTreeMap, HashMap};

use automerge::legacy::{Key, ObjectId};
use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    Automerge, AutomergeError, Change, ChangeHash, ObjId, ObjType, Prop, ReadDoc, ScalarValue,
    Value, ROOT,
};

use crate::schema::Collection;
use crate::time::Millis;

/// One value to carry: its path of map keys from the root, and the old object holding it at
/// each level (`sources[i]` holds `path[i]`).
#[derive(Debug)]
struct Orphan {
    sources: Vec<ObjId>,
}

/// Finds the writes of `changes` (already applied to `doc`) that landed in objects no longer
/// reachable, keyed by path. Only paths under a collection count: the root's own keys are
/// compared whole by enforcement.
fn orphaned_writes(doc: &Automerge, changes: &[Change]) -> BTreeMap<Vec<String>, Orphan> {
    let mut found = BTreeMap::new();
    // Whether each object the changes write into is reachable: one walk to the root per
    // object, not per operation (a change writes many fields of one entity).
    let mut reachable: HashMap<String, bool> = HashMap::new();
    for change in changes {
        let decoded = change.decode();
        for op in &decoded.operations {
            let ObjectId::Id(opid) = &op.obj else {
                continue;
            };
            let id = opid.to_string();
            if reachable.get(&id) == Some(&true) {
                continue;
            }
            let Ok((obj, obj_type)) = doc.import(&id) else {
                continue;
            };
            let Ok(parents) = doc.parents(&obj) else {
                continue;
            };
            let mut chain: Vec<(ObjId, Prop, bool)> = parents
                .map(|p| (p.obj, p.prop, p.visible))
                .collect::<Vec<_>>();
            let visible = chain.iter().all(|(_, _, visible)| *visible);
            reachable.insert(id, visible);
            if visible {
                continue;
            }
            chain.reverse();
            let mut path = Vec::with_capacity(chain.len() + 1);
            let mut sources = Vec::with_capacity(chain.len() + 1);
            for (parent, prop, _) in chain {
                let Prop::Map(key) = prop else {
                    break;
                };
                path.push(key);
                sources.push(parent);
            }
            if path.is_empty() || Collection::from_key(&path[0]).is_none() {
                continue;
            }
            match (obj_type, &op.key) {
                // A key written in an old map: carry that key's value.
                (ObjType::Map | ObjType::Table, Key::Map(key)) if sources.len() == path.len() => {
                    path.push(key.to_string());
                    sources.push(obj);
                }
                // Text or list edited in place: carry the whole value from its parent map.
                (ObjType::Text | ObjType::List, Key::Seq(_)) if sources.len() == path.len() => {}
                _ => continue,
            }
            found.entry(path).or_insert(Orphan { sources });
        }
    }
    found
}

/// Copies every orphaned write of `changes` (already applied to `doc`) into the current
/// document as one change by `doc`'s actor (the server's), returning its hash, or `None` when
/// nothing landed out of reach (nearly every merge: the check is one lookup per operation).
pub fn rescue_orphaned_writes(
    doc: &mut Automerge,
    changes: &[Change],
    now: Millis,
) -> Result<Option<ChangeHash>, AutomergeError> {
    let orphans = orphaned_writes(doc, changes);
    if orphans.is_empty() {
        return Ok(None);
    }
    let result = doc.transact_with::<_, _, AutomergeError, _>(
        |_| {
            CommitOptions::default()
                .with_message(crate::history::RESCUE_MESSAGE)
                .with_time(now.0 / 1000)
        },
        |tx| {
            let mut carried: Vec<Vec<String>> = Vec::new();
            for (path, orphan) in &orphans {
                if carried.iter().any(|done| path.starts_with(done)) {
                    continue;
                }
                carried.push(carry(tx, path, &orphan.sources)?);
            }
            Ok(())
        },
    );
    match result {
        Ok(success) => Ok(success.hash),
        Err(failure) => Err(failure.error),
    }
}

/// Walks `path` down the current document and copies the old value at the deepest level that
/// exists there; returns the path copied whole (everything below it is carried with it).
fn carry<T: Transactable>(
    tx: &mut T,
    path: &[String],
    sources: &[ObjId],
) -> Result<Vec<String>, AutomergeError> {
    let mut current = ROOT;
    let last = path.len() - 1;
    for (depth, key) in path.iter().enumerate().take(last) {
        match tx.get(&current, key.as_str())? {
            Some((Value::Object(ObjType::Map), id)) => current = id,
            // The collection itself is gone: recreate it empty and carry into it.
            _ if depth == 0 => current = tx.put_object(&current, key.as_str(), ObjType::Map)?,
            // The entity (or inner map) is gone: carry the whole old one.
            _ => {
                copy(tx, &sources[depth], key, &current)?;
                return Ok(path[..=depth].to_vec());
            }
        }
    }
    copy(tx, &sources[last], &path[last], &current)?;
    Ok(path.to_vec())
}

/// Makes `to[key]` hold what `from[key]` holds (recursively for objects; a Text as a new Text
/// with the same characters), writing nothing where they are already equal.
fn copy<T: Transactable>(
    tx: &mut T,
    from: &ObjId,
    key: &str,
    to: &ObjId,
) -> Result<(), AutomergeError> {
    if same(tx, from, key, to)? {
        return Ok(());
    }
    match tx.get(from, key)? {
        None => tx.delete(to, key)?,
        Some((Value::Scalar(v), _)) => tx.put(to, key, owned_scalar(&v))?,
        Some((Value::Object(ObjType::Text), id)) => {
            let text = tx.text(&id)?;
            crate::write::put_text(tx, to, key, &text)?;
        }
        Some((Value::Object(ObjType::List), id)) => {
            let list = tx.put_object(to, key, ObjType::List)?;
            for i in 0..tx.length(&id) {
                match tx.get(&id, i)? {
                    Some((Value::Scalar(v), _)) => tx.insert(&list, i, owned_scalar(&v))?,
                    // Lists of objects are not part of the schema: their scalars are enough.
                    _ => tx.insert(&list, i, ScalarValue::Null)?,
                }
            }
        }
        Some((Value::Object(_), id)) => {
            let map = tx.put_object(to, key, ObjType::Map)?;
            let keys: Vec<String> = tx.keys(&id).collect();
            for k in keys {
                copy(tx, &id, &k, &map)?;
            }
        }
    }
    Ok(())
}

fn owned_scalar(v: &ScalarValue) -> ScalarValue {
    match v {
        // A counter is carried as a fresh counter holding the old one's value.
        ScalarValue::Counter(c) => ScalarValue::counter(i64::from(c)),
        other => other.clone(),
    }
}

/// Whether `from[key]` and `to[key]` hold the same value (Text and strings compared as text).
fn same<R: ReadDoc>(doc: &R, from: &ObjId, key: &str, to: &ObjId) -> Result<bool, AutomergeError> {
    let a = doc.get(from, key)?;
    let b = doc.get(to, key)?;
    Ok(match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => same_value(doc, a, b)?,
        _ => false,
    })
}

fn same_value<R: ReadDoc>(
    doc: &R,
    a: (Value<'_>, ObjId),
    b: (Value<'_>, ObjId),
) -> Result<bool, AutomergeError> {
    let text = |doc: &R, v: &(Value<'_>, ObjId)| -> Result<Option<String>, AutomergeError> {
        match v {
            (Value::Scalar(s), _) => Ok(match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            }),
            (Value::Object(ObjType::Text), id) => Ok(Some(doc.text(id)?)),
            _ => Ok(None),
        }
    };
    if let (Some(x), Some(y)) = (text(doc, &a)?, text(doc, &b)?) {
        return Ok(x == y);
    }
    Ok(match (&a, &b) {
        ((Value::Scalar(x), _), (Value::Scalar(y), _)) => {
            owned_scalar(x.as_ref()) == owned_scalar(y.as_ref())
        }
        ((Value::Object(ObjType::Map), x), (Value::Object(ObjType::Map), y)) => {
            let xs: Vec<String> = doc.keys(x).collect();
            let ys: Vec<String> = doc.keys(y).collect();
            if xs != ys {
                return Ok(false);
            }
            for k in &xs {
                if !same(doc, x, k, y)? {
                    return Ok(false);
                }
            }
            true
        }
        _ => false,
    })
}
