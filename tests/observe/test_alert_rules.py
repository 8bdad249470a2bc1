"""Every alert rule under `promtool test rules`: fires on a bad series after its `for`, quiet when healthy
and on a brief spike. The rules are the shipped ones (scale 1); promtool comes from Debian's prometheus."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from inferline.observe.rules import ALERTS, render_prometheus_rule, render_rules

ROOT = Path(__file__).resolve().parents[2]
M = {"model": "smollm2"}
MB = {"model": "smollm2", "backend": "sim-0"}


def promtool() -> str:
    exe = shutil.which("promtool")
    if exe is None:  # CI installs it in .ci/run; a developer machine gets it here
        subprocess.run(["bash", str(ROOT / "scripts/prometheus.sh"), "install"], check=True)
        exe = shutil.which("promtool")
    assert exe, "promtool not found after scripts/prometheus.sh install"
    return exe


def _sel(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def _hist(name: str, labels: dict[str, str], fast: str, slow_total: str, le_fast: str, le_slow: str) -> list[dict]:
    """A histogram's buckets: FAST counts the observations <= LE_FAST, SLOW_TOTAL all (all <= LE_SLOW)."""
    return [
        {"series": _sel(name, {**labels, "le": le_fast}), "values": fast},
        {"series": _sel(name, {**labels, "le": le_slow}), "values": slow_total},
        {"series": _sel(name, {**labels, "le": "+Inf"}), "values": slow_total},
    ]


def _requests(ok: str, bad: str, bad_status: str, outcome: str, backend: str = "sim-0") -> list[dict]:
    lab = {"model": "smollm2", "backend": backend}
    return [
        {"series": _sel("inferline_requests_total", {**lab, "status": "200", "outcome": "ok"}), "values": ok},
        {"series": _sel("inferline_requests_total", {**lab, "status": bad_status, "outcome": outcome}), "values": bad},
    ]


def _gauge(name: str, labels: dict[str, str], values: str) -> list[dict]:
    return [{"series": _sel(name, labels), "values": values}]


@dataclass
class Case:
    """BAD fires after `for` (quiet at PENDING_AT, firing at FIRE_AT); HEALTHY and SPIKE never fire."""

    labels: dict[str, str]  # of the firing alert (besides alertname and severity)
    value: str  # $value as the summary template renders it
    bad: list[dict]
    healthy: list[dict]
    spike: list[dict]
    fire_at: str
    pending_at: str | None
    quiet_at: list[str] = field(default_factory=lambda: ["10m", "20m", "30m", "40m"])


