use std::collections::BTreeMap;

use automerge::Automerge;

use super::*;
use crate::document::{new_partnership_document, read_document, NewMember, NewPartnership};
use crate::enums::*;
use crate::ids::{EntityId, PartnershipId};
use crate::money::MinorUnits;
use crate::ops::{expense_add_data, goal_add_data, Ctx};
use crate::policy::add_request_id;
use crate::split::Month;

const NOW: Millis = Millis(1_764_000_000_000);

fn couple() -> (Automerge, [UserId; 2]) {
    let users = [UserId::new_v7(), UserId::new_v7()];
    let member = |user_id, name: &str, slot| NewMember {
        user_id,
        name: name.into(),
        income: None,
        slot,
    };
    let doc = new_partnership_document(&NewPartnership {
        id: PartnershipId::new_v7(),
        currency: Currency::USD,
        approval_threshold: MinorUnits(10_000),
        members: [member(users[0], "Cat", 1), member(users[1], "Dan", 2)],
        created_at: NOW,
    })
    .expect("document");
    (doc, users)
}

fn target(users: [UserId; 2]) -> Target {
    Target {
        currency: Currency::USD,
        members: users,
        now: NOW,
    }
}

fn expense(by: UserId, status: ItemStatus, amount: i64) -> Expense {
    Expense {
        id: EntityId::new_v7(),
        name: "Rent".into(),
        amount: MinorUnits(amount),
        category: Category::Housing,
        frequency: Frequency::Monthly,
        added_by: by,
        status,
        created_at: Millis(NOW.0 - 5_000),
        updated_at: Millis(NOW.0 - 4_000),
    }
}

fn answered(
    id: EntityId,
    by: UserId,
    to: UserId,
    t: RequestType,
    target: EntityId,
    data: RequestData,
    status: ApprovalStatus,
) -> Approval {
    Approval {
        id,
        requested_by: by,
        request_type: t,
        target_id: target,
        request_data: data,
        message: Some("please".into()),
        status,
        responded_by: (status != ApprovalStatus::Pending).then_some(to),
        responded_at: (status != ApprovalStatus::Pending).then_some(Millis(NOW.0 - 1_000)),
        created_at: Millis(NOW.0 - 3_000),
    }
}

/// Some of everything: an active expense, one waiting with its request, one declined, a goal
/// with two contributions and a pending edit, a paid and an unpaid month, two messages.
fn furnished([a, b]: [UserId; 2]) -> Import {
    let active = expense(a, ItemStatus::Active, 3_990);
    let waiting = expense(b, ItemStatus::PendingApproval, 90_000);
    let declined = expense(a, ItemStatus::Archived, 45_000);
    let goal = Goal {
        id: EntityId::new_v7(),
        name: "Trip".into(),
        target_amount: MinorUnits(250_000),
        saved_amount: MinorUnits(24_950),
        goal_type: GoalType::Vacation,
        priority: Priority::High,
        added_by: a,
        status: ItemStatus::Active,
        created_at: Millis(NOW.0 - 9_000),
        updated_at: Millis(NOW.0 - 8_000),
    };
    let contribution = |user, amount| GoalContribution {
        id: EntityId::new_v7(),
        goal_id: goal.id,
        user_id: user,
        amount: MinorUnits(amount),
        created_at: Millis(NOW.0 - 7_000),
    };
    let month = |m: &str, paid: Option<Millis>| MonthContribution {
        month: Month::parse(m).expect("month"),
        total_required: MinorUnits(3_990),
        amounts: BTreeMap::from([(a, MinorUnits(2_660)), (b, MinorUnits(1_330))]),
        paid: BTreeMap::from([(a, None), (b, paid)]),
    };
    let message = |by, text: &str, read| Message {
        id: EntityId::new_v7(),
        sender_id: by,
        text: text.into(),
        message_type: MessageType::Text,
        read_by_recipient: read,
        created_at: Millis(NOW.0 - 2_000),
    };
    Import {
        approvals: vec![
            answered(
                add_request_id(waiting.id),
                b,
                a,
                RequestType::ExpenseAdd,
                waiting.id,
                expense_add_data(&waiting),
                ApprovalStatus::Pending,
            ),
            answered(
                add_request_id(declined.id),
                a,
                b,
                RequestType::ExpenseAdd,
                declined.id,
                expense_add_data(&declined),
                ApprovalStatus::Declined,
            ),
            answered(
                add_request_id(goal.id),
                a,
                b,
                RequestType::GoalAdd,
                goal.id,
                goal_add_data(&goal),
                ApprovalStatus::Approved,
            ),
            answered(
                EntityId::new_v7(),
                b,
                a,
                RequestType::GoalEdit,
                goal.id,
                RequestData::Goal(GoalFields {
                    target_amount: Some(MinorUnits(300_000)),
                    ..GoalFields::default()
                }),
                ApprovalStatus::Pending,
            ),
        ],
        expenses: vec![active, waiting, declined],
        goal_contributions: vec![contribution(a, 15_000), contribution(b, 9_950)],
        goals: vec![goal],
        months: vec![
            month("2026-10", Some(Millis(NOW.0 - 500))),
            month("2026-11", None),
        ],
        messages: vec![
            message(b, "Booked", true),
            message(a, "Great\nthanks", false),
        ],
    }
}

