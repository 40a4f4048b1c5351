//! Builds the HTTP server on its own listener (port 0 works, for tests) and
//! runs it until SIGTERM or SIGINT, letting in-flight requests finish.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::Condition;
use actix_web::{App, HttpServer, web};
use anyhow::Context;

use crate::db::Database;
use crate::problem;
use crate::routes::{self, AppState};
use crate::settings::{Settings, redact};

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
    /// Binds the listener, creates the (lazy) database pool, starts
    /// migrating in the background, and builds the server.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Database::connect_lazy(&settings)?;
        tracing::info!(
            database = %redact(&settings.database_url),
            db.system.name = db.system(),
            "connecting to the database"
        );
        tokio::spawn({
            let db = db.clone();
            async move { db.migrate_with_retry().await }
        });

        let address = (settings.host.as_str(), settings.port);
        let listener = TcpListener::bind(address)
            .with_context(|| format!("binding {}:{}", settings.host, settings.port))?;
        let port = listener.local_addr()?.port();

        let state = web::Data::new(AppState {
            db,
            slow_delay: settings.slow_delay(),
            version: settings.service_version.clone(),
            regression: settings.regression(),
        });
        let metrics = telemetry::metrics_middleware(
            &settings.telemetry.otel_service_name,
            settings.telemetry.service_version.as_deref(),
        )?;
        let metrics_enabled = settings.telemetry.metrics_enabled;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(routes::configure)
                .default_service(web::to(problem::no_route))
                .wrap(Condition::new(metrics_enabled, metrics.clone()))
                .wrap(telemetry::tracing_middleware())
        })
        .listen(listener)?
        .shutdown_timeout(settings.shutdown_grace_period_secs)
        .run();
        tracing::info!(
            port,
            slow_endpoint_delay_ms = settings.slow_endpoint_delay_ms,
            grace_period_s = settings.shutdown_grace_period_secs,
            version = %settings.service_version,
            "business-logic listening"
        );
        let regression = settings.regression();
        if regression.is_active() {
            tracing::warn!(
                version = %settings.service_version,
                regression_extra_query = regression.extra_query,
                regression_error_rate = regression.error_rate,
                "canary regression on: the fast endpoint runs an extra unindexed query and/or fails a share of requests on purpose"
            );
        }
        Ok(Self { port, server })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server (tests use it; the service stops on signals).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; on SIGTERM/SIGINT, stops accepting and waits up
    /// to the grace period for in-flight requests.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await?;
        tracing::info!("business-logic stopped");
        Ok(())
    }
}
