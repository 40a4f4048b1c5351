//! Span export (OTLP/HTTP by default, Zipkin v2 or none) and propagation.
//! Istio's proxies propagate B3 (the mesh's `zipkin` provider), so the
//! services read and write B3 as well as `traceparent`, whatever they export.

mod zipkin;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_propagator_b3::{B3Encoding, Propagator as B3Propagator};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector,
};
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanExporter,
};

use crate::settings::{TelemetrySettings, TracesExporter};

/// `service.namespace` unless `OTEL_RESOURCE_ATTRIBUTES` names another.
pub const SERVICE_NAMESPACE: &str = "mesh-demo";

/// How long one export may take before its batch is dropped.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a failing export repeats its warning.
const REPORT_EVERY: Duration = Duration::from_secs(60);

/// W3C trace-context and B3 (injected as `x-b3-*`, extracted from those or
/// `b3`); B3 is extracted last, so it wins when the two disagree.
pub fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(B3Propagator::with_encoding(B3Encoding::MultipleHeader)),
    ])
}

/// The caller's sampling decision, every root trace sampled (a demo wants
/// them all); the exporters read the `OTEL_EXPORTER_*` variables themselves.
pub(crate) fn tracer_provider(settings: &TelemetrySettings) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder()
        .with_resource(resource(settings))
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)));
    let client = reqwest::blocking::Client::builder()
        .timeout(EXPORT_TIMEOUT)
        .connect_timeout(Duration::from_secs(2))
        .build()
        .context("building the span export HTTP client")?;
    let exporter = match settings.otel_traces_exporter {
        TracesExporter::None => return Ok(builder.build()),
        TracesExporter::Otlp => batch(
            opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(Reporting::new(client, "otlp"))
                .with_timeout(EXPORT_TIMEOUT)
                .build()
                .context("building the OTLP exporter")?,
            settings,
        ),
        TracesExporter::Zipkin => batch(
            zipkin::exporter(
                Reporting::new(client, "zipkin"),
                &settings.otel_service_name,
            )?,
            settings,
        ),
    };
    Ok(builder.with_span_processor(exporter).build())
}

/// The SDK's batch span processor with the `OTEL_BSP_*` settings.
fn batch(exporter: impl SpanExporter + 'static, s: &TelemetrySettings) -> BatchSpanProcessor {
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(s.otel_bsp_max_queue_size)
        .with_max_export_batch_size(s.otel_bsp_max_export_batch_size)
        .with_scheduled_delay(Duration::from_millis(s.otel_bsp_schedule_delay))
        .build();
    BatchSpanProcessor::builder(exporter)
        .with_batch_config(config)
        .build()
}

/// Lowest precedence first: the demo's namespace and the package's version;
/// what the SDK detects (`OTEL_RESOURCE_ATTRIBUTES` among it); the service's
/// name and version (business-logic's `SERVICE_VERSION`).
fn resource(settings: &TelemetrySettings) -> Resource {
    let detectors: [Box<dyn ResourceDetector>; 3] = [
        Box::new(SdkProvidedResourceDetector),
        Box::new(TelemetryResourceDetector),
        Box::new(EnvResourceDetector::new()),
    ];
    let mut builder = Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.namespace", SERVICE_NAMESPACE),
            KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
        ])
        .with_detectors(&detectors)
        .with_service_name(settings.otel_service_name.clone());
    if let Some(version) = &settings.service_version {
        builder = builder.with_attribute(KeyValue::new("service.version", version.clone()));
    }
    builder.build()
}

/// The exporters' HTTP client (blocking, on the batch processor's thread),
/// saying a failing collector in the log without flooding it: the first
/// failure, then at most once a minute, and once when exports work again.
#[derive(Debug)]
pub(crate) struct Reporting<C> {
    inner: C,
    protocol: &'static str,
    /// Failed exports since the last success, and when that was last said.
    failures: Mutex<(u64, Option<Instant>)>,
}

impl<C> Reporting<C> {
    fn new(inner: C, protocol: &'static str) -> Self {
        let failures = Mutex::default();
        Self {
            inner,
            protocol,
            failures,
        }
    }
}

#[async_trait::async_trait]
impl<C: HttpClient> HttpClient for Reporting<C> {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let endpoint = request.uri().clone();
        let result = self.inner.send_bytes(request).await;
        let error = match &result {
            Ok(response) if response.status().is_success() => None,
            Ok(response) => Some(format!("HTTP status {}", response.status())),
            Err(error) => Some(error.to_string()),
        };
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let (protocol, failed) = (self.protocol, failures.0);
        match error {
            None if failed > 0 => {
                tracing::info!(protocol, %endpoint, failed_exports = failed, "span export recovered");
                *failures = (0, None);
            }
            None => {}
            Some(error) => {
                failures.0 += 1;
                if failures.1.is_none_or(|at| at.elapsed() >= REPORT_EVERY) {
                    tracing::warn!(
                        protocol,
                        %endpoint,
                        %error,
                        failed_exports = failures.0,
                        "span export failing; spans are dropped, requests are not affected (repeated at most once a minute)"
                    );
                    failures.1 = Some(Instant::now());
                }
            }
        }
        result
    }
}
