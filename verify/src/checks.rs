//! What each check makes of the answers of the real APIs: pure functions
//! from the JSON the gateway URL returned to an [`Outcome`] with, when it
//! fails, the likely cause and the commands to look closer.
//!
//! Formats (as the tools serve them today):
//! - Jaeger query API `GET /api/traces/{id}`: `{"data": [{"traceID", "spans":
//!   [{"spanID", "operationName", "references": [{"refType": "CHILD_OF",
//!   "spanID"}], "processID", "tags"}], "processes": {"p1": {"serviceName"}}}]}`.
//! - Loki `GET /loki/api/v1/query_range`: `{"status": "success", "data":
//!   {"resultType": "streams", "result": [{"stream": {labels}, "values":
//!   [["<ns>", "<line>"]]}]}}`.
//! - Prometheus `GET /api/v1/query`: `{"status": "success", "data":
//!   {"resultType": "vector", "result": [{"metric": {labels}, "value": [<t>, "<v>"]}]}}`.
//! - Kiali `GET /api/namespaces/graph?graphType=versionedApp`: `{"elements":
//!   {"nodes": [{"data": {"id", "nodeType", "namespace", "app", "version",
//!   "workload", "isGateway", "isBox", "parent"}}], "edges": [{"data":
//!   {"source", "target", "traffic": {"protocol"}, "isMTLS": "<percent>"}}]}}`:
//!   a node per app and version (`nodeType: app`; `app` and `version` from the
//!   pods' labels, through Istio's canonical service and revision), and a box
//!   node (`nodeType: box`, `isBox: app`, no edges) around an app's versions.
//! - Jaeger's metrics API (the Monitor tab's) `GET /api/metrics/calls`: a
//!   `MetricFamily` as gogo/jsonpb writes it (Jaeger v2.20.0,
//!   `internal/proto/metrics/openmetrics.proto`): `{"name":
//!   "service_operation_call_rate", "type": "GAUGE", "metrics": [{"labels":
//!   [{"name": "service_name", "value"}, {"name": "operation", "value"}],
//!   "metricPoints": [{"gaugeValue": {"doubleValue": 0.5}, "timestamp"}]}]}`
//!   (a NaN is the string `"NaN"`); errors `{"errors": [{"code", "msg"}]}`,
//!   501 when no metrics backend is configured.
//! - The gateway's Envoy access log lines in Loki (labels `log_type="access"`
//!   and `gateway`, set by Alloy: istio-add-ons/alloy-values.yaml), each a
//!   JSON object in the mesh's format (istio-add-ons/istio-operator.yaml):
//!   `{"trace_id", "method", "path", "response_code", "duration", ...}`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde_json::Value;

/// The result of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub ok: bool,
    /// One line: what was found.
    pub summary: String,
    /// For a failure: the part that is most likely broken.
    pub cause: Option<String>,
    /// For a failure: commands that show more.
    pub look: Vec<String>,
}

impl Outcome {
    pub fn pass(summary: impl Into<String>) -> Self {
        Self {
            ok: true,
            summary: summary.into(),
            cause: None,
            look: Vec::new(),
        }
    }

    pub fn fail(summary: impl Into<String>, cause: impl Into<String>, look: &[&str]) -> Self {
        Self {
            ok: false,
            summary: summary.into(),
            cause: Some(cause.into()),
            look: look.iter().map(|s| (*s).to_owned()).collect(),
        }
    }
}

/// The data plane the app namespace runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeshMode {
    /// An Envoy sidecar in every pod (label `istio-injection=enabled`).
    Sidecar,
    /// ztunnel on every node for L4 and mTLS, a waypoint proxy for L7
    /// (label `istio.io/dataplane-mode=ambient`).
    Ambient,
}

impl MeshMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sidecar => "sidecar",
            Self::Ambient => "ambient",
        }
    }
}

/// Names the checks need: the app namespace, its mesh mode and, in ambient
/// mode, the waypoint's name.
#[derive(Debug, Clone)]
pub struct Names {
    pub namespace: String,
    pub mode: MeshMode,
    /// The waypoint (a Gateway of class `istio-waypoint`) business-logic is
    /// bound to; Istio deploys it as Deployment `<name>`.
    pub waypoint: String,
}

pub const FRONT_END: &str = contract::routes::front_end::SERVICE_NAME;
pub const BUSINESS_LOGIC: &str = contract::routes::business_logic::SERVICE_NAME;
pub const POSTGRES: &str = "postgres";

impl Names {
    /// Istio names a sidecar's spans `<app label>.<namespace>` (the proxy
    /// config's default `tracingServiceName: APP_LABEL_AND_NAMESPACE`).
    fn sidecar(&self, app: &str) -> String {
        format!("{app}.{}", self.namespace)
    }

    /// Istio's own ingress gateway (`istio-ingressgateway.istio-system`), or
    /// the one Istio deploys for a Gateway API `Gateway` (`<name>-istio`).
    fn is_gateway_service(&self, service: &str) -> bool {
        let app = service.split('.').next().unwrap_or(service);
        app.starts_with("istio-ingressgateway") || app.ends_with("-istio")
    }

    fn ns(&self) -> &str {
        &self.namespace
    }

