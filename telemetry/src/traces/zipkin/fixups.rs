//! Mends the Zipkin v2 JSON that `opentelemetry-zipkin` writes before it
//! goes out.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use memchr::memmem::Finder;

/// Sits between `opentelemetry-zipkin` and the HTTP client and mends two
/// defects of its JSON (0.32 and 0.33.0 alike): `localEndpoint` carries no
/// `serviceName` (Jaeger would file every span under an unknown service), and
/// root spans carry `"parentId": "0000000000000000"` where Zipkin v2 wants
/// the field absent. The exporter cannot be told either: its builder sets
/// only an address (`with_service_address`), its `Endpoint` has no
/// `serviceName` field and it ignores the resource. Remove this when the
/// crate emits both correctly; the integration tests' collector checks the
/// result either way.
///
/// The mending is two literal substitutions in the bytes, not a JSON round
/// trip: the patterns contain quotes that are not escaped, which inside a
/// JSON string would be, so they can only match the span fields themselves.
/// (Decoding the batch into `serde_json::Value` took more than a third of
/// the export thread's time under load; a typed borrowed decode and
/// re-encode still cost a second serialisation of every span.)
#[derive(Debug)]
pub(super) struct ZipkinFixups {
    inner: reqwest::blocking::Client,
    /// `"localEndpoint":{"serviceName":"<name>"}`, JSON-escaped.
    endpoint: String,
    service_name: String,
    /// Whether a batch that could not be mended was reported in the log.
    unmended_reported: AtomicBool,
}

/// The local endpoint as opentelemetry-zipkin writes it without an address.
const EMPTY_ENDPOINT: &[u8] = br#""localEndpoint":{}"#;
/// A root span's parent; the exporter writes `id` right after it (so a tag
/// that happened to be called `parentId` is not mistaken for it).
const ZERO_PARENT: &[u8] = br#""parentId":"0000000000000000","id":"#;
/// What [`ZERO_PARENT`] becomes.
const ID_ONLY: &[u8] = br#""id":"#;
/// Once per span.
const SPAN_START: &[u8] = br#""traceId":"#;

/// The three patterns' searchers, built once. `memchr`'s SIMD search: the
/// standard library's `str::find` made this mending a sizeable share of
/// business-logic's instructions per page (measured: docs/instrumentation-cost.md, "Figures behind code comments").
struct Finders {
    empty_endpoint: Finder<'static>,
    zero_parent: Finder<'static>,
    span_start: Finder<'static>,
}

static FINDERS: LazyLock<Finders> = LazyLock::new(|| Finders {
    empty_endpoint: Finder::new(EMPTY_ENDPOINT),
    zero_parent: Finder::new(ZERO_PARENT),
    span_start: Finder::new(SPAN_START),
});

impl ZipkinFixups {
    pub(super) fn new(inner: reqwest::blocking::Client, service_name: String) -> Self {
        let name = serde_json::Value::from(service_name.as_str()).to_string();
        Self {
            inner,
            endpoint: format!(r#""localEndpoint":{{"serviceName":{name}}}"#),
            service_name,
            unmended_reported: AtomicBool::new(false),
        }
    }

    /// The mended batch, or `None` when not every span has the empty local
    /// endpoint this expects (a changed exporter): then it goes out as it is.
    /// Only whole ASCII patterns are replaced, so UTF-8 stays intact.
    fn mend(&self, body: &[u8]) -> Option<Vec<u8>> {
        let finders = &*FINDERS;
        let spans = finders.span_start.find_iter(body).count();
        let endpoints: Vec<usize> = finders.empty_endpoint.find_iter(body).collect();
        if spans == 0 || endpoints.len() != spans {
            return None;
        }
        let mut out = Vec::with_capacity(body.len() + spans * self.endpoint.len());
        let mut from = 0;
        for at in endpoints {
            push_without_zero_parents(&mut out, &body[from..at], finders);
            out.extend_from_slice(self.endpoint.as_bytes());
            from = at + EMPTY_ENDPOINT.len();
        }
        push_without_zero_parents(&mut out, &body[from..], finders);
        Some(out)
    }
}

fn push_without_zero_parents(out: &mut Vec<u8>, text: &[u8], finders: &Finders) {
    let mut from = 0;
    for at in finders.zero_parent.find_iter(text) {
        out.extend_from_slice(&text[from..at]);
        out.extend_from_slice(ID_ONLY);
        from = at + ZERO_PARENT.len();
    }
    out.extend_from_slice(&text[from..]);
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
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"0000000000000000","id":"b7ad6b7169203331","localEndpoint":{}},
                       {"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"b7ad6b7169203331","id":"c7ad6b7169203331","localEndpoint":{}}]"#;
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
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"b7ad6b7169203331","id":"c7ad6b7169203331","kind":"CLIENT","name":"SELECT catalog_items","timestamp":1764000000000000,"duration":412,"localEndpoint":{},"remoteEndpoint":{"ipv6":"::1"},"annotations":[{"timestamp":1764000000000100,"value":"a \"quoted\" event"}],"tags":{"db.system.name":"sqlite","otel.status_code":"ERROR","error":"x\ny"},"debug":false,"shared":true}]"#;
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
        // A later opentelemetry-zipkin that fills the endpoint itself: unmended.
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","id":"b7ad6b7169203331","localEndpoint":{"serviceName":"x"}},
                       {"traceId":"0af7651916cd43dd8448eb211c80319c","id":"c7ad6b7169203331","localEndpoint":{}}]"#;
        assert!(fixups.mend(body).is_none());
        assert!(fixups.mend(b"not json").is_none());
        assert!(fixups.mend(b"[]").is_none());
    }

    #[test]
    fn zipkin_fixups_keep_fields_they_do_not_know_and_leave_strings_alone() {
        let fixups =
            ZipkinFixups::new(reqwest::blocking::Client::new(), "a \"quoted\" name".into());
        // A new field passes through; the patterns inside string values
        // (escaped quotes there) are not touched.
        let body = br#"[{"traceId":"0af7651916cd43dd8448eb211c80319c","parentId":"0000000000000000","id":"b7ad6b7169203331","newField":1,"localEndpoint":{},"tags":{"note":"\"localEndpoint\":{} and \"parentId\":\"0000000000000000\","}}]"#;
        let mended: serde_json::Value =
            serde_json::from_slice(&fixups.mend(body).unwrap()).unwrap();
        let mut expected: serde_json::Value = serde_json::from_slice(body).unwrap();
        expected[0].as_object_mut().unwrap().remove("parentId");
        expected[0]["localEndpoint"]["serviceName"] = "a \"quoted\" name".into();
        assert_eq!(mended, expected);
    }
}
