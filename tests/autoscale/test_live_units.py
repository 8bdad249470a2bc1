"""The live controller's parts that need no fleet: the DNS answer (a real server, resolved by the gateway's own
discovery), Prometheus answers as the HPA reads them, one controller pass, the time-scaled profile, the
simulator's sync phase, and the measures that put a live run next to its simulation."""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from typer.testing import CliRunner

from inferline.autoscale.configs import from_values
from inferline.autoscale.des import OUTCOMES
from inferline.autoscale.hpa import ControllerConfig, HorizontalController, ScaleTarget
from inferline.autoscale.live import LiveController
from inferline.autoscale.livecompare import Side, reaction, ttft_bins, window_ttft
from inferline.autoscale.livedns import ServiceDns
from inferline.autoscale.profiles import load_profile, time_scaled
from inferline.autoscale.promclient import MetricQueries, PrometheusMetrics
from inferline.autoscale.replica import MetricUnavailable, PodInfo, PodMetric
from inferline.autoscale.sources import Quantity
from inferline.autoscale.spec import MetricSourceType, MetricSpec, MetricTargetType
from inferline.backends.discovery import DiscoveryConfig, DnsDiscovery
from inferline.cli import app as root
from inferline.sim.profiles import H100_LLAMA8B

from .conftest import simulate

RUNNING = MetricSpec(MetricSourceType.PODS, "vllm:num_requests_running", MetricTargetType.AVERAGE_VALUE, 4000)
QUEUE = MetricSpec(MetricSourceType.EXTERNAL, "inferline_queue_depth", MetricTargetType.AVERAGE_VALUE, 2000)


async def test_service_dns_is_what_the_gateway_discovers() -> None:
    with ServiceDns("engines.test.svc") as dns:
        cfg = DiscoveryConfig(dns_name="engines.test.svc", port=8000, nameservers=[dns.nameserver], interval_s=0.1)
        disc = DnsDiscovery(cfg)
        assert await disc.resolve() == frozenset()  # a Service with no ready pod: no address
        dns.set(["127.0.0.2", "127.0.0.3"])
        assert await disc.resolve() == {"127.0.0.2:8000", "127.0.0.3:8000"}
        dns.set(["127.0.0.3"])  # a pod left: gone from the next answer
        assert await disc.resolve() == {"127.0.0.3:8000"}
        other = DnsDiscovery(cfg.model_copy(update={"dns_name": "other.test.svc"}))
        assert await other.resolve() == frozenset()  # NXDOMAIN
        assert dns.queries >= 4


def test_prometheus_answers_as_the_hpa_reads_them() -> None:
    pods = {"127.0.0.2:9000": "engine-0", "127.0.0.3:9000": "engine-1"}
    m = PrometheusMetrics(pods)
    m.per_pod[RUNNING.name] = {"engine-0": PodMetric(8000, 1.0), "engine-1": PodMetric(2500, 1.0)}
    m.scalar[QUEUE.name] = 7.5
    assert m.pod_metrics(RUNNING) == {"engine-0": PodMetric(8000, 1.0), "engine-1": PodMetric(2500, 1.0)}
    assert m.external_metric(QUEUE) == [7500]
    kv = MetricSpec(MetricSourceType.PODS, "vllm:kv_cache_usage_perc", MetricTargetType.AVERAGE_VALUE, 500)
    m.errors[kv.name] = "Prometheus unreachable"
    with pytest.raises(MetricUnavailable, match="unreachable"):
        m.pod_metrics(kv)
    m.per_pod[kv.name] = {}
    with pytest.raises(MetricUnavailable, match="no pod"):
        m.pod_metrics(kv)
    # the replica calculator on these samples: (8 + 2.5) / 2 = 5.25 per pod against 4 -> ceil(1.3125 x 2) = 3
    hpa = HorizontalController(from_values({"maxReplicas": 5, "targetRunningRequests": 4}).effective_hpa)
    pod_infos = [PodInfo("engine-0"), PodInfo("engine-1")]
    assert hpa.reconcile(0.0, ScaleTarget(2, 2, pod_infos), m).desired == 3


