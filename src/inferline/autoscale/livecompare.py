"""A live run next to its simulation: the same trace and settings through `autoscale simulate`, measured alike.

`simulation_of(run)` builds what `inferline autoscale simulate` needs to replay a LiveRun: the bench's saved
requests as the trace, the same HPA (the run's `autoscaling:` values), controller flags (sync period and the
live controller's measured phase against the traffic, tolerance, windows), collection (scrape interval),
pod timings (start-up delay, the gateway's discovery re-resolve), engine profile (the `inferline sim`
profile with its time scale, max_num_seqs) and gateway admission (queue depth and timeout, KV ratio); both
as Python objects and as the equivalent command line.

`Side` holds one run in one vocabulary (trace seconds: t = 0 is the first request's arrival), built from
either a LiveRun (`live_side`) or a SimRun (`sim_side`), and `reaction` / `compare` measure both the same way:

  breach               the autoscaler's metric over target x (1 + tolerance), averaged over Ready pods,
                       while below maxReplicas: live at each scrape, from Prometheus' raw samples;
                       simulated from the true state every second (= what its scrapes every second see)
  decision             the first scale-up the controller ordered at or after the breach
  first Ready          the first pod of that scale-up Ready (live: in the DNS answer)
  ready capacity       the first pod of that scale-up takes its first request (live: the gateway's
                       GET /backends shows a request in flight on it; simulated: the gateway routes to it)
  capacity             as many Ready pods as that scale-up asked for
  peak                 the most Ready pods during the load, and when it was first reached
  during the breach    requests arriving from the breach until the peak was reached
  after the peak       requests arriving from the peak to the end of the load (the steady state)
  back at min          the load's last arrival -> spec.replicas back at minReplicas
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inferline.autoscale.collect import CollectionConfig
from inferline.autoscale.configs import AutoscalerConfig
from inferline.autoscale.des import OUTCOMES, SimRun, SimSettings, Simulation
from inferline.autoscale.hpa import ControllerConfig, HorizontalController
from inferline.autoscale.lifecycle import Dist, PodTimings
from inferline.autoscale.liverun import LiveRun, LiveSettings
from inferline.autoscale.profiles import load_profile, profile_to_dict, time_scaled
from inferline.autoscale.sources import resolve_metric
from inferline.autoscale.spec import MetricSourceType, MetricTargetType
from inferline.autoscale.traffic import Traffic, load_trace
from inferline.config import AdmissionConfig

__all__ = [
    "TARGET_ERROR",
    "Reaction",
    "Side",
    "compare",
    "live_side",
    "phase_sweep",
    "reaction",
    "sim_side",
    "simulation_of",
    "ttft_bins",
]

TARGET_ERROR = 0.25  # simulated within 25% of measured
GRID_S = 0.5
_OK = OUTCOMES.index("ok")
_REJECTED = 2  # any outcome code above ok: turned away (429/503) or cut off
_LOST = -1  # live only: an error that is neither a completion nor a 429/503 (a lost request)


# -- the simulation of a live run ----------------------------------------------------------------------------


@dataclass(slots=True)
class Replay:
    """What `autoscale simulate` runs for a live run, as objects and as a command line."""

    traffic: Traffic
    autoscaler: AutoscalerConfig
    settings: SimSettings
    argv: list[str]  # `inferline autoscale simulate ...` (after the executable)
    files: dict[str, str]  # the HPA values and profile files the command line names


def sync_phase(run: LiveRun) -> float:
    """Seconds from the trace's t = 0 to the live controller's first pass after it."""
    period = run.settings.sync_period_s
    after = [p["t"] for p in run.passes if p["t"] >= run.trace_zero_s]
    first = min(after) if after else run.first_pass_s
    return (first - run.trace_zero_s) % period


def simulation_of(run: LiveRun, out_dir: Path) -> Replay:
    """The simulation of RUN (writes its HPA values and profile into OUT_DIR for the command line)."""
    s: LiveSettings = run.settings
    out_dir.mkdir(parents=True, exist_ok=True)
    duration = round(run.end_s - run.trace_zero_s, 3)
    trace = load_trace(Path(run.bench_path))
    keep = trace.arrival_s < duration
    traffic = Traffic(
        trace.arrival_s[keep],
        trace.prompt_tokens[keep],
        trace.output_tokens[keep],
        trace.max_tokens[keep],
        trace.source,
        duration,
    )
    profile = time_scaled(load_profile(s.profile), s.time_scale).with_overrides(max_num_seqs=s.max_num_seqs)
    discovery = s.discovery_interval_s / 2  # the next re-resolve comes on average half an interval later
    phase = round(sync_phase(run), 3)
    settings = SimSettings(
        profile=profile,
        admission=AdmissionConfig(queue_max_depth=s.queue_max_depth, queue_timeout_s=s.queue_timeout_s),
        kv_admit_ratio=s.kv_admit_ratio,
        timings=PodTimings(
            schedule=Dist("fixed", 0.0),
            pull=Dist("fixed", s.startup_delay_s),
            load=Dist("fixed", 0.0),
            probe_period_s=0.0,
            discovery_s=discovery,
            drain_grace_s=s.drain_grace_s,
        ),
        controller=s.controller(),
        collection=CollectionConfig(s.scrape_interval_s, s.scrape_interval_s, 1.0, 0.0),
        initial_replicas=s.initial_replicas,
        slo_ttft_s=s.slo_ttft_s,
        seed=s.seed,
        hpa_phase_s=phase,
    )
    values_path = out_dir / "hpa-values.yaml"
    values_path.write_text(yaml.safe_dump({"autoscaling": dict(s.autoscaling)}, sort_keys=False))
    profile_path = out_dir / "profile.yaml"
    pdict = profile_to_dict(profile)
    pdict.pop("gpu", None)  # the profile file holds the engine model only
    profile_path.write_text(yaml.safe_dump(pdict, sort_keys=False))
    argv = [
        "autoscale",
        "simulate",
        "--hpa",
        str(values_path),
        "--traffic",
        run.bench_path,
        "--duration",
        f"{duration:g}",
        "--profile",
        str(profile_path),
        "--schedule-time",
        "0",
        "--pull-time",
        f"{s.startup_delay_s:g}",
        "--load-time",
        "0",
        "--probe-period",
        "0",
        "--discovery-delay",
        f"{discovery:g}",
        "--drain-grace",
        f"{s.drain_grace_s:g}",
        "--initial-replicas",
        str(s.initial_replicas),
        "--scrape-interval",
        f"{s.scrape_interval_s:g}",
        "--dcgm-interval",
        f"{s.scrape_interval_s:g}",
        "--sync-period",
        f"{s.sync_period_s:g}",
        "--sync-phase",
        f"{phase:g}",
        "--tolerance",
        f"{s.tolerance:g}",
        "--downscale-stabilization",
        f"{s.downscale_stabilization_s:g}",
        "--queue-max-depth",
        str(s.queue_max_depth),
        "--queue-timeout",
        f"{s.queue_timeout_s:g}",
        "--kv-admit-ratio",
        f"{s.kv_admit_ratio:g}",
        "--slo-ttft",
        f"{s.slo_ttft_s * 1000:g}",
        "--seed",
        str(s.seed),
    ]
    # the profile file is written without its GPU card: load it back so the objects match the command line
    settings = replace(settings, profile=load_profile(str(profile_path)))
    return Replay(
        traffic.clipped(min(profile.max_model_len, profile.kv_tokens)),
        s.autoscaler(),
        settings,
        argv,
        {"hpa": str(values_path), "profile": str(profile_path)},
    )


def simulate(replay: Replay) -> SimRun:
    return Simulation(replay.traffic, replay.autoscaler, replay.settings).run()


# -- one vocabulary for both ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Side:
    """One run (live or simulated) on the trace's clock."""

    name: str
    arrival_s: np.ndarray
    first_token_s: np.ndarray  # NaN: no first token
    outcome: np.ndarray  # 1 ok, > 1 turned away or cut off, -1 lost (live), 0 unfinished
    last_arrival_s: float
    end_s: float
    decisions: list[tuple[float, int, int]]  # rescaling passes: (t, from, to)
    pods: list[dict[str, float | None]]  # created_s, ready_s, routable_s, first_request_s, deleted_s, terminated_s
    ratio_t: np.ndarray
    ratio: np.ndarray  # max over the HPA's metrics of value / target, over Ready pods
    grid_t: np.ndarray
    desired: np.ndarray
    ready: np.ndarray
    queue_t: np.ndarray
    queue: np.ndarray
    min_replicas: int
    max_replicas: int
    tolerance: float
    extra: dict[str, Any] = field(default_factory=dict)


