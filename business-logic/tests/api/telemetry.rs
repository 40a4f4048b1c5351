use std::time::Duration;

use serde_json::Value;
use test_support::collector::Span;
use test_support::database::Backend;
use test_support::http::traceresponse;

use crate::helpers::{TestApp, is_hex, on_both_databases};

const CALLER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CALLER_SPAN: &str = "b7ad6b7169203331";
const EXPORT_WAIT: Duration = Duration::from_secs(15);

on_both_databases!(a_b3_request_continues_the_callers_trace_down_to_data_transformation);

fn find<'a>(spans: &'a [Span], name: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.name == name)
}

fn is_server(span: &Span) -> bool {
    span.kind.as_deref() == Some("SERVER")
}

/// Waits for the trace's SERVER span to be exported and returns it.
fn server_span(app: &TestApp, trace_id: &str) -> Span {
    app.collector
        .wait_for_trace(trace_id, EXPORT_WAIT, |s| s.iter().any(is_server))
        .into_iter()
        .find(is_server)
        .unwrap()
}

async fn a_b3_request_continues_the_callers_trace_down_to_data_transformation(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let response = app
        .client
        .get(app.service.url("/slow-endpoint?delay_ms=150"))
        .header("X-B3-TraceId", CALLER_TRACE)
        .header("X-B3-SpanId", CALLER_SPAN)
        .header("X-B3-Sampled", "1")
        .header("x-request-id", "req-7f3a")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["trace_id"], CALLER_TRACE,
        "the response names the caller's trace"
    );

    let spans = app
        .collector
        .wait_for_trace(CALLER_TRACE, EXPORT_WAIT, |spans| {
            find(spans, "data_transformation").is_some()
                && spans.iter().any(|s| s.kind.as_deref() == Some("SERVER"))
                && spans.iter().any(|s| s.kind.as_deref() == Some("CLIENT"))
        });
    let server = spans
        .iter()
        .find(|s| s.kind.as_deref() == Some("SERVER"))
        .unwrap();
    assert_eq!(
        server.parent_id.as_deref(),
        Some(CALLER_SPAN),
        "parent is the caller's span"
    );
    assert_eq!(server.service_name, "business-logic");
    assert_eq!(server.name.to_lowercase(), "get /slow-endpoint");
    assert_eq!(server.tags["x_request_id"], "req-7f3a");
    assert_eq!(server.tags["http.status_code"], "200");

    let transformation = find(&spans, "data_transformation").unwrap();
    assert_eq!(
        transformation.parent_id.as_deref(),
        Some(server.id.as_str())
    );
    assert!(
        transformation.duration_us >= 150_000,
        "the delay is spent inside data_transformation ({} µs)",
        transformation.duration_us
    );
    assert!(transformation.duration_us <= server.duration_us);

    let query = spans
        .iter()
        .find(|s| s.kind.as_deref() == Some("CLIENT"))
        .unwrap();
    assert_eq!(query.parent_id.as_deref(), Some(transformation.id.as_str()));
    assert_eq!(query.name, "SELECT catalog_items");
    let system = if backend == Backend::Sqlite {
        "sqlite"
    } else {
        "postgresql"
    };
    assert_eq!(query.tags["db.system.name"], system);

    // Every log line of the request carries the exported trace id.
    let needle = format!("trace_id={CALLER_TRACE}");
    let lines: Vec<String> = app
        .service
        .logs()
        .into_iter()
        .filter(|l| l.contains(&needle))
        .collect();
    assert!(
        lines.iter().any(|l| l.contains("catalog summarised"))
            && lines
                .iter()
                .any(|l| l.contains("request completed") && l.contains("status=200")),
        "request log lines without the trace id: {:#?}",
        app.service.logs()
    );
    let span_ids: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once(" span_id=").map(|(_, id)| id))
        .collect();
    assert!(span_ids.contains(&transformation.id.as_str()), "{lines:#?}");
    assert!(span_ids.contains(&server.id.as_str()), "{lines:#?}");
    // Those INFO lines stay log lines: no exported span carries one as an event.
    let events: Vec<&String> = spans.iter().flat_map(|s| &s.events).collect();
    assert!(events.is_empty(), "{events:?}");
}

