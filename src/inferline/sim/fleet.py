"""A fleet of simulated engines on one event loop, each on its own port: the Python API and the CLI runner."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Iterator
from types import TracebackType
from typing import TextIO

from inferline.sim.engine import OutputLen, SimEngine
from inferline.sim.profiles import Profile, get_profile
from inferline.sim.scheduler import SchedulingPolicy
from inferline.sim.server import SimServer

__all__ = ["SimFleet", "run_fleet"]


class SimFleet:
    """COUNT simulated engines serving MODEL, started on the running loop.

        async with SimFleet(profile="instant", count=2) as fleet:
            fleet.urls            # ["http://127.0.0.1:41233", ...]; the OpenAI API is under /v1
            fleet[0].stall()      # faults per engine: see SimServer
            fleet[1].engine.num_running

    PORT 0 gives every engine a free port; PORT P gives P, P+1, ... Engine i draws output lengths
    from its own generator seeded by (SEED, i), so a fleet replays the same way for the same arrivals.
    PREFIX_CACHING gives each engine vLLM's automatic prefix caching in its own KV cache (prefix_cache.py).
    """

    def __init__(
        self,
        profile: str | Profile = "instant",
        count: int = 1,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        model: str = "smollm2",
        max_num_seqs: int | None = None,
        kv_blocks: int | None = None,
        max_model_len: int | None = None,
        policy: SchedulingPolicy | str = SchedulingPolicy.FCFS,
        seed: int = 0,
        time_scale: float = 1.0,
        output_len: OutputLen | str = "max",
        prefix_caching: bool = False,
    ) -> None:
        if count < 1:
            raise ValueError(f"count must be >= 1; got {count}")
        base = get_profile(profile) if isinstance(profile, str) else profile
        self.profile = base.with_overrides(max_num_seqs=max_num_seqs, kv_blocks=kv_blocks, max_model_len=max_model_len)
        lengths = OutputLen.parse(output_len) if isinstance(output_len, str) else output_len
        self.engines = [
            SimServer(
                SimEngine(
                    self.profile,
                    model=model,
                    seed=seed * 1_000_003 + i,
                    time_scale=time_scale,
                    policy=SchedulingPolicy(policy),
                    output_len=lengths,
                    prefix_caching=prefix_caching,
                ),
                host=host,
                port=port + i if port else 0,
                name=str(i),
            )
            for i in range(count)
        ]

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.engines]

    def __getitem__(self, index: int) -> SimServer:
        return self.engines[index]

    def __iter__(self) -> Iterator[SimServer]:
        return iter(self.engines)

    def __len__(self) -> int:
        return len(self.engines)

    async def start(self) -> None:
        try:
            for e in self.engines:
                await e.start()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        for e in self.engines:
            await e.close()

    async def __aenter__(self) -> SimFleet:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


async def run_fleet(fleet: SimFleet, *, duration_s: float = 0.0, out: TextIO = sys.stdout) -> None:
    """Serve FLEET until SIGINT/SIGTERM (or for DURATION_S seconds if > 0), printing one line per engine."""
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, done.set)
    await fleet.start()
    try:
        p = fleet.profile
        for e in fleet:
            gpu = f"GPU {p.gpu.model_name} at {e.url}/dcgm/metrics" if p.gpu else "CPU engine: no GPU series"
            print(
                f"sim engine {e.name}: {e.url}/v1  SIMULATED ({p.name}, model {e.engine.model}, "
                f"max_num_seqs {p.max_num_seqs}, kv {p.kv_tokens} tokens, {e.engine.policy.value}, "
                f"prefix caching {'on' if e.engine.prefix_caching else 'off'}, "
                f"time_scale {e.engine.time_scale:g}, "
                f"{gpu})",
                file=out,
                flush=True,
            )
        if duration_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), duration_s)
        else:
            await done.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await fleet.close()
        print(f"sim: stopped {len(fleet)} engine(s)", file=out, flush=True)
