"""Traffic for the simulator: arrival times and token counts, from a shape or from a recorded trace.

Shapes (rates in requests/s, times in seconds; Poisson arrivals with that rate, drawn by thinning):
    constant:rate=R
    step:base=R0,peak=R1,at=T                 R0 until T, then R1
    ramp:base=R0,peak=R1,at=T,for=D           R0 until T, linear to R1 over D, then R1
    spike:base=R0,peak=R1,at=T,for=D          R1 during [T, T+D), R0 otherwise
    diurnal:base=R0,peak=R1,period=P          R0 + (R1-R0)(1-cos(2 pi t/P))/2: trough at 0, peak at P/2
Traces:
    FILE.csv / FILE.jsonl   one request a row: arrival_s (or t), prompt_tokens, output_tokens [, max_tokens]
    FILE.json               an `inferline bench` result saved with --save-requests (runs play back to back)
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferline.autoscale.lifecycle import Dist

__all__ = ["SHAPES", "Traffic", "TrafficError", "TrafficShape", "load_trace", "synthesize"]

SHAPES = {
    "constant": ("rate",),
    "step": ("base", "peak", "at"),
    "ramp": ("base", "peak", "at", "for"),
    "spike": ("base", "peak", "at", "for"),
    "diurnal": ("base", "peak", "period"),
}
_DEFAULTS = {"period": 3600.0}


class TrafficError(ValueError):
    """A traffic spec or trace that cannot be used; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class TrafficShape:
    kind: str
    params: dict[str, float]

    @classmethod
    def parse(cls, text: str) -> TrafficShape:
        kind, _, rest = text.strip().partition(":")
        if kind not in SHAPES:
            raise TrafficError(f"unknown traffic shape {kind!r}; known: {', '.join(SHAPES)} (or a trace file)")
        params: dict[str, float] = {}
        for item in filter(None, (p.strip() for p in rest.split(","))):
            key, eq, value = item.partition("=")
            if not eq:
                raise TrafficError(f"traffic {kind}: {item!r} is not KEY=VALUE")
            if key not in SHAPES[kind]:
                raise TrafficError(f"traffic {kind}: unknown key {key!r}; takes {', '.join(SHAPES[kind])}")
            try:
                params[key] = float(value.removesuffix("s"))
            except ValueError:
                raise TrafficError(f"traffic {kind}: {key}={value!r} is not a number") from None
            if params[key] < 0 or not math.isfinite(params[key]):
                raise TrafficError(f"traffic {kind}: {key} must be a finite number >= 0; got {value}")
        for key in SHAPES[kind]:
            if key not in params:
                if key in _DEFAULTS:
                    params[key] = _DEFAULTS[key]
                else:
                    raise TrafficError(f"traffic {kind}: missing {key}= (needs {', '.join(SHAPES[kind])})")
        if kind == "diurnal" and params["period"] <= 0:
            raise TrafficError("traffic diurnal: period must be > 0")
        return cls(kind, params)

    def rate(self, t: np.ndarray) -> np.ndarray:
        """Requests/s at times T."""
        p = self.params
        if self.kind == "constant":
            return np.full_like(t, p["rate"])
        base, peak = p["base"], p["peak"]
        if self.kind == "step":
            return np.where(t < p["at"], base, peak)
        if self.kind == "spike":
            return np.where((t >= p["at"]) & (t < p["at"] + p["for"]), peak, base)
        if self.kind == "ramp":
            frac = np.clip((t - p["at"]) / p["for"], 0.0, 1.0) if p["for"] > 0 else (t >= p["at"]).astype(float)
            return base + (peak - base) * frac
        return base + (peak - base) * (1 - np.cos(2 * math.pi * t / p["period"])) / 2

    def max_rate(self) -> float:
        p = self.params
        return p["rate"] if self.kind == "constant" else max(p["base"], p["peak"])

    def __str__(self) -> str:
        return f"{self.kind}:" + ",".join(f"{k}={v:g}" for k, v in self.params.items())


@dataclass(slots=True)
class Traffic:
    """Requests sorted by arrival: arrival_s, prompt_tokens, output_tokens, max_tokens (numpy arrays)."""

    arrival_s: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    max_tokens: np.ndarray
    source: str
    duration_s: float

    def __len__(self) -> int:
        return int(self.arrival_s.size)

    def clipped(self, max_len: int) -> Traffic:
        """Requests whose prompt + output fit MAX_LEN tokens (the rest could never run on the engine)."""
        keep = self.prompt_tokens + self.max_tokens <= max_len
        return Traffic(
            self.arrival_s[keep],
            self.prompt_tokens[keep],
            self.output_tokens[keep],
            self.max_tokens[keep],
            self.source,
            self.duration_s,
        )


def synthesize(shape: TrafficShape, duration_s: float, prompt: Dist, output: Dist, seed: int = 0) -> Traffic:
    """Poisson arrivals following SHAPE's rate over [0, DURATION_S) (thinning), token counts from PROMPT/OUTPUT."""
    if duration_s <= 0:
        raise TrafficError(f"duration must be > 0; got {duration_s}")
    rng = np.random.default_rng([seed, 0x7AF])
    lam = shape.max_rate()
    if lam <= 0:
        raise TrafficError(f"traffic {shape} has no requests (every rate is 0)")
    n = rng.poisson(lam * duration_s)
    t = np.sort(rng.uniform(0.0, duration_s, size=n))
    keep = rng.uniform(0.0, lam, size=n) < shape.rate(t)
    arrivals = t[keep]
    if arrivals.size == 0:
        raise TrafficError(f"traffic {shape} over {duration_s:g} s produced no requests")
    prompts = _lengths(prompt, rng, arrivals.size)
    outputs = _lengths(output, rng, arrivals.size)
    return Traffic(arrivals, prompts, outputs, outputs.copy(), str(shape), duration_s)