def test_queries_select_the_engines_series_and_sum_the_gateways() -> None:
    q = MetricQueries("smollm2")
    assert q.per_pod(Quantity.RUNNING) == (
        '{__name__="vllm:num_requests_running", job="engines", model_name="smollm2"}'
    )
    assert q.gateway(Quantity.QUEUE) == 'sum(inferline_queue_depth{job="inferline", model="smollm2"})'
    assert q.for_metric(QUEUE) == (Quantity.QUEUE, q.gateway(Quantity.QUEUE))
    assert "DCGM_FI_DEV_GPU_UTIL" in q.per_pod(Quantity.GPU_UTIL)


class _Fleet:
    """Pods that are Ready the moment they exist: enough to check what a pass does with its decision."""

    def __init__(self) -> None:
        self.n = 1
        self.calls: list[int] = []

    def target(self, spec_replicas: int) -> ScaleTarget:
        return ScaleTarget(spec_replicas, self.n, [PodInfo(f"engine-{i}") for i in range(self.n)])

    def instances(self) -> dict[str, str]:
        return {f"127.0.0.{i + 2}:9000": f"engine-{i}" for i in range(self.n)}

    def scale_to(self, n: int) -> None:
        self.calls.append(n)
        self.n = n


class _Source:
    def __init__(self, running: float) -> None:
        self.running = running

    async def snapshot(self, metrics: object, pods: dict[str, str], at: float) -> PrometheusMetrics:
        m = PrometheusMetrics(dict(pods))
        m.per_pod[RUNNING.name] = {name: PodMetric(int(self.running * 1000)) for name in pods.values()}
        return m


async def test_a_pass_is_the_hpa_decision_and_sets_the_fleet_every_time() -> None:
    cfg = from_values({"minReplicas": 1, "maxReplicas": 6, "targetRunningRequests": 4})
    fleet, source = _Fleet(), _Source(8.0)
    ctl = LiveController(cfg.effective_hpa, ControllerConfig(sync_period_s=5), fleet, source, lambda: 0.0, 1)
    d = await ctl.pass_once(0.0)
    assert (d.decision.current, d.decision.desired) == (1, 2)  # 8 running against 4 per pod
    d = await ctl.pass_once(5.0)
    assert (d.decision.current, d.decision.desired) == (2, 4)
    source.running = 4.0
    d = await ctl.pass_once(10.0)
    assert d.decision.desired == 4 and fleet.calls == [2, 4, 4]  # no change, and the count is kept


async def test_run_keeps_to_the_sync_grid_until_stopped() -> None:
    cfg = from_values({"minReplicas": 1, "maxReplicas": 6, "targetRunningRequests": 4})
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    ctl = LiveController(
        cfg.effective_hpa, ControllerConfig(sync_period_s=1), _Fleet(), _Source(0.0), lambda: loop.time() - t0, 1
    )
    stop = asyncio.Event()
    task = asyncio.create_task(ctl.run(0.2, stop))
    await asyncio.sleep(2.5)
    stop.set()
    await asyncio.wait_for(task, 5)
    times = [d.decision.time_s for d in ctl.decisions]
    assert len(times) >= 2 and times[0] >= 0.2
    assert all(0.5 < b - a < 1.5 for a, b in itertools.pairwise(times))


def test_time_scaled_profile_is_what_sim_time_scale_runs() -> None:
    p = time_scaled(H100_LLAMA8B, 10)
    assert p.step_s(8, 1000, 100) == pytest.approx(10 * H100_LLAMA8B.step_s(8, 1000, 100))
    assert p.max_num_seqs == H100_LLAMA8B.max_num_seqs and "x10" in p.name
    assert time_scaled(H100_LLAMA8B, 1) is H100_LLAMA8B
    assert load_profile("h100-llama8b") is H100_LLAMA8B


