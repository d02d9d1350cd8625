//! History entries worded from the document alone: a device's edit and the server's correction
//! with its reason, values as the REST API shows them, pages that continue without repeating,
//! and filters.

use std::collections::BTreeSet;

use crate::common::*;
use automerge::transaction::Transactable;
use serde_json::json;
use splitsave_sync_core::history::{self, Action, Author, Entry, Filter, Kind};
use splitsave_sync_core::ops::{self, Outcome};
use splitsave_sync_core::schema::Collection;

fn all(doc: &automerge::Automerge) -> Vec<Entry> {
    history::recent(doc, &Filter::default(), usize::MAX, None)
}

fn field<'a>(e: &'a Entry, name: &str) -> (&'a serde_json::Value, &'a serde_json::Value) {
    let f = e
        .fields
        .iter()
        .find(|f| f.field == name)
        .unwrap_or_else(|| panic!("no {name} in {e:?}"));
    (&f.old, &f.new)
}

/// Alex's phone adds `name` under the threshold; the couple's document has it.
fn added(c: &mut Couple, name: &str, cents: i64) -> (automerge::Automerge, String) {
    let ctx = c.ctx(c.a);
    let mut alex = c.client(c.a);
    let Outcome::Applied { id } = op(&mut alex, |tx| {
        ops::add_expense(tx, &ctx, &expense(name, cents))
    }) else {
        panic!("applies")
    };
    c.sync(&mut alex, c.a);
    (alex, id.to_string())
}

#[test]
fn a_devices_edit_and_the_servers_correction_read_as_two_entries_with_the_reason() {
    let mut c = Couple::new();
    let (mut alex, rent) = added(&mut c, "Rent", 5_000);
    let actor = alex.get_actor().clone();
    raw(&mut alex, |tx| {
        let obj = obj_of(tx, Collection::Expenses, &rent);
        tx.put(&obj, "amount", 8_000_i64)
    });
    c.merge_from(&alex, c.a);

    let entries = all(&c.server);
    let server: Vec<&Entry> = entries
        .iter()
        .take_while(|e| e.author == Author::Server)
        .collect();
    let correction = server
        .iter()
        .find(|e| e.kind == Kind::Expense)
        .expect("the correction");
    assert_eq!(correction.entity, rent);
    assert_eq!(
        correction.reason.as_deref(),
        Some("edit needs approval: amount restored")
    );
    assert_eq!(
        field(correction, "amount"),
        (&json!("80.00"), &json!("50.00"))
    );
    let request = server
        .iter()
        .find(|e| e.kind == Kind::Approval)
        .expect("the edit request");
    assert_eq!(request.action, Action::Created);
    assert_eq!(
        request.reason.as_deref(),
        Some("edit needs approval: request filed")
    );
    assert_eq!(field(request, "request_data.amount").1, &json!("80.00"));

    let edit = &entries[server.len()];
    assert_eq!(edit.author, Author::Device(actor));
    assert_eq!(edit.reason, None);
    assert_eq!(edit.action, Action::Changed);
    assert_eq!(edit.fields.len(), 1, "{edit:?}");
    assert_eq!(field(edit, "amount"), (&json!("50.00"), &json!("80.00")));

    let first = entries.last().expect("the addition");
    assert_eq!(first.action, Action::Created);
    assert_eq!(field(first, "name"), (&json!(null), &json!("Rent")));
    assert_eq!(
        field(first, "created_at").1,
        &json!("2025-11-24T16:00:00.000Z")
    );
}

#[test]
fn an_expense_written_active_over_the_threshold_waits_and_says_why() {
    let mut c = Couple::new();
    let ctx = c.ctx(c.a);
    let mut alex = c.client(c.a);
    let sofa = splitsave_sync_core::ids::EntityId::new_v7();
    raw(&mut alex, |tx| {
        splitsave_sync_core::write::put_expense(
            tx,
            &splitsave_sync_core::schema::Expense {
                id: sofa,
                name: "Sofa".into(),
                amount: splitsave_sync_core::money::MinorUnits(90_000),
                category: splitsave_sync_core::enums::Category::Other,
                frequency: splitsave_sync_core::enums::Frequency::Monthly,
                added_by: ctx.user,
                status: splitsave_sync_core::enums::ItemStatus::Active,
                created_at: ctx.now,
                updated_at: ctx.now,
            },
        )
    });
    c.merge_from(&alex, c.a);
    let entries = all(&c.server);
    let waits = entries
        .iter()
        .find(|e| e.author == Author::Server && e.kind == Kind::Expense)
        .expect("the correction");
    assert_eq!(
        waits.reason.as_deref(),
        Some("needs the partner's approval: waits for it")
    );
    assert_eq!(
        field(waits, "status"),
        (&json!("active"), &json!("pending_approval"))
    );
    let filed = entries
        .iter()
        .find(|e| e.author == Author::Server && e.kind == Kind::Approval)
        .expect("the request");
    assert_eq!(
        filed.reason.as_deref(),
        Some("needs the partner's approval: request filed")
    );
    assert_eq!(field(filed, "request_type").1, &json!("expense_add"));
}

#[test]
fn pages_continue_after_the_last_change_without_repeating() {
    let mut c = Couple::new();
    for i in 0..7 {
        added(&mut c, &format!("Item {i}"), 1_000 + i);
    }
    let everything = all(&c.server);
    assert_eq!(everything.len(), 7);
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = history::recent(&c.server, &Filter::default(), 2, after);
        if page.is_empty() {
            break;
        }
        after = page.last().map(|e| e.change);
        paged.extend(page);
    }
    assert_eq!(paged, everything);
    let names: Vec<&serde_json::Value> = everything.iter().map(|e| field(e, "name").1).collect();
    assert_eq!(names[0], &json!("Item 6"), "newest first");
}

#[test]
fn filters_keep_a_kind_an_entity_an_author() {
    let mut c = Couple::new();
    let (alex, rent) = added(&mut c, "Rent", 5_000);
    let ctx = c.ctx(c.b);
    let mut sam = c.client(c.b);
    op(&mut sam, |tx| ops::send_message(tx, &ctx, "Paid"));
    c.sync(&mut sam, c.b);

    let kinds = |f: &Filter| -> BTreeSet<Kind> {
        history::recent(&c.server, f, usize::MAX, None)
            .iter()
            .map(|e| e.kind)
            .collect()
    };
    let messages = Filter {
        kind: Some(Kind::Message),
        ..Filter::default()
    };
    assert_eq!(kinds(&messages), [Kind::Message].into());
    let one = Filter {
        entity: Some(rent.clone()),
        ..Filter::default()
    };
    let entries = history::recent(&c.server, &one, usize::MAX, None);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].entity, rent);
    let by_alex = Filter {
        author: Some(Author::Device(alex.get_actor().clone())),
        ..Filter::default()
    };
    assert_eq!(kinds(&by_alex), [Kind::Expense].into());
    let later = Filter {
        from: Some(splitsave_sync_core::time::Millis(T0.0 + 1_000)),
        ..Filter::default()
    };
    // The operations here carry no time of their own: a time filter keeps none of them.
    assert!(history::recent(&c.server, &later, usize::MAX, None).is_empty());
}
