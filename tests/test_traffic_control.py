"""Keys, limits across two gateway replicas sharing a real Redis, per-key caps, and the cache fallback.

Engines are `inferline sim` (a simulator, named so): the point is the gateway's accounting, not the model.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Proc, free_port, sim_config, start_gateway, start_redis, start_sim, stop_redis, wait_until

KEY_A = "sk-team-a-0123456789"
KEY_B = "sk-team-b-0123456789"
RPM = 5
TPM = 600


def _sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    url, port = start_redis()
    yield url
    stop_redis(port)


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    proc = start_sim(tmp_path_factory.mktemp("sim"), "--profile", "instant")
    yield proc
    proc.stop()


def _config(sim_url: str, redis_url: str) -> dict[str, Any]:
    return {
        "routing": {"load_interval_s": 0.1},
        "limits": {
            "store": "redis",
            "redis_url": redis_url,
            "key_prefix": f"t{free_port()}",
            "keys": [
                {"name": "team-a", "sha256": _sha(KEY_A), "limits": {"requests_per_minute": RPM}},
                {
                    "name": "team-b",
                    "sha256": _sha(KEY_B),
                    "priority_class": "batch",
                    "limits": {"tokens_per_minute": TPM, "max_tokens_per_request": 100},
                },
            ],
        },
        "models": [{"name": "smollm2", "backends": [{"name": "sim-0", "kind": "vllm", "url": sim_url}]}],
    }


@pytest.fixture(scope="module")
def two_gateways(tmp_path_factory: pytest.TempPathFactory, sim: Proc, redis_url: str) -> Iterator[list[Proc]]:
    tmp = tmp_path_factory.mktemp("replicas")
    cfg = _config(sim.url, redis_url)
    gws = [start_gateway(tmp, cfg, name=f"gw{i}") for i in range(2)]
    yield gws
    for gw in gws:
        gw.stop()


def _chat(max_tokens: int = 20) -> dict[str, Any]:
    return {"model": "smollm2", "messages": [{"role": "user", "content": "hello there"}], "max_tokens": max_tokens}


async def _burst(gws: list[Proc], key: str, n: int, max_tokens: int = 20) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=30) as client:
        return list(
            await asyncio.gather(
                *(
                    client.post(
                        gws[i % 2].base_url + "/chat/completions",
                        json=_chat(max_tokens),
                        headers={"authorization": f"Bearer {key}"},
                    )
                    for i in range(n)
                )
            )
        )


async def test_requests_per_minute_hold_exactly_across_two_replicas(two_gateways: list[Proc]) -> None:
    responses = await _burst(two_gateways, KEY_A, 3 * RPM)
    ok = [r for r in responses if r.status_code == 200]
    limited = [r for r in responses if r.status_code == 429]
    assert len(ok) == RPM, "the limit holds across replicas, not RPM per replica"
    assert len(limited) == 2 * RPM
    for r in limited:
        err = r.json()["error"]
        assert err["code"] == "rate_limited" and "requests_per_minute" in err["message"]
        assert int(r.headers["retry-after"]) >= 1
        assert r.headers["x-ratelimit-limit-requests"] == str(RPM)
        assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert all("x-ratelimit-remaining-requests" in r.headers for r in ok)


async def test_tokens_per_minute_hold_across_replicas_and_unused_tokens_are_refunded(
    two_gateways: list[Proc],
) -> None:
    responses = await _burst(two_gateways, KEY_B, 20, max_tokens=60)
    ok = [r for r in responses if r.status_code == 200]
    assert all(r.status_code in (200, 429) for r in responses)
    used = sum(r.json()["usage"]["total_tokens"] for r in ok)
    one_request = max(r.json()["usage"]["total_tokens"] for r in ok)
    assert ok and used <= TPM + one_request, f"{used} tokens admitted for a {TPM}/min budget"
    denied = [r for r in responses if r.status_code == 429]
    assert denied and all(r.json()["error"]["code"] == "rate_limited" for r in denied)
    assert "tokens_per_minute" in denied[0].json()["error"]["message"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"authorization": "Bearer sk-wrong"}, {"authorization": "Basic Zm9vOmJhcg=="}, {"authorization": "Bearer"}],
    ids=["missing", "unknown", "not-bearer", "empty"],
)
def test_bad_keys_get_401(two_gateways: list[Proc], headers: dict[str, str]) -> None:
    r = httpx.post(two_gateways[0].base_url + "/chat/completions", json=_chat(), headers=headers, timeout=10)
    assert r.status_code == 401
    err = r.json()["error"]
    assert err["type"] == "authentication_error"
    assert "sk-wrong" not in r.text


def test_max_tokens_beyond_the_keys_cap_is_400(two_gateways: list[Proc]) -> None:
    r = httpx.post(
        two_gateways[0].base_url + "/chat/completions",
        json=_chat(max_tokens=5000),
        headers={"authorization": f"Bearer {KEY_B}"},
        timeout=10,
    )
    assert r.status_code == 400
    assert "max_tokens" in r.json()["error"]["message"]


def test_keys_never_reach_logs_or_metrics(two_gateways: list[Proc]) -> None:
    for gw in two_gateways:
        assert KEY_A not in gw.log() and KEY_B not in gw.log()
        assert KEY_A not in httpx.get(gw.url + "/metrics").text


def test_cached_answer_is_the_last_fallback(tmp_path: Path) -> None:
    sim = start_sim(tmp_path, "--profile", "instant")
    gw = start_gateway(
        tmp_path,
        sim_config(
            sim.url,
            routing={"health_interval_s": 0.2, "load_interval_s": 0.1},
            cache={"enabled": True, "fallback_only": True},
        ),
        name="cache",
    )
    try:
        deterministic = {**_chat(8), "temperature": 0}
        first = httpx.post(gw.base_url + "/chat/completions", json=deterministic, timeout=10)
        assert first.status_code == 200 and "x-inferline-cache" not in first.headers
        sim.stop()
        wait_until(lambda: httpx.get(gw.url + "/ready").status_code == 503, timeout=10)
        again = httpx.post(gw.base_url + "/chat/completions", json=deterministic, timeout=10)
        assert again.status_code == 200, again.text
        assert again.headers["x-inferline-cache"] == "fallback"
        assert again.json()["choices"] == first.json()["choices"]
        streamed = httpx.post(gw.base_url + "/chat/completions", json={**deterministic, "stream": True}, timeout=10)
        assert streamed.headers["x-inferline-cache"] == "fallback"
        assert streamed.text.rstrip().endswith("data: [DONE]")
        other = httpx.post(gw.base_url + "/chat/completions", json={**_chat(9), "temperature": 0}, timeout=10)
        assert other.status_code == 503
    finally:
        gw.stop()
        sim.stop()
