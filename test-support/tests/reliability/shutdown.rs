use std::time::{Duration, Instant};

use futures::future::join_all;
use test_support::collector::Collector;
use test_support::database::{Backend, TestDatabase};
use test_support::service::{Service, Signal};

async fn start(grace_secs: &str) -> (Service, Collector, TestDatabase) {
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let collector = Collector::start();
    let mut service = Service::start(
        "business-logic",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", collector.zipkin_endpoint()),
            ("SHUTDOWN_GRACE_PERIOD_SECS", grace_secs.into()),
        ],
    );
    service.wait_ready(Duration::from_secs(30)).await.unwrap();
    (service, collector, db)
}

/// SIGTERM while slow requests are in flight: each completes with 200, new
/// connections are refused, their spans reach the collector, and the process
/// exits 0 within its grace period.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_lets_in_flight_requests_finish_and_flushes_their_spans() {
    let (mut service, collector, _db) = start("10").await;
    let client = reqwest::Client::new();
    let url = service.url("/slow-endpoint?delay_ms=1500");
    let in_flight: Vec<_> = (0..5)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).send().await.unwrap() })
        })
        .collect();
    let reached = test_support::wait_until(Duration::from_secs(10), || {
        let n = service
            .logs()
            .iter()
            .filter(|l| l.contains("applying the deliberate delay"))
            .count();
        (n == 5).then_some(())
    });
    assert!(reached.is_some(), "slow requests did not start");

    let signalled = Instant::now();
    service.signal(Signal::TERM);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = std::net::TcpStream::connect(("127.0.0.1", service.port()));
    assert!(
        refused.is_err(),
        "new connections are still accepted after SIGTERM"
    );

    let mut trace_ids = Vec::new();
    for response in join_all(in_flight).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.unwrap();
        trace_ids.push(body["trace_id"].as_str().unwrap().to_owned());
    }
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit");
    assert!(status.success(), "exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    for trace_id in &trace_ids {
        collector.wait_for_trace(trace_id, Duration::from_secs(2), |spans| {
            spans.iter().any(|s| s.name == "data_transformation")
                && spans.iter().any(|s| s.kind.as_deref() == Some("SERVER"))
        });
    }
}

/// A request longer than the grace period does not keep the process alive
/// past it.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_longer_than_the_grace_period_does_not_hold_the_process() {
    let (mut service, _collector, _db) = start("1").await;
    let url = service.url("/slow-endpoint?delay_ms=20000");
    let request = tokio::spawn(async move { reqwest::get(&url).await });
    assert!(
        service
            .wait_for_log("applying the deliberate delay", Duration::from_secs(10))
            .is_some()
    );
    let signalled = Instant::now();
    service.signal(Signal::TERM);
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit");
    let took = signalled.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "exit took {took:?} with a 1 s grace period"
    );
    assert!(status.success(), "exit status {status:?}");
    assert!(
        request.await.unwrap().is_err(),
        "the cut request cannot have succeeded"
    );
}
