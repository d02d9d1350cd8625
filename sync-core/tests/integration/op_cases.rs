//! The shared case tables (`sync-core/tests/cases/*.json`) run against sync-core. The
//! TypeScript client runs the same files (`client-sdk/js/test/cases.test.ts`), so a rule (a
//! limit, a refusal, a derived id, a rounding) cannot differ between the two without one of
//! the suites failing.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use automerge::transaction::Transactable;
use automerge::Automerge;
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};
use splitsave_sync_core::document::{
    new_partnership_document, read_document, DocumentState, NewMember, NewPartnership,
};
use splitsave_sync_core::enums::*;
use splitsave_sync_core::ids::{EntityId, PartnershipId, UserId};
use splitsave_sync_core::money::{Currency, MinorUnits, MoneyError};
use splitsave_sync_core::ops::{self, Ctx, NewExpense, NewGoal, OpError, Outcome};
use splitsave_sync_core::schema::*;
use splitsave_sync_core::split::{self, Month, Split, SplitBasis, SplitError, SplitExpense};
use splitsave_sync_core::split_doc::document_split;
use splitsave_sync_core::time::Millis;
use splitsave_sync_core::write;

const OPS: &str = include_str!("../cases/ops.json");
const SPLIT: &str = include_str!("../cases/split.json");

/// The collections an operation may change, compared after every case.
const COLLECTIONS: [&str; 5] = [
    "expenses",
    "goals",
    "goal_contributions",
    "approvals",
    "messages",
];
const NEW: &str = "$new";

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key}: expected a string in {v}"))
}

fn i(v: &Value, key: &str) -> i64 {
    v[key]
        .as_i64()
        .unwrap_or_else(|| panic!("{key}: expected an integer in {v}"))
}

