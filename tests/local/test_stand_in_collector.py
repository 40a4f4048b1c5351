"""The stand-in collector the Python checks run the services against (tests/service_process.py):
it takes OTLP/HTTP protobuf on /v1/traces, built here with the published OpenTelemetry
definitions, and Zipkin v2 JSON on /api/v2/spans, keeps both in one Zipkin-like shape, and answers
a malformed body 400 and records it, as test-support/src/collector.rs does."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (ExportTraceServiceRequest,
                                                                     ExportTraceServiceResponse)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from service_process import Collector

TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
SERVER, CHILD, CALLER = (bytes.fromhex(h) for h in ("b7ad6b7169203331", "00f067aa0ba902b7", "53995c3f42cd8ad8"))
START_NS = 1_764_000_000_000_000_000


def kv(key: str, value) -> KeyValue:
    if isinstance(value, bool):
        v = AnyValue(bool_value=value)
    elif isinstance(value, int):
        v = AnyValue(int_value=value)
    elif isinstance(value, list):
        v = AnyValue(array_value=ArrayValue(values=[AnyValue(string_value=x) for x in value]))
    else:
        v = AnyValue(string_value=value)
    return KeyValue(key=key, value=v)


def export(resource: dict, *spans: Span) -> bytes:
    return ExportTraceServiceRequest(resource_spans=[ResourceSpans(
        resource=Resource(attributes=[kv(k, v) for k, v in resource.items()]),
        scope_spans=[ScopeSpans(spans=list(spans))])]).SerializeToString()


def span(span_id: bytes, name: str, kind: int, parent: bytes = b"", trace: bytes = TRACE,
         attributes: dict | None = None) -> Span:
    return Span(trace_id=trace, span_id=span_id, parent_span_id=parent, name=name, kind=kind,
                start_time_unix_nano=START_NS, end_time_unix_nano=START_NS + 3_000_123_456,
                attributes=[kv(k, v) for k, v in (attributes or {}).items()])


def zipkin(**changes) -> dict:
    good = {"traceId": TRACE.hex(), "id": SERVER.hex(), "parentId": CALLER.hex(), "kind": "SERVER",
            "name": "get /slow-endpoint", "timestamp": START_NS // 1000, "duration": 3_000_123,
            "localEndpoint": {"serviceName": "business-logic"}, "tags": {"http.response.status_code": "200"}}
    return {**good, **changes}


def post(url: str, body: bytes, content_type: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()


@pytest.fixture
def collector():
    c = Collector()
    yield c
    c.close()


def otlp_url(collector: Collector) -> str:
    """Where an OTLP/HTTP exporter given env()'s OTEL_EXPORTER_OTLP_ENDPOINT sends its spans."""
    return collector.env()["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/v1/traces"


def test_an_otlp_export_is_kept_in_the_zipkin_shape(collector):
    body = export({"service.name": "business-logic", "service.version": "v2", "k8s.pod.name": "business-logic-7d-x"},
                  span(SERVER, "GET /slow-endpoint", Span.SPAN_KIND_SERVER, parent=CALLER,
                       attributes={"http.response.status_code": 200, "error": False, "tried": ["a", "b"]}),
                  span(CHILD, "data_transformation", Span.SPAN_KIND_INTERNAL, parent=SERVER))
    status, content_type, answer = post(otlp_url(collector), body, "application/x-protobuf")
    assert (status, content_type) == (200, "application/x-protobuf")
    assert ExportTraceServiceResponse.FromString(answer) == ExportTraceServiceResponse()
    assert collector.errors == []
    server = collector.span(TRACE.hex(), SERVER.hex())
    assert server == {
        "traceId": "0af7651916cd43dd8448eb211c80319c", "id": "b7ad6b7169203331", "parentId": "53995c3f42cd8ad8",
        "kind": "SERVER", "name": "GET /slow-endpoint", "timestamp": START_NS // 1000, "duration": 3_000_123,
        "localEndpoint": {"serviceName": "business-logic"},
        "tags": {"service.version": "v2", "k8s.pod.name": "business-logic-7d-x", "http.response.status_code": "200",
                 "error": "false", "tried": '["a", "b"]'},
        "protocol": "otlp"}
    child = collector.span(TRACE.hex(), CHILD.hex())
    assert "kind" not in child and child["parentId"] == SERVER.hex()  # internal spans have no Zipkin kind
    assert collector.server_spans_of(TRACE.hex()) == {"business-logic"}
    assert collector.exported_by("business-logic") == {TRACE.hex()} and collector.protocols() == {"otlp"}


def test_a_zipkin_batch_is_kept_as_it_came(collector):
    status, _, _ = post(collector.env()["OTEL_EXPORTER_ZIPKIN_ENDPOINT"], json.dumps([zipkin()]).encode(),
                        "application/json")
    assert status == 202 and collector.errors == []
    assert collector.span(TRACE.hex(), SERVER.hex()) == {**zipkin(), "protocol": "zipkin"}
    assert collector.protocols() == {"zipkin"}


@pytest.mark.parametrize("body, content_type, error", [
    (b"not protobuf at all", "application/x-protobuf", "not an ExportTraceServiceRequest"),
    (export({"service.name": "front-end"}, span(SERVER, "x", 2)), "application/json", "content-type"),
    (export({"k8s.pod.name": "p"}, span(SERVER, "x", 2)), "application/x-protobuf", "service.name"),
    (export({"service.name": "front-end"}, span(SERVER, "x", 2, trace=TRACE[:8])), "application/x-protobuf", "ids"),
    (export({"service.name": "front-end"}, span(SERVER[:4], "x", 2)), "application/x-protobuf", "ids"),
], ids=["garbage", "json-content-type", "no-service-name", "short-trace-id", "short-span-id"])
def test_a_malformed_otlp_export_is_answered_400_and_recorded(collector, body, content_type, error):
    status, _, answer = post(otlp_url(collector), body, content_type)
    assert status == 400 and error in answer.decode()
    assert len(collector.errors) == 1 and error in collector.errors[0]
    assert collector.spans == []


@pytest.mark.parametrize("body", [
    b"{not json", json.dumps({"spans": []}).encode(),
    *(json.dumps([zipkin(**{field: value})]).encode() for field, value in [
        ("traceId", "0AF7"), ("id", "xyz"), ("kind", "INTERNAL"), ("timestamp", START_NS), ("duration", "3s"),
        ("localEndpoint", {}), ("tags", {"http.response.status_code": 200})]),
], ids=["not-json", "not-an-array", "trace-id", "id", "kind", "timestamp-in-ns", "duration", "no-service", "tags"])
def test_a_malformed_zipkin_batch_is_answered_400_and_recorded(collector, body):
    status, _, _ = post(collector.zipkin_endpoint, body, "application/json")
    assert status == 400 and len(collector.errors) == 1 and collector.spans == []


def test_other_paths_are_not_found(collector):
    assert post(collector.otlp_endpoint + "/v1/metrics", b"", "application/x-protobuf")[0] == 404
    assert collector.errors == [] and collector.spans == []