def _t(v: float | None, shift: float) -> float | None:
    return None if v is None or v < 0 else v - shift


def _steps(events: Sequence[tuple[float, int]], initial: int, grid: np.ndarray) -> np.ndarray:
    """A step function (value changes at event times) sampled at GRID."""
    out = np.full(grid.shape, float(initial))
    for t, v in sorted(events):
        out[grid >= t] = v
    return out


def live_side(run: LiveRun) -> Side:
    s = run.settings
    cfg = s.autoscaler()
    hpa = cfg.effective_hpa
    z = run.trace_zero_s
    reqs = [r for r in run.bench["runs"][0]["requests"]]
    reqs = [r for r in reqs if r.get("scheduled_s") is not None]
    first_sched = min(float(r["scheduled_s"]) for r in reqs)
    arrival = np.array([float(r["scheduled_s"]) - first_sched for r in reqs])
    first = np.full(arrival.shape, np.nan)
    outcome = np.zeros(arrival.shape, dtype=np.int64)
    for i, r in enumerate(reqs):
        err = r.get("error")
        if err is None:
            outcome[i] = _OK
            if r.get("chunk_s"):
                first[i] = arrival[i] + float(r["chunk_s"][0]) - float(r["send_s"])
        elif err in ("http_429", "http_503"):
            outcome[i] = _REJECTED
        else:
            outcome[i] = _LOST
    end = run.end_s - z
    grid = np.arange(0.0, end + GRID_S / 2, GRID_S)
    decisions = [(p["t"] - z, p["current"], p["desired"]) for p in run.passes if p["desired"] != p["current"]]
    desired = _steps([(t, to) for t, _, to in decisions], s.initial_replicas, grid)
    pods = [
        {
            "created_s": _t(p["created_s"], z),
            "ready_s": _t(p["ready_s"], z),
            "routable_s": _t(p["joined_s"], z),
            "first_request_s": _t(p["first_request_s"], z),
            "deleted_s": _t(p["deleted_s"], z),
            "terminated_s": _t(p["terminated_s"], z),
        }
        for p in run.pods
    ]
    # the gateway logs the moment it joins an engine: more precise than the watcher's 0.2 s polls
    joins: dict[str, list[float]] = {}
    for e in run.gateway_events:
        msg = str(e["message"])
        if " joined model " in msg:
            joins.setdefault(msg.split()[1].split("@", 1)[1], []).append(float(e["t"]) - z)
    for p, raw in zip(pods, run.pods, strict=True):
        ready = p["ready_s"]
        for t in joins.get(str(raw["address"]), []):
            if ready is not None and t >= ready - 0.5 and (p["deleted_s"] is None or t <= p["deleted_s"]):
                p["routable_s"] = t
                break
    # the same moment from Prometheus: the gateway's inferline_backend_in_flight_requests first above 0
    in_flight = {str(r["labels"].get("backend", "")): r["points"] for r in run.series.get("backend_in_flight", [])}
    for p, raw in zip(pods, run.pods, strict=True):
        points = in_flight.get(f"{s.model}@{raw['address']}", [])
        ready = p["ready_s"]
        p["first_request_prom_s"] = next(
            (t - z for t, v in points if v > 0 and ready is not None and t - z >= ready - 0.5), None
        )
    ready_n = np.zeros(grid.shape)
    for p in pods:
        if p["ready_s"] is None:
            continue
        stop = p["deleted_s"] if p["deleted_s"] is not None else p["terminated_s"]
        ready_n += (grid >= p["ready_s"]) & (grid < (stop if stop is not None else math.inf))
    ratio_t, ratio = _live_ratio(run, pods)
    q = run.series.get("queue") or []
    qt = np.array([pt[0] - z for pt in q[0]["points"]]) if q else np.zeros(0)
    qv = np.array([pt[1] for pt in q[0]["points"]]) if q else np.zeros(0)
    return Side(
        "live",
        arrival,
        first,
        outcome,
        float(arrival.max()) if arrival.size else 0.0,
        end,
        decisions,
        pods,
        ratio_t,
        ratio,
        grid,
        desired,
        ready_n,
        qt,
        qv,
        hpa.min_replicas,
        hpa.max_replicas,
        _scale_up_tolerance(cfg, s.controller()),
        {"startup_excess_s": _startup_excess(run), "join_s": _join_latency(run, pods)},
    )


