"""Small, fast simulations shared by the autoscale tests."""

from __future__ import annotations

from inferline.autoscale.configs import AutoscalerConfig, from_values
from inferline.autoscale.des import SimRun, SimSettings, Simulation
from inferline.autoscale.lifecycle import Dist, PodTimings
from inferline.autoscale.traffic import TrafficShape, synthesize
from inferline.sim.profiles import H100_LLAMA8B

FIXED_TIMINGS = PodTimings(Dist("fixed", 2.0), Dist("fixed", 30.0), Dist("fixed", 60.0), 5.0, 2.0, 30.0)


def simulate(
    traffic: str,
    duration: float,
    values: dict[str, object] | AutoscalerConfig,
    *,
    prompt: int = 512,
    output: int = 128,
    timings: PodTimings = FIXED_TIMINGS,
    **settings: object,
) -> SimRun:
    """TRAFFIC on h100-llama8b engines scaled by Helm-style VALUES (or a config)."""
    tr = synthesize(TrafficShape.parse(traffic), duration, Dist("fixed", prompt), Dist("fixed", output), seed=3)
    cfg = values if isinstance(values, AutoscalerConfig) else from_values(values, "test")
    s = SimSettings(H100_LLAMA8B, timings=timings, **settings)  # type: ignore[arg-type]
    return Simulation(tr, cfg, s).run()
