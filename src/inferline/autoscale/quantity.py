"""Kubernetes resource quantities ("75", "500m", "1.5k", "2Gi") as the HPA reads them: integer milli-units.

The HPA controller compares metrics in milli-units (`Quantity.MilliValue()`, which rounds up), so a
target of "0.75" is 750 and a per-pod metric of 0.9 is 900. Reading them the same way keeps the
integer arithmetic of the controller (e.g. the truncated average in GetMetricUsageRatio) exact.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["QuantityError", "format_milli", "milli_of_float", "parse_milli"]

_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(r"^\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)\s*(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)\s*$")


class QuantityError(ValueError):
    """Not a Kubernetes quantity."""


def parse_milli(value: str | int | float) -> int:
    """A quantity in milli-units, rounded up like Quantity.MilliValue(): "75" -> 75000, "0.5" -> 500."""
    if isinstance(value, bool):
        raise QuantityError(f"not a quantity: {value!r}")
    if isinstance(value, int):
        return value * 1000
    if isinstance(value, float):
        if not math.isfinite(value):
            raise QuantityError(f"not a quantity: {value!r}")
        text = repr(value)
    else:
        text = str(value)
    m = _QUANTITY.match(text)
    if m is None:
        raise QuantityError(f"not a Kubernetes quantity: {value!r} (expected e.g. 75, 500m, 1.5k, 2Gi)")
    try:
        number = Decimal(m.group(1)) * _SUFFIX[m.group(2)] * 1000
    except InvalidOperation:
        raise QuantityError(f"not a Kubernetes quantity: {value!r}") from None
    return int(number.to_integral_value(rounding="ROUND_CEILING"))


def milli_of_float(value: float) -> int:
    """A metric sample as the custom-metrics adapter hands it over: truncated to milli-units.

    prometheus-adapter builds `resource.NewMilliQuantity(int64(value*1000), DecimalSI)`; KEDA does the same.
    """
    if not math.isfinite(value):
        return 0
    return int(value * 1000.0)


def format_milli(milli: int) -> str:
    """750 -> "750m", 75000 -> "75": the shortest exact form."""
    if milli % 1000 == 0:
        return str(milli // 1000)
    return f"{milli}m"
