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

/// Where spans are exported: `OTEL_EXPORTER_OTLP_ENDPOINT` (the collector's base URL, such as
/// `http://otel-collector:4318`; `/v1/traces` is added) and `OTEL_SERVICE_NAME` (default
/// `splitsave`). Read before logging starts, so that the exporter is in place for the first
/// line; [`crate::config::Config`] holds the same settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OtlpSettings {
    /// The collector's base URL.
    pub endpoint: String,
    /// The service name spans carry.
    pub service_name: String,
}

impl OtlpSettings {
    /// `None` when `OTEL_EXPORTER_OTLP_ENDPOINT` is unset or blank (the export is off).
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<OtlpSettings>, crate::config::ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let Some(endpoint) = var("OTEL_EXPORTER_OTLP_ENDPOINT") else {
            return Ok(None);
        };
        let parsed = reqwest::Url::parse(&endpoint).ok().filter(|u| {
            matches!(u.scheme(), "http" | "https") && u.has_host() && u.query().is_none()
        });
        if parsed.is_none() {
            return Err(crate::config::ConfigError::Invalid {
                var: "OTEL_EXPORTER_OTLP_ENDPOINT",
                reason: format!("{endpoint:?} is not an http(s) URL"),
            });
        }
        Ok(Some(OtlpSettings {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| "splitsave".into()),
        }))
    }
}

/// Longest one export (one batch of spans) may take.
const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

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
        settings: &OtlpSettings,
    ) -> Result<(Otlp, impl tracing_subscriber::Layer<S>), OtlpError>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(format!("{}/v1/traces", settings.endpoint))
            // One export may not hold the exporter thread (or the flush at shutdown, inside the
            // orchestrator's grace period) longer than this when the collector is away.
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| OtlpError(e.to_string()))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(
                Resource::builder()
                    .with_service_name(settings.service_name.clone())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<Option<OtlpSettings>, crate::config::ConfigError> {
        OtlpSettings::from_lookup(&crate::config::test_lookup(vars))
    }

    #[test]
    fn the_export_is_off_unless_an_endpoint_is_named() {
        assert_eq!(read(&[]).unwrap(), None);
        assert_eq!(
            read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "  ")]).unwrap(),
            None
        );
        let on = read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")])
            .unwrap()
            .expect("on");
        assert_eq!(on.endpoint, "http://collector:4318");
        assert_eq!(on.service_name, "splitsave");
        let named = read(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example.com"),
            ("OTEL_SERVICE_NAME", "splitsave-eu"),
        ])
        .unwrap()
        .expect("on");
        assert_eq!(named.service_name, "splitsave-eu");
        for bad in [
            "collector:4318",
            "grpc://collector:4317",
            "http://",
            "http://c?x=1",
        ] {
            assert!(
                read(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]).is_err(),
                "{bad}"
            );
        }
    }
}
