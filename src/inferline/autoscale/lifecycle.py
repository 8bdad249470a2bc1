"""Pods of the simulated Deployment: Pending (scheduling, image pull), Running (model load), Ready, draining.

A pod is created when the HPA raises spec.replicas. It waits `schedule` for a node (seconds, including
any node provisioning), pulls the image for `pull` (still Pending, but bound to its node: the GPU is
held and paid for from here), starts the engine which loads the model for `load`, and turns Ready at
the first readiness probe after that (probes every `probe_period` from container start). The gateway
routes to it `discovery` seconds after it is Ready. A pod removed on scale-down gets a deletion
timestamp, leaves routing at once, finishes what it holds and terminates; anything still running after
`drain_grace` (terminationGracePeriodSeconds) is cut off.

Which pods a scale-down removes follows the ReplicaSet controller's ranking: unscheduled before
scheduled, Pending before Running, not Ready before Ready, the most recently Ready first, newest first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import IntEnum

from inferline.autoscale.dist import Dist
from inferline.autoscale.replica import PodInfo, PodPhase

__all__ = ["Dist", "Pod", "PodState", "PodTimings", "scale_down_victims"]


@dataclass(frozen=True, slots=True)
class PodTimings:
    """How long each stage of a pod's start takes, and how its removal goes."""

    schedule: Dist = field(default_factory=lambda: Dist("fixed", 2.0))
    pull: Dist = field(default_factory=lambda: Dist("fixed", 30.0))
    load: Dist = field(default_factory=lambda: Dist("fixed", 60.0))
    probe_period_s: float = 5.0
    discovery_s: float = 2.0
    drain_grace_s: float = 30.0


class PodState(IntEnum):
    SCHEDULING = 0  # Pending, not bound to a node
    PULLING = 1  # Pending, bound: pulling the image (GPU held)
    LOADING = 2  # Running, not Ready: the engine loads the model
    READY = 3  # Running, Ready
    DRAINING = 4  # deletion timestamp set: finishing what it holds
    TERMINATED = 5


@dataclass(slots=True, eq=False)
class Pod:
    """One replica. Times are simulated seconds; -1 until the event happens."""

    name: str
    index: int
    created_s: float
    state: PodState = PodState.SCHEDULING
    bound_s: float = -1.0
    running_s: float = -1.0
    ready_s: float = -1.0
    routable_s: float = -1.0
    deleted_s: float = -1.0
    terminated_s: float = -1.0
    engine: object | None = field(default=None, repr=False)  # the VirtualEngine once Running

    @property
    def phase(self) -> PodPhase:
        return PodPhase.PENDING if self.state <= PodState.PULLING else PodPhase.RUNNING

    @property
    def live(self) -> bool:
        return self.state is not PodState.TERMINATED

    @property
    def deleting(self) -> bool:
        return self.state is PodState.DRAINING

    def info(self) -> PodInfo:
        """The pod as the HPA reads it."""
        ready = self.state is PodState.READY or (self.state is PodState.DRAINING and self.ready_s >= 0)
        return PodInfo(
            name=self.name,
            phase=self.phase,
            ready=ready,
            deleting=self.deleting,
            start_s=self.running_s if self.running_s >= 0 else None,
            ready_transition_s=self.ready_s if self.ready_s >= 0 else (self.running_s if self.running_s >= 0 else None),
        )

    def gpu_seconds(self, end_s: float) -> float:
        """GPU time held: from binding to a node until termination (or END_S)."""
        if self.bound_s < 0:
            return 0.0
        stop = self.terminated_s if self.terminated_s >= 0 else end_s
        return max(0.0, min(stop, end_s) - self.bound_s)


def scale_down_victims(pods: list[Pod], count: int) -> list[Pod]:
    """The COUNT pods a ReplicaSet deletes first (controller.ActivePodsWithRanks, simplified to what differs here)."""
    candidates = [p for p in pods if p.state < PodState.DRAINING]

    def rank(p: Pod) -> tuple[float, ...]:
        return (
            0 if p.state is PodState.SCHEDULING else 1,  # unassigned first
            0 if p.state <= PodState.PULLING else 1,  # Pending before Running
            0 if p.state is not PodState.READY else 1,  # not Ready before Ready
            -(p.ready_s if p.ready_s >= 0 else math.inf),  # Ready for less time first
            -p.created_s,  # newer first
        )

    return sorted(candidates, key=rank)[:count]
