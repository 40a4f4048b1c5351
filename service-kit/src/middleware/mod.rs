//! The request middleware, written once: both services wrap their `App`
//! with [`Stack::wrap`], so both get the same tracing, metrics,
//! `traceresponse`, header limit and error mapping, in the same order.
//!
//! A request passes the layers from the outside in, its response comes back
//! the other way. Outermost first:
//!
//! 1. **tracing** ([`root_span`]): the request's root span, continuing the
//!    caller's context. Everything below runs inside it, so the span is
//!    current for them; when the response is back it logs the request's
//!    line, with the error the response carries (the error mapping keeps it).
//! 2. **`traceresponse`** ([`mod@traceresponse`]): inside the span, to read
//!    its ids; outside everything that answers, so that every answer (a
//!    431, a 404, `/metrics`) names its trace.
//! 3. **request metrics** ([`metrics`], with `METRICS_ENABLED`): inside the
//!    span, so an exemplar is the request's own trace; outside what answers,
//!    so every status is counted as the client got it (431 included). It
//!    answers `/metrics` itself, with the service's own histograms
//!    ([`Stack::histogram`]).
//! 4. **the service's response headers** (the front-end's security
//!    headers; none for business-logic): on every answer of the service,
//!    error pages and 431 included.
//! 5. **error mapping** ([`ServiceError`]): the service's error, rendered
//!    with what the request offers (the front-end's error pages); the
//!    response keeps the error for the request's log line and span.
//! 6. **header limit** ([`mod@header_limit`]): innermost, so its 431 is
//!    rendered, traced and counted like any other answer.

pub mod header_limit;
pub mod metrics;
pub mod root_span;
pub mod traceresponse;

use std::marker::PhantomData;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Condition, DefaultHeaders, Next, from_fn};
use actix_web::{App, Error, HttpRequest, HttpResponse, ResponseError};
use telemetry::TelemetrySettings;

use header_limit::HeadersTooLarge;
use metrics::{Histogram, HistogramSpec, RequestMetrics};

/// A service's error type as the stack needs it: a 431 of its own
/// ([`HeadersTooLarge`]) and, optionally, a response that needs the request.
pub trait ServiceError: HeadersTooLarge + ResponseError + 'static {
    /// This error's response, rendered with what `request` offers (its
    /// application data, its path). `None`, the default, keeps the response
    /// `ResponseError::error_response` gave.
    fn response_for(&self, request: &HttpRequest) -> Option<HttpResponse> {
        let _ = request;
        None
    }
}

/// The middleware stack of a service whose errors are `E`; built once,
/// outside the server's `App` factory, and applied to each worker's `App`.
pub struct Stack<E> {
    metrics: RequestMetrics,
    metrics_enabled: bool,
    response_headers: &'static [(&'static str, &'static str)],
    errors: PhantomData<fn() -> E>,
}

impl<E> Clone for Stack<E> {
    fn clone(&self) -> Self {
        Self {
            metrics: self.metrics.clone(),
            metrics_enabled: self.metrics_enabled,
            response_headers: self.response_headers,
            errors: PhantomData,
        }
    }
}

impl<E> std::fmt::Debug for Stack<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stack")
            .field("error", &std::any::type_name::<E>())
            .field("metrics_enabled", &self.metrics_enabled)
            .field("response_headers", &self.response_headers)
            .finish_non_exhaustive()
    }
}

impl<E: ServiceError> Stack<E> {
    /// The stack for a service with these telemetry settings (the metrics'
    /// labels, `METRICS_ENABLED`, `METRICS_EXEMPLARS`).
    pub fn new(settings: &TelemetrySettings) -> anyhow::Result<Self> {
        Ok(Self {
            metrics: metrics::metrics_middleware(settings)?,
            metrics_enabled: settings.metrics_enabled,
            response_headers: &[],
            errors: PhantomData,
        })
    }

    /// A histogram of the service's own, served at `/metrics` with the
    /// request metrics and, like them, with exemplars; with metrics off, one
    /// that records nothing. Fails if the name is taken or the spec invalid.
    pub fn histogram(&self, spec: &HistogramSpec) -> anyhow::Result<Histogram> {
        if self.metrics_enabled {
            self.metrics.histogram(spec)
        } else {
            Ok(Histogram::default())
        }
    }

    /// Headers added to every answer of the service that does not set them
    /// itself (the front-end's security headers).
    pub fn with_response_headers(
        mut self,
        headers: &'static [(&'static str, &'static str)],
    ) -> Self {
        self.response_headers = headers;
        self
    }

    /// Wraps a worker's `App` (routes and data registered) in the stack.
    pub fn wrap<T>(
        &self,
        app: App<T>,
    ) -> App<
        impl ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<impl MessageBody + use<E, T>>,
            Error = Error,
            InitError = (),
        > + use<E, T>,
    >
    where
        T: ServiceFactory<
                ServiceRequest,
                Config = (),
                Response = ServiceResponse<BoxBody>,
                Error = Error,
                InitError = (),
            > + 'static,
    {
        // `DefaultHeaders` is not `Send`: built per worker, here.
        let headers = self
            .response_headers
            .iter()
            .fold(DefaultHeaders::new(), |h, header| h.add(*header));
        // `wrap` puts a layer around everything before it: innermost first.
        app.wrap(from_fn(header_limit::header_limit::<E>))
            .wrap(from_fn(map_errors::<E>))
            .wrap(headers)
            .wrap(Condition::new(self.metrics_enabled, self.metrics.clone()))
            .wrap(from_fn(traceresponse::traceresponse))
            .wrap(root_span::tracing_middleware())
    }
}

