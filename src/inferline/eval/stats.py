"""stats: how sure a small eval set lets us be. Wilson intervals for one accuracy, a paired bootstrap for deltas.

The eval sets are small (tens of items per category), so every accuracy is reported with a 95% interval and
every candidate-vs-baseline delta with a paired bootstrap over items (the same items are resampled for both
sides, which is what makes a 2-point drop on 200 items detectable at all). The bootstrap is seeded: the same
answers always give the same intervals.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Z95 = 1.959963984540054
BOOTSTRAP_SAMPLES = 2000
BOOTSTRAP_SEED = 20261130


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion (95% by default); (nan, nan) for n = 0."""
    if n <= 0:
        return (math.nan, math.nan)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)
    hi = 1.0 if successes == n else min(1.0, centre + half)  # exact at the ends (no 0.9999999999999999)
    return (lo, hi)


@dataclass(frozen=True, slots=True)
class Interval:
    point: float
    low: float
    high: float

    def fmt(self, scale: float = 1.0, digits: int = 1, unit: str = "") -> str:
        if math.isnan(self.point):
            return "n/a"
        return (
            f"{self.point * scale:+.{digits}f}{unit} [{self.low * scale:+.{digits}f}, {self.high * scale:+.{digits}f}]"
        )


def resample_indices(n: int, samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> np.ndarray:
    """A (samples, n) matrix of item indices drawn with replacement (seeded)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(samples, n))


def paired_accuracy_drop(
    base: Sequence[bool], cand: Sequence[bool], idx: np.ndarray | None = None
) -> tuple[Interval, np.ndarray]:
    """Accuracy drop (baseline - candidate, as a fraction) over paired items; 95% percentile interval.

    Returns the interval and the bootstrap distribution (for the gate's confidence)."""
    if len(base) != len(cand):
        raise ValueError("paired samples must have the same length")
    n = len(base)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan), np.array([])
    diff = np.asarray(base, dtype=float) - np.asarray(cand, dtype=float)
    if idx is None:
        idx = resample_indices(n)
    dist = diff[idx].mean(axis=1)
    lo, hi = np.percentile(dist, [2.5, 97.5])
    return Interval(float(diff.mean()), float(lo), float(hi)), dist


def paired_ppl_ratio(
    base_nll: Sequence[float],
    base_tokens: Sequence[int],
    cand_nll: Sequence[float],
    cand_tokens: Sequence[int],
    idx: np.ndarray | None = None,
) -> tuple[Interval, np.ndarray]:
    """Perplexity ratio candidate/baseline, pooled token-weighted over paired items; 95% percentile interval."""
    n = len(base_nll)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan), np.array([])
    bn, bt = np.asarray(base_nll, dtype=float), np.asarray(base_tokens, dtype=float)
    cn, ct = np.asarray(cand_nll, dtype=float), np.asarray(cand_tokens, dtype=float)
    point = math.exp(cn.sum() / ct.sum() - bn.sum() / bt.sum())
    if idx is None:
        idx = resample_indices(n)
    dist = np.exp(cn[idx].sum(axis=1) / ct[idx].sum(axis=1) - bn[idx].sum(axis=1) / bt[idx].sum(axis=1))
    lo, hi = np.percentile(dist, [2.5, 97.5])
    return Interval(point, float(lo), float(hi)), dist
