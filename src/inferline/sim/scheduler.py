"""The engine model without a clock: waiting queue, running batch, paged KV, chunked prefill, preemption.

Modelled on vLLM V1's scheduler (vllm/v1/core/sched/scheduler.py). Every request carries
`num_computed` (tokens whose KV is in the cache) and `num_tokens` (prompt + output so far). A step
gives each running request `num_tokens - num_computed` new tokens (1 when decoding, a prompt chunk
when prefilling) out of a shared budget of `max_num_batched_tokens`; a request whose KV then
covers all its tokens samples one output token. When the KV cache has no free block for a running
request, the newest running request (fcfs) or the least urgent one (priority) is preempted:
its blocks are freed and it goes back to the front of the waiting queue to recompute from scratch.
Waiting requests are admitted only in steps without preemption, while a slot, budget and blocks remain.

This module is synchronous and owns all the state; `engine.py` drives it in time.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from typing import Protocol

from inferline.sim.prefix_cache import PrefixCache
from inferline.sim.profiles import Profile

__all__ = [
    "FCFSQueue",
    "KvOccupancy",
    "PriorityQueue",
    "RequestQueue",
    "RequestState",
    "Scheduler",
    "SchedulingPolicy",
    "SimRequest",
    "Step",
    "TokenSink",
    "run_virtual",
]


class SchedulingPolicy(StrEnum):
    FCFS = "fcfs"
    PRIORITY = "priority"


class RequestState(Enum):
    WAITING = 1
    RUNNING = 2
    FINISHED = 3
    ABORTED = 4


class TokenSink(Protocol):
    """Receives a request's tokens. Called once per new token, after the scheduler's state is settled."""

    def on_token(self, req: SimRequest) -> None: ...


@dataclass(slots=True, eq=False)
class SimRequest:
    """One request inside a simulated engine. `output_len` is how many tokens it will produce."""

    request_id: str
    prompt_tokens: int
    max_tokens: int
    output_len: int
    priority: int = 0
    arrival_s: float = 0.0
    sink: TokenSink | None = None
    seq: int = 0  # arrival order inside the engine, set by Scheduler.add; ties are broken by it
    state: RequestState = RequestState.WAITING
    num_computed: int = 0
    num_output: int = 0
    num_blocks: int = 0
    num_preemptions: int = 0
    scheduled_s: float = -1.0  # loop-clock times; -1 until it happens
    first_token_s: float = -1.0
    finish_s: float = -1.0
    finish_reason: str = ""  # "length" | "stop" | "abort" once finished
    block_hashes: tuple[int, ...] = ()  # chained hashes of the prompt's full blocks (prefix caching)
    cached: list[int] = field(default_factory=list)  # hashed blocks it holds (shared through the cache)
    num_cached_tokens: int = 0  # prompt tokens found in the prefix cache at its (latest) admission
    in_step: int = 0  # tokens being computed in the step now running (their blocks are already allocated)

    @property
    def num_tokens(self) -> int:
        return self.prompt_tokens + self.num_output


class RequestQueue(Protocol):
    """The waiting room. `push_front` is for preempted requests, which resume before newer arrivals."""

    def push(self, req: SimRequest) -> None: ...
    def push_front(self, req: SimRequest) -> None: ...
    def peek(self) -> SimRequest | None: ...
    def pop(self) -> SimRequest: ...
    def discard(self, req: SimRequest) -> None: ...
    def __len__(self) -> int: ...


class FCFSQueue:
    """Arrival order. Removal is lazy: a request that left the WAITING state is skipped when reached."""

    __slots__ = ("_items", "_len")

    def __init__(self) -> None:
        self._items: deque[SimRequest] = deque()
        self._len = 0

    def push(self, req: SimRequest) -> None:
        self._items.append(req)
        self._len += 1

    def push_front(self, req: SimRequest) -> None:
        self._items.appendleft(req)
        self._len += 1

    def peek(self) -> SimRequest | None:
        items = self._items
        while items and items[0].state is not RequestState.WAITING:
            items.popleft()
        return items[0] if items else None

    def pop(self) -> SimRequest:
        req = self.peek()
        assert req is not None
        self._items.popleft()
        self._len -= 1
        return req

    def discard(self, req: SimRequest) -> None:
        self._len -= 1  # the entry itself goes when peek reaches it (the caller changed req.state)

    def __len__(self) -> int:
        return self._len


class PriorityQueue:
    """Lowest `priority` first, ties by arrival (vLLM's PriorityRequestQueue); lazy removal as above."""

    __slots__ = ("_heap", "_len")

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, SimRequest]] = []
        self._len = 0

    def push(self, req: SimRequest) -> None:
        heapq.heappush(self._heap, (req.priority, req.seq, req))
        self._len += 1

    push_front = push  # a preempted request keeps its (priority, arrival) rank

    def peek(self) -> SimRequest | None:
        heap = self._heap
        while heap and heap[0][2].state is not RequestState.WAITING:
            heapq.heappop(heap)
        return heap[0][2] if heap else None

    def pop(self) -> SimRequest:
        req = self.peek()
        assert req is not None
        heapq.heappop(self._heap)
        self._len -= 1
        return req

    def discard(self, req: SimRequest) -> None:
        self._len -= 1

    def __len__(self) -> int:
        return self._len


