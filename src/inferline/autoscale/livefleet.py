"""A live Deployment of engine processes: pods that start after a delay, join a DNS answer when Ready, and drain.

Each pod is one engine process (by default `inferline sim`, a SIMULATED engine) on its own loopback address
127.0.0.N, all on one port, as the pods of a headless Service share a container port. The pod's life follows
the simulator's model (lifecycle.py) so a live run and a simulated one can be compared:

    created      spec.replicas went up; the pod is Pending for `startup_delay_s` (image pull + model load).
                 Its process is started at once and warms up meanwhile, but the pod is not Ready before the
                 delay is over (the HPA counts a Pending pod as unready and drops its samples)
    Ready        the delay is over and GET /health answers 200 (probed every `probe_period_s`); its address
                 joins the DNS answer. If the process is not healthy when the delay ends, the pod is Running
                 and not Ready until it is (that excess is recorded)
    deleted      spec.replicas went down (victims ranked as a ReplicaSet ranks them): a Ready pod leaves the
                 DNS answer first, then is stopped (SIGTERM) once the gateway no longer lists it, i.e. its
                 streams have finished; at the latest after `drain_grace_s` (terminationGracePeriodSeconds).
                 A pod that is not Ready yet is stopped at once.

The gateway watcher polls the gateway's GET /backends to record when each engine joined it and took its
first request, and to know when a draining engine is gone from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Protocol

import httpx

from inferline.autoscale.hpa import ScaleTarget
from inferline.autoscale.lifecycle import Pod, PodState, scale_down_victims

__all__ = [
    "Endpoints",
    "FleetConfig",
    "GatewayWatcher",
    "LivePod",
    "ProcessFleet",
    "loopback_addresses",
    "process_cpu_s",
]

log = logging.getLogger("inferline.autoscale.live")

Clock = Callable[[], float]


class Endpoints(Protocol):
    """Where Ready pods are published (a DNS answer): the whole set, each time it changes."""

    def set(self, addresses: list[str]) -> None: ...


@dataclass(frozen=True, slots=True)
class FleetConfig:
    """How the fleet's pods start and stop."""

    engine_argv: tuple[str, ...]  # the engine command; `--host ADDRESS --port PORT` is appended
    port: int
    addresses: tuple[str, ...]  # the loopback addresses pods may use (at least maxReplicas of them)
    startup_delay_s: float  # Pending this long after creation (image pull + model load)
    log_dir: Path
    probe_period_s: float = 0.25  # readiness probe period (GET /health)
    drain_grace_s: float = 60.0  # terminationGracePeriodSeconds
    leave_wait_s: float = 2.0  # after leaving DNS: the gateway has surely re-resolved after this long
    stop_timeout_s: float = 15.0  # SIGTERM -> SIGKILL

    def __post_init__(self) -> None:
        if not self.addresses:
            raise ValueError("the fleet needs at least one address")
        if len(set(self.addresses)) != len(self.addresses):
            raise ValueError("the fleet's addresses must be distinct")


@dataclass(slots=True, eq=False)
class LivePod:
    """One pod: the simulator's Pod record (times on the run's clock) plus its process and what was observed."""

    pod: Pod
    address: str
    port: int
    proc: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    healthy_s: float = -1.0  # the process first answered /health
    joined_s: float = -1.0  # the gateway first listed it
    first_request_s: float = -1.0  # the gateway first had a request in flight on it
    left_dns_s: float = -1.0
    gone_s: float = -1.0  # the gateway no longer listed it (after it left DNS)
    drain_cut: bool = False  # stopped at drain_grace_s with requests possibly still on it
    exit_code: int | None = None
    failed: str = ""
    cpu_s: float | None = None  # CPU seconds the engine process used (read just before it was stopped)

    @property
    def name(self) -> str:
        return self.pod.name

    @property
    def instance(self) -> str:
        return f"{self.address}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.instance}"


class GatewayWatcher:
    """Polls GET /backends of the gateway: which engines it lists and how many requests each has in flight."""

    def __init__(self, gateway_url: str, model: str, clock: Clock, period_s: float = 0.2) -> None:
        self.url = gateway_url.rstrip("/") + "/backends"
        self.model = model
        self.clock = clock
        self.period_s = period_s
        self.listed: dict[str, int] = {}  # backend name -> in flight, at the last poll
        self.polled_s = -1.0  # clock time of the last successful poll (its start)
        self.failures = 0
        self._client = httpx.AsyncClient(timeout=5.0)

    def backend_name(self, instance: str) -> str:
        """The name the gateway's discovery gives an engine (backends/pool.py: "<model>@<host:port>")."""
        return f"{self.model}@{instance}"

    async def poll(self) -> None:
        t = self.clock()
        try:
            r = await self._client.get(self.url)
            r.raise_for_status()
            backends = r.json()["backends"]
        except (httpx.HTTPError, ValueError, KeyError):
            self.failures += 1
            return
        self.listed = {str(b["name"]): int(b.get("in_flight") or 0) for b in backends if b.get("model") == self.model}
        self.polled_s = t

    async def close(self) -> None:
        await self._client.aclose()


