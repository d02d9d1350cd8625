//! The limits of `/sync` against the real `splitsave` binary, whose memory the tests read from
//! `/proc/<pid>/status`: an oversized frame, a small change that expands to 10 MB of text, a
//! message of 10,000 tiny changes, undecodable bytes and corrupt Automerge data, and more
//! messages per second than allowed. Each closes the offending connection with an `error`
//! message (or a close), quickly, before anything is applied and with the server's memory barely
//! moving; the server keeps serving everyone else. The measured times and memory deltas are
//! printed so they can be quoted.

use std::time::Duration;

use automerge::sync::{self, MessageVersion, SyncDoc};
use automerge::transaction::Transactable;
use automerge::{Automerge, ObjType, ReadDoc, ROOT};
use splitsave_client::connection::{ConnectionError, DocSync, SyncConnection};
use splitsave_sync_core::document::read_document;
use splitsave_sync_core::protocol::WireMessage;
use tokio::time::Instant;
use uuid::Uuid;

use crate::real_server::{
    add_expense, default_backend, expense, Couple, RealServer, SYNC_DEADLINE,
};

/// How fast a refusal must come.
const REFUSAL_WITHIN: Duration = Duration::from_secs(2);

/// How much the server's resident memory (and its peak) may grow while refusing.
const MEMORY_BUDGET_KIB: u64 = 64 * 1024;

/// How the server ended a connection.
#[derive(Debug)]
enum Ending {
    /// An `error` message with this reason (then the close).
    Refused(String),
    /// Closed (close frame or reset) without an `error` message.
    Closed(String),
}

/// Reads until the server ends the connection; anything else it sends meanwhile (presence, sync
/// replies) is skipped. Panics if the connection is still open at `deadline`.
async fn ending(conn: &mut SyncConnection, deadline: Instant) -> Ending {
    loop {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Err(_) => panic!("the server did not close the connection in time"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => return Ending::Closed("closed".into()),
            Ok(Err(ConnectionError::Refused(reason))) => return Ending::Refused(reason),
            Ok(Err(err)) => return Ending::Closed(err.to_string()),
        }
    }
}

