"""The gateway's fragmentation estimate against the simulator's truth (benchmarks/fragmentation.py, short runs).

The engine runs in this process; a client streams requests to it over HTTP and keeps the gateway's view of
them (dispatch order, exact prompt tokens, tokens relayed, shared prefixes). Each scrape of the engine's
/metrics gives vLLM's gauges and the simulator-only truth; the estimate is computed from the first and
compared with the second.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from fragmentation import SCENARIOS, run_scenario, summarize

BY_NAME = {sc.name: sc for sc in SCENARIOS}


@pytest.mark.parametrize("name", ["short requests", "preemption", "prefix sharing"])
async def test_estimate_tracks_the_simulators_truth(name: str) -> None:
    sc = BY_NAME[name]
    samples = await run_scenario(sc, seconds=2.0, min_samples=20)
    assert len(samples) >= 20, "too few readings with the KV cache in use (after 40 s)"
    s = summarize(sc, samples)
    assert s["unknown"] == 0
    # Within 1.5 points of KV capacity on average (the model's error alone here: no clock skew in-process).
    assert s["mae_pp"] <= 1.5, s
    if name == "short requests":
        # The workload really fragments: a large share of the cache sits in unfilled last blocks.
        assert statistics.fmean(x.truth for x in samples) > 0.10, s
    # What each input buys: without the engine's running count (preemption) or the prefix keys (sharing),
    # the same readings give a worse figure.
    if name == "preemption":
        assert s["mae_without_running_pp"] > s["mae_pp"], s
    if name == "prefix sharing":
        assert s["mae_without_prefix_keys_pp"] > s["mae_pp"], s
