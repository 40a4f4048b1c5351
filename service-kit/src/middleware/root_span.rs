//! The request's root span: a trace span per request that continues the
//! caller's B3 or W3C context, and one log line per request when it ends.

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Version;
use actix_web::http::header::{HeaderMap, HeaderName, USER_AGENT};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::TraceContextExt;
use tracing::Span;
use tracing::field::Empty;
use tracing_actix_web::{DefaultRootSpanBuilder, RequestId, RootSpanBuilder, TracingLogger};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use telemetry::REQUEST_ID_HEADER;
use telemetry::{HexId, trace_hex};

/// Paths polled by Kubernetes and Prometheus: logged at debug level only.
const QUIET_PATHS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

static X_REQUEST_ID: HeaderName = HeaderName::from_static(REQUEST_ID_HEADER);

/// Root span of every request: tracing-actix-web's HTTP span, with the same
/// name and fields as its `root_span!` gives it, plus the caller's
/// `x-request-id`.
///
/// Built here rather than with `root_span!`, which runs the propagator over
/// the headers twice per request (actix/actix-extras#724) and looks each
/// header up by a name parsed afresh, a cost measured per request
/// (`docs/instrumentation-cost.md, "Figures behind code comments"`). Here the caller's
/// context is extracted once, through [`RequestHeaders`].
#[derive(Debug, Clone, Copy, Default)]
pub struct DemoRootSpan;

impl RootSpanBuilder for DemoRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let headers = request.headers();
        let header = |name: &HeaderName| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&RequestHeaders(headers))
        });
        let remote_trace_id = {
            let remote = parent.span();
            let sc = remote.span_context();
            sc.is_valid().then(|| trace_hex(sc.trace_id()))
        };
        let method = request.method().as_str();
        let route = request.match_pattern();
        let route = route.as_deref().unwrap_or("default");
        let name = format!("{method} {route}");
        let request_id = request.extensions().get::<RequestId>().copied();
        let connection = request.connection_info();
        let span = tracing::info_span!(
            "HTTP request",
            http.method = method,
            http.route = route,
            http.flavor = http_flavor(request.version()),
            http.scheme = connection.scheme(),
            http.host = connection.host(),
            http.client_ip = connection.realip_remote_addr().unwrap_or(""),
            http.user_agent = header(&USER_AGENT),
            http.target = request.uri().path_and_query().map_or("", |p| p.as_str()),
            http.status_code = Empty,
            otel.name = name.as_str(),
            otel.kind = "server",
            otel.status_code = Empty,
            trace_id = remote_trace_id.as_ref().map(HexId::as_str),
            request_id = request_id.map(tracing::field::display),
            exception.message = Empty,
            exception.details = Empty,
            x_request_id = header(&X_REQUEST_ID),
        );
        drop(connection);
        let _ = span.set_parent(parent);
        if remote_trace_id.is_none() {
            // A new trace: its id exists now that the span does.
            let trace_id = span.context().span().span_context().trace_id();
            span.record("trace_id", trace_hex(trace_id).as_str());
        }
        span
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

/// `http.flavor` as tracing-actix-web writes it.
fn http_flavor(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2.0",
        Version::HTTP_3 => "3.0",
        _ => "1.1",
    }
}

/// The request's headers as the propagator reads them. The propagators ask
/// for their headers by name, as text; actix-web's map would parse each
/// name into a fresh `HeaderName` (an allocation for every non-standard
/// one) to look it up, so the names the propagators of this crate ask for
/// are parsed once, here. (Not taken from the propagator's `fields()`:
/// those are the headers it injects, and B3's extraction also asks for the
/// single `b3` header, which then was parsed on every request; measured:
/// `docs/instrumentation-cost.md, "Figures behind code comments"`.)
struct RequestHeaders<'a>(&'a HeaderMap);

static PROPAGATION_HEADERS: [HeaderName; 8] = [
    HeaderName::from_static("traceparent"),
    HeaderName::from_static("tracestate"),
    HeaderName::from_static("x-b3-traceid"),
    HeaderName::from_static("x-b3-spanid"),
    HeaderName::from_static("x-b3-parentspanid"),
    HeaderName::from_static("x-b3-sampled"),
    HeaderName::from_static("x-b3-flags"),
    HeaderName::from_static("b3"),
];

impl Extractor for RequestHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        let value = match PROPAGATION_HEADERS.iter().find(|h| h.as_str() == key) {
            Some(name) => self.0.get(name),
            None => self.0.get(key),
        };
        value.and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

/// The tracing middleware: tracing-actix-web's, with [`DemoRootSpan`].
pub fn tracing_middleware() -> TracingLogger<DemoRootSpan> {
    TracingLogger::<DemoRootSpan>::new()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::HashMap;

    use actix_web::http::header::HeaderValue;
    use opentelemetry::propagation::TextMapPropagator;

    use super::*;

    #[test]
    fn the_headers_give_the_context_a_plain_map_of_them_gives() {
        let cases: [&[(&str, &str)]; 4] = [
            &[(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )],
            &[
                ("X-B3-TraceId", "80f198ee56343ba864fe8b2a57d3eff7"),
                ("X-B3-SpanId", "e457b5a2e4d86bd1"),
                ("X-B3-ParentSpanId", "05e3ac9a4f6e3b90"),
                ("X-B3-Sampled", "1"),
            ],
            &[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")],
            &[
                ("x-b3-traceid", "not hex"),
                ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ],
        ];
        let propagator = telemetry::propagator();
        for headers in cases {
            let mut map = HeaderMap::new();
            let mut plain = HashMap::new();
            for (name, value) in headers {
                map.insert(
                    HeaderName::try_from(*name).unwrap(),
                    HeaderValue::from_static(value),
                );
                plain.insert(name.to_lowercase(), (*value).to_owned());
            }
            let ours = propagator.extract(&RequestHeaders(&map));
            let reference = propagator.extract(&plain);
            assert_eq!(
                ours.span().span_context(),
                reference.span().span_context(),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn any_header_can_be_read_not_only_the_propagators_ones() {
        let mut map = HeaderMap::new();
        map.insert(
            HeaderName::from_static("baggage"),
            HeaderValue::from_static("k=v"),
        );
        map.insert(
            HeaderName::from_static("traceparent"),
            HeaderValue::from_static("x"),
        );
        let headers = RequestHeaders(&map);
        assert_eq!(headers.get("baggage"), Some("k=v"));
        assert_eq!(headers.get("traceparent"), Some("x"));
        assert_eq!(headers.get("x-b3-traceid"), None);
        let mut keys = headers.keys();
        keys.sort_unstable();
        assert_eq!(keys, ["baggage", "traceparent"]);
    }
}
