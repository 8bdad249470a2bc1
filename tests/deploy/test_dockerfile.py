"""The gateway image's Dockerfile, without a container engine: hadolint, what the file must say, and its
install steps run for real outside a container (scripts/deploy/image-install-check.sh, heavy tier)."""

from __future__ import annotations

import re
import subprocess

import pytest

from .chart import ROOT, tools, values

DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _final_stage() -> list[tuple[str, str]]:
    ins = _instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    return ins[last_from:]


def test_hadolint_passes() -> None:
    proc = subprocess.run([tools().hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_bases_are_slim_python_pinned_by_exact_tag() -> None:
    bases = [a.split()[0] for w, a in _instructions() if w == "FROM"]
    assert len(bases) >= 2  # multi-stage
    for base in bases:
        assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base


def test_final_stage_runs_unprivileged_without_compilers_or_healthcheck() -> None:
    final = _final_stage()
    words = [w for w, _ in final]
    assert "HEALTHCHECK" not in [w for w, _ in _instructions()]
    user = [a for w, a in final if w == "USER"][-1]
    assert user.split(":")[0] not in ("0", "root")
    runs = " ".join(a for w, a in final if w == "RUN")
    assert not re.search(r"\b(gcc|g\+\+|build-essential|make|clang|apt-get install)\b", runs), runs
    assert "COPY" in words and any("--from=build" in a for w, a in final if w == "COPY")
    assert [a for w, a in final if w == "ENTRYPOINT"] == ['["inferline", "serve"]']


def test_chart_runs_the_image_with_the_config_it_mounts() -> None:
    gateway = values("default")["gateway"]
    assert gateway["image"]["tag"] != "latest"
    cmd = [a for w, a in _final_stage() if w == "CMD"][-1]
    assert "/etc/inferline/inferline.yaml" in cmd  # the chart's ConfigMap mount path


@pytest.mark.heavy
def test_image_install_steps_work_outside_a_container() -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy" / "image-install-check.sh")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "image-install-check: OK" in proc.stdout
