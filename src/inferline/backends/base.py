"""The Backend contract: what the gateway needs from any engine (stream, health, load, name)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from inferline.config import BackendKind


@dataclass(slots=True, frozen=True)
class EngineLoad:
    """One reading of an engine's load, as the engine reports it."""

    running: int
    waiting: int
    kv_cache_usage_ratio: float | None  # 0-1; None when the engine has no such gauge
    observed_at: float  # time.monotonic() of the reading


class UpstreamResponse(Protocol):
    """An engine's answer whose headers have arrived; the body is read lazily (backpressure)."""

    status: int

    def event_batches(self) -> AsyncIterator[list[bytes]]:
        """The payloads of the SSE `data:` lines each network read completed, read only when asked for."""
        ...

    async def read(self, limit_bytes: int) -> bytes: ...

    async def finish(self) -> None:
        """The stream is complete: read to the end of the body and give the connection back for reuse."""
        ...

    def close(self) -> None: ...


class Backend(Protocol):
    name: str
    kind: BackendKind
    upstream_model: str
    max_num_seqs: int
    kv_admit_ratio: float
    # Context length (prompt + output) when known: from config, the engine's card or its slots.
    context_tokens: int | None
    # KV-cache size in tokens when the engine tells (vLLM cache_config_info, llama.cpp slots x n_ctx).
    kv_capacity_tokens: int | None
    # KV-cache layout, for the fragmentation estimate: tokens per block of a paged engine (vLLM), and
    # whether it shares cached prompt prefixes between sequences (vLLM V1's default).
    kv_block_size: int | None
    prefix_caching: bool
    # Request fields this engine cannot act on (the gateway answers 400 for them).
    unsupported_fields: frozenset[str]
    # Send the computed `priority` (vLLM --scheduling-policy priority); turned off if the engine rejects it.
    send_priority: bool

    @property
    def caps_output_to_context(self) -> bool:
        """True when the gateway must make prompt + max_tokens fit the context (and set max_tokens)."""
        ...

    async def count_prompt_tokens(self, body: dict[str, Any]) -> int | None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def health(self) -> bool: ...

    async def load(self) -> EngineLoad | None: ...

    async def post(self, path: str, body: bytes) -> UpstreamResponse:
        """POST to the engine; returns once response headers arrive. Raises BackendConnectError / TimeoutError."""
        ...


class BackendConnectError(Exception):
    """The engine could not be reached (refused, reset, DNS): safe to retry elsewhere."""


class EngineStartError(Exception):
    """An engine this gateway owns cannot start; the message is one line that names the fix."""
