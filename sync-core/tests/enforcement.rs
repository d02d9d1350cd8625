//! Enforcement on merge: forbidden changes written raw by a client (bypassing the operations)
//! are compensated exactly as the policy says, and allowed changes are left alone.

mod common;

use automerge::transaction::Transactable;
use automerge::{ObjType, ReadDoc, ScalarValue, ROOT};
use common::*;
use splitsave_sync_core::enforce::Fix;
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, UserId};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Outcome};
use splitsave_sync_core::policy::add_request_id;
use splitsave_sync_core::read;
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::write;

/// Ids of the baseline state every case starts from.
struct Ids {
    rent: EntityId, // active 50.00, added by A
    car: EntityId,  // pending 500.00, request by A
    car_request: EntityId,
    old: EntityId,     // archived
    holiday: EntityId, // active goal, approved
    house: EntityId,   // pending goal by A
    to_b: EntityId,    // message A → B, unread
    to_a: EntityId,    // message B → A, read
    month: Month,
}

fn baseline() -> (Couple, Ids) {
    let mut c = Couple::new();
    let (a, b) = (c.a, c.b);
    let mut ca = c.client(a);
    let rent = match op(&mut ca, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Rent", 5_000))
    }) {
        Outcome::Applied { id } => id,
        o => panic!("{o:?}"),
    };
    let (car_request, car) = match op(&mut ca, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Car", 50_000))
    }) {
        Outcome::ApprovalRequested {
            request_id,
            target_id,
        } => (request_id, target_id),
        o => panic!("{o:?}"),
    };
    let old = match op(&mut ca, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Old", 1_000))
    }) {
        Outcome::Applied { id } => id,
        o => panic!("{o:?}"),
    };
    op(&mut ca, |tx| ops::archive_expense(tx, &c.ctx(a), old));
    let (holiday_req, holiday) = match op(&mut ca, |tx| {
        ops::add_goal(tx, &c.ctx(a), &goal("Holiday", 200_000))
    }) {
        Outcome::ApprovalRequested {
            request_id,
            target_id,
        } => (request_id, target_id),
        o => panic!("{o:?}"),
    };
    let house = match op(&mut ca, |tx| {
        ops::add_goal(tx, &c.ctx(a), &goal("House", 9_000_000))
    }) {
        Outcome::ApprovalRequested { target_id, .. } => target_id,
        o => panic!("{o:?}"),
    };
    let to_b = match op(&mut ca, |tx| ops::send_message(tx, &c.ctx(a), "hello")) {
        Outcome::Applied { id } => id,
        o => panic!("{o:?}"),
    };
    assert!(c.sync(&mut ca, a).fixes.is_empty());
    let mut cb = c.client(b);
    op(&mut cb, |tx| ops::approve(tx, &c.ctx(b), holiday_req));
    let to_a = match op(&mut cb, |tx| ops::send_message(tx, &c.ctx(b), "hi back")) {
        Outcome::Applied { id } => id,
        o => panic!("{o:?}"),
    };
    assert!(c.sync(&mut cb, b).fixes.is_empty());
    c.sync(&mut ca, a);
    op(&mut ca, |tx| ops::mark_read(tx, &c.ctx(a), to_a));
    assert!(c.sync(&mut ca, a).fixes.is_empty());
    let month = Month::parse("2026-11").unwrap();
    c.server_month(month, 3_333, 6_667);
    assert!(invariant_violations(&c.server, &[a, b]).is_empty());
    (
        c,
        Ids {
            rent,
            car,
            car_request,
            old,
            holiday,
            house,
            to_b,
            to_a,
            month,
        },
    )
}

type Tx<'a> = automerge::transaction::Transaction<'a>;

