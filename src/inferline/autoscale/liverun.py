"""The live scale-up run: real processes, a real Prometheus, the live HPA controller, and `inferline bench` load.

What runs (all on loopback, free ports, each in its own process group, all stopped at the end):
  - a DNS server (livedns.ServiceDns) playing the engines' headless Service;
  - `inferline serve`, whose model discovers its engines from that name (backends/discovery.py);
  - engine pods (livefleet.ProcessFleet): `inferline sim` engines, SIMULATED, each on 127.0.0.N, started with
    a start-up delay, in the DNS answer once Ready, drained on scale-down;
  - Prometheus (scripts/prometheus.sh) with the scrape config `inferline observe scrape-config` generates
    (gateway, engines, and the engines' DCGM endpoints when the HPA scales on GPU utilization); the short
    scrape interval is this run's own setting;
  - the live controller (live.LiveController): the simulator's HorizontalController, every sync period, on
    Prometheus' answers;
  - `inferline bench`: an open-loop step (0 -> RATE req/s for DURATION s), its requests saved.
After the load it keeps watching until the fleet is back at minReplicas (or `cooldown_s`), then reads the
metric series back from Prometheus, stops everything and returns a `LiveRun`: every pass of the controller,
every pod's timeline, the series, the bench's result, the gateway's log, load averages — on one clock (unix
seconds minus the run's start) with the offset of the trace's t=0 (the first request's arrival).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import yaml

from inferline.autoscale.configs import AutoscalerConfig, from_values
from inferline.autoscale.hpa import ControllerConfig
from inferline.autoscale.lifecycle import PodState
from inferline.autoscale.live import LiveController, PrometheusSource
from inferline.autoscale.livedns import ServiceDns
from inferline.autoscale.livefleet import FleetConfig, GatewayWatcher, ProcessFleet, loopback_addresses, process_cpu_s
from inferline.autoscale.promclient import MetricQueries, PrometheusAPI, Series
from inferline.autoscale.sources import Quantity, resolve_metric
from inferline.net.ports import free_port
from inferline.observe.scrape import render_scrape_config

__all__ = ["LiveRun", "LiveSettings", "run_live"]

log = logging.getLogger("inferline.autoscale.live")

SERVICE_NAME = "engines.inference.svc.cluster.local"
SERIES_STEP_S = 0.5  # resolution of the series read back from Prometheus


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """One live run. Times in seconds. The autoscaler is the chart's `autoscaling:` values (or an HPA file)."""

    autoscaling: dict[str, Any] = field(
        default_factory=lambda: {
            "minReplicas": 1,
            "maxReplicas": 6,
            "targetRunningRequests": 4,
            "scaleDownStabilizationSeconds": 30,
        }
    )
    # the controller (kube-controller-manager flags): a shorter sync period than the 15 s default is this
    # run's own setting, and the simulation of it uses the same
    sync_period_s: float = 5.0
    tolerance: float = 0.1
    downscale_stabilization_s: float = 300.0
    scrape_interval_s: float = 1.0
    # the pods
    startup_delay_s: float = 15.0
    initial_replicas: int = 1
    profile: str = "h100-llama8b"
    time_scale: float = 10.0
    max_num_seqs: int = 8
    drain_grace_s: float = 60.0
    probe_period_s: float = 0.25
    # the gateway
    model: str = "smollm2"
    discovery_interval_s: float = 1.0
    health_interval_s: float = 0.5
    load_interval_s: float = 0.2
    queue_max_depth: int = 1024
    queue_timeout_s: float = 30.0
    kv_admit_ratio: float = 0.85
    # the load: a step from 0 to RATE req/s for DURATION s
    rate: float = 3.0
    duration_s: float = 120.0
    input_len: int = 128
    output_len: int = 64
    seed: int = 0
    idle_before_s: float = 5.0  # after the stack is up, before the load
    cooldown_s: float = 120.0  # after the load, at most this long for the scale-down
    slo_ttft_s: float = 0.8

    def autoscaler(self) -> AutoscalerConfig:
        cfg = from_values(dict(self.autoscaling), "live", self.max_num_seqs)
        if cfg.hpa is None:
            raise ValueError("the live controller runs an HPA; a KEDA configuration is not supported live")
        return cfg

    def controller(self) -> ControllerConfig:
        return ControllerConfig(self.sync_period_s, self.tolerance, self.downscale_stabilization_s)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class LiveRun:
    """Everything a live run observed. Times: seconds on the run's clock (unix - `t0_unix`)."""

    settings: LiveSettings
    t0_unix: float
    trace_zero_s: float  # the clock time of the trace's t = 0 (the first request's arrival at the gateway)
    load_start_s: float  # the bench process was started
    load_end_s: float  # the bench process exited
    end_s: float  # the observation ended
    passes: list[dict[str, Any]]  # every controller pass
    pods: list[dict[str, Any]]  # every pod's timeline
    series: dict[str, list[dict[str, Any]]]  # name -> [{labels, points: [[t, v], ...]}] (clock seconds)
    bench: dict[str, Any]  # the bench's JSON (with its requests)
    bench_path: str
    gateway_events: list[dict[str, Any]]  # joins, drains, retirements (clock seconds)
    gateway_requests: int  # streaming request lines in the gateway's log (the bench's requests)
    loadavg: list[list[float]]  # [t, 1 min, 5 min, 15 min]
    wall: dict[str, float]
    workdir: str
    first_pass_s: float
    notes: list[str] = field(default_factory=list)
    during_load: Any = None  # what the caller's during_load coroutine returned (JSON-ready)
    cpu_s: dict[str, float | None] = field(default_factory=dict)  # CPU seconds: gateway, engines, prometheus, ...

    def to_json(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["settings"] = self.settings.to_json()
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> LiveRun:
        """A run written by to_json (to analyse it again without running it again)."""
        fields = dict(d)
        fields["settings"] = LiveSettings(**fields["settings"])
        return cls(**fields)


Say = Callable[[str], None]
DuringLoad = Callable[[str], Coroutine[Any, Any, Any]]


def _inferline() -> str:
    exe = Path(sys.executable).parent / "inferline"
    return str(exe) if exe.exists() else "inferline"


def run_live(
    settings: LiveSettings,
    workdir: Path,
    prometheus_script: Path,
    say: Say | None = None,
    during_load: DuringLoad | None = None,
) -> LiveRun:
    """Run the whole live experiment (blocking); WORKDIR receives every log, config and the bench JSON.

    DURING_LOAD, if given, is started with the gateway's URL when the load starts (e.g. a client that checks
    the gateway's answers itself); what it returns is kept in `LiveRun.during_load`."""
    workdir.mkdir(parents=True, exist_ok=True)
    run = _Run(settings, workdir, prometheus_script, say or (lambda _m: None), during_load)
    return asyncio.run(run.run())


class _Run:
    def __init__(
        self, settings: LiveSettings, workdir: Path, prometheus_script: Path, say: Say, during: DuringLoad | None
    ) -> None:
        self.s = settings
        self.during = during
        self.dir = workdir
        self.script = prometheus_script
        self.say = say
        self.t0_unix = time.time()
        self.cpu0 = time.process_time()
        self.autoscaler = settings.autoscaler()
        self.hpa = self.autoscaler.hpa
        self.exe = _inferline()
        self.loadavg: list[list[float]] = []
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float | None] = {}
        self.notes: list[str] = []

    def clock(self) -> float:
        return time.time() - self.t0_unix

    # -- the stack --------------------------------------------------------------------------------------------

    def _engine_argv(self) -> tuple[str, ...]:
        s = self.s
        return (
            self.exe,
            "sim",
            "--profile",
            s.profile,
            "--model",
            s.model,
            "--max-num-seqs",
            str(s.max_num_seqs),
            "--time-scale",
            f"{s.time_scale:g}",
            "--seed",
            str(s.seed),
        )

    def _gateway_config(self, dns: ServiceDns, port: int) -> dict[str, Any]:
        s = self.s
        return {
            "server": {"shutdown_grace_s": 5},
            "routing": {"health_interval_s": s.health_interval_s, "load_interval_s": s.load_interval_s},
            "admission": {"queue_max_depth": s.queue_max_depth, "queue_timeout_s": s.queue_timeout_s},
            "limits": {"require_api_key": False},
            "models": [
                {
                    "name": s.model,
                    "discovery": {
                        "dns_name": SERVICE_NAME,
                        "port": port,
                        "kind": "vllm",
                        "interval_s": s.discovery_interval_s,
                        "nameservers": [dns.nameserver],
                        "max_num_seqs": s.max_num_seqs,
                        "kv_admit_ratio": s.kv_admit_ratio,
                    },
                }
            ],
        }

    def _uses_gpu_util(self) -> bool:
        assert self.hpa is not None
        return any(resolve_metric(m.name) is Quantity.GPU_UTIL for m in self.hpa.metrics)

    async def _wait_http(self, url: str, what: str, timeout_s: float, proc: asyncio.subprocess.Process) -> None:
        deadline = time.monotonic() + timeout_s
        async with httpx.AsyncClient(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if proc.returncode is not None:
                    raise RuntimeError(f"{what} exited with {proc.returncode}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(url)).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{what} not ready within {timeout_s:.0f} s")

    async def _until(self, predicate: Callable[[], Any], timeout_s: float, what: str, period_s: float = 0.5) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if await predicate():
                return
            await asyncio.sleep(period_s)
        raise RuntimeError(f"{what}: not within {timeout_s:.0f} s")

    async def _sample_load(self) -> None:
        while True:
            self.loadavg.append([round(self.clock(), 2), *(round(x, 2) for x in os.getloadavg())])
            await asyncio.sleep(5.0)

    def _prometheus(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(self.script), *args], capture_output=True, text=True, timeout=180, check=False
        )

    # -- the run ----------------------------------------------------------------------------------------------

    async def run(self) -> LiveRun:
        s, hpa = self.s, self.hpa
        assert hpa is not None
        if s.initial_replicas < hpa.min_replicas or s.initial_replicas > hpa.max_replicas:
            raise ValueError(f"initial replicas {s.initial_replicas} outside {hpa.min_replicas}..{hpa.max_replicas}")
        t_setup = time.monotonic()
        sampler = asyncio.create_task(self._sample_load())
        port, gw_port, prom_port = free_port(), free_port(), free_port()
        gw_url, prom_url = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{prom_port}"
        addresses = loopback_addresses(hpa.max_replicas + 4)
        dns = ServiceDns(SERVICE_NAME, ttl=1)
        dns.start()
        watcher = GatewayWatcher(gw_url, s.model, self.clock)
        fleet = ProcessFleet(
            FleetConfig(
                engine_argv=self._engine_argv(),
                port=port,
                addresses=addresses,
                startup_delay_s=s.startup_delay_s,
                log_dir=self.dir,
                probe_period_s=s.probe_period_s,
                drain_grace_s=s.drain_grace_s,
                leave_wait_s=2 * s.discovery_interval_s,
            ),
            dns,
            watcher,
            self.clock,
        )
        gateway: asyncio.subprocess.Process | None = None
        bench: asyncio.subprocess.Process | None = None
        prom_started = False
        api = PrometheusAPI(prom_url)
        stop = asyncio.Event()
        controller_task: asyncio.Task[None] | None = None
        side_task: asyncio.Task[Any] | None = None
        logs: list[Any] = []
        try:
            self.say(f"starting {s.initial_replicas} engine(s), DNS {dns.nameserver}, gateway {gw_url}")
            await fleet.start_warm(s.initial_replicas)
            cfg_path = self.dir / "gateway.yaml"
            cfg_path.write_text(yaml.safe_dump(self._gateway_config(dns, port), sort_keys=False))
            gw_log = (self.dir / "gateway.log").open("wb")
            logs.append(gw_log)
            gateway = await asyncio.create_subprocess_exec(
                self.exe,
                "serve",
                "--config",
                str(cfg_path),
                "--port",
                str(gw_port),
                stdout=gw_log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            await self._wait_http(gw_url + "/ready", "inferline serve", 120, gateway)

            async def joined() -> bool:
                await watcher.poll()
                return len(watcher.listed) >= s.initial_replicas

            await self._until(joined, 60, "the gateway lists the initial engines")
            prom_cfg = self.dir / "prometheus.yml"
            engines = [f"http://{a}:{port}" for a in addresses]
            prom_cfg.write_text(
                render_scrape_config(
                    gateways=[gw_url],
                    engines=engines,
                    dcgm=[u + "/dcgm/metrics" for u in engines] if self._uses_gpu_util() else [],
                    scrape_interval_s=s.scrape_interval_s,
                )
            )
            self.say(f"starting Prometheus on {prom_url} (scrape every {s.scrape_interval_s:g} s)")
            started = self._prometheus("start", str(prom_port), str(prom_cfg), str(self.dir / "prometheus"))
            if started.returncode != 0:
                raise RuntimeError("Prometheus did not start: " + (started.stdout + started.stderr)[-2000:])
            prom_started = True
            queries = MetricQueries(s.model)

            async def scraped() -> bool:
                up = await api.query('up{job="engines"} == 1 or up{job="inferline"} == 1')
                running = await api.query(queries.per_pod(Quantity.RUNNING))
                return len(up) >= s.initial_replicas + 1 and len(running) >= s.initial_replicas

            await self._until(scraped, 60, "Prometheus scrapes the gateway and the initial engines")
            fleet.start_watching()
            controller = LiveController(
                hpa, s.controller(), fleet, PrometheusSource(api, queries), self.clock, s.initial_replicas
            )
            first_pass = self.clock() + 0.5
            controller_task = asyncio.create_task(controller.run(first_pass, stop), name="hpa")
            self.wall["setup_s"] = round(time.monotonic() - t_setup, 1)
            await asyncio.sleep(s.idle_before_s)
            bench_out = self.dir / "bench.json"
            bench_log = (self.dir / "bench.log").open("wb")
            logs.append(bench_log)
            load_start = self.clock()
            self.say(f"load: {s.rate:g} req/s for {s.duration_s:g} s (inferline bench); HPA every {s.sync_period_s:g}s")
            bench = await asyncio.create_subprocess_exec(
                self.exe,
                "bench",
                "--url",
                gw_url,
                "--model",
                s.model,
                "--rate",
                f"{s.rate:g}",
                "--duration",
                f"{s.duration_s:g}",
                "--grace",
                f"{s.queue_timeout_s + 60:g}",
                "--input-len",
                str(s.input_len),
                "--output-len",
                str(s.output_len),
                "--ignore-eos",
                "--seed",
                str(s.seed),
                "--save-requests",
                "--out",
                str(bench_out),
                "--no-progress",
                stdout=bench_log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            if self.during is not None:
                side_task = asyncio.create_task(self.during(gw_url))
            bench_timeout = s.duration_s + s.queue_timeout_s + 240
            try:
                rc = await asyncio.wait_for(bench.wait(), bench_timeout)
            except TimeoutError:
                raise RuntimeError(f"inferline bench still running after {bench_timeout:.0f} s") from None
            load_end = self.clock()
            during_result = await side_task if side_task is not None else None
            if rc != 0 or not bench_out.exists():
                tail = (self.dir / "bench.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"inferline bench exited with {rc}: {tail}")
            self.say(f"load over after {load_end - load_start:.0f} s; scale-down within {s.cooldown_s:g} s?")
            minimum = hpa.min_replicas
            deadline = self.clock() + s.cooldown_s
            while self.clock() < deadline:
                if controller.spec_replicas == minimum and len(fleet.live()) == minimum and fleet.settled():
                    break
                await asyncio.sleep(0.5)
            else:
                self.notes.append(f"the fleet was not back at {minimum} replica(s) {s.cooldown_s:g} s after the load")
            end = self.clock()
            await asyncio.sleep(2 * s.scrape_interval_s)  # the last scrapes land
            stop.set()
            await controller_task
            series = await self._series(api, queries, end)
            self.wall["run_s"] = round(end - load_start, 1)
            self.wall["late_passes"] = controller.late_passes
            if controller.failed_passes:
                self.notes.append(f"{controller.failed_passes} controller pass(es) failed (see the log)")
        finally:
            stop.set()
            if side_task is not None and not side_task.done():
                side_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await side_task
            if controller_task is not None and not controller_task.done():
                controller_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await controller_task
            if bench is not None and bench.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(bench.pid, signal.SIGKILL)
                await bench.wait()
            t_down = time.monotonic()
            await fleet.close()
            if gateway is not None and gateway.returncode is None:
                self.cpu["gateway"] = process_cpu_s(gateway.pid)
                with contextlib.suppress(ProcessLookupError):
                    gateway.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(gateway.wait(), 30)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(gateway.pid, signal.SIGKILL)
                    await gateway.wait()
            if prom_started:
                self.cpu["prometheus"] = _prometheus_cpu_s(prom_port)
                self._prometheus("stop", str(prom_port))
            await api.close()
            dns.stop()
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
            for f in logs:
                f.close()
            self.wall["teardown_s"] = round(time.monotonic() - t_down, 1)
        self.cpu["engines"] = round(sum(p.cpu_s or 0.0 for p in fleet.pods), 2)
        self.cpu["controller"] = round(time.process_time() - self.cpu0, 2)  # this process: controller, DNS, fleet
        bench_data = orjson.loads(bench_out.read_bytes())
        events, arrivals = _gateway_log(self.dir / "gateway.log", self.t0_unix)
        trace_zero = _trace_zero(bench_data, arrivals)
        return LiveRun(
            settings=s,
            t0_unix=self.t0_unix,
            trace_zero_s=trace_zero,
            load_start_s=load_start,
            load_end_s=load_end,
            end_s=end,
            passes=[_pass_json(d) for d in controller.decisions],
            pods=[_pod_json(p) for p in fleet.pods],
            series=series,
            bench=bench_data,
            bench_path=str(bench_out),
            gateway_events=events,
            gateway_requests=len(arrivals),
            loadavg=self.loadavg,
            wall=self.wall,
            workdir=str(self.dir),
            first_pass_s=first_pass,
            notes=self.notes,
            during_load=during_result,
            cpu_s=self.cpu,
        )

    async def _series(self, api: PrometheusAPI, queries: MetricQueries, end: float) -> dict[str, list[dict[str, Any]]]:
        """The run's series from Prometheus: every HPA metric (per-pod ones as raw samples at their scrape times,
        gateway ones every SERIES_STEP_S), the gateway queue, each engine's in-flight count."""
        assert self.hpa is not None
        start_u, end_u = self.t0_unix, self.t0_unix + end + 1.0
        ranged: dict[str, str] = {}
        raw: dict[str, str] = {}
        for m in self.hpa.metrics:
            q, expr = queries.for_metric(m)
            (raw if q.per_pod else ranged)[f"metric:{m.name}"] = expr
        ranged["queue"] = queries.gateway(Quantity.QUEUE)
        ranged["backend_in_flight"] = f'inferline_backend_in_flight_requests{{model="{self.s.model}"}}'
        out: dict[str, list[dict[str, Any]]] = {}
        for name, expr in [*raw.items(), *ranged.items()]:
            if name in raw:
                got: list[Series] = await api.samples(expr, start_u, end_u)
            else:
                got = await api.query_range(expr, start_u, end_u, SERIES_STEP_S)
            out[name] = [
                {"labels": g.labels, "points": [[round(t - self.t0_unix, 3), v] for t, v in g.points]} for g in got
            ]
        return out


def _prometheus_cpu_s(port: int) -> float | None:
    """CPU seconds of the Prometheus scripts/prometheus.sh started on PORT (it keeps the pid in /tmp)."""
    try:
        pid = int(Path(f"/tmp/inferline-prometheus-{port}.pid").read_text())
    except (OSError, ValueError):
        return None
    return process_cpu_s(pid)


def _pass_json(d: Any) -> dict[str, Any]:
    dec = d.decision
    return {
        "t": round(dec.time_s, 3),
        "current": dec.current,
        "desired": dec.desired,
        "metric_desired": dec.metric_desired,
        "reason": dec.reason,
        "limited": dec.limited,
        "usage": dict(dec.usage),
        "proposals": dict(dec.proposals),
        "errors": list(dec.errors),
        "ready": d.ready,
        "pods": d.pods,
        "took_s": round(d.took_s, 4),
    }


def _pod_json(lp: Any) -> dict[str, Any]:
    p = lp.pod
    return {
        "name": p.name,
        "address": lp.instance,
        "created_s": round(p.created_s, 3),
        "running_s": round(p.running_s, 3),
        "ready_s": round(p.ready_s, 3),
        "healthy_s": round(lp.healthy_s, 3),
        "joined_s": round(lp.joined_s, 3),
        "first_request_s": round(lp.first_request_s, 3),
        "deleted_s": round(p.deleted_s, 3),
        "left_dns_s": round(lp.left_dns_s, 3),
        "gone_s": round(lp.gone_s, 3),
        "terminated_s": round(p.terminated_s, 3),
        "state": PodState(p.state).name,
        "drain_cut": lp.drain_cut,
        "exit_code": lp.exit_code,
        "failed": lp.failed,
    }


_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ ([\w.]+): (.*)$")


def _gateway_log(path: Path, t0_unix: float) -> tuple[list[dict[str, Any]], list[float]]:
    """(discovery events, arrival time of every streaming request) on the run's clock, from the gateway's log."""
    events: list[dict[str, Any]] = []
    arrivals: list[float] = []
    for line in path.read_text(errors="replace").splitlines():
        m = _LOG_LINE.match(line)
        if m is None:
            continue
        stamp = datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - t0_unix  # local time
        msg = m.group(3)
        if m.group(2) == "inferline.request" and msg.startswith("{"):
            with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                rec = orjson.loads(msg)
                if rec.get("stream") is True:  # the bench streams; other clients' requests do not count
                    arrivals.append(stamp - float(rec["duration_ms"]) / 1000.0)
        elif m.group(2) == "inferline.pool" and ("joined" in msg or "discovery" in msg or "retired" in msg):
            events.append({"t": round(stamp, 3), "message": msg})
    arrivals.sort()
    return events, arrivals


def _trace_zero(bench: dict[str, Any], arrivals: list[float]) -> float:
    """The clock time of the trace's t = 0 (its first request's scheduled time).

    The bench records times from its own start; the gateway logs when each request ended and how long it
    took. Pairing the i-th send with the i-th arrival at the gateway, the median offset is the bench's start
    on our clock (robust to a few requests swapping places)."""
    reqs = [r for run in bench.get("runs", [])[:1] for r in run.get("requests") or []]
    sends = sorted(float(r["send_s"]) for r in reqs if r.get("send_s") is not None)
    scheduled = [float(r["scheduled_s"]) for r in reqs if r.get("scheduled_s") is not None]
    if not sends or not arrivals or not scheduled:
        raise RuntimeError("cannot align the bench with the gateway: no requests in the bench or the gateway log")
    n = min(len(sends), len(arrivals))
    offset = statistics.median(a - b for a, b in zip(arrivals[:n], sends[:n], strict=True))
    return offset + min(scheduled)