TTFT = "inferline_time_to_first_token_seconds_bucket"
QUEUE = "inferline_queue_time_seconds_bucket"
CASES: dict[str, Case] = {
    # All observations in (0.5, 1] s: p95 = 0.5 + 0.95 * 0.5 = 975 ms. Healthy: all <= 0.5 s.
    # Spike: 3 slow minutes, then fast again (5-minute window, 10-minute for).
    "InferlineTTFTHigh": Case(
        MB,
        "975ms",
        _hist(TTFT, MB, "0x60", "0+10x60", "0.5", "1"),
        _hist(TTFT, MB, "0+10x60", "0+10x60", "0.5", "1"),
        _hist(TTFT, MB, "0+10x20 200 200 200 210+10x40", "0+10x64", "0.5", "1"),
        "15m",
        "8m",
    ),
    "InferlineKVCacheUsageHigh": Case(
        MB,
        "90%",
        _gauge("inferline_backend_kv_cache_usage_ratio", MB, "0.9x60"),
        _gauge("inferline_backend_kv_cache_usage_ratio", MB, "0.5x60"),
        _gauge("inferline_backend_kv_cache_usage_ratio", MB, "0.5x20 0.95x7 0.5x33"),
        "20m",
        "8m",
    ),
    "InferlineKVCacheFragmentationHigh": Case(
        MB,
        "30%",
        _gauge("inferline_backend_kv_cache_fragmentation_ratio", MB, "0.3x60"),
        _gauge("inferline_backend_kv_cache_fragmentation_ratio", MB, "0.05x60"),
        _gauge("inferline_backend_kv_cache_fragmentation_ratio", MB, "0.05x20 0.5x10 0.05x30"),
        "20m",
        "10m",
    ),
    # All waits in (0.25, 1] s: p95 = 0.25 + 0.95 * 0.75 = 962.5 ms.
    "InferlineQueueTimeHigh": Case(
        M,
        "962.5ms",
        _hist(QUEUE, M, "0x60", "0+10x60", "0.25", "1"),
        _hist(QUEUE, M, "0+10x60", "0+10x60", "0.25", "1"),
        _hist(QUEUE, M, "0+10x20 200 200 200 210+10x40", "0+10x64", "0.25", "1"),
        "15m",
        "8m",
    ),
    # One more waiting request every minute. Healthy: a steady 5. Spike: grows for 5 minutes, then drains.
    "InferlineQueueGrowing": Case(
        M,
        "",
        _gauge("inferline_queue_depth", M, "0+1x60"),
        _gauge("inferline_queue_depth", M, "5x60"),
        _gauge("inferline_queue_depth", M, "0x20 0+3x5 15-3x5 0x30"),
        "20m",
        "12m",
    ),
    "InferlineModelNoReadyBackend": Case(
        M,
        "",
        _gauge("inferline_model_ready_backends", M, "0x60"),
        _gauge("inferline_model_ready_backends", M, "2x60"),
        _gauge("inferline_model_ready_backends", M, "2x10 0 2x50"),
        "2m",
        "0m",
        ["11m", "12m", "13m", "30m"],
    ),
    "InferlineBackendUnavailable": Case(
        MB,
        "",
        _gauge("inferline_backend_healthy", MB, "0x60"),
        _gauge("inferline_backend_healthy", MB, "1x60"),
        _gauge("inferline_backend_healthy", MB, "1x10 0x2 1x50"),
        "10m",
        "3m",
        ["11m", "12m", "13m", "30m"],
    ),
    # Three ejections in three minutes; the spike is a single ejection.
    "InferlineBackendFlapping": Case(
        MB,
        "3",
        _gauge("inferline_backend_ejections_total", MB, "0 1 2 3 3x60"),
        _gauge("inferline_backend_ejections_total", MB, "0x60"),
        _gauge("inferline_backend_ejections_total", MB, "0x10 1x50"),
        "5m",
        "2m",
    ),
    "InferlineBackendMetricsStale": Case(
        MB,
        "30s",
        _gauge("inferline_backend_load_age_seconds", MB, "30x60"),
        _gauge("inferline_backend_load_age_seconds", MB, "0.3x60"),
        _gauge("inferline_backend_load_age_seconds", MB, "0.3x10 30 0.3x50"),
        "5m",
        "1m",
        ["11m", "12m", "13m", "30m"],
    ),
    # 10% of requests end upstream_error (a 502). Healthy: 1%. Spike: 3 minutes at 50%.
    "InferlineErrorRatioHigh": Case(
        M,
        "10%",
        _requests("0+90x60", "0+10x60", "502", "upstream_error"),
        _requests("0+99x60", "0+1x60", "502", "upstream_error"),
        _requests("0+90x60", "0x20 50 100 150 150x40", "502", "upstream_error"),
        "15m",
        "8m",
    ),
    # 5xx over 2-minute windows, for 5 minutes; the spike: 2 minutes at 50%.
    "InferlineHTTP5xxHigh": Case(
        M,
        "10%",
        _requests("0+90x60", "0+10x60", "503", "no_backend"),
        _requests("0+99x60", "0+1x60", "503", "no_backend"),
        _requests("0+90x60", "0x20 50 100 100x40", "503", "no_backend"),
        "10m",
        "4m",
    ),
    "InferlineRejectionsHigh": Case(
        {"model": "smollm2", "outcome": "rate_limited"},
        "20%",
        _requests("0+80x60", "0+20x60", "429", "rate_limited", backend="none"),
        _requests("0+98x60", "0+2x60", "429", "rate_limited", backend="none"),
        _requests("0+80x60", "0x20 80 160 240 240x40", "429", "rate_limited", backend="none"),
        "15m",
        "8m",
    ),
    "InferlineLimitStoreDown": Case(
        {"store": "redis"},
        "",
        _gauge("inferline_limit_store_up", {"store": "redis"}, "0x60"),
        _gauge("inferline_limit_store_up", {"store": "redis"}, "1x60"),
        _gauge("inferline_limit_store_up", {"store": "redis"}, "1x10 0 1x50"),
        "2m",
        "0m",
        ["11m", "12m", "13m", "30m"],
    ),
    "InferlineGatewayDown": Case(
        {"job": "inferline", "instance": "gw:8080"},
        "",
        _gauge("up", {"job": "inferline", "instance": "gw:8080"}, "0x60"),
        _gauge("up", {"job": "inferline", "instance": "gw:8080"}, "1x60"),
        _gauge("up", {"job": "inferline", "instance": "gw:8080"}, "1x10 0 1x50"),
        "5m",
        "1m",
        ["11m", "12m", "13m", "30m"],
    ),
}


