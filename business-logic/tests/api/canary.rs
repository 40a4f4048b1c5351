//! The canary: business-logic run as v2 with the regression settings, against
//! the same binary with the defaults.

use std::time::Duration;

use business_logic::db::EXTRA_QUERY_SPAN;
use futures::StreamExt;
use serde_json::Value;
use test_support::collector::Span;
use test_support::database::Backend;

use crate::helpers::{TestApp, assert_problem, on_both_databases};

const EXPORT_WAIT: Duration = Duration::from_secs(15);
const V2_REGRESSION: [(&str, &str); 3] = [
    ("SERVICE_VERSION", "v2"),
    ("REGRESSION_EXTRA_QUERY", "true"),
    ("REGRESSION_ERROR_RATE", "0"),
];

on_both_databases!(v2_answers_as_v2_and_its_traces_show_the_extra_unindexed_query);

/// GET `path` under a fixed W3C trace id; the spans of that trace once the
/// SERVER span and `min_client` CLIENT spans have arrived.
async fn traced(
    app: &TestApp,
    path: &str,
    trace_id: &str,
    min_client: usize,
) -> (Value, Vec<Span>) {
    let response = app
        .client
        .get(app.service.url(path))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "GET {path}");
    let body: Value = response.json().await.unwrap();
    let spans = app
        .collector
        .wait_for_trace(trace_id, EXPORT_WAIT, |spans| {
            spans.iter().any(|s| s.kind.as_deref() == Some("SERVER"))
                && spans
                    .iter()
                    .filter(|s| s.kind.as_deref() == Some("CLIENT"))
                    .count()
                    >= min_client
        });
    (body, spans)
}

async fn v2_answers_as_v2_and_its_traces_show_the_extra_unindexed_query(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &V2_REGRESSION).await else {
        return;
    };
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (body, spans) = traced(&app, "/fast-endpoint?sku=SKU-00042", trace, 2).await;
    assert_eq!(body["version"], "v2", "{body}");
    assert_eq!(body["item"]["sku"], "SKU-00042");

    // Every span of the service says which version exported it.
    for span in &spans {
        assert_eq!(
            span.tags.get("service.version").and_then(Value::as_str),
            Some("v2"),
            "{span:#?}"
        );
    }
    let server = spans
        .iter()
        .find(|s| s.kind.as_deref() == Some("SERVER"))
        .unwrap();
    let lookup = spans
        .iter()
        .find(|s| s.name == "SELECT catalog_items")
        .expect("the indexed lookup");
    let extra = spans
        .iter()
        .find(|s| s.name == EXTRA_QUERY_SPAN)
        .unwrap_or_else(|| panic!("no {EXTRA_QUERY_SPAN:?} span in {spans:#?}"));
    assert_eq!(extra.kind.as_deref(), Some("CLIENT"));
    assert_eq!(extra.parent_id.as_deref(), Some(server.id.as_str()));
    assert_eq!(lookup.parent_id.as_deref(), Some(server.id.as_str()));
    assert!(
        extra.timestamp_us >= lookup.timestamp_us,
        "the extra query runs after the lookup"
    );
    // The trace says what the query is and that it is the regression.
    let statement = extra.tags["db.query.text"].as_str().unwrap();
    assert!(statement.contains("LIKE '%' ||"), "{statement}");
    assert_eq!(extra.tags["regression"], "REGRESSION_EXTRA_QUERY");

    // The slow endpoint names the version too; the regression leaves it alone.
    let trace = "5bf92f3577b34da6a3ce929d0e0e4736";
    let (body, spans) = traced(&app, "/slow-endpoint?delay_ms=0", trace, 1).await;
    assert_eq!(body["version"], "v2", "{body}");
    assert!(
        spans.iter().all(|s| s.name != EXTRA_QUERY_SPAN),
        "{spans:#?}"
    );

    // Start-up says the regression is on, and how.
    let warning = app
        .service
        .wait_for_log("canary regression on", Duration::from_secs(5))
        .expect("a start-up warning about the regression");
    assert!(warning.contains("regression_extra_query=true"), "{warning}");
}