/// One row of the table: who writes, what they write raw, and what must hold afterwards.
struct Case {
    name: &'static str,
    author: fn(&Couple) -> UserId,
    write: fn(&mut Tx<'_>, &Couple, &Ids),
    expect: fn(&Couple, &Ids, &[Fix]),
}

fn by_a(c: &Couple) -> UserId {
    c.a
}
fn by_b(c: &Couple) -> UserId {
    c.b
}

fn exp(c: &Couple, id: EntityId) -> Expense {
    read::read_expense(&c.server, &id.to_string())
        .unwrap()
        .unwrap()
}
fn gl(c: &Couple, id: EntityId) -> Goal {
    read::read_goal(&c.server, &id.to_string())
        .unwrap()
        .unwrap()
}
fn appr(c: &Couple, id: EntityId) -> Approval {
    read::read_approval(&c.server, &id.to_string())
        .unwrap()
        .unwrap()
}
fn msg(c: &Couple, id: EntityId) -> Message {
    read::read_message(&c.server, &id.to_string())
        .unwrap()
        .unwrap()
}
fn month(c: &Couple, m: Month) -> MonthContribution {
    read::read_month(&c.server, &m.to_string())
        .unwrap()
        .unwrap()
}
fn requests_for(c: &Couple, target: EntityId) -> Vec<Approval> {
    c.state()
        .approvals
        .into_iter()
        .filter(|a| a.target_id == target)
        .collect()
}
fn raw_expense(tx: &mut Tx<'_>, id: EntityId, by: UserId, cents: i64, status: &str) {
    let e = write::new_entity(tx, Collection::Expenses, &id.to_string()).unwrap();
    tx.put(&e, "name", "Raw").unwrap();
    tx.put(&e, "amount", cents).unwrap();
    tx.put(&e, "category", "other").unwrap();
    tx.put(&e, "frequency", "monthly").unwrap();
    tx.put(&e, "added_by", by.to_string()).unwrap();
    tx.put(&e, "status", status).unwrap();
    tx.put(&e, "created_at", T0.0).unwrap();
    tx.put(&e, "updated_at", T0.0).unwrap();
}

fn new_id(tag: &str) -> EntityId {
    EntityId::derived(&["test", tag])
}

fn forbidden_cases() -> Vec<Case> {
    vec![
        Case {
            name: "over-threshold expense added active → pending + expense_add request",
            author: by_b,
            write: |tx, c, _| raw_expense(tx, new_id("big"), c.b, 10_001, "active"),
            expect: |c, _, _| {
                let e = exp(c, new_id("big"));
                assert_eq!(e.status, ItemStatus::PendingApproval);
                let r = appr(c, add_request_id(e.id));
                assert_eq!(r.request_type, RequestType::ExpenseAdd);
                assert_eq!(r.requested_by, c.b);
                assert_eq!(r.status, ApprovalStatus::Pending);
            },
        },
        Case {
            name: "pending expense added without a request → request filed",
            author: by_b,
            write: |tx, c, _| raw_expense(tx, new_id("p"), c.b, 20_000, "pending_approval"),
            expect: |c, _, _| {
                assert_eq!(exp(c, new_id("p")).status, ItemStatus::PendingApproval);
                assert_eq!(requests_for(c, new_id("p")).len(), 1);
            },
        },
        Case {
            name: "expense added in the partner's name → added_by corrected",
            author: by_b,
            write: |tx, c, _| raw_expense(tx, new_id("forged"), c.a, 1_000, "active"),
            expect: |c, _, _| assert_eq!(exp(c, new_id("forged")).added_by, c.b),
        },
        Case {
            name: "expense with a negative amount → removed",
            author: by_a,
            write: |tx, c, _| raw_expense(tx, new_id("neg"), c.a, -5, "active"),
            expect: |c, _, _| {
                assert!(read::read_expense(&c.server, &new_id("neg").to_string())
                    .unwrap()
                    .is_none())
            },
        },
        Case {
            name: "expense with an empty name → removed",
            author: by_a,
            write: |tx, c, _| {
                raw_expense(tx, new_id("empty"), c.a, 500, "active");
                let o = obj_of(tx, Collection::Expenses, new_id("empty"));
                tx.put(&o, "name", "   ").unwrap();
            },
            expect: |c, _, _| {
                assert!(read::read_expense(&c.server, &new_id("empty").to_string())
                    .unwrap()
                    .is_none())
            },
        },
        Case {
            name: "expense with an unknown category → removed",
            author: by_a,
            write: |tx, c, _| {
                raw_expense(tx, new_id("cat"), c.a, 500, "active");
                let o = obj_of(tx, Collection::Expenses, new_id("cat"));
                tx.put(&o, "category", "yachts").unwrap();
            },
            expect: |c, _, fixes| {
                assert!(fixes.contains(&Fix::Remove {
                    collection: Collection::Expenses,
                    key: new_id("cat").to_string()
                }));
                assert!(!read::collection_keys(&c.server, Collection::Expenses)
                    .contains(&new_id("cat").to_string()));
            },
        },
        Case {
            name: "expense whose amount is a string (wrong shape) → removed",
            author: by_a,
            write: |tx, c, _| {
                raw_expense(tx, new_id("shape"), c.a, 500, "active");
                let o = obj_of(tx, Collection::Expenses, new_id("shape"));
                tx.put(&o, "amount", "12.50").unwrap();
            },
            expect: |c, _, _| {
                assert!(!read::collection_keys(&c.server, Collection::Expenses)
                    .contains(&new_id("shape").to_string()));
            },
        },
        Case {
            name: "expense that is not a map → removed",
            author: by_a,
            write: |tx, _, _| {
                let coll = read::collection_obj(tx, Collection::Expenses).unwrap();
                tx.put(&coll, new_id("scalar").to_string(), 42).unwrap();
            },
            expect: |c, _, _| {
                assert!(!read::collection_keys(&c.server, Collection::Expenses)
                    .contains(&new_id("scalar").to_string()));
            },
        },
        Case {
            name: "unapproved edit of an expense amount → old value restored + edit request",
            author: by_b,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.rent);
                tx.put(&o, "amount", 9_000).unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(exp(c, ids.rent).amount, MinorUnits(5_000));
                let reqs = requests_for(c, ids.rent);
                assert_eq!(reqs.len(), 1);
                assert_eq!(reqs[0].request_type, RequestType::ExpenseEdit);
                assert_eq!(reqs[0].requested_by, c.b);
                assert_eq!(
                    reqs[0].request_data,
                    RequestData::Expense(ExpenseFields {
                        amount: Some(MinorUnits(9_000)),
                        ..Default::default()
                    })
                );
            },
        },
        Case {
            name: "name edited as Text (the way JS clients write) → restored + edit request",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.rent);
                let t = tx.put_object(&o, "name", ObjType::Text).unwrap();
                tx.splice_text(&t, 0, 0, "Rent and bills").unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(exp(c, ids.rent).name, "Rent");
                let reqs = requests_for(c, ids.rent);
                assert_eq!(reqs.len(), 1);
                assert_eq!(
                    reqs[0].request_data,
                    RequestData::Expense(ExpenseFields {
                        name: Some("Rent and bills".into()),
                        ..Default::default()
                    })
                );
            },
        },
        Case {
            name: "pending expense activated without approval → pending again",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.car);
                tx.put(&o, "status", "active").unwrap();
            },
            expect: |c, ids, _| assert_eq!(exp(c, ids.car).status, ItemStatus::PendingApproval),
        },
        Case {
            name: "archived expense revived → archived again",
            author: by_b,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.old);
                tx.put(&o, "status", "active").unwrap();
            },
            expect: |c, ids, _| assert_eq!(exp(c, ids.old).status, ItemStatus::Archived),
        },
        Case {
            name: "expense deleted from the map → restored",
            author: by_b,
            write: |tx, _, ids| {
                let coll = read::collection_obj(tx, Collection::Expenses).unwrap();
                tx.delete(&coll, ids.rent.to_string()).unwrap();
            },
            expect: |c, ids, _| {
                let e = exp(c, ids.rent);
                assert_eq!((e.name.as_str(), e.amount), ("Rent", MinorUnits(5_000)));
            },
        },
        Case {
            name: "added_by of an existing expense rewritten → restored",
            author: by_b,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.rent);
                tx.put(&o, "added_by", c.b.to_string()).unwrap();
            },
            expect: |c, ids, _| assert_eq!(exp(c, ids.rent).added_by, c.a),
        },
        Case {
            name: "goal added active → pending + goal_add request",
            author: by_b,
            write: |tx, c, _| {
                let g = Goal {
                    id: new_id("goal"),
                    name: "Bike".into(),
                    target_amount: MinorUnits(80_000),
                    saved_amount: MinorUnits(0),
                    goal_type: GoalType::Other,
                    priority: Priority::Low,
                    added_by: c.b,
                    status: ItemStatus::Active,
                    created_at: T0,
                    updated_at: T0,
                };
                write::put_goal(tx, &g).unwrap();
            },
            expect: |c, _, _| {
                assert_eq!(gl(c, new_id("goal")).status, ItemStatus::PendingApproval);
                let r = appr(c, add_request_id(new_id("goal")));
                assert_eq!(r.request_type, RequestType::GoalAdd);
                assert_eq!(r.requested_by, c.b);
            },
        },
        Case {
            name: "unapproved edit of a goal target → restored + goal_edit request",
            author: by_b,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.put(&o, "target_amount", 1_000).unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(gl(c, ids.holiday).target_amount, MinorUnits(200_000));
                let edit = requests_for(c, ids.holiday)
                    .into_iter()
                    .find(|r| r.request_type == RequestType::GoalEdit)
                    .expect("edit request");
                assert_eq!(edit.status, ApprovalStatus::Pending);
            },
        },
        Case {
            name: "saved amount overwritten with a new counter → value restored",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.put(&o, "saved_amount", ScalarValue::counter(999_999))
                    .unwrap();
            },
            expect: |c, ids, _| assert_eq!(gl(c, ids.holiday).saved_amount, MinorUnits(0)),
        },
        Case {
            name: "saved amount overwritten with a plain integer → counter restored",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.put(&o, "saved_amount", 5_000).unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(gl(c, ids.holiday).saved_amount, MinorUnits(0));
                let o = obj_of(&c.server, Collection::Goals, ids.holiday);
                assert!(read::is_counter(&c.server, &o, "saved_amount"));
            },
        },
        Case {
            name: "saved amount incremented without logging a contribution → corrected",
            author: by_b,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.increment(&o, "saved_amount", 7_000).unwrap();
            },
            expect: |c, ids, _| assert_eq!(gl(c, ids.holiday).saved_amount, MinorUnits(0)),
        },
        Case {
            name: "contribution logged in the partner's name → user corrected",
            author: by_b,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.increment(&o, "saved_amount", 2_500).unwrap();
                write::put_goal_contribution(
                    tx,
                    &GoalContribution {
                        id: new_id("gc"),
                        goal_id: ids.holiday,
                        user_id: c.a,
                        amount: MinorUnits(2_500),
                        created_at: T0,
                    },
                )
                .unwrap();
            },
            expect: |c, ids, _| {
                let gc = read::read_goal_contribution(&c.server, &new_id("gc").to_string())
                    .unwrap()
                    .unwrap();
                assert_eq!(gc.user_id, c.b);
                assert_eq!(gl(c, ids.holiday).saved_amount, MinorUnits(2_500));
            },
        },
        Case {
            name: "contribution to a goal still pending approval → removed, counter restored",
            author: by_a,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Goals, ids.house);
                tx.increment(&o, "saved_amount", 1_000).unwrap();
                write::put_goal_contribution(
                    tx,
                    &GoalContribution {
                        id: new_id("gc-pending"),
                        goal_id: ids.house,
                        user_id: c.a,
                        amount: MinorUnits(1_000),
                        created_at: T0,
                    },
                )
                .unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(gl(c, ids.house).saved_amount, MinorUnits(0));
                assert!(
                    read::read_goal_contribution(&c.server, &new_id("gc-pending").to_string())
                        .unwrap()
                        .is_none()
                );
            },
        },
        Case {
            name: "requester approves their own request → reverted, target stays pending",
            author: by_a,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Approvals, ids.car_request);
                tx.put(&o, "status", "approved").unwrap();
                tx.put(&o, "responded_by", c.a.to_string()).unwrap();
                let e = obj_of(tx, Collection::Expenses, ids.car);
                tx.put(&e, "status", "active").unwrap();
            },
            expect: |c, ids, _| {
                let r = appr(c, ids.car_request);
                assert_eq!(r.status, ApprovalStatus::Pending);
                assert_eq!(r.responded_by, None);
                assert_eq!(exp(c, ids.car).status, ItemStatus::PendingApproval);
            },
        },
        Case {
            name: "new request created already approved by its requester → pending",
            author: by_b,
            write: |tx, c, ids| {
                let a = Approval {
                    id: new_id("self"),
                    requested_by: c.b,
                    request_type: RequestType::ExpenseEdit,
                    target_id: ids.rent,
                    request_data: RequestData::Expense(ExpenseFields {
                        amount: Some(MinorUnits(1)),
                        ..Default::default()
                    }),
                    message: None,
                    status: ApprovalStatus::Approved,
                    responded_by: Some(c.b),
                    responded_at: Some(T0),
                    created_at: T0,
                };
                write::put_approval(tx, &a).unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(appr(c, new_id("self")).status, ApprovalStatus::Pending);
                assert_eq!(exp(c, ids.rent).amount, MinorUnits(5_000));
            },
        },
        Case {
            name: "an answered request answered again → first answer kept",
            author: by_a,
            write: |tx, _, _| {
                // The holiday goal's request was approved by B; A flips it to declined.
                let coll = read::collection_obj(tx, Collection::Approvals).unwrap();
                let keys: Vec<String> = tx.keys(&coll).collect();
                for k in keys {
                    let a = read::read_approval(tx, &k).unwrap().unwrap();
                    if a.status == ApprovalStatus::Approved {
                        let o = obj_of(tx, Collection::Approvals, &k);
                        tx.put(&o, "status", "declined").unwrap();
                    }
                }
            },
            expect: |c, ids, _| {
                let r = appr(c, add_request_id(ids.holiday));
                assert_eq!(r.status, ApprovalStatus::Approved);
                assert_eq!(gl(c, ids.holiday).status, ItemStatus::Active);
            },
        },
        Case {
            name: "request data of a pending request changed → restored",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Approvals, ids.car_request);
                let d = read::map_at(tx, &o, "request_data").unwrap();
                tx.put(&d, "amount", 1).unwrap();
            },
            expect: |c, ids, _| match appr(c, ids.car_request).request_data {
                RequestData::Expense(f) => assert_eq!(f.amount, Some(MinorUnits(50_000))),
                other => panic!("{other:?}"),
            },
        },
        Case {
            name: "approval request deleted → restored",
            author: by_b,
            write: |tx, _, ids| {
                let coll = read::collection_obj(tx, Collection::Approvals).unwrap();
                tx.delete(&coll, ids.car_request.to_string()).unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(appr(c, ids.car_request).status, ApprovalStatus::Pending)
            },
        },
        Case {
            name: "request filed in the partner's name → removed",
            author: by_b,
            write: |tx, c, ids| {
                let a = Approval {
                    id: new_id("forged-req"),
                    requested_by: c.a,
                    request_type: RequestType::ExpenseEdit,
                    target_id: ids.rent,
                    request_data: RequestData::Expense(ExpenseFields {
                        amount: Some(MinorUnits(1)),
                        ..Default::default()
                    }),
                    message: None,
                    status: ApprovalStatus::Pending,
                    responded_by: None,
                    responded_at: None,
                    created_at: T0,
                };
                write::put_approval(tx, &a).unwrap();
            },
            expect: |c, _, _| {
                assert!(
                    read::read_approval(&c.server, &new_id("forged-req").to_string())
                        .unwrap()
                        .is_none()
                )
            },
        },
        Case {
            name: "message with a forged sender → removed",
            author: by_b,
            write: |tx, c, _| {
                let m = Message {
                    id: new_id("forged-msg"),
                    sender_id: c.a,
                    text: "I agree to everything".into(),
                    message_type: MessageType::Text,
                    read_by_recipient: false,
                    created_at: T0,
                };
                write::put_message(tx, &m).unwrap();
            },
            expect: |c, _, _| {
                assert!(
                    read::read_message(&c.server, &new_id("forged-msg").to_string())
                        .unwrap()
                        .is_none()
                )
            },
        },
        Case {
            name: "message text edited → restored",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Messages, ids.to_b);
                tx.put(&o, "text", "goodbye").unwrap();
            },
            expect: |c, ids, _| assert_eq!(msg(c, ids.to_b).text, "hello"),
        },
        Case {
            name: "sender marks their own message read → unread again",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Messages, ids.to_b);
                tx.put(&o, "read_by_recipient", true).unwrap();
            },
            expect: |c, ids, _| assert!(!msg(c, ids.to_b).read_by_recipient),
        },
        Case {
            name: "a read message marked unread → read again",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Messages, ids.to_a);
                tx.put(&o, "read_by_recipient", false).unwrap();
            },
            expect: |c, ids, _| assert!(msg(c, ids.to_a).read_by_recipient),
        },
        Case {
            name: "message deleted → restored",
            author: by_b,
            write: |tx, _, ids| {
                let coll = read::collection_obj(tx, Collection::Messages).unwrap();
                tx.delete(&coll, ids.to_b.to_string()).unwrap();
            },
            expect: |c, ids, _| assert_eq!(msg(c, ids.to_b).text, "hello"),
        },
        Case {
            name: "partner's monthly contribution marked paid → reverted",
            author: by_a,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Contributions, ids.month);
                let paid = read::map_at(tx, &o, "paid").unwrap();
                tx.put(&paid, c.b.to_string(), T0.0).unwrap();
            },
            expect: |c, ids, _| assert_eq!(month(c, ids.month).paid[&c.b], None),
        },
        Case {
            name: "month total and amounts rewritten by a client → restored",
            author: by_a,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Contributions, ids.month);
                tx.put(&o, "total_required", 1).unwrap();
                let amounts = read::map_at(tx, &o, "amounts").unwrap();
                tx.put(&amounts, c.a.to_string(), 0).unwrap();
            },
            expect: |c, ids, _| {
                let m = month(c, ids.month);
                assert_eq!(m.total_required, MinorUnits(10_000));
                assert_eq!(m.amounts[&c.a], MinorUnits(3_333));
            },
        },
        Case {
            name: "month created by a client → removed",
            author: by_b,
            write: |tx, c, _| {
                let mut amounts = std::collections::BTreeMap::new();
                amounts.insert(c.b, MinorUnits(1));
                write::put_month(
                    tx,
                    &MonthContribution {
                        month: Month::parse("2030-01").unwrap(),
                        total_required: MinorUnits(1),
                        amounts,
                        paid: Default::default(),
                    },
                )
                .unwrap();
            },
            expect: |c, _, _| assert!(read::read_month(&c.server, "2030-01").unwrap().is_none()),
        },
        Case {
            name: "approval threshold raised by a client → restored",
            author: by_a,
            write: |tx, _, _| {
                let p = read::map_at(tx, &ROOT, keys::PARTNERSHIP).unwrap();
                tx.put(&p, "approval_threshold", 1_000_000).unwrap();
            },
            expect: |c, _, _| {
                assert_eq!(c.state().partnership.approval_threshold, MinorUnits(10_000))
            },
        },
        Case {
            name: "partnership map replaced → restored",
            author: by_b,
            write: |tx, _, _| {
                tx.put_object(ROOT, keys::PARTNERSHIP, ObjType::Map)
                    .unwrap();
            },
            expect: |c, _, _| assert_eq!(c.state().partnership.id, c.pid),
        },
        Case {
            name: "own member income changed by a client → restored",
            author: by_a,
            write: |tx, c, _| {
                let o = obj_of(tx, Collection::Members, c.a);
                tx.put(&o, "income", 1).unwrap();
            },
            expect: |c, _, _| {
                let m = read::read_member(&c.server, &c.a.to_string())
                    .unwrap()
                    .unwrap();
                assert_eq!(m.income, Some(MinorUnits(300_000)));
            },
        },
        Case {
            name: "a third member added by a client → removed",
            author: by_a,
            write: |tx, _, _| {
                write::put_member(
                    tx,
                    &Member {
                        user_id: UserId(new_id("intruder").0),
                        name: "Eve".into(),
                        income: None,
                        slot: 2,
                    },
                )
                .unwrap();
            },
            expect: |c, _, _| assert_eq!(c.state().members.len(), 2),
        },
        Case {
            name: "schema version rewritten → restored",
            author: by_b,
            write: |tx, _, _| tx.put(ROOT, keys::SCHEMA, 99).unwrap(),
            expect: |c, _, _| assert_eq!(read::read_schema_version(&c.server), Some(1)),
        },
        Case {
            name: "whole expenses map replaced → every expense restored",
            author: by_b,
            write: |tx, _, _| {
                tx.put_object(ROOT, keys::EXPENSES, ObjType::Map).unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(c.state().expenses.len(), 3);
                assert_eq!(exp(c, ids.rent).amount, MinorUnits(5_000));
                assert_eq!(exp(c, ids.car).status, ItemStatus::PendingApproval);
            },
        },
    ]
}