fn opt_i(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn opt_s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

fn id<T: FromStr>(v: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    v.parse().unwrap_or_else(|e| panic!("{v}: {e:?}"))
}

fn parse<T>(v: &str, f: fn(&str) -> Option<T>) -> T {
    f(v).unwrap_or_else(|| panic!("unknown value {v}"))
}

/// `base` with the case's `doc` keys replacing the base's.
fn merged(base: &Value, doc: Option<&Value>) -> Value {
    let mut out = base.clone();
    if let Some(Value::Object(over)) = doc {
        for (k, v) in over {
            out[k] = v.clone();
        }
    }
    out
}

fn entities(spec: &Value, coll: &str) -> Vec<(String, Value)> {
    spec[coll]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn expense_of(key: &str, e: &Value) -> Expense {
    Expense {
        id: id(key),
        name: s(e, "name").into(),
        amount: MinorUnits(i(e, "amount")),
        category: parse(s(e, "category"), Category::parse),
        frequency: parse(s(e, "frequency"), Frequency::parse),
        added_by: id(s(e, "added_by")),
        status: parse(s(e, "status"), ItemStatus::parse),
        created_at: Millis(i(e, "created_at")),
        updated_at: Millis(i(e, "updated_at")),
    }
}

fn goal_of(key: &str, g: &Value) -> Goal {
    Goal {
        id: id(key),
        name: s(g, "name").into(),
        target_amount: MinorUnits(i(g, "target_amount")),
        saved_amount: MinorUnits(i(g, "saved_amount")),
        goal_type: parse(s(g, "goal_type"), GoalType::parse),
        priority: parse(s(g, "priority"), Priority::parse),
        added_by: id(s(g, "added_by")),
        status: parse(s(g, "status"), ItemStatus::parse),
        created_at: Millis(i(g, "created_at")),
        updated_at: Millis(i(g, "updated_at")),
    }
}

fn expense_fields_of(d: &Value) -> ExpenseFields {
    ExpenseFields {
        name: opt_s(d, "name").map(String::from),
        amount: opt_i(d, "amount").map(MinorUnits),
        category: opt_s(d, "category").map(|v| parse(v, Category::parse)),
        frequency: opt_s(d, "frequency").map(|v| parse(v, Frequency::parse)),
    }
}

fn goal_fields_of(d: &Value) -> GoalFields {
    GoalFields {
        name: opt_s(d, "name").map(String::from),
        target_amount: opt_i(d, "target_amount").map(MinorUnits),
        goal_type: opt_s(d, "goal_type").map(|v| parse(v, GoalType::parse)),
        priority: opt_s(d, "priority").map(|v| parse(v, Priority::parse)),
    }
}

fn approval_of(key: &str, a: &Value) -> Approval {
    let request_type = parse(s(a, "request_type"), RequestType::parse);
    let request_data = match request_type {
        RequestType::ExpenseAdd | RequestType::ExpenseEdit => {
            RequestData::Expense(expense_fields_of(&a["request_data"]))
        }
        RequestType::GoalAdd | RequestType::GoalEdit => {
            RequestData::Goal(goal_fields_of(&a["request_data"]))
        }
    };
    Approval {
        id: id(key),
        requested_by: id(s(a, "requested_by")),
        request_type,
        target_id: id(s(a, "target_id")),
        request_data,
        message: opt_s(a, "message").map(String::from),
        status: parse(s(a, "status"), ApprovalStatus::parse),
        responded_by: opt_s(a, "responded_by").map(id),
        responded_at: opt_i(a, "responded_at").map(Millis),
        created_at: Millis(i(a, "created_at")),
    }
}

/// The starting document, built with sync-core's own functions.
fn build(spec: &Value) -> Automerge {
    let members: Vec<NewMember> = entities(spec, "members")
        .into_iter()
        .map(|(user, m)| NewMember {
            user_id: id(&user),
            name: s(&m, "name").into(),
            income: opt_i(&m, "income").map(MinorUnits),
            slot: u8::try_from(i(&m, "slot")).unwrap(),
        })
        .collect();
    let members: [NewMember; 2] = members.try_into().expect("two members");
    let mut doc = new_partnership_document(&NewPartnership {
        id: id::<PartnershipId>(s(spec, "partnership_id")),
        currency: Currency::parse(s(spec, "currency")).unwrap(),
        approval_threshold: MinorUnits(i(spec, "approval_threshold")),
        members,
        created_at: Millis(i(spec, "created_at")),
    })
    .expect("new document");
    doc.transact::<_, _, OpError>(|tx| {
        for (k, e) in entities(spec, "expenses") {
            write::put_expense(tx, &expense_of(&k, &e))?;
        }
        for (k, g) in entities(spec, "goals") {
            write::put_goal(tx, &goal_of(&k, &g))?;
        }
        for (k, c) in entities(spec, "goal_contributions") {
            write::put_goal_contribution(
                tx,
                &GoalContribution {
                    id: id(&k),
                    goal_id: id(s(&c, "goal_id")),
                    user_id: id(s(&c, "user_id")),
                    amount: MinorUnits(i(&c, "amount")),
                    created_at: Millis(i(&c, "created_at")),
                },
            )?;
        }
        for (k, a) in entities(spec, "approvals") {
            write::put_approval(tx, &approval_of(&k, &a))?;
        }
        for (k, m) in entities(spec, "messages") {
            write::put_message(
                tx,
                &Message {
                    id: id(&k),
                    sender_id: id(s(&m, "sender_id")),
                    text: s(&m, "text").into(),
                    message_type: parse(s(&m, "message_type"), MessageType::parse),
                    read_by_recipient: m["read_by_recipient"].as_bool().unwrap(),
                    created_at: Millis(i(&m, "created_at")),
                },
            )?;
        }
        let status = parse(s(spec, "status"), PartnershipStatus::parse);
        if status != PartnershipStatus::Active {
            ops::server_set_status(tx, status)?;
        }
        Ok(())
    })
    .map_err(|f| f.error)
    .expect("starting document");
    doc
}

fn request_data_json(d: &RequestData) -> Value {
    let mut m = Map::new();
    match d {
        RequestData::Expense(f) => {
            if let Some(v) = &f.name {
                m.insert("name".into(), json!(v));
            }
            if let Some(v) = f.amount {
                m.insert("amount".into(), json!(v.0));
            }
            if let Some(v) = f.category {
                m.insert("category".into(), json!(v.as_str()));
            }
            if let Some(v) = f.frequency {
                m.insert("frequency".into(), json!(v.as_str()));
            }
        }
        RequestData::Goal(f) => {
            if let Some(v) = &f.name {
                m.insert("name".into(), json!(v));
            }
            if let Some(v) = f.target_amount {
                m.insert("target_amount".into(), json!(v.0));
            }
            if let Some(v) = f.goal_type {
                m.insert("goal_type".into(), json!(v.as_str()));
            }
            if let Some(v) = f.priority {
                m.insert("priority".into(), json!(v.as_str()));
            }
        }
    }
    Value::Object(m)
}

/// The collections an operation changes, as the plain values the case files hold.
fn collections_json(state: &DocumentState) -> BTreeMap<&'static str, Value> {
    let by_id = |items: Vec<(String, Value)>| Value::Object(items.into_iter().collect());
    let mut out = BTreeMap::new();
    out.insert(
        "expenses",
        by_id(
            state
                .expenses
                .iter()
                .map(|e| {
                    (
                        e.id.to_string(),
                        json!({
                            "name": e.name, "amount": e.amount.0, "category": e.category.as_str(),
                            "frequency": e.frequency.as_str(), "added_by": e.added_by.to_string(),
                            "status": e.status.as_str(), "created_at": e.created_at.0,
                            "updated_at": e.updated_at.0,
                        }),
                    )
                })
                .collect(),
        ),
    );
    out.insert(
        "goals",
        by_id(
            state
                .goals
                .iter()
                .map(|g| {
                    (
                        g.id.to_string(),
                        json!({
                            "name": g.name, "target_amount": g.target_amount.0,
                            "saved_amount": g.saved_amount.0, "goal_type": g.goal_type.as_str(),
                            "priority": g.priority.as_str(), "added_by": g.added_by.to_string(),
                            "status": g.status.as_str(), "created_at": g.created_at.0,
                            "updated_at": g.updated_at.0,
                        }),
                    )
                })
                .collect(),
        ),
    );
    out.insert(
        "goal_contributions",
        by_id(
            state
                .goal_contributions
                .iter()
                .map(|c| {
                    (
                        c.id.to_string(),
                        json!({
                            "goal_id": c.goal_id.to_string(), "user_id": c.user_id.to_string(),
                            "amount": c.amount.0, "created_at": c.created_at.0,
                        }),
                    )
                })
                .collect(),
        ),
    );
    out.insert(
        "approvals",
        by_id(
            state
                .approvals
                .iter()
                .map(|a| {
                    (
                        a.id.to_string(),
                        json!({
                            "requested_by": a.requested_by.to_string(),
                            "request_type": a.request_type.as_str(),
                            "target_id": a.target_id.to_string(),
                            "request_data": request_data_json(&a.request_data),
                            "message": a.message,
                            "status": a.status.as_str(),
                            "responded_by": a.responded_by.map(|u| u.to_string()),
                            "responded_at": a.responded_at.map(|t| t.0),
                            "created_at": a.created_at.0,
                        }),
                    )
                })
                .collect(),
        ),
    );
    out.insert(
        "messages",
        by_id(
            state
                .messages
                .iter()
                .map(|m| {
                    (
                        m.id.to_string(),
                        json!({
                            "sender_id": m.sender_id.to_string(), "text": m.text,
                            "message_type": m.message_type.as_str(),
                            "read_by_recipient": m.read_by_recipient, "created_at": m.created_at.0,
                        }),
                    )
                })
                .collect(),
        ),
    );
    out
}

fn outcome_json(r: &Result<Outcome, OpError>) -> Value {
    match r {
        Ok(Outcome::Applied { id }) => json!({ "kind": "applied", "id": id.to_string() }),
        Ok(Outcome::ApprovalRequested {
            request_id,
            target_id,
        }) => json!({
            "kind": "approval_requested",
            "request_id": request_id.to_string(),
            "target_id": target_id.to_string(),
        }),
        Err(e) => {
            let kind = match e {
                OpError::Validation(v) => {
                    return json!({ "kind": "refused", "error": "validation", "field": v.field })
                }
                OpError::NotFound => "not_found",
                OpError::Forbidden(_) => "forbidden",
                OpError::Conflict(_) => "conflict",
                OpError::NotMember => "not_member",
                OpError::Inactive => "inactive",
                OpError::Shape(_) => "shape",
                OpError::Automerge(_) => "automerge",
            };
            json!({ "kind": "refused", "error": kind })
        }
    }
}

fn run_op<T: Transactable>(
    tx: &mut T,
    ctx: &Ctx,
    op: &str,
    input: &Value,
) -> Result<Outcome, OpError> {
    let eid = |key: &str| -> EntityId { id(s(input, key)) };
    match op {
        "add_expense" => ops::add_expense_with_id(
            tx,
            ctx,
            eid("id"),
            &NewExpense {
                name: s(input, "name").into(),
                amount: MinorUnits(i(input, "amount")),
                category: parse(s(input, "category"), Category::parse),
                frequency: parse(s(input, "frequency"), Frequency::parse),
            },
        ),
        "add_goal" => ops::add_goal_with_id(
            tx,
            ctx,
            eid("id"),
            &NewGoal {
                name: s(input, "name").into(),
                target_amount: MinorUnits(i(input, "target_amount")),
                goal_type: parse(s(input, "goal_type"), GoalType::parse),
                priority: parse(s(input, "priority"), Priority::parse),
            },
        ),
        "edit_expense" => ops::edit_expense(
            tx,
            ctx,
            eid("id"),
            &expense_fields_of(&input["fields"]),
            opt_s(input, "message"),
        ),
        "edit_goal" => ops::edit_goal(
            tx,
            ctx,
            eid("id"),
            &goal_fields_of(&input["fields"]),
            opt_s(input, "message"),
        ),
        "archive_expense" => ops::archive_expense(tx, ctx, eid("id")),
        "archive_goal" => ops::archive_goal(tx, ctx, eid("id")),
        "contribute_to_goal" => {
            ops::contribute_to_goal(tx, ctx, eid("goal_id"), MinorUnits(i(input, "amount")))
        }
        "approve" => ops::approve(tx, ctx, eid("request_id")),
        "decline" => ops::decline(tx, ctx, eid("request_id")),
        "send_message" => ops::send_message(tx, ctx, s(input, "text")),
        "mark_read" => ops::mark_read(tx, ctx, eid("id")),
        other => panic!("unknown op {other}"),
    }
}

/// Replaces "$new" in keys and string values with the id the operation made up.
fn bind_new(v: &Value, new: Option<&str>) -> Value {
    match (v, new) {
        (Value::String(x), Some(n)) if x == NEW => Value::String(n.into()),
        (Value::Object(m), _) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let k = match new {
                        Some(n) if k == NEW => n.to_string(),
                        _ => k.clone(),
                    };
                    (k, bind_new(v, new))
                })
                .collect(),
        ),
        (Value::Array(a), _) => Value::Array(a.iter().map(|v| bind_new(v, new)).collect()),
        _ => v.clone(),
    }
}

