use std::net::ToSocketAddrs;
use std::time::{Duration, Instant};

use test_support::collector::Collector;
use test_support::database::{Backend, TestDatabase};
use test_support::net::TcpProxy;
use test_support::service::Service;

async fn status(client: &reqwest::Client, url: &str) -> (u16, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, content_type)
}

async fn wait_for_status(
    client: &reqwest::Client,
    url: &str,
    want: u16,
    limit: Duration,
) -> Duration {
    let started = Instant::now();
    while started.elapsed() < limit {
        if status(client, url).await.0 == want {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not answer {want} within {limit:?}");
}

/// Tests that need PostgreSQL (`make test-rust` skips this marker when
/// TEST_DATABASE_URL is unset).
mod needs_postgres {
    use super::*;

    /// PostgreSQL behind a proxy the test controls: down at start-up, then up,
    /// then lost while running, then back.
    #[tokio::test(flavor = "multi_thread")]
    async fn business_logic_waits_for_its_postgres_database_and_survives_losing_it() {
        let Some(db) = TestDatabase::create(Backend::Postgres).await else {
            return;
        };
        let (prefix, rest) = db.url.split_once('@').unwrap();
        let (host_port, db_name) = rest.split_once('/').unwrap();
        let target = host_port.to_socket_addrs().unwrap().next().unwrap();
        let proxy = TcpProxy::start(target, false);
        let url = format!("{prefix}@{}/{db_name}", proxy.addr());

        let collector = Collector::start();
        let service = Service::start(
            "business-logic",
            &[
                ("DATABASE_URL", url),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.otlp_endpoint()),
            ],
        );
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();

        // Down at start-up: the process stays up, alive but not ready.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(status(&client, &service.url("/healthz")).await.0, 200);
        assert_eq!(status(&client, &service.url("/readyz")).await.0, 503);
        let (code, content_type) = status(&client, &service.url("/fast-endpoint")).await;
        assert_eq!(
            (code, content_type.as_str()),
            (503, "application/problem+json")
        );

        // Retried with growing backoff.
        let delays: Vec<u64> = service
            .logs()
            .iter()
            .filter(|l| l.contains("database not ready; retrying"))
            .filter_map(|l| {
                l.split_once("retry_in_ms=")?
                    .1
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect();
        assert!(delays.len() >= 3, "retries: {delays:?}");
        assert!(
            delays.windows(2).all(|w| w[1] >= w[0]) && delays.last() > delays.first(),
            "{delays:?}"
        );
        assert!(delays.iter().all(|d| *d <= 5000), "{delays:?}");

        // Up: ready by itself.
        proxy.forward();
        wait_for_status(
            &client,
            &service.url("/readyz"),
            200,
            Duration::from_secs(15),
        )
        .await;
        assert_eq!(status(&client, &service.url("/fast-endpoint")).await.0, 200);

        // Lost while running: 503 problem+json, not a 500, not a hang.
        proxy.cut();
        let started = Instant::now();
        let (code, content_type) = status(&client, &service.url("/fast-endpoint")).await;
        assert_eq!(
            (code, content_type.as_str()),
            (503, "application/problem+json")
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(status(&client, &service.url("/readyz")).await.0, 503);

        // Back: service resumes.
        proxy.forward();
        wait_for_status(
            &client,
            &service.url("/fast-endpoint"),
            200,
            Duration::from_secs(15),
        )
        .await;
        wait_for_status(
            &client,
            &service.url("/readyz"),
            200,
            Duration::from_secs(5),
        )
        .await;
        assert!(!service.logs().iter().any(|l| l.contains("panicked")));
    }
}