def _scale_up_tolerance(cfg: AutoscalerConfig, controller: ControllerConfig) -> float:
    """The tolerance a breach is judged by (behavior.scaleUp.tolerance, else the controller's)."""
    return HorizontalController(cfg.effective_hpa, controller).tolerances().scale_up


def _startup_excess(run: LiveRun) -> float | None:
    """Mean seconds a scaled-up pod took beyond the start-up delay to be Ready (probe period, slow starts)."""
    delay = run.settings.startup_delay_s
    xs = [
        p["ready_s"] - p["created_s"] - delay
        for p in run.pods
        if p["ready_s"] >= 0 and p["created_s"] >= run.first_pass_s  # the initial pods start without a delay
    ]
    return round(float(np.mean(xs)), 3) if xs else None


def _join_latency(run: LiveRun, pods: list[dict[str, float | None]]) -> float | None:
    """Mean seconds from a scaled-up pod's entry in the DNS answer to the gateway joining it."""
    xs = [
        p["routable_s"] - p["ready_s"]
        for p, raw in zip(pods, run.pods, strict=True)
        if p["routable_s"] is not None and p["ready_s"] is not None and raw["created_s"] >= run.first_pass_s
    ]
    return round(float(np.mean(xs)), 3) if xs else None


def _live_ratio(run: LiveRun, pods: list[dict[str, float | None]]) -> tuple[np.ndarray, np.ndarray]:
    """max over the HPA's metrics of value / target, as Prometheus had it: a per-pod metric is evaluated at every
    scrape of any engine as the average of each Ready pod's latest sample (at most two scrapes old, as a
    stale series drops out); a gateway metric at every step of its range query."""
    s = run.settings
    hpa = s.autoscaler().effective_hpa
    z = run.trace_zero_s
    fresh_s = 2 * s.scrape_interval_s + 0.5
    windows: dict[str, list[tuple[float, float]]] = {}
    for p, raw in zip(pods, run.pods, strict=True):
        if p["ready_s"] is None:
            continue
        stop = p["deleted_s"] if p["deleted_s"] is not None else p["terminated_s"]
        windows.setdefault(str(raw["address"]), []).append((p["ready_s"], stop if stop is not None else math.inf))
    curves: list[tuple[np.ndarray, np.ndarray]] = []
    for m in hpa.metrics:
        rows = run.series.get(f"metric:{m.name}") or []
        q = resolve_metric(m.name)
        target = m.target / 1000.0
        if q.per_pod:
            series = {
                str(row["labels"].get("instance", "")): [(t - z, v) for t, v in row["points"] if math.isfinite(v)]
                for row in rows
            }
            ts = np.array(sorted({t for pts in series.values() for t, _ in pts}))
            ratios = []
            for t in ts:
                vals = []
                for inst, pts in series.items():
                    if not any(a <= t < b for a, b in windows.get(inst, [])):
                        continue  # not a Ready pod at t
                    latest = [(ts_, v) for ts_, v in pts if t - fresh_s < ts_ <= t]
                    if latest:
                        vals.append(latest[-1][1])
                if not vals:
                    ratios.append(0.0)
                    continue
                value = sum(vals) / len(vals) if m.type is MetricSourceType.PODS else sum(vals)
                if m.type is not MetricSourceType.PODS and m.target_type is MetricTargetType.AVERAGE_VALUE:
                    value /= max(1, _active_at(pods, float(t)))
                ratios.append(value / target)
            curves.append((ts, np.array(ratios)))
        else:
            pts = [(t - z, v) for row in rows for t, v in row["points"] if math.isfinite(v)]
            ts = np.array([t for t, _ in pts])
            vals_ = np.array([v for _, v in pts])
            if m.target_type is MetricTargetType.AVERAGE_VALUE:
                vals_ = vals_ / np.array([max(1, _active_at(pods, float(t))) for t in ts])
            curves.append((ts, vals_ / target))
    curves = [(t, r) for t, r in curves if t.size]
    if not curves:
        return np.zeros(0), np.zeros(0)
    grid = curves[0][0]
    for t, _ in curves[1:]:
        grid = np.union1d(grid, t)
    best = np.zeros(grid.shape)
    for t, r in curves:  # each curve holds its last value until its next point
        idx = np.searchsorted(t, grid, side="right") - 1
        best = np.maximum(best, np.where(idx >= 0, r[np.clip(idx, 0, None)], 0.0))
    return grid, best


