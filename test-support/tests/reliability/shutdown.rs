use std::time::{Duration, Instant};

use futures::future::join_all;
use test_support::collector::Collector;
use test_support::database::{Backend, TestDatabase};
use test_support::service::{Service, Signal};
use test_support::stack::{Stack, trace_id_on};

async fn start(grace_secs: &str) -> (Service, Collector, TestDatabase) {
    let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
    let collector = Collector::start();
    let mut service = Service::start(
        "business-logic",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.otlp_endpoint()),
            ("SHUTDOWN_GRACE_PERIOD_SECS", grace_secs.into()),
        ],
    );
    service.wait_ready(Duration::from_secs(30)).await.unwrap();
    (service, collector, db)
}

/// business-logic with `grace_secs` of grace, holding one 20 s request (the
/// returned task); the collector and database must outlive the test.
async fn holding_a_long_request(
    grace_secs: &str,
) -> (
    Service,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    (Collector, TestDatabase),
) {
    let (service, collector, db) = start(grace_secs).await;
    let url = service.url("/slow-endpoint?delay_ms=20000");
    let request = tokio::spawn(async move { reqwest::get(&url).await });
    assert!(
        service
            .wait_for_log("applying the deliberate delay", Duration::from_secs(10))
            .is_some()
    );
    (service, request, (collector, db))
}

/// Which service a shutdown case stops, and how.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// business-logic alone, with `/slow-endpoint` requests in flight.
    BusinessLogic,
    /// front-end (business-logic behind it), with `/slow-page` requests in flight.
    FrontEnd,
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal's Ctrl-C) while slow requests
/// are in flight: each completes with 200, new connections are refused,
/// their spans reach the collector, and the process exits 0 within its grace
/// period, saying what it does while it does it.
async fn drains_in_flight_requests(target: Target, signal: &str) {
    const IN_FLIGHT: usize = 5;
    let grace = [("SHUTDOWN_GRACE_PERIOD_SECS", "10")];
    let (stack, path) = match target {
        Target::BusinessLogic => (
            Stack::start_with(&grace, &[], None).await,
            "/slow-endpoint?delay_ms=1500",
        ),
        Target::FrontEnd => (
            Stack::start_with(&[], &grace, None).await,
            "/slow-page?delay_ms=1500",
        ),
    };
    let mut stack = stack;
    let backend_port = stack.backend.as_ref().unwrap().port();
    let port = match target {
        Target::BusinessLogic => backend_port,
        Target::FrontEnd => stack.front.port(),
    };
    let url = format!("http://127.0.0.1:{port}{path}");
    let in_flight: Vec<_> = (0..IN_FLIGHT)
        .map(|_| {
            let (client, url) = (stack.client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).send().await.unwrap() })
        })
        .collect();
    // Every request has reached business-logic's deliberate delay.
    let backend = stack.backend.as_ref().unwrap();
    let reached = test_support::wait_until(Duration::from_secs(10), || {
        let n = backend
            .logs()
            .iter()
            .filter(|l| l.contains("applying the deliberate delay"))
            .count();
        (n == IN_FLIGHT).then_some(())
    });
    assert!(reached.is_some(), "slow requests did not start");

    let service = match target {
        Target::BusinessLogic => stack.backend.as_mut().unwrap(),
        Target::FrontEnd => &mut stack.front,
    };
    let signalled = Instant::now();
    service.signal(to_signal(signal));
    assert!(
        service
            .wait_for_log(
                "stopping: waiting up to 10 s for in-flight requests",
                Duration::from_secs(2)
            )
            .is_some(),
        "SIG{signal}: no stopping line:\n{}",
        service.logs().join("\n")
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(
        refused.is_err(),
        "new connections are still accepted after SIG{signal}"
    );

    let mut trace_ids = Vec::new();
    for response in join_all(in_flight).await {
        let response = response.unwrap();
        assert_eq!(response.status(), 200, "SIG{signal} cut a request off");
        let body = response.text().await.unwrap();
        trace_ids.push(match target {
            Target::BusinessLogic => {
                let body: serde_json::Value = serde_json::from_str(&body).unwrap();
                body["trace_id"].as_str().unwrap().to_owned()
            }
            Target::FrontEnd => trace_id_on(&body),
        });
    }
    let status = service
        .wait_exit(Duration::from_secs(10))
        .expect("did not exit");
    assert!(status.success(), "SIG{signal}: exit status {status:?}");
    assert!(signalled.elapsed() < Duration::from_secs(10));
    let logs = service.logs();
    assert!(
        !logs.iter().any(|l| l.contains("forced shutdown")),
        "SIG{signal} was taken as a forced shutdown:\n{}",
        logs.join("\n")
    );
    let server = match target {
        Target::BusinessLogic => "business-logic",
        Target::FrontEnd => "front-end",
    };
    for trace_id in &trace_ids {
        stack
            .collector
            .wait_for_trace(trace_id, Duration::from_secs(2), |spans| {
                spans.iter().any(|s| s.name == "data_transformation")
                    && spans
                        .iter()
                        .any(|s| s.kind.as_deref() == Some("SERVER") && s.service_name == server)
            });
    }
}

