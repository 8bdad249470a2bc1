"""parse: bytes -> ParsedRequest, and the 400s it answers (called directly: no server)."""

from __future__ import annotations

import pytest

from inferline.errors import ContextLengthExceeded, InvalidRequest
from inferline.gateway.parse import check_context, parse_request


def test_chat_request_keeps_passthrough_fields() -> None:
    raw = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,"logprobs":true,"top_k":5}'
    p = parse_request(raw, "chat")
    assert p.stream and not p.include_usage
    assert p.body["logprobs"] is True and p.body["top_k"] == 5
    assert p.prompt_tokens_upper >= p.prompt_tokens_estimate >= 1


def test_max_completion_tokens_is_used_and_conflicts_are_rejected() -> None:
    p = parse_request(b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":7}', "chat")
    assert p.max_tokens == 7
    with pytest.raises(InvalidRequest, match="not two different values"):
        parse_request(
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"max_tokens":3,"max_completion_tokens":7}',
            "chat",
        )


@pytest.mark.parametrize(
    "raw,param",
    [
        (b'{"model":"m","messages":[{"role":"robot","content":"x"}]}', "messages.0.role"),
        (b'{"model":"m","messages":[{"role":"user","content":5}]}', "messages.0.content"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"top_p":0}', "top_p"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"stop":[1]}', "stop"),
        (b'{"model":"m","messages":[{"role":"user","content":"x"}],"seed":"1"}', "seed"),
        (
            b'{"model":"m","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}',
            "stream_options",
        ),
    ],
)
def test_field_errors_name_the_field(raw: bytes, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_request(raw, "chat")
    assert info.value.param == param
    assert param.split(".")[0] in info.value.message


def test_completions_accepts_token_ids() -> None:
    p = parse_request(b'{"model":"m","prompt":[1,2,3,4]}', "completions")
    assert p.prompt_tokens_estimate == 4


def test_context_checks() -> None:
    p = parse_request(b'{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5000}', "chat")
    with pytest.raises(ContextLengthExceeded, match="must be <= 4096"):
        check_context(p, 4096, "m")
    check_context(p, None, "m")  # unknown context: the engine decides
    long = parse_request(b'{"model":"m","messages":[{"role":"user","content":"' + b"x" * 40000 + b'"}]}', "chat")
    with pytest.raises(ContextLengthExceeded):
        check_context(long, 2048, "m")
