"""The SLO capacity search on simulated engines, and profiles fitted to bench results."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from inferline.advise.bench_profile import BenchProfileError, profile_from_bench
from inferline.advise.capacity import measure, slo_capacity, unloaded
from inferline.autoscale.lifecycle import Dist
from inferline.sim.profiles import CPU_SMOLLM2


def test_unloaded_latency_is_the_profile_arithmetic() -> None:
    ttft, tpot = unloaded(CPU_SMOLLM2, 100, 20)
    # one prefill step of 100 tokens (+ the step base), then one step per token at one sequence
    assert ttft == pytest.approx((CPU_SMOLLM2.step_base_s + 100 * CPU_SMOLLM2.prefill_token_s) * 1000)
    assert tpot == pytest.approx((CPU_SMOLLM2.step_base_s + CPU_SMOLLM2.decode_seq_s) * 1000)


def test_capacity_passes_below_and_fails_above() -> None:
    prompt, output = Dist("fixed", 60), Dist("fixed", 32)
    cap = slo_capacity(CPU_SMOLLM2, prompt, output, 1000.0, None, duration_s=120, precision=0.1, cache=False)
    assert cap.rate_rps > 0 and cap.at_capacity is not None
    assert cap.at_capacity.ttft_p95_ms <= 1000.0 and cap.at_capacity.rejected == 0
    over = measure(CPU_SMOLLM2, cap.rate_rps * 2.5, prompt, output, 120)
    assert over.ttft_p95_ms > 1000.0 or over.rejected > 0


def test_an_slo_below_the_idle_ttft_has_no_capacity() -> None:
    cap = slo_capacity(CPU_SMOLLM2, Dist("fixed", 512), Dist("fixed", 64), 800.0, cache=False)
    assert cap.rate_rps == 0 and "unreachable" in cap.limit


def _bench(tmp_path: Path, points: list[tuple[float, float, float]], prompt: int = 200) -> Path:
    runs = [
        {"summary": {"completed": 50, "mean_in_flight": n, "tpot_ms": {"p50": tpot}, "ttft_ms": {"p50": ttft},
                     "input_tokens": 50 * prompt}}
        for n, tpot, ttft in points
    ]  # fmt: skip
    f = tmp_path / "bench.json"
    f.write_bytes(orjson.dumps({"schema": "inferline.bench/1", "model": "m", "runs": runs}))
    return f


def test_profile_from_bench_recovers_the_step_model(tmp_path: Path) -> None:
    base, seq, prefill = 0.012, 0.0004, 0.0001  # s, s/sequence, s/prompt token
    points = [(n, (base + seq * n) * 1000, (base + prefill * 200) * 1000 + 1.0 * (n > 1)) for n in (1.0, 8.0, 32.0)]
    profile, notes = profile_from_bench(_bench(tmp_path, points), max_num_seqs=64)
    assert profile.step_base_s == pytest.approx(base, rel=1e-6)
    assert profile.decode_seq_s == pytest.approx(seq, rel=1e-6)
    assert profile.prefill_token_s == pytest.approx(prefill, rel=1e-6)
    assert profile.max_num_seqs == 64 and any("KV cache not measured" in n for n in notes)


def test_profile_from_bench_errors(tmp_path: Path) -> None:
    f = tmp_path / "x.json"
    f.write_text("{}")
    with pytest.raises(BenchProfileError, match="not an inferline bench result"):
        profile_from_bench(f)
    with pytest.raises(BenchProfileError, match="no such file"):
        profile_from_bench(tmp_path / "none.json")
    one, notes = profile_from_bench(_bench(tmp_path, [(4.0, 20.0, 40.0)]))
    assert one.decode_seq_s == 0 and "one load level only" in notes[0]


def test_profile_from_a_recorded_bench_of_the_simulated_h100_recovers_its_step() -> None:
    """examples/advise/bench-sim-h100.json: `inferline bench --concurrency 1,8,32` against `inferline sim
    --profile h100-llama8b` (real time, a busy machine): the fitted base step is the profile's 10 ms."""
    bench = Path(__file__).resolve().parents[2] / "examples" / "advise" / "bench-sim-h100.json"
    profile, _ = profile_from_bench(bench)
    assert profile.step_base_s == pytest.approx(0.010, rel=0.1)
    assert 0 < profile.decode_seq_s < 0.001 and 0 < profile.prefill_token_s < 0.001
