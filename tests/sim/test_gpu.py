"""The simulated GPU: busy-time utilization, and the DCGM-exporter series at /dcgm/metrics."""

from __future__ import annotations

import asyncio
import re

import aiohttp
import pytest

from inferline.sim import SimFleet
from inferline.sim.gpu import H100_80GB, BusyMeter, gpu_uuid

from .conftest import metric, scrape

_SAMPLE = re.compile(r"^(DCGM_FI_\w+)\{(.*)\} (\S+)$", re.M)


def test_busy_meter_counts_time_inside_steps_over_the_trailing_window() -> None:
    m = BusyMeter(window_s=1.0)
    assert m.utilization(now=10.0) == 0.0
    m.begin(10.0)
    m.end(10.25)
    m.begin(10.25)  # back to back: one interval
    m.end(10.5)
    assert m.utilization(now=10.5) == pytest.approx(0.5)
    assert m.utilization(now=11.25) == pytest.approx(0.25)  # window [10.25, 11.25]
    assert m.utilization(now=12.0) == 0.0
    m.begin(12.0)  # a step still running counts up to now
    assert m.utilization(now=12.4) == pytest.approx(0.4)
    m.end(13.5)
    assert m.utilization(now=13.5) == pytest.approx(1.0)


def test_busy_meter_forgets_old_intervals() -> None:
    m = BusyMeter(window_s=1.0)
    for i in range(1000):
        m.begin(i * 0.1)
        m.end(i * 0.1 + 0.05)
    assert len(m._intervals) <= 11
    assert m.utilization(now=999 * 0.1 + 0.05) == pytest.approx(0.5, abs=0.06)


def test_gpu_uuid_is_stable_and_in_nvidia_format() -> None:
    u = gpu_uuid("127.0.0.1:8100")
    assert u == gpu_uuid("127.0.0.1:8100") != gpu_uuid("127.0.0.1:8101")
    assert re.fullmatch(r"GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", u)


async def test_dcgm_series_have_the_exporters_names_and_labels(http: aiohttp.ClientSession) -> None:
    async with SimFleet("h100-llama8b", count=2) as fleet:
        texts = [await _dcgm(http, url) for url in fleet.urls]
    for i, text in enumerate(texts):
        samples = _SAMPLE.findall(text)
        names = {name for name, _, _ in samples}
        assert names == {
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
            "DCGM_FI_DEV_FB_FREE",
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        }
        labels = dict(re.findall(r'(\w+)="([^"]*)"', samples[0][1]))
        assert set(labels) == {"gpu", "UUID", "device", "modelName", "Hostname"}
        assert (labels["gpu"], labels["device"], labels["modelName"]) == (str(i), f"nvidia{i}", H100_80GB.model_name)
        used = metric(text, "DCGM_FI_DEV_FB_USED")
        free = metric(text, "DCGM_FI_DEV_FB_FREE")
        assert used == H100_80GB.fb_used_mib and used + free == H100_80GB.fb_total_mib
        assert metric(text, "DCGM_FI_DEV_GPU_UTIL") == 0  # idle
    assert len({dict(re.findall(r'(\w+)="([^"]*)"', t))["UUID"] for t in texts}) == 2


async def test_cpu_profile_has_no_gpu_series(http: aiohttp.ClientSession) -> None:
    async with SimFleet("cpu-smollm2") as fleet, http.get(fleet.urls[0] + "/dcgm/metrics") as resp:
        assert resp.status == 404
        assert "no GPU" in (await resp.json())["error"]["message"]


async def test_gpu_util_is_high_under_load_and_falls_to_zero_when_idle(http: aiohttp.ClientSession) -> None:
    async with SimFleet("h100-llama8b") as fleet:
        url = fleet.urls[0]
        body = {"model": "smollm2", "prompt": "hello " * 50, "max_tokens": 200, "ignore_eos": True}

        async def one() -> None:
            async with http.post(url + "/v1/completions", json=body) as resp:
                assert resp.status == 200
                await resp.read()

        load = [asyncio.create_task(one()) for _ in range(8)]
        # 200 decode steps of ~10 ms back to back: the step loop is busy almost all the time.
        await asyncio.sleep(1.2)
        busy = metric(await _dcgm(http, url), "DCGM_FI_DEV_GPU_UTIL")
        ratio = metric(await _dcgm(http, url), "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
        await asyncio.gather(*load)
        assert busy >= 50, busy  # ~100 on a quiet machine; the loop's own wake-ups are not step time
        assert 0.5 <= ratio <= 1.0
        deadline = asyncio.get_running_loop().time() + 10
        while metric(await _dcgm(http, url), "DCGM_FI_DEV_GPU_UTIL") > 0:
            assert asyncio.get_running_loop().time() < deadline, "GPU util never returned to 0 when idle"
            await asyncio.sleep(0.1)


async def test_metrics_export_the_fragmentation_truth(http: aiohttp.ClientSession) -> None:
    async with SimFleet("h100-llama8b", time_scale=0.0) as fleet:
        text = await scrape(http, fleet.urls[0])
        assert metric(text, "inferline_sim_kv_cache_fragmentation_ratio", model_name="smollm2", engine="0") == 0.0


async def _dcgm(http: aiohttp.ClientSession, url: str) -> str:
    async with http.get(url + "/dcgm/metrics") as resp:
        assert resp.status == 200
        return await resp.text()