// Both services stop through service-kit's one handler of both signals
// (service-kit/src/server.rs): each signal is sent once, each to another
// service. tests/local/test_make_run.py stops both with either signal too.
#[tokio::test(flavor = "multi_thread")]
async fn business_logic_drains_on_sigterm() {
    drains_in_flight_requests(Target::BusinessLogic, "TERM").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn front_end_drains_on_sigint() {
    drains_in_flight_requests(Target::FrontEnd, "INT").await;
}

/// A second signal while draining stops at once: the process does not wait
/// out the grace period for a long request.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_stops_at_once() {
    let (mut service, request, _held) = holding_a_long_request("30").await;
    service.signal(Signal::INT);
    assert!(
        service
            .wait_for_log("stopping: waiting up to 30 s", Duration::from_secs(2))
            .is_some()
    );
    let second = Instant::now();
    service.signal(Signal::INT);
    let status = service
        .wait_exit(Duration::from_secs(5))
        .expect("a second SIGINT did not stop the process");
    let took = second.elapsed();
    assert!(took < Duration::from_secs(3), "exit took {took:?}");
    assert!(status.success(), "exit status {status:?}");
    assert!(service.logs().iter().any(|l| l.contains("stopped at once")));
    assert!(
        request.await.unwrap().is_err(),
        "the cut request cannot have succeeded"
    );
}

/// A request longer than the grace period does not keep the process alive
/// past it.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_longer_than_the_grace_period_does_not_hold_the_process() {
    let (mut service, request, _held) = holding_a_long_request("1").await;
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

fn to_signal(name: &str) -> Signal {
    match name {
        "INT" => Signal::INT,
        "TERM" => Signal::TERM,
        other => panic!("no such signal in these tests: {other}"),
    }
}

/// A page in flight on one worker whose backend call runs on a connection
/// another worker opened: when that other worker goes idle during the stop,
/// the page must still finish. Each front-end worker keeps its own
/// connections to business-logic, so no worker's stop can cut another's
/// call.
///
/// The steps make the crossing certain with a client shared by all workers:
/// one client connection per worker (actix-web hands accepted connections
/// to its workers in turn), a fast page on each, one after another, so the
/// backend connections are opened and left idle; then the last worker's
/// long slow page takes an idle backend connection first, and the other
/// workers' short slow pages follow. Once SIGTERM arrives, the short pages
/// end and their workers stop, while the long page is still in flight.
#[tokio::test(flavor = "multi_thread")]
async fn a_workers_stop_does_not_cut_another_workers_backend_call() {
    const WORKERS: usize = 3;
    let workers = WORKERS.to_string();
    let grace = [
        ("SHUTDOWN_GRACE_PERIOD_SECS", "10"),
        ("WORKERS", workers.as_str()),
    ];
    let mut stack = Stack::start_with(&[], &grace, None).await;
    // One keep-alive connection per client: each stays with one worker.
    let clients: Vec<reqwest::Client> = (0..WORKERS)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap()
        })
        .collect();
    for client in &clients {
        let response = client
            .get(stack.front.url("/fast-page"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    let backend = stack.backend.as_ref().unwrap();
    let delays_reached = |n: usize| {
        test_support::wait_until(Duration::from_secs(10), || {
            let reached = backend
                .logs()
                .iter()
                .filter(|l| l.contains("applying the deliberate delay"))
                .count();
            (reached >= n).then_some(())
        })
    };
    let page = |client: &reqwest::Client, delay_ms: u64| {
        let request = client
            .get(stack.front.url(&format!("/slow-page?delay_ms={delay_ms}")))
            .send();
        tokio::spawn(async move {
            let response = request.await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        })
    };
    let mut in_flight = vec![page(&clients[WORKERS - 1], 3000)];
    assert!(
        delays_reached(1).is_some(),
        "the long slow page did not start"
    );
    in_flight.extend(clients[..WORKERS - 1].iter().map(|c| page(c, 500)));
    assert!(
        delays_reached(WORKERS).is_some(),
        "the short slow pages did not start"
    );

    stack.front.signal(Signal::TERM);
    let mut trace_ids = Vec::new();
    for (i, page) in join_all(in_flight).await.into_iter().enumerate() {
        let (status, body) = page.unwrap();
        assert_eq!(
            status,
            200,
            "page {i} was cut off by another worker's stop:\n{body}\n{}",
            stack.front.log_tail(20)
        );
        trace_ids.push(trace_id_on(&body));
    }
    let status = stack
        .front
        .wait_exit(Duration::from_secs(10))
        .expect("front-end did not exit");
    assert!(status.success(), "exit status {status:?}");
    for trace_id in &trace_ids {
        stack
            .collector
            .wait_for_trace(trace_id, Duration::from_secs(2), |spans| {
                spans.iter().any(|s| s.name == "data_transformation")
                    && spans.iter().any(|s| {
                        s.kind.as_deref() == Some("SERVER") && s.service_name == "front-end"
                    })
            });
    }
}