def _lengths(d: Dist, rng: np.random.Generator, n: int) -> np.ndarray:
    if d.kind == "fixed":
        raw = np.full(n, d.a)
    elif d.kind == "uniform":
        raw = rng.uniform(d.a, d.b, size=n)
    elif d.kind == "normal":
        raw = rng.normal(d.a, d.b, size=n)
    elif d.kind == "lognormal":
        sigma2 = math.log1p(d.b * d.b)
        raw = rng.lognormal(math.log(d.a) - sigma2 / 2, math.sqrt(sigma2), size=n)
    else:
        raw = rng.exponential(d.a, size=n)
    out: np.ndarray = np.maximum(1, np.rint(raw)).astype(np.int64)
    return out


# -- traces --------------------------------------------------------------------------------------------------


def load_trace(path: Path) -> Traffic:
    """A request trace (CSV, JSONL) or an `inferline bench` JSON with per-request timelines."""
    if not path.exists():
        raise TrafficError(f"trace {path}: no such file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            rows = _csv_rows(path)
        elif suffix in (".jsonl", ".ndjson"):
            rows = [
                _json_line(line, path, i) for i, line in enumerate(path.read_bytes().splitlines(), 1) if line.strip()
            ]
        elif suffix == ".json":
            rows = _bench_rows(path)
        else:
            raise TrafficError(f"trace {path}: unknown format (expected .csv, .jsonl or an inferline bench .json)")
    except UnicodeDecodeError:
        raise TrafficError(f"trace {path}: not a text file") from None
    if not rows:
        raise TrafficError(f"trace {path} has no requests")
    rows.sort(key=lambda r: r[0])
    arr = np.asarray(rows, dtype=np.float64)
    arrival = arr[:, 0] - arr[0, 0]
    prompt = np.maximum(1, arr[:, 1]).astype(np.int64)
    output = np.maximum(1, arr[:, 2]).astype(np.int64)
    max_tokens = np.maximum(output, arr[:, 3]).astype(np.int64)
    duration = float(arrival[-1]) + 1.0
    return Traffic(arrival, prompt, output, max_tokens, str(path), duration)


_TIME_KEYS = ("arrival_s", "t", "time_s", "timestamp")


def _row(d: dict[str, Any], where: str) -> tuple[float, float, float, float]:
    t = next((d[k] for k in _TIME_KEYS if k in d and d[k] not in (None, "")), None)
    if t is None:
        raise TrafficError(f"{where}: no arrival time (one of {', '.join(_TIME_KEYS)})")
    for key in ("prompt_tokens", "output_tokens"):
        if d.get(key) in (None, ""):
            raise TrafficError(f"{where}: missing {key}")
    try:
        values = (float(t), float(d["prompt_tokens"]), float(d["output_tokens"]), float(d.get("max_tokens") or 0))
    except (TypeError, ValueError):
        raise TrafficError(f"{where}: arrival time and token counts must be numbers") from None
    if not all(math.isfinite(v) for v in values) or values[1] < 0 or values[2] < 0:
        raise TrafficError(f"{where}: arrival time and token counts must be finite and >= 0")
    return values


def _csv_rows(path: Path) -> list[tuple[float, float, float, float]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None:
            return []
        return [_row(r, f"{path}:{i}") for i, r in enumerate(reader, 2)]


def _json_line(line: bytes, path: Path, i: int) -> tuple[float, float, float, float]:
    try:
        d = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise TrafficError(f"{path}:{i}: not JSON ({exc})") from None
    if not isinstance(d, dict):
        raise TrafficError(f"{path}:{i}: each line must be a JSON object")
    return _row(d, f"{path}:{i}")


def _bench_rows(path: Path) -> list[tuple[float, float, float, float]]:
    try:
        data = orjson.loads(path.read_bytes())
    except orjson.JSONDecodeError as exc:
        raise TrafficError(f"{path}: not JSON ({exc})") from None
    if not isinstance(data, dict) or not str(data.get("schema", "")).startswith("inferline.bench/"):
        raise TrafficError(f"{path}: not an inferline bench result (no schema inferline.bench/1)")
    rows: list[tuple[float, float, float, float]] = []
    offset = 0.0
    for run in data.get("runs", []):
        reqs = run.get("requests") or []
        end = offset
        for r in reqs:
            t = r.get("scheduled_s")
            if t is None:
                t = r.get("send_s")
            if t is None:
                continue
            out = r.get("usage_output_tokens")
            if out is None:
                out = len(r.get("chunk_s") or []) or r.get("max_tokens") or 1
            rows.append(
                (offset + float(t), float(r.get("prompt_tokens") or 1), float(out), float(r.get("max_tokens") or 0))
            )
            end = max(end, offset + float(r.get("end_s") or t))
        offset = end + 1.0
    if not rows and data.get("runs"):
        raise TrafficError(f"{path}: no per-request timelines: rerun `inferline bench` with --save-requests")
    return rows
