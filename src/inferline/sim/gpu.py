"""A simulated engine's GPU as NVIDIA's DCGM exporter shows it: utilization from the step loop, framebuffer use.

`DCGM_FI_DEV_GPU_UTIL` is, for a real GPU, the percent of the last sample period during which at
least one kernel was running. The simulated equivalent: the percent of the last `SAMPLE_PERIOD_S`
seconds of wall time during which the engine's step loop was inside a step (a step is one forward
pass over the batch, so a real GPU would be running kernels for all of it). An idle or stalled engine
reads 0; an engine that always has work reads 100 (as a real GPU that is "100% utilized" can still
have room in its batch: utilization says busy, not full). `DCGM_FI_PROF_GR_ENGINE_ACTIVE` is the same
fraction as a ratio (0-1), which on real hardware is the finer-grained, MIG-aware twin.

Framebuffer: vLLM reserves `gpu_memory_utilization` of the card at start-up (weights, activations,
then the whole KV-cache pool), so `DCGM_FI_DEV_FB_USED` is flat while it serves, whatever the KV use:
KV-cache pressure is read from `vllm:kv_cache_usage_perc`, never from framebuffer memory.

Labels are the exporter's: `gpu` (index), `UUID`, `device` (nvidiaN), `modelName`, `Hostname`. The UUID
is derived from the engine's address, so it is stable across restarts of the same simulated engine.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections import deque
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Gauge
from prometheus_client.exposition import generate_latest

__all__ = ["GPU_UTIL_SAMPLE_PERIOD_S", "H100_80GB", "BusyMeter", "DcgmMetrics", "GpuSpec", "gpu_uuid"]

# NVML averages utilization over 1/6 s to 1 s depending on the product; dcgm-exporter reports the last value.
GPU_UTIL_SAMPLE_PERIOD_S = 1.0


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """The card a simulated engine pretends to run on, and how much of its memory the engine reserves."""

    model_name: str
    fb_total_mib: int
    gpu_memory_utilization: float = 0.9  # vLLM's --gpu-memory-utilization

    @property
    def fb_used_mib(self) -> int:
        return round(self.fb_total_mib * self.gpu_memory_utilization)


# nvidia-smi reports 81559 MiB for an H100 80GB HBM3 (SXM5).
H100_80GB = GpuSpec(model_name="NVIDIA H100 80GB HBM3", fb_total_mib=81559)


def gpu_uuid(address: str) -> str:
    """A stable GPU-xxxxxxxx-... UUID in NVIDIA's format for the simulated card at ADDRESS (host:port/name)."""
    return f"GPU-{uuid.uuid5(uuid.NAMESPACE_URL, 'inferline-sim-gpu:' + address)}"


class BusyMeter:
    """Wall-clock intervals during which the step loop was inside a step; utilization over a trailing window.

    `begin()` when a step starts, `end()` when it completes. Back-to-back steps merge into one interval;
    intervals older than the window are dropped, so memory stays O(steps per window) at worst.
    """

    __slots__ = ("_intervals", "_since", "window_s")

    def __init__(self, window_s: float = GPU_UTIL_SAMPLE_PERIOD_S) -> None:
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0; got {window_s}")
        self.window_s = window_s
        self._intervals: deque[tuple[float, float]] = deque()
        self._since: float | None = None

    def begin(self, now: float) -> None:
        if self._since is None:
            self._since = now

    def end(self, now: float) -> None:
        start, self._since = self._since, None
        if start is None:
            return
        iv = self._intervals
        if iv and start <= iv[-1][1]:
            start = iv.pop()[0]
        iv.append((start, now))
        cutoff = now - self.window_s
        while iv and iv[0][1] <= cutoff:
            iv.popleft()

    def utilization(self, now: float | None = None) -> float:
        """Fraction (0-1) of the last `window_s` seconds spent inside steps, counting a step still running."""
        if now is None:
            now = time.monotonic()
        lo = now - self.window_s
        busy = 0.0
        for start, stop in self._intervals:
            if stop > lo:
                busy += min(stop, now) - max(start, lo)
        if self._since is not None:
            busy += now - max(self._since, lo)
        return min(1.0, max(0.0, busy / self.window_s))


class DcgmMetrics:
    """The DCGM-exporter series of one simulated GPU, in their own registry (served at /dcgm/metrics)."""

    def __init__(self, spec: GpuSpec, *, index: int, address: str, hostname: str | None = None) -> None:
        self.spec = spec
        self.registry = CollectorRegistry(auto_describe=False)
        names = ["gpu", "UUID", "device", "modelName", "Hostname"]
        values = (str(index), gpu_uuid(address), f"nvidia{index}", spec.model_name, hostname or socket.gethostname())
        reg = self.registry
        self.util = Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", names, registry=reg).labels(*values)
        self.fb_used = Gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", names, registry=reg).labels(
            *values
        )
        self.fb_free = Gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", names, registry=reg).labels(
            *values
        )
        self.gr_active = Gauge(
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.", names, registry=reg
        ).labels(*values)

    def render(self, busy_ratio: float, engine_alive: bool) -> bytes:
        """The text exposition now. A dead engine's process released the card: nothing used, nothing busy."""
        used = self.spec.fb_used_mib if engine_alive else 0
        self.util.set(round(100 * busy_ratio))  # DCGM reports whole percents
        self.gr_active.set(round(busy_ratio, 4))
        self.fb_used.set(used)
        self.fb_free.set(self.spec.fb_total_mib - used)
        return generate_latest(self.registry)
