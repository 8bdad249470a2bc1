"""Canary routing: the split holds its share, callers stick to one variant, a worse candidate is rolled back.

The split and the rollback rule are called directly; then a gateway (in process) in front of two simulated
engines — the baseline and the candidate model — shows the whole path: headers, /canaries, metrics, and a
rollback when the candidate starts failing, with no request lost (its failures are retried on the baseline).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
from rich.console import Console

from inferline.config import CanaryConfig, InferlineConfig
from inferline.gateway.app import build_app
from inferline.gateway.canary import BASELINE, CANDIDATE, Canary
from inferline.metrics import GatewayMetrics
from inferline.observe.top import render
from inferline.observe.topdata import ScrapeHistory, parse_scrape
from inferline.sim import SimFleet


def _canary(**cfg: Any) -> Canary:
    return Canary("base", CanaryConfig.model_validate({"model": "cand", **cfg}), GatewayMetrics())


def test_split_holds_the_configured_share_and_callers_stick_to_one_variant() -> None:
    canary = _canary(weight=0.2)
    picks = {f"session-{i}": canary.choose(f"session-{i}", None) for i in range(4000)}
    share = sum(1 for v in picks.values() if v == CANDIDATE) / len(picks)
    assert 0.17 <= share <= 0.23, share  # 4,000 callers: +-3 points is > 4 standard deviations
    for session, variant in list(picks.items())[:200]:
        assert all(canary.choose(session, None) == variant for _ in range(5)), "a session never flips"
    # without a session header the API key decides; with sticky none every request is drawn anew
    assert len({canary.choose(None, "team-a") for _ in range(50)}) == 1
    loose = _canary(weight=0.5, sticky="none")
    assert set(Counter(loose.choose("same", "same") for _ in range(200))) == {BASELINE, CANDIDATE}


def test_a_worse_candidate_is_rolled_back_only_once_both_sides_have_enough_requests() -> None:
    canary = _canary(weight=0.3, rollback={"min_requests": 40, "max_error_ratio_increase": 0.05})
    for i in range(40):
        canary.observe(BASELINE, True, 0.1, 50.0)
        canary.observe(CANDIDATE, i % 4 != 0, 0.1, 50.0)  # 25% of its attempts fail
        if i < 39:
            assert canary.rolled_back_reason is None, "no verdict before min_requests on both sides"
    assert canary.rolled_back_reason is not None and "error ratio 25.0%" in canary.rolled_back_reason
    assert canary.weight == 0 and all(canary.choose(f"s{i}", None) == BASELINE for i in range(100))


def test_slow_candidate_is_rolled_back_on_ttft_and_an_equal_one_is_kept() -> None:
    slow = _canary(weight=0.5, rollback={"min_requests": 10})
    same = _canary(weight=0.5, rollback={"min_requests": 10})
    for _ in range(10):
        for c, cand_ttft in ((slow, 0.4), (same, 0.105)):
            c.observe(BASELINE, True, 0.1, 50.0)
            c.observe(CANDIDATE, True, cand_ttft, 48.0)
    assert slow.rolled_back_reason is not None and "median TTFT 400 ms vs 100 ms" in slow.rolled_back_reason
    assert same.rolled_back_reason is None and same.weight == 0.5
    fast = _canary(weight=0.5, rollback={"min_requests": 10})  # 2x slower, but by 10 ms: within tolerance
    for _ in range(10):
        fast.observe(BASELINE, True, 0.010, 50.0)
        fast.observe(CANDIDATE, True, 0.020, 50.0)
    assert fast.rolled_back_reason is None


def _config(base_url: str, cand_url: str, **canary: Any) -> InferlineConfig:
    fast = {"health_interval_s": 0.2, "load_interval_s": 0.05, "eject_after_failures": 1000}
    return InferlineConfig.model_validate(
        {
            "routing": fast,
            "models": [
                {
                    "name": "base",
                    "backends": [{"name": "base-0", "kind": "vllm", "url": base_url, "upstream_model": "smollm2"}],
                    "canary": {"model": "cand", **canary},
                },
                {
                    "name": "cand",
                    "backends": [{"name": "cand-0", "kind": "vllm", "url": cand_url, "upstream_model": "smollm2"}],
                },
            ],
        }
    )


def _body(stream: bool = False) -> dict[str, Any]:
    return {"model": "base", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": stream}


async def test_gateway_splits_labels_and_rolls_back_a_failing_candidate_without_losing_a_request() -> None:
    async with SimFleet("instant", count=2) as fleet:
        # judged on errors only: the instant simulator's TTFT and speed are noise at the millisecond scale
        rollback = {"min_requests": 20, "max_ttft_ratio": 100, "min_tokens_per_s_ratio": 0.001}
        config = _config(fleet.urls[0], fleet.urls[1], weight=0.3, rollback=rollback)
        gateway, app = build_app(config)
        await gateway.startup()
        try:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client:
                top = ScrapeHistory(rate_window_s=1e9)  # what `inferline top` sees, over the whole test
                top.add(parse_scrape((await client.get("/metrics")).text, at=0.0))
                seen: Counter[str] = Counter()
                for i in range(100):
                    r = await client.post(
                        "/v1/chat/completions", json=_body(stream=i % 2 == 0), headers={"x-inferline-session": f"u{i}"}
                    )
                    assert r.status_code == 200
                    assert r.headers["x-inferline-variant"] in (BASELINE, CANDIDATE)
                    expected = "cand" if r.headers["x-inferline-variant"] == CANDIDATE else "base"
                    assert r.headers["x-inferline-model"] == expected
                    seen[expected] += 1
                assert 15 <= seen["cand"] <= 45, seen  # 30% of 100 callers, +-3 standard deviations
                again = await client.post("/v1/chat/completions", json=_body(), headers={"x-inferline-session": "u7"})
                first = await client.post("/v1/chat/completions", json=_body(), headers={"x-inferline-session": "u7"})
                assert again.headers["x-inferline-model"] == first.headers["x-inferline-model"], "sticky"
                top.add(parse_scrape((await client.get("/metrics")).text, at=1.0))
                view = next(m for m in top.frame().models if m.model == "base").canary
                assert view is not None and view.candidate == "cand" and view.weight == 0.3 and not view.rolled_back
                assert view.served_share == (seen["cand"] + (first.headers["x-inferline-model"] == "cand") * 2) / 102

                fleet[1].respond_with(500, health=False)  # the candidate breaks; /health still answers
                for i in range(200):
                    r = await client.post(
                        "/v1/chat/completions", json=_body(), headers={"x-inferline-session": f"v{i}"}
                    )
                    assert r.status_code == 200, r.text  # a candidate failure is retried on the baseline
                    if (await client.get("/canaries")).json()["canaries"][0]["state"] == "rolled_back":
                        break
                snap = (await client.get("/canaries")).json()["canaries"][0]
                assert snap["state"] == "rolled_back" and snap["weight"] == 0, snap
                assert "error ratio" in snap["rolled_back_reason"]
                assert (await client.get("/backends")).json()["canaries"][0]["state"] == "rolled_back"
                for i in range(30):
                    r = await client.post(
                        "/v1/chat/completions", json=_body(), headers={"x-inferline-session": f"w{i}"}
                    )
                    assert r.headers["x-inferline-model"] == "base"
                metrics = (await client.get("/metrics")).text
                top.add(parse_scrape(metrics, at=2.0))
                console = Console(width=160, record=True)
                console.print(render(top.frame(), "http://gw"))
                screen = console.export_text()
                assert "canary cand" in screen and "ROLLED BACK" in screen, screen
                assert 'inferline_canary_rolled_back{candidate="cand",model="base"} 1.0' in metrics
                assert 'inferline_canary_attempts_total{model="base",result="error",variant="candidate"}' in metrics
        finally:
            await gateway.shutdown()
