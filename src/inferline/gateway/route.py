"""route: model name -> a backend with room (via the model's queue), its fallbacks, and retry targets."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from inferline.backends.pool import BackendPool, BackendState
from inferline.config import InferlineConfig
from inferline.errors import BackendUnavailable, ModelNotFound
from inferline.metrics import GatewayMetrics

from .queue import ModelQueue

# Backends whose scores differ by less than this are equally good: pick among them at random,
# so equal engines share load instead of the first one in the list taking every request.
_TIE_EPSILON = 0.05
_OUTPUT_EWMA_WEIGHT = 0.1


@dataclass(slots=True, frozen=True)
class Target:
    state: BackendState
    model: str  # the model this backend serves (differs from the request's after a fallback)


class Router:
    def __init__(self, config: InferlineConfig, pool: BackendPool, metrics: GatewayMetrics) -> None:
        self._max_age_s = config.routing.metrics_max_age_s
        self._chains = {m.name: [m.name, *m.fallback] for m in config.models}
        self._rng = random.Random()
        self.queues = {
            m.name: ModelQueue(m.name, pool.by_model[m.name], config.admission, self._max_age_s, metrics, self.pick)
            for m in config.models
        }
        self._expected_output = {m.name: float(config.admission.default_output_tokens) for m in config.models}

    def chain(self, model: str) -> list[str]:
        chain = self._chains.get(model)
        if chain is None:
            raise ModelNotFound(
                f"model {model!r} does not exist; available: {', '.join(sorted(self._chains))}", param="model"
            )
        return chain

    def pick(self, room: list[BackendState], now: float, affinity: str | None) -> BackendState | None:
        """Least-loaded backend among those with room (KV use + queue, local in-flight as a floor)."""
        if not room:
            return None
        scored = [(round(s.score(now, self._max_age_s) / _TIE_EPSILON), self._rng.random(), s) for s in room]
        return min(scored, key=lambda t: (t[0], t[1]))[2]

    def expected_output_tokens(self, model: str) -> float:
        return self._expected_output[model]

    def observe_output(self, model: str, completion_tokens: int) -> None:
        """Learn the model's typical output length for requests that give no max_tokens."""
        if completion_tokens > 0 and model in self._expected_output:
            old = self._expected_output[model]
            self._expected_output[model] = old + _OUTPUT_EWMA_WEIGHT * (completion_tokens - old)

    async def acquire(self, model: str, key: float, affinity: str | None = None) -> Target:
        """The first model of the chain with a healthy backend queues the request (fallback = no healthy one)."""
        chain = self.chain(model)
        now = time.monotonic()
        for name in chain:
            queue = self.queues[name]
            if queue.any_ready(now):
                return Target(await queue.acquire(key, affinity), name)
        raise BackendUnavailable(
            f"no backend of model {model!r}"
            + (f" or its fallbacks ({', '.join(chain[1:])})" if len(chain) > 1 else "")
            + " is ready",
            retry_after_s=5,
        )

    def retry_target(self, model: str, served: str, exclude: set[str]) -> Target | None:
        """After a failure before the first token: another backend with room now, along the chain."""
        chain = self.chain(model)
        for name in chain[chain.index(served) :]:
            state = self.queues[name].try_other(exclude)
            if state is not None:
                return Target(state, name)
        return None

    def release(self, target: Target) -> None:
        self.queues[target.model].release(target.state)

    def dispatch_all(self) -> None:
        for queue in self.queues.values():
            queue.dispatch()
