//! A stand-in for the gateway URL of the walkthrough: the app under
//! `/demo-app/`, Jaeger's query and metrics API under `/jaeger/api/`, Loki
//! (the services' log lines and the proxies' Envoy access log lines) and Prometheus
//! behind Grafana's data source proxy (`/grafana/api/datasources/proxy/uid/
//! {loki,prometheus}/...`) and Kiali's graph API under `/kiali/api/`, each
//! answering in the real API's format, about one consistent world that a
//! test can break in one place.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

/// What is broken in the world the stand-in serves (all false: healthy).
#[derive(Debug, Clone, Copy, Default)]
pub struct World {
    /// Pods without sidecars: no `<app>.<namespace>` spans.
    pub no_sidecars: bool,
    /// business-logic's side of the trace refers to a parent that is not in it.
    pub split_trace: bool,
    /// The front-end does not propagate: no business-logic spans in the trace.
    pub no_business_logic_spans: bool,
    /// Alloy ships nothing: Loki finds no line.
    pub no_log_lines: bool,
    /// No `istio_requests_total` front-end → business-logic.
    pub no_istio_metrics: bool,
    /// The front-end → business-logic edge has no mTLS.
    pub edge_without_mtls: bool,
    /// PostgreSQL is off (no postgres node in Kiali's graph).
    pub no_postgres: bool,
    /// The gateway is the one Istio deploys for a Gateway API `Gateway`
    /// named `app-gateway` (`app-gateway-istio` in the app namespace).
    pub gateway_api: bool,
    /// Which business-logic workloads get front-end's calls (the canary).
    pub business_logic: Versions,
    /// Kiali's graph has no traffic from front-end to business-logic.
    pub no_business_logic_edge: bool,
    /// Jaeger runs without a metrics backend: its metrics API answers 501.
    pub no_metrics_backend: bool,
    /// Nothing produces span metrics: Jaeger's metrics API finds no series.
    pub no_span_metrics: bool,
    /// Envoy access logging is off: no access log lines reach Loki.
    pub no_access_log: bool,
    /// The access log format has no `trace_id`.
    pub access_log_without_trace_id: bool,
    /// Ambient mode: no sidecars; ztunnel on the nodes and the waypoint
    /// `waypoint` in front of business-logic (its spans, its metrics).
    pub ambient: bool,
    /// Ambient, but business-logic is not bound to a waypoint: no waypoint
    /// spans, no HTTP metrics for the hop (ztunnel reports TCP only).
    pub no_waypoint: bool,
    /// Ambient chosen, but the namespace is not enrolled: no ztunnel, no
    /// waypoint, plain text everywhere.
    pub not_enrolled: bool,
}

impl World {
    /// The waypoint carries business-logic's calls.
    fn waypoint(self) -> bool {
        self.ambient && !self.no_waypoint && !self.not_enrolled
    }
}

/// business-logic's workloads that receive calls, as the chart deploys them:
/// v1 is Deployment `business-logic`, v2 (the canary) `business-logic-v2`,
/// both with pod labels `app: business-logic` and `version: v1` / `v2`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Versions {
    /// No canary (`make up`, `make rollback`): every call to v1.
    #[default]
    V1,
    /// `make canary`: calls split between v1 and v2.
    Split,
    /// `make promote`, ten minutes on: every call to v2, none to v1.
    Promoted,
}

impl Versions {
    /// (workload, version) of each business-logic workload with calls.
    fn workloads(self) -> &'static [(&'static str, &'static str)] {
        const V1: (&str, &str) = ("business-logic", "v1");
        const V2: (&str, &str) = ("business-logic-v2", "v2");
        match self {
            Self::V1 => &[V1],
            Self::Split => &[V1, V2],
            Self::Promoted => &[V2],
        }
    }
}

pub const NAMESPACE: &str = "demo-app";

#[derive(Debug, Default)]
struct State {
    world: World,
    /// The trace ids of the slow pages served so far.
    traces: Vec<String>,
    /// Every request's path and query, in order.
    requests: Vec<String>,
    /// The PromQL expressions asked for.
    promql: Vec<String>,
    /// Access log lines the proxies wrote: stream labels and the line.
    access_log: Vec<(Value, String)>,
}

