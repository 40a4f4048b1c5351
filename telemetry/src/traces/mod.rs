//! Span export (OTLP/HTTP by default, Zipkin v2 or none) and context
//! propagation (B3 multi-header + W3C trace-context).
//!
//! OTLP is what Jaeger v2 and every OpenTelemetry collector take natively.
//! Istio's proxies still report to Jaeger's Zipkin receiver and propagate B3
//! (the mesh's `zipkin` provider; its `opentelemetry` provider propagates W3C
//! only), so the services read and write B3 as well as `traceparent` whatever
//! they export: the proxies' spans and the services' spans join one trace.
//!
//! Beside it: [`otlp`] (the default exporter), [`resource`] (who made a
//! span), [`zipkin`] (the Zipkin choice and its workarounds, on that path
//! alone), [`reporting`] (export failures said in the log).

mod otlp;
mod reporting;
mod resource;
mod zipkin;

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanExporter,
};
// Deprecated with the whole crate at 0.32 (its exporter is the reason); the
// B3 propagator moves to `opentelemetry-propagator-b3` from 0.33, which
// this workspace's OpenTelemetry line cannot take yet (see Cargo.toml).
#[allow(deprecated)]
use opentelemetry_zipkin::{B3Encoding, Propagator as B3Propagator};

use self::reporting::Reporting;
use crate::settings::{TelemetrySettings, TracesExporter};

pub(crate) use self::otlp::parse_headers;
pub use self::resource::SERVICE_NAMESPACE;

/// How long one export may take before it is abandoned (the batch is dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export; past this, new spans are dropped, so an
/// unreachable collector costs bounded memory.
const MAX_QUEUE_SIZE: usize = 2048;

/// The propagator both services use: B3 multi-header (what Istio's Zipkin
/// provider reads and writes) composed with W3C trace-context. Both header
/// families are injected; on extraction B3 is read last, so it wins when both
/// are present and disagree.
#[allow(deprecated)] // see the `use` above
pub fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(B3Propagator::with_encoding(B3Encoding::MultipleHeader)),
    ])
}

/// Builds the tracer provider for the configured exporter. Sampling follows
/// the caller's decision and samples every root trace (a demo wants them all).
pub(crate) fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder()
        .with_resource(resource::resource(settings))
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let client = || {
        reqwest::blocking::Client::builder()
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(Duration::from_secs(2))
            .build()
            .context("building the span export HTTP client")
    };
    let provider = match settings.otel_traces_exporter {
        TracesExporter::None => builder.build(),
        TracesExporter::Otlp => {
            let endpoint = settings.otlp_traces_url();
            let headers = settings.otlp_headers().map_err(anyhow::Error::msg)?;
            let exporter = otlp::OtlpHttp::new(client()?, &endpoint, &headers)
                .context("building the OTLP exporter")?;
            builder
                .with_span_processor(batch(Reporting::new(exporter, "otlp", &endpoint)))
                .build()
        }
        TracesExporter::Zipkin => {
            let endpoint = &settings.otel_exporter_zipkin_endpoint;
            let exporter = zipkin::exporter(endpoint, &settings.otel_service_name, client()?)?;
            builder
                .with_span_processor(batch(Reporting::new(exporter, "zipkin", endpoint)))
                .build()
        }
    };
    Ok(provider)
}

fn batch<E: SpanExporter + 'static>(exporter: E) -> BatchSpanProcessor {
    // Starts from the OTEL_BSP_* environment (the SDK reads it), bounding the queue.
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(MAX_QUEUE_SIZE)
        .with_scheduled_delay(Duration::from_millis(500))
        .build();
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build()
}
