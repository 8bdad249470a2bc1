"""parse: the client's bytes -> ParsedRequest. Body cap, JSON, schema, token bounds, context fit. 400 / 413.

Entry point `parse(scope, receive, kind, max_body_bytes)`. The context checks live here too: the cheap
bound at parse time (`check_context`), and the exact fit an engine that hangs on a full context needs
(`fit_output`, called once the target engine is known).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from inferline.backends.base import Backend
from inferline.errors import ContextLengthExceeded, InvalidRequest, PayloadTooLarge
from inferline.protocol import ChatCompletionRequest, CompletionRequest
from inferline.types import Receive, Scope

from .values import ParsedRequest


class ClientGone(Exception):
    """The client disconnected while we were still reading its request (not an error: nobody to tell)."""


async def parse(scope: Scope, receive: Receive, kind: str, max_body_bytes: int) -> ParsedRequest:
    """Read the body (at most max_body_bytes) and validate it as an OpenAI `kind` request."""
    return parse_request(await read_body(scope, receive, max_body_bytes), kind)


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    """The whole request body, refused with 413 as soon as it is known to exceed `limit`."""
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise PayloadTooLarge(f"request body is {int(value)} bytes; the limit is {limit}")
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body = message.get("body", b"")
        size += len(body)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        chunks.append(body)
        if not message.get("more_body", False):
            return b"".join(chunks)


_SCHEMAS: dict[str, type[BaseModel]] = {"chat": ChatCompletionRequest, "completions": CompletionRequest}
_PATHS = {"chat": "/v1/chat/completions", "completions": "/v1/completions"}
# Without a tokenizer at the gateway, ~4 bytes of English per token; the engine counts exactly.
_BYTES_PER_TOKEN = 4


_TYPE_TAGS = frozenset({"str", "int", "float", "bool", "list", "dict", "none"})


def _first_error(exc: ValidationError) -> InvalidRequest:
    err = exc.errors()[0]
    # pydantic adds union branches to loc ("str", "list[dict[str,any]]"); keep only the field path.
    path = ".".join(
        str(p) for p in err["loc"] if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or "-" in p))
    )
    kind = err["type"]
    given = err.get("input")
    if kind == "missing":
        msg = f"`{path}` is required"
    elif kind in ("too_short",) and path in ("messages", "prompt"):
        msg = f"`{path}` must not be empty"
    else:
        msg = f"`{path}`: {err['msg']}; got {_shown(given)}"
    return InvalidRequest(msg, param=path or None)


def _shown(value: Any) -> str:
    """The offending value for an error message, cut to 80 bytes; any value, however deep or large."""
    if value is None:
        return "null"
    try:
        return orjson.dumps(value)[:80].decode(errors="replace")
    except TypeError:  # nested past orjson's recursion limit, or an int beyond 64 bits (found by fuzzing)
        return type(value).__name__


# Chat templates add role markers and sometimes a default system prompt.
_TEMPLATE_OVERHEAD_TOKENS = 64


def prompt_size_bytes(body: dict[str, Any], kind: str) -> int:
    if kind == "chat":
        return sum(len(orjson.dumps(m.get("content"))) + 8 for m in body["messages"])
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return len(prompt.encode())
    if prompt and isinstance(prompt[0], int):
        return len(prompt)  # token ids: one "byte" per token keeps the bound exact
    return sum(len(p.encode()) for p in prompt)


def estimate_prompt_tokens(body: dict[str, Any], kind: str) -> int:
    if kind == "chat":
        size = 0
        for m in body["messages"]:
            c = m.get("content")
            if isinstance(c, str):
                size += len(c) + 8  # role markers of the chat template
            elif isinstance(c, list):
                size += sum(len(str(part.get("text", ""))) for part in c if isinstance(part, dict)) + 8
        return max(1, size // _BYTES_PER_TOKEN)
    prompt = body["prompt"]
    if isinstance(prompt, str):
        return max(1, len(prompt) // _BYTES_PER_TOKEN)
    if prompt and isinstance(prompt[0], int):
        return len(prompt)
    return max(1, sum(len(p) for p in prompt) // _BYTES_PER_TOKEN)


def parse_request(raw: bytes, kind: str) -> ParsedRequest:
    """Validate an OpenAI request. Raises InvalidRequest (400) naming the field, limit and value."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest(f"request body must be a JSON object; got {type(body).__name__}")
    try:
        req: Any = _SCHEMAS[kind].model_validate(body)
    except ValidationError as invalid:  # not `exc`: mypyc gives a name one type per function
        raise _first_error(invalid) from None
    max_tokens = req.max_tokens
    param = "max_tokens"
    if kind == "chat" and req.max_completion_tokens is not None:
        if max_tokens is not None and max_tokens != req.max_completion_tokens:
            raise InvalidRequest(
                "give either `max_tokens` or `max_completion_tokens`, not two different values",
                param="max_completion_tokens",
            )
        max_tokens, param = req.max_completion_tokens, "max_completion_tokens"
    if max_tokens is not None and max_tokens <= 0:
        raise InvalidRequest(f"`{param}` must be >= 1; got {max_tokens}", param=param)
    include_usage = bool(req.stream_options and req.stream_options.include_usage)
    if req.stream_options is not None and not req.stream:
        raise InvalidRequest("`stream_options` is only allowed when `stream` is true", param="stream_options")
    return ParsedRequest(
        kind=kind,
        path=_PATHS[kind],
        body=body,
        model=req.model,
        stream=bool(req.stream),
        include_usage=include_usage,
        max_tokens=max_tokens,
        prompt_tokens_estimate=estimate_prompt_tokens(body, kind),
        prompt_tokens_upper=prompt_size_bytes(body, kind) + _TEMPLATE_OVERHEAD_TOKENS,
    )


