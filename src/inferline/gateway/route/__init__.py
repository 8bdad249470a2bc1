"""route: which engines serve a request — the model's fallback chain, the picker, and retry targets.

    base.py             Picker: one backend among those with room
    least_loaded.py     LeastLoaded: lowest KV + queue score, ties take turns (default)
    round_robin.py      RoundRobin: in turn, load ignored (a baseline)
    prefix_affinity.py  PrefixAffinity: a shared prefix back to its engine while load allows (wraps LeastLoaded)

The queue (gateway/queue.py) filters engines with room and calls the picker when it dispatches; `Router`
picks the model — the canary split first (gateway/canary.py), then the fallback chain: the first model
with a ready engine — and, after a failure before the first token, the next target: another engine of the
same model with room, then the chain's next models.
README.md describes each policy in the llm-d template. PICKERS is the one place a balancer name becomes a
picker.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from inferline.config import Balancer, RoutingConfig
from inferline.errors import BackendUnavailable, ModelNotFound
from inferline.metrics import GatewayMetrics

from .base import Picker
from .least_loaded import LeastLoaded
from .prefix_affinity import PrefixAffinity, prefix_key
from .round_robin import RoundRobin

if TYPE_CHECKING:  # the queue calls pickers and the router calls the queue: types only, no import cycle
    from ..canary import Canaries
    from ..queue import Queues
    from ..values import Delivery, Target

__all__ = [
    "PICKERS",
    "Decision",
    "LeastLoaded",
    "Picker",
    "PrefixAffinity",
    "RoundRobin",
    "Router",
    "build_picker",
    "prefix_key",
]


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


class Decision:
    """Where a request goes: the model whose engines take it, the models to try after it, its canary variant.
    (A written-out `__init__`, not a dataclass: compiled, it is C; see gateway/values.py.)"""

    __slots__ = ("chain", "model", "requested", "variant")

    def __init__(self, requested: str, model: str, chain: tuple[str, ...], variant: str | None) -> None:
        self.requested: Final = requested
        self.model: Final = model
        self.chain: Final = chain  # model first, then what a failure before the first token may move to
        self.variant: Final = variant  # "baseline" / "candidate" when the requested model has a canary

    def __repr__(self) -> str:
        return f"Decision({self.requested!r} -> {self.model!r}, chain={self.chain}, variant={self.variant!r})"


class Router:
    def __init__(
        self, chains: dict[str, list[str]], queues: Queues, routing: RoutingConfig, canaries: Canaries
    ) -> None:
        self._chains = chains  # model -> [model, *fallbacks]
        self._queues = queues
        self._routing = routing
        self._canaries = canaries
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

    def resolve(self, model: str, session: str | None = None, api_key: str | None = None) -> Decision:
        """The canary split, then the fallback chain: the first model with a ready engine takes the request."""
        chain = self.chain(model)
        served, variant = self._canaries.choose(model, session, api_key)
        if served != model:
            chain = [served, *chain]  # the candidate first; the baseline (and its fallbacks) if it cannot serve
        now = time.monotonic()
        for i, name in enumerate(chain):
            if self._queues.any_ready(name, now):
                return Decision(model, name, tuple(chain[i:]), variant)
        raise BackendUnavailable(
            f"no backend of model {model!r}"
            + (f" or its fallbacks ({', '.join(chain[1:])})" if len(chain) > 1 else "")
            + " is ready",
            retry_after_s=5,
        )

    def failed(self, decision: Decision, target: Target, error: str) -> None:
        """An attempt failed because of the engine: count it towards ejection (the circuit breaker)."""
        target.state.record_failure(error, self._routing)
        self._canaries.observe(decision.requested, target.model, ok=False)

    def succeeded(self, decision: Decision, target: Target, delivery: Delivery) -> None:
        target.state.record_success()
        if decision.variant is None:
            return
        ttft_s = tokens_per_s = None
        if delivery.first_token_ns:
            ttft_s = (delivery.first_token_ns - delivery.arrival_ns) / 1e9
            span_s = (delivery.last_token_ns - delivery.first_token_ns) / 1e9
            if delivery.completion_tokens > 1 and span_s > 0:
                tokens_per_s = (delivery.completion_tokens - 1) / span_s
            elif delivery.completion_tokens and ttft_s > 0:  # a whole (non-stream) answer: tokens over its time
                tokens_per_s = delivery.completion_tokens / ttft_s
        self._canaries.observe(decision.requested, target.model, True, ttft_s, tokens_per_s)

    def retry(self, decision: Decision, failed: Target, tried: set[str]) -> Target | None:
        """After a failure before the first token: another engine with room now, along the chain."""
        chain = decision.chain
        for name in chain[chain.index(failed.model) :]:
            target = self._queues.try_other(name, tried, failed)
            if target is not None:
                if target.state.metrics is not None:
                    target.state.metrics.retries.inc()
                return target
        return None
