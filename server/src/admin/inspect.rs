//! One partnership as the admin commands see it: its stored document loaded the way a server
//! loads it (the latest snapshot, then the changes stored since, in one batch), the rows
//! materializing it gives, and whether every change's author is bound as the server binds them.
//! Pure: the caller reads the store.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};

use automerge::{Automerge, Change, ReadDoc};
use splitsave_sync_core::document::is_server_actor;
use splitsave_sync_core::materialize::{self, RowChange};
use uuid::Uuid;

use super::diff::Difference;
use crate::store::{PartnershipRecord, PartnershipStatus, StoredDocument};

/// One thing wrong with a partnership. Shown as one line, after `partnership <id>: `.
#[derive(Clone, Debug, PartialEq)]
pub enum Finding {
    /// An active or paused partnership has no stored snapshot: there is no document to derive
    /// its rows from.
    NoDocument {
        /// The partnership's status.
        status: PartnershipStatus,
    },
    /// The latest snapshot does not load.
    SnapshotUnreadable(String),
    /// A stored change does not parse.
    ChangeUnreadable {
        /// Its `doc_changes` row id.
        id: i64,
    },
    /// Automerge refused the stored changes, or panicked loading the document.
    ChangesRefused(String),
    /// Stored changes wait for changes the store does not have: the document lacks them.
    MissingDependencies {
        /// How many changes are missing.
        missing: usize,
    },
    /// The document loads but does not read as a partnership document.
    NotMaterializable(String),
    /// The document is another partnership's.
    WrongPartnership {
        /// The id the document holds.
        found: Uuid,
    },
    /// Changes carry an actor id bound to no user of the partnership (nor the server's).
    UnboundActor {
        /// Hex actor id.
        actor: String,
        /// How many of the document's changes it wrote.
        changes: usize,
    },
    /// An actor id is bound to someone who is not a partner.
    ActorOfNonMember {
        /// Hex actor id.
        actor: String,
        /// The user it is bound to.
        user: Uuid,
    },
    /// A stored change was received from one user but its actor is bound to another.
    SenderMismatch {
        /// Hex change hash.
        hash: String,
        /// Who sent it (`doc_changes.user_id`).
        sent_by: Uuid,
        /// Whom its actor is bound to.
        bound_to: Uuid,
    },
    /// A materialized row differs from the document's.
    Row(Difference),
    /// The document kept changing while it was read (a busy live partnership): run again.
    Unsettled,
}

impl Finding {
    /// Whether the finding leaves no document to derive rows from (rebuilding must skip it).
    pub fn blocks_rebuild(&self) -> bool {
        matches!(
            self,
            Finding::NoDocument { .. }
                | Finding::SnapshotUnreadable(_)
                | Finding::ChangeUnreadable { .. }
                | Finding::ChangesRefused(_)
                | Finding::NotMaterializable(_)
                | Finding::WrongPartnership { .. }
        )
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::NoDocument { status } => {
                write!(
                    f,
                    "document missing: the partnership is {status} but has no snapshot"
                )
            }
            Finding::SnapshotUnreadable(err) => {
                write!(f, "document does not load: snapshot unreadable: {err}")
            }
            Finding::ChangeUnreadable { id } => {
                write!(
                    f,
                    "document does not load: stored change {id} (doc_changes.id) unreadable"
                )
            }
            Finding::ChangesRefused(err) => {
                write!(f, "document does not load: stored changes refused: {err}")
            }
            Finding::MissingDependencies { missing } => write!(
                f,
                "document incomplete: stored changes depend on {missing} change(s) the store does \
                 not have"
            ),
            Finding::NotMaterializable(err) => write!(f, "document does not materialize: {err}"),
            Finding::WrongPartnership { found } => {
                write!(f, "document is partnership {found}'s")
            }
            Finding::UnboundActor { actor, changes } => write!(
                f,
                "actor {actor} wrote {changes} change(s) but is bound to no user of the partnership"
            ),
            Finding::ActorOfNonMember { actor, user } => {
                write!(
                    f,
                    "actor {actor} is bound to user {user}, who is not a partner"
                )
            }
            Finding::SenderMismatch {
                hash,
                sent_by,
                bound_to,
            } => write!(
                f,
                "change {hash} was received from user {sent_by} but its actor is bound to user \
                 {bound_to}"
            ),
            Finding::Row(difference) => write!(f, "{difference}"),
            Finding::Unsettled => f.write_str(
                "not checked: the document changed every time it was read (busy); run again",
            ),
        }
    }
}

/// What a partnership's stored document implies.
#[derive(Debug)]
pub struct Derived {
    /// The rows materializing the document writes (none for a pending partnership, which has
    /// no document yet); `None` when no document could be derived (see `findings`).
    pub expected: Option<Vec<RowChange>>,
    /// What is wrong with the document and its authors.
    pub findings: Vec<Finding>,
}

