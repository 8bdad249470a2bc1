"""The HPA's metrics read from a real Prometheus: its HTTP API, and a MetricsClient over one moment's answers.

What prometheus-adapter (custom/external metrics) does for a cluster's HPA, done here for a live controller:
each metric of the HPA becomes a PromQL query (`MetricQueries`), per pod for Pods metrics (one series per
engine, matched to the pod by its `instance` label, i.e. the engine's host:port) and one value for
External/Object metrics; the values are handed over truncated to milli-units (`milli_of_float`), as the
adapter builds its quantities. `PrometheusMetrics.fetch` asks every query of one HPA pass up front (the
controller's reconcile is synchronous) and then answers `pod_metrics` / `external_metric` /
`object_metric` from what came back, raising MetricUnavailable where the query failed or matched nothing,
exactly as an adapter with no series for a metric would.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from inferline.autoscale.quantity import milli_of_float
from inferline.autoscale.replica import MetricUnavailable, PodMetric
from inferline.autoscale.sources import Quantity, resolve_metric
from inferline.autoscale.spec import MetricSourceType, MetricSpec

__all__ = [
    "MetricQueries",
    "PrometheusAPI",
    "PrometheusError",
    "PrometheusMetrics",
    "Sample",
    "Series",
]


class PrometheusError(RuntimeError):
    """Prometheus could not be asked, or answered with an error; the message says which query and why."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector (or a scalar, with no labels)."""

    labels: dict[str, str]
    t: float  # unix seconds
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    """One series of a range query: its labels and (unix seconds, value) points."""

    labels: dict[str, str]
    points: list[tuple[float, float]]


def _value(v: Any) -> float:
    try:
        return float(v)  # Prometheus spells NaN / +Inf / -Inf as strings, which float() reads
    except (TypeError, ValueError):
        return math.nan


