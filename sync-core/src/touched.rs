//! Which parts of the document a set of changes touched, found from the changes' operations
//! (never a whole-document diff), so enforcement and materialization cost what the merge
//! costs, not what the document weighs.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use automerge::legacy::OpType;
use automerge::legacy::{Key, ObjectId};
use automerge::ExpandedChange;
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

    /// Marks every entity of a collection (in any of `docs`) touched: used when a client
    /// replaced a whole collection map.
    fn add_all(&mut self, c: Collection, docs: &[&Automerge]) {
        for doc in docs {
            for k in read::collection_keys(*doc, c) {
                self.add(c, k);
            }
        }
    }

    /// Everything in both documents (the slow path for changes whose objects cannot be
    /// placed; correct, never taken by well-formed merges).
    pub fn everything(docs: &[&Automerge]) -> Self {
        let mut t = Touched::default();
        for c in Collection::ALL {
            t.add_all(c, docs);
        }
        t.root_keys.insert(crate::schema::keys::PARTNERSHIP.into());
        t.root_keys.insert(crate::schema::keys::SCHEMA.into());
        t
    }
}

/// What `changes` (already applied to `after`, absent from `before`) touched.
pub fn touched_by(before: &Automerge, after: &Automerge, changes: &[Change]) -> Touched {
    touched_in(&[before, after], changes)
}

/// What `changes` will touch when applied to `before`: computed before applying them, from
/// `before` and the changes' own operations (objects the changes create are placed by the
/// operation that makes them). This lets the server capture the state before a merge and then
/// apply the merge in place, without cloning the document.
pub fn touched_before_apply(before: &Automerge, changes: &[Change]) -> Touched {
    touched_in(&[before], changes)
}

/// Where an object created by the changes lives: its parent object and key.
type Made = HashMap<String, (ObjectId, Key)>;

fn touched_in(docs: &[&Automerge], changes: &[Change]) -> Touched {
    let decoded: Vec<ExpandedChange> = changes.iter().map(Change::decode).collect();
    let mut made: Made = HashMap::new();
    for ch in &decoded {
        for (i, op) in ch.operations.iter().enumerate() {
            if let OpType::Make(_) = op.action {
                let id = format!("{}@{}", ch.start_op.get() + i as u64, ch.actor_id);
                made.insert(id, (op.obj.clone(), op.key.clone()));
            }
        }
    }
    let mut t = Touched::default();
    for ch in &decoded {
        for op in &ch.operations {
            let Some(mut path) = key_path(docs, &made, &op.obj, 0) else {
                return Touched::everything(docs);
            };
            match &op.key {
                Key::Map(k) => path.push(k.to_string()),
                Key::Seq(_) if path.is_empty() => return Touched::everything(docs),
                Key::Seq(_) => {}
            }
            record(&mut t, docs, &path);
        }
    }
    t
}

/// The map keys from the root down to `obj` (empty for the root); `None` when the object cannot
/// be placed or sits below a list.
fn key_path(docs: &[&Automerge], made: &Made, obj: &ObjectId, depth: usize) -> Option<Vec<String>> {
    if depth > 64 {
        return None;
    }
    let id = match obj {
        ObjectId::Root => return Some(Vec::new()),
        ObjectId::Id(opid) => opid.to_string(),
    };
    if let Some((parent, key)) = made.get(&id) {
        let mut path = key_path(docs, made, parent, depth + 1)?;
        match key {
            Key::Map(k) => path.push(k.to_string()),
            Key::Seq(_) => return None,
        }
        return Some(path);
    }
    for doc in docs {
        let Ok((exid, _)) = doc.import(&id) else {
            continue;
        };
        let Ok(parents) = doc.parents(&exid) else {
            continue;
        };
        let mut path = Vec::new();
        for (_, prop) in parents.path() {
            match prop {
                Prop::Map(k) => path.push(k.to_string()),
                Prop::Seq(_) => return None,
            }
        }
        return Some(path);
    }
    None
}

/// Records the entity (or root key) at `path`.
fn record(t: &mut Touched, docs: &[&Automerge], path: &[String]) {
    let Some(top) = path.first() else {
        return;
    };
    match (Collection::from_key(top), path.get(1)) {
        (Some(c), Some(entity)) => t.add(c, entity.clone()),
        (Some(c), None) => {
            // The collection map itself was written: every entity is in question.
            t.root_keys.insert(top.clone());
            t.add_all(c, docs);
        }
        (None, _) => {
            t.root_keys.insert(top.clone());
        }
    }
}

/// What `changes`, already applied to `after`, touched (when the document before them is no
/// longer at hand, e.g. after the server ran an operation itself).
pub fn touched_after_apply(after: &Automerge, changes: &[Change]) -> Touched {
    touched_in(&[after], changes)
}

/// How a merge changed one entity, from its changes' operations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EntityOps {
    /// A map was made at the entity's key (it was added, or replaced whole).
    pub created: bool,
    /// The entity's key was deleted.
    pub deleted: bool,
    /// Fields written inside the entity (first level: `status`, `saved_amount`, ...).
    pub fields: BTreeSet<String>,
}

/// Per entity, what the changes did to it (for events). Entities whose place cannot be
/// resolved are left out.
pub fn entity_ops(
    doc: &Automerge,
    changes: &[Change],
) -> BTreeMap<(Collection, String), EntityOps> {
    let docs = [doc];
    let decoded: Vec<ExpandedChange> = changes.iter().map(Change::decode).collect();
    let mut made: Made = HashMap::new();
    for ch in &decoded {
        for (i, op) in ch.operations.iter().enumerate() {
            if let OpType::Make(_) = op.action {
                let id = format!("{}@{}", ch.start_op.get() + i as u64, ch.actor_id);
                made.insert(id, (op.obj.clone(), op.key.clone()));
            }
        }
    }
    let mut out: BTreeMap<(Collection, String), EntityOps> = BTreeMap::new();
    for ch in &decoded {
        for op in &ch.operations {
            let Some(mut path) = key_path(&docs, &made, &op.obj, 0) else {
                continue;
            };
            if let Key::Map(k) = &op.key {
                path.push(k.to_string());
            }
            let (Some(top), Some(key)) = (path.first(), path.get(1)) else {
                continue;
            };
            let Some(c) = Collection::from_key(top) else {
                continue;
            };
            let e = out.entry((c, key.clone())).or_default();
            match path.get(2) {
                Some(field) => {
                    e.fields.insert(field.clone());
                }
                None => match op.action {
                    OpType::Make(_) => e.created = true,
                    OpType::Delete => e.deleted = true,
                    _ => {}
                },
            }
        }
    }
    out
}
