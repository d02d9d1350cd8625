//! Enforcement on merge: forbidden changes written raw by a client (bypassing the operations)
//! are compensated exactly as the policy says, and allowed changes are left alone.

use crate::common::*;
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ScalarValue, ROOT};
use splitsave_sync_core::document::{read_document, server_actor};
use splitsave_sync_core::enforce::Fix;
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, UserId};
use splitsave_sync_core::money::MinorUnits;
use splitsave_sync_core::ops::{self, Outcome};
use splitsave_sync_core::policy::add_request_id;
use splitsave_sync_core::read;
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::time::Millis;
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

/// A century after [`T0`], as a client with a wrong (or dishonest) clock writes it.
fn ahead() -> i64 {
    T0.0 + 100 * 365 * 24 * 3_600_000
}

/// A pending `expense_add` request by `by` for `target` (set `request_type` for a goal).
fn add_request(id: EntityId, by: UserId, target: EntityId, data: RequestData) -> Approval {
    Approval {
        id,
        requested_by: by,
        request_type: RequestType::ExpenseAdd,
        target_id: target,
        request_data: data,
        message: None,
        status: ApprovalStatus::Pending,
        responded_by: None,
        responded_at: None,
        created_at: T0,
    }
}

/// A pending edit request by `by` for `target` (`expense_edit` or `goal_edit` by the data).
fn edit_request(id: EntityId, by: UserId, target: EntityId, data: RequestData) -> Approval {
    let request_type = match data {
        RequestData::Expense(_) => RequestType::ExpenseEdit,
        RequestData::Goal(_) => RequestType::GoalEdit,
    };
    Approval {
        request_type,
        ..add_request(id, by, target, data)
    }
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
        Case {
            name: "lying expense_add request at the derived id → corrected to the expense's values",
            author: by_b,
            write: |tx, c, _| {
                let bag = new_id("bag");
                raw_expense(tx, bag, c.b, 250_000, "pending_approval");
                let o = obj_of(tx, Collection::Expenses, bag);
                tx.put(&o, "name", "Designer bag").unwrap();
                let coffee = ExpenseFields {
                    name: Some("Coffee".into()),
                    amount: Some(MinorUnits(100)),
                    ..Default::default()
                };
                let r = add_request(add_request_id(bag), c.b, bag, RequestData::Expense(coffee));
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, _, _| {
                let bag = exp(c, new_id("bag"));
                assert_eq!(bag.status, ItemStatus::PendingApproval);
                assert_eq!(bag.amount, MinorUnits(250_000));
                let reqs = requests_for(c, bag.id);
                assert_eq!(reqs.len(), 1, "{reqs:?}");
                let r = &reqs[0];
                assert_eq!(r.id, add_request_id(bag.id));
                assert_eq!(r.request_type, RequestType::ExpenseAdd);
                assert_eq!(r.requested_by, c.b);
                assert_eq!(r.status, ApprovalStatus::Pending);
                assert_eq!(r.request_data, ops::expense_add_data(&bag));
                // What the partner is asked to approve is the 2500.00 bag, not a 1.00 coffee.
                let RequestData::Expense(shown) = &r.request_data else {
                    panic!("{:?}", r.request_data)
                };
                assert_eq!(shown.name.as_deref(), Some("Designer bag"));
                let currency = c.state().partnership.currency;
                let shown = currency.from_minor(shown.amount.unwrap()).to_string();
                assert_eq!(shown, "2500.00");
            },
        },
        Case {
            name: "lying goal_add request at the derived id → corrected to the goal's values",
            author: by_b,
            write: |tx, c, _| {
                let yacht = Goal {
                    id: new_id("yacht"),
                    name: "Yacht".into(),
                    target_amount: MinorUnits(5_000_000),
                    saved_amount: MinorUnits(0),
                    goal_type: GoalType::Other,
                    priority: Priority::High,
                    added_by: c.b,
                    status: ItemStatus::PendingApproval,
                    created_at: T0,
                    updated_at: T0,
                };
                write::put_goal(tx, &yacht).unwrap();
                let plant = GoalFields {
                    name: Some("Plant".into()),
                    target_amount: Some(MinorUnits(500)),
                    ..Default::default()
                };
                let r = add_request(
                    add_request_id(yacht.id),
                    c.b,
                    yacht.id,
                    RequestData::Goal(plant),
                );
                write::put_approval(
                    tx,
                    &Approval {
                        request_type: RequestType::GoalAdd,
                        ..r
                    },
                )
                .unwrap();
            },
            expect: |c, _, _| {
                let yacht = gl(c, new_id("yacht"));
                assert_eq!(yacht.status, ItemStatus::PendingApproval);
                assert_eq!(yacht.target_amount, MinorUnits(5_000_000));
                let reqs = requests_for(c, yacht.id);
                assert_eq!(reqs.len(), 1, "{reqs:?}");
                let r = &reqs[0];
                assert_eq!(r.id, add_request_id(yacht.id));
                assert_eq!(r.request_type, RequestType::GoalAdd);
                assert_eq!(r.requested_by, c.b);
                assert_eq!(r.status, ApprovalStatus::Pending);
                assert_eq!(r.request_data, ops::goal_add_data(&yacht));
            },
        },
        Case {
            name: "add request under another id → replaced by one at the derived id, note kept",
            author: by_b,
            write: |tx, c, _| {
                let crib = new_id("crib");
                raw_expense(tx, crib, c.b, 30_000, "pending_approval");
                let e = read::read_expense(tx, &crib.to_string()).unwrap().unwrap();
                let r = Approval {
                    message: Some("for the nursery".into()),
                    ..add_request(new_id("crib-request"), c.b, crib, ops::expense_add_data(&e))
                };
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, _, fixes| {
                let crib = exp(c, new_id("crib"));
                assert_eq!(crib.status, ItemStatus::PendingApproval);
                assert!(fixes.contains(&Fix::Remove {
                    collection: Collection::Approvals,
                    key: new_id("crib-request").to_string()
                }));
                assert!(
                    read::read_approval(&c.server, &new_id("crib-request").to_string())
                        .unwrap()
                        .is_none()
                );
                let reqs = requests_for(c, crib.id);
                assert_eq!(reqs.len(), 1, "{reqs:?}");
                let r = &reqs[0];
                assert_eq!(r.id, add_request_id(crib.id));
                assert_eq!(r.request_type, RequestType::ExpenseAdd);
                assert_eq!(r.requested_by, c.b);
                assert_eq!(r.status, ApprovalStatus::Pending);
                assert_eq!(r.request_data, ops::expense_add_data(&crib));
                assert_eq!(r.message.as_deref(), Some("for the nursery"));
                assert_eq!(r.created_at, T0);
            },
        },
        Case {
            name: "pending expense archived raw, its request left → request withdrawn",
            author: by_a,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.car);
                tx.put(&o, "status", "archived").unwrap();
            },
            expect: |c, ids, _| {
                assert_eq!(exp(c, ids.car).status, ItemStatus::Archived);
                assert!(
                    requests_for(c, ids.car).is_empty(),
                    "nothing left to approve"
                );
            },
        },
        Case {
            name: "add request for the partner's active expense → removed",
            author: by_b,
            write: |tx, c, ids| {
                let rent = exp(c, ids.rent);
                let r = add_request(
                    add_request_id(ids.rent),
                    c.b,
                    ids.rent,
                    ops::expense_add_data(&rent),
                );
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, ids, _| {
                assert!(requests_for(c, ids.rent).is_empty());
                assert_eq!(exp(c, ids.rent).status, ItemStatus::Active);
            },
        },
        Case {
            name: "add request for an archived expense → removed",
            author: by_a,
            write: |tx, c, ids| {
                let old = exp(c, ids.old);
                let r = add_request(
                    add_request_id(ids.old),
                    c.a,
                    ids.old,
                    ops::expense_add_data(&old),
                );
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, ids, _| {
                assert!(requests_for(c, ids.old).is_empty());
                assert_eq!(exp(c, ids.old).status, ItemStatus::Archived);
            },
        },
        Case {
            name: "add request with a small active expense of one's own → removed",
            author: by_b,
            write: |tx, c, _| {
                raw_expense(tx, new_id("small"), c.b, 500, "active");
                let small = Expense {
                    id: new_id("small"),
                    name: "Raw".into(),
                    amount: MinorUnits(500),
                    category: Category::Other,
                    frequency: Frequency::Monthly,
                    added_by: c.b,
                    status: ItemStatus::Active,
                    created_at: T0,
                    updated_at: T0,
                };
                let r = add_request(
                    add_request_id(new_id("small")),
                    c.b,
                    new_id("small"),
                    ops::expense_add_data(&small),
                );
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, _, _| {
                assert!(requests_for(c, new_id("small")).is_empty());
                assert_eq!(exp(c, new_id("small")).status, ItemStatus::Active);
            },
        },
        Case {
            name: "edit request proposing the current values → removed",
            author: by_b,
            write: |tx, c, ids| {
                let same = ExpenseFields {
                    name: Some("Rent".into()),
                    amount: Some(MinorUnits(5_000)),
                    ..Default::default()
                };
                let r = edit_request(new_id("same"), c.b, ids.rent, RequestData::Expense(same));
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, ids, fixes| {
                assert!(fixes.contains(&Fix::Remove {
                    collection: Collection::Approvals,
                    key: new_id("same").to_string()
                }));
                assert!(requests_for(c, ids.rent).is_empty());
                assert_eq!(exp(c, ids.rent).amount, MinorUnits(5_000));
            },
        },
        Case {
            name: "edit request for an archived expense → removed",
            author: by_b,
            write: |tx, c, ids| {
                let f = ExpenseFields {
                    amount: Some(MinorUnits(2_000)),
                    ..Default::default()
                };
                let r = edit_request(new_id("dead-edit"), c.b, ids.old, RequestData::Expense(f));
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, ids, _| {
                assert!(
                    read::read_approval(&c.server, &new_id("dead-edit").to_string())
                        .unwrap()
                        .is_none()
                );
                assert!(requests_for(c, ids.old).is_empty());
            },
        },
        Case {
            name: "new expense dated a century ahead → created_at, updated_at = receive time",
            author: by_b,
            write: |tx, c, _| {
                raw_expense(tx, new_id("future"), c.b, 1_000, "active");
                let o = obj_of(tx, Collection::Expenses, new_id("future"));
                tx.put(&o, "created_at", ahead()).unwrap();
                tx.put(&o, "updated_at", ahead()).unwrap();
            },
            expect: |c, _, _| {
                let e = exp(c, new_id("future"));
                assert_eq!((e.created_at, e.updated_at), (T0, T0));
                assert_eq!(
                    (e.status, e.amount),
                    (ItemStatus::Active, MinorUnits(1_000))
                );
            },
        },
        Case {
            name: "new goal dated a century ahead → created_at, updated_at = receive time",
            author: by_a,
            write: |tx, c, _| {
                let g = Goal {
                    id: new_id("future-goal"),
                    name: "Moon trip".into(),
                    target_amount: MinorUnits(1_000_000),
                    saved_amount: MinorUnits(0),
                    goal_type: GoalType::Vacation,
                    priority: Priority::Low,
                    added_by: c.a,
                    status: ItemStatus::PendingApproval,
                    created_at: Millis(ahead()),
                    updated_at: Millis(ahead()),
                };
                write::put_goal(tx, &g).unwrap();
                let r = add_request(add_request_id(g.id), c.a, g.id, ops::goal_add_data(&g));
                write::put_approval(
                    tx,
                    &Approval {
                        request_type: RequestType::GoalAdd,
                        ..r
                    },
                )
                .unwrap();
            },
            expect: |c, _, _| {
                let g = gl(c, new_id("future-goal"));
                assert_eq!((g.created_at, g.updated_at), (T0, T0));
                assert_eq!(g.status, ItemStatus::PendingApproval);
            },
        },
        Case {
            name: "new message dated a century ahead → created_at = receive time",
            author: by_b,
            write: |tx, c, _| {
                let m = Message {
                    id: new_id("future-msg"),
                    sender_id: c.b,
                    text: "pinned forever".into(),
                    message_type: MessageType::Text,
                    read_by_recipient: false,
                    created_at: Millis(ahead()),
                };
                write::put_message(tx, &m).unwrap();
            },
            expect: |c, _, _| {
                let m = msg(c, new_id("future-msg"));
                assert_eq!(m.created_at, T0);
                assert_eq!((m.sender_id, m.text.as_str()), (c.b, "pinned forever"));
            },
        },
        Case {
            name: "new goal contribution dated a century ahead → created_at = receive time",
            author: by_b,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.increment(&o, "saved_amount", 2_500).unwrap();
                write::put_goal_contribution(
                    tx,
                    &GoalContribution {
                        id: new_id("gc-future"),
                        goal_id: ids.holiday,
                        user_id: c.b,
                        amount: MinorUnits(2_500),
                        created_at: Millis(ahead()),
                    },
                )
                .unwrap();
            },
            expect: |c, ids, _| {
                let gc = read::read_goal_contribution(&c.server, &new_id("gc-future").to_string())
                    .unwrap()
                    .unwrap();
                assert_eq!(gc.created_at, T0);
                assert_eq!((gc.user_id, gc.amount), (c.b, MinorUnits(2_500)));
                assert_eq!(gl(c, ids.holiday).saved_amount, MinorUnits(2_500));
            },
        },
        Case {
            name: "new approval request dated a century ahead → created_at = receive time",
            author: by_b,
            write: |tx, c, ids| {
                let f = ExpenseFields {
                    amount: Some(MinorUnits(6_000)),
                    ..Default::default()
                };
                let r = Approval {
                    created_at: Millis(ahead()),
                    ..edit_request(new_id("future-req"), c.b, ids.rent, RequestData::Expense(f))
                };
                write::put_approval(tx, &r).unwrap();
            },
            expect: |c, ids, _| {
                let r = appr(c, new_id("future-req"));
                assert_eq!(r.created_at, T0);
                assert_eq!(r.status, ApprovalStatus::Pending);
                assert_eq!(
                    r.request_data,
                    RequestData::Expense(ExpenseFields {
                        amount: Some(MinorUnits(6_000)),
                        ..Default::default()
                    })
                );
                assert_eq!(exp(c, ids.rent).amount, MinorUnits(5_000));
            },
        },
        Case {
            name: "partner's request answered, responded_at a century ahead → receive time",
            author: by_b,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Approvals, ids.car_request);
                tx.put(&o, "status", "approved").unwrap();
                tx.put(&o, "responded_by", c.b.to_string()).unwrap();
                tx.put(&o, "responded_at", ahead()).unwrap();
                let e = obj_of(tx, Collection::Expenses, ids.car);
                tx.put(&e, "status", "active").unwrap();
            },
            expect: |c, ids, _| {
                let r = appr(c, ids.car_request);
                assert_eq!(r.status, ApprovalStatus::Approved);
                assert_eq!(r.responded_by, Some(c.b));
                assert_eq!(r.responded_at, Some(T0));
                assert_eq!(exp(c, ids.car).status, ItemStatus::Active);
            },
        },
        Case {
            name: "own month marked paid a century ahead → paid at the receive time",
            author: by_a,
            write: |tx, c, ids| {
                let o = obj_of(tx, Collection::Contributions, ids.month);
                let paid = read::map_at(tx, &o, "paid").unwrap();
                tx.put(&paid, c.a.to_string(), ahead()).unwrap();
            },
            expect: |c, ids, _| {
                let m = month(c, ids.month);
                assert_eq!(m.paid[&c.a], Some(T0));
                assert_eq!(m.paid[&c.b], None);
            },
        },
        Case {
            name: "expense archived with updated_at a century ahead → updated_at = receive time",
            author: by_b,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Expenses, ids.rent);
                tx.put(&o, "status", "archived").unwrap();
                tx.put(&o, "updated_at", ahead()).unwrap();
            },
            expect: |c, ids, _| {
                let rent = exp(c, ids.rent);
                assert_eq!(rent.status, ItemStatus::Archived);
                assert_eq!(rent.updated_at, T0);
                assert_eq!(rent.created_at, T0);
            },
        },
        Case {
            name: "goal renamed, updated_at a century ahead → edit request, updated_at = now",
            author: by_b,
            write: |tx, _, ids| {
                let o = obj_of(tx, Collection::Goals, ids.holiday);
                tx.put(&o, "name", "Holiday in Rome").unwrap();
                tx.put(&o, "updated_at", ahead()).unwrap();
            },
            expect: |c, ids, _| {
                let g = gl(c, ids.holiday);
                assert_eq!(g.name, "Holiday");
                assert_eq!(g.updated_at, T0);
                let edit = requests_for(c, ids.holiday)
                    .into_iter()
                    .find(|r| r.request_type == RequestType::GoalEdit)
                    .expect("edit request");
                assert_eq!(
                    edit.request_data,
                    RequestData::Goal(GoalFields {
                        name: Some("Holiday in Rome".into()),
                        ..Default::default()
                    })
                );
            },
        },
    ]
}

