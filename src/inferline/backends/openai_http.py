"""OpenAI-compatible HTTP engines (vLLM, llama.cpp server, SGLang, remote providers) over inferline's engine client.

The client's exceptions are already the gateway's (BackendConnectError, TimeoutError); this module
adds what is OpenAI-specific: SSE events batched per network read, the engines' load gauges, context
discovery and llama.cpp's tokenizer endpoints.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
from mypy_extensions import mypyc_attr

from inferline.backends.base import BackendConnectError, EngineLoad
from inferline.backends.prom_text import info_labels, sum_by_name
from inferline.config import BackendConfig, BackendKind, RoutingConfig
from inferline.net.client import HttpPool, Response

# Engine gauges by kind: (kv-cache use 0-1, running, waiting). vLLM renamed its KV gauge in 0.9.2.
_VLLM_KV = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")
_VLLM = frozenset({*_VLLM_KV, "vllm:num_requests_running", "vllm:num_requests_waiting"})
_SGLANG = frozenset({"sglang:token_usage", "sglang:num_running_reqs", "sglang:num_queue_reqs"})
_LLAMACPP = frozenset({"llamacpp:requests_processing", "llamacpp:requests_deferred"})

# Idle connections are dropped before the engine's own keep-alive timeout (uvicorn and llama.cpp's
# httplib: 5 s), so a request is rarely written into a socket the engine just closed (and when it
# is, the client resends it once on a fresh connection).
ENGINE_KEEPALIVE_S = 4.0

# Fields no engine of these kinds accepts from us as-is; vLLM extras pass through to vLLM only.
_NOT_FOR_REMOTE = frozenset({"priority"})


def split_sse(tail: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """(payloads of the complete `data:` lines in tail + data, the incomplete last line to keep)."""
    *lines, rest = (tail + data).split(b"\n")
    return [line[5:].strip() for line in lines if line[:5] == b"data:"], rest


class HttpUpstreamResponse:
    """An engine's answer; reading is pull-based, so a slow client slows the engine read."""

    __slots__ = ("_resp", "status")

    def __init__(self, resp: Response) -> None:
        self._resp = resp
        self.status = resp.status

    def event_batches(self) -> AsyncIterator[list[bytes]]:
        """The `data:` payloads of the SSE events that each network read completed (comments, `event:`
        and blank lines skipped; `\n` or `\r\n` framing). Batched per read so a fast engine's burst of
        tokens costs one await and one send, not one per token; the next read waits for the consumer."""
        return _EventBatches(self._resp)

    async def read(self, limit_bytes: int) -> bytes:
        return await self._resp.read(limit_bytes)

    async def finish(self) -> None:
        """After the last event: read the end of the body so the connection goes back to the pool.

        Reusing connections saves a TCP handshake and the engine's accept per request (measured: most of
        the gateway's per-request CPU). Bounded: a body that does not end at once is simply closed."""
        await self._resp.finish(1.0)

    def close(self) -> None:
        # An incomplete response closes its connection: that is what makes the engine abort the request.
        self._resp.close()


class _EventBatches:
    """event_batches() as a plain async iterator: an async generator costs a registration with the
    loop (a WeakSet) and its own frame machinery per request."""

    __slots__ = ("_chunks", "_done", "_tail")

    def __init__(self, resp: Response) -> None:
        self._chunks = resp.chunks
        self._tail = b""
        self._done = False

    def __aiter__(self) -> _EventBatches:
        return self

    async def __anext__(self) -> list[bytes]:
        while not self._done:
            data = await self._chunks()
            if not data:
                self._done = True
                tail = self._tail
                if tail[:5] == b"data:":
                    return [tail[5:].strip()]
                break
            payloads, self._tail = split_sse(self._tail, data)
            if payloads:
                return payloads
        raise StopAsyncIteration