    /// The waypoint's spans: its pods carry no `app` label, so Istio names
    /// them after the Deployment (`<workload>.<namespace>`, istio/istio
    /// pkg/bootstrap/config.go, `serviceClusterOrDefault`).
    fn waypoint_service(&self) -> String {
        format!("{}.{}", self.waypoint, self.namespace)
    }
}

/// The mesh mode a trace shows: ambient when the waypoint made spans, sidecar
/// when a sidecar did, `None` when neither (the checks then name the gap).
pub fn mode_from_trace(body: &Value, names: &Names) -> Option<MeshMode> {
    let spans = jaeger_spans(body)?;
    let has = |service: &str| spans.iter().any(|s| s.service == service);
    if has(&names.waypoint_service()) {
        Some(MeshMode::Ambient)
    } else if has(&names.sidecar(FRONT_END)) || has(&names.sidecar(BUSINESS_LOGIC)) {
        Some(MeshMode::Sidecar)
    } else {
        None
    }
}

// ---------------------------------------------------------------- 1. pages

/// The landing page: 200 with both buttons.
pub fn landing_page(status: u16, body: &str, names: &Names) -> Outcome {
    let buttons = ["id=\"fast-page\"", "id=\"slow-page\""];
    if status == 200 && buttons.iter().all(|b| body.contains(b)) {
        return Outcome::pass("landing page answers with the Fast page and Slow page buttons");
    }
    let ns = names.ns();
    let pods = format!("kubectl -n {ns} get pods");
    let routes = format!("kubectl -n {ns} get gateway,virtualservice,httproute");
    match status {
        200 => Outcome::fail(
            "landing page answers 200 but without both buttons",
            "something else answers under /demo-app/: the gateway routes it elsewhere",
            &[&routes],
        ),
        404 => Outcome::fail(
            "landing page: 404",
            "the gateway has no route for /demo-app/ (the app chart is not installed, or its Gateway/route is not accepted), or something else answers at this port (make run?)",
            &[&routes, "make helm-app"],
        ),
        502..=504 => Outcome::fail(
            format!("landing page: {status} (no healthy upstream?)"),
            "the gateway has no ready front-end pod",
            &[&pods, &format!("kubectl -n {ns} describe deploy/front-end")],
        ),
        _ => Outcome::fail(
            format!("landing page: {status}"),
            "the front-end or the gateway in front of it",
            &[&pods, &format!("kubectl -n {ns} logs deploy/front-end")],
        ),
    }
}

/// Reads `00-<trace id>-<span id>-<flags>`; `None` when malformed.
pub fn parse_traceresponse(value: &str) -> Option<String> {
    let parts: Vec<&str> = value.trim().split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        [version, trace, span, flags]
            if hex(version, 2)
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && trace.bytes().any(|b| b != b'0') =>
        {
            Some(trace.to_ascii_lowercase())
        }
        _ => None,
    }
}

// ---------------------------------------------------------------- 2. Jaeger

#[derive(Debug)]
struct JSpan {
    id: String,
    parents: Vec<String>,
    service: String,
    operation: String,
}

