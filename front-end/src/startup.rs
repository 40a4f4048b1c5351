//! Builds the HTTP server on its own listener (port 0 works, for tests) and
//! runs it until SIGTERM or SIGINT, letting in-flight requests finish.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::{Condition, DefaultHeaders};
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::backend::Backend;
use crate::links::Links;
use crate::routes::{self, AppState};
use crate::settings::Settings;

/// Headers a browser expects from pages: no inline script or style, nothing
/// from other origins, no MIME sniffing, no referrer leaking the trace id.
const SECURITY_HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
];

/// The service, bound and ready to run.
pub struct Application {
    port: u16,
    server: Server,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Binds the listener, builds the backend client once, and the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        // Error pages have no request state, so the links live in a OnceLock.
        let _ = routes::LINKS.set(Links::new(&settings.jaeger_ui_url, &settings.grafana_url));
        let state = web::Data::new(AppState {
            backend: Backend::new(&settings)?,
        });

        let address = (settings.host.as_str(), settings.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();

        let metrics = telemetry::metrics_middleware(
            &settings.telemetry.otel_service_name,
            settings.telemetry.service_version.as_deref(),
        )?;
        let metrics_enabled = settings.telemetry.metrics_enabled;
        let server = HttpServer::new(move || {
            let headers = SECURITY_HEADERS
                .iter()
                .fold(DefaultHeaders::new(), |h, header| h.add(*header));
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(routes::not_found))
                .wrap(headers)
                .wrap(Condition::new(metrics_enabled, metrics.clone()))
                .wrap(telemetry::tracing_middleware())
        })
        .listen(listener)?
        .shutdown_timeout(settings.shutdown_grace_period_secs)
        .run();
        tracing::info!(
            port,
            business_logic_url = %settings.business_logic_url,
            "front-end listening"
        );
        Ok(Self { port, server })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until stopped; on SIGTERM/SIGINT, stops accepting and waits up
    /// to the grace period for in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        tracing::info!("front-end stopped");
        Ok(())
    }
}
