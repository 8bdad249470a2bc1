"""Distributions of durations and token counts: `30`, `uniform:20:40`, `normal:60:10`, `lognormal:60:0.3`, `exp:30`."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

__all__ = ["Dist"]


@dataclass(frozen=True, slots=True)
class Dist:
    """A duration (or length) distribution: `30`, `uniform:20:40`, `normal:60:10`, `lognormal:60:0.3`, `exp:30`."""

    kind: str = "fixed"
    a: float = 0.0
    b: float = 0.0

    @classmethod
    def parse(cls, text: str | float | int, what: str = "value") -> Dist:
        if isinstance(text, (int, float)) and not isinstance(text, bool):
            if text < 0 or not math.isfinite(text):
                raise ValueError(f"{what}: must be >= 0; got {text}")
            return cls("fixed", float(text))
        raw = str(text).strip()
        kind, _, rest = raw.partition(":")
        try:
            if not rest:
                value = float(raw.removesuffix("s"))
                if value < 0 or not math.isfinite(value):
                    raise ValueError
                return cls("fixed", value)
            args = [float(x.removesuffix("s")) for x in rest.split(":")]
        except ValueError:
            raise ValueError(f"{what}: {raw!r} is not a number or a distribution ({_DIST_HELP})") from None
        if kind == "uniform" and len(args) == 2 and 0 <= args[0] <= args[1]:
            return cls(kind, args[0], args[1])
        if kind == "normal" and len(args) == 2 and args[0] >= 0 and args[1] >= 0:
            return cls(kind, args[0], args[1])
        if kind == "lognormal" and len(args) == 2 and args[0] > 0 and args[1] >= 0:
            return cls(kind, args[0], args[1])
        if kind == "exp" and len(args) == 1 and args[0] > 0:
            return cls(kind, args[0])
        raise ValueError(f"{what}: bad distribution {raw!r} ({_DIST_HELP})")

    @property
    def mean(self) -> float:
        if self.kind == "uniform":
            return (self.a + self.b) / 2
        return self.a

    def sample(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            return self.a
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b)
        if self.kind == "normal":
            return max(0.0, rng.gauss(self.a, self.b))
        if self.kind == "lognormal":  # mean a, coefficient of variation b
            sigma2 = math.log1p(self.b * self.b)
            return rng.lognormvariate(math.log(self.a) - sigma2 / 2, math.sqrt(sigma2))
        return rng.expovariate(1.0 / self.a)

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.a:g}"
        if self.kind == "exp":
            return f"exp:{self.a:g}"
        return f"{self.kind}:{self.a:g}:{self.b:g}"


_DIST_HELP = "N, uniform:LO:HI, normal:MEAN:SD, lognormal:MEAN:CV or exp:MEAN"
