"""Validate rendered custom resources (ServiceMonitor, PrometheusRule, ScaledObject) against their CRD schemas.

Runs in the deploy-tools venv (scripts/deploy/tools.sh). The schemas come from the typed CRD models on PyPI
(cloudcoil-models-prometheus-operator, cloudcoil-models-keda: pydantic models generated from the upstream
CRDs). Those models ignore unknown fields, so their JSON Schema is closed here: every object that lists its
properties gets `additionalProperties: false` (maps such as labels keep their value schema). Each object must
pass both that strict schema and the model itself (types, required fields).

Usage: python validate_crds.py FILE.yaml...   (multi-document YAML; other kinds are skipped)
Exit 0 when every custom resource is valid, 1 otherwise; one line per object on stdout.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from cloudcoil.models.keda import v1alpha1 as keda
from cloudcoil.models.prometheus_operator import v1 as monitoring

MODELS: dict[tuple[str, str], Any] = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): monitoring.ServiceMonitor,
    ("monitoring.coreos.com/v1", "PrometheusRule"): monitoring.PrometheusRule,
    ("keda.sh/v1alpha1", "ScaledObject"): keda.ScaledObject,
}


def _close(node: Any) -> None:
    """additionalProperties: false on every object schema that lists properties and says nothing else."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            _close(value)
    elif isinstance(node, list):
        for value in node:
            _close(value)


def strict_schema(model: Any) -> dict[str, Any]:
    schema: dict[str, Any] = model.model_json_schema(by_alias=True)
    _close(schema)
    return schema


def validate(doc: dict[str, Any]) -> list[str]:
    key = (doc.get("apiVersion", ""), doc.get("kind", ""))
    model = MODELS[key]
    validator = jsonschema.Draft202012Validator(strict_schema(model))
    problems = [
        f"{'/'.join(str(p) for p in err.absolute_path) or '(root)'}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]
    if not problems:
        try:
            model.model_validate(doc)
        except Exception as exc:  # pydantic's ValidationError, reported as text
            problems.append(str(exc).replace("\n", " "))
    return problems


def main(paths: list[str]) -> int:
    failed = checked = 0
    for path in paths:
        for doc in yaml.safe_load_all(Path(path).read_text()):
            if not isinstance(doc, dict) or (doc.get("apiVersion"), doc.get("kind")) not in MODELS:
                continue
            checked += 1
            name = f"{Path(path).name}: {doc['kind']}/{doc.get('metadata', {}).get('name', '?')}"
            problems = validate(doc)
            if problems:
                failed += 1
                print(f"INVALID {name}:")
                for p in problems:
                    print(f"  - {p}")
            else:
                print(f"valid   {name}")
    print(f"{checked} custom resource(s) checked, {failed} invalid")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
