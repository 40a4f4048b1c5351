//! The W3C Trace Context Level 2 `traceresponse` response header
//! (<https://www.w3.org/TR/trace-context-2/#traceresponse-header>):
//! `00-<trace id>-<span id>-<flags>` of the span that served the request, so
//! a client (a browser's dev tools, `curl -i`, `make verify`) learns the
//! trace id of what it just asked for without parsing the page.

use actix_web::Error;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use opentelemetry::trace::TraceContextExt;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use telemetry::{flags_hex, span_hex, trace_hex};

/// The response header's name.
pub const TRACERESPONSE_HEADER: &str = "traceresponse";

/// Middleware adding `traceresponse` to every response. It runs *inside*
/// the tracing middleware, so that the request's span is the current one
/// ([`super::Stack`] puts it there).
pub async fn traceresponse(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let value = current_traceresponse();
    let mut response = next.call(request).await?;
    if let Some(value) = value {
        response
            .headers_mut()
            .insert(HeaderName::from_static(TRACERESPONSE_HEADER), value);
    }
    Ok(response)
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
    // 00-<32>-<16>-<2>, written without core::fmt (telemetry::HexId).
    let mut value = [b'-'; 55];
    value[..2].copy_from_slice(b"00");
    value[3..35].copy_from_slice(trace_hex(sc.trace_id()).as_str().as_bytes());
    value[36..52].copy_from_slice(span_hex(sc.span_id()).as_str().as_bytes());
    value[53..].copy_from_slice(flags_hex(sc.trace_flags()).as_str().as_bytes());
    HeaderValue::from_bytes(&value).ok()
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{App, HttpResponse, test, web};

    use super::*;

    #[actix_web::test]
    async fn without_a_span_context_no_header_is_invented() {
        // No tracer is installed here, so the span has no valid context:
        // the header must be left out, not filled with zeros.
        let app = test::init_service(
            App::new()
                .route("/", web::get().to(HttpResponse::Ok))
                .wrap(from_fn(traceresponse)),
        )
        .await;
        let response = test::call_service(&app, test::TestRequest::get().to_request()).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get(TRACERESPONSE_HEADER).is_none());
    }
}