class ProcessFleet:
    """The pods of one engine Deployment as local processes; `scale_to(n)` is the ReplicaSet controller."""

    def __init__(
        self,
        config: FleetConfig,
        endpoints: Endpoints,
        watcher: GatewayWatcher,
        clock: Clock,
        name_prefix: str = "engine",
    ) -> None:
        self.config = config
        self.endpoints = endpoints
        self.watcher = watcher
        self.clock = clock
        self.prefix = name_prefix
        self.pods: list[LivePod] = []
        # never used yet: in order (127.0.0.2 first); then the one released longest ago
        self._released: dict[str, float] = {a: i - 1e9 for i, a in enumerate(config.addresses)}
        self._watch_task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=2.0)
        self._logs: list[IO[bytes]] = []

    # -- what the HPA reads -----------------------------------------------------------------------------------

    def live(self) -> list[LivePod]:
        return [p for p in self.pods if p.pod.live]

    def active(self) -> list[LivePod]:
        """Pods not being deleted (what status.replicas counts)."""
        return [p for p in self.pods if p.pod.state < PodState.DRAINING]

    def target(self, spec_replicas: int) -> ScaleTarget:
        live = self.live()
        return ScaleTarget(spec_replicas, len(self.active()), [p.pod.info() for p in live])

    def instances(self) -> dict[str, str]:
        """host:port -> pod name, for every live pod (the Prometheus `instance` of its series)."""
        return {p.instance: p.name for p in self.live()}

    def ready_addresses(self) -> list[str]:
        return [p.address for p in self.pods if p.pod.state is PodState.READY]

    # -- the ReplicaSet controller ----------------------------------------------------------------------------

    async def start_warm(self, n: int, timeout_s: float = 120.0) -> None:
        """N pods Ready before the run starts (no start-up delay): the initial replicas."""
        pods = [self._create(delay_s=0.0) for _ in range(n)]
        await asyncio.wait_for(asyncio.gather(*(p.task for p in pods if p.task is not None)), timeout_s)
        if any(p.pod.state is not PodState.READY for p in pods):
            raise RuntimeError("an initial engine did not start: " + "; ".join(p.failed for p in pods if p.failed))

    def scale_to(self, n: int) -> None:
        """Create or delete pods so that N are active (called every HPA pass: a failed pod is replaced)."""
        active = self.active()
        if n > len(active):
            for _ in range(n - len(active)):
                self._create(self.config.startup_delay_s)
        elif n < len(active):
            by_pod = {id(p.pod): p for p in active}
            for victim in scale_down_victims([p.pod for p in active], len(active) - n):
                self._delete(by_pod[id(victim)])

    def _free_address(self) -> str:
        used = {p.address for p in self.live()}
        free = [a for a in self.config.addresses if a not in used]
        if not free:
            raise RuntimeError(f"no free address for another engine (all {len(self.config.addresses)} in use)")
        return min(free, key=lambda a: self._released[a])  # the one released longest ago

    def _create(self, delay_s: float) -> LivePod:
        now = self.clock()
        pod = Pod(f"{self.prefix}-{len(self.pods)}", len(self.pods), now)
        # no scheduling stage: the pod is bound at once and "pulls" (Pending) for the start-up delay
        pod.bound_s = now
        pod.state = PodState.PULLING
        lp = LivePod(pod, self._free_address(), self.config.port)
        self.pods.append(lp)
        lp.task = asyncio.create_task(self._start(lp, now + delay_s), name=f"start:{pod.name}")
        log.info("pod %s created on %s (Pending for %.1f s)", pod.name, lp.instance, delay_s)
        return lp

    async def _start(self, lp: LivePod, ready_not_before: float) -> None:
        cfg = self.config
        pod = lp.pod
        logf = (cfg.log_dir / f"{pod.name}.log").open("wb")
        self._logs.append(logf)
        try:
            lp.proc = await asyncio.create_subprocess_exec(
                *cfg.engine_argv,
                "--host",
                lp.address,
                "--port",
                str(cfg.port),
                stdout=logf,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            lp.failed = f"{pod.name}: cannot start {cfg.engine_argv[0]}: {exc}"
            log.error("%s", lp.failed)
            self._terminated(lp)
            return
        while True:
            now = self.clock()
            if lp.proc.returncode is not None:
                lp.failed = f"{pod.name}: the engine exited with {lp.proc.returncode} before it was Ready"
                log.error("%s (log %s)", lp.failed, cfg.log_dir / f"{pod.name}.log")
                self._terminated(lp)
                return
            if lp.healthy_s < 0 and await self._healthy(lp):
                lp.healthy_s = self.clock()
            if now >= ready_not_before:
                if lp.healthy_s >= 0:
                    break
                if pod.state is PodState.PULLING:  # the delay is over but the process is not up yet
                    pod.state, pod.running_s = PodState.LOADING, now
            await asyncio.sleep(cfg.probe_period_s)
        now = self.clock()
        if pod.running_s < 0:
            pod.running_s = now
        pod.state, pod.ready_s = PodState.READY, now
        self.endpoints.set(self.ready_addresses())
        log.info(
            "pod %s Ready at %.2f s (created %.2f s, process up %.2f s after creation)",
            pod.name,
            now,
            pod.created_s,
            lp.healthy_s - pod.created_s,
        )

    async def _healthy(self, lp: LivePod) -> bool:
        try:
            r = await self._http.get(lp.url + "/health")
        except httpx.HTTPError:
            return False
        return r.status_code == 200

    def _delete(self, lp: LivePod) -> None:
        now = self.clock()
        pod = lp.pod
        pod.deleted_s = now
        if pod.state is PodState.READY:
            pod.state = PodState.DRAINING
            lp.left_dns_s = now
            self.endpoints.set(self.ready_addresses())
            lp.task = asyncio.create_task(self._drain(lp), name=f"drain:{pod.name}")
            log.info("pod %s deleted: left DNS, draining", pod.name)
            return
        starting = lp.task
        if starting is not None:
            starting.cancel()
        lp.task = asyncio.create_task(self._stop(lp, after=starting), name=f"stop:{pod.name}")
        log.info("pod %s deleted before it was Ready: stopped", pod.name)

    async def _drain(self, lp: LivePod) -> None:
        cfg = self.config
        name = self.watcher.backend_name(lp.instance)
        while True:
            now = self.clock()
            w = self.watcher
            if w.polled_s >= lp.left_dns_s + cfg.leave_wait_s and name not in w.listed:
                lp.gone_s = w.polled_s
                break
            if now - lp.left_dns_s >= cfg.drain_grace_s:
                lp.drain_cut = True
                log.warning("pod %s: still listed by the gateway after %.0f s: stopped anyway", lp.name, now)
                break
            await asyncio.sleep(cfg.probe_period_s)
        await self._stop(lp)

    async def _stop(self, lp: LivePod, after: asyncio.Task[None] | None = None) -> None:
        if after is not None:  # the start task, cancelled: let it finish first (it may just have spawned)
            with contextlib.suppress(asyncio.CancelledError):
                await after
        proc = lp.proc
        if proc is not None and proc.returncode is None:
            lp.cpu_s = process_cpu_s(proc.pid)
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), self.config.stop_timeout_s)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        self._terminated(lp)

    def _terminated(self, lp: LivePod) -> None:
        pod = lp.pod
        pod.state, pod.terminated_s = PodState.TERMINATED, self.clock()
        lp.exit_code = lp.proc.returncode if lp.proc is not None else None
        self._released[lp.address] = pod.terminated_s
        self.endpoints.set(self.ready_addresses())

    # -- the gateway's view -----------------------------------------------------------------------------------

    def start_watching(self) -> None:
        if self._watch_task is None:
            self._watch_task = asyncio.create_task(self._watch(), name="gateway-watcher")

    async def _watch(self) -> None:
        w = self.watcher
        while True:
            await w.poll()
            for lp in self.pods:
                n = w.listed.get(w.backend_name(lp.instance))
                if n is None or w.polled_s < lp.pod.created_s:
                    continue
                if lp.joined_s < 0:
                    lp.joined_s = w.polled_s
                    lp.pod.routable_s = w.polled_s
                if n > 0 and lp.first_request_s < 0:
                    lp.first_request_s = w.polled_s
            await asyncio.sleep(w.period_s)

    def settled(self) -> bool:
        """No pod starting or draining."""
        return all(p.pod.state in (PodState.READY, PodState.TERMINATED) for p in self.pods)

    async def close(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL) and the watcher."""
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        tasks = [p.task for p in self.pods if p.task is not None and not p.task.done()]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await asyncio.gather(*(self._stop(p) for p in self.pods if p.pod.live))
        await self._http.aclose()
        await self.watcher.close()
        for f in self._logs:
            f.close()


def loopback_addresses(n: int, first: int = 2) -> tuple[str, ...]:
    """127.0.0.FIRST ... : N distinct loopback addresses (Linux routes all of 127/8 to lo)."""
    if not (first > 0 and first + n <= 255):
        raise ValueError("loopback addresses 127.0.0.1..254 only")
    return tuple(f"127.0.0.{first + i}" for i in range(n))


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of a live process in seconds, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None
