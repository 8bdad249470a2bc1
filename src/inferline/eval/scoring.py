"""scoring: the metric definitions. A reply or a set of choice log-probabilities -> right or wrong, and why.

- exact: the normalized reply equals the normalized answer (or an alias). Normalized = lower case, punctuation
  and articles dropped, whitespace collapsed (SQuAD's normalization).
- contains: the normalized answer (or an alias) appears in the normalized reply as whole words.
- number: the last number in the reply equals the answer (replies like "2 + 3 = 5" end with their result).
- checks: no_refusal / refusal (a refusal phrase opens the reply), json (the reply, without a code fence, parses
  as JSON), one_line, max_words:N, regex:PATTERN (re.search). An item is right only if its answer matches and
  every check passes.
- choices: the choice whose continuation has the highest total log-probability (per UTF-8 byte when `norm`).
- perplexity: exp(-sum(logprob) / tokens) over the reference's tokens; pooled over items token-weighted.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

from inferline.eval.dataset import EvalItem, Match

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
# Phrases that open a refusal. Checked on the first 120 characters, lower case, curly quotes straightened.
REFUSAL_PATTERNS = (
    r"\bi (?:can ?not|can't|won't|will not|am unable to|'m unable to|am not able to|'m not able to)\b",
    r"\bi'?m sorry\b",
    r"\bi apologi[sz]e\b",
    r"\bas an ai\b",
    r"\bi'?m (?:just )?an ai\b",
    r"\bi (?:don't|do not) have (?:access|the ability)\b",
)
_REFUSAL = re.compile("|".join(REFUSAL_PATTERNS))
_FENCE = re.compile(r"^\s*```[a-zA-Z0-9]*\s*\n(.*?)\n?```\s*$", re.S)


def normalize(text: str) -> str:
    """SQuAD-style: lower case, punctuation to spaces, articles dropped, whitespace collapsed."""
    text = text.lower().translate(_PUNCT)
    return " ".join(_ARTICLES.sub(" ", text).split())


def last_number(text: str) -> float | None:
    found = _NUMBER.findall(text)
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def is_refusal(text: str) -> bool:
    head = text[:120].lower().replace("\u2019", "'")
    return _REFUSAL.search(head) is not None


def answer_matches(reply: str, answer: str, aliases: Sequence[str], match: Match) -> bool:
    targets = [answer, *aliases]
    if match is Match.NUMBER:
        got = last_number(reply)
        return got is not None and any(
            (want := last_number(t)) is not None and math.isclose(got, want, abs_tol=1e-9) for t in targets
        )
    norm_reply = normalize(reply)
    if match is Match.EXACT:
        return any(norm_reply == normalize(t) for t in targets)
    padded = f" {norm_reply} "
    return any((n := normalize(t)) and f" {n} " in padded for t in targets)


def check_passes(reply: str, check: str) -> bool:
    if check == "no_refusal":
        return not is_refusal(reply)
    if check == "refusal":
        return is_refusal(reply)
    if check == "one_line":
        return "\n" not in reply.strip()
    if check == "json":
        body = reply.strip()
        fenced = _FENCE.match(body)
        if fenced:
            body = fenced.group(1)
        try:
            json.loads(body)
        except ValueError:
            return False
        return True
    if check.startswith("max_words:"):
        return len(reply.split()) <= int(check.split(":", 1)[1])
    if check.startswith("regex:"):
        return re.search(check[len("regex:") :], reply) is not None
    raise ValueError(f"unknown check {check!r}")


@dataclass(frozen=True, slots=True)
class GeneratedScore:
    correct: bool
    answer_ok: bool | None  # None: the item has no answer, only checks
    failed_checks: tuple[str, ...]
    refusal: bool


def score_generated(item: EvalItem, reply: str) -> GeneratedScore:
    answer_ok = None if item.answer is None else answer_matches(reply, item.answer, item.aliases, item.match)
    failed = tuple(c for c in item.checks if not check_passes(reply, c))
    return GeneratedScore(
        correct=(answer_ok is not False) and not failed,
        answer_ok=answer_ok,
        failed_checks=failed,
        refusal=is_refusal(reply),
    )


def choice_scores(choices: Sequence[str], logprobs: Sequence[Sequence[float]], norm: bool) -> list[float]:
    """Score of each choice: total log-probability of its tokens, or per UTF-8 byte when `norm`."""
    out = []
    for text, lps in zip(choices, logprobs, strict=True):
        total = float(sum(lps))
        out.append(total / max(1, len(text.encode())) if norm else total)
    return out


def pick_choice(scores: Sequence[float]) -> int:
    """Index of the best score; ties go to the earliest choice (deterministic)."""
    best = 0
    for i, s in enumerate(scores):
        if s > scores[best]:
            best = i
    return best


def perplexity(nll_sum: float, tokens: int) -> float:
    """exp(mean negative log-likelihood per token); NaN without tokens."""
    return math.exp(nll_sum / tokens) if tokens else math.nan
