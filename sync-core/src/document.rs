//! Creating a partnership's document and reading it whole.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, Automerge, AutomergeError, ReadDoc, ROOT};

use crate::enums::PartnershipStatus;
use crate::ids::{PartnershipId, UserId};
use crate::money::{Currency, MinorUnits};
use crate::read::{self, ShapeError};
use crate::schema::*;
use crate::time::Millis;
use crate::write;

/// Errors creating or reading a whole document.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    /// The document was written by a newer schema than this crate understands.
    #[error("document schema {found} is newer than the supported schema {SCHEMA_VERSION}")]
    UnsupportedSchema {
        /// The version found.
        found: i64,
    },
    /// A value does not have the required shape.
    #[error(transparent)]
    Shape(#[from] ShapeError),
    /// Automerge refused an operation.
    #[error(transparent)]
    Automerge(#[from] AutomergeError),
    /// Invalid input for a new document.
    #[error("invalid partnership: {0}")]
    Invalid(&'static str),
}

/// The first eight bytes of every actor id the server writes with. Clients can never bind an
/// actor id with this prefix, so the server recognises its own changes (and those of its
/// other nodes) by it.
pub const SERVER_ACTOR_PREFIX: [u8; 8] = *b"ss-srv:\0";

/// A server actor id: the prefix followed by `node` (random per server process), so two nodes
/// never write two different changes with the same (actor, seq).
pub fn server_actor(node: [u8; 8]) -> ActorId {
    let mut bytes = SERVER_ACTOR_PREFIX.to_vec();
    bytes.extend_from_slice(&node);
    ActorId::from(bytes)
}

/// True for actor ids made by [`server_actor`].
pub fn is_server_actor(actor: &ActorId) -> bool {
    actor.to_bytes().starts_with(&SERVER_ACTOR_PREFIX)
}

/// A member of a new partnership.
#[derive(Clone, Debug)]
pub struct NewMember {
    /// The user.
    pub user_id: UserId,
    /// Display name.
    pub name: String,
    /// Monthly income, if known.
    pub income: Option<MinorUnits>,
    /// 1 for the inviter, 2 for the invitee.
    pub slot: u8,
}

/// What the server knows when a partnership becomes active.
#[derive(Clone, Debug)]
pub struct NewPartnership {
    /// The partnership id (derives the document id).
    pub id: PartnershipId,
    /// The partnership currency.
    pub currency: Currency,
    /// Approval threshold for expenses.
    pub approval_threshold: MinorUnits,
    /// The two partners.
    pub members: [NewMember; 2],
    /// Creation time.
    pub created_at: Millis,
}

/// Creates the partnership document with every collection present, so that clients never
/// create a top-level map concurrently (two concurrent creations of `expenses` would hide
/// one side's entries).
pub fn new_partnership_document(p: &NewPartnership) -> Result<Automerge, DocumentError> {
    new_partnership_document_as(p, server_actor([0; 8]))
}

/// [`new_partnership_document`] written with the given server actor.
pub fn new_partnership_document_as(
    p: &NewPartnership,
    actor: ActorId,
) -> Result<Automerge, DocumentError> {
    let slots = [p.members[0].slot, p.members[1].slot];
    if slots != [1, 2] && slots != [2, 1] {
        return Err(DocumentError::Invalid("members must hold slots 1 and 2"));
    }
    if p.members[0].user_id == p.members[1].user_id {
        return Err(DocumentError::Invalid(
            "members must be two different users",
        ));
    }
    if p.approval_threshold.0 <= 0 {
        return Err(DocumentError::Invalid(
            "approval threshold must be positive",
        ));
    }
    let mut doc = Automerge::new().with_actor(actor);
    doc.transact_with::<_, _, AutomergeError, _>(
        |_| {
            CommitOptions::default()
                .with_message("create partnership document")
                .with_time(p.created_at.0 / 1000)
        },
        |tx| {
            // Signed: JS reads an unsigned integer back as a BigInt (`1n`), which a plain
            // `doc.schema === 1` check does not match.
            tx.put(ROOT, keys::SCHEMA, SCHEMA_VERSION as i64)?;
            let info = tx.put_object(ROOT, keys::PARTNERSHIP, automerge::ObjType::Map)?;
            write::put_partnership_fields(
                tx,
                &info,
                &PartnershipInfo {
                    id: p.id,
                    currency: p.currency,
                    approval_threshold: p.approval_threshold,
                    status: PartnershipStatus::Active,
                },
            )?;
            for c in Collection::ALL {
                write::ensure_collection(tx, c)?;
            }
            for m in &p.members {
                write::put_member(
                    tx,
                    &Member {
                        user_id: m.user_id,
                        name: m.name.clone(),
                        income: m.income,
                        slot: m.slot,
                    },
                )?;
            }
            Ok(())
        },
    )
    .map_err(|f| f.error)?;
    Ok(doc)
}

/// The whole document, typed. Entities that do not have the right shape are skipped and
/// listed in `malformed` (enforcement removes or repairs them; reading never fails on them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentState {
    /// Settings.
    pub partnership: PartnershipInfo,
    /// The two partners, by slot.
    pub members: Vec<Member>,
    /// Expenses.
    pub expenses: Vec<Expense>,
    /// Goals.
    pub goals: Vec<Goal>,
    /// Logged goal contributions.
    pub goal_contributions: Vec<GoalContribution>,
    /// Approval requests.
    pub approvals: Vec<Approval>,
    /// Messages.
    pub messages: Vec<Message>,
    /// Monthly contributions.
    pub contributions: Vec<MonthContribution>,
    /// Entities skipped because of their shape.
    pub malformed: Vec<ShapeError>,
}

fn collect<R: ReadDoc, T>(
    doc: &R,
    c: Collection,
    malformed: &mut Vec<ShapeError>,
    read_one: impl Fn(&R, &str, &automerge::ObjId, String) -> Result<T, ShapeError>,
) -> Vec<T> {
    let mut out = Vec::new();
    for (key, obj) in read::collection_entries(doc, c) {
        let path = format!("{}.{key}", c.key());
        let Some(obj) = obj else {
            malformed.push(ShapeError {
                path,
                reason: "expected a map",
            });
            continue;
        };
        match read_one(doc, &key, &obj, path) {
            Ok(v) => out.push(v),
            Err(e) => malformed.push(e),
        }
    }
    out
}

/// Reads the whole document. Fails only when the schema is newer than this crate's or the
/// server-owned `partnership` map is unreadable; unknown keys are ignored.
pub fn read_document<R: ReadDoc>(doc: &R) -> Result<DocumentState, DocumentError> {
    if let Some(found) = read::read_schema_version(doc) {
        if found > SCHEMA_VERSION as i64 {
            return Err(DocumentError::UnsupportedSchema { found });
        }
    }
    let partnership = read::read_partnership(doc)?;
    let mut malformed = Vec::new();
    let members = collect(doc, Collection::Members, &mut malformed, read::member_in);
    let mut members = members;
    members.sort_by_key(|m| m.slot);
    Ok(DocumentState {
        partnership,
        members,
        expenses: collect(doc, Collection::Expenses, &mut malformed, read::expense_in),
        goals: collect(doc, Collection::Goals, &mut malformed, read::goal_in),
        goal_contributions: collect(
            doc,
            Collection::GoalContributions,
            &mut malformed,
            read::goal_contribution_in,
        ),
        approvals: collect(
            doc,
            Collection::Approvals,
            &mut malformed,
            read::approval_in,
        ),
        messages: collect(doc, Collection::Messages, &mut malformed, read::message_in),
        contributions: collect(
            doc,
            Collection::Contributions,
            &mut malformed,
            read::month_in,
        ),
        malformed,
    })
}
