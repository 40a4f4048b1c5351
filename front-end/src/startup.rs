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

/// Builds the backend client once, binds the listener and builds the server.
pub async fn build(settings: Settings) -> anyhow::Result<Running> {
    let state = web::Data::new(AppState {
        backend: Backend::new(&settings)?,
    });
    let links = web::Data::new(Links::new(&settings));
    let middleware =
        Stack::<PageError>::new(&settings.telemetry)?.with_response_headers(&SECURITY_HEADERS);
    let running = service_kit::server::start("front-end", &settings.server, move || {
        let app = App::new()
            .app_data(state.clone())
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
