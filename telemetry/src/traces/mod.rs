//! Span export (Zipkin v2 or OTLP/HTTP) and context propagation (B3 + W3C).
//!
//! Zipkin is deliberate: Istio's tracing provider and Jaeger's receiver speak
//! it, so the crate's upstream deprecation is allowed here (OTLP is offered too).
//!
//! The other jobs live beside it: [`zipkin_fixups`] mends the Zipkin JSON
//! on its way out, [`zipkin_resource`] carries resource attributes such as
//! `service.version` onto Zipkin spans as tags, [`reporting`] says in the log
//! when export fails.
#![allow(deprecated)]

mod reporting;
mod zipkin_fixups;
mod zipkin_resource;

use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanExporter,
};
use opentelemetry_zipkin::B3Encoding;

use self::reporting::Reporting;
use self::zipkin_fixups::ZipkinFixups;
use self::zipkin_resource::ResourceTags;
use crate::settings::{TelemetrySettings, TracesExporter};

/// How long one export may take before it is abandoned (the batch is dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export; past this, new spans are dropped, so an
/// unreachable collector costs bounded memory.
const MAX_QUEUE_SIZE: usize = 2048;

/// The propagator both services use: B3 multi-header (what Istio's Zipkin
/// provider reads and writes) composed with W3C trace-context. Both header
/// families are injected; on extraction B3 is read last, so it wins when both
/// are present and disagree.
pub fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(opentelemetry_zipkin::Propagator::with_encoding(
            B3Encoding::MultipleHeader,
        )),
    ])
}

/// Builds the tracer provider for the configured exporter. Sampling follows
/// the caller's decision and samples every root trace (a demo wants them all).
pub(crate) fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<SdkTracerProvider> {
    let mut resource = Resource::builder().with_service_name(settings.otel_service_name.clone());
    if let Some(version) = &settings.service_version {
        resource = resource.with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            version.clone(),
        ));
    }
    let resource = resource.build();
    let builder = SdkTracerProvider::builder()
        .with_resource(resource)
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
        TracesExporter::Zipkin => {
            let endpoint = &settings.otel_exporter_zipkin_endpoint;
            let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
                .with_collector_endpoint(endpoint)
                .with_http_client(ZipkinFixups::new(
                    client()?,
                    settings.otel_service_name.clone(),
                ))
                .build()
                .context("building the Zipkin exporter")?;
            builder
                .with_span_processor(batch(Reporting::new(
                    ResourceTags::new(exporter),
                    "zipkin",
                    endpoint,
                )))
                .build()
        }
        TracesExporter::Otlp => {
            use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
            let endpoint = format!(
                "{}/v1/traces",
                settings.otel_exporter_otlp_endpoint.trim_end_matches('/')
            );
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client()?)
                .with_endpoint(&endpoint)
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .context("building the OTLP exporter")?;
            builder
                .with_span_processor(batch(Reporting::new(exporter, "otlp", &endpoint)))
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