class PrometheusAPI:
    """A small async client of Prometheus' HTTP API (/api/v1/query, /api/v1/query_range)."""

    def __init__(self, url: str, timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._client = httpx.AsyncClient(timeout=timeout_s)

    async def close(self) -> None:
        await self._client.aclose()

    async def _get(self, path: str, params: dict[str, str]) -> Any:
        try:
            r = await self._client.get(self.url + path, params=params)
        except httpx.HTTPError as exc:
            raise PrometheusError(f"{params.get('query')!r}: Prometheus unreachable ({type(exc).__name__})") from None
        try:
            body = r.json()
        except ValueError:
            raise PrometheusError(f"{params.get('query')!r}: HTTP {r.status_code}, not JSON") from None
        if r.status_code != 200 or body.get("status") != "success":
            kind = body.get("errorType", r.status_code)
            raise PrometheusError(f"{params.get('query')!r}: {kind}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str, at: float | None = None) -> list[Sample]:
        """An instant query: the vector (or scalar) at AT (default: now)."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        data = await self._get("/api/v1/query", params)
        kind, result = data.get("resultType"), data.get("result")
        if kind in ("scalar", "string"):
            return [Sample({}, float(result[0]), _value(result[1]))]
        if kind != "vector":
            raise PrometheusError(f"{expr!r}: expected an instant vector, got {kind}")
        return [Sample(dict(r["metric"]), float(r["value"][0]), _value(r["value"][1])) for r in result]

    async def samples(self, selector: str, start: float, end: float) -> list[Series]:
        """The raw samples of SELECTOR (a series selector, no function) scraped in [START, END], at their scrape
        times: `SELECTOR[Ns]` evaluated at END."""
        seconds = max(1, math.ceil(end - start))
        data = await self._get("/api/v1/query", {"query": f"{selector}[{seconds}s]", "time": f"{end:.3f}"})
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"{selector!r}: expected a range vector, got {data.get('resultType')}")
        return [
            Series(dict(r["metric"]), [(float(t), _value(v)) for t, v in r["values"] if float(t) >= start])
            for r in data.get("result", [])
        ]

    async def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[Series]:
        """A range query evaluated every STEP_S from START to END (unix seconds)."""
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step_s:g}"}
        data = await self._get("/api/v1/query_range", params)
        if data.get("resultType") != "matrix":
            raise PrometheusError(f"{expr!r}: expected a range vector, got {data.get('resultType')}")
        return [
            Series(dict(r["metric"]), [(float(t), _value(v)) for t, v in r["values"]]) for r in data.get("result", [])
        ]


@dataclass(frozen=True, slots=True)
class MetricQueries:
    """How each metric the simulator knows is asked of Prometheus (the adapter's rules, in effect).

    Per-pod quantities select the engines' own series (one per engine, `instance` = its host:port); the
    gateway's quantities are summed over the gateway job for the model.
    """

    model: str
    engines_job: str = "engines"
    dcgm_job: str = "dcgm"
    gateway_job: str = "inferline"
    rate_window: str = "1m"  # inferline_request_rate = rate(inferline_requests_total[1m])

    def per_pod(self, q: Quantity) -> str:
        names = {
            Quantity.RUNNING: "vllm:num_requests_running",
            Quantity.WAITING: "vllm:num_requests_waiting",
            Quantity.KV: "vllm:kv_cache_usage_perc",
        }
        if q is Quantity.GPU_UTIL:
            return f'DCGM_FI_DEV_GPU_UTIL{{job="{self.dcgm_job}"}}'
        if q not in names:
            raise ValueError(f"{q.value} is not a per-pod quantity")
        return f'{{__name__="{names[q]}", job="{self.engines_job}", model_name="{self.model}"}}'

    def gateway(self, q: Quantity) -> str:
        sel = f'job="{self.gateway_job}", model="{self.model}"'
        if q is Quantity.QUEUE:
            return f"sum(inferline_queue_depth{{{sel}}})"
        if q is Quantity.IN_FLIGHT:
            return f"sum(inferline_requests_in_flight{{{sel}}})"
        if q is Quantity.RATE:
            return f"sum(rate(inferline_requests_total{{{sel}}}[{self.rate_window}]))"
        raise ValueError(f"{q.value} is a per-pod quantity")

    def for_metric(self, metric: MetricSpec) -> tuple[Quantity, str]:
        q = resolve_metric(metric.name)
        return q, self.per_pod(q) if q.per_pod else self.gateway(q)


@dataclass(slots=True)
class PrometheusMetrics:
    """One HPA pass's view of the metrics APIs, answered from Prometheus (implements hpa.MetricsClient)."""

    pods: dict[str, str]  # instance (host:port) -> pod name, for the pods the HPA's selector matches
    per_pod: dict[str, dict[str, PodMetric]] = field(default_factory=dict)  # metric name -> pod -> sample
    scalar: dict[str, float] = field(default_factory=dict)  # metric name -> the summed value
    errors: dict[str, str] = field(default_factory=dict)  # metric name -> why it is unavailable

    @classmethod
    async def fetch(
        cls,
        api: PrometheusAPI,
        metrics: Sequence[MetricSpec],
        pods: Mapping[str, str],
        queries: MetricQueries,
        at: float | None = None,
    ) -> PrometheusMetrics:
        """Ask every metric of METRICS at AT (default now); failures are kept per metric, not raised."""
        out = cls(dict(pods))
        for m in metrics:
            if m.name in out.per_pod or m.name in out.scalar or m.name in out.errors:
                continue
            try:
                q, expr = queries.for_metric(m)
            except ValueError as exc:
                out.errors[m.name] = str(exc)
                continue
            try:
                samples = await api.query(expr, at)
            except PrometheusError as exc:
                out.errors[m.name] = str(exc)
                continue
            if q.per_pod:
                got: dict[str, PodMetric] = {}
                for s in samples:
                    pod = out.pods.get(s.labels.get("instance", ""))
                    if pod is not None:
                        got[pod] = PodMetric(milli_of_float(s.value), s.t)
                out.per_pod[m.name] = got
            elif samples:
                out.scalar[m.name] = sum(s.value for s in samples if math.isfinite(s.value))
            else:
                out.errors[m.name] = f"{expr} returned no series"
        return out

    def _unavailable(self, metric: MetricSpec) -> MetricUnavailable:
        return MetricUnavailable(self.errors.get(metric.name, f"no answer for {metric.name}"))

    def pod_metrics(self, metric: MetricSpec) -> dict[str, PodMetric]:
        got = self.per_pod.get(metric.name)
        if got is None:
            raise self._unavailable(metric)
        if not got:
            raise MetricUnavailable(f"no pod has a {metric.name} sample")
        return dict(got)

    def object_metric(self, metric: MetricSpec) -> int:
        return sum(self.external_metric(metric))

    def external_metric(self, metric: MetricSpec) -> list[int]:
        if metric.name in self.scalar:
            return [milli_of_float(self.scalar[metric.name])]
        got = self.per_pod.get(metric.name)
        if got is None:
            raise self._unavailable(metric)
        if not got:
            raise MetricUnavailable(f"no series of {metric.name}")
        values = [s.value for s in got.values()]
        return values if metric.type is not MetricSourceType.OBJECT else [sum(values)]
