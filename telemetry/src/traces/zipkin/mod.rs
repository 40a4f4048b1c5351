//! The Zipkin choice (`OTEL_TRACES_EXPORTER=zipkin`), for people who run a
//! Zipkin server. OTLP is the default: `opentelemetry-zipkin`'s exporter is
//! deprecated upstream (open-telemetry/opentelemetry-rust#3492) and takes no
//! new changes (its maintainers, in #3468: "the crate is deprecated and
//! slated for removal. Lets not add anything new to it"). Checked against
//! 0.33.0's source (`exporter/model`), its defects are those of 0.32 and
//! need the workarounds below, which live on this path alone:
//! - [`fixups`] mends the JSON on its way out: no `localEndpoint.serviceName`
//!   (the exporter ignores the resource, open-telemetry/opentelemetry-rust#1843)
//!   and a root span's `"parentId":"0000000000000000"` (it writes the
//!   invalid parent id as text; no upstream issue, and none will be taken);
//! - [`resource_tags`] carries resource attributes such as `service.version`
//!   onto the spans as tags (Zipkin spans have no resource;
//!   open-telemetry/opentelemetry-rust#1261, #1843).
//!
//! B3 propagation is not here: it is `opentelemetry-propagator-b3`'s (see
//! [`super::propagator`]).
#![allow(deprecated)]

mod fixups;
mod resource_tags;

use anyhow::Context as _;
use opentelemetry_sdk::trace::SpanExporter;

use self::fixups::ZipkinFixups;
use self::resource_tags::ResourceTags;

/// The Zipkin v2 JSON exporter posting to `endpoint`, with both workarounds.
pub(super) fn exporter(
    endpoint: &str,
    service_name: &str,
    client: reqwest::blocking::Client,
) -> anyhow::Result<impl SpanExporter + 'static> {
    let exporter = opentelemetry_zipkin::ZipkinExporter::builder()
        .with_collector_endpoint(endpoint)
        .with_http_client(ZipkinFixups::new(client, service_name.to_owned()))
        .build()
        .context("building the Zipkin exporter")?;
    Ok(ResourceTags::new(exporter))
}
