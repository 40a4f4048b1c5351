//! A stand-in for the gateway URL of the walkthrough: the app under
//! `/demo-app/`, Jaeger's query API under `/jaeger/api/`, Loki and Prometheus
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
    record(&state, &request);
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(
            r#"<!doctype html><html><body><h1>Find the slow request</h1>
<a class="button" id="fast-page" href="fast-page">Fast page</a>
<a class="button slow" id="slow-page" href="slow-page">Slow page</a></body></html>"#,
        )
}

async fn slow_page(state: Shared, request: HttpRequest) -> HttpResponse {
    record(&state, &request);
    let trace_id = hex(32);
    state.lock().unwrap().traces.push(trace_id.clone());
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("traceresponse", format!("00-{trace_id}-{}-01", hex(16))))
        .body(format!(
            "<html><body><p>5000 catalog items summarised</p><code id=\"trace-id\">{trace_id}</code></body></html>"
        ))
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
    let fe_parent = if world.no_sidecars {
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
        let bl_parent = if world.no_sidecars {
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
    // A LogQL stream selector with a line filter for the trace id.
    let selector = format!("{{namespace=\"{NAMESPACE}\"}} |= \"");
    let Some(trace_id) = query
        .strip_prefix(&selector)
        .and_then(|rest| rest.strip_suffix('"'))
    else {
        return HttpResponse::BadRequest().body(format!("parse error: unexpected query {query}"));
    };
    let known = state.lock().unwrap().traces.iter().any(|t| t == trace_id);
    let mut result = Vec::new();
    if known && !world.no_log_lines && start < end {
        let ts = (end - 1_000_000_000).to_string();
        for (app, line) in [
            ("front-end", "slow page rendered"),
            ("business-logic", "catalog summarised"),
        ] {
            result.push(json!({
                "stream": {"namespace": NAMESPACE, "app": app, "container": app, "pod": format!("{app}-7d9c6b5f4-x2k8p")},
                "values": [[ts, format!("2026-11-26T09:00:00.000Z  INFO {line} trace_id={trace_id} span_id={}", hex(16))]]
            }));
        }
    }
    HttpResponse::Ok().json(json!({
        "status": "success",
        "data": {"resultType": "streams", "result": result, "stats": {}}
    }))
}

// ---------------------------------------------------------------- Prometheus

/// Prometheus' `GET /api/v1/query`, behind Grafana's data source proxy.
async fn prometheus_query(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    let Some(query) = param(&request, "query") else {
        return HttpResponse::BadRequest().json(json!({
            "status": "error", "errorType": "bad_data", "error": "invalid parameter \"query\": 1:1: parse error: no expression found in input"
        }));
    };
    state.lock().unwrap().promql.push(query.clone());
    let sample =
        |metric: Value, value: &str| json!({"metric": metric, "value": [1_764_150_000.123, value]});
    let result = if query.contains("http_requests_total")
        && query.contains(&format!("namespace=\"{NAMESPACE}\""))
    {
        vec![
            sample(json!({"service": "business-logic"}), "42"),
            sample(json!({"service": "front-end"}), "57"),
        ]
    } else if query.contains("istio_requests_total")
        && query.contains("source_workload=\"front-end\"")
        && query.contains("destination_workload=\"business-logic\"")
    {
        if world.no_istio_metrics {
            vec![]
        } else {
            vec![sample(
                json!({"source_workload": "front-end", "destination_workload": "business-logic"}),
                "42",
            )]
        }
    } else {
        vec![]
    };
    HttpResponse::Ok().json(json!({
        "status": "success",
        "data": {"resultType": "vector", "result": result}
    }))
}

// ---------------------------------------------------------------- Kiali

/// Kiali's `GET /api/namespaces/graph` (cytoscape JSON).
async fn kiali_graph(state: Shared, request: HttpRequest) -> HttpResponse {
    let world = record(&state, &request);
    if param(&request, "namespaces").as_deref() != Some(NAMESPACE) {
        return HttpResponse::BadRequest().json(json!({"error": "namespaces: expected demo-app"}));
    }
    let graph_type = param(&request, "graphType").unwrap_or_else(|| "versionedApp".into());
    // As Kiali: no `appenders` runs them all; an unknown name is a 400;
    // edges carry isMTLS only when securityPolicy ran.
    const APPENDERS: [&str; 12] = [
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
    let node = |id: &str, ns: &str, workload: &str, extra: Value| {
        let mut data = json!({
            "id": id, "nodeType": "workload", "cluster": "Kubernetes", "namespace": ns,
            "workload": workload, "app": workload, "version": "latest",
            "traffic": [{"protocol": "http", "rates": {"httpOut": "0.50"}}],
            "healthData": null
        });
        data.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json!({"data": data})
    };
    let gateway = if world.gateway_api {
        node(
            "a1",
            NAMESPACE,
            "app-gateway-istio",
            json!({"isGateway": {"gatewayAPIInfo": {"hostnames": ["*"]}}, "isK8sGatewayAPI": true, "isRoot": true}),
        )
    } else {
        node(
            "a1",
            "istio-system",
            "istio-ingressgateway",
            json!({"isGateway": {"ingressInfo": {"hostnames": ["*"]}}, "isOutside": true, "isRoot": true}),
        )
    };
    let mut nodes = vec![
        gateway,
        node("b2", NAMESPACE, "front-end", json!({})),
        node("c3", NAMESPACE, "business-logic", json!({})),
    ];
    let edge = |id: &str, source: &str, target: &str, protocol: &str, mtls: bool| {
        let mut data = json!({
            "id": id, "source": source, "target": target,
            "traffic": {"protocol": protocol, "rates": {"http": "0.50", "httpPercentReq": "100.0"}, "responses": {"200": {"flags": {"-": "100.0"}, "hosts": {}}}},
            "responseTime": "12"
        });
        if mtls && security_policy {
            data["isMTLS"] = json!("100");
        }
        json!({"data": data})
    };
    let mut edges = vec![
        edge("e1", "a1", "b2", "http", true),
        edge("e2", "b2", "c3", "http", !world.edge_without_mtls),
    ];
    if !world.no_postgres {
        nodes.push(node("d4", NAMESPACE, "postgres", json!({})));
        edges.push(edge("e3", "c3", "d4", "tcp", true));
    }
    HttpResponse::Ok().json(json!({
        "timestamp": 1_764_150_000, "duration": 600, "graphType": graph_type,
        "elements": {"nodes": nodes, "edges": edges}
    }))
}