def _active_at(pods: list[dict[str, float | None]], t: float) -> int:
    """Pods created and not deleted at T (status.replicas)."""
    return sum(
        1
        for p in pods
        if p["created_s"] is not None and p["created_s"] <= t and (p["deleted_s"] is None or p["deleted_s"] > t)
    )


def sim_side(run: SimRun) -> Side:
    tr = run.traffic
    tl = run.timeline
    grid = np.arange(0.0, run.end_s + GRID_S / 2, GRID_S)
    decisions = [(d.time_s, d.current, d.desired) for d in run.decisions if d.desired != d.current]
    initial = run.settings.initial_replicas
    if initial is None:
        initial = max(1, run.autoscaler.min_replicas)
    desired = _steps([(t, to) for t, _, to in decisions], initial, grid)
    pods: list[dict[str, float | None]] = []
    ready_n = np.zeros(grid.shape)
    for p in run.pods:
        d = {
            "created_s": p.created_s,
            "ready_s": p.ready_s if p.ready_s >= 0 else None,
            "routable_s": p.routable_s if p.routable_s >= 0 else None,
            "first_request_s": p.routable_s if p.routable_s >= 0 else None,
            "deleted_s": p.deleted_s if p.deleted_s >= 0 else None,
            "terminated_s": p.terminated_s if p.terminated_s >= 0 else None,
        }
        pods.append(d)
        if d["ready_s"] is not None:
            stop = d["deleted_s"] if d["deleted_s"] is not None else d["terminated_s"]
            ready_n += (grid >= d["ready_s"]) & (grid < (stop if stop is not None else math.inf))
    ttft_first = run.first_token_s
    outcome = run.outcome.astype(np.int64)
    h = run.autoscaler.effective_hpa
    return Side(
        "simulated",
        tr.arrival_s,
        ttft_first,
        outcome,
        float(tr.arrival_s.max()) if len(tr) else 0.0,
        run.end_s,
        decisions,
        pods,
        tl["t"],
        tl["breach_ratio"],
        grid,
        desired,
        ready_n,
        tl["t"],
        tl["queue"],
        run.autoscaler.min_replicas,
        h.max_replicas,
        _scale_up_tolerance(run.autoscaler, run.settings.controller),
    )


