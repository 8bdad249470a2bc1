"""canary: a candidate model takes a share of a model's traffic; the two are compared live; rollback if worse.

A model with `canary: {model: CANDIDATE, weight: W}` sends a share W of its requests to CANDIDATE (another
configured model, e.g. a quantized variant on its own engines). The split is sticky: a hash of the
session header (`x-inferline-session`), else of the API key's name, puts a caller in one variant for good,
so a user never flips between two models' behaviours. Each variant's engine attempts are compared over
the last `rollback.window_s`: error ratio (engine failures: 5xx, cut streams, timeouts — not the client's
4xx), median TTFT and median tokens/s. When both have `min_requests` and the candidate is worse beyond a
margin, its share drops to 0 (logged once, `inferline_canary_rolled_back`), until the gateway restarts.
"""

from __future__ import annotations

import hashlib
import logging
import random
import statistics
import time
from collections import deque
from dataclasses import dataclass, field

from inferline.config import CanaryConfig, ModelConfig
from inferline.metrics import GatewayMetrics

log = logging.getLogger("inferline.canary")

BASELINE, CANDIDATE = "baseline", "candidate"


@dataclass(slots=True)
class _Window:
    """One variant's recent engine attempts: (time, ok, ttft_s, tokens_per_s), pruned to the window."""

    events: deque[tuple[float, bool, float | None, float | None]] = field(default_factory=deque)

    def add(self, now: float, ok: bool, ttft_s: float | None = None, tokens_per_s: float | None = None) -> None:
        self.events.append((now, ok, ttft_s, tokens_per_s))

    def prune(self, now: float, window_s: float) -> None:
        while self.events and now - self.events[0][0] > window_s:
            self.events.popleft()

    def stats(self) -> dict[str, float | int | None]:
        n = len(self.events)
        errors = sum(1 for e in self.events if not e[1])
        ttfts = [e[2] for e in self.events if e[2] is not None]
        rates = [e[3] for e in self.events if e[3] is not None]
        return {
            "requests": n,
            "error_ratio": errors / n if n else None,
            "ttft_p50_s": statistics.median(ttfts) if ttfts else None,
            "tokens_per_s_p50": statistics.median(rates) if rates else None,
        }


