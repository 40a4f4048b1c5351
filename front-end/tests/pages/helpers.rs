use std::time::Duration;

use test_support::collector::Collector;
use test_support::database::{Backend, TestDatabase};
use test_support::service::Service;

/// business-logic and front-end, wired together, exporting to one collector.
pub struct Stack {
    pub collector: Collector,
    pub backend: Option<Service>,
    pub backend_port: u16,
    pub front: Service,
    pub client: reqwest::Client,
    db: TestDatabase,
}

impl Stack {
    /// Starts both services; `front_env` adds front-end settings.
    pub async fn start(front_env: &[(&str, &str)]) -> Self {
        let collector = Collector::start();
        let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
        let backend = start_backend(&collector, &db, 0);
        backend.wait_ready(Duration::from_secs(30)).await;
        let backend_port = backend.port();
        let mut env = vec![
            (
                "BUSINESS_LOGIC_URL",
                format!("http://127.0.0.1:{backend_port}"),
            ),
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", collector.zipkin_endpoint()),
            ("JAEGER_UI_URL", "http://localhost:8080/jaeger".into()),
            ("GRAFANA_URL", "http://localhost:8080/grafana".into()),
        ];
        env.extend(front_env.iter().map(|(k, v)| (*k, v.to_string())));
        let front = Service::start("front-end", &env);
        Self {
            collector,
            backend: Some(backend),
            backend_port,
            front,
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            db,
        }
    }

    /// Stops business-logic (the front-end keeps running).
    pub fn stop_backend(&mut self) {
        self.backend = None;
    }

    /// Starts business-logic again on the port the front-end calls.
    pub async fn restart_backend(&mut self) {
        let backend = start_backend(&self.collector, &self.db, self.backend_port);
        backend.wait_ready(Duration::from_secs(30)).await;
        self.backend = Some(backend);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.front.url(path)).send().await.unwrap()
    }

    pub async fn page(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }
}

fn start_backend(collector: &Collector, db: &TestDatabase, port: u16) -> Service {
    let mut service = Service::start(
        "business-logic",
        &[
            ("DATABASE_URL", db.url.clone()),
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", collector.zipkin_endpoint()),
            ("SLOW_ENDPOINT_DELAY_MS", "150".into()),
            ("PORT", port.to_string()),
        ],
    );
    if port != 0 {
        assert_eq!(service.port(), port);
    }
    let _ = &mut service;
    service
}

/// The trace id a result page prints.
pub fn trace_id_on(page: &str) -> String {
    let start = page
        .find(r#"id="trace-id">"#)
        .expect("page shows a trace id")
        + r#"id="trace-id">"#.len();
    let id = &page[start..start + 32];
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    id.to_owned()
}

/// Every `href`/`src` value of a page.
pub fn links(page: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = page;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_owned());
        }
    }
    out
}
