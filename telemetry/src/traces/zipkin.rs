//! The Zipkin choice (`OTEL_TRACES_EXPORTER=zipkin`). `opentelemetry-zipkin`
//! is deprecated upstream (open-telemetry/opentelemetry-rust#3492) and takes
//! no new changes (#3468), so its defects (0.32 and 0.33.0 alike) are mended
//! here: [`Fixups`] adds the `localEndpoint.serviceName` it cannot be told
//! (it ignores the resource, #1843) and drops a root span's
//! `"parentId":"0000000000000000"` (no upstream issue, none will be taken);
//! [`ResourceTags`] carries resource attributes such as `service.version`,
//! which Zipkin spans have no place for (#1261, #1843), as tags.
#![allow(deprecated)]

use std::time::Duration;

use anyhow::Context as _;
use memchr::memmem::Finder;
use opentelemetry::{Key, KeyValue};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// The exporter (posting to `OTEL_EXPORTER_ZIPKIN_ENDPOINT`), mended.
pub(super) fn exporter(
    client: impl HttpClient + 'static,
    service_name: &str,
) -> anyhow::Result<impl SpanExporter + 'static> {
    let inner = opentelemetry_zipkin::ZipkinExporter::builder()
        .with_http_client(Fixups::new(client, service_name))
        .build()
        .context("building the Zipkin exporter")?;
    let tags = Vec::new();
    Ok(ResourceTags { inner, tags })
}

/// The local endpoint as the exporter writes it without an address.
const EMPTY_ENDPOINT: &[u8] = br#""localEndpoint":{}"#;
/// A root span's parent, with the `id` the exporter writes right after it
/// (so that a tag called `parentId` is not taken for it).
const ZERO_PARENT: &[u8] = br#""parentId":"0000000000000000","id":"#;
const SPAN_START: &[u8] = br#""traceId":"#;

/// Between the exporter and the HTTP client: mends the JSON by literal
/// substitutions in the bytes, not a JSON round trip (which took a third of
/// the export thread). The patterns hold quotes, which inside a JSON string
/// would be escaped, so they match only span fields. `memchr`'s finders:
/// docs/instrumentation-cost.md, "Zipkin mending with a real substring search".
#[derive(Debug)]
struct Fixups<C> {
    inner: C,
    /// `"localEndpoint":{"serviceName":"<name>"}`, JSON-escaped.
    endpoint: Vec<u8>,
    finders: [Finder<'static>; 3],
}

impl<C> Fixups<C> {
    fn new(inner: C, service_name: &str) -> Self {
        let name = serde_json::Value::from(service_name);
        Self {
            inner,
            endpoint: format!(r#""localEndpoint":{{"serviceName":{name}}}"#).into_bytes(),
            finders: [EMPTY_ENDPOINT, ZERO_PARENT, SPAN_START].map(|p| Finder::new(p).into_owned()),
        }
    }

    /// The mended batch, or `None` when not every span has the empty local
    /// endpoint expected (a changed exporter: the batch goes out as it is,
    /// and the tests' collector, which checks each span, says so).
    fn mend(&self, body: &[u8]) -> Option<Vec<u8>> {
        let [empty_endpoint, zero_parent, span_start] = &self.finders;
        let spans = span_start.find_iter(body).count();
        if spans == 0 || empty_endpoint.find_iter(body).count() != spans {
            return None;
        }
        let body = replace(body, empty_endpoint, &self.endpoint);
        Some(replace(&body, zero_parent, br#""id":"#))
    }
}

/// `text` with every match of `finder` replaced by `with`.
fn replace(text: &[u8], finder: &Finder<'_>, with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + text.len() / 4);
    let mut from = 0;
    for at in finder.find_iter(text) {
        out.extend_from_slice(&text[from..at]);
        out.extend_from_slice(with);
        from = at + finder.needle().len();
    }
    out.extend_from_slice(&text[from..]);
    out
}

#[async_trait::async_trait]
impl<C: HttpClient> HttpClient for Fixups<C> {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = match self.mend(request.body()) {
            Some(body) => request.map(|_| body.into()),
            None => request,
        };
        self.inner.send_bytes(request).await
    }
}

/// Resource attributes (semantic conventions) sent as span tags, as the
/// OpenTelemetry Collector's Zipkin exporter does; its Zipkin receiver, in
/// Jaeger v2, moves them back onto the resource.
const AS_TAGS: [&str; 7] = [
    "service.version",
    "service.namespace",
    "service.instance.id",
    "deployment.environment.name",
    "k8s.namespace.name",
    "k8s.pod.name",
    "k8s.node.name",
];

/// Adds the resource's [`AS_TAGS`] attributes to every span it exports.
#[derive(Debug)]
struct ResourceTags<E> {
    inner: E,
    tags: Vec<KeyValue>,
}

impl<E: SpanExporter> SpanExporter for ResourceTags<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        for span in &mut batch {
            span.attributes.extend(self.tags.iter().cloned());
        }
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        let value = |key| resource.get(&Key::from_static_str(key));
        let tags = AS_TAGS
            .iter()
            .filter_map(|k| Some(KeyValue::new(*k, value(k)?)));
        self.tags = tags.collect();
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanId, SpanKind, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use serde_json::Value;

    use super::*;

    fn fixups(service: &str) -> Fixups<()> {
        Fixups::new((), service)
    }

    fn mended(fixups: &Fixups<()>, body: &[u8]) -> Value {
        serde_json::from_slice(&fixups.mend(body).unwrap()).unwrap()
    }

    #[test]
    fn fixups_add_the_service_name_and_drop_a_zero_parent() {
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"0000000000000000","id":"b7ad6b7169203331","localEndpoint":{}},
                       {"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"b7ad6b7169203331","id":"c7ad6b7169203331","localEndpoint":{}}]"#;
        let mended = mended(&fixups("front-end"), body);
        assert_eq!(mended[0]["localEndpoint"]["serviceName"], "front-end");
        assert!(mended[0].get("parentId").is_none());
        assert_eq!(mended[1]["parentId"], "b7ad6b7169203331");
        assert_eq!(mended[1]["localEndpoint"]["serviceName"], "front-end");
    }

    #[test]
    fn fixups_keep_every_other_field_and_leave_strings_alone() {
        // Every field opentelemetry-zipkin writes, one it might add, and the
        // patterns inside a string value (escaped quotes there).
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"0000000000000000","id":"c7ad6b7169203331","kind":"CLIENT","name":"SELECT catalog_items","timestamp":1764000000000000,"duration":412,"localEndpoint":{},"remoteEndpoint":{"ipv6":"::1"},"annotations":[{"timestamp":1764000000000100,"value":"a \"quoted\" event"}],"tags":{"note":"\"localEndpoint\":{} and \"parentId\":\"0000000000000000\",","error":"x\ny"},"newField":1,"debug":false,"shared":true}]"#;
        let mut expected: Value = serde_json::from_slice(body).unwrap();
        expected[0].as_object_mut().unwrap().remove("parentId");
        expected[0]["localEndpoint"]["serviceName"] = "a \"quoted\" name".into();
        assert_eq!(mended(&fixups("a \"quoted\" name"), body), expected);
    }

