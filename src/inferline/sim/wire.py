"""The OpenAI / vLLM wire format for the simulator: validate request bodies, estimate tokens, build responses.

Streaming chunks are built from byte fragments prepared once per request, so a token costs two
concatenations. Shapes follow vLLM's OpenAI server (`chat.completion.chunk`, `text_completion`,
a last usage chunk with `choices: []`, then `data: [DONE]`) and its error body
`{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson

from inferline.sim.prefix_cache import chat_prompt_text, hash_blocks, hash_token_blocks
from inferline.sim.scheduler import SimRequest

__all__ = [
    "BadRequest",
    "CompletionCall",
    "StreamFormat",
    "error_body",
    "estimate_tokens",
    "parse_completion",
]

CHARS_PER_TOKEN = 4  # the usual English-text ratio for BPE tokenizers; deterministic, no tokenizer needed
CHAT_MESSAGE_OVERHEAD_TOKENS = 4  # ChatML: <|im_start|>role\n ... <|im_end|>\n
CHAT_REPLY_PRIMER_TOKENS = 3  # <|im_start|>assistant\n

_ERROR_TYPES = {
    400: "BadRequestError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    413: "RequestEntityTooLargeError",
    429: "TooManyRequestsError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}

# What the simulated model "says": a fixed vocabulary, one word per token, pre-encoded as JSON strings.
_TEXT = (
    "the quick brown fox jumps over lazy dog while simulated engines stream tokens at a modelled pace "
    "so gateways can be tested for routing admission and autoscaling without a real model behind them"
)
_WORDS = _TEXT.split(" ")
VOCAB = tuple(" " + w for w in _WORDS)
_VOCAB_JSON = tuple(orjson.dumps(w) for w in VOCAB)
_VOCAB_LEN = len(VOCAB)


def token_index(req: SimRequest, n: int) -> int:
    """Which vocabulary entry is the request's Nth output token (1-based): a function of arrival order."""
    return (req.seq * 7 + n) % len(VOCAB)


def output_text(req: SimRequest) -> str:
    return "".join(VOCAB[token_index(req, n)] for n in range(1, req.num_output + 1))


class BadRequest(Exception):
    """A request the engine refuses before queueing it (status 400 unless said otherwise)."""

    def __init__(self, message: str, *, param: str | None = None, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    err = {"message": message, "type": _ERROR_TYPES.get(status, "Error"), "param": param, "code": status}
    return orjson.dumps({"error": err})


def estimate_tokens(text: str) -> int:
    """Prompt tokens for TEXT: ceil(characters / 4). Deterministic and cheap; not a real tokenizer."""
    return -(-len(text) // CHARS_PER_TOKEN)


@dataclass(slots=True)
class CompletionCall:
    """A validated completion request: everything the engine and the response writer need."""

    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int
    stream: bool = False
    include_usage: bool = False
    priority: int = 0
    min_tokens: int = 0
    ignore_eos: bool = False
    block_hashes: tuple[int, ...] = ()  # prefix caching: chained hashes of the prompt's full blocks


def _int_field(body: dict[str, Any], name: str, *, minimum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"`{name}` must be an integer; got {value!r}", param=name)
    if minimum is not None and value < minimum:
        raise BadRequest(f"`{name}` must be at least {minimum}; got {value}", param=name)
    return value


def _chat_prompt_tokens(messages: Any) -> int:
    if not isinstance(messages, list) or not messages:
        raise BadRequest("`messages` must be a non-empty list", param="messages")
    total = CHAT_REPLY_PRIMER_TOKENS
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise BadRequest(f"`messages[{i}]` must be an object with a string `role`", param="messages")
        content = msg.get("content")
        total += CHAT_MESSAGE_OVERHEAD_TOKENS
        if content is None or isinstance(content, str):
            total += estimate_tokens(content or "")
        elif isinstance(content, list):
            for part in content:
                if not (isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)):
                    raise BadRequest(
                        f"`messages[{i}].content`: the simulator accepts only text parts", param="messages"
                    )
                total += estimate_tokens(part["text"])
        else:
            raise BadRequest(f"`messages[{i}].content` must be a string or a list of parts", param="messages")
    return total


def _completion_prompt_tokens(prompt: Any) -> int:
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, str):
        return max(1, estimate_tokens(prompt))
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) and not isinstance(t, bool) for t in prompt):
        return len(prompt)
    raise BadRequest(
        "`prompt` must be a string, a list of token ids, or a list of one of those (no batches)",
        param="prompt",
    )