#[test]
fn every_forbidden_change_is_compensated_as_the_policy_says() {
    let cases = forbidden_cases();
    assert!(cases.len() >= 59, "the table holds {} cases", cases.len());
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
        (
            "pending expense withdrawn by archiving it through the operation",
            |c, ids| {
                let mut cl = c.client(c.a);
                op(&mut cl, |tx| ops::archive_expense(tx, &c.ctx(c.a), ids.car));
                assert!(
                    read::read_approval(&cl, &ids.car_request.to_string())
                        .unwrap()
                        .is_none(),
                    "the operation withdraws the request"
                );
                (cl, c.a)
            },
        ),
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

// ---- writes into a collection (or inner map, or entity) the partner replaced -------------

/// Merges `replacer`'s replica and then `worker`'s into the couple's server, and in the
/// opposite order into a second server forked from the same state; `expect` and every
/// invariant must hold on each, and once the two servers exchanged documents they hold the same
/// state, which still satisfies `expect`.
fn merge_both_orders(
    c: &mut Couple,
    replacer: (&Automerge, UserId),
    worker: (&Automerge, UserId),
    expect: impl Fn(&str, &Automerge),
) {
    let members = [c.a, c.b];
    let mut second = c.server.clone().with_actor(server_actor([2; 8]));
    c.merge_from(replacer.0, replacer.1);
    c.merge_from(worker.0, worker.1);
    merge_into(&mut second, worker.0, worker.1);
    merge_into(&mut second, replacer.0, replacer.1);
    for (order, server) in [("replacer first", &c.server), ("worker first", &second)] {
        expect(order, server);
        let violations = invariant_violations(server, &members);
        assert!(violations.is_empty(), "{order}: {violations:?}");
    }
    let mut first = c.server.clone();
    first
        .merge(&mut second.clone())
        .expect("merge the second server");
    second
        .merge(&mut first.clone())
        .expect("merge the first server");
    assert_eq!(
        read_document(&first).expect("readable"),
        read_document(&second).expect("readable"),
        "the two servers disagree after exchanging documents"
    );
    expect("after the servers exchanged documents", &first);
    let violations = invariant_violations(&first, &members);
    assert!(violations.is_empty(), "exchanged: {violations:?}");
}

fn expense_in(doc: &Automerge, id: EntityId) -> Option<Expense> {
    read::read_expense(doc, &id.to_string()).expect("readable expense")
}

fn goal_in(doc: &Automerge, id: EntityId) -> Option<Goal> {
    read::read_goal(doc, &id.to_string()).expect("readable goal")
}

fn applied(o: Outcome) -> EntityId {
    match o {
        Outcome::Applied { id } => id,
        o => panic!("{o:?}"),
    }
}

#[test]
fn an_expense_added_offline_while_the_partner_replaced_the_collection_reaches_the_current_one() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        tx.put_object(ROOT, keys::EXPENSES, ObjType::Map)
            .map(|_| ())
    });
    let mut worker = c.client(b);
    let milk = applied(op(&mut worker, |tx| {
        ops::add_expense(tx, &c.ctx(b), &expense("Milk", 250))
    }));
    let sofa = match op(&mut worker, |tx| {
        ops::add_expense(tx, &c.ctx(b), &expense("Sofa", 20_000))
    }) {
        Outcome::ApprovalRequested { target_id, .. } => target_id,
        o => panic!("{o:?}"),
    };
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let milk = expense_in(s, milk).unwrap_or_else(|| panic!("{order}: milk lost"));
        assert_eq!(
            (milk.name.as_str(), milk.amount, milk.status, milk.added_by),
            ("Milk", MinorUnits(250), ItemStatus::Active, b),
            "{order}"
        );
        let sofa = expense_in(s, sofa).unwrap_or_else(|| panic!("{order}: sofa lost"));
        assert_eq!(sofa.status, ItemStatus::PendingApproval, "{order}");
        let request = read::read_approval(s, &add_request_id(sofa.id).to_string())
            .unwrap()
            .unwrap_or_else(|| panic!("{order}: sofa's request lost"));
        assert_eq!(
            request.request_data,
            ops::expense_add_data(&sofa),
            "{order}"
        );
        // The baseline is restored around them.
        let rent = expense_in(s, ids.rent).unwrap_or_else(|| panic!("{order}: rent lost"));
        assert_eq!(
            (rent.name.as_str(), rent.amount),
            ("Rent", MinorUnits(5_000))
        );
        let car = expense_in(s, ids.car).unwrap_or_else(|| panic!("{order}: car lost"));
        assert_eq!(car.status, ItemStatus::PendingApproval, "{order}");
        let old = expense_in(s, ids.old).unwrap_or_else(|| panic!("{order}: old lost"));
        assert_eq!(old.status, ItemStatus::Archived, "{order}");
        assert_eq!(
            read::collection_keys(s, Collection::Expenses).len(),
            5,
            "{order}"
        );
    });
}

