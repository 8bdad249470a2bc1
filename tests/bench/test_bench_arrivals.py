"""Arrival process statistics: Poisson mean rate, gamma burstiness as coefficient of variation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from inferline.bench.arrivals import arrival_times


def gaps(rate: float, burstiness: float, n: int = 20_000, seed: int = 1) -> np.ndarray:
    times = np.fromiter(itertools.islice(arrival_times(rate, burstiness, seed), n), dtype=float)
    assert times[0] == 0.0 and np.all(np.diff(times) >= 0)
    return np.diff(times)


def test_poisson_mean_rate_and_cv() -> None:
    g = gaps(10.0, 1.0)
    assert 1.0 / g.mean() == pytest.approx(10.0, rel=0.03)
    assert g.std() / g.mean() == pytest.approx(1.0, rel=0.05)  # exponential gaps: CV 1


@pytest.mark.parametrize("burstiness", [0.25, 4.0])
def test_gamma_burstiness_sets_cv_and_keeps_rate(burstiness: float) -> None:
    g = gaps(50.0, burstiness)
    assert 1.0 / g.mean() == pytest.approx(50.0, rel=0.05)
    assert g.std() / g.mean() == pytest.approx(1 / math.sqrt(burstiness), rel=0.06)


def test_same_seed_same_arrivals_and_seeds_differ() -> None:
    a = list(itertools.islice(arrival_times(5.0, 1.0, 7), 100))
    assert a == list(itertools.islice(arrival_times(5.0, 1.0, 7), 100))
    assert a != list(itertools.islice(arrival_times(5.0, 1.0, 8), 100))


def test_infinite_rate_sends_everything_at_once() -> None:
    assert list(itertools.islice(arrival_times(math.inf, 1.0, 0), 5)) == [0.0] * 5


@pytest.mark.parametrize(("rate", "burstiness"), [(0.0, 1.0), (-1.0, 1.0), (1.0, 0.0)])
def test_rejects_bad_parameters(rate: float, burstiness: float) -> None:
    with pytest.raises(ValueError):
        next(arrival_times(rate, burstiness, 0))
