//! The document as other writers leave it: stock JS clients (Text strings, Timestamps,
//! Counters), newer clients (unknown keys, a newer schema), persistence, creation input, and
//! materialization into rows with the currency's exact scale.

use crate::common::*;
use automerge::transaction::Transactable;
use automerge::{Automerge, AutomergeError, ObjId, ObjType, ScalarValue, ROOT};
use splitsave_sync_core::document::{
    new_partnership_document, read_document, DocumentError, NewMember, NewPartnership,
};
use splitsave_sync_core::enforce::Fix;
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::materialize::{all_rows, rows_for, Row, RowChange};
use splitsave_sync_core::money::{Currency, MinorUnits};
use splitsave_sync_core::ops::{self, Outcome};
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::Month;
use splitsave_sync_core::strings::Holder;
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::touched::Touched;

type Tx<'a> = automerge::transaction::Transaction<'a>;

/// A string the way `@automerge/automerge` 3.x writes a JS `string`: a Text object.
fn js_text(tx: &mut Tx<'_>, obj: &ObjId, key: &str, s: &str) -> Result<(), AutomergeError> {
    let t = tx.put_object(obj, key, ObjType::Text)?;
    tx.splice_text(&t, 0, 0, s)
}

/// A time the way JS writes a `Date`: an Automerge Timestamp of milliseconds.
fn js_date(tx: &mut Tx<'_>, obj: &ObjId, key: &str, at: Millis) -> Result<(), AutomergeError> {
    tx.put(obj, key, ScalarValue::Timestamp(at.0))
}

fn id(tag: &str) -> EntityId {
    EntityId::derived(&["document-test", tag])
}

fn uid(tag: &str) -> UserId {
    UserId(id(tag).0)
}

struct JsIds {
    pid: PartnershipId,
    a: UserId,
    b: UserId,
    expense: EntityId,
    goal: EntityId,
    contribution: EntityId,
    request: EntityId,
    message: EntityId,
    month: Month,
}

fn js_ids() -> JsIds {
    JsIds {
        pid: PartnershipId(id("partnership").0),
        a: uid("a"),
        b: uid("b"),
        expense: id("expense"),
        goal: id("goal"),
        contribution: id("contribution"),
        request: id("request"),
        message: id("message"),
        month: Month::parse("2026-11").unwrap(),
    }
}

