"""Metric collection between the simulated cluster and the autoscaler: exporters, Prometheus scrapes, the adapter.

The delay an autoscaler sees is built the way it is built in a cluster:
  - the DCGM exporter refreshes each GPU's utilization every `dcgm_interval_s` (dcgm-exporter's
    collect interval, 30 s by default), as the busy fraction of the `gpu_util_window_s` before;
  - vLLM and the gateway compute their gauges when scraped;
  - Prometheus scrapes every target every `scrape_interval_s`;
  - the custom/external metrics adapter (prometheus-adapter, or KEDA's metrics server) answers the HPA
    with the latest sample at most `adapter_delay_s` old... plus that delay (relist/caching), over an
    optional `avg_over_time` window for KEDA queries.
Instant queries see the last sample within Prometheus' 5-minute lookback.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from inferline.autoscale.quantity import milli_of_float
from inferline.autoscale.replica import MetricUnavailable, PodMetric
from inferline.autoscale.sources import RATE_WINDOW_S, Aggregation, Quantity, QueryRef, resolve_metric
from inferline.autoscale.spec import MetricSourceType, MetricSpec

__all__ = ["CollectionConfig", "MetricStore", "SimMetricsClient"]

LOOKBACK_S = 300.0  # Prometheus' default lookback delta for instant queries
_KEEP = 48  # samples kept per series (covers windows up to 48 scrapes)


@dataclass(frozen=True, slots=True)
class CollectionConfig:
    scrape_interval_s: float = 15.0
    dcgm_interval_s: float = 30.0
    gpu_util_window_s: float = 1.0
    adapter_delay_s: float = 0.0


class MetricStore:
    """Scraped samples: (pod, quantity) -> recent (time, value); gateway quantities under pod ""."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, Quantity], deque[tuple[float, float]]] = {}

    def record(self, pod: str, q: Quantity, t: float, value: float) -> None:
        key = (pod, q)
        s = self._series.get(key)
        if s is None:
            s = self._series[key] = deque(maxlen=_KEEP)
        s.append((t, value))

    def forget(self, pod: str) -> None:
        for key in [k for k in self._series if k[0] == pod]:
            del self._series[key]

    def latest(self, pod: str, q: Quantity, t: float) -> tuple[float, float] | None:
        """The newest sample at or before T within the lookback: (time, value)."""
        s = self._series.get((pod, q))
        if not s:
            return None
        for ts, v in reversed(s):
            if ts <= t:
                return (ts, v) if ts >= t - LOOKBACK_S else None
        return None

    def window_avg(self, pod: str, q: Quantity, t: float, window_s: float) -> float | None:
        """avg_over_time over (T - WINDOW_S, T]."""
        s = self._series.get((pod, q))
        if not s:
            return None
        vals = [v for ts, v in s if t - window_s < ts <= t]
        return sum(vals) / len(vals) if vals else None

    def samples(self, pod: str, q: Quantity, t: float) -> list[tuple[float, float]]:
        s = self._series.get((pod, q))
        return [x for x in s if x[0] <= t] if s else []

    def pods_with(self, q: Quantity) -> list[str]:
        return [pod for (pod, qq) in self._series if qq is q and pod]


class SimMetricsClient:
    """The HPA's view of the metrics APIs at one moment (implements hpa.MetricsClient)."""

    def __init__(
        self,
        store: MetricStore,
        now_s: float,
        pods: list[str],
        cfg: CollectionConfig,
        queries: dict[str, QueryRef] | None = None,
    ) -> None:
        self.store = store
        self.t = now_s - cfg.adapter_delay_s
        self.pods = pods  # pods the selector matches (live ones)
        self.queries = queries or {}

    def _pod_values(self, q: Quantity, window_s: float = 0.0) -> dict[str, tuple[float, float]]:
        out: dict[str, tuple[float, float]] = {}
        for pod in self.pods:
            if window_s > 0:
                v = self.store.window_avg(pod, q, self.t, window_s)
                if v is not None:
                    out[pod] = (self.t, v)
            else:
                s = self.store.latest(pod, q, self.t)
                if s is not None:
                    out[pod] = s
        return out

    def _gateway_value(self, q: Quantity, window_s: float = 0.0) -> float:
        if q is Quantity.RATE:
            return self._rate(window_s or RATE_WINDOW_S)
        v = self.store.window_avg("", q, self.t, window_s) if window_s > 0 else None
        if v is None:
            s = self.store.latest("", q, self.t)
            if s is None:
                raise MetricUnavailable(f"no sample of {q.value} yet")
            v = s[1]
        return v

    def _rate(self, window_s: float) -> float:
        """rate() of the arrivals counter over WINDOW_S: (newest - the sample at the window's start) / elapsed."""
        s = self.store.samples("", Quantity.RATE, self.t)
        if len(s) < 2:
            raise MetricUnavailable("fewer than two samples of inferline_requests_total")
        t1, c1 = s[-1]
        older = [x for x in s if x[0] >= t1 - window_s - 1e-9]
        t0, c0 = older[0]
        if t1 <= t0:
            raise MetricUnavailable("fewer than two samples of inferline_requests_total in the window")
        return (c1 - c0) / (t1 - t0)

    def pod_metrics(self, metric: MetricSpec) -> dict[str, PodMetric]:
        q = resolve_metric(metric.name)
        if not q.per_pod:
            raise MetricUnavailable(f"{metric.name} has no per-pod series")
        values = self._pod_values(q)
        if not values:
            raise MetricUnavailable(f"no pod has a {metric.name} sample")
        return {pod: PodMetric(milli_of_float(v), ts) for pod, (ts, v) in values.items()}

    def object_metric(self, metric: MetricSpec) -> int:
        return sum(self.external_metric(metric))

    def external_metric(self, metric: MetricSpec) -> list[int]:
        ref = self.queries.get(metric.name)
        if ref is not None:  # a KEDA trigger: the query's single value
            return [milli_of_float(self.evaluate(ref))]
        q = resolve_metric(metric.name)
        if not q.per_pod:
            return [milli_of_float(self._gateway_value(q))]
        values = self._pod_values(q)
        if not values:
            raise MetricUnavailable(f"no series of {metric.name}")
        return (
            [milli_of_float(v) for _, v in values.values()]
            if metric.type is not MetricSourceType.OBJECT
            else [milli_of_float(sum(v for _, v in values.values()))]
        )

    def evaluate(self, ref: QueryRef) -> float:
        """A KEDA prometheus query; an empty result is 0 (KEDA's ignoreNullValues default)."""
        if not ref.quantity.per_pod:
            try:
                return self._gateway_value(ref.quantity, ref.window_s)
            except MetricUnavailable:
                return 0.0
        vals = [v for _, v in self._pod_values(ref.quantity, ref.window_s).values()]
        if not vals:
            return 0.0
        if ref.aggregation is Aggregation.AVG:
            return sum(vals) / len(vals)
        if ref.aggregation is Aggregation.MAX:
            return max(vals)
        if ref.aggregation is Aggregation.MIN:
            return min(vals)
        return sum(vals)