# -- measures -------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Reaction:
    breach_s: float | None = None
    decision_s: float | None = None
    replicas_from: int | None = None
    replicas_to: int | None = None
    first_ready_s: float | None = None
    first_request_s: float | None = None
    capacity_s: float | None = None
    peak_ready: int = 0
    peak_s: float | None = None
    back_at_min_s: float | None = None  # after the last arrival
    scale_ups: int = 0
    scale_downs: int = 0

    def rel(self, t: float | None) -> float | None:
        return None if t is None or self.breach_s is None else t - self.breach_s


def reaction(side: Side) -> Reaction:
    r = Reaction()
    tol = side.tolerance
    desired_at = np.interp(side.ratio_t, side.grid_t, side.desired) if side.ratio_t.size else np.zeros(0)
    hits = np.nonzero((side.ratio > 1.0 + tol) & (desired_at < side.max_replicas))[0]
    r.scale_ups = sum(1 for _, a, b in side.decisions if b > a)
    r.scale_downs = sum(1 for _, a, b in side.decisions if b < a)
    load = side.grid_t <= side.last_arrival_s
    if load.any():
        r.peak_ready = int(side.ready[load].max())
        r.peak_s = float(side.grid_t[np.argmax(side.ready >= r.peak_ready)])
    after = [t for t, a, b in side.decisions if t > side.last_arrival_s and b == side.min_replicas and b < a]
    if after:
        r.back_at_min_s = after[0] - side.last_arrival_s
    if hits.size == 0:
        return r
    r.breach_s = float(side.ratio_t[hits[0]])
    ups = [(t, a, b) for t, a, b in side.decisions if b > a and t >= r.breach_s]
    if not ups:
        return r
    r.decision_s, r.replicas_from, r.replicas_to = ups[0]
    new = [p for p in side.pods if p["created_s"] is not None and abs(p["created_s"] - r.decision_s) < 1.0]
    readies = [p["ready_s"] for p in new if p["ready_s"] is not None]
    firsts = [p["first_request_s"] for p in new if p["first_request_s"] is not None]
    r.first_ready_s = min(readies) if readies else None
    r.first_request_s = min(firsts) if firsts else None
    ok = np.nonzero((side.grid_t >= r.decision_s) & (side.ready >= r.replicas_to))[0]
    r.capacity_s = float(side.grid_t[ok[0]]) if ok.size else None
    return r


