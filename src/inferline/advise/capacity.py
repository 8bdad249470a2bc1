"""How much traffic one replica serves within the SLOs: searched with the autoscale simulator's engine model.

One SIMULATED replica (inferline.sim's profile, behind the gateway's admission and queue) gets Poisson
traffic at a constant rate for `duration_s`; the rate passes when, after a warm-up, p95 TTFT and p95 TPOT
are within the SLOs and nothing was rejected. The highest passing rate is found by doubling then
bisecting (to `precision`). Results are cached on disk (~/.cache/inferline/advise-capacity.json) by profile
and inputs, so repeated advice is instant.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferline.autoscale.configs import AutoscalerConfig
from inferline.autoscale.des import SimSettings, Simulation
from inferline.autoscale.lifecycle import Dist
from inferline.autoscale.spec import HPASpec, MetricSourceType, MetricSpec, MetricTargetType
from inferline.autoscale.traffic import TrafficShape, synthesize
from inferline.sim.profiles import Profile
from inferline.sim.scheduler import Scheduler, SimRequest, run_virtual

__all__ = ["Capacity", "Point", "measure", "slo_capacity", "unloaded"]

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inferline" / "advise-capacity.json"
_MAX_RATE = 4096.0
_MEMO: dict[str, Capacity] = {}  # this process's searches (the disk cache is optional)


@dataclass(frozen=True, slots=True)
class Point:
    """One replica at one rate: p95s (ms) of requests after the warm-up, rejections, mean engine state."""

    rate_rps: float
    ttft_p95_ms: float
    tpot_p95_ms: float
    rejected: int
    requests: int
    running_mean: float
    kv_mean: float


@dataclass(frozen=True, slots=True)
class Capacity:
    profile: str
    rate_rps: float  # 0: the SLO cannot be met even unloaded
    limit: str
    unloaded_ttft_ms: float
    unloaded_tpot_ms: float
    at_capacity: Point | None
    tokens_per_s: float  # prompt + output tokens/s one replica handles at rate_rps

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _static_one() -> AutoscalerConfig:
    metric = MetricSpec(MetricSourceType.EXTERNAL, "inferline_queue_depth", MetricTargetType.AVERAGE_VALUE, 1000)
    return AutoscalerConfig("one replica", hpa=HPASpec(1, 1, (metric,)), source="capacity search")


def measure(
    profile: Profile, rate: float, prompt: Dist, output: Dist, duration_s: float = 150.0, seed: int = 0
) -> Point:
    """One SIMULATED replica at RATE req/s."""
    duration_s = min(3600.0, max(duration_s, 400.0 / rate))  # enough requests for a p95, even at low rates
    warmup = min(30.0, duration_s / 5)
    tr = synthesize(TrafficShape.parse(f"constant:rate={rate!r}"), duration_s, prompt, output, seed)
    tr = tr.clipped(min(profile.max_model_len, profile.kv_tokens))
    run = Simulation(tr, _static_one(), SimSettings(profile, seed=seed)).run()
    sel = tr.arrival_s >= warmup
    ok = sel & (run.outcome == 1)
    ttft = (run.first_token_s - tr.arrival_s)[ok]
    outs = tr.output_tokens[ok]
    multi = outs > 1
    tpot = ((run.finish_s - run.first_token_s)[ok][multi]) / (outs[multi] - 1)
    tl = run.timeline
    steady = tl["t"] >= warmup
    rejected = int((sel & (run.outcome > 1)).sum())
    unfinished = int((sel & (run.outcome == 0)).sum())
    return Point(
        rate,
        float(np.percentile(ttft, 95)) * 1000 if ttft.size else math.inf,
        float(np.percentile(tpot, 95)) * 1000 if tpot.size else 0.0,
        rejected + unfinished,
        int(sel.sum()),
        float(tl["running"][steady].mean()) if steady.any() else 0.0,
        float(tl["kv"][steady].mean()) if steady.any() else 0.0,
    )


def unloaded(profile: Profile, prompt_tokens: int, output_tokens: int) -> tuple[float, float]:
    """TTFT and TPOT (ms) of a single request on an idle replica (exact, from the scheduler)."""
    req = SimRequest("0", prompt_tokens, output_tokens, output_tokens)
    end = run_virtual(Scheduler(profile), [(0.0, req)])
    ttft = req.first_token_s
    tpot = (end - ttft) / (output_tokens - 1) if output_tokens > 1 else 0.0
    return ttft * 1000, tpot * 1000


def _passes(p: Point, ttft_slo_ms: float, tpot_slo_ms: float | None) -> bool:
    if p.rejected or p.requests == 0:
        return False
    if p.ttft_p95_ms > ttft_slo_ms:
        return False
    return tpot_slo_ms is None or p.tpot_p95_ms <= tpot_slo_ms


def _key(profile: Profile, prompt: Dist, output: Dist, ttft: float, tpot: float | None, duration: float) -> str:
    raw = orjson.dumps([dataclasses.asdict(profile), str(prompt), str(output), ttft, tpot, duration, 1])
    return hashlib.sha256(raw).hexdigest()[:24]


def slo_capacity(
    profile: Profile,
    prompt: Dist,
    output: Dist,
    ttft_slo_ms: float,
    tpot_slo_ms: float | None = None,
    *,
    duration_s: float = 150.0,
    precision: float = 0.05,
    cache: bool = True,
) -> Capacity:
    """The highest rate one replica of PROFILE serves within the SLOs (and why not more)."""
    key = _key(profile, prompt, output, ttft_slo_ms, tpot_slo_ms, duration_s)
    if key in _MEMO:
        return _MEMO[key]
    if cache:
        hit = _cache_get(key)
        if hit is not None:
            return hit
    ttft0, tpot0 = unloaded(profile, max(1, round(prompt.mean)), max(1, round(output.mean)))
    tokens = prompt.mean + output.mean
    if ttft0 > ttft_slo_ms or (tpot_slo_ms is not None and tpot0 > tpot_slo_ms):
        what = f"TTFT {ttft0:.0f} ms" if ttft0 > ttft_slo_ms else f"TPOT {tpot0:.1f} ms"
        cap = Capacity(profile.name, 0.0, f"SLO unreachable even idle ({what})", ttft0, tpot0, None, 0.0)
        if cache:
            _cache_put(key, cap)
        return cap
    lo_point: Point | None = None
    hi_point: Point | None = None
    rate = max(0.02, 0.5 / max(1.0, ttft0 / 1000 + tpot0 * output.mean / 1000))  # about half an idle replica
    while rate < _MAX_RATE:
        p = measure(profile, rate, prompt, output, duration_s)
        if _passes(p, ttft_slo_ms, tpot_slo_ms):
            lo_point, rate = p, rate * 2
        else:
            hi_point = p
            break
    if lo_point is None:  # even the first probe failed: search downwards
        hi = rate
        lo = hi / 64
        while hi / lo > 1 + precision:
            mid = math.sqrt(lo * hi)
            p = measure(profile, mid, prompt, output, duration_s)
            if _passes(p, ttft_slo_ms, tpot_slo_ms):
                lo_point, lo = p, mid
            else:
                hi_point, hi = p, mid
    else:
        lo, hi = lo_point.rate_rps, rate
        while hi / lo > 1 + precision:
            mid = math.sqrt(lo * hi)
            p = measure(profile, mid, prompt, output, duration_s)
            if _passes(p, ttft_slo_ms, tpot_slo_ms):
                lo_point, lo = p, mid
            else:
                hi_point, hi = p, mid
    if lo_point is None:
        cap = Capacity(profile.name, 0.0, "SLO missed at every rate tried", ttft0, tpot0, None, 0.0)
    else:
        cap = Capacity(
            profile.name,
            lo_point.rate_rps,
            _limit(profile, lo_point, hi_point, ttft_slo_ms, tpot_slo_ms),
            ttft0,
            tpot0,
            lo_point,
            lo_point.rate_rps * tokens,
        )
    _MEMO[key] = cap
    if cache:
        _cache_put(key, cap)
    return cap


def _limit(profile: Profile, ok: Point, bad: Point | None, ttft_slo: float, tpot_slo: float | None) -> str:
    if ok.running_mean >= 0.9 * profile.max_num_seqs:
        state = f"batch full ({ok.running_mean:.0f}/{profile.max_num_seqs} slots)"
    elif ok.kv_mean >= 0.8:
        state = f"KV cache {ok.kv_mean:.0%} full"
    else:
        state = f"{ok.running_mean:.0f} sequences running, compute-bound (prefill + decode steps)"
    if bad is None:
        return state
    if bad.rejected:
        why = "queue overflow"
    elif tpot_slo is not None and bad.tpot_p95_ms > tpot_slo:
        why = "TPOT SLO"
    else:
        why = "TTFT SLO"
    return f"{why}; {state}"


def _cache_get(key: str) -> Capacity | None:
    try:
        data = orjson.loads(CACHE.read_bytes())
        d = data[key]
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return None
    try:
        point = Point(**d["at_capacity"]) if d.get("at_capacity") else None
        return Capacity(**{**d, "at_capacity": point})
    except TypeError:
        return None


def _cache_put(key: str, cap: Capacity) -> None:
    try:
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        try:
            data = orjson.loads(CACHE.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            data = {}
        data[key] = cap.to_json()
        tmp = CACHE.with_suffix(".tmp")
        tmp.write_bytes(orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY))
        tmp.replace(CACHE)
    except OSError:
        pass  # a cache, not a requirement
