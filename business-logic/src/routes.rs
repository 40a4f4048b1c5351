//! The endpoints. Routes are registered in one place, [`configure`], used by
//! the server and the tests alike, from the contract's list of routes: the
//! same list the OpenAPI document describes.

use std::time::{Duration, Instant};

use actix_web::http::header::CONTENT_TYPE;
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse, web};
use contract::routes::business_logic::{METRICS, Route};
use contract::{FastAnswer, FastQuery, NoQuery, SlowAnswer, SlowQuery, millis};
use tracing::Instrument;

use crate::catalog::summarise;
use crate::db::Database;
use crate::problem::{self, ApiError};
use crate::settings::Regression;

/// Shared, read-only state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub db: Database,
    /// `SLOW_ENDPOINT_DELAY_MS`.
    pub slow_delay: Duration,
    /// `SERVICE_VERSION`, in every answer.
    pub version: String,
    /// The canary regression's knobs (`crate::canary`), off by default.
    pub regression: Regression,
    /// The OpenAPI document, as served at `/openapi.json`.
    pub openapi: Bytes,
}

/// The OpenAPI document as served; `metrics`: `/metrics` is served too.
/// Built from the contract at build time (`build.rs`).
pub fn openapi_json(metrics: bool) -> Bytes {
    Bytes::from_static(if metrics {
        include_bytes!(concat!(env!("OUT_DIR"), "/openapi-metrics.json"))
    } else {
        include_bytes!(concat!(env!("OUT_DIR"), "/openapi.json"))
    })
}

impl AppState {
    /// Queries before the schema exists would fail as internal errors;
    /// answer 503 until the migrations are in.
    fn require_migrated(&self) -> Result<(), ApiError> {
        if self.db.is_migrated() {
            Ok(())
        } else {
            Err(ApiError::NotReady)
        }
    }
}

/// Registers every route of the contract, GET only; unknown paths get a
/// 404 and wrong methods a 405, both as problem+json.
pub fn configure(cfg: &mut web::ServiceConfig) {
    for route in Route::ALL {
        let handler = match route {
            Route::FastEndpoint => web::get().to(fast_endpoint),
            Route::SlowEndpoint => web::get().to(slow_endpoint),
            Route::Healthz => web::get().to(healthz),
            Route::Readyz => web::get().to(readyz),
            Route::OpenApi => web::get().to(openapi),
        };
        cfg.service(
            web::resource(route.path())
                .route(handler)
                .default_service(web::to(problem::get_only)),
        );
    }
    // `GET /metrics` is answered by the metrics middleware ahead of the
    // routes while METRICS_ENABLED (otherwise: 404, like any unknown path);
    // other methods get the 405 every route gives.
    cfg.service(
        web::resource(METRICS)
            .route(web::get().to(problem::no_route))
            .default_service(web::to(problem::get_only)),
    );
}

/// One indexed read: the item with `?sku=`, or a random one.
async fn fast_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let query = FastQuery::parse(request.query_string())?;
    state.require_migrated()?;
    let sku = query
        .sku
        .unwrap_or_else(|| format!("SKU-{:05}", fastrand::u32(1..=5000)));
    let item = state
        .db
        .item_by_sku(&sku)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("item {sku:?}")))?;
    tracing::info!(sku = %item.sku, "fast lookup done");
    state
        .regression
        .after_fast_lookup(&state.db, &item, &state.version)
        .await?;
    Ok(HttpResponse::Ok().json(FastAnswer {
        endpoint: "fast".into(),
        version: Some(state.version.clone()),
        item,
        elapsed_ms: millis(started.elapsed()),
        trace_id: telemetry::current_trace_id(),
    }))
}

/// Aggregates the whole catalog per category, derives each category's
/// figures and share of the inventory value, and spends the
/// deliberate delay, all inside the child span `data_transformation` so the
/// slowness is easy to find in Jaeger. The delay is a timer, not a blocked
/// thread: hundreds of these in flight cost no worker time.
async fn slow_endpoint(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let query = SlowQuery::parse(request.query_string())?;
    state.require_migrated()?;
    let delay = query
        .delay_ms
        .map_or(state.slow_delay, Duration::from_millis);
    let span = tracing::info_span!("data_transformation", delay_ms = delay.as_millis() as u64);
    let (items_processed, categories) = async {
        let rows = state.db.stock_by_category().await?;
        let categories = summarise(&rows);
        let items: i64 = rows.iter().map(|r| r.items).sum();
        tracing::info!(
            items,
            delay_ms = delay.as_millis() as u64,
            "catalog summarised; applying the deliberate delay"
        );
        tokio::time::sleep(delay).await;
        Ok::<_, ApiError>((items, categories))
    }
    .instrument(span)
    .await?;
    Ok(HttpResponse::Ok().json(SlowAnswer {
        endpoint: "slow".into(),
        version: Some(state.version.clone()),
        delay_ms: delay.as_millis() as u64,
        items_processed,
        categories,
        elapsed_ms: millis(started.elapsed()),
        trace_id: telemetry::current_trace_id(),
    }))
}

/// Liveness: the process serves HTTP.
async fn healthz(request: HttpRequest) -> Result<HttpResponse, ApiError> {
    NoQuery::parse(request.query_string())?;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ok"))
}

/// Readiness: migrations applied and the database answers.
async fn readyz(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    NoQuery::parse(request.query_string())?;
    Ok(if state.db.is_ready().await {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("database not ready")
    })
}

/// The OpenAPI document of this API, built from the contract at build time.
async fn openapi(
    request: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    NoQuery::parse(request.query_string())?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "application/json"))
        .body(state.openapi.clone()))
}
