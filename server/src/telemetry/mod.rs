//! Traces: every request and every merge carries a trace id in its log lines (`trace_id`),
//! taken from the caller's W3C `traceparent` when it sent one ([`trace_context`]), and, when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set, their spans are exported over OTLP ([`otlp`]).
//!
//! With the export off nothing of OpenTelemetry is installed: the ids are made here (16 and 8
//! random bytes) and only written into the logs. With it on, the request's span is a child of
//! the caller's span, and the ids in the logs and in `traceresponse` are the exported ones.

pub mod otlp;
pub mod trace_context;

use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

pub use otlp::{Otlp, OtlpSettings};
pub use trace_context::{SpanId, TraceContext, TraceId, TRACEPARENT, TRACERESPONSE};

/// What the tracing middleware leaves in a request for the span that records it.
#[derive(Clone, Debug)]
pub struct RequestTrace {
    /// The caller's context, when its `traceparent` was valid.
    pub incoming: Option<TraceContext>,
    /// The request span's context, set once the span exists.
    slot: Arc<OnceLock<TraceContext>>,
}

impl RequestTrace {
    /// Records the request span's context (the first call wins).
    pub fn set(&self, context: TraceContext) {
        let _ = self.slot.set(context);
    }

    /// The request span's context, once set.
    pub fn get(&self) -> Option<TraceContext> {
        self.slot.get().copied()
    }
}

tokio::task_local! {
    /// The trace of the request a handler is serving, for work it hands to other tasks (a
    /// REST write's merge runs in the document's actor).
    static CURRENT: RequestTrace;
}

/// The trace context of the request being served by this task, if any.
pub fn current_trace() -> Option<TraceContext> {
    CURRENT.try_with(RequestTrace::get).ok().flatten()
}

/// Reads the caller's `traceparent` into the request (for the request span, made inside) and
/// answers `traceresponse` naming the request's span. Outermost but for the metrics layer, so
/// even a request refused by a layer carries its trace id.
pub async fn trace_requests(mut request: Request, next: Next) -> Response {
    let incoming = request
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse);
    let trace = RequestTrace {
        incoming,
        slot: Arc::new(OnceLock::new()),
    };
    request.extensions_mut().insert(trace.clone());
    let mut response = CURRENT.scope(trace.clone(), next.run(request)).await;
    if let Some(context) = trace.get() {
        if let Ok(value) = HeaderValue::from_str(&context.header()) {
            response.headers_mut().insert(TRACERESPONSE, value);
        }
    }
    response
}

/// Gives `span` (made with an empty `trace_id` field) its place in a trace: a child of
/// `parent` when there is one, otherwise a new trace; records `trace_id` and returns the
/// span's context. When spans are exported, the exported span carries the same ids; when not,
/// asking the (absent) OpenTelemetry layer is a type check that fails at once.
pub fn place_span(span: &tracing::Span, parent: Option<&TraceContext>) -> TraceContext {
    let context = otlp::place_span(span, parent)
        .unwrap_or_else(|| parent.map_or_else(TraceContext::new_root, TraceContext::child));
    span.record("trace_id", tracing::field::display(context.trace_id));
    context
}
