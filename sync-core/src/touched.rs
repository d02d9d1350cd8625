//! Which parts of the document a set of changes touched, found from the changes' operations
//! (never a whole-document diff), so enforcement and materialization cost what the merge
//! costs, not what the document weighs.

use std::collections::{BTreeMap, BTreeSet};

use automerge::legacy::{Key, ObjectId};
use automerge::{Automerge, Change, Prop, ReadDoc};

use crate::read;
use crate::schema::Collection;

/// Entities and top-level keys touched by a merge.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    /// Top-level keys written directly (`schema`, `partnership`, or a replaced collection).
    pub root_keys: BTreeSet<String>,
    /// Entity keys touched, per collection.
    pub entities: BTreeMap<Collection, BTreeSet<String>>,
}

impl Touched {
    /// Marks `collection.<key>` touched.
    pub fn add(&mut self, c: Collection, key: impl Into<String>) {
        self.entities.entry(c).or_default().insert(key.into());
    }

    /// The touched keys of a collection.
    pub fn keys(&self, c: Collection) -> impl Iterator<Item = &String> {
        self.entities.get(&c).into_iter().flatten()
    }

    /// True when nothing was touched.
    pub fn is_empty(&self) -> bool {
        self.root_keys.is_empty() && self.entities.values().all(BTreeSet::is_empty)
    }

    /// Adds everything in `other`.
    pub fn extend(&mut self, other: &Touched) {
        self.root_keys.extend(other.root_keys.iter().cloned());
        for (c, keys) in &other.entities {
            self.entities
                .entry(*c)
                .or_default()
                .extend(keys.iter().cloned());
        }
    }

    /// Marks every entity of a collection (in either document) touched: used when a client
    /// replaced a whole collection map, or when an object's place cannot be resolved.
    fn add_all(&mut self, c: Collection, before: &Automerge, after: &Automerge) {
        for k in read::collection_keys(before, c) {
            self.add(c, k);
        }
        for k in read::collection_keys(after, c) {
            self.add(c, k);
        }
    }

    /// Everything in both documents (the slow path for changes whose objects cannot be
    /// placed; correct, never taken by well-formed merges).
    pub fn everything(before: &Automerge, after: &Automerge) -> Self {
        let mut t = Touched::default();
        for c in Collection::ALL {
            t.add_all(c, before, after);
        }
        t.root_keys.insert(crate::schema::keys::PARTNERSHIP.into());
        t.root_keys.insert(crate::schema::keys::SCHEMA.into());
        t
    }
}

/// What `changes` (already applied to `after`, absent from `before`) touched.
pub fn touched_by(before: &Automerge, after: &Automerge, changes: &[Change]) -> Touched {
    let mut t = Touched::default();
    for change in changes {
        for op in change.decode().operations {
            let ok = match &op.obj {
                ObjectId::Root => {
                    if let Key::Map(k) = &op.key {
                        match Collection::from_key(k) {
                            Some(c) => {
                                t.root_keys.insert(k.to_string());
                                t.add_all(c, before, after);
                            }
                            None => {
                                t.root_keys.insert(k.to_string());
                            }
                        }
                    }
                    true
                }
                ObjectId::Id(opid) => {
                    place(after, &opid.to_string(), &op.key, &mut t)
                        || place(before, &opid.to_string(), &op.key, &mut t)
                }
            };
            if !ok {
                return Touched::everything(before, after);
            }
        }
    }
    t
}

/// Records the entity (or root key) that object `obj` lives in; false when `doc` does not
/// know the object.
fn place(doc: &Automerge, obj: &str, key: &Key, t: &mut Touched) -> bool {
    let Ok((exid, _)) = doc.import(obj) else {
        return false;
    };
    let Ok(parents) = doc.parents(&exid) else {
        return false;
    };
    let path = parents.path();
    let Some((_, Prop::Map(top))) = path.first() else {
        return false;
    };
    match Collection::from_key(top) {
        Some(c) => {
            let entity = match path.get(1) {
                Some((_, Prop::Map(k))) => k.to_string(),
                Some((_, Prop::Seq(_))) => return false,
                None => match key {
                    Key::Map(k) => k.to_string(),
                    Key::Seq(_) => return false,
                },
            };
            t.add(c, entity);
        }
        None => {
            t.root_keys.insert(top.to_string());
        }
    }
    true
}