/// The running stand-in.
#[derive(Debug, Clone)]
pub struct StandIn {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

impl StandIn {
    /// Serves `world` on 127.0.0.1:`port` (0: any free port).
    pub fn start(world: World, port: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            world,
            ..State::default()
        }));
        let data = web::Data::from(state.clone());
        std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                HttpServer::new(move || {
                    App::new()
                        .app_data(data.clone())
                        .route(
                            "/",
                            web::get().to(|| async { HttpResponse::NotFound().finish() }),
                        )
                        .route("/demo-app/", web::get().to(landing))
                        .route("/demo-app/slow-page", web::get().to(slow_page))
                        .route("/jaeger/api/traces/{id}", web::get().to(jaeger_trace))
                        .route("/jaeger/api/metrics/calls", web::get().to(jaeger_calls))
                        .route(
                            "/grafana/api/datasources/proxy/uid/loki/loki/api/v1/query_range",
                            web::get().to(loki_query_range),
                        )
                        .route(
                            "/grafana/api/datasources/proxy/uid/prometheus/api/v1/query",
                            web::get().to(prometheus_query),
                        )
                        .route("/kiali/api/namespaces/graph", web::get().to(kiali_graph))
                        .default_service(web::to(|| async {
                            HttpResponse::NotFound().body("404 page not found")
                        }))
                })
                .workers(1)
                .listen(listener)
                .unwrap()
                .run()
                .await
                .unwrap();
            });
        });
        Self { port, state }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The trace ids handed out by the slow page.
    pub fn traces(&self) -> Vec<String> {
        self.state.lock().unwrap().traces.clone()
    }

    /// Every request's path and query, in order.
    pub fn requests(&self) -> Vec<String> {
        self.state.lock().unwrap().requests.clone()
    }

    /// The PromQL expressions asked for, decoded.
    pub fn promql(&self) -> Vec<String> {
        self.state.lock().unwrap().promql.clone()
    }
}

type Shared = web::Data<Mutex<State>>;

fn record(state: &Shared, request: &HttpRequest) -> World {
    let mut state = state.lock().unwrap();
    state.requests.push(request.uri().to_string());
    state.world
}

fn hex(len: usize) -> String {
    (0..len)
        .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap())
        .collect()
}

fn query(request: &HttpRequest) -> Vec<(String, String)> {
    web::Query::<Vec<(String, String)>>::from_query(request.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default()
}

fn param(request: &HttpRequest, key: &str) -> Option<String> {
    query(request)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

// ---------------------------------------------------------------- the app

async fn landing(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    log_access(&state, world, &request, &hex(32), 1);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            r#"<!doctype html><html><body><h1>Find the slow request</h1>
<a class="button" id="fast-page" href="fast-page">Fast page</a>
<a class="button slow" id="slow-page" href="slow-page">Slow page</a></body></html>"#,
        )
}

async fn slow_page(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    let trace_id = hex(32);
    state.lock().unwrap().traces.push(trace_id.clone());
    log_access(&state, world, &request, &trace_id, 512);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("traceresponse", format!("00-{trace_id}-{}-01", hex(16))))
        .body(format!(
            "<html><body><p>5000 catalog items summarised</p><code id=\"trace-id\">{trace_id}</code></body></html>"
        ))
}

/// The gateway's and the front-end sidecar's Envoy access log lines for a
/// request, in the mesh's JSON format (istio-add-ons/istio-operator.yaml,
/// provider `envoy-json`) with Alloy's labels (alloy-values.yaml).
/// Envoy writes numbers for `response_code`, `duration` and the byte counts.
fn log_access(state: &Shared, world: World, request: &HttpRequest, trace_id: &str, ms: u64) {
    if world.no_access_log {
        return;
    }
    let (namespace, gateway, pod) = if world.gateway_api {
        (
            NAMESPACE,
            "app-gateway",
            "app-gateway-istio-5c7d8f9b6-h2n4v",
        )
    } else {
        (
            "istio-system",
            "istio-ingressgateway",
            "istio-ingressgateway-6b8d4c7f9-k3m5p",
        )
    };
    let path = request.uri().to_string();
    let line = |upstream: &str| {
        let mut line = json!({
            "authority": "localhost:8080", "bytes_received": 0, "bytes_sent": 1843,
            "downstream_remote_address": "10.244.1.1:50412", "duration": ms, "method": "GET",
            "path": path, "protocol": "HTTP/1.1", "response_code": 200, "response_flags": "-",
            "route_name": null, "start_time": "2026-12-07T01:00:00.000Z", "trace_id": trace_id,
            "upstream_cluster": upstream, "upstream_host": "10.244.1.7:8080",
            "user_agent": "verify", "x_request_id": "6b2f0c1e-3f57-4a8e-9d1c-2f4e5a6b7c8d"
        });
        if world.access_log_without_trace_id {
            line.as_object_mut().unwrap().remove("trace_id");
        }
        line.to_string()
    };
    let mut state = state.lock().unwrap();
    state.access_log.push((
        json!({"namespace": namespace, "pod": pod, "container": "istio-proxy",
               "app": gateway, "gateway": gateway, "log_type": "access"}),
        line("outbound|8080||front-end.demo-app.svc.cluster.local"),
    ));
    if world.waypoint() {
        // The waypoint logs the call it carries (its pods have no `app`).
        state.access_log.push((
            json!({"namespace": NAMESPACE, "pod": "waypoint-7f9d8c6b5-p8r2t", "container": "istio-proxy",
                   "log_type": "access"}),
            line("inbound-vip|8081|http|business-logic.demo-app.svc.cluster.local"),
        ));
    } else if !world.ambient {
        state.access_log.push((
            json!({"namespace": NAMESPACE, "pod": "front-end-7d9c6b5f4-x2k8p", "container": "istio-proxy",
                   "app": "front-end", "log_type": "access"}),
            line("inbound|8080||"),
        ));
    }
}

