"""results.json round trip: a baseline measured earlier is reused (--baseline-results), and refused when it
does not cover the items of this run."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from inferline.eval.compare import compare, summarize
from inferline.eval.report import render_markdown, results_json
from inferline.eval.runner import EndpointResult, ItemResult, load_results


def _result(name: str) -> EndpointResult:
    items = [
        ItemResult(
            id="a",
            category="chat",
            kind="generated",
            correct=True,
            reply="Paris",
            refusal=False,
            ttft_s=0.1,
            e2e_s=0.5,
            completion_tokens=5,
            has_checks=True,
            ref_nll=3.0,
            ref_tokens=3,
        ),
        ItemResult(id="b", category="code", kind="choice", correct=False, chosen=1, scores=[-2.0, -1.0]),
    ]
    return EndpointResult(name, "http://x/v1", "m", "echo", "", items, 1.5e9, "process_resident_memory_bytes", 2.0)


def _write(tmp_path: Path) -> Path:
    base, cand = _result("base"), _result("cand")
    sb, sc = summarize(base), summarize(cand)
    comp = compare(base, cand, sb, sc)
    path = tmp_path / "results.json"
    path.write_bytes(orjson.dumps(results_json({"x": 1}, [base, cand], [sb, sc], [comp])))
    md = render_markdown("t", 2, [sb, sc], [comp], None, None, {"wall_s": 1.0})
    assert "| base |" in md and "1,431 MiB" in md
    return path


def test_baseline_round_trip(tmp_path: Path) -> None:
    path = _write(tmp_path)
    got = load_results(path, None, ["a", "b"])
    assert got.name == "base" and [i.id for i in got.items] == ["a", "b"]
    assert got.items[0].reply == "Paris" and got.items[1].scores == [-2.0, -1.0]
    assert summarize(got).overall.correct == 1
    assert load_results(path, "cand", ["a"]).items[0].id == "a"  # a subset of a larger run is fine


def test_baseline_refused_when_it_does_not_fit(tmp_path: Path) -> None:
    path = _write(tmp_path)
    with pytest.raises(ValueError, match="was not run on 1 item"):
        load_results(path, None, ["a", "zz"])
    with pytest.raises(ValueError, match="no endpoint named 'nope'"):
        load_results(path, "nope", ["a"])
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match=r"not a results\.json"):
        load_results(tmp_path / "bad.json", None, ["a"])
    with pytest.raises(ValueError, match="no such file"):
        load_results(tmp_path / "missing.json", None, ["a"])


def test_plot_with_perfect_and_zero_scores(tmp_path: Path) -> None:
    """Wilson bounds at 100% used to come out a rounding error below the point: negative error bars crashed."""
    from inferline.eval.plot import write_plot

    items = [ItemResult(id=f"i{n}", category="c", kind="choice", correct=True) for n in range(10)]
    perfect = EndpointResult("a", "u", "m", "echo", "", items, None, "", 1.0)
    zero = EndpointResult(
        "b",
        "u",
        "m",
        "echo",
        "",
        [ItemResult(id=i.id, category="c", kind="choice", correct=False) for i in items],
        None,
        "",
        1.0,
    )
    sa, sb = summarize(perfect), summarize(zero)
    assert sa.overall.ci[1] == 1.0 and sb.overall.ci[0] == 0.0
    path = write_plot([sa, sb], [compare(perfect, zero, sa, sb)], tmp_path / "p.png", "t")
    assert path.read_bytes()[:4] == b"\x89PNG"
