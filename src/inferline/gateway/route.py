"""route: model name -> a backend with room (via the model's queue), its fallbacks, and retry targets."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from inferline.backends.pool import BackendPool, BackendState
from inferline.config import Balancer, InferlineConfig
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
    kv_tokens: int = 0  # KV reserved on the backend for this request (prompt + expected output)


class Router:
    def __init__(self, config: InferlineConfig, pool: BackendPool, metrics: GatewayMetrics) -> None:
        self._max_age_s = config.routing.metrics_max_age_s
        self._routing = config.routing
        self._rr = 0
        self._metrics = metrics
        # prefix key -> backend name that served it last (bounded LRU)
        self._affinity: OrderedDict[bytes, str] = OrderedDict()
        self._chains = {m.name: [m.name, *m.fallback] for m in config.models}
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

    def pick(self, room: list[BackendState], now: float, affinity: bytes | None) -> BackendState | None:
        """Least-loaded backend among those with room; the prefix's engine instead while not much busier.

        Load-gated affinity: a prefix sticks to the engine whose prefix cache holds it only while that
        engine's score is within `affinity_max_load_gap` of the best, so one engine never takes every miss.
        """
        if not room:
            return None
        if self._routing.balancer is Balancer.ROUND_ROBIN:
            self._rr += 1
            return room[self._rr % len(room)]
        scores = {s.name: s.score(now, self._max_age_s) for s in room}
        # Equal scores rotate (not random): equal engines share load evenly, even one request at a time.
        self._rr += 1
        n = len(room)
        best = min(enumerate(room), key=lambda t: (round(scores[t[1].name] / _TIE_EPSILON), (t[0] + self._rr) % n))[1]
        if affinity is None:
            return best
        chosen = best
        previous = self._affinity.get(affinity)
        if previous is None:
            result = "new"
        elif previous in scores and scores[previous] <= scores[best.name] + self._routing.affinity_max_load_gap:
            chosen = next(s for s in room if s.name == previous)
            result = "hit"
        else:
            # The prefix's engine exists but is too busy, or has no room at all right now: a diversion.
            result = "overloaded"
        self._affinity[affinity] = chosen.name
        self._affinity.move_to_end(affinity)
        if len(self._affinity) > self._routing.affinity_entries:
            self._affinity.popitem(last=False)
        self._metrics.affinity_decisions.labels(result).inc()
        self._metrics.affinity.set(len(self._affinity))
        return chosen

    def prefix_key(self, body: dict[str, Any]) -> bytes | None:
        """Identity of a prompt's shared prefix: a hash of its first affinity_prefix_bytes of text."""
        if not self._routing.prefix_affinity:
            return None
        if "messages" in body:
            parts = []
            for m in body["messages"]:
                content = m.get("content")
                parts.append(f"{m.get('role')}\x00{content}")
            text = "\x01".join(parts)
        elif isinstance(body.get("prompt"), str):
            text = body["prompt"]
        else:
            return None
        if len(text) < self._routing.affinity_min_bytes:
            return None
        return hashlib.blake2b(text[: self._routing.affinity_prefix_bytes].encode(), digest_size=16).digest()

    def expected_output_tokens(self, model: str) -> float:
        return self._expected_output[model]

    def observe_output(self, model: str, completion_tokens: int) -> None:
        """Learn the model's typical output length for requests that give no max_tokens."""
        if completion_tokens > 0 and model in self._expected_output:
            old = self._expected_output[model]
            self._expected_output[model] = old + _OUTPUT_EWMA_WEIGHT * (completion_tokens - old)

    async def acquire(self, model: str, key: float, affinity: bytes | None = None, kv_tokens: int = 0) -> Target:
        """The first model of the chain with a healthy backend queues the request (fallback = no healthy one)."""
        chain = self.chain(model)
        now = time.monotonic()
        for name in chain:
            queue = self.queues[name]
            if queue.any_ready(now):
                return Target(await queue.acquire(key, affinity, kv_tokens), name, kv_tokens)
        raise BackendUnavailable(
            f"no backend of model {model!r}"
            + (f" or its fallbacks ({', '.join(chain[1:])})" if len(chain) > 1 else "")
            + " is ready",
            retry_after_s=5,
        )

    def retry_target(self, model: str, served: str, exclude: set[str], kv_tokens: int = 0) -> Target | None:
        """After a failure before the first token: another backend with room now, along the chain."""
        chain = self.chain(model)
        for name in chain[chain.index(served) :]:
            state = self.queues[name].try_other(exclude, kv_tokens)
            if state is not None:
                return Target(state, name, kv_tokens)
        return None

    def release(self, target: Target) -> None:
        self.queues[target.model].release(target.state, target.kv_tokens)

    def dispatch_all(self) -> None:
        for queue in self.queues.values():
            queue.dispatch()