// ---------------------------------------------------------------- Jaeger

/// `GET /api/traces/{id}` of Jaeger's query service (the JSON its UI reads).
async fn jaeger_trace(state: Shared, request: HttpRequest, id: web::Path<String>) -> HttpResponse {
    let world = record(&state, &request);
    let known = state.lock().unwrap().traces.contains(&id);
    if !known {
        return HttpResponse::NotFound().json(json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": 404, "msg": "trace not found"}]
        }));
    }
    HttpResponse::Ok().json(jaeger_body(&id, world))
}

fn jaeger_body(trace_id: &str, world: World) -> Value {
    let ns = NAMESPACE;
    // (span id, parent, service, operation, kind)
    let mut spans: Vec<(String, Option<String>, String, String, &'static str)> = Vec::new();
    let mut add = |parent: Option<&str>, service: &str, operation: &str, kind: &'static str| {
        let id = hex(16);
        spans.push((
            id.clone(),
            parent.map(str::to_owned),
            service.to_owned(),
            operation.to_owned(),
            kind,
        ));
        id
    };
    let fe_sidecar = format!("front-end.{ns}");
    let bl_sidecar = format!("business-logic.{ns}");
    let gateway_service = if world.gateway_api {
        format!("app-gateway-istio.{ns}")
    } else {
        "istio-ingressgateway.istio-system".to_owned()
    };
    let gateway = add(
        None,
        &gateway_service,
        &format!("front-end.{ns}.svc.cluster.local:8080/demo-app/*"),
        "client",
    );
    let sidecars = !world.no_sidecars && !world.ambient;
    let fe_parent = if !sidecars {
        gateway
    } else {
        add(
            Some(&gateway),
            &fe_sidecar,
            &format!("front-end.{ns}.svc.cluster.local:8080/*"),
            "server",
        )
    };
    let fe_server = add(Some(&fe_parent), "front-end", "GET /slow-page", "server");
    let fe_client = add(
        Some(&fe_server),
        "front-end",
        "GET /slow-endpoint",
        "client",
    );
    if !world.no_business_logic_spans {
        let bl_parent = if world.waypoint() {
            // The waypoint: one span for the call it carries.
            add(
                Some(&fe_client),
                &format!("waypoint.{ns}"),
                &format!("business-logic.{ns}.svc.cluster.local:8081/*"),
                "client",
            )
        } else if !sidecars {
            fe_client
        } else {
            let outbound = add(
                Some(&fe_client),
                &fe_sidecar,
                &format!("business-logic.{ns}.svc.cluster.local:8081/*"),
                "client",
            );
            // A split trace: business-logic's sidecar continues a span the
            // trace does not hold.
            let parent = if world.split_trace { hex(16) } else { outbound };
            add(
                Some(&parent),
                &bl_sidecar,
                &format!("business-logic.{ns}.svc.cluster.local:8081/*"),
                "server",
            )
        };
        let bl_server = add(
            Some(&bl_parent),
            "business-logic",
            "GET /slow-endpoint",
            "server",
        );
        add(
            Some(&bl_server),
            "business-logic",
            "SELECT catalog_items",
            "client",
        );
        add(
            Some(&bl_server),
            "business-logic",
            "data_transformation",
            "internal",
        );
    }

    let mut processes = serde_json::Map::new();
    let mut process_of = |service: &str| {
        let existing = processes
            .iter()
            .find(|(_, p)| p["serviceName"] == service)
            .map(|(k, _)| k.clone());
        existing.unwrap_or_else(|| {
            let key = format!("p{}", processes.len() + 1);
            processes.insert(key.clone(), json!({"serviceName": service, "tags": []}));
            key
        })
    };
    let start = 1_764_150_000_000_000_u64;
    let spans: Vec<Value> = spans
        .iter()
        .enumerate()
        .map(|(i, (id, parent, service, operation, kind))| {
            json!({
                "traceID": trace_id,
                "spanID": id,
                "flags": 1,
                "operationName": operation,
                "references": parent.iter().map(|p| json!({
                    "refType": "CHILD_OF", "traceID": trace_id, "spanID": p
                })).collect::<Vec<_>>(),
                "startTime": start + i as u64 * 1000,
                "duration": 500_000 - i as u64 * 1000,
                "tags": [{"key": "span.kind", "type": "string", "value": kind}],
                "logs": [],
                "processID": process_of(service),
                "warnings": null
            })
        })
        .collect();
    json!({
        "data": [{"traceID": trace_id, "spans": spans, "processes": processes, "warnings": null}],
        "total": 0, "limit": 0, "offset": 0, "errors": null
    })
}