/// The fast endpoint, asked with a W3C `traceparent` naming the caller's span.
async fn fast_answer_in_the_callers_trace(app: &TestApp) -> reqwest::Response {
    app.client
        .get(app.service.url("/fast-endpoint"))
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_w3c_traceparent_is_continued_too() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let response = fast_answer_in_the_callers_trace(&app).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["trace_id"], CALLER_TRACE);
    let server = server_span(&app, CALLER_TRACE);
    assert_eq!(server.parent_id.as_deref(), Some(CALLER_SPAN));
}

/// The same header as the front-end's (the shared middleware), on answers
/// and problems alike: the trace the answer names, and the server span.
#[tokio::test]
async fn answers_and_problems_carry_a_traceresponse_naming_the_server_span() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let continued = fast_answer_in_the_callers_trace(&app).await;
    assert_eq!(continued.status(), 200);
    let (trace_id, span_id, flags) = traceresponse(&continued);
    let body: Value = continued.json().await.unwrap();
    assert_eq!(trace_id, CALLER_TRACE);
    assert_eq!(body["trace_id"], CALLER_TRACE);
    assert_eq!(flags, "01", "sampled");
    assert_eq!(server_span(&app, &trace_id).id, span_id);

    for (path, status) in [("/no-such-route", 404), ("/fast-endpoint?sku=", 400)] {
        let problem = app.get(path).await;
        assert_eq!(problem.status(), status, "{path}");
        // Its shape is checked by `traceresponse`.
        let (trace_id, span_id, _) = traceresponse(&problem);
        assert_ne!(trace_id, CALLER_TRACE, "{path}: a fresh trace");
        let body: Value = problem.json().await.unwrap();
        assert_eq!(body["trace_id"], trace_id.as_str(), "{path}");
        assert_eq!(server_span(&app, &trace_id).id, span_id, "{path}");
    }
}

#[tokio::test]
async fn malformed_b3_headers_start_a_fresh_trace_without_an_error() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let cases: [&[(&str, &str)]; 4] = [
        &[
            ("X-B3-TraceId", "not-hex"),
            ("X-B3-SpanId", CALLER_SPAN),
            ("X-B3-Sampled", "1"),
        ],
        &[
            ("X-B3-TraceId", CALLER_TRACE),
            ("X-B3-SpanId", "zz"),
            ("X-B3-Sampled", "1"),
        ],
        &[
            ("X-B3-TraceId", &"a".repeat(300)),
            ("X-B3-SpanId", CALLER_SPAN),
        ],
        &[
            ("X-B3-TraceId", "00000000000000000000000000000000"),
            ("X-B3-SpanId", CALLER_SPAN),
        ],
    ];
    for headers in cases {
        let mut request = app.client.get(app.service.url("/fast-endpoint"));
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{headers:?}");
        let body: Value = response.json().await.unwrap();
        let trace_id = body["trace_id"].as_str().unwrap().to_owned();
        assert!(is_hex(&trace_id, 32), "{headers:?}");
        assert_ne!(trace_id, CALLER_TRACE, "{headers:?}");
        let server = server_span(&app, &trace_id);
        assert_eq!(
            server.parent_id, None,
            "a fresh trace has a root server span"
        );
    }
}

/// The Zipkin choice: the collector checks each span against Zipkin v2
/// (hex ids, a service name, no all-zero parent id on a root span) and
/// rejects the batch otherwise.
#[tokio::test]
async fn the_zipkin_choice_delivers_valid_zipkin_v2_spans() {
    let app = TestApp::spawn(Backend::Sqlite, &[("OTEL_TRACES_EXPORTER", "zipkin")])
        .await
        .unwrap();
    let body = app.get_json("/slow-endpoint?delay_ms=10").await;
    let trace_id = body["trace_id"].as_str().unwrap();
    let spans = app.collector.wait_for_trace(trace_id, EXPORT_WAIT, |s| {
        s.iter().any(|s| s.name == "data_transformation")
            && s.iter().any(|s| s.kind.as_deref() == Some("SERVER"))
    });
    assert!(
        spans
            .iter()
            .all(|s| s.protocol == "zipkin" && s.service_name == "business-logic"),
        "{spans:#?}"
    );
    let server = spans
        .iter()
        .find(|s| s.kind.as_deref() == Some("SERVER"))
        .unwrap();
    assert_eq!(server.parent_id, None, "a root span names no parent");
    let transformation = spans
        .iter()
        .find(|s| s.name == "data_transformation")
        .unwrap();
    assert_eq!(
        transformation.parent_id.as_deref(),
        Some(server.id.as_str())
    );
    assert_eq!(app.collector.rejected(), 0, "{:#?}", app.collector.errors());
}

