//! A stand-in for Jaeger's span receivers: `POST /api/v2/spans` (Zipkin v2
//! JSON) and `POST /v1/traces` (OTLP/HTTP protobuf), in one of two modes.
//!
//! - [`Collector::start`], for tests: every span is checked against the
//!   published format and kept; a span that does not conform is recorded as
//!   an error and the request gets a 400, as a real collector would answer.
//! - [`Collector::counting`], for the bench: the spans of each batch (either
//!   protocol) are counted, not checked or kept, so the services pay the
//!   full cost of exporting and the receiver little.
//!
//! OTLP bodies are decoded with the published protobuf definitions (the
//! `opentelemetry-proto` crate, generated from open-telemetry/opentelemetry-proto).

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{HttpResponse, web};
use anyhow::Context;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use prost::Message;
use serde::de::IgnoredAny;
use serde_json::Value;

/// One received span, in Zipkin terms (OTLP spans are converted).
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub trace_id: String,
    pub id: String,
    pub parent_id: Option<String>,
    /// `SERVER`, `CLIENT`, … or `None` for internal spans.
    pub kind: Option<String>,
    pub name: String,
    pub service_name: String,
    pub timestamp_us: u64,
    pub duration_us: u64,
    /// Zipkin tags; for OTLP, the span's attributes and the resource's other
    /// than `service.name`, values as text (as the OpenTelemetry Collector's
    /// Zipkin exporter maps them).
    pub tags: serde_json::Map<String, Value>,
    /// OTLP: the resource's attributes, `service.name` included, values as
    /// text. Zipkin spans have no resource: empty.
    pub resource: BTreeMap<String, String>,
    /// The span's events: OTLP as `<level attribute> <name>` (a log line
    /// recorded on its span by tracing-opentelemetry: `WARN request failed`),
    /// Zipkin as its annotations' values.
    pub events: Vec<String>,
    /// `zipkin` or `otlp`.
    pub protocol: &'static str,
}

/// Microseconds since the Unix epoch now, on the clock span timestamps use.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug)]
enum Mode {
    Check,
    Count,
}

#[derive(Debug)]
struct State {
    mode: Mode,
    spans: Mutex<Vec<Span>>,
    errors: Mutex<Vec<String>>,
    span_count: AtomicU64,
    batches: AtomicU64,
    rejected: AtomicU64,
}

/// The collector; stops when dropped.
#[derive(Debug)]
pub struct Collector {
    addr: SocketAddr,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

impl Collector {
    /// The checking collector, on a free loopback port, on its own thread
    /// and runtime.
    pub fn start() -> Self {
        Self::serve(Mode::Check).unwrap()
    }

    /// The counting collector.
    pub fn counting() -> anyhow::Result<Self> {
        Self::serve(Mode::Count)
    }