# The embedded engine (llamacpp.py, not compiled) subclasses it.
@mypyc_attr(allow_interpreted_subclasses=True)
class OpenAIHTTPBackend:
    """Any OpenAI-compatible engine reachable over HTTP."""

    unsupported_fields: frozenset[str] = frozenset()

    def __init__(self, cfg: BackendConfig, model_name: str, routing: RoutingConfig) -> None:
        self.name = cfg.name
        self.kind = cfg.kind
        self.upstream_model = cfg.upstream_model or model_name
        self.max_num_seqs = cfg.max_num_seqs
        self.kv_admit_ratio = cfg.kv_admit_ratio
        self.context_tokens: int | None = None
        self.kv_capacity_tokens: int | None = None
        self.kv_block_size: int | None = None
        self.prefix_caching = self.kind is BackendKind.VLLM  # vLLM V1 caches prefixes unless told not to
        self.send_priority = cfg.scheduling_priority
        self._base = (cfg.url or "").rstrip("/")
        self._routing = routing
        self._api_key = cfg.resolved_api_key()
        self._pool: HttpPool | None = None
        self._headers: dict[str, str] = {}
        if self._api_key:
            self._headers["authorization"] = f"Bearer {self._api_key}"
        if self.kind is BackendKind.OPENAI:
            self.unsupported_fields = _NOT_FOR_REMOTE

    def set_base_url(self, url: str) -> None:
        self._base = url.rstrip("/")
        self._pool = None  # the next request connects to the new address (the old pool is unused)

    def _client(self) -> HttpPool:
        if self._pool is None:
            self._pool = HttpPool(
                self._base,
                connect_timeout_s=self._routing.connect_timeout_s,
                read_timeout_s=self._routing.first_token_timeout_s,
                keepalive_s=ENGINE_KEEPALIVE_S,
                headers=self._headers,
            )
        return self._pool

    async def start(self) -> None:
        self._client()

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def post(self, path: str, body: bytes) -> HttpUpstreamResponse:
        """POST to the engine; returns once the response head arrives. BackendConnectError / TimeoutError."""
        try:
            return HttpUpstreamResponse(await self._client().request("POST", path, body))
        except TimeoutError as exc:
            raise TimeoutError(f"no response within {self._routing.first_token_timeout_s:g}s ({exc})") from None

    async def _get(self, path: str, timeout_s: float) -> tuple[int, bytes]:
        return await self._call("GET", path, b"", timeout_s)

    async def _call(self, method: str, path: str, body: bytes, timeout_s: float) -> tuple[int, bytes]:
        """A small request with a total deadline; (0, b"") when it could not be answered."""
        resp: Response | None = None
        try:
            async with asyncio.timeout(timeout_s):
                resp = await self._client().request(method, path, body)
                return resp.status, await resp.read(32 * 1024 * 1024)
        except (TimeoutError, BackendConnectError, OSError):
            return 0, b""
        finally:
            if resp is not None:
                resp.close()

    async def health(self) -> bool:
        # Remote providers have no /health; listing models is their cheapest authenticated probe.
        path = "/v1/models" if self.kind is BackendKind.OPENAI else "/health"
        status, _ = await self._get(path, timeout_s=min(5.0, self._routing.health_interval_s * 2))
        if status == 200 and self.context_tokens is None and self.kind is not BackendKind.OPENAI:
            await self._discover_context()
        return status == 200

    async def _discover_context(self) -> None:
        status, body = await self._get("/v1/models", timeout_s=5.0)
        if status != 200:
            return
        try:
            cards = orjson.loads(body).get("data", [])
        except (orjson.JSONDecodeError, AttributeError):
            return
        for card in cards:
            if isinstance(card, dict) and isinstance(card.get("max_model_len"), int):
                self.context_tokens = card["max_model_len"]
                return

    @property
    def caps_output_to_context(self) -> bool:
        """llama.cpp hangs with its slot busy when generation fills the context (seen with xllamacpp
        2026.10): the gateway must make prompt + max_tokens fit, and set max_tokens when absent."""
        return self.kind in (BackendKind.LLAMACPP, BackendKind.EMBEDDED)

    async def count_prompt_tokens(self, body: dict[str, object]) -> int | None:
        """Exact prompt tokens from llama.cpp's own template and tokenizer; None where unsupported."""
        if not self.caps_output_to_context:
            return None
        if "messages" in body:
            status, raw = await self._post_json("/apply-template", {"messages": body["messages"]})
            if status != 200:
                return None
            prompt = orjson.loads(raw).get("prompt")
        else:
            prompt = body.get("prompt")
        if not isinstance(prompt, str):
            return None
        status, raw = await self._post_json("/tokenize", {"content": prompt, "parse_special": True})
        if status != 200:
            return None
        tokens = orjson.loads(raw).get("tokens")
        return len(tokens) if isinstance(tokens, list) else None

    async def _post_json(self, path: str, obj: object) -> tuple[int, bytes]:
        return await self._call("POST", path, orjson.dumps(obj), timeout_s=10.0)

    async def load(self) -> EngineLoad | None:
        if self.kind is BackendKind.OPENAI:
            return None  # a provider's load is not ours to see: always "unknown"
        if self.kind is BackendKind.LLAMACPP:
            return await self._llamacpp_load()
        wanted = _SGLANG if self.kind is BackendKind.SGLANG else _VLLM
        status, body = await self._get("/metrics", timeout_s=2.0)
        if status != 200:
            return None
        text = body.decode("utf-8", "replace")
        values = sum_by_name(text, wanted)
        if self.kind is BackendKind.VLLM and self.kv_capacity_tokens is None:
            labels = info_labels(text, "vllm:cache_config_info")
            self.kv_capacity_tokens = _vllm_kv_capacity(labels)
            self.kv_block_size = int(labels["block_size"]) if labels.get("block_size", "").isdigit() else None
            if "enable_prefix_caching" in labels:
                self.prefix_caching = labels["enable_prefix_caching"].lower() == "true"
        now = time.monotonic()
        if self.kind is BackendKind.SGLANG:
            if "sglang:num_running_reqs" not in values:
                return None
            return EngineLoad(
                running=int(values["sglang:num_running_reqs"]),
                waiting=int(values.get("sglang:num_queue_reqs", 0)),
                kv_cache_usage_ratio=values.get("sglang:token_usage"),
                observed_at=now,
            )
        if "vllm:num_requests_running" not in values:
            return None
        kv = next((values[k] for k in _VLLM_KV if k in values), None)
        return EngineLoad(
            running=int(values["vllm:num_requests_running"]),
            waiting=int(values.get("vllm:num_requests_waiting", 0)),
            kv_cache_usage_ratio=kv,
            observed_at=now,
        )

    async def _llamacpp_load(self) -> EngineLoad | None:
        """llama.cpp has no KV gauge: derive it from slot occupancy (/slots), waiting from /metrics."""
        status, body = await self._get("/slots", timeout_s=2.0)
        if status != 200:
            return None
        try:
            slots = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if not isinstance(slots, list) or not slots:
            return None
        running = 0
        used = 0
        total = 0
        for slot in slots:
            n_ctx = int(slot.get("n_ctx", 0))
            total += n_ctx
            if slot.get("is_processing"):
                running += 1
                decoded = sum(int(t.get("n_decoded", 0)) for t in slot.get("next_token", []) or [])
                used += min(n_ctx, int(slot.get("n_prompt_tokens", 0)) + decoded)
        self.max_num_seqs = min(self.max_num_seqs, len(slots))
        self.kv_capacity_tokens = total or None
        if self.context_tokens is None and slots:
            self.context_tokens = int(slots[0].get("n_ctx", 0)) or None
        waiting = 0
        m_status, m_body = await self._get("/metrics", timeout_s=2.0)
        if m_status == 200:
            waiting = int(
                sum_by_name(m_body.decode("utf-8", "replace"), _LLAMACPP).get("llamacpp:requests_deferred", 0)
            )
        return EngineLoad(
            running=running,
            waiting=waiting,
            kv_cache_usage_ratio=(used / total) if total else None,
            observed_at=time.monotonic(),
        )


def _vllm_kv_capacity(labels: dict[str, str]) -> int | None:
    """KV-cache tokens from vllm:cache_config_info (num_gpu_blocks x block_size, or kv_cache_size_tokens)."""
    try:
        if "kv_cache_size_tokens" in labels:
            return int(labels["kv_cache_size_tokens"]) or None
        return int(labels["num_gpu_blocks"]) * int(labels["block_size"]) or None
    except (KeyError, ValueError):
        return None
