//! Typed events of a merge, for clients that do not run Automerge (`GET /api/events`) and for
//! push notifications. They come from the operations of the merge's changes (the client's and
//! the server's compensation together) and the document after the merge, so a write produces
//! the same events whether it came over REST or sync.

use automerge::{Automerge, Change};

use crate::enums::{ApprovalStatus, ItemStatus};
use crate::materialize::{self, Row};
use crate::schema::Collection;
use crate::touched::entity_ops;

/// The product's event names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `expense:added`
    ExpenseAdded,
    /// `expense:updated`
    ExpenseUpdated,
    /// `expense:deleted` (archived or removed)
    ExpenseDeleted,
    /// `goal:added`
    GoalAdded,
    /// `goal:progress` (saved amount changed)
    GoalProgress,
    /// `approval:requested`
    ApprovalRequested,
    /// `approval:responded`
    ApprovalResponded,
    /// `message:new`
    MessageNew,
    /// `message:read`
    MessageRead,
}

impl EventKind {
    /// The wire name.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ExpenseAdded => "expense:added",
            EventKind::ExpenseUpdated => "expense:updated",
            EventKind::ExpenseDeleted => "expense:deleted",
            EventKind::GoalAdded => "goal:added",
            EventKind::GoalProgress => "goal:progress",
            EventKind::ApprovalRequested => "approval:requested",
            EventKind::ApprovalResponded => "approval:responded",
            EventKind::MessageNew => "message:new",
            EventKind::MessageRead => "message:read",
        }
    }
}

/// One event: its kind, the entity, and the entity's row after the merge (`None` when it is
/// gone).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// What happened.
    pub kind: EventKind,
    /// The entity's collection.
    pub collection: Collection,
    /// The entity's key.
    pub key: String,
    /// The entity as it is now.
    pub row: Option<Row>,
}

/// The events of `changes`, already applied to `doc`. At most one event per entity.
pub fn events(doc: &Automerge, changes: &[Change]) -> Vec<Event> {
    let mut out = Vec::new();
    for ((c, key), ops) in entity_ops(doc, changes) {
        let row = row_of(doc, c, &key);
        let exists = row.is_some();
        let kind = match c {
            Collection::Expenses => {
                let archived = matches!(&row, Some(Row::Expense(e)) if e.status == ItemStatus::Archived.as_str());
                if !exists || (archived && ops.fields.contains("status")) {
                    Some(EventKind::ExpenseDeleted)
                } else if ops.created && !ops.deleted {
                    Some(EventKind::ExpenseAdded)
                } else {
                    Some(EventKind::ExpenseUpdated)
                }
            }
            Collection::Goals if exists => {
                if ops.created && !ops.deleted {
                    Some(EventKind::GoalAdded)
                } else if ops.fields.contains("saved_amount") {
                    Some(EventKind::GoalProgress)
                } else {
                    None
                }
            }
            Collection::Approvals if exists => {
                let answered = matches!(&row, Some(Row::Approval(a)) if a.status != ApprovalStatus::Pending.as_str());
                if ops.created && !ops.deleted && !answered {
                    Some(EventKind::ApprovalRequested)
                } else if ops.fields.contains("status") && answered {
                    Some(EventKind::ApprovalResponded)
                } else {
                    None
                }
            }
            Collection::Messages if exists => {
                if ops.created && !ops.deleted {
                    Some(EventKind::MessageNew)
                } else if ops.fields.contains("read_by_recipient") {
                    Some(EventKind::MessageRead)
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(Event {
                kind,
                collection: c,
                key,
                row,
            });
        }
    }
    out
}

fn row_of(doc: &Automerge, c: Collection, key: &str) -> Option<Row> {
    let touched = {
        let mut t = crate::touched::Touched::default();
        t.add(c, key);
        t
    };
    materialize::rows_for(doc, &touched)
        .ok()?
        .changes
        .into_iter()
        .find_map(|rc| match rc {
            materialize::RowChange::Upsert(r) => Some(r),
            materialize::RowChange::Delete { .. } => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::{new_partnership_document, NewMember, NewPartnership};
    use crate::enums::{Category, Frequency};
    use crate::ids::{PartnershipId, UserId};
    use crate::money::{Currency, MinorUnits};
    use crate::ops::{self, Ctx, NewExpense, Outcome};
    use crate::time::Millis;

    fn couple() -> (Automerge, UserId, UserId) {
        let (a, b) = (UserId::new_v7(), UserId::new_v7());
        let doc = new_partnership_document(&NewPartnership {
            id: PartnershipId::new_v7(),
            currency: Currency::USD,
            approval_threshold: MinorUnits(10_000),
            members: [
                NewMember {
                    user_id: a,
                    name: "A".into(),
                    income: None,
                    slot: 1,
                },
                NewMember {
                    user_id: b,
                    name: "B".into(),
                    income: None,
                    slot: 2,
                },
            ],
            created_at: Millis(0),
        })
        .unwrap();
        (doc, a, b)
    }

    fn run(
        doc: &mut Automerge,
        f: impl FnOnce(&mut automerge::transaction::Transaction<'_>) -> Result<Outcome, ops::OpError>,
    ) -> (Outcome, Vec<Event>) {
        let heads = doc.get_heads();
        let outcome = doc.transact(f).unwrap().result;
        let changes = doc.get_changes(&heads);
        (outcome, events(doc, &changes))
    }

    fn names(events: &[Event]) -> Vec<&'static str> {
        let mut n: Vec<_> = events.iter().map(|e| e.kind.name()).collect();
        n.sort();
        n
    }

    #[test]
    fn operations_yield_the_product_event_names() {
        let (mut doc, a, b) = couple();
        let ctx_a = Ctx {
            user: a,
            now: Millis(1),
        };
        let ctx_b = Ctx {
            user: b,
            now: Millis(2),
        };
        let small = NewExpense {
            name: "Bread".into(),
            amount: MinorUnits(300),
            category: Category::Groceries,
            frequency: Frequency::Weekly,
        };
        let (o, ev) = run(&mut doc, |tx| ops::add_expense(tx, &ctx_a, &small));
        assert_eq!(names(&ev), ["expense:added"]);
        let Outcome::Applied { id } = o else { panic!() };
        let (_, ev) = run(&mut doc, |tx| ops::archive_expense(tx, &ctx_b, id));
        assert_eq!(names(&ev), ["expense:deleted"]);

        let big = NewExpense {
            amount: MinorUnits(50_000),
            ..small
        };
        let (o, ev) = run(&mut doc, |tx| ops::add_expense(tx, &ctx_a, &big));
        assert_eq!(names(&ev), ["approval:requested", "expense:added"]);
        let Outcome::ApprovalRequested { request_id, .. } = o else {
            panic!()
        };
        let (_, ev) = run(&mut doc, |tx| ops::approve(tx, &ctx_b, request_id));
        assert_eq!(names(&ev), ["approval:responded", "expense:updated"]);

        let (o, ev) = run(&mut doc, |tx| ops::send_message(tx, &ctx_a, "hi"));
        assert_eq!(names(&ev), ["message:new"]);
        let Outcome::Applied { id } = o else { panic!() };
        let (_, ev) = run(&mut doc, |tx| ops::mark_read(tx, &ctx_b, id));
        assert_eq!(names(&ev), ["message:read"]);
        let row = ev[0].row.clone().unwrap();
        assert!(matches!(row, Row::Message(m) if m.read_by_recipient));
    }
}