def parse_completion(
    raw: bytes,
    *,
    chat: bool,
    served_model: str,
    max_model_len: int,
    priority_enabled: bool,
    priority_header: str | None = None,
    block_tokens: int = 0,
) -> CompletionCall:
    """Validate a /v1/chat/completions (CHAT) or /v1/completions body; BadRequest says what is wrong.

    BLOCK_TOKENS > 0 (prefix caching on): hash the prompt in blocks of that many tokens."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != served_model:
        raise BadRequest(f"The model `{model}` does not exist.", param="model", status=404)
    if chat:
        prompt_tokens = _chat_prompt_tokens(body.get("messages"))
    else:
        if "prompt" not in body:
            raise BadRequest("`prompt` is required", param="prompt")
        prompt_tokens = _completion_prompt_tokens(body["prompt"])
    n = _int_field(body, "n", minimum=1)
    if n not in (None, 1):
        raise BadRequest(f"the simulator supports only n=1; got {n}", param="n")
    max_tokens = _int_field(body, "max_completion_tokens", minimum=1) if chat else None
    if max_tokens is None:
        max_tokens = _int_field(body, "max_tokens", minimum=1)
    if prompt_tokens >= max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, your request has "
            f"{prompt_tokens} input tokens. Please reduce the length of the input.",
            param="messages" if chat else "prompt",
        )
    if max_tokens is None:
        max_tokens = max_model_len - prompt_tokens
    elif prompt_tokens + max_tokens > max_model_len:
        raise BadRequest(
            f"This model's maximum context length is {max_model_len} tokens. However, you requested "
            f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the input, "
            f"{max_tokens} in the completion). "
            "Please reduce the length of the input or completion.",
            param="max_tokens",
        )
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise BadRequest(f"`stream` must be a boolean; got {stream!r}", param="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise BadRequest("Stream options can only be defined when `stream=True`.", param="stream_options")
        if not isinstance(options, dict):
            raise BadRequest("`stream_options` must be an object", param="stream_options")
        include_usage = bool(options.get("include_usage", False))
    priority = _int_field(body, "priority")
    if priority is None and priority_header:
        try:
            priority = int(priority_header)
        except ValueError:
            raise BadRequest(f"X-Vllm-Priority must be an integer; got {priority_header!r}") from None
    priority = priority or 0
    if priority and not priority_enabled:
        raise BadRequest(f"Got priority {priority} but Priority scheduling is not enabled.", param="priority")
    ignore_eos = body.get("ignore_eos", False)
    hashes = _prompt_block_hashes(body, chat, prompt_tokens, block_tokens) if block_tokens > 0 else ()
    return CompletionCall(
        chat=chat,
        model=served_model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        stream=stream,
        include_usage=include_usage,
        priority=priority,
        min_tokens=_int_field(body, "min_tokens", minimum=0) or 0,
        ignore_eos=ignore_eos is True,
        block_hashes=hashes,
    )


def _prompt_block_hashes(body: dict[str, Any], chat: bool, prompt_tokens: int, block_tokens: int) -> tuple[int, ...]:
    """Block hashes of a prompt already validated: ChatML-rendered messages, a string, or token ids."""
    max_blocks = prompt_tokens // block_tokens
    if chat:
        pairs = []
        for msg in body["messages"]:
            content = msg.get("content")
            if isinstance(content, list):
                content = "".join(part["text"] for part in content)
            pairs.append((msg["role"], content or ""))
        return hash_blocks(chat_prompt_text(pairs), block_tokens * CHARS_PER_TOKEN, max_blocks)
    prompt = body["prompt"]
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return hash_blocks(prompt, block_tokens * CHARS_PER_TOKEN, max_blocks)
    return hash_token_blocks(prompt, block_tokens, max_blocks)


class StreamFormat:
    """SSE chunks for one streamed request, built from fragments prepared once."""

    __slots__ = ("_done_tail", "_first", "_head", "_tail", "_usage_head")

    def __init__(self, call: CompletionCall, request_id: str, created: int) -> None:
        model = orjson.dumps(call.model)
        rid = request_id.encode()
        if call.chat:
            common = b'{"id":"%s","object":"chat.completion.chunk","created":%d,"model":%s,' % (
                rid,
                created,
                model,
            )
            self._head = b"data: " + common + b'"choices":[{"index":0,"delta":{"content":'
            self._tail = b'},"logprobs":null,"finish_reason":null}]}\n\n'
            self._done_tail = b'},"logprobs":null,"finish_reason":"%s","stop_reason":null}]}\n\n'
            self._first = (
                b"data: " + common + b'"choices":[{"index":0,"delta":{"role":"assistant","content":""},'
                b'"logprobs":null,"finish_reason":null}]}\n\n'
            )
        else:
            common = b'{"id":"%s","object":"text_completion","created":%d,"model":%s,' % (rid, created, model)
            self._head = b"data: " + common + b'"choices":[{"index":0,"text":'
            self._tail = b',"logprobs":null,"finish_reason":null,"stop_reason":null}]}\n\n'
            self._done_tail = b',"logprobs":null,"finish_reason":"%s","stop_reason":null}]}\n\n'
            self._first = b""
        self._usage_head = (b"data: " + common + b'"choices":[],"usage":') if call.include_usage else b""

    def token(self, req: SimRequest) -> bytes:
        """The SSE event(s) for REQ's newest token, framed as one HTTP chunk. The last one carries
        finish_reason, usage, [DONE] and the chunked body's terminator."""
        n = req.num_output
        text = _VOCAB_JSON[(req.seq * 7 + n) % _VOCAB_LEN]  # token_index(), inlined: this runs per chunk
        if not req.finish_reason and n != 1:
            size = len(self._head) + len(text) + len(self._tail)
            return b"%x\r\n%b%b%b\r\n" % (size, self._head, text, self._tail)
        if not req.finish_reason:
            out = self._first + self._head + text + self._tail
            return b"%x\r\n%b\r\n" % (len(out), out)
        out = self._head + text + self._done_tail % req.finish_reason.encode()
        if req.num_output == 1:
            out = self._first + out
        if self._usage_head:
            out += self._usage_head + orjson.dumps(_usage(req)) + b"}\n\n"
        out += b"data: [DONE]\n\n"
        return b"%x\r\n%b\r\n0\r\n\r\n" % (len(out), out)


