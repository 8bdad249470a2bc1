"""A simulated vLLM-compatible engine server, for testing routing, admission and autoscaling at scale.

It is always a simulator: no model runs, output text is filler and token counts are estimates.
Timing, queueing, KV-cache use and metrics follow a model of a real engine (see docs/sim.md).

    from inferline.sim import SimFleet

    async with SimFleet(profile="cpu-smollm2", count=3, time_scale=0.1) as fleet:
        fleet.urls   # OpenAI API under each URL's /v1
"""

from inferline.sim.engine import OutputLen, SimEngine
from inferline.sim.fleet import SimFleet, run_fleet
from inferline.sim.profiles import CPU_SMOLLM2, H100_LLAMA8B, INSTANT, PROFILES, Profile, get_profile
from inferline.sim.scheduler import Scheduler, SchedulingPolicy, SimRequest
from inferline.sim.server import SimServer

__all__ = [
    "CPU_SMOLLM2",
    "H100_LLAMA8B",
    "INSTANT",
    "PROFILES",
    "OutputLen",
    "Profile",
    "Scheduler",
    "SchedulingPolicy",
    "SimEngine",
    "SimFleet",
    "SimRequest",
    "SimServer",
    "get_profile",
    "run_fleet",
]
