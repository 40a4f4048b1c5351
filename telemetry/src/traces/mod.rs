//! Span export (OTLP/HTTP by default, Zipkin v2 or none) and context
//! propagation (B3 + W3C trace-context).
//!
//! OTLP is what Jaeger v2 and every OpenTelemetry collector take natively.
//! Istio's proxies still report to Jaeger's Zipkin receiver and propagate B3
//! (the mesh's `zipkin` provider; its `opentelemetry` provider propagates W3C
//! only), so the services read and write B3 as well as `traceparent` whatever
//! they export: the proxies' spans and the services' spans join one trace.
//!
//! Beside it: [`resource`] (who made a span), [`zipkin`] (the Zipkin choice
//! and its workarounds, on that path alone), [`reporting`] (export failures
//! said in the log).

mod reporting;
mod resource;
mod zipkin;

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3Propagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanExporter,
};

use self::reporting::Reporting;
use crate::settings::{TelemetrySettings, TracesExporter};

pub use self::resource::SERVICE_NAMESPACE;

/// How long one export may take before it is abandoned (the batch is dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// The propagator both services use: B3 (what Istio's Zipkin provider reads
/// and writes; injected as multiple `x-b3-*` headers, extracted from the
/// single `b3` header or the multiple ones) composed with W3C trace-context.
/// Both header families are injected; on extraction B3 is read last, so it
/// wins when both are present and disagree.
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
    // Blocking: the batch processor exports from its own thread.
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .context("building the span export HTTP client")?;
    let provider = match settings.otel_traces_exporter {
        TracesExporter::None => builder.build(),
        TracesExporter::Otlp => {
            let endpoint = settings.otlp_traces_url();
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_endpoint(endpoint.as_str())
                .with_timeout(EXPORT_TIMEOUT)
                .with_headers(settings.otlp_headers().map_err(anyhow::Error::msg)?)
                .build()
                .context("building the OTLP exporter")?;
            let exporter = Reporting::new(exporter, "otlp", &endpoint);
            builder
                .with_span_processor(batch(exporter, settings))
                .build()
        }
        TracesExporter::Zipkin => {
            let endpoint = &settings.otel_exporter_zipkin_endpoint;
            let exporter = zipkin::exporter(endpoint, &settings.otel_service_name, client)?;
            let exporter = Reporting::new(exporter, "zipkin", endpoint);
            builder
                .with_span_processor(batch(exporter, settings))
                .build()
        }
    };
    Ok(provider)
}

/// The SDK's batch span processor, on its own thread, with the
/// `OTEL_BSP_*` settings (our defaults where a variable is unset).
fn batch<E: SpanExporter + 'static>(
    exporter: E,
    settings: &TelemetrySettings,
) -> BatchSpanProcessor {
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(settings.otel_bsp_max_queue_size)
        .with_max_export_batch_size(settings.otel_bsp_max_export_batch_size)
        .with_scheduled_delay(Duration::from_millis(settings.otel_bsp_schedule_delay))
        .build();
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build()
}
