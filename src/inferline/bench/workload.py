"""Workloads: a seeded, endless stream of requests (prompt, length, class) and their request bodies.

Synthetic prompts are random words from a list of common English words, each about one token in
BPE tokenizers, so a prompt of N words is about N tokens without needing a tokenizer.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from inferline.bench.config import (
    DEFAULT_OUTPUT_LEN,
    SHAREGPT_MAX_PROMPT_TOKENS,
    SHAREGPT_MAX_TOTAL_TOKENS,
    SHAREGPT_MIN_TOKENS,
    BenchConfig,
    Endpoint,
    LengthDist,
    LengthSpec,
    Workload,
)

MAX_LEN_FACTOR = 4  # normal and lognormal lengths are clipped to [1, 4 x mean]
_BLOCK = 256

_WORD_TEXT = (
    "the of and to in is you that it he was for on are as with his they at be this have from or one had "
    "by word but not what all were we when your can said there use an each which she do how their if will "
    "up other about out many then them these so some her would make like him into time has look two more "
    "write go see number no way could people my than first water been call who oil its now find long down "
    "day did get come made may part over new sound take only little work know place year live me back "
    "give most very after thing our just name good sentence man think say great where help through much "
    "before line right too mean old any same tell boy follow came want show also around form three small "
    "set put end does another well large must big even such because turn here why ask went men read need "
    "land different home us move try kind hand picture again change off play spell air away animal house "
    "point page letter mother answer found study still learn should world high every near add food "
    "between own below country plant last school father keep tree never start city earth eye light "
    "thought head under story saw left few while along might close something seem next hard open example "
    "begin life always those both paper together got group often run important until children side feet "
    "car mile night walk"
)
_WORDS = _WORD_TEXT.split()
_VOCAB = np.array(_WORDS, dtype=object)

TokenCounter = Callable[[str], int]


@dataclass(frozen=True, slots=True)
class RequestSpec:
    """One request to send: `system` is the shared prefix (prefix workload), `prompt` the user turn."""

    cls: str
    prompt: str
    prompt_tokens: int  # estimated (or counted with --tokenizer)
    max_tokens: int
    system: str | None = None


def estimate_tokens(text: str) -> int:
    """Tokens without a tokenizer: ~4 ASCII characters per token, one token per other character."""
    n_ascii = len(text.encode("ascii", "ignore"))
    return math.ceil(n_ascii / 4) + (len(text) - n_ascii)


def load_token_counter(name: str | None) -> TokenCounter:
    """A real tokenizer when one is installed (`tokenizers` for a tokenizer.json, else `transformers`)."""
    if name is None:
        return estimate_tokens
    errors: list[str] = []
    if name.endswith(".json") and Path(name).is_file():
        try:
            tok_mod = importlib.import_module("tokenizers")
            tok = tok_mod.Tokenizer.from_file(name)
            return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
        except Exception as exc:
            errors.append(f"tokenizers: {exc}")
    try:
        tf = importlib.import_module("transformers")
        auto = tf.AutoTokenizer.from_pretrained(name)
        return lambda text: len(auto.encode(text, add_special_tokens=False))
    except Exception as exc:
        errors.append(f"transformers: {exc}")
    raise ValueError(f"cannot load tokenizer {name!r} ({'; '.join(errors)}); omit --tokenizer to estimate")


def sample_lengths(spec: LengthSpec, rng: np.random.Generator, n: int) -> list[int]:
    """n lengths from the distribution, each >= 1 (normal and lognormal clipped to 4 x mean)."""
    mean, s = spec.mean, spec.spread
    if spec.dist is LengthDist.FIXED or s == 0:
        return [mean] * n
    if spec.dist is LengthDist.UNIFORM:
        lo = max(1, round(mean * (1 - s)))
        hi = max(lo, round(mean * (1 + s)))
        return [int(x) for x in rng.integers(lo, hi + 1, size=n)]
    if spec.dist is LengthDist.NORMAL:
        raw = rng.normal(mean, s * mean, size=n)
    else:  # lognormal with the given mean and coefficient of variation
        sigma2 = math.log1p(s * s)
        raw = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=n)
    return [int(x) for x in np.clip(np.rint(raw), 1, MAX_LEN_FACTOR * mean)]


def random_text(rng: np.random.Generator, n_words: int) -> str:
    return " ".join(_VOCAB[rng.integers(0, len(_VOCAB), size=n_words)].tolist())


def requests(cfg: BenchConfig, count: TokenCounter | None = None) -> Iterator[RequestSpec]:
    """The run's endless, seeded request stream: the same config and seed give the same requests."""
    rng = np.random.default_rng([cfg.seed, 0x5EED])
    output = cfg.output or LengthSpec(mean=DEFAULT_OUTPUT_LEN)
    if cfg.workload is Workload.SHAREGPT or (cfg.dataset is not None and cfg.workload is Workload.RANDOM):
        assert cfg.dataset is not None
        return sharegpt(cfg.dataset, rng, count or estimate_tokens, cfg.output)
    if cfg.workload is Workload.PREFIX:
        return _prefix(cfg, output, rng, count)
    if cfg.workload is Workload.MIX:
        return _mix(cfg, output, rng, count)
    return _synthetic("random", cfg.input, output, rng, count)


