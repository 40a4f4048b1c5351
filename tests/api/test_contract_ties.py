"""What the Makefile and the chart repeat from the contract crate is the
contract's: the default ports, the delay limit, the probes' paths. The
contract's Rust source is the one home; these files keep literals of their
own (make and Helm cannot read Rust), tied to it here."""

from __future__ import annotations

import json
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CONTRACT = REPO / "contract" / "src"
CHARTS = REPO / "helm" / "app" / "charts"


def contract_constants(service: str) -> dict[str, str]:
    """The `pub const NAME: … = value;` items of `pub mod <service>` in contract/src/routes.rs."""
    source = (CONTRACT / "routes.rs").read_text()
    block = source.split(f"pub mod {service} {{", 1)[1].split("\npub mod ", 1)[0]
    return {name: value.strip('"') for name, value in re.findall(r"pub const (\w+): [^=]+= ([^;]+);", block)}


def max_delay_ms() -> int:
    [value] = re.findall(r"pub const MAX_DELAY_MS: u64 = ([\d_]+);", (CONTRACT / "lib.rs").read_text())
    return int(value.replace("_", ""))


def test_the_makefile_runs_the_services_on_the_contracts_default_ports():
    makefile = (REPO / "Makefile").read_text()
    for variable, service in (("FRONT_END_PORT", "front_end"), ("BUSINESS_LOGIC_PORT", "business_logic")):
        [port] = re.findall(rf"^{variable} \?= (\d+)$", makefile, re.MULTILINE)
        assert port == contract_constants(service)["DEFAULT_PORT"], variable


def test_the_charts_delay_limit_is_the_contracts():
    schema = json.loads((CHARTS / "business-logic" / "values.schema.json").read_text())
    delay = schema["properties"]["slowEndpointDelayMs"]
    assert (delay["minimum"], delay["maximum"]) == (0, max_delay_ms())


def metrics_path() -> str:
    [path] = re.findall(r'^pub const METRICS: &str = "([^"]+)";', (CONTRACT / "routes.rs").read_text(), re.M)
    return path


def test_the_charts_probes_ask_the_contracts_paths():
    for chart, service in (("front-end", "front_end"), ("business-logic", "business_logic")):
        constants = contract_constants(service)
        paths = {v for v in constants.values() if v.startswith("/")} | {metrics_path()}
        templates = "".join(p.read_text() for p in (CHARTS / chart / "templates").iterdir())
        probed = set(re.findall(r"path: (/\S*)", templates))
        assert {constants["HEALTHZ"], constants["READYZ"]} <= probed, (chart, probed)
        assert probed <= paths, (chart, probed - paths)
