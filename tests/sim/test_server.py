"""The simulator over HTTP: queueing and KV seen through /metrics, disconnects, priority, errors, faults."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest

from inferline.sim import SimFleet

from .conftest import metric, scrape, wait_for

CHAT = "/v1/chat/completions"


def chat_body(max_tokens: int = 8, stream: bool = False, **extra: object) -> dict[str, object]:
    body: dict[str, object] = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Say something."}],
        "max_tokens": max_tokens,
        "stream": stream,
    }
    body.update(extra)
    return body


async def post(http: aiohttp.ClientSession, url: str, body: dict[str, object]) -> tuple[int, dict[str, object]]:
    async with http.post(url + CHAT, json=body) as resp:
        return resp.status, await resp.json()


async def test_third_request_waits_then_starts_when_a_slot_frees(http: aiohttp.ClientSession) -> None:
    async with SimFleet("cpu-smollm2", max_num_seqs=2, time_scale=0.1) as fleet:
        url, engine = fleet.urls[0], fleet[0].engine
        short = asyncio.create_task(post(http, url, chat_body(max_tokens=20)))
        await wait_for(lambda: engine.num_running == 1)
        long_ = asyncio.create_task(post(http, url, chat_body(max_tokens=80)))
        await wait_for(lambda: engine.num_running == 2)
        third = asyncio.create_task(post(http, url, chat_body(max_tokens=5)))
        await wait_for(lambda: engine.num_waiting == 1)
        fleet[0].stall()  # hold the state still while we scrape, however slow this machine is today
        text = await scrape(http, url)
        assert metric(text, "vllm:num_requests_running", model_name="smollm2") == 2
        assert metric(text, "vllm:num_requests_waiting", model_name="smollm2") == 1
        fleet[0].stall(False)
        await short
        await wait_for(lambda: engine.num_waiting == 0)  # admitted by the step after the slot freed
        assert not long_.done()
        status, body = await third
        assert status == 200 and body["usage"]["completion_tokens"] == 5  # type: ignore[index]
        await long_
        text = await scrape(http, url)
        assert metric(text, "vllm:request_success_total", finished_reason="length") == 3
        assert metric(text, "vllm:request_queue_time_seconds_count") == 3
        assert metric(text, "vllm:generation_tokens_total") == 105


async def test_kv_exhaustion_preempts_and_every_request_completes(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant", max_num_seqs=4, kv_blocks=8) as fleet:
        url = fleet.urls[0]
        results = await asyncio.gather(*(post(http, url, chat_body(max_tokens=90)) for _ in range(4)))
        assert all(s == 200 and b["usage"]["completion_tokens"] == 90 for s, b in results)  # type: ignore[index]
        text = await scrape(http, url)
        assert metric(text, "vllm:num_preemptions_total") > 0
        assert metric(text, "vllm:kv_cache_usage_perc") == 0.0
        assert metric(text, "vllm:request_success_total", finished_reason="length") == 4


async def test_kv_usage_gauge_tracks_blocks(http: aiohttp.ClientSession) -> None:
    async with SimFleet("cpu-smollm2", kv_blocks=100, time_scale=1.0) as fleet:
        url = fleet.urls[0]
        prompt = "x" * 4 * 300  # 300 prompt tokens + 3 + 4 chat overhead = 307 tokens
        body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": 50, "stream": True}
        async with http.post(url + CHAT, json=body) as resp:
            await resp.content.readuntil(b"\n\n")  # the first token: prompt computed, 1 sampled token pending
            text = await scrape(http, url)
            assert metric(text, "vllm:kv_cache_usage_perc") == pytest.approx(-(-308 // 16) / 100)


async def test_disconnect_frees_the_slot_at_once(http: aiohttp.ClientSession) -> None:
    async with SimFleet("cpu-smollm2", max_num_seqs=1, time_scale=1.0) as fleet:
        url, engine = fleet.urls[0], fleet[0].engine
        resp = await http.post(url + CHAT, json=chat_body(max_tokens=1000, stream=True))
        await resp.content.readuntil(b"\n\n")
        waiting = asyncio.create_task(post(http, url, chat_body(max_tokens=3)))
        await wait_for(lambda: engine.num_waiting == 1)
        assert metric(await scrape(http, url), "vllm:num_requests_running") == 1
        resp.close()  # the client goes away mid-stream
        # The freed slot admits the next one long before the 1000-token stream (~9 s) could have ended by
        # itself; the abort counted below shows it was the disconnect.
        await wait_for(lambda: engine.num_waiting == 0, timeout_s=5.0)
        status, _ = await asyncio.wait_for(waiting, 30.0)
        assert status == 200
        text = await scrape(http, url)
        assert metric(text, "vllm:num_requests_running") == 0
        assert metric(text, "vllm:request_success_total", finished_reason="abort") == 1
        assert engine.scheduler.free_blocks == engine.profile.kv_blocks


async def test_priority_policy_runs_lower_values_first(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant", max_num_seqs=1, policy="priority") as fleet:
        url, server = fleet.urls[0], fleet[0]
        server.stall()
        order: list[int] = []

        async def one(priority: int) -> None:
            await post(http, url, chat_body(max_tokens=3, priority=priority))
            order.append(priority)

        tasks = []
        for n, priority in enumerate((5, 0, 3, -2)):
            tasks.append(asyncio.create_task(one(priority)))
            await wait_for(lambda n=n: server.engine.num_waiting == n + 1)  # type: ignore[misc]
        server.stall(False)
        await asyncio.gather(*tasks)
        assert order == [-2, 0, 3, 5]


async def test_fcfs_rejects_nonzero_priority_with_openai_error(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant") as fleet:
        status, body = await post(http, fleet.urls[0], chat_body(priority=1))
        assert status == 400
        assert body == {
            "error": {
                "message": "Got priority 1 but Priority scheduling is not enabled.",
                "type": "BadRequestError",
                "param": "priority",
                "code": 400,
            }
        }
        status, _ = await post(http, fleet.urls[0], chat_body(priority=0))
        assert status == 200


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}, 400, "max_tokens"),
        ({"messages": [{"role": "user", "content": "hi"}], "model": "gpt-9"}, 404, "model"),
        ({"messages": [{"role": "user", "content": "hi"}], "n": 2}, 400, "n"),
        ({"messages": [{"role": "user", "content": "hi"}], "stream_options": {}}, 400, "stream_options"),
    ],
)
async def test_bad_input_gets_an_openai_error_body(
    http: aiohttp.ClientSession, body: dict[str, object], status: int, param: str
) -> None:
    async with SimFleet("cpu-smollm2") as fleet:
        got, answer = await post(http, fleet.urls[0], body)
        assert got == status
        err = answer["error"]
        assert isinstance(err, dict) and set(err) == {"message", "type", "param", "code"}
        assert err["param"] == param and err["code"] == status and err["message"]
        async with http.post(fleet.urls[0] + CHAT, data=b"{not json") as resp:
            assert resp.status == 400 and "error" in await resp.json()


async def test_models_health_tokenize_and_unknown_routes(http: aiohttp.ClientSession) -> None:
    async with SimFleet("cpu-smollm2", model="tiny-llm") as fleet:
        url = fleet.urls[0]
        async with http.get(url + "/v1/models") as resp:
            card = (await resp.json())["data"][0]
            assert card["id"] == "tiny-llm" and card["max_model_len"] == 2048
        async with http.get(url + "/health") as resp:
            assert resp.status == 200
        async with http.post(url + "/tokenize", json={"prompt": "abcdefgh"}) as resp:
            assert (await resp.json())["count"] == 2
        async with http.get(url + "/nope") as resp:
            assert resp.status == 404
        async with http.get(url + CHAT) as resp:
            assert resp.status == 405


async def test_output_length_distribution_stops_early_with_stop() -> None:
    async with SimFleet("instant", output_len="uniform", seed=3) as fleet:
        engine = fleet[0].engine
        reqs = [engine.submit(f"r{i}", 10, 50) for i in range(40)]
        await wait_for(lambda: all(r.finish_reason for r in reqs))
        assert {r.finish_reason for r in reqs} == {"stop", "length"} or all(r.num_output < 50 for r in reqs)
        assert all(1 <= r.num_output <= 50 for r in reqs)
        assert all((r.finish_reason == "length") == (r.num_output == 50) for r in reqs)
        assert len({r.num_output for r in reqs}) > 10


async def test_same_seed_same_arrivals_same_tokens_and_order(http: aiohttp.ClientSession) -> None:
    async def run(seed: int) -> tuple[list[int], list[str]]:
        async with SimFleet("instant", max_num_seqs=3, kv_blocks=6, output_len="exp:30", seed=seed) as fleet:
            server = fleet[0]
            server.engine.scheduler.trace = []
            server.stall()
            tasks = []
            for i in range(8):
                body = chat_body(max_tokens=40, messages=[{"role": "user", "content": "w " * (10 * i)}])
                tasks.append(asyncio.create_task(post(http, fleet.urls[0], body)))
                await wait_for(lambda i=i: server.engine.num_waiting == i + 1)  # type: ignore[misc]
            server.stall(False)
            results = await asyncio.gather(*tasks)
            counts = [b["usage"]["completion_tokens"] for _, b in results]  # type: ignore[index]
            return counts, server.engine.scheduler.trace

    first, again, other = await run(11), await run(11), await run(12)
    assert first == again
    assert first[0] != other[0]
    assert any(e.startswith("preempt") for e in first[1])  # the order compared includes preemptions


async def test_fault_stop_start_refuses_then_serves(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant", count=2) as fleet:
        url = fleet.urls[1]
        await fleet[1].stop()
        with pytest.raises(aiohttp.ClientConnectorError):
            await post(http, url, chat_body())
        assert (await post(http, fleet.urls[0], chat_body()))[0] == 200  # the other engine is unaffected
        await fleet[1].start()
        assert fleet.urls[1] == url
        assert (await post(http, url, chat_body()))[0] == 200


async def test_fault_stop_cuts_open_streams(http: aiohttp.ClientSession) -> None:
    async with SimFleet("cpu-smollm2", time_scale=1.0) as fleet:
        async with http.post(fleet.urls[0] + CHAT, json=chat_body(500, stream=True)) as resp:
            await resp.content.readuntil(b"\n\n")
            await fleet[0].stop()
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        assert fleet[0].engine.num_running == 0


async def test_fault_fail_after_n_tokens_cuts_the_stream(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant") as fleet:
        fleet[0].fail_after(5)
        contents: list[str] = []
        async with http.post(fleet.urls[0] + CHAT, json=chat_body(50, stream=True)) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                async for line in resp.content:
                    if line.startswith(b"data: {"):
                        delta = orjson.loads(line[6:])["choices"][0]["delta"]
                        if delta.get("content"):
                            contents.append(delta["content"])
        assert len(contents) == 5
        with pytest.raises(aiohttp.ServerDisconnectedError):  # non-stream: the connection closes, no body
            await post(http, fleet.urls[0], chat_body(50))
        fleet[0].clear_faults()
        assert (await post(http, fleet.urls[0], chat_body(50)))[0] == 200
        text = await scrape(http, fleet.urls[0])
        assert metric(text, "vllm:request_success_total", finished_reason="abort") == 2
        assert metric(text, "vllm:num_requests_running") == 0


async def test_fault_stall_keeps_streams_open_and_silent(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant") as fleet:
        fleet[0].stall()
        async with http.post(fleet.urls[0] + CHAT, json=chat_body(5, stream=True)) as resp:
            assert resp.status == 200  # headers come at once, as from vLLM
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(resp.content.readuntil(b"\n\n"), 0.2)
            fleet[0].stall(False)
            assert (await resp.read()).rstrip().endswith(b"data: [DONE]")


async def test_fault_respond_with_status(http: aiohttp.ClientSession) -> None:
    async with SimFleet("instant") as fleet:
        url = fleet.urls[0]
        fleet[0].respond_with(503)
        status, body = await post(http, url, chat_body())
        assert status == 503 and body["error"]["code"] == 503  # type: ignore[index]
        async with http.get(url + "/health") as resp:
            assert resp.status == 503
        fleet[0].respond_with(500, health=False)
        assert (await post(http, url, chat_body()))[0] == 500
        async with http.get(url + "/health") as resp:
            assert resp.status == 200
        fleet[0].clear_faults()
        assert (await post(http, url, chat_body()))[0] == 200


async def test_keep_alive_pipelining_and_chunked_request_bodies() -> None:
    async with SimFleet("instant") as fleet:
        reader, writer = await asyncio.open_connection("127.0.0.1", fleet[0].port)
        body = orjson.dumps({"prompt": "hello", "max_tokens": 2})
        chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(body), body)
        writer.write(
            b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ncontent-length: %d\r\n\r\n%b" % (len(body), body)
            + b"POST /v1/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n" + chunked
            + b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
        )  # fmt: skip
        data = await asyncio.wait_for(reader.read(), 2.0)
        writer.close()
        await writer.wait_closed()
        assert data.count(b"HTTP/1.1 200 OK") == 3
        assert data.count(b'"completion_tokens":2') == 2


async def test_dead_engine_fails_health_and_bugs_answer_500(
    http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SimFleet("instant") as fleet:
        url = fleet.urls[0]

        def boom(*args: object, **kwargs: object) -> None:
            raise RuntimeError("bug")

        monkeypatch.setattr("inferline.sim.server.parse_completion", boom)
        status, body = await post(http, url, chat_body())
        assert status == 500 and body["error"]["code"] == 500  # type: ignore[index]
        await fleet[0].engine.close()  # the step loop is gone, as when vLLM's engine core dies
        async with http.get(url + "/health") as resp:
            assert resp.status == 503


@pytest.mark.parametrize("how", ["error", "garbage"])
async def test_fault_in_band_error_or_garbage_after_n_tokens(http: aiohttp.ClientSession, how: str) -> None:
    async with SimFleet("instant") as fleet:
        fleet[0].fail_after(3, how)
        async with http.post(fleet.urls[0] + CHAT, json=chat_body(50, stream=True)) as resp:
            events = [e for e in (await resp.read()).split(b"\n\n") if e]  # the HTTP stream ends cleanly
        contents = [e for e in events if b'"content":" ' in e]
        assert len(contents) == 3
        if how == "error":
            assert orjson.loads(events[-2][6:])["error"]["code"] == 500 and events[-1] == b"data: [DONE]"
        else:
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(events[-1][6:])
        assert fleet[0].engine.num_running == 0
        with pytest.raises(ValueError, match="how"):
            fleet[0].fail_after(1, "explode")
