//! The pages and probes. Routes are registered in one place, [`configure`].

use std::time::Instant;

use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, web};
use askama::Template;
use contract::routes::front_end::{FAST_PAGE, HEALTHZ, LANDING, READYZ, SLOW_PAGE, STYLESHEET};
use contract::{NoQuery, SlowQuery, millis};

use crate::backend::Backend;
use crate::error::PageError;
use crate::links::Links;
use crate::pages::{FastPage, Landing, SlowPage, TOP, Timing};

/// The stylesheet, compiled into the binary.
const STYLE_CSS: &str = include_str!("../static/style.css");

/// Shared, read-only state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub backend: Backend,
}

/// Registers every route of the contract; GET-only resources answer other
/// methods with 405. Every route refuses a query parameter it does not
/// take with a 400 page (the contract's one rule).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let get = |path: &str| web::resource(path).default_service(web::to(method_not_allowed));
    cfg.service(get(LANDING).route(web::get().to(landing)))
        .service(get(FAST_PAGE).route(web::get().to(fast_page)))
        .service(get(SLOW_PAGE).route(web::get().to(slow_page)))
        .service(get(STYLESHEET).route(web::get().to(style)))
        .service(get(HEALTHZ).route(web::get().to(healthz)))
        .service(get(READYZ).route(web::get().to(healthz)));
}

/// The caller's `x-request-id` (Istio's gateway sets one), or a new one.
fn request_id(request: &HttpRequest) -> String {
    request
        .headers()
        .get(telemetry::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map_or_else(|| format!("{:032x}", fastrand::u128(..)), str::to_owned)
}

fn html(page: impl Template) -> Result<HttpResponse, PageError> {
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(page.render()?))
}

async fn landing(request: HttpRequest, links: web::Data<Links>) -> Result<HttpResponse, PageError> {
    NoQuery::parse(request.query_string())?;
    html(Landing {
        root: TOP,
        links: &links,
    })
}

async fn fast_page(
    request: HttpRequest,
    state: web::Data<AppState>,
    links: web::Data<Links>,
) -> Result<HttpResponse, PageError> {
    let started = Instant::now();
    NoQuery::parse(request.query_string())?;
    let (answer, round_trip) = state.backend.fast(&request_id(&request)).await?;
    tracing::info!(sku = %answer.item.sku, backend_ms = answer.elapsed_ms, "fast page rendered");
    html(FastPage {
        root: TOP,
        timing: Timing {
            total_ms: millis(started.elapsed()),
            backend_round_trip_ms: millis(round_trip),
            backend_ms: answer.elapsed_ms,
        },
        answer,
        trace: links.for_current_trace(),
    })
}

/// The slow page passes `?delay_ms=` on to business-logic, checked here
/// first by the same rule.
async fn slow_page(
    request: HttpRequest,
    state: web::Data<AppState>,
    links: web::Data<Links>,
) -> Result<HttpResponse, PageError> {
    let started = Instant::now();
    let query = SlowQuery::parse(request.query_string())?;
    let (answer, round_trip) = state.backend.slow(query, &request_id(&request)).await?;
    tracing::info!(
        delay_ms = answer.delay_ms,
        backend_ms = answer.elapsed_ms,
        "slow page rendered"
    );
    html(SlowPage {
        root: TOP,
        timing: Timing {
            total_ms: millis(started.elapsed()),
            backend_round_trip_ms: millis(round_trip),
            backend_ms: answer.elapsed_ms,
        },
        answer,
        trace: links.for_current_trace(),
    })
}

async fn style(request: HttpRequest) -> Result<HttpResponse, PageError> {
    NoQuery::parse(request.query_string())?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/css; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "public, max-age=3600"))
        .body(STYLE_CSS))
}

/// Liveness and readiness: the front-end is ready when it serves. It does
/// not depend on business-logic being up (that would take the whole tier out
/// of the load balancer); its pages answer 502 instead.
async fn healthz(request: HttpRequest) -> Result<HttpResponse, PageError> {
    NoQuery::parse(request.query_string())?;
    Ok(HttpResponse::Ok().content_type("text/plain").body("ok"))
}

async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, PageError> {
    Err(PageError::MethodNotAllowed(request.method().to_string()))
}

/// Default service for unknown paths.
pub async fn not_found(request: HttpRequest) -> Result<HttpResponse, PageError> {
    Err(PageError::NotFound(request.path().to_owned()))
}