def ttft_bins(side: Side, bin_s: float) -> dict[str, np.ndarray]:
    """Per bin of arrival time: requests, turned away, p50 and p95 TTFT (s; turned away or lost as inf)."""
    nbins = max(1, math.ceil(side.end_s / bin_s))
    edges = np.arange(nbins + 1) * bin_s
    ttft = side.first_token_s - side.arrival_s
    failed = (side.outcome != _OK) | np.isnan(ttft)
    ttft = np.where(failed, np.inf, ttft)
    counted = side.outcome != 0
    which = np.clip(np.searchsorted(edges, side.arrival_s, side="right") - 1, 0, nbins - 1)
    p50, p95 = np.full(nbins, np.nan), np.full(nbins, np.nan)
    count = np.zeros(nbins, dtype=np.int64)
    away = np.zeros(nbins, dtype=np.int64)
    for b in range(nbins):
        sel = (which == b) & counted
        count[b] = int(sel.sum())
        away[b] = int((sel & (side.outcome != _OK)).sum())
        if count[b]:
            p50[b], p95[b] = np.percentile(ttft[sel], [50, 95], method="higher")
    return {"t": edges[:-1] + bin_s / 2, "count": count, "turned_away": away, "p50": p50, "p95": p95}


def window_ttft(side: Side, start: float | None, end: float | None) -> dict[str, Any]:
    """TTFT of requests arriving in [START, END): p50/p95 of the served ones (ms), how many turned away."""
    if start is None or end is None or end <= start:
        return {"requests": 0, "p50_ms": None, "p95_ms": None, "turned_away": 0}
    sel = (side.arrival_s >= start) & (side.arrival_s < end)
    ok = sel & (side.outcome == _OK) & ~np.isnan(side.first_token_s)
    ttft = (side.first_token_s - side.arrival_s)[ok]
    return {
        "requests": int(sel.sum()),
        "p50_ms": round(float(np.percentile(ttft, 50)) * 1000, 1) if ttft.size else None,
        "p95_ms": round(float(np.percentile(ttft, 95)) * 1000, 1) if ttft.size else None,
        "turned_away": int((sel & (side.outcome > _OK)).sum()),
        "lost": int((sel & (side.outcome == _LOST)).sum()),
    }


def _mean_over(side: Side, values: np.ndarray, until: float) -> float:
    sel = side.grid_t <= until
    return float(values[sel].mean()) if sel.any() else 0.0


