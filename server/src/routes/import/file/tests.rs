use super::*;

fn dest() -> Destination {
    Destination {
        currency: Currency::USD,
        caller: UserId(Uuid::now_v7()),
        partner: UserId(Uuid::now_v7()),
        now: Millis::now(),
    }
}

fn refusal(body: &str, into: &Destination) -> ApiError {
    match read(body.as_bytes(), into) {
        Ok(_) => panic!("accepted: {body}"),
        Err(e) => e,
    }
}

fn fields(err: ApiError) -> BTreeMap<String, Vec<String>> {
    match err {
        ApiError::Validation(f) => f.0,
        other => panic!("not a 422: {other:?}"),
    }
}

#[test]
fn a_body_that_is_not_json_is_a_400_naming_where() {
    for body in ["", "{\"format_version\": 1,", "not json", "{} trailing"] {
        match refusal(body, &dest()) {
            ApiError::BadRequest(m) => assert!(m.contains("line"), "{body}: {m}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn a_value_of_the_wrong_shape_is_named_by_its_path() {
    let d = dest();
    let body = json_file(|f| f["expenses"][0]["amount"] = serde_json::json!(12.5));
    let found = fields(refusal(&body, &d));
    assert!(found.contains_key("expenses[0].amount"), "{found:?}");
    let body = json_file(|f| {
        f["goals"][0].as_object_mut().expect("goal").remove("name");
    });
    let found = fields(refusal(&body, &d));
    assert_eq!(found["goals[0].name"], ["is required"], "{found:?}");
    let found = fields(refusal("[]", &d));
    assert!(found.contains_key("body"), "{found:?}");
    let found = fields(refusal("{}", &d));
    for key in ["format_version", "profile", "expenses", "approval_requests"] {
        assert_eq!(found[key], ["is required"], "{key}: {found:?}");
    }
}

#[test]
fn users_map_onto_the_members() {
    let d = dest();
    let (ann, ben) = (Uuid::now_v7(), Uuid::now_v7());
    let s = |exporter, partner| Sections {
        exporter,
        partner,
        currency: Some("USD".into()),
        expenses: vec![],
        goals: vec![],
        goal_contributions: vec![],
        months: vec![],
        approvals: vec![],
        messages: vec![],
    };
    let mut p = Problems::default();
    // Moving servers: the exporter is the caller.
    assert_eq!(
        users(&s(ann, Some(ben)), &d, &mut p),
        Some(vec![(ann, d.caller), (ben, d.partner)])
    );
    // Restoring on the same server, the partner importing the exporter's file: ids kept.
    let (c, q) = (d.caller.0, d.partner.0);
    assert_eq!(
        users(&s(q, Some(c)), &d, &mut p),
        Some(vec![(q, d.partner), (c, d.caller)])
    );
    // One of them a member: kept; the other takes the member left.
    assert_eq!(
        users(&s(ann, Some(c)), &d, &mut p),
        Some(vec![(ann, d.partner), (c, d.caller)])
    );
    assert!(p.is_empty());
    assert_eq!(users(&s(ann, Some(ann)), &d, &mut p), None);
    assert!(!p.is_empty());
}

/// A small valid export of another server's couple (two users of its own), edited by `edit`.
fn json_file(edit: impl FnOnce(&mut Value)) -> String {
    let (ann, ben) = (Uuid::now_v7(), Uuid::now_v7());
    let goal = Uuid::now_v7();
    let at = "2026-11-25T10:00:00.000Z";
    let mut file = serde_json::json!({
        "format_version": 1,
        "exported_at": at,
        "profile": {"id": ann, "email": "ann@example.com"},
        "partnership": {"currency": "USD", "partner": {"id": ben}},
        "expenses": [{"id": Uuid::now_v7(), "name": "Rent", "amount": "1200.00",
            "category": "housing", "frequency": "monthly", "added_by": ann, "status": "active",
            "created_at": at, "updated_at": at}],
        "goals": [{"id": goal, "name": "Trip", "target_amount": "2500.00",
            "saved_amount": "10.00", "goal_type": "vacation", "priority": "medium",
            "added_by": ben, "status": "active", "created_at": at, "updated_at": at}],
        "goal_contributions": [{"id": Uuid::now_v7(), "goal_id": goal, "user_id": ann,
            "amount": "10.00", "created_at": at}],
        "contributions": [],
        "approval_requests": [],
        "messages": [],
        "history": [{"anything": "ignored"}],
    });
    edit(&mut file);
    file.to_string()
}

#[test]
fn a_valid_file_reads_and_unknown_keys_are_ignored() {
    let d = dest();
    let (checked, users) = read(json_file(|_| {}).as_bytes(), &d).expect("valid");
    assert_eq!(users.len(), 2);
    let import = checked.import();
    assert_eq!(import.expenses[0].amount, MinorUnits(120_000));
    assert_eq!(import.expenses[0].added_by, d.caller);
    assert_eq!(import.goals[0].added_by, d.partner);
}

#[test]
fn values_that_break_a_rule_are_all_named() {
    let d = dest();
    let stranger = Uuid::now_v7();
    let body = json_file(|f| {
        f["expenses"][0]["amount"] = "12.345".into();
        f["expenses"][0]["category"] = "rent".into();
        f["goals"][0]["added_by"] = serde_json::json!(stranger);
        f["goal_contributions"][0]["created_at"] = "yesterday".into();
    });
    let found = fields(refusal(&body, &d));
    for key in [
        "expenses[0].amount",
        "expenses[0].category",
        "goals[0].added_by",
        "goal_contributions[0].created_at",
    ] {
        assert!(found.contains_key(key), "{key}: {found:?}");
    }
    // Another currency: refused as a whole.
    let body = json_file(|f| f["partnership"]["currency"] = "EUR".into());
    let found = fields(refusal(&body, &d));
    assert!(found.contains_key("partnership.currency"), "{found:?}");
}

#[test]
fn a_file_broken_everywhere_lists_the_first_problems() {
    let d = dest();
    let body = json_file(|f| {
        let expense = f["expenses"][0].clone();
        let many: Vec<Value> = (0..150)
            .map(|_| {
                let mut e = expense.clone();
                e["id"] = serde_json::json!(Uuid::now_v7());
                e["category"] = "rent".into();
                e
            })
            .collect();
        f["expenses"] = Value::Array(many);
    });
    let found = fields(refusal(&body, &d));
    assert_eq!(found.len(), MAX_PROBLEMS + 1, "{found:?}");
    assert_eq!(found["more"], ["50 more problems are not listed"]);
}
