"""The stages called directly with typed inputs: authenticate, saturation (KV accounting), account's vocabulary."""

from __future__ import annotations

import logging
import time
from typing import Any

import pytest

from inferline.backends.base import EngineLoad
from inferline.backends.pool import BackendState
from inferline.config import AdmissionConfig, BackendKind, KVAccounting
from inferline.errors import InvalidRequest, Outcome, Unauthorized, error_headers
from inferline.gateway.account import Accountant
from inferline.gateway.authenticate import Authenticator
from inferline.gateway.estimates import OutputEstimates
from inferline.gateway.saturation import has_room
from inferline.gateway.values import Delivery, Ending
from inferline.limits import Limiter, LimitName, LimitsConfig, hash_api_key
from inferline.limits.base import denial_for
from inferline.metrics import GatewayMetrics


def _limiter() -> Limiter:
    keys = [{"name": "team-a", "sha256": hash_api_key("sk-a"), "priority_class": "batch"}]
    return Limiter.from_config(LimitsConfig.model_validate({"keys": keys}))


def _scope(**headers: str) -> dict[str, Any]:
    return {"headers": [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]}


def test_authenticate_names_the_key_and_its_class_and_the_header_overrides_it() -> None:
    auth = Authenticator(_limiter(), AdmissionConfig())
    p = auth.authenticate(_scope(authorization="Bearer sk-a"))
    assert (p.name, p.priority_class, p.priority_offset_s) == ("team-a", "batch", 60.0)
    p = auth.authenticate(_scope(authorization="Bearer sk-a", x_inferline_priority="interactive"))
    assert (p.priority_class, p.priority_offset_s) == ("interactive", 0.0)
    with pytest.raises(Unauthorized):
        auth.authenticate(_scope(authorization="Bearer sk-wrong"))
    with pytest.raises(InvalidRequest, match="unknown priority class 'vip'"):
        auth.authenticate(_scope(authorization="Bearer sk-a", x_inferline_priority="vip"))


class _Backend:
    def __init__(self, capacity: int) -> None:
        self.name, self.max_num_seqs, self.kind, self.kv_admit_ratio = "e0", 64, BackendKind.VLLM, 0.85
        self.kv_capacity_tokens: int | None = capacity


def _state(kv_ratio: float) -> BackendState:
    b: Any = _Backend(10_000)  # threshold: 8,500 tokens
    return BackendState(backend=b, model="m", healthy=True, load=EngineLoad(4, 0, kv_ratio, time.monotonic()))


def test_engine_accounting_counts_a_shared_prefix_once_as_the_engine_holds_it() -> None:
    # Four requests of ours in flight share a 1,500-token system prompt: at full length they reserve
    # 4 x (1,600 prompt + 200 output) = 7,200 tokens, but the engine holds the prefix once: 40% in use.
    s = _state(0.40)
    s.in_flight, s.reserved_kv_tokens, s.output_budget_in_flight, s.generated_in_flight = 4, 7_200, 800, 300
    now = time.monotonic()
    new = 1_800
    assert not has_room(s, now, 2.0, new, KVAccounting.FULL), "full: 7,200 + 1,800 > 8,500"
    # engine: 4,000 in use + 0 sent since the reading + 500 output still to come + 1,800 = 6,300 <= 8,500
    assert has_room(s, now, 2.0, new, KVAccounting.ENGINE)
    # a request of ours still queued in the engine holds no blocks yet: the gauge cannot show its prompt
    s.unstarted_prompt_tokens = 2_500
    assert not has_room(s, now, 2.0, new, KVAccounting.ENGINE), "4,000 + 2,500 + 500 + 1,800 > 8,500"
    # once it starts, the next reading shows it; until then it still counts
    s.note_started(2_500)
    assert not has_room(s, now, 2.0, new, KVAccounting.ENGINE)
    s.started_prompt_tokens_since_poll = 0  # the load poll's reset, with a reading that includes it
    s.load = EngineLoad(5, 0, 0.65, time.monotonic())
    assert has_room(s, now, 2.0, new - 600, KVAccounting.ENGINE), "6,500 + 500 + 1,200 <= 8,500"


def test_engine_accounting_keeps_room_for_the_output_still_to_come() -> None:
    s = _state(0.50)  # 5,000 in use
    s.in_flight, s.output_budget_in_flight = 2, 3_000
    now = time.monotonic()
    assert not has_room(s, now, 2.0, 1_000), "5,000 + 3,000 still to generate + 1,000 > 8,500"
    s.generated_in_flight = 2_600  # most of it has been generated (and is in the gauge already)
    assert has_room(s, now, 2.0, 1_000)
    s.load = EngineLoad(4, 0, 0.86, time.monotonic())
    assert not has_room(s, now, 2.0, 10), "the engine's own gauge above 0.85 closes it whatever we count"


def test_a_budget_denial_says_budget_exhausted_in_code_header_metric_and_log(caplog: pytest.LogCaptureFixture) -> None:
    denial = denial_for("team-a", LimitName.TOKENS_PER_DAY, 1000, 990, 50, 3600.0)
    exc = denial.error()
    assert exc.status == 429 and exc.code == "budget_exhausted" and exc.outcome is Outcome.BUDGET_EXHAUSTED
    assert (b"x-inferline-outcome", b"budget_exhausted") in error_headers(exc)
    metrics = GatewayMetrics()
    accountant = Accountant(_limiter(), OutputEstimates(["m"], 256), metrics)
    now = time.monotonic_ns()
    with caplog.at_level(logging.INFO, logger="inferline.request"):
        accountant.account(Ending("req-1", now, now, exc.outcome, 429, None, None, None, Delivery(now), exc))
    labels = {"model": "none", "backend": "none", "status": "429", "outcome": "budget_exhausted"}
    assert metrics.registry.get_sample_value("inferline_requests_total", labels) == 1
    assert '"outcome":"budget_exhausted"' in caplog.text


def test_concurrency_denials_have_their_own_outcome() -> None:
    exc = denial_for("team-a", LimitName.MAX_CONCURRENT, 2, 2, 10, 1.0).error()
    assert exc.code == exc.outcome.value == "concurrency_limited"