def _annotations(name: str, case: Case) -> dict[str, str]:
    rule = next(r for r in yaml.safe_load(render_rules())["groups"][0]["rules"] if r["alert"] == name)
    ann = dict(rule["annotations"])
    summary = re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: case.labels[m.group(1)], ann["summary"])
    ann["summary"] = re.sub(r"\{\{ \$value[^}]*\}\}", case.value, summary)
    return ann


def _test_file(name: str, case: Case, rules: Path) -> dict:
    severity = next(a.severity for a in ALERTS if a.name == name)
    firing = [{"exp_labels": {**case.labels, "severity": severity}, "exp_annotations": _annotations(name, case)}]
    bad_checks = [{"eval_time": case.fire_at, "alertname": name, "exp_alerts": firing}]
    if case.pending_at is not None:
        bad_checks.insert(0, {"eval_time": case.pending_at, "alertname": name, "exp_alerts": []})
    quiet = [{"eval_time": t, "alertname": name, "exp_alerts": []} for t in case.quiet_at]
    return {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "tests": [
            {"name": f"{name}: bad", "interval": "1m", "input_series": case.bad, "alert_rule_test": bad_checks},
            {"name": f"{name}: healthy", "interval": "1m", "input_series": case.healthy, "alert_rule_test": quiet},
            {"name": f"{name}: spike", "interval": "1m", "input_series": case.spike, "alert_rule_test": quiet},
        ],
    }


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rules") / "inferline-rules.yaml"
    path.write_text(render_rules())
    return path


def test_every_alert_has_a_promtool_case() -> None:
    assert sorted(CASES) == sorted(a.name for a in ALERTS)


@pytest.mark.parametrize("name", sorted(CASES))
def test_alert_fires_after_its_for_and_not_when_healthy_or_on_a_spike(
    name: str, rules_file: Path, tmp_path: Path
) -> None:
    test = tmp_path / f"{name}.test.yaml"
    test.write_text(yaml.safe_dump(_test_file(name, CASES[name], rules_file), sort_keys=False, width=1000))
    out = subprocess.run([promtool(), "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


def test_shipped_rule_files_pass_promtool_check(tmp_path: Path) -> None:
    plain = ROOT / "deploy/prometheus/inferline-rules.yaml"
    helm = ROOT / "deploy/helm/inferline/files/inferline-rules.yaml"
    # The PrometheusRule's spec holds the same groups: check them as a plain file too.
    spec = tmp_path / "from-prometheusrule.yaml"
    spec.write_text(yaml.safe_dump(yaml.safe_load(render_prometheus_rule())["spec"]))
    out = subprocess.run(
        [promtool(), "check", "rules", str(plain), str(helm), str(spec)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count(f"SUCCESS: {len(ALERTS)} rules found") == 3


def test_runbook_links_point_at_sections_of_docs_runbooks() -> None:
    headings = {m.group(1).lower() for m in re.finditer(r"^#+ (\S+)", (ROOT / "docs/runbooks.md").read_text(), re.M)}
    for a in ALERTS:
        assert a.anchor in headings, f"docs/runbooks.md has no section {a.name}"