    fn serve(mode: Mode) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the collector")?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            mode,
            spans: Mutex::default(),
            errors: Mutex::default(),
            span_count: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        });
        let data = web::Data::from(state.clone());
        let handle = crate::net::serve_on_own_thread("collector", listener, move |app| {
            app.app_data(data.clone())
                .app_data(web::PayloadConfig::new(32 * 1024 * 1024))
                .route("/api/v2/spans", web::post().to(zipkin))
                .route("/v1/traces", web::post().to(otlp));
        })?;
        Ok(Self {
            addr,
            state,
            handle,
        })
    }

    /// The variables pointing both span exporters (OTLP, the default, and
    /// Zipkin) here, whichever `OTEL_TRACES_EXPORTER` chooses.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        exporter_env(&self.url())
    }

    /// Its base URL, `http://127.0.0.1:port` (see [`exporter_env`]).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL to give `OTEL_EXPORTER_ZIPKIN_ENDPOINT`.
    pub fn zipkin_endpoint(&self) -> String {
        format!("http://{}/api/v2/spans", self.addr)
    }

    /// The URL to give `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn otlp_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far (checking mode; empty when counting).
    pub fn spans(&self) -> Vec<Span> {
        self.state.spans.lock().unwrap().clone()
    }

    /// Format violations seen so far (should stay empty).
    pub fn errors(&self) -> Vec<String> {
        self.state.errors.lock().unwrap().clone()
    }

    /// Spans accepted so far, in either mode.
    pub fn span_count(&self) -> u64 {
        self.state.span_count.load(Ordering::Relaxed)
    }

    /// Export requests accepted so far.
    pub fn batches(&self) -> u64 {
        self.state.batches.load(Ordering::Relaxed)
    }

    /// Export requests answered 400.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.load(Ordering::Relaxed)
    }

    /// Waits (bounded) until the spans of `trace_id` satisfy `done`, and
    /// returns them; panics with what did arrive otherwise.
    pub fn wait_for_trace(
        &self,
        trace_id: &str,
        limit: Duration,
        done: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        let found = crate::wait_until(limit, || {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == trace_id)
                .collect();
            done(&spans).then_some(spans)
        });
        let errors = self.errors();
        assert!(
            errors.is_empty(),
            "malformed spans reached the collector: {errors:#?}"
        );
        found.unwrap_or_else(|| {
            panic!(
                "trace {trace_id} incomplete after {limit:?}; received: {:#?}",
                self.spans()
            )
        })
    }
}

/// The variables pointing both span exporters at a receiver on `base`
/// (`http://host:port`): `OTEL_EXPORTER_OTLP_ENDPOINT` (`/v1/traces` is
/// appended) and `OTEL_EXPORTER_ZIPKIN_ENDPOINT` (`/api/v2/spans`).
pub fn exporter_env(base: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", base.to_owned()),
        (
            "OTEL_EXPORTER_ZIPKIN_ENDPOINT",
            format!("{base}/api/v2/spans"),
        ),
    ]
}

