"""The backends of every model: health checks, load polling, passive ejection, and their live state."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from inferline.backends.base import Backend, EngineLoad
from inferline.backends.discovery import DiscoveryChange, DnsDiscovery
from inferline.config import BackendConfig, BackendKind, ModelConfig, RoutingConfig
from inferline.metrics import BackendMetrics, GatewayMetrics, ModelMetrics
from inferline.observe.fragmentation import InFlightSequence, KvReading, estimate_fragmentation

log = logging.getLogger("inferline.pool")

_CIRCUIT_VALUE = {"closed": 0, "half_open": 1, "open": 2}


class InFlight(Protocol):
    """One of this gateway's requests on an engine, as the fragmentation estimate sees it."""

    def sequence(self, prefix_caching: bool) -> InFlightSequence: ...


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
    # For KV accounting against the engine's own gauge (gateway/saturation.py): the prompts the gauge does
    # not show yet — requests with no token so far (queued or in prefill in the engine), and requests that
    # started after the last reading — and the output our in-flight requests may still add.
    unstarted_prompt_tokens: int = 0
    started_prompt_tokens_since_poll: int = 0
    output_budget_in_flight: int = 0  # sum of the output budgets of our requests in flight
    generated_in_flight: int = 0  # tokens those requests have generated so far (counted by relay)
    last_error: str = ""
    metrics: BackendMetrics | None = field(default=None, repr=False)  # this backend's series, resolved once
    # Our requests on it, oldest first (the pipeline tracks each attempt): the fragmentation estimate's input.
    in_flight_requests: dict[int, InFlight] = field(default_factory=dict, repr=False)
    # Discovery: its address left the DNS answer; no new requests, its streams finish, then it is closed.
    draining: bool = False
    # Every backend of the same model (this one included): ejection never leaves a model with none.
    siblings: list[BackendState] = field(default_factory=list, repr=False)
    # (this process's index, number of gateway worker processes): with several, each holds only its slice
    # of the engine's slots and KV budget (gateway/saturation.py), so together they admit what one process would.
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
        return self.healthy and not self.draining and now >= self.ejected_until

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

    def note_started(self, prompt_tokens: int) -> None:
        """A request's first token arrived: its prompt is in the engine's KV (the next reading shows it)."""
        self.unstarted_prompt_tokens -= prompt_tokens
        self.started_prompt_tokens_since_poll += prompt_tokens

    def record_success(self) -> None:
        self.consecutive_failures = 0

    def record_failure(self, error: str, routing: RoutingConfig) -> None:
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
            if self.metrics is not None:
                self.metrics.ejections.inc()
                self.metrics.healthy.set(0)
            log.warning(
                "backend %s ejected for %.0fs after %d consecutive failures (last: %s)",
                self.name,
                routing.eject_cooldown_s,
                self.consecutive_failures,
                error,
            )


def fragmentation(s: BackendState, load: EngineLoad) -> float | None:
    """The engine's KV-cache fragmentation (docs/observability.md) from its reading and our requests on it."""
    b = s.backend
    per_slot = b.kind in (BackendKind.EMBEDDED, BackendKind.LLAMACPP)  # llama.cpp: one context per slot
    reading = KvReading(
        usage_ratio=load.kv_cache_usage_ratio,
        capacity_tokens=b.kv_capacity_tokens,
        block_size=b.kv_block_size,
        running=load.running,
        slot_tokens=b.context_tokens if per_slot else None,
    )
    sharing = b.prefix_caching and not per_slot
    return estimate_fragmentation(reading, [r.sequence(sharing) for r in s.in_flight_requests.values()])


def build_backend(cfg: BackendConfig, model: str, routing: RoutingConfig) -> Backend:
    if cfg.kind is BackendKind.EMBEDDED:
        from inferline.backends.llamacpp import LlamaCppEmbeddedBackend

        return LlamaCppEmbeddedBackend(cfg, model, routing)
    from inferline.backends.openai_http import OpenAIHTTPBackend

    return OpenAIHTTPBackend(cfg, model, routing)