class Canary:
    def __init__(self, baseline: str, cfg: CanaryConfig, metrics: GatewayMetrics) -> None:
        self.baseline = baseline
        self.candidate = cfg.model
        self.cfg = cfg
        self.weight = cfg.weight
        self.rolled_back_reason: str | None = None
        self.windows = {BASELINE: _Window(), CANDIDATE: _Window()}
        self._weight_gauge = metrics.canary_weight.labels(baseline, cfg.model)
        self._rolled_back_gauge = metrics.canary_rolled_back.labels(baseline, cfg.model)
        self._weight_gauge.set(self.weight)
        self._rolled_back_gauge.set(0)
        self.attempts = {
            (v, ok): metrics.canary_attempts.labels(baseline, v, "ok" if ok else "error")
            for v in (BASELINE, CANDIDATE)
            for ok in (True, False)
        }

    def choose(self, session: str | None, api_key: str | None) -> str:
        """The variant for one request: sticky by session, else API key (per `sticky`), else drawn."""
        if self.weight <= 0:
            return BASELINE
        sticky = self.cfg.sticky
        who = session if sticky == "session" else None
        if who is None and sticky in ("session", "api_key"):
            who = api_key
        if who is None:
            draw = random.random()
        else:
            digest = hashlib.blake2b(f"{self.baseline}\x00{who}".encode(), digest_size=8).digest()
            draw = int.from_bytes(digest, "big") / 2**64
        return CANDIDATE if draw < self.weight else BASELINE

    def observe(self, variant: str, ok: bool, ttft_s: float | None, tokens_per_s: float | None) -> None:
        now = time.monotonic()
        self.windows[variant].add(now, ok, ttft_s, tokens_per_s)
        if self.rolled_back_reason is None and self.cfg.rollback.enabled:
            reason = self._worse(now)
            if reason is not None:
                self.roll_back(reason)

    def _worse(self, now: float) -> str | None:
        rb = self.cfg.rollback
        for w in self.windows.values():
            w.prune(now, rb.window_s)
        base, cand = self.windows[BASELINE].stats(), self.windows[CANDIDATE].stats()
        if min(int(base["requests"] or 0), int(cand["requests"] or 0)) < rb.min_requests:
            return None
        be, ce = base["error_ratio"] or 0.0, cand["error_ratio"] or 0.0
        if ce > be + rb.max_error_ratio_increase:
            return f"error ratio {ce:.1%} vs {be:.1%} (allowed +{rb.max_error_ratio_increase:.0%})"
        bt, ct = base["ttft_p50_s"], cand["ttft_p50_s"]
        if bt and ct and ct > rb.max_ttft_ratio * bt and ct - bt > rb.ttft_tolerance_s:
            return f"median TTFT {ct * 1000:.0f} ms vs {bt * 1000:.0f} ms (allowed x{rb.max_ttft_ratio:g})"
        br, cr = base["tokens_per_s_p50"], cand["tokens_per_s_p50"]
        if br and cr is not None and cr < rb.min_tokens_per_s_ratio * br:
            return f"median {cr:.1f} tokens/s vs {br:.1f} (allowed x{rb.min_tokens_per_s_ratio:g})"
        return None

    def roll_back(self, reason: str) -> None:
        self.rolled_back_reason = reason
        self.weight = 0.0
        self._weight_gauge.set(0)
        self._rolled_back_gauge.set(1)
        log.warning(
            "canary %s rolled back: every request of model %s goes to the baseline again; %s",
            self.candidate,
            self.baseline,
            reason,
        )

    def snapshot(self) -> dict[str, object]:
        now = time.monotonic()
        for w in self.windows.values():
            w.prune(now, self.cfg.rollback.window_s)
        return {
            "model": self.baseline,
            "candidate": self.candidate,
            "weight": self.weight,
            "configured_weight": self.cfg.weight,
            "sticky": self.cfg.sticky,
            "state": "rolled_back" if self.rolled_back_reason else "active",
            "rolled_back_reason": self.rolled_back_reason,
            "window_s": self.cfg.rollback.window_s,
            BASELINE: self.windows[BASELINE].stats(),
            CANDIDATE: self.windows[CANDIDATE].stats(),
        }


class Canaries:
    """Every model's canary (if any): the split at routing time, the comparison at accounting time."""

    def __init__(self, models: list[ModelConfig], metrics: GatewayMetrics) -> None:
        self.by_baseline = {m.name: Canary(m.name, m.canary, metrics) for m in models if m.canary is not None}

    def choose(self, model: str, session: str | None, api_key: str | None) -> tuple[str, str | None]:
        """(the model to serve the request, its variant or None when the model has no canary)."""
        canary = self.by_baseline.get(model)
        if canary is None:
            return model, None
        variant = canary.choose(session, api_key)
        return (canary.candidate if variant == CANDIDATE else model), variant

    def observe(
        self, requested: str, served: str, ok: bool, ttft_s: float | None = None, tokens_per_s: float | None = None
    ) -> None:
        """One engine attempt of a request for `requested` ended on an engine of `served` (ok, or an engine
        failure). Attempts on a fallback model are no variant's."""
        canary = self.by_baseline.get(requested)
        if canary is None:
            return
        variant = CANDIDATE if served == canary.candidate else BASELINE if served == requested else None
        if variant is not None:
            canary.attempts[variant, ok].inc()
            canary.observe(variant, ok, ttft_s, tokens_per_s)

    def snapshot(self) -> list[dict[str, object]]:
        return [c.snapshot() for c in self.by_baseline.values()]
