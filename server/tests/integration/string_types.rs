//! One type per string field (`sync-core`'s `fields`): free text as Text, identifiers and enums
//! as scalar strings. A document stored before the types were declared (names the server wrote
//! as scalar strings, enums a JS client wrote as Text) is rewritten in the declared types when a
//! server first opens it, keeping every value, in one change of the server's, once.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{ActorId, Automerge, AutomergeError, ObjType, ReadDoc, Value, ROOT};
use chrono::Utc;
use splitsave_server::store::NewChange;
use splitsave_sync_core::document::read_document;
use splitsave_sync_core::ids::{EntityId, PartnershipId};
use splitsave_sync_core::read;
use splitsave_sync_core::schema::{keys, Collection};
use splitsave_sync_core::strings::{misshapen_document, Holder};
use splitsave_sync_core::write;
use tokio::time::Instant;

use crate::common::{Backend, TestApp};
use crate::sync_support::{stored_document, SyncClient};

on_both_backends!(a_document_stored_with_the_other_string_types_is_normalized_when_opened);

/// How a field is stored: "text", "scalar" or "other".
fn stored_as(doc: &Automerge, obj: &automerge::ObjId, field: &str) -> &'static str {
    match doc.get(obj, field).expect("read") {
        Some((Value::Object(ObjType::Text), _)) => "text",
        Some((Value::Scalar(s), _)) if s.is_str() => "scalar",
        _ => "other",
    }
}

async fn a_document_stored_with_the_other_string_types_is_normalized_when_opened(backend: Backend) {
    let Some(app) = TestApp::spawn(backend).await else {
        return;
    };
    let (ann, _ben, pid) = app
        .register_couple("ann@example.com", "ben@example.com")
        .await;
    let pid = PartnershipId(pid);
    assert_eq!(
        app.state.sync.live_documents().await,
        0,
        "no server has opened the document yet"
    );

    // The document as an earlier server and a stock JS client left it.
    let mut old = stored_document(&app, pid).await;
    old.set_actor(ActorId::random());
    let expense = EntityId::new_v7();
    old.transact::<_, _, AutomergeError>(|tx| {
        let members = read::collection_obj(tx, Collection::Members).expect("members");
        for key in tx.keys(&members).collect::<Vec<_>>() {
            let member = read::map_at(tx, &members, &key).expect("a member");
            let name = read::string(tx, &member, "name", "name").expect("a name");
            tx.put(&member, "name", name)?;
        }
        let partnership = read::map_at(tx, &ROOT, keys::PARTNERSHIP).expect("partnership");
        let status = tx.put_object(&partnership, "status", ObjType::Text)?;
        tx.splice_text(&status, 0, 0, "active")?;
        let e = write::new_entity(tx, Collection::Expenses, &expense.to_string())?;
        tx.put(&e, "name", "Rent")?;
        tx.put(&e, "amount", 90_000)?;
        let category = tx.put_object(&e, "category", ObjType::Text)?;
        tx.splice_text(&category, 0, 0, "housing")?;
        tx.put(&e, "frequency", "monthly")?;
        tx.put(&e, "added_by", ann.user_id.to_string())?;
        tx.put(&e, "status", "active")?;
        tx.put(&e, "created_at", 1_764_000_000_000i64)?;
        tx.put(&e, "updated_at", 1_764_000_000_000i64)?;
        Ok(())
    })
    .expect("the old shapes");
    let change = old.get_last_local_change().expect("a change").clone();
    app.state
        .store
        .append_changes(
            pid.0,
            &[NewChange {
                hash: change.hash().to_string(),
                actor: change.actor_id().to_hex_string(),
                seq: change.seq() as i64,
                user_id: None,
                bytes: change.raw_bytes().to_vec(),
            }],
            Utc::now(),
        )
        .await
        .expect("stored");
    let stored = stored_document(&app, pid).await;
    let values = read_document(&stored).expect("reads");
    let mut misshapen = misshapen_document(&stored);
    misshapen.sort();
    assert_eq!(misshapen.len(), 4, "{misshapen:?}");
    assert!(misshapen.contains(&Holder::Partnership));
    assert!(misshapen.contains(&Holder::Entity(Collection::Expenses, expense.to_string())));

    // A partner's app connects: the server opens the document and rewrites it.
    let mut device = SyncClient::connect(&app, &ann).await;
    device.settle().await.expect("settles");
    let deadline = Instant::now() + Duration::from_secs(20);
    let normalized = loop {
        let doc = stored_document(&app, pid).await;
        if misshapen_document(&doc).is_empty() {
            break doc;
        }
        assert!(
            Instant::now() < deadline,
            "still misshapen: {:?}",
            misshapen_document(&doc)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let after = read_document(&normalized).expect("reads");
    assert_eq!(
        after.partnership, values.partnership,
        "the partnership's values are kept"
    );
    assert_eq!(after.members, values.members, "the names are kept");
    assert_eq!(after.expenses, values.expenses, "the expense is kept");

    let e = read::entity_obj(&normalized, Collection::Expenses, &expense.to_string())
        .unwrap()
        .unwrap();
    assert_eq!(stored_as(&normalized, &e, "name"), "text");
    assert_eq!(stored_as(&normalized, &e, "category"), "scalar");
    let p = read::map_at(&normalized, &ROOT, keys::PARTNERSHIP).unwrap();
    assert_eq!(stored_as(&normalized, &p, "status"), "scalar");
    let members = read::collection_obj(&normalized, Collection::Members).unwrap();
    for key in normalized.keys(&members) {
        let m = read::map_at(&normalized, &members, &key).unwrap();
        assert_eq!(stored_as(&normalized, &m, "name"), "text", "members.{key}");
    }

    // One change did it, and the device receives it.
    let server_changes = normalized
        .get_changes(&stored.get_heads())
        .into_iter()
        .filter(|c| {
            c.message()
                .is_some_and(|m| m.contains("string fields in their declared types"))
        })
        .count();
    assert_eq!(server_changes, 1);
    device.settle().await.expect("settles again");
    assert!(misshapen_document(&device.doc).is_empty());
}
