"""compare: per-endpoint summaries, candidate-vs-baseline deltas with paired bootstrap intervals, gate verdicts.

Pairing: a delta uses only the items both sides scored. The bootstrap resamples item indices once (one seeded
matrix for the whole set) and recomputes every term on each resample, so the joint "all terms hold" share is
the verdict's confidence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inferline.eval.gate import Term, confidence_words
from inferline.eval.runner import EndpointResult
from inferline.eval.stats import BOOTSTRAP_SAMPLES, Interval, resample_indices, wilson


@dataclass(slots=True)
class Accuracy:
    n: int
    correct: int

    @property
    def value(self) -> float:
        return self.correct / self.n if self.n else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        return wilson(self.correct, self.n)


@dataclass(slots=True)
class Summary:
    name: str
    model: str
    logprobs: str
    logprobs_note: str
    overall: Accuracy
    categories: dict[str, Accuracy]
    ppl: float
    ppl_categories: dict[str, float]
    ref_tokens: int
    refusal_rate: float
    refusals: int
    generated: int
    format_pass: Accuracy
    ttft_p50_s: float
    ttft_p90_s: float
    tok_s: float
    unscored: int
    memory_bytes: float | None
    memory_source: str
    wall_s: float


@dataclass(slots=True)
class TermResult:
    term: Term
    measured: float
    interval: Interval | None
    holds: bool
    share: float  # bootstrap share in which the term holds (nan when not bootstrappable)
    note: str = ""


@dataclass(slots=True)
class Comparison:
    baseline: str
    candidate: str
    paired_items: int
    accuracy_drop: Interval
    category_drop: dict[str, Interval]
    category_paired: dict[str, int]
    ppl_ratio: Interval
    category_ppl_ratio: dict[str, Interval]
    ttft_ratio: float
    tok_s_ratio: float
    discordant: tuple[int, int]  # (baseline right & candidate wrong, baseline wrong & candidate right)
    terms: list[TermResult] = field(default_factory=list)
    passed: bool | None = None
    confidence: float = math.nan

    @property
    def confidence_words(self) -> str:
        return confidence_words(self.confidence)


def summarize(r: EndpointResult) -> Summary:
    cats: dict[str, Accuracy] = {}
    overall = Accuracy(0, 0)
    fmt = Accuracy(0, 0)
    unscored = 0
    nll: dict[str, float] = {}
    tok: dict[str, int] = {}
    refusals = generated = 0
    ttfts: list[float] = []
    dec_tokens = 0
    dec_time = 0.0
    for it in r.items:
        acc = cats.setdefault(it.category, Accuracy(0, 0))
        if it.correct is None:
            if it.kind != "reference":
                unscored += 1
        else:
            acc.n += 1
            acc.correct += int(it.correct)
            overall.n += 1
            overall.correct += int(it.correct)
        if it.has_checks and it.reply is not None:
            fmt.n += 1
            fmt.correct += int(not it.failed_checks)
        if it.ref_nll is not None and it.ref_tokens:
            nll[it.category] = nll.get(it.category, 0.0) + it.ref_nll
            tok[it.category] = tok.get(it.category, 0) + it.ref_tokens
        if it.kind == "generated":
            generated += 1
            refusals += int(bool(it.refusal))
            if it.ttft_s is not None:
                ttfts.append(it.ttft_s)
                if it.completion_tokens and it.completion_tokens > 1 and it.e2e_s is not None:
                    dec_tokens += it.completion_tokens - 1
                    dec_time += it.e2e_s - it.ttft_s
    total_tok = sum(tok.values())
    return Summary(
        name=r.name,
        model=r.model,
        logprobs=r.logprobs,
        logprobs_note=r.logprobs_note,
        overall=overall,
        categories=dict(sorted(cats.items())),
        ppl=math.exp(sum(nll.values()) / total_tok) if total_tok else math.nan,
        ppl_categories={c: math.exp(nll[c] / tok[c]) for c in sorted(tok)},
        ref_tokens=total_tok,
        refusal_rate=refusals / generated if generated else math.nan,
        refusals=refusals,
        generated=generated,
        format_pass=fmt,
        ttft_p50_s=float(np.percentile(ttfts, 50)) if ttfts else math.nan,
        ttft_p90_s=float(np.percentile(ttfts, 90)) if ttfts else math.nan,
        tok_s=dec_tokens / dec_time if dec_time > 0 else math.nan,
        unscored=unscored,
        memory_bytes=r.memory_bytes,
        memory_source=r.memory_source,
        wall_s=r.wall_s,
    )


def _interval(point: float, dist: np.ndarray) -> Interval:
    finite = dist[~np.isnan(dist)]
    if math.isnan(point) or finite.size == 0:
        return Interval(point, math.nan, math.nan)
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return Interval(point, float(lo), float(hi))


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def compare(
    base: EndpointResult,
    cand: EndpointResult,
    base_sum: Summary,
    cand_sum: Summary,
    terms: Sequence[Term] = (),
    samples: int = BOOTSTRAP_SAMPLES,
) -> Comparison:
    by_id = {it.id: it for it in cand.items}
    pairs = [(b, by_id[b.id]) for b in base.items if b.id in by_id]
    n = len(pairs)
    cats = np.array([b.category for b, _ in pairs])
    b_ok = np.array([np.nan if b.correct is None else float(b.correct) for b, _ in pairs])
    c_ok = np.array([np.nan if c.correct is None else float(c.correct) for _, c in pairs])
    acc_mask = ~np.isnan(b_ok) & ~np.isnan(c_ok)
    diff = np.where(acc_mask, np.nan_to_num(b_ok) - np.nan_to_num(c_ok), 0.0)
    b_nll = np.array([b.ref_nll if b.ref_nll is not None and c.ref_nll is not None else 0.0 for b, c in pairs])
    c_nll = np.array([c.ref_nll if b.ref_nll is not None and c.ref_nll is not None else 0.0 for b, c in pairs])
    b_tok = np.array([b.ref_tokens if b.ref_nll is not None and c.ref_nll is not None else 0 for b, c in pairs], float)
    c_tok = np.array([c.ref_tokens if b.ref_nll is not None and c.ref_nll is not None else 0 for b, c in pairs], float)
    idx = resample_indices(n, samples) if n else np.zeros((samples, 0), dtype=int)

    def drop_of(mask: np.ndarray) -> tuple[float, np.ndarray]:
        m = acc_mask & mask
        if not m.any():
            return math.nan, np.full(samples, np.nan)
        point = float(diff[m].sum() / m.sum())
        num = (diff * m)[idx].sum(axis=1)
        den = m[idx].sum(axis=1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            return point, np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)

    def ppl_of(mask: np.ndarray) -> tuple[float, np.ndarray]:
        m = mask & (b_tok > 0)
        if not m.any():
            return math.nan, np.full(samples, np.nan)
        point = math.exp(c_nll[m].sum() / c_tok[m].sum() - b_nll[m].sum() / b_tok[m].sum())
        bt, ct = (b_tok * m)[idx].sum(axis=1), (c_tok * m)[idx].sum(axis=1)
        bn, cn = (b_nll * m)[idx].sum(axis=1), (c_nll * m)[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            dist = np.exp(cn / np.where(ct > 0, ct, 1) - bn / np.where(bt > 0, bt, 1))
        return point, np.where((bt > 0) & (ct > 0), dist, np.nan)

    everything = np.ones(n, dtype=bool)
    acc_point, acc_dist = drop_of(everything)
    ppl_point, ppl_dist = ppl_of(everything)
    cat_names = sorted(set(cats.tolist()))
    cat_drop: dict[str, Interval] = {}
    cat_ppl: dict[str, Interval] = {}
    dists: dict[str, tuple[float, np.ndarray]] = {
        "accuracy_drop": (acc_point, acc_dist),
        "ppl_ratio": (ppl_point, ppl_dist),
    }
    for c in cat_names:
        p, d = drop_of(cats == c)
        cat_drop[c] = _interval(p, d)
        dists[f"accuracy_drop[{c}]"] = (p, d)
        p, d = ppl_of(cats == c)
        cat_ppl[c] = _interval(p, d)
        dists[f"ppl_ratio[{c}]"] = (p, d)
    comp = Comparison(
        baseline=base.name,
        candidate=cand.name,
        paired_items=int(acc_mask.sum()),
        accuracy_drop=_interval(acc_point, acc_dist),
        category_drop=cat_drop,
        category_paired={c: int((acc_mask & (cats == c)).sum()) for c in cat_names},
        ppl_ratio=_interval(ppl_point, ppl_dist),
        category_ppl_ratio=cat_ppl,
        ttft_ratio=_ratio(cand_sum.ttft_p50_s, base_sum.ttft_p50_s),
        tok_s_ratio=_ratio(cand_sum.tok_s, base_sum.tok_s),
        discordant=(
            int(((b_ok == 1) & (c_ok == 0)).sum()),
            int(((b_ok == 0) & (c_ok == 1)).sum()),
        ),
    )
    if terms:
        _apply_gate(comp, terms, dists, samples)
    return comp


def _apply_gate(
    comp: Comparison, terms: Sequence[Term], dists: dict[str, tuple[float, np.ndarray]], samples: int
) -> None:
    joint = np.ones(samples, dtype=bool)
    bootstrapped = False
    for term in terms:
        if term.metric in ("ttft_ratio", "tok_s_ratio"):
            measured = comp.ttft_ratio if term.metric == "ttft_ratio" else comp.tok_s_ratio
            note = "" if not math.isnan(measured) else "not measured (no streamed answers)"
            comp.terms.append(TermResult(term, measured, None, term.holds(measured), math.nan, note))
            continue
        if term.key not in dists:
            comp.terms.append(TermResult(term, math.nan, None, False, 0.0, f"no category {term.category!r} in the set"))
            joint &= False
            continue
        point, dist = dists[term.key]
        if math.isnan(point):
            comp.terms.append(TermResult(term, math.nan, None, False, 0.0, "not measured on both sides"))
            joint &= False
            continue
        ok = np.asarray(term.holds_array(dist), dtype=bool)
        joint &= ok
        bootstrapped = True
        comp.terms.append(TermResult(term, point, _interval(point, dist), term.holds(point), float(ok.mean())))
    comp.passed = all(t.holds for t in comp.terms)
    if bootstrapped or any(not t.holds for t in comp.terms):
        share_pass = float(joint.mean())
        comp.confidence = share_pass if comp.passed else 1.0 - share_pass
