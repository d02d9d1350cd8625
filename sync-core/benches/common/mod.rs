//! What the benchmarks share: a new couple's partnership document as the server holds it.

use automerge::Automerge;
use splitsave_sync_core::document::{
    new_partnership_document, server_actor, NewMember, NewPartnership,
};
use splitsave_sync_core::ids::{PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::time::Millis;

/// When the benchmarks' documents are created (and their edits made).
pub const CREATED: Millis = Millis(1_764_000_000_000);

/// A new partnership of A (income 4,000.00) and B (5,000.00) in USD with a 100.00 approval
/// threshold, with the server's actor: (document, A, B).
pub fn couple() -> (Automerge, UserId, UserId) {
    let a = UserId::new_v7();
    let b = UserId::new_v7();
    let member = |user_id, name: &str, income, slot| NewMember {
        user_id,
        name: name.into(),
        income: Some(MinorUnits(income)),
        slot,
    };
    let doc = new_partnership_document(&NewPartnership {
        id: PartnershipId::new_v7(),
        currency: Currency::USD,
        approval_threshold: MinorUnits(10_000),
        members: [member(a, "A", 400_000, 1), member(b, "B", 500_000, 2)],
        created_at: CREATED,
    })
    .expect("document");
    (doc.with_actor(server_actor([7; 8])), a, b)
}