def create_request_queue(policy: SchedulingPolicy) -> RequestQueue:
    return PriorityQueue() if policy is SchedulingPolicy.PRIORITY else FCFSQueue()


@dataclass(slots=True)
class Step:
    """What one step computes: (request, new tokens) pairs and the model time it costs."""

    work: list[tuple[SimRequest, int]] = field(default_factory=list)
    decode_seqs: int = 0
    prefill_tokens: int = 0
    kv_tokens: int = 0
    duration_s: float = 0.0
    preempted: int = 0
    cache_queries: int = 0  # prefix cache: prompt tokens looked up by requests admitted in this step
    cache_hits: int = 0  # ... and how many of them were found


@dataclass(frozen=True, slots=True)
class KvOccupancy:
    """What the paged KV cache holds right now, in tokens: the simulator's ground truth for fragmentation.

    `allocated_tokens` = blocks in use (those `vllm:kv_cache_usage_perc` counts) x block size.
    `live_tokens` = tokens whose KV is written or being written by the running step, each stored once
    (a prefix block shared by several requests counts once). The difference is allocated-but-empty
    space: the unfilled tail of each sequence's last block.
    """

    capacity_tokens: int
    allocated_tokens: int
    live_tokens: int

    @property
    def wasted_tokens(self) -> int:
        return self.allocated_tokens - self.live_tokens

    @property
    def fragmentation_ratio(self) -> float:
        """Wasted KV over the cache's capacity (docs/observability.md): 0 when idle, never above usage."""
        return self.wasted_tokens / self.capacity_tokens if self.capacity_tokens else 0.0


