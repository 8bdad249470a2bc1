"""A live HPA: the same HorizontalController the simulator runs, every sync period, on Prometheus' metrics.

`LiveController.run()` is kube-controller-manager's HPA loop for one HorizontalPodAutoscaler, outside a
cluster: every `ControllerConfig.sync_period_s` it reads the target's pods (`Fleet.target`), asks the metrics
(`MetricsSource.snapshot`: Prometheus, through promclient.py), calls `HorizontalController.reconcile` — the
exact v1.34 algorithm, with its stabilization windows, policies and tolerance — and sets the fleet's replica
count (`Fleet.scale_to`, called every pass so a pod that died is replaced, as a ReplicaSet would).

Nothing here knows what a pod is made of: livefleet.ProcessFleet runs engine processes on loopback
addresses behind a DNS name, but any Fleet works (a Kubernetes scale subresource, a cloud API).
Only HPA configurations are run live (a KEDA ScaledObject's activation/cooldown loop is not).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from inferline.autoscale.hpa import ControllerConfig, Decision, HorizontalController, MetricsClient, ScaleTarget
from inferline.autoscale.promclient import MetricQueries, PrometheusAPI, PrometheusMetrics
from inferline.autoscale.spec import HPASpec, MetricSpec

__all__ = ["Fleet", "LiveController", "LiveDecision", "MetricsSource", "PrometheusSource"]

log = logging.getLogger("inferline.autoscale.live")

Clock = Callable[[], float]


class Fleet(Protocol):
    """The scaled workload: its pods as the HPA reads them, and its replica count."""

    def target(self, spec_replicas: int) -> ScaleTarget: ...
    def instances(self) -> dict[str, str]: ...  # metrics `instance` -> pod name
    def scale_to(self, n: int) -> None: ...


class MetricsSource(Protocol):
    """Answers one HPA pass's metric reads (asked before the synchronous reconcile)."""

    async def snapshot(self, metrics: Sequence[MetricSpec], pods: Mapping[str, str], at: float) -> MetricsClient: ...


class PrometheusSource:
    """MetricsSource over a Prometheus server: instant queries at the pass's time (see promclient.py)."""

    def __init__(self, api: PrometheusAPI, queries: MetricQueries) -> None:
        self.api = api
        self.queries = queries

    async def snapshot(self, metrics: Sequence[MetricSpec], pods: Mapping[str, str], at: float) -> MetricsClient:
        # what the adapter serves now: Prometheus' latest samples (AT is the pass's time on the run's clock)
        return await PrometheusMetrics.fetch(self.api, metrics, pods, self.queries)


@dataclass(frozen=True, slots=True)
class LiveDecision:
    """One pass: the controller's Decision, and how long reading the metrics and deciding took."""

    decision: Decision
    ready: int  # Ready pods the pass saw
    pods: int  # live pods the pass saw
    took_s: float


class LiveController:
    """One HPA's loop against a live fleet; `decisions` holds every pass."""

    def __init__(
        self,
        spec: HPASpec,
        config: ControllerConfig,
        fleet: Fleet,
        metrics: MetricsSource,
        clock: Clock,
        initial_replicas: int,
    ) -> None:
        self.hpa = HorizontalController(spec, config)
        self.config = config
        self.fleet = fleet
        self.metrics = metrics
        self.clock = clock
        self.spec_replicas = initial_replicas
        self.decisions: list[LiveDecision] = []
        self.late_passes = 0  # passes that started more than a second after their tick (a busy machine)
        self.failed_passes = 0

    async def pass_once(self, now: float) -> LiveDecision:
        """One reconcile at NOW (the run's clock): read, decide, scale."""
        t0 = time.perf_counter()
        target = self.fleet.target(self.spec_replicas)
        client = await self.metrics.snapshot(self.hpa.spec.metrics, self.fleet.instances(), now)
        decision = self.hpa.reconcile(now, target, client)
        if decision.desired != self.spec_replicas:
            log.info(
                "HPA %s: %d -> %d replicas at %.2f s (%s; %s)",
                self.hpa.spec.name,
                decision.current,
                decision.desired,
                now,
                decision.reason,
                ", ".join(f"{k}: {v}m" for k, v in decision.usage.items()),
            )
            self.spec_replicas = decision.desired
        elif decision.errors:
            log.warning("HPA %s at %.2f s: %s", self.hpa.spec.name, now, decision.reason)
        self.fleet.scale_to(self.spec_replicas)
        ready = sum(1 for p in target.pods if p.ready and not p.deleting)
        d = LiveDecision(decision, ready, len(target.pods), time.perf_counter() - t0)
        self.decisions.append(d)
        return d

    async def run(self, first_pass_s: float, stop: asyncio.Event) -> None:
        """Pass at FIRST_PASS_S and every sync period after it (on the run's clock), until STOP is set."""
        period = self.config.sync_period_s
        tick = first_pass_s
        while not stop.is_set():
            delay = tick - self.clock()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
            now = self.clock()
            if now - tick > 1.0:
                self.late_passes += 1
            try:
                await self.pass_once(now)
            except Exception:  # a failed pass is an event, as in kube-controller-manager; the next one retries
                self.failed_passes += 1
                log.exception("HPA %s: the pass at %.2f s failed", self.hpa.spec.name, now)
            tick += period
            while tick <= self.clock():  # a pass that overran: keep to the grid, skip what was missed
                tick += period
