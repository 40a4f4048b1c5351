//! Builds the service: the backend client, the links and the routes, in
//! the shared skeleton's middleware (with the security headers and the
//! error pages) and server (graceful on SIGTERM and SIGINT).

use actix_web::{App, web};
use service_kit::{Running, Stack};

use crate::backend::Backend;
use crate::error::PageError;
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

/// Binds the listener and builds the server.
///
/// Each worker builds its own business-logic client, and so keeps its own
/// pooled connections. A connection is driven by the event loop of the
/// worker that opened it; at shutdown a worker with nothing in flight stops
/// at once and its connections die with it. Were the pool shared, a page
/// still in flight on another worker could be using one of them, and would
/// fail with "business-logic is unreachable".
pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    // BUSINESS_LOGIC_URL was checked with the settings, before this.
    let backend_settings = settings.clone();
    let links = web::Data::new(Links::new(&settings));
    let middleware =
        Stack::<PageError>::new(&settings.telemetry)?.with_response_headers(&SECURITY_HEADERS);
    let running = service_kit::server::start("front-end", &settings.server, move || {
        let settings = backend_settings.clone();
        let app = App::new()
            .data_factory(move || {
                let settings = settings.clone();
                async move { Backend::new(&settings).map(|backend| AppState { backend }) }
            })
            .app_data(links.clone())
            .configure(routes::configure)
            .default_service(web::to(routes::not_found));
        middleware.wrap(app)
    })?;
    tracing::info!(
        port = running.port(),
        business_logic_url = %settings.business_logic_url,
        grace_period_s = settings.server.shutdown_grace_period_secs,
        "front-end listening"
    );
    Ok(running)
}
