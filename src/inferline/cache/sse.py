"""as_sse_chunks: a cached chat.completion / text_completion replayed as OpenAI stream chunks + [DONE].

One role chunk, one chunk with the whole content (and tool calls, logprobs), one chunk with the
finish_reason per choice; then, when the client asked for stream_options.include_usage, the usage chunk
(`choices: []`) that OpenAI sends last; then `data: [DONE]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson

__all__ = ["as_sse_chunks"]

DONE = b"data: [DONE]\n\n"
# Message fields replayed as deltas, in OpenAI's order (reasoning_content: vLLM reasoning parsers).
_DELTA_FIELDS = ("reasoning_content", "content", "refusal")


def _event(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def as_sse_chunks(
    response: bytes | Mapping[str, Any], kind: Literal["chat", "completions"], include_usage: bool = False
) -> list[bytes]:
    """SSE events (each `data: ...\\n\\n`) equivalent to streaming the cached `response`."""
    resp: Mapping[str, Any] = orjson.loads(response) if isinstance(response, bytes | bytearray) else response
    expected = "chat.completion" if kind == "chat" else "text_completion"
    if resp.get("object") != expected:
        raise ValueError(f"as_sse_chunks({kind!r}) needs a {expected} object; got {resp.get('object')!r}")
    head: dict[str, Any] = {"id": resp.get("id", ""), "object": "", "created": resp.get("created", 0)}
    head["model"] = resp.get("model", "")
    if resp.get("system_fingerprint") is not None:
        head["system_fingerprint"] = resp["system_fingerprint"]
    usage = resp.get("usage")
    if include_usage:
        head["usage"] = None  # OpenAI sends usage: null on every chunk but the last when usage is on
    out: list[bytes] = []
    if kind == "chat":
        head["object"] = "chat.completion.chunk"
        for i, choice in enumerate(resp.get("choices") or []):
            idx = choice.get("index", i)
            msg = choice.get("message") or {}
            role_delta = {"role": msg.get("role", "assistant"), "content": ""}
            out.append(_event({**head, "choices": [_chat_choice(idx, role_delta, None, None)]}))
            delta: dict[str, Any] = {k: msg[k] for k in _DELTA_FIELDS if msg.get(k) is not None}
            if msg.get("tool_calls"):
                delta["tool_calls"] = [{"index": j, **tc} for j, tc in enumerate(msg["tool_calls"])]
            if delta or choice.get("logprobs") is not None:
                out.append(_event({**head, "choices": [_chat_choice(idx, delta, choice.get("logprobs"), None)]}))
            final = _chat_choice(idx, {}, None, choice.get("finish_reason") or "stop")
            out.append(_event({**head, "choices": [final]}))
    else:
        head["object"] = "text_completion"
        for i, choice in enumerate(resp.get("choices") or []):
            idx = choice.get("index", i)
            text = {"index": idx, "text": choice.get("text", ""), "logprobs": choice.get("logprobs")}
            out.append(_event({**head, "choices": [{**text, "finish_reason": None}]}))
            final = {"index": idx, "text": "", "logprobs": None, "finish_reason": choice.get("finish_reason") or "stop"}
            out.append(_event({**head, "choices": [final]}))
    if include_usage and usage is not None:
        out.append(_event({**head, "choices": [], "usage": usage}))
    out.append(DONE)
    return out


def _chat_choice(index: int, delta: Mapping[str, Any], logprobs: Any, finish_reason: str | None) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
