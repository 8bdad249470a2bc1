"""The typed values the stages hand each other, in the order a request meets them.

    ParsedRequest  parse -> every later stage      (frozen)  what the client asked for, validated
    Principal      authenticate -> admit, queue    (frozen)  who asks: API key, limits, priority class
    Reservation    admit -> account                (frozen)  the key's tokens reserved (limits/base.py)
    Target         queue/route -> upstream, relay  (frozen)  one engine slot granted to this request
    Delivery       relay -> account, supervisor    (mutable, written by relay only) what reached the client
    Ending         pipeline -> account             (frozen)  how the request ended, for metrics and the log

No stage writes another stage's value: a request cannot reach `queue` without a Principal, nor `relay`
without a Target.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from inferline.backends.pool import BackendState
from inferline.errors import GatewayError, Outcome
from inferline.limits import ApiKeyConfig, Reservation
from inferline.observe.fragmentation import InFlightSequence

__all__ = ["Delivery", "Ending", "EngineSequence", "ParsedRequest", "Principal", "Reservation", "Target"]


@dataclass(slots=True, frozen=True)
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


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is asking: the API key (never the key itself) and the queue class its request runs in."""

    key: ApiKeyConfig
    priority_class: str
    priority_offset_s: float  # seconds added to the queue key (the class's place in line)

    @property
    def name(self) -> str:
        return self.key.name


@dataclass(slots=True, frozen=True)
class Target:
    """One engine slot the queue granted (or a retry took): released exactly once, by the pipeline."""

    state: BackendState
    model: str  # the model this backend serves (differs from the request's after a fallback)
    prompt_tokens: int  # the request's prompt estimate
    output_tokens: int  # max_tokens, or the model's expected output
    priority: int = 0  # sent to engines under vLLM's priority scheduling (lower runs first)

    @property
    def kv_tokens(self) -> int:
        """What the request may hold in the engine's KV cache at most: prompt + output."""
        return self.prompt_tokens + self.output_tokens


@dataclass(slots=True)
class Delivery:
    """What reached the client. Written by the relay path (upstream, relay); the supervisor reads
    `sending_since_ns`, account reads the rest."""

    arrival_ns: int  # monotonic_ns when the request arrived: TTFT and E2E are measured from here
    backend: str = ""  # the engine that answered (or "cache")
    model: str = ""  # the model that answered (after fallback)
    attempts: int = 0  # engines tried
    status: int = 0
    started: bool = False  # response headers sent: from here on, errors travel in-band
    complete: bool = False  # the last byte was sent
    first_token_ns: int = 0
    last_token_ns: int = 0
    content_chunks: int = 0
    prompt_tokens: int = 0  # engine usage, when it reported it
    completion_tokens: int = 0
    finish_reason: str | None = None
    body: bytes | None = None  # a complete non-stream answer, for the response cache
    # monotonic_ns when a send to the client began and has not returned yet (stall detection); 0 = idle.
    sending_since_ns: int = 0

    def tokens_used(self, parsed: ParsedRequest | None) -> int | None:
        """What to charge the key: 0 if no engine saw the request, else usage (or our best count)."""
        if not self.backend or self.backend == "cache":
            return 0
        if self.prompt_tokens or self.completion_tokens:
            return self.prompt_tokens + self.completion_tokens
        if parsed is None:
            return 0
        return parsed.prompt_tokens_estimate + self.content_chunks


@dataclass(slots=True, frozen=True)
class Ending:
    """How one request ended: account's only input (metrics, reconcile, the log line)."""

    request_id: str
    started_ns: int
    ended_ns: int
    outcome: Outcome
    status: int
    parsed: ParsedRequest | None
    principal: Principal | None
    reservation: Reservation | None
    delivery: Delivery
    error: GatewayError | None
    variant: str | None = None  # the canary variant that served it ("baseline" / "candidate"), if any


@dataclass(slots=True, eq=False)
class EngineSequence:
    """What one attempt puts in an engine's KV cache, as the pool's fragmentation estimate reads it
    (backends/pool.py `InFlight`): the prompt, the tokens relayed so far, and the shared prefix — the
    conversation before its last message, which an engine with prefix caching stores once per group."""

    parsed: ParsedRequest
    delivery: Delivery
    prompt_tokens: int
    _prefix: tuple[bytes, int] | None = field(default=None, init=False)

    def sequence(self, prefix_caching: bool) -> InFlightSequence:
        key, shared = self._shared_prefix() if prefix_caching else (None, 0)
        return InFlightSequence(
            tokens=self.prompt_tokens + self.delivery.content_chunks,
            prefix_key=key,
            prefix_tokens=shared,
            started=self.delivery.content_chunks > 0,
        )

    def _shared_prefix(self) -> tuple[bytes | None, int]:
        if self._prefix is None:  # computed once, at the first load poll that sees this request
            messages = self.parsed.body.get("messages")
            if not isinstance(messages, list) or len(messages) < 2:
                self._prefix = (b"", 0)
            else:
                head = messages[:-1]
                text = "\x01".join(f"{m.get('role')}\x00{m.get('content')}" for m in head if isinstance(m, dict))
                # ~4 bytes per token and ~8 tokens of chat template per message, as parse estimates prompts
                tokens = len(text) // 4 + 8 * len(head)
                self._prefix = (hashlib.blake2b(text.encode(), digest_size=16).digest(), tokens)
        key, tokens = self._prefix
        return (key or None), tokens
