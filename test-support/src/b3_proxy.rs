//! A stand-in for an Istio proxy (ingress gateway or sidecar) on the mesh's
//! `zipkin` tracing provider with `USE_B3_WITH_W3C_PROPAGATION`: for each
//! request it reads the caller's context from the B3 multi-headers (falling
//! back to `traceparent`), starts a span of its own as the child of the
//! caller's, forwards the request with that span in both header families,
//! and reports the span to a Zipkin v2 endpoint, as Envoy reports to
//! Jaeger's Zipkin receiver. With it a test shows that the proxies' Zipkin
//! spans and the services' OTLP spans form one tree.

use std::net::TcpListener;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use anyhow::Context;
use serde_json::json;

/// Headers a proxy rewrites rather than forwards.
const TRACE_HEADERS: [&str; 6] = [
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "b3",
    "traceparent",
];

#[derive(Debug)]
struct Config {
    upstream: String,
    service_name: String,
    zipkin_endpoint: String,
    client: reqwest::Client,
}

/// The proxy; stops when dropped.
#[derive(Debug)]
pub struct B3Proxy {
    addr: std::net::SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

impl B3Proxy {
    /// A proxy in front of `upstream` (`http://host:port`) whose spans are
    /// reported as `service_name` to `zipkin_endpoint`.
    pub fn start(
        upstream: &str,
        service_name: &str,
        zipkin_endpoint: &str,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
        let addr = listener.local_addr()?;
        let config = web::Data::new(Config {
            upstream: upstream.trim_end_matches('/').to_owned(),
            service_name: service_name.to_owned(),
            zipkin_endpoint: zipkin_endpoint.to_owned(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
        });
        let handle = crate::net::serve_on_own_thread(
            &format!("proxy {service_name}"),
            listener,
            move |app| {
                app.app_data(config.clone())
                    .default_service(web::to(forward));
            },
        )?;
        Ok(Self { addr, handle })
    }

    /// Its base URL, `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for B3Proxy {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn header<'a>(request: &'a HttpRequest, name: &str) -> Option<&'a str> {
    request.headers().get(name).and_then(|v| v.to_str().ok())
}

fn hex_id(len: usize) -> String {
    loop {
        let id: String = (0..len)
            .map(|_| char::from(b"0123456789abcdef"[fastrand::usize(..16)]))
            .collect();
        if id.bytes().any(|b| b != b'0') {
            return id;
        }
    }
}

/// The caller's trace and span ids: B3 first, then `traceparent`.
fn incoming(request: &HttpRequest) -> Option<(String, String)> {
    if let (Some(trace), Some(span)) = (
        header(request, "x-b3-traceid"),
        header(request, "x-b3-spanid"),
    ) {
        return Some((trace.to_ascii_lowercase(), span.to_ascii_lowercase()));
    }
    let mut parts = header(request, "traceparent")?.split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    Some((trace.to_owned(), span.to_owned()))
}

async fn forward(
    request: HttpRequest,
    body: web::Bytes,
    config: web::Data<Config>,
) -> HttpResponse {
    let (trace_id, parent_id) = match incoming(&request) {
        Some((trace, span)) => (trace, Some(span)),
        None => (hex_id(32), None),
    };
    let span_id = hex_id(16);
    let start = crate::collector::now_us();

    let path = request
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let mut outgoing = config
        .client
        .request(
            reqwest::Method::from_bytes(request.method().as_str().as_bytes())
                .unwrap_or(reqwest::Method::GET),
            format!("{}{path}", config.upstream),
        )
        .body(body);
    for (name, value) in request.headers() {
        let name = name.as_str();
        if name != "host" && name != "content-length" && !TRACE_HEADERS.contains(&name) {
            outgoing = outgoing.header(name, value.as_bytes());
        }
    }
    outgoing = outgoing
        .header("x-b3-traceid", &trace_id)
        .header("x-b3-spanid", &span_id)
        .header("x-b3-sampled", "1")
        .header("traceparent", format!("00-{trace_id}-{span_id}-01"));
    if let Some(parent) = &parent_id {
        outgoing = outgoing.header("x-b3-parentspanid", parent);
    }
    if header(&request, "x-request-id").is_none() {
        outgoing = outgoing.header("x-request-id", hex_id(32));
    }
    let (response, status) = match outgoing.send().await {
        Ok(upstream) => {
            let status = upstream.status().as_u16();
            let mut response = HttpResponse::build(
                actix_web::http::StatusCode::from_u16(status)
                    .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY),
            );
            for (name, value) in upstream.headers() {
                if name != "content-length" && name != "transfer-encoding" && name != "connection" {
                    response.insert_header((name.as_str(), value.as_bytes()));
                }
            }
            match upstream.bytes().await {
                Ok(bytes) => (response.body(bytes), status),
                Err(_) => (HttpResponse::BadGateway().finish(), 502),
            }
        }
        Err(_) => (HttpResponse::BadGateway().finish(), 502),
    };

    let mut span = json!({
        "traceId": trace_id,
        "id": span_id,
        "kind": "SERVER",
        "name": format!("{} {}", request.method(), request.path()),
        "timestamp": start,
        "duration": crate::collector::now_us().saturating_sub(start).max(1),
        "localEndpoint": {"serviceName": config.service_name},
        "tags": {"http.status_code": status.to_string(), "upstream_cluster": config.upstream},
    });
    if let Some(parent) = parent_id {
        span["parentId"] = json!(parent);
    }
    // Reported after answering would be closer to Envoy; before is simpler
    // and a test waits for the trace either way.
    let _ = config
        .client
        .post(&config.zipkin_endpoint)
        .json(&json!([span]))
        .send()
        .await;
    response
}
