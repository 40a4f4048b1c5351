use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::join_all;
use serde_json::Value;
use test_support::database::Backend;

use crate::helpers::{TestApp, assert_problem, is_hex, on_both_databases};

on_both_databases!(
    fast_endpoint_reads_the_item_asked_for,
    fast_endpoint_without_a_sku_reads_a_random_item,
    slow_endpoint_summarises_the_whole_catalog_after_its_delay,
    fast_requests_finish_while_hundreds_of_slow_ones_are_in_flight,
    health_readiness_and_metrics_answer,
);

async fn fast_endpoint_reads_the_item_asked_for(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let body = app.get_json("/fast-endpoint?sku=SKU-00042").await;
    assert_eq!(body["endpoint"], "fast");
    // Seeded as: category (i % 8), price 99 + (i * 7919) % 20000, stock (i * 31) % 500.
    assert_eq!(
        body["item"],
        serde_json::json!({"sku": "SKU-00042", "name": "Item 42", "category": "garden",
                           "price_cents": 12697, "stock": 302})
    );
    assert!(body["elapsed_ms"].as_f64().unwrap() >= 0.0);
    assert!(is_hex(body["trace_id"].as_str().unwrap(), 32));

    let missing = app.get("/fast-endpoint?sku=SKU-99999").await;
    let problem = assert_problem(missing, 404).await;
    assert!(problem["detail"].as_str().unwrap().contains("SKU-99999"));
}

async fn fast_endpoint_without_a_sku_reads_a_random_item(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let mut skus = std::collections::HashSet::new();
    for _ in 0..5 {
        let body = app.get_json("/fast-endpoint").await;
        let sku = body["item"]["sku"].as_str().unwrap().to_owned();
        assert!(sku.starts_with("SKU-") && sku.len() == 9, "{sku}");
        skus.insert(sku);
    }
    assert!(skus.len() > 1, "five random reads all returned {skus:?}");
}

async fn slow_endpoint_summarises_the_whole_catalog_after_its_delay(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let body = app.get_json("/slow-endpoint?delay_ms=150").await;
    assert_eq!(body["endpoint"], "slow");
    assert_eq!(body["delay_ms"], 150);
    assert_eq!(body["items_processed"], 5000);
    let categories = body["categories"].as_object().unwrap();
    assert_eq!(categories.len(), 8);
    let items: u64 = categories
        .values()
        .map(|c| c["items"].as_u64().unwrap())
        .sum();
    assert_eq!(items, 5000);
    assert!(body["elapsed_ms"].as_f64().unwrap() >= 150.0, "{body}");

    // The configured default applies without ?delay_ms= (200 ms in these tests).
    let body = app.get_json("/slow-endpoint").await;
    assert_eq!(body["delay_ms"], 200);
}

/// Hundreds of slow requests wait on timers, not on worker threads: fast
/// requests sent after them all complete before any slow one does.
async fn fast_requests_finish_while_hundreds_of_slow_ones_are_in_flight(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    let app = Arc::new(app);
    const SLOW: usize = 200;
    const FAST: usize = 20;
    let slow_done = Arc::new(AtomicUsize::new(0));
    let slow: Vec<_> = (0..SLOW)
        .map(|_| {
            let (app, slow_done) = (app.clone(), slow_done.clone());
            tokio::spawn(async move {
                let response = app.get("/slow-endpoint?delay_ms=3000").await;
                slow_done.fetch_add(1, Ordering::SeqCst);
                response.status().as_u16()
            })
        })
        .collect();
    // Wait until every slow request is inside its delay (each logs once there).
    let in_flight = test_support::wait_until(std::time::Duration::from_secs(20), || {
        let n = app
            .service
            .logs()
            .iter()
            .filter(|l| l.contains("applying the deliberate delay"))
            .count();
        (n >= SLOW).then_some(n)
    });
    assert_eq!(
        in_flight,
        Some(SLOW),
        "not all slow requests reached their delay"
    );
    assert_eq!(slow_done.load(Ordering::SeqCst), 0);

    let fast = join_all((0..FAST).map(|_| app.get("/fast-endpoint"))).await;
    let slow_done_when_fast_finished = slow_done.load(Ordering::SeqCst);
    assert!(fast.iter().all(|r| r.status() == 200));
    assert_eq!(
        slow_done_when_fast_finished, 0,
        "fast requests waited for slow ones to finish"
    );
    let statuses: Vec<u16> = join_all(slow)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
}