impl Drop for Collector {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks one Zipkin v2 span (zipkin-api `zipkin2-api.yaml`, `Span`).
fn zipkin_span(value: &Value) -> Result<Span, String> {
    let field = |name: &str| value.get(name);
    let string = |name: &str| -> Result<String, String> {
        field(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| format!("`{name}` missing or not a string in {value}"))
    };
    let trace_id = string("traceId")?;
    if !is_hex(&trace_id, 32) {
        return Err(format!(
            "traceId {trace_id:?} is not 32 lower-case hex digits"
        ));
    }
    let id = string("id")?;
    if !is_hex(&id, 16) {
        return Err(format!("id {id:?} is not 16 lower-case hex digits"));
    }
    let parent_id = match field("parentId") {
        None => None,
        Some(Value::String(p)) if is_hex(p, 16) && p.bytes().any(|b| b != b'0') => Some(p.clone()),
        Some(other) => {
            return Err(format!(
                "parentId {other} is not 16 hex digits, not all zero (a root span has none)"
            ));
        }
    };
    let kind = match field("kind") {
        None => None,
        Some(Value::String(k))
            if ["CLIENT", "SERVER", "PRODUCER", "CONSUMER"].contains(&k.as_str()) =>
        {
            Some(k.clone())
        }
        Some(other) => return Err(format!("kind {other} is not a Zipkin span kind")),
    };
    let name = string("name")?;
    let micros = |name: &str| -> Result<u64, String> {
        field(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("`{name}` missing or not an integer number of microseconds"))
    };
    let timestamp_us = micros("timestamp")?;
    // Microseconds since the epoch: after 2020 and not nanoseconds.
    if !(1_577_836_800_000_000..4_102_444_800_000_000).contains(&timestamp_us) {
        return Err(format!(
            "timestamp {timestamp_us} is not epoch microseconds"
        ));
    }
    let duration_us = micros("duration")?;
    let service_name = field("localEndpoint")
        .and_then(|e| e.get("serviceName"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("localEndpoint.serviceName missing in {value}"))?
        .to_owned();
    let tags = match field("tags") {
        None => serde_json::Map::new(),
        Some(Value::Object(tags)) if tags.values().all(Value::is_string) => tags.clone(),
        Some(other) => return Err(format!("tags {other} is not a map of strings")),
    };
    Ok(Span {
        trace_id,
        id,
        parent_id,
        kind,
        name,
        service_name,
        timestamp_us,
        duration_us,
        tags,
        resource: BTreeMap::new(),
        events: field("annotations")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| a.get("value").and_then(Value::as_str).map(str::to_owned))
            .collect(),
        protocol: "zipkin",
    })
}

async fn zipkin(state: web::Data<State>, body: web::Bytes) -> HttpResponse {
    let parsed = match &state.mode {
        Mode::Check => serde_json::from_slice::<Value>(&body)
            .map_err(|e| format!("body is not JSON: {e}"))
            .and_then(|v| match v {
                Value::Array(spans) => spans.iter().map(zipkin_span).collect(),
                other => Err(format!("body is not a JSON array of spans: {other}")),
            }),
        Mode::Count => serde_json::from_slice::<Vec<IgnoredAny>>(&body)
            .map_err(|e| format!("not a JSON array of spans: {e}"))
            .map(|batch| count(&state, batch.len())),
    };
    record(&state, parsed)
}

/// Counts a batch's spans; they are returned empty-handed (none is kept).
fn count(state: &State, spans: usize) -> Vec<Span> {
    state.span_count.fetch_add(spans as u64, Ordering::Relaxed);
    Vec::new()
}

async fn otlp(
    state: web::Data<State>,
    request: actix_web::HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let content_type = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let parsed = if content_type != "application/x-protobuf" {
        Err(format!(
            "OTLP content-type {content_type:?}, expected application/x-protobuf"
        ))
    } else {
        let request = ExportTraceServiceRequest::decode(body.as_ref())
            .map_err(|e| format!("not an ExportTraceServiceRequest: {e}"));
        match &state.mode {
            Mode::Check => request.and_then(otlp_spans),
            Mode::Count => request.map(|request| {
                let scopes = request.resource_spans.iter().flat_map(|r| &r.scope_spans);
                count(&state, scopes.map(|s| s.spans.len()).sum())
            }),
        }
    };
    record(&state, parsed)
}

/// An OTLP attribute value as text, as the OpenTelemetry Collector's Zipkin
/// exporter writes tags (arrays and maps as JSON).
fn otlp_text(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
    }
}

fn attributes(attributes: &[KeyValue]) -> impl Iterator<Item = (String, String)> + '_ {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), otlp_text(kv.value.as_ref())))
}

