"""What `inferline top` shows, computed from successive scrapes of a gateway's /metrics (no I/O here).

Gauges are read from the newest scrape. Rates and quantiles come from the difference between the newest
scrape and the oldest one kept in the window: tok/s and errors over the last `rate_window_s`, TTFT
p50/p95 over the last `quantile_window_s` (histogram bucket deltas, interpolated inside a bucket as
Prometheus' histogram_quantile does).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from inferline.observe.catalog import GATEWAY, sample_names
from inferline.observe.rules import SERVER_ERROR_OUTCOMES

__all__ = [
    "BackendRow",
    "CanaryView",
    "Frame",
    "ModelRow",
    "NotInferline",
    "Scrape",
    "ScrapeHistory",
    "parse_scrape",
]

Labels = tuple[tuple[str, str], ...]
_ERRORS = frozenset(SERVER_ERROR_OUTCOMES)
_GATEWAY_SERIES = frozenset(sample_names(GATEWAY))  # a simulator's inferline_sim_* truth is not a gateway
# Series the view uses; absent ones are reported on one line.
WANTED = (
    "inferline_backend_healthy",
    "inferline_backend_requests_running",
    "inferline_backend_requests_waiting",
    "inferline_backend_in_flight_requests",
    "inferline_backend_kv_cache_usage_ratio",
    "inferline_backend_kv_cache_fragmentation_ratio",
    "inferline_time_to_first_token_seconds_bucket",
    "inferline_generation_tokens_total",
    "inferline_requests_total",
    "inferline_queue_depth",
    "inferline_model_ready_backends",
)


class NotInferline(ValueError):
    """The scraped text has no inferline_* series: the URL is not an inferline gateway."""


@dataclass(frozen=True, slots=True)
class Scrape:
    """One scrape: monotonic time and every sample, by name then by label set."""

    at: float
    samples: dict[str, dict[Labels, float]]

    def get(self, name: str, **labels: str) -> float | None:
        for lab, value in self.samples.get(name, {}).items():
            d = dict(lab)
            if all(d.get(k) == v for k, v in labels.items()):
                return value
        return None

    def series(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})


def parse_scrape(text: str, at: float) -> Scrape:
    """Parse Prometheus text exposition. NotInferline without any gateway series; ValueError if unparsable."""
    samples: dict[str, dict[Labels, float]] = {}
    try:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                samples.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    except Exception as exc:  # the parser raises bare ValueErrors and others on garbage
        raise ValueError(f"not Prometheus text format ({exc})") from None
    if _GATEWAY_SERIES.isdisjoint(samples):
        raise NotInferline("no inferline_* series")
    return Scrape(at, samples)


@dataclass(slots=True)
class BackendRow:
    model: str
    backend: str
    ready: bool | None
    running: float | None
    waiting: float | None
    in_flight: float | None
    kv: float | None
    fragmentation: float | None
    ttft_p50: float | None
    ttft_p95: float | None
    tokens_per_s: float | None
    errors: float | None  # server-side failures in the rate window

    @property
    def heat(self) -> float:
        """How hot the engine is, for sorting: KV use, plus its own queue as a fraction of a full batch."""
        kv = self.kv if self.kv is not None else 0.0
        running = self.running or 0.0
        waiting = self.waiting or 0.0
        queue = waiting / max(1.0, running)
        return kv + queue + (0.0 if self.ready is not False else -10.0)


@dataclass(slots=True)
class CanaryView:
    """A model's canary: the candidate, its configured share now, and the share it actually served."""

    candidate: str
    weight: float | None  # 0 after a rollback
    rolled_back: bool
    served_share: float | None  # candidate attempts / all attempts in the rate window


@dataclass(slots=True)
class ModelRow:
    model: str
    ready_backends: float | None
    queue: float | None
    requests_per_s: float | None
    rejected: float | None  # 429s in the rate window
    backends: list[BackendRow] = field(default_factory=list)
    canary: CanaryView | None = None