#[test]
fn every_forbidden_change_is_compensated_as_the_policy_says() {
    let cases = forbidden_cases();
    assert!(cases.len() >= 25, "the table holds {} cases", cases.len());
    for case in cases {
        let (mut c, ids) = baseline();
        let author = (case.author)(&c);
        let mut client = c.client(author);
        client
            .transact::<_, _, automerge::AutomergeError>(|tx| {
                (case.write)(tx, &c, &ids);
                Ok(())
            })
            .unwrap();
        let e = c.merge_from(&client, author);
        assert!(!e.fixes.is_empty(), "{}: no compensation", case.name);
        (case.expect)(&c, &ids, &e.fixes);
        let violations = invariant_violations(&c.server, &[c.a, c.b]);
        assert!(violations.is_empty(), "{}: {violations:?}", case.name);
        // The compensated state is stable: merging the same client again changes nothing.
        let again = c.merge_from(&client, author);
        assert!(
            again.fixes.is_empty(),
            "{}: not stable: {:?}",
            case.name,
            again.fixes
        );
    }
}

/// Makes an allowed change on a replica; returns the replica and its author.
type AllowedChange = fn(&mut Couple, &Ids) -> (automerge::Automerge, UserId);

#[test]
fn allowed_changes_are_left_alone() {
    let allowed: Vec<(&str, AllowedChange)> = vec![
        ("small expense added directly", |c, _| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| {
                ops::add_expense(tx, &c.ctx(c.b), &expense("Milk", 250))
            });
            (cl, c.b)
        }),
        ("expense exactly at the threshold added directly", |c, _| {
            let mut cl = c.client(c.b);
            let o = op(&mut cl, |tx| {
                ops::add_expense(tx, &c.ctx(c.b), &expense("TV", 10_000))
            });
            assert!(matches!(o, Outcome::Applied { .. }));
            (cl, c.b)
        }),
        ("over-threshold expense through the operation", |c, _| {
            let mut cl = c.client(c.a);
            op(&mut cl, |tx| {
                ops::add_expense(tx, &c.ctx(c.a), &expense("Sofa", 10_001))
            });
            (cl, c.a)
        }),
        ("expense archived", |c, ids| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| {
                ops::archive_expense(tx, &c.ctx(c.b), ids.rent)
            });
            (cl, c.b)
        }),
        ("edit proposed through the operation", |c, ids| {
            let mut cl = c.client(c.b);
            let f = ExpenseFields {
                amount: Some(MinorUnits(6_000)),
                ..Default::default()
            };
            op(&mut cl, |tx| {
                ops::edit_expense(tx, &c.ctx(c.b), ids.rent, &f, Some("rent went up"))
            });
            (cl, c.b)
        }),
        ("partner approves and applies", |c, ids| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| ops::approve(tx, &c.ctx(c.b), ids.car_request));
            (cl, c.b)
        }),
        ("partner declines", |c, ids| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| ops::decline(tx, &c.ctx(c.b), ids.car_request));
            (cl, c.b)
        }),
        ("contribution logged", |c, ids| {
            let mut cl = c.client(c.a);
            op(&mut cl, |tx| {
                ops::contribute_to_goal(tx, &c.ctx(c.a), ids.holiday, MinorUnits(5_000))
            });
            (cl, c.a)
        }),
        ("message sent", |c, _| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| ops::send_message(tx, &c.ctx(c.b), "dinner?"));
            (cl, c.b)
        }),
        ("recipient marks read", |c, ids| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| ops::mark_read(tx, &c.ctx(c.b), ids.to_b));
            (cl, c.b)
        }),
        ("own month marked paid", |c, ids| {
            let mut cl = c.client(c.a);
            cl.transact(|tx| ops::mark_paid(tx, &c.ctx(c.a), ids.month))
                .unwrap();
            (cl, c.a)
        }),
        ("goal archived", |c, ids| {
            let mut cl = c.client(c.b);
            op(&mut cl, |tx| {
                ops::archive_goal(tx, &c.ctx(c.b), ids.holiday)
            });
            (cl, c.b)
        }),
        ("unknown top-level key from a newer client", |c, _| {
            let mut cl = c.client(c.a);
            raw(&mut cl, |tx| tx.put(ROOT, "future_feature", "x"));
            (cl, c.a)
        }),
    ];
    for (name, make) in allowed {
        let (mut c, ids) = baseline();
        let before = c.state();
        let (client, author) = make(&mut c, &ids);
        let e = c.merge_from(&client, author);
        assert!(
            e.fixes.is_empty(),
            "{name}: unexpected compensation {:?}",
            e.fixes
        );
        let landed = c.state() != before || c.server.get(ROOT, "future_feature").unwrap().is_some();
        assert!(landed, "{name}: the change did not land");
        let violations = invariant_violations(&c.server, &[c.a, c.b]);
        assert!(violations.is_empty(), "{name}: {violations:?}");
    }
}

