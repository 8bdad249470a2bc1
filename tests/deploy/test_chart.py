"""The chart checked with real tools: helm lint --strict, helm template, kubernetes-validate --strict (two
Kubernetes versions), the CRD objects against their schemas with unknown fields rejected; then what the
rendered objects must say (GPU limits, probes, drain, autoscaling = values, gating, the gateway's config)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from .chart import (
    CASES,
    CHART,
    CUSTOM_KINDS,
    KUBE_VERSIONS,
    ROOT,
    find,
    helm,
    objects,
    template,
    tools,
    values,
)

CASE_NAMES = list(CASES)


def _engine_deployments(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        o for o in find(objs, "Deployment") if o["metadata"]["labels"].get("app.kubernetes.io/component") == "engine"
    ]


def _engine_for(case: str, deployment: dict[str, Any]) -> dict[str, Any]:
    name = deployment["metadata"]["labels"]["inferline.dev/engine"]
    return next(e for e in values(case)["engines"] if e["name"] == name)


# -- the real tools ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_helm_lint_strict(case: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    if CASES[case] is not None:
        args += ["-f", str(CASES[case])]
    out = helm(*args).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_builtin_objects_pass_kubernetes_validate_strict(case: str, version: str, tmp_path: Path) -> None:
    files = []
    for i, obj in enumerate(objects(case, version)):
        if obj["kind"] in CUSTOM_KINDS:
            continue
        f = tmp_path / f"{i:02d}-{obj['kind']}-{obj['metadata']['name']}.yaml"
        f.write_text(yaml.safe_dump(obj))
        files.append(str(f))
    assert len(files) >= 7  # gateway: Deployment, Service, PDB, ConfigMap; per engine: Deployment, Service; ...
    proc = subprocess.run(
        [tools().kubernetes_validate, "--strict", "-k", version, *files], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed for resource") == len(files), proc.stdout


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    deployment = _engine_deployments(objects("default"))[0]
    deployment["spec"]["template"]["spec"]["containers"][0]["gpus"] = 1  # not a Kubernetes field
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(deployment))
    proc = subprocess.run([tools().kubernetes_validate, "--strict", str(f)], capture_output=True, text=True)
    assert proc.returncode != 0 and "gpus" in proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def crd_report(tmp_path_factory: pytest.TempPathFactory) -> str:
    """scripts/deploy/validate_crds.py over every case at once (loading the CRD models takes ~10 s)."""
    d = tmp_path_factory.mktemp("crds")
    files = []
    for case in CASE_NAMES:
        f = d / f"{case}.yaml"
        f.write_text(template(case))
        files.append(str(f))
    proc = subprocess.run(
        [tools().python, str(ROOT / "scripts" / "deploy" / "validate_crds.py"), *files],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "custom resource(s) checked" in proc.stdout, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("case", CASE_NAMES)
def test_custom_resources_match_their_crd_schemas_strictly(case: str, crd_report: str) -> None:
    mine = [line for line in crd_report.splitlines() if f" {case}.yaml: " in line]
    custom = [o for o in objects(case) if o["kind"] in CUSTOM_KINDS]
    assert len(mine) == len(custom) >= 4, crd_report
    assert all(line.startswith("valid ") for line in mine), crd_report
    kinds = {o["kind"] for o in custom}
    assert {"ServiceMonitor", "PrometheusRule"} <= kinds


def test_crd_validation_rejects_unknown_fields(tmp_path: Path) -> None:
    objs = [o for o in objects("llama-70b-keda") if o["kind"] in CUSTOM_KINDS]
    scaled = find(objs, "ScaledObject")[0]
    scaled["spec"]["minReplicas"] = 1  # HPA spelling, not KEDA's minReplicaCount
    monitor = find(objs, "ServiceMonitor")[0]
    monitor["spec"]["endpoints"][0]["scrapeIntervall"] = "5s"
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump_all([scaled, monitor]))
    proc = subprocess.run(
        [tools().python, str(ROOT / "scripts" / "deploy" / "validate_crds.py"), str(f)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1
    assert "minReplicas" in proc.stdout and "scrapeIntervall" in proc.stdout
    assert "2 invalid" in proc.stdout


def test_values_schema_is_enforced() -> None:
    bad = [
        ("engines[0].gpus=0", "gpus"),
        ("gateway.replicas=1", "replicas"),
        ("engines[0].image.tag=latest", "tag"),
        ("engines[0].autoscaling.mode=both", "mode"),
        ("gateway.config.server.prot=1", "prot"),
    ]
    for setting, field in bad:
        proc = helm("template", "x", str(CHART), "--set", setting, check=False)
        assert proc.returncode != 0 and field in proc.stderr, (setting, proc.stderr)


# -- what the rendered objects say ------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_image_is_pinned(case: str) -> None:
    for o in find(objects(case), "Deployment"):
        for c in o["spec"]["template"]["spec"]["containers"]:
            repo, _, tag = c["image"].partition("@")[0].rpartition(":")
            assert repo and tag and tag != "latest", c["image"]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_engines_get_their_gpus_args_probes_and_drain(case: str) -> None:
    deployments = _engine_deployments(objects(case))
    assert deployments
    for d in deployments:
        e = _engine_for(case, d)
        pod = d["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        res = c["resources"]
        assert res["requests"]["nvidia.com/gpu"] == res["limits"]["nvidia.com/gpu"] == e["gpus"]
        args = c["args"]

        def arg(flag: str, args: list[str] = args) -> str:
            return str(args[args.index(flag) + 1])

        assert c["command"] == ["vllm", "serve"] and args[0] == e["weights"]
        assert arg("--tensor-parallel-size") == str(e["tensorParallelSize"])
        assert arg("--gpu-memory-utilization") == str(e["gpuMemoryUtilization"])
        assert arg("--max-num-seqs") == str(e["maxNumSeqs"])
        assert arg("--scheduling-policy") == e["schedulingPolicy"]
        assert arg("--served-model-name") == e["servedModelName"]
        assert "--enable-chunked-prefill" in args
        # v0.33.0 has no --disable-log-requests (removed in 0.12); logging is off by default, said explicitly
        assert "--no-enable-log-requests" in args and "--disable-log-requests" not in args
        startup = c["startupProbe"]
        assert startup["httpGet"]["path"] == "/health"
        assert startup["periodSeconds"] * startup["failureThreshold"] >= e["startupTimeoutSeconds"] >= 60
        assert c["readinessProbe"]["httpGet"]["path"] == "/health"
        drain = e["drain"]
        assert c["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", str(drain["preStopSleepSeconds"])]
        assert arg("--shutdown-timeout") == str(drain["shutdownTimeoutSeconds"])
        assert pod["terminationGracePeriodSeconds"] > drain["preStopSleepSeconds"] + drain["shutdownTimeoutSeconds"]
        assert drain["preStopSleepSeconds"] > e["discovery"]["intervalSeconds"]
        vols = {v["name"]: v for v in pod["volumes"]}
        assert vols["dshm"]["emptyDir"]["medium"] == "Memory"
        assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]
        cache_kind = {"pvc": "persistentVolumeClaim", "hostPath": "hostPath", "emptyDir": "emptyDir"}
        assert cache_kind[e["modelCache"]["type"]] in vols["model-cache"]
        for key in ("nodeSelector", "tolerations", "affinity"):
            assert pod.get(key, type(e[key])()) == e[key]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_each_engine_has_a_headless_service(case: str) -> None:
    objs = objects(case)
    for d in _engine_deployments(objs):
        e = _engine_for(case, d)
        (svc,) = find(objs, "Service", f"{d['metadata']['name']}-engine")
        assert svc["spec"]["clusterIP"] == "None"
        assert svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert svc["spec"]["ports"][0]["port"] == e["port"]


def _quantity(q: str) -> float:
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


@pytest.mark.parametrize("version", KUBE_VERSIONS)
@pytest.mark.parametrize("case", CASE_NAMES)
def test_autoscaler_equals_the_values(case: str, version: str) -> None:
    objs = objects(case, version)
    for d in _engine_deployments(objs):
        e = _engine_for(case, d)
        a = e["autoscaling"]
        name = d["metadata"]["name"]
        hpas, scaled = find(objs, "HorizontalPodAutoscaler", name), find(objs, "ScaledObject", name)
        assert len(hpas) + len(scaled) == (0 if a["mode"] == "none" else 1)  # never both
        if a["mode"] == "none":
            assert d["spec"]["replicas"] == a["replicas"]
            continue
        assert "replicas" not in d["spec"]  # owned by the autoscaler: an upgrade must not reset it
        m = a["metrics"]
        if a["mode"] == "hpa":
            (hpa,) = hpas
            spec = hpa["spec"]
            assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            assert (spec["minReplicas"], spec["maxReplicas"]) == (a["minReplicas"], a["maxReplicas"])
            got = {}
            for metric in spec["metrics"]:
                body = metric["pods"] if metric["type"] == "Pods" else metric["external"]
                assert body["target"]["type"] == "AverageValue"
                got[body["metric"]["name"]] = _quantity(body["target"]["averageValue"])
            want = {
                name: m[key]["target"]
                for key, name in (
                    ("gpuUtilization", "dcgm_fi_dev_gpu_util"),
                    ("queueDepth", "vllm_num_requests_waiting"),
                    ("kvCacheUsage", "vllm_kv_cache_usage_perc"),
                    ("gatewayQueue", "inferline_queue_depth"),
                )
                if m[key]["enabled"]
            }
            assert got == pytest.approx(want)
            behavior = spec["behavior"]
        else:
            (so,) = scaled
            spec = so["spec"]
            assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (a["minReplicas"], a["maxReplicas"])
            thresholds = sorted(float(t["metadata"]["threshold"]) for t in spec["triggers"])
            assert thresholds == sorted(float(m[k]["target"]) for k in m if m[k]["enabled"])
            assert all(t["type"] == "prometheus" and t["metricType"] == "AverageValue" for t in spec["triggers"])
            behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
        for direction in ("scaleUp", "scaleDown"):
            want_rules = a["behavior"][direction]
            got_rules = behavior[direction]
            assert got_rules["stabilizationWindowSeconds"] == want_rules["stabilizationWindowSeconds"]
            assert got_rules["policies"] == want_rules["policies"]
        gpu = m["gpuUtilization"]
        tolerance = behavior["scaleDown"].get("tolerance")
        if a["mode"] == "hpa" and version >= "1.33" and gpu["enabled"] and gpu["scaleDownBelow"]:
            # scale down only below scaleDownBelow %: ratio < 1 - tolerance  <=>  util < scaleDownBelow
            assert math.isclose(_quantity(tolerance), 1 - gpu["scaleDownBelow"] / gpu["target"], abs_tol=1e-3)
        else:
            assert tolerance is None  # the field does not exist before 1.33 (strict validation would fail)


def test_seed_defaults() -> None:
    (e,) = values("default")["engines"]
    a = e["autoscaling"]
    assert (a["minReplicas"], a["maxReplicas"]) == (2, 10)
    assert a["metrics"]["gpuUtilization"] == {"enabled": True, "target": 75, "scaleDownBelow": 30}
    assert a["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert e["gpuMemoryUtilization"] == 0.9 and e["maxNumSeqs"] == 256 and e["enableChunkedPrefill"]


def test_adapter_rules_serve_every_hpa_metric() -> None:
    objs = objects("llama-8b-hpa")
    (cm,) = find(objs, "ConfigMap", "inferline-prometheus-adapter-rules")
    rules = yaml.safe_load(cm["data"]["config.yaml"])
    served = {r["name"]["as"] for r in rules["rules"]} | {r["name"]["as"] for r in rules["externalRules"]}
    for hpa in find(objs, "HorizontalPodAutoscaler"):
        for metric in hpa["spec"]["metrics"]:
            body = metric["pods"] if metric["type"] == "Pods" else metric["external"]
            assert body["metric"]["name"] in served
    assert not find(objects("llama-70b-keda"), "ConfigMap", "llm-prometheus-adapter-rules")  # KEDA needs none


@pytest.mark.parametrize("case", CASE_NAMES)
def test_gateway_replicas_spread_disruption_budget_keys(case: str) -> None:
    objs = objects(case)
    v = values(case)
    (gw,) = [o for o in find(objs, "Deployment") if o["metadata"]["name"].endswith("-gateway")]
    assert gw["spec"]["replicas"] == v["gateway"]["replicas"] >= 2
    pod = gw["spec"]["template"]["spec"]
    terms = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert terms[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (pdb,) = find(objs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == gw["spec"]["selector"]["matchLabels"]
    assert pdb["spec"]["minAvailable"] < gw["spec"]["replicas"]
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] and pod["securityContext"]["runAsNonRoot"]
    if v["gateway"]["apiKeysSecret"]:
        assert c["envFrom"] == [{"secretRef": {"name": v["gateway"]["apiKeysSecret"]}}]
    assert find(objs, "Service", gw["metadata"]["name"])


def _gateway_config(objs: list[dict[str, Any]]) -> dict[str, Any]:
    cm = next(o for o in find(objs, "ConfigMap") if o["metadata"]["name"].endswith("-gateway"))
    loaded: dict[str, Any] = yaml.safe_load(cm["data"]["inferline.yaml"])
    return loaded


@pytest.mark.parametrize("case", CASE_NAMES)
def test_gateway_config_passes_config_check_and_discovers_the_engines(case: str, tmp_path: Path) -> None:
    objs = objects(case)
    cfg = _gateway_config(objs)
    path = tmp_path / "inferline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    inferline = str(Path(sys.executable).parent / "inferline")
    proc = subprocess.run([inferline, "config", "check", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert cfg["server"]["host"] == "0.0.0.0"
    models = {m["name"]: m for m in cfg["models"]}
    for d in _engine_deployments(objs):
        e = _engine_for(case, d)
        disc = models[e["model"]]["discovery"]
        assert disc["dns_name"] == f"{d['metadata']['name']}-engine.inference.svc.cluster.local"
        assert disc["port"] == e["port"]
        assert disc["max_num_seqs"] == e["maxNumSeqs"]
        assert disc["scheduling_priority"] == (e["schedulingPolicy"] == "priority")
        assert disc["upstream_model"] == e["servedModelName"]
    if values(case)["redis"]["mode"] != "none":
        assert cfg["limits"]["store"] == "redis" and cfg["limits"]["redis_url"].startswith("redis://")


@pytest.mark.parametrize("case", CASE_NAMES)
def test_monitoring_objects_are_gated_on_their_crds(case: str) -> None:
    without = {o["kind"] for o in objects(case, crds=False)}
    with_crds = {o["kind"] for o in objects(case)}
    assert not without & {"ServiceMonitor", "PrometheusRule"}
    assert {"ServiceMonitor", "PrometheusRule"} <= with_crds
    monitors = {o["metadata"]["name"].rsplit("-", 1)[-1] for o in find(objects(case), "ServiceMonitor")}
    assert {"gateway", "engines", "exporter"} <= monitors


def test_rules_and_dashboard_come_from_the_files() -> None:
    objs = objects("default")
    (rule,) = find(objs, "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((CHART / "files" / "inferline-rules.yaml").read_text())["groups"]
    (dash,) = [o for o in find(objs, "ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["inferline-dashboard.json"]) == json.loads(
        (CHART / "files" / "inferline-dashboard.json").read_text()
    )


def test_engine_monitor_keeps_vllm_metric_names() -> None:
    (sm,) = find(objects("default"), "ServiceMonitor", "inferline-engines")
    relabel = sm["spec"]["endpoints"][0]["metricRelabelings"][0]
    assert relabel["regex"] == "vllm_(.+)" and relabel["replacement"] == "vllm:$1"