def _synthetic(
    cls: str, inp: LengthSpec, out: LengthSpec, rng: np.random.Generator, count: TokenCounter | None
) -> Iterator[RequestSpec]:
    while True:
        ins, outs = sample_lengths(inp, rng, _BLOCK), sample_lengths(out, rng, _BLOCK)
        for n_in, n_out in zip(ins, outs, strict=True):
            text = random_text(rng, n_in)
            yield RequestSpec(cls, text, count(text) if count else n_in, n_out)


def _prefix(
    cfg: BenchConfig, out: LengthSpec, rng: np.random.Generator, count: TokenCounter | None
) -> Iterator[RequestSpec]:
    prefixes = [random_text(rng, cfg.prefix_len) for _ in range(cfg.groups)]
    prefix_tokens = [count(p) if count else cfg.prefix_len for p in prefixes]
    while True:
        groups = rng.integers(0, cfg.groups, size=_BLOCK).tolist()
        ins, outs = sample_lengths(cfg.input, rng, _BLOCK), sample_lengths(out, rng, _BLOCK)
        for g, n_in, n_out in zip(groups, ins, outs, strict=True):
            text = random_text(rng, n_in)
            n = prefix_tokens[g] + (count(text) if count else n_in)
            yield RequestSpec("prefix", text, n, n_out, system=prefixes[g])


def _mix(
    cfg: BenchConfig, out: LengthSpec, rng: np.random.Generator, count: TokenCounter | None
) -> Iterator[RequestSpec]:
    long_in = LengthSpec(mean=cfg.long_input_len, dist=cfg.input.dist, spread=cfg.input.spread)
    long_out = LengthSpec(mean=cfg.long_output_len, dist=out.dist, spread=out.spread)
    while True:
        shorts = (rng.random(size=_BLOCK) < cfg.short_frac).tolist()
        s_in, s_out = sample_lengths(cfg.input, rng, _BLOCK), sample_lengths(out, rng, _BLOCK)
        l_in, l_out = sample_lengths(long_in, rng, _BLOCK), sample_lengths(long_out, rng, _BLOCK)
        for i, short in enumerate(shorts):
            n_in, n_out = (s_in[i], s_out[i]) if short else (l_in[i], l_out[i])
            text = random_text(rng, n_in)
            yield RequestSpec("short" if short else "long", text, count(text) if count else n_in, n_out)


def load_sharegpt(path: Path) -> list[tuple[str, str]]:
    """(first human turn, first reply) of every conversation with at least two turns.

    Accepts ShareGPT's `{"conversations": [{"from": ..., "value": ...}]}` and the
    `{"messages": [{"role": ..., "content": ...}]}` variant.
    """
    data = orjson.loads(path.read_bytes())
    if isinstance(data, dict):
        data = data.get("data") or data.get("conversations") or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of conversations")
    pairs: list[tuple[str, str]] = []
    for entry in data:
        if not isinstance(entry, dict):
            continue
        turns = entry.get("conversations") or entry.get("conversation") or entry.get("messages")
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        first, second = (_turn_text(t) for t in turns[:2])
        if first is not None and second is not None:
            pairs.append((first, second))
    return pairs


def _turn_text(turn: Any) -> str | None:
    if not isinstance(turn, dict):
        return None
    v = turn.get("value", turn.get("content"))
    return v if isinstance(v, str) else None


def sharegpt(
    path: Path, rng: np.random.Generator, count: TokenCounter, output: LengthSpec | None
) -> Iterator[RequestSpec]:
    """Shuffled conversations kept as vLLM keeps them: prompt 4-1024 tokens, prompt+output <= 2048.

    The output length is the reply's token count, or fixed by `output` (then the minimum-output
    check is skipped, as in vLLM). Once every conversation was tried, the kept ones repeat in order.
    """
    pairs = load_sharegpt(path)
    order = rng.permutation(len(pairs)).tolist()
    fixed = output.mean if output is not None else None
    kept: list[RequestSpec] = []
    for i in order:
        prompt, reply = pairs[i]
        n_in = count(prompt)
        n_out = fixed if fixed is not None else count(reply)
        if n_in < SHAREGPT_MIN_TOKENS or (fixed is None and n_out < SHAREGPT_MIN_TOKENS):
            continue
        if n_in > SHAREGPT_MAX_PROMPT_TOKENS or n_in + n_out > SHAREGPT_MAX_TOTAL_TOKENS:
            continue
        spec = RequestSpec("sharegpt", prompt, n_in, n_out)
        kept.append(spec)
        yield spec
    if not kept:
        raise ValueError(
            f"{path}: no conversation passes the filter (prompt {SHAREGPT_MIN_TOKENS}-"
            f"{SHAREGPT_MAX_PROMPT_TOKENS} tokens, prompt + output <= {SHAREGPT_MAX_TOTAL_TOKENS})"
        )
    while True:
        yield from kept


def request_body(spec: RequestSpec, cfg: BenchConfig, model: str) -> bytes:
    """The JSON body for the chat or completions endpoint, streaming, usage requested."""
    body: dict[str, Any] = {"model": model}
    if cfg.endpoint is Endpoint.CHAT:
        msgs = [{"role": "system", "content": spec.system}] if spec.system else []
        msgs.append({"role": "user", "content": spec.prompt})
        body["messages"] = msgs
    else:
        body["prompt"] = f"{spec.system}\n\n{spec.prompt}" if spec.system else spec.prompt
    body["max_tokens"] = spec.max_tokens
    body["stream"] = True
    if cfg.include_usage:
        body["stream_options"] = {"include_usage": True}
    if cfg.ignore_eos:
        body["ignore_eos"] = True
    body.update(cfg.extra_body)
    return orjson.dumps(body)
