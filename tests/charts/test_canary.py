"""The canary in the chart: business-logic v2 as a second Deployment behind the
same Service, one Service per version selecting the pods by their `version`
label, and the weights of helm/app's `canary.weights` in the route attached to
the business-logic Service: an HTTPRoute in both mesh modes, a VirtualService
only while a fault is injected (sidecar mode)."""

from __future__ import annotations

import subprocess

import pytest
from chart_render import CHART, KUBE_VERSION, MODES, mode_args, render, render_ok, require_tool
from chart_wiring import env_map, load_docs, of_kind

CANARY = CHART / "ci" / "canary-values.yaml"
FAULTS = CHART / "ci" / "fault-injection-values.yaml"
BUSINESS_LOGIC = "business-logic"


def objects(*args) -> list[dict]:
    values = [a for a in args if not isinstance(a, str)]
    extra = tuple(a for a in args if isinstance(a, str))
    return load_docs(render_ok(CHART, values[0] if values else None, *extra))


def named(docs: list[dict], kind: str, name: str) -> dict:
    (found,) = [d for d in of_kind(docs, kind) if d["metadata"]["name"] == name]
    return found


def business_logic_deployments(docs: list[dict]) -> dict[str, dict]:
    """business-logic's Deployments by their pods' `version` label."""
    deployments = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"].startswith(BUSINESS_LOGIC)]
    return {d["spec"]["template"]["metadata"]["labels"]["version"]: d for d in deployments}


def pod_labels(deployment: dict) -> dict:
    return deployment["spec"]["template"]["metadata"]["labels"]


def selects(selector: dict, labels: dict) -> bool:
    return selector.items() <= labels.items()


def version_services(docs: list[dict]) -> dict[str, dict]:
    """The Services in front of one business-logic version each, by the version they select."""
    return {s["spec"]["selector"]["version"]: s for s in of_kind(docs, "Service")
            if s["metadata"]["name"].startswith(BUSINESS_LOGIC) and "version" in s["spec"]["selector"]}


def weights(docs: list[dict]) -> dict[str, int]:
    """Version -> weight of the route on business-logic, followed through the backend Service to
    the `version` its selector picks (a lone backend without a weight weighs 1 of 1: all)."""
    services = version_services(docs)
    by_name = {s["metadata"]["name"]: v for v, s in services.items()}
    routes = [r for r in of_kind(docs, "HTTPRoute") if r["metadata"]["name"] == BUSINESS_LOGIC]
    if routes:
        (route,) = routes
        assert route["spec"]["parentRefs"] == [{"group": "", "kind": "Service", "name": BUSINESS_LOGIC, "port": 8080}]
        (rule,) = route["spec"]["rules"]
        return {by_name[b["name"]]: b.get("weight", 1) for b in rule["backendRefs"]}
    (http,) = named(docs, "VirtualService", BUSINESS_LOGIC)["spec"]["http"]
    return {by_name[r["destination"]["host"].split(".")[0]]: r.get("weight", 100) for r in http["route"]}