async fn health_readiness_and_metrics_answer(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, &[]).await else {
        return;
    };
    assert_eq!(app.get("/healthz").await.status(), 200);
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.get_json("/fast-endpoint").await;
    app.get("/no-such-page").await;
    let metrics = app.get("/metrics").await.text().await.unwrap();
    let line = metrics
        .lines()
        .find(|l| {
            l.starts_with("http_requests_total{") && l.contains(r#"endpoint="/fast-endpoint""#)
        })
        .unwrap_or_else(|| panic!("no fast-endpoint counter in:\n{metrics}"));
    assert!(line.contains(r#"service="business-logic""#), "{line}");
    assert!(line.contains(r#"status="200""#), "{line}");
    assert!(line.ends_with(" 1"), "{line}");
    assert!(
        metrics.contains("http_requests_duration_seconds_bucket{endpoint=\"/fast-endpoint\""),
        "no latency histogram"
    );
    assert!(
        metrics.contains(r#"endpoint="UNKNOWN""#) && !metrics.contains("no-such-page"),
        "unknown paths must be masked"
    );
}

#[tokio::test]
async fn bad_query_parameters_get_a_400_problem() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    const RULE: &str = "delay_ms must be a whole number of milliseconds from 0 to 60000";
    let cases = [
        ("/slow-endpoint?delay_ms=-1", format!(r#"{RULE}; got "-1""#)),
        ("/slow-endpoint?delay_ms=abc", format!(r#"{RULE}; got "abc""#)),
        ("/slow-endpoint?delay_ms=60001", format!(r#"{RULE}; got "60001""#)),
        (
            "/slow-endpoint?delay_ms=99999999999999999999999",
            format!(r#"{RULE}; got "99999999999999999999999""#),
        ),
        ("/slow-endpoint?delay_ms=", format!(r#"{RULE}; got """#)),
        (
            "/slow-endpoint?delay_ms=1&delay_ms=2",
            format!(r#"{RULE}, given once; got 2 values: "1", "2""#),
        ),
        (
            "/slow-endpoint?delay=100",
            r#"unknown query parameter "delay"; allowed: delay_ms"#.to_owned(),
        ),
        (
            "/fast-endpoint?sku=",
            r#"sku must be 1 to 32 characters, like SKU-00042; got """#.to_owned(),
        ),
        (
            "/fast-endpoint?sku=SKU-00001&sku=SKU-00002",
            r#"sku must be 1 to 32 characters, like SKU-00042, given once; got 2 values: "SKU-00001", "SKU-00002""#.to_owned(),
        ),
    ];
    for (path, detail) in cases {
        let problem = assert_problem(app.get(path).await, 400).await;
        assert_eq!(problem["detail"], detail, "{path}");
    }
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_get_problems() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    assert_problem(app.get("/does-not-exist").await, 404).await;
    for method in [
        reqwest::Method::POST,
        reqwest::Method::DELETE,
        reqwest::Method::PUT,
    ] {
        let response = app
            .client
            .request(method.clone(), app.service.url("/slow-endpoint"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], "GET", "{method}");
        let body: Value = assert_problem(response, 405).await;
        assert!(body["detail"].as_str().unwrap().contains(method.as_str()));
    }
}

#[test]
fn a_bad_setting_stops_start_up_naming_variable_value_and_allowed_range() {
    let output = std::process::Command::new(test_support::service::binary("business-logic"))
        .env_clear()
        .env("SLOW_ENDPOINT_DELAY_MS", "120000")
        .env("PORT", "0")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("SLOW_ENDPOINT_DELAY_MS=120000") && stderr.contains("allowed: 0 to 60000"),
        "{stderr}"
    );
}