/// Checks one OTLP export (opentelemetry-proto `trace/v1/trace.proto`) and
/// converts its spans.
fn otlp_spans(request: ExportTraceServiceRequest) -> Result<Vec<Span>, String> {
    let mut out = Vec::new();
    for resource_spans in request.resource_spans {
        let resource: BTreeMap<String, String> = resource_spans
            .resource
            .iter()
            .flat_map(|r| attributes(&r.attributes))
            .collect();
        let service_name = resource
            .get("service.name")
            .filter(|name| !name.is_empty())
            .ok_or("resource without service.name")?
            .clone();
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let valid_id =
            |bytes: &[u8], len: usize| bytes.len() == len && bytes.iter().any(|b| *b != 0);
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            if !valid_id(&span.trace_id, 16) || !valid_id(&span.span_id, 8) {
                return Err(format!("span {:?} has malformed or zero ids", span.name));
            }
            if !span.parent_span_id.is_empty() && !valid_id(&span.parent_span_id, 8) {
                return Err(format!("span {:?} has a malformed parent id", span.name));
            }
            let kind = match span.kind {
                1 => None,
                2 => Some("SERVER"),
                3 => Some("CLIENT"),
                4 => Some("PRODUCER"),
                5 => Some("CONSUMER"),
                other => return Err(format!("span {:?} has kind {other}", span.name)),
            };
            // Nanoseconds since the epoch, after 2020, ending after starting.
            let (start, end) = (span.start_time_unix_nano, span.end_time_unix_nano);
            if !(1_577_836_800_000_000_000..4_102_444_800_000_000_000).contains(&start)
                || end < start
            {
                return Err(format!(
                    "span {:?} runs from {start} to {end}, not epoch nanoseconds",
                    span.name
                ));
            }
            let mut tags: serde_json::Map<String, Value> = resource
                .iter()
                .filter(|(key, _)| *key != "service.name")
                .map(|(key, value)| (key.clone(), Value::String(value.clone())))
                .collect();
            tags.extend(attributes(&span.attributes).map(|(k, v)| (k, Value::String(v))));
            let events = span
                .events
                .iter()
                .map(|event| {
                    let level = attributes(&event.attributes)
                        .find(|(key, _)| key == "level")
                        .map(|(_, level)| level)
                        .unwrap_or_default();
                    format!("{level} {}", event.name)
                })
                .collect();
            out.push(Span {
                trace_id: hex(&span.trace_id),
                id: hex(&span.span_id),
                parent_id: (!span.parent_span_id.is_empty()).then(|| hex(&span.parent_span_id)),
                kind: kind.map(str::to_owned),
                name: span.name,
                service_name: service_name.clone(),
                timestamp_us: start / 1000,
                duration_us: (end - start) / 1000,
                tags,
                resource: resource.clone(),
                events,
                protocol: "otlp",
            });
        }
    }
    Ok(out)
}