/// Jaeger's `GET /api/metrics/calls` (the Monitor tab's call rates), as
/// v2.20.0 answers it: its parameter checks, 501 without a metrics backend,
/// and a `MetricFamily` in gogo/jsonpb's JSON (NaN as the string "NaN").
async fn jaeger_calls(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    let error = |code: u16, msg: String| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap()).json(json!({
            "data": null, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": code, "msg": msg}]
        }))
    };
    let query = query(&request);
    let services: Vec<&str> = query
        .iter()
        .filter(|(k, _)| k == "service")
        .map(|(_, v)| v.as_str())
        .collect();
    if services.is_empty() {
        return error(
            400,
            "unable to parse param 'service': please provide at least one service name".into(),
        );
    }
    for (key, value) in &query {
        let ok = match key.as_str() {
            "endTs" | "lookback" | "step" | "ratePer" => value.parse::<i64>().is_ok(),
            "groupByOperation" => value.parse::<bool>().is_ok(),
            "spanKind" => [
                "unspecified",
                "internal",
                "server",
                "client",
                "producer",
                "consumer",
            ]
            .contains(&value.as_str()),
            _ => true,
        };
        if !ok {
            return error(
                400,
                format!("unable to parse param '{key}': invalid value {value:?}"),
            );
        }
    }
    if world.no_metrics_backend {
        return error(
            501,
            "trace metrics are currently disabled - no metrics backend configured".into(),
        );
    }
    let by_operation = param(&request, "groupByOperation").as_deref() == Some("true");
    let served = !state.lock().unwrap().traces.is_empty();
    let mut metrics = Vec::new();
    if served && !world.no_span_metrics {
        for (service, operations) in [
            ("front-end", &["GET /", "GET /slow-page"][..]),
            ("business-logic", &["GET /slow-endpoint"][..]),
        ] {
            if !services.contains(&service) {
                continue;
            }
            let operations: &[&str] = if by_operation { operations } else { &[""] };
            for operation in operations {
                let mut labels = vec![json!({"name": "service_name", "value": service})];
                if by_operation {
                    labels.insert(0, json!({"name": "operation", "value": operation}));
                }
                metrics.push(json!({
                    "labels": labels,
                    "metricPoints": [
                        {"gaugeValue": {"doubleValue": "NaN"}, "timestamp": "2026-12-07T00:58:00Z"},
                        {"gaugeValue": {"doubleValue": 0.0125}, "timestamp": "2026-12-07T00:59:00Z"},
                        {"gaugeValue": {"doubleValue": 0.05}, "timestamp": "2026-12-07T01:00:00Z"}
                    ]
                }));
            }
        }
    }
    let (name, help) = if by_operation {
        (
            "service_operation_call_rate",
            "calls/sec, grouped by service & operation",
        )
    } else {
        ("service_call_rate", "calls/sec, grouped by service")
    };
    HttpResponse::Ok()
        .json(json!({"name": name, "type": "GAUGE", "help": help, "metrics": metrics}))
}

// ---------------------------------------------------------------- Loki

