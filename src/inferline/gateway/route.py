"""route: model name -> ordered backends to try (least-loaded ready first, then the fallback chain)."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from inferline.backends.pool import BackendPool, BackendState
from inferline.config import InferlineConfig
from inferline.errors import BackendUnavailable, ModelNotFound

# Backends whose scores differ by less than this are equally good: pick among them at random,
# so equal engines share load instead of the first one in the list taking every request.
_TIE_EPSILON = 0.05


@dataclass(slots=True, frozen=True)
class Target:
    state: BackendState
    model: str  # the model this backend serves (differs from the request's after a fallback)


class Router:
    def __init__(self, config: InferlineConfig, pool: BackendPool) -> None:
        self._pool = pool
        self._max_age_s = config.routing.metrics_max_age_s
        self._chains = {m.name: [m.name, *m.fallback] for m in config.models}
        self._rng = random.Random()

    def known(self, model: str) -> bool:
        return model in self._chains

    def candidates(self, model: str) -> list[Target]:
        """Every ready backend of the model, best first, followed by those of its fallbacks."""
        chain = self._chains.get(model)
        if chain is None:
            raise ModelNotFound(
                f"model {model!r} does not exist; available: {', '.join(sorted(self._chains))}", param="model"
            )
        now = time.monotonic()
        out: list[Target] = []
        for name in chain:
            ready = [s for s in self._pool.by_model[name] if s.ready(now)]
            scored = sorted(
                ((round(s.score(now, self._max_age_s) / _TIE_EPSILON), self._rng.random(), s) for s in ready),
                key=lambda t: (t[0], t[1]),
            )
            out.extend(Target(state=s, model=name) for _, _, s in scored)
        if not out:
            raise BackendUnavailable(
                f"no backend of model {model!r}"
                + (f" or its fallbacks ({', '.join(chain[1:])})" if len(chain) > 1 else "")
                + " is ready",
                retry_after_s=5,
            )
        return out
