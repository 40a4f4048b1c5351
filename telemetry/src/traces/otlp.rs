//! OTLP/HTTP with protobuf: the default exporter.
//!
//! The messages are the published ones (opentelemetry-proto's generated
//! types, encoded by prost); what is written here is the move from the
//! SDK's `SpanData` into them and the POST. opentelemetry-otlp 0.32 does
//! the same with two costs this does not pay (a callgrind profile,
//! docs/instrumentation-cost.md, "OTLP"): it deep-copies every span
//! before converting it (`group_spans_by_resource_and_scope` takes the
//! batch by value, then clones each span; fixed upstream in
//! open-telemetry/opentelemetry-rust#3652, after the 0.32 line this
//! workspace is held to), and it turns every string value into a `String`
//! through `Display` (`to_string`). Together they made the OTLP page cost
//! more than the Zipkin one. Go back to opentelemetry-otlp once the
//! workspace can move past 0.32 (see Cargo.toml).
//!
//! The receiver's answer is read for its status only: 2xx is success
//! (a partial success is still a 200 and is not retried), anything else
//! fails the batch, which [`super::reporting`] says in the log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{SpanId, Status};
use opentelemetry::{Array, KeyValue, Value};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as common;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1 as trace;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue};

/// `SpanFlags` of the OTLP trace proto: whether the parent's remoteness is
/// known (always, here) and whether it is remote.
const HAS_IS_REMOTE: u32 = 0x100;
const IS_REMOTE: u32 = 0x200;

/// Posts each batch as one `ExportTraceServiceRequest` to `endpoint`.
#[derive(Debug)]
pub(super) struct OtlpHttp {
    client: reqwest::blocking::Client,
    endpoint: reqwest::Url,
    /// Content type plus `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS`.
    headers: HeaderMap,
    /// The provider's resource, converted once.
    resource: Resource,
    resource_schema_url: String,
}

impl OtlpHttp {
    pub(super) fn new(
        client: reqwest::blocking::Client,
        endpoint: &str,
        extra_headers: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        for (name, value) in extra_headers {
            headers.insert(
                reqwest::header::HeaderName::try_from(name.as_str())?,
                HeaderValue::try_from(value.as_str())?,
            );
        }
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        Ok(Self {
            client,
            endpoint: endpoint.parse()?,
            headers,
            resource: Resource::default(),
            resource_schema_url: String::new(),
        })
    }

    /// The request for one batch: one resource, the spans grouped by their
    /// instrumentation scope (a handful at most, so a list, in the order met).
    fn request(&self, batch: Vec<SpanData>) -> ExportTraceServiceRequest {
        let mut scopes: Vec<(opentelemetry::InstrumentationScope, Vec<trace::Span>)> = Vec::new();
        for mut data in batch {
            let scope = std::mem::take(&mut data.instrumentation_scope);
            let span = span(data);
            match scopes.iter_mut().find(|(s, _)| *s == scope) {
                Some((_, spans)) => spans.push(span),
                None => scopes.push((scope, vec![span])),
            }
        }
        let scope_spans = scopes
            .into_iter()
            .map(|(scope, spans)| trace::ScopeSpans {
                schema_url: scope.schema_url().unwrap_or_default().to_owned(),
                scope: Some((&scope, None).into()),
                spans,
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans,
                schema_url: self.resource_schema_url.clone(),
            }],
        }
    }
}

impl SpanExporter for OtlpHttp {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let body = self.request(batch).encode_to_vec();
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .body(body)
            .send()
            .map_err(|e| OTelSdkError::InternalFailure(format!("OTLP export failed: {e}")))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(OTelSdkError::InternalFailure(format!(
                "OTLP export answered {status}"
            )))
        }
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // Nothing is buffered here; the batch processor flushes before this.
        Ok(())
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = Resource {
            attributes: resource
                .iter()
                .map(|(key, value)| key_value(key.as_str(), value.clone()))
                .collect(),
            ..Resource::default()
        };
        self.resource_schema_url = resource.schema_url().unwrap_or_default().to_owned();
    }
}

fn nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

fn key_value(key: &str, value: Value) -> common::KeyValue {
    common::KeyValue {
        key: key.to_owned(),
        value: Some(any_value(value)),
        ..common::KeyValue::default()
    }
}

fn attributes(attributes: Vec<KeyValue>) -> Vec<common::KeyValue> {
    attributes
        .into_iter()
        .map(|kv| key_value(kv.key.as_str(), kv.value))
        .collect()
}