/// Loki's `GET /loki/api/v1/query_range`, behind Grafana's data source proxy.
async fn loki_query_range(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    let (Some(query), Some(start), Some(end)) = (
        param(&request, "query"),
        param(&request, "start"),
        param(&request, "end"),
    ) else {
        return HttpResponse::BadRequest().body("parse error: query, start and end are required");
    };
    let (Ok(start), Ok(end)) = (start.parse::<u128>(), end.parse::<u128>()) else {
        return HttpResponse::BadRequest().body("invalid start or end: not a nanosecond timestamp");
    };
    let Some((matchers, filters)) = logql(&query) else {
        return HttpResponse::BadRequest().body(format!("parse error: unexpected query {query}"));
    };
    if !matchers
        .iter()
        .any(|(_, equal, value)| *equal && !value.is_empty())
    {
        return HttpResponse::BadRequest().body(
            "parse error: queries require at least one regexp or equality matcher that does not have an empty-compatible value",
        );
    }
    // The services' log lines of the traces served, then the proxies' access
    // log lines.
    let mut streams: Vec<(Value, String)> = Vec::new();
    if !world.no_log_lines {
        for trace_id in state.lock().unwrap().traces.iter() {
            for (app, line) in [
                ("front-end", "slow page rendered"),
                ("business-logic", "catalog summarised"),
            ] {
                streams.push((
                    json!({"namespace": NAMESPACE, "app": app, "container": app, "pod": format!("{app}-7d9c6b5f4-x2k8p")}),
                    format!("2026-11-26T09:00:00.000Z  INFO {line} trace_id={trace_id} span_id={}", hex(16)),
                ));
            }
        }
    }
    streams.extend(state.lock().unwrap().access_log.iter().cloned());
    let mut result = Vec::new();
    if start < end {
        let ts = (end - 1_000_000_000).to_string();
        for (labels, line) in streams {
            let label = |name: &str| labels.get(name).and_then(Value::as_str).unwrap_or("");
            let selected = matchers
                .iter()
                .all(|(name, equal, value)| (label(name) == value) == *equal);
            if selected && filters.iter().all(|f| line.contains(f.as_str())) {
                result.push(json!({"stream": labels, "values": [[ts, line]]}));
            }
        }
    }
    HttpResponse::Ok().json(json!({
        "status": "success",
        "data": {"resultType": "streams", "result": result, "stats": {}}
    }))
}

/// The LogQL verify sends: a stream selector of `=` and `!=` matchers, then
/// any number of `|= "text"` line filters. `None` for anything else.
#[allow(clippy::type_complexity)]
fn logql(query: &str) -> Option<(Vec<(String, bool, String)>, Vec<String>)> {
    let rest = query.trim().strip_prefix('{')?;
    let (selector, mut rest) = rest.split_once('}')?;
    let mut matchers = Vec::new();
    for matcher in selector.split(',').map(str::trim) {
        let (name, equal, value) = if let Some((n, v)) = matcher.split_once("!=") {
            (n, false, v)
        } else {
            let (n, v) = matcher.split_once('=')?;
            (n, true, v)
        };
        let value = value.trim().strip_prefix('"')?.strip_suffix('"')?;
        matchers.push((name.trim().to_owned(), equal, value.to_owned()));
    }
    let mut filters = Vec::new();
    loop {
        rest = rest.trim_start();
        if rest.is_empty() {
            return Some((matchers, filters));
        }
        let text = rest.strip_prefix("|=")?.trim_start().strip_prefix('"')?;
        let (text, after) = text.split_once('"')?;
        filters.push(text.to_owned());
        rest = after;
    }
}

// ---------------------------------------------------------------- Prometheus