/// A whole schema-1 document written only the way a stock JS client writes values.
fn js_document(ids: &JsIds) -> Automerge {
    let t = T0;
    let mut doc = Automerge::new();
    doc.transact::<_, _, AutomergeError>(|tx| {
        tx.put(ROOT, "schema", 1)?;
        let p = tx.put_object(ROOT, "partnership", ObjType::Map)?;
        js_text(tx, &p, "id", &ids.pid.to_string())?;
        js_text(tx, &p, "currency", "USD")?;
        tx.put(&p, "approval_threshold", 10_000)?;
        js_text(tx, &p, "status", "active")?;

        let members = tx.put_object(ROOT, "members", ObjType::Map)?;
        for (user, name, income, slot) in
            [(ids.a, "Alex", Some(300_000), 1), (ids.b, "Sam", None, 2)]
        {
            let m = tx.put_object(&members, user.to_string(), ObjType::Map)?;
            js_text(tx, &m, "name", name)?;
            match income {
                Some(i) => tx.put(&m, "income", i)?,
                None => tx.put(&m, "income", ScalarValue::Null)?,
            }
            tx.put(&m, "slot", slot)?;
        }

        let expenses = tx.put_object(ROOT, "expenses", ObjType::Map)?;
        let e = tx.put_object(&expenses, ids.expense.to_string(), ObjType::Map)?;
        js_text(tx, &e, "name", "Rent")?;
        tx.put(&e, "amount", 95_000)?;
        js_text(tx, &e, "category", "housing")?;
        js_text(tx, &e, "frequency", "monthly")?;
        js_text(tx, &e, "added_by", &ids.a.to_string())?;
        js_text(tx, &e, "status", "active")?;
        js_date(tx, &e, "created_at", t)?;
        js_date(tx, &e, "updated_at", Millis(t.0 + 5))?;

        let goals = tx.put_object(ROOT, "goals", ObjType::Map)?;
        let g = tx.put_object(&goals, ids.goal.to_string(), ObjType::Map)?;
        js_text(tx, &g, "name", "Holiday")?;
        tx.put(&g, "target_amount", 200_000)?;
        tx.put(&g, "saved_amount", ScalarValue::counter(5_000))?;
        js_text(tx, &g, "goal_type", "vacation")?;
        js_text(tx, &g, "priority", "high")?;
        js_text(tx, &g, "added_by", &ids.b.to_string())?;
        js_text(tx, &g, "status", "active")?;
        js_date(tx, &g, "created_at", t)?;
        js_date(tx, &g, "updated_at", t)?;

        let gcs = tx.put_object(ROOT, "goal_contributions", ObjType::Map)?;
        let c = tx.put_object(&gcs, ids.contribution.to_string(), ObjType::Map)?;
        js_text(tx, &c, "goal_id", &ids.goal.to_string())?;
        js_text(tx, &c, "user_id", &ids.a.to_string())?;
        tx.put(&c, "amount", 5_000)?;
        js_date(tx, &c, "created_at", t)?;

        let approvals = tx.put_object(ROOT, "approvals", ObjType::Map)?;
        let r = tx.put_object(&approvals, ids.request.to_string(), ObjType::Map)?;
        js_text(tx, &r, "requested_by", &ids.b.to_string())?;
        js_text(tx, &r, "request_type", "expense_edit")?;
        js_text(tx, &r, "target_id", &ids.expense.to_string())?;
        let data = tx.put_object(&r, "request_data", ObjType::Map)?;
        tx.put(&data, "amount", 99_000)?;
        js_text(tx, &data, "name", "Rent and bills")?;
        js_text(tx, &r, "message", "the landlord wrote")?;
        js_text(tx, &r, "status", "pending")?;
        tx.put(&r, "responded_by", ScalarValue::Null)?;
        tx.put(&r, "responded_at", ScalarValue::Null)?;
        js_date(tx, &r, "created_at", t)?;

        let messages = tx.put_object(ROOT, "messages", ObjType::Map)?;
        let m = tx.put_object(&messages, ids.message.to_string(), ObjType::Map)?;
        js_text(tx, &m, "sender_id", &ids.b.to_string())?;
        js_text(tx, &m, "text", "Dinner at eight? 🍝")?;
        js_text(tx, &m, "message_type", "text")?;
        tx.put(&m, "read_by_recipient", false)?;
        js_date(tx, &m, "created_at", t)?;

        let months = tx.put_object(ROOT, "contributions", ObjType::Map)?;
        let mo = tx.put_object(&months, ids.month.to_string(), ObjType::Map)?;
        tx.put(&mo, "total_required", 10_000)?;
        let amounts = tx.put_object(&mo, "amounts", ObjType::Map)?;
        tx.put(&amounts, ids.a.to_string(), 3_333)?;
        tx.put(&amounts, ids.b.to_string(), 6_667)?;
        let paid = tx.put_object(&mo, "paid", ObjType::Map)?;
        js_date(tx, &paid, &ids.a.to_string(), Millis(t.0 + 60_000))?;
        tx.put(&paid, ids.b.to_string(), ScalarValue::Null)?;
        Ok(())
    })
    .unwrap();
    doc
}

