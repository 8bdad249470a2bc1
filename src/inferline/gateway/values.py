"""The typed values the stages hand each other, in the order a request meets them.

    ParsedRequest  parse -> every later stage      (frozen)  what the client asked for, validated
    Principal      authenticate -> admit, queue    (frozen)  who asks: API key, limits, priority class
    Reservation    admit -> account                (frozen)  the key's tokens reserved (limits/base.py)
    Target         queue/route -> upstream, relay  (frozen)  one engine slot granted to this request
    Delivery       relay -> account, supervisor    (mutable, written by relay only) what reached the client
    Ending         pipeline -> account             (frozen)  how the request ended, for metrics and the log

No stage writes another stage's value: a request cannot reach `queue` without a Principal, nor `relay`
without a Target.

Plain classes with their `__init__` written out, not dataclasses: these are built several times per
request, and compiled (hot_path.py) a written-out `__init__` is C while a dataclass's stays interpreted
(~0.03 vs ~0.65 us each). `Final` attributes are what `frozen` was: mypy refuses a write after `__init__`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Final

from inferline.backends.pool import BackendState
from inferline.errors import GatewayError, Outcome
from inferline.limits import ApiKeyConfig, Reservation
from inferline.observe.fragmentation import InFlightSequence

__all__ = ["Delivery", "Ending", "EngineSequence", "ParsedRequest", "Principal", "Reservation", "Target"]


class ParsedRequest:
    """A validated request: the body as a dict (forwarded), and what the gateway acts on."""

    __slots__ = (
        "body",
        "include_usage",
        "kind",
        "max_tokens",
        "model",
        "path",
        "prompt_tokens_estimate",
        "prompt_tokens_upper",
        "stream",
    )

    def __init__(
        self,
        kind: str,
        path: str,
        body: dict[str, Any],
        model: str,
        stream: bool,
        include_usage: bool,
        max_tokens: int | None,
        prompt_tokens_estimate: int,
        prompt_tokens_upper: int,
    ) -> None:
        self.kind: Final = kind  # "chat" | "completions"
        self.path: Final = path  # upstream path, e.g. /v1/chat/completions
        self.body: Final = body
        self.model: Final = model
        self.stream: Final = stream
        self.include_usage: Final = include_usage  # the client asked for the usage chunk
        self.max_tokens: Final = max_tokens
        self.prompt_tokens_estimate: Final = prompt_tokens_estimate
        # Upper bound on prompt tokens (byte-level BPE: a token covers at least one byte), template included.
        self.prompt_tokens_upper: Final = prompt_tokens_upper

    def __repr__(self) -> str:
        return f"ParsedRequest({self.kind}, model={self.model!r}, stream={self.stream}, max_tokens={self.max_tokens})"


class Principal:
    """Who is asking: the API key (never the key itself) and the queue class its request runs in."""

    __slots__ = ("key", "priority_class", "priority_offset_s")

    def __init__(self, key: ApiKeyConfig, priority_class: str, priority_offset_s: float) -> None:
        self.key: Final = key
        self.priority_class: Final = priority_class
        self.priority_offset_s: Final = priority_offset_s  # seconds added to the queue key (the class's place)

    @property
    def name(self) -> str:
        return self.key.name

    def __repr__(self) -> str:
        return f"Principal({self.key.name!r}, {self.priority_class!r})"


class Target:
    """One engine slot the queue granted (or a retry took): released exactly once, by the pipeline."""

    __slots__ = ("model", "output_tokens", "priority", "prompt_tokens", "state")

    def __init__(
        self, state: BackendState, model: str, prompt_tokens: int, output_tokens: int, priority: int = 0
    ) -> None:
        self.state: Final = state
        self.model: Final = model  # the model this backend serves (differs from the request's after a fallback)
        self.prompt_tokens: Final = prompt_tokens  # the request's prompt estimate
        self.output_tokens: Final = output_tokens  # max_tokens, or the model's expected output
        self.priority: Final = priority  # sent to engines under vLLM's priority scheduling (lower runs first)

    @property
    def kv_tokens(self) -> int:
        """What the request may hold in the engine's KV cache at most: prompt + output."""
        return self.prompt_tokens + self.output_tokens

    def __repr__(self) -> str:
        return f"Target({self.state.name!r}, {self.model!r}, prompt={self.prompt_tokens}, output={self.output_tokens})"


class Delivery:
    """What reached the client. Written by the relay path (upstream, relay); the supervisor reads
    `sending_since_ns`, account reads the rest."""

    __slots__ = (
        "arrival_ns",
        "attempts",
        "backend",
        "body",
        "complete",
        "completion_tokens",
        "content_chunks",
        "finish_reason",
        "first_token_ns",
        "last_token_ns",
        "model",
        "prompt_tokens",
        "sending_since_ns",
        "started",
        "status",
    )

    def __init__(self, arrival_ns: int, backend: str = "", model: str = "") -> None:
        self.arrival_ns = arrival_ns  # monotonic_ns when the request arrived: TTFT and E2E are measured from here
        self.backend = backend  # the engine that answered (or "cache")
        self.model = model  # the model that answered (after fallback)
        self.attempts = 0  # engines tried
        self.status = 0
        self.started = False  # response headers sent: from here on, errors travel in-band
        self.complete = False  # the last byte was sent
        self.first_token_ns = 0
        self.last_token_ns = 0
        self.content_chunks = 0
        self.prompt_tokens = 0  # engine usage, when it reported it
        self.completion_tokens = 0
        self.finish_reason: str | None = None
        self.body: bytes | None = None  # a complete non-stream answer, for the response cache
        # monotonic_ns when a send to the client began and has not returned yet (stall detection); 0 = idle.
        self.sending_since_ns = 0

    def tokens_used(self, parsed: ParsedRequest | None) -> int | None:
        """What to charge the key: 0 if no engine saw the request, else usage (or our best count)."""
        if not self.backend or self.backend == "cache":
            return 0
        if self.prompt_tokens or self.completion_tokens:
            return self.prompt_tokens + self.completion_tokens
        if parsed is None:
            return 0
        return parsed.prompt_tokens_estimate + self.content_chunks

    def __repr__(self) -> str:
        return f"Delivery(backend={self.backend!r}, status={self.status}, complete={self.complete})"


class Ending:
    """How one request ended: account's only input (metrics, reconcile, the log line)."""

    __slots__ = (
        "delivery",
        "ended_ns",
        "error",
        "outcome",
        "parsed",
        "principal",
        "request_id",
        "reservation",
        "started_ns",
        "status",
        "variant",
    )

    def __init__(
        self,
        request_id: str,
        started_ns: int,
        ended_ns: int,
        outcome: Outcome,
        status: int,
        parsed: ParsedRequest | None,
        principal: Principal | None,
        reservation: Reservation | None,
        delivery: Delivery,
        error: GatewayError | None,
        variant: str | None = None,
    ) -> None:
        self.request_id: Final = request_id
        self.started_ns: Final = started_ns
        self.ended_ns: Final = ended_ns
        self.outcome: Final = outcome
        self.status: Final = status
        self.parsed: Final = parsed
        self.principal: Final = principal
        self.reservation: Final = reservation
        self.delivery: Final = delivery
        self.error: Final = error
        self.variant: Final = variant  # the canary variant that served it ("baseline" / "candidate"), if any


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
