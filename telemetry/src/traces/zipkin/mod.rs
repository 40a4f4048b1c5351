//! The Zipkin choice (`OTEL_TRACES_EXPORTER=zipkin`), for people who run a
//! Zipkin server. OTLP is the default: `opentelemetry-zipkin`'s exporter is
//! deprecated upstream (open-telemetry/opentelemetry-rust#3492) and takes no
//! new changes (#3468), and its two defects need the workarounds below,
//! which live on this path alone:
//! - [`fixups`] mends the JSON on its way out (service name, zero parent id);
//! - [`resource_tags`] carries resource attributes such as `service.version`
//!   onto the spans as tags (Zipkin spans have no resource).
//!
//! The same crate's B3 propagator is not deprecated and stays the services'
//! propagator whatever the exporter (see [`super::propagator`]).
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
