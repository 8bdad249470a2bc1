"""Workloads: seeded and reproducible, lengths within bounds, ShareGPT parsing and vLLM's filter."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import orjson
import pytest

from inferline.bench.config import BenchConfig, Endpoint, LengthDist, LengthSpec, Workload
from inferline.bench.workload import (
    MAX_LEN_FACTOR,
    RequestSpec,
    estimate_tokens,
    load_sharegpt,
    load_token_counter,
    request_body,
    requests,
    sample_lengths,
)


def take(cfg: BenchConfig, n: int) -> list[RequestSpec]:
    return list(itertools.islice(requests(cfg), n))


def cfg(**kw: object) -> BenchConfig:
    return BenchConfig.model_validate({"concurrency": (1,), **kw})


def test_same_seed_same_requests_other_seed_differs() -> None:
    base = {"input": LengthSpec(mean=64, dist=LengthDist.LOGNORMAL), "output": LengthSpec(mean=32)}
    a = take(cfg(seed=3, **base), 50)
    assert a == take(cfg(seed=3, **base), 50)
    assert a != take(cfg(seed=4, **base), 50)


def test_rate_does_not_change_the_requests() -> None:
    assert take(cfg(rates=(1.0,)), 20) == take(cfg(rates=(8.0,)), 20)


def test_synthetic_prompt_has_the_sampled_number_of_words() -> None:
    for spec in take(cfg(input=LengthSpec(mean=40, dist=LengthDist.UNIFORM)), 30):
        assert len(spec.prompt.split()) == spec.prompt_tokens
        assert spec.cls == "random" and spec.max_tokens == 128 and spec.system is None


@pytest.mark.parametrize("dist", list(LengthDist))
def test_lengths_within_bounds_and_mean(dist: LengthDist) -> None:
    spec = LengthSpec(mean=200, dist=dist, spread=0.5)
    xs = np.array(sample_lengths(spec, np.random.default_rng(0), 20_000))
    assert xs.min() >= 1 and xs.max() <= MAX_LEN_FACTOR * 200
    assert xs.mean() == pytest.approx(200, rel=0.03)
    if dist is LengthDist.FIXED:
        assert set(xs.tolist()) == {200}
    if dist is LengthDist.UNIFORM:
        assert xs.min() >= 100 and xs.max() <= 300
    if dist in (LengthDist.NORMAL, LengthDist.LOGNORMAL):
        assert xs.std() / xs.mean() == pytest.approx(0.5, rel=0.1)
    if dist is LengthDist.LOGNORMAL:
        assert np.median(xs) < xs.mean()  # right-skewed


def test_prefix_workload_shares_system_prompts_per_group() -> None:
    specs = take(cfg(workload=Workload.PREFIX, prefix_len=100, groups=4, input=LengthSpec(mean=20)), 200)
    systems = {s.system for s in specs}
    assert len(systems) == 4
    assert all(s.system is not None and len(s.system.split()) == 100 for s in specs)
    assert all(s.prompt_tokens == 120 and s.cls == "prefix" for s in specs)
    assert len({s.prompt for s in specs}) == 200  # suffixes differ


def test_mix_workload_fraction_and_lengths() -> None:
    c = cfg(
        workload=Workload.MIX,
        short_frac=0.8,
        input=LengthSpec(mean=16),
        long_input_len=300,
        long_output_len=50,
    )
    specs = take(c, 2000)
    short = [s for s in specs if s.cls == "short"]
    assert len(short) / len(specs) == pytest.approx(0.8, abs=0.03)
    assert all(s.prompt_tokens == 16 and s.max_tokens == 128 for s in short)
    assert all(s.prompt_tokens == 300 and s.max_tokens == 50 for s in specs if s.cls == "long")


def test_request_body_chat_and_completions() -> None:
    spec = RequestSpec("prefix", "hello there", 2, 7, system="you are terse")
    chat = orjson.loads(request_body(spec, cfg(ignore_eos=True, extra_body={"temperature": 0}), "m"))
    assert chat == {
        "model": "m",
        "messages": [
            {"role": "system", "content": "you are terse"},
            {"role": "user", "content": "hello there"},
        ],
        "max_tokens": 7,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
        "temperature": 0,
    }
    comp = orjson.loads(request_body(spec, cfg(endpoint=Endpoint.COMPLETIONS, include_usage=False), "m"))
    assert comp["prompt"] == "you are terse\n\nhello there"
    assert "stream_options" not in comp and "messages" not in comp


def test_estimate_tokens() -> None:
    assert estimate_tokens("") == 0
    assert estimate_tokens("abcd" * 10) == 10
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("你好世界") == 4  # one token a non-ASCII character
    assert load_token_counter(None) is estimate_tokens
    with pytest.raises(ValueError, match="cannot load tokenizer"):
        load_token_counter("/nonexistent/tokenizer-for-test")


def words(n: int) -> str:
    return " ".join(["abc"] * n)  # 4 characters a word with the space: ~1 token a word


def sharegpt_file(tmp_path: Path) -> Path:
    def conv(human: str, gpt: str) -> dict[str, object]:
        return {"conversations": [{"from": "human", "value": human}, {"from": "gpt", "value": gpt}]}

    data = [
        conv(words(20), words(30)),  # kept
        conv("hi", words(30)),  # prompt < 4 tokens
        conv(words(20), "ok"),  # output < 4 tokens
        conv(words(1100), words(10)),  # prompt > 1024
        conv(words(1000), words(1100)),  # prompt + output > 2048
        {"conversations": [{"from": "human", "value": words(50)}]},  # one turn
        {"messages": [{"role": "user", "content": words(40)}, {"role": "assistant", "content": words(8)}]},  # kept
        {"id": "no turns"},
        conv(words(100), words(200)),  # kept
    ]
    path = tmp_path / "sharegpt.json"
    path.write_text(json.dumps(data))
    return path


def test_sharegpt_parsing_and_vllm_filter(tmp_path: Path) -> None:
    path = sharegpt_file(tmp_path)
    assert len(load_sharegpt(path)) == 7  # two-turn conversations in either format
    specs = take(cfg(dataset=path, workload=Workload.SHAREGPT), 3)
    got = sorted((s.prompt_tokens, s.max_tokens) for s in specs)
    assert got == [(20, 30), (40, 8), (100, 200)]
    assert all(s.cls == "sharegpt" for s in specs)
    again = take(cfg(dataset=path, workload=Workload.SHAREGPT), 9)
    assert again[3:6] == again[:3] == specs  # kept conversations repeat in the same order


def test_sharegpt_fixed_output_len_skips_min_output_check(tmp_path: Path) -> None:
    path = sharegpt_file(tmp_path)
    specs = take(cfg(dataset=path, output=LengthSpec(mean=16)), 5)
    assert {s.max_tokens for s in specs} == {16}
    # the "ok" reply no longer filters, and 1000 + 16 <= 2048 now fits
    assert sorted(s.prompt_tokens for s in specs) == [20, 20, 40, 100, 1000]


def test_sharegpt_nothing_passes(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([{"conversations": [{"value": "a"}, {"value": "b"}]}]))
    with pytest.raises(ValueError, match="no conversation passes"):
        take(cfg(dataset=path), 1)


def test_config_validation_messages() -> None:
    with pytest.raises(ValueError, match="--rate"):
        BenchConfig()
    with pytest.raises(ValueError, match="not both"):
        BenchConfig(rates=(1.0, 2.0), concurrency=(1, 2))
    with pytest.raises(ValueError, match="--dataset"):
        BenchConfig(concurrency=(1,), workload=Workload.SHAREGPT)
    c = BenchConfig(url="http://h:1/v1/", rates=(1.0, 2.0), concurrency=(4,), api_key="secret")
    assert c.request_url == "http://h:1/v1/chat/completions"
    assert c.runs() == [(1.0, 4), (2.0, 4)]
    assert "secret" not in json.dumps(c.public_json())
