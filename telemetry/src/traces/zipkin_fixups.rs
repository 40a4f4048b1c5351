//! Mends the Zipkin v2 JSON that `opentelemetry-zipkin` writes before it
//! goes out.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

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
pub(super) struct ZipkinFixups {
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
    pub(super) fn new(inner: reqwest::blocking::Client, service_name: String) -> Self {
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