/// The series the stand-in's Prometheus holds: labels (with `__name__`) and
/// the counter's value.
fn series(world: World) -> Vec<(Value, f64)> {
    let ns = NAMESPACE;
    let mut series = vec![(
        json!({"__name__": "http_requests_total", "namespace": ns, "pod": "front-end-7d9c6b5f4-x2k8p",
               "service": "front-end", "version": "0.1.0", "method": "GET", "route": "/slow-page", "status": "200"}),
        57.0,
    )];
    for (workload, version) in world.business_logic.workloads() {
        // business-logic's own counter carries its service name, the same on
        // v1 and v2 (OTEL_SERVICE_NAME), and its version.
        series.push((
            json!({"__name__": "http_requests_total", "namespace": ns, "pod": format!("{workload}-6f8b7c9d5-q4w7z"),
                   "service": "business-logic", "version": version, "method": "GET", "route": "/slow-endpoint", "status": "200"}),
            42.0,
        ));
    }
    // Istio's standard labels: *_workload is the Deployment, *_app and
    // *_version the pods' `app` and `version` labels.
    let istio = |source: (&str, &str, &str), destination: (&str, &str, &str), reporter: &str| {
        json!({"__name__": "istio_requests_total", "reporter": reporter,
               "source_workload": source.0, "source_workload_namespace": ns, "source_app": source.1, "source_version": source.2,
               "source_canonical_service": source.1, "source_canonical_revision": source.2,
               "destination_workload": destination.0, "destination_workload_namespace": ns, "destination_app": destination.1,
               "destination_version": destination.2, "destination_canonical_service": destination.1,
               "destination_canonical_revision": destination.2,
               "destination_service": format!("{}.{ns}.svc.cluster.local", destination.1),
               "request_protocol": "http", "response_code": "200", "connection_security_policy": "mutual_tls"})
    };
    let front_end = ("front-end", "front-end", "0.1.0");
    series.push((
        istio(
            ("app-gateway-istio", "app-gateway-istio", "latest"),
            front_end,
            "destination",
        ),
        57.0,
    ));
    // With sidecars both ends report the hop; in ambient the waypoint does
    // (reporter="waypoint"), and without it nobody reports HTTP metrics.
    let reporters: &[&str] = if !world.ambient {
        &["source", "destination"]
    } else if world.waypoint() {
        &["waypoint"]
    } else {
        &[]
    };
    if !world.no_istio_metrics {
        for (workload, version) in world.business_logic.workloads() {
            for reporter in reporters {
                series.push((
                    istio(front_end, (workload, "business-logic", version), reporter),
                    42.0,
                ));
            }
        }
    }
    series
}

/// Evaluates `sum by (<labels>) (<metric>{<matchers>})`, the one shape
/// verify sends, as Prometheus does: `=` and `=~` (a fully anchored
/// alternation of names), a missing label matching only "".
fn sum_by(query: &str, series: &[(Value, f64)]) -> Result<Vec<Value>, String> {
    let error = || format!("stand-in: unsupported query {query}");
    let rest = query.trim().strip_prefix("sum by (").ok_or_else(error)?;
    let (by, rest) = rest.split_once(')').ok_or_else(error)?;
    let by: Vec<&str> = by.split(',').map(str::trim).collect();
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(error)?;
    let (metric, matchers) = inner.split_once('{').ok_or_else(error)?;
    let matchers = matchers.strip_suffix('}').ok_or_else(error)?;
    let mut wanted: Vec<(String, bool, String)> =
        vec![("__name__".into(), false, metric.trim().into())];
    for matcher in matchers.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let (label, regex, value) = if let Some((l, v)) = matcher.split_once("=~") {
            (l, true, v)
        } else if let Some((l, v)) = matcher.split_once('=') {
            (l, false, v)
        } else {
            return Err(error());
        };
        let value = value
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .ok_or_else(error)?;
        wanted.push((label.trim().into(), regex, value.into()));
    }
    let mut sums: Vec<(Vec<String>, f64)> = Vec::new();
    for (labels, value) in series {
        let label = |name: &str| labels.get(name).and_then(Value::as_str).unwrap_or("");
        let matches = wanted.iter().all(|(name, regex, value)| {
            if *regex {
                value.split('|').any(|alt| alt == label(name))
            } else {
                label(name) == value
            }
        });
        if !matches {
            continue;
        }
        let key: Vec<String> = by.iter().map(|l| label(l).to_owned()).collect();
        match sums.iter_mut().find(|(k, _)| *k == key) {
            Some((_, sum)) => *sum += value,
            None => sums.push((key, *value)),
        }
    }
    Ok(sums
        .into_iter()
        .map(|(key, sum)| {
            let metric: serde_json::Map<String, Value> = by
                .iter()
                .zip(key)
                .filter(|(_, v)| !v.is_empty())
                .map(|(l, v)| ((*l).to_owned(), Value::String(v)))
                .collect();
            json!({"metric": metric, "value": [1_764_150_000.123, sum.to_string()]})
        })
        .collect())
}