fn write(doc: &mut Automerge, user: UserId, checked: &CheckedImport) -> OpResult<()> {
    let ctx = Ctx { user, now: NOW };
    doc.transact(|tx| write_import(tx, &ctx, checked))
        .map(|_| ())
        .map_err(|f| f.error)
}

fn sorted_by<T: Clone, K: Ord>(items: &[T], key: impl Fn(&T) -> K) -> Vec<T> {
    let mut v = items.to_vec();
    v.sort_by_key(key);
    v
}

#[test]
fn a_checked_import_lands_in_one_change_exactly_as_it_was() {
    let (mut doc, users) = couple();
    let import = furnished(users);
    let checked = import.clone().check(&target(users)).expect("valid");
    let changes_before = doc.get_changes(&[]).len();
    write(&mut doc, users[0], &checked).expect("written");
    assert_eq!(doc.get_changes(&[]).len(), changes_before + 1, "one change");

    let state = read_document(&doc).expect("read");
    assert!(state.malformed.is_empty(), "{:?}", state.malformed);
    assert_eq!(
        state.expenses,
        sorted_by(&import.expenses, |e| e.id.to_string())
    );
    assert_eq!(state.goals, import.goals);
    assert_eq!(
        state.goal_contributions,
        sorted_by(&import.goal_contributions, |c| c.id.to_string())
    );
    assert_eq!(
        state.approvals,
        sorted_by(&import.approvals, |a| a.id.to_string())
    );
    assert_eq!(
        state.messages,
        sorted_by(&import.messages, |m| m.id.to_string())
    );
    assert_eq!(state.contributions, import.months);
    // The saved amount is a counter that later contributions increment.
    let goal = read::entity_obj(&doc, Collection::Goals, &import.goals[0].id.to_string())
        .expect("read")
        .expect("goal");
    assert!(read::is_counter(&doc, &goal, "saved_amount"));
    // Strings in their declared types: the document passes the string-type normalisation
    // untouched.
    assert!(crate::strings::misshapen_document(&doc).is_empty());
}

#[test]
fn a_partnership_with_entries_refuses_and_an_unpaid_month_is_no_entry() {
    let (mut doc, users) = couple();
    assert_eq!(first_entry(&doc), None);
    // The month the server writes on first read, unpaid: not an entry, and replaced.
    let month = MonthContribution {
        month: Month::parse("2026-11").expect("month"),
        total_required: MinorUnits(0),
        amounts: BTreeMap::from([(users[0], MinorUnits(0)), (users[1], MinorUnits(0))]),
        paid: BTreeMap::from([(users[0], None), (users[1], None)]),
    };
    doc.transact(|tx| crate::ops::server_set_month(tx, &month))
        .map_err(|f| f.error)
        .expect("month");
    assert_eq!(first_entry(&doc), None);
    let checked = furnished(users).check(&target(users)).expect("valid");
    write(&mut doc, users[1], &checked).expect("written");
    assert_eq!(first_entry(&doc), Some(Collection::Expenses));
    let months = read_document(&doc).expect("read").contributions;
    assert_eq!(months, checked.import().months, "the unpaid month replaced");

    // Now it has entries: a second import is refused and writes nothing.
    let heads = doc.get_heads();
    match write(&mut doc, users[0], &checked) {
        Err(OpError::Conflict(code)) => assert_eq!(code, NOT_EMPTY),
        other => panic!("{other:?}"),
    }
    assert_eq!(doc.get_heads(), heads);

    // A paid month alone is an entry.
    let (mut paid_doc, users) = couple();
    let mut paid = month.clone();
    paid.amounts = BTreeMap::from([(users[0], MinorUnits(0))]);
    paid.paid = BTreeMap::from([(users[0], Some(NOW))]);
    paid_doc
        .transact(|tx| write::put_month(tx, &paid))
        .map_err(|f| f.error)
        .expect("month");
    assert_eq!(first_entry(&paid_doc), Some(Collection::Contributions));
}