fn jaeger_spans(body: &Value) -> Option<Vec<JSpan>> {
    let trace = body.get("data")?.as_array()?.first()?;
    let processes = trace.get("processes")?.as_object()?;
    let spans = trace.get("spans")?.as_array()?;
    let service_of = |pid: &str| {
        processes
            .get(pid)
            .and_then(|p| p.get("serviceName"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    Some(
        spans
            .iter()
            .map(|s| JSpan {
                id: str_of(s, "spanID"),
                // The parent: CHILD_OF (FOLLOWS_FROM links may point at
                // other traces and do not make the tree).
                parents: s
                    .get("references")
                    .and_then(Value::as_array)
                    .map(|refs| {
                        refs.iter()
                            .filter(|r| {
                                r.get("refType")
                                    .and_then(Value::as_str)
                                    .unwrap_or("CHILD_OF")
                                    == "CHILD_OF"
                            })
                            .map(|r| str_of(r, "spanID"))
                            .collect()
                    })
                    .unwrap_or_default(),
                service: service_of(&str_of(s, "processID")),
                operation: str_of(s, "operationName"),
            })
            .collect(),
    )
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// One trace: its spans form one tree (every reference resolves inside the
/// trace, one root) and hold every hop, down to `data_transformation`.
/// `status` is the HTTP status of `/jaeger/api/traces/<id>`.
pub fn jaeger_trace(status: u16, body: &Value, trace_id: &str, names: &Names) -> Outcome {
    let ns = names.ns();
    let jaeger_logs = "kubectl -n istio-system logs deploy/jaeger";
    let spans = match (status, jaeger_spans(body)) {
        (200, Some(spans)) if !spans.is_empty() => spans,
        (404, _) | (200, _) => {
            return Outcome::fail(
                format!("Jaeger has no trace {trace_id}"),
                "no span of that request reached Jaeger: neither the gateway's (the mesh's zipkin tracing provider, to Jaeger's Zipkin receiver on 9411) nor the services' (OTLP to Jaeger's collector on 4318)",
                &[
                    jaeger_logs,
                    "kubectl -n istio-system get telemetry mesh-default -o yaml",
                    &format!("kubectl -n {ns} logs deploy/front-end | grep 'span export'"),
                ],
            );
        }
        (status, _) => {
            return Outcome::fail(
                format!("Jaeger query API: {status} at /jaeger/api/traces/{trace_id}"),
                "Jaeger (or the gateway's /jaeger route) is not serving its query API",
                &[
                    "kubectl -n istio-system get pods -l app=jaeger",
                    jaeger_logs,
                ],
            );
        }
    };

    let services: BTreeSet<&str> = spans.iter().map(|s| s.service.as_str()).collect();
    let has = |name: &str| services.contains(name);
    let gateway = services
        .iter()
        .find(|s| names.is_gateway_service(s))
        .map(|s| s.to_string());
    let fe_sidecar = names.sidecar(FRONT_END);
    let bl_sidecar = names.sidecar(BUSINESS_LOGIC);
    let transformation = spans
        .iter()
        .any(|s| s.operation == "data_transformation" && s.service == BUSINESS_LOGIC);
    let seen = services.iter().copied().collect::<Vec<_>>().join(", ");

    let ids: BTreeSet<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    let roots: Vec<&JSpan> = spans.iter().filter(|s| s.parents.is_empty()).collect();
    let dangling: Vec<&JSpan> = spans
        .iter()
        .filter(|s| s.parents.iter().any(|p| !ids.contains(p.as_str())))
        .collect();

    let waypoint = names.waypoint_service();
    let sidecars = has(&fe_sidecar) || has(&bl_sidecar);
    let services_seen = has(FRONT_END) || has(BUSINESS_LOGIC);
    if names.mode == MeshMode::Ambient && sidecars {
        return Outcome::fail(
            format!("trace {trace_id} has sidecar spans in ambient mode (services: {seen})"),
            "the pods still run sidecars: the namespace keeps istio-injection=enabled, or its pods predate the switch \
             to ambient (restart them)",
            &[
                &format!(
                    "kubectl get ns {ns} --show-labels   # istio.io/dataplane-mode=ambient, no istio-injection"
                ),
                &format!("kubectl -n {ns} rollout restart deployment"),
            ],
        );
    }
    if names.mode == MeshMode::Ambient && !has(&waypoint) && services_seen {
        return Outcome::fail(
            format!("trace {trace_id} has no span from the waypoint {waypoint} (services: {seen})"),
            format!(
                "the calls to {BUSINESS_LOGIC} bypass the waypoint: no waypoint Gateway `{}`, {BUSINESS_LOGIC}'s Service \
                 not bound to it (label istio.io/use-waypoint), or the namespace not enrolled in ambient \
                 (istio.io/dataplane-mode=ambient)",
                names.waypoint
            ),
            &[
                &format!("kubectl -n {ns} get gateway {}", names.waypoint),
                &format!(
                    "kubectl -n {ns} get svc {BUSINESS_LOGIC} --show-labels   # istio.io/use-waypoint"
                ),
                &format!("kubectl get ns {ns} --show-labels"),
                &format!("istioctl ztunnel-config workloads | grep {ns}   # PROTOCOL HBONE"),
            ],
        );
    }
    if names.mode == MeshMode::Sidecar && !sidecars && has(&waypoint) {
        return Outcome::fail(
            format!("trace {trace_id} has waypoint spans and no sidecar spans (services: {seen})"),
            "the namespace runs in ambient mode: check it as such (make verify MESH_MODE=ambient)",
            &[&format!("kubectl get ns {ns} --show-labels")],
        );
    }
    if names.mode == MeshMode::Sidecar && !sidecars && services_seen {
        return Outcome::fail(
            format!("trace {trace_id} has no sidecar spans (services: {seen})"),
            "the pods run without Istio sidecars: the namespace lacks sidecar injection (label istio-injection=enabled, then restart the pods), or the sidecars' tracing is off",
            &[
                &format!("kubectl get ns {ns} --show-labels"),
                &format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar"),
                "kubectl -n istio-system get telemetry mesh-default -o yaml",
            ],
        );
    }
    if has(FRONT_END) && !has(BUSINESS_LOGIC) && !has(&bl_sidecar) {
        return Outcome::fail(
            format!(
                "trace {trace_id} has front-end spans but none from business-logic (services: {seen})"
            ),
            "propagation between front-end and business-logic: the call does not carry the trace context (traceparent / x-b3-*), or it never reached business-logic",
            &[
                &format!("kubectl -n {ns} logs deploy/front-end | grep {trace_id}"),
                &format!("kubectl -n {ns} logs -l app=business-logic --prefix --tail 20"),
            ],
        );
    }
    if !dangling.is_empty() || roots.len() > 1 {
        let pieces = roots.len() + dangling.len();
        let orphans: BTreeSet<&str> = dangling.iter().map(|s| s.service.as_str()).collect();
        let orphans = orphans.into_iter().collect::<Vec<_>>().join(", ");
        return Outcome::fail(
            format!(
                "trace {trace_id} falls apart in {pieces} pieces: spans of {orphans} refer to parent spans that are not in the trace"
            ),
            "a hop drops or rewrites the span context (traceparent / x-b3-spanid), or the caller's spans were never exported",
            &[
                &format!("kubectl -n {ns} logs deploy/front-end | grep 'span export'"),
                &format!(
                    "kubectl -n {ns} logs -l app=business-logic --prefix --tail=-1 | grep 'span export'"
                ),
            ],
        );
    }
    if gateway.is_none() {
        return Outcome::fail(
            format!("trace {trace_id} has no span from the ingress gateway (services: {seen})"),
            "the gateway does not trace: the mesh's tracing provider or sampling (Telemetry mesh-default), or the request bypassed the gateway",
            &[
                "kubectl -n istio-system get telemetry mesh-default -o yaml",
                "kubectl -n istio-system get cm istio -o yaml | grep -A6 extensionProviders",
            ],
        );
    }
    // The hops in the order a request takes them.
    let hops: Vec<&str> = match names.mode {
        MeshMode::Sidecar => vec![&fe_sidecar, FRONT_END, &bl_sidecar, BUSINESS_LOGIC],
        MeshMode::Ambient => vec![FRONT_END, &waypoint, BUSINESS_LOGIC],
    };
    let missing: Vec<&str> = hops
        .iter()
        .map(|hop| (*hop, has(hop)))
        .chain([("data_transformation", transformation)])
        .filter(|(_, present)| !present)
        .map(|(name, _)| name)
        .collect();
    if !missing.is_empty() {
        let missing = missing.join(", ");
        return Outcome::fail(
            format!("trace {trace_id} lacks spans of {missing} (services: {seen})"),
            match names.mode {
                MeshMode::Sidecar => {
                    "that part's spans do not reach Jaeger: a pod without its sidecar, or a service that does not export (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT)"
                }
                MeshMode::Ambient => {
                    "that part's spans do not reach Jaeger: a service that does not export (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT), or the waypoint's tracing"
                }
            },
            &[
                &format!("kubectl -n {ns} get pods"),
                &format!(
                    "kubectl -n {ns} logs -l app=business-logic --prefix --tail=-1 | grep 'span export'"
                ),
            ],
        );
    }
    let gateway = gateway.unwrap_or_default();
    Outcome::pass(format!(
        "trace {trace_id} is one tree of {} spans: {gateway} → {} → data_transformation",
        spans.len(),
        hops.join(" → ")
    ))
}

// ---------------------------------------------------------------- 3. Loki

/// Loki holds log lines with the trace id from both services.
pub fn loki_lines(status: u16, body: &Value, trace_id: &str, names: &Names) -> Outcome {
    let ns = names.ns();
    if let Some(failed) = loki_failed(status, body) {
        return failed;
    }
    let mut lines: BTreeMap<String, usize> = BTreeMap::new();
    for stream in body
        .pointer("/data/result")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let labels = stream.get("stream");
        let label = |k: &str| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_owned)
        };
        let service = label("app")
            .or_else(|| label("container"))
            .or_else(|| label("service_name"))
            .unwrap_or_default();
        let count = stream
            .get("values")
            .and_then(Value::as_array)
            .map(|values| {
                values
                    .iter()
                    .filter(|v| {
                        v.get(1)
                            .and_then(Value::as_str)
                            .is_some_and(|l| l.contains(trace_id))
                    })
                    .count()
            })
            .unwrap_or(0);
        *lines.entry(service).or_default() += count;
    }
    let from = |s: &str| lines.get(s).copied().unwrap_or(0);
    let (fe, bl) = (from(FRONT_END), from(BUSINESS_LOGIC));
    match (fe, bl) {
        (0, 0) => Outcome::fail(
            format!("Loki has no log lines with trace id {trace_id}"),
            "Alloy is not shipping the pods' logs to Loki (or Loki rejects them)",
            &[
                "kubectl -n istio-system logs ds/alloy --tail 30",
                &format!("kubectl -n {ns} logs deploy/front-end | grep {trace_id}"),
            ],
        ),
        (_, 0) | (0, _) => {
            let missing = if fe == 0 { FRONT_END } else { BUSINESS_LOGIC };
            Outcome::fail(
                format!(
                    "Loki has log lines with trace id {trace_id} from one service only: none from {missing}"
                ),
                format!("{missing}'s lines lack the trace id, or Alloy does not read that pod"),
                &[
                    &format!("kubectl -n {ns} logs deploy/{missing} | grep {trace_id}"),
                    "kubectl -n istio-system logs ds/alloy --tail 30",
                ],
            )
        }
        _ => Outcome::pass(format!(
            "log lines with trace id {trace_id} from {FRONT_END} ({fe}) and {BUSINESS_LOGIC} ({bl})"
        )),
    }
}

/// The outcome when Loki's answer is not a successful query: Grafana without
/// the data source, or Loki not answering.
fn loki_failed(status: u16, body: &Value) -> Option<Outcome> {
    if status == 404 && body.get("message").is_some() {
        return Some(grafana_datasource_missing("loki", status, body));
    }
    (status != 200 || body.get("status").and_then(Value::as_str) != Some("success")).then(|| {
        Outcome::fail(
            format!("Loki query failed: {status} {}", error_text(body)),
            "Loki (behind Grafana's data source `loki`) does not answer queries",
            &[
                "kubectl -n istio-system get pods -l app.kubernetes.io/name=loki",
                "kubectl -n istio-system logs statefulset/loki",
            ],
        )
    })
}

fn error_text(body: &Value) -> String {
    ["error", "message"]
        .iter()
        .find_map(|k| body.get(*k).and_then(Value::as_str))
        .unwrap_or("")
        .to_owned()
}

fn grafana_datasource_missing(uid: &str, status: u16, body: &Value) -> Outcome {
    Outcome::fail(
        format!(
            "Grafana's data source proxy: {status} {} for uid `{uid}`",
            error_text(body)
        ),
        format!(
            "Grafana has no data source with uid `{uid}` (istio-add-ons/grafana/datasources.yaml)"
        ),
        &[
            "kubectl -n istio-system get cm grafana-datasources -o yaml",
            "kubectl -n istio-system logs deploy/grafana --tail 30",
        ],
    )
}

// ---------------------------------------------------------------- 4. Prometheus

/// Samples of a Prometheus instant vector: labels and value.
pub fn vector(body: &Value) -> Option<Vec<(HashMap<String, String>, f64)>> {
    if body.get("status").and_then(Value::as_str) != Some("success")
        || body.pointer("/data/resultType").and_then(Value::as_str) != Some("vector")
    {
        return None;
    }
    let result = body.pointer("/data/result")?.as_array()?;
    Some(
        result
            .iter()
            .map(|sample| {
                let labels = sample
                    .get("metric")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
                            .collect()
                    })
                    .unwrap_or_default();
                let value = sample
                    .pointer("/value/1")
                    .and_then(Value::as_str)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0.0);
                (labels, value)
            })
            .collect(),
    )
}