def test_sync_phase_moves_the_hpa_passes() -> None:
    values = {"minReplicas": 1, "maxReplicas": 4, "targetRunningRequests": 64}
    for phase in (0.0, 2.5, 11.0):
        run = simulate("step:base=4,peak=40,at=30", 200, values, hpa_phase_s=phase)
        assert run.decisions and all((d.time_s - phase) % 15 == 0 for d in run.decisions)
        assert run.decisions[0].time_s == phase


def test_sync_phase_option_is_documented() -> None:
    result = CliRunner().invoke(root, ["autoscale", "simulate", "--help"], env={"COLUMNS": "200"})
    assert "--sync-phase" in result.output and "first pass" in result.output


def _pod(*times: float | None) -> dict[str, float | None]:
    keys = ("created_s", "ready_s", "routable_s", "first_request_s", "deleted_s", "terminated_s")
    return dict(zip(keys, times, strict=True))


def _side(**kw: object) -> Side:
    grid = np.arange(0.0, 60.5, 0.5)
    base: dict[str, object] = {
        "name": "live",
        "arrival_s": np.array([1.0, 2.0, 3.0, 21.0, 22.0]),
        "first_token_s": np.array([1.1, 4.0, np.nan, 21.2, 22.3]),
        "outcome": np.array([1, 1, 2, 1, 1]),
        "last_arrival_s": 22.0,
        "end_s": 60.0,
        "decisions": [(5.0, 1, 3), (45.0, 3, 1)],
        "pods": [
            _pod(-5.0, -4.0, -4.0, 1.0, None, None),
            _pod(5.0, 20.2, 20.4, 20.6, 45.0, 46.0),
            _pod(5.0, 20.1, 20.5, 20.9, 45.0, 46.0),
        ],
        "ratio_t": np.array([0.0, 1.0, 2.0, 3.0, 30.0]),
        "ratio": np.array([0.0, 1.05, 1.5, 2.0, 0.0]),
        "grid_t": grid,
        "desired": np.where((grid >= 5.0) & (grid < 45.0), 3.0, 1.0),
        "ready": 1.0 + (grid >= 20.1) * (grid < 45.0) + (grid >= 20.2) * (grid < 45.0),
        "queue_t": grid,
        "queue": np.zeros(grid.shape),
        "min_replicas": 1,
        "max_replicas": 6,
        "tolerance": 0.1,
    }
    base.update(kw)
    return Side(**base)  # type: ignore[arg-type]


def test_reaction_measures_from_the_breach() -> None:
    r = reaction(_side())
    assert r.breach_s == 2.0  # 1.05 is inside the tolerance, 1.5 is not
    assert (r.decision_s, r.replicas_from, r.replicas_to) == (5.0, 1, 3)
    assert r.first_ready_s == 20.1 and r.first_request_s == 20.6
    assert r.capacity_s == 20.5  # both new pods Ready (0.5 s grid)
    assert (r.peak_ready, r.peak_s) == (3, 20.5)
    assert r.back_at_min_s == 23.0 and (r.scale_ups, r.scale_downs) == (1, 1)
    assert reaction(_side(ratio=np.array([0.0, 1.05, 1.1, 1.0, 0.0]))).breach_s is None


def test_ttft_bins_and_windows_count_the_turned_away_as_late() -> None:
    side = _side()
    bins = ttft_bins(side, 10.0)
    assert list(bins["count"][:3]) == [3, 0, 2] and bins["turned_away"][0] == 1
    assert np.isinf(bins["p95"][0]) and bins["p50"][0] == pytest.approx(2.0)
    w = window_ttft(side, 0.0, 10.0)
    assert w == {"requests": 3, "p50_ms": 1050.0, "p95_ms": pytest.approx(1905.0), "turned_away": 1, "lost": 0}
    assert OUTCOMES[1] == "ok"


def test_dns_server_port_is_free_for_udp_and_tcp() -> None:
    with ServiceDns("a.test") as one, ServiceDns("b.test") as two:
        assert one.port != two.port and one.nameserver.startswith("127.0.0.1:")
