"""The chart's tracing environment, run by the real binaries.

Each service starts with the environment its Deployment renders, expanded as
the kubelet does for a made-up pod (downward-API fields, then `$(VAR)`), with
only the addresses swapped for loopback ones: its listen port, business-logic's
URL and database, and both exporter endpoints pointing at the stand-in
collector. A slow page's spans must arrive from both services the way the chart
chose (OTLP by default, Zipkin one value away), and with OTLP every span's
resource names the pod: its namespace, name, node and version.
"""

from __future__ import annotations

import os
import re

import pytest
from chart_render import CHART, NAMESPACE, render_ok
from chart_wiring import kubernetes_env, load_docs, pod_templates
from service_process import Collector, Service, http_get, service_binaries, wait_until

NODE = "demo-control-plane"
TRACE_ID = re.compile(r'id="trace-id">([0-9a-f]{32})<')


def chart_env(docs: list[dict], workload: str) -> tuple[dict[str, str], dict[str, str]]:
    """(environment, pod labels) of the workload's app container, for a pod named `<workload>-pod-1`."""
    [(tpl, container)] = [(t, c) for owner, _, t in pod_templates(docs, NAMESPACE)
                          if owner["metadata"]["name"] == workload
                          for c in t["spec"]["containers"] if c["name"] == workload]
    labels = tpl["metadata"]["labels"]
    pod = {"metadata.name": f"{workload}-pod-1", "metadata.namespace": NAMESPACE, "spec.nodeName": NODE,
           **{f"metadata.labels['{k}']": v for k, v in labels.items()}}
    return kubernetes_env(container, pod), labels


@pytest.mark.parametrize("exporter", ["otlp", "zipkin"], ids=["default-otlp", "zipkin"])
def test_the_services_export_the_slow_page_the_way_the_chart_says(exporter, tmp_path):
    bin_dir = service_binaries()
    values = () if exporter == "otlp" else ("--set-string", f"global.tracing.exporter={exporter}")
    docs = load_docs(render_ok(CHART, None, *values))
    collector = Collector()
    loopback = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOST": "127.0.0.1", "PORT": "0",
                "WORK_DIR": str(tmp_path), "OTEL_BSP_SCHEDULE_DELAY": "100", **collector.env()}
    services: list[Service] = []
    try:
        env, bl_labels = chart_env(docs, "business-logic")
        assert env["OTEL_TRACES_EXPORTER"] == exporter
        services.append(Service(bin_dir / "business-logic", {
            **env, **loopback, "DATABASE_URL": f"sqlite://{tmp_path / 'business-logic.db'}"}))
        env, fe_labels = chart_env(docs, "front-end")
        services.append(Service(bin_dir / "front-end", {**env, **loopback, "BUSINESS_LOGIC_URL": services[0].url}))

        status, body = http_get(services[1].url + "/slow-page?delay_ms=10", 20)
        assert status == 200, body[:500]
        trace_id = TRACE_ID.search(body).group(1)
        wait_until(lambda: collector.server_spans_of(trace_id) >= {"front-end", "business-logic"}, 20,
                   f"the server spans of {trace_id} from both services", step=0.2)
        assert collector.errors == []
        spans = [s for s in collector.spans if s["traceId"] == trace_id]
        assert {s["protocol"] for s in spans} == {exporter}, spans
        if exporter != "otlp":
            return  # Zipkin spans have no resource: the pod's attributes travel with OTLP only
        for service, labels in (("front-end", fe_labels), ("business-logic", bl_labels)):
            [server] = [s for s in spans if s["localEndpoint"]["serviceName"] == service and s.get("kind") == "SERVER"]
            want = {"k8s.namespace.name": NAMESPACE, "k8s.pod.name": f"{service}-pod-1", "k8s.node.name": NODE,
                    "service.version": labels["version"]}
            assert {k: server["tags"].get(k) for k in want} == want, server
    finally:
        for service in reversed(services):
            service.stop()
        collector.close()