/// The query for the services' own request counters.
pub fn app_metrics_query(names: &Names) -> String {
    format!(
        "sum by (service) (http_requests_total{{namespace=\"{}\", service=~\"{FRONT_END}|{BUSINESS_LOGIC}\"}})",
        names.ns()
    )
}

/// The query for Istio's metric of the front-end → business-logic hop, by
/// app (the pods' `app` label), so every version counts: after `make
/// promote` the calls go to Deployment business-logic-v2, still app
/// business-logic.
pub fn istio_metrics_query(names: &Names) -> String {
    format!(
        "sum by (destination_version) (istio_requests_total{{source_app=\"{FRONT_END}\", destination_app=\"{BUSINESS_LOGIC}\", destination_workload_namespace=\"{}\"}})",
        names.ns()
    )
}

/// `v1`, `v1 and v2`: the versions named, or `""` when none is.
fn versions_text(versions: &BTreeSet<String>) -> String {
    let versions: Vec<&str> = versions
        .iter()
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .collect();
    match versions.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// Request metrics of both services, and Istio's front-end → business-logic.
/// Each argument is (HTTP status, body) of one query.
pub fn prometheus_metrics(app: (u16, &Value), istio: (u16, &Value), names: &Names) -> Outcome {
    let ns = names.ns();
    for (status, body) in [app, istio] {
        if status == 404 && body.get("message").is_some() {
            return grafana_datasource_missing("prometheus", status, body);
        }
        if status != 200 || vector(body).is_none() {
            return Outcome::fail(
                format!("Prometheus query failed: {status} {}", error_text(body)),
                "Prometheus (behind Grafana's data source `prometheus`) does not answer queries",
                &["kubectl -n istio-system logs deploy/prometheus --tail 30"],
            );
        }
    }
    let services: BTreeSet<String> = vector(app.1)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .filter_map(|(labels, _)| labels.get("service").cloned())
        .collect();
    let missing: Vec<&str> = [FRONT_END, BUSINESS_LOGIC]
        .into_iter()
        .filter(|s| !services.contains(*s))
        .collect();
    if !missing.is_empty() {
        let missing = missing.join(" and ");
        return Outcome::fail(
            format!("Prometheus has no http_requests_total from {missing}"),
            match names.mode {
                MeshMode::Sidecar => {
                    "Prometheus does not scrape the services' /metrics (the pods' prometheus.io annotations, merged by the sidecar on port 15020)"
                }
                MeshMode::Ambient => {
                    "Prometheus does not scrape the services' /metrics (the pods' prometheus.io annotations; with STRICT mTLS ztunnel refuses plain-text scrapes, so Prometheus must be enrolled in ambient itself)"
                }
            },
            &[
                &format!("kubectl -n {ns} get pods -o yaml | grep prometheus.io"),
                "kubectl -n istio-system logs deploy/prometheus --tail 30",
            ],
        );
    }
    let hop: Vec<String> = vector(istio.1)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(labels, _)| {
            labels
                .get("destination_version")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    if hop.is_empty() {
        let summary =
            format!("Prometheus has no istio_requests_total for {FRONT_END} → {BUSINESS_LOGIC}");
        return match names.mode {
            MeshMode::Sidecar => Outcome::fail(
                summary,
                "the sidecars report no Istio metrics: pods without sidecars, or Prometheus does not scrape the proxies (port 15020)",
                &[
                    &format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar"),
                    &format!("kubectl get ns {ns} --show-labels"),
                ],
            ),
            MeshMode::Ambient => Outcome::fail(
                summary,
                format!(
                    "in ambient mode the waypoint reports HTTP metrics (ztunnel only TCP ones): no waypoint `{}`, \
                     {BUSINESS_LOGIC} not bound to it, or Prometheus does not scrape it (port 15020)",
                    names.waypoint
                ),
                &[
                    &format!("kubectl -n {ns} get gateway {} -o wide", names.waypoint),
                    &format!(
                        "kubectl -n {ns} get svc {BUSINESS_LOGIC} --show-labels   # istio.io/use-waypoint"
                    ),
                ],
            ),
        };
    }
    let versions = versions_text(&hop.into_iter().collect());
    let versions = if versions.is_empty() {
        String::new()
    } else {
        format!(" ({versions})")
    };
    Outcome::pass(format!(
        "http_requests_total from {FRONT_END} and {BUSINESS_LOGIC}, istio_requests_total {FRONT_END} → {BUSINESS_LOGIC}{versions}"
    ))
}

// ---------------------------------------------------------------- 5. Kiali

#[derive(Debug)]
struct KNode {
    /// The app (what the versioned app graph groups by), else the workload.
    name: String,
    version: String,
    namespace: String,
    gateway: bool,
}

impl KNode {
    /// `business-logic v2`: the name and, when known, the version.
    fn versioned(&self) -> String {
        if self.version.is_empty() {
            self.name.clone()
        } else {
            format!("{} {}", self.name, self.version)
        }
    }
}

/// Whether PostgreSQL must appear in the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Postgres {
    /// Required when the graph has a postgres node.
    Auto,
    On,
    Off,
}

/// Kiali's versioned app graph has gateway → front-end → business-logic (→
/// postgres), nodes matched by app so that any version of business-logic
/// counts (v1, the canary v2, or v2 alone after `make promote`), and every
/// edge of those, each version's, with mTLS.
pub fn kiali_graph(status: u16, body: &Value, names: &Names, postgres: Postgres) -> Outcome {
    let ns = names.ns();
    if status != 200 || body.pointer("/elements").is_none() {
        return Outcome::fail(
            format!("Kiali's graph API: {status} {}", error_text(body)),
            "Kiali (or the gateway's /kiali route) does not serve its API",
            &["kubectl -n istio-system logs deploy/kiali --tail 30"],
        );
    }
    let mut nodes: HashMap<String, KNode> = HashMap::new();
    for node in body
        .pointer("/elements/nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let data = &node["data"];
        // An app box groups an app's versions and has no edges of its own.
        if str_of(data, "nodeType") == "box" || !str_of(data, "isBox").is_empty() {
            continue;
        }
        let name = [
            str_of(data, "app"),
            str_of(data, "workload"),
            str_of(data, "service"),
        ]
        .into_iter()
        .find(|s| !s.is_empty())
        .unwrap_or_default();
        let gateway =
            data.get("isGateway").is_some_and(|g| !g.is_null()) || names.is_gateway_service(&name);
        nodes.insert(
            str_of(data, "id"),
            KNode {
                name,
                version: str_of(data, "version"),
                namespace: str_of(data, "namespace"),
                gateway,
            },
        );
    }
    // (source name, target name) -> for each versioned edge ("front-end
    // 0.1.0 → business-logic v2"), its mTLS share in percent (the best of
    // its protocols).
    let mut edges: HashMap<(String, String), BTreeMap<String, f64>> = HashMap::new();
    // The business-logic versions front-end calls: the canary's state.
    let mut called: BTreeSet<String> = BTreeSet::new();
    // Which gateway sends to the front-end: Istio's own or a Gateway API one.
    let mut gateway_seen: Option<String> = None;
    for edge in body
        .pointer("/elements/edges")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let data = &edge["data"];
        let (Some(source), Some(target)) = (
            nodes.get(&str_of(data, "source")),
            nodes.get(&str_of(data, "target")),
        ) else {
            continue;
        };
        let mtls = data
            .get("isMTLS")
            .and_then(|v| v.as_str().and_then(|s| s.parse().ok()).or(v.as_f64()))
            .unwrap_or(0.0);
        let versioned = format!("{} → {}", source.versioned(), target.versioned());
        let source = if source.gateway {
            if target.name == FRONT_END {
                gateway_seen.get_or_insert_with(|| source.name.clone());
            }
            "gateway".to_owned()
        } else if source.namespace == ns {
            source.name.clone()
        } else {
            continue;
        };
        if target.namespace != ns {
            continue;
        }
        if source == FRONT_END && target.name == BUSINESS_LOGIC {
            called.insert(target.version.clone());
        }
        let entry = edges
            .entry((source, target.name.clone()))
            .or_default()
            .entry(versioned)
            .or_insert(0.0);
        *entry = entry.max(mtls);
    }
    let has_postgres = nodes
        .values()
        .any(|n| n.name == POSTGRES && n.namespace == ns);
    let mut wanted = vec![("gateway", FRONT_END), (FRONT_END, BUSINESS_LOGIC)];
    if postgres == Postgres::On || (postgres == Postgres::Auto && has_postgres) {
        wanted.push((BUSINESS_LOGIC, POSTGRES));
    }
    let chain = |w: &[(&str, &str)]| {
        let mut names: Vec<&str> = vec![gateway_seen.as_deref().unwrap_or("ingress gateway")];
        names.extend(w.iter().map(|(_, t)| *t));
        names.join(" → ")
    };
    for (source, target) in &wanted {
        match edges.get(&(source.to_string(), target.to_string())) {
            None => {
                return Outcome::fail(
                    format!("Kiali's graph of {ns} has no edge {source} → {target}"),
                    format!(
                        "Kiali sees no traffic {source} → {target} in Istio's metrics (last 10 min): the {}' metrics, or Kiali's Prometheus",
                        match names.mode {
                            MeshMode::Sidecar => "sidecars",
                            MeshMode::Ambient => "waypoint's and ztunnels",
                        }
                    ),
                    &[
                        &match names.mode {
                            MeshMode::Sidecar => {
                                format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar")
                            }
                            MeshMode::Ambient => {
                                format!(
                                    "istioctl ztunnel-config workloads | grep {ns}   # PROTOCOL HBONE"
                                )
                            }
                        },
                        "kubectl -n istio-system logs deploy/kiali --tail 30",
                    ],
                );
            }
            Some(versions) if versions.values().any(|mtls| *mtls <= 0.0) => {
                let plain: Vec<&str> = versions
                    .iter()
                    .filter(|(_, mtls)| **mtls <= 0.0)
                    .map(|(edge, _)| edge.as_str())
                    .collect();
                return Outcome::fail(
                    format!(
                        "Kiali: edge {source} → {target} without mTLS ({})",
                        plain.join(", ")
                    ),
                    match names.mode {
                        MeshMode::Sidecar => "traffic on that edge is plain text: the PeerAuthentication (mode STRICT) or a pod without its sidecar",
                        MeshMode::Ambient => "traffic on that edge is plain text: the namespace is not enrolled in ambient (istio.io/dataplane-mode=ambient), \
                            ztunnel is not ready on the node, or the PeerAuthentication (mode STRICT)",
                    },
                    &match names.mode {
                        MeshMode::Sidecar => vec![
                            format!("kubectl -n {ns} get peerauthentication -o yaml"),
                            format!("kubectl -n {ns} get pods   # READY 2/2 = app + sidecar"),
                        ],
                        MeshMode::Ambient => vec![
                            format!("kubectl get ns {ns} --show-labels   # istio.io/dataplane-mode=ambient"),
                            "kubectl -n istio-system get daemonset ztunnel   # READY on every node".to_owned(),
                            format!("kubectl -n {ns} get peerauthentication -o yaml"),
                        ],
                    }
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>(),
                );
            }
            Some(_) => {}
        }
    }
    let called = versions_text(&called);
    let called = if called.is_empty() {
        String::new()
    } else {
        format!(" ({BUSINESS_LOGIC} {called})")
    };
    Outcome::pass(format!("{}, every edge with mTLS{called}", chain(&wanted)))
}