#[test]
fn a_document_written_by_a_stock_js_client_reads_as_the_typed_state() {
    let ids = js_ids();
    let s = read_document(&js_document(&ids)).unwrap();
    assert!(s.malformed.is_empty(), "{:?}", s.malformed);
    assert_eq!(s.partnership.id, ids.pid);
    assert_eq!(s.partnership.currency, Currency::USD);
    assert_eq!(s.partnership.approval_threshold, MinorUnits(10_000));
    assert_eq!(s.partnership.status, PartnershipStatus::Active);
    assert_eq!(s.members.len(), 2);
    assert_eq!((s.members[0].user_id, s.members[0].slot), (ids.a, 1));
    assert_eq!(s.members[0].name, "Alex");
    assert_eq!(s.members[1].income, None);

    assert_eq!(
        s.expenses,
        vec![Expense {
            id: ids.expense,
            name: "Rent".into(),
            amount: MinorUnits(95_000),
            category: Category::Housing,
            frequency: Frequency::Monthly,
            added_by: ids.a,
            status: ItemStatus::Active,
            created_at: T0,
            updated_at: Millis(T0.0 + 5),
        }]
    );
    let g = &s.goals[0];
    assert_eq!(g.name, "Holiday");
    assert_eq!(g.saved_amount, MinorUnits(5_000));
    assert_eq!(
        (g.goal_type, g.priority),
        (GoalType::Vacation, Priority::High)
    );
    assert_eq!(s.goal_contributions[0].user_id, ids.a);
    assert_eq!(s.goal_contributions[0].amount, MinorUnits(5_000));

    let r = &s.approvals[0];
    assert_eq!(r.request_type, RequestType::ExpenseEdit);
    assert_eq!(r.requested_by, ids.b);
    assert_eq!(r.message.as_deref(), Some("the landlord wrote"));
    assert_eq!(
        r.request_data,
        RequestData::Expense(ExpenseFields {
            name: Some("Rent and bills".into()),
            amount: Some(MinorUnits(99_000)),
            ..Default::default()
        })
    );
    assert_eq!((r.responded_by, r.responded_at), (None, None));

    assert_eq!(s.messages[0].text, "Dinner at eight? 🍝");
    assert_eq!(s.messages[0].sender_id, ids.b);
    assert_eq!(s.messages[0].created_at, T0);
    let month = &s.contributions[0];
    assert_eq!(month.month, ids.month);
    assert_eq!(month.paid[&ids.a], Some(Millis(T0.0 + 60_000)));
    assert_eq!(month.paid[&ids.b], None);
    assert_eq!(month.amounts[&ids.b], MinorUnits(6_667));
}

/// Writes a JS-style expense and message: free text as Text, times as Timestamps, and the
/// identifiers and enums as Text when `enums_as_text` (a plain JS string assigned to them), as
/// scalar strings otherwise (`new ImmutableString(…)`, the declared type).
fn js_style_expense_and_message(
    client: &mut Automerge,
    author: UserId,
    expense_id: EntityId,
    message_id: EntityId,
    enums_as_text: bool,
) {
    let atom = |tx: &mut Tx<'_>, obj: &ObjId, key: &str, s: &str| {
        if enums_as_text {
            js_text(tx, obj, key, s)
        } else {
            tx.put(obj, key, s)
        }
    };
    client
        .transact::<_, _, AutomergeError>(|tx| {
            let expenses = obj_of_collection(tx, Collection::Expenses);
            let e = tx.put_object(&expenses, expense_id.to_string(), ObjType::Map)?;
            js_text(tx, &e, "name", "Internet")?;
            tx.put(&e, "amount", 4_500)?;
            atom(tx, &e, "category", "utilities")?;
            atom(tx, &e, "frequency", "monthly")?;
            atom(tx, &e, "added_by", &author.to_string())?;
            atom(tx, &e, "status", "active")?;
            js_date(tx, &e, "created_at", T0)?;
            js_date(tx, &e, "updated_at", T0)?;

            let messages = obj_of_collection(tx, Collection::Messages);
            let m = tx.put_object(&messages, message_id.to_string(), ObjType::Map)?;
            atom(tx, &m, "sender_id", &author.to_string())?;
            js_text(tx, &m, "text", "I added the internet bill")?;
            atom(tx, &m, "message_type", "text")?;
            tx.put(&m, "read_by_recipient", false)?;
            js_date(tx, &m, "created_at", T0)?;
            Ok(())
        })
        .unwrap();
}

/// How `collection.<key>.<field>` is stored: "text", "scalar" or something else.
fn stored_as(doc: &Automerge, c: Collection, key: EntityId, field: &str) -> &'static str {
    use automerge::{ReadDoc, Value};
    let obj = splitsave_sync_core::read::entity_obj(doc, c, &key.to_string())
        .unwrap()
        .expect("entity present");
    match doc.get(&obj, field).unwrap() {
        Some((Value::Object(ObjType::Text), _)) => "text",
        Some((Value::Scalar(s), _)) if s.is_str() => "scalar",
        _ => "other",
    }
}

