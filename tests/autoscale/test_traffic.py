"""Traffic shapes and traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from inferline.autoscale.lifecycle import Dist
from inferline.autoscale.traffic import TrafficError, TrafficShape, load_trace, synthesize


def test_shapes_follow_their_rate() -> None:
    tr = synthesize(
        TrafficShape.parse("spike:base=10,peak=50,at=100,for=100"), 300, Dist("fixed", 100), Dist("fixed", 10)
    )
    before = np.sum(tr.arrival_s < 100) / 100
    during = np.sum((tr.arrival_s >= 100) & (tr.arrival_s < 200)) / 100
    assert 7 < before < 13 and 42 < during < 58
    diurnal = TrafficShape.parse("diurnal:base=1,peak=9,period=100")
    assert diurnal.rate(np.array([0.0, 50.0, 100.0])).tolist() == pytest.approx([1.0, 9.0, 1.0])
    ramp = TrafficShape.parse("ramp:base=0,peak=10,at=10,for=10")
    assert ramp.rate(np.array([5.0, 15.0, 30.0])).tolist() == [0.0, 5.0, 10.0]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("surge:base=1", "unknown traffic shape"),
        ("step:base=1,peak=2", "missing at="),
        ("step:base=1,peak=x,at=3", "is not a number"),
        ("constant:rate=1,burst=2", "unknown key 'burst'"),
    ],
)
def test_bad_shapes(text: str, message: str) -> None:
    with pytest.raises(TrafficError, match=message):
        TrafficShape.parse(text)


def test_csv_and_jsonl_traces(tmp_path: Path) -> None:
    csv = tmp_path / "t.csv"
    csv.write_text("arrival_s,prompt_tokens,output_tokens\n10.5,100,20\n10.0,50,5\n")
    tr = load_trace(csv)
    assert tr.arrival_s.tolist() == [0.0, 0.5] and tr.prompt_tokens.tolist() == [50, 100]
    jl = tmp_path / "t.jsonl"
    jl.write_text('{"t": 1, "prompt_tokens": 7, "output_tokens": 3, "max_tokens": 9}\n\n')
    one = load_trace(jl)
    assert (len(one), one.max_tokens.tolist()) == (1, [9])


def test_trace_errors(tmp_path: Path) -> None:
    empty = tmp_path / "e.csv"
    empty.write_text("arrival_s,prompt_tokens,output_tokens\n")
    with pytest.raises(TrafficError, match="has no requests"):
        load_trace(empty)
    bad = tmp_path / "b.csv"
    bad.write_text("arrival_s,prompt_tokens\n1,2\n")
    with pytest.raises(TrafficError, match="missing output_tokens"):
        load_trace(bad)
    with pytest.raises(TrafficError, match="no such file"):
        load_trace(tmp_path / "none.csv")


def test_bench_json_with_and_without_timelines(tmp_path: Path) -> None:
    req = {
        "index": 0,
        "prompt_tokens": 300,
        "max_tokens": 64,
        "scheduled_s": 1.5,
        "send_s": 1.5,
        "chunk_s": [2.0, 2.1],
        "end_s": 2.1,
        "usage_output_tokens": 2,
        "status": 200,
        "error": None,
    }
    data = {
        "schema": "inferline.bench/1",
        "runs": [{"requests": [req, {**req, "scheduled_s": 0.5}]}, {"requests": [req]}],
    }
    f = tmp_path / "bench.json"
    f.write_bytes(orjson.dumps(data))
    tr = load_trace(f)
    assert len(tr) == 3 and tr.output_tokens.tolist() == [2, 2, 2] and tr.max_tokens.tolist() == [64, 64, 64]
    assert tr.arrival_s[2] > tr.arrival_s[1]  # the second run plays after the first
    data["runs"] = [{"summary": {}}]
    f.write_bytes(orjson.dumps(data))
    with pytest.raises(TrafficError, match="--save-requests"):
        load_trace(f)
