//! Push notifications of a merge: who is told what, once per burst, never the author.

use crate::common::*;
use automerge::Automerge;
use splitsave_sync_core::enforce::new_changes;
use splitsave_sync_core::ids::UserId;
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::notifications::{from_merge, Notification, NotificationKind};
use splitsave_sync_core::ops::{self, Outcome};
use splitsave_sync_core::split::Month;

/// Syncs `client` (written by `author`) into the couple's document, as the server merges it,
/// and returns the merge's notifications.
fn merged(c: &mut Couple, client: &mut Automerge, author: UserId) -> Vec<Notification> {
    let before = c.server.clone();
    c.sync(client, author);
    let changes = new_changes(&before, &c.server);
    from_merge(&c.server, &changes, author)
}

fn sofa_request(c: &mut Couple) -> (Automerge, Outcome, Vec<Notification>) {
    let (a, ctx) = (c.a, c.ctx(c.a));
    let mut alex = c.client(a);
    let outcome = op(&mut alex, |tx| {
        ops::add_expense(tx, &ctx, &expense("Sofa", 90_000))
    });
    let told = merged(c, &mut alex, a);
    (alex, outcome, told)
}

#[test]
fn an_expense_over_the_threshold_asks_the_partner_and_never_the_author() {
    let mut c = Couple::new();
    let (_, outcome, told) = sofa_request(&mut c);
    let Outcome::ApprovalRequested { request_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(told.len(), 1, "{told:?}");
    let n = &told[0];
    assert_eq!(n.recipient, c.b);
    assert_eq!(n.kind, NotificationKind::ApprovalRequested);
    assert_eq!(
        n.detailed.body,
        "Alex asked for your approval: Sofa, 900.00 USD"
    );
    // Private wording: who asked, nothing of the sofa or its price; ids only.
    assert_eq!(n.private.body, "Alex asked for your approval");
    assert_eq!(n.data["ids"], request_id.to_string());
    assert_eq!(n.data["count"], "1");
    assert_eq!(n.dedupe_key, format!("approval_requested:{request_id}"));
}

#[test]
fn an_expense_under_the_threshold_tells_nobody() {
    let mut c = Couple::new();
    let (a, ctx) = (c.a, c.ctx(c.a));
    let mut alex = c.client(a);
    op(&mut alex, |tx| {
        ops::add_expense(tx, &ctx, &expense("Milk", 500))
    });
    assert!(merged(&mut c, &mut alex, a).is_empty());
}

#[test]
fn ten_requests_made_offline_become_one_notification() {
    let mut c = Couple::new();
    let (a, ctx) = (c.a, c.ctx(c.a));
    let mut alex = c.client(a);
    for i in 0..10 {
        op(&mut alex, |tx| {
            ops::add_expense(tx, &ctx, &expense(&format!("Item {i}"), 20_000 + i))
        });
    }
    let before = c.server.clone();
    c.sync(&mut alex, a);
    let changes = new_changes(&before, &c.server);
    let told = from_merge(&c.server, &changes, a);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipient, c.b);
    assert_eq!(
        told[0].detailed.body,
        "Alex asked for your approval on 10 items"
    );
    assert_eq!(told[0].data["count"], "10");
    assert_eq!(told[0].data["ids"].split(',').count(), 10);
    // The same merge derived again (a commit made again) gives the same key: deduplicated.
    assert_eq!(from_merge(&c.server, &changes, a), told);
}

#[test]
fn an_answer_tells_the_one_who_asked() {
    let mut c = Couple::new();
    let (_, outcome, _) = sofa_request(&mut c);
    let Outcome::ApprovalRequested { request_id, .. } = outcome else {
        panic!("{outcome:?}")
    };
    let (b, ctx) = (c.b, c.ctx(c.b));
    let mut sam = c.client(b);
    op(&mut sam, |tx| ops::approve(tx, &ctx, request_id));
    let told = merged(&mut c, &mut sam, b);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipient, c.a);
    assert_eq!(told[0].kind, NotificationKind::ApprovalAnswered);
    assert_eq!(told[0].detailed.body, "Sam approved Sofa, 900.00 USD");
    assert_eq!(told[0].private.body, "Sam answered your request");
}