    #[test]
    fn fixups_send_a_batch_they_do_not_understand_unchanged() {
        // A later opentelemetry-zipkin that fills the endpoint itself: unmended.
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","localEndpoint":{"serviceName":"x"}},
                       {"traceId":"0af7651916cd43dd8448eb211c80319c","id":"c7ad6b7169203331","localEndpoint":{}}]"#;
        let fixups = fixups("front-end");
        for body in [&body[..], b"not json", b"[]"] {
            assert!(fixups.mend(body).is_none());
        }
    }

    #[derive(Debug, Default, Clone)]
    struct Sink(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Sink {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    /// The tags of a span exported with `resource`.
    fn tags_of(resource: Resource) -> Vec<(String, String)> {
        let sink = Sink::default();
        let mut exporter = ResourceTags {
            inner: sink.clone(),
            tags: Vec::new(),
        };
        exporter.set_resource(&resource);
        let span = SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: SpanId::INVALID,
            parent_span_is_remote: false,
            span_kind: SpanKind::Server,
            name: "GET /fast-endpoint".into(),
            start_time: SystemTime::now(),
            end_time: SystemTime::now(),
            attributes: vec![KeyValue::new("http.status_code", 200)],
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: Status::Unset,
            instrumentation_scope: InstrumentationScope::builder("test").build(),
        };
        let runtime = tokio::runtime::Builder::new_current_thread().build();
        runtime
            .unwrap()
            .block_on(exporter.export(vec![span]))
            .unwrap();
        let exported = sink.0.lock().unwrap();
        let kv = exported[0].attributes.iter();
        kv.map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    #[test]
    fn the_service_version_travels_as_a_tag_and_nothing_without_one() {
        let tags = tags_of(
            Resource::builder_empty()
                .with_service_name("business-logic")
                .with_attribute(KeyValue::new("service.version", "v2"))
                .build(),
        );
        // The name is localEndpoint.serviceName already; it is not repeated.
        let expected = [("http.status_code", "200"), ("service.version", "v2")];
        assert_eq!(tags, expected.map(|(k, v)| (k.into(), v.into())));
        let tags = tags_of(
            Resource::builder_empty()
                .with_service_name("front-end")
                .build(),
        );
        assert_eq!(tags, vec![("http.status_code".into(), "200".into())]);
    }
}
