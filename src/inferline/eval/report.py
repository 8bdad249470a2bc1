"""report: the markdown report and the JSON results of one eval run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from inferline.eval.compare import Accuracy, Comparison, Summary
from inferline.eval.runner import EndpointResult


def _pct(a: Accuracy) -> str:
    if not a.n:
        return "n/a"
    lo, hi = a.ci
    return f"{a.value * 100:.1f}% [{lo * 100:.0f}-{hi * 100:.0f}] (n={a.n})"


def _num(v: float | None, fmt: str = "{:.2f}") -> str:
    return "n/a" if v is None or math.isnan(v) else fmt.format(v)


def _mem(s: Summary) -> str:
    return "not exposed" if s.memory_bytes is None else f"{s.memory_bytes / 2**20:,.0f} MiB"


def render_markdown(
    eval_set: str,
    n_items: int,
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
    gate_text: str | None,
    plot_name: str | None,
    meta: dict[str, Any],
) -> str:
    out: list[str] = [f"# inferline eval: {eval_set}", ""]
    out.append(
        f"{n_items} items; endpoints: "
        + ", ".join(f"`{s.name}` ({s.model})" for s in summaries)
        + f"; baseline `{summaries[0].name}`."
    )
    out.append(
        f"Run: {meta.get('started', '')}, {meta.get('wall_s', 0):.0f} s, concurrency {meta.get('concurrency')}, "
        f"temperature 0. Accuracy with 95% Wilson intervals; deltas with 95% paired-bootstrap intervals "
        f"({meta.get('bootstrap_samples')} resamples over items)."
    )
    out.append("")
    if comparisons and gate_text:
        out += [
            "## Gate",
            "",
            f"`{gate_text}` (verdict on point estimates; confidence = share of bootstrap resamples that agree with it)",
            "",
        ]
        out.append("| candidate | verdict | confidence | terms |")
        out.append("|---|---|---|---|")
        for c in comparisons:
            verdict = "**PASS**" if c.passed else "**FAIL**"
            conf = "n/a" if math.isnan(c.confidence) else f"{c.confidence * 100:.0f}% ({c.confidence_words})"
            terms = "; ".join(
                f"{t.term.text}: {_term_value(t.term.metric, t.measured)}"
                + (
                    f" [{_term_value(t.term.metric, t.interval.low)}, {_term_value(t.term.metric, t.interval.high)}]"
                    if t.interval and not math.isnan(t.interval.low)
                    else ""
                )
                + (" ok" if t.holds else " **fails**")
                + (f" ({t.note})" if t.note else "")
                for t in c.terms
            )
            out.append(f"| {c.candidate} | {verdict} | {conf} | {terms} |")
        out.append("")
    cats = sorted({c for s in summaries for c in s.categories})
    out += [
        "## Accuracy per category",
        "",
        "| endpoint | " + " | ".join(cats) + " | overall |",
        "|---|" + "---|" * (len(cats) + 1),
    ]
    for s in summaries:
        out.append(
            f"| {s.name} | "
            + " | ".join(_pct(s.categories.get(c, Accuracy(0, 0))) for c in cats)
            + f" | {_pct(s.overall)} |"
        )
    out.append("")
    if comparisons:
        out += [
            "## Deltas vs baseline (accuracy drop in pp, + = candidate worse)",
            "",
            "| candidate | " + " | ".join(cats) + " | overall | right->wrong / wrong->right |",
            "|---|" + "---|" * (len(cats) + 2),
        ]
        for c in comparisons:
            out.append(
                f"| {c.candidate} | "
                + " | ".join(
                    c.category_drop[k].fmt(100, 1) + f" (n={c.category_paired.get(k, 0)})"
                    if k in c.category_drop
                    else "n/a"
                    for k in cats
                )
                + f" | {c.accuracy_drop.fmt(100, 1)} (n={c.paired_items}) | "
                f"{c.discordant[0]} / {c.discordant[1]} |"
            )
        out.append("")
    out += [
        "## Perplexity of reference texts, refusals, format, latency, memory",
        "",
        "| endpoint | ppl | ppl ratio [95%] | refusals | format checks | TTFT p50 / p90 | decode tok/s | "
        "memory | logprobs |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    comp_by = {c.candidate: c for c in comparisons}
    for s in summaries:
        cmp = comp_by.get(s.name)
        ratio = cmp.ppl_ratio.fmt(1, 3).replace("+", "") if cmp else "baseline"
        fmt_cell = _pct(s.format_pass) if s.format_pass.n else "n/a"
        ref = f"{s.refusals}/{s.generated}" if s.generated else "n/a"
        out.append(
            f"| {s.name} | {_num(s.ppl)} | {ratio} | {ref} | {fmt_cell} | "
            f"{_num(s.ttft_p50_s * 1000, '{:.0f}')} / {_num(s.ttft_p90_s * 1000, '{:.0f}')} ms | "
            f"{_num(s.tok_s, '{:.1f}')} | {_mem(s)} | {s.logprobs} |"
        )
    out.append("")
    notes = [f"- `{s.name}`: {s.unscored} item(s) not scored: {s.logprobs_note}" for s in summaries if s.unscored]
    notes += [f"- `{s.name}` memory: {s.memory_source}" for s in summaries]
    if notes:
        out += ["Notes:", "", *notes, ""]
    ppl_cats = sorted({c for s in summaries for c in s.ppl_categories})
    if ppl_cats:
        out += [
            "### Perplexity per category",
            "",
            "| endpoint | " + " | ".join(ppl_cats) + " |",
            "|---|" + "---|" * len(ppl_cats),
        ]
        for s in summaries:
            out.append(f"| {s.name} | " + " | ".join(_num(s.ppl_categories.get(c)) for c in ppl_cats) + " |")
        out.append("")
    out += [
        "## How sure is this?",
        "",
        "Per-category sets are small: a 95% interval of +-10-15 pp on 40 items is normal, so a category delta "
        "whose interval spans 0 is not evidence of a change. The overall delta pairs every item and is the one "
        "to gate on; `right->wrong / wrong->right` counts the items that flipped (McNemar's discordant pairs).",
        "",
    ]
    if plot_name:
        out += [f"![accuracy per category]({plot_name})", ""]
    return "\n".join(out)


def _term_value(metric: str, v: float) -> str:
    if math.isnan(v):
        return "n/a"
    return f"{v * 100:.1f}pp" if metric == "accuracy_drop" else f"{v:.3f}"


def results_json(
    meta: dict[str, Any],
    results: Sequence[EndpointResult],
    summaries: Sequence[Summary],
    comparisons: Sequence[Comparison],
) -> dict[str, Any]:
    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and math.isnan(obj):
            return None
        if isinstance(obj, dict):
            return {str(k): clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    summ = []
    for s in summaries:
        d = asdict(s)
        d["overall"]["accuracy"] = s.overall.value
        d["overall"]["ci95"] = list(s.overall.ci)
        for k, a in s.categories.items():
            d["categories"][k]["accuracy"] = a.value
            d["categories"][k]["ci95"] = list(a.ci)
        summ.append(d)
    comps = []
    for c in comparisons:
        d = asdict(c)
        d["passed"] = c.passed
        d["confidence_words"] = c.confidence_words
        d["terms"] = [
            {
                "term": t.term.text,
                "measured": t.measured,
                "holds": t.holds,
                "share": t.share,
                "ci95": None if t.interval is None else [t.interval.low, t.interval.high],
                "note": t.note,
            }
            for t in c.terms
        ]
        comps.append(d)
    out: dict[str, Any] = clean(
        {"meta": meta, "summaries": summ, "comparisons": comps, "endpoints": [asdict(r) for r in results]}
    )
    return out
