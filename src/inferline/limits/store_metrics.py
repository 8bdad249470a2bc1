"""The shared stores' health on /metrics: inferline_limit_store_{up,circuit_state,errors_total}{store}.

A collector read at scrape time (nothing is updated on the request path). `store` is the store's role:
"limits" (rate limits and budgets) or "cache" (the response cache). A memory store has no outage and no
breaker: always up 1, circuit 0, errors 0. Registered on the gateway's registry with
`register_store_metrics(registry, limit_store, cache)`.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .breaker import StoreBreaker

__all__ = ["StoreMetricsCollector", "register_store_metrics"]


def _breaker_of(store: object) -> StoreBreaker | None:
    breaker = getattr(store, "breaker", None)
    return breaker if isinstance(breaker, StoreBreaker) else None


class StoreMetricsCollector(Collector):
    """Reads each store's breaker when Prometheus scrapes; stores without one report healthy."""

    def __init__(self, stores: dict[str, object]) -> None:
        self._stores = stores

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "inferline_limit_store_up",
            "1 while the store answers (a memory store always); 0 from a failure until a call succeeds again.",
            labels=["store"],
        )
        state = GaugeMetricFamily(
            "inferline_limit_store_circuit_state",
            "Circuit breaker around the store: 0 closed, 1 half-open (one trial call), 2 open (skipped).",
            labels=["store"],
        )
        errors = CounterMetricFamily(
            "inferline_limit_store_errors",
            "Store calls that failed or timed out (calls skipped by an open circuit are not counted).",
            labels=["store"],
        )
        for name, store in self._stores.items():
            breaker = _breaker_of(store)
            if breaker is None:
                up.add_metric([name], 1.0)
                state.add_metric([name], 0.0)
                errors.add_metric([name], 0.0)
            else:
                up.add_metric([name], 1.0 if breaker.up else 0.0)
                state.add_metric([name], float(breaker.state))
                errors.add_metric([name], float(breaker.errors_total))
        yield up
        yield state
        yield errors

    def describe(self) -> Iterator[Metric]:
        return self.collect()


def register_store_metrics(registry: CollectorRegistry, limit_store: object, cache: object | None) -> None:
    """Expose the limit store (and the response cache, when enabled) on `registry`."""
    stores: dict[str, object] = {"limits": limit_store}
    if cache is not None:
        stores["cache"] = cache
    registry.register(StoreMetricsCollector(stores))
