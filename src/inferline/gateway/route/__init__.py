"""route: which engines serve a request — the model's fallback chain, the picker, and retry targets.

    base.py             Picker: one backend among those with room
    least_loaded.py     LeastLoaded: lowest KV + queue score, ties take turns (default)
    round_robin.py      RoundRobin: in turn, load ignored (a baseline)
    prefix_affinity.py  PrefixAffinity: a shared prefix back to its engine while load allows (wraps LeastLoaded)

The queue (gateway/queue.py) filters engines with room and calls the picker when it dispatches; `Router`
picks the model (fallback: the first of the chain with a ready engine) and, after a failure before the
first token, the next target: another engine of the same model with room, then the chain's next models.
README.md describes each policy in the llm-d template. PICKERS is the one place a balancer name becomes a
picker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from inferline.config import Balancer, RoutingConfig
from inferline.errors import BackendUnavailable, ModelNotFound
from inferline.metrics import GatewayMetrics

from .base import Picker
from .least_loaded import LeastLoaded
from .prefix_affinity import PrefixAffinity, prefix_key
from .round_robin import RoundRobin

if TYPE_CHECKING:  # the queue calls pickers and the router calls the queue: types only, no import cycle
    from ..queue import Queues
    from ..values import Target

__all__ = ["PICKERS", "LeastLoaded", "Picker", "PrefixAffinity", "RoundRobin", "Router", "build_picker", "prefix_key"]


def _least_loaded(routing: RoutingConfig, metrics: GatewayMetrics) -> Picker:
    base = LeastLoaded(routing.metrics_max_age_s)
    return PrefixAffinity(base, routing, metrics) if routing.prefix_affinity else base


def _round_robin(routing: RoutingConfig, metrics: GatewayMetrics) -> Picker:
    return RoundRobin()


PICKERS: dict[Balancer, Callable[[RoutingConfig, GatewayMetrics], Picker]] = {
    Balancer.LEAST_LOADED: _least_loaded,
    Balancer.ROUND_ROBIN: _round_robin,
}


def build_picker(routing: RoutingConfig, metrics: GatewayMetrics) -> Picker:
    return PICKERS[routing.balancer](routing, metrics)


class Router:
    def __init__(self, chains: dict[str, list[str]], queues: Queues, routing: RoutingConfig) -> None:
        self._chains = chains  # model -> [model, *fallbacks]
        self._queues = queues
        self._routing = routing
        self.max_attempts = routing.max_attempts  # engines tried per request while no token was sent

    def check(self, model: str) -> None:
        """404 for an unknown model, before anything waits."""
        self.chain(model)

    def chain(self, model: str) -> list[str]:
        chain = self._chains.get(model)
        if chain is None:
            raise ModelNotFound(
                f"model {model!r} does not exist; available: {', '.join(sorted(self._chains))}", param="model"
            )
        return chain

    def resolve(self, model: str) -> str:
        """The model whose engines take the request: the first of the chain with a ready engine (fallback)."""
        chain = self.chain(model)
        now = time.monotonic()
        for name in chain:
            if self._queues.any_ready(name, now):
                return name
        raise BackendUnavailable(
            f"no backend of model {model!r}"
            + (f" or its fallbacks ({', '.join(chain[1:])})" if len(chain) > 1 else "")
            + " is ready",
            retry_after_s=5,
        )

    def failed(self, target: Target, error: str) -> None:
        """An attempt failed because of the engine: count it towards ejection (the circuit breaker)."""
        target.state.record_failure(error, self._routing)

    def retry(self, requested: str, failed: Target, tried: set[str]) -> Target | None:
        """After a failure before the first token: another engine with room now, along the chain."""
        chain = self.chain(requested)
        for name in chain[chain.index(failed.model) :]:
            target = self._queues.try_other(name, tried, failed)
            if target is not None:
                if target.state.metrics is not None:
                    target.state.metrics.retries.inc()
                return target
        return None