#[test]
fn a_goal_proposed_offline_while_the_partner_replaced_the_goals_reaches_the_current_ones() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        tx.put_object(ROOT, keys::GOALS, ObjType::Map).map(|_| ())
    });
    let mut worker = c.client(b);
    let bike = match op(&mut worker, |tx| {
        ops::add_goal(tx, &c.ctx(b), &goal("Bike", 80_000))
    }) {
        Outcome::ApprovalRequested { target_id, .. } => target_id,
        o => panic!("{o:?}"),
    };
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let bike = goal_in(s, bike).unwrap_or_else(|| panic!("{order}: bike lost"));
        assert_eq!(
            (
                bike.name.as_str(),
                bike.target_amount,
                bike.status,
                bike.added_by
            ),
            ("Bike", MinorUnits(80_000), ItemStatus::PendingApproval, b),
            "{order}"
        );
        let o = obj_of(s, Collection::Goals, bike.id);
        assert!(read::is_counter(s, &o, "saved_amount"), "{order}");
        let holiday = goal_in(s, ids.holiday).unwrap_or_else(|| panic!("{order}: holiday lost"));
        assert_eq!(holiday.status, ItemStatus::Active, "{order}");
        let house = goal_in(s, ids.house).unwrap_or_else(|| panic!("{order}: house lost"));
        assert_eq!(house.status, ItemStatus::PendingApproval, "{order}");
    });
}

