"""The generated artefacts: checked-in copies are current, the dashboard parses back, and every query
(dashboard and rules) names a metric someone exports and is valid PromQL for promtool."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from grafana_foundation_sdk.models.dashboard import Dashboard as DashboardModel

from inferline.observe.artefacts import ARTEFACTS, generate
from inferline.observe.catalog import sample_names
from inferline.observe.dashboard import PANEL_TITLES, render_dashboard
from inferline.observe.rules import render_prometheus_rule, rule_groups
from inferline.observe.scrape import render_scrape_config

from .test_alert_rules import promtool

ROOT = Path(__file__).resolve().parents[2]

# PromQL words that look like a series name followed by `(`, `{` or `[` but are not one.
_NOT_METRICS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool"}


def metric_names(expr: str) -> set[str]:
    """Series names in a PromQL expression: identifiers not called as functions and not label lists."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values
    expr = re.sub(r"\{[^}]*\}", "{}", expr)  # matchers
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)  # label lists
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)  # range windows
    names = set()
    for m in re.finditer(r"(?<![\w:$])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", expr):
        word, call = m.group(1), m.group(2)
        if call or word in _NOT_METRICS or re.fullmatch(r"[0-9.e]+", word):
            continue
        names.add(word)
    return names


def dashboard_exprs() -> list[str]:
    d = json.loads(render_dashboard())
    return [t["expr"] for p in d["panels"] for t in p.get("targets", [])]


def test_checked_in_artefacts_are_current() -> None:
    stale = generate(ROOT, check=True)
    assert not stale, f"out of date (run `inferline observe generate`): {stale}"
    assert set(ARTEFACTS) >= {
        "deploy/prometheus/inferline-rules.yaml",
        "deploy/prometheus/inferline-prometheusrule.yaml",
        "deploy/helm/inferline/files/inferline-rules.yaml",
        "deploy/grafana/inferline-dashboard.json",
        "deploy/helm/inferline/files/inferline-dashboard.json",
    }