#[test]
fn an_import_checked_for_another_partnership_is_refused() {
    let (mut doc, users) = couple();
    let (_, others) = couple();
    let checked = Import::default().check(&target(others)).expect("valid");
    match write(&mut doc, users[0], &checked) {
        Err(OpError::Conflict(code)) => assert_eq!(code, CHANGED),
        other => panic!("{other:?}"),
    }
    // And someone who is not a member cannot write at all.
    let checked = Import::default().check(&target(users)).expect("valid");
    assert!(matches!(
        write(&mut doc, others[0], &checked),
        Err(OpError::NotMember)
    ));
}

fn problems(import: Import, users: [UserId; 2]) -> BTreeMap<String, String> {
    import
        .check(&target(users))
        .expect_err("refused")
        .into_iter()
        .map(|p| (p.path, p.message))
        .collect()
}

#[test]
fn every_problem_is_named_by_its_path() {
    let users = [UserId::new_v7(), UserId::new_v7()];
    let stranger = UserId::new_v7();
    let mut import = furnished(users);
    import.expenses[0].amount = MinorUnits(0);
    import.expenses[2].id = import.expenses[0].id;
    import.expenses[0].name = " ".into();
    import.goals[0].saved_amount = MinorUnits(1);
    import.goal_contributions[1].goal_id = EntityId::new_v7();
    import.months[1].month = import.months[0].month;
    import.months[0].total_required = MinorUnits(1);
    import.messages[1].sender_id = stranger;
    import.messages[0].created_at = Millis(NOW.0 + 3_600_000);
    import.approvals[1].responded_by = Some(users[0]);
    let found = problems(import, users);
    for path in [
        "expenses[0].amount",
        "expenses[0].name",
        "expenses[2].id",
        "goals[0].saved_amount",
        "goal_contributions[1].goal_id",
        "contributions[1].month",
        "contributions[0].shares",
        "messages[1].sender_id",
        "messages[0].created_at",
        "approval_requests[1].responded_by",
    ] {
        assert!(found.contains_key(path), "{path} missing from {found:#?}");
    }
    assert!(found["messages[1].sender_id"].contains(&stranger.to_string()));
}

#[test]
fn requests_must_fit_their_items() {
    let users = [UserId::new_v7(), UserId::new_v7()];
    // A pending expense without its request; a request at another id; one for a missing goal.
    let mut import = furnished(users);
    import.approvals.remove(0);
    let found = problems(import, users);
    assert!(found.contains_key("expenses[1].status"), "{found:#?}");

    let mut import = furnished(users);
    import.approvals[1].id = EntityId::new_v7();
    import.approvals[3].target_id = EntityId::new_v7();
    import.approvals[2].request_data = RequestData::Expense(ExpenseFields::default());
    let found = problems(import, users);
    for path in [
        "approval_requests[1].id",
        "approval_requests[3].target_id",
        "approval_requests[2].request_data",
    ] {
        assert!(found.contains_key(path), "{path} missing from {found:#?}");
    }

    // A pending addition whose data is not its item's.
    let mut import = furnished(users);
    if let RequestData::Expense(f) = &mut import.approvals[0].request_data {
        f.amount = Some(MinorUnits(1));
    }
    let found = problems(import, users);
    assert!(
        found.contains_key("approval_requests[0].request_data"),
        "{found:#?}"
    );
}

#[test]
fn names_and_notes_are_normalised_like_the_operations_do() {
    let users = [UserId::new_v7(), UserId::new_v7()];
    let mut import = furnished(users);
    import.expenses[0].name = "  Rent ".into();
    import.approvals[3].message = Some("   ".into());
    let checked = import.check(&target(users)).expect("valid");
    assert_eq!(checked.import().expenses[0].name, "Rent");
    assert_eq!(checked.import().approvals[3].message, None);
}
