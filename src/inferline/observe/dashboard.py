"""inferline's Grafana dashboard, built with grafana-foundation-sdk (never hand-written JSON).

Four rows: traffic (requests/s, tokens/s, errors and rejections by reason), latency (TTFT p50/p95/p99 with
the 800 ms line, per-backend TTFT, ITL, E2E, queue time), capacity (KV use per engine with the 85% line,
fragmentation with the 20% line, running/waiting, GPU utilization and memory from DCGM, replicas from
kube-state-metrics) and routing (backend health, ejections, retries, prefix affinity, response cache,
limit store). Variables: the Prometheus data source, the model, and the Kubernetes deployments whose
replicas to show.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from grafana_foundation_sdk.builders.common import GraphThresholdsStyleConfig, VizLegendOptions
from grafana_foundation_sdk.builders.dashboard import (
    Dashboard,
    DatasourceVariable,
    QueryVariable,
    Row,
    ThresholdsConfig,
)
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.builders.timeseries import Panel as Timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import GraphThresholdsStyleMode, LegendDisplayMode, LegendPlacement
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    Threshold,
    ThresholdsMode,
    VariableRefresh,
)

from inferline.observe.rules import (
    FRAGMENTATION_ALERT_RATIO,
    KV_USAGE_ALERT_RATIO,
    SERVER_ERROR_OUTCOMES,
    TTFT_P95_SLO_S,
)

__all__ = ["DASHBOARD_UID", "PANEL_TITLES", "build_dashboard", "render_dashboard"]

DASHBOARD_UID = "inferline-overview"
_DS = DataSourceRef(type_val="prometheus", uid="${datasource}")
_M = 'model=~"$model"'
_RATE = "[$__rate_interval]"
_ERRORS = "|".join(SERVER_ERROR_OUTCOMES)


@dataclass(frozen=True, slots=True)
class _Q:
    expr: str
    legend: str


def _panel(
    title: str,
    description: str,
    queries: list[_Q],
    *,
    unit: str = "short",
    line: float | None = None,
    max_val: float | None = None,
    width: int = 8,
) -> Timeseries:
    p = (
        Timeseries()
        .title(title)
        .description(description)
        .datasource(_DS)
        .unit(unit)
        .min(0)
        .span(width)
        .height(8)
        .legend(
            VizLegendOptions().show_legend(True).display_mode(LegendDisplayMode.LIST).placement(LegendPlacement.BOTTOM)
        )
    )
    if max_val is not None:
        p = p.max(max_val)
    for i, q in enumerate(queries):
        p = p.with_target(Dataquery().expr(q.expr).legend_format(q.legend).ref_id(chr(ord("A") + i)).datasource(_DS))
    if line is not None:  # the alert threshold, drawn as a dashed red line
        p = p.thresholds(
            ThresholdsConfig()
            .mode(ThresholdsMode.ABSOLUTE)
            .steps([Threshold(value=None, color="green"), Threshold(value=line, color="red")])
        ).thresholds_style(GraphThresholdsStyleConfig().mode(GraphThresholdsStyleMode.DASHED))
    return p


def _quantiles(metric: str, by: str, qs: tuple[float, ...] = (0.5, 0.95, 0.99)) -> list[_Q]:
    """histogram_quantile of METRIC per BY (comma-separated labels), one query per quantile."""
    legend = " ".join("{{" + label.strip() + "}}" for label in by.split(","))
    return [
        _Q(
            f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{_M}}}{_RATE})))",
            f"p{round(q * 100)} {legend}",
        )
        for q in qs
    ]


def _traffic() -> list[Timeseries]:
    return [
        _panel(
            "Requests/s by status",
            "Requests finished per second, by model and HTTP status.",
            [_Q(f"sum by (model, status) (rate(inferline_requests_total{{{_M}}}{_RATE}))", "{{model}} {{status}}")],
            unit="reqps",
        ),
        _panel(
            "Tokens/s",
            "Generated (output) and prompt tokens per second, by model and backend.",
            [
                _Q(
                    f"sum by (model, backend) (rate(inferline_generation_tokens_total{{{_M}}}{_RATE}))",
                    "out {{model}} {{backend}}",
                ),
                _Q(f"sum by (model) (rate(inferline_prompt_tokens_total{{{_M}}}{_RATE}))", "prompt {{model}}"),
            ],
        ),
        _panel(
            "Errors/s by outcome",
            "Requests ending with a server-side outcome (" + ", ".join(SERVER_ERROR_OUTCOMES) + ").",
            [
                _Q(
                    f'sum by (model, outcome) (rate(inferline_requests_total{{{_M},outcome=~"{_ERRORS}"}}{_RATE}))',
                    "{{model}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            "Rejections/s by reason (429)",
            "Requests refused with 429, by reason: rate_limited, budget_exhausted, concurrency_limited, "
            "queue_full, queue_timeout.",
            [
                _Q(
                    f'sum by (model, outcome) (rate(inferline_requests_total{{{_M},status="429"}}{_RATE}))',
                    "{{model}} {{outcome}}",
                )
            ],
            unit="reqps",
        ),
        _panel(
            "In flight and queued",
            "Requests the gateway is processing, and those waiting in its queue for an engine with room.",
            [
                _Q(f"sum by (model) (inferline_requests_in_flight{{{_M}}})", "in flight {{model}}"),
                _Q(f"sum by (model) (inferline_queue_depth{{{_M}}})", "queued {{model}}"),
            ],
        ),
    ]


def _latency() -> list[Timeseries]:
    return [
        _panel(
            "TTFT p50 / p95 / p99",
            "Time to first token at the gateway (arrival to first content token). Alert line: p95 800 ms.",
            _quantiles("inferline_time_to_first_token_seconds", "model"),
            unit="s",
            line=TTFT_P95_SLO_S,
        ),
        _panel(
            "TTFT p95 by backend",
            "Which engine is slow: TTFT p95 per model and backend, against the 800 ms line.",
            _quantiles("inferline_time_to_first_token_seconds", "model, backend", (0.95,)),
            unit="s",
            line=TTFT_P95_SLO_S,
        ),
        _panel(
            "Inter-token latency",
            "Gap between consecutive content chunks relayed to the client.",
            _quantiles("inferline_inter_token_latency_seconds", "model"),
            unit="s",
        ),
        _panel(
            "End-to-end latency",
            "Arrival at the gateway to the end of the response.",
            _quantiles("inferline_e2e_request_latency_seconds", "model"),
            unit="s",
        ),
        _panel(
            "Queue time",
            "Time a request waited in the gateway's queue before dispatch to an engine.",
            _quantiles("inferline_queue_time_seconds", "model"),
            unit="s",
        ),
    ]


def _capacity() -> list[Timeseries]:
    return [
        _panel(
            "KV-cache use per engine",
            "Engine KV-cache use as the gateway last read it (NaN: unknown or stale). Line: 85%, where "
            "admission stops.",
            [_Q(f"inferline_backend_kv_cache_usage_ratio{{{_M}}}", "{{model}} {{backend}}")],
            unit="percentunit",
            line=KV_USAGE_ALERT_RATIO,
            max_val=1,
        ),
        _panel(
            "KV-cache fragmentation per engine",
            "Allocated-but-empty KV over KV capacity, estimated by the gateway (docs/observability.md). Line: 20%.",
            [_Q(f"inferline_backend_kv_cache_fragmentation_ratio{{{_M}}}", "{{model}} {{backend}}")],
            unit="percentunit",
            line=FRAGMENTATION_ALERT_RATIO,
            max_val=1,
        ),
        _panel(
            "Running / waiting per engine",
            "The engine's own counts (vLLM num_requests_running / waiting), as the gateway last read them.",
            [
                _Q(f"inferline_backend_requests_running{{{_M}}}", "running {{backend}}"),
                _Q(f"inferline_backend_requests_waiting{{{_M}}}", "waiting {{backend}}"),
            ],
        ),
        _panel(
            "GPU utilization",
            "DCGM_FI_DEV_GPU_UTIL: percent of the sample period a kernel ran (busy, not full). Engines on "
            "CPU have no GPU series.",
            [_Q("DCGM_FI_DEV_GPU_UTIL", "{{Hostname}} gpu {{gpu}}")],
            unit="percent",
            max_val=100,
        ),
        _panel(
            "GPU memory used",
            "Framebuffer used / total. vLLM reserves its share at start-up: flat while serving; KV pressure "
            "shows in the KV-cache panel, not here.",
            [
                _Q(
                    "DCGM_FI_DEV_FB_USED / (DCGM_FI_DEV_FB_USED + DCGM_FI_DEV_FB_FREE)",
                    "{{Hostname}} gpu {{gpu}}",
                )
            ],
            unit="percentunit",
            max_val=1,
        ),
        _panel(
            "Replicas",
            "Deployment replicas wanted and available (kube-state-metrics), and ready backends per model as "
            "the gateway sees them.",
            [
                _Q(
                    'sum by (deployment) (kube_deployment_spec_replicas{deployment=~"$deployment"})',
                    "wanted {{deployment}}",
                ),
                _Q(
                    'sum by (deployment) (kube_deployment_status_replicas_available{deployment=~"$deployment"})',
                    "available {{deployment}}",
                ),
                _Q(f"inferline_model_ready_backends{{{_M}}}", "ready backends {{model}}"),
            ],
        ),
    ]


def _routing() -> list[Timeseries]:
    return [
        _panel(
            "Backend health and circuit",
            "1 = passes health checks and not ejected. Circuit: 0 closed, 1 half-open, 2 open (ejected).",
            [
                _Q(f"inferline_backend_healthy{{{_M}}}", "healthy {{backend}}"),
                _Q(f"inferline_backend_circuit_state{{{_M}}}", "circuit {{backend}}"),
            ],
        ),
        _panel(
            "Ejections and retries",
            "Ejections after consecutive failures, and requests retried on another backend before the first "
            "token, per backend.",
            [
                _Q(
                    f"sum by (backend) (increase(inferline_backend_ejections_total{{{_M}}}{_RATE}))",
                    "ejected {{backend}}",
                ),
                _Q(f"sum by (backend) (rate(inferline_backend_retries_total{{{_M}}}{_RATE}))", "retries/s {{backend}}"),
            ],
        ),
        _panel(
            "Prefix affinity decisions",
            "hit: sent to the engine holding the prompt's prefix; overloaded: that engine was too busy; new.",
            [_Q(f"sum by (result) (rate(inferline_prefix_affinity_decisions_total{_RATE}))", "{{result}}")],
            unit="reqps",
        ),
        _panel(
            "Response cache",
            "Response cache lookups: hit, miss, fallback (served from cache because no engine could).",
            [_Q(f"sum by (result) (rate(inferline_cache_requests_total{_RATE}))", "{{result}}")],
            unit="reqps",
        ),
        _panel(
            "Limit store",
            "1 = the rate-limit / budget store answers. Errors per second talking to it.",
            [
                _Q("inferline_limit_store_up", "up {{store}}"),
                _Q(f"sum by (store) (rate(inferline_limit_store_errors_total{_RATE}))", "errors/s {{store}}"),
            ],
        ),
        _panel(
            "Engine metrics age",
            "Age of the last load reading per engine; above metrics_max_age_s the gateway treats it as full.",
            [_Q(f"inferline_backend_load_age_seconds{{{_M}}}", "{{backend}}")],
            unit="s",
        ),
    ]


def build_dashboard() -> Dashboard:
    """The dashboard builder (call .build() for the model)."""
    d = (
        Dashboard("inferline")
        .uid(DASHBOARD_UID)
        .description("inferline gateway, engines and GPUs: traffic, latency, capacity, routing.")
        .tags(["inferline", "llm"])
        .refresh("30s")
        .time("now-1h", "now")
        .timezone("browser")
        .with_variable(DatasourceVariable("datasource").label("Data source").type("prometheus"))
        .with_variable(
            QueryVariable("model")
            .label("Model")
            .datasource(DataSourceRef(type_val="prometheus", uid="${datasource}"))
            .query("label_values(inferline_requests_total, model)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
        .with_variable(
            QueryVariable("deployment")
            .label("Deployments (replicas)")
            .datasource(DataSourceRef(type_val="prometheus", uid="${datasource}"))
            .query("label_values(kube_deployment_spec_replicas, deployment)")
            .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
            .multi(True)
            .include_all(True)
            .all_value(".*")
        )
    )
    for title, panels in (
        ("Traffic", _traffic()),
        ("Latency", _latency()),
        ("Capacity", _capacity()),
        ("Routing", _routing()),
    ):
        d = d.with_row(Row(title))
        for p in panels:
            d = d.with_panel(p)
    return d


def render_dashboard() -> str:
    """The dashboard as Grafana JSON (what deploy/grafana/inferline-dashboard.json holds)."""
    return json.dumps(build_dashboard().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


PANEL_TITLES: tuple[str, ...] = tuple(
    p.build().title or "" for panels in (_traffic(), _latency(), _capacity(), _routing()) for p in panels
)
