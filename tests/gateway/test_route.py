"""route: least-loaded picking and load-gated prefix affinity (called directly)."""

from __future__ import annotations

import time
from typing import Any

from inferline.backends.base import EngineLoad
from inferline.backends.pool import BackendPool, BackendState
from inferline.config import InferlineConfig
from inferline.gateway.route import LeastLoaded, PrefixAffinity, prefix_key
from inferline.metrics import GatewayMetrics

SYSTEM = "You are a meticulous assistant. " * 80  # a long shared system prompt


class _Router:
    """The picker (least-loaded + load-gated affinity) and the prefix key, as the gateway builds them."""

    def __init__(self, cfg: InferlineConfig, metrics: GatewayMetrics) -> None:
        self._routing = cfg.routing
        self._picker = PrefixAffinity(LeastLoaded(cfg.routing.metrics_max_age_s), cfg.routing, metrics)
        self.pick = self._picker.pick

    def prefix_key(self, body: dict[str, Any]) -> bytes | None:
        return prefix_key(body, self._routing)


def _router() -> tuple[_Router, list[BackendState]]:
    cfg = InferlineConfig.model_validate(
        {
            "models": [
                {"name": "m", "backends": [{"name": f"e{i}", "kind": "vllm", "url": "http://x"} for i in range(3)]}
            ]
        }
    )
    metrics = GatewayMetrics()
    pool = BackendPool(cfg.models, cfg.routing, metrics)
    return _Router(cfg, metrics), pool.by_model["m"]


def _load(states: list[BackendState], *kv: float) -> None:
    now = time.monotonic()
    for s, k in zip(states, kv, strict=True):
        s.healthy = True
        s.load = EngineLoad(0, 0, k, now)


def _body(user: str) -> dict[str, Any]:
    return {"messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]}


def test_least_loaded_wins_without_affinity() -> None:
    router, states = _router()
    _load(states, 0.6, 0.1, 0.4)
    assert router.pick(states, time.monotonic(), None) is states[1]


def test_shared_prefix_sticks_to_its_engine_while_load_allows() -> None:
    router, states = _router()
    _load(states, 0.1, 0.1, 0.1)
    key = router.prefix_key(_body("first question"))
    assert key is not None and key == router.prefix_key(_body("a different question"))
    first = router.pick(states, time.monotonic(), key)
    assert first is not None
    # the others become slightly less loaded: still within the gap, the prefix's engine keeps it
    _load(states, *[0.2 if s is first else 0.05 for s in states])
    assert router.pick(states, time.monotonic(), key) is first
    # the prefix's engine is now much busier: affinity yields to load
    _load(states, *[0.9 if s is first else 0.05 for s in states])
    assert router.pick(states, time.monotonic(), key) is not first


def test_short_prompts_get_no_affinity() -> None:
    router, _ = _router()
    assert router.prefix_key({"messages": [{"role": "user", "content": "hi"}]}) is None