def _usage(req: SimRequest) -> dict[str, int]:
    return {
        "prompt_tokens": req.prompt_tokens,
        "total_tokens": req.prompt_tokens + req.num_output,
        "completion_tokens": req.num_output,
    }


def completion_body(call: CompletionCall, req: SimRequest, request_id: str, created: int) -> bytes:
    """The non-streamed response for a finished request."""
    text = output_text(req)
    choice: dict[str, Any]
    if call.chat:
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text, "tool_calls": []},
            "logprobs": None,
            "finish_reason": req.finish_reason,
            "stop_reason": None,
        }
        obj = "chat.completion"
    else:
        choice = {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": req.finish_reason,
            "stop_reason": None,
        }
        obj = "text_completion"
    return orjson.dumps(
        {
            "id": request_id,
            "object": obj,
            "created": created,
            "model": call.model,
            "choices": [choice],
            "usage": _usage(req),
        }
    )


def models_body(model: str, max_model_len: int) -> bytes:
    card = {
        "id": model,
        "object": "model",
        "created": int(time.time()),
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
    }
    return orjson.dumps({"object": "list", "data": [card]})


def tokenize_body(raw: bytes, max_model_len: int) -> bytes:
    """vLLM's /tokenize answer with the simulator's estimate (token ids are placeholders: 0..count-1)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    count = (
        _chat_prompt_tokens(body["messages"]) if "messages" in body else _completion_prompt_tokens(body.get("prompt"))
    )
    return orjson.dumps({"count": count, "max_model_len": max_model_len, "tokens": list(range(count))})
