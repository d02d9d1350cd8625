//! Interoperability with the stock JS sync server (`@automerge/automerge-repo` 2.x `Repo` with
//! `WebSocketServerAdapter`), the reference implementation of the protocol.
//!
//! Needs a running Node server, so it only runs when `SPLITSAVE_JS_SERVER_URL` (its WebSocket
//! URL) and `SPLITSAVE_JS_DOCUMENT_URL` (the `automerge:` URL of a document it created with a
//! string field `title` and a map `expenses`) are set; otherwise it says so and passes. The
//! server is expected to answer a client's `expenses.e1` by setting `serverSaw` to `"e1"`, which
//! shows the change arrived on the Node side.

use std::time::Duration;

use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, Value, ROOT};
use splitsave_client::connection::{ConnectionError, DocSync, SyncConnection};
use splitsave_sync_core::ids::DocumentId;
use tokio::time::Instant;

const TIMEOUT: Duration = Duration::from_secs(10);

fn js_server() -> Option<(String, String)> {
    let url = std::env::var("SPLITSAVE_JS_SERVER_URL").ok();
    let doc = std::env::var("SPLITSAVE_JS_DOCUMENT_URL").ok();
    match (url, doc) {
        (Some(url), Some(doc)) => {
            let id = doc.strip_prefix("automerge:").unwrap_or(&doc).to_owned();
            Some((url, id))
        }
        _ => {
            eprintln!(
                "skipped: set SPLITSAVE_JS_SERVER_URL and SPLITSAVE_JS_DOCUMENT_URL to run \
                 against a stock automerge-repo server"
            );
            None
        }
    }
}

fn peer_id() -> String {
    format!("rust-client-{}", uuid::Uuid::new_v4())
}

/// A string field as JS writes it: a text object.
fn text_field(doc: &Automerge, key: &str) -> Option<String> {
    match doc.get(ROOT, key).expect("read")? {
        (Value::Object(ObjType::Text), id) => Some(doc.text(id).expect("text")),
        (Value::Scalar(s), _) => s.as_str().map(str::to_owned),
        _ => None,
    }
}

fn expense_amount(doc: &Automerge, key: &str) -> Option<i64> {
    let (_, expenses) = doc.get(ROOT, "expenses").expect("read")?;
    let (_, expense) = doc.get(&expenses, key).expect("read")?;
    let (value, _) = doc.get(&expense, "amount_cents").expect("read")?;
    value.as_i64()
}

#[tokio::test]
async fn syncs_a_document_with_the_stock_js_server() {
    let Some((url, document_id)) = js_server() else {
        return;
    };
    let mut conn = SyncConnection::connect(&url, &peer_id(), None, TIMEOUT)
        .await
        .expect("connect");
    assert!(
        conn.server_storage_id().is_some(),
        "a durable JS server advertises its storage id"
    );

    let mut doc = Automerge::new();
    let mut sync = DocSync::new(document_id.clone());
    sync.sync_until_settled(&mut conn, &mut doc, Instant::now() + TIMEOUT)
        .await
        .expect("first sync");
    assert_eq!(text_field(&doc, "title").as_deref(), Some("from node"));

    let mut tx = doc.transaction();
    let (_, expenses) = tx.get(ROOT, "expenses").expect("read").expect("expenses");
    let expense = tx
        .put_object(&expenses, "e1", ObjType::Map)
        .expect("put expense");
    tx.put(&expense, "amount_cents", 1234_i64)
        .expect("put amount");
    tx.commit();
    sync.sync_until_settled(&mut conn, &mut doc, Instant::now() + TIMEOUT)
        .await
        .expect("sync the change");

    sync.wait_for(&mut conn, &mut doc, Instant::now() + TIMEOUT, |d| {
        text_field(d, "serverSaw").as_deref() == Some("e1")
    })
    .await
    .expect("the Node side saw the change and answered");
    conn.close().await;

    // A second client starting from nothing gets the change from the server.
    let mut other =
        SyncConnection::connect(&url, &peer_id(), Some("rust-store".to_owned()), TIMEOUT)
            .await
            .expect("connect again");
    let mut fresh = Automerge::new();
    DocSync::new(document_id)
        .sync_until_settled(&mut other, &mut fresh, Instant::now() + TIMEOUT)
        .await
        .expect("sync from scratch");
    assert_eq!(expense_amount(&fresh, "e1"), Some(1234));
    assert_eq!(fresh.get_heads(), doc.get_heads());
    other.close().await;
}

#[tokio::test]
async fn the_stock_js_server_answers_an_unknown_document_with_doc_unavailable() {
    let Some((url, _)) = js_server() else {
        return;
    };
    let mut conn = SyncConnection::connect(&url, &peer_id(), None, TIMEOUT)
        .await
        .expect("connect");
    let unknown = DocumentId(*uuid::Uuid::new_v4().as_bytes()).to_string();
    let result = DocSync::new(unknown)
        .sync_until_settled(&mut conn, &mut Automerge::new(), Instant::now() + TIMEOUT)
        .await;
    assert!(
        matches!(result, Err(ConnectionError::DocUnavailable)),
        "{result:?}"
    );
}
