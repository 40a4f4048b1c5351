//! business-logic and front-end wired together as real processes, both
//! exporting to one stand-in collector.

use std::time::Duration;

use crate::b3_proxy::B3Proxy;
use crate::collector::{Collector, exporter_env};
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
    /// [`Stack::start_meshed`]: the stand-in ingress gateway in front of the
    /// front-end and the sidecar between it and business-logic.
    pub gateway: Option<B3Proxy>,
    pub sidecar: Option<B3Proxy>,
}

impl Stack {
    /// Starts both services on SQLite; `front_env` adds front-end settings.
    pub async fn start(front_env: &[(&str, &str)]) -> Self {
        Self::start_with(&[], front_env, None).await
    }

    /// Starts both services; the span receiver can be moved from the stand-in
    /// collector (e.g. to a hanging or closed port) with `collector_url`
    /// (`http://host:port`, for both exporters).
    pub async fn start_with(
        backend_env: &[(&str, &str)],
        front_env: &[(&str, &str)],
        collector_url: Option<String>,
    ) -> Self {
        Self::launch(backend_env, front_env, collector_url, false).await
    }

    /// Both services behind stand-in Istio proxies that propagate B3 and
    /// report Zipkin spans to the same collector, as the mesh's `zipkin`
    /// provider does: browser → `gateway` → front-end → `sidecar` →
    /// business-logic.
    pub async fn start_meshed() -> Self {
        Self::launch(&[], &[], None, true).await
    }

    async fn launch(
        backend_env: &[(&str, &str)],
        front_env: &[(&str, &str)],
        collector_url: Option<String>,
        meshed: bool,
    ) -> Self {
        let collector = Collector::start();
        let exporters = match collector_url {
            Some(url) => exporter_env(&url),
            None => collector.env(),
        };
        let db = TestDatabase::create(Backend::Sqlite).await.unwrap();
        let mut backend_vars: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url.clone()),
            ("SLOW_ENDPOINT_DELAY_MS".into(), "150".into()),
        ];
        backend_vars.extend(exporters.iter().map(|(k, v)| (k.to_string(), v.clone())));
        backend_vars.extend(
            backend_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let mut backend = start_backend(&backend_vars, 0);
        backend.wait_ready(Duration::from_secs(30)).await.unwrap();
        let backend_port = backend.port();
        let backend_url = format!("http://127.0.0.1:{backend_port}");
        let proxy = |upstream: &str, name: &str| {
            B3Proxy::start(upstream, name, &collector.zipkin_endpoint()).unwrap()
        };
        let sidecar = meshed.then(|| proxy(&backend_url, "front-end.sidecar"));
        let mut env = vec![
            (
                "BUSINESS_LOGIC_URL",
                sidecar.as_ref().map_or(backend_url, B3Proxy::url),
            ),
            ("JAEGER_UI_URL", "http://localhost:8080/jaeger".into()),
            ("GRAFANA_URL", "http://localhost:8080/grafana".into()),
        ];
        env.extend(exporters);
        env.extend(front_env.iter().map(|(k, v)| (*k, v.to_string())));
        let front = Service::start("front-end", &env);
        let gateway = meshed.then(|| proxy(&front.url(""), "istio-ingressgateway"));
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
            gateway,
            sidecar,
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
