"""The gate: parsing, fail-closed terms, verdicts and their bootstrap confidence on fixed per-item results."""

from __future__ import annotations

import math

import pytest

from inferline.eval.compare import compare, summarize
from inferline.eval.gate import GateError, parse_gate
from inferline.eval.runner import EndpointResult, ItemResult
from inferline.eval.stats import paired_accuracy_drop, wilson


def test_parse_gate() -> None:
    terms = parse_gate("accuracy_drop<=2pp, ppl_ratio<=1.05 ,accuracy_drop[code]<5,tok_s_ratio>=0.8")
    assert [(t.metric, t.category, t.op) for t in terms] == [
        ("accuracy_drop", None, "<="),
        ("ppl_ratio", None, "<="),
        ("accuracy_drop", "code", "<"),
        ("tok_s_ratio", None, ">="),
    ]
    assert terms[0].value == pytest.approx(0.02) and terms[2].value == pytest.approx(0.05)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("accuracy<=2pp", "unknown metric"),
        ("accuracy_drop=2", "expected METRIC"),
        ("ppl_ratio<=1.05pp", "takes no unit"),
        ("ttft_ratio[code]<=2", "only accuracy_drop and ppl_ratio"),
        (" , ", "empty gate"),
    ],
)
def test_bad_gate(text: str, message: str) -> None:
    with pytest.raises(GateError, match=message):
        parse_gate(text)


def _result(
    name: str, correct: list[bool], nll: float = 2.0, categories: tuple[str, ...] = ("a", "b")
) -> EndpointResult:
    items = [
        ItemResult(
            id=f"i{n}",
            category=categories[n % len(categories)],
            kind="choice",
            correct=ok,
            ref_nll=nll * 10,
            ref_tokens=10,
        )
        for n, ok in enumerate(correct)
    ]
    return EndpointResult(name, "http://x/v1", "m", "echo", "", items, None, "not exposed", 1.0)


def _compare(base: EndpointResult, cand: EndpointResult, gate: str):  # type: ignore[no-untyped-def]
    return compare(base, cand, summarize(base), summarize(cand), parse_gate(gate))


def test_identical_answers_pass_with_confidence() -> None:
    base = _result("base", [True, False] * 50)
    c = _compare(base, _result("cand", [True, False] * 50), "accuracy_drop<=2pp,ppl_ratio<=1.05")
    assert c.passed and c.accuracy_drop.point == 0 and c.ppl_ratio.point == pytest.approx(1.0)
    assert c.confidence == 1.0 and c.discordant == (0, 0)


def test_a_clear_drop_fails_confidently() -> None:
    base = _result("base", [True] * 100)
    cand = _result("cand", [True] * 70 + [False] * 30, nll=2.2)
    c = _compare(base, cand, "accuracy_drop<=2pp,ppl_ratio<=1.05")
    assert not c.passed
    assert c.accuracy_drop.point == pytest.approx(0.30)
    assert c.ppl_ratio.point == pytest.approx(math.exp(0.2))
    assert c.confidence > 0.99 and c.discordant == (30, 0)
    assert [t.holds for t in c.terms] == [False, False]


def test_a_drop_at_the_threshold_is_uncertain() -> None:
    base = _result("base", [True] * 100)
    cand = _result("cand", [True] * 98 + [False] * 2)
    c = _compare(base, cand, "accuracy_drop<=2pp")
    assert c.passed  # 2.0pp <= 2pp on the point estimate
    assert 0.3 < c.confidence < 0.9  # but many resamples drop more than 2 of 100
    assert c.accuracy_drop.low <= 0.02 <= c.accuracy_drop.high


def test_unmeasurable_terms_fail_closed() -> None:
    base = _result("base", [True] * 10)
    cand = _result("cand", [True] * 10)
    for it in cand.items:
        it.ref_nll = None
    c = _compare(base, cand, "ppl_ratio<=1.05,accuracy_drop[nosuch]<=5pp,ttft_ratio<=2")
    assert not c.passed
    assert [t.holds for t in c.terms] == [False, False, False]
    assert "not measured" in c.terms[0].note and "no category" in c.terms[1].note


def test_per_category_drop_only_counts_that_category() -> None:
    base = _result("base", [True] * 40)
    cand = _result("cand", [True, False] * 20)  # category a (even) right, b (odd) wrong
    c = _compare(base, cand, "accuracy_drop[a]<=2pp,accuracy_drop[b]<=2pp")
    assert c.category_drop["a"].point == 0 and c.category_drop["b"].point == pytest.approx(1.0)
    assert [t.holds for t in c.terms] == [True, False]


def test_unscored_items_are_left_out_of_pairs() -> None:
    base = _result("base", [True] * 10)
    cand = _result("cand", [True] * 10)
    for it in cand.items[:4]:
        it.correct = None
    c = _compare(base, cand, "accuracy_drop<=2pp")
    assert c.paired_items == 6 and summarize(cand).unscored == 4


def test_wilson_and_bootstrap_basics() -> None:
    lo, hi = wilson(8, 10)
    assert lo == pytest.approx(0.4902, abs=1e-3) and hi == pytest.approx(0.9433, abs=1e-3)
    assert all(math.isnan(v) for v in wilson(0, 0))
    iv, dist = paired_accuracy_drop([True] * 20, [True] * 20)
    assert (iv.point, iv.low, iv.high) == (0.0, 0.0, 0.0) and dist.shape == (2000,)