async def fit_output(parsed: ParsedRequest, backend: Backend, context_tokens: int, model: str) -> int | None:
    """Make prompt + output fit an engine that would otherwise hang at a full context.

    Returns a max_tokens to send (when the client gave none), or None to keep the client's. Counting
    tokens costs two local calls to the engine, so it only happens when the byte bound can't decide.
    """
    requested = parsed.max_tokens
    if requested is not None and parsed.prompt_tokens_upper + requested <= context_tokens:
        return None
    exact = await backend.count_prompt_tokens(parsed.body)
    prompt = exact if exact is not None else parsed.prompt_tokens_upper
    if prompt >= context_tokens:
        raise ContextLengthExceeded(
            f"the prompt is {prompt} tokens; model {model} has a context of {context_tokens} tokens",
            param="messages" if parsed.kind == "chat" else "prompt",
        )
    room = context_tokens - prompt
    if requested is None:
        return room
    if requested > room:
        raise ContextLengthExceeded(
            f"prompt ({prompt} tokens) + `max_tokens` ({requested}) exceeds the context of model {model} "
            f"({context_tokens} tokens); ask for at most {room}",
            param="max_tokens",
        )
    return None


def check_context(parsed: ParsedRequest, context_tokens: int | None, model: str) -> None:
    """Reject what cannot fit the model's context. The prompt check is a lower bound; the engine decides."""
    if context_tokens is None:
        return
    if parsed.max_tokens is not None and parsed.max_tokens > context_tokens:
        raise ContextLengthExceeded(
            f"`max_tokens` must be <= {context_tokens} (the context length of model {model}); got {parsed.max_tokens}",
            param="max_tokens",
        )
    # Only certain overflows: even at 2x our estimate's density the prompt would not fit.
    if parsed.prompt_tokens_estimate // 2 >= context_tokens:
        raise ContextLengthExceeded(
            f"the prompt (about {parsed.prompt_tokens_estimate} tokens) is longer than the context of "
            f"model {model} ({context_tokens} tokens)",
            param="messages" if parsed.kind == "chat" else "prompt",
        )