#[test]
fn a_contribution_logged_offline_while_the_partner_replaced_the_log_counts_in_the_current_one() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    // A contribution the server already holds, so the replacement removes something.
    let mut ca = c.client(a);
    let first = applied(op(&mut ca, |tx| {
        ops::contribute_to_goal(tx, &c.ctx(a), ids.holiday, MinorUnits(1_000))
    }));
    assert!(c.sync(&mut ca, a).fixes.is_empty());
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        tx.put_object(ROOT, keys::GOAL_CONTRIBUTIONS, ObjType::Map)
            .map(|_| ())
    });
    let mut worker = c.client(b);
    let second = applied(op(&mut worker, |tx| {
        ops::contribute_to_goal(tx, &c.ctx(b), ids.holiday, MinorUnits(2_500))
    }));
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let logged = |id: EntityId| {
            read::read_goal_contribution(s, &id.to_string())
                .unwrap()
                .unwrap_or_else(|| panic!("{order}: contribution {id} lost"))
        };
        let mine = logged(second);
        assert_eq!(
            (mine.user_id, mine.amount),
            (b, MinorUnits(2_500)),
            "{order}"
        );
        let theirs = logged(first);
        assert_eq!(
            (theirs.user_id, theirs.amount),
            (a, MinorUnits(1_000)),
            "{order}"
        );
        let holiday = goal_in(s, ids.holiday).unwrap();
        assert_eq!(holiday.saved_amount, MinorUnits(3_500), "{order}");
    });
}