#[test]
fn a_js_write_in_the_declared_types_is_not_compensated() {
    let mut c = Couple::new();
    let (b, a) = (c.b, c.a);
    let mut client = c.client(b);
    let (expense_id, message_id) = (id("js-expense"), id("js-message"));
    js_style_expense_and_message(&mut client, b, expense_id, message_id, false);
    let e = c.merge_from(&client, b);
    assert_eq!(e.fixes, vec![], "a valid JS-style write was compensated");
    let s = c.state();
    let expense = s.expenses.iter().find(|x| x.id == expense_id).unwrap();
    assert_eq!(expense.name, "Internet");
    assert_eq!(expense.status, ItemStatus::Active);
    assert_eq!(expense.category, Category::Utilities);
    let message = s.messages.iter().find(|x| x.id == message_id).unwrap();
    assert_eq!(message.sender_id, b);
    assert_eq!(message.text, "I added the internet bill");
    assert!(invariant_violations(&c.server, &[a, b]).is_empty());
}

#[test]
fn identifiers_and_enums_written_as_text_keep_their_values_in_the_declared_type() {
    let mut c = Couple::new();
    let (b, a) = (c.b, c.a);
    let mut client = c.client(b);
    let (expense_id, message_id) = (id("js-expense"), id("js-message"));
    js_style_expense_and_message(&mut client, b, expense_id, message_id, true);
    let e = c.merge_from(&client, b);
    assert_eq!(
        e.fixes,
        vec![
            Fix::NormalizeStrings(Holder::Entity(Collection::Expenses, expense_id.to_string())),
            Fix::NormalizeStrings(Holder::Entity(Collection::Messages, message_id.to_string())),
        ],
        "only the string types are corrected"
    );
    let s = c.state();
    let expense = s.expenses.iter().find(|x| x.id == expense_id).unwrap();
    assert_eq!(
        (expense.name.as_str(), expense.status, expense.category),
        ("Internet", ItemStatus::Active, Category::Utilities)
    );
    for field in ["category", "frequency", "added_by", "status"] {
        assert_eq!(
            stored_as(&c.server, Collection::Expenses, expense_id, field),
            "scalar",
            "expenses.{field}"
        );
    }
    assert_eq!(
        stored_as(&c.server, Collection::Expenses, expense_id, "name"),
        "text"
    );
    for (field, kind) in [
        ("sender_id", "scalar"),
        ("message_type", "scalar"),
        ("text", "text"),
    ] {
        assert_eq!(
            stored_as(&c.server, Collection::Messages, message_id, field),
            kind,
            "messages.{field}"
        );
    }
    assert!(invariant_violations(&c.server, &[a, b]).is_empty());
}

#[test]
fn free_text_written_as_a_scalar_string_becomes_text() {
    let mut c = Couple::new();
    let b = c.b;
    let mut client = c.client(b);
    let expense_id = id("old-sdk-expense");
    client
        .transact::<_, _, ops::OpError>(|tx| {
            ops::add_expense_with_id(
                tx,
                &ops::Ctx { user: b, now: T0 },
                expense_id,
                &ops::NewExpense {
                    name: "Gym".into(),
                    amount: MinorUnits(3_000),
                    category: Category::Health,
                    frequency: Frequency::Monthly,
                },
            )?;
            // An older client wrote names as scalar strings.
            let obj = splitsave_sync_core::read::entity_obj(
                tx,
                Collection::Expenses,
                &expense_id.to_string(),
            )?
            .unwrap();
            tx.put(&obj, "name", "Gym")?;
            Ok(())
        })
        .unwrap();
    assert_eq!(
        stored_as(&client, Collection::Expenses, expense_id, "name"),
        "scalar"
    );
    let e = c.merge_from(&client, b);
    assert_eq!(
        e.fixes,
        vec![Fix::NormalizeStrings(Holder::Entity(
            Collection::Expenses,
            expense_id.to_string()
        ))]
    );
    assert_eq!(
        stored_as(&c.server, Collection::Expenses, expense_id, "name"),
        "text"
    );
    let s = c.state();
    assert_eq!(s.expenses[0].name, "Gym");
}

