//! business-logic's own metric: each query's duration, by query, served at
//! `/metrics` beside the request metrics, with exemplars naming the query's
//! span.

use std::time::Duration;

use business_logic::db::Query;
use contract::metrics::DB_QUERY_DURATION_SECONDS;
use test_support::database::Backend;

use crate::helpers::{TestApp, on_both_databases};

/// What Prometheus sends when it scrapes with OpenMetrics first.
const OPENMETRICS_FIRST: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

on_both_databases!(each_query_has_a_duration_histogram_whose_exemplar_is_the_query_span);

async fn each_query_has_a_duration_histogram_whose_exemplar_is_the_query_span(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let fast = app.get_json("/fast-endpoint?sku=SKU-00042").await;
    let slow = app.get_json("/slow-endpoint?delay_ms=1").await;

    let openmetrics = app
        .client
        .get(app.service.url("/metrics"))
        .header("Accept", OPENMETRICS_FIRST)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let buckets = format!("{DB_QUERY_DURATION_SECONDS}_bucket{{");
    for (query, answer) in [(Query::ItemBySku, &fast), (Query::StockByCategory, &slow)] {
        let trace_id = answer["trace_id"].as_str().unwrap();
        let series = format!(r#"query="{}",service="business-logic""#, query.label());
        let lines: Vec<&str> = openmetrics
            .lines()
            .filter(|l| l.starts_with(&buckets) && l.contains(&series))
            .filter(|l| l.contains(&format!(r#"trace_id="{trace_id}""#)))
            .collect();
        // The exemplar sits on one bucket: the one its duration falls in.
        let [line] = lines[..] else {
            panic!("{query:?}: not one bucket with trace {trace_id}:\n{openmetrics}");
        };
        let (sample, exemplar) = line.split_once(" # ").unwrap();
        let le: f64 = sample
            .split_once(r#"le=""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(le, _)| le.parse().unwrap())
            .unwrap();
        let (labels, value) = exemplar.split_once("} ").unwrap();
        let seconds: f64 = value.split(' ').next().unwrap().parse().unwrap();
        assert!(0.0 < seconds && seconds <= le, "{line}");
        // Its span is the query's client span in that trace, as exported.
        let span_id = labels
            .split_once(r#"span_id=""#)
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(id, _)| id)
            .unwrap();
        let spans = app
            .collector
            .wait_for_trace(trace_id, Duration::from_secs(15), |spans| {
                spans.iter().any(|s| s.id == span_id)
            });
        let span = spans.iter().find(|s| s.id == span_id).unwrap();
        assert_eq!(span.kind.as_deref(), Some("CLIENT"), "{span:#?}");
        assert_eq!(span.name, "SELECT catalog_items");
    }

    // The plain text format has the same histogram, one observation per
    // query asked for, without exemplars (it has no syntax for them).
    let plain = app.get("/metrics").await.text().await.unwrap();
    let counts: Vec<&str> = plain
        .lines()
        .filter(|l| l.starts_with(&format!("{DB_QUERY_DURATION_SECONDS}_count{{")))
        .collect();
    assert_eq!(
        counts,
        [
            r#"db_query_duration_seconds_count{query="item_by_sku",service="business-logic",version="v1"} 1"#,
            r#"db_query_duration_seconds_count{query="stock_by_category",service="business-logic",version="v1"} 1"#,
        ],
        "{plain}"
    );
    assert!(!plain.contains(" # {"), "{plain}");
}