@dataclass(slots=True)
class Frame:
    models: list[ModelRow]
    rate_window_s: float
    quantile_window_s: float
    missing: list[str]

    @property
    def hottest(self) -> BackendRow | None:
        rows = [b for m in self.models for b in m.backends if b.ready is not False]
        return max(rows, key=lambda b: b.heat) if rows else None


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs; None with no observations."""
    pts = sorted(buckets)
    if not pts or pts[-1][1] <= 0:
        return None
    total = pts[-1][1]
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in pts:
        if count >= rank:
            if math.isinf(le):
                return prev_le  # beyond the highest finite bucket: its bound, as Prometheus does
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return pts[-1][0]


class ScrapeHistory:
    """The scrapes of the last `quantile_window_s` seconds, and the Frame they make."""

    def __init__(self, rate_window_s: float = 10.0, quantile_window_s: float = 60.0) -> None:
        self.rate_window_s = rate_window_s
        self.quantile_window_s = quantile_window_s
        self._scrapes: deque[Scrape] = deque()

    def add(self, scrape: Scrape) -> None:
        self._scrapes.append(scrape)
        while len(self._scrapes) > 2 and scrape.at - self._scrapes[1].at >= self.quantile_window_s:
            self._scrapes.popleft()

    def _base(self, window_s: float) -> Scrape | None:
        """The oldest scrape at most WINDOW_S older than the newest (None with a single scrape)."""
        if len(self._scrapes) < 2:
            return None
        newest = self._scrapes[-1]
        for s in self._scrapes:
            if newest.at - s.at <= window_s + 0.5 and s is not newest:
                return s
        return self._scrapes[-2]

    def frame(self) -> Frame:
        now = self._scrapes[-1]
        rate_base = self._base(self.rate_window_s)
        q_base = self._base(self.quantile_window_s)
        rate_dt = now.at - rate_base.at if rate_base else 0.0
        q_dt = now.at - q_base.at if q_base else 0.0
        missing = [name for name in WANTED if name not in now.samples]

        def delta(name: str, base: Scrape | None, **labels: str) -> float | None:
            if base is None:
                return None
            total = 0.0
            found = False
            for lab, value in now.series(name).items():
                d = dict(lab)
                if all(d.get(k) == v for k, v in labels.items()):
                    found = True
                    before = base.samples.get(name, {}).get(lab, 0.0)
                    total += value - before if value >= before else value  # counter reset: the new value
            return total if found else None

        def rate(name: str, **labels: str) -> float | None:
            d = delta(name, rate_base, **labels)
            return d / rate_dt if d is not None and rate_dt > 0 else None

        def ttft(model: str, backend: str, q: float) -> float | None:
            if q_base is None:
                return None
            by_le: dict[float, float] = {}
            for lab, value in now.series("inferline_time_to_first_token_seconds_bucket").items():
                d = dict(lab)
                if d.get("model") != model or d.get("backend") != backend:
                    continue
                before = q_base.samples.get("inferline_time_to_first_token_seconds_bucket", {}).get(lab, 0.0)
                by_le[float(d["le"])] = value - before if value >= before else value
            return histogram_quantile(q, by_le.items())

        def errors(model: str, backend: str | None = None, status: str | None = None) -> float | None:
            if rate_base is None:
                return None
            total = 0.0
            for lab, value in now.series("inferline_requests_total").items():
                d = dict(lab)
                if d.get("model") != model or (backend is not None and d.get("backend") != backend):
                    continue
                if status is None and d.get("outcome") not in _ERRORS:
                    continue
                if status is not None and d.get("status") != status:
                    continue
                before = rate_base.samples.get("inferline_requests_total", {}).get(lab, 0.0)
                total += value - before if value >= before else value
            return total

        def canary(model: str) -> CanaryView | None:
            for lab, weight in now.series("inferline_canary_weight").items():
                d = dict(lab)
                if d.get("model") != model:
                    continue
                candidate = d.get("candidate", "?")
                served = delta("inferline_canary_attempts_total", rate_base, model=model, variant="candidate")
                every = delta("inferline_canary_attempts_total", rate_base, model=model)
                return CanaryView(
                    candidate=candidate,
                    weight=_finite(weight),
                    rolled_back=(now.get("inferline_canary_rolled_back", model=model, candidate=candidate) or 0) >= 1,
                    served_share=served / every if served is not None and every else None,
                )
            return None

        backends: dict[str, list[str]] = {}
        for name in (
            "inferline_backend_healthy",
            "inferline_backend_kv_cache_usage_ratio",
            "inferline_backend_requests_running",
        ):
            for lab in now.series(name):
                d = dict(lab)
                if "model" in d and "backend" in d and d["backend"] not in backends.setdefault(d["model"], []):
                    backends[d["model"]].append(d["backend"])
        for name in ("inferline_model_ready_backends", "inferline_queue_depth"):
            for lab in now.series(name):
                backends.setdefault(dict(lab).get("model", "?"), [])

        models: list[ModelRow] = []
        for model in sorted(backends):
            total_requests = delta("inferline_requests_total", rate_base, model=model)
            row = ModelRow(
                model=model,
                ready_backends=_finite(now.get("inferline_model_ready_backends", model=model)),
                queue=_finite(now.get("inferline_queue_depth", model=model)),
                requests_per_s=total_requests / rate_dt if total_requests is not None and rate_dt > 0 else None,
                rejected=errors(model, status="429"),
            )
            for b in backends[model]:
                healthy = now.get("inferline_backend_healthy", model=model, backend=b)
                row.backends.append(
                    BackendRow(
                        model=model,
                        backend=b,
                        ready=None if healthy is None else healthy >= 1,
                        running=_finite(now.get("inferline_backend_requests_running", model=model, backend=b)),
                        waiting=_finite(now.get("inferline_backend_requests_waiting", model=model, backend=b)),
                        in_flight=_finite(now.get("inferline_backend_in_flight_requests", model=model, backend=b)),
                        kv=_finite(now.get("inferline_backend_kv_cache_usage_ratio", model=model, backend=b)),
                        fragmentation=_finite(
                            now.get("inferline_backend_kv_cache_fragmentation_ratio", model=model, backend=b)
                        ),
                        ttft_p50=ttft(model, b, 0.5),
                        ttft_p95=ttft(model, b, 0.95),
                        tokens_per_s=rate("inferline_generation_tokens_total", model=model, backend=b),
                        errors=errors(model, b),
                    )
                )
            row.backends.sort(key=lambda r: r.heat, reverse=True)
            row.canary = canary(model)
            models.append(row)
        models.sort(key=lambda m: max((b.heat for b in m.backends), default=0.0), reverse=True)
        return Frame(models, rate_dt, q_dt, missing)