#[test]
fn every_writer_writes_the_declared_types() {
    use splitsave_sync_core::fields;
    use splitsave_sync_core::strings::misshapen_document;
    // The couple's document after a tour of every operation, with requests, answers, a
    // contribution and messages: nothing in it is stored in the other type.
    let mut c = Couple::new();
    let (a, b) = (c.a, c.b);
    let mut client = c.client(a);
    client
        .transact::<_, _, ops::OpError>(|tx| {
            let ctx = ops::Ctx { user: a, now: T0 };
            let big = ops::NewExpense {
                name: "Sofa".into(),
                amount: MinorUnits(90_000),
                category: Category::Housing,
                frequency: Frequency::Yearly,
            };
            ops::add_expense_with_id(tx, &ctx, id("sofa"), &big)?;
            let small = ops::NewExpense {
                name: "Tea".into(),
                amount: MinorUnits(500),
                ..big.clone()
            };
            ops::add_expense_with_id(tx, &ctx, id("tea"), &small)?;
            ops::edit_expense(
                tx,
                &ctx,
                id("tea"),
                &ExpenseFields {
                    name: Some("Green tea".into()),
                    ..Default::default()
                },
                Some("cheaper brand"),
            )?;
            ops::add_goal_with_id(
                tx,
                &ctx,
                id("trip"),
                &ops::NewGoal {
                    name: "Trip".into(),
                    target_amount: MinorUnits(100_000),
                    goal_type: GoalType::Vacation,
                    priority: Priority::High,
                },
            )?;
            ops::send_message(tx, &ctx, "hello")?;
            Ok(())
        })
        .unwrap();
    c.merge_from(&client, a);
    let mut partner = c.client(b);
    partner
        .transact::<_, _, ops::OpError>(|tx| {
            let ctx = ops::Ctx { user: b, now: T0 };
            for r in splitsave_sync_core::document::read_document(tx)
                .unwrap()
                .approvals
            {
                ops::approve(tx, &ctx, r.id)?;
            }
            ops::contribute_to_goal(tx, &ctx, id("trip"), MinorUnits(2_000))?;
            Ok(())
        })
        .unwrap();
    let e = c.merge_from(&partner, b);
    assert!(
        !e.fixes
            .iter()
            .any(|f| matches!(f, Fix::NormalizeStrings(_))),
        "{:?}",
        e.fixes
    );
    assert_eq!(misshapen_document(&c.server), vec![]);
    assert!(
        !splitsave_sync_core::strings::predates_declared_types(&c.server),
        "a new document's names are Text"
    );
    assert_eq!(
        stored_as(&c.server, Collection::Expenses, id("tea"), "name"),
        "text"
    );
    assert_eq!(
        fields::string_kind(Collection::Expenses, "name"),
        Some(fields::StringKind::Text)
    );
}

fn obj_of_collection(tx: &mut Tx<'_>, c: Collection) -> ObjId {
    splitsave_sync_core::read::collection_obj(tx, c).expect("collection present")
}

#[test]
fn unknown_keys_at_the_root_and_inside_entities_are_ignored() {
    let ids = js_ids();
    let mut doc = js_document(&ids);
    let expected = read_document(&doc).unwrap();
    doc.transact::<_, _, AutomergeError>(|tx| {
        tx.put(ROOT, "theme", "dark")?;
        let future = tx.put_object(ROOT, "budgets", ObjType::Map)?;
        tx.put(&future, "2027", 1)?;
        let e = obj_of(tx, Collection::Expenses, ids.expense);
        tx.put(&e, "notes", "split with the flatmate")?;
        let tags = tx.put_object(&e, "tags", ObjType::List)?;
        tx.insert(&tags, 0, "home")?;
        let m = obj_of(tx, Collection::Messages, ids.message);
        tx.put(&m, "reactions", 3)?;
        let p = splitsave_sync_core::read::map_at(tx, &ROOT, "partnership").unwrap();
        js_text(tx, &p, "timezone", "Europe/Paris")?;
        Ok(())
    })
    .unwrap();
    let s = read_document(&doc).unwrap();
    assert!(s.malformed.is_empty(), "{:?}", s.malformed);
    assert_eq!(s, expected);
}

