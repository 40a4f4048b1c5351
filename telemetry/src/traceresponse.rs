//! The W3C Trace Context Level 2 `traceresponse` response header
//! (<https://www.w3.org/TR/trace-context-2/#traceresponse-header>):
//! `00-<trace id>-<span id>-<flags>` of the span that served the request, so
//! a client (a browser's dev tools, `curl -i`, `make verify`) learns the
//! trace id of what it just asked for without parsing the page.

use std::future::{Future, Ready, ready};
use std::pin::Pin;

use actix_web::Error;
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{HeaderName, HeaderValue};
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The response header's name.
pub const TRACERESPONSE_HEADER: &str = "traceresponse";

/// Middleware adding `traceresponse` to every response. Wrap it *inside*
/// [`crate::tracing_middleware`] (register it before), so that the request's
/// span is the current one when it runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct TraceResponse;

impl<S, B> Transform<S, ServiceRequest> for TraceResponse
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Transform = TraceResponseMiddleware<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(TraceResponseMiddleware { service }))
    }
}

/// The service [`TraceResponse`] wraps around the app.
#[derive(Debug)]
pub struct TraceResponseMiddleware<S> {
    service: S,
}

impl<S, B> Service<ServiceRequest> for TraceResponseMiddleware<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: 'static,
{
    type Response = ServiceResponse<B>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(service);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        // The request's span is entered while the inner service is called.
        let value = current_traceresponse();
        let response = self.service.call(request);
        Box::pin(async move {
            let mut response = response.await?;
            if let Some(value) = value {
                response
                    .headers_mut()
                    .insert(HeaderName::from_static(TRACERESPONSE_HEADER), value);
            }
            Ok(response)
        })
    }
}

/// `00-<trace id>-<span id>-<flags>` of the current span, if it has a valid
/// OpenTelemetry context.
fn current_traceresponse() -> Option<HeaderValue> {
    let cx = tracing::Span::current().context();
    let span = cx.span();
    let sc = span.span_context();
    if !sc.is_valid() {
        return None;
    }
    let value = format!(
        "00-{}-{}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    );
    HeaderValue::from_str(&value).ok()
}

#[cfg(test)]
mod tests {
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    #[actix_web::test]
    async fn without_a_span_context_no_header_is_invented() {
        // No tracer is installed here, so the span has no valid context:
        // the header must be left out, not filled with zeros.
        let app = test::init_service(
            App::new()
                .route("/", web::get().to(HttpResponse::Ok))
                .wrap(TraceResponse),
        )
        .await;
        let response = test::call_service(&app, test::TestRequest::get().to_request()).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get(TRACERESPONSE_HEADER).is_none());
    }
}
