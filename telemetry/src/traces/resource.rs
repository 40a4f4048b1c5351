//! The resource every span carries: who made it.

use opentelemetry::KeyValue;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::resource::{
    EnvResourceDetector, ResourceDetector, SdkProvidedResourceDetector, TelemetryResourceDetector,
};

use crate::settings::TelemetrySettings;

/// `service.namespace` unless `OTEL_RESOURCE_ATTRIBUTES` names another: the
/// one name the demo's services share.
pub const SERVICE_NAMESPACE: &str = "mesh-demo";

/// Lowest to highest precedence:
/// 1. the demo's defaults: `service.namespace` [`SERVICE_NAMESPACE`] and
///    `service.version` the package's version;
/// 2. what the SDK detects: `telemetry.sdk.*` and `OTEL_RESOURCE_ATTRIBUTES`
///    (on the cluster the chart puts `k8s.namespace.name`, `k8s.pod.name`
///    and `k8s.node.name` there from the downward API);
/// 3. the service's own settings: `service.name` (`OTEL_SERVICE_NAME`, which
///    the specification ranks above `OTEL_RESOURCE_ATTRIBUTES`) and, when
///    the service has one, its version (business-logic's `SERVICE_VERSION`,
///    which its metrics carry too, so spans and metrics agree).
pub(super) fn resource(settings: &TelemetrySettings) -> Resource {
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