#[test]
fn approving_raw_without_applying_gets_the_request_applied_once() {
    let (mut c, ids) = baseline();
    let mut cb = c.client(c.b);
    raw(&mut cb, |tx| {
        let o = obj_of(tx, Collection::Approvals, ids.car_request);
        tx.put(&o, "status", "approved")?;
        tx.put(&o, "responded_by", c.b.to_string())?;
        tx.put(&o, "responded_at", T0.0)
    });
    let e = c.sync(&mut cb, c.b);
    assert_eq!(exp(&c, ids.car).status, ItemStatus::Active);
    assert_eq!(e.fixes.len(), 1, "{:?}", e.fixes);
    // Merging again applies nothing more.
    assert!(c.merge_from(&cb, c.b).fixes.is_empty());
}

#[test]
fn approving_an_edit_applies_it_and_declining_keeps_the_old_values() {
    let (mut c, ids) = baseline();
    let mut ca = c.client(c.a);
    let f = ExpenseFields {
        amount: Some(MinorUnits(7_500)),
        name: Some("Rent (new flat)".into()),
        ..Default::default()
    };
    let Outcome::ApprovalRequested { request_id, .. } = op(&mut ca, |tx| {
        ops::edit_expense(tx, &c.ctx(c.a), ids.rent, &f, None)
    }) else {
        panic!("edit must need approval")
    };
    assert!(c.sync(&mut ca, c.a).fixes.is_empty());
    assert_eq!(exp(&c, ids.rent).amount, MinorUnits(5_000));
    // The requester cannot approve it.
    let err = ca
        .transact(|tx| ops::approve(tx, &c.ctx(c.a), request_id))
        .unwrap_err();
    assert!(matches!(err.error, ops::OpError::Forbidden(_)));
    let mut cb = c.client(c.b);
    op(&mut cb, |tx| ops::approve(tx, &c.ctx(c.b), request_id));
    assert!(c.sync(&mut cb, c.b).fixes.is_empty());
    let rent = exp(&c, ids.rent);
    assert_eq!(
        (rent.name.as_str(), rent.amount),
        ("Rent (new flat)", MinorUnits(7_500))
    );
    // Answering twice is a conflict.
    let err = cb
        .transact(|tx| ops::approve(tx, &c.ctx(c.b), request_id))
        .unwrap_err();
    assert!(matches!(err.error, ops::OpError::Conflict(_)));

    // A declined edit leaves the old values.
    let f = ExpenseFields {
        amount: Some(MinorUnits(1)),
        ..Default::default()
    };
    let Outcome::ApprovalRequested { request_id, .. } = op(&mut cb, |tx| {
        ops::edit_expense(tx, &c.ctx(c.b), ids.rent, &f, None)
    }) else {
        panic!()
    };
    c.sync(&mut cb, c.b);
    let mut ca = c.client(c.a);
    op(&mut ca, |tx| ops::decline(tx, &c.ctx(c.a), request_id));
    assert!(c.sync(&mut ca, c.a).fixes.is_empty());
    assert_eq!(exp(&c, ids.rent).amount, MinorUnits(7_500));
    assert_eq!(appr(&c, request_id).status, ApprovalStatus::Declined);
}

