"""One simulated engine in time: drives the Scheduler step by step on the asyncio loop and keeps its metrics.

Each step is planned, then the loop sleeps the step's model time (times `time_scale`), then the step
is applied and every request that got a token hears about it through its TokenSink. Step deadlines
are kept on an ideal clock, so late wake-ups (epoll rounds sleeps to 1 ms; a busy machine deschedules
the process for a few ms) are made up by the following steps instead of slowing the engine down.
Catching up is bounded: a loop more than max(_MIN_LAG_S, two steps) behind restarts its clock, so
at most about two steps ever run back to back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass

from inferline.sim.gpu import BusyMeter
from inferline.sim.metrics import EngineMetrics
from inferline.sim.profiles import Profile
from inferline.sim.scheduler import RequestState, Scheduler, SchedulingPolicy, SimRequest, TokenSink

__all__ = ["OutputLen", "SimEngine"]

log = logging.getLogger(__name__)

_MIN_LAG_S = 0.005


@dataclass(frozen=True, slots=True)
class OutputLen:
    """How many tokens a request produces: `max` (= max_tokens, finish "length"), `uniform` (1..max_tokens),
    or `exp:MEAN` (exponential with that mean, at least 1, capped at max_tokens). Shorter ends with "stop"."""

    kind: str = "max"
    mean: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> OutputLen:
        kind, _, arg = spec.partition(":")
        if kind in ("max", "uniform") and not arg:
            return cls(kind)
        if kind == "exp":
            try:
                mean = float(arg)
            except ValueError:
                mean = 0.0
            if mean >= 1:
                return cls(kind, mean)
        raise ValueError(f"output length spec must be max, uniform or exp:MEAN (MEAN >= 1); got {spec!r}")

    def sample(self, rng: random.Random, max_tokens: int) -> int:
        if self.kind == "uniform":
            return rng.randint(1, max_tokens)
        if self.kind == "exp":
            return min(max_tokens, 1 + int(rng.expovariate(1.0 / self.mean)))
        return max_tokens


class SimEngine:
    """A simulated engine: submit requests, they get tokens on the model's schedule through their sink."""

    def __init__(
        self,
        profile: Profile,
        *,
        model: str = "smollm2",
        seed: int = 0,
        time_scale: float = 1.0,
        policy: SchedulingPolicy = SchedulingPolicy.FCFS,
        output_len: OutputLen = OutputLen(),
        prefix_caching: bool = False,
    ) -> None:
        if time_scale < 0:
            raise ValueError(f"time_scale must be >= 0; got {time_scale}")
        self.profile = profile
        self.model = model
        self.time_scale = time_scale
        self.output_len = output_len
        self.scheduler = Scheduler(profile, policy, prefix_caching=prefix_caching)
        self.metrics = EngineMetrics(
            model, kv_blocks=profile.kv_blocks, block_size=profile.block_size, prefix_caching=prefix_caching
        )
        # Wall time inside steps: the simulated GPU's utilization (sim/gpu.py).
        self.busy = BusyMeter()
        self._rng = random.Random(seed)
        self._wake = asyncio.Event()
        self._stalled = False
        self._task: asyncio.Task[None] | None = None

    @property
    def policy(self) -> SchedulingPolicy:
        return self.scheduler.policy

    @property
    def prefix_caching(self) -> bool:
        return self.scheduler.prefix_cache is not None

    @property
    def max_model_len(self) -> int:
        return self.scheduler.max_model_len

    @property
    def alive(self) -> bool:
        """The step loop runs (False before start, after close, or if it died)."""
        return self._task is not None and not self._task.done()

    @property
    def num_running(self) -> int:
        return len(self.scheduler.running)

    @property
    def num_waiting(self) -> int:
        return len(self.scheduler.waiting)

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the step loop on the running event loop (idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"sim-engine-{self.model}")

    async def close(self) -> None:
        """Stop the step loop and drop every request (as a killed engine would)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        sched = self.scheduler
        for req in list(sched.running):
            self.abort(req)
        while (waiting := sched.waiting.peek()) is not None:
            self.abort(waiting)

    def stall(self, stalled: bool = True) -> None:
        """Stall: finish the current step, then compute nothing (streams stay open and silent)."""
        self._stalled = stalled
        if not stalled:
            self._wake.set()

    # -- requests --------------------------------------------------------------------------------------------

    def submit(
        self,
        request_id: str,
        prompt_tokens: int,
        max_tokens: int,
        *,
        sink: TokenSink | None = None,
        priority: int = 0,
        min_tokens: int = 0,
        ignore_eos: bool = False,
        block_hashes: tuple[int, ...] = (),
    ) -> SimRequest:
        """Queue a request; its output length is drawn now, in arrival order, from the seeded generator."""
        n = self.output_len.sample(self._rng, max_tokens)  # always drawn, so ignore_eos keeps the sequence
        if ignore_eos:
            n = max_tokens
        req = SimRequest(
            request_id=request_id,
            prompt_tokens=prompt_tokens,
            max_tokens=max_tokens,
            output_len=min(max_tokens, max(n, min_tokens)),
            priority=priority,
            arrival_s=time.monotonic(),
            sink=sink,
            block_hashes=block_hashes,
        )
        self.scheduler.add(req)
        self._wake.set()
        return req

    def abort(self, req: SimRequest) -> None:
        """The client went away: free the request's slot and KV blocks at once."""
        if self.scheduler.abort(req):
            self.metrics.success["abort"].inc()

    def render_metrics(self) -> bytes:
        s = self.scheduler
        return self.metrics.render(
            len(s.running), len(s.waiting), s.kv_usage_ratio, s.kv_occupancy().fragmentation_ratio
        )

    # -- the step loop ---------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._steps()
        except Exception:
            log.exception("sim engine %s: step loop failed; the engine is dead", self.model)
            raise

    async def _steps(self) -> None:
        # time.monotonic, not loop.time(): uvloop's clock has 1 ms resolution and is cached per iteration.
        clock = time.monotonic
        sched = self.scheduler
        scale = self.time_scale
        deadline = clock()
        while True:
            if self._stalled or not sched.has_work:
                self._wake.clear()
                await self._wake.wait()
                deadline = clock()
                continue
            now = clock()
            step = sched.schedule(now)
            if step.cache_queries:
                self.metrics.prefix_cache_queries.inc(step.cache_queries)
                self.metrics.prefix_cache_hits.inc(step.cache_hits)
            if not step.work:  # nothing fits (cannot happen with a sane profile): wait for a change
                self._wake.clear()
                await self._wake.wait()
                continue
            step_s = step.duration_s * scale
            deadline = max(deadline, now - max(_MIN_LAG_S, 2 * step_s)) + step_s
            delay = deadline - now
            self.busy.begin(now)
            try:
                await asyncio.sleep(delay if delay > 0 else 0)
            finally:
                now = clock()
                self.busy.end(now)
            emitted = sched.complete(step, now)
            if step.preempted:
                self.metrics.preemptions.inc(step.preempted)
            if emitted:
                self._emit(emitted)

    def _emit(self, emitted: list[SimRequest]) -> None:
        m = self.metrics
        m.generation_tokens.inc(len(emitted))
        for req in emitted:
            if req.num_output == 1:
                m.prompt_tokens.inc(req.prompt_tokens)
                m.ttft.observe(req.first_token_s - req.arrival_s)
            if req.state is RequestState.FINISHED:
                m.e2e.observe(req.finish_s - req.arrival_s)
                m.queue_time.observe(req.scheduled_s - req.arrival_s)
                m.success[req.finish_reason].inc()
            sink = req.sink
            if sink is not None:
                try:
                    sink.on_token(req)
                except Exception:
                    log.exception("sim: token sink failed for %s; aborting it", req.request_id)
                    self.abort(req)