fn any_value(value: Value) -> common::AnyValue {
    use common::any_value::Value as V;
    fn array<T>(values: Vec<T>, each: impl Fn(T) -> V) -> V {
        V::ArrayValue(common::ArrayValue {
            values: values
                .into_iter()
                .map(|v| common::AnyValue {
                    value: Some(each(v)),
                })
                .collect(),
        })
    }
    let value = match value {
        Value::Bool(b) => V::BoolValue(b),
        Value::I64(i) => V::IntValue(i),
        Value::F64(f) => V::DoubleValue(f),
        // `as_str().to_owned()`: one copy, not `Display` through `to_string`.
        Value::String(s) => V::StringValue(s.as_str().to_owned()),
        Value::Array(Array::Bool(v)) => array(v, V::BoolValue),
        Value::Array(Array::I64(v)) => array(v, V::IntValue),
        Value::Array(Array::F64(v)) => array(v, V::DoubleValue),
        Value::Array(Array::String(v)) => array(v, |s| V::StringValue(s.as_str().to_owned())),
        // Both enums are non-exhaustive; a kind added upstream goes out as
        // text rather than being dropped.
        other => V::StringValue(other.to_string()),
    };
    common::AnyValue { value: Some(value) }
}

/// One span, moved (not copied) into its message.
fn span(data: SpanData) -> trace::Span {
    use trace::span::SpanKind as Kind;
    let context = &data.span_context;
    let kind = match data.span_kind {
        opentelemetry::trace::SpanKind::Client => Kind::Client,
        opentelemetry::trace::SpanKind::Server => Kind::Server,
        opentelemetry::trace::SpanKind::Producer => Kind::Producer,
        opentelemetry::trace::SpanKind::Consumer => Kind::Consumer,
        opentelemetry::trace::SpanKind::Internal => Kind::Internal,
    };
    let remote = if data.parent_span_is_remote {
        IS_REMOTE
    } else {
        0
    };
    let (code, message) = match data.status {
        Status::Unset => (trace::status::StatusCode::Unset, String::new()),
        Status::Ok => (trace::status::StatusCode::Ok, String::new()),
        Status::Error { description } => {
            (trace::status::StatusCode::Error, description.into_owned())
        }
    };
    trace::Span {
        trace_id: context.trace_id().to_bytes().to_vec(),
        span_id: context.span_id().to_bytes().to_vec(),
        trace_state: context.trace_state().header(),
        parent_span_id: if data.parent_span_id == SpanId::INVALID {
            Vec::new()
        } else {
            data.parent_span_id.to_bytes().to_vec()
        },
        flags: HAS_IS_REMOTE | remote | u32::from(context.trace_flags().to_u8()),
        name: data.name.into_owned(),
        kind: kind as i32,
        start_time_unix_nano: nanos(data.start_time),
        end_time_unix_nano: nanos(data.end_time),
        attributes: attributes(data.attributes),
        dropped_attributes_count: data.dropped_attributes_count,
        dropped_events_count: data.events.dropped_count,
        events: data
            .events
            .events
            .into_iter()
            .map(|event| trace::span::Event {
                time_unix_nano: nanos(event.timestamp),
                name: event.name.into_owned(),
                attributes: attributes(event.attributes),
                dropped_attributes_count: event.dropped_attributes_count,
            })
            .collect(),
        dropped_links_count: data.links.dropped_count,
        links: data
            .links
            .links
            .into_iter()
            .map(|link| {
                let context = &link.span_context;
                let remote = if context.is_remote() { IS_REMOTE } else { 0 };
                trace::span::Link {
                    trace_id: context.trace_id().to_bytes().to_vec(),
                    span_id: context.span_id().to_bytes().to_vec(),
                    trace_state: context.trace_state().header(),
                    flags: HAS_IS_REMOTE | remote | u32::from(context.trace_flags().to_u8()),
                    attributes: attributes(link.attributes),
                    dropped_attributes_count: link.dropped_attributes_count,
                }
            })
            .collect(),
        status: Some(trace::Status {
            code: code as i32,
            message,
        }),
    }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas,
/// each part percent-decoded and trimmed (the specification's format, W3C
/// Baggage without properties). The error names what is wrong.
pub(crate) fn parse_headers(text: &str) -> Result<Vec<(String, String)>, String> {
    let decode = |part: &str| {
        percent_encoding::percent_decode_str(part.trim())
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| "a part is not percent-encoded UTF-8".to_owned())
    };
    // Errors name a pair by its place and a header by its key, never a
    // value: a value is often a secret.
    text.split(',')
        .filter(|pair| !pair.trim().is_empty())
        .enumerate()
        .map(|(i, pair)| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("pair {} is not key=value", i + 1))?;
            let (key, value) = (decode(key)?, decode(value)?);
            reqwest::header::HeaderName::try_from(key.as_str())
                .map_err(|_| format!("{key:?} is not a header name"))?;
            HeaderValue::try_from(value.as_str())
                .map_err(|_| format!("the value of {key:?} is not a header value"))?;
            Ok((key, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use opentelemetry::trace::{SpanContext, SpanKind, TraceFlags, TraceId, TraceState};
    use opentelemetry::{InstrumentationScope, Key};
    use opentelemetry_sdk::trace::{SpanEvents, SpanLinks};
    use std::borrow::Cow;

    fn context(trace: u128, span: u64, remote: bool) -> SpanContext {
        SpanContext::new(
            TraceId::from(trace),
            SpanId::from(span),
            TraceFlags::SAMPLED,
            remote,
            TraceState::from_key_value([("vendor", "x")]).unwrap(),
        )
    }

    /// A span with every part the conversion handles.
    fn full_span(status: Status, parent: SpanId) -> SpanData {
        let mut events = SpanEvents::default();
        events.events.push(opentelemetry::trace::Event::new(
            "exception",
            UNIX_EPOCH + Duration::from_millis(1_764_000_000_100),
            vec![KeyValue::new("exception.message", "boom")],
            1,
        ));
        events.dropped_count = 2;
        let mut links = SpanLinks::default();
        links.links.push(opentelemetry::trace::Link::new(
            context(7, 8, true),
            vec![KeyValue::new("link.kind", "follows")],
            3,
        ));
        SpanData {
            span_context: context(
                0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
                0xb7ad_6b71_6920_3331,
                false,
            ),
            parent_span_id: parent,
            parent_span_is_remote: true,
            span_kind: SpanKind::Server,
            name: Cow::Owned("GET /slow-endpoint".to_owned()),
            start_time: UNIX_EPOCH + Duration::from_millis(1_764_000_000_000),
            end_time: UNIX_EPOCH + Duration::from_millis(1_764_000_003_000),
            attributes: vec![
                KeyValue::new("http.route", "/slow-endpoint"),
                KeyValue::new(Key::from_static_str("static.value"), Value::from("v")),
                KeyValue::new("http.status_code", 200_i64),
                KeyValue::new("ratio", 0.5),
                KeyValue::new("cached", true),
                KeyValue::new("ids", Value::Array(Array::I64(vec![1, 2]))),
                KeyValue::new(
                    "names",
                    Value::Array(Array::String(vec!["a".into(), "b".into()])),
                ),
                KeyValue::new("flags", Value::Array(Array::Bool(vec![true]))),
                KeyValue::new("weights", Value::Array(Array::F64(vec![1.5]))),
            ],
            dropped_attributes_count: 4,
            events,
            links,
            status,
            instrumentation_scope: InstrumentationScope::builder("tracing-opentelemetry")
                .with_version("0.33.0")
                .build(),
        }
    }

    /// What this writes is what opentelemetry-proto's own conversion (the
    /// one opentelemetry-otlp uses) writes, field for field.
    #[test]
    fn a_span_converts_as_the_published_conversion_does() {
        for (status, parent) in [
            (
                Status::Error {
                    description: "database unreachable".into(),
                },
                SpanId::from(0x00f0_67aa_0ba9_02b7),
            ),
            (Status::Ok, SpanId::INVALID),
            (Status::Unset, SpanId::INVALID),
        ] {
            let data = full_span(status, parent);
            assert_eq!(span(data.clone()), trace::Span::from(data));
        }
    }

    #[test]
    fn a_batch_is_one_resource_with_its_spans_grouped_by_scope() {
        let mut exporter = OtlpHttp::new(
            reqwest::blocking::Client::new(),
            "http://127.0.0.1:1/v1/traces",
            &[],
        )
        .unwrap();
        let resource = opentelemetry_sdk::Resource::builder_empty()
            .with_service_name("business-logic")
            .with_attribute(KeyValue::new("k8s.pod.name", "business-logic-v1-5d8f"))
            .build();
        exporter.set_resource(&resource);
        let mut other = full_span(Status::Unset, SpanId::INVALID);
        other.instrumentation_scope = InstrumentationScope::builder("other").build();
        let batch = vec![
            full_span(Status::Ok, SpanId::INVALID),
            other,
            full_span(Status::Unset, SpanId::INVALID),
        ];
        let request = exporter.request(batch);
        let [resource_spans] = request.resource_spans.as_slice() else {
            panic!("{request:?}")
        };
        let mut keys: Vec<&str> = resource_spans
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .map(|kv| kv.key.as_str())
            .collect();
        keys.sort_unstable();
        assert_eq!(keys, ["k8s.pod.name", "service.name"]);
        let scopes: Vec<(&str, usize)> = resource_spans
            .scope_spans
            .iter()
            .map(|s| (s.scope.as_ref().unwrap().name.as_str(), s.spans.len()))
            .collect();
        assert_eq!(scopes, [("tracing-opentelemetry", 2), ("other", 1)]);
        assert_eq!(
            resource_spans.scope_spans[0]
                .scope
                .as_ref()
                .unwrap()
                .version,
            "0.33.0"
        );
    }

    #[test]
    fn headers_are_key_value_pairs_percent_decoded() {
        assert_eq!(
            parse_headers("api-key=secret%20value, x-tenant = demo ,").unwrap(),
            [
                ("api-key".to_owned(), "secret value".to_owned()),
                ("x-tenant".to_owned(), "demo".to_owned())
            ]
        );
        assert!(parse_headers("").unwrap().is_empty());
        assert!(parse_headers("novalue").unwrap_err().contains("key=value"));
        assert!(
            parse_headers("bad header=1")
                .unwrap_err()
                .contains("header name")
        );
        assert!(parse_headers("k=%0A").unwrap_err().contains("header value"));
    }
}
