"""Routing across several engines: failover when one dies, error events mid-stream, fallback models."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import orjson
import pytest

from support import Proc, free_port, start_engine, start_gateway, wait_until

PROMPT = [{"role": "user", "content": "Write a long poem about rivers."}]


@pytest.fixture(scope="module")
def two_engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, Proc, Proc]]:
    tmp = tmp_path_factory.mktemp("failover")
    a = start_engine(tmp, "engine-a", parallel=2)
    b = start_engine(tmp, "engine-b", parallel=2)
    gw = start_gateway(
        tmp,
        {
            "routing": {
                "load_interval_s": 0.1,
                "health_interval_s": 0.3,
                "eject_after_failures": 1,
                "eject_cooldown_s": 30,
            },
            "models": [
                {
                    "name": "smollm2",
                    "backends": [
                        {"name": "engine-a", "kind": "llamacpp", "url": a.url},
                        {"name": "engine-b", "kind": "llamacpp", "url": b.url},
                    ],
                }
            ],
        },
    )
    yield a, b, gw
    for p in (gw, a, b):
        p.stop()


def test_requests_spread_then_survive_an_engine_stopped_mid_run(two_engines: tuple[Proc, Proc, Proc]) -> None:
    a, b, gw = two_engines
    client = openai.OpenAI(base_url=gw.base_url, api_key="unused", max_retries=0, timeout=60)
    served = []
    for _ in range(6):
        r = client.chat.completions.with_raw_response.create(model="smollm2", messages=PROMPT, max_tokens=3)
        served.append(r.headers["x-inferline-backend"])
    assert set(served) == {"engine-a", "engine-b"}, f"least-loaded picks both idle engines: {served}"

    # A stream in flight on the engine that dies ends with an error event, never a clean [DONE].
    victim_url = {"engine-a": a, "engine-b": b}
    with (
        httpx.Client(timeout=60) as http,
        http.stream(
            "POST",
            gw.base_url + "/chat/completions",
            json={"model": "smollm2", "messages": PROMPT, "max_tokens": 500, "stream": True},
        ) as r,
    ):
        victim_name = r.headers["x-inferline-backend"]
        victim = victim_url[victim_name]
        events = []
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(line)
                if len(events) == 3:
                    victim.stop(signal.SIGKILL)
        last = events[-1]
    assert last != "data: [DONE]"
    err = orjson.loads(last.removeprefix("data:"))["error"]
    assert err["code"] == "stream_interrupted" and victim_name in err["message"]

    # Every later request is answered by the survivor: retried before its first token if need be.
    survivor = "engine-b" if victim_name == "engine-a" else "engine-a"
    for _ in range(4):
        r = client.chat.completions.with_raw_response.create(model="smollm2", messages=PROMPT, max_tokens=3)
        assert r.headers["x-inferline-backend"] == survivor
        assert r.parse().usage is not None
    backends = {x["name"]: x for x in httpx.get(gw.url + "/backends").json()["backends"]}
    wait_until(
        lambda: (
            not httpx.get(gw.url + "/backends").json()["backends"][0 if victim_name == "engine-a" else 1]["healthy"]
        ),
        timeout=30,  # the next failed health check marks it; a busy machine only delays it
    )
    assert backends[survivor]["ready"]


def test_fallback_model_serves_when_primary_is_down(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens here
    config = {
        "server": {"engine_wait_s": 0},  # start although big-0 never answers: the fallback is under test
        "routing": {"health_interval_s": 0.3},
        "models": [
            {
                "name": "big",
                "backends": [{"name": "big-0", "kind": "vllm", "url": dead}],
                "fallback": ["smollm2"],
            },
            {
                "name": "smollm2",
                "backends": [
                    {
                        "name": "embedded-0",
                        "kind": "embedded",
                        "embedded": {"parallel": 2, "ctx_per_slot": 1024},
                    }
                ],
            },
        ],
    }
    gw = start_gateway(tmp_path, config, name="fallback", ready_path="/health")
    try:
        ready = httpx.get(gw.url + "/ready", timeout=5)
        assert ready.status_code == 503, "one model without a ready backend: not ready"
        assert ready.json()["models"] == {"big": False, "smollm2": True}
        r = httpx.post(
            gw.base_url + "/chat/completions",
            json={"model": "big", "messages": PROMPT, "max_tokens": 3},
            timeout=60,
        )
        assert r.status_code == 200, r.text
        assert r.headers["x-inferline-model"] == "smollm2"
        assert r.headers["x-inferline-backend"] == "embedded-0"
    finally:
        gw.stop()


def test_no_backend_at_all_is_503_with_retry_after(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "server": {"engine_wait_s": 0},  # start without an engine: the 503 is under test
        "models": [{"name": "m", "backends": [{"name": "m-0", "kind": "vllm", "url": dead}]}],
    }
    gw = start_gateway(tmp_path, config, name="dead", ready_path="/health")
    try:
        r = httpx.post(gw.base_url + "/chat/completions", json={"model": "m", "messages": PROMPT}, timeout=10)
        assert r.status_code == 503
        assert int(r.headers["retry-after"]) >= 1
        assert r.json()["error"]["code"] == "no_backend"
        client = openai.OpenAI(base_url=gw.base_url, api_key="x", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=PROMPT)  # type: ignore[arg-type]
    finally:
        gw.stop()
