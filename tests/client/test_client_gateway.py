"""Against `inferline serve` (the suite's shared gateway): serving headers and the gateway's error table."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inferline.client import BadRequest, Client, NotFound, Retry, Timeouts

MSG = [{"role": "user", "content": "Say something."}]


@pytest.fixture
def client(gateway_url: str) -> Iterator[Client]:
    timeouts = Timeouts(first_token_s=60, idle_s=60)
    with Client(gateway_url + "/v1", model="smollm2", timeouts=timeouts, retry=Retry(max_attempts=1)) as c:
        yield c


def test_stream_reports_the_serving_backend_and_model(client: Client) -> None:
    with client.stream(messages=MSG, max_tokens=6, ignore_eos=True) as s:
        n = sum(1 for _ in s)
    assert 1 <= n <= 6 and s.finish_reason == "length"
    assert s.usage is not None and s.usage.completion_tokens == 6
    assert s.backend == "embedded-0" and s.model == "smollm2"


def test_gateway_errors_arrive_typed(client: Client) -> None:
    with pytest.raises(NotFound) as info:
        client.complete(messages=MSG, model="no-such-model", max_tokens=4)
    assert info.value.status == 404 and info.value.code == "model_not_found"
    with pytest.raises(BadRequest) as bad:
        client.complete(messages=MSG, max_tokens=4, temperature="hot")
    assert bad.value.status == 400 and bad.value.type == "invalid_request_error"
