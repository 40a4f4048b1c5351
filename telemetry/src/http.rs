//! Request instrumentation for actix-web: a trace span per request that
//! continues the caller's B3 or W3C context, and one log line per request.
//! (Request metrics: [`crate::metrics`].)

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder, TracingLogger};

/// Paths polled by Kubernetes and Prometheus: logged at debug level only.
const QUIET_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The request header Istio and most proxies use to correlate requests.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Root span of every request: tracing-actix-web's HTTP span (which extracts
/// the remote context with the global propagator and records `trace_id`),
/// plus the caller's `x-request-id`.
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoRootSpan;

impl RootSpanBuilder for DemoRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let x_request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing_actix_web::root_span!(request, x_request_id = %x_request_id)
    }

    fn on_request_end<B: MessageBody>(
        span: Span,
        outcome: &Result<ServiceResponse<B>, actix_web::Error>,
    ) {
        DefaultRootSpanBuilder::on_request_end(span.clone(), outcome);
        let Ok(response) = outcome else {
            // Errors that never became a response (rare): status and cause
            // are on the span already.
            tracing::error!(parent: &span, "request failed without a response");
            return;
        };
        let request = response.request();
        let (method, path) = (request.method().as_str(), request.path());
        let status = response.status().as_u16();
        match response.response().error() {
            // Probes and scrapes stay quiet even when failing (a pod that is
            // not ready yet is normal); their status is on the span.
            _ if QUIET_PATHS.contains(&path) => {
                tracing::debug!(parent: &span, method, path, status, "request completed");
            }
            Some(error) if status >= 500 => {
                tracing::error!(parent: &span, method, path, status, error = %error, cause = ?error, "request failed");
            }
            _ if status >= 500 => {
                tracing::error!(parent: &span, method, path, status, "request failed")
            }
            _ => tracing::info!(parent: &span, method, path, status, "request completed"),
        }
    }
}

/// The tracing middleware: wrap the app with it.
pub fn tracing_middleware() -> TracingLogger<DemoRootSpan> {
    TracingLogger::<DemoRootSpan>::new()
}