#[test]
fn a_message_tells_the_partner_and_its_text_stays_off_a_private_lock_screen() {
    let mut c = Couple::new();
    let (b, ctx) = (c.b, c.ctx(c.b));
    let mut sam = c.client(b);
    op(&mut sam, |tx| ops::send_message(tx, &ctx, "Dinner at 8?"));
    let told = merged(&mut c, &mut sam, b);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipient, c.a);
    assert_eq!(told[0].kind, NotificationKind::Message);
    assert_eq!(told[0].detailed.body, "Sam: Dinner at 8?");
    assert!(!told[0].private.body.contains("Dinner"));
    assert!(!told[0].data.values().any(|v| v.contains("Dinner")));
}

#[test]
fn a_month_opened_and_a_share_paid_tell_the_partner() {
    let mut c = Couple::new();
    let month: Month = "2026-12".parse().expect("month");
    // Alex's read opens the month (the server writes it in Alex's merge).
    let before = c.server.clone();
    c.server_month(month, 40_000, 80_000);
    let changes = new_changes(&before, &c.server);
    let told = from_merge(&c.server, &changes, c.a);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipient, c.b);
    assert_eq!(told[0].kind, NotificationKind::ContributionsOpened);
    assert!(told[0].detailed.body.contains("800.00 USD"), "{told:?}");

    let (a, ctx) = (c.a, c.ctx(c.a));
    let mut alex = c.client(a);
    op(&mut alex, |tx| {
        ops::mark_paid(tx, &ctx, month).map(|_| Outcome::Applied {
            id: splitsave_sync_core::ids::EntityId::new_v7(),
        })
    });
    let told = merged(&mut c, &mut alex, a);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipient, c.b);
    assert_eq!(told[0].kind, NotificationKind::PartnerPaid);
    assert_eq!(
        told[0].detailed.body,
        "Alex paid their share: 400.00 USD for 2026-12"
    );
    assert_eq!(told[0].collapse_key, "partner_paid:2026-12");
}

#[test]
fn the_contribution_that_reaches_a_goal_tells_the_partner_once() {
    let mut c = Couple::new();
    let (a, b) = (c.a, c.b);
    let mut alex = c.client(a);
    let ctx_a = c.ctx(a);
    let Outcome::ApprovalRequested {
        request_id,
        target_id: goal,
    } = op(&mut alex, |tx| {
        ops::add_goal(tx, &ctx_a, &goal("Holiday", 100_000))
    })
    else {
        panic!("a goal over the threshold asks for approval")
    };
    merged(&mut c, &mut alex, a);
    let mut sam = c.client(b);
    let ctx_b = c.ctx(b);
    op(&mut sam, |tx| ops::approve(tx, &ctx_b, request_id));
    merged(&mut c, &mut sam, b);

    // Short of the target: nothing.
    op(&mut sam, |tx| {
        ops::contribute_to_goal(tx, &ctx_b, goal, MinorUnits(60_000))
    });
    assert!(merged(&mut c, &mut sam, b).is_empty());
    // The one that gets there.
    op(&mut sam, |tx| {
        ops::contribute_to_goal(tx, &ctx_b, goal, MinorUnits(40_000))
    });
    let told = merged(&mut c, &mut sam, b);
    assert_eq!(told.len(), 1, "{told:?}");
    assert_eq!(told[0].recipient, a);
    assert_eq!(told[0].kind, NotificationKind::GoalReached);
    assert_eq!(told[0].detailed.body, "Goal reached: Holiday (1000.00 USD)");
    // Beyond the target: it was reached before, nobody is told again.
    op(&mut sam, |tx| {
        ops::contribute_to_goal(tx, &ctx_b, goal, MinorUnits(1_000))
    });
    assert!(merged(&mut c, &mut sam, b).is_empty());
}