@pytest.mark.parametrize("mode", MODES)
def test_the_canary_values_render_and_validate(mode):
    manifests = render_ok(CHART, CANARY, *mode_args(mode))
    result = subprocess.run([str(require_tool("validate-manifests")), "-k", KUBE_VERSION, "-"], input=manifests,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_v2_is_a_second_deployment_behind_the_same_service():
    docs = objects(CANARY)
    versions = business_logic_deployments(docs)
    assert set(versions) == {"v1", "v2"}
    v1, v2 = versions["v1"], versions["v2"]
    assert (v1["metadata"]["name"], v2["metadata"]["name"]) == ("business-logic", "business-logic-v2")
    service = named(docs, "Service", BUSINESS_LOGIC)["spec"]["selector"]
    for deployment in (v1, v2):
        assert selects(service, pod_labels(deployment)), deployment["metadata"]["name"]
        assert pod_labels(deployment)["app"] == BUSINESS_LOGIC
        # Istio and Kiali read the canonical revision before `version`: they must agree.
        assert pod_labels(deployment)["service.istio.io/canonical-revision"] == pod_labels(deployment)["version"]
    # Neither Deployment claims the other's pods.
    assert not selects(v1["spec"]["selector"]["matchLabels"], pod_labels(v2))
    assert not selects(v2["spec"]["selector"]["matchLabels"], pod_labels(v1))
    # The same image and identity (so the AuthorizationPolicies cover v2); v2 has its own settings.
    (c1,), (c2,) = v1["spec"]["template"]["spec"]["containers"], v2["spec"]["template"]["spec"]["containers"]
    assert c1["image"] == c2["image"]
    assert (v1["spec"]["template"]["spec"]["serviceAccountName"]
            == v2["spec"]["template"]["spec"]["serviceAccountName"] == BUSINESS_LOGIC)
    e1, e2 = env_map(c1), env_map(c2)
    assert e1["SERVICE_VERSION"]["value"] == "v1" and e2["SERVICE_VERSION"]["value"] == "v2"
    assert not any(name.startswith("REGRESSION_") for name in e1)
    assert e2["REGRESSION_EXTRA_QUERY"]["value"] == "true"
    assert e2["REGRESSION_ERROR_RATE"]["value"] == "0.05"
    assert e1["DATABASE_URL"] == e2["DATABASE_URL"]


@pytest.mark.parametrize("mode", MODES)
def test_each_version_service_selects_exactly_its_version(mode):
    docs = objects(CANARY, *mode_args(mode))
    versions = business_logic_deployments(docs)
    services = version_services(docs)
    assert {v: s["metadata"]["name"] for v, s in services.items()} == {
        "v1": "business-logic-v1", "v2": "business-logic-v2"}
    for version, service in services.items():
        matching = [v for v, d in versions.items() if selects(service["spec"]["selector"], pod_labels(d))]
        assert matching == [version], service["metadata"]["name"]
        # The same port as the shared Service, so the route's backends answer like it.
        assert service["spec"]["ports"] == named(docs, "Service", BUSINESS_LOGIC)["spec"]["ports"]
        # In ambient mode each is bound to the waypoint, like the shared one: a call addressed to a
        # version Service directly still meets the waypoint's L7 policy.
        labels = service["metadata"]["labels"]
        assert labels.get("istio.io/use-waypoint") == ("waypoint" if mode == "ambient" else None), labels
    # No subsets: Gateway API routes (and waypoints) pick versions by Service.
    assert not [dr for dr in of_kind(docs, "DestinationRule") if "subsets" in dr["spec"]]


WEIGHTS = [
    ((), {"v1": 80, "v2": 20}),
    (("--set", "canary.weights.v1=0", "--set", "canary.weights.v2=100"), {"v1": 0, "v2": 100}),
    (("--set", "canary.weights.v1=100", "--set", "canary.weights.v2=0"), {"v1": 100, "v2": 0}),
]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("extra, expected", WEIGHTS, ids=["canary", "promote", "drain"])
def test_the_weights_reach_the_httproute_in_both_modes(mode, extra, expected):
    docs = objects(CANARY, *extra, *mode_args(mode))
    assert weights(docs) == expected
    assert not [v for v in of_kind(docs, "VirtualService") if v["metadata"]["name"] == BUSINESS_LOGIC]


@pytest.mark.parametrize("mode", MODES)
def test_without_the_canary_everything_goes_to_v1_and_there_is_no_v2(mode):
    """What `make rollback` leaves: no v2 Deployment, no v2 Service, every call to v1."""
    docs = objects(*mode_args(mode))
    assert set(business_logic_deployments(docs)) == {"v1"}
    assert set(version_services(docs)) == {"v1"}
    assert weights(docs) == {"v1": 100}


def test_fault_injection_keeps_working_next_to_the_split_in_sidecar_mode():
    docs = load_docs(render_ok(CHART, FAULTS, "-f", str(CANARY)))
    assert not [r for r in of_kind(docs, "HTTPRoute") if r["metadata"]["name"] == BUSINESS_LOGIC]
    (http,) = named(docs, "VirtualService", BUSINESS_LOGIC)["spec"]["http"]
    assert http["fault"]["abort"]["httpStatus"] == 503 and http["fault"]["delay"]["fixedDelay"] == "2s"
    assert weights(docs) == {"v1": 80, "v2": 20}


@pytest.mark.parametrize("settings, message", [
    (("canary.weights.v1=70", "canary.weights.v2=20"), "must be 100"),
    (("canary.weights.v1=100", "canary.weights.v2=100"), "must be 100"),
    (("canary.weights.v1=120", "canary.weights.v2=-20"), "canary"),
    (("canary.weights.v1=50.5", "canary.weights.v2=49.5"), "canary"),
    (("canary.weights.v3=0",), "v3"),
])
def test_the_schema_and_checks_reject_weights_that_do_not_sum_to_100(settings, message):
    args = [a for s in settings for a in ("--set", s)]
    result = render(CHART, CANARY, *args)
    assert result.returncode != 0, f"{settings} accepted"
    assert message in result.stderr, result.stderr


def test_weight_for_v2_needs_v2_running():
    result = render(CHART, None, "--set", "canary.weights.v1=80", "--set", "canary.weights.v2=20")
    assert result.returncode != 0
    assert "business-logic.canary.enabled is false" in result.stderr, result.stderr


@pytest.mark.parametrize("setting", ["business-logic.canary.regression.errorRate=2",
                                     "business-logic.canary.replicaCount=-1",
                                     "business-logic.canary.regression.extraQuery=maybe"])
def test_the_subchart_schema_rejects_bad_canary_settings(setting):
    result = render(CHART, CANARY, "--set", setting)
    assert result.returncode != 0, f"--set {setting} accepted"
    assert "canary" in result.stderr, result.stderr

