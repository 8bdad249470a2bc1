"""inferline's Prometheus alert rules, defined once: rendered as a rules file and as a PrometheusRule object.

Every alert names a metric of the contract in `inferline.metrics` (or `up` for the gateway's own target),
carries a severity (`critical` pages, `warning` opens a ticket), a summary naming the model and backend,
and a `runbook_url` into docs/runbooks.md. Thresholds are the seed's where it gives one (TTFT 800 ms, KV
use 85%, fragmentation 20%). `for` windows are long enough that one slow minute does not page.

`render_rules(scale=...)` multiplies every duration (rate windows and `for`) by SCALE: an end-to-end test
can run the same rules in seconds instead of minutes without changing what they mean. The shipped files
are always rendered with scale 1.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml

__all__ = [
    "ALERTS",
    "RUNBOOK_BASE",
    "Alert",
    "duration",
    "render_prometheus_rule",
    "render_rules",
    "rule_groups",
]

RUNBOOK_BASE = "docs/runbooks.md"
GROUP_NAME = "inferline.alerts"
TTFT_P95_SLO_S = 0.8  # seed: alert on TTFT > 800 ms
KV_USAGE_ALERT_RATIO = 0.85  # seed: 85% KV-cache use is where admission stops
FRAGMENTATION_ALERT_RATIO = 0.20  # seed: alert on cache fragmentation > 20%
QUEUE_TIME_P95_ALERT_S = 0.5  # waiting alone eats most of the 800 ms TTFT budget
ERROR_RATIO_ALERT = 0.05
REJECTION_RATIO_ALERT = 0.10
METRICS_STALE_S = 10.0

# Outcomes that are the service's fault (docs/observability.md): not rejections (429), not the client's doing.
SERVER_ERROR_OUTCOMES = (
    "no_backend",
    "store_unavailable",
    "upstream_error",
    "upstream_timeout",
    "stream_interrupted",
    "internal_error",
)


@dataclass(frozen=True, slots=True)
class Alert:
    """One alerting rule. EXPR may hold `{w:SECONDS}` placeholders for range windows (scaled with `for`)."""

    name: str
    expr: str
    for_s: float
    severity: str
    summary: str
    description: str

    @property
    def anchor(self) -> str:
        """The runbook section's anchor: the heading is the alert name (GitHub lowercases it)."""
        return self.name.lower()


def _w(seconds: float) -> str:
    return f"{{w:{seconds:g}}}"


_ERR = "|".join(SERVER_ERROR_OUTCOMES)

ALERTS: tuple[Alert, ...] = (
    Alert(
        "InferlineTTFTHigh",
        "histogram_quantile(0.95, sum by (model, backend, le) "
        f"(rate(inferline_time_to_first_token_seconds_bucket[{_w(300)}]))) > {TTFT_P95_SLO_S}",
        600,
        "warning",
        "TTFT p95 of {{ $labels.model }} on {{ $labels.backend }} is {{ $value | humanizeDuration }} (> 800 ms)",
        "Time to first token, 95th percentile over 5 minutes, has been above 800 ms for 10 minutes.",
    ),
    Alert(
        "InferlineKVCacheUsageHigh",
        f"avg_over_time(inferline_backend_kv_cache_usage_ratio[{_w(300)}]) > {KV_USAGE_ALERT_RATIO}",
        600,
        "warning",
        "KV cache of {{ $labels.backend }} ({{ $labels.model }}) is {{ $value | humanizePercentage }} full",
        "The engine's KV-cache use, averaged over 5 minutes, has stayed above 85% (the admission threshold) "
        "for 10 minutes: requests wait for room and preemptions are likely.",
    ),
    Alert(
        "InferlineKVCacheFragmentationHigh",
        f"inferline_backend_kv_cache_fragmentation_ratio > {FRAGMENTATION_ALERT_RATIO}",
        900,
        "warning",
        "{{ $value | humanizePercentage }} of the KV cache of {{ $labels.backend }} ({{ $labels.model }}) "
        "is allocated but empty",
        "KV-cache fragmentation (allocated-but-empty KV over capacity) has been above 20% for 15 minutes.",
    ),
    Alert(
        "InferlineQueueTimeHigh",
        "histogram_quantile(0.95, sum by (model, le) "
        f"(rate(inferline_queue_time_seconds_bucket[{_w(300)}]))) > {QUEUE_TIME_P95_ALERT_S}",
        600,
        "warning",
        "Requests for {{ $labels.model }} wait {{ $value | humanizeDuration }} (p95) in the gateway queue",
        "Gateway queue time, 95th percentile over 5 minutes, has been above 500 ms for 10 minutes: "
        "the model's engines are full.",
    ),
    Alert(
        "InferlineQueueGrowing",
        f"min_over_time(inferline_queue_depth[{_w(300)}]) > 0 and deriv(inferline_queue_depth[{_w(300)}]) > 0",
        600,
        "warning",
        "The gateway queue of {{ $labels.model }} keeps growing",
        "The wait queue has not emptied in 5 minutes and has been trending up for 10 minutes: "
        "arrivals exceed what the engines serve.",
    ),
    Alert(
        "InferlineModelNoReadyBackend",
        "inferline_model_ready_backends == 0",
        60,
        "critical",
        "Model {{ $labels.model }} has no ready backend",
        "Every backend of the model is failing health checks or ejected: its requests are answered 503.",
    ),
    Alert(
        "InferlineBackendUnavailable",
        "inferline_backend_healthy == 0",
        300,
        "warning",
        "Backend {{ $labels.backend }} of {{ $labels.model }} is unhealthy or ejected",
        "The backend has failed health checks or stayed ejected for 5 minutes.",
    ),
    Alert(
        "InferlineBackendFlapping",
        f"increase(inferline_backend_ejections_total[{_w(1800)}]) >= 3",
        0,
        "warning",
        "Backend {{ $labels.backend }} of {{ $labels.model }} was ejected {{ $value | humanize }} times in 30 min",
        "The backend keeps failing requests, being ejected, and coming back.",
    ),
    Alert(
        "InferlineBackendMetricsStale",
        f"inferline_backend_load_age_seconds > {METRICS_STALE_S:g}",
        120,
        "warning",
        "Load metrics of {{ $labels.backend }} ({{ $labels.model }}) are {{ $value | humanizeDuration }} old",
        "The gateway has not read the engine's /metrics for over 10 s for 2 minutes: it routes around the "
        "engine as if it were full.",
    ),
    Alert(
        "InferlineErrorRatioHigh",
        f'sum by (model) (rate(inferline_requests_total{{outcome=~"{_ERR}"}}[{_w(300)}])) '
        f"/ sum by (model) (rate(inferline_requests_total[{_w(300)}])) > {ERROR_RATIO_ALERT}",
        600,
        "warning",
        "{{ $value | humanizePercentage }} of requests for {{ $labels.model }} fail",
        "Requests ending with a server-side outcome (" + ", ".join(SERVER_ERROR_OUTCOMES) + ") have been "
        "over 5% of all requests for 10 minutes, mid-stream failures included.",
    ),
    Alert(
        "InferlineHTTP5xxHigh",
        f'sum by (model) (rate(inferline_requests_total{{status=~"5.."}}[{_w(120)}])) '
        f"/ sum by (model) (rate(inferline_requests_total[{_w(120)}])) > {ERROR_RATIO_ALERT}",
        300,
        "critical",
        "{{ $value | humanizePercentage }} of requests for {{ $labels.model }} get a 5xx",
        "Responses with a 5xx status (over 2-minute windows) have been over 5% of all requests for 5 minutes.",
    ),
    Alert(
        "InferlineRejectionsHigh",
        f'sum by (model, outcome) (rate(inferline_requests_total{{status="429"}}[{_w(300)}])) '
        f"/ on (model) group_left () sum by (model) (rate(inferline_requests_total[{_w(300)}])) "
        f"> {REJECTION_RATIO_ALERT}",
        600,
        "warning",
        "{{ $value | humanizePercentage }} of requests for {{ $labels.model }} are rejected: {{ $labels.outcome }}",
        "429 answers with this reason have been over 10% of the model's requests for 10 minutes.",
    ),
    Alert(
        "InferlineLimitStoreDown",
        "inferline_limit_store_up == 0",
        60,
        "critical",
        "Limit store {{ $labels.store }} is unreachable",
        "The gateway cannot reach its rate-limit and budget store: requests fail closed (503 store_unavailable) "
        "or pass unmetered, as configured.",
    ),
    Alert(
        "InferlineGatewayDown",
        'up{job="inferline"} == 0',
        120,
        "critical",
        "Gateway {{ $labels.instance }} is down",
        "Prometheus cannot scrape the gateway's /metrics: the gateway is down or unreachable.",
    ),
)


