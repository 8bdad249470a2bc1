"""gate: a rollout's quality bar, e.g. "accuracy_drop<=2pp,ppl_ratio<=1.05", checked per candidate.

Terms (comma-separated), each `METRIC[CATEGORY] OP VALUE`:
- accuracy_drop  baseline accuracy - candidate accuracy on the items both scored, in percentage points (pp);
                 per category with [name], e.g. accuracy_drop[code]<=5pp
- ppl_ratio      candidate perplexity / baseline perplexity on the reference texts (token-weighted); [category] too
- ttft_ratio     candidate median TTFT / baseline median TTFT
- tok_s_ratio    candidate decode tokens/s / baseline decode tokens/s
OP is <=, <, >= or >. A term that cannot be measured (no items, no log-probabilities) fails: a gate that cannot
see fails closed. The verdict uses the point estimates; how sure it is comes from the paired bootstrap (the share
of resamples in which every bootstrapped term holds).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

METRICS = ("accuracy_drop", "ppl_ratio", "ttft_ratio", "tok_s_ratio")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le,
    "<": operator.lt,
    ">=": operator.ge,
    ">": operator.gt,
}
_OPS_NP: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "<=": np.less_equal,
    "<": np.less,
    ">=": np.greater_equal,
    ">": np.greater,
}
_TERM = re.compile(
    r"^\s*(?P<metric>[a-z_]+)\s*(?:\[(?P<cat>[^\]]+)\])?\s*(?P<op><=|>=|<|>)\s*(?P<value>-?[0-9]*\.?[0-9]+)\s*(?P<unit>pp|%)?\s*$"
)


class GateError(ValueError):
    """A gate expression that cannot be parsed; the message names the term."""


@dataclass(frozen=True, slots=True)
class Term:
    metric: str
    category: str | None
    op: str
    value: float  # accuracy_drop in fraction (2pp -> 0.02); ratios as given
    text: str

    def holds(self, measured: float) -> bool:
        return not math.isnan(measured) and _OPS[self.op](measured, self.value)

    def holds_array(self, measured: np.ndarray) -> np.ndarray:
        arr = np.asarray(measured, dtype=float)
        ok: np.ndarray = np.asarray(_OPS_NP[self.op](arr, self.value)) & ~np.isnan(arr)
        return ok

    @property
    def key(self) -> str:
        return self.metric + (f"[{self.category}]" if self.category else "")


def parse_gate(text: str) -> list[Term]:
    terms: list[Term] = []
    for raw in text.split(","):
        if not raw.strip():
            continue
        m = _TERM.match(raw)
        if not m:
            raise GateError(f"gate term {raw.strip()!r}: expected METRIC[CATEGORY]<=VALUE, e.g. accuracy_drop<=2pp")
        metric, unit = m["metric"], m["unit"]
        if metric not in METRICS:
            raise GateError(f"gate term {raw.strip()!r}: unknown metric {metric!r} (known: {', '.join(METRICS)})")
        value = float(m["value"])
        if metric == "accuracy_drop":
            value /= 100.0  # pp (the unit is optional; the number is always percentage points)
        elif unit:
            raise GateError(f"gate term {raw.strip()!r}: {metric} is a ratio, it takes no unit")
        if m["cat"] and metric not in ("accuracy_drop", "ppl_ratio"):
            raise GateError(f"gate term {raw.strip()!r}: only accuracy_drop and ppl_ratio take a [category]")
        terms.append(Term(metric, m["cat"], m["op"], value, raw.strip()))
    if not terms:
        raise GateError("empty gate; e.g. --gate 'accuracy_drop<=2pp,ppl_ratio<=1.05'")
    return terms


def confidence_words(p: float) -> str:
    """How sure a verdict is, from the share of bootstrap resamples that agree with it."""
    if math.isnan(p):
        return "unknown"
    if p >= 0.95:
        return "confident"
    if p >= 0.8:
        return "fairly sure"
    if p >= 0.6:
        return "leaning"
    return "uncertain (a coin flip on this set; add items)"
