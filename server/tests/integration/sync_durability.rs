//! Durability of acknowledged merges across a crash: a Rust client streams small expenses, one
//! change at a time, each synced until the server acknowledges it (its sync message reports
//! heads that include the change, which it sends only after the commit); the test kills the
//! real `splitsave` process with SIGKILL in the middle of the stream, restarts it on the same
//! data directory and database, and checks that every acknowledged expense is in the document a
//! fresh client syncs and in the materialized `expenses` table. On SQLite, and on PostgreSQL when
//! `TEST_DATABASE_URL` is set.

use std::collections::BTreeSet;
use std::time::Duration;

use automerge::Automerge;
use splitsave_client::connection::{ConnectionError, DocSync, SyncConnection};
use splitsave_sync_core::materialize::{Row, RowChange};
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use crate::common::Backend;
use crate::real_server::{add_expense, expense, RealServer, SYNC_DEADLINE};

/// Acknowledged changes to wait for before the kill.
const KILL_AFTER_ACKS: usize = 120;

/// A bound on the stream in case the kill never lands.
const MAX_CHANGES: usize = 5_000;

/// What the streaming client saw: the acknowledged expense ids in order, the id of a change that
/// was sent but not acknowledged when the stream broke, and the error that broke it.
struct Streamed {
    acknowledged: Vec<Uuid>,
    in_flight: Option<Uuid>,
    ended_by: Option<ConnectionError>,
}

/// Adds one expense per change and syncs each until the server acknowledges it, publishing the
/// count of acknowledged changes, until the connection breaks.
async fn stream_expenses(
    url: String,
    user: Uuid,
    document_id: String,
    progress: watch::Sender<usize>,
) -> Streamed {
    let mut streamed = Streamed {
        acknowledged: Vec::new(),
        in_flight: None,
        ended_by: None,
    };
    let peer = format!("streamer-{}", Uuid::new_v4().simple());
    let mut conn = match SyncConnection::connect(&url, &peer, None, Duration::from_secs(10)).await {
        Ok(conn) => conn,
        Err(err) => {
            streamed.ended_by = Some(err);
            return streamed;
        }
    };
    let mut sync = DocSync::new(document_id);
    let mut doc = Automerge::new();
    if let Err(err) = sync
        .sync_until_settled(&mut conn, &mut doc, Instant::now() + SYNC_DEADLINE)
        .await
    {
        streamed.ended_by = Some(err);
        return streamed;
    }
    for i in 0..MAX_CHANGES {
        let id = Uuid::new_v4();
        add_expense(&mut doc, user, id, &format!("Coffee {i}"), 350 + i as i64);
        streamed.in_flight = Some(id);
        match sync
            .sync_until_settled(&mut conn, &mut doc, Instant::now() + SYNC_DEADLINE)
            .await
        {
            Ok(()) => {
                streamed.in_flight = None;
                streamed.acknowledged.push(id);
                let _ = progress.send(streamed.acknowledged.len());
            }
            Err(err) => {
                streamed.ended_by = Some(err);
                break;
            }
        }
    }
    streamed
}

async fn acknowledged_expenses_survive_a_sigkill(backend: Backend) {
    let env = [
        // Streaming as fast as the server acknowledges is not what the rate limit is for.
        ("SYNC_MESSAGES_PER_SECOND", "100000"),
        ("SYNC_MESSAGE_BURST", "100000"),
        // Compact during the stream, so the kill may also land in a compaction.
        ("SYNC_COMPACT_AFTER", "15"),
    ];
    let Some(mut server) = RealServer::start(backend, &env).await else {
        return;
    };
    let couple = server.register_couple().await;

    let (progress, mut acks) = watch::channel(0usize);
    let streamer = tokio::spawn(stream_expenses(
        server.ws_url(&couple.a.token),
        couple.a.id,
        couple.document_id.clone(),
        progress,
    ));
    tokio::time::timeout(
        Duration::from_secs(60),
        acks.wait_for(|n| *n >= KILL_AFTER_ACKS),
    )
    .await
    .expect("the stream reaches the kill point within 60 s")
    .expect("the streamer is running");
    let started = Instant::now();
    server.kill();
    let streamed = tokio::time::timeout(Duration::from_secs(30), streamer)
        .await
        .expect("the stream ends once the server is gone")
        .expect("streamer task");
    eprintln!(
        "{backend:?}: killed with SIGKILL after {} acknowledged changes; change in flight: {:?}; \
         the client saw: {:?}",
        streamed.acknowledged.len(),
        streamed.in_flight,
        streamed.ended_by.as_ref().map(ToString::to_string),
    );
    assert!(
        streamed.ended_by.is_some(),
        "the stream ended because the server died"
    );
    assert!(streamed.acknowledged.len() >= KILL_AFTER_ACKS);

    server.restart().await;
    eprintln!(
        "{backend:?}: restarted and healthy {} ms after the kill",
        started.elapsed().as_millis()
    );

    // A fresh client: it holds nothing, so whatever it sees comes from the server's storage.
    let (_conn, _sync, doc) = server
        .fetch_document(&couple.b.token, &couple.document_id)
        .await;
    let missing: Vec<&Uuid> = streamed
        .acknowledged
        .iter()
        .filter(|id| expense(&doc, **id).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged expenses lost in the document: {missing:?}",
        missing.len(),
        streamed.acknowledged.len()
    );
    if let Some(id) = streamed.in_flight {
        eprintln!(
            "{backend:?}: the unacknowledged change in flight is {}",
            if expense(&doc, id).is_some() {
                "present (committed, its acknowledgement lost)"
            } else {
                "absent"
            }
        );
    }

    let store = splitsave_server::store::connect(&server.db.url)
        .await
        .expect("open the server's database");
    let rows: BTreeSet<Uuid> = store
        .materialized_rows(couple.partnership_id)
        .await
        .expect("materialized rows")
        .into_iter()
        .filter_map(|row| match row {
            RowChange::Upsert(Row::Expense(e)) => Some(e.id.0),
            _ => None,
        })
        .collect();
    let missing_rows: Vec<&Uuid> = streamed
        .acknowledged
        .iter()
        .filter(|id| !rows.contains(id))
        .collect();
    assert!(
        missing_rows.is_empty(),
        "{} of {} acknowledged expenses missing from the expenses table: {missing_rows:?}",
        missing_rows.len(),
        streamed.acknowledged.len()
    );
}

#[tokio::test]
async fn acknowledged_expenses_survive_a_sigkill_on_sqlite() {
    acknowledged_expenses_survive_a_sigkill(Backend::Sqlite).await;
}

#[tokio::test]
async fn acknowledged_expenses_survive_a_sigkill_on_postgres() {
    acknowledged_expenses_survive_a_sigkill(Backend::Postgres).await;
}