class Scheduler:
    """The engine's state: one owner, no awaits. `schedule()` plans a step, `complete()` applies it."""

    def __init__(
        self, profile: Profile, policy: SchedulingPolicy = SchedulingPolicy.FCFS, *, prefix_caching: bool = False
    ) -> None:
        self.profile = profile
        self.policy = policy
        # vLLM's automatic prefix caching (see prefix_cache.py); requests need `block_hashes` to use it.
        self.prefix_cache: PrefixCache | None = PrefixCache() if prefix_caching else None
        self.block_size = profile.block_size
        self.total_blocks = profile.kv_blocks
        self.free_blocks = profile.kv_blocks
        # A request larger than the whole cache could never run; vLLM refuses to start in that case.
        self.max_model_len = min(profile.max_model_len, profile.kv_tokens)
        self.waiting: RequestQueue = create_request_queue(policy)
        self.running: list[SimRequest] = []
        self.num_preemptions = 0
        self.trace: list[str] | None = None  # set to [] to record admit/preempt/finish events in order
        self._seq = 0

    # -- state changes from outside (arrival, client gone) -----------------------------------------------

    def add(self, req: SimRequest) -> None:
        self._seq += 1
        req.seq = self._seq
        req.state = RequestState.WAITING
        self.waiting.push(req)

    def abort(self, req: SimRequest) -> bool:
        """Drop REQ at once, freeing its slot and blocks. False if it had already finished."""
        if req.state is RequestState.RUNNING:
            self.running.remove(req)
            self._free(req)
        elif req.state is RequestState.WAITING:
            self.waiting.discard(req)
        else:
            return False
        req.state = RequestState.ABORTED
        req.finish_reason = "abort"
        if self.trace is not None:
            self.trace.append(f"abort {req.seq}")
        return True

    @property
    def has_work(self) -> bool:
        return bool(self.running) or len(self.waiting) > 0

    @property
    def kv_usage_ratio(self) -> float:
        return 1.0 - self.free_blocks / self.total_blocks if self.total_blocks else 0.0

    def kv_occupancy(self) -> KvOccupancy:
        """The cache's true occupancy now (O(running requests)); see KvOccupancy."""
        bs = self.block_size
        used_blocks = self.total_blocks - self.free_blocks
        cache = self.prefix_cache
        shared_blocks = cache.in_use if cache is not None else 0
        live = shared_blocks * bs  # a shared (hashed) block is full by construction: only full blocks are hashed
        for req in self.running:
            own = min(req.num_tokens, req.num_computed + req.in_step) - len(req.cached) * bs
            if own > 0:
                live += own
        return KvOccupancy(self.total_blocks * bs, used_blocks * bs, live)

    # -- one step ------------------------------------------------------------------------------------------

    def schedule(self, now_s: float) -> Step:
        step = Step()
        budget = self.profile.max_num_batched_tokens
        planned: dict[SimRequest, int] = {}
        block_size = self.block_size
        running = RequestState.RUNNING
        for req in list(self.running):
            if budget <= 0:
                break
            if req.state is not running:  # preempted earlier in this loop
                continue
            n_new = req.prompt_tokens + req.num_output - req.num_computed
            if n_new > budget:
                n_new = budget
            if req.num_computed + n_new <= (req.num_blocks + len(req.cached)) * block_size:  # the common case: fits
                planned[req] = n_new
                budget -= n_new
                continue
            while not self._grow(req, req.num_computed + n_new):
                victim = self._victim()
                if victim in planned:
                    budget += planned.pop(victim)
                self._preempt(victim)
                step.preempted += 1
                if victim is req:
                    break
            if req.state is running:
                planned[req] = n_new
                budget -= n_new
        if not step.preempted:
            budget = self._admit(now_s, budget, planned, step)
        work = step.work = list(planned.items())
        kv_tokens = decode_seqs = prefill_tokens = 0
        for req, n_new in work:
            req.in_step = n_new
            kv_tokens += req.num_computed
            if n_new == 1 and req.num_computed >= req.prompt_tokens:
                decode_seqs += 1
            else:
                prefill_tokens += n_new
        step.kv_tokens, step.decode_seqs, step.prefill_tokens = kv_tokens, decode_seqs, prefill_tokens
        step.duration_s = self.profile.step_s(decode_seqs, kv_tokens, prefill_tokens)
        return step

    def complete(self, step: Step, now_s: float) -> list[SimRequest]:
        """Apply STEP: advance KV, sample tokens, finish requests. Returns the requests that got a token."""
        emitted: list[SimRequest] = []
        finished = False
        running = RequestState.RUNNING
        cache = self.prefix_cache
        for req, n_new in step.work:
            if req.state is not running:  # aborted while the step ran
                continue
            req.in_step = 0
            req.num_computed += n_new
            if cache is not None and len(req.cached) < len(req.block_hashes):
                self._cache_blocks(req, cache)
            if req.num_computed < req.prompt_tokens + req.num_output:
                continue  # a prompt chunk, no token yet
            req.num_output += 1
            if req.first_token_s < 0:
                req.first_token_s = now_s
            if req.num_output >= req.output_len:
                req.finish_reason = "length" if req.num_output >= req.max_tokens else "stop"
                req.state = RequestState.FINISHED
                req.finish_s = now_s
                self._free(req)
                finished = True
                if self.trace is not None:
                    self.trace.append(f"finish {req.seq} {req.finish_reason} {req.num_output}")
            emitted.append(req)
        if finished:
            self.running = [r for r in self.running if r.state is RequestState.RUNNING]
        return emitted

    # -- internals -------------------------------------------------------------------------------------------

    def _admit(self, now_s: float, budget: int, planned: dict[SimRequest, int], step: Step) -> int:
        max_seqs = self.profile.max_num_seqs
        cache = self.prefix_cache
        while budget > 0 and len(self.running) < max_seqs:
            req = self.waiting.peek()
            if req is None:
                break
            if cache is not None and req.num_computed == 0:
                if not self._admit_cached(req, cache, budget, step):
                    break  # head-of-line: wait for blocks rather than skip ahead
                n_new = min(req.num_tokens - req.num_computed, budget)
            else:
                n_new = min(req.num_tokens - req.num_computed, budget)
                if not self._grow(req, req.num_computed + n_new):
                    break  # head-of-line: wait for blocks rather than skip ahead
            self.waiting.pop()
            req.state = RequestState.RUNNING
            if req.scheduled_s < 0:
                req.scheduled_s = now_s
            self.running.append(req)
            planned[req] = n_new
            budget -= n_new
            if self.trace is not None:
                self.trace.append(f"admit {req.seq}")
        return budget

    def _admit_cached(self, req: SimRequest, cache: PrefixCache, budget: int, step: Step) -> bool:
        """Look REQ's prompt up in the prefix cache and give it blocks: the cached ones are shared, the
        rest of the first chunk is allocated. False (and no change) if the KV cache is short."""
        bs = self.block_size
        # At most num_tokens - 1 tokens hit: the last one is computed to sample the next token.
        hit = cache.match(req.block_hashes, (req.num_tokens - 1) // bs)
        hashes = req.block_hashes[:hit]
        n_new = min(req.num_tokens - hit * bs, budget)
        own = -(-(hit * bs + n_new) // bs) - hit
        if own + cache.free_among(hashes) > self.free_blocks:  # free cached blocks come back into use
            return False
        self.free_blocks -= cache.acquire(hashes)
        req.cached = list(hashes)
        req.num_computed = req.num_cached_tokens = hit * bs
        grown = self._grow(req, req.num_computed + n_new)
        assert grown
        cache.record(req.num_tokens, req.num_computed)
        step.cache_queries += req.num_tokens
        step.cache_hits += req.num_computed
        return True

    def _cache_blocks(self, req: SimRequest, cache: PrefixCache) -> None:
        """REQ's newly computed full prompt blocks get their hashes: other requests can now share them."""
        full = min(req.num_computed // self.block_size, len(req.block_hashes))
        for i in range(len(req.cached), full):
            h = req.block_hashes[i]
            req.num_blocks -= 1  # the block leaves the request's own blocks for the shared cache
            self.free_blocks += cache.add(h)
            req.cached.append(h)

    def _grow(self, req: SimRequest, tokens: int) -> bool:
        """Give REQ enough blocks to hold TOKENS; False (and no change) if the cache is short."""
        need = -(-tokens // self.block_size) - req.num_blocks - len(req.cached)
        if need <= 0:
            return True
        if need > self.free_blocks:
            return False
        self.free_blocks -= need
        req.num_blocks += need
        if self.prefix_cache is not None:
            self.prefix_cache.evict_to(self.free_blocks)
        return True

    def _free(self, req: SimRequest) -> None:
        self.free_blocks += req.num_blocks
        req.num_blocks = 0
        req.in_step = 0
        if req.cached:
            assert self.prefix_cache is not None
            self.free_blocks += self.prefix_cache.release(req.cached)
            req.cached = []

    def _victim(self) -> SimRequest:
        if self.policy is SchedulingPolicy.PRIORITY:
            return max(self.running, key=lambda r: (r.priority, r.seq))
        return self.running[-1]

    def _preempt(self, req: SimRequest) -> None:
        self.running.remove(req)
        self._free(req)
        req.num_computed = 0  # recompute: prompt and output so far are prefilled again
        req.num_preemptions += 1
        req.state = RequestState.WAITING
        self.waiting.push_front(req)
        self.num_preemptions += 1
        if self.trace is not None:
            self.trace.append(f"preempt {req.seq}")


def run_virtual(scheduler: Scheduler, arrivals: list[tuple[float, SimRequest]]) -> float:
    """Run SCHEDULER in model time (no sleeping) until every request in ARRIVALS (arrival_s, request) is done.

    Requests get arrival/first-token/finish times on the virtual clock; returns the time the last one ended.
    What the real-time engine should do, computed exactly: tests compare measurements against it.
    """
    pending = sorted(arrivals, key=lambda a: a[0])
    now, i = 0.0, 0
    while i < len(pending) or scheduler.has_work:
        if not scheduler.has_work:
            now = max(now, pending[i][0])
        while i < len(pending) and pending[i][0] <= now:
            pending[i][1].arrival_s = pending[i][0]
            scheduler.add(pending[i][1])
            i += 1
        step = scheduler.schedule(now)
        if not step.work:
            raise RuntimeError("scheduler cannot make progress (profile too small for a request?)")
        now += step.duration_s
        scheduler.complete(step, now)
    return now
