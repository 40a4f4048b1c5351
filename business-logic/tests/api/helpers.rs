use std::time::Duration;

use serde_json::Value;
use test_support::collector::Collector;
use test_support::database::{Backend, TestDatabase};
use test_support::service::Service;

/// One business-logic process with its own database and collector.
pub struct TestApp {
    pub service: Service,
    pub collector: Collector,
    pub client: reqwest::Client,
    _db: TestDatabase,
}

impl TestApp {
    /// Starts the service and waits until it is ready; `None` when the
    /// backend is not available here (PostgreSQL without TEST_DATABASE_URL).
    pub async fn spawn(backend: Backend, env: &[(&str, &str)]) -> Option<Self> {
        let db = TestDatabase::create(backend).await?;
        let collector = Collector::start();
        let mut vars = vec![
            ("DATABASE_URL", db.url.clone()),
            ("SLOW_ENDPOINT_DELAY_MS", "200".into()),
        ];
        vars.extend(collector.env());
        vars.extend(env.iter().map(|(k, v)| (*k, v.to_string())));
        let mut service = Service::start("business-logic", &vars);
        service.wait_ready(Duration::from_secs(30)).await.unwrap();
        Some(Self {
            service,
            collector,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(512)
                .build()
                .unwrap(),
            _db: db,
        })
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.service.url(path))
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }
}

/// Runs each named `async fn(Backend)` once per database backend; the
/// PostgreSQL variants carry the marker `needs_postgres` in their names
/// (`make test-rust` skips by it when TEST_DATABASE_URL is unset).
macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread")] async fn $test() { super::$test(test_support::database::Backend::Sqlite).await })*
        }
        mod needs_postgres {
            $(#[tokio::test(flavor = "multi_thread")] async fn $test() { super::$test(test_support::database::Backend::Postgres).await })*
        }
    };
}
pub(crate) use on_both_databases;

/// A problem+json body with this status, as RFC 7807 shapes it.
pub async fn assert_problem(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "problem responses are application/problem+json"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["title"].is_string() && body["detail"].is_string(),
        "{body}"
    );
    assert!(
        is_hex(body["trace_id"].as_str().unwrap_or(""), 32),
        "{body}"
    );
    body
}

pub fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}
