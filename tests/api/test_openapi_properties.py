"""Property-based tests of business-logic's API: schemathesis generates
requests from the OpenAPI document the live service serves at /openapi.json
and checks every answer: no 5xx, status, content type, headers and body as
the document says, and every 4xx an application/problem+json problem
document (problem_check.py). Hypothesis' generation through the Python API
(valid and invalid requests), then the CLI's coverage phase (boundaries,
wrong types, methods the document does not list).

Derandomized, so a failure CI finds comes back the same here. Bounded: a
fixed number of examples per operation and mode, each request
with a timeout, no example database. The slow endpoint's deliberate delay
is the only slow part: for valid requests the document's `delay_ms` maximum
is lowered here to keep each call short (the limit itself, 60000, is checked
by the Rust tests); invalid requests use the document as served.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from service_process import Service, http_get, service_binaries

from problem_check import client_errors_are_problem_documents
from test_contract_ties import max_delay_ms

EXAMPLES = 40  # per operation and generation mode
REQUEST_TIMEOUT = 10  # seconds, each request
SLOW_DELAY_MS_FOR_VALID_REQUESTS = 50
CLI_TIMEOUT = 300  # seconds, the whole coverage run


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    client_errors_are_problem_documents,
]


@pytest.fixture(scope="module")
def business_logic(tmp_path_factory):
    binaries = service_binaries()
    work = tmp_path_factory.mktemp("business-logic")
    env = {"PATH": "/usr/bin:/bin", "HOST": "127.0.0.1", "PORT": "0", "OTEL_TRACES_EXPORTER": "none",
           "DATABASE_URL": f"sqlite://{work / 'api.db'}", "SLOW_ENDPOINT_DELAY_MS": "0", "WORK_DIR": str(work)}
    service = Service(binaries / "business-logic", env)
    yield service
    service.stop()


@pytest.fixture(scope="module")
def served_document(business_logic) -> dict:
    status, body = http_get(business_logic.url + "/openapi.json")
    assert status == 200, body
    return json.loads(body)


def with_short_delays(document: dict) -> dict:
    """The document with the slow endpoint's delay_ms capped for valid requests."""
    short = copy.deepcopy(document)
    [delay] = [p for p in short["paths"]["/slow-endpoint"]["get"]["parameters"] if p["name"] == "delay_ms"]
    assert delay["schema"]["maximum"] == max_delay_ms(), delay
    delay["schema"]["maximum"] = SLOW_DELAY_MS_FOR_VALID_REQUESTS
    return short


def operations(document: dict):
    schema = schemathesis.openapi.from_dict(document)
    found = []
    for result in schema.get_all_operations():
        found.append(result.ok())
    assert found, "the document has no operations"
    return found


def exercise(operation, base_url: str, mode: GenerationMode, checks) -> None:
    """Runs EXAMPLES generated requests of one operation against the live service; raises on the first failure."""

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(base_url=base_url, checks=checks, timeout=REQUEST_TIMEOUT)

    run()


def has_parameters(operation) -> bool:
    return bool(operation.definition.raw.get("parameters"))


def test_valid_requests_get_answers_the_document_describes(business_logic, served_document):
    for operation in operations(with_short_delays(served_document)):
        exercise(operation, business_logic.url, GenerationMode.POSITIVE, CHECKS)


def test_invalid_requests_are_refused_with_problem_documents(business_logic, served_document):
    exercised = 0
    for operation in operations(served_document):
        if has_parameters(operation):
            exercise(operation, business_logic.url, GenerationMode.NEGATIVE, [*CHECKS, negative_data_rejection])
            exercised += 1
    assert exercised == 2, "the fast and the slow endpoint take parameters"


def failures(operation, base_url: str, mode: GenerationMode) -> str:
    """The text of the failures the checks find for one operation; empty when they find none."""
    try:
        exercise(operation, base_url, mode, CHECKS)
    except FailureGroup as group:
        return "\n".join(str(e) for e in group.exceptions)
    return ""


def test_the_checks_fail_when_the_service_contradicts_the_document(business_logic, served_document):
    """The checks can fail: against a document that says more than the service does, they do."""
    wrong = with_short_delays(served_document)
    wrong["components"]["schemas"]["FastAnswer"]["required"].append("discount_cents")
    [fast] = [op for op in operations(wrong) if op.path == "/fast-endpoint"]
    assert '"discount_cents" is a required property' in failures(fast, business_logic.url, GenerationMode.POSITIVE)

    wrong = with_short_delays(served_document)
    bad_request = wrong["components"]["responses"]["BadRequest"]
    bad_request["content"] = {"application/json": bad_request["content"]["application/problem+json"]}
    [slow] = [op for op in operations(wrong) if op.path == "/slow-endpoint"]
    found = failures(slow, business_logic.url, GenerationMode.NEGATIVE)
    assert "application/problem+json" in found and "Undocumented Content-Type" in found, found


def test_the_coverage_phase_finds_nothing(business_logic, served_document, tmp_path):
    """schemathesis' CLI, examples and coverage phases: each parameter's boundaries and
    wrong types, missing values, and every method the document does not list (405)."""
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(with_short_delays(served_document)))
    checks = ",".join(["not_a_server_error", "status_code_conformance", "content_type_conformance",
                       "response_schema_conformance", "response_headers_conformance", "unsupported_method",
                       "client_errors_are_problem_documents"])
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "problem_check",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [str(Path(sys.executable).parent / "schemathesis"), "run", str(document), "--url", business_logic.url,
         "--phases", "examples,coverage", "--checks", checks, "--request-timeout", str(REQUEST_TIMEOUT),
         "--no-color"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout, result.stdout[-3000:]
