"""The backends of every model: health checks, load polling, passive ejection, and their live state."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from inferline.backends.base import Backend, EngineLoad
from inferline.config import BackendConfig, BackendKind, InferlineConfig, RoutingConfig
from inferline.metrics import GatewayMetrics

log = logging.getLogger("inferline.pool")

_CIRCUIT_VALUE = {"closed": 0, "half_open": 1, "open": 2}


@dataclass(slots=True)
class BackendState:
    """What the gateway knows about one backend. Changed only on the event loop, never across an await."""

    backend: Backend
    model: str
    healthy: bool = False
    consecutive_failures: int = 0
    ejected_until: float = 0.0
    load: EngineLoad | None = None
    in_flight: int = 0
    # Dispatched since the last load reading: the engine's counts do not include them yet.
    dispatched_since_poll: int = 0
    completed_since_poll: int = 0
    # prompt + expected output of our requests in flight on it: what they will hold in its KV cache at most
    reserved_kv_tokens: int = 0
    last_error: str = ""
    # Every backend of the same model (this one included): ejection never leaves a model with none.
    siblings: list[BackendState] = field(default_factory=list, repr=False)
    # (this process's index, number of gateway worker processes): with several, each holds only its slice
    # of the engine's slots and KV budget (admit.has_room), so together they admit what one process would.
    worker: tuple[int, int] = (0, 1)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.backend.name

    # Circuit breaker: closed (normal) -> open (ejected for the cool-down after N consecutive failures)
    # -> half-open (cool-down over, failures not yet cleared: one trial request at a time) -> closed on
    # its success, open again on its failure.
    eject_after_failures: int = 3

    def ready(self, now: float) -> bool:
        return self.healthy and now >= self.ejected_until

    def circuit(self, now: float) -> str:
        if now < self.ejected_until:
            return "open"
        if self.consecutive_failures >= self.eject_after_failures:
            return "half_open"
        return "closed"

    def fresh_load(self, now: float, max_age_s: float) -> EngineLoad | None:
        load = self.load
        if load is None or now - load.observed_at > max_age_s:
            return None
        return load

    def score(self, now: float, max_age_s: float) -> float:
        """Lower is better. KV use and queue from the engine; unknown load never looks idle.

        Between two polls the engine's count moves with what we dispatched and what finished since,
        so a burst spreads instead of herding onto the engine that looked least loaded at the last poll
        (measured: without it, least-loaded routing lost to round-robin at 48 req/s on 4 engines).
        """
        seqs = max(1, self.backend.max_num_seqs)
        local = self.in_flight / seqs
        load = self.fresh_load(now, max_age_s)
        if load is None:
            return 1.0 + local  # unknown: as busy as a full engine, plus what we know we sent
        since_poll = self.dispatched_since_poll - self.completed_since_poll
        queue = (max(0, load.running + since_poll) + 2 * load.waiting) / seqs
        kv = load.kv_cache_usage_ratio or 0.0
        return max(kv + queue, local)

    def record_success(self) -> None:
        self.consecutive_failures = 0

    def record_failure(self, error: str, routing: RoutingConfig, metrics: GatewayMetrics) -> None:
        self.consecutive_failures += 1
        self.last_error = error
        now = time.monotonic()
        if self.consecutive_failures >= routing.eject_after_failures and now >= self.ejected_until:
            if not any(s is not self and s.ready(now) for s in self.siblings):
                # Ejecting the last ready backend would turn a transient error into an outage (every queued
                # request answered 503): stay half-open instead — one trial at a time until one succeeds.
                # A dead engine is still taken out by the health check.
                log.warning(
                    "backend %s failing (%s) but it is the model's last ready backend: not ejected", self.name, error
                )
                return
            self.ejected_until = now + routing.eject_cooldown_s
            metrics.ejections.labels(self.name).inc()
            metrics.backend_healthy.labels(self.name).set(0)
            log.warning(
                "backend %s ejected for %.0fs after %d consecutive failures (last: %s)",
                self.name,
                routing.eject_cooldown_s,
                self.consecutive_failures,
                error,
            )


def build_backend(cfg: BackendConfig, model: str, routing: RoutingConfig) -> Backend:
    if cfg.kind is BackendKind.EMBEDDED:
        from inferline.backends.llamacpp import LlamaCppEmbeddedBackend

        return LlamaCppEmbeddedBackend(cfg, model, routing)
    from inferline.backends.openai_http import OpenAIHTTPBackend

    return OpenAIHTTPBackend(cfg, model, routing)


class BackendPool:
    """Owns every backend's state and the background loops that keep it current."""

    def __init__(self, config: InferlineConfig, metrics: GatewayMetrics) -> None:
        self._routing = config.routing
        # Called after every health or load change, so queued requests are dispatched at once.
        self.on_change: Callable[[], None] = lambda: None
        self._metrics = metrics
        self.by_model: dict[str, list[BackendState]] = {}
        for m in config.models:
            self.by_model[m.name] = [
                BackendState(
                    backend=build_backend(b, m.name, config.routing),
                    model=m.name,
                    eject_after_failures=config.routing.eject_after_failures,
                )
                for b in m.backends
            ]
        self.states = [s for states in self.by_model.values() for s in states]
        for states in self.by_model.values():
            for s in states:
                s.siblings = states

    async def start(self) -> None:
        await asyncio.gather(*(s.backend.start() for s in self.states))
        # First health and load readings before we report ready, so /ready is meaningful at once.
        await asyncio.gather(*(self._check_health(s) for s in self.states))
        await asyncio.gather(*(self._poll_load(s) for s in self.states))
        for s in self.states:
            s._tasks = [
                asyncio.create_task(self._health_loop(s), name=f"health:{s.name}"),
                asyncio.create_task(self._load_loop(s), name=f"load:{s.name}"),
            ]

    async def close(self) -> None:
        for s in self.states:
            for t in s._tasks:
                t.cancel()
        for s in self.states:
            for t in s._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        await asyncio.gather(*(s.backend.close() for s in self.states), return_exceptions=True)

    def ready_models(self) -> dict[str, bool]:
        now = time.monotonic()
        return {m: any(s.ready(now) for s in states) for m, states in self.by_model.items()}

    async def _health_loop(self, s: BackendState) -> None:
        while True:
            await asyncio.sleep(self._routing.health_interval_s)
            await self._check_health(s)

    async def _check_health(self, s: BackendState) -> None:
        try:
            ok = await s.backend.health()
        except Exception as exc:  # a health probe must never kill its loop
            log.warning("health check of %s raised %r", s.name, exc)
            ok = False
        if ok != s.healthy:
            log.info("backend %s is now %s", s.name, "healthy" if ok else "unhealthy")
        s.healthy = ok
        if not ok:
            s.load = None  # a dead engine's last load must not linger as if current
        self._metrics.backend_healthy.labels(s.name).set(1 if s.ready(time.monotonic()) else 0)
        self.on_change()

    async def _load_loop(self, s: BackendState) -> None:
        while True:
            await asyncio.sleep(self._routing.load_interval_s)
            await self._poll_load(s)

    async def _poll_load(self, s: BackendState) -> None:
        if s.healthy:
            try:
                load = await s.backend.load()
            except Exception as exc:
                log.debug("load poll of %s raised %r", s.name, exc)
                load = None
            if load is not None:
                s.load = load
                s.dispatched_since_poll = s.completed_since_poll = 0
        now = time.monotonic()
        fresh = s.fresh_load(now, self._routing.metrics_max_age_s)
        m = self._metrics
        m.backend_kv.labels(s.name).set(
            fresh.kv_cache_usage_ratio if fresh and fresh.kv_cache_usage_ratio is not None else math.nan
        )
        m.backend_running.labels(s.name).set(fresh.running if fresh else math.nan)
        m.backend_waiting.labels(s.name).set(fresh.waiting if fresh else math.nan)
        m.backend_in_flight.labels(s.name).set(s.in_flight)
        m.backend_load_age.labels(s.name).set(now - s.load.observed_at if s.load else math.nan)
        m.backend_healthy.labels(s.name).set(1 if s.ready(now) else 0)
        m.backend_circuit.labels(s.name).set(_CIRCUIT_VALUE[s.circuit(now)])
        self.on_change()

    def snapshot(self) -> list[dict[str, object]]:
        now = time.monotonic()
        out: list[dict[str, object]] = []
        for s in self.states:
            fresh = s.fresh_load(now, self._routing.metrics_max_age_s)
            out.append(
                {
                    "name": s.name,
                    "model": s.model,
                    "kind": s.backend.kind.value,
                    "healthy": s.healthy,
                    "ready": s.ready(now),
                    "ejected_for_s": round(max(0.0, s.ejected_until - now), 2),
                    "consecutive_failures": s.consecutive_failures,
                    "circuit": s.circuit(now),
                    "running": fresh.running if fresh else None,
                    "waiting": fresh.waiting if fresh else None,
                    "kv_cache_usage_ratio": fresh.kv_cache_usage_ratio if fresh else None,
                    "load_age_s": round(now - s.load.observed_at, 3) if s.load else None,
                    "in_flight": s.in_flight,
                    "reserved_kv_tokens": s.reserved_kv_tokens,
                    "kv_capacity_tokens": s.backend.kv_capacity_tokens,
                    "max_num_seqs": s.backend.max_num_seqs,
                    "context_tokens": s.backend.context_tokens,
                    "last_error": s.last_error or None,
                }
            )
        return out
