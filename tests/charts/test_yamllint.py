"""yamllint, with the repository's .yamllint.yaml, on every YAML file that is not
a Helm template (the templates are checked through their rendered output)."""

from __future__ import annotations

import subprocess

from chart_render import REPO, venv_tool


def yamllint(*args: str, cwd=REPO) -> subprocess.CompletedProcess:
    return subprocess.run([venv_tool("yamllint"), "-f", "parsable", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_yamllint_passes_on_the_repository():
    result = yamllint(".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_yamllint_skips_helm_templates_and_checks_values_files():
    listed = yamllint("--list-files", ".").stdout.split()
    assert "helm/app/values.yaml" in [p.removeprefix("./") for p in listed]
    assert not [p for p in listed if "/templates/" in p]


def test_yamllint_catches_broken_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: 1\na: 2\nlist:\n    - x\n  - y\n")
    result = yamllint("-c", str(REPO / ".yamllint.yaml"), str(bad))
    assert result.returncode != 0
    assert "duplication of key" in result.stdout or "syntax error" in result.stdout, result.stdout
