//! The served OpenAPI document against the running server: it is the
//! contract's document (written at build time), it lists exactly the routes
//! the server answers, and every route follows the contract's rule for
//! query parameters it does not take.

use std::collections::BTreeSet;

use contract::routes::business_logic::{METRICS, OPENAPI, Route};
use serde_json::Value;
use test_support::database::Backend;

use crate::helpers::{TestApp, assert_problem};

/// The documented (path, method) pairs.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(move |method| (path.clone(), method.clone()))
        })
        .collect()
}

async fn served_document(app: &TestApp) -> Value {
    let response = app.get(OPENAPI).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    doc
}

#[tokio::test]
async fn the_served_document_is_the_contracts_with_and_without_metrics() {
    for (env, metrics) in [
        (&[][..], true),
        (&[("METRICS_ENABLED", "false")][..], false),
    ] {
        let app = TestApp::spawn(Backend::Sqlite, env).await.unwrap();
        let served = served_document(&app).await;
        let contract = serde_json::to_value(contract::openapi::document(metrics)).unwrap();
        assert_eq!(served, contract, "METRICS_ENABLED={metrics}");
    }
}

#[tokio::test]
async fn the_served_document_lists_exactly_the_routes_the_server_answers() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let doc = served_document(&app).await;

    let expected: BTreeSet<(String, String)> = Route::ALL
        .iter()
        .map(|r| r.path())
        .chain([METRICS])
        .map(|path| (path.to_owned(), "get".to_owned()))
        .collect();
    assert_eq!(operations(&doc), expected);

    // Each documented operation answers, with a status it documents.
    for (path, _) in operations(&doc) {
        let status = app.get(&path).await.status().as_u16();
        let documented = &doc["paths"][&path]["get"]["responses"];
        assert!(
            documented.get(status.to_string()).is_some(),
            "GET {path} answered {status}, not among {documented}"
        );
        assert_eq!(status, 200, "GET {path}");
        // And no other method: the document lists GET only. (`/metrics`
        // answered 404 to these, found by schemathesis.)
        for method in [reqwest::Method::POST, reqwest::Method::TRACE] {
            let response = app
                .client
                .request(method.clone(), app.service.url(&path))
                .send()
                .await
                .unwrap();
            assert_eq!(response.headers()["allow"], "GET", "{method} {path}");
            assert_problem(response, 405).await;
        }
    }

    // What the document does not list, the server does not answer.
    for path in [
        "/",
        "/openapi",
        "/openapi.yaml",
        "/fast-endpoint/",
        "/FAST-ENDPOINT",
        "/fast-endpoint/SKU-00001",
        "/api/fast-endpoint",
        "/docs",
    ] {
        assert!(doc["paths"].get(path).is_none(), "{path}");
        assert_problem(app.get(path).await, 404).await;
    }
}

#[tokio::test]
async fn without_metrics_the_document_leaves_out_metrics_and_the_server_does_not_answer_it() {
    let app = TestApp::spawn(Backend::Sqlite, &[("METRICS_ENABLED", "false")])
        .await
        .unwrap();
    let doc = served_document(&app).await;
    let paths: BTreeSet<String> = operations(&doc).into_iter().map(|(p, _)| p).collect();
    let routes: BTreeSet<String> = Route::ALL.iter().map(|r| r.path().to_owned()).collect();
    assert_eq!(paths, routes);
    assert_problem(app.get(METRICS).await, 404).await;
}

#[tokio::test]
async fn every_route_refuses_a_query_parameter_it_does_not_take() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    for route in Route::ALL {
        let allowed = match route {
            Route::FastEndpoint => "allowed: sku",
            Route::SlowEndpoint => "allowed: delay_ms",
            Route::Healthz | Route::Readyz | Route::OpenApi => "this address takes none",
        };
        for query in ["foo=1", "foo", "sku=SKU-00001&foo=1"] {
            let path = format!("{}?{query}", route.path());
            let problem = assert_problem(app.get(&path).await, 400).await;
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("unknown query parameter") && detail.ends_with(allowed),
                "{path}: {detail}"
            );
        }
    }
}

#[tokio::test]
async fn a_problem_body_reads_as_the_contracts_type() {
    let app = TestApp::spawn(Backend::Sqlite, &[]).await.unwrap();
    let response = app.get("/fast-endpoint?sku=SKU-99999").await;
    assert_eq!(response.headers()["content-type"], contract::PROBLEM_JSON);
    let problem: contract::Problem = response.json().await.unwrap();
    assert_eq!(problem.kind, contract::ABOUT_BLANK);
    assert_eq!((problem.status, problem.title.as_str()), (404, "Not Found"));
    assert_eq!(problem.detail, r#"item "SKU-99999" not found"#);
    assert_eq!(problem.trace_id.map(|t| t.len()), Some(32));
}
