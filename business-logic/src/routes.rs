//! The endpoints. Routes are registered in one place, [`configure`], used by
//! the server and the tests alike.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use crate::canary::Regression;
use crate::db::{CategoryStock, Database, Item};
use crate::problem::{self, ApiError};
use crate::settings::MAX_DELAY_MS;

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

/// Registers every route; unknown paths get a 404 and wrong methods a 405,
/// both as problem+json.
pub fn configure(cfg: &mut web::ServiceConfig) {
    let get =
        |path: &str| web::resource(path.to_owned()).default_service(web::to(problem::get_only));
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|error, _| ApiError::InvalidQuery(error.to_string()).into()),
    )
    .service(get("/fast-endpoint").route(web::get().to(fast_endpoint)))
    .service(get("/slow-endpoint").route(web::get().to(slow_endpoint)))
    .service(get("/healthz").route(web::get().to(healthz)))
    .service(get("/readyz").route(web::get().to(readyz)));
}

/// `?sku=` of the fast endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FastQuery {
    sku: Option<String>,
}

#[derive(Debug, Serialize)]
struct FastResponse<'a> {
    endpoint: &'static str,
    version: &'a str,
    item: Item,
    elapsed_ms: f64,
    trace_id: Option<String>,
}

/// One indexed read: the item with `?sku=`, or a random one.
async fn fast_endpoint(
    state: web::Data<AppState>,
    query: web::Query<FastQuery>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    state.require_migrated()?;
    let sku = match query.into_inner().sku {
        Some(sku) if sku.is_empty() || sku.len() > 32 => {
            return Err(ApiError::InvalidQuery(
                "sku must be 1 to 32 characters, like SKU-00042".into(),
            ));
        }
        Some(sku) => sku,
        None => format!("SKU-{:05}", fastrand::u32(1..=5000)),
    };
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
    Ok(HttpResponse::Ok().json(FastResponse {
        endpoint: "fast",
        version: &state.version,
        item,
        elapsed_ms: millis(started.elapsed()),
        trace_id: telemetry::current_trace_id(),
    }))
}

/// `?delay_ms=` of the slow endpoint.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlowQuery {
    delay_ms: Option<u64>,
}

/// Per-category figures of the slow endpoint.
#[derive(Debug, Serialize, PartialEq)]
pub struct CategorySummary {
    pub items: i64,
    pub units_in_stock: i64,
    pub inventory_value_cents: i64,
    pub average_price_cents: i64,
    /// This category's share of the whole inventory value, in percent.
    pub share_of_value_pct: f64,
}

#[derive(Debug, Serialize)]
struct SlowResponse<'a> {
    endpoint: &'static str,
    version: &'a str,
    delay_ms: u64,
    items_processed: i64,
    categories: BTreeMap<String, CategorySummary>,
    elapsed_ms: f64,
    trace_id: Option<String>,
}

/// Aggregates the whole catalog per category, derives each category's
/// figures and share of the inventory value, and spends the
/// deliberate delay, all inside the child span `data_transformation` so the
/// slowness is easy to find in Jaeger. The delay is a timer, not a blocked
/// thread: hundreds of these in flight cost no worker time.
async fn slow_endpoint(
    state: web::Data<AppState>,
    query: web::Query<SlowQuery>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    state.require_migrated()?;
    let delay = match query.into_inner().delay_ms {
        Some(ms) if ms > MAX_DELAY_MS => {
            return Err(ApiError::InvalidQuery(format!(
                "delay_ms={ms} is out of range; allowed: 0 to {MAX_DELAY_MS}"
            )));
        }
        Some(ms) => Duration::from_millis(ms),
        None => state.slow_delay,
    };
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
    Ok(HttpResponse::Ok().json(SlowResponse {
        endpoint: "slow",
        version: &state.version,
        delay_ms: delay.as_millis() as u64,
        items_processed,
        categories,
        elapsed_ms: millis(started.elapsed()),
        trace_id: telemetry::current_trace_id(),
    }))
}

/// Per category: item count, units in stock, stock value, mean price and
/// share of the total stock value (rounded to 0.01 %).
pub fn summarise(rows: &[CategoryStock]) -> BTreeMap<String, CategorySummary> {
    let total_value: i64 = rows.iter().map(|r| r.inventory_value_cents).sum();
    rows.iter()
        .map(|r| {
            let share = if total_value > 0 {
                (r.inventory_value_cents as f64 * 10_000.0 / total_value as f64).round() / 100.0
            } else {
                0.0
            };
            let summary = CategorySummary {
                items: r.items,
                units_in_stock: r.units_in_stock,
                inventory_value_cents: r.inventory_value_cents,
                average_price_cents: if r.items > 0 {
                    r.price_total_cents / r.items
                } else {
                    0
                },
                share_of_value_pct: share,
            };
            (r.category.clone(), summary)
        })
        .collect()
}

/// Liveness: the process serves HTTP.
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// Readiness: migrations applied and the database answers.
async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    if state.db.is_ready().await {
        HttpResponse::Ok().content_type("text/plain").body("ready")
    } else {
        HttpResponse::ServiceUnavailable()
            .content_type("text/plain")
            .body("database not ready")
    }
}

fn millis(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(category: &str, items: i64, units: i64, value: i64, prices: i64) -> CategoryStock {
        CategoryStock {
            category: category.into(),
            items,
            units_in_stock: units,
            inventory_value_cents: value,
            price_total_cents: prices,
        }
    }

    #[test]
    fn summarise_derives_means_and_shares() {
        let s = summarise(&[row("toys", 2, 3, 500, 400), row("books", 1, 10, 1500, 150)]);
        assert_eq!(
            s["toys"],
            CategorySummary {
                items: 2,
                units_in_stock: 3,
                inventory_value_cents: 500,
                average_price_cents: 200,
                share_of_value_pct: 25.0
            }
        );
        assert_eq!(s["books"].share_of_value_pct, 75.0);
    }

    #[test]
    fn summarise_survives_an_empty_catalog() {
        let s = summarise(&[row("toys", 0, 0, 0, 0)]);
        assert_eq!(s["toys"].average_price_cents, 0);
        assert_eq!(s["toys"].share_of_value_pct, 0.0);
    }
}
