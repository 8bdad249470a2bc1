"""The generated files checked into the repository, and how to regenerate or check them all at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

__all__ = ["ARTEFACTS", "generate"]


def _rules() -> str:
    from inferline.observe.rules import render_rules

    return render_rules()


def _prometheus_rule() -> str:
    from inferline.observe.rules import render_prometheus_rule

    return render_prometheus_rule()


def _dashboard() -> str:
    from inferline.observe.dashboard import render_dashboard

    return render_dashboard()


# repository path -> generator. The Helm chart (deploy/helm, owned by the deploy helper) includes the two
# files under files/ with .Files.Get.
ARTEFACTS: dict[str, Callable[[], str]] = {
    "deploy/prometheus/inferline-rules.yaml": _rules,
    "deploy/prometheus/inferline-prometheusrule.yaml": _prometheus_rule,
    "deploy/helm/inferline/files/inferline-rules.yaml": _rules,
    "deploy/grafana/inferline-dashboard.json": _dashboard,
    "deploy/helm/inferline/files/inferline-dashboard.json": _dashboard,
}


def generate(root: Path, *, check: bool = False) -> list[str]:
    """Write every artefact under ROOT (or, with CHECK, write nothing). Returns the paths that were stale."""
    stale: list[str] = []
    for rel, render in ARTEFACTS.items():
        path = root / rel
        text = render()
        if not path.is_file() or path.read_text() != text:
            stale.append(rel)
            if not check:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    return stale
