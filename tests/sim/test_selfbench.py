"""The simulator's capacity yardstick runs end to end (tiny settings; the numbers are not checked)."""

from __future__ import annotations

import pytest

from inferline.sim.selfbench import main


def test_selfbench_reports_a_line_per_point(capsys: pytest.CaptureFixture[str]) -> None:
    main(["--concurrency", "1", "4", "--max-tokens", "8", "--duration", "0.3"])
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("concurrency")]
    assert len(lines) == 2 and all("req/s" in line and "us/chunk" in line for line in lines)
