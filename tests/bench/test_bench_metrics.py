"""Metric definitions on recorded timelines with known timings (vLLM `bench serve` semantics)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inferline.bench.metrics import (
    SLO,
    distribution,
    e2e_s,
    itl_s,
    parse_slo,
    run_span_s,
    summarize,
    timeseries,
    tpot_s,
    ttft_s,
)
from inferline.bench.record import ErrorKind, RequestRecord


def rec(index: int, send: float, chunks: list[float], *, usage: int | None = None, **kw: object) -> RequestRecord:
    end = chunks[-1] + 0.001 if chunks else send + 0.01
    r = RequestRecord(index=index, send_s=send, scheduled_s=send, chunk_s=list(chunks), end_s=end)
    r.usage_output_tokens = usage
    for k, v in kw.items():
        setattr(r, k, v)
    return r


def test_per_request_definitions_from_known_chunk_times() -> None:
    r = rec(0, 1.0, [1.1, 1.15, 1.2, 1.3])
    assert ttft_s(r) == pytest.approx(0.1)
    assert e2e_s(r) == pytest.approx(0.3)
    assert itl_s(r) == pytest.approx([0.05, 0.05, 0.1])
    assert r.output_tokens == 4  # no usage: content chunks
    tpot = tpot_s(r)
    assert tpot is not None and tpot == pytest.approx(0.2 / 3)


def test_tpot_uses_usage_token_count_when_reported() -> None:
    r = rec(0, 0.0, [0.1, 0.15, 0.2, 0.3], usage=9)  # 9 tokens packed in 4 events
    assert r.output_tokens == 9
    assert tpot_s(r) == pytest.approx(0.2 / 8)


def test_tpot_undefined_for_one_output_token() -> None:
    assert tpot_s(rec(0, 0.0, [0.2])) is None
    assert tpot_s(rec(0, 0.0, [0.2], usage=1)) is None


def test_summarize_throughput_goodput_and_errors() -> None:
    good = [rec(i, float(i), [i + 0.1, i + 0.2, i + 0.3]) for i in range(4)]  # TTFT 100, TPOT 100, E2E 300
    slow = rec(4, 4.0, [4.9, 5.0, 5.1])  # TTFT 900 ms
    failed = RequestRecord(index=5, send_s=5.0, scheduled_s=5.0)
    failed.fail(ErrorKind.HTTP, 5.01, "busy", status=429)
    cut = rec(6, 6.0, [6.1])
    cut.fail(ErrorKind.TRUNCATED, 6.2)
    cancelled = RequestRecord(index=7, send_s=7.0, scheduled_s=7.0)
    cancelled.fail(ErrorKind.CANCELLED, 8.0)
    records = [*good, slow, failed, cut, cancelled]
    for r in records:
        r.prompt_tokens = 10
    s = summarize(records, duration_s=10.0, slo=parse_slo("ttft=500ms,tpot=150ms"))
    assert (s["requests"], s["completed"], s["failed"], s["cancelled"]) == (8, 5, 2, 1)
    assert s["errors"] == {"cancelled": 1, "http_429": 1, "truncated": 1}
    assert s["request_throughput_rps"] == pytest.approx(0.5)
    assert s["output_throughput_tps"] == pytest.approx(15 / 10)
    assert s["total_token_throughput_tps"] == pytest.approx((15 + 50) / 10)
    assert s["goodput_rps"] == pytest.approx(0.4)  # the slow one misses TTFT
    assert s["slo_attainment_ratio"] == pytest.approx(4 / 8)
    assert s["ttft_ms"]["count"] == 5
    assert s["ttft_ms"]["p50"] == pytest.approx(100.0)
    assert s["ttft_ms"]["max"] == pytest.approx(900.0)
    assert s["itl_ms"]["count"] == 10
    assert s["itl_ms"]["mean"] == pytest.approx(100.0)
    assert s["e2e_ms"]["p50"] == pytest.approx(300.0)
    assert s["tpot_ms"]["mean"] == pytest.approx(100.0)


def test_duration_defaults_to_first_send_to_last_end() -> None:
    records = [rec(0, 1.0, [1.5, 2.0]), rec(1, 2.0, [3.0, 4.0])]
    assert run_span_s(records) == pytest.approx(4.001 - 1.0)
    assert summarize(records)["duration_s"] == pytest.approx(3.001)


def test_percentiles_match_numpy_linear_interpolation() -> None:
    values = [float(v) for v in range(1, 101)]
    d = distribution(values)
    for p in (50, 90, 95, 99):
        assert d[f"p{p}"] == pytest.approx(float(np.percentile(values, p)), abs=1e-4)
    assert d["p50"] == pytest.approx(50.5)
    assert d["p99"] == pytest.approx(99.01)
    assert d["mean"] == pytest.approx(50.5)
    assert distribution([])["p99"] is None


def test_slo_semantics() -> None:
    slo = SLO(ttft_ms=200, tpot_ms=50, e2e_ms=1000)
    assert slo.met_by(rec(0, 0.0, [0.1, 0.14, 0.18]))
    assert not slo.met_by(rec(0, 0.0, [0.1, 0.2]))  # TPOT 100 ms
    assert not slo.met_by(rec(0, 0.0, [0.3]))  # TTFT
    assert slo.met_by(rec(0, 0.0, [0.15]))  # one token: TPOT has nothing to violate
    failed = rec(0, 0.0, [0.1])
    failed.fail(ErrorKind.STREAM_ERROR, 0.2)
    assert not slo.met_by(failed)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ttft=800ms,tpot=50ms,e2e=10s", SLO(ttft_ms=800, tpot_ms=50, e2e_ms=10_000)),
        ("ttft=0.5s", SLO(ttft_ms=500)),
        ("tpot=40", SLO(tpot_ms=40)),
        ("e2el:2s, ttft=250us", SLO(ttft_ms=0.25, e2e_ms=2000)),
    ],
)
def test_parse_slo(text: str, expected: SLO) -> None:
    assert parse_slo(text) == expected


@pytest.mark.parametrize("text", ["", "ttft", "latency=3s", "ttft=fast"])
def test_parse_slo_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="SLO"):
        parse_slo(text)


def test_by_class_breakdown_when_workload_mixes_classes() -> None:
    records = [rec(0, 0.0, [0.1, 0.2], cls="short"), rec(1, 0.0, [1.0, 2.0], cls="long")]
    s = summarize(records)
    assert set(s["by_class"]) == {"long", "short"}
    assert s["by_class"]["long"]["ttft_ms"]["p50"] == pytest.approx(1000.0)
    assert "by_class" not in summarize(records[:1])


def test_timeseries_bins_tokens_and_completions() -> None:
    records = [rec(0, 0.0, [0.2, 0.4, 1.2], usage=6), rec(1, 1.0, [1.5, 2.5])]
    failed = RequestRecord(index=2, send_s=1.0)
    failed.fail(ErrorKind.CONNECT, 1.1)
    ts = timeseries([*records, failed], bin_s=1.0)
    assert ts["t_s"] == [0.5, 1.5, 2.5]
    assert ts["output_tps"] == pytest.approx([4.0, 3.0, 1.0])  # 6 tokens over 3 chunks = 2 a chunk
    assert ts["completed_rps"] == [0.0, 1.0, 1.0]
    assert ts["errors_rps"] == [0.0, 1.0, 0.0]


def test_record_json_round_trip() -> None:
    r = rec(3, 0.5, [0.6, 0.7], usage=2, cls="long", prompt_tokens=12, max_tokens=2)
    back = RequestRecord.from_json(r.to_json())
    assert back.chunk_s == pytest.approx(r.chunk_s)
    assert (back.cls, back.prompt_tokens, back.usage_output_tokens) == ("long", 12, 2)
    never_sent = RequestRecord(index=1)
    assert math.isnan(RequestRecord.from_json(never_sent.to_json()).send_s)