#[test]
fn marking_paid_offline_while_the_partner_replaced_the_paid_map_reaches_the_current_one() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        let o = obj_of(tx, Collection::Contributions, ids.month);
        tx.put_object(&o, "paid", ObjType::Map).map(|_| ())
    });
    let mut worker = c.client(b);
    worker
        .transact(|tx| ops::mark_paid(tx, &c.ctx(b), ids.month))
        .expect("mark paid");
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let m = read::read_month(s, &ids.month.to_string())
            .unwrap()
            .unwrap();
        assert_eq!(m.paid.get(&b), Some(&Some(T0)), "{order}: {m:?}");
        assert_eq!(m.paid.get(&a), Some(&None), "{order}: {m:?}");
        assert_eq!(m.amounts[&a], MinorUnits(3_333), "{order}");
        assert_eq!(m.amounts[&b], MinorUnits(6_667), "{order}");
        assert_eq!(m.total_required, MinorUnits(10_000), "{order}");
    });
}

#[test]
fn archiving_offline_an_expense_the_partner_replaced_whole_archives_the_current_one() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        let coll = read::collection_obj(tx, Collection::Expenses).unwrap();
        tx.put_object(&coll, ids.rent.to_string(), ObjType::Map)
            .map(|_| ())
    });
    let mut worker = c.client(b);
    op(&mut worker, |tx| {
        ops::archive_expense(tx, &c.ctx(b), ids.rent)
    });
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let rent = expense_in(s, ids.rent).unwrap_or_else(|| panic!("{order}: rent lost"));
        assert_eq!(rent.status, ItemStatus::Archived, "{order}");
        assert_eq!(
            (rent.name.as_str(), rent.amount, rent.added_by),
            ("Rent", MinorUnits(5_000), a),
            "{order}"
        );
    });
}