#[test]
fn a_newer_schema_is_refused_with_a_clear_error() {
    let ids = js_ids();
    let mut doc = js_document(&ids);
    doc.transact::<_, _, AutomergeError>(|tx| tx.put(ROOT, "schema", 2))
        .unwrap();
    match read_document(&doc) {
        Err(DocumentError::UnsupportedSchema { found }) => assert_eq!(found, 2),
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
    let err = read_document(&doc).unwrap_err().to_string();
    assert!(err.contains("schema 2"), "{err}");
}

fn new_partnership(a: NewMember, b: NewMember, threshold: i64) -> NewPartnership {
    NewPartnership {
        id: PartnershipId(id("new").0),
        currency: Currency::USD,
        approval_threshold: MinorUnits(threshold),
        members: [a, b],
        created_at: T0,
    }
}

fn member(user: UserId, slot: u8) -> NewMember {
    NewMember {
        user_id: user,
        name: "Someone".into(),
        income: None,
        slot,
    }
}

#[test]
fn creating_a_document_refuses_bad_input() {
    let (a, b) = (uid("a"), uid("b"));
    let cases = [
        (
            "same user twice",
            new_partnership(member(a, 1), member(a, 2), 10_000),
        ),
        (
            "two slot 1",
            new_partnership(member(a, 1), member(b, 1), 10_000),
        ),
        (
            "slot 3",
            new_partnership(member(a, 1), member(b, 3), 10_000),
        ),
        (
            "slot 0",
            new_partnership(member(a, 0), member(b, 2), 10_000),
        ),
        (
            "zero threshold",
            new_partnership(member(a, 1), member(b, 2), 0),
        ),
        (
            "negative threshold",
            new_partnership(member(a, 1), member(b, 2), -1),
        ),
    ];
    for (name, input) in cases {
        match new_partnership_document(&input) {
            Err(DocumentError::Invalid(_)) => {}
            other => panic!("{name}: expected Invalid, got {:?}", other.map(|_| ())),
        }
    }
    // The same input with good values is accepted, in either slot order.
    let doc = new_partnership_document(&new_partnership(member(b, 2), member(a, 1), 1)).unwrap();
    let s = read_document(&doc).unwrap();
    assert_eq!(
        s.members.iter().map(|m| m.user_id).collect::<Vec<_>>(),
        [a, b]
    );
}

#[test]
fn save_and_load_preserve_the_state() {
    let mut c = Couple::new();
    let (a, b) = (c.a, c.b);
    let mut client = c.client(a);
    op(&mut client, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Rent", 95_000))
    });
    op(&mut client, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Milk", 250))
    });
    op(&mut client, |tx| {
        ops::add_goal(tx, &c.ctx(a), &goal("Holiday", 200_000))
    });
    op(&mut client, |tx| ops::send_message(tx, &c.ctx(a), "hello"));
    c.sync(&mut client, a);
    c.server_month(Month::parse("2026-11").unwrap(), 3_333, 6_667);
    assert!(invariant_violations(&c.server, &[a, b]).is_empty());

    let bytes = c.server.save();
    let loaded = Automerge::load(&bytes).unwrap();
    assert_eq!(loaded.get_heads(), c.server.get_heads());
    let state = read_document(&loaded).unwrap();
    assert_eq!(state, c.state());
    assert_eq!(state.expenses.len(), 2);
    assert_eq!(state.goals.len(), 1);
    assert_eq!(state.approvals.len(), 2);
    assert_eq!(state.contributions.len(), 1);
    assert_eq!(all_rows(&loaded).unwrap(), all_rows(&c.server).unwrap());
}

fn added(o: Outcome) -> EntityId {
    match o {
        Outcome::Applied { id } => id,
        Outcome::ApprovalRequested { target_id, .. } => target_id,
    }
}

fn decimal_amount(doc: &Automerge, expense: EntityId) -> String {
    let mut t = Touched::default();
    t.add(Collection::Expenses, expense.to_string());
    match &rows_for(doc, &t).unwrap().changes[..] {
        [RowChange::Upsert(Row::Expense(row))] => row.amount.to_string(),
        other => panic!("{other:?}"),
    }
}

#[test]
fn amounts_materialize_with_the_scale_of_the_currency() {
    for (code, minor, threshold, shown) in [
        ("USD", 1_234, 10_000, "12.34"),
        ("JPY", 500, 10_000, "500"),
        ("KWD", 1_234, 100_000, "1.234"),
        ("USD", 5, 10_000, "0.05"),
    ] {
        let mut c = Couple::with_currency(Currency::parse(code).unwrap(), MinorUnits(threshold));
        let a = c.a;
        let mut client = c.client(a);
        let id = added(op(&mut client, |tx| {
            ops::add_expense(tx, &c.ctx(a), &expense("Thing", minor))
        }));
        c.sync(&mut client, a);
        assert_eq!(decimal_amount(&c.server, id), shown, "{code} {minor}");
    }
}