#[test]
fn operation_cases_hold_for_sync_core() {
    let file: Value = serde_json::from_str(OPS).expect("ops.json");
    let base = &file["base"];
    let cases = file["cases"].as_array().expect("cases");
    assert!(cases.len() >= 60, "the table lost cases");
    let mut names = BTreeSet::new();
    for case in cases {
        let name = s(case, "name");
        assert!(names.insert(name), "duplicate case name {name}");
        let spec = merged(base, case.get("doc"));
        let mut doc = build(&spec);
        let start = read_document(&doc).expect("read start");
        assert!(start.malformed.is_empty(), "{name}: {:?}", start.malformed);
        let start_json = collections_json(&start);
        let ctx = Ctx {
            user: id::<UserId>(s(case, "as")),
            now: Millis(opt_i(case, "now").unwrap_or_else(|| i(base, "now"))),
        };
        let result = match doc.transact(|tx| run_op(tx, &ctx, s(case, "op"), &case["input"])) {
            Ok(ok) => Ok(ok.result),
            Err(f) => Err(f.error),
        };
        let actual = outcome_json(&result);
        // Bind "$new" to the id the operation made up, and check that it is new.
        let expected_outcome = &case["expect"];
        let new = ["id", "request_id"].iter().find_map(|k| {
            (expected_outcome.get(*k) == Some(&json!(NEW))).then(|| s(&actual, k).to_string())
        });
        if let Some(n) = &new {
            for coll in COLLECTIONS {
                assert!(start_json[coll].get(n).is_none(), "{name}: {n} is not new");
            }
        }
        assert_eq!(
            actual,
            bind_new(expected_outcome, new.as_deref()),
            "{name}: outcome"
        );
        let after = read_document(&doc).expect("read after");
        assert!(after.malformed.is_empty(), "{name}: {:?}", after.malformed);
        let after_json = collections_json(&after);
        let patches = bind_new(case.get("after").unwrap_or(&json!({})), new.as_deref());
        for coll in COLLECTIONS {
            let mut wanted = start_json[coll].as_object().unwrap().clone();
            if let Some(p) = patches.get(coll).and_then(Value::as_object) {
                for (k, v) in p {
                    if v.is_null() {
                        wanted.remove(k);
                    } else {
                        wanted.insert(k.clone(), v.clone());
                    }
                }
            }
            assert_eq!(after_json[coll], Value::Object(wanted), "{name}: {coll}");
        }
    }
}

