//! Keeping every string field in its declared type ([`crate::fields`]): Text for free text, a
//! scalar string for identifiers and enums.
//!
//! A client may write the other type: a stock JS client assigns plain strings (Text) to enums,
//! and an older SDK or the server before the field types were declared wrote names as scalar
//! strings. Readers accept both, so nothing breaks, but a JS app would read one field as a
//! `string` one day and as an `ImmutableString` the next. So enforcement finds the fields a merge
//! left in the other type ([`misshapen`]) and the server rewrites them, same value, declared
//! type ([`normalize`]), as part of its compensation. Documents stored before the types were
//! declared are normalized whole, once, when a server opens them ([`predates_declared_types`],
//! then [`misshapen_document`]).
//!
//! Two servers normalizing the same merge both write the same value; for a Text field each
//! writes its own Text object, one wins the conflict, and both hold the same characters.

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, ReadDoc, ScalarValueRef, Value, ValueRef, ROOT};

use crate::fields::{self, Field, FieldType, StringKind};
use crate::read;
use crate::schema::{keys, Collection};
use crate::write;

/// What holds the strings to check: the `partnership` map or one entity.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    /// The root's `partnership` map.
    Partnership,
    /// `collection.<key>`.
    Entity(Collection, String),
}

impl Holder {
    fn object<R: ReadDoc>(&self, doc: &R) -> Option<ObjId> {
        match self {
            Holder::Partnership => read::map_at(doc, &ROOT, keys::PARTNERSHIP),
            Holder::Entity(c, key) => read::entity_obj(doc, *c, key).ok().flatten(),
        }
    }

    fn fields(&self) -> &'static [Field] {
        match self {
            Holder::Partnership => fields::PARTNERSHIP,
            Holder::Entity(c, _) => fields::of(*c),
        }
    }
}

/// Whether any string field of `holder` is stored in the other type than declared.
pub fn misshapen<R: ReadDoc>(doc: &R, holder: &Holder) -> bool {
    holder.object(doc).is_some_and(|obj| {
        let mut wrong = Vec::new();
        collect(doc, &obj, holder.fields(), &mut wrong);
        !wrong.is_empty()
    })
}

/// Rewrites every string field of `holder` stored in the other type than declared: same value,
/// declared type. Writes nothing when all are already right (or the holder is gone).
pub fn normalize<T: Transactable>(tx: &mut T, holder: &Holder) -> Result<(), AutomergeError> {
    let Some(obj) = holder.object(tx) else {
        return Ok(());
    };
    let mut wrong: Vec<(ObjId, &'static str, StringKind)> = Vec::new();
    collect(tx, &obj, holder.fields(), &mut wrong);
    for (obj, key, declared) in wrong {
        let value = match tx.get(&obj, key)? {
            Some((Value::Object(ObjType::Text), id)) => tx.text(&id)?,
            Some((Value::Scalar(s), _)) => match s.as_str() {
                Some(s) => s.to_string(),
                None => continue,
            },
            _ => continue,
        };
        match declared {
            StringKind::Text => write::put_text(tx, &obj, key, &value)?,
            StringKind::Scalar => tx.put(&obj, key, value)?,
        }
    }
    Ok(())
}

/// The misshapen fields under `obj`, with `'static` keys from the field table. One pass over
/// the map's entries (a `get` per field costs several times more in automerge 0.12).
fn collect<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    fields: &'static [Field],
    out: &mut Vec<(ObjId, &'static str, StringKind)>,
) {
    let mut nested: Vec<(ObjId, &'static [Field])> = Vec::new();
    for item in doc.map_range(obj, ..) {
        let Some(field) = fields.iter().find(|f| f.name == item.key) else {
            continue;
        };
        let stored = match &item.value {
            ValueRef::Object(ObjType::Text) => StringKind::Text,
            ValueRef::Scalar(ScalarValueRef::Str(_)) => StringKind::Scalar,
            ValueRef::Object(ObjType::Map) => {
                if let FieldType::Map(inner) = field.ty {
                    nested.push((item.id(), inner));
                }
                continue;
            }
            _ => continue,
        };
        if let Some(declared) = field.ty.string_kind() {
            if stored != declared {
                out.push((obj.clone(), field.name, declared));
            }
        }
    }
    for (obj, inner) in nested {
        collect(doc, &obj, inner, out);
    }
}

/// Whether the document was last written by a server from before the declared types: a
/// partner's name is a scalar string. Members are written only by the server (at creation, on
/// a profile change, when restoring them), and a server that declares the types writes names as
/// Text, opening (and so normalizing) a document before it writes anything into it. So a
/// document whose names are Text needs no whole-document check: two map lookups instead of a
/// pass over every entity on each open.
pub fn predates_declared_types<R: ReadDoc>(doc: &R) -> bool {
    let Some(members) = read::collection_obj(doc, Collection::Members) else {
        return false;
    };
    doc.map_range(&members, ..).any(|item| {
        matches!(item.value, ValueRef::Object(ObjType::Map))
            && matches!(
                doc.get(item.id(), "name").ok().flatten(),
                Some((Value::Scalar(s), _)) if s.is_str()
            )
    })
}

/// Every holder in the document with a string field in the other type than declared: what a
/// server normalizes when it opens a document stored before the types were declared. One
/// pass over every entity's fields; no string is read.
pub fn misshapen_document<R: ReadDoc>(doc: &R) -> Vec<Holder> {
    let mut out = Vec::new();
    if misshapen(doc, &Holder::Partnership) {
        out.push(Holder::Partnership);
    }
    let mut wrong = Vec::new();
    for c in Collection::ALL {
        for (key, obj) in read::collection_entries(doc, c) {
            let Some(obj) = obj else { continue };
            wrong.clear();
            collect(doc, &obj, fields::of(c), &mut wrong);
            if !wrong.is_empty() {
                out.push(Holder::Entity(c, key));
            }
        }
    }
    out
}