/// Prometheus' `GET /api/v1/query`, behind Grafana's data source proxy.
async fn prometheus_query(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    let Some(query) = param(&request, "query") else {
        return HttpResponse::BadRequest().json(json!({
            "status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": 1:1: parse error: no expression found in input"
        }));
    };
    state.lock().unwrap().promql.push(query.clone());
    match sum_by(&query, &series(world)) {
        Ok(result) => HttpResponse::Ok().json(json!({
            "status": "success",
            "data": {"resultType": "vector", "result": result}
        })),
        Err(error) => HttpResponse::BadRequest().json(json!({
            "status": "error", "errorType": "bad_data", "error": error
        })),
    }
}

// ---------------------------------------------------------------- Kiali

/// A workload of the stand-in's mesh: namespace, workload, app and version
/// labels, and node fields of its own.
struct Workload {
    namespace: &'static str,
    workload: &'static str,
    app: &'static str,
    version: &'static str,
    extra: Value,
}

/// Kiali's `GET /api/namespaces/graph` (cytoscape JSON). As Kiali, for
/// `graphType=workload` a node per workload (`nodeType: workload`), for
/// `versionedApp` a node per app and version (`nodeType: app`, keeping
/// `workload`) with a box node (`nodeType: box`, `isBox: app`) around an
/// app's nodes when it has more than one, for `app` a node per app.
async fn kiali_graph(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    if param(&request, "namespaces").as_deref() != Some(NAMESPACE) {
        return HttpResponse::BadRequest().json(json!({"error": "namespaces: expected demo-app"}));
    }
    let graph_type = param(&request, "graphType").unwrap_or_else(|| "versionedApp".into());
    if !["app", "versionedApp", "workload"].contains(&graph_type.as_str()) {
        return HttpResponse::BadRequest()
            .json(json!({"error": format!("Invalid graphType [{graph_type}]")}));
    }
    // As Kiali: no `appenders` runs them all; an unknown name is a 400;
    // edges carry isMTLS only when securityPolicy ran.
    const APPENDERS: [&str; 13] = [
        "aggregateNode",
        "deadNode",
        "healthConfig",
        "health",
        "idleNode",
        "istio",
        "meshCheck",
        "responseTime",
        "securityPolicy",
        "serviceEntry",
        "throughput",
        "workloadEntry",
        "ambient",
    ];
    let appenders = param(&request, "appenders");
    let appenders: Vec<&str> = match &appenders {
        Some(list) => list.split(',').filter(|a| !a.is_empty()).collect(),
        None => APPENDERS.to_vec(),
    };
    if let Some(unknown) = appenders.iter().find(|a| !APPENDERS.contains(a)) {
        return HttpResponse::BadRequest()
            .json(json!({"error": format!("Invalid appenders [{unknown}]")}));
    }
    let security_policy = appenders.contains(&"securityPolicy");

    let workload = |namespace, workload, app, version, extra| Workload {
        namespace,
        workload,
        app,
        version,
        extra,
    };
    let gateway = if world.gateway_api {
        workload(
            NAMESPACE,
            "app-gateway-istio",
            "app-gateway-istio",
            "latest",
            json!({"isGateway": {"gatewayAPIInfo": {"hostnames": ["*"]}}, "isK8sGatewayAPI": true, "isRoot": true}),
        )
    } else {
        workload(
            "istio-system",
            "istio-ingressgateway",
            "istio-ingressgateway",
            "latest",
            json!({"isGateway": {"ingressInfo": {"hostnames": ["*"]}}, "isOutside": true, "isRoot": true}),
        )
    };
    let front_end = workload(NAMESPACE, "front-end", "front-end", "0.1.0", json!({}));
    let postgres = workload(NAMESPACE, "postgres", "postgres", "18.4", json!({}));
    let business_logic: Vec<Workload> = if world.no_business_logic_edge {
        Vec::new()
    } else {
        world
            .business_logic
            .workloads()
            .iter()
            .map(|(w, v)| workload(NAMESPACE, w, "business-logic", v, json!({})))
            .collect()
    };
    // As Kiali: the waypoint is a node of its own unless the `ambient`
    // appender runs with `waypoints=false` (then its edges fold into
    // front-end → business-logic).
    let waypoint = workload(
        NAMESPACE,
        "waypoint",
        "waypoint",
        "latest",
        json!({"isWaypoint": true}),
    );
    let fold_waypoint = (appenders.contains(&"ambient") || param(&request, "appenders").is_none())
        && param(&request, "waypoints").as_deref() == Some("false");
    // (source, target, protocol, mTLS)
    let mut traffic: Vec<(&Workload, &Workload, &str, bool)> =
        vec![(&gateway, &front_end, "http", !world.not_enrolled)];
    for bl in &business_logic {
        if world.not_enrolled {
            // Nothing in the namespace reports: no ztunnel, no waypoint.
            continue;
        }
        if world.waypoint() && !fold_waypoint {
            traffic.push((&front_end, &waypoint, "http", true));
            traffic.push((&waypoint, bl, "http", !world.edge_without_mtls));
        } else {
            // Sidecars, the folded waypoint, or ztunnel's TCP view alone.
            let protocol = if world.ambient && !world.waypoint() {
                "tcp"
            } else {
                "http"
            };
            traffic.push((&front_end, bl, protocol, !world.edge_without_mtls));
        }
        if !world.no_postgres {
            traffic.push((bl, &postgres, "tcp", true));
        }
    }

    // Kiali's node ids (it hashes them; readable here).
    let id = |w: &Workload| match graph_type.as_str() {
        "workload" => format!("wl_{}_{}", w.namespace, w.workload),
        "versionedApp" => format!("vapp_{}_{}", w.namespace, w.workload),
        _ => format!("app_{}_{}", w.namespace, w.app),
    };
    let mut nodes: Vec<Value> = Vec::new();
    for w in traffic.iter().flat_map(|(s, t, _, _)| [*s, *t]) {
        let node_id = id(w);
        if nodes.iter().any(|n| n["data"]["id"] == node_id.as_str()) {
            continue;
        }
        let mut data = json!({
            "id": node_id, "cluster": "Kubernetes", "namespace": w.namespace, "app": w.app,
            "traffic": [{"protocol": "http", "rates": {"httpOut": "0.50"}}],
            "healthData": null
        });
        match graph_type.as_str() {
            "workload" => {
                data["nodeType"] = json!("workload");
                data["workload"] = json!(w.workload);
                data["version"] = json!(w.version);
            }
            "versionedApp" => {
                data["nodeType"] = json!("app");
                data["workload"] = json!(w.workload);
                data["version"] = json!(w.version);
            }
            _ => data["nodeType"] = json!("app"),
        }
        data.as_object_mut()
            .unwrap()
            .extend(w.extra.as_object().unwrap().clone());
        nodes.push(json!({"data": data}));
    }
    if graph_type != "workload" {
        // An app box around an app's nodes when there are more than one.
        let mut boxes = Vec::new();
        for node in &nodes {
            let (ns, app) = (&node["data"]["namespace"], &node["data"]["app"]);
            let members = nodes
                .iter()
                .filter(|n| n["data"]["namespace"] == *ns && n["data"]["app"] == *app)
                .count();
            let box_id = format!("box_{}_{}", ns.as_str().unwrap(), app.as_str().unwrap());
            if members > 1
                && !boxes
                    .iter()
                    .any(|b: &Value| b["data"]["id"] == box_id.as_str())
            {
                boxes.push(json!({"data": {
                    "id": box_id, "nodeType": "box", "isBox": "app", "cluster": "Kubernetes",
                    "namespace": ns, "app": app, "healthData": null
                }}));
            }
        }
        for node in &mut nodes {
            let box_id = format!(
                "box_{}_{}",
                node["data"]["namespace"].as_str().unwrap(),
                node["data"]["app"].as_str().unwrap()
            );
            if boxes.iter().any(|b| b["data"]["id"] == box_id.as_str()) {
                node["data"]["parent"] = json!(box_id);
            }
        }
        // Kiali puts the boxes before their members.
        boxes.append(&mut nodes);
        nodes = boxes;
    }
    let mut edges: Vec<Value> = Vec::new();
    for (source, target, protocol, mtls) in &traffic {
        let (source, target) = (id(source), id(target));
        if edges.iter().any(|e| {
            e["data"]["source"] == source.as_str() && e["data"]["target"] == target.as_str()
        }) {
            continue;
        }
        let mut data = json!({
            "id": format!("e{}", edges.len() + 1), "source": source, "target": target,
            "traffic": {"protocol": protocol, "rates": {"http": "0.50", "httpPercentReq": "100.0"}, "responses": {"200": {"flags": {"-": "100.0"}, "hosts": {}}}},
            "responseTime": "12"
        });
        if *mtls && security_policy {
            data["isMTLS"] = json!("100");
        }
        edges.push(json!({"data": data}));
    }
    HttpResponse::Ok().json(json!({
        "timestamp": 1_764_150_000, "duration": 600, "graphType": graph_type,
        "elements": {"nodes": nodes, "edges": edges}
    }))
}
