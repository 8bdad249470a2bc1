"""One simulated engine in simulated time: inferline's sim Scheduler, stepped by the discrete-event loop.

Each step is planned with `Scheduler.schedule()` when the previous one ends and applied with
`complete()` at its end, exactly as `inferline sim` does in real time. Stretches where every running
sequence just decodes (nothing to admit, nothing finishing) are jumped over in one event with
`Scheduler.decode_run()`; a request that arrives in the middle of such a stretch cuts it at the next
step boundary, so it joins the batch at the same step it would have joined one step at a time.

Busy time (a step executing) is integrated exactly: it is the simulated DCGM_FI_DEV_GPU_UTIL.
"""

from __future__ import annotations

from collections.abc import Callable

from inferline.sim.profiles import Profile
from inferline.sim.scheduler import DecodeRun, RequestState, Scheduler, SimRequest, Step

__all__ = ["VirtualEngine"]

Listener = Callable[["VirtualEngine", SimRequest, float], None]


class VirtualEngine:
    """A Scheduler plus its clock. The event loop calls `advance(t)` at `next_event_s`."""

    def __init__(self, profile: Profile, name: str, on_first_token: Listener, on_finish: Listener) -> None:
        self.profile = profile
        self.name = name
        self.scheduler = Scheduler(profile)
        self._on_first_token = on_first_token
        self._on_finish = on_finish
        self._step: Step | None = None
        self._run: DecodeRun | None = None
        self._run_steps = 0  # steps of the run applied at its end (cut short when a request arrives)
        self.step_start_s = 0.0
        self.next_event_s: float | None = None  # when the step (or run) in progress ends
        self.version = 0  # bumped whenever next_event_s changes, to drop stale heap entries
        self.steps = 0
        self.runs = 0
        self._busy_s = 0.0
        self._busy_since: float | None = None
        self._pending_advance = False  # inside advance(): listeners may add requests; advance plans after them

    # -- state the gateway and the metrics read ---------------------------------------------------------------

    @property
    def running(self) -> int:
        return len(self.scheduler.running)

    @property
    def waiting(self) -> int:
        return len(self.scheduler.waiting)

    @property
    def kv_usage_ratio(self) -> float:
        return self.scheduler.kv_usage_ratio

    @property
    def kv_capacity_tokens(self) -> int:
        return self.profile.kv_tokens

    def busy_integral(self, now_s: float) -> float:
        """Seconds spent executing steps up to NOW_S."""
        if self._busy_since is None:
            return self._busy_s
        return self._busy_s + (now_s - self._busy_since)

    @property
    def idle(self) -> bool:
        return self.next_event_s is None

    # -- events -----------------------------------------------------------------------------------------------

    def add(self, req: SimRequest, now_s: float) -> None:
        """A request arrives at the engine; it starts at the next step boundary (now, if idle)."""
        req.arrival_s = now_s
        self.scheduler.add(req)
        if self._run is not None:
            self._cut_run(now_s)
        elif self.next_event_s is None and not self._pending_advance:
            self._plan(now_s)

    def advance(self, now_s: float) -> None:
        """The step (or run) in progress ends at NOW_S: apply it, tell the listeners, plan the next."""
        self._pending_advance = True
        try:
            if self._run is not None:
                _run, steps = self._run, self._run_steps
                self._run = None
                self.steps += steps
                finished = self.scheduler.apply_decode_run(steps, now_s)
                for req in finished:
                    self._on_finish(self, req, now_s)
            elif self._step is not None:
                step = self._step
                self._step = None
                self.steps += 1
                for req in self.scheduler.complete(step, now_s):
                    if req.num_output == 1:
                        self._on_first_token(self, req, now_s)
                    if req.state is RequestState.FINISHED:
                        self._on_finish(self, req, now_s)
        finally:
            self._pending_advance = False
        self.next_event_s = None
        self._plan(now_s)

    def abort_all(self, now_s: float) -> list[SimRequest]:
        """The pod is killed: every request is dropped (returned so the caller can account for them)."""
        sched = self.scheduler
        dropped = [r for r in sched.running]
        while (w := sched.waiting.peek()) is not None:
            dropped.append(w)
            sched.abort(w)
        for r in list(sched.running):
            sched.abort(r)
        self._step = self._run = None
        self._stop_busy(now_s)
        self.next_event_s = None
        self.version += 1
        return dropped

    # -- internals --------------------------------------------------------------------------------------------

    def _plan(self, now_s: float) -> None:
        sched = self.scheduler
        if not sched.has_work:
            self._stop_busy(now_s)
            self.version += 1
            return
        run = sched.decode_run()
        if run is not None and run.steps > 1:
            self._run, self._run_steps = run, run.steps
            self.step_start_s = now_s
            self.next_event_s = now_s + run.elapsed_s(run.steps)
            self.runs += 1
        else:
            step = sched.schedule(now_s)
            if not step.work:
                raise RuntimeError(f"engine {self.name}: a request can never be scheduled (too large for the profile?)")
            self._step = step
            self.step_start_s = now_s
            self.next_event_s = now_s + step.duration_s
        if self._busy_since is None:
            self._busy_since = now_s
        self.version += 1

    def _cut_run(self, now_s: float) -> None:
        """A request arrived during a decode run: end the run at the first step boundary at or after NOW_S."""
        run = self._run
        assert run is not None
        elapsed = now_s - self.step_start_s
        done = run.steps_within(elapsed)
        # mid-step: that step finishes first; exactly at a boundary: the request joins the step starting now
        keep = min(run.steps, done + 1 if run.elapsed_s(done) < elapsed else max(done, 1))
        if keep < self._run_steps:
            self._run_steps = keep
            self.next_event_s = self.step_start_s + run.elapsed_s(keep)
            self.version += 1

    def _stop_busy(self, now_s: float) -> None:
        if self._busy_since is not None:
            self._busy_s += now_s - self._busy_since
            self._busy_since = None
