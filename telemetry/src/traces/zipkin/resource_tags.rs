//! Zipkin v2 spans have no resource, only `localEndpoint.serviceName`, so
//! opentelemetry-zipkin drops every other resource attribute (0.32 and
//! 0.33.0; open-telemetry/opentelemetry-rust#1261, #1843). This
//! exporter wrapper copies the few that tell deployments apart onto each span
//! as tags, as the OpenTelemetry Collector's Zipkin exporter does; the
//! Collector's Zipkin receiver, which Jaeger v2 runs, moves these tags back
//! onto the resource, so Jaeger shows `service.version` as a process tag.

use std::time::Duration;

use opentelemetry::{Key, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};

/// Resource attributes (OpenTelemetry semantic conventions) that travel as tags.
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
pub(super) struct ResourceTags<E> {
    inner: E,
    tags: Vec<KeyValue>,
}

impl<E> ResourceTags<E> {
    pub(super) fn new(inner: E) -> Self {
        Self {
            inner,
            tags: Vec::new(),
        }
    }
}

impl<E: SpanExporter> SpanExporter for ResourceTags<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        if !self.tags.is_empty() {
            for span in &mut batch {
                span.attributes.extend(self.tags.iter().cloned());
            }
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
        self.tags = AS_TAGS
            .iter()
            .filter_map(|key| {
                let value = resource.get(&Key::from_static_str(key))?;
                Some(KeyValue::new(*key, value))
            })
            .collect();
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::InstrumentationScope;
    use opentelemetry::trace::{SpanContext, SpanKind, Status};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    #[derive(Debug, Default, Clone)]
    struct Sink(Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Sink {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    fn span() -> SpanData {
        SpanData {
            span_context: SpanContext::empty_context(),
            parent_span_id: opentelemetry::trace::SpanId::INVALID,
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
        }
    }

    fn tags_of(resource: Resource) -> Vec<(String, String)> {
        let sink = Sink::default();
        let mut exporter = ResourceTags::new(sink.clone());
        exporter.set_resource(&resource);
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(exporter.export(vec![span()]))
            .unwrap();
        let exported = sink.0.lock().unwrap();
        exported[0]
            .attributes
            .iter()
            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
            .collect()
    }

    #[test]
    fn the_service_version_travels_as_a_tag_next_to_the_spans_own() {
        let tags = tags_of(
            Resource::builder_empty()
                .with_service_name("business-logic")
                .with_attribute(KeyValue::new("service.version", "v2"))
                .build(),
        );
        assert!(
            tags.contains(&("service.version".into(), "v2".into())),
            "{tags:?}"
        );
        assert!(
            tags.contains(&("http.status_code".into(), "200".into())),
            "{tags:?}"
        );
        // The name is localEndpoint.serviceName already; it is not repeated.
        assert!(!tags.iter().any(|(k, _)| k == "service.name"), "{tags:?}");
    }

    #[test]
    fn without_a_version_the_spans_are_left_alone() {
        let tags = tags_of(
            Resource::builder_empty()
                .with_service_name("front-end")
                .build(),
        );
        assert_eq!(tags, vec![("http.status_code".into(), "200".into())]);
    }
}
