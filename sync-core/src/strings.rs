//! Keeping every string field in its declared type ([`crate::fields`]): Text for free text, a
//! scalar string for identifiers and enums.
//!
//! A client may write the other type: a stock JS client assigns plain strings (Text) to enums,
//! and an older SDK or the server before the field types were declared wrote names as scalar
//! strings. Readers accept both, so nothing breaks, but a JS app would read one field as a
//! `string` one day and as an `ImmutableString` the next. So enforcement finds the fields a merge
//! left in the other type ([`misshapen`]) and the server rewrites them, same value, declared
//! type ([`normalize`]), as part of its compensation. Documents stored before the types were
//! declared are normalized whole, once, when a server opens them ([`misshapen_document`]).
//!
//! Two servers normalizing the same merge both write the same value; for a Text field each
//! writes its own Text object, one wins the conflict, and both hold the same characters.

use automerge::transaction::Transactable;
use automerge::{AutomergeError, ObjId, ObjType, ReadDoc, Value, ROOT};

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

/// How a field's value is stored now, when it is a string of either type.
fn stored_kind<R: ReadDoc>(doc: &R, obj: &ObjId, key: &str) -> Option<StringKind> {
    match doc.get(obj, key).ok().flatten()? {
        (Value::Object(ObjType::Text), _) => Some(StringKind::Text),
        (Value::Scalar(s), _) if s.is_str() => Some(StringKind::Scalar),
        _ => None,
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

/// The misshapen fields under `obj`, with `'static` keys from the field table.
fn collect<R: ReadDoc>(
    doc: &R,
    obj: &ObjId,
    fields: &'static [Field],
    out: &mut Vec<(ObjId, &'static str, StringKind)>,
) {
    for field in fields {
        if let FieldType::Map(inner) = field.ty {
            if let Some(nested) = read::map_at(doc, obj, field.name) {
                collect(doc, &nested, inner, out);
            }
            continue;
        }
        if let Some(declared) = field.ty.string_kind() {
            if matches!(stored_kind(doc, obj, field.name), Some(k) if k != declared) {
                out.push((obj.clone(), field.name, declared));
            }
        }
    }
}

/// Every holder in the document with a string field in the other type than declared: what a
/// server normalizes when it opens a document stored before the types were declared. One
/// lookup per string field of every entity; no value is read.
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