#[test]
fn an_edit_written_offline_into_a_goal_the_partner_replaced_whole_becomes_a_request() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        let coll = read::collection_obj(tx, Collection::Goals).unwrap();
        tx.put_object(&coll, ids.holiday.to_string(), ObjType::Map)
            .map(|_| ())
    });
    let mut worker = c.client(b);
    raw(&mut worker, |tx| {
        let o = obj_of(tx, Collection::Goals, ids.holiday);
        tx.put(&o, "name", "Holiday in Rome")
    });
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let holiday = goal_in(s, ids.holiday).unwrap_or_else(|| panic!("{order}: holiday lost"));
        assert_eq!(
            (holiday.name.as_str(), holiday.target_amount, holiday.status),
            ("Holiday", MinorUnits(200_000), ItemStatus::Active),
            "{order}"
        );
        let o = obj_of(s, Collection::Goals, ids.holiday);
        assert!(read::is_counter(s, &o, "saved_amount"), "{order}");
        let edits: Vec<Approval> = read_document(s)
            .unwrap()
            .approvals
            .into_iter()
            .filter(|r| r.target_id == ids.holiday && r.request_type == RequestType::GoalEdit)
            .collect();
        assert_eq!(edits.len(), 1, "{order}: {edits:?}");
        assert_eq!(edits[0].requested_by, b, "{order}");
        assert_eq!(edits[0].status, ApprovalStatus::Pending, "{order}");
        assert_eq!(
            edits[0].request_data,
            RequestData::Goal(GoalFields {
                name: Some("Holiday in Rome".into()),
                ..Default::default()
            }),
            "{order}"
        );
    });
}

