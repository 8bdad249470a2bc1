"""Benchmark metrics from recorded request timelines: pure functions, vLLM `bench serve` definitions.

Per request (successful requests only; see docs/bench.md):
    TTFT = first content chunk - send
    E2E  = last content chunk - send
    ITL  = gaps between consecutive content chunks (pooled over all requests)
    TPOT = (E2E - TTFT) / (output_tokens - 1), for requests with more than one output token
Per run (duration = first send to last request end, unless given):
    request throughput = completed / duration
    output token throughput = sum(output tokens of completed) / duration
    total token throughput = sum(prompt + output tokens of completed) / duration
    goodput = completed requests meeting every SLO / duration
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from inferline.bench.record import ErrorKind, RequestRecord

PERCENTILES = (50, 90, 95, 99)


@dataclass(frozen=True, slots=True)
class SLO:
    """Per-request service-level objectives; a request is good when it meets every one that is set."""

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None

    def met_by(self, rec: RequestRecord) -> bool:
        if not rec.ok or not rec.chunk_s:
            return False
        if self.ttft_ms is not None and ttft_s(rec) * 1000.0 > self.ttft_ms:
            return False
        if self.e2e_ms is not None and e2e_s(rec) * 1000.0 > self.e2e_ms:
            return False
        if self.tpot_ms is not None:
            tpot = tpot_s(rec)  # None (one output token): nothing to violate
            if tpot is not None and tpot * 1000.0 > self.tpot_ms:
                return False
        return True

    def to_json(self) -> dict[str, float]:
        return {k: v for k, v in asdict(self).items() if v is not None}


_SLO_ITEM = re.compile(r"^\s*(ttft|tpot|e2e|e2el)\s*[=:]\s*([0-9]*\.?[0-9]+)\s*(us|µs|ms|s)?\s*$", re.IGNORECASE)
_UNIT_MS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}


def parse_slo(text: str) -> SLO:
    """`ttft=800ms,tpot=50ms,e2e=10s` -> SLO. A bare number is milliseconds."""
    values: dict[str, float] = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        m = _SLO_ITEM.match(item)
        if m is None:
            raise ValueError(f"bad SLO item {item!r}: expected ttft|tpot|e2e=NUMBER[us|ms|s], e.g. ttft=800ms")
        name = "e2e" if m.group(1).lower() == "e2el" else m.group(1).lower()
        values[f"{name}_ms"] = float(m.group(2)) * _UNIT_MS[(m.group(3) or "ms").lower()]
    if not values:
        raise ValueError(f"empty SLO {text!r}: expected e.g. ttft=800ms,tpot=50ms,e2e=10s")
    return SLO(**values)


def ttft_s(rec: RequestRecord) -> float:
    return rec.chunk_s[0] - rec.send_s if rec.chunk_s else math.nan


def e2e_s(rec: RequestRecord) -> float:
    return rec.chunk_s[-1] - rec.send_s if rec.chunk_s else math.nan


def itl_s(rec: RequestRecord) -> list[float]:
    c = rec.chunk_s
    return [c[i] - c[i - 1] for i in range(1, len(c))]


def tpot_s(rec: RequestRecord) -> float | None:
    n = rec.output_tokens
    if n <= 1 or not rec.chunk_s:
        return None
    return (e2e_s(rec) - ttft_s(rec)) / (n - 1)


def distribution(values: Iterable[float]) -> dict[str, float | int | None]:
    """count, mean, std, min, p50/p90/p95/p99 (linear interpolation, as numpy and vLLM) and max."""
    arr = np.fromiter(values, dtype=np.float64)
    out: dict[str, float | int | None] = {"count": int(arr.size)}
    keys = ["mean", "std", "min", *(f"p{p}" for p in PERCENTILES), "max"]
    if arr.size == 0:
        out.update(dict.fromkeys(keys))
        return out
    pct = np.percentile(arr, PERCENTILES)
    stats = [arr.mean(), arr.std(), arr.min(), *pct, arr.max()]
    out.update({k: round(float(v), 4) for k, v in zip(keys, stats, strict=True)})
    return out


def run_span_s(records: Sequence[RequestRecord]) -> float:
    """First send to last end (or last content chunk) over every record that was sent."""
    sends = [r.send_s for r in records if not math.isnan(r.send_s)]
    ends = [_last_time(r) for r in records]
    ends = [t for t in ends if not math.isnan(t)]
    if not sends or not ends:
        return 0.0
    return max(ends) - min(sends)


def summarize(
    records: Sequence[RequestRecord],
    *,
    duration_s: float | None = None,
    slo: SLO | None = None,
    by_class: bool = True,
) -> dict[str, Any]:
    """Everything the report shows, as a JSON-ready dict. Latencies in ms, rates per second."""
    ok = [r for r in records if r.ok]
    errors = Counter(r.error for r in records if r.error is not None)
    cancelled = errors.get(ErrorKind.CANCELLED.value, 0)
    dur = run_span_s(records) if duration_s is None else duration_s
    per_s = 1.0 / dur if dur > 0 else 0.0
    out_tokens = sum(r.output_tokens for r in ok)
    in_tokens = sum(r.prompt_tokens for r in ok)
    spans = (_last_time(r) - r.send_s for r in records)
    busy_s = sum(x for x in spans if not math.isnan(x))
    lags = [(r.send_s - r.scheduled_s) * 1000.0 for r in records if not math.isnan(r.send_s)]
    summary: dict[str, Any] = {
        "requests": len(records),
        "completed": len(ok),
        "failed": len(records) - len(ok) - cancelled,
        "cancelled": cancelled,
        "errors": dict(sorted((str(k), v) for k, v in errors.items())),
        "duration_s": round(dur, 4),
        "request_throughput_rps": round(len(ok) * per_s, 4),
        "output_throughput_tps": round(out_tokens * per_s, 4),
        "total_token_throughput_tps": round((in_tokens + out_tokens) * per_s, 4),
        "input_tokens": in_tokens,
        "output_tokens": out_tokens,
        "usage_reported_ratio": round(sum(r.usage_output_tokens is not None for r in ok) / len(ok), 4) if ok else None,
        "mean_in_flight": round(busy_s * per_s, 3),
        "ttft_ms": distribution(ttft_s(r) * 1000.0 for r in ok),
        "tpot_ms": distribution(t * 1000.0 for r in ok if (t := tpot_s(r)) is not None),
        "itl_ms": distribution(g * 1000.0 for r in ok for g in itl_s(r)),
        "e2e_ms": distribution(e2e_s(r) * 1000.0 for r in ok),
        "output_tokens_per_request": distribution(float(r.output_tokens) for r in ok),
        "send_lag_ms": distribution(x for x in lags if not math.isnan(x)),
    }
    if slo is not None:
        good = sum(slo.met_by(r) for r in ok)
        summary["slo"] = slo.to_json()
        summary["goodput_rps"] = round(good * per_s, 4)
        summary["slo_attainment_ratio"] = round(good / len(records), 4) if records else None
    classes = sorted({r.cls for r in records})
    if by_class and len(classes) > 1:
        summary["by_class"] = {
            c: summarize([r for r in records if r.cls == c], duration_s=dur, slo=slo, by_class=False) for c in classes
        }
    return summary


def timeseries(records: Sequence[RequestRecord], bin_s: float = 1.0) -> dict[str, list[float]]:
    """Per time bin (by arrival time of the event): output tokens/s, completed requests/s, errors/s.

    Output tokens are spread evenly over a request's content chunks when usage reports more tokens
    than chunks (servers may pack several tokens into one event).
    """
    ends = [_last_time(r) for r in records]
    horizon = max((t for t in ends if not math.isnan(t)), default=0.0)
    nbins = max(1, math.ceil(horizon / bin_s))
    tokens = np.zeros(nbins)
    done = np.zeros(nbins)
    errs = np.zeros(nbins)
    for r, end in zip(records, ends, strict=True):
        if r.chunk_s:
            idx = np.minimum((np.asarray(r.chunk_s) / bin_s).astype(np.int64), nbins - 1)
            weight = r.output_tokens / len(r.chunk_s) if r.ok else 1.0
            np.add.at(tokens, idx, weight)
        if math.isnan(end):
            continue
        b = min(int(end / bin_s), nbins - 1)
        if r.ok:
            done[b] += 1
        else:
            errs[b] += 1
    return {
        "t_s": [round((i + 0.5) * bin_s, 4) for i in range(nbins)],
        "output_tps": (tokens / bin_s).round(3).tolist(),
        "completed_rps": (done / bin_s).round(3).tolist(),
        "errors_rps": (errs / bin_s).round(3).tolist(),
    }


def _last_time(r: RequestRecord) -> float:
    if not math.isnan(r.end_s):
        return r.end_s
    return r.chunk_s[-1] if r.chunk_s else math.nan