class BackendPool:
    """Owns every backend's state and the background loops that keep it current (the data layer)."""

    def __init__(
        self,
        models: list[ModelConfig],
        routing: RoutingConfig,
        metrics: GatewayMetrics,
        worker: tuple[int, int] = (0, 1),
    ) -> None:
        self._routing = routing
        self._worker = worker  # (index, count) of gateway processes: each state holds its slice of an engine
        # Called after every health or load change, so queued requests are dispatched at once.
        self.on_change: Callable[[], None] = lambda: None
        self._metrics = metrics
        self._model_metrics: dict[str, ModelMetrics] = {}
        self.by_model: dict[str, list[BackendState]] = {}
        for m in models:
            self._model_metrics[m.name] = metrics.for_model(m.name)
            self.by_model[m.name] = [
                BackendState(
                    backend=build_backend(b, m.name, routing),
                    model=m.name,
                    eject_after_failures=routing.eject_after_failures,
                    metrics=metrics.for_backend(m.name, b.name),
                    worker=worker,
                )
                for b in m.backends
            ]
        self.states = [s for states in self.by_model.values() for s in states]
        for states in self.by_model.values():
            for s in states:
                s.siblings = states
        self._discoveries: dict[str, DnsDiscovery] = {
            m.name: DnsDiscovery(m.discovery, functools.partial(self._on_discovery, m.name), label=m.name)
            for m in models
            if m.discovery is not None
        }
        self._joining: dict[str, asyncio.Task[None]] = {}  # backend name -> its join (first health + load)
        self._retiring: dict[str, asyncio.Task[None]] = {}  # backend name -> wait for its streams, then close

    async def start(self) -> None:
        await asyncio.gather(*(s.backend.start() for s in self.states))
        # First health and load readings before we report ready, so /ready is meaningful at once.
        await asyncio.gather(*(self._check_health(s) for s in self.states))
        await asyncio.gather(*(self._poll_load(s) for s in self.states))
        for s in self.states:
            self._start_loops(s)
        await self._start_discovery()

    def _start_loops(self, s: BackendState) -> None:
        s._tasks = [
            asyncio.create_task(self._health_loop(s), name=f"health:{s.name}"),
            asyncio.create_task(self._load_loop(s), name=f"load:{s.name}"),
        ]

    async def close(self) -> None:
        await self._close_discovery()
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
        self._publish(s, time.monotonic())
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
                s.started_prompt_tokens_since_poll = 0
        self._publish(s, time.monotonic())
        self.on_change()

    def _publish(self, s: BackendState, now: float) -> None:
        """The backend's gauges and its model's ready count, from the state just updated."""
        m = s.metrics
        if m is not None:
            fresh = s.fresh_load(now, self._routing.metrics_max_age_s)
            m.kv.set(fresh.kv_cache_usage_ratio if fresh and fresh.kv_cache_usage_ratio is not None else math.nan)
            m.running.set(fresh.running if fresh else math.nan)
            m.waiting.set(fresh.waiting if fresh else math.nan)
            m.in_flight.set(s.in_flight)
            m.load_age.set(now - s.load.observed_at if s.load else math.nan)
            m.healthy.set(1 if s.ready(now) else 0)
            m.circuit.set(_CIRCUIT_VALUE[s.circuit(now)])
            frag = fragmentation(s, fresh) if fresh is not None else None
            m.fragmentation.set(math.nan if frag is None else frag)
        self._model_metrics[s.model].ready_backends.set(sum(1 for x in s.siblings if x.ready(now)))

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

    # -- discovery: engines joining and leaving as a headless Service scales ----------------------------------
    # A discovered address becomes a backend named "<model>@<host:port>" once it passed a health check and a
    # load poll; an address that leaves the DNS answer is drained: no new requests, its streams finish, then it
    # is closed and dropped. The model's list (by_model[model]) is the same list object its queue and siblings
    # hold, so appending / removing in place is seen by routing at once.

    async def _start_discovery(self) -> None:
        # First resolution before we report ready; its joins run in the background (health + load first).
        await asyncio.gather(*(d.refresh() for d in self._discoveries.values()))
        for d in self._discoveries.values():
            d.start()

    async def _close_discovery(self) -> None:
        await asyncio.gather(*(d.close() for d in self._discoveries.values()))
        for t in [*self._joining.values(), *self._retiring.values()]:
            t.cancel()
        for t in [*self._joining.values(), *self._retiring.values()]:
            with contextlib.suppress(asyncio.CancelledError):
                await t

    def _on_discovery(self, model: str, change: DiscoveryChange) -> None:
        for target in sorted(change.removed):
            self._leave(model, f"{model}@{target}")
        for target in sorted(change.added):
            self._arrive(model, target)

    def _arrive(self, model: str, target: str) -> None:
        name = f"{model}@{target}"
        retiring = self._retiring.pop(name, None)
        if retiring is not None:  # back before it finished draining: keep it
            retiring.cancel()
            for s in self.by_model[model]:
                if s.name == name:
                    s.draining = False
                    log.info("backend %s is back in discovery: no longer draining", name)
            self.on_change()
            return
        if name in self._joining or any(s.name == name for s in self.by_model[model]):
            return
        self._joining[name] = asyncio.create_task(self._join(model, target, name), name=f"join:{name}")

    async def _join(self, model: str, target: str, name: str) -> None:
        disc = self._discoveries[model].config
        cfg = BackendConfig(
            name=name,
            kind=BackendKind(disc.kind),
            url=f"{disc.scheme}://{target}",
            upstream_model=disc.upstream_model,
            max_num_seqs=disc.max_num_seqs,
            kv_admit_ratio=disc.kv_admit_ratio,
            scheduling_priority=disc.scheduling_priority,
        )
        state = BackendState(
            backend=build_backend(cfg, model, self._routing),
            model=model,
            eject_after_failures=self._routing.eject_after_failures,
            metrics=self._metrics.for_backend(model, name),
            worker=self._worker,
        )
        try:
            await state.backend.start()
            while True:  # join only once it answers its health check and its first load poll
                await self._check_health(state)
                if state.healthy:
                    await self._poll_load(state)
                    if state.load is not None:
                        break
                await asyncio.sleep(self._routing.health_interval_s)
        except asyncio.CancelledError:
            await state.backend.close()
            raise
        finally:
            self._joining.pop(name, None)
        states = self.by_model[model]
        state.siblings = states
        states.append(state)
        self.states.append(state)
        self._start_loops(state)
        log.info("backend %s joined model %s (%d backends)", name, model, len(states))
        self.on_change()

    def _leave(self, model: str, name: str) -> None:
        joining = self._joining.pop(name, None)
        if joining is not None:
            joining.cancel()
            return
        for s in self.by_model[model]:
            if s.name == name and not s.draining:
                s.draining = True
                self._publish(s, time.monotonic())
                log.info("backend %s left discovery: draining %d request(s)", name, s.in_flight)
                self._retiring[name] = asyncio.create_task(self._retire(s), name=f"retire:{name}")
                self.on_change()

    async def _retire(self, s: BackendState) -> None:
        deadline = time.monotonic() + self._routing.request_timeout_s
        # in_flight drops in the queue's release(), which signals nothing: a 10 Hz poll is cheap and local
        while s.in_flight > 0 and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        self._retiring.pop(s.name, None)
        for t in s._tasks:
            t.cancel()
        for t in s._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        with contextlib.suppress(ValueError):
            self.by_model[s.model].remove(s)
        with contextlib.suppress(ValueError):
            self.states.remove(s)
        await s.backend.close()
        self._metrics.forget_backend(s.model, s.name)
        log.info("backend %s retired", s.name)
        self.on_change()