#[test]
fn both_partners_contributing_fifty_offline_saves_one_hundred() {
    let (mut c, ids) = baseline();
    let mut ca = c.client(c.a);
    let mut cb = c.client(c.b);
    op(&mut ca, |tx| {
        ops::contribute_to_goal(tx, &c.ctx(c.a), ids.holiday, MinorUnits(5_000))
    });
    op(&mut cb, |tx| {
        ops::contribute_to_goal(tx, &c.ctx(c.b), ids.holiday, MinorUnits(5_000))
    });
    assert!(c.sync(&mut ca, c.a).fixes.is_empty());
    assert!(c.sync(&mut cb, c.b).fixes.is_empty());
    c.sync(&mut ca, c.a);
    let saved = gl(&c, ids.holiday).saved_amount;
    assert_eq!(
        c.state().partnership.currency.from_minor(saved).to_string(),
        "100.00"
    );
    for replica in [&ca, &cb] {
        let g = read::read_goal(replica, &ids.holiday.to_string())
            .unwrap()
            .unwrap();
        assert_eq!(g.saved_amount, MinorUnits(10_000));
    }
}

#[test]
fn over_threshold_expense_written_offline_by_one_partner_converges_pending() {
    let (mut c, _) = baseline();
    let mut ca = c.client(c.a);
    let mut cb = c.client(c.b);
    raw(&mut ca, |tx| {
        raw_expense(tx, new_id("tv"), c.a, 120_000, "active");
        Ok(())
    });
    op(&mut cb, |tx| {
        ops::add_expense(tx, &c.ctx(c.b), &expense("Bread", 300))
    });
    c.sync(&mut ca, c.a);
    c.sync(&mut cb, c.b);
    c.sync(&mut ca, c.a);
    assert_eq!(ca.get_heads(), c.server.get_heads());
    assert_eq!(cb.get_heads(), c.server.get_heads());
    let tv = exp(&c, new_id("tv"));
    assert_eq!(tv.status, ItemStatus::PendingApproval);
    assert!(invariant_violations(&c.server, &[c.a, c.b]).is_empty());
}
