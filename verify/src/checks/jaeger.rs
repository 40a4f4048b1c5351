//! Check 2: the slow page's trace in Jaeger is one tree holding every hop, down to
//! `data_transformation`; without a mode named, the trace tells it.

use std::collections::{BTreeSet, HashMap};

use serde::Deserialize;

use super::{Answer, BUSINESS_LOGIC, Context, FRONT_END, MeshMode, Names, Outcome};

/// Jaeger's query API `GET /api/traces/{id}`: `structuredResponse`
/// (jaegertracing/jaeger cmd/query/app/http_handler.go) around its UI model
/// (internal/uimodel: `traceID`, `spans`, `processes`).
#[derive(Debug, Deserialize)]
pub struct TraceResponse {
    pub data: Vec<Trace>,
}

#[derive(Debug, Deserialize)]
pub struct Trace {
    pub spans: Vec<Span>,
    pub processes: HashMap<String, Process>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Span {
    #[serde(rename = "spanID")]
    pub span_id: String,
    pub operation_name: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(rename = "processID")]
    pub process_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Reference {
    #[serde(rename = "refType")]
    pub ref_type: String,
    #[serde(rename = "spanID")]
    pub span_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Process {
    #[serde(rename = "serviceName")]
    pub service_name: String,
}

impl Trace {
    fn service(&self, span: &Span) -> &str {
        self.processes
            .get(&span.process_id)
            .map_or("", |p| p.service_name.as_str())
    }

    fn has_service(&self, service: &str) -> bool {
        self.spans.iter().any(|s| self.service(s) == service)
    }

    /// A span's parents: CHILD_OF (FOLLOWS_FROM links may point at other
    /// traces and do not make the tree).
    fn parents(span: &Span) -> impl Iterator<Item = &str> {
        span.references
            .iter()
            .filter(|r| r.ref_type == "CHILD_OF")
            .map(|r| r.span_id.as_str())
    }
}

pub fn run(cx: &mut Context) -> Outcome {
    let trace_id = match cx.trace_id() {
        Ok(id) => id,
        Err(not_checked) => return not_checked,
    };
    let path = format!("/jaeger/api/traces/{trace_id}");
    let poll = cx.poll;
    let outcome = poll.until_ok(|| {
        let answer: Answer<TraceResponse> = cx.get(&path, &[]);
        if !cx.mode_known
            && let Some(shown) = answer
                .body
                .as_ref()
                .ok()
                .and_then(|t| mode_from_trace(t, &cx.names))
        {
            cx.names.mode = shown;
        }
        judge(&answer, &trace_id, &cx.names)
    });
    if !cx.mode_known {
        println!("  mesh mode {} (from the trace)", cx.names.mode.as_str());
    }
    outcome
}

/// The mesh mode a trace shows: ambient when the waypoint made spans, sidecar
/// when a sidecar did, `None` when neither (the checks then name the gap).
pub fn mode_from_trace(body: &TraceResponse, names: &Names) -> Option<MeshMode> {
    let trace = body.data.first()?;
    if trace.has_service(&names.waypoint_service()) {
        Some(MeshMode::Ambient)
    } else if trace.has_service(&names.sidecar(FRONT_END))
        || trace.has_service(&names.sidecar(BUSINESS_LOGIC))
    {
        Some(MeshMode::Sidecar)
    } else {
        None
    }
}

/// One trace: its spans form one tree (every reference resolves inside the
/// trace, one root) and hold every hop, down to `data_transformation`.
pub fn judge(answer: &Answer<TraceResponse>, trace_id: &str, names: &Names) -> Outcome {
    let ns = &names.namespace;
    let jaeger_logs = "kubectl -n istio-system logs deploy/jaeger";
    let trace = match (answer.status, &answer.body) {
        (200, Ok(body)) if body.data.first().is_some_and(|t| !t.spans.is_empty()) => &body.data[0],
        (404 | 200, _) => {
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

    let services: BTreeSet<&str> = trace.spans.iter().map(|s| trace.service(s)).collect();
    let has = |name: &str| services.contains(name);
    let gateway = services.iter().find(|s| super::is_gateway_service(s));
    let fe_sidecar = names.sidecar(FRONT_END);
    let bl_sidecar = names.sidecar(BUSINESS_LOGIC);
    let transformation = trace
        .spans
        .iter()
        .any(|s| s.operation_name == "data_transformation" && trace.service(s) == BUSINESS_LOGIC);
    let seen = services.iter().copied().collect::<Vec<_>>().join(", ");

    let ids: BTreeSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    let roots = trace
        .spans
        .iter()
        .filter(|s| Trace::parents(s).next().is_none())
        .count();
    let dangling: Vec<&Span> = trace
        .spans
        .iter()
        .filter(|s| Trace::parents(s).any(|p| !ids.contains(p)))
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
    if !dangling.is_empty() || roots > 1 {
        let pieces = roots + dangling.len();
        let orphans: BTreeSet<&str> = dangling.iter().map(|s| trace.service(s)).collect();
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
    let Some(gateway) = gateway else {
        return Outcome::fail(
            format!("trace {trace_id} has no span from the ingress gateway (services: {seen})"),
            "the gateway does not trace: the mesh's tracing provider or sampling (Telemetry mesh-default), or the request bypassed the gateway",
            &[
                "kubectl -n istio-system get telemetry mesh-default -o yaml",
                "kubectl -n istio-system get cm istio -o yaml | grep -A6 extensionProviders",
            ],
        );
    };
    // The hops in the order a request takes them.
    let hops: Vec<&str> = names.mode.pick(
        vec![&fe_sidecar, FRONT_END, &bl_sidecar, BUSINESS_LOGIC],
        vec![FRONT_END, &waypoint, BUSINESS_LOGIC],
    );
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
            names.mode.pick(
                "that part's spans do not reach Jaeger: a pod without its sidecar, or a service that does not export (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT)",
                "that part's spans do not reach Jaeger: a service that does not export (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT), or the waypoint's tracing",
            ),
            &[
                &format!("kubectl -n {ns} get pods"),
                &format!(
                    "kubectl -n {ns} logs -l app=business-logic --prefix --tail=-1 | grep 'span export'"
                ),
            ],
        );
    }
    Outcome::pass(format!(
        "trace {trace_id} is one tree of {} spans: {gateway} → {} → data_transformation",
        trace.spans.len(),
        hops.join(" → ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::testdata::{TRACE_ID, answer, assert_outcome, names};

    #[test]
    fn each_recorded_trace_is_judged_as_its_mesh_shows_it() {
        use MeshMode::{Ambient, Sidecar};
        #[rustfmt::skip]
        let cases: [(&str, u16, MeshMode, bool, &[&str]); 11] = [
            ("trace-sidecar.json", 200, Sidecar, true, &["is one tree of 9 spans: istio-ingressgateway.istio-system → front-end.demo-app → front-end → business-logic.demo-app → business-logic → data_transformation"]),
            ("trace-ambient.json", 200, Ambient, true, &["is one tree of 7 spans: app-gateway-istio.demo-app → front-end → waypoint.demo-app → business-logic → data_transformation"]),
            ("trace-not-found.json", 404, Sidecar, false, &["Jaeger has no trace", "Zipkin receiver on 9411"]),
            ("trace-not-found.json", 503, Sidecar, false, &["Jaeger query API: 503", "kubectl -n istio-system get pods -l app=jaeger"]),
            ("trace-no-sidecars.json", 200, Sidecar, false, &["has no sidecar spans", "kubectl get ns demo-app --show-labels"]),
            ("trace-split.json", 200, Sidecar, false, &["falls apart in 2 pieces: spans of business-logic.demo-app refer to parent spans that are not in the trace", "drops or rewrites the span context"]),
            ("trace-no-business-logic.json", 200, Sidecar, false, &["front-end spans but none from business-logic", "propagation between front-end and business-logic"]),
            ("trace-no-gateway.json", 200, Sidecar, false, &["has no span from the ingress gateway", "extensionProviders"]),
            ("trace-ambient-no-waypoint.json", 200, Ambient, false, &["has no span from the waypoint waypoint.demo-app", "kubectl -n demo-app get gateway waypoint", "kubectl -n demo-app get svc business-logic --show-labels   # istio.io/use-waypoint"]),
            // The wrong mode asked, both ways round.
            ("trace-ambient.json", 200, Sidecar, false, &["waypoint spans and no sidecar spans", "make verify MESH_MODE=ambient"]),
            ("trace-sidecar.json", 200, Ambient, false, &["has sidecar spans in ambient mode", "kubectl -n demo-app rollout restart deployment"]),
        ];
        for (file, status, mode, ok, needles) in cases {
            let answer = answer(status, &format!("jaeger/{file}"));
            let outcome = judge(&answer, TRACE_ID, &names(mode));
            assert_outcome(&format!("{file} {status} {mode:?}"), &outcome, ok, needles);
        }
    }

    #[test]
    fn the_trace_shows_the_mode_by_its_proxies_spans() {
        let cases = [
            ("trace-sidecar.json", Some(MeshMode::Sidecar)),
            ("trace-ambient.json", Some(MeshMode::Ambient)),
            ("trace-no-sidecars.json", None),
        ];
        for (file, mode) in cases {
            let body = answer::<TraceResponse>(200, &format!("jaeger/{file}"))
                .body
                .unwrap();
            assert_eq!(
                mode_from_trace(&body, &names(MeshMode::Sidecar)),
                mode,
                "{file}"
            );
        }
    }
}
