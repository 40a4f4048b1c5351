//! Builds the service: the database pool and the routes, in the shared
//! skeleton's middleware and server (graceful on SIGTERM and SIGINT).

use actix_web::{App, web};
use service_kit::{Running, Stack, redact};

use crate::db::{self, Database};
use crate::problem::{self, ApiError};
use crate::routes::{self, AppState};
use crate::settings::Settings;

/// Creates the (lazy) database pool, starts migrating in the background,
/// binds the listener and builds the server.
pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let middleware = Stack::<ApiError>::new(&settings.telemetry)?;
    let db = Database::connect_lazy(&settings.database_url, settings.database_max_connections)?
        .with_query_durations(middleware.histogram(&db::QUERY_DURATION)?);
    tracing::info!(
        database = %redact(&settings.database_url),
        db.system.name = db.system(),
        "connecting to the database"
    );
    tokio::spawn({
        let db = db.clone();
        async move { db.migrate_with_retry().await }
    });

    let state = web::Data::new(AppState {
        db,
        slow_delay: settings.slow_delay(),
        version: settings.service_version.clone(),
        regression: settings.regression(),
        openapi: routes::openapi_json(settings.telemetry.metrics_enabled),
    });
    let running = service_kit::server::start("business-logic", &settings.server, move || {
        let app = App::new()
            .app_data(state.clone())
            .configure(routes::configure)
            .default_service(web::to(problem::no_route));
        middleware.wrap(app)
    })?;
    tracing::info!(
        port = running.port(),
        slow_endpoint_delay_ms = settings.slow_endpoint_delay_ms,
        grace_period_s = settings.server.shutdown_grace_period_secs,
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
    Ok(running)
}