#[tokio::test(flavor = "multi_thread")]
async fn v2s_error_share_over_a_burst_is_the_configured_one_and_each_failure_says_why() {
    // 300 requests at a 20 % error rate: 60 expected, standard deviation 6.9;
    // 30 to 90 is more than four deviations either side.
    const REQUESTS: usize = 300;
    let app = TestApp::spawn(
        Backend::Sqlite,
        &[("SERVICE_VERSION", "v2"), ("REGRESSION_ERROR_RATE", "0.2")],
    )
    .await
    .unwrap();
    let statuses: Vec<u16> = futures::stream::iter(0..REQUESTS)
        .map(|_| async {
            let response = tokio::time::timeout(
                Duration::from_secs(10),
                app.client.get(app.service.url("/fast-endpoint")).send(),
            )
            .await
            .expect("answered within 10 s")
            .unwrap();
            let status = response.status().as_u16();
            if status == 500 {
                let body = assert_problem(response, 500).await;
                assert!(
                    !body["detail"].as_str().unwrap().contains("REGRESSION"),
                    "the body stays generic: {body}"
                );
            }
            status
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let failures = statuses.iter().filter(|&&s| s == 500).count();
    assert!(
        statuses.iter().all(|&s| s == 200 || s == 500),
        "{statuses:?}"
    );
    assert!(
        (30..=90).contains(&failures),
        "{failures} of {REQUESTS} failed; configured: 20 %"
    );

    // One clear log line per failure, naming the regression.
    let logged = || {
        app.service
            .logs()
            .iter()
            .filter(|l| {
                l.contains("request failed") && l.contains("v2 regression: injected failure")
            })
            .count()
    };
    test_support::wait_until(Duration::from_secs(5), || {
        (logged() == failures).then_some(())
    })
    .unwrap_or_else(|| panic!("{} failure log lines for {failures} failures", logged()));

    // The metrics count them under the version label.
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let count = |status: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| {
                l.starts_with("http_requests_total{")
                    && l.contains(r#"endpoint="/fast-endpoint""#)
                    && l.contains(&format!(r#"status="{status}""#))
            })
            .inspect(|l| assert!(l.contains(r#"version="v2""#), "{l}"))
            .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
            .sum()
    };
    assert_eq!(count("500") as usize, failures, "{metrics}");
    assert_eq!(count("200") as usize, REQUESTS - failures, "{metrics}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_defaults_it_is_v1_with_no_extra_query_and_no_failures() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let trace = "6bf92f3577b34da6a3ce929d0e0e4736";
    let (body, spans) = traced(&app, "/fast-endpoint", trace, 1).await;
    assert_eq!(body["version"], "v1", "{body}");
    assert!(
        spans.iter().all(|s| s.name != EXTRA_QUERY_SPAN),
        "{spans:#?}"
    );
    assert!(
        spans.iter().all(|s| s.tags["service.version"] == "v1"),
        "{spans:#?}"
    );
    for _ in 0..100 {
        assert_eq!(app.get("/fast-endpoint").await.status(), 200);
    }
    assert!(
        !app.service.logs().iter().any(|l| l.contains("regression")),
        "{:#?}",
        app.service.logs()
    );
    let metrics = app.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("http_requests_total{")
                && l.contains(r#"service="business-logic""#)
                && l.contains(r#"version="v1""#)),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn over_otlp_the_version_is_a_resource_attribute_and_over_zipkin_a_tag() {
    for (exporter, trace) in [
        ("otlp", "7bf92f3577b34da6a3ce929d0e0e4736"),
        ("zipkin", "8bf92f3577b34da6a3ce929d0e0e4736"),
    ] {
        let app = TestApp::spawn(
            Backend::Sqlite,
            &[
                ("SERVICE_VERSION", "v2"),
                ("OTEL_TRACES_EXPORTER", exporter),
            ],
        )
        .await
        .unwrap();
        let (body, spans) = traced(&app, "/fast-endpoint", trace, 1).await;
        assert_eq!(body["version"], "v2");
        for span in &spans {
            assert_eq!(span.protocol, exporter);
            assert_eq!(span.tags["service.version"], "v2", "{span:#?}");
            if exporter == "otlp" {
                assert_eq!(span.resource["service.version"], "v2", "{span:#?}");
            }
        }
    }
}
