"""The chaos and soak benchmarks, short versions, as heavy tests: their invariants must hold.

chaos: faults (SIGKILL / SIGSTOP an engine, a Redis restart, SIGTERM a gateway replica) under load on a
simulated fleet: zero requests without an ending, zero clean-looking truncated streams.
soak: two minutes of mixed traffic: RSS growth < 5% after warm-up, and no leak of asyncio tasks, file
descriptors or connections once the load stops. The full runs (benchmarks/*.py without --quick /
with --duration 1800) are for a quiet machine; see benchmarks/README.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support import SKIP_HEAVY

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"

pytestmark = [pytest.mark.heavy, pytest.mark.skipif(SKIP_HEAVY, reason="INFERLINE_SKIP_HEAVY=1")]


def _run(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.mark.timeout(900)
def test_chaos_short_schedule_leaves_no_request_without_an_ending() -> None:
    done = _run("benchmarks/chaos.py", "--quick", timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((RESULTS / "chaos.quick.json").read_text())
    assert result["invariant_violations"] == 0
    assert set(result["faults"]) == {"kill-engine", "freeze-engine", "restart-redis", "sigterm-gateway"}
    endings = result["endings"]
    assert endings.get("ok", 0) > 0.8 * result["requests"], endings  # faults touch a minority of requests
    assert "truncated" not in endings and "no_ending" not in endings


@pytest.mark.timeout(900)
def test_soak_two_minutes_no_leak() -> None:
    done = _run("benchmarks/soak.py", "--duration", "120", timeout=800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((RESULTS / "soak.quick.json").read_text())
    assert all(result["checks"].values()), result["checks"]
    assert len(result["samples"]) >= 10
