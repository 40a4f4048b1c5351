use std::time::Duration;

use test_support::collector::Span;
use test_support::http::traceresponse;

use crate::helpers::{Stack, trace_id_on};

const EXPORT_WAIT: Duration = Duration::from_secs(15);

fn kind<'a>(spans: &'a [Span], service: &str, kind: &str) -> Option<&'a Span> {
    spans
        .iter()
        .find(|s| s.service_name == service && s.kind.as_deref() == Some(kind))
}

/// front-end SERVER → front-end CLIENT → business-logic SERVER → data_transformation.
fn assert_one_tree(spans: &[Span]) -> (Span, Span) {
    let fe_server = kind(spans, "front-end", "SERVER").expect("front-end SERVER span");
    let fe_client = kind(spans, "front-end", "CLIENT").expect("front-end CLIENT span");
    let bl_server = kind(spans, "business-logic", "SERVER").expect("business-logic SERVER span");
    let transformation = spans
        .iter()
        .find(|s| s.name == "data_transformation")
        .expect("data_transformation span");
    assert_eq!(fe_client.parent_id.as_deref(), Some(fe_server.id.as_str()));
    assert_eq!(bl_server.parent_id.as_deref(), Some(fe_client.id.as_str()));
    assert_eq!(
        transformation.parent_id.as_deref(),
        Some(bl_server.id.as_str())
    );
    assert_eq!(transformation.service_name, "business-logic");
    assert_eq!(fe_server.name.to_lowercase(), "get /slow-page");
    assert_eq!(fe_client.name, "GET /slow-endpoint");
    (fe_server.clone(), bl_server.clone())
}

fn complete(spans: &[Span]) -> bool {
    kind(spans, "front-end", "SERVER").is_some()
        && kind(spans, "front-end", "CLIENT").is_some()
        && kind(spans, "business-logic", "SERVER").is_some()
        && spans.iter().any(|s| s.name == "data_transformation")
}