def test_the_cli_regenerates_the_same_files(tmp_path: Path) -> None:
    from support import INFERLINE

    out = subprocess.run([INFERLINE, "observe", "generate", "--root", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    for rel in ARTEFACTS:
        assert (tmp_path / rel).read_text() == (ROOT / rel).read_text(), rel
    check = subprocess.run([INFERLINE, "observe", "generate", "--root", str(tmp_path), "--check"])
    assert check.returncode == 0
    (tmp_path / "deploy/grafana/inferline-dashboard.json").write_text("{}")
    check = subprocess.run(
        [INFERLINE, "observe", "generate", "--root", str(tmp_path), "--check"], capture_output=True, text=True
    )
    assert check.returncode == 1 and "STALE" in check.stdout


def test_prometheus_rule_object_has_the_same_groups() -> None:
    obj = yaml.safe_load(render_prometheus_rule(namespace="llm"))
    assert (obj["apiVersion"], obj["kind"]) == ("monitoring.coreos.com/v1", "PrometheusRule")
    assert obj["metadata"]["namespace"] == "llm"
    assert obj["spec"]["groups"] == rule_groups()


def test_dashboard_parses_back_with_its_rows_and_panels() -> None:
    text = (ROOT / "deploy/grafana/inferline-dashboard.json").read_text()
    raw = json.loads(text)
    model = DashboardModel.from_json(raw)
    assert model.title == "inferline" and model.uid == "inferline-overview"
    rows = [p["title"] for p in raw["panels"] if p["type"] == "row"]
    assert rows == ["Traffic", "Latency", "Capacity", "Routing"]
    titles = [p["title"] for p in raw["panels"] if p["type"] != "row"]
    assert titles == list(PANEL_TITLES)
    by_title = {p["title"]: p for p in raw["panels"]}
    # The seed's lines: TTFT 800 ms, KV use 85%, fragmentation 20%.
    for title, line in [
        ("TTFT p50 / p95 / p99", 0.8),
        ("KV-cache use per engine", 0.85),
        ("KV-cache fragmentation per engine", 0.2),
    ]:
        steps = by_title[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["value"] == line, title
        assert by_title[title]["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "dashed"
    for title in ("GPU utilization", "Replicas", "Running / waiting per engine", "Prefix affinity decisions"):
        assert title in by_title


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(inferline_queue_time_seconds_bucket{model=~"a|b"}[5m]))) '
        "> 0.5 and on (model) vllm:num_requests_running / DCGM_FI_DEV_FB_USED"
    )
    assert metric_names(expr) == {
        "inferline_queue_time_seconds_bucket",
        "vllm:num_requests_running",
        "DCGM_FI_DEV_FB_USED",
    }


def test_every_dashboard_query_names_an_exported_metric() -> None:
    known = sample_names()
    exprs = dashboard_exprs()
    assert len(exprs) >= 30
    for expr in exprs:
        names = metric_names(expr)
        assert names, expr
        assert names <= known, f"{expr}: unknown {names - known}"


def test_every_rule_names_an_exported_metric() -> None:
    known = sample_names()
    for rule in rule_groups()[0]["rules"]:
        names = metric_names(rule["expr"])
        assert names and names <= known, f"{rule['alert']}: unknown {names - known}"


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    # promtool parses each query as a recording rule (Grafana's $variables replaced by what they expand to).
    rules = [
        {
            "record": f"dashboard:query_{i}",
            "expr": e.replace("$__rate_interval", "1m").replace("$model", ".*").replace("$deployment", ".*"),
        }
        for i, e in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    out = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("with_rules", [False, True])
def test_generated_scrape_config_passes_promtool(tmp_path: Path, with_rules: bool) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text((ROOT / "deploy/prometheus/inferline-rules.yaml").read_text())
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text(
        render_scrape_config(
            gateways=["http://127.0.0.1:8080"],
            engines=["127.0.0.1:8100", "https://vllm.example:8443"],
            dcgm=["http://127.0.0.1:8100/dcgm/metrics", "http://gpu-node:9400"],
            scrape_interval_s=1,
            rule_files=[str(rules)] if with_rules else [],
        )
    )
    out = subprocess.run([promtool(), "check", "config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    data = yaml.safe_load(cfg.read_text())
    jobs = {j["job_name"]: j for j in data["scrape_configs"]}
    assert jobs["engines"]["metric_relabel_configs"][0]["replacement"] == "vllm:$1"
    groups = jobs["dcgm"]["static_configs"]
    assert {"targets": ["127.0.0.1:8100"], "labels": {"__metrics_path__": "/dcgm/metrics"}} in groups
    assert {"targets": ["gpu-node:9400"]} in groups
    assert {"targets": ["vllm.example:8443"], "labels": {"__scheme__": "https"}} in jobs["engines"]["static_configs"]


def test_scrape_config_rejects_bad_urls() -> None:
    with pytest.raises(ValueError, match="not an http"):
        render_scrape_config(gateways=["ftp://x"])
    with pytest.raises(ValueError, match="at least one gateway"):
        render_scrape_config(gateways=[])


def test_docs_list_every_alert_with_its_shipped_expression() -> None:
    doc = (ROOT / "docs/observability.md").read_text()
    for rule in rule_groups()[0]["rules"]:
        assert f"`{rule['alert']}`" in doc and rule["expr"] in doc, f"docs/observability.md: {rule['alert']}"


def test_the_gateway_declares_the_contract_the_rules_and_dashboard_use() -> None:
    from inferline.config import InferlineConfig
    from inferline.gateway.app import Gateway
    from inferline.observe.catalog import GATEWAY

    # A whole gateway's registry: metrics.py's series plus the limit store's and cache's health collectors.
    config = {"models": [{"name": "m", "backends": [{"name": "b", "kind": "vllm", "url": "http://127.0.0.1:9"}]}]}
    gateway = Gateway(InferlineConfig.model_validate(config))
    declared = {m.name: (m.type, m.samples) for m in gateway.metrics.registry.collect()}
    # prometheus_client names a counter family without its _total suffix
    wanted = {name.removesuffix("_total"): kind for name, (kind, _) in GATEWAY.items()}
    missing = {name for name in wanted if name not in declared}
    assert not missing, f"the rules or dashboard use series the gateway does not export: {sorted(missing)}"
    for name, kind in wanted.items():
        if name in declared:
            assert declared[name][0] == kind, name
