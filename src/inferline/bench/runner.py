"""Drive load: open loop (arrivals at a rate) or closed loop (N users), bounded, with a hard deadline.

Each run: pull seeded requests from the workload, send them on one shared aiohttp session, record
timelines, stop issuing at --duration / --num-requests, give stragglers --grace, then cancel and
count what is left. Ctrl-C (the `stop` event) ends the run at once and keeps what was recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson

from inferline.bench.arrivals import arrival_times
from inferline.bench.config import BenchConfig, Endpoint
from inferline.bench.metrics import summarize
from inferline.bench.record import ErrorKind, RequestRecord
from inferline.bench.stream import StreamClient
from inferline.bench.workload import RequestSpec, TokenCounter, load_token_counter, request_body, requests

PROGRESS_INTERVAL_S = 0.25
PREBUILD_MAX_REQUESTS = 50_000  # bodies built before the clock starts, so building costs no send lag
PREBUILD_MAX_BYTES = 64 << 20


_Item = tuple[RequestRecord, bytes]


class BenchError(Exception):
    """A run could not start (server unreachable, no model, bad dataset): the message says why."""


@dataclass(slots=True)
class Progress:
    """Live counters of the current run; the runner updates them, a progress display reads them."""

    label: str
    run_index: int
    runs: int
    total_requests: int | None
    duration_s: float | None
    started: float = field(default_factory=time.perf_counter)
    issued: int = 0
    completed: int = 0
    failed: int = 0
    in_flight: int = 0
    phase: str = "running"  # running, draining, done

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started


ProgressFn = Callable[[Progress], None]


@dataclass(slots=True)
class RunResult:
    rate_rps: float | None
    concurrency: int | None
    burstiness: float
    records: list[RequestRecord]
    summary: dict[str, Any]
    deadline_hit: bool = False
    interrupted: bool = False

    @property
    def label(self) -> str:
        if self.rate_rps is None:
            return f"concurrency {self.concurrency}"
        rate = "inf" if math.isinf(self.rate_rps) else f"{self.rate_rps:g}"
        cap = f", max {self.concurrency} in flight" if self.concurrency else ""
        return f"rate {rate} req/s{cap}"

    def to_json(self, with_requests: bool) -> dict[str, Any]:
        rate: float | str | None = self.rate_rps
        if self.rate_rps is not None and math.isinf(self.rate_rps):
            rate = "inf"
        d: dict[str, Any] = {
            "label": self.label,
            "mode": "closed" if self.rate_rps is None else "open",
            "rate_rps": rate,
            "concurrency": self.concurrency,
            "burstiness": self.burstiness if self.rate_rps is not None else None,
            "deadline_hit": self.deadline_hit,
            "interrupted": self.interrupted,
            "summary": self.summary,
        }
        if with_requests:
            d["requests"] = [r.to_json() for r in self.records]
        return d


@dataclass(slots=True)
class BenchResult:
    config: BenchConfig
    model: str
    runs: list[RunResult]
    started_at: datetime
    finished_at: datetime
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": "inferline.bench/1",
            "started_at": self.started_at.isoformat(timespec="seconds"),
            "finished_at": self.finished_at.isoformat(timespec="seconds"),
            **self.meta,
            "model": self.model,
            "config": self.config.public_json(),
            "runs": [r.to_json(self.config.save_requests) for r in self.runs],
        }


@contextlib.asynccontextmanager
async def open_session(cfg: BenchConfig) -> AsyncIterator[aiohttp.ClientSession]:
    """One session for the whole benchmark: unlimited pool, keep-alive, no compression."""
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if cfg.api_key is not None:
        headers["Authorization"] = f"Bearer {cfg.api_key.get_secret_value()}"
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, ttl_dns_cache=300, keepalive_timeout=60)
    timeout = aiohttp.ClientTimeout(total=cfg.request_timeout_s, sock_connect=cfg.connect_timeout_s)
    async with aiohttp.ClientSession(
        connector=connector, timeout=timeout, headers=headers, auto_decompress=False, read_bufsize=1 << 16
    ) as session:
        yield session


async def discover_model(session: aiohttp.ClientSession, cfg: BenchConfig) -> str:
    """The first model id from GET /v1/models."""
    url = cfg.base_url + "/models"
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=cfg.connect_timeout_s)) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise BenchError(f"GET {url} answered {resp.status}: {raw[:200]!r}; pass --model")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise BenchError(f"cannot reach {url}: {exc!r}") from None
    try:
        return str(orjson.loads(raw)["data"][0]["id"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise BenchError(f"GET {url} listed no model; pass --model") from None


async def run_bench(
    cfg: BenchConfig, *, on_progress: ProgressFn | None = None, stop: asyncio.Event | None = None
) -> BenchResult:
    """Run every (rate or concurrency) of the config in turn; `stop.set()` ends the benchmark early."""
    from inferline.bench.report import machine_info

    started = datetime.now(UTC)
    try:
        counter = load_token_counter(cfg.tokenizer) if cfg.tokenizer else None
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    runs: list[RunResult] = []
    async with open_session(cfg) as session:
        model = cfg.model or await discover_model(session, cfg)
        if cfg.warmup_requests:
            await _warmup(cfg, session, model, counter)
        plan = cfg.runs()
        for i, (rate, conc) in enumerate(plan):
            if stop is not None and stop.is_set():
                break
            run = _Run(cfg, session, model, counter, rate, conc, stop, on_progress, (i, len(plan)))
            runs.append(await run.execute())
    return BenchResult(cfg, model, runs, started, datetime.now(UTC), machine_info())


async def _warmup(cfg: BenchConfig, session: aiohttp.ClientSession, model: str, counter: TokenCounter | None) -> None:
    """Unrecorded requests (from their own seed, so the measured prompts do not change)."""
    specs = requests(cfg.model_copy(update={"seed": cfg.seed + 7919}), counter)
    chat = cfg.endpoint is Endpoint.CHAT
    client = StreamClient(session, cfg.request_url, chat=chat, t0=time.perf_counter())
    width = min(cfg.warmup_requests, max(cfg.concurrency or (8,)))
    sem = asyncio.Semaphore(width)

    async def one(i: int) -> None:
        async with sem:
            spec = next(specs)
            await client.send(RequestRecord(index=i), request_body(spec, cfg, model))

    await asyncio.gather(*(one(i) for i in range(cfg.warmup_requests)))


class _Run:
    """One rate or one concurrency: the state shared by the driver and the request tasks."""

    def __init__(
        self,
        cfg: BenchConfig,
        session: aiohttp.ClientSession,
        model: str,
        counter: TokenCounter | None,
        rate: float | None,
        conc: int | None,
        stop: asyncio.Event | None,
        on_progress: ProgressFn | None,
        position: tuple[int, int],
    ) -> None:
        self.cfg, self.session, self.model, self.counter = cfg, session, model, counter
        self.rate, self.conc, self.stop, self.on_progress = rate, conc, stop, on_progress
        self.max_requests = cfg.effective_num_requests
        self.window_s = cfg.duration_s if cfg.duration_s is not None else math.inf
        self.records: list[RequestRecord] = []
        self.tasks: set[asyncio.Task[None]] = set()
        self.idle = asyncio.Event()
        self.driver_done = False
        label = RunResult(rate, conc, cfg.burstiness, [], {}).label
        self.progress = Progress(label, position[0], position[1], self.max_requests, cfg.duration_s)
        self.t0 = 0.0
        self.client = StreamClient(session, cfg.request_url, chat=cfg.endpoint is Endpoint.CHAT, t0=0.0)

    def _feed(self) -> Iterator[_Item]:
        """(record, body) pairs; the first ones built before the clock starts."""
        specs = requests(self.cfg, self.counter)
        expected = self.max_requests
        if expected is None and self.rate is not None and not math.isinf(self.rate):
            expected = int(self.rate * self.window_s * 1.2) + 16
        ready: list[_Item] = []
        size = 0
        while expected is not None and len(ready) < min(expected, PREBUILD_MAX_REQUESTS):
            item = self._build(next(specs), len(ready))
            size += len(item[1])
            ready.append(item)
            if size > PREBUILD_MAX_BYTES:
                break
        lazy = (self._build(spec, len(ready) + i) for i, spec in enumerate(specs))
        return itertools.chain(ready, lazy)

    def _build(self, spec: RequestSpec, index: int) -> _Item:
        rec = RequestRecord(index, spec.cls, prompt_tokens=spec.prompt_tokens, max_tokens=spec.max_tokens)
        return rec, request_body(spec, self.cfg, self.model)

    async def execute(self) -> RunResult:
        try:
            feed = self._feed()
            first = next(feed)
        except ValueError as exc:  # e.g. nothing in the dataset passes the filter
            raise BenchError(str(exc)) from None
        feed = itertools.chain([first], feed)
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        self.t0 = self.progress.started = time.perf_counter()
        self.client.t0 = self.t0
        ticker = loop.create_task(self._tick()) if self.on_progress else None
        if self.rate is not None:
            driver = loop.create_task(self._open_loop(feed))
        else:
            users = [self._closed_user(feed) for _ in range(self.conc or 1)]
            driver = loop.create_task(self._gather(users))
        deadline = self.t0 + self.window_s + self.cfg.grace_s if self.cfg.duration_s is not None else None
        interrupted = not await self._wait(driver, deadline)
        if not interrupted and self.rate is not None:
            self.progress.phase = "draining"
            self._mark_driver_done()
            idle = loop.create_task(self.idle.wait())
            interrupted = not await self._wait(idle, deadline)
            idle.cancel()
        leftovers = [t for t in (driver, *self.tasks) if not t.done()]
        for t in leftovers:
            t.cancel()
        await asyncio.gather(*leftovers, return_exceptions=True)
        cpu = time.process_time() - cpu0
        wall = time.perf_counter() - self.t0
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        self.progress.phase = "done"
        if self.on_progress:
            self.on_progress(self.progress)
        summary = summarize(self.records, slo=self.cfg.slo)
        summary["generator_cpu_ratio"] = round(cpu / wall, 4) if wall > 0 else None
        cancelled = summary["cancelled"] > 0
        return RunResult(
            self.rate,
            self.conc,
            self.cfg.burstiness,
            self.records,
            summary,
            deadline_hit=cancelled and not (self.stop is not None and self.stop.is_set()),
            interrupted=self.stop is not None and self.stop.is_set(),
        )

    async def _wait(self, task: asyncio.Task[Any], deadline: float | None) -> bool:
        """Wait for `task` until the deadline or the stop event; False when stopped or out of time."""
        timeout = None if deadline is None else max(0.0, deadline - time.perf_counter())
        waiters: set[asyncio.Task[Any]] = {task}
        stop_task = None
        if self.stop is not None:
            stop_task = asyncio.get_running_loop().create_task(self.stop.wait())
            waiters.add(stop_task)
        try:
            done, _ = await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if stop_task is not None:
                stop_task.cancel()
        return task in done

    async def _tick(self) -> None:
        assert self.on_progress is not None
        while True:
            self.on_progress(self.progress)
            await asyncio.sleep(PROGRESS_INTERVAL_S)

    async def _gather(self, coros: list[Any]) -> None:
        await asyncio.gather(*coros)

    def _mark_driver_done(self) -> None:
        self.driver_done = True
        if self.progress.in_flight == 0:
            self.idle.set()

    def _take(self, feed: Iterator[_Item], scheduled_s: float) -> _Item:
        rec, body = next(feed)
        rec.scheduled_s = scheduled_s
        self.records.append(rec)
        self.progress.issued += 1
        return rec, body

    async def _send(self, rec: RequestRecord, body: bytes, sem: asyncio.Semaphore | None) -> None:
        p = self.progress
        p.in_flight += 1
        try:
            if sem is None:
                await self.client.send(rec, body)
            else:
                async with sem:
                    await self.client.send(rec, body)
        except asyncio.CancelledError:
            if rec.error is None:  # cancelled while waiting for a slot: never sent
                rec.fail(ErrorKind.CANCELLED, time.perf_counter() - self.t0)
            raise
        finally:
            p.in_flight -= 1
            if rec.error is None:
                p.completed += 1
            else:
                p.failed += 1
            if self.driver_done and p.in_flight == 0:
                self.idle.set()

    async def _open_loop(self, feed: Iterator[_Item]) -> None:
        assert self.rate is not None
        loop = asyncio.get_running_loop()
        sem = asyncio.Semaphore(self.conc) if self.conc else None
        n_max = self.max_requests if self.max_requests is not None else math.inf
        clock, t0, window = time.perf_counter, self.t0, self.window_s
        for i, due in enumerate(arrival_times(self.rate, self.cfg.burstiness, self.cfg.seed)):
            if i >= n_max or due >= window:
                return
            delay = t0 + due - clock()
            if delay > 0:
                await asyncio.sleep(delay)
            elif i % 256 == 255:
                await asyncio.sleep(0)  # behind schedule (or rate inf): let the sends start
            rec, body = self._take(feed, due)
            task = loop.create_task(self._send(rec, body, sem))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _closed_user(self, feed: Iterator[_Item]) -> None:
        clock, t0 = time.perf_counter, self.t0
        n_max = self.max_requests if self.max_requests is not None else math.inf
        while len(self.records) < n_max:
            now = clock() - t0
            if now >= self.window_s:
                return
            rec, body = self._take(feed, now)
            await self._send(rec, body, None)