/// Renders an `E` error response with the request ([`ServiceError::response_for`]).
/// The original response stays, with its status and the error it carries
/// for the request's log line; it takes the rendered headers and body.
async fn map_errors<E: ServiceError>(
    request: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let response = next.call(request).await?;
    let Some(rendered) = response
        .response()
        .error()
        .and_then(|e| e.as_error::<E>())
        .and_then(|e| e.response_for(response.request()))
    else {
        return Ok(response);
    };
    let headers = rendered.headers().clone();
    let (request, original) = response.into_parts();
    let mut mapped = original.set_body(rendered.into_body());
    *mapped.headers_mut() = headers;
    Ok(ServiceResponse::new(request, mapped))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::fmt;

    use actix_web::http::StatusCode;
    use actix_web::test::{self, TestRequest};
    use actix_web::web;
    use opentelemetry::trace::TracerProvider as _;
    use opentelemetry_sdk::trace::SdkTracerProvider;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::MAX_HEADER_BYTES;

    #[derive(Debug)]
    enum TestError {
        TooLarge(usize),
        Missing,
    }

    impl fmt::Display for TestError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Self::TooLarge(bytes) => write!(f, "{bytes} bytes of headers"),
                Self::Missing => f.write_str("missing"),
            }
        }
    }

    impl ResponseError for TestError {
        fn status_code(&self) -> StatusCode {
            match self {
                Self::TooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                Self::Missing => StatusCode::NOT_FOUND,
            }
        }
    }

    impl HeadersTooLarge for TestError {
        fn headers_too_large(bytes: usize) -> Self {
            Self::TooLarge(bytes)
        }
    }

    impl ServiceError for TestError {
        fn response_for(&self, request: &HttpRequest) -> Option<HttpResponse> {
            Some(
                HttpResponse::build(self.status_code())
                    .insert_header(("x-rendered-for", request.path()))
                    .body(format!("rendered: {self}")),
            )
        }
    }

    const HEADERS: [(&str, &str); 1] = [("x-frame-options", "DENY")];

    /// `00-<32 hex>-<16 hex>-<2 hex>`.
    fn is_traceresponse(value: &str) -> bool {
        let parts: Vec<&str> = value.split('-').collect();
        parts.len() == 4
            && parts[0] == "00"
            && [32, 16, 2]
                .iter()
                .zip(&parts[1..])
                .all(|(len, p)| p.len() == *len && p.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    #[actix_web::test]
    async fn every_answer_gets_the_whole_stack_whoever_gives_it() {
        // A tracer, so that requests have span contexts (no export).
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));
        let _current = tracing::subscriber::set_default(subscriber);

        let stack = Stack::<TestError>::new(&TelemetrySettings::with_service_name("kit"))
            .unwrap()
            .with_response_headers(&HEADERS);
        let app = App::new()
            .route("/", web::get().to(HttpResponse::Ok))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(TestError::Missing)
            }));
        let app = test::init_service(stack.wrap(app)).await;

        let big = "x".repeat(MAX_HEADER_BYTES);
        let cases = [
            // The handler's answer.
            (TestRequest::get().uri("/"), StatusCode::OK),
            // The service's error, rendered with the request.
            (TestRequest::get().uri("/nothing"), StatusCode::NOT_FOUND),
            // The innermost layer's answer, rendered the same way.
            (
                TestRequest::get()
                    .uri("/")
                    .insert_header(("x-big", big.as_str())),
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ),
        ];
        for (request, status) in cases {
            let response = test::call_service(&app, request.to_request()).await;
            let path = response.request().path().to_owned();
            assert_eq!(response.status(), status, "{path}");
            let headers = response.headers();
            let traceresponse = headers
                .get(traceresponse::TRACERESPONSE_HEADER)
                .unwrap()
                .to_str()
                .unwrap();
            assert!(is_traceresponse(traceresponse), "{traceresponse}");
            assert_eq!(headers.get("x-frame-options").unwrap(), "DENY", "{status}");
            if status.is_success() {
                continue;
            }
            assert_eq!(
                headers.get("x-rendered-for").unwrap(),
                path.as_str(),
                "{status}"
            );
            let body = test::read_body(response).await;
            assert!(body.starts_with(b"rendered: "), "{body:?}");
        }

        // The metrics layer, outside them, counted each status as it went
        // out, and answers `/metrics` itself (with a trace of its own).
        let response =
            test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response
                .headers()
                .contains_key(traceresponse::TRACERESPONSE_HEADER)
        );
        let text = String::from_utf8(test::read_body(response).await.to_vec()).unwrap();
        for status in ["200", "404", "431"] {
            assert!(
                text.lines().any(|l| l.starts_with("http_requests_total{")
                    && l.contains(&format!("status=\"{status}\""))),
                "{status} not counted:\n{text}"
            );
        }
    }

    #[actix_web::test]
    async fn without_metrics_enabled_there_is_no_metrics_endpoint() {
        let mut settings = TelemetrySettings::with_service_name("kit");
        settings.metrics_enabled = false;
        let stack = Stack::<TestError>::new(&settings).unwrap();
        let app = App::new().default_service(web::to(|| async {
            Err::<HttpResponse, _>(TestError::Missing)
        }));
        let app = test::init_service(stack.wrap(app)).await;
        let response =
            test::call_service(&app, TestRequest::get().uri("/metrics").to_request()).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            response.headers().get("x-rendered-for").unwrap(),
            "/metrics"
        );
    }
}
