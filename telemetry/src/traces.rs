//! Span export (Zipkin v2 or OTLP/HTTP) and context propagation (B3 + W3C).
//!
//! Zipkin is deliberate: Istio's tracing provider and Jaeger's receiver speak
//! it, so the crate's upstream deprecation is allowed here (OTLP is offered too).
#![allow(deprecated)]

use std::borrow::Cow;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracerProvider, SpanData, SpanExporter,
};
use opentelemetry_zipkin::B3Encoding;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::settings::{TelemetrySettings, TracesExporter};

/// How long one export may take before it is abandoned (the batch is dropped).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export; past this, new spans are dropped, so an
/// unreachable collector costs bounded memory.
const MAX_QUEUE_SIZE: usize = 2048;
/// How often a failing exporter repeats its warning.
const REPORT_EVERY: Duration = Duration::from_secs(60);

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
                    crate::zipkin_resource::ResourceTags::new(exporter),
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

/// Sits between `opentelemetry-zipkin` and the HTTP client and mends two
/// defects of its 0.32 JSON (the same in 0.33): `localEndpoint` carries no
/// `serviceName` (Jaeger would file every span under an unknown service), and
/// root spans carry `"parentId": "0000000000000000"` where Zipkin v2 wants
/// the field absent. Remove this when the crate emits both correctly; the
/// integration tests' collector checks the result either way.
///
/// Only those two fields are decoded; the rest of each span passes through
/// as raw JSON (`WireSpan`). Decoding whole batches into `serde_json::Value`
/// took more than a third of the export thread's time under load (`make bench`).
#[derive(Debug)]
struct ZipkinFixups {
    inner: reqwest::blocking::Client,
    service_name: String,
    /// Whether a batch that could not be mended was reported in the log.
    unmended_reported: AtomicBool,
}

/// A Zipkin v2 span as opentelemetry-zipkin 0.32 writes it. An unknown
/// field fails the decoding, and the batch then goes out unmended rather
/// than losing the field.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireSpan<'a> {
    #[serde(borrow)]
    trace_id: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    parent_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    id: &'a RawValue,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    name: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    duration: Option<&'a RawValue>,
    #[serde(borrow, default)]
    local_endpoint: WireEndpoint<'a>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    remote_endpoint: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    annotations: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    tags: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    debug: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    shared: Option<&'a RawValue>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireEndpoint<'a> {
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    service_name: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    ipv4: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    ipv6: Option<&'a RawValue>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    port: Option<&'a RawValue>,
}

impl ZipkinFixups {
    fn new(inner: reqwest::blocking::Client, service_name: String) -> Self {
        Self {
            inner,
            service_name,
            unmended_reported: AtomicBool::new(false),
        }
    }

    fn mend(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut spans: Vec<WireSpan<'_>> = serde_json::from_slice(body).ok()?;
        for span in &mut spans {
            if span.parent_id.as_deref() == Some("0000000000000000") {
                span.parent_id = None;
            }
            if span.local_endpoint.service_name.is_none() {
                span.local_endpoint.service_name = Some(Cow::Borrowed(&self.service_name));
            }
        }
        let mut out = Vec::with_capacity(body.len() + spans.len() * (self.service_name.len() + 20));
        serde_json::to_writer(&mut out, &spans).ok()?;
        Some(out)
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ZipkinFixups {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<
        opentelemetry_http::Response<opentelemetry_http::Bytes>,
        opentelemetry_http::HttpError,
    > {
        let request = match self.mend(request.body()) {
            Some(body) => request.map(|_| body.into()),
            None => {
                // A span shape this adapter does not know (a newer
                // opentelemetry-zipkin): sent as it is, and said once, since
                // its spans may then lack serviceName in Jaeger.
                if !self.unmended_reported.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        service = %self.service_name,
                        "zipkin batch sent unmended: unexpected span format, spans may show no service name"
                    );
                }
                request
            }
        };
        self.inner.send_bytes(request).await
    }
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

/// Wraps an exporter so that a failing collector is reported in the log
/// without flooding it: the first failure, then at most once a minute with a
/// count, and once when exports succeed again. (The SDK's own per-batch error
/// events are filtered out in [`crate::init`].)
#[derive(Debug)]
struct Reporting<E> {
    inner: E,
    protocol: &'static str,
    endpoint: String,
    state: Mutex<FailureState>,
}

#[derive(Debug, Default)]
struct FailureState {
    failed_batches: u64,
    failed_spans: u64,
    last_report: Option<Instant>,
}

impl<E> Reporting<E> {
    fn new(inner: E, protocol: &'static str, endpoint: &str) -> Self {
        Self {
            inner,
            protocol,
            endpoint: endpoint.to_owned(),
            state: Mutex::default(),
        }
    }