#[tokio::test]
async fn json_logs_carry_trace_and_span_ids_at_the_top_level() {
    let app = TestApp::spawn(Backend::Sqlite, &[("LOG_FORMAT", "json")])
        .await
        .unwrap();
    let body = app.get_json("/slow-endpoint?delay_ms=1").await;
    let trace_id = body["trace_id"].as_str().unwrap();
    let spans = app.collector.wait_for_trace(trace_id, EXPORT_WAIT, |s| {
        s.iter().any(|s| s.name == "data_transformation")
    });
    let transformation = spans
        .iter()
        .find(|s| s.name == "data_transformation")
        .unwrap();
    let line: Value = app
        .service
        .logs()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("catalog summarised"))
        })
        .expect("a JSON log line for the slow request");
    assert_eq!(line["trace_id"], trace_id);
    assert_eq!(line["span_id"], transformation.id.as_str());
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["fields"]["items"], 5000);
    // Every stdout line is JSON in this mode.
    assert!(
        app.service
            .logs()
            .iter()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
}

#[tokio::test]
async fn with_export_off_requests_still_get_trace_ids_and_nothing_is_sent() {
    let app = TestApp::spawn(Backend::Sqlite, &[("OTEL_TRACES_EXPORTER", "none")])
        .await
        .unwrap();
    let body = app.get_json("/fast-endpoint").await;
    assert!(is_hex(body["trace_id"].as_str().unwrap(), 32));
    std::thread::sleep(Duration::from_millis(1500));
    assert!(app.collector.spans().is_empty());
}

/// The request's SERVER span carries tracing-actix-web's HTTP fields, named
/// as its `root_span!` names them, plus the caller's `x-request-id`; its
/// `trace_id` tag is the trace's, whether continued or started here.
#[tokio::test]
async fn the_server_span_carries_the_http_fields_and_its_trace_id() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let port = app.service.port();
    for caller in [true, false] {
        let mut request = app
            .client
            .get(app.service.url("/fast-endpoint?sku=SKU-00042"))
            .header("User-Agent", "probe/1.0")
            .header("x-request-id", "req-42");
        if caller {
            request = request
                .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
                .header("X-B3-TraceId", CALLER_TRACE)
                .header("X-B3-SpanId", CALLER_SPAN)
                .header("X-B3-Sampled", "1");
        }
        let body: Value = request.send().await.unwrap().json().await.unwrap();
        let trace_id = body["trace_id"].as_str().unwrap().to_owned();
        assert_eq!(trace_id == CALLER_TRACE, caller, "{trace_id}");
        let server = server_span(&app, &trace_id);
        assert_eq!(server.name, "GET /fast-endpoint");
        assert_eq!(server.parent_id.as_deref(), caller.then_some(CALLER_SPAN));
        let tag = |name: &str| server.tags.get(name).and_then(Value::as_str);
        for (name, value) in [
            ("http.method", "GET"),
            ("http.route", "/fast-endpoint"),
            ("http.flavor", "1.1"),
            ("http.scheme", "http"),
            ("http.host", &format!("127.0.0.1:{port}")),
            ("http.client_ip", "127.0.0.1"),
            ("http.user_agent", "probe/1.0"),
            ("http.target", "/fast-endpoint?sku=SKU-00042"),
            ("http.status_code", "200"),
            ("trace_id", &trace_id),
            ("x_request_id", "req-42"),
        ] {
            assert_eq!(tag(name), Some(value), "{name}: {:?}", server.tags);
        }
        // tracing-actix-web's own request id: a UUID.
        let request_id = tag("request_id").unwrap_or_default();
        assert_eq!(request_id.len(), 36, "{:?}", server.tags);
        assert_eq!(request_id.matches('-').count(), 4, "{request_id}");
    }
}
