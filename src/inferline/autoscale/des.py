"""The discrete-event loop: traffic -> gateway -> engines, pods starting and draining, metrics, the autoscaler.

Simulated time only: nothing sleeps, one event after another from a heap (arrivals are merged in from
their sorted array). Events at the same time run in the order they were scheduled; arrivals first.
What runs when (simulated seconds):
    every request            arrival -> gateway admission/queue -> engine -> first token -> finish
    every engine step        see engine.py (pure-decode stretches in one event)
    every pod transition     see lifecycle.py
    every scrape_interval    Prometheus scrapes every pod and the gateway          (phase 0)
    every dcgm_interval      the DCGM exporter refreshes GPU utilization           (phase 0)
    every sync_period        the HPA reconciles                                    (phase hpa_phase_s)
    every pollingInterval    KEDA polls its triggers (KEDA configs)               (phase hpa_phase_s)
    every probe_s            the simulator records the true state (plots, threshold breaches)
"""

from __future__ import annotations

import heapq
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from inferline.autoscale.collect import CollectionConfig, MetricStore, SimMetricsClient
from inferline.autoscale.configs import AutoscalerConfig
from inferline.autoscale.engine import VirtualEngine
from inferline.autoscale.gateway import Backend, GatewayModel
from inferline.autoscale.hpa import ControllerConfig, Decision, HorizontalController, ScaleTarget
from inferline.autoscale.keda import KedaController
from inferline.autoscale.lifecycle import Pod, PodState, PodTimings, scale_down_victims
from inferline.autoscale.sources import RATE_WINDOW_S, Aggregation, Quantity, QueryRef, parse_query, resolve_metric
from inferline.autoscale.spec import MetricSourceType, MetricTargetType
from inferline.autoscale.traffic import Traffic
from inferline.config import KV_ADMIT_RATIO, AdmissionConfig
from inferline.sim.profiles import Profile
from inferline.sim.scheduler import SimRequest

__all__ = ["OUTCOMES", "Episode", "SimRun", "SimSettings", "Simulation"]

log = logging.getLogger(__name__)

OUTCOMES = ("unfinished", "ok", "queue_full", "queue_timeout", "no_backend", "shutdown")
_OK, _SHUTDOWN = 1, 5
_OUTCOME_CODE = {name: i for i, name in enumerate(OUTCOMES)}
HPA_PHASE_S = 5.0  # the HPA's loop is not aligned with the scrapes
TRUTH_UTIL_WINDOW_S = 10.0  # the "true" GPU utilization (plots, breaches): busy share of the last 10 s

# event kinds
_ENGINE, _TIMEOUT, _POD, _HPA, _KEDA, _SCRAPE, _DCGM_PRE, _DCGM, _PROBE = range(9)
# pod transitions
_BOUND, _RUNNING, _READY, _ROUTABLE, _KILL = range(5)


@dataclass(frozen=True, slots=True)
class SimSettings:
    """Everything about the simulated cluster except the traffic and the autoscaler."""

    profile: Profile
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    kv_admit_ratio: float = KV_ADMIT_RATIO
    timings: PodTimings = field(default_factory=PodTimings)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    collection: CollectionConfig = field(default_factory=CollectionConfig)
    initial_replicas: int | None = None  # default: the autoscaler's minimum (at least 1), Ready at t=0
    slo_ttft_s: float = 0.8
    probe_s: float = 1.0
    tail_s: float = 120.0  # after the last arrival, requests get this long to finish
    seed: int = 0
    hpa_phase_s: float = HPA_PHASE_S  # the HPA's (and KEDA's) first pass, seconds after the traffic starts


@dataclass(slots=True)
class Episode:
    """A threshold breach and what followed: the scale-up decision, the first new pod Ready, full capacity."""

    breach_s: float
    replicas_from: int
    decision_s: float | None = None
    replicas_to: int | None = None
    first_ready_s: float | None = None
    capacity_s: float | None = None
    resolved_without_scaling: bool = False

    def to_json(self) -> dict[str, Any]:
        def rel(t: float | None) -> float | None:
            return None if t is None else round(t - self.breach_s, 3)

        return {
            "breach_s": round(self.breach_s, 3),
            "replicas_from": self.replicas_from,
            "replicas_to": self.replicas_to,
            "to_decision_s": rel(self.decision_s),
            "to_first_ready_s": rel(self.first_ready_s),
            "to_capacity_s": rel(self.capacity_s),
            "resolved_without_scaling": self.resolved_without_scaling,
        }