fn split_json(split: &Split) -> Value {
    json!({
        "weekly_total": split.weekly_total.0,
        "monthly_total_raw": split.monthly_total_raw.0,
        "yearly_total": split.yearly_total.0,
        "monthly_total": split.monthly_total.0,
        "share_1": split.share_1.0,
        "share_2": split.share_2.0,
        "ratio_1": split.ratio_1,
        "ratio_2": split.ratio_2,
        "basis": match split.basis { SplitBasis::Income => "income", SplitBasis::Equal => "equal" },
    })
}

fn split_input(c: &Value) -> split::SplitInput {
    split::SplitInput {
        expenses: c["expenses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| SplitExpense {
                amount: MinorUnits(i(e, "amount")),
                frequency: parse(s(e, "frequency"), Frequency::parse),
            })
            .collect(),
        income_1: opt_i(c, "income_1").map(MinorUnits),
        income_2: opt_i(c, "income_2").map(MinorUnits),
    }
}

#[test]
fn split_and_money_cases_hold_for_sync_core() {
    let file: Value = serde_json::from_str(SPLIT).expect("split.json");
    for c in file["split"].as_array().unwrap() {
        let name = s(c, "name");
        let actual = match split::calculate(&split_input(c)) {
            Ok(split) => split_json(&split),
            Err(e) => json!({ "error": match e {
                SplitError::Overflow => "overflow",
                SplitError::NegativeExpense => "negative_expense",
                SplitError::NegativeIncome => "negative_income",
                SplitError::InvalidMonth(_) => "invalid_month",
            }}),
        };
        assert_eq!(actual, c["expect"], "{name}");
    }
    for c in file["monthly_amount"].as_array().unwrap() {
        let amount = split::monthly_amount(
            MinorUnits(i(c, "amount")),
            parse(s(c, "frequency"), Frequency::parse),
        );
        assert_eq!(amount.0, i(c, "expect"), "{c}");
    }
    for c in file["contributions"].as_array().unwrap() {
        let split = split::calculate(&split_input(c)).unwrap();
        let due = split::monthly_contribution(Month::parse(s(c, "month")).unwrap(), &split);
        let actual = json!({
            "month": due.month.to_string(), "total_required": due.total_required.0,
            "amount_1": due.amount_1.0, "amount_2": due.amount_2.0,
        });
        assert_eq!(actual, c["expect"], "{}", s(c, "name"));
    }
    let ops_file: Value = serde_json::from_str(OPS).expect("ops.json");
    for c in file["documents"].as_array().unwrap() {
        let doc = build(&merged(&ops_file["base"], c.get("doc")));
        let got = document_split(&doc).expect("document split");
        let actual =
            json!({ "active_expenses": got.active_expenses, "split": split_json(&got.split) });
        assert_eq!(actual, c["expect"], "{}", s(c, "name"));
    }
    for c in file["parse"].as_array().unwrap() {
        let currency = Currency::parse(s(c, "currency")).unwrap();
        let amount = Decimal::from_str(s(c, "text")).unwrap();
        let actual = match currency.to_minor_positive(amount) {
            Ok(m) => json!({ "expect": m.0 }),
            Err(e) => json!({ "error": match e {
                MoneyError::TooManyDecimals { .. } => "too_many_decimals",
                MoneyError::TooLarge => "too_large",
                MoneyError::NotPositive => "not_positive",
                MoneyError::Negative => "negative",
                MoneyError::UnknownCurrency(_) => "unknown_currency",
            }}),
        };
        let wanted = match c.get("error") {
            Some(e) => json!({ "error": e }),
            None => json!({ "expect": c["expect"] }),
        };
        assert_eq!(actual, wanted, "{c}");
    }
    for c in file["format"].as_array().unwrap() {
        let currency = Currency::parse(s(c, "currency")).unwrap();
        let text = currency.from_minor(MinorUnits(i(c, "minor"))).to_string();
        assert_eq!(text, s(c, "expect"), "{c}");
    }
}