#[test]
fn rows_for_returns_exactly_the_touched_rows_and_all_rows_is_their_union() {
    let mut c = Couple::new();
    let a = c.a;
    let mut client = c.client(a);
    let rent = added(op(&mut client, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Rent", 5_000))
    }));
    let milk = added(op(&mut client, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Milk", 250))
    }));
    let gone = added(op(&mut client, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Gone", 100))
    }));
    let car = added(op(&mut client, |tx| {
        ops::add_expense(tx, &c.ctx(a), &expense("Car", 50_000))
    }));
    let holiday = added(op(&mut client, |tx| {
        ops::add_goal(tx, &c.ctx(a), &goal("Holiday", 200_000))
    }));
    let hello = added(op(&mut client, |tx| {
        ops::send_message(tx, &c.ctx(a), "hello")
    }));
    c.sync(&mut client, a);
    let month = Month::parse("2026-11").unwrap();
    c.server_month(month, 3_333, 6_667);
    // Raw server-side edits standing for a removed entity and a malformed one.
    let malformed = id("malformed");
    c.server
        .transact::<_, _, AutomergeError>(|tx| {
            let expenses = obj_of_collection(tx, Collection::Expenses);
            tx.delete(&expenses, gone.to_string())?;
            let m = tx.put_object(&expenses, malformed.to_string(), ObjType::Map)?;
            tx.put(&m, "name", "No amount")?;
            Ok(())
        })
        .unwrap();

    let mut t = Touched::default();
    t.add(Collection::Expenses, rent.to_string());
    t.add(Collection::Expenses, gone.to_string());
    t.add(Collection::Expenses, malformed.to_string());
    t.add(Collection::Goals, holiday.to_string());
    t.add(Collection::Contributions, month.to_string());
    t.add(Collection::Members, a.to_string());
    let m = rows_for(&c.server, &t).unwrap();
    assert_eq!(m.partnership_id, c.pid);
    let mut upserted = Vec::new();
    let mut deleted = Vec::new();
    for change in &m.changes {
        match change {
            RowChange::Upsert(Row::Expense(r)) => upserted.push(("expense", r.id.to_string())),
            RowChange::Upsert(Row::Goal(r)) => upserted.push(("goal", r.id.to_string())),
            RowChange::Upsert(Row::Contribution(r)) => {
                assert_eq!(r.total_required.to_string(), "100.00");
                assert_eq!(r.shares.len(), 2);
                upserted.push(("month", r.month.clone()))
            }
            RowChange::Upsert(other) => panic!("not touched: {other:?}"),
            RowChange::Delete { collection, key } => {
                assert_eq!(*collection, Collection::Expenses);
                deleted.push(key.clone());
            }
        }
    }
    upserted.sort();
    let mut want = vec![
        ("expense", rent.to_string()),
        ("goal", holiday.to_string()),
        ("month", month.to_string()),
    ];
    want.sort();
    assert_eq!(upserted, want);
    deleted.sort();
    let mut want_deleted = vec![gone.to_string(), malformed.to_string()];
    want_deleted.sort();
    assert_eq!(deleted, want_deleted);

    // One Touched per collection: the upserts together are exactly all_rows.
    let all = all_rows(&c.server).unwrap();
    let mut union = Vec::new();
    for coll in Collection::ALL {
        let mut t = Touched::default();
        for key in splitsave_sync_core::read::collection_keys(&c.server, coll) {
            t.add(coll, key);
        }
        union.extend(
            rows_for(&c.server, &t)
                .unwrap()
                .changes
                .into_iter()
                .filter(|ch| matches!(ch, RowChange::Upsert(_))),
        );
    }
    assert_eq!(union, all.changes);
    // rent, milk, car; holiday; car's and holiday's requests; hello; the month.
    assert_eq!(all.changes.len(), 8);
    for present in [rent, milk, car, holiday, hello] {
        let id = present.to_string();
        assert!(
            all.changes.iter().any(|ch| format!("{ch:?}").contains(&id)),
            "{id} missing from all_rows"
        );
    }
}
