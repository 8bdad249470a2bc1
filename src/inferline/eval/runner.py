"""runner: every item of an eval set against every endpoint (one endpoint at a time, so they do not share CPU).

All endpoints are checked first (reachable, model served, logprob mode), so a down endpoint fails the run
before any work. Any request that fails later aborts the run too: a half-measured candidate must not be gated.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

from inferline.eval.dataset import EvalItem
from inferline.eval.endpoint import Endpoint, EndpointError, EndpointSpec, LogprobMode
from inferline.eval.scoring import choice_scores, pick_choice, score_generated


@dataclass(slots=True)
class ItemResult:
    id: str
    category: str
    kind: str  # choice | generated | reference
    correct: bool | None = None  # None: not scored on this endpoint (no log-probabilities)
    reply: str | None = None
    chosen: int | None = None
    scores: list[float] | None = None
    refusal: bool | None = None
    failed_checks: list[str] = field(default_factory=list)
    has_checks: bool = False
    ref_nll: float | None = None
    ref_tokens: int | None = None
    ttft_s: float | None = None
    e2e_s: float | None = None
    completion_tokens: int | None = None


@dataclass(slots=True)
class EndpointResult:
    name: str
    url: str
    model: str
    logprobs: str
    logprobs_note: str
    items: list[ItemResult]
    memory_bytes: float | None
    memory_source: str
    wall_s: float


async def _score_item(ep: Endpoint, item: EvalItem) -> ItemResult:
    kind = "choice" if item.is_choice else "generated" if item.is_generated else "reference"
    res = ItemResult(id=item.id, category=item.category, kind=kind, has_checks=bool(item.checks))
    scoring = ep.mode in (LogprobMode.ECHO, LogprobMode.GRAMMAR)
    if item.is_choice and scoring:
        got = [await ep.continuation(item.prompt, c) for c in item.choices]
        res.scores = choice_scores(item.choices, [g.logprobs for g in got], item.norm)
        res.chosen = pick_choice(res.scores)
        res.correct = res.chosen == item.answer_index
    elif item.is_generated:
        chat = await ep.chat(item.prompt, item.system, item.max_tokens)
        score = score_generated(item, chat.text)
        res.reply, res.correct, res.refusal = chat.text, score.correct, score.refusal
        res.failed_checks = list(score.failed_checks)
        res.ttft_s, res.e2e_s, res.completion_tokens = chat.ttft_s, chat.e2e_s, chat.completion_tokens
    if item.reference is not None and scoring:
        ref = await ep.continuation(item.prompt, item.reference)
        res.ref_nll = -float(sum(ref.logprobs))
        res.ref_tokens = len(ref.logprobs)
    return res


async def run_eval(
    items: Sequence[EvalItem],
    specs: Sequence[EndpointSpec],
    *,
    concurrency: int = 1,
    api_key: str | None = None,
    timeout_s: float = 120.0,
    progress: Callable[[str], None] = lambda _msg: None,
) -> list[EndpointResult]:
    """Run `items` against each endpoint; raise EndpointError (one line) if any endpoint fails."""
    limits = httpx.Limits(max_connections=max(4, concurrency * 2), max_keepalive_connections=max(4, concurrency * 2))
    async with httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=5.0), limits=limits) as client:
        endpoints = []
        for spec in specs:
            key = os.environ.get(spec.key_env) if spec.key_env else api_key
            if spec.key_env and not key:
                raise EndpointError(f"endpoint {spec.name}: environment variable {spec.key_env} is not set")
            ep = Endpoint(spec, client, key)
            await ep.connect()
            progress(
                f"{ep.name}: {spec.base_url} model={ep.model} logprobs={ep.mode.value}"
                + (f" ({ep.mode_note})" if ep.mode_note else "")
            )
            endpoints.append(ep)
        results = []
        for ep in endpoints:
            results.append(await _run_one(ep, items, concurrency, progress))
        return results


async def _run_one(
    ep: Endpoint, items: Sequence[EvalItem], concurrency: int, progress: Callable[[str], None]
) -> EndpointResult:
    sem = asyncio.Semaphore(concurrency)
    done = 0
    t0 = time.monotonic()
    last_report = t0

    async def one(item: EvalItem) -> ItemResult:
        nonlocal done, last_report
        async with sem:
            res = await _score_item(ep, item)
        done += 1
        now = time.monotonic()
        if now - last_report >= 10 or done == len(items):
            last_report = now
            progress(f"{ep.name}: {done}/{len(items)} items, {now - t0:.0f}s")
        return res

    tasks = [asyncio.create_task(one(it)) for it in items]
    try:
        out = await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    wall = time.monotonic() - t0
    memory, source = await ep.memory_bytes()
    return EndpointResult(
        name=ep.name,
        url=ep.spec.base_url,
        model=ep.model,
        logprobs=ep.mode.value,
        logprobs_note=ep.mode_note,
        items=list(out),
        memory_bytes=memory,
        memory_source=source,
        wall_s=wall,
    )


def load_results(path: Path, name: str | None, item_ids: Sequence[str]) -> EndpointResult:
    """One endpoint's per-item results from an earlier run's results.json (a baseline measured before).

    Raises ValueError (one line) when the file is not a results.json, lacks the endpoint, or was run on other items.
    """
    try:
        data = orjson.loads(path.read_bytes())
        endpoints = data["endpoints"]
    except FileNotFoundError:
        raise ValueError(f"{path}: no such file") from None
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise ValueError(f"{path}: not a results.json written by inferline eval") from None
    names = [e.get("name") for e in endpoints]
    chosen = next((e for e in endpoints if name is None or e.get("name") == name), None)
    if chosen is None:
        raise ValueError(f"{path}: no endpoint named {name!r} (has: {', '.join(map(str, names))})")
    try:
        items = [ItemResult(**it) for it in chosen["items"]]
        fields = {
            k: chosen[k]
            for k in ("name", "url", "model", "logprobs", "logprobs_note", "memory_bytes", "memory_source", "wall_s")
        }
    except (KeyError, TypeError) as exc:
        raise ValueError(f"{path}: endpoint {chosen.get('name')!r} is malformed ({exc})") from None
    missing = sorted(set(item_ids) - {it.id for it in items})
    if missing:
        raise ValueError(
            f"{path}: endpoint {chosen['name']!r} was not run on {len(missing)} item(s) of this set "
            f"(e.g. {', '.join(missing[:3])}); rerun the baseline on the same set"
        )
    wanted = set(item_ids)
    return EndpointResult(items=[it for it in items if it.id in wanted], **fields)