#[test]
fn a_message_sent_offline_while_the_partner_replaced_the_messages_reaches_the_current_ones() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        tx.put_object(ROOT, keys::MESSAGES, ObjType::Map)
            .map(|_| ())
    });
    let mut worker = c.client(b);
    let sent = applied(op(&mut worker, |tx| {
        ops::send_message(tx, &c.ctx(b), "dinner at eight?")
    }));
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let m = read::read_message(s, &sent.to_string())
            .unwrap()
            .unwrap_or_else(|| panic!("{order}: message lost"));
        assert_eq!(
            (m.sender_id, m.text.as_str()),
            (b, "dinner at eight?"),
            "{order}"
        );
        for (id, text) in [(ids.to_b, "hello"), (ids.to_a, "hi back")] {
            let m = read::read_message(s, &id.to_string())
                .unwrap()
                .unwrap_or_else(|| panic!("{order}: {text} lost"));
            assert_eq!(m.text, text, "{order}");
        }
    });
}

#[test]
fn approving_offline_a_request_whose_collection_the_partner_replaced_applies_the_approval() {
    let (mut c, ids) = baseline();
    let (a, b) = (c.a, c.b);
    let mut replacer = c.client(a);
    raw(&mut replacer, |tx| {
        tx.put_object(ROOT, keys::APPROVALS, ObjType::Map)
            .map(|_| ())
    });
    let mut worker = c.client(b);
    op(&mut worker, |tx| {
        ops::approve(tx, &c.ctx(b), ids.car_request)
    });
    merge_both_orders(&mut c, (&replacer, a), (&worker, b), |order, s| {
        let r = read::read_approval(s, &ids.car_request.to_string())
            .unwrap()
            .unwrap_or_else(|| panic!("{order}: the car's request lost"));
        assert_eq!(
            (r.status, r.responded_by, r.responded_at),
            (ApprovalStatus::Approved, Some(b), Some(T0)),
            "{order}"
        );
        let car = expense_in(s, ids.car).unwrap();
        assert_eq!(car.status, ItemStatus::Active, "{order}");
        let house = read::read_approval(s, &add_request_id(ids.house).to_string())
            .unwrap()
            .unwrap_or_else(|| panic!("{order}: the house's request lost"));
        assert_eq!(house.status, ApprovalStatus::Pending, "{order}");
    });
}