/// Opens the slow page and waits for its whole trace at the collector:
/// the trace id the page shows, and the trace's spans.
async fn slow_page_trace(stack: &Stack) -> (String, Vec<Span>) {
    let (status, page) = stack.page("/slow-page").await;
    assert_eq!(status, 200);
    let trace_id = trace_id_on(&page);
    let spans = stack
        .collector
        .wait_for_trace(&trace_id, EXPORT_WAIT, complete);
    (trace_id, spans)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trace_id_on_the_slow_page_is_one_tree_across_both_services() {
    let stack = Stack::start(&[]).await;
    let (trace_id, spans) = slow_page_trace(&stack).await;
    let (fe_server, _) = assert_one_tree(&spans);
    assert_eq!(
        fe_server.parent_id, None,
        "a fresh trace starts at the front-end"
    );
    // Both services log that request with the same trace id.
    let needle = format!("trace_id={trace_id}");
    assert!(
        stack
            .front
            .logs()
            .iter()
            .any(|l| l.contains(&needle) && l.contains("slow page rendered"))
    );
    let backend = stack.backend.as_ref().unwrap();
    assert!(
        backend
            .logs()
            .iter()
            .any(|l| l.contains(&needle) && l.contains("catalog summarised"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn b3_headers_from_the_ingress_gateway_continue_the_trace_end_to_end() {
    let stack = Stack::start(&[]).await;
    let (gateway_trace, gateway_span) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let response = stack
        .client
        .get(stack.front.url("/slow-page"))
        .header("x-b3-traceid", gateway_trace)
        .header("x-b3-spanid", gateway_span)
        .header("x-b3-sampled", "1")
        .header("x-request-id", "gw-req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert_eq!(trace_id_on(&page), gateway_trace);
    let spans = stack
        .collector
        .wait_for_trace(gateway_trace, EXPORT_WAIT, complete);
    let (fe_server, bl_server) = assert_one_tree(&spans);
    assert_eq!(fe_server.parent_id.as_deref(), Some(gateway_span));
    assert_eq!(fe_server.tags["x_request_id"], "gw-req-42");
    assert_eq!(
        bl_server.tags["x_request_id"], "gw-req-42",
        "business-logic sees the same x-request-id"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_traceresponse_header_names_the_pages_trace_and_the_front_ends_server_span() {
    let stack = Stack::start(&[]).await;
    let response = stack.get("/slow-page").await;
    assert_eq!(response.status(), 200);
    let (trace_id, span_id, flags) = traceresponse(&response);
    let page = response.text().await.unwrap();
    assert_eq!(trace_id, trace_id_on(&page), "header and page agree");
    assert_eq!(flags, "01", "every request is sampled");
    let spans = stack
        .collector
        .wait_for_trace(&trace_id, EXPORT_WAIT, complete);
    let (fe_server, _) = assert_one_tree(&spans);
    assert_eq!(
        fe_server.id, span_id,
        "the header's span is the front-end's SERVER span"
    );

    // A gateway's B3 context: the header continues the caller's trace.
    let gateway_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = stack
        .client
        .get(stack.front.url("/"))
        .header("x-b3-traceid", gateway_trace)
        .header("x-b3-spanid", "00f067aa0ba902b7")
        .header("x-b3-sampled", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(traceresponse(&response).0, gateway_trace);

    // Error pages carry it too, each with a trace of its own.
    let missing = stack.get("/no-such-page").await;
    assert_eq!(missing.status(), 404);
    let (missing_trace, _, _) = traceresponse(&missing);
    assert_ne!(missing_trace, trace_id);
    assert_ne!(missing_trace, gateway_trace);
}

/// The default export, OTLP: one tree, every span carrying its service's
/// resource (name, version, namespace and what OTEL_RESOURCE_ATTRIBUTES
/// adds, as the chart does on the cluster from the downward API).
#[tokio::test(flavor = "multi_thread")]
async fn the_slow_pages_otlp_trace_carries_each_services_resource() {
    let k8s = |pod: &str| {
        format!(
            "k8s.namespace.name=demo,k8s.pod.name={pod},k8s.node.name=kind-worker,service.name=not-this"
        )
    };
    let stack = Stack::start_with(
        &[("OTEL_RESOURCE_ATTRIBUTES", &k8s("business-logic-v1-5d8f"))],
        &[("OTEL_RESOURCE_ATTRIBUTES", &k8s("front-end-7c9b"))],
        None,
    )
    .await;
    let (_, spans) = slow_page_trace(&stack).await;
    assert_one_tree(&spans);
    for span in &spans {
        assert_eq!(span.protocol, "otlp", "OTLP is the default: {span:#?}");
        let resource = &span.resource;
        let (pod, version) = match span.service_name.as_str() {
            "front-end" => ("front-end-7c9b", env!("CARGO_PKG_VERSION")),
            "business-logic" => ("business-logic-v1-5d8f", "v1"),
            other => panic!("span of {other}: {span:#?}"),
        };
        assert_eq!(
            resource["service.name"], span.service_name,
            "OTEL_SERVICE_NAME wins"
        );
        assert_eq!(resource["service.version"], version, "{resource:?}");
        assert_eq!(resource["service.namespace"], telemetry::SERVICE_NAMESPACE);
        assert_eq!(resource["k8s.pod.name"], pod);
        assert_eq!(resource["k8s.namespace.name"], "demo");
        assert_eq!(resource["k8s.node.name"], "kind-worker");
    }
}

/// The mesh keeps B3: through a stand-in gateway and sidecar that read and
/// write B3 and report Zipkin spans (as Istio's zipkin provider does), the
/// proxies' spans and the services' OTLP spans form one tree.
#[tokio::test(flavor = "multi_thread")]
async fn through_b3_proxies_the_mesh_and_the_services_form_one_tree() {
    let stack = Stack::start_meshed().await;
    let gateway = stack.gateway.as_ref().unwrap();
    let response = stack
        .client
        .get(format!("{}/slow-page", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let trace_id = trace_id_on(&response.text().await.unwrap());
    let by_service =
        |spans: &[Span], service: &str| spans.iter().find(|s| s.service_name == service).cloned();
    let spans = stack
        .collector
        .wait_for_trace(&trace_id, EXPORT_WAIT, |spans| {
            complete(spans)
                && by_service(spans, "istio-ingressgateway").is_some()
                && by_service(spans, "front-end.sidecar").is_some()
        });
    let gateway_span = by_service(&spans, "istio-ingressgateway").unwrap();
    let sidecar_span = by_service(&spans, "front-end.sidecar").unwrap();
    let fe_server = kind(&spans, "front-end", "SERVER").unwrap();
    let fe_client = kind(&spans, "front-end", "CLIENT").unwrap();
    let bl_server = kind(&spans, "business-logic", "SERVER").unwrap();
    let parent = |span: &Span| span.parent_id.clone();
    assert_eq!(parent(&gateway_span), None, "the gateway starts the trace");
    assert_eq!(parent(fe_server), Some(gateway_span.id.clone()));
    assert_eq!(parent(fe_client), Some(fe_server.id.clone()));
    assert_eq!(parent(&sidecar_span), Some(fe_client.id.clone()));
    assert_eq!(parent(bl_server), Some(sidecar_span.id.clone()));
    // One tree: a single root, and every other span's parent is in the trace.
    let ids: Vec<&str> = spans.iter().map(|s| s.id.as_str()).collect();
    for span in &spans {
        match &span.parent_id {
            None => assert_eq!(span.id, gateway_span.id, "a second root: {span:#?}"),
            Some(p) => assert!(ids.contains(&p.as_str()), "orphan: {span:#?}"),
        }
        let expected = match span.service_name.as_str() {
            "istio-ingressgateway" | "front-end.sidecar" => "zipkin",
            _ => "otlp",
        };
        assert_eq!(span.protocol, expected, "{span:#?}");
    }
}
