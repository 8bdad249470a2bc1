"""Test support for the chart: the pinned tools (scripts/deploy/tools.sh) and `helm template` of a values file."""

from __future__ import annotations

import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "inferline"
EXAMPLES = sorted((CHART / "examples").glob("*.yaml"))
SOURCES = ROOT / "deploy" / "examples"
# every values file the chart is checked with: its defaults and each documented example
CASES: dict[str, Path | None] = {"default": None, **{p.stem: p for p in EXAMPLES}}
CRD_APIS = (
    "monitoring.coreos.com/v1/ServiceMonitor",
    "monitoring.coreos.com/v1/PrometheusRule",
    "keda.sh/v1alpha1/ScaledObject",
)
# two Kubernetes versions: the oldest still common and the newest kubernetes-validate ships
KUBE_VERSIONS = ("1.30.0", "1.37.0")
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule", "ScaledObject"}


@dataclass(frozen=True)
class Tools:
    dir: Path

    @property
    def helm(self) -> str:
        return str(self.dir / "bin" / "helm")

    @property
    def python(self) -> str:
        return str(self.dir / "venv" / "bin" / "python")

    @property
    def kubernetes_validate(self) -> str:
        return str(self.dir / "venv" / "bin" / "kubernetes-validate")

    @property
    def hadolint(self) -> str:
        return str(self.dir / "venv" / "bin" / "hadolint")


@functools.cache
def tools() -> Tools:
    """Install (once per machine) or find the pinned tools; skip only when heavy tiers are switched off."""
    default = Path.home() / ".cache" / "inferline" / "deploy-tools"
    if os.environ.get("INFERLINE_SKIP_HEAVY") == "1" and not (default / ".stamp").exists():
        pytest.skip("deploy tools not installed and INFERLINE_SKIP_HEAVY=1 (run scripts/deploy/tools.sh)")
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy" / "tools.sh")], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"scripts/deploy/tools.sh failed:\n{proc.stderr[-3000:]}"
    return Tools(Path(proc.stdout.strip().splitlines()[-1]))


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [tools().helm, *args], capture_output=True, text=True, timeout=120, env={**os.environ, "HELM_NO_PLUGINS": "1"}
    )
    if check:
        assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}"
    return proc


@functools.cache
def template(case: str, kube_version: str = KUBE_VERSIONS[-1], crds: bool = True) -> str:
    """`helm template` of a case (with the CRDs' APIs announced, as in a cluster that has them)."""
    args = ["template", "inferline", str(CHART), "-n", "inference", "--kube-version", kube_version]
    if CASES[case] is not None:
        args += ["-f", str(CASES[case])]
    if crds:
        for api in CRD_APIS:
            args += ["--api-versions", api]
    return helm(*args).stdout


def objects(case: str, kube_version: str = KUBE_VERSIONS[-1], crds: bool = True) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(template(case, kube_version, crds)) if d]


def values(case: str) -> dict[str, Any]:
    """The effective values: the chart's defaults with the case's file merged on top (as helm does)."""
    base: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    path = CASES[case]
    if path is None:
        return base
    return _merge(base, yaml.safe_load(path.read_text()))


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def find(objs: list[dict[str, Any]], kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
