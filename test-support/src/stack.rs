//! business-logic and front-end wired together as real processes, both
//! exporting to one stand-in collector.

use std::time::Duration;

use crate::collector::Collector;
use crate::database::{Backend, TestDatabase};
use crate::service::Service;

/// The two services; business-logic can be stopped and restarted on its port.
#[derive(Debug)]
pub struct Stack {
    pub collector: Collector,
    pub backend: Option<Service>,
    pub backend_port: u16,
    pub front: Service,
    pub client: reqwest::Client,
    backend_env: Vec<(String, String)>,
    db: TestDatabase,
}

impl Stack {
    /// Starts both services on SQLite; `front_env` adds front-end settings.
    pub async fn start(front_env: &[(&str, &str)]) -> Self {
        Self::start_with(&[], front_env, None).await
    }

    /// Starts both services; the collector URL can be overridden (e.g. to a
    /// hanging or closed port) with `zipkin_endpoint`.
    pub async fn start_with(
        backend_env: &[(&str, &str)],
        front_env: &[(&str, &str)],
        zipkin_endpoint: Option<String>,
    ) -> Self {
        let collector = Collector::start();
        let zipkin = zipkin_endpoint.unwrap_or_else(|| collector.zipkin_endpoint());
        let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
        let mut backend_vars: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT".into(), zipkin.clone()),
            ("SLOW_ENDPOINT_DELAY_MS".into(), "150".into()),
        ];
        backend_vars.extend(
            backend_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut backend = start_backend(&backend_vars, 0);
        backend.wait_ready(Duration::from_secs(30)).await.unwrap();
        let backend_port = backend.port();
        let mut env = vec![
            (
                "BUSINESS_LOGIC_URL",
                format!("http://127.0.0.1:{backend_port}"),
            ),
            ("OTEL_EXPORTER_ZIPKIN_ENDPOINT", zipkin),
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
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            backend_env: backend_vars,
            db,
        }
    }

    /// Stops business-logic (SIGKILL; the front-end keeps running).
    pub fn stop_backend(&mut self) {
        self.backend = None;
    }

    /// Starts business-logic again on the port the front-end calls.
    pub async fn restart_backend(&mut self) {
        let mut backend = start_backend(&self.backend_env, self.backend_port);
        backend.wait_ready(Duration::from_secs(30)).await.unwrap();
        self.backend = Some(backend);
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.front.url(path)).send().await.unwrap()
    }

    /// Status and body of a front-end page.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    /// The database file/URL business-logic uses.
    pub fn database_url(&self) -> &str {
        &self.db.url
    }
}

fn start_backend(env: &[(String, String)], port: u16) -> Service {
    let mut vars: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    vars.push(("PORT", port.to_string()));
    let service = Service::start("business-logic", &vars);
    if port != 0 {
        assert_eq!(service.port(), port);
    }
    service
}

/// The trace id a result page prints.
pub fn trace_id_on(page: &str) -> String {
    let marker = r#"id="trace-id">"#;
    let start = page.find(marker).expect("page shows a trace id") + marker.len();
    let id = &page[start..start + 32];
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
    id.to_owned()
}
