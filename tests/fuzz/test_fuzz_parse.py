"""Property-based fuzzing of the parse stage: whatever the bytes, parse_request answers a ParsedRequest or a
client error (InvalidRequest / ContextLengthExceeded: 400), never another exception (a 500)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from inferline.errors import GatewayError
from inferline.gateway.parse import check_context, parse_request
from inferline.gateway.values import ParsedRequest

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# JSON scalars at their extremes: huge and negative integers (beyond 64 bits too), floats at the edge of
# range, unicode anywhere (surrogate-free: JSON text is UTF-8), empty strings.
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=2**63 - 2, max_value=2**63 + 2)
    | st.integers(min_value=-(2**64), max_value=-(2**62))
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5),
    max_leaves=30,
)
roles = st.sampled_from(["system", "user", "assistant", "tool", "developer", "function", "robot", ""])
FIELDS = [
    "model",
    "messages",
    "prompt",
    "stream",
    "stream_options",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "n",
]


@st.composite
def near_valid(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid request with some fields replaced by arbitrary JSON: reaches the checks behind the schema."""
    kind = draw(st.sampled_from(["chat", "completions"]))
    body: dict[str, Any] = {"model": draw(st.text(min_size=1, max_size=20))}
    if kind == "chat":
        body["messages"] = draw(
            st.lists(
                st.fixed_dictionaries(
                    {"role": roles},
                    optional={"content": st.text(max_size=200) | st.lists(st.dictionaries(st.text(), json_values))},
                ),
                min_size=1,
                max_size=4,
            )
        )
    else:
        body["prompt"] = draw(
            st.text(min_size=1) | st.lists(st.text(), min_size=1) | st.lists(st.integers(), min_size=1)
        )
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4, unique=True)):
        body[name] = draw(json_values)
    if draw(st.booleans()):
        body[draw(st.text(max_size=10))] = draw(json_values)  # an unknown field: passes through
    return body, kind


def _check(raw: bytes, kind: str) -> None:
    try:
        parsed = parse_request(raw, kind)
    except GatewayError as exc:
        assert exc.status in (400, 413), (exc.status, exc.message)
        assert exc.message and "\n" not in exc.message
        return
    assert isinstance(parsed, ParsedRequest)
    assert parsed.prompt_tokens_estimate >= 1 and parsed.prompt_tokens_upper >= 1
    assert parsed.max_tokens is None or parsed.max_tokens >= 1
    for context in (1, 16, 4096):
        try:
            check_context(parsed, context, parsed.model)
        except GatewayError as exc:
            assert exc.status == 400


@FUZZ
@given(raw=st.binary(max_size=300), kind=st.sampled_from(["chat", "completions"]))
def test_arbitrary_bytes(raw: bytes, kind: str) -> None:
    _check(raw, kind)


@FUZZ
@given(value=json_values, kind=st.sampled_from(["chat", "completions"]))
def test_arbitrary_json_shapes(value: object, kind: str) -> None:
    _check(json.dumps(value).encode(), kind)  # stdlib json: integers beyond 64 bits too


@FUZZ
@given(case=near_valid())
def test_near_valid_requests(case: tuple[dict[str, Any], str]) -> None:
    body, kind = case
    _check(json.dumps(body).encode(), kind)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(min_value=1, max_value=5000), kind=st.sampled_from(["chat", "completions"]))
def test_deep_nesting(depth: int, kind: str) -> None:
    # orjson refuses nesting deeper than 1024; deeper or not, the answer is a 400, never a RecursionError.
    _check(b'{"model": "m", "messages": ' + b"[" * depth + b"]" * depth + b"}", kind)
    _check(b'{"model": "m", "prompt": "x", "stop": ' + b'{"a":' * depth + b"1" + b"}" * depth + b"}", kind)


@FUZZ
@given(text=st.text(min_size=1, max_size=2000), n=st.integers(min_value=1, max_value=40))
def test_unicode_prompts_and_many_messages(text: str, n: int) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": text}] * n, "max_tokens": 5}
    parsed = parse_request(orjson.dumps(body), "chat")
    assert parsed.prompt_tokens_upper >= parsed.prompt_tokens_estimate