// ---------------------------------------------------------------- 6. Monitor

/// Per service: the operations Jaeger's metrics API has call rates for, and
/// the latest finite rate of each (0 when every point is NaN or missing).
fn call_rates(body: &Value) -> BTreeMap<String, BTreeMap<String, f64>> {
    let mut services: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for metric in body
        .get("metrics")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let label = |name: &str| {
            metric
                .get("labels")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|l| l.get("name").and_then(Value::as_str) == Some(name))
                .and_then(|l| l.get("value").and_then(Value::as_str))
                .unwrap_or("")
                .to_owned()
        };
        let latest = metric
            .get("metricPoints")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.pointer("/gaugeValue/doubleValue").and_then(Value::as_f64))
            .rfind(|v| v.is_finite())
            .unwrap_or(0.0);
        services
            .entry(label("service_name"))
            .or_default()
            .insert(label("operation"), latest);
    }
    services
}

/// Jaeger's Monitor tab has call rates (from its span metrics) for both
/// services' server spans.
pub fn span_metrics(status: u16, body: &Value) -> Outcome {
    let jaeger_logs = "kubectl -n istio-system logs deploy/jaeger --tail 30";
    let message = body
        .pointer("/errors/0/msg")
        .and_then(Value::as_str)
        .map_or_else(|| error_text(body), str::to_owned);
    match status {
        200 => {}
        501 => {
            return Outcome::fail(
                format!("Jaeger's metrics API: 501 {message}"),
                "Jaeger has no metrics backend: jaeger_query.storage.metrics and jaeger_storage.metric_backends \
                 (istio-add-ons/jaeger.yaml) are not in the running configuration",
                &[
                    "kubectl -n istio-system get configmap jaeger -o yaml | grep -n -A4 metric",
                    "make create-cluster",
                ],
            );
        }
        404 => {
            return Outcome::fail(
                format!("Jaeger's metrics API: 404 at /jaeger/api/metrics/calls {message}"),
                "the Jaeger at /jaeger has no metrics API (another version or base path than istio-add-ons/jaeger.yaml)",
                &["kubectl -n istio-system get deploy jaeger -o wide"],
            );
        }
        _ => {
            return Outcome::fail(
                format!("Jaeger's metrics API: {status} {message}"),
                "Jaeger cannot read its span metrics back from Prometheus (metric_backends' endpoint)",
                &[jaeger_logs, "kubectl -n istio-system get svc prometheus"],
            );
        }
    }
    let services = call_rates(body);
    let missing: Vec<&str> = [FRONT_END, BUSINESS_LOGIC]
        .into_iter()
        .filter(|s| services.get(*s).is_none_or(BTreeMap::is_empty))
        .collect();
    if !missing.is_empty() {
        let (cause, look): (&str, &[&str]) = if services.is_empty() {
            (
                "no span metrics at all: Jaeger's traces pipeline does not feed the spanmetrics connector, \
                 or Prometheus does not scrape its exporter (job jaeger-span-metrics); \
                 they appear within a minute of the first pages",
                &[
                    "open http://localhost:8080/prometheus/targets   # the Jaeger span metrics target is up",
                    jaeger_logs,
                ],
            )
        } else {
            (
                "span metrics exist, but not for these services: their server spans do not reach Jaeger \
                 (see 2. Jaeger), or their service.name differs",
                &[jaeger_logs],
            )
        };
        return Outcome::fail(
            format!(
                "Jaeger's Monitor tab has no call rates for {} (it has: {})",
                missing.join(" and "),
                if services.is_empty() {
                    "none".to_owned()
                } else {
                    services.keys().cloned().collect::<Vec<_>>().join(", ")
                }
            ),
            cause,
            look,
        );
    }
    let describe = |service: &str| {
        let operations = &services[service];
        let rate: f64 = operations.values().sum();
        format!(
            "{service} ({} operation{}, {rate:.2} req/s)",
            operations.len(),
            if operations.len() == 1 { "" } else { "s" }
        )
    };
    Outcome::pass(format!(
        "span metrics in Jaeger's Monitor tab: {} and {}",
        describe(FRONT_END),
        describe(BUSINESS_LOGIC)
    ))
}

