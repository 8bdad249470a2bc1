"""Debug gauges of the gateway process, read at scrape time: how many asyncio tasks are alive.

For leak hunting (benchmarks/soak.py samples it every 10 s): a request that leaves a task behind shows
up as growth here long before it shows up in memory. Counting walks the loop's task set once per scrape
(microseconds for thousands of tasks); nothing runs on the request path.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["DebugCollector", "register_debug_metrics"]


class DebugCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        try:
            tasks = len(asyncio.all_tasks())
        except RuntimeError:  # scraped outside the event loop (e.g. a test calling generate_latest)
            return
        yield GaugeMetricFamily(
            "inferline_debug_asyncio_tasks", "asyncio tasks alive in the gateway process (leak detection).", tasks
        )

    def describe(self) -> Iterator[Metric]:
        return iter(())


def register_debug_metrics(registry: CollectorRegistry) -> None:
    registry.register(DebugCollector())