/// The server's `VmRSS` and `VmHWM` (peak) in KiB.
fn memory(server: &RealServer) -> (u64, u64) {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.pid())).expect("proc status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("memory field")
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A measurement around one refusal.
struct Measured {
    ending: Ending,
    elapsed: Duration,
    rss_delta_kib: i64,
    peak_delta_kib: i64,
}

impl Measured {
    fn report(&self, what: &str) {
        eprintln!(
            "{what}: {:?} after {:.1?}; VmRSS {:+} KiB, VmHWM (peak) {:+} KiB",
            self.ending, self.elapsed, self.rss_delta_kib, self.peak_delta_kib
        );
    }

    /// Refused with an `error` message naming `reason`, in time, within the memory budget.
    fn assert_refused_cheaply(&self, what: &str, reason: &str) {
        self.report(what);
        match &self.ending {
            Ending::Refused(r) => assert!(r.contains(reason), "{what}: refused with {r:?}"),
            Ending::Closed(c) => panic!("{what}: closed without an error message ({c})"),
        }
        assert!(
            self.elapsed < REFUSAL_WITHIN,
            "{what}: refused after {:?}",
            self.elapsed
        );
        assert!(
            self.rss_delta_kib < MEMORY_BUDGET_KIB as i64,
            "{what}: VmRSS grew by {} KiB",
            self.rss_delta_kib
        );
        assert!(
            self.peak_delta_kib < MEMORY_BUDGET_KIB as i64,
            "{what}: peak memory grew by {} KiB",
            self.peak_delta_kib
        );
    }
}

/// Sends `bytes` as one frame on `conn` and measures until the server ends the connection.
async fn send_and_measure(
    server: &RealServer,
    conn: &mut SyncConnection,
    bytes: Vec<u8>,
) -> Measured {
    let (rss_before, peak_before) = memory(server);
    let started = Instant::now();
    // The server may close before it read the whole frame: a failed send is part of the answer.
    let sent = conn.send_raw(bytes).await;
    let ending = match sent {
        Ok(()) => ending(conn, Instant::now() + Duration::from_secs(30)).await,
        Err(err) => Ending::Closed(format!("send failed: {err}")),
    };
    let elapsed = started.elapsed();
    let (rss_after, peak_after) = memory(server);
    Measured {
        ending,
        elapsed,
        rss_delta_kib: rss_after as i64 - rss_before as i64,
        peak_delta_kib: peak_after as i64 - peak_before as i64,
    }
}

/// A `sync` message about the couple's document carrying `data`.
fn sync_envelope(conn: &SyncConnection, couple: &Couple, data: Vec<u8>) -> Vec<u8> {
    splitsave_sync_core::protocol::encode(&WireMessage::Sync {
        sender_id: conn.peer_id().to_string(),
        target_id: conn.server_peer_id().to_string(),
        document_id: couple.document_id.clone(),
        data,
    })
}

/// A V1 sync message from `doc`'s exchange that carries exactly the changes made since
/// `since`, each as its own (compressed) change chunk, whatever automerge would choose to send.
fn message_with_changes_since(
    doc: &Automerge,
    state: &mut sync::State,
    since: &[automerge::ChangeHash],
) -> Vec<u8> {
    let chunks = doc
        .get_changes(since)
        .into_iter()
        .map(|mut c| c.bytes().into_owned())
        .collect();
    message_with_chunks(doc, state, chunks, MessageVersion::V1)
}

/// The server still serves: healthy, and a fresh client of the partner syncs the document;
/// returns that document.
async fn still_serving(server: &RealServer, couple: &Couple) -> Automerge {
    assert!(server.healthy().await, "the server is healthy");
    let (_conn, _sync, doc) = server
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;
    doc
}

async fn start(env: &[(&str, &str)]) -> (RealServer, Couple) {
    let server = RealServer::start(default_backend(), env)
        .await
        .expect("SQLite is always available");
    let couple = server.register_couple().await;
    (server, couple)
}

#[tokio::test]
async fn a_frame_over_the_limit_closes_the_connection() {
    let (server, couple) = start(&[("SYNC_MAX_MESSAGE_BYTES", "1048576")]).await;
    let (mut conn, _sync, _doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;

    let measured = send_and_measure(&server, &mut conn, vec![0xA5; 2 * 1024 * 1024]).await;
    measured.report("2 MiB frame over a 1 MiB limit");
    assert!(
        measured.elapsed < REFUSAL_WITHIN,
        "closed after {:?}",
        measured.elapsed
    );
    assert!(
        measured.rss_delta_kib < MEMORY_BUDGET_KIB as i64,
        "VmRSS grew by {} KiB",
        measured.rss_delta_kib
    );
    if let Ending::Refused(reason) = &measured.ending {
        assert!(reason.contains("connection error"), "{reason}");
    }
    still_serving(&server, &couple).await;
}

/// 10 MB of repeated text spliced into a Text object, built once per test process (automerge
/// takes seconds for it): its one change, compressed as automerge sends it, and the whole
/// document saved (what a version-2 sync message carries).
struct TextBomb {
    change: Vec<u8>,
    document: Vec<u8>,
}

async fn text_bomb() -> &'static TextBomb {
    static BOMB: tokio::sync::OnceCell<TextBomb> = tokio::sync::OnceCell::const_new();
    BOMB.get_or_init(|| async {
        tokio::task::spawn_blocking(|| {
            let built = Instant::now();
            // A change with no dependencies applies to any document: it only creates
            // `notes` at the root.
            let mut doc = Automerge::new();
            let text = "SplitSave ".repeat(1_000_000);
            doc.transact(|tx| {
                let notes = tx.put_object(ROOT, "notes", ObjType::Text)?;
                tx.splice_text(&notes, 0, 0, &text)
            })
            .expect("splice 10 MB of text");
            let mut change = doc.get_last_local_change().expect("the change");
            let bomb = TextBomb {
                change: change.bytes().into_owned(),
                document: doc.save(),
            };
            eprintln!(
                "10 MB of text: a {} byte change ({} bytes as a whole document), built in {} ms",
                bomb.change.len(),
                bomb.document.len(),
                built.elapsed().as_millis()
            );
            bomb
        })
        .await
        .expect("build the text change")
    })
    .await
}

/// A sync message from `state` (heads, have) carrying `chunks` instead of what automerge chose.
fn message_with_chunks(
    doc: &Automerge,
    state: &mut sync::State,
    chunks: Vec<Vec<u8>>,
    version: MessageVersion,
) -> Vec<u8> {
    let mut message = doc
        .generate_sync_message(state)
        .unwrap_or_else(|| sync::Message {
            heads: doc.get_heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: sync::ChunkList::empty(),
            flags: None,
            version: MessageVersion::V1,
        });
    message.changes = chunks.into();
    message.version = version;
    message.encode()
}

#[tokio::test]
async fn ten_mb_of_text_in_a_small_change_is_refused_before_apply() {
    let (server, couple) = start(&[]).await;
    let bomb = text_bomb().await;
    let (mut conn, mut sync, doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();
    let data = message_with_chunks(
        &doc,
        &mut sync.state,
        vec![bomb.change.clone()],
        MessageVersion::V1,
    );
    let frame = sync_envelope(&conn, &couple, data);
    assert!(
        frame.len() < 128 * 1024,
        "the change compresses well: {} bytes",
        frame.len()
    );

    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply("10 MB of text in one change", "a change is too large");

    let seen = still_serving(&server, &couple).await;
    assert_eq!(seen.get_heads(), heads_before, "nothing was applied");
    assert!(seen.get(ROOT, "notes").expect("read").is_none());
}

#[tokio::test]
async fn a_whole_document_chunk_is_refused_before_apply() {
    let (server, couple) = start(&[]).await;
    let bomb = text_bomb().await;
    let (mut conn, mut sync, doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();
    // What automerge sends, as a version-2 message, when it has much the other side lacks:
    // its whole document, whose expansion cannot be bounded without loading it.
    let data = message_with_chunks(
        &doc,
        &mut sync.state,
        vec![bomb.document.clone()],
        MessageVersion::V2,
    );
    let frame = sync_envelope(&conn, &couple, data);

    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply("10 MB of text as a whole-document chunk", "whole-document");

    let seen = still_serving(&server, &couple).await;
    assert_eq!(seen.get_heads(), heads_before, "nothing was applied");
    assert!(seen.get(ROOT, "notes").expect("read").is_none());
}

#[tokio::test]
async fn more_changes_than_a_message_may_carry_are_refused_before_apply() {
    let (server, couple) = start(&[("SYNC_MAX_MESSAGE_CHANGES", "5000")]).await;
    let (mut conn, mut sync, mut doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();

    for i in 0..10_000i64 {
        doc.transact(|tx| tx.put(ROOT, "tick", i))
            .expect("tiny change");
    }
    let data = message_with_changes_since(&doc, &mut sync.state, &heads_before);
    let frame = sync_envelope(&conn, &couple, data);
    eprintln!("10,000 tiny changes: {} bytes on the wire", frame.len());

    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply("10,000 tiny changes", "too many changes");

    let seen = still_serving(&server, &couple).await;
    assert_eq!(seen.get_heads(), heads_before, "nothing was applied");
    assert!(seen.get(ROOT, "tick").expect("read").is_none());
}

/// Polls (with a deadline) until storage serves the partner `heads`: the backlog was taken.
async fn wait_until_served(server: &RealServer, couple: &Couple, heads: &[automerge::ChangeHash]) {
    let mut want = heads.to_vec();
    want.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_conn, _sync, seen) = server
            .fetch_document(&couple.b.token, &couple.document_id)
            .await;
        let mut got = seen.get_heads();
        got.sort();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the backlog was not taken: server log:\n{}",
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_device_back_after_ten_thousand_offline_changes_catches_up() {
    // More than one merge may hold (SYNC_MAX_CHANGES, 5,000): automerge sends the whole
    // backlog in one message, and the server takes it in several merges.
    let (server, couple) = start(&[]).await;
    let (mut conn, mut sync, mut doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();
    let mut expected = Vec::new();
    for i in 0..10_000i64 {
        let id = Uuid::now_v7();
        doc.transact(|tx| {
            // Each change adds one small expense, the way an app offline for months would.
            let e = splitsave_sync_core::write::new_entity(
                tx,
                splitsave_sync_core::schema::Collection::Expenses,
                &id.to_string(),
            )?;
            // Free text as Text, the declared type (a scalar name would be normalized).
            splitsave_sync_core::write::put_text(tx, &e, "name", &format!("Coffee {i}"))?;
            tx.put(&e, "amount", 350)?;
            tx.put(&e, "category", "dining")?;
            tx.put(&e, "frequency", "weekly")?;
            tx.put(&e, "added_by", couple.a.id.to_string())?;
            tx.put(&e, "status", "active")?;
            tx.put(&e, "created_at", 1_764_000_000_000 + i)?;
            tx.put(&e, "updated_at", 1_764_000_000_000 + i)
        })
        .expect("an offline change");
        expected.push(id);
    }
    let message = doc
        .generate_sync_message(&mut sync.state)
        .expect("a sync message");
    assert!(
        message.changes.len() >= 9_990,
        "automerge sent {} of the 10,000 changes",
        message.changes.len()
    );
    let frame = sync_envelope(&conn, &couple, message.encode());
    eprintln!(
        "a backlog of 10,000 expenses: {} KiB on the wire",
        frame.len() / 1024
    );
    let started = Instant::now();
    conn.send_raw(frame).await.expect("sent");
    // The exchange goes on until the server holds every change (the few automerge may have
    // left out of the first message follow in the next).
    let mut ours = doc.get_heads();
    ours.sort();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let message =
            tokio::time::timeout_at(deadline, conn.recv_for_document(&couple.document_id))
                .await
                .expect("the server answers")
                .expect("no protocol error")
                .expect("the connection stays open");
        if let WireMessage::Sync { data, .. } | WireMessage::Request { data, .. } = message {
            let decoded = sync::Message::decode(&data).expect("a sync message");
            doc.receive_sync_message(&mut sync.state, decoded)
                .expect("applies");
            let mut theirs = sync.state.their_heads.clone().unwrap_or_default();
            theirs.sort();
            if theirs == ours {
                break;
            }
            if let Some(next) = doc.generate_sync_message(&mut sync.state) {
                let frame = sync_envelope(&conn, &couple, next.encode());
                conn.send_raw(frame).await.expect("sent");
            }
        }
    }
    eprintln!(
        "10,000 offline changes acknowledged in {} ms",
        started.elapsed().as_millis()
    );
    wait_until_served(&server, &couple, &ours).await;
    // Every expense is in the materialized split: 10,000 weekly 3.50.
    let (status, body) = server
        .get_json("/api/expenses/split-calculation", &couple.b.token)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["active_expenses"], 10_000, "{body}");
    assert_eq!(body["totals"]["weekly"], "35000.00", "{body}");
    let mut stored = read_document(&still_serving(&server, &couple).await)
        .expect("readable")
        .expenses
        .into_iter()
        .map(|e| e.id.0)
        .collect::<Vec<_>>();
    stored.sort();
    expected.sort();
    assert_eq!(stored, expected, "every expense, once");
    assert_ne!(doc.get_heads(), heads_before);
}

/// Writes `write` (given the `expenses` map) as Ann's app would and checks that the server
/// refuses the message with `reason`, quickly and before anything is applied.
async fn refused_before_apply(
    what: &str,
    reason: &str,
    write: impl FnOnce(
        &mut automerge::transaction::Transaction<'_>,
        &automerge::ObjId,
    ) -> Result<(), automerge::AutomergeError>,
) {
    let (server, couple) = start(&[]).await;
    let (mut conn, mut sync, mut doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();
    let expenses = doc
        .get(ROOT, "expenses")
        .expect("read")
        .expect("the expenses map")
        .1;
    doc.transact(|tx| write(tx, &expenses)).expect(what);
    let data = message_with_changes_since(&doc, &mut sync.state, &heads_before);
    let frame = sync_envelope(&conn, &couple, data);
    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply(what, reason);
    let seen = still_serving(&server, &couple).await;
    assert_eq!(seen.get_heads(), heads_before, "nothing was applied");
}

#[tokio::test]
async fn a_value_larger_than_allowed_is_refused_before_apply() {
    // A 900 KB name: enforcement would remove it from the document, but it would stay in the
    // history every replica downloads.
    refused_before_apply("a 900 KB name", "a value is too large", |tx, expenses| {
        let e = tx.put_object(expenses, Uuid::now_v7().to_string(), ObjType::Map)?;
        tx.put(&e, "name", "x".repeat(900_000))
    })
    .await;
}

#[tokio::test]
async fn a_map_key_longer_than_allowed_is_refused_before_apply() {
    // Not a UUID, so enforcement would remove the entry; its 100 KB key would stay in history.
    refused_before_apply("a 100 KB key", "a key is too long", |tx, expenses| {
        tx.put(expenses, "k".repeat(100_000), 1)
    })
    .await;
}

#[tokio::test]
async fn text_grown_past_the_value_limit_is_refused_before_apply() {
    // The way a JS client writes a long name: a Text object, spliced.
    refused_before_apply(
        "40,000 characters of text",
        "a value is too large",
        |tx, expenses| {
            let e = tx.put_object(expenses, Uuid::now_v7().to_string(), ObjType::Map)?;
            let name = tx.put_object(&e, "name", ObjType::Text)?;
            tx.splice_text(&name, 0, 0, &"y".repeat(40_000))
        },
    )
    .await;
}

#[tokio::test]
async fn thousands_of_tiny_changes_with_many_operations_each_are_refused_quickly() {
    let (server, couple) = start(&[]).await;
    let (mut conn, mut sync, doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();

    // 300,000 null insertions run-length-encode to about a hundred bytes; automerge parses
    // every one of them when it reads the change.
    let mut dense = Automerge::new();
    dense
        .transact(|tx| {
            let list = tx.put_object(ROOT, "dense", ObjType::List)?;
            tx.splice(
                &list,
                0,
                0,
                std::iter::repeat_n(automerge::ScalarValue::Null, 300_000),
            )
        })
        .expect("a dense change");
    let mut change = dense.get_last_local_change().expect("the change");
    let chunk = change.bytes().into_owned();
    let data = message_with_chunks(
        &doc,
        &mut sync.state,
        vec![chunk.clone(); 4_000],
        MessageVersion::V1,
    );
    let frame = sync_envelope(&conn, &couple, data);
    eprintln!(
        "4,000 changes of 300,000 operations each: {} bytes per change, {} on the wire",
        chunk.len(),
        frame.len()
    );

    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply(
        "4,000 changes of 300,000 operations each",
        "too many operations",
    );

    let seen = still_serving(&server, &couple).await;
    assert_eq!(seen.get_heads(), heads_before, "nothing was applied");
}

#[tokio::test]
async fn garbage_and_corrupt_automerge_data_close_only_that_connection() {
    let (server, couple) = start(&[]).await;
    // The partner stays connected throughout and must keep syncing.
    let (mut partner, mut partner_sync, mut partner_doc) = server
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;

    let (mut conn, _sync, _doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let garbage = b"\xff\xfe not CBOR at all \x00\x01\x02".to_vec();
    let measured = send_and_measure(&server, &mut conn, garbage).await;
    measured.assert_refused_cheaply("bad CBOR", "malformed message");

    let (mut conn, _sync, _doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let frame = sync_envelope(
        &conn,
        &couple,
        vec![0x42, 0x13, 0x37, 0xde, 0xad, 0xbe, 0xef],
    );
    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply("sync data that is no Automerge sync message", "malformed");

    // A well-formed sync message whose change chunk is corrupt (one byte flipped in the middle,
    // so the checksum no longer matches).
    let (mut conn, mut sync, mut doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;
    let heads_before = doc.get_heads();
    add_expense(&mut doc, couple.a.id, Uuid::new_v4(), "Corrupted", 100);
    let data = message_with_changes_since(&doc, &mut sync.state, &heads_before);
    let mut message = sync::Message::decode(&data).expect("our own message decodes");
    let mut chunks: Vec<Vec<u8>> = message.changes.iter().map(<[u8]>::to_vec).collect();
    assert_eq!(chunks.len(), 1, "one change");
    let middle = chunks[0].len() / 2;
    chunks[0][middle] ^= 0xff;
    message.changes = chunks.into();
    let frame = sync_envelope(&conn, &couple, message.encode());
    let measured = send_and_measure(&server, &mut conn, frame).await;
    measured.assert_refused_cheaply("a corrupt change chunk", "malformed");

    // The partner's connection is unaffected: its own change is acknowledged.
    let id = Uuid::new_v4();
    add_expense(&mut partner_doc, couple.b.id, id, "Still here", 200);
    partner_sync
        .sync_until_settled(
            &mut partner,
            &mut partner_doc,
            Instant::now() + SYNC_DEADLINE,
        )
        .await
        .expect("the partner keeps syncing");
    let seen = still_serving(&server, &couple).await;
    assert!(expense(&seen, id).is_some());
    assert!(
        seen.get_change_by_hash(&heads_before[0]).is_some(),
        "the document is intact"
    );
}

#[tokio::test]
async fn more_messages_per_second_than_allowed_close_the_connection() {
    let (server, couple) = start(&[
        ("SYNC_MESSAGES_PER_SECOND", "5"),
        ("SYNC_MESSAGE_BURST", "10"),
    ])
    .await;
    let (mut conn, mut sync, _doc) = server
        .fetch_document(&couple.a.token, &couple.document_id)
        .await;

    let started = Instant::now();
    let mut sent = 0;
    for _ in 0..50 {
        if sync.send_ephemeral(&mut conn, vec![0xf6]).await.is_err() {
            break;
        }
        sent += 1;
    }
    let ending = ending(&mut conn, Instant::now() + Duration::from_secs(10)).await;
    eprintln!(
        "rate limit (5/s, bursts of 10): {sent} messages sent, {ending:?} after {} ms",
        started.elapsed().as_millis()
    );
    match ending {
        Ending::Refused(reason) => assert!(reason.contains("rate limit exceeded"), "{reason}"),
        Ending::Closed(c) => panic!("closed without an error message ({c})"),
    }
    let mut conn = server.connect(&couple.a.token).await;
    let mut sync = DocSync::new(couple.document_id.clone());
    let mut doc = Automerge::new();
    sync.sync_until_settled(&mut conn, &mut doc, Instant::now() + SYNC_DEADLINE)
        .await
        .expect("a new connection of the same user syncs");
}