fn record(state: &State, parsed: Result<Vec<Span>, String>) -> HttpResponse {
    match parsed {
        Ok(spans) => {
            state.batches.fetch_add(1, Ordering::Relaxed);
            if !spans.is_empty() {
                state
                    .span_count
                    .fetch_add(spans.len() as u64, Ordering::Relaxed);
                state.spans.lock().unwrap().extend(spans);
            }
            HttpResponse::Accepted().finish()
        }
        Err(error) => {
            state.rejected.fetch_add(1, Ordering::Relaxed);
            state.errors.lock().unwrap().push(error.clone());
            HttpResponse::BadRequest().body(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "id": "b7ad6b7169203331",
            "parentId": "00f067aa0ba902b7",
            "kind": "SERVER",
            "name": "get /slow-endpoint",
            "timestamp": 1_764_000_000_000_000u64,
            "duration": 3_000_123u64,
            "localEndpoint": {"serviceName": "business-logic"},
            "tags": {"http.status_code": "200"}
        })
    }

    #[test]
    fn a_conforming_span_is_accepted() {
        let span = zipkin_span(&good()).unwrap();
        assert_eq!(span.kind.as_deref(), Some("SERVER"));
        assert_eq!(span.service_name, "business-logic");
    }

    #[test]
    fn malformed_spans_are_rejected() {
        let cases: [(&str, Value); 7] = [
            ("traceId", json!("0AF7")),
            ("parentId", json!("0000000000000000")),
            ("id", json!("xyz")),
            ("kind", json!("INTERNAL")),
            ("timestamp", json!(1_764_000_000_000_000_000u64)),
            ("duration", json!("3s")),
            ("localEndpoint", json!({})),
        ];
        for (field, value) in cases {
            let mut span = good();
            span[field] = value;
            assert!(zipkin_span(&span).is_err(), "{field} should be rejected");
        }
    }

    /// The counting mode over real HTTP: every span counted, none kept, a
    /// batch that is not an array rejected.
    #[tokio::test]
    async fn the_counting_mode_counts_spans() {
        let collector = Collector::counting().unwrap();
        let client = reqwest::Client::new();
        let post = |body: String| {
            client
                .post(collector.zipkin_endpoint())
                .header("content-type", "application/json")
                .body(body)
                .send()
        };
        let batch = json!([good(), good(), {"name": "no timestamp"}]).to_string();
        assert_eq!(post(batch).await.unwrap().status(), 202);
        assert_eq!(post("{}".into()).await.unwrap().status(), 400);

        assert_eq!(collector.span_count(), 3);
        assert_eq!((collector.batches(), collector.rejected()), (1, 1));
        assert!(
            collector.spans().is_empty(),
            "the counting mode keeps no spans"
        );
    }

    /// An OTLP export with one span of `service`, resource attribute
    /// `k8s.pod.name`, span attribute `http.status_code` (an integer).
    fn otlp_export(name: &str, trace_id: [u8; 16], parent: &[u8]) -> Vec<u8> {
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1 as trace;
        let text = |key: &str, value: &str| KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(value.into())),
            }),
            ..Default::default()
        };
        let start = 1_764_000_000_000_000_000u64;
        let span = trace::Span {
            trace_id: trace_id.to_vec(),
            span_id: vec![0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31],
            parent_span_id: parent.to_vec(),
            name: name.into(),
            kind: 2,
            start_time_unix_nano: start,
            end_time_unix_nano: start + 3_000_123_000,
            attributes: vec![KeyValue {
                key: "http.status_code".into(),
                value: Some(AnyValue {
                    value: Some(any_value::Value::IntValue(200)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![trace::ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![
                        text("service.name", "business-logic"),
                        text("k8s.pod.name", "business-logic-v1-7d9f"),
                    ],
                    ..Default::default()
                }),
                scope_spans: vec![trace::ScopeSpans {
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    async fn post_otlp(collector: &Collector, body: Vec<u8>) -> u16 {
        reqwest::Client::new()
            .post(format!("{}/v1/traces", collector.otlp_endpoint()))
            .header("content-type", "application/x-protobuf")
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    const TRACE: [u8; 16] = [
        0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80, 0x31,
        0x9c,
    ];

    /// OTLP protobuf over real HTTP: a conforming span is converted with its
    /// resource and attributes; zero ids and bodies that are not an export
    /// request are rejected.
    #[tokio::test]
    async fn otlp_exports_are_decoded_and_checked() {
        let collector = Collector::start();
        assert_eq!(
            post_otlp(&collector, otlp_export("get /slow-endpoint", TRACE, &[])).await,
            202
        );
        let spans = collector.spans();
        let [span] = spans.as_slice() else {
            panic!("{spans:#?}")
        };
        assert_eq!(span.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(
            (span.id.as_str(), span.parent_id.as_deref()),
            ("b7ad6b7169203331", None)
        );
        assert_eq!(span.kind.as_deref(), Some("SERVER"));
        assert_eq!(span.service_name, "business-logic");
        assert_eq!(span.duration_us, 3_000_123);
        assert_eq!(span.tags["http.status_code"], "200");
        assert_eq!(span.tags["k8s.pod.name"], "business-logic-v1-7d9f");
        assert_eq!(span.resource["k8s.pod.name"], "business-logic-v1-7d9f");
        assert_eq!(span.protocol, "otlp");

        assert_eq!(
            post_otlp(&collector, otlp_export("zero trace", [0; 16], &[])).await,
            400
        );
        assert_eq!(
            post_otlp(&collector, otlp_export("zero parent", TRACE, &[0; 8])).await,
            400
        );
        assert_eq!(post_otlp(&collector, b"not protobuf".to_vec()).await, 400);
        assert_eq!((collector.batches(), collector.rejected()), (1, 3));
        assert_eq!(collector.errors().len(), 3, "{:#?}", collector.errors());
    }

    #[tokio::test]
    async fn the_counting_mode_counts_otlp_too() {
        let collector = Collector::counting().unwrap();
        assert_eq!(
            post_otlp(&collector, otlp_export("data_transformation", TRACE, &[])).await,
            202
        );
        assert_eq!(
            post_otlp(&collector, otlp_export("other", TRACE, &[])).await,
            202
        );
        assert_eq!(collector.span_count(), 2);
        assert!(collector.spans().is_empty());
    }
}