// ---------------------------------------------------------------- 7. access log

/// The LogQL stream selector of the ingress gateway's access log lines.
pub const GATEWAY_ACCESS_LOG: &str = r#"{log_type="access", gateway!=""}"#;

/// The first access log line in a Loki answer that carries `trace_id`, with
/// its stream's `gateway` label; `None` when there is none.
fn access_line(body: &Value, trace_id: Option<&str>) -> Option<(String, Value)> {
    body.pointer("/data/result")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find_map(|stream| {
            let gateway = stream
                .pointer("/stream/gateway")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned();
            stream
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|v| v.get(1).and_then(Value::as_str))
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .find(|line| {
                    trace_id
                        .is_none_or(|id| line.get("trace_id").and_then(Value::as_str) == Some(id))
                })
                .map(|line| (gateway.clone(), line))
        })
}

/// A field of an access log line as text: Envoy writes numbers for some
/// operators (`response_code`, `duration`) and strings for the rest.
fn field(line: &Value, key: &str) -> String {
    match line.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => "-".to_owned(),
    }
}

/// The gateway's access log line for the slow page's trace: `traced` is
/// Loki's answer to [`GATEWAY_ACCESS_LOG`] `|= "<trace id>"`, `recent` (asked
/// only when `traced` has none) its answer to the selector alone, which tells
/// "no access log at all" from "access log lines without this trace id".
pub fn gateway_access_log(
    traced: (u16, &Value),
    recent: Option<(u16, &Value)>,
    trace_id: &str,
    names: &Names,
) -> Outcome {
    let ns = names.ns();
    let (status, body) = traced;
    if let Some(failed) = loki_failed(status, body) {
        return failed;
    }
    if let Some((gateway, line)) = access_line(body, Some(trace_id)) {
        return Outcome::pass(format!(
            "gateway {gateway}: \"{} {}\" {} in {} ms, trace_id {trace_id}",
            field(&line, "method"),
            field(&line, "path"),
            field(&line, "response_code"),
            field(&line, "duration"),
        ));
    }
    let gateway_logs = [
        "kubectl -n istio-system get telemetry mesh-default -o yaml   # accessLogging: provider envoy-json",
        &format!(
            "kubectl -n {ns} logs -l gateway.networking.k8s.io/gateway-name -c istio-proxy --tail 3"
        ),
    ];
    let recent_line = recent
        .filter(|(status, body)| {
            *status == 200 && body.get("status").and_then(Value::as_str) == Some("success")
        })
        .and_then(|(_, body)| access_line(body, None));
    match recent_line {
        None => Outcome::fail(
            "Loki has no access log lines from the ingress gateway",
            "Envoy access logging is off (the Telemetry `mesh-default` selects no access log provider, \
             or the mesh config lacks it: make create-cluster), or Alloy does not label the lines \
             (log_type=\"access\", gateway)",
            &[
                gateway_logs[0],
                gateway_logs[1],
                "kubectl -n istio-system logs ds/alloy --tail 30",
            ],
        ),
        Some((gateway, line)) => match line.get("trace_id").and_then(Value::as_str) {
            Some(other) if other.len() == 32 && other.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Outcome::fail(
                    format!(
                        "gateway {gateway}'s access log has no line with trace id {trace_id} (a recent one has {other})"
                    ),
                    "the gateway's trace id is not the one the front-end reports: a hop between them starts a new trace \
                     (see 2. Jaeger), or the line has not reached Loki yet",
                    &gateway_logs,
                )
            }
            _ => Outcome::fail(
                format!(
                    "gateway {gateway}'s access log lines carry no trace id (trace_id: {})",
                    field(&line, "trace_id")
                ),
                "the access log format lacks %TRACE_ID% (mesh config, extension provider envoy-json), \
                 or the gateway does not trace (the Telemetry's tracing)",
                &gateway_logs,
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceresponse_values_are_read_strictly() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            parse_traceresponse(&format!("00-{trace}-00f067aa0ba902b7-01")).as_deref(),
            Some(trace)
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        ] {
            assert_eq!(parse_traceresponse(bad), None, "{bad}");
        }
    }
}
