"""parse: body bytes -> ParsedRequest. Size cap, JSON, schema, token estimate. Rejects with 400 / 413."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from inferline.errors import ContextLengthExceeded, InvalidRequest
from inferline.protocol import ChatCompletionRequest, CompletionRequest

from .context import ParsedRequest

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
    except ValidationError as exc:
        raise _first_error(exc) from None
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
