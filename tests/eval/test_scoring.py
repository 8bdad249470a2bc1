"""Metric definitions on fixed answers: normalization, exact/contains/number, checks, choices, perplexity."""

from __future__ import annotations

import math

import pytest

from inferline.eval.dataset import EvalItem, Match
from inferline.eval.scoring import (
    answer_matches,
    check_passes,
    choice_scores,
    is_refusal,
    normalize,
    perplexity,
    pick_choice,
    score_generated,
)


def test_normalize_drops_case_punctuation_articles_and_spaces() -> None:
    assert normalize("  The  Capital, of FRANCE is... Paris!  ") == "capital of france is paris"


@pytest.mark.parametrize(
    ("reply", "answer", "match", "expected"),
    [
        ("Paris", "paris", Match.EXACT, True),
        ("Paris.", "Paris", Match.EXACT, True),
        ("It is Paris.", "Paris", Match.EXACT, False),
        ("The capital of France is Paris.", "Paris", Match.CONTAINS, True),
        ("Parisian food is great", "Paris", Match.CONTAINS, False),  # whole words only
        ("2 + 3 = 5", "5", Match.NUMBER, True),  # the last number is the result
        ("5 is not it, 6 is", "5", Match.NUMBER, False),
        ("The answer is 1,024.", "1024", Match.NUMBER, True),
        ("no digits here", "3", Match.NUMBER, False),
    ],
)
def test_answer_matches(reply: str, answer: str, match: Match, expected: bool) -> None:
    assert answer_matches(reply, answer, (), match) is expected


def test_aliases_count_as_answers() -> None:
    assert answer_matches("A week has seven days.", "7", ("seven",), Match.CONTAINS)


@pytest.mark.parametrize(
    ("reply", "refusal"),
    [
        ("I'm sorry, but I can't help with that.", True),
        ("I cannot do that.", True),
        ("As an AI, I have no opinion.", True),
        ("I can’t assist with that request.", True),  # curly apostrophe
        ("Sure! Here is the function.", False),
        ("The capital is Paris. I cannot stress this enough" + " x" * 80, True),  # within the first 120 chars
    ],
)
def test_refusal(reply: str, refusal: bool) -> None:
    assert is_refusal(reply) is refusal


@pytest.mark.parametrize(
    ("reply", "check", "ok"),
    [
        ('{"a": 1}', "json", True),
        ('```json\n{"a": 1}\n```', "json", True),
        ("{a: 1}", "json", False),
        ("one two three", "max_words:3", True),
        ("one two three four", "max_words:3", False),
        ("one line", "one_line", True),
        ("two\nlines", "one_line", False),
        ("def square(x):\n    return x * x", r"regex:def\s+square\s*\(", True),
        ("square = lambda x: x * x", r"regex:def\s+square\s*\(", False),
        ("Sure.", "no_refusal", True),
        ("I'm sorry, I can't.", "refusal", True),
    ],
)
def test_checks(reply: str, check: str, ok: bool) -> None:
    assert check_passes(reply, check) is ok


def test_generated_item_needs_answer_and_every_check() -> None:
    item = EvalItem(id="x", category="c", prompt="p", answer="Paris", checks=("max_words:5",))
    assert score_generated(item, "Paris.").correct
    long = score_generated(item, "The capital of France is Paris, of course.")
    assert long.answer_ok and not long.correct and long.failed_checks == ("max_words:5",)
    checks_only = EvalItem(id="y", category="c", prompt="p", checks=("json",))
    assert score_generated(checks_only, "[1, 2]").correct and score_generated(checks_only, "nope").correct is False


def test_choice_scores_sum_or_per_byte() -> None:
    choices = [" a", " longer choice"]
    lps = [[-2.0], [-1.0, -1.0, -1.0]]
    assert choice_scores(choices, lps, norm=False) == [-2.0, -3.0]
    assert pick_choice(choice_scores(choices, lps, norm=False)) == 0
    normed = choice_scores(choices, lps, norm=True)
    assert normed == [-1.0, pytest.approx(-3.0 / 14)]
    assert pick_choice(normed) == 1


def test_pick_choice_ties_go_to_the_first() -> None:
    assert pick_choice([-1.0, -1.0, -2.0]) == 0


def test_perplexity_is_exp_mean_nll() -> None:
    assert perplexity(2 * math.log(4), 2) == pytest.approx(4.0)
    assert math.isnan(perplexity(0.0, 0))
