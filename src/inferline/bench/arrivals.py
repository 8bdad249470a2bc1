"""Open-loop arrival times: gamma-distributed gaps, where burstiness 1.0 is a Poisson process.

Gaps have mean 1/rate and coefficient of variation 1/sqrt(burstiness): below 1 the traffic is
burstier than Poisson, above 1 it is smoother; infinite rate sends everything at t=0 (as vLLM).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

_BLOCK = 4096


def arrival_times(rate_rps: float, burstiness: float, seed: int) -> Iterator[float]:
    """Seconds from the start of the run at which each request is due; the first is due at 0."""
    if rate_rps <= 0:
        raise ValueError(f"rate must be > 0; got {rate_rps}")
    if burstiness <= 0:
        raise ValueError(f"burstiness must be > 0; got {burstiness}")
    if math.isinf(rate_rps):
        while True:
            yield 0.0
    rng = np.random.default_rng([seed, 0xA77])  # its own stream: changing the rate keeps the prompts
    scale = 1.0 / (rate_rps * burstiness)
    t = 0.0
    while True:
        for gap in rng.gamma(shape=burstiness, scale=scale, size=_BLOCK).tolist():
            yield t
            t += gap