    fn record(&self, result: &OTelSdkResult, spans: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) if state.failed_batches > 0 => {
                tracing::info!(
                    protocol = self.protocol,
                    endpoint = %self.endpoint,
                    dropped_spans = state.failed_spans,
                    "span export recovered"
                );
                *state = FailureState::default();
            }
            Ok(()) => {}
            Err(error) => {
                state.failed_batches += 1;
                state.failed_spans += spans as u64;
                let due = state
                    .last_report
                    .is_none_or(|at| at.elapsed() >= REPORT_EVERY);
                if due {
                    tracing::warn!(
                        protocol = self.protocol,
                        endpoint = %self.endpoint,
                        %error,
                        dropped_spans = state.failed_spans,
                        "span export failing; spans are dropped, requests are not affected (repeated at most once a minute)"
                    );
                    state.last_report = Some(Instant::now());
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.record(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zipkin_fixups_add_the_service_name_and_drop_a_zero_parent() {
        let fixups = ZipkinFixups::new(reqwest::blocking::Client::new(), "front-end".into());
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","parentId":"0000000000000000","localEndpoint":{}},
                       {"traceId":"0af7651916cd43dd8448eb211c80319c","id":"c7ad6b7169203331","parentId":"b7ad6b7169203331"}]"#;
        let mended: serde_json::Value =
            serde_json::from_slice(&fixups.mend(body).unwrap()).unwrap();
        assert_eq!(mended[0]["localEndpoint"]["serviceName"], "front-end");
        assert!(mended[0].get("parentId").is_none());
        assert_eq!(mended[1]["parentId"], "b7ad6b7169203331");
        assert_eq!(mended[1]["localEndpoint"]["serviceName"], "front-end");
    }

    #[test]
    fn zipkin_fixups_keep_every_other_field_as_it_was() {
        let fixups = ZipkinFixups::new(reqwest::blocking::Client::new(), "business-logic".into());
        // A span as opentelemetry-zipkin 0.32 writes it, every field present.
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"b7ad6b7169203331","id":"c7ad6b7169203331","kind":"CLIENT","name":"SELECT catalog_items","timestamp":1764000000000000,"duration":412,"localEndpoint":{"ipv4":"10.0.0.7","port":8080},"remoteEndpoint":{"ipv6":"::1"},"annotations":[{"timestamp":1764000000000100,"value":"a \"quoted\" event"}],"tags":{"db.system.name":"sqlite","otel.status_code":"ERROR","error":"x\ny"},"debug":false,"shared":true}]"#;
        let original: serde_json::Value = serde_json::from_slice(body).unwrap();
        let mut mended: serde_json::Value =
            serde_json::from_slice(&fixups.mend(body).unwrap()).unwrap();
        let endpoint = mended[0]["localEndpoint"].as_object_mut().unwrap();
        assert_eq!(endpoint.remove("serviceName").unwrap(), "business-logic");
        assert_eq!(mended, original);
    }

    #[test]
    fn zipkin_fixups_send_a_batch_they_do_not_understand_unchanged() {
        let fixups = ZipkinFixups::new(reqwest::blocking::Client::new(), "front-end".into());
        // A field a later opentelemetry-zipkin might add: better unmended than lost.
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","newField":1}]"#;
        assert!(fixups.mend(body).is_none());
        assert!(fixups.mend(b"not json").is_none());
    }
}