/// Loads the stored document of `partnership`, materializes it and checks its authors against
/// `bindings` (hex actor id → user).
pub fn derive(
    partnership: &PartnershipRecord,
    stored: StoredDocument,
    bindings: &HashMap<String, Uuid>,
) -> Derived {
    let Some((_, snapshot)) = stored.snapshot else {
        if partnership.status == PartnershipStatus::Pending && stored.changes.is_empty() {
            // An invitation: no document, so no rows.
            return Derived {
                expected: Some(Vec::new()),
                findings: Vec::new(),
            };
        }
        return Derived {
            expected: None,
            findings: vec![Finding::NoDocument {
                status: partnership.status,
            }],
        };
    };
    let loaded = match load(&snapshot, stored.changes) {
        Ok(loaded) => loaded,
        Err(findings) => {
            return Derived {
                expected: None,
                findings,
            }
        }
    };
    let mut findings = Vec::new();
    let missing = loaded.doc.get_missing_deps(&[]).len();
    if missing > 0 {
        findings.push(Finding::MissingDependencies { missing });
    }
    let members: Vec<Uuid> = std::iter::once(partnership.user1_id)
        .chain(partnership.user2_id)
        .collect();
    findings.extend(authorship(&loaded, bindings, &members));
    let expected = match materialize::all_rows(&loaded.doc) {
        Ok(m) if m.partnership_id.0 == partnership.id => Some(m.changes),
        Ok(m) => {
            findings.push(Finding::WrongPartnership {
                found: m.partnership_id.0,
            });
            None
        }
        Err(err) => {
            findings.push(Finding::NotMaterializable(err.to_string()));
            None
        }
    };
    Derived { expected, findings }
}

/// A document loaded from storage, with the stored changes it was loaded with.
pub(super) struct Loaded {
    pub(super) doc: Automerge,
    /// The stored changes and who sent each (`None` for the server's own).
    stored: Vec<(Change, Option<Uuid>)>,
}

/// The snapshot plus the stored changes, applied in one batch as the server does; every
/// unreadable part is a finding, and a panic in automerge is caught and reported, never
/// propagated.
pub(super) fn load(
    snapshot: &[u8],
    changes: Vec<crate::store::StoredChange>,
) -> Result<Loaded, Vec<Finding>> {
    let mut findings = Vec::new();
    let mut stored = Vec::with_capacity(changes.len());
    for change in changes {
        match Change::from_bytes(change.bytes) {
            Ok(parsed) => stored.push((parsed, change.user_id)),
            Err(_) => findings.push(Finding::ChangeUnreadable { id: change.id }),
        }
    }
    let loaded = catch_unwind(AssertUnwindSafe(|| Automerge::load(snapshot)));
    let mut doc = match loaded {
        Ok(Ok(doc)) => doc,
        Ok(Err(err)) => {
            findings.insert(0, Finding::SnapshotUnreadable(err.to_string()));
            return Err(findings);
        }
        Err(_) => {
            findings.insert(
                0,
                Finding::SnapshotUnreadable("automerge panicked loading it".into()),
            );
            return Err(findings);
        }
    };
    if !findings.is_empty() {
        return Err(findings);
    }
    let applied = catch_unwind(AssertUnwindSafe(|| {
        doc.apply_changes(stored.iter().map(|(c, _)| c.clone()))
    }));
    match applied {
        Ok(Ok(())) => Ok(Loaded { doc, stored }),
        Ok(Err(err)) => Err(vec![Finding::ChangesRefused(err.to_string())]),
        Err(_) => Err(vec![Finding::ChangesRefused(
            "automerge panicked applying them".into(),
        )]),
    }
}

/// Every change's actor must be the server's or bound to a partner (as the server binds a
/// device's actor id on its first merge), and a stored change's sender must be whom its actor
/// is bound to.
fn authorship(loaded: &Loaded, bindings: &HashMap<String, Uuid>, members: &[Uuid]) -> Vec<Finding> {
    // The whole history (the snapshot's changes included), plus stored changes automerge still
    // queues for a missing dependency.
    let mut by_hash: HashMap<automerge::ChangeHash, automerge::ActorId> = loaded
        .doc
        .get_changes(&[])
        .iter()
        .map(|c| (c.hash(), c.actor_id().clone()))
        .collect();
    for (change, _) in &loaded.stored {
        by_hash
            .entry(change.hash())
            .or_insert_with(|| change.actor_id().clone());
    }
    let mut per_actor: BTreeMap<String, usize> = BTreeMap::new();
    for actor in by_hash.values().filter(|a| !is_server_actor(a)) {
        *per_actor.entry(actor.to_hex_string()).or_default() += 1;
    }
    let mut findings = Vec::new();
    for (actor, changes) in per_actor {
        match bindings.get(&actor) {
            None => findings.push(Finding::UnboundActor { actor, changes }),
            Some(user) if !members.contains(user) => {
                findings.push(Finding::ActorOfNonMember { actor, user: *user })
            }
            Some(_) => {}
        }
    }
    for (change, sent_by) in &loaded.stored {
        let (Some(sent_by), false) = (sent_by, is_server_actor(change.actor_id())) else {
            continue;
        };
        if let Some(bound_to) = bindings.get(&change.actor_id().to_hex_string()) {
            if bound_to != sent_by {
                findings.push(Finding::SenderMismatch {
                    hash: change.hash().to_string(),
                    sent_by: *sent_by,
                    bound_to: *bound_to,
                });
            }
        }
    }
    findings
}
