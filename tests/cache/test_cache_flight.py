"""Single-flight: identical concurrent cacheable requests cause one engine call.

Unit tests drive SingleFlight directly; the end-to-end test counts the calls a simulated engine (`inferline
sim`, a simulator) receives through a real gateway.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import orjson
import pytest

from inferline.cache import MemoryResponseCache
from inferline.cache.flight import Cached, Lead, SingleFlight
from support import sim_config, start_gateway, start_sim, wait_until

DEADLINE_S = 60.0


async def test_the_first_miss_leads_and_identical_requests_get_its_answer() -> None:
    flights = SingleFlight(MemoryResponseCache())
    lead = await flights.get_or_lead("k")
    assert isinstance(lead, Lead) and lead.leading and len(flights) == 1
    followers = [asyncio.create_task(flights.get_or_lead("k")) for _ in range(5)]
    await asyncio.sleep(0)  # they are all waiting now
    assert not any(f.done() for f in followers)
    lead.finish(b'{"answer": 1}')
    got = await asyncio.gather(*followers)
    assert got == [Cached(b'{"answer": 1}', "coalesced")] * 5
    assert len(flights) == 0 and flights.coalesced_total == 5 and flights.led_total == 1


async def test_a_stored_answer_is_a_hit_and_other_keys_lead_on_their_own() -> None:
    cache = MemoryResponseCache()
    await cache.put("a", b"{}")
    flights = SingleFlight(cache)
    assert await flights.get_or_lead("a") == Cached(b"{}", "hit")
    b, c = await flights.get_or_lead("b"), await flights.get_or_lead("c")
    assert isinstance(b, Lead) and isinstance(c, Lead) and b.leading and c.leading


async def test_a_failed_leader_releases_its_followers_to_call_the_engine_themselves() -> None:
    flights = SingleFlight(MemoryResponseCache())
    lead = await flights.get_or_lead("k")
    assert isinstance(lead, Lead)
    followers = [asyncio.create_task(flights.get_or_lead("k")) for _ in range(3)]
    await asyncio.sleep(0)
    lead.finish(None)  # an error, a cancel, or a stream: nothing to share
    lead.finish(b"late")  # idempotent: the first verdict stands
    got = await asyncio.gather(*followers)
    assert all(isinstance(g, Lead) and not g.leading for g in got)
    assert flights.gave_up_total == 3 and len(flights) == 0


async def test_followers_wait_at_most_wait_s() -> None:
    flights = SingleFlight(MemoryResponseCache(), wait_s=0.05)
    lead = await flights.get_or_lead("k")
    follower = await flights.get_or_lead("k")  # the leader never finishes within wait_s
    assert isinstance(follower, Lead) and not follower.leading
    assert isinstance(lead, Lead) and lead.leading


async def test_a_stream_request_follows_but_never_leads() -> None:
    flights = SingleFlight(MemoryResponseCache())
    solo = await flights.get_or_lead("k", can_lead=False)
    assert isinstance(solo, Lead) and not solo.leading and len(flights) == 0
    lead = await flights.get_or_lead("k")
    follower = asyncio.create_task(flights.get_or_lead("k", can_lead=False))
    await asyncio.sleep(0)
    assert isinstance(lead, Lead)
    lead.finish(b"{}")
    assert await follower == Cached(b"{}", "coalesced")


async def test_a_follower_cancelled_by_its_client_does_not_disturb_the_leader() -> None:
    flights = SingleFlight(MemoryResponseCache())
    lead = await flights.get_or_lead("k")
    gone = asyncio.create_task(flights.get_or_lead("k"))
    stays = asyncio.create_task(flights.get_or_lead("k"))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert isinstance(lead, Lead)
    lead.finish(b"{}")
    assert await stays == Cached(b"{}", "coalesced")


def _running(sim_url: str) -> float:
    for line in httpx.get(sim_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("vllm:num_requests_running"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("vllm:num_requests_running missing")


def _engine_requests(sim_url: str) -> float:
    """Requests the simulated engine finished (vllm:request_success_total, every finish reason)."""
    total = 0.0
    for line in httpx.get(sim_url + "/metrics", timeout=10).text.splitlines():
        if line.startswith("vllm:request_success_total"):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_identical_concurrent_requests_through_the_gateway_cause_one_engine_call(tmp_path: Path) -> None:
    # A slow simulated engine (time-scale 10: ~5 s for 50 tokens), so the followers arrive while it works.
    sim = start_sim(tmp_path, "--profile", "cpu-smollm2", "--time-scale", "10")
    gw = start_gateway(tmp_path, sim_config(sim.url, cache={"enabled": True}, routing={"load_interval_s": 0.1}))
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "same"}], "max_tokens": 50, "temperature": 0}
    try:
        async with httpx.AsyncClient(timeout=DEADLINE_S) as client:
            url = gw.base_url + "/chat/completions"
            leader = asyncio.create_task(client.post(url, json=body))
            await asyncio.to_thread(wait_until, lambda: _running(sim.url) >= 1, DEADLINE_S)  # the leader runs
            followers = [client.post(url, json=body) for _ in range(6)]
            streamers = [client.post(url, json={**body, "stream": True}) for _ in range(2)]
            answers = await asyncio.gather(leader, *followers, *streamers)
        assert [r.status_code for r in answers] == [200] * 9
        first = answers[0]
        assert "x-inferline-cache" not in first.headers and first.headers["x-inferline-backend"] == "sim-0"
        shared = [r.headers["x-inferline-cache"] for r in answers[1:]]
        assert set(shared) <= {"coalesced", "hit"} and "coalesced" in shared, shared
        assert all(r.content == first.content for r in answers[1:7])  # the very same bytes
        text = first.json()["choices"][0]["message"]["content"]
        for r in answers[7:]:  # streams get the leader's answer replayed as SSE
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line.removeprefix("data: ") for line in r.text.splitlines() if line.startswith("data: ")]
            assert events[-1] == "[DONE]"
            chunks = [orjson.loads(e) for e in events[:-1]]
            assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == text
        assert _engine_requests(sim.url) == 1, "one engine call for nine identical requests"
    finally:
        gw.stop()
        sim.stop()
