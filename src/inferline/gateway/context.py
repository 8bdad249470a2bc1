"""RequestContext: one per request, carried through parse -> route -> relay -> account."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from inferline.errors import GatewayError, Outcome
from inferline.limits import Reservation


@dataclass(slots=True)
class ParsedRequest:
    """A validated request: the body as a dict (forwarded), and what the gateway acts on."""

    kind: str  # "chat" | "completions"
    path: str  # upstream path, e.g. /v1/chat/completions
    body: dict[str, Any]
    model: str
    stream: bool
    include_usage: bool  # the client asked for the usage chunk
    max_tokens: int | None
    prompt_tokens_estimate: int
    # Upper bound on prompt tokens (byte-level BPE: a token covers at least one byte), template included.
    prompt_tokens_upper: int


@dataclass(slots=True, eq=False)  # identity hash: contexts key the gateway's active-request map
class RequestContext:
    request_id: str
    started_ns: int = field(default_factory=time.monotonic_ns)
    parsed: ParsedRequest | None = None
    model: str = ""  # the model that served (after fallback)
    backend: str = ""
    attempts: int = 0
    priority: int = 0  # sent to engines under vLLM's priority scheduling (lower runs first)
    status: int = 0
    outcome: Outcome = Outcome.OK
    error: GatewayError | None = None
    first_token_ns: int = 0
    last_token_ns: int = 0
    content_chunks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str | None = None
    # Set before the request's task is cancelled, so the handler knows why (disconnect, stall, shutdown).
    cancel_reason: Outcome | None = None
    response_started: bool = False
    response_complete: bool = False
    principal: str = ""  # the API key's name (never the key)
    reservation: Reservation | None = None
    extra_headers: list[tuple[bytes, bytes]] = field(default_factory=list)  # x-ratelimit-* etc.
    response_body: bytes | None = None  # a complete non-stream answer, for the response cache
    watcher: asyncio.Task[None] | None = None
    in_flight_counted: bool = False
    # monotonic_ns when a send to the client began and has not returned yet (stall detection); 0 = idle.
    sending_since_ns: int = 0

    def tokens_used(self) -> int | None:
        """What to charge the key: 0 if no engine saw the request, else usage (or our best count)."""
        if not self.backend or self.backend == "cache":
            return 0
        if self.prompt_tokens or self.completion_tokens:
            return self.prompt_tokens + self.completion_tokens
        if self.parsed is None:
            return 0
        return self.parsed.prompt_tokens_estimate + self.content_chunks
