//! Trace ids: a request joins the caller's W3C trace (`traceparent`) and says which trace and
//! span it was (`traceresponse`); a REST write's merge continues its request's trace; with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` set, the real server exports both spans to an OTLP collector
//! (a local stand-in here) and its log lines carry the same trace id.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::json;

use crate::common::{Backend, TestApp};
use crate::real_server::{default_backend, RealServer};

const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The `traceresponse` of a request to `path` sending `traceparent` (when given).
async fn traceresponse(app: &TestApp, path: &str, traceparent: Option<&str>) -> String {
    let mut request = reqwest::Client::new().get(app.url(path));
    if let Some(value) = traceparent {
        request = request.header("traceparent", value);
    }
    let response = request.send().await.expect("request");
    response
        .headers()
        .get("traceresponse")
        .expect("every response names its trace")
        .to_str()
        .expect("ascii")
        .to_string()
}

/// `00-<trace>-<span>-<flags>` split into its parts, checked for shape.
fn parts(header: &str) -> (String, String, String) {
    let p: Vec<&str> = header.split('-').collect();
    assert_eq!(p.len(), 4, "{header}");
    assert_eq!(p[0], "00", "{header}");
    assert_eq!(p[1].len(), 32, "{header}");
    assert_eq!(p[2].len(), 16, "{header}");
    assert!(
        header
            .bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "{header}"
    );
    (p[1].to_string(), p[2].to_string(), p[3].to_string())
}

#[tokio::test]
async fn a_request_joins_the_callers_trace_and_names_its_own_span() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (trace, span, flags) = parts(&traceresponse(&app, "/healthz", Some(CALLER)).await);
    assert_eq!(trace, CALLER_TRACE, "the caller's trace continues");
    assert_ne!(span, "00f067aa0ba902b7", "the server's span is its own");
    assert_eq!(flags, "01", "the caller's sampling is kept");

    // Even a request refused before any handler (unknown route, no token) is traced.
    let (trace, _, _) = parts(&traceresponse(&app, "/api/expenses", Some(CALLER)).await);
    assert_eq!(trace, CALLER_TRACE);
}

#[tokio::test]
async fn without_a_valid_traceparent_each_request_starts_a_new_trace() {
    let Some(app) = TestApp::spawn(Backend::Sqlite).await else {
        return;
    };
    let (a, _, _) = parts(&traceresponse(&app, "/healthz", None).await);
    let (b, _, _) = parts(&traceresponse(&app, "/healthz", None).await);
    assert_ne!(a, b);
    assert_ne!(a, "0".repeat(32));
    for garbage in [
        "garbage",
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
    ] {
        let (trace, _, _) = parts(&traceresponse(&app, "/healthz", Some(garbage)).await);
        assert_ne!(trace, CALLER_TRACE, "{garbage}");
        assert!(!garbage.contains(&trace), "never echoed: {garbage}");
    }
}

/// An OTLP/HTTP collector stand-in: keeps the body of every `POST /v1/traces`.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Bytes>>>);

impl Collector {
    async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the collector");
        let addr = listener.local_addr().expect("address");
        let router = axum::Router::new()
            .route("/v1/traces", post(collect))
            .with_state(self.clone());
        tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("collector serves");
        });
        format!("http://{addr}")
    }

    /// Every exported span batch, concatenated.
    fn received(&self) -> Vec<u8> {
        self.0.lock().unwrap().iter().flatten().copied().collect()
    }
}

async fn collect(State(c): State<Collector>, body: Bytes) -> StatusCode {
    c.0.lock().unwrap().push(body);
    StatusCode::OK
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

#[tokio::test]
async fn with_otlp_on_the_request_and_its_merge_are_exported_in_the_callers_trace() {
    let collector = Collector::default();
    let endpoint = collector.start().await;
    let Some(server) = RealServer::start(
        default_backend(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_SERVICE_NAME", "splitsave-test"),
            // The SDK's batch processor: export every 100 ms rather than every 5 s.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
            // Each request's "finished processing request" line.
            ("RUST_LOG", "info,sqlx=warn"),
        ],
    )
    .await
    else {
        return;
    };
    let couple = server.register_couple().await;
    let response = reqwest::Client::new()
        .post(server.url("/api/expenses"))
        .bearer_auth(&couple.a.token)
        .header("traceparent", CALLER)
        .json(&json!({"name": "Rent", "amount": "100.00", "category": "housing", "frequency": "monthly"}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::CREATED);
    let answered = response.headers()["traceresponse"]
        .to_str()
        .expect("ascii")
        .to_string();
    let (trace, span, _) = parts(&answered);
    assert_eq!(trace, CALLER_TRACE);

    // Exported: the request span (child of the caller's span) and the merge span beneath it,
    // both in the caller's trace, from the named service.
    let trace_bytes = hex::decode(CALLER_TRACE).expect("hex");
    let span_bytes = hex::decode(&span).expect("hex");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = collector.received();
        let done = count(&got, &trace_bytes) >= 2
            && count(&got, b"merge") >= 1
            && count(&got, &span_bytes) >= 2
            && count(&got, b"splitsave-test") >= 1;
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the collector got {} bytes, trace id {} times; server log:\n{}",
            got.len(),
            count(&got, &trace_bytes),
            server.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The request's log line carries the trace id too.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.log_tail().lines().any(|l| {
        l.contains("path=/api/expenses") && l.contains(&format!("trace_id={CALLER_TRACE}"))
    }) {
        assert!(Instant::now() < deadline, "{}", server.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