def duration(seconds: float) -> str:
    """SECONDS as a Prometheus duration: 10m, 90s, 1h30m, 250ms."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out += f"{ms // size}{unit}"
            ms %= size
    return out


def _scaled(seconds: float, scale: float, floor_s: float) -> float:
    return max(floor_s, seconds * scale) if seconds > 0 else 0.0


def _expr(alert: Alert, scale: float, min_window_s: float) -> str:
    return re.sub(r"\{w:([0-9.]+)\}", lambda m: duration(_scaled(float(m.group(1)), scale, min_window_s)), alert.expr)


def rule_groups(
    *,
    scale: float = 1.0,
    min_window_s: float = 1.0,
    interval_s: float | None = None,
    runbook_base: str = RUNBOOK_BASE,
    gateway_job: str = "inferline",
) -> list[dict[str, Any]]:
    """The rule groups as data. SCALE multiplies every window and `for` (tests only; 1 ships)."""
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive number; got {scale}")
    rules = []
    for a in ALERTS:
        expr = _expr(a, scale, min_window_s).replace('job="inferline"', f'job="{gateway_job}"')
        rule: dict[str, Any] = {"alert": a.name, "expr": expr}
        if a.for_s:
            rule["for"] = duration(_scaled(a.for_s, scale, 0.001))
        rule["labels"] = {"severity": a.severity}
        rule["annotations"] = {
            "summary": a.summary,
            "description": a.description,
            "runbook_url": f"{runbook_base}#{a.anchor}",
        }
        rules.append(rule)
    group: dict[str, Any] = {"name": GROUP_NAME}
    if interval_s is not None:
        group["interval"] = duration(interval_s)
    group["rules"] = rules
    return [group]


_HEADER = "# Generated by `inferline observe rules` from src/inferline/observe/rules.py: do not edit by hand.\n"


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, width=1000, allow_unicode=True)


def render_rules(**kwargs: Any) -> str:
    """A plain Prometheus rules file (`rule_files:`), as YAML text. Keyword arguments: see rule_groups."""
    return _HEADER + _dump({"groups": rule_groups(**kwargs)})


def render_prometheus_rule(
    *, name: str = "inferline", namespace: str | None = None, labels: dict[str, str] | None = None, **kwargs: Any
) -> str:
    """The same groups as a prometheus-operator PrometheusRule object (monitoring.coreos.com/v1)."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = labels or {"app.kubernetes.io/name": "inferline", "app.kubernetes.io/component": "alerts"}
    obj = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": metadata,
        "spec": {"groups": rule_groups(**kwargs)},
    }
    return _HEADER.replace("observe rules", "observe rules --prometheus-rule") + _dump(obj)
