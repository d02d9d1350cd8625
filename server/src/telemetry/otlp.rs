//! OpenTelemetry export over OTLP/HTTP (protobuf), on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Spans go to `<endpoint>/v1/traces` through a batch processor on its own thread (the
//! OpenTelemetry SDK's; it reads the standard `OTEL_BSP_*` variables for its pacing), so a slow
//! or absent collector costs a full queue that drops spans, never a request's time. The service
//! is named by `OTEL_SERVICE_NAME` (default `splitsave`). [`Otlp::shutdown`] flushes what is
//! queued when the server stops.

use opentelemetry::trace::{
    SpanContext, SpanId as OtelSpanId, TraceContextExt, TraceFlags, TraceId as OtelTraceId,
    TraceState, TracerProvider as _,
};
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use super::trace_context::{SpanId, TraceContext, TraceId};

/// The installed exporter; keep it until shutdown.
pub struct Otlp {
    provider: SdkTracerProvider,
}

impl std::fmt::Debug for Otlp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Otlp").finish_non_exhaustive()
    }
}

/// Why the exporter could not be built.
#[derive(Debug, thiserror::Error)]
#[error("OTLP exporter: {0}")]
pub struct OtlpError(String);

impl Otlp {
    /// An exporter to `endpoint` (the collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT`
    /// names it) and the `tracing` layer that feeds it.
    pub fn start<S>(
        endpoint: &str,
        service_name: &str,
    ) -> Result<(Otlp, impl tracing_subscriber::Layer<S>), OtlpError>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
            .build()
            .map_err(|e| OtlpError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(service_name.to_owned())
                    .build(),
            )
            .build();
        let tracer = provider.tracer("splitsave");
        let layer = tracing_opentelemetry::layer().with_tracer(tracer);
        Ok((Otlp { provider }, layer))
    }

    /// Sends what is queued and stops the exporter.
    pub fn shutdown(self) {
        if let Err(err) = self.provider.shutdown() {
            eprintln!("splitsave: OTLP shutdown: {err}");
        }
    }
}

/// Makes the OpenTelemetry span behind `span` a child of `parent` (a caller's remote span)
/// and returns its ids; `None` when `span` is not recorded by OpenTelemetry.
pub(super) fn place_span(
    span: &tracing::Span,
    parent: Option<&TraceContext>,
) -> Option<TraceContext> {
    if let Some(parent) = parent {
        let remote = SpanContext::new(
            OtelTraceId::from_bytes(parent.trace_id.0),
            OtelSpanId::from_bytes(parent.span_id.0),
            if parent.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            },
            true,
            TraceState::default(),
        );
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let cx = span.context();
    let otel = cx.span().span_context().clone();
    if !otel.is_valid() {
        return None;
    }
    Some(TraceContext {
        trace_id: TraceId(otel.trace_id().to_bytes()),
        span_id: SpanId(otel.span_id().to_bytes()),
        sampled: otel.is_sampled(),
    })
}