@dataclass(slots=True)
class SimRun:
    """Raw outcome of one simulation (report.py turns it into numbers, tables and plots)."""

    autoscaler: AutoscalerConfig
    settings: SimSettings
    traffic: Traffic
    outcome: np.ndarray
    dispatch_s: np.ndarray
    first_token_s: np.ndarray
    finish_s: np.ndarray
    timeline: dict[str, np.ndarray]
    decisions: list[Decision]
    episodes: list[Episode]
    pods: list[Pod]
    end_s: float
    wall_s: float
    events: int
    engine_steps: int
    decode_runs: int


class Simulation:
    """One run: TRAFFIC through a fleet scaled by AUTOSCALER, with SETTINGS."""

    def __init__(self, traffic: Traffic, autoscaler: AutoscalerConfig, settings: SimSettings) -> None:
        self.traffic = traffic
        self.autoscaler = autoscaler
        self.s = settings
        self.profile = settings.profile
        self.rng = random.Random(settings.seed)
        n = len(traffic)
        self.outcome = np.zeros(n, dtype=np.int8)
        self.dispatch_s = np.full(n, np.nan)
        self.first_s = np.full(n, np.nan)
        self.finish_s = np.full(n, np.nan)
        self.cost = (traffic.prompt_tokens + traffic.max_tokens).astype(np.int64)
        self.heap: list[tuple[float, int, int, Any, Any]] = []
        self._seq = 0
        self.events = 0
        self.now = 0.0
        self._arrived = 0  # requests arrived so far (the gateway's inferline_requests_total)
        self.end_s = traffic.duration_s
        self.store = MetricStore()
        self.gateway = GatewayModel(settings.admission, settings.kv_admit_ratio, self._on_dispatch, self._on_reject)
        self.pods: list[Pod] = []
        self.backend_of: dict[int, Backend] = {}  # id(engine) -> backend
        self.pod_of: dict[int, Pod] = {}  # id(engine) -> pod
        self.spec_replicas = 0
        self.decisions: list[Decision] = []
        self.episodes: list[Episode] = []
        self._episode: Episode | None = None
        self._dcgm_snap: dict[int, float] = {}
        self._dcgm_value: dict[str, float] = {}
        self._probe_busy: dict[int, deque[tuple[float, float]]] = {}
        self._timeline: dict[str, list[float]] = {
            k: []
            for k in (
                "t",
                "desired",
                "pods",
                "ready",
                "queue",
                "in_flight",
                "gpu_util",
                "kv",
                "running",
                "waiting",
                "breach_ratio",
            )
        }
        ctl = settings.controller
        self.keda: KedaController | None = None
        self.hpa: HorizontalController
        if autoscaler.keda is not None:
            self.keda = KedaController(autoscaler.keda, ctl)
            self.hpa = self.keda.hpa
            self.queries = {
                name: parse_query(t.query)
                for name, t in zip(self.keda.metric_names(), autoscaler.keda.triggers, strict=True)
            }
        else:
            assert autoscaler.hpa is not None
            self.hpa = HorizontalController(autoscaler.hpa, ctl)
            self.queries = {}
        self._truth = self._truth_refs()

    # -- the loop ---------------------------------------------------------------------------------------------

    def run(self) -> SimRun:
        wall0 = time.perf_counter()
        s = self.s
        initial = s.initial_replicas
        if initial is None:
            initial = max(1, self.autoscaler.min_replicas)
        for _ in range(initial):
            self._create_pod(0.0, warm=True)
        self.spec_replicas = initial
        coll, _ctl = s.collection, s.controller
        self._push(0.0, _SCRAPE, None)
        self._push(coll.dcgm_interval_s - coll.gpu_util_window_s, _DCGM_PRE, None)
        self._push(coll.dcgm_interval_s, _DCGM, None)
        self._push(s.hpa_phase_s, _HPA, None)
        if self.keda is not None:
            self._push(s.hpa_phase_s, _KEDA, None)
        self._push(s.probe_s, _PROBE, None)
        arrivals = self.traffic.arrival_s
        n = arrivals.size
        self.end_s = max(self.traffic.duration_s, float(arrivals[-1]) if n else 0.0)
        # run to the end of the traffic's duration (scale-downs happen after the last arrival), and give
        # requests still in flight at most tail_s after the last arrival
        hard_end = max(self.end_s, (float(arrivals[-1]) if n else 0.0) + s.tail_s)
        i = 0
        heap = self.heap
        while True:
            t_arr = float(arrivals[i]) if i < n else math.inf
            t_evt = heap[0][0] if heap else math.inf
            if t_arr <= t_evt:
                if t_arr == math.inf:
                    break
                self.now = t_arr
                self.events += 1
                self._arrive(i, t_arr)
                i += 1
                continue
            if t_evt > hard_end or (i >= n and t_evt > self.end_s and self._all_resolved()):
                break
            t, _, kind, a, b = heapq.heappop(heap)
            self.now = t
            self.events += 1
            self._handle(kind, t, a, b)
        end = min(max(self.now, self.end_s), hard_end)
        self._finish_episodes(end)
        timeline = {k: np.asarray(v, dtype=np.float64) for k, v in self._timeline.items()}
        steps = sum(getattr(p.engine, "steps", 0) for p in self.pods)
        runs = sum(getattr(p.engine, "runs", 0) for p in self.pods)
        return SimRun(
            self.autoscaler,
            s,
            self.traffic,
            self.outcome,
            self.dispatch_s,
            self.first_s,
            self.finish_s,
            timeline,
            self.decisions,
            self.episodes,
            self.pods,
            end,
            time.perf_counter() - wall0,
            self.events,
            steps,
            runs,
        )

    def _all_resolved(self) -> bool:
        return self.gateway.queue_depth == 0 and self.gateway.in_flight == 0

    def _push(self, t: float, kind: int, a: Any, b: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self.heap, (t, self._seq, kind, a, b))

    def _handle(self, kind: int, t: float, a: Any, b: Any) -> None:
        if kind == _ENGINE:
            engine: VirtualEngine = a
            if b != engine.version or engine.next_event_s != t:
                return  # superseded
            engine.advance(t)
            if self.gateway.queue_depth:
                self.gateway.dispatch(t)
            self._touch(engine)
        elif kind == _TIMEOUT:
            self.gateway.timeout(a, t)
        elif kind == _POD:
            self._pod_event(a, b, t)
        elif kind == _HPA:
            self._hpa_tick(t)
            self._push(t + self.s.controller.sync_period_s, _HPA, None)
        elif kind == _KEDA:
            self._keda_tick(t)
            assert self.autoscaler.keda is not None
            self._push(t + self.autoscaler.keda.polling_interval_s, _KEDA, None)
        elif kind == _SCRAPE:
            self._scrape(t)
            self._push(t + self.s.collection.scrape_interval_s, _SCRAPE, None)
        elif kind == _DCGM_PRE:
            self._dcgm_snap = {
                id(p): p.engine.busy_integral(t) for p in self.pods if isinstance(p.engine, VirtualEngine)
            }
            self._push(t + self.s.collection.dcgm_interval_s, _DCGM_PRE, None)
        elif kind == _DCGM:
            self._dcgm_tick(t)
            self._push(t + self.s.collection.dcgm_interval_s, _DCGM, None)
        elif kind == _PROBE:
            self._probe(t)
            if t + self.s.probe_s <= self.end_s + self.s.tail_s:
                self._push(t + self.s.probe_s, _PROBE, None)

    # -- requests ---------------------------------------------------------------------------------------------

    def _arrive(self, idx: int, t: float) -> None:
        self._arrived = idx + 1
        if self.gateway.arrive(idx, t, int(self.cost[idx])):
            self._push(t + self.s.admission.queue_timeout_s, _TIMEOUT, idx)

    def _on_dispatch(self, idx: int, backend: Backend, t: float) -> None:
        self.dispatch_s[idx] = t
        tr = self.traffic
        out = int(tr.output_tokens[idx])
        req = SimRequest(str(idx), int(tr.prompt_tokens[idx]), int(tr.max_tokens[idx]), out)
        backend.engine.add(req, t)
        self._touch(backend.engine)

    def _on_reject(self, idx: int, reason: str, t: float) -> None:
        self.outcome[idx] = _OUTCOME_CODE[reason]
        self.finish_s[idx] = t

    def _on_first_token(self, engine: VirtualEngine, req: SimRequest, t: float) -> None:
        self.first_s[int(req.request_id)] = t

    def _on_finish(self, engine: VirtualEngine, req: SimRequest, t: float) -> None:
        idx = int(req.request_id)
        self.finish_s[idx] = t
        self.outcome[idx] = _OK
        backend = self.backend_of[id(engine)]
        self.gateway.release(backend, int(self.cost[idx]), t)
        pod = self.pod_of[id(engine)]
        if pod.state is PodState.DRAINING and backend.in_flight == 0:
            self._terminate(pod, t)

    def _touch(self, engine: VirtualEngine) -> None:
        if engine.next_event_s is not None:
            self._push(engine.next_event_s, _ENGINE, engine, engine.version)

    # -- pods -------------------------------------------------------------------------------------------------

    def _create_pod(self, t: float, warm: bool = False) -> Pod:
        pod = Pod(f"pod-{len(self.pods)}", len(self.pods), t)
        self.pods.append(pod)
        if warm:
            pod.bound_s = pod.running_s = pod.ready_s = pod.routable_s = t
            self._start_engine(pod)
            pod.state = PodState.READY
            self._make_routable(pod, t)
            return pod
        self._push(t + self.s.timings.schedule.sample(self.rng), _POD, pod, _BOUND)
        return pod

    def _start_engine(self, pod: Pod) -> None:
        engine = VirtualEngine(self.profile, pod.name, self._on_first_token, self._on_finish)
        pod.engine = engine
        self.pod_of[id(engine)] = pod

    def _make_routable(self, pod: Pod, t: float) -> None:
        engine = pod.engine
        assert isinstance(engine, VirtualEngine)
        backend = Backend(pod.name, engine, self.profile.max_num_seqs)
        self.backend_of[id(engine)] = backend
        self.gateway.backends.append(backend)
        pod.routable_s = t
        self.gateway.dispatch(t)

    def _pod_event(self, pod: Pod, what: int, t: float) -> None:
        tm = self.s.timings
        if what == _BOUND and pod.state is PodState.SCHEDULING:
            pod.state, pod.bound_s = PodState.PULLING, t
            self._push(t + tm.pull.sample(self.rng), _POD, pod, _RUNNING)
        elif what == _RUNNING and pod.state is PodState.PULLING:
            pod.state, pod.running_s = PodState.LOADING, t
            self._start_engine(pod)
            load = tm.load.sample(self.rng)
            period = tm.probe_period_s
            ready_after = math.ceil(load / period - 1e-9) * period if period > 0 else load
            self._push(t + ready_after, _POD, pod, _READY)
        elif what == _READY and pod.state is PodState.LOADING:
            pod.state, pod.ready_s = PodState.READY, t
            ep = self._episode
            if (
                ep is not None
                and ep.decision_s is not None
                and ep.first_ready_s is None
                and pod.created_s >= ep.decision_s
            ):
                ep.first_ready_s = t
            self._push(t + tm.discovery_s, _POD, pod, _ROUTABLE)
        elif what == _ROUTABLE and pod.state is PodState.READY:
            self._make_routable(pod, t)
        elif what == _KILL and pod.state is PodState.DRAINING:
            self._terminate(pod, t)

    def _set_replicas(self, n: int, t: float) -> None:
        self.spec_replicas = n
        active = [p for p in self.pods if p.state < PodState.DRAINING]
        if n > len(active):
            for _ in range(n - len(active)):
                self._create_pod(t)
        elif n < len(active):
            for pod in scale_down_victims(active, len(active) - n):
                self._delete(pod, t)

    def _delete(self, pod: Pod, t: float) -> None:
        pod.deleted_s = t
        backend = self.backend_of.get(id(pod.engine)) if pod.engine is not None else None
        if pod.state is not PodState.READY or backend is None:
            self._terminate(pod, t)
            return
        pod.state = PodState.DRAINING
        backend.routable = False
        if backend.in_flight == 0:
            self._terminate(pod, t)
        else:
            self._push(t + self.s.timings.drain_grace_s, _POD, pod, _KILL)

    def _terminate(self, pod: Pod, t: float) -> None:
        pod.state, pod.terminated_s = PodState.TERMINATED, t
        engine = pod.engine
        if isinstance(engine, VirtualEngine):
            backend = self.backend_of.pop(id(engine), None)
            if backend is not None:
                self.gateway.backends.remove(backend)
            for req in engine.abort_all(t):  # cut off after the grace period
                idx = int(req.request_id)
                self.outcome[idx] = _SHUTDOWN
                self.finish_s[idx] = t
        self.store.forget(pod.name)
        if not self.gateway.any_ready() and self.gateway.queue_depth:
            self.gateway.drop_all_queued(t, "no_backend")

    # -- metrics ----------------------------------------------------------------------------------------------

    def _dcgm_tick(self, t: float) -> None:
        window = self.s.collection.gpu_util_window_s
        for pod in self.pods:
            engine = pod.engine
            if not isinstance(engine, VirtualEngine) or not pod.live:
                continue
            before = self._dcgm_snap.get(id(pod))
            busy = engine.busy_integral(t) - before if before is not None else 0.0
            self._dcgm_value[pod.name] = 100.0 * min(1.0, busy / window) if window > 0 else 0.0

    def _scrape(self, t: float) -> None:
        store = self.store
        for pod in self.pods:
            engine = pod.engine
            if not pod.live or not isinstance(engine, VirtualEngine):
                continue
            util = self._dcgm_value.get(pod.name)
            if util is not None:
                store.record(pod.name, Quantity.GPU_UTIL, t, util)
            if pod.ready_s >= 0:  # vLLM's /metrics is up
                store.record(pod.name, Quantity.RUNNING, t, engine.running)
                store.record(pod.name, Quantity.WAITING, t, engine.waiting)
                store.record(pod.name, Quantity.KV, t, engine.kv_usage_ratio)
        store.record("", Quantity.QUEUE, t, self.gateway.queue_depth)
        store.record("", Quantity.IN_FLIGHT, t, self.gateway.in_flight)
        store.record("", Quantity.RATE, t, self._arrived)  # the counter inferline_requests_total

    def _client(self, t: float) -> SimMetricsClient:
        live = [p.name for p in self.pods if p.live]
        return SimMetricsClient(self.store, t, live, self.s.collection, self.queries)

    def _target(self) -> ScaleTarget:
        live = [p for p in self.pods if p.live]
        status = sum(1 for p in live if p.state < PodState.DRAINING)
        return ScaleTarget(self.spec_replicas, status, [p.info() for p in live])

    def _hpa_tick(self, t: float) -> None:
        decision = self.hpa.reconcile(t, self._target(), self._client(t))
        self.decisions.append(decision)
        if decision.desired != self.spec_replicas:
            self._scaled(decision.current, decision.desired, t)
            self._set_replicas(decision.desired, t)

    def _keda_tick(self, t: float) -> None:
        assert self.keda is not None
        client = self._client(t)
        values = {name: client.evaluate(ref) for name, ref in self.queries.items()}
        replicas = self.keda.poll(t, self.spec_replicas, values)
        if replicas is not None and replicas != self.spec_replicas:
            d = Decision(
                t, self.spec_replicas, replicas, -1, reason="KEDA " + ("activation" if replicas else "cooldown to 0")
            )
            self.decisions.append(d)
            self._scaled(self.spec_replicas, replicas, t)
            self._set_replicas(replicas, t)

    def _scaled(self, current: int, desired: int, t: float) -> None:
        ep = self._episode
        if desired > current and ep is not None and ep.decision_s is None:
            ep.decision_s, ep.replicas_to = t, desired

    # -- the truth, for plots and threshold breaches ---------------------------------------------------------

    def _truth_refs(self) -> list[tuple[QueryRef, MetricTargetType, float]]:
        """Each autoscaler metric as (what to measure, target type, target value)."""
        out: list[tuple[QueryRef, MetricTargetType, float]] = []
        if self.autoscaler.keda is not None:
            for t in self.autoscaler.keda.triggers:
                out.append((parse_query(t.query), t.metric_type, t.threshold))
            return out
        for m in self.hpa.spec.metrics:
            q = resolve_metric(m.name)
            agg = Aggregation.AVG if m.type is MetricSourceType.PODS else Aggregation.SUM
            if not q.per_pod:
                agg = Aggregation.NONE
            out.append((QueryRef(q, agg), m.target_type, m.target / 1000.0))
        return out

    def _probe(self, t: float) -> None:
        ready = [p for p in self.pods if p.state is PodState.READY]
        utils: dict[str, float] = {}
        for p in self.pods:
            if isinstance(p.engine, VirtualEngine) and p.live:
                busy = p.engine.busy_integral(t)
                hist = self._probe_busy.get(id(p))
                if hist is None:
                    hist = self._probe_busy[id(p)] = deque()
                hist.append((t, busy))
                while len(hist) > 1 and hist[0][0] < t - TRUTH_UTIL_WINDOW_S - 1e-9:
                    hist.popleft()
                t0, b0 = hist[0]
                utils[p.name] = 100.0 * min(1.0, (busy - b0) / (t - t0)) if t > t0 else 0.0
        engines = [p.engine for p in ready if isinstance(p.engine, VirtualEngine)]
        tl = self._timeline
        tl["t"].append(t)
        tl["desired"].append(self.spec_replicas)
        tl["pods"].append(sum(1 for p in self.pods if p.live))
        tl["ready"].append(len(ready))
        tl["queue"].append(self.gateway.queue_depth)
        tl["in_flight"].append(self.gateway.in_flight)
        tl["gpu_util"].append(sum(utils[p.name] for p in ready) / len(ready) if ready else 0.0)
        tl["kv"].append(sum(e.kv_usage_ratio for e in engines) / len(engines) if engines else 0.0)
        tl["running"].append(sum(e.running for e in engines))
        tl["waiting"].append(sum(e.waiting for e in engines))
        ratio = self._breach_ratio(ready, engines, utils)
        tl["breach_ratio"].append(ratio)
        self._track_episode(t, ratio, len(ready))

    def _breach_ratio(self, ready: list[Pod], engines: list[VirtualEngine], utils: dict[str, float]) -> float:
        status = max(1, sum(1 for p in self.pods if p.state < PodState.DRAINING))
        best = 0.0
        for ref, ttype, target in self._truth:
            if ref.quantity.per_pod:
                vals = [self._instant(ref.quantity, p, utils) for p in ready]
                if not vals:
                    continue
                if ref.aggregation is Aggregation.AVG:
                    value = sum(vals) / len(vals)
                elif ref.aggregation is Aggregation.MAX:
                    value = max(vals)
                else:
                    value = sum(vals)
            else:
                value = self._gateway_truth(ref.quantity)
            if ttype is MetricTargetType.AVERAGE_VALUE and ref.aggregation is not Aggregation.AVG:
                value /= status
            best = max(best, value / target)
        return best

    def _gateway_truth(self, q: Quantity) -> float:
        if q is Quantity.QUEUE:
            return float(self.gateway.queue_depth)
        if q is Quantity.IN_FLIGHT:
            return float(self.gateway.in_flight)
        arr = self.traffic.arrival_s
        lo = int(np.searchsorted(arr, self.now - RATE_WINDOW_S, side="right"))
        return (self._arrived - lo) / RATE_WINDOW_S

    @staticmethod
    def _instant(q: Quantity, pod: Pod, utils: dict[str, float]) -> float:
        e = pod.engine
        assert isinstance(e, VirtualEngine)
        if q is Quantity.GPU_UTIL:
            return utils.get(pod.name, 0.0)
        if q is Quantity.RUNNING:
            return float(e.running)
        if q is Quantity.WAITING:
            return float(e.waiting)
        return e.kv_usage_ratio

    def _track_episode(self, t: float, ratio: float, ready: int) -> None:
        up_tol = self.hpa.tolerances().scale_up
        breached = ratio > 1.0 + up_tol and self.spec_replicas < self.autoscaler.max_replicas
        ep = self._episode
        if ep is None:
            if breached and t <= self.end_s:
                self._episode = Episode(t, self.spec_replicas)
            return
        if ep.decision_s is None:
            if ratio <= 1.0:
                ep.resolved_without_scaling = True
                self.episodes.append(ep)
                self._episode = None
            return
        assert ep.replicas_to is not None
        if ready >= ep.replicas_to or self.spec_replicas < ep.replicas_to:
            ep.capacity_s = t
            if ep.first_ready_s is None:
                ep.first_ready_s = t
            self.episodes.append(ep)
            self._episode = None

    def _finish_episodes(self, end: float) -> None:
        if self._episode is not None:
            self.episodes.append(self._episode)
            self._episode = None