def compare(live: Side, sim: Side) -> dict[str, Any]:
    """The side-by-side measures, each with the simulated error relative to the live value."""
    lr, sr = reaction(live), reaction(sim)
    lw = window_ttft(live, lr.breach_s, lr.peak_s)
    sw = window_ttft(sim, sr.breach_s, sr.peak_s)
    la, sa = window_ttft(live, 0.0, math.inf), window_ttft(sim, 0.0, math.inf)
    horizon = min(live.end_s, sim.end_s)
    common = np.arange(0.0, horizon, GRID_S)
    ld = np.interp(common, live.grid_t, live.desired)
    sd = np.interp(common, sim.grid_t, sim.desired)
    lready = np.interp(common, live.grid_t, live.ready)
    sready = np.interp(common, sim.grid_t, sim.ready)
    load_end = max(live.last_arrival_s, sim.last_arrival_s)
    in_load = common <= load_end
    rows: list[dict[str, Any]] = []

    def row(name: str, lv: float | None, sv: float | None, unit: str, target: bool = False) -> None:
        err = None
        if lv is not None and sv is not None and lv != 0:
            err = (sv - lv) / abs(lv)
        rows.append(
            {
                "measure": name,
                "unit": unit,
                "live": None if lv is None else round(float(lv), 3),
                "simulated": None if sv is None else round(float(sv), 3),
                "error": None if err is None else round(err, 4),
                "target": target,
                "within": None if err is None else abs(err) <= TARGET_ERROR,
            }
        )

    row("load start -> breach", lr.breach_s, sr.breach_s, "s")
    row("load start -> scale-up decision", lr.decision_s, sr.decision_s, "s")
    row("breach -> scale-up decision", lr.rel(lr.decision_s), sr.rel(sr.decision_s), "s", True)
    row("breach -> first new engine Ready", lr.rel(lr.first_ready_s), sr.rel(sr.first_ready_s), "s")
    row(
        "breach -> new engine takes its first request",
        lr.rel(lr.first_request_s),
        sr.rel(sr.first_request_s),
        "s",
        True,
    )
    row("breach -> capacity of the first scale-up", lr.rel(lr.capacity_s), sr.rel(sr.capacity_s), "s")
    row("breach -> peak Ready replicas", lr.rel(lr.peak_s), sr.rel(sr.peak_s), "s")
    row("peak Ready replicas", lr.peak_ready, sr.peak_ready, "")
    row("mean Ready replicas during the load", float(lready[in_load].mean()), float(sready[in_load].mean()), "", True)
    row("mean desired replicas, whole run", float(ld.mean()), float(sd.mean()), "")
    row("scale-ups", lr.scale_ups, sr.scale_ups, "")
    row("scale-downs", lr.scale_downs, sr.scale_downs, "")
    row("TTFT p50 during the breach", lw["p50_ms"], sw["p50_ms"], "ms")
    row("TTFT p95 during the breach", lw["p95_ms"], sw["p95_ms"], "ms", True)
    lp = window_ttft(live, lr.peak_s, live.last_arrival_s + 1e-9)
    sp = window_ttft(sim, sr.peak_s, sim.last_arrival_s + 1e-9)
    row("TTFT p50 after the peak (steady load)", lp["p50_ms"], sp["p50_ms"], "ms")
    row("TTFT p95 after the peak (steady load)", lp["p95_ms"], sp["p95_ms"], "ms")
    row("TTFT p95, all requests", la["p95_ms"], sa["p95_ms"], "ms")
    row("requests turned away (429/503)", la["turned_away"], sa["turned_away"], "")
    row("last arrival -> back at minReplicas", lr.back_at_min_s, sr.back_at_min_s, "s")
    targets = [r for r in rows if r["target"]]
    return {
        "rows": rows,
        "targets_met": sum(1 for r in targets if r["within"]),
        "targets": len(targets),
        "replicas_mean_abs_diff": round(float(np.mean(np.abs(ld - sd))), 3),
        "ready_mean_abs_diff": round(float(np.mean(np.abs(lready - sready))), 3),
        "reaction": {"live": _reaction_json(lr), "simulated": _reaction_json(sr)},
        "breach_window": {"live": lw, "simulated": sw},
        "after_peak": {"live": lp, "simulated": sp},
        "all_requests": {"live": la, "simulated": sa},
    }


def _reaction_json(r: Reaction) -> dict[str, Any]:
    return {k: getattr(r, k) for k in r.__slots__}


def replicas_table(live: Side, sim: Side, step_s: float = 10.0) -> list[list[Any]]:
    """Desired / Ready replicas every STEP_S seconds, live and simulated."""
    horizon = min(live.end_s, sim.end_s)
    out = []
    for t in np.arange(0.0, horizon + 1e-9, step_s):
        out.append(
            [
                round(float(t)),
                int(np.interp(t, live.grid_t, live.desired)),
                int(np.interp(t, live.grid_t, live.ready)),
                int(np.interp(t, sim.grid_t, sim.desired)),
                int(np.interp(t, sim.grid_t, sim.ready)),
            ]
        )
    return out


def phase_sweep(replay: Replay, step_s: float = 0.5) -> dict[str, Any]:
    """The simulation at every sync phase (0, STEP_S, ... < sync period): what it predicts without knowing when
    the live controller's passes fall against the traffic. Min, mean and max of the target measures."""
    period = replay.settings.controller.sync_period_s
    out: dict[str, list[float]] = {"to_decision_s": [], "to_first_request_s": [], "ttft_p95_breach_ms": []}
    for phase in np.arange(0.0, period, step_s):
        run = Simulation(replay.traffic, replay.autoscaler, replace(replay.settings, hpa_phase_s=float(phase))).run()
        side = sim_side(run)
        r = reaction(side)
        for key, v in (
            ("to_decision_s", r.rel(r.decision_s)),
            ("to_first_request_s", r.rel(r.first_request_s)),
            ("ttft_p95_breach_ms", window_ttft(side, r.breach_s, r.peak_s)["p95_ms"]),
        ):
            if v is not None:
                out[key].append(float(v))
    return {
        "phases": math.ceil(period / step_s),
        **{
            k: {"min": round(min(v), 3), "mean": round(float(np.mean(v)), 3), "max": round(max(v), 3)}
            for k, v in out.items()
            if v
        },
    }
